//! `run|send --outcome TASK --rubric FILE`: the flags made into an [`OutcomeSpec`] (checked
//! before anything is sent), the rubric read from its file or stdin, and the exit code a
//! verdict maps to.

use std::io::Read;
use std::process::ExitCode;

use tether_proto::StopReason;
use tether_proto::outcome::{
    Escalation, EvaluationResult, GraderSpec, MAX_RUBRIC_CHARS, OutcomeCheck, OutcomeSpec, Rubric,
};

use crate::cli::OutcomeArgs;

/// Exit code of an outcome that was not satisfied (see `OUTCOME_HELP` in cli.rs).
pub const NOT_SATISFIED: u8 = 4;

/// Where `--rubric` text comes from; tests read from memory.
pub(super) trait RubricSource {
    /// The text of `path` (`-`: stdin), or a message naming it and saying what to fix.
    fn read(&self, path: &str) -> Result<String, String>;
}

/// The real files and stdin.
pub(super) struct Files;

/// More bytes than this can't be a rubric within the character limit (4 bytes a char at most).
const MAX_RUBRIC_BYTES: u64 = MAX_RUBRIC_CHARS as u64 * 4;

impl RubricSource for Files {
    fn read(&self, path: &str) -> Result<String, String> {
        let bytes = if path == "-" {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                return Err(
                    "--rubric -: stdin is a terminal; pipe the rubric in (`... --rubric - < rubric.md`) or give its file"
                        .into(),
                );
            }
            let mut buf = Vec::new();
            std::io::stdin()
                .take(MAX_RUBRIC_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| format!("--rubric -: cannot read stdin: {e}"))?;
            buf
        } else {
            let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "--rubric {path}: no such file; give the path of a text file with the grading criteria, or the criteria inline with --rubric-text \"...\""
                ),
                _ => format!("--rubric {path}: cannot read it: {e}"),
            })?;
            if meta.is_dir() {
                return Err(format!(
                    "--rubric {path} is a directory; give the text file with the grading criteria"
                ));
            }
            if meta.len() > MAX_RUBRIC_BYTES {
                return Err(too_long(path, meta.len() as usize, "bytes"));
            }
            std::fs::read(path).map_err(|e| format!("--rubric {path}: cannot read it: {e}"))?
        };
        String::from_utf8(bytes).map_err(|_| {
            format!("--rubric {path} is not UTF-8 text; the rubric is text the grader reads")
        })
    }
}

fn too_long(path: &str, n: usize, unit: &str) -> String {
    format!(
        "--rubric {path} has {n} {unit}; a rubric holds at most {MAX_RUBRIC_CHARS} characters: shorten it (the grader reads all of it)"
    )
}

fn rubric_text(a: &OutcomeArgs, src: &dyn RubricSource) -> Result<Option<String>, String> {
    if let Some(t) = &a.rubric_text {
        if t.trim().is_empty() {
            return Err(
                "--rubric-text is empty: give the criteria the work is graded against".into(),
            );
        }
        return Ok(Some(t.clone()));
    }
    let Some(path) = &a.rubric else {
        return Ok(None);
    };
    let text = src.read(path)?;
    if text.trim().is_empty() {
        return Err(if path == "-" {
            "--rubric -: stdin was empty; pipe the grading criteria in".into()
        } else {
            format!("--rubric {path} is empty; write the criteria the work is graded against in it")
        });
    }
    let chars = text.chars().count();
    if chars > MAX_RUBRIC_CHARS {
        return Err(too_long(path, chars, "characters"));
    }
    Ok(Some(text))
}

/// The flag that only means something with an outcome, if one was given.
fn outcome_only_flag(a: &OutcomeArgs) -> Option<&'static str> {
    [
        (a.max_iterations.is_some(), "--max-iterations"),
        (!a.checks.is_empty(), "--check"),
        (!a.check_files.is_empty(), "--check-file"),
        (a.grader_model.is_some(), "--grader-model"),
        (a.judges.is_some(), "--judges"),
        (a.escalate_after.is_some(), "--escalate-after"),
        (a.escalate_model.is_some(), "--escalate-model"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag))
}

