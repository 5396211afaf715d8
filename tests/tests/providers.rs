//! Every provider end to end: the real `tether`/`tetherd` against the in-repo mock speaking
//! the Anthropic Messages, OpenAI Chat Completions and OpenAI Responses wire formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::{Block, Reply, TestEnv, assert_log_invariants, session_errors, types};
use tether_mock_llm::{Script, Usage, scenarios};
use tether_proto::{Event, EventBody, RetryStatusKind, ServerFrame, StopReason};

/// `(provider, model, path the request must go to)`.
const PROVIDERS: &[(&str, &str, &str)] = &[
    ("anthropic", "claude-sonnet-4-5", "/v1/messages"),
    ("openai", "gpt-5.1", "/v1/chat/completions"),
    ("openai-responses", "gpt-5.1", "/v1/responses"),
];

fn tool_use_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| matches!(e.body, EventBody::AgentToolUse { .. }))
        .map(|e| e.id.clone())
        .collect()
}

fn tool_names(body: &Value, provider: &str) -> Vec<String> {
    body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = match provider {
                "openai" => &t["function"]["name"],
                _ => &t["name"],
            };
            name.as_str().unwrap().to_string()
        })
        .collect()
}

/// Checks the third request of bash-then-read (after both tool calls) field by field.
fn check_final_request(
    provider: &str,
    model: &str,
    body: &Value,
    ids: &[String],
    events: &[Event],
) {
    assert_eq!(body["model"], model);
    assert_eq!(body["stream"], true);
    let tools = tool_names(body, provider);
    for name in ["bash", "read", "write", "edit", "glob", "grep"] {
        assert!(tools.contains(&name.to_string()), "{provider}: {tools:?}");
    }
    let result_text = |id: &str| -> String {
        events
            .iter()
            .find_map(|e| match &e.body {
                EventBody::AgentToolResult {
                    tool_use_id,
                    content,
                    ..
                } if tool_use_id == id => Some(tether_proto::blocks_text(content)),
                _ => None,
            })
            .unwrap()
    };
    match provider {
        "anthropic" => {
            let system = &body["system"][0];
            assert!(system["text"].as_str().unwrap().contains("software agent"));
            assert_eq!(system["cache_control"], json!({"type": "ephemeral"}));
            assert_eq!(body["max_tokens"], 16384);
            let tools = body["tools"].as_array().unwrap();
            assert_eq!(tools.last().unwrap()["cache_control"]["type"], "ephemeral");
            let m = body["messages"].as_array().unwrap();
            assert_eq!(m.len(), 5, "{body:#}");
            assert_eq!(m[1]["content"][0]["type"], "tool_use");
            assert_eq!(m[1]["content"][0]["id"], ids[0].as_str());
            assert_eq!(m[1]["content"][0]["name"], "bash");
            assert_eq!(m[2]["content"][0]["tool_use_id"], ids[0].as_str());
            assert_eq!(m[3]["content"][0]["input"], json!({"file_path": "f.txt"}));
            assert_eq!(m[4]["content"][0]["tool_use_id"], ids[1].as_str());
            assert_eq!(m[4]["content"][0]["content"], result_text(&ids[1]).as_str());
            // The moving cache breakpoint: the last two user turns.
            assert_eq!(m[4]["content"][0]["cache_control"]["type"], "ephemeral");
            assert_eq!(m[2]["content"][0]["cache_control"]["type"], "ephemeral");
            assert!(m[0]["content"][0].get("cache_control").is_none());
        }
        "openai" => {
            assert_eq!(body["stream_options"], json!({"include_usage": true}));
            assert_eq!(body["max_completion_tokens"], 16384);
            let m = body["messages"].as_array().unwrap();
            let roles: Vec<&str> = m.iter().map(|x| x["role"].as_str().unwrap()).collect();
            assert_eq!(
                roles,
                ["system", "user", "assistant", "tool", "assistant", "tool"]
            );
            assert!(m[0]["content"].as_str().unwrap().contains("software agent"));
            assert_eq!(m[2]["content"], Value::Null);
            let call = &m[2]["tool_calls"][0];
            assert_eq!(call["id"], ids[0].as_str());
            assert_eq!(call["type"], "function");
            assert_eq!(call["function"]["name"], "bash");
            let args: Value =
                serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
            assert_eq!(
                args,
                json!({"command": "printf hello > f.txt && echo done"})
            );
            assert_eq!(m[3]["tool_call_id"], ids[0].as_str());
            assert_eq!(m[3]["content"], result_text(&ids[0]).as_str());
            assert_eq!(m[4]["tool_calls"][0]["function"]["name"], "read");
            assert_eq!(m[5]["tool_call_id"], ids[1].as_str());
            assert_eq!(m[5]["content"], result_text(&ids[1]).as_str());
            assert!(result_text(&ids[1]).contains("hello"));
        }
        "openai-responses" => {
            assert_eq!(body["store"], false);
            assert_eq!(body["max_output_tokens"], 16384);
            assert!(
                body["instructions"]
                    .as_str()
                    .unwrap()
                    .contains("software agent")
            );
            let items = body["input"].as_array().unwrap();
            let kinds: Vec<&str> = items.iter().map(|x| x["type"].as_str().unwrap()).collect();
            assert_eq!(
                kinds,
                [
                    "message",
                    "function_call",
                    "function_call_output",
                    "function_call",
                    "function_call_output"
                ]
            );
            assert_eq!(items[0]["role"], "user");
            assert_eq!(items[0]["content"][0]["type"], "input_text");
            assert_eq!(items[1]["call_id"], ids[0].as_str());
            assert_eq!(items[1]["name"], "bash");
            assert_eq!(items[2]["call_id"], ids[0].as_str());
            assert_eq!(items[2]["output"], result_text(&ids[0]).as_str());
            assert_eq!(items[3]["call_id"], ids[1].as_str());
            assert_eq!(items[3]["arguments"], "{\"file_path\":\"f.txt\"}");
            assert_eq!(items[4]["call_id"], ids[1].as_str());
            assert_eq!(tools_field(body, "strict"), json!(false));
        }
        _ => unreachable!(),
    }
}

