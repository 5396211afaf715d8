//! The MCP servers of a session's pinned agent (rmcp clients). Each server an `mcp_toolset`
//! references is connected lazily, before the first model request of a turn that needs it, and
//! kept for the session; its tools are offered to the model as `mcp__<server>__<tool>`.
//!
//! - `type: url` servers are reached over streamable HTTP from the daemon (hosted parity).
//! - `type: stdio` servers (tether) run inside a sandbox like the session shell's: the same
//!   workspace, environment layer and network policy.
//!
//! A server that can't be started, reached or authenticated to is reported once per turn as a
//! typed `session.error` (`mcp_connection_failed_error` / `mcp_authentication_failed_error`)
//! and the turn goes on without it; the next turn tries again. A call that fails on a broken
//! connection drops it, so the next use reconnects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ContentBlock};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;
use tether_proto::agent::{Agent, McpServer, PermissionPolicy};
use tether_proto::{EventBody, Permission, RetryStatusKind};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::provider::ToolSpec;
use crate::tools::Toolbox;

/// Prefix of the model-facing name of every MCP tool; no built-in tool has it and agent
/// validation refuses custom tools that do.
pub const PREFIX: &str = "mcp__";

/// How long starting (or reaching) a server and its `initialize` handshake may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// How long one `tools/list` may take.
const LIST_LIMIT: Duration = Duration::from_secs(30);
/// Bytes of a stdio server's stderr kept for error messages.
const STDERR_TAIL: usize = 2000;

/// The name the model calls tool `tool` of server `server` by. Characters a model API does not
/// accept in tool names become `_` (server names are validated to need none of this).
pub fn model_name(server: &str, tool: &str) -> String {
    let tool: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{PREFIX}{server}__{tool}")
}

/// One MCP tool offered to the model.
#[derive(Debug, Clone)]
pub struct OfferedTool {
    pub server: String,
    pub tool: String,
    pub spec: ToolSpec,
    pub permission: Permission,
}

struct Conn {
    client: RunningService<RoleClient, ()>,
    /// The sandbox helper of a stdio server (killed when dropped).
    _child: Option<tokio::process::Child>,
    tools: Vec<OfferedTool>,
}

/// Why a server could not be used.
struct Failure {
    auth: bool,
    message: String,
}

impl Failure {
    fn connection(message: String) -> Failure {
        Failure {
            auth: false,
            message,
        }
    }
}

