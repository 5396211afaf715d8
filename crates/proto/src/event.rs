//! Session events: the immutable records of a session's log, and the stream-only deltas.
//!
//! Names and shapes follow the hosted Managed Agents API; tether's additions (`seq`,
//! `session_id`, tool `status`/`exit_code`/`duration_ms`, span latency) are additive.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One persisted event: `{id, type, processed_at, session_id, seq, ...payload}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    /// `sevt_...`, sortable.
    pub id: String,
    pub session_id: String,
    /// Gapless per-session cursor: 1, 2, 3, ... Clients resume from it.
    pub seq: u64,
    /// RFC 3339 time the daemon committed the event.
    pub processed_at: Option<String>,
    /// The thread an event is about: on every `session.thread_*` event, and on an event of a
    /// child thread cross-posted to the primary thread's stream (its tool calls that wait for
    /// a client, their answers). A cross-posted event keeps the original's `id`, so a tool call is answered by
    /// the same id whichever stream a client read it in. Absent on a stream's own events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_thread_id: Option<String>,
    #[serde(flatten)]
    pub body: EventBody,
}

impl Event {
    pub fn type_name(&self) -> &'static str {
        self.body.type_name()
    }
}

/// A content block. Text now; images and documents later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text { text: String },
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text { text: text.into() }
    }

    pub fn as_text(&self) -> &str {
        match self {
            ContentBlock::Text { text } => text,
        }
    }
}

/// Joins the text of a list of blocks.
pub fn blocks_text(blocks: &[ContentBlock]) -> String {
    blocks
        .iter()
        .map(ContentBlock::as_text)
        .collect::<Vec<_>>()
        .join("")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Allow,
    Ask,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationResult {
    Allow,
    Deny,
}

/// How a tool call ended (tether extension on `agent.tool_result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Ok,
    Error,
    Timeout,
    Interrupted,
    /// Not run: the user denied it (`user.tool_confirmation` with `result: deny`).
    Denied,
}

/// Why a session went idle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    RequiresAction {
        event_ids: Vec<String>,
    },
    RetriesExhausted,
    BudgetReached,
    /// tether: the turn was stopped by `user.interrupt`.
    Interrupted,
    /// tether: the turn hit the max-turns guard (model calls per turn).
    MaxTurnsReached,
    /// tether: a non-retryable error ended the turn (the preceding `session.error` says which).
    Error,
}

impl StopReason {
    /// Whether the turn ended the way the user asked for (used for CLI exit codes).
    pub fn is_success(&self) -> bool {
        matches!(self, StopReason::EndTurn)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryStatusKind {
    Retrying,
    Exhausted,
    Terminal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RetryStatus {
    #[serde(rename = "type")]
    pub kind: RetryStatusKind,
}

/// `session.error.error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionErrorInfo {
    /// `unknown_error`, `model_overloaded_error`, `model_rate_limited_error`,
    /// `model_request_failed_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub retry_status: RetryStatus,
    /// tether: attempt number (1-based) when retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// tether: maximum attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// tether: delay before the next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// The server of an `mcp_connection_failed_error` / `mcp_authentication_failed_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_server_name: Option<String>,
}

/// Token usage of one model request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    /// tether: USD, from the model's price; absent when the model has no known price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl ModelUsage {
    pub fn add(&mut self, other: &ModelUsage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            // Whole nano-dollars: totals come out the same whether folded live or from the log
            // (JSON parsing may be one ulp off), with no float dust like 0.0074789999999.
            (a, b) if a.is_some() || b.is_some() => {
                Some(((a.unwrap_or(0.0) + b.unwrap_or(0.0)) * 1e9).round() / 1e9)
            }
            _ => None,
        };
    }

