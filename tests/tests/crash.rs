//! Crash-proof sessions: the daemon is SIGKILLed at named points (`TETHER_CRASH_AT`, compiled
//! in with the `crash-points` feature) and every session resumes exactly once. The numbers
//! refer to the test list in DESIGN.md's durability reference (§C 1–17).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv, assert_log_invariants, pids_matching, tool_results, wait_until};
use tether_mock_llm::Script;
use tether_proto::{Event, EventBody, RetryStatusKind, ServerFrame, StopReason, ToolStatus};

/// A crashing daemon and a session started on it.
struct Crashed {
    id: String,
    /// The log as it was acknowledged before the crash.
    before: Vec<Event>,
}

/// Starts a daemon that dies at `point`, creates a session with `prompt` (optionally in `dir`)
/// and waits for the crash.
async fn crash_at(env: &TestEnv, point: &str, prompt: &str, dir: Option<&str>) -> Crashed {
    let daemon = env.spawn_daemon(Some(point)).await;
    let mut args = vec!["new", "--detach", "--name", "crashy"];
    if let Some(d) = dir {
        args.extend(["--dir", d]);
    }
    args.push(prompt);
    let out = env.run(&args);
    // `new --detach` returns once the message is committed, unless the crash came first.
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    env.wait_killed(daemon).await;
    let id = if id.is_empty() { session_id(env) } else { id };
    Crashed {
        before: read_log(env, &id),
        id,
    }
}

/// The one session's id, read without a daemon.
fn session_id(env: &TestEnv) -> String {
    let db = rusqlite::Connection::open(env.paths.db()).unwrap();
    db.query_row("SELECT id FROM sessions", [], |r| r.get(0))
        .unwrap()
}

/// The log straight from the database (no daemon needed, none started).
fn read_log(env: &TestEnv, id: &str) -> Vec<Event> {
    let db = rusqlite::Connection::open(env.paths.db()).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT id, seq, processed_at, body FROM events WHERE session_id = ?1 ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })
    .unwrap()
    .map(|r| {
        let (eid, seq, at, body) = r.unwrap();
        let mut v: Value = serde_json::from_str(&body).unwrap();
        v["id"] = json!(eid);
        v["session_id"] = json!(id);
        v["seq"] = json!(seq);
        v["processed_at"] = json!(at);
        serde_json::from_value(v).unwrap()
    })
    .collect()
}

/// Starts a normal daemon (recovery runs) and waits until the session is idle. Also checks
/// (§C 15) that what the live daemon reports is exactly the fold of the log.
async fn restart_and_settle(env: &TestEnv, id: &str) -> Vec<Event> {
    env.ok(&["ls"]);
    env.wait_idle(id).await;
    let events = env.events(id);
    let folded = tether_daemon::session::state::SessionState::from_events(&events);
    let mut c = env.client().await;
    let live: tether_proto::SessionInfo =
        serde_json::from_value(c.call("session.get", json!({"session": id})).await.unwrap())
            .unwrap();
    assert_eq!(live.status, folded.status());
    assert_eq!(live.last_seq, folded.last_seq);
    assert_eq!(live.usage, folded.usage);
    assert_eq!(live.stop_reason, folded.stop_reason);
    events
}

/// The invariants every crash test ends with.
fn assert_recovered(env: &TestEnv, c: &Crashed, after: &[Event]) {
    assert_eq!(env.integrity_check(), "ok");
    assert_log_invariants(after);
    assert!(
        after.len() >= c.before.len() && after[..c.before.len()] == c.before[..],
        "an acknowledged event changed or disappeared"
    );
    assert!(
        after[c.before.len()..]
            .iter()
            .any(|e| matches!(e.body, EventBody::SessionStatusRescheduled {})),
        "the restart is recorded"
    );
    // Every tool call was answered before the model was asked again.
    let mut open = 0i32;
    for e in after {
        match &e.body {
            EventBody::AgentToolUse { .. } => open += 1,
            EventBody::AgentToolResult { .. } => open -= 1,
            EventBody::SpanModelRequestStart { .. } => {
                assert_eq!(
                    open, 0,
                    "model asked with unanswered tool calls at seq {}",
                    e.seq
                )
            }
            _ => {}
        }
    }
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AgentMessage { content } => Some(tether_proto::blocks_text(content)),
            _ => None,
        })
        .collect()
}

