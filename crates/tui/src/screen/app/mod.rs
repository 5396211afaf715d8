//! Session view state and its pure `update(&mut State, Msg) -> Vec<Effect>`: everything the
//! user can do, with no I/O. The event loop (run.rs) feeds messages in and carries effects out.
//! Keys go through input.rs to the mode that owns them: the approval modal (approval.rs), the
//! search prompt (search.rs), browsing (input.rs), the composer (composer.rs).

pub mod approval;
mod composer;
// MCP elicitation (issue 25)
pub mod elicit;
mod input;
pub mod runs;
mod search;
pub mod threads;

use std::time::SystemTime;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, MouseEvent, MouseEventKind};
use ratatui_textarea::TextArea;
use tether_proto::outcome::EvaluationResult;
use tether_proto::{Event, EventBody, SessionInfo, SessionStatus, StopReason};

use composer::new_composer;

use super::keys::Keys;
use super::layout::{Layouts, item_text};
use super::net::{Cmd, ConnState, NetMsg};
use super::runs::Runs;
use super::threads::Threads;
use super::transcript::{Body, Change, Transcript};
use threads::{ListAsk, PANEL_WIDTH, SIDE_MIN_WIDTH, Viewing};

const INTERRUPTING: &str = "interrupting…";
/// Lines a mouse wheel notch scrolls.
const WHEEL: usize = 3;

#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Paste(String),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Tick(SystemTime),
    Net(NetMsg),
    /// The terminal went away (SIGHUP): same as detaching.
    Hangup,
}

/// What an update asks the event loop to do: a request for the daemon, or a terminal action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Handed to the connection task as it is.
    Net(Cmd),
    Copy(String),
    /// The loaded transcript's text; events before `older_than` (when any) are fetched and
    /// put before it.
    Pager {
        text: String,
        older_than: Option<u64>,
    },
    SetMouse(bool),
    Detach,
}

