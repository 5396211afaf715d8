//! `mcp_oauth` credentials end to end (issue 25): a real OAuth token endpoint and an MCP
//! server that accepts only its current access token (tests/src/oauth_server.rs). tetherd
//! refreshes a token that is about to expire before using it, refreshes a token the server
//! refuses and connects again, stores the granted tokens sealed in the credential row (never
//! in the log, the database in clear or the daemon log), and says what to do when the refresh
//! token is refused. `mcp_oauth_validate` answers the hosted `vault_credential_validation`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_e2e::http_api::Api;
use tether_e2e::oauth_server::{self, CLIENT_ID, CLIENT_SECRET, ClientAuth, OauthServer};
use tether_e2e::{Reply, TestEnv, assert_log_invariants, session_errors};
use tether_mock_llm::Script;
use tether_proto::EventBody;

/// An environment that reaches the test server, an agent using it (always allowed) and a vault.
async fn setup(api: &Api, server: &OauthServer) -> (String, String) {
    api.ok(
        "POST",
        "/v1/environments",
        Some(json!({"name": "oauth-mcp", "config": {"type": "cloud",
            "networking": {"type": "limited", "allowed_hosts": [server.authority]}}})),
    )
    .await;
    let agent = api
        .ok(
            "POST",
            "/v1/agents",
            Some(json!({"name": "oauth", "model": "claude-haiku-4-5",
                "mcp_servers": [{"type": "url", "name": "remote", "url": server.mcp_url}],
                "tools": [
                    {"type": "mcp_toolset", "mcp_server_name": "remote", "default_config": {"permission_policy": {"type": "always_allow"}}}
                ]})),
        )
        .await;
    let vault = api
        .ok("POST", "/v1/vaults", Some(json!({"display_name": "oauth"})))
        .await;
    (
        agent["id"].as_str().unwrap().to_string(),
        vault["id"].as_str().unwrap().to_string(),
    )
}

async fn run_session(env: &TestEnv, api: &Api, agent: &str, vault: &str) -> String {
    let session = api
        .ok(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": agent, "environment_id": "oauth-mcp", "vault_ids": [vault],
                "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})),
        )
        .await;
    let id = session["id"].as_str().unwrap().to_string();
    env.wait_idle(&id).await;
    id
}

fn mcp_results(env: &TestEnv, id: &str) -> Vec<(String, bool)> {
    env.events(id)
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AgentMcpToolResult {
                content, is_error, ..
            } => Some((tether_proto::blocks_text(content), *is_error)),
            _ => None,
        })
        .collect()
}

fn database_bytes(env: &TestEnv) -> Vec<u8> {
    let db = env.paths.db();
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        out.extend(std::fs::read(format!("{}{suffix}", db.display())).unwrap_or_default());
    }
    out
}

fn assert_nowhere(env: &TestEnv, ids: &[&str], secrets: &[&str]) {
    let db = database_bytes(env);
    let daemon_log = env.daemon_log();
    for id in ids {
        let log = env.ok(&["logs", id, "--json"]);
        for s in secrets {
            assert!(!log.contains(s), "{s} in the events of {id}");
        }
    }
    for s in secrets {
        assert!(
            !db.windows(s.len()).any(|w| w == s.as_bytes()),
            "{s} in the database file"
        );
        assert!(!daemon_log.contains(s), "{s} in the daemon log");
    }
}

fn echo_script() -> Script {
    Script::by_turn(vec![
        Reply::tool_use("mcp__remote__echo", json!({"text": "authed"})),
        Reply::text("done"),
    ])
}

