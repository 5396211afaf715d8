//! MCP servers end to end: an rmcp server (tests/src/mcp_server.rs) over stdio, run inside the
//! session's sandbox, and over streamable HTTP on 127.0.0.1. Its tools are offered to the model
//! as `mcp__<server>__<tool>`, calls ask by default and run once approved, `always_allow`
//! toolsets run at once, and a server that can't be used is a typed `session.error` while the
//! turn goes on. What the model sees is checked in the mock's captured requests.
//!
//! URL servers are reached under the session's network policy: the test server listens on
//! loopback, which sessions reach only when their environment lists the address itself
//! ([`loopback_env`]); the default (unrestricted) environment refuses it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv, assert_log_invariants, session_errors};
use tether_mock_llm::Script;
use tether_proto::{Event, EventBody, Permission, SessionInfo, StopReason, blocks_text};

fn create_agent(env: &TestEnv, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.yaml");
    std::fs::write(&p, yaml).unwrap();
    env.ok(&["agents", "create", "-f", p.to_str().unwrap()]);
}

/// A workspace holding a copy of the stdio test server (the sandbox sees the workspace, not
/// the build directory).
fn workspace_with_server() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("mcpws").tempdir().unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_tether-mock-mcp"),
        dir.path().join("mock-mcp"),
    )
    .unwrap();
    dir
}

fn start(env: &TestEnv, agent: &str, dir: &std::path::Path, prompt: &str) -> String {
    start_in(env, None, agent, dir, prompt)
}

fn start_in(
    env: &TestEnv,
    environment: Option<&str>,
    agent: &str,
    dir: &std::path::Path,
    prompt: &str,
) -> String {
    let mut args = vec![
        "new",
        "--detach",
        "--agent",
        agent,
        "--dir",
        dir.to_str().unwrap(),
    ];
    if let Some(e) = environment {
        args.extend(["--env", e]);
    }
    args.push(prompt);
    env.ok(&args).trim().to_string()
}

/// `host:port` of a URL like `http://127.0.0.1:PORT/mcp`.
fn authority(url: &str) -> &str {
    url.trim_start_matches("http://").split('/').next().unwrap()
}

