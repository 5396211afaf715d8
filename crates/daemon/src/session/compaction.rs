//! Context compaction and the spending limit, checked by the turn loop before each model
//! request.
//!
//! Compaction: when the next request would fill more than `compaction.threshold` of the
//! model's context window, the model summarises the older part of the conversation; the
//! summary is recorded as `agent.thread_context_compacted` and later requests are built
//! from it plus the recent messages (see `SessionState::request_messages`). The log keeps
//! every original event.

use std::sync::Arc;

use tether_proto::{DeltaKind, EventBody};
use tokio_util::sync::CancellationToken;

use crate::provider::{Message, ModelRequest, Part, Provider, ProviderError, pricing};
use crate::session::events::span_error_end;
use crate::session::live::Session;
use crate::session::model::{build_request, stream_with_retries};
use crate::session::state::summary_message;
use crate::store::error::StoreError;

/// What the model is asked to write when compacting.
pub const SUMMARY_PROMPT: &str = "The conversation so far is about to be replaced by a summary \
because it no longer fits in the context window. Write that summary now, without calling tools: \
the user's goals and instructions, what has been done (files read or changed, commands run and \
their important results), decisions made, and what remains to do. Be specific (paths, names, \
values) and concise.";

/// Whether the session has spent its budget (`session.updated` limit, else config).
pub fn over_budget(s: &Session) -> bool {
    let Some(limit) = s.budget() else {
        return false;
    };
    // One budget covers every thread of the session.
    s.session_cost() >= limit
}

/// Rough token count of a request (≈ 4 characters a token).
pub fn estimate_tokens(req: &ModelRequest) -> u64 {
    let mut chars = req.system.as_ref().map_or(0, String::len);
    for t in &req.tools {
        chars += t.name.len() + t.description.len() + t.input_schema.to_string().len();
    }
    for m in &req.messages {
        for p in &m.content {
            chars += match p {
                Part::Text(t) => t.len(),
                Part::Thinking { thinking, .. } => thinking.len(),
                Part::ToolUse { name, input, .. } => name.len() + input.to_string().len(),
                Part::ToolResult { content, .. } => content.len(),
            };
        }
    }
    (chars / 4) as u64
}

/// Compacts the conversation first if the next request would not fit comfortably.
pub async fn maybe_compact(
    s: &Arc<Session>,
    provider: &Provider,
    model: &str,
    cancel: &CancellationToken,
) -> Result<(), StoreError> {
    let config = &s.services.config;
    let Some(window) = pricing::model_info(&config.models, model).context_window else {
        return Ok(());
    };
    let next = build_request(s, model);
    let last = s.state().last_usage;
    let estimate = estimate_tokens(&next).max(last.prompt_tokens() + last.output_tokens);
    if (estimate as f64) <= window as f64 * config.compaction.threshold {
        return Ok(());
    }
    let (source, through_seq) = {
        let st = s.state();
        let Some((k, through_seq)) = st.compaction_cut(config.compaction.keep_recent_messages)
        else {
            return Ok(());
        };
        let done = st.compacted.as_ref().map_or(0, |c| c.messages);
        let mut source: Vec<Message> = Vec::with_capacity(k - done + 2);
        if let Some(c) = &st.compacted {
            source.push(summary_message(&c.summary));
        }
        source.extend_from_slice(&st.messages[done..k]);
        (source, through_seq)
    };
    tracing::info!(session = %s.id, estimate, window, through_seq, "compacting the conversation");
    let mut request = next;
    request.messages = source;
    request.messages.push(Message::user_text(SUMMARY_PROMPT));

    let start = s
        .append_one(EventBody::SpanModelRequestStart {
            model: Some(model.to_string()),
        })
        .await?;
    let started = std::time::Instant::now();
    let preview = DeltaKind::MessageStart {
        model_request_start_id: start.id.clone(),
        message_id: None,
        thinking_id: None,
    };
    let outcome = stream_with_retries(s, provider, &request, &preview, cancel).await?;
    let latency_ms = Some(started.elapsed().as_millis() as u64);
    s.clear_live_message();
    let response = match outcome {
        Ok(r) => r,
        Err(e) => {
            // The turn goes on uncompacted; if it no longer fits, that request says so.
            if !matches!(e, ProviderError::Cancelled) {
                tracing::warn!(session = %s.id, error = %e, "compaction failed");
            }
            s.append_one_retrying(span_error_end(&start.id, latency_ms))
                .await?;
            return Ok(());
        }
    };
    let summary: String = response
        .content
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut bodies = vec![EventBody::SpanModelRequestEnd {
        model_request_start_id: start.id,
        is_error: false,
        model_usage: pricing::priced(&config.models, model, response.usage),
        latency_ms,
    }];
    if summary.trim().is_empty() {
        tracing::warn!(session = %s.id, "compaction produced no summary; continuing without it");
    } else {
        bodies.push(EventBody::AgentThreadContextCompacted {
            summary,
            through_seq,
        });
    }
    s.append_retrying(bodies).await?;
    Ok(())
}
