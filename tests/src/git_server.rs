//! A git smart-HTTP server on 127.0.0.1 for the repository tests: `git http-backend` behind
//! a tiny CGI bridge that answers 401 unless the request carries the expected token (as
//! GitHub takes it: `Authorization: Basic base64(x-access-token:TOKEN)` or a bearer).

use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

#[derive(Clone)]
struct Git {
    root: PathBuf,
    token: String,
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    use std::io::Write;
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if let Some(b) = v.strip_prefix("Bearer ") {
        return b == token;
    }
    let Some(b) = v.strip_prefix("Basic ") else {
        return false;
    };
    // base64 by the system tool: the test crate has no base64 dependency.
    let mut child = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let decoded = String::from_utf8_lossy(&out.stdout).into_owned();
    decoded.split_once(':').map(|(_, p)| p) == Some(token)
}

async fn handle(State(g): State<Git>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if !authorized(&parts.headers, &g.token) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", "Basic realm=\"git\"")
            .body(Body::empty())
            .unwrap();
    }
    let body: Bytes = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap();
    let header = |k: &str| {
        parts
            .headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &g.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "test")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&body).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    // CGI output: headers, a blank line, the body.
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .unwrap_or((raw.len(), 0));
    let head = String::from_utf8_lossy(&raw[..split.0]).into_owned();
    let rest = raw[(split.0 + split.1).min(raw.len())..].to_vec();
    let mut resp = Response::builder();
    let mut status = StatusCode::OK;
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("status") {
                status = v.trim()[..3]
                    .parse::<u16>()
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(status);
            } else {
                resp = resp.header(k.trim(), v.trim());
            }
        }
    }
    resp.status(status).body(Body::from(rest)).unwrap()
}

/// Serves the bare repositories under `root` (e.g. `root/owner/repo`) until the test
/// ends; returns the base URL (`http://127.0.0.1:PORT`).
pub async fn serve(root: PathBuf, token: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(handle).with_state(Git {
        root,
        token: token.to_string(),
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}
