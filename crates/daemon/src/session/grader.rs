//! The grader of an outcome: one judge's loop in its own context (it never sees the agent's
//! messages), its read-only tools, commands in fresh sandboxed processes, and the pure math
//! that turns several judges' submissions into one verdict.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tether_proto::outcome::{
    Criterion, Dimension, EvaluationResult, JudgeScore, OutcomeSpec, SUBMIT_EVALUATION,
};
use tether_proto::{EventBody, ModelUsage};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::config::split_model;
use crate::provider::{Message, ModelRequest, Part, Provider, ProviderError, ToolSpec, pricing};
use crate::session::live::Session;
use crate::store::error::StoreError;
use crate::tools::Toolbox;

/// Model requests one judge may make before it counts as failed.
pub const MAX_GRADER_REQUESTS: u32 = 20;
/// A grader `bash` command's default and largest timeout.
const GRADER_BASH_TIMEOUT: Duration = Duration::from_secs(300);
const GRADER_BASH_MAX: Duration = Duration::from_secs(600);
/// How much of a command's output the grader (or a check's result) keeps: its tail.
pub const OUTPUT_TAIL: usize = 8 * 1024;
/// A judge more than this far from the median score is dropped.
pub const OUTLIER_DISTANCE: f64 = 1.5;
/// The default score a verdict must reach with dimensions.
pub const DEFAULT_THRESHOLD: f64 = 4.0;

/// What a judge submitted with `submit_evaluation`.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub result: EvaluationResult,
    pub explanation: String,
    pub criteria: Vec<Criterion>,
    /// `(dimension, score 1..5)`.
    pub scores: Vec<(String, f64)>,
}

/// The cycle's verdict from all judges.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub result: EvaluationResult,
    pub explanation: String,
    pub criteria: Vec<Criterion>,
    pub judges: Vec<JudgeScore>,
    pub score: Option<f64>,
}

/// Parses a `submit_evaluation` call's input; the error tells the judge what to fix.
pub fn parse_submission(input: &Value) -> Result<Submission, String> {
    let result = match input.get("result").and_then(Value::as_str) {
        Some("satisfied") => EvaluationResult::Satisfied,
        Some("needs_revision") => EvaluationResult::NeedsRevision,
        Some("failed") => EvaluationResult::Failed,
        other => {
            return Err(format!(
                "`result` must be \"satisfied\", \"needs_revision\" or \"failed\", got {}",
                other.map_or("nothing".into(), |s| format!("\"{s}\""))
            ));
        }
    };
    let explanation = input
        .get("explanation")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let criteria = input
        .get("criteria")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    Some(Criterion {
                        name: c.get("name")?.as_str()?.to_string(),
                        met: c.get("met").and_then(Value::as_bool).unwrap_or(false),
                        note: c.get("note").and_then(Value::as_str).map(str::to_string),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut scores = Vec::new();
    for s in input
        .get("scores")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(d), Some(v)) = (
            s.get("dimension").and_then(Value::as_str),
            s.get("score").and_then(Value::as_f64),
        ) else {
            return Err("each of `scores` needs a `dimension` and a `score`".into());
        };
        if !(1.0..=5.0).contains(&v) {
            return Err(format!(
                "the score of `{d}` must be between 1 and 5, got {v}"
            ));
        }
        scores.push((d.to_string(), v));
    }
    Ok(Submission {
        result,
        explanation,
        criteria,
        scores,
    })
}