fn last_stop(events: &[Event]) -> StopReason {
    match &events.last().unwrap().body {
        EventBody::SessionStatusIdle { stop_reason } => stop_reason.clone(),
        other => panic!("the log should end idle, ends with {other:?}"),
    }
}

fn tool_results_in_request(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].to_string())
        .collect()
}

fn long_text() -> String {
    (0..40).map(|i| format!("word{i} ")).collect()
}

fn workspace(env: &TestEnv) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ws")
        .tempdir_in(env.home.path())
        .unwrap()
}

// 1.
#[tokio::test(flavor = "multi_thread")]
async fn crash_mid_stream_reissues_the_request_and_stores_one_message() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text(long_text()),
        Reply::text(long_text()),
    ]))
    .await;
    let c = crash_at(&env, "mid_stream:5", "talk", None).await;
    assert!(
        texts(&c.before).is_empty(),
        "no partial text reached the log"
    );
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    assert_eq!(
        texts(&after),
        vec![long_text()],
        "exactly one final message"
    );
    assert_eq!(env.mock.request_count(), 2);
    assert_eq!(last_stop(&after), StopReason::EndTurn);
}

// 2.
#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_tool_call_commits_runs_the_tool_exactly_once() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "write",
            json!({"file_path": "out.txt", "content": "once\n"}),
        ),
        Reply::text("done"),
    ]))
    .await;
    let ws = workspace(&env);
    let dir = ws.path().to_str().unwrap();
    let c = crash_at(&env, "after_agent_message", "write it", Some(dir)).await;
    assert!(!ws.path().join("out.txt").exists(), "the tool had not run");
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    let r = tool_results(&after);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, ToolStatus::Ok, "{}", r[0].1);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out.txt")).unwrap(),
        "once\n"
    );
    assert_eq!(env.mock.request_count(), 2);
}

// 2, bash flavour: once the intent is committed the call counts as started, and a command that
// may have run is never run again.
#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_intent_never_runs_bash_twice() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "echo ran >> counter.txt"})),
        Reply::text("done"),
    ]))
    .await;
    let ws = workspace(&env);
    let c = crash_at(
        &env,
        "after_tool_intent",
        "count",
        Some(ws.path().to_str().unwrap()),
    )
    .await;
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    let r = tool_results(&after);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, ToolStatus::Interrupted);
    assert!(
        !ws.path().join("counter.txt").exists(),
        "the command never ran"
    );
    assert_eq!(env.mock.request_count(), 2);
}

// 3.
#[tokio::test(flavor = "multi_thread")]
async fn crash_while_bash_runs_kills_its_tree_and_reports_the_partial_output() {
    let marker = format!("sleep 95{}3", std::process::id() % 100000);
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": format!("echo x >> counter.txt; echo started; {marker}; echo finished")}),
        ),
        Reply::text("done"),
    ]))
    .await;
    let ws = workspace(&env);
    let c = crash_at(
        &env,
        "during_tool",
        "run it",
        Some(ws.path().to_str().unwrap()),
    )
    .await;
    // The command died with the daemon (the sandbox's parent-death signal).
    wait_until("the command died with the daemon", || {
        pids_matching(&marker).is_empty()
    })
    .await;
    let after = restart_and_settle(&env, &c.id).await;
    assert!(pids_matching(&marker).is_empty(), "the tool's tree is dead");
    assert_recovered(&env, &c, &after);
    let r = tool_results(&after);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, ToolStatus::Interrupted);
    assert!(r[0].1.starts_with("started\n"), "{}", r[0].1);
    assert!(r[0].1.contains("may have partly run"), "{}", r[0].1);
    assert!(!r[0].1.contains("finished"));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("counter.txt")).unwrap(),
        "x\n",
        "ran once, not again"
    );
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    let sent = tool_results_in_request(&reqs[1].body);
    assert!(sent[0].contains("may have partly run"), "{sent:?}");
}