/// Creates environment `name` with limited networking that lists the loopback address of each
/// of `urls` (the explicit opt-in to reach a server on this machine).
fn loopback_env(env: &TestEnv, name: &str, urls: &[&str]) {
    let hosts: Vec<String> = urls
        .iter()
        .map(|u| format!("\"{}\"", authority(u)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("env.yaml");
    std::fs::write(
        &p,
        format!(
            "name: {name}\nconfig:\n  type: cloud\n  networking: {{type: limited, allowed_hosts: [{}]}}\n",
            hosts.join(", ")
        ),
    )
    .unwrap();
    env.ok(&["envs", "create", "-f", p.to_str().unwrap()]);
}

async fn stop_reason(env: &TestEnv, id: &str) -> Option<StopReason> {
    env.wait_idle(id).await;
    let mut c = env.client().await;
    let info: SessionInfo =
        serde_json::from_value(c.call("session.get", json!({"session": id})).await.unwrap())
            .unwrap();
    info.stop_reason
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

fn mcp_use(events: &[Event]) -> (&Event, String, String, Option<Permission>) {
    events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentMcpToolUse {
                mcp_server_name,
                name,
                evaluated_permission,
                ..
            } => Some((
                e,
                mcp_server_name.clone(),
                name.clone(),
                *evaluated_permission,
            )),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no agent.mcp_tool_use in {events:#?}"))
}

fn mcp_result(events: &[Event], id: &str) -> (String, bool) {
    events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentMcpToolResult {
                mcp_tool_use_id,
                content,
                is_error,
            } if mcp_tool_use_id == id => Some((blocks_text(content), *is_error)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no agent.mcp_tool_result for {id} in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_server_runs_in_the_sandbox_and_its_calls_ask_first() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("mcp__local__hostname", json!({})),
        Reply::text("done"),
    ]))
    .await;
    create_agent(
        &env,
        "name: mcpy
mcp_servers:
  - {type: stdio, name: local, command: ./mock-mcp}
tools:
  - type: agent_toolset_20260401
  - type: mcp_toolset
    mcp_server_name: local
    configs:
      - {name: add, enabled: false}
",
    );
    let ws = workspace_with_server();
    let id = start(&env, "mcpy", ws.path(), "where do you run?");

    let reason = stop_reason(&env, &id).await;
    let events = env.events(&id);
    assert_log_invariants(&events);
    let (call, server, tool, permission) = mcp_use(&events);
    assert_eq!((server.as_str(), tool.as_str()), ("local", "hostname"));
    assert_eq!(
        permission,
        Some(Permission::Ask),
        "MCP toolsets ask by default"
    );
    assert_eq!(
        reason,
        Some(StopReason::RequiresAction {
            event_ids: vec![call.id.clone()]
        }),
        "{events:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.body, EventBody::SpanToolCallStart { .. })),
        "the call must not be sent before it is allowed"
    );
    let reqs = env.mock.requests();
    let offered = tools_offered(&reqs[0].body);
    assert!(offered.contains(&"bash".to_string()), "{offered:?}");
    assert!(
        offered.contains(&"mcp__local__echo".to_string()),
        "{offered:?}"
    );
    assert!(
        offered.contains(&"mcp__local__hostname".to_string()),
        "{offered:?}"
    );
    assert!(
        !offered.contains(&"mcp__local__add".to_string()),
        "a tool the toolset disables is not offered: {offered:?}"
    );
    let echo = reqs[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "mcp__local__echo")
        .unwrap();
    assert_eq!(echo["input_schema"]["required"], json!(["text"]));

    let out = env.run(&["approve", &id]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));
    let events = env.events(&id);
    assert_log_invariants(&events);
    let (text, is_error) = mcp_result(&events, &call.id);
    assert!(!is_error, "{text}");
    assert_eq!(
        text, "sandbox",
        "the server runs inside the session's sandbox"
    );
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    let r = tool_result_in(&reqs[1].body, &call.id);
    assert!(r.to_string().contains("sandbox"), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_server_under_always_allow_runs_without_asking() {
    let (url, calls) = tether_e2e::mcp_server::serve_http().await;
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("mcp__remote__add", json!({"a": 2, "b": 3})),
        Reply::text("it is 5"),
    ]))
    .await;
    remote_agent(&env, &url);
    loopback_env(&env, "local-mcp", &[&url]);
    let ws = tempfile::tempdir().unwrap();
    let id = start_in(&env, Some("local-mcp"), "remote", ws.path(), "add 2 and 3");
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));
    let events = env.events(&id);
    assert_log_invariants(&events);
    let (call, server, tool, permission) = mcp_use(&events);
    assert_eq!((server.as_str(), tool.as_str()), ("remote", "add"));
    assert_eq!(permission, Some(Permission::Allow));
    assert_eq!(mcp_result(&events, &call.id), ("5".to_string(), false));
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    let offered = tools_offered(&reqs[0].body);
    assert_eq!(
        offered,
        vec![
            "mcp__remote__echo",
            "mcp__remote__add",
            "mcp__remote__hostname",
            "mcp__remote__ask",
            "mcp__remote__open_url",
            "mcp__remote__needs_url",
            "mcp__remote__sleep"
        ],
        "only the MCP toolset: the agent has no built-in toolset"
    );
    let r = tool_result_in(&reqs[1].body, &call.id);
    assert!(r["content"].to_string().contains('5'), "{r}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_that_fail_are_typed_errors_and_the_turn_goes_on() {
    let (url, calls) = tether_e2e::mcp_server::serve_http().await;
    let (unlisted, unlisted_calls) = tether_e2e::mcp_server::serve_http().await;
    // Answers every MCP request 401 with a challenge, as a server wanting a token does.
    let locked = {
        let router = axum::Router::new().fallback(|| async {
            (
                axum::http::StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer realm=\"mcp\"")],
                "no token",
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}/mcp")
    };
    let env = TestEnv::new(Script::by_turn(vec![Reply::text("ok")])).await;
    create_agent(
        &env,
        &format!(
            "name: flaky
mcp_servers:
  - {{type: stdio, name: broken, command: /nonexistent/mcp-server}}
  - {{type: url, name: locked, url: \"{locked}\"}}
  - {{type: url, name: good, url: \"{url}\"}}
  - {{type: url, name: unlisted, url: \"{unlisted}\"}}
tools:
  - {{type: mcp_toolset, mcp_server_name: broken}}
  - {{type: mcp_toolset, mcp_server_name: locked}}
  - {{type: mcp_toolset, mcp_server_name: good}}
  - {{type: mcp_toolset, mcp_server_name: unlisted}}
"
        ),
    );
    // `unlisted` is a working server the environment does not list.
    loopback_env(&env, "local-mcp", &[&url, &locked]);
    let ws = tempfile::tempdir().unwrap();
    let id = start_in(&env, Some("local-mcp"), "flaky", ws.path(), "hello");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));
    let events = env.events(&id);
    assert_log_invariants(&events);
    let errors = session_errors(&events);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let refused = errors
        .iter()
        .find(|e| e.mcp_server_name.as_deref() == Some("unlisted"))
        .unwrap();
    assert_eq!(refused.kind, "mcp_connection_failed_error");
    assert!(
        refused.message.contains("network policy refuses")
            && refused.message.contains("allow_mcp_servers"),
        "{}",
        refused.message
    );
    assert_eq!(
        unlisted_calls.load(Ordering::SeqCst),
        0,
        "a refused server is never called"
    );
    let broken = errors
        .iter()
        .find(|e| e.mcp_server_name.as_deref() == Some("broken"))
        .unwrap();
    assert_eq!(broken.kind, "mcp_connection_failed_error");
    assert!(
        broken.message.contains("/nonexistent/mcp-server"),
        "{}",
        broken.message
    );
    let locked = errors
        .iter()
        .find(|e| e.mcp_server_name.as_deref() == Some("locked"))
        .unwrap();
    assert_eq!(
        locked.kind, "mcp_authentication_failed_error",
        "{locked:#?}"
    );
    assert!(
        locked.message.contains("tether vaults login"),
        "says how to log in: {}",
        locked.message
    );
    // The server that works is still offered.
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 1);
    let offered = tools_offered(&reqs[0].body);
    assert!(
        offered.contains(&"mcp__good__echo".to_string()),
        "{offered:?}"
    );
    assert!(
        !offered.iter().any(|t| t.starts_with("mcp__broken__")
            || t.starts_with("mcp__locked__")
            || t.starts_with("mcp__unlisted__")),
        "{offered:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_stdio_server_entries_are_refused_with_the_field() {
    let env = TestEnv::new(Script::by_turn(vec![])).await;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.yaml");
    std::fs::write(
        &p,
        "name: bad
mcp_servers:
  - {type: stdio, name: local}
tools:
  - {type: mcp_toolset, mcp_server_name: local}
",
    )
    .unwrap();
    let out = env.run(&["agents", "create", "-f", p.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mcp_servers[0].command"), "{err}");
}

/// The daemon dies after the server answered but before the result was committed: after the
/// restart the call is reported `interrupted` and is not sent again.
#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_call_cut_short_by_a_crash_is_interrupted_not_repeated() {
    let (url, calls) = tether_e2e::mcp_server::serve_http().await;
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("mcp__remote__echo", json!({"text": "once"})),
        Reply::text("noted"),
    ]))
    .await;
    let daemon = env.spawn_daemon(Some("after_tool_exit")).await;
    remote_agent(&env, &url);
    loopback_env(&env, "local-mcp", &[&url]);
    let ws = tempfile::tempdir().unwrap();
    let out = env.run(&[
        "new",
        "--detach",
        "--env",
        "local-mcp",
        "--agent",
        "remote",
        "--dir",
        ws.path().to_str().unwrap(),
        "echo once",
    ]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    env.wait_killed(daemon).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the call was sent before the crash"
    );

    // The next client starts a daemon, which resumes the session.
    env.ok(&["ls"]);
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert!(
        events
            .iter()
            .any(|e| matches!(e.body, EventBody::SessionStatusRescheduled {}))
    );
    let (call, ..) = mcp_use(&events);
    let (text, is_error) = mcp_result(&events, &call.id);
    assert!(is_error);
    assert!(text.contains("NOT sent again"), "{text}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "never sent twice");
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    let r = tool_result_in(&reqs[1].body, &call.id);
    assert_eq!(r["is_error"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_call_reaches_the_model_with_the_message_and_is_not_sent() {
    let (url, calls) = tether_e2e::mcp_server::serve_http().await;
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("mcp__remote__echo", json!({"text": "secret"})),
        Reply::text("ok, I won't"),
    ]))
    .await;
    create_agent(
        &env,
        &format!(
            "name: remote
mcp_servers:
  - {{type: url, name: remote, url: \"{url}\"}}
tools:
  - {{type: mcp_toolset, mcp_server_name: remote}}
"
        ),
    );
    loopback_env(&env, "local-mcp", &[&url]);
    let ws = tempfile::tempdir().unwrap();
    let id = start_in(
        &env,
        Some("local-mcp"),
        "remote",
        ws.path(),
        "echo a secret",
    );
    let Some(StopReason::RequiresAction { event_ids }) = stop_reason(&env, &id).await else {
        panic!("expected requires_action: {:#?}", env.events(&id));
    };
    let out = env.run(&["approve", &id, &event_ids[0], "--deny", "not that one"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));
    let events = env.events(&id);
    assert_log_invariants(&events);
    let (text, is_error) = mcp_result(&events, &event_ids[0]);
    assert!(is_error);
    assert!(text.contains("not that one"), "{text}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a denied call is never sent"
    );
    let r = tool_result_in(&env.mock.requests()[1].body, &event_ids[0]);
    assert!(r.to_string().contains("not that one"), "{r}");
}

/// A stdio server that dies mid-session fails the call that killed it; the next call
/// starts it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_server_that_dies_is_restarted_for_the_next_call() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("mcp__local__exit", json!({})),
        Reply::tool_use("mcp__local__echo", json!({"text": "back"})),
        Reply::text("done"),
    ]))
    .await;
    create_agent(
        &env,
        "name: mcpy
mcp_servers:
  - {type: stdio, name: local, command: ./mock-mcp}
tools:
  - type: mcp_toolset
    mcp_server_name: local
    default_config: {permission_policy: {type: always_allow}}
",
    );
    let ws = workspace_with_server();
    let id = start(&env, "mcpy", ws.path(), "exit then echo");
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));
    let events = env.events(&id);
    assert_log_invariants(&events);
    let results: Vec<(String, bool)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AgentMcpToolResult {
                content, is_error, ..
            } => Some((blocks_text(content), *is_error)),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 2, "{events:#?}");
    assert!(
        results[0].1,
        "the call that killed the server failed: {results:?}"
    );
    assert_eq!(results[1], ("back".to_string(), false));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.body, EventBody::SessionError { .. })),
        "reconnecting is not an error: {events:#?}"
    );
}

