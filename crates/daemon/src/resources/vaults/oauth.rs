//! `mcp_oauth` access tokens: read fresh from the credential row when an MCP connection is
//! made, and refreshed at the credential's `refresh.token_endpoint` (RFC 6749 §6) when the
//! token expires within a minute or the MCP server refused it. The new tokens replace the
//! sealed secrets of the row (never an event: the log holds no secret); a rotated refresh
//! token is kept, an unrotated one stays.
//!
//! Refreshes of one credential are serialised in the process, and a refresh asked for because
//! a server refused token T is skipped when the row already holds another token (another
//! session refreshed it meanwhile): with rotating refresh tokens a second exchange of the same
//! refresh token would fail and could revoke the grant.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use tether_proto::vault::{
    CapturedHttpResponse, CredentialAuth, CredentialValidation, McpProbe, OauthGrantType,
    OauthRefresh, RefreshAttempt, RefreshStatus, TokenEndpointAuthType, ValidationStatus,
};
use tether_proto::{ErrorBody, ErrorCode};

use super::db::{self, CredentialRow};
use super::seal::Sealer;
use super::{
    ACCESS_TOKEN, CLIENT_SECRET, PRIVATE_KEY, REFRESH_TOKEN, Secrets, open_secrets, seal_secrets,
};
use crate::store::Store;
use crate::store::error::StoreError;

/// A token this close to its `expires_at` is refreshed before use.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// How long a token endpoint or a validation probe may take.
const HTTP_LIMIT: Duration = Duration::from_secs(30);
/// Bytes of an error answer kept for messages and validations.
const BODY_KEEP: usize = 2048;

/// Which credential gives the token for an MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OauthRef {
    pub mcp_server_url: String,
    pub vault_id: String,
    pub credential_id: String,
}

/// An access token to send, and when it stops working (when known).
#[derive(Clone)]
pub struct AccessToken {
    pub value: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// Whether it should be refreshed before use at `now`.
    pub fn expiring(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| {
            e <= now + chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default()
        })
    }
}

/// Reads and refreshes the `mcp_oauth` tokens of a session's vaults.
#[derive(Clone)]
pub struct TokenSource {
    store: Store,
    data_dir: PathBuf,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource")
    }
}

/// One lock per credential id: its refreshes happen one at a time.
fn refresh_lock(credential_id: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    locks.entry(credential_id.to_string()).or_default().clone()
}

/// Why a refresh did not give a token.
#[derive(Debug)]
pub enum RefreshError {
    /// The credential has no refresh settings or no refresh token.
    NoRefreshToken,
    /// The token endpoint could not be reached.
    Connect(String),
    /// It answered with an error (or with no access token).
    Failed(CapturedHttpResponse),
    /// The credential could not be read or written.
    Stored(String),
}

impl RefreshError {
    pub(super) fn attempt(&self) -> RefreshAttempt {
        let (status, http_response) = match self {
            RefreshError::NoRefreshToken => (RefreshStatus::NoRefreshToken, None),
            RefreshError::Connect(_) | RefreshError::Stored(_) => {
                (RefreshStatus::ConnectError, None)
            }
            RefreshError::Failed(r) => (RefreshStatus::Failed, Some(r.clone())),
        };
        RefreshAttempt {
            status,
            http_response,
        }
    }
}

/// What the MCP client says when a credential can't give a working token.
fn refresh_message(r: &OauthRef, endpoint: Option<&str>, e: &RefreshError) -> String {
    let (vid, cid) = (&r.vault_id, &r.credential_id);
    let update = format!(
        "authorize again and update the credential (POST /v1/vaults/{vid}/credentials/{cid} with a new access_token, and refresh.refresh_token if it has one)"
    );
    match e {
        RefreshError::NoRefreshToken => format!(
            "the access token of mcp_oauth credential {cid} (vault {vid}) is expired or was refused, and the credential has no refresh token to get a new one; {update}"
        ),
        RefreshError::Connect(why) => format!(
            "the access token of mcp_oauth credential {cid} (vault {vid}) needs refreshing, but its token endpoint {} could not be reached: {why}; the next turn tries again",
            endpoint.unwrap_or("?")
        ),
        RefreshError::Failed(resp) => format!(
            "refreshing the access token of mcp_oauth credential {cid} (vault {vid}) failed: the token endpoint {} answered HTTP {}: {}; {update}",
            endpoint.unwrap_or("?"),
            resp.status_code,
            resp.body.trim()
        ),
        RefreshError::Stored(why) => {
            format!("the mcp_oauth credential {cid} (vault {vid}) can't be used: {why}")
        }
    }
}

