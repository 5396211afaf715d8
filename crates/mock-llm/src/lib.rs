//! A scripted mock of the Anthropic Messages API (`POST /v1/messages`), the
//! OpenAI Chat Completions API (`POST /v1/chat/completions`) and the OpenAI
//! Responses API (`POST /v1/responses`) for tether's end-to-end tests and
//! benchmarks. One script serves all three; the path picks the wire format.
//!
//! Streaming requests (`"stream": true`) get the same SSE byte stream as
//! api.anthropic.com: `message_start`, `ping`, per block
//! `content_block_start` / `content_block_delta`… / `content_block_stop`,
//! `message_delta`, `message_stop`. Errors use the real error envelope.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use serde_json::json;
//! use tether_mock_llm::{MockServer, Reply, Script};
//!
//! let server = MockServer::start(Script::by_turn(vec![
//!     Reply::tool_use("bash", json!({"command": "echo hi"})),
//!     Reply::text("done"),
//! ]))
//! .await?;
//! // point the client at server.base_url(), then inspect server.requests()
//! # Ok(()) }
//! ```
//!
//! Scripts can also be JSON files (see [`Script`]):
//!
//! ```json
//! {
//!   "mode": "by_turn",
//!   "timing": {"ttft_ms": 200, "chunk_delay_ms": 10, "chunk_chars": 16},
//!   "replies": [
//!     {"type": "message", "blocks": [
//!       {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
//!       {"type": "tool_use", "name": "bash", "input": {"command": "ls"}}
//!     ]},
//!     {"type": "error", "status": 429, "error_type": "rate_limit_error",
//!      "message": "slow down", "retry_after_secs": 1},
//!     {"type": "message", "blocks": [{"type": "text", "text": "All done."}],
//!      "stop_reason": "end_turn",
//!      "usage": {"input_tokens": 100, "output_tokens": 5}}
//!   ]
//! }
//! ```

mod http;
mod openai_wire;
mod play;
pub mod scenarios;
mod script;
mod server;
mod wire;

pub use play::{Api, render_stream};
pub use script::{Block, Reply, Route, Script, ScriptMode, Timing, Usage, offers_tools};
pub use server::{MockServer, RecordedRequest};
