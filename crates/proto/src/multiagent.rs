//! An agent's `multiagent` field (hosted `multiagent_20261001` and the older `coordinator`):
//! which agents a session's primary thread may delegate to, whether it may define inline ones,
//! and which advisor model it may consult. Shapes and defaults follow the hosted API; the rules
//! that need no lookup are checked here ([`Multiagent::validate`]), the ones that need the agent
//! store (referenced agents exist, are not archived, have no `multiagent` of their own) by the
//! daemon.

use serde::{Deserialize, Serialize};

/// Most predefined agents in one member's list (and entries in a coordinator's roster).
pub const MAX_ROSTER: usize = 20;
/// Most child threads a session may have at once, idle ones included until archived (the
/// advisor's and workflow runs' threads are exempt).
pub const MAX_CHILD_THREADS: usize = 25;
/// The roster name the advisor occupies; no member may use it.
pub const ADVISOR_NAME: &str = "anthropic.advisor";

/// Tool names the primary thread gets (hosted coordinator names, so scripts written for one
/// work with the other). `spawn_agent` only when inline agents are enabled, `consult_advisor`
/// only with an advisor.
pub const TOOL_LIST_AGENTS: &str = "list_agents";
pub const TOOL_SEND_TO_AGENT: &str = "send_to_agent";
pub const TOOL_SPAWN_AGENT: &str = "spawn_agent";
pub const TOOL_CONSULT_ADVISOR: &str = "consult_advisor";
/// With the `workflows` member enabled: the model starts a workflow run from a plan it writes
/// (the workflow file's shape); the run's result comes back as a message when it ends.
pub const TOOL_START_WORKFLOW: &str = "start_workflow";

/// The agent field; `null` means single-threaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type")]
pub enum Multiagent {
    #[serde(rename = "multiagent_20261001")]
    V20261001 {
        /// Omitted or null: disabled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        advisor: Option<Advisor>,
        /// Omitted or null: enabled, inline agents enabled, no predefined agents.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subagents: Option<Members>,
        /// Omitted or null: enabled, inline agents enabled, no predefined agents.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workflows: Option<Members>,
    },
    /// Older form: a roster of 1-20 entries; at most one advisor and one `self`.
    #[serde(rename = "coordinator")]
    Coordinator { agents: Vec<RosterEntry> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Advisor {
    /// `model`: `provider/model` or a bare Anthropic model id, like an agent's.
    Enabled {
        model: String,
    },
    Disabled {},
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Members {
    Enabled {
        /// Omitted: enabled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inline_agents: Option<Toggle>,
        /// Null and `[]` both mean none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        predefined_agents: Option<Vec<RosterEntry>>,
    },
    Disabled {},
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Toggle {
    Enabled {},
    Disabled {},
}

/// A roster entry: an agent id or (tether) name for its latest version, a pinned version,
/// the session's own agent, or (coordinator rosters only) the advisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RosterEntry {
    Reference(String),
    Object(RosterObject),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RosterObject {
    Agent {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
    #[serde(rename = "self")]
    OwnAgent {},
    Advisor {
        model: String,
    },
}

/// One member with its defaults applied: what a session may do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Roster {
    pub inline_agents: bool,
    pub predefined: Vec<RosterEntry>,
}

/// The field with every default applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effective {
    /// None: disabled.
    pub subagents: Option<Roster>,
    pub workflows: Option<Roster>,
    pub advisor: Option<String>,
}

impl Members {
    fn effective(member: Option<&Members>) -> Option<Roster> {
        match member {
            None => Some(Roster {
                inline_agents: true,
                predefined: Vec::new(),
            }),
            Some(Members::Disabled {}) => None,
            Some(Members::Enabled {
                inline_agents,
                predefined_agents,
            }) => Some(Roster {
                inline_agents: !matches!(inline_agents, Some(Toggle::Disabled {})),
                predefined: predefined_agents.clone().unwrap_or_default(),
            }),
        }
    }
}

impl Multiagent {
    /// The defaults applied: an omitted or null member takes its default (so `workflows: null`
    /// enables workflows, as hosted).
    pub fn effective(&self) -> Effective {
        match self {
            Multiagent::V20261001 {
                advisor,
                subagents,
                workflows,
            } => Effective {
                subagents: Members::effective(subagents.as_ref()),
                workflows: Members::effective(workflows.as_ref()),
                advisor: match advisor {
                    Some(Advisor::Enabled { model }) => Some(model.clone()),
                    _ => None,
                },
            },
            Multiagent::Coordinator { agents } => Effective {
                subagents: Some(Roster {
                    inline_agents: false,
                    predefined: agents
                        .iter()
                        .filter(|a| !matches!(a, RosterEntry::Object(RosterObject::Advisor { .. })))
                        .cloned()
                        .collect(),
                }),
                workflows: None,
                advisor: agents.iter().find_map(|a| match a {
                    RosterEntry::Object(RosterObject::Advisor { model }) => Some(model.clone()),
                    _ => None,
                }),
            },
        }
    }

    /// The field as the hosted API answers it: every `multiagent_20261001` member said, with
    /// its defaults (advisor disabled; subagents and workflows enabled, inline agents enabled,
    /// no predefined agents), which strict SDK clients require. A coordinator is unchanged.
    pub fn resolved(&self) -> Multiagent {
        let member = |m: &Option<Members>| match m {
            None => Members::Enabled {
                inline_agents: Some(Toggle::Enabled {}),
                predefined_agents: Some(Vec::new()),
            },
            Some(Members::Disabled {}) => Members::Disabled {},
            Some(Members::Enabled {
                inline_agents,
                predefined_agents,
            }) => Members::Enabled {
                inline_agents: Some(inline_agents.unwrap_or(Toggle::Enabled {})),
                predefined_agents: Some(predefined_agents.clone().unwrap_or_default()),
            },
        };
        match self {
            Multiagent::V20261001 {
                advisor,
                subagents,
                workflows,
            } => Multiagent::V20261001 {
                advisor: Some(advisor.clone().unwrap_or(Advisor::Disabled {})),
                subagents: Some(member(subagents)),
                workflows: Some(member(workflows)),
            },
            Multiagent::Coordinator { agents } => Multiagent::Coordinator {
                agents: agents.clone(),
            },
        }
    }

    /// The rules that need no lookup; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Multiagent::V20261001 {
                advisor,
                subagents,
                workflows,
            } => {
                if let Some(Advisor::Enabled { model }) = advisor
                    && model.trim().is_empty()
                {
                    return Err("multiagent.advisor.model is empty: name a model, e.g. `openai/gpt-5.1`, or use `{type: disabled}`".into());
                }
                for (name, member) in [("subagents", subagents), ("workflows", workflows)] {
                    if let Some(Members::Enabled {
                        inline_agents,
                        predefined_agents,
                    }) = member
                    {
                        let list = predefined_agents.as_deref().unwrap_or_default();
                        check_list(&format!("multiagent.{name}.predefined_agents"), list, false)?;
                        if matches!(inline_agents, Some(Toggle::Disabled {})) && list.is_empty() {
                            return Err(format!(
                                "multiagent.{name} has inline_agents disabled and no predefined_agents, so it could call no agent: list at least one agent, enable inline_agents, or set `{name}: {{type: disabled}}`"
                            ));
                        }
                    }
                }
                Ok(())
            }
            Multiagent::Coordinator { agents } => {
                if agents.is_empty() {
                    return Err(
                        "multiagent.agents (coordinator) is empty: list 1 to 20 agents".into(),
                    );
                }
                check_list("multiagent.agents", agents, true)
            }
        }
    }
}

