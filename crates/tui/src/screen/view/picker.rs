//! The session picker's frame.

use std::time::SystemTime;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use tether_proto::{SessionInfo, SessionStatus, StopReason};

use super::SPINNER;
use crate::render::stop_reason_text;
use crate::screen::picker::{Group, HostState, NewSession, Peek, Picker};

fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

/// "3m ago" from an RFC 3339 time.
pub fn ago(t: &str, now: Option<SystemTime>) -> String {
    let (Some(now), Ok(then)) = (now, humantime::parse_rfc3339_weak(t)) else {
        return t.get(..16).unwrap_or(t).replace('T', " ");
    };
    let s = now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// "in 4h 12m" until an RFC 3339 time ("due" once it has passed).
pub fn until(t: &str, now: Option<SystemTime>) -> String {
    let (Some(now), Ok(then)) = (now, humantime::parse_rfc3339_weak(t)) else {
        return t.get(..16).unwrap_or(t).replace('T', " ");
    };
    let s = then.duration_since(now).map(|d| d.as_secs()).unwrap_or(0);
    match s {
        0 => "due".into(),
        1..60 => format!("in {s}s"),
        60..3600 => format!("in {}m", s / 60),
        3600..86400 => format!("in {}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("in {}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// "08:30 UTC" for a time within a day, else "11-26 08:30 UTC" (times are UTC on the wire).
fn clock(t: &str, now: Option<SystemTime>) -> String {
    let hm = t.get(11..16).unwrap_or(t);
    let soon = matches!(
        (now, humantime::parse_rfc3339_weak(t)),
        (Some(now), Ok(then)) if then.duration_since(now).is_ok_and(|d| d.as_secs() < 86_400)
    );
    match t.get(5..10) {
        Some(md) if !soon => format!("{md} {hm} UTC"),
        _ => format!("{hm} UTC"),
    }
}

/// The most this view shows of the schedules; `tether deployments ls` has the rest.
const SCHEDULED_SHOWN: usize = 3;

/// "Scheduled": the deployments that fire by themselves, soonest first, with their next
/// fire time and schedule (or why they are paused). Nothing when there are none.
fn scheduled_lines(p: &Picker, width: u16) -> Vec<Line<'static>> {
    let all = p.scheduled();
    if all.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![Line::styled(
        format!(" Scheduled ({})", all.len()),
        Style::default()
            .fg(Color::Blue)
            .add_modifier(Modifier::BOLD),
    )];
    let max = width.saturating_sub(2) as usize;
    for (d, next) in all.iter().take(SCHEDULED_SHOWN) {
        let when = match (&d.paused_reason, next) {
            (Some(tether_proto::deployment::PausedReason::Manual), _) => "paused".into(),
            (Some(tether_proto::deployment::PausedReason::Error { error }), _) => {
                format!("paused after {}", error.kind)
            }
            (None, Some(t)) => format!("next {} ({})", until(t, p.now), clock(t, p.now)),
            (None, None) => "no upcoming fire".into(),
        };
        let what = d
            .schedule
            .as_ref()
            .map_or(String::new(), |s| match s.kind.as_str() {
                "cron" => format!(
                    "cron {}{}",
                    s.expression.as_deref().unwrap_or(""),
                    s.timezone
                        .as_deref()
                        .map(|z| format!(" {z}"))
                        .unwrap_or_default()
                ),
                other => other.to_string(),
            });
        let icon = if d.paused_reason.is_some() {
            "⏸"
        } else {
            "⏱"
        };
        let text = format!("  {icon} {:<16} {when} · {what}", clip(&d.name, 16));
        lines.push(Line::styled(clip(&text, max), dim()));
    }
    if all.len() > SCHEDULED_SHOWN {
        lines.push(Line::styled(
            format!(
                "  +{} more · tether deployments ls",
                all.len() - SCHEDULED_SHOWN
            ),
            dim(),
        ));
    }
    lines
}

fn status(s: &SessionInfo, spinner: usize) -> (String, Style) {
    match (s.status, &s.stop_reason) {
        (SessionStatus::Running, _) => (
            format!("{} running", SPINNER[spinner % SPINNER.len()]),
            Style::default().fg(Color::Yellow),
        ),
        (SessionStatus::Rescheduling, _) => {
            ("↻ rescheduling".into(), Style::default().fg(Color::Yellow))
        }
        (SessionStatus::Idle, Some(StopReason::RequiresAction { .. })) => (
            "⏸ requires action".into(),
            Style::default().fg(Color::Magenta),
        ),
        (SessionStatus::Idle, Some(r)) if !r.is_success() => (
            format!("✗ {}", stop_reason_text(r)),
            Style::default().fg(Color::Red),
        ),
        (SessionStatus::Idle, _) => ("○ idle".into(), Style::default().fg(Color::Green)),
        (SessionStatus::Terminated, _) => ("■ terminated".into(), Style::default().fg(Color::Red)),
    }
}

/// One line per remote that cannot be reached (it retries by itself).
fn down_hosts(p: &Picker) -> Vec<Line<'static>> {
    p.remotes
        .iter()
        .filter_map(|h| match &h.state {
            HostState::Down(why) => Some(Line::styled(
                format!(" {} ✗ unreachable (retrying): {why}", h.name),
                Style::default().fg(Color::Red),
            )),
            HostState::Connecting => Some(Line::styled(format!(" {} connecting…", h.name), dim())),
            HostState::Up(_) => None,
        })
        .collect()
}

/// The peek panel: the last thing the session said, what it waits on, and your reply.
fn peek_lines(peek: &Peek, width: u16) -> Vec<Line<'static>> {
    let w = usize::from(width.saturating_sub(4)).max(10);
    let mut lines = vec![Line::styled(
        format!(
            " ─ {} ─ type a reply · enter sends (empty: attach) · ctrl-y approves · esc closes",
            peek.label
        ),
        Style::default()
            .fg(Color::Cyan)
            .add_modifier(Modifier::BOLD),
    )];
    match &peek.found {
        None => lines.push(Line::styled("   looking…", dim())),
        Some(Err(e)) => lines.push(Line::styled(
            format!("   {e}"),
            Style::default().fg(Color::Red),
        )),
        Some(Ok(found)) => {
            let said = found
                .last_message
                .as_deref()
                .unwrap_or("(no message yet)")
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>();
            // The end of what it said is what matters: the question is usually last.
            for l in said.iter().skip(said.len().saturating_sub(3)) {
                lines.push(Line::raw(format!("   {}", clip(l, w))));
            }
            for call in &found.pending {
                lines.push(Line::styled(
                    format!("   ⏸ waits on {}", clip(call, w.saturating_sub(12))),
                    Style::default().fg(Color::Magenta),
                ));
            }
        }
    }
    lines.push(Line::from(vec![
        Span::styled(" ▶ reply  ", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(peek.reply.clone()),
        Span::styled("▏", dim()),
    ]));
    lines
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn group_color(g: Group) -> Color {
    match g {
        Group::NeedsInput => Color::Magenta,
        Group::Working => Color::Yellow,
        Group::Done => Color::Green,
        Group::Failed => Color::Red,
        Group::Idle => Color::Gray,
    }
}

pub fn draw(f: &mut Frame<'_>, p: &Picker) {
    let down = down_hosts(p);
    let peek = p.peek.as_ref().map(|pk| peek_lines(pk, f.area().width));
    // Schedules give way to the peek on a short screen.
    let scheduled = if peek.is_none() || f.area().height >= 30 {
        scheduled_lines(p, f.area().width)
    } else {
        Vec::new()
    };
    let [title, filter, hosts, body, sched_area, peek_area, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(if p.creating.is_some() {
            NewSession::LABELS.len() as u16 + 2
        } else {
            2
        }),
        Constraint::Length(down.len() as u16),
        Constraint::Min(1),
        Constraint::Length(scheduled.len() as u16),
        Constraint::Length(peek.as_ref().map_or(0, |l| l.len() as u16)),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(down), hosts);
    f.render_widget(Paragraph::new(scheduled), sched_area);
    if let Some(lines) = peek {
        f.render_widget(Paragraph::new(lines), peek_area);
    }
    let visible = p.visible();
    let needs_you = p.needs_you();
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                " tether ",
                Style::default()
                    .fg(Color::Black)
                    .bg(Color::Cyan)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!(
                    "  {} session{}{}",
                    visible.len(),
                    if visible.len() == 1 { "" } else { "s" },
                    if p.remotes.is_empty() {
                        String::new()
                    } else {
                        format!(" on {} hosts", p.remotes.len() + 1)
                    }
                ),
                dim(),
            ),
            // What needs you, at a glance (and in the terminal title).
            Span::styled(
                if needs_you > 0 {
                    format!(
                        "  ● {needs_you} need{} you",
                        if needs_you == 1 { "s" } else { "" }
                    )
                } else {
                    String::new()
                },
                Style::default()
                    .fg(Color::Magenta)
                    .add_modifier(Modifier::BOLD),
            ),
        ])),
        title,
    );
    let filter_lines = match &p.creating {
        Some(form) => {
            let mut lines = vec![Line::styled(
                " new session — tab next field · enter creates · esc cancels (empty = default)",
                Style::default().fg(Color::Yellow),
            )];
            for (i, label) in NewSession::LABELS.iter().enumerate() {
                let active = i == form.field;
                lines.push(Line::from(vec![
                    Span::styled(
                        format!(" {} {label:<10}", if active { "▶" } else { " " }),
                        if active {
                            Style::default().add_modifier(Modifier::BOLD)
                        } else {
                            dim()
                        },
                    ),
                    Span::raw(form.value(i).to_string()),
                    Span::styled(if active { "▏" } else { "" }, dim()),
                ]));
            }
            lines
        }
        None if p.renaming.is_some() => {
            let r = p
                .renaming
                .as_ref()
                .map(|r| (r.from.as_str(), r.name.as_str()));
            let (from, name) = r.unwrap_or_default();
            vec![
                Line::styled(
                    format!(" rename {from} — enter saves · esc cancels"),
                    Style::default().fg(Color::Yellow),
                ),
                Line::from(vec![
                    Span::styled(
                        " ▶ new name  ",
                        Style::default().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(name.to_string()),
                    Span::styled("▏", dim()),
                ]),
            ]
        }
        None if p.filter.is_empty() => vec![Line::styled(" type to filter", dim())],
        None => vec![Line::from(vec![
            Span::styled(" filter: ", dim()),
            Span::raw(p.filter.clone()),
            Span::styled("▏", dim()),
        ])],
    };
    f.render_widget(Paragraph::new(filter_lines), filter);

    if visible.is_empty() {
        let msg = if !p.loaded {
            "loading sessions…"
        } else if p.sessions.is_empty() {
            "No sessions yet. Press enter (or ctrl-n) to start one."
        } else {
            "No session matches the filter (esc clears it)."
        };
        f.render_widget(
            Paragraph::new(Line::styled(format!("  {msg}"), dim())),
            body,
        );
    } else {
        // Narrow terminals drop the token counts (the cost says more) for a readable model.
        let wide = body.width >= 100;
        let fleet = !p.remotes.is_empty();
        // Column 0 is HOST, shown only with remotes.
        // Narrow: no token counts (the cost says more); with hosts, no clients column either,
        // so names stay readable.
        let keep =
            |col: usize| (fleet || col != 0) && (wide || col != 5) && (wide || !fleet || col != 7);
        let header = Row::new(
            [
                "HOST",
                "NAME",
                "AGENT · MODEL",
                "STATUS",
                "ACTIVITY",
                "TOKENS",
                "COST",
                "CLIENTS",
            ]
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(_, h)| h),
        )
        .style(dim().add_modifier(Modifier::BOLD));
        let columns: Vec<Constraint> = [
            Constraint::Length(9),
            Constraint::Fill(if wide { 3 } else { 2 }),
            Constraint::Fill(if wide { 2 } else { 3 }),
            Constraint::Length(19),
            Constraint::Length(9),
            Constraint::Length(11),
            Constraint::Length(7),
            Constraint::Length(7),
        ]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, c)| c)
        .collect();
        // The width each kept column gets, as the table lays them out, so a name or model too
        // long for its column ends in `…` instead of just stopping.
        let laid_out = Layout::horizontal(columns.clone()).spacing(1).split(body);
        let width_of = |col: usize| {
            let kept = (0..col).filter(|i| keep(*i)).count();
            laid_out
                .get(kept)
                .map_or(usize::MAX, |r| usize::from(r.width))
        };
        // Where each row goes: a group's heading (an empty row, written over it full width
        // afterwards: a table cell would cut it to one column) or a session.
        enum Slot {
            Heading(Group, usize),
            Entry(usize),
        }
        let mut slots: Vec<Slot> = Vec::with_capacity(visible.len() + 5);
        let mut selected_row = 0;
        let mut last_group: Option<Group> = None;
        for (i, e) in visible.iter().enumerate() {
            if last_group != Some(e.group) {
                last_group = Some(e.group);
                let n = visible.iter().filter(|o| o.group == e.group).count();
                slots.push(Slot::Heading(e.group, n));
            }
            if i == p.selected {
                selected_row = slots.len();
            }
            slots.push(Slot::Entry(i));
        }
        // Only the rows on screen are built (a fleet lists thousands; building them all cost
        // ~20 ms a frame): the window that keeps the selection in view, as the table would
        // scroll it.
        let capacity = usize::from(body.height.saturating_sub(1)).max(1);
        let offset = (selected_row + 1).saturating_sub(capacity);
        let mut rows: Vec<Row<'_>> = Vec::new();
        let mut headings: Vec<(usize, Group, usize)> = Vec::new();
        for slot in slots.iter().skip(offset).take(capacity) {
            let i = match *slot {
                Slot::Heading(group, n) => {
                    headings.push((rows.len(), group, n));
                    rows.push(Row::new(Vec::<Cell<'_>>::new()));
                    continue;
                }
                Slot::Entry(i) => i,
            };
            let e = &visible[i];
            rows.push({
                let s = e.session;
                let (st, style) = status(s, p.spinner);
                // Tools that run without a sandbox must never look like the others.
                let (st, style) = match s.sandbox.as_deref() {
                    Some("none") => (
                        format!("{st} · UNSANDBOXED"),
                        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                    ),
                    _ => (st, style),
                };
                let name = s
                    .name
                    .clone()
                    .or_else(|| s.title.clone())
                    .unwrap_or_else(|| s.id.clone());
                let name = if s.archived_at.is_some() {
                    format!("{name} (archived)")
                } else {
                    name
                };
                // Fired by a schedule: marked, so a run nobody started by hand stands out.
                let name = match p.deployment_name(e.host, s) {
                    Some(_) => format!("⏱ {name}"),
                    None => name,
                };
                // The family goes without saying in a narrow column.
                let model = super::short_model(&s.model);
                let model = model.strip_prefix("claude-").unwrap_or(model);
                let agent_model = match p.agent_name(s) {
                    Some(agent) => format!("{agent} · {model}"),
                    None => model.to_string(),
                };
                let cells = vec![
                    // Rows sit indented under their group's heading.
                    Cell::from(format!("  {}", e.host)),
                    Cell::from(clip(
                        &if fleet { name } else { format!("  {name}") },
                        width_of(1),
                    )),
                    Cell::from(clip(&agent_model, width_of(2))),
                    Cell::from(Span::styled(st, style)),
                    Cell::from(ago(&s.updated_at, p.now)),
                    Cell::from(format!(
                        "{}/{}",
                        s.usage.tokens.input_tokens + s.usage.tokens.cache_read_input_tokens,
                        s.usage.tokens.output_tokens
                    )),
                    Cell::from(
                        s.usage
                            .tokens
                            .cost_usd
                            .map_or_else(|| "-".to_string(), |c| format!("${c:.2}")),
                    ),
                    Cell::from(if s.attached_clients > 0 {
                        format!("● {}", s.attached_clients)
                    } else {
                        "-".into()
                    }),
                ];
                Row::new(
                    cells
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| keep(*i))
                        .map(|(_, c)| c),
                )
            });
        }
        let table = Table::new(rows, columns)
            .header(header)
            .column_spacing(1)
            .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
        // Scrolls so the selection stays visible in long lists.
        let mut state = TableState::default().with_selected(Some(selected_row - offset));
        f.render_stateful_widget(table, body, &mut state);
        for (row, group, n) in headings {
            let Some(line) = row.checked_sub(state.offset()) else {
                continue;
            };
            // Row 0 of the body is the column header.
            let y = body.y + 1 + line as u16;
            if y >= body.y + body.height {
                break;
            }
            f.render_widget(
                Paragraph::new(Line::styled(
                    format!("{} ({n})", group.label()),
                    Style::default()
                        .fg(group_color(group))
                        .add_modifier(Modifier::BOLD),
                )),
                ratatui::layout::Rect {
                    y,
                    height: 1,
                    ..body
                },
            );
        }
    }
    const LONG: &str = " enter attach · tab peek · ctrl-n new · ctrl-r rename · ctrl-a archive · ctrl-d delete · type to filter · esc quit";
    const SHORT: &str = " enter attach · tab peek · ^n new · ^r rename · ^d delete · esc quit";
    let foot = match &p.notice {
        Some(n) => Line::styled(format!(" {n}"), Style::default().fg(Color::Yellow)),
        // The long hints only where they fit whole (never cut mid-word).
        None if footer.width as usize >= LONG.chars().count() => Line::styled(LONG, dim()),
        None => Line::styled(SHORT, dim()),
    };
    f.render_widget(Paragraph::new(foot), footer);
}
