//! Multi-agent threads (issue 22): a primary thread delegates to roster and inline agents,
//! each on its own provider, and consults an advisor. The daemon is driven over its socket
//! against the in-repo mock, which speaks Anthropic (the primary), Chat Completions and
//! Responses at once; each thread's requests are routed to its own replies by model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv, assert_log_invariants, python, sdk_script};
use tether_mock_llm::{Block, Route, Script};
use tether_proto::{Event, EventBody, StopReason, blocks_text};

/// The reviewer runs on Chat Completions, inline agents on Responses.
const REVIEWER_MODEL: &str = "gpt-4.1";
const INLINE_MODEL: &str = "gpt-5.1";

fn reviewer(replies: Vec<Reply>) -> Route {
    Route::new("reviewer", replies).when_model(REVIEWER_MODEL)
}

fn inline(replies: Vec<Reply>) -> Route {
    Route::new("inline", replies).when_model(INLINE_MODEL)
}

fn send(agent: &str, message: &str) -> (&'static str, Value) {
    ("send_to_agent", json!({"agent": agent, "message": message}))
}

fn spawn(name: &str, message: &str) -> (&'static str, Value) {
    (
        "spawn_agent",
        json!({"name": name, "system": format!("You are {name}."), "model": format!("openai-responses/{INLINE_MODEL}"), "message": message}),
    )
}

/// A daemon with a `reviewer` agent and a coordinator `lead` whose roster lists it (inline
/// agents and, with `advisor`, an advisor enabled); returns a session of `lead`.
async fn start(env: &TestEnv, reviewer_tools: Value, advisor: bool) -> String {
    env.spawn_daemon(None).await;
    setup(env, reviewer_tools, advisor).await
}

async fn setup(env: &TestEnv, reviewer_tools: Value, advisor: bool) -> String {
    let mut c = env.client().await;
    c.call(
        "agent.create",
        json!({"name": "reviewer", "system": "You review code.", "model": {"id": format!("openai/{REVIEWER_MODEL}")}, "tools": reviewer_tools}),
    )
    .await
    .unwrap();
    let mut multiagent = json!({"type": "multiagent_20261001",
        "subagents": {"type": "enabled", "predefined_agents": ["reviewer"]}});
    if advisor {
        multiagent["advisor"] =
            json!({"type": "enabled", "model": format!("openai-responses/{INLINE_MODEL}")});
    }
    let lead = c
        .call(
            "agent.create",
            json!({"name": "lead", "multiagent": multiagent}),
        )
        .await
        .unwrap();
    // The roster is stored resolved to a pinned version (hosted response shape).
    let entry = &lead["multiagent"]["subagents"]["predefined_agents"][0];
    assert_eq!(entry["type"], "agent", "{lead}");
    assert_eq!(entry["version"], 1, "{lead}");
    let ws = tempfile::Builder::new()
        .prefix("ws")
        .tempdir_in(env.home.path())
        .unwrap()
        .keep();
    let info = c
        .call(
            "session.create",
            json!({"agent": "lead", "dir": ws.display().to_string()}),
        )
        .await
        .unwrap();
    info["id"].as_str().unwrap().to_string()
}

/// Waits until the session (all its threads) is idle: its status aggregates its threads, so
/// the primary may go idle before a thread does.
async fn settle(env: &TestEnv, id: &str) {
    loop {
        let mut c = env.client().await;
        let info = c.call("session.get", json!({"session": id})).await.unwrap();
        if info["status"] == "idle" {
            return;
        }
        let from = info["last_seq"].as_u64().unwrap();
        c.attach_until(id, from, |f| {
            matches!(f, tether_proto::ServerFrame::Event(e) if matches!(e.body, EventBody::SessionStatusIdle { .. } | EventBody::SessionThreadStatusIdle { .. }))
        })
        .await;
    }
}

async fn say(env: &TestEnv, session: &str, text: &str) {
    let mut c = env.client().await;
    c.call(
        "session.send",
        json!({"session": session, "content": [{"type": "text", "text": text}]}),
    )
    .await
    .unwrap();
}

async fn thread_log(env: &TestEnv, session: &str, thread: &str) -> Vec<Event> {
    let mut c = env.client().await;
    let page = c
        .call(
            "session.events",
            json!({"session": session, "thread": thread, "limit": 10000, "order": "asc"}),
        )
        .await
        .unwrap();
    serde_json::from_value(page["data"].clone()).unwrap()
}

async fn threads(env: &TestEnv, session: &str) -> Vec<Value> {
    let mut c = env.client().await;
    let list = c
        .call("thread.list", json!({"session": session}))
        .await
        .unwrap();
    list["data"].as_array().unwrap().clone()
}