fn check_list(field: &str, list: &[RosterEntry], advisor_allowed: bool) -> Result<(), String> {
    if list.len() > MAX_ROSTER {
        return Err(format!(
            "{field} has {} entries; at most {MAX_ROSTER} are allowed",
            list.len()
        ));
    }
    let mut own = 0;
    let mut advisors = 0;
    let mut seen: Vec<String> = Vec::new();
    for entry in list {
        let key = match entry {
            RosterEntry::Reference(r) => {
                let r = r.trim();
                if r.is_empty() {
                    return Err(format!("{field} has an empty agent reference"));
                }
                if r == ADVISOR_NAME {
                    return Err(format!(
                        "{field}: `{ADVISOR_NAME}` is the advisor's roster name; configure the advisor with `advisor: {{type: enabled, model: ...}}` instead"
                    ));
                }
                format!("ref:{r}")
            }
            RosterEntry::Object(RosterObject::Agent { id, version }) => {
                if version == &Some(0) {
                    return Err(format!(
                        "{field}: agent `{id}` version 0; versions start at 1"
                    ));
                }
                format!("ref:{id}@{version:?}")
            }
            RosterEntry::Object(RosterObject::OwnAgent {}) => {
                own += 1;
                "self".into()
            }
            RosterEntry::Object(RosterObject::Advisor { model }) => {
                if !advisor_allowed {
                    return Err(format!(
                        "{field}: the advisor is never a list entry; use `advisor: {{type: enabled, model: {model}}}`"
                    ));
                }
                advisors += 1;
                "advisor".into()
            }
        };
        if seen.contains(&key) {
            return Err(format!(
                "{field} lists the same agent twice ({key}); entries must be distinct"
            ));
        }
        seen.push(key);
    }
    if own > 1 {
        return Err(format!("{field} has more than one `{{type: self}}`"));
    }
    if advisors > 1 {
        return Err(format!(
            "{field} has more than one advisor; at most one is allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Multiagent {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn omitted_and_null_members_take_their_defaults() {
        let m = parse(serde_json::json!({"type": "multiagent_20261001", "workflows": null}));
        let e = m.effective();
        assert_eq!(e.advisor, None);
        assert_eq!(
            e.subagents,
            Some(Roster {
                inline_agents: true,
                predefined: vec![]
            })
        );
        assert!(e.workflows.is_some(), "null enables workflows, as hosted");
    }

    #[test]
    fn resolved_says_every_member_with_its_default() {
        let bare = parse(serde_json::json!({"type": "multiagent_20261001"}));
        assert_eq!(
            serde_json::to_value(bare.resolved()).unwrap(),
            serde_json::json!({"type": "multiagent_20261001",
                "advisor": {"type": "disabled"},
                "subagents": {"type": "enabled", "inline_agents": {"type": "enabled"}, "predefined_agents": []},
                "workflows": {"type": "enabled", "inline_agents": {"type": "enabled"}, "predefined_agents": []}})
        );
        // What is given stays; the effective behaviour does not change.
        let given = parse(serde_json::json!({"type": "multiagent_20261001",
            "advisor": {"type": "enabled", "model": "openai/gpt-5.1"},
            "subagents": {"type": "enabled", "inline_agents": {"type": "disabled"}, "predefined_agents": ["a"]},
            "workflows": {"type": "disabled"}}));
        let resolved = serde_json::to_value(given.resolved()).unwrap();
        assert_eq!(resolved["subagents"]["inline_agents"]["type"], "disabled");
        assert_eq!(
            resolved["subagents"]["predefined_agents"],
            serde_json::json!(["a"])
        );
        assert_eq!(
            resolved["workflows"],
            serde_json::json!({"type": "disabled"})
        );
        assert_eq!(resolved["advisor"]["model"], "openai/gpt-5.1");
        assert_eq!(given.resolved().effective(), given.effective());
        assert_eq!(bare.resolved().effective(), bare.effective());
    }

    #[test]
    fn the_issue_example_parses_and_validates() {
        let m = parse(serde_json::json!({
            "type": "multiagent_20261001",
            "subagents": {"type": "enabled", "predefined_agents": ["reviewer", {"type": "self"}]},
            "advisor": {"type": "enabled", "model": "openai/gpt-5.1"}
        }));
        m.validate().unwrap();
        let e = m.effective();
        assert_eq!(e.advisor.as_deref(), Some("openai/gpt-5.1"));
        let sub = e.subagents.unwrap();
        assert!(sub.inline_agents);
        assert_eq!(sub.predefined.len(), 2);
        assert_eq!(
            sub.predefined[1],
            RosterEntry::Object(RosterObject::OwnAgent {})
        );
    }

    #[test]
    fn invalid_rosters_are_refused_with_the_fix() {
        let bad = [
            serde_json::json!({"type": "multiagent_20261001", "subagents": {"type": "enabled", "inline_agents": {"type": "disabled"}}}),
            serde_json::json!({"type": "multiagent_20261001", "subagents": {"type": "enabled", "predefined_agents": [{"type": "self"}, {"type": "self"}]}}),
            serde_json::json!({"type": "multiagent_20261001", "subagents": {"type": "enabled", "predefined_agents": ["a", "a"]}}),
            serde_json::json!({"type": "multiagent_20261001", "subagents": {"type": "enabled", "predefined_agents": ["anthropic.advisor"]}}),
            serde_json::json!({"type": "multiagent_20261001", "workflows": {"type": "enabled", "predefined_agents": [{"type": "advisor", "model": "m"}]}}),
            serde_json::json!({"type": "multiagent_20261001", "advisor": {"type": "enabled", "model": " "}}),
            serde_json::json!({"type": "coordinator", "agents": []}),
            serde_json::json!({"type": "coordinator", "agents": [{"type": "advisor", "model": "a"}, {"type": "advisor", "model": "b"}]}),
        ];
        for b in bad {
            let m = parse(b.clone());
            assert!(m.validate().is_err(), "accepted {b}");
        }
        let too_many: Vec<String> = (0..21).map(|i| format!("a{i}")).collect();
        let m = parse(
            serde_json::json!({"type": "multiagent_20261001", "subagents": {"type": "enabled", "predefined_agents": too_many}}),
        );
        assert!(m.validate().unwrap_err().contains("at most 20"));
    }

    #[test]
    fn a_coordinator_roster_splits_into_agents_and_advisor() {
        let m = parse(
            serde_json::json!({"type": "coordinator", "agents": ["agent_x", {"type": "advisor", "model": "claude-opus-4-6"}]}),
        );
        m.validate().unwrap();
        let e = m.effective();
        assert_eq!(e.advisor.as_deref(), Some("claude-opus-4-6"));
        let sub = e.subagents.unwrap();
        assert!(!sub.inline_agents);
        assert_eq!(
            sub.predefined,
            vec![RosterEntry::Reference("agent_x".into())]
        );
        assert_eq!(e.workflows, None);
    }
}
