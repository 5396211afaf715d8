//! An environment's networking as the network policy its sessions and builds run under.
//! Below `environments` and `envbuild`, which both use it.

use tether_proto::agent::Agent;
use tether_proto::environment::Networking;
use tether_proto::{ErrorBody, ErrorCode};

/// The network policy a session of `agent` runs under in an environment with `networking`:
/// `allow_mcp_servers` adds the agent's MCP server URLs to a `limited` allow-list.
pub fn net_policy(
    networking: &Networking,
    agent: Option<&Agent>,
) -> Result<crate::net::NetPolicy, ErrorBody> {
    use crate::net::NetPolicy;
    Ok(match networking {
        Networking::None => NetPolicy::None,
        Networking::Unrestricted => NetPolicy::Unrestricted,
        Networking::Limited {
            allowed_hosts,
            allow_package_managers,
            allow_mcp_servers,
        } => {
            let policy =
                NetPolicy::limited(allowed_hosts, *allow_package_managers).map_err(|e| {
                    ErrorBody::new(
                        ErrorCode::InvalidParams,
                        format!("config.networking.allowed_hosts: {e}"),
                    )
                })?;
            match agent {
                Some(agent) if *allow_mcp_servers => {
                    let urls: Vec<&str> = agent
                        .used_mcp_servers()
                        .into_iter()
                        .filter_map(|s| s.url.as_deref())
                        .collect();
                    policy.with_mcp_urls(&urls)
                }
                _ => policy,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn agent_with_mcp(url: &str) -> Agent {
        serde_json::from_value(json!({
            "id": "agent_1", "type": "agent", "version": 1, "name": "a",
            "created_at": "t", "updated_at": "t", "archived_at": null,
            "mcp_servers": [{"type": "url", "name": "m", "url": url}],
            "tools": [{"type": "mcp_toolset", "mcp_server_name": "m"}],
        }))
        .unwrap()
    }

    #[test]
    fn allow_mcp_servers_adds_the_agents_server_hosts() {
        let agent = agent_with_mcp("https://mcp.example.org/mcp");
        let networking = |allow: bool| Networking::Limited {
            allowed_hosts: vec!["example.com".into()],
            allow_package_managers: false,
            allow_mcp_servers: allow,
        };
        let on = net_policy(&networking(true), Some(&agent)).unwrap();
        assert!(on.check("mcp.example.org", 443).is_ok());
        assert!(on.check("example.com", 443).is_ok());
        let off = net_policy(&networking(false), Some(&agent)).unwrap();
        assert!(off.check("mcp.example.org", 443).is_err());
        let no_agent = net_policy(&networking(true), None).unwrap();
        assert!(no_agent.check("mcp.example.org", 443).is_err());
    }
}
