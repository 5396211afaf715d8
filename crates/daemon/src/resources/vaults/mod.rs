//! Vaults: named sets of credentials that sessions reference by `vault_ids` (hosted
//! `beta.vaults`). A credential's public half is stored as JSON, its secrets sealed with the
//! data dir's key ([`seal`]); secrets are never answered, logged or written to an event.
//!
//! A session resolves its vaults when it is built ([`session_secrets`]): `static_bearer` and
//! `mcp_oauth` tokens go to the MCP client for the server whose URL they name,
//! `environment_variable` values to the sandboxed shell's environment. When two credentials
//! name the same server or variable, the session's first vault wins, and within a vault the
//! newest credential.

pub mod authorize;
pub mod db;
pub mod jwt;
pub mod login;
pub mod oauth;
pub mod seal;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tether_proto::vault::{
    AuthChanges, AuthParams, Credential, CredentialAuth, CredentialChanges, CredentialNetworking,
    CredentialSpec, InjectionLocation, OauthGrantType, OauthRefresh, Secret,
    TokenEndpointAuthChanges, TokenEndpointAuthKind, TokenEndpointAuthParams,
    TokenEndpointAuthType, Vault, VaultChanges, VaultSpec,
};
use tether_proto::{ErrorBody, ErrorCode};

use crate::ids;
use crate::store::Store;
use crate::store::error::StoreError;
use db::CredentialRow;
use seal::Sealer;

