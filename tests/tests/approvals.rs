//! Permission policies and custom tools end to end: `always_ask` calls wait (idle,
//! `requires_action`) until a client allows or denies them, custom tool calls wait for the
//! client's result, and what the model is sent afterwards is checked on the mock's side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv, assert_log_invariants};
use tether_mock_llm::Script;
use tether_proto::{
    ConfirmationResult, ErrorCode, Event, EventBody, Permission, SessionInfo, SessionStatus,
    StopReason, ToolStatus,
};

const ASKER: &str = "name: asker
tools:
  - type: agent_toolset_20260401
    configs:
      - name: bash
        permission_policy: {type: always_ask}
      - name: write
        enabled: false
";

const WEATHER: &str = "name: weather
tools:
  - type: agent_toolset_20260401
  - type: custom
    name: lookup_weather
    description: Current weather of a city
    input_schema:
      type: object
      properties:
        city: {type: string}
      required: [city]
";

fn create_agent(env: &TestEnv, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.yaml");
    std::fs::write(&p, yaml).unwrap();
    env.ok(&["agents", "create", "-f", p.to_str().unwrap()]);
}

/// `tether new --detach --agent AGENT PROMPT`, returning the session id.
fn start(env: &TestEnv, agent: &str, prompt: &str) -> String {
    env.ok(&["new", "--detach", "--agent", agent, prompt])
        .trim()
        .to_string()
}

async fn info(env: &TestEnv, id: &str) -> SessionInfo {
    let mut c = env.client().await;
    serde_json::from_value(c.call("session.get", json!({"session": id})).await.unwrap()).unwrap()
}

/// Waits until the session is idle and returns the calls it waits on.
async fn wait_requires_action(env: &TestEnv, id: &str) -> Vec<String> {
    env.wait_idle(id).await;
    match info(env, id).await.stop_reason {
        Some(StopReason::RequiresAction { event_ids }) => event_ids,
        other => panic!(
            "expected requires_action, got {other:?}: {:#?}",
            env.events(id)
        ),
    }
}

async fn wait_end_turn(env: &TestEnv, id: &str) -> Vec<Event> {
    env.wait_idle(id).await;
    let events = env.events(id);
    assert_eq!(
        info(env, id).await.stop_reason,
        Some(StopReason::EndTurn),
        "{events:#?}"
    );
    assert_log_invariants(&events);
    events
}