fn tools_field(body: &Value, key: &str) -> Value {
    body["tools"][0][key].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn bash_then_read_on_every_provider() {
    let env = TestEnv::new(scenarios::bash_then_read()).await;
    for (i, (provider, model, path)) in PROVIDERS.iter().enumerate() {
        let work = tempfile::tempdir().unwrap();
        let name = format!("s-{provider}");
        let out = env.run(&[
            "run",
            "create f.txt containing hello, then read it back",
            "--model",
            &format!("{provider}/{model}"),
            "--dir",
            work.path().to_str().unwrap(),
            "--name",
            &name,
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{provider}: {stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            env.daemon_log()
        );
        assert!(stdout.contains("The file contains hello."), "{stdout}");
        assert_eq!(
            std::fs::read_to_string(work.path().join("f.txt")).unwrap(),
            "hello"
        );
        let events = env.events(&name);
        assert_log_invariants(&events);
        let ids = tool_use_ids(&events);
        assert_eq!(ids.len(), 2, "{provider}");
        let reqs = env.mock.requests();
        let mine = &reqs[i * 3..i * 3 + 3];
        for r in mine {
            assert_eq!(r.path, *path, "{provider}");
            match *provider {
                "anthropic" => {
                    assert_eq!(r.header("x-api-key"), Some("sk-test-not-a-real-key"));
                    assert_eq!(r.header("authorization"), None);
                }
                _ => {
                    assert_eq!(
                        r.header("authorization"),
                        Some("Bearer sk-openai-test-not-real")
                    );
                    assert_eq!(r.header("x-api-key"), None);
                }
            }
        }
        check_final_request(provider, model, &mine[2].body, &ids, &events);
        // Usage arrived and was priced (all three models are in the built-in table).
        let ends: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::SpanModelRequestEnd { model_usage, .. } => Some(*model_usage),
                _ => None,
            })
            .collect();
        assert_eq!(ends.len(), 3);
        for u in &ends {
            assert!(
                u.input_tokens > 0 && u.output_tokens > 0,
                "{provider}: {u:?}"
            );
            assert!(u.cost_usd.unwrap() > 0.0, "{provider}: {u:?}");
        }
        // The key never lands in the log.
        let log = serde_json::to_string(&events).unwrap();
        assert!(!log.contains("sk-openai-test") && !log.contains("sk-test-not"));
    }
    assert!(!env.daemon_log().contains("sk-openai-test-not-real"));
    // The daemon reports each provider in use, as it sees it.
    let mut c = env.client().await;
    let st = c.call("daemon.status", json!({})).await.unwrap();
    let providers = st["providers"].as_array().unwrap();
    let names: Vec<&str> = providers
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["anthropic", "openai", "openai-responses"]);
    assert!(
        providers.iter().all(|p| p["ready"] == true),
        "{providers:?}"
    );
    assert_eq!(
        providers[2]["endpoint"],
        format!("{}/v1/responses", env.mock.base_url())
    );
    // No key in daemon.status: only a hint (vendor prefix and last four characters) that
    // tells two keys apart.
    let text = st.to_string();
    assert!(
        !text.contains("sk-openai-test-not-real") && !text.contains("sk-test-not-a-real-key"),
        "no key in daemon.status: {text}"
    );
    assert!(
        !text.contains("test-not"),
        "no part of a key beyond its hint: {text}"
    );
    assert_eq!(providers[1]["key_hint"], "sk-openai-…real");
}

