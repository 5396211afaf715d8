//! The workflow run panel (ctrl-g) over the transcript: one line a task (status, attempts,
//! agent · model, cost), fan-out items indented under their task; and the checkpoint prompt, a
//! modal like a tool approval's.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use tether_proto::workflow::{RunResult, RunStatus, TaskStatus};
use unicode_width::UnicodeWidthStr;

use super::{centered, dim, short_model};
use crate::screen::app::State;
use crate::screen::runs::{RunView, TaskView, status_label};
use crate::screen::wrap::wrap;

/// `s` cut to `max` columns, the cut marked with `…`, padded to `max`.
fn cell(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if w + cw > max.saturating_sub(1) && s.width() > max {
            out.push('…');
            w += 1;
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push_str(&" ".repeat(max.saturating_sub(w)));
    out
}

fn mark(s: &State, t: &TaskView) -> (&'static str, Style) {
    match t.status {
        TaskStatus::Queued if t.failures > 0 => ("↻", Style::default().fg(Color::Yellow)),
        TaskStatus::Queued => ("·", dim()),
        TaskStatus::Running => (super::spin(s), Style::default().fg(Color::Yellow)),
        TaskStatus::Checking => ("◎", Style::default().fg(Color::Cyan)),
        TaskStatus::WaitingForApproval => ("⏸", Style::default().fg(Color::Magenta)),
        TaskStatus::Succeeded => ("✓", Style::default().fg(Color::Green)),
        TaskStatus::Failed => ("✗", Style::default().fg(Color::Red)),
        TaskStatus::Skipped => ("–", dim()),
    }
}

fn money(c: f64) -> String {
    // Sub-cent tasks are common (small models): not all "$0.00".
    if c > 0.0 && c < 0.01 {
        format!("${c:.3}")
    } else {
        format!("${c:.2}")
    }
}

/// The run's state in a few words, for the title.
fn run_state(r: &RunView) -> (String, Style) {
    match (&r.status, &r.result) {
        (RunStatus::Running, _) => ("running".into(), Style::default().fg(Color::Yellow)),
        (RunStatus::Idle, _) => (
            "stopped (`tether workflows resume` goes on)".into(),
            Style::default().fg(Color::Yellow),
        ),
        (RunStatus::Ended, Some(RunResult::Completed { failed_tasks }))
            if failed_tasks.is_empty() =>
        {
            ("completed".into(), Style::default().fg(Color::Green))
        }
        (RunStatus::Ended, Some(RunResult::Completed { failed_tasks })) => (
            format!("completed, failed: {}", failed_tasks.join(", ")),
            Style::default().fg(Color::Red),
        ),
        (RunStatus::Ended, Some(RunResult::Stopped {})) => ("stopped".into(), dim()),
        (RunStatus::Ended, Some(RunResult::Error { error })) => (
            format!("error {}", error.kind.as_str()),
            Style::default().fg(Color::Red),
        ),
        (RunStatus::Ended, None) => ("ended".into(), dim()),
    }
}

/// The panel over `area` (the transcript's).
pub fn draw_panel(f: &mut Frame<'_>, s: &State, run: usize, selected: usize, area: Rect) {
    f.render_widget(Clear, area);
    let Some(r) = s
        .runs
        .runs
        .get(run.min(s.runs.runs.len().saturating_sub(1)))
    else {
        return;
    };
    let (done, all) = r.progress();
    let (state, state_style) = run_state(r);
    let mut title = vec![
        Span::styled(
            format!(" ⛓ {} ", r.name),
            Style::default()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!("· {state} "), state_style),
        Span::styled(format!("· {done}/{all} done "), dim()),
    ];
    if let Some(c) = r.cost_usd() {
        title.push(Span::styled(format!("· {} ", money(c)), dim()));
    }
    if s.runs.runs.len() > 1 {
        title.push(Span::styled(
            format!("· run {}/{} ", run + 1, s.runs.runs.len()),
            dim(),
        ));
    }
    let block = Block::bordered()
        .title(Line::from(title))
        .border_style(Style::default().fg(Color::Cyan));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [head, body, detail, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let w = usize::from(inner.width);
    // Columns: mark+task, status, attempts, agent · model, cost. Narrow screens drop the
    // agent · model column first.
    let status_w = 20;
    let try_w = 4;
    let cost_w = 7;
    let wide = w >= 72;
    let task_w = if wide {
        (w / 4).clamp(12, 28)
    } else {
        w.saturating_sub(status_w + try_w + cost_w + 5).max(8)
    };
    let agent_w = w.saturating_sub(task_w + status_w + try_w + cost_w + 5);
    let mut header = format!(
        "  {}{}{}",
        cell("TASK", task_w + 1),
        cell("STATUS", status_w),
        cell("TRY", try_w)
    );
    if wide {
        header.push_str(&cell("AGENT · MODEL", agent_w));
    }
    header.push_str("   COST");
    f.render_widget(Paragraph::new(Line::styled(header, dim())), head);

    let rows = usize::from(body.height).max(1);
    // Keep the selected task on screen.
    let top = selected.saturating_sub(rows.saturating_sub(1));
    let mut lines: Vec<Line<'static>> = Vec::new();
    for (i, t) in r.tasks.iter().enumerate().skip(top).take(rows) {
        let chosen = i == selected;
        let (m, ms) = mark(s, t);
        let name = if t.is_item() {
            format!("  {}", t.id)
        } else {
            t.id.clone()
        };
        let tries = if t.attempts == 0 {
            "-".to_string()
        } else {
            t.attempts.to_string()
        };
        let who = if t.question.is_some() && t.thread.is_none() {
            "checkpoint".to_string()
        } else {
            let agent = t.agent.clone().or_else(|| {
                t.thread
                    .as_deref()
                    .and_then(|th| s.threads.get(th))
                    .map(|th| crate::screen::threads::short_name(&th.name).to_string())
            });
            let model = t.model.as_deref().map(|m| {
                let m = short_model(m);
                m.strip_prefix("claude-").unwrap_or(m)
            });
            match (agent, model) {
                (Some(a), Some(m)) => format!("{a} · {m}"),
                (Some(a), None) => a,
                (None, Some(m)) => m.to_string(),
                (None, None) => "session model".into(),
            }
        };
        let status_style = match t.status {
            TaskStatus::WaitingForApproval => Style::default().fg(Color::Magenta),
            TaskStatus::Failed => Style::default().fg(Color::Red),
            TaskStatus::Succeeded => Style::default().fg(Color::Green),
            TaskStatus::Queued if t.failures > 0 => Style::default().fg(Color::Yellow),
            TaskStatus::Running | TaskStatus::Checking => Style::default().fg(Color::Yellow),
            _ => dim(),
        };
        let mut name_style = Style::default();
        if chosen {
            name_style = name_style.fg(Color::Cyan).add_modifier(Modifier::BOLD);
        }
        let mut spans = vec![
            Span::styled(
                if chosen { "▶" } else { " " },
                Style::default().fg(Color::Cyan),
            ),
            Span::styled(m, ms),
            Span::raw(" "),
            Span::styled(cell(&name, task_w), name_style),
            Span::styled(cell(&status_label(t), status_w), status_style),
            Span::styled(cell(&tries, try_w), dim()),
        ];
        if wide {
            spans.push(Span::styled(cell(&who, agent_w), dim()));
        }
        spans.push(Span::styled(
            format!("{:>7}", t.cost_usd.map(money).unwrap_or_default()),
            dim(),
        ));
        let mut line = Line::from(spans);
        if chosen {
            line = line.style(Style::default().add_modifier(Modifier::REVERSED));
        }
        lines.push(line);
    }
    if r.tasks.is_empty() {
        lines.push(Line::styled("  loading the run's tasks…", dim()));
    }
    f.render_widget(Paragraph::new(lines), body);

    // The selected task's detail: why it failed, its question, or where its thread is.
    let d = r.tasks.get(selected).map(|t| {
        if let Some(q) = t.question.as_deref().filter(|_| t.waits_for_answer()) {
            (format!(" ? {q}"), Style::default().fg(Color::Magenta))
        } else if let Some(v) = t.verdict.as_deref().filter(|_| t.failures > 0) {
            (
                format!(" ✗ attempt {} failed: {v}", t.failures),
                Style::default().fg(Color::Red),
            )
        } else if !wide && t.model.is_some() {
            (
                format!(
                    " {}",
                    t.model.as_deref().map(short_model).unwrap_or_default()
                ),
                dim(),
            )
        } else {
            (String::new(), dim())
        }
    });
    if let Some((text, style)) = d {
        f.render_widget(Paragraph::new(Line::styled(cell(&text, w), style)), detail);
    }
    let chosen = r.tasks.get(selected);
    let mut hints = vec!["↑/↓ choose"];
    match chosen {
        Some(t) if t.waits_for_answer() && !s.read_only => {
            hints.push("y approve · n deny");
        }
        Some(t) if t.thread.is_some() => hints.push("enter show its thread"),
        _ => {}
    }
    if s.runs.runs.len() > 1 {
        hints.push("tab next run");
    }
    hints.push("esc close");
    let mut text = format!(" {}", hints.join(" · "));
    while text.width() > w && hints.len() > 1 {
        hints.remove(0);
        text = format!(" {}", hints.join(" · "));
    }
    f.render_widget(
        Paragraph::new(Line::styled(text, Style::default().fg(Color::Cyan))),
        keys,
    );
}

/// The checkpoint prompt: the run, the task, its question and the keys; the denial's note
/// while it is typed.
pub fn draw_checkpoint(
    f: &mut Frame<'_>,
    s: &State,
    run: &str,
    task: &str,
    draft: Option<&str>,
    area: Rect,
) {
    let r = s.runs.get(run);
    let name = r.map_or(run, |r| r.name.as_str());
    let question = r
        .and_then(|r| r.task(task))
        .and_then(|t| t.question.clone())
        .unwrap_or_else(|| "(the question is in the workflow file)".into());
    let width = 72.min(area.width);
    let inner = usize::from(width.saturating_sub(2)).max(1);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let pad = [(" ".to_string(), Style::default())];
    let mut lines = wrap(
        &[
            (" Workflow ".into(), Style::default()),
            (name.to_string(), bold),
            (
                format!(" waits for you at task `{task}`:"),
                Style::default(),
            ),
        ],
        inner,
        &[],
        &pad,
    );
    lines.push(Line::default());
    lines.extend(wrap(
        &[(question, bold.fg(Color::Magenta))],
        inner,
        &[("   ".into(), Style::default())],
        &[("   ".into(), Style::default())],
    ));
    lines.push(Line::default());
    let hint = Style::default().fg(Color::Cyan);
    match draft {
        Some(note) => {
            lines.extend(wrap(
                &[
                    (
                        " Why deny? (optional, saved with the answer): ".into(),
                        bold,
                    ),
                    (format!("{note}▏"), Style::default()),
                ],
                inner,
                &[],
                &pad,
            ));
            lines.push(Line::styled(" enter deny · esc back", hint));
        }
        None => lines.extend(wrap(
            &[(
                " y approve · n deny · ctrl-g the run · esc later (ctrl-a)".into(),
                hint,
            )],
            inner,
            &[],
            &pad,
        )),
    }
    let height = u16::try_from(lines.len() + 2).unwrap_or(area.height);
    let rect = centered(area, width, height);
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(format!(" checkpoint · {run} "))
                .border_style(Style::default().fg(Color::Magenta)),
        ),
        rect,
    );
}