fn rfc3339_in(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A token within a minute of its `expires_at` is refreshed before it is sent (the server
/// never sees it), with client_secret_basic; the call goes through with the new one and the
/// credential answers the new expiry.
#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_mcp_oauth_token_is_refreshed_before_the_call() {
    const EXPIRING: &str = "expiring-access-3391";
    const REFRESH: &str = "first-refresh-7702";
    let server = oauth_server::serve(EXPIRING, REFRESH, ClientAuth::Basic).await;
    let env = TestEnv::new(echo_script()).await;
    let (mut child, api) = Api::start(&env).await;
    let (agent, vault) = setup(&api, &server).await;
    let cred = api
        .ok(
            "POST",
            &format!("/v1/vaults/{vault}/credentials"),
            Some(json!({"auth": {"type": "mcp_oauth", "mcp_server_url": server.mcp_url,
                "access_token": EXPIRING, "expires_at": rfc3339_in(30),
                "refresh": {"client_id": CLIENT_ID, "refresh_token": REFRESH,
                    "token_endpoint": server.token_url,
                    "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": CLIENT_SECRET}}}})),
        )
        .await;

    let id = run_session(&env, &api, &agent, &vault).await;
    let events = env.events(&id);
    assert_log_invariants(&events);
    assert!(session_errors(&events).is_empty(), "{events:#?}");
    assert_eq!(mcp_results(&env, &id), vec![("authed".to_string(), false)]);
    assert_eq!(server.calls(), 1);
    {
        let s = server.lock();
        assert_eq!(s.refreshes, 1, "{s:?}");
        assert!(
            !s.seen_tokens.iter().any(|t| t == EXPIRING),
            "the expiring token was sent: {:?}",
            s.seen_tokens
        );
        assert!(
            !s.last_form.iter().any(|(k, _)| k == "client_secret"),
            "basic auth puts no secret in the form: {:?}",
            s.last_form
        );
    }
    let cid = cred["id"].as_str().unwrap();
    let after = api
        .ok(
            "GET",
            &format!("/v1/vaults/{vault}/credentials/{cid}"),
            None,
        )
        .await;
    let exp = chrono::DateTime::parse_from_rfc3339(after["auth"]["expires_at"].as_str().unwrap())
        .unwrap();
    assert!(
        exp > chrono::Utc::now() + chrono::Duration::minutes(50),
        "the granted expiry (an hour) is stored: {after}"
    );
    let granted = server.lock().access_token.clone();
    let rotated = server.lock().refresh_token.clone();
    assert_nowhere(
        &env,
        &[&id],
        &[EXPIRING, REFRESH, CLIENT_SECRET, &granted, &rotated],
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A token the server refuses (401) is refreshed (client_secret_post, with the credential's
/// resource and scope) and the connection made again; the granted tokens are stored, so the
/// next session uses them without another refresh.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_mcp_oauth_token_is_refreshed_and_the_new_one_is_kept() {
    const STALE: &str = "stale-access-1200";
    const REFRESH: &str = "refresh-for-post-6610";
    let server = oauth_server::serve("current-access-5005", REFRESH, ClientAuth::Post).await;
    let env = TestEnv::new(echo_script()).await;
    let (mut child, api) = Api::start(&env).await;
    let (agent, vault) = setup(&api, &server).await;
    api.ok(
        "POST",
        &format!("/v1/vaults/{vault}/credentials"),
        Some(json!({"auth": {"type": "mcp_oauth", "mcp_server_url": server.mcp_url,
            "access_token": STALE,
            "refresh": {"client_id": CLIENT_ID, "refresh_token": REFRESH,
                "token_endpoint": server.token_url, "resource": server.mcp_url, "scope": "tools:read",
                "token_endpoint_auth": {"type": "client_secret_post", "client_secret": CLIENT_SECRET}}}})),
    )
    .await;

    let first = run_session(&env, &api, &agent, &vault).await;
    assert!(
        session_errors(&env.events(&first)).is_empty(),
        "{:#?}",
        env.events(&first)
    );
    assert_eq!(
        mcp_results(&env, &first),
        vec![("authed".to_string(), false)]
    );
    {
        let s = server.lock();
        assert_eq!(s.refreshes, 1, "{s:?}");
        assert_eq!(s.seen_tokens.first().map(String::as_str), Some(STALE));
        let form: std::collections::BTreeMap<_, _> = s.last_form.iter().cloned().collect();
        assert_eq!(form.get("resource"), Some(&server.mcp_url));
        assert_eq!(form.get("scope").map(String::as_str), Some("tools:read"));
    }

    let second = run_session(&env, &api, &agent, &vault).await;
    assert_eq!(
        mcp_results(&env, &second),
        vec![("authed".to_string(), false)]
    );
    assert_eq!(server.lock().refreshes, 1, "the stored token was used");
    assert_eq!(server.calls(), 2);
    let granted = server.lock().access_token.clone();
    assert_nowhere(&env, &[&first, &second], &[STALE, REFRESH, &granted]);
    let _ = child.kill();
    let _ = child.wait();
}

/// A refresh token the endpoint refuses is an `mcp_authentication_failed_error` that names
/// the credential, quotes the endpoint's answer and says to authorize again; validation says
/// `invalid` with the endpoint's answer (no secret in it), and `valid` once the credential is
/// given a working refresh token.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_refresh_token_is_a_clear_error_and_validation_reports_it() {
    const WRONG: &str = "wrong-refresh-9034";
    let server = oauth_server::serve(
        "current-access-1717",
        "right-refresh-2288",
        ClientAuth::None,
    )
    .await;
    let env = TestEnv::new(Script::by_turn(vec![Reply::text("done")])).await;
    let (mut child, api) = Api::start(&env).await;
    let (agent, vault) = setup(&api, &server).await;
    let cred = api
        .ok(
            "POST",
            &format!("/v1/vaults/{vault}/credentials"),
            Some(
                json!({"auth": {"type": "mcp_oauth", "mcp_server_url": server.mcp_url,
                "access_token": "revoked-access-0001",
                "refresh": {"client_id": CLIENT_ID, "refresh_token": WRONG,
                    "token_endpoint": server.token_url, "token_endpoint_auth": {"type": "none"}}}}),
            ),
        )
        .await;
    let cid = cred["id"].as_str().unwrap();

    let id = run_session(&env, &api, &agent, &vault).await;
    let errors = session_errors(&env.events(&id));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, "mcp_authentication_failed_error");
    let m = &errors[0].message;
    for part in [cid, "invalid_grant", "HTTP 400", "authorize again"] {
        assert!(m.contains(part), "`{part}` not in: {m}");
    }
    assert!(!m.contains(WRONG), "{m}");
    assert_eq!(server.lock().refreshes, 0);

    let path = format!("/v1/vaults/{vault}/credentials/{cid}/mcp_oauth_validate");
    let v = api.ok("POST", &path, None).await;
    assert_eq!(v["type"], "vault_credential_validation");
    assert_eq!(v["status"], "invalid", "{v}");
    assert_eq!(v["has_refresh_token"], true);
    assert_eq!(v["credential_id"], cid);
    assert_eq!(v["vault_id"], vault.as_str());
    assert_eq!(v["mcp_probe"]["method"], "initialize");
    assert_eq!(v["mcp_probe"]["http_response"]["status_code"], 401);
    assert_eq!(v["refresh"]["status"], "failed");
    assert_eq!(v["refresh"]["http_response"]["status_code"], 400);
    assert!(v.to_string().contains("invalid_grant"), "{v}");
    assert!(!v.to_string().contains(WRONG), "{v}");

    api.ok(
        "POST",
        &format!("/v1/vaults/{vault}/credentials/{cid}"),
        Some(json!({"auth": {"type": "mcp_oauth", "refresh": {"refresh_token": "right-refresh-2288"}}})),
    )
    .await;
    let v = api.ok("POST", &path, None).await;
    assert_eq!(v["status"], "valid", "{v}");
    assert_eq!(v["refresh"]["status"], "succeeded", "{v}");
    assert!(v["mcp_probe"].is_null(), "{v}");
    // Now the stored token works as it is: no refresh.
    let v = api.ok("POST", &path, None).await;
    assert_eq!(v["status"], "valid", "{v}");
    assert!(v["refresh"].is_null(), "{v}");
    assert_eq!(server.lock().refreshes, 1);

    // Other kinds can't be validated; unknown ids are named.
    let bearer = api
        .ok(
            "POST",
            &format!("/v1/vaults/{vault}/credentials"),
            Some(json!({"auth": {"type": "static_bearer", "mcp_server_url": "https://x.example/mcp", "token": "t"}})),
        )
        .await;
    let (s, e) = api
        .call(
            "POST",
            &format!(
                "/v1/vaults/{vault}/credentials/{}/mcp_oauth_validate",
                bearer["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(e.to_string().contains("only mcp_oauth"), "{e}");
    let (s, e) = api
        .call(
            "POST",
            &format!("/v1/vaults/{vault}/credentials/vcrd_nope/mcp_oauth_validate"),
            None,
        )
        .await;
    assert_eq!(s, 404, "{e}");
    assert!(e.to_string().contains("vcrd_nope"), "{e}");
    let _ = child.kill();
    let _ = child.wait();
}

/// `credential.login` (what `tether vaults login` calls): tetherd discovers the server's
/// authorization server from its 401, registers, and answers a URL with PKCE S256 and the
/// resource; the browser (this test) comes back to tetherd's loopback callback, the code is
/// exchanged and the tokens become an `mcp_oauth` credential that a session then uses.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_through_the_browser_stores_an_mcp_oauth_credential_sessions_use() {
    let server =
        oauth_server::serve("nothing-yet-0000", "nothing-yet-1111", ClientAuth::Post).await;
    let env = TestEnv::new(echo_script()).await;
    let (mut child, api) = Api::start(&env).await;
    let (agent, vault) = setup(&api, &server).await;
    let mut client = env.client().await;

    let started = client
        .call(
            "credential.login",
            json!({"vault": "oauth", "mcp_server_url": server.mcp_url}),
        )
        .await
        .unwrap();
    let url = started["authorization_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://{}/authorize?", server.authority)),
        "{url}"
    );
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(
        url.contains("scope=mcp%3Atools"),
        "scope from the resource metadata: {url}"
    );
    assert!(
        started["redirect_uri"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let login = started["login_id"].as_str().unwrap();
    let pending = client
        .call(
            "credential.login_wait",
            json!({"login_id": login, "wait_secs": 0}),
        )
        .await
        .unwrap();
    assert_eq!(pending["state"], "pending");

    // The user's browser: the authorization server redirects it to tetherd's callback.
    let page = reqwest::get(url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("tether is authorized"));
    let done = client
        .call("credential.login_wait", json!({"login_id": login}))
        .await
        .unwrap();
    assert_eq!(done["state"], "done", "{done}");
    let cred = &done["credential"];
    assert_eq!(cred["vault_id"], vault.as_str());
    assert_eq!(cred["auth"]["type"], "mcp_oauth");
    assert_eq!(cred["auth"]["mcp_server_url"], server.mcp_url.as_str());
    assert_eq!(cred["auth"]["refresh"]["client_id"], CLIENT_ID);
    assert_eq!(
        cred["auth"]["refresh"]["token_endpoint_auth"]["type"],
        "client_secret_post"
    );
    assert_eq!(server.lock().registrations, 1);

    let id = run_session(&env, &api, &agent, &vault).await;
    assert!(
        session_errors(&env.events(&id)).is_empty(),
        "{:#?}",
        env.events(&id)
    );
    assert_eq!(mcp_results(&env, &id), vec![("authed".to_string(), false)]);
    assert_eq!(server.calls(), 1);

    let (granted, rotated) = {
        let s = server.lock();
        (s.access_token.clone(), s.refresh_token.clone())
    };
    assert_nowhere(&env, &[&id], &[&granted, &rotated, CLIENT_SECRET]);
    let err = client
        .call("credential.login_wait", json!({"login_id": "login_nope"}))
        .await
        .unwrap_err();
    assert!(err.message.contains("login_nope"), "{}", err.message);
    let _ = child.kill();
    let _ = child.wait();
}

/// `tether vaults add --mcp-url URL --client-id ID` (secret on stdin): tetherd discovers the
/// token endpoint, gets a token with the client-credentials grant (client_secret_basic, the
/// server's method), and stores a credential that gets its next token the same way: when the
/// server refuses the stored token, the session's call goes through with a new one. The
/// secret and the tokens are nowhere in the log, the database or the daemon log. A wrong
/// secret is refused at once with the endpoint's answer, and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_credentials_credential_gets_a_new_token_when_the_server_refuses_one() {
    use std::io::Write;
    let server =
        oauth_server::serve("nobody-has-this-yet", "unused-refresh", ClientAuth::Basic).await;
    let env = TestEnv::new(echo_script()).await;
    let (mut child, api) = Api::start(&env).await;
    let (agent, vault) = setup(&api, &server).await;
    let add = |secret: &str| {
        let mut child = env
            .tether()
            .args([
                "vaults",
                "add",
                &vault,
                "--mcp-url",
                &server.mcp_url,
                "--client-id",
                CLIENT_ID,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(secret.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };

    let wrong = add("not-the-secret-0093\n");
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("invalid_client") && err.contains("client credentials"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret-0093"), "{err}");
    let shown = env.ok(&["vaults", "show", &vault, "--json"]);
    assert!(!shown.contains("vcrd_"), "nothing stored: {shown}");

    let out = add(&format!("{CLIENT_SECRET}\n"));
    assert!(out.status.success(), "{out:?}");
    let cid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let cred = api
        .ok(
            "GET",
            &format!("/v1/vaults/{vault}/credentials/{cid}"),
            None,
        )
        .await;
    assert_eq!(
        cred["auth"]["refresh"]["grant_type"], "client_credentials",
        "{cred}"
    );
    assert_eq!(
        cred["auth"]["refresh"]["token_endpoint"],
        server.token_url.as_str()
    );
    assert_eq!(
        cred["auth"]["refresh"]["token_endpoint_auth"]["type"],
        "client_secret_basic"
    );
    let first_token = {
        let s = server.lock();
        assert_eq!(s.refreshes, 1, "{s:?}");
        let form: std::collections::BTreeMap<_, _> = s.last_form.iter().cloned().collect();
        assert_eq!(
            form.get("grant_type").map(String::as_str),
            Some("client_credentials")
        );
        assert_eq!(form.get("resource"), Some(&server.mcp_url));
        assert_eq!(form.get("scope").map(String::as_str), Some("mcp:tools"));
        s.access_token.clone()
    };

    // The server revokes the token: the session's connection gets a 401 and a new grant.
    server.lock().access_token = "revoked-then-reissued-7301".into();
    let first = run_session(&env, &api, &agent, &vault).await;
    assert_eq!(
        mcp_results(&env, &first),
        vec![("authed".to_string(), false)],
        "{:#?}",
        env.events(&first)
    );
    let s = server.lock();
    assert_eq!(s.refreshes, 2, "{s:?}");
    assert_eq!(s.seen_tokens.first(), Some(&first_token));
    let granted = s.access_token.clone();
    drop(s);
    assert_nowhere(&env, &[&first], &[CLIENT_SECRET, &first_token, &granted]);
    let _ = child.kill();
    let _ = child.wait();
}

/// Scope step-up in the middle of a session: the server answers a call 403
/// insufficient_scope; the call's result tells the model authorization is pending, and a
/// `tether.mcp_authorization_required` event (hidden from HTTP readers unless
/// `tether_events=true`) carries the login URL for the wider scope. Once the user's browser
/// completes it, the credential holds the wider token and the next turn's call goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_refused_for_scope_asks_the_user_to_authorize_and_the_next_call_uses_it() {
    const NARROW: &str = "narrow-access-6150";
    let server = oauth_server::serve(NARROW, "unused-refresh-1", ClientAuth::Post).await;
    server.lock().call_scope = Some("mcp:tools mcp:write".into());
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("mcp__remote__echo", json!({"text": "authed"})),
        Reply::text("waiting for you to authorize"),
        Reply::tool_use("mcp__remote__echo", json!({"text": "authed"})),
        Reply::text("done"),
    ]))
    .await;
    let (mut child, api) = Api::start(&env).await;
    let (agent, vault) = setup(&api, &server).await;
    let cred = api
        .ok(
            "POST",
            &format!("/v1/vaults/{vault}/credentials"),
            Some(
                json!({"auth": {"type": "mcp_oauth", "mcp_server_url": server.mcp_url,
                "access_token": NARROW}}),
            ),
        )
        .await;
    let cid = cred["id"].as_str().unwrap().to_string();

    let id = run_session(&env, &api, &agent, &vault).await;
    let results = mcp_results(&env, &id);
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(results[0].1, "{results:?}");
    assert!(
        results[0].0.starts_with("authorization pending") && results[0].0.contains("mcp:write"),
        "{results:?}"
    );
    assert_eq!(server.calls(), 0, "the tool never ran");
    let asked: Vec<(String, Option<String>, String)> = env
        .events(&id)
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::McpAuthorizationRequired {
                mcp_server_name,
                authorization_url,
                scope,
                ..
            } => {
                assert_eq!(mcp_server_name, "remote");
                Some((authorization_url.clone(), scope.clone(), e.id.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 1, "{:#?}", env.events(&id));
    let (url, scope, event_id) = asked[0].clone();
    assert_eq!(scope.as_deref(), Some("mcp:tools mcp:write"));
    assert!(url.contains("scope=mcp%3Atools+mcp%3Awrite"), "{url}");
    // Hosted readers see it only when they opt in.
    let plain = api
        .ok("GET", &format!("/v1/sessions/{id}/events?limit=1000"), None)
        .await;
    assert!(!plain.to_string().contains(&event_id), "{plain}");
    let opted = api
        .ok(
            "GET",
            &format!("/v1/sessions/{id}/events?limit=1000&tether_events=true"),
            None,
        )
        .await;
    assert!(
        opted
            .to_string()
            .contains("tether.mcp_authorization_required")
    );

    // The user's browser: the authorization server redirects it to tetherd's callback.
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("tether is authorized"));
    let granted = server.lock().access_token.clone();
    assert_ne!(granted, NARROW);
    // The same credential, updated in place.
    let now = api
        .ok(
            "GET",
            &format!("/v1/vaults/{vault}/credentials/{cid}"),
            None,
        )
        .await;
    assert_eq!(now["auth"]["refresh"]["client_id"], CLIENT_ID, "{now}");

    api.ok(
        "POST",
        &format!("/v1/sessions/{id}/events"),
        Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "done, try again"}]}]})),
    )
    .await;
    env.wait_idle(&id).await;
    let results = mcp_results(&env, &id);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[1], ("authed".to_string(), false));
    assert_eq!(server.calls(), 1);
    assert_eq!(server.lock().seen_tokens.last(), Some(&granted));
    assert_nowhere(&env, &[&id], &[NARROW, &granted, CLIENT_SECRET]);
    let _ = child.kill();
    let _ = child.wait();
}

