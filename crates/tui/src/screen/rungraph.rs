//! The run panel's graph: a run's tasks laid out as a tree a person reads top-down. Each task
//! sits under (indented from) the task it depends on; a task with several dependencies sits
//! once, under the deepest of them (the one reached last), and names the others ("after a,
//! b"). A fan-out task is one row (its items folded into a tally) until unfolded, then its
//! items hang under it before its dependents.
//!
//! Pure: from the folded run (`runs.rs`) and which fan-outs are unfolded, nothing else. The
//! layout depends on the run's shape, never on statuses, so a status change only redraws; a
//! folded fan-out of a thousand items is one row.

use std::collections::{HashMap, VecDeque};

use tether_proto::workflow::item_task_id;

use super::runs::RunView;

/// Levels of tree guides a row keeps (3 columns each); deeper rows show the deepest ones
/// after a `…`.
pub const MAX_GUIDES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A task of the workflow file (a fan-out task's row carries its items' tally).
    Task,
    /// A fan-out item, under its task once unfolded.
    Item,
}

/// One row of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphRow {
    /// Its task's place in [`RunView::tasks`].
    pub task: usize,
    pub kind: RowKind,
    /// Levels below a root (0: a root, no connector).
    pub depth: usize,
    /// The tree's guides left of the task, 3 columns a level: `│  ` or blank for each
    /// ancestor level, then its own `├─ ` or `└─ `. Only the deepest [`MAX_GUIDES`] levels.
    guides: String,
    /// Its other dependencies (it is drawn under the deepest one).
    pub after: Vec<String>,
}

impl GraphRow {
    /// The guides cut to `max_cols` columns: the deepest levels that fit after a `…` when
    /// they don't all fit (a long chain never pushes the names off the row).
    pub fn prefix(&self, max_cols: usize) -> String {
        let levels = self.guides.chars().count() / 3;
        if self.depth <= MAX_GUIDES && levels * 3 <= max_cols {
            return self.guides.clone();
        }
        let keep = (max_cols.saturating_sub(1) / 3).min(levels);
        let tail: String = self.guides.chars().skip((levels - keep) * 3).collect();
        format!("…{tail}")
    }
}

/// The run's rows, in drawing order. `unfolded(task id)`: whether that fan-out shows its
/// items.
pub fn layout(run: &RunView, unfolded: impl Fn(&str) -> bool) -> Vec<GraphRow> {
    let nodes = run.nodes();
    // Node number (place among the nodes) of each task id.
    let number: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(n, &i)| (run.tasks[i].id.as_str(), n))
        .collect();
    let deps: Vec<Vec<usize>> = nodes
        .iter()
        .map(|&i| {
            run.tasks[i]
                .deps
                .iter()
                .filter_map(|d| number.get(d.as_str()).copied())
                .collect()
        })
        .collect();

    // Depth: the longest dependency path from a root (Kahn's order, so no recursion even
    // on a chain of a thousand). A task on a cycle (the daemon refuses those) stays a root.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    for (n, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(n);
        }
    }
    let mut depth = vec![0usize; nodes.len()];
    let mut placed = vec![false; nodes.len()];
    let mut ready: VecDeque<usize> = (0..nodes.len()).filter(|&n| waiting[n] == 0).collect();
    while let Some(n) = ready.pop_front() {
        placed[n] = true;
        for &m in &dependents[n] {
            depth[m] = depth[m].max(depth[n] + 1);
            waiting[m] -= 1;
            if waiting[m] == 0 {
                ready.push_back(m);
            }
        }
    }

    // Tree parent: the deepest dependency, the one listed last in the file on a tie.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots = Vec::new();
    let mut parent_of: Vec<Option<usize>> = vec![None; nodes.len()];
    for n in 0..nodes.len() {
        let parent = deps[n]
            .iter()
            .copied()
            .filter(|_| placed[n])
            .max_by_key(|&d| (depth[d], d));
        parent_of[n] = parent;
        match parent {
            Some(p) => children[p].push(n),
            None => roots.push(n),
        }
    }

    let mut rows = Vec::with_capacity(nodes.len());
    // (node, depth, guides above it, last of its siblings); pushed in reverse to pop in order.
    let mut stack: Vec<(usize, usize, String, bool)> = roots
        .iter()
        .rev()
        .map(|&r| (r, 0, String::new(), true))
        .collect();
    while let Some((n, d, above, last)) = stack.pop() {
        let task = &run.tasks[nodes[n]];
        let own = if d == 0 {
            ""
        } else if last {
            "└─ "
        } else {
            "├─ "
        };
        let after = task
            .deps
            .iter()
            .filter(|dep| parent_of[n].is_none_or(|p| run.tasks[nodes[p]].id != **dep))
            .cloned()
            .collect();
        rows.push(GraphRow {
            task: nodes[n],
            kind: RowKind::Task,
            depth: d,
            guides: keep_deepest(format!("{above}{own}")),
            after,
        });
        // What hangs under it continues its guides: a bar while siblings follow.
        let below = if d == 0 {
            String::new()
        } else if last {
            keep_deepest(format!("{above}   "))
        } else {
            keep_deepest(format!("{above}│  "))
        };
        let kids = &children[n];
        if let Some(count) = task.items.filter(|_| unfolded(&task.id)) {
            for i in 0..count {
                let Some(at) = run.position(&item_task_id(&task.id, i)) else {
                    continue;
                };
                let own = if i + 1 == count && kids.is_empty() {
                    "└─ "
                } else {
                    "├─ "
                };
                rows.push(GraphRow {
                    task: at,
                    kind: RowKind::Item,
                    depth: d + 1,
                    guides: keep_deepest(format!("{below}{own}")),
                    after: Vec::new(),
                });
            }
        }
        for (k, &c) in kids.iter().enumerate().rev() {
            stack.push((c, d + 1, below.clone(), k + 1 == kids.len()));
        }
    }
    rows
}

/// The deepest [`MAX_GUIDES`] levels of a guide string (3 one-column characters a level).
fn keep_deepest(guides: String) -> String {
    let levels = guides.chars().count() / 3;
    if levels <= MAX_GUIDES {
        return guides;
    }
    guides.chars().skip((levels - MAX_GUIDES) * 3).collect()
}

/// The row showing task `task` (a place in [`RunView::tasks`]).
pub fn row_of(rows: &[GraphRow], task: usize) -> Option<usize> {
    rows.iter().position(|r| r.task == task)
}
