//! What an outcome costs the daemon: a session whose outcome is satisfied at the first
//! evaluation against the same run without an outcome, on a zero-latency mock, driven over
//! the HTTP API (tetherd only). The difference is the evaluation cycle's own overhead (its
//! spans, the grader's request and its bookkeeping); issue 21 asks for at most 10 ms.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tether_mock_llm::{MockServer, Reply, Route, Script};

use crate::home::{Bins, Home};
use crate::report::{Row, Target, Unit};

const WARMUP: usize = 3;

/// The HTTP API of one tetherd (also used by `threads.rs`).
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// Starts `home`'s tetherd serving HTTP on a free loopback port.
    pub(crate) fn start(home: &Home) -> Result<(std::process::Child, Api)> {
        let mut daemon = home
            .tetherd()
            .args(["--http", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting tetherd")?;
        let addr_file = home.paths().http_addr_file();
        let t = Instant::now();
        while !std::fs::read_to_string(&addr_file).is_ok_and(|a| a.ends_with('\n')) {
            if t.elapsed() > Duration::from_secs(20) {
                let _ = daemon.kill();
                bail!("tetherd did not serve HTTP within 20 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let api = Api {
            http: reqwest::Client::new(),
            base: format!("http://{}", std::fs::read_to_string(&addr_file)?.trim()),
            token: std::fs::read_to_string(home.paths().http_token_file())?
                .trim()
                .to_string(),
        };
        Ok((daemon, api))
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let resp = req.header("x-api-key", &self.token).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// One run: a new session, `event` sent, wall time until the session is idle again.
    async fn run(&self, event: Value) -> Result<Duration> {
        let s = self
            .post(
                "/v1/sessions",
                json!({"agent": "default", "environment_id": "default"}),
            )
            .await?;
        let id = s["id"]
            .as_str()
            .context("session without an id")?
            .to_string();
        let t = Instant::now();
        self.post(
            &format!("/v1/sessions/{id}/events"),
            json!({"events": [event]}),
        )
        .await?;
        loop {
            let s = self.get(&format!("/v1/sessions/{id}")).await?;
            if s["status"] == "idle" {
                return Ok(t.elapsed());
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("session {id} did not go idle within 30 s: {s}");
            }
        }
    }
}

/// Rows: the run without an outcome, with a satisfied-first-time outcome, and the
/// difference of their medians (one sample).
pub fn rows(bins: &Bins, runs: usize) -> Result<Vec<Row>> {
    let rt = tokio::runtime::Handle::current();
    let n = WARMUP + runs;
    let grader = Route::new(
        "grader",
        (0..n)
            .map(|_| {
                Reply::tool_use(
                    "submit_evaluation",
                    json!({"result": "satisfied", "explanation": "ok", "criteria": []}),
                )
            })
            .collect(),
    )
    .when_tool("submit_evaluation");
    // by_turn: every session's first request gets the same answer.
    let script = Script::by_turn(vec![Reply::text("done")])
        .with_side_reply(Reply::text("title"))
        .with_route(grader);
    let mock = rt.block_on(MockServer::start(script))?;
    let home = Home::new(bins, &mock.base_url())?;
    let (mut daemon, api) = Api::start(&home)?;
    let message =
        json!({"type": "user.message", "content": [{"type": "text", "text": "write it"}]});
    let outcome = json!({"type": "user.define_outcome", "description": "write it",
                         "rubric": {"type": "text", "content": "- it is written"}});
    let measured = rt.block_on(async {
        let (mut plain, mut graded) = (Vec::new(), Vec::new());
        // Interleaved, so drift hits both alike.
        for i in 0..n {
            let a = api.run(message.clone()).await?;
            let b = api.run(outcome.clone()).await?;
            if i >= WARMUP {
                plain.push(a.as_secs_f64() * 1e3);
                graded.push(b.as_secs_f64() * 1e3);
            }
        }
        anyhow::Ok((plain, graded))
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let (plain, graded) = measured?;
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    let diff = median(&graded) - median(&plain);
    Ok(vec![
        Row {
            metric: "session turn over HTTP, no outcome".into(),
            samples: plain,
            unit: Unit::Ms,
            target: None,
        },
        Row {
            metric: "session turn over HTTP, outcome satisfied at the first evaluation".into(),
            samples: graded,
            unit: Unit::Ms,
            target: None,
        },
        Row {
            metric: "outcome overhead (difference of the medians)".into(),
            samples: vec![diff],
            unit: Unit::Ms,
            target: Some(Target::AtMost(10.0)),
        },
    ])
}
