//! Firing a deployment: record the run (with the id its session will have, and for a
//! workflow deployment its workflow run's) before the session exists, create the session
//! through `Runtime::create_as`, send the initial events or start the workflow run, then
//! mark the run done. A crash anywhere in between leaves a pending run that start-up
//! finishes exactly once ([`recover`]): the reserved ids tell whether the session and the
//! workflow run were made, and the session's log how many initial events it already got.

use std::sync::Arc;

use crate::session::live::Session;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tether_proto::deployment::{
    AUTO_PAUSE_ERRORS, DeploymentRun, DeploymentStatus, ErrorKind, PausedReason, PinnedAgent,
    RunError, TriggerContext,
};
use tether_proto::method::CreateSession;
use tether_proto::{ErrorBody, ErrorCode, EventBody};

use super::deployments::{self, Stored, instant};
use super::resources;
use crate::ids;
use crate::runtime::{Origin, Runtime};
use crate::store::deployments::{self as sql, DeploymentRow, RunRow};

/// What started a fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The cron occurrence (pre-jitter).
    Schedule(DateTime<Utc>),
    Manual,
}

fn run_error(kind: &str, message: impl Into<String>) -> Value {
    json!({ "type": kind, "message": message.into() })
}

/// Why a deployment can't fire right now, as a run error: its agent or environment is gone,
/// or a resource its sessions mount.
async fn precheck(rt: &Runtime, deployment_id: &str, st: &Stored) -> Option<Value> {
    let agent = crate::resources::agents::get(
        &rt.store,
        &tether_proto::method::AgentParams {
            agent: st.agent.id.clone(),
            version: Some(st.agent.version),
        },
    )
    .await;
    match agent {
        Ok(a) if a.archived_at.is_some() => {
            return Some(run_error(
                "agent_archived_error",
                format!("agent `{}` is archived", st.agent.id),
            ));
        }
        Ok(_) => {}
        Err(e) => {
            return Some(run_error(
                "session_creation_rejected_error",
                format!("agent `{}`: {}", st.agent.id, e.message),
            ));
        }
    }
    let env = crate::resources::environments::get(&rt.store, &rt.builds, &st.environment_id).await;
    match env {
        Ok(e) if e.archived_at.is_some() => Some(run_error(
            "environment_archived_error",
            format!("environment `{}` is archived", st.environment_id),
        )),
        Ok(_) => resources::precheck(rt, deployment_id, st).await,
        Err(e) if e.code == ErrorCode::NotFound => Some(run_error(
            "environment_not_found_error",
            format!("environment `{}` not found", st.environment_id),
        )),
        Err(e) => Some(run_error("unknown_error", e.message)),
    }
}

/// A failed session creation as a run error.
fn creation_error(e: &ErrorBody) -> Value {
    let kind = match e.code {
        ErrorCode::TooManyConnections | ErrorCode::ShuttingDown => "session_rate_limited_error",
        ErrorCode::InvalidParams | ErrorCode::Conflict | ErrorCode::NotFound => {
            "session_creation_rejected_error"
        }
        _ => "unknown_error",
    };
    run_error(kind, e.message.clone())
}

