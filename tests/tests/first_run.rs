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
        .ok(&["new", "--detach", "--private", "--name", "q", "first"])
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

/// This env's config.toml without the harness's `[tui] workspace = "private"`: the user
/// default, sessions work in the current directory.
fn user_defaults(env: &TestEnv) {
    let config = env.home.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("workspace = \"private\"", "")).unwrap();
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_started_here_works_here_and_is_confined_to_it() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            serde_json::json!({"command": "echo hi > made-here.txt; echo x > ../escaped.txt; pwd"}),
        ),
        Reply::text("done"),
    ]))
    .await;
    user_defaults(&env);
    let outer = tempfile::tempdir().unwrap();
    let here = outer.path().join("project");
    std::fs::create_dir(&here).unwrap();
    let out = env
        .tether()
        .current_dir(&here)
        .args(["run", "--name", "here", "make a file"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let here = here.canonicalize().unwrap();
    assert!(
        stderr(&out).contains(&format!("session here works in {}", here.display())),
        "the path is printed: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(here.join("made-here.txt")).unwrap(),
        "hi\n"
    );
    assert!(
        !outer.path().join("escaped.txt").exists(),
        "the sandbox confines tools to the directory"
    );
    // `--private` still gives a scratch workspace under the data dir.
    let out = env
        .tether()
        .current_dir(&here)
        .args(["new", "--detach", "--private", "--name", "scratch"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("works in {}", env.home.path().display())),
        "{}",
        stderr(&out)
    );
    // Deleting a session that worked in your directory leaves the directory alone.
    env.ok(&["rm", "here"]);
    assert!(here.join("made-here.txt").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worktree_session_works_on_its_own_branch_and_rm_keeps_or_deletes_it() {
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: git is not installed");
        return;
    }
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            serde_json::json!({"command": "echo changed > tracked.txt; echo brand new > added.txt"}),
        ),
        Reply::text("edited"),
        Reply::text("nothing to do"),
    ]))
    .await;
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(repo.path().join("tracked.txt"), "original\n").unwrap();
    git(repo.path(), &["add", "tracked.txt"]);
    git(repo.path(), &["commit", "-q", "-m", "first"]);

    let out = env
        .tether()
        .current_dir(repo.path())
        .args(["run", "--worktree", "--name", "wt", "edit the files"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("git worktree on branch tether/wt"),
        "{}",
        stderr(&out)
    );
    assert!(git(repo.path(), &["branch", "--list", "tether/wt"]).contains("tether/wt"));
    // The user's checkout is untouched; the work is in the worktree.
    assert_eq!(
        std::fs::read_to_string(repo.path().join("tracked.txt")).unwrap(),
        "original\n"
    );
    let patch = env.ok(&["diff", "wt"]);
    assert!(
        patch.contains("-original") && patch.contains("+changed"),
        "{patch}"
    );
    assert!(
        patch.contains("added.txt") && patch.contains("+brand new"),
        "untracked files are part of the diff: {patch}"
    );

    // A script must say what happens to the branch; nothing is removed until it does.
    let out = env.run(&["rm", "wt"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--keep-branch"), "{}", stderr(&out));
    assert!(
        env.ok(&["ls"]).contains(" wt "),
        "the session is still there"
    );

    let out = env.run(&["rm", "wt", "--keep-branch"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!env.ok(&["ls"]).contains(" wt "));
    assert!(!git(repo.path(), &["worktree", "list"]).contains("worktrees"));
    // The kept branch holds all the work, uncommitted edits included.
    assert_eq!(
        git(repo.path(), &["show", "tether/wt:added.txt"]),
        "brand new\n"
    );

    // Without a name the branch is named after the session id; --delete-branch drops it.
    let id = env
        .tether()
        .current_dir(repo.path())
        .args(["new", "--detach", "--worktree"])
        .output()
        .unwrap();
    assert!(id.status.success(), "{}", stderr(&id));
    let id = stdout(&id).trim().to_string();
    let branch = format!("tether/{id}");
    assert!(git(repo.path(), &["branch", "--list", &branch]).contains(&branch));
    let out = env.run(&["diff", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty() && stderr(&out).contains("no changes"));
    env.ok(&["rm", &id, "--delete-branch"]);
    assert!(git(repo.path(), &["branch", "--list", "tether/*"]).contains("tether/wt"));
    assert!(!git(repo.path(), &["branch", "--list", &branch]).contains(&branch));

    // Outside a repository the error says so, and no session is made.
    let plain = tempfile::tempdir().unwrap();
    let out = env
        .tether()
        .current_dir(plain.path())
        .args(["new", "--detach", "--worktree", "--name", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not in a git repository"),
        "{}",
        stderr(&out)
    );
    assert!(!env.ok(&["ls"]).contains("nope"));
}
