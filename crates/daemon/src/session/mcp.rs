//! The MCP servers of a session's pinned agent (rmcp clients). Each server an `mcp_toolset`
//! references is connected lazily, before the first model request of a turn that needs it, and
//! kept for the session; its tools are offered to the model as `mcp__<server>__<tool>`.
//!
//! - `type: url` servers are reached over streamable HTTP from the daemon (hosted parity),
//!   under the session's network policy and the SSRF rules of `web_fetch`: the host is checked
//!   before any lookup, the client connects only to the checked addresses and follows no
//!   redirect. `limited` reaches a server listed in `allowed_hosts` or, with
//!   `allow_mcp_servers: true`, any server URL of the pinned agent (hosted semantics);
//!   `none` reaches none. Loopback and private addresses are refused unless the environment
//!   lists the address itself (that is how a server on this machine is allowed). Credentials
//!   come from `[[mcp.credentials]]` in config.toml (environment variables named by URL).
//! - `type: stdio` servers (tether) run inside a sandbox like the session shell's: the same
//!   workspace, environment layer and network policy.
//!
//! Servers may ask the user for input during a call (MCP elicitation, form and URL modes):
//! each connection's handler ([`Elicitor`]) advertises it and hands the request to the session
//! (`session::elicitation`); time spent waiting on the user does not count against the call's
//! limit.
//!
//! A server that can't be started, reached or authenticated to is reported once per turn as a
//! typed `session.error` (`mcp_connection_failed_error` / `mcp_authentication_failed_error`)
//! and the turn goes on without it; the next turn tries again. A call that fails on a broken
//! connection drops it, so the next use reconnects.
//!
//! A `type: url` server that refuses the session as unauthorized when it has no credential
//! for it: the session's vaults are read again (a credential may have been added since); still
//! none, and the session has a vault, tetherd starts an OAuth login into its first vault (one
//! per vault and server while it is pending) and records `tether.mcp_authorization_required`
//! beside the `session.error`. Once the user completes it, the next model request connects.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientConfig, ContentBlock, CustomNotification, ElicitRequestParams,
    ElicitResult, ElicitationAction as McpAction, ElicitationCapability, FormElicitationCapability,
    UrlElicitationCapability,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ErrorData as McpError, ServiceExt};
use serde_json::Value;
use tether_proto::agent::{Agent, McpServer, PermissionPolicy};
use tether_proto::elicitation::ElicitationAction;
use tether_proto::vault::LoginStatus;
use tether_proto::{EventBody, Permission, RetryStatusKind};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::config::{McpConfig, McpCredential};
use crate::net::SessionNet;
use crate::provider::ToolSpec;
use crate::resources::vaults::oauth::AccessToken;
use crate::resources::vaults::{LiveSecrets, McpAuth, SessionSecrets};
use crate::store::Store;
use crate::tools::Toolbox;
use crate::tools::mcp_names::{PREFIX, model_name};

/// How long one `tools/list` may take.
const LIST_LIMIT: Duration = Duration::from_secs(30);
/// Bytes of a stdio server's stderr kept for error messages.
const STDERR_TAIL: usize = 2000;

/// One MCP tool offered to the model.
#[derive(Debug, Clone)]
pub struct OfferedTool {
    pub server: String,
    pub tool: String,
    pub spec: ToolSpec,
    pub permission: Permission,
}

struct Conn {
    client: RunningService<RoleClient, Elicitor>,
    /// The sandbox helper of a stdio server (killed when dropped).
    _child: Option<tokio::process::Child>,
    tools: Vec<OfferedTool>,
    /// The `mcp_oauth` access token it was opened with: when it nears its expiry the
    /// connection is made again with a refreshed one.
    oauth_token: Option<AccessToken>,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.client.is_transport_closed()
            && !self
                .oauth_token
                .as_ref()
                .is_some_and(|t| t.expiring(chrono::Utc::now()))
    }
}

/// Why a server could not be used.
struct Failure {
    auth: bool,
    message: String,
    /// It refused the connection as unauthorized and the session has no credential for it
    /// (vault or config.toml): a login can mend that.
    needs_login: bool,
}

impl Failure {
    fn connection(message: String) -> Failure {
        Failure {
            auth: false,
            message,
            needs_login: false,
        }
    }

    fn auth(message: String) -> Failure {
        Failure {
            auth: true,
            message,
            needs_login: false,
        }
    }
}

/// The `reason` of the `tether.mcp_authorization_required` a session records when a server
/// refuses it as unauthorized and it has no credential for it.
const UNAUTHORIZED: &str = "unauthorized";

/// A session's MCP clients.
pub struct McpClients {
    /// The pinned agent version (with the session's own servers), when it uses MCP servers
    /// at all; replaced between turns by a session update.
    agent: Mutex<Option<Arc<Agent>>>,
    conns: tokio::sync::Mutex<BTreeMap<String, Conn>>,
    /// What the next request offers (read without awaiting while building it).
    offered: Mutex<Vec<OfferedTool>>,
    /// Servers that failed this turn: not retried nor reported again before the next turn.
    failed: Mutex<BTreeSet<String>>,
    /// Time limits and credentials (`[mcp]` of config.toml).
    config: McpConfig,
    /// The session's vault credentials: a bearer for a server URL wins over config.toml's.
    /// Read at each connection, so a session update's `vault_ids` reaches the next one.
    vault: Arc<LiveSecrets>,
    /// Who answers the servers' elicitations (the session).
    asker: Weak<dyn AskUser>,
    /// Time the call in flight spent waiting on the user.
    wait: Arc<UserWait>,
    /// Where a login the session starts stores its credential (the vaults' store).
    store: Store,
    data_dir: PathBuf,
    /// Logins the user was asked to complete, by server: once one is done, the server is
    /// tried again at the next model request, even in the same turn.
    logins: Mutex<BTreeMap<String, String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `agent`, kept only when it uses an MCP server.
fn using_mcp(agent: Option<&Agent>) -> Option<Arc<Agent>> {
    agent
        .filter(|a| !a.used_mcp_servers().is_empty())
        .map(|a| Arc::new(a.clone()))
}

impl McpClients {
    pub fn new(
        agent: Option<&Agent>,
        config: McpConfig,
        vault: Arc<LiveSecrets>,
        asker: Weak<dyn AskUser>,
        store: Store,
        data_dir: PathBuf,
    ) -> McpClients {
        McpClients {
            agent: Mutex::new(using_mcp(agent)),
            conns: tokio::sync::Mutex::new(BTreeMap::new()),
            offered: Mutex::new(Vec::new()),
            failed: Mutex::new(BTreeSet::new()),
            config,
            vault,
            asker,
            wait: Arc::new(UserWait::default()),
            store,
            data_dir,
            logins: Mutex::new(BTreeMap::new()),
        }
    }

