//! `tether auth`: a key stored after the daemon started is used at once, without a restart,
//! and a shell whose key the daemon lacks is told so, with the fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use serde_json::Value;
use tether_e2e::{Reply, TestEnv};
use tether_mock_llm::Script;

const KEY: &str = "sk-ant-api03-e2etestkey0123456789WXYZ";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `x-api-key` of the mock's latest request.
fn last_key(env: &TestEnv) -> Option<String> {
    env.mock
        .requests()
        .last()
        .unwrap()
        .header("x-api-key")
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_stored_after_the_daemon_started_is_used_without_a_restart() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("first"),
        Reply::text("second"),
        Reply::text("third"),
    ]))
    .await;
    // The daemon starts from a shell without a key (as on a first run)...
    let mut daemon = env.tetherd();
    daemon
        .env_remove("ANTHROPIC_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = daemon.spawn().unwrap();
    // The socket can appear a moment before the pid file is written.
    tether_e2e::wait_until("tetherd accepting connections", || {
        env.paths.socket().exists() && env.daemon_pid().is_some()
    })
    .await;
    let pid = env.daemon_pid();

    // ...then the user exports one and runs: the client says the daemon doesn't have it.
    let out = env
        .tether()
        .env("ANTHROPIC_API_KEY", KEY)
        .args(["run", "hello"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("your shell has ANTHROPIC_API_KEY")
            && err.contains("has no anthropic key")
            && err.contains("tether auth login anthropic"),
        "{err}"
    );
    assert!(
        !err.contains("e2etestkey"),
        "the key itself is never printed: {err}"
    );
    assert_eq!(last_key(&env), None, "the daemon had no key to send");

    // `tether auth login` stores it (from stdin here), private to the user.
    let mut login = env
        .tether()
        .args(["auth", "login", "anthropic"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}\n").as_bytes())
        .unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("sk-ant-…WXYZ") && said.contains("no restart"),
        "{said}"
    );
    assert!(!said.contains("e2etestkey"), "{said}");
    let file = env.paths.credentials_file();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials.toml must be private");

    // The next run uses it: same daemon, no warning, the key on the wire.
    let out = env
        .tether()
        .env("ANTHROPIC_API_KEY", KEY)
        .args(["run", "again"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(last_key(&env).as_deref(), Some(KEY));
    assert_eq!(env.daemon_pid(), pid, "no restart happened");

    let out = env
        .tether()
        .env("ANTHROPIC_API_KEY", KEY)
        .args(["auth", "status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["problems"], serde_json::json!([]), "{status}");
    let anthropic = status["daemon"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "anthropic")
        .unwrap()
        .clone();
    assert_eq!(anthropic["key_hint"], "sk-ant-…WXYZ", "{status}");
    assert!(
        anthropic["key_source"]
            .as_str()
            .unwrap()
            .contains("tether auth login"),
        "{status}"
    );

    // Logging out takes effect on the next request too.
    env.ok(&["auth", "logout", "anthropic"]);
    let out = env
        .tether()
        .env_remove("ANTHROPIC_API_KEY")
        .args(["run", "third"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(last_key(&env), None);
    let again = env.run(&["auth", "logout", "anthropic"]);
    assert_eq!(again.status.code(), Some(1), "nothing left to remove");

    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_credentials_file_is_a_clear_error_and_loses_nothing() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let file = env.paths.credentials_file();
    std::fs::write(&file, "[anthropic\napi_key = ").unwrap();
    let mut login = env
        .tether()
        .args(["auth", "login"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The client may refuse before it reads the key (a broken pipe here is fine).
    let _ = login.stdin.take().unwrap().write_all(b"sk-x\n");
    let out = login.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("credentials.toml is not valid TOML"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "[anthropic\napi_key = ",
        "the file is left as it was"
    );
}
