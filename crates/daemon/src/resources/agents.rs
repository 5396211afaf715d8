//! Agents as versioned resources: every change is a new `(id, version)` row, guarded by an
//! optimistic lock on the newest version; archiving marks every version, nothing is deleted.

use crate::store::webhooks::enqueue_resource;
use rusqlite::{Connection, OptionalExtension, params};
use tether_proto::agent::{
    AGENT_TOOLSET, Agent, AgentChanges, AgentSpec, AgentTool, DEFAULT_AGENT, McpServer,
    split_agent_ref,
};
use tether_proto::method::{AgentParams, UpdateAgent};
use tether_proto::{ErrorBody, ErrorCode};

use crate::ids;
use crate::resources::Names;
use crate::store::Store;
use crate::store::error::StoreError;
use crate::tools::TOOL_NAMES;

fn invalid(msg: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

/// Checks what serde can't: lengths, known tool names, MCP references.
pub fn validate(spec: &AgentSpec) -> Result<(), ErrorBody> {
    let n = spec.name.chars().count();
    if n == 0 || n > 256 {
        return Err(invalid("name: expected 1 to 256 characters".into()));
    }
    if spec.name.contains('@') {
        return Err(invalid(format!(
            "name: `{}` contains `@`, which separates a name from a version; pick a name without it",
            spec.name
        )));
    }
    if spec
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2048)
    {
        return Err(invalid(
            "description: expected at most 2048 characters".into(),
        ));
    }
    if spec
        .system
        .as_ref()
        .is_some_and(|s| s.chars().count() > 100_000)
    {
        return Err(invalid("system: expected at most 100000 characters".into()));
    }
    if let Some(effort) = spec.model.as_ref().and_then(|m| m.effort.as_ref()) {
        thinking_budget(effort)?;
    }
    // SDK 2.17.0 raised the hosted limit from 128.
    if spec.tools.len() > 256 {
        return Err(invalid("tools: expected at most 256 entries".into()));
    }
    for (i, tool) in spec.tools.iter().enumerate() {
        match tool {
            AgentTool::Toolset { configs, .. } => {
                for (j, c) in configs.iter().enumerate() {
                    if !TOOL_NAMES.contains(&c.name.as_str()) {
                        return Err(invalid(format!(
                            "tools[{i}].configs[{j}].name: unknown tool `{}` in {AGENT_TOOLSET}; expected one of {}",
                            c.name,
                            TOOL_NAMES.join(", ")
                        )));
                    }
                    if let Some(kind) = c.kind.as_deref().filter(|k| *k != c.name) {
                        return Err(invalid(format!(
                            "tools[{i}].configs[{j}].type: `{kind}` differs from its name `{}`; send the same value or leave `type` out",
                            c.name
                        )));
                    }
                }
            }
            AgentTool::McpToolset {
                mcp_server_name, ..
            } => {
                if !spec.mcp_servers.iter().any(|s| &s.name == mcp_server_name) {
                    return Err(invalid(format!(
                        "tools[{i}].mcp_server_name: `{mcp_server_name}` is not in mcp_servers; declare it there as {{type: url, name: {mcp_server_name}, url: ...}} (or, tether, {{type: stdio, name: {mcp_server_name}, command: ...}})"
                    )));
                }
            }
            AgentTool::Custom { name, .. } => {
                let ok = (1..=128).contains(&name.len())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !ok {
                    return Err(invalid(format!(
                        "tools[{i}].name: `{name}` must be 1 to 128 characters of A-Z, a-z, 0-9, `_` or `-`"
                    )));
                }
                if name.starts_with(crate::tools::mcp_names::PREFIX) {
                    return Err(invalid(format!(
                        "tools[{i}].name: `{name}` starts with `{}`, which is reserved for the tools of MCP servers; give the custom tool another name",
                        crate::tools::mcp_names::PREFIX
                    )));
                }
                if TOOL_NAMES.contains(&name.as_str()) {
                    return Err(invalid(format!(
                        "tools[{i}].name: `{name}` is the name of a built-in tool; give the custom tool another name"
                    )));
                }
                let earlier = spec.tools[..i]
                    .iter()
                    .any(|t| matches!(t, AgentTool::Custom { name: n, .. } if n == name));
                if earlier {
                    return Err(invalid(format!(
                        "tools[{i}].name: a custom tool named `{name}` is declared twice; names must be unique"
                    )));
                }
            }
        }
    }
    if spec.mcp_servers.len() > 20 {
        return Err(invalid("mcp_servers: expected at most 20 entries".into()));
    }
    for (i, s) in spec.mcp_servers.iter().enumerate() {
        validate_mcp_server(i, s, &spec.mcp_servers[..i])?;
    }
    if let Some(m) = &spec.multiagent {
        m.validate().map_err(invalid)?;
        // The agent tools' names are the primary's: a custom tool may not take one.
        for t in &spec.tools {
            if let AgentTool::Custom { name, .. } = t
                && [
                    tether_proto::multiagent::TOOL_LIST_AGENTS,
                    tether_proto::multiagent::TOOL_SEND_TO_AGENT,
                    tether_proto::multiagent::TOOL_SPAWN_AGENT,
                    tether_proto::multiagent::TOOL_CONSULT_ADVISOR,
                ]
                .contains(&name.as_str())
            {
                return Err(invalid(format!(
                    "tools: the custom tool `{name}` has the name of a multi-agent tool this agent gets from `multiagent`; rename it"
                )));
            }
        }
    }
    validate_metadata(&spec.metadata)
}

