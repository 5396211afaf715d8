//! MCP elicitation, the rest of issue 25, end to end with the real binaries:
//! - a child thread's MCP server asks: the question is cross-posted to the primary's stream,
//!   listed on the primary (with its thread and agent), answered through the primary's id
//!   over HTTP (recorded in the thread, echoed to the primary), and the child's tool result
//!   has the answer; interrupting the primary cancels a child's pending question;
//! - URL mode: the test MCP server's `open_url` asks the user to open a link; tetherd records
//!   it with the link, the user accepts ("I opened it"), the server's completion notification
//!   is recorded; a `javascript:` link is declined by tetherd with the reason recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::http_api::Api;
use tether_e2e::{Reply, TestEnv, assert_log_invariants};
use tether_mock_llm::{Route, Script};
use tether_proto::elicitation::{ElicitationAction, ElicitationMode};
use tether_proto::{Event, EventBody, ServerFrame, blocks_text};

const REVIEWER_MODEL: &str = "gpt-4.1";

fn forms_tools() -> Value {
    json!([
        {"type": "agent_toolset_20260401"},
        {"type": "mcp_toolset", "mcp_server_name": "forms",
         "default_config": {"permission_policy": {"type": "always_allow"}}}
    ])
}

/// A workspace under the test's home with the test MCP server in it (`./mock-mcp`).
/// The `asker` agent (its MCP server the mock one) created, and a detached session of it
/// given `message`; the session's id.
fn asker_session(env: &TestEnv, message: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.yaml");
    std::fs::write(&p, ASKER).unwrap();
    env.ok(&["agents", "create", "-f", p.to_str().unwrap()]);
    let ws = workspace(env);
    env.ok(&[
        "new",
        "--detach",
        "--agent",
        "asker",
        "--dir",
        ws.to_str().unwrap(),
        message,
    ])
    .trim()
    .to_string()
}

fn workspace(env: &TestEnv) -> std::path::PathBuf {
    let ws = tempfile::Builder::new()
        .prefix("ws")
        .tempdir_in(env.home.path())
        .unwrap()
        .keep();
    std::fs::copy(env!("CARGO_BIN_EXE_tether-mock-mcp"), ws.join("mock-mcp")).unwrap();
    ws
}

/// `reviewer` (on the Chat Completions mock, with the test MCP server) and `lead`, whose
/// roster lists it; a session of `lead`, sent `text`.
async fn lead_session(env: &TestEnv, text: &str) -> String {
    let mut c = env.client().await;
    c.call(
        "agent.create",
        json!({"name": "reviewer", "system": "You review.", "model": {"id": format!("openai/{REVIEWER_MODEL}")},
               "mcp_servers": [{"type": "stdio", "name": "forms", "command": "./mock-mcp"}],
               "tools": forms_tools()}),
    )
    .await
    .unwrap();
    c.call(
        "agent.create",
        json!({"name": "lead", "multiagent": {"type": "multiagent_20261001",
               "subagents": {"type": "enabled", "predefined_agents": ["reviewer"]}}}),
    )
    .await
    .unwrap();
    let ws = workspace(env);
    let info = c
        .call(
            "session.create",
            json!({"agent": "lead", "dir": ws.display().to_string()}),
        )
        .await
        .unwrap();
    let id = info["id"].as_str().unwrap().to_string();
    c.call(
        "session.send",
        json!({"session": id, "content": [{"type": "text", "text": text}]}),
    )
    .await
    .unwrap();
    id
}

fn lead_script() -> Script {
    Script::sequential(vec![
        Reply::tool_use(
            "send_to_agent",
            json!({"agent": "reviewer", "message": "review it"}),
        ),
        Reply::text("the reviewer is done"),
    ])
    .with_route(
        Route::new(
            "reviewer",
            vec![
                Reply::tool_use(
                    "mcp__forms__ask",
                    json!({"message": "Who signs off the review?"}),
                ),
                Reply::text("reviewed"),
            ],
        )
        .when_model(REVIEWER_MODEL),
    )
}

/// Waits on `id`'s stream (the primary's, or a thread's with `thread`) for the first
/// elicitation request matching `thread_posted` (a cross-post names its thread); the event.
async fn requested(env: &TestEnv, id: &str, cross_posted: bool) -> Event {
    let mut c = env.client().await;
    let frames = c
        .attach_until(id, 0, |f| {
            matches!(f, ServerFrame::Event(e)
                if matches!(e.body, EventBody::McpElicitationRequested { .. })
                    && e.session_thread_id.is_some() == cross_posted)
        })
        .await;
    match frames.last() {
        Some(ServerFrame::Event(e)) => (**e).clone(),
        other => panic!("no request: {other:?}"),
    }
}