// 4. + 7.: read-only calls in flight are run again; parallel calls get one result each, in
// their original order.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_calls_resume_in_order_with_reads_rerun_and_bash_interrupted() {
    let marker = format!("sleep 94{}4", std::process::id() % 100000);
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tools(vec![
            ("read", json!({"file_path": "notes.txt"})),
            (
                "bash",
                json!({"command": format!("echo started; {marker}")}),
            ),
            ("grep", json!({"pattern": "alpha"})),
        ]),
        Reply::text("done"),
    ]))
    .await;
    let ws = workspace(&env);
    std::fs::write(ws.path().join("notes.txt"), "alpha\n").unwrap();
    let c = crash_at(
        &env,
        "during_tool",
        "look",
        Some(ws.path().to_str().unwrap()),
    )
    .await;
    assert_eq!(
        tool_results(&c.before).len(),
        1,
        "read finished before the crash"
    );
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    let uses: Vec<String> = after
        .iter()
        .filter(|e| matches!(e.body, EventBody::AgentToolUse { .. }))
        .map(|e| e.id.clone())
        .collect();
    let order: Vec<String> = after
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AgentToolResult { tool_use_id, .. } => Some(tool_use_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(order, uses, "results in the calls' order");
    let r = tool_results(&after);
    assert_eq!(r[0], (ToolStatus::Ok, "     1\talpha\n".to_string()));
    assert_eq!(r[1].0, ToolStatus::Interrupted);
    assert_eq!(r[2], (ToolStatus::Ok, "notes.txt:1:alpha".to_string()));
    assert!(pids_matching(&marker).is_empty());
}

// 4.: a read cut off mid-call is run again, with the same output and one result.
#[tokio::test(flavor = "multi_thread")]
async fn read_in_flight_is_run_again() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("read", json!({"file_path": "notes.txt"})),
        Reply::text("done"),
    ]))
    .await;
    let ws = workspace(&env);
    std::fs::write(ws.path().join("notes.txt"), "beta\n").unwrap();
    let c = crash_at(
        &env,
        "after_tool_intent",
        "read",
        Some(ws.path().to_str().unwrap()),
    )
    .await;
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    assert_eq!(
        tool_results(&after),
        vec![(ToolStatus::Ok, "     1\tbeta\n".to_string())]
    );
}

// 5.: the tool finished but its result was never committed.
#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_tool_exits_settles_write_and_edit_by_content() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tools(vec![
            (
                "edit",
                json!({"file_path": "a.txt", "old_string": "x", "new_string": "xx"}),
            ),
            (
                "write",
                json!({"file_path": "b.txt", "content": "written\n"}),
            ),
            ("bash", json!({"command": "echo ran >> c.txt"})),
        ]),
        Reply::text("done"),
    ]))
    .await;
    let ws = workspace(&env);
    std::fs::write(ws.path().join("a.txt"), "x\n").unwrap();
    let dir = ws.path().to_str().unwrap();
    // The first exit is the edit's: crash before its result, then check the others too by
    // crashing again after the write's and the bash's exits.
    let c = crash_at(&env, "after_tool_exit", "change", Some(dir)).await;
    let daemon = env.spawn_daemon(Some("after_tool_exit")).await;
    env.wait_killed(daemon).await;
    let daemon = env.spawn_daemon(Some("after_tool_exit")).await;
    env.wait_killed(daemon).await;
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    let r = tool_results(&after);
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(r[0].0, ToolStatus::Ok);
    assert!(r[0].1.contains("had been applied"), "{}", r[0].1);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("a.txt")).unwrap(),
        "xx\n",
        "the edit was applied exactly once"
    );
    assert_eq!(r[1].0, ToolStatus::Ok);
    assert!(r[1].1.contains("had completed"), "{}", r[1].1);
    assert_eq!(r[2].0, ToolStatus::Interrupted);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("c.txt")).unwrap(),
        "ran\n"
    );
    assert_eq!(env.mock.request_count(), 2);
}

