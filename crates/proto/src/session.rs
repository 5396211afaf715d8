//! The session object as clients see it (`session.get`, `session.list`).

use serde::{Deserialize, Serialize};

use crate::event::{ModelUsage, StopReason};

/// Hosted status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Rescheduling,
    Running,
    Idle,
    Terminated,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Rescheduling => "rescheduling",
            SessionStatus::Running => "running",
            SessionStatus::Idle => "idle",
            SessionStatus::Terminated => "terminated",
        }
    }
}

/// Accumulated usage of a session. `cost_usd` sums the priced requests; when some
/// requests had no known price, `unpriced_requests` says how many (the cost is then a
/// lower bound).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionUsage {
    #[serde(flatten)]
    pub tokens: ModelUsage,
    /// Number of model requests made.
    #[serde(default)]
    pub model_requests: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unpriced_requests: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SessionUsage {
    /// Adds another stream's usage (a thread's to its session's).
    pub fn add(&mut self, other: &SessionUsage) {
        self.tokens.add(&other.tokens);
        self.model_requests += other.model_requests;
        self.unpriced_requests += other.unpriced_requests;
    }

    /// Counts one finished model request.
    pub fn record(&mut self, usage: &ModelUsage) {
        self.tokens.add(usage);
        self.model_requests += 1;
        if usage.cost_usd.is_none() && usage.prompt_tokens() + usage.output_tokens > 0 {
            self.unpriced_requests += 1;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionInfo {
    /// `sesn_...`
    pub id: String,
    /// Always `"session"`.
    #[serde(rename = "type")]
    pub object_type: String,
    /// tether: a unique, human-friendly handle usable wherever an id is.
    pub name: Option<String>,
    pub title: Option<String>,
    pub status: SessionStatus,
    /// Why the session last went idle, if it is idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// `provider/model`.
    pub model: String,
    pub workspace: String,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
    /// Highest seq in the session's log.
    pub last_seq: u64,
    pub usage: SessionUsage,
    /// Clients attached right now.
    pub attached_clients: u32,
    /// tether: how many of `attached_clients` are read-only watchers.
    #[serde(default)]
    pub read_only_clients: u32,
    /// tether: the session this one was forked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<String>,
    /// The agent version this session pinned at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentPin>,
    /// The environment the session runs in (None for sessions older than environments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// tether: how the session's tools are isolated: `namespaces`, `landlock` (the weaker
    /// fallback), `unavailable` (tools fail) or `none` (unsandboxed by its environment's
    /// `sandbox = "none"`; clients show it in red). None when the session is not loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// One per `user.define_outcome`, oldest first (hosted `outcome_evaluations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcome_evaluations: Vec<crate::outcome::OutcomeEvaluation>,
    /// The deployment that fired this session, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// tether: the model's context window in tokens, when tetherd knows it (built-in table
    /// or `[models."provider/model"] context_window`); clients show the share used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// tether: workflow checkpoints of this session's runs waiting for a person's answer
    /// (the session needs input even while its agent is idle).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub waiting_checkpoints: u32,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// `{id, version}` of the agent version a session runs on (hosted: `{type: agent, id, version}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentPin {
    pub id: String,
    pub version: u32,
}

/// `SessionInfo::sandbox` of a session in a self-hosted environment: its sandbox tools run on
/// the environment's workers.
pub const TOOLS_ON_WORKERS: &str = "workers";
