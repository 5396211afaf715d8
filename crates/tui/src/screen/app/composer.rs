//! The composer of the session view: typing the message, sending it (Enter), new lines,
//! clearing it (ctrl-c), and the history of sent messages (↑ / ↓ at its edges).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_textarea::{CursorMove, TextArea};

use super::ConnState;
use super::{Cmd, Effect, Overlay, Scroll, State};

/// An empty composer with its placeholder.
pub fn new_composer() -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_cursor_line_style(ratatui::style::Style::default());
    t.set_placeholder_text("Message the agent · enter sends · alt-enter newline · ? help");
    t
}

/// Keys that edit or send the message: every key no overlay, prompt or browsing key took.
pub(super) fn key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    // A watching client has no composer: typing would fill a box it can never send.
    if s.read_only {
        if matches!(k.code, KeyCode::Char(_) | KeyCode::Enter) {
            s.notice = Some("read-only: this client cannot send".into());
        }
        return Vec::new();
    }
    let empty = s.composer_empty();
    match (k.code, k.modifiers) {
        (KeyCode::Char('c'), KeyModifiers::CONTROL) => {
            if !empty {
                s.set_composer("");
                s.history_pos = None;
            } else {
                s.notice = Some(format!(
                    "ctrl-c never stops the agent: esc esc interrupts it, {} detaches",
                    s.keys.detach_label()
                ));
            }
            Vec::new()
        }
        (KeyCode::Enter, KeyModifiers::NONE) => {
            let text = s.composer_text();
            if text.trim().is_empty() {
                return Vec::new();
            }
            if s.read_only {
                s.notice = Some("read-only: this client cannot send".into());
                return Vec::new();
            }
            // Attaching (the transcript can show before the attach answers): it goes out
            // the moment the connection is made.
            let attaching = s.conn == ConnState::Connecting;
            if !s.connected() && !attaching {
                // The draft stays: nothing is lost while tetherd is away.
                s.notice = Some(
                    "not connected to tetherd: the message stays here; enter sends it once it is back"
                        .into(),
                );
                return Vec::new();
            }
            if s.history.last() != Some(&text) {
                s.history.push(text.clone());
            }
            s.history_pos = None;
            s.set_composer("");
            s.scroll = Scroll::Follow;
            s.new_below = 0;
            s.focus = None;
            s.block = None;
            if attaching {
                s.notice = Some("sending as soon as tetherd answers".into());
                s.send_on_connect.push(text);
                return Vec::new();
            }
            if s.is_running() {
                s.notice = Some("queued: the agent reads it when the current step ends".into());
            }
            vec![Effect::Net(Cmd::Send(text))]
        }
        (KeyCode::Enter, _) | (KeyCode::Char('j'), KeyModifiers::CONTROL) => {
            s.composer.insert_newline();
            Vec::new()
        }
        (KeyCode::Up, KeyModifiers::NONE)
            if s.composer.cursor().0 == 0 && (empty || s.history_pos.is_some()) =>
        {
            s.history_prev();
            Vec::new()
        }
        (KeyCode::Down, KeyModifiers::NONE)
            if s.history_pos.is_some() && s.composer.cursor().0 + 1 >= s.composer.lines().len() =>
        {
            s.history_next();
            s.composer.move_cursor(CursorMove::End);
            Vec::new()
        }
        _ => {
            s.composer.input(k);
            Vec::new()
        }
    }
}

impl State {
    fn composer_text(&self) -> String {
        self.composer.lines().join("\n")
    }

    /// Whether a prompt (a checkpoint, an MCP question) may open by itself now: never on a
    /// read-only client, over another overlay, or while the user types or searches.
    pub(super) fn may_open_prompt(&self) -> bool {
        !(self.read_only
            || self.overlay != Overlay::None
            || self.search.editing
            || !self.composer_empty())
    }

    pub(super) fn composer_empty(&self) -> bool {
        self.composer.is_empty()
    }

    fn history_prev(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let pos = match self.history_pos {
            None => self.history.len() - 1,
            Some(p) => p.saturating_sub(1),
        };
        self.history_pos = Some(pos);
        self.set_composer(&self.history[pos].clone());
    }

    fn history_next(&mut self) {
        let Some(p) = self.history_pos else { return };
        if p + 1 < self.history.len() {
            self.history_pos = Some(p + 1);
            self.set_composer(&self.history[p + 1].clone());
        } else {
            self.history_pos = None;
            self.set_composer("");
        }
    }

    fn set_composer(&mut self, text: &str) {
        self.composer = new_composer();
        self.composer.insert_str(text);
    }
}
