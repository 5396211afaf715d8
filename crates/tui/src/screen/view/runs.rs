//! The workflow run panel (ctrl-g) over the transcript: the run's task graph (rungraph.rs),
//! one row a task with its live status (glyph and colour), attempts, agent · model and cost; a
//! fan-out task's items folded into a tally until unfolded; and the checkpoint prompt, a modal
//! like a tool approval's.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use tether_proto::workflow::{RunResult, RunStatus, item_parent};
use unicode_width::UnicodeWidthStr;

use super::{dim, short_model};
use crate::screen::app::State;
use crate::screen::rungraph::{GraphRow, RowKind};
use crate::screen::runs::{RunView, Shown, TaskView, status_label};
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

/// Styled pieces laid into exactly `max` columns: cut with `…` where they overflow (a row
/// never wraps), padded where they don't fill it.
fn fit(parts: Vec<(String, Style)>, max: usize) -> Vec<Span<'static>> {
    if max == 0 {
        return Vec::new();
    }
    let total: usize = parts.iter().map(|(t, _)| t.width()).sum();
    let mut out = Vec::new();
    if total <= max {
        out.extend(parts.into_iter().map(|(t, st)| Span::styled(t, st)));
        out.push(Span::raw(" ".repeat(max - total)));
        return out;
    }
    let mut w = 0;
    for (text, style) in parts {
        let room = max.saturating_sub(1).saturating_sub(w);
        if text.width() <= room {
            w += text.width();
            out.push(Span::styled(text, style));
            continue;
        }
        let mut piece = String::new();
        for c in text.chars() {
            let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
            if w + cw > max.saturating_sub(1) {
                break;
            }
            piece.push(c);
            w += cw;
        }
        piece.push('…');
        w += 1;
        out.push(Span::styled(piece, style));
        break;
    }
    out.push(Span::raw(" ".repeat(max.saturating_sub(w))));
    out
}

/// The colour a status is drawn in.
fn shown_style(s: Shown) -> Style {
    match s {
        Shown::Passed => Style::default().fg(Color::Green),
        Shown::Failed => Style::default().fg(Color::Red),
        Shown::Running | Shown::Retrying => Style::default().fg(Color::Yellow),
        Shown::Checking => Style::default().fg(Color::Cyan),
        Shown::Waiting => Style::default().fg(Color::Magenta),
        Shown::Pending | Shown::Skipped => dim(),
    }
}

/// A status's glyph (running spins).
fn glyph(s: &State, shown: Shown) -> &'static str {
    match shown {
        Shown::Pending => "·",
        Shown::Retrying => "↻",
        Shown::Running => super::spin(s),
        Shown::Checking => "◎",
        Shown::Waiting => "⏸",
        Shown::Passed => "✓",
        Shown::Failed => "✗",
        Shown::Skipped => "–",
    }
}

/// A fan-out's tally in words ("38 passed, 2 running, 10 pending"), or in glyphs when that
/// is wider than `max` ("38✓ 2▸ 10·").
fn tally_parts(t: &TaskView, n: usize, max: usize) -> Vec<(String, Style)> {
    let counts: Vec<(Shown, usize)> = Shown::ALL
        .iter()
        .map(|&sh| (sh, t.tally.get(sh)))
        .filter(|(_, c)| *c > 0)
        .collect();
    // Items not folded in yet (a list answer's run) are pending.
    let known: usize = counts.iter().map(|(_, c)| c).sum();
    let mut counts = counts;
    if known < n {
        match counts.iter_mut().find(|(sh, _)| *sh == Shown::Pending) {
            Some((_, c)) => *c += n - known,
            None => counts.push((Shown::Pending, n - known)),
        }
    }
    let words: Vec<(String, Style)> = counts
        .iter()
        .enumerate()
        .map(|(i, (sh, c))| {
            let sep = if i == 0 { "" } else { ", " };
            (format!("{sep}{c} {}", sh.label()), shown_style(*sh))
        })
        .collect();
    if words.iter().map(|(w, _)| w.width()).sum::<usize>() <= max {
        return words;
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, (sh, c))| {
            let sep = if i == 0 { "" } else { " " };
            let g = match sh {
                Shown::Running => "▸",
                Shown::Pending => "·",
                Shown::Retrying => "↻",
                Shown::Checking => "◎",
                Shown::Waiting => "⏸",
                Shown::Passed => "✓",
                Shown::Failed => "✗",
                Shown::Skipped => "–",
            };
            (format!("{sep}{c}{g}"), shown_style(*sh))
        })
        .collect()
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

