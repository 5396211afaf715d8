//! Clients for the OpenAI Chat Completions API (`POST {base}/chat/completions`,
//! also Ollama, vLLM, LM Studio, OpenRouter, LiteLLM) and the Responses API
//! (`POST {base}/responses`), both streaming. Transport is shared
//! ([`super::http`]); this module maps tether's conversation to each wire format
//! and folds each stream back into a [`ModelResponse`].
//!
//! Mapping notes: tool-call ids are tether's own (`sevt_…` event ids), which both
//! APIs accept as opaque `call_id`s, so any history replays into either. Thinking
//! streams in (`reasoning_content`/`reasoning` deltas on Chat, reasoning summary
//! and text on Responses) as unsigned [`Part::Thinking`]; it is never sent back
//! (neither API accepts foreign reasoning), exactly like unsigned thinking on
//! Anthropic.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tether_proto::ModelUsage;
use tokio_util::sync::CancellationToken;

use super::http::{Endpoint, WireParser, malformed, parse_object, sensitive_header, str_field};
use super::{ModelRequest, ModelResponse, Part, ProviderError, Role, StreamEvent, Who};

/// Where requests go when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Which OpenAI wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiApi {
    Chat,
    Responses,
}

impl OpenAiApi {
    fn path(self) -> &'static str {
        match self {
            OpenAiApi::Chat => "/chat/completions",
            OpenAiApi::Responses => "/responses",
        }
    }
}

/// Streaming client for one OpenAI-style endpoint.
#[derive(Clone, Debug)]
pub struct OpenAiProvider {
    endpoint: Endpoint,
    api: OpenAiApi,
}

impl OpenAiProvider {
    /// `base_url` like `https://api.openai.com/v1` or `http://localhost:11434/v1`;
    /// the key (if any) goes in `Authorization: Bearer`. `extra` headers are sent
    /// with every request (e.g. OpenRouter's `HTTP-Referer`).
    pub fn new(
        api: OpenAiApi,
        base_url: &str,
        api_key: Option<String>,
        extra: &BTreeMap<String, String>,
        who: Who,
    ) -> Result<Self, ProviderError> {
        let mut headers = HeaderMap::new();
        let has_auth = match api_key.as_deref().map(str::trim) {
            Some(key) if !key.is_empty() => {
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    sensitive_header(&format!("Bearer {key}"), "API key")?,
                );
                true
            }
            _ => false,
        };
        super::http::extra_headers(extra, &mut headers)?;
        let endpoint = Endpoint::new(base_url, api.path(), headers, has_auth, who)?;
        Ok(OpenAiProvider { endpoint, api })
    }

    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.endpoint.idle_timeout = idle_timeout;
        self
    }

    pub fn endpoint(&self) -> &str {
        self.endpoint.url.as_str()
    }

    pub fn who(&self) -> &Who {
        &self.endpoint.who
    }

    /// `Err(Config)` when requests would go to `api.openai.com` without a key.
    pub fn check_credentials(&self) -> Result<(), ProviderError> {
        if !self.endpoint.has_auth && self.endpoint.goes_to("openai.com") {
            return Err(ProviderError::Config(format!(
                "no API key for {}: set {} (or {} for a local or compatible server)",
                self.endpoint.who.api, self.endpoint.who.key_var, self.endpoint.who.base_url_var
            )));
        }
        Ok(())
    }

    /// One streaming request; see [`super::AnthropicProvider::stream`].
    pub async fn stream(
        &self,
        req: &ModelRequest,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ModelResponse, ProviderError> {
        if cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        self.check_credentials()?;
        check_request(req)?;
        tracing::debug!(
            model = %req.model,
            endpoint = %self.endpoint.url,
            messages = req.messages.len(),
            tools = req.tools.len(),
            "model request"
        );
        match self.api {
            OpenAiApi::Chat => {
                let body = chat_request_body(req);
                let mut parser = ChatParser::default();
                self.endpoint
                    .stream(&body, cancel, &mut parser, on_event)
                    .await
            }
            OpenAiApi::Responses => {
                let body = responses_request_body(req);
                let mut parser = ResponsesParser::default();
                self.endpoint
                    .stream(&body, cancel, &mut parser, on_event)
                    .await
            }
        }
    }
}

