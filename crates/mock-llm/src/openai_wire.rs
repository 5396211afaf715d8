//! The OpenAI wire formats: Chat Completions chunks (`data:`-only SSE ending in
//! `[DONE]`) and Responses events (`event:` + `data:` with `sequence_number`),
//! plus the `{"error": {...}}` envelope. Pure data → bytes, no I/O.
//!
//! Objects are written field by field so keys come out in the order the real
//! APIs use (`serde_json` without `preserve_order` would sort them).

use serde::Serialize;
use serde_json::Value;

use crate::script::{Block, Usage};
use crate::wire::{EventStream, Message, SseEvent};

/// A JSON object written in insertion order.
struct Obj(String);

impl Obj {
    fn new() -> Obj {
        Obj(String::from("{"))
    }

    fn raw(mut self, key: &str, raw: &str) -> Obj {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&to_json(&key));
        self.0.push(':');
        self.0.push_str(raw);
        self
    }

    fn val<T: Serialize + ?Sized>(self, key: &str, value: &T) -> Obj {
        let raw = to_json(value);
        self.raw(key, &raw)
    }

    fn done(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Cannot fail: strings, numbers, bools and `Value`s with string keys.
    serde_json::to_string(value).unwrap_or_default()
}

fn array(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

/// `{"error":{"message":…,"type":…,"param":null,"code":null}}`
pub(crate) fn error_envelope(error_type: &str, message: &str) -> String {
    Obj::new()
        .raw("error", &error_object(error_type, message))
        .done()
}

fn error_object(error_type: &str, message: &str) -> String {
    Obj::new()
        .val("message", message)
        .val("type", error_type)
        .raw("param", "null")
        .raw("code", "null")
        .done()
}

/// The finish reason Chat Completions uses for an Anthropic-style stop reason.
fn finish_reason(stop_reason: &str) -> &str {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        "refusal" => "content_filter",
        other => other,
    }
}

/// Splits like [`crate::wire`] does: `n` characters a piece, 0 = whole.
fn pieces(s: &str, n: usize) -> Vec<&str> {
    if n == 0 || s.is_empty() {
        return vec![s];
    }
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let cut = rest.char_indices().nth(n).map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(cut);
        out.push(piece);
        rest = tail;
    }
    out
}

// ---------------------------------------------------------------------------
// Chat Completions

pub(crate) struct Chat<'a> {
    pub message: &'a Message,
    pub created: u64,
}

impl Chat<'_> {
    fn chunk(&self, delta: &str, finish: Option<&str>) -> SseEvent {
        let choice = Obj::new()
            .raw("index", "0")
            .raw("delta", delta)
            .val("finish_reason", &finish)
            .raw("logprobs", "null")
            .done();
        SseEvent::data(self.head().raw("choices", &array([choice])).done())
    }

    fn head(&self) -> Obj {
        Obj::new()
            .val("id", &self.message.id)
            .val("object", "chat.completion.chunk")
            .val("created", &self.created)
            .val("model", &self.message.model)
    }

    /// The opening chunk (`role: assistant`).
    pub fn start_events(&self) -> Vec<SseEvent> {
        let delta = Obj::new()
            .val("role", "assistant")
            .val("content", "")
            .done();
        vec![self.chunk(&delta, None)]
    }

    /// `data: {"error": …}` as compatible servers send a mid-stream failure.
    pub fn error_event(error_type: &str, message: &str) -> SseEvent {
        SseEvent::data(error_envelope(error_type, message))
    }

    pub fn events(&self, chunk_chars: usize, include_usage: bool) -> EventStream {
        let mut events = self.start_events();
        let mut first_delta_end = events.len();
        let mut cut_found = false;
        let mut mark = |events: &Vec<SseEvent>, piece: &str| {
            if !cut_found && !piece.is_empty() {
                cut_found = true;
                first_delta_end = events.len();
            }
        };
        let mut call_index = 0u32;
        for block in &self.message.blocks {
            match block {
                Block::Text { text } => {
                    for piece in pieces(text, chunk_chars) {
                        events.push(self.chunk(&Obj::new().val("content", piece).done(), None));
                        mark(&events, piece);
                    }
                }
                Block::Thinking { thinking, .. } => {
                    for piece in pieces(thinking, chunk_chars) {
                        let delta = Obj::new().val("reasoning_content", piece).done();
                        events.push(self.chunk(&delta, None));
                        mark(&events, piece);
                    }
                }
                Block::ToolUse { id, name, input } => {
                    let function = Obj::new().val("name", name).val("arguments", "").done();
                    let call = Obj::new()
                        .val("index", &call_index)
                        .val("id", id.as_deref().unwrap_or_default())
                        .val("type", "function")
                        .raw("function", &function)
                        .done();
                    let delta = Obj::new().raw("tool_calls", &array([call])).done();
                    events.push(self.chunk(&delta, None));
                    let arguments = to_json(input);
                    for piece in pieces(&arguments, chunk_chars) {
                        let function = Obj::new().val("arguments", piece).done();
                        let call = Obj::new()
                            .val("index", &call_index)
                            .raw("function", &function)
                            .done();
                        let delta = Obj::new().raw("tool_calls", &array([call])).done();
                        events.push(self.chunk(&delta, None));
                        mark(&events, piece);
                    }
                    call_index += 1;
                }
            }
        }
        events.push(self.chunk("{}", Some(finish_reason(&self.message.stop_reason))));
        if include_usage {
            let u = self.message.usage;
            let prompt = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
            let details = Obj::new()
                .val("cached_tokens", &u.cache_read_input_tokens)
                .done();
            let usage = Obj::new()
                .val("prompt_tokens", &prompt)
                .val("completion_tokens", &u.output_tokens)
                .val("total_tokens", &(prompt + u.output_tokens))
                .raw("prompt_tokens_details", &details)
                .done();
            events.push(SseEvent::data(
                self.head().raw("choices", "[]").raw("usage", &usage).done(),
            ));
        }
        events.push(SseEvent::data("[DONE]".to_string()));
        EventStream {
            events,
            first_delta_end,
        }
    }
}

