//! The thread panel of a multi-agent session: a tree beside the transcript on wide screens, a
//! one-line strip above the status bar on narrow ones. Each thread: its number (alt-N shows
//! it), state, name, model and cost; the one shown is marked, the ones waiting for input too.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::{dim, short_model};
use crate::screen::app::State;
use crate::screen::threads::{ThreadState, TreeRow, short_name};

fn mark(s: &State, r: &TreeRow) -> (String, Style) {
    if r.waits {
        return ("⏸".into(), Style::default().fg(Color::Magenta));
    }
    match r.state {
        ThreadState::Running => (super::spin(s).into(), Style::default().fg(Color::Yellow)),
        ThreadState::Waiting => ("⏸".into(), Style::default().fg(Color::Magenta)),
        ThreadState::Idle => ("○".into(), Style::default().fg(Color::Green)),
        ThreadState::Rescheduling => ("↻".into(), Style::default().fg(Color::Yellow)),
        ThreadState::Terminated => ("■".into(), dim()),
    }
}

fn name(r: &TreeRow) -> String {
    let n = short_name(&r.name);
    if r.count > 1 {
        format!("{n} ×{}", r.count)
    } else {
        n.to_string()
    }
}

fn is_shown(s: &State, i: usize, r: &TreeRow) -> bool {
    match s.viewed_thread() {
        None => i == 0,
        Some(id) => r.id == id,
    }
}

/// `s` cut to `max` characters, the cut marked with `…`.
fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The tree beside the transcript: two lines a thread.
pub fn draw_panel(f: &mut Frame<'_>, s: &State, area: Rect) {
    let block = Block::default()
        .borders(Borders::LEFT)
        .border_style(dim())
        .title(Span::styled(" threads ", Style::default().fg(Color::Cyan)));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let w = inner.width as usize;
    let mut lines: Vec<Line<'static>> = Vec::new();
    for (i, r) in s.thread_rows().iter().enumerate() {
        let shown = is_shown(s, i, r);
        let (m, ms) = mark(s, r);
        let indent = "  ".repeat(r.depth.saturating_sub(1));
        let head = if shown { "▶" } else { " " };
        let num = if i < 10 { format!("{i}") } else { " ".into() };
        let mut name_style = Style::default().add_modifier(Modifier::BOLD);
        if shown {
            name_style = name_style.fg(Color::Cyan);
        }
        let state = if r.waits {
            ThreadState::Waiting.label()
        } else {
            r.state.label()
        };
        let state_style = if r.waits {
            Style::default().fg(Color::Magenta)
        } else {
            dim()
        };
        let used = 5 + indent.chars().count();
        let name = fit(&name(r), w.saturating_sub(used));
        let room = w.saturating_sub(used + name.chars().count() + 3);
        lines.push(Line::from(vec![
            Span::styled(head.to_string(), Style::default().fg(Color::Cyan)),
            Span::styled(num, dim()),
            Span::raw(format!(" {indent}")),
            Span::styled(m, ms),
            Span::raw(" "),
            Span::styled(name, name_style),
            Span::styled(
                if room > 2 {
                    format!(" · {}", fit(state, room))
                } else {
                    String::new()
                },
                state_style,
            ),
        ]));
        let mut detail = vec![
            r.model
                .as_deref()
                .map(|m| short_model(m).to_string())
                .unwrap_or_else(|| "…".into()),
        ];
        if let Some(c) = r.cost_usd {
            // Sub-cent threads are common (small models): not all "$0.00".
            detail.push(if c > 0.0 && c < 0.01 {
                format!("${c:.3}")
            } else {
                format!("${c:.2}")
            });
        }
        lines.push(Line::styled(
            fit(
                &format!("    {indent}{}", detail.join(" · ")),
                w.saturating_sub(1),
            ),
            dim(),
        ));
    }
    lines.push(Line::default());
    lines.push(Line::styled(" ctrl-t next · alt-N thread N", dim()));
    f.render_widget(Paragraph::new(lines), inner);
}

/// One line of threads above the status bar, when the screen has no room beside.
pub fn draw_strip(f: &mut Frame<'_>, s: &State, area: Rect) {
    let mut spans = vec![Span::styled("⑂ ", Style::default().fg(Color::Cyan))];
    let rows = s.thread_rows();
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" │ ", dim()));
        }
        let shown = is_shown(s, i, r);
        let (m, ms) = mark(s, r);
        let mut st = Style::default();
        if shown {
            st = st
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD | Modifier::REVERSED);
        }
        spans.push(Span::styled(
            if i < 10 {
                format!("{i} ")
            } else {
                String::new()
            },
            dim(),
        ));
        spans.push(Span::styled(name(r), st));
        spans.push(Span::raw(" "));
        spans.push(Span::styled(m, ms));
    }
    spans.push(Span::styled("  ctrl-t next", dim()));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
