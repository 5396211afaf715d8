//! Every endpoint of the HTTP API in one table: how it is reached, what it takes, what it
//! answers and which handler serves it. The router (`mod.rs`) and `/v1/openapi.json`
//! (`openapi.rs`) are both built from [`ROUTES`], so nothing is served undocumented or
//! documented unserved.

use axum::routing::{MethodFilter, MethodRouter, on};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value, json};
use tether_proto::Event;
use tether_proto::agent::{AgentChanges, AgentSpec};
use tether_proto::deployment::{Deployment, DeploymentRun};
use tether_proto::environment::{Environment, EnvironmentChanges, EnvironmentSpec};

use super::events::SendBody;
use super::openapi::{self, StreamItem};
use super::sessions::{CreateBody, UpdateBody};
use super::shapes::{DeletedSession, HostedAgent, HostedSession, Page, SentEvents, SessionPage};
use super::{
    Api, agents, deployments, environments, events, memory, sessions, stream, threads, vaults,
    work, workflows,
};
// files (issue 25)
use super::files;
use tether_proto::file::{
    FileDeleted, FileMetadata, ResourceUpdate, SessionResource, SessionResourceDeleted,
};
use tether_proto::memory::{
    Memory, MemoryChanges, MemoryDeleted, MemoryItem, MemoryStore, MemoryStoreChanges,
    MemoryStoreDeleted, MemoryStoreSpec, MemoryVersion, NewMemory,
};
use tether_proto::method::EnvironmentDeleted;
use tether_proto::vault::{
    Credential, CredentialChanges, CredentialSpec, CredentialValidation, Deleted, Vault,
    VaultChanges, VaultSpec,
};
use tether_proto::work::{Work, WorkHeartbeat, WorkQueueStats};
// skills (issue 25)
use super::skills;
// MCP elicitation (issue 25)
use super::elicitations;
use tether_proto::skill::{Skill, SkillDeleted, SkillVersion};
use tether_proto::workflow::WorkflowRun;

pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

pub fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    /// The key of an operation under its path in the document.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Delete => "delete",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// What an endpoint answers with a 200.
#[derive(Clone, Copy)]
pub enum Answer {
    /// One JSON object of this schema.
    Json(SchemaFn),
    /// `text/event-stream` of items of this schema.
    Sse(SchemaFn),
    /// The document itself, which doesn't describe its own shape.
    Document,
    /// Raw bytes of any type (a file's content).
    Bytes,
}

/// Operations whose body is `multipart/form-data` (of the route's `body` schema), not JSON.
pub const MULTIPART_BODIES: &[&str] = &["files.upload", "skills.create", "skills.versions.create"];

/// One endpoint: how it is reached, what it takes, what it answers, who serves it.
pub struct Route {
    pub verb: Verb,
    pub path: &'static str,
    /// `operationId`.
    pub id: &'static str,
    pub summary: &'static str,
    pub query: &'static [(&'static str, Param)],
    pub body: Option<SchemaFn>,
    pub answer: Answer,
    /// The handler, mounted on the method it is given (always this route's `verb`).
    handler: fn(MethodFilter) -> MethodRouter<Api>,
}

impl Route {
    /// The handler on this route's method, for `Router::route(self.path, …)`.
    pub fn method_router(&self) -> MethodRouter<Api> {
        (self.handler)(self.verb.filter())
    }
}

/// A query parameter's schema: the values the handler accepts (see `query.rs`).
#[derive(Clone, Copy)]
pub enum Param {
    /// `limit`: 1 to the maximum.
    Limit(u32),
    /// An opaque cursor from `next_page`/`prev_page`.
    Page,
    Order,
    Bool,
    /// RFC 3339, any offset.
    Time,
    Text,
    /// A whole number that fits a u32 (agent versions).
    Version,
    /// A whole number (event seqs).
    Seq,
    /// Repeated `key[]=`, each one of these values.
    List(&'static [&'static str]),
    /// Repeated `key[]=`, any strings.
    Strings,
    /// One of these values.
    Enum(&'static [&'static str]),
    /// A string matching this pattern.
    Pattern(&'static str),
}

impl Param {
    pub fn schema(self) -> Value {
        match self {
            Param::Limit(max) => json!({ "type": "integer", "minimum": 1, "maximum": max }),
            Param::Page => json!({ "type": "string", "pattern": "^page_([0-9a-f]{2})+$" }),
            Param::Order => json!({ "type": "string", "enum": ["asc", "desc"] }),
            Param::Bool => json!({ "type": "boolean" }),
            Param::Time => json!({ "type": "string", "format": "date-time" }),
            Param::Text => json!({ "type": "string" }),
            Param::Version => json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX }),
            Param::Seq => json!({ "type": "integer", "minimum": 0, "maximum": i64::MAX }),
            Param::List(values) => {
                json!({ "type": "array", "items": { "type": "string", "enum": values } })
            }
            Param::Strings => json!({ "type": "array", "items": { "type": "string" } }),
            Param::Enum(values) => json!({ "type": "string", "enum": values }),
            Param::Pattern(p) => json!({ "type": "string", "pattern": p }),
        }
    }
}

/// `statuses[]` values.
const STATUSES: &[&str] = &["rescheduling", "running", "idle", "terminated"];

