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
use std::sync::Arc;

use crate::session::live::{LIVE_BURST, LIVE_COALESCE, Push, Wire};
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
    let s = super::sessions::by_id(&api, &session_id).await?;
    stream_of(&api, s, q, &headers)
}

/// The SSE stream of one live stream (a session's, or a thread's).
pub fn stream_of(
    api: &Api,
    s: std::sync::Arc<crate::session::live::Session>,
    q: Option<String>,
    headers: &HeaderMap,
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
    let tether_events = q.bool(super::events::TETHER_EVENTS)?;
    let resume = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            ApiError::invalid(format!(
                "Last-Event-ID: `{v}` is not an event seq from this stream's `id:` lines"
            ))
        })?),
        None => q.u64("after_seq")?,
    };
    // Subscribe before reading where the log ends, so nothing falls between the two.
    let rx = s.subscribe();
    let cursor = resume.unwrap_or_else(|| s.info().last_seq);
    // A response already being written (the stream was opened just after a send): its
    // previews so far, then its deltas from where they left off.
    let mut queue = VecDeque::new();
    if previews.message || previews.thinking {
        previews.join(s.live_response(), &mut queue);
    }
    let feed = Feed {
        store: api.rt.store.clone(),
        session_id: s.id.clone(),
        cursor,
        replaying: resume.is_some(),
        tether_events,
        queue,
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
    /// The response being written: `[(preview id, event_start sent)]` for message and
    /// thinking.
    current: Option<[(String, bool); 2]>,
    /// Deltas up to this `n` were already sent (as the text so far, to a reader that joined
    /// mid-response).
    sent_through: u64,
}

/// The `event_delta` JSON of `text` for preview `preview_id`.
fn delta_json(preview_id: &str, index: u32, text: &str) -> String {
    json!({
        "type": "event_delta",
        "event_id": preview_id,
        "delta": { "type": "content_delta", "index": index, "content": { "type": "text", "text": text } },
    })
    .to_string()
}

impl Previews {
    /// A new response: its previews are named by the events that will conclude them (older
    /// logs' deltas lack those ids; then the request's start id names them).
    fn start(&mut self, kind: &DeltaKind) {
        if let DeltaKind::MessageStart {
            model_request_start_id,
            message_id,
            thinking_id,
        } = kind
        {
            let message = message_id
                .clone()
                .unwrap_or_else(|| format!("{model_request_start_id}_message"));
            let thinking = thinking_id
                .clone()
                .unwrap_or_else(|| format!("{model_request_start_id}_thinking"));
            self.current = Some([(message, false), (thinking, false)]);
        }
    }

    /// A reader joining mid-response: the response's previews so far, as one event_start
    /// and one event_delta per kind; deltas up to `n` are then skipped.
    fn join(
        &mut self,
        live: Option<(DeltaKind, Option<String>, Option<String>, u64)>,
        out: &mut VecDeque<Sse>,
    ) {
        let Some((start, message, thinking, n)) = live else {
            return;
        };
        self.start(&start);
        self.sent_through = n;
        let Some(current) = &mut self.current else {
            return;
        };
        let texts = [
            (self.message, "agent.message", message),
            (self.thinking, "agent.thinking", thinking),
        ];
        for ((wanted, kind, text), (preview_id, started)) in texts.into_iter().zip(current) {
            let Some(text) = text.filter(|t| wanted && !t.is_empty()) else {
                continue;
            };
            *started = true;
            let start =
                json!({ "type": "event_start", "event": { "type": kind, "id": preview_id } });
            out.push_back(Sse::default().event("event_start").data(start.to_string()));
            if kind == "agent.thinking" {
                continue;
            }
            out.push_back(
                Sse::default()
                    .event("event_delta")
                    .data(delta_json(preview_id, 0, &text)),
            );
        }
    }