/// Fires `row` once. For a scheduled occurrence already recorded (by an earlier pass or
/// before a crash) nothing happens and None is returned.
pub async fn fire(
    rt: &Arc<Runtime>,
    row: &DeploymentRow,
    trigger: Trigger,
) -> Result<Option<DeploymentRun>, ErrorBody> {
    let st = Stored::of(row)?;
    let failure = precheck(rt, &row.id, &st).await;
    let (kind, scheduled_at) = match trigger {
        Trigger::Schedule(at) => ("schedule", Some(instant(at))),
        Trigger::Manual => ("manual", None),
    };
    let run = RunRow {
        id: ids::deployment_run_id(),
        deployment_id: row.id.clone(),
        trigger: kind.into(),
        scheduled_at: scheduled_at.clone(),
        agent_id: st.agent.id.clone(),
        agent_version: st.agent.version,
        session_id: failure.is_none().then(ids::session_id),
        workflow_run_id: (failure.is_none() && st.workflow.is_some()).then(ids::workflow_run_id),
        error: failure.clone(),
        pending: failure.is_none(),
        created_at: ids::now_rfc3339(),
    };
    // One transaction: the run, and for a scheduled one the cursor past its occurrence (and
    // the pause its error may call for).
    let (r, deployment_id, pause) = (
        run.clone(),
        row.id.clone(),
        failure.as_ref().and_then(|f| auto_pause(trigger, f)),
    );
    let inserted = rt
        .store
        .write(move |c| {
            // A pause or archive the scheduler hasn't seen yet wins over its fire: checked
            // in the transaction that records the run.
            if r.scheduled_at.is_some() && !schedulable(sql::get_deployment(c, &deployment_id)?) {
                return Ok(false);
            }
            if !sql::insert_run(c, &r)? {
                return Ok(false);
            }
            if let Some(at) = &r.scheduled_at
                && let Some(mut d) = sql::get_deployment(c, &deployment_id)?
            {
                if d.schedule_cursor.as_ref().is_none_or(|cur| cur < at) {
                    d.schedule_cursor = Some(at.clone());
                }
                if r.error.is_none() {
                    d.last_run_at = Some(r.created_at.clone());
                }
                if let Some(reason) = &pause {
                    d.status = DeploymentStatus::Paused.as_str().into();
                    d.paused_reason = Some(reason.clone());
                    d.updated_at = ids::now_rfc3339();
                }
                sql::update_deployment(c, &d)?;
            }
            Ok(true)
        })
        .await?;
    if !inserted {
        return Ok(None);
    }
    if failure.is_some() {
        rt.schedules_changed.notify_one();
        tracing::warn!(deployment = %row.id, run = %run.id, error = ?failure, "deployment fire failed");
        return Ok(Some(wire_run(&run)));
    }
    crate::crash::point("after_run_recorded");
    let done = complete(rt, &run, &st, trigger).await?;
    Ok(Some(wire_run(&done)))
}

/// The paused reason a scheduled fire's error calls for (manual runs never pause).
fn auto_pause(trigger: Trigger, error: &Value) -> Option<Value> {
    let kind = error.get("type").and_then(Value::as_str)?;
    (matches!(trigger, Trigger::Schedule(_)) && AUTO_PAUSE_ERRORS.contains(&kind)).then(|| {
        serde_json::to_value(PausedReason::Error {
            error: ErrorKind { kind: kind.into() },
        })
        .unwrap_or(Value::Null)
    })
}

/// Makes a pending run's session (unless a crash left it made) and delivers the initial
/// events it hasn't got yet, then marks the run done with its session or its error.
async fn complete(
    rt: &Arc<Runtime>,
    run: &RunRow,
    st: &Stored,
    trigger: Trigger,
) -> Result<RunRow, ErrorBody> {
    let Some(session_id) = run.session_id.clone() else {
        return Err(ErrorBody::new(
            ErrorCode::Internal,
            format!("run `{}` is pending without a session id", run.id),
        ));
    };
    let outcome = match start_session(rt, run, st, &session_id).await {
        Ok(session) => match (&st.workflow, &run.workflow_run_id) {
            (Some(w), Some(id)) => start_workflow(rt, &session, w, id).await,
            _ => Ok(()),
        },
        Err(e) => Err(e),
    }
    .map_err(|e| creation_error(&e));
    crate::crash::point("after_run_session");
    let mut done = run.clone();
    done.pending = false;
    match &outcome {
        Ok(()) => done.error = None,
        Err(err) => {
            done.session_id = None;
            done.workflow_run_id = None;
            done.error = Some(err.clone());
        }
    }
    let (d, pause) = (
        done.clone(),
        outcome.as_ref().err().and_then(|e| auto_pause(trigger, e)),
    );
    rt.store
        .write(move |c| {
            sql::finish_run(
                c,
                &d.id,
                d.session_id.as_deref(),
                d.workflow_run_id.as_deref(),
                d.error.as_ref(),
            )?;
            if let Some(reason) = pause
                && let Some(mut dep) = sql::get_deployment(c, &d.deployment_id)?
            {
                dep.status = DeploymentStatus::Paused.as_str().into();
                dep.paused_reason = Some(reason);
                dep.updated_at = ids::now_rfc3339();
                sql::update_deployment(c, &dep)?;
            }
            Ok(())
        })
        .await?;
    if done.error.is_some() {
        rt.schedules_changed.notify_one();
    }
    Ok(done)
}