    /// The agent's servers from now on: connections to the servers it had are closed (the
    /// next turn connects to the new ones).
    pub async fn set_agent(&self, agent: Option<&Agent>) {
        let mut conns = self.conns.lock().await;
        *lock(&self.agent) = using_mcp(agent);
        for (_, conn) in std::mem::take(&mut *conns) {
            let _ = conn.client.cancel().await;
        }
        lock(&self.offered).clear();
        lock(&self.failed).clear();
    }

    fn agent(&self) -> Option<Arc<Agent>> {
        lock(&self.agent).clone()
    }

    /// The client handler of a connection to `server`.
    fn elicitor(&self, server: &str) -> Elicitor {
        Elicitor {
            server: server.to_string(),
            asker: self.asker.clone(),
            wait: self.wait.clone(),
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
        let Some(agent) = self.agent() else {
            return Vec::new();
        };
        let mut conns = self.conns.lock().await;
        // A server that went away since (a stdio process that exited) is started again, and
        // one whose OAuth token is about to expire is opened again with a refreshed token.
        conns.retain(|_, c| c.usable());
        self.retry_authorized();
        let mut errors = Vec::new();
        for server in agent.used_mcp_servers() {
            if conns.contains_key(&server.name) || lock(&self.failed).contains(&server.name) {
                continue;
            }
            match self.connect_server(&agent, server, toolbox, None).await {
                Ok(conn) => {
                    tracing::info!(server = %server.name, tools = conn.tools.len(), "connected to MCP server");
                    conns.insert(server.name.clone(), conn);
                }
                Err(f) => {
                    tracing::warn!(server = %server.name, error = %f.message, "MCP server unavailable");
                    lock(&self.failed).insert(server.name.clone());
                    if f.needs_login {
                        let url = server.url.as_deref().unwrap_or_default();
                        errors.extend(self.ask_login(&server.name, url, f).await);
                    } else {
                        errors.push(failure_event(&server.name, f));
                    }
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
        let Some(agent) = self.agent() else {
            return CallOutcome::error(format!(
                "the MCP server `{server}` is not used by this session's agent"
            ));
        };
        let mut conns = self.conns.lock().await;
        if conns.get(server).is_some_and(|c| !c.usable()) {
            conns.remove(server);
        }
        if !conns.contains_key(server) {
            // After a restart (or a dropped connection) the call reconnects first.
            if let Err(e) = self
                .reconnect(&agent, toolbox, &mut conns, server, None)
                .await
            {
                return CallOutcome::error(format!(
                    "the MCP server `{server}` is unavailable, so `{tool}` was not called: {e}"
                ));
            }
        }
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
        let limit = self.config.call_timeout();
        let mut result = self
            .call_once(conns.get(server), &params, limit, cancel)
            .await;
        // A 403 insufficient_scope: the token is good but too narrow, and a refresh keeps its
        // scope. The user authorizes the wider one; the connection is made again after.
        if let Some(Err(CallFailure::Service(e))) = &result
            && is_scope_error(e)
        {
            let text = error_chain(e);
            conns.remove(server);
            drop(conns);
            return self.step_up(&agent, server, tool, &text).await;
        }
        // The server refused an OAuth token it took before (revoked or expired early): once,
        // refresh it, reconnect and call again.
        if let Some(Err(CallFailure::Service(e))) = &result
            && is_auth_error(e)
            && let Some(refused) = conns
                .get(server)
                .and_then(|c| c.oauth_token.as_ref())
                .map(|t| t.value.clone())
        {
            conns.remove(server);
            if let Err(why) = self
                .reconnect(&agent, toolbox, &mut conns, server, Some(refused))
                .await
            {
                return CallOutcome::error(format!(
                    "the MCP server `{server}` refused its OAuth token, so `{tool}` was not called: {why}"
                ));
            }
            result = self
                .call_once(conns.get(server), &params, limit, cancel)
                .await;
        }
        // URL elicitation required (-32042): the server needs the user to open pages first.
        // Each new page is asked like a URL-mode elicitation; all accepted, the call is made
        // again. A page the user accepted that the server still wants is one they have not
        // finished on: the call waits for the server to say it is complete, then tries again.
        let mut accepted: BTreeSet<String> = BTreeSet::new();
        for _ in 0..URL_ROUNDS {
            let Some(Err(CallFailure::Service(rmcp::ServiceError::McpError(e)))) = &result else {
                break;
            };
            if e.code.0 != URL_ELICITATION_REQUIRED {
                break;
            }
            let pages = url_elicitations(e.data.as_ref());
            if pages.is_empty() {
                break;
            }
            if let Err(why) = self.open_pages(server, pages, &mut accepted, cancel).await {
                if cancel.is_cancelled() {
                    return CallOutcome {
                        text: crate::tools::INTERRUPTED_NOTE.to_string(),
                        is_error: true,
                        interrupted: true,
                    };
                }
                return CallOutcome::error(format!(
                    "the MCP server `{server}` needs the user to open a page before `{tool}` can run; {why}, so it was not called again"
                ));
            }
            result = self
                .call_once(conns.get(server), &params, limit, cancel)
                .await;
        }
        let Some(result) = result else {
            return CallOutcome::error(format!("the MCP server `{server}` is not connected"));
        };
        let result = match result {
            Ok(r) => Ok(r),
            Err(CallFailure::Timeout) => {
                return CallOutcome::error(format!(
                    "the MCP server `{server}` did not answer the call to `{tool}` within {} s, \
                 so tether cancelled it (whatever the server did before that may stand); \
                 try again, or raise [mcp] call_timeout_secs in tetherd's config.toml",
                    limit.as_secs()
                ));
            }
            Err(CallFailure::Cancelled) => {
                return CallOutcome {
                    text: crate::tools::INTERRUPTED_NOTE.to_string(),
                    is_error: true,
                    interrupted: true,
                };
            }
            Err(CallFailure::Service(e)) => Err(e),
        };
        let Some(conn) = conns.get(server) else {
            return CallOutcome::error(format!("the MCP server `{server}` is not connected"));
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

    /// Asks the user to open each page a server requires (in order, as URL-mode
    /// elicitations); the first answer that is not accept, if any.
    async fn open_pages(
        &self,
        server: &str,
        pages: Vec<Question>,
        accepted: &mut BTreeSet<String>,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        let Some(asker) = self.asker.upgrade() else {
            return Err("nobody could be asked".into());
        };
        for page in pages {
            let server_id = match &page {
                Question::Url { server_id, .. } => server_id.clone(),
                Question::Form { .. } => String::new(),
            };
            if !server_id.is_empty() && accepted.contains(&server_id) {
                let limit = self.config.elicitation_timeout();
                let done = asker
                    .clone()
                    .wait_completed(server.to_string(), server_id, limit, cancel.clone())
                    .await;
                if !done {
                    return Err(format!(
                        "the user accepted the page but the server did not say they finished on it within {} s ([mcp] elicitation_timeout_secs)",
                        limit.as_secs()
                    ));
                }
                continue;
            }
            let answer = asker
                .clone()
                .ask_user(server.to_string(), page, cancel.clone())
                .await;
            if answer.action != ElicitationAction::Accept {
                return Err(format!("the user answered {}", answer.action.as_str()));
            }
            accepted.insert(server_id);
        }
        Ok(())
    }

    /// Servers whose login (asked by [`McpClients::ask_login`]) the user completed are no
    /// longer "failed this turn": the next model request connects them.
    fn retry_authorized(&self) {
        let mut logins = lock(&self.logins);
        logins.retain(|server, login_id| {
            match crate::resources::vaults::login::status(login_id) {
                Some(LoginStatus::Pending) => true,
                Some(LoginStatus::Done { .. }) => {
                    lock(&self.failed).remove(server);
                    false
                }
                // Failed or forgotten: the next turn's refusal asks again.
                _ => false,
            }
        });
    }

    /// Connects `server` with the session's credentials. Refused as unauthorized with no
    /// credential for it, the session's vaults are read again first: one made since (the
    /// login it asked for, `tether vaults login`, a credential POSTed to the vault) is then
    /// used right away.
    async fn connect_server(
        &self,
        agent: &Agent,
        server: &McpServer,
        toolbox: &Toolbox,
        refused: Option<String>,
    ) -> Result<Conn, Failure> {
        let handler = self.elicitor(&server.name);
        let first = connect(
            agent,
            server,
            toolbox,
            &self.config,
            &self.vault.get(),
            refused,
            handler.clone(),
        )
        .await;
        let url = server.url.as_deref().unwrap_or_default();
        match first {
            Err(f) if f.needs_login && !self.vault.get().vault_ids.is_empty() => {
                if let Err(e) = self.vault.reload_mcp(&self.store, &self.data_dir).await {
                    tracing::warn!(server = %server.name, error = %e, "cannot read the session's vaults again");
                    return Err(f);
                }
                if self.vault.get().mcp_auth(url).is_none() {
                    return Err(f);
                }
                tracing::info!(server = %server.name, "a credential for the MCP server was added to the session's vaults; connecting with it");
                connect(
                    agent,
                    server,
                    toolbox,
                    &self.config,
                    &self.vault.get(),
                    None,
                    handler,
                )
                .await
            }
            other => other,
        }
    }

    /// A server refused the session as unauthorized and it has no credential for it: a login
    /// into the session's first vault (or the one already pending) for the user to complete,
    /// told with a `tether.mcp_authorization_required` event, and the `session.error` that
    /// hosted clients see saying so. Without a vault, only the error (saying what to do).
    async fn ask_login(&self, server: &str, url: &str, mut f: Failure) -> Vec<EventBody> {
        let secrets = self.vault.get();
        let Some(vault_id) = secrets.vault_ids.first() else {
            return vec![failure_event(server, f)];
        };
        let login = match crate::resources::vaults::login::for_session(
            &self.store,
            &self.data_dir,
            vault_id,
            url,
            self.config.client_id_metadata_url.as_deref(),
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(server = %server, error = %e.message, "cannot start the MCP server's OAuth login");
                f.message = format!(
                    "{}; tether tried to start that login itself and could not: {}",
                    f.message, e.message
                );
                return vec![failure_event(server, f)];
            }
        };
        if login.new {
            tracing::info!(server = %server, vault = %vault_id, login = %login.started.login_id, "MCP server needs authorization; asked of the user");
        }
        lock(&self.logins).insert(server.to_string(), login.started.login_id.clone());
        let asked = EventBody::McpAuthorizationRequired {
            mcp_server_name: server.to_string(),
            mcp_server_url: url.to_string(),
            authorization_url: login.started.authorization_url,
            login_id: login.started.login_id.clone(),
            scope: login.scope,
            reason: UNAUTHORIZED.into(),
        };
        let message = format!(
            "{url} needs authorization and the session has no credential for it, so tether asked the user to authorize it: the URL to open in a browser on tetherd's machine is in the tether.mcp_authorization_required event (login {}; the TUI shows it, HTTP readers see it with tether_events=true); the new mcp_oauth credential goes into the vault {vault_id} (the session's first), and the session connects as soon as the login is done",
            login.started.login_id
        );
        vec![
            asked,
            failure_event(
                server,
                Failure {
                    auth: true,
                    message,
                    needs_login: true,
                },
            ),
        ]
    }

    /// A call the server refused for want of scope: starts (or shows again) the login for the
    /// scope it asks, tells the user with a `tether.mcp_authorization_required` event and
    /// the model that the call is waiting on that authorization.
    async fn step_up(&self, agent: &Agent, server: &str, tool: &str, error: &str) -> CallOutcome {
        let challenge =
            crate::resources::vaults::authorize::challenge_in(error).unwrap_or_default();
        let wanted = challenge
            .scope
            .as_deref()
            .map(|s| format!(" (`{s}`)"))
            .unwrap_or_default();
        let url = agent
            .used_mcp_servers()
            .into_iter()
            .find(|s| s.name == server)
            .and_then(|s| s.url.clone())
            .unwrap_or_default();
        let secrets = self.vault.get();
        let Some(McpAuth::Oauth(r, tokens)) = secrets.mcp_auth(&url) else {
            return CallOutcome::error(format!(
                "the MCP server `{server}` refused `{tool}` for want of a wider OAuth scope{wanted}, and the session's credential for it is not an mcp_oauth one tether can renew; log in with that scope (`tether vaults login VAULT --mcp-url {url}`) and give the session that vault"
            ));
        };
        let started = match crate::resources::vaults::login::step_up(
            tokens.store(),
            tokens.data_dir(),
            &r.vault_id,
            &r.credential_id,
            &url,
            &challenge,
            self.config.client_id_metadata_url.as_deref(),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                return CallOutcome::error(format!(
                    "the MCP server `{server}` refused `{tool}` for want of a wider OAuth scope{wanted}, and tether could not start the authorization for it: {}",
                    e.message
                ));
            }
        };
        tracing::info!(server = %server, credential = %r.credential_id, login = %started.login_id, "MCP server wants a wider scope; authorization asked of the user");
        if let Some(asker) = self.asker.upgrade() {
            asker
                .notify_user(EventBody::McpAuthorizationRequired {
                    mcp_server_name: server.to_string(),
                    mcp_server_url: url.clone(),
                    authorization_url: started.authorization_url,
                    login_id: started.login_id,
                    scope: challenge.scope.clone(),
                    reason: challenge
                        .error
                        .clone()
                        .unwrap_or_else(|| "insufficient_scope".into()),
                })
                .await;
        }
        CallOutcome::error(format!(
            "authorization pending: the MCP server `{server}` needs a wider OAuth scope{wanted} for `{tool}`, so it was not called. tether has asked the user to authorize it in a browser; once they say they have, call `{tool}` again."
        ))
    }

    /// One `tools/call` on `conn` (None when it is not connected).
    async fn call_once(
        &self,
        conn: Option<&Conn>,
        params: &CallToolRequestParams,
        limit: Duration,
        cancel: &CancellationToken,
    ) -> Option<Result<rmcp::model::CallToolResult, CallFailure>> {
        let conn = conn?;
        let call = conn.client.call_tool(params.clone());
        tokio::pin!(call);
        let mut deadline = tokio::time::Instant::now() + limit;
        loop {
            tokio::select! {
                r = &mut call => return Some(r.map_err(CallFailure::Service)),
                _ = tokio::time::sleep_until(deadline) => match self.wait.extended(limit) {
                    // It waited on the user meanwhile: that time does not count.
                    Some(later) => deadline = later,
                    None => return Some(Err(CallFailure::Timeout)),
                },
                _ = cancel.cancelled() => return Some(Err(CallFailure::Cancelled)),
            }
        }
    }

    /// Connects `server` (not in `conns`) and keeps the connection; `refused` is the OAuth
    /// token it just refused, so a fresh one is used. The error says why it is unavailable.
    async fn reconnect(
        &self,
        agent: &Agent,
        toolbox: &Toolbox,
        conns: &mut BTreeMap<String, Conn>,
        server: &str,
        refused: Option<String>,
    ) -> Result<(), String> {
        let Some(spec) = agent
            .used_mcp_servers()
            .into_iter()
            .find(|s| s.name == server)
        else {
            return Err(format!(
                "the MCP server `{server}` is not used by this session's agent"
            ));
        };
        let conn = self
            .connect_server(agent, spec, toolbox, refused)
            .await
            .map_err(|f| f.message)?;
        conns.insert(server.to_string(), conn);
        Ok(())
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

/// Why one `tools/call` gave no result.
enum CallFailure {
    Timeout,
    Cancelled,
    Service(rmcp::ServiceError),
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
    let mut body = crate::session::events::session_error(
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

async fn connect(
    agent: &Agent,
    server: &McpServer,
    toolbox: &Toolbox,
    config: &McpConfig,
    vault: &SessionSecrets,
    refused: Option<String>,
    handler: Elicitor,
) -> Result<Conn, Failure> {
    let mut oauth_token = None;
    let (client, child) = match server.kind.as_str() {
        "stdio" => {
            let (client, child) =
                connect_stdio(server, toolbox, config.connect_timeout(), handler).await?;
            (client, Some(child))
        }
        _ => {
            let (client, token) =
                connect_http_authed(server, toolbox.net(), config, vault, refused, handler).await?;
            oauth_token = token;
            (client, None)
        }
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
        oauth_token,
    })
}

/// Connects a `type: url` server with its vault credential: a `static_bearer` as it is; an
/// `mcp_oauth` token refreshed first when it is about to expire (or is `refused`), and once
/// more when the server answers 401 to it.
async fn connect_http_authed(
    server: &McpServer,
    net: &SessionNet,
    config: &McpConfig,
    vault: &SessionSecrets,
    refused: Option<String>,
    handler: Elicitor,
) -> Result<(RunningService<RoleClient, Elicitor>, Option<AccessToken>), Failure> {
    let auth = server.url.as_deref().and_then(|u| vault.mcp_auth(u));
    let (r, tokens) = match auth {
        None => {
            return Ok((
                connect_http(server, net, config, None, handler).await?,
                None,
            ));
        }
        Some(McpAuth::Bearer(t)) => {
            return Ok((
                connect_http(server, net, config, Some(t), handler).await?,
                None,
            ));
        }
        Some(McpAuth::Oauth(r, tokens)) => (r, tokens),
    };
    let auth_failure = Failure::auth;
    let token = tokens
        .access_token(r, refused.as_deref(), chrono::Utc::now())
        .await
        .map_err(auth_failure)?;
    match connect_http(server, net, config, Some(&token.value), handler.clone()).await {
        Ok(client) => Ok((client, Some(token))),
        Err(f) if f.auth => {
            tracing::info!(server = %server.name, credential = %r.credential_id, "MCP server refused the OAuth token; refreshing it");
            let fresh = tokens
                .access_token(r, Some(&token.value), chrono::Utc::now())
                .await
                .map_err(auth_failure)?;
            let client = connect_http(server, net, config, Some(&fresh.value), handler).await?;
            Ok((client, Some(fresh)))
        }
        Err(f) => Err(f),
    }
}

async fn connect_http(
    server: &McpServer,
    net: &SessionNet,
    config: &McpConfig,
    vault_bearer: Option<&str>,
    handler: Elicitor,
) -> Result<RunningService<RoleClient, Elicitor>, Failure> {
    let url = server.url.clone().unwrap_or_default();
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| Failure::connection(format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Failure::connection(format!(
            "{url}: only http and https MCP servers can be reached"
        )));
    }
    let host = parsed.host_str().unwrap_or_default();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let refused = |r: crate::net::Refusal| {
        let hint = match (net.policy().as_ref(), &r) {
            (
                crate::net::NetPolicy::Limited(_),
                crate::net::Refusal::NotListed { .. } | crate::net::Refusal::IpNotListed { .. },
            ) => {
                "; or set allow_mcp_servers: true in the environment's networking to reach every MCP server its agents name"
            }
            (
                crate::net::NetPolicy::Unrestricted,
                crate::net::Refusal::PrivateAddress { .. }
                | crate::net::Refusal::ResolvesPrivate { .. },
            ) => {
                "; to reach a server on this machine, give the session an environment with limited networking that lists the address (e.g. `127.0.0.1:8931`) in allowed_hosts, or run the server over stdio (type: stdio)"
            }
            _ => "",
        };
        Failure::connection(format!(
            "the session's network policy refuses {url}: {r}{hint}"
        ))
    };
    let target = net.policy().check(host, port).map_err(refused)?;
    let addrs = target.resolve(net.resolver()).await.map_err(refused)?;
    let http = crate::net::pinned_client(host, &addrs, parsed.scheme())
        .map_err(|e| Failure::connection(format!("{url}: {e}")))?;
    let mut transport_config = StreamableHttpClientTransportConfig::with_uri(url.clone());
    if let Some(token) = vault_bearer {
        transport_config = transport_config.auth_header(token.to_string());
    } else if let Some(cred) = config.credential(&url) {
        transport_config = with_credential(transport_config, cred)?;
    }
    let transport = StreamableHttpClientTransport::with_client(http, transport_config);
    let limit = config.connect_timeout();
    match tokio::time::timeout(limit, handler.serve(transport)).await {
        Err(_) => Err(Failure::connection(format!(
            "{url} did not complete the MCP handshake within {} s (raise [mcp] connect_timeout_secs in config.toml if it is just slow)",
            limit.as_secs()
        ))),
        Ok(Err(e)) => {
            let auth = is_auth_error(&e);
            let needs_login = auth && vault_bearer.is_none() && config.credential(&url).is_none();
            Err(Failure {
                auth,
                needs_login,
                message: if auth && vault_bearer.is_some() {
                    format!(
                        "{url} refused the connection as unauthorized ({e}); check the credential for it in the session's vaults (its token may be wrong or expired: update it with POST /v1/vaults/{{vault_id}}/credentials/{{credential_id}})"
                    )
                } else if auth && config.credential(&url).is_some() {
                    format!(
                        "{url} refused the connection as unauthorized ({e}); check its credential ([[mcp.credentials]] with mcp_server_url = \"{url}\" in tetherd's config.toml, and the variables it names)"
                    )
                } else if auth {
                    format!(
                        "{url} needs authorization and the session has no credential for it; if it uses OAuth, run `tether vaults login VAULT --mcp-url {url}` (or POST an mcp_oauth credential to /v1/vaults/{{vault_id}}/credentials) and give the session that vault (vault_ids / --vault)"
                    )
                } else {
                    format!("cannot connect to {url}: {}", error_chain(&e))
                },
            })
        }
        Ok(Ok(client)) => Ok(client),
    }
}

/// What `tether doctor` shows of each configured credential: which variables it reads and
/// whether they are set in this (the daemon's) environment. Never the values.
pub fn credential_statuses(config: &McpConfig) -> Vec<tether_proto::method::ProviderStatus> {
    config
        .credentials
        .iter()
        .map(|c| {
            let vars: Vec<(String, &str)> = c
                .bearer_token_env
                .iter()
                .map(|v| ("bearer token".to_string(), v.as_str()))
                .chain(
                    c.headers_env
                        .iter()
                        .map(|(h, v)| (format!("header {h}"), v.as_str())),
                )
                .collect();
            let unset: Vec<&str> = vars
                .iter()
                .filter(|(_, v)| std::env::var(v).map_or(true, |x| x.is_empty()))
                .map(|(_, v)| *v)
                .collect();
            let read: Vec<String> = vars.iter().map(|(w, v)| format!("{w} from ${v}")).collect();
            tether_proto::method::ProviderStatus {
                name: "mcp credential".into(),
                endpoint: c.mcp_server_url.clone(),
                ready: unset.is_empty() && !vars.is_empty(),
                detail: if vars.is_empty() {
                    "names no variable (set bearer_token_env or headers_env)".into()
                } else if unset.is_empty() {
                    format!("{} (set)", read.join(", "))
                } else {
                    format!(
                        "{}; not set in tetherd's environment: {} (set them and restart tetherd)",
                        read.join(", "),
                        unset.join(", ")
                    )
                },
                ..Default::default()
            }
        })
        .collect()
}

/// Adds a configured credential's bearer token and headers, read from tetherd's environment
/// now (so a changed variable takes effect on the next connection). A variable that is not
/// set is an authentication failure naming it, never a silent anonymous connection.
fn with_credential(
    mut transport: StreamableHttpClientTransportConfig,
    cred: &McpCredential,
) -> Result<StreamableHttpClientTransportConfig, Failure> {
    let read =
        |var: &str| {
            std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| Failure::auth(format!(
                "its credential in config.toml takes a secret from the environment variable \
                 `{var}`, which is not set in tetherd's environment; set it and restart tetherd"
            )))
        };
    if let Some(var) = &cred.bearer_token_env {
        transport = transport.auth_header(read(var)?);
    }
    if !cred.headers_env.is_empty() {
        let mut headers = std::collections::HashMap::new();
        for (name, var) in &cred.headers_env {
            let bad = |what: &str| {
                Failure::auth(format!(
                    "its credential header `{name}` (from `{var}`) is not a valid {what}"
                ))
            };
            let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("header name"))?;
            let mut value = reqwest::header::HeaderValue::from_str(&read(var)?)
                .map_err(|_| bad("header value"))?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        transport = transport.custom_headers(headers);
    }
    Ok(transport)
}

async fn connect_stdio(
    server: &McpServer,
    toolbox: &Toolbox,
    connect_limit: Duration,
    handler: Elicitor,
) -> Result<(RunningService<RoleClient, Elicitor>, tokio::process::Child), Failure> {
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
        match tokio::time::timeout(connect_limit, handler.serve((stdout, stdin))).await {
            Err(_) => Err(format!(
                "it did not complete the MCP handshake within {} s",
                connect_limit.as_secs()
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

/// An answer to a server's elicitation.
#[derive(Debug, Clone, PartialEq)]
pub struct UserAnswer {
    pub action: ElicitationAction,
    pub content: Option<Value>,
}

/// What a server asks the user (`elicitation/create`).
#[derive(Debug, Clone, PartialEq)]
pub enum Question {
    /// Fill in a form: a message and a flat schema.
    Form { message: String, schema: Value },
    /// Open a page: the user goes to `url` themselves (MCP 2025-11-25 URL mode); the server
    /// may later say it is done (`notifications/elicitation/complete` naming `server_id`).
    Url {
        message: String,
        url: String,
        server_id: String,
    },
}

/// Who brings a server's elicitation to the user: the session (`session::elicitation`),
/// which records it and waits for the first answer.
pub trait AskUser: Send + Sync {
    fn ask_user(
        self: Arc<Self>,
        server: String,
        question: Question,
        withdrawn: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = UserAnswer> + Send>>;

    /// The server says its URL-mode elicitation `server_id` is complete.
    fn completed(
        self: Arc<Self>,
        server: String,
        server_id: String,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Records a `tether.mcp_authorization_required` notice for the user (nobody to tell:
    /// nothing).
    fn notify_user(self: Arc<Self>, _body: EventBody) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(std::future::ready(()))
    }

    /// Waits up to `limit` (or until `cancel`) for the server to say its URL-mode
    /// elicitation `server_id` is complete; whether it did (nobody to ask: no).
    fn wait_completed(
        self: Arc<Self>,
        _server: String,
        _server_id: String,
        _limit: Duration,
        _cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = bool> + Send>> {
        Box::pin(std::future::ready(false))
    }
}

/// The JSON-RPC error a server answers a request with when the user must first open pages
/// (`URLElicitationRequiredError`, MCP 2025-11-25); its `data.elicitations` lists them.
const URL_ELICITATION_REQUIRED: i32 = -32042;

/// How many times a call refused for pages is made again (each time after the user opened
/// or finished them): a server that keeps asking is not looped on forever.
const URL_ROUNDS: usize = 3;

/// The URL-mode elicitations of a -32042 error's `data` (others are left out).
fn url_elicitations(data: Option<&Value>) -> Vec<Question> {
    let Some(list) = data
        .and_then(|d| d.get("elicitations"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter(|e| e.get("mode").and_then(Value::as_str) == Some("url"))
        .filter_map(|e| {
            let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            Some(Question::Url {
                message: text("message").unwrap_or_default(),
                url: text("url")?,
                server_id: text("elicitationId").unwrap_or_default(),
            })
        })
        .collect()
}

/// The notification a server sends when the user finished a URL-mode elicitation (rmcp
/// 3.11 has no type for it: it arrives as a custom notification).
const ELICITATION_COMPLETE: &str = "notifications/elicitation/complete";

/// Time a tool call spends waiting on the user does not count against its time limit
/// (`[mcp] call_timeout_secs`): the user has `elicitation_timeout_secs` for that.
#[derive(Default)]
pub struct UserWait {
    waiting: AtomicUsize,
    /// When the last wait ended.
    ended: Mutex<Option<tokio::time::Instant>>,
}

impl UserWait {
    fn begin(self: &Arc<Self>) -> WaitGuard {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        WaitGuard(self.clone())
    }

    /// A call's deadline (with time limit `limit`) passed: the new one if it waited on the
    /// user meanwhile (a full `limit` from the end of the wait), None if it just took too
    /// long.
    fn extended(&self, limit: Duration) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return Some(now + limit);
        }
        let ended = *lock(&self.ended);
        ended.map(|t| t + limit).filter(|d| *d > now)
    }
}

struct WaitGuard(Arc<UserWait>);

impl Drop for WaitGuard {
    fn drop(&mut self) {
        *lock(&self.0.ended) = Some(tokio::time::Instant::now());
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The rmcp client handler of one connection: advertises form and URL elicitation (MCP
/// 2025-11-25 `elicitation/create`) and brings the server's requests (and its URL-mode
/// completions) to the session's user.
#[derive(Clone)]
pub struct Elicitor {
    server: String,
    asker: Weak<dyn AskUser>,
    wait: Arc<UserWait>,
}

#[cfg(test)]
impl Elicitor {
    /// A handler with nobody to ask (it declines).
    fn unattended() -> Elicitor {
        struct Nobody;
        impl AskUser for Nobody {
            fn ask_user(
                self: Arc<Self>,
                _: String,
                _: Question,
                _: CancellationToken,
            ) -> Pin<Box<dyn Future<Output = UserAnswer> + Send>> {
                Box::pin(std::future::ready(UserAnswer {
                    action: ElicitationAction::Decline,
                    content: None,
                }))
            }
            fn completed(
                self: Arc<Self>,
                _: String,
                _: String,
            ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
                Box::pin(std::future::ready(()))
            }
        }
        Elicitor {
            server: "test".into(),
            asker: Weak::<Nobody>::new(),
            wait: Arc::new(UserWait::default()),
        }
    }
}

impl ClientHandler for Elicitor {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.capabilities.elicitation = Some(
            ElicitationCapability::new()
                .with_form(FormElicitationCapability::new().with_schema_validation(true))
                .with_url(UrlElicitationCapability::new()),
        );
        info
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let question = match request {
            ElicitRequestParams::FormElicitationParams {
                message,
                requested_schema,
                ..
            } => Question::Form {
                message,
                schema: serde_json::to_value(&requested_schema).unwrap_or(Value::Null),
            },
            ElicitRequestParams::UrlElicitationParams {
                message,
                url,
                elicitation_id,
                ..
            } => Question::Url {
                message,
                url,
                server_id: elicitation_id,
            },
            _ => {
                tracing::info!(server = %self.server, "declined an elicitation of a mode tether does not know");
                return Ok(ElicitResult::new(McpAction::Decline));
            }
        };
        let Some(asker) = self.asker.upgrade() else {
            return Ok(ElicitResult::new(McpAction::Decline));
        };
        let _waiting = self.wait.begin();
        let answer = asker
            .ask_user(self.server.clone(), question, context.ct)
            .await;
        let mut result = ElicitResult::new(match answer.action {
            ElicitationAction::Accept => McpAction::Accept,
            ElicitationAction::Decline => McpAction::Decline,
            ElicitationAction::Cancel => McpAction::Cancel,
        });
        if let Some(content) = answer.content {
            result = result.with_content(content);
        }
        Ok(result)
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleClient>,
    ) {
        if notification.method != ELICITATION_COMPLETE {
            return;
        }
        let Some(id) = notification
            .params
            .as_ref()
            .and_then(|p| p.get("elicitationId"))
            .and_then(Value::as_str)
        else {
            tracing::info!(server = %self.server, "ignored an elicitation completion without an elicitationId");
            return;
        };
        if let Some(asker) = self.asker.upgrade() {
            asker.completed(self.server.clone(), id.to_string()).await;
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

/// Whether the server answered 403 insufficient_scope (rmcp's `InsufficientScope`, whose
/// source carries the challenge).
fn is_scope_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let chain = error_chain(e).to_ascii_lowercase();
    chain.contains("insufficient scope") || chain.contains("insufficient_scope")
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

    fn url_server(url: &str) -> McpServer {
        McpServer {
            kind: "url".into(),
            name: "srv".into(),
            url: Some(url.into()),
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
        }
    }

    fn net(policy: crate::net::NetPolicy) -> SessionNet {
        SessionNet::new(
            policy,
            crate::net::policy::system_resolver(),
            std::path::PathBuf::new(),
        )
    }

    fn listing(hosts: &[&str]) -> crate::net::NetPolicy {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        crate::net::NetPolicy::limited(&hosts, false).unwrap()
    }

    async fn refusal(url: &str, policy: crate::net::NetPolicy) -> Failure {
        match connect_http(
            &url_server(url),
            &net(policy),
            &McpConfig::default(),
            None,
            Elicitor::unattended(),
        )
        .await
        {
            Err(f) => f,
            Ok(_) => panic!("connected to {url}"),
        }
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
        let f = refusal(&url, listing(&[&format!("127.0.0.1:{port}")])).await;
        assert!(!f.auth);
        assert!(f.message.contains("cannot connect"), "{}", f.message);
        assert!(f.message.contains(&url), "{}", f.message);
        let EventBody::SessionError { error } = failure_event("gone", f) else {
            panic!("not a session.error");
        };
        assert_eq!(error.kind, "mcp_connection_failed_error");
        assert_eq!(error.mcp_server_name.as_deref(), Some("gone"));
    }

    /// Every refusal happens before a connection: the listener never sees one.
    #[tokio::test]
    async fn the_network_policy_decides_which_servers_are_reached() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/mcp");
        use crate::net::NetPolicy;

        let f = refusal(&url, NetPolicy::None).await;
        assert!(f.message.contains("networking: none"), "{}", f.message);

        let f = refusal(&url, NetPolicy::Unrestricted).await;
        assert!(f.message.contains("loopback"), "{}", f.message);
        assert!(f.message.contains("allowed_hosts"), "{}", f.message);
        assert!(f.message.contains("type: stdio"), "{}", f.message);

        let f = refusal(&url, listing(&["example.com"])).await;
        assert!(f.message.contains("allow_mcp_servers"), "{}", f.message);

        // allow_mcp_servers never lifts the loopback rule: only listing the address does.
        let f = refusal(
            &url,
            listing(&["example.com"]).with_mcp_urls(&[url.as_str()]),
        )
        .await;
        assert!(f.message.contains("refuses"), "{}", f.message);

        let f = refusal("ftp://example.com/mcp", NetPolicy::Unrestricted).await;
        assert!(f.message.contains("only http and https"), "{}", f.message);
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a refused server was connected to"
        );
    }

    #[tokio::test]
    async fn a_credential_from_an_unset_variable_is_an_authentication_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/mcp");
        let config = McpConfig {
            credentials: vec![McpCredential {
                mcp_server_url: url.clone(),
                bearer_token_env: Some("TETHER_TEST_SURELY_UNSET_TOKEN".into()),
                headers_env: BTreeMap::new(),
            }],
            ..McpConfig::default()
        };
        let policy = listing(&[&format!("127.0.0.1:{port}")]);
        let Err(f) = connect_http(
            &url_server(&url),
            &net(policy),
            &config,
            None,
            Elicitor::unattended(),
        )
        .await
        else {
            panic!("connected without its credential");
        };
        assert!(f.auth);
        assert!(
            f.message.contains("TETHER_TEST_SURELY_UNSET_TOKEN"),
            "{}",
            f.message
        );
    }

    /// A server on loopback that refuses every request as unauthorized (a bearer challenge);
    /// its URL and the environment entry that reaches it.
    async fn refusing_server() -> (String, String) {
        let app = axum::Router::new().fallback(|| async {
            (
                axum::http::StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer error=\"invalid_token\"")],
                "invalid token",
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{authority}/mcp"), authority)
    }

    /// Only a refusal of a session that has no credential at all is one a login can mend
    /// (what makes the session ask the user); a refused token is a wrong credential.
    #[tokio::test]
    async fn an_mcp_refusal_without_any_credential_is_one_a_login_mends() {
        let (url, authority) = refusing_server().await;
        let attempt = |bearer: Option<&'static str>| {
            let url = url.clone();
            let authority = authority.clone();
            async move {
                connect_http(
                    &url_server(&url),
                    &net(listing(&[&authority])),
                    &McpConfig::default(),
                    bearer,
                    Elicitor::unattended(),
                )
                .await
                .err()
                .expect("connected to a server that refuses everyone")
            }
        };
        let f = attempt(None).await;
        assert!(f.auth && f.needs_login, "{}", f.message);
        assert!(f.message.contains("tether vaults login"), "{}", f.message);
        let f = attempt(Some("wrong-token")).await;
        assert!(f.auth && !f.needs_login, "{}", f.message);
        assert!(f.message.contains("check the credential"), "{}", f.message);
    }

    #[test]
    fn doctor_sees_which_credential_variables_are_missing_never_their_values() {
        let config = McpConfig {
            credentials: vec![McpCredential {
                mcp_server_url: "https://mcp.example.com/mcp".into(),
                bearer_token_env: Some("PATH".into()),
                headers_env: BTreeMap::from([(
                    "X-Api-Key".to_string(),
                    "TETHER_TEST_SURELY_UNSET_KEY".to_string(),
                )]),
            }],
            ..McpConfig::default()
        };
        let s = &credential_statuses(&config)[0];
        assert_eq!(s.endpoint, "https://mcp.example.com/mcp");
        assert!(!s.ready);
        assert!(
            s.detail.contains("bearer token from $PATH")
                && s.detail
                    .contains("not set in tetherd's environment: TETHER_TEST_SURELY_UNSET_KEY"),
            "{}",
            s.detail
        );
        let path = std::env::var("PATH").unwrap();
        assert!(!s.detail.contains(&path), "a value leaked: {}", s.detail);
    }

    #[tokio::test]
    async fn time_spent_waiting_on_the_user_does_not_time_a_call_out() {
        let wait = Arc::new(UserWait::default());
        let limit = Duration::from_secs(30);
        assert_eq!(wait.extended(limit), None, "no wait: the limit holds");
        let guard = wait.begin();
        let later = wait.extended(limit).unwrap();
        assert!(later > tokio::time::Instant::now() + Duration::from_secs(29));
        drop(guard);
        // Just after the wait the call has a full limit again, no more.
        let later = wait.extended(limit).unwrap();
        assert!(later <= tokio::time::Instant::now() + limit);
    }

    #[test]
    fn the_client_advertises_form_and_url_elicitation() {
        let info = Elicitor::unattended().get_info();
        let caps = serde_json::to_value(&info.capabilities).unwrap();
        assert!(caps["elicitation"]["form"].is_object(), "{caps}");
        assert!(caps["elicitation"]["url"].is_object(), "{caps}");
    }

    #[test]
    fn a_url_elicitation_required_error_lists_its_pages() {
        let data = serde_json::json!({"elicitations": [
            {"mode": "url", "elicitationId": "e1", "url": "https://example.com/a", "message": "Authorize"},
            {"mode": "form", "message": "not a page"},
            {"mode": "url", "elicitationId": "e2", "message": "no url"}
        ]});
        assert_eq!(
            url_elicitations(Some(&data)),
            vec![Question::Url {
                message: "Authorize".into(),
                url: "https://example.com/a".into(),
                server_id: "e1".into(),
            }]
        );
        assert!(url_elicitations(None).is_empty());
    }

    #[test]
    fn results_are_text_for_the_model() {
        let content = vec![ContentBlock::text("one"), ContentBlock::text("two")];
        assert_eq!(result_text(&content, None), "one\ntwo");
        let v = serde_json::json!({"n": 1});
        assert_eq!(result_text(&[], Some(&v)), "{\"n\":1}");
    }
}
