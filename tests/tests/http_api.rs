//! The Managed-Agents-compatible HTTP API end to end: a real tetherd serving HTTP, a real
//! HTTP client and SSE parser, the in-repo mock model behind the sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tether_e2e::http_api::Api;
use tether_e2e::{Reply, TestEnv, assert_log_invariants, page_seqs};
use tether_mock_llm::Script;

fn error_type(v: &Value) -> &str {
    assert_eq!(v["type"], "error", "not an error envelope: {v}");
    assert!(v["request_id"].as_str().unwrap().starts_with("req_"));
    v["error"]["type"].as_str().unwrap()
}

fn stop(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_needs_the_token_and_errors_use_the_hosted_envelope() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let (mut child, api) = Api::start(&env).await;

    // The token file is private, and `tether http-token` prints it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.paths.http_token_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(env.ok(&["http-token"]).trim(), api.token);

    for auth in [
        None,
        Some(("x-api-key", "wrong")),
        Some(("authorization", "Bearer nope")),
    ] {
        let mut req = api.http.get(format!("{}/v1/agents", api.base));
        if let Some((k, v)) = auth {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(error_type(&v), "authentication_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tether http-token")
        );
    }
    let ok = api
        .http
        .get(format!("{}/v1/agents?beta=true", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);

    let (s, v) = api.call("GET", "/v1/sessions/sesn_nope", None).await;
    assert_eq!((s, error_type(&v)), (404, "not_found_error"));
    let (s, v) = api.call("GET", "/v1/nothing", None).await;
    assert_eq!((s, error_type(&v)), (400, "invalid_request_error"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not supported by tetherd"),
        "{v}"
    );
    let (s, v) = api.call("DELETE", "/v1/agents", None).await;
    assert_eq!((s, error_type(&v)), (405, "invalid_request_error"));
    let (s, v) = api
        .call(
            "POST",
            "/v1/agents",
            Some(json!({"name": "x", "colour": "red"})),
        )
        .await;
    assert_eq!((s, error_type(&v)), (400, "invalid_request_error"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("colour"),
        "{v}"
    );
    let (s, v) = api
        .call(
            "POST",
            "/v1/agents",
            Some(json!({"description": "no name"})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("name"),
        "{v}"
    );
    let (s, v) = api
        .call("POST", "/v1/agents", Some(json!({"name": 42})))
        .await;
    assert_eq!((s, error_type(&v)), (400, "invalid_request_error"));
    let (s, v) = api.call("GET", "/v1/sessions?limit=1000", None).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api.call("GET", "/v1/sessions?page=bogus", None).await;
    assert_eq!(s, 400, "{v}");

    let doc = api.get("/v1/openapi.json").await;
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/sessions/{session_id}/events/stream"]["get"].is_object());
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_are_versioned_with_an_optimistic_lock() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let (mut child, api) = Api::start(&env).await;
    let a = api
        .post(
            "/v1/agents",
            json!({"name": "reviewer", "model": "claude-test", "system": "Review.",
                   "tools": [{"type": "agent_toolset_20260401"}], "metadata": {"team": "a"}}),
        )
        .await;
    let id = a["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("agent_"));
    assert_eq!(
        (a["type"].as_str(), a["version"].as_u64()),
        (Some("agent"), Some(1))
    );
    assert_eq!(a["model"]["id"], "claude-test");
    assert_eq!(a["skills"], json!([]));

    let v2 = api
        .post(
            &format!("/v1/agents/{id}"),
            json!({"version": 1, "system": "Review harder."}),
        )
        .await;
    assert_eq!(v2["version"], 2);
    // A stale version is a conflict, as hosted: 409 invalid_request_error.
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/agents/{id}"),
            Some(json!({"version": 1, "system": "x"})),
        )
        .await;
    assert_eq!((s, error_type(&v)), (409, "invalid_request_error"));
    let old = api.get(&format!("/v1/agents/{id}?version=1")).await;
    assert_eq!(old["system"], "Review.");
    let versions = api.get(&format!("/v1/agents/{id}/versions")).await;
    let vs: Vec<u64> = versions["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_u64().unwrap())
        .collect();
    assert_eq!(vs, [1, 2]);

    // Paging: the built-in default agent plus three more, two per page.
    for n in 0..3 {
        api.post("/v1/agents", json!({"name": format!("extra{n}")}))
            .await;
    }
    let mut names = Vec::new();
    let mut page = String::new();
    loop {
        let p = api.get(&format!("/v1/agents?limit=2{page}")).await;
        assert!(p["data"].as_array().unwrap().len() <= 2);
        names.extend(
            p["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string()),
        );
        match p["next_page"].as_str() {
            Some(n) => page = format!("&page={n}"),
            None => break,
        }
    }
    assert_eq!(names, ["default", "reviewer", "extra0", "extra1", "extra2"]);

    let archived = api
        .post(&format!("/v1/agents/{id}/archive"), json!({}))
        .await;
    assert!(archived["archived_at"].is_string());
    let listed = api.get("/v1/agents").await;
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != id.as_str())
    );
    let with = api.get("/v1/agents?include_archived=true").await;
    assert!(
        with["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str())
    );
    // New sessions can't use an archived agent.
    let (s, v) = api
        .call(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": id, "environment_id": "default"})),
        )
        .await;
    assert_eq!((s, error_type(&v)), (409, "invalid_request_error"));
    stop(&mut child);
}

/// Reads SSE frames until `until` matches one; returns `(id, event, data)` of each.
async fn read_stream(
    resp: reqwest::Response,
    mut until: impl FnMut(&str, &Value) -> bool,
) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let mut events = resp.bytes_stream().eventsource();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the stream went quiet")
            .expect("the stream ended")
            .unwrap();
        let data: Value = serde_json::from_str(&ev.data).unwrap();
        let done = until(&ev.event, &data);
        out.push((ev.id, ev.event, data));
        if done {
            return out;
        }
    }
}

fn is_idle(event: &str, _: &Value) -> bool {
    event == "session.status_idle"
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_stream_send_and_resume_by_last_event_id() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("first answer"),
        Reply::text("second answer"),
    ]))
    .await;
    let (mut child, api) = Api::start(&env).await;
    let agent = api
        .post(
            "/v1/agents",
            json!({"name": "helper", "system": "Be brief."}),
        )
        .await;
    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": {"type": "agent", "id": agent["id"], "version": 1},
                   "environment_id": "default", "title": "http test",
                   "metadata": {"ticket": "T-1"}}),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    assert!(sid.starts_with("sesn_"));
    assert_eq!(s["status"], "idle");
    assert_eq!(s["agent"]["id"], agent["id"]);
    assert_eq!(s["agent"]["version"], 1);
    assert_eq!(s["metadata"]["ticket"], "T-1");

    // Open the stream first (hosted rule), with message previews, then send.
    let stream = api
        .http
        .get(format!(
            "{}/v1/sessions/{sid}/events/stream?event_deltas[]=agent.message&beta=true",
            api.base
        ))
        .header("x-api-key", &api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let sent = api
        .post(
            &format!("/v1/sessions/{sid}/events"),
            json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "hello"}]}]}),
        )
        .await;
    assert_eq!(sent["data"][0]["type"], "user.message");
    let frames = read_stream(stream, is_idle).await;
    let kinds: Vec<&str> = frames.iter().map(|f| f.1.as_str()).collect();
    // The user's event is echoed, previews come before the complete message.
    assert_eq!(kinds[0], "user.message", "{kinds:?}");
    let first_delta = kinds
        .iter()
        .position(|k| *k == "event_delta")
        .expect("previews");
    let message = kinds.iter().position(|k| *k == "agent.message").unwrap();
    assert!(first_delta < message, "{kinds:?}");
    assert!(kinds.contains(&"event_start"));
    // Persisted events carry `id: <seq>`, strictly increasing; previews set none, so the
    // client's last event id stays the last persisted seq (SSE keeps it across events).
    let mut last = 0;
    for (id, kind, data) in &frames {
        if kind.starts_with("event_") {
            assert_eq!(id, &last.to_string());
            continue;
        }
        let seq: u64 = id.parse().unwrap();
        assert_eq!(data["seq"].as_u64(), Some(seq));
        assert!(seq > last);
        last = seq;
    }
    let texts: String = frames
        .iter()
        .filter(|f| f.1 == "event_delta")
        .map(|f| {
            f.2["delta"]["content"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts, "first answer");

    // Resume from the middle: exactly the events after that seq, then live ones.
    let mid = frames
        .iter()
        .find(|f| f.1 == "span.model_request_start")
        .map(|f| f.0.parse::<u64>().unwrap())
        .unwrap();
    let resumed = api
        .http
        .get(format!("{}/v1/sessions/{sid}/events/stream", api.base))
        .header("x-api-key", &api.token)
        .header("last-event-id", mid.to_string())
        .send()
        .await
        .unwrap();
    let replay = read_stream(resumed, is_idle).await;
    let replayed: Vec<u64> = replay.iter().map(|f| f.0.parse().unwrap()).collect();
    assert_eq!(replayed, ((mid + 1)..=last).collect::<Vec<_>>());

    // A second turn through ?after_seq= sees only new events, no duplicates.
    let live = api
        .http
        .get(format!(
            "{}/v1/sessions/{sid}/events/stream?after_seq={last}",
            api.base
        ))
        .header("x-api-key", &api.token)
        .send()
        .await
        .unwrap();
    api.post(
        &format!("/v1/sessions/{sid}/events"),
        json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "again"}]}]}),
    )
    .await;
    let second = read_stream(live, is_idle).await;
    let seqs: Vec<u64> = second.iter().map(|f| f.0.parse().unwrap()).collect();
    assert_eq!(seqs.first(), Some(&(last + 1)));
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    // History: asc by default, types[] filters, desc reverses, pages have no overlap.
    let all = api.get(&format!("/v1/sessions/{sid}/events")).await;
    let all = all["data"].as_array().unwrap().clone();
    assert_eq!(all.len() as u64, *seqs.last().unwrap());
    let msgs = api
        .get(&format!(
            "/v1/sessions/{sid}/events?types[]=agent.message&types[]=user.message"
        ))
        .await;
    let kinds: Vec<&str> = msgs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "user.message",
            "agent.message",
            "user.message",
            "agent.message"
        ]
    );
    let mut paged = Vec::new();
    let mut page = String::new();
    loop {
        let p = api
            .get(&format!(
                "/v1/sessions/{sid}/events?order=desc&limit=3{page}"
            ))
            .await;
        paged.extend(page_seqs(&p));
        match p["next_page"].as_str() {
            Some(n) => page = format!("&page={n}"),
            None => break,
        }
    }
    let want: Vec<u64> = (1..=all.len() as u64).rev().collect();
    assert_eq!(paged, want);
    let events = env.events(&sid);
    assert_log_invariants(&events);

    // Update, then archive: an archived session takes no more input.
    let u = api
        .post(
            &format!("/v1/sessions/{sid}"),
            json!({"title": "renamed", "metadata": {"ticket": null, "owner": "me"}}),
        )
        .await;
    assert_eq!(u["title"], "renamed");
    assert_eq!(u["metadata"], json!({"owner": "me"}));
    let got = api.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(got["title"], "renamed");
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/sessions/{sid}"),
            Some(json!({"colour": "red"})),
        )
        .await;
    assert_eq!((s, error_type(&v)), (400, "invalid_request_error"));
    api.post(&format!("/v1/sessions/{sid}/archive"), json!({}))
        .await;
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/sessions/{sid}/events"),
            Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "x"}]}]})),
        )
        .await;
    assert_eq!((s, error_type(&v)), (400, "invalid_request_error"));
    assert!(v["error"]["message"].as_str().unwrap().contains("archived"));
    let (s, v) = api
        .call("DELETE", &format!("/v1/sessions/{sid}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"id": sid, "type": "session_deleted"}));
    let (s, _) = api.call("GET", &format!("/v1/sessions/{sid}"), None).await;
    assert_eq!(s, 404);
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_lists_page_both_ways_and_filter() {
    let env = TestEnv::new(Script::sequential(vec![Reply::text("done")])).await;
    let (mut child, api) = Api::start(&env).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let s = api
            .post(
                "/v1/sessions",
                json!({"agent": "default", "environment_id": "default", "title": format!("s{n}")}),
            )
            .await;
        ids.push(s["id"].as_str().unwrap().to_string());
    }
    // Newest first by default; walk forward with next_page, back with prev_page.
    let p1 = api.get("/v1/sessions?limit=2").await;
    let titles = |p: &Value| -> Vec<String> {
        p["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["title"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(titles(&p1), ["s4", "s3"]);
    assert!(p1["prev_page"].is_null());
    let p2 = api
        .get(&format!(
            "/v1/sessions?limit=2&page={}",
            p1["next_page"].as_str().unwrap()
        ))
        .await;
    assert_eq!(titles(&p2), ["s2", "s1"]);
    let p3 = api
        .get(&format!(
            "/v1/sessions?limit=2&page={}",
            p2["next_page"].as_str().unwrap()
        ))
        .await;
    assert_eq!(titles(&p3), ["s0"]);
    assert!(p3["next_page"].is_null());
    let back = api
        .get(&format!(
            "/v1/sessions?limit=2&page={}",
            p3["prev_page"].as_str().unwrap()
        ))
        .await;
    assert_eq!(titles(&back), ["s2", "s1"]);
    // A cursor is bound to its order.
    let (s, _) = api
        .call(
            "GET",
            &format!(
                "/v1/sessions?order=asc&page={}",
                p1["next_page"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(s, 400);
    let asc = api.get("/v1/sessions?order=asc&limit=10").await;
    assert_eq!(titles(&asc), ["s0", "s1", "s2", "s3", "s4"]);

    // Filters: status, archived.
    api.post(
        &format!("/v1/sessions/{}/events", ids[0]),
        json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]}),
    )
    .await;
    env.wait_idle(&ids[0]).await;
    api.post(&format!("/v1/sessions/{}/archive", ids[1]), json!({}))
        .await;
    let idle = api.get("/v1/sessions?statuses[]=idle&limit=100").await;
    assert_eq!(titles(&idle), ["s4", "s3", "s2", "s0"]);
    let running = api.get("/v1/sessions?statuses[]=running").await;
    assert_eq!(running["data"].as_array().unwrap().len(), 0);
    let with = api
        .get("/v1/sessions?include_archived=true&limit=100")
        .await;
    assert_eq!(with["data"].as_array().unwrap().len(), 5);
    let (s, _) = api
        .call("GET", "/v1/sessions?statuses[]=sleepy", None)
        .await;
    assert_eq!(s, 400);
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_create_forms_overrides_and_initial_events() {
    let env = TestEnv::new(Script::sequential(vec![Reply::text("ok")])).await;
    let (mut child, api) = Api::start(&env).await;
    let agent = api.post("/v1/agents", json!({"name": "tooly"})).await;
    // agent_with_overrides: this session only gets read and grep, and a system prompt.
    let s = api
        .post(
            "/v1/sessions",
            json!({
                "agent": {"type": "agent_with_overrides", "id": agent["id"], "system": "Only look.",
                          "tools": [{"type": "agent_toolset_20260401",
                                     "default_config": {"enabled": false},
                                     "configs": [{"name": "read", "enabled": true}, {"name": "grep", "enabled": true}]}]},
                "environment_id": "default",
                "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "look around"}]}],
                "budget": {"type": "limit", "max_list_cost": {"amount": "2.50", "currency": "USD"}},
            }),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["budget"]["max_list_cost"]["amount"], "2.500000");
    env.wait_idle(&sid).await;
    let req = &env.mock.requests()[0].body;
    let tools: Vec<&str> = req["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["read", "grep"]);
    assert_eq!(req["system"][0]["text"], "Only look.");
    assert_eq!(req["messages"][0]["content"][0]["text"], "look around");

    for (body, needle) in [
        (
            json!({"agent": {"type": "agent", "id": agent["id"], "system": "x"}, "environment_id": "default"}),
            "agent_with_overrides",
        ),
        (
            json!({"agent": "tooly", "environment_id": "default", "initial_events": [{"type": "user.interrupt"}]}),
            "user.interrupt",
        ),
        (json!({"agent": "tooly"}), "environment_id"),
        (
            json!({"agent": "tooly", "environment_id": "default", "budget": {"type": "limit"}}),
            "budget",
        ),
        (json!({"agent": 7, "environment_id": "default"}), "agent"),
    ] {
        let (s, v) = api.call("POST", "/v1/sessions", Some(body.clone())).await;
        assert_eq!(
            (s, error_type(&v)),
            (400, "invalid_request_error"),
            "{body}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body} → {msg}");
    }
    let (s, v) = api
        .call(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": "agent_nope", "environment_id": "default"})),
        )
        .await;
    assert_eq!((s, error_type(&v)), (404, "not_found_error"));
    let (s, v) = api
        .call(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": "tooly", "environment_id": "default", "vault_ids": ["vlt_1"]})),
        )
        .await;
    assert_eq!((s, error_type(&v)), (404, "not_found_error"));
    assert!(v["error"]["message"].as_str().unwrap().contains("vlt_1"));
    let (s, v) = api
        .call(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": "tooly", "environment_id": "env_nope"})),
        )
        .await;
    assert_eq!((s, error_type(&v)), (404, "not_found_error"));
    assert!(v["error"]["message"].as_str().unwrap().contains("env_nope"));
    stop(&mut child);
}

/// Hosted: a session's `agent` (its tools and MCP servers) changes between turns, each list
/// in full replacement, recorded as `session.updated` with the agent as it now runs; the
/// next turn offers the new tools under their policies, and the change outlives a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_sessions_tools_change_between_turns_and_the_change_survives_a_restart() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("first"),
        Reply::tool_use("lookup", json!({"q": "oslo"})),
        Reply::tool_use("lookup", json!({"q": "bergen"})),
    ]))
    .await;
    let (mut child, api) = Api::start(&env).await;
    let agent = api
        .post(
            "/v1/agents",
            json!({"name": "tooly", "tools": [{"type": "agent_toolset_20260401"}]}),
        )
        .await;
    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": agent["id"], "environment_id": "default"}),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    let say = |text: &str| json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]});
    api.post(&format!("/v1/sessions/{sid}/events"), say("one"))
        .await;
    env.wait_idle(&sid).await;
    let offered = |i: usize| -> Vec<String> {
        env.mock.requests()[i].body["tools"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(offered(0).contains(&"bash".to_string()), "{:?}", offered(0));
    assert!(!offered(0).contains(&"lookup".to_string()));

    // Refused changes change nothing: a tool the toolset lacks, a field other than tools
    // and mcp_servers, an MCP toolset naming a server that isn't there.
    for (body, needle) in [
        (
            json!({"agent": {"tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "teleport"}]}]}, "title": "never"}),
            "teleport",
        ),
        (
            json!({"agent": {"model": "claude-opus-4-6"}}),
            "only `tools` and `mcp_servers`",
        ),
        (
            json!({"agent": {"tools": [{"type": "mcp_toolset", "mcp_server_name": "gh"}]}}),
            "not in mcp_servers",
        ),
    ] {
        let (st, v) = api
            .call("POST", &format!("/v1/sessions/{sid}"), Some(body.clone()))
            .await;
        assert_eq!(
            (st, error_type(&v)),
            (400, "invalid_request_error"),
            "{body}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("agent: ") && msg.contains(needle),
            "{body} → {msg}"
        );
    }
    assert_ne!(
        api.get(&format!("/v1/sessions/{sid}")).await["title"],
        "never"
    );

    let tools = json!([
        {"type": "agent_toolset_20260401", "default_config": {"enabled": false},
         "configs": [{"name": "read", "enabled": true}]},
        {"type": "custom", "name": "lookup", "description": "Look a place up.",
         "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}},
    ]);
    let servers = json!([{"type": "url", "name": "docs", "url": "https://docs.example.com/mcp"}]);
    let updated = api
        .post(
            &format!("/v1/sessions/{sid}"),
            json!({"agent": {"tools": tools, "mcp_servers": servers}}),
        )
        .await;
    let names = |agent: &Value| -> Vec<String> {
        agent["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                t["type"].as_str().unwrap().to_string() + ":" + t["name"].as_str().unwrap_or("")
            })
            .collect()
    };
    assert_eq!(
        names(&updated["agent"]),
        ["agent_toolset_20260401:", "custom:lookup"]
    );
    assert_eq!(updated["agent"]["mcp_servers"], servers);
    assert_eq!(
        updated["agent"]["id"], agent["id"],
        "still its agent's version"
    );
    // The same again changes nothing and records nothing.
    api.post(
        &format!("/v1/sessions/{sid}"),
        json!({"agent": {"tools": tools}}),
    )
    .await;
    let recorded = api
        .get(&format!(
            "/v1/sessions/{sid}/events?types[]=session.updated"
        ))
        .await;
    let recorded = recorded["data"].as_array().unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(names(&recorded[0]["agent"]), names(&updated["agent"]));
    assert_eq!(recorded[0]["agent"]["mcp_servers"], servers);

    // The next turn offers read and the custom tool, and the model's call of it waits on
    // the client (a custom tool, not an unknown one).
    api.post(&format!("/v1/sessions/{sid}/events"), say("two"))
        .await;
    env.wait_idle(&sid).await;
    assert_eq!(offered(1), ["read", "lookup"]);
    async fn uses(api: &Api, sid: &str) -> Vec<Value> {
        api.get(&format!(
            "/v1/sessions/{sid}/events?types[]=agent.custom_tool_use"
        ))
        .await["data"]
            .as_array()
            .unwrap()
            .clone()
    }
    let first = uses(&api, &sid).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["input"]["q"], "oslo");

    // After a restart: the same tools, from the stored session alone.
    stop(&mut child);
    let (mut child, api) = Api::start(&env).await;
    let again = api.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(names(&again["agent"]), names(&updated["agent"]));
    assert_eq!(again["agent"]["mcp_servers"], servers);
    api.post(
        &format!("/v1/sessions/{sid}/events"),
        json!({"events": [{"type": "user.custom_tool_result", "custom_tool_use_id": first[0]["id"],
                           "content": [{"type": "text", "text": "sunny"}]}]}),
    )
    .await;
    env.wait_idle(&sid).await;
    assert_eq!(offered(2), ["read", "lookup"]);
    let both = uses(&api, &sid).await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[1]["input"]["q"], "bergen");

    // `[]` clears: no tools at all from the next turn.
    let cleared = api
        .post(
            &format!("/v1/sessions/{sid}"),
            json!({"agent": {"tools": [], "mcp_servers": []}}),
        )
        .await;
    assert_eq!(cleared["agent"]["tools"], json!([]));
    assert_eq!(cleared["agent"]["mcp_servers"], json!([]));
    assert_log_invariants(&env.events(&sid));
    stop(&mut child);
}

/// `agent_with_overrides` may give a session MCP servers of its own (hosted), shown on the
/// session as it runs them.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_may_be_created_with_mcp_servers_of_its_own() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let (mut child, api) = Api::start(&env).await;
    let agent = api.post("/v1/agents", json!({"name": "plain"})).await;
    let servers = json!([{"type": "url", "name": "docs", "url": "https://docs.example.com/mcp"}]);
    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": {"type": "agent_with_overrides", "id": agent["id"],
                             "mcp_servers": servers,
                             "tools": [{"type": "mcp_toolset", "mcp_server_name": "docs"}]},
                   "environment_id": "default"}),
        )
        .await;
    assert_eq!(s["agent"]["mcp_servers"], servers);
    assert_eq!(s["agent"]["tools"][0]["type"], "mcp_toolset");
    let (st, v) = api
        .call(
            "POST",
            "/v1/sessions",
            Some(
                json!({"agent": {"type": "agent_with_overrides", "id": agent["id"],
                             "tools": [{"type": "mcp_toolset", "mcp_server_name": "nowhere"}]},
                   "environment_id": "default"}),
            ),
        )
        .await;
    assert_eq!((st, error_type(&v)), (400, "invalid_request_error"), "{v}");
    stop(&mut child);
}