/// A session's MCP clients.
pub struct McpClients {
    /// The pinned agent version, when it uses MCP servers at all.
    agent: Option<Arc<Agent>>,
    conns: tokio::sync::Mutex<BTreeMap<String, Conn>>,
    /// What the next request offers (read without awaiting while building it).
    offered: Mutex<Vec<OfferedTool>>,
    /// Servers that failed this turn: not retried nor reported again before the next turn.
    failed: Mutex<BTreeSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl McpClients {
    pub fn new(agent: Option<&Agent>) -> McpClients {
        McpClients {
            agent: agent
                .filter(|a| !a.used_mcp_servers().is_empty())
                .map(|a| Arc::new(a.clone())),
            conns: tokio::sync::Mutex::new(BTreeMap::new()),
            offered: Mutex::new(Vec::new()),
            failed: Mutex::new(BTreeSet::new()),
        }
    }

    /// A new turn: servers that failed before get another chance.
    pub fn new_turn(&self) {
        lock(&self.failed).clear();
    }

    /// The tools the next model request offers, in server then tool order.
    pub fn tool_specs(&self) -> Vec<ToolSpec> {
        lock(&self.offered).iter().map(|t| t.spec.clone()).collect()
    }

    /// The offered tool the model calls `name`, if it is one.
    pub fn lookup(&self, name: &str) -> Option<OfferedTool> {
        if !name.starts_with(PREFIX) {
            return None;
        }
        lock(&self.offered)
            .iter()
            .find(|t| t.spec.name == name)
            .cloned()
    }

    /// Connects every server the agent uses that is not connected and did not fail this turn;
    /// returns the `session.error`s of those that failed.
    pub async fn connect_missing(&self, toolbox: &Toolbox) -> Vec<EventBody> {
        let Some(agent) = &self.agent else {
            return Vec::new();
        };
        let mut conns = self.conns.lock().await;
        // A server that went away since (a stdio process that exited) is started again.
        conns.retain(|_, c| !c.client.is_transport_closed());
        let mut errors = Vec::new();
        for server in agent.used_mcp_servers() {
            if conns.contains_key(&server.name) || lock(&self.failed).contains(&server.name) {
                continue;
            }
            match connect(agent, server, toolbox).await {
                Ok(conn) => {
                    tracing::info!(server = %server.name, tools = conn.tools.len(), "connected to MCP server");
                    conns.insert(server.name.clone(), conn);
                }
                Err(f) => {
                    tracing::warn!(server = %server.name, error = %f.message, "MCP server unavailable");
                    lock(&self.failed).insert(server.name.clone());
                    errors.push(failure_event(&server.name, f));
                }
            }
        }
        *lock(&self.offered) = conns.values().flat_map(|c| c.tools.clone()).collect();
        errors
    }

    /// Calls `tool` of `server`; the text blocks for the model and whether it is an error.
    /// A broken connection is dropped so the next use reconnects.
    pub async fn call(
        &self,
        toolbox: &Toolbox,
        server: &str,
        tool: &str,
        input: &Value,
        cancel: &CancellationToken,
    ) -> CallOutcome {
        let Some(agent) = &self.agent else {
            return CallOutcome::error(format!(
                "the MCP server `{server}` is not used by this session's agent"
            ));
        };
        let mut conns = self.conns.lock().await;
        if !conns.contains_key(server) {
            // After a restart (or a dropped connection) the call reconnects first.
            let Some(spec) = agent
                .used_mcp_servers()
                .into_iter()
                .find(|s| s.name == server)
            else {
                return CallOutcome::error(format!(
                    "the MCP server `{server}` is not used by this session's agent"
                ));
            };
            match connect(agent, spec, toolbox).await {
                Ok(conn) => {
                    conns.insert(server.to_string(), conn);
                }
                Err(f) => {
                    return CallOutcome::error(format!(
                        "the MCP server `{server}` is unavailable, so `{tool}` was not called: {}",
                        f.message
                    ));
                }
            }
        }
        let Some(conn) = conns.get(server) else {
            return CallOutcome::error(format!("the MCP server `{server}` is not connected"));
        };
        let mut params = CallToolRequestParams::new(tool.to_string());
        match input {
            Value::Object(m) => params = params.with_arguments(m.clone()),
            Value::Null => {}
            other => {
                return CallOutcome::error(format!(
                    "the input of an MCP tool must be a JSON object, got {other}"
                ));
            }
        }
        let result = tokio::select! {
            r = conn.client.call_tool(params) => r,
            _ = cancel.cancelled() => return CallOutcome {
                text: crate::tools::INTERRUPTED_NOTE.to_string(),
                is_error: true,
                interrupted: true,
            },
        };
        match result {
            Ok(r) => CallOutcome {
                text: result_text(&r.content, r.structured_content.as_ref()),
                is_error: r.is_error.unwrap_or(false),
                interrupted: false,
            },
            Err(e) => {
                let closed = conn.client.is_transport_closed();
                if closed {
                    conns.remove(server);
                }
                CallOutcome::error(format!(
                    "the MCP server `{server}` failed the call to `{tool}`: {e}{}",
                    if closed {
                        " (the connection was lost; the next call reconnects)"
                    } else {
                        ""
                    }
                ))
            }
        }
    }

    /// Closes every connection (stdio servers are killed).
    pub async fn close(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().await);
        for (_, conn) in conns {
            let _ = conn.client.cancel().await;
        }
        lock(&self.offered).clear();
    }
}

/// The result of one MCP call.
pub struct CallOutcome {
    pub text: String,
    pub is_error: bool,
    pub interrupted: bool,
}

impl CallOutcome {
    fn error(text: String) -> CallOutcome {
        CallOutcome {
            text,
            is_error: true,
            interrupted: false,
        }
    }
}

