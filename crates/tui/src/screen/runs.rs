//! The workflow runs of a session as the view knows them: a fold over the run events of the
//! primary's stream (`workflow_run.*`, `span.workflow_task_*`), seeded by `workflow.list` for
//! runs whose creation is older than the loaded events. Pure and idempotent per event (a
//! replayed event after a reconnect changes nothing), so no polling is needed: the panel
//! (view/runs.rs, laid out as a graph by rungraph.rs) and the checkpoint prompt draw from it.
//!
//! Cheap per event even with a 1,000-item fan-out: tasks are found through an index, and a
//! fan-out parent keeps a tally of its items' statuses that each item event moves by one.

use std::collections::HashMap;

use tether_proto::workflow::{
    AttemptStatus, RunResult, RunStatus, TaskAgent, TaskStatus, WorkflowRun, WorkflowSpec,
    item_parent, item_task_id,
};
use tether_proto::{Event, EventBody};

/// One task of a run (a fan-out item is a task `parent[i]` of its own, listed after its
/// parent).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub id: String,
    pub status: TaskStatus,
    /// The newest attempt's number (0: not started).
    pub attempts: u32,
    /// Failed attempts (a retried task has some and is not final).
    pub failures: u32,
    /// The newest attempt's thread (`sthr_...`); none for a checkpoint.
    pub thread: Option<String>,
    pub model: Option<String>,
    /// The agent's name as the workflow names it (none: the session's model, or unknown).
    pub agent: Option<String>,
    /// USD of the ended attempts (None: none priced yet).
    pub cost_usd: Option<f64>,
    /// A checkpoint's question.
    pub question: Option<String>,
    /// A fan-out parent's item count, once fanned out.
    pub items: Option<usize>,
    /// Why the newest failed attempt failed.
    pub verdict: Option<String>,
    /// The tasks it waits for (its file's `depends_on`).
    pub deps: Vec<String>,
    /// A fan-out item's value, shortened (what the item is about).
    pub label: Option<String>,
    /// A fan-out parent's items by status (once fanned out).
    pub tally: Tally,
    /// Attempts after the first (None: not known, the run was seeded from a list answer).
    retries: Option<u32>,
    checkpoint: bool,
    fan_parent: bool,
    /// The newest attempt whose end was folded in: an end at or below it is a replay.
    ended: u32,
}

impl TaskView {
    fn new(id: &str) -> TaskView {
        TaskView {
            id: id.to_string(),
            status: TaskStatus::Queued,
            attempts: 0,
            failures: 0,
            thread: None,
            model: None,
            agent: None,
            cost_usd: None,
            question: None,
            items: None,
            verdict: None,
            deps: Vec::new(),
            label: None,
            tally: Tally::default(),
            retries: None,
            checkpoint: false,
            fan_parent: false,
            ended: 0,
        }
    }

    /// A fan-out item (`parent[i]`).
    pub fn is_item(&self) -> bool {
        item_parent(&self.id).is_some()
    }

    /// Failed at least once and not final: it runs (or will run) again.
    pub fn retried(&self) -> bool {
        self.failures > 0 && !self.status.is_final()
    }

    pub fn waits_for_answer(&self) -> bool {
        self.status == TaskStatus::WaitingForApproval
    }

    /// A fan-out task (its items run in its stead).
    pub fn is_fan_out(&self) -> bool {
        self.fan_parent
    }

    /// Its status as the panel says it (a queued task that failed before is retrying).
    pub fn shown(&self) -> Shown {
        Shown::of(self.status, self.failures)
    }
}

/// A task's status as a person reads it: [`TaskStatus`] with "retrying" told apart from
/// "pending".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Passed,
    Failed,
    Running,
    Checking,
    Waiting,
    Retrying,
    Pending,
    Skipped,
}

impl Shown {
    /// In the order a fan-out's tally lists them.
    pub const ALL: [Shown; 8] = [
        Shown::Passed,
        Shown::Failed,
        Shown::Running,
        Shown::Checking,
        Shown::Waiting,
        Shown::Retrying,
        Shown::Pending,
        Shown::Skipped,
    ];

