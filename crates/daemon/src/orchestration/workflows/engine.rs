//! Runs one workflow run: a driver task plans from the fold ([`RunState::plan`]), records
//! each step in the session's log BEFORE acting on it, and starts attempts as threads of the
//! session (up to `max_workflow_threads` at once). Attempts report back over a channel; the
//! driver alone writes the run's events, so its state never races itself.
//!
//! Crash safety: `span.workflow_task_started` is committed with the thread's row and its
//! `session.thread_created` in one transaction; the task's message carries a delivery key
//! (`run:task:attempt`) so it is delivered once; after a restart an attempt in flight
//! resumes at the step it reached (deliver, await the reply, run the checks).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tether_proto::outcome::{EvaluationResult, OutcomeSpec, Rubric};
use tether_proto::thread::{ThreadAgent, primary_thread_id};
use tether_proto::workflow::{AttemptStatus, RunResult, TaskAgent, TaskSpec, item_parent};
use tether_proto::workflow::{RunError, RunErrorType, RunStatus, TaskOutcome};
use tether_proto::{
    ContentBlock, ErrorBody, ErrorCode, EventBody, ModelUsage, SessionStatus, StopReason,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::fold::{RunState, Step};
use super::templates;
use crate::runtime::Runtime;
use crate::session::live::Session;
use crate::store::Draft;
use crate::store::error::StoreError;
use crate::store::rows::SessionRow;

/// A run the daemon knows: its folded state and, while it runs, its driver's inbox.
pub struct RunHandle {
    pub session_id: String,
    state: Mutex<RunState>,
    control: Mutex<Option<mpsc::UnboundedSender<Msg>>>,
}

impl RunHandle {
    pub fn new(state: RunState) -> Arc<RunHandle> {
        Arc::new(RunHandle {
            session_id: state.session_id.clone(),
            state: Mutex::new(state),
            control: Mutex::new(None),
        })
    }

    pub fn state(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn inbox(&self) -> Option<mpsc::UnboundedSender<Msg>> {
        self.control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `msg` to the driver; an error when the run isn't being driven (stopped, ended).
    pub fn send(&self, msg: Msg) -> Result<(), ErrorBody> {
        let run = self.state().id.clone();
        self.inbox()
            .and_then(|tx| tx.send(msg).ok())
            .ok_or_else(|| {
                ErrorBody::new(
                    ErrorCode::Conflict,
                    format!(
                        "workflow run {run} is not running; `tether workflows resume {run}` starts it again"
                    ),
                )
            })
    }

    pub fn is_driven(&self) -> bool {
        self.inbox().is_some_and(|tx| !tx.is_closed())
    }
}

pub enum Msg {
    Checking {
        task: String,
        attempt: u32,
    },
    Ended {
        task: String,
        attempt: u32,
        status: AttemptStatus,
        output: Option<String>,
        explanation: Option<String>,
        usage: Option<ModelUsage>,
    },
    Answer {
        task: String,
        approve: bool,
        note: Option<String>,
        reply: oneshot::Sender<Result<(), ErrorBody>>,
    },
    Stop {
        reply: oneshot::Sender<Result<(), ErrorBody>>,
    },
}

/// Starts the driver of a running run (no-op if one is already driving it).
pub fn drive(rt: &Arc<Runtime>, primary: Arc<Session>, handle: Arc<RunHandle>) {
    let (tx, rx) = mpsc::unbounded_channel();
    {
        let mut control = handle
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if control.as_ref().is_some_and(|c| !c.is_closed()) {
            return;
        }
        *control = Some(tx.clone());
    }
    let rt = rt.clone();
    tokio::spawn(async move {
        let run = handle.state().id.clone();
        let driver = Driver {
            rt,
            primary,
            handle: handle.clone(),
            tx,
            attempts: HashMap::new(),
        };
        if let Err(e) = driver.run(rx).await {
            tracing::error!(run = %run, error = %e, "the workflow run's driver stopped; the next daemon start resumes it");
        }
        *handle
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    });
}

struct Driver {
    rt: Arc<Runtime>,
    primary: Arc<Session>,
    handle: Arc<RunHandle>,
    tx: mpsc::UnboundedSender<Msg>,
    /// Attempts in flight: task id → what stops them.
    attempts: HashMap<String, CancellationToken>,
}

impl Driver {
    fn run_id(&self) -> String {
        self.handle.state().id.clone()
    }

    /// Commits events of this run and folds them in. An ending notice wakes the agent: the
    /// session goes running in the same commit (decided under the append lock, so a turn
    /// ending meanwhile can't leave the notice unread), then its turn starts.
    async fn record(&self, mut bodies: Vec<EventBody>) -> Result<(), StoreError> {
        let wakes = bodies.iter().any(|b| {
            matches!(
                b,
                EventBody::WorkflowRunStatusEnded {
                    notice: Some(_),
                    ..
                }
            )
        });
        let events = if wakes {
            self.primary
                .append_checked(|st| {
                    if st.status() != SessionStatus::Running {
                        bodies.push(EventBody::SessionStatusRunning {});
                    }
                    Ok::<_, StoreError>(bodies)
                })
                .await?
        } else {
            self.primary.append_retrying(bodies).await?
        };
        {
            let mut st = self.handle.state();
            for e in &events {
                st.apply(e);
            }
        }
        if wakes {
            crate::session::turn::ensure(&self.primary);
        }
        Ok(())
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) -> Result<(), StoreError> {
        let deadline = {
            let st = self.handle.state();
            deadline(&st.created_at, st.spec.timeout())
        };
        if past(deadline) {
            return self.time_out().await;
        }
        self.resume_in_flight();
        let limit = self.rt.config.max_workflow_threads.max(1);
        loop {
            let steps = self.handle.state().plan(limit);
            let acted = !steps.is_empty();
            for step in steps {
                self.step(step).await?;
            }
            if self.handle.state().status != RunStatus::Running {
                return Ok(());
            }
            if acted {
                continue;
            }
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = sleep_until(deadline) => return self.time_out().await,
            };
            let Some(msg) = msg else {
                return Ok(());
            };
            if self.message(msg).await? {
                return Ok(());
            }
        }
    }

    /// The run outlived its `timeout_secs`: the work in flight is stopped and the run ends
    /// with `timeout_error` (hosted).
    async fn time_out(&mut self) -> Result<(), StoreError> {
        let (run, timeout) = {
            let st = self.handle.state();
            (st.id.clone(), st.spec.timeout())
        };
        tracing::info!(run = %run, timeout, "a workflow run timed out");
        let mut bodies = self.stop_in_flight().await;
        bodies.extend(self.end_bodies(RunResult::Error {
            error: RunError {
                kind: RunErrorType::TimeoutError,
                message: format!(
                    "the run did not end within its timeout of {timeout}s (`timeout_secs` in the workflow file); its unfinished tasks were stopped"
                ),
            },
        }));
        self.record(bodies).await
    }

    /// Interrupts the threads of the attempts in flight; their `stopped` ends.
    async fn stop_in_flight(&mut self) -> Vec<EventBody> {
        let run = self.run_id();
        let in_flight = self.attempts_with_threads();
        for (_, token) in self.attempts.drain() {
            token.cancel();
        }
        let mut bodies = Vec::new();
        for (task, n, thread) in in_flight {
            let mut usage = None;
            if let Ok(t) = self.rt.load(&thread).await {
                if (t.is_turn_running() || t.state().status() == SessionStatus::Running)
                    && let Err(e) = crate::session::ops::interrupt(&t).await
                {
                    tracing::warn!(thread = %thread, error = %e.message, "could not interrupt a workflow thread");
                }
                usage = Some(t.state().usage.tokens);
            }
            bodies.push(ended(
                &run,
                &task,
                n,
                AttemptStatus::Stopped,
                None,
                None,
                usage,
            ));
        }
        bodies
    }

    /// The run's last events: the phases still open end, then its error (if any) and end.
    fn end_bodies(&self, result: RunResult) -> Vec<EventBody> {
        let st = self.handle.state();
        let mut bodies: Vec<EventBody> = st
            .open_phases
            .iter()
            .map(|(phase, started)| EventBody::WorkflowRunPhaseEnded {
                workflow_run_id: st.id.clone(),
                workflow_run_phase_id: phase.clone(),
                phase_started_id: started.clone(),
            })
            .collect();
        if let RunResult::Error { error } = &result {
            bodies.push(EventBody::WorkflowRunError {
                workflow_run_id: Some(st.id.clone()),
                error: error.clone(),
            });
        }
        let notice = st.tool_use_id.as_ref().map(|_| ending_notice(&st, &result));
        bodies.push(EventBody::WorkflowRunStatusEnded {
            workflow_run_id: st.id.clone(),
            result,
            notice,
        });
        bodies
    }

    /// The attempts in flight that have a thread: (task, attempt, thread id).
    fn attempts_with_threads(&self) -> Vec<(String, u32, String)> {
        let st = self.handle.state();
        st.tasks
            .iter()
            .filter_map(|(id, t)| match &t.in_flight {
                Some((n, Some(thread))) => Some((id.clone(), *n, thread.clone())),
                _ => None,
            })
            .collect()
    }

    /// After a restart (or resume): attempts whose thread exists go on where they were.
    fn resume_in_flight(&mut self) {
        let in_flight = self.attempts_with_threads();
        for (task, n, thread) in in_flight {
            self.spawn_attempt(task, n, thread);
        }
    }

    async fn step(&mut self, step: Step) -> Result<(), StoreError> {
        let run = self.run_id();
        match step {
            Step::EndPhase { phase, started_id } => {
                self.record(vec![EventBody::WorkflowRunPhaseEnded {
                    workflow_run_id: run,
                    workflow_run_phase_id: phase,
                    phase_started_id: started_id,
                }])
                .await
            }
            Step::End(result) => {
                let bodies = self.end_bodies(result);
                self.record(bodies).await
            }
            Step::Ask { task } => {
                let mut bodies = self.phase_start(&task);
                bodies.push(EventBody::SpanWorkflowTaskStarted {
                    workflow_run_id: run,
                    task_id: task,
                    attempt: 1,
                    thread_id: None,
                    model: None,
                });
                self.record(bodies).await
            }
            Step::FanOut { task, items } => {
                let mut bodies = self.phase_start(&task);
                match items {
                    Ok(items) => bodies.push(EventBody::SpanWorkflowTaskFannedOut {
                        workflow_run_id: run,
                        task_id: task,
                        items,
                    }),
                    Err(why) => {
                        bodies.push(EventBody::SpanWorkflowTaskStarted {
                            workflow_run_id: run.clone(),
                            task_id: task.clone(),
                            attempt: 1,
                            thread_id: None,
                            model: None,
                        });
                        bodies.push(ended(
                            &run,
                            &task,
                            1,
                            AttemptStatus::Failed,
                            None,
                            Some(why),
                            None,
                        ));
                    }
                }
                self.record(bodies).await?;
                crate::crash::point("after_workflow_fan_out");
                Ok(())
            }
            Step::Start { task, attempt } => self.start(task, attempt).await,
        }
    }

    /// `phase_started` for a task's phase the first time the task starts.
    fn phase_start(&self, task: &str) -> Vec<EventBody> {
        let st = self.handle.state();
        let phase = item_parent(task).map_or(task, |(p, _)| p);
        if st.started_phases.contains(phase) {
            return Vec::new();
        }
        vec![EventBody::WorkflowRunPhaseStarted {
            workflow_run_id: st.id.clone(),
            workflow_run_phase_id: phase.to_string(),
        }]
    }

    async fn start(&mut self, task: String, attempt: u32) -> Result<(), StoreError> {
        let run = self.run_id();
        let Some((spec, failures)) = ({
            let st = self.handle.state();
            st.spec_of(&task)
                .cloned()
                .map(|s| (s, st.tasks.get(&task).map_or(0, |t| t.failures)))
        }) else {
            return Ok(());
        };
        let model = match &spec.escalate {
            Some(e) if failures >= e.after => Some(e.model.clone()),
            _ => None,
        };
        let phase = self.phase_start(&task);
        match task_thread(&self.rt, &self.primary, &spec, &task, model) {
            Err(why) => {
                let mut bodies = phase;
                bodies.push(EventBody::SpanWorkflowTaskStarted {
                    workflow_run_id: run.clone(),
                    task_id: task.clone(),
                    attempt,
                    thread_id: None,
                    model: None,
                });
                bodies.push(ended(
                    &run,
                    &task,
                    attempt,
                    AttemptStatus::Failed,
                    None,
                    Some(why),
                    None,
                ));
                self.record(bodies).await
            }
            Ok((row, agent)) => {
                let row = match resolve_named(&self.rt, &spec, row, &agent).await {
                    Ok(r) => r,
                    Err(why) => {
                        let mut bodies = phase;
                        bodies.push(EventBody::SpanWorkflowTaskStarted {
                            workflow_run_id: run.clone(),
                            task_id: task.clone(),
                            attempt,
                            thread_id: None,
                            model: None,
                        });
                        bodies.push(ended(
                            &run,
                            &task,
                            attempt,
                            AttemptStatus::Failed,
                            None,
                            Some(why),
                            None,
                        ));
                        return self.record(bodies).await;
                    }
                };
                let thread_id = row.id.clone();
                let mut drafts: Vec<Draft> = phase.into_iter().map(Draft::new).collect();
                drafts.push(Draft::new(EventBody::SpanWorkflowTaskStarted {
                    workflow_run_id: run.clone(),
                    task_id: task.clone(),
                    attempt,
                    thread_id: Some(thread_id.clone()),
                    model: Some(row.model.clone()),
                }));
                drafts.push(Draft {
                    id: None,
                    session_thread_id: Some(thread_id.clone()),
                    body: EventBody::SessionThreadCreated {
                        agent_name: agent.name().to_string(),
                        workflow_run_id: Some(run.clone()),
                        model: Some(row.model.clone()),
                    },
                });
                let events = self.primary.append_drafts(Some(row), drafts).await?;
                {
                    let mut st = self.handle.state();
                    for e in &events {
                        st.apply(e);
                    }
                }
                crate::crash::point("after_workflow_task_started");
                self.spawn_attempt(task, attempt, thread_id);
                Ok(())
            }
        }
    }

    fn spawn_attempt(&mut self, task: String, attempt: u32, thread: String) {
        let cancel = CancellationToken::new();
        self.attempts.insert(task.clone(), cancel.clone());
        let (prompt, checks, outcome) = {
            let st = self.handle.state();
            let Some(spec) = st.spec_of(&task) else {
                return;
            };
            let item = st.tasks.get(&task).and_then(|t| t.item.clone());
            let mut prompt = templates::render(
                spec.prompt.as_deref().unwrap_or_default(),
                &*st,
                item.as_ref(),
            );
            if let Some(last) = st.tasks.get(&task).and_then(|t| t.verdicts.last()) {
                prompt.push_str(&format!(
                    "\n\nA previous attempt at this task failed: {last}\nDo the task again and make sure that does not happen."
                ));
            }
            (prompt, spec.checks.clone(), spec.outcome.clone())
        };
        let job = Attempt {
            rt: self.rt.clone(),
            primary: self.primary.clone(),
            run: self.run_id(),
            task,
            attempt,
            thread,
            prompt,
            checks,
            outcome,
            cancel,
            tx: self.tx.clone(),
        };
        tokio::spawn(job.run());
    }

    /// Handles one message; true when the driver should stop (the run went idle).
    async fn message(&mut self, msg: Msg) -> Result<bool, StoreError> {
        let run = self.run_id();
        match msg {
            Msg::Checking { task, attempt } => {
                let current = self.in_flight(&task) == Some(attempt)
                    && !self
                        .handle
                        .state()
                        .tasks
                        .get(&task)
                        .is_some_and(|t| t.checking);
                if current {
                    self.record(vec![EventBody::SpanWorkflowTaskChecking {
                        workflow_run_id: run,
                        task_id: task,
                        attempt,
                    }])
                    .await?;
                }
            }
            Msg::Ended {
                task,
                attempt,
                status,
                output,
                explanation,
                usage,
            } => {
                if self.in_flight(&task) == Some(attempt) {
                    self.attempts.remove(&task);
                    self.record(vec![ended(
                        &run,
                        &task,
                        attempt,
                        status,
                        output,
                        explanation,
                        usage,
                    )])
                    .await?;
                    crate::crash::point("after_workflow_task_ended");
                }
            }
            Msg::Answer {
                task,
                approve,
                note,
                reply,
            } => {
                let waiting = {
                    let st = self.handle.state();
                    st.spec_of(&task).is_some_and(|s| s.checkpoint.is_some())
                        && st
                            .tasks
                            .get(&task)
                            .and_then(|t| t.in_flight.as_ref())
                            .is_some()
                };
                if !waiting {
                    let _ = reply.send(Err(ErrorBody::new(
                        ErrorCode::Conflict,
                        format!(
                            "task `{task}` of workflow run {run} is not a checkpoint waiting for an answer (`tether workflows show {run}` lists the tasks and their status)"
                        ),
                    )));
                    return Ok(false);
                }
                let text = match (&note, approve) {
                    (Some(n), true) => format!("approved: {n}"),
                    (None, true) => "approved".to_string(),
                    (Some(n), false) => format!("denied: {n}"),
                    (None, false) => "denied".to_string(),
                };
                let (status, output, explanation) = if approve {
                    (AttemptStatus::Succeeded, Some(text), None)
                } else {
                    (AttemptStatus::Failed, None, Some(text))
                };
                self.record(vec![ended(
                    &run,
                    &task,
                    1,
                    status,
                    output,
                    explanation,
                    None,
                )])
                .await?;
                let _ = reply.send(Ok(()));
            }
            Msg::Stop { reply } => {
                let mut bodies = self.stop_in_flight().await;
                bodies.push(EventBody::WorkflowRunStatusIdle {
                    workflow_run_id: run,
                });
                self.record(bodies).await?;
                let _ = reply.send(Ok(()));
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn in_flight(&self, task: &str) -> Option<u32> {
        self.handle
            .state()
            .tasks
            .get(task)
            .and_then(|t| t.in_flight.as_ref().map(|(n, _)| *n))
    }
}

fn ended(
    run: &str,
    task: &str,
    attempt: u32,
    status: AttemptStatus,
    output: Option<String>,
    explanation: Option<String>,
    usage: Option<ModelUsage>,
) -> EventBody {
    EventBody::SpanWorkflowTaskEnded {
        workflow_run_id: run.to_string(),
        task_id: task.to_string(),
        attempt,
        status,
        output,
        explanation,
        usage,
    }
}

/// What the agent that started a run reads when it ends (hosted: the "ending notice").
fn ending_notice(st: &RunState, result: &RunResult) -> String {
    let how = match result {
        RunResult::Completed { failed_tasks } if failed_tasks.is_empty() => {
            "completed: every task succeeded".to_string()
        }
        RunResult::Completed { failed_tasks } => format!(
            "completed, but these required tasks failed: {}",
            failed_tasks.join(", ")
        ),
        RunResult::Stopped {} => "stopped".to_string(),
        RunResult::Error { error } => format!("error {}: {}", error.kind.as_str(), error.message),
    };
    let mut text = format!(
        "[Workflow run {} (`{}`) ended {how}.]\n\nIts tasks:",
        st.id, st.spec.name
    );
    for t in &st.spec.tasks {
        let status = st.status_of(&t.id);
        text.push_str(&format!("\n\n- `{}`: {}", t.id, status.as_str()));
        let task = st.tasks.get(&t.id);
        if let Some(out) = task.and_then(|x| x.output.as_deref()) {
            text.push_str(&format!("\n  output: {}", cut_text(out, 4000)));
        } else if let Some(v) = task.and_then(|x| x.verdicts.last()) {
            text.push_str(&format!("\n  last failure: {}", cut_text(v, 1000)));
        }
    }
    text
}

fn cut_text(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n).collect();
    out.push_str(&format!("… ({} more characters)", count - n));
    out
}

/// When a run created at `created_at` (RFC 3339) times out; None if the time can't be read
/// (a run is never ended on a misread clock).
pub fn deadline(created_at: &str, timeout_secs: u64) -> Option<chrono::DateTime<chrono::Utc>> {
    let created = chrono::DateTime::parse_from_rfc3339(created_at).ok()?;
    let timeout = chrono::Duration::try_seconds(i64::try_from(timeout_secs).ok()?)?;
    Some(created.to_utc() + timeout)
}

fn past(deadline: Option<chrono::DateTime<chrono::Utc>>) -> bool {
    deadline.is_some_and(|d| chrono::Utc::now() >= d)
}

/// Resolves at `deadline` (never without one). Waits in slices of at most ten minutes: a
/// sleep runs on the monotonic clock, which a suspended machine leaves behind the wall clock.
async fn sleep_until(deadline: Option<chrono::DateTime<chrono::Utc>>) {
    let Some(d) = deadline else {
        return std::future::pending().await;
    };
    loop {
        let left = (d - chrono::Utc::now()).to_std().unwrap_or_default();
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_secs(600))).await;
    }
}

/// The row and agent of a task's thread: the session's workspace, sandbox layer and network;
/// an inline agent gets the session agent's tools with the plan's system prompt (hosted).
fn task_thread(
    rt: &Runtime,
    s: &Session,
    spec: &TaskSpec,
    task: &str,
    escalated: Option<String>,
) -> Result<(SessionRow, ThreadAgent), String> {
    let inline = match &spec.agent {
        Some(TaskAgent::Inline(a)) => a.clone(),
        _ => Default::default(),
    };
    let model = escalated
        .or(inline.model.clone())
        .map(|m| crate::config::canonical_model(&m))
        .unwrap_or_else(|| crate::session::model::current_model(s));
    rt.providers
        .get(crate::config::split_model(&model).0)
        .map_err(|e| format!("model `{model}` can't be used: {e}"))?;
    let agent = ThreadAgent::Inline {
        name: inline.name.unwrap_or_else(|| task.to_string()),
        description: None,
        system: inline.system.clone(),
        model: tether_proto::agent::AgentModel {
            id: model.clone(),
            effort: None,
            speed: None,
        },
        tools: Vec::new(),
        mcp_servers: Vec::new(),
        skills: Vec::new(),
    };
    let row = crate::orchestration::threads::child_row(s, &agent, model, inline.system);
    Ok((row, agent))
}

/// A named (predefined) agent's thread runs that agent's stored prompt, tools and model
/// (an escalation's model still wins).
async fn resolve_named(
    rt: &Runtime,
    spec: &TaskSpec,
    row: SessionRow,
    agent: &ThreadAgent,
) -> Result<SessionRow, String> {
    let Some(TaskAgent::Named(name)) = &spec.agent else {
        return Ok(row);
    };
    let p = tether_proto::method::AgentParams {
        agent: name.clone(),
        version: None,
    };
    let stored = crate::resources::agents::get(&rt.store, &p)
        .await
        .map_err(|e| format!("agent `{name}` can't be used: {}", e.message))?;
    let escalated = spec
        .escalate
        .as_ref()
        .is_some_and(|e| crate::config::canonical_model(&e.model) == row.model);
    let model = match (&stored.spec.model, escalated) {
        (Some(m), false) => crate::config::canonical_model(&m.id),
        _ => row.model.clone(),
    };
    let thread_agent = ThreadAgent::Agent {
        id: stored.id.clone(),
        version: stored.version,
        name: stored.spec.name.clone(),
        description: stored.spec.description.clone(),
        system: stored.spec.system.clone(),
        model: tether_proto::agent::AgentModel {
            id: model.clone(),
            effort: None,
            speed: None,
        },
        tools: Vec::new(),
        mcp_servers: Vec::new(),
        skills: Vec::new(),
    };
    let _ = agent;
    Ok(SessionRow {
        system: stored.spec.system.clone(),
        tools: Some(crate::resources::agents::offered_tools(&stored)),
        agent: Some((stored.id.clone(), stored.version)),
        thread_agent: Some(thread_agent),
        model,
        ..row
    })
}

/// One attempt of a task on its thread.
struct Attempt {
    rt: Arc<Runtime>,
    primary: Arc<Session>,
    run: String,
    task: String,
    attempt: u32,
    thread: String,
    prompt: String,
    checks: Vec<tether_proto::workflow::Check>,
    outcome: Option<TaskOutcome>,
    cancel: CancellationToken,
    tx: mpsc::UnboundedSender<Msg>,
}

impl Attempt {
    async fn run(self) {
        let (status, output, explanation) = match self.work().await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(why) => (AttemptStatus::Failed, None, Some(why)),
        };
        if self.cancel.is_cancelled() {
            return;
        }
        // The thread is this attempt's alone: its usage is the attempt's cost.
        let usage = match self.rt.load(&self.thread).await {
            Ok(t) => Some(t.state().usage.tokens),
            Err(_) => None,
        };
        let _ = self.tx.send(Msg::Ended {
            task: self.task.clone(),
            attempt: self.attempt,
            status,
            output,
            explanation,
            usage,
        });
    }

    /// The task's outcome as the thread's own: the prompt is the outcome's description, so
    /// the thread runs the session outcome loop (grader, revisions) on it. Its id is fixed
    /// by the attempt, so a restart sees it was delivered.
    fn outcome_spec(&self, o: &TaskOutcome) -> OutcomeSpec {
        OutcomeSpec {
            outcome_id: Some(outcome_id(&self.run, &self.task, self.attempt)),
            description: self.prompt.clone(),
            rubric: Rubric::Text {
                content: o.rubric.clone(),
            },
            max_iterations: o.max_iterations,
            checks: Vec::new(),
            grader: None,
            escalate: None,
        }
    }

    /// Delivers the task once: a thread message, or (with an outcome) its definition.
    async fn deliver(&self, thread: &Arc<Session>, key: &str) -> Result<(), String> {
        let (delivered, body, running) = {
            let st = thread.state();
            let (delivered, body) = match &self.outcome {
                Some(o) => {
                    let id = outcome_id(&self.run, &self.task, self.attempt);
                    (
                        st.outcomes.iter().any(|x| x.id == id),
                        EventBody::UserDefineOutcome(self.outcome_spec(o)),
                    )
                }
                None => (
                    st.threads.received.contains_key(key),
                    EventBody::AgentThreadMessageReceived {
                        from_session_thread_id: primary_thread_id(&self.primary.id),
                        from_agent_name: None,
                        content: vec![ContentBlock::text(self.prompt.clone())],
                        tool_use_id: Some(key.to_string()),
                    },
                ),
            };
            (delivered, body, st.status() == SessionStatus::Running)
        };
        if delivered {
            return Ok(());
        }
        let mut bodies = vec![body];
        if !running {
            bodies.push(EventBody::SessionStatusRunning {});
        }
        thread
            .append(bodies)
            .await
            .map_err(|e| format!("the task's message could not be recorded: {e}"))?;
        crate::crash::point("after_workflow_message_delivered");
        Ok(())
    }

    /// None when stopped first.
    #[allow(clippy::type_complexity)]
    async fn work(
        &self,
    ) -> Result<Option<(AttemptStatus, Option<String>, Option<String>)>, String> {
        let thread = self.rt.load(&self.thread).await.map_err(|e| e.message)?;
        let key = format!("{}:{}:{}", self.run, self.task, self.attempt);
        self.deliver(&thread, &key).await?;
        crate::session::turn::ensure(&thread);
        let reply = match &self.outcome {
            Some(_) => {
                let id = outcome_id(&self.run, &self.task, self.attempt);
                await_outcome(&thread, &id, &self.cancel).await
            }
            None => await_reply(&thread, &key, &self.cancel).await,
        };
        let Some((text, ok)) = reply else {
            return Ok(None);
        };
        if !ok {
            return Ok(Some((AttemptStatus::Failed, None, Some(text))));
        }
        if !self.checks.is_empty() {
            let _ = self.tx.send(Msg::Checking {
                task: self.task.clone(),
                attempt: self.attempt,
            });
            for c in &self.checks {
                let timeout = Duration::from_secs(c.timeout_secs.unwrap_or(120));
                let r = crate::session::grader::run_command(
                    &self.primary.toolbox,
                    &c.command,
                    timeout,
                    &self.cancel,
                )
                .await;
                if self.cancel.is_cancelled() {
                    return Ok(None);
                }
                let failure = match r {
                    Ok(r) if r.exit_code == Some(0) => None,
                    Ok(r) if r.timed_out => Some(format!(
                        "check `{}` timed out after {}s",
                        c.command,
                        timeout.as_secs()
                    )),
                    Ok(r) => Some(format!(
                        "check `{}` failed (exit {}): {}",
                        c.command,
                        r.exit_code.map_or("signal".into(), |c| c.to_string()),
                        tail(&r.output, 400)
                    )),
                    Err(why) => Some(format!("check `{}` could not run: {why}", c.command)),
                };
                if let Some(f) = failure {
                    return Ok(Some((AttemptStatus::Failed, Some(text), Some(f))));
                }
            }
        }
        // The run's threads are archived once done (hosted: by the run's end), so they
        // don't count against the session's child-thread limit.
        if let Err(e) = self.rt.archive(&thread).await {
            tracing::warn!(thread = %thread.id, error = %e.message, "could not archive a finished workflow thread");
        }
        Ok(Some((AttemptStatus::Succeeded, Some(text), None)))
    }
}

/// The outcome id of an attempt's task outcome.
fn outcome_id(run: &str, task: &str, attempt: u32) -> String {
    format!(
        "outc_{}_{task}_{attempt}",
        run.strip_prefix("wrun_").unwrap_or(run)
    )
}

/// The thread's reply once its outcome loop is over and it is idle: `(text, ok)`, ok only
/// when the grader was satisfied (any other verdict is a failed attempt, explained by the
/// grader); None when `cancel` fired first.
async fn await_outcome(
    thread: &Arc<Session>,
    outcome: &str,
    cancel: &CancellationToken,
) -> Option<(String, bool)> {
    let mut appended = thread.watch_appends();
    loop {
        {
            let st = thread.state();
            if let Some(o) = st.outcomes.iter().find(|o| o.id == outcome)
                && !o.is_active()
                && st.status() == SessionStatus::Idle
            {
                let text = st.last_agent_text.clone().unwrap_or_default();
                return Some(match &o.phase {
                    crate::session::state::OutcomePhase::Done(EvaluationResult::Satisfied) => {
                        (text, true)
                    }
                    crate::session::state::OutcomePhase::Done(r) => {
                        let why = o
                            .last_end
                            .as_ref()
                            .map(|e| e.explanation.clone())
                            .unwrap_or_default();
                        (
                            format!(
                                "the outcome was graded `{}`: {}",
                                serde_json::to_value(r)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_string))
                                    .unwrap_or_default(),
                                why.trim()
                            ),
                            false,
                        )
                    }
                    _ => (text, false),
                });
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return None,
            changed = appended.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let t = s.trim();
    let count = t.chars().count();
    t.chars().skip(count.saturating_sub(n)).collect()
}

/// The thread's reply to the task's message: `(text, ok)` once it is idle after it; None
/// when `cancel` fired first.
async fn await_reply(
    thread: &Arc<Session>,
    key: &str,
    cancel: &CancellationToken,
) -> Option<(String, bool)> {
    let mut appended = thread.watch_appends();
    loop {
        {
            let st = thread.state();
            if let Some(&seq) = st.threads.received.get(key)
                && st.status() == SessionStatus::Idle
                && st.idle_seq > seq
            {
                match &st.stop_reason {
                    Some(StopReason::RequiresAction { .. }) => {}
                    Some(StopReason::EndTurn) | None => {
                        return Some((st.last_agent_text.clone().unwrap_or_default(), true));
                    }
                    Some(other) => {
                        return Some((
                            format!(
                                "the task's thread {} stopped without a reply ({})",
                                thread.id,
                                serde_json::to_value(other)
                                    .ok()
                                    .and_then(|v| v
                                        .get("type")
                                        .and_then(Value::as_str)
                                        .map(str::to_string))
                                    .unwrap_or_default()
                            ),
                            false,
                        ));
                    }
                }
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return None,
            changed = appended.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
        }
    }
}