fn tools_offered(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The `tool_result` block for `id` in the last message of a request body.
fn tool_result_in(body: &Value, id: &str) -> Value {
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    last["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_result" && b["tool_use_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no tool_result for {id} in {last:#}"))
}

fn result_of(events: &[Event], id: &str) -> (ToolStatus, String) {
    events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentToolResult {
                tool_use_id,
                status,
                content,
                ..
            } if tool_use_id == id => Some((*status, tether_proto::blocks_text(content))),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no result for {id}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_asked_call_waits_and_runs_once_allowed_via_the_cli() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use(
            "bash",
            json!({"command": "echo ran >> marker.txt; echo hello"}),
        ),
        Reply::text("done"),
    ]))
    .await;
    create_agent(&env, ASKER);
    let id = start(&env, "asker", "run it");
    let waiting = wait_requires_action(&env, &id).await;
    assert_eq!(waiting.len(), 1);
    let events = env.events(&id);
    assert_log_invariants(&events);
    let tool_use = events.iter().find(|e| e.id == waiting[0]).unwrap();
    assert!(matches!(
        tool_use.body,
        EventBody::AgentToolUse {
            evaluated_permission: Some(Permission::Ask),
            ..
        }
    ));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.body, EventBody::SpanToolCallStart { .. })),
        "the asked call must not start before it is allowed"
    );
    let workspace = info(&env, &id).await.workspace;
    assert!(!std::path::Path::new(&workspace).join("marker.txt").exists());
    let ls = env.ok(&["ls"]);
    assert!(ls.contains("waiting for approval"), "{ls}");

    // No EVENT: the single waiting call is the one answered.
    let out = env.run(&["approve", &id]);
    assert!(out.status.success(), "{out:?}");
    let events = wait_end_turn(&env, &id).await;
    assert_eq!(result_of(&events, &waiting[0]).0, ToolStatus::Ok);
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&workspace).join("marker.txt")).unwrap(),
        "ran\n",
        "the call ran exactly once"
    );
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    let r = tool_result_in(&reqs[1].body, &waiting[0]);
    assert!(r.to_string().contains("hello"), "{r}");

    // Answering again is a conflict that says why.
    let out = env.run(&["approve", &id, &waiting[0]]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already has its result"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denial_over_the_protocol_reaches_the_model_with_its_message() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tools(vec![
            ("bash", json!({"command": "touch denied.txt"})),
            ("read", json!({"file_path": "nothing-here.txt"})),
        ]),
        Reply::text("ok, I won't"),
    ]))
    .await;
    create_agent(&env, ASKER);
    let id = start(&env, "asker", "clean up");
    let waiting = wait_requires_action(&env, &id).await;
    assert_eq!(waiting.len(), 1, "only bash asks; read is always_allow");
    let ask = waiting[0].clone();
    let mut c = env.client().await;

    // Wrong ids and wrong kinds are refused with errors that say what to do.
    let e = c
        .call(
            "tool.confirm",
            json!({"session": id, "tool_use_id": "sevt_nope", "result": "allow"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains(&ask), "{}", e.message);
    let e = c
        .call(
            "custom_tool.result",
            json!({"session": id, "custom_tool_use_id": ask, "content": []}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("tether approve"), "{}", e.message);

    let v = c
        .call(
            "tool.confirm",
            json!({"session": id, "tool_use_id": ask, "result": "deny",
                   "deny_message": "not on this machine"}),
        )
        .await
        .unwrap();
    assert_eq!(v["event"]["type"], "user.tool_confirmation");
    let e = c
        .call(
            "tool.confirm",
            json!({"session": id, "tool_use_id": ask, "result": "allow"}),
        )
        .await
        .unwrap_err();
    // Not a conflict: the SDKs retry a 409 as transient, and an answered call stays answered.
    assert_eq!(e.code, ErrorCode::InvalidParams, "{}", e.message);
    assert!(
        e.message.contains("already has its result"),
        "{}",
        e.message
    );

    let events = wait_end_turn(&env, &id).await;
    assert!(events.iter().any(|e| matches!(
        &e.body,
        EventBody::UserToolConfirmation { result: ConfirmationResult::Deny, deny_message: Some(m), .. }
            if m == "not on this machine"
    )));
    assert_eq!(result_of(&events, &ask).0, ToolStatus::Denied);
    let workspace = info(&env, &id).await.workspace;
    assert!(
        !std::path::Path::new(&workspace).join("denied.txt").exists(),
        "a denied call never runs"
    );
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    let r = tool_result_in(&reqs[1].body, &ask);
    assert_eq!(r["is_error"], true, "{r}");
    assert!(r.to_string().contains("not on this machine"), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_tool_round_trips_through_the_client() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("lookup_weather", json!({"city": "Oslo"})),
        Reply::text("It is mild in Oslo."),
    ]))
    .await;
    create_agent(&env, WEATHER);
    let id = start(&env, "weather", "weather in Oslo?");
    let waiting = wait_requires_action(&env, &id).await;
    assert_eq!(waiting.len(), 1);
    let call = waiting[0].clone();
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert!(events.iter().any(|e| e.id == call
        && matches!(&e.body, EventBody::AgentCustomToolUse { name, input }
            if name == "lookup_weather" && input["city"] == "Oslo")));
    // The model was offered the custom tool with its schema, after the built-in ones.
    let first = &env.mock.requests()[0].body;
    let offered = tools_offered(first);
    assert_eq!(offered.last().unwrap(), "lookup_weather", "{offered:?}");
    let spec = first["tools"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(spec["input_schema"]["required"], json!(["city"]), "{spec}");

    // A custom call wants a result, not an approval.
    let out = env.run(&["approve", &id, &call]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tether tool-result"),
        "{out:?}"
    );
    env.ok(&["tool-result", &id, &call, "--json", r#"{"temp_c": 12}"#]);
    let events = wait_end_turn(&env, &id).await;
    assert!(events.iter().any(|e| matches!(&e.body,
        EventBody::UserCustomToolResult { custom_tool_use_id, is_error: false, .. } if *custom_tool_use_id == call)));
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    let r = tool_result_in(&reqs[1].body, &call);
    assert!(r.to_string().contains("temp_c"), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_tool_is_not_offered_and_refused_if_called() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("write", json!({"file_path": "x.txt", "content": "x"})),
        Reply::text("fine"),
    ]))
    .await;
    create_agent(&env, ASKER);
    let id = start(&env, "asker", "write x");
    let events = wait_end_turn(&env, &id).await;
    let reqs = env.mock.requests();
    let offered = tools_offered(&reqs[0].body);
    assert!(!offered.contains(&"write".to_string()), "{offered:?}");
    assert!(offered.contains(&"bash".to_string()), "{offered:?}");
    let call = events
        .iter()
        .find(|e| matches!(e.body, EventBody::AgentToolUse { .. }))
        .unwrap();
    assert!(matches!(
        call.body,
        EventBody::AgentToolUse {
            evaluated_permission: Some(Permission::Deny),
            ..
        }
    ));
    let (status, text) = result_of(&events, &call.id);
    assert_eq!(status, ToolStatus::Denied);
    assert!(text.contains("not enabled"), "{text}");
}

/// kill -9 while a call waits for approval: after the restart the session still waits (not
/// resumed, nothing run or marked interrupted); approving then completes the turn.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_while_waiting_keeps_waiting_and_the_approval_still_works() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("bash", json!({"command": "echo ran >> marker.txt"})),
        Reply::text("done"),
    ]))
    .await;
    let mut daemon = env.spawn_daemon(None).await;
    create_agent(&env, ASKER);
    let id = start(&env, "asker", "run it");
    let waiting = wait_requires_action(&env, &id).await;
    let before = env.events(&id);
    daemon.kill().unwrap();
    env.wait_killed(daemon).await;

    // `ls` starts a fresh daemon; recovery must leave the waiting session alone.
    env.ok(&["ls"]);
    let after = info(&env, &id).await;
    assert_eq!(after.status, SessionStatus::Idle);
    assert_eq!(
        after.stop_reason,
        Some(StopReason::RequiresAction {
            event_ids: waiting.clone()
        })
    );
    assert_eq!(env.events(&id), before, "the restart wrote nothing");
    assert_log_invariants(&before);

    env.ok(&["approve", &id, &waiting[0]]);
    let events = wait_end_turn(&env, &id).await;
    assert_eq!(result_of(&events, &waiting[0]).0, ToolStatus::Ok);
    let workspace = info(&env, &id).await.workspace;
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&workspace).join("marker.txt")).unwrap(),
        "ran\n"
    );
}