/// One `mcp_servers` entry: a usable name (it becomes part of the model's tool names), and the
/// fields of its type and no others.
fn validate_mcp_server(i: usize, s: &McpServer, earlier: &[McpServer]) -> Result<(), ErrorBody> {
    let name = &s.name;
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.contains("__");
    if !ok {
        return Err(invalid(format!(
            "mcp_servers[{i}].name: `{name}` must be 1 to 64 characters of A-Z, a-z, 0-9, `_` or `-`, without `__` (tools are offered to the model as mcp__<server>__<tool>)"
        )));
    }
    if earlier.iter().any(|e| e.name == *name) {
        return Err(invalid(format!(
            "mcp_servers[{i}].name: a server named `{name}` is declared twice; names must be unique"
        )));
    }
    let field = |f: &str| format!("mcp_servers[{i}].{f}");
    match s.kind.as_str() {
        "url" => {
            let Some(url) = &s.url else {
                return Err(invalid(format!(
                    "{}: a `type: url` server needs `url`, its streamable HTTP endpoint (e.g. https://example.com/mcp)",
                    field("url")
                )));
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(format!(
                    "{}: expected an http:// or https:// URL, found `{url}`",
                    field("url")
                )));
            }
            if s.command.is_some() || !s.args.is_empty() || !s.env.is_empty() {
                return Err(invalid(format!(
                    "{}: command, args and env belong to `type: stdio` servers; a `type: url` server only has name and url",
                    field("type")
                )));
            }
        }
        "stdio" => {
            if s.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                return Err(invalid(format!(
                    "{}: a `type: stdio` server needs `command`, the program to run inside the session's sandbox (e.g. `npx`), with `args` as a list",
                    field("command")
                )));
            }
            if s.url.is_some() {
                return Err(invalid(format!(
                    "{}: a `type: stdio` server has no url; use `type: url` for a streamable HTTP server",
                    field("url")
                )));
            }
            if let Some(k) = s
                .env
                .keys()
                .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
            {
                return Err(invalid(format!(
                    "{}: `{k}` is not a valid environment variable name",
                    field("env")
                )));
            }
        }
        other => {
            return Err(invalid(format!(
                "{}: expected `url` (streamable HTTP) or `stdio` (tether: a process in the session's sandbox), found `{other}`",
                field("type")
            )));
        }
    }
    Ok(())
}

/// Hosted limits on `metadata` (agents, sessions, environments): 16 pairs, keys up to 64
/// characters, values up to 512.
/// The thinking budget (tokens) for a `model.effort` of `{type: low|medium|high|xhigh|max}`:
/// Anthropic models get extended thinking with this budget, OpenAI models the reasoning effort
/// it maps back to (xhigh and max are OpenAI's `high`).
pub fn thinking_budget(effort: &serde_json::Value) -> Result<u32, ErrorBody> {
    let level = effort
        .get("type")
        .and_then(serde_json::Value::as_str)
        .or_else(|| effort.as_str());
    match level {
        Some("low") => Ok(2_048),
        Some("medium") => Ok(8_192),
        Some("high") => Ok(16_384),
        Some("xhigh") => Ok(32_768),
        Some("max") => Ok(63_999),
        _ => Err(invalid(format!(
            "model.effort: expected {{\"type\": \"low\" | \"medium\" | \"high\" | \"xhigh\" | \"max\"}}, got {effort}"
        ))),
    }
}

