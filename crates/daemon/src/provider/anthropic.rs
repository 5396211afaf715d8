//! Client for the Anthropic Messages API (`POST /v1/messages`, streaming).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use tether_proto::ModelUsage;
use tokio_util::sync::CancellationToken;

use super::http::{
    Endpoint, WireParser, malformed, parse_object, sensitive_header, str_field, u64_field,
};
use super::{Message, ModelRequest, ModelResponse, Part, ProviderError, Role, StreamEvent, Who};

/// Where requests go when `ANTHROPIC_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Streaming client for the Anthropic Messages API.
#[derive(Clone, Debug)]
pub struct AnthropicProvider {
    endpoint: Endpoint,
}

impl AnthropicProvider {
    /// `base_url` like `https://api.anthropic.com` (trailing slash tolerated); the
    /// client POSTs `{base_url}/v1/messages` with `x-api-key: api_key`.
    ///
    /// A missing key is not an error here (a local mock needs none); requests to
    /// an `anthropic.com` host without one fail with [`ProviderError::Config`]
    /// (see [`AnthropicProvider::check_credentials`]).
    pub fn new(base_url: String, api_key: Option<String>) -> Result<Self, ProviderError> {
        Self::with_headers(base_url, api_key, &BTreeMap::new(), Who::anthropic())
    }

    /// [`AnthropicProvider::new`] plus configured extra headers, and the names
    /// used in error messages.
    pub fn with_headers(
        base_url: String,
        api_key: Option<String>,
        extra: &BTreeMap<String, String>,
        who: Who,
    ) -> Result<Self, ProviderError> {
        let mut headers = HeaderMap::new();
        let has_auth = match api_key.as_deref().map(str::trim) {
            Some(key) if !key.is_empty() => {
                headers.insert(
                    HeaderName::from_static("x-api-key"),
                    sensitive_header(key, "API key")?,
                );
                true
            }
            _ => false,
        };
        Self::build(&base_url, headers, has_auth, extra, who)
    }

    /// Builds from the environment like the official SDKs: `ANTHROPIC_BASE_URL`
    /// (default `https://api.anthropic.com`), `ANTHROPIC_API_KEY` (`x-api-key`),
    /// or else `ANTHROPIC_AUTH_TOKEN` (`Authorization: Bearer`). Empty values
    /// count as unset.
    pub fn from_env() -> Result<Self, ProviderError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`AnthropicProvider::from_env`] with an injectable variable lookup.
    pub(crate) fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ProviderError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let base_url = get("ANTHROPIC_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let mut headers = HeaderMap::new();
        let has_auth = if let Some(key) = get("ANTHROPIC_API_KEY") {
            headers.insert(
                HeaderName::from_static("x-api-key"),
                sensitive_header(&key, "ANTHROPIC_API_KEY value")?,
            );
            true
        } else if let Some(token) = get("ANTHROPIC_AUTH_TOKEN") {
            let value = format!("Bearer {}", token.trim());
            headers.insert(
                reqwest::header::AUTHORIZATION,
                sensitive_header(&value, "ANTHROPIC_AUTH_TOKEN value")?,
            );
            true
        } else {
            false
        };
        Self::build(
            &base_url,
            headers,
            has_auth,
            &BTreeMap::new(),
            Who::anthropic(),
        )
    }

    fn build(
        base_url: &str,
        mut headers: HeaderMap,
        has_auth: bool,
        extra: &BTreeMap<String, String>,
        who: Who,
    ) -> Result<Self, ProviderError> {
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        super::http::extra_headers(extra, &mut headers)?;
        let endpoint = Endpoint::new(base_url, "/v1/messages", headers, has_auth, who)?;
        Ok(AnthropicProvider { endpoint })
    }

    /// Replaces [`super::http::DEFAULT_IDLE_TIMEOUT`].
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.endpoint.idle_timeout = idle_timeout;
        self
    }

    /// The URL requests are POSTed to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.url.as_str()
    }

    pub fn who(&self) -> &Who {
        &self.endpoint.who
    }

    #[cfg(test)]
    fn auth_label(&self) -> &'static str {
        if self.endpoint.has_header("x-api-key") {
            "x-api-key"
        } else if self.endpoint.has_header("authorization") {
            "bearer"
        } else {
            "none"
        }
    }

    /// `Err(Config)` when requests would go to an `anthropic.com` host without
    /// an API key or token. The daemon may call this at startup to warn early.
    pub fn check_credentials(&self) -> Result<(), ProviderError> {
        if !self.endpoint.has_auth && self.endpoint.goes_to("anthropic.com") {
            return Err(ProviderError::Config(format!(
                "no Anthropic API key: set {} (or ANTHROPIC_BASE_URL for a local mock)",
                self.endpoint.who.key_var
            )));
        }
        Ok(())
    }

    /// One streaming request. Calls `on_event` for every non-empty delta as it
    /// arrives and returns the complete message once `message_stop` arrives.
    /// Does not retry: the harness drives [`super::RetryPolicy`].
    ///
    /// Returns `Err(Cancelled)` promptly when `cancel` fires (the response stream
    /// is dropped, which closes the connection).
    pub async fn stream(
        &self,
        req: &ModelRequest,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ModelResponse, ProviderError> {
        self.endpoint
            .request(
                req,
                self.check_credentials(),
                try_request_body,
                &mut Accumulator::default(),
                cancel,
                on_event,
            )
            .await
    }
}

// ---------------------------------------------------------------------------
// Request body

/// The JSON body sent to `/v1/messages`: `{model, max_tokens, stream: true,
/// system?, messages, tools?}`. Consecutive messages of the same role are merged,
/// tool results lead their user message, unsigned thinking and blank text blocks
/// are dropped (the API rejects both), and messages left empty are skipped.
/// Prompt caching: `cache_control` breakpoints on the system prompt, the last
/// tool and the last block of the last two user messages (the moving tail), four
/// in all, the API's maximum. Does not validate; [`AnthropicProvider::stream`]
/// refuses a conversation that is empty or starts with the assistant.
pub fn request_body(req: &ModelRequest) -> Value {
    body_with(req, wire_messages(&req.messages))
}

