//! Built-in scripts, shared by the binary's `--scenario` flag and by tests.

use serde_json::json;

use crate::script::{Reply, Script};

/// Names accepted by [`by_name`].
pub const NAMES: &[&str] = &["bash-then-read"];

pub fn by_name(name: &str) -> Option<Script> {
    match name {
        "bash-then-read" => Some(bash_then_read()),
        _ => None,
    }
}

/// ByTurn: run a bash command that writes `f.txt`, read it back, then answer.
pub fn bash_then_read() -> Script {
    Script::by_turn(vec![
        Reply::tool_use(
            "bash",
            json!({"command": "printf hello > f.txt && echo done"}),
        ),
        Reply::tool_use("read", json!({"file_path": "f.txt"})),
        Reply::text("The file contains hello."),
    ])
}
