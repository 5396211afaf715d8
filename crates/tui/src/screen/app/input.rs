//! Key dispatch of the session view. The detach chord comes first (it works in every mode); then
//! whatever is open takes the key (help, the approval modal, the `/` prompt); else the browsing
//! keys (scrolling, focus, copy, toggles, search steps); else it goes to the composer.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{
    Cmd, Effect, INTERRUPTING, Overlay, Scroll, Search, State, approval, composer, elicit, runs,
    search, transcript_text,
};

pub(super) fn on_key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    if let Some(fx) = detach_chord(s, &k) {
        return fx;
    }
    s.notice = None;
    match &s.overlay {
        Overlay::Help => help_key(s),
        Overlay::Approval { draft: Some(_), .. } => approval::draft_key(s, k),
        Overlay::Approval { draft: None, .. } => approval::choice_key(s, k),
        Overlay::Runs { .. } => runs::panel_key(s, k),
        Overlay::Checkpoint { .. } => runs::checkpoint_key(s, k),
        Overlay::Elicitation { .. } => elicit::key(s, k),
        Overlay::None if s.search.editing => search::prompt_key(s, k),
        // These groups take disjoint keys, so the order among them doesn't matter; the
        // composer takes what is left.
        Overlay::None => esc_key(s, k)
            .or_else(|| move_key(s, k))
            .or_else(|| action_key(s, k))
            .or_else(|| search::key(s, k))
            .unwrap_or_else(|| composer::key(s, k)),
    }
}

/// The detach chord (a tmux-like prefix, or one key): Some when the key belonged to it.
fn detach_chord(s: &mut State, k: &KeyEvent) -> Option<Vec<Effect>> {
    let detach = s.keys.detach.clone();
    if s.chord_pending {
        s.chord_pending = false;
        if detach.get(1).is_some_and(|d| d.matches(k)) {
            return Some(vec![Effect::Detach]);
        }
        s.notice = Some(format!(
            "{} then {} detaches",
            detach[0].label(),
            detach.get(1).map(|d| d.label()).unwrap_or_default()
        ));
        return Some(Vec::new());
    }
    if detach.first().is_some_and(|d| d.matches(k)) {
        if detach.len() == 1 {
            return Some(vec![Effect::Detach]);
        }
        s.chord_pending = true;
        s.notice = Some(format!(
            "{}: press {} to detach",
            detach[0].label(),
            detach[1].label()
        ));
        return Some(Vec::new());
    }
    None
}

/// Any key closes the help.
fn help_key(s: &mut State) -> Vec<Effect> {
    s.overlay = Overlay::None;
    Vec::new()
}

/// Esc steps back one level: the search, the focused block, the focused item; with nothing
/// left, twice interrupts a running agent.
fn esc_key(s: &mut State, k: KeyEvent) -> Option<Vec<Effect>> {
    if k.code != KeyCode::Esc {
        return None;
    }
    if !s.search.query.is_empty() {
        s.search = Search::default();
    } else if s.block.is_some() {
        s.block = None;
    } else if s.focus.is_some() {
        s.focus = None;
    } else if s.is_running() && !s.read_only {
        if s.interrupt_armed {
            s.interrupt_armed = false;
            s.notice = Some(INTERRUPTING.into());
            return Some(vec![Effect::Net(Cmd::Interrupt)]);
        }
        s.interrupt_armed = true;
        s.notice = Some("press esc again to interrupt the agent".into());
    }
    Some(Vec::new())
}

/// Moving through the transcript: scrolling, jumping, focusing items and code blocks.
fn move_key(s: &mut State, k: KeyEvent) -> Option<Vec<Effect>> {
    let page = s.viewport().saturating_sub(2).max(1);
    let empty = s.composer_empty();
    Some(match (k.code, k.modifiers) {
        (KeyCode::PageUp, _) => s.scroll_up(page),
        (KeyCode::PageDown, _) => {
            s.scroll_down(page);
            Vec::new()
        }
        (KeyCode::Home, m) if empty || m.contains(KeyModifiers::CONTROL) => {
            s.jump_to(0, 0);
            s.maybe_load_older()
        }
        (KeyCode::End, m) if empty || m.contains(KeyModifiers::CONTROL) => {
            s.scroll = Scroll::Follow;
            s.new_below = 0;
            Vec::new()
        }
        (KeyCode::Up, KeyModifiers::CONTROL) => {
            s.jump_user(false);
            s.maybe_load_older()
        }
        (KeyCode::Down, KeyModifiers::CONTROL) => {
            s.jump_user(true);
            Vec::new()
        }
        (KeyCode::Up, KeyModifiers::ALT) => {
            s.move_focus(false);
            s.maybe_load_older()
        }
        (KeyCode::Down, KeyModifiers::ALT) => {
            s.move_focus(true);
            Vec::new()
        }
        (KeyCode::Char('['), KeyModifiers::NONE) if empty => {
            s.move_block(false);
            s.maybe_load_older()
        }
        (KeyCode::Char(']'), KeyModifiers::NONE) if empty => {
            s.move_block(true);
            Vec::new()
        }
        _ => return None,
    })
}

