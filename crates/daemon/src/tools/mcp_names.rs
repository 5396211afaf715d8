//! The names MCP servers' tools are offered to the model by (`mcp__<server>__<tool>`). Kept
//! beside the built-in tools so agent validation, the session's fold and its MCP client agree
//! on them without importing one another.

/// Prefix of the model-facing name of every MCP tool; no built-in tool has it and agent
/// validation refuses custom tools that do.
pub const PREFIX: &str = "mcp__";

/// The name the model calls tool `tool` of server `server` by. Characters a model API does not
/// accept in tool names become `_` (server names are validated to need none of this).
pub fn model_name(server: &str, tool: &str) -> String {
    let tool: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{PREFIX}{server}__{tool}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_prefixed_and_safe() {
        assert_eq!(model_name("fs", "read_file"), "mcp__fs__read_file");
        assert_eq!(
            model_name("gh", "repo.search/v2"),
            "mcp__gh__repo_search_v2"
        );
    }
}