    pub fn of(status: TaskStatus, failures: u32) -> Shown {
        match status {
            TaskStatus::Queued if failures > 0 => Shown::Retrying,
            TaskStatus::Queued => Shown::Pending,
            TaskStatus::Running => Shown::Running,
            TaskStatus::Checking => Shown::Checking,
            TaskStatus::WaitingForApproval => Shown::Waiting,
            TaskStatus::Succeeded => Shown::Passed,
            TaskStatus::Failed => Shown::Failed,
            TaskStatus::Skipped => Shown::Skipped,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Shown::Pending => "pending",
            Shown::Retrying => "retrying",
            Shown::Running => "running",
            Shown::Checking => "checking",
            Shown::Waiting => "waiting for you",
            Shown::Passed => "passed",
            Shown::Failed => "failed",
            Shown::Skipped => "skipped",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// A fan-out parent's items counted by status: moved by one per item event, never recounted
/// per event (a fan-out may have a thousand items).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    counts: [usize; 8],
    /// USD of the items' ended attempts (None: none priced yet).
    pub cost_usd: Option<f64>,
}

impl Tally {
    pub fn get(&self, s: Shown) -> usize {
        self.counts[s.slot()]
    }

    fn moved(&mut self, from: Shown, to: Shown) {
        if from != to {
            self.counts[from.slot()] = self.counts[from.slot()].saturating_sub(1);
            self.counts[to.slot()] += 1;
        }
    }

    /// The parent's status once its `n` items are as counted (items not known yet: pending).
    fn parent_status(&self, n: usize) -> TaskStatus {
        let passed = self.get(Shown::Passed);
        let failed = self.get(Shown::Failed);
        let finals = passed + failed + self.get(Shown::Skipped);
        let queued = self.get(Shown::Pending) + self.get(Shown::Retrying);
        let known: usize = self.counts.iter().sum();
        if passed == n {
            TaskStatus::Succeeded
        } else if failed > 0 && finals >= n {
            TaskStatus::Failed
        } else if known > queued {
            TaskStatus::Running
        } else {
            TaskStatus::Queued
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    /// `wrun_...`
    pub id: String,
    pub name: String,
    pub status: RunStatus,
    pub result: Option<RunResult>,
    /// Spec order, each fan-out parent's items right after it.
    pub tasks: Vec<TaskView>,
    /// Task id → its place in `tasks`.
    index: HashMap<String, usize>,
    /// The places of the file's tasks (fan-out items left out): the graph's nodes.
    nodes: Vec<usize>,
    /// Its `workflow_run.created` was folded in (else it was seeded from `workflow.list`,
    /// and a newer list answer replaces it).
    complete: bool,
}

impl RunView {
    fn from_spec(id: &str, spec: Option<&WorkflowSpec>, name: &str) -> RunView {
        let tasks: Vec<TaskView> = spec
            .map(|s| {
                s.tasks
                    .iter()
                    .map(|t| TaskView {
                        agent: t.agent.as_ref().map(|a| match a {
                            TaskAgent::Named(n) => n.clone(),
                            TaskAgent::Inline(i) => {
                                i.name.clone().unwrap_or_else(|| "inline".into())
                            }
                        }),
                        model: match &t.agent {
                            Some(TaskAgent::Inline(i)) => i.model.clone(),
                            _ => None,
                        },
                        question: t.checkpoint.clone(),
                        deps: t.depends_on.clone(),
                        retries: Some(t.retries),
                        checkpoint: t.checkpoint.is_some(),
                        fan_parent: t.for_each.is_some(),
                        ..TaskView::new(&t.id)
                    })
                    .collect()
            })
            .unwrap_or_default();
        RunView {
            id: id.to_string(),
            name: name.to_string(),
            // A run starts idle until `status_running` (as the daemon folds it).
            status: RunStatus::Idle,
            result: None,
            index: index_of(&tasks),
            nodes: nodes_of(&tasks),
            tasks,
            complete: true,
        }
    }

    /// A run as `workflow.list` / `workflow.get` answered (what events alone can't say then:
    /// the retries a task has left).
    pub fn from_snapshot(r: &WorkflowRun) -> RunView {
        let tasks = r
            .tasks
            .iter()
            .map(|t| {
                let in_flight = matches!(
                    t.status,
                    TaskStatus::Running | TaskStatus::Checking | TaskStatus::WaitingForApproval
                );
                TaskView {
                    status: t.status,
                    attempts: t.attempts,
                    failures: t.failures,
                    thread: t.session_thread_id.clone(),
                    model: t.model.clone(),
                    cost_usd: t.usage.cost_usd,
                    question: t.question.clone(),
                    items: t.items,
                    verdict: t.verdicts.last().cloned(),
                    deps: t.depends_on.clone(),
                    checkpoint: t.question.is_some(),
                    fan_parent: t.items.is_some(),
                    ended: if in_flight {
                        t.attempts.saturating_sub(1)
                    } else {
                        t.attempts
                    },
                    ..TaskView::new(&t.id)
                }
            })
            .collect::<Vec<_>>();
        let mut run = RunView {
            id: r.id.clone(),
            name: r.name.clone(),
            status: r.status,
            result: r.result.clone(),
            index: index_of(&tasks),
            nodes: nodes_of(&tasks),
            tasks,
            complete: false,
        };
        run.recount();
        run
    }

    pub fn task(&self, id: &str) -> Option<&TaskView> {
        self.position(id).map(|i| &self.tasks[i])
    }

    /// The places in [`RunView::tasks`] of the file's tasks (not fan-out items), in order.
    pub fn nodes(&self) -> &[usize] {
        &self.nodes
    }

    /// Where task `id` is in [`RunView::tasks`].
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    fn task_mut(&mut self, id: &str) -> &mut TaskView {
        let i = match self.position(id) {
            Some(i) => i,
            None => {
                // Not in the plan we know (seeded without it): known from now on.
                self.tasks.push(TaskView::new(id));
                self.index.insert(id.to_string(), self.tasks.len() - 1);
                if item_parent(id).is_none() {
                    self.nodes.push(self.tasks.len() - 1);
                }
                self.tasks.len() - 1
            }
        };
        &mut self.tasks[i]
    }

    /// Every fan-out parent's tally counted afresh (a list answer, the run's end).
    fn recount(&mut self) {
        let parents: Vec<(usize, usize)> = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.fan_parent)
            .filter_map(|(i, t)| Some((i, t.items?)))
            .collect();
        for (p, n) in parents {
            let mut tally = Tally::default();
            let parent = self.tasks[p].id.clone();
            for i in 0..n {
                let (shown, cost) = self
                    .task(&item_task_id(&parent, i))
                    .map_or((Shown::Pending, None), |t| (t.shown(), t.cost_usd));
                tally.counts[shown.slot()] += 1;
                if let Some(c) = cost {
                    tally.cost_usd = Some(tally.cost_usd.unwrap_or(0.0) + c);
                }
            }
            self.tasks[p].tally = tally;
        }
    }

    /// Spec tasks (fan-out items not counted) that ended, and how many there are.
    pub fn progress(&self) -> (usize, usize) {
        let top = self.tasks.iter().filter(|t| !t.is_item());
        let done = top.clone().filter(|t| t.status.is_final()).count();
        (done, top.count())
    }

    /// Every ended attempt's cost summed (None: none priced).
    pub fn cost_usd(&self) -> Option<f64> {
        self.tasks
            .iter()
            .filter(|t| !t.fan_parent)
            .filter_map(|t| t.cost_usd)
            .reduce(|a, b| a + b)
    }

    fn apply(&mut self, e: &Event) {
        match &e.body {
            EventBody::WorkflowRunStatusRunning { .. } => self.status = RunStatus::Running,
            EventBody::WorkflowRunStatusIdle { .. } => self.status = RunStatus::Idle,
            EventBody::WorkflowRunStatusEnded { result, .. } => {
                self.status = RunStatus::Ended;
                self.result = Some(result.clone());
                let failed: &[String] = match result {
                    RunResult::Completed { failed_tasks } => failed_tasks,
                    _ => &[],
                };
                for t in &mut self.tasks {
                    if failed.contains(&t.id) || (t.retries.is_none() && t.failures > 0) {
                        // Out of retries (a seeded run doesn't know how many it had).
                        if !t.status.is_final() {
                            t.status = TaskStatus::Failed;
                        }
                    } else if !t.status.is_final() {
                        t.status = TaskStatus::Skipped;
                    }
                }
                self.recount();
            }
            EventBody::SpanWorkflowTaskStarted {
                task_id,
                attempt,
                thread_id,
                model,
                ..
            } => {
                let t = self.task_mut(task_id);
                if *attempt < t.attempts || *attempt <= t.ended {
                    return;
                }
                let before = t.shown();
                t.attempts = *attempt;
                match thread_id {
                    None => {
                        t.checkpoint = true;
                        t.status = TaskStatus::WaitingForApproval;
                    }
                    Some(th) => {
                        t.thread = Some(th.clone());
                        if model.is_some() {
                            t.model = model.clone();
                        }
                        t.status = TaskStatus::Running;
                    }
                }
                self.fan_in(task_id, before, None);
            }
            EventBody::SpanWorkflowTaskChecking {
                task_id, attempt, ..
            } => {
                let t = self.task_mut(task_id);
                if *attempt == t.attempts && *attempt > t.ended {
                    let before = t.shown();
                    t.status = TaskStatus::Checking;
                    self.fan_in(task_id, before, None);
                }
            }
            EventBody::SpanWorkflowTaskFannedOut { task_id, items, .. } => {
                let parent = self.task_mut(task_id);
                parent.fan_parent = true;
                // Fixed once: a replay adds nothing.
                if parent.items.is_some() {
                    return;
                }
                parent.items = Some(items.len());
                let (agent, model, retries) =
                    (parent.agent.clone(), parent.model.clone(), parent.retries);
                let at = self.position(task_id).map_or(self.tasks.len(), |i| i + 1);
                let fresh: Vec<TaskView> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (item_task_id(task_id, i), item))
                    .filter(|(id, _)| self.task(id).is_none())
                    .map(|(id, item)| TaskView {
                        agent: agent.clone(),
                        model: model.clone(),
                        retries,
                        label: Some(item_label(item)),
                        ..TaskView::new(&id)
                    })
                    .collect();
                self.tasks.splice(at..at, fresh);
                // Once per fan-out: every place after `at` moved.
                self.index = index_of(&self.tasks);
                self.nodes = nodes_of(&self.tasks);
                self.recount();
                let parent = self.task_mut(task_id);
                if let Some(n) = parent.items {
                    parent.status = parent.tally.parent_status(n);
                }
            }
            EventBody::SpanWorkflowTaskEnded {
                task_id,
                attempt,
                status,
                explanation,
                usage,
                ..
            } => {
                let t = self.task_mut(task_id);
                if *attempt <= t.ended {
                    return;
                }
                let before = t.shown();
                t.ended = *attempt;
                t.attempts = t.attempts.max(*attempt);
                let cost = usage.as_ref().and_then(|u| u.cost_usd);
                if let Some(c) = cost {
                    t.cost_usd = Some(t.cost_usd.unwrap_or(0.0) + c);
                }
                t.status = match status {
                    AttemptStatus::Succeeded => TaskStatus::Succeeded,
                    AttemptStatus::Failed => {
                        t.failures += 1;
                        t.verdict = Some(explanation.clone().unwrap_or_else(|| "failed".into()));
                        let out_of_retries =
                            t.checkpoint || t.retries.is_some_and(|r| t.failures > r);
                        if out_of_retries {
                            TaskStatus::Failed
                        } else {
                            TaskStatus::Queued
                        }
                    }
                    // Runs again on resume.
                    AttemptStatus::Stopped => TaskStatus::Queued,
                };
                self.fan_in(task_id, before, cost);
            }
            _ => {}
        }
    }

    /// After fan-out item `task_id` went from `before` to its status now (and cost `cost`
    /// more): its parent's tally moves by one and gives the parent's status. O(1).
    fn fan_in(&mut self, task_id: &str, before: Shown, cost: Option<f64>) {
        let Some((parent, i)) = item_parent(task_id) else {
            return;
        };
        let Some(after) = self.task(task_id).map(TaskView::shown) else {
            return;
        };
        let Some(p) = self.position(parent) else {
            return;
        };
        let parent = &mut self.tasks[p];
        let Some(n) = parent.items.filter(|n| i < *n) else {
            return;
        };
        parent.tally.moved(before, after);
        if let Some(c) = cost {
            parent.tally.cost_usd = Some(parent.tally.cost_usd.unwrap_or(0.0) + c);
        }
        parent.status = parent.tally.parent_status(n);
    }
}

fn index_of(tasks: &[TaskView]) -> HashMap<String, usize> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect()
}

fn nodes_of(tasks: &[TaskView]) -> Vec<usize> {
    tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_item())
        .map(|(i, _)| i)
        .collect()
}

