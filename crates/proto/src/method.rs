//! Requests a client can make: `<resource>.<verb>` with typed params.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{AgentChanges, AgentRef, AgentSpec};
use crate::environment::{EnvironmentChanges, EnvironmentSpec};
use crate::error::{ErrorBody, ErrorCode};
use crate::event::{ConfirmationResult, ContentBlock};

/// A session reference: an id, a unique id prefix, or a name.
pub type SessionRef = String;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `provider/model` or a bare Anthropic model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Use an existing directory as the workspace instead of a fresh one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Model calls allowed per turn before the turn is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// The agent to pin: `NAME[@VERSION]` or an id (newest version); default: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRef>,
    /// The environment to run in: a name or an id; default: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// Sent as the first `user.message` right after creation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initial_message: Vec<ContentBlock>,
    /// Spending limit in USD for the whole session (a turn that reaches it ends with
    /// `budget_reached`); default: the config's `max_cost_usd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Replaces the pinned agent's tools for this session only (hosted
    /// `agent_with_overrides.tools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<crate::agent::AgentTool>>,
    /// Hosted `metadata`: up to 16 string pairs.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSessions {
    /// Include archived sessions.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionParams {
    pub session: SessionRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub session: SessionRef,
    pub content: Vec<ContentBlock>,
    /// tether: switch the session to this `provider/model` from this message on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// tether: change a session's settings from its next model request on (recorded as a
/// `session.updated` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSession {
    pub session: SessionRef,
    /// `provider/model` (or a bare Anthropic id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Spending limit in USD for the whole session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// A new name (unique among sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListAgents {
    /// Include archived agents.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentParams {
    /// `NAME[@VERSION]` or an id.
    pub agent: AgentRef,
    /// A specific version (default: the newest, or the one after `@`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// Creates a new version of an agent from its newest one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    pub agent: AgentRef,
    /// Optimistic lock: the newest version the changes were made against.
    pub version: u32,
    pub changes: AgentChanges,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEnvironments {
    /// Include archived environments.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentParams {
    /// A name or an id.
    pub environment: String,
}

/// Changes an environment; a new config applies to sessions created afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    pub environment: String,
    pub changes: EnvironmentChanges,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attach {
    pub session: SessionRef,
    /// Replay events with `seq > after_seq`; 0 replays everything.
    #[serde(default)]
    pub after_seq: u64,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// A ranged read of the log. `desc` pages walk back from `before_seq` (or the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadEvents {
    pub session: SessionRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<u64>,
    #[serde(default = "default_page")]
    pub limit: u32,
    #[serde(default)]
    pub order: Order,
}

fn default_page() -> u32 {
    100
}

/// tether: events whose text (messages, thinking, tool calls and their output, errors) contains
/// `query`, ASCII case-insensitively, newest first, older than `before_seq`. Walks the whole log
/// on the daemon, so a client can search far more than it has loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchEvents {
    pub session: SessionRef,
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<u64>,
    #[serde(default = "default_search_limit")]
    pub limit: u32,
}

fn default_search_limit() -> u32 {
    1
}

/// Result of `session.events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPage {
    pub data: Vec<crate::event::Event>,
    /// Pass as `before_seq` (desc) or `after_seq` (asc) for the next page; null at the end.
    pub next: Option<u64>,
}

