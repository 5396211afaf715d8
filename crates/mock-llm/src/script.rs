//! The scenario a [`crate::MockServer`] plays: which reply each request gets and
//! how fast it is streamed. Everything here is plain data so scripts can live in
//! JSON files (see the crate docs for the shape).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A scripted conversation: an ordered list of replies plus how they are picked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub mode: ScriptMode,
    pub replies: Vec<Reply>,
    #[serde(default)]
    pub timing: Timing,
    /// The reply to requests that offer no tools (other agents' title generation, quota
    /// probes, summaries), so they don't consume a scripted turn. `None`: every request plays
    /// the script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_reply: Option<Reply>,
    /// Sub-scripts for requests from another context (a grader, a sub-agent, a workflow
    /// task): the first route whose conditions all hold answers the request from its own
    /// replies, in order, and the main script's position does not move.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

/// Requests a [`Route`] answers: every condition set must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// For messages about the route (`mock route "grader" exhausted`).
    pub name: String,
    /// The request offers a tool of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_tool: Option<String>,
    /// The request's system prompt contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_system: Option<String>,
    /// The request's `model` is exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_model: Option<String>,
    /// The k-th request this route answers gets `replies[k]`; with `by_turn`, a request with
    /// k assistant messages does (stateless, so concurrent conversations on one route, such
    /// as many sub-agent threads, each get their own sequence).
    pub replies: Vec<Reply>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_turn: bool,
}

impl Route {
    pub fn new(name: impl Into<String>, replies: Vec<Reply>) -> Route {
        Route {
            name: name.into(),
            replies,
            ..Route::default()
        }
    }

    pub fn when_tool(mut self, tool: impl Into<String>) -> Route {
        self.when_tool = Some(tool.into());
        self
    }

    pub fn when_system(mut self, text: impl Into<String>) -> Route {
        self.when_system = Some(text.into());
        self
    }

    pub fn when_model(mut self, model: impl Into<String>) -> Route {
        self.when_model = Some(model.into());
        self
    }

    /// Picks replies by the request's number of assistant messages, not by arrival order.
    pub fn by_turn(mut self) -> Route {
        self.by_turn = true;
        self
    }

    fn matches(&self, body: &Value) -> bool {
        self.when_tool
            .as_ref()
            .is_none_or(|t| offered_tool_names(body).any(|n| n == t))
            && self
                .when_system
                .as_ref()
                .is_none_or(|t| system_text(body).contains(t.as_str()))
            && self
                .when_model
                .as_ref()
                .is_none_or(|m| body.get("model").and_then(Value::as_str) == Some(m.as_str()))
    }
}

/// How a request is mapped to an entry of [`Script::replies`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptMode {
    /// The k-th `/v1/messages` request the server receives (0-based, across all
    /// connections) gets `replies[k]`.
    Sequential,
    /// Stateless: the reply index is the number of `role: "assistant"` entries in
    /// the request's `messages`, so any number of concurrent sessions can run the
    /// same scenario.
    ByTurn,
}

/// Streaming pace. All delays are zero by default so tests run at full speed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// Delay between sending the response head and the first byte of the body.
    pub ttft_ms: u64,
    /// Delay between consecutive SSE events.
    pub chunk_delay_ms: u64,
    /// Characters per `text_delta` / `thinking_delta` / `input_json_delta`;
    /// 0 sends each block's content in a single delta.
    pub chunk_chars: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ttft_ms: 0,
            chunk_delay_ms: 0,
            chunk_chars: 16,
        }
    }
}

