//! The Anthropic Messages wire format: SSE events, the non-streaming message
//! object and the error envelope. Pure data → bytes, no I/O.
//!
//! Serialisation goes through `#[derive(Serialize)]` structs rather than
//! `json!` so that keys come out in the same order as api.anthropic.com (`type`
//! first), independent of serde_json's `preserve_order` feature.

use serde::Serialize;
use serde_json::Value;

use crate::script::{Block, Usage};

/// A fully resolved assistant message: ids assigned, defaults filled in.
#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub id: String,
    pub model: String,
    pub blocks: Vec<Block>,
    pub stop_reason: String,
    pub usage: Usage,
}

/// One server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub name: &'static str,
    pub data: String,
}

impl SseEvent {
    fn new(event: &Event<'_>) -> SseEvent {
        SseEvent {
            name: event.name(),
            data: to_json(event),
        }
    }

    /// The real API sends its keep-alive ping with a space after the colon.
    fn ping() -> SseEvent {
        SseEvent {
            name: "ping",
            data: r#"{"type": "ping"}"#.to_string(),
        }
    }

    pub fn error(error_type: &str, message: &str) -> SseEvent {
        SseEvent {
            name: "error",
            data: error_envelope(error_type, message),
        }
    }

    /// A `data:`-only event (Chat Completions).
    pub fn data(data: String) -> SseEvent {
        SseEvent { name: "", data }
    }

    pub fn named(name: &'static str, data: String) -> SseEvent {
        SseEvent { name, data }
    }

    /// `event: <name>\ndata: <json>\n\n` (no `event:` line without a name).
    pub fn encode(&self) -> String {
        if self.name.is_empty() {
            format!("data: {}\n\n", self.data)
        } else {
            format!("event: {}\ndata: {}\n\n", self.name, self.data)
        }
    }
}

/// The complete event sequence of a streamed message.
pub(crate) struct EventStream {
    pub events: Vec<SseEvent>,
    /// Index just past the first non-empty delta of the first block (just past
    /// the `ping` when there are no blocks): where stalls and drops cut the stream.
    pub first_delta_end: usize,
}

impl Message {
    /// `message_start` + `ping`: the prefix every streamed reply begins with.
    pub fn start_events(&self) -> Vec<SseEvent> {
        // Like the real API, message_start reports the prompt and a token or so
        // of output; the final output count comes in message_delta.
        let usage = UsageJson {
            output_tokens: self.usage.output_tokens.min(1),
            ..UsageJson::from(self.usage)
        };
        let start = Event::MessageStart {
            message: MessageJson {
                id: &self.id,
                kind: "message",
                role: "assistant",
                content: Vec::new(),
                model: &self.model,
                stop_reason: None,
                stop_sequence: None,
                usage,
            },
        };
        vec![SseEvent::new(&start), SseEvent::ping()]
    }

    pub fn events(&self, chunk_chars: usize) -> EventStream {
        let mut events = self.start_events();
        let mut first_delta_end = events.len();
        for (index, block) in self.blocks.iter().enumerate() {
            let (block_events, prefix) = block_events(index, block, chunk_chars);
            if index == 0 {
                first_delta_end = events.len() + prefix;
            }
            events.extend(block_events);
        }
        events.push(SseEvent::new(&Event::MessageDelta {
            delta: StopDelta {
                stop_reason: &self.stop_reason,
                stop_sequence: None,
            },
            usage: OutputUsage {
                output_tokens: self.usage.output_tokens,
            },
        }));
        events.push(SseEvent::new(&Event::MessageStop));
        EventStream {
            events,
            first_delta_end,
        }
    }

    /// The whole message as one JSON object, for `"stream": false` requests.
    pub fn to_json(&self) -> String {
        to_json(&MessageJson {
            id: &self.id,
            kind: "message",
            role: "assistant",
            content: self.blocks.iter().map(BlockJson::full).collect(),
            model: &self.model,
            stop_reason: Some(&self.stop_reason),
            stop_sequence: None,
            usage: UsageJson::from(self.usage),
        })
    }
}

