//! Self-hosted environments (issue 26), over loopback HTTP against the release tetherd:
//! - the `bash_then_read` turn (2 tool calls) in a cloud environment (tools in tetherd's
//!   sandbox) against the same turn in a self-hosted one whose worker (here, in-process)
//!   runs the same tools with tetherd's own `Toolbox`: the difference per call is what the
//!   queue adds (claim, reads, result post). Target ≤ 5 ms. Each side's second turn is timed,
//!   so neither pays for starting a sandbox.
//! - long-poll wake: a worker blocked in `poll` gets an item this long after it was recorded
//!   (its `created_at` against the poll's return, same clock). Target ≤ 5 ms.
//! - 8 workers serving 64 sessions at once with instant tools, against a model that starts
//!   each answer after 1 s: the daemon's CPU over the run, as a share of one core. Target <
//!   20%. (With an instant model too, nothing is left to wait on but the daemon, which then
//!   runs flat out by construction; that run gives the CPU per call instead.)
//!
//! Workers and the bench follow sessions as the official SDK's tool runner does (the event
//! stream, then the history once), never by polling the event list, which would measure the
//! poller.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tether_daemon::tools::Toolbox;
use tokio_util::sync::CancellationToken;

use crate::home::{Bins, Home};
use crate::report::{Row, Target, Unit};

pub const WORKERS: usize = 8;

/// Two `bash_then_read` turns per session (the per-call comparison times the second).
pub fn script() -> tether_mock_llm::Script {
    use tether_mock_llm::Reply;
    let turn = || {
        [
            Reply::tool_use(
                "bash",
                json!({"command": "printf hello > f.txt && echo done"}),
            ),
            Reply::tool_use("read", json!({"file_path": "f.txt"})),
            Reply::text("The file contains hello."),
        ]
    };
    tether_mock_llm::Script::by_turn(turn().into_iter().chain(turn()).collect())
}
pub const SESSIONS: usize = 64;

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(bearer);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn session(&self, env: &str) -> Result<String> {
        let s = self
            .call(
                reqwest::Method::POST,
                "/v1/sessions",
                &self.token,
                Some(json!({"agent": "default", "environment_id": env})),
            )
            .await?;
        s["id"]
            .as_str()
            .map(str::to_string)
            .context("no session id")
    }

    async fn send(&self, session: &str) -> Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/sessions/{session}/events"),
            &self.token,
            Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})),
        )
        .await?;
        Ok(())
    }

    /// Waits until the session has ended `turns` turns (idle with end_turn), following its
    /// event stream (opened before the history is read, so nothing falls between).
    async fn wait_end_turns(&self, session: &str, turns: usize) -> Result<()> {
        let mut stream = Sse::open(self, session, &self.token).await?;
        let history = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/sessions/{session}/events?limit=1000"),
                &self.token,
                None,
            )
            .await?;
        let mut seen = std::collections::HashSet::new();
        let mut ended = 0;
        let mut pending: std::collections::VecDeque<Value> = history["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into();
        loop {
            if ended >= turns {
                return Ok(());
            }
            let e = match pending.pop_front() {
                Some(e) => e,
                None => stream.next().await?,
            };
            if !seen.insert(e["id"].as_str().unwrap_or_default().to_string())
                || e["type"] != "session.status_idle"
            {
                continue;
            }
            match e["stop_reason"]["type"].as_str() {
                Some("end_turn") => ended += 1,
                Some("requires_action") => {}
                // A turn that failed never ends well: say why instead of waiting forever.
                other => bail!("session {session} stopped with {other:?}: {e}"),
            }
        }
    }
}

fn sessions_token(secret: &str) -> Option<String> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            _ => 63,
        }
    };
    let mut out = Vec::new();
    for chunk in secret.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, c)| a | (val(*c) << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    serde_json::from_slice::<Value>(&out).ok()?["sessions_token"]
        .as_str()
        .map(str::to_string)
}

fn unix_ms_of(rfc3339: &str) -> Option<f64> {
    let t = humantime_parse(rfc3339)?;
    Some(t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs_f64() * 1000.0)
}