impl EventPage {
    /// A page of what a read of at most `limit` events returned: a full page may have more
    /// after it, so its last event is the cursor; a short one is the end.
    pub fn new(data: Vec<crate::event::Event>, limit: u32) -> EventPage {
        let next = if data.len() as u32 == limit {
            data.last().map(|e| e.seq)
        } else {
            None
        };
        EventPage { data, next }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkSession {
    pub session: SessionRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfirm {
    pub session: SessionRef,
    pub tool_use_id: String,
    pub result: ConfirmationResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomToolResult {
    pub session: SessionRef,
    pub custom_tool_use_id: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub is_error: bool,
}

/// Result of `daemon.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    pub socket: String,
    pub data_dir: String,
    pub uptime_ms: u64,
    pub sessions: u64,
    pub running_sessions: u64,
    pub clients: u64,
    /// Model providers as the daemon sees them (its own environment, not the client's).
    #[serde(default)]
    pub providers: Vec<ProviderStatus>,
    /// The `web_search` backend: `ready` false with the reason when configured but unusable;
    /// None when not configured (the tool is not offered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search: Option<ProviderStatus>,
    /// `[[mcp.credentials]]` of the daemon's config: `endpoint` is the server URL, `ready`
    /// whether every variable it names is set in the daemon's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_credentials: Vec<ProviderStatus>,
    /// What the host offers for sandboxing tools and the level tether uses (`tether doctor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxSupport>,
}

/// The host's sandboxing support as the daemon probed it (also `tetherd sandbox-probe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSupport {
    /// `namespaces` (full), `landlock` (fallback: Landlock + seccomp + rlimits, weaker) or
    /// `unavailable` (tools fail; `summary` names the host setting to change).
    pub level: String,
    /// One line for people: what the level means, or what to change.
    pub summary: String,
    /// One line per kernel feature: user namespaces, Landlock, seccomp, cgroup v2.
    pub checks: Vec<SandboxCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStatus {
    pub name: String,
    pub endpoint: String,
    /// Requests can be made (credentials present where needed).
    pub ready: bool,
    pub detail: String,
    /// Where the key the daemon would send comes from (`ANTHROPIC_API_KEY in tetherd's
    /// environment`, `credentials.toml (tether auth login)`); None when there is no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_source: Option<String>,
    /// [`crate::credentials::key_hint`] of that key, so a client can tell whether the daemon
    /// uses the key in its own environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hint: Option<String>,
}

/// Every request, typed. On the wire: `{"id": N, "method": "session.create", "params": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params")]
pub enum Call {
    #[serde(rename = "session.create")]
    SessionCreate(CreateSession),
    #[serde(rename = "session.list")]
    SessionList(ListSessions),
    #[serde(rename = "session.get")]
    SessionGet(SessionParams),
    #[serde(rename = "session.send")]
    SessionSend(SendMessage),
    #[serde(rename = "session.interrupt")]
    SessionInterrupt(SessionParams),
    #[serde(rename = "session.update")]
    SessionUpdate(UpdateSession),
    #[serde(rename = "session.attach")]
    SessionAttach(Attach),
    #[serde(rename = "session.detach")]
    SessionDetach(SessionParams),
    #[serde(rename = "session.events")]
    SessionEvents(ReadEvents),
    #[serde(rename = "session.search")]
    SessionSearch(SearchEvents),
    #[serde(rename = "session.fork")]
    SessionFork(ForkSession),
    #[serde(rename = "session.archive")]
    SessionArchive(SessionParams),
    #[serde(rename = "session.delete")]
    SessionDelete(SessionParams),
    #[serde(rename = "agent.create")]
    AgentCreate(AgentSpec),
    #[serde(rename = "agent.list")]
    AgentList(ListAgents),
    #[serde(rename = "agent.get")]
    AgentGet(AgentParams),
    #[serde(rename = "agent.update")]
    AgentUpdate(UpdateAgent),
    #[serde(rename = "agent.archive")]
    AgentArchive(AgentParams),
    /// tether: every version of an agent, oldest first.
    #[serde(rename = "agent.versions")]
    AgentVersions(AgentParams),
    /// Stores the environment and starts building its layer.
    #[serde(rename = "environment.create")]
    EnvironmentCreate(EnvironmentSpec),
    #[serde(rename = "environment.list")]
    EnvironmentList(ListEnvironments),
    #[serde(rename = "environment.get")]
    EnvironmentGet(EnvironmentParams),
    #[serde(rename = "environment.update")]
    EnvironmentUpdate(UpdateEnvironment),
    #[serde(rename = "environment.archive")]
    EnvironmentArchive(EnvironmentParams),
    #[serde(rename = "environment.delete")]
    EnvironmentDelete(EnvironmentParams),
    /// tether: builds the layer again from scratch, even if one is cached.
    #[serde(rename = "environment.rebuild")]
    EnvironmentRebuild(EnvironmentParams),
    /// tether: streams the current build as `build` pushes until it ends (starting it if the
    /// layer was never built); answers at once with `{environment, watching}`.
    #[serde(rename = "environment.watch")]
    EnvironmentWatch(EnvironmentParams),
    #[serde(rename = "daemon.status")]
    DaemonStatus {},
    #[serde(rename = "daemon.shutdown")]
    DaemonShutdown {},
    #[serde(rename = "tool.confirm")]
    ToolConfirm(ToolConfirm),
    #[serde(rename = "custom_tool.result")]
    CustomToolResult(CustomToolResult),
}

/// Every method name the protocol knows.
pub const METHODS: &[&str] = &[
    "session.create",
    "session.list",
    "session.get",
    "session.send",
    "session.interrupt",
    "session.update",
    "session.attach",
    "session.detach",
    "session.events",
    "session.search",
    "session.fork",
    "session.archive",
    "session.delete",
    "agent.create",
    "agent.list",
    "agent.get",
    "agent.update",
    "agent.archive",
    "agent.versions",
    "environment.create",
    "environment.list",
    "environment.get",
    "environment.update",
    "environment.archive",
    "environment.delete",
    "environment.rebuild",
    "environment.watch",
    "daemon.status",
    "daemon.shutdown",
    "tool.confirm",
    "custom_tool.result",
];

impl Call {
    /// Types a request's `method` + `params`, telling an unknown method apart from bad params.
    pub fn parse(method: &str, params: Value) -> Result<Call, ErrorBody> {
        if !METHODS.contains(&method) {
            return Err(ErrorBody::new(
                ErrorCode::UnknownMethod,
                format!(
                    "unknown method `{method}`; known methods: {}",
                    METHODS.join(", ")
                ),
            ));
        }
        let params = match params {
            Value::Null => Value::Object(Default::default()),
            p => p,
        };
        let tagged = serde_json::json!({ "method": method, "params": params });
        serde_json::from_value(tagged).map_err(|e| {
            ErrorBody::new(
                ErrorCode::InvalidParams,
                format!("invalid params for `{method}`: {e}"),
            )
        })
    }

    pub fn method(&self) -> &'static str {
        match self {
            Call::SessionCreate(_) => "session.create",
            Call::SessionList(_) => "session.list",
            Call::SessionGet(_) => "session.get",
            Call::SessionSend(_) => "session.send",
            Call::SessionInterrupt(_) => "session.interrupt",
            Call::SessionUpdate(_) => "session.update",
            Call::SessionAttach(_) => "session.attach",
            Call::SessionDetach(_) => "session.detach",
            Call::SessionEvents(_) => "session.events",
            Call::SessionSearch(_) => "session.search",
            Call::SessionFork(_) => "session.fork",
            Call::SessionArchive(_) => "session.archive",
            Call::SessionDelete(_) => "session.delete",
            Call::AgentCreate(_) => "agent.create",
            Call::AgentList(_) => "agent.list",
            Call::AgentGet(_) => "agent.get",
            Call::AgentUpdate(_) => "agent.update",
            Call::AgentArchive(_) => "agent.archive",
            Call::AgentVersions(_) => "agent.versions",
            Call::EnvironmentCreate(_) => "environment.create",
            Call::EnvironmentList(_) => "environment.list",
            Call::EnvironmentGet(_) => "environment.get",
            Call::EnvironmentUpdate(_) => "environment.update",
            Call::EnvironmentArchive(_) => "environment.archive",
            Call::EnvironmentDelete(_) => "environment.delete",
            Call::EnvironmentRebuild(_) => "environment.rebuild",
            Call::EnvironmentWatch(_) => "environment.watch",
            Call::DaemonStatus {} => "daemon.status",
            Call::DaemonShutdown {} => "daemon.shutdown",
            Call::ToolConfirm(_) => "tool.confirm",
            Call::CustomToolResult(_) => "custom_tool.result",
        }
    }

    /// Splits into wire `method` and `params`.
    pub fn into_parts(self) -> (String, Value) {
        let method = self.method().to_string();
        let params = match serde_json::to_value(&self) {
            Ok(Value::Object(mut m)) => m.remove("params").unwrap_or(Value::Null),
            _ => Value::Null,
        };
        (method, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_method_name_parses_or_reports_params() {
        for m in METHODS {
            // Each method is known: the error, if any, is about params, never the method.
            if let Err(e) = Call::parse(m, json!({})) {
                assert_eq!(e.code, ErrorCode::InvalidParams, "{m}: {e}");
            }
        }
    }

    #[test]
    fn unknown_method_is_named() {
        let e = Call::parse("session.explode", json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownMethod);
        assert!(e.message.contains("session.explode"));
    }

    #[test]
    fn bad_params_say_which_field() {
        let e = Call::parse("session.send", json!({"session": "x"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        assert!(e.message.contains("content"), "{}", e.message);
        let e = Call::parse("session.get", json!({"session": "x", "bogus": 1})).unwrap_err();
        assert!(e.message.contains("bogus"), "{}", e.message);
    }

    fn env(e: &str) -> EnvironmentParams {
        EnvironmentParams {
            environment: e.into(),
        }
    }

    #[test]
    fn calls_round_trip_through_parts() {
        let calls = vec![
            Call::SessionCreate(CreateSession {
                name: Some("fix".into()),
                model: Some("claude-sonnet-4-6".into()),
                dir: Some("/tmp/w".into()),
                initial_message: vec![ContentBlock::text("go")],
                ..Default::default()
            }),
            Call::SessionList(ListSessions { all: true }),
            Call::SessionGet(SessionParams {
                session: "fix".into(),
            }),
            Call::SessionSend(SendMessage {
                model: None,
                session: "fix".into(),
                content: vec![ContentBlock::text("more")],
            }),
            Call::SessionInterrupt(SessionParams {
                session: "fix".into(),
            }),
            Call::SessionAttach(Attach {
                session: "fix".into(),
                after_seq: 9,
                read_only: true,
            }),
            Call::SessionDetach(SessionParams {
                session: "fix".into(),
            }),
            Call::SessionEvents(ReadEvents {
                session: "fix".into(),
                after_seq: None,
                before_seq: Some(50),
                limit: 10,
                order: Order::Desc,
            }),
            Call::SessionSearch(SearchEvents {
                session: "fix".into(),
                query: "needle".into(),
                before_seq: Some(9),
                limit: 1,
            }),
            Call::SessionFork(ForkSession {
                session: "fix".into(),
                name: Some("fix2".into()),
            }),
            Call::SessionArchive(SessionParams {
                session: "fix".into(),
            }),
            Call::SessionDelete(SessionParams {
                session: "fix".into(),
            }),
            Call::SessionUpdate(UpdateSession {
                session: "fix".into(),
                model: Some("openai/gpt-5.1".into()),
                max_cost_usd: Some(1.5),
                name: Some("fix-2".into()),
            }),
            Call::AgentCreate(AgentSpec {
                name: "a".into(),
                system: Some("be brief".into()),
                ..Default::default()
            }),
            Call::AgentList(ListAgents { all: true }),
            Call::AgentGet(AgentParams {
                agent: "a@2".into(),
                version: None,
            }),
            Call::AgentUpdate(UpdateAgent {
                agent: "a".into(),
                version: 2,
                changes: AgentChanges {
                    system: Some("be terse".into()),
                    ..Default::default()
                },
            }),
            Call::AgentArchive(AgentParams {
                agent: "a".into(),
                version: None,
            }),
            Call::AgentVersions(AgentParams {
                agent: "a".into(),
                version: None,
            }),
            Call::EnvironmentCreate(EnvironmentSpec {
                name: "e".into(),
                ..Default::default()
            }),
            Call::EnvironmentList(ListEnvironments { all: true }),
            Call::EnvironmentGet(env("e")),
            Call::EnvironmentUpdate(UpdateEnvironment {
                environment: "e".into(),
                changes: EnvironmentChanges {
                    description: Some("d".into()),
                    ..Default::default()
                },
            }),
            Call::EnvironmentArchive(env("e")),
            Call::EnvironmentDelete(env("env_1")),
            Call::EnvironmentRebuild(env("e")),
            Call::EnvironmentWatch(env("e")),
            Call::DaemonStatus {},
            Call::DaemonShutdown {},
            Call::ToolConfirm(ToolConfirm {
                session: "fix".into(),
                tool_use_id: "sevt_1".into(),
                result: ConfirmationResult::Allow,
                deny_message: None,
            }),
            Call::CustomToolResult(CustomToolResult {
                session: "fix".into(),
                custom_tool_use_id: "sevt_2".into(),
                content: vec![ContentBlock::text("r")],
                is_error: false,
            }),
        ];
        assert_eq!(calls.len(), METHODS.len());
        for call in calls {
            let (method, params) = call.clone().into_parts();
            assert_eq!(Call::parse(&method, params).unwrap(), call);
        }
    }
}
