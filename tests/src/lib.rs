//! Helpers for tether's end-to-end tests: a temp `TETHER_HOME`, the in-repo mock model, the real
//! `tether`/`tetherd` binaries, and a raw protocol client for wire-level tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tether_mock_llm::{MockServer, Script};
use tether_proto::{
    ClientFrame, Event, EventBody, FrameDecoder, Hello, PROTOCOL_VERSION, Paths, Request,
    ServerFrame, ToolStatus, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub use tether_mock_llm::{Block, Reply};

pub mod git_server;
pub mod http_api;
pub mod mcp_server;
// mcp_oauth (issue 25, mcpauth)
pub mod oauth_server;
pub mod sshd;

/// Builds the binaries once per test process (so tests never run stale ones) and returns
/// their directory. Always both packages: cargo unifies features over what one build
/// selects, so building `tetherd` alone makes a different binary, and swapping it in would
/// pull the file from under a daemon already running (its sandbox helper re-executes it).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build(&["tether", "tether-daemon"]))
}

fn build(packages: &[&str]) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--bins"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let status = cmd
        .args(["--features", "tether-daemon/crash-points"])
        .arg("--manifest-path")
        .arg(&manifest)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {packages:?} failed");
    // tests run from target/<profile>/deps/
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// One isolated tether installation talking to one mock model.
pub struct TestEnv {
    pub home: tempfile::TempDir,
    pub mock: MockServer,
    pub paths: Paths,
    mounted: bool,
}

impl TestEnv {
    pub async fn new(script: Script) -> TestEnv {
        Self::with_config(script, "").await
    }

    /// `extra_config` starts a config.toml that also makes retries fast (so it can't set `[retry]`).
    pub async fn with_config(script: Script, extra_config: &str) -> TestEnv {
        Self::build(script, extra_config, None).await.unwrap()
    }

    /// A home on its own tmpfs of `bytes`, to run out of disk on purpose. None when this
    /// machine can't mount (not root).
    pub async fn on_small_disk(script: Script, bytes: u64) -> Option<TestEnv> {
        Self::build(script, "", Some(bytes)).await
    }

    async fn build(script: Script, extra_config: &str, disk: Option<u64>) -> Option<TestEnv> {
        // Short path: Unix socket paths are limited to ~108 bytes.
        let home = tempfile::Builder::new()
            .prefix("tt")
            .tempdir_in("/tmp")
            .unwrap();
        if let Some(bytes) = disk {
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(home.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return None;
            }
        }
        let mock = MockServer::start(script).await.unwrap();
        // Top-level keys of `extra_config` must come before any table.
        // `[tui] workspace = "private"`: tests run `tether new/run` from the crate's directory,
        // which must not become their sessions' workspace (the user default is the cwd).
        let config = format!(
            "{extra_config}\n[retry]\nbase_delay_ms = 10\nmax_delay_ms = 50\n[tui]\nworkspace = \"private\"\n"
        );
        std::fs::write(home.path().join("config.toml"), config).unwrap();
        let home_str = home.path().display().to_string();
        let paths = Paths::resolve(
            |k| (k == "TETHER_HOME").then(|| home_str.clone()),
            nix::unistd::geteuid().as_raw(),
        );
        Some(TestEnv {
            home,
            mock,
            paths,
            mounted: disk.is_some(),
        })
    }

    pub fn tether(&self) -> Command {
        let mut c = Command::new(bin_dir().join("tether"));
        self.env(&mut c);
        c
    }

    pub fn tetherd(&self) -> Command {
        let mut c = Command::new(bin_dir().join("tetherd"));
        self.env(&mut c);
        c
    }

    fn env(&self, c: &mut Command) {
        c.env("TETHER_HOME", self.home.path())
            .env("TETHER_DAEMON_BIN", bin_dir().join("tetherd"))
            .env("ANTHROPIC_BASE_URL", self.mock.base_url())
            .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
            .env_remove("ANTHROPIC_AUTH_TOKEN")
            .env("OPENAI_BASE_URL", format!("{}/v1", self.mock.base_url()))
            .env("OPENAI_API_KEY", "sk-openai-test-not-real")
            .env("TETHER_LOG", "debug");
    }