/// `2026-12-07T10:00:00.123Z` (what tetherd writes).
fn humantime_parse(s: &str) -> Option<SystemTime> {
    let d = chrono_like(s)?;
    Some(SystemTime::UNIX_EPOCH + d)
}

fn chrono_like(s: &str) -> Option<Duration> {
    // Days from civil (Howard Hinnant), enough for UTC timestamps with milliseconds.
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, mi, se) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms: i64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    Some(Duration::from_millis((secs * 1000 + ms) as u64))
}

/// One worker: polls, claims, runs the calls the session waits on (with `toolbox`, or an
/// instant "ok" when None), stops the item when the turn ends; `once`: after one item.
/// Returns the wake latencies it saw (poll return − item created), in ms.
async fn worker(
    api: Arc<Api>,
    env: String,
    key: String,
    toolbox: Option<Arc<Toolbox>>,
    once: bool,
    stop: CancellationToken,
) -> Result<Vec<f64>> {
    let mut wakes = Vec::new();
    while !stop.is_cancelled() {
        let item = api
            .call(
                reqwest::Method::GET,
                &format!("/v1/environments/{env}/work/poll?block_ms=999"),
                &key,
                None,
            )
            .await?;
        if item.is_null() {
            continue;
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_secs_f64()
            * 1000.0;
        if let Some(created) = item["created_at"].as_str().and_then(unix_ms_of) {
            wakes.push(now - created);
        }
        let id = item["id"].as_str().context("no work id")?.to_string();
        let session = item["data"]["id"]
            .as_str()
            .context("no session")?
            .to_string();
        let token = item["secret"]
            .as_str()
            .and_then(sessions_token)
            .context("no sessions token")?;
        api.call(
            reqwest::Method::POST,
            &format!("/v1/environments/{env}/work/{id}/ack"),
            &key,
            None,
        )
        .await?;
        api.call(
            reqwest::Method::POST,
            &format!(
                "/v1/environments/{env}/work/{id}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"
            ),
            &token,
            None,
        )
        .await?;
        serve_turn(&api, &session, &token, toolbox.as_deref()).await?;
        api.call(
            reqwest::Method::POST,
            &format!("/v1/environments/{env}/work/{id}/stop"),
            &token,
            Some(json!({"force": true})),
        )
        .await?;
        if once {
            break;
        }
    }
    Ok(wakes)
}

/// Runs the calls a session waits on until its turn ends, following the session the way the
/// official SDK's tool runner does: the event stream opened first, then the history read once,
/// then the stream (no polling, which would measure the poller rather than the queue).
async fn serve_turn(
    api: &Api,
    session: &str,
    token: &str,
    toolbox: Option<&Toolbox>,
) -> Result<()> {
    let mut stream = Sse::open(api, session, token).await?;
    let history = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/sessions/{session}/events?limit=1000"),
            token,
            None,
        )
        .await?;
    let history = history["data"].as_array().cloned().unwrap_or_default();
    let mut by_id: std::collections::HashMap<String, Value> = history
        .iter()
        .filter_map(|e| Some((e["id"].as_str()?.to_string(), e.clone())))
        .collect();
    let mut answered = std::collections::HashSet::new();
    // A call already waiting when the item was claimed; an older ended turn is history.
    let mut pending: std::collections::VecDeque<Value> = history
        .iter()
        .rev()
        .find(|e| is_status(e))
        .filter(|e| e["stop_reason"]["type"] == "requires_action")
        .cloned()
        .into_iter()
        .collect();
    loop {
        let ev = match pending.pop_front() {
            Some(ev) => ev,
            None => stream.next().await?,
        };
        if let Some(id) = ev["id"].as_str() {
            by_id.insert(id.to_string(), ev.clone());
        }
        if ev["type"] != "session.status_idle" {
            continue;
        }
        if ev["stop_reason"]["type"] != "requires_action" {
            return Ok(());
        }
        for wanted in ev["stop_reason"]["event_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let wanted = wanted.as_str().unwrap_or_default().to_string();
            if !answered.insert(wanted.clone()) {
                continue;
            }
            let call = by_id.get(&wanted).cloned().unwrap_or(Value::Null);
            let text = match toolbox {
                Some(tb) => {
                    let name = call["name"].as_str().unwrap_or_default();
                    tb.run(name, &call["input"], None, CancellationToken::new())
                        .await
                        .content
                }
                None => "ok".to_string(),
            };
            api.call(
                reqwest::Method::POST,
                &format!("/v1/sessions/{session}/events"),
                token,
                Some(json!({"events": [{"type": "user.tool_result", "tool_use_id": wanted, "content": [{"type": "text", "text": text}]}]})),
            )
            .await?;
        }
    }
}

