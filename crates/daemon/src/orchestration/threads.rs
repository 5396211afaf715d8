//! Multi-agent threads (hosted `session_thread`): a session's primary thread delegates to
//! child threads (roster agents, inline agents it defines) and consults an advisor.
//!
//! A child thread IS a session internally: a row with an `sthr_` id whose `parent_id` is its
//! session, sharing the session's workspace, environment layer and network, with its own
//! shell, model, prompt, tools and gapless log (so attach, replay and events work on it by
//! id). What clients of the primary must see of it is cross-posted by its appends
//! (`session::crosspost`). This room runs the primary's agent tools:
//! - `list_agents`: the roster and the threads;
//! - `send_to_agent {agent, message}` / `spawn_agent {name, system, model?, message}`:
//!   (a) the thread is created if needed (row + `session.thread_created`, one transaction),
//!   (b) the message is delivered once per tool call (`agent.thread_message_sent` in the
//!   primary and `agent.thread_message_received` in the thread, one transaction, keyed by
//!   the call's id), (c) the thread's reply is awaited (its idle after that message) and
//!   becomes the call's result. Calls of one response are delivered first, then awaited
//!   together, so threads work in parallel. After a restart a call resumes at the step it
//!   reached: nothing is sent twice.
//! - `consult_advisor {question}`: one request to the advisor model, recorded as the
//!   advisor's thread in the primary's stream; a failure is the tool's result, never the
//!   turn's.

use std::sync::{Arc, Weak};

use serde_json::{Value, json};
use tether_proto::multiagent::{self as ma, RosterEntry, RosterObject};
use tether_proto::thread::{SessionThread, ThreadAgent, ThreadStats, primary_thread_id};
use tether_proto::{
    ContentBlock, ErrorBody, ErrorCode, EventBody, SessionStatus, StopReason, ToolStatus,
};
use tokio_util::sync::CancellationToken;

use crate::provider::{Message, ModelRequest, Part, ToolSpec};
use crate::runtime::Runtime;
use crate::session::events;
use crate::session::live::Session;
use crate::session::services::AgentTools;
use crate::session::state::PendingTool;
use crate::store::Draft;
use crate::store::error::StoreError;
use crate::store::rows::SessionRow;

/// The agent tools of every primary thread; installed once into the daemon's services.
pub struct Threads {
    rt: Weak<Runtime>,
}

impl Threads {
    pub fn install(rt: &Arc<Runtime>) {
        let _ = rt.agent_tools.set(Arc::new(Threads {
            rt: Arc::downgrade(rt),
        }));
    }
}

/// A new child thread id: `sthr_` + a fresh sortable id.
fn thread_id() -> String {
    let id = crate::ids::session_id();
    format!("sthr_{}", id.strip_prefix("sesn_").unwrap_or(&id))
}

fn text_result(call: &PendingTool, text: String, is_error: bool) -> EventBody {
    events::result_of(
        call,
        text,
        is_error,
        if is_error {
            ToolStatus::Error
        } else {
            ToolStatus::Ok
        },
        0,
    )
}

fn string_field<'a>(input: &'a Value, field: &str) -> Option<&'a str> {
    input
        .get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A roster agent the primary may message, resolved to a stored version.
struct RosterAgent {
    agent: tether_proto::agent::Agent,
}

impl RosterAgent {
    fn name(&self) -> &str {
        &self.agent.spec.name
    }

    fn thread_agent(&self, session_model: &str) -> ThreadAgent {
        let spec = &self.agent.spec;
        ThreadAgent::Agent {
            id: self.agent.id.clone(),
            version: self.agent.version,
            name: spec.name.clone(),
            description: spec.description.clone(),
            system: spec.system.clone(),
            model: spec
                .model
                .clone()
                .unwrap_or(tether_proto::agent::AgentModel {
                    id: session_model.to_string(),
                    effort: None,
                    speed: None,
                }),
            tools: spec
                .tools
                .iter()
                .filter_map(|t| serde_json::to_value(t).ok())
                .collect(),
            mcp_servers: spec
                .mcp_servers
                .iter()
                .filter_map(|t| serde_json::to_value(t).ok())
                .collect(),
            skills: Vec::new(),
        }
    }
}

/// What a send waits on once its message is delivered.
struct Delivered {
    call: PendingTool,
    thread: Arc<Session>,
}

