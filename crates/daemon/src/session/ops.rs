//! Session requests both doors answer the same way: the local socket (`server.rs`) and the
//! HTTP API (`http/`). Checks and effects live here once; the doors only translate shapes.

use std::sync::Arc;

use tether_proto::{ContentBlock, ErrorBody, ErrorCode, Event, EventBody};

use crate::session::live::Session;
use crate::session::services::Services;

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
            vault_ids: None,
            agent: None,
        })
        .await?;
    }
    if let Some(m) = model {
        // The event is the truth; the column only serves listings of unloaded sessions.
        s.services.store.set_session_model(&s.id, m).await?;
    }
    Ok(())
}

/// Gives a session its own tools and/or MCP servers from its next turn on, each list given
/// replacing the one it has (hosted: a session update's `agent`). Checked by the rules an
/// agent's are; refused while a turn runs. The row first (a reload applies it), then the
/// live tool policy, MCP servers and network. Returns the agent as the session now runs it,
/// or None when nothing changed; the door records `session.updated` with its snapshot.
pub async fn update_agent(
    s: &Arc<Session>,
    update: &tether_proto::agent::SessionAgentUpdate,
) -> Result<Option<tether_proto::agent::Agent>, ErrorBody> {
    let invalid = |why: String| ErrorBody::new(ErrorCode::InvalidParams, why);
    check_writable(s)?;
    if let Some(link) = &s.thread {
        return Err(invalid(format!(
            "agent: a thread runs its own agent's tools; update the session {} instead",
            link.primary.id
        )));
    }
    let row = s.row();
    let Some((agent_id, version)) = row.agent.clone() else {
        return Err(invalid(format!(
            "agent: session {} was created before agents and has no agent to update; start a new session",
            s.id
        )));
    };
    if s.state().status() == tether_proto::SessionStatus::Running {
        return Err(invalid(format!(
            "agent: session {} is running; its tools and MCP servers change only while it is not (wait for session.status_idle, or send user.interrupt)",
            s.id
        )));
    }
    let mut agent = crate::resources::agents::get(
        &s.services.store,
        &tether_proto::method::AgentParams {
            agent: agent_id,
            version: Some(version),
        },
    )
    .await?;
    let before = row.agent_overrides.clone().unwrap_or_default();
    let after = before.merged(update);
    if after == before {
        return Ok(None);
    }
    after.apply(&mut agent.spec);
    crate::resources::agents::validate(&agent.spec).map_err(|mut e| {
        e.message = format!("agent: {}", e.message);
        e
    })?;
    s.services
        .store
        .set_session_agent_overrides(&s.id, Some(&after))
        .await?;
    let tools = crate::resources::agents::offered_tools(&agent);
    s.update_row(|r| {
        r.agent_overrides = Some(after.clone());
        r.tools = Some(tools.clone());
    });
    let net = crate::resources::environments::session_net_policy(
        &s.services.store,
        &s.row(),
        Some(&agent),
    )
    .await;
    s.set_agent(&agent, net).await;
    Ok(Some(agent))
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

/// Commits a `user.define_outcome` (with its new `outc_` id) and starts the turn that works on
/// it. One outcome at a time, and not while the session waits for an answer or has spent its
/// budget (hosted rules).
/// Validates an outcome and canonicalises its grader and escalation models, checking their
/// providers are usable now rather than when the first cycle ends. Also run before a session
/// is created with an outcome among its `initial_events`, so a bad one creates nothing.
pub fn check_outcome(
    services: &Services,
    spec: &mut tether_proto::outcome::OutcomeSpec,
) -> Result<(), ErrorBody> {
    spec.validate()?;
    let invalid = |why: String| ErrorBody::new(ErrorCode::InvalidParams, why);
    if let Some(g) = spec.grader.as_mut()
        && let Some(m) = g.model.as_mut()
    {
        *m = crate::config::canonical_model(m.trim());
        services
            .providers
            .get(crate::config::split_model(m).0)
            .map_err(|e| invalid(format!("grader.model `{m}`: {e}")))?;
    }
    if let Some(e) = spec.escalate.as_mut() {
        e.model = crate::config::canonical_model(e.model.trim());
        services
            .providers
            .get(crate::config::split_model(&e.model).0)
            .map_err(|err| invalid(format!("escalate.model `{}`: {err}", e.model)))?;
    }
    Ok(())
}

pub async fn define_outcome(
    session: &Arc<Session>,
    mut spec: tether_proto::outcome::OutcomeSpec,
) -> Result<Event, ErrorBody> {
    check_writable(session)?;
    check_outcome(&session.services, &mut spec)?;
    let invalid = |why: String| ErrorBody::new(ErrorCode::InvalidParams, why);
    spec.outcome_id = Some(crate::ids::outcome_id());
    let committed = session
        .append_checked(|st| {
            if let Some(o) = st.active_outcome() {
                return Err(ErrorBody::new(
                    ErrorCode::Conflict,
                    format!(
                        "one outcome at a time: session {} is still working on outcome {} (evaluation {} of {}); wait for its span.outcome_evaluation_end with a terminal result, or interrupt the session to end it",
                        session.id,
                        o.id,
                        o.iteration + 1,
                        o.spec.max_iterations()
                    ),
                ));
            }
            match (&st.status(), &st.stop_reason) {
                (
                    tether_proto::SessionStatus::Idle,
                    Some(tether_proto::StopReason::RequiresAction { .. }),
                ) => {
                    return Err(invalid(format!(
                        "session {} waits for an answer to a tool call (requires_action); answer or interrupt it before defining an outcome",
                        session.id
                    )));
                }
                (tether_proto::SessionStatus::Idle, Some(tether_proto::StopReason::BudgetReached)) => {
                    return Err(invalid(format!(
                        "session {} reached its spending limit (budget_reached); raise max_cost_usd with `session.update` before defining an outcome",
                        session.id
                    )));
                }
                _ => {}
            }
            let mut bodies = vec![EventBody::UserDefineOutcome(spec)];
            if st.status() != tether_proto::SessionStatus::Running {
                bodies.push(EventBody::SessionStatusRunning {});
            }
            Ok(bodies)
        })
        .await?;
    crate::crash::point("after_user_message");
    crate::session::turn::ensure(session);
    committed
        .into_iter()
        .next()
        .ok_or_else(|| ErrorBody::new(ErrorCode::Internal, "the outcome was not recorded"))
}