pub fn validate_metadata(
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<(), ErrorBody> {
    if metadata.len() > 16 {
        return Err(invalid("metadata: expected at most 16 pairs".into()));
    }
    if let Some((k, _)) = metadata
        .iter()
        .find(|(k, v)| k.chars().count() > 64 || v.chars().count() > 512)
    {
        return Err(invalid(format!(
            "metadata.{k}: keys may have at most 64 characters, values 512"
        )));
    }
    Ok(())
}

pub async fn create(store: &Store, spec: AgentSpec) -> Result<Agent, ErrorBody> {
    create_with(store, spec, Names::Unique).await
}

/// [`create`], saying whether the name may already be in use.
pub async fn create_with(store: &Store, spec: AgentSpec, names: Names) -> Result<Agent, ErrorBody> {
    validate(&spec)?;
    let agent = store
        .write(move |c| {
            let mut spec = spec;
            resolve_roster(c, &mut spec)?;
            super::skills::check_refs(c, &spec.skills)?;
            let agent = insert_with(c, spec, names)?;
            enqueue_resource(c, "agent.created", &agent.id)?;
            Ok(agent)
        })
        .await?;
    store.webhook_wake().notify_one();
    Ok(agent)
}

/// Resolves the `multiagent` roster to pinned versions (`{type: agent, id, version}`, the
/// hosted response shape): each referenced agent must exist, not be archived, and have no
/// `multiagent` of its own (depth 1). `{type: self}` stays as it is.
fn resolve_roster(c: &Connection, spec: &mut AgentSpec) -> Result<(), StoreError> {
    use tether_proto::multiagent::{Members, Multiagent, RosterEntry, RosterObject};
    let Some(m) = spec.multiagent.as_mut() else {
        return Ok(());
    };
    let mut lists: Vec<(&str, &mut Vec<RosterEntry>)> = Vec::new();
    match m {
        Multiagent::V20261001 {
            subagents,
            workflows,
            ..
        } => {
            for (name, member) in [("subagents", subagents), ("workflows", workflows)] {
                if let Some(Members::Enabled {
                    predefined_agents: Some(list),
                    ..
                }) = member
                {
                    lists.push((name, list));
                }
            }
        }
        Multiagent::Coordinator { agents } => lists.push(("agents", agents)),
    }
    for (member, list) in lists {
        for entry in list.iter_mut() {
            let (reference, version) = match entry {
                RosterEntry::Reference(r) => (r.trim().to_string(), None),
                RosterEntry::Object(RosterObject::Agent { id, version }) => (id.clone(), *version),
                RosterEntry::Object(_) => continue,
            };
            let field = format!("multiagent.{member}.predefined_agents");
            let id = resolve(c, &reference).map_err(|_| {
                StoreError::Invalid(format!(
                    "{field}: no agent `{reference}`; create it first (`tether agents create`) or remove it from the list"
                ))
            })?;
            let agent = load(c, &id, version)
                .map_err(|e| StoreError::Invalid(format!("{field}: agent `{reference}`: {e}")))?;
            if agent.archived_at.is_some() {
                return Err(StoreError::Invalid(format!(
                    "{field}: agent `{}` is archived; a roster can't call it (remove it from the list)",
                    agent.spec.name
                )));
            }
            if agent.spec.multiagent.is_some() {
                return Err(StoreError::Invalid(format!(
                    "{field}: agent `{}` has `multiagent` itself, and sub-agents can't have their own (depth limit 1); clear its multiagent or pick another agent",
                    agent.spec.name
                )));
            }
            *entry = RosterEntry::Object(RosterObject::Agent {
                id: agent.id,
                version: Some(agent.version),
            });
        }
    }
    Ok(())
}

/// `multiagent` of an update: omitted keeps it, null clears it; a `multiagent_20261001`
/// sent onto a stored one is merged member by member (an omitted member keeps its stored
/// value; a member of the same type merges its keys, a `predefined_agents` list replacing
/// the stored one; another type replaces it); anything else replaces the stored block.
fn merge_multiagent(
    stored: Option<tether_proto::multiagent::Multiagent>,
    sent: Option<tether_proto::multiagent::Multiagent>,
) -> Option<tether_proto::multiagent::Multiagent> {
    use tether_proto::multiagent::{Members, Multiagent};
    fn member(stored: Option<Members>, sent: Option<Members>) -> Option<Members> {
        match (stored, sent) {
            (s, None) => s,
            (
                Some(Members::Enabled {
                    inline_agents: si,
                    predefined_agents: sp,
                }),
                Some(Members::Enabled {
                    inline_agents,
                    predefined_agents,
                }),
            ) => Some(Members::Enabled {
                inline_agents: inline_agents.or(si),
                predefined_agents: predefined_agents.or(sp),
            }),
            (_, new) => new,
        }
    }
    match (stored, sent) {
        (_, None) => None,
        (
            Some(Multiagent::V20261001 {
                advisor: sa,
                subagents: ss,
                workflows: sw,
            }),
            Some(Multiagent::V20261001 {
                advisor,
                subagents,
                workflows,
            }),
        ) => Some(Multiagent::V20261001 {
            advisor: advisor.or(sa),
            subagents: member(ss, subagents),
            workflows: member(sw, workflows),
        }),
        (_, new) => new,
    }
}

/// Creates the built-in `default` agent (all built-in tools, tether's prompt, the daemon's
/// default model) unless an agent of that name exists, and unarchives it if an older tetherd
/// let it be archived (sessions without `--agent` pin it, so `tether run` needs it live).
pub async fn ensure_default(store: &Store) -> Result<(), StoreError> {
    store
        .write(|c| {
            match find_id_by_name(c, DEFAULT_AGENT, true)? {
                None => {
                    insert_new(c, default_spec())?;
                }
                Some(id) => {
                    c.execute("UPDATE agents SET archived_at = NULL WHERE id = ?1", [&id])
                        .map_err(|e| StoreError::Write(e.to_string()))?;
                }
            }
            Ok(())
        })
        .await
}

/// Refuses to archive or rename the built-in agent: every session started without an agent
/// (`tether run`, `tether new`) pins it by name.
fn check_not_builtin(agent: &Agent, doing: &str) -> Result<(), StoreError> {
    if agent.spec.name == DEFAULT_AGENT {
        return Err(StoreError::Conflict(format!(
            "the built-in `{DEFAULT_AGENT}` agent can't be {doing}: sessions started without an agent (`tether run`) use it; create your own agent and pass `--agent NAME` instead"
        )));
    }
    Ok(())
}

/// Whether an agent has exactly this id. HTTP paths take ids only: names and `NAME@VERSION`
/// are conveniences of the CLI and the socket protocol.
pub async fn require_id(store: &Store, id: &str) -> Result<(), ErrorBody> {
    let missing = format!("no agent with id `{id}`; GET /v1/agents lists them");
    Ok(store.require_exact_id("agents", id, missing).await?)
}

fn default_spec() -> AgentSpec {
    AgentSpec {
        name: DEFAULT_AGENT.into(),
        description: Some("tether's built-in coding agent".into()),
        tools: vec![AgentTool::Toolset {
            default_config: None,
            configs: Vec::new(),
        }],
        ..Default::default()
    }
}

pub async fn list(store: &Store, all: bool) -> Result<Vec<Agent>, ErrorBody> {
    Ok(store
        .read(move |c| {
            let sql = format!(
                "SELECT {COLS} FROM agents a WHERE a.version = (SELECT MAX(version) FROM agents b WHERE b.id = a.id) {} ORDER BY a.created_at, a.id",
                if all { "" } else { "AND a.archived_at IS NULL" }
            );
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map([], row_to_agent)?;
            rows.map(|r| r.map_err(StoreError::from)?).collect()
        })
        .await?)
}

/// `agent` may be `NAME@VERSION`; `version` (if set) must agree with it.
pub async fn get(store: &Store, p: &AgentParams) -> Result<Agent, ErrorBody> {
    let (reference, at) = split_agent_ref(&p.agent).map_err(invalid)?;
    let version = match (at, p.version) {
        (Some(a), Some(v)) if a != v => {
            return Err(invalid(format!(
                "`{}` names version {a} but version {v} was asked for; give one",
                p.agent
            )));
        }
        (a, v) => a.or(v),
    };
    let reference = reference.to_string();
    Ok(store
        .read(move |c| {
            let id = resolve(c, &reference)?;
            load(c, &id, version)
        })
        .await?)
}

pub async fn versions(store: &Store, agent: &str) -> Result<Vec<Agent>, ErrorBody> {
    let reference = split_agent_ref(agent).map_err(invalid)?.0.to_string();
    Ok(store
        .read(move |c| {
            let id = resolve(c, &reference)?;
            let mut st = c.prepare(&format!(
                "SELECT {COLS} FROM agents a WHERE a.id = ?1 ORDER BY a.version"
            ))?;
            let rows = st.query_map([&id], row_to_agent)?;
            rows.map(|r| r.map_err(StoreError::from)?).collect()
        })
        .await?)
}

/// A new version from the newest one plus `changes`, if the newest is still `p.version`.
pub async fn update(store: &Store, p: UpdateAgent) -> Result<Agent, ErrorBody> {
    update_with(store, p, Names::Unique).await
}

/// [`update`], saying whether a new name may already be in use.
pub async fn update_with(store: &Store, p: UpdateAgent, names: Names) -> Result<Agent, ErrorBody> {
    let reference = split_agent_ref(&p.agent).map_err(invalid)?.0.to_string();
    // Validate against the current spec before taking the write lock: cheap and readable.
    let current = store
        .read({
            let r = reference.clone();
            move |c| load(c, &resolve(c, &r)?, None)
        })
        .await?;
    validate(&apply(current.spec.clone(), p.changes.clone()))?;
    let expected = p.version;
    let changes = p.changes;
    Ok(store
        .write(move |c| {
            let id = resolve(c, &reference)?;
            let newest = load(c, &id, None)?;
            if newest.archived_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "agent `{}` is archived and can't be changed",
                    newest.spec.name
                )));
            }
            if newest.version != expected {
                return Err(StoreError::Conflict(format!(
                    "agent `{}` is at version {}, not {expected}: someone changed it since you read it; \
                     look at `tether agents show {}` and apply your change to version {}",
                    newest.spec.name, newest.version, newest.spec.name, newest.version
                )));
            }
            let mut spec = apply(newest.spec.clone(), changes);
            resolve_roster(c, &mut spec)?;
            super::skills::check_refs(c, &spec.skills)?;
            if spec.name != newest.spec.name {
                check_not_builtin(&newest, "renamed")?;
            }
            if let Some(other) = find_id_by_name(c, &spec.name, false)?
                && other != id
                && (names == Names::Unique || spec.name == DEFAULT_AGENT)
            {
                return Err(name_taken(&spec.name));
            }
            let now = ids::now_rfc3339();
            let version = newest.version + 1;
            insert_row(c, &id, version, &spec, &newest.created_at, &now)?;
            // A new version is the only kind of agent update.
            enqueue_resource(c, "agent.updated", &id)?;
            load(c, &id, Some(version))
        })
        .await
        .inspect(|_| store.webhook_wake().notify_one())?)
}