impl AgentTools for Threads {
    fn specs(&self, names: &[&'static str]) -> Vec<ToolSpec> {
        names
            .iter()
            .filter_map(|n| match *n {
                ma::TOOL_START_WORKFLOW => Some(super::workflows::tool::spec()),
                n => spec(n),
            })
            .collect()
    }

    fn run<'a>(
        &'a self,
        session: &'a Arc<Session>,
        calls: Vec<PendingTool>,
        cancel: &'a CancellationToken,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'a>>
    {
        Box::pin(async move {
            let Some(rt) = self.rt.upgrade() else {
                return Ok(());
            };
            run_calls(&rt, session, calls, cancel).await
        })
    }
}

fn spec(name: &str) -> Option<ToolSpec> {
    let (description, schema) = match name {
        ma::TOOL_LIST_AGENTS => (
            "List the agents you can delegate to (name, description, model) and the threads already running in this session with their status.",
            json!({"type": "object", "properties": {}}),
        ),
        ma::TOOL_SEND_TO_AGENT => (
            "Send a message to another agent and wait for its reply. The first message to a roster agent starts its thread; later ones continue the same conversation. Threads share your workspace but not your history, so say everything the agent needs. Several calls in one response run in parallel.",
            json!({"type": "object", "properties": {
                "agent": {"type": "string", "description": "The agent's name (see list_agents)."},
                "message": {"type": "string", "description": "What to ask or tell it."}
            }, "required": ["agent", "message"]}),
        ),
        ma::TOOL_SPAWN_AGENT => (
            "Define a new agent (a name, its system prompt and optionally its model), start its thread with a message and wait for its reply. Message it again later with send_to_agent and its name.",
            json!({"type": "object", "properties": {
                "name": {"type": "string", "description": "A short unique name for the agent."},
                "system": {"type": "string", "description": "Its system prompt."},
                "model": {"type": "string", "description": "provider/model; default: yours."},
                "message": {"type": "string", "description": "Its first task."}
            }, "required": ["name", "system", "message"]}),
        ),
        ma::TOOL_CONSULT_ADVISOR => (
            "Ask the advisor (a separate model that sees this conversation so far) for advice on a question. Its answer is advice, not an action.",
            json!({"type": "object", "properties": {
                "question": {"type": "string", "description": "What you want advice on."}
            }, "required": ["question"]}),
        ),
        _ => return None,
    };
    Some(ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        input_schema: schema,
    })
}

async fn run_calls(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    calls: Vec<PendingTool>,
    cancel: &CancellationToken,
) -> Result<(), StoreError> {
    close_stale_advisors(s).await?;
    // Their intents first, like any tool call's (nothing of them is re-run after a restart:
    // a send resumes at the step it reached, a consultation is asked again).
    let intents: Vec<EventBody> = calls
        .iter()
        .filter(|c| c.started.is_none())
        .map(|c| EventBody::SpanToolCallStart {
            tool_use_id: c.tool_use_id.clone(),
            process: None,
            pre_sha256: None,
            post_sha256: None,
        })
        .collect();
    if !intents.is_empty() {
        s.append_retrying(intents).await?;
    }
    let mut waits = Vec::new();
    let mut advice = Vec::new();
    // Deliver every message first (each in its own commit), then await all the replies.
    for call in calls {
        if cancel.is_cancelled() {
            return Ok(());
        }
        match call.name.as_str() {
            ma::TOOL_LIST_AGENTS => {
                let text = list_agents(rt, s).await;
                s.append_one_retrying(text_result(&call, text, false))
                    .await?;
            }
            ma::TOOL_CONSULT_ADVISOR => advice.push(call),
            ma::TOOL_START_WORKFLOW => super::workflows::tool::run(rt, s, &call).await?,
            _ => match deliver(rt, s, &call).await {
                Ok(thread) => waits.push(Delivered { call, thread }),
                Err(Refused(why)) => {
                    s.append_one_retrying(text_result(&call, why, true)).await?;
                }
            },
        }
    }
    let mut tasks = Vec::new();
    for d in waits {
        let s = s.clone();
        let cancel = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let Some((text, is_error)) = await_reply(&d.thread, &d.call, &cancel).await else {
                return Ok(());
            };
            s.append_one_retrying(text_result(&d.call, text, is_error))
                .await
                .map(|_| ())
        }));
    }
    for call in advice {
        let s = s.clone();
        let cancel = cancel.clone();
        tasks.push(tokio::spawn(
            async move { consult(&s, &call, &cancel).await },
        ));
    }
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(e) => {
                first_err =
                    first_err.or_else(|| Some(StoreError::Write(format!("agent tool task: {e}"))))
            }
            Ok(Ok(())) => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A call that cannot be delivered: its result says why (the turn goes on).
struct Refused(String);

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused(format!("the message could not be recorded: {e}"))
    }
}

impl From<ErrorBody> for Refused {
    fn from(e: ErrorBody) -> Self {
        Refused(e.message)
    }
}