fn remote_agent(env: &TestEnv, url: &str) {
    create_agent(
        env,
        &format!(
            "name: remote
mcp_servers:
  - {{type: url, name: remote, url: \"{url}\"}}
tools:
  - type: mcp_toolset
    mcp_server_name: remote
    default_config:
      permission_policy: {{type: always_allow}}
"
        ),
    );
}

/// The default environment is unrestricted, which still never reaches loopback: the server is
/// refused before any connection, and the error says how to allow it.
#[tokio::test(flavor = "multi_thread")]
async fn a_loopback_server_is_refused_under_the_default_environment() {
    let (url, calls) = tether_e2e::mcp_server::serve_http().await;
    let env = TestEnv::new(Script::by_turn(vec![Reply::text("ok")])).await;
    remote_agent(&env, &url);
    let ws = tempfile::tempdir().unwrap();
    let id = start(&env, "remote", ws.path(), "hello");
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));
    let events = env.events(&id);
    assert_log_invariants(&events);
    let errors = session_errors(&events);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].kind, "mcp_connection_failed_error");
    assert!(
        errors[0].message.contains("loopback") && errors[0].message.contains("allowed_hosts"),
        "{}",
        errors[0].message
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(env.mock.requests().len(), 1, "the turn went on");
}

/// A call past `[mcp] call_timeout_secs` is an error result for the model, and the turn goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_call_times_out_into_an_error_result_and_the_turn_goes_on() {
    let (url, _calls) = tether_e2e::mcp_server::serve_http().await;
    let env = TestEnv::with_config(
        Script::by_turn(vec![
            Reply::tool_use("mcp__remote__sleep", json!({"ms": 30000})),
            Reply::text("too slow"),
        ]),
        "[mcp]\ncall_timeout_secs = 1\n",
    )
    .await;
    remote_agent(&env, &url);
    loopback_env(&env, "local-mcp", &[&url]);
    let ws = tempfile::tempdir().unwrap();
    let id = start_in(&env, Some("local-mcp"), "remote", ws.path(), "sleep");
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));
    let events = env.events(&id);
    assert_log_invariants(&events);
    let (call, ..) = mcp_use(&events);
    let (text, is_error) = mcp_result(&events, &call.id);
    assert!(is_error, "{text}");
    assert!(
        text.contains("within 1 s") && text.contains("call_timeout_secs"),
        "{text}"
    );
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2, "the model got the error and answered");
    assert_eq!(tool_result_in(&reqs[1].body, &call.id)["is_error"], true);
}

