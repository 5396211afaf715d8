//! A session's state as a pure fold over its events. Nothing else is authoritative: the turn loop
//! asks this state what to do next, and recovery after a restart is the same fold.

use tether_proto::outcome::{EvaluationEnd, EvaluationResult, OutcomeEvaluation, OutcomeSpec};
use tether_proto::{
    ConfirmationResult, Event, EventBody, ModelUsage, Permission, ProcessRecord, SessionStatus,
    SessionUsage, StopReason, blocks_text,
};

use crate::provider::{Message, Part, Role};
use crate::store::rows::SessionSummary;
use crate::tools::replay::Intent;

/// A tool call that has no result yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTool {
    pub tool_use_id: String,
    pub name: String,
    pub input: serde_json::Value,
    /// Set once `span.tool_call_start` is committed: the call may have run (partly), so after
    /// a restart it is settled by kind instead of simply run.
    pub started: Option<Intent>,
    /// Whether the call may run, or whose answer it waits for.
    pub gate: Gate,
    /// A call of an MCP server's tool (`agent.mcp_tool_use`); `name` is then the name the
    /// model called it by (`mcp__<server>__<tool>`).
    pub mcp: Option<McpRef>,
}

/// The server and tool an MCP call goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct McpRef {
    pub server: String,
    pub tool: String,
}

/// What stands between a tool call and its result.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Its permission policy allows it (`evaluated_permission: allow`).
    Allowed,
    /// `always_ask`: waits for a `user.tool_confirmation`.
    Ask,
    /// The user allowed it.
    Confirmed,
    /// The user denied it; the model gets this message as an error result.
    Denied { message: Option<String> },
    /// A custom tool: waits for the client's `user.custom_tool_result`.
    Custom,
}

/// The built-in tools a self-hosted environment's workers run (the SDK's
/// `agent_toolset_20260401`); the rest (`web_fetch`, `web_search`, agent tools) stay in tetherd.
pub const WORKER_TOOLS: [&str; 6] = ["bash", "read", "write", "edit", "glob", "grep"];

/// The worker tools that only read: one a lost worker may have run is simply offered again.
pub const READ_ONLY_WORKER_TOOLS: [&str; 3] = ["read", "glob", "grep"];

impl PendingTool {
    /// Whether the call waits for an answer from a client (`requires_action`).
    pub fn awaits_answer(&self) -> bool {
        matches!(self.gate, Gate::Ask | Gate::Custom)
    }

    /// Whether, in a self-hosted session, this call is a worker's to run: a built-in worker
    /// tool that may run (allowed, or approved).
    pub fn runs_on_worker(&self) -> bool {
        self.mcp.is_none()
            && WORKER_TOOLS.contains(&self.name.as_str())
            && matches!(self.gate, Gate::Allowed | Gate::Confirmed)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionState {
    /// Not folded from events: set once when the session is built, from its environment.
    /// True in a self-hosted environment, where the worker tools' calls wait for a worker's
    /// `user.tool_result` (`requires_action`) instead of running here.
    pub remote_tools: bool,
    pub status: Option<SessionStatus>,
    pub stop_reason: Option<StopReason>,
    pub usage: SessionUsage,
    pub last_seq: u64,
    /// The conversation as the model sees it.
    pub messages: Vec<Message>,
    /// Tool calls of the last assistant message still waiting for a result, in order.
    pub pending_tools: Vec<PendingTool>,
    /// `span.model_request_start` id of a model request with no end yet.
    pub open_request: Option<String>,
    /// User text that arrived while a model request was in flight; it joins the conversation
    /// after that request's response, because the model never saw it.
    pub queued_user: Vec<String>,
    /// Model requests since the turn started (for the max-turns guard).
    pub model_calls_this_turn: u32,
    /// User input arrived since the session last went idle. A failed turn goes idle too, so
    /// its unanswered message waits for the next one instead of being retried forever.
    pub pending_input: bool,
    /// A `user.interrupt` committed during the turn that the turn has not acted on yet (the
    /// daemon stopped first): recovery honours it instead of resuming.
    pub interrupt_requested: bool,
    /// The last process a tool call ran in (the session shell), to kill after a crash.
    pub last_process: Option<ProcessRecord>,
    /// Restarts since the session last made progress (a message, tool call or result, or
    /// going idle): recovery gives up when a session keeps crashing at the same point.
    pub resumes_without_progress: u32,
    /// Seq of the last event that added to each entry of `messages` (same length).
    pub message_seqs: Vec<u64>,
    /// The latest `agent.thread_context_compacted`: its summary and how many leading
    /// `messages` it stands for in requests.
    pub compacted: Option<Compacted>,
    /// `provider/model` set by the latest `session.updated` (else the session row's).
    pub model: Option<String>,
    /// Spending limit set by the latest `session.updated`.
    pub max_cost_usd: Option<f64>,
    /// Usage of the last successful model request (prompt and output tokens).
    pub last_usage: tether_proto::ModelUsage,
    /// One per `user.define_outcome`, oldest first; only the last can be active.
    pub outcomes: Vec<OutcomeState>,
    /// Seq of the latest `session.status_idle`.
    pub idle_seq: u64,
    /// Text of the latest `agent.message` (a thread's reply to the message it was sent).
    pub last_agent_text: Option<String>,
    /// Multi-agent threads as this stream tells of them.
    pub threads: ThreadsFold,
    /// `(run, task)` of workflow checkpoints waiting for an answer (a checkpoint's attempt
    /// is the only one started without a thread that does not end in the same commit).
    pub checkpoints: std::collections::BTreeSet<(String, String)>,
    /// Workflow runs of this session whose last status is `status_running` (not idle, not
    /// ended).
    pub running_runs: std::collections::BTreeSet<String>,
    /// Time this stream spent running.
    pub active: ActiveTime,
    /// MCP elicitations asked in this stream, oldest first (issue 25).
    pub elicitations: Vec<tether_proto::elicitation::Elicitation>,
}

/// Time a stream spent working, from its status events' timestamps (a pure fold: the
/// clock is only read when the seconds are asked for).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ActiveTime {
    /// Milliseconds of the running spans that ended.
    pub ended_ms: i64,
    /// Start of the running span in progress (ms since the epoch).
    pub since_ms: Option<i64>,
    /// When it first ran (ms since the epoch); None until its first transition.
    pub first_run_ms: Option<i64>,
}

impl ActiveTime {
    fn running(&mut self, at: Option<i64>) {
        if let Some(at) = at {
            self.since_ms.get_or_insert(at);
            self.first_run_ms.get_or_insert(at);
        }
    }

    fn stopped(&mut self, at: Option<i64>) {
        if let (Some(since), Some(at)) = (self.since_ms, at) {
            self.ended_ms += (at - since).max(0);
            self.since_ms = None;
        }
    }

