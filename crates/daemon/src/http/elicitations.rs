//! tether extension (issue 25): the MCP elicitations of a session — questions its MCP servers
//! (and its child threads') ask the user during a tool call — listed, and answered by any
//! client (the first answer wins). The events themselves (`tether.mcp_elicitation_*`) are tether's own types, so the
//! event history and stream show them only with `tether_events=true`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use tether_proto::elicitation::{Elicitation, ElicitationReply, ElicitationStatus};

use super::error::{ApiError, ApiResult};
use super::query::Query;
use super::shapes::Page;
use super::{Api, body};

/// `status` values of the list.
pub const STATUSES: &[&str] = &["pending", "answered", "all"];

/// `GET /v1/sessions/{id}/elicitations?status=pending|answered|all` (default pending), oldest
/// first, all at once.
pub async fn list(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<Elicitation>>> {
    let q = Query::parse(q.as_deref());
    let wanted = match q.one("status").unwrap_or("pending") {
        "pending" => Some(ElicitationStatus::Pending),
        "answered" => Some(ElicitationStatus::Answered),
        "all" => None,
        other => {
            return Err(ApiError::invalid(format!(
                "status: `{other}` is not one of pending, answered, all"
            )));
        }
    };
    let s = super::sessions::by_id(&api, &session_id).await?;
    let data = crate::session::elicitation::list(&s, true)
        .into_iter()
        .filter(|e| wanted.is_none_or(|w| e.status == w))
        .collect();
    Ok(Json(Page {
        data,
        next_page: None,
    }))
}

/// `POST /v1/sessions/{id}/elicitations/{elicitation_id}` `{action, content?}`: answers a
/// pending elicitation; the elicitation as answered.
pub async fn answer(
    State(api): State<Api>,
    Path((session_id, elicitation_id)): Path<(String, String)>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Elicitation>> {
    let reply: ElicitationReply = body::parse(&bytes)?;
    let s = super::sessions::by_id(&api, &session_id).await?;
    // An unknown id is a 404 whatever the session's state.
    if !crate::session::elicitation::list(&s, true)
        .iter()
        .any(|e| e.id == elicitation_id)
    {
        return Err(ApiError::not_found(format!(
            "no elicitation `{elicitation_id}` in session {}; GET /v1/sessions/{}/elicitations lists the pending ones",
            s.id, s.id
        )));
    }
    crate::session::ops::check_writable(&s)?;
    // A child thread's (listed on its session too) is answered in the thread.
    let t = crate::orchestration::threads::elicitation_holder(&api.rt, &s, &elicitation_id).await?;
    crate::session::elicitation::answer(
        &t,
        &elicitation_id,
        reply.action,
        reply.content.map(serde_json::Value::Object),
    )
    .await?;
    crate::session::elicitation::list(&s, true)
        .into_iter()
        .find(|e| e.id == elicitation_id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no elicitation {elicitation_id}")))
}