async fn load(
    store: &Store,
    sealer: &Sealer,
    vault_id: &str,
    credential_id: &str,
) -> Result<(CredentialRow, Secrets), String> {
    let (v, c) = (vault_id.to_string(), credential_id.to_string());
    let row = store
        .read(move |conn| db::get_credential(conn, &v, &c))
        .await
        .map_err(|e| e.to_string())?;
    if row.credential.archived_at.is_some() {
        return Err(format!(
            "the credential {credential_id} was archived (its secrets are erased)"
        ));
    }
    let secrets = open_secrets(sealer, &row)?;
    Ok((row, secrets))
}

fn parse_expiry(v: Option<&String>) -> Option<DateTime<Utc>> {
    v.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn current(row: &CredentialRow, secrets: &Secrets) -> Option<AccessToken> {
    let CredentialAuth::McpOauth { expires_at, .. } = &row.credential.auth else {
        return None;
    };
    secrets.get(ACCESS_TOKEN).map(|t| AccessToken {
        value: t.clone(),
        expires_at: parse_expiry(expires_at.as_ref()),
    })
}

fn refresh_of(row: &CredentialRow) -> Option<&OauthRefresh> {
    match &row.credential.auth {
        CredentialAuth::McpOauth { refresh, .. } => refresh.as_ref(),
        _ => None,
    }
}

impl TokenSource {
    pub fn new(store: Store, data_dir: &Path) -> TokenSource {
        TokenSource {
            store,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn sealer(&self) -> Result<Sealer, String> {
        Sealer::open(&self.data_dir)
    }

    /// The token to send to `r`'s server now: the stored one, or a refreshed one when it
    /// expires within [`EXPIRY_MARGIN`] of `now` or is `refused` (the token the server just
    /// answered 401 to). The error is a message for the session (never a secret).
    pub async fn access_token(
        &self,
        r: &OauthRef,
        refused: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<AccessToken, String> {
        let lock = refresh_lock(&r.credential_id);
        let _held = lock.lock().await;
        let stored = |e: String| refresh_message(r, None, &RefreshError::Stored(e));
        let sealer = self.sealer().map_err(stored)?;
        let (row, secrets) = load(&self.store, &sealer, &r.vault_id, &r.credential_id)
            .await
            .map_err(stored)?;
        let token = current(&row, &secrets);
        let needed = match &token {
            None => true,
            Some(t) => t.expiring(now) || refused == Some(t.value.as_str()),
        };
        if !needed && let Some(t) = token {
            return Ok(t);
        }
        let endpoint = refresh_of(&row).map(|x| x.token_endpoint.clone());
        match self.refresh_locked(&sealer, row, secrets, now).await {
            Ok(t) => Ok(t),
            Err(e) => {
                tracing::warn!(credential = %r.credential_id, "mcp_oauth refresh failed");
                Err(refresh_message(r, endpoint.as_deref(), &e))
            }
        }
    }

    /// The token endpoint refused: `vault_credential.refresh_failed` to the webhook endpoints
    /// that want it (an unreachable endpoint is not a refusal: nothing is sent for it).
    async fn refresh_failed(&self, row: &CredentialRow) {
        let (id, vault) = (row.credential.id.clone(), row.credential.vault_id.clone());
        let queued = self
            .store
            .write(move |c| {
                crate::store::webhooks::enqueue_credential(
                    c,
                    "vault_credential.refresh_failed",
                    &id,
                    &vault,
                )
            })
            .await;
        match queued {
            Ok(n) if n > 0 => self.store.webhook_wake().notify_one(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(credential = %row.credential.id, "cannot queue the refresh_failed webhook: {e}")
            }
        }
    }

    /// Exchanges the row's refresh token and stores what the endpoint grants (the caller
    /// holds the credential's refresh lock).
    async fn refresh_locked(
        &self,
        sealer: &Sealer,
        row: CredentialRow,
        secrets: Secrets,
        now: DateTime<Utc>,
    ) -> Result<AccessToken, RefreshError> {
        let Some(refresh) = refresh_of(&row) else {
            return Err(RefreshError::NoRefreshToken);
        };
        let granted = if refresh.grant_type == Some(OauthGrantType::ClientCredentials) {
            client_credentials_grant(refresh, &secrets).await
        } else {
            let Some(refresh_token) = secrets.get(REFRESH_TOKEN) else {
                return Err(RefreshError::NoRefreshToken);
            };
            exchange(refresh, refresh_token, &secrets).await
        };
        let granted = match granted {
            Ok(g) => g,
            Err(e) => {
                if matches!(e, RefreshError::Failed(_)) {
                    self.refresh_failed(&row).await;
                }
                return Err(e);
            }
        };
        let expires_at = granted
            .expires_in
            .map(|s| now + chrono::Duration::seconds(s.min(10 * 365 * 86400) as i64));
        let token = AccessToken {
            value: granted.access_token.clone(),
            expires_at,
        };
        let mut secrets = secrets;
        secrets.insert(ACCESS_TOKEN.into(), granted.access_token);
        if let Some(rt) = granted.refresh_token {
            secrets.insert(REFRESH_TOKEN.into(), rt);
        }
        let id = row.credential.id.clone();
        let sealed =
            seal_secrets(sealer, &id, &secrets).map_err(|e| RefreshError::Stored(e.to_string()))?;
        let vault_id = row.credential.vault_id.clone();
        let exp = expires_at.map(|e| e.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        self.store
            .write(move |c| {
                let mut row = db::get_credential(c, &vault_id, &id)?;
                if row.credential.archived_at.is_some() {
                    return Err(StoreError::Missing(format!(
                        "the credential {id} was archived while it was refreshed"
                    )));
                }
                if let CredentialAuth::McpOauth { expires_at, .. } = &mut row.credential.auth {
                    *expires_at = exp;
                }
                row.sealed = sealed;
                row.credential.updated_at = crate::ids::now_rfc3339();
                db::save_credential(c, &row)
            })
            .await
            .map_err(|e| RefreshError::Stored(e.to_string()))?;
        tracing::info!(credential = %row.credential.id, "mcp_oauth access token refreshed");
        Ok(token)
    }
}

/// What a token endpoint granted.
pub struct Granted {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for Granted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Granted")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

pub(super) fn http_client() -> Result<reqwest::Client, String> {
    use crate::provider::http::{client_builder, error_chain, install_crypto_provider};
    install_crypto_provider();
    let builder = || {
        client_builder()
            .timeout(HTTP_LIMIT)
            // A redirect from a token endpoint is an answer, not somewhere to send a secret.
            .redirect(reqwest::redirect::Policy::none())
    };
    builder()
        .build()
        .or_else(|_| builder().tls_certs_only(std::iter::empty()).build())
        .map_err(|e| format!("cannot create an HTTP client: {}", error_chain(&e)))
}

/// Percent-encoding for `application/x-www-form-urlencoded` (also what RFC 6749 §2.3.1 asks
/// of client_secret_basic's id and secret).
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// How a client authenticates at a token endpoint. `secret` is the client secret, or for
/// `private_key_jwt` the PKCS#8 PEM key; `audience` is that assertion's `aud` besides the
/// endpoint itself. Secrets: never logged.
#[derive(Clone, Copy)]
pub struct ClientAuth<'a> {
    pub method: TokenEndpointAuthType,
    pub client_id: &'a str,
    pub secret: Option<&'a str>,
    pub audience: Option<&'a str>,
}

impl<'a> ClientAuth<'a> {
    /// The stored client authentication of a credential's `refresh` settings.
    fn of(refresh: &'a OauthRefresh, secrets: &'a Secrets) -> ClientAuth<'a> {
        let method = refresh.token_endpoint_auth.kind;
        let key = if method == TokenEndpointAuthType::PrivateKeyJwt {
            PRIVATE_KEY
        } else {
            CLIENT_SECRET
        };
        ClientAuth {
            method,
            client_id: &refresh.client_id,
            secret: secrets.get(key).map(String::as_str),
            audience: refresh.token_endpoint_auth.audience.as_deref(),
        }
    }
}

/// The client-credentials grant (RFC 6749 §4.4): a new token with no user and no refresh
/// token, with `resource` and `scope` as stored.
async fn client_credentials_grant(
    refresh: &OauthRefresh,
    secrets: &Secrets,
) -> Result<Granted, RefreshError> {
    let mut fields = vec![("grant_type", "client_credentials")];
    if let Some(r) = &refresh.resource {
        fields.push(("resource", r));
    }
    if let Some(s) = &refresh.scope {
        fields.push(("scope", s));
    }
    token_request(
        &refresh.token_endpoint,
        ClientAuth::of(refresh, secrets),
        &fields,
    )
    .await
}

/// The refresh-token grant (RFC 6749 §6) with the credential's client authentication.
async fn exchange(
    refresh: &OauthRefresh,
    refresh_token: &str,
    secrets: &Secrets,
) -> Result<Granted, RefreshError> {
    let mut fields = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    if let Some(r) = &refresh.resource {
        fields.push(("resource", r));
    }
    if let Some(s) = &refresh.scope {
        fields.push(("scope", s));
    }
    token_request(
        &refresh.token_endpoint,
        ClientAuth::of(refresh, secrets),
        &fields,
    )
    .await
}

/// A token endpoint request (RFC 6749 §3.2) with `fields` and the client authenticated as
/// `method` says; what it grants, or its error answer (scrubbed of what was sent).
pub(super) async fn token_request(
    endpoint: &str,
    client: ClientAuth<'_>,
    fields: &[(&str, &str)],
) -> Result<Granted, RefreshError> {
    let http = http_client().map_err(RefreshError::Connect)?;
    let (method, client_id) = (client.method, client.client_id);
    let secret = client.secret.unwrap_or_default();
    let assertion = if method == TokenEndpointAuthType::PrivateKeyJwt {
        let mut aud = vec![endpoint];
        aud.extend(client.audience.filter(|a| *a != endpoint));
        aud.reverse();
        Some(
            super::jwt::client_assertion(secret, client_id, &aud, Utc::now().timestamp())
                .map_err(RefreshError::Stored)?,
        )
    } else {
        None
    };
    // Built before any await: the serializer is not Send.
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        match method {
            TokenEndpointAuthType::None => {
                form.append_pair("client_id", client_id);
            }
            TokenEndpointAuthType::ClientSecretPost => {
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", secret);
            }
            TokenEndpointAuthType::PrivateKeyJwt => {
                form.append_pair("client_id", client_id);
                form.append_pair("client_assertion_type", super::jwt::ASSERTION_TYPE);
                form.append_pair("client_assertion", assertion.as_deref().unwrap_or_default());
            }
            TokenEndpointAuthType::ClientSecretBasic => {}
        }
        form.finish()
    };
    let mut req = http
        .post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    if method == TokenEndpointAuthType::ClientSecretBasic {
        let pair = format!("{}:{}", form_encode(client_id), form_encode(secret));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        req = req.header("authorization", format!("Basic {encoded}"));
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| RefreshError::Connect(crate::provider::http::error_chain(&e)))?;
    let mut scrub: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| matches!(*k, "refresh_token" | "code" | "code_verifier"))
        .map(|(_, v)| *v)
        .collect();
    if method != TokenEndpointAuthType::PrivateKeyJwt {
        scrub.extend(client.secret);
    }
    scrub.extend(assertion.as_deref());
    let (status, captured, body) = capture(resp, &scrub).await;
    let failed = || RefreshError::Failed(captured.clone());
    if !(200..300).contains(&status) {
        return Err(failed());
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| failed())?;
    let text = |k: &str| {
        v.get(k)
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    Ok(Granted {
        access_token: text("access_token").ok_or_else(failed)?,
        refresh_token: text("refresh_token"),
        // Some servers send it as a string.
        expires_in: v.get("expires_in").and_then(|e| {
            e.as_u64()
                .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
        }),
        scope: text("scope"),
    })
}

/// An answer as a validation shows it: at most [`BODY_KEEP`] bytes, with `scrub` values
/// (the secrets that were sent) replaced. Also the raw body, for parsing a success.
async fn capture(resp: reqwest::Response, scrub: &[&str]) -> (u16, CapturedHttpResponse, Vec<u8>) {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    let mut text = String::from_utf8_lossy(&body).into_owned();
    for s in scrub.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s, "[redacted]");
    }
    let truncated = text.len() > BODY_KEEP;
    if truncated {
        let mut cut = BODY_KEEP;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    (
        status,
        CapturedHttpResponse {
            status_code: status,
            content_type,
            body: text,
            body_truncated: truncated,
        },
        body,
    )
}

/// An MCP `initialize` with `token`: Ok when the server accepts it, else the answer (None:
/// no answer at all). Refused means 401/403.
async fn probe(url: &str, token: &str) -> Result<(), (bool, Option<CapturedHttpResponse>)> {
    let http = http_client().map_err(|_| (false, None))?;
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "tetherd", "version": env!("CARGO_PKG_VERSION")}}
    });
    let resp = http
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(init.to_string())
        .send()
        .await
        .map_err(|_| (false, None))?;
    let (status, captured, _) = capture(resp, &[token]).await;
    match status {
        200..=299 => Ok(()),
        401 | 403 => Err((true, Some(captured))),
        _ => Err((false, Some(captured))),
    }
}

