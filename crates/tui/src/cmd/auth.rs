//! `tether auth login|logout|status`: model-provider keys stored in `credentials.toml` (config
//! dir, 0600), which the daemon reads on use, so adding a key never needs a daemon restart; and
//! the check that tells you when your shell's key or base URL is not what the running daemon
//! uses (a daemon keeps the environment it was started with).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use tether_proto::credentials::{Credentials, StoredKey, key_hint};
use tether_proto::method::{DaemonStatus, NoParams, rpc};

use super::{CmdResult, usage};
use crate::client::{self, Client, ClientError};

#[derive(Subcommand, Debug)]
pub enum AuthAction {
    /// Store a provider's API key (read from the terminal without echo, or from stdin); the
    /// daemon uses it from its next model request, no restart needed.
    Login {
        /// Provider name: anthropic, openai (also used by openai-responses), or a
        /// [providers.NAME] of config.toml.
        #[arg(default_value = "anthropic")]
        provider: String,
    },
    /// Remove a stored key.
    Logout {
        /// Provider name, as for login.
        #[arg(default_value = "anthropic")]
        provider: String,
    },
    /// Which key each provider uses, where it comes from, and whether your shell disagrees.
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(action: AuthAction) -> CmdResult {
    if client::is_remote() {
        return Err(usage(
            "tether auth manages this machine's keys; for a remote daemon run it there: \
             `ssh HOST tether auth login`"
                .into(),
        ));
    }
    let file = client::paths().credentials_file();
    match action {
        AuthAction::Login { provider } => login(&file, &provider).await,
        AuthAction::Logout { provider } => logout(&file, &provider),
        AuthAction::Status { json } => status(&file, json).await,
    }
}

pub(super) fn load(file: &Path) -> Result<Credentials, ClientError> {
    match std::fs::read_to_string(file) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            usage(format!(
                "{} is not valid TOML ({}); fix it by hand or delete it and log in again",
                file.display(),
                e.message()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
        Err(e) => Err(usage(format!("cannot read {}: {e}", file.display()))),
    }
}

/// Writes the file whole (temp file, then rename), readable by this user only.
fn save(file: &Path, credentials: &Credentials) -> Result<(), ClientError> {
    let fail = |e: std::io::Error| usage(format!("cannot write {}: {e}", file.display()));
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let text = to_toml(credentials);
    let tmp = dir.join(format!(".credentials.toml.{}", std::process::id()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)))
        .and_then(|()| std::fs::rename(&tmp, file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

/// The file's text. Names are bare TOML keys and keys printable ASCII ([`valid_name`],
/// [`read_key`] check both), so quoting `"` and `\\` is all the escaping needed.
fn to_toml(credentials: &Credentials) -> String {
    let mut out = String::from(
        "# Model-provider keys stored by `tether auth login`. Keep this file private.\n",
    );
    for (name, k) in &credentials.providers {
        let key = k.api_key.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(&format!("\n[{name}]\napi_key = \"{key}\"\n"));
    }
    out
}

/// A provider name usable as a bare TOML key.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reads one line from the terminal with echo off (so the key never shows on screen or in
/// scrollback), or the whole of stdin when it is not a terminal (`… | tether auth login`).
fn read_key(provider: &str) -> Result<String, ClientError> {
    let line = super::read_hidden(&format!("API key for {provider}"))?;
    let key = line.trim().to_string();
    if key.is_empty() {
        return Err(usage("no key given: nothing stored".into()));
    }
    if !key.chars().all(|c| c.is_ascii_graphic()) || key.len() > 4096 {
        return Err(usage(
            "that does not look like an API key (it has spaces or other characters API keys \
             don't have, or is very long): nothing stored"
                .into(),
        ));
    }
    Ok(key)
}

/// The running local daemon's view, if one is running (never starts one).
async fn daemon_status() -> Option<DaemonStatus> {
    let mut c = Client::connect_existing(&client::paths()).await.ok()?;
    c.request::<rpc::DaemonStatus>(NoParams {}).await.ok()
}

async fn login(file: &Path, provider: &str) -> CmdResult {
    let provider = provider.trim();
    if !valid_name(provider) {
        return Err(usage(format!(
            "`{provider}` is not a provider name: use anthropic, openai, or a [providers.NAME] name"
        )));
    }
    let mut credentials = load(file)?;
    let key = read_key(provider)?;
    let hint = key_hint(&key);
    credentials
        .providers
        .insert(provider.to_string(), StoredKey { api_key: key });
    save(file, &credentials)?;
    println!(
        "stored the {provider} key {hint} in {} (readable by you only); tetherd uses it from its \
         next model request, no restart needed",
        file.display()
    );
    if let Some(st) = daemon_status().await
        && let Some(p) = st.providers.iter().find(|p| p.name == provider)
        && let Some(source) = p.key_source.as_deref()
        && !source.contains("tether auth login")
    {
        eprintln!(
            "note: the running tetherd (pid {}) has {source}, which takes precedence over the \
             stored key; to use the stored key, restart it from a shell without that variable: \
             `tether daemon restart`",
            st.pid
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn logout(file: &Path, provider: &str) -> CmdResult {
    let mut credentials = load(file)?;
    if credentials.providers.remove(provider).is_none() {
        eprintln!("no stored key for {provider}: nothing to remove");
        return Ok(ExitCode::from(1));
    }
    save(file, &credentials)?;
    println!(
        "removed the stored {provider} key; tetherd stops using it from its next model request"
    );
    Ok(ExitCode::SUCCESS)
}

async fn status(file: &Path, json: bool) -> CmdResult {
    let stored = load(file)?;
    let st = daemon_status().await;
    let hints = st
        .as_ref()
        .map(|s| env_mismatches(s, &|k| std::env::var(k).ok()))
        .unwrap_or_default();
    if json {
        let value = serde_json::json!({
            "credentials_file": file.display().to_string(),
            "stored": stored.providers.iter()
                .map(|(name, k)| (name.clone(), key_hint(&k.api_key)))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "daemon": st.as_ref().map(|s| &s.providers),
            "problems": hints,
        });
        println!("{value:#}");
    } else {
        println!("stored keys ({}):", file.display());
        if stored.providers.is_empty() {
            println!("  none (`tether auth login [PROVIDER]` adds one)");
        }
        for (name, k) in &stored.providers {
            println!("  {name:<18} {}", key_hint(&k.api_key));
        }
        match &st {
            None => println!("tetherd is not running; it will read the keys when it starts"),
            Some(s) => {
                println!("as the running tetherd (pid {}) sees them:", s.pid);
                for p in &s.providers {
                    let key = match (&p.key_hint, &p.key_source) {
                        (Some(h), Some(src)) => format!("key {h} from {src}"),
                        _ => "no key".into(),
                    };
                    let state = if p.ready { "ready" } else { "NOT READY" };
                    println!("  {:<18} {state:<9} {key}; {}", p.name, p.endpoint);
                    if !p.ready {
                        println!("  {:<18} {}", "", p.detail);
                    }
                }
            }
        }
        for h in &hints {
            eprintln!("{h}");
        }
    }
    Ok(if hints.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What the shell running this client says about a provider, next to what the daemon uses.
struct ShellVars {
    provider: &'static str,
    key_var: &'static str,
    url_var: &'static str,
    /// The daemon's endpoint is the base URL plus this path.
    suffix: &'static str,
}

const SHELL_VARS: &[ShellVars] = &[
    ShellVars {
        provider: "anthropic",
        key_var: "ANTHROPIC_API_KEY",
        url_var: "ANTHROPIC_BASE_URL",
        suffix: "/v1/messages",
    },
    ShellVars {
        provider: "openai",
        key_var: "OPENAI_API_KEY",
        url_var: "OPENAI_BASE_URL",
        suffix: "/chat/completions",
    },
];

/// Sentences (with the fix) for every key or base URL in this shell's environment that the
/// running daemon does not use: it keeps the environment it was started with.
pub fn env_mismatches(st: &DaemonStatus, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    for v in SHELL_VARS {
        let daemon = st.providers.iter().find(|p| p.name == v.provider);
        if let Some(key) = var(v.key_var) {
            let mine = key_hint(&key);
            match daemon.and_then(|p| p.key_hint.as_deref()) {
                None => out.push(format!(
                    "your shell has {} ({mine}) but the running tetherd (pid {}) has no {} key: \
                     it was started before you set it. Fix: `tether auth login {}` (tetherd reads \
                     stored keys on every request), or `tether daemon restart` from this shell",
                    v.key_var, st.pid, v.provider, v.provider
                )),
                Some(theirs) if theirs != mine => out.push(format!(
                    "your shell's {} is {mine}, but the running tetherd (pid {}) uses {theirs} \
                     (from {}). Fix: `tether daemon restart` from this shell, or `tether auth \
                     login {}` if tetherd has no key in its own environment",
                    v.key_var,
                    st.pid,
                    daemon
                        .and_then(|p| p.key_source.as_deref())
                        .unwrap_or("elsewhere"),
                    v.provider
                )),
                Some(_) => {}
            }
        }
        if let Some(url) = var(v.url_var) {
            let want = format!("{}{}", url.trim().trim_end_matches('/'), v.suffix);
            let endpoint = daemon.map(|p| p.endpoint.as_str()).unwrap_or("");
            // A base URL given with the path part (`…/v1`) is fine when it lands on the same
            // endpoint; compare loosely on the shared prefix.
            if !endpoint.is_empty()
                && endpoint != want
                && !endpoint.starts_with(url.trim().trim_end_matches('/'))
            {
                out.push(format!(
                    "your shell has {}={url} but the running tetherd (pid {}) sends {} requests \
                     to {endpoint}. Fix: `tether daemon restart` from this shell (base URLs are \
                     read when tetherd starts)",
                    v.url_var, st.pid, v.provider
                ));
            }
        }
    }
    out
}

/// Before work that will call a model: warn (stderr) when no provider is usable (the same
/// warning as `tether doctor`), and when this shell's keys or base URLs are not what the
/// local daemon uses.
pub async fn warn_on_mismatch(c: &mut Client) {
    let Ok(st) = c.request::<rpc::DaemonStatus>(NoParams {}).await else {
        return;
    };
    if let Some(w) = super::doctor::no_provider_warning(&st.providers) {
        eprintln!("warning: {w} (`tether doctor` checks everything)");
    }
    if client::is_remote() {
        return;
    }
    for h in env_mismatches(&st, &|k| std::env::var(k).ok()) {
        eprintln!("warning: {h}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::method::ProviderStatus;

    fn status(providers: Vec<ProviderStatus>) -> DaemonStatus {
        DaemonStatus {
            pid: 42,
            providers,
            ..Default::default()
        }
    }

    fn anthropic(endpoint: &str, hint: Option<&str>) -> ProviderStatus {
        ProviderStatus {
            name: "anthropic".into(),
            endpoint: endpoint.into(),
            ready: hint.is_some(),
            detail: String::new(),
            key_source: hint.map(|_| "ANTHROPIC_API_KEY in tetherd's environment".into()),
            key_hint: hint.map(str::to_string),
        }
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const KEY: &str = "sk-ant-api03-0123456789abcdefWXYZ";

    #[test]
    fn the_file_round_trips_through_the_daemons_parser() {
        let mut c = Credentials::default();
        for (name, key) in [("anthropic", KEY), ("my-proxy", r#"we"ird\\key"#)] {
            c.providers.insert(
                name.into(),
                StoredKey {
                    api_key: key.into(),
                },
            );
        }
        let back: Credentials = toml::from_str(&to_toml(&c)).unwrap();
        assert_eq!(back, c);
        assert!(valid_name("openai-responses") && !valid_name("a.b") && !valid_name(""));
    }

    #[test]
    fn a_key_exported_after_the_daemon_started_is_reported_with_the_fix() {
        let st = status(vec![anthropic(
            "https://api.anthropic.com/v1/messages",
            None,
        )]);
        let h = env_mismatches(&st, &env(&[("ANTHROPIC_API_KEY", KEY)]));
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h[0].contains("has no anthropic key"), "{}", h[0]);
        assert!(h[0].contains("tether auth login anthropic"), "{}", h[0]);
        assert!(
            !h[0].contains("0123456789"),
            "never print the key: {}",
            h[0]
        );
    }

    #[test]
    fn the_same_key_and_endpoint_say_nothing() {
        let st = status(vec![anthropic(
            "http://127.0.0.1:5000/v1/messages",
            Some("sk-ant-…WXYZ"),
        )]);
        let vars = env(&[
            ("ANTHROPIC_API_KEY", KEY),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:5000/"),
        ]);
        assert!(env_mismatches(&st, &vars).is_empty());
        assert!(env_mismatches(&st, &env(&[])).is_empty());
    }

    #[test]
    fn a_different_key_or_base_url_is_reported() {
        let st = status(vec![anthropic(
            "https://api.anthropic.com/v1/messages",
            Some("sk-ant-…AAAA"),
        )]);
        let h = env_mismatches(
            &st,
            &env(&[
                ("ANTHROPIC_API_KEY", KEY),
                ("ANTHROPIC_BASE_URL", "http://127.0.0.1:5000"),
            ]),
        );
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h[0].contains("uses sk-ant-…AAAA"), "{}", h[0]);
        assert!(
            h[1].contains("ANTHROPIC_BASE_URL=http://127.0.0.1:5000"),
            "{}",
            h[1]
        );
        assert!(h[1].contains("tether daemon restart"), "{}", h[1]);
    }
}