/// The `tether.mcp_authorization_required` events of session `id`: (reason, login id,
/// authorization URL, scope).
fn authorizations(env: &TestEnv, id: &str) -> Vec<(String, String, String, Option<String>)> {
    env.events(id)
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::McpAuthorizationRequired {
                mcp_server_name,
                mcp_server_url,
                authorization_url,
                login_id,
                scope,
                reason,
            } => {
                assert_eq!(mcp_server_name, "remote");
                assert!(!mcp_server_url.is_empty());
                Some((
                    reason.clone(),
                    login_id.clone(),
                    authorization_url.clone(),
                    scope.clone(),
                ))
            }
            _ => None,
        })
        .collect()
}

/// A session with the vault but no credential in it, waiting for its first message.
async fn quiet_session(api: &Api, agent: &str, vault: &str) -> String {
    let session = api
        .ok(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": agent, "environment_id": "oauth-mcp", "vault_ids": [vault]})),
        )
        .await;
    session["id"].as_str().unwrap().to_string()
}

async fn say(env: &TestEnv, api: &Api, id: &str, text: &str) {
    api.ok(
        "POST",
        &format!("/v1/sessions/{id}/events"),
        Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]})),
    )
    .await;
    env.wait_idle(id).await;
}

async fn workspace_of(env: &TestEnv, id: &str) -> std::path::PathBuf {
    let mut c = env.client().await;
    let info = c.call("session.get", json!({"session": id})).await.unwrap();
    info["workspace"].as_str().unwrap().into()
}