    /// Seconds spent running up to `now_ms` (the span in progress included).
    pub fn seconds(&self, now_ms: i64) -> f64 {
        let open = self.since_ms.map_or(0, |s| (now_ms - s).max(0));
        (self.ended_ms + open) as f64 / 1000.0
    }
}

/// An event's `processed_at` in ms since the epoch.
fn millis(processed_at: &Option<String>) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(processed_at.as_deref()?)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// What a stream says about multi-agent threads: in a primary's, its children (from the
/// cross-posted lifecycle events) and the messages it sent (by the tool call that sent
/// them); in a child's, the messages it received.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreadsFold {
    /// Child threads in creation order.
    pub children: Vec<ThreadEntry>,
    /// `tool_use_id` of each `agent.thread_message_sent` -> the thread it went to.
    pub sent: std::collections::HashMap<String, String>,
    /// `tool_use_id` of each `agent.thread_message_received` -> its seq.
    pub received: std::collections::HashMap<String, u64>,
    /// `tool_use_id` of each `start_workflow` call that created a run -> the run.
    pub workflow_calls: std::collections::HashMap<String, String>,
    /// The elicitations child threads' MCP servers asked (cross-posted), oldest first.
    pub elicitations: Vec<tether_proto::elicitation::Elicitation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThreadEntry {
    pub id: String,
    pub agent_name: String,
    pub status: SessionStatus,
    pub stop_reason: Option<StopReason>,
    /// From the cross-posted `session.thread_status_*` events.
    pub active: ActiveTime,
    /// Model requests recorded in this stream under the thread (the advisor's).
    pub usage: tether_proto::SessionUsage,
}

/// Folds one elicitation event into `list`; `thread` names the child thread a cross-post
/// came from (None: this stream's own).
fn fold_elicitation(
    list: &mut Vec<tether_proto::elicitation::Elicitation>,
    e: &Event,
    thread: Option<&str>,
) {
    use tether_proto::elicitation::{Elicitation, ElicitationStatus};
    match &e.body {
        EventBody::McpElicitationRequested {
            elicitation_id,
            mcp_server_name,
            tool_use_id,
            message,
            requested_schema,
            mode,
            url,
            server_elicitation_id,
            agent_name,
        } => list.push(Elicitation {
            id: elicitation_id.clone(),
            session_id: e.session_id.clone(),
            mcp_server_name: mcp_server_name.clone(),
            tool_use_id: tool_use_id.clone(),
            message: message.clone(),
            requested_schema: requested_schema.clone(),
            status: ElicitationStatus::Pending,
            created_at: e.processed_at.clone(),
            mode: *mode,
            url: url.clone(),
            session_thread_id: thread.map(str::to_string),
            agent_name: agent_name.clone(),
            server_elicitation_id: server_elicitation_id.clone(),
            ..Default::default()
        }),
        EventBody::McpElicitationAnswered {
            elicitation_id,
            action,
            content,
            reason,
        } => {
            if let Some(el) = list
                .iter_mut()
                .find(|el| &el.id == elicitation_id && el.status == ElicitationStatus::Pending)
            {
                el.status = ElicitationStatus::Answered;
                el.action = Some(*action);
                el.content = content.clone();
                el.reason = reason.clone();
            }
        }
        EventBody::McpElicitationCompleted { elicitation_id } => {
            if let Some(el) = list.iter_mut().find(|el| &el.id == elicitation_id) {
                el.completed = true;
            }
        }
        _ => {}
    }
}

impl ThreadsFold {
    fn apply(&mut self, thread: &str, e: &Event, at: Option<i64>) {
        let status = match &e.body {
            EventBody::SessionThreadCreated { agent_name, .. } => {
                if !self.children.iter().any(|c| c.id == thread) {
                    self.children.push(ThreadEntry {
                        id: thread.to_string(),
                        agent_name: agent_name.clone(),
                        status: SessionStatus::Idle,
                        stop_reason: None,
                        active: ActiveTime::default(),
                        usage: Default::default(),
                    });
                }
                return;
            }
            EventBody::SessionThreadStatusRunning { .. } => (SessionStatus::Running, None),
            EventBody::SessionThreadStatusIdle { stop_reason, .. } => {
                (SessionStatus::Idle, Some(stop_reason.clone()))
            }
            EventBody::SessionThreadStatusRescheduled { .. } => (SessionStatus::Rescheduling, None),
            EventBody::SessionThreadStatusTerminated { .. } => (SessionStatus::Terminated, None),
            EventBody::SpanModelRequestEnd { model_usage, .. } => {
                if let Some(c) = self.children.iter_mut().find(|c| c.id == thread) {
                    c.usage.record(model_usage);
                }
                return;
            }
            // A child's MCP server asks the user: listed and answered on the session too.
            EventBody::McpElicitationRequested { .. }
            | EventBody::McpElicitationAnswered { .. }
            | EventBody::McpElicitationCompleted { .. } => {
                fold_elicitation(&mut self.elicitations, e, Some(thread));
                return;
            }
            _ => return,
        };
        if let Some(c) = self.children.iter_mut().find(|c| c.id == thread) {
            (c.status, c.stop_reason) = status;
            match c.status {
                SessionStatus::Running | SessionStatus::Rescheduling => c.active.running(at),
                SessionStatus::Idle | SessionStatus::Terminated => c.active.stopped(at),
            }
        }
    }

    /// Whether a child thread is working (the session's status aggregates its threads).
    pub fn any_running(&self) -> bool {
        self.children.iter().any(|c| {
            matches!(
                c.status,
                SessionStatus::Running | SessionStatus::Rescheduling
            )
        })
    }
}

/// Where an outcome stands, folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub enum OutcomePhase {
    /// Defined; the agent has not made a model request for it yet.
    Pending,
    /// The agent is working (or revising) on cycle `iteration`.
    Running,
    /// `span.outcome_evaluation_start` `start_id` has no end yet.
    Evaluating { start_id: String },
    /// A terminal verdict (never `needs_revision`).
    Done(EvaluationResult),
}

/// One outcome: its spec and the state of its evaluation cycles.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeState {
    pub id: String,
    pub spec: OutcomeSpec,
    /// The current cycle, 0-based.
    pub iteration: u32,
    pub phase: OutcomePhase,
    /// Cycles that ended `needs_revision` (for escalation).
    pub revisions: u32,
    /// The latest `span.outcome_evaluation_end`.
    pub last_end: Option<EvaluationEnd>,
    /// The latest end asks for a user message (the revision, or the acknowledgment after
    /// `max_iterations_reached`) that is not in the log yet.
    pub follow_up_owed: bool,
    /// The agent was switched to `escalate.model`.
    pub escalated: bool,
    /// Grader usage over all cycles.
    pub usage: ModelUsage,
    pub completed_at: Option<String>,
}

/// The text a revision request starts with (the fold recognises the follow-up by it).
pub const REVISION_PREFIX: &str = "The grader found the work needs revision";
/// The text the acknowledgment after `max_iterations_reached` starts with.
pub const ACK_PREFIX: &str = "The evaluation budget for this outcome is spent";

/// What a turn does when the agent would go idle with `end_turn`.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEnd {
    /// Go idle: no outcome, or its loop is over.
    Idle,
    /// Append these (the revision or acknowledgment message, after an escalation's
    /// `session.updated`) and go on with the next turn.
    FollowUp(Vec<EventBody>),
    /// Evaluate the current cycle; `start_id` when its start is already in the log (a
    /// restart cut the evaluation short: it is run again from scratch).
    Evaluate { start_id: Option<String> },
}

impl OutcomeState {
    /// Still in its loop: not terminal, or owing its acknowledgment.
    pub fn is_active(&self) -> bool {
        !matches!(self.phase, OutcomePhase::Done(_))
    }

    /// The hosted `outcome_evaluation` object.
    pub fn evaluation(&self) -> OutcomeEvaluation {
        OutcomeEvaluation {
            object_type: "outcome_evaluation".into(),
            outcome_id: self.id.clone(),
            description: self.spec.description.clone(),
            iteration: self.iteration,
            max_iterations: self.spec.max_iterations(),
            result: match &self.phase {
                OutcomePhase::Pending => "pending".into(),
                OutcomePhase::Running => "running".into(),
                OutcomePhase::Evaluating { .. } => "evaluating".into(),
                OutcomePhase::Done(r) => r.as_str().into(),
            },
            explanation: self.last_end.as_ref().map(|e| e.explanation.clone()),
            completed_at: self.completed_at.clone(),
            usage: self.usage,
        }
    }

    /// The follow-up user message the latest end asks for.
    fn follow_up(&self) -> Option<String> {
        let end = self.last_end.as_ref()?;
        let max = self.spec.max_iterations();
        let unmet = unmet_list(end);
        match end.result {
            EvaluationResult::NeedsRevision => Some(format!(
                "{REVISION_PREFIX} (evaluation {} of {max}):\n\n{}{unmet}\n\nRevise the work so it meets every criterion of the rubric; it is evaluated again when you finish.",
                end.iteration + 1,
                end.explanation.trim()
            )),
            EvaluationResult::MaxIterationsReached => Some(format!(
                "{ACK_PREFIX} ({max} of {max} evaluations used) and the work still needs revision:\n\n{}{unmet}\n\nDo not start new work. Summarise what you did and what is still unmet.",
                end.explanation.trim()
            )),
            _ => None,
        }
    }
}

