//! The MCP elicitation prompt (issue 25): who asks (the server, and the agent when a child
//! thread's server asks), the message, one row per field of its requested schema (the
//! focused one marked) or, in URL mode, the link to open in full, what to press, and why
//! enter did not send when a field does not fit.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use tether_proto::elicitation::FieldKind;

use super::dim;
use crate::screen::app::State;
use crate::screen::app::elicit::{Form, Input};
use crate::screen::wrap::wrap;

pub fn draw(f: &mut Frame<'_>, s: &State, id: &str, form: &Form, area: Rect) {
    let Some(asked) = s.elicitations.get(id) else {
        return;
    };
    // A link gets the screen's width, so as much of it as fits is on one line to copy.
    let width = if asked.url.is_some() {
        area.width.saturating_sub(4).max(76.min(area.width))
    } else {
        76.min(area.width)
    };
    let inner = usize::from(width.saturating_sub(2)).max(1);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let pad = [(" ".to_string(), Style::default())];
    // A child thread's question says which agent's server asks.
    let who = match &asked.agent {
        Some(agent) => vec![
            (" ".into(), Style::default()),
            (agent.clone(), bold.fg(Color::Cyan)),
            ("'s MCP server ".into(), Style::default()),
        ],
        None => vec![(" The MCP server ".into(), Style::default())],
    };
    let mut header = who;
    header.push((asked.server.clone(), bold));
    header.push((" asks:".into(), Style::default()));
    let mut lines = wrap(&header, inner, &[], &pad);
    lines.extend(wrap(
        &[(asked.message.clone(), bold.fg(Color::Magenta))],
        inner,
        &[("   ".into(), Style::default())],
        &[("   ".into(), Style::default())],
    ));
    lines.push(ratatui::text::Line::default());
    if let Some(url) = &asked.url {
        url_lines(&mut lines, url, inner);
    }
    for (i, (field, input)) in form.fields.iter().zip(&form.inputs).enumerate() {
        let focused = i == form.focus;
        let mark = if focused { " ▶ " } else { "   " };
        let label = format!("{}{}: ", field.title, if field.required { "*" } else { "" });
        let value = match (input, &field.kind) {
            (Input::Bool(b), _) => (if *b { "[x] yes" } else { "[ ] no" }).to_string(),
            (Input::Choice(c), FieldKind::Enum(options)) => {
                let shown: Vec<String> = options
                    .iter()
                    .enumerate()
                    .map(|(j, (_, title))| {
                        if Some(j) == *c {
                            format!("[{title}]")
                        } else {
                            title.clone()
                        }
                    })
                    .collect();
                shown.join("  ")
            }
            (Input::Choice(_), _) => String::new(),
            (Input::Text(t), _) if focused => format!("{t}▏"),
            (Input::Text(t), FieldKind::Integer | FieldKind::Number) if t.is_empty() => {
                "(a number)".into()
            }
            (Input::Text(t), _) => t.clone(),
        };
        let style = if focused {
            Style::default().fg(Color::Yellow)
        } else {
            Style::default()
        };
        lines.extend(wrap(
            &[(label, bold), (value, style)],
            inner,
            &[(mark.into(), Style::default().fg(Color::Yellow))],
            &[("     ".into(), Style::default())],
        ));
        if focused && let Some(d) = &field.description {
            lines.extend(wrap(
                &[(d.clone(), dim())],
                inner,
                &[("     ".into(), Style::default())],
                &[("     ".into(), Style::default())],
            ));
        }
    }
    if let Some(why) = &form.error {
        lines.push(ratatui::text::Line::default());
        lines.extend(wrap(
            &[(why.clone(), Style::default().fg(Color::Red))],
            inner,
            &pad,
            &pad,
        ));
    }
    lines.push(ratatui::text::Line::default());
    let keys = if asked.url.is_some() {
        "enter I opened it (accept) · ctrl-d decline · ctrl-x cancel · esc later (ctrl-a)"
    } else {
        "tab next field · space/←→ choose · enter accept · ctrl-d decline · ctrl-x cancel · esc later (ctrl-a)"
    };
    // Broken between keys, never inside one ("ctrl-x" / "cancel").
    for line in key_lines(keys, inner.saturating_sub(1)) {
        lines.extend(wrap(
            &[(line, Style::default().fg(Color::Cyan))],
            inner,
            &pad,
            &pad,
        ));
    }
    let title = match &asked.agent {
        Some(agent) => format!(" MCP question · {agent} · {} ", asked.server),
        None => format!(" MCP question · {} ", asked.server),
    };
    super::draw_prompt(f, area, width, title, lines);
}

/// `keys` (`a · b · c`) in lines of at most `width` characters, each a run of whole keys.
fn key_lines(keys: &str, width: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in keys.split(" · ") {
        match out.last_mut() {
            Some(line) if line.chars().count() + 3 + key.chars().count() <= width => {
                line.push_str(" · ");
                line.push_str(key);
            }
            _ => out.push(key.to_string()),
        }
    }
    out
}

/// URL mode: the link in full on lines of its own (no indent, cut at the width, never
/// shortened, so what is shown is what would be opened), its host spelled out, and that
/// tether does not open it.
fn url_lines(lines: &mut Vec<ratatui::text::Line<'static>>, url: &str, inner: usize) {
    let pad = [(" ".to_string(), Style::default())];
    lines.extend(wrap(
        &[(
            "Open this link in your browser yourself (tether never opens links):".into(),
            dim(),
        )],
        inner,
        &pad,
        &pad,
    ));
    let chars: Vec<char> = url.chars().collect();
    for chunk in chars.chunks(inner.max(1)) {
        lines.push(ratatui::text::Line::styled(
            chunk.iter().collect::<String>(),
            Style::default()
                .fg(Color::Blue)
                .add_modifier(Modifier::UNDERLINED),
        ));
    }
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .unwrap_or_default();
    lines.extend(wrap(
        &[
            ("host: ".into(), dim()),
            (
                host.to_string(),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ],
        inner,
        &pad,
        &pad,
    ));
}
