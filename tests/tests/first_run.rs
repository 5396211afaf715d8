//! Issue 19, the command line a new and a daily user meet: `doctor` fails loudly when nothing
//! can work, `ls`/`send`/`interrupt` say what happened, sessions work where you are
//! (or in their own git worktree).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Output, Stdio};

use serde_json::Value;
use tether_e2e::{Reply, TestEnv};
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

#[tokio::test(flavor = "multi_thread")]
async fn send_says_queued_or_started_and_interrupt_on_idle_records_nothing() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::stall(vec![tether_mock_llm::Block::text("first answer")]),
        Reply::text("second answer"),
        Reply::text("third answer"),
    ]))
    .await;
    let id = env
        .ok(&["new", "--detach", "--name", "q", "first"])
        .trim()
        .to_string();
    env.mock.wait_for_requests(1).await;
    // Mid-response: the message queues, and the user is told so and how to follow.
    let out = env.run(&["send", "q", "second"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).trim().starts_with("sevt_"),
        "stdout stays the event id"
    );
    let err = stderr(&out);
    assert!(
        err.contains("message queued: q is busy")
            && err.contains("tether attach q")
            && err.contains("tether logs -f q"),
        "{err}"
    );
    env.mock.release_stalls();
    env.mock.wait_for_requests(2).await;
    env.wait_idle(&id).await;
    let before = env.events(&id).len();
    let out = env.run(&["interrupt", "q"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("q is idle: nothing to interrupt, nothing recorded"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        env.events(&id).len(),
        before,
        "no user.interrupt was recorded"
    );

    let out = env.run(&["send", "q", "third"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("message sent: q started a turn"),
        "{}",
        stderr(&out)
    );
    env.wait_idle(&id).await;
}
