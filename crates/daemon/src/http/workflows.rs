//! tether's workflow run endpoints (the hosted API starts runs only from an agent and has
//! no run endpoints; these are extensions): start a run in a session, list a session's
//! runs, get one, stop, resume, answer a checkpoint.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use tether_proto::workflow::{WorkflowRun, WorkflowSpec};

use super::Api;
use super::body;
use super::error::ApiResult;
use super::shapes::Page;
use crate::orchestration::workflows;

/// `POST /v1/sessions/{sid}/workflow_runs`: the body is a workflow file as JSON.
pub async fn create(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<WorkflowRun>> {
    let spec: WorkflowSpec = body::parse(&bytes)?;
    let s = super::sessions::by_id(&api, &session_id).await?;
    Ok(Json(workflows::run(&api.rt, &s.id, spec).await?))
}

/// `GET /v1/sessions/{sid}/workflow_runs`: every run of the session, ended ones included,
/// oldest first.
pub async fn list(
    State(api): State<Api>,
    Path(session_id): Path<String>,
) -> ApiResult<Json<Page<WorkflowRun>>> {
    let s = super::sessions::by_id(&api, &session_id).await?;
    let data = workflows::list(&api.rt, Some(&s.id), true).await?;
    Ok(Json(Page {
        data,
        next_page: None,
    }))
}

pub async fn retrieve(
    State(api): State<Api>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<WorkflowRun>> {
    Ok(Json(workflows::get(&api.rt, &run_id).await?))
}

pub async fn stop(
    State(api): State<Api>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<WorkflowRun>> {
    Ok(Json(workflows::stop(&api.rt, &run_id).await?))
}

pub async fn resume(
    State(api): State<Api>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<WorkflowRun>> {
    Ok(Json(workflows::resume(&api.rt, &run_id).await?))
}

/// A checkpoint's answer.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// true approves (the task succeeds), false denies (it fails).
    pub approve: bool,
    /// What dependents see as the checkpoint's output.
    #[serde(default)]
    pub note: Option<String>,
}

/// `POST /v1/workflow_runs/{rid}/tasks/{task_id}/answer`.
pub async fn answer(
    State(api): State<Api>,
    Path((run_id, task_id)): Path<(String, String)>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<WorkflowRun>> {
    let a: AnswerBody = body::parse(&bytes)?;
    Ok(Json(
        workflows::answer(&api.rt, &run_id, &task_id, a.approve, a.note).await?,
    ))
}