/// A fan-out item's value in a few words: a string as it is, anything else as compact JSON;
/// cut to 40 characters.
fn item_label(item: &serde_json::Value) -> String {
    let text = match item {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 40 || line.len() < text.len() {
        let cut: String = line.chars().take(39).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

/// What a folded event asks of the view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunChange {
    /// A run event: the checkpoint prompt may open or close.
    pub changed: bool,
}

/// The session's workflow runs, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runs {
    pub runs: Vec<RunView>,
}

impl Runs {
    pub fn any(&self) -> bool {
        !self.runs.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&RunView> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// Folds one event of the primary's stream in.
    pub fn apply(&mut self, e: &Event) -> RunChange {
        let Some(run_id) = e.body.workflow_run_id() else {
            return RunChange::default();
        };
        if let EventBody::WorkflowRunCreated {
            workflow_run_id,
            name,
            spec,
            ..
        } = &e.body
        {
            let fresh = RunView::from_spec(workflow_run_id, spec.as_deref(), name);
            match self.runs.iter_mut().find(|r| r.id == *workflow_run_id) {
                // A replay: what was folded since stays.
                Some(r) if r.complete => {}
                Some(r) => *r = fresh,
                None => self.runs.push(fresh),
            }
            return RunChange { changed: true };
        }
        let i = match self.runs.iter().position(|r| r.id == run_id) {
            Some(i) => i,
            None => {
                // Created before the loaded events: a placeholder until `workflow.list`
                // answers with the whole run.
                let mut r = RunView::from_spec(run_id, None, run_id);
                r.complete = false;
                self.runs.push(r);
                self.runs.len() - 1
            }
        };
        self.runs[i].apply(e);
        RunChange { changed: true }
    }

    /// A `workflow.list` answer (the session's open runs): it fills in the runs the loaded
    /// events don't tell from their start. Runs folded from their creation on are already
    /// whole and may be newer than the answer: they stay.
    pub fn set_list(&mut self, list: &[WorkflowRun]) {
        for r in list {
            let seeded = RunView::from_snapshot(r);
            match self.runs.iter_mut().find(|x| x.id == r.id) {
                Some(x) if x.complete => {}
                Some(x) => *x = seeded,
                None => self.runs.push(seeded),
            }
        }
    }

    /// Checkpoints waiting for a person: (run id, task id), oldest run first.
    pub fn waiting(&self) -> Vec<(String, String)> {
        self.runs
            .iter()
            .filter(|r| r.status != RunStatus::Ended)
            .flat_map(|r| {
                r.tasks
                    .iter()
                    .filter(|t| t.waits_for_answer())
                    .map(|t| (r.id.clone(), t.id.clone()))
            })
            .collect()
    }

    /// Whether `task` of `run` still waits for an answer.
    pub fn waits(&self, run: &str, task: &str) -> bool {
        self.get(run)
            .filter(|r| r.status != RunStatus::Ended)
            .and_then(|r| r.task(task))
            .is_some_and(TaskView::waits_for_answer)
    }
}

/// A status as the panel says it.
pub fn status_label(t: &TaskView) -> String {
    let base = t.shown().label();
    if t.fan_parent
        && let Some(n) = t.items
        && !t.status.is_final()
    {
        return format!("{base} ({n} items)");
    }
    if t.retried() && t.status != TaskStatus::Queued {
        return format!("{base} (retry {})", t.failures);
    }
    base.to_string()
}
