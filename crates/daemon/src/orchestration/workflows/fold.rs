//! A run's state as a pure fold over its events (its `workflow_run.*` and
//! `span.workflow_task_*` events in the session's log), and what the run should do next
//! ([`RunState::plan`]). Nothing else is authoritative: after a restart the same events give
//! the same state, so a finished task is never run again, a fan-out's items are the ones
//! recorded, and a checkpoint's answer is the one recorded.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tether_proto::workflow::{
    AttemptStatus, MAX_RUN_THREADS_LIFETIME, RunError, RunErrorType, RunResult, RunStatus, RunTask,
    TaskSpec, TaskStatus, WorkflowRun, WorkflowSpec, item_parent, item_task_id,
};
use tether_proto::{Event, EventBody, ModelUsage};

use super::templates::{self, Outputs};

#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub id: String,
    pub session_id: String,
    pub spec: WorkflowSpec,
    pub created_at: String,
    pub status: RunStatus,
    pub result: Option<RunResult>,
    pub ended_at: Option<String>,
    /// Spec tasks and fan-out items (`parent[i]`), by id.
    pub tasks: BTreeMap<String, TaskState>,
    /// Display and planning order: spec order, each parent's items right after it.
    pub order: Vec<String>,
    /// Phases started and not yet ended: phase (task) id → its `phase_started` event id.
    pub open_phases: BTreeMap<String, String>,
    pub started_phases: BTreeSet<String>,
    /// Attempts that had a thread, over the run's life (the hosted ~1000 limit).
    pub threads_started: usize,
    /// The agent's `start_workflow` call that started the run (None: a person's run).
    pub tool_use_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskState {
    pub attempts: u32,
    pub failures: u32,
    /// The attempt started and not ended: its number and thread (None for a checkpoint).
    pub in_flight: Option<(u32, Option<String>)>,
    pub checking: bool,
    pub succeeded: bool,
    pub output: Option<String>,
    pub verdicts: Vec<String>,
    pub thread: Option<String>,
    pub model: Option<String>,
    /// A for_each parent's items once fanned out.
    pub items: Option<Vec<Value>>,
    /// A fan-out item's value.
    pub item: Option<Value>,
    /// Every ended attempt's thread usage (a fan-out parent's is its items').
    pub usage: ModelUsage,
}

/// What the run does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Start attempt `attempt` of an agent task (a spec task or a fan-out item).
    Start {
        task: String,
        attempt: u32,
    },
    /// A checkpoint's dependencies are done: it starts waiting for an answer.
    Ask {
        task: String,
    },
    /// A for_each task's items are known (or can't be, and it fails).
    FanOut {
        task: String,
        items: Result<Vec<Value>, String>,
    },
    EndPhase {
        phase: String,
        started_id: String,
    },
    End(RunResult),
}

impl Outputs for RunState {
    fn output(&self, task: &str) -> Option<&str> {
        self.tasks.get(task).and_then(|t| t.output.as_deref())
    }
}

impl RunState {
    /// The state right after `workflow_run.created`; None for any other event or one
    /// without its plan.
    pub fn created(e: &Event) -> Option<RunState> {
        let EventBody::WorkflowRunCreated {
            workflow_run_id,
            spec: Some(spec),
            tool_use_id,
            ..
        } = &e.body
        else {
            return None;
        };
        let spec = (**spec).clone();
        let order: Vec<String> = spec.tasks.iter().map(|t| t.id.clone()).collect();
        let tasks = order
            .iter()
            .map(|id| (id.clone(), TaskState::default()))
            .collect();
        Some(RunState {
            id: workflow_run_id.clone(),
            session_id: e.session_id.clone(),
            spec,
            created_at: e.processed_at.clone().unwrap_or_default(),
            // A run starts idle until `status_running` (hosted: "a run may start idle").
            status: RunStatus::Idle,
            result: None,
            ended_at: None,
            tasks,
            order,
            open_phases: BTreeMap::new(),
            started_phases: BTreeSet::new(),
            threads_started: 0,
            tool_use_id: tool_use_id.clone(),
        })
    }