/// Starts a workflow deployment's run in its fresh session under the reserved id, unless the
/// session's log shows a crash came after it was made (then `workflows::recover` drives it).
async fn start_workflow(
    rt: &Arc<Runtime>,
    session: &Arc<Session>,
    spec: &tether_proto::workflow::WorkflowSpec,
    id: &str,
) -> Result<(), ErrorBody> {
    crate::crash::point("before_run_workflow");
    let made = rt
        .store
        .read_events(&session.id, 0, None, u32::MAX, false)
        .await?
        .iter()
        .any(|e| matches!(&e.body, EventBody::WorkflowRunCreated { workflow_run_id, .. } if workflow_run_id == id));
    if !made {
        crate::orchestration::workflows::start_as(rt, session, spec.clone(), None, id.to_string())
            .await?;
    }
    Ok(())
}

/// Creates the session under its reserved id (if not made yet), then sends the initial
/// events it has not received: a crash between two of them resumes after the last one sent.
async fn start_session(
    rt: &Arc<Runtime>,
    run: &RunRow,
    st: &Stored,
    session_id: &str,
) -> Result<Arc<Session>, ErrorBody> {
    let session = match rt.store.get_session(session_id).await? {
        Some(_) => rt.load(session_id).await?,
        None => {
            // Opened only here, for the clone: the tokens are in no request or log.
            let tokens = resources::open_tokens(rt, &run.deployment_id, st)?;
            let (mounts, stores) = resources::session_params(st, tokens);
            let p = CreateSession {
                agent: Some(format!("{}@{}", run.agent_id, run.agent_version)),
                environment_id: Some(st.environment_id.clone()),
                max_cost_usd: st
                    .budget
                    .as_ref()
                    .map(deployments::budget_dollars)
                    .transpose()?,
                vault_ids: st.vault_ids.clone(),
                resources: mounts,
                ..Default::default()
            };
            let origin = Origin {
                id: Some(session_id.to_string()),
                deployment_id: Some(run.deployment_id.clone()),
            };
            let memory = crate::orchestration::memory::attach(&rt.store, &stores).await?;
            rt.create_with_memory(p, memory, origin).await?
        }
    };
    let delivered = rt
        .store
        .read_events(session_id, 0, None, u32::MAX, false)
        .await?
        .iter()
        .filter(|e| {
            matches!(
                e.body,
                EventBody::UserMessage { .. } | EventBody::UserDefineOutcome(_)
            )
        })
        .count();
    for v in st.initial_events.iter().skip(delivered) {
        match deployments::initial_event(v) {
            Ok(EventBody::UserMessage { content }) => {
                crate::session::ops::send_message(&session, content, None).await?;
            }
            Ok(EventBody::UserDefineOutcome(spec)) => {
                crate::session::ops::define_outcome(&session, spec).await?;
            }
            Ok(_) | Err(_) => {
                return Err(ErrorBody::new(
                    ErrorCode::InvalidParams,
                    format!(
                        "deployment `{}` has an initial event this tetherd can't send",
                        run.deployment_id
                    ),
                ));
            }
        }
    }
    Ok(session)
}

/// Finishes the runs a crash left pending, each exactly once. Called at start-up before the
/// scheduler's first pass.
pub async fn recover(rt: &Arc<Runtime>) -> Result<usize, ErrorBody> {
    let pending = rt.store.read(sql::pending_runs).await?;
    let n = pending.len();
    for run in pending {
        let row = rt
            .store
            .read({
                let id = run.deployment_id.clone();
                move |c| sql::get_deployment(c, &id)
            })
            .await?;
        let Some(row) = row else {
            continue;
        };
        let trigger = match run
            .scheduled_at
            .as_deref()
            .and_then(deployments::parse_instant)
        {
            Some(at) => Trigger::Schedule(at),
            None => Trigger::Manual,
        };
        let st = Stored::of(&row)?;
        match complete(rt, &run, &st, trigger).await {
            Ok(done) => {
                tracing::info!(run = %done.id, session = ?done.session_id, "finished a deployment run a crash interrupted");
            }
            Err(e) => {
                tracing::error!(run = %run.id, error = %e.message, "could not finish an interrupted deployment run")
            }
        }
    }
    Ok(n)
}