/// The outcome the flags ask for (None: a plain message), validated like the daemon does.
/// `prompt` is the positional text: the task when --rubric comes without --outcome.
pub(super) fn spec(
    prompt: Option<&str>,
    a: &OutcomeArgs,
    src: &dyn RubricSource,
) -> Result<Option<OutcomeSpec>, String> {
    let has_rubric = a.rubric.is_some() || a.rubric_text.is_some();
    let description = match (&a.outcome, prompt) {
        (Some(_), Some(_)) => {
            return Err(
                "give the task once: with --outcome TASK there is no message argument (or drop --outcome: with --rubric the message is the task)"
                    .into(),
            );
        }
        (Some(task), None) if has_rubric => task.clone(),
        (Some(_), None) => {
            return Err(
                "--outcome needs a rubric to grade by: --rubric FILE (`-` for stdin) or --rubric-text \"...\""
                    .into(),
            );
        }
        (None, Some(p)) if has_rubric => p.to_string(),
        (None, None) if has_rubric => {
            return Err("--rubric needs a task: --outcome TASK (or the message argument)".into());
        }
        (None, _) => {
            return match outcome_only_flag(a) {
                Some(flag) => Err(format!(
                    "{flag} only applies to an outcome: add --outcome TASK --rubric FILE"
                )),
                None => Ok(None),
            };
        }
    };
    let content = rubric_text(a, src)?.unwrap_or_default();
    let mut checks: Vec<OutcomeCheck> = a
        .checks
        .iter()
        .map(|c| OutcomeCheck::Command {
            command: c.clone(),
            timeout_secs: None,
        })
        .collect();
    checks.extend(
        a.check_files
            .iter()
            .map(|p| OutcomeCheck::FileExists { path: p.clone() }),
    );
    let grader = (a.grader_model.is_some() || a.judges.is_some()).then(|| GraderSpec {
        model: a.grader_model.clone(),
        judges: a.judges,
        ..GraderSpec::default()
    });
    let escalate = match (a.escalate_after, &a.escalate_model) {
        (Some(after), Some(model)) => Some(Escalation {
            after,
            model: model.clone(),
        }),
        (None, None) => None,
        // clap requires them together; said again for callers that build args by hand.
        _ => return Err("--escalate-after K and --escalate-model M go together".into()),
    };
    let spec = OutcomeSpec {
        outcome_id: None,
        description,
        rubric: Rubric::Text { content },
        max_iterations: a.max_iterations,
        checks,
        grader,
        escalate,
    };
    spec.validate()
        .map_err(|e| format!("outcome: {}", e.message))?;
    Ok(Some(spec))
}

/// The exit code of a followed outcome: 0 satisfied, [`NOT_SATISFIED`] for any other
/// verdict, 1 when the turn stopped before a verdict (error, budget, waiting for approval).
pub(super) fn exit_code(verdict: Option<EvaluationResult>, reason: Option<&StopReason>) -> u8 {
    match (verdict, reason) {
        (Some(EvaluationResult::Satisfied), Some(r)) if r.is_success() => 0,
        (Some(EvaluationResult::Satisfied), _) => 1,
        (Some(_), Some(StopReason::RequiresAction { .. })) => 1,
        (Some(_), _) => NOT_SATISFIED,
        (None, _) => 1,
    }
}

