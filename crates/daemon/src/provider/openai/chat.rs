//! The Chat Completions wire format (`POST {base}/chat/completions`, also Ollama, vLLM,
//! LM Studio, OpenRouter, LiteLLM): tether's conversation as `messages`, and the fold of
//! `chat.completion.chunk`s back into a [`ModelResponse`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tether_proto::ModelUsage;

use super::common::{
    arguments, join_text, openai_usage, parse_arguments, result_text, stream_error,
};
use crate::provider::http::{WireParser, malformed, parse_object};
use crate::provider::{ModelRequest, ModelResponse, Part, ProviderError, Role, StreamEvent};

/// `{model, messages, stream, stream_options, max_completion_tokens, tools?}`.
/// The system prompt is the first message; an assistant turn is one message
/// with `content` and `tool_calls`; each tool result is its own `role: tool`
/// message, before any user text of the same turn.
pub fn request_body(req: &ModelRequest) -> Value {
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
            json!(crate::provider::reasoning_effort(budget)),
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

#[derive(Debug, Default)]
struct ChatCall {
    id: String,
    name: String,
    arguments: String,
}

/// Folds `chat.completion.chunk`s. Block indices: 0 thinking, 1 text, 2+ tool
/// calls (by their `index`), so the live display keeps them apart.
#[derive(Debug, Default)]
pub(super) struct ChatParser {
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
                    crate::provider::shorten(data, 200)
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
                kind: crate::provider::stream_kind::TRUNCATED.to_string(),
                message: format!(
                    "{}: [DONE] arrived before any finish_reason",
                    crate::provider::stream_kind::TRUNCATED_MESSAGE
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

#[cfg(test)]
mod tests {
    use super::super::tests::{history, request};
    use super::super::{OpenAiApi, parse_events};
    use super::*;
    use crate::provider::stream_kind;

    #[test]
    fn chat_body_maps_every_part() {
        let body = request_body(&request(history()));
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
}