/// Hosted rule: `initial_events` may carry one `user.define_outcome` (with its rubric); the
/// outcome runs at once. Two are refused before any session is created.
#[tokio::test(flavor = "multi_thread")]
async fn initial_events_may_define_one_outcome() {
    let env = TestEnv::new(
        Script::sequential(vec![Reply::text("done it")]).with_route(
            tether_mock_llm::Route::new(
                "grader",
                vec![Reply::tool_use(
                    "submit_evaluation",
                    json!({"result": "satisfied", "explanation": "fine", "criteria": []}),
                )],
            )
            .when_tool("submit_evaluation"),
        ),
    )
    .await;
    let (mut child, api) = Api::start(&env).await;
    let outcome = json!({"type": "user.define_outcome", "description": "say hi",
                         "rubric": {"type": "text", "content": "- says hi"}, "max_iterations": 2});
    let (st, v) = api
        .call(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": "default", "environment_id": "default",
                        "initial_events": [outcome.clone(), outcome.clone()]})),
        )
        .await;
    assert_eq!((st, error_type(&v)), (400, "invalid_request_error"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("one outcome at a time"),
        "{v}"
    );
    assert_eq!(
        api.get("/v1/sessions").await["data"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "a refused create leaves no session behind"
    );
    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": "default", "environment_id": "default", "initial_events": [outcome]}),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    env.wait_idle(&sid).await;
    let got = api.get(&format!("/v1/sessions/{sid}")).await;
    let evals = got["outcome_evaluations"].as_array().unwrap();
    assert_eq!(evals.len(), 1, "{got}");
    assert_eq!(evals[0]["result"], "satisfied");
    assert_eq!(evals[0]["description"], "say hi");
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_loopback_listen_address_is_refused_without_allow_remote() {
    let env = TestEnv::with_config(
        Script::sequential(vec![]),
        "[http]\nlisten = \"0.0.0.0:0\"\n",
    )
    .await;
    let out = env.tetherd().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allow_remote"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_sse_reader_never_holds_the_session_back_and_resumes_without_a_gap() {
    // 60,000 one-character previews: far more than the session's broadcast buffer and the
    // socket buffers between a reader that stops reading and the daemon.
    let text: String = (0..60_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let script =
        Script::by_turn(vec![Reply::text(text.clone())]).with_timing(tether_mock_llm::Timing {
            chunk_chars: 1,
            ..Default::default()
        });
    let env = TestEnv::new(script).await;
    let (mut child, api) = Api::start(&env).await;
    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": "default", "environment_id": "default"}),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    // A reader that opts into previews and then reads nothing until the turn is over.
    let stalled = api
        .http
        .get(format!(
            "{}/v1/sessions/{sid}/events/stream?event_deltas[]=agent.message",
            api.base
        ))
        .header("x-api-key", &api.token)
        .send()
        .await
        .unwrap();
    api.post(
        &format!("/v1/sessions/{sid}/events"),
        json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]}),
    )
    .await;
    // The session finishes its turn while the reader is stalled.
    env.wait_idle(&sid).await;
    let log = env.events(&sid);
    let last = log.last().unwrap().seq;

    // The stalled reader drains what was buffered, is told to resync, and the stream ends.
    // The stalled reader drains what was buffered. Either it had fallen behind the session's
    // broadcast buffer and is told to resync (the stream then ends), or everything it missed
    // fitted in the buffers (queued previews merge) and it reads on to the idle event.
    let mut events = stalled.bytes_stream().eventsource();
    let mut resync_after = None;
    let mut persisted = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while let Some(ev) = tokio::time::timeout_at(deadline, events.next())
        .await
        .expect("the stalled reader's stream went quiet")
    {
        let ev = ev.unwrap();
        match ev.event.as_str() {
            "resync" => {
                let v: Value = serde_json::from_str(&ev.data).unwrap();
                resync_after = v["after_seq"].as_u64();
            }
            "event_start" | "event_delta" | "ping" => {}
            other => {
                persisted.push(ev.id.parse::<u64>().unwrap());
                if other == "session.status_idle" {
                    break;
                }
            }
        }
    }
    let after = resync_after.unwrap_or(last);
    assert_eq!(persisted.last().copied().unwrap_or(0), after);
    // Resuming from there gives exactly the rest of the log.
    let resumed = api
        .http
        .get(format!("{}/v1/sessions/{sid}/events/stream", api.base))
        .header("x-api-key", &api.token)
        .header("last-event-id", after.to_string())
        .send()
        .await
        .unwrap();
    let rest = if after == last {
        Vec::new()
    } else {
        read_stream(resumed, is_idle).await
    };
    let mut seqs = persisted;
    seqs.extend(rest.iter().map(|f| f.0.parse::<u64>().unwrap()));
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    let reply = log
        .iter()
        .find_map(|e| match &e.body {
            tether_proto::EventBody::AgentMessage { content } => {
                Some(content[0].as_text().to_string())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(reply, text);
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_and_custom_tools_are_answered_through_the_events_endpoint() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "echo approved > marker.txt"})),
        Reply::text("ran it"),
        Reply::tool_use("lookup", json!({"q": "oslo"})),
        Reply::text("looked it up"),
    ]))
    .await;
    let (mut child, api) = Api::start(&env).await;
    api.post(
        "/v1/agents",
        json!({"name": "asker", "tools": [
            {"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}},
            {"type": "custom", "name": "lookup", "description": "Look something up",
             "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]}),
    )
    .await;
    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": "asker", "environment_id": "default"}),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    let send = |events: Value| {
        let path = format!("/v1/sessions/{sid}/events");
        let api = &api;
        async move {
            api.call("POST", &path, Some(json!({ "events": events })))
                .await
        }
    };
    let (st, _) =
        send(json!([{"type": "user.message", "content": [{"type": "text", "text": "run it"}]}]))
            .await;
    assert_eq!(st, 200);
    env.wait_idle(&sid).await;
    let got = api.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(got["stop_reason"]["type"], "requires_action", "{got}");
    let waiting = got["stop_reason"]["event_ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let uses = api
        .get(&format!("/v1/sessions/{sid}/events?types[]=agent.tool_use"))
        .await;
    assert_eq!(uses["data"][0]["id"], waiting.as_str());
    assert_eq!(uses["data"][0]["evaluated_permission"], "ask");
    // Not run before the answer.
    let marker = std::path::Path::new(s["workspace"].as_str().unwrap()).join("marker.txt");
    assert!(!marker.exists());
    // A wrong id is a 404 naming what waits; the right one continues the turn.
    let (st, v) = send(
        json!([{"type": "user.tool_confirmation", "tool_use_id": "sevt_nope", "result": "allow"}]),
    )
    .await;
    assert_eq!((st, error_type(&v)), (404, "not_found_error"));
    let (st, v) = send(
        json!([{"type": "user.tool_confirmation", "tool_use_id": waiting, "result": "allow"}]),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["type"], "user.tool_confirmation");
    env.wait_idle(&sid).await;
    assert!(marker.exists(), "the approved call ran");
    assert_eq!(
        api.get(&format!("/v1/sessions/{sid}")).await["stop_reason"]["type"],
        "end_turn"
    );

    // A custom tool: the client runs it and answers with its result.
    send(json!([{"type": "user.message", "content": [{"type": "text", "text": "look it up"}]}]))
        .await;
    env.wait_idle(&sid).await;
    let custom = api
        .get(&format!(
            "/v1/sessions/{sid}/events?types[]=agent.custom_tool_use"
        ))
        .await;
    let call = custom["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(custom["data"][0]["input"]["q"], "oslo");
    let (st, v) = send(
        json!([{"type": "user.custom_tool_result", "custom_tool_use_id": call,
                                "content": [{"type": "text", "text": "sunny, 4°C"}]}]),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    env.wait_idle(&sid).await;
    let last = env.mock.requests().last().unwrap().body.to_string();
    assert!(last.contains("sunny, 4°C"), "{last}");
    assert_eq!(
        api.get(&format!("/v1/sessions/{sid}")).await["stop_reason"]["type"],
        "end_turn"
    );
    assert_log_invariants(&env.events(&sid));
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn environments_are_resources_sessions_run_in() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let (mut child, api) = Api::start(&env).await;
    let e = api
        .post(
            "/v1/environments",
            json!({"name": "locked", "description": "no network",
                   "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["pypi.org"],
                              "allow_package_managers": false, "allow_mcp_servers": false}},
                   "metadata": {"team": "a"}}),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("env_"));
    assert_eq!(e["type"], "environment");
    assert_eq!(
        e["config"]["networking"]["allowed_hosts"],
        json!(["pypi.org"])
    );
    // Names may repeat (hosted): a second environment of the name is a new one.
    let twin = api
        .post("/v1/environments", json!({"name": "locked"}))
        .await;
    assert_ne!(twin["id"], e["id"]);
    let twin_id = twin["id"].as_str().unwrap();
    api.post(&format!("/v1/environments/{twin_id}/archive"), json!({}))
        .await;
    let (s, v) = api
        .call("POST", "/v1/environments", Some(json!({"name": "x", "config": {"type": "cloud", "networking": {"type": "sometimes"}}})))
        .await;
    assert_eq!((s, error_type(&v)), (400, "invalid_request_error"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sometimes"),
        "{v}"
    );

    let u = api
        .post(
            &format!("/v1/environments/{id}"),
            json!({"description": "still locked"}),
        )
        .await;
    assert_eq!(u["description"], "still locked");
    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": "default", "environment_id": id}),
        )
        .await;
    assert_eq!(s["environment_id"], id.as_str());
    let listed = api.get("/v1/environments").await;
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "locked"]);
    api.post(&format!("/v1/environments/{id}/archive"), json!({}))
        .await;
    assert_eq!(
        api.get("/v1/environments").await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (s, v) = api
        .call(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": "default", "environment_id": id})),
        )
        .await;
    assert!(
        s >= 400,
        "an archived environment takes no new sessions: {v}"
    );
    let d = api
        .call("DELETE", &format!("/v1/environments/{id}"), None)
        .await;
    assert_eq!(d.1, json!({"id": id, "type": "environment_deleted"}));
    let (s, _) = api
        .call("GET", &format!("/v1/environments/{id}"), None)
        .await;
    assert_eq!(s, 404);
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_in_paths_match_exactly_no_prefixes_or_names() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let (mut child, api) = Api::start(&env).await;
    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": "default", "environment_id": "default"}),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    // The socket resolves both of these to the session; over HTTP they address nothing.
    let short = sid[..sid.len() - 6].to_string();
    let bare = sid.strip_prefix("sesn_").unwrap()[..8].to_string();
    for guess in [&short, &bare] {
        for (method, path, body) in [
            ("GET", format!("/v1/sessions/{guess}"), None),
            ("DELETE", format!("/v1/sessions/{guess}"), None),
            (
                "POST",
                format!("/v1/sessions/{guess}/archive"),
                Some(json!({})),
            ),
            (
                "POST",
                format!("/v1/sessions/{guess}"),
                Some(json!({"title": "x"})),
            ),
            ("GET", format!("/v1/sessions/{guess}/events"), None),
            ("GET", format!("/v1/sessions/{guess}/events/stream"), None),
            (
                "POST",
                format!("/v1/sessions/{guess}/events"),
                Some(json!({"events": [{"type": "user.interrupt"}]})),
            ),
        ] {
            let (s, v) = api.call(method, &path, body).await;
            assert_eq!(
                (s, error_type(&v)),
                (404, "not_found_error"),
                "{method} {path}: {v}"
            );
        }
    }
    let still = api.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(still["archived_at"], Value::Null);
    assert!(env.ok(&["ls", "--all"]).contains(&sid));

    // Agents and environments: the id, not the name (names are the CLI's).
    let agents = api.get("/v1/agents").await;
    let default_agent = agents["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "default")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    api.get(&format!("/v1/agents/{default_agent}")).await;
    for path in [
        "/v1/agents/default",
        "/v1/agents/default@1",
        "/v1/agents/default/versions",
        "/v1/environments/default",
    ] {
        let (s, v) = api.call("GET", path, None).await;
        assert_eq!((s, error_type(&v)), (404, "not_found_error"), "{path}: {v}");
    }
    let (s, v) = api.call("DELETE", "/v1/environments/default", None).await;
    assert_eq!((s, error_type(&v)), (404, "not_found_error"), "{v}");
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_too_large_answers_in_the_hosted_error_envelope() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let (mut child, api) = Api::start(&env).await;
    // As curl sends a large body: headers with `Expect: 100-continue`, the body only on the
    // server's go-ahead. The declared length decides, so the answer comes first and the client
    // never pushes 3 MiB into a connection that is closing.
    let addr = api.base.strip_prefix("http://").unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = BufReader::new(stream);
    let head = format!(
        "POST /v1/agents HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        api.token,
        3 * 1024 * 1024
    );
    stream.get_mut().write_all(head.as_bytes()).await.unwrap();
    let answer = async {
        let mut status = String::new();
        stream.read_line(&mut status).await.unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.unwrap();
        (status, body)
    };
    // A `100 Continue` instead would leave us waiting here: the server wants the upload.
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(30), answer)
        .await
        .expect("no answer to an oversized upload announced with Expect: 100-continue");
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error_type(&v), "request_too_large", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("2 MiB"),
        "{v}"
    );
    // Within the limit is fine, and the daemon carries on.
    let big = "x".repeat(90_000);
    api.post("/v1/agents", json!({"name": "big", "system": big}))
        .await;
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_built_in_agent_and_environment_cannot_be_archived_away() {
    let env = TestEnv::new(Script::sequential(vec![Reply::text("still here")])).await;
    let (mut child, api) = Api::start(&env).await;
    let id_of = |list: &Value| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "default")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let agent = id_of(&api.get("/v1/agents").await);
    let environment = id_of(&api.get("/v1/environments").await);

    for (method, path, body) in [
        (
            "POST",
            format!("/v1/agents/{agent}/archive"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/v1/agents/{agent}"),
            Some(json!({"version": 1, "name": "renamed"})),
        ),
        (
            "POST",
            format!("/v1/environments/{environment}/archive"),
            Some(json!({})),
        ),
        ("DELETE", format!("/v1/environments/{environment}"), None),
        (
            "POST",
            format!("/v1/environments/{environment}"),
            Some(json!({"name": "renamed"})),
        ),
    ] {
        let (s, v) = api.call(method, &path, body).await;
        assert_eq!(
            (s, error_type(&v)),
            (409, "invalid_request_error"),
            "{method} {path}: {v}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("built-in `default`") && msg.contains("tether run"),
            "{msg}"
        );
    }
    // The socket protocol refuses the same way.
    for args in [["agents", "archive", "default"], ["envs", "rm", "default"]] {
        let out = env.run(&args);
        assert!(!out.status.success(), "tether {args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("built-in `default`"), "{err}");
    }
    let out = env.ok(&["run", "are you there?"]);
    assert!(out.contains("still here"), "{out}");
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn early_rejections_reach_a_client_that_is_still_uploading() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let (mut child, api) = Api::start(&env).await;
    // A 2 MB body with a wrong key, a 3 MiB body over the limit, and a body sent to a path
    // tetherd does not serve: each is answered (not a reset connection) in the envelope,
    // every time. Without the drain, reqwest reports a broken pipe or reset here.
    let small = "y".repeat(2 * 1000 * 1000);
    let big = "z".repeat(3 * 1024 * 1024);
    for _ in 0..3 {
        let resp = api
            .http
            .post(format!("{}/v1/agents", api.base))
            .header("x-api-key", "wrong")
            .header("content-type", "application/json")
            .body(format!(r#"{{"name":"n","system":"{small}"}}"#))
            .send()
            .await
            .expect("the 401 must reach the client, not a reset connection");
        assert_eq!(resp.status().as_u16(), 401);
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(error_type(&v), "authentication_error");

        let resp = api
            .http
            .post(format!("{}/v1/agents", api.base))
            .header("x-api-key", &api.token)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .expect("the 413 must reach the client, not a reset connection");
        assert_eq!(resp.status().as_u16(), 413);
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(error_type(&v), "request_too_large");

        let resp = api
            .http
            .post(format!("{}/v1/dreams", api.base))
            .header("x-api-key", &api.token)
            .body(small.clone())
            .send()
            .await
            .expect("the 400 must reach the client, not a reset connection");
        assert_eq!(resp.status().as_u16(), 400);
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(error_type(&v), "invalid_request_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("POST /v1/dreams is not supported by tetherd"),
            "{v}"
        );
    }
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_update_without_version_applies_to_the_newest() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let (mut child, api) = Api::start(&env).await;
    let a = api.post("/v1/agents", json!({"name": "free"})).await;
    let id = a["id"].as_str().unwrap().to_string();
    let v2 = api
        .post(&format!("/v1/agents/{id}"), json!({"description": "two"}))
        .await;
    assert_eq!(v2["version"], 2, "{v2}");
    let v3 = api
        .post(&format!("/v1/agents/{id}"), json!({"system": "three"}))
        .await;
    assert_eq!(
        (v3["version"].as_u64(), v3["description"].as_str()),
        (Some(3), Some("two"))
    );
    // Given, it is still an optimistic lock.
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/agents/{id}"),
            Some(json!({"version": 2, "system": "stale"})),
        )
        .await;
    assert_eq!((s, error_type(&v)), (409, "invalid_request_error"), "{v}");
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn tether_only_event_types_reach_http_readers_only_when_asked() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "echo hi"})),
        Reply::text("done"),
    ]))
    .await;
    let (mut child, api) = Api::start(&env).await;
    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": "default", "environment_id": "default"}),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    api.post(
        &format!("/v1/sessions/{sid}/events"),
        json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]}),
    )
    .await;
    env.wait_idle(&sid).await;
    let types = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    };
    let hosted = types(&api.get(&format!("/v1/sessions/{sid}/events")).await);
    assert!(
        hosted.contains(&"agent.tool_result".to_string()),
        "{hosted:?}"
    );
    assert!(
        !hosted.contains(&"span.tool_call_start".to_string()),
        "{hosted:?}"
    );
    let all = types(
        &api.get(&format!("/v1/sessions/{sid}/events?tether_events=true"))
            .await,
    );
    assert_eq!(
        all.iter().filter(|t| *t == "span.tool_call_start").count(),
        1,
        "{all:?}"
    );
    assert_eq!(all.len(), hosted.len() + 1);
    // The stream replays the same way: without the opt-in, no tether type.
    let body = async |q: &str| {
        let mut resp = api
            .http
            .get(format!(
                "{}/v1/sessions/{sid}/events/stream?after_seq=0{q}",
                api.base
            ))
            .header("x-api-key", &api.token)
            .send()
            .await
            .unwrap();
        let mut text = String::new();
        while !text.contains("session.status_idle") {
            let chunk = resp.chunk().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    };
    assert!(!body("").await.contains("span.tool_call_start"));
    assert!(
        body("&tether_events=true")
            .await
            .contains("event: span.tool_call_start")
    );
    stop(&mut child);
}
