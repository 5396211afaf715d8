//! What a tool call records before it runs, and how a call that an earlier daemon started but
//! never finished is settled after a restart (DESIGN.md durability rules; the restart table of
//! shared/reference/sandbox-durability.md §B6):
//!
//! | tool              | in flight at restart                                              |
//! |-------------------|-------------------------------------------------------------------|
//! | read, glob, grep  | run again: they only read                                         |
//! | write             | done if the file already holds the content, else run again        |
//! | edit              | file = post-image → done; = pre-image → run again; else conflict  |
//! | bash, the rest    | never run again: `interrupted`, with the tail of its output       |

use serde_json::Value;
use tether_proto::ProcessRecord;

use super::{ToolOutcome, Toolbox, files, path::Workspace, procs};

/// What `span.tool_call_start` records about a call before it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Intent {
    pub process: Option<ProcessRecord>,
    pub pre_sha256: Option<String>,
    pub post_sha256: Option<String>,
}

/// How a call interrupted by a daemon restart ends.
#[derive(Debug)]
pub enum Settle {
    /// Safe to run (again): it only reads, or its change provably did not happen.
    Rerun,
    /// Its result, without running it.
    Done(ToolOutcome),
}

impl Toolbox {
    /// Prepares a call and says what to record before it runs: for bash the shell it will run
    /// in (started now if needed), for edit the file's hashes before and after the change.
    pub async fn intent(&self, name: &str, input: &Value) -> Intent {
        match name {
            "bash" => {
                let restart = input
                    .get("restart")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                // A shell that fails to start is reported by the run itself.
                let process = match self.shell.ensure_started(restart).await {
                    Ok(pid) => {
                        procs::start_time(pid).map(|start_time| ProcessRecord { pid, start_time })
                    }
                    Err(_) => None,
                };
                Intent {
                    process,
                    ..Intent::default()
                }
            }
            "edit" => {
                let workspace = self.workspace.clone();
                let input = input.clone();
                tokio::task::spawn_blocking(move || edit_hashes(&workspace, &input))
                    .await
                    .unwrap_or_default()
            }
            _ => Intent::default(),
        }
    }

    /// Decides, by kind, what happens to a call an earlier daemon started and never finished.
    /// `output_tail` is what the call had printed (bash), for the model.
    pub async fn settle_restarted(
        &self,
        name: &str,
        input: &Value,
        recorded: &Intent,
        output_tail: &str,
    ) -> Settle {
        if Toolbox::is_read_only(name) {
            return Settle::Rerun;
        }
        // `Workspace::open` wants the tool's name as a static string.
        let file_tool = match name {
            "write" => Some("write"),
            "edit" => Some("edit"),
            _ => None,
        };
        if let Some(file_tool) = file_tool {
            let workspace = self.workspace.clone();
            let (input, recorded) = (input.clone(), recorded.clone());
            let checked = tokio::task::spawn_blocking(move || {
                settle_file_tool(&workspace, file_tool, &input, &recorded)
            })
            .await;
            // If the check itself failed, it is treated like any call that may have run.
            if let Ok(settled) = checked {
                return settled;
            }
        }
        let mut text = output_tail.trim_end().to_string();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "[interrupted: tetherd restarted while this `{name}` call was running. It was NOT run again and may have partly run; check its effects (files, processes) before retrying.]"
        ));
        Settle::Done(ToolOutcome::interrupted(text))
    }
}

fn edit_hashes(workspace: &std::path::Path, input: &Value) -> Intent {
    let Ok(ws) = Workspace::open(workspace, "edit") else {
        return Intent::default();
    };
    match files::plan_edit(&ws, input) {
        Ok(plan) => Intent {
            process: None,
            pre_sha256: Some(files::sha256_hex(plan.before.as_bytes())),
            post_sha256: Some(files::sha256_hex(plan.after.as_bytes())),
        },
        // The edit will fail without writing anything; running it again is harmless.
        Err(_) => Intent::default(),
    }
}

