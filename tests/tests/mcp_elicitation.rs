//! MCP elicitation end to end (issue 25): the test MCP server's `ask` tool asks the user for a
//! name, age, color and yes/no during the call (`elicitation/create`, form mode); tetherd
//! records the request, waits for an answer from any client (HTTP, the socket, the CLI),
//! checks it against the requested schema, records it and hands it to the server, whose tool
//! result says what it got. A restart while one waits closes it as cancelled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::http_api::Api;
use tether_e2e::{Reply, TestEnv, assert_log_invariants};
use tether_mock_llm::Script;
use tether_proto::elicitation::ElicitationAction;
use tether_proto::{Event, EventBody, ServerFrame, ToolStatus, blocks_text};

const AGENT: &str = "name: asker
mcp_servers:
  - {type: stdio, name: forms, command: ./mock-mcp}
tools:
  - type: agent_toolset_20260401
  - type: mcp_toolset
    mcp_server_name: forms
    default_config: {permission_policy: {type: always_allow}}
";

fn script() -> Script {
    Script::by_turn(vec![
        Reply::tool_use("mcp__forms__ask", json!({"message": "Who are you?"})),
        Reply::text("done"),
        Reply::text("again"),
    ])
    .with_side_reply(Reply::text("title"))
}

fn setup(env: &TestEnv) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.yaml");
    std::fs::write(&p, AGENT).unwrap();
    env.ok(&["agents", "create", "-f", p.to_str().unwrap()]);
    let ws = tempfile::Builder::new().prefix("elicws").tempdir().unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_tether-mock-mcp"),
        ws.path().join("mock-mcp"),
    )
    .unwrap();
    ws
}

fn start(env: &TestEnv, ws: &std::path::Path) -> String {
    env.ok(&[
        "new",
        "--detach",
        "--agent",
        "asker",
        "--dir",
        ws.to_str().unwrap(),
        "ask me",
    ])
    .trim()
    .to_string()
}

/// Waits for the session's first elicitation request; its id and event.
async fn requested(env: &TestEnv, id: &str) -> (String, Event) {
    let mut c = env.client().await;
    let frames = c
        .attach_until(id, 0, |f| {
            matches!(f, ServerFrame::Event(e) if matches!(e.body, EventBody::McpElicitationRequested { .. }))
        })
        .await;
    let Some(ServerFrame::Event(e)) = frames.last() else {
        panic!("no event");
    };
    let EventBody::McpElicitationRequested { elicitation_id, .. } = &e.body else {
        panic!("not a request: {e:?}");
    };
    (elicitation_id.clone(), (**e).clone())
}

fn mcp_result(events: &[Event]) -> (String, bool) {
    events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentMcpToolResult {
                content, is_error, ..
            } => Some((blocks_text(content), *is_error)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no agent.mcp_tool_result in {events:#?}"))
}

/// Every elicitation asked is answered exactly once, after it was asked and before the
/// result of the call it belongs to (nothing is left dangling).
fn assert_elicitations_closed(events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        let EventBody::McpElicitationRequested {
            elicitation_id,
            tool_use_id,
            ..
        } = &e.body
        else {
            continue;
        };
        let answers: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, a)| matches!(&a.body, EventBody::McpElicitationAnswered { elicitation_id: x, .. } if x == elicitation_id))
            .map(|(j, _)| j)
            .collect();
        assert_eq!(answers.len(), 1, "{elicitation_id}: {events:#?}");
        assert!(answers[0] > i);
        let result = events.iter().position(|r| {
            matches!(&r.body, EventBody::AgentMcpToolResult { mcp_tool_use_id, .. } if Some(mcp_tool_use_id) == tool_use_id.as_ref())
        });
        assert!(
            result.is_some_and(|r| r > answers[0]),
            "{elicitation_id} answered after its call's result: {events:#?}"
        );
    }
}

