//! Pure render functions: a frame from state, nothing else.

// MCP elicitation (issue 25)
mod elicit;
pub mod picker;
mod runs;
mod threads;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use tether_proto::outcome::EvaluationResult;
use tether_proto::{SessionStatus, StopReason};

use super::app::{OutcomePhase, Overlay, Scroll, State};
use super::net::ConnState;
use super::transcript::{Body, secs};
use crate::render::stop_reason_text;

pub const SPINNER: &[&str] = &["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// The spinner's frame; a still circle while the daemon is unreachable (nothing is known to
/// move).
pub(super) fn spin(s: &State) -> &'static str {
    if s.connected() {
        SPINNER[s.spinner % SPINNER.len()]
    } else {
        "◌"
    }
}

pub(super) fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

pub fn draw_session(f: &mut Frame<'_>, s: &State) {
    let area = f.area();
    let [body, strip, status, composer, footer] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(u16::from(s.thread_strip())),
        Constraint::Length(1),
        Constraint::Length(s.composer_height()),
        Constraint::Length(1),
    ])
    .areas(area);
    if s.side_panel() {
        let [text, panel] = Layout::horizontal([
            Constraint::Min(1),
            Constraint::Length(s.width - s.text_width()),
        ])
        .areas(body);
        draw_transcript(f, s, text);
        threads::draw_panel(f, s, panel);
    } else {
        draw_transcript(f, s, body);
    }
    if s.thread_strip() {
        threads::draw_strip(f, s, strip);
    }
    draw_status(f, s, status);
    let block = Block::default().borders(Borders::TOP).border_style(dim());
    let inner = block.inner(composer);
    f.render_widget(block, composer);
    if s.read_only {
        // Visibly not a place to type: this client watches only.
        f.render_widget(
            Paragraph::new(Line::styled(
                "⊘ read-only: watching; to write, attach without --read-only",
                dim().add_modifier(Modifier::ITALIC),
            )),
            inner,
        );
    } else {
        f.render_widget(&s.composer, inner);
    }
    draw_footer(f, s, footer);
    match &s.overlay {
        Overlay::Help => draw_help(f, s, area),
        Overlay::Approval { scroll, .. } => draw_approval(f, s, *scroll, area),
        Overlay::Runs { run, selected } => runs::draw_panel(f, s, *run, *selected, body),
        Overlay::Checkpoint { run, task, draft } => {
            runs::draw_checkpoint(f, s, run, task, draft.as_deref(), area)
        }
        Overlay::Elicitation { id, form } => elicit::draw(f, s, id, form, area),
        Overlay::None => {}
    }
}

