//! The event bodies the session's modules build: tool results (run, denied, interrupted),
//! model request ends and session errors. One place, below everything that appends them (the
//! turn loop, approvals, the MCP client, recovery), so none of those reaches into another for
//! a builder.

use tether_proto::{
    ContentBlock, EventBody, ModelUsage, RetryStatus, RetryStatusKind, SessionErrorInfo,
    StopReason, ToolStatus,
};

use crate::session::state::{PendingTool, SessionState};
use crate::tools;

/// The result of a call that was not run: refused by policy or denied by the user.
pub fn denied_result(tool_use_id: String, text: String) -> EventBody {
    EventBody::AgentToolResult {
        tool_use_id,
        content: vec![ContentBlock::text(text)],
        is_error: true,
        status: ToolStatus::Denied,
        exit_code: None,
        duration_ms: 0,
    }
}

pub fn tool_result(
    tool_use_id: String,
    outcome: tools::ToolOutcome,
    duration_ms: u64,
) -> EventBody {
    EventBody::AgentToolResult {
        tool_use_id,
        content: vec![ContentBlock::text(outcome.content)],
        is_error: outcome.is_error,
        status: match outcome.status {
            tools::ToolStatus::Ok => ToolStatus::Ok,
            tools::ToolStatus::Error => ToolStatus::Error,
            tools::ToolStatus::Timeout => ToolStatus::Timeout,
            tools::ToolStatus::Interrupted => ToolStatus::Interrupted,
        },
        exit_code: outcome.exit_code,
        duration_ms,
    }
}

pub fn span_error_end(start_id: &str, latency_ms: Option<u64>) -> EventBody {
    EventBody::SpanModelRequestEnd {
        model_request_start_id: start_id.to_string(),
        is_error: true,
        model_usage: ModelUsage::default(),
        latency_ms,
    }
}

pub fn session_error(kind: &str, message: String, retry: RetryStatusKind) -> EventBody {
    EventBody::SessionError {
        error: SessionErrorInfo {
            kind: kind.to_string(),
            message,
            retry_status: RetryStatus { kind: retry },
            attempt: None,
            max_attempts: None,
            retry_in_ms: None,
            mcp_server_name: None,
        },
    }
}

/// One `interrupted` result per tool call that will not run.
pub fn interrupted_results(pending: &[PendingTool], why: &str) -> Vec<EventBody> {
    pending
        .iter()
        .map(|p| {
            result_of(
                p,
                format!("[interrupted: {why}]"),
                true,
                ToolStatus::Interrupted,
                0,
            )
        })
        .collect()
}

/// The result event of call `p`: `agent.mcp_tool_result` for an MCP call (which has no status
/// or duration), else `agent.tool_result`.
pub fn result_of(
    p: &PendingTool,
    text: String,
    is_error: bool,
    status: ToolStatus,
    duration_ms: u64,
) -> EventBody {
    if p.mcp.is_some() {
        EventBody::AgentMcpToolResult {
            mcp_tool_use_id: p.tool_use_id.clone(),
            content: vec![ContentBlock::text(text)],
            is_error,
        }
    } else {
        EventBody::AgentToolResult {
            tool_use_id: p.tool_use_id.clone(),
            content: vec![ContentBlock::text(text)],
            is_error,
            status,
            exit_code: None,
            duration_ms,
        }
    }
}

/// [`interrupted_results`] for the state's open calls, the active outcome's `interrupted`
/// end (if there is one), then idle(`interrupted`).
pub fn interrupted_then_idle(st: &SessionState, why: &str) -> Vec<EventBody> {
    let mut bodies = interrupted_results(&st.pending_tools, why);
    bodies.extend(st.interrupted_outcome_end());
    bodies.push(EventBody::SessionStatusIdle {
        stop_reason: StopReason::Interrupted,
    });
    bodies
}
