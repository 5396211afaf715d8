//! One transcript item → its lines at a width (pure; `Layouts` in mod.rs caches the result).

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use crate::render::tool_summary;
use crate::screen::markdown::{self, CodeBlock};
use crate::screen::transcript::{Body, Item, ThreadCard, ThreadCardKind, ToolCard, secs};
use crate::screen::wrap::{Seg, hard_wrap, wrap};
use tether_proto::ToolStatus;

/// Output rows a collapsed bash card shows.
pub const COLLAPSED_OUTPUT: usize = 5;
/// Diff rows a collapsed write/edit card shows.
pub const COLLAPSED_DIFF: usize = 12;

fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

/// [`render`], with the code blocks of an assistant message (row ranges in the item's lines).
pub fn render_blocks(item: &Item, width: usize) -> (Vec<Line<'static>>, Vec<CodeBlock>) {
    render_as(item, item.expanded, width)
}

/// The item with every part shown, however it is shown on screen (for the pager).
pub fn render_expanded(item: &Item, width: usize) -> Vec<Line<'static>> {
    render_as(item, true, width).0
}

fn render_as(item: &Item, expanded: bool, width: usize) -> (Vec<Line<'static>>, Vec<CodeBlock>) {
    let width = width.max(10);
    let mut blocks = Vec::new();
    let mut out = match &item.body {
        Body::User(text) => {
            let bar = vec![("┃ ".to_string(), Style::default().fg(Color::Blue))];
            let mut out = Vec::new();
            for line in text.lines() {
                let segs = vec![(
                    line.to_string(),
                    Style::default().add_modifier(Modifier::BOLD),
                )];
                out.extend(wrap(&segs, width, &bar, &bar));
            }
            if out.is_empty() {
                out.push(Line::from(Span::styled(
                    "┃ ",
                    Style::default().fg(Color::Blue),
                )));
            }
            out
        }
        Body::Assistant { text, live } => {
            if text.is_empty() {
                return (Vec::new(), Vec::new());
            }
            let (lines, b) = markdown::render_blocks(text, width - 2);
            blocks = b;
            let mut out: Vec<Line<'static>> = lines
                .into_iter()
                .map(|mut l| {
                    l.spans.insert(0, Span::raw("  "));
                    l
                })
                .collect();
            if *live {
                out.push(Line::from(Span::styled("  ▌", dim())));
            }
            out
        }
        Body::Thinking { text, live } => {
            let style = dim().add_modifier(Modifier::ITALIC);
            if text.is_empty() {
                return (Vec::new(), Vec::new());
            }
            let n = text.lines().count();
            if expanded {
                let mut out = vec![Line::styled("✻ thinking", style)];
                for line in text.lines() {
                    let g = vec![("  ".to_string(), style)];
                    out.extend(wrap(&[(line.to_string(), style)], width, &g, &g));
                }
                out
            } else {
                let head = if *live {
                    "✻ thinking…"
                } else {
                    "✻ thought"
                };
                vec![Line::styled(
                    format!(
                        "{head} ({n} line{}, ctrl-e expands)",
                        if n == 1 { "" } else { "s" }
                    ),
                    style,
                )]
            }
        }
        Body::Tool(card) => tool(card, expanded, width),
        Body::Error(text) => {
            let st = Style::default().fg(Color::Red);
            let first = vec![("⚠ ".to_string(), st.add_modifier(Modifier::BOLD))];
            let rest = vec![("  ".to_string(), st)];
            wrap(&[(text.clone(), st)], width, &first, &rest)
        }
        // A line break in a marker starts a row (an authorization URL gets rows of its own).
        Body::Marker(text) => text
            .split('\n')
            .flat_map(|l| wrap(&[(l.to_string(), dim())], width, &[], &[]))
            .collect(),
        Body::Outcome(spec) => super::outcome::outcome(spec, expanded, width),
        Body::Thread(card) => thread_card(card, expanded, width),
        Body::Evaluation(card) => super::outcome::evaluation(card, expanded, width),
    };
    out.push(Line::default());
    (out, blocks)
}

