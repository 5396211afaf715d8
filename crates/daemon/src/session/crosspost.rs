//! What a child thread's appends put in its primary's stream (hosted placement): its
//! lifecycle (`session.thread_status_*`, also written in its own stream next to the
//! `session.status_*` its fold uses), its tool calls that wait for a client (an `always_ask`
//! approval, a custom tool), its MCP servers' elicitations and the answers to them, and the
//! authorizations its MCP servers need (`tether.mcp_authorization_required`). A cross-post
//! keeps the original's id and names the thread in `session_thread_id`, so a client of the
//! primary answers a call by the same id it would use on the thread's own stream.

use tether_proto::{EventBody, Permission};

use crate::store::Draft;

/// The child's own drafts (its bodies, each status change followed by its thread status
/// event) and the drafts for the primary's stream.
pub fn drafts(
    thread_id: &str,
    agent_name: &str,
    bodies: Vec<EventBody>,
) -> (Vec<Draft>, Vec<Draft>) {
    drafts_of(
        thread_id,
        agent_name,
        bodies.into_iter().map(Draft::new).collect(),
    )
}

/// [`drafts`] of events that may carry an id chosen in advance (kept, also on a cross-post).
pub fn drafts_of(
    thread_id: &str,
    agent_name: &str,
    drafts: Vec<Draft>,
) -> (Vec<Draft>, Vec<Draft>) {
    let mut own = Vec::with_capacity(drafts.len() + 1);
    let mut primary = Vec::new();
    let mut cross = |own: &mut Vec<Draft>, id: Option<String>, body: EventBody, tagged: bool| {
        let id = id.unwrap_or_else(crate::ids::event_id);
        own.push(Draft {
            id: Some(id.clone()),
            session_thread_id: tagged.then(|| thread_id.to_string()),
            body: body.clone(),
        });
        primary.push(Draft {
            id: Some(id),
            session_thread_id: Some(thread_id.to_string()),
            body,
        });
    };
    for draft in drafts {
        let body = &draft.body;
        let name = agent_name.to_string();
        let status = match body {
            EventBody::SessionStatusRunning {} => {
                Some(EventBody::SessionThreadStatusRunning { agent_name: name })
            }
            EventBody::SessionStatusIdle { stop_reason } => {
                Some(EventBody::SessionThreadStatusIdle {
                    agent_name: name,
                    stop_reason: stop_reason.clone(),
                    stop_details: None,
                })
            }
            EventBody::SessionStatusRescheduled {} => {
                Some(EventBody::SessionThreadStatusRescheduled { agent_name: name })
            }
            EventBody::SessionStatusTerminated {} => {
                Some(EventBody::SessionThreadStatusTerminated { agent_name: name })
            }
            _ => None,
        };
        let waits_for_client = matches!(
            body,
            EventBody::AgentToolUse {
                evaluated_permission: Some(Permission::Ask),
                ..
            } | EventBody::AgentMcpToolUse {
                evaluated_permission: Some(Permission::Ask),
                ..
            } | EventBody::AgentCustomToolUse { .. }
                | EventBody::UserToolConfirmation { .. }
                | EventBody::UserCustomToolResult { .. }
                // Its MCP servers' questions to the user, and how they ended.
                | EventBody::McpElicitationRequested { .. }
                | EventBody::McpElicitationAnswered { .. }
                | EventBody::McpElicitationCompleted { .. }
                // A login its MCP server needs: the user of the primary completes it.
                | EventBody::McpAuthorizationRequired { .. }
        );
        if waits_for_client {
            cross(&mut own, draft.id, draft.body, false);
        } else {
            own.push(draft);
        }
        if let Some(status) = status {
            cross(&mut own, None, status, true);
        }
    }
    (own, primary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::StopReason;

    #[test]
    fn status_changes_and_waiting_calls_are_cross_posted_with_their_ids() {
        let (own, primary) = drafts(
            "sthr_1",
            "reviewer",
            vec![
                EventBody::SessionStatusRunning {},
                EventBody::AgentToolUse {
                    name: "bash".into(),
                    input: serde_json::json!({}),
                    evaluated_permission: Some(Permission::Ask),
                },
                EventBody::AgentToolUse {
                    name: "read".into(),
                    input: serde_json::json!({}),
                    evaluated_permission: Some(Permission::Allow),
                },
                EventBody::SessionStatusIdle {
                    stop_reason: StopReason::EndTurn,
                },
            ],
        );
        let types: Vec<_> = own.iter().map(|d| d.body.type_name()).collect();
        assert_eq!(
            types,
            [
                "session.status_running",
                "session.thread_status_running",
                "agent.tool_use",
                "agent.tool_use",
                "session.status_idle",
                "session.thread_status_idle"
            ]
        );
        let crossed: Vec<_> = primary.iter().map(|d| d.body.type_name()).collect();
        assert_eq!(
            crossed,
            [
                "session.thread_status_running",
                "agent.tool_use",
                "session.thread_status_idle"
            ]
        );
        // Same id on both sides; the primary's copies name the thread.
        assert_eq!(own[2].id, primary[1].id);
        assert!(
            own[2].session_thread_id.is_none(),
            "the thread's own call is its own"
        );
        assert!(
            primary
                .iter()
                .all(|d| d.session_thread_id.as_deref() == Some("sthr_1"))
        );
        assert!(own[3].id.is_none(), "an allowed call stays in the thread");
    }

    #[test]
    fn a_childs_mcp_questions_and_their_ends_are_cross_posted() {
        let (own, primary) = drafts(
            "sthr_1",
            "reviewer",
            vec![
                EventBody::McpElicitationRequested {
                    elicitation_id: "elic_1".into(),
                    mcp_server_name: "forms".into(),
                    tool_use_id: Some("sevt_1".into()),
                    message: "Who?".into(),
                    requested_schema: serde_json::json!({"type": "object"}),
                    mode: Default::default(),
                    url: None,
                    server_elicitation_id: None,
                    agent_name: Some("reviewer".into()),
                },
                EventBody::McpElicitationAnswered {
                    elicitation_id: "elic_1".into(),
                    action: tether_proto::elicitation::ElicitationAction::Decline,
                    content: None,
                    reason: None,
                },
                EventBody::McpElicitationCompleted {
                    elicitation_id: "elic_1".into(),
                },
            ],
        );
        assert_eq!(own.len(), 3);
        assert_eq!(primary.len(), 3);
        for (o, p) in own.iter().zip(&primary) {
            assert_eq!(o.id, p.id, "the same id on both sides");
            assert_eq!(p.session_thread_id.as_deref(), Some("sthr_1"));
        }
    }

    #[test]
    fn a_childs_mcp_authorization_is_cross_posted_for_the_primarys_user() {
        let asked = EventBody::McpAuthorizationRequired {
            mcp_server_name: "remote".into(),
            mcp_server_url: "https://mcp.example.com/mcp".into(),
            authorization_url: "https://auth.example.com/authorize?client_id=x".into(),
            login_id: "login_1".into(),
            scope: None,
            reason: "unauthorized".into(),
        };
        let (own, primary) = drafts("sthr_1", "reviewer", vec![asked.clone()]);
        assert_eq!(own.len(), 1);
        assert_eq!(primary.len(), 1, "not cross-posted");
        assert_eq!(primary[0].body, asked);
        assert_eq!(own[0].id, primary[0].id);
        assert_eq!(primary[0].session_thread_id.as_deref(), Some("sthr_1"));
    }
}
