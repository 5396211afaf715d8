//! Plays one scripted [`Reply`] onto a connection: picks status and headers,
//! paces the SSE events, and implements the failure modes (stall, drop,
//! malformed, mid-stream error).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::http::Conn;
use crate::openai_wire::{self, Chat, Responses};
use crate::script::{Block, Reply, Timing, Usage};
use crate::wire::{EventStream, Message, SseEvent, error_envelope};

/// Which API a request was made to (by path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages, `POST /v1/messages`.
    Messages,
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    Chat,
    /// OpenAI Responses, `POST /v1/responses`.
    Responses,
}

impl Api {
    pub fn from_path(path: &str) -> Option<Api> {
        match path {
            "/v1/messages" => Some(Api::Messages),
            "/v1/chat/completions" => Some(Api::Chat),
            "/v1/responses" => Some(Api::Responses),
            _ => None,
        }
    }
}

/// The complete SSE body the server streams for a message of `blocks` on `api`
/// (fixed ids and timestamp), for benchmarks and parser tests.
pub fn render_stream(api: Api, blocks: Vec<Block>, usage: Usage, chunk_chars: usize) -> String {
    let has_tool_use = blocks.iter().any(|b| matches!(b, Block::ToolUse { .. }));
    let message = Message {
        id: "msg_render".to_string(),
        model: "mock".to_string(),
        blocks,
        stop_reason: if has_tool_use { "tool_use" } else { "end_turn" }.to_string(),
        usage,
    };
    let stream = match api {
        Api::Messages => message.events(chunk_chars),
        Api::Chat => Chat {
            message: &message,
            created: 0,
        }
        .events(chunk_chars, true),
        Api::Responses => Responses {
            message: &message,
            created: 0,
        }
        .events(chunk_chars),
    };
    stream.events.iter().map(SseEvent::encode).collect()
}

/// What the connection should do once the reply has been sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    KeepAlive,
    Close,
}

/// Per-server counters behind the generated `msg_`, `toolu_` and `req_` ids.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    messages: AtomicU64,
    tools: AtomicU64,
    requests: AtomicU64,
}

impl Ids {
    // Same length as real ids (prefix + 24 characters), recognisably fake.
    fn next(counter: &AtomicU64, prefix: &str) -> String {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{prefix}_01mock{n:018}")
    }

    pub fn message(&self, api: Api) -> String {
        let prefix = match api {
            Api::Messages => "msg",
            Api::Chat => "chatcmpl",
            Api::Responses => "resp",
        };
        Ids::next(&self.messages, prefix)
    }

    pub fn tool(&self, api: Api) -> String {
        let prefix = match api {
            Api::Messages => "toolu",
            Api::Chat | Api::Responses => "call",
        };
        Ids::next(&self.tools, prefix)
    }

    pub fn request(&self) -> String {
        Ids::next(&self.requests, "req")
    }
}

/// What the player needs to know about the request being answered.
pub(crate) struct RequestInfo {
    /// Subscribed when the request arrived, so any `release_stalls` call made
    /// after that point releases this reply.
    pub release: watch::Receiver<u64>,
    /// Echoed in the message object.
    pub model: String,
    /// The body asked for `"stream": true`.
    pub streaming: bool,
    /// Size of the request body, for the default `input_tokens`.
    pub body_bytes: usize,
    /// The client sent `Connection: close`.
    pub client_close: bool,
    pub api: Api,
    /// Chat Completions: `stream_options.include_usage` was set.
    pub include_usage: bool,
}

/// One request/response exchange on a connection.
pub(crate) struct Exchange<'a> {
    conn: &'a mut Conn,
    ids: &'a Ids,
    timing: &'a Timing,
    request: RequestInfo,
    request_id: String,
    /// Body events written so far; every event after the first is paced.
    events_sent: usize,
}

