//! MCP elicitation (issue 25): a server asks the user for input during one of its tool calls
//! (`elicitation/create`, form mode). Each MCP connection's client handler (`mcp::Elicitor`)
//! advertises the capability and asks the session through [`AskUser`]: the request is
//! recorded (`tether.mcp_elicitation_requested`), the first answer from any client is checked
//! against the requested schema and recorded (`tether.mcp_elicitation_answered`) before the
//! server gets it. tetherd itself cancels (an answered event with a `reason`) when the wait
//! times out, the call ends (interrupt, call limit, the server gave up) or tetherd restarted
//! while it waited.
//!
//! Which elicitations are pending is a fold over the log ([`SessionState::elicitations`]);
//! who waits for an answer lives only in memory ([`Waiters`]), so after a restart nothing
//! waits and recovery closes the pending ones.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tether_proto::elicitation::{
    Elicitation, ElicitationAction, ElicitationMode, ElicitationStatus,
};
use tether_proto::{ErrorBody, ErrorCode, Event, EventBody};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::session::live::Session;
use crate::session::mcp::{AskUser, Question, UserAnswer};
use crate::session::state::SessionState;

/// What the user (or tetherd) answered.
pub type Reply = UserAnswer;

fn cancel() -> Reply {
    Reply {
        action: ElicitationAction::Cancel,
        content: None,
    }
}

/// The elicitations a live tool call waits on: id -> where its answer goes.
#[derive(Default)]
pub struct Waiters(Mutex<HashMap<String, oneshot::Sender<Reply>>>);

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<Reply>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waits(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    fn take(&self, id: &str) -> Option<oneshot::Sender<Reply>> {
        self.lock().remove(id)
    }
}

impl AskUser for Session {
    fn notify_user(self: Arc<Self>, body: EventBody) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            if let Err(e) = self.append_one_retrying(body).await {
                tracing::error!(session = %self.id, error = %e, "cannot record an MCP authorization notice");
            }
        })
    }

    fn ask_user(
        self: Arc<Self>,
        server: String,
        question: Question,
        withdrawn: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = UserAnswer> + Send>> {
        Box::pin(async move {
            // A request belongs to the call in flight (a session runs one MCP call at a
            // time); one that comes between calls has no turn to pause, so it is declined.
            let Some(tool_use_id) = self.live_tool() else {
                tracing::info!(server = %server, session = %self.id, "declined an elicitation that came outside a tool call");
                return UserAnswer {
                    action: ElicitationAction::Decline,
                    content: None,
                };
            };
            let limit = self.services.config.mcp.elicitation_timeout();
            ask(
                &self,
                Asked {
                    server,
                    tool_use_id,
                    question,
                },
                limit,
                withdrawn,
            )
            .await
        })
    }

    fn completed(
        self: Arc<Self>,
        server: String,
        server_id: String,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { completed(&self, &server, &server_id).await })
    }

    fn wait_completed(
        self: Arc<Self>,
        server: String,
        server_id: String,
        limit: Duration,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = bool> + Send>> {
        Box::pin(async move {
            // Subscribed before the first look, so a completion in between is not missed.
            let mut appends = self.watch_appends();
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                let done = self.state().elicitations.iter().any(|e| {
                    e.mode == ElicitationMode::Url
                        && e.mcp_server_name == server
                        && e.server_elicitation_id.as_deref() == Some(server_id.as_str())
                        && e.completed
                });
                if done {
                    return true;
                }
                tokio::select! {
                    changed = appends.changed() => if changed.is_err() { return false },
                    _ = tokio::time::sleep_until(deadline) => return false,
                    _ = cancel.cancelled() => return false,
                }
            }
        })
    }
}

/// One request as the server made it.
pub struct Asked {
    pub server: String,
    pub tool_use_id: String,
    pub question: Question,
}