// 5., conflict: the file is neither before nor after the edit.
#[tokio::test(flavor = "multi_thread")]
async fn edit_whose_file_changed_meanwhile_is_a_conflict_not_a_rerun() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "edit",
            json!({"file_path": "a.txt", "old_string": "one", "new_string": "two"}),
        ),
        Reply::text("done"),
    ]))
    .await;
    let ws = workspace(&env);
    std::fs::write(ws.path().join("a.txt"), "one\n").unwrap();
    let c = crash_at(
        &env,
        "after_tool_intent",
        "edit",
        Some(ws.path().to_str().unwrap()),
    )
    .await;
    std::fs::write(ws.path().join("a.txt"), "someone else's one\n").unwrap();
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    let r = tool_results(&after);
    assert_eq!(r[0].0, ToolStatus::Interrupted);
    assert!(r[0].1.contains("neither"), "{}", r[0].1);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("a.txt")).unwrap(),
        "someone else's one\n"
    );
}

// 6.
#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_result_commits_sends_the_stored_result_once() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "echo ran >> c.txt; echo out"})),
        Reply::text("done"),
    ]))
    .await;
    let ws = workspace(&env);
    let c = crash_at(
        &env,
        "after_tool_result",
        "go",
        Some(ws.path().to_str().unwrap()),
    )
    .await;
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    assert_eq!(
        tool_results(&after),
        vec![(ToolStatus::Ok, "out\n".to_string())]
    );
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(tool_results_in_request(&reqs[1].body).len(), 1);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("c.txt")).unwrap(),
        "ran\n"
    );
}

// Before going idle: the final answer commits together with the idle event, so a crash just
// before means the answer was never stored; it is asked for again, and stored once.
#[tokio::test(flavor = "multi_thread")]
async fn crash_before_idle_stores_the_answer_once() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("hello"),
        Reply::text("hello"),
    ]))
    .await;
    let c = crash_at(&env, "before_idle", "hi", None).await;
    assert!(texts(&c.before).is_empty());
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    assert_eq!(env.mock.request_count(), 2);
    assert_eq!(texts(&after), vec!["hello".to_string()]);
    assert_eq!(last_stop(&after), StopReason::EndTurn);
}

// After the user message commits, before anything else: the turn still happens.
#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_user_message_still_answers_it() {
    let env = TestEnv::new(Script::sequential(vec![Reply::text("answer")])).await;
    let c = crash_at(&env, "after_user_message", "question", None).await;
    assert!(
        c.before
            .iter()
            .any(|e| matches!(e.body, EventBody::UserMessage { .. })),
        "the acknowledged message is in the log"
    );
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    assert_eq!(texts(&after), vec!["answer".to_string()]);
    assert_eq!(env.mock.request_count(), 1);
}

// 8.
#[tokio::test(flavor = "multi_thread")]
async fn crash_loop_stops_after_max_resumes() {
    let env = TestEnv::new(Script::sequential(
        (0..10).map(|_| Reply::text(long_text())).collect(),
    ))
    .await;
    let c = crash_at(&env, "mid_stream:3", "loop", None).await;
    // Three resumes, each crashing at the same point...
    for _ in 0..3 {
        let daemon = env.spawn_daemon(Some("mid_stream:3")).await;
        env.wait_killed(daemon).await;
    }
    // ...and the fourth start gives up instead of asking the model again.
    let after = restart_and_settle(&env, &c.id).await;
    assert_recovered(&env, &c, &after);
    assert_eq!(env.mock.request_count(), 4, "requests are bounded");
    let error = after
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            EventBody::SessionError { error } => Some(error.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(error.kind, "crash_loop");
    assert_eq!(error.retry_status.kind, RetryStatusKind::Exhausted);
    assert!(error.message.contains("max_resumes"), "{}", error.message);
    assert_eq!(last_stop(&after), StopReason::Error);
    assert!(texts(&after).is_empty());

    // The user can continue: a new message gets an answer.
    env.ok(&["send", &c.id, "again", "--wait"]);
    assert_eq!(texts(&env.events(&c.id)), vec![long_text()]);
}

// 14.
#[tokio::test(flavor = "multi_thread")]
async fn committed_interrupt_is_honoured_after_a_crash() {
    let marker = format!("sleep 93{}5", std::process::id() % 100000);
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": format!("echo started; {marker}")}),
        ),
        Reply::text("never asked"),
    ]))
    .await;
    let daemon = env.spawn_daemon(Some("after_interrupt")).await;
    let id = env.ok(&["new", "--detach", "go"]).trim().to_string();
    wait_until("the command runs", || !pids_matching(&marker).is_empty()).await;
    // The daemon dies right after committing the interrupt, before acting on it.
    let _ = env.run(&["interrupt", &id]);
    env.wait_killed(daemon).await;
    let c = Crashed {
        before: read_log(&env, &id),
        id: id.clone(),
    };
    assert!(
        c.before
            .iter()
            .any(|e| matches!(e.body, EventBody::UserInterrupt {}))
    );
    let after = restart_and_settle(&env, &id).await;
    assert_recovered(&env, &c, &after);
    assert_eq!(last_stop(&after), StopReason::Interrupted);
    assert_eq!(
        env.mock.request_count(),
        1,
        "no model call after the interrupt"
    );
    assert_eq!(tool_results(&after)[0].0, ToolStatus::Interrupted);
    assert!(pids_matching(&marker).is_empty());
}

