//! Word from the rest of the fleet while a session is on screen (issue 20): the same watchers
//! as the picker (every host's list, pushed), the same rules for what is news (needs input,
//! failed, a long turn finished), never about the session being looked at; and the count of
//! sessions needing input that the session view's status bar shows.

use std::time::SystemTime;

use super::fleet_net::Feed;
use super::picker::{Group, Picker, PickerEffect, PickerMsg};
use crate::notify::{Notice, NotifySettings};

/// What the session view needs to hear from the fleet.
pub struct Fleet {
    /// This machine's daemon and each `[[remotes]]` one.
    pub feeds: Vec<Feed>,
    pub notify: NotifySettings,
    /// The key (`HOST:ID`, or the id of a local session) of the session on screen.
    pub looking_at: String,
}

/// The fleet as the session view knows it.
pub struct Alerts {
    picker: Picker,
}

impl Alerts {
    pub fn new(looking_at: String, notify: &NotifySettings) -> Alerts {
        Alerts {
            picker: Picker {
                notify_min_turn: notify.min_turn(),
                attached: Some(looking_at),
                ..Picker::default()
            },
        }
    }

    /// A host's list (or why it is down) arrived at `now`: the notices it makes.
    pub fn update(&mut self, msg: PickerMsg, now: SystemTime) -> Vec<Notice> {
        if !matches!(
            msg,
            PickerMsg::Sessions(_) | PickerMsg::Host { .. } | PickerMsg::Changed { .. }
        ) {
            return Vec::new();
        }
        self.picker.now = Some(now);
        super::picker::update(&mut self.picker, msg)
            .into_iter()
            .filter_map(|fx| match fx {
                PickerEffect::Notify(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// Sessions of every host that wait for a person, the one on screen aside.
    pub fn needs_input(&self) -> usize {
        self.picker
            .visible()
            .iter()
            .filter(|e| e.group == Group::NeedsInput)
            .filter(|e| !self.picker.attached.as_deref().is_some_and(|k| e.is(k)))
            .count()
    }
}
