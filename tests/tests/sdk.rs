//! The official SDKs, unmodified, against a local tetherd: the Python SDK (`anthropic` on
//! PyPI) runs tests/sdk/roundtrip.py, the TypeScript SDK (`@anthropic-ai/sdk` on npm)
//! tests/sdk/ts/roundtrip.mjs. `.ci/run` installs both; without them these fail and say how
//! to install them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use tether_e2e::{Reply, TestEnv, python};
use tether_mock_llm::Script;

/// Runs `program args` against a fresh tetherd serving HTTP and checks it printed `ok_line`.
async fn round_trip(program: &str, args: Vec<String>, ok_line: &str) {
    let env = TestEnv::new(Script::sequential(vec![Reply::text("hello from tetherd")])).await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run_sdk_program(program, &args, ok_line).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_round_trips_against_tetherd() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/ts");
    assert!(
        dir.join("node_modules/@anthropic-ai/sdk/package.json")
            .exists(),
        "the TypeScript SDK is not installed: run `npm ci --prefix tests/sdk/ts` (what .ci/run does)"
    );
    let script = dir.join("roundtrip.mjs").display().to_string();
    round_trip("node", vec![script], "typescript sdk round trip ok").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_round_trips_against_tetherd() {
    let probe = Command::new(python())
        .args(["-c", "import anthropic; print(anthropic.__version__)"])
        .output();
    let version = match probe {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!(
            "the Python SDK is not installed for `{}`: run `pip install anthropic==2.17.0` (what .ci/run does), or point TETHER_SDK_PYTHON at a python that has it",
            python()
        ),
    };
    eprintln!("anthropic {version}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sdk/roundtrip.py")
        .display()
        .to_string();
    round_trip(&python(), vec![script], "python sdk round trip ok").await;
}

/// The SDK's `examples/managed-agents-streaming-deltas-manual.py`, byte for byte
/// (tests/sdk/upstream): it sends a message, then opens the stream with `event_deltas` and
/// folds the previews into the final `agent.message` itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdks_streaming_deltas_example_runs_unmodified() {
    const HAIKU: &str = "Waves fold into foam, the tide keeps its patient count, salt on the wind.";
    // The example sends, then opens the stream: a model as quick as the bare mock could
    // finish the turn before the stream is open, and the example would wait forever for an
    // idle it missed (against any server). A first token after 1.5 s, as real models take.
    let env = TestEnv::new(Script::by_turn(vec![Reply::text(HAIKU)]).with_timing(
        tether_mock_llm::Timing {
            ttft_ms: 1500,
            chunk_delay_ms: 10,
            chunk_chars: 8,
        },
    ))
    .await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sdk/upstream/managed-agents-streaming-deltas-manual.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(example)
            .env("ANTHROPIC_BASE_URL", base)
            .env("ANTHROPIC_API_KEY", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("[final] {HAIKU}")), "{stdout}");
}
