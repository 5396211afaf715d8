//! Outcome items → lines: the task with its (collapsed) rubric, and each evaluation cycle
//! (evaluating…, then the verdict with its criteria, checks, judges, explanation and the
//! grader's spend). Every line wraps: a verdict is never cut at the edge.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use tether_proto::outcome::{EvaluationResult, OutcomeCheck, OutcomeSpec};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::outcome::{cycle_label, grader_usage, plural, result_label, result_mark};
use crate::screen::transcript::EvaluationCard;
use crate::screen::wrap::{Seg, hard_wrap, wrap};

/// Explanation rows a collapsed verdict shows before a hint.
const EXPLANATION_ROWS: usize = 12;
/// Output rows of a failed check shown while collapsed.
const CHECK_OUTPUT_ROWS: usize = 3;

fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

fn indent() -> Vec<Seg> {
    vec![("  ".to_string(), Style::default())]
}

/// `user.define_outcome`: the task, its limits, and the rubric (one line until expanded).
pub fn outcome(spec: &OutcomeSpec, expanded: bool, width: usize) -> Vec<Line<'static>> {
    let accent = Style::default().fg(Color::Cyan);
    let mut out = Vec::new();
    for (i, line) in spec.description.lines().enumerate() {
        let first: Vec<Seg> = if i == 0 {
            vec![
                ("◎ ".to_string(), accent),
                ("outcome ".to_string(), accent.add_modifier(Modifier::BOLD)),
            ]
        } else {
            indent()
        };
        out.extend(wrap(
            &[(
                line.to_string(),
                Style::default().add_modifier(Modifier::BOLD),
            )],
            width,
            &first,
            &indent(),
        ));
    }
    let mut terms = vec![format!(
        "up to {}",
        plural(spec.max_iterations() as usize, "evaluation")
    )];
    if !spec.checks.is_empty() {
        let names: Vec<String> = spec
            .checks
            .iter()
            .map(|c| match c {
                OutcomeCheck::Command { command, .. } => format!("`{command}`"),
                OutcomeCheck::FileExists { path } => format!("{path} exists"),
            })
            .collect();
        terms.push(format!("checks {}", names.join(", ")));
    }
    if let Some(g) = &spec.grader {
        if let Some(m) = &g.model {
            terms.push(format!("grader {m}"));
        }
        if spec.judges() > 1 {
            terms.push(plural(spec.judges() as usize, "judge"));
        }
        if !g.dimensions.is_empty() {
            terms.push(plural(g.dimensions.len(), "dimension"));
        }
    }
    if let Some(e) = &spec.escalate {
        terms.push(format!(
            "after {} → {}",
            plural(e.after as usize, "revision"),
            e.model
        ));
    }
    out.extend(wrap(
        &[(terms.join(" · "), dim())],
        width,
        &indent(),
        &indent(),
    ));
    let rubric = spec.rubric_text();
    let n = rubric.lines().count();
    if expanded {
        out.push(Line::styled("  rubric:", dim()));
        let gutter = vec![("  │ ".to_string(), dim())];
        for line in rubric.lines() {
            out.extend(wrap(
                &[(line.to_string(), Style::default())],
                width,
                &gutter,
                &gutter,
            ));
        }
    } else {
        let head = format!("rubric ({}, ctrl-e expands): ", plural(n, "line"));
        let first = rubric.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let room = width.saturating_sub(2 + head.width());
        out.push(Line::from(vec![
            Span::raw("  "),
            Span::styled(head, dim()),
            Span::styled(
                fit(first.trim(), room),
                dim().add_modifier(Modifier::ITALIC),
            ),
        ]));
    }
    out
}

