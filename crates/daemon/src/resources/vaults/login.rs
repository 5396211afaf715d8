//! `credential.login` / `tether vaults login`: the MCP authorization flow run by tetherd for a
//! user at this machine. tetherd discovers and registers ([`super::authorize::prepare`]),
//! listens once on a loopback port for the browser's redirect, exchanges the code and stores
//! the tokens as an `mcp_oauth` credential in the vault (sealed, refreshing itself).
//!
//! Logins live in memory only: one that a restart interrupts is simply started again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tether_proto::vault::{
    ClientCredentialsLogin, Credential, CredentialSpec, LoginStarted, LoginStatus,
};
use tether_proto::{ErrorBody, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::authorize;
use crate::store::Store;

/// How long tetherd waits for the browser to come back.
const LOGIN_LIMIT: Duration = Duration::from_secs(600);

type Logins = HashMap<String, watch::Receiver<LoginStatus>>;

static LOGINS: LazyLock<Mutex<Logins>> = LazyLock::new(Default::default);

fn logins() -> std::sync::MutexGuard<'static, Logins> {
    LOGINS.lock().unwrap_or_else(|p| p.into_inner())
}

fn bad(msg: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

/// Where a login's tokens go: a new credential in a vault, or (a step-up) an existing
/// `mcp_oauth` credential replaced in place.
#[derive(Debug, Clone)]
pub enum Target {
    NewIn {
        vault_id: String,
    },
    Replace {
        vault_id: String,
        credential_id: String,
    },
}

/// Starts a login for the MCP server at `url` into the (live, resolved) vault `vault_id`.
pub async fn start(
    store: &Store,
    data_dir: &Path,
    vault_id: &str,
    url: &str,
    client_metadata_url: Option<&str>,
) -> Result<LoginStarted, ErrorBody> {
    start_with_challenge(store, data_dir, vault_id, url, client_metadata_url, None)
        .await
        .map(|(started, _)| started)
}

/// [`start`], also answering the server's challenge to a request without a token (its
/// `scope`, if it names one, is what the login asks).
async fn start_with_challenge(
    store: &Store,
    data_dir: &Path,
    vault_id: &str,
    url: &str,
    client_metadata_url: Option<&str>,
    reach: Option<&authorize::Reach>,
) -> Result<(LoginStarted, authorize::Challenge), ErrorBody> {
    let vault = super::get_vault(store, vault_id).await?;
    if vault.archived_at.is_some() {
        return Err(bad(format!(
            "the vault {vault_id} is archived; log in into a live vault"
        )));
    }
    let challenge = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            authorize::fetch_challenge(u.as_str(), None)
                .await
                .unwrap_or_default()
        }
        _ => {
            return Err(bad(format!(
                "mcp_server_url: `{url}` is not an http(s) URL"
            )));
        }
    };
    let target = Target::NewIn {
        vault_id: vault_id.to_string(),
    };
    let started = begin(
        store,
        data_dir,
        url,
        &challenge,
        client_metadata_url,
        target,
        reach,
    )
    .await?;
    Ok((started, challenge))
}

/// A login a session started for an MCP server it has no credential for.
#[derive(Debug, Clone)]
pub struct SessionLogin {
    pub started: LoginStarted,
    /// The scope the server's challenge named, if any.
    pub scope: Option<String>,
    /// False when it is one already pending, answered again.
    pub new: bool,
}

/// Logins sessions started: (vault id, server URL) → the login and its challenge.
type SessionLogins = HashMap<(String, String), (LoginStarted, authorize::Challenge)>;

/// Held across the start of a login, so two sessions sharing a vault that ask at once
/// start one login between them.
static SESSION_LOGINS: LazyLock<tokio::sync::Mutex<SessionLogins>> =
    LazyLock::new(Default::default);

/// A login into the vault `vault_id` for the MCP server at `url`, started by a session whose
/// connection it refused as unauthorized (the session has no credential for it). Asked again
/// while that login is pending (the next turn, another session on the same vault), the same
/// login is answered rather than a second one started.
pub async fn for_session(
    store: &Store,
    data_dir: &Path,
    vault_id: &str,
    url: &str,
    client_metadata_url: Option<&str>,
) -> Result<SessionLogin, ErrorBody> {
    let key = (
        vault_id.to_string(),
        url.trim().trim_end_matches('/').to_string(),
    );
    let mut asked = SESSION_LOGINS.lock().await;
    if let Some((started, challenge)) = asked.get(&key)
        && status(&started.login_id) == Some(LoginStatus::Pending)
    {
        return Ok(SessionLogin {
            started: started.clone(),
            scope: challenge.scope.clone(),
            new: false,
        });
    }
    // Nobody asked for this login: its requests stay off tetherd's own network.
    let reach = authorize::Reach::for_server(url);
    let (started, challenge) = start_with_challenge(
        store,
        data_dir,
        vault_id,
        url,
        client_metadata_url,
        Some(&reach),
    )
    .await?;
    asked.insert(key, (started.clone(), challenge.clone()));
    Ok(SessionLogin {
        started,
        scope: challenge.scope,
        new: true,
    })
}