    /// Runs `tether ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.tether().args(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tether {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `tether logs SESSION --json`, parsed.
    pub fn events(&self, session: &str) -> Vec<Event> {
        self.ok(&["logs", session, "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The session's whole log over the socket (`session.events`), without the `tether` client.
    pub async fn log(&self, session: &str) -> Vec<Event> {
        let mut c = self.client().await;
        let page = c
            .call(
                "session.events",
                serde_json::json!({"session": session, "limit": 10000, "order": "asc"}),
            )
            .await
            .unwrap();
        serde_json::from_value(page["data"].clone()).unwrap()
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.paths.pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// A handshaken client; a daemon that hangs up instead of welcoming fails the test with
    /// its log.
    pub async fn client(&self) -> RawClient {
        let stream = match UnixStream::connect(self.paths.socket()).await {
            Ok(s) => s,
            Err(e) => panic!(
                "cannot connect to tetherd ({e}); daemon log:\n{}",
                self.daemon_log_tail(60)
            ),
        };
        let mut c = RawClient::from_stream(stream);
        match c.hello().await {
            Some(ServerFrame::Welcome(_)) => c,
            other => panic!(
                "expected welcome, got {other:?}; daemon log:\n{}",
                self.daemon_log()
            ),
        }
    }

    /// Starts `tetherd` as a child of the test, with `TETHER_CRASH_AT=crash_at` when given, and
    /// waits until it accepts connections.
    pub async fn spawn_daemon(&self, crash_at: Option<&str>) -> std::process::Child {
        self.spawn_daemon_with_env(crash_at, &[]).await
    }

    /// [`TestEnv::spawn_daemon`] with extra environment variables for tetherd.
    pub async fn spawn_daemon_with_env(
        &self,
        crash_at: Option<&str>,
        vars: &[(&str, &str)],
    ) -> std::process::Child {
        let mut cmd = self.tetherd();
        cmd.envs(vars.iter().copied());
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(spec) = crash_at {
            cmd.env("TETHER_CRASH_AT", spec);
        }
        let mut child = cmd.spawn().unwrap();
        let socket = self.paths.socket();
        let pid = child.id() as i32;
        // Its own pid in the pid file first (written after the bind): a connection that
        // succeeds before that could reach a socket this daemon does not serve.
        wait_until("tetherd accepting connections", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "tetherd exited at start ({status}); processes holding its start lock: {}\n{}",
                    holders_of(&self.paths.lock_file()),
                    self.daemon_log()
                );
            }
            self.daemon_pid() == Some(pid)
                && std::os::unix::net::UnixStream::connect(&socket).is_ok()
        })
        .await;
        child
    }

    /// Starts `tetherd --http 127.0.0.1:0` and returns it with the API's base URL and token.
    pub async fn spawn_http_daemon(&self) -> (std::process::Child, String, String) {
        self.spawn_http_daemon_with_env(&[]).await
    }

    /// [`TestEnv::spawn_http_daemon`] with extra environment variables for tetherd.
    pub async fn spawn_http_daemon_with_env(
        &self,
        vars: &[(&str, &str)],
    ) -> (std::process::Child, String, String) {
        let mut cmd = self.tetherd();
        cmd.envs(vars.iter().copied());
        cmd.args(["--http", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let addr_file = self.paths.http_addr_file();
        // A daemon killed before this one left its address behind.
        let _ = std::fs::remove_file(&addr_file);
        let mut child = cmd.spawn().unwrap();
        wait_until("tetherd serving HTTP", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("tetherd exited at start ({status}):\n{}", self.daemon_log());
            }
            std::fs::read_to_string(&addr_file).is_ok_and(|a| a.ends_with('\n'))
        })
        .await;
        let addr = std::fs::read_to_string(&addr_file).unwrap();
        let token = std::fs::read_to_string(self.paths.http_token_file()).unwrap();
        (
            child,
            format!("http://{}", addr.trim()),
            token.trim().to_string(),
        )
    }

    /// Waits until a daemon started by [`TestEnv::spawn_daemon`] dies, and checks it was a
    /// SIGKILL (a crash point fired, or the test killed it).
    pub async fn wait_killed(&self, mut child: std::process::Child) {
        use std::os::unix::process::ExitStatusExt;
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(nix::sys::signal::Signal::SIGKILL as i32),
            "tetherd should have been killed, but exited with {status}; processes holding its start lock: {}\n{}",
            holders_of(&self.paths.lock_file()),
            self.daemon_log()
        );
    }