/// The daemon dies right after the last answer is committed, before the turn goes on: the
/// restart resumes the turn and the allowed call runs exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_right_after_the_approval_resumes_and_runs_the_call_once() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("bash", json!({"command": "echo ran >> marker.txt"})),
        Reply::text("done"),
    ]))
    .await;
    let daemon = env.spawn_daemon(Some("after_answer")).await;
    create_agent(&env, ASKER);
    let id = start(&env, "asker", "run it");
    let waiting = wait_requires_action(&env, &id).await;
    // The daemon dies while answering, so the CLI may or may not see a reply.
    let _ = env.run(&["approve", &id, &waiting[0]]);
    env.wait_killed(daemon).await;

    env.ok(&["ls"]);
    let events = wait_end_turn(&env, &id).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e.body, EventBody::SessionStatusRescheduled {})),
        "the restart resumed the turn"
    );
    assert_eq!(result_of(&events, &waiting[0]).0, ToolStatus::Ok);
    let workspace = info(&env, &id).await.workspace;
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&workspace).join("marker.txt")).unwrap(),
        "ran\n"
    );
}

/// `user.interrupt` while waiting gives up on the waiting calls: they end as interrupted and
/// the next message starts a fresh turn instead of waiting again.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupt_while_waiting_drops_the_waiting_calls() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("bash", json!({"command": "echo never"})),
        Reply::text("understood"),
    ]))
    .await;
    create_agent(&env, ASKER);
    let id = start(&env, "asker", "run it");
    let waiting = wait_requires_action(&env, &id).await;
    env.ok(&["interrupt", &id]);
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert_eq!(result_of(&events, &waiting[0]).0, ToolStatus::Interrupted);
    assert_eq!(
        info(&env, &id).await.stop_reason,
        Some(StopReason::Interrupted)
    );
    env.ok(&["send", &id, "never mind", "--wait"]);
    wait_end_turn(&env, &id).await;
}