/// A `[[mcp.credentials]]` bearer token, read from tetherd's environment, authenticates the
/// server; the secret appears in no event and not in the daemon log.
#[tokio::test(flavor = "multi_thread")]
async fn a_bearer_credential_from_the_environment_authenticates_and_never_leaks() {
    const TOKEN: &str = "s3cret-mcp-token-4711";
    let (url, calls) = tether_e2e::mcp_server::serve_http_requiring(Some(TOKEN)).await;
    let env = TestEnv::with_config(
        Script::by_turn(vec![
            Reply::tool_use("mcp__remote__echo", json!({"text": "authed"})),
            Reply::text("done"),
        ]),
        &format!(
            "[[mcp.credentials]]\nmcp_server_url = \"{url}\"\nbearer_token_env = \"TETHER_TEST_MCP_TOKEN\"\n"
        ),
    )
    .await;
    let _daemon = env
        .spawn_daemon_with_env(None, &[("TETHER_TEST_MCP_TOKEN", TOKEN)])
        .await;
    remote_agent(&env, &url);
    loopback_env(&env, "local-mcp", &[&url]);
    let ws = tempfile::tempdir().unwrap();
    let id = start_in(&env, Some("local-mcp"), "remote", ws.path(), "echo");
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert!(session_errors(&events).is_empty(), "{events:#?}");
    let (call, ..) = mcp_use(&events);
    assert_eq!(mcp_result(&events, &call.id), ("authed".to_string(), false));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let log = env.ok(&["logs", &id, "--json"]);
    assert!(!log.contains(TOKEN));
    assert!(!env.daemon_log().contains(TOKEN));
    let doctor = env.ok(&["doctor"]);
    assert!(
        doctor.contains("✓ mcp")
            && doctor.contains(&format!(
                "{url} — bearer token from $TETHER_TEST_MCP_TOKEN (set)"
            )),
        "{doctor}"
    );
    assert!(!doctor.contains(TOKEN));
}

