//! Model providers: provider-neutral conversation types, the error taxonomy the
//! harness's retry loop and `session.error` events are built on, and the clients of
//! the three wire protocols ([`Wire`]): the Anthropic Messages API
//! ([`anthropic::AnthropicProvider`]) and OpenAI's Chat Completions and Responses APIs
//! ([`openai::OpenAiProvider`], also for compatible servers such as Ollama, vLLM and
//! OpenRouter), all on one transport (`http`, `sse`). [`registry`] turns the
//! `provider/model` names (built-ins and `[providers.NAME]`) into clients.

pub mod anthropic;
pub mod credentials;
pub mod http;
pub mod openai;
pub mod pricing;
pub mod registry;
pub mod retry;
mod sse;

pub use anthropic::{AnthropicProvider, request_body};
pub use openai::{OpenAiApi, OpenAiProvider};
pub use registry::{Provider, Providers};
pub use retry::RetryPolicy;

use std::time::Duration;

/// The three wire protocols, for code that works on bytes without a client
/// (benchmarks, tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Anthropic,
    Chat,
    Responses,
}

impl Wire {
    pub const ALL: [Wire; 3] = [Wire::Anthropic, Wire::Chat, Wire::Responses];

    pub fn name(self) -> &'static str {
        match self {
            Wire::Anthropic => "anthropic",
            Wire::Chat => "openai",
            Wire::Responses => "openai-responses",
        }
    }

    /// The request body bytes a client of this wire sends for `req`.
    pub fn request_bytes(self, req: &ModelRequest) -> Vec<u8> {
        let body = match self {
            Wire::Anthropic => request_body(req),
            Wire::Chat => openai::chat::request_body(req),
            Wire::Responses => openai::responses::request_body(req),
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Folds a complete SSE body (in network-sized chunks) the way a client does,
    /// SSE framing included.
    pub fn parse_stream(
        self,
        chunks: Vec<bytes::Bytes>,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ModelResponse, ProviderError> {
        match self {
            Wire::Anthropic => http::parse_body(chunks, &mut anthropic::parser(), on_event),
            Wire::Chat => http::parse_body(chunks, &mut *openai::parser(OpenAiApi::Chat), on_event),
            Wire::Responses => {
                http::parse_body(chunks, &mut *openai::parser(OpenAiApi::Responses), on_event)
            }
        }
    }
}

/// How a provider is named in messages for people: its API and the settings
/// that fix a bad key or URL. Never holds a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Who {
    /// `the Anthropic API`, `the OpenAI API`, `the \`ollama\` provider`.
    pub api: String,
    /// Where the key comes from, e.g. `ANTHROPIC_API_KEY`.
    pub key_var: String,
    /// Where the base URL comes from, e.g. `ANTHROPIC_BASE_URL`.
    pub base_url_var: String,
    /// A well-formed base URL to suggest.
    pub example_url: String,
}

impl Who {
    pub fn anthropic() -> Who {
        Who {
            api: "the Anthropic API".into(),
            key_var: "ANTHROPIC_API_KEY".into(),
            base_url_var: "ANTHROPIC_BASE_URL".into(),
            example_url: "https://api.anthropic.com".into(),
        }
    }

    pub fn openai() -> Who {
        Who {
            api: "the OpenAI API".into(),
            key_var: "OPENAI_API_KEY".into(),
            base_url_var: "OPENAI_BASE_URL".into(),
            example_url: "https://api.openai.com/v1".into(),
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    User,
    Assistant,
}

/// One conversation turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

impl Message {
    pub fn user(content: Vec<Part>) -> Self {
        Message {
            role: Role::User,
            content,
        }
    }

    pub fn assistant(content: Vec<Part>) -> Self {
        Message {
            role: Role::Assistant,
            content,
        }
    }

    /// A user message made of one text block.
    pub fn user_text(text: impl Into<String>) -> Self {
        Message::user(vec![Part::Text(text.into())])
    }
}

/// One content block of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// Extended thinking. Blocks without a signature are not sent back to the API
    /// (it rejects them).
    Thinking {
        thinking: String,
        signature: Option<String>,
    },
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        is_error: bool,
    },
}

/// A tool the model may call.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the tool's input object.
    pub input_schema: serde_json::Value,
}