/// Where the login `login_id` stands now; None for one this tetherd never started.
pub fn status(login_id: &str) -> Option<LoginStatus> {
    logins().get(login_id).map(|rx| rx.borrow().clone())
}

/// Step-ups in progress: credential id → the login the user was shown (asked again while
/// it is pending, the same URL is answered rather than a second login).
static STEP_UPS: LazyLock<Mutex<HashMap<String, LoginStarted>>> = LazyLock::new(Default::default);

/// A scope step-up for the `mcp_oauth` credential `credential_id` (vault `vault_id`) of the
/// MCP server at `url`, which answered `challenge` (403 insufficient_scope): a login for the
/// scope it asks, whose tokens replace the credential's. A pending one is answered again.
pub async fn step_up(
    store: &Store,
    data_dir: &Path,
    vault_id: &str,
    credential_id: &str,
    url: &str,
    challenge: &authorize::Challenge,
    client_metadata_url: Option<&str>,
) -> Result<LoginStarted, ErrorBody> {
    let pending = STEP_UPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(credential_id)
        .cloned()
        .filter(|l| {
            logins()
                .get(&l.login_id)
                .is_some_and(|rx| *rx.borrow() == LoginStatus::Pending)
        });
    if let Some(l) = pending {
        return Ok(l);
    }
    let target = Target::Replace {
        vault_id: vault_id.to_string(),
        credential_id: credential_id.to_string(),
    };
    let started = begin(
        store,
        data_dir,
        url,
        challenge,
        client_metadata_url,
        target,
        None,
    )
    .await?;
    STEP_UPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(credential_id.to_string(), started.clone());
    Ok(started)
}

/// Discovers, registers and listens for the browser's redirect; the tokens go to `target`.
/// `reach`: where a login nobody asked for may send its requests.
async fn begin(
    store: &Store,
    data_dir: &Path,
    url: &str,
    challenge: &authorize::Challenge,
    client_metadata_url: Option<&str>,
    target: Target,
    reach: Option<&authorize::Reach>,
) -> Result<LoginStarted, ErrorBody> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| {
            bad(format!(
                "cannot listen on a loopback port for the login's redirect: {e}"
            ))
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| bad(e.to_string()))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let plan = authorize::prepare(
        url,
        challenge,
        &redirect_uri,
        "tether",
        client_metadata_url,
        reach,
    )
    .await
    .map_err(|e| bad(format!("cannot start the OAuth login for {url}: {e}")))?;
    let login_id = format!(
        "login_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let (tx, rx) = watch::channel(LoginStatus::Pending);
    logins().insert(login_id.clone(), rx);
    let authorization_url = plan.authorization_url();
    tokio::spawn(complete(
        listener,
        plan,
        store.clone(),
        data_dir.to_path_buf(),
        target,
        tx,
    ));
    tracing::info!(%login_id, server = %url, "MCP OAuth login started");
    Ok(LoginStarted {
        login_id,
        authorization_url,
        redirect_uri,
    })
}