    /// Input tokens of every kind (what filled the context window).
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The typed payload of an event; `type` is the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type")]
pub enum EventBody {
    #[serde(rename = "user.message")]
    UserMessage { content: Vec<ContentBlock> },
    #[serde(rename = "user.interrupt")]
    UserInterrupt {},
    #[serde(rename = "user.tool_confirmation")]
    UserToolConfirmation {
        tool_use_id: String,
        result: ConfirmationResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deny_message: Option<String>,
    },
    #[serde(rename = "user.custom_tool_result")]
    UserCustomToolResult {
        custom_tool_use_id: String,
        #[serde(default)]
        content: Vec<ContentBlock>,
        #[serde(default, skip_serializing_if = "is_false")]
        is_error: bool,
    },
    #[serde(rename = "agent.message")]
    AgentMessage { content: Vec<ContentBlock> },
    #[serde(rename = "agent.thinking")]
    AgentThinking {
        thinking: String,
        /// Provider signature needed to send the block back (Anthropic).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    #[serde(rename = "agent.tool_use")]
    AgentToolUse {
        name: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evaluated_permission: Option<Permission>,
    },
    #[serde(rename = "agent.tool_result")]
    AgentToolResult {
        /// The `sevt_` id of the `agent.tool_use` event.
        tool_use_id: String,
        content: Vec<ContentBlock>,
        is_error: bool,
        status: ToolStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        duration_ms: u64,
    },
    #[serde(rename = "agent.mcp_tool_use")]
    AgentMcpToolUse {
        mcp_server_name: String,
        name: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evaluated_permission: Option<Permission>,
    },
    #[serde(rename = "agent.mcp_tool_result")]
    AgentMcpToolResult {
        mcp_tool_use_id: String,
        content: Vec<ContentBlock>,
        is_error: bool,
    },
    #[serde(rename = "agent.custom_tool_use")]
    AgentCustomToolUse { name: String, input: Value },
    #[serde(rename = "session.status_running")]
    SessionStatusRunning {},
    #[serde(rename = "session.status_idle")]
    SessionStatusIdle { stop_reason: StopReason },
    #[serde(rename = "session.status_rescheduled")]
    SessionStatusRescheduled {},
    #[serde(rename = "session.status_terminated")]
    SessionStatusTerminated {},
    #[serde(rename = "session.error")]
    SessionError { error: SessionErrorInfo },
    /// Session settings changed (hosted: `session.updated`); tether carries the new model
    /// and budget here so the change is part of the log.
    #[serde(rename = "session.updated")]
    SessionUpdated {
        /// `provider/model` used from now on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// Spending limit in USD for the whole session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_cost_usd: Option<f64>,
        /// The new title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// tether: the session's new name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The whole metadata map after the change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<std::collections::BTreeMap<String, String>>,
        /// tether: the session's vaults from now on (ids only, never a secret); its next MCP
        /// connections and shell commands use their credentials.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vault_ids: Option<Vec<String>>,
        /// The session's agent after a change of its tools or MCP servers: the full
        /// snapshot in the hosted shape (`BetaManagedAgentsSessionAgent`), not a diff.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<serde_json::Value>,
    },
    /// Older turns were summarised so later requests fit the context window; the log itself
    /// is untouched. tether: `summary` replaces the events up to `through_seq` in requests.
    #[serde(rename = "agent.thread_context_compacted")]
    AgentThreadContextCompacted { summary: String, through_seq: u64 },
    #[serde(rename = "span.model_request_start")]
    SpanModelRequestStart {
        /// tether: `provider/model` of the request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    #[serde(rename = "span.model_request_end")]
    SpanModelRequestEnd {
        model_request_start_id: String,
        is_error: bool,
        model_usage: ModelUsage,
        /// tether: wall time of the request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_ms: Option<u64>,
    },
    /// tether: a tool call is about to run. Committed before the tool starts, so a daemon that
    /// restarts knows what was in flight, which process to kill and whether a file tool's
    /// change already happened.
    #[serde(rename = "span.tool_call_start")]
    SpanToolCallStart {
        tool_use_id: String,
        /// The process the call runs in (bash: the session shell), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        process: Option<ProcessRecord>,
        /// `edit`: SHA-256 of the file before and after the planned change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pre_sha256: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        post_sha256: Option<String>,
    },
    /// The task and rubric the agent works to (hosted `user.define_outcome`); the agent
    /// starts on receipt. The log's echo carries the daemon's `outcome_id`.
    #[serde(rename = "user.define_outcome")]
    UserDefineOutcome(crate::outcome::OutcomeSpec),
    /// A grader starts evaluating cycle `iteration` (0-based) of the outcome.
    #[serde(rename = "span.outcome_evaluation_start")]
    SpanOutcomeEvaluationStart { outcome_id: String, iteration: u32 },
    /// The grader is still at work (one per grader model request; its reasoning is never
    /// shown).
    #[serde(rename = "span.outcome_evaluation_ongoing")]
    SpanOutcomeEvaluationOngoing { outcome_id: String, iteration: u32 },
    #[serde(rename = "span.outcome_evaluation_end")]
    SpanOutcomeEvaluationEnd(crate::outcome::EvaluationEnd),
    /// A child thread was created (in the parent's stream). The thread lifecycle events name
    /// their thread in the envelope's `session_thread_id`.
    #[serde(rename = "session.thread_created")]
    SessionThreadCreated {
        agent_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workflow_run_id: Option<String>,
        /// tether: `provider/model` the thread runs on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// In the thread's own stream, and cross-posted to the primary's for child threads.
    #[serde(rename = "session.thread_status_running")]
    SessionThreadStatusRunning { agent_name: String },
    #[serde(rename = "session.thread_status_idle")]
    SessionThreadStatusIdle {
        agent_name: String,
        stop_reason: StopReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_details: Option<Value>,
    },
    #[serde(rename = "session.thread_status_rescheduled")]
    SessionThreadStatusRescheduled { agent_name: String },
    #[serde(rename = "session.thread_status_terminated")]
    SessionThreadStatusTerminated { agent_name: String },
    /// In the sender's stream. `to_agent_name` is absent when the target is the primary.
    #[serde(rename = "agent.thread_message_sent")]
    AgentThreadMessageSent {
        to_session_thread_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_agent_name: Option<String>,
        content: Vec<ContentBlock>,
        /// tether: the `send_to_agent`/`spawn_agent` call that sent it (its delivery key:
        /// a message is delivered once per call, across restarts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_use_id: Option<String>,
    },
    /// In the recipient's stream; it starts (or queues for) the recipient's turn like a
    /// `user.message`. `from_agent_name` is absent when the sender is the primary.
    #[serde(rename = "agent.thread_message_received")]
    AgentThreadMessageReceived {
        from_session_thread_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_agent_name: Option<String>,
        content: Vec<ContentBlock>,
        /// tether: as in `agent.thread_message_sent`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_use_id: Option<String>,
    },
    // Workflow runs (crate::workflow): hosted `workflow_run.*`, each task a phase; then
    // tether's task records (hidden from hosted HTTP readers like `span.tool_call_start`).
    /// Sent once, first.
    #[serde(rename = "workflow_run.created")]
    WorkflowRunCreated {
        workflow_run_id: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        phases: Vec<crate::workflow::Phase>,
        /// tether: the plan, so the run's state is a fold over its events alone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spec: Option<Box<crate::workflow::WorkflowSpec>>,
        /// tether: the agent's `start_workflow` call that started the run (none: a person's
        /// run); its end is then a message to the agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_use_id: Option<String>,
    },
    #[serde(rename = "workflow_run.status_running")]
    WorkflowRunStatusRunning { workflow_run_id: String },
    #[serde(rename = "workflow_run.status_idle")]
    WorkflowRunStatusIdle { workflow_run_id: String },
    #[serde(rename = "workflow_run.phase_started")]
    WorkflowRunPhaseStarted {
        workflow_run_id: String,
        workflow_run_phase_id: String,
    },
    /// Exactly one per start; says nothing about success.
    #[serde(rename = "workflow_run.phase_ended")]
    WorkflowRunPhaseEnded {
        workflow_run_id: String,
        workflow_run_phase_id: String,
        phase_started_id: String,
    },
    /// `workflow_run_id` is null when no run was created (the open-run limit).
    #[serde(rename = "workflow_run.error")]
    WorkflowRunError {
        workflow_run_id: Option<String>,
        error: crate::workflow::RunError,
    },
    /// Sent once, always the run's last event.
    #[serde(rename = "workflow_run.status_ended")]
    WorkflowRunStatusEnded {
        workflow_run_id: String,
        result: crate::workflow::RunResult,
        /// tether: for a run an agent started, the ending notice its agent reads (the result
        /// and every task's status and output), recorded with the end so it is given once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notice: Option<String>,
    },
    /// tether: an attempt of a task is about to start (written before its thread is made).
    #[serde(rename = "span.workflow_task_started")]
    SpanWorkflowTaskStarted {
        workflow_run_id: String,
        task_id: String,
        attempt: u32,
        /// The attempt's thread (`sthr_...`); none for a checkpoint. Not `session_thread_id`:
        /// that name is the envelope's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// tether: a for_each task's items, fixed once (item i runs as task `id[i]`).
    #[serde(rename = "span.workflow_task_fanned_out")]
    SpanWorkflowTaskFannedOut {
        workflow_run_id: String,
        task_id: String,
        items: Vec<Value>,
    },
    /// tether: the attempt's reply is in; its checks run.
    #[serde(rename = "span.workflow_task_checking")]
    SpanWorkflowTaskChecking {
        workflow_run_id: String,
        task_id: String,
        attempt: u32,
    },
    /// tether: how an attempt ended (a checkpoint's answer is its one attempt's end).
    #[serde(rename = "span.workflow_task_ended")]
    SpanWorkflowTaskEnded {
        workflow_run_id: String,
        task_id: String,
        attempt: u32,
        status: crate::workflow::AttemptStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explanation: Option<String>,
        /// The attempt's thread's tokens and cost (its turns and any grading).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<ModelUsage>,
    }, // MCP elicitation (issue 25)
    /// tether: an MCP server asked the user for input during a tool call
    /// (`elicitation/create`, form mode). Recorded before anyone can answer.
    #[serde(rename = "tether.mcp_elicitation_requested")]
    McpElicitationRequested {
        /// `elic_...`.
        elicitation_id: String,
        mcp_server_name: String,
        /// The `agent.mcp_tool_use` event of the call it was asked during.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_use_id: Option<String>,
        message: String,
        /// Form mode: the flat schema of the fields asked for (null in URL mode).
        #[serde(default, skip_serializing_if = "Value::is_null")]
        requested_schema: Value,
        /// `form` (left out) or `url`: the user is to open `url` in a browser themselves.
        #[serde(
            default,
            skip_serializing_if = "crate::elicitation::ElicitationMode::is_form"
        )]
        mode: crate::elicitation::ElicitationMode,
        /// URL mode: the page to open, exactly as the server sent it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// URL mode: the server's own id (`elicitationId`), which its
        /// `notifications/elicitation/complete` names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_elicitation_id: Option<String>,
        /// The agent whose server asks, in a child thread's stream (and its cross-post).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_name: Option<String>,
    },
    /// tether: the MCP server said a URL-mode elicitation is complete
    /// (`notifications/elicitation/complete`): the user finished on the page.
    #[serde(rename = "tether.mcp_elicitation_completed")]
    McpElicitationCompleted { elicitation_id: String },
    /// tether: how an elicitation ended: the first answer (recorded before the server gets
    /// it), or tetherd's cancel with its `reason` (interrupt, timeout, restart).
    #[serde(rename = "tether.mcp_elicitation_answered")]
    McpElicitationAnswered {
        elicitation_id: String,
        action: crate::elicitation::ElicitationAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    // MCP authorization step-up (issue 25, mcpauth2; mcplogin)
    /// tether: an MCP server wants authorization the session lacks: more than its
    /// `mcp_oauth` credential carries (`reason` `insufficient_scope`: a 403 on a call; the
    /// credential is updated in place), or any at all (`unauthorized`: it refused the
    /// connection and the session has no credential for it; a new `mcp_oauth` credential
    /// goes into the session's first vault). tetherd started a login: the user opens
    /// `authorization_url` in a browser on tetherd's machine; when it comes back, the
    /// session's next connection (its next model request) uses the credential.
    #[serde(rename = "tether.mcp_authorization_required")]
    McpAuthorizationRequired {
        mcp_server_name: String,
        mcp_server_url: String,
        authorization_url: String,
        /// `credential.login_wait` takes it.
        login_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// What the server said, for the user.
        reason: String,
    },
}

/// A process the daemon started, identified across pid reuse by its start time (field 22 of
/// `/proc/<pid>/stat`, in clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProcessRecord {
    pub pid: u32,
    pub start_time: u64,
}

impl EventBody {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::UserMessage { .. } => "user.message",
            EventBody::UserInterrupt {} => "user.interrupt",
            EventBody::UserToolConfirmation { .. } => "user.tool_confirmation",
            EventBody::UserCustomToolResult { .. } => "user.custom_tool_result",
            EventBody::AgentMessage { .. } => "agent.message",
            EventBody::AgentThinking { .. } => "agent.thinking",
            EventBody::AgentToolUse { .. } => "agent.tool_use",
            EventBody::AgentToolResult { .. } => "agent.tool_result",
            EventBody::AgentMcpToolUse { .. } => "agent.mcp_tool_use",
            EventBody::AgentMcpToolResult { .. } => "agent.mcp_tool_result",
            EventBody::AgentCustomToolUse { .. } => "agent.custom_tool_use",
            EventBody::SessionStatusRunning {} => "session.status_running",
            EventBody::SessionStatusIdle { .. } => "session.status_idle",
            EventBody::SessionStatusRescheduled {} => "session.status_rescheduled",
            EventBody::SessionStatusTerminated {} => "session.status_terminated",
            EventBody::SessionError { .. } => "session.error",
            EventBody::SessionUpdated { .. } => "session.updated",
            EventBody::AgentThreadContextCompacted { .. } => "agent.thread_context_compacted",
            EventBody::SpanModelRequestStart { .. } => "span.model_request_start",
            EventBody::SpanModelRequestEnd { .. } => "span.model_request_end",
            EventBody::SpanToolCallStart { .. } => "span.tool_call_start",
            EventBody::UserDefineOutcome(_) => "user.define_outcome",
            EventBody::SpanOutcomeEvaluationStart { .. } => "span.outcome_evaluation_start",
            EventBody::SpanOutcomeEvaluationOngoing { .. } => "span.outcome_evaluation_ongoing",
            EventBody::SpanOutcomeEvaluationEnd(_) => "span.outcome_evaluation_end",
            EventBody::SessionThreadCreated { .. } => "session.thread_created",
            EventBody::SessionThreadStatusRunning { .. } => "session.thread_status_running",
            EventBody::SessionThreadStatusIdle { .. } => "session.thread_status_idle",
            EventBody::SessionThreadStatusRescheduled { .. } => "session.thread_status_rescheduled",
            EventBody::SessionThreadStatusTerminated { .. } => "session.thread_status_terminated",
            EventBody::AgentThreadMessageSent { .. } => "agent.thread_message_sent",
            EventBody::AgentThreadMessageReceived { .. } => "agent.thread_message_received",
            EventBody::WorkflowRunCreated { .. } => "workflow_run.created",
            EventBody::WorkflowRunStatusRunning { .. } => "workflow_run.status_running",
            EventBody::WorkflowRunStatusIdle { .. } => "workflow_run.status_idle",
            EventBody::WorkflowRunPhaseStarted { .. } => "workflow_run.phase_started",
            EventBody::WorkflowRunPhaseEnded { .. } => "workflow_run.phase_ended",
            EventBody::WorkflowRunError { .. } => "workflow_run.error",
            EventBody::WorkflowRunStatusEnded { .. } => "workflow_run.status_ended",
            EventBody::SpanWorkflowTaskStarted { .. } => "span.workflow_task_started",
            EventBody::SpanWorkflowTaskFannedOut { .. } => "span.workflow_task_fanned_out",
            EventBody::SpanWorkflowTaskChecking { .. } => "span.workflow_task_checking",
            EventBody::SpanWorkflowTaskEnded { .. } => "span.workflow_task_ended",
            EventBody::McpElicitationRequested { .. } => "tether.mcp_elicitation_requested",
            EventBody::McpElicitationAnswered { .. } => "tether.mcp_elicitation_answered",
            EventBody::McpElicitationCompleted { .. } => "tether.mcp_elicitation_completed",
            EventBody::McpAuthorizationRequired { .. } => "tether.mcp_authorization_required",
        }
    }

