//! The Managed-Agents-compatible HTTP API (`tetherd --http ADDR` or `[http] listen`): the
//! hosted REST + SSE surface, so the official SDKs and `ant` can drive a local tetherd by
//! changing only their base URL. It is a second door onto the same runtime the local socket
//! serves: handlers translate shapes and call the same functions (`agents`, `ops`,
//! `Runtime`), nothing more. Extensions are additive: SSE `id:` is the event's seq and
//! `Last-Event-ID` (or `?after_seq=`) resumes a stream without gaps or duplicates. Every
//! endpoint is declared once, in `routes.rs`; the router below and `/v1/openapi.json` are
//! both built from that table.

mod agents;
mod body;
mod deployments;
mod environments;
mod error;
mod events;
mod files;
mod memory;
mod openapi;
mod page;
mod query;
mod routes;
mod sessions;
mod shapes;
// skills (issue 25)
mod skills;
mod stream;
mod threads;
pub mod token;
mod vaults;
mod work;
mod workflows;
// MCP elicitation (issue 25)
mod elicitations;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::runtime::Runtime;
pub use error::{ApiError, ApiResult};

/// What every handler gets.
#[derive(Clone)]
pub struct Api {
    pub rt: Arc<Runtime>,
    token: Arc<str>,
}

pub fn router(rt: Arc<Runtime>, token: String) -> Router {
    let api = Api {
        rt,
        token: token.into(),
    };
    // A path with several methods is routed once per method; axum merges them.
    routes::ROUTES
        .iter()
        .fold(Router::new(), |r, route| {
            r.route(route.path, route.method_router())
        })
        .layer(axum::extract::DefaultBodyLimit::max(body::MAX_BODY))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authenticate,
        ))
        .with_state(api)
}

/// Marks a request made with a worker's credential (an environment key or a work item's
/// sessions token) rather than the daemon's own token.
#[derive(Clone, Copy, Debug)]
pub struct WorkerCaller;

/// Every request carries the token, as `x-api-key` (the SDKs' default) or a bearer.
async fn authenticate(State(api): State<Api>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    match given {
        Some(t) if token::matches(t.trim(), &api.token) => next.run(req).await,
        // A self-hosted environment's key, or a work item's sessions token, on what it opens.
        Some(t)
            if crate::orchestration::workers::WorkQueue::of(&api.rt)
                .is_some_and(|q| q.allows(t, req.method(), req.uri().path())) =>
        {
            let mut req = req;
            req.extensions_mut().insert(WorkerCaller);
            next.run(req).await
        }
        _ => {
            body::drain(req).await;
            ApiError::unauthorized().into_response()
        }
    }
}

/// Every path this tetherd does not serve answers alike: 400 `invalid_request_error` in the
/// hosted envelope (what README promises), saying it is the daemon that lacks it. A served
/// path with a method it doesn't take stays a 405 (HTTP's rule), in the same envelope.
async fn not_found(req: Request) -> ApiError {
    let message = format!(
        "{} {} is not supported by tetherd (it serves a subset of the hosted API); `GET /v1/openapi.json` lists what it serves",
        req.method(),
        req.uri().path()
    );
    body::drain(req).await;
    ApiError::invalid(message)
}

async fn method_not_allowed(req: Request) -> ApiError {
    let message = format!(
        "{} {} is not supported by tetherd; `GET /v1/openapi.json` lists the methods each path takes",
        req.method(),
        req.uri().path()
    );
    body::drain(req).await;
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        ..ApiError::invalid(message)
    }
}

/// Parses `HOST:PORT`, refusing non-loopback addresses unless `allow_remote`.
pub fn listen_addr(listen: &str, allow_remote: bool) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = listen.trim().parse().with_context(|| {
        format!("the HTTP listen address `{listen}` is not HOST:PORT, e.g. 127.0.0.1:8470")
    })?;
    if !addr.ip().is_loopback() && !allow_remote {
        bail!(
            "refusing to serve the HTTP API on {addr}: it is not a loopback address, and anyone who reaches it with the token runs tools as you. Use 127.0.0.1:PORT (and ssh -L to reach it remotely), or set `allow_remote = true` under [http] in config.toml if you mean it"
        );
    }
    Ok(addr)
}

/// Serves until `rt.shutdown`; open streams end when it fires.
pub async fn serve(listener: tokio::net::TcpListener, rt: Arc<Runtime>, token: String) {
    let shutdown = rt.shutdown.clone();
    let app = router(rt, token);
    // Event streams write one small frame per event: without TCP_NODELAY, Nagle holds each
    // frame after the first until the client's (delayed) ACK, which a worker waiting on a
    // tool call pays on every call.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an HTTP connection");
        }
    });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "the HTTP API stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed() {
        assert!(listen_addr("127.0.0.1:8470", false).is_ok());
        assert!(listen_addr("[::1]:8470", false).is_ok());
        let e = listen_addr("0.0.0.0:8470", false).unwrap_err().to_string();
        assert!(e.contains("allow_remote"), "{e}");
        assert!(listen_addr("0.0.0.0:8470", true).is_ok());
        let e = listen_addr("localhost", false).unwrap_err().to_string();
        assert!(e.contains("HOST:PORT"), "{e}");
    }
}
