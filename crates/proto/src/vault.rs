//! Vaults and their credentials (hosted `beta.vaults`, SDK 2.17.0): secrets a session uses
//! without ever holding them in its log. A session names vaults by `vault_ids`; the daemon
//! hands a `static_bearer` (or `mcp_oauth` access token) to the MCP server whose URL it names
//! and an `environment_variable` to the sandboxed shell.
//!
//! Secrets are write-only: request types carry them in [`Secret`], response types have no
//! field for them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A secret value in a request. Never printed: `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Secret(#[schemars(length(min = 1, max = 65536))] pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// `vault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Vault {
    /// `vlt_…`
    pub id: String,
    /// Always `vault`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub display_name: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
}

/// Body of `POST /v1/vaults` and params of `vault.create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultSpec {
    /// 1 to 255 characters.
    #[schemars(length(min = 1, max = 255), regex(pattern = crate::schema::NOT_BLANK))]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "crate::schema::Metadata")]
    pub metadata: BTreeMap<String, String>,
}

/// Body of `POST /v1/vaults/{id}`: `metadata` is a patch (`null` deletes a key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = crate::schema::NOT_BLANK))]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::MetadataPatch>")]
    pub metadata: Option<BTreeMap<String, Option<String>>>,
}

/// `{id, type: "vault_deleted"}` / `{id, type: "vault_credential_deleted"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Deleted {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
}

/// `vault_credential`: what may be shown of a credential (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Credential {
    /// `vcrd_…`
    pub id: String,
    /// Always `vault_credential`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub vault_id: String,
    pub display_name: Option<String>,
    pub auth: CredentialAuth,
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
}

/// A credential's `auth` as answered: its public half.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialAuth {
    McpOauth {
        mcp_server_url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh: Option<OauthRefresh>,
    },
    StaticBearer {
        mcp_server_url: String,
    },
    EnvironmentVariable {
        secret_name: String,
        networking: CredentialNetworking,
        injection_location: InjectionLocation,
    },
}

impl CredentialAuth {
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialAuth::McpOauth { .. } => "mcp_oauth",
            CredentialAuth::StaticBearer { .. } => "static_bearer",
            CredentialAuth::EnvironmentVariable { .. } => "environment_variable",
        }
    }

    /// The MCP server this credential authenticates to, if it is for one.
    pub fn mcp_server_url(&self) -> Option<&str> {
        match self {
            CredentialAuth::McpOauth { mcp_server_url, .. }
            | CredentialAuth::StaticBearer { mcp_server_url } => Some(mcp_server_url),
            CredentialAuth::EnvironmentVariable { .. } => None,
        }
    }
}

/// The refresh settings of an `mcp_oauth` credential, as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OauthRefresh {
    pub client_id: String,
    pub token_endpoint: String,
    pub token_endpoint_auth: TokenEndpointAuthKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Tether extension: `client_credentials` when the token comes from that grant (no user,
    /// no refresh token); absent for the hosted refresh-token grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<OauthGrantType>,
}

/// How an `mcp_oauth` credential gets its next access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OauthGrantType {
    /// RFC 6749 §6 (hosted): exchange the refresh token.
    RefreshToken,
    /// RFC 6749 §4.4 (tether extension): the client authenticates as itself.
    ClientCredentials,
}

/// `{type}` of a token endpoint's client authentication, as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenEndpointAuthKind {
    #[serde(rename = "type")]
    pub kind: TokenEndpointAuthType,
    /// `private_key_jwt`: the client assertion's `aud` (the authorization server's issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthType {
    None,
    ClientSecretBasic,
    ClientSecretPost,
    /// Tether extension: RFC 7523 §2.2 client assertion signed with the client's key.
    PrivateKeyJwt,
}

/// Which outbound hosts an `environment_variable` secret is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialNetworking {
    /// Any host the environment's policy allows.
    Unrestricted,
    /// Bare host names, IPv4 addresses or `*.suffix` (not the bare suffix); at most 16.
    Limited {
        #[schemars(length(max = 16), inner(regex(pattern = crate::schema::HOST)))]
        allowed_hosts: Vec<String>,
    },
}

