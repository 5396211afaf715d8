//! The Responses wire format (`POST {base}/responses`): tether's conversation as `input`
//! items, and the fold of the typed stream events (keyed by `output_index`) back into a
//! [`ModelResponse`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::common::{
    arguments, join_text, openai_usage, parse_arguments, result_text, stream_error,
};
use crate::provider::http::{WireParser, malformed, parse_object, str_field};
use crate::provider::{ModelRequest, ModelResponse, Part, ProviderError, Role, StreamEvent};

/// `{model, instructions?, input, tools?, stream, store: false, max_output_tokens}`.
/// Items: user text as `message`s with `input_text`, assistant text as
/// `message`s with `output_text`, tool calls as `function_call`, results as
/// `function_call_output`.
pub fn request_body(req: &ModelRequest) -> Value {
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
            json!({"effort": crate::provider::reasoning_effort(budget), "summary": "auto"}),
        );
    }
    Value::Object(body)
}

/// The delta events of the Responses stream (the hot path), read without building a `Value`.
#[derive(Deserialize)]
struct ResponsesDelta<'a> {
    output_index: u64,
    #[serde(borrow)]
    delta: Cow<'a, str>,
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
pub(super) struct ResponsesParser {
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

#[cfg(test)]
mod tests {
    use super::super::tests::{history, request};
    use super::super::{OpenAiApi, parse_events};
    use super::*;

    #[test]
    fn responses_body_maps_every_part() {
        let body = request_body(&request(history()));
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
}
