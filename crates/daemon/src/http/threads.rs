//! The thread endpoints (hosted `session_thread`): a session's threads, one thread, archiving
//! one, and a thread's own event history and live stream, shaped like a session's.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use tether_proto::thread::SessionThread;
use tether_proto::{Event, SessionStatus};

use super::Api;
use super::error::{ApiError, ApiResult};
use super::page::Cursor;
use super::query::Query;
use super::shapes::Page;
use crate::orchestration::threads;

/// A thread in the hosted shape, as sessions are: its agent's model id in the hosted form
/// (`claude-haiku-4-5`) and `execution_identity` said, which strict SDK clients require.
pub struct HostedThread(SessionThread);

impl serde::Serialize for HostedThread {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut v = serde_json::to_value(&self.0).map_err(S::Error::custom)?;
        if let Some(agent) = v
            .get_mut("agent")
            .and_then(serde_json::Value::as_object_mut)
            && agent.get("type").and_then(serde_json::Value::as_str) != Some("advisor")
        {
            if let Some(id) = agent
                .get_mut("model")
                .and_then(|m| m.get_mut("id"))
                .filter(|id| id.as_str().is_some_and(|i| i.starts_with("anthropic/")))
            {
                let bare = id
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches("anthropic/");
                *id = serde_json::Value::String(bare.to_string());
            }
            agent
                .entry("execution_identity")
                .or_insert_with(|| serde_json::json!({"type": "service_account"}));
        }
        v.serialize(ser)
    }
}

/// `GET /v1/sessions/{sid}/threads`: the primary first, then children in creation order;
/// `limit` (default 1000), forward-only `page`, `statuses[]`.
pub async fn list(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<HostedThread>>> {
    let q = Query::parse(q.as_deref());
    let limit = q.limit(1000, 1000)? as usize;
    let mut statuses = Vec::new();
    for s in q.all("statuses") {
        statuses.push(
            serde_json::from_value::<SessionStatus>(serde_json::Value::String(s.to_string()))
                .map_err(|_| {
                    ApiError::invalid(format!(
                        "statuses: `{s}` is not a status; use rescheduling, running, idle or terminated"
                    ))
                })?,
        );
    }
    let skip = match q.one("page") {
        None => 0,
        Some(p) => Cursor::decode(p, false)?
            .key
            .first()
            .and_then(|k| k.parse::<usize>().ok())
            .ok_or_else(|| ApiError::invalid("page: not a thread cursor"))?,
    };
    let s = super::sessions::by_id(&api, &session_id).await?;
    let mut all = threads::list(&api.rt, &s, true).await?;
    if !statuses.is_empty() {
        all.retain(|t| statuses.contains(&t.status));
    }
    let data: Vec<HostedThread> = all
        .iter()
        .skip(skip)
        .take(limit)
        .cloned()
        .map(HostedThread)
        .collect();
    let next_page = (all.len() > skip + limit).then(|| {
        Cursor {
            desc: false,
            backward: false,
            key: vec![(skip + limit).to_string()],
        }
        .encode()
    });
    Ok(Json(Page { data, next_page }))
}

pub async fn retrieve(
    State(api): State<Api>,
    Path((session_id, thread_id)): Path<(String, String)>,
) -> ApiResult<Json<HostedThread>> {
    let s = super::sessions::by_id(&api, &session_id).await?;
    Ok(Json(HostedThread(
        threads::get(&api.rt, &s, &thread_id).await?,
    )))
}

pub async fn archive(
    State(api): State<Api>,
    Path((session_id, thread_id)): Path<(String, String)>,
) -> ApiResult<Json<HostedThread>> {
    let s = super::sessions::by_id(&api, &session_id).await?;
    Ok(Json(HostedThread(
        threads::archive(&api.rt, &s, &thread_id).await?,
    )))
}

pub async fn events(
    State(api): State<Api>,
    Path((session_id, thread_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<Event>>> {
    let s = super::sessions::by_id(&api, &session_id).await?;
    let t = threads::find(&api.rt, &s, &thread_id).await?;
    super::events::list_stream(&api, t.id.clone(), q).await
}

pub async fn stream(
    State(api): State<Api>,
    Path((session_id, thread_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let s = super::sessions::by_id(&api, &session_id).await?;
    let t = threads::find(&api.rt, &s, &thread_id).await?;
    super::stream::stream_of(&api, t, q, &headers)
}