/// Where a secret may be substituted in an outbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InjectionLocation {
    pub body: bool,
    pub header: bool,
}

/// `injection_location` in a request: absent keys keep (update) or default to true (create).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct InjectionLocationParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
}

/// A token endpoint's client authentication in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenEndpointAuthParams {
    None,
    ClientSecretBasic {
        client_secret: Secret,
    },
    ClientSecretPost {
        client_secret: Secret,
    },
    /// Tether extension: `private_key` is a PKCS#8 PEM key (P-256 signs ES256, RSA signs
    /// RS256); `audience` is the assertion's `aud` besides the token endpoint (the issuer).
    PrivateKeyJwt {
        private_key: Secret,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
}

/// `refresh` of an `mcp_oauth` credential at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OauthRefreshParams {
    #[schemars(length(min = 1, max = 1024))]
    pub client_id: String,
    /// Required unless `grant_type` is `client_credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    #[schemars(length(min = 1, max = 2048))]
    pub token_endpoint: String,
    pub token_endpoint_auth: TokenEndpointAuthParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Tether extension (default `refresh_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<OauthGrantType>,
}

/// A token endpoint's client secret in an update (its type is kept as stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenEndpointAuthChanges {
    ClientSecretBasic {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<Secret>,
    },
    ClientSecretPost {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<Secret>,
    },
}

/// `refresh` of an `mcp_oauth` credential in an update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OauthRefreshChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// `""` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth: Option<TokenEndpointAuthChanges>,
}

/// A credential's `auth` at creation: the public fields and the secret ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthParams {
    McpOauth {
        #[schemars(length(min = 1, max = 2048))]
        mcp_server_url: String,
        access_token: Secret,
        /// RFC 3339, in the future.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("format" = "date-time"))]
        expires_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh: Option<OauthRefreshParams>,
    },
    StaticBearer {
        #[schemars(length(min = 1, max = 2048))]
        mcp_server_url: String,
        token: Secret,
    },
    EnvironmentVariable {
        /// A shell variable name (`[A-Za-z_][A-Za-z0-9_]*`); immutable.
        #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"))]
        secret_name: String,
        secret_value: Secret,
        networking: CredentialNetworking,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        injection_location: Option<InjectionLocationParams>,
    },
}

/// A credential's `auth` in an update: its `type` must be the stored one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthChanges {
    McpOauth {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access_token: Option<Secret>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(extend("format" = "date-time"))]
        expires_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh: Option<OauthRefreshChanges>,
    },
    StaticBearer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
    },
    EnvironmentVariable {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_value: Option<Secret>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        networking: Option<CredentialNetworking>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        injection_location: Option<InjectionLocationParams>,
    },
}

impl AuthChanges {
    pub fn kind(&self) -> &'static str {
        match self {
            AuthChanges::McpOauth { .. } => "mcp_oauth",
            AuthChanges::StaticBearer { .. } => "static_bearer",
            AuthChanges::EnvironmentVariable { .. } => "environment_variable",
        }
    }
}

/// Body of `POST /v1/vaults/{id}/credentials`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    pub auth: AuthParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = crate::schema::NOT_BLANK))]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "crate::schema::Metadata")]
    pub metadata: BTreeMap<String, String>,
}

/// Body of `POST /v1/vaults/{id}/credentials/{cred_id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthChanges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = crate::schema::NOT_BLANK))]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::MetadataPatch>")]
    pub metadata: Option<BTreeMap<String, Option<String>>>,
}

