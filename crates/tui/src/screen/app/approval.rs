//! Keys of the approval modal (calls waiting on the user): choose a call, allow or deny it, or
//! type a denial's reason or a custom tool's result.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{Cmd, Effect, Overlay, State};
use crate::render::tool_summary;
use crate::screen::layout::approval::{Ask, Call, Modal, modal};

/// Choosing: move between the calls, answer the selected one, or put the modal away.
pub(super) fn choice_key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    let max_scroll = laid_out(s).map_or(0, |m| m.max_scroll);
    let page = s.height.saturating_sub(8).max(1);
    let Overlay::Approval {
        ids,
        selected,
        scroll,
        ..
    } = &mut s.overlay
    else {
        return Vec::new();
    };
    let id = ids.get(*selected).cloned();
    match k.code {
        KeyCode::Up | KeyCode::Char('k') => {
            *selected = selected.saturating_sub(1);
            *scroll = 0;
        }
        KeyCode::Down | KeyCode::Char('j') => {
            *selected = (*selected + 1).min(ids.len().saturating_sub(1));
            *scroll = 0;
        }
        KeyCode::PageDown | KeyCode::Char(' ') => *scroll = (*scroll + page).min(max_scroll),
        KeyCode::PageUp => *scroll = (*scroll).min(max_scroll).saturating_sub(page),
        KeyCode::Char('a') | KeyCode::Char('y') | KeyCode::Char('d') | KeyCode::Char('n') => {
            let yes = matches!(k.code, KeyCode::Char('a') | KeyCode::Char('y'));
            let Some(id) = id else { return Vec::new() };
            if yes && !is_custom(s, &id) {
                take_call(s, &id);
                return vec![Effect::Net(Cmd::Confirm {
                    tool_use_id: id,
                    allow: true,
                    deny_message: None,
                })];
            }
            // A denial asks why (optional; Enter sends it as it is); a custom tool
            // asks for its result (an error one after `n`).
            if let Overlay::Approval { draft, error, .. } = &mut s.overlay {
                *draft = Some(String::new());
                *error = !yes;
            }
        }
        KeyCode::Esc => {
            s.put_away = std::mem::take(ids);
            s.overlay = Overlay::None;
            s.notice = Some("ctrl-a reopens the approval (or answer with `tether approve`)".into());
        }
        _ => {}
    }
    Vec::new()
}

/// Typing the denial's reason or the custom tool's result: Enter sends it, Esc goes back.
pub(super) fn draft_key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    let Overlay::Approval {
        ids,
        selected,
        draft: Some(draft),
        error,
        ..
    } = &mut s.overlay
    else {
        return Vec::new();
    };
    let error = *error;
    match k.code {
        KeyCode::Enter => {
            let Some(id) = ids.get(*selected).cloned() else {
                return Vec::new();
            };
            let text = draft.trim().to_string();
            take_call(s, &id);
            if is_custom(s, &id) {
                return vec![Effect::Net(Cmd::CustomResult {
                    tool_use_id: id,
                    text,
                    is_error: error,
                })];
            }
            return vec![Effect::Net(Cmd::Confirm {
                tool_use_id: id,
                allow: false,
                deny_message: (!text.is_empty()).then_some(text),
            })];
        }
        // Back to the choice; nothing was sent.
        KeyCode::Esc => {
            if let Overlay::Approval { draft, .. } = &mut s.overlay {
                *draft = None;
            }
        }
        KeyCode::Backspace => {
            draft.pop();
        }
        KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => draft.push(c),
        _ => {}
    }
    Vec::new()
}

/// Takes an answered call off the modal (closed when none is left).
fn take_call(s: &mut State, id: &str) {
    if let Overlay::Approval {
        ids,
        selected,
        draft,
        error,
        scroll,
    } = &mut s.overlay
    {
        ids.retain(|i| i != id);
        *selected = 0;
        *scroll = 0;
        *draft = None;
        *error = false;
        if ids.is_empty() {
            s.overlay = Overlay::None;
        }
    }
}

/// A custom tool call (it wants a result from the client, not an approval).
pub fn is_custom(s: &State, id: &str) -> bool {
    s.tool_card(id).is_some_and(|c| c.custom)
}

/// ctrl-a: the calls put away with Esc, back on the modal (None: nothing is waiting).
pub(super) fn reopen(s: &mut State) -> Option<Vec<Effect>> {
    if s.put_away.is_empty() || s.read_only || s.overlay != Overlay::None {
        return None;
    }
    s.overlay = Overlay::Approval {
        ids: std::mem::take(&mut s.put_away),
        selected: 0,
        draft: None,
        error: false,
        scroll: 0,
    };
    Some(Vec::new())
}

/// The open modal laid out for the screen (None when no approval is open).
pub fn laid_out(s: &State) -> Option<Modal> {
    let Overlay::Approval {
        ids,
        selected,
        draft,
        error,
        ..
    } = &s.overlay
    else {
        return None;
    };
    // Calls of child threads say whose they are; when all are one thread's, the title does.
    let owner = |id: &str| {
        s.threads
            .owner_of(id)
            .map(|t| crate::screen::threads::short_name(&t.name).to_string())
            .or_else(|| s.tool_card(id).and_then(|c| c.thread.clone()))
    };
    let owners: Vec<Option<String>> = ids.iter().map(|id| owner(id)).collect();
    let one = owners
        .first()
        .cloned()
        .flatten()
        .filter(|o| owners.iter().all(|x| x.as_deref() == Some(o.as_str())));
    let calls: Vec<Call> = ids
        .iter()
        .zip(&owners)
        .map(|(id, whose)| {
            let card = s.tool_card(id);
            Call {
                whose: if one.is_none() { whose.clone() } else { None },
                kind: card.map(|c| {
                    format!(
                        "{} {}",
                        if c.custom { "custom tool" } else { "tool" },
                        c.name
                    )
                }),
                summary: card.map_or_else(String::new, |c| tool_summary(&c.name, &c.input)),
                input: card.map_or_else(String::new, |c| input_text(&c.input)),
                id: id.clone(),
            }
        })
        .collect();
    let custom = ids.get(*selected).is_some_and(|id| is_custom(s, id));
    Some(modal(
        &calls,
        Ask {
            title_owner: one.as_deref(),
            selected: *selected,
            draft: draft.as_deref(),
            custom,
            error: *error,
        },
        s.width,
        s.height,
    ))
}

/// A call's input as a person reads it: one `field: value` a line, strings unquoted and a
/// multi-line string (a file's content) as its lines, indented; anything else as JSON.
fn input_text(input: &serde_json::Value) -> String {
    let serde_json::Value::Object(fields) = input else {
        return serde_json::to_string_pretty(input).unwrap_or_default();
    };
    let mut out = String::new();
    for (k, v) in fields {
        match v {
            serde_json::Value::String(text) if text.contains('\n') => {
                out.push_str(&format!("{k}:\n"));
                for l in text.lines() {
                    out.push_str(&format!("  {l}\n"));
                }
            }
            serde_json::Value::String(text) => out.push_str(&format!("{k}: {text}\n")),
            v => out.push_str(&format!("{k}: {v}\n")),
        }
    }
    out
}
