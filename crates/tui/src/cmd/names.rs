//! Names several agents (or environments) share. The hosted API allows it, so objects made
//! over HTTP can repeat a name; the daemon resolves such a name to the newest unarchived
//! match, and the CLI says so on stderr, listing the ids, so nobody acts on the wrong one
//! without knowing.

use tether_proto::agent::split_agent_ref;
use tether_proto::method::{ListAgents, ListEnvironments, rpc};

use crate::client::Client;

/// `(id, created_at)` of each live object with the name; the note when there are several.
fn note(kind: &str, name: &str, mut matches: Vec<(String, String)>) -> Option<String> {
    if matches.len() < 2 {
        return None;
    }
    matches.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let ids: Vec<&str> = matches.iter().map(|(id, _)| id.as_str()).collect();
    Some(format!(
        "note: {} {kind}s are named `{name}` ({}, newest first); using the newest, {}. Pass an id to pick another.",
        ids.len(),
        ids.join(", "),
        ids[0]
    ))
}

/// Says so when the agent `reference` (a name, `NAME@VERSION` or an id) names several agents.
pub async fn note_shared_agent_name(c: &mut Client, reference: &str) {
    let Ok((name, _)) = split_agent_ref(reference) else {
        return;
    };
    // A failed listing only loses the note; the command itself reports real errors.
    let Ok(list) = c.request::<rpc::AgentList>(ListAgents { all: false }).await else {
        return;
    };
    let matches = list
        .data
        .into_iter()
        .filter(|a| a.spec.name == name)
        .map(|a| (a.id, a.created_at))
        .collect();
    if let Some(n) = note("agent", name, matches) {
        eprintln!("{n}");
    }
}

/// Says so when the environment `reference` (a name or an id) names several environments.
pub async fn note_shared_environment_name(c: &mut Client, reference: &str) {
    let Ok(list) = c
        .request::<rpc::EnvironmentList>(ListEnvironments { all: false })
        .await
    else {
        return;
    };
    let matches = list
        .data
        .into_iter()
        .filter(|e| e.spec.name == reference)
        .map(|e| (e.id, e.created_at))
        .collect();
    if let Some(n) = note("environment", reference, matches) {
        eprintln!("{n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_matches_are_listed_newest_first_and_one_is_no_news() {
        let one = vec![("agent_a".to_string(), "2026-01-01T00:00:00Z".to_string())];
        assert_eq!(note("agent", "x", one), None);
        let two = vec![
            ("agent_old".to_string(), "2026-01-01T00:00:00Z".to_string()),
            ("agent_new".to_string(), "2026-02-01T00:00:00Z".to_string()),
        ];
        let n = note("agent", "x", two).unwrap();
        assert!(
            n.contains("2 agents are named `x` (agent_new, agent_old"),
            "{n}"
        );
        assert!(n.contains("using the newest, agent_new"), "{n}");
    }
}
