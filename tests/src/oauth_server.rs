//! An OAuth-protected MCP server for the `mcp_oauth` tests: the [`TestMcp`] server at `/mcp`
//! accepting only the current access token (401 with a bearer challenge otherwise), and an
//! RFC 6749 token endpoint at `/token` that exchanges the current refresh token for a new
//! access token and a rotated refresh token, checking the client's authentication.
//!
//! For the authorization flow it is also its own authorization server: protected-resource
//! metadata (RFC 9728), server metadata (RFC 8414), registration (RFC 7591, always answering
//! [`CLIENT_ID`]/[`CLIENT_SECRET`]), `/authorize` that redirects at once with a code (the
//! user consents instantly) and the authorization-code grant with its PKCE check.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;

use crate::mcp_server::TestMcp;

pub const CLIENT_ID: &str = "tether-test-client";
pub const CLIENT_SECRET: &str = "client-secret-4417";

/// How the token endpoint expects the client to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Basic,
    Post,
}

/// What the server accepts now and what it saw.
#[derive(Debug)]
pub struct AuthState {
    pub access_token: String,
    pub refresh_token: String,
    pub client_auth: ClientAuth,
    /// Token exchanges that succeeded.
    pub refreshes: usize,
    /// Token requests refused.
    pub refused_refreshes: usize,
    /// The form fields of the last token request.
    pub last_form: Vec<(String, String)>,
    /// The access tokens the MCP endpoint was shown, in order (accepted or not).
    pub seen_tokens: Vec<String>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The authorization request awaiting its code: (code_challenge, redirect_uri, resource).
    pub authorizing: Option<(String, String, String)>,
    /// Clients registered.
    pub registrations: usize,
    /// When set, `tools/call` needs a token granted these (space-separated) scopes: others
    /// get 403 insufficient_scope naming them (a step-up).
    pub call_scope: Option<String>,
    /// The scope each token was granted by an authorization (tokens not here: none).
    pub token_scopes: std::collections::HashMap<String, String>,
    /// The `scope` of the authorization request awaiting its code.
    pub authorizing_scope: Option<String>,
}

pub struct OauthServer {
    pub mcp_url: String,
    pub token_url: String,
    /// `127.0.0.1:PORT`, for an environment's allowed_hosts.
    pub authority: String,
    pub state: Arc<Mutex<AuthState>>,
    pub calls: Arc<AtomicUsize>,
}

impl OauthServer {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state.lock().unwrap()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

type Shared = Arc<Mutex<AuthState>>;

async fn require_token(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let is_call = bytes.windows(10).any(|w| w == b"tools/call");
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    let shown = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let ok = {
        let mut s = state.lock().unwrap();
        if let Some(t) = &shown {
            s.seen_tokens.push(t.clone());
        }
        shown.as_deref() == Some(s.access_token.as_str())
    };
    let missing_scope = {
        let s = state.lock().unwrap();
        match (&s.call_scope, &shown) {
            (Some(need), Some(t)) if ok && is_call => {
                let has = s.token_scopes.get(t).cloned().unwrap_or_default();
                let has: Vec<&str> = has.split(' ').collect();
                (!need.split(' ').all(|n| has.contains(&n))).then(|| (need.clone(), s.base.clone()))
            }
            _ => None,
        }
    };
    if let Some((need, base)) = missing_scope {
        return (
            StatusCode::FORBIDDEN,
            [(
                "www-authenticate",
                format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{need}\", resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\""
                ),
            )],
            "insufficient scope",
        )
            .into_response();
    }
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                format!(
                    "Bearer error=\"invalid_token\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
                    state.lock().unwrap().base
                ),
            )],
            "invalid token",
        )
            .into_response()
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

async fn token(State(state): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut s = state.lock().unwrap();
    s.last_form = form.clone();
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let client_ok = match s.client_auth {
        ClientAuth::None => field("client_id") == Some(CLIENT_ID) && basic.is_none(),
        ClientAuth::Post => {
            field("client_id") == Some(CLIENT_ID) && field("client_secret") == Some(CLIENT_SECRET)
        }
        ClientAuth::Basic => {
            basic.as_deref() == Some(&format!("{CLIENT_ID}:{CLIENT_SECRET}"))
                && field("client_secret").is_none()
        }
    };
    if !client_ok {
        s.refused_refreshes += 1;
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let code_ok = || {
        let Some((challenge, redirect, resource)) = &s.authorizing else {
            return false;
        };
        field("code") == Some("code-6021")
            && field("redirect_uri") == Some(redirect.as_str())
            && field("resource") == Some(resource.as_str())
            && field("code_verifier")
                .map(tether_daemon::resources::vaults::authorize::code_challenge)
                == Some(challenge.clone())
    };
    let granted = match field("grant_type") {
        Some("refresh_token") => field("refresh_token") == Some(s.refresh_token.as_str()),
        Some("authorization_code") => code_ok(),
        // The client authenticated above: that is the whole grant (RFC 6749 §4.4).
        Some("client_credentials") => true,
        _ => false,
    };
    if !granted {
        s.refused_refreshes += 1;
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the refresh token is invalid, expired or revoked",
        );
    }
    s.refreshes += 1;
    let n = s.refreshes;
    s.access_token = format!("granted-access-{n}-8c1e");
    if field("grant_type") == Some("authorization_code")
        && let Some(scope) = s.authorizing_scope.clone()
    {
        let token = s.access_token.clone();
        s.token_scopes.insert(token, scope);
    }
    s.refresh_token = format!("rotated-refresh-{n}-52d9");
    (
        [
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
        ],
        json!({
            "access_token": s.access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": s.refresh_token,
        })
        .to_string(),
    )
        .into_response()
}

