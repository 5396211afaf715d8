//! Workflow runs in the session view: the run panel (ctrl-g: the run's task graph with every
//! task's live status; enter shows a task's thread, enter/→ unfolds a fan-out's items, ←
//! folds them) and the checkpoint prompt (a run waiting for a person: `y` approves, `n` asks
//! an optional note then denies). The prompt opens by itself when a checkpoint starts waiting
//! and closes when the run goes on, whoever answered.

use std::collections::{BTreeMap, BTreeSet};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tether_proto::workflow::{RunStatus, item_parent};

use super::{Cmd, Effect, Overlay, State};
use crate::screen::rungraph::{self, GraphRow, RowKind};

/// A checkpoint: (run id, task id).
pub type CheckpointKey = (String, String);

/// Checkpoints the user put away (esc) or answered here and whose answer is on its way: the
/// prompt doesn't open for them by itself again.
#[derive(Debug, Default)]
pub struct Checkpoints {
    pub put_away: BTreeSet<CheckpointKey>,
    answered: BTreeSet<CheckpointKey>,
}

/// Fan-out tasks whose items the run panel shows: run id → task ids.
#[derive(Debug, Default)]
pub struct Unfolded(BTreeMap<String, BTreeSet<String>>);

impl Unfolded {
    pub fn contains(&self, run: &str, task: &str) -> bool {
        self.0.get(run).is_some_and(|t| t.contains(task))
    }

    fn set(&mut self, run: &str, task: &str, unfolded: bool) {
        if unfolded {
            self.0
                .entry(run.to_string())
                .or_default()
                .insert(task.to_string());
        } else if let Some(t) = self.0.get_mut(run) {
            t.remove(task);
        }
    }
}

impl State {
    /// The rows of run `run`'s graph as the panel draws them.
    pub fn run_rows(&self, run: usize) -> Vec<GraphRow> {
        match self.runs.runs.get(run) {
            Some(r) => rungraph::layout(r, |task| self.run_folds.contains(&r.id, task)),
            None => Vec::new(),
        }
    }

    /// The panel's row for task `task` of run `run` (a fan-out item's task unfolded to show
    /// it); the first row when the task is unknown.
    fn row_for(&mut self, run: usize, task: &str) -> usize {
        let Some(r) = self.runs.runs.get(run) else {
            return 0;
        };
        if let Some((parent, _)) = item_parent(task) {
            self.run_folds.set(&r.id.clone(), parent, true);
        }
        let Some(at) = self.runs.runs.get(run).and_then(|r| r.position(task)) else {
            return 0;
        };
        rungraph::row_of(&self.run_rows(run), at).unwrap_or(0)
    }

    /// Opens the run panel on the newest run still going (else the newest).
    pub(super) fn open_runs(&mut self) -> Vec<Effect> {
        if !self.runs.any() {
            self.notice = Some(
                "no workflow runs in this session: `tether workflows run FILE --session ...` starts one"
                    .into(),
            );
            return Vec::new();
        }
        let run = self
            .runs
            .runs
            .iter()
            .rposition(|r| r.status != RunStatus::Ended)
            .unwrap_or(self.runs.runs.len() - 1);
        self.overlay = Overlay::Runs { run, selected: 0 };
        Vec::new()
    }

    /// `tether workflows watch RUN`: its panel, once the run is known (on the checkpoint
    /// waiting, if one is).
    pub(super) fn open_watched_run(&mut self) {
        let Some(id) = self.watch_run.as_deref() else {
            return;
        };
        if self.overlay != Overlay::None {
            return;
        }
        let Some(run) = self.runs.runs.iter().position(|r| r.id == id) else {
            return;
        };
        let selected = match self.runs.runs[run]
            .tasks
            .iter()
            .find(|t| t.waits_for_answer())
            .map(|t| t.id.clone())
        {
            Some(task) => self.row_for(run, &task),
            None => 0,
        };
        self.watch_run = None;
        self.overlay = Overlay::Runs { run, selected };
    }

