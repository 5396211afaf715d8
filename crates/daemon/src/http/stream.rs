//! `GET /v1/sessions/{id}/events/stream`: Server-Sent Events. Each persisted event is
//! `id: <seq>` + `event: <type>` + `data: <json>`; `ping` keeps idle connections alive
//! without moving the cursor. Without `Last-Event-ID` (or `?after_seq=`) the stream starts
//! at the session's current end (hosted behaviour); with it, the missed events are replayed
//! from the log first, then live ones follow with no gap and no duplicate (subscribe before
//! replay, dedupe by seq). A reader too slow for the session's broadcast buffer gets a
//! `resync` event naming the seq to resume after, and the stream ends: the session never
//! waits for a reader.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tether_proto::{Delta, DeltaKind, Event};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Api;
use super::error::{ApiError, ApiResult};
use super::query::Query;
use crate::session::Push;
use crate::store::Store;

/// Events read from the log per query while replaying.
const REPLAY_CHUNK: u32 = 500;
const PING_EVERY: Duration = Duration::from_secs(15);

pub async fn stream(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = Query::parse(q.as_deref());
    let mut previews = Previews::default();
    for d in q.all("event_deltas") {
        match d {
            "agent.message" => previews.message = true,
            "agent.thinking" => previews.thinking = true,
            other => {
                return Err(ApiError::invalid(format!(
                    "event_deltas: `{other}` has no previews; use agent.message and/or agent.thinking"
                )));
            }
        }
    }
    let resume = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            ApiError::invalid(format!(
                "Last-Event-ID: `{v}` is not an event seq from this stream's `id:` lines"
            ))
        })?),
        None => q.u64("after_seq")?,
    };
    let s = api.rt.session(&session_id).await?;
    // Subscribe before reading where the log ends, so nothing falls between the two.
    let rx = s.subscribe();
    let cursor = resume.unwrap_or_else(|| s.info().last_seq);
    let feed = Feed {
        store: api.rt.store.clone(),
        session_id: s.id.clone(),
        cursor,
        replaying: resume.is_some(),
        queue: VecDeque::new(),
        rx,
        previews,
        shutdown: api.rt.shutdown.clone(),
        ended: false,
    };
    // The feed holds the receiver, not the session: a deleted session closes the stream.
    drop(s);
    let events = futures_util::stream::unfold(feed, |mut f| async move {
        f.next().await.map(|e| (Ok::<_, Infallible>(e), f))
    });
    let keep_alive = KeepAlive::new()
        .interval(PING_EVERY)
        .event(Sse::default().event("ping").data(r#"{"type":"ping"}"#));
    Ok(axum::response::Sse::new(events)
        .keep_alive(keep_alive)
        .into_response())
}

/// Which previews the connection opted into, and the one being written.
#[derive(Default)]
struct Previews {
    message: bool,
    thinking: bool,
    /// `(model_request_start_id, started message preview, started thinking preview)`.
    current: Option<(String, bool, bool)>,
}

impl Previews {
    fn map(&mut self, d: &Delta, out: &mut VecDeque<Sse>) {
        let (kind, index, text) = match &d.kind {
            DeltaKind::MessageStart {
                model_request_start_id,
            } => {
                self.current = Some((model_request_start_id.clone(), false, false));
                return;
            }
            DeltaKind::Text { index, text } if self.message => ("agent.message", *index, text),
            DeltaKind::Thinking { index, text } if self.thinking => {
                ("agent.thinking", *index, text)
            }
            _ => return,
        };
        let Some((start_id, message_started, thinking_started)) = &mut self.current else {
            return;
        };
        let started = if kind == "agent.message" {
            message_started
        } else {
            thinking_started
        };
        let suffix = if kind == "agent.message" {
            "message"
        } else {
            "thinking"
        };
        let preview_id = format!("{start_id}_{suffix}");
        if !*started {
            *started = true;
            let start =
                json!({ "type": "event_start", "event": { "type": kind, "id": preview_id } });
            out.push_back(Sse::default().event("event_start").data(start.to_string()));
        }
        let delta = json!({
            "type": "event_delta",
            "event_id": preview_id,
            "delta": { "type": "content_delta", "index": index, "content": { "type": "text", "text": text } },
        });
        out.push_back(Sse::default().event("event_delta").data(delta.to_string()));
    }
}

struct Feed {
    store: Store,
    session_id: String,
    /// Highest seq sent (or skipped as already seen by the client).
    cursor: u64,
    replaying: bool,
    queue: VecDeque<Sse>,
    rx: broadcast::Receiver<Push>,
    previews: Previews,
    shutdown: CancellationToken,
    ended: bool,
}

fn persisted(e: &Event) -> Sse {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    Sse::default()
        .id(e.seq.to_string())
        .event(e.type_name())
        .data(data)
}

fn error_event(kind: &str, message: String) -> Sse {
    let body = json!({ "type": "error", "error": { "type": kind, "message": message } });
    Sse::default().event("error").data(body.to_string())
}

impl Feed {
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            if self.replaying {
                match self
                    .store
                    .read_events(&self.session_id, self.cursor, None, REPLAY_CHUNK, false)
                    .await
                {
                    Ok(evs) => {
                        self.replaying = evs.len() == REPLAY_CHUNK as usize;
                        for e in &evs {
                            self.cursor = e.seq;
                            self.queue.push_back(persisted(e));
                        }
                    }
                    Err(e) => {
                        self.ended = true;
                        return Some(error_event(
                            "api_error",
                            format!("cannot read the session's log: {e}"),
                        ));
                    }
                }
                continue;
            }
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(Push::Event(w)) if w.value.seq > self.cursor => {
                        self.cursor = w.value.seq;
                        return Some(persisted(&w.value));
                    }
                    Ok(Push::Event(_)) => {}
                    Ok(Push::Delta(d)) => self.previews.map(&d.value, &mut self.queue),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.ended = true;
                        let hint = json!({ "type": "resync", "after_seq": self.cursor,
                            "message": "this reader fell too far behind the session; reconnect with Last-Event-ID set to after_seq" });
                        return Some(Sse::default().event("resync").data(hint.to_string()));
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        self.ended = true;
                        return Some(error_event(
                            "not_found_error",
                            format!("session {} was deleted", self.session_id),
                        ));
                    }
                },
                _ = self.shutdown.cancelled() => {
                    self.ended = true;
                    return Some(error_event("overloaded_error", "tetherd is stopping; reconnect with Last-Event-ID once it is back".into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_start_once_per_request_and_kind() {
        let mut p = Previews {
            message: true,
            thinking: false,
            current: None,
        };
        let mut out = VecDeque::new();
        let d = |kind| Delta {
            session_id: "s".into(),
            n: 1,
            kind,
        };
        p.map(
            &d(DeltaKind::MessageStart {
                model_request_start_id: "sevt_1".into(),
            }),
            &mut out,
        );
        for t in ["a", "b"] {
            p.map(
                &d(DeltaKind::Text {
                    index: 0,
                    text: t.into(),
                }),
                &mut out,
            );
        }
        p.map(
            &d(DeltaKind::Thinking {
                index: 0,
                text: "hm".into(),
            }),
            &mut out,
        );
        assert_eq!(out.len(), 3, "event_start + two deltas, no thinking");
    }
}
