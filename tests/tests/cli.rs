//! The CLI end to end: real `tether` and `tetherd` against the in-repo mock model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_e2e::{Reply, TestEnv, assert_log_invariants, page_seqs, types};
use tether_mock_llm::{Script, scenarios};
use tether_proto::{EventBody, StopReason, ToolStatus};

fn tool_results(body: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in body["messages"].as_array().unwrap() {
        if let Some(blocks) = m["content"].as_array() {
            for b in blocks {
                if b["type"] == "tool_result" {
                    let content = match &b["content"] {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    out.push((b["tool_use_id"].as_str().unwrap().to_string(), content));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn bash_then_read_through_tether_run() {
    let env = TestEnv::new(scenarios::bash_then_read()).await;
    let work = tempfile::tempdir().unwrap();
    let out = env.run(&[
        "run",
        "create f.txt containing hello, then read it back",
        "--dir",
        work.path().to_str().unwrap(),
        "--name",
        "scenario",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {stderr}\nlog: {}",
        env.daemon_log()
    );
    assert!(stdout.contains("The file contains hello."), "{stdout}");
    assert!(stderr.contains("⏺ bash"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(work.path().join("f.txt")).unwrap(),
        "hello"
    );

    // The model saw the tool results, in order, tied to the right calls.
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].header("x-api-key"), Some("sk-test-not-a-real-key"));
    assert!(tool_results(&reqs[0].body).is_empty());
    let second = tool_results(&reqs[1].body);
    assert_eq!(second.len(), 1);
    assert!(second[0].1.contains("done"), "{second:?}");
    let third = tool_results(&reqs[2].body);
    assert_eq!(third.len(), 2);
    assert_eq!(third[0], second[0]);
    assert!(third[1].1.contains("hello"), "{third:?}");

    let events = env.events("scenario");
    assert_log_invariants(&events);
    assert_eq!(
        types(&events),
        vec![
            "user.message",
            "session.status_running",
            "span.model_request_start",
            "agent.tool_use",
            "span.model_request_end",
            "span.tool_call_start",
            "agent.tool_result",
            "span.model_request_start",
            "agent.tool_use",
            "span.model_request_end",
            "span.tool_call_start",
            "agent.tool_result",
            "span.model_request_start",
            "agent.message",
            "span.model_request_end",
            "session.status_idle",
        ]
    );
    // The ids the model got back are the tool_use events' ids.
    let tool_use_ids: Vec<&str> = events
        .iter()
        .filter(|e| e.type_name() == "agent.tool_use")
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(third[0].0, tool_use_ids[0]);
    assert_eq!(third[1].0, tool_use_ids[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_survives_daemon_stop_and_start() {
    let env = TestEnv::new(scenarios::bash_then_read()).await;
    env.ok(&["run", "go", "--name", "keep"]);
    let before = env.events("keep");
    let ls_before = env.ok(&["ls", "--json"]);
    env.ok(&["daemon", "stop"]);
    assert!(env.daemon_pid().is_none(), "pid file removed on stop");
    // Any command starts the daemon again.
    let ls_after = env.ok(&["ls", "--json"]);
    let strip = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("attached_clients");
                v
            })
            .collect()
    };
    assert_eq!(strip(&ls_before), strip(&ls_after));
    assert_eq!(env.events("keep"), before);
    let status = env.ok(&["daemon", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["sessions"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn send_wait_streams_and_exit_codes_follow_the_outcome() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("first answer"),
        Reply::text("second answer"),
        Reply::error(401, "authentication_error", "invalid x-api-key"),
    ]))
    .await;
    let id = env
        .ok(&["new", "--detach", "--name", "s1", "hi"])
        .trim()
        .to_string();
    assert!(id.starts_with("sesn_"), "{id}");
    // Wait for the first turn through the CLI itself.
    let out = env.run(&["logs", "s1", "--json"]);
    assert!(out.status.success());
    let mut client = env.client().await;
    client
        .attach_until(&id, 0, |f| matches!(f, tether_proto::ServerFrame::Event(e) if matches!(e.body, EventBody::SessionStatusIdle { .. })))
        .await;
    let out = env.run(&["send", "s1", "again", "--wait"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "second answer");
    let out = env.run(&["send", &id[..12], "third", "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("API key"), "{stderr}");
    let events = env.events("s1");
    assert_log_invariants(&events);
    let last = events.last().unwrap();
    assert!(
        matches!(
            &last.body,
            EventBody::SessionStatusIdle {
                stop_reason: StopReason::Error
            }
        ),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_retried_visibly() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::rate_limited(0),
        Reply::overloaded(),
        Reply::text("made it"),
    ]))
    .await;
    let out = env.run(&["run", "x", "--name", "r"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "made it");
    let events = env.events("r");
    assert_log_invariants(&events);
    let retries = events
        .iter()
        .filter(|e| matches!(&e.body, EventBody::SessionError { error } if error.retry_status.kind == tether_proto::RetryStatusKind::Retrying))
        .count();
    assert_eq!(retries, 2);
    assert_eq!(env.mock.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sessions_and_usage_errors_have_clear_messages_and_codes() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let out = env.run(&["send", "nope", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no session matches `nope`"), "{stderr}");
    let out = env.run(&["send"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["new", "--detach", "--name", "bad name!", "x"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_unreachable_is_exit_code_3() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let out = env
        .tether()
        .env("TETHER_DAEMON_BIN", "/nonexistent/tetherd")
        .args(["ls"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot start the daemon"), "{stderr}");
    let out = env.run(&["daemon", "status"]);
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupt_during_a_long_bash_leaves_no_process_behind() {
    let marker = format!("98{}", std::process::id() % 10000 + 10000);
    let cmd = format!("sleep {marker}1 & sleep {marker}2 & echo started; wait; echo never");
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": cmd})),
        Reply::text("unused"),
    ]))
    .await;
    let id = env
        .ok(&["new", "--detach", "--name", "long", "run it"])
        .trim()
        .to_string();
    let mut c = env.client().await;
    // Wait until the command is running: its first output line arrived.
    c.attach_until(&id, 0, |f| match f {
        tether_proto::ServerFrame::Delta(d) => matches!(&d.kind, tether_proto::DeltaKind::ToolOutput { text, .. } if text.contains("started")),
        tether_proto::ServerFrame::Snapshot(s) => s.tool_output_tail.as_deref().unwrap_or("").contains("started"),
        _ => false,
    })
    .await;
    // Both sleeps were forked before `started` was printed; their exec may still be landing.
    tether_e2e::wait_until("both sleeps running", || {
        tether_e2e::pids_matching(&format!("sleep {marker}")).len() == 2
    })
    .await;
    let out = env.run(&["interrupt", "long"]);
    assert!(out.status.success());
    c.attach_until(&id, 0, |f| matches!(f, tether_proto::ServerFrame::Event(e) if matches!(e.body, EventBody::SessionStatusIdle { .. })))
        .await;
    assert_eq!(
        tether_e2e::pids_matching(&format!("sleep {marker}")),
        Vec::<i32>::new()
    );
    let events = env.events("long");
    assert_log_invariants(&events);
    let result = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentToolResult {
                status, content, ..
            } => Some((*status, content.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(result.0, ToolStatus::Interrupted);
    assert!(matches!(
        events.last().unwrap().body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::Interrupted
        }
    ));
    assert_eq!(
        env.mock.request_count(),
        1,
        "no model call after the interrupt"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fork_copies_log_and_workspace_and_rm_deletes() {
    let env = TestEnv::new(scenarios::bash_then_read()).await;
    env.ok(&["run", "go", "--name", "orig"]);
    let fork_id = env
        .ok(&["fork", "orig", "--name", "copy"])
        .trim()
        .to_string();
    let orig = env.events("orig");
    let copy = env.events("copy");
    assert_eq!(orig.len(), copy.len());
    for (a, b) in orig.iter().zip(&copy) {
        assert_eq!((a.seq, &a.body), (b.seq, &b.body));
        assert_eq!(b.session_id, fork_id);
    }
    let ls: Vec<serde_json::Value> = env
        .ok(&["ls", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ws = |name: &str| {
        ls.iter().find(|s| s["name"] == name).unwrap()["workspace"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(ws("orig"), ws("copy"));
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&ws("copy")).join("f.txt")).unwrap(),
        "hello"
    );
    env.ok(&["rm", "copy"]);
    assert!(!std::path::Path::new(&ws("copy")).exists());
    let out = env.run(&["logs", "copy"]);
    assert_eq!(out.status.code(), Some(1));
    env.ok(&["rm", "orig", "--archive"]);
    let out = env.run(&["send", "orig", "more"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("archived"));
    assert!(env.ok(&["ls"]).is_empty() || !env.ok(&["ls"]).contains("orig"));
    assert!(env.ok(&["ls", "--all"]).contains("orig"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_sent_mid_response_is_answered_after_it() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::stall(vec![tether_mock_llm::Block::text("first answer")]),
        Reply::text("second answer"),
    ]))
    .await;
    let id = env
        .ok(&["new", "--detach", "--name", "q", "first"])
        .trim()
        .to_string();
    env.mock.wait_for_requests(1).await;
    // The model is mid-response: this message queues behind it.
    env.ok(&["send", "q", "queued"]);
    env.mock.release_stalls();
    let mut c = env.client().await;
    c.attach_until(&id, 0, |f| matches!(f, tether_proto::ServerFrame::Event(e) if matches!(e.body, EventBody::SessionStatusIdle { .. })))
        .await;
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    let flat: Vec<(String, String)> = msgs
        .iter()
        .map(|m| {
            let text = m["content"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("|");
            (m["role"].as_str().unwrap().to_string(), text)
        })
        .collect();
    assert_eq!(
        flat,
        vec![
            ("user".to_string(), "first".to_string()),
            ("assistant".to_string(), "first answer".to_string()),
            ("user".to_string(), "queued".to_string()),
        ]
    );
    let events = env.events("q");
    assert_log_invariants(&events);
    assert!(matches!(
        events.last().unwrap().body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::EndTurn
        }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_max_turns_guard_stops_a_looping_agent() {
    let env = TestEnv::new(Script::by_turn(
        (0..10)
            .map(|_| Reply::tool_use("bash", json!({"command": "true"})))
            .collect(),
    ))
    .await;
    let out = env.run(&["run", "loop forever", "--max-turns", "3", "--name", "loop"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_turns"), "{stderr}");
    assert_eq!(env.mock.request_count(), 3);
    let events = env.events("loop");
    assert_log_invariants(&events);
    assert!(matches!(
        events.last().unwrap().body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::MaxTurnsReached
        }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_sends_typed_lines_and_read_only_is_enforced_by_the_daemon() {
    use std::io::Write;
    let env = TestEnv::new(Script::sequential(vec![Reply::text("steered")])).await;
    let id = env.ok(&["new", "--name", "att"]).trim().to_string();
    let mut child = env
        .tether()
        .args(["attach", "att"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "please steer this way").unwrap();
    stdin.flush().unwrap();
    env.mock.wait_for_requests(1).await;
    let body = env.mock.requests()[0].body.to_string();
    assert!(body.contains("please steer this way"), "{body}");
    // The attached client prints the answer as it streams in.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = None;
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        if line.contains("steered") {
            seen = Some(line);
            break;
        }
    }
    assert!(
        seen.is_some(),
        "the attached client never printed the answer"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // A read-only attachment can watch but the daemon refuses its writes.
    let mut ro = env.client().await;
    ro.call(
        "session.attach",
        json!({"session": id, "after_seq": 0, "read_only": true}),
    )
    .await
    .unwrap();
    for (method, params) in [
        (
            "session.send",
            json!({"session": id, "content": [{"type": "text", "text": "x"}]}),
        ),
        ("session.interrupt", json!({"session": id})),
        ("session.archive", json!({"session": id})),
    ] {
        let e = ro.call(method, params).await.unwrap_err();
        assert_eq!(e.code, tether_proto::ErrorCode::ReadOnly, "{method}: {e}");
    }
    let info = ro
        .call("session.get", json!({"session": id}))
        .await
        .unwrap();
    assert!(info["attached_clients"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn model_defaults_overrides_and_unsupported_providers() {
    let env = TestEnv::with_config(
        Script::sequential(vec![Reply::text("a"), Reply::text("b"), Reply::text("c")]),
        "default_model = \"claude-configured-1\"",
    )
    .await;
    env.ok(&["run", "x"]);
    env.ok(&["run", "x", "--model", "anthropic/claude-flag-2"]);
    env.ok(&["run", "x", "--model", "claude-bare-3"]);
    let models: Vec<String> = env
        .mock
        .requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        models,
        vec!["claude-configured-1", "claude-flag-2", "claude-bare-3"]
    );
    let out = env.run(&["run", "x", "--model", "nope/gpt-5.1", "--name", "oa"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`nope` is not configured"), "{stderr}");
    assert_eq!(
        env.mock.request_count(),
        3,
        "no request for an unsupported provider"
    );
    let ls = env.ok(&["ls", "--json"]);
    assert!(ls.contains("\"model\":\"nope/gpt-5.1\""), "{ls}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_reaches_attached_clients_and_a_taken_name_is_refused() {
    let env = TestEnv::new(Script::sequential(Vec::new())).await;
    env.ok(&["new", "--detach", "--name", "first"]);
    env.ok(&["new", "--detach", "--name", "other"]);
    let mut watcher = env.client().await;
    let info = watcher
        .call("session.get", json!({"session": "first"}))
        .await
        .unwrap();
    let id = info["id"].as_str().unwrap().to_string();
    let last = info["last_seq"].as_u64().unwrap();
    watcher
        .call(
            "session.attach",
            json!({"session": id.clone(), "after_seq": last}),
        )
        .await
        .unwrap();

    let out = env.run(&["rename", "first", "second"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The attached client is told, through the log.
    let renamed = loop {
        match watcher.recv().await.expect("connection closed") {
            tether_proto::ServerFrame::Event(e) => match e.body {
                EventBody::SessionUpdated { name, .. } => break name,
                _ => continue,
            },
            _ => continue,
        }
    };
    assert_eq!(renamed.as_deref(), Some("second"));
    // The new name resolves, the old one no longer does.
    assert!(env.ok(&["ls"]).contains("second"));
    assert_eq!(env.run(&["logs", "first"]).status.code(), Some(1));
    assert!(env.events("second").iter().any(|e| e.session_id == id));

    let out = env.run(&["rename", "second", "other"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`other` already exists"), "{stderr}");
    // A bad name is a usage error (exit 2) that says what names may contain.
    let out = env.run(&["rename", "second", "no spaces"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid session name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn session_search_finds_text_in_the_whole_log_newest_first() {
    let env = TestEnv::new(scenarios::bash_then_read()).await;
    let work = tempfile::tempdir().unwrap();
    env.ok(&[
        "run",
        "create f.txt containing hello, then read it back",
        "--dir",
        work.path().to_str().unwrap(),
        "--name",
        "s",
    ]);
    let events = env.events("s");
    let mut c = env.client().await;
    // Case-insensitive, in what a person reads (here: the user's prompt, the tool's output,
    // the answer), newest first.
    let page = c
        .call(
            "session.search",
            json!({"session": "s", "query": "HELLO", "limit": 10}),
        )
        .await
        .unwrap();
    let seqs = page_seqs(&page);
    let expected: Vec<u64> = events
        .iter()
        .rev()
        .filter(|e| e.body.search_text().to_lowercase().contains("hello"))
        .map(|e| e.seq)
        .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    assert_eq!(seqs, expected);
    // Paging back from a match finds the next older one.
    let page = c
        .call(
            "session.search",
            json!({"session": "s", "query": "hello", "before_seq": expected[0]}),
        )
        .await
        .unwrap();
    assert_eq!(page["data"][0]["seq"].as_u64(), Some(expected[1]));
    // Event types are not text.
    let page = c
        .call(
            "session.search",
            json!({"session": "s", "query": "span.model_request"}),
        )
        .await
        .unwrap();
    assert!(page["data"].as_array().unwrap().is_empty());
    let e = c
        .call("session.search", json!({"session": "s", "query": " "}))
        .await
        .unwrap_err();
    assert_eq!(e.code, tether_proto::ErrorCode::InvalidParams);
}
