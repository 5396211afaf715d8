//! The MCP elicitation prompt (issue 25): the server's name and message, one row per field
//! of its requested schema (the focused one marked), what to press, and why enter did not
//! send when a field does not fit.

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
    let width = 76.min(area.width);
    let inner = usize::from(width.saturating_sub(2)).max(1);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let pad = [(" ".to_string(), Style::default())];
    let mut lines = wrap(
        &[
            (" The MCP server ".into(), Style::default()),
            (asked.server.clone(), bold),
            (" asks:".into(), Style::default()),
        ],
        inner,
        &[],
        &pad,
    );
    lines.extend(wrap(
        &[(asked.message.clone(), bold.fg(Color::Magenta))],
        inner,
        &[("   ".into(), Style::default())],
        &[("   ".into(), Style::default())],
    ));
    lines.push(ratatui::text::Line::default());
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
    lines.extend(wrap(
        &[(
            "tab next field · space/←→ choose · enter accept · ctrl-d decline · esc later (ctrl-a)"
                .into(),
            Style::default().fg(Color::Cyan),
        )],
        inner,
        &pad,
        &pad,
    ));
    super::draw_prompt(
        f,
        area,
        width,
        format!(" MCP question · {} ", asked.server),
        lines,
    );
}
