//! The threads of a multi-agent session as the view knows them: a fold over the thread events
//! of the primary's stream (`session.thread_created`, `session.thread_status_*`, cross-posted
//! tool calls and their answers), corrected by `thread.list` answers (which alone know costs).
//! Pure; the panel (view/threads.rs) draws it, the update asks for `thread.list` when a thread
//! event says it is stale.

use std::collections::BTreeSet;

use tether_proto::thread::SessionThread;
use tether_proto::{Event, EventBody, SessionStatus, StopReason, multiagent::ADVISOR_NAME};

/// Where one thread stands, as the panel shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadState {
    Running,
    Idle,
    /// Idle with calls waiting for a client (an approval or a custom tool's result).
    Waiting,
    Rescheduling,
    Terminated,
}

impl ThreadState {
    pub fn label(self) -> &'static str {
        match self {
            ThreadState::Running => "running",
            ThreadState::Idle => "idle",
            ThreadState::Waiting => "waiting for input",
            ThreadState::Rescheduling => "rescheduling",
            ThreadState::Terminated => "terminated",
        }
    }

    fn of(status: SessionStatus, stop: Option<&StopReason>) -> ThreadState {
        match (status, stop) {
            (SessionStatus::Running, _) => ThreadState::Running,
            (SessionStatus::Rescheduling, _) => ThreadState::Rescheduling,
            (SessionStatus::Terminated, _) => ThreadState::Terminated,
            (SessionStatus::Idle, Some(StopReason::RequiresAction { event_ids }))
                if !event_ids.is_empty() =>
            {
                ThreadState::Waiting
            }
            (SessionStatus::Idle, _) => ThreadState::Idle,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThreadRow {
    /// `sthr_...`
    pub id: String,
    /// The agent's name (`anthropic.advisor` for the advisor).
    pub name: String,
    /// `provider/model`, when known.
    pub model: Option<String>,
    pub parent: Option<String>,
    pub state: ThreadState,
    /// USD, from `thread.list` (None until the thread first went idle, or when unpriced).
    pub cost_usd: Option<f64>,
    /// Calls of this thread waiting for a client, by event id.
    pub waiting: BTreeSet<String>,
    pub archived: bool,
}

impl ThreadRow {
    pub fn is_advisor(&self) -> bool {
        self.name == ADVISOR_NAME
    }

    /// Waiting for input: a call to approve or answer, whatever the last status said.
    pub fn waits(&self) -> bool {
        !self.waiting.is_empty() || self.state == ThreadState::Waiting
    }
}

/// One row of the panel: a thread, or the advisor's consultations folded into one.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeRow {
    /// The thread switching to this row shows (the newest consultation for the advisor).
    pub id: String,
    pub name: String,
    pub model: Option<String>,
    pub state: ThreadState,
    pub cost_usd: Option<f64>,
    pub waits: bool,
    /// 0 for the primary, 1 for its children, ...
    pub depth: usize,
    /// How many consultations an advisor row stands for (1 for every other row).
    pub count: usize,
}

/// The session's threads: the primary first, then the children in creation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Threads {
    pub primary: Option<ThreadRow>,
    pub children: Vec<ThreadRow>,
}

/// What a thread event asks of the view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Folded {
    /// The event was about threads: `thread.list` is stale (costs, statuses).
    pub refresh: bool,
}