fn apply(mut spec: AgentSpec, ch: AgentChanges) -> AgentSpec {
    if let Some(v) = ch.name {
        spec.name = v;
    }
    if let Some(v) = ch.description {
        spec.description = Some(v);
    }
    if let Some(v) = ch.system {
        spec.system = Some(v);
    }
    if let Some(v) = ch.model {
        spec.model = Some(v);
    }
    if let Some(v) = ch.tools {
        spec.tools = v;
    }
    if let Some(v) = ch.mcp_servers {
        spec.mcp_servers = v;
    }
    if let Some(v) = ch.metadata {
        spec.metadata = v;
    }
    if let Some(m) = ch.multiagent {
        spec.multiagent = merge_multiagent(spec.multiagent.take(), m);
    }
    if let Some(v) = ch.skills {
        spec.skills = v;
    }
    spec
}

pub async fn archive(store: &Store, agent: &str) -> Result<Agent, ErrorBody> {
    let reference = split_agent_ref(agent).map_err(invalid)?.0.to_string();
    Ok(store
        .write(move |c| {
            let id = resolve(c, &reference)?;
            check_not_builtin(&load(c, &id, None)?, "archived")?;
            let changed = c
                .execute(
                    "UPDATE agents SET archived_at = ?2 WHERE id = ?1 AND archived_at IS NULL",
                    params![id, ids::now_rfc3339()],
                )
                .map_err(|e| StoreError::Write(e.to_string()))?;
            // Archiving an archived agent is a no-op: no webhook.
            if changed > 0 {
                enqueue_resource(c, "agent.archived", &id)?;
            }
            load(c, &id, None)
        })
        .await
        .inspect(|_| store.webhook_wake().notify_one())?)
}