/// The daemon dies after the asked call is committed but before the session went idle: the
/// restart resumes the turn, which must wait for approval again (the call did not start, so
/// it is neither run nor marked interrupted).
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_before_going_idle_resumes_into_waiting_not_into_running() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("bash", json!({"command": "echo ran >> marker.txt"})),
        Reply::text("done"),
    ]))
    .await;
    let daemon = env.spawn_daemon(Some("after_agent_message")).await;
    create_agent(&env, ASKER);
    let id = start(&env, "asker", "run it");
    env.wait_killed(daemon).await;

    env.ok(&["ls"]);
    let waiting = wait_requires_action(&env, &id).await;
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert!(
        events
            .iter()
            .any(|e| matches!(e.body, EventBody::SessionStatusRescheduled {}))
    );
    assert!(
        !events.iter().any(|e| matches!(
            e.body,
            EventBody::SpanToolCallStart { .. } | EventBody::AgentToolResult { .. }
        )),
        "nothing ran or was settled: {events:#?}"
    );
    env.ok(&["approve", &id]);
    let events = wait_end_turn(&env, &id).await;
    assert_eq!(result_of(&events, &waiting[0]).0, ToolStatus::Ok);
}

/// Several calls waiting: `approve` without EVENT lists them instead of guessing, and the turn
/// goes on only once every one is answered (in the model's order).
#[tokio::test(flavor = "multi_thread")]
async fn several_waiting_calls_are_listed_and_all_need_answers() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tools(vec![
            ("bash", json!({"command": "echo one >> order.txt"})),
            ("bash", json!({"command": "echo two >> order.txt"})),
        ]),
        Reply::text("done"),
    ]))
    .await;
    create_agent(&env, ASKER);
    let id = start(&env, "asker", "two steps");
    let waiting = wait_requires_action(&env, &id).await;
    assert_eq!(waiting.len(), 2);
    let out = env.run(&["approve", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&waiting[0]) && err.contains(&waiting[1]) && err.contains("EVENT"),
        "{err}"
    );

    // The second answered first: still waiting for the other, nothing ran yet.
    env.ok(&["approve", &id, &waiting[1]]);
    assert_eq!(info(&env, &id).await.status, SessionStatus::Idle);
    assert_eq!(env.mock.requests().len(), 1);
    env.ok(&["approve", &id]);
    wait_end_turn(&env, &id).await;
    let workspace = info(&env, &id).await.workspace;
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&workspace).join("order.txt")).unwrap(),
        "one\ntwo\n"
    );
}
