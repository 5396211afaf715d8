//! The session picker (`tether` alone): state and its pure update. It shows the sessions of
//! this machine's daemon and of every `[[remotes]]` one, grouped by what they need from you.
//! A remote session's key is `HOST:ID` (what every command takes); a local one's is its id.

use std::collections::HashMap;
use std::time::SystemTime;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tether_proto::{SessionInfo, SessionStatus, StopReason};

use crate::fleet::LOCAL;

#[derive(Debug)]
pub enum PickerMsg {
    Key(KeyEvent),
    /// This machine's sessions.
    Sessions(Vec<SessionInfo>),
    /// A remote's sessions, or why it cannot be reached (it is retried by itself).
    Host {
        name: String,
        sessions: Result<Vec<SessionInfo>, String>,
    },
    /// What changed in a host's list since the last message about it (a daemon's push):
    /// `host` None is this machine's daemon.
    Changed {
        host: Option<String>,
        changed: Vec<SessionInfo>,
        removed: Vec<String>,
    },
    /// What a peek found for the session `key`.
    Peeked {
        key: String,
        found: Result<PeekInfo, String>,
    },
    /// Agent names by id (sessions pin an agent by id).
    Agents(HashMap<String, String>),
    /// This machine's deployments that may still fire (not archived).
    Deployments(Vec<tether_proto::deployment::Deployment>),
    Failed(String),
    /// What an action did, for the footer.
    Notice(String),
    Tick(SystemTime),
}

/// Session keys in effects are `HOST:ID` for remote sessions, the bare id for local ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickerEffect {
    Attach(String),
    Create(NewSession),
    Archive(String),
    Delete(String),
    Rename {
        id: String,
        name: String,
    },
    /// A session started needing you: tell the terminal and the `[notify]` hook.
    Notify(crate::notify::Notice),
    /// Fetch what [`PickerMsg::Peeked`] carries.
    Peek(String),
    /// Allow every call the session waits on.
    Approve(String),
    /// Send a message to the session.
    Reply {
        key: String,
        text: String,
    },
    Quit,
}

/// What a session needs from you, in the order the picker shows the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Waiting on an approval or a custom tool result.
    NeedsInput,
    Working,
    /// Ended a turn (end_turn) since you last looked.
    Done,
    /// Its last turn failed (error, retries exhausted) or it was terminated.
    Failed,
    Idle,
}

impl Group {
    pub fn label(self) -> &'static str {
        match self {
            Group::NeedsInput => "Needs input",
            Group::Working => "Working",
            Group::Done => "Done",
            Group::Failed => "Failed",
            Group::Idle => "Idle",
        }
    }
}

/// A remote host as the picker knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    pub name: String,
    pub state: HostState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HostState {
    Connecting,
    Up(Vec<SessionInfo>),
    /// Unreachable, and why; its watcher keeps retrying with backoff.
    Down(String),
}

/// One row: a session, where it is, and its group.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub host: &'a str,
    pub session: &'a SessionInfo,
    pub group: Group,
}

impl Entry<'_> {
    /// `HOST:ID`, or the id for a local session.
    pub fn key(&self) -> String {
        key(self.host, &self.session.id)
    }

    /// Whether `k` (a [`key`]) names this session; allocates nothing.
    pub fn is(&self, k: &str) -> bool {
        is_key(k, self.host, &self.session.id)
    }

    fn label(&self) -> String {
        let name = self
            .session
            .name
            .clone()
            .unwrap_or_else(|| self.session.id.clone());
        if self.host == LOCAL {
            name
        } else {
            format!("{}:{name}", self.host)
        }
    }
}

pub fn key(host: &str, id: &str) -> String {
    if host == LOCAL {
        id.to_string()
    } else {
        format!("{host}:{id}")
    }
}

/// Whether `k` is [`key`]`(host, id)`, without building it.
pub fn is_key(k: &str, host: &str, id: &str) -> bool {
    if host == LOCAL {
        k == id
    } else {
        k.strip_prefix(host)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|rest| rest == id)
    }
}

/// The last seq looked at, by host and session id. Nested so that a lookup allocates
/// nothing: every frame groups the whole fleet, thousands of sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen(HashMap<String, HashMap<String, u64>>);