/// No file under `dir` holds any of `secrets`.
fn assert_not_under(dir: &std::path::Path, secrets: &[&str]) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                for s in secrets {
                    assert!(
                        !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                        "{s} in {}",
                        e.path().display()
                    );
                }
            }
        }
    }
}

/// A server that refuses the session as unauthorized when the session has no credential for
/// it: the turn goes on without it, the `session.error` says authorization was asked of the
/// user, and one `tether.mcp_authorization_required` (reason `unauthorized`) carries the
/// login URL into the session's vault. The user's browser completes it; the next turn
/// connects with the new `mcp_oauth` credential and the call goes through. The tokens are
/// nowhere in the log, the database, the daemon log or the workspace.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_the_session_has_no_credential_for_asks_the_user_to_authorize_and_then_works() {
    let server =
        oauth_server::serve("nothing-yet-0000", "nothing-yet-1111", ClientAuth::Post).await;
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::text("the tracker needs you to authorize tether"),
        Reply::tool_use("mcp__remote__echo", json!({"text": "authed"})),
        Reply::text("done"),
    ]))
    .await;
    let (mut child, api) = Api::start(&env).await;
    let (agent, vault) = setup(&api, &server).await;
    let id = run_session(&env, &api, &agent, &vault).await;

    let events = env.events(&id);
    assert_log_invariants(&events);
    let errors = session_errors(&events);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, "mcp_authentication_failed_error");
    for part in [
        "asked the user to authorize",
        "tether.mcp_authorization_required",
        vault.as_str(),
    ] {
        assert!(
            errors[0].message.contains(part),
            "`{part}` not in: {}",
            errors[0].message
        );
    }
    let asked = authorizations(&env, &id);
    assert_eq!(asked.len(), 1, "{events:#?}");
    let (reason, login, url, scope) = asked[0].clone();
    assert_eq!(reason, "unauthorized");
    assert_eq!(scope, None, "the server's 401 names no scope");
    assert!(
        url.starts_with(&format!("http://{}/authorize?", server.authority)),
        "{url}"
    );
    assert!(errors[0].message.contains(&login), "{}", errors[0].message);
    assert!(mcp_results(&env, &id).is_empty());
    let none = api
        .ok("GET", &format!("/v1/vaults/{vault}/credentials"), None)
        .await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0, "{none}");

    // The user's browser: the authorization server redirects it to tetherd's callback.
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("tether is authorized"));
    let creds = api
        .ok("GET", &format!("/v1/vaults/{vault}/credentials"), None)
        .await;
    let creds = creds["data"].as_array().unwrap().clone();
    assert_eq!(creds.len(), 1, "{creds:?}");
    assert_eq!(creds[0]["auth"]["type"], "mcp_oauth");
    assert_eq!(creds[0]["auth"]["mcp_server_url"], server.mcp_url.as_str());

    say(&env, &api, &id, "done, go on").await;
    assert_eq!(mcp_results(&env, &id), vec![("authed".to_string(), false)]);
    assert_eq!(server.calls(), 1);
    let events = env.events(&id);
    assert_eq!(
        session_errors(&events).len(),
        1,
        "the second turn connected: {events:#?}"
    );
    assert_eq!(authorizations(&env, &id).len(), 1, "asked once");
    assert_eq!(server.lock().registrations, 1);

    let (granted, refresh) = {
        let s = server.lock();
        (s.access_token.clone(), s.refresh_token.clone())
    };
    assert_eq!(server.lock().seen_tokens.last(), Some(&granted));
    assert_nowhere(&env, &[&id], &[&granted, &refresh, CLIENT_SECRET]);
    assert_not_under(
        &workspace_of(&env, &id).await,
        &[&granted, &refresh, CLIENT_SECRET],
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Asked again while its login is pending (the next turn), the session shows the same URL:
/// one login, one client registration, not one per turn.
#[tokio::test(flavor = "multi_thread")]
async fn two_turns_before_authorizing_share_one_login() {
    let server =
        oauth_server::serve("nothing-yet-0000", "nothing-yet-1111", ClientAuth::Post).await;
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::text("please authorize"),
        Reply::text("still waiting for you to authorize"),
    ]))
    .await;
    let (mut child, api) = Api::start(&env).await;
    let (agent, vault) = setup(&api, &server).await;
    let id = quiet_session(&api, &agent, &vault).await;
    say(&env, &api, &id, "go").await;
    say(&env, &api, &id, "again").await;

    let asked = authorizations(&env, &id);
    assert_eq!(asked.len(), 2, "one notice per turn: {asked:?}");
    assert_eq!(asked[0], asked[1], "the same login and URL both times");
    assert_eq!(server.lock().registrations, 1, "one login");
    assert_eq!(session_errors(&env.events(&id)).len(), 2);
    let _ = child.kill();
    let _ = child.wait();
}

