//! `tether doctor`: the daemon, its paths and config, model providers, web search, MCP
//! credentials and the host's sandboxing, one check a line.

use std::process::ExitCode;

use serde_json::{Value, json};
use tether_proto::method::{DaemonStatus, NoParams, rpc};

use super::CmdResult;
use crate::client::{self, Client};

pub async fn run(json: bool) -> CmdResult {
    let paths = client::paths();
    let mut checks: Vec<(String, bool, String)> = Vec::new();
    let mut status: Option<DaemonStatus> = None;
    match Client::connect_existing(&paths).await {
        Ok(mut c) => {
            checks.push((
                "daemon".into(),
                true,
                format!("running, pid {} version {}", c.daemon_pid, c.daemon_version),
            ));
            status = c.request::<rpc::DaemonStatus>(NoParams {}).await.ok();
        }
        Err(e) => checks.push(("daemon".into(), false, e.to_string())),
    }
    checks.push(("socket".into(), true, paths.socket().display().to_string()));
    checks.push(("data".into(), true, paths.data_dir.display().to_string()));
    let config = paths.config_file();
    checks.push(match std::fs::read_to_string(&config) {
        Ok(_) => ("config".into(), true, config.display().to_string()),
        Err(_) => (
            "config".into(),
            true,
            format!("{} (absent: defaults apply)", config.display()),
        ),
    });
    checks.push((
        "logs".into(),
        true,
        format!("{}/tetherd.*.log", paths.log_dir.display()),
    ));
    let providers = status
        .as_ref()
        .map(|s| s.providers.clone())
        .unwrap_or_default();
    if providers.is_empty() {
        // No daemon to ask: judge from this shell's environment, which a daemon started from
        // here would inherit.
        let key = std::env::var("ANTHROPIC_API_KEY").is_ok_and(|k| !k.is_empty());
        let base = std::env::var("ANTHROPIC_BASE_URL").ok();
        checks.push((
            "anthropic".into(),
            key || base.is_some(),
            match (key, &base) {
                (true, Some(b)) => format!("ANTHROPIC_API_KEY set; endpoint {b}"),
                (true, None) => "ANTHROPIC_API_KEY set; endpoint https://api.anthropic.com".into(),
                (false, Some(b)) => format!("no ANTHROPIC_API_KEY; endpoint {b}"),
                (false, None) => {
                    "ANTHROPIC_API_KEY is not set: sessions cannot call the model".into()
                }
            },
        ));
    }
    for p in providers {
        checks.push((
            p.name,
            p.ready,
            format!(
                "{} — {} (as the running daemon sees it)",
                p.endpoint, p.detail
            ),
        ));
    }
    if let Some(s) = status.as_ref() {
        checks.push(match &s.web_search {
            Some(w) => (
                "web_search".into(),
                w.ready,
                if w.ready {
                    format!("{} — offered to the model", w.endpoint)
                } else {
                    w.detail.clone()
                },
            ),
            None => (
                "web_search".into(),
                true,
                "not configured, so not offered; to enable: [web_search] backend = \"searxng\", url = \"http://HOST:PORT\" (or backend = \"brave\" with BRAVE_API_KEY) in config.toml".into(),
            ),
        });
    }
    for c in status
        .as_ref()
        .map(|s| s.mcp_credentials.clone())
        .unwrap_or_default()
    {
        checks.push((
            "mcp".into(),
            c.ready,
            format!("{} — {}", c.endpoint, c.detail),
        ));
    }
    checks.extend(sandbox_checks(status.as_ref()));
    if json {
        let v: Vec<Value> = checks
            .iter()
            .map(|(n, ok, d)| json!({"check": n, "ok": ok, "detail": d}))
            .collect();
        println!("{}", Value::Array(v));
    } else {
        for (n, ok, d) in &checks {
            println!("{} {:<10} {d}", if *ok { "✓" } else { "✗" }, n);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the host offers for sandboxing tools and the level tether uses: the running daemon's
/// probe, or (no daemon) `tetherd sandbox-probe --report` run here.
fn sandbox_checks(status: Option<&DaemonStatus>) -> Vec<(String, bool, String)> {
    let from_daemon = status.and_then(|s| s.sandbox.clone());
    let report = match from_daemon {
        Some(r) => r,
        None => {
            let bin = crate::transport::daemon_binary();
            let probed = std::process::Command::new(&bin)
                .args(["sandbox-probe", "--report"])
                .stdin(std::process::Stdio::null())
                .output();
            match probed
                .ok()
                .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            {
                Some(r) => r,
                None => {
                    return vec![(
                        "sandbox".into(),
                        false,
                        format!(
                            "cannot probe: `{} sandbox-probe --report` did not answer",
                            bin.display()
                        ),
                    )];
                }
            }
        }
    };
    let mut out = vec![(
        "sandbox".to_string(),
        report.level != "unavailable",
        format!("level {}: {}", report.level, report.summary),
    )];
    out.extend(
        report
            .checks
            .into_iter()
            .map(|c| (format!("  {}", c.name), c.ok, c.detail)),
    );
    out
}
