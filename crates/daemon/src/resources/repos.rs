//! `github_repository` resources: cloned into the session's workspace when the session is
//! created, at a branch or a commit, through its environment's network policy (the host is
//! checked and its addresses pinned, as the sandbox proxy does).
//!
//! The token never touches the disk, an argv or the log: git gets it as an
//! `http.extraHeader` through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` in
//! its environment (readable only by this uid), so `.git/config` keeps the bare URL. Failures
//! are `session.error`s (`repository_*_error`, retrying: the session goes on without it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use tether_proto::EventBody;
use tether_proto::file::{Checkout, SessionResource};
use tether_proto::{RetryStatus, RetryStatusKind, SessionErrorInfo};

use super::attach::{Planned, repo_dir};
use crate::net::policy::{NetPolicy, Resolver};

const CLONE_TIMEOUT: Duration = Duration::from_secs(600);

/// Where `https://github.com/...` is fetched from. Test builds (the `crash-points` feature)
/// may point it at a local server with `TETHER_TEST_GITHUB_BASE`; nothing else can.
fn fetch_url(url: &str) -> String {
    #[cfg(feature = "crash-points")]
    if let Ok(base) = std::env::var("TETHER_TEST_GITHUB_BASE")
        && let Some(rest) = url.strip_prefix("https://github.com")
    {
        return format!("{}{rest}", base.trim_end_matches('/'));
    }
    url.to_string()
}

/// `(host, port)` of an http(s) URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let default = if scheme == "http" { 80 } else { 443 };
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(default), |p| p.parse().ok())?;
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default)),
    }
}

fn error(kind: &str, url: &str, message: String) -> EventBody {
    EventBody::SessionError {
        error: SessionErrorInfo {
            kind: kind.to_string(),
            message: format!("{message} (repository {url}; the session goes on without it)"),
            retry_status: RetryStatus {
                kind: RetryStatusKind::Retrying,
            },
            attempt: None,
            max_attempts: None,
            retry_in_ms: None,
            mcp_server_name: None,
        },
    }
}

/// Clones every repository of `planned` into `workspace`; the errors, as events to record.
pub async fn clone_all(
    workspace: &Path,
    policy: &NetPolicy,
    resolver: &dyn Resolver,
    planned: &[Planned],
) -> Vec<EventBody> {
    let mut errors = Vec::new();
    for p in planned {
        let SessionResource::GithubRepository {
            url,
            mount_path,
            checkout,
            ..
        } = &p.resource
        else {
            continue;
        };
        if let Err(e) = clone_one(
            workspace,
            policy,
            resolver,
            url,
            mount_path,
            checkout.as_ref(),
            p.token.as_deref(),
        )
        .await
        {
            errors.push(e);
        }
    }
    errors
}

