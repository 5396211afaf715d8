//! Fan-out: what attached clients cost the agent. One daemon; each turn streams a reply of
//! `deltas` one-character text deltas to a fresh session while 0, 1, 10 or 50 clients attached
//! to it read everything (on this same machine, so their reading competes for the same cores).
//! A turn's duration comes from the log's own timestamps (`user.message` → `status_idle`), so
//! the measurement itself adds no client. Then: the daemon's CPU time with 50 idle attached
//! clients against none.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tether_mock_llm::{Block, MockServer, Reply, Script, Timing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::home::{Bins, Home};
use crate::report::{Row, Target};

pub const CLIENT_COUNTS: [usize; 4] = [0, 1, 10, 50];
const IDLE_CLIENTS: usize = 50;
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// `chunk_delay_ms` paces the stream like a real model (0: as fast as the daemon takes it).
pub async fn run(bins: &Bins, runs: usize, deltas: usize, chunk_delay_ms: u64) -> Result<Vec<Row>> {
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
    let mock = MockServer::start(script)
        .await
        .context("starting the mock model")?;
    let home = Home::new(bins, &mock.base_url())?;
    home.ok(&["daemon", "start"])?;
    let pid = home.running_daemon_pid()?;
    let socket = home.paths().socket();

    let mut per_count: Vec<Vec<f64>> = vec![Vec::new(); CLIENT_COUNTS.len()];
    let mut cpu_per_count: Vec<Vec<f64>> = vec![Vec::new(); CLIENT_COUNTS.len()];
    let mut resyncs = 0;
    // Interleaved, so drift (thermal, page cache) spreads over every client count alike.
    for _ in 0..runs {
        for (i, &n) in CLIENT_COUNTS.iter().enumerate() {
            let (ms, cpu, r) = one_turn(&socket, pid, n).await?;
            per_count[i].push(ms);
            cpu_per_count[i].push(cpu);
            resyncs += r;
        }
    }
    if resyncs > 0 {
        eprintln!("bench: fan-out clients were resynced {resyncs} times (they fell behind)");
    }

    let mut idle_zero = Vec::new();
    let mut idle_many = Vec::new();
    for _ in 0..runs.min(3) {
        let (zero, many) = idle_cpu(&socket, pid).await?;
        idle_zero.push(zero);
        idle_many.push(many);
    }
    home.stop_daemon()?;
    mock.shutdown().await;

    let base = crate::report::stats(&per_count[0]).median;
    let mut rows: Vec<Row> = CLIENT_COUNTS
        .iter()
        .zip(per_count)
        .map(|(&n, samples)| Row {
            metric: format!(
                "turn streaming {deltas} deltas ({chunk_delay_ms} ms apart), {n} attached clients reading"
            ),
            samples,
            unit: crate::report::Unit::Ms,
            // The goal: 50 clients slow the agent by less than 5 %.
            target: (n == IDLE_CLIENTS).then_some(Target::AtMost(base * 1.05)),
        })
        .collect();
    for (&n, samples) in CLIENT_COUNTS.iter().zip(cpu_per_count) {
        rows.push(Row {
            metric: format!("daemon CPU for that turn, {n} attached clients"),
            samples,
            unit: crate::report::Unit::Ms,
            target: None,
        });
    }
    let per_client_per_min = |zero: &f64, many: &f64| {
        (many - zero).max(0.0) / IDLE_CLIENTS as f64 * 60.0 / IDLE_WINDOW.as_secs_f64()
    };
    rows.push(Row {
        metric: format!(
            "daemon CPU per idle attached client, ms per minute ({IDLE_CLIENTS} clients vs 0, {} s windows)",
            IDLE_WINDOW.as_secs()
        ),
        samples: idle_zero
            .iter()
            .zip(&idle_many)
            .map(|(z, m)| per_client_per_min(z, m))
            .collect(),
        unit: crate::report::Unit::Ms,
        target: None,
    });
    Ok(rows)
}

