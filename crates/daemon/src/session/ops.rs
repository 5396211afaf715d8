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
        update_session(session, model, None).await?;
    }
    Ok(crate::session::turn::user_message(session, content).await?)
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

/// Applies `session.update` / `session.send {model}`: a new model (its provider must be
/// usable) and/or spending limit, recorded as `session.updated` when something changes.
pub async fn update_session(
    s: &Arc<Session>,
    model: Option<String>,
    max_cost_usd: Option<f64>,
) -> Result<(), tether_proto::ErrorBody> {
    let invalid =
        |why: String| tether_proto::ErrorBody::new(tether_proto::ErrorCode::InvalidParams, why);
    let model = match model {
        Some(m) if m.trim().is_empty() => return Err(invalid("the model is empty".into())),
        Some(m) => {
            let m = crate::config::canonical_model(m.trim());
            s.services
                .providers
                .get(crate::config::split_model(&m).0)
                .map_err(invalid)?;
            (crate::session::model::current_model(s) != m).then_some(m)
        }
        None => None,
    };
    if let Some(limit) = max_cost_usd {
        validate_budget(limit)?;
    }
    let max_cost_usd = max_cost_usd.filter(|l| s.state().max_cost_usd != Some(*l));
    if model.is_some() || max_cost_usd.is_some() {
        s.append_one(EventBody::SessionUpdated {
            model: model.clone(),
            max_cost_usd,
            title: None,
            name: None,
            metadata: None,
        })
        .await?;
    }
    if let Some(m) = model {
        // The event is the truth; the column only serves listings of unloaded sessions.
        s.services.store.set_session_model(&s.id, m).await?;
    }
    Ok(())
}

/// A spending limit must be a non-negative, finite number of dollars.
pub fn validate_budget(limit: f64) -> Result<(), tether_proto::ErrorBody> {
    if limit.is_finite() && limit >= 0.0 {
        return Ok(());
    }
    Err(tether_proto::ErrorBody::new(
        tether_proto::ErrorCode::InvalidParams,
        format!("max_cost_usd must be a non-negative number of dollars, got {limit}"),
    ))
}