impl Seen {
    pub fn get(&self, host: &str, id: &str) -> Option<u64> {
        self.0.get(host)?.get(id).copied()
    }

    pub fn insert(&mut self, host: &str, id: &str, seq: u64) {
        self.host_mut(host).insert(id.to_string(), seq);
    }

    fn host_mut(&mut self, host: &str) -> &mut HashMap<String, u64> {
        self.0.entry(host.to_string()).or_default()
    }
}

/// The peek of one session: the last thing it said, what it waits on, your reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peek {
    pub key: String,
    pub label: String,
    pub found: Option<Result<PeekInfo, String>>,
    pub reply: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeekInfo {
    pub last_message: Option<String>,
    /// The calls it waits on, one line each (`bash: cargo test`).
    pub pending: Vec<String>,
}

/// A session's group; `seen` is the last seq you looked at (idle sessions finished before
/// the picker first saw them count as looked at).
pub fn group(s: &SessionInfo, seen: Option<u64>) -> Group {
    // A workflow checkpoint waits for a person whatever the agent is doing.
    if s.waiting_checkpoints > 0 {
        return Group::NeedsInput;
    }
    match (s.status, &s.stop_reason) {
        (SessionStatus::Running | SessionStatus::Rescheduling, _) => Group::Working,
        (SessionStatus::Idle, Some(StopReason::RequiresAction { .. })) => Group::NeedsInput,
        (SessionStatus::Idle, Some(StopReason::Error | StopReason::RetriesExhausted))
        | (SessionStatus::Terminated, _) => Group::Failed,
        (SessionStatus::Idle, Some(StopReason::EndTurn))
            if seen.is_none_or(|seen| s.last_seq > seen) =>
        {
            Group::Done
        }
        _ => Group::Idle,
    }
}

/// The new name being typed for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renaming {
    pub id: String,
    /// What the session is called now (shown in the prompt).
    pub from: String,
    pub name: String,
}

/// The new-session form: each field optional (the daemon's defaults apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSession {
    pub name: String,
    /// `NAME[@VERSION]`.
    pub agent: String,
    pub model: String,
    pub dir: String,
    /// The field being typed into: an index into `LABELS`.
    pub field: usize,
}

/// ctrl-u: the whole field goes.
fn clear_field(field: &mut String) {
    field.clear();
}

/// ctrl-w: the last word goes, with the spaces after it (a path loses its last segment).
fn delete_word(field: &mut String) {
    while field.ends_with(' ') {
        field.pop();
    }
    while let Some(c) = field.chars().last() {
        if matches!(c, ' ' | '/' | '-' | '_' | '.') {
            break;
        }
        field.pop();
    }
    // A separator right before the word goes with it, unless it is all that is left.
    if field.len() > 1 && field.ends_with(['/', '-', '_', '.']) {
        field.pop();
    }
}

/// A typed character for a session name: names are one word, so a space becomes `-` where
/// the user sees it (not silently dropped); other whitespace is ignored.
fn name_char(c: char) -> Option<char> {
    match c {
        ' ' => Some('-'),
        c if c.is_whitespace() => None,
        c => Some(c),
    }
}

