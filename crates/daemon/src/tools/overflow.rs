//! Tool output too long for the model's context: the whole text goes to a file in the
//! workspace, and the model gets a preview and the path (as the hosted service does). Applied
//! once, to every tool's result, where the turn loop records it.

use std::path::Path;

use super::ToolOutcome;

/// Outputs longer than this many characters are moved to a file.
pub const LIMIT_CHARS: usize = 100_000;
/// Characters of the start, and of the end, of the output the model still sees (the end
/// matters: bash reports the exit code on the last line).
pub const PREVIEW_CHARS: usize = 2_000;
/// Where the files go, relative to the workspace.
pub const DIR: &str = ".tether/outputs";

/// `outcome` as is when it is short; otherwise its content is written to
/// `<workspace>/.tether/outputs/<tool_use_id>.txt` and replaced by a preview and the path.
pub fn spill(workspace: &Path, tool_use_id: &str, mut outcome: ToolOutcome) -> ToolOutcome {
    let total = outcome.content.chars().count();
    if total <= LIMIT_CHARS {
        return outcome;
    }
    let name: String = tool_use_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let relative = format!("{DIR}/{name}.txt");
    let head: String = outcome.content.chars().take(PREVIEW_CHARS).collect();
    let tail: String = {
        let mut t: Vec<char> = outcome.content.chars().rev().take(PREVIEW_CHARS).collect();
        t.reverse();
        t.into_iter().collect()
    };
    let note = match write_confined(workspace, &relative, outcome.content.as_bytes()) {
        Ok(()) => format!(
            "[output too long for one result: {total} characters. The full output is in \
             {relative} (in the workspace); read it in parts with the read tool's view_range, or \
             search it with grep. Its first and last {PREVIEW_CHARS} characters:]"
        ),
        Err(e) => format!(
            "[output too long for one result: {total} characters, and saving it to {relative} \
             failed ({e}); only its first and last {PREVIEW_CHARS} characters are shown:]"
        ),
    };
    outcome.content = format!("{note}\n{head}\n[…]\n{tail}");
    outcome
}

/// Writes through the file tools' workspace confinement (opened beneath the workspace's
/// descriptor), so a `.tether` symlink planted or swapped in by sandboxed code can't send the
/// file elsewhere.
fn write_confined(workspace: &Path, relative: &str, bytes: &[u8]) -> Result<(), String> {
    let ws = super::path::Workspace::open(workspace, "tool output")?;
    let rel = ws.resolve(relative)?;
    let target = ws.write_target(relative, &rel, true)?;
    super::path::Workspace::replace(&target, bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_outputs_are_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let out = spill(
            dir.path(),
            "toolu_1",
            ToolOutcome::ok("x".repeat(LIMIT_CHARS)),
        );
        assert_eq!(out.content.len(), LIMIT_CHARS);
        assert!(!dir.path().join(DIR).exists());
    }

    #[test]
    fn long_outputs_go_to_a_file_with_a_preview() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{}é{}{}[exit code 2]",
            "a".repeat(PREVIEW_CHARS),
            "b".repeat(LIMIT_CHARS),
            "c".repeat(PREVIEW_CHARS)
        );
        let out = spill(dir.path(), "toolu_../x", ToolOutcome::error(text.clone()));
        assert!(out.is_error, "the status is kept");
        let saved = dir.path().join(".tether/outputs/toolu____x.txt");
        assert_eq!(std::fs::read_to_string(&saved).unwrap(), text);
        assert!(
            out.content.contains(".tether/outputs/toolu____x.txt"),
            "{}",
            out.content
        );
        let total = text.chars().count();
        assert!(out.content.contains(&format!("{total} characters")));
        assert!(out.content.contains(&"a".repeat(PREVIEW_CHARS)));
        let end = format!("{}[exit code 2]", "c".repeat(PREVIEW_CHARS - 13));
        assert!(out.content.ends_with(&end), "the end, with the exit code");
        assert!(!out.content.contains('b'), "only the start and the end");
        assert!(out.content.chars().count() < 2 * PREVIEW_CHARS + 500);
    }

    #[test]
    fn a_symlinked_output_dir_is_not_followed_out_of_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(".tether")).unwrap();
        let out = spill(
            dir.path(),
            "t1",
            ToolOutcome::ok("z".repeat(LIMIT_CHARS + 1)),
        );
        assert!(out.content.contains("failed"), "{}", out.content);
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