    /// `PRAGMA integrity_check` of the daemon's database.
    pub fn integrity_check(&self) -> String {
        let db = rusqlite::Connection::open_with_flags(
            self.paths.db(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    /// Waits until session `id` is idle (returns at once if it already is).
    pub async fn wait_idle(&self, id: &str) {
        let mut c = self.client().await;
        let info = c
            .call("session.get", serde_json::json!({"session": id}))
            .await
            .unwrap();
        if info["status"] == "idle" {
            return;
        }
        let from = info["last_seq"].as_u64().unwrap();
        c.attach_until(id, from, |f| {
            matches!(f, ServerFrame::Event(e) if matches!(e.body, tether_proto::EventBody::SessionStatusIdle { .. }))
        })
        .await;
    }

    /// Log of the daemon, for failure messages.
    pub fn daemon_log(&self) -> String {
        let mut out = String::new();
        if let Ok(dir) = std::fs::read_dir(&self.paths.log_dir) {
            for e in dir.flatten() {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    /// The last `n` lines of the daemon's log, for failure messages.
    pub fn daemon_log_tail(&self, n: usize) -> String {
        let log = self.daemon_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Runs an official-SDK program (`program args`, e.g. [`python`] and a script from
    /// [`sdk_script`]) against a fresh `tetherd --http` of this env, with `TETHER_URL` and
    /// `TETHER_TOKEN` set and without the mock's `ANTHROPIC_*` meant for the daemon, then stops
    /// the daemon. Fails the test with the program's output and the daemon log unless it exits
    /// 0 having printed `ok_line`; returns its stdout.
    pub async fn run_sdk_program(&self, program: &str, args: &[&str], ok_line: &str) -> String {
        let (mut child, base, token) = self.spawn_http_daemon().await;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("TETHER_URL", &base)
            .env("TETHER_TOKEN", &token)
            .env_remove("ANTHROPIC_BASE_URL")
            .env_remove("ANTHROPIC_API_KEY");
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let out = out.unwrap_or_else(|e| {
            panic!("cannot run `{program}`: {e} (is it installed? .ci/run installs the SDKs)")
        });
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && stdout.contains(ok_line),
            "`{program} {}` failed or did not print {ok_line:?} (is the SDK installed? `pip install anthropic==2.17.0`, `npm ci --prefix tests/sdk/ts`: what .ci/run does):\nstdout: {stdout}\nstderr: {}\ndaemon log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log_tail(40)
        );
        stdout
    }
}

/// The processes (pid, command line) with `path` open, for failure messages.
pub fn holders_of(path: &Path) -> String {
    let mut out = Vec::new();
    for proc_dir in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path))
        {
            let cmd = std::fs::read_to_string(proc_dir.path().join("cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            out.push(format!(
                "{} `{}`",
                proc_dir.file_name().to_string_lossy(),
                cmd.trim()
            ));
        }
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join("; ")
    }
}

/// The Python that runs the SDK programs: `TETHER_SDK_PYTHON`, or `python3`.
pub fn python() -> String {
    std::env::var("TETHER_SDK_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The path of an SDK program in tests/sdk/, as an argument.
pub fn sdk_script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sdk")
        .join(name)
        .display()
        .to_string()
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon_pid() {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        if self.mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.home.path())
                .status();
        }
    }
}

/// Checks the invariants every log must satisfy: seq 1..n without gaps, every tool call
/// answered by exactly one result (a call waiting for a client's answer may have none, but only
/// while the session is idle with `requires_action` naming it), every tool that ran had its
/// intent committed first, an `always_ask` call ran only after a `user.tool_confirmation`
/// allowed it, and no idle session with unanswered tool calls unless it requires action.
pub fn assert_log_invariants(events: &[Event]) {
    use tether_proto::{ConfirmationResult, Permission, StopReason};
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "seq gap at index {i}: {events:#?}");
    }
    let folded = tether_daemon::session::state::SessionState::from_events(events);
    let awaiting = match (&folded.status(), &folded.stop_reason) {
        (tether_proto::SessionStatus::Idle, Some(StopReason::RequiresAction { event_ids })) => {
            event_ids.clone()
        }
        _ => Vec::new(),
    };
    for e in events {
        if matches!(
            e.body,
            EventBody::AgentToolUse { .. }
                | EventBody::AgentCustomToolUse { .. }
                | EventBody::AgentMcpToolUse { .. }
        ) {
            let results = events
                .iter()
                .filter(|r| match &r.body {
                    EventBody::AgentToolResult { tool_use_id, .. } => *tool_use_id == e.id,
                    EventBody::AgentMcpToolResult {
                        mcp_tool_use_id, ..
                    } => *mcp_tool_use_id == e.id,
                    EventBody::UserCustomToolResult {
                        custom_tool_use_id, ..
                    } => *custom_tool_use_id == e.id,
                    _ => false,
                })
                .count();
            if results == 0 && awaiting.contains(&e.id) {
                continue;
            }
            assert_eq!(results, 1, "tool_use {} has {results} results", e.id);
            // A result answers a call of its own kind.
            let mcp_call = matches!(e.body, EventBody::AgentMcpToolUse { .. });
            let wrong_kind = events.iter().any(|r| match &r.body {
                EventBody::AgentToolResult { tool_use_id, .. } => *tool_use_id == e.id && mcp_call,
                EventBody::AgentMcpToolResult {
                    mcp_tool_use_id, ..
                } => *mcp_tool_use_id == e.id && !mcp_call,
                _ => false,
            });
            assert!(!wrong_kind, "call {} has a result of the wrong kind", e.id);
        }
    }
    // An MCP call is sent only after its intent is committed, and never twice: a result that
    // is not an error has exactly one `span.tool_call_start` before it.
    for (i, e) in events.iter().enumerate() {
        if let EventBody::AgentMcpToolResult {
            mcp_tool_use_id,
            is_error: false,
            ..
        } = &e.body
        {
            let intents = events[..i]
                .iter()
                .filter(|s| matches!(&s.body, EventBody::SpanToolCallStart { tool_use_id: t, .. } if t == mcp_tool_use_id))
                .count();
            assert_eq!(
                intents, 1,
                "mcp_tool_result at seq {} has {intents} committed intents",
                e.seq
            );
        }
    }
    // A tool only runs after its intent is committed: a result that says the tool ran (ok,
    // error, timeout) has a `span.tool_call_start` before it.
    for (i, e) in events.iter().enumerate() {
        if let EventBody::AgentToolResult {
            tool_use_id,
            status,
            ..
        } = &e.body
            && !matches!(status, ToolStatus::Interrupted | ToolStatus::Denied)
        {
            let intent = events[..i].iter().any(|s| {
                matches!(&s.body, EventBody::SpanToolCallStart { tool_use_id: t, .. } if t == tool_use_id)
            });
            assert!(
                intent,
                "tool_result at seq {} ran without a committed intent",
                e.seq
            );
        }
    }
    // An `always_ask` call starts only after the user allowed it.
    for (i, e) in events.iter().enumerate() {
        if let EventBody::SpanToolCallStart { tool_use_id, .. } = &e.body {
            let asked = events[..i].iter().any(|u| {
                u.id == *tool_use_id
                    && matches!(
                        u.body,
                        EventBody::AgentToolUse {
                            evaluated_permission: Some(Permission::Ask),
                            ..
                        } | EventBody::AgentMcpToolUse {
                            evaluated_permission: Some(Permission::Ask),
                            ..
                        }
                    )
            });
            let allowed = events[..i].iter().any(|c| {
                matches!(&c.body, EventBody::UserToolConfirmation { tool_use_id: t, result: ConfirmationResult::Allow, .. } if t == tool_use_id)
            });
            assert!(
                !asked || allowed,
                "always_ask call {tool_use_id} started at seq {} without being allowed",
                e.seq
            );
        }
    }
    assert!(
        folded.pending_tools.is_empty()
            || folded.status() != tether_proto::SessionStatus::Idle
            || !awaiting.is_empty(),
        "an idle session has unanswered tool calls: {:?}",
        folded.pending_tools
    );
}

pub fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.type_name()).collect()
}

