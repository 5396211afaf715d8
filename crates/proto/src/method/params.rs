//! What each method takes: the `params` of a request.

use serde::{Deserialize, Serialize};

use crate::agent::{AgentChanges, AgentRef};
use crate::environment::EnvironmentChanges;
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
    /// Replaces the pinned agent's MCP servers for this session only (hosted
    /// `agent_with_overrides.mcp_servers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Vec<crate::agent::McpServer>>,
    /// Hosted `metadata`: up to 16 string pairs.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Memory stores to mount under `/mnt/memory/` (at most 8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory_stores: Vec<crate::memory::MemoryResourceParam>,
    /// Files to mount read-only and repositories to clone (issue 25). A repository's token
    /// is never serialized: it crosses no socket and reaches no log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<crate::file::ResourceParam>,
    /// Vaults (ids) whose credentials the session uses; the first wins on a clash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vault_ids: Vec<String>,
    /// Replaces the pinned agent's skills for this session only (hosted
    /// `agent_with_overrides.skills`; `[]`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<crate::skill::SkillRef>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSessions {
    /// Include archived sessions.
    #[serde(default)]
    pub all: bool,
    /// Only the sessions this deployment (id or name) fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionParams {
    pub session: SessionRef,
}

/// `session.interrupt`: without `thread`, every thread of the session stops; with one, only
/// that thread (hosted `user.interrupt {session_thread_id?}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interrupt {
    pub session: SessionRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

/// `thread.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListThreads {
    pub session: SessionRef,
    /// Only threads in these statuses; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<crate::session::SessionStatus>,
    /// Include archived threads.
    #[serde(default)]
    pub all: bool,
}

/// `thread.get` / `thread.archive`: a thread by `sthr_` id or agent name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadParams {
    pub session: SessionRef,
    pub thread: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub session: SessionRef,
    pub content: Vec<ContentBlock>,
    /// tether: switch the session to this `provider/model` from this message on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// tether: a thread of the session (its `sthr_` id or its agent's name); None: the
    /// session's primary thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
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
    /// tether: a thread of the session (its `sthr_` id or its agent's name); None: the
    /// session's primary thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
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
    /// tether: a thread of the session (its `sthr_` id or its agent's name); None: the
    /// session's primary thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
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

/// The params of a method that takes none: `{}` (a `null` reads as `{}`; fields are ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoParams {}

/// `session.define_outcome`: give the session a task with a rubric; the agent starts on it
/// at once and a grader checks its work after each turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefineOutcome {
    pub session: SessionRef,
    pub outcome: crate::outcome::OutcomeSpec,
}

// Deployments (`deployment.*`).

/// A deployment: its id, name or a unique id prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentParams {
    pub deployment: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListDeployments {
    /// Include archived deployments.
    #[serde(default)]
    pub all: bool,
    /// Only deployments of this agent (id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Only `active` or `paused` ones (not with `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::deployment::DeploymentStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeployment {
    pub deployment: String,
    pub changes: crate::deployment::DeploymentChanges,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListDeploymentRuns {
    /// Only this deployment's runs (id, name or unique id prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// true: only runs that failed; false: only runs that made a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_error: Option<bool>,
    /// Newest runs kept, at most (default 20, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRunParams {
    /// `drun_…`
    pub run: String,
}

// Workflow runs (issue 23).

/// `workflow.run`: a plan (a workflow file, read by the client) to run in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunWorkflow {
    /// A session id, name or unique prefix.
    pub session: String,
    pub workflow: crate::workflow::WorkflowSpec,
}

/// A workflow run by id (`wrun_...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRunParams {
    pub run: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListWorkflowRuns {
    /// Only this session's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Ended runs too.
    #[serde(default)]
    pub all: bool,
}

/// `workflow.answer`: a checkpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerCheckpoint {
    pub run: String,
    pub task: String,
    pub approve: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