/// `credential.client_credentials`: the first token now (so a wrong secret or key is said at
/// once, not in the middle of a session), kept with what gets the next one.
pub async fn client_credentials(
    store: &Store,
    data_dir: &Path,
    vault_id: &str,
    p: ClientCredentialsLogin,
) -> Result<Credential, ErrorBody> {
    let url = p.mcp_server_url.as_str();
    reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| bad(format!("mcp_server_url: `{url}` is not an http(s) URL")))?;
    if p.client_id.trim().is_empty() {
        return Err(bad("client_id: must not be blank".into()));
    }
    let secret = match (p.client_secret, p.private_key) {
        (Some(s), None) => authorize::ClientSecret::Secret(s.0),
        (None, Some(k)) => authorize::ClientSecret::PrivateKey(k.0),
        _ => {
            return Err(bad(
                "give exactly one of client_secret (client_secret_basic/post) and private_key (a PKCS#8 PEM key, private_key_jwt)".into(),
            ));
        }
    };
    let vault = super::get_vault(store, vault_id).await?;
    if vault.archived_at.is_some() {
        return Err(bad(format!(
            "the vault {vault_id} is archived; add credentials to a live vault"
        )));
    }
    let challenge = authorize::fetch_challenge(url, None)
        .await
        .unwrap_or_default();
    let auth =
        authorize::client_credentials(url, &challenge, &p.client_id, &secret, p.scope.as_deref())
            .await
            .map_err(|e| {
                bad(format!(
                    "cannot get a token for {url} with the client credentials of `{}`: {e}",
                    p.client_id
                ))
            })?;
    let spec = CredentialSpec {
        auth,
        display_name: Some(
            p.display_name
                .unwrap_or_else(|| format!("client credentials of {} for {url}", p.client_id)),
        ),
        metadata: Default::default(),
    };
    let credential = super::create_credential(store, data_dir, vault_id, spec).await?;
    tracing::info!(credential = %credential.id, server = %url, "MCP client-credentials token stored");
    Ok(credential)
}

/// Waits for the browser's redirect, finishes the login and says so to the browser.
async fn complete(
    listener: tokio::net::TcpListener,
    plan: authorize::Plan,
    store: Store,
    data_dir: PathBuf,
    target: Target,
    tx: watch::Sender<LoginStatus>,
) {
    let outcome = tokio::time::timeout(LOGIN_LIMIT, async {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let Some(target_path) = request_target(&mut sock).await else {
                continue;
            };
            // Browsers also ask for /favicon.ico and the like.
            if !target_path.starts_with("/callback") {
                let _ = sock
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                continue;
            }
            let status = finish(&plan, &target_path, &store, &data_dir, &target).await;
            // Said before the browser's page: whoever the user tells "done" next (a
            // session's next turn) finds the login done.
            let _ = tx.send(status.clone());
            let page = match &status {
                LoginStatus::Done { .. } => {
                    "tether is authorized; the credential is in your vault. You can close this tab.".to_string()
                }
                LoginStatus::Failed { message } => format!("tether's login failed: {message}"),
                LoginStatus::Pending => String::new(),
            };
            let _ = sock
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                        page.len()
                    )
                    .as_bytes(),
                )
                .await;
            return;
        }
    })
    .await;
    if outcome.is_err() {
        let _ = tx.send(LoginStatus::Failed {
            message: format!(
                "nobody opened the authorization URL within {} minutes; start the login again",
                LOGIN_LIMIT.as_secs() / 60
            ),
        });
    }
}

async fn finish(
    plan: &authorize::Plan,
    target: &str,
    store: &Store,
    data_dir: &Path,
    to: &Target,
) -> LoginStatus {
    let granted = match authorize::finish(plan, target).await {
        Ok(g) => g,
        Err(message) => return LoginStatus::Failed { message },
    };
    let stored = match to {
        Target::NewIn { vault_id } => {
            let spec = CredentialSpec {
                auth: plan.credential(&granted),
                display_name: Some(format!("oauth login for {}", plan.mcp_server_url)),
                metadata: Default::default(),
            };
            super::create_credential(store, data_dir, vault_id, spec).await
        }
        Target::Replace {
            vault_id,
            credential_id,
        } => {
            super::replace_oauth(
                store,
                data_dir,
                vault_id,
                credential_id,
                plan.credential(&granted),
            )
            .await
        }
    };
    match stored {
        Ok(credential) => {
            tracing::info!(credential = %credential.id, "MCP OAuth login stored");
            LoginStatus::Done {
                credential: Box::new(credential),
            }
        }
        Err(e) => LoginStatus::Failed {
            message: format!(
                "the tokens were granted but could not be stored: {}",
                e.message
            ),
        },
    }
}

/// The request target of an HTTP/1 request (its first line), reading at most 8 KiB.
async fn request_target(sock: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.lines().next()?.split(' ');
    (parts.next()? == "GET").then_some(())?;
    parts.next().map(str::to_string)
}

/// Waits up to `limit` for the login to end.
pub async fn wait(login_id: &str, limit: Duration) -> Result<LoginStatus, ErrorBody> {
    let mut rx = logins().get(login_id).cloned().ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::NotFound,
            format!(
                "no login `{login_id}` (logins are forgotten when tetherd restarts); start it again"
            ),
        )
    })?;
    let _ = tokio::time::timeout(limit, rx.wait_for(|s| *s != LoginStatus::Pending)).await;
    let status = rx.borrow().clone();
    Ok(status)
}
