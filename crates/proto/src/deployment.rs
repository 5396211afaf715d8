//! Deployments: a saved agent + environment + initial events, fired as a new session on a
//! schedule or on demand; each fire is recorded as a deployment run (hosted shapes,
//! `shared/reference/managed-agents-orchestration.md` §3). tether adds a one-shot schedule,
//! `{type: "at", time}`, and deployments that fire a workflow run instead of a session's
//! initial events (`workflow`: the plan a workflow file holds, run in a fresh session of the
//! deployment's agent and environment).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::file::Checkout;
use crate::memory::Access;
use crate::vault::Secret;
use crate::workflow::WorkflowSpec;

/// At most this many memory stores and files/repositories per deployment: what each
/// session it fires can mount (a longer list could only fail every fire).
pub const MAX_MEMORY_RESOURCES: usize = 8;
pub const MAX_FILE_RESOURCES: usize = 100;
/// `resources` of a deployment, all kinds together.
pub const MAX_RESOURCES: usize = MAX_MEMORY_RESOURCES + MAX_FILE_RESOURCES;

/// A field that is present, even as `null` (`Some(None)`); absent stays `None` by
/// `#[serde(default)]`. Updates tell "clear it" from "keep it" this way.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// When a deployment fires on its own (absent or null: only on demand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// 5-field POSIX cron (`min hour dom mon dow`, dow 0-7 with 0 and 7 Sunday) matched on the
    /// wall clock of an IANA time zone.
    #[serde(rename = "cron")]
    Cron {
        #[schemars(regex(pattern = crate::schema::NOT_BLANK))]
        expression: String,
        #[schemars(regex(pattern = crate::schema::NOT_BLANK))]
        timezone: String,
    },
    /// tether: fire once, at this RFC 3339 time.
    #[serde(rename = "at")]
    At {
        #[schemars(regex(pattern = crate::schema::NOT_BLANK))]
        time: String,
    },
}

/// A deployment's schedule as answered: the spec plus the last and next fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Schedule {
    /// `cron` or (tether) `at`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `at` schedules: when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// When the most recent scheduled run started (manual runs don't count).
    pub last_run_at: Option<String>,
    /// The next occurrences, at most 5, before jitter (a run starts at or shortly after
    /// each); empty once archived.
    pub upcoming_runs_at: Vec<String>,
}

/// `{type: "agent", id, version}`: an agent version, pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PinnedAgent {
    /// Always `agent`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub version: u32,
}

impl PinnedAgent {
    pub fn new(id: String, version: u32) -> PinnedAgent {
        PinnedAgent {
            kind: "agent".into(),
            id,
            version,
        }
    }
}

/// A deployment's `agent` in a request: an id (or, tether, a name) pins its newest version;
/// `{type: "agent", id, version?}` pins that version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum AgentChoice {
    /// `NAME[@VERSION]` or an id: not blank, a version (if any) in digits.
    Latest(#[schemars(regex(pattern = r"^[^@]*[^@\s\u0085][^@]*(@[0-9]{1,9})?$"))] String),
    Pinned {
        #[serde(rename = "type")]
        #[schemars(regex(pattern = "^agent$"))]
        kind: String,
        #[schemars(regex(pattern = crate::schema::NOT_BLANK))]
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 4294967295u32))]
        version: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Active,
    Paused,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Active => "active",
            DeploymentStatus::Paused => "paused",
        }
    }
}

/// Why a deployment is paused: by a person, or by a scheduled fire's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PausedReason {
    Manual,
    Error { error: ErrorKind },
}

/// `{type}` of an error (a paused reason carries no message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorKind {
    #[serde(rename = "type")]
    pub kind: String,
}