impl NewSession {
    pub const LABELS: [&'static str; 4] = ["name", "agent", "model", "directory"];

    fn field_mut(&mut self) -> &mut String {
        match self.field {
            0 => &mut self.name,
            1 => &mut self.agent,
            2 => &mut self.model,
            _ => &mut self.dir,
        }
    }

    pub fn value(&self, field: usize) -> &str {
        match field {
            0 => &self.name,
            1 => &self.agent,
            2 => &self.model,
            _ => &self.dir,
        }
    }
}

#[derive(Debug, Default)]
pub struct Picker {
    pub sessions: Vec<SessionInfo>,
    pub agents: HashMap<String, String>,
    pub loaded: bool,
    pub filter: String,
    pub selected: usize,
    /// Id of the session a delete waits to be confirmed for.
    pub confirm_delete: Option<String>,
    /// The name being typed for a new session.
    pub creating: Option<NewSession>,
    pub renaming: Option<Renaming>,
    pub notice: Option<String>,
    pub spinner: usize,
    pub now: Option<SystemTime>,
    /// The `[[remotes]]`, in config order.
    pub remotes: Vec<HostView>,
    /// Last seq looked at, by session; sessions idle when first listed start looked at.
    pub seen: Seen,
    pub peek: Option<Peek>,
    /// When the picker first saw each session working (for the turn-length threshold).
    pub working_since: HashMap<String, SystemTime>,
    /// A finished turn notifies only when it ran at least this long (`[notify] min_turn_secs`).
    pub notify_min_turn: std::time::Duration,
    /// This machine's deployments (schedules), for the Scheduled lines and session markers.
    pub deployments: Vec<tether_proto::deployment::Deployment>,
    /// The key of the session on screen, when a session view watches the fleet: never news.
    pub attached: Option<String>,
}

impl Picker {
    /// Every session of every host that answered, matching the filter (name, id, title,
    /// model, agent or host contain it), grouped, newest activity first in each group.
    pub fn visible(&self) -> Vec<Entry<'_>> {
        let f = self.filter.to_lowercase();
        let hosts = std::iter::once((LOCAL, self.sessions.as_slice())).chain(
            self.remotes.iter().filter_map(|h| match &h.state {
                HostState::Up(s) => Some((h.name.as_str(), s.as_slice())),
                _ => None,
            }),
        );
        let mut out: Vec<Entry<'_>> = hosts
            .flat_map(|(host, list)| list.iter().map(move |s| (host, s)))
            .filter(|(host, s)| {
                f.is_empty()
                    || [
                        Some(&s.id),
                        s.name.as_ref(),
                        s.title.as_ref(),
                        Some(&s.model),
                        self.agent_name(s),
                    ]
                    .into_iter()
                    .flatten()
                    .any(|t| t.to_lowercase().contains(&f))
                    || (*host != LOCAL && host.to_lowercase().contains(&f))
            })
            .map(|(host, s)| Entry {
                host,
                session: s,
                group: group(s, self.seen.get(host, &s.id)),
            })
            .collect();
        out.sort_unstable_by(|a, b| {
            (
                a.group,
                b.session.updated_at.as_str(),
                a.host,
                a.session.id.as_str(),
            )
                .cmp(&(
                    b.group,
                    a.session.updated_at.as_str(),
                    b.host,
                    b.session.id.as_str(),
                ))
        });
        out
    }

