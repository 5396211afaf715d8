//! Session requests both doors answer the same way: the local socket (`server.rs`) and the
//! HTTP API (`http/`). Checks and effects live here once; the doors only translate shapes.

use std::sync::Arc;

use tether_proto::{ContentBlock, ErrorBody, ErrorCode, Event, EventBody};

use crate::session::live::Session;

/// The session takes input: it is not archived.
pub fn check_writable(session: &Session) -> Result<(), ErrorBody> {
    if session.row().archived_at.is_some() {
        return Err(ErrorBody::new(
            ErrorCode::Archived,
            format!(
                "session {} is archived and takes no more input; `tether fork {}` continues from it",
                session.id, session.id
            ),
        ));
    }
    Ok(())
}

/// Commits a `user.message` (and the turn it starts); `model` switches the session's model
/// from this message on.
pub async fn send_message(
    session: &Arc<Session>,
    content: Vec<ContentBlock>,
    model: Option<String>,
) -> Result<Event, ErrorBody> {
    check_writable(session)?;
    if content.iter().all(|b| b.as_text().trim().is_empty()) {
        return Err(ErrorBody::new(
            ErrorCode::InvalidParams,
            "the message is empty",
        ));
    }
    if model.is_some() {
        crate::session::turn::update_session(session, model, None).await?;
    }
    Ok(session.user_message(content).await?)
}

/// Commits a `user.interrupt` and stops the running turn; says whether one was running.
/// A session waiting on approvals or custom results drops those calls instead, so the next
/// message starts fresh.
pub async fn interrupt(session: &Arc<Session>) -> Result<(Event, bool), ErrorBody> {
    check_writable(session)?;
    let ev = session.append_one(EventBody::UserInterrupt {}).await?;
    crate::crash::point("after_interrupt");
    let was_running = session.cancel_turn();
    if !was_running {
        crate::session::approvals::drop_waiting(session).await?;
    }
    Ok((ev, was_running))
}