    /// Maps a run of deltas (everything that was waiting) to preview events, merging
    /// consecutive text of one block into one `event_delta`: a reader that fell a little behind
    /// catches up with a few large events instead of thousands of tiny ones. A delta that
    /// stands alone reuses the JSON the first reader made of it.
    fn map(&mut self, batch: &[Arc<Wire<Delta>>], out: &mut VecDeque<Sse>) {
        let mut i = 0;
        while i < batch.len() {
            let d = &batch[i];
            i += 1;
            if d.value.n <= self.sent_through {
                continue;
            }
            let (kind, index, text) = match &d.value.kind {
                k @ DeltaKind::MessageStart { .. } => {
                    self.start(k);
                    continue;
                }
                DeltaKind::Text { index, text } if self.message => ("agent.message", *index, text),
                DeltaKind::Thinking { index, text } if self.thinking => {
                    ("agent.thinking", *index, text)
                }
                _ => continue,
            };
            let Some([message, thinking]) = &mut self.current else {
                continue;
            };
            let (preview_id, started) = if kind == "agent.message" {
                message
            } else {
                thinking
            };
            let preview_id = preview_id.clone();
            if !*started {
                *started = true;
                let start =
                    json!({ "type": "event_start", "event": { "type": kind, "id": preview_id } });
                out.push_back(Sse::default().event("event_start").data(start.to_string()));
            }
            // Hosted: thinking previews are start-only; the agent.thinking event concludes it.
            if kind == "agent.thinking" {
                continue;
            }
            // Gather the text of the same block that follows directly.
            let mut merged: Option<String> = None;
            while let Some(next) = batch.get(i) {
                let more = match &next.value.kind {
                    DeltaKind::Text { index: n, text }
                        if kind == "agent.message" && *n == index =>
                    {
                        text
                    }
                    DeltaKind::Thinking { index: n, text }
                        if kind == "agent.thinking" && *n == index =>
                    {
                        text
                    }
                    _ => break,
                };
                merged.get_or_insert_with(|| text.clone()).push_str(more);
                i += 1;
            }
            let data = match merged {
                Some(all) => delta_json(&preview_id, index, &all),
                None => d
                    .sse
                    .get_or_init(|| delta_json(&preview_id, index, text))
                    .clone(),
            };
            out.push_back(Sse::default().event("event_delta").data(data));
        }
    }
}

struct Feed {
    store: Store,
    session_id: String,
    /// Highest seq sent (or skipped as already seen by the client).
    cursor: u64,
    replaying: bool,
    /// Send tether's own event types too (`?tether_events=true`).
    tether_events: bool,
    queue: VecDeque<Sse>,
    rx: broadcast::Receiver<Push>,
    previews: Previews,
    shutdown: CancellationToken,
    ended: bool,
}

fn persisted(e: &Event, data: &str) -> Sse {
    Sse::default()
        .id(e.seq.to_string())
        .event(e.type_name())
        .data(data)
}

fn event_json(e: &Event) -> String {
    serde_json::to_string(e).unwrap_or_else(|_| "{}".into())
}

fn error_event(kind: &str, message: String) -> Sse {
    let body = json!({ "type": "error", "error": { "type": kind, "message": message } });
    Sse::default().event("error").data(body.to_string())
}

