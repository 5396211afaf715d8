//! The MCP authorization flow (spec 2025-06-18 / 2025-11-25) for a server that answers 401
//! and has no credential yet: protected-resource metadata (RFC 9728: the challenge's
//! `resource_metadata`, else the well-known URLs), authorization-server metadata (RFC 8414 /
//! OpenID discovery, falling back to the 2025-03-26 `/authorize` `/token` `/register`
//! endpoints at the server's root), dynamic client registration (RFC 7591), and the
//! authorization-code grant with PKCE S256 and the `resource` indicator (RFC 8707).
//!
//! [`prepare`] gives a [`Plan`] whose [`Plan::authorization_url`] the user opens; the
//! authorization server sends their browser back to the plan's loopback `redirect_uri`, and
//! [`finish`] checks that callback's `state` and exchanges its code. The granted tokens become
//! an `mcp_oauth` credential ([`Plan::credential`]) that refreshes as [`super::oauth`] does.

use base64::Engine;
use ring::rand::SecureRandom;
use serde_json::Value;
use tether_proto::vault::{
    AuthParams, OauthGrantType, OauthRefreshParams, Secret, TokenEndpointAuthParams,
    TokenEndpointAuthType,
};

use super::oauth::{ClientAuth, Granted, RefreshError, http_client, token_request};

/// What a 401/403 `WWW-Authenticate: Bearer …` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    pub resource_metadata: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

/// Parses the Bearer challenge's auth-params (quoted or token values).
pub fn parse_challenge(header: &str) -> Challenge {
    let mut out = Challenge::default();
    let Some(at) = header.to_ascii_lowercase().find("bearer") else {
        return out;
    };
    let mut rest = &header[at + "bearer".len()..];
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            let v = quoted[..end].to_string();
            rest = quoted.get(end + 1..).unwrap_or_default();
            v
        } else {
            let end = rest.find([',', ' ']).unwrap_or(rest.len());
            let v = rest[..end].to_string();
            rest = &rest[end..];
            v
        };
        match key.as_str() {
            "resource_metadata" => out.resource_metadata = Some(value),
            "scope" => out.scope = Some(value),
            "error" => out.error = Some(value),
            _ => {}
        }
    }
    out
}

/// The challenge inside an rmcp error's text (`authorization required: <header>` /
/// `insufficient scope: <header>`), when it carries one.
pub fn challenge_in(error_text: &str) -> Option<Challenge> {
    let at = error_text
        .find("Bearer")
        .or_else(|| error_text.find("bearer"))?;
    Some(parse_challenge(&error_text[at..]))
}

/// The challenge of the MCP server at `url` to an `initialize` with `token` (or none): rmcp's
/// connection error says "Auth required" without the header, so it is asked again plainly.
/// None when the server does not refuse (or can't be reached).
pub async fn fetch_challenge(url: &str, token: Option<&str>) -> Option<Challenge> {
    let http = http_client().ok()?;
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "tetherd", "version": env!("CARGO_PKG_VERSION")}}
    });
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.body(init.to_string()).send().await.ok()?;
    if !matches!(resp.status().as_u16(), 401 | 403) {
        return None;
    }
    Some(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(parse_challenge)
            .unwrap_or_default(),
    )
}

/// Everything known before the user opens the authorization URL. `verifier` and
/// `client_secret` are secrets: never logged.
#[derive(Clone)]
pub struct Plan {
    pub mcp_server_url: String,
    /// The RFC 8707 resource: the protected resource's own identifier when its metadata
    /// names one, else the MCP URL.
    pub resource: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub auth_method: TokenEndpointAuthType,
    pub scope: Option<String>,
    pub redirect_uri: String,
    pub verifier: String,
    pub state: String,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("mcp_server_url", &self.mcp_server_url)
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(b64url(&bytes))
}

/// PKCE S256 (RFC 7636 §4.2).
pub fn code_challenge(verifier: &str) -> String {
    b64url(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref())
}