/// Records the request, then waits for the first answer, the time limit or the server
/// withdrawing it; always ends with the answer recorded. A URL-mode request whose URL is
/// not a plain web link is recorded and declined at once, with the reason.
pub async fn ask(
    s: &Arc<Session>,
    asked: Asked,
    limit: Duration,
    withdrawn: CancellationToken,
) -> Reply {
    let id = crate::ids::elicitation_id();
    // A child thread's request names its agent, so the session's clients can say who asks.
    let agent_name = s.row().thread_agent.as_ref().map(|a| a.name().to_string());
    let (message, requested_schema, mode, url, server_elicitation_id) = match asked.question {
        Question::Form { message, schema } => (message, schema, ElicitationMode::Form, None, None),
        Question::Url {
            message,
            url,
            server_id,
        } => (
            message,
            Value::Null,
            ElicitationMode::Url,
            Some(url),
            Some(server_id),
        ),
    };
    let refused = url
        .as_deref()
        .and_then(|u| tether_proto::elicitation::check_url(u).err());
    let body = EventBody::McpElicitationRequested {
        elicitation_id: id.clone(),
        mcp_server_name: asked.server,
        tool_use_id: Some(asked.tool_use_id),
        message,
        requested_schema,
        mode,
        url,
        server_elicitation_id,
        agent_name,
    };
    if let Some(why) = refused {
        // Recorded, so the user sees what was asked and why tetherd said no.
        let declined = EventBody::McpElicitationAnswered {
            elicitation_id: id.clone(),
            action: ElicitationAction::Decline,
            content: None,
            reason: Some(format!("tetherd declined the link: {why}")),
        };
        if let Err(e) = s.append(vec![body, declined]).await {
            tracing::error!(session = %s.id, error = %e, "cannot record a declined elicitation");
        }
        return Reply {
            action: ElicitationAction::Decline,
            content: None,
        };
    }
    let (tx, rx) = oneshot::channel();
    // Waiting before it is visible, so the first answer always finds its waiter.
    s.elicitations.lock().insert(id.clone(), tx);
    if let Err(e) = s.append_one_retrying(body).await {
        tracing::error!(session = %s.id, error = %e, "cannot record an elicitation; cancelling it");
        s.elicitations.take(&id);
        return cancel();
    }
    crate::crash::point("after_elicitation_requested");
    let why = tokio::select! {
        r = rx => return r.unwrap_or_else(|_| cancel()),
        _ = tokio::time::sleep(limit) => format!(
            "nobody answered within {} s ([mcp] elicitation_timeout_secs in tetherd's config.toml)",
            limit.as_secs()
        ),
        _ = withdrawn.cancelled() => "the MCP server withdrew the request".to_string(),
    };
    close(s, &id, &why).await
}

/// The server `server` says its URL-mode elicitation `server_id` is complete: recorded
/// (`tether.mcp_elicitation_completed`), which closes its prompt everywhere. One still
/// pending is answered `accept` for the user (they finished on the page), recorded first.
pub async fn completed(s: &Arc<Session>, server: &str, server_id: &str) {
    let mut answered = false;
    let recorded = s
        .append_checked(|st| {
            let Some(e) = st.elicitations.iter().rev().find(|e| {
                e.mode == ElicitationMode::Url
                    && e.mcp_server_name == server
                    && e.server_elicitation_id.as_deref() == Some(server_id)
            }) else {
                return Ok::<_, crate::store::error::StoreError>(Vec::new());
            };
            if e.completed {
                return Ok(Vec::new());
            }
            let mut out = vec![EventBody::McpElicitationCompleted {
                elicitation_id: e.id.clone(),
            }];
            answered = e.status == ElicitationStatus::Pending;
            if answered {
                out.push(EventBody::McpElicitationAnswered {
                    elicitation_id: e.id.clone(),
                    action: ElicitationAction::Accept,
                    content: None,
                    reason: Some(
                        "the MCP server said the user finished on the page before anyone answered"
                            .to_string(),
                    ),
                });
            }
            Ok(out)
        })
        .await;
    let events = match recorded {
        Ok(events) => events,
        Err(e) => {
            tracing::error!(session = %s.id, error = %e, "cannot record an elicitation's completion");
            return;
        }
    };
    let Some(elicitation_id) = events.iter().find_map(|e| match &e.body {
        EventBody::McpElicitationCompleted { elicitation_id } => Some(elicitation_id.clone()),
        _ => None,
    }) else {
        tracing::info!(server, server_id, session = %s.id, "ignored a completion of no URL elicitation of this session");
        return;
    };
    if answered && let Some(tx) = s.elicitations.take(&elicitation_id) {
        let _ = tx.send(Reply {
            action: ElicitationAction::Accept,
            content: None,
        });
    }
}

/// Cancels elicitation `id` with `reason` unless it was answered meanwhile; the answer that
/// stands either way.
async fn close(s: &Arc<Session>, id: &str, reason: &str) -> Reply {
    s.elicitations.take(id);
    let closed = s
        .append_checked(|st| {
            Ok::<_, crate::store::error::StoreError>(
                match st.elicitations.iter().find(|e| e.id == id) {
                    Some(e) if e.status == ElicitationStatus::Pending => {
                        vec![cancelled(id, reason)]
                    }
                    _ => Vec::new(),
                },
            )
        })
        .await;
    if let Err(e) = closed {
        tracing::error!(session = %s.id, error = %e, "cannot record an elicitation's cancel");
    }
    let st = s.state();
    match st.elicitations.iter().find(|e| e.id == id) {
        Some(Elicitation {
            action: Some(action),
            content,
            ..
        }) => Reply {
            action: *action,
            content: content.clone(),
        },
        _ => cancel(),
    }
}