/// Steps (a) and (b) of a send: the thread (found or created) with the message delivered,
/// once per call.
async fn deliver(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    call: &PendingTool,
) -> Result<Arc<Session>, Refused> {
    // Delivered before a restart: only the reply is left to await.
    let sent_to = s.state().threads.sent.get(&call.tool_use_id).cloned();
    if let Some(thread) = sent_to {
        return Ok(rt.load(&thread).await?);
    }
    let message = string_field(&call.input, "message").ok_or_else(|| {
        Refused(format!(
            "`{}` needs a non-empty `message`: what the agent should do",
            call.name
        ))
    })?;
    let thread = if call.name == ma::TOOL_SPAWN_AGENT {
        spawn_inline(rt, s, &call.input).await?
    } else {
        let name = string_field(&call.input, "agent").ok_or_else(|| {
            Refused("`send_to_agent` needs `agent`: the name of a roster agent or thread (list_agents lists them)".into())
        })?;
        thread_for(rt, s, name).await?
    };
    let link = thread
        .thread
        .as_ref()
        .ok_or_else(|| Refused("internal: the thread has no link to its session".into()))?;
    let content = vec![ContentBlock::text(message)];
    let received = EventBody::AgentThreadMessageReceived {
        from_session_thread_id: primary_thread_id(&s.id),
        from_agent_name: None,
        content: content.clone(),
        tool_use_id: Some(call.tool_use_id.clone()),
    };
    {
        let _child = thread.lock_appends().await;
        let mut bodies = vec![received];
        if thread.state().status() != SessionStatus::Running {
            bodies.push(EventBody::SessionStatusRunning {});
        }
        let (child_drafts, crossed) =
            crate::session::crosspost::drafts(&thread.id, link.agent_name(), bodies);
        let mut own = vec![Draft::new(EventBody::AgentThreadMessageSent {
            to_session_thread_id: thread.id.clone(),
            to_agent_name: Some(link.agent_name().to_string()),
            content,
            tool_use_id: Some(call.tool_use_id.clone()),
        })];
        own.extend(crossed);
        s.append_pair(&thread, own, child_drafts).await?;
    }
    crate::crash::point("after_thread_message_sent");
    crate::session::turn::ensure(&thread);
    Ok(thread)
}