/// `(tool_use_id, text, is_error)` of every tool result.
fn results(events: &[Event]) -> Vec<(String, String, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AgentToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => Some((tool_use_id.clone(), blocks_text(content), *is_error)),
            _ => None,
        })
        .collect()
}

/// Every tool call of the stream's own (not cross-posted) events has exactly one result.
fn one_result_each(events: &[Event]) {
    let own: Vec<&Event> = events
        .iter()
        .filter(|e| e.session_thread_id.is_none())
        .collect();
    for call in own
        .iter()
        .filter(|e| matches!(e.body, EventBody::AgentToolUse { .. }))
    {
        let n = results(events)
            .iter()
            .filter(|(id, ..)| *id == call.id)
            .count();
        assert_eq!(n, 1, "call {} has {n} results", call.id);
    }
}

fn gapless(events: &[Event]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, want, "the stream's seqs are 1..n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_roster_agent_and_an_inline_agent_reply_each_on_its_own_provider() {
    let script = Script::sequential(vec![
        Reply::tools(vec![send("reviewer", "review the patch")]),
        Reply::tools(vec![spawn("summariser", "summarise the review")]),
        Reply::text("all done"),
    ])
    .with_route(reviewer(vec![Reply::text("LGTM, ship it")]))
    .with_route(inline(vec![Reply::text("short summary")]));
    let env = TestEnv::new(script).await;
    let id = start(&env, json!([]), false).await;
    say(&env, &id, "get the patch reviewed").await;
    settle(&env, &id).await;

    let log = env.log(&id).await;
    assert_log_invariants(&log);
    one_result_each(&log);
    let res = results(&log);
    assert_eq!(res.len(), 2, "{res:#?}");
    assert_eq!(
        res[0].1, "LGTM, ship it",
        "the reviewer's reply is the result"
    );
    assert_eq!(res[1].1, "short summary");
    assert!(!res[0].2 && !res[1].2);
    // Lifecycle in the primary's stream, each naming its thread.
    let created: Vec<(&str, String)> = log
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SessionThreadCreated { agent_name, .. } => {
                Some((agent_name.as_str(), e.session_thread_id.clone().unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].0, "reviewer");
    assert_eq!(created[1].0, "summariser");
    let sent = log
        .iter()
        .filter(|e| matches!(e.body, EventBody::AgentThreadMessageSent { .. }))
        .count();
    assert_eq!(sent, 2, "one message per call");
    assert!(
        log.iter().any(|e| matches!(&e.body, EventBody::SessionThreadStatusIdle { agent_name, stop_reason: StopReason::EndTurn, .. } if agent_name == "reviewer")),
        "the reviewer's idle is cross-posted"
    );

    // Each thread has its own gapless stream; the message is its user turn.
    let rev = thread_log(&env, &id, "reviewer").await;
    gapless(&rev);
    assert!(rev.iter().all(|e| e.session_id == created[0].1));
    assert!(
        matches!(&rev[0].body, EventBody::AgentThreadMessageReceived { content, from_agent_name: None, .. } if blocks_text(content) == "review the patch")
    );
    assert!(rev.iter().any(
        |e| matches!(&e.body, EventBody::AgentMessage { content } if blocks_text(content) == "LGTM, ship it")
    ));

    // Each request went to its own provider with its own prompt and model.
    let reqs = env.mock.requests();
    let rev_req = reqs
        .iter()
        .find(|r| r.body["model"] == REVIEWER_MODEL)
        .unwrap();
    assert_eq!(rev_req.path, "/v1/chat/completions");
    assert!(rev_req.body.to_string().contains("You review code."));
    assert!(rev_req.body.to_string().contains("review the patch"));
    assert!(
        !rev_req.body.to_string().contains("get the patch reviewed"),
        "threads share no history"
    );
    let inl = reqs
        .iter()
        .find(|r| r.body["model"] == INLINE_MODEL)
        .unwrap();
    assert_eq!(inl.path, "/v1/responses");
    assert!(inl.body.to_string().contains("You are summariser."));
    let primary = reqs.iter().find(|r| r.path == "/v1/messages").unwrap();
    let tools = primary.body["tools"].to_string();
    for t in ["list_agents", "send_to_agent", "spawn_agent"] {
        assert!(tools.contains(t), "the primary is offered {t}");
    }
    assert!(!tools.contains("consult_advisor"), "no advisor configured");
    assert!(
        !rev_req.body["tools"].to_string().contains("send_to_agent"),
        "children get no agent tools (depth 1)"
    );

    // thread.list: the primary first, then the children, idle, with their models.
    let list = threads(&env, &id).await;
    assert_eq!(list.len(), 3, "{list:#?}");
    assert_eq!(list[0]["parent_thread_id"], Value::Null);
    assert_eq!(list[1]["agent"]["name"], "reviewer");
    assert_eq!(list[1]["agent"]["type"], "agent");
    assert_eq!(list[2]["agent"]["type"], "inline");
    assert!(list.iter().all(|t| t["status"] == "idle"), "{list:#?}");
    // Session listings show no threads.
    let mut c = env.client().await;
    let sessions = c.call("session.list", json!({})).await.unwrap();
    assert_eq!(sessions["data"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thread_stream_is_attached_like_a_session_replay_then_live() {
    let script = Script::sequential(vec![
        Reply::tools(vec![send("reviewer", "first")]),
        Reply::text("ok"),
    ])
    .with_route(reviewer(vec![Reply::text("one"), Reply::text("two")]));
    let env = TestEnv::new(script).await;
    let id = start(&env, json!([]), false).await;
    say(&env, &id, "go").await;
    settle(&env, &id).await;
    let before = thread_log(&env, &id, "reviewer").await;
    // The replay holds the thread's last event (its cross-posted idle), then live ones.
    let after = before.len() as u64 - 1;
    let mut c = env.client().await;
    let info = c
        .call(
            "session.attach",
            json!({"session": id, "thread": "reviewer", "after_seq": after}),
        )
        .await
        .unwrap();
    let thread_id = info["id"].as_str().unwrap().to_string();
    assert!(thread_id.starts_with("sthr_"));
    // A message to the thread itself (tether extension) makes live events on that stream.
    say_thread(&env, &id, "reviewer", "again").await;
    let mut seqs = Vec::new();
    loop {
        let f = tokio::time::timeout(std::time::Duration::from_secs(60), c.recv())
            .await
            .unwrap()
            .unwrap();
        if let tether_proto::ServerFrame::Event(e) = f {
            assert_eq!(e.session_id, thread_id);
            seqs.push(e.seq);
            if matches!(e.body, EventBody::SessionStatusIdle { .. }) {
                break;
            }
        }
    }
    let want: Vec<u64> = (after + 1..=*seqs.last().unwrap()).collect();
    assert_eq!(seqs, want, "replay then live, gapless, no duplicates");
    let all = thread_log(&env, &id, "reviewer").await;
    gapless(&all);
    assert!(all.iter().any(
        |e| matches!(&e.body, EventBody::AgentMessage { content } if blocks_text(content) == "two")
    ));
}

async fn say_thread(env: &TestEnv, session: &str, thread: &str, text: &str) {
    let mut c = env.client().await;
    c.call(
        "session.send",
        json!({"session": session, "thread": thread, "content": [{"type": "text", "text": text}]}),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_threads_work_at_once() {
    let script = Script::sequential(vec![
        Reply::tools(vec![
            send("reviewer", "review A"),
            spawn("tester", "test B"),
        ]),
        Reply::text("both back"),
    ])
    .with_route(reviewer(vec![Reply::stall(vec![Block::text("A ok")])]))
    .with_route(inline(vec![Reply::stall(vec![Block::text("B ok")])]));
    let env = TestEnv::new(script).await;
    let id = start(&env, json!([]), false).await;
    say(&env, &id, "do both").await;
    // Both threads are running at the same time: each is stalled mid-response, and the
    // primary's stream says both started before either finished.
    let mut c = env.client().await;
    let mut running = 0;
    c.attach_until(&id, 0, |f| {
        if let tether_proto::ServerFrame::Event(e) = f {
            assert!(
                !matches!(e.body, EventBody::SessionThreadStatusIdle { .. }),
                "a thread finished before both ran"
            );
            if matches!(e.body, EventBody::SessionThreadStatusRunning { .. }) {
                running += 1;
            }
        }
        running == 2
    })
    .await;
    let mut c = env.client().await;
    let list = c
        .call(
            "thread.list",
            json!({"session": id, "statuses": ["running"]}),
        )
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 3, "{list}");
    let info = c.call("session.get", json!({"session": id})).await.unwrap();
    assert_eq!(info["status"], "running");
    env.mock.release_stalls();
    settle(&env, &id).await;
    let log = env.log(&id).await;
    one_result_each(&log);
    let mut texts: Vec<String> = results(&log).into_iter().map(|r| r.1).collect();
    texts.sort();
    assert_eq!(texts, ["A ok", "B ok"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_advisor_consultation_is_a_thread_in_the_primary_stream() {
    let script = Script::sequential(vec![
        Reply::tool_use("consult_advisor", json!({"question": "tabs or spaces?"})),
        Reply::text("spaces it is"),
    ])
    .with_route(
        Route::new("advisor", vec![Reply::text("Use spaces.")])
            .when_system("an advisor to another AI agent"),
    );
    let env = TestEnv::new(script).await;
    let id = start(&env, json!([]), true).await;
    say(&env, &id, "settle the indentation debate").await;
    settle(&env, &id).await;
    let log = env.log(&id).await;
    assert_log_invariants(&log);
    one_result_each(&log);
    let adv: Vec<&str> = log
        .iter()
        .filter(|e| e.session_thread_id.is_some())
        .map(|e| e.body.type_name())
        .collect();
    assert_eq!(
        adv,
        [
            "session.thread_created",
            "session.thread_status_running",
            "span.model_request_start",
            "span.model_request_end",
            "agent.thread_message_received",
            "session.thread_status_idle",
            "session.thread_status_terminated"
        ]
    );
    let res = results(&log);
    assert_eq!(res[0].1, "Use spaces.");
    // The consultation is paid by the session (its budget counts it) and shown on the
    // advisor's thread: the primary's two requests and the advisor's one.
    let mut c = env.client().await;
    let info = c.call("session.get", json!({"session": id})).await.unwrap();
    assert_eq!(info["usage"]["model_requests"], 3, "{info}");
    let advisor = &threads(&env, &id).await[1];
    assert_eq!(advisor["usage"]["model_requests"], 1, "{advisor}");
    assert!(
        advisor["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{advisor}"
    );
    // The advisor saw the conversation so far and the question.
    let req = env
        .mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/responses")
        .unwrap();
    let body = req.body.to_string();
    assert!(body.contains("settle the indentation debate") && body.contains("tabs or spaces?"));
    let list = threads(&env, &id).await;
    assert_eq!(list[1]["agent"]["type"], "advisor");
    assert_eq!(list[1]["status"], "terminated");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_consultation_is_the_tools_result_not_the_turns() {
    let script = Script::sequential(vec![
        Reply::tool_use("consult_advisor", json!({"question": "help?"})),
        Reply::text("fine, alone then"),
    ])
    .with_route(
        Route::new(
            "advisor",
            vec![Reply::error(400, "invalid_request_error", "no such model")],
        )
        .when_system("an advisor to another AI agent"),
    );
    let env = TestEnv::new(script).await;
    let id = start(&env, json!([]), true).await;
    say(&env, &id, "go").await;
    settle(&env, &id).await;
    let log = env.log(&id).await;
    let res = results(&log);
    assert!(res[0].2, "an error result");
    assert!(res[0].1.contains("could not be consulted"), "{}", res[0].1);
    assert!(log.iter().any(|e| matches!(
        &e.body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::EndTurn
        }
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupt_one_thread_then_all() {
    let script = Script::sequential(vec![
        Reply::tools(vec![
            send("reviewer", "review A"),
            spawn("tester", "test B"),
        ]),
        Reply::text("after one interrupt"),
        Reply::tools(vec![send("reviewer", "again")]),
    ])
    .with_route(reviewer(vec![
        Reply::stall(vec![Block::text("never")]),
        Reply::stall(vec![Block::text("never either")]),
    ]))
    .with_route(inline(vec![Reply::text("B ok")]));
    let env = TestEnv::new(script).await;
    let id = start(&env, json!([]), false).await;
    say(&env, &id, "do both").await;
    let mut c = env.client().await;
    // Wait until the tester replied and the reviewer is stalled.
    wait_for_log(&env, &id, |log| results(log).iter().any(|r| r.1 == "B ok")).await;
    env.mock.wait_for_requests(3).await;
    let r = c
        .call(
            "session.interrupt",
            json!({"session": id, "thread": "reviewer"}),
        )
        .await
        .unwrap();
    assert_eq!(r["was_running"], true);
    settle(&env, &id).await;
    let log = env.log(&id).await;
    one_result_each(&log);
    let res = results(&log);
    let rev = res.iter().find(|r| r.1.contains("interrupted")).unwrap();
    assert!(
        rev.2,
        "the interrupted thread's call is an error result: {res:#?}"
    );
    assert!(
        !log.iter().any(|e| matches!(e.body, EventBody::UserInterrupt {}) && e.session_thread_id.is_none()),
        "the primary was not interrupted"
    );

    // Now everything: a new turn messages the reviewer, which stalls; interrupt-all stops
    // the primary and the thread.
    say(&env, &id, "again").await;
    env.mock.wait_for_requests(6).await;
    let r = c
        .call("session.interrupt", json!({"session": id}))
        .await
        .unwrap();
    assert_eq!(r["was_running"], true);
    settle(&env, &id).await;
    let rev_log = thread_log(&env, &id, "reviewer").await;
    let idles: Vec<&StopReason> = rev_log
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SessionStatusIdle { stop_reason } => Some(stop_reason),
            _ => None,
        })
        .collect();
    assert_eq!(idles, [&StopReason::Interrupted, &StopReason::Interrupted]);
    let log = env.log(&id).await;
    one_result_each(&log);
    let last_own_idle = log
        .iter()
        .rev()
        .find(|e| {
            e.session_thread_id.is_none() && matches!(e.body, EventBody::SessionStatusIdle { .. })
        })
        .unwrap();
    assert!(matches!(
        last_own_idle.body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::Interrupted
        }
    ));
    let list = threads(&env, &id).await;
    assert!(list.iter().all(|t| t["status"] == "idle"), "{list:#?}");
}

async fn wait_for_log(env: &TestEnv, id: &str, mut cond: impl FnMut(&[Event]) -> bool) {
    for _ in 0..1200 {
        if cond(&env.log(id).await) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("condition on the log of {id} not reached");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_raised_in_a_child_is_answered_on_the_primary_by_id() {
    let script = Script::sequential(vec![
        Reply::tools(vec![send("reviewer", "run the tests")]),
        Reply::text("tests ran"),
    ])
    .with_route(reviewer(vec![
        Reply::tool_use("bash", json!({"command": "echo ran >> approved.txt"})),
        Reply::text("they pass"),
    ]));
    let env = TestEnv::new(script).await;
    let tools = json!([{"type": "agent_toolset_20260401", "configs": [
        {"name": "bash", "permission_policy": {"type": "always_ask"}}]}]);
    let id = start(&env, tools, false).await;
    say(&env, &id, "test it").await;
    // The child's call appears in the primary's stream, naming its thread.
    wait_for_log(&env, &id, |log| {
        log.iter().any(|e| {
            matches!(e.body, EventBody::AgentToolUse { .. }) && e.session_thread_id.is_some()
        })
    })
    .await;
    let log = env.log(&id).await;
    let call = log
        .iter()
        .find(|e| matches!(e.body, EventBody::AgentToolUse { .. }) && e.session_thread_id.is_some())
        .unwrap();
    assert!(log.iter().any(|e| matches!(&e.body, EventBody::SessionThreadStatusIdle { stop_reason: StopReason::RequiresAction { event_ids }, .. } if event_ids == &vec![call.id.clone()])));
    let rev = thread_log(&env, &id, "reviewer").await;
    assert!(
        rev.iter().any(|e| e.id == call.id),
        "the same id on the thread's own stream"
    );
    let mut c = env.client().await;
    // Archiving it now would leave the primary waiting forever for its reply.
    let refused = c
        .call(
            "thread.archive",
            json!({"session": id, "thread": "reviewer"}),
        )
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("owes the primary a reply")
            && refused.message.contains("interrupt"),
        "{refused:?}"
    );
    c.call(
        "tool.confirm",
        json!({"session": id, "tool_use_id": call.id, "result": "allow"}),
    )
    .await
    .unwrap();
    settle(&env, &id).await;
    let log = env.log(&id).await;
    one_result_each(&log);
    assert!(log.iter().any(|e| matches!(&e.body, EventBody::UserToolConfirmation { tool_use_id, .. } if *tool_use_id == call.id) && e.session_thread_id.is_some()), "the answer is echoed into the primary");
    assert_eq!(results(&log)[0].1, "they pass");
    let ws = env.home.path();
    let ran = walk_find(ws, "approved.txt").unwrap();
    assert_eq!(
        std::fs::read_to_string(ran).unwrap(),
        "ran\n",
        "ran once, in the session's workspace"
    );
}

/// `name` in one of the test's workspaces (`ws*` under the home).
fn walk_find(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("ws"))
        })
        .map(|p| p.join(name))
        .find(|f| f.exists())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_twenty_sixth_child_thread_is_refused_with_the_fix() {
    let calls: Vec<(&str, Value)> = (0..26)
        .map(|i| spawn(&format!("worker{i}"), "work"))
        .collect();
    let script = Script::sequential(vec![Reply::tools(calls), Reply::text("done")])
        .with_route(inline((0..25).map(|_| Reply::text("worked")).collect()));
    let env = TestEnv::new(script).await;
    let id = start(&env, json!([]), false).await;
    say(&env, &id, "fan out").await;
    settle(&env, &id).await;
    let log = env.log(&id).await;
    one_result_each(&log);
    let res = results(&log);
    assert_eq!(res.len(), 26);
    let refused: Vec<_> = res.iter().filter(|r| r.2).collect();
    assert_eq!(refused.len(), 1, "{res:#?}");
    assert!(
        refused[0].1.contains("25") && refused[0].1.contains("archive"),
        "{}",
        refused[0].1
    );
    assert_eq!(res.iter().filter(|r| r.1 == "worked").count(), 25);
    let list = threads(&env, &id).await;
    assert_eq!(list.len(), 26, "the primary and 25 children");
    // Archiving one frees a slot.
    let mut c = env.client().await;
    let t = c
        .call(
            "thread.archive",
            json!({"session": id, "thread": "worker3"}),
        )
        .await
        .unwrap();
    assert!(t["archived_at"].is_string());
    assert_eq!(threads(&env, &id).await.len(), 25);
}

#[tokio::test(flavor = "multi_thread")]
async fn rosters_are_checked_against_the_agents_that_exist() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    env.spawn_daemon(None).await;
    let mut c = env.client().await;
    let err = c
        .call(
            "agent.create",
            json!({"name": "a", "multiagent": {"type": "multiagent_20261001", "subagents": {"type": "enabled", "predefined_agents": ["ghost"]}}}),
        )
        .await
        .unwrap_err();
    assert!(err.message.contains("ghost"), "{}", err.message);
    c.call(
        "agent.create",
        json!({"name": "b", "multiagent": {"type": "multiagent_20261001"}}),
    )
    .await
    .unwrap();
    let err = c
        .call(
            "agent.create",
            json!({"name": "c", "multiagent": {"type": "multiagent_20261001", "subagents": {"type": "enabled", "predefined_agents": ["b"]}}}),
        )
        .await
        .unwrap_err();
    assert!(err.message.contains("depth"), "{}", err.message);
    // An update merges member by member: the advisor is added, the roster kept.
    c.call("agent.create", json!({"name": "r"})).await.unwrap();
    c.call(
        "agent.create",
        json!({"name": "d", "multiagent": {"type": "multiagent_20261001", "subagents": {"type": "enabled", "predefined_agents": ["r"]}}}),
    )
    .await
    .unwrap();
    let d = c
        .call(
            "agent.update",
            json!({"agent": "d", "version": 1, "changes": {"multiagent": {"type": "multiagent_20261001", "advisor": {"type": "enabled", "model": "openai/gpt-5.1"}}}}),
        )
        .await
        .unwrap();
    assert_eq!(d["multiagent"]["advisor"]["model"], "openai/gpt-5.1", "{d}");
    assert_eq!(
        d["multiagent"]["subagents"]["predefined_agents"][0]["type"], "agent",
        "{d}"
    );
    let d = c
        .call(
            "agent.update",
            json!({"agent": "d", "version": 2, "changes": {"multiagent": null}}),
        )
        .await
        .unwrap();
    assert!(d.get("multiagent").is_none_or(Value::is_null), "{d}");
}

/// kill -9 at each step of a delegation (thread created, message delivered, the child's tool
/// committed and run, its replies committed): after a restart every call has exactly one
/// result, the message was delivered exactly once, and the child's side effect ran at most
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_delegation_survives_kill_9_at_every_step() {
    for point in [
        "after_thread_created",
        "after_thread_message_sent",
        "after_agent_message:2",
        "after_tool_intent",
        "after_tool_exit",
        "after_tool_result",
        "before_idle",
    ] {
        let script = Script::sequential(vec![
            Reply::tools(vec![send("reviewer", "write it")]),
            Reply::text("done"),
            Reply::text("done"),
            Reply::text("done"),
        ])
        .with_route(reviewer(vec![
            Reply::tool_use("bash", json!({"command": "echo x >> side.txt"})),
            Reply::text("written"),
            Reply::text("written"),
            Reply::text("written"),
        ]));
        let env = TestEnv::new(script).await;
        let daemon = env.spawn_daemon(Some(point)).await;
        let id = setup(&env, json!([{"type": "agent_toolset_20260401"}]), false).await;
        let mut c = env.client().await;
        let _ = c
            .call(
                "session.send",
                json!({"session": id, "content": [{"type": "text", "text": "delegate"}]}),
            )
            .await;
        env.wait_killed(daemon).await;
        env.spawn_daemon(None).await;
        settle(&env, &id).await;

        let log = env.log(&id).await;
        one_result_each(&log);
        let sends: Vec<&Event> = log
            .iter()
            .filter(|e| matches!(e.body, EventBody::AgentThreadMessageSent { .. }))
            .collect();
        assert_eq!(sends.len(), 1, "{point}: delivered once");
        let created = log
            .iter()
            .filter(|e| matches!(e.body, EventBody::SessionThreadCreated { .. }))
            .count();
        assert_eq!(created, 1, "{point}: one thread");
        let res = results(&log);
        assert_eq!(res.len(), 1, "{point}: {res:#?}");
        assert_eq!(res[0].1, "written", "{point}: the reply is the result");
        let child = thread_log(&env, &id, "reviewer").await;
        gapless(&child);
        one_result_each(&child);
        let received = child
            .iter()
            .filter(|e| matches!(e.body, EventBody::AgentThreadMessageReceived { .. }))
            .count();
        assert_eq!(received, 1, "{point}: received once");
        let side = walk_find(env.home.path(), "side.txt");
        let lines = side
            .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
            .unwrap_or(0);
        assert!(lines <= 1, "{point}: the side effect ran {lines} times");
        let list = threads(&env, &id).await;
        assert!(
            list.iter().all(|t| t["status"] == "idle"),
            "{point}: {list:#?}"
        );
    }
}

/// Over HTTP, as the SDKs see it: a child's approval answered with `user.tool_confirmation`
/// on the session (routed by id), then the thread endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn threads_over_http_an_approval_answered_on_the_session_and_the_thread_endpoints() {
    let script = Script::sequential(vec![
        Reply::tools(vec![send("reviewer", "run the tests")]),
        Reply::text("tests ran"),
    ])
    .with_route(reviewer(vec![
        Reply::tool_use("bash", json!({"command": "echo ran"})),
        Reply::text("they pass"),
    ]));
    let env = TestEnv::new(script).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let tools = json!([{"type": "agent_toolset_20260401", "configs": [
        {"name": "bash", "permission_policy": {"type": "always_ask"}}]}]);
    let id = setup(&env, tools, false).await;
    let http = reqwest::Client::new();
    let call = |method: &str, path: String, body: Option<Value>| {
        let mut req = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("x-api-key", &token)
            .header("anthropic-beta", "managed-agents-2026-04-01");
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
            (status, v)
        }
    };
    let (st, v) = call(
        "POST",
        format!("/v1/sessions/{id}/events"),
        Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "test it"}]}]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    wait_for_log(&env, &id, |log| {
        log.iter().any(|e| {
            matches!(e.body, EventBody::AgentToolUse { .. }) && e.session_thread_id.is_some()
        })
    })
    .await;
    let (_, page) = call("GET", format!("/v1/sessions/{id}/events?limit=1000"), None).await;
    let cross = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "agent.tool_use" && e["session_thread_id"].is_string())
        .unwrap()
        .clone();
    let (st, v) = call(
        "POST",
        format!("/v1/sessions/{id}/events"),
        Some(json!({"events": [{"type": "user.tool_confirmation", "tool_use_id": cross["id"], "result": "allow"}]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["data"][0]["session_thread_id"], cross["session_thread_id"],
        "{v}"
    );
    settle(&env, &id).await;

    let (st, list) = call("GET", format!("/v1/sessions/{id}/threads"), None).await;
    assert_eq!(st, 200, "{list}");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["type"], "session_thread");
    assert_eq!(data[1]["id"], cross["session_thread_id"]);
    let tid = data[1]["id"].as_str().unwrap();
    let (st, one) = call("GET", format!("/v1/sessions/{id}/threads/{tid}"), None).await;
    assert_eq!(st, 200, "{one}");
    assert_eq!(one["agent"]["name"], "reviewer");
    // It ran, so its stats are set (null only until the first transition).
    for k in ["active_seconds", "duration_seconds", "startup_seconds"] {
        assert!(
            one["stats"][k].as_f64().is_some_and(|v| v >= 0.0),
            "{k}: {one}"
        );
    }
    let (_, evs) = call(
        "GET",
        format!("/v1/sessions/{id}/threads/{tid}/events?limit=1000"),
        None,
    )
    .await;
    let evs = evs["data"].as_array().unwrap();
    assert_eq!(evs[0]["type"], "agent.thread_message_received");
    assert!(evs.iter().all(|e| e["session_id"] == tid));
    let (st, none) = call("GET", format!("/v1/sessions/{id}/threads/sthr_nope"), None).await;
    assert_eq!(st, 404, "{none}");
    let (st, _) = call("GET", format!("/v1/sessions/{tid}"), None).await;
    assert_eq!(st, 404, "a thread is not a session");
    let (st, arch) = call(
        "POST",
        format!("/v1/sessions/{id}/threads/{tid}/archive"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{arch}");
    assert!(arch["archived_at"].is_string());
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// tests/sdk/threads.py: the official Python SDK, unmodified, lists a session's threads,
/// retrieves one, pages its events and streams it live.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_lists_reads_and_streams_threads() {
    let script = Script::sequential(vec![
        Reply::tools(vec![send("reviewer", "review it")]),
        Reply::text("first done"),
        Reply::tools(vec![send("reviewer", "again")]),
        Reply::text("second done"),
    ])
    .with_route(reviewer(vec![
        Reply::text("looks fine"),
        Reply::text("still fine"),
    ]));
    let env = TestEnv::new(script).await;
    env.run_sdk_program(
        &python(),
        &[&sdk_script("threads.py")],
        "python sdk threads ok",
    )
    .await;
}

/// The session's usage covers its threads after a restart too, before any of them loads.
#[tokio::test(flavor = "multi_thread")]
async fn a_sessions_usage_still_counts_its_threads_after_a_restart() {
    let script = Script::sequential(vec![
        Reply::tools(vec![send("reviewer", "review it")]),
        Reply::text("reviewed"),
    ])
    .with_route(reviewer(vec![Reply::text("looks fine")]));
    let env = TestEnv::new(script).await;
    let mut daemon = env.spawn_daemon(None).await;
    let id = setup(&env, json!([]), false).await;
    say(&env, &id, "get a review").await;
    settle(&env, &id).await;
    let before = model_requests(&env, &id).await;
    assert_eq!(
        before, 3,
        "the primary's two requests and the reviewer's one"
    );
    daemon.kill().unwrap();
    env.wait_killed(daemon).await;
    let _daemon = env.spawn_daemon(None).await;
    assert_eq!(model_requests(&env, &id).await, before);
}

async fn model_requests(env: &TestEnv, id: &str) -> u64 {
    let mut c = env.client().await;
    let info = c.call("session.get", json!({"session": id})).await.unwrap();
    info["usage"]["model_requests"].as_u64().unwrap()
}

/// Over HTTP a `multiagent_20261001` agent says every member with its default (strict SDK
/// clients require all three), and a session's copy gives each roster agent in full.
#[tokio::test(flavor = "multi_thread")]
async fn over_http_multiagent_says_its_defaults_and_a_session_has_the_full_roster() {
    let env = TestEnv::new(Script::by_turn(vec![])).await;
    let (mut daemon, api) = tether_e2e::http_api::Api::start(&env).await;
    let reviewer = api
        .post(
            "/v1/agents",
            json!({"name": "reviewer", "model": "claude-haiku-4-5", "system": "You review code."}),
        )
        .await;
    let lead = api
        .post(
            "/v1/agents",
            json!({"name": "lead", "model": "claude-haiku-4-5", "multiagent": {
                "type": "multiagent_20261001",
                "subagents": {"type": "enabled", "predefined_agents": [reviewer["id"]]}}}),
        )
        .await;
    let lead = api
        .get(&format!("/v1/agents/{}", lead["id"].as_str().unwrap()))
        .await;
    let m = &lead["multiagent"];
    assert_eq!(m["advisor"], json!({"type": "disabled"}), "{lead}");
    assert_eq!(
        m["workflows"],
        json!({"type": "enabled", "inline_agents": {"type": "enabled"}, "predefined_agents": []}),
        "{lead}"
    );
    assert_eq!(m["subagents"]["inline_agents"]["type"], "enabled", "{lead}");
    assert_eq!(
        m["subagents"]["predefined_agents"],
        json!([{"type": "agent", "id": reviewer["id"], "version": 1}]),
        "{lead}"
    );

    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": lead["id"], "environment_id": "default"}),
        )
        .await;
    let roster = &s["agent"]["multiagent"]["subagents"]["predefined_agents"];
    assert_eq!(roster.as_array().map(Vec::len), Some(1), "{s}");
    let member = &roster[0];
    assert_eq!(member["type"], "agent", "{s}");
    assert_eq!(member["id"], reviewer["id"], "{s}");
    assert_eq!(member["name"], "reviewer", "{s}");
    assert_eq!(member["system"], "You review code.", "{s}");
    assert_eq!(member["model"]["id"], "claude-haiku-4-5", "{s}");
    assert_eq!(
        member["execution_identity"]["type"], "service_account",
        "{s}"
    );
    assert!(member.get("multiagent").is_none(), "{s}");
    assert_eq!(
        s["agent"]["multiagent"]["advisor"]["type"], "disabled",
        "{s}"
    );
    let listed = api.get("/v1/sessions?limit=100").await;
    assert!(
        listed["data"].as_array().unwrap().iter().any(
            |x| x["agent"]["multiagent"]["subagents"]["predefined_agents"][0]["name"] == "reviewer"
        ),
        "{listed}"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