/// The panel's columns for an inner width: the task (tree, status glyph, name), status,
/// attempts, agent · model, cost. Narrower screens drop agent · model, then attempts and cost.
struct Columns {
    task: usize,
    status: usize,
    tries: usize,
    agent: usize,
    cost: usize,
}

impl Columns {
    fn for_width(w: usize) -> Columns {
        let (status, tries, cost) = (20, 4, 7);
        let rest = w.saturating_sub(1);
        if w >= 72 {
            let task = (w * 2 / 5).clamp(20, 48);
            let agent = rest.saturating_sub(task + status + tries + cost);
            Columns {
                task,
                status,
                tries,
                agent,
                cost,
            }
        } else if w >= 52 {
            Columns {
                task: rest.saturating_sub(status + tries + cost),
                status,
                tries,
                agent: 0,
                cost,
            }
        } else {
            let status = (rest / 2).min(20);
            Columns {
                task: rest.saturating_sub(status),
                status,
                tries: 0,
                agent: 0,
                cost: 0,
            }
        }
    }
}

/// Who runs a task: its agent · model, "checkpoint", or the session's model.
fn who(s: &State, t: &TaskView) -> String {
    if t.question.is_some() && t.thread.is_none() {
        return "checkpoint".to_string();
    }
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
}

/// One row of the graph.
fn graph_line(
    s: &State,
    r: &RunView,
    row: &GraphRow,
    chosen: bool,
    unfolded: bool,
    c: &Columns,
) -> Line<'static> {
    let t = &r.tasks[row.task];
    let shown = t.shown();
    let mut name_style = Style::default();
    if chosen {
        name_style = name_style.fg(Color::Cyan).add_modifier(Modifier::BOLD);
    }
    // The tree keeps at least 10 columns for the glyph and the name.
    let mut task = vec![
        (row.prefix(c.task.saturating_sub(10)), dim()),
        (format!("{} ", glyph(s, shown)), shown_style(shown)),
    ];
    match row.kind {
        RowKind::Item => {
            let i = item_parent(&t.id).map_or(0, |(_, i)| i);
            task.push((format!("[{i}]"), name_style));
            if let Some(l) = &t.label {
                task.push((format!(" {l}"), dim()));
            }
        }
        RowKind::Task => {
            task.push((t.id.clone(), name_style));
            if let Some(n) = t.items {
                let fold = if unfolded { "▾" } else { "▸" };
                task.push((format!(" ×{n}{fold}"), Style::default().fg(Color::Cyan)));
            }
            if !row.after.is_empty() {
                task.push((format!("  after {}", row.after.join(", ")), dim()));
            }
        }
    }
    let mut spans = vec![Span::styled(
        if chosen { "▶" } else { " " },
        Style::default().fg(Color::Cyan),
    )];
    // A column's gap: a cut name must not run into the status.
    spans.extend(fit(task, c.task.saturating_sub(1)));
    spans.push(Span::raw(" "));
    let tries = if t.attempts == 0 {
        "-".to_string()
    } else {
        t.attempts.to_string()
    };
    let cost = match (row.kind, t.items) {
        (RowKind::Task, Some(_)) => t.tally.cost_usd,
        _ => t.cost_usd,
    };
    match t.items.filter(|_| row.kind == RowKind::Task) {
        // A fan-out: its items' tally over the status, attempts and agent columns.
        Some(n) => {
            let span = c.status + c.tries + c.agent;
            spans.extend(fit(tally_parts(t, n, span.saturating_sub(1)), span));
        }
        None => {
            spans.extend(fit(vec![(status_label(t), shown_style(shown))], c.status));
            if c.tries > 0 {
                spans.push(Span::styled(cell(&tries, c.tries), dim()));
            }
            if c.agent > 0 {
                spans.push(Span::styled(cell(&who(s, t), c.agent), dim()));
            }
        }
    }
    if c.cost > 0 {
        spans.push(Span::styled(
            format!("{:>w$}", cost.map(money).unwrap_or_default(), w = c.cost),
            dim(),
        ));
    }
    let mut line = Line::from(spans);
    if chosen {
        line = line.style(Style::default().add_modifier(Modifier::REVERSED));
    }
    line
}