/// One turn on a fresh session with `n` clients attached and reading; returns the turn's
/// duration from the log, the daemon's CPU time meanwhile, and how many resyncs the clients got.
async fn one_turn(socket: &Path, pid: i32, n: usize) -> Result<(f64, f64, usize)> {
    let mut driver = Conn::open(socket).await?;
    let info = driver.request("session.create", json!({})).await?;
    let id = info["id"]
        .as_str()
        .context("session.create: no id")?
        .to_string();
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Conn::open(socket).await?;
        c.request("session.attach", json!({"session": id, "after_seq": 0}))
            .await?;
        readers.push(tokio::spawn(c.read_until_idle(id.clone())));
    }
    let cpu_before = cpu_ms(pid)?;
    driver
        .request(
            "session.send",
            json!({"session": id, "content": [{"type": "text", "text": "go"}]}),
        )
        .await?;
    let mut resyncs = 0;
    for r in readers {
        resyncs += r.await.context("a fan-out client panicked")??;
    }
    // With no client attached, poll for the end (cheap: one request per 10 ms).
    let events = loop {
        let page = driver
            .request(
                "session.events",
                json!({"session": id, "limit": 10000, "order": "asc"}),
            )
            .await?;
        let events = page["data"].as_array().cloned().unwrap_or_default();
        if events.iter().any(|e| e["type"] == "session.status_idle") {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let cpu = cpu_ms(pid)? - cpu_before;
    let at = |ty: &str| -> Result<f64> {
        let e = events
            .iter()
            .find(|e| e["type"] == ty)
            .with_context(|| format!("no {ty} in the log"))?;
        millis_of_day(e["processed_at"].as_str().unwrap_or(""))
    };
    let (start, end) = (at("user.message")?, at("session.status_idle")?);
    let ms = if end >= start {
        end - start
    } else {
        end + 86_400_000.0 - start
    };
    let reply = events
        .iter()
        .find(|e| e["type"] == "agent.message")
        .context("no agent.message in the log")?;
    if reply.to_string().len() < 100 {
        bail!("the agent's reply is too short: {reply}");
    }
    Ok((ms, cpu, resyncs))
}

/// Daemon CPU ms over [`IDLE_WINDOW`] with no client, then with [`IDLE_CLIENTS`] idle attached.
async fn idle_cpu(socket: &Path, pid: i32) -> Result<(f64, f64)> {
    let mut driver = Conn::open(socket).await?;
    let info = driver.request("session.create", json!({})).await?;
    let id = info["id"]
        .as_str()
        .context("session.create: no id")?
        .to_string();
    drop(driver);
    let zero = cpu_over(pid, IDLE_WINDOW).await?;
    let mut clients = Vec::with_capacity(IDLE_CLIENTS);
    for _ in 0..IDLE_CLIENTS {
        let mut c = Conn::open(socket).await?;
        c.request("session.attach", json!({"session": id, "after_seq": 0}))
            .await?;
        clients.push(tokio::spawn(c.read_until_idle(id.clone())));
    }
    let many = cpu_over(pid, IDLE_WINDOW).await?;
    for c in clients {
        c.abort();
    }
    Ok((zero, many))
}

pub async fn cpu_over(pid: i32, window: Duration) -> Result<f64> {
    let before = cpu_ms(pid)?;
    tokio::time::sleep(window).await;
    Ok(cpu_ms(pid)? - before)
}

/// utime + stime of `pid`, in ms.
pub fn cpu_ms(pid: i32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("bad /proc/{pid}/stat"))
    };
    // `rest` starts at field 3 (state); field k is at index k - 3. USER_HZ is 100 on Linux.
    Ok((ticks(11)? + ticks(12)?) * 10.0)
}

/// `…THH:MM:SS.mmmZ` → milliseconds since midnight.
pub fn millis_of_day(ts: &str) -> Result<f64> {
    let time = ts
        .split_once('T')
        .map(|(_, t)| t.trim_end_matches('Z'))
        .with_context(|| format!("bad timestamp {ts:?}"))?;
    let parts: Vec<f64> = time
        .split(':')
        .map(|p| p.parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad timestamp {ts:?}"))?;
    match parts.as_slice() {
        [h, m, s] => Ok(((h * 60.0 + m) * 60.0 + s) * 1000.0),
        _ => bail!("bad timestamp {ts:?}"),
    }
}

/// A bare protocol connection that keeps its reading cheap: lines are scanned, and parsed
/// only when they are replies or resyncs.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    start: usize,
    next_id: u64,
}

impl Conn {
    async fn open(socket: &Path) -> Result<Conn> {
        let stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        let mut c = Conn {
            stream,
            buf: Vec::new(),
            start: 0,
            next_id: 1,
        };
        c.send(&json!({"hello": {"protocol": tether_proto::PROTOCOL_VERSION, "client": "bench", "version": "0"}}))
            .await?;
        let welcome = c.line().await?;
        if !welcome.starts_with(b"{\"welcome\"") {
            bail!("expected welcome, got {}", String::from_utf8_lossy(welcome));
        }
        Ok(c)
    }

    async fn send(&mut self, v: &Value) -> Result<()> {
        let mut b = serde_json::to_vec(v)?;
        b.push(b'\n');
        self.stream.write_all(&b).await?;
        Ok(())
    }

    /// The next line, without its newline (valid until the next call).
    async fn line(&mut self) -> Result<&[u8]> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(i) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
                let (from, to) = (self.start, self.start + i);
                self.start = to + 1;
                return Ok(&self.buf[from..to]);
            }
            // Drop what was consumed before reading more.
            self.buf.drain(..self.start);
            self.start = 0;
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("tetherd closed the connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"id": id, "method": method, "params": params}))
            .await?;
        let prefix = format!("{{\"id\":{id},");
        loop {
            let line = self.line().await?;
            if line.starts_with(prefix.as_bytes()) {
                let v: Value = serde_json::from_slice(line)?;
                if let Some(e) = v.get("error") {
                    bail!("{method}: {e}");
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// Reads (and drops) everything until the session's `status_idle`, re-attaching on
    /// resync; returns the number of resyncs.
    async fn read_until_idle(mut self, session: String) -> Result<usize> {
        let mut resyncs = 0;
        loop {
            let line = self.line().await?;
            if line.starts_with(b"{\"event\"")
                && contains(line, b"\"type\":\"session.status_idle\"")
            {
                return Ok(resyncs);
            }
            if line.starts_with(b"{\"resync\"") {
                resyncs += 1;
                let v: Value = serde_json::from_slice(line)?;
                let from = v["resync"]["from_seq"].as_u64().unwrap_or(1);
                self.request(
                    "session.attach",
                    json!({"session": session, "after_seq": from.saturating_sub(1)}),
                )
                .await?;
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
