//! The model calls of a session: which provider and model it uses now, the request its
//! conversation becomes (tools offered, system prompt, thinking budget), and streaming one
//! response with retries. Used by the turn loop and by compaction.

use std::sync::Arc;

use tether_proto::{DeltaKind, EventBody, RetryStatusKind};
use tokio_util::sync::CancellationToken;

use crate::config::{RetryConfig, split_model};
use crate::crash;
use crate::provider::retry::RetryPolicy;
use crate::provider::{
    ModelRequest, ModelResponse, Provider, ProviderError, StreamEvent, ToolSpec,
};
use crate::session::events;
use crate::session::live::Session;
use crate::store::error::StoreError;
use crate::tools::Toolbox;

/// The session's current `provider/model`: the latest `session.updated`, else the row's.
pub fn current_model(s: &Session) -> String {
    s.state().model.clone().unwrap_or_else(|| s.row().model)
}

/// The provider client for `model`, or the configuration error that ends the turn.
pub fn provider_for(s: &Session, model: &str) -> Result<Arc<Provider>, ProviderError> {
    s.services
        .providers
        .get(split_model(model).0)
        .map_err(ProviderError::Config)
}

/// The request for the session's conversation as it stands (compaction summary + tail).
pub fn build_request(s: &Session, model: &str) -> ModelRequest {
    let row = s.row();
    let st = s.state();
    ModelRequest {
        model: split_model(model).1.to_string(),
        system: Some({
            let mut system = row
                .system
                .clone()
                .unwrap_or_else(|| default_system(&row.workspace));
            system.push_str(&memory_prompt(&row.memory));
            system.push_str(&crate::resources::skills::prompt(&row.skills));
            system
        }),
        messages: st.request_messages(),
        tools: {
            let mut tools = tool_specs(
                row.tools.as_deref(),
                s.policy().custom_tools(),
                &s.toolbox.unavailable(),
            );
            tools.extend(s.mcp.tool_specs());
            let names = s.agent_tool_names();
            if !names.is_empty()
                && let Some(agent_tools) = s.services.agent_tools.get()
            {
                tools.extend(agent_tools.specs(&names));
            }
            tools
        },
        max_tokens: s.services.config.max_tokens,
        thinking_budget: s
            .thinking_budget
            .or(s.services.config.thinking_budget_tokens),
    }
}

/// Calls the model, retrying transient failures with backoff. Each retry is visible as a
/// `session.error` with `retry_status: retrying`.
pub(crate) async fn stream_with_retries(
    s: &Arc<Session>,
    provider: &Provider,
    request: &ModelRequest,
    // The `MessageStart` said for this request, said again before each retry.
    start: &DeltaKind,
    cancel: &CancellationToken,
) -> Result<Result<ModelResponse, ProviderError>, StoreError> {
    let policy = retry_policy(&s.services.config.retry);
    let mut attempt = 1;
    loop {
        let mut on_event = |ev: StreamEvent| {
            crash::point("mid_stream");
            s.emit(match ev {
                StreamEvent::TextDelta { index, text } => DeltaKind::Text { index, text },
                StreamEvent::ThinkingDelta { index, text } => DeltaKind::Thinking { index, text },
                StreamEvent::ToolInputDelta {
                    index,
                    name,
                    partial_json,
                } => DeltaKind::ToolInput {
                    index,
                    name,
                    partial_json,
                },
            })
        };
        let result = provider.stream(request, cancel, &mut on_event).await;
        match result {
            Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
                let delay = policy.delay(attempt, e.retry_after(), jitter());
                let message = e.describe(provider.who());
                tracing::warn!(session = %s.id, attempt, error = %message, "model request failed; retrying");
                let mut err = events::session_error(
                    e.session_error_type(),
                    message,
                    RetryStatusKind::Retrying,
                );
                if let EventBody::SessionError { error } = &mut err {
                    error.attempt = Some(attempt);
                    error.max_attempts = Some(policy.max_attempts);
                    error.retry_in_ms = Some(delay.as_millis() as u64);
                }
                s.append_one_retrying(err).await?;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Ok(Err(ProviderError::Cancelled)),
                }
                attempt += 1;
                // The partial message of the failed attempt is void.
                s.emit(start.clone());
            }
            other => return Ok(other),
        }
    }
}

/// The built-in tools the session's pinned agent enabled (all of them when `offered` is None)
/// but the ones this session can't run, then its custom tools.
fn tool_specs(
    offered: Option<&[String]>,
    custom: &[ToolSpec],
    unavailable: &[&str],
) -> Vec<ToolSpec> {
    Toolbox::definitions()
        .into_iter()
        .filter(|d| offered.is_none_or(|o| o.iter().any(|n| n == d.name)))
        .filter(|d| !unavailable.contains(&d.name))
        .map(|d| ToolSpec {
            name: d.name.to_string(),
            description: d.description.to_string(),
            input_schema: d.input_schema,
        })
        .chain(custom.iter().cloned())
        .collect()
}

/// The memory stores' part of the system prompt: where each is mounted, whether it is
/// writable, its description and instructions (hosted: metadata stays hidden).
pub fn memory_prompt(stores: &[tether_proto::memory::SessionMemory]) -> String {
    if stores.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n\nMemory stores are mounted as plain files; they persist across sessions. Read and change them with your usual tools (every change is saved as a new version):",
    );
    for m in stores {
        let access = match m.access {
            tether_proto::memory::Access::ReadWrite => "read-write",
            tether_proto::memory::Access::ReadOnly => "read-only",
        };
        out.push_str(&format!(
            "\n- {} ({access}): memory store \"{}\"",
            m.mount_path, m.name
        ));
        if !m.description.is_empty() {
            out.push_str(&format!(". {}", m.description));
        }
        if let Some(i) = m.instructions.as_deref().filter(|i| !i.trim().is_empty()) {
            out.push_str(&format!("\n  Instructions: {i}"));
        }
    }
    out
}

fn default_system(workspace: &str) -> String {
    format!(
        "You are a capable software agent working in a terminal. Your working directory is {workspace}. \
Use the tools to inspect and change files and run commands; prefer small, verifiable steps, and say briefly what you did when you are done."
    )
}

/// Spread for retry backoff; any cheap varying number will do.
pub(crate) fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// The retry policy `[retry]` of config.toml asks for.
pub(crate) fn retry_policy(c: &RetryConfig) -> RetryPolicy {
    RetryPolicy {
        max_attempts: c.max_attempts.max(1),
        base_delay: std::time::Duration::from_millis(c.base_delay_ms),
        max_delay: std::time::Duration::from_millis(c.max_delay_ms.max(c.base_delay_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_fetch_is_offered_only_with_a_network() {
        let names = |network_off| -> Vec<String> {
            tool_specs(None, &[], if network_off { &["web_fetch"] } else { &[] })
                .into_iter()
                .map(|t| t.name)
                .collect()
        };
        assert!(names(false).iter().any(|n| n == "web_fetch"));
        assert!(!names(true).iter().any(|n| n == "web_fetch"));
        assert_eq!(names(true).len(), crate::tools::TOOL_NAMES.len() - 1);
    }
}
