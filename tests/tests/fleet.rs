//! The fleet (issue 20): one client, its own daemon and two more daemons (separate
//! TETHER_HOMEs) reached through a real sshd on 127.0.0.1 as `[[remotes]]` of its config.toml.
//! `tether ls` over all of them, an unreachable or hung host as one line, a killed daemon
//! coming back, `HOST:SESSION` through every command that takes a session, `tether wait`.
//! Skipped (with a message) only where no sshd can be started.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use tether_e2e::sshd::{Sshd, sshd_or_skip};
use tether_e2e::{Block, Reply, TestEnv, bin_dir, wait_until};
use tether_mock_llm::Script;

const ASKER: &str = "name: asker
tools:
  - type: agent_toolset_20260401
    configs:
      - name: bash
        permission_policy: {type: always_ask}
";

/// A `[[remotes]]` entry reaching `env`'s daemon through `sshd`.
fn remote_entry(name: &str, sshd: &Sshd, env: &TestEnv) -> String {
    format!(
        "\n[[remotes]]\nname = \"{name}\"\nurl = \"{}\"\ncommand = \"env TETHER_HOME={} TETHER_DAEMON_BIN={} ANTHROPIC_BASE_URL={} ANTHROPIC_API_KEY=sk-test-not-a-real-key {}\"\n",
        sshd.url(),
        env.home.path().display(),
        bin_dir().join("tetherd").display(),
        env.mock.base_url(),
        bin_dir().join("tether").display()
    )
}

/// Adds `entries` to the config.toml of `local`.
fn add_remotes(local: &TestEnv, entries: &[String]) {
    let path = local.home.path().join("config.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for e in entries {
        text.push_str(e);
    }
    std::fs::write(path, text).unwrap();
}

/// `tether` of `local`, able to reach its remotes.
fn fleet_tether(local: &TestEnv, sshd: &Sshd) -> Command {
    let mut c = local.tether();
    c.env("TETHER_SSH_COMMAND", sshd.ssh_command())
        .env_remove("TETHER_REMOTE")
        .env_remove("TETHER_REMOTE_COMMAND");
    c
}

fn run(local: &TestEnv, sshd: &Sshd, args: &[&str]) -> Output {
    fleet_tether(local, sshd).args(args).output().unwrap()
}

fn ok(local: &TestEnv, sshd: &Sshd, args: &[&str]) -> String {
    let out = run(local, sshd, args);
    assert!(
        out.status.success(),
        "tether {args:?} failed ({}):\nstdout: {}\nstderr: {}\nsshd: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `ls` line naming `session`.
fn line_of<'a>(table: &'a str, session: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == session))
        .unwrap_or_else(|| panic!("no line for {session}:\n{table}"))
}

