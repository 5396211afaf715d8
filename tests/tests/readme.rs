//! The README's first command works literally on a fresh clone: it builds everything it runs
//! (both binaries) and runs a session, here against the in-repo mock model.
//!
//! Slow by nature (a release build of the workspace's own crates; dependencies come from this
//! build's target dir through CARGO_TARGET_DIR, so they are not rebuilt from scratch).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tether_e2e::{Reply, TestEnv};
use tether_mock_llm::Script;

/// The first ```sh block under the README's "Build and run" heading.
fn first_command(readme: &str) -> String {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Build and run"))
        .expect("README has a `## Build and run` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section starts with a ```sh block");
    block.trim().to_string()
}

/// This checkout's root and the target dir this test was built in.
fn checkout_and_target() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    // Tests run from <target>/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    (root, target)
}

#[test]
fn the_readme_command_parses_out() {
    let readme = std::fs::read_to_string(checkout_and_target().0.join("README.md")).unwrap();
    let cmd = first_command(&readme);
    assert!(
        cmd.contains("--bin tether") && cmd.contains("--bin tetherd"),
        "the first command must build both binaries: {cmd}"
    );
}

// A fresh clone's first command is a release build of both binaries: 10+ minutes of CPU on
// 2 cores (41 min wall on a loaded machine), which would more than double CI. Run it on
// purpose: `cargo test -p tether-e2e --test readme -- --ignored`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a release build from a fresh clone (10+ min on 2 cores); run with --ignored"]
async fn the_readme_command_works_on_a_fresh_clone() {
    if Command::new("git").arg("--version").output().is_err() {
        eprintln!("skipped: git is not installed, so the repository cannot be cloned");
        return;
    }
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            serde_json::json!({"command": "echo hello > f.txt && cat f.txt"}),
        ),
        Reply::text("f.txt says hello"),
    ]))
    .await;
    let (root, target) = checkout_and_target();
    let clone_parent = tempfile::tempdir().unwrap();
    let clone = clone_parent.path().join("tether");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(&root)
        .arg(&clone)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git clone failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `./target/release/...` in the command is this build's target dir.
    std::os::unix::fs::symlink(&target, clone.join("target")).unwrap();
    let command = first_command(&std::fs::read_to_string(clone.join("README.md")).unwrap());
    let out = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", &target)
        .env("TETHER_HOME", env.home.path())
        .env("ANTHROPIC_BASE_URL", env.mock.base_url())
        .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
        // The release `tether` must find the release `tetherd` beside it, as for a user.
        .env_remove("TETHER_DAEMON_BIN")
        .env_remove("TETHER_REMOTE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`{command}` failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        stderr.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    assert!(stdout.contains("f.txt says hello"), "{stdout}\n{stderr}");
    assert_eq!(env.mock.requests().len(), 2, "the session ran its turn");
    // The daemon the command started is the release one built from the clone.
    let pid = env.daemon_pid().expect("the command started tetherd");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.ends_with("release/tetherd"),
        "the daemon is the release build: {}",
        exe.display()
    );
}