/// Records occurrences nobody fired (the daemon was down or asleep): failed runs, not run
/// late. They don't pause the deployment: nothing is wrong with it.
pub async fn record_missed(
    rt: &Runtime,
    row: &DeploymentRow,
    missed: &[DateTime<Utc>],
) -> Result<(), ErrorBody> {
    let st = Stored::of(row)?;
    let runs: Vec<RunRow> = missed
        .iter()
        .map(|at| RunRow {
            id: ids::deployment_run_id(),
            deployment_id: row.id.clone(),
            trigger: "schedule".into(),
            scheduled_at: Some(instant(*at)),
            agent_id: st.agent.id.clone(),
            agent_version: st.agent.version,
            session_id: None,
            workflow_run_id: None,
            error: Some(run_error(
                "unknown_error",
                format!(
                    "missed: tetherd was not running at {} (the fire's time); scheduled runs are not made up afterwards",
                    instant(*at)
                ),
            )),
            pending: false,
            created_at: ids::now_rfc3339(),
        })
        .collect();
    let Some(last) = missed.last().map(|at| instant(*at)) else {
        return Ok(());
    };
    let id = row.id.clone();
    rt.store
        .write(move |c| {
            if !schedulable(sql::get_deployment(c, &id)?) {
                return Ok(());
            }
            for r in &runs {
                sql::insert_run(c, r)?;
            }
            if let Some(mut d) = sql::get_deployment(c, &id)?
                && d.schedule_cursor.as_ref().is_none_or(|cur| *cur < last)
            {
                d.schedule_cursor = Some(last);
                sql::update_deployment(c, &d)?;
            }
            Ok(())
        })
        .await?;
    tracing::warn!(deployment = %row.id, missed = missed.len(), "recorded scheduled fires missed while tetherd was not running");
    Ok(())
}

/// The wire object of a run.
pub fn wire_run(r: &RunRow) -> DeploymentRun {
    DeploymentRun {
        id: r.id.clone(),
        object_type: "deployment_run".into(),
        deployment_id: r.deployment_id.clone(),
        agent: PinnedAgent::new(r.agent_id.clone(), r.agent_version),
        trigger_context: match &r.scheduled_at {
            Some(at) if r.trigger == "schedule" => TriggerContext::Schedule {
                scheduled_at: at.clone(),
            },
            _ => TriggerContext::Manual,
        },
        // A pending run's reserved ids are not a session or a workflow run yet.
        session_id: if r.pending {
            None
        } else {
            r.session_id.clone()
        },
        workflow_run_id: if r.pending {
            None
        } else {
            r.workflow_run_id.clone()
        },
        error: r.error.as_ref().map(|e| RunError {
            kind: e
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown_error")
                .into(),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
        }),
        created_at: r.created_at.clone(),
    }
}

/// `POST …/run`: fires now, even while paused (not once archived).
pub async fn run_now(rt: &Arc<Runtime>, row: &DeploymentRow) -> Result<DeploymentRun, ErrorBody> {
    if row.archived_at.is_some() {
        // 409: the request is fine, the deployment's state refuses it.
        return Err(ErrorBody::new(
            ErrorCode::Conflict,
            format!("deployment `{}` is archived and can't be run", row.id),
        ));
    }
    fire(rt, row, Trigger::Manual)
        .await?
        .ok_or_else(|| ErrorBody::new(ErrorCode::Internal, "a manual run was not recorded"))
}

/// Filters of a run listing (all optional).
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub deployment_id: Option<String>,
    /// true: runs with an error; false: runs with a session.
    pub has_error: Option<bool>,
    /// `schedule` or `manual`.
    pub trigger_type: Option<String>,
}

/// Runs matching `f`, oldest first; runs under way are left out (they have neither a
/// session nor an error yet).
pub async fn list_runs(rt: &Runtime, f: &RunFilter) -> Result<Vec<DeploymentRun>, ErrorBody> {
    let d = f.deployment_id.clone();
    let rows = rt
        .store
        .read(move |c| sql::list_runs(c, d.as_deref()))
        .await?;
    Ok(rows
        .iter()
        .filter(|r| !r.pending)
        .filter(|r| f.has_error.is_none_or(|e| e == r.error.is_some()))
        .filter(|r| f.trigger_type.as_ref().is_none_or(|t| *t == r.trigger))
        .map(wire_run)
        .collect())
}

pub async fn get_run(rt: &Runtime, id: &str) -> Result<DeploymentRun, ErrorBody> {
    let i = id.to_string();
    rt.store
        .read(move |c| sql::get_run(c, &i))
        .await?
        .map(|r| wire_run(&r))
        .ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::NotFound,
                format!("no deployment run `{id}`; `tether deployments runs` lists them"),
            )
        })
}

/// Whether scheduled fires of this deployment may be recorded: it exists, is not archived
/// and not paused.
fn schedulable(d: Option<DeploymentRow>) -> bool {
    d.is_some_and(|d| d.archived_at.is_none() && d.status == DeploymentStatus::Active.as_str())
}
