//! A flood of connections that never say hello: the daemon closes them (the oldest first when
//! at its connection cap, the rest at the handshake timeout) with a clear error frame, keeps
//! answering `tether ls` throughout, refuses a connection clearly when every slot is held by a
//! client, and, when it runs out of file descriptors anyway, backs off instead of spinning and
//! logging. Its CPU time, log and memory stay bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use tether_e2e::{RawClient, TestEnv};
use tether_mock_llm::Script;
use tether_proto::{ErrorBody, ErrorCode, ServerFrame};

/// The flood's size: several times the cap, a few thousand connections.
const CAP: usize = 64;
const BELOW_CAP: usize = 48;
const ABOVE_CAP: usize = 2000;

/// The test opens thousands of sockets itself.
fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// `n` connections that never say anything. Blocking connects: a full backlog waits for the
/// daemon to accept instead of failing.
async fn idle_connections(socket: &Path, n: usize) -> Vec<UnixStream> {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| UnixStream::connect(&socket).expect("connect to tetherd"))
            .collect()
    })
    .await
    .unwrap()
}

/// What the daemon has sent on a connection so far, peeked (left to be read).
fn peek(s: &UnixStream) -> Vec<u8> {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 512];
    match recv(
        s.as_raw_fd(),
        &mut b,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(n) => b[..n].to_vec(),
        Err(nix::errno::Errno::EAGAIN) => Vec::new(),
        Err(e) => panic!("peek: {e}"),
    }
}

/// Whether the daemon still holds the connection open without having said anything.
fn still_waiting(s: &UnixStream) -> bool {
    peek(s).is_empty()
}

/// Whether the daemon already closed the connection for want of a hello.
fn timed_out(s: &UnixStream) -> bool {
    String::from_utf8_lossy(&peek(s)).contains("handshake_timeout")
}