/// (host, name) of every `ls --json` line.
fn hosts_and_names(out: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|s| {
            (
                s["host"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(h, n)| (h.to_string(), n.to_string()))
        .collect()
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_lists_every_host_and_a_dead_or_hung_one_is_one_line() {
    let Some(sshd) = sshd_or_skip() else { return };
    let local = TestEnv::new(Script::sequential(vec![Reply::text("here")])).await;
    let gpu1 = TestEnv::new(Script::sequential(vec![Reply::text("gpu1")])).await;
    let gpu2 = TestEnv::new(Script::sequential(vec![Reply::text("gpu2")])).await;
    let _d0 = local.spawn_daemon(None).await;
    let mut d1 = gpu1.spawn_daemon(None).await;
    let _d2 = gpu2.spawn_daemon(None).await;
    local.ok(&["run", "hi", "--name", "mine"]);
    gpu1.ok(&["run", "hi", "--name", "far1"]);
    gpu2.ok(&["run", "hi", "--name", "far2"]);
    // A box that refuses connections, and one that accepts and then says nothing (a hung
    // network): neither may hold up the others.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    add_remotes(
        &local,
        &[
            remote_entry("gpu1", &sshd, &gpu1),
            remote_entry("gpu2", &sshd, &gpu2),
            format!(
                "\n[[remotes]]\nname = \"dead\"\nurl = \"ssh://127.0.0.1:{}\"\n",
                closed_port()
            ),
            format!(
                "\n[[remotes]]\nname = \"hung\"\nurl = \"ssh://127.0.0.1:{}\"\nconnect_timeout_secs = 2\n",
                hung.local_addr().unwrap().port()
            ),
        ],
    );

    let table = ok(&local, &sshd, &["ls"]);
    assert!(table.starts_with("HOST "), "{table}");
    assert!(line_of(&table, "mine").starts_with("local "), "{table}");
    assert!(line_of(&table, "far1").starts_with("gpu1 "), "{table}");
    assert!(line_of(&table, "far2").starts_with("gpu2 "), "{table}");
    let dead = line_of(&table, "dead");
    assert!(dead.contains("✗ unreachable"), "{table}");
    let hung_line = line_of(&table, "hung");
    assert!(hung_line.contains("did not answer within 2 s"), "{table}");
    assert_eq!(
        table.lines().count(),
        6,
        "header, 3 sessions, 2 hosts: {table}"
    );

    let json = ok(&local, &sshd, &["ls", "--json"]);
    assert_eq!(
        hosts_and_names(&json),
        pairs(&[("gpu1", "far1"), ("gpu2", "far2"), ("local", "mine")])
    );

    let only = ok(&local, &sshd, &["ls", "--host", "gpu2", "--json"]);
    assert_eq!(hosts_and_names(&only), pairs(&[("gpu2", "far2")]));
    let bad = run(&local, &sshd, &["ls", "--host", "gpu3"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("gpu3") && stderr(&bad).contains("gpu1, gpu2, dead, hung"),
        "{}",
        stderr(&bad)
    );
    // The one host asked is down: its error and exit code 3, as for a single daemon.
    let down = run(&local, &sshd, &["ls", "--host", "dead"]);
    assert_eq!(down.status.code(), Some(3), "{}", stderr(&down));

    // gpu1's daemon dies: one line says so, the rest is listed; back up, it is listed again.
    d1.kill().unwrap();
    d1.wait().unwrap();
    let table = ok(&local, &sshd, &["ls"]);
    assert!(line_of(&table, "gpu1").contains("✗ unreachable"), "{table}");
    assert!(!table.contains("far1"), "{table}");
    assert!(line_of(&table, "far2").starts_with("gpu2 "), "{table}");
    let _d1 = gpu1.spawn_daemon(None).await;
    let json = ok(&local, &sshd, &["ls", "--json"]);
    assert_eq!(
        hosts_and_names(&json),
        pairs(&[("gpu1", "far1"), ("gpu2", "far2"), ("local", "mine")])
    );
    drop(hung);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_colon_session_reaches_the_remote_through_every_command() {
    let Some(sshd) = sshd_or_skip() else { return };
    let local = TestEnv::new(Script::sequential(vec![
        Reply::text("local answer"),
        Reply::Stall {
            blocks: vec![Block::Text {
                text: "slow".into(),
            }],
        },
    ]))
    .await;
    let gpu1 = TestEnv::new(Script::sequential(vec![
        Reply::text("first from gpu1"),
        Reply::text("second from gpu1"),
        Reply::tool_use("bash", json!({"command": "echo approved-and-ran"})),
        Reply::text("done after approval"),
    ]))
    .await;
    let _d0 = local.spawn_daemon(None).await;
    let _d1 = gpu1.spawn_daemon(None).await;
    add_remotes(&local, &[remote_entry("gpu1", &sshd, &gpu1)]);
    local.ok(&["run", "hi", "--name", "mine"]);
    gpu1.ok(&["run", "hi", "--name", "b1"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("asker.yaml"), ASKER).unwrap();
    gpu1.ok(&[
        "agents",
        "create",
        "-f",
        dir.path().join("asker.yaml").to_str().unwrap(),
    ]);

    // send --wait, logs
    let out = ok(&local, &sshd, &["send", "gpu1:b1", "again", "--wait"]);
    assert!(out.contains("second from gpu1"), "{out}");
    let logs = ok(&local, &sshd, &["logs", "gpu1:b1"]);
    assert!(logs.contains("second from gpu1"), "{logs}");
    // --remote takes a [[remotes]] name too.
    ok(
        &local,
        &sshd,
        &[
            "--remote", "gpu1", "new", "--detach", "--agent", "asker", "--name", "ask", "run it",
        ],
    );
    // wait: the turn stops for an approval → exit 1, and says how to answer.
    let w = run(&local, &sshd, &["wait", "gpu1:ask"]);
    assert_eq!(w.status.code(), Some(1), "{}", stderr(&w));
    assert_eq!(
        String::from_utf8_lossy(&w.stdout),
        "gpu1:ask requires_action\n"
    );
    assert!(
        stderr(&w).contains("tether approve gpu1:ask"),
        "{}",
        stderr(&w)
    );
    ok(&local, &sshd, &["approve", "gpu1:ask"]);
    let w = ok(&local, &sshd, &["wait", "gpu1:ask", "local:mine", "--json"]);
    let done: Vec<Value> = w
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(done.len(), 2, "{w}");
    assert!(
        done.iter().all(|d| d["stop_reason"]["type"] == "end_turn"),
        "{w}"
    );
    let mut hosts: Vec<&str> = done.iter().map(|d| d["host"].as_str().unwrap()).collect();
    hosts.sort();
    assert_eq!(hosts, ["gpu1", "local"]);
    assert!(gpu1.ok(&["logs", "ask"]).contains("done after approval"));

    // rename, fork, threads, interrupt, diff, tool-result, attach, rm
    ok(&local, &sshd, &["rename", "gpu1:b1", "b1x"]);
    let fork = ok(
        &local,
        &sshd,
        &["fork", "gpu1:b1x", "--name", "b1y", "--json"],
    );
    assert_eq!(serde_json::from_str::<Value>(&fork).unwrap()["name"], "b1y");
    let threads = ok(&local, &sshd, &["threads", "gpu1:b1x", "--json"]);
    assert!(!threads.trim().is_empty(), "the primary thread is listed");
    let int = run(&local, &sshd, &["interrupt", "gpu1:b1x"]);
    assert!(
        stderr(&int).contains("b1x is idle: nothing to interrupt"),
        "{}",
        stderr(&int)
    );
    let diff = run(&local, &sshd, &["diff", "gpu1:b1x"]);
    assert!(!diff.status.success());
    assert!(
        !stderr(&diff).contains("no session"),
        "found it: {}",
        stderr(&diff)
    );
    let tr = run(
        &local,
        &sshd,
        &["tool-result", "gpu1:b1x", "sevt_nope", "--json", "{}"],
    );
    assert!(!tr.status.success());
    assert!(stderr(&tr).contains("sevt_nope"), "{}", stderr(&tr));
    let mut attach = fleet_tether(&local, &sshd)
        .args(["attach", "gpu1:b1x", "--read-only"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = attach.stderr.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut err = err;
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    wait_until("attach over ssh shows the remote session", || {
        seen.lock().unwrap().contains("attached to b1x")
    })
    .await;
    attach.kill().unwrap();
    attach.wait().unwrap();
    // wait --any: the idle one answers while the other is still mid-turn.
    local.ok(&["new", "--detach", "--name", "slow", "take your time"]);
    local.mock.wait_for_requests(2).await;
    let any = ok(&local, &sshd, &["wait", "local:slow", "gpu1:b1x", "--any"]);
    assert_eq!(any, "gpu1:b1x end_turn\n");
    local.mock.release_stalls();
    assert_eq!(ok(&local, &sshd, &["wait", "slow"]), "slow end_turn\n");
    ok(&local, &sshd, &["rm", "gpu1:b1y"]);
    let names = hosts_and_names(&gpu1.ok(&["ls", "--json"]));
    assert!(names.iter().all(|(_, n)| n != "b1y"), "{names:?}");
    // Nothing of that happened here.
    assert_eq!(
        hosts_and_names(&ok(&local, &sshd, &["ls", "--host", "local", "--json"])),
        pairs(&[("local", "mine"), ("local", "slow")])
    );

    // An unknown host is a usage error that names the known ones.
    let bad = run(&local, &sshd, &["send", "gpu9:b1x", "hello"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("no remote named `gpu9`") && stderr(&bad).contains("gpu1"),
        "{}",
        stderr(&bad)
    );
}

/// `tether` (the picker) of `local` in a 120×40 tmux pane, its raw output also written to
/// `raw` (escape sequences and all, as the terminal received them).
struct PickerPane {
    socket: String,
}

impl PickerPane {
    fn start(local: &TestEnv, sshd: &Sshd, raw: &std::path::Path) -> PickerPane {
        let socket = format!("tether-fleet-{}", std::process::id());
        let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let cmd = format!(
            "env TETHER_HOME={} TETHER_DAEMON_BIN={} ANTHROPIC_BASE_URL={} ANTHROPIC_API_KEY=sk-test-not-a-real-key TETHER_SSH_COMMAND={} {}; echo \"[tether exited $?]\"; exec cat",
            q(&local.home.path().display().to_string()),
            q(&bin_dir().join("tetherd").display().to_string()),
            q(&local.mock.base_url()),
            q(&sshd.ssh_command()),
            q(&bin_dir().join("tether").display().to_string()),
        );
        let tmux = |args: &[&str]| {
            assert!(
                Command::new("tmux")
                    .args(["-L", &socket])
                    .args(args)
                    .status()
                    .expect("tmux must be installed")
                    .success(),
                "tmux {args:?}"
            );
        };
        tmux(&[
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
            &cmd,
        ]);
        tmux(&[
            "pipe-pane",
            "-t",
            "0",
            "-o",
            &format!("cat >> {}", q(&raw.display().to_string())),
        ]);
        PickerPane { socket }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        assert!(
            Command::new("tmux")
                .args(["-L", &self.socket, "send-keys", "-t", "0"])
                .args(keys)
                .status()
                .unwrap()
                .success()
        );
    }

    /// Polls the screen (a terminal has no event to await); shows it on timeout.
    async fn wait_for(&self, what: &str, present: bool) {
        let start = std::time::Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(what) == present {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(40),
                "timed out waiting for {what:?} to be {}; the screen:\n{screen}",
                if present { "shown" } else { "gone" }
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PickerPane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_picker_shows_three_hosts_notifies_and_approves_on_a_remote() {
    let Some(sshd) = sshd_or_skip() else { return };
    let local = TestEnv::new(Script::sequential(vec![Reply::text("here")])).await;
    let gpu1 = TestEnv::new(Script::sequential(vec![
        Reply::text("gpu1"),
        Reply::tool_use("bash", json!({"command": "echo deployed"})),
        Reply::text("done after approval"),
    ]))
    .await;
    let gpu2 = TestEnv::new(Script::sequential(vec![Reply::text("gpu2")])).await;
    let _d0 = local.spawn_daemon(None).await;
    let _d1 = gpu1.spawn_daemon(None).await;
    let mut d2 = gpu2.spawn_daemon(None).await;
    local.ok(&["run", "hi", "--name", "mine"]);
    gpu1.ok(&["run", "hi", "--name", "far1"]);
    gpu2.ok(&["run", "hi", "--name", "far2"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("asker.yaml"), ASKER).unwrap();
    gpu1.ok(&[
        "agents",
        "create",
        "-f",
        dir.path().join("asker.yaml").to_str().unwrap(),
    ]);
    let hook_out = dir.path().join("notices.jsonl");
    add_remotes(
        &local,
        &[
            remote_entry("gpu1", &sshd, &gpu1),
            remote_entry("gpu2", &sshd, &gpu2),
            format!(
                "\n[notify]\ncommand = \"cat >> {}\"\nmin_turn_secs = 0\n",
                hook_out.display()
            ),
        ],
    );
    let raw = dir.path().join("raw");
    let pane = PickerPane::start(&local, &sshd, &raw);
    for name in ["mine", "far1", "far2", "on 3 hosts"] {
        pane.wait_for(name, true).await;
    }

    // A session on gpu1 stops for an approval: the hook and the terminal are told.
    gpu1.ok(&[
        "new", "--detach", "--agent", "asker", "--name", "ask", "run it",
    ]);
    pane.wait_for("Needs input (1)", true).await;
    wait_until("the hook got the notice", || {
        std::fs::read_to_string(&hook_out).is_ok_and(|t| t.contains("gpu1:ask needs input"))
    })
    .await;
    let notice: Value = serde_json::from_str(
        std::fs::read_to_string(&hook_out)
            .unwrap()
            .lines()
            .find(|l| l.contains("gpu1:ask"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(notice["type"], "session.requires_action");
    assert_eq!(notice["host"], "gpu1");
    assert_eq!(notice["name"], "ask");
    wait_until("the terminal got OSC 9 and 777 through tmux", || {
        let raw = std::fs::read(&raw).unwrap_or_default();
        let raw = String::from_utf8_lossy(&raw);
        raw.contains("\x1bPtmux;\x1b\x1b]9;tether: gpu1:ask needs input\x07\x1b\\")
            && raw.contains("\x1b\x1b]777;notify;tether;gpu1:ask needs input\x07")
    })
    .await;
    assert!(pane.screen().contains("● 1 needs you"), "{}", pane.screen());

    // Peek and approve in place, without attaching.
    for c in ["a", "s", "k"] {
        pane.keys(&[c]);
    }
    pane.wait_for("far1", false).await;
    pane.keys(&["Tab"]);
    pane.wait_for("waits on bash: echo deployed", true).await;
    pane.keys(&["C-y"]);
    wait_until("the approval reached gpu1", || {
        gpu1.events("ask")
            .iter()
            .any(|e| matches!(e.body, tether_proto::EventBody::UserToolConfirmation { .. }))
    })
    .await;
    let id = gpu1.ok(&["ls", "--json"]);
    let id = id
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|s| s["name"] == "ask")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    gpu1.wait_idle(&id).await;
    assert!(gpu1.ok(&["logs", "ask"]).contains("done after approval"));
    pane.keys(&["Escape"]);

    // gpu2 dies: one line says so; it comes back by itself.
    d2.kill().unwrap();
    d2.wait().unwrap();
    pane.wait_for("gpu2 ✗ unreachable (retrying)", true).await;
    assert!(pane.screen().contains("far1"), "{}", pane.screen());
    let _d2 = gpu2.spawn_daemon(None).await;
    pane.wait_for("gpu2 ✗ unreachable", false).await;
    pane.wait_for("far2", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ssh_that_dies_at_once_is_an_error_not_a_sigpipe() {
    let local = TestEnv::new(Script::sequential(vec![])).await;
    for _ in 0..5 {
        let out = local
            .tether()
            .env("TETHER_SSH_COMMAND", "true")
            .args(["--remote", "ssh://nowhere", "ls"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{out:?}");
    }
}

/// Attached to one session, the terminal still hears of the others (issue 20): a remote
/// session that starts needing input sends OSC 9/777 through tmux and the hook, and the status
/// bar counts it; the session on screen is never the news.
#[tokio::test(flavor = "multi_thread")]
async fn attached_to_one_session_the_terminal_hears_of_another() {
    let Some(sshd) = sshd_or_skip() else { return };
    let local = TestEnv::new(Script::sequential(vec![Reply::text("here")])).await;
    let gpu1 = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "echo first"})),
        Reply::tool_use("bash", json!({"command": "echo deployed"})),
    ]))
    .await;
    let _d0 = local.spawn_daemon(None).await;
    let _d1 = gpu1.spawn_daemon(None).await;
    local.ok(&["run", "hi", "--name", "mine"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("asker.yaml"), ASKER).unwrap();
    gpu1.ok(&[
        "agents",
        "create",
        "-f",
        dir.path().join("asker.yaml").to_str().unwrap(),
    ]);
    // One session there already waits: old news, but it shows the watcher is up.
    let first = gpu1
        .ok(&[
            "new", "--detach", "--agent", "asker", "--name", "first", "go",
        ])
        .trim()
        .to_string();
    wait_until("first waits for an approval", || {
        gpu1.events(&first).iter().any(|e| {
            matches!(
                &e.body,
                tether_proto::EventBody::SessionStatusIdle {
                    stop_reason: tether_proto::StopReason::RequiresAction { .. }
                }
            )
        })
    })
    .await;
    let hook_out = dir.path().join("notices.jsonl");
    add_remotes(
        &local,
        &[
            remote_entry("gpu1", &sshd, &gpu1),
            format!(
                "\n[notify]\ncommand = \"cat >> {}\"\nmin_turn_secs = 0\n",
                hook_out.display()
            ),
        ],
    );
    let raw = dir.path().join("raw");
    let pane = PickerPane::start(&local, &sshd, &raw);
    pane.wait_for("on 2 hosts", true).await;
    pane.wait_for("mine", true).await;
    for c in ["m", "i", "n", "e"] {
        pane.keys(&[c]);
    }
    pane.keys(&["Enter"]);
    // The session view: the picker's host line is gone, the transcript is there.
    pane.wait_for("on 2 hosts", false).await;
    pane.wait_for("here", true).await;
    pane.wait_for("1 waiting elsewhere", true).await;

    gpu1.ok(&[
        "new", "--detach", "--agent", "asker", "--name", "ask", "run it",
    ]);
    wait_until("the terminal got OSC 9 and 777 while attached", || {
        let raw = std::fs::read(&raw).unwrap_or_default();
        let raw = String::from_utf8_lossy(&raw);
        raw.contains("\x1bPtmux;\x1b\x1b]9;tether: gpu1:ask needs input\x07\x1b\\")
            && raw.contains("\x1b\x1b]777;notify;tether;gpu1:ask needs input\x07")
    })
    .await;
    wait_until("the hook got the notice", || {
        std::fs::read_to_string(&hook_out).is_ok_and(|t| t.contains("gpu1:ask needs input"))
    })
    .await;
    pane.wait_for("2 waiting elsewhere", true).await;
    // Still the session view, and nothing was said about the session on screen.
    assert!(pane.screen().contains("here"), "{}", pane.screen());
    let said = std::fs::read_to_string(&hook_out).unwrap();
    assert!(!said.contains("\"mine\""), "{said}");
    assert!(
        !said.contains("first"),
        "what waited before is not news: {said}"
    );
}
