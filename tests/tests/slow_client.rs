//! Slow clients never stall a session: a client that stops reading is told to resync and still
//! ends with the whole log, while a fast client beside it sees every event and every delta once,
//! in order. (How fast the session runs with and without clients is a benchmark: bench/.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use tether_e2e::{Block, RawClient, Reply, TestEnv, assert_log_invariants};
use tether_mock_llm::{Script, Timing};
use tether_proto::{DeltaKind, Event, EventBody, ServerFrame};

/// Text deltas in the reply, `DELTA_CHARS` characters each: 4.8 MB in all, past the 4 MiB a
/// client's queue may hold even after the daemon merges a burst's deltas into one push.
const DELTAS: usize = 100_000;
const DELTA_CHARS: usize = 48;
const STALL: Duration = Duration::from_secs(10);

fn is_idle_after(e: &Event, floor: u64) -> bool {
    e.seq > floor && matches!(e.body, EventBody::SessionStatusIdle { .. })
}

async fn attach(c: &mut RawClient, session: &str, after_seq: u64) {
    c.call(
        "session.attach",
        json!({"session": session, "after_seq": after_seq}),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_client_is_resynced_and_a_fast_client_misses_nothing() {
    let text: String = (0..DELTAS * DELTA_CHARS)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let script = Script::sequential(vec![Reply::Message {
        blocks: vec![Block::Text { text: text.clone() }],
        stop_reason: None,
        usage: None,
    }])
    .with_timing(Timing {
        chunk_chars: DELTA_CHARS,
        ..Timing::default()
    });
    let env = TestEnv::new(script).await;
    let id = env.ok(&["new", "--name", "stream"]).trim().to_string();
    let socket = env.paths.socket();

    let mut fast = RawClient::connect(&socket).await;
    let mut slow = RawClient::connect(&socket).await;
    attach(&mut fast, &id, 0).await;
    attach(&mut slow, &id, 0).await;
    // From here on `slow` reads nothing until the session has finished and STALL has passed.
    let stalled_at = Instant::now();
    let mut driver = RawClient::connect(&socket).await;
    let sent = driver
        .call(
            "session.send",
            json!({"session": id, "content": [{"type": "text", "text": "go"}]}),
        )
        .await
        .unwrap();
    let floor = sent["event"]["seq"].as_u64().unwrap();

    let mut fast_events: Vec<Event> = Vec::new();
    let mut fast_text = String::new();
    loop {
        match fast.recv().await.expect("fast client lost its connection") {
            ServerFrame::Event(e) => {
                let done = is_idle_after(&e, floor);
                fast_events.push(*e);
                if done {
                    break;
                }
            }
            ServerFrame::Delta(d) => {
                if let DeltaKind::Text { text, .. } = d.kind {
                    fast_text.push_str(&text);
                }
            }
            ServerFrame::Resync(r) => panic!("the fast client was told to resync: {r:?}"),
            _ => {}
        }
    }
    // The session finished while `slow` was stalled: it never waited for it.
    let log = env.events(&id);
    assert_log_invariants(&log);
    let seqs = |evs: &[Event]| evs.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(&fast_events),
        seqs(&log),
        "fast client: every event once, in order"
    );
    assert_eq!(fast_text.len(), text.len(), "fast client: every delta");
    assert!(fast_text == text, "fast client: deltas in order");
    let answer = log
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentMessage { content } => Some(content[0].as_text().to_string()),
            _ => None,
        })
        .expect("agent.message in the log");
    assert_eq!(answer, text);

    // Keep the stall going for the full STALL, then read again.
    if let Some(rest) = STALL.checked_sub(stalled_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let mut slow_events: Vec<Event> = Vec::new();
    let mut resyncs = 0;
    loop {
        match slow.recv().await.expect("stalled client was disconnected") {
            ServerFrame::Event(e) => {
                let done = is_idle_after(&e, floor);
                if let Some(last) = slow_events.last() {
                    assert_eq!(e.seq, last.seq + 1, "stalled client: gap or duplicate");
                }
                slow_events.push(*e);
                if done {
                    break;
                }
            }
            ServerFrame::Resync(r) => {
                resyncs += 1;
                let last = slow_events.last().map(|e| e.seq).unwrap_or(0);
                assert_eq!(r.from_seq, last + 1, "resync names the next seq it needs");
                attach(&mut slow, &id, r.from_seq - 1).await;
            }
            _ => {}
        }
    }
    assert!(
        resyncs >= 1,
        "the stalled client overflowed and was resynced"
    );
    assert_eq!(
        seqs(&slow_events),
        seqs(&log),
        "stalled client: the complete log"
    );
    for (got, want) in slow_events.iter().zip(&log) {
        assert_eq!(got.id, want.id);
    }
}
