//! What scheduled deployments cost an idle daemon: CPU over a minute and resident memory,
//! with no deployment and with 1,000 active ones whose next fire is months away (so the
//! scheduler only sleeps). Issue 24 asks for at most 1 ms CPU per minute and 5 MiB. CPU is
//! read from every thread's schedstat (nanoseconds), not /proc/PID/stat's 10 ms ticks.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::home::{Bins, Home, proc_status_mib};
use crate::report::{Row, Target, Unit};

pub const DEPLOYMENTS: usize = 1000;
const WINDOW: Duration = Duration::from_secs(60);

/// CPU time so far of each live thread of `pid`, in ns (schedstat's first field).
fn thread_cpu_ns(pid: u32) -> Result<std::collections::HashMap<String, u64>> {
    let mut out = std::collections::HashMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let t = t?;
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        out.insert(t.file_name().to_string_lossy().into_owned(), ns);
    }
    Ok(out)
}

/// CPU the daemon spends over [`WINDOW`] while nothing happens, in ms: per thread, what it
/// added (all of it for a thread born meanwhile). A thread that exits meanwhile (the blocking
/// pool's, idle for 10 s) loses its share, which only idles anyway.
fn idle_cpu(pid: u32) -> Result<f64> {
    let before = thread_cpu_ns(pid)?;
    std::thread::sleep(WINDOW);
    let after = thread_cpu_ns(pid)?;
    let ns: u64 = after
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    Ok(ns as f64 / 1e6)
}

/// Starts `tetherd --http` on `home`, runs `f` with its pid and HTTP base and token, stops it.
fn with_daemon<T>(home: &Home, f: impl FnOnce(u32, &str, &str) -> Result<T>) -> Result<T> {
    // The last daemon's address must not be taken for this one's.
    let addr_file = home.paths().http_addr_file();
    let _ = std::fs::remove_file(&addr_file);
    let mut daemon = home
        .tetherd()
        .args(["--http", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting tetherd")?;
    let result = (|| {
        let t = Instant::now();
        while !std::fs::read_to_string(&addr_file).is_ok_and(|a| a.ends_with('\n')) {
            if t.elapsed() > Duration::from_secs(20) {
                bail!("tetherd did not serve HTTP within 20 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let base = format!("http://{}", std::fs::read_to_string(&addr_file)?.trim());
        let token = std::fs::read_to_string(home.paths().http_token_file())?
            .trim()
            .to_string();
        // Let start-up settle (environment probe, warm-up, the scheduler's first load).
        std::thread::sleep(Duration::from_secs(2));
        f(daemon.id(), &base, &token)
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    result
}

/// Two daemons on one home: the first starts empty (the baseline) and creates the
/// deployments over HTTP; the second starts with them, which is what an idle daemon with
/// 1,000 deployments costs. The first one's RSS right after the creates is reported too: it
/// is the allocator keeping what 1,000 requests used, not a cost of the deployments.
pub fn rows(bins: &Bins) -> Result<Vec<Row>> {
    // Nothing fires, so no model is asked: a closed loopback port stands in for one.
    let home = Home::new(bins, "http://127.0.0.1:9")?;
    let (rss_empty, cpu_empty, rss_created) = with_daemon(&home, |pid, base, token| {
        let rss_empty = proc_status_mib(pid as i32, "VmRSS")?;
        let cpu_empty = idle_cpu(pid)?;
        create(base, token)?;
        std::thread::sleep(Duration::from_secs(2));
        Ok((rss_empty, cpu_empty, proc_status_mib(pid as i32, "VmRSS")?))
    })?;
    let (rss_full, cpu_full) = with_daemon(&home, |pid, _, _| {
        Ok((proc_status_mib(pid as i32, "VmRSS")?, idle_cpu(pid)?))
    })?;
    Ok(vec![
        Row {
            metric: "idle daemon CPU per minute, no deployment".into(),
            samples: vec![cpu_empty],
            unit: Unit::Ms,
            target: None,
        },
        Row {
            metric: format!("idle daemon CPU per minute, {DEPLOYMENTS} active deployments"),
            samples: vec![cpu_full],
            unit: Unit::Ms,
            target: None,
        },
        Row {
            metric: format!("CPU per minute the {DEPLOYMENTS} deployments add"),
            samples: vec![(cpu_full - cpu_empty).max(0.0)],
            unit: Unit::Ms,
            target: Some(Target::AtMost(1.0)),
        },
        Row {
            metric: format!(
                "RSS {DEPLOYMENTS} deployments add to a daemon started with them (empty: {rss_empty:.1} MiB)"
            ),
            samples: vec![rss_full - rss_empty],
            unit: Unit::Mib,
            target: Some(Target::AtMost(5.0)),
        },
        Row {
            metric: format!(
                "RSS right after creating {DEPLOYMENTS} over HTTP (request churn kept by the allocator)"
            ),
            samples: vec![rss_created - rss_empty],
            unit: Unit::Mib,
            target: None,
        },
    ])
}

/// Creates the deployments, spread over minutes and zones; none fires within months.
fn create(base: &str, token: &str) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let rt = tokio::runtime::Handle::current();
    let created = Instant::now();
    let zones = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"];
    rt.block_on(async {
        for i in 0..DEPLOYMENTS {
            let zone = zones[i % zones.len()];
            let resp = http
                .post(format!("{base}/v1/deployments"))
                .header("x-api-key", token)
                .header("content-type", "application/json")
                .body(
                    json!({
                        "name": format!("d{i}"),
                        "agent": "default",
                        "environment_id": "default",
                        "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}],
                        "schedule": {"type": "cron", "expression": format!("{} {} 1 1 *", i % 60, i % 24),
                                     "timezone": zone},
                    })
                    .to_string(),
                )
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("creating deployment {i}: {}", resp.text().await?);
            }
        }
        anyhow::Ok(())
    })?;
    eprintln!(
        "bench: created {DEPLOYMENTS} deployments in {:.1} s",
        created.elapsed().as_secs_f64()
    );
    Ok(())
}