    /// The name of the deployment that fired a local session, if one did.
    pub fn deployment_name(&self, host: &str, s: &SessionInfo) -> Option<&str> {
        let id = s.deployment_id.as_deref()?;
        if host != LOCAL {
            return None;
        }
        self.deployments
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.name.as_str())
    }

    /// Deployments that will fire by themselves, soonest first (paused ones last): what the
    /// Scheduled lines show. Each with its next fire time, if it has one.
    pub fn scheduled(&self) -> Vec<(&tether_proto::deployment::Deployment, Option<&str>)> {
        let mut out: Vec<_> = self
            .deployments
            .iter()
            .filter(|d| d.archived_at.is_none())
            .filter_map(|d| {
                let sched = d.schedule.as_ref()?;
                Some((d, sched.upcoming_runs_at.first().map(String::as_str)))
            })
            .collect();
        out.sort_by(|a, b| {
            let paused = |d: &tether_proto::deployment::Deployment| d.paused_reason.is_some();
            (paused(a.0), a.1.is_none(), a.1, &a.0.name).cmp(&(
                paused(b.0),
                b.1.is_none(),
                b.1,
                &b.0.name,
            ))
        });
        out
    }

    /// The name of the agent a session pinned, when it is not the default one.
    pub fn agent_name(&self, s: &SessionInfo) -> Option<&String> {
        let name = self.agents.get(&s.agent.as_ref()?.id)?;
        (name != "default").then_some(name)
    }

    fn current(&self) -> Option<Entry<'_>> {
        self.visible().get(self.selected).copied()
    }

    /// Every session of every host that answered, unfiltered and unsorted.
    fn all(&self) -> impl Iterator<Item = (&str, &SessionInfo)> {
        std::iter::once((LOCAL, self.sessions.as_slice()))
            .chain(self.remotes.iter().filter_map(|h| match &h.state {
                HostState::Up(s) => Some((h.name.as_str(), s.as_slice())),
                _ => None,
            }))
            .flat_map(|(host, list)| list.iter().map(move |s| (host, s)))
    }

    pub fn any_running(&self) -> bool {
        self.all().any(|(_, s)| s.status == SessionStatus::Running)
    }

    /// How many sessions need you (the title's count), whatever the filter shows.
    pub fn needs_you(&self) -> usize {
        self.all()
            .filter(|(host, s)| {
                matches!(
                    group(s, self.seen.get(host, &s.id)),
                    Group::NeedsInput | Group::Failed | Group::Done
                )
            })
            .count()
    }

    /// Idle sessions listed for the first time count as looked at: Done means "finished
    /// since you opened the picker or last looked", not "ever finished".
    fn note_first_sight(&mut self, host: &str, list: &[SessionInfo]) {
        let seen = self.seen.host_mut(host);
        for s in list {
            if !seen.contains_key(&s.id) {
                let looked = if s.status == SessionStatus::Idle {
                    s.last_seq
                } else {
                    0
                };
                seen.insert(s.id.clone(), looked);
            }
        }
    }

    /// A looked-at idle session stays looked at through events that are not a turn (a
    /// rename, a title): Done means a turn finished since you looked, and every turn uses
    /// the model, so its count of model requests moves.
    fn keep_looked_at(&mut self, host: &str, before: &SessionInfo, now: &SessionInfo) {
        let ended_turn = |x: &SessionInfo| {
            x.status == SessionStatus::Idle && matches!(x.stop_reason, Some(StopReason::EndTurn))
        };
        let looked = self
            .seen
            .get(host, &now.id)
            .is_some_and(|seen| seen >= before.last_seq);
        if looked
            && ended_turn(before)
            && ended_turn(now)
            && before.usage.model_requests == now.usage.model_requests
        {
            self.seen.insert(host, &now.id, now.last_seq);
        }
    }

    /// Notices for sessions of `host` that moved into Needs input, Failed or Done between
    /// `old` and `new`, or appeared there needing input or failed (not on the host's first
    /// list: that is history, not news); and keeps the working-since clock.
    fn transitions(
        &mut self,
        host: &str,
        old: Option<&[SessionInfo]>,
        new: &[SessionInfo],
    ) -> Vec<PickerEffect> {
        let Some(old) = old else {
            for s in new {
                if let (SessionStatus::Running, Some(now)) = (s.status, self.now) {
                    self.working_since.insert(key(host, &s.id), now);
                }
            }
            return Vec::new();
        };
        // By id: a fleet of thousands is one pass, not one search per session.
        let old: HashMap<&str, &SessionInfo> = old.iter().map(|o| (o.id.as_str(), o)).collect();
        new.iter()
            .filter_map(|s| self.transition(host, old.get(s.id.as_str()).copied(), s))
            .collect()
    }

    /// The notice for one session of `host` that was `old` (None: new to the list) and is
    /// now `s`, if it is news: not for the one being peeked at or looked at.
    fn transition(
        &mut self,
        host: &str,
        old: Option<&SessionInfo>,
        s: &SessionInfo,
    ) -> Option<PickerEffect> {
        if let Some(b) = old {
            self.keep_looked_at(host, b, s);
        }
        let seen = self.seen.get(host, &s.id);
        let now_group = group(s, seen);
        let k = key(host, &s.id);
        let since = self.working_since.get(&k).copied();
        if now_group == Group::Working {
            if let (None, Some(now)) = (since, self.now) {
                self.working_since.insert(k, now);
            }
            return None;
        }
        self.working_since.remove(&k);
        let before = old.map(|b| group(b, seen));
        if before == Some(now_group)
            || self.peek.as_ref().is_some_and(|pk| pk.key == k)
            || self.attached.as_deref() == Some(k.as_str())
        {
            return None;
        }
        let label = match (&s.name, host) {
            (Some(n), LOCAL) => n.clone(),
            (None, LOCAL) => s.id.clone(),
            (n, h) => format!("{h}:{}", n.as_deref().unwrap_or(&s.id)),
        };
        let ran = since
            .zip(self.now)
            .and_then(|(a, b)| b.duration_since(a).ok());
        let (kind, text) = match now_group {
            Group::NeedsInput => ("session.requires_action", format!("{label} needs input")),
            Group::Failed => (
                "session.errored",
                format!(
                    "{label} failed ({})",
                    s.stop_reason
                        .as_ref()
                        .map_or("terminated", crate::render::stop_reason_text)
                ),
            ),
            Group::Done if ran.is_some_and(|r| r >= self.notify_min_turn) => (
                "session.idled",
                format!(
                    "{label} finished its turn ({} s)",
                    ran.map_or(0, |r| r.as_secs())
                ),
            ),
            _ => return None,
        };
        Some(PickerEffect::Notify(crate::notify::Notice {
            kind: kind.into(),
            host: host.into(),
            session_id: s.id.clone(),
            name: s.name.clone(),
            text,
        }))
    }

    /// Folds a host's pushed change into its list, with the notices it makes. Only the
    /// sessions that changed are looked at: a push costs the same on a fleet of thousands.
    fn apply_change(
        &mut self,
        host: Option<&str>,
        changed: Vec<SessionInfo>,
        removed: &[String],
    ) -> Vec<PickerEffect> {
        let name = host.unwrap_or(LOCAL);
        let list = match host {
            None if self.loaded => &self.sessions,
            None => return Vec::new(),
            Some(h) => match self.remotes.iter().find(|r| r.name == h).map(|r| &r.state) {
                Some(HostState::Up(list)) => list,
                // The full list comes first; a change to a host not listed yet is dropped.
                _ => return Vec::new(),
            },
        };
        let olds: Vec<Option<SessionInfo>> = changed
            .iter()
            .map(|s| list.iter().find(|o| o.id == s.id).cloned())
            .collect();
        self.note_first_sight(name, &changed);
        let notices = changed
            .iter()
            .zip(&olds)
            .filter_map(|(s, old)| self.transition(name, old.as_ref(), s))
            .collect();
        let list = match host {
            None => &mut self.sessions,
            Some(h) => match self.remotes.iter_mut().find(|r| r.name == h) {
                Some(HostView {
                    state: HostState::Up(list),
                    ..
                }) => list,
                _ => return notices,
            },
        };
        if !removed.is_empty() {
            list.retain(|s| !removed.contains(&s.id));
        }
        for s in changed {
            match list.iter_mut().find(|o| o.id == s.id) {
                Some(o) => *o = s,
                None => list.push(s),
            }
        }
        notices
    }

    /// The selected session's host and id, to keep it selected across a change.
    fn selection(&self) -> Option<(String, String)> {
        self.current()
            .map(|e| (e.host.to_string(), e.session.id.clone()))
    }

    /// Keeps the selection on the same session across a list change.
    fn keep_selection(&mut self, keep: Option<(String, String)>) {
        if let Some((host, id)) = keep {
            self.selected = self
                .visible()
                .iter()
                .position(|e| e.host == host && e.session.id == id)
                .unwrap_or(0);
        }
    }
}