/// One model request.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// Bare model id, e.g. `claude-sonnet-4-6`.
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    /// Extended thinking / reasoning: Anthropic's `budget_tokens`; the OpenAI APIs get a
    /// reasoning effort derived from it. `None`: the provider's default.
    pub thinking_budget: Option<u32>,
}

/// Anthropic's minimum thinking budget.
pub const MIN_THINKING_BUDGET: u32 = 1024;

/// The OpenAI reasoning effort for a thinking budget.
pub fn reasoning_effort(budget: u32) -> &'static str {
    match budget {
        0..4096 => "low",
        4096..16384 => "medium",
        _ => "high",
    }
}

/// What streams out while the response is written (for live display only).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    TextDelta {
        index: u32,
        text: String,
    },
    ThinkingDelta {
        index: u32,
        text: String,
    },
    ToolInputDelta {
        index: u32,
        name: String,
        partial_json: String,
    },
}

/// The complete assistant message.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelResponse {
    /// `Text`, `Thinking` and `ToolUse` parts in the model's block order.
    pub content: Vec<Part>,
    /// `end_turn`, `tool_use`, `max_tokens`, `stop_sequence`, `pause_turn`,
    /// `refusal`, ... as the API reported it.
    pub stop_reason: String,
    pub usage: tether_proto::ModelUsage,
}

