//! Outcomes: work graded against a rubric before it is called done (hosted
//! `user.define_outcome`, `span.outcome_evaluation_*`, the session's `outcome_evaluations[]`),
//! plus tether's additive checks, judges, weighted dimensions and escalation.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorBody, ErrorCode};
use crate::event::ModelUsage;

/// Hosted limits: a text rubric holds at most this many characters.
pub const MAX_RUBRIC_CHARS: usize = 262_144;
/// Evaluation cycles when `max_iterations` is not given.
pub const DEFAULT_MAX_ITERATIONS: u32 = 3;
/// The most evaluation cycles one outcome may ask for.
pub const MAX_ITERATIONS: u32 = 20;
/// The most parallel judges one outcome may ask for.
pub const MAX_JUDGES: u32 = 9;
/// The tool a grader answers with; a grader reply without it is retried.
pub const SUBMIT_EVALUATION: &str = "submit_evaluation";

/// What the agent is to deliver and how it is judged: the body of `user.define_outcome`
/// (the log's echo also carries the server-assigned `outcome_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeSpec {
    /// `outc_...`: set by the daemon on the event it records; ignored on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_id: Option<String>,
    /// The task. The agent starts on receipt; no `user.message` is needed.
    pub description: String,
    pub rubric: Rubric,
    /// Evaluation cycles before giving up (default 3, at most 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// tether: commands that must exit 0 and files that must exist, run in the session's
    /// sandbox before any grader; a failing check is a `needs_revision` with its output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<OutcomeCheck>,
    /// tether: who grades (model, number of judges, weighted dimensions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grader: Option<GraderSpec>,
    /// tether: after `after` cycles that needed revision, the agent switches to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<Escalation>,
}

