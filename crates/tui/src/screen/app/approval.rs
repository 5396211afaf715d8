//! Keys of the approval modal (calls waiting on the user): choose a call, allow or deny it, or
//! type a denial's reason or a custom tool's result.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{Cmd, Effect, Overlay, State};

/// Choosing: move between the calls, answer the selected one, or put the modal away.
pub(super) fn choice_key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    let Overlay::Approval { ids, selected, .. } = &mut s.overlay else {
        return Vec::new();
    };
    let id = ids.get(*selected).cloned();
    match k.code {
        KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => {
            *selected = (*selected + 1).min(ids.len().saturating_sub(1))
        }
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
            s.overlay = Overlay::None;
            s.notice =
                Some("answer later with `tether approve`, or wait for the next prompt".into());
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
    } = &mut s.overlay
    {
        ids.retain(|i| i != id);
        *selected = 0;
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