/// Error kinds of [`ProviderError::Stream`] that tether itself produces (the
/// others are the `error.type` of an in-stream `error` event).
pub mod stream_kind {
    /// The stream ended (or the connection was closed) before `message_stop`.
    pub const TRUNCATED: &str = "truncated";
    /// The message of a [`TRUNCATED`] error (a `: cause` may follow).
    pub const TRUNCATED_MESSAGE: &str = "the model stream ended before message_stop";
    /// The stream carried something that is not a valid Messages API event.
    pub const MALFORMED: &str = "malformed";
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// HTTP error status with the provider's error envelope.
    #[error("HTTP {status} {kind}: {message}")]
    Status {
        status: u16,
        /// The envelope's `error.type`, e.g. `rate_limit_error`.
        kind: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Could not connect / connection reset / timeout before or during the response.
    #[error("transport error: {0}")]
    Transport(String),
    /// The stream was malformed, had an `error` event, or ended without `message_stop`.
    /// `kind` is the event's `error.type`, or [`stream_kind::TRUNCATED`] /
    /// [`stream_kind::MALFORMED`].
    #[error("stream error ({kind}): {message}")]
    Stream { kind: String, message: String },
    /// Missing API key or invalid configuration: never retried.
    #[error("configuration error: {0}")]
    Config(String),
    #[error("the model request was cancelled")]
    Cancelled,
}

/// Error types that mean "this exact request will fail again".
const PERMANENT_KINDS: &[&str] = &[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "billing_error",
];

impl ProviderError {
    /// Whether sending the same request again may succeed: 408, 409, 429, 5xx
    /// (incl. 529), `overloaded_error`, transport failures, truncated or malformed
    /// streams and retryable in-stream errors (`api_error`, `overloaded_error`).
    /// Never 400/401/402/403/404/413, configuration errors or cancellation.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Status { status, kind, .. } => {
                matches!(status, 408 | 409 | 429) || *status >= 500 || kind == "overloaded_error"
            }
            ProviderError::Transport(_) => true,
            ProviderError::Stream { kind, .. } => !PERMANENT_KINDS.contains(&kind.as_str()),
            ProviderError::Config(_) | ProviderError::Cancelled => false,
        }
    }

    /// The server's `retry-after` / `retry-after-ms`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The hosted API's `session.error` type for this failure.
    pub fn session_error_type(&self) -> &'static str {
        match self {
            ProviderError::Status { status, kind, .. } => {
                if *status == 429 || kind == "rate_limit_error" {
                    "model_rate_limited_error"
                } else if *status == 529 || kind == "overloaded_error" {
                    "model_overloaded_error"
                } else if *status == 402 || kind == "billing_error" {
                    "billing_error"
                } else {
                    "model_request_failed_error"
                }
            }
            ProviderError::Stream { kind, .. } => match kind.as_str() {
                "overloaded_error" => "model_overloaded_error",
                "rate_limit_error" => "model_rate_limited_error",
                "billing_error" => "billing_error",
                _ => "model_request_failed_error",
            },
            ProviderError::Transport(_) | ProviderError::Config(_) => "model_request_failed_error",
            ProviderError::Cancelled => "unknown_error",
        }
    }

    /// A 400 saying the conversation no longer fits in the context window.
    pub fn is_context_window_exceeded(&self) -> bool {
        match self {
            ProviderError::Status {
                status, message, ..
            } => {
                let lower = message.to_ascii_lowercase();
                (*status == 400 || *status == 413)
                    && (lower.contains("prompt is too long")
                        || lower.contains("context window")
                        || lower.contains("context length"))
            }
            _ => false,
        }
    }

    /// One sentence for a person, with the fix when there is one (Anthropic names).
    pub fn user_message(&self) -> String {
        self.describe(&Who::anthropic())
    }

    /// One sentence for a person naming `who`'s API, key and base-URL settings.
    pub fn describe(&self, who: &Who) -> String {
        let api = &who.api;
        let key_var = &who.key_var;
        let url_var = &who.base_url_var;
        match self {
            ProviderError::Status {
                status,
                kind,
                message,
                retry_after,
            } => {
                let message = shorten(message, 300);
                let code = format!("{status} {kind}");
                if self.is_context_window_exceeded() {
                    return format!(
                        "the conversation is too long for the model's context window \
                         ({code}: {message}): start a new session or shorten the conversation"
                    );
                }
                match (*status, kind.as_str()) {
                    (401, _) | (_, "authentication_error") => {
                        format!("{api} rejected the API key ({code}): check {key_var}")
                    }
                    (402, _) | (_, "billing_error") => format!(
                        "{api} refused the request for billing reasons ({code}: \
                         {message}): check the account's plan and credit balance"
                    ),
                    (403, _) | (_, "permission_error") => format!(
                        "the API key is not allowed to do this ({code}: {message}): check the \
                         key's workspace and permissions"
                    ),
                    (404, _) | (_, "not_found_error") => format!(
                        "{api} could not find what was asked for ({code}: {message}): \
                         check the model name and {url_var}"
                    ),
                    (413, _) | (_, "request_too_large") => format!(
                        "the request is too large for {api} ({code}: {message}): \
                         shorten the conversation or the tool outputs"
                    ),
                    (429, _) | (_, "rate_limit_error") => {
                        let wait = retry_after
                            .map(|d| format!(", it asks to wait {}", format_wait(d)))
                            .unwrap_or_default();
                        format!(
                            "{api} rate limit was hit ({code}: {message}){wait}: \
                             wait and try again, or raise the account's limits"
                        )
                    }
                    (529, _) | (_, "overloaded_error") => format!(
                        "{api} is overloaded right now ({code}): try again in a \
                         little while"
                    ),
                    (s, _) if s >= 500 => format!(
                        "{api} had a server error ({code}: {message}): try again \
                         in a little while"
                    ),
                    _ => format!("{api} rejected the request ({code}: {message})"),
                }
            }
            ProviderError::Transport(detail) => format!(
                "could not talk to {api} ({}): check the network connection and \
                 {url_var}",
                shorten(detail, 300)
            ),
            ProviderError::Stream { kind, message } => {
                let message = shorten(message, 300);
                match kind.as_str() {
                    stream_kind::TRUNCATED => {
                        let detail = message
                            .strip_prefix(stream_kind::TRUNCATED_MESSAGE)
                            .unwrap_or(&message)
                            .trim_start_matches(':')
                            .trim();
                        let detail = if detail.is_empty() {
                            String::new()
                        } else {
                            format!(" ({detail})")
                        };
                        format!(
                            "the connection to {api} was cut before the reply was \
                             complete{detail}: try again"
                        )
                    }
                    stream_kind::MALFORMED => format!(
                        "{api} sent a reply tether could not read ({message}): try \
                         again, and check {url_var} if it keeps happening"
                    ),
                    "overloaded_error" => format!(
                        "{api} became overloaded while replying ({kind}: {message}): \
                         try again in a little while"
                    ),
                    _ => format!("{api} reported an error while replying ({kind}: {message})"),
                }
            }
            ProviderError::Config(message) => message.clone(),
            ProviderError::Cancelled => "the model request was cancelled".to_string(),
        }
    }
}