/// [`request_body`] with the messages already in wire form.
fn body_with(req: &ModelRequest, wire: Vec<WireMessage>) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    match req.thinking_budget {
        None => {
            body.insert("max_tokens".into(), json!(req.max_tokens));
        }
        Some(budget) => {
            // The budget counts inside max_tokens and must leave room for the answer.
            let budget = budget.max(super::MIN_THINKING_BUDGET);
            let max_tokens = req.max_tokens.max(budget.saturating_add(1024));
            body.insert("max_tokens".into(), json!(max_tokens));
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
        }
    }
    body.insert("stream".into(), json!(true));
    if let Some(system) = &req.system
        && !system.trim().is_empty()
    {
        body.insert(
            "system".into(),
            json!([{"type": "text", "text": system, "cache_control": ephemeral()}]),
        );
    }
    let mut messages: Vec<Value> = wire.into_iter().map(WireMessage::into_json).collect();
    let tail = messages
        .iter_mut()
        .rev()
        .filter(|m| m["role"] == "user")
        .take(2);
    for message in tail {
        if let Some(last) = message["content"].as_array_mut().and_then(|c| c.last_mut()) {
            last["cache_control"] = ephemeral();
        }
    }
    body.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() {
        let mut tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.input_schema,
                })
            })
            .collect();
        if let Some(last) = tools.last_mut() {
            last["cache_control"] = ephemeral();
        }
        body.insert("tools".into(), Value::Array(tools));
    }
    Value::Object(body)
}

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// [`request_body`] plus the checks that turn impossible requests into
/// [`ProviderError::Config`] instead of a 400.
fn try_request_body(req: &ModelRequest) -> Result<Value, ProviderError> {
    if req.model.trim().is_empty() {
        return Err(ProviderError::Config("no model is configured".to_string()));
    }
    if req.max_tokens == 0 {
        return Err(ProviderError::Config(
            "max_tokens is 0: the model could not write anything".to_string(),
        ));
    }
    let wire = wire_messages(&req.messages);
    match wire.first() {
        None => {
            return Err(ProviderError::Config(
                "the conversation is empty: there is no user message to send to the model"
                    .to_string(),
            ));
        }
        Some(first) if first.role == Role::Assistant => {
            return Err(ProviderError::Config(
                "the conversation starts with an assistant message: the Anthropic API needs a \
                 user message first"
                    .to_string(),
            ));
        }
        Some(_) => {}
    }
    Ok(body_with(req, wire))
}

struct WireMessage {
    role: Role,
    /// `tool_result` blocks of a user message: they must come first.
    results: Vec<Value>,
    blocks: Vec<Value>,
}

impl WireMessage {
    fn into_json(self) -> Value {
        let role = match self.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let mut content = self.results;
        content.extend(self.blocks);
        json!({"role": role, "content": content})
    }
}

fn wire_messages(messages: &[Message]) -> Vec<WireMessage> {
    let mut out: Vec<WireMessage> = Vec::new();
    for message in messages {
        let mut results = Vec::new();
        let mut blocks = Vec::new();
        for part in &message.content {
            let Some(block) = part_json(part) else {
                continue;
            };
            if message.role == Role::User && matches!(part, Part::ToolResult { .. }) {
                results.push(block);
            } else {
                blocks.push(block);
            }
        }
        if results.is_empty() && blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == message.role => {
                last.results.extend(results);
                last.blocks.extend(blocks);
            }
            _ => out.push(WireMessage {
                role: message.role.clone(),
                results,
                blocks,
            }),
        }
    }
    out
}

fn part_json(part: &Part) -> Option<Value> {
    match part {
        Part::Text(text) => {
            if text.trim().is_empty() {
                None
            } else {
                Some(json!({"type": "text", "text": text}))
            }
        }
        Part::Thinking {
            thinking,
            signature,
        } => match signature {
            Some(signature) if !signature.is_empty() => Some(json!({
                "type": "thinking",
                "thinking": thinking,
                "signature": signature,
            })),
            _ => None,
        },
        Part::ToolUse { id, name, input } => {
            let input = if input.is_null() {
                json!({})
            } else {
                input.clone()
            };
            Some(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
        }
        Part::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut block = json!({
                "type": "tool_result",
                "tool_use_id": tool_use_id,
                "content": content,
            });
            if *is_error {
                // The API rejects an empty error result.
                if content.trim().is_empty() {
                    block["content"] = json!("(the tool failed without output)");
                }
                block["is_error"] = json!(true);
            }
            Some(block)
        }
    }
}

// ---------------------------------------------------------------------------
// Stream parsing

#[derive(Debug)]
enum BlockState {
    Text(String),
    Thinking {
        thinking: String,
        signature: String,
    },
    ToolUse {
        id: String,
        name: String,
        /// Accumulated `input_json_delta`s.
        json: String,
        /// `input` from `content_block_start` (used when no delta arrives).
        start_input: Value,
        /// Set by `content_block_stop`.
        input: Option<Value>,
    },
    /// `redacted_thinking` and unknown block types: not representable as a
    /// [`Part`], so kept out of the response.
    Skipped,
}

#[derive(serde::Deserialize)]
struct FastDelta<'a> {
    index: u32,
    #[serde(borrow)]
    delta: FastDeltaBody<'a>,
}

#[derive(serde::Deserialize)]
struct FastDeltaBody<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
}

/// Folds Messages API stream events into a [`ModelResponse`].
#[derive(Debug, Default)]
struct Accumulator {
    blocks: BTreeMap<u32, BlockState>,
    usage: ModelUsage,
    stop_reason: Option<String>,
}

/// A fresh Messages stream parser.
pub(crate) fn parser() -> impl WireParser {
    Accumulator::default()
}

impl WireParser for Accumulator {
    fn handle(
        &mut self,
        event_name: &str,
        data: &str,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Option<ModelResponse>, ProviderError> {
        Accumulator::handle(self, event_name, data, on_event)
    }
}

impl Accumulator {
    /// Handles one SSE event; `Ok(Some(..))` once `message_stop` arrives.
    fn handle(
        &mut self,
        event_name: &str,
        data: &str,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Option<ModelResponse>, ProviderError> {
        if data.trim().is_empty() {
            // `ping` and comment-only keep-alives may carry no data.
            return Ok(None);
        }
        if event_name == "content_block_delta" && self.fast_text_delta(data, on_event) {
            return Ok(None);
        }
        let value = parse_object(event_name, data)?;
        let kind = str_field(&value, "type").unwrap_or(event_name);
        match kind {
            "message_start" => {
                let message = value.get("message").unwrap_or(&Value::Null);
                if let Some(usage) = message.get("usage") {
                    self.update_usage(usage);
                }
                tracing::trace!(
                    id = str_field(message, "id").unwrap_or(""),
                    model = str_field(message, "model").unwrap_or(""),
                    "message_start"
                );
            }
            "content_block_start" => self.block_start(&value, on_event)?,
            "content_block_delta" => self.block_delta(&value, on_event)?,
            "content_block_stop" => {
                let index = index_of(&value)?;
                if let Some(block) = self.blocks.get_mut(&index) {
                    finish_block(block)?;
                }
            }
            "message_delta" => {
                if let Some(reason) = value
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop_reason = Some(reason.to_string());
                }
                if let Some(usage) = value.get("usage") {
                    self.update_usage(usage);
                }
            }
            "message_stop" => return self.finish().map(Some),
            "ping" => {}
            "error" => {
                let error = value.get("error").unwrap_or(&Value::Null);
                return Err(ProviderError::Stream {
                    kind: str_field(error, "type").unwrap_or("api_error").to_string(),
                    message: str_field(error, "message")
                        .unwrap_or("the model stream reported an error")
                        .to_string(),
                });
            }
            other => tracing::debug!(event = other, "ignoring unknown model stream event"),
        }
        Ok(None)
    }

