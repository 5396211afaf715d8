//! The managed-agents cookbook's notebooks, unmodified, against tetherd and the in-repo mock
//! model (issue 25): `CMA_iterate_fix_failing_tests.ipynb` (files mounted at relative paths,
//! the agent's loop in its sandbox, /mnt/user, /mnt/session/outputs, the stream helpers,
//! archive) and `CMA_gate_human_in_the_loop.ipynb` (custom tools answered from the stream on
//! `requires_action`, twelve parallel calls).
//!
//! The notebooks are Anthropic's (github.com/anthropics/claude-cookbooks, `managed_agents/`),
//! not vendored: clone the cookbook and set TETHER_COOKBOOK_DIR to it (or to its
//! `managed_agents/`). Without it the test skips with a message, unless
//! TETHER_REQUIRE_COOKBOOK=1. tests/cookbook/ holds what is ours: the runner (every code cell
//! in order, as Run All), the mock model's script (what each notebook's agent does) and
//! stand-ins for the cookbook's `utilities.py` and `example_data/` used only where the given
//! directory lacks them. The model is scripted; everything else is real: the SDK, tetherd's
//! HTTP API, the sandbox the commands run in, the files the agent reads and writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tether_e2e::TestEnv;
use tether_mock_llm::Script;

const NOTEBOOKS: [&str; 2] = [
    "CMA_iterate_fix_failing_tests.ipynb",
    "CMA_gate_human_in_the_loop.ipynb",
];

fn ours() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cookbook")
}

fn cookbook() -> Result<PathBuf, String> {
    let dir = std::env::var_os("TETHER_COOKBOOK_DIR").ok_or(
        "TETHER_COOKBOOK_DIR is not set: clone https://github.com/anthropics/claude-cookbooks and set it to the clone",
    )?;
    let dir = PathBuf::from(dir);
    let dir = if dir.join("managed_agents").is_dir() {
        dir.join("managed_agents")
    } else {
        dir
    };
    match NOTEBOOKS.iter().find(|n| !dir.join(n).exists()) {
        Some(missing) => Err(format!("{} has no {missing}", dir.display())),
        None => Ok(dir),
    }
}

/// The daemon under test (stopped when dropped) and an HTTP client of it.
struct Daemon {
    child: std::process::Child,
    base: String,
    token: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    async fn get(&self, path: &str) -> reqwest::Response {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .header("x-api-key", &self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r
    }

    async fn json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }
}

/// Runs one notebook against a fresh daemon: its stdout, and the daemon.
async fn run(env: &TestEnv, notebook: &Path) -> (String, Daemon) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (child, base, token) = env.spawn_http_daemon().await;
    let daemon = Daemon { child, base, token };
    let mut cmd = Command::new(tether_e2e::python());
    cmd.arg(ours().join("run_notebook.py"))
        .arg(notebook)
        .arg("--support")
        .arg(ours())
        .env("ANTHROPIC_BASE_URL", &daemon.base)
        .env("ANTHROPIC_API_KEY", &daemon.token)
        .env_remove("COOKBOOK_MODEL");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("python3 runs (with the SDK: pip install anthropic==2.17.0, as .ci/run does)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\nstdout: {stdout}\nstderr: {}\ndaemon log:\n{}",
        notebook.display(),
        String::from_utf8_lossy(&out.stderr),
        env.daemon_log_tail(40)
    );
    (stdout, daemon)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cookbook_notebooks_run_unmodified() {
    let dir = match cookbook() {
        Ok(d) => d,
        Err(why) => {
            if std::env::var_os("TETHER_REQUIRE_COOKBOOK").is_some() {
                panic!("{why}");
            }
            eprintln!("SKIPPED: {why}; set TETHER_REQUIRE_COOKBOOK=1 to make this a failure");
            return;
        }
    };
    let script: Script =
        serde_json::from_slice(&std::fs::read(ours().join("mock_script.json")).unwrap()).unwrap();

    // Iterate: the agent's commands really ran, and its fix is the session's output.
    let env = TestEnv::new(script.clone()).await;
    let (stdout, daemon) = run(&env, &dir.join(NOTEBOOKS[0])).await;
    assert!(stdout.contains("all 9 code cells ran"), "{stdout}");
    let sessions = daemon.json("/v1/sessions?include_archived=true").await;
    let sid = sessions["data"][0]["id"].as_str().unwrap().to_string();
    assert!(
        !sessions["data"][0]["archived_at"].is_null(),
        "the notebook archives its session: {sessions}"
    );
    let results: Vec<String> = tether_e2e::tool_results(&env.log(&sid).await)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(results.len(), 5, "{results:?}");
    assert!(results[0].contains("AssertionError"), "{results:?}");
    assert!(results[3].contains("all 3 tests pass"), "{results:?}");
    assert!(
        results[4].contains("all 3 tests pass") && results[4].contains("return a + b"),
        "{results:?}"
    );
    let outputs = daemon.json(&format!("/v1/files?scope_id={sid}")).await;
    assert_eq!(outputs["data"].as_array().unwrap().len(), 1, "{outputs}");
    assert_eq!(outputs["data"][0]["filename"], "calc.py", "{outputs}");
    let fixed = daemon
        .get(&format!(
            "/v1/files/{}/content",
            outputs["data"][0]["id"].as_str().unwrap()
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(fixed.contains("return a / b"), "{fixed}");
    drop(daemon);

    // Gate: every receipt was answered once, on the lane the mock chose.
    let env = TestEnv::new(script).await;
    let (stdout, _daemon) = run(&env, &dir.join(NOTEBOOKS[1])).await;
    assert!(
        stdout.contains("12 decisions: {'approve': 5, 'reject': 3, 'escalated': 4}"),
        "{stdout}"
    );
    assert!(stdout.contains("archived"), "{stdout}");
}