/// One entry of a deployment's `resources` in a request (hosted `Resource` of
/// `deployment.create`/`update`): mounted into every session the deployment fires. A
/// repository's `authorization_token` is a [`Secret`]: sealed when stored, never answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeploymentResourceParam {
    /// An uploaded file, mounted read-only (default `/mnt/session/uploads/<file_id>`).
    File {
        #[schemars(regex(pattern = crate::schema::NOT_BLANK))]
        file_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 1024))]
        mount_path: Option<String>,
    },
    /// A GitHub repository cloned into the workspace (default `/workspace/<repo-name>`).
    GithubRepository {
        /// `https://github.com/OWNER/REPO`.
        #[schemars(regex(pattern = r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/?$"))]
        url: String,
        /// Write-only: sealed with the deployment, used for each fire's clone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authorization_token: Option<Secret>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkout: Option<Checkout>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(regex(pattern = r"^/workspace/[^/]"))]
        mount_path: Option<String>,
    },
    /// A memory store mounted under `/mnt/memory/` (an id; tether: or a store's name).
    MemoryStore {
        #[schemars(regex(pattern = crate::schema::NOT_BLANK))]
        memory_store_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access: Option<Access>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 4096))]
        instructions: Option<String>,
    },
}

impl DeploymentResourceParam {
    /// The entry as answered: the token left out.
    pub fn config(&self) -> DeploymentResource {
        match self.clone() {
            DeploymentResourceParam::File {
                file_id,
                mount_path,
            } => DeploymentResource::File {
                file_id,
                mount_path,
            },
            DeploymentResourceParam::GithubRepository {
                url,
                checkout,
                mount_path,
                ..
            } => DeploymentResource::GithubRepository {
                url,
                checkout,
                mount_path,
            },
            DeploymentResourceParam::MemoryStore {
                memory_store_id,
                access,
                instructions,
            } => DeploymentResource::MemoryStore {
                memory_store_id,
                access,
                instructions,
            },
        }
    }

    /// A repository's token.
    pub fn token(&self) -> Option<&str> {
        match self {
            DeploymentResourceParam::GithubRepository {
                authorization_token: Some(t),
                ..
            } => Some(&t.0),
            _ => None,
        }
    }
}

/// One entry of a deployment's `resources` as answered (hosted
/// `BetaManagedAgentsSessionResourceConfig`): what was given, minus the write-only token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeploymentResource {
    File {
        file_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mount_path: Option<String>,
    },
    GithubRepository {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkout: Option<Checkout>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mount_path: Option<String>,
    },
    MemoryStore {
        /// The store's id (a name given at creation is answered as the id it named).
        memory_store_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access: Option<Access>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instructions: Option<String>,
    },
}

/// A deployment, as every `deployment.*` method and `/v1/deployments` answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Deployment {
    /// `depl_…`
    pub id: String,
    /// Always `deployment`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub name: String,
    pub description: Option<String>,
    pub agent: PinnedAgent,
    pub environment_id: String,
    /// Sent, in order, to each session the deployment starts (empty when it fires a
    /// `workflow`).
    pub initial_events: Vec<Value>,
    /// tether: the workflow each fire runs in a fresh session, instead of initial events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowSpec>,
    /// Mounted into each session it fires (a repository's token is never answered).
    pub resources: Vec<DeploymentResource>,
    pub vault_ids: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// Copied onto each session at creation.
    pub budget: Option<Value>,
    /// None: fires only on demand.
    pub schedule: Option<Schedule>,
    /// Archived deployments report `active` with `archived_at` set.
    pub status: DeploymentStatus,
    /// Non-null exactly when `status` is `paused`.
    pub paused_reason: Option<PausedReason>,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
}