fn tool(card: &ToolCard, expanded: bool, width: usize) -> Vec<Line<'static>> {
    let running = card.result.is_none();
    let (dot_style, status) = match &card.result {
        None if card.custom => (
            Style::default().fg(Color::Magenta),
            "waiting for the client".to_string(),
        ),
        None if card.asks => (
            Style::default().fg(Color::Magenta),
            "waiting for approval".to_string(),
        ),
        // A child's call, answered: it runs (and ends) in the child's own stream.
        None if card.thread.is_some() => (
            dim(),
            format!(
                "answered · continues in {}",
                crate::screen::threads::short_name(card.thread.as_deref().unwrap_or_default())
            ),
        ),
        None => (Style::default().fg(Color::Yellow), "running…".to_string()),
        Some(r) => {
            let mut parts = Vec::new();
            match r.status {
                Some(ToolStatus::Timeout) => parts.push("timed out".to_string()),
                Some(ToolStatus::Interrupted) => parts.push("interrupted".to_string()),
                Some(ToolStatus::Denied) => parts.push("denied".to_string()),
                _ => {}
            }
            if let Some(code) = r.exit_code {
                parts.push(format!("exit {code}"));
            } else if r.is_error && parts.is_empty() {
                parts.push("error".to_string());
            }
            if let Some(ms) = r.duration_ms {
                parts.push(secs(ms));
            }
            let ok = !r.is_error && matches!(r.status, None | Some(ToolStatus::Ok));
            let style = if ok {
                Style::default().fg(Color::Green)
            } else {
                Style::default().fg(Color::Red)
            };
            (
                style,
                format!("{} {}", if ok { "✓" } else { "✗" }, parts.join(" · ")),
            )
        }
    };
    let name = if card.name.is_empty() {
        "tool"
    } else {
        card.name.as_str()
    };
    let summary = if card.input.is_null() {
        String::new()
    } else {
        tool_summary(name, &card.input)
    };
    let output = card
        .result
        .as_ref()
        .map(|r| r.text.as_str())
        .unwrap_or(card.live.as_str());
    let mut header_segs: Vec<Seg> = Vec::new();
    // A child thread's call, cross-posted to the primary's transcript: whose it is.
    if let Some(t) = &card.thread {
        header_segs.push((
            format!("{} › ", crate::screen::threads::short_name(t)),
            Style::default().fg(Color::Cyan),
        ));
    }
    header_segs.extend([
        (
            format!("{name} "),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        (summary, Style::default()),
        (format!("  {status}"), dot_style),
    ]);
    let mut out = wrap(
        &header_segs,
        width,
        &[("⏺ ".to_string(), dot_style)],
        &[("  ".to_string(), Style::default())],
    );
    let gutter = vec![("  │ ".to_string(), dim())];
    let hint = |n: usize| Line::styled(format!("  … +{n} lines (ctrl-e expands)"), dim());
    match name {
        "read" | "glob" | "grep" => {
            if let Some(last) = out.last_mut() {
                let n = output.lines().count();
                if card.result.is_some() {
                    last.spans.push(Span::styled(
                        format!(" · {n} line{}", if n == 1 { "" } else { "s" }),
                        dim(),
                    ));
                }
            }
            if expanded {
                for line in output.lines() {
                    out.extend(hard_wrap(line, Style::default(), width, &gutter));
                }
            }
        }
        "write" | "edit" => {
            let diff = diff_lines(name, &card.input, edit_line(output));
            let added = diff.iter().filter(|d| d.0 == '+').count();
            let removed = diff.iter().filter(|d| d.0 == '-').count();
            if let Some(last) = out.last_mut() {
                last.spans.push(Span::styled(
                    format!(" +{added}"),
                    Style::default().fg(Color::Green),
                ));
                if name == "edit" {
                    last.spans.push(Span::styled(
                        format!(" −{removed}"),
                        Style::default().fg(Color::Red),
                    ));
                }
            }
            let total = diff.len();
            let shown = if expanded {
                total
            } else {
                total.min(COLLAPSED_DIFF)
            };
            let numbers = diff.iter().filter_map(|d| d.1).max().unwrap_or(0);
            let num_w = if numbers > 0 {
                numbers.to_string().len()
            } else {
                0
            };
            for (sign, line_no, text) in diff.into_iter().take(shown) {
                let st = match sign {
                    '+' => Style::default().fg(Color::Green),
                    '-' => Style::default().fg(Color::Red),
                    _ => dim(),
                };
                let mut g = vec![("  ".to_string(), st)];
                if num_w > 0 {
                    let n = line_no.map_or(String::new(), |n| n.to_string());
                    g.push((format!("{n:>num_w$} "), dim()));
                }
                g.push((format!("{sign} "), st));
                out.extend(hard_wrap(&text, st, width, &g));
            }
            if shown < total {
                out.push(hint(total - shown));
            }
            if card.result.as_ref().is_some_and(|r| r.is_error) {
                for line in output.lines() {
                    out.extend(hard_wrap(
                        line,
                        Style::default().fg(Color::Red),
                        width,
                        &gutter,
                    ));
                }
            }
        }
        _ => {
            let lines: Vec<&str> = output.lines().collect();
            let total = lines.len();
            let style = if card.result.as_ref().is_some_and(|r| r.is_error) {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            };
            if expanded || total <= COLLAPSED_OUTPUT + 1 {
                for line in &lines {
                    out.extend(hard_wrap(line, style, width, &gutter));
                }
            } else if running {
                // While it runs, the newest lines matter.
                out.push(Line::styled(
                    format!("  … {} earlier lines", total - COLLAPSED_OUTPUT),
                    dim(),
                ));
                for line in &lines[total - COLLAPSED_OUTPUT..] {
                    out.extend(hard_wrap(line, style, width, &gutter));
                }
            } else {
                for line in &lines[..COLLAPSED_OUTPUT] {
                    out.extend(hard_wrap(line, style, width, &gutter));
                }
                out.push(hint(total - COLLAPSED_OUTPUT));
            }
        }
    }
    out
}