/// [`exit_code`] as an [`ExitCode`], saying on stderr why it is not 0.
pub(super) fn finish(
    session: &str,
    verdict: Option<EvaluationResult>,
    reason: Option<&StopReason>,
    json: bool,
) -> ExitCode {
    let code = exit_code(verdict, reason);
    if !json {
        match (verdict, code) {
            (_, 0) => eprintln!("outcome satisfied"),
            (Some(v), NOT_SATISFIED) => eprintln!(
                "outcome not satisfied: {} (`tether logs {session}` has every evaluation)",
                crate::outcome::result_label(v)
            ),
            (_, _) if matches!(reason, Some(StopReason::RequiresAction { .. })) => {}
            (_, _) => eprintln!(
                "session {session} stopped before the outcome was graded{}",
                reason
                    .map(|r| format!(" ({})", crate::render::stop_reason_text(r)))
                    .unwrap_or_default()
            ),
        }
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::Parser;

    use crate::cli::{Cli, Command};

    /// Rubric files from memory: `path` → text; any other path is missing.
    struct Mem(&'static [(&'static str, &'static str)]);

    impl RubricSource for Mem {
        fn read(&self, path: &str) -> Result<String, String> {
            self.0
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| format!("--rubric {path}: no such file"))
        }
    }

    const FILES: Mem = Mem(&[
        (
            "rubric.md",
            "- cargo test passes\n- README documents --verbose\n",
        ),
        ("empty.md", "  \n"),
    ]);

    /// `tether run ARGS…` parsed, then mapped.
    fn run(args: &[&str]) -> Result<Option<OutcomeSpec>, String> {
        let cli =
            Cli::try_parse_from(["tether", "run"].iter().chain(args)).map_err(|e| e.to_string())?;
        let Some(Command::Run(r)) = cli.command else {
            panic!("not run")
        };
        spec(r.prompt.as_deref(), &r.outcome, &FILES)
    }

    fn send(args: &[&str]) -> Result<Option<OutcomeSpec>, String> {
        let cli = Cli::try_parse_from(["tether", "send", "s1"].iter().chain(args))
            .map_err(|e| e.to_string())?;
        let Some(Command::Send { text, outcome, .. }) = cli.command else {
            panic!("not send")
        };
        spec(text.as_deref(), &outcome, &FILES)
    }

    #[test]
    fn every_flag_lands_in_the_spec() {
        let s = run(&[
            "--outcome",
            "make the tests pass",
            "--rubric",
            "rubric.md",
            "--max-iterations",
            "5",
            "--check",
            "cargo test",
            "--check",
            "cargo clippy",
            "--check-file",
            "out.md",
            "--grader-model",
            "openai/gpt-5.1",
            "--judges",
            "3",
            "--escalate-after",
            "2",
            "--escalate-model",
            "anthropic/claude-opus-4-6",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.description, "make the tests pass");
        assert_eq!(
            s.rubric_text(),
            "- cargo test passes\n- README documents --verbose\n"
        );
        assert_eq!(s.max_iterations, Some(5));
        assert_eq!(
            s.checks,
            vec![
                OutcomeCheck::Command {
                    command: "cargo test".into(),
                    timeout_secs: None
                },
                OutcomeCheck::Command {
                    command: "cargo clippy".into(),
                    timeout_secs: None
                },
                OutcomeCheck::FileExists {
                    path: "out.md".into()
                },
            ]
        );
        let g = s.grader.unwrap();
        assert_eq!(g.model.as_deref(), Some("openai/gpt-5.1"));
        assert_eq!(g.judges, Some(3));
        assert_eq!(
            s.escalate,
            Some(Escalation {
                after: 2,
                model: "anthropic/claude-opus-4-6".into()
            })
        );
        assert_eq!(s.outcome_id, None);
    }

    #[test]
    fn the_minimal_outcome_is_the_hosted_shape() {
        let s = run(&["--outcome", "t", "--rubric-text", "r"])
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"description": "t", "rubric": {"type": "text", "content": "r"}})
        );
    }

    #[test]
    fn a_prompt_with_a_rubric_is_the_task_and_without_one_a_plain_message() {
        let s = run(&["fix it", "--rubric", "rubric.md"]).unwrap().unwrap();
        assert_eq!(s.description, "fix it");
        assert_eq!(run(&["fix it"]).unwrap(), None);
        let s = send(&["fix it", "--rubric-text", "- works"])
            .unwrap()
            .unwrap();
        assert_eq!(s.description, "fix it");
        assert_eq!(send(&["just a message"]).unwrap(), None);
        let s = send(&["--outcome", "t", "--rubric", "rubric.md"])
            .unwrap()
            .unwrap();
        assert_eq!(s.description, "t");
    }

    #[test]
    fn mistakes_say_what_to_change() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["fix it", "--outcome", "t", "--rubric", "rubric.md"],
                "give the task once",
            ),
            (&["--outcome", "t"], "--outcome needs a rubric"),
            (
                &["--outcome", "t", "--rubric", "nope.md"],
                "--rubric nope.md: no such file",
            ),
            (
                &["--outcome", "t", "--rubric", "empty.md"],
                "--rubric empty.md is empty",
            ),
            (
                &["--outcome", "t", "--rubric-text", " "],
                "--rubric-text is empty",
            ),
            (
                &["fix it", "--max-iterations", "4"],
                "--max-iterations only applies to an outcome",
            ),
            (
                &["fix it", "--check", "make"],
                "--check only applies to an outcome",
            ),
            (
                &[
                    "--outcome",
                    "t",
                    "--rubric",
                    "rubric.md",
                    "--max-iterations",
                    "21",
                ],
                "outcome: max_iterations must be between 1 and 20, got 21",
            ),
            (
                &["--outcome", "t", "--rubric-text", "r", "--judges", "0"],
                "judges",
            ),
            (
                &["--outcome", " ", "--rubric-text", "r"],
                "description is empty",
            ),
            (
                &["--outcome", "t", "--rubric-text", "r", "--check", ""],
                "command is empty",
            ),
        ];
        for (args, needle) in cases {
            let e = run(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        // clap's own: the pairs and the exclusive rubric sources.
        for (args, needle) in [
            (
                &[
                    "--outcome",
                    "t",
                    "--rubric-text",
                    "r",
                    "--escalate-after",
                    "2",
                ][..],
                "--escalate-model",
            ),
            (
                &[
                    "--outcome",
                    "t",
                    "--rubric",
                    "rubric.md",
                    "--rubric-text",
                    "r",
                ][..],
                "cannot be used with",
            ),
            (&[][..], "PROMPT"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn rubric_files_are_read_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n).display().to_string();
        std::fs::write(path("ok.md"), "- works\n").unwrap();
        std::fs::write(path("bin"), [0xff, 0xfe, 0x00]).unwrap();
        std::fs::write(path("big.md"), "x".repeat(MAX_RUBRIC_CHARS + 1)).unwrap();
        std::fs::write(path("huge.md"), "x".repeat(MAX_RUBRIC_BYTES as usize + 1)).unwrap();
        assert_eq!(Files.read(&path("ok.md")).unwrap(), "- works\n");
        let e = Files.read(&path("missing.md")).unwrap_err();
        assert!(
            e.contains("missing.md: no such file") && e.contains("--rubric-text"),
            "{e}"
        );
        let e = Files.read(dir.path().to_str().unwrap()).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        let e = Files.read(&path("bin")).unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = Files.read(&path("huge.md")).unwrap_err();
        assert!(e.contains("at most 262144 characters"), "{e}");
        let a = OutcomeArgs {
            outcome: Some("t".into()),
            rubric: Some(path("big.md")),
            ..OutcomeArgs::default()
        };
        let e = spec(None, &a, &Files).unwrap_err();
        assert!(
            e.contains("262145 characters") && e.contains("shorten it"),
            "{e}"
        );
    }

    #[test]
    fn the_exit_code_is_the_verdict() {
        use EvaluationResult::*;
        let end = Some(&StopReason::EndTurn);
        assert_eq!(exit_code(Some(Satisfied), end), 0);
        for v in [MaxIterationsReached, Failed, Interrupted, NeedsRevision] {
            assert_eq!(exit_code(Some(v), end), NOT_SATISFIED, "{v:?}");
        }
        assert_eq!(
            exit_code(Some(Interrupted), Some(&StopReason::Interrupted)),
            NOT_SATISFIED
        );
        assert_eq!(exit_code(None, Some(&StopReason::BudgetReached)), 1);
        assert_eq!(exit_code(None, end), 1);
        let waiting = StopReason::RequiresAction { event_ids: vec![] };
        assert_eq!(exit_code(Some(NeedsRevision), Some(&waiting)), 1);
    }
}