/// The agent version a new session pins: `NAME[@VERSION]` or an id; default `default`.
pub async fn for_session(store: &Store, agent: Option<&str>) -> Result<Agent, ErrorBody> {
    let p = AgentParams {
        agent: agent.unwrap_or(DEFAULT_AGENT).to_string(),
        version: None,
    };
    let a = get(store, &p).await?;
    if a.archived_at.is_some() {
        return Err(ErrorBody::new(
            ErrorCode::Conflict,
            format!(
                "agent `{}` is archived; new sessions can't use it (see `tether agents ls`)",
                a.spec.name
            ),
        ));
    }
    Ok(a)
}

/// The built-in tools a pinned version offers, in the toolbox's order.
pub fn offered_tools(agent: &Agent) -> Vec<String> {
    agent
        .enabled_builtin_tools(&TOOL_NAMES)
        .into_iter()
        .map(String::from)
        .collect()
}

const COLS: &str = "a.id, a.version, a.spec, a.created_at, a.updated_at, a.archived_at";

/// Rows whose spec can't be decoded are an error, not a silent skip.
fn row_to_agent(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Agent, StoreError>> {
    let id: String = r.get(0)?;
    let version: u32 = r.get(1)?;
    let spec: String = r.get(2)?;
    let (created_at, updated_at, archived_at) = (r.get(3)?, r.get(4)?, r.get(5)?);
    Ok(serde_json::from_str::<AgentSpec>(&spec)
        .map(|spec| Agent {
            id: id.clone(),
            object_type: "agent".into(),
            version,
            spec,
            created_at,
            updated_at,
            archived_at,
        })
        .map_err(|e| StoreError::Read(format!("agent {id} version {version} is unreadable: {e}"))))
}

fn load(c: &Connection, id: &str, version: Option<u32>) -> Result<Agent, StoreError> {
    let row = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM agents a WHERE a.id = ?1 AND a.version = COALESCE(?2, (SELECT MAX(version) FROM agents WHERE id = ?1))"
        ))?
        .query_row(params![id, version], row_to_agent)
        .optional()?;
    match (row, version) {
        (Some(a), _) => a,
        (None, Some(v)) => Err(StoreError::Missing(format!(
            "agent {id} has no version {v}; `tether agents versions {id}` lists them"
        ))),
        (None, None) => Err(StoreError::Missing(format!("no agent `{id}`"))),
    }
}