impl Plan {
    /// The URL the user opens to authorize tether.
    pub fn authorization_url(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code");
        q.append_pair("client_id", &self.client_id);
        q.append_pair("redirect_uri", &self.redirect_uri);
        q.append_pair("code_challenge", &code_challenge(&self.verifier));
        q.append_pair("code_challenge_method", "S256");
        q.append_pair("state", &self.state);
        if let Some(s) = &self.scope {
            q.append_pair("scope", s);
        }
        q.append_pair("resource", &self.resource);
        let sep = if self.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{}", self.authorization_endpoint, q.finish())
    }

    /// The `mcp_oauth` credential for what [`finish`] granted: it refreshes itself.
    pub fn credential(&self, granted: &Granted) -> AuthParams {
        let expires_at = granted.expires_in.map(|s| {
            (chrono::Utc::now() + chrono::Duration::seconds(s.min(10 * 365 * 86400) as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        });
        let refresh = granted.refresh_token.as_ref().map(|rt| OauthRefreshParams {
            client_id: self.client_id.clone(),
            refresh_token: Some(Secret(rt.clone())),
            token_endpoint: self.token_endpoint.clone(),
            token_endpoint_auth: match (self.auth_method, &self.client_secret) {
                (TokenEndpointAuthType::ClientSecretBasic, Some(s)) => {
                    TokenEndpointAuthParams::ClientSecretBasic {
                        client_secret: Secret(s.clone()),
                    }
                }
                (TokenEndpointAuthType::ClientSecretPost, Some(s)) => {
                    TokenEndpointAuthParams::ClientSecretPost {
                        client_secret: Secret(s.clone()),
                    }
                }
                _ => TokenEndpointAuthParams::None,
            },
            resource: Some(self.resource.clone()),
            scope: granted.scope.clone().or_else(|| self.scope.clone()),
            grant_type: None,
        });
        AuthParams::McpOauth {
            mcp_server_url: self.mcp_server_url.clone(),
            access_token: Secret(granted.access_token.clone()),
            expires_at,
            refresh,
        }
    }
}

/// Where discovery and registration may go for a login tetherd starts on its own (a
/// session's MCP server refused it and the session has no credential): the MCP server's own
/// authority (host and port: the session's network policy let it be reached) and public
/// addresses. Not loopback, private or cloud-metadata addresses elsewhere: a server's
/// challenge and metadata must not make tetherd probe the network it runs in. A login the
/// user starts (`tether vaults login`) has no such limit.
#[derive(Debug, Clone)]
pub struct Reach {
    mcp_url: String,
    authority: Option<(String, u16)>,
}

fn authority(u: &reqwest::Url) -> Option<(String, u16)> {
    Some((
        u.host_str()?.to_ascii_lowercase(),
        u.port_or_known_default()?,
    ))
}

impl Reach {
    pub fn for_server(mcp_url: &str) -> Reach {
        Reach {
            mcp_url: mcp_url.to_string(),
            authority: reqwest::Url::parse(mcp_url)
                .ok()
                .as_ref()
                .and_then(authority),
        }
    }

    /// A client for `url`, pinned to the addresses checked (no second lookup to rebind), or
    /// why it may not be reached.
    async fn client(&self, url: &str) -> Result<reqwest::Client, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let Some((host, port)) = authority(&u) else {
            return Err(format!("`{url}` names no host"));
        };
        if self.authority.as_ref() == Some(&(host.clone(), port)) {
            return http_client();
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("cannot resolve {bare}: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{bare} resolves to no address"));
        }
        for a in &addrs {
            if let Some(what) = crate::net::policy::forbidden(a.ip()) {
                return Err(format!(
                    "{url} is {what} ({}), which a login tether starts on its own does not reach (only the MCP server's own host and port, and public addresses); if that authorization server is yours, log in yourself: `tether vaults login VAULT --mcp-url {}`",
                    a.ip(),
                    self.mcp_url
                ));
            }
        }
        crate::net::pinned_client(bare, &addrs, u.scheme())
    }
}

/// tetherd's client for discovery, and the [`Reach`] each URL must pass (a login a session
/// started).
struct Http<'a> {
    client: reqwest::Client,
    reach: Option<&'a Reach>,
}

