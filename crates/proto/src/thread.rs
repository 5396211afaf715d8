//! Session threads (hosted `session_thread`, `sthr_...`): one agent's conversation inside a
//! multi-agent session. The primary thread is the session itself (its id is the session's with
//! the `sthr_` prefix, and its stream is the session's); child threads are sub-agents the
//! primary spawned, and the advisor's consultations. Every thread has its own gapless event
//! stream, attached to like a session's.

use serde::{Deserialize, Serialize};

use crate::agent::AgentModel;
use crate::event::StopReason;
use crate::session::{SessionStatus, SessionUsage};

/// `sthr_` + the session id's body: the primary thread's id, derived so it needs no storage.
pub fn primary_thread_id(session_id: &str) -> String {
    format!(
        "sthr_{}",
        session_id.strip_prefix("sesn_").unwrap_or(session_id)
    )
}

/// The session id a primary thread id stands for, if `thread_id` has the shape of one.
pub fn session_of_primary(thread_id: &str) -> Option<String> {
    thread_id
        .strip_prefix("sthr_")
        .map(|body| format!("sesn_{body}"))
}

/// A thread as the thread endpoints and `thread.*` methods return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionThread {
    /// `sthr_...`
    pub id: String,
    /// Always `"session_thread"`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub session_id: String,
    /// None for the primary thread.
    pub parent_thread_id: Option<String>,
    pub agent: ThreadAgent,
    pub status: SessionStatus,
    /// `{active_seconds?, duration_seconds?, startup_seconds?}`; None until the first transition.
    #[serde(default)]
    pub stats: Option<ThreadStats>,
    /// None until the thread first goes idle. Per-thread costs don't add up to the session's,
    /// which is authoritative.
    #[serde(default)]
    pub usage: Option<SessionUsage>,
    /// Set for the threads of a workflow run.
    #[serde(default)]
    pub workflow_run_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub archived_at: Option<String>,
    /// tether: why the thread last went idle, if it is idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// tether: highest seq in the thread's own stream.
    #[serde(default)]
    pub last_seq: u64,
}

impl SessionThread {
    /// The agent's name as events name it (`anthropic.advisor` for the advisor).
    pub fn agent_name(&self) -> &str {
        self.agent.name()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ThreadStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_seconds: Option<f64>,
}

/// Who runs in a thread: a stored agent version, the advisor, or an inline agent (defined at
/// spawn or by a workflow's plan). Each pins its own model, and so its own provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThreadAgent {
    Agent {
        id: String,
        version: u32,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        model: AgentModel,
        #[serde(default)]
        tools: Vec<serde_json::Value>,
        #[serde(default)]
        mcp_servers: Vec<serde_json::Value>,
        #[serde(default)]
        skills: Vec<serde_json::Value>,
    },
    Advisor {
        model: String,
    },
    Inline {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        model: AgentModel,
        #[serde(default)]
        tools: Vec<serde_json::Value>,
        #[serde(default)]
        mcp_servers: Vec<serde_json::Value>,
        #[serde(default)]
        skills: Vec<serde_json::Value>,
    },
}

impl ThreadAgent {
    pub fn name(&self) -> &str {
        match self {
            ThreadAgent::Agent { name, .. } | ThreadAgent::Inline { name, .. } => name,
            ThreadAgent::Advisor { .. } => crate::multiagent::ADVISOR_NAME,
        }
    }

    /// `provider/model` (or a bare Anthropic id) the thread runs on.
    pub fn model_id(&self) -> &str {
        match self {
            ThreadAgent::Agent { model, .. } | ThreadAgent::Inline { model, .. } => &model.id,
            ThreadAgent::Advisor { model } => model,
        }
    }
}
