//! tether's objects in the hosted shapes: every field the SDK models declare, tether's
//! extras alongside (additive). These types are what `/v1/openapi.json` describes.

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use tether_proto::agent::{
    Agent, AgentModel, AgentTool, McpServer, PermissionPolicy, ToolConfig, ToolDefaults,
};
use tether_proto::method::AgentParams;
use tether_proto::multiagent::Multiagent;
use tether_proto::{Event, SessionInfo, SessionStatus, StopReason};

use super::error::ApiResult;
use crate::runtime::Runtime;
use crate::store::rows::SessionRow;

/// An agent version as `BetaManagedAgentsAgent`: tools resolved, the model id in the hosted
/// form.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HostedAgent {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub version: u32,
    pub name: String,
    pub description: Option<String>,
    pub system: Option<String>,
    pub model: AgentModel,
    pub tools: Vec<HostedTool>,
    pub mcp_servers: Vec<McpServer>,
    pub metadata: BTreeMap<String, String>,
    pub skills: Vec<Value>,
    pub multiagent: Option<Value>,
    pub execution_identity: ExecutionIdentity,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
}

/// `{type: service_account}`: tools run as the user tetherd runs as; there is no other
/// principal to name (agents.rs refuses `aws_role`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ExecutionIdentity {
    #[serde(rename = "type")]
    pub kind: String,
}

fn service_account() -> ExecutionIdentity {
    ExecutionIdentity {
        kind: "service_account".into(),
    }
}

/// A toolset's defaults with nothing left to the reader: `enabled` and `permission_policy`
/// always present.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResolvedDefaults {
    pub enabled: bool,
    pub permission_policy: PermissionPolicy,
}

/// One resolved `configs` entry (built-in tools also carry their name as `type`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResolvedToolConfig {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    pub enabled: bool,
    pub permission_policy: PermissionPolicy,
}

/// A `tools` entry as the hosted API returns it: toolsets resolved (`default_config` and
/// `configs` always present, every built-in tool listed), custom tools as declared.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(tag = "type")]
pub enum HostedTool {
    #[serde(rename = "agent_toolset_20260401")]
    Toolset {
        default_config: ResolvedDefaults,
        configs: Vec<ResolvedToolConfig>,
    },
    #[serde(rename = "mcp_toolset")]
    McpToolset {
        mcp_server_name: String,
        default_config: ResolvedDefaults,
        configs: Vec<ResolvedToolConfig>,
    },
    #[serde(rename = "custom")]
    Custom {
        name: String,
        description: String,
        input_schema: Value,
    },
}

/// Resolves one declared tool the way the runtime reads it (agent.rs: `enabled_builtin_tools`,
/// `builtin_permission`, `mcp_tool`): built-ins default to enabled and `always_allow`, MCP
/// tools to enabled and `always_ask`.
pub fn hosted_tool(tool: &AgentTool) -> HostedTool {
    fn defaults(d: &Option<ToolDefaults>, policy: PermissionPolicy) -> ResolvedDefaults {
        ResolvedDefaults {
            enabled: d.as_ref().and_then(|d| d.enabled).unwrap_or(true),
            permission_policy: d
                .as_ref()
                .and_then(|d| d.permission_policy)
                .unwrap_or(policy),
        }
    }
    fn resolve(c: Option<&ToolConfig>, name: &str, d: &ResolvedDefaults) -> ResolvedToolConfig {
        ResolvedToolConfig {
            kind: None,
            name: name.to_string(),
            enabled: c.and_then(|c| c.enabled).unwrap_or(d.enabled),
            permission_policy: c
                .and_then(|c| c.permission_policy)
                .unwrap_or(d.permission_policy),
        }
    }
    match tool {
        AgentTool::Toolset {
            default_config,
            configs,
        } => {
            let d = defaults(default_config, PermissionPolicy::AlwaysAllow);
            let configs = crate::tools::TOOL_NAMES
                .iter()
                .map(|name| ResolvedToolConfig {
                    kind: Some(name.to_string()),
                    ..resolve(configs.iter().find(|c| c.name == *name), name, &d)
                })
                .collect();
            HostedTool::Toolset {
                default_config: d,
                configs,
            }
        }
        AgentTool::McpToolset {
            mcp_server_name,
            default_config,
            configs,
        } => {
            let d = defaults(default_config, PermissionPolicy::AlwaysAsk);
            let configs = configs
                .iter()
                .map(|c| resolve(Some(c), &c.name, &d))
                .collect();
            HostedTool::McpToolset {
                mcp_server_name: mcp_server_name.clone(),
                default_config: d,
                configs,
            }
        }
        AgentTool::Custom {
            name,
            description,
            input_schema,
        } => HostedTool::Custom {
            name: name.clone(),
            description: description.clone(),
            input_schema: input_schema.clone(),
        },
    }
}