/// How a `write` or `edit` (`tool`) cut off by a restart ends, from the file's content now.
fn settle_file_tool(
    workspace: &std::path::Path,
    tool: &'static str,
    input: &Value,
    recorded: &Intent,
) -> Settle {
    let Some(raw) = input.get("file_path").and_then(Value::as_str) else {
        return Settle::Rerun;
    };
    let Ok(ws) = Workspace::open(workspace, tool) else {
        return Settle::Rerun;
    };
    let now = files::file_sha256(&ws, raw);
    if tool == "write" {
        let target = input
            .get("content")
            .and_then(Value::as_str)
            .map(|c| files::sha256_hex(c.as_bytes()));
        return match (now, target) {
            (Some(now), Some(target)) if now == target => Settle::Done(ToolOutcome::ok(format!(
                "wrote {raw} (the write had completed before tetherd restarted)"
            ))),
            _ => Settle::Rerun,
        };
    }
    let (Some(pre), Some(post)) = (&recorded.pre_sha256, &recorded.post_sha256) else {
        return Settle::Rerun;
    };
    match now {
        Some(now) if &now == post => Settle::Done(ToolOutcome::ok(format!(
            "edited {raw} (the edit had been applied before tetherd restarted)"
        ))),
        Some(now) if &now == pre => Settle::Rerun,
        _ => Settle::Done(ToolOutcome::interrupted(format!(
            "[interrupted: tetherd restarted while this edit was running, and {raw} now matches neither its content before nor after the edit. The edit was not applied again; read the file and redo it if it is still needed.]"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolStatus;
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    fn toolbox() -> (tempfile::TempDir, Toolbox) {
        let dir = tempfile::TempDir::new().unwrap();
        let tb = Toolbox::new(dir.path().to_path_buf());
        (dir, tb)
    }

    #[tokio::test]
    async fn read_only_tools_run_again() {
        let (_d, tb) = toolbox();
        for name in ["read", "glob", "grep"] {
            let s = tb
                .settle_restarted(name, &json!({}), &Intent::default(), "")
                .await;
            assert!(matches!(s, Settle::Rerun), "{name}");
        }
    }

    #[tokio::test]
    async fn bash_is_never_run_again_and_keeps_its_output_tail() {
        let (_d, tb) = toolbox();
        let s = tb
            .settle_restarted(
                "bash",
                &json!({"command": "make"}),
                &Intent::default(),
                "compiling\n",
            )
            .await;
        let Settle::Done(out) = s else {
            panic!("bash must not be re-run")
        };
        assert_eq!(out.status, ToolStatus::Interrupted);
        assert!(out.is_error);
        assert!(
            out.content
                .starts_with("compiling\n[interrupted: tetherd restarted")
        );
        assert!(out.content.contains("may have partly run"));
    }

    #[tokio::test]
    async fn write_is_done_when_the_file_already_has_the_content() {
        let (dir, tb) = toolbox();
        let input = json!({"file_path": "a.txt", "content": "new\n"});
        let s = tb
            .settle_restarted("write", &input, &Intent::default(), "")
            .await;
        assert!(matches!(s, Settle::Rerun), "missing file → write again");
        std::fs::write(dir.path().join("a.txt"), "old\n").unwrap();
        let s = tb
            .settle_restarted("write", &input, &Intent::default(), "")
            .await;
        assert!(matches!(s, Settle::Rerun), "old content → write again");
        std::fs::write(dir.path().join("a.txt"), "new\n").unwrap();
        let s = tb
            .settle_restarted("write", &input, &Intent::default(), "")
            .await;
        let Settle::Done(out) = s else { panic!() };
        assert_eq!(out.status, ToolStatus::Ok);
    }

    #[tokio::test]
    async fn edit_compares_pre_and_post_images() {
        let (dir, tb) = toolbox();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "alpha beta\n").unwrap();
        let input = json!({"file_path": "a.txt", "old_string": "beta", "new_string": "gamma"});
        let intent = tb.intent("edit", &input).await;
        assert_eq!(
            intent.pre_sha256.as_deref(),
            Some(files::sha256_hex(b"alpha beta\n").as_str())
        );
        assert_eq!(
            intent.post_sha256.as_deref(),
            Some(files::sha256_hex(b"alpha gamma\n").as_str())
        );

        // Pre-image: the edit never happened.
        let s = tb.settle_restarted("edit", &input, &intent, "").await;
        assert!(matches!(s, Settle::Rerun));
        // Post-image: it did.
        std::fs::write(&file, "alpha gamma\n").unwrap();
        let Settle::Done(out) = tb.settle_restarted("edit", &input, &intent, "").await else {
            panic!()
        };
        assert_eq!(out.status, ToolStatus::Ok);
        assert!(out.content.contains("had been applied"));
        // Something else: a conflict, not applied again.
        std::fs::write(&file, "someone else\n").unwrap();
        let Settle::Done(out) = tb.settle_restarted("edit", &input, &intent, "").await else {
            panic!()
        };
        assert_eq!(out.status, ToolStatus::Interrupted);
        assert!(out.content.contains("neither"), "{}", out.content);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "someone else\n");
    }

    #[tokio::test]
    async fn bash_intent_records_the_shell_it_will_run_in() {
        let (_d, tb) = toolbox();
        let intent = tb.intent("bash", &json!({"command": "echo hi"})).await;
        let process = intent
            .process
            .expect("the shell is started before the call");
        assert_eq!(Some(process.pid), tb.shell_pid());
        assert_eq!(procs::start_time(process.pid), Some(process.start_time));
        let out = tb
            .run(
                "bash",
                &json!({"command": "echo $$"}),
                None,
                CancellationToken::new(),
            )
            .await;
        assert_eq!(
            out.content.trim(),
            process.pid.to_string(),
            "ran in the recorded shell"
        );
        tb.shutdown().await;
    }
}