/// A thread's start, or a message between threads: one line (the message's first, cut to
/// the width) until expanded, then the whole message under it.
fn thread_card(card: &ThreadCard, expanded: bool, width: usize) -> Vec<Line<'static>> {
    let accent = Style::default().fg(Color::Cyan);
    let name = crate::screen::threads::short_name(&card.agent).to_string();
    let (mark, head) = match &card.kind {
        ThreadCardKind::Started { model } => {
            let on = model
                .as_deref()
                .map(|m| format!(" on {}", crate::screen::view::short_model(m)))
                .unwrap_or_default();
            return wrap(
                &[
                    (name, accent.add_modifier(Modifier::BOLD)),
                    (
                        if card.agent == tether_proto::multiagent::ADVISOR_NAME {
                            format!(" consulted{on}")
                        } else {
                            format!(" started{on}")
                        },
                        dim(),
                    ),
                ],
                width,
                &[("⑂ ".to_string(), accent)],
                &[("  ".to_string(), Style::default())],
            );
        }
        ThreadCardKind::Sent => ("→ ", name),
        ThreadCardKind::Received => ("← ", name),
    };
    let lines: Vec<&str> = card.text.lines().collect();
    let first = lines.first().copied().unwrap_or("");
    let mut segs = vec![(format!("{head}: "), accent.add_modifier(Modifier::BOLD))];
    if expanded {
        let mut out = wrap(&segs, width, &[(mark.to_string(), accent)], &[]);
        let gutter = vec![("  │ ".to_string(), dim())];
        for l in &lines {
            out.extend(hard_wrap(l, Style::default(), width, &gutter));
        }
        return out;
    }
    let more = lines.len().saturating_sub(1);
    let tail = if more > 0 {
        format!(
            " (+{more} line{}, ctrl-e)",
            if more == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    let used = unicode_width::UnicodeWidthStr::width(format!("{mark}{head}: {tail}").as_str());
    segs.push((cut(first, width.saturating_sub(used)), Style::default()));
    segs.push((tail, dim()));
    vec![Line::from(
        std::iter::once(Span::styled(mark.to_string(), accent))
            .chain(segs.into_iter().map(|(t, st)| Span::styled(t, st)))
            .collect::<Vec<_>>(),
    )]
}

/// `text` cut to `max` columns, the cut marked with `…`.
fn cut(text: &str, max: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    if unicode_width::UnicodeWidthStr::width(text) <= max {
        return text.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in text.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > max {
            break;
        }
        w += cw;
        out.push(c);
    }
    out.push('…');
    out
}

/// Where an edit landed, from tetherd's result (`… at line 42`, `… the first at line 42`).
fn edit_line(result: &str) -> Option<usize> {
    let at = result.find("at line ")? + "at line ".len();
    let digits: String = result[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|n| *n > 0)
}

/// The change a write or edit makes, as diff rows (sign, line number, text). A write is the
/// whole file, numbered from 1; an edit's lines that old and new share at either end are shown
/// as context (` `), the rest as removed and added, numbered from `start` (the line the
/// result says it landed on: removed lines by the old file, added and trailing context by
/// the new) and unnumbered while the result isn't in.
fn diff_lines(
    name: &str,
    input: &serde_json::Value,
    start: Option<usize>,
) -> Vec<(char, Option<usize>, String)> {
    let field = |k: &str| input.get(k).and_then(|v| v.as_str()).unwrap_or("");
    if name == "write" {
        return field("content")
            .lines()
            .enumerate()
            .map(|(i, l)| ('+', Some(i + 1), l.to_string()))
            .collect();
    }
    let old: Vec<&str> = field("old_string").lines().collect();
    let new: Vec<&str> = field("new_string").lines().collect();
    let head = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let tail = old[head..]
        .iter()
        .rev()
        .zip(new[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let at = |i: usize| start.map(|s| s + i);
    let mut out = Vec::new();
    let rows = |sign: char, lines: &[&str], from: usize| {
        lines
            .iter()
            .enumerate()
            .map(move |(i, l)| (sign, at(from + i), l.to_string()))
            .collect::<Vec<_>>()
    };
    out.extend(rows(' ', &old[..head], 0));
    out.extend(rows('-', &old[head..old.len() - tail], head));
    out.extend(rows('+', &new[head..new.len() - tail], head));
    // After the added lines, context reads as the file now is.
    out.extend(rows(' ', &new[new.len() - tail..], new.len() - tail));
    out
}