// Socket params (`tether vaults`). A vault is named by its id or display name (the newest
// live vault of that name; several: an error listing them), a credential by its id.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultParams {
    pub vault: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListVaults {
    /// Include archived vaults.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    pub vault: String,
    pub credential: CredentialSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListCredentials {
    pub vault: String,
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialParams {
    pub vault: String,
    pub credential: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCredential {
    pub vault: String,
    pub credential: String,
    pub changes: CredentialChanges,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_in_a_debug_dump() {
        let p: AuthParams = serde_json::from_str(
            r#"{"type":"static_bearer","mcp_server_url":"https://x/mcp","token":"tok-123456"}"#,
        )
        .unwrap();
        assert!(!format!("{p:?}").contains("tok-123456"));
    }

    #[test]
    fn auth_shapes_match_the_hosted_ones() {
        let a = CredentialAuth::EnvironmentVariable {
            secret_name: "GH".into(),
            networking: CredentialNetworking::Limited {
                allowed_hosts: vec!["api.github.com".into()],
            },
            injection_location: InjectionLocation {
                body: false,
                header: true,
            },
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"type": "environment_variable", "secret_name": "GH",
                "networking": {"type": "limited", "allowed_hosts": ["api.github.com"]},
                "injection_location": {"body": false, "header": true}})
        );
    }
}

/// `vault_credential_validation`: the answer of `POST …/credentials/{id}/mcp_oauth_validate`,
/// a live probe of an `mcp_oauth` credential against its MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CredentialValidation {
    /// Always `vault_credential_validation`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub credential_id: String,
    pub vault_id: String,
    pub status: ValidationStatus,
    pub has_refresh_token: bool,
    pub validated_at: String,
    /// The failing MCP step; None when the probe succeeded.
    pub mcp_probe: Option<McpProbe>,
    /// The refresh tried after the server refused the token; None when none was tried.
    pub refresh: Option<RefreshAttempt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidationStatus {
    /// The MCP server accepted the token (after a refresh, if one was needed).
    Valid,
    /// The server refused it, or there is no token, and a refresh did not recover it.
    Invalid,
    /// The probe could not tell (the server or token endpoint could not be reached).
    Unknown,
}

/// The MCP step that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct McpProbe {
    /// `initialize`.
    pub method: String,
    /// None when no HTTP answer came (connection, DNS or TLS failure, timeout).
    pub http_response: Option<CapturedHttpResponse>,
}

/// An HTTP answer seen during a probe; the body scrubbed of tokens and cut to a few KB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapturedHttpResponse {
    pub status_code: u16,
    pub content_type: String,
    pub body: String,
    pub body_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RefreshAttempt {
    pub status: RefreshStatus,
    /// The token endpoint's error answer (when `failed`).
    pub http_response: Option<CapturedHttpResponse>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefreshStatus {
    Succeeded,
    Failed,
    ConnectError,
    NoRefreshToken,
}

/// Params of `credential.login`: authorize tether at the MCP server's OAuth server and keep
/// the tokens as an `mcp_oauth` credential in `vault` (id or display name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginStart {
    pub vault: String,
    pub mcp_server_url: String,
}

/// Params of `credential.client_credentials` (tether extension): get a token for the MCP
/// server with the client-credentials grant (RFC 6749 §4.4; no user) and keep it, with what
/// gets the next one, as an `mcp_oauth` credential in `vault`. The client authenticates
/// with `client_secret` (client_secret_basic or _post, as the server prefers) or
/// `private_key` (PKCS#8 PEM, private_key_jwt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsLogin {
    pub vault: String,
    pub mcp_server_url: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// The answer of `credential.login`: the URL the user opens in a browser on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginStarted {
    pub login_id: String,
    pub authorization_url: String,
    /// tetherd's loopback callback the browser comes back to.
    pub redirect_uri: String,
}

/// Params of `credential.login_wait`: waits up to `wait_secs` (default 30, at most 120).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginWait {
    pub login_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<u64>,
}

/// Where a login is: `pending` (the URL not yet opened), `done` (with the credential made) or
/// `failed` (with why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LoginStatus {
    Pending,
    Done { credential: Box<Credential> },
    Failed { message: String },
}