fn cancelled(id: &str, reason: &str) -> EventBody {
    EventBody::McpElicitationAnswered {
        elicitation_id: id.to_string(),
        action: ElicitationAction::Cancel,
        content: None,
        reason: Some(reason.to_string()),
    }
}

/// The tool call `tool_use_id` ended (or was cut short): its elicitations still open are
/// cancelled with `reason`, recorded before its result.
pub async fn close_for_call(s: &Arc<Session>, tool_use_id: &str, reason: &str) {
    let open: Vec<String> = s
        .state()
        .elicitations
        .iter()
        .filter(|e| {
            e.status == ElicitationStatus::Pending && e.tool_use_id.as_deref() == Some(tool_use_id)
        })
        .map(|e| e.id.clone())
        .collect();
    for id in open {
        // Taking its waiter also answers the server `cancel`, if it still listens.
        let _ = close(s, &id, reason).await;
    }
}

/// The session's elicitations, oldest first: the pending ones, or all. A primary's include
/// its child threads' (cross-posted, with `session_thread_id` and the agent's name).
pub fn list(s: &Session, all: bool) -> Vec<Elicitation> {
    let st = s.state();
    let mut out: Vec<Elicitation> = st
        .elicitations
        .iter()
        .chain(&st.threads.elicitations)
        .filter(|e| all || e.status == ElicitationStatus::Pending)
        .cloned()
        .collect();
    out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    out
}

/// After a restart nothing waits for the elicitations the log still has pending: they are
/// closed as cancelled (recovery appends these with `session.status_rescheduled`).
pub fn close_stale(st: &SessionState, reason: &str) -> Vec<EventBody> {
    st.elicitations
        .iter()
        .filter(|e| e.status == ElicitationStatus::Pending)
        .map(|e| cancelled(&e.id, reason))
        .collect()
}

/// Answers elicitation `id` of this session: the first answer wins, `content` goes with
/// `accept` only and must match the requested schema. Recorded, then sent to the server.
pub async fn answer(
    s: &Arc<Session>,
    id: &str,
    action: ElicitationAction,
    content: Option<Value>,
) -> Result<Event, ErrorBody> {
    let url_mode = s
        .state()
        .elicitations
        .iter()
        .any(|e| e.id == id && e.mode == ElicitationMode::Url);
    let empty = |c: &Value| c.as_object().is_some_and(|m| m.is_empty());
    let content = match (action, content) {
        // URL mode: accept says the user opened the page; the server gets no content.
        (ElicitationAction::Accept, c) if url_mode => match c {
            Some(c) if !empty(&c) => {
                return Err(ErrorBody::new(
                    ErrorCode::InvalidParams,
                    format!(
                        "elicitation {id} asks the user to open a page, so it takes no content: accept (after opening it), decline or cancel"
                    ),
                ));
            }
            _ => None,
        },
        (ElicitationAction::Accept, None) => Some(Value::Object(Default::default())),
        (ElicitationAction::Accept, c) => c,
        (_, Some(_)) => {
            return Err(ErrorBody::new(
                ErrorCode::InvalidParams,
                format!(
                    "content goes with accept only; to {} elicitation {id}, send no content",
                    action.as_str()
                ),
            ));
        }
        (_, None) => None,
    };
    let events = s
        .append_checked(|st| {
            check(st, &s.id, id, content.as_ref())?;
            if !s.elicitations.waits(id) {
                // Pending in the log but nobody waits (the call just ended): recovery or the
                // call's end closes it.
                return Err(ErrorBody::new(
                    ErrorCode::Conflict,
                    format!("elicitation {id} is no longer waited on: its tool call ended"),
                ));
            }
            Ok::<_, ErrorBody>(vec![EventBody::McpElicitationAnswered {
                elicitation_id: id.to_string(),
                action,
                content: content.clone(),
                reason: None,
            }])
        })
        .await?;
    crate::crash::point("after_elicitation_answered");
    if let Some(tx) = s.elicitations.take(id) {
        let _ = tx.send(Reply { action, content });
    }
    events
        .into_iter()
        .next()
        .ok_or_else(|| ErrorBody::new(ErrorCode::Internal, "the answer was not recorded"))
}