// 17. (over the local socket; the HTTP/SSE door comes with the HTTP API): a client attached
// across a restart resumes from its last seq with no gap and no duplicate.
#[tokio::test(flavor = "multi_thread")]
async fn client_resumes_across_a_crash_without_gaps_or_duplicates() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "echo one"})),
        Reply::text(long_text()),
        Reply::text(long_text()),
    ]))
    .await;
    let daemon = env.spawn_daemon(Some("mid_stream:4")).await;
    let id = env.ok(&["new", "--detach", "go"]).trim().to_string();
    let mut seen: Vec<Event> = Vec::new();
    {
        let mut c = env.client().await;
        c.call("session.attach", json!({"session": id, "after_seq": 0}))
            .await
            .unwrap();
        while let Some(f) = c.recv().await {
            if let ServerFrame::Event(e) = f {
                seen.push(*e);
            }
        }
    }
    env.wait_killed(daemon).await;
    let last = seen.last().map_or(0, |e| e.seq);
    env.ok(&["ls"]);
    let mut c = env.client().await;
    let frames = c
        .attach_until(&id, last, |f| {
            matches!(f, ServerFrame::Event(e) if matches!(e.body, EventBody::SessionStatusIdle { .. }))
        })
        .await;
    for f in frames {
        if let ServerFrame::Event(e) = f {
            seen.push(*e);
        }
    }
    assert_log_invariants(&seen);
    assert_eq!(seen, env.events(&id), "the client saw the whole log, once");
}

// 12. The daemon is frozen (SIGSTOP) past a running tool's timeout: once it thaws, the call is
// reported as timed out and its tree killed, instead of waiting out the rest of the command.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_daemon_times_the_tool_out_when_it_thaws() {
    let marker = format!("sleep 92{}6", std::process::id() % 100000);
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": format!("echo started; {marker}"), "timeout_ms": 1000}),
        ),
        Reply::text("done"),
    ]))
    .await;
    let daemon = env.spawn_daemon(None).await;
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    let id = env.ok(&["new", "--detach", "go"]).trim().to_string();
    wait_until("the command runs", || !pids_matching(&marker).is_empty()).await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    // The nemesis: stay frozen well past the tool's 1 s timeout.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    env.wait_idle(&id).await;
    let events = env.events(&id);
    assert_log_invariants(&events);
    let r = tool_results(&events);
    assert_eq!(r[0].0, ToolStatus::Timeout, "{}", r[0].1);
    assert!(r[0].1.contains("timed out"), "{}", r[0].1);
    assert!(pids_matching(&marker).is_empty(), "the tree is dead");
    assert_eq!(texts(&events), vec!["done".to_string()]);
    let mut daemon = daemon;
    let _ = daemon.kill();
    let _ = daemon.wait();
}