fn answered(events: &[Event]) -> Vec<(ElicitationAction, Option<Value>, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::McpElicitationAnswered {
                action,
                content,
                reason,
                ..
            } => Some((*action, content.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_http_reaches_the_server_and_bad_content_is_refused_naming_the_field() {
    let env = TestEnv::new(script()).await;
    let (mut daemon, api) = Api::start(&env).await;
    let ws = setup(&env);
    let id = start(&env, ws.path());
    let (elic, request) = requested(&env, &id).await;
    let EventBody::McpElicitationRequested {
        mcp_server_name,
        tool_use_id,
        message,
        requested_schema,
        ..
    } = &request.body
    else {
        unreachable!()
    };
    assert_eq!(mcp_server_name, "forms");
    assert_eq!(message, "Who are you?");
    assert_eq!(requested_schema["required"], json!(["name", "age"]));
    let call = env
        .events(&id)
        .into_iter()
        .find(|e| matches!(e.body, EventBody::AgentMcpToolUse { .. }))
        .unwrap();
    assert_eq!(tool_use_id.as_deref(), Some(call.id.as_str()));

    // Pending, listed over HTTP.
    let listed = api.get(&format!("/v1/sessions/{id}/elicitations")).await;
    assert_eq!(listed["data"][0]["id"], elic.as_str(), "{listed}");
    assert_eq!(listed["data"][0]["status"], "pending");

    let path = format!("/v1/sessions/{id}/elicitations/{elic}");
    // Bad content is refused with the field named, and loses nothing: it is still pending.
    let (status, body) = api
        .call(
            "POST",
            &path,
            Some(json!({"action": "accept", "content": {"name": "Ada", "age": "old"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("content.age") && msg.contains("integer"),
        "{msg}"
    );
    let (status, body) = api
        .call(
            "POST",
            &path,
            Some(json!({"action": "accept", "content": {"age": 3}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content.name: required"),
        "{body}"
    );
    // An unknown id is a 404 naming it.
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/sessions/{id}/elicitations/elic_nope"),
            Some(json!({"action": "decline"})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("elic_nope")
    );

    let answer = api
        .post(
            &path,
            json!({"action": "accept", "content": {"name": "Ada", "age": 36, "color": "green"}}),
        )
        .await;
    assert_eq!(answer["status"], "answered", "{answer}");
    assert_eq!(answer["action"], "accept");
    // The first answer wins.
    let (status, body) = api
        .call("POST", &path, Some(json!({"action": "decline"})))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already answered (accept)"),
        "{body}"
    );

    env.wait_idle(&id).await;
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert_elicitations_closed(&events);
    let (text, is_error) = mcp_result(&events);
    assert!(!is_error, "{text}");
    assert!(
        text.starts_with("accept ")
            && text.contains("\"name\":\"Ada\"")
            && text.contains("\"age\":36")
            && text.contains("\"color\":\"green\""),
        "the server got what the user typed: {text}"
    );
    // Recorded before the result: request, answer, result.
    let pos = |f: &dyn Fn(&EventBody) -> bool| events.iter().position(|e| f(&e.body)).unwrap();
    let asked = pos(&|b| matches!(b, EventBody::McpElicitationRequested { .. }));
    let ans = pos(&|b| matches!(b, EventBody::McpElicitationAnswered { .. }));
    let res = pos(&|b| matches!(b, EventBody::AgentMcpToolResult { .. }));
    assert!(asked < ans && ans < res, "{events:#?}");

    // tether's own event types stay off the hosted event list unless asked for.
    let hosted = api.get(&format!("/v1/sessions/{id}/events")).await;
    let types: Vec<&str> = hosted["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(!types.iter().any(|t| t.starts_with("tether.")), "{types:?}");
    let all = api
        .get(&format!("/v1/sessions/{id}/events?tether_events=true"))
        .await;
    assert!(
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "tether.mcp_elicitation_answered"),
        "{all}"
    );
    let pending = api.get(&format!("/v1/sessions/{id}/elicitations")).await;
    assert_eq!(pending["data"], json!([]));
    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decline_over_the_socket_and_the_cli_list() {
    let env = TestEnv::new(script()).await;
    let ws = setup(&env);
    let id = start(&env, ws.path());
    let (elic, _) = requested(&env, &id).await;

    let listed = env.ok(&["elicitations", &id]);
    assert!(
        listed.contains(&elic) && listed.contains("Who are you?") && listed.contains("forms"),
        "{listed}"
    );
    let mut c = env.client().await;
    let pending = c
        .call("session.elicitations", json!({"session": id}))
        .await
        .unwrap();
    assert_eq!(pending["data"][0]["id"], elic.as_str());
    // Content goes with accept only.
    let err = c
        .call(
            "session.elicitation_answer",
            json!({"session": id, "elicitation_id": elic, "action": "decline", "content": {"name": "x"}}),
        )
        .await
        .unwrap_err();
    assert!(err.message.contains("accept only"), "{}", err.message);
    let rec = c
        .call(
            "session.elicitation_answer",
            json!({"session": id, "elicitation_id": elic, "action": "decline"}),
        )
        .await
        .unwrap();
    assert_eq!(rec["event"]["type"], "tether.mcp_elicitation_answered");
    env.wait_idle(&id).await;
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert_elicitations_closed(&events);
    let (text, _) = mcp_result(&events);
    assert_eq!(text, "decline");
    assert_eq!(
        answered(&events),
        vec![(ElicitationAction::Decline, None, None)]
    );
    let listed = env.ok(&["elicitations", &id]);
    assert!(listed.contains("no pending"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_while_one_is_pending_cancels_it_and_the_session_goes_on() {
    let env = TestEnv::new(script()).await;
    let daemon = env.spawn_daemon(None).await;
    let ws = setup(&env);
    let id = start(&env, ws.path());
    let (elic, _) = requested(&env, &id).await;
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    env.wait_killed(daemon).await;

    let mut daemon = env.spawn_daemon(None).await;
    env.wait_idle(&id).await;
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert_elicitations_closed(&events);
    let closed = answered(&events);
    assert_eq!(closed.len(), 1, "{events:#?}");
    assert_eq!(closed[0].0, ElicitationAction::Cancel);
    assert!(
        closed[0].2.as_deref().unwrap().contains("restarted"),
        "{closed:?}"
    );
    let result = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentMcpToolResult { content, .. } => Some(blocks_text(content)),
            EventBody::AgentToolResult {
                status: ToolStatus::Interrupted,
                content,
                ..
            } => Some(blocks_text(content)),
            _ => None,
        })
        .unwrap();
    assert!(result.contains("interrupted"), "{result}");
    // Answering it now is a conflict that says why.
    let mut c = env.client().await;
    let err = c
        .call(
            "session.elicitation_answer",
            json!({"session": id, "elicitation_id": elic, "action": "cancel"}),
        )
        .await
        .unwrap_err();
    assert!(
        err.message.contains("already answered (cancel"),
        "{}",
        err.message
    );
    // Not stuck: the next message gets an answer.
    env.ok(&["send", &id, "still there?", "--wait"]);
    let events = env.events(&id);
    assert!(
        events.iter().any(
            |e| matches!(&e.body, EventBody::AgentMessage { content } if blocks_text(content) == "again")
        ),
        "{events:#?}"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupt_cancels_a_pending_elicitation() {
    let env = TestEnv::new(script()).await;
    let ws = setup(&env);
    let id = start(&env, ws.path());
    requested(&env, &id).await;
    env.ok(&["interrupt", &id]);
    env.wait_idle(&id).await;
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert_elicitations_closed(&events);
    let closed = answered(&events);
    assert_eq!(closed.len(), 1, "{events:#?}");
    assert_eq!(closed[0].0, ElicitationAction::Cancel);
    assert!(
        closed[0].2.as_deref().unwrap().contains("interrupted"),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_elicitation_times_out_with_the_reason_recorded() {
    let env = TestEnv::with_config(script(), "[mcp]\nelicitation_timeout_secs = 1\n").await;
    let ws = setup(&env);
    let id = start(&env, ws.path());
    requested(&env, &id).await;
    // The timeout's cancel is what ends the call: the session goes idle on its own.
    env.wait_idle(&id).await;
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert_elicitations_closed(&events);
    let closed = answered(&events);
    assert_eq!(closed[0].0, ElicitationAction::Cancel);
    let reason = closed[0].2.as_deref().unwrap();
    assert!(
        reason.contains("within 1 s") && reason.contains("elicitation_timeout_secs"),
        "{reason}"
    );
    let (text, _) = mcp_result(&events);
    assert_eq!(text, "cancel", "the server was told");
}
