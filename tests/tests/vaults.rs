//! Vaults and credentials end to end over the HTTP API: hosted shapes, write-only secrets,
//! and a session using a vault: its `static_bearer` authenticates a real MCP server that
//! requires the token, its `environment_variable` is in the sandboxed shell's environment,
//! and neither secret is in the database file, the daemon log or the session's events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tether_e2e::http_api::Api;
use tether_e2e::{Reply, TestEnv, assert_log_invariants, session_errors};
use tether_mock_llm::Script;
use tether_proto::EventBody;

/// Every file of the data dir's database (main file and WAL), as bytes.
fn database_bytes(env: &TestEnv) -> Vec<u8> {
    let db = env.paths.db();
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = format!("{}{suffix}", db.display());
        out.extend(std::fs::read(p).unwrap_or_default());
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The text of every tool result (built-in and MCP), in order.
fn tool_results(events: &[tether_proto::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AgentToolResult { content, .. }
            | EventBody::AgentMcpToolResult { content, .. } => {
                Some(tether_proto::blocks_text(content))
            }
            _ => None,
        })
        .collect()
}

/// An environment `local-mcp` that reaches the MCP server at `url`, and an agent `remote` that
/// uses it with every tool allowed.
async fn mcp_agent(api: &Api, url: &str) -> Value {
    let authority = url.trim_start_matches("http://").split('/').next().unwrap();
    api.ok(
        "POST",
        "/v1/environments",
        Some(json!({"name": "local-mcp", "config": {"type": "cloud",
            "networking": {"type": "limited", "allowed_hosts": [authority]}}})),
    )
    .await;
    api.ok(
        "POST",
        "/v1/agents",
        Some(json!({"name": "remote", "model": "claude-haiku-4-5",
            "mcp_servers": [{"type": "url", "name": "remote", "url": url}],
            "tools": [
                {"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_allow"}}},
                {"type": "mcp_toolset", "mcp_server_name": "remote", "default_config": {"permission_policy": {"type": "always_allow"}}}
            ]})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn vaults_and_credentials_have_hosted_shapes_and_secrets_never_come_back() {
    const SECRET: &str = "vault-secret-value-93417";
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let (mut child, api) = Api::start(&env).await;

    let v = api
        .ok(
            "POST",
            "/v1/vaults",
            Some(json!({"display_name": "ci", "metadata": {"team": "infra"}})),
        )
        .await;
    let vid = v["id"].as_str().unwrap().to_string();
    assert!(vid.starts_with("vlt_"), "{v}");
    assert_eq!(v["type"], "vault");
    assert_eq!(v["archived_at"], Value::Null);

    let bearer = api
        .ok(
            "POST",
            &format!("/v1/vaults/{vid}/credentials"),
            Some(
                json!({"display_name": "gh", "auth": {"type": "static_bearer",
                "mcp_server_url": "https://mcp.example.com/mcp", "token": SECRET}}),
            ),
        )
        .await;
    assert!(bearer["id"].as_str().unwrap().starts_with("vcrd_"));
    assert_eq!(bearer["type"], "vault_credential");
    assert_eq!(bearer["vault_id"], vid.as_str());
    assert_eq!(
        bearer["auth"],
        json!({"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/mcp"})
    );
    let envvar = api
        .ok(
            "POST",
            &format!("/v1/vaults/{vid}/credentials"),
            Some(json!({"auth": {"type": "environment_variable", "secret_name": "API_KEY",
                "secret_value": SECRET, "networking": {"type": "limited", "allowed_hosts": ["*.example.com"]}}})),
        )
        .await;
    assert_eq!(
        envvar["auth"],
        json!({"type": "environment_variable", "secret_name": "API_KEY",
            "networking": {"type": "limited", "allowed_hosts": ["*.example.com"]},
            "injection_location": {"body": true, "header": true}})
    );
    let cid = envvar["id"].as_str().unwrap().to_string();

    // Paging: one per page, then none left.
    let p1 = api
        .ok(
            "GET",
            &format!("/v1/vaults/{vid}/credentials?limit=1"),
            None,
        )
        .await;
    assert_eq!(p1["data"].as_array().unwrap().len(), 1);
    let next = p1["next_page"].as_str().unwrap();
    let p2 = api
        .ok(
            "GET",
            &format!("/v1/vaults/{vid}/credentials?limit=1&page={next}"),
            None,
        )
        .await;
    assert_eq!(p2["data"][0]["id"], cid.as_str());
    assert_eq!(p2["next_page"], Value::Null);

    // An update keeps the type; a new value is accepted and still never answered.
    let (s, e) = api
        .call(
            "POST",
            &format!("/v1/vaults/{vid}/credentials/{cid}"),
            Some(json!({"auth": {"type": "static_bearer", "token": "x"}})),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("environment_variable"),
        "{e}"
    );
    let updated = api
        .ok(
            "POST",
            &format!("/v1/vaults/{vid}/credentials/{cid}"),
            Some(json!({"auth": {"type": "environment_variable", "secret_value": format!("{SECRET}-2"),
                "injection_location": {"body": false}}, "metadata": {"k": "v"}})),
        )
        .await;
    assert_eq!(updated["auth"]["injection_location"]["body"], false);
    assert_eq!(updated["metadata"], json!({"k": "v"}));

    // Unknown ids are 404s that name the id.
    for path in [
        "/v1/vaults/vlt_nope".to_string(),
        format!("/v1/vaults/{vid}/credentials/vcrd_nope"),
        "/v1/vaults/vlt_nope/credentials".to_string(),
    ] {
        let (s, e) = api.call("GET", &path, None).await;
        assert_eq!(s, 404, "{path}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("_nope"));
    }

    // Archive: gone from the default listing, still readable; a session can't use it.
    let archived = api
        .ok(
            "POST",
            &format!("/v1/vaults/{vid}/credentials/{cid}/archive"),
            None,
        )
        .await;
    assert!(archived["archived_at"].is_string());
    let live = api
        .ok("GET", &format!("/v1/vaults/{vid}/credentials"), None)
        .await;
    assert_eq!(live["data"].as_array().unwrap().len(), 1);
    let all = api
        .ok(
            "GET",
            &format!("/v1/vaults/{vid}/credentials?include_archived=true"),
            None,
        )
        .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let gone = api
        .ok("POST", &format!("/v1/vaults/{vid}/archive"), None)
        .await;
    assert!(gone["archived_at"].is_string());
    let (s, e) = api
        .call(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": "default", "environment_id": "default", "vault_ids": [vid]})),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("archived"));
    let (s, e) = api
        .call(
            "POST",
            "/v1/sessions",
            Some(
                json!({"agent": "default", "environment_id": "default", "vault_ids": ["vlt_nope"]}),
            ),
        )
        .await;
    assert_eq!(s, 404, "{e}");

    // Nothing answered, stored in clear or logged holds the secret.
    let listing = api
        .ok("GET", "/v1/vaults?include_archived=true", None)
        .await;
    assert_eq!(listing["data"][0]["id"], vid.as_str());
    assert!(!all.to_string().contains(SECRET));
    assert!(!contains(&database_bytes(&env), SECRET));
    assert!(!env.daemon_log().contains(SECRET));

    let d = api.ok("DELETE", &format!("/v1/vaults/{vid}"), None).await;
    assert_eq!(d, json!({"id": vid, "type": "vault_deleted"}));
    let (s, _) = api
        .call("GET", &format!("/v1/vaults/{vid}/credentials/{cid}"), None)
        .await;
    assert_eq!(s, 404);
    let _ = child.kill();
    let _ = child.wait();
}

/// A session created with `vault_ids`: the MCP server that requires a bearer token gets it
/// from the vault, bash sees the vault's variable, and no secret reaches the log, the
/// database file or the daemon log.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_uses_its_vault_for_mcp_auth_and_shell_variables_without_leaking_them() {
    const TOKEN: &str = "mcp-bearer-from-vault-5521";
    const VALUE: &str = "shell-secret-from-vault-8830";
    let (url, calls) = tether_e2e::mcp_server::serve_http_requiring(Some(TOKEN)).await;
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("mcp__remote__echo", json!({"text": "authed"})),
        // Reversed, so the output proves the value without containing it.
        Reply::tool_use(
            "bash",
            json!({"command": "printf '%s' \"$VAULT_API_KEY\" | rev"}),
        ),
        Reply::text("done"),
    ]))
    .await;
    let (mut child, api) = Api::start(&env).await;

    let agent = mcp_agent(&api, &url).await;
    let vault = api
        .ok("POST", "/v1/vaults", Some(json!({"display_name": "ci"})))
        .await;
    let vid = vault["id"].as_str().unwrap();
    // A stale token in an older credential: the newest one for the URL wins.
    for token in ["stale-token", TOKEN] {
        api.ok(
            "POST",
            &format!("/v1/vaults/{vid}/credentials"),
            Some(json!({"auth": {"type": "static_bearer", "mcp_server_url": url, "token": token}})),
        )
        .await;
    }
    api.ok(
        "POST",
        &format!("/v1/vaults/{vid}/credentials"),
        Some(
            json!({"auth": {"type": "environment_variable", "secret_name": "VAULT_API_KEY",
            "secret_value": VALUE, "networking": {"type": "unrestricted"}}}),
        ),
    )
    .await;
    let session = api
        .ok(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": agent["id"], "environment_id": "local-mcp", "vault_ids": [vid],
                "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})),
        )
        .await;
    assert_eq!(session["vault_ids"], json!([vid]));
    let id = session["id"].as_str().unwrap();
    env.wait_idle(id).await;

    let events = env.events(id);
    assert_log_invariants(&events);
    assert!(session_errors(&events).is_empty(), "{events:#?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the MCP call went through");
    let results = tool_results(&events);
    assert!(results.iter().any(|r| r.contains("authed")), "{results:?}");
    let reversed: String = VALUE.chars().rev().collect();
    assert!(
        results.iter().any(|r| r.contains(&reversed)),
        "bash sees the vault's variable: {results:?}"
    );

    let log = env.ok(&["logs", id, "--json"]);
    let fetched = api.ok("GET", &format!("/v1/sessions/{id}"), None).await;
    let db = database_bytes(&env);
    let daemon_log = env.daemon_log();
    for secret in [TOKEN, VALUE] {
        assert!(!log.contains(secret), "{secret} in the events");
        assert!(!contains(&db, secret), "{secret} in the database file");
        assert!(!daemon_log.contains(secret), "{secret} in the daemon log");
        assert!(!fetched.to_string().contains(secret));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `tether vaults`: a secret goes in on stdin (never an argument), is never printed back, and
/// `tether run --vault NAME` gives it to the session's shell.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_adds_a_secret_from_stdin_and_run_uses_the_vault_by_name() {
    use std::io::Write;
    const VALUE: &str = "cli-vault-secret-6612";
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use(
            "bash",
            json!({"command": "printf '%s' \"$DEPLOY_KEY\" | rev"}),
        ),
        Reply::text("done"),
    ]))
    .await;
    let vid = env.ok(&["vaults", "create", "ops"]).trim().to_string();
    assert!(vid.starts_with("vlt_"), "{vid}");
    let mut add = env
        .tether()
        .args([
            "vaults",
            "add",
            "ops",
            "--env",
            "DEPLOY_KEY",
            "--host",
            "deploy.example.com",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{VALUE}\n").as_bytes())
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown = env.ok(&["vaults", "show", "ops"]);
    assert!(
        shown.contains("$DEPLOY_KEY for deploy.example.com"),
        "{shown}"
    );
    assert!(!env.ok(&["vaults", "show", "ops", "--json"]).contains(VALUE));

    // Nothing on stdin: refused, nothing stored.
    let empty = env
        .tether()
        .args(["vaults", "add", "ops", "--env", "OTHER"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("nothing stored"));

    let run = env.ok(&["run", "deploy", "--vault", "ops", "--json"]);
    let reversed: String = VALUE.chars().rev().collect();
    assert!(run.contains(&reversed), "{run}");
    assert!(!run.contains(VALUE));
    assert!(!env.daemon_log().contains(VALUE));
    assert!(!contains(&database_bytes(&env), VALUE));
}

/// `vault_ids` on a session update: the new set reaches the session's next MCP connection and
/// its next shell command (the same shell, not restarted), the change is in the log as ids
/// only, and an unknown or archived vault is refused by name with nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_update_swaps_its_vaults_for_the_next_connection_and_command() {
    const TOKEN: &str = "mcp-bearer-after-update-7310";
    const FIRST: &str = "first-shell-secret-1204";
    const SECOND: &str = "second-shell-secret-6618";
    let (url, calls) = tether_e2e::mcp_server::serve_http_requiring(Some(TOKEN)).await;
    let env = TestEnv::new(Script::by_turn(vec![
        // Turn 1, vault A: the MCP server refuses (A has no token for it); bash sees A's value.
        Reply::tool_use(
            "bash",
            json!({"command": "export KEPT=still-here; printf '%s' \"$VAULT_VAR\" | rev"}),
        ),
        Reply::text("one"),
        // Turn 2, vault B: the MCP call authenticates; the same shell sees B's value.
        Reply::tool_use("mcp__remote__echo", json!({"text": "authed"})),
        Reply::tool_use(
            "bash",
            json!({"command": "printf '%s %s' \"$KEPT\" \"$VAULT_VAR\" | rev"}),
        ),
        Reply::text("two"),
    ]))
    .await;
    let (mut child, api) = Api::start(&env).await;
    let agent = mcp_agent(&api, &url).await;
    let vault = |name: &'static str| {
        let api = &api;
        async move {
            let v = api
                .ok("POST", "/v1/vaults", Some(json!({"display_name": name})))
                .await;
            v["id"].as_str().unwrap().to_string()
        }
    };
    let env_var = |value: &str| {
        json!({"auth": {"type": "environment_variable", "secret_name": "VAULT_VAR",
            "secret_value": value, "networking": {"type": "unrestricted"}}})
    };
    let (a, b, old) = (vault("a").await, vault("b").await, vault("old").await);
    api.ok(
        "POST",
        &format!("/v1/vaults/{a}/credentials"),
        Some(env_var(FIRST)),
    )
    .await;
    api.ok(
        "POST",
        &format!("/v1/vaults/{b}/credentials"),
        Some(env_var(SECOND)),
    )
    .await;
    api.ok(
        "POST",
        &format!("/v1/vaults/{b}/credentials"),
        Some(json!({"auth": {"type": "static_bearer", "mcp_server_url": url, "token": TOKEN}})),
    )
    .await;
    api.ok("POST", &format!("/v1/vaults/{old}/archive"), None)
        .await;

    let session = api
        .ok(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": agent["id"], "environment_id": "local-mcp", "vault_ids": [a],
                "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})),
        )
        .await;
    let id = session["id"].as_str().unwrap().to_string();
    env.wait_idle(&id).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "A has no token for the server"
    );

    // Refused by name, nothing changed.
    let (status, err) = api
        .call(
            "POST",
            &format!("/v1/sessions/{id}"),
            Some(json!({"vault_ids": ["vlt_nope"]})),
        )
        .await;
    assert_eq!(status, 404, "{err}");
    assert!(err.to_string().contains("vlt_nope"), "{err}");
    let (status, err) = api
        .call(
            "POST",
            &format!("/v1/sessions/{id}"),
            Some(json!({"vault_ids": [old]})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains(&old), "{err}");
    let fetched = api.ok("GET", &format!("/v1/sessions/{id}"), None).await;
    assert_eq!(fetched["vault_ids"], json!([a]));

    let updated = api
        .ok(
            "POST",
            &format!("/v1/sessions/{id}"),
            Some(json!({"vault_ids": [b]})),
        )
        .await;
    assert_eq!(updated["vault_ids"], json!([b]));
    api.ok(
        "POST",
        &format!("/v1/sessions/{id}/events"),
        Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "again"}]}]})),
    )
    .await;
    tether_e2e::wait_until("the second turn ends", || {
        env.events(&id)
            .iter()
            .filter(|e| matches!(e.body, EventBody::SessionStatusIdle { .. }))
            .count()
            >= 2
    })
    .await;

    let events = env.events(&id);
    assert_log_invariants(&events);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "B's token opened the server"
    );
    let results = tool_results(&events);
    let rev = |s: &str| s.chars().rev().collect::<String>();
    assert!(
        results.iter().any(|r| r.contains(&rev(FIRST))),
        "{results:?}"
    );
    assert!(results.iter().any(|r| r.contains("authed")), "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| r.contains(&rev(&format!("still-here {SECOND}")))),
        "the same shell, with B's value: {results:?}"
    );
    let changes: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SessionUpdated { vault_ids, .. } => vault_ids.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(changes, [vec![b.clone()]]);

    let after = env.ok(&["logs", &id, "--json"]);
    let db = database_bytes(&env);
    for secret in [TOKEN, FIRST, SECOND] {
        assert!(!after.contains(secret), "{secret} in the events");
        assert!(!contains(&db, secret), "{secret} in the database file");
        assert!(
            !env.daemon_log().contains(secret),
            "{secret} in the daemon log"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