/// Top row of the transcript viewport, or following the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scroll {
    Follow,
    At { item: usize, line: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    /// Calls waiting on the user (`requires_action`), with the selected one.
    Approval {
        ids: Vec<String>,
        selected: usize,
        /// Text being typed for the selected call: the optional message of a denial (after
        /// `n`), or a custom tool's result (after `y`; after `n` it goes back as an error).
        draft: Option<String>,
        /// The custom tool result being typed is an error.
        error: bool,
        /// Body rows scrolled off the top (pgup/pgdn; a long input can be taller than the
        /// screen).
        scroll: u16,
    },
    /// The workflow run panel (ctrl-g): run `run` of [`State::runs`], row `selected` of its
    /// graph ([`State::run_rows`]).
    Runs {
        run: usize,
        selected: usize,
    },
    /// A workflow checkpoint waiting for the user; `draft`: the denial's note being typed.
    Checkpoint {
        run: String,
        task: String,
        draft: Option<String>,
    },
    /// An MCP server's question (elicitation `id`) with its form.
    Elicitation {
        id: String,
        form: elicit::Form,
    },
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Search {
    /// The `/` prompt is open.
    pub editing: bool,
    pub query: String,
    /// The match shown last (item, line).
    pub current: Option<(usize, usize)>,
    /// Waiting for the daemon to search the older, unloaded part of the log.
    pub asking: bool,
    /// The daemon found nothing older: n/N wrap within what is loaded.
    pub exhausted: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Header {
    pub id: String,
    /// The session's name, else its title (a session made over HTTP often has only that),
    /// else its id.
    pub label: String,
    /// The label is the session's name (a title does not replace it).
    pub named: bool,
    pub model: String,
    pub status: Option<SessionStatus>,
    pub stop_reason: Option<StopReason>,
    pub running_since: Option<SystemTime>,
    pub attached_clients: u32,
    /// The session's sandbox level when it is not the full one (`none`, `landlock`, ...).
    pub sandbox: Option<String>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// USD; `None` while no request had a known price.
    pub cost_usd: Option<f64>,
    /// Usage of events up to this seq is already in the tokens (from session info).
    usage_seq: u64,
    /// The session's latest outcome, when it has one.
    pub outcome: Option<OutcomeState>,
    /// The model's context window in tokens, when the daemon knows it.
    pub context_window: Option<u64>,
    /// Tokens the primary thread's latest model request carried (its prompt and its answer):
    /// how full the context is now.
    pub context_used: u64,
}

/// Where the latest outcome stands, for the status bar.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeState {
    pub outcome_id: String,
    /// The current (or last) cycle, 0-based.
    pub iteration: u32,
    /// `max_iterations`, known once its `user.define_outcome` was seen.
    pub max: Option<u32>,
    pub phase: OutcomePhase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomePhase {
    /// The agent works on cycle `iteration`.
    Working,
    /// A grader evaluates cycle `iteration`.
    Evaluating,
    /// The outcome ended with this verdict.
    Done(EvaluationResult),
}

impl OutcomeState {
    /// From the session's `outcome_evaluations` entry (`result` as the daemon folds it).
    fn from_info(o: &tether_proto::outcome::OutcomeEvaluation, max: Option<u32>) -> Self {
        let phase = match o.result.as_str() {
            "evaluating" => OutcomePhase::Evaluating,
            r => serde_json::from_value::<EvaluationResult>(serde_json::Value::from(r))
                .ok()
                .filter(|r| r.is_terminal())
                .map_or(OutcomePhase::Working, OutcomePhase::Done),
        };
        OutcomeState {
            outcome_id: o.outcome_id.clone(),
            iteration: o.iteration,
            max,
            phase,
        }
    }
}

pub struct State {
    pub header: Header,
    pub transcript: Transcript,
    /// The transcript's items laid out at `width`.
    pub layouts: Layouts,
    pub scroll: Scroll,
    /// Items that arrived below while scrolled up.
    pub new_below: usize,
    pub width: u16,
    pub height: u16,
    pub composer: TextArea<'static>,
    pub history: Vec<String>,
    history_pos: Option<usize>,
    pub search: Search,
    /// The item `y` copies and ctrl-e expands.
    pub focus: Option<usize>,
    /// A code block of the focused item (`[`/`]`): `y` copies just its code.
    pub block: Option<usize>,
    pub overlay: Overlay,
    /// Seq of the requires_action idle the user dismissed (so it doesn't pop up again).
    dismissed_action: u64,
    /// Calls still waiting whose modal was put away with Esc (ctrl-a brings it back).
    pub put_away: Vec<String>,
    pub interrupt_armed: bool,
    pub chord_pending: bool,
    pub keys: Keys,
    pub conn: ConnState,
    /// Messages sent while the first connection was still being made (the transcript shows
    /// before the attach answers): they go out as soon as it does.
    pub send_on_connect: Vec<String>,
    pub read_only: bool,
    pub notice: Option<String>,
    pub mouse_capture: bool,
    pub now: SystemTime,
    pub spinner: usize,
    pub loading_older: bool,
    pub caught_up: bool,
    /// The session's threads (empty: a single-agent session, no panel).
    pub threads: Threads,
    /// The child thread whose stream the transcript shows (None: the primary's).
    pub viewing: Option<Viewing>,
    list_ask: ListAsk,
    /// The session's workflow runs (empty: no run panel).
    pub runs: Runs,
    pub checkpoints: runs::Checkpoints,
    /// Fan-out tasks unfolded in the run panel.
    pub run_folds: runs::Unfolded,
    /// A run whose panel opens as soon as the run is known (`tether workflows watch`).
    pub watch_run: Option<String>,
    /// Other sessions of the fleet waiting for a person (the status bar's count; issue 20).
    pub fleet_waiting: usize,
    /// MCP servers' questions waiting for an answer (issue 25).
    pub elicitations: elicit::Pending,
}

impl State {
    pub fn new(session: &str, keys: Keys, read_only: bool, width: u16, height: u16) -> State {
        State {
            header: Header {
                label: session.to_string(),
                ..Header::default()
            },
            transcript: Transcript::default(),
            layouts: Layouts::default(),
            scroll: Scroll::Follow,
            new_below: 0,
            width,
            height,
            composer: new_composer(),
            history: Vec::new(),
            history_pos: None,
            search: Search::default(),
            focus: None,
            block: None,
            overlay: Overlay::None,
            dismissed_action: 0,
            put_away: Vec::new(),
            interrupt_armed: false,
            chord_pending: false,
            keys,
            conn: ConnState::Connecting,
            send_on_connect: Vec::new(),
            read_only,
            notice: None,
            mouse_capture: true,
            now: SystemTime::UNIX_EPOCH,
            spinner: 0,
            loading_older: false,
            caught_up: false,
            threads: Threads::default(),
            viewing: None,
            list_ask: ListAsk::Idle,
            runs: Runs::default(),
            checkpoints: runs::Checkpoints::default(),
            run_folds: runs::Unfolded::default(),
            elicitations: elicit::Pending::default(),
            watch_run: None,
            fleet_waiting: 0,
        }
    }

    /// The thread panel sits beside the transcript (wide screens of multi-agent sessions).
    pub fn side_panel(&self) -> bool {
        self.threads.any() && self.width >= SIDE_MIN_WIDTH
    }

    /// The thread panel is a one-line strip above the status bar (narrow screens).
    pub fn thread_strip(&self) -> bool {
        self.threads.any() && self.width < SIDE_MIN_WIDTH
    }

    /// Columns the transcript is laid out in.
    pub fn text_width(&self) -> u16 {
        if self.side_panel() {
            self.width.saturating_sub(PANEL_WIDTH)
        } else {
            self.width
        }
    }

    /// A call waiting on the user, in the transcript shown or the primary's.
    pub fn tool_card(&self, id: &str) -> Option<&super::transcript::ToolCard> {
        fn find<'a>(t: &'a Transcript, id: &str) -> Option<&'a super::transcript::ToolCard> {
            t.items.iter().rev().find_map(|i| match &i.body {
                Body::Tool(c) if c.id == id => Some(c.as_ref()),
                _ => None,
            })
        }
        find(&self.transcript, id).or_else(|| find(self.primary_transcript(), id))
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.header.status,
            Some(SessionStatus::Running | SessionStatus::Rescheduling)
        )
    }

    /// Ticks are needed only while something moves (spinner, elapsed time). Nothing moves
    /// while the daemon is unreachable: what the screen shows is the last thing known.
    pub fn needs_tick(&self) -> bool {
        self.is_running() && self.connected()
    }

    pub fn connected(&self) -> bool {
        self.conn == ConnState::Connected
    }

    /// Rows of the composer box (text lines + its top border), capped.
    pub fn composer_height(&self) -> u16 {
        (self.composer.lines().len() as u16).clamp(1, 8) + 1
    }

    /// Rows the transcript gets: the screen less status bar, composer and footer (and the
    /// thread strip).
    pub fn viewport(&self) -> usize {
        (self.height as usize)
            .saturating_sub(2 + self.composer_height() as usize)
            .saturating_sub(usize::from(self.thread_strip()))
            .max(1)
    }

    fn item_height(&self, i: usize) -> usize {
        self.transcript
            .items
            .get(i)
            .map(|it| self.layouts.height(it, self.text_width()))
            .unwrap_or(0)
    }

    /// Anchor that shows the last line at the bottom of the viewport.
    pub fn bottom_anchor(&self) -> (usize, usize) {
        let vh = self.viewport();
        let mut need = vh;
        let mut i = self.transcript.items.len();
        while i > 0 {
            i -= 1;
            let h = self.item_height(i);
            if h >= need {
                return (i, h - need);
            }
            need -= h;
        }
        (0, 0)
    }

    /// The top row shown now.
    pub fn anchor(&self) -> (usize, usize) {
        match self.scroll {
            Scroll::Follow => self.bottom_anchor(),
            Scroll::At { item, line } => (item, line),
        }
    }

    pub fn scroll_up(&mut self, mut n: usize) -> Vec<Effect> {
        let (mut item, mut line) = self.anchor();
        while n > 0 {
            if line > 0 {
                let d = n.min(line);
                line -= d;
                n -= d;
            } else if item > 0 {
                item -= 1;
                line = self.item_height(item);
            } else {
                break;
            }
        }
        self.scroll = Scroll::At { item, line };
        self.normalize();
        self.maybe_load_older()
    }

    pub fn scroll_down(&mut self, n: usize) {
        if let Scroll::At { item, line } = self.scroll {
            self.scroll = Scroll::At {
                item,
                line: line + n,
            };
            self.normalize();
        }
    }

    /// Keeps the anchor on a real line, and returns to follow mode at the bottom.
    fn normalize(&mut self) {
        let Scroll::At { mut item, mut line } = self.scroll else {
            return;
        };
        let len = self.transcript.items.len();
        if len == 0 {
            self.scroll = Scroll::Follow;
            return;
        }
        item = item.min(len - 1);
        while item + 1 < len && line >= self.item_height(item) {
            line -= self.item_height(item);
            item += 1;
        }
        // At or past the bottom: follow again.
        let (bi, bl) = self.bottom_anchor();
        if (item, line) >= (bi, bl) {
            self.scroll = Scroll::Follow;
            self.new_below = 0;
            return;
        }
        self.scroll = Scroll::At { item, line };
    }

    fn maybe_load_older(&mut self) -> Vec<Effect> {
        let (item, _) = self.anchor();
        if item < 5
            && self.transcript.has_older
            && !self.loading_older
            && self.transcript.first_seq > 1
        {
            self.loading_older = true;
            return vec![Effect::Net(Cmd::LoadOlder {
                before_seq: self.transcript.first_seq,
            })];
        }
        Vec::new()
    }

    fn jump_to(&mut self, item: usize, line: usize) {
        self.scroll = Scroll::At { item, line };
        self.normalize();
    }

    fn on_change(&mut self, c: Change) {
        if c.appended > 0 && self.scroll != Scroll::Follow {
            self.new_below += c.appended;
        }
    }

    /// Folds an event of the primary's stream into the header, the thread panel and the modal.
    /// Returns whether the thread list is stale.
    fn track(&mut self, e: &Event) -> bool {
        self.runs.apply(e);
        // The primary's own MCP questions and its child threads' (cross-posted) alike.
        self.elicitations.apply(e);
        let folded = self.threads.apply(e);
        if e.session_thread_id.is_some() {
            // A child's: its calls waiting on the user join the modal; the header is the
            // primary's.
            if let EventBody::SessionThreadStatusIdle {
                stop_reason: StopReason::RequiresAction { event_ids },
                ..
            } = &e.body
            {
                self.ask_for(event_ids, e.seq);
            }
            if let EventBody::UserToolConfirmation {
                tool_use_id: id, ..
            }
            | EventBody::UserCustomToolResult {
                custom_tool_use_id: id,
                ..
            } = &e.body
            {
                self.unask(id);
            }
            return folded.refresh;
        }
        self.track_primary(e);
        folded.refresh
    }

    /// Takes an answered call off the modal.
    fn unask(&mut self, id: &str) {
        self.put_away.retain(|i| i != id);
        if let Overlay::Approval { ids, selected, .. } = &mut self.overlay {
            ids.retain(|i| i != id);
            *selected = (*selected).min(ids.len().saturating_sub(1));
            if ids.is_empty() {
                self.overlay = Overlay::None;
            }
        }
    }

    fn track_primary(&mut self, e: &Event) {
        let h = &mut self.header;
        match &e.body {
            EventBody::SessionStatusRunning {} => {
                h.status = Some(SessionStatus::Running);
                h.stop_reason = None;
                h.running_since = e
                    .processed_at
                    .as_deref()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                    .or(Some(self.now));
                // The primary's calls were answered; a child's may still wait.
                self.put_away
                    .retain(|id| self.threads.owner_of(id).is_some());
                if let Overlay::Approval { ids, selected, .. } = &mut self.overlay {
                    ids.retain(|id| self.threads.owner_of(id).is_some());
                    *selected = (*selected).min(ids.len().saturating_sub(1));
                    if ids.is_empty() {
                        self.overlay = Overlay::None;
                    }
                }
            }
            EventBody::SessionStatusIdle { stop_reason } => {
                h.status = Some(SessionStatus::Idle);
                h.stop_reason = Some(stop_reason.clone());
                h.running_since = None;
                self.interrupt_armed = false;
                if self.notice.as_deref() == Some(INTERRUPTING) {
                    self.notice = None;
                }
                if let StopReason::RequiresAction { event_ids } = stop_reason
                    && !self.read_only
                    && !event_ids.is_empty()
                    && e.seq > self.dismissed_action
                {
                    self.dismissed_action = e.seq;
                    let mut ids = event_ids.clone();
                    for id in std::mem::take(&mut self.put_away) {
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                    self.overlay = Overlay::Approval {
                        ids,
                        selected: 0,
                        draft: None,
                        error: false,
                        scroll: 0,
                    };
                }
            }
            // Answered (here or by another client): off the modal.
            EventBody::UserToolConfirmation {
                tool_use_id: id, ..
            }
            | EventBody::UserCustomToolResult {
                custom_tool_use_id: id,
                ..
            } => {
                let id = id.clone();
                self.unask(&id);
            }
            EventBody::SessionStatusRescheduled {} => h.status = Some(SessionStatus::Rescheduling),
            EventBody::SessionStatusTerminated {} => h.status = Some(SessionStatus::Terminated),
            EventBody::SpanModelRequestStart { model: Some(m) } => h.model = m.clone(),
            EventBody::SpanModelRequestEnd { model_usage, .. } => {
                let carried = model_usage.input_tokens
                    + model_usage.cache_read_input_tokens
                    + model_usage.cache_creation_input_tokens;
                // The primary's own requests say how full its context is (a thread's, an
                // advisor's or a grader's are other conversations); a failed request that
                // reported nothing leaves the last reading.
                if e.session_thread_id.is_none() && carried + model_usage.output_tokens > 0 {
                    h.context_used = carried + model_usage.output_tokens;
                }
                if e.seq > h.usage_seq {
                    h.tokens_in += carried;
                    h.tokens_out += model_usage.output_tokens;
                    if let Some(c) = model_usage.cost_usd {
                        h.cost_usd = Some(h.cost_usd.unwrap_or(0.0) + c);
                    }
                }
            }
            EventBody::UserDefineOutcome(spec) => {
                h.outcome = Some(OutcomeState {
                    outcome_id: spec.outcome_id.clone().unwrap_or_default(),
                    iteration: 0,
                    max: Some(spec.max_iterations()),
                    phase: OutcomePhase::Working,
                });
            }
            EventBody::SpanOutcomeEvaluationStart {
                outcome_id,
                iteration,
            } => {
                let o = outcome_of(&mut h.outcome, outcome_id);
                o.iteration = *iteration;
                o.phase = OutcomePhase::Evaluating;
            }
            EventBody::SpanOutcomeEvaluationEnd(end) => {
                // Grader requests have no model-request spans of their own (the contract:
                // one `ongoing` each); their usage counts toward the session's.
                if e.seq > h.usage_seq {
                    let u = &end.usage;
                    h.tokens_in +=
                        u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
                    h.tokens_out += u.output_tokens;
                    if let Some(c) = u.cost_usd {
                        h.cost_usd = Some(h.cost_usd.unwrap_or(0.0) + c);
                    }
                }
                let o = outcome_of(&mut h.outcome, &end.outcome_id);
                if end.result == EvaluationResult::NeedsRevision {
                    o.iteration = end.iteration + 1;
                    o.phase = OutcomePhase::Working;
                } else {
                    o.iteration = end.iteration;
                    o.phase = OutcomePhase::Done(end.result);
                }
            }
            EventBody::SessionUpdated {
                model, name, title, ..
            } => {
                if let Some(m) = model {
                    h.model = m.clone();
                }
                // Renamed (here or by another client): the status bar follows.
                if let Some(n) = name {
                    h.label = n.clone();
                    h.named = true;
                } else if let Some(t) = title.as_ref().filter(|_| !h.named) {
                    h.label = t.clone();
                }
            }
            _ => {}
        }
    }

    fn set_info(&mut self, info: &SessionInfo) {
        let h = &mut self.header;
        h.id = info.id.clone();
        h.named = info.name.is_some();
        h.label = info
            .name
            .clone()
            .or_else(|| info.title.clone().filter(|t| !t.trim().is_empty()))
            .unwrap_or_else(|| info.id.clone());
        h.model = info.model.clone();
        h.attached_clients = info.attached_clients;
        h.sandbox = info.sandbox.clone().filter(|l| l != "namespaces");
        h.context_window = info.context_window;
        if h.usage_seq <= info.last_seq {
            h.usage_seq = info.last_seq;
            let t = &info.usage.tokens;
            h.tokens_in =
                t.input_tokens + t.cache_read_input_tokens + t.cache_creation_input_tokens;
            h.tokens_out = t.output_tokens;
            h.cost_usd = t.cost_usd;
        }
        if h.status.is_none() || self.transcript.last_seq <= info.last_seq {
            h.status = Some(info.status);
            h.stop_reason = info.stop_reason.clone();
            if let Some(o) = info.outcome_evaluations.last() {
                // The limit is not in the fold: kept from the outcome's own event.
                let max = h
                    .outcome
                    .as_ref()
                    .filter(|cur| cur.outcome_id == o.outcome_id)
                    .and_then(|cur| cur.max);
                h.outcome = Some(OutcomeState::from_info(o, max));
            }
        }
    }

    fn jump_user(&mut self, forward: bool) {
        let items = &self.transcript.items;
        let from = self.focus.unwrap_or(if forward {
            self.anchor().0
        } else {
            items.len()
        });
        let found = if forward {
            (from + 1..items.len()).find(|&i| items[i].is_user())
        } else {
            (0..from.min(items.len()))
                .rev()
                .find(|&i| items[i].is_user())
        };
        match found {
            Some(i) => {
                self.focus = Some(i);
                self.block = None;
                self.jump_to(i, 0);
            }
            None if forward => {
                self.focus = None;
                self.block = None;
                self.scroll = Scroll::Follow;
                self.new_below = 0;
            }
            None => {}
        }
    }

    fn move_focus(&mut self, forward: bool) {
        let len = self.transcript.items.len();
        if len == 0 {
            return;
        }
        let next = match (self.focus, forward) {
            (None, _) => len - 1,
            (Some(i), true) => (i + 1).min(len - 1),
            (Some(i), false) => i.saturating_sub(1),
        };
        self.focus = Some(next);
        self.block = None;
        let (top, _) = self.anchor();
        if next < top || self.scroll == Scroll::Follow && !forward {
            self.jump_to(next, 0);
        }
    }

    /// The item ctrl-e and y act on: the focused one, else the newest that can expand / copy.
    fn target(&self, expandable: bool) -> Option<usize> {
        self.focus.or_else(|| {
            self.transcript.items.iter().rposition(|i| match &i.body {
                Body::Tool(_)
                | Body::Thinking { .. }
                | Body::Outcome(_)
                | Body::Evaluation(_)
                | Body::Thread(_) => true,
                Body::Assistant { .. } => !expandable,
                _ => false,
            })
        })
    }

    /// Focuses the next (or previous) code block of the transcript, scrolling it into view.
    fn move_block(&mut self, forward: bool) {
        let items = &self.transcript.items;
        let count = |i: usize| self.layouts.of(&items[i], self.text_width()).blocks.len();
        // Where to look from: the focused block, else the edge of the view.
        let found = match (self.focus, self.block, forward) {
            (Some(i), Some(b), true) if b + 1 < count(i) => Some((i, b + 1)),
            (Some(i), Some(b), false) if b > 0 && b <= count(i) => Some((i, b - 1)),
            (Some(i), _, true) => {
                (i + 1..items.len()).find_map(|j| (count(j) > 0).then_some((j, 0)))
            }
            (Some(i), _, false) => (0..i.min(items.len()))
                .rev()
                .find_map(|j| count(j).checked_sub(1).map(|b| (j, b))),
            (None, _, true) => {
                let top = self.anchor().0;
                (top..items.len()).find_map(|j| (count(j) > 0).then_some((j, 0)))
            }
            (None, _, false) => (0..items.len())
                .rev()
                .find_map(|j| count(j).checked_sub(1).map(|b| (j, b))),
        };
        let Some((item, block)) = found else {
            self.notice = Some(if forward {
                "no code block below".into()
            } else {
                "no code block above in the loaded transcript".into()
            });
            return;
        };
        self.focus = Some(item);
        self.block = Some(block);
        let rows = self
            .layouts
            .of(&self.transcript.items[item], self.text_width())
            .blocks[block]
            .rows
            .clone();
        if !self.shows(item, rows.start) || !self.shows(item, rows.end.saturating_sub(1)) {
            // A line of context above the block.
            self.jump_to(item, rows.start.saturating_sub(1));
        }
    }

    /// Whether row `line` of `item` is on screen now.
    fn shows(&self, item: usize, line: usize) -> bool {
        let (mut i, mut l) = self.anchor();
        let mut left = self.viewport();
        while left > 0 && i < self.transcript.items.len() {
            let h = self.item_height(i);
            if i == item {
                return line >= l && line < l + left.min(h.saturating_sub(l));
            }
            left = left.saturating_sub(h.saturating_sub(l));
            i += 1;
            l = 0;
        }
        false
    }

    /// The focused code block: (language, code).
    pub fn focused_block(&self) -> Option<(String, String)> {
        let item = self.transcript.items.get(self.focus?)?;
        let layout = self.layouts.of(item, self.text_width());
        let b = layout.blocks.get(self.block?)?;
        Some((b.lang.clone(), b.code.clone()))
    }
}