/// What the server does with one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// A complete, successful assistant message.
    Message {
        blocks: Vec<Block>,
        /// Defaults to `"tool_use"` when any block is a tool call, else `"end_turn"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_reason: Option<String>,
        /// Defaults to estimates from the request size and the reply content.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    /// A non-200 response carrying the Anthropic error envelope.
    Error {
        status: u16,
        error_type: String,
        message: String,
        /// Sent as a `retry-after` header (seconds) when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    /// Streams `message_start` and the first delta of the first block, then sends
    /// nothing until [`crate::MockServer::release_stalls`] is called (or the client
    /// goes away), after which the message completes normally.
    Stall { blocks: Vec<Block> },
    /// Streams `message_start` and the first delta, then closes the TCP connection
    /// without finishing the HTTP body or sending `message_stop`.
    DropMidStream { blocks: Vec<Block> },
    /// A 200 event stream whose payload is not valid JSON, then connection close.
    Malformed,
    /// `message_start`, then an `event: error` carrying the envelope, then close.
    MidStreamError { error_type: String, message: String },
}

/// One content block of an assistant message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Block {
    Text {
        text: String,
    },
    ToolUse {
        /// Generated (`toolu_01mock…`, unique per server) when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        name: String,
        #[serde(default = "empty_object")]
        input: Value,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Token accounting reported in `message_start` / `message_delta`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
}

impl Script {
    pub fn sequential(replies: Vec<Reply>) -> Script {
        Script {
            mode: ScriptMode::Sequential,
            replies,
            timing: Timing::default(),
            side_reply: None,
            routes: Vec::new(),
        }
    }

    pub fn by_turn(replies: Vec<Reply>) -> Script {
        Script {
            mode: ScriptMode::ByTurn,
            replies,
            timing: Timing::default(),
            side_reply: None,
            routes: Vec::new(),
        }
    }

    pub fn with_timing(mut self, timing: Timing) -> Script {
        self.timing = timing;
        self
    }

    /// Answers requests that offer no tools with `reply` instead of a scripted turn.
    pub fn with_side_reply(mut self, reply: Reply) -> Script {
        self.side_reply = Some(reply);
        self
    }

    /// Adds a sub-script for requests matching `route` (see [`Route`]).
    pub fn with_route(mut self, route: Route) -> Script {
        self.routes.push(route);
        self
    }

    /// The index of the route that answers this request, if any.
    pub fn route_for(&self, body: &Value) -> Option<usize> {
        self.routes.iter().position(|r| r.matches(body))
    }

    /// Picks the reply for a model request. `route` is [`Script::route_for`] of the body and
    /// `sequence` the request's 0-based position among the requests of that route (or, with
    /// no route, among those of the main script). The error is the message the server
    /// reports (as a 500 `api_error`) when the script has run out.
    pub fn pick(
        &self,
        route: Option<usize>,
        sequence: usize,
        body: &Value,
    ) -> Result<&Reply, String> {
        if let Some(r) = route.and_then(|i| self.routes.get(i)) {
            let index = if r.by_turn {
                assistant_turns(body)
            } else {
                sequence
            };
            return r.replies.get(index).ok_or_else(|| {
                format!(
                    "mock route \"{}\" exhausted: got its request #{} but it has {} replies{}",
                    r.name,
                    index + 1,
                    r.replies.len(),
                    if r.by_turn { " (by_turn)" } else { "" }
                )
            });
        }
        if let Some(side) = &self.side_reply
            && !offers_tools(body)
        {
            return Ok(side);
        }
        let (index, detail) = match self.mode {
            ScriptMode::Sequential => (sequence, String::new()),
            ScriptMode::ByTurn => {
                let turns = assistant_turns(body);
                (
                    turns,
                    format!(" (by_turn: the request has {turns} assistant messages)"),
                )
            }
        };
        self.replies.get(index).ok_or_else(|| {
            format!(
                "mock script exhausted: got request #{} but the script has {} replies{detail}",
                sequence + 1,
                self.replies.len()
            )
        })
    }
}

/// Whether the request lists any tool (all three APIs call the list `tools`).
pub fn offers_tools(body: &Value) -> bool {
    body.get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| !tools.is_empty())
}

/// Names of the tools a request offers: Anthropic and Responses `tools[].name`, Chat
/// Completions `tools[].function.name`.
fn offered_tool_names(body: &Value) -> impl Iterator<Item = &str> {
    body.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.get("name")
                .or_else(|| t.get("function").and_then(|f| f.get("name")))
                .and_then(Value::as_str)
        })
}

/// The system prompt in any of the three APIs: Anthropic `system` (a string or text
/// blocks), Responses `instructions`, Chat Completions `system`/`developer` messages.
fn system_text(body: &Value) -> String {
    fn text_of(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
    let mut out = String::new();
    for key in ["system", "instructions"] {
        if let Some(v) = body.get(key) {
            out.push_str(&text_of(v));
        }
    }
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").and_then(Value::as_str);
        if matches!(role, Some("system" | "developer"))
            && let Some(c) = m.get("content")
        {
            out.push_str(&text_of(c));
        }
    }
    out
}

/// Number of assistant turns in the request: `role: "assistant"` entries of
/// `messages` (Anthropic, Chat Completions) or assistant groups of a Responses `input`.
fn assistant_turns(body: &Value) -> usize {
    if let Some(input) = body.get("input").and_then(Value::as_array) {
        return crate::openai_wire::responses_assistant_turns(input);
    }
    body.get("messages")
        .and_then(Value::as_array)
        .map_or(0, |messages| {
            messages
                .iter()
                .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
                .count()
        })
}

