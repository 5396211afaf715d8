//! Clients for the OpenAI Chat Completions API (`POST {base}/chat/completions`,
//! also Ollama, vLLM, LM Studio, OpenRouter, LiteLLM) and the Responses API
//! (`POST {base}/responses`), both streaming. Transport is shared
//! ([`super::http`]); [`chat`] and [`responses`] map tether's conversation to each
//! wire format and fold each stream back into a [`ModelResponse`], with what the two
//! share in `common`.
//!
//! Mapping notes: tool-call ids are tether's own (`sevt_…` event ids), which both
//! APIs accept as opaque `call_id`s, so any history replays into either. Thinking
//! streams in (`reasoning_content`/`reasoning` deltas on Chat, reasoning summary
//! and text on Responses) as unsigned [`super::Part::Thinking`]; it is never sent back
//! (neither API accepts foreign reasoning), exactly like unsigned thinking on
//! Anthropic.

pub mod chat;
mod common;
pub mod responses;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio_util::sync::CancellationToken;

use super::http::{Endpoint, WireParser, sensitive_header};
use super::{ModelRequest, ModelResponse, ProviderError, StreamEvent, Who};

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
        let body = match self.api {
            OpenAiApi::Chat => chat::request_body,
            OpenAiApi::Responses => responses::request_body,
        };
        let checked_body = |req: &ModelRequest| {
            common::check_request(req)?;
            Ok(body(req))
        };
        self.endpoint
            .request(
                req,
                self.check_credentials(),
                checked_body,
                &mut *parser(self.api),
                cancel,
                on_event,
            )
            .await
    }
}

/// A fresh stream parser for `api`.
pub(crate) fn parser(api: OpenAiApi) -> Box<dyn WireParser> {
    match api {
        OpenAiApi::Chat => Box::<chat::ChatParser>::default(),
        OpenAiApi::Responses => Box::<responses::ResponsesParser>::default(),
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
    use serde_json::{Value, json};

    use super::super::{Message, Part, ToolSpec, stream_kind};
    use super::*;

    pub(super) fn request(messages: Vec<Message>) -> ModelRequest {
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

    pub(super) fn history() -> Vec<Message> {
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
        assert_eq!(requests[0].body, chat::request_body(&request(history())));
        assert_eq!(
            requests[1].body,
            responses::request_body(&request(history()))
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
