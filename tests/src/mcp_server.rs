//! A small MCP server written with rmcp, for the MCP tests: over stdio as the
//! `tether-mock-mcp` binary (run inside a session's sandbox), and over streamable HTTP in the
//! test process ([`serve_http`]).
//!
//! Tools: `echo {text}` returns the text; `add {a, b}` returns the sum; `hostname` returns the
//! host name it runs under (`sandbox` inside a session's sandbox); `sleep {ms}` answers after
//! that long (to test call time limits); `ask {message?}` asks the user for a name, an age, a
//! color and a yes/no (MCP elicitation) and returns what came back (`accept {json}`,
//! `decline`, `cancel`); `open_url {url}` asks the user to open `url` (URL-mode elicitation,
//! server id `mock-url-1`), says it is complete (`notifications/elicitation/complete`) once
//! accepted and returns the action; `needs_url {url}` first fails with
//! `URLElicitationRequiredError` (-32042, the page `url`), then answers `authorized`; with
//! `finish_late: true` the second call fails again, the server saying first that the user
//! finished on the page (`notifications/elicitation/complete`), and the third answers; over
//! stdio only, `exit` ends the server process (to test
//! reconnecting).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientResult, ContentBlock,
    CustomNotification, ElicitRequestParams, JsonObject, ListToolsResult, PaginatedRequestParams,
    Request, ServerCapabilities, ServerConfig, ServerNotification, ServerRequest, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

/// The server; `calls` counts the `tools/call` requests it served.
#[derive(Clone, Default)]
pub struct TestMcp {
    pub calls: Arc<AtomicUsize>,
    /// `needs_url` was refused once (with -32042): the next call succeeds.
    pub asked_for_page: Arc<std::sync::atomic::AtomicBool>,
    /// Calls of `needs_url {finish_late: true}` so far.
    pub late_calls: Arc<AtomicUsize>,
    /// Offer `exit` (the stdio server only: it would end the test process otherwise).
    pub can_exit: bool,
}

fn schema(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(JsonObject::new()),
    }
}

impl ServerHandler for TestMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = vec![
            Tool::new(
                "echo",
                "Returns the text it is given",
                schema(
                    json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
                ),
            ),
            Tool::new(
                "add",
                "Adds two numbers",
                schema(
                    json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
                ),
            ),
            Tool::new(
                "hostname",
                "The host name this server runs under",
                schema(json!({"type": "object", "properties": {}})),
            ),
            Tool::new(
                "ask",
                "Asks the user for their name, age, favourite color and whether to subscribe",
                schema(json!({"type": "object", "properties": {"message": {"type": "string"}}})),
            ),
            Tool::new(
                "open_url",
                "Asks the user to open a page (URL-mode elicitation)",
                schema(
                    json!({"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}),
                ),
            ),
            Tool::new(
                "needs_url",
                "Needs the user to open a page first (URLElicitationRequiredError)",
                schema(
                    json!({"type": "object", "properties": {"url": {"type": "string"}, "finish_late": {"type": "boolean"}}, "required": ["url"]}),
                ),
            ),
            Tool::new(
                "sleep",
                "Answers after `ms` milliseconds",
                schema(
                    json!({"type": "object", "properties": {"ms": {"type": "number"}}, "required": ["ms"]}),
                ),
            ),
        ];
        if self.can_exit {
            tools.push(Tool::new(
                "exit",
                "Ends the server process",
                schema(json!({"type": "object", "properties": {}})),
            ));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let args = request.arguments.unwrap_or_default();
        let num = |k: &str| args.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let result = match request.name.as_ref() {
            "echo" => CallToolResult::success(vec![ContentBlock::text(
                args.get("text").and_then(Value::as_str).unwrap_or_default(),
            )]),
            "add" => CallToolResult::success(vec![ContentBlock::text(format!(
                "{}",
                num("a") + num("b")
            ))]),
            "hostname" => CallToolResult::success(vec![ContentBlock::text(
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .unwrap_or_default()
                    .trim(),
            )]),
            "sleep" => {
                tokio::time::sleep(std::time::Duration::from_millis(num("ms") as u64)).await;
                CallToolResult::success(vec![ContentBlock::text("slept")])
            }
            "ask" => ask(&context, args.get("message").and_then(Value::as_str)).await,
            "needs_url" if args.get("finish_late") == Some(&Value::Bool(true)) => {
                let url = args.get("url").and_then(Value::as_str).unwrap_or_default();
                match self.late_calls.fetch_add(1, Ordering::SeqCst) {
                    0 => return Err(page_required(url, "mock-url-3")),
                    1 => {
                        let done = CustomNotification::new(
                            "notifications/elicitation/complete",
                            Some(json!({"elicitationId": "mock-url-3"})),
                        );
                        let _ = context
                            .peer
                            .send_notification(ServerNotification::CustomNotification(done))
                            .await;
                        return Err(page_required(url, "mock-url-3"));
                    }
                    _ => CallToolResult::success(vec![ContentBlock::text("authorized late")]),
                }
            }
            "needs_url" if !self.asked_for_page.swap(true, Ordering::SeqCst) => {
                return Err(page_required(
                    args.get("url").and_then(Value::as_str).unwrap_or_default(),
                    "mock-url-2",
                ));
            }
            "needs_url" => CallToolResult::success(vec![ContentBlock::text("authorized")]),
            "open_url" => {
                open_url(
                    &context,
                    args.get("url").and_then(Value::as_str).unwrap_or_default(),
                )
                .await
            }
            "exit" if self.can_exit => std::process::exit(3),
            other => CallToolResult::error(vec![ContentBlock::text(format!("no tool {other}"))]),
        };
        Ok(result.into())
    }
}

/// The `ask` tool: one `elicitation/create` (form mode) and what the client answered.
async fn ask(context: &RequestContext<RoleServer>, message: Option<&str>) -> CallToolResult {
    let params: ElicitRequestParams = match serde_json::from_value(json!({
        "mode": "form",
        "message": message.unwrap_or("Who are you?"),
        "requestedSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "title": "Name", "minLength": 1},
                "age": {"type": "integer", "title": "Age", "minimum": 0, "maximum": 150},
                "color": {"type": "string", "title": "Favourite color", "enum": ["red", "green", "blue"]},
                "subscribe": {"type": "boolean", "title": "Subscribe"}
            },
            "required": ["name", "age"]
        }
    })) {
        Ok(p) => p,
        Err(e) => {
            return CallToolResult::error(vec![ContentBlock::text(format!("bad request: {e}"))]);
        }
    };
    let asked = context
        .peer
        .send_request(ServerRequest::ElicitRequest(Request::new(params)))
        .await;
    match asked {
        Ok(ClientResult::ElicitResult(r)) => {
            let action = serde_json::to_value(&r.action).unwrap_or_default();
            let mut text = action.as_str().unwrap_or("?").to_string();
            if let Some(content) = r.content {
                text.push(' ');
                text.push_str(&content.to_string());
            }
            CallToolResult::success(vec![ContentBlock::text(text)])
        }
        Ok(other) => CallToolResult::error(vec![ContentBlock::text(format!(
            "unexpected answer to elicitation/create: {other:?}"
        ))]),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
            "elicitation/create failed: {e}"
        ))]),
    }
}

