//! `/v1/sessions/{id}/events`: the history (paged, `types[]`, `order`, `created_at[...]`
//! against `processed_at`) and sending `{events: [...]}`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;
use serde_json::Value;
use tether_proto::{ConfirmationResult, ContentBlock, Event};

use super::error::{ApiError, ApiResult};
use super::page::Cursor;
use super::query::Query;
use super::shapes::{Page, SentEvents};
use super::{Api, body};

/// Rows read per store query while filtering by type.
const CHUNK: u32 = 500;

/// The query parameter that opts a reader into tether's own event types.
pub const TETHER_EVENTS: &str = "tether_events";

/// The event types of the hosted API (SDK 2.17.0, `BetaManagedAgentsSessionEventType`).
pub const HOSTED_EVENT_TYPES: [&str; 41] = [
    "user.message",
    "user.interrupt",
    "user.tool_confirmation",
    "user.custom_tool_result",
    "user.define_outcome",
    "user.tool_result",
    "agent.custom_tool_use",
    "agent.message",
    "agent.thinking",
    "agent.mcp_tool_use",
    "agent.mcp_tool_result",
    "agent.tool_use",
    "agent.tool_result",
    "agent.thread_message_received",
    "agent.thread_message_sent",
    "agent.thread_context_compacted",
    "session.error",
    "session.status_rescheduled",
    "session.status_running",
    "session.status_idle",
    "session.status_terminated",
    "session.thread_created",
    "session.thread_status_running",
    "session.thread_status_idle",
    "session.thread_status_terminated",
    "session.thread_status_rescheduled",
    "session.updated",
    "session.usage",
    "system.message",
    "span.outcome_evaluation_start",
    "span.outcome_evaluation_ongoing",
    "span.outcome_evaluation_end",
    "span.model_request_start",
    "span.model_request_end",
    "workflow_run.created",
    "workflow_run.status_running",
    "workflow_run.status_idle",
    "workflow_run.status_ended",
    "workflow_run.error",
    "workflow_run.phase_started",
    "workflow_run.phase_ended",
];

/// Whether the hosted API has this event type. tether's own (`span.tool_call_start`, the
/// intent record written before a tool runs; `span.workflow_task_*`) stay in the log and on
/// the socket, but a strict client of the hosted API fails to parse a type its event union
/// lacks, so HTTP readers get them only with `?tether_events=true`. An allow-list, so a type
/// tether adds later stays off the HTTP surface until someone says it is hosted.
pub fn is_hosted(e: &Event) -> bool {
    HOSTED_EVENT_TYPES.contains(&e.type_name())
}

