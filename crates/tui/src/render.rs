//! Plain-text rendering of events for the CLI: assistant text to stdout, tool activity and
//! errors to stderr so scripts can capture the answer alone.

use std::io::Write;

use tether_proto::outcome::{EvaluationEnd, EvaluationResult, OutcomeSpec};
use tether_proto::{
    Delta, DeltaKind, Event, EventBody, RetryStatusKind, Snapshot, StopReason, blocks_text,
};

use crate::outcome::{cycle_label, grader_usage, plural, result_label};

/// Tracks what has been printed so streamed text is not printed twice.
#[derive(Default)]
pub struct Printer {
    /// Text of the current message already printed from deltas.
    streamed: String,
    delta_floor: u64,
    pub json: bool,
    /// Print running tools' output as it arrives (watching), not just their summaries.
    pub live_tool_output: bool,
    /// The last live tool output chunk ended mid-line.
    tool_line_open: bool,
    /// Tool whose output tail a snapshot already showed (a re-attach must not repeat it).
    shown_tail_of: Option<String>,
    /// The current outcome's `max_iterations` (from its `user.define_outcome`, or told).
    pub outcome_max: Option<u32>,
    /// The latest evaluation's verdict (kept in JSON mode too: it is the exit code).
    pub verdict: Option<EvaluationResult>,
    /// Print nothing, only keep the state above (`tether wait`).
    pub quiet: bool,
}

fn one_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max || s.lines().count() > 1 {
        out.push('…');
    }
    out
}

pub fn tool_summary(name: &str, input: &serde_json::Value) -> String {
    let field = |k: &str| input.get(k).and_then(|v| v.as_str()).unwrap_or("");
    match name {
        "bash" => {
            if input.get("restart").and_then(|v| v.as_bool()) == Some(true) {
                "restart shell".to_string()
            } else {
                one_line(field("command"), 120)
            }
        }
        "read" | "write" | "edit" => field("file_path").to_string(),
        "glob" | "grep" => {
            let p = field("path");
            if p.is_empty() {
                field("pattern").to_string()
            } else {
                format!("{} in {p}", field("pattern"))
            }
        }
        _ => one_line(&input.to_string(), 120),
    }
}