/// `POST …/credentials/{id}/mcp_oauth_validate`: probes the server with the stored token;
/// when it is refused (or missing or expired), refreshes and probes again.
pub async fn validate(
    store: &Store,
    data_dir: &Path,
    vault_id: &str,
    credential_id: &str,
) -> Result<CredentialValidation, ErrorBody> {
    let source = TokenSource::new(store.clone(), data_dir);
    let sealer = source
        .sealer()
        .map_err(|e| ErrorBody::new(ErrorCode::Storage, e))?;
    let (v, c) = (vault_id.to_string(), credential_id.to_string());
    let row = store
        .read(move |conn| db::get_credential(conn, &v, &c))
        .await?;
    let CredentialAuth::McpOauth { mcp_server_url, .. } = &row.credential.auth else {
        return Err(ErrorBody::new(
            ErrorCode::InvalidParams,
            format!(
                "the credential {credential_id} is `{}`; only mcp_oauth credentials can be validated",
                row.credential.auth.kind()
            ),
        ));
    };
    let url = mcp_server_url.clone();
    let lock = refresh_lock(credential_id);
    let _held = lock.lock().await;
    let (row, secrets) = load(store, &sealer, vault_id, credential_id)
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::InvalidParams, e))?;
    let has_refresh_token = refresh_of(&row).is_some() && secrets.contains_key(REFRESH_TOKEN);
    let now = Utc::now();
    let mut answer = CredentialValidation {
        object_type: "vault_credential_validation".into(),
        credential_id: credential_id.to_string(),
        vault_id: vault_id.to_string(),
        status: ValidationStatus::Unknown,
        has_refresh_token,
        validated_at: crate::ids::now_rfc3339(),
        mcp_probe: None,
        refresh: None,
    };
    let token = current(&row, &secrets);
    if let Some(t) = token.as_ref().filter(|t| !t.expiring(now)) {
        match probe(&url, &t.value).await {
            Ok(()) => {
                answer.status = ValidationStatus::Valid;
                return Ok(answer);
            }
            Err((refused, http_response)) => {
                answer.mcp_probe = Some(McpProbe {
                    method: "initialize".into(),
                    http_response,
                });
                if !refused {
                    return Ok(answer);
                }
            }
        }
    }
    match source.refresh_locked(&sealer, row, secrets, now).await {
        Err(e) => {
            answer.status = match e {
                RefreshError::NoRefreshToken | RefreshError::Failed(_) => ValidationStatus::Invalid,
                _ => ValidationStatus::Unknown,
            };
            answer.refresh = Some(e.attempt());
        }
        Ok(t) => {
            answer.refresh = Some(RefreshAttempt {
                status: RefreshStatus::Succeeded,
                http_response: None,
            });
            match probe(&url, &t.value).await {
                Ok(()) => {
                    answer.status = ValidationStatus::Valid;
                    answer.mcp_probe = None;
                }
                Err((refused, http_response)) => {
                    answer.status = if refused {
                        ValidationStatus::Invalid
                    } else {
                        ValidationStatus::Unknown
                    };
                    answer.mcp_probe = Some(McpProbe {
                        method: "initialize".into(),
                        http_response,
                    });
                }
            }
        }
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_refreshed_within_a_minute_of_its_expiry() {
        let now = Utc::now();
        let t = |secs: i64| AccessToken {
            value: "t".into(),
            expires_at: Some(now + chrono::Duration::seconds(secs)),
        };
        assert!(t(-5).expiring(now));
        assert!(t(59).expiring(now));
        assert!(!t(61).expiring(now));
        let forever = AccessToken {
            value: "t".into(),
            expires_at: None,
        };
        assert!(!forever.expiring(now));
        assert!(!format!("{forever:?}").contains("\"t\""));
    }

    #[test]
    fn basic_auth_encodes_id_and_secret_as_rfc_6749_asks() {
        assert_eq!(form_encode("a b:c"), "a+b%3Ac");
    }
}