/// `text` cut to `room` cells, with `…` when cut (a collapsed preview; the card expands).
fn fit(text: &str, room: usize) -> String {
    if text.width() <= room {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for ch in text.chars() {
        let w = ch.width().unwrap_or(0);
        if used + w + 1 > room {
            break;
        }
        out.push(ch);
        used += w;
    }
    if room > 0 {
        out.push('…');
    }
    out
}

fn verdict_style(r: EvaluationResult) -> Style {
    match r {
        EvaluationResult::Satisfied => Style::default().fg(Color::Green),
        EvaluationResult::NeedsRevision => Style::default().fg(Color::Yellow),
        EvaluationResult::MaxIterationsReached | EvaluationResult::Failed => {
            Style::default().fg(Color::Red)
        }
        EvaluationResult::Interrupted => dim(),
    }
}

/// One cycle: `evaluating…` until its end, then the verdict and its details.
pub fn evaluation(card: &EvaluationCard, expanded: bool, width: usize) -> Vec<Line<'static>> {
    let cycle = cycle_label(card.iteration, card.max_iterations);
    let Some(end) = &card.end else {
        let st = Style::default().fg(Color::Yellow);
        let mut segs: Vec<Seg> = vec![
            (format!("{cycle} "), st.add_modifier(Modifier::BOLD)),
            ("evaluating…".to_string(), st),
        ];
        if card.requests > 0 {
            segs.push((
                format!(" · {}", plural(card.requests as usize, "grader request")),
                dim(),
            ));
        }
        return wrap(&segs, width, &[("⚖ ".to_string(), st)], &indent());
    };
    let st = verdict_style(end.result);
    let mut out = wrap(
        &[
            (format!("{cycle} "), st.add_modifier(Modifier::BOLD)),
            (
                format!("{} {}", result_mark(end.result), result_label(end.result)),
                st.add_modifier(Modifier::BOLD),
            ),
        ],
        width,
        &[("⚖ ".to_string(), st)],
        &indent(),
    );
    let green = Style::default().fg(Color::Green);
    let red = Style::default().fg(Color::Red);
    for c in &end.criteria {
        let (mark, ms) = if c.met {
            ("✓ ", green)
        } else {
            ("✗ ", red)
        };
        let mut segs: Vec<Seg> = vec![(c.name.clone(), Style::default())];
        if let Some(n) = c.note.as_deref().filter(|n| !n.trim().is_empty()) {
            segs.push((format!(" — {n}"), dim()));
        }
        out.extend(wrap(
            &segs,
            width,
            &[("  ".to_string(), Style::default()), (mark.to_string(), ms)],
            &[("    ".to_string(), Style::default())],
        ));
    }
    let gutter = vec![("    │ ".to_string(), dim())];
    for c in &end.checks {
        let (mark, ms) = if c.passed {
            ("✓ ", green)
        } else {
            ("✗ ", red)
        };
        let mut segs: Vec<Seg> = vec![
            ("check ".to_string(), dim()),
            (c.check.clone(), Style::default()),
        ];
        if let Some(code) = c.exit_code.filter(|_| !c.passed) {
            segs.push((format!(" · exit {code}"), red));
        }
        out.extend(wrap(
            &segs,
            width,
            &[("  ".to_string(), Style::default()), (mark.to_string(), ms)],
            &[("    ".to_string(), Style::default())],
        ));
        if !c.passed && !c.output.trim().is_empty() {
            let lines: Vec<&str> = c.output.trim_end().lines().collect();
            let from = if expanded {
                0
            } else {
                lines.len().saturating_sub(CHECK_OUTPUT_ROWS)
            };
            if from > 0 {
                out.push(Line::styled(
                    format!("    … {} earlier lines (ctrl-e expands)", from),
                    dim(),
                ));
            }
            for l in &lines[from..] {
                out.extend(hard_wrap(l, dim(), width, &gutter));
            }
        }
    }
    if let Some(scores) = crate::outcome::scores_text(end) {
        out.extend(wrap(
            &[(scores, Style::default())],
            width,
            &indent(),
            &indent(),
        ));
    }
    let mut explanation = Vec::new();
    for l in end.explanation.trim_end().lines() {
        explanation.extend(wrap(
            &[(l.to_string(), Style::default())],
            width,
            &indent(),
            &indent(),
        ));
    }
    if !expanded && explanation.len() > EXPLANATION_ROWS + 1 {
        let more = explanation.len() - EXPLANATION_ROWS;
        explanation.truncate(EXPLANATION_ROWS);
        explanation.push(Line::styled(
            format!("  … +{more} lines (ctrl-e expands)"),
            dim(),
        ));
    }
    out.extend(explanation);
    if let Some(u) = grader_usage(end.grader_model.as_deref(), &end.usage) {
        out.extend(wrap(&[(u, dim())], width, &indent(), &indent()));
    }
    out
}
