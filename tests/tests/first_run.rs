//! Issue 19, the command line a new and a daily user meet: `doctor` fails loudly when nothing
//! can work, `ls`/`send`/`interrupt` say what happened, sessions work where you are
//! (or in their own git worktree).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Output, Stdio};

use serde_json::Value;
use tether_e2e::TestEnv;
use tether_mock_llm::Script;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A daemon started from a shell with no provider key at all (a first run). A base URL
/// other than the real API counts as a local proxy that takes no key, so it goes too.
async fn keyless_daemon(env: &TestEnv) -> std::process::Child {
    let mut daemon = env.tetherd();
    daemon
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = daemon.spawn().unwrap();
    tether_e2e::wait_until("tetherd accepting connections", || {
        env.paths.socket().exists()
    })
    .await;
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_fails_when_no_provider_is_usable_and_run_warns_before_starting() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    // With the harness's keys (no daemon yet: judged from this shell) doctor passes.
    let out = env.run(&["doctor", "--json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let mut daemon = keyless_daemon(&env).await;
    let out = env
        .tether()
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .args(["doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("1 check failed: providers"),
        "{}",
        stderr(&out)
    );
    let report = stdout(&out);
    assert!(
        report.contains("✗ providers") && report.contains("tether auth login"),
        "{report}"
    );
    let checks: Value = serde_json::from_slice(
        &env.tether()
            .args(["doctor", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let providers = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "providers")
        .unwrap();
    assert_eq!(providers["ok"], false);
    assert_eq!(providers["required"], true);

    // `new` says the same before it starts anything (no prompt: nothing calls the real API).
    let out = env
        .tether()
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .args(["new", "--detach", "--name", "first"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: no model provider is usable") && err.contains("tether doctor"),
        "{err}"
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}
