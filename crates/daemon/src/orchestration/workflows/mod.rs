//! Workflow runs (issue 23): task graphs run on a session's threads, started from a file by
//! a person (`workflow.run`) or by an agent. A run lives in its session's log: its state is
//! the fold of its events ([`fold`]), driven by [`engine`]; [`templates`] fills prompts from
//! finished tasks' outputs.
//!
//! Runs the daemon knows are kept in a registry keyed by run id (the runtime can't name
//! orchestration types: nothing below orchestration imports it). Ended runs are folded from
//! the log when asked for.

pub mod engine;
pub mod fold;
pub mod templates;
pub mod tool;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use tether_proto::workflow::{
    MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_OPEN_RUNS, Phase, RunError, RunErrorType, RunStatus,
    WorkflowRun, WorkflowSpec,
};
use tether_proto::{ErrorBody, ErrorCode, Event, EventBody};
use tokio::sync::oneshot;

use crate::runtime::Runtime;
use crate::session::live::Session;
use crate::store::error::StoreError;
use engine::{Msg, RunHandle};
use fold::RunState;

static RUNS: LazyLock<Mutex<HashMap<String, Arc<RunHandle>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn registry() -> std::sync::MutexGuard<'static, HashMap<String, Arc<RunHandle>>> {
    RUNS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Run ids of the log's `workflow_run.created` and `status_ended` events, in log order:
/// `(session_id, run_id, ended)`.
async fn run_index(
    rt: &Runtime,
    session: Option<String>,
) -> Result<Vec<(String, String, bool)>, StoreError> {
    rt.store
        .read(move |c| {
            let sql = "SELECT session_id, type, body FROM events INDEXED BY events_workflow_runs
                 WHERE type IN ('workflow_run.created', 'workflow_run.status_ended')
                 AND (?1 IS NULL OR session_id = ?1) ORDER BY rowid";
            let mut st = c.prepare_cached(sql)?;
            let mut rows = st.query([session.as_deref()])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let sid: String = r.get(0)?;
                let kind: String = r.get(1)?;
                let body: String = r.get(2)?;
                let Ok(e) = serde_json::from_str::<Event>(&body) else {
                    continue;
                };
                if let Some(run) = e.body.workflow_run_id() {
                    out.push((sid, run.to_string(), kind == "workflow_run.status_ended"));
                }
            }
            Ok(out)
        })
        .await
}

/// Runs of a session not yet ended (idle ones included).
async fn open_runs(rt: &Runtime, session: &str) -> Result<Vec<String>, StoreError> {
    let index = run_index(rt, Some(session.to_string())).await?;
    let ended: std::collections::HashSet<&str> = index
        .iter()
        .filter(|(_, _, e)| *e)
        .map(|(_, r, _)| r.as_str())
        .collect();
    Ok(index
        .iter()
        .filter(|(_, r, e)| !*e && !ended.contains(r.as_str()))
        .map(|(_, r, _)| r.clone())
        .collect())
}

fn not_found(run: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::NotFound,
        format!("no workflow run `{run}`; `tether workflows ls` lists the runs"),
    )
}

/// The run's handle, folded from its session's log when the daemon doesn't hold it yet.
async fn handle(rt: &Arc<Runtime>, run: &str) -> Result<Arc<RunHandle>, ErrorBody> {
    if let Some(h) = registry().get(run) {
        return Ok(h.clone());
    }
    let index = run_index(rt, None).await?;
    let Some((session, _, _)) = index.iter().find(|(_, r, _)| r == run) else {
        return Err(not_found(run));
    };
    let events = rt
        .store
        .read_events(session, 0, None, u32::MAX, false)
        .await?;
    let state = RunState::from_log(run, &events).ok_or_else(|| not_found(run))?;
    let h = RunHandle::new(state);
    Ok(registry().entry(run.to_string()).or_insert(h).clone())
}

/// `workflow.run`: checks the plan and the session's limit, records the run (created and
/// running, one commit) and starts driving it.
pub async fn run(
    rt: &Arc<Runtime>,
    session: &str,
    spec: WorkflowSpec,
) -> Result<WorkflowRun, ErrorBody> {
    spec.validate().map_err(|e| {
        ErrorBody::new(
            ErrorCode::InvalidParams,
            format!("the workflow is not valid: {e}"),
        )
    })?;
    let s = rt.session(session).await?;
    if s.thread.is_some() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidParams,
            format!("{} is a thread; start a workflow run in its session", s.id),
        ));
    }
    crate::session::ops::check_writable(&s)?;
    start(rt, &s, spec, None).await
}

/// Records and starts a run in `s` (a person's, or an agent's `start_workflow` call).
pub async fn start(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    spec: WorkflowSpec,
    tool_use_id: Option<String>,
) -> Result<WorkflowRun, ErrorBody> {
    start_as(rt, s, spec, tool_use_id, crate::ids::workflow_run_id()).await
}