fn check_request(req: &ModelRequest) -> Result<(), ProviderError> {
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
fn arguments(input: &Value) -> String {
    if input.is_null() {
        "{}".to_string()
    } else {
        input.to_string()
    }
}

fn result_text(content: &str, is_error: bool) -> String {
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

// ---------------------------------------------------------------------------
// Chat Completions

/// `{model, messages, stream, stream_options, max_completion_tokens, tools?}`.
/// The system prompt is the first message; an assistant turn is one message
/// with `content` and `tool_calls`; each tool result is its own `role: tool`
/// message, before any user text of the same turn.
pub fn chat_request_body(req: &ModelRequest) -> Value {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system
        && !system.trim().is_empty()
    {
        messages.push(json!({"role": "system", "content": system}));
    }
    for message in &req.messages {
        match message.role {
            Role::User => {
                let mut text = String::new();
                for part in &message.content {
                    match part {
                        Part::ToolResult {
                            tool_use_id,
                            content,
                            is_error,
                        } => messages.push(json!({
                            "role": "tool",
                            "tool_call_id": tool_use_id,
                            "content": result_text(content, *is_error),
                        })),
                        Part::Text(t) => join_text(&mut text, t),
                        Part::Thinking { .. } | Part::ToolUse { .. } => {}
                    }
                }
                if !text.is_empty() {
                    messages.push(json!({"role": "user", "content": text}));
                }
            }
            Role::Assistant => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for part in &message.content {
                    match part {
                        Part::Text(t) => join_text(&mut text, t),
                        Part::ToolUse { id, name, input } => calls.push(json!({
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments(input)},
                        })),
                        Part::Thinking { .. } | Part::ToolResult { .. } => {}
                    }
                }
                if text.is_empty() && calls.is_empty() {
                    continue;
                }
                let mut m = Map::new();
                m.insert("role".into(), json!("assistant"));
                m.insert(
                    "content".into(),
                    if text.is_empty() {
                        Value::Null
                    } else {
                        json!(text)
                    },
                );
                if !calls.is_empty() {
                    m.insert("tool_calls".into(), Value::Array(calls));
                }
                messages.push(Value::Object(m));
            }
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    body.insert("max_completion_tokens".into(), json!(req.max_tokens));
    if let Some(budget) = req.thinking_budget {
        body.insert(
            "reasoning_effort".into(),
            json!(super::reasoning_effort(budget)),
        );
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    }
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    Value::Object(body)
}

/// Blank text is dropped; several text parts of one turn are joined by a blank line.
fn join_text(into: &mut String, text: &str) {
    if text.trim().is_empty() {
        return;
    }
    if !into.is_empty() {
        into.push_str("\n\n");
    }
    into.push_str(text);
}

/// One `chat.completion.chunk` (fields tether reads; the rest is ignored).
#[derive(Deserialize)]
struct ChatChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChatChoice<'a>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChatChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<ChatDelta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChatDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ChatToolCall<'a>>>,
}

#[derive(Deserialize)]
struct ChatToolCall<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<ChatFunction<'a>>,
}

#[derive(Default, Deserialize)]
struct ChatFunction<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

/// The delta events of the Responses stream (the hot path), read without building a `Value`.
#[derive(Deserialize)]
struct ResponsesDelta<'a> {
    output_index: u64,
    #[serde(borrow)]
    delta: Cow<'a, str>,
}

#[derive(Debug, Default)]
struct ChatCall {
    id: String,
    name: String,
    arguments: String,
}

/// Folds `chat.completion.chunk`s. Block indices: 0 thinking, 1 text, 2+ tool
/// calls (by their `index`), so the live display keeps them apart.
#[derive(Debug, Default)]
struct ChatParser {
    thinking: String,
    text: String,
    calls: BTreeMap<u64, ChatCall>,
    finish_reason: Option<String>,
    usage: ModelUsage,
}

const CHAT_THINKING: u32 = 0;
const CHAT_TEXT: u32 = 1;
const CHAT_FIRST_TOOL: u32 = 2;

impl WireParser for ChatParser {
    fn handle(
        &mut self,
        event: &str,
        data: &str,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Option<ModelResponse>, ProviderError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(None);
        }
        if data == "[DONE]" {
            return self.finish().map(Some);
        }
        // Typed and borrowing: chunks are the hot path (one per token).
        let chunk: ChatChunk<'_> = serde_json::from_str(data).map_err(|e| {
            parse_object(event, data).err().unwrap_or_else(|| {
                malformed(format!(
                    "the model stream sent a chunk of unexpected shape ({e}): {}",
                    super::shorten(data, 200)
                ))
            })
        })?;
        if let Some(error) = &chunk.error {
            return Err(stream_error(error));
        }
        if let Some(usage) = chunk.usage.as_ref().filter(|u| u.is_object()) {
            self.usage = openai_usage(usage, "prompt_tokens", "completion_tokens");
        }
        for choice in chunk.choices {
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason.into_owned());
            }
            let Some(delta) = choice.delta else {
                continue;
            };
            // DeepSeek/vLLM say `reasoning_content`, Ollama/OpenRouter `reasoning`.
            let reasoning = delta.reasoning_content.or(delta.reasoning);
            if let Some(piece) = reasoning.filter(|s| !s.is_empty()) {
                self.thinking.push_str(&piece);
                on_event(StreamEvent::ThinkingDelta {
                    index: CHAT_THINKING,
                    text: piece.into_owned(),
                });
            }
            if let Some(piece) = delta.content.filter(|s| !s.is_empty()) {
                self.text.push_str(&piece);
                on_event(StreamEvent::TextDelta {
                    index: CHAT_TEXT,
                    text: piece.into_owned(),
                });
            }
            for call in delta.tool_calls.into_iter().flatten() {
                let id = call.id.filter(|s| !s.is_empty());
                let index = match call.index {
                    Some(i) => i,
                    // Some compatible servers leave the index out: a new id starts a new call.
                    None => match (self.calls.iter().next_back(), id.as_deref()) {
                        (Some((&i, last)), Some(id)) if last.id == id => i,
                        (Some((&i, _)), None) => i,
                        (last, _) => last.map_or(0, |(&i, _)| i + 1),
                    },
                };
                let entry = self.calls.entry(index).or_default();
                if let Some(id) = id {
                    entry.id = id.into_owned();
                }
                let function = call.function.unwrap_or_default();
                if let Some(name) = function.name.filter(|s| !s.is_empty()) {
                    // Streamed in pieces by some servers, repeated whole by others.
                    if entry.name != name {
                        entry.name.push_str(&name);
                    }
                }
                if let Some(piece) = function.arguments.filter(|s| !s.is_empty()) {
                    entry.arguments.push_str(&piece);
                    on_event(StreamEvent::ToolInputDelta {
                        index: CHAT_FIRST_TOOL.saturating_add(index as u32),
                        name: entry.name.clone(),
                        partial_json: piece.into_owned(),
                    });
                }
            }
        }
        Ok(None)
    }

    /// Some compatible servers end the body without `[DONE]`; once a
    /// `finish_reason` arrived the answer is complete anyway.
    fn at_end(&mut self) -> Option<ModelResponse> {
        self.finish_reason.as_ref()?;
        self.finish().ok()
    }
}