    /// The text a person reads in this event (what `session.search` looks in): messages,
    /// thinking, a tool call's name and input, tool output, errors.
    pub fn search_text(&self) -> String {
        match self {
            EventBody::UserMessage { content } | EventBody::AgentMessage { content } => {
                blocks_text(content)
            }
            EventBody::AgentThreadMessageSent { content, .. }
            | EventBody::AgentThreadMessageReceived { content, .. } => blocks_text(content),
            EventBody::AgentThinking { thinking, .. } => thinking.clone(),
            EventBody::AgentToolUse { name, input, .. }
            | EventBody::AgentMcpToolUse { name, input, .. }
            | EventBody::AgentCustomToolUse { name, input } => format!("{name} {input}"),
            EventBody::AgentToolResult { content, .. }
            | EventBody::AgentMcpToolResult { content, .. }
            | EventBody::UserCustomToolResult { content, .. } => blocks_text(content),
            EventBody::UserToolConfirmation { deny_message, .. } => {
                deny_message.clone().unwrap_or_default()
            }
            EventBody::SessionError { error } => format!("{}: {}", error.kind, error.message),
            EventBody::UserDefineOutcome(o) => format!("{}\n{}", o.description, o.rubric_text()),
            EventBody::SpanOutcomeEvaluationEnd(e) => {
                format!("{} {}", e.result.as_str(), e.explanation)
            }
            _ => String::new(),
        }
    }

