//! What a session's pinned agent version says about tool calls beyond which built-in tools are
//! offered (that list lives on the session row): which built-in tools ask before they run, and
//! the custom tools whose results come from a client.

use tether_proto::Permission;
use tether_proto::agent::{Agent, PermissionPolicy};

use crate::provider::ToolSpec;
use crate::tools::Toolbox;

#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    /// Built-in tools under `always_ask`.
    ask: Vec<String>,
    /// Custom tools, offered to the model after the built-in ones.
    custom: Vec<ToolSpec>,
    /// The pinned version when it uses MCP servers (their toolsets say what is offered and
    /// what asks, once the servers list their tools).
    pub mcp_agent: Option<Agent>,
}

impl ToolPolicy {
    /// The policy of a pinned version; sessions from before agents existed (None) allow every
    /// built-in tool and have no custom tools.
    pub fn of(agent: Option<&Agent>) -> ToolPolicy {
        let Some(agent) = agent else {
            return ToolPolicy::default();
        };
        ToolPolicy {
            ask: Toolbox::definitions()
                .iter()
                .map(|d| d.name)
                .filter(|n| agent.builtin_permission(n) == PermissionPolicy::AlwaysAsk)
                .map(String::from)
                .collect(),
            custom: agent
                .custom_tools()
                .into_iter()
                .map(|(name, description, schema)| ToolSpec {
                    name: name.to_string(),
                    description: description.to_string(),
                    input_schema: schema.clone(),
                })
                .collect(),
            mcp_agent: (!agent.used_mcp_servers().is_empty()).then(|| agent.clone()),
        }
    }

    /// `evaluated_permission` of a call to built-in tool `name`.
    pub fn permission(&self, name: &str) -> Permission {
        if self.ask.iter().any(|n| n == name) {
            Permission::Ask
        } else {
            Permission::Allow
        }
    }

    pub fn is_custom(&self, name: &str) -> bool {
        self.custom.iter().any(|t| t.name == name)
    }

    pub fn custom_tools(&self) -> &[ToolSpec] {
        &self.custom
    }
}
