//! `/v1/sessions/{id}/events`: the history (paged, `types[]`, `order`, `created_at[...]`
//! against `processed_at`) and sending `{events: [...]}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;
use serde_json::{Value, json};
use tether_proto::{ContentBlock, Event};

use super::error::{ApiError, ApiResult};
use super::page::Cursor;
use super::query::Query;
use super::{Api, body};

/// Rows read per store query while filtering by type.
const CHUNK: u32 = 500;

pub async fn list(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = Query::parse(q.as_deref());
    let desc = q.descending(false)?;
    let limit = q.limit(100, 1000)?;
    let types: Vec<String> = q.all("types").into_iter().map(str::to_string).collect();
    let range = q.created_at()?;
    let id = api.rt.resolve(&session_id).await?;
    let mut from = match q.one("page") {
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
        (types.is_empty() || types.iter().any(|t| t == e.type_name()))
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
    Ok(Json(json!({ "data": data, "next_page": next })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    events: Vec<Value>,
}

/// A client event, checked before any of the batch is applied.
enum Incoming {
    Message(Vec<ContentBlock>),
    Interrupt,
}

fn incoming(i: usize, v: Value) -> ApiResult<Incoming> {
    let at = |m: String| ApiError::invalid(format!("events[{i}]: {m}"));
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| at("missing `type`".into()))?
        .to_string();
    match kind.as_str() {
        "user.message" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct M {
                #[serde(rename = "type")]
                _type: String,
                content: Vec<ContentBlock>,
            }
            let m: M = serde_json::from_value(v).map_err(|e| at(e.to_string()))?;
            if m.content.iter().all(|b| b.as_text().trim().is_empty()) {
                return Err(at("the message is empty".into()));
            }
            Ok(Incoming::Message(m.content))
        }
        "user.interrupt" => Ok(Incoming::Interrupt),
        "user.tool_confirmation" | "user.custom_tool_result" => Err(at(format!(
            "`{kind}` answers a call waiting for approval or a result, and no call of this session waits for one"
        ))),
        "user.define_outcome" | "user.tool_result" | "system.message" => {
            Err(at(format!("`{kind}` is not supported by this tetherd")))
        }
        other => Err(at(format!(
            "unknown event type `{other}`; clients send user.message, user.interrupt, user.tool_confirmation or user.custom_tool_result"
        ))),
    }
}

pub async fn send(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let b: SendBody = body::parse(&bytes)?;
    if b.events.is_empty() {
        return Err(ApiError::invalid("events: send at least one event"));
    }
    let batch = b
        .events
        .into_iter()
        .enumerate()
        .map(|(i, v)| incoming(i, v))
        .collect::<ApiResult<Vec<_>>>()?;
    let s = api.rt.session(&session_id).await?;
    crate::ops::check_writable(&s)?;
    let mut data = Vec::with_capacity(batch.len());
    for ev in batch {
        data.push(match ev {
            Incoming::Message(content) => crate::ops::send_message(&s, content, None).await?,
            Incoming::Interrupt => crate::ops::interrupt(&s).await?.0,
        });
    }
    Ok(Json(json!({ "data": data })))
}