impl ChatParser {
    fn finish(&mut self) -> Result<ModelResponse, ProviderError> {
        let Some(reason) = self.finish_reason.take() else {
            return Err(ProviderError::Stream {
                kind: super::stream_kind::TRUNCATED.to_string(),
                message: format!(
                    "{}: [DONE] arrived before any finish_reason",
                    super::stream_kind::TRUNCATED_MESSAGE
                ),
            });
        };
        let mut content = Vec::new();
        if !self.thinking.is_empty() {
            content.push(Part::Thinking {
                thinking: std::mem::take(&mut self.thinking),
                signature: None,
            });
        }
        if !self.text.is_empty() {
            content.push(Part::Text(std::mem::take(&mut self.text)));
        }
        for (_, call) in std::mem::take(&mut self.calls) {
            content.push(Part::ToolUse {
                input: parse_arguments(&call.name, &call.arguments)?,
                id: call.id,
                name: call.name,
            });
        }
        let stop_reason = match reason.as_str() {
            "stop" => "end_turn",
            "tool_calls" | "function_call" => "tool_use",
            "length" => "max_tokens",
            "content_filter" => "refusal",
            other => other,
        };
        Ok(ModelResponse {
            content,
            stop_reason: stop_reason.to_string(),
            usage: self.usage,
        })
    }
}

fn parse_arguments(name: &str, arguments: &str) -> Result<Value, ProviderError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(arguments).map_err(|e| {
        malformed(format!(
            "the model sent invalid JSON for the input of tool {name:?}: {e}: {}",
            super::shorten(arguments, 200)
        ))
    })
}

/// OpenAI counts cached tokens inside the prompt; tether (like Anthropic) keeps
/// them apart so prices apply once.
fn openai_usage(usage: &Value, input_key: &str, output_key: &str) -> ModelUsage {
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
fn stream_error(error: &Value) -> ProviderError {
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

// ---------------------------------------------------------------------------
// Responses

/// `{model, instructions?, input, tools?, stream, store: false, max_output_tokens}`.
/// Items: user text as `message`s with `input_text`, assistant text as
/// `message`s with `output_text`, tool calls as `function_call`, results as
/// `function_call_output`.
pub fn responses_request_body(req: &ModelRequest) -> Value {
    let mut input = Vec::with_capacity(req.messages.len() * 2);
    for message in &req.messages {
        let mut text = String::new();
        let flush = |text: &mut String, input: &mut Vec<Value>| {
            if text.is_empty() {
                return;
            }
            let text = std::mem::take(text);
            input.push(match message.role {
                Role::User => json!({
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                }),
                Role::Assistant => json!({
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text}],
                }),
            });
        };
        for part in &message.content {
            match part {
                Part::Text(t) => join_text(&mut text, t),
                Part::ToolUse { id, name, input: i } => {
                    flush(&mut text, &mut input);
                    input.push(json!({
                        "type": "function_call",
                        "call_id": id,
                        "name": name,
                        "arguments": arguments(i),
                    }));
                }
                Part::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => {
                    flush(&mut text, &mut input);
                    input.push(json!({
                        "type": "function_call_output",
                        "call_id": tool_use_id,
                        "output": result_text(content, *is_error),
                    }));
                }
                Part::Thinking { .. } => {}
            }
        }
        flush(&mut text, &mut input);
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    if let Some(system) = &req.system
        && !system.trim().is_empty()
    {
        body.insert("instructions".into(), json!(system));
    }
    body.insert("input".into(), Value::Array(input));
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.input_schema,
                    "strict": false,
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    body.insert("stream".into(), json!(true));
    body.insert("store".into(), json!(false));
    body.insert("max_output_tokens".into(), json!(req.max_tokens));
    if let Some(budget) = req.thinking_budget {
        body.insert(
            "reasoning".into(),
            json!({"effort": super::reasoning_effort(budget), "summary": "auto"}),
        );
    }
    Value::Object(body)
}

#[derive(Debug)]
enum Item {
    Message(String),
    Reasoning(String),
    Call {
        call_id: String,
        name: String,
        arguments: String,
    },
    Other,
}

/// Folds Responses stream events, keyed by `output_index` (also the live
/// display's block index).
#[derive(Debug, Default)]
struct ResponsesParser {
    items: BTreeMap<u64, Item>,
}

fn output_index(value: &Value) -> Result<u64, ProviderError> {
    value
        .get("output_index")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            malformed(format!(
                "{} event without an output_index",
                str_field(value, "type").unwrap_or("response")
            ))
        })
}