fn draw_transcript(f: &mut Frame<'_>, s: &State, area: Rect) {
    let vh = area.height as usize;
    let (mut item, mut line) = s.anchor();
    let mut rows: Vec<Line<'static>> = Vec::with_capacity(vh);
    let q = s.search.query.to_ascii_lowercase();
    if item == 0 && line == 0 && s.transcript.has_older {
        rows.push(Line::styled(
            if s.loading_older {
                "  ⋯ loading older events…"
            } else {
                "  ⋯ older events (scroll up to load)"
            },
            dim(),
        ));
    }
    while rows.len() < vh && item < s.transcript.items.len() {
        let it = &s.transcript.items[item];
        let layout = s.layouts.of(it, s.text_width());
        let focused = s.focus == Some(item);
        // A focused code block is marked alone, down its left edge.
        let block_rows = s
            .block
            .filter(|_| focused)
            .and_then(|b| layout.blocks.get(b).map(|b| b.rows.clone()));
        let focused = focused && block_rows.is_none();
        for (l, row) in layout.lines.iter().enumerate().skip(line) {
            if rows.len() >= vh {
                break;
            }
            let mut row = row.clone();
            if !q.is_empty() {
                let current = s.search.current == Some((item, l));
                row = highlight(row, &q, current);
            }
            if block_rows.as_ref().is_some_and(|r| r.contains(&l))
                && let Some(first) = row.spans.first_mut()
            {
                *first = Span::styled(
                    "▌ ",
                    Style::default()
                        .fg(Color::Yellow)
                        .add_modifier(Modifier::BOLD),
                );
            }
            if focused {
                row = row.patch_style(Style::default().add_modifier(Modifier::BOLD));
                if let Some(first) = row.spans.first_mut() {
                    // A visible mark that survives NO_COLOR.
                    let t = first.content.to_string();
                    if t.starts_with(' ') || t.starts_with('┃') || t.starts_with('⏺') {
                        let rest: String = t.chars().skip(1).collect();
                        *first = Span::styled(format!("▶{rest}"), first.style.fg(Color::Yellow));
                    }
                }
            }
            rows.push(row);
        }
        item += 1;
        line = 0;
    }
    if s.transcript.items.is_empty() {
        let msg = if s.caught_up || s.conn == ConnState::Connected {
            "No messages yet. Type below and press enter to give the agent work."
        } else {
            "loading…"
        };
        rows.push(Line::styled(format!("  {msg}"), dim()));
    }
    f.render_widget(Paragraph::new(rows), area);

    if let ConnState::Reconnecting {
        attempt,
        retry_in_ms,
        reason,
    } = &s.conn
    {
        // How to fix it first: the retry details are what a narrow screen cuts.
        let text = format!(
            " ⟳ tetherd is unreachable: start it with `tether daemon start` · retry {attempt} in {} ({reason}) ",
            secs(*retry_in_ms)
        );
        let banner = Rect { height: 1, ..area };
        f.render_widget(Clear, banner);
        f.render_widget(
            Paragraph::new(Line::styled(
                text,
                Style::default()
                    .fg(Color::Black)
                    .bg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            )),
            banner,
        );
    } else if let ConnState::Lost(why) = &s.conn {
        let banner = Rect { height: 1, ..area };
        f.render_widget(Clear, banner);
        f.render_widget(
            Paragraph::new(Line::styled(
                format!(" ✗ {why} "),
                Style::default().fg(Color::White).bg(Color::Red),
            )),
            banner,
        );
    }
    if s.scroll != Scroll::Follow && area.height > 1 {
        let text = if s.new_below > 0 {
            format!(" ↓ {} new · end jumps to the bottom ", s.new_below)
        } else {
            " ↓ more below · end jumps to the bottom ".to_string()
        };
        let w = unicode_width::UnicodeWidthStr::width(text.as_str()) as u16;
        let r = Rect {
            x: area.x + area.width.saturating_sub(w + 1),
            y: area.y + area.height - 1,
            width: w.min(area.width),
            height: 1,
        };
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(Line::styled(
                text,
                Style::default().fg(Color::Black).bg(Color::Cyan),
            )),
            r,
        );
    }
}

