//! Read-only attach at the protocol level: the daemon refuses every write from a connection
//! that attached read-only, whatever the client does next, and everyone sees who is watching.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::{RawClient, Reply, TestEnv};
use tether_mock_llm::Script;
use tether_proto::ErrorCode;

fn writes(id: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "session.send",
            json!({"session": id, "content": [{"type": "text", "text": "x"}]}),
        ),
        ("session.interrupt", json!({"session": id})),
        (
            "tool.confirm",
            json!({"session": id, "tool_use_id": "sevt_x", "result": "allow"}),
        ),
        (
            "custom_tool.result",
            json!({"session": id, "custom_tool_use_id": "sevt_y", "content": [{"type": "text", "text": "{}"}]}),
        ),
        ("session.archive", json!({"session": id})),
        ("session.delete", json!({"session": id})),
    ]
}

async fn assert_all_refused(c: &mut RawClient, id: &str, when: &str) {
    for (method, params) in writes(id) {
        let e = c.call(method, params).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::ReadOnly, "{when}: {method}: {e}");
        assert!(
            e.message.contains("read-only") && e.message.contains("without --read-only"),
            "{when}: the message says why and what to do: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_connection_cannot_write_and_watchers_are_counted() {
    let env = TestEnv::new(Script::sequential(vec![Reply::text("hello there")])).await;
    let id = env.ok(&["new", "--name", "watched"]).trim().to_string();
    let socket = env.paths.socket();

    let mut ro = RawClient::connect(&socket).await;
    ro.call(
        "session.attach",
        json!({"session": id, "after_seq": 0, "read_only": true}),
    )
    .await
    .unwrap();
    let mut rw = RawClient::connect(&socket).await;
    rw.call("session.attach", json!({"session": id, "after_seq": 0}))
        .await
        .unwrap();

    let info = rw
        .call("session.get", json!({"session": id}))
        .await
        .unwrap();
    assert_eq!(info["attached_clients"], 2, "{info}");
    assert_eq!(info["read_only_clients"], 1, "{info}");
    let ls = env.ok(&["ls"]);
    assert!(ls.contains("CLIENTS") && ls.contains("2 (1 ro)"), "{ls}");

    assert_all_refused(&mut ro, &id, "attached read-only").await;

    // Re-attaching without the flag, or detaching, does not shed read-only.
    ro.call("session.attach", json!({"session": id, "after_seq": 0}))
        .await
        .unwrap();
    assert_all_refused(&mut ro, &id, "re-attached").await;
    ro.call("session.detach", json!({"session": id}))
        .await
        .unwrap();
    assert_all_refused(&mut ro, &id, "detached").await;

    // The writer beside it is unaffected, and the watcher still sees the turn.
    rw.call(
        "session.send",
        json!({"session": id, "content": [{"type": "text", "text": "hi"}]}),
    )
    .await
    .unwrap();
    let info = rw
        .call("session.get", json!({"session": id}))
        .await
        .unwrap();
    assert_eq!(info["attached_clients"], 1, "{info}");
    assert_eq!(info["read_only_clients"], 0, "{info}");
    let mut watcher = RawClient::connect(&socket).await;
    let seen = watcher
        .attach_until(&id, 0, |f| {
            matches!(f, tether_proto::ServerFrame::Event(e) if e.type_name() == "agent.message")
        })
        .await;
    assert!(!seen.is_empty());
    assert_eq!(
        env.events(&id)
            .iter()
            .filter(|e| e.type_name() == "user.message")
            .count(),
        1
    );
}
