//! `tether doctor`: the daemon, its paths and config, model providers, web search, MCP
//! credentials and the host's sandboxing, one check a line. Exits 1 when a check that matters
//! fails (and names it), so scripts and CI can gate on it.

use std::process::ExitCode;

use serde_json::{Value, json};
use tether_proto::method::{DaemonStatus, NoParams, ProviderStatus, rpc};

use super::CmdResult;
use crate::client::{self, Client};

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// Whether `ok == false` makes doctor fail. Optional things (a provider you don't use
    /// while another is ready, a kernel feature the chosen sandbox level does without) are
    /// shown but do not fail it.
    pub required: bool,
    pub detail: String,
}

impl Check {
    fn required(name: &str, ok: bool, detail: String) -> Check {
        Check {
            name: name.into(),
            ok,
            required: true,
            detail,
        }
    }

    fn optional(name: &str, ok: bool, detail: String) -> Check {
        Check {
            required: false,
            ..Check::required(name, ok, detail)
        }
    }

    fn failed(&self) -> bool {
        self.required && !self.ok
    }

    /// `✓` fine, `✗` a failure, `·` not fine but optional.
    fn mark(&self) -> &'static str {
        match (self.ok, self.required) {
            (true, _) => "✓",
            (false, true) => "✗",
            (false, false) => "·",
        }
    }
}

/// The warning `doctor`, `new` and `run` print when no model provider can be called: the
/// daemon's view when one runs. None when some provider is ready.
pub fn no_provider_warning(providers: &[ProviderStatus]) -> Option<String> {
    if providers.iter().any(|p| p.ready) {
        return None;
    }
    let why = providers
        .iter()
        .map(|p| format!("{}: {}", p.name, p.detail))
        .collect::<Vec<_>>()
        .join("; ");
    Some(format!(
        "no model provider is usable, so sessions cannot call a model{}. Fix: `tether auth \
         login` (stores an Anthropic key; no restart needed), or export ANTHROPIC_API_KEY and \
         `tether daemon restart`",
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({why})")
        }
    ))
}

/// Provider checks: each is optional, but together one of them must be ready.
fn provider_checks(providers: &[ProviderStatus]) -> Vec<Check> {
    let mut out: Vec<Check> = providers
        .iter()
        .map(|p| {
            Check::optional(
                &p.name,
                p.ready,
                format!(
                    "{} — {} (as the running daemon sees it)",
                    p.endpoint, p.detail
                ),
            )
        })
        .collect();
    if let Some(w) = no_provider_warning(providers) {
        out.push(Check::required("providers", false, w));
    }
    out
}

/// Whether doctor fails, and the sentence that says which checks did.
pub fn verdict(checks: &[Check]) -> Option<String> {
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.failed())
        .map(|c| c.name.trim())
        .collect();
    match failed.len() {
        0 => None,
        1 => Some(format!("1 check failed: {}", failed[0])),
        n => Some(format!("{n} checks failed: {}", failed.join(", "))),
    }
}