    /// The workflow run an event is about, if it is a run's event.
    pub fn workflow_run_id(&self) -> Option<&str> {
        match self {
            EventBody::WorkflowRunCreated {
                workflow_run_id, ..
            }
            | EventBody::WorkflowRunStatusRunning { workflow_run_id }
            | EventBody::WorkflowRunStatusIdle { workflow_run_id }
            | EventBody::WorkflowRunPhaseStarted {
                workflow_run_id, ..
            }
            | EventBody::WorkflowRunPhaseEnded {
                workflow_run_id, ..
            }
            | EventBody::WorkflowRunStatusEnded {
                workflow_run_id, ..
            }
            | EventBody::SpanWorkflowTaskStarted {
                workflow_run_id, ..
            }
            | EventBody::SpanWorkflowTaskFannedOut {
                workflow_run_id, ..
            }
            | EventBody::SpanWorkflowTaskChecking {
                workflow_run_id, ..
            }
            | EventBody::SpanWorkflowTaskEnded {
                workflow_run_id, ..
            } => Some(workflow_run_id),
            EventBody::WorkflowRunError {
                workflow_run_id, ..
            } => workflow_run_id.as_deref(),
            _ => None,
        }
    }

    pub fn user_text(text: impl Into<String>) -> Self {
        EventBody::UserMessage {
            content: vec![ContentBlock::text(text)],
        }
    }
}

/// Stream-only data: never stored, no seq. `n` is a per-session counter so a client can drop
/// deltas already covered by the attach snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Delta {
    pub session_id: String,
    pub n: u64,
    #[serde(flatten)]
    pub kind: DeltaKind,
}