/// Hosted rubric: free text, or a Files API upload (tether has no Files API: a file rubric is
/// refused with a message saying to send its text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rubric {
    Text { content: String },
    File { file_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutcomeCheck {
    /// `bash -c command` in the session's sandbox, from the workspace; passes on exit 0.
    Command {
        command: String,
        /// Default 600 seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u64>,
    },
    /// A path relative to the workspace that must exist.
    FileExists { path: String },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraderSpec {
    /// `provider/model` of the grader; default: the agent's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Graders run in parallel, each in its own context (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judges: Option<u32>,
    /// G-Eval style scoring: each judge scores every dimension 1–5; the weighted mean of a
    /// judge is its score, the verdict is the median judge (judges more than 1.5 from the
    /// median dropped first) against `threshold`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<Dimension>,
    /// The score (1–5) the verdict must reach to be `satisfied`; default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: String,
    /// What a 5 looks like, for the judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Relative weight (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Cycles ending in `needs_revision` before the switch.
    pub after: u32,
    /// `provider/model` the agent continues on.
    pub model: String,
}

impl OutcomeSpec {
    pub fn max_iterations(&self) -> u32 {
        self.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS)
    }

    pub fn judges(&self) -> u32 {
        self.grader.as_ref().and_then(|g| g.judges).unwrap_or(1)
    }

    /// The rubric's text (file rubrics never pass [`OutcomeSpec::validate`]).
    pub fn rubric_text(&self) -> &str {
        match &self.rubric {
            Rubric::Text { content } => content,
            Rubric::File { .. } => "",
        }
    }

    /// Checks what serde can't, with messages that say what to change.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        let bad = |m: String| Err(ErrorBody::new(ErrorCode::InvalidParams, m));
        if self.description.trim().is_empty() {
            return bad(
                "the outcome's description is empty: say what the agent is to deliver".into(),
            );
        }
        match &self.rubric {
            Rubric::Text { content } if content.trim().is_empty() => {
                return bad(
                    "the outcome's rubric is empty: give the criteria the work is graded against"
                        .into(),
                );
            }
            Rubric::Text { content } if content.chars().count() > MAX_RUBRIC_CHARS => {
                return bad(format!(
                    "the outcome's rubric has {} characters; the limit is {MAX_RUBRIC_CHARS}",
                    content.chars().count()
                ));
            }
            Rubric::Text { .. } => {}
            Rubric::File { file_id } => {
                return bad(format!(
                    "rubric file `{file_id}`: tether has no Files API; send the rubric's text as {{\"type\": \"text\", \"content\": ...}} (the CLI's --rubric FILE reads it for you)"
                ));
            }
        }
        if let Some(n) = self.max_iterations
            && !(1..=MAX_ITERATIONS).contains(&n)
        {
            return bad(format!(
                "max_iterations must be between 1 and {MAX_ITERATIONS}, got {n}"
            ));
        }
        for c in &self.checks {
            match c {
                OutcomeCheck::Command { command, .. } if command.trim().is_empty() => {
                    return bad("an outcome check's command is empty".into());
                }
                OutcomeCheck::Command {
                    timeout_secs: Some(0),
                    ..
                } => return bad("an outcome check's timeout_secs must be at least 1".into()),
                OutcomeCheck::FileExists { path } if path.trim().is_empty() => {
                    return bad("an outcome check's file path is empty".into());
                }
                _ => {}
            }
        }
        if let Some(g) = &self.grader {
            if let Some(j) = g.judges
                && !(1..=MAX_JUDGES).contains(&j)
            {
                return bad(format!(
                    "grader.judges must be between 1 and {MAX_JUDGES}, got {j}"
                ));
            }
            if let Some(m) = &g.model
                && m.trim().is_empty()
            {
                return bad(
                    "grader.model is empty; leave it out to grade with the agent's model".into(),
                );
            }
            for d in &g.dimensions {
                if d.name.trim().is_empty() {
                    return bad("a grader dimension has an empty name".into());
                }
                if let Some(w) = d.weight
                    && !(w.is_finite() && w > 0.0)
                {
                    return bad(format!(
                        "grader dimension `{}`: weight must be a positive number, got {w}",
                        d.name
                    ));
                }
            }
            if let Some(t) = g.threshold
                && !(1.0..=5.0).contains(&t)
            {
                return bad(format!("grader.threshold must be between 1 and 5, got {t}"));
            }
        }
        if let Some(e) = &self.escalate {
            if e.after == 0 {
                return bad(
                    "escalate.after must be at least 1 (cycles that needed revision)".into(),
                );
            }
            if e.model.trim().is_empty() {
                return bad(
                    "escalate.model is empty: name the `provider/model` to switch to".into(),
                );
            }
        }
        Ok(())
    }
}

/// The result of one evaluation cycle (`span.outcome_evaluation_end.result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationResult {
    /// Criteria unmet; another cycle follows.
    NeedsRevision,
    Satisfied,
    /// The last allowed cycle still needed revision; one acknowledgment turn follows.
    MaxIterationsReached,
    /// The rubric does not apply to the deliverables (or no grader could answer).
    Failed,
    /// An interrupt arrived before or during the evaluation.
    Interrupted,
}

impl EvaluationResult {
    pub fn is_terminal(self) -> bool {
        !matches!(self, EvaluationResult::NeedsRevision)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EvaluationResult::NeedsRevision => "needs_revision",
            EvaluationResult::Satisfied => "satisfied",
            EvaluationResult::MaxIterationsReached => "max_iterations_reached",
            EvaluationResult::Failed => "failed",
            EvaluationResult::Interrupted => "interrupted",
        }
    }
}

/// One rubric criterion as a grader judged it (tether: on `span.outcome_evaluation_end`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Criterion {
    pub name: String,
    pub met: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A check's result (tether: on `span.outcome_evaluation_end`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckResult {
    /// The command, or `file_exists PATH`.
    pub check: String,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The tail of its output (or why it could not run).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

/// One judge's scores when the grader has dimensions (tether).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JudgeScore {
    /// Weighted mean of the dimension scores, 1–5.
    pub score: f64,
    /// Dropped as an outlier (more than 1.5 from the median).
    #[serde(default, skip_serializing_if = "is_false")]
    pub outlier: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// `span.outcome_evaluation_end`: the verdict of one cycle. The hosted fields first; tether
