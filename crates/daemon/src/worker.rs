//! `tetherd worker`: tether's own self-hosted worker (what `tether worker` runs). It speaks
//! the protocol the official SDK's worker speaks — poll the environment's queue with the
//! environment key, ack, heartbeat the lease, read the session, run the calls it waits on
//! (`requires_action`), post `user.tool_result`, stop the item — but runs the tools with
//! tetherd's own toolbox, in tetherd's sandbox on this machine, so a fleet of worker boxes
//! isolates tools as a local session does.
//!
//! It lives in the daemon crate because that is where the tools and the sandbox are; it is a
//! client of the HTTP API and nothing in the daemon uses it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::session::state::WORKER_TOOLS;
use crate::tools::Toolbox;

pub const SUBCOMMAND: &str = "worker";

/// What `tetherd worker` is given.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// tetherd's HTTP API, e.g. `https://tether.example.com` or `http://127.0.0.1:8470`.
    pub url: String,
    pub environment_id: String,
    pub key: String,
    /// Where the tools run (the sessions' working directory on this machine).
    pub workdir: PathBuf,
    pub worker_id: String,
    /// Network of the tools, as an environment's `networking` gives a local session's:
    /// unrestricted (public hosts), limited to an allow-list, or none.
    pub network: crate::net::NetPolicy,
    /// Serve one item, then exit (tests, benchmarks).
    pub once: bool,
}

struct Http {
    client: reqwest::Client,
    base: String,
}

/// The answer of a request: status and JSON body (null when there is none).
async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let resp = req
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .context("cannot reach tetherd's HTTP API")?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn message(v: &Value) -> String {
    v["error"]["message"].as_str().unwrap_or("").to_string()
}

/// The sessions token in a poll's `secret` (URL-safe base64 of JSON).
fn sessions_token(secret: &str) -> Option<String> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // The SDK sends URL-safe base64; accept the standard alphabet and padding too.
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let bytes = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient)
        .decode(secret)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::STANDARD, lenient).decode(secret))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["sessions_token"].as_str().map(str::to_string)
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = Arc::new(Http {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        base: args.url.trim_end_matches('/').to_string(),
    });
    let env = &args.environment_id;
    tracing::info!(env = %env, url = %http.base, worker = %args.worker_id, "worker polling");
    let mut failures = 0u32;
    loop {
        let poll = http
            .client
            .get(format!(
                "{}/v1/environments/{env}/work/poll?block_ms=999",
                http.base
            ))
            .bearer_auth(&args.key)
            .header("anthropic-worker-id", &args.worker_id);
        let (status, item) = match send(poll).await {
            Ok(r) => r,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "poll failed; retrying");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures.min(20)))).await;
                continue;
            }
        };
        failures = 0;
        match status {
            200 if item.is_null() => continue,
            200 => {}
            401 => bail!(
                "tetherd refused the environment key for {env} (401): check --key (`tether envs key {env} --rotate` on the daemon's machine makes a new one)"
            ),
            _ => bail!("polling {env} failed ({status}): {}", message(&item)),
        }
        let work_id = item["id"].as_str().unwrap_or_default().to_string();
        let session_id = item["data"]["id"].as_str().unwrap_or_default().to_string();
        let (status, acked) = send(
            http.client
                .post(format!(
                    "{}/v1/environments/{env}/work/{work_id}/ack",
                    http.base
                ))
                .bearer_auth(&args.key),
        )
        .await?;
        if status != 200 {
            tracing::info!(work = %work_id, status, error = %message(&acked), "ack refused; polling again");
            continue;
        }
        let token = item["secret"]
            .as_str()
            .and_then(sessions_token)
            .unwrap_or_else(|| args.key.clone());
        tracing::info!(work = %work_id, session = %session_id, "claimed");
        if let Err(e) = serve(&http, &args, &work_id, &session_id, &token).await {
            tracing::warn!(work = %work_id, error = %e, "serving the item failed");
        }
        if args.once {
            return Ok(());
        }
    }
}