/// A judge's score: the weighted mean of its dimension scores (None when it scored none of
/// them).
pub fn judge_score(scores: &[(String, f64)], dims: &[Dimension]) -> Option<f64> {
    let (mut sum, mut weights) = (0.0, 0.0);
    for d in dims {
        if let Some((_, v)) = scores.iter().find(|(n, _)| *n == d.name) {
            let w = d.weight.unwrap_or(1.0);
            sum += v * w;
            weights += w;
        }
    }
    (weights > 0.0).then(|| sum / weights)
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The verdict of all judges (each a submission, or why it gave none). Without dimensions:
/// the majority result (a tie needs revision). With dimensions: the median of the judges'
/// scores after dropping those more than [`OUTLIER_DISTANCE`] from the median, against the
/// threshold.
pub fn aggregate(judges: &[Result<Submission, String>], spec: &OutcomeSpec) -> Verdict {
    let ok: Vec<&Submission> = judges.iter().filter_map(|j| j.as_ref().ok()).collect();
    if ok.is_empty() {
        let reasons: Vec<&str> = judges
            .iter()
            .filter_map(|j| j.as_ref().err().map(String::as_str))
            .collect();
        return Verdict {
            result: EvaluationResult::Failed,
            explanation: format!("no grader submitted an evaluation: {}", reasons.join("; ")),
            criteria: Vec::new(),
            judges: Vec::new(),
            score: None,
        };
    }
    let dims = spec
        .grader
        .as_ref()
        .map(|g| g.dimensions.as_slice())
        .unwrap_or_default();
    if !dims.is_empty() {
        let threshold = spec
            .grader
            .as_ref()
            .and_then(|g| g.threshold)
            .unwrap_or(DEFAULT_THRESHOLD);
        let scored: Vec<(&Submission, f64)> = ok
            .iter()
            .filter_map(|s| judge_score(&s.scores, dims).map(|v| (*s, v)))
            .collect();
        let all: Vec<f64> = scored.iter().map(|(_, v)| *v).collect();
        if let Some(mid) = median(&all) {
            let kept: Vec<f64> = all
                .iter()
                .copied()
                .filter(|v| (v - mid).abs() <= OUTLIER_DISTANCE)
                .collect();
            let score = median(&kept).unwrap_or(mid);
            let result = if score >= threshold {
                EvaluationResult::Satisfied
            } else {
                EvaluationResult::NeedsRevision
            };
            // The explanation of the kept judge closest to the verdict's score.
            let closest = scored
                .iter()
                .filter(|(_, v)| (v - mid).abs() <= OUTLIER_DISTANCE)
                .min_by(|a, b| (a.1 - score).abs().total_cmp(&(b.1 - score).abs()))
                .map(|(s, _)| *s);
            let judges = all
                .iter()
                .map(|v| JudgeScore {
                    score: *v,
                    outlier: (v - mid).abs() > OUTLIER_DISTANCE,
                })
                .collect();
            return Verdict {
                result,
                explanation: format!(
                    "score {score:.2} of 5 (threshold {threshold}){}",
                    closest
                        .map(|s| format!(": {}", s.explanation.trim()))
                        .unwrap_or_default()
                ),
                criteria: closest.map(|s| s.criteria.clone()).unwrap_or_default(),
                judges,
                score: Some(score),
            };
        }
        // No judge scored a dimension: fall back to their results.
    }
    let count = |r: EvaluationResult| ok.iter().filter(|s| s.result == r).count();
    let n = ok.len();
    let result = if count(EvaluationResult::Failed) * 2 > n {
        EvaluationResult::Failed
    } else if count(EvaluationResult::Satisfied) * 2 > n {
        EvaluationResult::Satisfied
    } else {
        EvaluationResult::NeedsRevision
    };
    let chosen = ok.iter().find(|s| s.result == result).unwrap_or(&ok[0]);
    let mut explanation = chosen.explanation.trim().to_string();
    if judges.len() > 1 {
        explanation = format!(
            "{} of {} judges: {}; {explanation}",
            count(result),
            judges.len(),
            result.as_str()
        );
    }
    Verdict {
        result,
        explanation,
        criteria: chosen.criteria.clone(),
        judges: Vec::new(),
        score: None,
    }
}

/// The grader's system prompt: its role and the rubric.
pub fn system_prompt(spec: &OutcomeSpec) -> String {
    let mut s = format!(
        "You are a grader. You evaluate another agent's deliverables against a rubric, independently: you do not see how the agent worked, only the result in its workspace. Inspect the work with the tools (read, glob, grep, and bash to run commands such as the tests; nothing you run changes what is graded). Judge each criterion of the rubric on its own. When you have decided, call `{SUBMIT_EVALUATION}` exactly once: result `satisfied` when every criterion is met, `needs_revision` when some are not (say precisely what is missing, so the agent can fix it), `failed` only when the rubric cannot apply to these deliverables.\n\nThe rubric:\n\n{}",
        spec.rubric_text().trim()
    );
    if let Some(g) = &spec.grader
        && !g.dimensions.is_empty()
    {
        s.push_str(
            "\n\nAlso score each of these dimensions from 1 (poor) to 5 (excellent) in `scores`:",
        );
        for d in &g.dimensions {
            s.push_str(&format!("\n- {}", d.name));
            if let Some(desc) = &d.description {
                s.push_str(&format!(": {desc}"));
            }
        }
    }
    s
}

/// The grader's first message: the task and where to look.
pub fn first_message(spec: &OutcomeSpec, workspace: &str) -> String {
    format!(
        "The agent was asked to deliver:\n\n{}\n\nIts workspace is {workspace} (the tools' paths are relative to it). Evaluate the work there against the rubric, then call `{SUBMIT_EVALUATION}`.",
        spec.description.trim()
    )
}

/// The tools a grader gets: read, glob, grep as the agent has them, `bash` (a fresh
/// sandboxed process per command) and `submit_evaluation`.
pub fn tool_specs(with_scores: bool) -> Vec<ToolSpec> {
    let mut tools: Vec<ToolSpec> = Toolbox::definitions()
        .into_iter()
        .filter(|d| matches!(d.name, "read" | "glob" | "grep"))
        .map(|d| ToolSpec {
            name: d.name.to_string(),
            description: d.description.to_string(),
            input_schema: d.input_schema,
        })
        .collect();
    tools.push(ToolSpec {
        name: "bash".into(),
        description: "Runs a command with `bash -c` in a fresh sandboxed process started in the workspace (no state is kept between calls). Returns the exit code and the tail of the output.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {
                "command": {"type": "string"},
                "timeout_secs": {"type": "integer", "minimum": 1, "maximum": GRADER_BASH_MAX.as_secs()}
            },
            "required": ["command"]
        }),
    });
    let mut props = json!({
        "result": {"type": "string", "enum": ["satisfied", "needs_revision", "failed"]},
        "explanation": {"type": "string"},
        "criteria": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "met": {"type": "boolean"}, "note": {"type": "string"}
        }, "required": ["name", "met"]}}
    });
    if with_scores && let Some(p) = props.as_object_mut() {
        p.insert(
            "scores".into(),
            json!({"type": "array", "items": {"type": "object", "properties": {
                "dimension": {"type": "string"},
                "score": {"type": "number", "minimum": 1, "maximum": 5},
                "note": {"type": "string"}
            }, "required": ["dimension", "score"]}}),
        );
    }
    tools.push(ToolSpec {
        name: SUBMIT_EVALUATION.into(),
        description: "Submits your evaluation of the work. Call it once, when you are done.".into(),
        input_schema: json!({
            "type": "object",
            "properties": props,
            "required": ["result", "explanation", "criteria"]
        }),
    });
    tools
}