    /// A `text_delta` into a text block, read without building a `Value` (one per token,
    /// the hot path). `false` leaves the event to the general path.
    fn fast_text_delta(
        &mut self,
        data: &str,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> bool {
        let Ok(ev) = serde_json::from_str::<FastDelta<'_>>(data) else {
            return false;
        };
        if ev.delta.kind != "text_delta" {
            return false;
        }
        let (Some(BlockState::Text(text)), Some(piece)) =
            (self.blocks.get_mut(&ev.index), ev.delta.text)
        else {
            return false;
        };
        text.push_str(&piece);
        if !piece.is_empty() {
            on_event(StreamEvent::TextDelta {
                index: ev.index,
                text: piece.into_owned(),
            });
        }
        true
    }

    /// Counts present in the object replace the old ones (`message_delta`
    /// reports cumulative totals).
    fn update_usage(&mut self, usage: &Value) {
        if let Some(n) = u64_field(usage, "input_tokens") {
            self.usage.input_tokens = n;
        }
        if let Some(n) = u64_field(usage, "output_tokens") {
            self.usage.output_tokens = n;
        }
        if let Some(n) = u64_field(usage, "cache_read_input_tokens") {
            self.usage.cache_read_input_tokens = n;
        }
        if let Some(n) = u64_field(usage, "cache_creation_input_tokens") {
            self.usage.cache_creation_input_tokens = n;
        }
    }

