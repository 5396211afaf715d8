//! The running mock: listener lifecycle, request log, and per-connection
//! request loop dispatching to the script.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::http::{self, Conn, ReadError, Request};
use crate::play::{After, Api, Exchange, Ids, RequestInfo};
use crate::script::Script;

/// A request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target as sent (query string included).
    pub path: String,
    /// Header names are lowercased; order is as received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, `Value::Null` if it is not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }
}

/// A running mock server on 127.0.0.1. Dropping it stops the server and cuts
/// every open connection.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    accept_task: Option<JoinHandle<()>>,
}

struct State {
    script: Script,
    log: Mutex<Log>,
    /// Number of requests received; `wait_for_requests` watches it.
    arrived: watch::Sender<usize>,
    /// Bumped by `release_stalls`; stalled replies wait for a change.
    release: watch::Sender<u64>,
    ids: Ids,
}

#[derive(Default)]
struct Log {
    requests: Vec<RecordedRequest>,
    /// Model requests (any API) the main script answered so far: its sequential position.
    messages: usize,
    /// The same per [`crate::script::Route`], by index.
    routed: Vec<usize>,
}

impl MockServer {
    /// Starts serving `script` on an ephemeral loopback port.
    pub async fn start(script: Script) -> anyhow::Result<MockServer> {
        MockServer::start_on_port(script, 0).await
    }

    /// Starts serving `script` on `127.0.0.1:port` (0 picks a free port).
    pub async fn start_on_port(script: Script, port: u16) -> anyhow::Result<MockServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind 127.0.0.1:{port}: {e}"))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            script,
            log: Mutex::default(),
            arrived: watch::Sender::new(0),
            release: watch::Sender::new(0),
            ids: Ids::default(),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(MockServer {
            addr,
            state,
            accept_task: Some(accept_task),
        })
    }

    /// `http://127.0.0.1:PORT`, the value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.log().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        *self.state.arrived.borrow()
    }

    /// Resolves once at least `n` requests have arrived (counted when the whole
    /// request has been read, before the reply is sent).
    pub async fn wait_for_requests(&self, n: usize) {
        let mut arrived = self.state.arrived.subscribe();
        // Cannot fail: `self.state` keeps the sender alive.
        let _ = arrived.wait_for(|&count| count >= n).await;
    }

    /// Lets every stalled reply finish, including stalls for requests that have
    /// arrived but not yet reached their stall point. Later requests stall anew.
    pub fn release_stalls(&self) {
        self.state
            .release
            .send_modify(|generation| *generation += 1);
    }

    /// Stops accepting, closes all connections and waits for the listener to close.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.accept_task.take() {
            task.abort();
            // The only possible error is the cancellation we just asked for.
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(task) = &self.accept_task {
            task.abort();
        }
    }
}

impl State {
    fn log(&self) -> MutexGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log inconsistent.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs the request; returns its position in the script (or in `route`'s replies) if it
    /// is a model request.
    fn record(
        &self,
        request: RecordedRequest,
        is_messages: bool,
        route: Option<usize>,
    ) -> Option<usize> {
        let mut log = self.log();
        log.requests.push(request);
        let sequence = is_messages.then(|| {
            let counter = match route {
                Some(i) => {
                    if log.routed.len() <= i {
                        log.routed.resize(i + 1, 0);
                    }
                    &mut log.routed[i]
                }
                None => &mut log.messages,
            };
            *counter += 1;
            *counter - 1
        });
        let count = log.requests.len();
        drop(log);
        self.arrived.send_replace(count);
        sequence
    }
}

/// Owns the connection tasks, so aborting this task (drop/shutdown) aborts them too.
async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                // Typically fd exhaustion; back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    // SSE events are small writes that must go out immediately.
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream);
    loop {
        let request = match conn.read_request().await {
            Ok(Some(request)) => request,
            Ok(None) | Err(ReadError::Gone) => return,
            Err(ReadError::Bad(message)) => {
                let info = request_info(&state, &Value::Null, 0, true, Api::Messages);
                let mut exchange = Exchange::new(&mut conn, &state.ids, &state.script.timing, info);
                let _ = exchange
                    .error(400, "invalid_request_error", &message, None, true)
                    .await;
                return;
            }
        };
        match respond(&state, &mut conn, request).await {
            Ok(After::KeepAlive) => {}
            Ok(After::Close) | Err(_) => return,
        }
    }
}

async fn respond(state: &State, conn: &mut Conn, request: Request) -> std::io::Result<After> {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    // Subscribe before the request becomes visible to `wait_for_requests`, so a
    // test that waits for it and then calls `release_stalls` always releases it.
    let api = (request.method == "POST")
        .then(|| Api::from_path(request.path()))
        .flatten();
    let info = request_info(
        state,
        &body,
        request.body.len(),
        !request.keep_alive,
        api.unwrap_or(Api::Messages),
    );
    let is_messages = api.is_some();
    let described = format!("{} {}", request.method, request.target);
    let route = is_messages.then(|| state.script.route_for(&body)).flatten();
    let sequence = state.record(
        RecordedRequest {
            method: request.method,
            path: request.target,
            headers: request.headers,
            body: body.clone(),
        },
        is_messages,
        route,
    );

    let mut exchange = Exchange::new(conn, &state.ids, &state.script.timing, info);
    let Some(sequence) = sequence else {
        let message = format!(
            "tether-mock-llm only serves POST /v1/messages, /v1/chat/completions and \
             /v1/responses, got {described}"
        );
        return exchange
            .error(404, "not_found_error", &message, None, false)
            .await;
    };
    if !body.is_object() {
        let message = "request body must be a JSON object";
        return exchange
            .error(400, "invalid_request_error", message, None, false)
            .await;
    }
    match state.script.pick(route, sequence, &body) {
        Ok(reply) => exchange.play(reply).await,
        Err(message) => {
            exchange
                .error(500, "api_error", &message, None, false)
                .await
        }
    }
}

fn request_info(
    state: &State,
    body: &Value,
    body_bytes: usize,
    client_close: bool,
    api: Api,
) -> RequestInfo {
    RequestInfo {
        release: state.release.subscribe(),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("claude-mock")
            .to_string(),
        streaming: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        body_bytes,
        client_close,
        api,
        include_usage: body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}