    /// The prompt for the next checkpoint waiting, when nothing else is open and the user
    /// isn't typing; closes a prompt whose checkpoint was answered (here or elsewhere).
    pub(super) fn sync_checkpoint(&mut self) {
        let waiting = self.runs.waiting();
        let still = |k: &CheckpointKey| waiting.contains(k);
        self.checkpoints.put_away.retain(still);
        self.checkpoints.answered.retain(still);
        if let Overlay::Checkpoint { run, task, .. } = &self.overlay
            && !self.runs.waits(run, task)
        {
            self.notice = Some(format!("checkpoint `{task}` was answered elsewhere"));
            self.overlay = Overlay::None;
        }
        if !self.may_open_prompt() {
            return;
        }
        if let Some((run, task)) = waiting.into_iter().find(|k| {
            !self.checkpoints.put_away.contains(k) && !self.checkpoints.answered.contains(k)
        }) {
            self.overlay = Overlay::Checkpoint {
                run,
                task,
                draft: None,
            };
        }
    }

    /// Checkpoints waiting whose prompt is not shown (for the footer's hint).
    pub fn checkpoints_waiting(&self) -> usize {
        let shown = match &self.overlay {
            Overlay::Checkpoint { run, task, .. } => Some((run.clone(), task.clone())),
            _ => None,
        };
        self.runs
            .waiting()
            .into_iter()
            .filter(|k| Some(k) != shown.as_ref() && !self.checkpoints.answered.contains(k))
            .count()
    }

    /// ctrl-a with no tool call put away: the first checkpoint waiting, prompted again.
    pub(super) fn reopen_checkpoint(&mut self) -> Option<Vec<Effect>> {
        if self.read_only || self.overlay != Overlay::None {
            return None;
        }
        let (run, task) = self.runs.waiting().into_iter().next()?;
        let key = (run.clone(), task.clone());
        self.checkpoints.put_away.remove(&key);
        self.checkpoints.answered.remove(&key);
        self.overlay = Overlay::Checkpoint {
            run,
            task,
            draft: None,
        };
        Some(Vec::new())
    }

    fn answer(&mut self, run: String, task: String, approve: bool, note: String) -> Vec<Effect> {
        self.checkpoints
            .answered
            .insert((run.clone(), task.clone()));
        if matches!(&self.overlay, Overlay::Checkpoint { run: r, task: t, .. } if *r == run && *t == task)
        {
            self.overlay = Overlay::None;
        }
        // A refusal (say another client answered first) replaces it with the daemon's word.
        self.notice = Some(format!(
            "{} checkpoint `{task}`",
            if approve { "approved" } else { "denied" }
        ));
        let note = note.trim().to_string();
        vec![Effect::Net(Cmd::AnswerCheckpoint {
            run,
            task,
            approve,
            note: (!note.is_empty()).then_some(note),
        })]
    }
}

/// Keys of the checkpoint prompt.
pub(super) fn checkpoint_key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    let Overlay::Checkpoint { run, task, draft } = &mut s.overlay else {
        return Vec::new();
    };
    let (run, task) = (run.clone(), task.clone());
    match draft {
        // Typing the denial's note: enter denies, esc goes back to the choice.
        Some(note) => match k.code {
            KeyCode::Enter => {
                let note = std::mem::take(note);
                return s.answer(run, task, false, note);
            }
            KeyCode::Esc => *draft = None,
            KeyCode::Backspace => {
                note.pop();
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => note.push(c),
            _ => {}
        },
        None => match (k.code, k.modifiers) {
            (KeyCode::Char('y') | KeyCode::Char('a'), KeyModifiers::NONE) => {
                return s.answer(run, task, true, String::new());
            }
            (KeyCode::Char('n') | KeyCode::Char('d'), KeyModifiers::NONE) => {
                *draft = Some(String::new())
            }
            (KeyCode::Char('g'), KeyModifiers::CONTROL) => {
                let at = s.runs.runs.iter().position(|r| r.id == run).unwrap_or(0);
                let selected = s.row_for(at, &task);
                s.checkpoints.put_away.insert((run, task));
                s.overlay = Overlay::Runs { run: at, selected };
            }
            (KeyCode::Esc, _) => {
                s.checkpoints.put_away.insert((run, task));
                s.overlay = Overlay::None;
                s.notice = Some(
                    "ctrl-a reopens the checkpoint (or `tether workflows approve RUN TASK`)".into(),
                );
            }
            _ => {}
        },
    }
    Vec::new()
}

