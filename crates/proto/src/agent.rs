//! Agents: named, versioned bundles of system prompt, model and tools that sessions pin.
//! Shapes follow the hosted Managed Agents API (`agent_toolset_20260401`, `mcp_toolset`,
//! `custom`); tether extensions are additive and marked.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The built-in toolset's type tag.
pub const AGENT_TOOLSET: &str = "agent_toolset_20260401";
/// The agent every daemon has from its first start; sessions created without one pin it.
pub const DEFAULT_AGENT: &str = "default";

/// `{type: always_allow | always_ask}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PermissionPolicy {
    AlwaysAllow,
    AlwaysAsk,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_policy: Option<PermissionPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    pub name: String,
    /// Hosted clients may repeat the name as `type` (the SDK's config params have it); it
    /// must then equal `name`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_policy: Option<PermissionPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum AgentTool {
    #[serde(rename = "agent_toolset_20260401")]
    Toolset {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_config: Option<ToolDefaults>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(with = "Vec<crate::schema::BuiltinToolConfig>")]
        configs: Vec<ToolConfig>,
    },
    #[serde(rename = "mcp_toolset")]
    McpToolset {
        mcp_server_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_config: Option<ToolDefaults>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        configs: Vec<ToolConfig>,
    },
    #[serde(rename = "custom")]
    Custom {
        /// Not `mcp__...` and not a built-in tool's name (the daemon's document says which).
        #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,128}$"))]
        name: String,
        #[serde(default)]
        description: String,
        input_schema: Value,
    },
}

/// `{type: url, name, url}` (streamable HTTP), or the tether extension
/// `{type: stdio, name, command, args?, env?}`: a server process run inside the session's
/// sandbox. Which fields go with which type is checked by the daemon, so a wrong file gets an
/// error naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// `url`: the server's streamable HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// tether, `stdio`: the program (a path, or a name looked up on the sandbox's PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// tether, `stdio`: its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// tether, `stdio`: extra environment variables for it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The per-tool settings of one `mcp_toolset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McpToolSettings {
    pub enabled: bool,
    pub permission: PermissionPolicy,
}

/// `{id, effort?, speed?}`; on input a bare model id string is accepted too.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentModel {
    /// `provider/model` or a bare Anthropic model id.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentModelObject {
    id: String,
    #[serde(default)]
    effort: Option<Value>,
    #[serde(default)]
    speed: Option<String>,
}

impl<'de> Deserialize<'de> for AgentModel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(id) => Ok(AgentModel {
                id,
                effort: None,
                speed: None,
            }),
            v @ Value::Object(_) => {
                let m: AgentModelObject = serde_json::from_value(v).map_err(D::Error::custom)?;
                Ok(AgentModel {
                    id: m.id,
                    effort: m.effort,
                    speed: m.speed,
                })
            }
            other => Err(D::Error::custom(format!(
                "expected a model id string (e.g. `claude-sonnet-4-6`) or `{{id: ...}}`, found {other}"
            ))),
        }
    }
}

/// The body of `agent.create` (and of `tether agents create -f FILE`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// `@` separates a name from a version in references, so a name has none.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^@]*$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// None: tether's built-in prompt for the session's workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100000))]
    pub system: Option<String>,
    /// tether: optional; None means the daemon's `default_model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<AgentModel>,
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub tools: Vec<AgentTool>,
    /// Names unique; each referenced by an `mcp_toolset` entry of `tools` that uses it.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub mcp_servers: Vec<McpServer>,
    #[serde(default)]
    #[schemars(with = "crate::schema::Metadata")]
    pub metadata: BTreeMap<String, String>,
    /// Sub-agents, workflows and an advisor (null: single-threaded). Stored as given, with
    /// agent names resolved to `{type: agent, id, version}` by the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiagent: Option<crate::multiagent::Multiagent>,
    /// Skills whose files are mounted under `/skills/<name>/` in its sessions (issue 25).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub skills: Vec<crate::skill::SkillRef>,
}

/// A session's own tools and MCP servers, replacing its agent version's for that session
/// only (hosted: `agent_with_overrides` at creation, `agent` on a session update). Each list
/// given replaces in full (`[]` clears); one left out keeps what the session has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionAgentUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub tools: Option<Vec<AgentTool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub mcp_servers: Option<Vec<McpServer>>,
}

impl SessionAgentUpdate {
    pub fn is_empty(&self) -> bool {
        self.tools.is_none() && self.mcp_servers.is_none()
    }

    /// `spec` with these lists in place of its own.
    pub fn apply(&self, spec: &mut AgentSpec) {
        if let Some(t) = &self.tools {
            spec.tools = t.clone();
        }
        if let Some(m) = &self.mcp_servers {
            spec.mcp_servers = m.clone();
        }
    }

    /// `later` on top of these: its lists win, the ones it leaves out stay.
    pub fn merged(&self, later: &SessionAgentUpdate) -> SessionAgentUpdate {
        SessionAgentUpdate {
            tools: later.tools.clone().or_else(|| self.tools.clone()),
            mcp_servers: later
                .mcp_servers
                .clone()
                .or_else(|| self.mcp_servers.clone()),
        }
    }
}

