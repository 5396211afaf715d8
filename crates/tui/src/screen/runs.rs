//! The workflow runs of a session as the view knows them: a fold over the run events of the
//! primary's stream (`workflow_run.*`, `span.workflow_task_*`), seeded by `workflow.list` for
//! runs whose creation is older than the loaded events. Pure and idempotent per event (a
//! replayed event after a reconnect changes nothing), so no polling is needed: the panel
//! (view/runs.rs) and the checkpoint prompt draw from it.

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
    /// Its `workflow_run.created` was folded in (else it was seeded from `workflow.list`,
    /// and a newer list answer replaces it).
    complete: bool,
}

impl RunView {
    fn from_spec(id: &str, spec: Option<&WorkflowSpec>, name: &str) -> RunView {
        let tasks = spec
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
            .collect();
        RunView {
            id: r.id.clone(),
            name: r.name.clone(),
            status: r.status,
            result: r.result.clone(),
            tasks,
            complete: false,
        }
    }

    pub fn task(&self, id: &str) -> Option<&TaskView> {
        self.tasks.iter().find(|t| t.id == id)
    }

    fn task_mut(&mut self, id: &str) -> &mut TaskView {
        let i = match self.tasks.iter().position(|t| t.id == id) {
            Some(i) => i,
            None => {
                // Not in the plan we know (seeded without it): known from now on.
                self.tasks.push(TaskView::new(id));
                self.tasks.len() - 1
            }
        };
        &mut self.tasks[i]
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
                self.fan_in(task_id);
            }
            EventBody::SpanWorkflowTaskChecking {
                task_id, attempt, ..
            } => {
                let t = self.task_mut(task_id);
                if *attempt == t.attempts && *attempt > t.ended {
                    t.status = TaskStatus::Checking;
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
                let at = self
                    .tasks
                    .iter()
                    .position(|t| t.id == *task_id)
                    .map_or(self.tasks.len(), |i| i + 1);
                let fresh: Vec<TaskView> = (0..items.len())
                    .map(|i| item_task_id(task_id, i))
                    .filter(|id| self.task(id).is_none())
                    .map(|id| TaskView {
                        agent: agent.clone(),
                        model: model.clone(),
                        retries,
                        ..TaskView::new(&id)
                    })
                    .collect();
                self.tasks.splice(at..at, fresh);
                self.fan_in(task_id);
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
                t.ended = *attempt;
                t.attempts = t.attempts.max(*attempt);
                if let Some(c) = usage.as_ref().and_then(|u| u.cost_usd) {
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
                self.fan_in(task_id);
            }
            _ => {}
        }
    }

    /// A fan-out parent's status from its items' (after one of them changed).
    fn fan_in(&mut self, task_id: &str) {
        let Some((parent, _)) = item_parent(task_id) else {
            return;
        };
        let Some(n) = self.task(parent).and_then(|p| p.items) else {
            return;
        };
        // One pass over the tasks (a fan-out may have a thousand items).
        let mut each: Vec<TaskStatus> = self
            .tasks
            .iter()
            .filter(|t| item_parent(&t.id).is_some_and(|(p, _)| p == parent))
            .map(|t| t.status)
            .collect();
        each.resize(n.max(each.len()), TaskStatus::Queued);
        let status = if each.iter().all(|s| *s == TaskStatus::Succeeded) {
            TaskStatus::Succeeded
        } else if each.contains(&TaskStatus::Failed) && each.iter().all(|s| s.is_final()) {
            TaskStatus::Failed
        } else if each.iter().any(|s| *s != TaskStatus::Queued) {
            TaskStatus::Running
        } else {
            TaskStatus::Queued
        };
        self.task_mut(parent).status = status;
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
    let base = match t.status {
        TaskStatus::Queued if t.failures > 0 => "retrying",
        TaskStatus::Queued => "pending",
        TaskStatus::Running => "running",
        TaskStatus::Checking => "checking",
        TaskStatus::WaitingForApproval => "waiting for you",
        TaskStatus::Succeeded => "passed",
        TaskStatus::Failed => "failed",
        TaskStatus::Skipped => "skipped",
    };
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