/// One item: claim the lease, keep it while the session's calls are run, then stop it.
async fn serve(
    http: &Arc<Http>,
    args: &WorkerArgs,
    work_id: &str,
    session_id: &str,
    token: &str,
) -> anyhow::Result<()> {
    let env = &args.environment_id;
    let heartbeat_url = format!(
        "{}/v1/environments/{env}/work/{work_id}/heartbeat",
        http.base
    );
    let (status, hb) = send(
        http.client
            .post(format!(
                "{heartbeat_url}?expected_last_heartbeat=NO_HEARTBEAT"
            ))
            .bearer_auth(token),
    )
    .await?;
    if status != 200 || hb["lease_extended"] != true {
        bail!("the lease was not ours ({status}): {}", message(&hb));
    }
    let lost = CancellationToken::new();
    let beats = tokio::spawn(keep_lease(
        http.clone(),
        heartbeat_url,
        token.to_string(),
        hb,
        lost.clone(),
    ));
    let result = run_calls(http, args, session_id, token, &lost).await;
    beats.abort();
    if !lost.is_cancelled() {
        let _ = send(
            http.client
                .post(format!(
                    "{}/v1/environments/{env}/work/{work_id}/stop",
                    http.base
                ))
                .bearer_auth(token)
                .json(&json!({"force": true})),
        )
        .await;
    }
    result
}