pub fn stop_reason_text(r: &StopReason) -> &'static str {
    match r {
        StopReason::EndTurn => "end_turn",
        StopReason::RequiresAction { .. } => "requires_action",
        StopReason::RetriesExhausted => "retries_exhausted",
        StopReason::BudgetReached => "budget_reached",
        StopReason::Interrupted => "interrupted",
        StopReason::MaxTurnsReached => "max_turns_reached",
        StopReason::Error => "error",
    }
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Printer {
            json,
            ..Default::default()
        }
    }

    /// Prints nothing; keeps the outcome state (`tether wait`).
    pub fn quiet() -> Self {
        Printer {
            quiet: true,
            ..Default::default()
        }
    }

    /// For watching a session: running tools' output is shown live.
    pub fn watching(json: bool) -> Self {
        Printer {
            json,
            live_tool_output: true,
            ..Default::default()
        }
    }

    /// Tool output, each line indented under its tool card; chunks may end mid-line.
    fn show_tool_output(&mut self, text: &str) {
        let mut shown = String::new();
        for piece in text.split_inclusive('\n') {
            if !self.tool_line_open {
                shown.push_str("  │ ");
            }
            shown.push_str(piece);
            self.tool_line_open = !piece.ends_with('\n');
        }
        err(&shown);
    }

    pub fn snapshot(&mut self, s: &Snapshot) {
        self.delta_floor = s.delta_n;
        if self.json || self.quiet {
            return;
        }
        if self.live_tool_output
            && s.tool_use_id != self.shown_tail_of
            && let Some(tail) = s.tool_output_tail.as_deref().filter(|t| !t.is_empty())
        {
            self.shown_tail_of = s.tool_use_id.clone();
            // Joining while a tool runs: show what it printed so far, from a fresh line.
            self.tool_line_open = false;
            self.show_tool_output(tail);
        }
        if let Some(t) = &s.message_text {
            // After a re-attach the snapshot repeats what was already streamed.
            match t.strip_prefix(self.streamed.as_str()) {
                Some(rest) => out(rest),
                None => out(t),
            }
            self.streamed = t.clone();
        }
    }

    pub fn delta(&mut self, d: &Delta) {
        if self.json || self.quiet || d.n <= self.delta_floor {
            return;
        }
        match &d.kind {
            DeltaKind::MessageStart { .. } => {
                if !self.streamed.is_empty() {
                    // A retried request: what was shown is void.
                    err("\n[retrying: the partial answer above is discarded]\n");
                }
                self.streamed.clear();
            }
            DeltaKind::Text { text, .. } => {
                out(text);
                self.streamed.push_str(text);
            }
            DeltaKind::Notice { message } => err(&format!("\n⚠ {message}\n")),
            DeltaKind::ToolOutput { text, .. } if self.live_tool_output => {
                self.show_tool_output(text)
            }
            _ => {}
        }
    }

    pub fn event(&mut self, e: &Event) {
        match &e.body {
            EventBody::UserDefineOutcome(spec) => {
                self.outcome_max = Some(spec.max_iterations());
                self.verdict = None;
            }
            EventBody::SpanOutcomeEvaluationEnd(end) => self.verdict = Some(end.result),
            _ => {}
        }
        if self.quiet {
            return;
        }
        if self.json {
            if let Ok(s) = serde_json::to_string(e) {
                out(&format!("{s}\n"));
            }
            return;
        }
        match &e.body {
            EventBody::UserMessage { content } => {
                err(&format!("› {}\n", blocks_text(content)));
            }
            EventBody::AgentMessage { content } => {
                let text = blocks_text(content);
                if self.streamed.is_empty() {
                    out(&text);
                } else if let Some(rest) = text.strip_prefix(self.streamed.as_str()) {
                    out(rest);
                } else {
                    out(&format!("\n{text}"));
                }
                if !text.is_empty() && !text.ends_with('\n') {
                    out("\n");
                }
                self.streamed.clear();
            }
            EventBody::AgentToolUse {
                name,
                input,
                evaluated_permission,
            } => {
                let ask = if *evaluated_permission == Some(tether_proto::Permission::Ask) {
                    format!(" — needs approval ({})", e.id)
                } else {
                    String::new()
                };
                err(&format!("⏺ {name}: {}{ask}\n", tool_summary(name, input)));
            }
            EventBody::AgentMcpToolUse {
                mcp_server_name,
                name,
                input,
                evaluated_permission,
            } => {
                let ask = if *evaluated_permission == Some(tether_proto::Permission::Ask) {
                    format!(" — needs approval ({})", e.id)
                } else {
                    String::new()
                };
                err(&format!(
                    "⏺ {mcp_server_name}/{name} (MCP): {}{ask}\n",
                    one_line(&input.to_string(), 120)
                ));
            }
            EventBody::AgentMcpToolResult {
                is_error, content, ..
            } => {
                let text = blocks_text(content);
                let first = if *is_error {
                    format!("error — {}", one_line(&text, 160))
                } else {
                    format!("ok — {}", one_line(&text, 160))
                };
                err(&format!("  ⎿ {first}\n"));
            }
            EventBody::AgentCustomToolUse { name, input } => {
                err(&format!(
                    "⏺ {name} (custom tool): {} — needs a result ({})\n",
                    one_line(&input.to_string(), 120),
                    e.id
                ));
            }
            EventBody::UserToolConfirmation {
                tool_use_id,
                result,
                deny_message,
            } => {
                let what = match result {
                    tether_proto::ConfirmationResult::Allow => "allowed".to_string(),
                    tether_proto::ConfirmationResult::Deny => match deny_message {
                        Some(m) => format!("denied: {m}"),
                        None => "denied".to_string(),
                    },
                };
                err(&format!("› {tool_use_id} {what}\n"));
            }
            EventBody::UserCustomToolResult {
                custom_tool_use_id,
                content,
                is_error,
            } => {
                let kind = if *is_error { "error result" } else { "result" };
                err(&format!(
                    "› {kind} for {custom_tool_use_id}: {}\n",
                    one_line(&blocks_text(content), 160)
                ));
            }
            EventBody::AgentToolResult {
                status,
                exit_code,
                duration_ms,
                is_error,
                content,
                ..
            } => {
                if std::mem::take(&mut self.tool_line_open) {
                    err("\n");
                }
                let text = blocks_text(content);
                let code = exit_code.map(|c| format!(" exit {c}")).unwrap_or_default();
                let first = if *is_error {
                    format!(" — {}", one_line(&text, 160))
                } else {
                    String::new()
                };
                err(&format!(
                    "  ⎿ {}{code} ({duration_ms} ms){first}\n",
                    serde_json::to_value(status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ));
            }
            EventBody::SessionError { error } => {
                let retry = match error.retry_status.kind {
                    RetryStatusKind::Retrying => {
                        match (error.attempt, error.max_attempts, error.retry_in_ms) {
                            (Some(a), Some(m), Some(ms)) => {
                                format!(
                                    " — retrying in {:.1} s, attempt {}/{m}",
                                    ms as f64 / 1000.0,
                                    a + 1
                                )
                            }
                            _ => " — retrying".to_string(),
                        }
                    }
                    RetryStatusKind::Exhausted => " — retries exhausted".to_string(),
                    RetryStatusKind::Terminal => String::new(),
                };
                err(&format!("✗ {}{retry}\n", error.message));
            }
            EventBody::SessionStatusIdle { stop_reason } if !stop_reason.is_success() => {
                err(&format!("■ stopped: {}\n", stop_reason_text(stop_reason)));
            }
            EventBody::SessionStatusRescheduled {} => {
                err("↻ resumed after a daemon restart\n");
            }
            EventBody::UserInterrupt {} => err("■ interrupt\n"),
            EventBody::SessionUpdated {
                model,
                max_cost_usd,
                title,
                name,
                vault_ids,
                agent,
                ..
            } => {
                if let Some(n) = name {
                    err(&format!("⇄ name: {n}\n"));
                }
                if let Some(t) = title {
                    err(&format!("⇄ title: {t}\n"));
                }
                if let Some(m) = model {
                    err(&format!("⇄ model: {m}\n"));
                }
                if let Some(limit) = max_cost_usd {
                    err(&format!("⇄ budget: ${limit:.2}\n"));
                }
                if let Some(v) = vault_ids {
                    err(&format!("⇄ vaults: [{}]\n", v.join(", ")));
                }
                if let Some(a) = agent {
                    err(&format!("⇄ {}\n", agent_summary(a)));
                }
            }
            EventBody::AgentThreadContextCompacted { summary, .. } => {
                err(&format!(
                    "⋯ context compacted: older turns are sent as a {}-character summary\n",
                    summary.chars().count()
                ));
            }
            EventBody::UserDefineOutcome(spec) => err(&outcome_text(spec)),
            EventBody::SpanOutcomeEvaluationStart { iteration, .. } => err(&format!(
                "── {}: evaluating… ──\n",
                cycle_label(*iteration, self.outcome_max)
            )),
            EventBody::SpanOutcomeEvaluationEnd(end) => {
                err(&evaluation_text(end, self.outcome_max))
            }
            _ => {}
        }
    }
}