fn invalid(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

fn refused(msg: String) -> StoreError {
    StoreError::Refused(invalid(msg))
}

/// Where a secret field is kept in a credential's sealed map.
const TOKEN: &str = "token";
const ACCESS_TOKEN: &str = "access_token";
const REFRESH_TOKEN: &str = "refresh_token";
const CLIENT_SECRET: &str = "client_secret";
/// A `private_key_jwt` client's PKCS#8 PEM key.
const PRIVATE_KEY: &str = "private_key";
const SECRET_VALUE: &str = "secret_value";

type Secrets = BTreeMap<String, String>;

fn display_name(name: &str) -> Result<(), ErrorBody> {
    let n = name.chars().count();
    if name.trim().is_empty() || n > 255 {
        return Err(invalid(format!(
            "display_name: 1 to 255 characters, not blank (got {n})"
        )));
    }
    Ok(())
}

fn patch(
    metadata: &mut BTreeMap<String, String>,
    p: &BTreeMap<String, Option<String>>,
) -> Result<(), StoreError> {
    for (k, v) in p {
        match v {
            Some(v) => metadata.insert(k.clone(), v.clone()),
            None => metadata.remove(k),
        };
    }
    crate::resources::agents::validate_metadata(metadata).map_err(StoreError::Refused)
}

pub async fn create_vault(store: &Store, spec: VaultSpec) -> Result<Vault, ErrorBody> {
    display_name(&spec.display_name)?;
    crate::resources::agents::validate_metadata(&spec.metadata)?;
    let now = ids::now_rfc3339();
    let v = Vault {
        id: ids::vault_id(),
        object_type: "vault".into(),
        display_name: spec.display_name,
        metadata: spec.metadata,
        created_at: now.clone(),
        updated_at: now,
        archived_at: None,
    };
    let row = v.clone();
    store.write(move |c| db::insert_vault(c, &row)).await?;
    Ok(v)
}

pub async fn list_vaults(store: &Store, include_archived: bool) -> Result<Vec<Vault>, ErrorBody> {
    Ok(store
        .read(move |c| db::list_vaults(c, include_archived))
        .await?)
}

/// The vault `reference` names: an id, else the display name of live vaults (the CLI; a
/// name several live vaults share is refused with their ids).
fn resolve_in(c: &rusqlite::Connection, reference: &str) -> Result<Vault, StoreError> {
    match db::get_vault(c, reference) {
        Err(StoreError::Missing(_)) => {}
        other => return other,
    }
    let named: Vec<Vault> = db::list_vaults(c, false)?
        .into_iter()
        .filter(|v| v.display_name == reference)
        .collect();
    match named.as_slice() {
        [] => Err(db::no_vault(reference)),
        [one] => Ok(one.clone()),
        many => Err(StoreError::Refused(ErrorBody::new(
            ErrorCode::Ambiguous,
            format!(
                "{} live vaults are named `{reference}`: {}; name one by its id",
                many.len(),
                many.iter()
                    .map(|v| v.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))),
    }
}

pub async fn resolve_vault(store: &Store, reference: &str) -> Result<Vault, ErrorBody> {
    let r = reference.to_string();
    Ok(store.read(move |c| resolve_in(c, &r)).await?)
}

pub async fn get_vault(store: &Store, id: &str) -> Result<Vault, ErrorBody> {
    let id = id.to_string();
    Ok(store.read(move |c| db::get_vault(c, &id)).await?)
}

fn archived_vault(v: &Vault) -> StoreError {
    refused(format!(
        "the vault {} is archived: it can't be changed and sessions can't use it; create a new vault",
        v.id
    ))
}

pub async fn update_vault(
    store: &Store,
    id: &str,
    changes: VaultChanges,
) -> Result<Vault, ErrorBody> {
    if let Some(n) = &changes.display_name {
        display_name(n)?;
    }
    let id = id.to_string();
    Ok(store
        .write(move |c| {
            let mut v = db::get_vault(c, &id)?;
            if v.archived_at.is_some() {
                return Err(archived_vault(&v));
            }
            if let Some(n) = changes.display_name {
                v.display_name = n;
            }
            if let Some(p) = &changes.metadata {
                patch(&mut v.metadata, p)?;
            }
            v.updated_at = ids::now_rfc3339();
            db::save_vault(c, &v)?;
            Ok(v)
        })
        .await?)
}

pub async fn archive_vault(store: &Store, id: &str) -> Result<Vault, ErrorBody> {
    let id = id.to_string();
    Ok(store
        .write(move |c| {
            let mut v = db::get_vault(c, &id)?;
            if v.archived_at.is_none() {
                let now = ids::now_rfc3339();
                v.archived_at = Some(now.clone());
                v.updated_at = now;
                db::save_vault(c, &v)?;
            }
            Ok(v)
        })
        .await?)
}

pub async fn delete_vault(store: &Store, id: &str) -> Result<(), ErrorBody> {
    let id = id.to_string();
    Ok(store.write(move |c| db::delete_vault(c, &id)).await?)
}

/// An MCP server URL: absolute http(s).
fn server_url(field: &str, url: &str) -> Result<(), ErrorBody> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        _ => Err(invalid(format!(
            "{field}: expected the MCP server's http(s) URL as the agent's mcp_servers[].url spells it, got `{url}`"
        ))),
    }
}

/// Hosted rules: bare host names, IPv4 addresses or `*.suffix`; no URLs, ports or IPv6; ≤16.
fn networking(n: &CredentialNetworking) -> Result<(), ErrorBody> {
    let CredentialNetworking::Limited { allowed_hosts } = n else {
        return Ok(());
    };
    if allowed_hosts.len() > 16 {
        return Err(invalid(format!(
            "networking.allowed_hosts: at most 16 hosts, got {}",
            allowed_hosts.len()
        )));
    }
    for h in allowed_hosts {
        let name = h.strip_prefix("*.").unwrap_or(h);
        let ok = !name.is_empty()
            && name.len() <= 253
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !ok {
            return Err(invalid(format!(
                "networking.allowed_hosts: `{h}` is not a host name, IPv4 address or `*.suffix` (no scheme, port, path or IPv6)"
            )));
        }
    }
    Ok(())
}

/// A variable the sandboxed shell can take without breaking: a shell name, not one the
/// sandbox sets itself.
fn secret_name(name: &str) -> Result<(), ErrorBody> {
    let shell_name = name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shell_name {
        return Err(invalid(format!(
            "secret_name: `{name}` is not an environment variable name (letters, digits and _, not starting with a digit)"
        )));
    }
    if matches!(name, "PATH" | "HOME" | "PWD" | "SHELL" | "TMPDIR") || name.starts_with("LD_") {
        return Err(invalid(format!(
            "secret_name: `{name}` is set by the sandbox itself; pick another name"
        )));
    }
    Ok(())
}

/// An access token's expiry. One already past is taken when the credential can refresh (the
/// token is refreshed before its first use, as one about to expire is); without a refresh
/// grant such a token could never be used, so it is refused.
fn expires_at(v: &str, refreshable: bool) -> Result<(), ErrorBody> {
    let t = chrono::DateTime::parse_from_rfc3339(v)
        .map_err(|e| invalid(format!("auth.expires_at: `{v}` is not RFC 3339: {e}")))?;
    if t <= chrono::Utc::now() && !refreshable {
        return Err(invalid(format!(
            "auth.expires_at: `{v}` is in the past and the credential has no `refresh` to get a new token; give the new token's expiry, or the refresh settings"
        )));
    }
    Ok(())
}

fn secret(field: &str, s: &Secret) -> Result<String, ErrorBody> {
    if s.0.is_empty() {
        return Err(invalid(format!("{field}: must not be empty")));
    }
    Ok(s.0.clone())
}

fn endpoint_auth(
    p: &TokenEndpointAuthParams,
    secrets: &mut Secrets,
) -> Result<TokenEndpointAuthKind, ErrorBody> {
    let kind = match p {
        TokenEndpointAuthParams::None => TokenEndpointAuthType::None,
        TokenEndpointAuthParams::ClientSecretBasic { client_secret } => {
            secrets.insert(
                CLIENT_SECRET.into(),
                secret("client_secret", client_secret)?,
            );
            TokenEndpointAuthType::ClientSecretBasic
        }
        TokenEndpointAuthParams::ClientSecretPost { client_secret } => {
            secrets.insert(
                CLIENT_SECRET.into(),
                secret("client_secret", client_secret)?,
            );
            TokenEndpointAuthType::ClientSecretPost
        }
        TokenEndpointAuthParams::PrivateKeyJwt {
            private_key,
            audience,
        } => {
            let pem = secret("private_key", private_key)?;
            jwt::check_key(&pem).map_err(|e| {
                invalid(format!("auth.refresh.token_endpoint_auth.private_key: {e}"))
            })?;
            secrets.insert(PRIVATE_KEY.into(), pem);
            return Ok(TokenEndpointAuthKind {
                kind: TokenEndpointAuthType::PrivateKeyJwt,
                audience: audience.clone().filter(|a| !a.is_empty()),
            });
        }
    };
    Ok(TokenEndpointAuthKind {
        kind,
        audience: None,
    })
}

/// A new credential's public `auth` and its secrets, checked.
fn split(auth: AuthParams) -> Result<(CredentialAuth, Secrets), ErrorBody> {
    let mut secrets = Secrets::new();
    let public = match auth {
        AuthParams::StaticBearer {
            mcp_server_url,
            token,
        } => {
            server_url("auth.mcp_server_url", &mcp_server_url)?;
            secrets.insert(TOKEN.into(), secret("auth.token", &token)?);
            CredentialAuth::StaticBearer { mcp_server_url }
        }
        AuthParams::McpOauth {
            mcp_server_url,
            access_token,
            expires_at: exp,
            refresh,
        } => {
            server_url("auth.mcp_server_url", &mcp_server_url)?;
            if let Some(e) = &exp {
                expires_at(e, refresh.is_some())?;
            }
            secrets.insert(
                ACCESS_TOKEN.into(),
                secret("auth.access_token", &access_token)?,
            );
            let refresh = match refresh {
                None => None,
                Some(r) => {
                    server_url("auth.refresh.token_endpoint", &r.token_endpoint)?;
                    if r.client_id.trim().is_empty() {
                        return Err(invalid("auth.refresh.client_id: must not be blank"));
                    }
                    let client_credentials =
                        r.grant_type == Some(OauthGrantType::ClientCredentials);
                    match &r.refresh_token {
                        Some(t) => {
                            secrets.insert(
                                REFRESH_TOKEN.into(),
                                secret("auth.refresh.refresh_token", t)?,
                            );
                        }
                        None if client_credentials => {}
                        None => {
                            return Err(invalid(
                                "auth.refresh.refresh_token: required (unless grant_type is client_credentials, tether's extension for clients that authenticate as themselves)",
                            ));
                        }
                    }
                    if client_credentials && r.token_endpoint_auth == TokenEndpointAuthParams::None
                    {
                        return Err(invalid(
                            "auth.refresh.token_endpoint_auth: the client_credentials grant needs the client to authenticate (client_secret_basic, client_secret_post or private_key_jwt), not `none`",
                        ));
                    }
                    Some(OauthRefresh {
                        client_id: r.client_id,
                        token_endpoint: r.token_endpoint,
                        token_endpoint_auth: endpoint_auth(&r.token_endpoint_auth, &mut secrets)?,
                        resource: r.resource,
                        scope: r.scope.filter(|s| !s.is_empty()),
                        grant_type: r
                            .grant_type
                            .filter(|g| *g == OauthGrantType::ClientCredentials),
                    })
                }
            };
            CredentialAuth::McpOauth {
                mcp_server_url,
                expires_at: exp,
                refresh,
            }
        }
        AuthParams::EnvironmentVariable {
            secret_name: name,
            secret_value,
            networking: net,
            injection_location,
        } => {
            secret_name(&name)?;
            networking(&net)?;
            secrets.insert(
                SECRET_VALUE.into(),
                secret("auth.secret_value", &secret_value)?,
            );
            let loc = injection_location.unwrap_or_default();
            let location = InjectionLocation {
                body: loc.body.unwrap_or(true),
                header: loc.header.unwrap_or(true),
            };
            if !location.body && !location.header {
                return Err(invalid(
                    "auth.injection_location: at least one of body and header must stay true",
                ));
            }
            CredentialAuth::EnvironmentVariable {
                secret_name: name,
                networking: net,
                injection_location: location,
            }
        }
    };
    Ok((public, secrets))
}

/// Applies `changes` to a stored credential's `auth` and secrets.
fn apply_auth(
    auth: &mut CredentialAuth,
    secrets: &mut Secrets,
    changes: AuthChanges,
) -> Result<(), ErrorBody> {
    if changes.kind() != auth.kind() {
        return Err(invalid(format!(
            "auth.type: this credential is `{}` and stays so; send `type: {}` (or create a new credential for a `{}`)",
            auth.kind(),
            auth.kind(),
            changes.kind()
        )));
    }
    match (auth, changes) {
        (_, AuthChanges::StaticBearer { token: Some(t) }) => {
            secrets.insert(TOKEN.into(), secret("auth.token", &t)?);
        }
        (
            CredentialAuth::McpOauth {
                expires_at: exp,
                refresh,
                ..
            },
            AuthChanges::McpOauth {
                access_token,
                expires_at: new_exp,
                refresh: refresh_changes,
            },
        ) => {
            if let Some(e) = &new_exp {
                expires_at(e, refresh.is_some())?;
                *exp = new_exp;
            }
            if let Some(t) = access_token {
                secrets.insert(ACCESS_TOKEN.into(), secret("auth.access_token", &t)?);
            }
            if let Some(rc) = refresh_changes {
                let Some(r) = refresh else {
                    return Err(invalid(
                        "auth.refresh: this credential has no refresh settings to change; create a new credential with them",
                    ));
                };
                if let Some(t) = rc.refresh_token {
                    secrets.insert(
                        REFRESH_TOKEN.into(),
                        secret("auth.refresh.refresh_token", &t)?,
                    );
                }
                if let Some(s) = rc.scope {
                    r.scope = (!s.is_empty()).then_some(s);
                }
                match rc.token_endpoint_auth {
                    None => {}
                    Some(
                        TokenEndpointAuthChanges::ClientSecretBasic { client_secret }
                        | TokenEndpointAuthChanges::ClientSecretPost { client_secret },
                    ) => {
                        if r.token_endpoint_auth.kind == TokenEndpointAuthType::None {
                            return Err(invalid(
                                "auth.refresh.token_endpoint_auth: this credential authenticates to its token endpoint with `none`; it has no client secret to change",
                            ));
                        }
                        if r.token_endpoint_auth.kind == TokenEndpointAuthType::PrivateKeyJwt {
                            return Err(invalid(
                                "auth.refresh.token_endpoint_auth: this credential authenticates with a private key (private_key_jwt), not a client secret; create a new credential to change its key",
                            ));
                        }
                        // The stored type is kept (hosted rule); only the secret changes.
                        if let Some(s) = client_secret {
                            secrets.insert(
                                CLIENT_SECRET.into(),
                                secret("auth.refresh.token_endpoint_auth.client_secret", &s)?,
                            );
                        }
                    }
                }
            }
        }
        (
            CredentialAuth::EnvironmentVariable {
                networking: net,
                injection_location,
                ..
            },
            AuthChanges::EnvironmentVariable {
                secret_value,
                networking: new_net,
                injection_location: loc,
            },
        ) => {
            if let Some(v) = secret_value {
                secrets.insert(SECRET_VALUE.into(), secret("auth.secret_value", &v)?);
            }
            if let Some(n) = new_net {
                networking(&n)?;
                *net = n;
            }
            if let Some(l) = loc {
                let next = InjectionLocation {
                    body: l.body.unwrap_or(injection_location.body),
                    header: l.header.unwrap_or(injection_location.header),
                };
                if !next.body && !next.header {
                    return Err(invalid(
                        "auth.injection_location: at least one of body and header must stay true",
                    ));
                }
                *injection_location = next;
            }
        }
        // Kinds were compared above.
        _ => {}
    }
    Ok(())
}

fn seal_secrets(sealer: &Sealer, id: &str, secrets: &Secrets) -> Result<Vec<u8>, StoreError> {
    let plain = serde_json::to_vec(secrets).map_err(|e| StoreError::Write(e.to_string()))?;
    sealer.seal(id, &plain).map_err(StoreError::Write)
}

fn open_secrets(sealer: &Sealer, row: &CredentialRow) -> Result<Secrets, String> {
    let plain = sealer.open_sealed(&row.credential.id, &row.sealed)?;
    serde_json::from_slice(&plain)
        .map_err(|_| format!("the secrets of {} are unreadable", row.credential.id))
}

fn sealer(data_dir: &Path) -> Result<Sealer, ErrorBody> {
    Sealer::open(data_dir).map_err(|e| ErrorBody::new(ErrorCode::Storage, e))
}

pub async fn create_credential(
    store: &Store,
    data_dir: &Path,
    vault_id: &str,
    spec: CredentialSpec,
) -> Result<Credential, ErrorBody> {
    if let Some(n) = &spec.display_name {
        display_name(n)?;
    }
    crate::resources::agents::validate_metadata(&spec.metadata)?;
    let (auth, secrets) = split(spec.auth)?;
    let sealer = sealer(data_dir)?;
    let now = ids::now_rfc3339();
    let credential = Credential {
        id: ids::credential_id(),
        object_type: "vault_credential".into(),
        vault_id: vault_id.to_string(),
        display_name: spec.display_name,
        auth,
        metadata: spec.metadata,
        created_at: now.clone(),
        updated_at: now,
        archived_at: None,
    };
    let sealed = seal_secrets(&sealer, &credential.id, &secrets).map_err(ErrorBody::from)?;
    let row = CredentialRow {
        credential: credential.clone(),
        sealed,
    };
    store
        .write(move |c| {
            let v = db::get_vault(c, &row.credential.vault_id)?;
            if v.archived_at.is_some() {
                return Err(archived_vault(&v));
            }
            db::insert_credential(c, &row)
        })
        .await?;
    Ok(credential)
}

pub async fn list_credentials(
    store: &Store,
    vault_id: &str,
    include_archived: bool,
) -> Result<Vec<Credential>, ErrorBody> {
    let id = vault_id.to_string();
    let rows = store
        .read(move |c| db::list_credentials(c, &id, include_archived))
        .await?;
    Ok(rows.into_iter().map(|r| r.credential).collect())
}

pub async fn get_credential(
    store: &Store,
    vault_id: &str,
    id: &str,
) -> Result<Credential, ErrorBody> {
    let (v, id) = (vault_id.to_string(), id.to_string());
    Ok(store
        .read(move |c| db::get_credential(c, &v, &id))
        .await?
        .credential)
}

/// Replaces the whole `auth` (public half and secrets) of a live `mcp_oauth` credential with
/// what a new authorization granted (a scope step-up: possibly a new client, so not an
/// update by the hosted rules, which keep client_id). Sessions holding the credential read
/// it at their next connection.
pub async fn replace_oauth(
    store: &Store,
    data_dir: &Path,
    vault_id: &str,
    id: &str,
    auth: AuthParams,
) -> Result<Credential, ErrorBody> {
    let (public, secrets) = split(auth)?;
    let sealer = sealer(data_dir)?;
    let (v, id) = (vault_id.to_string(), id.to_string());
    Ok(store
        .write(move |c| {
            let mut row = db::get_credential(c, &v, &id)?;
            if row.credential.archived_at.is_some() {
                return Err(refused(format!(
                    "the credential {id} was archived during the login; log in again into a live vault"
                )));
            }
            row.credential.auth = public;
            row.sealed = seal_secrets(&sealer, &id, &secrets)?;
            row.credential.updated_at = ids::now_rfc3339();
            db::save_credential(c, &row)?;
            Ok(row.credential)
        })
        .await?)
}

pub async fn update_credential(
    store: &Store,
    data_dir: &Path,
    vault_id: &str,
    id: &str,
    changes: CredentialChanges,
) -> Result<Credential, ErrorBody> {
    if let Some(n) = &changes.display_name {
        display_name(n)?;
    }
    let sealer = sealer(data_dir)?;
    let (v, id) = (vault_id.to_string(), id.to_string());
    // Read, changed and written in the writer's one transaction: two updates can't lose one
    // another's secret.
    Ok(store
        .write(move |c| {
            let mut row = db::get_credential(c, &v, &id)?;
            if row.credential.archived_at.is_some() {
                return Err(refused(format!(
                    "the credential {id} is archived: it can't be changed; create a new one"
                )));
            }
            if let Some(auth) = changes.auth {
                let mut secrets = open_secrets(&sealer, &row).map_err(StoreError::Write)?;
                apply_auth(&mut row.credential.auth, &mut secrets, auth)
                    .map_err(StoreError::Refused)?;
                row.sealed = seal_secrets(&sealer, &id, &secrets)?;
            }
            if let Some(n) = changes.display_name {
                row.credential.display_name = Some(n);
            }
            if let Some(p) = &changes.metadata {
                patch(&mut row.credential.metadata, p)?;
            }
            row.credential.updated_at = ids::now_rfc3339();
            db::save_credential(c, &row)?;
            Ok(row.credential)
        })
        .await?)
}

pub async fn archive_credential(
    store: &Store,
    vault_id: &str,
    id: &str,
) -> Result<Credential, ErrorBody> {
    let (v, id) = (vault_id.to_string(), id.to_string());
    Ok(store
        .write(move |c| {
            let mut row = db::get_credential(c, &v, &id)?;
            if row.credential.archived_at.is_none() {
                let now = ids::now_rfc3339();
                row.credential.archived_at = Some(now.clone());
                row.credential.updated_at = now;
                // An archived credential is never used again: its secrets go now.
                row.sealed = Vec::new();
                db::save_credential(c, &row)?;
            }
            Ok(row.credential)
        })
        .await?)
}

pub async fn delete_credential(store: &Store, vault_id: &str, id: &str) -> Result<(), ErrorBody> {
    let (v, id) = (vault_id.to_string(), id.to_string());
    Ok(store
        .write(move |c| db::delete_credential(c, &v, &id))
        .await?)
}

/// A new session's `vault_ids` as ids: each names (id, or display name) a live vault.
pub async fn session_vaults(store: &Store, refs: &[String]) -> Result<Vec<String>, ErrorBody> {
    if refs.len() > 16 {
        return Err(invalid(format!(
            "vault_ids: at most 16 vaults per session, got {}",
            refs.len()
        )));
    }
    let refs = refs.to_vec();
    Ok(store
        .read(move |c| {
            let mut ids = Vec::new();
            for r in &refs {
                let v = resolve_in(c, r)?;
                if v.archived_at.is_some() {
                    return Err(refused(format!(
                        "vault_ids: the vault {} is archived; sessions can't use it",
                        v.id
                    )));
                }
                if !ids.contains(&v.id) {
                    ids.push(v.id);
                }
            }
            Ok(ids)
        })
        .await?)
}

/// The secrets a session uses, resolved from its vaults. Never printed.
#[derive(Clone, Default)]
pub struct SessionSecrets {
    /// The vaults these come from, in the session's order (a login the session starts goes
    /// into the first).
    pub vault_ids: Vec<String>,
    /// MCP server URL → `static_bearer` token.
    pub bearers: Vec<(String, String)>,
    /// MCP servers whose token an `mcp_oauth` credential gives (read fresh, and refreshed,
    /// through `tokens` at each connection).
    pub oauth: Vec<oauth::OauthRef>,
    /// Reads and refreshes the `oauth` credentials; None when there are none.
    pub tokens: Option<oauth::TokenSource>,
    /// Variables of the sandboxed shell.
    pub env: Vec<(String, String)>,
}

/// A session's vault credentials as they stand: replaced whole when a session update changes
/// its `vault_ids`. Whoever connects (MCP) or runs a command next reads the new set; a
/// connection or command already under way keeps what it started with. Shared by a session
/// and its threads.
pub struct LiveSecrets {
    current: std::sync::RwLock<Arc<SessionSecrets>>,
    /// The shell variables of `current`, as the session's shells read them.
    pub env: Arc<crate::tools::bash::VaultEnv>,
}

impl LiveSecrets {
    pub fn new(secrets: SessionSecrets) -> Self {
        Self {
            env: Arc::new(crate::tools::bash::VaultEnv::new(secrets.env.clone())),
            current: std::sync::RwLock::new(Arc::new(secrets)),
        }
    }

    pub fn get(&self) -> Arc<SessionSecrets> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, secrets: SessionSecrets) {
        self.env.set(secrets.env.clone());
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(secrets);
    }

    /// Reads the MCP credentials of the same vaults again (one made since, by a login the
    /// session asked for or `tether vaults login`, is then used at the next connection).
    /// The shell's variables stay as they were. Left as it is when the session's vaults
    /// changed meanwhile (that change brought its own credentials).
    pub async fn reload_mcp(&self, store: &Store, data_dir: &Path) -> Result<(), String> {
        let before = self.get();
        let (store, data_dir, ids) = (
            store.clone(),
            data_dir.to_path_buf(),
            before.vault_ids.clone(),
        );
        let fresh = tokio::task::spawn_blocking(move || session_secrets(&store, &data_dir, &ids))
            .await
            .map_err(|e| e.to_string())??;
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.vault_ids == before.vault_ids {
            *current = Arc::new(SessionSecrets {
                env: current.env.clone(),
                ..fresh
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for SessionSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSecrets")
            .field("vault_ids", &self.vault_ids)
            .field(
                "bearers",
                &self.bearers.iter().map(|b| &b.0).collect::<Vec<_>>(),
            )
            .field("oauth", &self.oauth)
            .field("env", &self.env.iter().map(|e| &e.0).collect::<Vec<_>>())
            .finish()
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

/// How a session authenticates to an MCP server from its vaults.
#[derive(Debug, Clone, Copy)]
pub enum McpAuth<'a> {
    Bearer(&'a str),
    Oauth(&'a oauth::OauthRef, &'a oauth::TokenSource),
}

impl SessionSecrets {
    /// The vault credential for the MCP server at `url`, if any.
    pub fn mcp_auth(&self, url: &str) -> Option<McpAuth<'_>> {
        if let Some((_, t)) = self.bearers.iter().find(|(u, _)| same_url(u, url)) {
            return Some(McpAuth::Bearer(t));
        }
        let r = self
            .oauth
            .iter()
            .find(|r| same_url(&r.mcp_server_url, url))?;
        self.tokens.as_ref().map(|t| McpAuth::Oauth(r, t))
    }
}

/// Resolves `vault_ids` (live vaults, live credentials; blocking: a short indexed read). A
/// credential that doesn't open is left out with a warning naming it (never its secret).
pub fn session_secrets(
    store: &Store,
    data_dir: &Path,
    vault_ids: &[String],
) -> Result<SessionSecrets, String> {
    let mut out = SessionSecrets {
        vault_ids: vault_ids.to_vec(),
        ..SessionSecrets::default()
    };
    if vault_ids.is_empty() {
        return Ok(out);
    }
    let ids = vault_ids.to_vec();
    let rows = store
        .read_blocking(move |c| {
            let mut all = Vec::new();
            for id in &ids {
                match db::get_vault(c, id) {
                    Ok(v) if v.archived_at.is_none() => {
                        let mut rows = db::list_credentials(c, id, false)?;
                        // Newest first within a vault.
                        rows.reverse();
                        all.extend(rows);
                    }
                    Ok(_) | Err(StoreError::Missing(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(all)
        })
        .map_err(|e| e.to_string())?;
    let sealer = Sealer::open(data_dir)?;
    for row in rows {
        let secrets = match open_secrets(&sealer, &row) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(credential = %row.credential.id, error = %e, "vault credential left out");
                continue;
            }
        };
        match &row.credential.auth {
            CredentialAuth::StaticBearer { mcp_server_url } => {
                if out.mcp_auth(mcp_server_url).is_none()
                    && let Some(t) = secrets.get(TOKEN)
                {
                    out.bearers.push((mcp_server_url.clone(), t.clone()));
                }
            }
            CredentialAuth::McpOauth { mcp_server_url, .. } => {
                // The token itself is read at each connection: a refresh changes it.
                if out.mcp_auth(mcp_server_url).is_none() {
                    out.tokens
                        .get_or_insert_with(|| oauth::TokenSource::new(store.clone(), data_dir));
                    out.oauth.push(oauth::OauthRef {
                        mcp_server_url: mcp_server_url.clone(),
                        vault_id: row.credential.vault_id.clone(),
                        credential_id: row.credential.id.clone(),
                    });
                }
            }
            CredentialAuth::EnvironmentVariable { secret_name, .. } => {
                if !out.env.iter().any(|(n, _)| n == secret_name)
                    && let Some(v) = secrets.get(SECRET_VALUE)
                {
                    out.env.push((secret_name.clone(), v.clone()));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: &str) -> AuthParams {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn creation_checks_the_fields_the_schema_cannot() {
        let bad = [
            r#"{"type":"static_bearer","mcp_server_url":"ftp://x","token":"t"}"#,
            r#"{"type":"environment_variable","secret_name":"1X","secret_value":"v","networking":{"type":"unrestricted"}}"#,
            r#"{"type":"environment_variable","secret_name":"PATH","secret_value":"v","networking":{"type":"unrestricted"}}"#,
            r#"{"type":"environment_variable","secret_name":"X","secret_value":"v","networking":{"type":"limited","allowed_hosts":["https://a.com"]}}"#,
            r#"{"type":"environment_variable","secret_name":"X","secret_value":"v","networking":{"type":"limited","allowed_hosts":["a.com:443"]}}"#,
            r#"{"type":"environment_variable","secret_name":"X","secret_value":"v","networking":{"type":"unrestricted"},"injection_location":{"body":false,"header":false}}"#,
            r#"{"type":"mcp_oauth","mcp_server_url":"https://x/mcp","access_token":"a","expires_at":"2001-01-01T00:00:00Z"}"#,
        ];
        for b in bad {
            assert!(split(params(b)).is_err(), "{b}");
        }
        let (auth, secrets) = split(params(
            r#"{"type":"environment_variable","secret_name":"GH_TOKEN","secret_value":"v1","networking":{"type":"limited","allowed_hosts":["*.github.com","10.0.0.1"]}}"#,
        ))
        .unwrap();
        assert_eq!(secrets[SECRET_VALUE], "v1");
        assert!(!serde_json::to_string(&auth).unwrap().contains("v1"));
    }

    #[test]
    fn a_past_expiry_is_taken_only_from_a_credential_that_can_refresh() {
        let oauth = |refresh: &str| {
            params(&format!(
                r#"{{"type":"mcp_oauth","mcp_server_url":"https://x/mcp","access_token":"a","expires_at":"2019-12-27T18:11:19.117Z"{refresh}}}"#
            ))
        };
        let err = split(oauth("")).unwrap_err();
        assert!(err.message.contains("no `refresh`"), "{}", err.message);
        let refresh = r#","refresh":{"client_id":"c","refresh_token":"r","token_endpoint":"https://x/token","token_endpoint_auth":{"type":"none"}}"#;
        let (mut auth, mut secrets) = split(oauth(refresh)).unwrap();
        // And on update: an expired token's expiry, for the refresh to replace.
        let ch: AuthChanges = serde_json::from_str(
            r#"{"type":"mcp_oauth","access_token":"b","expires_at":"2019-12-27T18:11:19.117Z"}"#,
        )
        .unwrap();
        apply_auth(&mut auth, &mut secrets, ch).unwrap();
        assert_eq!(secrets[ACCESS_TOKEN], "b");
    }

    #[test]
    fn an_update_keeps_the_type_and_replaces_only_what_it_names() {
        let (mut auth, mut secrets) = split(params(
            r#"{"type":"environment_variable","secret_name":"K","secret_value":"old","networking":{"type":"unrestricted"},"injection_location":{"body":false}}"#,
        ))
        .unwrap();
        let wrong: AuthChanges =
            serde_json::from_str(r#"{"type":"static_bearer","token":"x"}"#).unwrap();
        assert!(apply_auth(&mut auth, &mut secrets, wrong).is_err());
        let ch: AuthChanges = serde_json::from_str(
            r#"{"type":"environment_variable","secret_value":"new","injection_location":{"header":false}}"#,
        )
        .unwrap();
        // body false + header false would leave nowhere to inject.
        assert!(apply_auth(&mut auth.clone(), &mut secrets.clone(), ch).is_err());
        let ch: AuthChanges =
            serde_json::from_str(r#"{"type":"environment_variable","secret_value":"new"}"#)
                .unwrap();
        apply_auth(&mut auth, &mut secrets, ch).unwrap();
        assert_eq!(secrets[SECRET_VALUE], "new");
    }

    /// A credential made after the session resolved its vaults (the login it asked for)
    /// reaches it through `reload_mcp`; the shell keeps the variables it had.
    #[tokio::test]
    async fn a_reload_brings_an_mcp_credential_made_since_and_keeps_the_shell_variables() {
        let (_tmp, store, paths) = crate::store::in_temp_home();
        let data_dir = paths.data_dir.clone();
        let vault = create_vault(
            &store,
            VaultSpec {
                display_name: "v".into(),
                metadata: Default::default(),
            },
        )
        .await
        .unwrap();
        let spec = |json: &str| CredentialSpec {
            auth: params(json),
            display_name: None,
            metadata: Default::default(),
        };
        create_credential(
            &store,
            &data_dir,
            &vault.id,
            spec(
                r#"{"type":"environment_variable","secret_name":"K","secret_value":"one","networking":{"type":"unrestricted"}}"#,
            ),
        )
        .await
        .unwrap();
        let ids = vec![vault.id.clone()];
        let (s, d, i) = (store.clone(), data_dir.clone(), ids.clone());
        let first = tokio::task::spawn_blocking(move || session_secrets(&s, &d, &i))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.vault_ids, ids);
        let live = LiveSecrets::new(first);
        let url = "https://mcp.example.com/mcp";
        assert!(live.get().mcp_auth(url).is_none());

        create_credential(
            &store,
            &data_dir,
            &vault.id,
            spec(&format!(
                r#"{{"type":"mcp_oauth","mcp_server_url":"{url}","access_token":"a"}}"#
            )),
        )
        .await
        .unwrap();
        create_credential(
            &store,
            &data_dir,
            &vault.id,
            spec(
                r#"{"type":"environment_variable","secret_name":"L","secret_value":"two","networking":{"type":"unrestricted"}}"#,
            ),
        )
        .await
        .unwrap();
        live.reload_mcp(&store, &data_dir).await.unwrap();
        assert!(matches!(
            live.get().mcp_auth(url),
            Some(McpAuth::Oauth(r, _)) if r.vault_id == vault.id
        ));
        assert_eq!(live.get().env, vec![("K".to_string(), "one".to_string())]);
        assert_eq!(live.get().vault_ids, ids);
    }
}