fn unmet_list(end: &EvaluationEnd) -> String {
    let mut out = String::new();
    for c in end.criteria.iter().filter(|c| !c.met) {
        out.push_str(&format!("\n- unmet: {}", c.name));
        if let Some(n) = &c.note {
            out.push_str(&format!(" ({n})"));
        }
    }
    for c in end.checks.iter().filter(|c| !c.passed) {
        out.push_str(&format!("\n- failing check: {}", c.check));
    }
    if !out.is_empty() {
        out.insert(0, '\n');
    }
    out
}

/// The user message a `user.define_outcome` becomes for the agent: the task and the rubric it
/// is graded against.
pub fn outcome_message(spec: &OutcomeSpec) -> String {
    format!(
        "{}\n\nWhen you finish, a grader checks the work against this rubric (and sends it back if it falls short):\n\n{}",
        spec.description.trim(),
        spec.rubric_text().trim()
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct Compacted {
    pub summary: String,
    /// Leading entries of `messages` the summary replaces.
    pub messages: usize,
}

/// The user message a compaction summary becomes in requests.
pub fn summary_message(summary: &str) -> Message {
    Message::user_text(format!(
        "[Summary of the earlier conversation, written when it grew too long for the context window]\n\n{summary}"
    ))
}

/// The gate an `evaluated_permission` puts on a call.
fn gate(evaluated: &Option<Permission>) -> Gate {
    match evaluated {
        Some(Permission::Ask) => Gate::Ask,
        Some(Permission::Deny) => Gate::Denied { message: None },
        Some(Permission::Allow) | None => Gate::Allowed,
    }
}

impl SessionState {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut s = SessionState::default();
        for e in events {
            s.apply(e);
        }
        s
    }

    pub fn status(&self) -> SessionStatus {
        self.status.unwrap_or(SessionStatus::Idle)
    }

    /// Whether a workflow run keeps this idle session `running` (hosted, reference §2.6: a
    /// running run does, an idle one doesn't, and the only idle it allows is one waiting on
    /// a person: the primary's `requires_action`, or here a run's checkpoint).
    pub fn kept_running_by_a_run(&self) -> bool {
        self.status() == SessionStatus::Idle
            && !matches!(self.stop_reason, Some(StopReason::RequiresAction { .. }))
            && self
                .running_runs
                .iter()
                .any(|run| !self.checkpoints.iter().any(|(r, _)| r == run))
    }

    pub fn summary(&self) -> SessionSummary {
        SessionSummary {
            status: self.status(),
            stop_reason: self.stop_reason.clone(),
            usage: self.usage,
            outcome_evaluations: None,
        }
    }

    /// The summary this state would have after `bodies` (for the row update that commits with
    /// them).
    pub fn summary_after(&self, bodies: &[EventBody]) -> SessionSummary {
        let mut s = self.summary();
        for b in bodies {
            match b {
                EventBody::SessionStatusRunning {} => {
                    s.status = SessionStatus::Running;
                    s.stop_reason = None;
                }
                EventBody::SessionStatusIdle { stop_reason } => {
                    s.status = SessionStatus::Idle;
                    s.stop_reason = Some(stop_reason.clone());
                }
                EventBody::SessionStatusRescheduled {} => s.status = SessionStatus::Rescheduling,
                EventBody::SessionStatusTerminated {} => s.status = SessionStatus::Terminated,
                EventBody::SpanModelRequestEnd { model_usage, .. } => {
                    s.usage.record(model_usage);
                }
                EventBody::SpanOutcomeEvaluationEnd(end) => s.usage.tokens.add(&end.usage),
                _ => {}
            }
        }
        if self.outcomes_change(bodies) {
            // Rare (a few events per cycle), so folding a copy is cheap enough.
            let mut after = self.clone();
            for body in bodies {
                after.apply(&Event {
                    id: String::new(),
                    session_id: String::new(),
                    seq: 0,
                    processed_at: None,
                    session_thread_id: None,
                    body: body.clone(),
                });
            }
            s.outcome_evaluations = Some(after.outcome_evaluations());
        }
        s
    }

    /// Whether `bodies` change what [`SessionState::outcome_evaluations`] says.
    fn outcomes_change(&self, bodies: &[EventBody]) -> bool {
        let pending = self
            .outcomes
            .last()
            .is_some_and(|o| o.phase == OutcomePhase::Pending);
        bodies.iter().any(|b| match b {
            EventBody::UserDefineOutcome(_)
            | EventBody::SpanOutcomeEvaluationStart { .. }
            | EventBody::SpanOutcomeEvaluationEnd(_) => true,
            EventBody::SpanModelRequestStart { .. } => pending,
            _ => false,
        })
    }

    /// The outcome still in its loop, if any (one at a time).
    pub fn active_outcome(&self) -> Option<&OutcomeState> {
        self.outcomes.last().filter(|o| o.is_active())
    }

    /// The hosted `outcome_evaluations[]`.
    pub fn outcome_evaluations(&self) -> Vec<OutcomeEvaluation> {
        self.outcomes.iter().map(OutcomeState::evaluation).collect()
    }

    /// The one decision for a turn about to go idle with `end_turn` (both places the turn
    /// loop can end call it): idle, a follow-up message, or an evaluation.
    pub fn turn_end(&self) -> TurnEnd {
        let Some(o) = self.outcomes.last() else {
            return TurnEnd::Idle;
        };
        if o.follow_up_owed
            && let Some(text) = o.follow_up()
        {
            let mut bodies = Vec::new();
            if let Some(e) = &o.spec.escalate
                && !o.escalated
                && o.revisions >= e.after
                && matches!(o.phase, OutcomePhase::Running)
            {
                bodies.push(EventBody::SessionUpdated {
                    model: Some(e.model.clone()),
                    max_cost_usd: None,
                    title: None,
                    name: None,
                    metadata: None,
                    vault_ids: None,
                    agent: None,
                });
            }
            bodies.push(EventBody::user_text(text));
            return TurnEnd::FollowUp(bodies);
        }
        match &o.phase {
            OutcomePhase::Pending | OutcomePhase::Running => TurnEnd::Evaluate { start_id: None },
            OutcomePhase::Evaluating { start_id } => TurnEnd::Evaluate {
                start_id: Some(start_id.clone()),
            },
            OutcomePhase::Done(_) => TurnEnd::Idle,
        }
    }

    /// The `interrupted` end an interrupt gives the active outcome (start id empty when it
    /// came during the agent's turn), or None without one.
    pub fn interrupted_outcome_end(&self) -> Option<EventBody> {
        let o = self.active_outcome()?;
        let start = match &o.phase {
            OutcomePhase::Evaluating { start_id } => start_id.clone(),
            _ => String::new(),
        };
        Some(EventBody::SpanOutcomeEvaluationEnd(EvaluationEnd::verdict(
            start,
            o.id.clone(),
            o.iteration,
            EvaluationResult::Interrupted,
            "the user interrupted the session".into(),
        )))
    }

    fn user_text(&mut self, text: String) {
        self.pending_input = true;
        // While a request is open or tool calls wait for results, the text goes after
        // them: a tool call's result must directly follow it.
        if self.open_request.is_some() || !self.pending_tools.is_empty() {
            self.queued_user.push(text);
        } else {
            self.push_part(Role::User, Part::Text(text));
        }
    }

    fn apply_outcome(&mut self, e: &Event) {
        match &e.body {
            EventBody::UserDefineOutcome(spec) => {
                self.outcomes.push(OutcomeState {
                    id: spec.outcome_id.clone().unwrap_or_default(),
                    spec: spec.clone(),
                    iteration: 0,
                    phase: OutcomePhase::Pending,
                    revisions: 0,
                    last_end: None,
                    follow_up_owed: false,
                    escalated: false,
                    usage: ModelUsage::default(),
                    completed_at: None,
                });
                self.user_text(outcome_message(spec));
            }
            EventBody::SpanModelRequestStart { .. } => {
                if let Some(o) = self.outcomes.last_mut()
                    && o.phase == OutcomePhase::Pending
                {
                    o.phase = OutcomePhase::Running;
                }
            }
            EventBody::SpanOutcomeEvaluationStart {
                outcome_id,
                iteration,
            } => {
                if let Some(o) = self.outcomes.last_mut()
                    && o.id == *outcome_id
                    && o.is_active()
                {
                    o.iteration = *iteration;
                    o.phase = OutcomePhase::Evaluating {
                        start_id: e.id.clone(),
                    };
                }
            }
            EventBody::SpanOutcomeEvaluationEnd(end) => {
                // Each cycle starts with a fresh max_turns count.
                self.model_calls_this_turn = 0;
                if let Some(o) = self.outcomes.last_mut()
                    && o.id == end.outcome_id
                    && o.is_active()
                {
                    o.usage.add(&end.usage);
                    o.last_end = Some(end.clone());
                    match end.result {
                        EvaluationResult::NeedsRevision => {
                            o.revisions += 1;
                            o.iteration = end.iteration + 1;
                            o.phase = OutcomePhase::Running;
                            o.follow_up_owed = true;
                        }
                        r => {
                            o.phase = OutcomePhase::Done(r);
                            o.completed_at = e.processed_at.clone();
                            o.follow_up_owed = r == EvaluationResult::MaxIterationsReached;
                        }
                    }
                }
            }
            EventBody::UserMessage { content } => {
                if let Some(o) = self.outcomes.last_mut()
                    && o.follow_up_owed
                {
                    let text = blocks_text(content);
                    if text.starts_with(REVISION_PREFIX) || text.starts_with(ACK_PREFIX) {
                        o.follow_up_owed = false;
                    }
                }
            }
            EventBody::SessionUpdated { model: Some(m), .. } => {
                if let Some(o) = self.outcomes.last_mut()
                    && o.spec.escalate.as_ref().is_some_and(|x| x.model == *m)
                {
                    o.escalated = true;
                }
            }
            _ => {}
        }
    }

    /// Whether the conversation ends with something the model has not answered yet.
    pub fn needs_model_call(&self) -> bool {
        self.pending_input
            && self.pending_tools.is_empty()
            && matches!(self.messages.last(), Some(m) if m.role == Role::User)
    }

    /// Ids of the tool calls waiting for a client's answer, in call order.
    pub fn awaiting_ids(&self) -> Vec<String> {
        self.pending_tools
            .iter()
            .filter(|p| self.waits_on(p))
            .map(|p| p.tool_use_id.clone())
            .collect()
    }

    /// Whether a turn has something to do now: a model call, or tool calls none of which
    /// waits for an answer.
    pub fn has_work(&self) -> bool {
        self.needs_model_call()
            || (!self.pending_tools.is_empty()
                && self.pending_tools.iter().all(|p| !self.waits_on(p)))
    }

    /// Whether call `p` waits for an answer from outside: a client's, or a worker's result.
    pub fn waits_on(&self, p: &PendingTool) -> bool {
        p.awaits_answer() || (self.remote_tools && p.runs_on_worker())
    }

    /// The open calls a worker runs (self-hosted sessions only).
    pub fn worker_calls(&self) -> impl Iterator<Item = &PendingTool> {
        self.pending_tools
            .iter()
            .filter(|p| self.remote_tools && p.runs_on_worker())
    }

    /// User input that arrived during the open model request and still needs an answer.
    pub fn has_queued_user(&self) -> bool {
        !self.queued_user.is_empty()
    }

    fn push_part(&mut self, role: Role, part: Part) {
        match self.messages.last_mut() {
            Some(m) if m.role == role => {
                m.content.push(part);
                if let Some(seq) = self.message_seqs.last_mut() {
                    *seq = self.last_seq;
                }
            }
            _ => {
                self.messages.push(Message {
                    role,
                    content: vec![part],
                });
                self.message_seqs.push(self.last_seq);
            }
        }
    }

    /// The conversation as the next request sends it: the compaction summary (if any) in
    /// place of the messages it covers, then the rest verbatim.
    pub fn request_messages(&self) -> Vec<Message> {
        match &self.compacted {
            None => self.messages.clone(),
            Some(c) => {
                let tail = self.messages.get(c.messages..).unwrap_or_default();
                let mut out = Vec::with_capacity(tail.len() + 1);
                out.push(summary_message(&c.summary));
                out.extend_from_slice(tail);
                out
            }
        }
    }

    /// Where a compaction could cut: `(k, through_seq)` such that `messages[..k]` get
    /// summarised and at least `keep_recent` messages stay verbatim. The tail starts with an
    /// assistant message, so no tool result is separated from its call; `None` when there is
    /// nothing new worth summarising.
    pub fn compaction_cut(&self, keep_recent: usize) -> Option<(usize, u64)> {
        let done = self.compacted.as_ref().map_or(0, |c| c.messages);
        let latest = self.messages.len().checked_sub(keep_recent.max(1))?;
        let k = (done + 1..=latest)
            .rev()
            .find(|&k| self.messages[k].role == Role::Assistant)?;
        Some((k, self.message_seqs[k - 1]))
    }

    fn flush_queued_user(&mut self) {
        for text in std::mem::take(&mut self.queued_user) {
            self.push_part(Role::User, Part::Text(text));
        }
    }

    fn tool_call(
        &mut self,
        id: &str,
        name: &str,
        input: &serde_json::Value,
        gate: Gate,
        mcp: Option<McpRef>,
    ) {
        self.push_part(
            Role::Assistant,
            Part::ToolUse {
                id: id.to_string(),
                name: name.to_string(),
                input: input.clone(),
            },
        );
        self.pending_tools.push(PendingTool {
            tool_use_id: id.to_string(),
            name: name.to_string(),
            input: input.clone(),
            started: None,
            gate,
            mcp,
        });
    }

    fn tool_result(&mut self, tool_use_id: &str, content: String, is_error: bool) {
        self.pending_tools.retain(|p| p.tool_use_id != tool_use_id);
        self.push_part(
            Role::User,
            Part::ToolResult {
                tool_use_id: tool_use_id.to_string(),
                content,
                is_error,
            },
        );
        if self.pending_tools.is_empty() {
            // Messages typed while tools ran (or waited for answers) go after the results.
            self.flush_queued_user();
        }
    }

    pub fn apply(&mut self, e: &Event) {
        self.last_seq = e.seq;
        // An event about another thread (a cross-post, a lifecycle event): it changes the
        // threads this stream knows of, never its own conversation or status.
        if let Some(thread) = &e.session_thread_id {
            self.threads.apply(thread, e, millis(&e.processed_at));
            // A request made for this stream under a thread (the advisor's) is paid from it.
            if let EventBody::SpanModelRequestEnd { model_usage, .. } = &e.body {
                self.usage.record(model_usage);
            }
            return;
        }
        if matches!(
            e.body,
            EventBody::UserMessage { .. }
                | EventBody::AgentMessage { .. }
                | EventBody::AgentThinking { .. }
                | EventBody::AgentToolUse { .. }
                | EventBody::AgentToolResult { .. }
                | EventBody::AgentCustomToolUse { .. }
                | EventBody::AgentMcpToolUse { .. }
                | EventBody::AgentMcpToolResult { .. }
                | EventBody::UserToolConfirmation { .. }
                | EventBody::UserCustomToolResult { .. }
                | EventBody::SessionStatusIdle { .. }
                | EventBody::UserDefineOutcome(_)
                | EventBody::SpanOutcomeEvaluationEnd(_)
                | EventBody::AgentThreadMessageReceived { .. }
                | EventBody::AgentThreadMessageSent { .. }
        ) {
            self.resumes_without_progress = 0;
        }
        self.apply_outcome(e);
        match &e.body {
            EventBody::UserMessage { content } => self.user_text(blocks_text(content)),
            EventBody::AgentThinking {
                thinking,
                signature,
            } => self.push_part(
                Role::Assistant,
                Part::Thinking {
                    thinking: thinking.clone(),
                    signature: signature.clone(),
                },
            ),
            EventBody::AgentMessage { content } => {
                let text = blocks_text(content);
                self.last_agent_text = Some(text.clone());
                self.push_part(Role::Assistant, Part::Text(text));
            }
            EventBody::AgentToolUse {
                name,
                input,
                evaluated_permission,
            } => self.tool_call(&e.id, name, input, gate(evaluated_permission), None),
            EventBody::AgentMcpToolUse {
                mcp_server_name,
                name,
                input,
                evaluated_permission,
            } => self.tool_call(
                &e.id,
                &crate::tools::mcp_names::model_name(mcp_server_name, name),
                input,
                gate(evaluated_permission),
                Some(McpRef {
                    server: mcp_server_name.clone(),
                    tool: name.clone(),
                }),
            ),
            EventBody::AgentCustomToolUse { name, input } => {
                self.tool_call(&e.id, name, input, Gate::Custom, None);
            }
            EventBody::UserToolConfirmation {
                tool_use_id,
                result,
                deny_message,
            } => {
                if let Some(p) = self
                    .pending_tools
                    .iter_mut()
                    .find(|p| &p.tool_use_id == tool_use_id && p.gate == Gate::Ask)
                {
                    p.gate = match result {
                        ConfirmationResult::Allow => Gate::Confirmed,
                        ConfirmationResult::Deny => Gate::Denied {
                            message: deny_message.clone(),
                        },
                    };
                }
            }
            EventBody::AgentToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => self.tool_result(tool_use_id, blocks_text(content), *is_error),
            EventBody::AgentMcpToolResult {
                mcp_tool_use_id,
                content,
                is_error,
            } => self.tool_result(mcp_tool_use_id, blocks_text(content), *is_error),
            EventBody::UserCustomToolResult {
                custom_tool_use_id,
                content,
                is_error,
            } => {
                if self
                    .pending_tools
                    .iter()
                    .any(|p| &p.tool_use_id == custom_tool_use_id && p.gate == Gate::Custom)
                {
                    self.tool_result(custom_tool_use_id, blocks_text(content), *is_error);
                }
            }
            EventBody::SpanModelRequestStart { .. } => {
                self.open_request = Some(e.id.clone());
                self.model_calls_this_turn += 1;
            }
            EventBody::SpanModelRequestEnd {
                model_usage,
                is_error,
                ..
            } => {
                self.open_request = None;
                self.usage.record(model_usage);
                if !is_error {
                    self.last_usage = *model_usage;
                }
                if self.pending_tools.is_empty() {
                    self.flush_queued_user();
                }
            }
            EventBody::SessionStatusRunning {} => {
                self.status = Some(SessionStatus::Running);
                self.stop_reason = None;
                self.model_calls_this_turn = 0;
                self.active.running(millis(&e.processed_at));
            }
            EventBody::SessionStatusIdle { stop_reason } => {
                self.active.stopped(millis(&e.processed_at));
                self.idle_seq = e.seq;
                self.status = Some(SessionStatus::Idle);
                self.stop_reason = Some(stop_reason.clone());
                self.open_request = None;
                self.interrupt_requested = false;
                // Idle with calls still pending is `requires_action`: the turn is not over,
                // its input still needs an answer once they have results.
                if self.pending_tools.is_empty() {
                    // Input queued behind the last response still needs an answer.
                    self.pending_input = !self.queued_user.is_empty();
                    self.flush_queued_user();
                }
            }
            EventBody::SessionStatusRescheduled {} => {
                self.status = Some(SessionStatus::Rescheduling);
                self.resumes_without_progress += 1;
            }
            EventBody::SpanToolCallStart {
                tool_use_id,
                process,
                pre_sha256,
                post_sha256,
            } => {
                if let Some(p) = self
                    .pending_tools
                    .iter_mut()
                    .find(|p| &p.tool_use_id == tool_use_id)
                {
                    p.started = Some(Intent {
                        process: *process,
                        pre_sha256: pre_sha256.clone(),
                        post_sha256: post_sha256.clone(),
                    });
                }
                if process.is_some() {
                    self.last_process = *process;
                }
            }
            EventBody::UserInterrupt {} => {
                if matches!(
                    self.status,
                    Some(SessionStatus::Running | SessionStatus::Rescheduling)
                ) {
                    self.interrupt_requested = true;
                }
            }
            EventBody::SessionStatusTerminated {} => {
                self.active.stopped(millis(&e.processed_at));
                self.status = Some(SessionStatus::Terminated);
            }
            EventBody::SessionUpdated {
                model,
                max_cost_usd,
                ..
            } => {
                if model.is_some() {
                    self.model = model.clone();
                }
                if max_cost_usd.is_some() {
                    self.max_cost_usd = *max_cost_usd;
                }
            }
            EventBody::AgentThreadContextCompacted {
                summary,
                through_seq,
            } => {
                let messages = self
                    .message_seqs
                    .iter()
                    .take_while(|&&seq| seq <= *through_seq)
                    .count();
                self.compacted = Some(Compacted {
                    summary: summary.clone(),
                    messages,
                });
            }
            EventBody::SpanOutcomeEvaluationEnd(end) => self.usage.tokens.add(&end.usage),
            // A notice for the user; the login it names lives in tetherd, not the session.
            EventBody::McpAuthorizationRequired { .. } => {}
            EventBody::McpElicitationRequested { .. }
            | EventBody::McpElicitationAnswered { .. }
            | EventBody::McpElicitationCompleted { .. } => {
                fold_elicitation(&mut self.elicitations, e, None)
            }
            EventBody::SessionError { .. }
            | EventBody::UserDefineOutcome(_)
            | EventBody::SpanOutcomeEvaluationStart { .. }
            | EventBody::SpanOutcomeEvaluationOngoing { .. } => {}
            // A message from another thread is this thread's user turn.
            EventBody::AgentThreadMessageReceived {
                content,
                tool_use_id,
                ..
            } => {
                if let Some(id) = tool_use_id {
                    self.threads.received.insert(id.clone(), e.seq);
                }
                self.user_text(blocks_text(content));
            }
            EventBody::AgentThreadMessageSent {
                to_session_thread_id,
                tool_use_id,
                ..
            } => {
                if let Some(id) = tool_use_id {
                    self.threads
                        .sent
                        .insert(id.clone(), to_session_thread_id.clone());
                }
            }
            // Lifecycle events carry their thread in the envelope (handled above).
            EventBody::SessionThreadCreated { .. }
            | EventBody::SessionThreadStatusRunning { .. }
            | EventBody::SessionThreadStatusIdle { .. }
            | EventBody::SessionThreadStatusRescheduled { .. }
            | EventBody::SessionThreadStatusTerminated { .. } => {}
            EventBody::WorkflowRunCreated {
                workflow_run_id,
                tool_use_id: Some(call),
                ..
            } => {
                self.threads
                    .workflow_calls
                    .insert(call.clone(), workflow_run_id.clone());
            }
            // The hosted "ending notice" of a run the agent started: its next user turn.
            EventBody::WorkflowRunStatusRunning { workflow_run_id } => {
                self.running_runs.insert(workflow_run_id.clone());
            }
            EventBody::WorkflowRunStatusIdle { workflow_run_id } => {
                self.running_runs.remove(workflow_run_id);
            }
            EventBody::WorkflowRunStatusEnded {
                workflow_run_id,
                notice,
                ..
            } => {
                self.running_runs.remove(workflow_run_id);
                self.checkpoints.retain(|(run, _)| run != workflow_run_id);
                if let Some(text) = notice {
                    self.user_text(text.clone());
                }
            }
            EventBody::SpanWorkflowTaskStarted {
                workflow_run_id,
                task_id,
                thread_id: None,
                ..
            } => {
                self.checkpoints
                    .insert((workflow_run_id.clone(), task_id.clone()));
            }
            EventBody::SpanWorkflowTaskEnded {
                workflow_run_id,
                task_id,
                ..
            } => {
                self.checkpoints
                    .remove(&(workflow_run_id.clone(), task_id.clone()));
            }
            // A workflow run's state is its own fold (orchestration::workflows::fold).
            EventBody::WorkflowRunCreated { .. }
            | EventBody::WorkflowRunPhaseStarted { .. }
            | EventBody::WorkflowRunPhaseEnded { .. }
            | EventBody::WorkflowRunError { .. }
            | EventBody::SpanWorkflowTaskStarted { .. }
            | EventBody::SpanWorkflowTaskFannedOut { .. }
            | EventBody::SpanWorkflowTaskChecking { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tether_proto::{ContentBlock, ModelUsage, ToolStatus};

    struct Log {
        events: Vec<Event>,
    }

    impl Log {
        fn new() -> Self {
            Log { events: vec![] }
        }
        fn push(&mut self, body: EventBody) -> String {
            let seq = self.events.len() as u64 + 1;
            let id = format!("sevt_{seq}");
            self.events.push(Event {
                id: id.clone(),
                session_id: "s".into(),
                seq,
                processed_at: None,
                session_thread_id: None,
                body,
            });
            id
        }
        fn state(&self) -> SessionState {
            SessionState::from_events(&self.events)
        }
    }

    /// Hosted §2.6: a running workflow run keeps an idle session running; an idle or ended
    /// run doesn't, and neither does one waiting on a person (a checkpoint, or the primary's
    /// requires_action).
    #[test]
    fn a_running_workflow_run_keeps_an_idle_session_running_unless_a_person_is_awaited() {
        let run = || "wrun_1".to_string();
        let ev = |v: serde_json::Value| serde_json::from_value::<EventBody>(v).unwrap();
        let mut log = Log::new();
        log.push(EventBody::SessionStatusRunning {});
        log.push(EventBody::SessionStatusIdle {
            stop_reason: StopReason::EndTurn,
        });
        assert!(!log.state().kept_running_by_a_run(), "no run");
        log.push(EventBody::WorkflowRunStatusRunning {
            workflow_run_id: run(),
        });
        assert!(log.state().kept_running_by_a_run());
        log.push(ev(
            json!({"type": "span.workflow_task_started", "workflow_run_id": "wrun_1",
            "task_id": "approve", "attempt": 1}),
        ));
        assert!(
            !log.state().kept_running_by_a_run(),
            "waiting on a checkpoint"
        );
        log.push(ev(
            json!({"type": "span.workflow_task_ended", "workflow_run_id": "wrun_1",
            "task_id": "approve", "attempt": 1, "status": "succeeded"}),
        ));
        assert!(log.state().kept_running_by_a_run());
        log.push(EventBody::WorkflowRunStatusIdle {
            workflow_run_id: run(),
        });
        assert!(!log.state().kept_running_by_a_run(), "an idle run");
        log.push(EventBody::WorkflowRunStatusRunning {
            workflow_run_id: run(),
        });
        log.push(EventBody::SessionStatusRunning {});
        assert!(
            !log.state().kept_running_by_a_run(),
            "running already, on its own"
        );
        log.push(EventBody::SessionStatusIdle {
            stop_reason: StopReason::RequiresAction { event_ids: vec![] },
        });
        assert!(!log.state().kept_running_by_a_run(), "requires_action");
        log.push(EventBody::SessionStatusRunning {});
        log.push(EventBody::SessionStatusIdle {
            stop_reason: StopReason::EndTurn,
        });
        assert!(log.state().kept_running_by_a_run());
        log.push(ev(
            json!({"type": "workflow_run.status_ended", "workflow_run_id": "wrun_1",
            "result": {"type": "completed"}}),
        ));
        assert!(!log.state().kept_running_by_a_run(), "ended");
    }

    /// Active time is folded from the status events' timestamps, the stream's own and its
    /// children's cross-posted ones alike.
    #[test]
    fn active_time_sums_the_running_spans() {
        let at = |ms: i64| {
            Some(
                chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + ms)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
        };
        let ev = |seq: u64, ms: i64, thread: Option<&str>, body: EventBody| Event {
            id: format!("sevt_{seq}"),
            session_id: "s".into(),
            seq,
            processed_at: at(ms),
            session_thread_id: thread.map(str::to_string),
            body,
        };
        let idle = || EventBody::SessionStatusIdle {
            stop_reason: StopReason::EndTurn,
        };
        let name = || "w".to_string();
        let events = vec![
            ev(1, 0, None, EventBody::SessionStatusRunning {}),
            ev(
                2,
                0,
                Some("sthr_1"),
                EventBody::SessionThreadCreated {
                    agent_name: name(),
                    workflow_run_id: None,
                    model: None,
                },
            ),
            ev(
                3,
                200,
                Some("sthr_1"),
                EventBody::SessionThreadStatusRunning { agent_name: name() },
            ),
            ev(
                4,
                700,
                Some("sthr_1"),
                EventBody::SessionThreadStatusIdle {
                    agent_name: name(),
                    stop_reason: StopReason::EndTurn,
                    stop_details: None,
                },
            ),
            ev(5, 1500, None, idle()),
            ev(6, 3000, None, EventBody::SessionStatusRunning {}),
        ];
        let st = SessionState::from_events(&events);
        let now = 1_800_000_000_000 + 3500;
        assert_eq!(st.active.seconds(now), 2.0, "1.5 s ended + 0.5 s running");
        assert_eq!(st.active.first_run_ms, Some(1_800_000_000_000));
        let child = &st.threads.children[0].active;
        assert_eq!(child.seconds(now), 0.5);
        assert_eq!(child.first_run_ms, Some(1_800_000_000_200));
        // A stream that never ran has no first transition (its stats are null).
        assert_eq!(SessionState::from_events(&[]).active.first_run_ms, None);
    }

    fn end(start: &str) -> EventBody {
        EventBody::SpanModelRequestEnd {
            model_request_start_id: start.into(),
            is_error: false,
            model_usage: ModelUsage {
                input_tokens: 10,
                output_tokens: 2,
                ..Default::default()
            },
            latency_ms: None,
        }
    }

    /// Logs written by earlier versions must fold with this one (§C 15): the fixture is the
    /// bash-then-read scenario as tether 0.1.0 stored it.
    #[test]
    fn fixture_log_from_an_earlier_version_replays() {
        let events: Vec<Event> = include_str!("../../tests/fixtures/bash-then-read-v0.1.0.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let st = SessionState::from_events(&events);
        assert_eq!(st.status(), SessionStatus::Idle);
        assert_eq!(st.stop_reason, Some(StopReason::EndTurn));
        assert_eq!(st.last_seq, 16);
        assert!(st.pending_tools.is_empty());
        assert!(!st.needs_model_call());
        assert_eq!(st.usage.model_requests, 3);
        let roles: Vec<Role> = st.messages.iter().map(|m| m.role.clone()).collect();
        assert_eq!(
            roles,
            vec![
                Role::User,
                Role::Assistant,
                Role::User,
                Role::Assistant,
                Role::User,
                Role::Assistant
            ]
        );
        // Folding is deterministic: the same log, the same state.
        assert_eq!(SessionState::from_events(&events), st);
    }

    #[test]
    fn tool_loop_conversation() {
        let mut log = Log::new();
        log.push(EventBody::user_text("do it"));
        log.push(EventBody::SessionStatusRunning {});
        assert!(log.state().needs_model_call());
        let s1 = log.push(EventBody::SpanModelRequestStart { model: None });
        log.push(EventBody::AgentMessage {
            content: vec![ContentBlock::text("ok")],
        });
        let tu = log.push(EventBody::AgentToolUse {
            name: "bash".into(),
            input: json!({"command": "ls"}),
            evaluated_permission: None,
        });
        log.push(end(&s1));
        let st = log.state();
        assert!(!st.needs_model_call());
        assert_eq!(st.pending_tools.len(), 1);
        log.push(EventBody::AgentToolResult {
            tool_use_id: tu.clone(),
            content: vec![ContentBlock::text("f.txt")],
            is_error: false,
            status: ToolStatus::Ok,
            exit_code: Some(0),
            duration_ms: 1,
        });
        let st = log.state();
        assert!(st.needs_model_call());
        assert_eq!(st.messages.len(), 3);
        assert_eq!(
            st.messages[2].content,
            vec![Part::ToolResult {
                tool_use_id: tu,
                content: "f.txt".into(),
                is_error: false
            }]
        );
        assert_eq!(st.usage.tokens.input_tokens, 10);
        assert_eq!(st.model_calls_this_turn, 1);
    }

    #[test]
    fn message_sent_during_a_model_request_goes_after_its_response() {
        let mut log = Log::new();
        log.push(EventBody::user_text("first"));
        log.push(EventBody::SessionStatusRunning {});
        let s1 = log.push(EventBody::SpanModelRequestStart { model: None });
        log.push(EventBody::user_text("second"));
        log.push(EventBody::AgentMessage {
            content: vec![ContentBlock::text("answer")],
        });
        log.push(end(&s1));
        let st = log.state();
        let roles: Vec<_> = st.messages.iter().map(|m| m.role.clone()).collect();
        assert_eq!(roles, vec![Role::User, Role::Assistant, Role::User]);
        assert_eq!(st.messages[2].content, vec![Part::Text("second".into())]);
        assert!(
            st.needs_model_call(),
            "the queued message still needs an answer"
        );
    }

    #[test]
    fn a_failed_turn_does_not_ask_the_model_again() {
        let mut log = Log::new();
        log.push(EventBody::user_text("x"));
        log.push(EventBody::SessionStatusRunning {});
        let s1 = log.push(EventBody::SpanModelRequestStart { model: None });
        log.push(EventBody::SpanModelRequestEnd {
            model_request_start_id: s1,
            is_error: true,
            model_usage: ModelUsage::default(),
            latency_ms: None,
        });
        assert!(log.state().needs_model_call());
        log.push(EventBody::SessionStatusIdle {
            stop_reason: StopReason::Error,
        });
        assert!(!log.state().needs_model_call());
        log.push(EventBody::user_text("again"));
        let st = log.state();
        assert!(st.needs_model_call());
        assert_eq!(
            st.messages.len(),
            1,
            "both user texts merge into one message"
        );
    }

    #[test]
    fn summary_after_matches_the_fold() {
        let mut log = Log::new();
        log.push(EventBody::user_text("x"));
        let bodies = vec![
            EventBody::SessionStatusRunning {},
            end("sevt_0"),
            EventBody::SessionStatusIdle {
                stop_reason: StopReason::EndTurn,
            },
        ];
        let predicted = log.state().summary_after(&bodies);
        for b in bodies {
            log.push(b);
        }
        assert_eq!(predicted, log.state().summary());
    }

    #[test]
    fn compaction_replaces_the_covered_messages_in_requests_only() {
        let mut log = Log::new();
        log.push(EventBody::user_text("first"));
        log.push(EventBody::AgentMessage {
            content: vec![ContentBlock::text("a1")],
        });
        log.push(EventBody::user_text("second"));
        log.push(EventBody::AgentMessage {
            content: vec![ContentBlock::text("a2")],
        });
        log.push(EventBody::user_text("third"));
        let st = log.state();
        assert_eq!(st.compaction_cut(10), None, "nothing old enough");
        // Keep two: the tail starts at the assistant message before the last user one.
        let (k, through) = st.compaction_cut(2).unwrap();
        assert_eq!((k, through), (3, 3));
        log.push(EventBody::AgentThreadContextCompacted {
            summary: "S".into(),
            through_seq: through,
        });
        let st = log.state();
        assert_eq!(st.messages.len(), 5, "the conversation itself is untouched");
        let req = st.request_messages();
        assert_eq!(req.len(), 3);
        assert_eq!(req[0], summary_message("S"));
        assert_eq!(req[1].content, vec![Part::Text("a2".into())]);
        assert_eq!(req[2].content, vec![Part::Text("third".into())]);
        // The next cut only covers what the summary doesn't.
        assert_eq!(st.compaction_cut(2), None);
        log.push(EventBody::AgentMessage {
            content: vec![ContentBlock::text("a3")],
        });
        log.push(EventBody::user_text("fourth"));
        assert_eq!(log.state().compaction_cut(2), Some((5, 5)));
    }

    #[test]
    fn calls_waiting_for_answers_survive_idle_and_resume_on_the_answer() {
        let mut log = Log::new();
        log.push(EventBody::user_text("go"));
        log.push(EventBody::SessionStatusRunning {});
        let s1 = log.push(EventBody::SpanModelRequestStart { model: None });
        let ask = log.push(EventBody::AgentToolUse {
            name: "bash".into(),
            input: json!({"command": "rm -rf x"}),
            evaluated_permission: Some(Permission::Ask),
        });
        let custom = log.push(EventBody::AgentCustomToolUse {
            name: "lookup".into(),
            input: json!({"q": 1}),
        });
        log.push(end(&s1));
        let st = log.state();
        assert_eq!(st.awaiting_ids(), vec![ask.clone(), custom.clone()]);
        assert!(!st.has_work(), "nothing runs before the answers");
        log.push(EventBody::SessionStatusIdle {
            stop_reason: StopReason::RequiresAction {
                event_ids: vec![ask.clone(), custom.clone()],
            },
        });
        // A message typed while waiting goes after the results, not between call and result.
        log.push(EventBody::user_text("also this"));
        log.push(EventBody::UserToolConfirmation {
            tool_use_id: ask.clone(),
            result: ConfirmationResult::Deny,
            deny_message: Some("not that".into()),
        });
        let st = log.state();
        assert_eq!(st.awaiting_ids(), vec![custom.clone()]);
        assert_eq!(
            st.pending_tools[0].gate,
            Gate::Denied {
                message: Some("not that".into())
            }
        );
        log.push(EventBody::UserCustomToolResult {
            custom_tool_use_id: custom.clone(),
            content: vec![ContentBlock::text("42")],
            is_error: false,
        });
        let st = log.state();
        assert!(st.awaiting_ids().is_empty());
        assert!(st.has_work(), "the denied call still needs its result");
        log.push(EventBody::AgentToolResult {
            tool_use_id: ask.clone(),
            content: vec![ContentBlock::text("denied")],
            is_error: true,
            status: ToolStatus::Denied,
            exit_code: None,
            duration_ms: 0,
        });
        let st = log.state();
        assert!(st.needs_model_call(), "the turn goes on with the results");
        let last = st.messages.last().unwrap();
        assert_eq!(last.role, Role::User);
        assert!(
            matches!(&last.content[0], Part::ToolResult { tool_use_id, content, .. } if *tool_use_id == custom && content == "42")
        );
        assert!(
            matches!(&last.content[1], Part::ToolResult { tool_use_id, .. } if *tool_use_id == ask)
        );
        assert_eq!(last.content[2], Part::Text("also this".into()));
    }

    #[test]
    fn an_answer_to_the_wrong_kind_of_call_changes_nothing() {
        let mut log = Log::new();
        log.push(EventBody::user_text("go"));
        let allowed = log.push(EventBody::AgentToolUse {
            name: "read".into(),
            input: json!({}),
            evaluated_permission: Some(Permission::Allow),
        });
        let before = log.state().pending_tools.clone();
        log.push(EventBody::UserToolConfirmation {
            tool_use_id: allowed.clone(),
            result: ConfirmationResult::Deny,
            deny_message: None,
        });
        log.push(EventBody::UserCustomToolResult {
            custom_tool_use_id: allowed,
            content: vec![],
            is_error: false,
        });
        assert_eq!(log.state().pending_tools, before);
    }

    #[test]
    fn mcp_calls_fold_like_tool_calls_under_their_model_name() {
        let mut log = Log::new();
        log.push(EventBody::user_text("go"));
        log.push(EventBody::SessionStatusRunning {});
        let s1 = log.push(EventBody::SpanModelRequestStart { model: None });
        let call = log.push(EventBody::AgentMcpToolUse {
            mcp_server_name: "fs".into(),
            name: "echo".into(),
            input: json!({"text": "hi"}),
            evaluated_permission: Some(Permission::Ask),
        });
        log.push(end(&s1));
        let st = log.state();
        assert_eq!(st.awaiting_ids(), vec![call.clone()]);
        let p = &st.pending_tools[0];
        assert_eq!(p.name, "mcp__fs__echo");
        assert_eq!(
            p.mcp,
            Some(McpRef {
                server: "fs".into(),
                tool: "echo".into()
            })
        );
        assert!(matches!(&st.messages[1].content[0],
            Part::ToolUse { name, .. } if name == "mcp__fs__echo"));
        log.push(EventBody::UserToolConfirmation {
            tool_use_id: call.clone(),
            result: ConfirmationResult::Allow,
            deny_message: None,
        });
        assert_eq!(log.state().pending_tools[0].gate, Gate::Confirmed);
        log.push(EventBody::AgentMcpToolResult {
            mcp_tool_use_id: call.clone(),
            content: vec![ContentBlock::text("hi")],
            is_error: false,
        });
        let st = log.state();
        assert!(st.pending_tools.is_empty());
        assert!(st.needs_model_call());
        assert_eq!(
            st.messages.last().unwrap().content,
            vec![Part::ToolResult {
                tool_use_id: call,
                content: "hi".into(),
                is_error: false
            }]
        );
    }

    fn outcome_spec(max: u32) -> OutcomeSpec {
        serde_json::from_value(json!({
            "outcome_id": "outc_1", "description": "make it", "max_iterations": max,
            "rubric": {"type": "text", "content": "- it works"},
            "escalate": {"after": 1, "model": "openai/gpt-5.1"}
        }))
        .unwrap()
    }

    fn outcome_end(start: &str, iteration: u32, result: EvaluationResult) -> EventBody {
        EventBody::SpanOutcomeEvaluationEnd(EvaluationEnd {
            outcome_evaluation_start_id: start.into(),
            outcome_id: "outc_1".into(),
            iteration,
            result,
            explanation: format!("verdict {iteration}"),
            usage: ModelUsage {
                input_tokens: 100,
                output_tokens: 10,
                ..Default::default()
            },
            criteria: vec![tether_proto::outcome::Criterion {
                name: "it works".into(),
                met: result == EvaluationResult::Satisfied,
                note: None,
            }],
            checks: vec![],
            judges: vec![],
            score: None,
            grader_model: None,
        })
    }

    /// One agent turn that answers without tools.
    fn agent_turn(log: &mut Log) {
        let s = log.push(EventBody::SpanModelRequestStart { model: None });
        log.push(EventBody::AgentMessage {
            content: vec![ContentBlock::text("done")],
        });
        log.push(end(&s));
    }

    fn follow_up(log: &mut Log) -> Vec<EventBody> {
        match log.state().turn_end() {
            TurnEnd::FollowUp(b) => {
                for x in b.clone() {
                    log.push(x);
                }
                b
            }
            other => panic!("expected a follow-up, got {other:?}"),
        }
    }

    #[test]
    fn an_outcome_cycles_through_revision_escalation_and_max_iterations() {
        let mut log = Log::new();
        assert_eq!(log.state().turn_end(), TurnEnd::Idle, "no outcome: idle");
        log.push(EventBody::UserDefineOutcome(outcome_spec(2)));
        log.push(EventBody::SessionStatusRunning {});
        let st = log.state();
        assert_eq!(st.outcome_evaluations()[0].result, "pending");
        assert!(st.needs_model_call(), "the agent starts on receipt");
        let Part::Text(first) = &st.messages[0].content[0] else {
            panic!()
        };
        assert!(
            first.contains("make it") && first.contains("- it works"),
            "{first}"
        );
        agent_turn(&mut log);
        let st = log.state();
        assert_eq!(st.outcome_evaluations()[0].result, "running");
        assert_eq!(st.turn_end(), TurnEnd::Evaluate { start_id: None });
        let start = log.push(EventBody::SpanOutcomeEvaluationStart {
            outcome_id: "outc_1".into(),
            iteration: 0,
        });
        assert_eq!(log.state().outcome_evaluations()[0].result, "evaluating");
        // A restart here evaluates the same cycle again, under the same start.
        assert_eq!(
            log.state().turn_end(),
            TurnEnd::Evaluate {
                start_id: Some(start.clone())
            }
        );
        log.push(outcome_end(&start, 0, EvaluationResult::NeedsRevision));
        let st = log.state();
        let ev = &st.outcome_evaluations()[0];
        assert_eq!((ev.result.as_str(), ev.iteration), ("running", 1));
        assert_eq!(ev.max_iterations, 2, "the limit is on the listing");
        assert_eq!(st.usage.tokens.input_tokens, 110, "grader usage counts");
        // The follow-up is decided from the log until it is there: escalation, then revision.
        let bodies = follow_up(&mut log);
        assert!(
            matches!(&bodies[0], EventBody::SessionUpdated { model: Some(m), .. } if m == "openai/gpt-5.1")
        );
        let EventBody::UserMessage { content } = &bodies[1] else {
            panic!()
        };
        let text = blocks_text(content);
        assert!(
            text.starts_with("The grader found the work needs revision (evaluation 1 of 2):"),
            "{text}"
        );
        assert!(
            text.contains("verdict 0") && text.contains("unmet: it works"),
            "{text}"
        );
        assert!(log.state().needs_model_call());
        assert_eq!(log.state().model.as_deref(), Some("openai/gpt-5.1"));
        agent_turn(&mut log);
        assert_eq!(log.state().turn_end(), TurnEnd::Evaluate { start_id: None });
        let start = log.push(EventBody::SpanOutcomeEvaluationStart {
            outcome_id: "outc_1".into(),
            iteration: 1,
        });
        log.push(outcome_end(
            &start,
            1,
            EvaluationResult::MaxIterationsReached,
        ));
        let st = log.state();
        assert_eq!(st.outcome_evaluations()[0].result, "max_iterations_reached");
        assert!(st.active_outcome().is_none());
        // The acknowledgment turn, once, with no escalation again and no evaluation after it.
        let bodies = follow_up(&mut log);
        assert_eq!(bodies.len(), 1);
        assert!(
            blocks_text(match &bodies[0] {
                EventBody::UserMessage { content } => content,
                _ => panic!(),
            })
            .starts_with(ACK_PREFIX)
        );
        agent_turn(&mut log);
        assert_eq!(log.state().turn_end(), TurnEnd::Idle);
        assert_eq!(log.state().outcome_evaluations()[0].usage.input_tokens, 200);
    }

    #[test]
    fn an_interrupt_ends_the_active_outcome() {
        let mut log = Log::new();
        log.push(EventBody::UserDefineOutcome(outcome_spec(3)));
        log.push(EventBody::SessionStatusRunning {});
        agent_turn(&mut log);
        // During the agent's turn: no start id.
        let Some(EventBody::SpanOutcomeEvaluationEnd(e)) = log.state().interrupted_outcome_end()
        else {
            panic!()
        };
        assert_eq!(e.outcome_evaluation_start_id, "");
        let start = log.push(EventBody::SpanOutcomeEvaluationStart {
            outcome_id: "outc_1".into(),
            iteration: 0,
        });
        let bodies = crate::session::events::interrupted_then_idle(&log.state(), "x");
        let EventBody::SpanOutcomeEvaluationEnd(e) = &bodies[0] else {
            panic!("{bodies:?}")
        };
        assert_eq!(
            (e.outcome_evaluation_start_id.as_str(), e.result),
            (start.as_str(), EvaluationResult::Interrupted)
        );
        for b in bodies {
            log.push(b);
        }
        let st = log.state();
        assert_eq!(st.outcome_evaluations()[0].result, "interrupted");
        assert!(st.interrupted_outcome_end().is_none());
        assert_eq!(st.turn_end(), TurnEnd::Idle);
    }

    #[test]
    fn session_updated_sets_model_and_budget() {
        let mut log = Log::new();
        log.push(EventBody::SessionUpdated {
            model: Some("openai/gpt-5.1".into()),
            max_cost_usd: None,
            title: None,
            name: None,
            metadata: None,
            vault_ids: None,
            agent: None,
        });
        log.push(EventBody::SessionUpdated {
            model: None,
            max_cost_usd: Some(2.0),
            title: None,
            name: None,
            metadata: None,
            vault_ids: None,
            agent: None,
        });
        let st = log.state();
        assert_eq!(st.model.as_deref(), Some("openai/gpt-5.1"));
        assert_eq!(st.max_cost_usd, Some(2.0));
    }
}
