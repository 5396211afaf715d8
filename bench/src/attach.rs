//! The TUI attached to a big session: a 100,000-event log written straight into a fresh store,
//! then the release `tether attach` run on a pseudo-terminal (120×40) the way a person runs it.
//!
//! - first frame: spawn → the newest message of the log has been drawn (the client loads the
//!   log's tail with a ranged read, so this should not grow with the log);
//! - page scroll: PgUp sent → the redrawn frame has been written (the end of the output burst
//!   the key caused), 20 pages back per run, crossing into older pages loaded on demand;
//! - RSS of the client after scrolling, and its CPU while idle for 2 s.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::pty::{Winsize, openpty};
use serde_json::json;
use tether_daemon::ids;
use tether_daemon::store::Store;
use tether_daemon::store::rows::SessionRow;
use tether_proto::{ContentBlock, EventBody, StopReason, ToolStatus};

use crate::home::{Home, proc_status_mib};

/// Name of the big session.
pub const SESSION: &str = "big";
const MARKER: &str = "end-of-the-big-log";
const PAGE_UPS: usize = 20;

/// Writes a session of `events` events (batches of 1,000: a user message, the turn's status
/// events, assistant messages, a bash call and its result) into the home's store, before any
/// daemon runs.
pub async fn seed(home: &Home, events: usize) -> Result<()> {
    let paths = home.paths();
    std::fs::create_dir_all(&paths.data_dir).context("creating the data dir")?;
    let store = Store::open(&paths.db()).context("opening the store")?;
    let id = ids::session_id();
    let ws = paths.data_dir.join("ws");
    std::fs::create_dir_all(&ws)?;
    let row = SessionRow {
        name: Some(SESSION.into()),
        ..SessionRow::new(
            id.clone(),
            "anthropic/claude-sonnet-4-6".into(),
            ws.display().to_string(),
            50,
        )
    };
    store.create_session(row, None).await?;
    let batches = events.div_ceil(1000);
    for b in 0..batches {
        let mut bodies = vec![
            EventBody::user_text(format!("turn {b}: please look at the next part")),
            EventBody::SessionStatusRunning {},
        ];
        while bodies.len() < 996 {
            let n = bodies.len();
            bodies.push(EventBody::AgentMessage {
                content: vec![ContentBlock::text(if n % 25 == 0 {
                    // Some answers carry fenced code, so highlighting is part of the cost.
                    format!(
                        "Message **{b}-{n}**: the fix:\n\n```rust\nfn part{n}(input: &str) -> Result<u32, String> {{\n    // trim, then parse\n    input.trim().parse().map_err(|e| format!(\"bad: {{e}}\"))\n}}\n```\n\n```sh\ncargo test -p part{n}\n```"
                    )
                } else {
                    format!("Message **{b}-{n}**: checked `src/part{n}.rs`, it looks fine.")
                })],
            });
        }
        bodies.push(EventBody::AgentToolUse {
            name: "bash".into(),
            input: json!({"command": "cargo test"}),
            evaluated_permission: None,
        });
        let appended = store.append(&id, bodies, None).await?;
        let tool_use_id = appended
            .last()
            .map(|e| e.id.clone())
            .context("empty append")?;
        let last = b + 1 == batches;
        store
            .append(
                &id,
                vec![
                    EventBody::AgentToolResult {
                        tool_use_id,
                        content: vec![ContentBlock::text(
                            "running 12 tests\ntest result: ok. 12 passed\n",
                        )],
                        is_error: false,
                        status: ToolStatus::Ok,
                        exit_code: Some(0),
                        duration_ms: 1500,
                    },
                    EventBody::AgentMessage {
                        content: vec![ContentBlock::text(if last {
                            MARKER.to_string()
                        } else {
                            format!("turn {b} done")
                        })],
                    },
                    EventBody::SessionStatusIdle {
                        stop_reason: StopReason::EndTurn,
                    },
                ],
                None,
            )
            .await?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct AttachSample {
    pub first_frame_ms: f64,
    pub page_ms: Vec<f64>,
    pub rss_mib: f64,
    pub idle_cpu_pct: f64,
}

/// Terminal output collected by a reader thread, with arrival times.
#[derive(Default)]
struct Screen {
    bytes: Vec<u8>,
    last_at: Option<Instant>,
}

pub(crate) struct Pty {
    master: std::fs::File,
    out: Arc<Mutex<Screen>>,
    child: Child,
}

impl Pty {
    fn spawn(home: &Home, args: &[&str]) -> Result<Pty> {
        Pty::spawn_with(home, args, &[])
    }

    /// [`Pty::spawn`] with extra environment variables for `tether`.
    pub(crate) fn spawn_with(home: &Home, args: &[&str], vars: &[(&str, &str)]) -> Result<Pty> {
        let ws = Winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&ws), None).context("openpty")?;
        let slave: OwnedFd = pty.slave;
        let child = home
            .tether()
            .args(args)
            .env("TERM", "xterm-256color")
            .envs(vars.iter().copied())
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave))
            .spawn()
            .context("spawning tether on the pty")?;
        let master = std::fs::File::from(pty.master);
        let out = Arc::new(Mutex::new(Screen::default()));
        let mut reader = master.try_clone()?;
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.bytes.extend_from_slice(&buf[..n]);
                    s.last_at = Some(Instant::now());
                }
            }
        });
        Ok(Pty { master, out, child })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn len(&self) -> usize {
        self.out.lock().map(|s| s.bytes.len()).unwrap_or(0)
    }

    pub(crate) fn contains_after(&self, from: usize, needle: &str) -> bool {
        self.out
            .lock()
            .map(|s| {
                s.bytes
                    .get(from..)
                    .is_some_and(|b| String::from_utf8_lossy(b).contains(needle))
            })
            .unwrap_or(false)
    }

    /// Waits for output after `from`, then for it to go quiet for `quiet`; returns when the
    /// last byte of that burst arrived.
    pub(crate) fn burst_end(
        &self,
        from: usize,
        quiet: Duration,
        timeout: Duration,
    ) -> Result<Instant> {
        let start = Instant::now();
        loop {
            let (len, last) = self
                .out
                .lock()
                .map(|s| (s.bytes.len(), s.last_at))
                .unwrap_or((0, None));
            if len > from
                && let Some(t) = last
                && t.elapsed() >= quiet
            {
                return Ok(t);
            }
            if start.elapsed() > timeout {
                bail!("no redraw within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until `needle` is in the output written after `from`; returns when it was
    /// seen (polled every 100 µs, scanning only what came since the last look).
    pub(crate) fn wait_for(&self, from: usize, needle: &str, timeout: Duration) -> Result<Instant> {
        let needle = needle.as_bytes();
        let start = Instant::now();
        let mut scanned = from;
        loop {
            let found = self
                .out
                .lock()
                .map(|s| {
                    let at = scanned.saturating_sub(needle.len()).max(from);
                    let hit = s
                        .bytes
                        .get(at..)
                        .is_some_and(|b| b.windows(needle.len()).any(|w| w == needle));
                    scanned = s.bytes.len();
                    hit
                })
                .unwrap_or(false);
            if found {
                return Ok(Instant::now());
            }
            if start.elapsed() > timeout {
                bail!(
                    "`{}` not drawn within {timeout:?}",
                    String::from_utf8_lossy(needle)
                );
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<Instant> {
        self.master.write_all(bytes)?;
        self.master.flush()?;
        Ok(Instant::now())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based, counting pid and comm).
    let ut: u64 = f.get(11).context("utime")?.parse()?;
    let st: u64 = f.get(12).context("stime")?.parse()?;
    Ok(ut + st)
}

/// One attach: spawn, first frame, 20 page-ups, RSS, idle CPU, detach.
pub fn run_once(home: &Home) -> Result<AttachSample> {
    let start = Instant::now();
    let mut pty = Pty::spawn(home, &["attach", SESSION])?;
    while !pty.contains_after(0, MARKER) {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the first frame never showed the newest message");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let first_frame_ms = start.elapsed().as_secs_f64() * 1000.0;
    // Let the first frame's tail and the status refresh settle before timing keys.
    pty.burst_end(0, Duration::from_millis(100), Duration::from_secs(10))?;
    let mut page_ms = Vec::with_capacity(PAGE_UPS);
    for _ in 0..PAGE_UPS {
        let from = pty.len();
        let sent = pty.send(b"\x1b[5~")?;
        let end = pty.burst_end(from, Duration::from_millis(40), Duration::from_secs(10))?;
        page_ms.push(end.duration_since(sent).as_secs_f64() * 1000.0);
    }
    let pid = pty.child.id() as i32;
    let rss_mib = proc_status_mib(pid, "VmRSS")?;
    let ticks0 = cpu_ticks(pid as u32)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu_ticks(pid as u32)? - ticks0;
    // USER_HZ is 100 on Linux.
    let idle_cpu_pct = ticks as f64 / 100.0 / t0.elapsed().as_secs_f64() * 100.0;
    // Detach with the default chord; the client must exit on its own.
    pty.send(b"\x02d")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pty.child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            bail!("tether did not exit after the detach key");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(AttachSample {
        first_frame_ms,
        page_ms,
        rss_mib,
        idle_cpu_pct,
    })
}