fn format_wait(d: Duration) -> String {
    // Whole seconds read better than "1s 500ms" in a sentence.
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// `text` cut to at most `max` characters (on a char boundary), with an ellipsis.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, kind: &str, message: &str) -> ProviderError {
        ProviderError::Status {
            status,
            kind: kind.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    fn stream(kind: &str) -> ProviderError {
        ProviderError::Stream {
            kind: kind.into(),
            message: "x".into(),
        }
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 409, 429, 500, 502, 503, 504, 529] {
            assert!(status(s, "api_error", "x").is_retryable(), "{s}");
        }
        for (s, k) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
        ] {
            assert!(!status(s, k, "x").is_retryable(), "{s}");
        }
        assert!(status(400, "overloaded_error", "x").is_retryable());
    }

    #[test]
    fn retryable_others() {
        assert!(ProviderError::Transport("reset".into()).is_retryable());
        assert!(stream(stream_kind::TRUNCATED).is_retryable());
        assert!(stream(stream_kind::MALFORMED).is_retryable());
        assert!(stream("overloaded_error").is_retryable());
        assert!(stream("api_error").is_retryable());
        assert!(!stream("invalid_request_error").is_retryable());
        assert!(!ProviderError::Config("no key".into()).is_retryable());
        assert!(!ProviderError::Cancelled.is_retryable());
    }

    #[test]
    fn retry_after_only_from_status() {
        let e = ProviderError::Status {
            status: 429,
            kind: "rate_limit_error".into(),
            message: "slow".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(stream("overloaded_error").retry_after(), None);
    }

    #[test]
    fn session_error_types() {
        assert_eq!(
            status(429, "rate_limit_error", "x").session_error_type(),
            "model_rate_limited_error"
        );
        assert_eq!(
            status(529, "overloaded_error", "x").session_error_type(),
            "model_overloaded_error"
        );
        assert_eq!(
            stream("overloaded_error").session_error_type(),
            "model_overloaded_error"
        );
        assert_eq!(
            status(402, "billing_error", "x").session_error_type(),
            "billing_error"
        );
        assert_eq!(
            status(500, "api_error", "x").session_error_type(),
            "model_request_failed_error"
        );
        assert_eq!(
            ProviderError::Transport("x".into()).session_error_type(),
            "model_request_failed_error"
        );
        assert_eq!(
            ProviderError::Cancelled.session_error_type(),
            "unknown_error"
        );
    }

    #[test]
    fn user_messages() {
        assert_eq!(
            status(401, "authentication_error", "invalid x-api-key").user_message(),
            "the Anthropic API rejected the API key (401 authentication_error): check \
             ANTHROPIC_API_KEY"
        );
        let too_long = status(
            400,
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
        );
        assert!(too_long.is_context_window_exceeded());
        let m = too_long.user_message();
        assert!(m.contains("context window"), "{m}");
        assert!(m.contains("210000 tokens"), "{m}");
        let m = status(400, "invalid_request_error", "messages: bad").user_message();
        assert!(
            m.contains("400 invalid_request_error: messages: bad"),
            "{m}"
        );
        let m = ProviderError::Status {
            status: 429,
            kind: "rate_limit_error".into(),
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(1500)),
        }
        .user_message();
        assert!(m.contains("wait 2s"), "{m}");
        let m = status(529, "overloaded_error", "Overloaded").user_message();
        assert!(m.contains("overloaded"), "{m}");
        let m = ProviderError::Stream {
            kind: stream_kind::TRUNCATED.into(),
            message: format!("{}: unexpected EOF", stream_kind::TRUNCATED_MESSAGE),
        }
        .user_message();
        assert_eq!(
            m,
            "the connection to the Anthropic API was cut before the reply was complete \
             (unexpected EOF): try again"
        );
        let m = ProviderError::Config("no Anthropic API key: set ANTHROPIC_API_KEY".into())
            .user_message();
        assert_eq!(m, "no Anthropic API key: set ANTHROPIC_API_KEY");
    }

    #[test]
    fn shorten_cuts_on_char_boundary() {
        assert_eq!(shorten("héllo", 2), "hé…");
        assert_eq!(shorten("  hi  ", 2), "hi");
    }
}