fn last_stop(events: &[Event]) -> StopReason {
    events
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            EventBody::SessionStatusIdle { stop_reason } => Some(stop_reason.clone()),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_retry_path_on_every_provider() {
    for (provider, model, _) in PROVIDERS {
        let env = TestEnv::new(Script::sequential(vec![
            Reply::rate_limited(1),
            Reply::error(503, "api_error", "upstream unavailable"),
            Reply::drop_mid_stream(vec![Block::text("half an answ")]),
            Reply::Malformed,
            Reply::text("recovered"),
        ]))
        .await;
        let out = env.run(&[
            "run",
            "x",
            "--model",
            &format!("{provider}/{model}"),
            "--name",
            "r",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{provider}: {stderr}");
        // (The live printer may already have shown the cut attempt's first delta.)
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.trim().ends_with("recovered"), "{stdout}");
        let events = env.events("r");
        assert_log_invariants(&events);
        let errors = session_errors(&events);
        assert_eq!(errors.len(), 4, "{provider}: {errors:#?}");
        assert!(
            errors
                .iter()
                .all(|e| e.retry_status.kind == RetryStatusKind::Retrying)
        );
        assert_eq!(
            errors
                .iter()
                .map(|e| e.attempt.unwrap())
                .collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(errors[0].kind, "model_rate_limited_error");
        assert_eq!(errors[0].retry_in_ms, Some(1000), "retry-after is honoured");
        assert!(errors[1].message.contains("503"), "{}", errors[1].message);
        assert!(
            errors[2]
                .message
                .contains("cut before the reply was complete"),
            "{}",
            errors[2].message
        );
        assert!(
            errors[3].message.contains("could not read") && errors[3].message.contains("{not json"),
            "{}",
            errors[3].message
        );
        assert_eq!(last_stop(&events), StopReason::EndTurn);
        // Exactly one complete answer was recorded: partial deltas never are.
        let messages: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::AgentMessage { content } => Some(tether_proto::blocks_text(content)),
                _ => None,
            })
            .collect();
        assert_eq!(messages, ["recovered"]);
        assert_eq!(env.mock.request_count(), 5);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_run_out_with_retries_exhausted() {
    let env = TestEnv::with_config(
        Script::sequential(vec![
            Reply::error(500, "server_error", "boom"),
            Reply::error(502, "server_error", "bad gateway"),
        ]),
        "",
    )
    .await;
    // Two attempts only.
    let config = env.home.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[retry]", "[retry]\nmax_attempts = 2"),
    )
    .unwrap();
    let out = env.run(&["run", "x", "--model", "openai/gpt-5.1", "--name", "r"]);
    assert!(!out.status.success());
    let events = env.events("r");
    let errors = session_errors(&events);
    let kinds: Vec<_> = errors.iter().map(|e| e.retry_status.kind).collect();
    assert_eq!(
        kinds,
        [RetryStatusKind::Retrying, RetryStatusKind::Exhausted]
    );
    assert_eq!(last_stop(&events), StopReason::RetriesExhausted);
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_errors_end_the_turn_with_a_clear_error() {
    let cases: &[(&str, Reply, &[&str])] = &[
        (
            "openai/gpt-5.1",
            Reply::error(401, "invalid_request_error", "Incorrect API key provided"),
            &["the OpenAI API rejected the API key", "OPENAI_API_KEY"],
        ),
        (
            "openai-responses/gpt-5.1",
            Reply::error(400, "invalid_request_error", "Invalid value for 'input'"),
            &["400 invalid_request_error", "Invalid value for 'input'"],
        ),
        (
            "openai/gpt-5.1",
            Reply::error(
                400,
                "invalid_request_error",
                "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
            ),
            &[
                "too long for the model's context window",
                "start a new session",
            ],
        ),
        (
            "anthropic/claude-sonnet-4-5",
            Reply::error(403, "permission_error", "not allowed"),
            &["not allowed to do this", "permissions"],
        ),
        (
            "nope/model-x",
            Reply::text("never sent"),
            &["`nope` is not configured", "[providers.nope]"],
        ),
    ];
    for (model, reply, wanted) in cases {
        let env = TestEnv::new(Script::sequential(vec![reply.clone()])).await;
        let out = env.run(&["run", "x", "--model", model, "--name", "p"]);
        assert!(!out.status.success(), "{model}");
        let events = env.events("p");
        assert_log_invariants(&events);
        let errors = session_errors(&events);
        assert_eq!(errors.len(), 1, "{model}: {errors:#?}");
        assert_eq!(errors[0].retry_status.kind, RetryStatusKind::Terminal);
        for w in *wanted {
            assert!(
                errors[0].message.contains(w),
                "{model}: {}",
                errors[0].message
            );
        }
        assert_eq!(last_stop(&events), StopReason::Error);
        let expected_requests = usize::from(!model.starts_with("nope/"));
        assert_eq!(
            env.mock.request_count(),
            expected_requests,
            "no retry: {model}"
        );
    }
}

/// Sends a message (optionally switching the model) and waits for the turn to end.
async fn send_and_wait(env: &TestEnv, session: &str, text: &str, model: Option<&str>) {
    let mut c = env.client().await;
    let info = c
        .call("session.get", json!({"session": session}))
        .await
        .unwrap();
    let after = info["last_seq"].as_u64().unwrap();
    let mut params = json!({"session": session, "content": [{"type": "text", "text": text}]});
    if let Some(m) = model {
        params["model"] = json!(m);
    }
    c.call("session.send", params).await.unwrap();
    c.attach_until(session, after, |f| {
        matches!(f, ServerFrame::Event(e) if matches!(e.body, EventBody::SessionStatusIdle { .. }))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_models_between_providers_mid_session() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::message(vec![
            Block::thinking("Anthropic thinks.", "sig-anthropic"),
            Block::text("Hello from Claude."),
        ]),
        Reply::tools(vec![
            ("bash", json!({"command": "echo one"})),
            ("bash", json!({"command": "echo two"})),
        ]),
        Reply::text("Both ran."),
        Reply::message(vec![
            Block::thinking("Responses reasons.", "ignored"),
            Block::text("Hello from Responses."),
        ]),
        Reply::text("Back on Claude."),
    ]))
    .await;
    let out = env.run(&[
        "new",
        "--detach",
        "--name",
        "sw",
        "--model",
        "anthropic/claude-sonnet-4-5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    send_and_wait(&env, "sw", "first", None).await;
    send_and_wait(&env, "sw", "now run two commands", Some("openai/gpt-5.1")).await;
    let mut c = env.client().await;
    let info = c
        .call("session.get", json!({"session": "sw"}))
        .await
        .unwrap();
    assert_eq!(info["model"], "openai/gpt-5.1");
    send_and_wait(&env, "sw", "and you?", Some("openai-responses/gpt-5.1")).await;
    // The CLI spelling of the same switch.
    env.ok(&[
        "send",
        "sw",
        "and back",
        "--model",
        "claude-sonnet-4-5",
        "--wait",
    ]);
    // An unknown provider is refused up front.
    let e = c
        .call(
            "session.send",
            json!({"session": "sw", "content": [{"type": "text", "text": "x"}], "model": "nope/x"}),
        )
        .await
        .unwrap_err();
    assert!(
        e.message.contains("`nope` is not configured"),
        "{}",
        e.message
    );

    // A daemon that has not loaded the session lists the model it now uses.
    env.ok(&["daemon", "stop"]);
    let listed = env.ok(&["ls", "--json"]);
    let row: Value = listed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|s| s["name"] == "sw")
        .unwrap();
    assert_eq!(row["model"], "anthropic/claude-sonnet-4-5", "{row}");

    let events = env.events("sw");
    assert_log_invariants(&events);
    let ids = tool_use_ids(&events);
    assert_eq!(ids.len(), 2, "parallel calls");
    let reqs = env.mock.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/messages",
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/responses",
            "/v1/messages"
        ]
    );
    // Chat got Claude's turn as plain history (thinking is not replayed across providers).
    let m = reqs[1].body["messages"].as_array().unwrap();
    assert_eq!(m[1], json!({"role": "user", "content": "first"}));
    assert_eq!(
        m[2],
        json!({"role": "assistant", "content": "Hello from Claude."})
    );
    let m = reqs[2].body["messages"].as_array().unwrap();
    let calls = m[4]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], ids[0].as_str());
    assert_eq!(calls[1]["id"], ids[1].as_str());
    assert_eq!(m[5]["tool_call_id"], ids[0].as_str());
    assert_eq!(m[6]["tool_call_id"], ids[1].as_str());
    assert!(m[6]["content"].as_str().unwrap().contains("two"));
    // Responses got everything, calls and outputs paired by id.
    let input = reqs[3].body["input"].as_array().unwrap();
    let outputs: Vec<&str> = input
        .iter()
        .filter(|i| i["type"] == "function_call_output")
        .map(|i| i["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(outputs, [ids[0].as_str(), ids[1].as_str()]);
    // Back on Anthropic: its own signed thinking is replayed, the unsigned OpenAI reasoning is not.
    let last = reqs[4].body.to_string();
    assert!(last.contains("sig-anthropic"), "{last}");
    assert!(!last.contains("Responses reasons."), "{last}");
    assert!(last.contains("Hello from Responses."));
    let updates = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::SessionUpdated { .. }))
        .count();
    assert_eq!(updates, 3);
    assert_eq!(
        types(&events)
            .iter()
            .filter(|t| **t == "agent.thinking")
            .count(),
        2,
        "both providers' thinking is in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_priced_and_totalled() {
    let usage = Usage {
        input_tokens: 1000,
        output_tokens: 200,
        cache_read_input_tokens: 4000,
        cache_creation_input_tokens: 500,
    };
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("priced").with_usage(usage),
        Reply::text("unpriced").with_usage(usage),
    ]))
    .await;
    env.ok(&[
        "run",
        "x",
        "--model",
        "anthropic/claude-sonnet-4-5",
        "--name",
        "a",
    ]);
    // $3 in, $15 out, $0.30 cache read, $3.75 cache write per million tokens.
    let expected = (1000.0 * 3.0 + 200.0 * 15.0 + 4000.0 * 0.3 + 500.0 * 3.75) / 1e6;
    let events = env.events("a");
    let cost = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::SpanModelRequestEnd { model_usage, .. } => model_usage.cost_usd,
            _ => None,
        })
        .unwrap();
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    let mut c = env.client().await;
    let info = c
        .call("session.get", json!({"session": "a"}))
        .await
        .unwrap();
    assert!((info["usage"]["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-12);
    assert_eq!(info["usage"]["cache_read_input_tokens"], 4000);

    env.ok(&[
        "run",
        "x",
        "--model",
        "anthropic/claude-unknown-9",
        "--name",
        "b",
    ]);
    let info = c
        .call("session.get", json!({"session": "b"}))
        .await
        .unwrap();
    assert_eq!(info["usage"]["input_tokens"], 1000);
    assert_eq!(info["usage"].get("cost_usd"), None, "no price, no cost");
    assert_eq!(info["usage"]["unpriced_requests"], 1);
    let ls = env.ok(&["ls"]);
    assert!(ls.contains("COST"), "{ls}");
    assert!(ls.contains(&format!("${expected:.4}")), "{ls}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_budget_ends_the_turn_with_budget_reached() {
    // One request at $3 (a million input tokens of claude-sonnet-4-5) against a $1 budget.
    let costly = Usage {
        input_tokens: 1_000_000,
        output_tokens: 10,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 0,
    };
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "echo hi"})).with_usage(costly),
        Reply::text("never asked"),
    ]))
    .await;
    // A bad limit is refused before anything is made.
    let out = env.run(&["new", "--detach", "--name", "b", "--max-cost=-1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_cost_usd"), "{err}");
    assert!(!env.ok(&["ls"]).contains(" b "), "no session was made");
    let mut c = env.client().await;
    let e = c
        .call(
            "session.update",
            json!({"session": "x", "max_cost_usd": f64::NAN}),
        )
        .await
        .unwrap_err();
    assert!(!e.message.is_empty());
    // The limit is in place before the prompt's turn starts.
    let out = env.run(&[
        "new",
        "--detach",
        "--name",
        "b",
        "--model",
        "anthropic/claude-sonnet-4-5",
        "--max-cost",
        "1",
        "go",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tether_e2e::wait_until("the turn to end", || {
        env.events("b")
            .iter()
            .any(|e| matches!(e.body, EventBody::SessionStatusIdle { .. }))
    })
    .await;
    let events = env.events("b");
    assert_log_invariants(&events);
    assert_eq!(last_stop(&events), StopReason::BudgetReached);
    assert_eq!(
        env.mock.request_count(),
        1,
        "no request once the budget is spent"
    );
    // The tool call of the paid response still ran and was answered.
    assert!(
        events
            .iter()
            .any(|e| matches!(e.body, EventBody::AgentToolResult { .. }))
    );
    let info = c
        .call("session.get", json!({"session": "b"}))
        .await
        .unwrap();
    assert!(info["usage"]["cost_usd"].as_f64().unwrap() >= 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_context_window_is_compacted_into_a_summary() {
    // The mock reports 90k prompt tokens against a 100k window (threshold 0.8): the next
    // request must compact first.
    let full = Usage {
        input_tokens: 90_000,
        output_tokens: 100,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 0,
    };
    let small = Usage {
        input_tokens: 500,
        output_tokens: 50,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 0,
    };
    let env = TestEnv::with_config(
        Script::sequential(vec![
            Reply::text("A1").with_usage(full),
            Reply::text("SUMMARY-1: the user said first.").with_usage(small),
            Reply::text("A2").with_usage(full),
            Reply::text("SUMMARY-2: first, A1, second.").with_usage(small),
            Reply::text("A3").with_usage(small),
        ]),
        "[models.\"openai/small-window\"]\ncontext_window = 100000\n\
         [compaction]\nthreshold = 0.8\nkeep_recent_messages = 2\n",
    )
    .await;
    env.ok(&[
        "run",
        "first",
        "--name",
        "c",
        "--model",
        "openai/small-window",
    ]);
    env.ok(&["send", "c", "second", "--wait"]);
    env.ok(&["send", "c", "third", "--wait"]);
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 5);
    let texts = |body: &Value| -> Vec<String> {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap_or("").to_string())
            .collect()
    };
    // Request 2 asks for the summary of everything before the kept tail.
    let ask = texts(&reqs[1].body);
    assert_eq!(ask.len(), 3, "{ask:?}"); // system, "first", the summary prompt
    assert_eq!(ask[1], "first");
    assert!(ask[2].contains("replaced by a summary"), "{ask:?}");
    // Request 3 is built from the summary plus the recent tail.
    let third = texts(&reqs[2].body);
    assert!(third[1].contains("SUMMARY-1"), "{third:?}");
    assert_eq!(&third[2..], ["A1", "second"]);
    // The second compaction summarises the first summary and what followed it.
    let ask = texts(&reqs[3].body);
    assert!(ask[1].contains("SUMMARY-1"), "{ask:?}");
    assert_eq!(&ask[2..4], ["A1", "second"]);
    let last = texts(&reqs[4].body);
    assert!(last[1].contains("SUMMARY-2"), "{last:?}");
    assert_eq!(&last[2..], ["A2", "third"]);
    assert!(!reqs[4].body.to_string().contains("\"first\""));

    // The log is untouched: every message is still there, plus the two compactions.
    let events = env.events("c");
    assert_log_invariants(&events);
    let users: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::UserMessage { content } => Some(tether_proto::blocks_text(content)),
            _ => None,
        })
        .collect();
    assert_eq!(users, ["first", "second", "third"]);
    let summaries: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AgentThreadContextCompacted { summary, .. } => Some(summary.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        summaries,
        [
            "SUMMARY-1: the user said first.",
            "SUMMARY-2: first, A1, second."
        ]
    );
    let answers = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::AgentMessage { .. }))
        .count();
    assert_eq!(answers, 3, "summaries are not agent messages");
    let out = env.run(&["logs", "c"]);
    let shown = String::from_utf8_lossy(&out.stderr);
    assert_eq!(shown.matches("context compacted").count(), 2, "{shown}");
    assert!(
        shown.contains("› first"),
        "the original turns stay visible: {shown}"
    );
}
