//! The wire protocol against the real daemon: bad input never hurts anyone else, and attach
//! delivers every event exactly once whatever the timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_e2e::{RawClient, TestEnv, page_seqs};
use tether_mock_llm::Script;
use tether_proto::{ErrorCode, ServerFrame};

async fn env_with_session() -> (TestEnv, String) {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let id = env.ok(&["new", "--name", "quiet"]).trim().to_string();
    (env, id)
}

async fn expect_close_with(c: &mut RawClient, code: ErrorCode) {
    match c.recv().await {
        Some(ServerFrame::Error(e)) => assert_eq!(e.code, code, "{e}"),
        other => panic!("expected an error frame {code}, got {other:?}"),
    }
    assert!(
        c.recv().await.is_none(),
        "connection must be closed after a fatal frame"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_get_an_error_and_a_clean_close_and_hurt_no_one() {
    let (env, id) = env_with_session().await;
    let socket = env.paths.socket();
    // A bystander attached the whole time.
    let mut bystander = RawClient::connect(&socket).await;
    bystander
        .call("session.interrupt", json!({"session": id}))
        .await
        .unwrap();
    let before = env.events(&id);

    let mut c = RawClient::connect(&socket).await;
    c.send_bytes(b"{not json}\n").await;
    expect_close_with(&mut c, ErrorCode::MalformedFrame).await;

    let mut c = RawClient::connect(&socket).await;
    c.send_bytes(b"{\"id\":1,\"method\":\"session.get\",\"params\":{\"session\":\"\xff\xfe\"}}\n")
        .await;
    expect_close_with(&mut c, ErrorCode::InvalidUtf8).await;

    let mut c = RawClient::connect(&socket).await;
    let big = vec![b'x'; tether_proto::MAX_FRAME_BYTES + 1024];
    // The daemon may close before we finish writing; that is the point.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut c.stream, &big).await;
    expect_close_with(&mut c, ErrorCode::FrameTooLarge).await;

    // Requests before hello.
    let mut c = RawClient::connect_raw(&socket).await;
    c.send_bytes(b"{\"id\":1,\"method\":\"daemon.status\"}\n")
        .await;
    expect_close_with(&mut c, ErrorCode::HandshakeRequired).await;

    // Wrong protocol version.
    let mut c = RawClient::connect_raw(&socket).await;
    c.send_bytes(b"{\"hello\":{\"protocol\":99,\"client\":\"old\",\"version\":\"0.0.1\"}}\n")
        .await;
    match c.recv().await {
        Some(ServerFrame::Error(e)) => {
            assert_eq!(e.code, ErrorCode::ProtocolMismatch);
            assert!(e.message.contains("99"), "{e}");
        }
        other => panic!("{other:?}"),
    }

    // Request-level errors keep the connection usable.
    let mut c = RawClient::connect(&socket).await;
    let e = c.call("session.explode", json!({})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownMethod);
    let e = c
        .call("session.get", json!({"session": "sesn_doesnotexist"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = c
        .call("session.send", json!({"session": id}))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(e.message.contains("content"), "{e}");
    c.call("session.archive", json!({"session": id}))
        .await
        .unwrap();
    let e = c
        .call(
            "session.send",
            json!({"session": id, "content": [{"type": "text", "text": "hi"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Archived);
    assert!(c.call("daemon.status", json!({})).await.is_ok());

    // The bystander never noticed, and nothing stored changed.
    assert!(bystander.call("daemon.status", json!({})).await.is_ok());
    assert_eq!(env.events(&id), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_refuses_to_start_and_the_first_keeps_serving() {
    let (env, id) = env_with_session().await;
    let pid = env.daemon_pid().unwrap();
    let out = env.tetherd().output().unwrap();
    assert_eq!(out.status.code(), Some(75));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(&pid.to_string()), "{stderr}");
    assert_eq!(env.daemon_pid(), Some(pid));
    env.ok(&["logs", &id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_starts_yield_one_daemon() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let children: Vec<_> = (0..6)
        .map(|_| env.tether().args(["ls", "--json"]).output())
        .collect();
    for c in children {
        assert!(c.unwrap().status.success());
    }
    let pid = env.daemon_pid().unwrap();
    let mut c = env.client().await;
    let st = c.call("daemon.status", json!({})).await.unwrap();
    assert_eq!(st["pid"], pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_and_runtime_dir_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (env, _) = env_with_session().await;
    let sock = std::fs::metadata(env.paths.socket()).unwrap();
    assert_eq!(sock.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(&env.paths.runtime_dir).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    assert!(
        env.paths
            .socket()
            .to_string_lossy()
            .ends_with("tetherd-v1.sock")
    );
}

/// Writers append thousands of events while clients attach at random points: every client
/// sees each seq exactly once, in order, with no gap.
#[tokio::test(flavor = "multi_thread")]
async fn attach_catch_up_under_a_racing_writer() {
    let (env, id) = env_with_session().await;
    let socket = env.paths.socket();
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 750;
    const TOTAL: u64 = (WRITERS * PER_WRITER) as u64;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let socket = socket.clone();
        let id = id.clone();
        writers.push(tokio::spawn(async move {
            let mut c = RawClient::connect(&socket).await;
            for _ in 0..PER_WRITER {
                c.call("session.interrupt", json!({"session": id}))
                    .await
                    .unwrap();
            }
        }));
    }
    let mut readers = Vec::new();
    for i in 0..12u64 {
        let socket = socket.clone();
        let id = id.clone();
        readers.push(tokio::spawn(async move {
            // Stagger the attaches across the write window.
            for _ in 0..(i * 7) {
                tokio::task::yield_now().await;
            }
            let mut c = RawClient::connect(&socket).await;
            let after = (i * 211) % 1500;
            let frames = c
                .attach_until(
                    &id,
                    after,
                    |f| matches!(f, ServerFrame::Event(e) if e.seq == TOTAL),
                )
                .await;
            let seqs: Vec<u64> = frames
                .iter()
                .filter_map(|f| match f {
                    ServerFrame::Event(e) => Some(e.seq),
                    _ => None,
                })
                .collect();
            let expected: Vec<u64> = (after + 1..=TOTAL).collect();
            assert_eq!(seqs, expected, "client {i} attached after {after}");
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
}

/// The daemon checks SO_PEERCRED: even with the directory and socket opened up, a process of
/// another user gets a clear refusal and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn connections_from_another_uid_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: acting as another user needs root");
        return;
    }
    let (env, _) = env_with_session().await;
    let open = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open(env.home.path(), 0o711);
    open(&env.paths.runtime_dir, 0o711);
    open(&env.paths.socket(), 0o666);
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
# The refusal comes at accept time, before any hello: read it first.
print(s.makefile().readline().strip())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(env.paths.socket())
        .uid(65534)
        .gid(65534)
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: python3 is not installed");
        return;
    };
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.contains("permission_denied"),
        "stdout: {line} stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!line.contains("welcome"));
    // The owner is still served.
    let mut c = env.client().await;
    assert!(c.call("daemon.status", json!({})).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn ranged_reads_page_newest_first() {
    let (env, id) = env_with_session().await;
    let mut c = env.client().await;
    for _ in 0..25 {
        c.call("session.interrupt", json!({"session": id}))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut params = json!({"session": id, "limit": 10, "order": "desc"});
        if let Some(b) = before {
            params["before_seq"] = json!(b);
        }
        let page = c.call("session.events", params).await.unwrap();
        seen.extend(page_seqs(&page));
        match page["next"].as_u64() {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).rev().collect::<Vec<u64>>());
    // A window: after 5, before 9.
    let page = c
        .call(
            "session.events",
            json!({"session": id, "after_seq": 5, "before_seq": 9, "order": "asc"}),
        )
        .await
        .unwrap();
    assert_eq!(page_seqs(&page), vec![6, 7, 8]);
    // Approvals and custom tool results are validated against the session's state.
    let e = c
        .call(
            "tool.confirm",
            json!({"session": id, "tool_use_id": "sevt_nope", "result": "allow"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("waiting for approval"), "{e}");
}