/// Whether `id` is pending here and `content` fits its schema; the error says what to do.
fn check(
    st: &SessionState,
    session: &str,
    id: &str,
    content: Option<&Value>,
) -> Result<(), ErrorBody> {
    let Some(e) = st.elicitations.iter().find(|e| e.id == id) else {
        let pending: Vec<&str> = st
            .elicitations
            .iter()
            .filter(|e| e.status == ElicitationStatus::Pending)
            .map(|e| e.id.as_str())
            .collect();
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!(
                "no elicitation {id} in session {session}; {}",
                if pending.is_empty() {
                    "none is pending".to_string()
                } else {
                    format!("pending: {}", pending.join(", "))
                }
            ),
        ));
    };
    if e.status == ElicitationStatus::Answered {
        let how = e.action.map_or("answered", |a| a.as_str());
        return Err(ErrorBody::new(
            ErrorCode::Conflict,
            format!(
                "elicitation {id} was already answered ({how}{}); the first answer stands",
                e.reason
                    .as_deref()
                    .map(|r| format!(" by tetherd: {r}"))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(content) = content {
        tether_proto::elicitation::validate(&e.requested_schema, content).map_err(|why| {
            ErrorBody::new(
                ErrorCode::InvalidParams,
                format!(
                    "{why}; elicitation {id} is still pending: answer again with content that fits (or decline)"
                ),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ev(seq: u64, body: EventBody) -> Event {
        Event {
            id: format!("sevt_{seq}"),
            session_id: "sesn_1".into(),
            seq,
            processed_at: Some("2026-12-07T19:00:00Z".into()),
            session_thread_id: None,
            body,
        }
    }

    fn requested(id: &str) -> EventBody {
        EventBody::McpElicitationRequested {
            elicitation_id: id.into(),
            mcp_server_name: "forms".into(),
            tool_use_id: Some("sevt_9".into()),
            message: "Your name?".into(),
            requested_schema: json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
            mode: ElicitationMode::Form,
            url: None,
            server_elicitation_id: None,
            agent_name: None,
        }
    }

    #[test]
    fn the_fold_tracks_pending_and_answered_and_checks_answers() {
        let mut st = SessionState::default();
        st.apply(&ev(1, requested("elic_a")));
        st.apply(&ev(2, requested("elic_b")));
        st.apply(&ev(
            3,
            EventBody::McpElicitationAnswered {
                elicitation_id: "elic_a".into(),
                action: ElicitationAction::Accept,
                content: Some(json!({"name": "Ada"})),
                reason: None,
            },
        ));
        let a = &st.elicitations[0];
        assert_eq!(a.status, ElicitationStatus::Answered);
        assert_eq!(a.content, Some(json!({"name": "Ada"})));
        assert_eq!(st.elicitations[1].status, ElicitationStatus::Pending);

        let e = check(&st, "sesn_1", "elic_a", None).unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(
            e.message.contains("already answered (accept)"),
            "{}",
            e.message
        );
        let e = check(&st, "sesn_1", "elic_zz", None).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("elic_zz") && e.message.contains("pending: elic_b"));
        let e = check(&st, "sesn_1", "elic_b", Some(&json!({"name": 3}))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        assert!(e.message.contains("content.name"), "{}", e.message);
        check(&st, "sesn_1", "elic_b", Some(&json!({"name": "Bo"}))).unwrap();

        // After a restart, the pending one is closed as cancelled.
        let closed = close_stale(&st, "tetherd restarted");
        assert_eq!(closed.len(), 1);
        st.apply(&ev(4, closed[0].clone()));
        assert!(
            st.elicitations
                .iter()
                .all(|e| e.status == ElicitationStatus::Answered)
        );
        assert_eq!(
            st.elicitations[1].reason.as_deref(),
            Some("tetherd restarted")
        );
    }

    #[test]
    fn a_childs_cross_posted_questions_fold_apart_and_url_ones_complete() {
        let mut st = SessionState::default();
        let mut asked = ev(
            1,
            EventBody::McpElicitationRequested {
                elicitation_id: "elic_c".into(),
                mcp_server_name: "login".into(),
                tool_use_id: Some("sevt_9".into()),
                message: "Sign in".into(),
                requested_schema: Value::Null,
                mode: ElicitationMode::Url,
                url: Some("https://example.com/login".into()),
                server_elicitation_id: Some("srv-1".into()),
                agent_name: Some("reviewer".into()),
            },
        );
        asked.session_thread_id = Some("sthr_1".into());
        st.apply(&asked);
        // Not the primary's own: its recovery and answers leave it to the thread.
        assert!(st.elicitations.is_empty());
        assert!(close_stale(&st, "restart").is_empty());
        let e = &st.threads.elicitations[0];
        assert_eq!(e.session_thread_id.as_deref(), Some("sthr_1"));
        assert_eq!(e.agent_name.as_deref(), Some("reviewer"));
        assert_eq!(e.mode, ElicitationMode::Url);
        assert_eq!(e.server_elicitation_id.as_deref(), Some("srv-1"));
        let mut done = ev(
            2,
            EventBody::McpElicitationCompleted {
                elicitation_id: "elic_c".into(),
            },
        );
        done.session_thread_id = Some("sthr_1".into());
        st.apply(&done);
        assert!(st.threads.elicitations[0].completed);
        // The thread's own copy folds as its own.
        let mut own = SessionState::default();
        asked.session_thread_id = None;
        own.apply(&asked);
        assert_eq!(own.elicitations.len(), 1);
        assert_eq!(own.elicitations[0].session_thread_id, None);
    }
}