/// The hosted form of a model id: tether's `anthropic/` provider prefix dropped (a bare id
/// means Anthropic to tether too), other providers' ids unchanged.
pub fn hosted_model(mut m: AgentModel) -> AgentModel {
    if let Some(bare) = m.id.strip_prefix("anthropic/") {
        m.id = bare.to_string();
    }
    m
}

/// tether lets an agent leave the model to the daemon's default; this says which it is.
fn default_model(rt: &Runtime) -> AgentModel {
    AgentModel {
        id: rt.config.default_model.clone(),
        effort: None,
        speed: None,
    }
}

/// `agent.skills` as hosted: `{type, skill_id, version}`, an omitted version as `latest`.
fn hosted_skills(refs: &[tether_proto::skill::SkillRef]) -> Vec<Value> {
    refs.iter()
        .map(|r| {
            serde_json::json!({
                "type": r.kind,
                "skill_id": r.skill_id,
                "version": r.version.as_deref().unwrap_or("latest"),
            })
        })
        .collect()
}

pub fn agent(rt: &Runtime, a: &Agent) -> HostedAgent {
    let spec = a.spec.clone();
    HostedAgent {
        id: a.id.clone(),
        object_type: a.object_type.clone(),
        version: a.version,
        name: spec.name,
        description: spec.description,
        system: spec.system,
        model: hosted_model(spec.model.unwrap_or_else(|| default_model(rt))),
        tools: spec.tools.iter().map(hosted_tool).collect(),
        mcp_servers: spec.mcp_servers,
        metadata: spec.metadata,
        skills: hosted_skills(&spec.skills),
        // Said once, at the top level (null: single-threaded), with its roster resolved.
        multiagent: spec
            .multiagent
            .and_then(|m| serde_json::to_value(m.resolved()).ok()),
        execution_identity: service_account(),
        created_at: a.created_at.clone(),
        updated_at: a.updated_at.clone(),
        archived_at: a.archived_at.clone(),
    }
}

/// `BetaMonetaryAmount`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Money {
    /// Decimal dollars, e.g. `"2.500000"`.
    pub amount: String,
    /// Always `USD`.
    pub currency: String,
}

pub fn usd(amount: f64) -> Money {
    Money {
        amount: format!("{amount:.6}"),
        currency: "USD".into(),
    }
}

/// `{type: "limit", max_list_cost}`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Budget {
    #[serde(rename = "type")]
    pub kind: String,
    pub max_list_cost: Money,
}

