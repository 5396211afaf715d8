//! A full disk: the write that can't be made durable is refused with a clear error, nothing
//! stored is lost, the daemon keeps serving, and everything works again once space is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use tether_e2e::{Reply, TestEnv, assert_log_invariants};
use tether_mock_llm::Script;
use tether_proto::EventBody;

/// Fills the filesystem holding `dir` with one file; returns its path.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // Fill the last partial chunk too.
    while f.write_all(&[0u8; 512]).is_ok() {}
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_the_write_and_loses_nothing() {
    let Some(env) = TestEnv::on_small_disk(
        Script::sequential(vec![
            Reply::text("first"),
            Reply::text("after space came back"),
        ]),
        6 * 1024 * 1024,
    )
    .await
    else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    env.ok(&["run", "hello", "--name", "full"]);
    let before = env.events("full");

    let filler = fill(env.home.path());
    let out = env.run(&["send", "full", "this cannot be stored"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("disk is full") || stderr.contains("disk full"),
        "{stderr}"
    );

    // Reads still work and nothing stored changed; no model call was made.
    assert!(env.ok(&["ls"]).contains("full"));
    assert_eq!(env.events("full"), before);
    assert_eq!(env.mock.request_count(), 1);

    std::fs::remove_file(filler).unwrap();
    let out = env.run(&["send", "full", "now it fits", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "after space came back"
    );
    let events = env.events("full");
    assert_log_invariants(&events);
    assert_eq!(&events[..before.len()], &before[..]);
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::UserMessage { content } => Some(tether_proto::blocks_text(content)),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["hello", "now it fits"]);
}

/// The disk fills while the model is answering: the answer can't be committed, so the session
/// pauses (watchers are told why), and it finishes by itself once space is back. Nothing is
/// lost and the model is not asked twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_turn_waits_out_a_full_disk_and_continues() {
    let Some(env) = TestEnv::on_small_disk(
        Script::sequential(vec![tether_mock_llm::Reply::stall(vec![
            tether_mock_llm::Block::text("the answer that had to wait"),
        ])]),
        6 * 1024 * 1024,
    )
    .await
    else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let id = env
        .ok(&["new", "--detach", "--name", "paused", "go"])
        .trim()
        .to_string();
    env.mock.wait_for_requests(1).await;
    let filler = fill(env.home.path());
    env.mock.release_stalls();
    let mut c = env.client().await;
    c.attach_until(&id, 0, |f| {
        matches!(f, tether_proto::ServerFrame::Delta(d)
            if matches!(&d.kind, tether_proto::DeltaKind::Notice { message } if message.contains("paused")))
    })
    .await;
    std::fs::remove_file(filler).unwrap();
    c.attach_until(&id, 0, |f| {
        matches!(f, tether_proto::ServerFrame::Event(e) if matches!(e.body, EventBody::SessionStatusIdle { .. }))
    })
    .await;
    let events = env.events("paused");
    assert_log_invariants(&events);
    let answer: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AgentMessage { content } => Some(tether_proto::blocks_text(content)),
            _ => None,
        })
        .collect();
    assert_eq!(answer, vec!["the answer that had to wait"]);
    assert_eq!(env.mock.request_count(), 1);
}