/// Heartbeats at half the lease (at most every 30 s) until the lease is refused or ends.
async fn keep_lease(
    http: Arc<Http>,
    url: String,
    token: String,
    mut last: Value,
    lost: CancellationToken,
) {
    loop {
        let ttl = last["ttl_seconds"].as_u64().unwrap_or(300).max(1);
        tokio::time::sleep(Duration::from_millis((ttl * 500).min(30_000))).await;
        let expected = last["last_heartbeat"].as_str().unwrap_or("").to_string();
        match send(
            http.client
                .post(format!(
                    "{url}?expected_last_heartbeat={}",
                    form_urlencoded::byte_serialize(expected.as_bytes()).collect::<String>()
                ))
                .bearer_auth(&token),
        )
        .await
        {
            Ok((200, hb)) if hb["lease_extended"] == true => last = hb,
            Ok((status, hb)) => {
                tracing::warn!(status, error = %message(&hb), "lease ended");
                lost.cancel();
                return;
            }
            // A blip: the next beat may still land within the lease.
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}

/// Reads the session and runs the worker calls it waits on, until its turn ends (idle for
/// another reason than `requires_action`) or the lease is lost.
async fn run_calls(
    http: &Arc<Http>,
    args: &WorkerArgs,
    session_id: &str,
    token: &str,
    lost: &CancellationToken,
) -> anyhow::Result<()> {
    let net = if args.network.is_none() {
        Arc::new(crate::net::SessionNet::off())
    } else {
        let socket = std::env::temp_dir().join(format!(
            "tether-worker-{}-{}.sock",
            std::process::id(),
            session_id
        ));
        Arc::new(crate::net::SessionNet::new(
            args.network.clone(),
            crate::net::policy::system_resolver(),
            socket,
        ))
    };
    std::fs::create_dir_all(&args.workdir)
        .with_context(|| format!("cannot create {}", args.workdir.display()))?;
    let toolbox = Toolbox::for_session(args.workdir.clone(), None, net);
    let mut answered: HashSet<String> = HashSet::new();
    let mut calls: HashMap<String, (String, Value)> = HashMap::new();
    let mut after = 0u64;
    while !lost.is_cancelled() {
        // Everything since the last read; `after_seq` is tether's resumable cursor.
        let (status, page) = send(
            http.client
                .get(format!(
                    "{}/v1/sessions/{session_id}/events?limit=1000&after_seq={after}",
                    http.base
                ))
                .bearer_auth(token),
        )
        .await?;
        if status != 200 {
            bail!(
                "reading session {session_id} failed ({status}): {}",
                message(&page)
            );
        }
        let events = page["data"].as_array().cloned().unwrap_or_default();
        let mut waiting: Option<Vec<String>> = None;
        let mut ended = false;
        for e in &events {
            after = after.max(e["seq"].as_u64().unwrap_or(after));
            match e["type"].as_str().unwrap_or("") {
                "agent.tool_use" => {
                    let id = e["id"].as_str().unwrap_or_default().to_string();
                    let name = e["name"].as_str().unwrap_or_default().to_string();
                    calls.insert(id, (name, e["input"].clone()));
                }
                "agent.tool_result" | "user.tool_result" => {
                    if let Some(id) = e["tool_use_id"].as_str() {
                        answered.insert(id.to_string());
                    }
                }
                "session.status_idle" => {
                    let reason = &e["stop_reason"];
                    if reason["type"] == "requires_action" {
                        waiting = Some(
                            reason["event_ids"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(|v| v.as_str().map(str::to_string))
                                        .collect()
                                })
                                .unwrap_or_default(),
                        );
                        ended = false;
                    } else {
                        waiting = None;
                        ended = true;
                    }
                }
                "session.status_running" | "session.status_rescheduled" => {
                    waiting = None;
                    ended = false;
                }
                "session.status_terminated" | "session.deleted" => return Ok(()),
                _ => {}
            }
        }
        if ended {
            return Ok(());
        }
        let mut ran = false;
        for id in waiting.unwrap_or_default() {
            if answered.contains(&id) || lost.is_cancelled() {
                continue;
            }
            let Some((name, input)) = calls.get(&id).cloned() else {
                continue;
            };
            if !WORKER_TOOLS.contains(&name.as_str()) {
                continue;
            }
            let outcome = toolbox.run(&name, &input, None, lost.child_token()).await;
            if lost.is_cancelled() {
                // Not ours to answer any more: the daemon settled it.
                break;
            }
            let (status, body) = send(
                http.client
                    .post(format!("{}/v1/sessions/{session_id}/events", http.base))
                    .bearer_auth(token)
                    .json(&json!({"events": [{
                        "type": "user.tool_result",
                        "tool_use_id": id,
                        "is_error": outcome.is_error,
                        "content": [{"type": "text", "text": if outcome.content.is_empty() { "(no output)".to_string() } else { outcome.content }}],
                    }]})),
            )
            .await?;
            if status != 200 {
                tracing::warn!(call = %id, status, error = %message(&body), "result refused");
            }
            answered.insert(id);
            ran = true;
        }
        if !ran {
            wait_for_change(http, session_id, token, after, lost).await;
        }
    }
    Ok(())
}

/// Blocks on the session's event stream until something after `after` arrives (no polling).
async fn wait_for_change(
    http: &Arc<Http>,
    session_id: &str,
    token: &str,
    after: u64,
    lost: &CancellationToken,
) {
    use futures_util::StreamExt;
    let req = http
        .client
        .get(format!(
            "{}/v1/sessions/{session_id}/events/stream?after_seq={after}",
            http.base
        ))
        .bearer_auth(token)
        .timeout(Duration::from_secs(3600));
    let Ok(resp) = req.send().await else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    loop {
        tokio::select! {
            _ = lost.cancelled() => return,
            chunk = body.next() => match chunk {
                Some(Ok(bytes)) => {
                    buf.push_str(&String::from_utf8_lossy(&bytes));
                    // A status change is what can give the worker something to do.
                    if buf.lines().any(|l| l.starts_with("data:") && l.contains("\"session.status_")) {
                        return;
                    }
                    if let Some(i) = buf.rfind('\n') {
                        buf.drain(..=i);
                    }
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    use super::sessions_token;

    #[test]
    fn the_sessions_token_is_read_from_either_base64_alphabet_padded_or_not() {
        // `?>` encodes to `Pz4` / `Pz4=`: a character that differs between the alphabets.
        let json = br#"{"sessions_token":"tok?>","other":1}"#;
        assert_eq!(
            sessions_token(&URL_SAFE_NO_PAD.encode(json)).as_deref(),
            Some("tok?>")
        );
        assert_eq!(
            sessions_token(&STANDARD.encode(json)).as_deref(),
            Some("tok?>")
        );
        assert_eq!(sessions_token("not base64 at all!"), None);
        assert_eq!(sessions_token(&URL_SAFE_NO_PAD.encode(b"{}")), None);
    }
}
