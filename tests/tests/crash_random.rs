//! Randomized crash test (§C 9 and 16): many sessions run a counter program — every bash call
//! appends a token unique to that call to a file — while the daemon is SIGKILLed at random
//! moments and restarted. Afterwards, per session: every `ok` call's token is in the file
//! exactly once, no token is there twice (nothing ran twice), every token in the file belongs
//! to an `ok` or `interrupted` call, and the program reached its end.
//!
//! CI runs a bounded version; `TETHER_CRASH_SESSIONS=50 TETHER_CRASH_KILLS=1000 cargo test -p
//! tether-e2e --release --test crash_random -- --nocapture` runs the big one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tether_e2e::{Reply, TestEnv, assert_log_invariants};
use tether_mock_llm::{Route, Script, Timing};
use tether_proto::{EventBody, StopReason, ToolStatus, blocks_text};

/// Bash calls per session.
const CALLS: usize = 12;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: a seeded, printable source of "random" delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// `TETHER_CRASH_SEED`, or the clock's nanoseconds (printed, so a failure can be replayed).
fn seed() -> u64 {
    std::env::var("TETHER_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

/// The nemesis: `kills` times, a daemon (the running one first, then fresh ones) is
/// SIGKILLed at a random moment of its life, recovery included.
async fn kill_randomly(env: &TestEnv, daemon: std::process::Child, kills: usize, rng: &mut Rng) {
    let mut daemon = Some(daemon);
    for _ in 0..kills {
        let d = match daemon.take() {
            Some(d) => d,
            None => env.spawn_daemon(None).await,
        };
        tokio::time::sleep(Duration::from_millis(rng.next() % 120)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        env.wait_killed(d).await;
    }
}

/// A last, undisturbed daemon finishes every program; returned once every session is idle
/// (a session's status aggregates its threads).
async fn finish(env: &TestEnv) -> std::process::Child {
    let daemon = env.spawn_daemon(None).await;
    let mut c = env.client().await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = c.call("session.list", json!({})).await.unwrap();
        let running = list["data"]
            .as_array()
            .unwrap_or(&vec![])
            .iter()
            .filter(|s| s["status"] != "idle")
            .count();
        if running == 0 {
            return daemon;
        }
        assert!(
            Instant::now() < deadline,
            "{running} sessions still running after 300 s"
        );
        // Polling the list: there is no single event for "all sessions idle".
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks one program's counter file against its log: every `ok` call's token is in the
/// file, no token twice, every token accounted for by an `ok` or `interrupted` call, and
/// `CALLS` calls in all. Returns how many were interrupted.
fn check_counter(what: &str, events: &[tether_proto::Event], file: &str) -> usize {
    let mut token_of: HashMap<String, String> = HashMap::new();
    for e in events {
        if let EventBody::AgentToolUse { input, .. } = &e.body {
            let cmd = input["command"].as_str().unwrap();
            let token = cmd.split_whitespace().nth(1).unwrap().to_string();
            token_of.insert(e.id.clone(), token);
        }
    }
    let mut ok = Vec::new();
    let mut interrupted = Vec::new();
    for e in events {
        if let EventBody::AgentToolResult {
            tool_use_id,
            status,
            content,
            ..
        } = &e.body
        {
            let token = token_of[tool_use_id].clone();
            match status {
                ToolStatus::Ok => ok.push(token),
                ToolStatus::Interrupted => interrupted.push(token),
                other => panic!(
                    "{what}: unexpected {other:?} result: {}",
                    blocks_text(content)
                ),
            }
        }
    }
    let lines: Vec<&str> = file.lines().collect();
    for t in &ok {
        let n = lines.iter().filter(|l| **l == t.as_str()).count();
        assert_eq!(n, 1, "{what}: ok call {t} is in the file {n} times");
    }
    for l in &lines {
        let n = lines.iter().filter(|x| *x == l).count();
        assert_eq!(n, 1, "{what}: {l} ran {n} times");
        assert!(
            ok.iter().chain(&interrupted).any(|t| t == l),
            "{what}: {l} ran but no call of the log accounts for it"
        );
    }
    assert_eq!(ok.len() + interrupted.len(), CALLS, "{what}");
    interrupted.len()
}

fn program() -> Script {
    let mut replies: Vec<Reply> = (0..CALLS)
        .map(|k| {
            Reply::tool_use(
                "bash",
                json!({"command": format!("echo tok-{k} >> counter.txt; sleep 0.02; echo ok-{k}")}),
            )
        })
        .collect();
    replies.push(Reply::text("done"));
    // by_turn: the reply depends on how far the session got, so a re-issued request gets the
    // same reply and sessions don't share a sequence.
    Script::by_turn(replies).with_timing(Timing {
        ttft_ms: 0,
        chunk_delay_ms: 1,
        chunk_chars: 8,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kills_never_run_a_call_twice_or_lose_one() {
    let sessions = env_usize("TETHER_CRASH_SESSIONS", 10);
    let kills = env_usize("TETHER_CRASH_KILLS", 20);
    let seed = seed();
    eprintln!("random crash test: {sessions} sessions, {kills} kills, TETHER_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    // Crash loops are part of the nemesis here, not a failure: never give up on a session.
    let env = TestEnv::with_config(program(), "max_resumes = 1000000").await;

    let daemon = env.spawn_daemon(None).await;
    let mut ids = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..sessions {
        let dir = tempfile::Builder::new()
            .prefix(&format!("s{i}-"))
            .tempdir_in(env.home.path())
            .unwrap();
        let id = env
            .ok(&[
                "new",
                "--detach",
                "--dir",
                dir.path().to_str().unwrap(),
                "count",
            ])
            .trim()
            .to_string();
        ids.push(id);
        dirs.push(dir);
    }

    eprintln!(
        "{sessions} sessions started {:?} into the test",
        t0.elapsed()
    );
    let started = Instant::now();
    kill_randomly(&env, daemon, kills, &mut rng).await;
    eprintln!("{kills} kills in {:?}", started.elapsed());
    let started = Instant::now();
    let _final = finish(&env).await;
    eprintln!(
        "all programs finished {:?} after the last kill",
        started.elapsed()
    );
    assert_eq!(env.integrity_check(), "ok");

    let mut interrupted_total = 0;
    for (id, dir) in ids.iter().zip(&dirs) {
        let events = env.events(id);
        assert_log_invariants(&events);
        let file = std::fs::read_to_string(dir.path().join("counter.txt")).unwrap_or_default();
        interrupted_total += check_counter(&format!("session {id}"), &events, &file);
        assert!(
            events.iter().any(|e| matches!(&e.body, EventBody::AgentMessage { content } if blocks_text(content) == "done")),
            "session {id}: the program did not reach its end"
        );
        assert!(matches!(
            events.last().unwrap().body,
            EventBody::SessionStatusIdle {
                stop_reason: StopReason::EndTurn
            }
        ));
    }
    eprintln!("checked {:?} into the test", t0.elapsed());
    eprintln!(
        "{sessions} sessions × {CALLS} calls: {interrupted_total} calls interrupted by kills, none ran twice"
    );
}

/// Per thread in the threads variant: its agent's name, also the file its calls append to.
const WORKERS: [&str; 2] = ["wa", "wb"];

/// A worker's program: `CALLS` bash calls appending tokens to `<name>.txt`, then "done".
fn worker(name: &str) -> Route {
    let mut replies: Vec<Reply> = (0..CALLS)
        .map(|k| {
            Reply::tool_use(
                "bash",
                json!({"command": format!("echo {name}-{k} >> {name}.txt; sleep 0.02; echo ok")}),
            )
        })
        .collect();
    replies.push(Reply::text("done"));
    Route::new(name, replies)
        .when_system(format!("counter worker {name}"))
        .by_turn()
}

/// The randomized crash test over multi-agent sessions: each lead spawns two inline agents
/// at once, each runs the counter program in the shared workspace, and the lead ends when
/// both replied. Afterwards, per session: each spawn has one result and made one thread,
/// each thread got its message exactly once, and per thread the counter rules above hold.
#[tokio::test(flavor = "multi_thread")]
async fn random_kills_with_threads_never_run_a_call_twice_or_deliver_twice() {
    let sessions = env_usize("TETHER_CRASH_SESSIONS", 10) / 2;
    let kills = env_usize("TETHER_CRASH_KILLS", 20);
    let seed = seed();
    eprintln!(
        "random crash test with threads: {sessions} sessions, {kills} kills, TETHER_CRASH_SEED={seed}"
    );
    let mut rng = Rng(seed);
    let spawn = |name: &str| {
        (
            "spawn_agent",
            json!({"name": name, "system": format!("counter worker {name}"), "message": "count"}),
        )
    };
    let lead = Script::by_turn(vec![
        Reply::tools(WORKERS.iter().map(|w| spawn(w)).collect()),
        Reply::text("all done"),
    ])
    .with_timing(Timing {
        ttft_ms: 0,
        chunk_delay_ms: 1,
        chunk_chars: 8,
    });
    let script = WORKERS.iter().fold(lead, |s, w| s.with_route(worker(w)));
    let env = TestEnv::with_config(script, "max_resumes = 1000000").await;
    let daemon = env.spawn_daemon(None).await;
    let mut c = env.client().await;
    c.call(
        "agent.create",
        json!({"name": "lead", "system": "crash lead", "multiagent": {"type": "multiagent_20261001"},
               "tools": [{"type": "agent_toolset_20260401"}]}),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..sessions {
        let dir = tempfile::Builder::new()
            .prefix(&format!("s{i}-"))
            .tempdir_in(env.home.path())
            .unwrap();
        let info = c
            .call(
                "session.create",
                json!({"agent": "lead", "dir": dir.path().display().to_string()}),
            )
            .await
            .unwrap();
        let id = info["id"].as_str().unwrap().to_string();
        c.call(
            "session.send",
            json!({"session": id, "content": [{"type": "text", "text": "go"}]}),
        )
        .await
        .unwrap();
        ids.push(id);
        dirs.push(dir);
    }
    drop(c);
    kill_randomly(&env, daemon, kills, &mut rng).await;
    let _final = finish(&env).await;
    assert_eq!(env.integrity_check(), "ok");

    for (id, dir) in ids.iter().zip(&dirs) {
        let events = env.events(id);
        assert_log_invariants(&events);
        let spawns: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::AgentToolUse { name, .. } if name == "spawn_agent" => {
                    Some(e.id.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(spawns.len(), WORKERS.len(), "session {id}: {spawns:?}");
        for call in &spawns {
            let n = events
                .iter()
                .filter(|e| matches!(&e.body, EventBody::AgentToolResult { tool_use_id, .. } if tool_use_id == call))
                .count();
            assert_eq!(n, 1, "session {id}: spawn call {call} has {n} results");
        }
        let created = events
            .iter()
            .filter(|e| matches!(e.body, EventBody::SessionThreadCreated { .. }))
            .count();
        assert_eq!(created, WORKERS.len(), "session {id}: one thread per spawn");
        assert!(
            events.iter().any(|e| matches!(&e.body, EventBody::AgentMessage { content } if blocks_text(content) == "all done")),
            "session {id}: the lead did not reach its end"
        );
        for w in WORKERS {
            let thread: Vec<tether_proto::Event> = env
                .ok(&["logs", id, "--thread", w, "--json"])
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_log_invariants(&thread);
            let received = thread
                .iter()
                .filter(|e| matches!(e.body, EventBody::AgentThreadMessageReceived { .. }))
                .count();
            assert_eq!(
                received, 1,
                "session {id} thread {w}: the message arrived {received} times"
            );
            let file =
                std::fs::read_to_string(dir.path().join(format!("{w}.txt"))).unwrap_or_default();
            check_counter(&format!("session {id} thread {w}"), &thread, &file);
        }
    }
}