/// The model sees text; other content is described (structured content as JSON when there is
/// nothing else).
fn result_text(content: &[ContentBlock], structured: Option<&Value>) -> String {
    let mut parts: Vec<String> = content
        .iter()
        .map(|c| match c {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => format!("[image: {}]", i.mime_type),
            ContentBlock::Audio(a) => format!("[audio: {}]", a.mime_type),
            ContentBlock::Resource(r) => {
                serde_json::to_string(&r.resource).unwrap_or_else(|_| "[resource]".into())
            }
            ContentBlock::ResourceLink(l) => format!("[resource: {}]", l.uri),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
        .collect();
    if parts.is_empty()
        && let Some(v) = structured
    {
        parts.push(v.to_string());
    }
    parts.join("\n")
}

fn failure_event(server: &str, f: Failure) -> EventBody {
    let kind = if f.auth {
        "mcp_authentication_failed_error"
    } else {
        "mcp_connection_failed_error"
    };
    let mut body = crate::harness::session_error(
        kind,
        format!(
            "MCP server `{server}`: {}; this turn goes on without its tools (the next turn tries again)",
            f.message
        ),
        RetryStatusKind::Terminal,
    );
    if let EventBody::SessionError { error } = &mut body {
        error.mcp_server_name = Some(server.to_string());
    }
    body
}

async fn connect(agent: &Agent, server: &McpServer, toolbox: &Toolbox) -> Result<Conn, Failure> {
    let (client, child) = match server.kind.as_str() {
        "stdio" => {
            let (client, child) = connect_stdio(server, toolbox).await?;
            (client, Some(child))
        }
        _ => (connect_http(server).await?, None),
    };
    let tools = tokio::time::timeout(LIST_LIMIT, client.list_all_tools())
        .await
        .map_err(|_| {
            Failure::connection(format!(
                "it did not list its tools within {}s",
                LIST_LIMIT.as_secs()
            ))
        })?
        .map_err(|e| Failure::connection(format!("listing its tools failed: {e}")))?;
    let tools = tools
        .into_iter()
        .filter_map(|t| {
            let settings = agent.mcp_tool_settings(&server.name, &t.name);
            settings.enabled.then(|| OfferedTool {
                server: server.name.clone(),
                tool: t.name.to_string(),
                spec: ToolSpec {
                    name: model_name(&server.name, &t.name),
                    description: t.description.as_deref().unwrap_or_default().to_string(),
                    input_schema: Value::Object((*t.input_schema).clone()),
                },
                permission: match settings.permission {
                    PermissionPolicy::AlwaysAllow => Permission::Allow,
                    PermissionPolicy::AlwaysAsk => Permission::Ask,
                },
            })
        })
        .collect();
    Ok(Conn {
        client,
        _child: child,
        tools,
    })
}

async fn connect_http(server: &McpServer) -> Result<RunningService<RoleClient, ()>, Failure> {
    let url = server.url.clone().unwrap_or_default();
    crate::provider::http::install_crypto_provider();
    let http = crate::provider::http::client_builder()
        .build()
        .map_err(|e| Failure::connection(format!("cannot build an HTTP client: {e}")))?;
    let transport = StreamableHttpClientTransport::with_client(
        http,
        StreamableHttpClientTransportConfig::with_uri(url.clone()),
    );
    match tokio::time::timeout(CONNECT_LIMIT, ().serve(transport)).await {
        Err(_) => Err(Failure::connection(format!(
            "{url} did not complete the MCP handshake within {}s",
            CONNECT_LIMIT.as_secs()
        ))),
        Ok(Err(e)) => {
            let auth = is_auth_error(&e);
            Err(Failure {
                auth,
                message: if auth {
                    format!(
                        "{url} refused the connection as unauthorized ({e}); check the server's credentials"
                    )
                } else {
                    format!("cannot connect to {url}: {}", error_chain(&e))
                },
            })
        }
        Ok(Ok(client)) => Ok(client),
    }
}

async fn connect_stdio(
    server: &McpServer,
    toolbox: &Toolbox,
) -> Result<(RunningService<RoleClient, ()>, tokio::process::Child), Failure> {
    let command = server.command.clone().unwrap_or_default();
    let mut argv = vec![command.clone()];
    argv.extend(server.args.iter().cloned());
    let env: Vec<(String, String)> = server
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (cmd, sandboxed) = toolbox
        .sandboxed_command(&argv, &env)
        .map_err(|e| Failure::connection(format!("cannot start `{command}`: {e}")))?;
    let mut child = crate::sandbox::spawn(cmd)
        .await
        .map_err(|e| Failure::connection(format!("cannot start `{command}`: {e}")))?;
    let (Some(stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Failure::connection(format!(
            "cannot set up the pipes of `{command}`"
        )));
    };
    // Its stderr goes to the daemon log, and its tail into error messages.
    let tail = Arc::new(Mutex::new(String::new()));
    let drain = {
        let tail = tail.clone();
        let name = server.name.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = stderr.read(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]);
                tracing::debug!(server = %name, stderr = %text.trim_end(), "MCP server stderr");
                let mut t = lock(&tail);
                t.push_str(&text);
                if t.len() > STDERR_TAIL {
                    let mut cut = t.len() - STDERR_TAIL;
                    while !t.is_char_boundary(cut) {
                        cut += 1;
                    }
                    t.drain(..cut);
                }
            }
        })
    };
    let started = async {
        if sandboxed {
            let mut carry = Vec::new();
            let ready = tokio::time::timeout(
                crate::tools::bash::SANDBOX_START_LIMIT,
                crate::tools::bash::await_ready(&mut stdout, &mut carry),
            )
            .await;
            if !matches!(ready, Ok(true)) {
                return Err("the sandbox did not start".to_string());
            }
        }
        match tokio::time::timeout(CONNECT_LIMIT, ().serve((stdout, stdin))).await {
            Err(_) => Err(format!(
                "it did not complete the MCP handshake within {}s",
                CONNECT_LIMIT.as_secs()
            )),
            Ok(Err(e)) => Err(format!("the MCP handshake failed: {}", error_chain(&e))),
            Ok(Ok(client)) => Ok(client),
        }
    }
    .await;
    match started {
        Ok(client) => Ok((client, child)),
        Err(why) => {
            // Let it finish saying why before quoting it.
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
            let said = lock(&tail).trim().to_string();
            let mut message = format!("`{}` ({}) {why}", command, server.kind);
            if !said.is_empty() {
                message.push_str(&format!("; it said: {said}"));
            }
            Err(Failure::connection(message))
        }
    }
}