/// The user authorizes while the turn is still under way (its shell command waits on a FIFO
/// the test opens after the browser came back): the next model request of the same turn
/// connects the server, offers its tools, and the call goes through.
#[tokio::test(flavor = "multi_thread")]
async fn authorizing_during_the_turn_connects_at_its_next_step() {
    let server =
        oauth_server::serve("nothing-yet-0000", "nothing-yet-1111", ClientAuth::Post).await;
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("bash", json!({"command": "cat gate"})),
        Reply::tool_use("mcp__remote__echo", json!({"text": "authed"})),
        Reply::text("done"),
    ]))
    .await;
    let (mut child, api) = Api::start(&env).await;
    let (_, vault) = setup(&api, &server).await;
    let agent = api
        .ok(
            "POST",
            "/v1/agents",
            Some(json!({"name": "oauth-shell", "model": "claude-haiku-4-5",
                "mcp_servers": [{"type": "url", "name": "remote", "url": server.mcp_url}],
                "tools": [
                    {"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_allow"}}},
                    {"type": "mcp_toolset", "mcp_server_name": "remote", "default_config": {"permission_policy": {"type": "always_allow"}}}
                ]})),
        )
        .await;
    let id = quiet_session(&api, agent["id"].as_str().unwrap(), &vault).await;
    let gate = workspace_of(&env, &id).await.join("gate");
    let made = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .unwrap();
    assert!(made.success());
    api.ok(
        "POST",
        &format!("/v1/sessions/{id}/events"),
        Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})),
    )
    .await;
    let mut c = env.client().await;
    let frames = c
        .attach_until(&id, 0, |f| {
            matches!(f, tether_proto::ServerFrame::Event(e)
                if matches!(e.body, EventBody::McpAuthorizationRequired { .. }))
        })
        .await;
    let url = frames
        .iter()
        .find_map(|f| match f {
            tether_proto::ServerFrame::Event(e) => match &e.body {
                EventBody::McpAuthorizationRequired {
                    authorization_url, ..
                } => Some(authorization_url.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    let page = reqwest::get(&url).await.unwrap();
    assert!(page.text().await.unwrap().contains("tether is authorized"));
    // Lets the shell command finish (opening a FIFO to write waits for its reader).
    tokio::task::spawn_blocking(move || std::fs::write(gate, "authorized\n"))
        .await
        .unwrap()
        .unwrap();
    env.wait_idle(&id).await;

    let events = env.events(&id);
    assert_log_invariants(&events);
    assert_eq!(
        mcp_results(&env, &id),
        vec![("authed".to_string(), false)],
        "{events:#?}"
    );
    let turns = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::UserMessage { .. }))
        .count();
    assert_eq!(turns, 1, "one turn");
    assert_eq!(authorizations(&env, &id).len(), 1);
    let _ = child.kill();
    let _ = child.wait();
}

/// The attack: a server the session may reach answers 401 with a challenge (and metadata)
/// naming an address on tetherd's own network. A login nobody asked for must not probe it:
/// no request reaches that address, no login is offered, and the `session.error` says why
/// and how the user can log in themselves.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_started_login_never_reaches_private_addresses_the_server_names() {
    let server =
        oauth_server::serve("nothing-yet-0000", "nothing-yet-1111", ClientAuth::Post).await;
    // Stands for an internal service: another port on tetherd's loopback.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.set_nonblocking(true).unwrap();
    let probe_base = format!("http://{}", probe.local_addr().unwrap());
    server.lock().base = probe_base.clone();
    let env = TestEnv::new(Script::by_turn(vec![Reply::text("no tools today")])).await;
    let (mut child, api) = Api::start(&env).await;
    let (agent, vault) = setup(&api, &server).await;
    let id = run_session(&env, &api, &agent, &vault).await;

    let errors = session_errors(&env.events(&id));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let m = &errors[0].message;
    for part in [
        "could not",
        "loopback",
        "tether vaults login",
        probe_base.as_str(),
    ] {
        assert!(m.contains(part), "`{part}` not in: {m}");
    }
    assert!(authorizations(&env, &id).is_empty(), "no login was offered");
    assert_eq!(server.lock().registrations, 0);
    assert!(
        matches!(probe.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "tetherd connected to the address the server named"
    );
    let _ = child.kill();
    let _ = child.wait();
}
