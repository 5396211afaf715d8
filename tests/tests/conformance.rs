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
    let stdout = env
        .run_sdk_program(
            &python(),
            &[&sdk_program("conformance.py")],
            "conformance shapes ok",
        )
        .await;
    // The program made two agents and two environments named `twin` over HTTP; the CLI
    // resolves the name to the newest and says that several match, listing their ids.
    let twins: Vec<&str> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("twins: "))
        .expect("the program prints the twins' ids")
        .split_whitespace()
        .collect();
    let [agent_old, agent_new, env_old, env_new] = twins[..] else {
        panic!("four ids expected: {twins:?}");
    };
    for (what, old, new) in [("agents", agent_old, agent_new), ("envs", env_old, env_new)] {
        let out = env.run(&[what, "show", "twin", "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what} show twin: {stderr}");
        let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(shown["id"], new, "the newest `twin` is the one shown");
        assert!(
            stderr.contains("are named `twin`")
                && stderr.contains(&format!("{new}, {old}"))
                && stderr.contains(&format!("using the newest, {new}")),
            "{what}: the CLI says several match and lists them: {stderr}"
        );
    }
}