/// Keys of the run panel.
pub(super) fn panel_key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    let Overlay::Runs { run, selected } = s.overlay else {
        return Vec::new();
    };
    let runs = s.runs.runs.len().max(1);
    let run = run.min(runs - 1);
    let rows = s.run_rows(run);
    let last = rows.len().saturating_sub(1);
    let page = usize::from(s.height.saturating_sub(10)).max(1);
    let mut selected = selected.min(last);
    let mut next_run = run;
    match (k.code, k.modifiers) {
        (KeyCode::Up | KeyCode::Char('k'), _) => selected = selected.saturating_sub(1),
        (KeyCode::Down | KeyCode::Char('j'), _) => selected = (selected + 1).min(last),
        (KeyCode::PageUp, _) => selected = selected.saturating_sub(page),
        (KeyCode::PageDown, _) => selected = (selected + page).min(last),
        (KeyCode::Home, _) => selected = 0,
        (KeyCode::End, _) => selected = last,
        (KeyCode::Tab, _) => {
            next_run = (run + 1) % runs;
            selected = 0;
        }
        (KeyCode::BackTab, _) => {
            next_run = (run + runs - 1) % runs;
            selected = 0;
        }
        (KeyCode::Right | KeyCode::Char('l'), _) => {
            fold(s, run, &rows, selected, Some(true));
        }
        (KeyCode::Left | KeyCode::Char('h'), _) => {
            selected = fold(s, run, &rows, selected, Some(false));
        }
        (KeyCode::Esc | KeyCode::Char('q'), _) | (KeyCode::Char('g'), KeyModifiers::CONTROL) => {
            s.overlay = Overlay::None;
            return Vec::new();
        }
        (KeyCode::Enter | KeyCode::Char('y') | KeyCode::Char('n'), _) => {
            s.overlay = Overlay::Runs { run, selected };
            return on_task(s, run, &rows, selected, k.code);
        }
        _ => {}
    }
    s.overlay = Overlay::Runs {
        run: next_run,
        selected,
    };
    Vec::new()
}

/// Unfolds (Some(true)), folds (Some(false)) or toggles (None) the fan-out of row `selected`
/// (on an item: its task's). Returns the row to select then (folding from an item selects
/// its task).
fn fold(s: &mut State, run: usize, rows: &[GraphRow], selected: usize, to: Option<bool>) -> usize {
    let Some(r) = s.runs.runs.get(run) else {
        return selected;
    };
    let Some(row) = rows.get(selected) else {
        return selected;
    };
    let t = &r.tasks[row.task];
    let (task, at) = match row.kind {
        RowKind::Task if t.items.is_some() => (t.id.clone(), selected),
        RowKind::Item if to != Some(true) => {
            let Some((parent, _)) = item_parent(&t.id) else {
                return selected;
            };
            let Some(p) = r.position(parent) else {
                return selected;
            };
            (
                parent.to_string(),
                rungraph::row_of(rows, p).unwrap_or(selected),
            )
        }
        _ => return selected,
    };
    let id = r.id.clone();
    let now = s.run_folds.contains(&id, &task);
    s.run_folds.set(&id, &task, to.unwrap_or(!now));
    at
}

/// Enter (or y/n) on a row of the panel: answer a waiting checkpoint, fold or unfold a
/// fan-out, else show the task's thread.
fn on_task(
    s: &mut State,
    run: usize,
    rows: &[GraphRow],
    selected: usize,
    code: KeyCode,
) -> Vec<Effect> {
    let Some(r) = s.runs.runs.get(run) else {
        return Vec::new();
    };
    let Some(row) = rows.get(selected) else {
        return Vec::new();
    };
    let t = &r.tasks[row.task];
    let (run_id, task_id) = (r.id.clone(), t.id.clone());
    if t.waits_for_answer() {
        if s.read_only {
            s.notice = Some("read-only: this client cannot answer checkpoints".into());
            return Vec::new();
        }
        return match code {
            KeyCode::Char('y') => s.answer(run_id, task_id, true, String::new()),
            _ => {
                s.overlay = Overlay::Checkpoint {
                    run: run_id,
                    task: task_id,
                    draft: (code == KeyCode::Char('n')).then(String::new),
                };
                Vec::new()
            }
        };
    }
    if code != KeyCode::Enter {
        return Vec::new();
    }
    if row.kind == RowKind::Task && t.items.is_some() {
        // A fan-out task runs as its items, each on a thread of its own: enter shows them.
        fold(s, run, rows, selected, None);
        return Vec::new();
    }
    match t.thread.clone() {
        Some(thread) => {
            s.overlay = Overlay::None;
            s.view_thread(Some(thread))
        }
        None => {
            s.notice = Some(if t.is_fan_out() {
                format!("task `{task_id}` has not fanned out yet: its items come when it starts")
            } else {
                format!("task `{task_id}` has no thread yet: it has not started")
            });
            Vec::new()
        }
    }
}