/// `agent.update` changes: an omitted field keeps its value; lists are replaced in full.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^@]*$"))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100000))]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<AgentModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub tools: Option<Vec<AgentTool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub mcp_servers: Option<Vec<McpServer>>,
    /// Over HTTP a patch: a `null` value deletes the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::MetadataPatch>")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The version these changes were made against (optimistic lock); the file form of
    /// `tether agents update` may carry it, the protocol takes it in `UpdateAgent::version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub version: Option<u32>,
    /// Omitted: unchanged; `null`: cleared (single-threaded); an object: merged into the
    /// stored `multiagent_20261001` member by member (a member sent with another `type`, or a
    /// `predefined_agents` list, replaces the stored one), else replaces it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub multiagent: Option<Option<crate::multiagent::Multiagent>>,
    /// Replaces the list (skills: issue 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub skills: Option<Vec<crate::skill::SkillRef>>,
}

/// Tells a field sent as `null` (Some(None)) from one left out (None, via `default`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// One version of an agent, as returned by every `agent.*` method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Agent {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub version: u32,
    #[serde(flatten)]
    pub spec: AgentSpec,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
}

impl Agent {
    /// Names of the built-in tools this version offers, in `all`'s order: the toolset's
    /// `default_config.enabled` (default true) overridden per tool by `configs`.
    pub fn enabled_builtin_tools<'a>(&self, all: &[&'a str]) -> Vec<&'a str> {
        let mut on: Vec<&'a str> = Vec::new();
        for tool in &self.spec.tools {
            if let AgentTool::Toolset {
                default_config,
                configs,
            } = tool
            {
                let default = default_config
                    .as_ref()
                    .and_then(|d| d.enabled)
                    .unwrap_or(true);
                for name in all {
                    let enabled = configs
                        .iter()
                        .find(|c| c.name == *name)
                        .and_then(|c| c.enabled)
                        .unwrap_or(default);
                    if enabled && !on.contains(name) {
                        on.push(name);
                    }
                }
            }
        }
        on
    }
}

impl Agent {
    /// The permission policy of built-in tool `name`: its `configs` entry, else the toolset's
    /// `default_config`, else `always_allow` (the hosted default for the agent toolset).
    pub fn builtin_permission(&self, name: &str) -> PermissionPolicy {
        for tool in &self.spec.tools {
            if let AgentTool::Toolset {
                default_config,
                configs,
            } = tool
            {
                return configs
                    .iter()
                    .find(|c| c.name == name)
                    .and_then(|c| c.permission_policy)
                    .or(default_config.as_ref().and_then(|d| d.permission_policy))
                    .unwrap_or(PermissionPolicy::AlwaysAllow);
            }
        }
        PermissionPolicy::AlwaysAllow
    }

    /// The custom tools this version declares: `(name, description, input_schema)`.
    pub fn custom_tools(&self) -> Vec<(&str, &str, &Value)> {
        self.spec
            .tools
            .iter()
            .filter_map(|t| match t {
                AgentTool::Custom {
                    name,
                    description,
                    input_schema,
                } => Some((name.as_str(), description.as_str(), input_schema)),
                _ => None,
            })
            .collect()
    }
}

impl Agent {
    /// The servers an `mcp_toolset` references, in `mcp_servers` order (a declared server no
    /// toolset uses offers nothing).
    pub fn used_mcp_servers(&self) -> Vec<&McpServer> {
        self.spec
            .mcp_servers
            .iter()
            .filter(|s| {
                self.spec.tools.iter().any(|t| {
                    matches!(t, AgentTool::McpToolset { mcp_server_name, .. } if *mcp_server_name == s.name)
                })
            })
            .collect()
    }

    /// Whether tool `tool` of MCP server `server` is offered and whether it asks: its `configs`
    /// entry, else the toolset's `default_config`, else enabled and `always_ask` (the hosted
    /// default for MCP toolsets).
    pub fn mcp_tool_settings(&self, server: &str, tool: &str) -> McpToolSettings {
        let toolset = self.spec.tools.iter().find_map(|t| match t {
            AgentTool::McpToolset {
                mcp_server_name,
                default_config,
                configs,
            } if mcp_server_name == server => Some((default_config, configs)),
            _ => None,
        });
        let Some((default_config, configs)) = toolset else {
            return McpToolSettings {
                enabled: false,
                permission: PermissionPolicy::AlwaysAsk,
            };
        };
        let config = configs.iter().find(|c| c.name == tool);
        McpToolSettings {
            enabled: config
                .and_then(|c| c.enabled)
                .or(default_config.as_ref().and_then(|d| d.enabled))
                .unwrap_or(true),
            permission: config
                .and_then(|c| c.permission_policy)
                .or(default_config.as_ref().and_then(|d| d.permission_policy))
                .unwrap_or(PermissionPolicy::AlwaysAsk),
        }
    }
}

/// An agent reference: an id, or a name; `NAME@VERSION` pins a version where one is taken.
pub type AgentRef = String;