/// Step (c): the thread's reply to the call's message, once the thread is idle after it:
/// `(text, is_error)`; None when `cancel` fired first.
async fn await_reply(
    thread: &Arc<Session>,
    call: &PendingTool,
    cancel: &CancellationToken,
) -> Option<(String, bool)> {
    let mut appended = thread.watch_appends();
    let name = thread
        .thread
        .as_ref()
        .map(|l| l.agent_name().to_string())
        .unwrap_or_default();
    loop {
        {
            let st = thread.state();
            if let Some(&seq) = st.threads.received.get(&call.tool_use_id)
                && st.status() == SessionStatus::Idle
                && st.idle_seq > seq
            {
                match &st.stop_reason {
                    Some(StopReason::RequiresAction { .. }) => {}
                    Some(StopReason::EndTurn) | None => {
                        return Some((st.last_agent_text.clone().unwrap_or_default(), false));
                    }
                    Some(StopReason::Interrupted) => {
                        return Some((
                            format!(
                                "agent `{name}` was interrupted before it replied ({}); send it another message to continue",
                                thread.id
                            ),
                            true,
                        ));
                    }
                    Some(StopReason::BudgetReached) => {
                        return Some((
                            format!(
                                "agent `{name}` stopped: the session's spending limit (max_cost_usd) is reached"
                            ),
                            true,
                        ));
                    }
                    Some(other) => {
                        return Some((
                            format!(
                                "agent `{name}` stopped without a reply ({}); its thread {} has the details",
                                serde_json::to_string(other).unwrap_or_default(),
                                thread.id
                            ),
                            true,
                        ));
                    }
                }
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return None,
            changed = appended.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
        }
    }
}

/// The primary's roster: its agent's predefined agents, resolved.
async fn roster(rt: &Arc<Runtime>, s: &Arc<Session>) -> Vec<RosterAgent> {
    let Some(sub) = s.multiagent.as_ref().and_then(|m| m.effective().subagents) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in sub.predefined {
        let (agent, version) = match entry {
            RosterEntry::Reference(r) => (r, None),
            RosterEntry::Object(RosterObject::Agent { id, version }) => (id, version),
            RosterEntry::Object(RosterObject::OwnAgent {}) => match s.row().agent {
                Some((id, v)) => (id, Some(v)),
                None => continue,
            },
            RosterEntry::Object(RosterObject::Advisor { .. }) => continue,
        };
        let p = tether_proto::method::AgentParams { agent, version };
        match crate::resources::agents::get(&rt.store, &p).await {
            Ok(agent) => out.push(RosterAgent { agent }),
            Err(e) => {
                tracing::warn!(session = %s.id, error = %e.message, "a roster agent can't be read; left out")
            }
        }
    }
    out
}

/// The thread `name` names: an existing child thread by agent name, else a new one for the
/// roster agent of that name.
async fn thread_for(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    name: &str,
) -> Result<Arc<Session>, Refused> {
    if let Some(t) = existing_thread(rt, s, name).await? {
        return Ok(t);
    }
    let roster = roster(rt, s).await;
    let Some(agent) = roster
        .iter()
        .find(|a| a.name() == name || a.agent.id == name)
    else {
        let names: Vec<&str> = roster.iter().map(RosterAgent::name).collect();
        return Err(Refused(format!(
            "no agent named `{name}` in this session's roster ({}); call list_agents to see who you can message{}",
            if names.is_empty() {
                "it is empty".to_string()
            } else {
                names.join(", ")
            },
            if s.agent_tool_names().contains(&ma::TOOL_SPAWN_AGENT) {
                ", or define one with spawn_agent"
            } else {
                ""
            }
        )));
    };
    let model = crate::session::model::current_model(s);
    let thread_agent = agent.thread_agent(&model);
    let model = crate::config::canonical_model(thread_agent.model_id());
    let row = child_row(s, &thread_agent, model, agent.agent.spec.system.clone());
    let row = SessionRow {
        tools: Some(crate::resources::agents::offered_tools(&agent.agent)),
        agent: Some((agent.agent.id.clone(), agent.agent.version)),
        ..row
    };
    create_thread(rt, s, row, thread_agent).await
}

/// A non-archived child thread whose agent is called `name`.
async fn existing_thread(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    name: &str,
) -> Result<Option<Arc<Session>>, Refused> {
    // The fold knows every child by name: most spawns skip the store.
    if !s
        .state()
        .threads
        .children
        .iter()
        .any(|c| c.agent_name == name)
    {
        return Ok(None);
    }
    match rt.store.live_thread_named(&s.id, name).await? {
        Some(id) => Ok(Some(rt.load(&id).await?)),
        None => Ok(None),
    }
}

/// `spawn_agent`: an inline agent with the session agent's tools and policy, the given
/// prompt and model (default: the session's).
async fn spawn_inline(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    input: &Value,
) -> Result<Arc<Session>, Refused> {
    let name = string_field(input, "name").ok_or_else(|| {
        Refused("`spawn_agent` needs `name`: a short unique name for the agent".into())
    })?;
    if name == ma::ADVISOR_NAME || name.starts_with("sthr_") || name.len() > 64 {
        return Err(Refused(format!(
            "`{name}` can't name an agent: use up to 64 characters, not `{}` nor an `sthr_` id",
            ma::ADVISOR_NAME
        )));
    }
    let system = string_field(input, "system").ok_or_else(|| {
        Refused("`spawn_agent` needs `system`: the new agent's system prompt".into())
    })?;
    if let Some(t) = existing_thread(rt, s, name).await? {
        // A thread this call made before a restart, before its message went out.
        if t.state().last_seq == 0 {
            return Ok(t);
        }
        return Err(Refused(format!(
            "a thread for agent `{name}` already exists ({}); message it with send_to_agent, or spawn under another name",
            t.id
        )));
    }
    let model = match string_field(input, "model") {
        Some(m) => {
            let m = crate::config::canonical_model(m);
            rt.providers
                .get(crate::config::split_model(&m).0)
                .map_err(|e| Refused(format!("model `{m}` can't be used: {e}")))?;
            m
        }
        None => crate::session::model::current_model(s),
    };
    let thread_agent = ThreadAgent::Inline {
        name: name.to_string(),
        description: None,
        system: Some(system.to_string()),
        model: tether_proto::agent::AgentModel {
            id: model.clone(),
            effort: None,
            speed: None,
        },
        tools: Vec::new(),
        mcp_servers: Vec::new(),
        skills: Vec::new(),
    };
    let row = child_row(s, &thread_agent, model, Some(system.to_string()));
    create_thread(rt, s, row, thread_agent).await
}

/// A child's row: the session's workspace, environment, layer and networking (also a
/// workflow task's thread).
pub(crate) fn child_row(
    s: &Session,
    agent: &ThreadAgent,
    model: String,
    system: Option<String>,
) -> SessionRow {
    let parent = s.row();
    SessionRow {
        system,
        workspace_owned: false,
        tools: parent.tools.clone(),
        agent: parent.agent.clone(),
        environment: parent.environment.clone(),
        env_layer: parent.env_layer.clone(),
        networking: parent.networking.clone(),
        parent_id: Some(s.id.clone()),
        thread_agent: Some(agent.clone()),
        ..SessionRow::new(
            thread_id(),
            model,
            parent.workspace.clone(),
            parent.max_turns,
        )
    }
}

/// Creates a child thread: its row and `session.thread_created` in the primary's stream in
/// one transaction, within the session's limit of child threads.
async fn create_thread(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    row: SessionRow,
    agent: ThreadAgent,
) -> Result<Arc<Session>, Refused> {
    let live = rt.store.live_child_threads(&s.id).await?;
    let limit = rt.config.max_child_threads;
    if live >= limit {
        return Err(Refused(format!(
            "this session already has {live} child threads, the most it may have ({limit}, `max_child_threads` in config.toml); archive idle ones with `tether threads {} --archive THREAD` (`thread.archive`) to make room, or message an existing one with send_to_agent",
            s.id
        )));
    }
    let id = row.id.clone();
    let created = Draft {
        id: None,
        session_thread_id: Some(id.clone()),
        body: EventBody::SessionThreadCreated {
            agent_name: agent.name().to_string(),
            workflow_run_id: None,
            model: Some(row.model.clone()),
        },
    };
    s.append_drafts(Some(row), vec![created]).await?;
    crate::crash::point("after_thread_created");
    Ok(rt.load(&id).await?)
}

async fn list_agents(rt: &Arc<Runtime>, s: &Arc<Session>) -> String {
    let model = crate::session::model::current_model(s);
    let agents: Vec<Value> = roster(rt, s)
        .await
        .iter()
        .map(|a| {
            json!({
                "name": a.name(),
                "description": a.agent.spec.description,
                "model": a.agent.spec.model.as_ref().map_or(model.as_str(), |m| m.id.as_str()),
            })
        })
        .collect();
    let threads: Vec<Value> = s
        .state()
        .threads
        .children
        .iter()
        .filter(|c| c.agent_name != ma::ADVISOR_NAME)
        .map(|c| json!({"id": c.id, "agent": c.agent_name, "status": c.status.as_str()}))
        .collect();
    json!({
        "agents": agents,
        "threads": threads,
        "inline_agents": s.agent_tool_names().contains(&ma::TOOL_SPAWN_AGENT),
    })
    .to_string()
}

/// Advisor threads still "running" in the log: a restart cut their consultation short, and
/// nobody is waiting for them any more (their call is asked again).
async fn close_stale_advisors(s: &Arc<Session>) -> Result<(), StoreError> {
    let stale: Vec<String> = s
        .state()
        .threads
        .children
        .iter()
        .filter(|c| c.agent_name == ma::ADVISOR_NAME && c.status == SessionStatus::Running)
        .map(|c| c.id.clone())
        .collect();
    for id in stale {
        let tagged = |body| Draft {
            id: None,
            session_thread_id: Some(id.clone()),
            body,
        };
        s.append_drafts(
            None,
            vec![
                tagged(EventBody::SessionThreadStatusIdle {
                    agent_name: ma::ADVISOR_NAME.into(),
                    stop_reason: StopReason::Error,
                    stop_details: None,
                }),
                tagged(EventBody::SessionThreadStatusTerminated {
                    agent_name: ma::ADVISOR_NAME.into(),
                }),
            ],
        )
        .await?;
    }
    Ok(())
}

/// `consult_advisor`: the advisor's thread in the primary's stream (created, running, the
/// advice received, idle, terminated) with the call's result in the same commit as the end.
async fn consult(
    s: &Arc<Session>,
    call: &PendingTool,
    cancel: &CancellationToken,
) -> Result<(), StoreError> {
    let Some(model) = s.multiagent.as_ref().and_then(|m| m.effective().advisor) else {
        s.append_one_retrying(text_result(
            call,
            "this session's agent has no advisor".into(),
            true,
        ))
        .await?;
        return Ok(());
    };
    let model = crate::config::canonical_model(&model);
    let Some(question) = string_field(&call.input, "question").map(str::to_string) else {
        s.append_one_retrying(text_result(
            call,
            "`consult_advisor` needs a non-empty `question`".into(),
            true,
        ))
        .await?;
        return Ok(());
    };
    let id = thread_id();
    let agent = ThreadAgent::Advisor {
        model: model.clone(),
    };
    let parent = s.row();
    let row = SessionRow {
        workspace_owned: false,
        parent_id: Some(s.id.clone()),
        thread_agent: Some(agent.clone()),
        environment: parent.environment.clone(),
        status: SessionStatus::Terminated,
        ..SessionRow::new(id.clone(), model.clone(), parent.workspace.clone(), 1)
    };
    let tagged = |body| Draft {
        id: None,
        session_thread_id: Some(id.clone()),
        body,
    };
    let name = ma::ADVISOR_NAME.to_string();
    s.append_drafts(
        Some(row),
        vec![
            tagged(EventBody::SessionThreadCreated {
                agent_name: name.clone(),
                workflow_run_id: None,
                model: Some(model.clone()),
            }),
            tagged(EventBody::SessionThreadStatusRunning {
                agent_name: name.clone(),
            }),
        ],
    )
    .await?;
    let started = std::time::Instant::now();
    let advice = ask_advisor(s, &model, &question, cancel).await;
    let mut drafts = Vec::new();
    // What the consultation cost, in the primary's stream under the advisor's thread: the
    // session's usage and budget count it, and so does the advisor thread's.
    if let Ok((_, usage)) = &advice {
        let start_id = crate::ids::event_id();
        drafts.push(Draft {
            id: Some(start_id.clone()),
            ..tagged(EventBody::SpanModelRequestStart {
                model: Some(model.clone()),
            })
        });
        drafts.push(tagged(EventBody::SpanModelRequestEnd {
            model_request_start_id: start_id,
            is_error: false,
            model_usage: crate::provider::pricing::priced(
                &s.services.config.models,
                &model,
                *usage,
            ),
            latency_ms: Some(started.elapsed().as_millis() as u64),
        }));
    }
    let (result, is_error, stop) = match advice.map(|(text, _)| text) {
        Ok(text) => {
            drafts.push(tagged(EventBody::AgentThreadMessageReceived {
                from_session_thread_id: id.clone(),
                from_agent_name: Some(name.clone()),
                content: vec![ContentBlock::text(text.clone())],
                tool_use_id: Some(call.tool_use_id.clone()),
            }));
            (text, false, StopReason::EndTurn)
        }
        Err(why) => (
            format!(
                "the advisor ({model}) could not be consulted: {why}. Go on without its advice."
            ),
            true,
            StopReason::Error,
        ),
    };
    drafts.push(tagged(EventBody::SessionThreadStatusIdle {
        agent_name: name.clone(),
        stop_reason: stop,
        stop_details: None,
    }));
    drafts.push(tagged(EventBody::SessionThreadStatusTerminated {
        agent_name: name,
    }));
    if !cancel.is_cancelled() {
        drafts.push(Draft::new(text_result(call, result, is_error)));
    }
    s.append_drafts(None, drafts).await?;
    Ok(())
}

/// One request to the advisor model: the primary's conversation so far, as text, and the
/// question.
async fn ask_advisor(
    s: &Arc<Session>,
    model: &str,
    question: &str,
    cancel: &CancellationToken,
) -> Result<(String, tether_proto::ModelUsage), String> {
    let provider = s
        .services
        .providers
        .get(crate::config::split_model(model).0)
        .map_err(|e| e.to_string())?;
    let transcript = transcript(&s.state().request_messages());
    let request = ModelRequest {
        model: crate::config::split_model(model).1.to_string(),
        system: Some(format!(
            "You are {}, an advisor to another AI agent. You see its conversation so far and answer its question with concise, concrete advice. You cannot act or call tools.",
            ma::ADVISOR_NAME
        )),
        messages: vec![Message::user_text(format!(
            "The agent's conversation so far:\n\n{transcript}\n\nThe agent asks you:\n\n{question}"
        ))],
        tools: Vec::new(),
        max_tokens: s.services.config.max_tokens,
        thinking_budget: None,
    };
    let resp = provider
        .stream(&request, cancel, &mut |_| {})
        .await
        .map_err(|e| e.describe(provider.who()))?;
    let text: String = resp
        .content
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    if text.trim().is_empty() {
        return Err("the advisor answered with no text".into());
    }
    Ok((text, resp.usage))
}

fn transcript(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        for p in &m.content {
            let line = match p {
                Part::Text(t) => format!("[{:?}] {t}", m.role),
                Part::ToolUse { name, input, .. } => format!("[tool call] {name} {input}"),
                Part::ToolResult { content, .. } => format!("[tool result] {content}"),
                _ => continue,
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

// ---- the doors: threads of a session, by id or agent name ----

/// The thread `reference` names in session `s`: the primary's id (the session itself), a
/// child's `sthr_` id, or an agent name (the newest non-archived thread of that agent).
pub async fn find(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    reference: &str,
) -> Result<Arc<Session>, ErrorBody> {
    let reference = reference.trim();
    if reference == primary_thread_id(&s.id) || reference == s.id {
        return Ok(s.clone());
    }
    let rows = rt.store.list_threads(&s.id).await?;
    let by_id = rows.iter().find(|r| r.id == reference);
    let by_name = || {
        rows.iter().rev().find(|r| {
            r.archived_at.is_none()
                && r.thread_agent
                    .as_ref()
                    .is_some_and(|a| a.name() == reference)
        })
    };
    match by_id.or_else(by_name) {
        Some(r) => rt.load(&r.id).await,
        None => Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!(
                "session {} has no thread `{reference}`; `tether threads {}` lists them (a thread is named by its sthr_ id or its agent's name)",
                s.id, s.id
            ),
        )),
    }
}

/// The session's threads as the thread endpoints return them: the primary first, then the
/// children in creation order.
pub async fn list(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    all: bool,
) -> Result<Vec<SessionThread>, ErrorBody> {
    let mut out = vec![primary_object(s)];
    for row in rt.store.list_threads(&s.id).await? {
        if row.archived_at.is_some() && !all {
            continue;
        }
        out.push(child_object(rt, s, &row));
    }
    Ok(out)
}

pub async fn get(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    reference: &str,
) -> Result<SessionThread, ErrorBody> {
    let t = find(rt, s, reference).await?;
    if Arc::ptr_eq(&t, s) {
        return Ok(primary_object(s));
    }
    Ok(child_object(rt, s, &t.row()))
}

/// Archives an idle child thread (`requires_action` counts as idle).
pub async fn archive(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    reference: &str,
) -> Result<SessionThread, ErrorBody> {
    let t = find(rt, s, reference).await?;
    // 409: a thread that exists, whose role (the session's own) refuses it.
    if Arc::ptr_eq(&t, s) {
        return Err(ErrorBody::new(
            ErrorCode::Conflict,
            format!(
                "the primary thread is the session itself; archive the session instead (`tether archive {}`)",
                s.id
            ),
        ));
    }
    if t.row().archived_at.is_none() {
        // The primary's call waiting for this thread's reply would wait forever.
        let awaited = {
            let st = s.state();
            st.pending_tools
                .iter()
                .find(|p| st.threads.sent.get(&p.tool_use_id) == Some(&t.id))
                .map(|p| p.tool_use_id.clone())
        };
        if let Some(call) = awaited {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!(
                    "thread {} owes the primary a reply (call {call}); answer what the thread waits for, or interrupt the session (`tether interrupt {}`), then archive it",
                    t.id, s.id
                ),
            ));
        }
        if t.state().status() == SessionStatus::Running || t.is_turn_running() {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!(
                    "thread {} is running; interrupt it first (`session.interrupt` with thread {})",
                    t.id, t.id
                ),
            ));
        }
        rt.archive(&t).await?;
    }
    Ok(child_object(rt, s, &t.row()))
}