fn elicitation_id(e: &Event) -> String {
    match &e.body {
        EventBody::McpElicitationRequested { elicitation_id, .. } => elicitation_id.clone(),
        other => panic!("not a request: {other:?}"),
    }
}

/// Waits until the session and all its threads are idle (the primary may go idle first).
async fn settle(env: &TestEnv, id: &str) {
    loop {
        let mut c = env.client().await;
        let info = c.call("session.get", json!({"session": id})).await.unwrap();
        if info["status"] == "idle" {
            return;
        }
        let from = info["last_seq"].as_u64().unwrap();
        c.attach_until(id, from, |f| {
            matches!(f, ServerFrame::Event(e) if matches!(e.body, EventBody::SessionStatusIdle { .. } | EventBody::SessionThreadStatusIdle { .. }))
        })
        .await;
    }
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

fn mcp_results(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AgentMcpToolResult { content, .. } => Some(blocks_text(content)),
            _ => None,
        })
        .collect()
}

fn answers(events: &[Event]) -> Vec<(ElicitationAction, Option<String>, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::McpElicitationAnswered { action, reason, .. } => {
                Some((*action, reason.clone(), e.session_thread_id.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_threads_question_is_listed_and_answered_through_the_primary_over_http() {
    let env = TestEnv::new(lead_script()).await;
    let (mut daemon, api) = Api::start(&env).await;
    let id = lead_session(&env, "get it reviewed").await;
    let crossed = requested(&env, &id, true).await;
    let elic = elicitation_id(&crossed);
    let thread = crossed.session_thread_id.clone().unwrap();
    assert!(thread.starts_with("sthr_"), "{thread}");

    // Listed on the primary, naming the thread and its agent.
    let listed = api.get(&format!("/v1/sessions/{id}/elicitations")).await;
    let item = &listed["data"][0];
    assert_eq!(item["id"], elic.as_str(), "{listed}");
    assert_eq!(item["status"], "pending");
    assert_eq!(item["session_thread_id"], thread.as_str());
    assert_eq!(item["agent_name"], "reviewer");
    assert_eq!(item["mcp_server_name"], "forms");
    // And on the thread's own list (the socket names a thread by its agent or id).
    let mut c = env.client().await;
    let own = c
        .call(
            "session.elicitations",
            json!({"session": id, "thread": "reviewer"}),
        )
        .await
        .unwrap();
    assert_eq!(own["data"][0]["id"], elic.as_str(), "{own}");
    assert_eq!(own["data"][0]["session_id"], thread.as_str());
    // The CLI says who asks.
    let shown = env.ok(&["elicitations", &id]);
    assert!(
        shown.contains(&elic) && shown.contains("reviewer's forms") && shown.contains(&thread),
        "{shown}"
    );

    // Answered through the primary's id: bad content is refused there too, naming the field.
    let path = format!("/v1/sessions/{id}/elicitations/{elic}");
    let (status, body) = api
        .call(
            "POST",
            &path,
            Some(json!({"action": "accept", "content": {"name": "Ada", "age": "old"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content.age")
    );
    let answer = api
        .post(
            &path,
            json!({"action": "accept", "content": {"name": "Ada", "age": 36}}),
        )
        .await;
    assert_eq!(answer["status"], "answered", "{answer}");
    assert_eq!(answer["session_thread_id"], thread.as_str());
    // The first answer wins, whichever door a second one comes through (the socket, the
    // thread named by `thread`).
    let mut c = env.client().await;
    let refused = c
        .call(
            "session.elicitation_answer",
            json!({"session": id, "thread": "reviewer", "elicitation_id": elic, "action": "decline"}),
        )
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("already answered (accept)"),
        "{refused:?}"
    );

    env.wait_idle(&id).await;
    let child = thread_log(&env, &id, &thread).await;
    assert_log_invariants(&child);
    let results = mcp_results(&child);
    assert_eq!(results.len(), 1, "{child:#?}");
    assert!(
        results[0].starts_with("accept ") && results[0].contains("\"name\":\"Ada\""),
        "the child's server got the answer: {}",
        results[0]
    );
    // Recorded in the thread, before its result; echoed into the primary with the thread.
    let pos = |f: &dyn Fn(&EventBody) -> bool| child.iter().position(|e| f(&e.body)).unwrap();
    let asked = pos(
        &|b| matches!(b, EventBody::McpElicitationRequested { agent_name: Some(a), .. } if a == "reviewer"),
    );
    let ans = pos(&|b| matches!(b, EventBody::McpElicitationAnswered { .. }));
    let res = pos(&|b| matches!(b, EventBody::AgentMcpToolResult { .. }));
    assert!(asked < ans && ans < res, "{child:#?}");
    let primary = env.log(&id).await;
    assert_log_invariants(&primary);
    assert_eq!(
        answers(&primary),
        vec![(ElicitationAction::Accept, None, Some(thread.clone()))]
    );
    let all = api
        .get(&format!("/v1/sessions/{id}/elicitations?status=all"))
        .await;
    assert_eq!(all["data"][0]["status"], "answered", "{all}");
    let _ = daemon.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupting_the_primary_cancels_a_childs_pending_question() {
    let env = TestEnv::new(lead_script()).await;
    env.spawn_daemon(None).await;
    let id = lead_session(&env, "get it reviewed").await;
    let crossed = requested(&env, &id, true).await;
    let elic = elicitation_id(&crossed);
    let mut c = env.client().await;
    c.call("session.interrupt", json!({"session": id}))
        .await
        .unwrap();
    settle(&env, &id).await;
    let thread = crossed.session_thread_id.unwrap();
    let child = thread_log(&env, &id, &thread).await;
    let closed = answers(&child);
    assert_eq!(closed.len(), 1, "{child:#?}");
    assert_eq!(closed[0].0, ElicitationAction::Cancel);
    assert!(closed[0].1.is_some(), "tetherd says why: {closed:?}");
    // Nothing is left pending on the session, and answering now is refused.
    let listed = c
        .call("session.elicitations", json!({"session": id}))
        .await
        .unwrap();
    assert_eq!(listed["data"], json!([]), "{listed}");
    let refused = c
        .call(
            "session.elicitation_answer",
            json!({"session": id, "elicitation_id": elic, "action": "decline"}),
        )
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("already answered (cancel"),
        "{refused:?}"
    );
}

const ASKER: &str = "name: asker
mcp_servers:
  - {type: stdio, name: forms, command: ./mock-mcp}
tools:
  - type: agent_toolset_20260401
  - type: mcp_toolset
    mcp_server_name: forms
    default_config: {permission_policy: {type: always_allow}}
";

const LINK: &str = "https://auth.example.com/signin?state=abc123";

#[tokio::test(flavor = "multi_thread")]
async fn a_url_question_shows_the_link_accept_means_opened_and_completion_is_recorded() {
    let script = Script::sequential(vec![
        Reply::tool_use(
            "mcp__forms__open_url",
            json!({"url": "javascript:alert(1)"}),
        ),
        Reply::tool_use("mcp__forms__open_url", json!({"url": LINK})),
        Reply::text("signed in"),
    ])
    .with_side_reply(Reply::text("title"));
    let env = TestEnv::new(script).await;
    let (mut daemon, api) = Api::start(&env).await;
    let id = asker_session(&env, "sign me in");

    // The second request (the first was declined by tetherd at once) waits for the user.
    let mut c = env.client().await;
    let frames = c
        .attach_until(&id, 0, |f| {
            matches!(f, ServerFrame::Event(e)
                if matches!(&e.body, EventBody::McpElicitationRequested { url: Some(u), .. } if u == LINK))
        })
        .await;
    let Some(ServerFrame::Event(asked)) = frames.last() else {
        panic!("no request");
    };
    let EventBody::McpElicitationRequested {
        elicitation_id: elic,
        mode,
        requested_schema,
        ..
    } = &asked.body
    else {
        unreachable!()
    };
    assert_eq!(*mode, ElicitationMode::Url);
    assert!(requested_schema.is_null());
    let listed = api.get(&format!("/v1/sessions/{id}/elicitations")).await;
    assert_eq!(listed["data"][0]["mode"], "url", "{listed}");
    assert_eq!(listed["data"][0]["url"], LINK);
    let shown = env.ok(&["elicitations", &id]);
    assert!(shown.contains(LINK), "the link in full: {shown}");

    // Content makes no sense for a link: refused, still pending.
    let path = format!("/v1/sessions/{id}/elicitations/{elic}");
    let (status, body) = api
        .call(
            "POST",
            &path,
            Some(json!({"action": "accept", "content": {"password": "x"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("takes no content"),
        "{body}"
    );
    // `--accept` alone: "I opened it".
    env.ok(&["elicitations", "answer", &id, elic, "--accept"]);
    env.wait_idle(&id).await;
    // The server's completion notification is recorded as an event.
    let mut c = env.client().await;
    c.attach_until(&id, 0, |f| {
        matches!(f, ServerFrame::Event(e) if matches!(e.body, EventBody::McpElicitationCompleted { .. }))
    })
    .await;
    let done = env.log(&id).await;
    let events = done;
    assert_log_invariants(&events);
    assert!(
        events.iter().any(|e| matches!(&e.body, EventBody::McpElicitationCompleted { elicitation_id } if elicitation_id == elic)),
        "{events:#?}"
    );
    assert_eq!(mcp_results(&events), ["decline", "accept"]);
    let closed = answers(&events);
    assert_eq!(closed.len(), 2, "{closed:?}");
    assert_eq!(closed[0].0, ElicitationAction::Decline);
    let why = closed[0].1.as_deref().unwrap();
    assert!(
        why.contains("`javascript:` is not a web link"),
        "the reason is recorded: {why}"
    );
    assert_eq!(closed[1], (ElicitationAction::Accept, None, None));
    let all = api
        .get(&format!("/v1/sessions/{id}/elicitations?status=all"))
        .await;
    assert_eq!(all["data"][1]["completed"], true, "{all}");
    let _ = daemon.kill();
}

/// -32042 again for a page the user already accepted: they have not finished on it yet, so
/// tetherd does not ask again but waits for the server to say the page is complete, then
/// calls a third time.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_still_wanted_after_the_user_accepted_is_waited_for_then_the_call_is_retried() {
    const PAGE: &str = "https://auth.example.com/authorize?flow=3";
    let script = Script::sequential(vec![
        Reply::tool_use(
            "mcp__forms__needs_url",
            json!({"url": PAGE, "finish_late": true}),
        ),
        Reply::text("authorized"),
    ])
    .with_side_reply(Reply::text("title"));
    let env = TestEnv::new(script).await;
    env.spawn_daemon(None).await;
    let id = asker_session(&env, "do it");
    let asked = requested(&env, &id, false).await;
    env.ok(&[
        "elicitations",
        "answer",
        &id,
        &elicitation_id(&asked),
        "--accept",
    ]);
    env.wait_idle(&id).await;
    let events = env.log(&id).await;
    assert_log_invariants(&events);
    assert_eq!(mcp_results(&events), ["authorized late"], "{events:#?}");
    // Asked once; the server's completion closed it.
    let requested: Vec<&EventBody> = events
        .iter()
        .map(|e| &e.body)
        .filter(|b| matches!(b, EventBody::McpElicitationRequested { .. }))
        .collect();
    assert_eq!(requested.len(), 1, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.body, EventBody::McpElicitationCompleted { .. })),
        "{events:#?}"
    );
}

/// `URLElicitationRequiredError` (-32042): the call fails asking for a page; tetherd asks the
/// user like a URL-mode question and, once accepted, calls again.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_needs_a_page_first_asks_for_it_and_is_retried_once_accepted() {
    const PAGE: &str = "https://auth.example.com/authorize?flow=2";
    let script = Script::sequential(vec![
        Reply::tool_use("mcp__forms__needs_url", json!({"url": PAGE})),
        Reply::text("authorized"),
    ])
    .with_side_reply(Reply::text("title"));
    let env = TestEnv::new(script).await;
    env.spawn_daemon(None).await;
    let id = asker_session(&env, "do it");
    let asked = requested(&env, &id, false).await;
    let EventBody::McpElicitationRequested { mode, url, .. } = &asked.body else {
        unreachable!()
    };
    assert_eq!(*mode, ElicitationMode::Url);
    assert_eq!(url.as_deref(), Some(PAGE));
    env.ok(&[
        "elicitations",
        "answer",
        &id,
        &elicitation_id(&asked),
        "--accept",
    ]);
    env.wait_idle(&id).await;
    let events = env.log(&id).await;
    assert_log_invariants(&events);
    assert_eq!(mcp_results(&events), ["authorized"], "{events:#?}");
}