/// Splits `NAME[@VERSION]`; a bad version number is an error the user can read.
pub fn split_agent_ref(r: &str) -> Result<(&str, Option<u32>), String> {
    match r.rsplit_once('@') {
        Some((name, v)) => v.parse::<u32>().map(|v| (name, Some(v))).map_err(|_| {
            format!("`{r}`: the version after `@` must be a positive number, e.g. `{name}@2`")
        }),
        None => Ok((r, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent(tools: Value) -> Agent {
        let spec: AgentSpec = serde_json::from_value(json!({"name": "a", "tools": tools})).unwrap();
        Agent {
            id: "agent_1".into(),
            object_type: "agent".into(),
            version: 1,
            spec,
            created_at: String::new(),
            updated_at: String::new(),
            archived_at: None,
        }
    }

    #[test]
    fn toolset_defaults_and_per_tool_overrides() {
        let all = ["bash", "read", "write"];
        let a = agent(json!([{"type": "agent_toolset_20260401"}]));
        assert_eq!(a.enabled_builtin_tools(&all), all.to_vec());
        let a = agent(json!([{"type": "agent_toolset_20260401",
            "configs": [{"name": "bash", "enabled": false}]}]));
        assert_eq!(a.enabled_builtin_tools(&all), vec!["read", "write"]);
        let a = agent(json!([{"type": "agent_toolset_20260401",
            "default_config": {"enabled": false, "permission_policy": {"type": "always_allow"}},
            "configs": [{"name": "read", "enabled": true}]}]));
        assert_eq!(a.enabled_builtin_tools(&all), vec!["read"]);
        assert!(agent(json!([])).enabled_builtin_tools(&all).is_empty());
    }

    #[test]
    fn permission_policy_per_tool_then_default_then_allow() {
        let a = agent(json!([{"type": "agent_toolset_20260401",
            "default_config": {"permission_policy": {"type": "always_ask"}},
            "configs": [{"name": "read", "permission_policy": {"type": "always_allow"}}]}]));
        assert_eq!(a.builtin_permission("bash"), PermissionPolicy::AlwaysAsk);
        assert_eq!(a.builtin_permission("read"), PermissionPolicy::AlwaysAllow);
        let a = agent(json!([{"type": "agent_toolset_20260401",
            "configs": [{"name": "write", "permission_policy": {"type": "always_ask"}}]}]));
        assert_eq!(a.builtin_permission("write"), PermissionPolicy::AlwaysAsk);
        assert_eq!(a.builtin_permission("bash"), PermissionPolicy::AlwaysAllow);
        let a = agent(
            json!([{"type": "custom", "name": "lookup", "input_schema": {"type": "object"}}]),
        );
        assert_eq!(a.builtin_permission("bash"), PermissionPolicy::AlwaysAllow);
        assert_eq!(a.custom_tools()[0].0, "lookup");
    }

    #[test]
    fn mcp_tools_default_to_enabled_and_ask() {
        let spec: AgentSpec = serde_json::from_value(json!({"name": "a",
            "mcp_servers": [{"type": "url", "name": "gh", "url": "http://x/mcp"},
                            {"type": "stdio", "name": "unused", "command": "srv"}],
            "tools": [{"type": "mcp_toolset", "mcp_server_name": "gh",
                "configs": [{"name": "merge", "enabled": false},
                            {"name": "read", "permission_policy": {"type": "always_allow"}}]}]}))
        .unwrap();
        let a = Agent {
            spec,
            ..agent(json!([]))
        };
        assert_eq!(a.used_mcp_servers().len(), 1);
        let s = a.mcp_tool_settings("gh", "search");
        assert!(s.enabled);
        assert_eq!(s.permission, PermissionPolicy::AlwaysAsk);
        assert!(!a.mcp_tool_settings("gh", "merge").enabled);
        assert_eq!(
            a.mcp_tool_settings("gh", "read").permission,
            PermissionPolicy::AlwaysAllow
        );
        assert!(!a.mcp_tool_settings("unused", "x").enabled);
    }

    #[test]
    fn model_is_a_string_or_an_object() {
        let s: AgentSpec = serde_json::from_value(json!({"name": "a", "model": "m1"})).unwrap();
        assert_eq!(s.model.unwrap().id, "m1");
        let s: AgentSpec =
            serde_json::from_value(json!({"name": "a", "model": {"id": "m2", "speed": "fast"}}))
                .unwrap();
        assert_eq!(s.model.unwrap().speed.as_deref(), Some("fast"));
        let e = serde_json::from_value::<AgentSpec>(json!({"name": "a", "model": 3})).unwrap_err();
        assert!(e.to_string().contains("model id string"), "{e}");
    }

    #[test]
    fn agent_refs_split_on_the_last_at() {
        assert_eq!(split_agent_ref("coder").unwrap(), ("coder", None));
        assert_eq!(split_agent_ref("coder@3").unwrap(), ("coder", Some(3)));
        assert!(split_agent_ref("coder@x").unwrap_err().contains("coder@2"));
    }
}