/// A session keeps the networking it was created with: after its environment changes to
/// `none` and the daemon restarts, it still reaches its server; a new session does not.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_keeps_its_networking_when_the_environment_changes() {
    let (url, calls) = tether_e2e::mcp_server::serve_http().await;
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::text("hi"),
        Reply::tool_use("mcp__remote__echo", json!({"text": "pinned"})),
        Reply::text("done"),
    ]))
    .await;
    let daemon = env.spawn_daemon(None).await;
    remote_agent(&env, &url);
    loopback_env(&env, "local-mcp", &[&url]);
    let ws = tempfile::tempdir().unwrap();
    let id = start_in(&env, Some("local-mcp"), "remote", ws.path(), "hello");
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));

    let dir = tempfile::tempdir().unwrap();
    let change = dir.path().join("change.yaml");
    std::fs::write(
        &change,
        "config:\n  type: cloud\n  networking: {type: none}\n",
    )
    .unwrap();
    env.ok(&[
        "envs",
        "update",
        "local-mcp",
        "-f",
        change.to_str().unwrap(),
    ]);
    let mut daemon = daemon;
    daemon.kill().unwrap();
    env.wait_killed(daemon).await;

    env.ok(&["send", &id, "echo pinned"]);
    assert_eq!(stop_reason(&env, &id).await, Some(StopReason::EndTurn));
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert!(session_errors(&events).is_empty(), "{events:#?}");
    let (call, ..) = mcp_use(&events);
    assert_eq!(mcp_result(&events, &call.id), ("pinned".to_string(), false));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let fresh = start_in(&env, Some("local-mcp"), "remote", ws.path(), "hello");
    env.wait_idle(&fresh).await;
    let errors = session_errors(&env.events(&fresh));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].message.contains("networking: none"),
        "{}",
        errors[0].message
    );
}