/// The resolved agent a session runs: the pinned version with the session's overrides.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SessionAgent {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    pub version: u32,
    pub name: String,
    pub description: Option<String>,
    pub system: Option<String>,
    pub model: AgentModel,
    pub tools: Vec<HostedTool>,
    pub mcp_servers: Vec<McpServer>,
    pub skills: Vec<Value>,
    pub multiagent: Option<Value>,
    pub execution_identity: ExecutionIdentity,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionStats {
    pub active_seconds: Option<f64>,
    pub duration_seconds: Option<f64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CacheCreation {
    pub ephemeral_5m_input_tokens: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionUsageOut {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation: CacheCreation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list_cost: Option<Money>,
}

/// A session as `BetaManagedAgentsSession`, plus tether's fields.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HostedSession {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub status: SessionStatus,
    pub title: Option<String>,
    pub agent: SessionAgent,
    pub environment_id: String,
    pub resources: Vec<Value>,
    pub vault_ids: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub budget: Option<Budget>,
    /// One per `user.define_outcome`, oldest first.
    pub outcome_evaluations: Vec<tether_proto::outcome::OutcomeEvaluation>,
    pub stats: SessionStats,
    pub usage: SessionUsageOut,
    pub deployment_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
    /// tether: the session's unique handle, which the CLI takes wherever an id goes (HTTP
    /// paths take the id only).
    pub name: Option<String>,
    /// tether: why the session last went idle.
    pub stop_reason: Option<StopReason>,
    /// tether: the directory the tools work in.
    pub workspace: String,
    /// tether: the newest event's seq (what `Last-Event-ID` counts).
    pub last_seq: u64,
    /// tether: clients attached over the local socket right now.
    pub attached_clients: u32,
    /// tether: the session this one was forked from.
    pub forked_from: Option<String>,
}

/// A page of a listing.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_page: Option<String>,
}

/// A page of `GET /v1/sessions`, which pages both ways.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionPage {
    pub data: Vec<HostedSession>,
    pub next_page: Option<String>,
    pub prev_page: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeletedSession {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
}

/// What `POST /v1/sessions/{id}/events` answers: the events as committed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SentEvents {
    pub data: Vec<Event>,
}

/// Agent snapshots by `(id, version)`, so a page of sessions reads each version once.
#[derive(Default)]
pub struct AgentCache(HashMap<(String, u32), SessionAgent>);

impl AgentCache {
    async fn snapshot(&mut self, rt: &Runtime, id: &str, version: u32) -> ApiResult<SessionAgent> {
        let key = (id.to_string(), version);
        if let Some(v) = self.0.get(&key) {
            return Ok(v.clone());
        }
        let a = crate::resources::agents::get(
            &rt.store,
            &AgentParams {
                agent: id.to_string(),
                version: Some(version),
            },
        )
        .await?;
        let mut snap = thread_agent(rt, &a);
        // Sessions copy the field at create (hosted), each roster entry as the full definition.
        if let Some(m) = &a.spec.multiagent {
            snap.multiagent = Some(session_multiagent(rt, m, &a).await?);
        }
        self.0.insert(key, snap.clone());
        Ok(snap)
    }
}

/// An agent version as a session runs it (`BetaManagedAgentsSessionThreadAgent`), without its
/// `multiagent`.
fn thread_agent(rt: &Runtime, a: &Agent) -> SessionAgent {
    SessionAgent {
        kind: "agent".into(),
        id: Some(a.id.clone()),
        version: a.version,
        name: a.spec.name.clone(),
        description: a.spec.description.clone(),
        system: a.spec.system.clone(),
        model: hosted_model(a.spec.model.clone().unwrap_or_else(|| default_model(rt))),
        tools: a.spec.tools.iter().map(hosted_tool).collect(),
        mcp_servers: a.spec.mcp_servers.clone(),
        skills: hosted_skills(&a.spec.skills),
        execution_identity: service_account(),
        multiagent: None,
    }
}

