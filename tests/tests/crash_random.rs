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
use tether_mock_llm::{Script, Timing};
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
    let seed = std::env::var("TETHER_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
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
    let mut daemon = Some(daemon);
    for _ in 0..kills {
        let d = match daemon.take() {
            Some(d) => d,
            None => env.spawn_daemon(None).await,
        };
        // The nemesis: a random moment in the daemon's life (recovery included).
        let delay = Duration::from_millis(rng.next() % 120);
        tokio::time::sleep(delay).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        env.wait_killed(d).await;
    }
    eprintln!("{kills} kills in {:?}", started.elapsed());
    let started = Instant::now();

    // A last, undisturbed daemon finishes every program.
    let _final = env.spawn_daemon(None).await;
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
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{running} sessions still running after 300 s"
        );
        // Polling the list: there is no single event for "all sessions idle".
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "all programs finished {:?} after the last kill",
        started.elapsed()
    );
    assert_eq!(env.integrity_check(), "ok");

    let mut interrupted_total = 0;
    for (id, dir) in ids.iter().zip(&dirs) {
        let events = env.events(id);
        assert_log_invariants(&events);
        let mut token_of: HashMap<String, String> = HashMap::new();
        for e in &events {
            if let EventBody::AgentToolUse { input, .. } = &e.body {
                let cmd = input["command"].as_str().unwrap();
                let token = cmd.split_whitespace().nth(1).unwrap().to_string();
                token_of.insert(e.id.clone(), token);
            }
        }
        let mut ok = Vec::new();
        let mut interrupted = Vec::new();
        for e in &events {
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
                        "session {id}: unexpected {other:?} result: {}",
                        blocks_text(content)
                    ),
                }
            }
        }
        interrupted_total += interrupted.len();
        let file = std::fs::read_to_string(dir.path().join("counter.txt")).unwrap_or_default();
        let lines: Vec<&str> = file.lines().collect();
        for t in &ok {
            let n = lines.iter().filter(|l| **l == t.as_str()).count();
            assert_eq!(n, 1, "session {id}: ok call {t} is in the file {n} times");
        }
        for l in &lines {
            let n = lines.iter().filter(|x| *x == l).count();
            assert_eq!(n, 1, "session {id}: {l} ran {n} times");
            assert!(
                ok.iter().chain(&interrupted).any(|t| t == l),
                "session {id}: {l} ran but no call of the log accounts for it"
            );
        }
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
        assert_eq!(ok.len() + interrupted.len(), CALLS, "session {id}");
    }
    eprintln!("checked {:?} into the test", t0.elapsed());
    eprintln!(
        "{sessions} sessions × {CALLS} calls: {interrupted_total} calls interrupted by kills, none ran twice"
    );
}