/// Interrupts every non-archived thread of the session (`thread` None), or one thread.
pub async fn interrupt(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    thread: Option<&str>,
) -> Result<(tether_proto::Event, bool), ErrorBody> {
    if let Some(reference) = thread {
        let t = find(rt, s, reference).await?;
        return crate::session::ops::interrupt(&t).await;
    }
    // The primary first: its turn stops waiting before its threads' replies turn into
    // results.
    let (event, primary_running) = crate::session::ops::interrupt(s).await?;
    let mut running = false;
    for row in rt.store.list_threads(&s.id).await? {
        if row.archived_at.is_some()
            || matches!(row.thread_agent, Some(ThreadAgent::Advisor { .. }))
        {
            continue;
        }
        let t = rt.load(&row.id).await?;
        if t.state().status() == SessionStatus::Idle
            && t.state().awaiting_ids().is_empty()
            && !t.is_turn_running()
        {
            continue;
        }
        running |= crate::session::ops::interrupt(&t).await?.1;
    }
    Ok((event, running || primary_running))
}

/// The thread of session `s` holding the call `tool_use_id` that waits for an answer: the
/// session itself when it does (or no thread does: its error then says so).
pub async fn holder_of(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    tool_use_id: &str,
) -> Result<Arc<Session>, ErrorBody> {
    if s.state()
        .pending_tools
        .iter()
        .any(|p| p.tool_use_id == tool_use_id)
    {
        return Ok(s.clone());
    }
    if s.state().threads.children.is_empty() {
        return Ok(s.clone());
    }
    for row in rt.store.list_threads(&s.id).await? {
        if matches!(row.thread_agent, Some(ThreadAgent::Advisor { .. })) {
            continue;
        }
        let t = rt.load(&row.id).await?;
        if t.state()
            .pending_tools
            .iter()
            .any(|p| p.tool_use_id == tool_use_id)
        {
            return Ok(t);
        }
    }
    Ok(s.clone())
}