/// The tracked outcome `id` (a fresh one when its `user.define_outcome` was not seen).
fn outcome_of<'a>(cur: &'a mut Option<OutcomeState>, id: &str) -> &'a mut OutcomeState {
    if cur.as_ref().is_some_and(|o| o.outcome_id != id) {
        *cur = None;
    }
    cur.get_or_insert_with(|| OutcomeState {
        outcome_id: id.to_string(),
        iteration: 0,
        max: None,
        phase: OutcomePhase::Working,
    })
}

pub fn update(s: &mut State, msg: Msg) -> Vec<Effect> {
    let fx = update_inner(s, msg);
    s.open_watched_run();
    // Whatever changed (a run event, a key, the composer emptied): the checkpoint prompt
    // opens or closes to match.
    s.sync_checkpoint();
    s.sync_elicitation();
    fx
}

fn update_inner(s: &mut State, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Key(k) if k.kind == KeyEventKind::Release => Vec::new(),
        Msg::Key(k) => {
            let fx = input::on_key(s, k);
            if !matches!(k.code, KeyCode::Esc) {
                s.interrupt_armed = false;
            }
            // Keys act on the stream shown (unless they switched it).
            if fx
                .iter()
                .any(|e| matches!(e, Effect::Net(Cmd::ViewThread(_))))
            {
                return fx;
            }
            threads::scoped(s, fx)
        }
        Msg::Paste(text) => {
            if s.search.editing {
                s.search.query.push_str(text.lines().next().unwrap_or(""));
            } else if s.read_only {
                s.notice = Some("read-only: this client cannot send".into());
            } else {
                // Pasted newlines are text, never a send.
                s.composer
                    .insert_str(text.replace("\r\n", "\n").replace('\r', "\n"));
            }
            Vec::new()
        }
        Msg::Mouse(m) => match m.kind {
            MouseEventKind::ScrollUp => {
                let fx = s.scroll_up(WHEEL);
                threads::scoped(s, fx)
            }
            MouseEventKind::ScrollDown => {
                s.scroll_down(WHEEL);
                Vec::new()
            }
            _ => Vec::new(),
        },
        Msg::Resize(w, h) => {
            // Keep the same top item; its lines re-wrap.
            s.width = w;
            s.height = h;
            s.normalize();
            Vec::new()
        }
        // Disconnected, the clock stops with the spinner: no timer counts what it can't see.
        Msg::Tick(_) if !s.connected() => Vec::new(),
        Msg::Tick(now) => {
            s.now = now;
            s.spinner = s.spinner.wrapping_add(1);
            Vec::new()
        }
        Msg::Hangup => vec![Effect::Detach],
        Msg::Net(n) => on_net(s, n),
    }
}