impl Delta {
    /// Appends `next` to this delta when it continues the same text (same session, same kind
    /// and block or tool call), taking its `n`: one push then says what a burst of
    /// one-token pushes said. `false` (and no change) when it does not continue it.
    pub fn absorb(&mut self, next: &Delta) -> bool {
        if self.session_id != next.session_id || next.n <= self.n {
            return false;
        }
        let tail = match (&mut self.kind, &next.kind) {
            (DeltaKind::Text { index, text }, DeltaKind::Text { index: i, text: t })
            | (DeltaKind::Thinking { index, text }, DeltaKind::Thinking { index: i, text: t })
                if index == i =>
            {
                (text, t)
            }
            (
                DeltaKind::ToolInput {
                    index,
                    name,
                    partial_json,
                },
                DeltaKind::ToolInput {
                    index: i,
                    name: nm,
                    partial_json: pj,
                },
            ) if index == i && name == nm => (partial_json, pj),
            (
                DeltaKind::ToolOutput { tool_use_id, text },
                DeltaKind::ToolOutput {
                    tool_use_id: id,
                    text: t,
                },
            ) if tool_use_id == id => (text, t),
            _ => return false,
        };
        tail.0.push_str(tail.1);
        self.n = next.n;
        true
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeltaKind {
    /// A model response started; drop any previous partial message. `message_id` and
    /// `thinking_id` are the ids its `agent.message` and (first) `agent.thinking` events will
    /// have, so a preview is named by the event that concludes it (hosted `event_start`).
    MessageStart {
        model_request_start_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thinking_id: Option<String>,
    },
    /// Text of the message being written.
    Text { index: u32, text: String },
    /// Thinking text being written.
    Thinking { index: u32, text: String },
    /// Partial JSON input of a tool call being written.
    ToolInput {
        index: u32,
        name: String,
        partial_json: String,
    },
    /// stdout/stderr of a running tool.
    ToolOutput { tool_use_id: String, text: String },
    /// Something the people watching should know that cannot be stored, e.g. that the log
    /// can't be written right now and the session is waiting for it.
    Notice { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(body: EventBody) {
        let ev = Event {
            id: "sevt_01".into(),
            session_id: "sesn_01".into(),
            seq: 7,
            processed_at: Some("2026-11-25T08:00:00.000Z".into()),
            session_thread_id: None,
            body,
        };
        let s = serde_json::to_string(&ev).unwrap();
        let back: Event = serde_json::from_str(&s).unwrap();
        assert_eq!(back, ev, "{s}");
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["type"], ev.type_name());
        assert_eq!(v["seq"], 7);
    }

    #[test]
    fn workflow_events_round_trip_with_a_thread_in_the_envelope() {
        use crate::workflow::{AttemptStatus, RunResult};
        for body in [
            EventBody::SpanWorkflowTaskStarted {
                workflow_run_id: "wrun_1".into(),
                task_id: "each[3]".into(),
                attempt: 2,
                thread_id: Some("sthr_9".into()),
                model: Some("openai/gpt-4.1".into()),
            },
            EventBody::SpanWorkflowTaskEnded {
                workflow_run_id: "wrun_1".into(),
                task_id: "a".into(),
                attempt: 1,
                status: AttemptStatus::Failed,
                output: None,
                explanation: Some("check failed".into()),
                usage: Some(crate::ModelUsage {
                    input_tokens: 5,
                    ..Default::default()
                }),
            },
            EventBody::WorkflowRunStatusEnded {
                workflow_run_id: "wrun_1".into(),
                result: RunResult::Stopped {},
                notice: Some("[Workflow run wrun_1 ended stopped.]".into()),
            },
        ] {
            round_trip(body.clone());
            // Body fields must not collide with the envelope's (it is flattened).
            let ev = Event {
                id: "sevt_01".into(),
                session_id: "sesn_01".into(),
                seq: 1,
                processed_at: None,
                session_thread_id: Some("sthr_other".into()),
                body,
            };
            let back: Event = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
            assert_eq!(back, ev);
        }
    }

    fn delta(n: u64, kind: DeltaKind) -> Delta {
        Delta {
            session_id: "sesn_01".into(),
            n,
            kind,
        }
    }

    fn text(index: u32, t: &str) -> DeltaKind {
        DeltaKind::Text {
            index,
            text: t.into(),
        }
    }

    #[test]
    fn deltas_absorb_only_what_continues_them() {
        let mut d = delta(1, text(0, "he"));
        assert!(d.absorb(&delta(2, text(0, "llo"))));
        assert_eq!(d, delta(2, text(0, "hello")));
        // Another block, another kind, an older n, another session: left alone.
        assert!(!d.absorb(&delta(3, text(1, "x"))));
        assert!(!d.absorb(&delta(
            3,
            DeltaKind::Thinking {
                index: 0,
                text: "x".into()
            }
        )));
        assert!(!d.absorb(&delta(2, text(0, "x"))));
        let mut other = delta(3, text(0, "x"));
        other.session_id = "sesn_02".into();
        assert!(!d.absorb(&other));
        assert_eq!(d, delta(2, text(0, "hello")));

        let out = |id: &str, t: &str| DeltaKind::ToolOutput {
            tool_use_id: id.into(),
            text: t.into(),
        };
        let mut o = delta(5, out("a", "1\n"));
        assert!(o.absorb(&delta(6, out("a", "2\n"))));
        assert!(!o.absorb(&delta(7, out("b", "3\n"))));
        assert_eq!(o, delta(6, out("a", "1\n2\n")));

        let input = |name: &str, j: &str| DeltaKind::ToolInput {
            index: 1,
            name: name.into(),
            partial_json: j.into(),
        };
        let mut i = delta(8, input("bash", "{\"co"));
        assert!(i.absorb(&delta(9, input("bash", "mmand\""))));
        assert!(!i.absorb(&delta(10, input("read", "}"))));
        assert_eq!(i, delta(9, input("bash", "{\"command\"")));

        let mut start = delta(
            11,
            DeltaKind::MessageStart {
                model_request_start_id: "x".into(),
                message_id: None,
                thinking_id: None,
            },
        );
        assert!(!start.absorb(&delta(
            12,
            DeltaKind::MessageStart {
                model_request_start_id: "x".into(),
                message_id: None,
                thinking_id: None,
            }
        )));
    }

    #[test]
    fn every_event_round_trips() {
        let usage = ModelUsage {
            input_tokens: 10,
            output_tokens: 5,
            cache_read_input_tokens: 1,
            cache_creation_input_tokens: 2,
            cost_usd: None,
        };
        for body in [
            EventBody::SessionThreadCreated {
                agent_name: "reviewer".into(),
                workflow_run_id: None,
                model: Some("openai/gpt-5.1".into()),
            },
            EventBody::SessionThreadStatusIdle {
                agent_name: "reviewer".into(),
                stop_reason: StopReason::EndTurn,
                stop_details: None,
            },
            EventBody::SessionThreadStatusTerminated {
                agent_name: "reviewer".into(),
            },
            EventBody::AgentThreadMessageSent {
                to_session_thread_id: "sthr_1".into(),
                to_agent_name: Some("reviewer".into()),
                content: vec![ContentBlock::text("review this")],
                tool_use_id: Some("sevt_9".into()),
            },
            EventBody::AgentThreadMessageReceived {
                from_session_thread_id: "sthr_0".into(),
                from_agent_name: None,
                content: vec![ContentBlock::text("review this")],
                tool_use_id: Some("sevt_9".into()),
            },
            EventBody::SessionUpdated {
                model: Some("openai/gpt-5.1".into()),
                max_cost_usd: Some(2.0),
                title: Some("t".into()),
                name: Some("n".into()),
                metadata: Some([("k".to_string(), "v".to_string())].into()),
                vault_ids: None,
                agent: None,
            },
            EventBody::AgentThreadContextCompacted {
                summary: "did things".into(),
                through_seq: 12,
            },
            EventBody::user_text("hi"),
            EventBody::UserInterrupt {},
            EventBody::UserToolConfirmation {
                tool_use_id: "sevt_x".into(),
                result: ConfirmationResult::Deny,
                deny_message: Some("no".into()),
            },
            EventBody::UserCustomToolResult {
                custom_tool_use_id: "sevt_y".into(),
                content: vec![ContentBlock::text("42")],
                is_error: true,
            },
            EventBody::AgentMessage {
                content: vec![ContentBlock::text("hello")],
            },
            EventBody::AgentThinking {
                thinking: "hmm".into(),
                signature: Some("sig".into()),
            },
            EventBody::AgentToolUse {
                name: "bash".into(),
                input: json!({"command": "ls"}),
                evaluated_permission: Some(Permission::Allow),
            },
            EventBody::AgentToolResult {
                tool_use_id: "sevt_t".into(),
                content: vec![ContentBlock::text("ok")],
                is_error: false,
                status: ToolStatus::Ok,
                exit_code: Some(0),
                duration_ms: 12,
            },
            EventBody::AgentMcpToolUse {
                mcp_server_name: "gh".into(),
                name: "list".into(),
                input: json!({}),
                evaluated_permission: None,
            },
            EventBody::AgentMcpToolResult {
                mcp_tool_use_id: "sevt_m".into(),
                content: vec![],
                is_error: false,
            },
            EventBody::AgentCustomToolUse {
                name: "lookup".into(),
                input: json!({"q": 1}),
            },
            EventBody::SessionStatusRunning {},
            EventBody::SessionStatusIdle {
                stop_reason: StopReason::EndTurn,
            },
            EventBody::SessionStatusIdle {
                stop_reason: StopReason::RequiresAction {
                    event_ids: vec!["sevt_a".into()],
                },
            },
            EventBody::SessionStatusRescheduled {},
            EventBody::SessionStatusTerminated {},
            EventBody::SessionError {
                error: SessionErrorInfo {
                    kind: "model_rate_limited_error".into(),
                    message: "slow down".into(),
                    retry_status: RetryStatus {
                        kind: RetryStatusKind::Retrying,
                    },
                    attempt: Some(2),
                    max_attempts: Some(5),
                    retry_in_ms: Some(4000),
                    mcp_server_name: None,
                },
            },
            EventBody::SpanModelRequestStart {
                model: Some("anthropic/claude-sonnet-4-6".into()),
            },
            EventBody::SpanModelRequestEnd {
                model_request_start_id: "sevt_s".into(),
                is_error: false,
                model_usage: usage,
                latency_ms: Some(30),
            },
            EventBody::SpanToolCallStart {
                tool_use_id: "sevt_t".into(),
                process: Some(ProcessRecord {
                    pid: 42,
                    start_time: 123_456,
                }),
                pre_sha256: Some("aa".into()),
                post_sha256: Some("bb".into()),
            },
            EventBody::McpElicitationRequested {
                elicitation_id: "elic_1".into(),
                mcp_server_name: "forms".into(),
                tool_use_id: Some("sevt_t".into()),
                message: "Your name?".into(),
                requested_schema: json!({"type": "object", "properties": {"name": {"type": "string"}}}),
                mode: Default::default(),
                url: None,
                server_elicitation_id: None,
                agent_name: None,
            },
            EventBody::McpElicitationRequested {
                elicitation_id: "elic_2".into(),
                mcp_server_name: "login".into(),
                tool_use_id: Some("sevt_t".into()),
                message: "Sign in".into(),
                requested_schema: Value::Null,
                mode: crate::elicitation::ElicitationMode::Url,
                url: Some("https://example.com/login?x=1".into()),
                server_elicitation_id: Some("srv-1".into()),
                agent_name: Some("reviewer".into()),
            },
            EventBody::McpElicitationCompleted {
                elicitation_id: "elic_2".into(),
            },
            EventBody::McpElicitationAnswered {
                elicitation_id: "elic_1".into(),
                action: crate::elicitation::ElicitationAction::Cancel,
                content: None,
                reason: Some("tetherd restarted".into()),
            },
            EventBody::McpAuthorizationRequired {
                mcp_server_name: "files".into(),
                mcp_server_url: "https://mcp.example.com/mcp".into(),
                authorization_url: "https://auth.example.com/authorize?client_id=x".into(),
                login_id: "login_1".into(),
                scope: Some("files:write".into()),
                reason: "insufficient_scope".into(),
            },
        ] {
            round_trip(body);
        }
    }

    #[test]
    fn wire_names_match_the_hosted_api() {
        let v = serde_json::to_value(EventBody::SessionStatusIdle {
            stop_reason: StopReason::RequiresAction {
                event_ids: vec!["sevt_1".into()],
            },
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"type": "session.status_idle", "stop_reason": {"type": "requires_action", "event_ids": ["sevt_1"]}})
        );
        let v = serde_json::to_value(EventBody::user_text("hi")).unwrap();
        assert_eq!(
            v,
            json!({"type": "user.message", "content": [{"type": "text", "text": "hi"}]})
        );
    }

    #[test]
    fn unknown_event_type_is_an_error_not_a_panic() {
        let r: Result<Event, _> = serde_json::from_str(
            r#"{"id":"sevt_1","session_id":"s","seq":1,"processed_at":null,"type":"agent.nope"}"#,
        );
        assert!(r.is_err());
    }

    #[test]
    fn deltas_round_trip() {
        for kind in [
            DeltaKind::MessageStart {
                model_request_start_id: "sevt_1".into(),
                message_id: Some("sevt_2".into()),
                thinking_id: None,
            },
            DeltaKind::Text {
                index: 0,
                text: "he".into(),
            },
            DeltaKind::Thinking {
                index: 0,
                text: "hm".into(),
            },
            DeltaKind::ToolInput {
                index: 1,
                name: "bash".into(),
                partial_json: "{\"com".into(),
            },
            DeltaKind::ToolOutput {
                tool_use_id: "sevt_2".into(),
                text: "out\n".into(),
            },
            DeltaKind::Notice {
                message: "disk full".into(),
            },
        ] {
            let d = Delta {
                session_id: "sesn_1".into(),
                n: 3,
                kind,
            };
            let s = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<Delta>(&s).unwrap(), d);
        }
    }
}