pub fn update(p: &mut Picker, msg: PickerMsg) -> Vec<PickerEffect> {
    match msg {
        PickerMsg::Sessions(list) => {
            let keep = p.selection();
            p.note_first_sight(LOCAL, &list);
            let old = std::mem::take(&mut p.sessions);
            let notices = p.transitions(LOCAL, p.loaded.then_some(old.as_slice()), &list);
            p.sessions = list;
            p.loaded = true;
            p.keep_selection(keep);
            notices
        }
        PickerMsg::Changed {
            host,
            changed,
            removed,
        } => {
            let keep = p.selection();
            let notices = p.apply_change(host.as_deref(), changed, &removed);
            p.keep_selection(keep);
            notices
        }
        PickerMsg::Host { name, sessions } => {
            let keep = p.selection();
            let mut notices = Vec::new();
            if let Ok(list) = &sessions {
                p.note_first_sight(&name, list);
                // A host coming back up is not news about its sessions.
                let old = match p.remotes.iter().find(|h| h.name == name).map(|h| &h.state) {
                    Some(HostState::Up(old)) => Some(old.clone()),
                    _ => None,
                };
                notices = p.transitions(&name, old.as_deref(), list);
            }
            let state = match sessions {
                Ok(list) => HostState::Up(list),
                Err(why) => HostState::Down(why),
            };
            match p.remotes.iter_mut().find(|h| h.name == name) {
                Some(h) => h.state = state,
                None => p.remotes.push(HostView { name, state }),
            }
            p.keep_selection(keep);
            notices
        }
        PickerMsg::Peeked { key, found } => {
            if let Some(peek) = p.peek.as_mut().filter(|pk| pk.key == key) {
                peek.found = Some(found);
            }
            Vec::new()
        }
        PickerMsg::Agents(names) => {
            p.agents = names;
            Vec::new()
        }
        PickerMsg::Deployments(list) => {
            p.deployments = list;
            Vec::new()
        }
        PickerMsg::Failed(m) | PickerMsg::Notice(m) => {
            p.notice = Some(m);
            Vec::new()
        }
        PickerMsg::Tick(now) => {
            p.now = Some(now);
            p.spinner = p.spinner.wrapping_add(1);
            Vec::new()
        }
        PickerMsg::Key(k) if k.kind == KeyEventKind::Release => Vec::new(),
        PickerMsg::Key(k) => on_key(p, k),
    }
}