/// adds the per-criterion and per-check detail, the judges' scores and the grader's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EvaluationEnd {
    /// `sevt_` of the cycle's `span.outcome_evaluation_start`; empty when an interrupt came
    /// before the evaluation started.
    pub outcome_evaluation_start_id: String,
    pub outcome_id: String,
    pub iteration: u32,
    pub result: EvaluationResult,
    pub explanation: String,
    /// The grader requests of this cycle, summed (with tether's `cost_usd`).
    pub usage: ModelUsage,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub criteria: Vec<Criterion>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// With several judges or dimensions: each judge's score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judges: Vec<JudgeScore>,
    /// The verdict's score (1–5) when the grader scores dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// `provider/model` of the grader; None when no grader ran (a check failed first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grader_model: Option<String>,
}

impl EvaluationEnd {
    /// An end with the verdict only: no grader usage, criteria, checks or scores yet.
    pub fn verdict(
        outcome_evaluation_start_id: String,
        outcome_id: String,
        iteration: u32,
        result: EvaluationResult,
        explanation: String,
    ) -> EvaluationEnd {
        EvaluationEnd {
            outcome_evaluation_start_id,
            outcome_id,
            iteration,
            result,
            explanation,
            usage: ModelUsage::default(),
            criteria: Vec::new(),
            checks: Vec::new(),
            judges: Vec::new(),
            score: None,
            grader_model: None,
        }
    }
}