impl Feed {
    /// Queues a live event the client has not seen yet, in the JSON the first reader made.
    fn take_event(&mut self, w: &Wire<Event>) {
        if w.value.seq > self.cursor {
            self.cursor = w.value.seq;
            if !self.tether_events && !super::events::is_hosted(&w.value) {
                return;
            }
            let data = w.sse.get_or_init(|| event_json(&w.value));
            self.queue.push_back(persisted(&w.value, data));
        }
    }

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
                            if !self.tether_events && !super::events::is_hosted(e) {
                                continue;
                            }
                            self.queue.push_back(persisted(e, &event_json(e)));
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
                    Ok(Push::Event(w)) => self.take_event(&w),
                    Ok(Push::Delta(d)) => {
                        // Give the rest of the burst a moment to arrive, then send everything
                        // waiting together: one wake-up and one event_delta per burst, not
                        // per token, whatever the number of readers.
                        if self.rx.len() < LIVE_BURST {
                            tokio::time::sleep(LIVE_COALESCE).await;
                        }
                        let mut batch = vec![d];
                        loop {
                            match self.rx.try_recv() {
                                Ok(Push::Delta(d)) => batch.push(d),
                                Ok(Push::Event(w)) => {
                                    self.previews.map(&batch, &mut self.queue);
                                    batch.clear();
                                    self.take_event(&w);
                                    break;
                                }
                                // Empty, or lagged/closed: the next recv says which.
                                Err(_) => break,
                            }
                        }
                        self.previews.map(&batch, &mut self.queue);
                    }
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
    fn previews_start_once_per_request_and_kind_and_runs_merge() {
        let mut p = Previews {
            message: true,
            ..Previews::default()
        };
        let d = |kind| {
            Wire::new(Delta {
                session_id: "s".into(),
                n: 1,
                kind,
            })
        };
        let text = |t: &str| {
            d(DeltaKind::Text {
                index: 0,
                text: t.into(),
            })
        };
        let mut out = VecDeque::new();
        let start = d(DeltaKind::MessageStart {
            model_request_start_id: "sevt_1".into(),
            message_id: Some("sevt_msg".into()),
            thinking_id: Some("sevt_thk".into()),
        });
        // One at a time: event_start once, then one event_delta each.
        p.map(&[start.clone(), text("a")], &mut out);
        p.map(&[text("b")], &mut out);
        let thinking = d(DeltaKind::Thinking {
            index: 0,
            text: "hm".into(),
        });
        p.map(&[thinking], &mut out);
        assert_eq!(out.len(), 3, "event_start + two deltas, no thinking");
        let first = format!("{:?}", out[0]);
        assert!(
            first.contains("sevt_msg"),
            "the preview is named by its agent.message: {first}"
        );
        // A run that waited is merged into one event_delta.
        let mut out = VecDeque::new();
        let mut q = Previews {
            message: true,
            ..Previews::default()
        };
        q.map(&[start, text("he"), text("ll"), text("o")], &mut out);
        assert_eq!(out.len(), 2);
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_the_broadcast_is_told_where_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let (tx, rx) = broadcast::channel(4);
        let mut feed = Feed {
            store,
            session_id: "sesn_x".into(),
            cursor: 7,
            replaying: false,
            tether_events: false,
            queue: VecDeque::new(),
            rx,
            previews: Previews::default(),
            shutdown: CancellationToken::new(),
            ended: false,
        };
        for n in 0..10 {
            let d = Delta {
                session_id: "sesn_x".into(),
                n,
                kind: DeltaKind::Notice {
                    message: "x".into(),
                },
            };
            tx.send(Push::Delta(Wire::new(d))).unwrap();
        }
        let ev = feed.next().await.unwrap();
        let text = format!("{ev:?}");
        assert!(
            text.contains("resync") && text.contains("after_seq"),
            "{text}"
        );
        assert!(text.contains('7'), "{text}");
        assert!(
            feed.next().await.is_none(),
            "the stream ends after a resync"
        );
    }

    #[test]
    fn a_reader_joining_mid_response_gets_the_text_so_far_then_only_newer_deltas() {
        let mut p = Previews {
            message: true,
            ..Previews::default()
        };
        let start = DeltaKind::MessageStart {
            model_request_start_id: "sevt_1".into(),
            message_id: Some("sevt_msg".into()),
            thinking_id: Some("sevt_thk".into()),
        };
        let mut out = VecDeque::new();
        p.join(Some((start, Some("hel".into()), None, 5)), &mut out);
        assert_eq!(out.len(), 2, "event_start and the text so far");
        let so_far = format!("{:?}", out[1]);
        assert!(
            so_far.contains("hel") && so_far.contains("sevt_msg"),
            "{so_far}"
        );
        let text = |n, t: &str| {
            Wire::new(Delta {
                session_id: "s".into(),
                n,
                kind: DeltaKind::Text {
                    index: 0,
                    text: t.into(),
                },
            })
        };
        let mut out = VecDeque::new();
        // n 5 is in the text already; n 6 is new, and its preview has started.
        p.map(&[text(5, "l"), text(6, "lo")], &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        let delta = format!("{:?}", out[0]);
        assert!(
            delta.contains("lo") && !delta.contains("llo") && !delta.contains("event_start"),
            "{delta}"
        );
    }

    #[test]
    fn merged_text_is_the_concatenation() {
        let v: serde_json::Value = serde_json::from_str(&delta_json("p", 0, "hello")).unwrap();
        assert_eq!(v["delta"]["content"]["text"], "hello");
        assert_eq!(v["event_id"], "p");
    }
}