impl Threads {
    /// Whether the session has any child thread (else there is no panel at all).
    pub fn any(&self) -> bool {
        !self.children.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&ThreadRow> {
        self.primary
            .iter()
            .chain(self.children.iter())
            .find(|t| t.id == id)
    }

    /// The thread whose call `event_id` is, when a child's.
    pub fn owner_of(&self, event_id: &str) -> Option<&ThreadRow> {
        self.children.iter().find(|t| t.waiting.contains(event_id))
    }

    fn child_mut(&mut self, id: &str, name: &str) -> &mut ThreadRow {
        let i = match self.children.iter().position(|t| t.id == id) {
            Some(i) => i,
            None => {
                // A status of a thread whose creation is in an older page: known from now on.
                self.children.push(ThreadRow {
                    id: id.to_string(),
                    name: name.to_string(),
                    model: None,
                    parent: self.primary.as_ref().map(|p| p.id.clone()),
                    state: ThreadState::Idle,
                    cost_usd: None,
                    waiting: BTreeSet::new(),
                    archived: false,
                });
                self.children.len() - 1
            }
        };
        &mut self.children[i]
    }

    /// Folds one event of the primary's stream in.
    pub fn apply(&mut self, e: &Event) -> Folded {
        let Some(tid) = e.session_thread_id.as_deref() else {
            return Folded::default();
        };
        // The primary's own id, when the daemon names it (it stays out of the children).
        if self.primary.as_ref().is_some_and(|p| p.id == tid) {
            return Folded::default();
        }
        let refresh = Folded { refresh: true };
        match &e.body {
            EventBody::SessionThreadCreated {
                agent_name, model, ..
            } => {
                let t = self.child_mut(tid, agent_name);
                t.name = agent_name.clone();
                if model.is_some() {
                    t.model = model.clone();
                }
                return refresh;
            }
            EventBody::SessionThreadStatusRunning { agent_name } => {
                self.child_mut(tid, agent_name).state = ThreadState::Running;
                return refresh;
            }
            EventBody::SessionThreadStatusRescheduled { agent_name } => {
                self.child_mut(tid, agent_name).state = ThreadState::Rescheduling;
                return refresh;
            }
            EventBody::SessionThreadStatusTerminated { agent_name } => {
                let t = self.child_mut(tid, agent_name);
                t.state = ThreadState::Terminated;
                t.waiting.clear();
                return refresh;
            }
            EventBody::SessionThreadStatusIdle {
                agent_name,
                stop_reason,
                ..
            } => {
                let t = self.child_mut(tid, agent_name);
                t.state = ThreadState::of(SessionStatus::Idle, Some(stop_reason));
                match stop_reason {
                    StopReason::RequiresAction { event_ids } => {
                        t.waiting.extend(event_ids.iter().cloned())
                    }
                    // An interrupt closes the pending calls.
                    _ => t.waiting.clear(),
                }
                return refresh;
            }
            // A child's call cross-posted for a client: it waits from now on.
            EventBody::AgentCustomToolUse { .. }
            | EventBody::AgentToolUse {
                evaluated_permission: Some(tether_proto::Permission::Ask),
                ..
            }
            | EventBody::AgentMcpToolUse {
                evaluated_permission: Some(tether_proto::Permission::Ask),
                ..
            } => {
                if let Some(t) = self.children.iter_mut().find(|t| t.id == tid) {
                    t.waiting.insert(e.id.clone());
                }
            }
            // Answered (the echo names the thread).
            EventBody::UserToolConfirmation {
                tool_use_id: id, ..
            }
            | EventBody::UserCustomToolResult {
                custom_tool_use_id: id,
                ..
            } => {
                for t in &mut self.children {
                    if t.waiting.remove(id)
                        && t.waiting.is_empty()
                        && t.state == ThreadState::Waiting
                    {
                        // Nothing left to answer; its next status says what it does now.
                        t.state = ThreadState::Idle;
                    }
                }
                // A list asked before the answer may still name the call.
                return refresh;
            }
            _ => {}
        }
        Folded::default()
    }

    /// Takes a `thread.list` answer: it is the truth for what it says (status, cost, model),
    /// what only events know (calls waiting) stays.
    pub fn set_list(&mut self, list: &[SessionThread]) {
        for st in list {
            let model = Some(st.agent.model_id().to_string()).filter(|m| !m.is_empty());
            let cost = st.usage.as_ref().and_then(|u| u.tokens.cost_usd);
            let state = ThreadState::of(st.status, st.stop_reason.as_ref());
            if st.parent_thread_id.is_none() {
                let waiting = self.primary.take().map(|p| p.waiting).unwrap_or_default();
                self.primary = Some(ThreadRow {
                    id: st.id.clone(),
                    name: st.agent_name().to_string(),
                    model,
                    parent: None,
                    state,
                    cost_usd: cost,
                    waiting,
                    archived: st.archived_at.is_some(),
                });
                continue;
            }
            let t = self.child_mut(&st.id, st.agent_name());
            t.name = st.agent_name().to_string();
            t.model = model.or(t.model.take());
            t.parent = st.parent_thread_id.clone();
            t.cost_usd = cost;
            t.archived = st.archived_at.is_some();
            // The list's status is as of its answer; calls still waiting keep the mark.
            t.state = state;
            if let Some(StopReason::RequiresAction { event_ids }) = &st.stop_reason {
                t.waiting.extend(event_ids.iter().cloned());
            }
            if matches!(state, ThreadState::Running | ThreadState::Terminated) {
                t.waiting.clear();
            }
        }
    }

    /// The panel's rows: the primary (as `primary` when the list has not named it yet), its
    /// children depth-first in creation order, the advisor's consultations folded into one row.
    pub fn tree(&self, primary: TreeRow) -> Vec<TreeRow> {
        let mut rows = vec![match &self.primary {
            Some(p) => TreeRow {
                id: p.id.clone(),
                name: primary.name.clone(),
                model: p.model.clone().or(primary.model),
                state: primary.state,
                cost_usd: p.cost_usd.or(primary.cost_usd),
                waits: primary.waits || p.waits(),
                depth: 0,
                count: 1,
            },
            None => primary,
        }];
        // Children by parent, in creation order, built once: a run's fan-out makes a thousand
        // threads, and looking each one's parent up in the list per row made every frame
        // cubic in them. A child of an unknown (or the primary) thread hangs under the
        // primary (`None`).
        let known: std::collections::HashSet<&str> =
            self.children.iter().map(|t| t.id.as_str()).collect();
        let mut kids: std::collections::HashMap<Option<&str>, Vec<&ThreadRow>> =
            std::collections::HashMap::new();
        for t in &self.children {
            let parent = t
                .parent
                .as_deref()
                .filter(|p| *p != t.id && known.contains(p));
            if !t.archived {
                kids.entry(parent).or_default().push(t);
            }
        }
        Self::push_children(&kids, None, 1, &mut rows);
        rows
    }

    fn push_children(
        kids: &std::collections::HashMap<Option<&str>, Vec<&ThreadRow>>,
        parent: Option<&str>,
        depth: usize,
        rows: &mut Vec<TreeRow>,
    ) {
        let mut advisor: Option<usize> = None;
        for t in kids.get(&parent).into_iter().flatten() {
            if t.is_advisor() {
                if let Some(i) = advisor {
                    // One row for every consultation: the newest decides what it shows.
                    let r = &mut rows[i];
                    r.id = t.id.clone();
                    r.model = t.model.clone().or(r.model.take());
                    r.state = t.state;
                    r.waits |= t.waits();
                    r.cost_usd = match (r.cost_usd, t.cost_usd) {
                        (Some(a), Some(b)) => Some(a + b),
                        (a, b) => a.or(b),
                    };
                    r.count += 1;
                    continue;
                }
                advisor = Some(rows.len());
            }
            rows.push(TreeRow {
                id: t.id.clone(),
                name: t.name.clone(),
                model: t.model.clone(),
                state: t.state,
                cost_usd: t.cost_usd,
                waits: t.waits(),
                depth,
                count: 1,
            });
            if depth < 4 {
                Self::push_children(kids, Some(&t.id), depth + 1, rows);
            }
        }
    }
}

/// A thread's name as a short label for the view (the advisor's is long).
pub fn short_name(name: &str) -> &str {
    if name == ADVISOR_NAME {
        "advisor"
    } else {
        name
    }
}
