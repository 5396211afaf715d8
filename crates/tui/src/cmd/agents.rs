//! `tether agents ...`: agent files in, agent versions out.

use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tether_proto::agent::{
    Agent, AgentChanges, AgentSpec, AgentTool, ToolConfig, ToolDefaults, split_agent_ref,
};
use tether_proto::method::{AgentParams, ListAgents, UpdateAgent, rpc};

use super::{CmdResult, connect, usage};
use crate::cli::AgentsAction;
use crate::client::ClientError;

pub async fn run(action: AgentsAction) -> CmdResult {
    let reference = match &action {
        AgentsAction::Show { agent, .. }
        | AgentsAction::Update { agent, .. }
        | AgentsAction::Versions { agent, .. }
        | AgentsAction::Archive { agent } => Some(agent.clone()),
        _ => None,
    };
    if let Some(reference) = reference {
        super::names::note_shared_agent_name(&mut connect().await?, &reference).await;
    }
    match action {
        AgentsAction::Create { file, json } => {
            let spec: AgentSpec = read_file(&file)?;
            let agent = connect().await?.request::<rpc::AgentCreate>(spec).await?;
            print_one(&agent, json, "created");
        }
        AgentsAction::Ls { all, json } => {
            let agents = connect()
                .await?
                .request::<rpc::AgentList>(ListAgents { all })
                .await?
                .data;
            if json {
                for a in &agents {
                    println!("{}", serde_json::to_string(a).unwrap_or_default());
                }
            } else {
                println!("{:<20} {:>7}  {:<32} ID", "NAME", "VERSION", "MODEL");
                for a in &agents {
                    println!(
                        "{:<20} {:>7}  {:<32} {}{}",
                        a.spec.name,
                        a.version,
                        model_of(a),
                        a.id,
                        if a.archived_at.is_some() {
                            "  (archived)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        AgentsAction::Show {
            agent,
            version,
            json,
        } => {
            let a = connect()
                .await?
                .request::<rpc::AgentGet>(AgentParams { agent, version })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&a).unwrap_or_default());
            } else {
                print!("{}", serde_norway::to_string(&a).unwrap_or_default());
            }
        }
        AgentsAction::Update { agent, file, json } => {
            let mut changes: AgentChanges = read_file(&file)?;
            let mut c = connect().await?;
            // Without a `version` in the file, the change applies to the newest version (still
            // checked by the daemon, so a concurrent update is never silently overwritten).
            let version = match changes.version.take() {
                Some(v) => v,
                None => {
                    let name = split_agent_ref(&agent).map_err(usage)?.0.to_string();
                    let current = c
                        .request::<rpc::AgentGet>(AgentParams {
                            agent: name,
                            version: None,
                        })
                        .await?;
                    current.version
                }
            };
            let a = c
                .request::<rpc::AgentUpdate>(UpdateAgent {
                    agent,
                    version,
                    changes,
                })
                .await?;
            print_one(&a, json, "updated");
        }
        AgentsAction::Versions { agent, json } => {
            let versions = connect()
                .await?
                .request::<rpc::AgentVersions>(AgentParams {
                    agent,
                    version: None,
                })
                .await?
                .data;
            for a in &versions {
                if json {
                    println!("{}", serde_json::to_string(a).unwrap_or_default());
                } else {
                    println!(
                        "{:>4}  {}  {}  tools: {}",
                        a.version,
                        a.updated_at,
                        model_of(a),
                        tools_summary(a)
                    );
                }
            }
        }
        AgentsAction::Archive { agent } => {
            let a = connect()
                .await?
                .request::<rpc::AgentArchive>(AgentParams {
                    agent,
                    version: None,
                })
                .await?;
            println!("archived agent {} ({})", a.spec.name, a.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_one(a: &Agent, json: bool, what: &str) {
    if json {
        println!("{}", serde_json::to_string(a).unwrap_or_default());
    } else {
        println!(
            "{what} agent {} version {} ({})",
            a.spec.name, a.version, a.id
        );
    }
}

fn model_of(a: &Agent) -> String {
    a.spec
        .model
        .as_ref()
        .map(|m| m.id.clone())
        .unwrap_or_else(|| "(daemon default)".into())
}

fn tools_summary(a: &Agent) -> String {
    let all = ["bash", "read", "write", "edit", "glob", "grep"];
    let mut names: Vec<String> = a
        .enabled_builtin_tools(&all)
        .into_iter()
        .map(String::from)
        .collect();
    for t in &a.spec.tools {
        match t {
            AgentTool::McpToolset {
                mcp_server_name, ..
            } => names.push(format!("mcp:{mcp_server_name}")),
            AgentTool::Custom { name, .. } => names.push(format!("custom:{name}")),
            AgentTool::Toolset { .. } => {}
        }
    }
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

/// Reads an agent file by its extension: `.yaml`/`.yml`, `.json`, `.toml`; anything else
/// is read as YAML (which also accepts JSON).
fn read_file<T: DeserializeOwned>(path: &str) -> Result<T, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read the agent file {path}: {e}")))?;
    parse(path, &text).map_err(usage)
}

fn parse<T: DeserializeOwned>(path: &str, text: &str) -> Result<T, String> {
    super::spec_file::parse_with(path, text, locate_in_lists)
}

/// Entries of `tools` are tagged by `type`, so serde reports their errors at the list; this
/// finds the entry (and its field) that fails, e.g. `tools[0].configs[1]: expected a boolean`.
fn locate_in_lists(v: &Value) -> Option<String> {
    fn check<T: DeserializeOwned>(at: String, v: &Value) -> Option<String> {
        serde_json::from_value::<T>(v.clone())
            .err()
            .map(|e| format!("{at}: {e}"))
    }
    for (i, tool) in v.get("tools")?.as_array()?.iter().enumerate() {
        if serde_json::from_value::<AgentTool>(tool.clone()).is_ok() {
            continue;
        }
        let in_configs = tool
            .get("configs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .find_map(|(j, c)| check::<ToolConfig>(format!("tools[{i}].configs[{j}]"), c));
        let in_default = || {
            tool.get("default_config")
                .and_then(|d| check::<ToolDefaults>(format!("tools[{i}].default_config"), d))
        };
        return in_configs
            .or_else(in_default)
            .or_else(|| check::<AgentTool>(format!("tools[{i}]"), tool));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "name: coder
description: Writes code
model: claude-sonnet-4-6
system: You are terse.
tools:
  - type: agent_toolset_20260401
    default_config:
      permission_policy: {type: always_allow}
    configs:
      - name: bash
        enabled: false
metadata:
  team: infra
";

    #[test]
    fn the_same_agent_reads_from_yaml_json_and_toml() {
        let y: AgentSpec = parse("a.yaml", YAML).unwrap();
        assert_eq!(y.model.as_ref().unwrap().id, "claude-sonnet-4-6");
        let j: AgentSpec = parse("a.json", &serde_json::to_string(&y).unwrap()).unwrap();
        let t: AgentSpec = parse(
            "a.toml",
            r#"name = "coder"
description = "Writes code"
model = "claude-sonnet-4-6"
system = "You are terse."
metadata = { team = "infra" }
[[tools]]
type = "agent_toolset_20260401"
default_config = { permission_policy = { type = "always_allow" } }
configs = [{ name = "bash", enabled = false }]
"#,
        )
        .unwrap();
        assert_eq!(y, j);
        assert_eq!(y, t);
    }

    #[test]
    fn bad_files_point_at_the_field() {
        let e = parse::<AgentSpec>("a.yaml", "name: x\nsytem: hi\n").unwrap_err();
        assert!(e.contains("unknown field `sytem`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = parse::<AgentSpec>(
            "a.yaml",
            "name: x\ntools:\n  - type: agent_toolset_20260401\n    configs:\n      - name: bash\n        enabled: maybe\n",
        )
        .unwrap_err();
        assert!(e.contains("tools[0].configs[0]: invalid type"), "{e}");
        assert!(e.contains("expected a boolean"), "{e}");
        let e = parse::<AgentSpec>("a.yaml", "name: x\ntools:\n  - type: toolbox\n").unwrap_err();
        assert!(e.contains("tools[0]: unknown variant `toolbox`"), "{e}");
        let e = parse::<AgentSpec>("a.json", "{\"description\": \"d\"}").unwrap_err();
        assert!(e.contains("missing field `name`"), "{e}");
    }
}