    /// Folds the run `run_id` out of a session's events.
    pub fn from_log<'a>(run_id: &str, events: impl IntoIterator<Item = &'a Event>) -> Option<Self> {
        let mut state: Option<RunState> = None;
        for e in events {
            if e.body.workflow_run_id() != Some(run_id) {
                continue;
            }
            match &mut state {
                None => state = RunState::created(e),
                Some(s) => s.apply(e),
            }
        }
        state
    }

    /// The spec of a task or of a fan-out item's parent.
    pub fn spec_of(&self, id: &str) -> Option<&TaskSpec> {
        let base = item_parent(id).map_or(id, |(p, _)| p);
        self.spec.task(base)
    }

    pub fn apply(&mut self, e: &Event) {
        if e.body.workflow_run_id() != Some(self.id.as_str()) {
            return;
        }
        match &e.body {
            EventBody::WorkflowRunStatusRunning { .. } => self.status = RunStatus::Running,
            EventBody::WorkflowRunStatusIdle { .. } => self.status = RunStatus::Idle,
            EventBody::WorkflowRunStatusEnded { result, .. } => {
                self.status = RunStatus::Ended;
                self.result = Some(result.clone());
                self.ended_at = e.processed_at.clone();
            }
            EventBody::WorkflowRunPhaseStarted {
                workflow_run_phase_id,
                ..
            } => {
                self.open_phases
                    .insert(workflow_run_phase_id.clone(), e.id.clone());
                self.started_phases.insert(workflow_run_phase_id.clone());
            }
            EventBody::WorkflowRunPhaseEnded {
                workflow_run_phase_id,
                ..
            } => {
                self.open_phases.remove(workflow_run_phase_id);
            }
            EventBody::SpanWorkflowTaskStarted {
                task_id,
                attempt,
                thread_id,
                model,
                ..
            } => {
                if thread_id.is_some() {
                    self.threads_started += 1;
                }
                let t = self.tasks.entry(task_id.clone()).or_default();
                t.attempts = *attempt;
                t.in_flight = Some((*attempt, thread_id.clone()));
                t.checking = false;
                if thread_id.is_some() {
                    t.thread = thread_id.clone();
                    t.model = model.clone();
                }
            }
            EventBody::SpanWorkflowTaskFannedOut { task_id, items, .. } => {
                if let Some(t) = self.tasks.get_mut(task_id) {
                    t.items = Some(items.clone());
                }
                let at = self
                    .order
                    .iter()
                    .position(|id| id == task_id)
                    .map_or(self.order.len(), |i| i + 1);
                let ids: Vec<String> = (0..items.len()).map(|i| item_task_id(task_id, i)).collect();
                for (id, item) in ids.iter().zip(items) {
                    self.tasks.insert(
                        id.clone(),
                        TaskState {
                            item: Some(item.clone()),
                            ..TaskState::default()
                        },
                    );
                }
                self.order.splice(at..at, ids);
            }
            EventBody::SpanWorkflowTaskChecking { task_id, .. } => {
                if let Some(t) = self.tasks.get_mut(task_id) {
                    t.checking = true;
                }
            }
            EventBody::SpanWorkflowTaskEnded {
                task_id,
                status,
                output,
                explanation,
                usage,
                ..
            } => {
                let t = self.tasks.entry(task_id.clone()).or_default();
                t.in_flight = None;
                if let Some(u) = usage {
                    t.usage.add(u);
                }
                t.checking = false;
                match status {
                    AttemptStatus::Succeeded => {
                        t.succeeded = true;
                        t.output = output.clone();
                    }
                    AttemptStatus::Failed => {
                        t.failures += 1;
                        t.verdicts
                            .push(explanation.clone().unwrap_or_else(|| "failed".into()));
                        if output.is_some() {
                            t.output = output.clone();
                        }
                    }
                    AttemptStatus::Stopped => {}
                }
                // Fan-in: the parent's output is its items' outputs once all succeeded.
                if let Some((parent, _)) = item_parent(task_id)
                    && self.status_of(parent) == TaskStatus::Succeeded
                {
                    let out = self.fan_in(parent);
                    if let Some(p) = self.tasks.get_mut(parent) {
                        p.output = out;
                    }
                }
            }
            _ => {}
        }
    }

    pub fn status_of(&self, id: &str) -> TaskStatus {
        let (Some(t), Some(spec)) = (self.tasks.get(id), self.spec_of(id)) else {
            return TaskStatus::Queued;
        };
        let fan_parent = spec.for_each.is_some() && item_parent(id).is_none();
        let status = if fan_parent {
            match &t.items {
                // The items couldn't be resolved: the parent itself failed.
                None if t.failures > 0 => TaskStatus::Failed,
                None => TaskStatus::Queued,
                Some(items) => {
                    let each: Vec<TaskStatus> = (0..items.len())
                        .map(|i| self.status_of(&item_task_id(id, i)))
                        .collect();
                    if each.contains(&TaskStatus::Failed) && each.iter().all(|s| s.is_final()) {
                        TaskStatus::Failed
                    } else if each.iter().all(|s| *s == TaskStatus::Succeeded) {
                        TaskStatus::Succeeded
                    } else {
                        TaskStatus::Running
                    }
                }
            }
        } else if t.succeeded {
            TaskStatus::Succeeded
        } else if t.in_flight.is_some() {
            if spec.checkpoint.is_some() {
                TaskStatus::WaitingForApproval
            } else if t.checking {
                TaskStatus::Checking
            } else {
                TaskStatus::Running
            }
        } else if t.failures > spec.retries || (spec.checkpoint.is_some() && t.failures > 0) {
            TaskStatus::Failed
        } else {
            TaskStatus::Queued
        };
        if self.status == RunStatus::Ended && !status.is_final() {
            TaskStatus::Skipped
        } else {
            status
        }
    }

    /// A fan-out parent's output once every item succeeded: the items' outputs as a JSON
    /// array (fan-in), so dependents read them with `{{task.output}}`.
    pub fn fan_in(&self, id: &str) -> Option<String> {
        let items = self.tasks.get(id)?.items.as_ref()?;
        let outs: Vec<Value> = (0..items.len())
            .map(|i| {
                Value::String(
                    self.output(&item_task_id(id, i))
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        Some(Value::Array(outs).to_string())
    }

    /// Threads of this run working now.
    pub fn threads_working(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| matches!(t.in_flight, Some((_, Some(_)))))
            .count()
    }

    fn deps_done(&self, spec: &TaskSpec) -> bool {
        spec.depends_on.iter().all(|d| match self.status_of(d) {
            TaskStatus::Succeeded => true,
            TaskStatus::Failed => self.spec.task(d).is_some_and(|s| s.optional),
            _ => false,
        })
    }

    /// Required spec tasks that failed.
    pub fn failed_required(&self) -> Vec<String> {
        self.spec
            .tasks
            .iter()
            .filter(|t| !t.optional && self.status_of(&t.id) == TaskStatus::Failed)
            .map(|t| t.id.clone())
            .collect()
    }

    /// What to do next, given at most `limit` threads working at once. Empty: wait for an
    /// attempt to end or an answer.
    pub fn plan(&self, limit: usize) -> Vec<Step> {
        if self.status != RunStatus::Running {
            return Vec::new();
        }
        let mut steps = Vec::new();
        let ended_phases: Vec<Step> = self
            .open_phases
            .iter()
            .filter(|(phase, _)| self.status_of(phase).is_final())
            .map(|(phase, id)| Step::EndPhase {
                phase: phase.clone(),
                started_id: id.clone(),
            })
            .collect();
        steps.extend(ended_phases);
        let failed = self.failed_required();
        let working = self.threads_working();
        let all_final = self
            .spec
            .tasks
            .iter()
            .all(|t| self.status_of(&t.id).is_final());
        if all_final || (!failed.is_empty() && working == 0) {
            steps.extend(
                self.open_phases
                    .iter()
                    .filter(|(phase, _)| !self.status_of(phase).is_final())
                    .map(|(phase, id)| Step::EndPhase {
                        phase: phase.clone(),
                        started_id: id.clone(),
                    }),
            );
            steps.push(Step::End(RunResult::Completed {
                failed_tasks: failed,
            }));
            return steps;
        }
        if !failed.is_empty() {
            // A required task failed: nothing new starts; the run ends when the work in
            // flight has.
            return steps;
        }
        let mut slots = limit.saturating_sub(working);
        let mut threads = self.threads_started;
        for id in &self.order {
            let Some(spec) = self.spec_of(id) else {
                continue;
            };
            let is_item = item_parent(id).is_some();
            if !is_item && !self.deps_done(spec) {
                continue;
            }
            if self.status_of(id) != TaskStatus::Queued {
                continue;
            }
            if spec.checkpoint.is_some() {
                steps.push(Step::Ask { task: id.clone() });
            } else if spec.for_each.is_some() && !is_item {
                let items = spec
                    .for_each
                    .as_deref()
                    .map(|f| templates::items(f, self))
                    .unwrap_or_else(|| Ok(Vec::new()));
                if let Ok(list) = &items
                    && threads + list.len() > MAX_RUN_THREADS_LIFETIME
                {
                    return vec![Step::End(thread_limit(threads + list.len()))];
                }
                steps.push(Step::FanOut {
                    task: id.clone(),
                    items,
                });
            } else if slots > 0 {
                if threads >= MAX_RUN_THREADS_LIFETIME {
                    return vec![Step::End(thread_limit(threads + 1))];
                }
                slots -= 1;
                threads += 1;
                let attempt = self.tasks.get(id).map_or(0, |t| t.attempts) + 1;
                steps.push(Step::Start {
                    task: id.clone(),
                    attempt,
                });
            }
        }
        steps
    }

    /// The run as `workflow.get` shows it.
    pub fn view(&self) -> WorkflowRun {
        let tasks = self
            .order
            .iter()
            .map(|id| {
                let t = self.tasks.get(id).cloned().unwrap_or_default();
                let spec = self.spec_of(id);
                let status = self.status_of(id);
                let output = t.output.clone();
                let usage = match &t.items {
                    Some(items) => {
                        let mut u = t.usage;
                        for i in 0..items.len() {
                            if let Some(item) = self.tasks.get(&item_task_id(id, i)) {
                                u.add(&item.usage);
                            }
                        }
                        u
                    }
                    None => t.usage,
                };
                RunTask {
                    id: id.clone(),
                    depends_on: match item_parent(id) {
                        Some(_) => Vec::new(),
                        None => spec.map(|s| s.depends_on.clone()).unwrap_or_default(),
                    },
                    status,
                    attempts: t.attempts,
                    failures: t.failures,
                    session_thread_id: t.thread.clone(),
                    model: t.model.clone(),
                    output,
                    verdicts: t.verdicts.clone(),
                    question: spec.and_then(|s| s.checkpoint.clone()),
                    items: t.items.as_ref().map(Vec::len),
                    optional: spec.is_some_and(|s| s.optional),
                    usage,
                }
            })
            .collect();
        // Spec tasks and items, each once (a fan-out parent's own usage is its items').
        let mut usage = ModelUsage::default();
        for t in self.tasks.values() {
            usage.add(&t.usage);
        }
        WorkflowRun {
            id: self.id.clone(),
            object_type: "workflow_run".into(),
            session_id: self.session_id.clone(),
            name: self.spec.name.clone(),
            description: self.spec.description.clone(),
            status: self.status,
            result: self.result.clone(),
            tasks,
            usage,
            created_at: self.created_at.clone(),
            ended_at: self.ended_at.clone(),
        }
    }
}

fn thread_limit(n: usize) -> RunResult {
    RunResult::Error {
        error: RunError {
            kind: RunErrorType::ThreadLimitError,
            message: format!(
                "the run would need {n} threads; a run may start at most {MAX_RUN_THREADS_LIFETIME} over its life"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tether_proto::workflow::Phase;

    struct Log {
        run: String,
        seq: u64,
        events: Vec<Event>,
    }

    impl Log {
        fn new(spec: serde_json::Value) -> (Log, RunState) {
            let spec: WorkflowSpec = serde_json::from_value(spec).unwrap();
            spec.validate().unwrap();
            let mut log = Log {
                run: "wrun_1".into(),
                seq: 0,
                events: Vec::new(),
            };
            let phases = spec
                .tasks
                .iter()
                .map(|t| Phase {
                    id: t.id.clone(),
                    name: t.id.clone(),
                    description: None,
                })
                .collect();
            log.push(EventBody::WorkflowRunCreated {
                workflow_run_id: "wrun_1".into(),
                name: spec.name.clone(),
                description: None,
                phases,
                spec: Some(Box::new(spec)),
                tool_use_id: None,
            });
            log.push(EventBody::WorkflowRunStatusRunning {
                workflow_run_id: "wrun_1".into(),
            });
            let st = RunState::from_log("wrun_1", &log.events).unwrap();
            (log, st)
        }

        fn push(&mut self, body: EventBody) -> Event {
            self.seq += 1;
            let e = Event {
                id: format!("sevt_{}", self.seq),
                session_id: "sesn_1".into(),
                seq: self.seq,
                processed_at: Some("2026-12-07T10:00:00Z".into()),
                session_thread_id: None,
                body,
            };
            self.events.push(e.clone());
            e
        }

        fn started(&mut self, task: &str, attempt: u32) -> Event {
            let run = self.run.clone();
            self.push(EventBody::SpanWorkflowTaskStarted {
                workflow_run_id: run,
                task_id: task.into(),
                attempt,
                thread_id: Some(format!("sthr_{task}_{attempt}")),
                model: None,
            })
        }

        fn ended(&mut self, task: &str, attempt: u32, ok: bool, output: &str) -> Event {
            let run = self.run.clone();
            self.push(EventBody::SpanWorkflowTaskEnded {
                workflow_run_id: run,
                task_id: task.into(),
                attempt,
                status: if ok {
                    AttemptStatus::Succeeded
                } else {
                    AttemptStatus::Failed
                },
                output: Some(output.into()),
                explanation: (!ok).then(|| "check failed".into()),
                usage: Some(ModelUsage {
                    input_tokens: 10,
                    output_tokens: 2,
                    ..ModelUsage::default()
                }),
            })
        }
    }

    fn starts(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Start { task, .. } => Some(task.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_diamond_runs_in_dependency_order_and_the_fold_matches_the_live_state() {
        let (mut log, mut st) = Log::new(json!({"name": "d", "tasks": [
            {"id": "a", "prompt": "x"},
            {"id": "b", "prompt": "x", "depends_on": ["a"]},
            {"id": "c", "prompt": "x", "depends_on": ["a"]},
            {"id": "d", "prompt": "{{b.output}} {{c.output}}", "depends_on": ["b", "c"]}]}));
        assert_eq!(starts(&st.plan(64)), ["a"]);
        for e in [log.started("a", 1), log.ended("a", 1, true, "A")] {
            st.apply(&e);
        }
        assert_eq!(starts(&st.plan(64)), ["b", "c"]);
        assert_eq!(starts(&st.plan(1)), ["b"], "the limit caps threads at once");
        for e in [log.started("b", 1), log.started("c", 1)] {
            st.apply(&e);
        }
        assert!(starts(&st.plan(64)).is_empty());
        for e in [log.ended("b", 1, true, "B"), log.ended("c", 1, true, "C")] {
            st.apply(&e);
        }
        assert_eq!(starts(&st.plan(64)), ["d"]);
        for e in [log.started("d", 1), log.ended("d", 1, true, "D")] {
            st.apply(&e);
        }
        assert_eq!(
            st.plan(64).last(),
            Some(&Step::End(RunResult::Completed {
                failed_tasks: vec![]
            }))
        );
        assert_eq!(RunState::from_log("wrun_1", &log.events).unwrap(), st);
    }

    #[test]
    fn a_failed_attempt_is_retried_then_fails_the_run() {
        let (mut log, mut st) = Log::new(json!({"name": "r", "tasks": [
            {"id": "a", "prompt": "x", "retries": 1},
            {"id": "b", "prompt": "x", "depends_on": ["a"]}]}));
        for e in [log.started("a", 1), log.ended("a", 1, false, "")] {
            st.apply(&e);
        }
        assert_eq!(
            st.plan(64),
            vec![Step::Start {
                task: "a".into(),
                attempt: 2
            }]
        );
        for e in [log.started("a", 2), log.ended("a", 2, false, "")] {
            st.apply(&e);
        }
        assert_eq!(st.status_of("a"), TaskStatus::Failed);
        let a = st.view().tasks.into_iter().find(|t| t.id == "a").unwrap();
        assert_eq!(a.usage.input_tokens, 20, "both attempts' threads count");
        assert_eq!(st.view().usage.input_tokens, 20);
        assert_eq!(
            st.plan(64),
            vec![Step::End(RunResult::Completed {
                failed_tasks: vec!["a".into()]
            })]
        );
    }

    #[test]
    fn fan_out_items_are_fixed_once_and_fan_in_as_a_list() {
        let (mut log, mut st) = Log::new(json!({"name": "f", "tasks": [
            {"id": "list", "prompt": "x"},
            {"id": "each", "prompt": "do {{item}}", "depends_on": ["list"], "for_each": "{{list.output.xs}}"},
            {"id": "sum", "prompt": "{{each.output}}", "depends_on": ["each"]}]}));
        for e in [
            log.started("list", 1),
            log.ended("list", 1, true, "{\"xs\": [1, 2, 3]}"),
        ] {
            st.apply(&e);
        }
        let steps = st.plan(64);
        assert_eq!(
            steps,
            vec![Step::FanOut {
                task: "each".into(),
                items: Ok(vec![json!(1), json!(2), json!(3)])
            }]
        );
        let e = log.push(EventBody::SpanWorkflowTaskFannedOut {
            workflow_run_id: "wrun_1".into(),
            task_id: "each".into(),
            items: vec![json!(1), json!(2), json!(3)],
        });
        st.apply(&e);
        assert_eq!(starts(&st.plan(2)), ["each[0]", "each[1]"]);
        for i in 0..3 {
            let id = format!("each[{i}]");
            for e in [
                log.started(&id, 1),
                log.ended(&id, 1, true, &format!("r{i}")),
            ] {
                st.apply(&e);
            }
        }
        assert_eq!(st.status_of("each"), TaskStatus::Succeeded);
        assert_eq!(st.output("each").unwrap(), "[\"r0\",\"r1\",\"r2\"]");
        assert_eq!(starts(&st.plan(64)), ["sum"]);
        assert_eq!(
            st.order,
            ["list", "each", "each[0]", "each[1]", "each[2]", "sum"]
        );
    }

    #[test]
    fn a_checkpoint_waits_and_a_denial_fails_it() {
        let (mut log, mut st) = Log::new(json!({"name": "c", "tasks": [
            {"id": "ok", "checkpoint": "Go?"}, {"id": "after", "prompt": "x", "depends_on": ["ok"]}]}));
        assert_eq!(st.plan(64), vec![Step::Ask { task: "ok".into() }]);
        let e = log.push(EventBody::SpanWorkflowTaskStarted {
            workflow_run_id: "wrun_1".into(),
            task_id: "ok".into(),
            attempt: 1,
            thread_id: None,
            model: None,
        });
        st.apply(&e);
        assert_eq!(st.status_of("ok"), TaskStatus::WaitingForApproval);
        assert!(st.plan(64).is_empty());
        st.apply(&log.ended("ok", 1, false, "denied"));
        assert_eq!(st.status_of("ok"), TaskStatus::Failed);
        assert!(matches!(st.plan(64).last(), Some(Step::End(_))));
    }

    #[test]
    fn too_many_items_end_the_run_with_thread_limit_error() {
        let (mut log, mut st) = Log::new(json!({"name": "big", "tasks": [
            {"id": "l", "prompt": "x"},
            {"id": "e", "prompt": "{{item}}", "depends_on": ["l"], "for_each": "{{l.output}}"}]}));
        let many = serde_json::to_string(&(0..1024).collect::<Vec<_>>()).unwrap();
        for e in [log.started("l", 1), log.ended("l", 1, true, &many)] {
            st.apply(&e);
        }
        assert!(matches!(
            st.plan(64).as_slice(),
            [Step::End(RunResult::Error { error })] if error.kind == RunErrorType::ThreadLimitError
        ));
    }
}
