//! What the Chat Completions and Responses clients share: the checks that refuse a request
//! before it is sent, the mapping of tool input and output both wire formats use, and the
//! reading of tool arguments, usage and in-stream errors.

use serde_json::{Value, json};
use tether_proto::ModelUsage;

use crate::provider::http::{malformed, str_field};
use crate::provider::{ModelRequest, Part, ProviderError};

/// Refuses, as [`ProviderError::Config`], a request no server could answer.
pub(super) fn check_request(req: &ModelRequest) -> Result<(), ProviderError> {
    if req.model.trim().is_empty() {
        return Err(ProviderError::Config("no model is configured".to_string()));
    }
    if req.max_tokens == 0 {
        return Err(ProviderError::Config(
            "max_tokens is 0: the model could not write anything".to_string(),
        ));
    }
    if !req.messages.iter().any(|m| {
        m.content
            .iter()
            .any(|p| !matches!(p, Part::Text(t) if t.trim().is_empty()))
    }) {
        return Err(ProviderError::Config(
            "the conversation is empty: there is no user message to send to the model".to_string(),
        ));
    }
    Ok(())
}

/// Tool input as the JSON-string `arguments` both APIs carry.
pub(super) fn arguments(input: &Value) -> String {
    if input.is_null() {
        "{}".to_string()
    } else {
        input.to_string()
    }
}

pub(super) fn result_text(content: &str, is_error: bool) -> String {
    // Neither API has an error flag on tool output: say it in the text.
    if is_error {
        if content.trim().is_empty() {
            "(the tool failed without output)".to_string()
        } else {
            format!("[tool error] {content}")
        }
    } else {
        content.to_string()
    }
}

/// Blank text is dropped; several text parts of one turn are joined by a blank line.
pub(super) fn join_text(into: &mut String, text: &str) {
    if text.trim().is_empty() {
        return;
    }
    if !into.is_empty() {
        into.push_str("\n\n");
    }
    into.push_str(text);
}

pub(super) fn parse_arguments(name: &str, arguments: &str) -> Result<Value, ProviderError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(arguments).map_err(|e| {
        malformed(format!(
            "the model sent invalid JSON for the input of tool {name:?}: {e}: {}",
            crate::provider::shorten(arguments, 200)
        ))
    })
}

/// OpenAI counts cached tokens inside the prompt; tether (like Anthropic) keeps
/// them apart so prices apply once.
pub(super) fn openai_usage(usage: &Value, input_key: &str, output_key: &str) -> ModelUsage {
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let details = usage
        .get("prompt_tokens_details")
        .or_else(|| usage.get("input_tokens_details"))
        .unwrap_or(&Value::Null);
    let cached = n(details, "cached_tokens");
    ModelUsage {
        input_tokens: n(usage, input_key).saturating_sub(cached),
        output_tokens: n(usage, output_key),
        cache_read_input_tokens: cached,
        cache_creation_input_tokens: 0,
        cost_usd: None,
    }
}

/// An in-stream `{"error": {type, code, message}}` (either API).
pub(super) fn stream_error(error: &Value) -> ProviderError {
    let kind = str_field(error, "type")
        .or_else(|| str_field(error, "code"))
        .unwrap_or("api_error");
    let message = str_field(error, "message")
        .or(error.as_str())
        .unwrap_or("the model stream reported an error");
    ProviderError::Stream {
        kind: kind.to_string(),
        message: message.to_string(),
    }
}