/// A session's event stream, read as JSON events (the `data:` lines of each SSE event).
struct Sse {
    resp: reqwest::Response,
    buf: String,
    ready: std::collections::VecDeque<Value>,
}

impl Sse {
    async fn open(api: &Api, session: &str, token: &str) -> Result<Sse> {
        let resp = api
            .http
            .get(format!("{}/v1/sessions/{session}/events/stream", api.base))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?;
        Ok(Sse {
            resp,
            buf: String::new(),
            ready: Default::default(),
        })
    }

    async fn next(&mut self) -> Result<Value> {
        loop {
            if let Some(v) = self.ready.pop_front() {
                return Ok(v);
            }
            let chunk = self
                .resp
                .chunk()
                .await?
                .context("the session's event stream ended")?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                    self.ready.push_back(v);
                }
            }
        }
    }
}

fn is_status(e: &Value) -> bool {
    e["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("session.status_"))
}

fn thread_cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// A model that takes this long to start each answer, for the flow measurement: with an
/// instant model and instant tools the daemon is the only thing left to wait on, so it runs
/// flat out and its share of a core says nothing; real models take seconds a step.
pub const PACED_TTFT_MS: u64 = 1000;

/// `model_url`: an instant model (per call, wake, CPU per call); `paced_url`: one that
/// answers after [`PACED_TTFT_MS`] (the daemon's share of a core while 64 sessions work).
pub fn rows(bins: &Bins, model_url: &str, paced_url: &str, runs: usize) -> Result<Vec<Row>> {
    let mut rows = with_daemon(bins, model_url, |home, pid| measure(home, pid, runs, false))?;
    rows.extend(with_daemon(bins, paced_url, |home, pid| {
        measure(home, pid, runs, true)
    })?);
    Ok(rows)
}

fn with_daemon(
    bins: &Bins,
    model_url: &str,
    f: impl FnOnce(&Home, u32) -> Result<Vec<Row>>,
) -> Result<Vec<Row>> {
    let home = Home::new(bins, model_url)?;
    let mut daemon = home
        .tetherd()
        .args(["--http", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting tetherd")?;
    let result = f(&home, daemon.id());
    let _ = daemon.kill();
    let _ = daemon.wait();
    result
}

/// `paced`: only the flow of 64 sessions (the model is slow); else the per-call rows and
/// the CPU per call with an instant model.
fn measure(home: &Home, pid: u32, runs: usize, paced: bool) -> Result<Vec<Row>> {
    let addr_file = home.paths().http_addr_file();
    let t = Instant::now();
    while !std::fs::read_to_string(&addr_file).is_ok_and(|a| a.ends_with('\n')) {
        if t.elapsed() > Duration::from_secs(20) {
            bail!("tetherd did not serve HTTP within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        base: format!("http://{}", std::fs::read_to_string(&addr_file)?.trim()),
        token: std::fs::read_to_string(home.paths().http_token_file())?
            .trim()
            .to_string(),
    });
    let key_json = home.ok(&["envs", "create", "wk", "--self-hosted", "--json"])?;
    let key: Value = serde_json::from_str(key_json.trim())?;
    let env = key["environment_id"]
        .as_str()
        .context("no env id")?
        .to_string();
    let key = key["key"].as_str().context("no key")?.to_string();
    let rt = tokio::runtime::Handle::current();
    let workdir = tempfile::Builder::new().prefix("tbw").tempdir_in("/tmp")?;
    let toolbox = Arc::new(Toolbox::for_session(
        workdir.path().to_path_buf(),
        None,
        Arc::new(tether_daemon::net::SessionNet::off()),
    ));
    rt.block_on(async {
        // One turn each way first: sandbox probe, model client, caches.
        let (mut local, mut remote, mut wakes) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..if paced { 0 } else { runs + 1 } {
            // Cloud: the first turn starts the session's sandbox; the second is timed, so
            // both sides run their tools in a sandbox that is already up.
            let s = api.session("default").await?;
            api.send(&s).await?;
            api.wait_end_turns(&s, 1).await?;
            let t = Instant::now();
            api.send(&s).await?;
            api.wait_end_turns(&s, 2).await?;
            let l = t.elapsed().as_secs_f64() * 1000.0;
            // Self-hosted: the same two turns, each served by a worker blocked in poll.
            let s = api.session(&env).await?;
            let (mut r, mut wk) = (0.0, Vec::new());
            for turn in 1..=2 {
                let w = tokio::spawn(worker(
                    api.clone(),
                    env.clone(),
                    key.clone(),
                    Some(toolbox.clone()),
                    true,
                    CancellationToken::new(),
                ));
                tokio::time::sleep(Duration::from_millis(20)).await; // the worker is blocked in poll
                let t = Instant::now();
                api.send(&s).await?;
                api.wait_end_turns(&s, turn).await?;
                r = t.elapsed().as_secs_f64() * 1000.0;
                wk.extend(w.await??);
            }
            if i > 0 {
                local.push(l);
                remote.push(r);
                wakes.extend(wk);
            }
        }
        let added: Vec<f64> = remote
            .iter()
            .zip(&local)
            .map(|(r, l)| (r - l) / 2.0)
            .collect();

        // 8 workers, 64 sessions at once, instant tools: the daemon's share of a core.
        let stop = CancellationToken::new();
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                tokio::spawn(worker(
                    api.clone(),
                    env.clone(),
                    key.clone(),
                    None,
                    false,
                    stop.clone(),
                ))
            })
            .collect();
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
            sessions.push(api.session(&env).await?);
        }
        let cpu0 = thread_cpu_ns(pid);
        let t = Instant::now();
        for s in &sessions {
            api.send(s).await?;
        }
        for s in &sessions {
            api.wait_end_turns(s, 1).await?;
        }
        let wall = t.elapsed();
        let cpu = thread_cpu_ns(pid).saturating_sub(cpu0);
        stop.cancel();
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(3), w).await;
        }
        let share = cpu as f64 / wall.as_nanos() as f64 * 100.0;
        let calls = (SESSIONS * 2) as f64;
        eprintln!(
            "bench: {SESSIONS} sessions × 2 calls through {WORKERS} workers in {:.1} s ({})",
            wall.as_secs_f64(),
            if paced { "paced model" } else { "instant model" }
        );
        if paced {
            return anyhow::Ok(vec![Row {
                metric: format!(
                    "daemon CPU, {WORKERS} workers × {SESSIONS} sessions at once, model answering in {} s (% of one core)",
                    PACED_TTFT_MS / 1000
                ),
                samples: vec![share],
                unit: Unit::Percent,
                target: Some(Target::AtMost(20.0)),
            }]);
        }
        anyhow::Ok(vec![
            Row {
                metric: "`bash_then_read` turn, cloud env (tools in tetherd's sandbox)".into(),
                samples: local,
                unit: Unit::Ms,
                target: None,
            },
            Row {
                metric: "same turn, self-hosted env, worker on loopback (same sandbox)".into(),
                samples: remote,
                unit: Unit::Ms,
                target: None,
            },
            Row {
                metric: "added latency per tool call through the work queue".into(),
                samples: added,
                unit: Unit::Ms,
                target: Some(Target::AtMost(5.0)),
            },
            Row {
                metric: "long-poll wake: item recorded → blocked poll returns".into(),
                samples: wakes,
                unit: Unit::Ms,
                target: Some(Target::AtMost(5.0)),
            },
            Row {
                metric: format!(
                    "daemon CPU per tool call, {WORKERS} workers × {SESSIONS} sessions flat out, instant model (incl. its model requests)"
                ),
                samples: vec![cpu as f64 / 1e6 / calls],
                unit: Unit::Ms,
                target: None,
            },
        ])
    })
}