/// The thread of session `s` whose MCP server asked elicitation `id`: a child when the
/// session's fold has it cross-posted from one, else the session itself (whose answer then
/// says whether it knows the id).
pub async fn elicitation_holder(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    id: &str,
) -> Result<Arc<Session>, ErrorBody> {
    let thread = s
        .state()
        .threads
        .elicitations
        .iter()
        .find(|e| e.id == id)
        .and_then(|e| e.session_thread_id.clone());
    match thread {
        Some(t) => rt.load(&t).await,
        None => Ok(s.clone()),
    }
}

/// An answer committed in thread `t` as clients of session `s` see it: its cross-posted copy
/// in the primary's stream (same id, `session_thread_id` set). The event itself when `t` is
/// the session.
pub async fn as_seen_by_primary(
    rt: &Runtime,
    s: &Session,
    t: &Session,
    event: tether_proto::Event,
) -> tether_proto::Event {
    if s.id == t.id {
        return event;
    }
    let from = s.state().last_seq.saturating_sub(64);
    match rt.store.read_events(&s.id, from, None, 1000, false).await {
        Ok(evs) => evs
            .into_iter()
            .rev()
            .find(|e| e.id == event.id)
            .unwrap_or(event),
        Err(_) => event,
    }
}

fn primary_object(s: &Session) -> SessionThread {
    let row = s.row();
    let st = s.state();
    SessionThread {
        id: primary_thread_id(&s.id),
        object_type: "session_thread".into(),
        session_id: s.id.clone(),
        parent_thread_id: None,
        agent: ThreadAgent::Agent {
            id: row.agent.as_ref().map(|a| a.0.clone()).unwrap_or_default(),
            version: row.agent.as_ref().map_or(0, |a| a.1),
            name: "primary".into(),
            description: None,
            system: row.system.clone(),
            model: tether_proto::agent::AgentModel {
                id: st.model.clone().unwrap_or(row.model.clone()),
                effort: None,
                speed: None,
            },
            tools: Vec::new(),
            mcp_servers: Vec::new(),
            skills: Vec::new(),
        },
        status: st.status(),
        stats: stats(&st.active, &row.created_at),
        usage: Some(st.usage),
        workflow_run_id: None,
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        archived_at: row.archived_at.clone(),
        stop_reason: (st.status() == SessionStatus::Idle)
            .then(|| st.stop_reason.clone())
            .flatten(),
        last_seq: st.last_seq,
    }
}