impl<'a> Exchange<'a> {
    pub fn new(
        conn: &'a mut Conn,
        ids: &'a Ids,
        timing: &'a Timing,
        request: RequestInfo,
    ) -> Exchange<'a> {
        Exchange {
            conn,
            ids,
            timing,
            request,
            request_id: ids.request(),
            events_sent: 0,
        }
    }

    pub async fn play(&mut self, reply: &Reply) -> io::Result<After> {
        match reply {
            Reply::Message {
                blocks,
                stop_reason,
                usage,
            } => {
                let message = self.message(blocks, stop_reason.as_deref(), *usage);
                self.complete_message(&message).await
            }
            Reply::Error {
                status,
                error_type,
                message,
                retry_after_secs,
            } => {
                self.error(*status, error_type, message, *retry_after_secs, false)
                    .await
            }
            Reply::Stall { blocks } => self.stall(blocks).await,
            Reply::DropMidStream { blocks } => self.drop_mid_stream(blocks).await,
            Reply::Malformed => self.malformed().await,
            Reply::MidStreamError {
                error_type,
                message,
            } => self.mid_stream_error(error_type, message).await,
        }
    }

    async fn complete_message(&mut self, message: &Message) -> io::Result<After> {
        if !self.request.streaming {
            return self.json_message(message).await;
        }
        self.open_stream(false).await?;
        self.send_events(&self.stream_of(message).events).await?;
        self.end_stream().await
    }

    fn created() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Every event of `message` in this request's wire format.
    fn stream_of(&self, message: &Message) -> EventStream {
        let chunk_chars = self.timing.chunk_chars;
        match self.request.api {
            Api::Messages => message.events(chunk_chars),
            Api::Chat => Chat {
                message,
                created: Self::created(),
            }
            .events(chunk_chars, self.request.include_usage),
            Api::Responses => Responses {
                message,
                created: Self::created(),
            }
            .events(chunk_chars),
        }
    }

    /// The events every streamed reply of this API begins with.
    fn start_of(&self, message: &Message) -> Vec<SseEvent> {
        match self.request.api {
            Api::Messages => message.start_events(),
            Api::Chat => Chat {
                message,
                created: Self::created(),
            }
            .start_events(),
            Api::Responses => Responses {
                message,
                created: Self::created(),
            }
            .start_events(),
        }
    }

    async fn stall(&mut self, blocks: &[Block]) -> io::Result<After> {
        let message = self.message(blocks, None, None);
        if !self.request.streaming {
            if !self.wait_for_release().await {
                return Ok(After::Close);
            }
            return self.json_message(&message).await;
        }
        let stream = self.stream_of(&message);
        let (before, after) = stream.events.split_at(stream.first_delta_end);
        self.open_stream(false).await?;
        self.send_events(before).await?;
        if !self.wait_for_release().await {
            return Ok(After::Close);
        }
        self.send_events(after).await?;
        self.end_stream().await
    }

    async fn drop_mid_stream(&mut self, blocks: &[Block]) -> io::Result<After> {
        // Without a streaming body to cut, dropping before any response is the
        // closest equivalent.
        if self.request.streaming {
            let message = self.message(blocks, None, None);
            let stream = self.stream_of(&message);
            self.open_stream(false).await?;
            self.send_events(&stream.events[..stream.first_delta_end])
                .await?;
        }
        // No terminating chunk: the client sees the body end early.
        Ok(After::Close)
    }

    async fn malformed(&mut self) -> io::Result<After> {
        let message = self.message(&[], None, None);
        if !self.request.streaming {
            let truncated = format!(r#"{{"id":"{}","type":"message","#, message.id);
            let request_id = self.request_id.clone();
            let headers = json_headers(&request_id, true);
            self.conn
                .write_response(200, &headers, truncated.as_bytes())
                .await?;
            return Ok(After::Close);
        }
        self.open_stream(true).await?;
        self.send_events(&self.start_of(&message)).await?;
        self.send_raw("data: {not json\n\n").await?;
        self.send_raw(
            "event: content_block_delta\n\
             data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":",
        )
        .await?;
        // The HTTP body itself ends cleanly: only the SSE payload is broken.
        self.conn.finish_chunked().await?;
        Ok(After::Close)
    }

    async fn mid_stream_error(&mut self, error_type: &str, text: &str) -> io::Result<After> {
        if !self.request.streaming {
            return self
                .error(status_for(error_type), error_type, text, None, true)
                .await;
        }
        let message = self.message(&[], None, None);
        self.open_stream(true).await?;
        let start = self.start_of(&message);
        let error = match self.request.api {
            Api::Messages => SseEvent::error(error_type, text),
            Api::Chat => Chat::error_event(error_type, text),
            Api::Responses => Responses::error_event(error_type, text, start.len()),
        };
        self.send_events(&start).await?;
        self.send_events(&[error]).await?;
        self.conn.finish_chunked().await?;
        Ok(After::Close)
    }

    /// An error envelope response (also used by the server for 400/404/500s).
    pub async fn error(
        &mut self,
        status: u16,
        error_type: &str,
        message: &str,
        retry_after_secs: Option<u64>,
        close: bool,
    ) -> io::Result<After> {
        let retry_after = retry_after_secs.map(|s| s.to_string());
        let request_id = self.request_id.clone();
        let mut headers = json_headers(&request_id, self.closing(close));
        if let Some(secs) = &retry_after {
            headers.push(("retry-after", secs));
        }
        let body = match self.request.api {
            Api::Messages => error_envelope(error_type, message),
            Api::Chat | Api::Responses => openai_wire::error_envelope(error_type, message),
        };
        self.conn
            .write_response(status, &headers, body.as_bytes())
            .await?;
        Ok(self.after(close))
    }

    /// Resolves a scripted message: generated ids, default stop reason and usage.
    fn message(
        &self,
        blocks: &[Block],
        stop_reason: Option<&str>,
        usage: Option<Usage>,
    ) -> Message {
        let blocks: Vec<Block> = blocks
            .iter()
            .cloned()
            .map(|block| match block {
                Block::ToolUse {
                    id: None,
                    name,
                    input,
                } => Block::ToolUse {
                    id: Some(self.ids.tool(self.request.api)),
                    name,
                    input,
                },
                other => other,
            })
            .collect();
        let has_tool_use = blocks.iter().any(|b| matches!(b, Block::ToolUse { .. }));
        let stop_reason = stop_reason
            .unwrap_or(if has_tool_use { "tool_use" } else { "end_turn" })
            .to_string();
        let usage = usage.unwrap_or_else(|| Usage {
            input_tokens: estimate_tokens(self.request.body_bytes),
            output_tokens: estimate_tokens(blocks.iter().map(content_len).sum()),
            ..Usage::default()
        });
        Message {
            id: self.ids.message(self.request.api),
            model: self.request.model.clone(),
            blocks,
            stop_reason,
            usage,
        }
    }

    async fn json_message(&mut self, message: &Message) -> io::Result<After> {
        if self.request.api != Api::Messages {
            let text = "tether-mock-llm answers the OpenAI APIs only when streaming: send \"stream\": true";
            return self
                .error(400, "invalid_request_error", text, None, false)
                .await;
        }
        let request_id = self.request_id.clone();
        let headers = json_headers(&request_id, self.closing(false));
        self.conn
            .write_response(200, &headers, message.to_json().as_bytes())
            .await?;
        Ok(self.after(false))
    }

    /// Whether this response ends the connection (asked by the reply or the client).
    fn closing(&self, close: bool) -> bool {
        close || self.request.client_close
    }

    /// Sends the 200 event-stream head, then waits out the time to first token.
    async fn open_stream(&mut self, close: bool) -> io::Result<()> {
        let request_id = self.request_id.clone();
        let mut headers = vec![
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
            ("request-id", request_id.as_str()),
            ("transfer-encoding", "chunked"),
        ];
        if self.closing(close) {
            headers.push(("connection", "close"));
        }
        self.conn.write_head(200, &headers).await?;
        sleep_ms(self.timing.ttft_ms).await;
        Ok(())
    }

    async fn send_events(&mut self, events: &[SseEvent]) -> io::Result<()> {
        for event in events {
            self.send_raw(&event.encode()).await?;
        }
        Ok(())
    }

    /// Writes one paced body chunk.
    async fn send_raw(&mut self, text: &str) -> io::Result<()> {
        if self.events_sent > 0 {
            sleep_ms(self.timing.chunk_delay_ms).await;
        }
        self.events_sent += 1;
        self.conn.write_chunk(text.as_bytes()).await
    }

    async fn end_stream(&mut self) -> io::Result<After> {
        self.conn.finish_chunked().await?;
        Ok(self.after(false))
    }

    /// True once `release_stalls` has been called, false if the client left first.
    async fn wait_for_release(&mut self) -> bool {
        tokio::select! {
            // An error means the server is shutting down; treat it as released.
            _ = self.request.release.changed() => true,
            () = self.conn.closed() => false,
        }
    }

    fn after(&self, close: bool) -> After {
        if self.closing(close) {
            After::Close
        } else {
            After::KeepAlive
        }
    }
}

fn json_headers(request_id: &str, close: bool) -> Vec<(&'static str, &str)> {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("request-id", request_id),
    ];
    if close {
        headers.push(("connection", "close"));
    }
    headers
}

/// Rough tokens-from-bytes estimate (≈4 bytes a token), at least 1.
fn estimate_tokens(bytes: usize) -> u64 {
    u64::try_from(bytes / 4).unwrap_or(u64::MAX).max(1)
}

fn content_len(block: &Block) -> usize {
    match block {
        Block::Text { text } => text.len(),
        Block::ToolUse { name, input, .. } => name.len() + input.to_string().len(),
        Block::Thinking { thinking, .. } => thinking.len(),
    }
}

/// The HTTP status the real API pairs with each error type.
fn status_for(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}