const PAGED: &[(&str, Param)] = &[
    ("limit", Param::Limit(100)),
    ("page", Param::Page),
    ("order", Param::Order),
    ("include_archived", Param::Bool),
    ("created_at[gte]", Param::Time),
    ("created_at[lte]", Param::Time),
];

/// Memory `view` values.
const VIEWS: &[&str] = &["basic", "full"];
/// A memory `path_prefix`: `/`, or whole segments each followed by `/`.
const PATH_PREFIX: &str = r"^/((?!\.\.?/)[^/\u0000-\u001f\u007f-\u009f\u2028\u2029]+/){0,19}$";
/// A `content_sha256`.
const SHA256: &str = "^[0-9a-f]{64}$";

pub const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Post,
        path: "/v1/agents",
        id: "agents.create",
        summary: "Create an agent (version 1)",
        query: &[],
        body: Some(of::<AgentSpec>),
        answer: Answer::Json(of::<HostedAgent>),
        handler: |m| on(m, agents::create),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/agents",
        id: "agents.list",
        summary: "List agents (newest version of each)",
        query: PAGED,
        body: None,
        answer: Answer::Json(of::<Page<HostedAgent>>),
        handler: |m| on(m, agents::list),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/agents/{agent_id}",
        id: "agents.retrieve",
        summary: "Get an agent; `?version=N` for an older version",
        query: &[("version", Param::Version)],
        body: None,
        answer: Answer::Json(of::<HostedAgent>),
        handler: |m| on(m, agents::retrieve),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/agents/{agent_id}",
        id: "agents.update",
        summary: "Create a new version; `version`, if given, is an optimistic lock (omitted: applies to the newest), `metadata` a patch",
        query: &[],
        body: Some(of::<AgentChanges>),
        answer: Answer::Json(of::<HostedAgent>),
        handler: |m| on(m, agents::update),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/agents/{agent_id}/archive",
        id: "agents.archive",
        summary: "Archive an agent (agents have no delete)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<HostedAgent>),
        handler: |m| on(m, agents::archive),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/agents/{agent_id}/versions",
        id: "agents.versions",
        summary: "List an agent's versions",
        query: PAGED,
        body: None,
        answer: Answer::Json(of::<Page<HostedAgent>>),
        handler: |m| on(m, agents::versions),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/environments",
        id: "environments.create",
        summary: "Create an environment (starts its layer build)",
        query: &[],
        body: Some(of::<EnvironmentSpec>),
        answer: Answer::Json(of::<Environment>),
        handler: |m| on(m, environments::create),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/environments",
        id: "environments.list",
        summary: "List environments",
        query: PAGED,
        body: None,
        answer: Answer::Json(of::<Page<Environment>>),
        handler: |m| on(m, environments::list),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/environments/{environment_id}",
        id: "environments.retrieve",
        summary: "Get an environment",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Environment>),
        handler: |m| on(m, environments::retrieve),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/environments/{environment_id}",
        id: "environments.update",
        summary: "Update an environment (new sessions get the new config)",
        query: &[],
        body: Some(of::<EnvironmentChanges>),
        answer: Answer::Json(of::<Environment>),
        handler: |m| on(m, environments::update),
    },
    Route {
        verb: Verb::Delete,
        path: "/v1/environments/{environment_id}",
        id: "environments.delete",
        summary: "Delete an environment",
        query: &[],
        body: None,
        answer: Answer::Json(of::<EnvironmentDeleted>),
        handler: |m| on(m, environments::delete),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/environments/{environment_id}/archive",
        id: "environments.archive",
        summary: "Archive an environment",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Environment>),
        handler: |m| on(m, environments::archive),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/sessions",
        id: "sessions.create",
        summary: "Create a session",
        query: &[],
        body: Some(of::<CreateBody>),
        answer: Answer::Json(of::<HostedSession>),
        handler: |m| on(m, sessions::create),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions",
        id: "sessions.list",
        summary: "List sessions, newest first; pages both ways",
        query: &[
            ("limit", Param::Limit(100)),
            ("page", Param::Page),
            ("order", Param::Order),
            ("include_archived", Param::Bool),
            ("statuses[]", Param::List(STATUSES)),
            ("agent_id", Param::Text),
            ("agent_version", Param::Version),
            ("deployment_id", Param::Text),
            ("created_at[gt]", Param::Time),
            ("created_at[gte]", Param::Time),
            ("created_at[lt]", Param::Time),
            ("created_at[lte]", Param::Time),
        ],
        body: None,
        answer: Answer::Json(of::<SessionPage>),
        handler: |m| on(m, sessions::list),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}",
        id: "sessions.retrieve",
        summary: "Get a session",
        query: &[],
        body: None,
        answer: Answer::Json(of::<HostedSession>),
        handler: |m| on(m, sessions::retrieve),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/sessions/{session_id}",
        id: "sessions.update",
        summary: "Update title, metadata (a patch) or budget",
        query: &[],
        body: Some(of::<UpdateBody>),
        answer: Answer::Json(of::<HostedSession>),
        handler: |m| on(m, sessions::update),
    },
    Route {
        verb: Verb::Delete,
        path: "/v1/sessions/{session_id}",
        id: "sessions.delete",
        summary: "Delete a session with its log and workspace",
        query: &[],
        body: None,
        answer: Answer::Json(of::<DeletedSession>),
        handler: |m| on(m, sessions::delete),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/sessions/{session_id}/archive",
        id: "sessions.archive",
        summary: "Archive a session (read-only from then on)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<HostedSession>),
        handler: |m| on(m, sessions::archive),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}/events",
        id: "sessions.events.list",
        summary: "A session's event history, oldest first; tether's own event types (`span.tool_call_start`) only with `tether_events=true`",
        query: &[
            ("limit", Param::Limit(1000)),
            ("page", Param::Page),
            ("order", Param::Order),
            ("types[]", Param::Strings),
            ("created_at[gte]", Param::Time),
            ("created_at[lte]", Param::Time),
            (events::TETHER_EVENTS, Param::Bool),
            ("after_seq", Param::Seq),
        ],
        body: None,
        answer: Answer::Json(of::<Page<Event>>),
        handler: |m| on(m, events::list),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/sessions/{session_id}/events",
        id: "sessions.events.send",
        summary: "Send user events",
        query: &[],
        body: Some(of::<SendBody>),
        answer: Answer::Json(of::<SentEvents>),
        handler: |m| on(m, events::send),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}/events/stream",
        id: "sessions.events.stream",
        summary: "Server-Sent Events: `id:` is the event's seq; resume with Last-Event-ID or ?after_seq=; `event_deltas[]` opts into previews; `tether_events=true` adds tether's own event types",
        query: &[
            (
                "event_deltas[]",
                Param::List(&["agent.message", "agent.thinking"]),
            ),
            ("after_seq", Param::Seq),
            (events::TETHER_EVENTS, Param::Bool),
        ],
        body: None,
        answer: Answer::Sse(of::<StreamItem>),
        handler: |m| on(m, stream::stream),
    },
    // memory stores (issue 24)
    Route {
        verb: Verb::Post,
        path: "/v1/memory_stores",
        id: "memory_stores.create",
        summary: "Create a memory store",
        query: &[],
        body: Some(of::<MemoryStoreSpec>),
        answer: Answer::Json(of::<MemoryStore>),
        handler: |m| on(m, memory::create_store),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/memory_stores",
        id: "memory_stores.list",
        summary: "List memory stores, oldest first",
        query: &[
            ("limit", Param::Limit(100)),
            ("page", Param::Page),
            ("include_archived", Param::Bool),
            ("created_at[gte]", Param::Time),
            ("created_at[lte]", Param::Time),
        ],
        body: None,
        answer: Answer::Json(of::<Page<MemoryStore>>),
        handler: |m| on(m, memory::list_stores),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/memory_stores/{memory_store_id}",
        id: "memory_stores.retrieve",
        summary: "Get a memory store",
        query: &[],
        body: None,
        answer: Answer::Json(of::<MemoryStore>),
        handler: |m| on(m, memory::retrieve_store),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/memory_stores/{memory_store_id}",
        id: "memory_stores.update",
        summary: "Update name, description (\"\" clears) or metadata (a patch); not once archived",
        query: &[],
        body: Some(of::<MemoryStoreChanges>),
        answer: Answer::Json(of::<MemoryStore>),
        handler: |m| on(m, memory::update_store),
    },
    Route {
        verb: Verb::Delete,
        path: "/v1/memory_stores/{memory_store_id}",
        id: "memory_stores.delete",
        summary: "Delete a memory store with its memories and versions (irreversible)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<MemoryStoreDeleted>),
        handler: |m| on(m, memory::delete_store),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/memory_stores/{memory_store_id}/archive",
        id: "memory_stores.archive",
        summary: "Archive a memory store (irreversible; it stays readable)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<MemoryStore>),
        handler: |m| on(m, memory::archive_store),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/memory_stores/{memory_store_id}/memories",
        id: "memory_stores.memories.create",
        summary: "Create a memory at a free path",
        query: &[("view", Param::Enum(VIEWS))],
        body: Some(of::<NewMemory>),
        answer: Answer::Json(of::<Memory>),
        handler: |m| on(m, memory::create_memory),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/memory_stores/{memory_store_id}/memories",
        id: "memory_stores.memories.list",
        summary: "List memories by path; `depth` rolls deeper ones up into memory_prefix items",
        query: &[
            ("path_prefix", Param::Pattern(PATH_PREFIX)),
            ("depth", Param::Version),
            ("limit", Param::Limit(100)),
            ("page", Param::Page),
            ("view", Param::Enum(VIEWS)),
        ],
        body: None,
        answer: Answer::Json(of::<Page<MemoryItem>>),
        handler: |m| on(m, memory::list_memories),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/memory_stores/{memory_store_id}/memories/{memory_id}",
        id: "memory_stores.memories.retrieve",
        summary: "Get a memory (content included unless view=basic)",
        query: &[("view", Param::Enum(VIEWS))],
        body: None,
        answer: Answer::Json(of::<Memory>),
        handler: |m| on(m, memory::retrieve_memory),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/memory_stores/{memory_store_id}/memories/{memory_id}",
        id: "memory_stores.memories.update",
        summary: "New content and/or path; a content_sha256 precondition that fails is a 409",
        query: &[("view", Param::Enum(VIEWS))],
        body: Some(of::<MemoryChanges>),
        answer: Answer::Json(of::<Memory>),
        handler: |m| on(m, memory::update_memory),
    },
    Route {
        verb: Verb::Delete,
        path: "/v1/memory_stores/{memory_store_id}/memories/{memory_id}",
        id: "memory_stores.memories.delete",
        summary: "Delete a memory (its versions stay); `expected_content_sha256` that fails is a 409",
        query: &[("expected_content_sha256", Param::Pattern(SHA256))],
        body: None,
        answer: Answer::Json(of::<MemoryDeleted>),
        handler: |m| on(m, memory::delete_memory),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/memory_stores/{memory_store_id}/memory_versions",
        id: "memory_stores.memory_versions.list",
        summary: "A store's versions, newest first",
        query: &[
            ("memory_id", Param::Text),
            (
                "operation",
                Param::Enum(&["created", "modified", "deleted"]),
            ),
            ("session_id", Param::Text),
            ("api_key_id", Param::Text),
            ("service_account_id", Param::Text),
            ("created_at[gte]", Param::Time),
            ("created_at[lte]", Param::Time),
            ("limit", Param::Limit(100)),
            ("page", Param::Page),
            ("view", Param::Enum(VIEWS)),
        ],
        body: None,
        answer: Answer::Json(of::<Page<MemoryVersion>>),
        handler: |m| on(m, memory::list_versions),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}",
        id: "memory_stores.memory_versions.retrieve",
        summary: "Get a memory version",
        query: &[("view", Param::Enum(VIEWS))],
        body: None,
        answer: Answer::Json(of::<MemoryVersion>),
        handler: |m| on(m, memory::retrieve_version),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}/redact",
        id: "memory_stores.memory_versions.redact",
        summary: "Wipe a past version's content and path (not the current version's)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<MemoryVersion>),
        handler: |m| on(m, memory::redact_version),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}/threads",
        id: "sessions.threads.list",
        summary: "A session's threads: the primary first, then child threads in creation order",
        query: &[
            ("limit", Param::Limit(1000)),
            ("page", Param::Page),
            ("statuses[]", Param::List(STATUSES)),
        ],
        body: None,
        answer: Answer::Json(of::<Page<tether_proto::thread::SessionThread>>),
        handler: |m| on(m, threads::list),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}/threads/{thread_id}",
        id: "sessions.threads.retrieve",
        summary: "One thread (its sthr_ id, or tether: its agent's name)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<tether_proto::thread::SessionThread>),
        handler: |m| on(m, threads::retrieve),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/sessions/{session_id}/threads/{thread_id}/archive",
        id: "sessions.threads.archive",
        summary: "Archive an idle child thread; it frees a slot of the session's 25",
        query: &[],
        body: None,
        answer: Answer::Json(of::<tether_proto::thread::SessionThread>),
        handler: |m| on(m, threads::archive),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}/threads/{thread_id}/events",
        id: "sessions.threads.events.list",
        summary: "A thread's own event history, oldest first",
        query: &[
            ("limit", Param::Limit(1000)),
            ("page", Param::Page),
            ("order", Param::Order),
            ("types[]", Param::Strings),
            ("created_at[gte]", Param::Time),
            ("created_at[lte]", Param::Time),
        ],
        body: None,
        answer: Answer::Json(of::<Page<Event>>),
        handler: |m| on(m, threads::events),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}/threads/{thread_id}/stream",
        id: "sessions.threads.stream",
        summary: "Server-Sent Events of a thread's own stream, like the session's",
        query: &[
            (
                "event_deltas[]",
                Param::List(&["agent.message", "agent.thinking"]),
            ),
            ("after_seq", Param::Seq),
        ],
        body: None,
        answer: Answer::Sse(of::<StreamItem>),
        handler: |m| on(m, threads::stream),
    },
    // Deployments (reference §3.1).
    Route {
        verb: Verb::Post,
        path: "/v1/deployments",
        id: "deployments.create",
        summary: "Create a deployment: an agent + environment + initial events, fired on a schedule or on demand",
        query: &[],
        body: Some(of::<deployments::CreateDoc>),
        answer: Answer::Json(of::<Deployment>),
        handler: |m| on(m, deployments::create),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/deployments",
        id: "deployments.list",
        summary: "List deployments, newest first",
        query: &[
            ("limit", Param::Limit(100)),
            ("page", Param::Page),
            ("agent_id", Param::Text),
            ("include_archived", Param::Bool),
            ("status", Param::Enum(&["active", "paused"])),
            ("created_at[gte]", Param::Time),
            ("created_at[lte]", Param::Time),
        ],
        body: None,
        answer: Answer::Json(of::<Page<Deployment>>),
        handler: |m| on(m, deployments::list),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/deployments/{deployment_id}",
        id: "deployments.retrieve",
        summary: "Get a deployment, with its next fires",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Deployment>),
        handler: |m| on(m, deployments::retrieve),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/deployments/{deployment_id}",
        id: "deployments.update",
        summary: "Update a deployment: absent keeps, null clears, metadata is a patch",
        query: &[],
        body: Some(of::<deployments::UpdateDoc>),
        answer: Answer::Json(of::<Deployment>),
        handler: |m| on(m, deployments::update),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/deployments/{deployment_id}/archive",
        id: "deployments.archive",
        summary: "Archive a deployment (no more fires; terminal)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Deployment>),
        handler: |m| on(m, deployments::archive),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/deployments/{deployment_id}/pause",
        id: "deployments.pause",
        summary: "Pause scheduled fires (manual runs still work)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Deployment>),
        handler: |m| on(m, deployments::pause),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/deployments/{deployment_id}/unpause",
        id: "deployments.unpause",
        summary: "Resume at the next occurrence (nothing missed is run)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Deployment>),
        handler: |m| on(m, deployments::unpause),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/deployments/{deployment_id}/run",
        id: "deployments.run",
        summary: "Run a deployment now",
        query: &[],
        body: None,
        answer: Answer::Json(of::<DeploymentRun>),
        handler: |m| on(m, deployments::run),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/deployment_runs",
        id: "deployment_runs.list",
        summary: "List deployment runs, newest first",
        query: &[
            ("limit", Param::Limit(1000)),
            ("page", Param::Page),
            ("deployment_id", Param::Text),
            ("has_error", Param::Bool),
            ("trigger_type", Param::Enum(&["schedule", "manual"])),
            ("created_at[gt]", Param::Time),
            ("created_at[gte]", Param::Time),
            ("created_at[lt]", Param::Time),
            ("created_at[lte]", Param::Time),
        ],
        body: None,
        answer: Answer::Json(of::<Page<DeploymentRun>>),
        handler: |m| on(m, deployments::runs),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/deployment_runs/{deployment_run_id}",
        id: "deployment_runs.retrieve",
        summary: "Get a deployment run",
        query: &[],
        body: None,
        answer: Answer::Json(of::<DeploymentRun>),
        handler: |m| on(m, deployments::retrieve_run),
    },
    // Workflow runs (tether extension: hosted runs have no endpoints).
    Route {
        verb: Verb::Post,
        path: "/v1/sessions/{session_id}/workflow_runs",
        id: "workflow_runs.create",
        summary: "tether: start a workflow run (a task graph on the session's threads) from a workflow file as JSON",
        query: &[],
        body: Some(of::<tether_proto::workflow::WorkflowSpec>),
        answer: Answer::Json(of::<WorkflowRun>),
        handler: |m| on(m, workflows::create),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}/workflow_runs",
        id: "workflow_runs.list",
        summary: "tether: a session's workflow runs, ended ones included, oldest first",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Page<WorkflowRun>>),
        handler: |m| on(m, workflows::list),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/workflow_runs/{workflow_run_id}",
        id: "workflow_runs.retrieve",
        summary: "tether: a workflow run with every task's status, attempts, verdicts and output",
        query: &[],
        body: None,
        answer: Answer::Json(of::<WorkflowRun>),
        handler: |m| on(m, workflows::retrieve),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/workflow_runs/{workflow_run_id}/stop",
        id: "workflow_runs.stop",
        summary: "tether: interrupt a running run's threads; it goes idle until resumed",
        query: &[],
        body: None,
        answer: Answer::Json(of::<WorkflowRun>),
        handler: |m| on(m, workflows::stop),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/workflow_runs/{workflow_run_id}/resume",
        id: "workflow_runs.resume",
        summary: "tether: start an idle run again where it stopped",
        query: &[],
        body: None,
        answer: Answer::Json(of::<WorkflowRun>),
        handler: |m| on(m, workflows::resume),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/workflow_runs/{workflow_run_id}/tasks/{task_id}/answer",
        id: "workflow_runs.answer",
        summary: "tether: approve or deny a checkpoint task waiting for an answer",
        query: &[],
        body: Some(of::<workflows::AnswerBody>),
        answer: Answer::Json(of::<WorkflowRun>),
        handler: |m| on(m, workflows::answer),
    },
    // self-hosted environments' work queues (issue 26)
    Route {
        verb: Verb::Get,
        path: "/v1/environments/{environment_id}/work/poll",
        id: "environments.work.poll",
        summary: "Long-poll for a work item (environment key); `null` when none arrived within block_ms",
        query: &[
            ("block_ms", Param::Pattern("^[1-9][0-9]{0,2}$")),
            ("reclaim_older_than_ms", Param::Seq),
        ],
        body: None,
        answer: Answer::Json(of::<Option<Work>>),
        handler: |m| on(m, work::poll),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/environments/{environment_id}/work",
        id: "environments.work.list",
        summary: "List an environment's work items, newest first",
        query: &[("limit", Param::Limit(100)), ("page", Param::Page)],
        body: None,
        answer: Answer::Json(of::<Page<Work>>),
        handler: |m| on(m, work::list),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/environments/{environment_id}/work/stats",
        id: "environments.work.stats",
        summary: "The work queue's depth and the workers polling it",
        query: &[],
        body: None,
        answer: Answer::Json(of::<WorkQueueStats>),
        handler: |m| on(m, work::stats),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/environments/{environment_id}/work/{work_id}",
        id: "environments.work.retrieve",
        summary: "Get a work item",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Work>),
        handler: |m| on(m, work::retrieve),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/environments/{environment_id}/work/{work_id}",
        id: "environments.work.update",
        summary: "Merge a work item's metadata (null deletes a key)",
        query: &[],
        body: Some(of::<work::UpdateWork>),
        answer: Answer::Json(of::<Work>),
        handler: |m| on(m, work::update),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/environments/{environment_id}/work/{work_id}/ack",
        id: "environments.work.ack",
        summary: "Take a polled work item off the queue and start its lease",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Work>),
        handler: |m| on(m, work::ack),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/environments/{environment_id}/work/{work_id}/heartbeat",
        id: "environments.work.heartbeat",
        summary: "Extend a work item's lease; 412 when expected_last_heartbeat is not the stored one",
        query: &[
            ("desired_ttl_seconds", Param::Seq),
            ("expected_last_heartbeat", Param::Text),
        ],
        body: None,
        answer: Answer::Json(of::<WorkHeartbeat>),
        handler: |m| on(m, work::heartbeat),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/environments/{environment_id}/work/{work_id}/stop",
        id: "environments.work.stop",
        summary: "Stop a work item (force: at once; else its worker is asked to)",
        query: &[],
        body: Some(of::<work::StopWork>),
        answer: Answer::Json(of::<Work>),
        handler: |m| on(m, work::stop),
    },
    // files (issue 25)
    Route {
        verb: Verb::Post,
        path: "/v1/files",
        id: "files.upload",
        summary: "Upload a file (multipart/form-data, the file in a part named `file`)",
        query: &[],
        body: Some(of::<files::FileUpload>),
        answer: Answer::Json(of::<FileMetadata>),
        // Its own limit ([files] max_bytes), checked while the upload streams to disk.
        handler: |m| on(m, files::upload).layer(axum::extract::DefaultBodyLimit::disable()),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/files",
        id: "files.list",
        summary: "List files, newest first; `scope_id` = a session: only its outputs",
        query: &[
            ("limit", Param::Limit(1000)),
            ("page", Param::Page),
            ("scope_id", Param::Text),
        ],
        body: None,
        answer: Answer::Json(of::<Page<FileMetadata>>),
        handler: |m| on(m, files::list),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/files/{file_id}",
        id: "files.retrieve_metadata",
        summary: "Get a file's metadata",
        query: &[],
        body: None,
        answer: Answer::Json(of::<FileMetadata>),
        handler: |m| on(m, files::retrieve),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/files/{file_id}/content",
        id: "files.download",
        summary: "Download a file's content",
        query: &[],
        body: None,
        answer: Answer::Bytes,
        handler: |m| on(m, files::download),
    },
    Route {
        verb: Verb::Delete,
        path: "/v1/files/{file_id}",
        id: "files.delete",
        summary: "Delete a file (sessions that mount it keep it until they are deleted)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<FileDeleted>),
        handler: |m| on(m, files::delete),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}/resources",
        id: "sessions.resources.list",
        summary: "A session's resources (files, repositories), oldest first",
        query: &[("limit", Param::Limit(1000)), ("page", Param::Page)],
        body: None,
        answer: Answer::Json(of::<Page<SessionResource>>),
        handler: |m| on(m, files::list_resources),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/sessions/{session_id}/resources",
        id: "sessions.resources.add",
        summary: "Mount a file read-only in a session (seen from its next load)",
        query: &[],
        body: Some(of::<files::AddResource>),
        answer: Answer::Json(of::<SessionResource>),
        handler: |m| on(m, files::add_resource),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}/resources/{resource_id}",
        id: "sessions.resources.retrieve",
        summary: "Get a session's resource",
        query: &[],
        body: None,
        answer: Answer::Json(of::<SessionResource>),
        handler: |m| on(m, files::retrieve_resource),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/sessions/{session_id}/resources/{resource_id}",
        id: "sessions.resources.update",
        summary: "A repository's new token (tetherd clones once, at creation, and keeps no token)",
        query: &[],
        body: Some(of::<ResourceUpdate>),
        answer: Answer::Json(of::<SessionResource>),
        handler: |m| on(m, files::update_resource),
    },
    Route {
        verb: Verb::Delete,
        path: "/v1/sessions/{session_id}/resources/{resource_id}",
        id: "sessions.resources.delete",
        summary: "Remove a session's resource",
        query: &[],
        body: None,
        answer: Answer::Json(of::<SessionResourceDeleted>),
        handler: |m| on(m, files::delete_resource),
    },
    // vaults and credentials (issue 25)
    Route {
        verb: Verb::Post,
        path: "/v1/vaults",
        id: "vaults.create",
        summary: "Create a vault (a named set of credentials sessions use by vault_ids)",
        query: &[],
        body: Some(of::<VaultSpec>),
        answer: Answer::Json(of::<Vault>),
        handler: |m| on(m, vaults::create),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/vaults",
        id: "vaults.list",
        summary: "List vaults, oldest first",
        query: &[
            ("limit", Param::Limit(100)),
            ("page", Param::Page),
            ("include_archived", Param::Bool),
        ],
        body: None,
        answer: Answer::Json(of::<Page<Vault>>),
        handler: |m| on(m, vaults::list),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/vaults/{vault_id}",
        id: "vaults.retrieve",
        summary: "Get a vault",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Vault>),
        handler: |m| on(m, vaults::retrieve),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/vaults/{vault_id}",
        id: "vaults.update",
        summary: "Update display_name or metadata (a patch); not once archived",
        query: &[],
        body: Some(of::<VaultChanges>),
        answer: Answer::Json(of::<Vault>),
        handler: |m| on(m, vaults::update),
    },
    Route {
        verb: Verb::Delete,
        path: "/v1/vaults/{vault_id}",
        id: "vaults.delete",
        summary: "Delete a vault with its credentials",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Deleted>),
        handler: |m| on(m, vaults::delete),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/vaults/{vault_id}/archive",
        id: "vaults.archive",
        summary: "Archive a vault (new sessions can't use it)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Vault>),
        handler: |m| on(m, vaults::archive),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/vaults/{vault_id}/credentials",
        id: "vaults.credentials.create",
        summary: "Add a credential; its secret is write-only (sealed at rest, never answered)",
        query: &[],
        body: Some(of::<CredentialSpec>),
        answer: Answer::Json(of::<Credential>),
        handler: |m| on(m, vaults::create_credential),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/vaults/{vault_id}/credentials",
        id: "vaults.credentials.list",
        summary: "List a vault's credentials, oldest first",
        query: &[
            ("limit", Param::Limit(100)),
            ("page", Param::Page),
            ("include_archived", Param::Bool),
        ],
        body: None,
        answer: Answer::Json(of::<Page<Credential>>),
        handler: |m| on(m, vaults::list_credentials),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/vaults/{vault_id}/credentials/{credential_id}",
        id: "vaults.credentials.retrieve",
        summary: "Get a credential (never its secret)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Credential>),
        handler: |m| on(m, vaults::retrieve_credential),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/vaults/{vault_id}/credentials/{credential_id}",
        id: "vaults.credentials.update",
        summary: "Update a credential; auth.type must be the stored one, metadata is a patch",
        query: &[],
        body: Some(of::<CredentialChanges>),
        answer: Answer::Json(of::<Credential>),
        handler: |m| on(m, vaults::update_credential),
    },
    Route {
        verb: Verb::Delete,
        path: "/v1/vaults/{vault_id}/credentials/{credential_id}",
        id: "vaults.credentials.delete",
        summary: "Delete a credential",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Deleted>),
        handler: |m| on(m, vaults::delete_credential),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/vaults/{vault_id}/credentials/{credential_id}/archive",
        id: "vaults.credentials.archive",
        summary: "Archive a credential (its secret is erased)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Credential>),
        handler: |m| on(m, vaults::archive_credential),
    },
    // skills (issue 25)
    Route {
        verb: Verb::Post,
        path: "/v1/skills",
        id: "skills.create",
        summary: "Upload a skill: one directory's files (parts `files[]`, filenames are paths), SKILL.md with front matter `name` and `description` among them",
        query: &[],
        body: Some(of::<skills::SkillUpload>),
        answer: Answer::Json(of::<Skill>),
        // Its own limit (tether_proto::skill::MAX_SKILL_BYTES), counted while it is read.
        handler: |m| on(m, skills::create).layer(axum::extract::DefaultBodyLimit::disable()),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/skills",
        id: "skills.list",
        summary: "List skills, newest first (custom ones: tetherd ships no others)",
        query: &[
            ("limit", Param::Limit(1000)),
            ("page", Param::Page),
            ("source", Param::Text),
        ],
        body: None,
        answer: Answer::Json(of::<Page<Skill>>),
        handler: |m| on(m, skills::list),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/skills/{skill_id}",
        id: "skills.retrieve",
        summary: "Get a skill",
        query: &[],
        body: None,
        answer: Answer::Json(of::<Skill>),
        handler: |m| on(m, skills::retrieve),
    },
    Route {
        verb: Verb::Delete,
        path: "/v1/skills/{skill_id}",
        id: "skills.delete",
        summary: "Delete a skill with all its versions",
        query: &[],
        body: None,
        answer: Answer::Json(of::<SkillDeleted>),
        handler: |m| on(m, skills::delete),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/skills/{skill_id}/versions",
        id: "skills.versions.create",
        summary: "Upload a new version of a skill (its SKILL.md keeps the skill's name)",
        query: &[],
        body: Some(of::<skills::VersionUpload>),
        answer: Answer::Json(of::<SkillVersion>),
        handler: |m| {
            on(m, skills::create_version).layer(axum::extract::DefaultBodyLimit::disable())
        },
    },
    Route {
        verb: Verb::Get,
        path: "/v1/skills/{skill_id}/versions",
        id: "skills.versions.list",
        summary: "List a skill's versions, newest first",
        query: &[("limit", Param::Limit(1000)), ("page", Param::Page)],
        body: None,
        answer: Answer::Json(of::<Page<SkillVersion>>),
        handler: |m| on(m, skills::list_versions),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/skills/{skill_id}/versions/{version}",
        id: "skills.versions.retrieve",
        summary: "Get a version of a skill (`latest` for the newest)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<SkillVersion>),
        handler: |m| on(m, skills::retrieve_version),
    },
    Route {
        verb: Verb::Delete,
        path: "/v1/skills/{skill_id}/versions/{version}",
        id: "skills.versions.delete",
        summary: "Delete a version of a skill (not its only one: delete the skill)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<SkillDeleted>),
        handler: |m| on(m, skills::delete_version),
    },
    // mcp_oauth validation (issue 25, mcpauth)
    Route {
        verb: Verb::Post,
        path: "/v1/vaults/{vault_id}/credentials/{credential_id}/mcp_oauth_validate",
        id: "vaults.credentials.mcp_oauth_validate",
        summary: "Probe an mcp_oauth credential against its MCP server (refreshing a refused token)",
        query: &[],
        body: None,
        answer: Answer::Json(of::<CredentialValidation>),
        handler: |m| on(m, vaults::validate_credential),
    },
    Route {
        verb: Verb::Get,
        path: "/v1/openapi.json",
        id: "openapi",
        summary: "This document",
        query: &[],
        body: None,
        answer: Answer::Document,
        handler: |m| on(m, openapi::document),
    },
    // MCP elicitation (issue 25)
    Route {
        verb: Verb::Get,
        path: "/v1/sessions/{session_id}/elicitations",
        id: "sessions.elicitations.list",
        summary: "tether: the questions the session's MCP servers asked the user during tool calls (elicitations), oldest first; `status` pending (default), answered or all",
        query: &[("status", Param::Enum(elicitations::STATUSES))],
        body: None,
        answer: Answer::Json(of::<Page<tether_proto::elicitation::Elicitation>>),
        handler: |m| on(m, elicitations::list),
    },
    Route {
        verb: Verb::Post,
        path: "/v1/sessions/{session_id}/elicitations/{elicitation_id}",
        id: "sessions.elicitations.answer",
        summary: "tether: answer a pending elicitation: accept with content matching its requested schema, decline, or cancel; the first answer wins (409 after)",
        query: &[],
        body: Some(of::<tether_proto::elicitation::ElicitationReply>),
        answer: Answer::Json(of::<tether_proto::elicitation::Elicitation>),
        handler: |m| on(m, elicitations::answer),
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use serde_json::Value;
    use tether_proto::Paths;

    use super::*;
    use crate::config::Config;
    use crate::runtime::Runtime;
    use crate::store::Store;

    /// Every `(method, path)` the document lists.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                ops.insert((method.clone(), path.clone()));
            }
        }
        ops
    }

    #[test]
    fn the_document_lists_the_table_and_nothing_else() {
        let doc = openapi::build();
        let table: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.verb.name().to_string(), r.path.to_string()))
            .collect();
        assert_eq!(
            table.len(),
            ROUTES.len(),
            "a method and path twice in the table"
        );
        assert_eq!(documented(&doc), table);
        let ids: BTreeSet<&str> = ROUTES.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), ROUTES.len(), "operation ids are unique");
        for r in ROUTES {
            assert_eq!(
                doc["paths"][r.path][r.verb.name()]["operationId"],
                r.id,
                "{} {}",
                r.verb.name(),
                r.path
            );
        }
    }

    /// The built router against its own `/v1/openapi.json`: every documented operation is
    /// served (it reaches a handler, not the 404/405 fallbacks), and every other method on a
    /// documented path is a 405.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_router_serves_exactly_what_the_document_lists() {
        crate::provider::http::install_crypto_provider();
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().display().to_string();
        let paths = Paths::resolve(|k| (k == "TETHER_HOME").then(|| home.clone()), 0);
        std::fs::create_dir_all(&paths.data_dir).unwrap();
        let store = Store::open(&paths.db()).unwrap();
        let rt: Arc<Runtime> = Runtime::new(store, paths, Config::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(super::super::serve(listener, rt.clone(), "tok".into()));

        let http = reqwest::Client::new();
        let call = |method: &str, path: &str| {
            let url = format!(
                "{base}{}",
                path.replace(['{', '}'], "").replace("_id", "_x")
            );
            http.request(method.parse().unwrap(), url)
                .header("x-api-key", "tok")
                .send()
        };
        let resp = call("GET", "/v1/openapi.json").await.unwrap();
        assert_eq!(resp.status(), 200);
        let doc: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        let ops = documented(&doc);
        assert_eq!(ops.len(), ROUTES.len());

        let fell_through = |status: u16, text: &str| {
            status == 405 || (status == 404 && text.contains("no such endpoint"))
        };
        for (method, path) in &ops {
            let resp = call(&method.to_uppercase(), path).await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert!(
                !fell_through(status, &text),
                "{method} {path} is documented but not routed: {status} {text}"
            );
        }
        let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
        for path in paths {
            for method in ["get", "post", "delete", "put", "patch"] {
                if ops.contains(&(method.to_string(), path.clone())) {
                    continue;
                }
                let resp = call(&method.to_uppercase(), path).await.unwrap();
                assert_eq!(
                    resp.status().as_u16(),
                    405,
                    "{method} {path} is not documented but is routed"
                );
            }
        }
        let resp = call("GET", "/v1/nothing").await.unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("is not supported by tetherd")
        );

        rt.shutdown.cancel();
        server.await.unwrap();
    }
}
