//! The OpenAPI document and the daemon agree: schemathesis (PyPI, installed by `.ci/run`)
//! generates requests from `GET /v1/openapi.json` and runs them against a real tetherd, failing
//! on any 5xx, any response that doesn't match its schema or status codes, and any request the
//! document calls valid that the daemon refuses (`positive_data_acceptance`). The few rules
//! OpenAPI 3.0 can't state are applied to generated requests by tests/schemathesis/hooks.py.
//!
//! Bounded: a fixed number of examples per operation with a fixed seed (set
//! TETHER_SCHEMATHESIS_SEED for another, TETHER_SCHEMATHESIS_EXAMPLES for more), one worker;
//! the event streams are left out (they never end by themselves; http_api.rs and threads.rs
//! cover them).
//! Without schemathesis the test skips with a message, unless TETHER_REQUIRE_SCHEMATHESIS is
//! set (`.ci/run` sets it, so CI can't skip silently).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tether_e2e::{Reply, TestEnv};
use tether_mock_llm::Script;

const PINNED: &str = "4.32.5";

fn python() -> String {
    std::env::var("TETHER_SDK_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The installed schemathesis version, if any.
fn installed() -> Option<String> {
    let out = Command::new(python())
        .args(["-c", "import schemathesis; print(schemathesis.__version__)"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_valid_requests_are_accepted_and_answers_match_the_document() {
    let Some(version) = installed() else {
        let how = format!(
            "schemathesis is not installed for `{}`: run `python3 -m pip install schemathesis=={PINNED}` (what .ci/run does)",
            python()
        );
        if std::env::var_os("TETHER_REQUIRE_SCHEMATHESIS").is_some() {
            panic!("{how}");
        }
        eprintln!("SKIPPED: {how}; set TETHER_REQUIRE_SCHEMATHESIS=1 to make this a failure");
        return;
    };
    eprintln!("schemathesis {version}");

    // Sessions the run creates get messages: every turn answers with text, never a tool.
    let replies = (0..400).map(|_| Reply::text("ok")).collect();
    let env = TestEnv::new(Script::by_turn(replies).with_side_reply(Reply::text("title"))).await;
    let (mut child, base, token) = env.spawn_http_daemon().await;

    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis");
    let examples = std::env::var("TETHER_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let seed = std::env::var("TETHER_SCHEMATHESIS_SEED").unwrap_or_else(|_| "27".into());
    let mut st = tokio::process::Command::new(python());
    st.args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{base}/v1/openapi.json"))
        .args(["-H", &format!("x-api-key: {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,positive_data_acceptance",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--exclude-path-regex",
            "/stream$",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            // Python 3.11's ast module is not thread-safe, which hypothesis hits with workers.
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
            "--output-truncate",
            "true",
        ])
        .env("SCHEMATHESIS_HOOKS", "hooks")
        // For hooks that look at the daemon's state (an archived memory store).
        .env("TETHER_SCHEMATHESIS_BASE", &base)
        .env("TETHER_SCHEMATHESIS_TOKEN", &token)
        .env("PYTHONPATH", &hooks)
        .current_dir(env.home.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(900), st.output())
        .await
        .expect("schemathesis ran for 15 minutes; something hangs (a stream endpoint?)")
        .unwrap();
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: String = stdout
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{summary}");
    assert!(alive, "tetherd died during the run:\n{}", env.daemon_log());
    assert!(
        out.status.success(),
        "schemathesis found disagreements between /v1/openapi.json and the daemon:\n{stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It really tested the API (not, say, zero operations).
    assert!(stdout.contains("passed"), "{stdout}");
}
