//! Other local users can read nothing tether keeps: the event log and its WAL/SHM (prompts,
//! transcripts, tool output), logs, spools, tokens and the workspaces tether creates are
//! 0600/0700 from the start, and a home an older tetherd left readable is tightened when the
//! daemon starts. (Files the agent makes inside its workspace keep their own modes; the 0700
//! workspace above them keeps others out.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tether_e2e::TestEnv;
use tether_mock_llm::{Script, scenarios};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// Every path under `root` that other users could read, write or enter, with its mode. The
/// contents of workspaces (the agent's files) and environment layers are not tether's own.
fn loose_paths(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut loose = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.mode() & 0o077 != 0 {
            loose.push((p.clone(), meta.mode() & 0o7777));
        }
        let inside_agents_files = p.file_name().is_some_and(|n| n == "workspace")
            || p.parent().is_some_and(|d| d.ends_with("envs"));
        if meta.is_dir() && !inside_agents_files {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        }
    }
    loose
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_tether_makes_is_private_to_its_user() {
    let env = TestEnv::new(scenarios::bash_then_read()).await;
    let home = env.home.path().to_path_buf();
    // The HTTP API too: its token and address files.
    let (_daemon, _url, _token) = env.spawn_http_daemon().await;
    env.ok(&[
        "run",
        "create f.txt containing hello, then read it back",
        "--name",
        "orig",
    ]);
    env.ok(&["fork", "orig", "--name", "copy"]);

    // The database's companions exist while the daemon runs, and hold the transcript.
    for f in ["tether.db", "tether.db-wal", "tether.db-shm"] {
        let p = home.join(f);
        assert!(p.exists(), "{f} missing");
        assert_eq!(mode(&p), 0o600, "{f}");
    }
    let sessions: Vec<PathBuf> = std::fs::read_dir(env.paths.sessions_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sessions.len(), 2, "a new session and its fork");
    for s in &sessions {
        assert_eq!(mode(&s.join("workspace")), 0o700, "{}", s.display());
        assert_eq!(
            std::fs::read_to_string(s.join("workspace/f.txt")).unwrap(),
            "hello"
        );
    }
    assert!(
        std::fs::read_dir(&env.paths.log_dir).unwrap().count() > 0,
        "the daemon logs to a file"
    );
    let loose = loose_paths(&home);
    assert!(
        loose.is_empty(),
        "other users can reach these:\n{}",
        loose
            .iter()
            .map(|(p, m)| format!("{m:o} {}", p.display()))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_home_left_readable_is_tightened_at_start() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let home = env.home.path().to_path_buf();
    // What an older tetherd left behind under a 022 umask.
    let loose_dir = |p: &Path| {
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let loose_file = |p: &Path, text: &str| {
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    let ws = env.paths.sessions_dir().join("sesn_old/workspace");
    for d in [
        home.clone(),
        env.paths.sessions_dir(),
        env.paths.sessions_dir().join("sesn_old"),
        ws.clone(),
        home.join("spool/sesn_old"),
        env.paths.log_dir.clone(),
        env.paths.envs_dir(),
    ] {
        loose_dir(&d);
    }
    // An empty file is a new database to SQLite.
    loose_file(&env.paths.db(), "");
    loose_file(&home.join("spool/sesn_old/toolu_1.log"), "output");
    loose_file(
        &env.paths.log_dir.join("tetherd.2020-01-01.log"),
        "old log\n",
    );
    std::fs::set_permissions(
        env.paths.config_file(),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    loose_file(&ws.join("agent-made.txt"), "the agent's own file");

    let _daemon = env.spawn_daemon(None).await;
    env.ok(&["ls"]);

    let loose = loose_paths(&home);
    assert!(
        loose.is_empty(),
        "still reachable by other users after start:\n{}",
        loose
            .iter()
            .map(|(p, m)| format!("{m:o} {}", p.display()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(mode(&ws), 0o700);
    assert_eq!(mode(&env.paths.db()), 0o600);
    // Inside a workspace the agent's files are left as they are.
    assert_eq!(mode(&ws.join("agent-made.txt")), 0o644);
    assert!(
        env.daemon_log()
            .contains("took group and other permissions off"),
        "the tightening is logged"
    );
}
