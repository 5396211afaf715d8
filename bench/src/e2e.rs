//! End-to-end metrics with the real release binaries: `tether run` latency with a warm and a
//! cold daemon, and the daemon's memory with 10 sessions.

use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::home::{Bins, Home, proc_status_mib, run_timed};

pub const PROMPT: &str = "create f.txt containing hello, then read it back";

/// `tether send NAME PROMPT --wait` to every session at once, one thread each; an error names
/// the first send that failed or did not print the expected answer.
pub fn send_to_all(home: &Home, names: &[String]) -> Result<()> {
    let results: Vec<Result<(Output, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                let mut cmd = home.tether();
                cmd.args(["send", name, PROMPT, "--wait"]);
                s.spawn(move || run_timed(&mut cmd))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("sender thread panicked")))
            })
            .collect()
    });
    for (name, r) in names.iter().zip(results) {
        let (out, _) = r.with_context(|| format!("tether send {name}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && stdout.contains(EXPECTED),
            "tether send {name} --wait failed ({})\n--- stdout\n{stdout}\n--- stderr\n{}\n--- daemon log (tail)\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            home.daemon_log_tail(40)
        );
    }
    Ok(())
}
pub const EXPECTED: &str = "The file contains hello.";
const WARMUP_RUNS: usize = 2;
const RSS_SESSIONS: usize = 10;
/// Let the daemon settle (finish logging, free per-turn buffers) before reading its RSS.
const RSS_SETTLE: Duration = Duration::from_millis(100);

fn check_run(out: &Output, work: &std::path::Path, what: &str) -> Result<()> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains(EXPECTED) {
        bail!(
            "{what}: stdout lacks {EXPECTED:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let f = std::fs::read_to_string(work.join("f.txt"))
        .with_context(|| format!("{what}: the agent did not create f.txt"))?;
    ensure!(f == "hello", "{what}: f.txt contains {f:?}, not \"hello\"");
    Ok(())
}

fn run_once(home: &Home, what: &str) -> Result<Duration> {
    let work = tempfile::Builder::new()
        .prefix("tbw")
        .tempdir_in("/tmp")
        .context("creating a --dir for tether run")?;
    let dir = work.path().display().to_string();
    let (out, took) = home.timed(&["run", PROMPT, "--dir", &dir])?;
    check_run(&out, work.path(), what)?;
    Ok(took)
}

/// `tether run` wall time with the daemon already up.
pub fn run_warm(bins: &Bins, base_url: &str, runs: usize) -> Result<Vec<f64>> {
    let home = Home::new(bins, base_url)?;
    home.ok(&["daemon", "start"])?;
    home.running_daemon_pid()?;
    let mut ms = Vec::with_capacity(runs);
    for i in 0..WARMUP_RUNS + runs {
        let took = run_once(&home, &format!("warm run {i}"))?;
        if i >= WARMUP_RUNS {
            ms.push(took.as_secs_f64() * 1e3);
        }
    }
    home.stop_daemon()?;
    Ok(ms)
}

/// `tether run` wall time when the call has to start the daemon itself.
pub fn run_cold(bins: &Bins, base_url: &str, runs: usize) -> Result<Vec<f64>> {
    let home = Home::new(bins, base_url)?;
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs {
        home.stop_daemon()?;
        ensure!(
            home.daemon_pid()
                .is_none_or(|p| !crate::home::is_tetherd(p)),
            "a daemon is still running before cold run {i}"
        );
        let took = run_once(&home, &format!("cold run {i}"))?;
        home.running_daemon_pid()
            .with_context(|| format!("cold run {i} did not leave a daemon running"))?;
        ms.push(took.as_secs_f64() * 1e3);
    }
    home.stop_daemon()?;
    Ok(ms)
}

/// One sample of the daemon's memory, in MiB.
#[derive(Debug, Clone, Copy)]
pub struct RssSample {
    /// Daemon just started, no sessions.
    pub empty: f64,
    /// After creating 10 idle sessions.
    pub idle: f64,
    /// After each of those sessions ran the scenario (concurrently) and went idle again.
    pub after_runs: f64,
    /// Peak RSS (VmHWM) over the daemon's life, i.e. including the concurrent runs.
    pub peak: f64,
}

pub fn rss_once(bins: &Bins, base_url: &str) -> Result<RssSample> {
    let home = Home::new(bins, base_url)?;
    home.ok(&["daemon", "start"])?;
    let pid = home.running_daemon_pid()?;
    std::thread::sleep(RSS_SETTLE);
    let empty = proc_status_mib(pid, "VmRSS")?;

    let names: Vec<String> = (0..RSS_SESSIONS).map(|i| format!("s{i}")).collect();
    for name in &names {
        home.ok(&["new", "--detach", "--name", name])?;
    }
    let listed = home.ok(&["ls", "--json"])?;
    let idle_count = listed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["status"] == "idle")
        .count();
    ensure!(
        idle_count == RSS_SESSIONS,
        "expected {RSS_SESSIONS} idle sessions, `tether ls --json` shows:\n{listed}"
    );
    std::thread::sleep(RSS_SETTLE);
    let idle = proc_status_mib(pid, "VmRSS")?;

    // All 10 sessions run the scenario at once.
    send_to_all(&home, &names)?;
    ensure!(
        home.running_daemon_pid()? == pid,
        "the daemon restarted during the RSS measurement"
    );
    std::thread::sleep(RSS_SETTLE);
    let after_runs = proc_status_mib(pid, "VmRSS")?;
    let peak = proc_status_mib(pid, "VmHWM")?;
    home.stop_daemon()?;
    Ok(RssSample {
        empty,
        idle,
        after_runs,
        peak,
    })
}
