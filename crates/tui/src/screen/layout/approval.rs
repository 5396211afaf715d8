//! The approval modal laid out at a width: a body that may scroll (who waits, the calls, the
//! selected call's input) and a footer that never does (the reason being typed and the key
//! hints), so both stay on screen however long a command is. Plain data in, lines out: the
//! view draws them, the update measures how far the body scrolls.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;

use crate::screen::wrap::{Seg, wrap};

/// Widest the modal gets (columns, borders included).
pub const MAX_WIDTH: u16 = 90;

/// One call waiting on the user, as the modal shows it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The thread it belongs to, when the calls are not all one thread's.
    pub whose: Option<String>,
    /// `tool bash`, `custom tool deploy`; None when the call's card isn't loaded.
    pub kind: Option<String>,
    /// One line saying what it does (the command, the path).
    pub summary: String,
    /// The whole input, pretty-printed.
    pub input: String,
    /// The id, shown when nothing else is known.
    pub id: String,
}

/// What is on the modal besides the calls.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub title_owner: Option<&'a str>,
    pub selected: usize,
    pub draft: Option<&'a str>,
    /// The selected call is a custom tool (it wants a result, not an approval).
    pub custom: bool,
    /// The custom tool result being typed is an error.
    pub error: bool,
}

#[derive(Debug, Default)]
pub struct Modal {
    pub title: String,
    pub body: Vec<Line<'static>>,
    pub footer: Vec<Line<'static>>,
    pub width: u16,
    /// Rows the whole modal takes (borders included), at most the screen's.
    pub height: u16,
    /// Body rows that don't fit: how far it scrolls.
    pub max_scroll: u16,
}

fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

fn hint() -> Style {
    Style::default().fg(Color::Cyan)
}

/// The modal for a screen of `width` × `height`.
pub fn modal(calls: &[Call], ask: Ask<'_>, width: u16, height: u16) -> Modal {
    let w = MAX_WIDTH.min(width);
    let inner = usize::from(w.saturating_sub(2)).max(1);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut body = wrap(
        &[(
            format!(
                " {} is waiting for you ({} call{}):",
                ask.title_owner
                    .map_or("The agent".to_string(), |o| format!("Thread {o}")),
                calls.len(),
                if calls.len() == 1 { "" } else { "s" }
            ),
            bold,
        )],
        inner,
        &[],
        &[(" ".into(), Style::default())],
    );
    body.push(Line::default());
    let indent: Vec<Seg> = vec![("    ".into(), Style::default())];
    for (n, c) in calls.iter().enumerate() {
        let mark = if n == ask.selected { "▶ " } else { "  " };
        let first: Vec<Seg> = vec![(mark.into(), Style::default().fg(Color::Yellow))];
        let mut segs: Vec<Seg> = Vec::new();
        if let Some(o) = &c.whose {
            segs.push((format!("{o} › "), Style::default().fg(Color::Cyan)));
        }
        match &c.kind {
            // The selected call's whole input follows: no one-line summary of it.
            Some(kind) if n == ask.selected => segs.push((kind.clone(), bold)),
            Some(kind) => {
                segs.push((format!("{kind} "), bold));
                segs.push((c.summary.clone(), Style::default()));
            }
            None => segs.push((format!("event {}", c.id), Style::default())),
        }
        body.extend(wrap(&segs, inner, &first, &indent));
        if n == ask.selected && c.kind.is_some() {
            for l in c.input.lines() {
                body.extend(wrap(&[(l.to_string(), dim())], inner, &indent, &indent));
            }
        }
    }

    let (prompt, send) = match (ask.custom, ask.error) {
        (false, _) => (" Why deny? (optional, the model reads it): ", "enter deny"),
        (true, false) => (" The tool's result (the model reads it): ", "enter send"),
        (true, true) => (" The tool's error (the model reads it): ", "enter send"),
    };
    let footer_with = |scrolls: bool| {
        let mut footer = vec![Line::default()];
        let more = if scrolls { " · pgup/pgdn scroll" } else { "" };
        let keys = match ask.draft {
            Some(draft) => {
                footer.extend(wrap(
                    &[
                        (prompt.into(), bold),
                        (format!("{draft}▏"), Style::default()),
                    ],
                    inner,
                    &[],
                    &[(" ".into(), Style::default())],
                ));
                format!(" {send} · esc back{more}")
            }
            None if ask.custom => format!(
                " y answer · n answer with an error · ↑/↓ choose{more} · esc answer later (ctrl-a reopens)"
            ),
            None => {
                format!(" y allow · n deny · ↑/↓ choose{more} · esc answer later (ctrl-a reopens)")
            }
        };
        footer.extend(wrap(&[(keys, hint())], inner, &[], &[(" ".into(), hint())]));
        footer
    };
    let rows = |footer: &[Line<'static>]| body.len() + footer.len() + 2;
    let mut footer = footer_with(false);
    let screen = usize::from(height);
    if rows(&footer) > screen {
        footer = footer_with(true);
    }
    let total = rows(&footer);
    let modal_h = total.min(screen);
    let body_room = modal_h.saturating_sub(footer.len() + 2);
    let max_scroll = body.len().saturating_sub(body_room);
    Modal {
        title: match ask.title_owner {
            Some(o) => format!(" approval needed · {o} "),
            None => " approval needed ".to_string(),
        },
        body,
        footer,
        width: w,
        height: u16::try_from(modal_h).unwrap_or(height),
        max_scroll: u16::try_from(max_scroll).unwrap_or(u16::MAX),
    }
}