/// The panel over `area` (the transcript's).
pub fn draw_panel(f: &mut Frame<'_>, s: &State, run: usize, selected: usize, area: Rect) {
    f.render_widget(Clear, area);
    let run = run.min(s.runs.runs.len().saturating_sub(1));
    let Some(r) = s.runs.runs.get(run) else {
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
    let c = Columns::for_width(w);
    let mut header = format!(" {}{}", cell("TASK", c.task), cell("STATUS", c.status));
    if c.tries > 0 {
        header.push_str(&cell("TRY", c.tries));
    }
    if c.agent > 0 {
        header.push_str(&cell("AGENT · MODEL", c.agent));
    }
    if c.cost > 0 {
        header.push_str(&format!("{:>w$}", "COST", w = c.cost));
    }
    f.render_widget(Paragraph::new(Line::styled(cell(&header, w), dim())), head);

    let rows = s.run_rows(run);
    let height = usize::from(body.height).max(1);
    // Keep the selected row on screen; only the rows on screen are drawn.
    let top = selected.saturating_sub(height.saturating_sub(1));
    let mut lines: Vec<Line<'static>> = rows
        .iter()
        .enumerate()
        .skip(top)
        .take(height)
        .map(|(i, row)| {
            let unfolded = s.run_folds.contains(&r.id, &r.tasks[row.task].id);
            graph_line(s, r, row, i == selected, unfolded, &c)
        })
        .collect();
    if rows.is_empty() {
        lines.push(Line::styled("  loading the run's tasks…", dim()));
    }
    f.render_widget(Paragraph::new(lines), body);

    // The selected task's detail: its question, why it failed, its items, what it waits for.
    let chosen = rows.get(selected).map(|row| (row, &r.tasks[row.task]));
    let d = chosen.map(|(row, t)| {
        if let Some(q) = t.question.as_deref().filter(|_| t.waits_for_answer()) {
            (format!(" ? {q}"), Style::default().fg(Color::Magenta))
        } else if let Some(v) = t.verdict.as_deref().filter(|_| t.failures > 0) {
            (
                format!(" ✗ attempt {} failed: {v}", t.failures),
                Style::default().fg(Color::Red),
            )
        } else if row.kind == RowKind::Item {
            (
                format!(
                    " {}{}",
                    t.id,
                    t.label
                        .as_deref()
                        .map(|l| format!(": {l}"))
                        .unwrap_or_default()
                ),
                dim(),
            )
        } else if let Some(n) = t.items {
            (
                format!(" {} runs as {n} items, one thread each", t.id),
                dim(),
            )
        } else if !t.deps.is_empty() {
            (format!(" {} waits for {}", t.id, t.deps.join(", ")), dim())
        } else if c.agent == 0 && t.model.is_some() {
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
    let mut hints = vec!["↑/↓ choose"];
    if let Some((row, t)) = chosen {
        let unfolded = s.run_folds.contains(&r.id, &t.id);
        if t.waits_for_answer() && !s.read_only {
            hints.push("y approve · n deny");
        } else if row.kind == RowKind::Task && t.items.is_some() {
            hints.push(if unfolded {
                "enter/← fold its items"
            } else {
                "enter/→ unfold its items"
            });
        } else if t.thread.is_some() {
            hints.push("enter show its thread");
        }
        if row.kind == RowKind::Item {
            hints.push("← fold");
        }
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
    super::draw_prompt(f, area, width, format!(" checkpoint · {run} "), lines);
}
