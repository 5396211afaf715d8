//! The threads of a multi-agent session in the view: switching the transcript to a child
//! thread's stream and back (the primary's transcript, scroll and search are parked meanwhile,
//! and keep taking the primary's events), routing what the view asks to the stream it shows,
//! and keeping the thread panel fresh (`thread.list` asked again on thread events, one request
//! in flight at a time).

use tether_proto::thread::primary_thread_id;

use super::{Cmd, Effect, Overlay, Scroll, Search, State};
use crate::screen::net::NetMsg;
use crate::screen::threads::{ThreadState, TreeRow};
use crate::screen::transcript::Transcript;

/// The panel sits beside the transcript from this width on; below it, a one-line strip.
pub const SIDE_MIN_WIDTH: u16 = 120;
/// Columns of the side panel (its border included).
pub const PANEL_WIDTH: u16 = 38;

/// A child thread shown instead of the primary.
#[derive(Debug)]
pub struct Viewing {
    /// `sthr_...`
    pub id: String,
    /// The agent's name, when known at the switch (the panel's is newer).
    pub name: String,
    /// The primary's view, as the user left it.
    parked: Parked,
}

/// What belongs to the transcript shown: parked while another thread's is shown.
#[derive(Debug, Default)]
struct Parked {
    transcript: Transcript,
    scroll: Option<Scroll>,
    new_below: usize,
    focus: Option<usize>,
    block: Option<usize>,
    search: Search,
    loading_older: bool,
    caught_up: bool,
}

/// `thread.list` requests, so thread events don't pile them up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListAsk {
    #[default]
    Idle,
    /// One is on its way; `again`: something changed since it was sent.
    InFlight { again: bool },
    /// This tetherd has no threads: the panel comes from events alone.
    Unavailable,
}

impl State {
    /// Swaps the shown transcript (and its scroll, focus and search) with the parked one.
    fn swap_parked(&mut self) {
        let Some(v) = self.viewing.as_mut() else {
            return;
        };
        let p = &mut v.parked;
        std::mem::swap(&mut self.transcript, &mut p.transcript);
        let scroll = p.scroll.replace(self.scroll).unwrap_or(Scroll::Follow);
        self.scroll = scroll;
        std::mem::swap(&mut self.new_below, &mut p.new_below);
        std::mem::swap(&mut self.focus, &mut p.focus);
        std::mem::swap(&mut self.block, &mut p.block);
        std::mem::swap(&mut self.search, &mut p.search);
        std::mem::swap(&mut self.loading_older, &mut p.loading_older);
        std::mem::swap(&mut self.caught_up, &mut p.caught_up);
    }

    /// Runs `f` on the primary's transcript, whether it is shown or parked.
    pub(super) fn with_primary<T>(&mut self, f: impl FnOnce(&mut State) -> T) -> T {
        let parked = self.viewing.is_some();
        if parked {
            self.swap_parked();
        }
        let r = f(self);
        if parked {
            self.swap_parked();
        }
        r
    }

    /// The thread shown: None for the primary.
    pub fn viewed_thread(&self) -> Option<&str> {
        self.viewing.as_ref().map(|v| v.id.as_str())
    }

    /// The primary's transcript, shown or parked.
    pub fn primary_transcript(&self) -> &Transcript {
        match &self.viewing {
            Some(v) => &v.parked.transcript,
            None => &self.transcript,
        }
    }