/// `deployment.create`: the hosted create body. Also the file `tether deployments create -f`
/// reads (YAML, JSON or TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    #[schemars(length(min = 1, max = 256), regex(pattern = crate::schema::NOT_BLANK))]
    pub name: String,
    pub agent: AgentChoice,
    /// An environment's id (or, tether, its name).
    #[schemars(regex(pattern = crate::schema::NOT_BLANK))]
    pub environment_id: String,
    /// 1-50 `user.message` or `user.define_outcome` events (at most one outcome). Required
    /// unless `workflow` is given, and never with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub initial_events: Vec<Value>,
    /// tether: instead of `initial_events`, a workflow (the plan a workflow file holds) that
    /// each fire runs in a fresh session of `agent` and `environment_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// `null` is no metadata, as the schema allows.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_empty"
    )]
    #[schemars(with = "crate::schema::Metadata")]
    pub metadata: BTreeMap<String, String>,
    /// Files, GitHub repositories and memory stores mounted into each session it fires
    /// (at most 100 files and repositories and 8 memory stores: what a session takes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 108))]
    pub resources: Option<Vec<DeploymentResourceParam>>,
    /// Vaults (ids or names, each live) whose credentials the fired sessions use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub vault_ids: Option<Vec<String>>,
    /// None: fires only on demand (`POST /v1/deployments/{id}/run`, `tether deployments run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    /// `{type: "limit", max_list_cost: {amount, currency: "USD"}}`, copied onto each session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Value>,
}

/// `deployment.update` changes: absent keeps a field, `null` clears the clearable ones
/// (`description`, `resources`, `vault_ids`, `schedule`, `budget`), lists are replaced whole
/// and `metadata` is a patch (a `null` value deletes the key). `initial_events` and
/// `workflow` each switch the deployment to firing that (they can't come together).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = crate::schema::NOT_BLANK))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::NOT_BLANK))]
    pub environment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50))]
    pub initial_events: Option<Vec<Value>>,
    /// tether: fire this workflow from now on (the initial events are dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowSpec>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>", length(max = 2048))]
    pub description: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::MetadataPatch>")]
    pub metadata: Option<BTreeMap<String, Option<String>>>,
    /// Replaces the resources of the sessions it fires from now on (`null` or `[]`: none).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<Vec<DeploymentResourceParam>>", length(max = 108))]
    pub resources: Option<Option<Vec<DeploymentResourceParam>>>,
    /// The fired sessions' vaults from now on (`null` or `[]`: none).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<Vec<String>>", length(max = 16))]
    pub vault_ids: Option<Option<Vec<String>>>,
    /// `null`: fire only on demand from now on.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<ScheduleSpec>")]
    pub schedule: Option<Option<ScheduleSpec>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<Value>")]
    pub budget: Option<Option<Value>>,
}

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TriggerContext {
    /// `scheduled_at`: the UTC instant cron matched, before jitter.
    Schedule {
        scheduled_at: String,
    },
    Manual,
}

/// `{type, message}` of a run that made no session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// One fire of a deployment: exactly one of `session_id` and `error` is set (both are null
/// only for the moment a fire is under way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeploymentRun {
    /// `drun_…`
    pub id: String,
    /// Always `deployment_run`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub deployment_id: String,
    /// The agent version the run used.
    pub agent: PinnedAgent,
    pub trigger_context: TriggerContext,
    pub session_id: Option<String>,
    /// tether: the workflow run a workflow deployment's fire started (in `session_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_run_id: Option<String>,
    pub error: Option<RunError>,
    pub created_at: String,
}

/// The error types a scheduled fire's failure pauses the deployment for (hosted §3.4); the
/// others (`session_rate_limited_error`, `session_creation_rejected_error`) only fail the run.
pub const AUTO_PAUSE_ERRORS: &[&str] = &[
    "environment_archived_error",
    "environment_not_found_error",
    "agent_archived_error",
    "vault_not_found_error",
    "vault_archived_error",
    "file_not_found_error",
    "memory_store_archived_error",
    "skill_not_found_error",
    "session_resource_not_found_error",
    "workspace_archived_error",
    "organization_disabled_error",
    "self_hosted_resources_unsupported_error",
    "mcp_egress_blocked_error",
    "unknown_error",
];

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}
