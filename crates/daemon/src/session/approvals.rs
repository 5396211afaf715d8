//! Answers to the tool calls a session waits on (`requires_action`): confirmations of
//! `always_ask` calls and results of custom tools. The socket server and the HTTP API both
//! answer through here. Each answer is checked and committed under the session's append lock,
//! so two clients answering one call can't both land; the answer that completes the set
//! restarts the turn.

use std::sync::Arc;

use tether_proto::{
    ConfirmationResult, ContentBlock, ErrorBody, ErrorCode, Event, EventBody, SessionStatus,
    ToolStatus,
};

use crate::provider::Part;
use crate::session::live::Session;
use crate::session::state::{Gate, SessionState};

/// Allows or denies a built-in tool call waiting under `always_ask` (`user.tool_confirmation`).
/// `tool_use_id` is the `sevt_` id of its `agent.tool_use` event.
pub async fn confirm(
    session: &Arc<Session>,
    tool_use_id: &str,
    result: ConfirmationResult,
    deny_message: Option<String>,
) -> Result<Event, ErrorBody> {
    let body = EventBody::UserToolConfirmation {
        tool_use_id: tool_use_id.to_string(),
        result,
        deny_message: deny_message.filter(|m| !m.trim().is_empty()),
    };
    answer(session, tool_use_id, Kind::Confirmation, body).await
}

/// Gives a custom tool call its result (`user.custom_tool_result`). `custom_tool_use_id` is the
/// `sevt_` id of its `agent.custom_tool_use` event.
pub async fn custom_result(
    session: &Arc<Session>,
    custom_tool_use_id: &str,
    content: Vec<ContentBlock>,
    is_error: bool,
) -> Result<Event, ErrorBody> {
    let body = EventBody::UserCustomToolResult {
        custom_tool_use_id: custom_tool_use_id.to_string(),
        content,
        is_error,
    };
    answer(session, custom_tool_use_id, Kind::CustomResult, body).await
}

/// A worker's result of a built-in call in a self-hosted session (`user.tool_result`),
/// committed as the same `agent.tool_result` a call run here gets.
pub async fn worker_result(
    session: &Arc<Session>,
    tool_use_id: &str,
    content: Vec<ContentBlock>,
    is_error: bool,
) -> Result<Event, ErrorBody> {
    let body = EventBody::AgentToolResult {
        tool_use_id: tool_use_id.to_string(),
        content: if content.is_empty() {
            vec![ContentBlock::text("(no output)")]
        } else {
            content
        },
        is_error,
        status: if is_error {
            ToolStatus::Error
        } else {
            ToolStatus::Ok
        },
        exit_code: None,
        duration_ms: 0,
    };
    answer(session, tool_use_id, Kind::WorkerResult, body).await
}

/// The worker that held a self-hosted session lost it (its lease expired, or its item
/// stopped) while calls were its to run. The daemon-crash rules apply, as it can't know how
/// far they got: a read-only call is left waiting for the next worker; any other gets an
/// `interrupted` result and is never run again. Returns whether calls still wait for a
/// worker (so the session needs a new work item).
pub async fn worker_lost(session: &Arc<Session>) -> Result<bool, ErrorBody> {
    let mut restart = false;
    let mut remaining = false;
    session
        .append_checked(|st| {
            let (again, lost): (Vec<_>, Vec<_>) = st.worker_calls().partition(|p| {
                crate::session::state::READ_ONLY_WORKER_TOOLS.contains(&p.name.as_str())
            });
            remaining = !again.is_empty();
            let mut bodies: Vec<EventBody> = lost
                .iter()
                .map(|p| {
                    crate::session::events::result_of(
                        p,
                        format!(
                            "[interrupted: the worker running this `{}` call stopped answering (its lease expired or its work item was stopped) before it posted a result. It was NOT run again: it may have run partly or fully; check before retrying.]",
                            p.name
                        ),
                        true,
                        ToolStatus::Interrupted,
                        0,
                    )
                })
                .collect();
            if !bodies.is_empty() && st.awaiting_ids().len() == bodies.len() {
                restart = true;
                if st.status() != SessionStatus::Running {
                    bodies.push(EventBody::SessionStatusRunning {});
                }
            }
            Ok::<_, ErrorBody>(bodies)
        })
        .await?;
    if restart {
        crate::session::turn::ensure(session);
    }
    Ok(remaining)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Confirmation,
    CustomResult,
    WorkerResult,
}