/// An id, else a name (newest version's), preferring agents that are not archived.
fn resolve(c: &Connection, reference: &str) -> Result<String, StoreError> {
    crate::store::queries::resolve_id_or_name(
        c,
        reference,
        "SELECT id FROM agents WHERE id = ?1 LIMIT 1",
        find_id_by_name,
        || format!("no agent `{reference}`; `tether agents ls` lists them"),
    )
}

fn find_id_by_name(
    c: &Connection,
    name: &str,
    archived_too: bool,
) -> Result<Option<String>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT a.id FROM agents a WHERE a.name = ?1 AND (?2 OR a.archived_at IS NULL) \
         AND a.version = (SELECT MAX(version) FROM agents b WHERE b.id = a.id) \
         ORDER BY a.archived_at IS NOT NULL, a.created_at DESC, a.id DESC LIMIT 1",
    )?
    .query_row(params![name, archived_too], |r| r.get(0))
    .optional()?)
}

fn name_taken(name: &str) -> StoreError {
    StoreError::Conflict(format!(
        "an agent named `{name}` already exists; update it (`tether agents update {name} -f FILE`) or pick another name"
    ))
}

fn insert_new(c: &Connection, spec: AgentSpec) -> Result<Agent, StoreError> {
    insert_with(c, spec, Names::Unique)
}

fn insert_with(c: &Connection, spec: AgentSpec, names: Names) -> Result<Agent, StoreError> {
    if (names == Names::Unique || spec.name == DEFAULT_AGENT)
        && find_id_by_name(c, &spec.name, false)?.is_some()
    {
        return Err(name_taken(&spec.name));
    }
    let id = ids::agent_id();
    let now = ids::now_rfc3339();
    insert_row(c, &id, 1, &spec, &now, &now)?;
    load(c, &id, Some(1))
}