    /// Shows `thread`'s stream (None: the primary's again).
    pub fn view_thread(&mut self, thread: Option<String>) -> Vec<Effect> {
        let primary = primary_thread_id(&self.header.id);
        // The primary by its thread id is the primary.
        let thread = thread.filter(|t| *t != primary && !self.header.id.is_empty());
        if self.viewed_thread() == thread.as_deref() {
            return Vec::new();
        }
        // Back to the primary: its parked view returns as it was.
        if self.viewing.is_some() {
            self.swap_parked();
            self.viewing = None;
        }
        if let Some(id) = &thread {
            let name = self
                .threads
                .get(id)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| id.clone());
            self.viewing = Some(Viewing {
                id: id.clone(),
                name,
                parked: Parked::default(),
            });
            // The fresh (empty) state goes in front, the primary's is parked.
            self.swap_parked();
            self.scroll = Scroll::Follow;
        }
        self.normalize();
        vec![Effect::Net(Cmd::ViewThread(thread))]
    }

    /// The panel's rows (the primary first).
    pub fn thread_rows(&self) -> Vec<TreeRow> {
        let h = &self.header;
        let waits = matches!(
            h.stop_reason,
            Some(tether_proto::StopReason::RequiresAction { .. })
        ) && h.status == Some(tether_proto::SessionStatus::Idle);
        let state = match h.status {
            Some(tether_proto::SessionStatus::Running) => ThreadState::Running,
            Some(tether_proto::SessionStatus::Rescheduling) => ThreadState::Rescheduling,
            Some(tether_proto::SessionStatus::Terminated) => ThreadState::Terminated,
            _ if waits => ThreadState::Waiting,
            _ => ThreadState::Idle,
        };
        self.threads.tree(TreeRow {
            id: primary_thread_id(&h.id),
            name: "primary".into(),
            model: Some(h.model.clone()).filter(|m| !m.is_empty()),
            state,
            cost_usd: h.cost_usd,
            waits,
            depth: 0,
            count: 1,
        })
    }

    /// The next (or previous) thread of the panel, wrapping around.
    pub(super) fn cycle_thread(&mut self, forward: bool) -> Vec<Effect> {
        let rows = self.thread_rows();
        if rows.len() < 2 {
            self.notice = Some("this session has no other threads".into());
            return Vec::new();
        }
        let cur = self
            .viewed_thread()
            .and_then(|id| rows.iter().position(|r| r.id == id))
            .unwrap_or(0);
        let next = if forward {
            (cur + 1) % rows.len()
        } else {
            (cur + rows.len() - 1) % rows.len()
        };
        self.view_row(&rows, next)
    }

    /// Thread number `n` of the panel (0: the primary).
    pub(super) fn view_number(&mut self, n: usize) -> Vec<Effect> {
        let rows = self.thread_rows();
        if n >= rows.len() {
            self.notice = Some(format!(
                "no thread {n}: the panel numbers them 0 to {}",
                rows.len() - 1
            ));
            return Vec::new();
        }
        self.view_row(&rows, n)
    }

    fn view_row(&mut self, rows: &[TreeRow], i: usize) -> Vec<Effect> {
        let target = (i > 0).then(|| rows[i].id.clone());
        self.view_thread(target)
    }

    /// Asks for `thread.list` unless one is on its way (then once more after it).
    pub(super) fn refresh_threads(&mut self) -> Vec<Effect> {
        match &mut self.list_ask {
            ListAsk::Unavailable => Vec::new(),
            ListAsk::InFlight { again } => {
                *again = true;
                Vec::new()
            }
            ListAsk::Idle => {
                self.list_ask = ListAsk::InFlight { again: false };
                vec![Effect::Net(Cmd::ListThreads)]
            }
        }
    }

    /// A `thread.list` answer (None: this tetherd has no threads).
    pub(super) fn on_threads(
        &mut self,
        list: Option<Vec<tether_proto::thread::SessionThread>>,
    ) -> Vec<Effect> {
        let again = matches!(self.list_ask, ListAsk::InFlight { again: true });
        let Some(list) = list else {
            self.list_ask = ListAsk::Unavailable;
            return Vec::new();
        };
        self.threads.set_list(&list);
        self.list_ask = ListAsk::Idle;
        if let Some(v) = self.viewing.as_mut()
            && let Some(t) = self.threads.get(&v.id)
        {
            v.name = t.name.clone();
        }
        if again {
            return self.refresh_threads();
        }
        Vec::new()
    }

    /// Calls waiting on the user in child threads: onto the approval modal (with those open).
    pub(super) fn ask_for(&mut self, ids: &[String], seq: u64) {
        if self.read_only || ids.is_empty() || seq <= self.dismissed_action {
            return;
        }
        self.dismissed_action = seq;
        match &mut self.overlay {
            Overlay::Approval { ids: open, .. } => {
                for id in ids {
                    if !open.contains(id) {
                        open.push(id.clone());
                    }
                }
            }
            _ => {
                // Calls put away earlier come back with the new ones.
                let mut all = std::mem::take(&mut self.put_away);
                for id in ids {
                    if !all.contains(id) {
                        all.push(id.clone());
                    }
                }
                self.overlay = Overlay::Approval {
                    ids: all,
                    selected: 0,
                    draft: None,
                    error: false,
                    scroll: 0,
                }
            }
        }
    }
}

/// Commands about the stream shown go to the viewed thread's task when it is a child's.
pub(super) fn scoped(s: &State, fx: Vec<Effect>) -> Vec<Effect> {
    let Some(thread) = s.viewed_thread() else {
        return fx;
    };
    fx.into_iter()
        .map(|e| match e {
            Effect::Net(
                cmd @ (Cmd::Send(_)
                | Cmd::Interrupt
                | Cmd::LoadOlder { .. }
                | Cmd::SearchOlder { .. }),
            ) => Effect::Net(Cmd::InThread {
                thread: thread.to_string(),
                cmd: Box::new(cmd),
            }),
            e => e,
        })
        .collect()
}

/// What the task following a child thread reports: into the shown transcript when that thread
/// is still the one shown (else it is from a stream the user left).
pub(super) fn on_thread_msg(s: &mut State, thread: &str, msg: NetMsg) -> Vec<Effect> {
    if s.viewed_thread() != Some(thread) {
        return Vec::new();
    }
    let fx = match msg {
        // The session's header comes from the primary's connection.
        NetMsg::Info(_) | NetMsg::Threads(_) | NetMsg::Thread { .. } | NetMsg::Runs(_) => {
            Vec::new()
        }
        NetMsg::Conn(crate::screen::net::ConnState::Lost(why)) => {
            s.notice = Some(format!("the thread's stream stopped: {why}"));
            Vec::new()
        }
        NetMsg::Conn(_) => Vec::new(),
        msg => super::on_stream(s, msg, false),
    };
    scoped(s, fx)
}