/// [`start`] under an id the caller reserved (a deployment run records it before the run
/// exists, so a restart can tell whether the run was made).
pub async fn start_as(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    spec: WorkflowSpec,
    tool_use_id: Option<String>,
    id: String,
) -> Result<WorkflowRun, ErrorBody> {
    let open = open_runs(rt, &s.id).await?;
    if open.len() >= MAX_OPEN_RUNS {
        let message = format!(
            "this session already has {} open workflow runs, the most it may have ({MAX_OPEN_RUNS}); stop one for good or wait for one to end ({})",
            open.len(),
            open.join(", ")
        );
        s.append_retrying(vec![EventBody::WorkflowRunError {
            workflow_run_id: None,
            error: RunError {
                kind: RunErrorType::MaxWorkflowRunsError,
                message: message.clone(),
            },
        }])
        .await?;
        return Err(ErrorBody::new(
            ErrorCode::Conflict,
            format!("{}: {message}", RunErrorType::MaxWorkflowRunsError.as_str()),
        ));
    }
    let phases = spec
        .tasks
        .iter()
        .map(|t| Phase {
            id: t.id.clone(),
            name: cut(&t.id, MAX_NAME_CHARS),
            description: t
                .prompt
                .as_deref()
                .or(t.checkpoint.as_deref())
                .map(|p| cut(p, MAX_DESCRIPTION_CHARS)),
        })
        .collect();
    let events = s
        .append_retrying(vec![
            EventBody::WorkflowRunCreated {
                workflow_run_id: id.clone(),
                name: cut(&spec.name, MAX_NAME_CHARS),
                description: spec
                    .description
                    .as_deref()
                    .map(|d| cut(d, MAX_DESCRIPTION_CHARS)),
                phases,
                spec: Some(Box::new(spec)),
                tool_use_id,
            },
            EventBody::WorkflowRunStatusRunning {
                workflow_run_id: id.clone(),
            },
        ])
        .await?;
    crate::crash::point("after_workflow_run_created");
    let state = RunState::from_log(&id, &events)
        .ok_or_else(|| ErrorBody::new(ErrorCode::Internal, "the new run could not be folded"))?;
    let view = state.view();
    let h = RunHandle::new(state);
    registry().insert(id, h.clone());
    engine::drive(rt, s.clone(), h);
    Ok(view)
}

pub async fn get(rt: &Arc<Runtime>, run: &str) -> Result<WorkflowRun, ErrorBody> {
    Ok(handle(rt, run).await?.state().view())
}

/// Runs, oldest first, of one session or of all; open ones only unless `all`.
pub async fn list(
    rt: &Arc<Runtime>,
    session: Option<&str>,
    all: bool,
) -> Result<Vec<WorkflowRun>, ErrorBody> {
    let session = match session {
        Some(s) => Some(rt.resolve(s).await?),
        None => None,
    };
    let index = run_index(rt, session).await?;
    let mut out = Vec::new();
    for (_, run, ended) in &index {
        if *ended {
            continue;
        }
        let v = get(rt, run).await?;
        if all || v.status != RunStatus::Ended {
            out.push(v);
        }
    }
    Ok(out)
}

/// Stops a running run: its threads are interrupted and it goes idle (resumable).
pub async fn stop(rt: &Arc<Runtime>, run: &str) -> Result<WorkflowRun, ErrorBody> {
    let h = handle(rt, run).await?;
    let (tx, rx) = oneshot::channel();
    h.send(Msg::Stop { reply: tx })?;
    rx.await
        .map_err(|_| ErrorBody::new(ErrorCode::Internal, "the run's driver went away"))??;
    Ok(h.state().view())
}

/// Resumes an idle run where it stopped: finished tasks stay finished.
pub async fn resume(rt: &Arc<Runtime>, run: &str) -> Result<WorkflowRun, ErrorBody> {
    let h = handle(rt, run).await?;
    let status = h.state().status;
    match status {
        RunStatus::Ended => {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("workflow run {run} has ended; start a new run from the workflow file"),
            ));
        }
        RunStatus::Running if h.is_driven() => return Ok(h.state().view()),
        _ => {}
    }
    let s = rt.load(&h.session_id).await?;
    if status == RunStatus::Idle {
        let events = s
            .append_retrying(vec![EventBody::WorkflowRunStatusRunning {
                workflow_run_id: run.to_string(),
            }])
            .await?;
        let mut st = h.state();
        for e in &events {
            st.apply(e);
        }
    }
    engine::drive(rt, s, h.clone());
    Ok(h.state().view())
}

/// Approves or denies a checkpoint (from any client; the first answer wins).
pub async fn answer(
    rt: &Arc<Runtime>,
    run: &str,
    task: &str,
    approve: bool,
    note: Option<String>,
) -> Result<WorkflowRun, ErrorBody> {
    let h = handle(rt, run).await?;
    let (tx, rx) = oneshot::channel();
    h.send(Msg::Answer {
        task: task.to_string(),
        approve,
        note,
        reply: tx,
    })?;
    rx.await
        .map_err(|_| ErrorBody::new(ErrorCode::Internal, "the run's driver went away"))??;
    Ok(h.state().view())
}

/// At daemon start (after sessions and threads resumed): drives every run that was running.
pub async fn recover(rt: &Arc<Runtime>) -> Result<usize, ErrorBody> {
    let index = run_index(rt, None).await?;
    let mut n = 0;
    for (session, run, ended) in &index {
        if *ended || index.iter().any(|(_, r, e)| *e && r == run) {
            continue;
        }
        let h = handle(rt, run).await?;
        if h.state().status != RunStatus::Running {
            continue;
        }
        match rt.load(session).await {
            Ok(s) => {
                tracing::info!(run = %run, "resuming a workflow run that was running");
                engine::drive(rt, s, h);
                n += 1;
            }
            Err(e) => {
                tracing::error!(run = %run, error = %e.message, "could not resume the workflow run; the next start tries again")
            }
        }
    }
    Ok(n)
}
