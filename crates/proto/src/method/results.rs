//! What each method answers: the `result` of a response. Each one serializes to exactly the
//! JSON object the daemon has always sent for its method (the tests pin the shapes).

use serde::{Deserialize, Serialize};

use crate::environment::Environment;
use crate::event::Event;
use crate::session::SessionInfo;

/// Result of the listing methods (`session.list`, `agent.list`, `agent.versions`,
/// `environment.list`): `{data: [...]}`, everything at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct List<T> {
    pub data: Vec<T>,
}

/// Result of `session.send`, `tool.confirm` and `custom_tool.result`: the event the daemon
/// recorded and the session as it is right after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Recorded {
    pub event: Event,
    pub session: SessionInfo,
}

/// Result of `session.interrupt`: the recorded interrupt, and whether a turn was running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Interrupted {
    pub event: Event,
    pub was_running: bool,
}

/// Result of `session.detach`: whether this connection was attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Detached {
    pub detached: bool,
}

/// Result of `session.delete`: `{id, deleted: true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionDeleted {
    pub id: String,
    pub deleted: bool,
}

impl SessionDeleted {
    pub fn new(id: String) -> SessionDeleted {
        SessionDeleted { id, deleted: true }
    }
}

/// Result of `environment.delete` (and `DELETE /v1/environments/{id}`):
/// `{id, type: "environment_deleted"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
// The HTTP API's OpenAPI document has always named it so.
#[schemars(rename = "DeletedEnvironment")]
pub struct EnvironmentDeleted {
    pub id: String,
    /// Always `environment_deleted`.
    #[serde(rename = "type")]
    pub object_type: String,
}

impl EnvironmentDeleted {
    pub fn new(id: String) -> EnvironmentDeleted {
        EnvironmentDeleted {
            id,
            object_type: "environment_deleted".into(),
        }
    }
}

/// Result of `environment.watch`: the environment, and whether a build is running (its
/// progress follows as `build` pushes); `watching: false` means none is, and the
/// environment's `build` says how the last one ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Watching {
    pub environment: Environment,
    pub watching: bool,
}

/// Result of `daemon.shutdown`, sent before the daemon stops serving: `{stopping: true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Stopping {
    pub stopping: bool,
}

/// Result of `session.events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPage {
    pub data: Vec<Event>,
    /// Pass as `before_seq` (desc) or `after_seq` (asc) for the next page; null at the end.
    pub next: Option<u64>,
}

impl EventPage {
    /// A page of what a read of at most `limit` events returned: a full page may have more
    /// after it, so its last event is the cursor; a short one is the end.
    pub fn new(data: Vec<Event>, limit: u32) -> EventPage {
        let next = if data.len() as u32 == limit {
            data.last().map(|e| e.seq)
        } else {
            None
        };
        EventPage { data, next }
    }
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