impl Reply {
    /// A message made of the given blocks, with default stop reason and usage.
    pub fn message(blocks: Vec<Block>) -> Reply {
        Reply::Message {
            blocks,
            stop_reason: None,
            usage: None,
        }
    }

    /// A plain text answer (`end_turn`).
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::message(vec![Block::text(text)])
    }

    /// A single tool call (`tool_use`).
    pub fn tool_use(name: impl Into<String>, input: Value) -> Reply {
        Reply::message(vec![Block::tool_use(name, input)])
    }

    /// Several tool calls in one message, e.g. `Reply::tools(vec![("bash", json!({..})), ..])`.
    pub fn tools<N: Into<String>>(calls: Vec<(N, Value)>) -> Reply {
        Reply::message(
            calls
                .into_iter()
                .map(|(name, input)| Block::tool_use(name, input))
                .collect(),
        )
    }

    pub fn error(status: u16, error_type: impl Into<String>, message: impl Into<String>) -> Reply {
        Reply::Error {
            status,
            error_type: error_type.into(),
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 429 `rate_limit_error` with a `retry-after` header.
    pub fn rate_limited(retry_after_secs: u64) -> Reply {
        Reply::Error {
            status: 429,
            error_type: "rate_limit_error".into(),
            message: "Number of request tokens has exceeded your per-minute rate limit".into(),
            retry_after_secs: Some(retry_after_secs),
        }
    }

    /// 529 `overloaded_error`, as the real API sends under load.
    pub fn overloaded() -> Reply {
        Reply::error(529, "overloaded_error", "Overloaded")
    }

    pub fn stall(blocks: Vec<Block>) -> Reply {
        Reply::Stall { blocks }
    }

    pub fn drop_mid_stream(blocks: Vec<Block>) -> Reply {
        Reply::DropMidStream { blocks }
    }

    pub fn mid_stream_error(error_type: impl Into<String>, message: impl Into<String>) -> Reply {
        Reply::MidStreamError {
            error_type: error_type.into(),
            message: message.into(),
        }
    }

    /// Overrides the stop reason; only meaningful for [`Reply::Message`], other
    /// variants are returned unchanged.
    pub fn with_stop_reason(mut self, reason: impl Into<String>) -> Reply {
        if let Reply::Message { stop_reason, .. } = &mut self {
            *stop_reason = Some(reason.into());
        }
        self
    }

    /// Overrides the reported usage; only meaningful for [`Reply::Message`], other
    /// variants are returned unchanged.
    pub fn with_usage(mut self, value: Usage) -> Reply {
        if let Reply::Message { usage, .. } = &mut self {
            *usage = Some(value);
        }
        self
    }
}

impl Block {
    pub fn text(text: impl Into<String>) -> Block {
        Block::Text { text: text.into() }
    }

    pub fn tool_use(name: impl Into<String>, input: Value) -> Block {
        Block::ToolUse {
            id: None,
            name: name.into(),
            input,
        }
    }

    pub fn thinking(thinking: impl Into<String>, signature: impl Into<String>) -> Block {
        Block::Thinking {
            thinking: thinking.into(),
            signature: signature.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn side_reply_answers_tool_less_requests_without_using_a_turn() {
        let script = Script::by_turn(vec![Reply::tool_use("bash", json!({}))])
            .with_side_reply(Reply::text("title"));
        let title = json!({"messages": [{"role": "user", "content": "name this"}]});
        let turn = json!({"messages": [], "tools": [{"name": "bash"}]});
        assert_eq!(script.pick(None, 0, &title), Ok(&Reply::text("title")));
        assert_eq!(
            script.pick(None, 1, &turn),
            Ok(&Reply::tool_use("bash", json!({})))
        );
        // Without a side reply the tool-less request plays the script.
        let plain = Script::by_turn(vec![Reply::text("a")]);
        assert_eq!(plain.pick(None, 0, &title), Ok(&Reply::text("a")));
    }

    #[test]
    fn a_by_turn_route_answers_each_conversation_by_its_own_turn() {
        let script = Script::sequential(vec![]).with_route(
            Route::new("child", vec![Reply::text("first"), Reply::text("second")])
                .when_system("child")
                .by_turn(),
        );
        let at = |turns: usize| {
            let mut messages = vec![json!({"role": "user", "content": "go"})];
            for _ in 0..turns {
                messages.push(json!({"role": "assistant", "content": "x"}));
                messages.push(json!({"role": "user", "content": "more"}));
            }
            json!({"system": "you are a child", "messages": messages})
        };
        let route = script.route_for(&at(0));
        assert_eq!(route, Some(0));
        // Arrival order (the sequence) does not matter; the conversation's turn does.
        assert_eq!(script.pick(route, 5, &at(0)), Ok(&Reply::text("first")));
        assert_eq!(script.pick(route, 0, &at(1)), Ok(&Reply::text("second")));
        let exhausted = script.pick(route, 0, &at(2)).unwrap_err();
        assert!(exhausted.contains("by_turn"), "{exhausted}");
    }

    #[test]
    fn script_json_round_trips() {
        let script = Script::by_turn(vec![
            Reply::message(vec![
                Block::thinking("hmm", "sig"),
                Block::text("running it"),
                Block::ToolUse {
                    id: Some("toolu_x".into()),
                    name: "bash".into(),
                    input: json!({"command": "ls"}),
                },
            ])
            .with_stop_reason("tool_use"),
            Reply::rate_limited(2),
            Reply::stall(vec![Block::text("slow")]),
            Reply::drop_mid_stream(vec![Block::text("cut")]),
            Reply::Malformed,
            Reply::mid_stream_error("overloaded_error", "Overloaded"),
        ]);
        let text = serde_json::to_string(&script).unwrap();
        let back: Script = serde_json::from_str(&text).unwrap();
        assert_eq!(back, script);
    }

    #[test]
    fn minimal_json_uses_defaults() {
        let script: Script = serde_json::from_value(json!({
            "mode": "sequential",
            "replies": [
                {"type": "message", "blocks": [{"type": "tool_use", "name": "read"}]},
                {"type": "malformed"}
            ]
        }))
        .unwrap();
        assert_eq!(script.timing, Timing::default());
        assert_eq!(script.replies[0], Reply::tool_use("read", json!({})));
    }

    #[test]
    fn typos_are_rejected() {
        let err = serde_json::from_value::<Script>(json!({
            "mode": "sequential",
            "replies": [{"type": "message", "blocks": [], "stop_reasons": "end_turn"}]
        }))
        .unwrap_err();
        assert!(err.to_string().contains("stop_reasons"), "{err}");
    }

    #[test]
    fn by_turn_counts_assistant_messages() {
        let script = Script::by_turn(vec![Reply::text("a"), Reply::text("b")]);
        let body = json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "y"},
            {"role": "user", "content": "z"},
        ]});
        assert_eq!(script.pick(None, 7, &body), Ok(&Reply::text("b")));
        let body = json!({"messages": [{"role": "assistant"}, {"role": "assistant"}]});
        assert_eq!(
            script.pick(None, 0, &body),
            Err(
                "mock script exhausted: got request #1 but the script has 2 replies \
                 (by_turn: the request has 2 assistant messages)"
                    .to_string()
            )
        );
    }

    #[test]
    fn routes_answer_their_requests_from_their_own_replies() {
        let script = Script::sequential(vec![Reply::text("main 0"), Reply::text("main 1")])
            .with_route(
                Route::new("grader", vec![Reply::text("g0")]).when_tool("submit_evaluation"),
            )
            .with_route(
                Route::new("sub", vec![Reply::text("s0")])
                    .when_system("You are a sub-agent")
                    .when_model("small"),
            );
        let grader = json!({"tools": [{"name": "read"}, {"name": "submit_evaluation"}]});
        assert_eq!(script.route_for(&grader), Some(0));
        assert_eq!(script.pick(Some(0), 0, &grader), Ok(&Reply::text("g0")));
        assert_eq!(
            script.pick(Some(0), 1, &grader),
            Err(
                "mock route \"grader\" exhausted: got its request #2 but it has 1 replies"
                    .to_string()
            )
        );
        // Chat Completions names tools under `function`; the system prompt is a message.
        let chat =
            json!({"tools": [{"type": "function", "function": {"name": "submit_evaluation"}}]});
        assert_eq!(script.route_for(&chat), Some(0));
        // Every condition must hold.
        let sub =
            json!({"model": "small", "system": [{"type": "text", "text": "You are a sub-agent."}]});
        assert_eq!(script.route_for(&sub), Some(1));
        let other_model = json!({"model": "big", "system": "You are a sub-agent."});
        assert_eq!(script.route_for(&other_model), None);
        let responses = json!({"model": "small", "instructions": "You are a sub-agent"});
        assert_eq!(script.route_for(&responses), Some(1));
        let chat_sys = json!({"model": "small", "messages": [{"role": "system", "content": "You are a sub-agent"}]});
        assert_eq!(script.route_for(&chat_sys), Some(1));
        assert_eq!(
            script.pick(None, 1, &other_model),
            Ok(&Reply::text("main 1"))
        );
    }
}
