//! What the store keeps besides the events: a session's row, the summary columns updated
//! with its events, and the filters of a page of sessions.

use std::collections::BTreeMap;

use tether_proto::{SessionStatus, SessionUsage, StopReason};

use crate::ids;

/// A stored session row (everything but the events).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub name: Option<String>,
    pub title: Option<String>,
    pub model: String,
    pub system: Option<String>,
    pub workspace: String,
    /// The workspace was created by tether (and is removed with the session).
    pub workspace_owned: bool,
    pub max_turns: u32,
    pub status: SessionStatus,
    pub stop_reason: Option<StopReason>,
    pub usage: SessionUsage,
    pub last_seq: u64,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
    pub forked_from: Option<String>,
    /// The pinned agent version (None for sessions older than agents).
    pub agent: Option<(String, u32)>,
    /// Built-in tools offered to the model; None offers all of them.
    pub tools: Option<Vec<String>>,
    /// Hosted `metadata`: up to 16 string pairs.
    pub metadata: BTreeMap<String, String>,
    /// The environment (id) the session was created in; None for older sessions.
    pub environment: Option<String>,
    /// Hash of the environment layer the session mounts; None: no layer.
    pub env_layer: Option<String>,
    /// The environment's networking when the session was created (pinned like the layer);
    /// None for sessions older than that.
    pub networking: Option<tether_proto::environment::Networking>,
    /// The session's outcomes as of its last event (for listings of sessions not loaded).
    pub outcome_evaluations: Vec<tether_proto::outcome::OutcomeEvaluation>,
    /// Set on a child thread (`sthr_` id): the session it belongs to.
    pub parent_id: Option<String>,
    /// Set on a child thread: who runs in it.
    pub thread_agent: Option<tether_proto::thread::ThreadAgent>,
    /// The memory stores mounted under `/mnt/memory/`, as attached at creation.
    pub memory: Vec<tether_proto::memory::SessionMemory>,
    /// The deployment that fired this session, if one did.
    pub deployment_id: Option<String>,
    /// Not a column: the files mounted read-only, as (blob, mount path), read from
    /// `session_resources` when the session is loaded (`resources::attach`).
    pub file_mounts: Vec<(String, String)>,
    /// Not a column: the agent's skills, resolved when the session is created or loaded
    /// (`resources::skills`), mounted read-only under `/skills/`.
    pub skills: Vec<tether_proto::skill::MountedSkill>,
    /// The vaults whose credentials the session uses (ids, in precedence order).
    pub vault_ids: Vec<String>,
    /// The session's own skills (`agent_with_overrides.skills`), replacing its agent's;
    /// None: the agent's.
    pub skill_refs: Option<Vec<tether_proto::skill::SkillRef>>,
    /// The session's own tools and MCP servers (`agent_with_overrides`, or a session
    /// update's `agent`), applied over its agent version's; None: the version's.
    pub agent_overrides: Option<tether_proto::agent::SessionAgentUpdate>,
}

impl SessionRow {
    /// A new, idle session with no events yet.
    pub fn new(id: String, model: String, workspace: String, max_turns: u32) -> SessionRow {
        let now = ids::now_rfc3339();
        SessionRow {
            id,
            name: None,
            title: None,
            model,
            system: None,
            workspace,
            workspace_owned: false,
            max_turns,
            status: SessionStatus::Idle,
            stop_reason: None,
            usage: SessionUsage::default(),
            last_seq: 0,
            created_at: now.clone(),
            updated_at: now,
            archived_at: None,
            forked_from: None,
            agent: None,
            tools: None,
            metadata: BTreeMap::new(),
            environment: None,
            env_layer: None,
            networking: None,
            outcome_evaluations: Vec::new(),
            parent_id: None,
            thread_agent: None,
            memory: Vec::new(),
            deployment_id: None,
            file_mounts: Vec::new(),
            skills: Vec::new(),
            vault_ids: Vec::new(),
            skill_refs: None,
            agent_overrides: None,
        }
    }
}

/// Filters and position of one page of `Store::page_sessions`.
#[derive(Debug, Clone, Default)]
pub struct SessionPageQuery {
    pub include_archived: bool,
    pub statuses: Vec<SessionStatus>,
    pub agent_id: Option<String>,
    pub agent_version: Option<u32>,
    /// Only sessions this deployment fired.
    pub deployment_id: Option<String>,
    pub created_gt: Option<String>,
    pub created_gte: Option<String>,
    pub created_lt: Option<String>,
    pub created_lte: Option<String>,
    /// Newest first.
    pub desc: bool,
    /// Start next to this `(created_at, id)`: after it, or before it when `backward`.
    pub after: Option<(String, String)>,
    /// Read the page that precedes `after` in the listing's order (a `prev_page`).
    pub backward: bool,
    pub limit: u32,
}

/// Summary columns updated in the same transaction as the events that change them.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub status: SessionStatus,
    pub stop_reason: Option<StopReason>,
    pub usage: SessionUsage,
    /// The outcomes after the events, when they change them; None leaves the column as is.
    /// An outcome these events end has no `completed_at` yet: the writer stamps it with the
    /// events' commit time, which is their `processed_at`.
    pub outcome_evaluations: Option<Vec<tether_proto::outcome::OutcomeEvaluation>>,
}
