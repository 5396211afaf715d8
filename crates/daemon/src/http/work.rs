//! `/v1/environments/{id}/work`: a self-hosted environment's work queue as the official SDK's
//! worker drives it (poll, ack, heartbeat, stop) and the reads around it (list, retrieve,
//! stats, metadata). The queue is `orchestration::workers`; these only translate shapes.
//! Who may call which is decided before any of this runs (`WorkQueue::allows`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tether_proto::work::{Work, WorkHeartbeat, WorkQueueStats};

use super::error::{ApiError, ApiResult};
use super::query::Query;
use super::shapes::Page;
use super::{Api, body};
use crate::orchestration::workers::{self, DEFAULT_RECLAIM_MS, HeartbeatError, MAX_BLOCK_MS};

/// The queue, once the path's environment is known to be a self-hosted one (by exact id).
async fn queue(api: &Api, environment_id: &str) -> ApiResult<std::sync::Arc<workers::WorkQueue>> {
    crate::resources::environments::require_id(&api.rt.store, environment_id).await?;
    // A cloud environment has no work queue: that queue is not found.
    workers::self_hosted(&api.rt, environment_id)
        .await
        .map_err(|e| match e.code {
            tether_proto::ErrorCode::InvalidParams => ApiError::not_found(e.message),
            _ => ApiError::from(e),
        })?;
    Ok(workers::serving(&api.rt)?)
}

pub async fn poll(
    State(api): State<Api>,
    Path(environment_id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Json<Option<Work>>> {
    let q = Query::parse(q.as_deref());
    let block_ms = match q.u64("block_ms")? {
        None => 0,
        Some(ms) if (1..=MAX_BLOCK_MS).contains(&ms) => ms,
        Some(ms) => {
            return Err(ApiError::invalid(format!(
                "block_ms: must be 1-{MAX_BLOCK_MS} milliseconds (or omitted for a poll that doesn't wait), got {ms}"
            )));
        }
    };
    let reclaim_ms = match q.u64("reclaim_older_than_ms")? {
        None => DEFAULT_RECLAIM_MS,
        Some(ms) => i64::try_from(ms)
            .map_err(|_| ApiError::invalid(format!("reclaim_older_than_ms: {ms} is too large")))?,
    };
    let worker = headers
        .get("anthropic-worker-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let q = queue(&api, &environment_id).await?;
    Ok(Json(
        q.poll(&environment_id, worker.as_deref(), block_ms, reclaim_ms)
            .await?,
    ))
}

pub async fn list(
    State(api): State<Api>,
    Path(environment_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<Work>>> {
    let query = Query::parse(q.as_deref());
    // The limit is checked before the queue is looked up: a bad one is the caller's error.
    query.limit(20, 100)?;
    let q = queue(&api, &environment_id).await?;
    let all = q.list(&environment_id).await?;
    Ok(Json(super::page::of_query(
        &query,
        all,
        |w| vec![w.created_at.clone(), w.id.clone()],
        true,
        (20, 100),
    )?))
}

pub async fn stats(
    State(api): State<Api>,
    Path(environment_id): Path<String>,
) -> ApiResult<Json<WorkQueueStats>> {
    let q = queue(&api, &environment_id).await?;
    Ok(Json(q.stats(&environment_id).await?))
}

pub async fn retrieve(
    State(api): State<Api>,
    Path((environment_id, work_id)): Path<(String, String)>,
) -> ApiResult<Json<Work>> {
    let q = queue(&api, &environment_id).await?;
    Ok(Json(q.retrieve(&environment_id, &work_id).await?))
}

/// `{metadata}`: a patch; a null value deletes its key.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWork {
    pub metadata: BTreeMap<String, Option<String>>,
}

pub async fn update(
    State(api): State<Api>,
    Path((environment_id, work_id)): Path<(String, String)>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Work>> {
    let b: UpdateWork = body::parse(&bytes)?;
    let q = queue(&api, &environment_id).await?;
    Ok(Json(
        q.update_metadata(&environment_id, &work_id, b.metadata)
            .await?,
    ))
}

pub async fn ack(
    State(api): State<Api>,
    Path((environment_id, work_id)): Path<(String, String)>,
) -> ApiResult<Json<Work>> {
    let q = queue(&api, &environment_id).await?;
    Ok(Json(q.ack(&environment_id, &work_id).await?))
}

pub async fn heartbeat(
    State(api): State<Api>,
    Path((environment_id, work_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<WorkHeartbeat>, Response> {
    let query = Query::parse(raw.as_deref());
    let desired = query
        .u64("desired_ttl_seconds")
        .map_err(|e| e.into_response())?;
    let expected = query.one("expected_last_heartbeat").map(str::to_string);
    let q = queue(&api, &environment_id)
        .await
        .map_err(|e| e.into_response())?;
    match q
        .heartbeat(&environment_id, &work_id, expected, desired)
        .await
    {
        Ok(h) => Ok(Json(h)),
        Err(HeartbeatError::Error(e)) => Err(ApiError::from(e).into_response()),
        // The hosted 412: `details` carries the lease as the server holds it.
        Err(HeartbeatError::Precondition(state)) => {
            let body = serde_json::json!({
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": format!("expected_last_heartbeat does not match the stored heartbeat of work item {work_id} (`{}`): another worker may hold its lease; stop serving it", state.last_heartbeat),
                    "details": {
                        "error_code": "heartbeat_precondition_failed",
                        "current_state": {
                            "last_heartbeat": (!state.last_heartbeat.is_empty()).then_some(&state.last_heartbeat),
                            "lease_extended": false,
                            "state": state.state,
                            "ttl_seconds": state.ttl_seconds,
                        },
                    },
                },
                "request_id": crate::ids::request_id(),
            });
            Err((StatusCode::PRECONDITION_FAILED, Json(body)).into_response())
        }
    }
}

/// `{force}`: stop at once instead of asking the worker to.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopWork {
    #[serde(default)]
    pub force: Option<bool>,
}

pub async fn stop(
    State(api): State<Api>,
    Path((environment_id, work_id)): Path<(String, String)>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Work>> {
    let b: StopWork = if bytes.is_empty() {
        StopWork::default()
    } else {
        body::parse(&bytes)?
    };
    let q = queue(&api, &environment_id).await?;
    Ok(Json(
        q.stop(&environment_id, &work_id, b.force.unwrap_or(false))
            .await?,
    ))
}