fn on_net(s: &mut State, n: NetMsg) -> Vec<Effect> {
    match n {
        NetMsg::Threads(list) => s.on_threads(list),
        NetMsg::Runs(list) => {
            s.runs.set_list(&list);
            Vec::new()
        }
        NetMsg::Thread { thread, msg } => threads::on_thread_msg(s, &thread, *msg),
        // The primary's stream, into its transcript wherever it is (shown or parked).
        n => s.with_primary(|s| on_stream(s, n, true)),
    }
}

/// A stream's report into the transcript shown; `primary`: the primary's (whose events also
/// drive the header, the modal and the thread panel).
fn on_stream(s: &mut State, n: NetMsg, primary: bool) -> Vec<Effect> {
    match n {
        NetMsg::Info(info) => s.set_info(&info),
        NetMsg::Tail { events, has_older } => {
            for e in &events {
                if primary {
                    // No thread.list for the tail: one comes right after the attach.
                    s.track(e);
                }
                s.transcript.push_event(e);
            }
            s.transcript.has_older = has_older;
        }
        NetMsg::Older { events, has_older } => {
            s.loading_older = false;
            let added = s.transcript.prepend(&events, has_older);
            if let Scroll::At { item, line } = s.scroll {
                s.scroll = Scroll::At {
                    item: item + added,
                    line,
                };
            }
            if let Some(f) = s.focus.as_mut() {
                *f += added;
            }
            if let Some((i, l)) = s.search.current {
                s.search.current = Some((i + added, l));
            }
            // Still near the top with more to load: keep going.
            return s.maybe_load_older();
        }
        NetMsg::Event(e) => {
            let stale = primary && s.track(&e);
            let c = s.transcript.push_event(&e);
            s.on_change(c);
            if stale {
                return s.refresh_threads();
            }
        }
        NetMsg::Delta(d) => {
            if let tether_proto::DeltaKind::Notice { message } = &d.kind {
                // Can't be stored (e.g. the disk is full): the footer is where it's seen.
                s.notice = Some(message.clone());
            }
            let c = s.transcript.apply_delta(&d);
            s.on_change(c);
        }
        NetMsg::Snapshot(snap) => {
            s.caught_up = true;
            let c = s.transcript.apply_snapshot(&snap);
            s.on_change(c);
        }
        NetMsg::Conn(c) => {
            // A search in flight died with the connection; N asks again.
            s.search.asking = false;
            if c == ConnState::Connected && matches!(s.conn, ConnState::Reconnecting { .. }) {
                s.notice = Some("reconnected".into());
            }
            let connected = c == ConnState::Connected;
            s.conn = c;
            if connected && !s.send_on_connect.is_empty() {
                return std::mem::take(&mut s.send_on_connect)
                    .into_iter()
                    .map(|t| Effect::Net(Cmd::Send(t)))
                    .collect();
            }
        }
        // An answer for a search the user has since changed or closed: the events it loaded
        // stay, the answer is moot.
        NetMsg::SearchOlder { query, .. } if query != s.search.query || !s.search.asking => {}
        NetMsg::SearchOlder { seq, .. } => return s.older_match(seq),
        NetMsg::Failed(m) => {
            s.loading_older = false;
            s.search.asking = false;
            s.notice = Some(m);
        }
        // Not about one stream: on_net takes them.
        NetMsg::Threads(_) | NetMsg::Thread { .. } | NetMsg::Runs(_) => {}
    }
    Vec::new()
}

/// The loaded transcript for $PAGER, every card expanded, with colours (ANSI); the part not
/// loaded is fetched then.
pub fn transcript_text(s: &State) -> String {
    let mut out = String::new();
    for item in &s.transcript.items {
        item_text(item, usize::from(s.width), &mut out);
    }
    out
}