async fn resource_metadata(State(state): State<Shared>) -> Response {
    let base = state.lock().unwrap().base.clone();
    axum::Json(json!({
        "resource": format!("{base}/mcp"),
        "authorization_servers": [base],
        "scopes_supported": ["mcp:tools"],
    }))
    .into_response()
}

async fn server_metadata(State(state): State<Shared>) -> Response {
    let s = state.lock().unwrap();
    let method = match s.client_auth {
        ClientAuth::None => "none",
        ClientAuth::Basic => "client_secret_basic",
        ClientAuth::Post => "client_secret_post",
    };
    axum::Json(json!({
        "issuer": s.base,
        "authorization_endpoint": format!("{}/authorize", s.base),
        "token_endpoint": format!("{}/token", s.base),
        "registration_endpoint": format!("{}/register", s.base),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [method],
    }))
    .into_response()
}

async fn register(State(state): State<Shared>, body: String) -> Response {
    let req: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.registrations += 1;
    let mut answer = json!({
        "client_id": CLIENT_ID,
        "redirect_uris": req["redirect_uris"],
        "token_endpoint_auth_method": req["token_endpoint_auth_method"],
    });
    if s.client_auth != ClientAuth::None {
        answer["client_secret"] = json!(CLIENT_SECRET);
    }
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// The user consents at once: back to the redirect URI with a code and the state.
async fn authorize(
    State(state): State<Shared>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let q: Vec<(String, String)> = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if field("response_type").as_deref() != Some("code")
        || field("client_id").as_deref() != Some(CLIENT_ID)
        || field("code_challenge_method").as_deref() != Some("S256")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "bad authorization request",
        );
    }
    let (Some(challenge), Some(redirect), Some(resource)) = (
        field("code_challenge"),
        field("redirect_uri"),
        field("resource"),
    ) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing parameters",
        );
    };
    {
        let mut s = state.lock().unwrap();
        s.authorizing = Some((challenge, redirect.clone(), resource));
        s.authorizing_scope = field("scope");
    }
    let mut to = format!("{redirect}?code=code-6021");
    if let Some(st) = field("state") {
        to.push_str(&format!(
            "&state={}",
            form_urlencoded::byte_serialize(st.as_bytes()).collect::<String>()
        ));
    }
    axum::response::Redirect::to(&to).into_response()
}

/// Serves on 127.0.0.1 until the test's runtime ends. The MCP endpoint accepts
/// `access_token`; the token endpoint exchanges `refresh_token`.
pub async fn serve(
    access_token: &str,
    refresh_token: &str,
    client_auth: ClientAuth,
) -> OauthServer {
    let state: Shared = Arc::new(Mutex::new(AuthState {
        access_token: access_token.to_string(),
        refresh_token: refresh_token.to_string(),
        client_auth,
        refreshes: 0,
        refused_refreshes: 0,
        last_form: Vec::new(),
        seen_tokens: Vec::new(),
        base: String::new(),
        authorizing: None,
        registrations: 0,
        call_scope: None,
        token_scopes: Default::default(),
        authorizing_scope: None,
    }));
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let service = StreamableHttpService::new(
        move || {
            Ok(TestMcp {
                calls: counter.clone(),
                can_exit: false,
                ..Default::default()
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let mcp = axum::Router::new().nest_service("/mcp", service).layer(
        axum::middleware::from_fn_with_state(state.clone(), require_token),
    );
    let router = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            axum::routing::get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            axum::routing::get(server_metadata),
        )
        .route("/register", axum::routing::post(register))
        .route("/authorize", axum::routing::get(authorize))
        .with_state(state.clone())
        .merge(mcp);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    state.lock().unwrap().base = format!("http://{addr}");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    OauthServer {
        mcp_url: format!("http://{addr}/mcp"),
        token_url: format!("http://{addr}/token"),
        authority: addr.to_string(),
        state,
        calls,
    }
}
