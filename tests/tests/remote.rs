//! `tether --remote ssh://…` against a real OpenSSH server on 127.0.0.1: the test runs its own
//! `sshd` with a throwaway host key and user key, and the client reaches the daemon through
//! `ssh … tether proxy`. Skipped (with a message) only where no sshd can be started.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use tether_e2e::sshd::{Sshd, sshd_or_skip};
use tether_e2e::{
    Block, Reply, TestEnv, assert_log_invariants, bin_dir, pids_matching, wait_until,
};
use tether_mock_llm::Script;
use tether_proto::{Event, EventBody};

/// `tether --remote` from a client whose own TETHER_HOME is empty and unrelated: everything it
/// shows comes through ssh from the daemon of `env`.
struct Remote<'a> {
    env: &'a TestEnv,
    sshd: &'a Sshd,
    local_home: tempfile::TempDir,
}

impl Remote<'_> {
    fn tether(&self) -> Command {
        let e = self.env;
        let mut c = Command::new(bin_dir().join("tether"));
        c.env("TETHER_HOME", self.local_home.path())
            .env("TETHER_REMOTE", self.sshd.url())
            .env("TETHER_SSH_COMMAND", self.sshd.ssh_command())
            // sshd starts the far side with a clean environment: say where its tether lives.
            .env(
                "TETHER_REMOTE_COMMAND",
                format!(
                    "env TETHER_HOME={} TETHER_DAEMON_BIN={} ANTHROPIC_BASE_URL={} ANTHROPIC_API_KEY=sk-test-not-a-real-key TETHER_LOG=debug {}",
                    e.home.path().display(),
                    bin_dir().join("tetherd").display(),
                    e.mock.base_url(),
                    bin_dir().join("tether").display()
                ),
            )
            .env_remove("TETHER_DAEMON_BIN");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.tether().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tether --remote {args:?} failed ({}):\nstdout: {}\nstderr: {}\nsshd: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.sshd.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Lines a child prints, collected by a thread as they come.
fn collect_lines(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    collect_lines_until_eof(r).0
}

/// [`collect_lines`] with the reader thread, to join once the writer has exited: every line
/// it wrote is then collected (reading the lines right after the process exits can miss the
/// last ones on a loaded box).
fn collect_lines_until_eof(
    r: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

fn has_line(lines: &Arc<Mutex<Vec<String>>>, needle: &str) -> bool {
    lines.lock().unwrap().iter().any(|l| l.contains(needle))
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_run_and_logs_follow_over_ssh() {
    let Some(sshd) = sshd_or_skip() else { return };
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("hello from the remote box"),
        Reply::text("second answer"),
    ]))
    .await;
    let remote = Remote {
        env: &env,
        sshd: &sshd,
        local_home: tempfile::tempdir().unwrap(),
    };

    // The remote proxy starts the remote daemon on first use.
    assert!(remote.ok(&["ls", "--json"]).is_empty());
    let out = remote.ok(&["run", "say hello", "--name", "far"]);
    assert!(out.contains("hello from the remote box"), "{out}");
    let ls = remote.ok(&["ls"]);
    assert!(ls.contains("far") && ls.contains("idle"), "{ls}");
    assert!(
        !remote.local_home.path().join("tether.db").exists(),
        "nothing ran locally"
    );

    // logs -f over ssh sees what another client sends.
    let mut follow = remote
        .tether()
        .args(["logs", "far", "-f", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = collect_lines(follow.stdout.take().unwrap());
    let n_before = env.events("far").len();
    wait_until("logs -f replays the log", || {
        lines.lock().unwrap().len() >= n_before
    })
    .await;
    remote.ok(&["send", "far", "again"]);
    wait_until("logs -f shows the second answer", || {
        has_line(&lines, "second answer")
    })
    .await;
    follow.kill().unwrap();
    follow.wait().unwrap();
    let log = env.events("far");
    assert_log_invariants(&log);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_ssh_link_mid_turn_reconnects_and_the_transcript_is_whole() {
    let Some(sshd) = sshd_or_skip() else { return };
    let env = TestEnv::new(Script::sequential(vec![Reply::Stall {
        blocks: vec![Block::Text {
            text: "an answer that took a while".into(),
        }],
    }]))
    .await;
    let remote = Remote {
        env: &env,
        sshd: &sshd,
        local_home: tempfile::tempdir().unwrap(),
    };
    let id = remote.ok(&["new", "--name", "flaky"]).trim().to_string();
    let mut client = remote
        .tether()
        .args(["send", "flaky", "go", "--wait", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, out_reader) = collect_lines_until_eof(client.stdout.take().unwrap());
    let err = collect_lines(client.stderr.take().unwrap());
    // Mid-turn: the model is streaming (stalled after its first delta).
    env.mock.wait_for_requests(1).await;
    wait_until("the client printed the turn start", || {
        has_line(&out, "session.status_running")
    })
    .await;

    // Cut the link: kill the client's ssh process.
    let key = sshd.key().display().to_string();
    let ssh_pids = pids_matching(&key);
    assert!(!ssh_pids.is_empty(), "the client's ssh process is running");
    for pid in ssh_pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    wait_until("the client noticed and reconnected", || {
        has_line(&err, "[reconnected")
    })
    .await;
    assert!(has_line(&err, "connection to tetherd lost"));
    env.mock.release_stalls();

    let status = client.wait().unwrap();
    assert!(
        status.success(),
        "client exit {status}; stderr: {:?}",
        err.lock().unwrap()
    );
    out_reader.join().unwrap();
    // The transcript the client printed is exactly the log after its message: no gap, no
    // duplicate, across the reconnect.
    let printed: Vec<Event> = out
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let log = env.events(&id);
    assert_log_invariants(&log);
    let sent_seq = log
        .iter()
        .find(|e| matches!(e.body, EventBody::UserMessage { .. }))
        .unwrap()
        .seq;
    let expected: Vec<u64> = log
        .iter()
        .map(|e| e.seq)
        .filter(|s| *s > sent_seq)
        .collect();
    let got: Vec<u64> = printed.iter().map(|e| e.seq).collect();
    assert_eq!(got, expected, "printed transcript vs log");
    assert!(
        printed
            .iter()
            .any(|e| matches!(e.body, EventBody::AgentMessage { .. })),
        "the answer arrived after the reconnect"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn version_mismatch_and_a_missing_remote_tether_are_explained() {
    let Some(sshd) = sshd_or_skip() else { return };
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let remote = Remote {
        env: &env,
        sshd: &sshd,
        local_home: tempfile::tempdir().unwrap(),
    };
    // A far side that speaks another protocol version.
    let fake = sshd.dir.path().join("tether-9");
    std::fs::write(
        &fake,
        "#!/bin/sh\nread hello\nprintf '%s\\n' '{\"welcome\":{\"protocol\":99,\"daemon_version\":\"9.9.9\",\"pid\":1}}'\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let out = remote
        .tether()
        .env("TETHER_REMOTE_COMMAND", &fake)
        .arg("ls")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("9.9.9") && stderr.contains(env!("CARGO_PKG_VERSION")),
        "names both versions: {stderr}"
    );

    let out = remote
        .tether()
        .env("TETHER_REMOTE_COMMAND", "no-such-tether")
        .arg("ls")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("no-such-tether") && stderr.contains("TETHER_REMOTE_COMMAND"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_link_is_declared_dead_by_missing_heartbeats() {
    let Some(sshd) = sshd_or_skip() else { return };
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("first answer"),
        Reply::text("still here"),
    ]))
    .await;
    let remote = Remote {
        env: &env,
        sshd: &sshd,
        local_home: tempfile::tempdir().unwrap(),
    };
    remote.ok(&["run", "hi", "--name", "quiet"]);
    let mut follow = remote
        .tether()
        .args(["logs", "quiet", "-f", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = collect_lines(follow.stdout.take().unwrap());
    let err = collect_lines(follow.stderr.take().unwrap());
    let key = sshd.key().display().to_string();
    wait_until("the client is attached and replayed the log", || {
        has_line(&out, "first answer")
    })
    .await;
    // Freeze the client's ssh: the TCP link stays open but nothing arrives any more, which
    // only the missing heartbeats can reveal (3 intervals of 5 s).
    let frozen = pids_matching(&key);
    for pid in &frozen {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGSTOP,
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while !has_line(&err, "[reconnected") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reconnect after the link went silent: {:?}",
            err.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(has_line(&err, "heartbeat"), "{:?}", err.lock().unwrap());
    // The new link works: a message sent now shows up.
    remote.ok(&["send", "quiet", "are you there"]);
    wait_until("the answer arrives over the new link", || {
        has_line(&out, "still here")
    })
    .await;
    follow.kill().unwrap();
    follow.wait().unwrap();
    for pid in frozen {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Polls a tmux pane until it shows `what` (a terminal has no event to await).
async fn wait_for_screen(socket: &str, what: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let out = Command::new("tmux")
            .args(["-L", socket, "capture-pane", "-p", "-t", "0"])
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        if screen.contains(what) {
            return screen;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "timed out waiting for {what:?}; the screen:\n{screen}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_default_remote_and_the_tui_attached_over_ssh_in_a_real_terminal() {
    let Some(sshd) = sshd_or_skip() else { return };
    let env = TestEnv::new(Script::sequential(vec![Reply::text(
        "hello through the tunnel",
    )]))
    .await;
    let remote = Remote {
        env: &env,
        sshd: &sshd,
        local_home: tempfile::tempdir().unwrap(),
    };
    remote.ok(&["run", "say hi", "--name", "far"]);

    // `[tui] remote` in the local config.toml is the default daemon; `--remote local` is this
    // machine's own.
    std::fs::write(
        remote.local_home.path().join("config.toml"),
        format!("[tui]\nremote = \"{}\"\n", sshd.url()),
    )
    .unwrap();
    let out = remote
        .tether()
        .env_remove("TETHER_REMOTE")
        .arg("ls")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("far"));
    let local = remote
        .tether()
        .env_remove("TETHER_REMOTE")
        .env("TETHER_DAEMON_BIN", bin_dir().join("tetherd"))
        .args(["--remote", "local", "ls", "--json"])
        .output()
        .unwrap();
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    assert!(local.stdout.is_empty(), "the local daemon has no sessions");
    let _ = remote
        .tether()
        .env_remove("TETHER_REMOTE")
        .args(["--remote", "local", "daemon", "stop"])
        .output();

    // The full-screen TUI in a real terminal, its daemon at the far end of ssh.
    let cmd = remote.tether();
    let mut line = String::from("env");
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            line.push_str(&format!(
                " {}={}",
                k.to_string_lossy(),
                sh_quote(&v.to_string_lossy())
            ));
        }
    }
    line.push_str(&format!(
        " {} attach far; echo \"[tether exited $?]\"; exec cat",
        sh_quote(&bin_dir().join("tether").display().to_string())
    ));
    let socket = format!("tether-remote-{}", std::process::id());
    let ok = Command::new("tmux")
        .args([
            "-L",
            &socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "sh",
            "-c",
            &line,
        ])
        .status()
        .expect("tmux must be installed (apt-get install tmux)")
        .success();
    assert!(ok, "tmux new-session failed");
    let screen = wait_for_screen(&socket, "hello through the tunnel").await;
    assert!(screen.contains("say hi"), "{screen}");
    let keys = Command::new("tmux")
        .args(["-L", &socket, "send-keys", "-t", "0", "C-b", "d"])
        .status()
        .unwrap();
    assert!(keys.success());
    wait_for_screen(&socket, "[tether exited 0]").await;
    let _ = Command::new("tmux")
        .args(["-L", &socket, "kill-server"])
        .status();
}