/// `session.agent.multiagent`: the agent's field with its defaults said, and each predefined
/// agent (stored pinned to a version; `self` is `own`) as its full definition.
async fn session_multiagent(rt: &Runtime, m: &Multiagent, own: &Agent) -> ApiResult<Value> {
    let mut v = serde_json::to_value(m.resolved()).unwrap_or(Value::Null);
    let lists: Vec<&mut Value> = match &mut v {
        Value::Object(o) => o
            .iter_mut()
            .filter_map(|(k, member)| match k.as_str() {
                "agents" => Some(member),
                "subagents" | "workflows" => member.get_mut("predefined_agents"),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for list in lists {
        let Some(entries) = list.as_array_mut() else {
            continue;
        };
        for entry in entries.iter_mut() {
            let member = match entry.get("type").and_then(Value::as_str) {
                Some("self") => Some(own.clone()),
                Some("agent") => {
                    let id = entry.get("id").and_then(Value::as_str).unwrap_or_default();
                    let version = entry
                        .get("version")
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok());
                    let params = AgentParams {
                        agent: id.to_string(),
                        version,
                    };
                    Some(crate::resources::agents::get(&rt.store, &params).await?)
                }
                _ => None,
            };
            if let Some(a) = member {
                let mut def = serde_json::to_value(thread_agent(rt, &a)).unwrap_or(Value::Null);
                if let Some(o) = def.as_object_mut() {
                    o.remove("multiagent");
                }
                *entry = def;
            }
        }
    }
    Ok(v)
}

/// The agent as the session runs it: its pinned version's snapshot with what the session
/// changed over it (model, system, skills, tools and MCP servers).
pub async fn session_agent(
    rt: &Runtime,
    cache: &mut AgentCache,
    row: &SessionRow,
    model: &str,
) -> ApiResult<SessionAgent> {
    let mut agent = match &row.agent {
        Some((id, version)) => cache.snapshot(rt, id, *version).await?,
        None => SessionAgent {
            kind: "agent".into(),
            id: None,
            version: 0,
            name: "default".into(),
            description: None,
            system: None,
            model: AgentModel {
                id: model.to_string(),
                effort: None,
                speed: None,
            },
            tools: Vec::new(),
            mcp_servers: Vec::new(),
            skills: Vec::new(),
            multiagent: None,
            execution_identity: service_account(),
        },
    };
    // What the session actually runs: a model switch or a system override wins.
    agent.model.id = model.to_string();
    agent.model = hosted_model(agent.model);
    if row.system.is_some() {
        agent.system = row.system.clone();
    }
    if let Some(refs) = &row.skill_refs {
        agent.skills = hosted_skills(refs);
    }
    if let Some(o) = &row.agent_overrides {
        if let Some(tools) = &o.tools {
            agent.tools = tools.iter().map(hosted_tool).collect();
        }
        if let Some(servers) = &o.mcp_servers {
            agent.mcp_servers = servers.clone();
        }
    }
    Ok(agent)
}

/// A session in the hosted shape. `info` carries the live status and usage; `row` the
/// settings; `budget` the spending limit.
pub async fn session(
    rt: &Runtime,
    cache: &mut AgentCache,
    info: &SessionInfo,
    row: &SessionRow,
    budget: Option<f64>,
) -> ApiResult<HostedSession> {
    let agent = session_agent(rt, cache, row, &info.model).await?;
    let t = &info.usage.tokens;
    let duration = humantime::parse_rfc3339(&info.created_at)
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map(|d| d.as_secs_f64());
    Ok(HostedSession {
        id: info.id.clone(),
        object_type: "session".into(),
        status: info.status,
        title: info.title.clone(),
        agent,
        environment_id: row.environment.clone().unwrap_or_default(),
        resources: row
            .memory
            .iter()
            .filter_map(|m| serde_json::to_value(m).ok())
            .collect(),
        vault_ids: row.vault_ids.clone(),
        metadata: row.metadata.clone(),
        budget: budget.map(|b| Budget {
            kind: "limit".into(),
            max_list_cost: usd(b),
        }),
        outcome_evaluations: info.outcome_evaluations.clone(),
        stats: SessionStats {
            active_seconds: None,
            duration_seconds: duration,
        },
        usage: SessionUsageOut {
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cache_read_input_tokens: t.cache_read_input_tokens,
            cache_creation: CacheCreation {
                ephemeral_5m_input_tokens: t.cache_creation_input_tokens,
            },
            list_cost: t.cost_usd.map(usd),
        },
        deployment_id: info.deployment_id.clone(),
        created_at: info.created_at.clone(),
        updated_at: info.updated_at.clone(),
        archived_at: info.archived_at.clone(),
        name: info.name.clone(),
        stop_reason: info.stop_reason.clone(),
        workspace: info.workspace.clone(),
        last_seq: info.last_seq,
        attached_clients: info.attached_clients,
        forked_from: info.forked_from.clone(),
    })
}