async fn answer(
    session: &Arc<Session>,
    id: &str,
    kind: Kind,
    body: EventBody,
) -> Result<Event, ErrorBody> {
    let mut last = false;
    let events = session
        .append_checked(|st| {
            check(st, &session.id, id, kind)?;
            // `check` passed, so `id` is one of the awaited calls.
            last = st.awaiting_ids().len() == 1;
            let mut bodies = vec![body];
            if last && st.status() != SessionStatus::Running {
                bodies.push(EventBody::SessionStatusRunning {});
            }
            Ok::<_, ErrorBody>(bodies)
        })
        .await?;
    if last {
        crate::crash::point("after_answer");
        crate::session::turn::ensure(session);
    }
    events
        .into_iter()
        .next()
        .ok_or_else(|| ErrorBody::new(ErrorCode::Internal, "the answer was not recorded"))
}

/// Whether `id` is a call of this kind that waits for an answer; the error says what to do
/// instead.
fn check(st: &SessionState, session: &str, id: &str, kind: Kind) -> Result<(), ErrorBody> {
    let conflict = |msg: String| Err(ErrorBody::new(ErrorCode::Conflict, msg));
    let Some(call) = st.pending_tools.iter().find(|p| p.tool_use_id == id) else {
        let answered = st
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .any(|p| matches!(p, Part::ToolResult { tool_use_id, .. } if tool_use_id == id));
        // 400, as hosted: the SDKs retry a 409 as transient, and this never changes.
        if answered {
            return Err(ErrorBody::new(
                ErrorCode::InvalidParams,
                format!("tool call {id} already has its result; there is nothing left to answer"),
            ));
        }
        let waiting = st.awaiting_ids();
        let hint = if waiting.is_empty() {
            "nothing in it waits for an answer".to_string()
        } else {
            format!(
                "it waits on: {} (`tether approve {session}` lists them)",
                waiting.join(", ")
            )
        };
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!(
                "no tool call {id} is waiting for approval or a result in session {session}; {hint}"
            ),
        ));
    };
    let name = &call.name;
    if kind == Kind::WorkerResult {
        return if st.waits_on(call) && !call.awaits_answer() {
            Ok(())
        } else if st.remote_tools && call.gate == Gate::Ask {
            conflict(format!(
                "tool call {id} (`{name}`) waits for approval first: `tether approve {session} {id}`; a worker runs it once it is allowed"
            ))
        } else {
            Err(ErrorBody::new(
                ErrorCode::InvalidParams,
                format!(
                    "tool call {id} (`{name}`) is not run by a self-hosted worker (`user.tool_result` answers only the built-in tool calls of sessions in a self_hosted environment); tetherd runs it and records its result itself"
                ),
            ))
        };
    }
    match (&call.gate, kind) {
        (Gate::Ask, Kind::Confirmation) | (Gate::Custom, Kind::CustomResult) => Ok(()),
        (Gate::Custom, Kind::Confirmation) => conflict(format!(
            "{id} calls the custom tool `{name}`: it needs a result, not an approval; answer with `tether tool-result {session} {id} --json '...'` (protocol: custom_tool.result)"
        )),
        (_, Kind::CustomResult) => conflict(format!(
            "{id} calls the {} tool `{name}`, not a custom tool; {}",
            if call.mcp.is_some() {
                "MCP"
            } else {
                "built-in"
            },
            if call.gate == Gate::Ask {
                format!(
                    "it waits for approval: `tether approve {session} {id}` (or --deny MESSAGE)"
                )
            } else {
                "tetherd runs it and records its result itself".to_string()
            }
        )),
        (Gate::Confirmed, Kind::Confirmation) | (Gate::Denied { .. }, Kind::Confirmation) => {
            conflict(format!(
                "tool call {id} (`{name}`) was already {}; a call takes one answer",
                if call.gate == Gate::Confirmed {
                    "allowed"
                } else {
                    "denied"
                }
            ))
        }
        (Gate::Allowed, Kind::Confirmation) => conflict(format!(
            "tool call {id} (`{name}`) was allowed by its permission policy (always_allow) and does not wait for approval"
        )),
        // Checked above.
        (_, Kind::WorkerResult) => Ok(()),
    }
}

/// `user.interrupt` on a session idle with calls waiting for answers: the user gave up on
/// them, so they end as interrupted and a new message starts afresh instead of waiting again.
/// Returns whether there was anything to drop.
pub async fn drop_waiting(session: &Arc<Session>) -> Result<bool, ErrorBody> {
    let events = session
        .append_checked(|st| {
            Ok::<_, ErrorBody>(
                if st.status() == SessionStatus::Idle && !st.awaiting_ids().is_empty() {
                    crate::session::events::interrupted_then_idle(
                        st,
                        "not run: the user interrupted the turn while it waited for an answer",
                    )
                } else if st.status() == SessionStatus::Idle
                    && let Some(end) = st.interrupted_outcome_end()
                {
                    // A turn that failed left its outcome open: the interrupt closes it.
                    vec![end]
                } else {
                    Vec::new()
                },
            )
        })
        .await?;
    Ok(!events.is_empty())
}
