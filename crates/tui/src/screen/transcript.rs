//! The transcript: display items built from the session's events (a loaded window of the log,
//! newest last) plus the live parts that exist only as deltas (the message being written, a
//! running tool's output). Items know only their content; how they look is layout/'s business
//! (each item has an identity and a revision so that a cached layout knows when it is stale).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tether_proto::outcome::{EvaluationEnd, OutcomeSpec};
use tether_proto::{
    ConfirmationResult, Delta, DeltaKind, Event, EventBody, Permission, RetryStatusKind, Snapshot,
    StopReason, ToolStatus, blocks_text,
};

use crate::render::stop_reason_text;

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    User(String),
    Assistant {
        text: String,
        /// Still streaming (built from deltas, replaced by the stored `agent.message`).
        live: bool,
    },
    Thinking {
        text: String,
        live: bool,
    },
    Tool(Box<ToolCard>),
    /// `session.error`, with retry information.
    Error(String),
    /// A one-line event: interrupts, approvals, turn ends other than end_turn, restarts.
    Marker(String),
    /// `user.define_outcome`: the task and its rubric (collapsed until expanded).
    Outcome(Box<OutcomeSpec>),
    /// A thread started, or a message between threads (one line until expanded).
    Thread(Box<ThreadCard>),
    /// One evaluation cycle of an outcome: evaluating until its end arrives.
    Evaluation(Box<EvaluationCard>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationCard {
    pub outcome_id: String,
    /// 0-based, as on the wire.
    pub iteration: u32,
    /// The outcome's `max_iterations` when its `user.define_outcome` is loaded.
    pub max_iterations: Option<u32>,
    /// Grader model requests so far (`span.outcome_evaluation_ongoing`).
    pub requests: u32,
    /// The verdict; None while the grader is at work.
    pub end: Option<EvaluationEnd>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThreadCard {
    pub kind: ThreadCardKind,
    /// The other thread's agent name (`primary` for the primary).
    pub agent: String,
    /// The message (empty for a start).
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadCardKind {
    /// `session.thread_created`, with the model it runs on when known.
    Started { model: Option<String> },
    /// `agent.thread_message_sent` (→).
    Sent,
    /// `agent.thread_message_received` (←).
    Received,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCard {
    /// `sevt_` id of the `agent.tool_use` event (what results, deltas and approvals refer to).
    pub id: String,
    pub name: String,
    pub input: Value,
    /// Output streamed while it runs.
    pub live: String,
    pub result: Option<ToolResult>,
    /// `agent.custom_tool_use`: the client must answer it.
    pub custom: bool,
    /// `always_ask` and not answered yet: it waits for approval, it is not running.
    pub asks: bool,
    /// The agent name of the child thread that made the call, when it was cross-posted to
    /// the primary's stream.
    pub thread: Option<String>,
    /// When the call was made (its event's time), for the elapsed time of calls whose result
    /// carries none (agent, MCP and custom tools).
    pub started: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub text: String,
    pub is_error: bool,
    pub status: Option<ToolStatus>,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<u64>,
}

#[derive(Debug)]
pub struct Item {
    /// Seq of the event that created it (0 for live-only items).
    pub seq: u64,
    pub body: Body,
    pub expanded: bool,
    /// Unique among all items of this process (items move between transcripts when a page is
    /// prepended), so a layout cache can key on it.
    id: u64,
    /// Bumped on every change of what the item shows.
    rev: u64,
}

/// Where item ids come from.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Item {
    pub fn new(seq: u64, body: Body) -> Item {
        Item {
            seq,
            body,
            expanded: false,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            rev: 0,
        }
    }

    /// Marks the item changed: layouts made of it before are stale. Call after changing its
    /// body or `expanded`.
    pub fn touch(&mut self) {
        self.rev += 1;
    }

    /// (identity, revision): a layout made of this item is good while both are the same.
    pub fn version(&self) -> (u64, u64) {
        (self.id, self.rev)
    }

    pub fn is_user(&self) -> bool {
        matches!(self.body, Body::User(_))
    }

    /// The text `y` copies and search looks at.
    pub fn copy_text(&self) -> String {
        match &self.body {
            Body::User(t) | Body::Error(t) | Body::Marker(t) => t.clone(),
            Body::Assistant { text, .. } | Body::Thinking { text, .. } => text.clone(),
            Body::Outcome(o) => format!("{}\n{}", o.description, o.rubric_text()),
            Body::Thread(c) => c.text.clone(),
            Body::Evaluation(c) => match &c.end {
                Some(end) => {
                    let mut t = format!(
                        "evaluation {}: {}\n{}",
                        c.iteration + 1,
                        crate::outcome::result_label(end.result),
                        end.explanation
                    );
                    for cr in &end.criteria {
                        t.push_str(&format!(
                            "\n{} {}{}",
                            if cr.met { "✓" } else { "✗" },
                            cr.name,
                            cr.note
                                .as_deref()
                                .map(|n| format!(" — {n}"))
                                .unwrap_or_default()
                        ));
                    }
                    t
                }
                None => format!("evaluation {}: evaluating", c.iteration + 1),
            },
            Body::Tool(c) => {
                let out = c
                    .result
                    .as_ref()
                    .map(|r| r.text.as_str())
                    .unwrap_or(&c.live);
                format!(
                    "{} {}\n{out}",
                    c.name,
                    crate::render::tool_summary(&c.name, &c.input)
                )
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Transcript {
    pub items: Vec<Item>,
    /// Lowest seq loaded (paging walks back from it); 0 before anything is loaded.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Older events exist in the log that are not loaded yet.
    pub has_older: bool,
    /// Deltas numbered at or below this are already in the last snapshot.
    delta_floor: u64,
    /// Agent names of the child threads seen (`sthr_...` → name), for cross-posted calls.
    thread_names: std::collections::HashMap<String, String>,
    /// When the turn under way started (its first `running`; a wait for approval doesn't end
    /// it), for the "worked for" line that ends it.
    turn_started: Option<String>,
    /// The newest MCP authorization URL the user was asked to open (alt-u copies it).
    pub authorization_url: Option<String>,
}

/// What applying something changed, for scroll bookkeeping.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Items appended at the end.
    pub appended: usize,
    /// An existing item changed.
    pub updated: bool,
}

impl Transcript {
    /// Appends a live event; events at or below the last seq are duplicates and ignored.
    pub fn push_event(&mut self, e: &Event) -> Change {
        if e.seq <= self.last_seq {
            return Change::default();
        }
        if self.first_seq == 0 {
            self.first_seq = e.seq;
            self.has_older = e.seq > 1;
        }
        self.last_seq = e.seq;
        let before = self.items.len();
        let updated = self.apply(e);
        Change {
            appended: self.items.len() - before,
            updated,
        }
    }

    /// Puts an older page (ascending seqs, all below `first_seq`) in front; returns how many
    /// items were inserted at the front.
    pub fn prepend(&mut self, events: &[Event], has_older: bool) -> usize {
        let mut older = Transcript::default();
        for e in events
            .iter()
            .filter(|e| self.first_seq == 0 || e.seq < self.first_seq)
        {
            older.push_event(e);
        }
        // A result whose call is in this page already has a card (made from the result alone).
        let mut merged = Vec::new();
        for item in older.items {
            if let Body::Tool(card) = &item.body
                && let Some(existing) = self.items.iter_mut().find_map(|i| match &mut i.body {
                    Body::Tool(c) if c.id == card.id && c.name.is_empty() => Some(c),
                    _ => None,
                })
            {
                existing.name = card.name.clone();
                existing.input = card.input.clone();
                existing.custom = card.custom;
                for i in &mut self.items {
                    if matches!(&i.body, Body::Tool(c) if c.id == card.id) {
                        i.touch();
                    }
                }
                continue;
            }
            // A cycle whose end is in the loaded part already has its card (made from the end
            // alone): the start adds only what the end can't know.
            if let Body::Evaluation(card) = &item.body
                && let Some(existing) = self.items.iter_mut().find(|i| {
                    matches!(&i.body, Body::Evaluation(c)
                        if c.outcome_id == card.outcome_id && c.iteration == card.iteration)
                })
            {
                if let Body::Evaluation(c) = &mut existing.body {
                    c.max_iterations = c.max_iterations.or(card.max_iterations);
                    c.requests = c.requests.max(card.requests);
                }
                existing.touch();
                continue;
            }
            merged.push(item);
        }
        let n = merged.len();
        if let Some(first) = events.first() {
            self.first_seq = if self.first_seq == 0 {
                first.seq
            } else {
                self.first_seq.min(first.seq)
            };
            if self.last_seq == 0 {
                self.last_seq = events.last().map(|e| e.seq).unwrap_or(0);
            }
        }
        self.has_older = has_older;
        if self.authorization_url.is_none() {
            self.authorization_url = older.authorization_url;
        }
        merged.append(&mut self.items);
        self.items = merged;
        n
    }

    fn tool_mut(&mut self, id: &str) -> Option<&mut ToolCard> {
        self.items.iter_mut().rev().find_map(|i| match &mut i.body {
            Body::Tool(c) if c.id == id => {
                // `touch`, on the one field the borrow of the body leaves free.
                i.rev += 1;
                Some(c.as_mut())
            }
            _ => None,
        })
    }

    fn live_index(&self, thinking: bool) -> Option<usize> {
        self.items.iter().rposition(|i| match &i.body {
            Body::Assistant { live, .. } => !thinking && *live,
            Body::Thinking { live, .. } => thinking && *live,
            _ => false,
        })
    }

    /// Sets the live text (creating the item); None clears it.
    fn set_live(&mut self, thinking: bool, f: impl FnOnce(&mut String)) -> Change {
        let mut created = false;
        let idx = match self.live_index(thinking) {
            Some(i) => i,
            None => {
                created = true;
                let body = if thinking {
                    Body::Thinking {
                        text: String::new(),
                        live: true,
                    }
                } else {
                    Body::Assistant {
                        text: String::new(),
                        live: true,
                    }
                };
                self.items.push(Item::new(0, body));
                self.items.len() - 1
            }
        };
        let item = &mut self.items[idx];
        if let Body::Assistant { text, .. } | Body::Thinking { text, .. } = &mut item.body {
            f(text);
        }
        item.touch();
        Change {
            appended: usize::from(created),
            updated: true,
        }
    }

    /// Ends live items: the stored event replaces them (or, when a turn stops mid-message,
    /// the partial text stays as it was).
    fn finish_live(&mut self, thinking: bool, final_text: Option<String>) -> bool {
        match self.live_index(thinking) {
            Some(i) => {
                let item = &mut self.items[i];
                if let Body::Assistant { text, live } | Body::Thinking { text, live } =
                    &mut item.body
                {
                    if let Some(t) = final_text {
                        *text = t;
                    }
                    *live = false;
                }
                item.touch();
                true
            }
            None => false,
        }
    }

    fn apply(&mut self, e: &Event) -> bool {
        let push = |items: &mut Vec<Item>, body: Body| items.push(Item::new(e.seq, body));
        let thread = self.thread_of(e);
        match &e.body {
            EventBody::UserMessage { content } => {
                push(&mut self.items, Body::User(blocks_text(content)))
            }
            EventBody::AgentMessage { content } => {
                let text = blocks_text(content);
                if text.trim().is_empty() {
                    return false;
                }
                if let Some(i) = self.live_index(false) {
                    self.finish_live(false, Some(text));
                    self.items[i].seq = e.seq;
                    return true;
                }
                push(&mut self.items, Body::Assistant { text, live: false });
            }
            EventBody::AgentThinking { thinking, .. } => {
                if let Some(i) = self.live_index(true) {
                    self.finish_live(true, Some(thinking.clone()));
                    self.items[i].seq = e.seq;
                    return true;
                }
                push(
                    &mut self.items,
                    Body::Thinking {
                        text: thinking.clone(),
                        live: false,
                    },
                );
            }
            EventBody::AgentToolUse {
                name,
                input,
                evaluated_permission,
            }
            | EventBody::AgentMcpToolUse {
                name,
                input,
                evaluated_permission,
                ..
            } => {
                // A tool call ends the message that announced it.
                self.finish_live(false, None);
                self.finish_live(true, None);
                push(
                    &mut self.items,
                    Body::Tool(Box::new(ToolCard {
                        id: e.id.clone(),
                        name: name.clone(),
                        input: input.clone(),
                        live: String::new(),
                        result: None,
                        custom: false,
                        asks: *evaluated_permission == Some(Permission::Ask),
                        thread: thread.clone(),
                        started: e.processed_at.clone(),
                    })),
                );
            }
            EventBody::AgentCustomToolUse { name, input } => push(
                &mut self.items,
                Body::Tool(Box::new(ToolCard {
                    id: e.id.clone(),
                    name: name.clone(),
                    input: input.clone(),
                    live: String::new(),
                    result: None,
                    custom: true,
                    asks: false,
                    thread: thread.clone(),
                    started: e.processed_at.clone(),
                })),
            ),
            EventBody::AgentToolResult {
                tool_use_id,
                content,
                is_error,
                status,
                exit_code,
                duration_ms,
            } => {
                let result = ToolResult {
                    text: blocks_text(content),
                    is_error: *is_error,
                    status: Some(*status),
                    exit_code: *exit_code,
                    duration_ms: Some(*duration_ms),
                };
                return self.attach_result(e, tool_use_id, result);
            }
            EventBody::AgentMcpToolResult {
                mcp_tool_use_id,
                content,
                is_error,
            } => {
                let result = ToolResult {
                    text: blocks_text(content),
                    is_error: *is_error,
                    status: None,
                    exit_code: None,
                    duration_ms: None,
                };
                return self.attach_result(e, mcp_tool_use_id, result);
            }
            EventBody::UserCustomToolResult {
                custom_tool_use_id,
                content,
                is_error,
            } => {
                let result = ToolResult {
                    text: blocks_text(content),
                    is_error: *is_error,
                    status: None,
                    exit_code: None,
                    duration_ms: None,
                };
                return self.attach_result(e, custom_tool_use_id, result);
            }
            EventBody::UserInterrupt {} => push(
                &mut self.items,
                Body::Marker("⏹ interrupt requested".into()),
            ),
            EventBody::UserToolConfirmation {
                tool_use_id,
                result,
                deny_message,
            } => {
                if let Some(card) = self.tool_mut(tool_use_id) {
                    card.asks = false;
                }
                let text = match result {
                    ConfirmationResult::Allow => {
                        format!("✓ allowed {}", self.tool_name(tool_use_id))
                    }
                    ConfirmationResult::Deny => format!(
                        "✗ denied {}{}",
                        self.tool_name(tool_use_id),
                        deny_message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ),
                };
                push(&mut self.items, Body::Marker(text));
            }
            EventBody::SessionStatusIdle { stop_reason } => {
                let a = self.finish_live(false, None);
                let b = self.finish_live(true, None);
                let waiting = matches!(stop_reason, StopReason::RequiresAction { .. });
                let worked = if waiting {
                    None
                } else {
                    worked_for(self.turn_started.take().as_deref(), e.processed_at.as_deref())
                };
                let text = match (stop_reason, worked) {
                    (StopReason::EndTurn, None) => return a || b,
                    (StopReason::EndTurn, Some(w)) => format!("· worked for {w}"),
                    (StopReason::RequiresAction { .. }, _) => {
                        "⏸ waiting for your answer".to_string()
                    }
                    (r, w) => format!(
                        "■ turn ended: {}{}",
                        stop_reason_text(r).replace('_', " "),
                        w.map(|w| format!(" · worked for {w}")).unwrap_or_default()
                    ),
                };
                push(&mut self.items, Body::Marker(text));
            }
            EventBody::SessionUpdated {
                model,
                max_cost_usd,
                title,
                name,
                vault_ids,
                agent,
                ..
            } => {
                let mut parts = Vec::new();
                if let Some(n) = name {
                    parts.push(format!("renamed → {n}"));
                }
                if let Some(t) = title {
                    parts.push(format!("title → {t}"));
                }
                if let Some(m) = model {
                    parts.push(format!("model → {m}"));
                }
                if let Some(c) = max_cost_usd {
                    parts.push(format!("budget → ${c:.2}"));
                }
                if let Some(v) = vault_ids {
                    parts.push(format!("vaults → [{}]", v.join(", ")));
                }
                if let Some(a) = agent {
                    parts.push(crate::render::agent_summary(a));
                }
                if parts.is_empty() {
                    return false;
                }
                push(&mut self.items, Body::Marker(format!("⚙ {}", parts.join(", "))));
            }
            EventBody::AgentThreadContextCompacted { .. } => push(
                &mut self.items,
                Body::Marker(
                    "⇣ earlier conversation summarised to fit the context window (the full log stays here)"
                        .into(),
                ),
            ),
            EventBody::SessionThreadCreated {
                agent_name, model, ..
            } => {
                if let Some(t) = &e.session_thread_id {
                    self.thread_names.insert(t.clone(), agent_name.clone());
                }
                push(
                    &mut self.items,
                    Body::Thread(Box::new(ThreadCard {
                        kind: ThreadCardKind::Started {
                            model: model.clone(),
                        },
                        agent: agent_name.clone(),
                        text: String::new(),
                    })),
                )
            }
            EventBody::AgentThreadMessageSent {
                to_agent_name,
                content,
                ..
            } => push(
                &mut self.items,
                Body::Thread(Box::new(ThreadCard {
                    kind: ThreadCardKind::Sent,
                    agent: to_agent_name.clone().unwrap_or_else(|| "primary".into()),
                    text: blocks_text(content),
                })),
            ),
            EventBody::AgentThreadMessageReceived {
                from_agent_name,
                content,
                ..
            } => push(
                &mut self.items,
                Body::Thread(Box::new(ThreadCard {
                    kind: ThreadCardKind::Received,
                    agent: from_agent_name.clone().unwrap_or_else(|| "primary".into()),
                    text: blocks_text(content),
                })),
            ),
            // Thread lifecycle shows in the thread panel, not the transcript.
            EventBody::SessionThreadStatusRunning { agent_name }
            | EventBody::SessionThreadStatusIdle { agent_name, .. }
            | EventBody::SessionThreadStatusRescheduled { agent_name }
            | EventBody::SessionThreadStatusTerminated { agent_name } => {
                if let Some(t) = &e.session_thread_id {
                    self.thread_names.insert(t.clone(), agent_name.clone());
                }
                return false;
            }
            body @ (EventBody::WorkflowRunCreated { .. }
            | EventBody::WorkflowRunStatusRunning { .. }
            | EventBody::WorkflowRunStatusIdle { .. }
            | EventBody::WorkflowRunPhaseStarted { .. }
            | EventBody::WorkflowRunPhaseEnded { .. }
            | EventBody::WorkflowRunError { .. }
            | EventBody::WorkflowRunStatusEnded { .. }
            | EventBody::SpanWorkflowTaskStarted { .. }
            | EventBody::SpanWorkflowTaskFannedOut { .. }
            | EventBody::SpanWorkflowTaskChecking { .. }
            | EventBody::SpanWorkflowTaskEnded { .. }) => {
                match crate::screen::workflow::marker(body) {
                    Some(text) => push(&mut self.items, Body::Marker(text)),
                    None => return false,
                }
            }
            EventBody::SessionStatusRescheduled {} => {
                // What was streaming when the daemon went away ends above the marker; the
                // reply streamed again after the restart starts a new item below it.
                for thinking in [false, true] {
                    if let Some(i) = self.live_index(thinking)
                        && let Body::Assistant { text, live } | Body::Thinking { text, live } =
                            &mut self.items[i].body
                    {
                        if !text.trim().is_empty() && !thinking {
                            text.push_str("\n\n*(cut off by the daemon restart)*");
                        }
                        *live = false;
                        self.items[i].touch();
                    }
                }
                push(
                    &mut self.items,
                    Body::Marker("↻ resumed after a daemon restart".into()),
                )
            }
            EventBody::SessionStatusTerminated {} => {
                push(&mut self.items, Body::Marker("■ session terminated".into()))
            }
            EventBody::SessionError { error } => {
                let mut text = format!("{}: {}", error.kind, error.message);
                match error.retry_status.kind {
                    RetryStatusKind::Retrying => {
                        text.push_str(" — retrying");
                        if let Some(ms) = error.retry_in_ms {
                            text.push_str(&format!(" in {}", secs(ms)));
                        }
                        if let (Some(a), Some(m)) = (error.attempt, error.max_attempts) {
                            text.push_str(&format!(", attempt {a}/{m}"));
                        }
                    }
                    RetryStatusKind::Exhausted => text.push_str(" — gave up after retrying"),
                    RetryStatusKind::Terminal => {}
                }
                push(&mut self.items, Body::Error(text));
            }
            EventBody::UserDefineOutcome(spec) => {
                push(&mut self.items, Body::Outcome(Box::new(spec.clone())))
            }
            EventBody::SpanOutcomeEvaluationStart {
                outcome_id,
                iteration,
            } => {
                self.finish_live(false, None);
                self.finish_live(true, None);
                let card = EvaluationCard {
                    outcome_id: outcome_id.clone(),
                    iteration: *iteration,
                    max_iterations: self.max_iterations(outcome_id),
                    requests: 0,
                    end: None,
                };
                push(&mut self.items, Body::Evaluation(Box::new(card)));
            }
            EventBody::SpanOutcomeEvaluationOngoing {
                outcome_id,
                iteration,
            } => {
                return match self.evaluation_mut(outcome_id, *iteration) {
                    Some(c) => {
                        c.requests += 1;
                        true
                    }
                    None => false,
                };
            }
            EventBody::SpanOutcomeEvaluationEnd(end) => {
                if let Some(c) = self.evaluation_mut(&end.outcome_id, end.iteration) {
                    c.end = Some(end.clone());
                    return true;
                }
                // Its start is in an older page (or there was none: an interrupt before the
                // evaluation began).
                self.finish_live(false, None);
                self.finish_live(true, None);
                let card = EvaluationCard {
                    outcome_id: end.outcome_id.clone(),
                    iteration: end.iteration,
                    max_iterations: self.max_iterations(&end.outcome_id),
                    requests: 0,
                    end: Some(end.clone()),
                };
                push(&mut self.items, Body::Evaluation(Box::new(card)));
            }
            EventBody::SessionStatusRunning {} => {
                if self.turn_started.is_none() {
                    self.turn_started = e.processed_at.clone();
                }
                return false;
            }
            EventBody::SpanModelRequestStart { .. }
            | EventBody::SpanToolCallStart { .. }
            | EventBody::SpanModelRequestEnd { .. } => return false,
            // MCP elicitation (issue 25): the question and how it ended, as markers.
            EventBody::McpElicitationRequested {
                mcp_server_name,
                message,
                url,
                agent_name,
                ..
            } => {
                let who = agent_name
                    .as_ref()
                    .map(|a| format!("{a}'s "))
                    .unwrap_or_default();
                // A link tetherd refuses to show is not offered here either.
                let link = match url {
                    Some(u) if tether_proto::elicitation::check_url(u).is_ok() => {
                        format!(" (open yourself: {u})")
                    }
                    Some(_) => " (with a link tetherd does not show: not a web link)".to_string(),
                    None => String::new(),
                };
                push(
                    &mut self.items,
                    Body::Marker(format!(
                        "? {who}MCP server {mcp_server_name} asks: {message}{link}"
                    )),
                )
            }
            EventBody::McpElicitationCompleted { .. } => push(
                &mut self.items,
                Body::Marker("✓ the MCP server says the page is done".to_string()),
            ),
            EventBody::McpElicitationAnswered { action, reason, .. } => {
                use tether_proto::elicitation::ElicitationAction as A;
                let text = match (action, reason) {
                    (A::Accept, _) => "✓ answered the MCP server's question".to_string(),
                    (A::Decline, Some(r)) => format!("✗ the MCP server's question was declined: {r}"),
                    (A::Decline, None) => "✗ declined the MCP server's question".to_string(),
                    (A::Cancel, Some(r)) => format!("✗ the MCP server's question was cancelled: {r}"),
                    (A::Cancel, None) => "✗ cancelled the MCP server's question".to_string(),
                };
                push(&mut self.items, Body::Marker(text));
            }
            // MCP authorization (issue 25: a step-up, or a server the session has no
            // credential for): the URL in full, to copy (alt-u); never opened.
            EventBody::McpAuthorizationRequired {
                mcp_server_name,
                authorization_url,
                scope,
                ..
            } => {
                self.authorization_url = Some(authorization_url.clone());
                let who = thread
                    .as_deref()
                    .map(|t| format!("{t}'s "))
                    .unwrap_or_default();
                push(
                    &mut self.items,
                    Body::Marker(format!(
                        "! {who}MCP server {mcp_server_name} needs you to authorize tether{}: open this URL in a browser on tetherd's machine (alt-u copies it), then ask again:\n{authorization_url}",
                        scope
                            .as_deref()
                            .map(|s| format!(" for `{s}`"))
                            .unwrap_or_default()
                    )),
                )
            }
        }
        true
    }

    /// The agent name of the child thread a cross-posted event comes from.
    fn thread_of(&self, e: &Event) -> Option<String> {
        let t = e.session_thread_id.as_ref()?;
        Some(
            self.thread_names
                .get(t)
                .cloned()
                .unwrap_or_else(|| t.clone()),
        )
    }

    /// The `max_iterations` of a loaded `user.define_outcome`.
    fn max_iterations(&self, outcome_id: &str) -> Option<u32> {
        self.items.iter().rev().find_map(|i| match &i.body {
            Body::Outcome(o) if o.outcome_id.as_deref() == Some(outcome_id) => {
                Some(o.max_iterations())
            }
            _ => None,
        })
    }

    /// The card of cycle `iteration` of an outcome (touched: the caller changes it).
    fn evaluation_mut(&mut self, outcome_id: &str, iteration: u32) -> Option<&mut EvaluationCard> {
        self.items.iter_mut().rev().find_map(|i| match &mut i.body {
            Body::Evaluation(c) if c.outcome_id == outcome_id && c.iteration == iteration => {
                i.rev += 1;
                Some(c.as_mut())
            }
            _ => None,
        })
    }

    fn tool_name(&self, id: &str) -> String {
        self.items
            .iter()
            .rev()
            .find_map(|i| match &i.body {
                Body::Tool(c) if c.id == id => Some(c.name.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "tool call".into())
    }

    fn attach_result(&mut self, e: &Event, id: &str, mut result: ToolResult) -> bool {
        let seq = e.seq;
        if let Some(card) = self.tool_mut(id) {
            // No run time from the daemon (or 0: an agent tool hands its work to a thread):
            // the time from the call to its result is what the user waited.
            if result.duration_ms.unwrap_or(0) == 0
                && let Some(ms) = gap_ms(card.started.as_deref(), e.processed_at.as_deref())
                && ms > 0
            {
                result.duration_ms = Some(ms);
            }
            card.result = Some(result);
            card.live.clear();
            return true;
        }
        // Its call is in an older page that is not loaded: a card from the result alone.
        self.items.push(Item::new(
            seq,
            Body::Tool(Box::new(ToolCard {
                id: id.to_string(),
                name: String::new(),
                input: Value::Null,
                live: String::new(),
                result: Some(result),
                custom: false,
                asks: false,
                thread: None,
                started: None,
            })),
        ));
        true
    }

    pub fn apply_delta(&mut self, d: &Delta) -> Change {
        if d.n <= self.delta_floor {
            return Change::default();
        }
        self.delta_floor = d.n;
        match &d.kind {
            DeltaKind::MessageStart { .. } => {
                // A new response: a previous partial message (a failed attempt) is dropped.
                let mut updated = false;
                for thinking in [false, true] {
                    if let Some(i) = self.live_index(thinking) {
                        let item = &mut self.items[i];
                        if let Body::Assistant { text, .. } | Body::Thinking { text, .. } =
                            &mut item.body
                        {
                            text.clear();
                        }
                        item.touch();
                        updated = true;
                    }
                }
                Change {
                    appended: 0,
                    updated,
                }
            }
            DeltaKind::Text { text, .. } => self.set_live(false, |t| t.push_str(text)),
            DeltaKind::Thinking { text, .. } => self.set_live(true, |t| t.push_str(text)),
            DeltaKind::ToolOutput { tool_use_id, text } => match self.tool_mut(tool_use_id) {
                Some(card) => {
                    card.live.push_str(text);
                    trim_front(&mut card.live, LIVE_OUTPUT_KEEP);
                    Change {
                        appended: 0,
                        updated: true,
                    }
                }
                None => Change::default(),
            },
            DeltaKind::ToolInput { .. } | DeltaKind::Notice { .. } => Change::default(),
        }
    }

    /// The state of a reattach: the message being written and the running tool's output.
    pub fn apply_snapshot(&mut self, s: &Snapshot) -> Change {
        self.delta_floor = s.delta_n;
        let mut change = Change::default();
        for (thinking, text) in [(false, &s.message_text), (true, &s.thinking_text)] {
            match text {
                Some(t) => {
                    let c = self.set_live(thinking, |cur| *cur = t.clone());
                    change.appended += c.appended;
                    change.updated = true;
                }
                None => {
                    if let Some(i) = self.live_index(thinking) {
                        let item = &mut self.items[i];
                        if let Body::Assistant { text, .. } | Body::Thinking { text, .. } =
                            &mut item.body
                        {
                            text.clear();
                        }
                        item.touch();
                    }
                }
            }
        }
        if let (Some(id), Some(tail)) = (&s.tool_use_id, &s.tool_output_tail)
            && let Some(card) = self.tool_mut(id)
        {
            card.live = tail.clone();
            change.updated = true;
        }
        change
    }
}

/// Live output kept per running tool (the stored result has the whole output).
const LIVE_OUTPUT_KEEP: usize = 64 * 1024;

fn trim_front(s: &mut String, keep: usize) {
    if s.len() > keep {
        let mut cut = s.len() - keep;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s.drain(..cut);
    }
}

/// Milliseconds from one event time to a later one (None when either is missing).
fn gap_ms(from: Option<&str>, to: Option<&str>) -> Option<u64> {
    let parse = |t: &str| humantime::parse_rfc3339_weak(t).ok();
    let gap = parse(to?)?.duration_since(parse(from?)?).ok()?;
    Some(gap.as_millis() as u64)
}

/// How long a turn worked, in whole seconds; None under a second (nothing worth a line) or
/// when a time is missing.
fn worked_for(started: Option<&str>, ended: Option<&str>) -> Option<String> {
    let parse = |t: &str| humantime::parse_rfc3339_weak(t).ok();
    let took = parse(ended?)?.duration_since(parse(started?)?).ok()?;
    (took.as_secs() >= 1).then(|| secs(took.as_secs() * 1000))
}

pub fn secs(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        if ms.is_multiple_of(1000) {
            format!("{} s", ms / 1000)
        } else {
            format!("{s:.1} s")
        }
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}