/// The `open_url` tool: one URL-mode `elicitation/create`; once accepted, the completion
/// notification; the action as the result.
/// `URLElicitationRequiredError` (-32042) asking for the page `url`.
fn page_required(url: &str, id: &str) -> McpError {
    McpError::new(
        rmcp::model::ErrorCode(-32042),
        "This request requires more information.",
        Some(json!({"elicitations": [{
            "mode": "url",
            "elicitationId": id,
            "url": url,
            "message": "Authorize the mock service"
        }]})),
    )
}

async fn open_url(context: &RequestContext<RoleServer>, url: &str) -> CallToolResult {
    let params: ElicitRequestParams = match serde_json::from_value(json!({
        "mode": "url",
        "message": "Sign in to the mock service",
        "url": url,
        "elicitationId": "mock-url-1",
    })) {
        Ok(p) => p,
        Err(e) => {
            return CallToolResult::error(vec![ContentBlock::text(format!("bad request: {e}"))]);
        }
    };
    let asked = context
        .peer
        .send_request(ServerRequest::ElicitRequest(Request::new(params)))
        .await;
    let action = match asked {
        Ok(ClientResult::ElicitResult(r)) => serde_json::to_value(&r.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        other => {
            return CallToolResult::error(vec![ContentBlock::text(format!(
                "elicitation/create failed: {other:?}"
            ))]);
        }
    };
    if action == "accept" {
        let done = CustomNotification::new(
            "notifications/elicitation/complete",
            Some(json!({"elicitationId": "mock-url-1"})),
        );
        if let Err(e) = context
            .peer
            .send_notification(ServerNotification::CustomNotification(done))
            .await
        {
            return CallToolResult::error(vec![ContentBlock::text(format!(
                "completion failed: {e}"
            ))]);
        }
    }
    CallToolResult::success(vec![ContentBlock::text(action)])
}

/// Serves [`TestMcp`] over streamable HTTP on 127.0.0.1; returns its URL and its call counter.
/// The server lives until the test's runtime ends.
pub async fn serve_http() -> (String, Arc<AtomicUsize>) {
    serve_http_requiring(None).await
}

/// Like [`serve_http`], but with `Some(token)` every request without
/// `Authorization: Bearer <token>` is answered 401 with a bearer challenge.
pub async fn serve_http_requiring(token: Option<&'static str>) -> (String, Arc<AtomicUsize>) {
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
    let mut router = axum::Router::new().nest_service("/mcp", service);
    if let Some(token) = token {
        let expected = format!("Bearer {token}");
        router = router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let ok = req
                    .headers()
                    .get("authorization")
                    .is_some_and(|v| v.as_bytes() == expected.as_bytes());
                async move {
                    if ok {
                        next.run(req).await
                    } else {
                        axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::UNAUTHORIZED,
                            [("www-authenticate", "Bearer realm=\"mcp\"")],
                            "no token",
                        ))
                    }
                }
            },
        ));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/mcp"), calls)
}