/// `user.define_outcome` for the line printer: the task, its limits, the rubric's size.
pub fn outcome_text(spec: &OutcomeSpec) -> String {
    let mut t = format!("◎ outcome: {}\n", spec.description.trim_end());
    let rubric = spec.rubric_text();
    let mut terms = vec![
        format!(
            "up to {}",
            plural(spec.max_iterations() as usize, "evaluation")
        ),
        format!("rubric of {}", plural(rubric.lines().count(), "line")),
    ];
    if !spec.checks.is_empty() {
        terms.push(plural(spec.checks.len(), "check"));
    }
    if spec.judges() > 1 {
        terms.push(plural(spec.judges() as usize, "judge"));
    }
    if let Some(m) = spec.grader.as_ref().and_then(|g| g.model.as_deref()) {
        terms.push(format!("grader {m}"));
    }
    t.push_str(&format!("  {}\n", terms.join(" · ")));
    t
}

/// `span.outcome_evaluation_end` for the line printer: the verdict and explanation, each
/// criterion ✓/✗, failed checks with their output tail, judges' scores, the grader's spend.
pub fn evaluation_text(end: &EvaluationEnd, max: Option<u32>) -> String {
    let mut lines = end.explanation.trim().lines();
    let mut t = format!(
        "── {}: {} ──",
        cycle_label(end.iteration, max),
        result_label(end.result)
    );
    if let Some(first) = lines.next() {
        t.push(' ');
        t.push_str(first);
    }
    t.push('\n');
    for l in lines {
        t.push_str(&format!("   {l}\n"));
    }
    for c in &end.criteria {
        t.push_str(&format!(
            "  {} {}{}\n",
            if c.met { "✓" } else { "✗" },
            c.name,
            c.note
                .as_deref()
                .filter(|n| !n.trim().is_empty())
                .map(|n| format!(" — {n}"))
                .unwrap_or_default()
        ));
    }
    for c in &end.checks {
        let code = c
            .exit_code
            .filter(|_| !c.passed)
            .map(|c| format!(" (exit {c})"))
            .unwrap_or_default();
        t.push_str(&format!(
            "  {} check {}{code}\n",
            if c.passed { "✓" } else { "✗" },
            c.check
        ));
        if !c.passed {
            let out: Vec<&str> = c.output.trim_end().lines().collect();
            for l in &out[out.len().saturating_sub(5)..] {
                t.push_str(&format!("    │ {l}\n"));
            }
        }
    }
    if let Some(scores) = crate::outcome::scores_text(end) {
        t.push_str(&format!("  {scores}\n"));
    }
    if let Some(u) = grader_usage(end.grader_model.as_deref(), &end.usage) {
        t.push_str(&format!("  {u}\n"));
    }
    t
}

fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

fn err(s: &str) {
    let mut o = std::io::stderr().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn event(seq: u64, body: serde_json::Value) -> Event {
        let mut v = json!({"id": format!("sevt_{seq}"), "session_id": "sesn_1", "seq": seq,
                           "processed_at": null});
        if let (Some(o), Some(b)) = (v.as_object_mut(), body.as_object()) {
            o.extend(b.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    fn end(body: serde_json::Value) -> EvaluationEnd {
        let mut v = json!({"outcome_evaluation_start_id": "sevt_5", "outcome_id": "outc_1",
            "iteration": 0, "explanation": "",
            "usage": {"input_tokens": 1000, "output_tokens": 210, "cache_read_input_tokens": 234,
                      "cache_creation_input_tokens": 0, "cost_usd": 0.0031},
            "grader_model": "openai/gpt-5.1"});
        if let (Some(o), Some(b)) = (v.as_object_mut(), body.as_object()) {
            o.extend(b.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_revision_reads_as_the_verdict_its_criteria_and_the_grader_spend() {
        let e = end(json!({"result": "needs_revision",
            "explanation": "The README does not document --verbose.\nAdd a usage section.",
            "criteria": [{"name": "cargo test passes", "met": true},
                         {"name": "README documents --verbose", "met": false,
                          "note": "no mention in README.md"}]}));
        assert_eq!(
            evaluation_text(&e, Some(3)),
            "── evaluation 1/3: needs revision ── The README does not document --verbose.\n   \
             Add a usage section.\n  ✓ cargo test passes\n  ✗ README documents --verbose — no \
             mention in README.md\n  grader openai/gpt-5.1 · 1,234 in / 210 out tokens · $0.0031\n"
        );
    }

    #[test]
    fn failed_checks_show_their_tail_and_judges_their_scores() {
        let e = end(json!({"result": "needs_revision", "iteration": 1,
            "explanation": "check failed: cargo test",
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 0},
            "grader_model": null,
            "checks": [{"check": "cargo test", "passed": false, "exit_code": 101,
                        "output": "1\n2\n3\n4\n5\n6\ntest result: FAILED\n"},
                       {"check": "file_exists out.md", "passed": true}]}));
        let t = evaluation_text(&e, None);
        assert!(
            t.starts_with("── evaluation 2: needs revision ── check failed"),
            "{t}"
        );
        assert!(t.contains("  ✗ check cargo test (exit 101)\n"), "{t}");
        assert!(t.contains("    │ 3\n") && !t.contains("    │ 2\n"), "{t}");
        assert!(t.contains("    │ test result: FAILED\n"), "{t}");
        assert!(t.contains("  ✓ check file_exists out.md\n"), "{t}");
        // No grader ran: nothing spent, nothing said about it.
        assert!(!t.contains("grader"), "{t}");
        let e = end(
            json!({"result": "satisfied", "explanation": "All met.", "score": 4.5,
            "judges": [{"score": 4.5}, {"score": 4.7}, {"score": 1.0, "outlier": true}]}),
        );
        let t = evaluation_text(&e, Some(3));
        assert!(
            t.starts_with("── evaluation 1/3: satisfied ── All met.\n"),
            "{t}"
        );
        assert!(
            t.contains("  judges 4.5 · 4.7 · 1.0 (dropped) → score 4.5\n"),
            "{t}"
        );
    }

    #[test]
    fn the_printer_keeps_the_latest_verdict_and_the_outcome_limit_in_json_mode_too() {
        for json_mode in [false, true] {
            let mut p = Printer::new(json_mode);
            p.event(&event(
                1,
                json!({"type": "user.define_outcome", "outcome_id": "outc_1",
                       "description": "d", "rubric": {"type": "text", "content": "r"},
                       "max_iterations": 2}),
            ));
            assert_eq!(p.outcome_max, Some(2));
            assert_eq!(p.verdict, None);
            let mut e = serde_json::to_value(end(json!({"result": "needs_revision"}))).unwrap();
            e["type"] = json!("span.outcome_evaluation_end");
            p.event(&event(4, e.clone()));
            assert_eq!(p.verdict, Some(EvaluationResult::NeedsRevision));
            e["result"] = json!("max_iterations_reached");
            e["iteration"] = json!(1);
            p.event(&event(9, e));
            assert_eq!(p.verdict, Some(EvaluationResult::MaxIterationsReached));
        }
    }

    #[test]
    fn the_outcome_reads_as_its_task_and_terms() {
        let spec: OutcomeSpec = serde_json::from_value(json!({
            "description": "make the tests pass", "rubric": {"type": "text", "content": "a\nb"},
            "checks": [{"type": "command", "command": "cargo test"}],
            "grader": {"model": "openai/gpt-5.1", "judges": 3}}))
        .unwrap();
        assert_eq!(
            outcome_text(&spec),
            "◎ outcome: make the tests pass\n  up to 3 evaluations · rubric of 2 lines · 1 check \
             · 3 judges · grader openai/gpt-5.1\n"
        );
    }
}

/// A session's agent after a change of its tools (the hosted snapshot a `session.updated`
/// carries), in one line: `tools → read, lookup (custom), docs (MCP) · MCP servers → docs`.
pub fn agent_summary(agent: &serde_json::Value) -> String {
    use serde_json::Value;
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut tools = Vec::new();
    for t in agent
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match t.get("type").and_then(Value::as_str) {
            Some("custom") => tools.push(format!("{} (custom)", str_of(t, "name"))),
            Some("mcp_toolset") => tools.push(format!("{} (MCP)", str_of(t, "mcp_server_name"))),
            _ => {
                let on: Vec<String> = t
                    .get("configs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|c| c.get("enabled").and_then(Value::as_bool) != Some(false))
                    .map(|c| str_of(c, "name"))
                    .collect();
                tools.extend(on);
            }
        }
    }
    let servers: Vec<String> = agent
        .get("mcp_servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| str_of(s, "name"))
        .collect();
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "tools → {} · MCP servers → {}",
        list(&tools),
        list(&servers)
    )
}

#[cfg(test)]
mod agent_summary_tests {
    use super::agent_summary;
    use serde_json::json;

    #[test]
    fn says_the_enabled_tools_the_custom_and_mcp_ones_and_the_servers() {
        let a = json!({"tools": [
            {"type": "agent_toolset_20260401", "configs": [
                {"name": "bash", "enabled": false}, {"name": "read", "enabled": true}]},
            {"type": "custom", "name": "lookup"},
            {"type": "mcp_toolset", "mcp_server_name": "docs"}],
            "mcp_servers": [{"type": "url", "name": "docs", "url": "https://d/mcp"}]});
        assert_eq!(
            agent_summary(&a),
            "tools → read, lookup (custom), docs (MCP) · MCP servers → docs"
        );
        assert_eq!(
            agent_summary(&json!({"tools": [], "mcp_servers": []})),
            "tools → none · MCP servers → none"
        );
    }
}