/// Acting on the focused item or the screen: expand, copy, pager, mouse capture, help.
fn action_key(s: &mut State, k: KeyEvent) -> Option<Vec<Effect>> {
    let empty = s.composer_empty();
    Some(match (k.code, k.modifiers) {
        (KeyCode::Char('e'), KeyModifiers::CONTROL) => {
            if let Some(i) = s.target(true)
                && let Some(item) = s.transcript.items.get_mut(i)
            {
                item.expanded = !item.expanded;
                item.touch();
                s.normalize();
            }
            Vec::new()
        }
        (KeyCode::Char('o'), KeyModifiers::CONTROL) => vec![Effect::Pager {
            text: transcript_text(s),
            older_than: s.transcript.has_older.then_some(s.transcript.first_seq),
        }],
        (KeyCode::Char('m'), KeyModifiers::ALT) | (KeyCode::F(2), _) => {
            s.mouse_capture = !s.mouse_capture;
            s.notice = Some(if s.mouse_capture {
                "mouse: wheel scrolls (alt-m gives selection back to the terminal)".into()
            } else {
                "mouse: terminal selection works now (alt-m for the wheel)".into()
            });
            vec![Effect::SetMouse(s.mouse_capture)]
        }
        // Threads of a multi-agent session: the next one, or one by its panel number.
        (KeyCode::Char('t'), KeyModifiers::CONTROL) => s.cycle_thread(true),
        (KeyCode::Char(c @ '0'..='9'), KeyModifiers::ALT) if s.threads.any() => {
            s.view_number(c as usize - '0' as usize)
        }
        (KeyCode::Char('a'), KeyModifiers::CONTROL) if !s.put_away.is_empty() => {
            return approval::reopen(s);
        }
        (KeyCode::Char('a'), KeyModifiers::CONTROL) if s.checkpoints_waiting() > 0 => {
            return s.reopen_checkpoint();
        }
        (KeyCode::Char('a'), KeyModifiers::CONTROL) if s.elicitations.put_away_any() => {
            return s.reopen_elicitation();
        }
        // Workflow runs of the session: every task's live status.
        (KeyCode::Char('g'), KeyModifiers::CONTROL) => s.open_runs(),
        (KeyCode::F(1), _) => {
            s.overlay = Overlay::Help;
            Vec::new()
        }
        (KeyCode::Char('?'), _) if empty => {
            s.overlay = Overlay::Help;
            Vec::new()
        }
        // The newest MCP authorization URL, whole (the notice wraps it on a narrow screen).
        (KeyCode::Char('u'), KeyModifiers::ALT) => copy_authorization_url(s),
        // Plain y copies only while browsing (else it is a letter to type); alt-y always.
        (KeyCode::Char('y'), m)
            if m == KeyModifiers::ALT
                || m == KeyModifiers::NONE
                    && empty
                    && (s.focus.is_some()
                        || s.scroll != Scroll::Follow
                        || !s.search.query.is_empty()) =>
        {
            copy(s)
        }
        _ => return None,
    })
}

/// alt-u: the URL of the newest `tether.mcp_authorization_required`, to the clipboard.
fn copy_authorization_url(s: &mut State) -> Vec<Effect> {
    match s.transcript.authorization_url.clone() {
        Some(url) => {
            s.notice = Some(
                "copied the authorization URL to the clipboard (OSC 52): open it in a browser on tetherd's machine".into(),
            );
            vec![Effect::Copy(url)]
        }
        None => {
            s.notice = Some("no MCP server has asked you to authorize tether".into());
            Vec::new()
        }
    }
}

/// y: the focused code block, else the focused (or newest) item, to the clipboard.
fn copy(s: &mut State) -> Vec<Effect> {
    if let Some((lang, code)) = s.focused_block() {
        let lines = code.lines().count();
        s.notice = Some(format!(
            "copied the {}code block ({lines} line{}) to the clipboard (OSC 52)",
            if lang.is_empty() {
                String::new()
            } else {
                format!("{lang} ")
            },
            if lines == 1 { "" } else { "s" }
        ));
        return vec![Effect::Copy(code)];
    }
    match s.target(false).and_then(|i| s.transcript.items.get(i)) {
        Some(item) => {
            s.notice = Some("copied to the clipboard (OSC 52)".into());
            vec![Effect::Copy(item.copy_text())]
        }
        None => Vec::new(),
    }
}