/// What stopped a judge early.
pub enum Stop {
    Cancelled,
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

/// One judge's run: its submission (or why it gave none) and its usage.
pub struct JudgeRun {
    pub verdict: Result<Submission, String>,
    pub usage: ModelUsage,
}

/// The fixed inputs of one cycle's judges.
pub struct Grading {
    pub provider: Arc<Provider>,
    /// `provider/model`.
    pub model: String,
    pub system: String,
    pub first: String,
    pub tools: Vec<ToolSpec>,
    pub outcome_id: String,
    pub iteration: u32,
}

/// Runs one judge to its `submit_evaluation`: each model request is announced with a
/// `span.outcome_evaluation_ongoing`; a reply without the call gets one reminder.
pub async fn judge(
    s: &Arc<Session>,
    g: &Grading,
    cancel: &CancellationToken,
) -> Result<JudgeRun, Stop> {
    let mut messages = vec![Message::user_text(g.first.clone())];
    let mut usage = ModelUsage::default();
    let mut reminded = false;
    for _ in 0..MAX_GRADER_REQUESTS {
        if cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        s.append_one_retrying(EventBody::SpanOutcomeEvaluationOngoing {
            outcome_id: g.outcome_id.clone(),
            iteration: g.iteration,
        })
        .await?;
        let request = ModelRequest {
            model: split_model(&g.model).1.to_string(),
            system: Some(g.system.clone()),
            messages: messages.clone(),
            tools: g.tools.clone(),
            max_tokens: s.services.config.max_tokens,
            thinking_budget: None,
        };
        let resp = match request_with_retries(s, &g.provider, &request, cancel).await {
            Ok(r) => r,
            Err(ProviderError::Cancelled) => return Err(Stop::Cancelled),
            Err(e) => {
                return Ok(JudgeRun {
                    verdict: Err(format!(
                        "the grader's model request failed: {}",
                        e.describe(g.provider.who())
                    )),
                    usage,
                });
            }
        };
        usage.add(&pricing::priced(
            &s.services.config.models,
            &g.model,
            resp.usage,
        ));
        let calls: Vec<(String, String, Value)> = resp
            .content
            .iter()
            .filter_map(|p| match p {
                Part::ToolUse { id, name, input } => {
                    Some((id.clone(), name.clone(), input.clone()))
                }
                _ => None,
            })
            .collect();
        messages.push(Message::assistant(resp.content));
        if calls.is_empty() {
            if reminded {
                return Ok(JudgeRun {
                    verdict: Err(format!(
                        "the grader answered without calling `{SUBMIT_EVALUATION}`, twice"
                    )),
                    usage,
                });
            }
            reminded = true;
            messages.push(Message::user_text(format!(
                "You must answer by calling the `{SUBMIT_EVALUATION}` tool with your result, explanation and criteria."
            )));
            continue;
        }
        let mut results = Vec::new();
        for (id, name, input) in calls {
            let (content, is_error) = if name == SUBMIT_EVALUATION {
                match parse_submission(&input) {
                    Ok(sub) => {
                        return Ok(JudgeRun {
                            verdict: Ok(sub),
                            usage,
                        });
                    }
                    Err(why) => (format!("{SUBMIT_EVALUATION}: {why}; call it again"), true),
                }
            } else {
                grader_tool(&s.toolbox, &name, &input, cancel).await
            };
            if cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            results.push(Part::ToolResult {
                tool_use_id: id,
                content,
                is_error,
            });
        }
        messages.push(Message::user(results));
    }
    Ok(JudgeRun {
        verdict: Err(format!(
            "the grader made {MAX_GRADER_REQUESTS} model requests without calling `{SUBMIT_EVALUATION}`"
        )),
        usage,
    })
}

/// One grader request with the session's retry policy (no deltas: the grader's text is
/// never shown).
async fn request_with_retries(
    s: &Session,
    provider: &Provider,
    request: &ModelRequest,
    cancel: &CancellationToken,
) -> Result<crate::provider::ModelResponse, ProviderError> {
    let policy = crate::session::model::retry_policy(&s.services.config.retry);
    let mut attempt = 1;
    loop {
        match provider.stream(request, cancel, &mut |_| {}).await {
            Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
                let delay = policy.delay(attempt, e.retry_after(), crate::session::model::jitter());
                tracing::warn!(session = %s.id, attempt, error = %e.describe(provider.who()), "grader request failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
                }
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A grader tool call: read/glob/grep through the agent's race-free file tools, `bash` in a
/// fresh sandboxed process. Returns `(content, is_error)`.
async fn grader_tool(
    toolbox: &Toolbox,
    name: &str,
    input: &Value,
    cancel: &CancellationToken,
) -> (String, bool) {
    match name {
        "read" | "glob" | "grep" => {
            let out = toolbox.run(name, input, None, cancel.child_token()).await;
            (out.content, out.is_error)
        }
        "bash" => {
            let Some(command) = input.get("command").and_then(Value::as_str) else {
                return ("bash: `command` is required".into(), true);
            };
            let timeout = input
                .get("timeout_secs")
                .and_then(Value::as_u64)
                .map_or(GRADER_BASH_TIMEOUT, Duration::from_secs)
                .min(GRADER_BASH_MAX);
            match run_command(toolbox, command, timeout, cancel).await {
                Ok(r) => (
                    format!(
                        "exit code: {}\n{}",
                        r.exit_code
                            .map_or("none (killed)".into(), |c| c.to_string()),
                        r.output
                    ),
                    r.exit_code != Some(0),
                ),
                Err(why) => (format!("bash: {why}"), true),
            }
        }
        other => (
            format!("unknown tool `{other}`; use read, glob, grep, bash or {SUBMIT_EVALUATION}"),
            true,
        ),
    }
}

/// A finished sandboxed command.
pub struct CommandRun {
    /// None when it was killed (timeout, interrupt) or died of a signal.
    pub exit_code: Option<i32>,
    /// The tail of stdout and stderr, interleaved as they came.
    pub output: String,
    pub timed_out: bool,
}

/// Runs `bash -c command` in a fresh process of the session's sandbox, from the workspace
/// (never the agent's shell: nothing carries over between commands).
pub async fn run_command(
    toolbox: &Toolbox,
    command: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<CommandRun, String> {
    let argv = vec!["bash".to_string(), "-c".to_string(), command.to_string()];
    let (cmd, sandboxed) = toolbox.sandboxed_command(&argv, &[])?;
    let mut child = crate::sandbox::spawn(cmd)
        .await
        .map_err(|e| format!("cannot start the command: {e}"))?;
    drop(child.stdin.take());
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("cannot set up the command's pipes".into());
    };
    let pgid = child.id();
    let mut carry = Vec::new();
    if sandboxed {
        let ready = tokio::time::timeout(
            crate::tools::bash::SANDBOX_START_LIMIT,
            crate::tools::bash::await_ready(&mut stdout, &mut carry),
        )
        .await;
        if !matches!(ready, Ok(true)) {
            let _ = child.start_kill();
            let mut err = String::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(1), stderr.read_to_string(&mut err)).await;
            return Err(format!("the sandbox did not start: {}", err.trim()));
        }
    }
    let tail = Arc::new(std::sync::Mutex::new(carry));
    let pump = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                tail: Arc<std::sync::Mutex<Vec<u8>>>| async move {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = r.read(&mut buf).await {
            let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
            t.extend_from_slice(&buf[..n]);
            if t.len() > 2 * OUTPUT_TAIL {
                let cut = t.len() - OUTPUT_TAIL;
                t.drain(..cut);
            }
        }
    };
    let out_task = tokio::spawn(pump(Box::new(stdout), tail.clone()));
    let err_task = tokio::spawn(pump(Box::new(stderr), tail.clone()));
    let mut timed_out = false;
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = tokio::time::sleep(timeout) => { timed_out = true; None }
        _ = cancel.cancelled() => None,
    };
    if status.is_none() {
        // The whole process group: a test runner's children too.
        if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    // Output still buffered in the pipes, but not from a descendant that kept them open.
    let _ = tokio::time::timeout(Duration::from_secs(2), out_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), err_task).await;
    let bytes = tail.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let start = bytes.len().saturating_sub(OUTPUT_TAIL);
    let mut output = String::from_utf8_lossy(&bytes[start..]).into_owned();
    if timed_out {
        output.push_str(&format!(
            "\n[timed out after {} s and was killed]",
            timeout.as_secs()
        ));
    }
    Ok(CommandRun {
        exit_code: status.and_then(|s| s.code()),
        output,
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::outcome::{GraderSpec, Rubric};

    fn spec(dims: &[(&str, f64)], threshold: Option<f64>) -> OutcomeSpec {
        OutcomeSpec {
            outcome_id: None,
            description: "d".into(),
            rubric: Rubric::Text {
                content: "r".into(),
            },
            max_iterations: None,
            checks: vec![],
            grader: Some(GraderSpec {
                model: None,
                judges: Some(3),
                dimensions: dims
                    .iter()
                    .map(|(n, w)| Dimension {
                        name: (*n).into(),
                        description: None,
                        weight: Some(*w),
                    })
                    .collect(),
                threshold,
            }),
            escalate: None,
        }
    }

    fn sub(result: EvaluationResult, scores: &[(&str, f64)]) -> Result<Submission, String> {
        Ok(Submission {
            result,
            explanation: result.as_str().to_string(),
            criteria: vec![],
            scores: scores.iter().map(|(n, v)| ((*n).into(), *v)).collect(),
        })
    }

    #[test]
    fn weighted_mean_and_median() {
        let dims = spec(&[("a", 2.0), ("b", 1.0)], None)
            .grader
            .unwrap()
            .dimensions;
        let s = judge_score(&[("a".into(), 5.0), ("b".into(), 2.0)], &dims).unwrap();
        assert!((s - 4.0).abs() < 1e-9);
        assert_eq!(judge_score(&[("zzz".into(), 5.0)], &dims), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn an_outlier_judge_is_dropped() {
        let sp = spec(&[("q", 1.0)], Some(4.0));
        use EvaluationResult::*;
        // 4.5 and 4.0 agree; 1.0 is 3 away from the median (4.0) and is dropped.
        let judges = [
            sub(Satisfied, &[("q", 4.5)]),
            sub(NeedsRevision, &[("q", 1.0)]),
            sub(Satisfied, &[("q", 4.0)]),
        ];
        let v = aggregate(&judges, &sp);
        assert_eq!(v.result, Satisfied);
        assert_eq!(v.score, Some(4.25));
        assert_eq!(
            v.judges.iter().map(|j| j.outlier).collect::<Vec<_>>(),
            vec![false, true, false]
        );
        // Without dropping it the median would be 4.0 as well, but with two low judges the
        // verdict falls below the threshold.
        let judges = [
            sub(Satisfied, &[("q", 4.5)]),
            sub(NeedsRevision, &[("q", 3.0)]),
            sub(NeedsRevision, &[("q", 3.0)]),
        ];
        let v = aggregate(&judges, &sp);
        assert_eq!(v.result, NeedsRevision);
        assert_eq!(v.score, Some(3.0));
    }

    #[test]
    fn majority_without_dimensions() {
        let mut sp = spec(&[], None);
        sp.grader = None;
        use EvaluationResult::*;
        let v = aggregate(
            &[
                sub(Satisfied, &[]),
                sub(Satisfied, &[]),
                sub(NeedsRevision, &[]),
            ],
            &sp,
        );
        assert_eq!(v.result, Satisfied);
        assert!(
            v.explanation.starts_with("2 of 3 judges"),
            "{}",
            v.explanation
        );
        // A tie needs revision.
        let v = aggregate(&[sub(Satisfied, &[]), sub(NeedsRevision, &[])], &sp);
        assert_eq!(v.result, NeedsRevision);
        let v = aggregate(
            &[sub(Failed, &[]), sub(Failed, &[]), sub(Satisfied, &[])],
            &sp,
        );
        assert_eq!(v.result, Failed);
        // One judge that gave no answer does not count against the others.
        let v = aggregate(&[sub(Satisfied, &[]), Err("no call".into())], &sp);
        assert_eq!(v.result, Satisfied);
        let v = aggregate(&[Err("no call".into()), Err("http 500".into())], &sp);
        assert_eq!(v.result, Failed);
        assert!(
            v.explanation.contains("no call; http 500"),
            "{}",
            v.explanation
        );
        let v = aggregate(&[sub(NeedsRevision, &[])], &sp);
        assert_eq!(
            (v.result, v.explanation.as_str()),
            (NeedsRevision, "needs_revision")
        );
    }

    #[test]
    fn submissions_parse_and_bad_ones_say_why() {
        let s = parse_submission(&json!({
            "result": "needs_revision", "explanation": "tests fail",
            "criteria": [{"name": "tests pass", "met": false, "note": "2 failing"}],
            "scores": [{"dimension": "q", "score": 2}]
        }))
        .unwrap();
        assert_eq!(s.result, EvaluationResult::NeedsRevision);
        assert_eq!(s.criteria[0].note.as_deref(), Some("2 failing"));
        assert_eq!(s.scores, vec![("q".into(), 2.0)]);
        let e = parse_submission(&json!({"result": "great"})).unwrap_err();
        assert!(e.contains("\"great\""), "{e}");
        let e = parse_submission(
            &json!({"result": "satisfied", "scores": [{"dimension": "q", "score": 9}]}),
        )
        .unwrap_err();
        assert!(e.contains("between 1 and 5"), "{e}");
    }

    #[test]
    fn the_grader_is_offered_submit_and_read_only_tools() {
        let names: Vec<String> = tool_specs(false).into_iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            vec!["read", "glob", "grep", "bash", SUBMIT_EVALUATION]
        );
    }
}
