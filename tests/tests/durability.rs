//! The log is the source of truth: stopping or killing the daemon mid-turn loses nothing, and
//! the turn resumes on the next start without re-running side effects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_e2e::{Reply, TestEnv, assert_log_invariants, pids_matching, wait_until};
use tether_mock_llm::Script;
use tether_proto::{DeltaKind, EventBody, ServerFrame, StopReason, ToolStatus};

async fn start_long_bash(env: &TestEnv, marker: &str) -> String {
    let id = env
        .ok(&["new", "--detach", "--name", "dur", "run the long thing"])
        .trim()
        .to_string();
    let mut c = env.client().await;
    c.attach_until(&id, 0, |f| match f {
        ServerFrame::Delta(d) => {
            matches!(&d.kind, DeltaKind::ToolOutput { text, .. } if text.contains("started"))
        }
        ServerFrame::Snapshot(s) => s
            .tool_output_tail
            .as_deref()
            .unwrap_or("")
            .contains("started"),
        _ => false,
    })
    .await;
    wait_until("sleep running", || !pids_matching(marker).is_empty()).await;
    id
}

fn script(marker: &str) -> Script {
    Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": format!("echo started; sleep {marker}; echo finished")}),
        ),
        Reply::text("recovered"),
    ])
}

fn check_resumed(env: &TestEnv, id: &str) {
    let events = env.events(id);
    assert_log_invariants(&events);
    let names: Vec<&str> = events.iter().map(|e| e.type_name()).collect();
    assert!(names.contains(&"session.status_rescheduled"), "{names:?}");
    let result = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentToolResult {
                status, content, ..
            } => Some((*status, tether_proto::blocks_text(content))),
            _ => None,
        })
        .unwrap();
    assert_eq!(result.0, ToolStatus::Interrupted);
    assert!(result.1.contains("NOT run again"), "{}", result.1);
    assert!(
        result.1.starts_with("started\n"),
        "the output it had printed: {}",
        result.1
    );
    assert!(matches!(
        events.last().unwrap().body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::EndTurn
        }
    ));
    let answer = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentMessage { content } => Some(tether_proto::blocks_text(content)),
            _ => None,
        })
        .unwrap();
    assert_eq!(answer, "recovered");
    // Exactly two model calls: the bash was never re-run, the model was asked once more.
    assert_eq!(env.mock.request_count(), 2);
    let last = &env.mock.requests()[1].body;
    assert!(last.to_string().contains("NOT run again"), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_mid_tool_resumes_on_next_start() {
    let marker = format!("sleep 97{}1", std::process::id() % 100000);
    let env = TestEnv::new(script(&marker["sleep ".len()..])).await;
    let id = start_long_bash(&env, &marker).await;
    env.ok(&["daemon", "stop"]);
    // Stopping the daemon kills the tool's process tree.
    assert!(pids_matching(&marker).is_empty());
    // Any command brings the daemon back; it resumes the session by itself.
    env.ok(&["ls"]);
    env.wait_idle(&id).await;
    check_resumed(&env, &id);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_tool_loses_nothing_and_never_reruns_bash() {
    let marker = format!("sleep 96{}2", std::process::id() % 100000);
    let env = TestEnv::new(script(&marker["sleep ".len()..])).await;
    let id = start_long_bash(&env, &marker).await;
    let before = env.events(&id);
    let pid = env.daemon_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("daemon gone", || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
    })
    .await;
    // The tool died with the daemon (the sandbox's parent-death signal; a survivor would be
    // killed by the next daemon, by the pid and start time in the log)...
    wait_until("the tool died with the daemon", || {
        pids_matching(&marker).is_empty()
    })
    .await;
    env.ok(&["ls"]);
    env.wait_idle(&id).await;
    // ...and the next daemon did not run it again.
    assert!(pids_matching(&marker).is_empty(), "the tool was re-run");
    let after = env.events(&id);
    // Everything acknowledged before the crash is still there, unchanged.
    assert_eq!(&after[..before.len()], &before[..]);
    check_resumed(&env, &id);
}
