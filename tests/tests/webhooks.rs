//! Webhooks end to end: the real daemon POSTs to a receiver in this test that verifies each
//! delivery with the official Python SDK's `client.beta.webhooks.unwrap` (tests/sdk/webhooks.py);
//! retries keep the webhook-id; a delivery committed before a kill -9 is sent after restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tether_e2e::{Reply, TestEnv, python, sdk_script, wait_until};
use tether_mock_llm::Script;

/// A signing secret the tests put in config.toml (the Standard Webhooks spec's example key).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// tests/sdk/webhooks.py, running; its output lines collected as they come.
struct Receiver {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl Receiver {
    fn start(fail_first: u32) -> Receiver {
        let mut child = Command::new(python())
            .arg(sdk_script("webhooks.py"))
            .args(["0", &fail_first.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 (with anthropic[webhooks]==2.17.0, as .ci/run installs)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let port = first
            .trim()
            .strip_prefix("port ")
            .unwrap_or_else(|| {
                panic!(
                    "the receiver did not start (is `anthropic[webhooks]` installed?): {first:?}"
                )
            })
            .parse()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Receiver {
            stdin: child.stdin.take(),
            child,
            lines,
            port,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn set_secret(&mut self, secret: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{secret}").unwrap();
        stdin.flush().unwrap();
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The deliveries `unwrap` accepted, in arrival order.
    fn verified(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("verified "))
            .map(|j| serde_json::from_str(j).unwrap())
            .collect()
    }

    fn verified_of(&self, data_type: &str) -> Vec<Value> {
        self.verified()
            .into_iter()
            .filter(|v| v["data_type"] == data_type)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn config_endpoint(url: &str, events: &str) -> String {
    format!(
        "[[webhooks.endpoints]]\nname = \"cfg\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nevents = [{events}]\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_verify_with_the_official_sdk_and_retries_keep_the_webhook_id() {
    let mut recv = Receiver::start(2);
    let env = TestEnv::with_config(
        Script::sequential(vec![Reply::text("done")]),
        "[webhooks]\nbase_delay_ms = 20\nmax_delay_ms = 100\n",
    )
    .await;
    let added = env.ok(&[
        "webhooks",
        "add",
        &recv.url(),
        "--name",
        "recv",
        "--event",
        "session.created",
        "--event",
        "session.idled",
        "--json",
    ]);
    let endpoint: Value = serde_json::from_str(&added).unwrap();
    let secret = endpoint["signing_secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{added}");
    recv.set_secret(secret);
    // Listed, without the secret.
    let ls = env.ok(&["webhooks", "ls", "--json"]);
    let listed = json_lines(&ls);
    assert_eq!(listed.len(), 1, "{ls}");
    assert_eq!(listed[0]["name"], "recv");
    assert!(listed[0].get("signing_secret").is_none(), "{ls}");

    let id = env
        .ok(&["new", "--detach", "--name", "w1", "hi"])
        .trim()
        .to_string();
    env.wait_idle(&id).await;
    wait_until("the idle webhook verified", || {
        !recv.verified_of("session.idled").is_empty()
    })
    .await;
    let lines = recv.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("invalid")),
        "the SDK refused a delivery: {lines:#?}"
    );
    let idled = &recv.verified_of("session.idled")[0];
    let wid = idled["webhook_id"].as_str().unwrap();
    assert!(wid.starts_with("whe_"), "{idled}");
    // The envelope's id is the webhook-id, as hosted.
    assert_eq!(idled["id"], wid);
    assert_eq!(idled["type"], "event");
    assert_eq!(idled["data_id"], id.as_str());
    assert_eq!(idled["organization_id"], "local");
    // Two refusals, then the third attempt: all with the same webhook-id.
    let rejected: Vec<&String> = lines
        .iter()
        .filter(|l| l.as_str() == format!("rejected {wid}"))
        .collect();
    assert_eq!(rejected.len(), 2, "{lines:#?}");
    // Only the types asked for.
    wait_until("the created webhook verified", || {
        !recv.verified_of("session.created").is_empty()
    })
    .await;
    let created = &recv.verified_of("session.created")[0];
    assert_eq!(created["data_id"], id.as_str());
    assert_ne!(created["webhook_id"], wid);
    for v in recv.verified() {
        assert!(
            v["data_type"] == "session.idled" || v["data_type"] == "session.created",
            "{v}"
        );
    }

    // The delivery log says the same.
    // (Recorded right after the receiver's answer.)
    let delivered = || {
        json_lines(&env.ok(&["webhooks", "deliveries", "--json"]))
            .into_iter()
            .find(|r| r["id"] == wid && r["status"] == "delivered")
    };
    wait_until("the delivery recorded", || delivered().is_some()).await;
    let row = delivered().unwrap();
    assert_eq!(row["attempts"], 3, "{row}");
    assert_eq!(row["last_status"], 204, "{row}");
    assert_eq!(row["event_type"], "session.idled");
    let text = env.ok(&["webhooks", "deliveries"]);
    assert!(text.contains(wid) && text.contains("delivered"), "{text}");

    // Redelivery: the same id again.
    env.ok(&["webhooks", "redeliver", wid]);
    wait_until("the redelivery verified", || {
        recv.verified_of("session.idled").len() == 2
    })
    .await;
    assert_eq!(recv.verified_of("session.idled")[1]["webhook_id"], wid);

    // Bad input says what to do.
    let out = env.run(&["webhooks", "add", "ftp://x", "--event", "session.nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http:// or https://"), "{err}");
    let out = env.run(&["webhooks", "rm", "nosuch"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no webhook `nosuch`"), "{err}");
    env.ok(&["webhooks", "rm", "recv"]);
    assert!(json_lines(&env.ok(&["webhooks", "ls", "--json"])).is_empty());
}

/// The delivery row commits with the `session.status_idle` it reports; the daemon is killed
/// before sending it. After a restart it is sent, with the id it was committed with.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_committed_before_a_kill_is_sent_after_restart() {
    let mut recv = Receiver::start(0);
    recv.set_secret(SECRET);
    let env = TestEnv::with_config(
        Script::sequential(vec![Reply::text("done")]),
        &config_endpoint(&recv.url(), "\"session.idled\""),
    )
    .await;
    let daemon = env.spawn_daemon(Some("before_webhook_send")).await;
    let id = env
        .ok(&["new", "--detach", "--name", "k1", "hi"])
        .trim()
        .to_string();
    env.wait_killed(daemon).await;
    assert!(recv.lines().is_empty(), "{:?}", recv.lines());
    let db = rusqlite::Connection::open(env.paths.db()).unwrap();
    let (wid, status, attempts): (String, String, i64) = db
        .query_row(
            "SELECT id, status, attempts FROM webhook_deliveries WHERE type = 'session.idled'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    drop(db);

    let _daemon = env.spawn_daemon(None).await;
    wait_until("the delivery after the restart", || {
        !recv.verified_of("session.idled").is_empty()
    })
    .await;
    let v = &recv.verified_of("session.idled")[0];
    assert_eq!(v["webhook_id"], wid.as_str());
    assert_eq!(v["data_id"], id.as_str());
}

/// Killed after the receiver answered but before the attempt was recorded: sent again after
/// restart with the same webhook-id (at-least-once; receivers dedupe on it).
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_after_sending_redelivers_with_the_same_id() {
    let mut recv = Receiver::start(0);
    recv.set_secret(SECRET);
    let env = TestEnv::with_config(
        Script::sequential(vec![Reply::text("done")]),
        &config_endpoint(&recv.url(), "\"session.idled\""),
    )
    .await;
    let daemon = env.spawn_daemon(Some("after_webhook_send")).await;
    env.ok(&["new", "--detach", "hi"]);
    env.wait_killed(daemon).await;
    wait_until("the first delivery", || {
        recv.verified_of("session.idled").len() == 1
    })
    .await;
    let _daemon = env.spawn_daemon(None).await;
    wait_until("the second delivery", || {
        recv.verified_of("session.idled").len() == 2
    })
    .await;
    let both = recv.verified_of("session.idled");
    assert_eq!(both[0]["webhook_id"], both[1]["webhook_id"]);
    let log = env.ok(&["webhooks", "deliveries", "--json", "--webhook", "cfg"]);
    let rows = json_lines(&log);
    assert_eq!(rows.len(), 1, "{log}");
    assert_eq!(rows[0]["status"], "delivered", "{log}");
}

/// Resource changes are webhooks too (issue 20): agents, environments and deployments, in the
/// hosted names, each verified by the official SDK's `unwrap`; a no-op sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn resource_changes_are_webhooks_the_sdk_verifies() {
    let mut recv = Receiver::start(0);
    let env = TestEnv::with_config(
        Script::sequential(vec![]),
        "[webhooks]\nbase_delay_ms = 20\nmax_delay_ms = 100\n",
    )
    .await;
    let _daemon = env.spawn_daemon(None).await;
    let added = env.ok(&["webhooks", "add", &recv.url(), "--name", "all", "--json"]);
    let endpoint: Value = serde_json::from_str(&added).unwrap();
    recv.set_secret(endpoint["signing_secret"].as_str().unwrap());
    let mut c = env.client().await;
    let call = |v: Result<Value, tether_proto::ErrorBody>| v.unwrap();
    let agent = call(
        c.call("agent.create", serde_json::json!({"name": "hooked"}))
            .await,
    );
    let agent_id = agent["id"].as_str().unwrap().to_string();
    call(
        c.call(
            "agent.update",
            serde_json::json!({"agent": "hooked", "version": 1, "changes": {"description": "v2"}}),
        )
        .await,
    );
    call(
        c.call("agent.archive", serde_json::json!({"agent": "hooked"}))
            .await,
    );
    // Archiving again changes nothing and says nothing.
    let _ = c
        .call("agent.archive", serde_json::json!({"agent": "hooked"}))
        .await;
    let e = call(
        c.call(
            "environment.create",
            serde_json::json!({"name": "hooked-env"}),
        )
        .await,
    );
    let env_id = e["id"].as_str().unwrap().to_string();
    call(
        c.call(
            "environment.update",
            serde_json::json!({"environment": "hooked-env", "changes": {"description": "d"}}),
        )
        .await,
    );
    call(
        c.call(
            "environment.archive",
            serde_json::json!({"environment": "hooked-env"}),
        )
        .await,
    );
    call(
        c.call(
            "environment.delete",
            serde_json::json!({"environment": "hooked-env"}),
        )
        .await,
    );
    let d = call(
        c.call(
            "deployment.create",
            serde_json::json!({
                "name": "nightly",
                "agent": "default",
                "environment_id": "default",
                "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}],
                "schedule": {"type": "cron", "expression": "0 3 * * *", "timezone": "UTC"},
            }),
        )
        .await,
    );
    let dep_id = d["id"].as_str().unwrap().to_string();
    for m in [
        "deployment.pause",
        "deployment.pause",
        "deployment.unpause",
        "deployment.archive",
    ] {
        let _ = c
            .call(m, serde_json::json!({"deployment": "nightly"}))
            .await;
    }
    let expected = [
        ("agent.created", &agent_id),
        ("agent.updated", &agent_id),
        ("agent.archived", &agent_id),
        ("environment.created", &env_id),
        ("environment.updated", &env_id),
        ("environment.archived", &env_id),
        ("environment.deleted", &env_id),
        ("deployment.created", &dep_id),
        ("deployment.paused", &dep_id),
        ("deployment.unpaused", &dep_id),
        ("deployment.archived", &dep_id),
    ];
    wait_until("every resource webhook verified", || {
        expected
            .iter()
            .all(|(t, _)| !recv.verified_of(t).is_empty())
    })
    .await;
    let lines = recv.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("invalid")),
        "the SDK refused a delivery: {lines:#?}"
    );
    for (t, id) in expected {
        let got = recv.verified_of(t);
        // Exactly once: the no-op archive and pause sent nothing.
        assert_eq!(got.len(), 1, "{t}: {got:#?}");
        assert_eq!(got[0]["data_id"], id.as_str(), "{t}");
        assert_eq!(got[0]["type"], "event");
        assert!(got[0]["webhook_id"].as_str().unwrap().starts_with("whe_"));
    }
    // In the delivery log with the rest.
    let log = env.ok(&["webhooks", "deliveries", "--json"]);
    assert!(log.contains("environment.deleted"), "{log}");
}

/// A token endpoint that refuses an `mcp_oauth` credential's refresh token sends
/// `vault_credential.refresh_failed` (the hosted shape: `data.id` the credential,
/// `data.vault_id` its vault), verified by the official SDK; a refresh that succeeds sends
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_refresh_sends_vault_credential_refresh_failed() {
    use tether_e2e::http_api::Api;
    use tether_e2e::oauth_server::{self, CLIENT_ID, CLIENT_SECRET, ClientAuth};
    let mut recv = Receiver::start(0);
    recv.set_secret(SECRET);
    let server = oauth_server::serve(
        "current-access-8120",
        "good-refresh-3319",
        ClientAuth::Basic,
    )
    .await;
    let env = TestEnv::with_config(
        Script::sequential(vec![Reply::text("done")]),
        &config_endpoint(&recv.url(), "\"vault_credential.refresh_failed\""),
    )
    .await;
    let (mut child, api) = Api::start(&env).await;
    let vault = api
        .ok(
            "POST",
            "/v1/vaults",
            Some(serde_json::json!({"display_name": "hooks"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let credential = |refresh_token: &str| {
        serde_json::json!({"auth": {"type": "mcp_oauth", "mcp_server_url": server.mcp_url,
            "access_token": "stale-access-0042",
            "refresh": {"client_id": CLIENT_ID, "refresh_token": refresh_token,
                "token_endpoint": server.token_url,
                "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": CLIENT_SECRET}}}})
    };
    let path = format!("/v1/vaults/{vault}/credentials");
    let good = api
        .ok("POST", &path, Some(credential("good-refresh-3319")))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = api
        .ok("POST", &path, Some(credential("revoked-refresh-6604")))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The stale token is refused by the MCP server, so validation refreshes each.
    let v = api
        .ok("POST", &format!("{path}/{good}/mcp_oauth_validate"), None)
        .await;
    assert_eq!(v["status"], "valid", "{v}");
    let v = api
        .ok("POST", &format!("{path}/{bad}/mcp_oauth_validate"), None)
        .await;
    assert_eq!(v["status"], "invalid", "{v}");
    assert_eq!(v["refresh"]["status"], "failed", "{v}");

    wait_until("the refresh_failed webhook verified", || {
        !recv
            .verified_of("vault_credential.refresh_failed")
            .is_empty()
    })
    .await;
    let lines = recv.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("invalid")),
        "the SDK refused a delivery: {lines:#?}"
    );
    let failed = recv.verified_of("vault_credential.refresh_failed");
    assert_eq!(failed.len(), 1, "only the refused one: {failed:#?}");
    assert_eq!(failed[0]["data_id"], bad.as_str());
    assert_eq!(failed[0]["vault_id"], vault.as_str());
    assert_eq!(failed[0]["workspace_id"], "default");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("revoked-refresh-6604") || l.contains(CLIENT_SECRET))
    );
    let _ = child.kill();
    let _ = child.wait();
}
