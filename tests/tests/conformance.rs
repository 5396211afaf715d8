//! Hosted API conformance (issue 25): the shapes and semantics a strict client of the
//! hosted service relies on, checked with the official Python SDK in strict mode
//! (tests/sdk/conformance.py) and with raw HTTP where the SDK can't see the difference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::json;
use tether_e2e::{Reply, TestEnv, python};
use tether_mock_llm::{Block, Script, Timing};

/// A long answer, streamed a few characters at a time with a pause between chunks, so a
/// stream opened after the send meets the response while it is being written.
const SLOW_ANSWER: &str =
    "a slowly streamed answer, long enough to still be in flight when the stream opens";

fn sdk_program(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sdk")
        .join(name)
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_in_strict_mode_accepts_agents_environments_sessions_and_events() {
    let script = Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "echo hi"})),
        Reply::text("ran it"),
        Reply::message(vec![
            Block::Thinking {
                thinking: "let me think about this".into(),
                signature: "sig".into(),
            },
            Block::text(SLOW_ANSWER),
        ]),
    ])
    .with_timing(Timing {
        ttft_ms: 0,
        chunk_delay_ms: 15,
        chunk_chars: 4,
    });
    let env = TestEnv::new(script).await;
    env.run_sdk_program(
        &python(),
        &[&sdk_program("conformance.py")],
        "conformance shapes ok",
    )
    .await;
}