/// A thread's `stats`: null until its first transition (hosted).
fn stats(active: &crate::session::state::ActiveTime, created_at: &str) -> Option<ThreadStats> {
    let first = active.first_run_ms?;
    let now = chrono::Utc::now().timestamp_millis();
    let created = chrono::DateTime::parse_from_rfc3339(created_at)
        .ok()
        .map(|t| t.timestamp_millis());
    Some(ThreadStats {
        active_seconds: Some(active.seconds(now)),
        duration_seconds: created.map(|c| (now - c).max(0) as f64 / 1000.0),
        startup_seconds: created.map(|c| (first - c).max(0) as f64 / 1000.0),
    })
}

fn child_object(rt: &Runtime, s: &Session, row: &SessionRow) -> SessionThread {
    let (status, stop_reason, usage, last_seq) = match rt.loaded(&row.id) {
        Some(t) => {
            let st = t.state();
            (st.status(), st.stop_reason.clone(), st.usage, st.last_seq)
        }
        None => {
            // Not loaded (the advisor's, or idle since the start): the primary's fold knows.
            let entry = s
                .state()
                .threads
                .children
                .iter()
                .find(|c| c.id == row.id)
                .map(|c| (c.status, c.stop_reason.clone()));
            let (status, stop) = entry.unwrap_or((row.status, row.stop_reason.clone()));
            // The advisor's requests are recorded in the primary's stream.
            let folded = s
                .state()
                .threads
                .children
                .iter()
                .find(|c| c.id == row.id)
                .map(|c| c.usage)
                .filter(|u| u.model_requests > 0);
            (status, stop, folded.unwrap_or(row.usage), row.last_seq)
        }
    };
    SessionThread {
        id: row.id.clone(),
        object_type: "session_thread".into(),
        session_id: s.id.clone(),
        parent_thread_id: Some(primary_thread_id(&s.id)),
        agent: row.thread_agent.clone().unwrap_or(ThreadAgent::Advisor {
            model: row.model.clone(),
        }),
        status,
        stats: s
            .state()
            .threads
            .children
            .iter()
            .find(|c| c.id == row.id)
            .and_then(|c| stats(&c.active, &row.created_at)),
        usage: Some(usage),
        workflow_run_id: None,
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        archived_at: row.archived_at.clone(),
        stop_reason: (status == SessionStatus::Idle)
            .then_some(stop_reason)
            .flatten(),
        last_seq,
    }
}