    fn block_start(
        &mut self,
        value: &Value,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<(), ProviderError> {
        let index = index_of(value)?;
        let block = value
            .get("content_block")
            .ok_or_else(|| malformed("content_block_start without content_block".to_string()))?;
        let state = match str_field(block, "type").unwrap_or("") {
            "text" => {
                let text = str_field(block, "text").unwrap_or("").to_string();
                if !text.is_empty() {
                    on_event(StreamEvent::TextDelta {
                        index,
                        text: text.clone(),
                    });
                }
                BlockState::Text(text)
            }
            "thinking" => {
                let thinking = str_field(block, "thinking").unwrap_or("").to_string();
                if !thinking.is_empty() {
                    on_event(StreamEvent::ThinkingDelta {
                        index,
                        text: thinking.clone(),
                    });
                }
                BlockState::Thinking {
                    thinking,
                    signature: str_field(block, "signature").unwrap_or("").to_string(),
                }
            }
            "tool_use" => BlockState::ToolUse {
                id: str_field(block, "id").unwrap_or("").to_string(),
                name: str_field(block, "name").unwrap_or("").to_string(),
                json: String::new(),
                start_input: block.get("input").cloned().unwrap_or(Value::Null),
                input: None,
            },
            other => {
                tracing::debug!(
                    block_type = other,
                    index,
                    "leaving a content block out of the response"
                );
                BlockState::Skipped
            }
        };
        self.blocks.insert(index, state);
        Ok(())
    }

    fn block_delta(
        &mut self,
        value: &Value,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<(), ProviderError> {
        let index = index_of(value)?;
        let delta = value
            .get("delta")
            .ok_or_else(|| malformed("content_block_delta without delta".to_string()))?;
        let delta_type = str_field(delta, "type").unwrap_or("");
        let block = self.blocks.get_mut(&index).ok_or_else(|| {
            malformed(format!(
                "content_block_delta for block {index}, which never started"
            ))
        })?;
        let field = |key: &str| str_field(delta, key).unwrap_or("").to_string();
        match (delta_type, block) {
            (_, BlockState::Skipped) => {}
            ("text_delta", BlockState::Text(text)) => {
                let piece = field("text");
                text.push_str(&piece);
                if !piece.is_empty() {
                    on_event(StreamEvent::TextDelta { index, text: piece });
                }
            }
            ("thinking_delta", BlockState::Thinking { thinking, .. }) => {
                let piece = field("thinking");
                thinking.push_str(&piece);
                if !piece.is_empty() {
                    on_event(StreamEvent::ThinkingDelta { index, text: piece });
                }
            }
            ("signature_delta", BlockState::Thinking { signature, .. }) => {
                signature.push_str(&field("signature"));
            }
            ("input_json_delta", BlockState::ToolUse { name, json, .. }) => {
                let piece = field("partial_json");
                json.push_str(&piece);
                if !piece.is_empty() {
                    on_event(StreamEvent::ToolInputDelta {
                        index,
                        name: name.clone(),
                        partial_json: piece,
                    });
                }
            }
            ("text_delta" | "thinking_delta" | "signature_delta" | "input_json_delta", _) => {
                return Err(malformed(format!(
                    "{delta_type} for block {index}, which is not of that type"
                )));
            }
            (other, _) => {
                tracing::debug!(delta_type = other, index, "ignoring unknown content delta");
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ModelResponse, ProviderError> {
        let mut content = Vec::new();
        for block in self.blocks.values_mut() {
            finish_block(block)?;
        }
        for block in std::mem::take(&mut self.blocks).into_values() {
            match block {
                BlockState::Text(text) => content.push(Part::Text(text)),
                BlockState::Thinking {
                    thinking,
                    signature,
                } => content.push(Part::Thinking {
                    thinking,
                    signature: (!signature.is_empty()).then_some(signature),
                }),
                BlockState::ToolUse {
                    id, name, input, ..
                } => content.push(Part::ToolUse {
                    id,
                    name,
                    input: input.unwrap_or_else(|| json!({})),
                }),
                BlockState::Skipped => {}
            }
        }
        let stop_reason = match self.stop_reason.take() {
            Some(reason) => reason,
            None => {
                let guess = if content.iter().any(|p| matches!(p, Part::ToolUse { .. })) {
                    "tool_use"
                } else {
                    "end_turn"
                };
                tracing::debug!(guess, "model stream had no stop_reason");
                guess.to_string()
            }
        };
        Ok(ModelResponse {
            content,
            stop_reason,
            usage: self.usage,
        })
    }
}

fn index_of(value: &Value) -> Result<u32, ProviderError> {
    value
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| {
            malformed(format!(
                "{} event without a valid index",
                str_field(value, "type").unwrap_or("content block")
            ))
        })
}

/// Parses a tool block's accumulated JSON (empty means `{}`, or the start
/// event's `input` when that was not empty). Idempotent.
fn finish_block(block: &mut BlockState) -> Result<(), ProviderError> {
    if let BlockState::ToolUse {
        name,
        json,
        start_input,
        input,
        ..
    } = block
    {
        if input.is_some() {
            return Ok(());
        }
        let parsed = if json.trim().is_empty() {
            match start_input {
                Value::Object(map) if !map.is_empty() => start_input.clone(),
                _ => json!({}),
            }
        } else {
            serde_json::from_str(json).map_err(|e| {
                malformed(format!(
                    "the model sent invalid JSON for the input of tool {name:?}: {e}"
                ))
            })?
        };
        *input = Some(parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::http::{MAX_RETRY_AFTER, parse_error_envelope, parse_retry_after};
    use super::super::{ToolSpec, stream_kind};
    use super::*;
    use std::sync::{Arc, Mutex};
    use tether_mock_llm::{Block, MockServer, Reply, Script, Timing, Usage};

    const KEY: &str = "sk-ant-test-0123456789";

    fn text(t: &str) -> Part {
        Part::Text(t.to_string())
    }

    fn tool_use(id: &str, name: &str, input: Value) -> Part {
        Part::ToolUse {
            id: id.into(),
            name: name.into(),
            input,
        }
    }

    fn tool_result(id: &str, content: &str, is_error: bool) -> Part {
        Part::ToolResult {
            tool_use_id: id.into(),
            content: content.into(),
            is_error,
        }
    }

    fn request(messages: Vec<Message>) -> ModelRequest {
        ModelRequest {
            model: "claude-sonnet-4-6".into(),
            system: None,
            messages,
            tools: Vec::new(),
            max_tokens: 1024,
            thinking_budget: None,
        }
    }

    fn bash_tool() -> ToolSpec {
        ToolSpec {
            name: "bash".into(),
            description: "Run a shell command".into(),
            input_schema: json!({
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"]
            }),
        }
    }

    // ---- request_body ----------------------------------------------------

    /// The body without its `cache_control` breakpoints.
    fn uncached(req: &ModelRequest) -> Value {
        fn strip(v: &mut Value) {
            match v {
                Value::Object(map) => {
                    map.remove("cache_control");
                    map.values_mut().for_each(strip);
                }
                Value::Array(items) => items.iter_mut().for_each(strip),
                _ => {}
            }
        }
        let mut body = request_body(req);
        strip(&mut body);
        body
    }

    #[test]
    fn thinking_budget_enables_extended_thinking() {
        let mut req = request(vec![Message::user_text("hi")]);
        req.thinking_budget = Some(4000);
        let body = request_body(&req);
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 4000})
        );
        // max_tokens must exceed the budget, with room for the answer.
        assert_eq!(body["max_tokens"], 5024);
        req.thinking_budget = Some(10);
        assert_eq!(request_body(&req)["thinking"]["budget_tokens"], 1024);
        req.thinking_budget = None;
        assert!(request_body(&req).get("thinking").is_none());
    }

    #[test]
    fn cache_breakpoints_on_system_tools_and_the_moving_tail() {
        let mut req = request(vec![
            Message::user_text("one"),
            Message::assistant(vec![tool_use("toolu_1", "bash", json!({}))]),
            Message::user(vec![tool_result("toolu_1", "out", false)]),
            Message::assistant(vec![text("done")]),
            Message::user_text("two"),
        ]);
        req.system = Some("sys".into());
        req.tools = vec![bash_tool(), bash_tool()];
        let body = request_body(&req);
        let marked: Vec<String> = {
            let mut out = Vec::new();
            fn walk(v: &Value, path: String, out: &mut Vec<String>) {
                match v {
                    Value::Object(m) => {
                        if m.contains_key("cache_control") {
                            out.push(path.clone());
                        }
                        for (k, x) in m {
                            walk(x, format!("{path}.{k}"), out);
                        }
                    }
                    Value::Array(a) => {
                        for (i, x) in a.iter().enumerate() {
                            walk(x, format!("{path}[{i}]"), out);
                        }
                    }
                    _ => {}
                }
            }
            walk(&body, String::new(), &mut out);
            out
        };
        assert_eq!(
            marked,
            [
                ".messages[2].content[0]",
                ".messages[4].content[0]",
                ".system[0]",
                ".tools[1]"
            ]
        );
    }

    #[test]
    fn body_minimal_without_system_or_tools() {
        let body = request_body(&request(vec![Message::user_text("hi")]));
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-6",
                "max_tokens": 1024,
                "stream": true,
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
                ]}]
            })
        );
    }

    #[test]
    fn body_with_system_and_tools() {
        let mut req = request(vec![Message::user_text("list files")]);
        req.system = Some("You are tether.".into());
        req.tools = vec![bash_tool()];
        assert_eq!(
            request_body(&req),
            json!({
                "model": "claude-sonnet-4-6",
                "max_tokens": 1024,
                "stream": true,
                "system": [{"type": "text", "text": "You are tether.",
                            "cache_control": {"type": "ephemeral"}}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "list files",
                                                  "cache_control": {"type": "ephemeral"}}]}
                ],
                "tools": [{
                    "cache_control": {"type": "ephemeral"},
                    "name": "bash",
                    "description": "Run a shell command",
                    "input_schema": {
                        "type": "object",
                        "properties": {"command": {"type": "string"}},
                        "required": ["command"]
                    }
                }]
            })
        );
        // A blank system prompt is left out rather than sent empty.
        req.system = Some("  ".into());
        assert!(request_body(&req).get("system").is_none());
    }

    #[test]
    fn body_merges_consecutive_same_role_messages() {
        let req = request(vec![
            Message::user_text("one"),
            Message::user_text("two"),
            Message::assistant(vec![text("a")]),
            Message::assistant(vec![tool_use("toolu_1", "bash", json!({"command": "ls"}))]),
            Message::user(vec![tool_result("toolu_1", "file.txt", false)]),
        ]);
        assert_eq!(
            uncached(&req)["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "one"},
                    {"type": "text", "text": "two"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "a"},
                    {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "file.txt"}
                ]}
            ])
        );
    }

    #[test]
    fn body_puts_tool_results_before_text() {
        let req = request(vec![
            Message::user_text("run two things"),
            Message::assistant(vec![
                tool_use("toolu_1", "bash", json!({"command": "ls"})),
                tool_use("toolu_2", "bash", json!({"command": "false"})),
            ]),
            // Text first, then results, split over two user messages: results
            // must still lead the merged message, in their own order.
            Message::user(vec![
                text("also, hurry"),
                tool_result("toolu_1", "ok", false),
            ]),
            Message::user(vec![tool_result("toolu_2", "exit 1", true)]),
        ]);
        assert_eq!(
            uncached(&req)["messages"][2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "exit 1", "is_error": true},
                {"type": "text", "text": "also, hurry"}
            ]})
        );
    }

    #[test]
    fn body_thinking_needs_a_signature() {
        let req = request(vec![
            Message::user_text("think"),
            Message::assistant(vec![
                Part::Thinking {
                    thinking: "signed".into(),
                    signature: Some("sig-1".into()),
                },
                Part::Thinking {
                    thinking: "unsigned".into(),
                    signature: None,
                },
                Part::Thinking {
                    thinking: "empty signature".into(),
                    signature: Some(String::new()),
                },
                text("answer"),
            ]),
            Message::user_text("more"),
        ]);
        assert_eq!(
            uncached(&req)["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "thinking", "thinking": "signed", "signature": "sig-1"},
                {"type": "text", "text": "answer"}
            ]})
        );
    }

    #[test]
    fn body_drops_blank_text_and_emptied_messages() {
        let req = request(vec![
            Message::user(vec![text("hello"), text(""), text(" \n")]),
            // Nothing sendable is left of this one, so the user turns around it merge.
            Message::assistant(vec![
                text(""),
                Part::Thinking {
                    thinking: "x".into(),
                    signature: None,
                },
            ]),
            Message::user_text("again"),
        ]);
        assert_eq!(
            uncached(&req)["messages"],
            json!([{"role": "user", "content": [
                {"type": "text", "text": "hello"},
                {"type": "text", "text": "again"}
            ]}])
        );
    }

    #[test]
    fn body_fills_empty_error_results_and_null_inputs() {
        let req = request(vec![
            Message::user_text("go"),
            Message::assistant(vec![tool_use("t", "bash", Value::Null)]),
            Message::user(vec![
                tool_result("t", "", true),
                tool_result("t2", "", false),
            ]),
        ]);
        let messages = &uncached(&req)["messages"];
        assert_eq!(messages[1]["content"][0]["input"], json!({}));
        assert_eq!(
            messages[2]["content"],
            json!([
                {"type": "tool_result", "tool_use_id": "t",
                 "content": "(the tool failed without output)", "is_error": true},
                {"type": "tool_result", "tool_use_id": "t2", "content": ""}
            ])
        );
    }

    #[test]
    fn invalid_conversations_are_config_errors() {
        let empty = try_request_body(&request(vec![]));
        assert!(matches!(empty, Err(ProviderError::Config(_))), "{empty:?}");
        let blank = try_request_body(&request(vec![Message::user(vec![text("  ")])]));
        assert!(matches!(blank, Err(ProviderError::Config(_))), "{blank:?}");
        let assistant_first = try_request_body(&request(vec![
            Message::assistant(vec![text("hi")]),
            Message::user_text("hello"),
        ]));
        match assistant_first {
            Err(ProviderError::Config(m)) => assert!(m.contains("assistant"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut no_model = request(vec![Message::user_text("hi")]);
        no_model.model = String::new();
        assert!(matches!(
            try_request_body(&no_model),
            Err(ProviderError::Config(_))
        ));
        let ok = try_request_body(&request(vec![Message::user_text("hi")]));
        assert!(ok.is_ok());
    }

    // ---- configuration ---------------------------------------------------

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn endpoint_tolerates_trailing_slash() {
        let a = AnthropicProvider::new("https://api.anthropic.com/".into(), Some(KEY.into()));
        assert_eq!(
            a.unwrap().endpoint(),
            "https://api.anthropic.com/v1/messages"
        );
        let b = AnthropicProvider::new("http://127.0.0.1:9/proxy".into(), None).unwrap();
        assert_eq!(b.endpoint(), "http://127.0.0.1:9/proxy/v1/messages");
        for bad in ["", "api.anthropic.com", "ftp://x", "http://"] {
            let e = AnthropicProvider::new(bad.into(), None).unwrap_err();
            assert!(matches!(e, ProviderError::Config(_)), "{bad}: {e:?}");
        }
    }

    /// reqwest with `rustls-no-provider` needs a process-wide rustls provider
    /// and system roots to build an https client.
    #[test]
    fn https_client_builds() {
        let provider = AnthropicProvider::new(DEFAULT_BASE_URL.into(), Some(KEY.into())).unwrap();
        assert_eq!(provider.endpoint(), "https://api.anthropic.com/v1/messages");
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn from_vars_follows_the_sdks() {
        let p = AnthropicProvider::from_vars(vars(&[("ANTHROPIC_API_KEY", KEY)])).unwrap();
        assert_eq!(p.endpoint(), "https://api.anthropic.com/v1/messages");
        assert_eq!(p.auth_label(), "x-api-key");
        assert!(p.check_credentials().is_ok());

        let p = AnthropicProvider::from_vars(vars(&[
            ("ANTHROPIC_AUTH_TOKEN", "tok"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:1"),
        ]))
        .unwrap();
        assert_eq!(p.auth_label(), "bearer");
        assert_eq!(p.endpoint(), "http://127.0.0.1:1/v1/messages");

        // The key wins over the token; empty values count as unset.
        let p = AnthropicProvider::from_vars(vars(&[
            ("ANTHROPIC_AUTH_TOKEN", "tok"),
            ("ANTHROPIC_API_KEY", KEY),
            ("ANTHROPIC_BASE_URL", ""),
        ]))
        .unwrap();
        assert_eq!(p.auth_label(), "x-api-key");
        assert_eq!(p.endpoint(), "https://api.anthropic.com/v1/messages");
    }

    #[test]
    fn missing_key_is_an_error_only_for_anthropic_hosts() {
        let p = AnthropicProvider::from_vars(vars(&[("ANTHROPIC_API_KEY", "")])).unwrap();
        let e = p.check_credentials().unwrap_err();
        assert_eq!(
            e.user_message(),
            "no Anthropic API key: set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL for a local mock)"
        );
        assert!(!e.is_retryable());
        let local = AnthropicProvider::new("http://127.0.0.1:1".into(), None).unwrap();
        assert!(local.check_credentials().is_ok());
        let lookalike = AnthropicProvider::new("https://notanthropic.com".into(), None).unwrap();
        assert!(lookalike.check_credentials().is_ok(), "not a subdomain");
        let bare = AnthropicProvider::new("https://anthropic.com".into(), None).unwrap();
        assert!(bare.check_credentials().is_err());
    }

    #[test]
    fn the_key_never_shows() {
        let p = AnthropicProvider::new(DEFAULT_BASE_URL.into(), Some(KEY.into())).unwrap();
        let debug = format!("{p:?}");
        assert!(!debug.contains(KEY), "{debug}");
        let bad = AnthropicProvider::new(DEFAULT_BASE_URL.into(), Some(format!("{KEY}\nx")));
        let e = bad.unwrap_err();
        assert!(!format!("{e} {e:?} {}", e.user_message()).contains(KEY));
    }

    #[test]
    fn retry_after_headers() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "1.5")])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "7"), ("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            None
        );
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "-1")])), None);
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "1e300")])),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after(&headers(&[])), None);
    }

    #[test]
    fn error_envelope_and_fallbacks() {
        use reqwest::StatusCode;
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            parse_error_envelope(StatusCode::from_u16(529).unwrap(), body),
            ("overloaded_error".to_string(), "Overloaded".to_string())
        );
        let html = "<html>Bad Gateway</html>".repeat(100);
        let (kind, message) = parse_error_envelope(StatusCode::BAD_GATEWAY, html.as_bytes());
        assert_eq!(kind, "api_error");
        assert!(message.starts_with("<html>Bad Gateway") && message.chars().count() <= 501);
        assert_eq!(
            parse_error_envelope(StatusCode::UNAUTHORIZED, b""),
            (
                "authentication_error".to_string(),
                "Unauthorized".to_string()
            )
        );
    }

    // ---- stream parsing (no network) -----------------------------------

    fn feed(
        events: &[(&str, Value)],
    ) -> (
        Result<Option<ModelResponse>, ProviderError>,
        Vec<StreamEvent>,
    ) {
        let mut acc = Accumulator::default();
        let mut seen = Vec::new();
        let mut on_event = |e: StreamEvent| seen.push(e);
        let mut last = Ok(None);
        for (name, data) in events {
            last = acc.handle(name, &data.to_string(), &mut on_event);
            if !matches!(last, Ok(None)) {
                break;
            }
        }
        (last, seen)
    }

    fn start(index: u32, block: Value) -> (&'static str, Value) {
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        )
    }

    fn delta(index: u32, delta: Value) -> (&'static str, Value) {
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    }

    fn stop(index: u32) -> (&'static str, Value) {
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        )
    }

    fn message_stop() -> (&'static str, Value) {
        ("message_stop", json!({"type": "message_stop"}))
    }

    #[test]
    fn parses_blocks_and_skips_unknown_ones() {
        let (result, seen) = feed(&[
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1", "usage": {
                    "input_tokens": 10, "output_tokens": 1,
                    "cache_read_input_tokens": 3, "cache_creation_input_tokens": 4}}}),
            ),
            ("ping", json!({"type": "ping"})),
            start(0, json!({"type": "redacted_thinking", "data": "opaque"})),
            delta(0, json!({"type": "mystery_delta"})),
            stop(0),
            start(
                1,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
            ),
            delta(1, json!({"type": "thinking_delta", "thinking": "hmm"})),
            delta(1, json!({"type": "signature_delta", "signature": "sig"})),
            stop(1),
            start(
                2,
                json!({"type": "tool_use", "id": "toolu_a", "name": "read", "input": {}}),
            ),
            stop(2),
            start(
                3,
                json!({"type": "tool_use", "id": "toolu_b", "name": "x", "input": {"k": 1}}),
            ),
            stop(3),
            start(
                4,
                json!({"type": "server_tool_use", "id": "srv", "name": "web_search"}),
            ),
            stop(4),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                       "usage": {"output_tokens": 42}}),
            ),
            ("future_event", json!({"type": "future_event"})),
            message_stop(),
        ]);
        let response = result.unwrap().unwrap();
        assert_eq!(
            response.content,
            vec![
                Part::Thinking {
                    thinking: "hmm".into(),
                    signature: Some("sig".into())
                },
                tool_use("toolu_a", "read", json!({})),
                tool_use("toolu_b", "x", json!({"k": 1})),
            ]
        );
        assert_eq!(response.stop_reason, "tool_use");
        assert_eq!(
            response.usage,
            ModelUsage {
                input_tokens: 10,
                output_tokens: 42,
                cache_read_input_tokens: 3,
                cache_creation_input_tokens: 4,
                cost_usd: None,
            }
        );
        assert_eq!(
            seen,
            vec![StreamEvent::ThinkingDelta {
                index: 1,
                text: "hmm".into()
            }]
        );
    }

    #[test]
    fn invalid_tool_json_is_malformed() {
        let (result, _) = feed(&[
            start(
                0,
                json!({"type": "tool_use", "id": "t", "name": "bash", "input": {}}),
            ),
            delta(
                0,
                json!({"type": "input_json_delta", "partial_json": "{\"command\": "}),
            ),
            stop(0),
        ]);
        match result {
            Err(e @ ProviderError::Stream { .. }) => {
                assert!(e.is_retryable());
                assert!(e.to_string().contains("bash"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inconsistent_streams_are_malformed() {
        for events in [
            vec![delta(0, json!({"type": "text_delta", "text": "x"}))],
            vec![
                start(0, json!({"type": "text", "text": ""})),
                delta(0, json!({"type": "input_json_delta", "partial_json": "{}"})),
            ],
            vec![("content_block_stop", json!({"type": "content_block_stop"}))],
            vec![("message", json!("not an object"))],
        ] {
            let (result, _) = feed(&events);
            assert!(
                matches!(&result, Err(ProviderError::Stream { kind, .. }) if kind == stream_kind::MALFORMED),
                "{events:?}: {result:?}"
            );
        }
        let mut acc = Accumulator::default();
        let mut ignore = |_: StreamEvent| {};
        let e = acc.handle("message", "{not json", &mut ignore).unwrap_err();
        assert!(matches!(e, ProviderError::Stream { ref kind, .. } if kind == "malformed"));
    }

    #[test]
    fn missing_stop_reason_is_inferred() {
        let (result, _) = feed(&[
            start(
                0,
                json!({"type": "tool_use", "id": "t", "name": "bash", "input": {}}),
            ),
            message_stop(),
        ]);
        let response = result.unwrap().unwrap();
        assert_eq!(response.stop_reason, "tool_use");
        assert_eq!(response.content, vec![tool_use("t", "bash", json!({}))]);
    }

    #[test]
    fn error_event_carries_the_envelope() {
        let (result, _) = feed(&[(
            "error",
            json!({"type": "error", "error": {"type": "api_error", "message": "Internal"}}),
        )]);
        match result {
            Err(ProviderError::Stream { kind, message }) => {
                assert_eq!((kind.as_str(), message.as_str()), ("api_error", "Internal"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stream_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let provider = AnthropicProvider::new("http://127.0.0.1:1".into(), None).unwrap();
        let req = request(vec![Message::user_text("hi")]);
        let cancel = CancellationToken::new();
        let mut on_event = |_: StreamEvent| {};
        let future = provider.stream(&req, &cancel, &mut on_event);
        assert_send(&future);
    }

    // ---- against the mock server ----------------------------------------

    fn fast(chunk_chars: usize) -> Timing {
        Timing {
            ttft_ms: 0,
            chunk_delay_ms: 0,
            chunk_chars,
        }
    }

    async fn mock(replies: Vec<Reply>, chunk_chars: usize) -> MockServer {
        MockServer::start(Script::sequential(replies).with_timing(fast(chunk_chars)))
            .await
            .unwrap()
    }

    fn provider_for(server: &MockServer) -> AnthropicProvider {
        AnthropicProvider::new(server.base_url(), Some(KEY.into())).unwrap()
    }

    async fn run(
        provider: &AnthropicProvider,
        req: &ModelRequest,
    ) -> (Result<ModelResponse, ProviderError>, Vec<StreamEvent>) {
        let cancel = CancellationToken::new();
        let mut seen = Vec::new();
        let mut on_event = |e: StreamEvent| seen.push(e);
        let result = provider.stream(req, &cancel, &mut on_event).await;
        (result, seen)
    }

    fn hello() -> ModelRequest {
        request(vec![Message::user_text("hello")])
    }

    #[tokio::test]
    async fn streams_text() {
        let server = mock(vec![Reply::text("Hello there, tired person!")], 4).await;
        let (result, seen) = run(&provider_for(&server), &hello()).await;
        let response = result.unwrap();
        assert!(seen.len() > 3, "{seen:?}");
        let mut joined = String::new();
        for event in &seen {
            match event {
                StreamEvent::TextDelta { index: 0, text } => joined.push_str(text),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(joined, "Hello there, tired person!");
        assert_eq!(response.content, vec![text("Hello there, tired person!")]);
        assert_eq!(response.stop_reason, "end_turn");
    }

    #[tokio::test]
    async fn streams_tool_use_with_split_json() {
        let input = json!({"command": "grep -rn 'fn main' src/", "timeout_ms": 5000});
        let server = mock(vec![Reply::tool_use("bash", input.clone())], 5).await;
        let (result, seen) = run(&provider_for(&server), &hello()).await;
        let response = result.unwrap();
        assert_eq!(response.stop_reason, "tool_use");
        let [
            Part::ToolUse {
                id,
                name,
                input: got,
            },
        ] = response.content.as_slice()
        else {
            panic!("{:?}", response.content);
        };
        assert!(id.starts_with("toolu_"), "{id}");
        assert_eq!(name, "bash");
        assert_eq!(got, &input);
        let pieces: Vec<&str> = seen
            .iter()
            .map(|e| match e {
                StreamEvent::ToolInputDelta {
                    index: 0,
                    name,
                    partial_json,
                } if name == "bash" => partial_json.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(pieces.len() > 3, "{pieces:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&pieces.concat()).unwrap(),
            input
        );
    }

    #[tokio::test]
    async fn streams_thinking_with_signature_and_usage() {
        let usage = Usage {
            input_tokens: 1234,
            output_tokens: 56,
            cache_read_input_tokens: 1000,
            cache_creation_input_tokens: 7,
        };
        let server = mock(
            vec![
                Reply::message(vec![
                    Block::thinking("Let me think about it.", "sig-abc"),
                    Block::text("Done."),
                ])
                .with_usage(usage),
            ],
            8,
        )
        .await;
        let (result, seen) = run(&provider_for(&server), &hello()).await;
        let response = result.unwrap();
        assert_eq!(
            response.content,
            vec![
                Part::Thinking {
                    thinking: "Let me think about it.".into(),
                    signature: Some("sig-abc".into())
                },
                text("Done."),
            ]
        );
        assert_eq!(
            response.usage,
            ModelUsage {
                input_tokens: 1234,
                output_tokens: 56,
                cache_read_input_tokens: 1000,
                cache_creation_input_tokens: 7,
                cost_usd: None,
            }
        );
        let thinking: String = seen
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ThinkingDelta { index: 0, text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(thinking, "Let me think about it.");
        assert!(seen.contains(&StreamEvent::TextDelta {
            index: 1,
            text: "Done.".into()
        }));
    }

    #[tokio::test]
    async fn sends_headers_and_the_built_body() {
        let server = mock(vec![Reply::text("ok")], 16).await;
        let mut req = request(vec![
            Message::user_text("list files"),
            Message::assistant(vec![tool_use("toolu_1", "bash", json!({"command": "ls"}))]),
            Message::user(vec![tool_result("toolu_1", "a.txt", false)]),
        ]);
        req.system = Some("be brief".into());
        req.tools = vec![bash_tool()];
        run(&provider_for(&server), &req).await.0.unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let recorded = &requests[0];
        assert_eq!(recorded.method, "POST");
        assert_eq!(recorded.path, "/v1/messages");
        assert_eq!(recorded.header("x-api-key"), Some(KEY));
        assert_eq!(recorded.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(recorded.header("content-type"), Some("application/json"));
        assert_eq!(recorded.header("accept"), Some("text/event-stream"));
        assert_eq!(recorded.header("authorization"), None);
        let agent = recorded.header("user-agent").unwrap_or("");
        assert!(agent.starts_with("tether/"), "{agent}");
        assert_eq!(recorded.body, request_body(&req));
    }

    #[tokio::test]
    async fn auth_token_is_sent_as_bearer() {
        let server = mock(vec![Reply::text("ok")], 16).await;
        let base = server.base_url();
        let provider = AnthropicProvider::from_vars(vars(&[
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("ANTHROPIC_AUTH_TOKEN", "tok-123"),
        ]))
        .unwrap();
        run(&provider, &hello()).await.0.unwrap();
        let recorded = &server.requests()[0];
        assert_eq!(recorded.header("authorization"), Some("Bearer tok-123"));
        assert_eq!(recorded.header("x-api-key"), None);
    }

    #[tokio::test]
    async fn rate_limit_carries_retry_after() {
        let server = mock(vec![Reply::rate_limited(2)], 16).await;
        let (result, seen) = run(&provider_for(&server), &hello()).await;
        let e = result.unwrap_err();
        assert!(seen.is_empty());
        match &e {
            ProviderError::Status {
                status,
                kind,
                retry_after,
                ..
            } => {
                assert_eq!(*status, 429);
                assert_eq!(kind, "rate_limit_error");
                assert_eq!(*retry_after, Some(Duration::from_secs(2)));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(e.session_error_type(), "model_rate_limited_error");
        assert!(!e.user_message().contains(KEY));
    }

    #[tokio::test]
    async fn bad_request_is_not_retryable() {
        let server = mock(
            vec![
                Reply::error(
                    400,
                    "invalid_request_error",
                    "messages.0.content: bad block",
                ),
                Reply::error(
                    400,
                    "invalid_request_error",
                    "prompt is too long: 212345 tokens > 200000 maximum",
                ),
                Reply::error(401, "authentication_error", "invalid x-api-key"),
                Reply::overloaded(),
            ],
            16,
        )
        .await;
        let provider = provider_for(&server);
        let e = run(&provider, &hello()).await.0.unwrap_err();
        assert!(!e.is_retryable());
        let m = e.user_message();
        assert!(
            m.contains("400 invalid_request_error") && m.contains("messages.0.content: bad block"),
            "{m}"
        );
        let e = run(&provider, &hello()).await.0.unwrap_err();
        assert!(!e.is_retryable());
        assert!(
            e.user_message().contains("context window"),
            "{}",
            e.user_message()
        );
        let e = run(&provider, &hello()).await.0.unwrap_err();
        assert!(!e.is_retryable());
        assert_eq!(
            e.user_message(),
            "the Anthropic API rejected the API key (401 authentication_error): check \
             ANTHROPIC_API_KEY"
        );
        let e = run(&provider, &hello()).await.0.unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.session_error_type(), "model_overloaded_error");
    }

    #[tokio::test]
    async fn drop_mid_stream_is_a_retryable_stream_error() {
        let server = mock(
            vec![Reply::drop_mid_stream(vec![Block::text("partial answer")])],
            4,
        )
        .await;
        let (result, seen) = run(&provider_for(&server), &hello()).await;
        let e = result.unwrap_err();
        assert!(
            matches!(&e, ProviderError::Stream { kind, .. } if kind == stream_kind::TRUNCATED),
            "{e:?}"
        );
        assert!(e.is_retryable());
        assert!(e.to_string().contains("before message_stop"), "{e}");
        assert_eq!(
            seen,
            vec![StreamEvent::TextDelta {
                index: 0,
                text: "part".into()
            }]
        );
    }

    #[tokio::test]
    async fn malformed_stream_is_a_stream_error() {
        let server = mock(vec![Reply::Malformed], 16).await;
        let e = run(&provider_for(&server), &hello()).await.0.unwrap_err();
        assert!(
            matches!(&e, ProviderError::Stream { kind, .. } if kind == stream_kind::MALFORMED),
            "{e:?}"
        );
        assert!(e.is_retryable());
    }

    #[tokio::test]
    async fn mid_stream_overload_is_retryable() {
        let server = mock(
            vec![Reply::mid_stream_error("overloaded_error", "Overloaded")],
            16,
        )
        .await;
        let e = run(&provider_for(&server), &hello()).await.0.unwrap_err();
        match &e {
            ProviderError::Stream { kind, message } => {
                assert_eq!(
                    (kind.as_str(), message.as_str()),
                    ("overloaded_error", "Overloaded")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(e.is_retryable());
        assert_eq!(e.session_error_type(), "model_overloaded_error");
    }

    #[tokio::test]
    async fn cancel_during_a_stall_returns_promptly() {
        let server = mock(vec![Reply::stall(vec![Block::text("never finished")])], 4).await;
        let provider = provider_for(&server);
        let req = hello();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let mut on_event = move |e: StreamEvent| {
            log.lock().unwrap().push(e);
            trigger.cancel();
        };
        // The guard only bounds a hang; a correct client returns at once.
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            provider.stream(&req, &cancel, &mut on_event),
        )
        .await
        .expect("stream() did not return after cancel");
        assert!(
            matches!(result, Err(ProviderError::Cancelled)),
            "{result:?}"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec![StreamEvent::TextDelta {
                index: 0,
                text: "neve".into()
            }]
        );
        // Already cancelled: returns without a request.
        let again = provider.stream(&req, &cancel, &mut |_| {}).await;
        assert!(matches!(again, Err(ProviderError::Cancelled)));
        assert_eq!(server.request_count(), 1);
    }

    #[tokio::test]
    async fn a_silent_stream_times_out() {
        let server = mock(vec![Reply::stall(vec![Block::text("stuck")])], 16).await;
        let provider = provider_for(&server).with_idle_timeout(Duration::from_millis(200));
        let (result, seen) = run(&provider, &hello()).await;
        let e = result.unwrap_err();
        assert!(
            matches!(&e, ProviderError::Transport(m) if m.contains("hung")),
            "{e:?}"
        );
        assert!(e.is_retryable());
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test]
    async fn unreachable_server_is_transport() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let provider = AnthropicProvider::new(format!("http://127.0.0.1:{port}"), None).unwrap();
        let e = run(&provider, &hello()).await.0.unwrap_err();
        assert!(matches!(e, ProviderError::Transport(_)), "{e:?}");
        assert!(e.is_retryable());
        assert!(
            e.user_message().contains("ANTHROPIC_BASE_URL"),
            "{}",
            e.user_message()
        );
    }

    #[tokio::test]
    async fn invalid_conversation_is_not_sent() {
        let server = mock(vec![Reply::text("ok")], 16).await;
        let req = request(vec![Message::assistant(vec![text("hi")])]);
        let e = run(&provider_for(&server), &req).await.0.unwrap_err();
        assert!(matches!(e, ProviderError::Config(_)), "{e:?}");
        assert_eq!(server.request_count(), 0);
    }
}