/// Waits for the daemon to close each connection and returns the error frame it sent first
/// (None: closed without one).
async fn closing_frames(conns: Vec<UnixStream>) -> Vec<Option<ErrorBody>> {
    // Only a guard against a daemon that never closes them (the old one).
    let deadline = Instant::now() + Duration::from_secs(60);
    tokio::task::spawn_blocking(move || {
        conns
            .into_iter()
            .map(|mut s| {
                let left = deadline.saturating_duration_since(Instant::now());
                s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    .unwrap();
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got);
                let line = got.split(|&b| b == b'\n').next()?;
                match serde_json::from_slice::<ServerFrame>(line) {
                    Ok(ServerFrame::Error(e)) => Some(e),
                    _ => None,
                }
            })
            .collect()
    })
    .await
    .unwrap()
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap_or(100);
    ticks as f64 / hz as f64
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn log_bytes(env: &TestEnv) -> u64 {
    std::fs::read_dir(&env.paths.log_dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn count(frames: &[Option<ErrorBody>], code: ErrorCode) -> usize {
    frames
        .iter()
        .filter(|f| f.as_ref().is_some_and(|e| e.code == code))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_clearly_and_never_lock_out_clients() {
    raise_own_fd_limit();
    let env = TestEnv::with_config(
        Script::sequential(vec![]),
        &format!("[connections]\nmax = {CAP}\nhandshake_timeout_ms = 5000\n"),
    )
    .await;
    let daemon = env.spawn_daemon(None).await;
    let pid = daemon.id() as i32;
    let socket = env.paths.socket();
    env.ok(&["ls"]);
    let (rss_before, cpu_before, log_before) = (rss_kib(pid), cpu_seconds(pid), log_bytes(&env));

    // Below the cap: all wait for their hello, and `tether ls` is served beside them.
    let below = idle_connections(&socket, BELOW_CAP).await;
    env.ok(&["ls"]);
    assert!(
        below.iter().all(still_waiting),
        "below the cap no connection should have been closed yet"
    );

    // Far above the cap: the oldest silent connections make room for newer ones, so `tether
    // ls` still gets in while the cap is full of silent ones.
    let above = idle_connections(&socket, ABOVE_CAP).await;
    let flood_at = Instant::now();
    env.ok(&["ls"]);
    let waiting = above.iter().filter(|s| still_waiting(s)).count();
    assert!(
        waiting > 0 && !below.iter().chain(&above).any(timed_out),
        "`tether ls` should have been served while silent connections held the cap, before any timed out (still waiting: {waiting})"
    );

    let total = BELOW_CAP + ABOVE_CAP;
    let frames = closing_frames(below.into_iter().chain(above).collect()).await;
    let made_room = count(&frames, ErrorCode::TooManyConnections);
    let timed_out = count(&frames, ErrorCode::HandshakeTimeout);
    assert_eq!(
        made_room + timed_out,
        total,
        "every silent connection ends with too_many_connections or handshake_timeout: {:?}",
        frames.iter().find(|f| !f.as_ref().is_some_and(|e| matches!(
            e.code,
            ErrorCode::TooManyConnections | ErrorCode::HandshakeTimeout
        )))
    );
    assert!(made_room >= total - CAP, "{made_room} of {total} made room");
    assert!(
        timed_out >= 1,
        "the last ones wait for the handshake timeout"
    );
    let evicted = frames
        .iter()
        .flatten()
        .find(|e| e.code == ErrorCode::TooManyConnections)
        .unwrap();
    assert!(
        evicted.message.contains(&CAP.to_string()) && evicted.message.contains("[connections]"),
        "the error names the cap and how to raise it: {}",
        evicted.message
    );
    let timeout = frames
        .iter()
        .flatten()
        .find(|e| e.code == ErrorCode::HandshakeTimeout)
        .unwrap();
    assert!(
        timeout.message.contains("5000 ms") && timeout.message.contains("hello"),
        "{}",
        timeout.message
    );

    // Every slot held by a client that said hello: a new one is refused with a clear error.
    let mut clients = Vec::new();
    let refused = loop {
        let mut c = RawClient::connect_raw(&socket).await;
        match c.hello().await {
            Some(ServerFrame::Welcome(_)) => clients.push(c),
            Some(ServerFrame::Error(e)) => break e,
            other => panic!("expected welcome or an error, got {other:?}"),
        }
        assert!(clients.len() <= CAP, "more than {CAP} clients got in");
    };
    assert_eq!(refused.code, ErrorCode::TooManyConnections, "{refused:?}");
    // (One slot may still have been held by the last `tether ls` as it hung up.)
    assert!(
        clients.len() >= CAP - 1,
        "only {} clients got in",
        clients.len()
    );
    let out = env.run(&["ls"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ls got in past a full cap");
    assert!(
        stderr.contains(&format!("at most {CAP} connections")) && stderr.contains("[connections]"),
        "{stderr}"
    );
    // A client leaving frees its slot (once the daemon has seen it go: polled).
    clients.pop();
    tether_e2e::wait_until("`tether ls` gets in again", || {
        env.run(&["ls"]).status.success()
    })
    .await;
    drop(clients);

    // Bounded cost: CPU, log and memory. (Generous bounds: these catch a spinning accept loop,
    // a log line per connection, and buffers kept per connection, not a few percent.)
    let cpu = cpu_seconds(pid) - cpu_before;
    let elapsed = flood_at.elapsed().as_secs_f64();
    assert!(
        cpu < 0.25 * elapsed + 1.0,
        "tetherd used {cpu:.2} s of CPU in a {elapsed:.1} s flood"
    );
    let logged = log_bytes(&env) - log_before;
    assert!(
        logged < 64 * 1024,
        "the flood made tetherd log {logged} bytes:\n{}",
        env.daemon_log()
    );
    let rss_after = rss_kib(pid);
    println!("rss before {rss_before} KiB, after {rss_after} KiB; cpu {cpu:.2} s; log +{logged} B");
    assert!(
        rss_after < rss_before + 24 * 1024,
        "RSS {rss_before} KiB before the flood, {rss_after} KiB after it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_out_of_file_descriptors_backs_off_quietly_and_recovers() {
    raise_own_fd_limit();
    // A cap above the fd limit, so the flood runs the daemon out of fds.
    let env = TestEnv::with_config(
        Script::sequential(vec![]),
        "[connections]\nmax = 4096\nhandshake_timeout_ms = 1000\n",
    )
    .await;
    let daemon = env.spawn_daemon(None).await;
    let pid = daemon.id() as i32;
    // Waits for the model client the daemon builds at start (it reads ~150 CA files, each a
    // warning when out of fds; that is not what this test is about).
    env.ok(&["daemon", "status"]);
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=200:200"])
        .status()
        .unwrap();
    assert!(limited.success(), "prlimit failed");
    let (cpu_before, log_before) = (cpu_seconds(pid), log_bytes(&env));
    let started = Instant::now();

    // More than the daemon has fds for: the rest wait in the listen backlog.
    let conns = idle_connections(&env.paths.socket(), 800).await;
    let frames = closing_frames(conns).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    println!("out of fds: cpu {cpu:.2} s in {elapsed:.1} s");
    assert!(
        cpu < 0.25 * elapsed + 0.5,
        "tetherd used {cpu:.2} s of CPU in {elapsed:.1} s out of fds: its accept loop spins"
    );
    let logged = log_bytes(&env) - log_before;
    let log = env.daemon_log();
    assert!(
        logged < 64 * 1024,
        "out of fds, tetherd logged {logged} bytes:\n{}",
        &log[log.len().saturating_sub(4096)..]
    );
    let timed_out = count(&frames, ErrorCode::HandshakeTimeout);
    assert_eq!(
        timed_out,
        frames.len(),
        "every silent connection is closed at the handshake timeout once the daemon gets to it"
    );
    env.ok(&["ls"]);
    assert!(
        log.contains("out of file descriptors"),
        "the back-off is logged (once per interval)"
    );
}
