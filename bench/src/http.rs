//! The HTTP API: paging `GET /v1/sessions` over 10,000 stored sessions, and what 100 SSE
//! readers of one session (previews on) cost the agent while it streams, measured like the
//! socket fan-out: the turn's duration from the log's own timestamps.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tether_daemon::store::Store;
use tether_daemon::store::rows::SessionRow;
use tether_mock_llm::{Block, MockServer, Reply, Script, Timing};

use crate::home::{Bins, Home};
use crate::report::{Row, Target, Unit};

pub const SESSIONS: usize = 10_000;
pub const SSE_READERS: [usize; 2] = [0, 100];

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn of(home: &Home) -> Result<Api> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let addr = std::fs::read_to_string(home.paths().http_addr_file())
            .context("the daemon wrote no HTTP address")?;
        let token = std::fs::read_to_string(home.paths().http_token_file())?;
        Ok(Api {
            http: reqwest::Client::new(),
            base: format!("http://{}", addr.trim()),
            token: token.trim().to_string(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let resp = req.header("x-api-key", &self.token).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }
}

fn start_with_http(home: &Home) -> Result<()> {
    let cfg = home.paths().config_file();
    std::fs::create_dir_all(cfg.parent().context("config dir")?)?;
    std::fs::write(&cfg, "[http]\nlisten = \"127.0.0.1:0\"\n")?;
    home.ok(&["daemon", "start"])?;
    Ok(())
}

/// Per-page latency of walking `GET /v1/sessions?limit=100` over [`SESSIONS`] sessions.
pub async fn list(bins: &Bins, runs: usize) -> Result<Vec<Row>> {
    let home = Home::new(bins, "http://127.0.0.1:9")?;
    // Rows straight into the log's database, as 10,000 `tether new` would leave them.
    std::fs::create_dir_all(&home.paths().data_dir)?;
    let store = Store::open(&home.paths().db())?;
    // In concurrent batches, so the writer group-commits them.
    for batch in (0..SESSIONS).collect::<Vec<_>>().chunks(500) {
        let creates = batch.iter().map(|i| {
            let mut row = SessionRow::new(
                format!("sesn_bench{i:08}"),
                "anthropic/claude-bench".into(),
                "/tmp".into(),
                10,
            );
            row.title = Some(format!("session {i}"));
            store.create_session(row, None)
        });
        futures_util::future::try_join_all(creates).await?;
    }
    drop(store);
    start_with_http(&home)?;
    let api = Api::of(&home)?;
    let mut pages = Vec::new();
    for _ in 0..runs.max(1) {
        let mut page: Option<String> = None;
        let mut seen = 0;
        loop {
            let path = match &page {
                Some(p) => format!("/v1/sessions?limit=100&page={p}"),
                None => "/v1/sessions?limit=100".into(),
            };
            let t = Instant::now();
            let v = api.get(&path).await?;
            pages.push(t.elapsed().as_secs_f64() * 1000.0);
            seen += v["data"].as_array().map_or(0, Vec::len);
            match v["next_page"].as_str() {
                Some(n) => page = Some(n.to_string()),
                None => break,
            }
        }
        if seen != SESSIONS {
            bail!("paging saw {seen} sessions, not {SESSIONS}");
        }
    }
    home.stop_daemon()?;
    Ok(vec![Row {
        metric: format!("HTTP `GET /v1/sessions?limit=100`, one page of {SESSIONS} sessions"),
        samples: pages,
        unit: Unit::Ms,
        target: Some(Target::AtMost(20.0)),
    }])
}

/// Turn duration with 0 and 100 SSE readers (message previews on) of the session.
pub async fn fanout(
    bins: &Bins,
    runs: usize,
    deltas: usize,
    chunk_delay_ms: u64,
) -> Result<Vec<Row>> {
    let text: String = (0..deltas)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let script = Script::by_turn(vec![Reply::Message {
        blocks: vec![Block::Text { text }],
        stop_reason: None,
        usage: None,
    }])
    .with_timing(Timing {
        chunk_chars: 1,
        chunk_delay_ms,
        ..Timing::default()
    });
    let mock = MockServer::start(script).await?;
    let home = Home::new(bins, &mock.base_url())?;
    start_with_http(&home)?;
    let api = Api::of(&home)?;
    let mut per_count: Vec<Vec<f64>> = vec![Vec::new(); SSE_READERS.len()];
    for _ in 0..runs {
        for (i, &n) in SSE_READERS.iter().enumerate() {
            per_count[i].push(one_turn(&api, n).await?);
        }
    }
    home.stop_daemon()?;
    mock.shutdown().await;
    let base = crate::report::stats(&per_count[0]).median;
    Ok(SSE_READERS
        .iter()
        .zip(per_count)
        .map(|(&n, samples)| Row {
            metric: format!(
                "turn streaming {deltas} deltas ({chunk_delay_ms} ms apart), {n} SSE readers with previews"
            ),
            samples,
            unit: Unit::Ms,
            target: (n > 0).then_some(Target::AtMost(base * 1.05)),
        })
        .collect())
}

async fn one_turn(api: &Api, readers: usize) -> Result<f64> {
    let s = api
        .post(
            "/v1/sessions",
            json!({"agent": "default", "environment_id": "default"}),
        )
        .await?;
    let id = s["id"].as_str().context("no session id")?.to_string();
    let mut tasks = Vec::with_capacity(readers);
    for _ in 0..readers {
        let resp = api
            .http
            .get(format!(
                "{}/v1/sessions/{id}/events/stream?event_deltas[]=agent.message",
                api.base
            ))
            .header("x-api-key", &api.token)
            .send()
            .await?;
        tasks.push(tokio::spawn(async move {
            let mut events = resp.bytes_stream().eventsource();
            let mut n = 0usize;
            while let Some(Ok(ev)) = events.next().await {
                n += 1;
                if ev.event == "session.status_idle" || ev.event == "resync" {
                    return (n, ev.event == "resync");
                }
            }
            (n, false)
        }));
    }
    api.post(
        &format!("/v1/sessions/{id}/events"),
        json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]}),
    )
    .await?;
    let mut resyncs = 0;
    for t in tasks {
        let (_, resynced) = t.await?;
        resyncs += usize::from(resynced);
    }
    if resyncs > 0 {
        eprintln!("bench: {resyncs} SSE readers fell behind and were told to resync");
    }
    let events = loop {
        let page = api
            .get(&format!(
                "/v1/sessions/{id}/events?types[]=user.message&types[]=session.status_idle"
            ))
            .await?;
        let events = page["data"].as_array().cloned().unwrap_or_default();
        if events.iter().any(|e| e["type"] == "session.status_idle") {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let at = |ty: &str| -> Result<f64> {
        let e = events
            .iter()
            .find(|e| e["type"] == ty)
            .with_context(|| format!("no {ty} in the log"))?;
        crate::fanout::millis_of_day(e["processed_at"].as_str().unwrap_or(""))
    };
    let (start, end) = (at("user.message")?, at("session.status_idle")?);
    Ok(if end >= start {
        end - start
    } else {
        end + 86_400_000.0 - start
    })
}