pub async fn list(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<Event>>> {
    let id = super::sessions::row_by_id(&api, &session_id).await?.id;
    list_stream(&api, id, q).await
}

/// A page of one stream's events (a session's, or a thread's by its `sthr_` id).
pub async fn list_stream(api: &Api, id: String, q: Option<String>) -> ApiResult<Json<Page<Event>>> {
    let q = Query::parse(q.as_deref());
    let desc = q.descending(false)?;
    let limit = q.limit(100, 1000)?;
    let types: Vec<String> = q.all("types").into_iter().map(str::to_string).collect();
    let range = q.created_at()?;
    let tether_events = q.bool(TETHER_EVENTS)?;
    let mut from = match q.one("page") {
        // tether: `after_seq` starts after that event (as it resumes the stream).
        None if !desc => q.u64("after_seq")?,
        None => None,
        Some(p) => {
            let c = Cursor::decode(p, desc)?;
            let seq = c
                .key
                .first()
                .and_then(|k| k.parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("page: not an event cursor"))?;
            Some(seq)
        }
    };
    let wanted = |e: &Event| {
        (tether_events || is_hosted(e))
            && (types.is_empty() || types.iter().any(|t| t == e.type_name()))
            && e.processed_at
                .as_deref()
                .is_none_or(|at| range.contains(at))
    };
    let mut data: Vec<Event> = Vec::new();
    let mut more = false;
    'read: loop {
        let (after, before) = if desc {
            (0, from)
        } else {
            (from.unwrap_or(0), None)
        };
        let chunk = api
            .rt
            .store
            .read_events(&id, after, before, CHUNK, desc)
            .await?;
        let exhausted = chunk.len() < CHUNK as usize;
        for e in chunk {
            from = Some(e.seq);
            if !wanted(&e) {
                continue;
            }
            if data.len() == limit as usize {
                more = true;
                break 'read;
            }
            data.push(e);
        }
        if exhausted {
            break;
        }
    }
    let next = if more {
        data.last().map(|e| {
            Cursor {
                desc,
                backward: false,
                key: vec![e.seq.to_string()],
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(Page {
        data,
        next_page: next,
    }))
}

/// `POST /v1/sessions/{id}/events`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// Parsed one by one (`UserEvent`) so an error names the event's index.
    #[schemars(with = "Vec<UserEvent>", length(min = 1))]
    pub events: Vec<Value>,
}

/// A text block a client sends: not blank (for the document; parsed as `ContentBlock`).
#[derive(schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(dead_code)]
pub enum UserText {
    Text {
        #[schemars(regex(pattern = tether_proto::schema::NOT_BLANK))]
        text: String,
    },
}

/// `user.define_outcome` as the document states it: what [`OutcomeSpec::validate`] checks,
/// in JSON Schema (parsed as `OutcomeSpec`). A file rubric is refused (no Files API), so the
/// document offers text only.
///
/// [`OutcomeSpec::validate`]: tether_proto::outcome::OutcomeSpec::validate
#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DefineOutcomeDoc {
    /// The task; the agent starts on receipt.
    #[schemars(regex(pattern = tether_proto::schema::NOT_BLANK))]
    description: String,
    rubric: TextRubric,
    /// Evaluation cycles (default 3).
    #[schemars(range(min = 1, max = 20))]
    max_iterations: Option<u32>,
    /// tether: commands that must exit 0 and files that must exist before any grader runs.
    #[serde(default)]
    checks: Vec<CheckDoc>,
    /// tether: the grader's model, judges, dimensions and threshold.
    grader: Option<GraderDoc>,
    /// tether: switch the agent's model after `after` cycles needed revision.
    escalate: Option<EscalateDoc>,
}

#[derive(schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(dead_code)]
enum TextRubric {
    Text {
        #[schemars(regex(pattern = tether_proto::schema::NOT_BLANK), length(max = 262144))]
        content: String,
    },
}

#[derive(schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(dead_code)]
enum CheckDoc {
    Command {
        #[schemars(regex(pattern = tether_proto::schema::NOT_BLANK))]
        command: String,
        #[schemars(range(min = 1, max = 86400))]
        timeout_secs: Option<u64>,
    },
    FileExists {
        #[schemars(regex(pattern = tether_proto::schema::NOT_BLANK))]
        path: String,
    },
}

#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct GraderDoc {
    /// `provider/model` (a configured provider); default: the agent's model.
    #[schemars(regex(pattern = r"^(anthropic|openai)/[^\s\u0085/]+$"))]
    model: Option<String>,
    #[schemars(range(min = 1, max = 9))]
    judges: Option<u32>,
    #[serde(default)]
    dimensions: Vec<DimensionDoc>,
    #[schemars(range(min = 1.0, max = 5.0))]
    threshold: Option<f64>,
}

#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct DimensionDoc {
    #[schemars(regex(pattern = tether_proto::schema::NOT_BLANK))]
    name: String,
    description: Option<String>,
    #[schemars(range(min = 0.001, max = 1000000.0))]
    weight: Option<f64>,
}

#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct EscalateDoc {
    #[schemars(range(min = 1, max = 20))]
    after: u32,
    #[schemars(regex(pattern = r"^(anthropic|openai)/[^\s\u0085/]+$"))]
    model: String,
}

/// The events a client sends.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum UserEvent {
    /// Gives the session a task with a rubric; a grader checks the work after each turn.
    #[serde(rename = "user.define_outcome")]
    DefineOutcome(#[schemars(with = "DefineOutcomeDoc")] tether_proto::outcome::OutcomeSpec),
    #[serde(rename = "user.message")]
    Message {
        #[schemars(with = "Vec<UserText>", length(min = 1))]
        content: Vec<ContentBlock>,
    },
    #[serde(rename = "user.interrupt")]
    Interrupt {
        /// A tetherd session has one thread: refused when given, so not in the document.
        #[serde(default)]
        #[schemars(skip)]
        session_thread_id: Option<String>,
    },
    /// Answers an `agent.tool_use` that waits for approval (`tool_use_id` is its `sevt_` id).
    #[serde(rename = "user.tool_confirmation")]
    ToolConfirmation {
        tool_use_id: String,
        result: ConfirmationResult,
        #[serde(default)]
        deny_message: Option<String>,
    },
    /// A self-hosted worker's result of an `agent.tool_use` (sessions in a `self_hosted`
    /// environment only); recorded as the `agent.tool_result` a call run in tetherd gets.
    #[serde(rename = "user.tool_result")]
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Vec<ContentBlock>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    /// The result of an `agent.custom_tool_use`.
    #[serde(rename = "user.custom_tool_result")]
    CustomToolResult {
        custom_tool_use_id: String,
        #[serde(default)]
        content: Vec<ContentBlock>,
        #[serde(default)]
        is_error: bool,
    },
}