/// `content_block_start`, the deltas and `content_block_stop` of one block, plus
/// the length of its prefix up to and including the first non-empty delta.
fn block_events(index: usize, block: &Block, chunk_chars: usize) -> (Vec<SseEvent>, usize) {
    let empty_input = Value::Object(serde_json::Map::new());
    let json: String;
    let (start, deltas): (BlockJson<'_>, Vec<Delta<'_>>) = match block {
        Block::Text { text } => (
            BlockJson::Text { text: "" },
            split_chars(text, chunk_chars)
                .map(|text| Delta::Text { text })
                .collect(),
        ),
        Block::ToolUse { id, name, input } => {
            json = to_json(input);
            (
                BlockJson::ToolUse {
                    id: id.as_deref().unwrap_or_default(),
                    name,
                    input: &empty_input,
                },
                // The real API opens every tool input with an empty fragment.
                std::iter::once("")
                    .chain(split_chars(&json, chunk_chars))
                    .map(|partial_json| Delta::InputJson { partial_json })
                    .collect(),
            )
        }
        Block::Thinking {
            thinking,
            signature,
        } => (
            BlockJson::Thinking {
                thinking: "",
                signature: "",
            },
            split_chars(thinking, chunk_chars)
                .map(|thinking| Delta::Thinking { thinking })
                .chain(std::iter::once(Delta::Signature { signature }))
                .collect(),
        ),
    };
    let prefix = 1 + deltas
        .iter()
        .position(|d| !d.is_empty())
        .map_or(deltas.len(), |i| i + 1);
    let mut events = vec![SseEvent::new(&Event::ContentBlockStart {
        index,
        content_block: start,
    })];
    events.extend(
        deltas
            .into_iter()
            .map(|delta| SseEvent::new(&Event::ContentBlockDelta { index, delta })),
    );
    events.push(SseEvent::new(&Event::ContentBlockStop { index }));
    (events, prefix)
}

/// `{"type":"error","error":{"type":…,"message":…}}`
pub(crate) fn error_envelope(error_type: &str, message: &str) -> String {
    to_json(&Event::Error {
        error: ErrorJson {
            kind: error_type,
            message,
        },
    })
}

/// Splits `s` into pieces of `n` characters (never inside a UTF-8 sequence).
/// `n == 0` or an empty string yields the whole string as the only piece.
fn split_chars(s: &str, n: usize) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let current = rest?;
        let cut = match n {
            0 => None,
            n => current.char_indices().nth(n).map(|(i, _)| i),
        };
        match cut {
            Some(i) => {
                let (piece, tail) = current.split_at(i);
                rest = Some(tail);
                Some(piece)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Cannot fail: only structs, strings, numbers and `Value`s with string keys.
    serde_json::to_string(value).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: MessageJson<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: BlockJson<'a>,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: StopDelta<'a>,
        usage: OutputUsage,
    },
    MessageStop,
    Error {
        error: ErrorJson<'a>,
    },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
            Event::Error { .. } => "error",
        }
    }
}

#[derive(Serialize)]
struct MessageJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: Vec<BlockJson<'a>>,
    model: &'a str,
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    usage: UsageJson,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockJson<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
}

impl<'a> BlockJson<'a> {
    fn full(block: &'a Block) -> BlockJson<'a> {
        match block {
            Block::Text { text } => BlockJson::Text { text },
            Block::ToolUse { id, name, input } => BlockJson::ToolUse {
                id: id.as_deref().unwrap_or_default(),
                name,
                input,
            },
            Block::Thinking {
                thinking,
                signature,
            } => BlockJson::Thinking {
                thinking,
                signature,
            },
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

impl Delta<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Delta::Text { text: s }
            | Delta::InputJson { partial_json: s }
            | Delta::Thinking { thinking: s }
            | Delta::Signature { signature: s } => s.is_empty(),
        }
    }
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
}

/// Field order as the real API sends it.
#[derive(Serialize)]
struct UsageJson {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

impl From<Usage> for UsageJson {
    fn from(u: Usage) -> Self {
        UsageJson {
            input_tokens: u.input_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            output_tokens: u.output_tokens,
        }
    }
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: u64,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_chars_respects_char_boundaries() {
        let pieces: Vec<&str> = split_chars("añb✓c🎉", 2).collect();
        assert_eq!(pieces, ["añ", "b✓", "c🎉"]);
        assert_eq!(split_chars("", 4).collect::<Vec<_>>(), [""]);
        assert_eq!(split_chars("abc", 0).collect::<Vec<_>>(), ["abc"]);
        assert_eq!(split_chars("abcd", 4).collect::<Vec<_>>(), ["abcd"]);
    }

    #[test]
    fn stall_point_skips_the_empty_json_fragment() {
        let message = Message {
            id: "msg_x".into(),
            model: "m".into(),
            blocks: vec![Block::tool_use("bash", serde_json::json!({"a": 1}))],
            stop_reason: "tool_use".into(),
            usage: Usage::default(),
        };
        let stream = message.events(16);
        let cut = &stream.events[stream.first_delta_end - 1];
        assert_eq!(cut.name, "content_block_delta");
        assert!(
            cut.data.contains(r#""partial_json":"{\"a\":1}""#),
            "{}",
            cut.data
        );
    }
}
