//! `sessions.watch` against the real daemon (issue 20): the session list once, then each
//! change pushed as it happens; the watcher never lists again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use tether_e2e::{RawClient, Reply, TestEnv};
use tether_mock_llm::Script;
use tether_proto::watch::{SessionsChanged, SessionsWatching};
use tether_proto::{ServerFrame, SessionStatus, StopReason};

/// The next `sessions` push (other frames are skipped), within 30 s.
async fn next_change(c: &mut RawClient) -> SessionsChanged {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match c.recv().await.expect("the daemon closed the watch") {
                ServerFrame::Sessions(change) => return change,
                _ => continue,
            }
        }
    })
    .await
    .expect("a sessions push within 30 s")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_turn_a_rename_and_a_delete_reach_the_watcher_without_a_list_call() {
    let env = TestEnv::new(Script::sequential(vec![Reply::text("hello there")])).await;
    let id = env.ok(&["new", "--name", "watched"]).trim().to_string();
    let mut w = RawClient::connect(&env.paths.socket()).await;
    let first: SessionsWatching =
        serde_json::from_value(w.call("sessions.watch", json!({})).await.unwrap()).unwrap();
    let (mut list, mut seq) = (first.data, first.seq);
    assert_eq!(list.len(), 1);
    let before = list[0].last_seq;
    assert_eq!(list[0].status, SessionStatus::Idle);

    // Another client drives the session; the watcher only reads pushes.
    env.ok(&["send", "watched", "hi"]);
    loop {
        next_change(&mut w).await.apply(&mut list, &mut seq);
        let s = &list[0];
        if s.status == SessionStatus::Idle
            && s.stop_reason == Some(StopReason::EndTurn)
            && s.last_seq > before
        {
            break;
        }
    }
    assert!(list[0].usage.model_requests > 0, "{:?}", list[0].usage);

    env.ok(&["rename", "watched", "renamed"]);
    while list[0].name.as_deref() != Some("renamed") {
        next_change(&mut w).await.apply(&mut list, &mut seq);
    }

    // A second watcher starts from the list as it is now and hears the same delete.
    let mut w2 = RawClient::connect(&env.paths.socket()).await;
    let second: SessionsWatching =
        serde_json::from_value(w2.call("sessions.watch", json!({})).await.unwrap()).unwrap();
    assert!(second.seq >= seq, "the counter never goes back");
    assert_eq!(second.data[0].name.as_deref(), Some("renamed"));
    env.ok(&["rm", &id]);
    for c in [&mut w, &mut w2] {
        let change = next_change(c).await;
        assert_eq!(change.removed, vec![id.clone()], "{change:?}");
    }
}