/// Client event types this tetherd knows but does not take, with why.
const REFUSED: [(&str, &str); 1] = [(
    "system.message",
    "replacing the system prompt mid-session is not supported by this tetherd",
)];

/// Checks every event of the batch before any is applied.
fn parse_batch(events: Vec<Value>) -> ApiResult<Vec<UserEvent>> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
            if let Some((_, why)) = REFUSED.iter().find(|(t, _)| *t == kind) {
                return Err(ApiError::invalid(format!("events[{i}]: `{kind}`: {why}")));
            }
            let ev: UserEvent = serde_json::from_value(v)
                .map_err(|e| ApiError::invalid(format!("events[{i}]: {e}")))?;
            match &ev {
                UserEvent::Message { content }
                    if content.iter().all(|b| b.as_text().trim().is_empty()) =>
                {
                    return Err(ApiError::invalid(format!(
                        "events[{i}]: the message is empty"
                    )));
                }
                _ => {}
            }
            Ok(ev)
        })
        .collect()
}

pub async fn send(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    worker: Option<axum::Extension<super::WorkerCaller>>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<SentEvents>> {
    let b: SendBody = body::parse(&bytes)?;
    if b.events.is_empty() {
        return Err(ApiError::invalid("events: send at least one event"));
    }
    let batch = parse_batch(b.events)?;
    // A worker answers the calls it runs; it does not speak for the user (no messages, no
    // approvals, no interrupts), whatever its credential opens.
    if worker.is_some()
        && let Some(i) = batch.iter().position(|e| {
            !matches!(
                e,
                UserEvent::ToolResult { .. } | UserEvent::CustomToolResult { .. }
            )
        })
    {
        return Err(ApiError::forbidden(format!(
            "events[{i}]: a worker's credential (environment key or work sessions token) may send only `user.tool_result` and `user.custom_tool_result`; send user messages, approvals and interrupts with the daemon's API token (`tether http-token`)"
        )));
    }
    let s = super::sessions::by_id(&api, &session_id).await?;
    crate::session::ops::check_writable(&s)?;
    let mut data = Vec::with_capacity(batch.len());
    for ev in batch {
        data.push(match ev {
            UserEvent::DefineOutcome(spec) => crate::session::ops::define_outcome(&s, spec).await?,
            UserEvent::Message { content } => {
                crate::session::ops::send_message(&s, content, None).await?
            }
            // Without a thread every thread stops; with one, only it (hosted).
            UserEvent::Interrupt { session_thread_id } => {
                crate::orchestration::threads::interrupt(&api.rt, &s, session_thread_id.as_deref())
                    .await?
                    .0
            }
            // Answers are routed by tool-use id to the thread holding the call.
            UserEvent::ToolConfirmation {
                tool_use_id,
                result,
                deny_message,
            } => {
                let t = crate::orchestration::threads::holder_of(&api.rt, &s, &tool_use_id).await?;
                let ev = crate::session::approvals::confirm(&t, &tool_use_id, result, deny_message)
                    .await?;
                crate::orchestration::threads::as_seen_by_primary(&api.rt, &s, &t, ev).await
            }
            UserEvent::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let t = crate::orchestration::threads::holder_of(&api.rt, &s, &tool_use_id).await?;
                let ev = crate::session::approvals::worker_result(
                    &t,
                    &tool_use_id,
                    content,
                    is_error.unwrap_or(false),
                )
                .await?;
                crate::orchestration::threads::as_seen_by_primary(&api.rt, &s, &t, ev).await
            }
            UserEvent::CustomToolResult {
                custom_tool_use_id,
                content,
                is_error,
            } => {
                let t = crate::orchestration::threads::holder_of(&api.rt, &s, &custom_tool_use_id)
                    .await?;
                let ev = crate::session::approvals::custom_result(
                    &t,
                    &custom_tool_use_id,
                    content,
                    is_error,
                )
                .await?;
                crate::orchestration::threads::as_seen_by_primary(&api.rt, &s, &t, ev).await
            }
        });
    }
    Ok(Json(SentEvents { data }))
}