#[allow(clippy::too_many_arguments)]
async fn clone_one(
    workspace: &Path,
    policy: &NetPolicy,
    resolver: &dyn Resolver,
    url: &str,
    mount_path: &str,
    checkout: Option<&Checkout>,
    token: Option<&str>,
) -> Result<(), EventBody> {
    let clone_err = |m: String| error("repository_clone_error", url, m);
    let rel = repo_dir(mount_path).map_err(|e| clone_err(e.message))?;
    let target = workspace.join(&rel);
    if target.exists() {
        return Err(error(
            "repository_checkout_error",
            url,
            format!("{mount_path} already exists in the workspace"),
        ));
    }
    let fetch = fetch_url(url);
    let (host, port) =
        host_port(&fetch).ok_or_else(|| clone_err(format!("`{fetch}` has no host")))?;
    let refused = |e: String| {
        clone_err(format!(
            "the environment's network policy does not let the clone reach {host}:{port}: {e}"
        ))
    };
    let addrs = policy
        .check(&host, port)
        .map_err(|e| refused(e.to_string()))?
        .resolve(resolver)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let mut config: Vec<(String, String)> = vec![(
        "http.curloptResolve".into(),
        format!(
            "{host}:{port}:{}",
            addrs
                .iter()
                .map(|a| match a.ip() {
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                    ip => ip.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        ),
    )];
    if let Some(t) = token {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{t}"));
        config.push((
            "http.extraHeader".into(),
            format!("Authorization: Basic {basic}"),
        ));
    }
    let parent = target.parent().unwrap_or(workspace).to_path_buf();
    crate::private::create_dir(&parent).map_err(|e| clone_err(e.to_string()))?;
    // Into a temporary directory first: the mount path appears only once complete.
    let tmp = workspace.join(format!(".tether-clone-{}", crate::ids::request_id()));
    let result = async {
        let mut args: Vec<String> = vec!["clone".into(), "--quiet".into(), "--no-tags".into()];
        if let Some(Checkout::Branch { name }) = checkout {
            args.extend(["--branch".into(), name.clone(), "--single-branch".into()]);
        }
        args.extend(["--".into(), fetch.clone(), tmp.display().to_string()]);
        run_git(&args, &config, None)
            .await
            .map_err(|m| classify(url, &m))?;
        if let Some(Checkout::Commit { sha }) = checkout {
            let detach = [
                "checkout".into(),
                "--quiet".into(),
                "--detach".into(),
                sha.clone(),
            ];
            run_git(&detach, &config, Some(&tmp)).await.map_err(|m| {
                error(
                    "repository_checkout_error",
                    url,
                    format!("commit {sha} could not be checked out: {m}"),
                )
            })?;
        }
        std::fs::rename(&tmp, &target).map_err(|e| clone_err(e.to_string()))
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// What git's stderr says went wrong, as the hosted error types.
fn classify(url: &str, stderr: &str) -> EventBody {
    let s = stderr.to_ascii_lowercase();
    let kind = if s.contains("401")
        || s.contains("authentication failed")
        || s.contains("could not read username")
        || s.contains("terminal prompts disabled")
    {
        "repository_authentication_error"
    } else if s.contains("403") {
        "repository_forbidden_error"
    } else if s.contains("remote branch") {
        "repository_checkout_error"
    } else if s.contains("404") || s.contains("not found") {
        "repository_not_found_error"
    } else {
        "repository_clone_error"
    };
    error(kind, url, format!("git clone failed: {stderr}"))
}

/// Runs git with `config` in its environment (never on its command line) and no prompts.
async fn run_git(
    args: &[String],
    config: &[(String, String)],
    dir: Option<&PathBuf>,
) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ASKPASS", "/bin/false")
        .env("GIT_CONFIG_COUNT", config.len().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (i, (k, v)) in config.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
            .env(format!("GIT_CONFIG_VALUE_{i}"), v);
    }
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = tokio::time::timeout(CLONE_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("git took longer than {} s", CLONE_TIMEOUT.as_secs()))?
        .map_err(|e| format!("cannot run git (is it installed?): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(4).collect();
    Err(tail.into_iter().rev().collect::<Vec<_>>().join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        assert_eq!(
            host_port("https://github.com/o/r"),
            Some(("github.com".into(), 443))
        );
        assert_eq!(
            host_port("http://127.0.0.1:8080/o/r"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(host_port("http://[::1]:9/x"), Some(("::1".into(), 9)));
    }

    #[test]
    fn git_errors_map_to_the_hosted_types() {
        let kind = |s: &str| match classify("u", s) {
            EventBody::SessionError { error } => error.kind,
            _ => unreachable!(),
        };
        assert_eq!(
            kind("fatal: Authentication failed for 'x'"),
            "repository_authentication_error"
        );
        assert_eq!(
            kind("The requested URL returned error: 403"),
            "repository_forbidden_error"
        );
        assert_eq!(
            kind("fatal: repository 'x' not found"),
            "repository_not_found_error"
        );
        assert_eq!(
            kind("fatal: Remote branch nope not found in upstream origin"),
            "repository_checkout_error"
        );
        assert_eq!(kind("fatal: early EOF"), "repository_clone_error");
    }
}
