//! Search of the session view: the `/` prompt, n / N through the matches, and asking the daemon
//! for matches in the older part of the log that is not loaded.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{Cmd, Effect, Search, State};
use crate::screen::wrap::line_text;

/// Keys while the `/` prompt is open: Enter finds the newest match, Esc drops the search.
pub(super) fn prompt_key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    match k.code {
        KeyCode::Enter => {
            s.search.editing = false;
            s.search.current = None;
            return s.search_step(false);
        }
        KeyCode::Esc => {
            s.search = Search::default();
        }
        KeyCode::Backspace => {
            s.search.query.pop();
        }
        KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => s.search.query.push(c),
        _ => {}
    }
    Vec::new()
}

/// With an empty composer: `/` opens the prompt, n / N step to the newer / older match.
/// None when the key is not one of these.
pub(super) fn key(s: &mut State, k: KeyEvent) -> Option<Vec<Effect>> {
    let empty = s.composer_empty();
    Some(match (k.code, k.modifiers) {
        (KeyCode::Char('/'), _) if empty => {
            s.search = Search {
                editing: true,
                ..Search::default()
            };
            Vec::new()
        }
        (KeyCode::Char('n'), KeyModifiers::NONE) if empty && !s.search.query.is_empty() => {
            s.search_step(true)
        }
        (KeyCode::Char('N'), _) if empty && !s.search.query.is_empty() => s.search_step(false),
        _ => return None,
    })
}

impl State {
    /// Lines of the loaded transcript that contain the query: (item, line). An item whose
    /// text matches only where it is collapsed (a tool's hidden output) matches on its first line.
    pub fn matches(&self) -> Vec<(usize, usize)> {
        let q = self.search.query.to_ascii_lowercase();
        if q.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, item) in self.transcript.items.iter().enumerate() {
            // Cheap test first: most items don't match and needn't be laid out.
            if !item.copy_text().to_ascii_lowercase().contains(&q) {
                continue;
            }
            let before = out.len();
            for (l, line) in self
                .layouts
                .of(item, self.text_width())
                .lines
                .iter()
                .enumerate()
            {
                if line_text(line).to_ascii_lowercase().contains(&q) {
                    out.push((i, l));
                }
            }
            if out.len() == before {
                out.push((i, 0));
            }
        }
        out
    }

    /// Whether older events not loaded yet might hold more matches.
    fn more_older(&self) -> bool {
        self.transcript.has_older && !self.search.exhausted
    }

    /// The next match going back (older) or forward (newer), wrapping around the loaded
    /// transcript; going back past the oldest loaded match asks the daemon, which searches the
    /// whole log.
    fn search_step(&mut self, forward: bool) -> Vec<Effect> {
        if self.search.asking {
            return Vec::new();
        }
        let all = self.matches();
        let next = match (self.search.current, forward) {
            (None, _) => all.last().copied(),
            (Some(from), true) => all.iter().find(|m| **m > from).or(all.first()).copied(),
            (Some(from), false) => {
                let older = all.iter().rev().find(|m| **m < from).copied();
                if older.is_none() && self.more_older() {
                    return self.ask_older();
                }
                older.or(all.last().copied())
            }
        };
        match next {
            Some(m) => self.show_match(m, &all),
            None if self.more_older() => return self.ask_older(),
            None => {
                self.notice = Some(format!(
                    "no match for “{}” in this session",
                    self.search.query
                ));
            }
        }
        Vec::new()
    }

    fn ask_older(&mut self) -> Vec<Effect> {
        self.search.asking = true;
        self.notice = Some(format!(
            "searching older events for “{}”…",
            self.search.query
        ));
        vec![Effect::Net(Cmd::SearchOlder {
            query: self.search.query.clone(),
            before_seq: self.transcript.first_seq,
        })]
    }

    /// The daemon's answer: the newest older match's seq (its page is loaded by now), or none.
    pub(super) fn older_match(&mut self, seq: Option<u64>) -> Vec<Effect> {
        self.search.asking = false;
        let all = self.matches();
        let Some(seq) = seq else {
            self.search.exhausted = true;
            match all.last() {
                Some(&m) if self.search.current.is_some() => {
                    self.show_match(m, &all);
                    self.notice = Some(format!(
                        "no older match for “{}”: back to the newest",
                        self.search.query
                    ));
                }
                Some(&m) => self.show_match(m, &all),
                None => {
                    self.notice = Some(format!(
                        "no match for “{}” in this session",
                        self.search.query
                    ));
                }
            }
            return Vec::new();
        };
        // The newest match among the items the daemon's page brought in.
        let found = all
            .iter()
            .rev()
            .find(|(i, _)| {
                self.transcript.items[*i].seq <= seq && self.transcript.items[*i].seq > 0
            })
            .copied();
        match found {
            Some(m) if Some(m) < self.search.current || self.search.current.is_none() => {
                self.show_match(m, &all);
                Vec::new()
            }
            // Its text matched only in what this view doesn't show (say, a tool's raw input):
            // keep looking further back.
            _ if seq > 1 => {
                self.search.asking = true;
                vec![Effect::Net(Cmd::SearchOlder {
                    query: self.search.query.clone(),
                    before_seq: seq,
                })]
            }
            _ => self.older_match(None),
        }
    }

    fn show_match(&mut self, (item, line): (usize, usize), all: &[(usize, usize)]) {
        self.search.current = Some((item, line));
        // Show the match with a little context above it.
        self.jump_to(item, line);
        let _ = self.scroll_up(2.min(self.viewport() / 3));
        let idx = all.iter().position(|m| *m == (item, line)).unwrap_or(0) + 1;
        self.notice = Some(format!(
            "match {idx}/{}{} for “{}”",
            all.len(),
            if self.more_older() { "+" } else { "" },
            self.search.query
        ));
    }
}