/// The `seq` of every event in a page (`{"data": [...]}`, as `session.events`,
/// `session.search` and the HTTP API answer).
pub fn page_seqs(page: &Value) -> Vec<u64> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page of events: {page}"))
        .iter()
        .map(|e| {
            e["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("an event without a seq: {e}"))
        })
        .collect()
}

/// Every `session.error` in `events`, in order.
pub fn session_errors(events: &[Event]) -> Vec<tether_proto::SessionErrorInfo> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SessionError { error } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

/// Every tool result in `events`, in order: its status and its text.
pub fn tool_results(events: &[Event]) -> Vec<(ToolStatus, String)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AgentToolResult {
                status, content, ..
            } => Some((*status, tether_proto::blocks_text(content))),
            _ => None,
        })
        .collect()
}

/// A minimal protocol client: raw frames in, raw frames out.
pub struct RawClient {
    pub stream: UnixStream,
    decoder: FrameDecoder,
    next_id: u64,
    pending: std::collections::VecDeque<ServerFrame>,
    /// Heartbeats received (and skipped by `recv`).
    pub heartbeats: u64,
}

impl RawClient {
    pub async fn connect_raw(socket: &Path) -> RawClient {
        Self::from_stream(UnixStream::connect(socket).await.unwrap())
    }