/// Marks the query's occurrences in a line (ASCII case-insensitive; byte offsets stay valid).
fn highlight(line: Line<'static>, q: &str, current: bool) -> Line<'static> {
    let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
    let lower = text.to_ascii_lowercase();
    let mut hits = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(q) {
        hits.push((from + i, from + i + q.len()));
        from += i + q.len().max(1);
    }
    if hits.is_empty() {
        return line;
    }
    let mark = if current {
        Style::default()
            .fg(Color::Black)
            .bg(Color::Yellow)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::default().add_modifier(Modifier::REVERSED)
    };
    let mut out = Vec::new();
    let mut pos = 0;
    for span in line.spans {
        let start = pos;
        let end = pos + span.content.len();
        pos = end;
        let mut cut = start;
        for &(a, b) in &hits {
            let (a, b) = (a.max(start), b.min(end));
            if a >= b {
                continue;
            }
            if a > cut {
                out.push(Span::styled(text[cut..a].to_string(), span.style));
            }
            out.push(Span::styled(text[a..b].to_string(), span.style.patch(mark)));
            cut = b;
        }
        if cut < end {
            out.push(Span::styled(text[cut..end].to_string(), span.style));
        }
    }
    Line::from(out).style(line.style)
}

/// The default provider goes without saying.
pub fn short_model(m: &str) -> &str {
    m.strip_prefix("anthropic/").unwrap_or(m)
}

fn human(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else if n >= 1000 {
        format!("{:.1}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

/// `label` cut to `max` characters, the cut marked with `…`.
fn fit_label(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        return label.to_string();
    }
    let mut out: String = label.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn draw_status(f: &mut Frame<'_>, s: &State, area: Rect) {
    let h = &s.header;
    let bar = Style::default().bg(Color::DarkGray).fg(Color::White);
    // A child thread shown: its name after the session's, its model instead.
    let viewed = s.viewing.as_ref().map(|v| {
        let t = s.threads.get(&v.id);
        (
            crate::screen::threads::short_name(t.map_or(v.name.as_str(), |t| t.name.as_str()))
                .to_string(),
            t.and_then(|t| t.model.clone()),
        )
    });
    let model = viewed
        .as_ref()
        .and_then(|(_, m)| m.clone())
        .unwrap_or_else(|| h.model.clone());
    let mut spans = vec![Span::styled(
        // An unnamed session's label is its 31-character id: shortened on a narrow bar
        // so the model, status and outcome still fit.
        format!(
            " {} ",
            fit_label(&h.label, if area.width < 120 { 16 } else { 40 })
        ),
        bar.add_modifier(Modifier::BOLD),
    )];
    if let Some((name, _)) = &viewed {
        spans.push(Span::styled(
            format!("▸ {} ", fit_label(name, 20)),
            bar.fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ));
    }
    spans.push(Span::styled(
        format!(
            "│ {} ",
            if model.is_empty() {
                "…"
            } else if area.width < 90 {
                // Narrow: room for the connection state at the end.
                let m = short_model(&model);
                m.strip_prefix("claude-").unwrap_or(m)
            } else {
                short_model(&model)
            }
        ),
        bar,
    ));
    // Tools running without the full sandbox must never look like the others.
    match h.sandbox.as_deref() {
        Some("none") => spans.push(Span::styled(
            "│ UNSANDBOXED ",
            bar.fg(Color::Red).add_modifier(Modifier::BOLD),
        )),
        // Self-hosted environment: say where the tools run.
        Some(tether_proto::session::TOOLS_ON_WORKERS) => {
            spans.push(Span::styled("│ tools: on workers ", bar.fg(Color::Cyan)))
        }
        Some(level) => spans.push(Span::styled(
            format!("│ sandbox: {level} "),
            bar.fg(Color::Yellow),
        )),
        None => {}
    }
    // Other sessions of the fleet that wait for you (issue 20).
    if s.fleet_waiting > 0 {
        spans.push(Span::styled(
            format!("│ {} waiting elsewhere ", s.fleet_waiting),
            bar.fg(Color::Magenta).add_modifier(Modifier::BOLD),
        ));
    }
    // Segments dropped first when the bar is too narrow (higher drops later; 0 stays).
    let mut drop_rank = vec![0u8; spans.len()];
    let evaluating = h
        .outcome
        .as_ref()
        .filter(|o| o.phase == OutcomePhase::Evaluating);
    let (status, st) = match (h.status, &h.stop_reason) {
        (Some(SessionStatus::Running), _) if let Some(o) = evaluating => (
            format!("{} evaluating ({})…", spin(s), cycle(o.iteration, o.max)),
            bar.fg(Color::Yellow),
        ),
        (Some(SessionStatus::Running), _) => {
            let elapsed = h
                .running_since
                .and_then(|t| s.now.duration_since(t).ok())
                .map(|d| format!(" {}", secs(d.as_millis() as u64 / 1000 * 1000)))
                .unwrap_or_default();
            (
                format!("{} running{elapsed}", spin(s)),
                bar.fg(Color::Yellow),
            )
        }
        (Some(SessionStatus::Rescheduling), _) => ("↻ rescheduling".into(), bar.fg(Color::Yellow)),
        (Some(SessionStatus::Idle), Some(StopReason::RequiresAction { .. })) => {
            ("⏸ requires action".into(), bar.fg(Color::Magenta))
        }
        (Some(SessionStatus::Idle), Some(r)) if !r.is_success() => (
            format!("○ idle ({})", stop_reason_text(r)),
            bar.fg(Color::Red),
        ),
        (Some(SessionStatus::Idle), _) => ("○ idle".into(), bar.fg(Color::Green)),
        (Some(SessionStatus::Terminated), _) => ("■ terminated".into(), bar.fg(Color::Red)),
        (None, _) => ("…".into(), bar),
    };
    spans.push(Span::styled(format!("│ {status} "), st));
    drop_rank.push(0);
    if let Some(o) = &h.outcome {
        let (text, os) = match o.phase {
            OutcomePhase::Working | OutcomePhase::Evaluating => (
                format!("◎ outcome {}", cycle(o.iteration, o.max)),
                bar.fg(Color::Cyan),
            ),
            OutcomePhase::Done(r) => {
                let color = match r {
                    EvaluationResult::Satisfied => Color::Green,
                    EvaluationResult::Interrupted | EvaluationResult::NeedsRevision => {
                        Color::Yellow
                    }
                    _ => Color::Red,
                };
                let what = match r {
                    EvaluationResult::MaxIterationsReached => "max iterations",
                    r => crate::outcome::result_label(r),
                };
                (
                    format!("{} outcome {what}", crate::outcome::result_mark(r)),
                    bar.fg(color),
                )
            }
        };
        spans.push(Span::styled(format!("│ {text} "), os));
        drop_rank.push(0);
    }
    // While text streams, the output count grows with it (about 4 characters a token, marked
    // `~`); the model's own count replaces the estimate when the request ends.
    let streaming: usize = s
        .transcript
        .items
        .iter()
        .rev()
        .take(3)
        .filter_map(|i| match &i.body {
            Body::Assistant { text, live: true } | Body::Thinking { text, live: true } => {
                Some(text.chars().count())
            }
            _ => None,
        })
        .sum();
    let out = if streaming > 0 {
        format!("~{}", human(h.tokens_out + (streaming as u64).div_ceil(4)))
    } else {
        human(h.tokens_out)
    };
    spans.push(Span::styled(
        format!("│ ↑{} ↓{out} ", human(h.tokens_in)),
        bar,
    ));
    drop_rank.push(2);
    // How full the context is, when the model's window is known: yellow from 70 %, red
    // from 90 % (compaction or a new session is near).
    if let Some(window) = h.context_window.filter(|w| *w > 0 && h.context_used > 0) {
        let pct = (h.context_used.saturating_mul(100) / window).min(999);
        let style = match pct {
            90.. => bar.fg(Color::Red).add_modifier(Modifier::BOLD),
            70..90 => bar.fg(Color::Yellow),
            _ => bar,
        };
        // A short conversation is not "0 %" full.
        let shown = if pct == 0 {
            "<1".to_string()
        } else {
            pct.to_string()
        };
        spans.push(Span::styled(format!("│ ctx {shown}% "), style));
        drop_rank.push(2);
    }
    // Narrow terminals keep the connection state rather than the cost.
    if let Some(c) = h.cost_usd.filter(|_| area.width >= 90) {
        spans.push(Span::styled(format!("│ ${c:.2} "), bar));
        drop_rank.push(3);
    }
    spans.push(Span::styled(
        format!(
            "│ {} client{} ",
            h.attached_clients,
            if h.attached_clients == 1 { "" } else { "s" }
        ),
        bar,
    ));
    drop_rank.push(1);
    if s.read_only {
        spans.push(Span::styled("│ read-only ", bar));
        drop_rank.push(0);
    }
    let (conn, cs) = match &s.conn {
        ConnState::Connected => ("● connected".to_string(), bar.fg(Color::Green)),
        ConnState::Connecting => ("○ connecting".to_string(), bar.fg(Color::Yellow)),
        ConnState::Reconnecting { .. } => ("⟳ reconnecting".to_string(), bar.fg(Color::Yellow)),
        ConnState::Lost(_) => ("✗ disconnected".to_string(), bar.fg(Color::Red)),
    };
    spans.push(Span::styled(format!("│ {conn} "), cs));
    drop_rank.push(0);
    // Too wide: the least useful segments go (clients, then tokens, then cost).
    let width = |spans: &[Span<'_>]| spans.iter().map(|s| s.width()).sum::<usize>();
    while width(&spans) > area.width as usize {
        let Some(i) = (1..=3u8).find_map(|r| drop_rank.iter().position(|&d| d == r)) else {
            break;
        };
        spans.remove(i);
        drop_rank.remove(i);
    }
    f.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}

/// `2/3` (1-based), or `2` while the limit is not known.
fn cycle(iteration: u32, max: Option<u32>) -> String {
    match max {
        Some(m) => format!("{}/{m}", iteration + 1),
        None => (iteration + 1).to_string(),
    }
}

fn draw_footer(f: &mut Frame<'_>, s: &State, area: Rect) {
    let line = if s.search.editing {
        Line::from(vec![
            Span::styled("/", Style::default().fg(Color::Yellow)),
            Span::raw(s.search.query.clone()),
            Span::styled("▏  enter finds · esc cancels", dim()),
        ])
    } else if let Some(n) = &s.notice {
        Line::styled(format!(" {n}"), Style::default().fg(Color::Yellow))
    } else if let Some((lang, code)) = s.focused_block() {
        let n = code.lines().count();
        Line::styled(
            format!(
                " ▌ {}block, {n} line{} · y copies · [ ] more · esc done · {} detach",
                if lang.is_empty() {
                    "code ".to_string()
                } else {
                    format!("{lang} ")
                },
                if n == 1 { "" } else { "s" },
                s.keys.detach_label()
            ),
            dim(),
        )
    } else {
        // (rank, hint): the lowest rank goes first when the row is too narrow for all.
        let mut hints: Vec<(u8, String)> = Vec::new();
        // A put-away approval comes first: the agent is stuck until it is answered.
        if !s.put_away.is_empty() {
            hints.push((9, format!("ctrl-a answer ({} waiting)", s.put_away.len())));
        } else if s.checkpoints_waiting() > 0 && !s.read_only {
            hints.push((9, "ctrl-a answer checkpoint".into()));
        }
        hints.push((8, format!("{} detach", s.keys.detach_label())));
        if s.is_running() {
            hints.push((7, "esc esc interrupt".into()));
        }
        hints.push((9, "? help".into()));
        if s.threads.any() {
            hints.push((
                6,
                if s.viewing.is_some() {
                    "ctrl-t next thread".into()
                } else {
                    "ctrl-t threads".into()
                },
            ));
        }
        if s.runs.any() {
            hints.push((6, "ctrl-g runs".into()));
        }
        hints.push(if s.search.query.is_empty() {
            (3, "/ search".into())
        } else {
            (5, "n/N next/prev match".into())
        });
        hints.push((2, "pgup/pgdn scroll".into()));
        hints.push((4, "ctrl-o pager".into()));
        let joined = |h: &[(u8, String)]| {
            format!(
                " {}",
                h.iter()
                    .map(|(_, t)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" · ")
            )
        };
        let mut text = joined(&hints);
        while text.chars().count() > usize::from(area.width) && hints.len() > 1 {
            let least = hints
                .iter()
                .enumerate()
                .min_by_key(|(_, (rank, _))| *rank)
                .map_or(0, |(i, _)| i);
            hints.remove(least);
            text = joined(&hints);
        }
        Line::styled(text, dim())
    };
    f.render_widget(Paragraph::new(line), area);
}

pub fn help_rows(detach: &str) -> Vec<(String, &'static str)> {
    vec![
        (
            "enter".into(),
            "send the message (queued if the agent is busy)",
        ),
        ("alt/shift-enter, ctrl-j".into(), "new line in the message"),
        (
            "↑ / ↓ (empty composer)".into(),
            "previous / next sent message",
        ),
        (
            detach.to_string(),
            "detach: leave the agent running (like tmux)",
        ),
        ("esc esc".into(), "interrupt the agent's turn (asks once)"),
        ("ctrl-a".into(), "reopen approvals put away with esc"),
        (
            "ctrl-c".into(),
            "clear the composer (never stops the agent)",
        ),
        (
            "pgup / pgdn, wheel".into(),
            "scroll; the view follows only at the bottom",
        ),
        ("home / end".into(), "top of the loaded log / back to live"),
        ("ctrl-↑ / ctrl-↓".into(), "previous / next user message"),
        ("alt-↑ / alt-↓".into(), "focus the previous / next item"),
        (
            "ctrl-e".into(),
            "expand / collapse the focused (or last) card",
        ),
        (
            "/  then n / N".into(),
            "search the whole session: N older, n newer match",
        ),
        (
            "[ / ] (empty composer)".into(),
            "focus the previous / next code block",
        ),
        (
            "y (browsing) / alt-y".into(),
            "copy the focused code block or message (OSC 52)",
        ),
        (
            "alt-u".into(),
            "copy the newest MCP authorization URL (OSC 52)",
        ),
        (
            "ctrl-o".into(),
            "the whole transcript, every card expanded ($PAGER)",
        ),
        (
            "alt-m / f2".into(),
            "toggle mouse capture (native selection)",
        ),
        ("? / f1".into(), "this help; any key closes it"),
    ]
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// A prompt over the transcript: `lines` in a magenta-bordered box titled `title`, as tall as
/// its lines (at most the screen), centred in `area` (the checkpoint and MCP-question prompts).
fn draw_prompt(
    f: &mut Frame<'_>,
    area: Rect,
    width: u16,
    title: String,
    lines: Vec<Line<'static>>,
) {
    let height = u16::try_from(lines.len() + 2).unwrap_or(area.height);
    let rect = centered(area, width, height);
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(title)
                .border_style(Style::default().fg(Color::Magenta)),
        ),
        rect,
    );
}

fn draw_help(f: &mut Frame<'_>, s: &State, area: Rect) {
    let mut rows = help_rows(&s.keys.detach_label());
    if s.runs.any() {
        rows.insert(
            rows.len() - 2,
            (
                "ctrl-g".into(),
                "workflow runs: every task's status; enter shows its thread",
            ),
        );
    }
    if s.threads.any() {
        rows.insert(
            rows.len() - 2,
            (
                "ctrl-t / alt-0…9".into(),
                "show the next thread / thread N (0: the primary)",
            ),
        );
    }
    let kw = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(10);
    let lines: Vec<Line<'static>> = rows
        .iter()
        .map(|(k, d)| {
            Line::from(vec![
                Span::styled(
                    format!(" {k:<kw$}  "),
                    Style::default()
                        .fg(Color::Cyan)
                        .add_modifier(Modifier::BOLD),
                ),
                Span::raw(d.to_string()),
            ])
        })
        .collect();
    let r = centered(area, 92, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" keys ")
                .border_style(Style::default().fg(Color::Cyan)),
        ),
        r,
    );
}

fn draw_approval(f: &mut Frame<'_>, s: &State, scroll: u16, area: Rect) {
    let Some(m) = super::app::approval::laid_out(s) else {
        return;
    };
    let r = centered(area, m.width, m.height);
    f.render_widget(Clear, r);
    let block = Block::bordered()
        .title(m.title.clone())
        .border_style(Style::default().fg(Color::Magenta));
    let inner = block.inner(r);
    f.render_widget(block, r);
    // The footer (reason being typed, key hints) is pinned to the bottom; the body scrolls.
    let foot = u16::try_from(m.footer.len()).unwrap_or(inner.height);
    let [body, footer] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(foot)]).areas(inner);
    let top = scroll.min(m.max_scroll);
    f.render_widget(Paragraph::new(m.body).scroll((top, 0)), body);
    f.render_widget(Paragraph::new(m.footer), footer);
}