// ---------------------------------------------------------------------------
// Responses

pub(crate) struct Responses<'a> {
    pub message: &'a Message,
    pub created: u64,
}

/// Numbers events as the real API does (`sequence_number` from 0).
struct Seq {
    events: Vec<SseEvent>,
}

impl Seq {
    fn push(&mut self, name: &'static str, fields: Obj) {
        let n = self.events.len();
        // `type` and `sequence_number` lead; `fields` carries the rest.
        let rest = fields.done();
        let rest = rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or_default();
        let head = Obj::new()
            .val("type", name)
            .val("sequence_number", &n)
            .done();
        let data = if rest.is_empty() {
            head
        } else {
            format!("{},{rest}}}", head.strip_suffix('}').unwrap_or(&head))
        };
        self.events.push(SseEvent::named(name, data));
    }
}

impl Responses<'_> {
    fn response(&self, status: &str, output: &str, usage: Option<&Usage>) -> String {
        let usage = usage.map_or_else(
            || "null".to_string(),
            |u| {
                let input =
                    u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
                Obj::new()
                    .val("input_tokens", &input)
                    .raw(
                        "input_tokens_details",
                        &Obj::new()
                            .val("cached_tokens", &u.cache_read_input_tokens)
                            .done(),
                    )
                    .val("output_tokens", &u.output_tokens)
                    .raw(
                        "output_tokens_details",
                        &Obj::new().raw("reasoning_tokens", "0").done(),
                    )
                    .val("total_tokens", &(input + u.output_tokens))
                    .done()
            },
        );
        let incomplete = if status == "incomplete" {
            Obj::new().val("reason", "max_output_tokens").done()
        } else {
            "null".to_string()
        };
        Obj::new()
            .val("id", &self.message.id)
            .val("object", "response")
            .val("created_at", &self.created)
            .val("status", status)
            .val("model", &self.message.model)
            .raw("output", output)
            .raw("parallel_tool_calls", "true")
            .raw("usage", &usage)
            .raw("error", "null")
            .raw("incomplete_details", &incomplete)
            .raw("store", "false")
            .done()
    }

    pub fn start_events(&self) -> Vec<SseEvent> {
        let mut seq = Seq { events: Vec::new() };
        self.start(&mut seq);
        seq.events
    }

    fn start(&self, seq: &mut Seq) {
        let created = self.response("in_progress", "[]", None);
        seq.push("response.created", Obj::new().raw("response", &created));
        seq.push("response.in_progress", Obj::new().raw("response", &created));
    }

    /// `event: error` as the Responses API sends a mid-stream failure.
    pub fn error_event(error_type: &str, message: &str, sequence_number: usize) -> SseEvent {
        let data = Obj::new()
            .val("type", "error")
            .val("sequence_number", &sequence_number)
            .val("code", error_type)
            .val("message", message)
            .raw("param", "null")
            .done();
        SseEvent::named("error", data)
    }

    pub fn events(&self, chunk_chars: usize) -> EventStream {
        let mut seq = Seq { events: Vec::new() };
        self.start(&mut seq);
        let mut first_delta_end = seq.events.len();
        let mut cut_found = false;
        let mut items = Vec::new();
        for (oi, block) in self.message.blocks.iter().enumerate() {
            let mut mark = |seq: &Seq, piece: &str| {
                if !cut_found && !piece.is_empty() {
                    cut_found = true;
                    first_delta_end = seq.events.len();
                }
            };
            let item_id = |prefix: &str| format!("{prefix}_{}_{oi}", self.message.id);
            let done = match block {
                Block::Text { text } => {
                    let id = item_id("msg");
                    let item = |status: &str, content: &str| {
                        Obj::new()
                            .val("id", &id)
                            .val("type", "message")
                            .val("status", status)
                            .val("role", "assistant")
                            .raw("content", content)
                            .done()
                    };
                    let part = |text: &str| {
                        Obj::new()
                            .val("type", "output_text")
                            .val("text", text)
                            .raw("annotations", "[]")
                            .done()
                    };
                    seq.push(
                        "response.output_item.added",
                        Obj::new()
                            .val("output_index", &oi)
                            .raw("item", &item("in_progress", "[]")),
                    );
                    let located = || {
                        Obj::new()
                            .val("item_id", &id)
                            .val("output_index", &oi)
                            .raw("content_index", "0")
                    };
                    seq.push(
                        "response.content_part.added",
                        located().raw("part", &part("")),
                    );
                    for piece in pieces(text, chunk_chars) {
                        seq.push(
                            "response.output_text.delta",
                            located().val("delta", piece).raw("logprobs", "[]"),
                        );
                        mark(&seq, piece);
                    }
                    seq.push(
                        "response.output_text.done",
                        located().val("text", text).raw("logprobs", "[]"),
                    );
                    seq.push(
                        "response.content_part.done",
                        located().raw("part", &part(text)),
                    );
                    item("completed", &array([part(text)]))
                }
                Block::Thinking { thinking, .. } => {
                    let id = item_id("rs");
                    let summary = |text: &str| {
                        Obj::new()
                            .val("type", "summary_text")
                            .val("text", text)
                            .done()
                    };
                    let item = |summaries: &str| {
                        Obj::new()
                            .val("id", &id)
                            .val("type", "reasoning")
                            .raw("summary", summaries)
                            .done()
                    };
                    seq.push(
                        "response.output_item.added",
                        Obj::new().val("output_index", &oi).raw("item", &item("[]")),
                    );
                    let located = || {
                        Obj::new()
                            .val("item_id", &id)
                            .val("output_index", &oi)
                            .raw("summary_index", "0")
                    };
                    seq.push(
                        "response.reasoning_summary_part.added",
                        located().raw("part", &summary("")),
                    );
                    for piece in pieces(thinking, chunk_chars) {
                        seq.push(
                            "response.reasoning_summary_text.delta",
                            located().val("delta", piece),
                        );
                        mark(&seq, piece);
                    }
                    seq.push(
                        "response.reasoning_summary_text.done",
                        located().val("text", thinking),
                    );
                    seq.push(
                        "response.reasoning_summary_part.done",
                        located().raw("part", &summary(thinking)),
                    );
                    item(&array([summary(thinking)]))
                }
                Block::ToolUse { id, name, input } => {
                    let fc = item_id("fc");
                    let call_id = id.as_deref().unwrap_or_default();
                    let arguments = to_json(input);
                    let item = |status: &str, args: &str| {
                        Obj::new()
                            .val("id", &fc)
                            .val("type", "function_call")
                            .val("status", status)
                            .val("call_id", call_id)
                            .val("name", name)
                            .val("arguments", args)
                            .done()
                    };
                    seq.push(
                        "response.output_item.added",
                        Obj::new()
                            .val("output_index", &oi)
                            .raw("item", &item("in_progress", "")),
                    );
                    for piece in pieces(&arguments, chunk_chars) {
                        seq.push(
                            "response.function_call_arguments.delta",
                            Obj::new()
                                .val("item_id", &fc)
                                .val("output_index", &oi)
                                .val("delta", piece),
                        );
                        mark(&seq, piece);
                    }
                    seq.push(
                        "response.function_call_arguments.done",
                        Obj::new()
                            .val("item_id", &fc)
                            .val("output_index", &oi)
                            .val("arguments", &arguments),
                    );
                    item("completed", &arguments)
                }
            };
            seq.push(
                "response.output_item.done",
                Obj::new().val("output_index", &oi).raw("item", &done),
            );
            items.push(done);
        }
        let incomplete = self.message.stop_reason == "max_tokens";
        let (name, status) = if incomplete {
            ("response.incomplete", "incomplete")
        } else {
            ("response.completed", "completed")
        };
        let response = self.response(status, &array(items), Some(&self.message.usage));
        seq.push(name, Obj::new().raw("response", &response));
        EventStream {
            events: seq.events,
            first_delta_end,
        }
    }
}