fn insert_row(
    c: &Connection,
    id: &str,
    version: u32,
    spec: &AgentSpec,
    created_at: &str,
    now: &str,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(spec)
        .map_err(|e| StoreError::Write(format!("cannot encode agent: {e}")))?;
    c.execute(
        "INSERT INTO agents (id, version, name, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, version, spec.name, json, created_at, now],
    )
    .map_err(|e| StoreError::Write(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spec(v: Value) -> AgentSpec {
        serde_json::from_value(v).unwrap()
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).unwrap();
        (dir, s)
    }

    fn update_of(agent: &str, version: u32, changes: Value) -> UpdateAgent {
        UpdateAgent {
            agent: agent.into(),
            version,
            changes: serde_json::from_value(changes).unwrap(),
        }
    }

    #[tokio::test]
    async fn hosted_creates_may_repeat_a_name_which_then_means_the_newest_but_default_stays_unique()
    {
        let (_d, s) = store().await;
        let first = create(&s, spec(json!({"name": "twin"}))).await.unwrap();
        let e = create(&s, spec(json!({"name": "twin"}))).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "{}", e.message);
        let second = create_with(&s, spec(json!({"name": "twin"})), Names::MayRepeat)
            .await
            .unwrap();
        assert_ne!(first.id, second.id);
        let by_name = get(
            &s,
            &AgentParams {
                agent: "twin".into(),
                version: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(by_name.id, second.id, "a name means its newest agent");
        ensure_default(&s).await.unwrap();
        let e = create_with(&s, spec(json!({"name": DEFAULT_AGENT})), Names::MayRepeat)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "{}", e.message);
    }

    #[tokio::test]
    async fn updates_make_versions_and_old_versions_stay_readable() {
        let (_d, s) = store().await;
        let a = create(&s, spec(json!({"name": "coder", "system": "one"})))
            .await
            .unwrap();
        assert_eq!(a.version, 1);
        let b = update(&s, update_of("coder", 1, json!({"system": "two"})))
            .await
            .unwrap();
        assert_eq!((b.id.as_str(), b.version), (a.id.as_str(), 2));
        assert_eq!(b.created_at, a.created_at);
        let v1 = get(
            &s,
            &AgentParams {
                agent: "coder@1".into(),
                version: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(v1.spec.system.as_deref(), Some("one"));
        let newest = get(
            &s,
            &AgentParams {
                agent: a.id.clone(),
                version: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(newest.spec.system.as_deref(), Some("two"));
        let all = versions(&s, "coder").await.unwrap();
        assert_eq!(all.iter().map(|a| a.version).collect::<Vec<_>>(), [1, 2]);
    }

    #[tokio::test]
    async fn a_stale_version_is_a_conflict_and_writes_nothing() {
        let (_d, s) = store().await;
        create(&s, spec(json!({"name": "coder"}))).await.unwrap();
        update(&s, update_of("coder", 1, json!({"system": "a"})))
            .await
            .unwrap();
        let e = update(&s, update_of("coder", 1, json!({"system": "b"})))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains("version 2, not 1"), "{}", e.message);
        assert_eq!(versions(&s, "coder").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn names_are_unique_and_archive_keeps_versions() {
        let (_d, s) = store().await;
        create(&s, spec(json!({"name": "coder"}))).await.unwrap();
        let e = create(&s, spec(json!({"name": "coder"})))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        let a = archive(&s, "coder").await.unwrap();
        assert!(a.archived_at.is_some());
        assert!(list(&s, false).await.unwrap().is_empty());
        assert_eq!(list(&s, true).await.unwrap().len(), 1);
        let e = for_session(&s, Some("coder")).await.unwrap_err();
        assert!(e.message.contains("archived"), "{}", e.message);
        let e = update(&s, update_of("coder", 1, json!({"system": "x"})))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        // The name is free again for a new agent.
        create(&s, spec(json!({"name": "coder"}))).await.unwrap();
    }

    #[tokio::test]
    async fn default_agent_is_created_once_with_every_tool() {
        let (_d, s) = store().await;
        ensure_default(&s).await.unwrap();
        ensure_default(&s).await.unwrap();
        assert_eq!(list(&s, true).await.unwrap().len(), 1);
        let a = for_session(&s, None).await.unwrap();
        assert_eq!(offered_tools(&a), TOOL_NAMES.to_vec());
    }

    #[tokio::test]
    async fn the_default_agent_cannot_be_archived_or_renamed_away() {
        let (_d, s) = store().await;
        ensure_default(&s).await.unwrap();
        let e = archive(&s, "default").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains("tether run"), "{}", e.message);
        let e = update(&s, update_of("default", 1, json!({"name": "mine"})))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        // Other changes are fine.
        update(&s, update_of("default", 1, json!({"system": "Be brief."})))
            .await
            .unwrap();
        // An older tetherd let it be archived: the next start brings it back.
        s.write(|c| {
            c.execute("UPDATE agents SET archived_at = '2026-01-01T00:00:00Z'", [])
                .map_err(|e| StoreError::Write(e.to_string()))
        })
        .await
        .unwrap();
        assert!(for_session(&s, None).await.is_err());
        ensure_default(&s).await.unwrap();
        assert!(for_session(&s, None).await.is_ok());
    }

    #[tokio::test]
    async fn bad_specs_name_the_field() {
        let (_d, s) = store().await;
        let e = create(
            &s,
            spec(
                json!({"name": "x", "tools": [{"type": "agent_toolset_20260401",
                "configs": [{"name": "bsh", "enabled": false}]}]}),
            ),
        )
        .await
        .unwrap_err();
        assert!(
            e.message
                .starts_with("tools[0].configs[0].name: unknown tool `bsh`"),
            "{}",
            e.message
        );
        let e = create(
            &s,
            spec(json!({"name": "x", "tools": [{"type": "mcp_toolset", "mcp_server_name": "gh"}]})),
        )
        .await
        .unwrap_err();
        assert!(
            e.message.starts_with("tools[0].mcp_server_name"),
            "{}",
            e.message
        );
        // A custom tool can't shadow a built-in one or another custom tool.
        let custom = |name: &str| json!({"type": "custom", "name": name, "input_schema": {"type": "object"}});
        let e = create(&s, spec(json!({"name": "x", "tools": [custom("bash")]})))
            .await
            .unwrap_err();
        assert!(
            e.message
                .starts_with("tools[0].name: `bash` is the name of a built-in tool"),
            "{}",
            e.message
        );
        let e = create(
            &s,
            spec(json!({"name": "x", "tools": [custom("lookup"), custom("lookup")]})),
        )
        .await
        .unwrap_err();
        assert!(
            e.message
                .starts_with("tools[1].name: a custom tool named `lookup` is declared twice"),
            "{}",
            e.message
        );
        let e = get(
            &s,
            &AgentParams {
                agent: "nope".into(),
                version: None,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
    }

    #[test]
    fn mcp_servers_are_checked_by_type() {
        let check = |servers: Value| {
            validate(&spec(json!({"name": "x", "mcp_servers": servers})))
                .err()
                .map(|e| e.message)
        };
        assert_eq!(
            check(
                json!([{"type": "url", "name": "gh", "url": "https://h/mcp"},
                {"type": "stdio", "name": "fs", "command": "srv", "args": ["-v"], "env": {"K": "v"}}])
            ),
            None
        );
        let e = check(json!([{"type": "stdio", "name": "fs"}])).unwrap();
        assert!(
            e.starts_with("mcp_servers[0].command: a `type: stdio` server needs"),
            "{e}"
        );
        let e = check(json!([{"type": "url", "name": "gh"}])).unwrap();
        assert!(e.starts_with("mcp_servers[0].url:"), "{e}");
        let e = check(json!([{"type": "url", "name": "gh", "url": "https://h", "command": "x"}]))
            .unwrap();
        assert!(e.starts_with("mcp_servers[0].type:"), "{e}");
        let e = check(json!([{"type": "sse", "name": "gh", "url": "https://h"}])).unwrap();
        assert!(e.contains("expected `url`") && e.contains("`stdio`"), "{e}");
        let e = check(json!([{"type": "stdio", "name": "a__b", "command": "x"}])).unwrap();
        assert!(e.starts_with("mcp_servers[0].name:"), "{e}");
        let e = check(json!([{"type": "stdio", "name": "a", "command": "x"},
            {"type": "stdio", "name": "a", "command": "y"}]))
        .unwrap();
        assert!(e.contains("declared twice"), "{e}");
    }

    #[test]
    fn version_1_databases_migrate_to_agents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The schema as version 1 left it, with one session.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE sessions (id TEXT PRIMARY KEY, name TEXT UNIQUE, title TEXT, model TEXT NOT NULL, system TEXT, workspace TEXT NOT NULL, workspace_owned INTEGER NOT NULL, max_turns INTEGER NOT NULL, status TEXT NOT NULL, stop_reason TEXT, usage TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, archived_at TEXT, forked_from TEXT, last_seq INTEGER NOT NULL DEFAULT 0, last_event_at TEXT);
                 CREATE TABLE events (rowid INTEGER PRIMARY KEY, session_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, processed_at TEXT NOT NULL, body TEXT NOT NULL);
                 CREATE TABLE events_by_session (session_id TEXT NOT NULL, seq INTEGER NOT NULL, row INTEGER NOT NULL, PRIMARY KEY (session_id, seq)) WITHOUT ROWID;
                 CREATE TABLE index_state (id INTEGER PRIMARY KEY CHECK (id = 1), last_row INTEGER NOT NULL);
                 INSERT INTO index_state (id, last_row) VALUES (1, 0);
                 INSERT INTO sessions (id, model, workspace, workspace_owned, max_turns, status, usage, created_at, updated_at) VALUES ('sesn_old', 'anthropic/m', '/tmp/w', 0, 5, 'idle', '{}', 't', 't');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = Store::open(&path).unwrap();
            let old = s.get_session("sesn_old").await.unwrap().unwrap();
            assert_eq!((old.agent, old.tools), (None, None));
            ensure_default(&s).await.unwrap();
            assert_eq!(list(&s, false).await.unwrap()[0].spec.name, "default");
        });
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, crate::store::schema::SCHEMA_VERSION);
    }
}