/// What marks `e` looked at: its host, id and last seq.
fn looked_at(e: &Entry<'_>) -> (String, String, u64) {
    (e.host.to_string(), e.session.id.clone(), e.session.last_seq)
}

fn on_key(p: &mut Picker, k: KeyEvent) -> Vec<PickerEffect> {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    if let Some(peek) = &mut p.peek {
        match k.code {
            KeyCode::Esc | KeyCode::Tab => p.peek = None,
            KeyCode::Char('c') | KeyCode::Char('q') if ctrl => return vec![PickerEffect::Quit],
            KeyCode::Char('y') if ctrl => {
                p.notice = Some(format!("approving what {} waits on…", peek.label));
                return vec![PickerEffect::Approve(peek.key.clone())];
            }
            KeyCode::Enter if peek.reply.trim().is_empty() => {
                return vec![PickerEffect::Attach(peek.key.clone())];
            }
            KeyCode::Enter => {
                let text = std::mem::take(&mut peek.reply);
                p.notice = Some(format!("sent to {}", peek.label));
                return vec![PickerEffect::Reply {
                    key: peek.key.clone(),
                    text,
                }];
            }
            KeyCode::Backspace => {
                peek.reply.pop();
            }
            KeyCode::Char(c) if !ctrl => peek.reply.push(c),
            _ => {}
        }
        return Vec::new();
    }
    if let Some(form) = &mut p.creating {
        match k.code {
            KeyCode::Enter => {
                let mut form = form.clone();
                form.field = 0;
                p.creating = None;
                return vec![PickerEffect::Create(form)];
            }
            KeyCode::Esc => p.creating = None,
            KeyCode::Tab | KeyCode::Down => {
                form.field = (form.field + 1) % NewSession::LABELS.len()
            }
            KeyCode::BackTab | KeyCode::Up => {
                form.field = (form.field + NewSession::LABELS.len() - 1) % NewSession::LABELS.len()
            }
            KeyCode::Backspace => {
                form.field_mut().pop();
            }
            KeyCode::Char('u') if ctrl => clear_field(form.field_mut()),
            KeyCode::Char('w') if ctrl => delete_word(form.field_mut()),
            // A directory keeps its spaces; a name turns them into `-`; agent and model
            // names have none.
            KeyCode::Char(c) if !ctrl => {
                let c = match form.field {
                    0 => name_char(c),
                    3 => Some(c),
                    _ => (!c.is_whitespace()).then_some(c),
                };
                if let Some(c) = c {
                    form.field_mut().push(c);
                }
            }
            _ => {}
        }
        return Vec::new();
    }
    if let Some(r) = &mut p.renaming {
        match k.code {
            KeyCode::Enter => {
                let r = r.clone();
                p.renaming = None;
                if r.name.trim().is_empty() || r.name == r.from {
                    p.notice = Some("not renamed".into());
                    return Vec::new();
                }
                p.notice = Some(format!("renaming {} to {}…", r.from, r.name));
                return vec![PickerEffect::Rename {
                    id: r.id,
                    name: r.name,
                }];
            }
            KeyCode::Esc => {
                p.renaming = None;
                p.notice = Some("not renamed".into());
            }
            KeyCode::Backspace => {
                r.name.pop();
            }
            KeyCode::Char('u') if ctrl => clear_field(&mut r.name),
            KeyCode::Char('w') if ctrl => delete_word(&mut r.name),
            // Names are one word (letters, digits, - _ .); the daemon explains the rules.
            KeyCode::Char(c) if !ctrl => {
                if let Some(c) = name_char(c) {
                    r.name.push(c);
                }
            }
            _ => {}
        }
        return Vec::new();
    }
    if let Some(id) = p.confirm_delete.take() {
        if matches!(k.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
            p.notice = Some(format!("deleting {id}…"));
            return vec![PickerEffect::Delete(id)];
        }
        p.notice = Some("not deleted".into());
        return Vec::new();
    }
    p.notice = None;
    let n = p.visible().len();
    match k.code {
        KeyCode::Char('c') | KeyCode::Char('q') if ctrl => vec![PickerEffect::Quit],
        KeyCode::Esc if p.filter.is_empty() => vec![PickerEffect::Quit],
        KeyCode::Esc => {
            p.filter.clear();
            p.selected = 0;
            Vec::new()
        }
        KeyCode::Up => {
            p.selected = p.selected.saturating_sub(1);
            Vec::new()
        }
        KeyCode::Down => {
            p.selected = (p.selected + 1).min(n.saturating_sub(1));
            Vec::new()
        }
        KeyCode::Enter => match p.current().map(|e| (e.key(), looked_at(&e))) {
            Some((key, (host, id, seq))) => {
                p.seen.insert(&host, &id, seq);
                vec![PickerEffect::Attach(key)]
            }
            // Nothing at all yet: Enter starts the first session.
            None if p.filter.is_empty() => {
                p.creating = Some(NewSession::default());
                Vec::new()
            }
            // A filter that matches nothing: say so, don't open the form by surprise.
            None => {
                p.notice = Some(format!(
                    "no session matches `{}`: esc clears the filter, ctrl-n starts a new session",
                    p.filter
                ));
                Vec::new()
            }
        },
        KeyCode::Char('n') if ctrl => {
            p.creating = Some(NewSession::default());
            Vec::new()
        }
        KeyCode::Tab => match p.current().map(|e| (e.key(), e.label(), looked_at(&e))) {
            Some((key, label, (host, id, seq))) => {
                // Peeking is looking: a Done session is done being news.
                p.seen.insert(&host, &id, seq);
                p.peek = Some(Peek {
                    label,
                    key: key.clone(),
                    ..Peek::default()
                });
                vec![PickerEffect::Peek(key)]
            }
            None => Vec::new(),
        },
        KeyCode::Char('a') if ctrl => match p.current() {
            Some(e) => vec![PickerEffect::Archive(e.key())],
            None => Vec::new(),
        },
        KeyCode::Char('d') if ctrl => {
            if let Some(e) = p.current() {
                let label = e.label();
                p.confirm_delete = Some(e.key());
                p.notice = Some(format!(
                    "delete {label} with its log and workspace? y to confirm, any other key keeps it"
                ));
            }
            Vec::new()
        }
        KeyCode::Delete => {
            if let Some(e) = p.current() {
                let label = e.label();
                p.confirm_delete = Some(e.key());
                p.notice = Some(format!(
                    "delete {label} with its log and workspace? y to confirm, any other key keeps it"
                ));
            }
            Vec::new()
        }
        KeyCode::Char('r') if ctrl => {
            if let Some(e) = p.current() {
                p.renaming = Some(Renaming {
                    id: e.key(),
                    name: e.session.name.clone().unwrap_or_default(),
                    from: e.label(),
                });
            }
            Vec::new()
        }
        KeyCode::Backspace => {
            p.filter.pop();
            p.selected = 0;
            Vec::new()
        }
        KeyCode::Char('u') if ctrl => {
            clear_field(&mut p.filter);
            p.selected = 0;
            Vec::new()
        }
        KeyCode::Char('w') if ctrl => {
            delete_word(&mut p.filter);
            p.selected = 0;
            Vec::new()
        }
        KeyCode::Char(c) if !ctrl => {
            p.filter.push(c);
            p.selected = 0;
            Vec::new()
        }
        _ => Vec::new(),
    }
}