/// Number of assistant turns in a Responses `input`: consecutive assistant
/// messages and function calls count as one turn (reasoning items are skipped).
pub(crate) fn responses_assistant_turns(input: &[Value]) -> usize {
    let mut turns = 0;
    let mut previous_assistant = false;
    for item in input {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        if kind == "reasoning" {
            continue;
        }
        let assistant = matches!(kind, "function_call" | "custom_tool_call")
            || (kind == "message" && item.get("role").and_then(Value::as_str) == Some("assistant"));
        if assistant && !previous_assistant {
            turns += 1;
        }
        previous_assistant = assistant;
    }
    turns
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(blocks: Vec<Block>, stop: &str) -> Message {
        Message {
            id: "chatcmpl-1".into(),
            model: "gpt-x".into(),
            blocks,
            stop_reason: stop.into(),
            usage: Usage {
                input_tokens: 10,
                output_tokens: 3,
                cache_read_input_tokens: 5,
                cache_creation_input_tokens: 0,
            },
        }
    }

    #[test]
    fn chat_chunks_are_byte_exact() {
        let m = message(
            vec![
                Block::text("Hi"),
                Block::ToolUse {
                    id: Some("call_1".into()),
                    name: "bash".into(),
                    input: json!({"command": "ls"}),
                },
            ],
            "tool_use",
        );
        let stream = Chat {
            message: &m,
            created: 7,
        }
        .events(8, true);
        let wire: String = stream.events.iter().map(SseEvent::encode).collect();
        let head =
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"gpt-x","#;
        let expected = [
            format!(r#"data: {head}"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null,"logprobs":null}}]}}"#),
            format!(r#"data: {head}"choices":[{{"index":0,"delta":{{"content":"Hi"}},"finish_reason":null,"logprobs":null}}]}}"#),
            format!(r#"data: {head}"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_1","type":"function","function":{{"name":"bash","arguments":""}}}}]}},"finish_reason":null,"logprobs":null}}]}}"#),
            format!(r#"data: {head}"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{{\"comman"}}}}]}},"finish_reason":null,"logprobs":null}}]}}"#),
            format!(r#"data: {head}"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"d\":\"ls\"}}"}}}}]}},"finish_reason":null,"logprobs":null}}]}}"#),
            format!(r#"data: {head}"choices":[{{"index":0,"delta":{{}},"finish_reason":"tool_calls","logprobs":null}}]}}"#),
            format!(r#"data: {head}"choices":[],"usage":{{"prompt_tokens":15,"completion_tokens":3,"total_tokens":18,"prompt_tokens_details":{{"cached_tokens":5}}}}}}"#),
            "data: [DONE]".to_string(),
        ]
        .map(|l| format!("{l}\n\n"))
        .concat();
        assert_eq!(wire, expected);
        assert_eq!(stream.first_delta_end, 2, "cut after the first text chunk");
        for e in &stream.events[..stream.events.len() - 1] {
            serde_json::from_str::<Value>(&e.data).unwrap();
        }
    }

    #[test]
    fn responses_events_are_numbered_and_complete() {
        let m = message(
            vec![
                Block::thinking("plan", "sig"),
                Block::text("Hi"),
                Block::ToolUse {
                    id: Some("call_1".into()),
                    name: "bash".into(),
                    input: json!({"command": "ls"}),
                },
            ],
            "tool_use",
        );
        let stream = Responses {
            message: &m,
            created: 7,
        }
        .events(0);
        let names: Vec<&str> = stream.events.iter().map(|e| e.name).collect();
        assert_eq!(names[0], "response.created");
        assert_eq!(*names.last().unwrap(), "response.completed");
        for (n, e) in stream.events.iter().enumerate() {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(v["type"], e.name);
            assert_eq!(v["sequence_number"], n);
            assert!(
                e.encode()
                    .starts_with(&format!("event: {}\ndata: {{\"type\"", e.name))
            );
        }
        let done: Value = serde_json::from_str(&stream.events.last().unwrap().data).unwrap();
        assert_eq!(done["response"]["usage"]["input_tokens"], 15);
        assert_eq!(done["response"]["output"][2]["call_id"], "call_1");
        assert_eq!(
            done["response"]["output"][2]["arguments"],
            "{\"command\":\"ls\"}"
        );
        assert_eq!(done["response"]["output"][1]["content"][0]["text"], "Hi");
    }

    #[test]
    fn responses_turns_group_calls() {
        let input = vec![
            json!({"role": "user", "content": "x"}),
            json!({"type": "message", "role": "assistant", "content": []}),
            json!({"type": "function_call", "call_id": "a"}),
            json!({"type": "function_call", "call_id": "b"}),
            json!({"type": "function_call_output", "call_id": "a"}),
            json!({"type": "reasoning"}),
            json!({"type": "function_call", "call_id": "c"}),
        ];
        assert_eq!(responses_assistant_turns(&input), 2);
    }
}