impl Http<'_> {
    async fn client_for(&self, url: &str) -> Result<reqwest::Client, String> {
        match self.reach {
            None => Ok(self.client.clone()),
            Some(r) => r.client(url).await,
        }
    }
}

async fn get_json(http: &Http<'_>, url: &str) -> Option<Value> {
    let client = match http.client_for(url).await {
        Ok(c) => c,
        Err(why) => {
            tracing::info!(%why, "an OAuth discovery request was not sent");
            return None;
        }
    };
    let resp = client
        .get(url)
        .timeout(std::time::Duration::from_secs(30))
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    json_of(resp).await
}

/// A response body as JSON (reqwest here has no `json` feature).
async fn json_of(resp: reqwest::Response) -> Option<Value> {
    let bytes = resp.bytes().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `scheme://authority` and the path (without a trailing `/`) of `url`.
fn split_url(url: &str) -> Result<(String, String), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let origin = u.origin().ascii_serialization();
    let path = u.path().trim_end_matches('/').to_string();
    Ok((origin, path))
}

/// RFC 9728 §3: the challenge's URL, else the path-inserted then the root well-known URL.
async fn resource_metadata(
    http: &Http<'_>,
    mcp_url: &str,
    challenge: &Challenge,
) -> Result<Option<Value>, String> {
    let (origin, path) = split_url(mcp_url)?;
    let mut candidates = Vec::new();
    if let Some(u) = &challenge.resource_metadata {
        candidates.push(u.clone());
    }
    if !path.is_empty() {
        candidates.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
    }
    candidates.push(format!("{origin}/.well-known/oauth-protected-resource"));
    for c in candidates {
        if let Some(v) = get_json(http, &c).await
            && v.get("authorization_servers").is_some_and(Value::is_array)
        {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// RFC 8414 §3.1 and OpenID discovery, in the order the MCP spec gives.
async fn server_metadata(http: &Http<'_>, issuer: &str) -> Result<Option<Value>, String> {
    let (origin, path) = split_url(issuer)?;
    let candidates = if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    };
    for c in candidates {
        if let Some(v) = get_json(http, &c).await
            && v.get("token_endpoint").is_some()
        {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Which client authentication to ask for: the server's first choice tether supports
/// (RFC 8414's default is client_secret_basic).
fn pick_auth_method(supported: &[String]) -> TokenEndpointAuthType {
    if supported.is_empty() {
        return TokenEndpointAuthType::ClientSecretBasic;
    }
    supported
        .iter()
        .find_map(|m| match m.as_str() {
            "client_secret_basic" => Some(TokenEndpointAuthType::ClientSecretBasic),
            "client_secret_post" => Some(TokenEndpointAuthType::ClientSecretPost),
            "none" => Some(TokenEndpointAuthType::None),
            _ => None,
        })
        .unwrap_or(TokenEndpointAuthType::None)
}

fn method_name(m: TokenEndpointAuthType) -> &'static str {
    match m {
        TokenEndpointAuthType::None => "none",
        TokenEndpointAuthType::ClientSecretBasic => "client_secret_basic",
        TokenEndpointAuthType::ClientSecretPost => "client_secret_post",
        TokenEndpointAuthType::PrivateKeyJwt => "private_key_jwt",
    }
}

/// What discovery found: the protected resource's and its authorization server's metadata.
struct Discovery {
    issuer: String,
    asm: Option<Value>,
    resource: String,
    scope: Option<String>,
    authorization_endpoint: String,
    token_endpoint: String,
    registration_endpoint: String,
}

impl Discovery {
    fn supported(&self, key: &str) -> Vec<String> {
        strings(self.asm.as_ref().and_then(|m| m.get(key)))
    }
}

async fn discover(
    http: &Http<'_>,
    mcp_url: &str,
    challenge: &Challenge,
) -> Result<Discovery, String> {
    let prm = resource_metadata(http, mcp_url, challenge).await?;
    let (origin, _) = split_url(mcp_url)?;
    let issuer = prm
        .as_ref()
        .and_then(|p| strings(p.get("authorization_servers")).into_iter().next())
        // 2025-03-26: the MCP server's origin is its authorization server.
        .unwrap_or_else(|| origin.clone());
    let asm = server_metadata(http, &issuer).await?;
    let (issuer_origin, _) = split_url(&issuer)?;
    let endpoint = |key: &str, fallback: &str| {
        asm.as_ref()
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{issuer_origin}{fallback}"))
    };
    let authorization_endpoint = endpoint("authorization_endpoint", "/authorize");
    let token_endpoint = endpoint("token_endpoint", "/token");
    let registration_endpoint = endpoint("registration_endpoint", "/register");
    // Scope: the challenge's, else every scope the resource lists, else none (spec order).
    let scope = challenge.scope.clone().or_else(|| {
        let s = strings(prm.as_ref().and_then(|p| p.get("scopes_supported")));
        (!s.is_empty()).then(|| s.join(" "))
    });
    let resource = prm
        .as_ref()
        .and_then(|p| p.get("resource"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| mcp_url.to_string());
    let issuer = asm
        .as_ref()
        .and_then(|m| m.get("issuer"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or(issuer);
    Ok(Discovery {
        issuer,
        asm,
        resource,
        scope,
        authorization_endpoint,
        token_endpoint,
        registration_endpoint,
    })
}

/// Discovers the servers and registers tether as a client; `challenge` is what the MCP
/// server's 401 (or 403 insufficient_scope) said. With `client_metadata_url` (a client ID
/// metadata document tether's user publishes, `[mcp] client_id_metadata_url`) and an
/// authorization server that says `client_id_metadata_document_supported`, that URL is the
/// client id and nothing is registered (MCP 2025-11-25's preferred way).
pub async fn prepare(
    mcp_url: &str,
    challenge: &Challenge,
    redirect_uri: &str,
    client_name: &str,
    client_metadata_url: Option<&str>,
    reach: Option<&Reach>,
) -> Result<Plan, String> {
    let http = Http {
        client: http_client()?,
        reach,
    };
    let Discovery {
        issuer,
        asm,
        resource,
        scope,
        authorization_endpoint,
        token_endpoint,
        registration_endpoint: registration,
    } = discover(&http, mcp_url, challenge).await?;
    if let Some(m) = &asm {
        let methods = strings(m.get("code_challenge_methods_supported"));
        if !methods.is_empty() && !methods.iter().any(|x| x == "S256") {
            return Err(format!(
                "the authorization server {issuer} does not support PKCE S256 (it lists {}), which MCP requires; tether can't log in to it",
                methods.join(", ")
            ));
        }
    }
    let cimd = asm
        .as_ref()
        .and_then(|m| m.get("client_id_metadata_document_supported"))
        .and_then(Value::as_bool)
        == Some(true);
    if let (true, Some(client_id)) = (cimd, client_metadata_url) {
        // A metadata-document client is public: PKCE protects the code, no secret.
        return Ok(Plan {
            mcp_server_url: mcp_url.to_string(),
            resource,
            authorization_endpoint,
            token_endpoint,
            client_id: client_id.to_string(),
            client_secret: None,
            auth_method: TokenEndpointAuthType::None,
            scope,
            redirect_uri: redirect_uri.to_string(),
            verifier: random_token()?,
            state: random_token()?,
        });
    }
    let wanted = pick_auth_method(&strings(
        asm.as_ref()
            .and_then(|m| m.get("token_endpoint_auth_methods_supported")),
    ));
    let mut body = serde_json::json!({
        "client_name": client_name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method_name(wanted),
    });
    if let Some(s) = &scope {
        body["scope"] = Value::String(s.clone());
    }
    let resp = http
        .client_for(&registration)
        .await
        .map_err(|why| format!("cannot register tether at {registration}: {why}"))?
        .post(&registration)
        .timeout(std::time::Duration::from_secs(30))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot reach the registration endpoint {registration}: {}",
                crate::provider::http::error_chain(&e)
            )
        })?;
    let status = resp.status();
    let reg = json_of(resp).await.unwrap_or(Value::Null);
    let client_id = reg
        .get("client_id")
        .and_then(Value::as_str)
        .filter(|_| status.is_success())
        .ok_or_else(|| {
            format!(
                "the authorization server did not register tether as a client ({registration} answered HTTP {status}: {reg}); register a client there by hand and create the mcp_oauth credential with its client_id"
            )
        })?
        .to_string();
    let client_secret = reg
        .get("client_secret")
        .and_then(Value::as_str)
        .map(str::to_string);
    let auth_method = match reg
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
    {
        Some("client_secret_post") => TokenEndpointAuthType::ClientSecretPost,
        Some("client_secret_basic") => TokenEndpointAuthType::ClientSecretBasic,
        Some("none") => TokenEndpointAuthType::None,
        _ if client_secret.is_none() => TokenEndpointAuthType::None,
        _ => wanted,
    };
    Ok(Plan {
        mcp_server_url: mcp_url.to_string(),
        resource,
        authorization_endpoint,
        token_endpoint,
        client_id,
        client_secret,
        auth_method,
        scope,
        redirect_uri: redirect_uri.to_string(),
        verifier: random_token()?,
        state: random_token()?,
    })
}

/// Checks the callback (the full redirect URL or its query) and exchanges its code.
pub async fn finish(plan: &Plan, callback: &str) -> Result<Granted, String> {
    let query = callback.split_once('?').map_or(callback, |(_, q)| q);
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(e) = get("error") {
        return Err(format!(
            "the authorization server refused: {e}{}",
            get("error_description")
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
    }
    if get("state") != Some(plan.state.as_str()) {
        return Err(
            "the callback's state does not match this login (a stale or forged redirect); start the login again"
                .into(),
        );
    }
    let code = get("code").ok_or("the callback carries no authorization code")?;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", plan.redirect_uri.as_str()),
        ("code_verifier", plan.verifier.as_str()),
        ("resource", plan.resource.as_str()),
    ];
    let client = ClientAuth {
        method: plan.auth_method,
        client_id: &plan.client_id,
        secret: plan.client_secret.as_deref(),
        audience: None,
    };
    token_request(&plan.token_endpoint, client, &fields)
        .await
        .map_err(|e| match e {
            RefreshError::Failed(r) => format!(
                "the token endpoint {} refused the authorization code: HTTP {}: {}",
                plan.token_endpoint, r.status_code, r.body
            ),
            RefreshError::Connect(why) | RefreshError::Stored(why) => {
                format!(
                    "cannot reach the token endpoint {}: {why}",
                    plan.token_endpoint
                )
            }
            RefreshError::NoRefreshToken => "no token".into(),
        })
}

/// A machine client's own credentials for the client-credentials grant: a secret, or a
/// PKCS#8 PEM private key (private_key_jwt). Secrets: never logged.
#[derive(Clone)]
pub enum ClientSecret {
    Secret(String),
    PrivateKey(String),
}

/// The client-credentials grant (RFC 6749 §4.4, MCP's SEP-1046) for the MCP server at
/// `mcp_url`: discovers its authorization server as [`prepare`] does, authenticates as
/// `client_id` and answers the `mcp_oauth` credential for the token, which gets its next
/// token the same way (`refresh.grant_type = client_credentials`). `scope` overrides the
/// discovered one.
pub async fn client_credentials(
    mcp_url: &str,
    challenge: &Challenge,
    client_id: &str,
    secret: &ClientSecret,
    scope: Option<&str>,
) -> Result<AuthParams, String> {
    let http = Http {
        client: http_client()?,
        reach: None,
    };
    let d = discover(&http, mcp_url, challenge).await?;
    let grants = d.supported("grant_types_supported");
    if !grants.is_empty() && !grants.iter().any(|g| g == "client_credentials") {
        return Err(format!(
            "the authorization server {} does not offer the client_credentials grant (it lists {}); log in as a user with `tether vaults login` instead",
            d.issuer,
            grants.join(", ")
        ));
    }
    let scope = scope.map(str::to_string).or(d.scope.clone());
    let (method, auth, key) = match secret {
        ClientSecret::PrivateKey(pem) => {
            super::jwt::check_key(pem)?;
            (
                TokenEndpointAuthType::PrivateKeyJwt,
                TokenEndpointAuthParams::PrivateKeyJwt {
                    private_key: Secret(pem.clone()),
                    audience: Some(d.issuer.clone()),
                },
                pem,
            )
        }
        ClientSecret::Secret(s) => {
            // The server's first choice of the two secret methods (RFC 8414: basic by default).
            let post = d
                .supported("token_endpoint_auth_methods_supported")
                .iter()
                .find(|m| matches!(m.as_str(), "client_secret_basic" | "client_secret_post"))
                .is_some_and(|m| m == "client_secret_post");
            if post {
                (
                    TokenEndpointAuthType::ClientSecretPost,
                    TokenEndpointAuthParams::ClientSecretPost {
                        client_secret: Secret(s.clone()),
                    },
                    s,
                )
            } else {
                (
                    TokenEndpointAuthType::ClientSecretBasic,
                    TokenEndpointAuthParams::ClientSecretBasic {
                        client_secret: Secret(s.clone()),
                    },
                    s,
                )
            }
        }
    };
    let mut fields = vec![
        ("grant_type", "client_credentials"),
        ("resource", d.resource.as_str()),
    ];
    if let Some(s) = &scope {
        fields.push(("scope", s));
    }
    let client = ClientAuth {
        method,
        client_id,
        secret: Some(key),
        audience: Some(&d.issuer),
    };
    let granted = token_request(&d.token_endpoint, client, &fields)
        .await
        .map_err(|e| match e {
            RefreshError::Failed(r) => format!(
                "the token endpoint {} refused the client credentials of `{client_id}`: HTTP {}: {}",
                d.token_endpoint, r.status_code, r.body.trim()
            ),
            RefreshError::Connect(why) => {
                format!("cannot reach the token endpoint {}: {why}", d.token_endpoint)
            }
            RefreshError::Stored(why) => why,
            RefreshError::NoRefreshToken => "no token".into(),
        })?;
    let expires_at = granted.expires_in.map(|s| {
        (chrono::Utc::now() + chrono::Duration::seconds(s.min(10 * 365 * 86400) as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    });
    Ok(AuthParams::McpOauth {
        mcp_server_url: mcp_url.to_string(),
        access_token: Secret(granted.access_token),
        expires_at,
        refresh: Some(OauthRefreshParams {
            client_id: client_id.to_string(),
            refresh_token: None,
            token_endpoint: d.token_endpoint,
            token_endpoint_auth: auth,
            resource: Some(d.resource),
            scope: granted.scope.or(scope),
            grant_type: Some(OauthGrantType::ClientCredentials),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_quoted_or_not() {
        let c = parse_challenge(
            r#"Bearer error="insufficient_scope", scope="files:read files:write", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource""#,
        );
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(c.scope.as_deref(), Some("files:read files:write"));
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource")
        );
        let c = parse_challenge("Bearer realm=mcp, error=invalid_token");
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert!(
            challenge_in("authorization required: Bearer scope=\"a\"")
                .is_some_and(|c| c.scope.as_deref() == Some("a"))
        );
    }

    #[tokio::test]
    async fn a_login_nobody_asked_for_reaches_only_the_servers_authority_and_public_addresses() {
        let reach = Reach::for_server("http://127.0.0.1:8931/mcp");
        assert!(reach.client("http://127.0.0.1:8931/register").await.is_ok());
        for (url, what) in [
            ("http://127.0.0.1:9/register", "a loopback address"),
            (
                "http://169.254.169.254/latest",
                "the cloud metadata address",
            ),
            ("http://10.1.2.3/.well-known/x", "a private address"),
            ("http://[::1]:8931/x", "a loopback address"),
        ] {
            let why = reach.client(url).await.err().unwrap();
            assert!(why.contains(what), "{url}: {why}");
            assert!(why.contains("tether vaults login"), "{why}");
        }
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_auth_method_is_the_servers_first_supported_choice() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick_auth_method(&s(&["private_key_jwt", "client_secret_post"])),
            TokenEndpointAuthType::ClientSecretPost
        );
        assert_eq!(pick_auth_method(&s(&["none"])), TokenEndpointAuthType::None);
        assert_eq!(
            pick_auth_method(&[]),
            TokenEndpointAuthType::ClientSecretBasic
        );
    }
}