/// An error and its sources, joined (rmcp wraps transport errors a few levels deep).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Whether the server answered 401/403 (rmcp's `AuthRequired` / `InsufficientScope`).
fn is_auth_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let chain = error_chain(e);
    [
        "Auth required",
        "Insufficient scope",
        "401 Unauthorized",
        "403 Forbidden",
    ]
    .iter()
    .any(|m| chain.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_prefixed_and_safe() {
        assert_eq!(model_name("fs", "read_file"), "mcp__fs__read_file");
        assert_eq!(
            model_name("gh", "repo.search/v2"),
            "mcp__gh__repo_search_v2"
        );
    }

    #[tokio::test]
    async fn an_unreachable_url_is_a_connection_failure_naming_it() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/mcp");
        let server = McpServer {
            kind: "url".into(),
            name: "gone".into(),
            url: Some(url.clone()),
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
        };
        let Err(f) = connect_http(&server).await else {
            panic!("connected to a closed port");
        };
        assert!(!f.auth);
        assert!(f.message.contains(&url), "{}", f.message);
        let EventBody::SessionError { error } = failure_event("gone", f) else {
            panic!("not a session.error");
        };
        assert_eq!(error.kind, "mcp_connection_failed_error");
        assert_eq!(error.mcp_server_name.as_deref(), Some("gone"));
    }

    #[test]
    fn results_are_text_for_the_model() {
        let content = vec![ContentBlock::text("one"), ContentBlock::text("two")];
        assert_eq!(result_text(&content, None), "one\ntwo");
        let v = serde_json::json!({"n": 1});
        assert_eq!(result_text(&[], Some(&v)), "{\"n\":1}");
    }
}