pub async fn run(json: bool) -> CmdResult {
    let paths = client::paths();
    let mut checks: Vec<Check> = Vec::new();
    let mut status: Option<DaemonStatus> = None;
    match Client::connect_existing(&paths).await {
        Ok(mut c) => {
            checks.push(Check::required(
                "daemon",
                true,
                format!("running, pid {} version {}", c.daemon_pid, c.daemon_version),
            ));
            status = c.request::<rpc::DaemonStatus>(NoParams {}).await.ok();
        }
        // Not running is fine: the first command that needs it starts it.
        Err(e) => checks.push(Check::optional(
            "daemon",
            false,
            format!("{e} (commands that need it start it)"),
        )),
    }
    checks.push(Check::required(
        "socket",
        true,
        paths.socket().display().to_string(),
    ));
    checks.push(Check::required(
        "data",
        true,
        paths.data_dir.display().to_string(),
    ));
    let config = paths.config_file();
    checks.push(Check::required(
        "config",
        true,
        match std::fs::read_to_string(&config) {
            Ok(_) => config.display().to_string(),
            Err(_) => format!("{} (absent: defaults apply)", config.display()),
        },
    ));
    checks.push(Check::required(
        "logs",
        true,
        format!("{}/tetherd.*.log", paths.log_dir.display()),
    ));
    match status.as_ref() {
        Some(s) => checks.extend(provider_checks(&s.providers)),
        // No daemon to ask: judge from this shell's environment, which a daemon started from
        // here would inherit, and the keys `tether auth login` stored.
        None => checks.push(anthropic_without_daemon(&paths.credentials_file())),
    }
    if let Some(s) = status.as_ref() {
        checks.push(match &s.web_search {
            // Configured but unusable is a failure: the model is told it has the tool.
            Some(w) => Check::required(
                "web_search",
                w.ready,
                if w.ready {
                    format!("{} — offered to the model", w.endpoint)
                } else {
                    w.detail.clone()
                },
            ),
            None => Check::required(
                "web_search",
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
        checks.push(Check::required(
            "mcp",
            c.ready,
            format!("{} — {}", c.endpoint, c.detail),
        ));
    }
    checks.extend(sandbox_checks(status.as_ref()));
    let verdict = verdict(&checks);
    if json {
        let v: Vec<Value> = checks
            .iter()
            .map(|c| json!({"check": c.name, "ok": c.ok, "required": c.required, "detail": c.detail}))
            .collect();
        println!("{}", Value::Array(v));
    } else {
        for c in &checks {
            println!("{} {:<10} {}", c.mark(), c.name, c.detail);
        }
    }
    Ok(match verdict {
        None => ExitCode::SUCCESS,
        Some(v) => {
            eprintln!("tether doctor: {v}");
            ExitCode::from(1)
        }
    })
}

/// The Anthropic provider as a daemon started from this shell would see it.
fn anthropic_without_daemon(credentials_file: &std::path::Path) -> Check {
    let env_key = std::env::var("ANTHROPIC_API_KEY").is_ok_and(|k| !k.trim().is_empty());
    let stored = super::auth::load(credentials_file)
        .ok()
        .is_some_and(|c| c.key("anthropic").is_some());
    let base = std::env::var("ANTHROPIC_BASE_URL").ok();
    let endpoint = base
        .clone()
        .unwrap_or_else(|| "https://api.anthropic.com".into());
    let key = match (env_key, stored) {
        (true, _) => Some("ANTHROPIC_API_KEY set"),
        (false, true) => Some("key stored by `tether auth login`"),
        (false, false) => None,
    };
    match key {
        Some(k) => Check::required("anthropic", true, format!("{k}; endpoint {endpoint}")),
        // A base URL alone may be a local proxy or mock that takes no key.
        None if base.is_some() => {
            Check::required("anthropic", true, format!("no key; endpoint {endpoint}"))
        }
        None => Check::required(
            "anthropic",
            false,
            no_provider_warning(&[]).unwrap_or_default(),
        ),
    }
}

/// What the host offers for sandboxing tools and the level tether uses: the running daemon's
/// probe, or (no daemon) `tetherd sandbox-probe --report` run here.
fn sandbox_checks(status: Option<&DaemonStatus>) -> Vec<Check> {
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
                    return vec![Check::required(
                        "sandbox",
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
    let mut out = vec![Check::required(
        "sandbox",
        report.level != "unavailable",
        format!("level {}: {}", report.level, report.summary),
    )];
    // The kernel features behind the level: the level is what matters, so these inform.
    out.extend(
        report
            .checks
            .into_iter()
            .map(|c| Check::optional(&format!("  {}", c.name), c.ok, c.detail)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, ready: bool) -> ProviderStatus {
        ProviderStatus {
            name: name.into(),
            endpoint: format!("https://{name}.example/v1"),
            ready,
            detail: if ready { "ok".into() } else { "no key".into() },
            key_source: None,
            key_hint: None,
        }
    }

    #[test]
    fn one_ready_provider_is_enough_and_the_others_only_inform() {
        let checks = provider_checks(&[provider("anthropic", true), provider("openai", false)]);
        assert_eq!(verdict(&checks), None, "{checks:?}");
        assert_eq!(checks[1].mark(), "·");
        assert_eq!(no_provider_warning(&[provider("anthropic", true)]), None);
    }

    #[test]
    fn no_ready_provider_fails_and_says_how_to_fix_it() {
        let checks = provider_checks(&[provider("anthropic", false), provider("openai", false)]);
        let v = verdict(&checks).unwrap();
        assert_eq!(v, "1 check failed: providers");
        let warning = &checks.last().unwrap().detail;
        assert!(warning.contains("tether auth login"), "{warning}");
        assert!(warning.contains("anthropic: no key"), "{warning}");
    }

    #[test]
    fn the_verdict_names_every_required_failure_and_skips_optional_ones() {
        let checks = vec![
            Check::required("sandbox", false, "unavailable".into()),
            Check::optional("  cgroup", false, "v1".into()),
            Check::required("mcp", false, "TOKEN unset".into()),
            Check::required("logs", true, "/x".into()),
        ];
        assert_eq!(
            verdict(&checks).as_deref(),
            Some("2 checks failed: sandbox, mcp")
        );
        assert_eq!(checks[0].mark(), "✗");
    }
}