    pub fn from_stream(stream: UnixStream) -> RawClient {
        RawClient {
            stream,
            decoder: FrameDecoder::default(),
            next_id: 1,
            pending: Default::default(),
            heartbeats: 0,
        }
    }

    pub async fn connect(socket: &Path) -> RawClient {
        let mut c = Self::connect_raw(socket).await;
        match c.hello().await.expect("welcome") {
            ServerFrame::Welcome(_) => c,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Sends the handshake and returns the daemon's answer.
    pub async fn hello(&mut self) -> Option<ServerFrame> {
        self.send_frame(&ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: "e2e".into(),
            version: "0".into(),
        }))
        .await;
        self.recv().await
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn send_frame(&mut self, f: &ClientFrame) {
        let b = encode_frame(f).unwrap();
        self.send_bytes(&b).await;
    }

    /// Next frame (heartbeats are counted and skipped), or None when the daemon closed the
    /// connection.
    pub async fn recv(&mut self) -> Option<ServerFrame> {
        if let Some(f) = self.pending.pop_front() {
            return Some(f);
        }
        let mut buf = vec![0u8; 65536];
        loop {
            if let Some(line) = self.decoder.next_frame().unwrap() {
                match serde_json::from_str(&line).unwrap() {
                    ServerFrame::Heartbeat {} => {
                        self.heartbeats += 1;
                        continue;
                    }
                    f => return Some(f),
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut buf))
                .await
                .expect("daemon went silent for 30 s")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// Request → result value (panics on error replies), keeping pushes for `recv`.
    pub async fn call(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<Value, tether_proto::ErrorBody> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_frame(&ClientFrame::Request(Request {
            id,
            method: method.into(),
            params,
        }))
        .await;
        let mut held = Vec::new();
        let out = loop {
            match self
                .recv()
                .await
                .expect("connection closed while waiting for a reply")
            {
                ServerFrame::Response(r) if r.id == id => {
                    break match r.outcome {
                        tether_proto::Outcome::Result(v) => Ok(v),
                        tether_proto::Outcome::Error(e) => Err(e),
                    };
                }
                ServerFrame::Error(e) => break Err(e),
                other => held.push(other),
            }
        };
        for h in held.into_iter().rev() {
            self.pending.push_front(h);
        }
        out
    }
}

impl RawClient {
    /// Attaches and returns frames until `done` says stop (or panics after 60 s).
    pub async fn attach_until(
        &mut self,
        session: &str,
        after_seq: u64,
        mut done: impl FnMut(&ServerFrame) -> bool,
    ) -> Vec<ServerFrame> {
        self.call(
            "session.attach",
            serde_json::json!({"session": session, "after_seq": after_seq}),
        )
        .await
        .unwrap();
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let f = tokio::time::timeout_at(deadline, self.recv())
                .await
                .expect("condition not reached within 60 s")
                .expect("connection closed");
            let stop = done(&f);
            seen.push(f);
            if stop {
                return seen;
            }
        }
    }
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Polls a condition that has no event to await (e.g. a process appearing in /proc).
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An HTTP server on this machine's loopback answering every request with a small page;
/// counts the requests it got (what the network-policy tests reach, or must not).
pub fn host_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            // Read the head; these requests have no body.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let body = "<html><body><h1>Hello from the host</h1></body></html>";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}
