//! How an outcome reads, shared by the line printer, `tether ls` and the TUI: verdict names,
//! the grader's usage, and a session's outcome state in a few words.

use tether_proto::ModelUsage;
use tether_proto::outcome::{EvaluationEnd, EvaluationResult, OutcomeEvaluation};

/// A verdict in words: `needs revision`, `max iterations reached`, ...
pub fn result_label(r: EvaluationResult) -> &'static str {
    match r {
        EvaluationResult::NeedsRevision => "needs revision",
        EvaluationResult::Satisfied => "satisfied",
        EvaluationResult::MaxIterationsReached => "max iterations reached",
        EvaluationResult::Failed => "failed",
        EvaluationResult::Interrupted => "interrupted",
    }
}

/// The mark a verdict goes with: ✓ satisfied, ↻ needs revision, ✗ failed or out of cycles,
/// ■ interrupted.
pub fn result_mark(r: EvaluationResult) -> &'static str {
    match r {
        EvaluationResult::Satisfied => "✓",
        EvaluationResult::NeedsRevision => "↻",
        EvaluationResult::MaxIterationsReached | EvaluationResult::Failed => "✗",
        EvaluationResult::Interrupted => "■",
    }
}

/// `evaluation 2/3` (1-based), or `evaluation 2` when the outcome's limit is not known.
pub fn cycle_label(iteration: u32, max: Option<u32>) -> String {
    match max {
        Some(m) => format!("evaluation {}/{m}", iteration + 1),
        None => format!("evaluation {}", iteration + 1),
    }
}

/// `1 check`, `3 checks`.
pub fn plural(n: usize, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

/// `12,345`: token counts are read, not computed with.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the grader spent: `grader openai/gpt-5.1 · 1,234 in / 210 out tokens · $0.0031`
/// (parts left out when unknown; None when no grader ran and nothing was spent).
pub fn grader_usage(model: Option<&str>, usage: &ModelUsage) -> Option<String> {
    let input =
        usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens;
    let mut parts = Vec::new();
    if let Some(m) = model {
        parts.push(format!("grader {m}"));
    }
    if input + usage.output_tokens > 0 {
        parts.push(format!(
            "{} in / {} out tokens",
            thousands(input),
            thousands(usage.output_tokens)
        ));
    }
    if let Some(c) = usage.cost_usd {
        parts.push(format!("${c:.4}"));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The state of a session's latest outcome for `tether ls`: `#2 evaluating`, `#1 working`,
/// `✓ satisfied`, `✗ max iterations`, ... (`#n` is the 1-based cycle).
/// The judges' scores and the verdict's score (`judges 4.5 · 1.0 (dropped) → score 4.5`,
/// or `score 3.2` with one judge); None when the grader gave no scores.
pub fn scores_text(end: &EvaluationEnd) -> Option<String> {
    if end.judges.is_empty() {
        return end.score.map(|s| format!("score {s:.1}"));
    }
    let scores: Vec<String> = end
        .judges
        .iter()
        .map(|j| {
            if j.outlier {
                format!("{:.1} (dropped)", j.score)
            } else {
                format!("{:.1}", j.score)
            }
        })
        .collect();
    let mut text = format!("judges {}", scores.join(" · "));
    if let Some(s) = end.score {
        text.push_str(&format!(" → score {s:.1}"));
    }
    Some(text)
}

pub fn state_text(o: &OutcomeEvaluation) -> String {
    // `n/m` when the daemon says how many cycles the outcome allows (older daemons don't).
    let n = match o.max_iterations {
        0 => format!("#{}", o.iteration + 1),
        m => format!("{}/{m}", o.iteration + 1),
    };
    match o.result.as_str() {
        "pending" => "pending".to_string(),
        "running" => format!("{n} working"),
        "evaluating" => format!("{n} evaluating"),
        "needs_revision" => format!("{n} revising"),
        "satisfied" => "✓ satisfied".to_string(),
        "max_iterations_reached" => "✗ max iterations".to_string(),
        "failed" => "✗ failed".to_string(),
        "interrupted" => "■ interrupted".to_string(),
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_usage_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(1234567), "1,234,567");
        let u = ModelUsage {
            input_tokens: 1000,
            cache_read_input_tokens: 234,
            output_tokens: 210,
            cost_usd: Some(0.0031),
            ..ModelUsage::default()
        };
        assert_eq!(
            grader_usage(Some("openai/gpt-5.1"), &u).as_deref(),
            Some("grader openai/gpt-5.1 · 1,234 in / 210 out tokens · $0.0031")
        );
        assert_eq!(grader_usage(None, &ModelUsage::default()), None);
    }

    #[test]
    fn outcome_states_for_ls() {
        let o = |result: &str, iteration| OutcomeEvaluation {
            object_type: "outcome_evaluation".into(),
            outcome_id: "outc_1".into(),
            description: "d".into(),
            iteration,
            max_iterations: 0,
            result: result.into(),
            explanation: None,
            completed_at: None,
            usage: ModelUsage::default(),
        };
        assert_eq!(state_text(&o("evaluating", 1)), "#2 evaluating");
        assert_eq!(state_text(&o("running", 0)), "#1 working");
        assert_eq!(state_text(&o("satisfied", 2)), "✓ satisfied");
        assert_eq!(
            state_text(&o("max_iterations_reached", 2)),
            "✗ max iterations"
        );
        assert_eq!(state_text(&o("pending", 0)), "pending");
        // With the limit (daemons since it was added): `n/m`.
        let with_max = OutcomeEvaluation {
            max_iterations: 3,
            ..o("evaluating", 1)
        };
        assert_eq!(state_text(&with_max), "2/3 evaluating");
    }
}