fn item_from(item: &Value) -> Item {
    let s = |k: &str| str_field(item, k).unwrap_or("").to_string();
    match str_field(item, "type").unwrap_or("") {
        "message" => Item::Message(
            item.get("content")
                .and_then(Value::as_array)
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| str_field(p, "text"))
                        .collect::<String>()
                })
                .unwrap_or_default(),
        ),
        "reasoning" => Item::Reasoning(
            item.get("summary")
                .and_then(Value::as_array)
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| str_field(p, "text"))
                        .collect::<Vec<_>>()
                        .join("\n\n")
                })
                .unwrap_or_default(),
        ),
        "function_call" => Item::Call {
            call_id: s("call_id"),
            name: s("name"),
            arguments: s("arguments"),
        },
        _ => Item::Other,
    }
}

impl WireParser for ResponsesParser {
    fn handle(
        &mut self,
        event: &str,
        data: &str,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Option<ModelResponse>, ProviderError> {
        if data.trim().is_empty() {
            return Ok(None);
        }
        if let Some(done) = self.fast_delta(event, data, on_event) {
            return done.map(|()| None);
        }
        let value = parse_object(event, data)?;
        let kind = str_field(&value, "type").unwrap_or(event);
        let delta = || str_field(&value, "delta").unwrap_or("").to_string();
        match kind {
            "response.output_item.added" => {
                let index = output_index(&value)?;
                let item = value.get("item").unwrap_or(&Value::Null);
                self.items.insert(index, item_from(item));
            }
            "response.output_item.done" => {
                // The finished item is authoritative (full text and arguments).
                let index = output_index(&value)?;
                let item = item_from(value.get("item").unwrap_or(&Value::Null));
                let keep_streamed = matches!(
                    (&item, self.items.get(&index)),
                    (Item::Reasoning(done), Some(Item::Reasoning(_))) if done.is_empty()
                );
                if !keep_streamed {
                    self.items.insert(index, item);
                }
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                let index = output_index(&value)?;
                let piece = delta();
                if let Some(Item::Message(text)) = self.items.get_mut(&index) {
                    text.push_str(&piece);
                } else {
                    self.items.insert(index, Item::Message(piece.clone()));
                }
                if !piece.is_empty() {
                    on_event(StreamEvent::TextDelta {
                        index: index as u32,
                        text: piece,
                    });
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let index = output_index(&value)?;
                let piece = delta();
                match self.items.get_mut(&index) {
                    Some(Item::Reasoning(text)) => text.push_str(&piece),
                    _ => {
                        self.items.insert(index, Item::Reasoning(piece.clone()));
                    }
                }
                if !piece.is_empty() {
                    on_event(StreamEvent::ThinkingDelta {
                        index: index as u32,
                        text: piece,
                    });
                }
            }
            "response.function_call_arguments.delta" => {
                let index = output_index(&value)?;
                let piece = delta();
                let Some(Item::Call {
                    name, arguments, ..
                }) = self.items.get_mut(&index)
                else {
                    return Err(malformed(format!(
                        "function_call_arguments.delta for output {index}, which is not a \
                         function call"
                    )));
                };
                arguments.push_str(&piece);
                if !piece.is_empty() {
                    on_event(StreamEvent::ToolInputDelta {
                        index: index as u32,
                        name: name.clone(),
                        partial_json: piece,
                    });
                }
            }
            "response.completed" | "response.incomplete" => {
                let response = value.get("response").unwrap_or(&Value::Null);
                return self.finish(response).map(Some);
            }
            "response.failed" => {
                let response = value.get("response").unwrap_or(&Value::Null);
                return Err(stream_error(response.get("error").unwrap_or(&Value::Null)));
            }
            "error" => {
                let error = value.get("error").unwrap_or(&value);
                let kind = str_field(error, "code")
                    .or_else(|| str_field(error, "type").filter(|t| *t != "error"))
                    .unwrap_or("api_error");
                return Err(ProviderError::Stream {
                    kind: kind.to_string(),
                    message: str_field(error, "message")
                        .unwrap_or("the model stream reported an error")
                        .to_string(),
                });
            }
            _ => {}
        }
        Ok(None)
    }
}

impl ResponsesParser {
    /// Text, reasoning and argument deltas by their SSE event name, without a `Value`;
    /// `None` leaves the event to the general path (which also reports bad shapes).
    fn fast_delta(
        &mut self,
        event: &str,
        data: &str,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Option<Result<(), ProviderError>> {
        let kind = match event {
            "response.output_text.delta" => 0,
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => 1,
            "response.function_call_arguments.delta" => 2,
            _ => return None,
        };
        let d: ResponsesDelta<'_> = serde_json::from_str(data).ok()?;
        let index = d.output_index;
        let piece = d.delta;
        let item = self.items.get_mut(&index);
        let emit = !piece.is_empty();
        match (kind, item) {
            (0, Some(Item::Message(text))) => {
                text.push_str(&piece);
                if emit {
                    on_event(StreamEvent::TextDelta {
                        index: index as u32,
                        text: piece.into_owned(),
                    });
                }
            }
            (1, Some(Item::Reasoning(text))) => {
                text.push_str(&piece);
                if emit {
                    on_event(StreamEvent::ThinkingDelta {
                        index: index as u32,
                        text: piece.into_owned(),
                    });
                }
            }
            (
                2,
                Some(Item::Call {
                    name, arguments, ..
                }),
            ) => {
                arguments.push_str(&piece);
                if emit {
                    on_event(StreamEvent::ToolInputDelta {
                        index: index as u32,
                        name: name.clone(),
                        partial_json: piece.into_owned(),
                    });
                }
            }
            _ => return None,
        }
        Some(Ok(()))
    }

    fn finish(&mut self, response: &Value) -> Result<ModelResponse, ProviderError> {
        let mut content = Vec::new();
        for item in std::mem::take(&mut self.items).into_values() {
            match item {
                Item::Message(text) if !text.is_empty() => content.push(Part::Text(text)),
                Item::Reasoning(thinking) if !thinking.is_empty() => {
                    content.push(Part::Thinking {
                        thinking,
                        signature: None,
                    });
                }
                Item::Call {
                    call_id,
                    name,
                    arguments,
                } => content.push(Part::ToolUse {
                    input: parse_arguments(&name, &arguments)?,
                    id: call_id,
                    name,
                }),
                _ => {}
            }
        }
        let has_calls = content.iter().any(|p| matches!(p, Part::ToolUse { .. }));
        let incomplete = str_field(response, "status") == Some("incomplete");
        let stop_reason = if has_calls {
            "tool_use"
        } else if incomplete {
            match response
                .get("incomplete_details")
                .and_then(|d| str_field(d, "reason"))
            {
                Some("content_filter") => "refusal",
                _ => "max_tokens",
            }
        } else {
            "end_turn"
        };
        let usage = response
            .get("usage")
            .filter(|u| u.is_object())
            .map(|u| openai_usage(u, "input_tokens", "output_tokens"))
            .unwrap_or_default();
        Ok(ModelResponse {
            content,
            stop_reason: stop_reason.to_string(),
            usage,
        })
    }
}

/// A fresh stream parser for `api`.
pub(crate) fn parser(api: OpenAiApi) -> Box<dyn WireParser> {
    match api {
        OpenAiApi::Chat => Box::<ChatParser>::default(),
        OpenAiApi::Responses => Box::<ResponsesParser>::default(),
    }
}

/// Parses `(event, data)` pairs through the named API's parser.
#[cfg(test)]
fn parse_events(
    api: OpenAiApi,
    events: &[(String, String)],
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<Option<ModelResponse>, ProviderError> {
    let mut parser = parser(api);
    for (event, data) in events {
        if let Some(done) = parser.handle(event, data, on_event)? {
            return Ok(Some(done));
        }
    }
    Ok(parser.at_end())
}

#[cfg(test)]
mod tests {
    use super::super::{Message, ToolSpec, stream_kind};
    use super::*;

    fn request(messages: Vec<Message>) -> ModelRequest {
        ModelRequest {
            model: "gpt-5.1".into(),
            system: Some("be brief".into()),
            messages,
            tools: vec![ToolSpec {
                name: "bash".into(),
                description: "Run".into(),
                input_schema: json!({"type": "object"}),
            }],
            max_tokens: 100,
            thinking_budget: None,
        }
    }

    fn history() -> Vec<Message> {
        vec![
            Message::user_text("list"),
            Message::assistant(vec![
                Part::Thinking {
                    thinking: "hmm".into(),
                    signature: Some("sig".into()),
                },
                Part::Text("ok".into()),
                Part::ToolUse {
                    id: "sevt_1".into(),
                    name: "bash".into(),
                    input: json!({"command": "ls"}),
                },
                Part::ToolUse {
                    id: "sevt_2".into(),
                    name: "bash".into(),
                    input: json!({"command": "pwd"}),
                },
            ]),
            Message::user(vec![
                Part::ToolResult {
                    tool_use_id: "sevt_1".into(),
                    content: "a.txt".into(),
                    is_error: false,
                },
                Part::ToolResult {
                    tool_use_id: "sevt_2".into(),
                    content: "".into(),
                    is_error: true,
                },
                Part::Text("and now?".into()),
            ]),
        ]
    }

    #[test]
    fn chat_body_maps_every_part() {
        let body = chat_request_body(&request(history()));
        assert_eq!(
            body,
            json!({
                "model": "gpt-5.1",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "list"},
                    {"role": "assistant", "content": "ok", "tool_calls": [
                        {"id": "sevt_1", "type": "function",
                         "function": {"name": "bash", "arguments": "{\"command\":\"ls\"}"}},
                        {"id": "sevt_2", "type": "function",
                         "function": {"name": "bash", "arguments": "{\"command\":\"pwd\"}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "sevt_1", "content": "a.txt"},
                    {"role": "tool", "tool_call_id": "sevt_2",
                     "content": "(the tool failed without output)"},
                    {"role": "user", "content": "and now?"},
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_completion_tokens": 100,
                "tools": [{"type": "function", "function": {
                    "name": "bash", "description": "Run", "parameters": {"type": "object"}}}],
            })
        );
    }

    #[test]
    fn responses_body_maps_every_part() {
        let body = responses_request_body(&request(history()));
        assert_eq!(
            body,
            json!({
                "model": "gpt-5.1",
                "instructions": "be brief",
                "input": [
                    {"type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": "list"}]},
                    {"type": "message", "role": "assistant",
                     "content": [{"type": "output_text", "text": "ok"}]},
                    {"type": "function_call", "call_id": "sevt_1", "name": "bash",
                     "arguments": "{\"command\":\"ls\"}"},
                    {"type": "function_call", "call_id": "sevt_2", "name": "bash",
                     "arguments": "{\"command\":\"pwd\"}"},
                    {"type": "function_call_output", "call_id": "sevt_1", "output": "a.txt"},
                    {"type": "function_call_output", "call_id": "sevt_2",
                     "output": "(the tool failed without output)"},
                    {"type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": "and now?"}]},
                ],
                "tools": [{"type": "function", "name": "bash", "description": "Run",
                           "parameters": {"type": "object"}, "strict": false}],
                "stream": true,
                "store": false,
                "max_output_tokens": 100,
            })
        );
    }

    fn chat(
        chunks: &[&str],
    ) -> (
        Result<Option<ModelResponse>, ProviderError>,
        Vec<StreamEvent>,
    ) {
        let events: Vec<(String, String)> = chunks
            .iter()
            .map(|c| (String::new(), c.to_string()))
            .collect();
        let mut seen = Vec::new();
        let r = parse_events(OpenAiApi::Chat, &events, &mut |e| seen.push(e));
        (r, seen)
    }

    #[test]
    fn chat_parses_parallel_tool_calls_reasoning_and_usage() {
        let (r, seen) = chat(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Running"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"bash","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"read","arguments":"{\"file_"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"command\":\"ls\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"path\":\"f\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":100,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":60}}}"#,
            "[DONE]",
        ]);
        let r = r.unwrap().unwrap();
        assert_eq!(r.stop_reason, "tool_use");
        assert_eq!(
            r.content,
            vec![
                Part::Thinking {
                    thinking: "think".into(),
                    signature: None
                },
                Part::Text("Running".into()),
                Part::ToolUse {
                    id: "call_a".into(),
                    name: "bash".into(),
                    input: json!({"command": "ls"})
                },
                Part::ToolUse {
                    id: "call_b".into(),
                    name: "read".into(),
                    input: json!({"file_path": "f"})
                },
            ]
        );
        assert_eq!(
            r.usage,
            ModelUsage {
                input_tokens: 40,
                output_tokens: 7,
                cache_read_input_tokens: 60,
                cache_creation_input_tokens: 0,
                cost_usd: None,
            }
        );
        assert!(seen.contains(&StreamEvent::ToolInputDelta {
            index: 3,
            name: "read".into(),
            partial_json: "{\"file_".into()
        }));
    }

    #[test]
    fn chat_tolerates_compatible_servers() {
        // No index, the name repeated in every chunk, no [DONE] after the finish reason.
        let (r, _) = chat(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"c1","function":{"name":"bash","arguments":"{\"command\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"name":"bash","arguments":"\"ls\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"c2","function":{"name":"read","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ]);
        let r = r.unwrap().unwrap();
        assert_eq!(
            r.content,
            vec![
                Part::ToolUse {
                    id: "c1".into(),
                    name: "bash".into(),
                    input: json!({"command": "ls"})
                },
                Part::ToolUse {
                    id: "c2".into(),
                    name: "read".into(),
                    input: json!({})
                },
            ]
        );
    }

    #[test]
    fn chat_errors_are_typed() {
        let (r, _) = chat(&[r#"{"choices":[{"index":0,"delta":{"content":"a"}}]}"#]);
        assert!(matches!(r, Ok(None)), "no finish_reason: truncated");
        let (r, _) = chat(&["{not json at all"]);
        match r {
            Err(ProviderError::Stream { kind, message }) => {
                assert_eq!(kind, stream_kind::MALFORMED);
                assert!(message.contains("{not json at all"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let (r, _) = chat(&[
            r#"{"error":{"message":"The server had an error","type":"server_error","code":null}}"#,
        ]);
        assert!(
            matches!(&r, Err(e @ ProviderError::Stream { kind, .. }) if kind == "server_error" && e.is_retryable()),
            "{r:?}"
        );
        let long = format!("{{\"x\": \"{}", "y".repeat(5000));
        let (r, _) = chat(&[&long]);
        let Err(e) = r else { panic!() };
        assert!(e.to_string().len() < 700, "the line is truncated: {e}");
    }

    #[test]
    fn responses_parses_text_calls_and_usage() {
        let ev = |t: &str, rest: &str| (t.to_string(), format!(r#"{{"type":"{t}",{rest}}}"#));
        let events = vec![
            ev("response.created", r#""response":{"status":"in_progress"}"#),
            ev(
                "response.output_item.added",
                r#""output_index":0,"item":{"type":"reasoning","summary":[]}"#,
            ),
            ev(
                "response.reasoning_summary_text.delta",
                r#""output_index":0,"delta":"plan""#,
            ),
            ev(
                "response.output_item.added",
                r#""output_index":1,"item":{"type":"message","role":"assistant","content":[]}"#,
            ),
            ev(
                "response.output_text.delta",
                r#""output_index":1,"content_index":0,"delta":"Hi""#,
            ),
            ev(
                "response.output_item.added",
                r#""output_index":2,"item":{"type":"function_call","call_id":"call_1","name":"bash","arguments":""}"#,
            ),
            ev(
                "response.function_call_arguments.delta",
                r##""output_index":2,"delta":"{\"command\":""##,
            ),
            ev(
                "response.function_call_arguments.delta",
                r##""output_index":2,"delta":"\"ls\"}""##,
            ),
            ev(
                "response.output_item.done",
                r#""output_index":2,"item":{"type":"function_call","call_id":"call_1","name":"bash","arguments":"{\"command\":\"ls\"}"}"#,
            ),
            ev(
                "response.completed",
                r#""response":{"status":"completed","usage":{"input_tokens":50,"input_tokens_details":{"cached_tokens":10},"output_tokens":5}}"#,
            ),
        ];
        let mut seen = Vec::new();
        let r = parse_events(OpenAiApi::Responses, &events, &mut |e| seen.push(e))
            .unwrap()
            .unwrap();
        assert_eq!(
            r.content,
            vec![
                Part::Thinking {
                    thinking: "plan".into(),
                    signature: None
                },
                Part::Text("Hi".into()),
                Part::ToolUse {
                    id: "call_1".into(),
                    name: "bash".into(),
                    input: json!({"command": "ls"})
                },
            ]
        );
        assert_eq!(r.stop_reason, "tool_use");
        assert_eq!(r.usage.input_tokens, 40);
        assert_eq!(r.usage.cache_read_input_tokens, 10);
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn responses_errors_are_typed() {
        let events = vec![(
            "error".to_string(),
            r#"{"type":"error","code":"rate_limit_exceeded","message":"slow down","param":null}"#
                .to_string(),
        )];
        let r = parse_events(OpenAiApi::Responses, &events, &mut |_| {});
        assert!(
            matches!(&r, Err(ProviderError::Stream { kind, message }) if kind == "rate_limit_exceeded" && message == "slow down"),
            "{r:?}"
        );
        let events = vec![(
            "response.failed".to_string(),
            r#"{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"boom"}}}"#.to_string(),
        )];
        let r = parse_events(OpenAiApi::Responses, &events, &mut |_| {});
        assert!(
            matches!(&r, Err(ProviderError::Stream { kind, .. }) if kind == "server_error"),
            "{r:?}"
        );
    }

    #[test]
    fn keys_stay_out_of_debug_output() {
        let p = OpenAiProvider::new(
            OpenAiApi::Chat,
            DEFAULT_BASE_URL,
            Some("sk-secret-123".into()),
            &BTreeMap::from([("X-Extra".to_string(), "hidden-value".to_string())]),
            Who::openai(),
        )
        .unwrap();
        let debug = format!("{p:?}");
        assert!(!debug.contains("sk-secret-123") && !debug.contains("hidden-value"));
        assert_eq!(p.endpoint(), "https://api.openai.com/v1/chat/completions");
        let none = OpenAiProvider::new(
            OpenAiApi::Responses,
            DEFAULT_BASE_URL,
            None,
            &BTreeMap::new(),
            Who::openai(),
        )
        .unwrap();
        let e = none.check_credentials().unwrap_err();
        assert!(e.user_message().contains("OPENAI_API_KEY"), "{e}");
    }

    // ---- against the mock server ----------------------------------------

    use tether_mock_llm::{Block, MockServer, Reply, Script, Timing, Usage};

    async fn mock(replies: Vec<Reply>) -> MockServer {
        let timing = Timing {
            ttft_ms: 0,
            chunk_delay_ms: 0,
            chunk_chars: 5,
        };
        MockServer::start(Script::sequential(replies).with_timing(timing))
            .await
            .unwrap()
    }

    fn client(server: &MockServer, api: OpenAiApi) -> OpenAiProvider {
        OpenAiProvider::new(
            api,
            &format!("{}/v1", server.base_url()),
            Some("sk-test".into()),
            &BTreeMap::new(),
            Who::openai(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn both_apis_stream_parallel_calls_from_the_mock() {
        let reply = || {
            Reply::message(vec![
                Block::thinking("let me see", "sig"),
                Block::text("Running two."),
                Block::tool_use("bash", json!({"command": "ls -la"})),
                Block::tool_use("read", json!({"file_path": "a.txt"})),
            ])
            .with_usage(Usage {
                input_tokens: 90,
                output_tokens: 12,
                cache_read_input_tokens: 10,
                cache_creation_input_tokens: 0,
            })
        };
        let server = mock(vec![reply(), reply()]).await;
        for api in [OpenAiApi::Chat, OpenAiApi::Responses] {
            let mut seen = Vec::new();
            let r = client(&server, api)
                .stream(&request(history()), &CancellationToken::new(), &mut |e| {
                    seen.push(e)
                })
                .await
                .unwrap();
            assert_eq!(r.stop_reason, "tool_use", "{api:?}");
            let calls: Vec<(&str, &Value)> = r
                .content
                .iter()
                .filter_map(|p| match p {
                    Part::ToolUse { name, input, .. } => Some((name.as_str(), input)),
                    _ => None,
                })
                .collect();
            assert_eq!(
                calls,
                vec![
                    ("bash", &json!({"command": "ls -la"})),
                    ("read", &json!({"file_path": "a.txt"}))
                ],
                "{api:?}"
            );
            assert!(r.content.contains(&Part::Text("Running two.".into())));
            assert!(r.content.contains(&Part::Thinking {
                thinking: "let me see".into(),
                signature: None
            }));
            assert_eq!(
                (
                    r.usage.input_tokens,
                    r.usage.cache_read_input_tokens,
                    r.usage.output_tokens
                ),
                (90, 10, 12),
                "{api:?}"
            );
            let tool_deltas = seen
                .iter()
                .filter(|e| matches!(e, StreamEvent::ToolInputDelta { .. }))
                .count();
            assert!(tool_deltas >= 4, "{api:?}: {seen:?}");
        }
        let requests = server.requests();
        assert_eq!(requests[0].path, "/v1/chat/completions");
        assert_eq!(requests[1].path, "/v1/responses");
        assert_eq!(requests[0].header("authorization"), Some("Bearer sk-test"));
        assert_eq!(requests[0].body, chat_request_body(&request(history())));
        assert_eq!(
            requests[1].body,
            responses_request_body(&request(history()))
        );
    }

    #[tokio::test]
    async fn failures_from_the_mock_are_typed() {
        for api in [OpenAiApi::Chat, OpenAiApi::Responses] {
            let server = mock(vec![
                Reply::rate_limited(3),
                Reply::drop_mid_stream(vec![Block::text("partial answer")]),
                Reply::Malformed,
                Reply::error(401, "invalid_request_error", "Incorrect API key provided"),
                Reply::mid_stream_error("server_error", "boom"),
            ])
            .await;
            let p = client(&server, api);
            let go = || async {
                p.stream(&request(history()), &CancellationToken::new(), &mut |_| {})
                    .await
                    .unwrap_err()
            };
            let e = go().await;
            assert_eq!(e.retry_after(), Some(Duration::from_secs(3)), "{api:?}");
            assert!(e.is_retryable());
            let e = go().await;
            assert!(
                matches!(&e, ProviderError::Stream { kind, .. } if kind == stream_kind::TRUNCATED),
                "{api:?}: {e:?}"
            );
            let e = go().await;
            assert!(
                matches!(&e, ProviderError::Stream { kind, message } if kind == stream_kind::MALFORMED && message.contains("{not json")),
                "{api:?}: {e:?}"
            );
            let e = go().await;
            assert!(!e.is_retryable());
            let m = e.describe(&Who::openai());
            assert!(
                m.contains("the OpenAI API rejected the API key") && m.contains("OPENAI_API_KEY"),
                "{m}"
            );
            let e = go().await;
            assert!(e.is_retryable(), "{api:?}: {e:?}");
            assert!(e.to_string().contains("boom"), "{e}");
        }
    }
}