/// The hosted `outcome_evaluation` object (`session.outcome_evaluations[]`), one per
/// `define_outcome`, folded from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutcomeEvaluation {
    /// Always `"outcome_evaluation"`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub outcome_id: String,
    pub description: String,
    /// The current cycle, 0-based.
    pub iteration: u32,
    /// tether: the evaluation cycles this outcome allows (its `max_iterations`, default 3).
    #[serde(default)]
    pub max_iterations: u32,
    /// `pending` → `running` → `evaluating` → a terminal [`EvaluationResult`] (or back to
    /// `running` after `needs_revision`).
    pub result: String,
    /// The latest verdict's explanation.
    pub explanation: Option<String>,
    pub completed_at: Option<String>,
    /// tether: grader tokens and cost over all cycles.
    #[serde(default)]
    pub usage: ModelUsage,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> OutcomeSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hosted_shape_parses_and_defaults() {
        let s = spec(json!({"description": "d", "rubric": {"type": "text", "content": "r"}}));
        assert_eq!(s.max_iterations(), 3);
        assert_eq!(s.judges(), 1);
        assert!(s.validate().is_ok());
        assert_eq!(s.rubric_text(), "r");
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(
            back,
            json!({"description": "d", "rubric": {"type": "text", "content": "r"}})
        );
    }

    #[test]
    fn tether_extensions_parse() {
        let s = spec(json!({
            "description": "d", "rubric": {"type": "text", "content": "r"}, "max_iterations": 5,
            "checks": [{"type": "command", "command": "cargo test"}, {"type": "file_exists", "path": "out.md"}],
            "grader": {"model": "openai/gpt-5.1", "judges": 3, "threshold": 3.5,
                       "dimensions": [{"name": "correct", "weight": 2}, {"name": "clear"}]},
            "escalate": {"after": 2, "model": "anthropic/claude-opus-4-6"}
        }));
        assert!(s.validate().is_ok());
        assert_eq!(s.judges(), 3);
        assert_eq!(s.checks.len(), 2);
    }

    #[test]
    fn bad_specs_say_what_to_change() {
        let cases = [
            (
                json!({"description": " ", "rubric": {"type": "text", "content": "r"}}),
                "description",
            ),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": ""}}),
                "rubric is empty",
            ),
            (
                json!({"description": "d", "rubric": {"type": "file", "file_id": "file_1"}}),
                "no Files API",
            ),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "max_iterations": 21}),
                "between 1 and 20",
            ),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "max_iterations": 0}),
                "between 1 and 20",
            ),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "grader": {"judges": 0}}),
                "judges",
            ),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "grader": {"threshold": 7}}),
                "threshold",
            ),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "grader": {"dimensions": [{"name": "x", "weight": -1}]}}),
                "weight",
            ),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "escalate": {"after": 0, "model": "m"}}),
                "escalate.after",
            ),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "checks": [{"type": "command", "command": ""}]}),
                "command is empty",
            ),
        ];
        for (v, needle) in cases {
            let e = spec(v.clone()).validate().unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParams);
            assert!(e.message.contains(needle), "{v}: {}", e.message);
        }
        let long = "x".repeat(MAX_RUBRIC_CHARS + 1);
        let e = spec(json!({"description": "d", "rubric": {"type": "text", "content": long}}))
            .validate()
            .unwrap_err();
        assert!(e.message.contains("262144"), "{}", e.message);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_value::<OutcomeSpec>(
            json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "max_iteration": 2}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_iteration"), "{e}");
    }

    #[test]
    fn results_use_the_hosted_names() {
        for (r, s) in [
            (EvaluationResult::NeedsRevision, "needs_revision"),
            (EvaluationResult::Satisfied, "satisfied"),
            (
                EvaluationResult::MaxIterationsReached,
                "max_iterations_reached",
            ),
            (EvaluationResult::Failed, "failed"),
            (EvaluationResult::Interrupted, "interrupted"),
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), json!(s));
            assert_eq!(r.as_str(), s);
            assert_eq!(r.is_terminal(), r != EvaluationResult::NeedsRevision);
        }
    }

    #[test]
    fn events_use_the_hosted_shapes() {
        use crate::event::{Event, EventBody};
        // As the hosted API echoes it, with tether's envelope fields.
        let wire = json!({
            "id": "sevt_1", "session_id": "sesn_1", "seq": 3, "processed_at": null,
            "type": "user.define_outcome", "outcome_id": "outc_1", "description": "d",
            "rubric": {"type": "text", "content": "r"}, "max_iterations": 2
        });
        let e: Event = serde_json::from_value(wire.clone()).unwrap();
        let EventBody::UserDefineOutcome(spec) = &e.body else {
            panic!("{e:?}")
        };
        assert_eq!(spec.outcome_id.as_deref(), Some("outc_1"));
        assert_eq!(spec.max_iterations(), 2);
        assert_eq!(serde_json::to_value(&e).unwrap(), wire);
        let end = json!({
            "id": "sevt_2", "session_id": "sesn_1", "seq": 9, "processed_at": null,
            "type": "span.outcome_evaluation_end", "outcome_evaluation_start_id": "sevt_1",
            "outcome_id": "outc_1", "iteration": 0, "result": "needs_revision",
            "explanation": "tests fail",
            "usage": {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 0},
            "criteria": [{"name": "tests pass", "met": false}]
        });
        let e: Event = serde_json::from_value(end.clone()).unwrap();
        assert_eq!(e.type_name(), "span.outcome_evaluation_end");
        assert_eq!(serde_json::to_value(&e).unwrap(), end);
        for (t, body) in [
            (
                "span.outcome_evaluation_start",
                EventBody::SpanOutcomeEvaluationStart {
                    outcome_id: "o".into(),
                    iteration: 1,
                },
            ),
            (
                "span.outcome_evaluation_ongoing",
                EventBody::SpanOutcomeEvaluationOngoing {
                    outcome_id: "o".into(),
                    iteration: 1,
                },
            ),
        ] {
            let v = serde_json::to_value(&body).unwrap();
            assert_eq!(v, json!({"type": t, "outcome_id": "o", "iteration": 1}));
            assert_eq!(serde_json::from_value::<EventBody>(v).unwrap(), body);
        }
        // A typo in a client's outcome is refused, inside the event too.
        let typo = json!({"type": "user.define_outcome", "description": "d",
                          "rubric": {"type": "text", "content": "r"}, "max_iteration": 2});
        assert!(serde_json::from_value::<EventBody>(typo).is_err());
    }
}
