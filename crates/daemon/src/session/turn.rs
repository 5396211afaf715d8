//! The agent loop of one turn: ask the model, run the tools it calls, repeat until it answers
//! without tools. Commit order (DESIGN.md): the model's message and its tool calls are
//! committed together once the response is complete; each tool call is committed before the
//! tool runs; each result is committed before the next model request. Deltas are only fanned
//! out, never stored. Where the agent would go idle with `end_turn`, an active outcome runs
//! its evaluation cycle instead (`session::outcome`).

use std::sync::Arc;
use std::time::Instant;

use tether_proto::{
    ContentBlock, DeltaKind, Event, EventBody, Permission, RetryStatusKind, StopReason, ToolStatus,
};
use tokio_util::sync::CancellationToken;

use crate::provider::{ModelResponse, Part, ProviderError, Who, pricing};
use crate::session::events;
use crate::session::live::Session;
use crate::session::model;
use crate::session::outcome;
use crate::session::state::{Gate, PendingTool, TurnEnd};
use crate::store::error::StoreError;
use crate::tools;
use crate::tools::replay::Settle;
use crate::{crash, spool};

/// Starts a turn unless one is running (the running one will pick new input up).
pub fn ensure(s: &Arc<Session>) {
    s.start_turn(|cancel| tokio::spawn(run(s.clone(), cancel)));
}

/// Commits a `user.message` and starts the turn that answers it.
pub async fn user_message(
    s: &Arc<Session>,
    content: Vec<ContentBlock>,
) -> Result<Event, StoreError> {
    let ev = s.commit_user_message(content).await?;
    crash::point("after_user_message");
    ensure(s);
    Ok(ev)
}

/// Runs turns until nothing is left to answer. Spawned by [`ensure`].
async fn run(session: Arc<Session>, cancel: CancellationToken) {
    loop {
        if let Err(e) = turn(&session, &cancel).await {
            // The log could not be written: stop here. The log still says `running`, so the
            // next daemon start resumes from the last committed event.
            tracing::error!(session = %session.id, error = %e, "turn stopped: the event log could not be written");
            session.clear_live_message();
            session.take_turn();
            return;
        }
        if session.finish_turn(&cancel) {
            return;
        }
    }
}

enum Next {
    Continue,
    Stop,
}

async fn turn(s: &Arc<Session>, cancel: &CancellationToken) -> Result<(), StoreError> {
    if s.state().status() != tether_proto::SessionStatus::Running {
        s.append_one_retrying(EventBody::SessionStatusRunning {})
            .await?;
    }
    s.mcp.new_turn();
    loop {
        if cancel.is_cancelled() {
            return finish_interrupted(s).await;
        }
        let pending = s.state().pending_tools.clone();
        if !pending.is_empty() {
            if let Tools::Blocked = run_tools(s, pending, cancel).await? {
                // Decided under the append lock: an answer that arrived meanwhile means
                // there is no waiting to do after all.
                let idle = s
                    .append_checked(|st| {
                        let event_ids = st.awaiting_ids();
                        Ok::<_, StoreError>(if event_ids.is_empty() {
                            Vec::new()
                        } else {
                            vec![EventBody::SessionStatusIdle {
                                stop_reason: StopReason::RequiresAction { event_ids },
                            }]
                        })
                    })
                    .await?;
                if !idle.is_empty() {
                    crash::point("after_requires_action");
                    return Ok(());
                }
            }
            continue;
        }
        if !s.state().needs_model_call() {
            // An outcome may evaluate (or send its follow-up) instead of going idle.
            let decision = s.state().turn_end();
            if decision != TurnEnd::Idle {
                match outcome::step(s, decision, cancel).await? {
                    outcome::Step::Continue => continue,
                    outcome::Step::Interrupted => return finish_interrupted(s).await,
                }
            }
            capture_outputs(s).await;
            crash::point("before_idle");
            s.append_one_retrying(EventBody::SessionStatusIdle {
                stop_reason: StopReason::EndTurn,
            })
            .await?;
            return Ok(());
        }
        if crate::session::compaction::over_budget(s) {
            s.append_retrying(vec![EventBody::SessionStatusIdle {
                stop_reason: StopReason::BudgetReached,
            }])
            .await?;
            return Ok(());
        }
        let max_turns = s.row().max_turns;
        if s.state().model_calls_this_turn >= max_turns {
            s.append_retrying(vec![
                events::session_error(
                    "max_turns_reached",
                    format!(
                        "the turn made {max_turns} model requests without finishing and was stopped (max_turns); send another message to continue"
                    ),
                    RetryStatusKind::Terminal,
                ),
                EventBody::SessionStatusIdle {
                    stop_reason: StopReason::MaxTurnsReached,
                },
            ])
            .await?;
            return Ok(());
        }
        match model_step(s, cancel).await? {
            Next::Continue => {}
            Next::Stop => return Ok(()),
        }
    }
}

/// Before a session says its turn is over, what its agent left in /mnt/session/outputs
/// becomes files scoped to it, so a client that lists them on idle finds them. A thread's
/// outputs are its session's, captured when the session's own turn ends.
async fn capture_outputs(s: &Arc<Session>) {
    if s.thread.is_some() {
        return;
    }
    let services = &s.services;
    let max = services.config.files.max_bytes;
    if let Err(e) =
        crate::resources::outputs::capture(&services.store, &services.paths, &s.id, max).await
    {
        tracing::warn!(session = %s.id, error = %e, "the session's outputs were not captured; the next turn's end tries again");
    }
}

/// One model request (with retries) and the commit of its response.
async fn model_step(s: &Arc<Session>, cancel: &CancellationToken) -> Result<Next, StoreError> {
    let model = model::current_model(s);
    let provider = model::provider_for(s, &model);
    if let Ok(p) = &provider {
        crate::session::compaction::maybe_compact(s, p, &model, cancel).await?;
    }
    // MCP servers are connected before the request that offers their tools; one that fails
    // is reported and left out.
    let mcp_errors = s.mcp.connect_missing(&s.toolbox).await;
    if !mcp_errors.is_empty() {
        s.append_retrying(mcp_errors).await?;
    }
    let start = s
        .append_one(EventBody::SpanModelRequestStart {
            model: Some(model.clone()),
        })
        .await?;
    let started = Instant::now();
    // The ids of the events that will conclude this response's previews, chosen now so the
    // previews can carry them (hosted: `event_start.event.id` is the final event's id).
    let message_id = crate::ids::event_id();
    let thinking_id = crate::ids::event_id();
    let preview = DeltaKind::MessageStart {
        model_request_start_id: start.id.clone(),
        message_id: Some(message_id.clone()),
        thinking_id: Some(thinking_id.clone()),
    };
    s.emit(preview.clone());
    let (outcome, who) = match provider {
        Ok(p) => {
            let request = model::build_request(s, &model);
            let outcome = model::stream_with_retries(s, &p, &request, &preview, cancel).await?;
            (outcome, p.who().clone())
        }
        Err(e) => (Err(e), Who::anthropic()),
    };
    let latency_ms = Some(started.elapsed().as_millis() as u64);
    s.clear_live_message();
    match outcome {
        Ok(resp) => {
            let has_tools = resp
                .content
                .iter()
                .any(|p| matches!(p, Part::ToolUse { .. }));
            let mut bodies = with_preview_ids(response_events(s, &resp), message_id, thinking_id);
            bodies.push(crate::store::Draft::new(EventBody::SpanModelRequestEnd {
                model_request_start_id: start.id,
                is_error: false,
                model_usage: pricing::priced(&s.services.config.models, &model, resp.usage),
                latency_ms,
            }));
            // Idle in the same commit, unless an outcome has more to do (the loop asks it).
            if !has_tools && !s.state().has_queued_user() && s.state().turn_end() == TurnEnd::Idle {
                capture_outputs(s).await;
                crash::point("before_idle");
                bodies.push(crate::store::Draft::new(EventBody::SessionStatusIdle {
                    stop_reason: StopReason::EndTurn,
                }));
                s.append_retrying_with_ids(bodies).await?;
                return Ok(Next::Stop);
            }
            s.append_retrying_with_ids(bodies).await?;
            crash::point("after_agent_message");
            Ok(Next::Continue)
        }
        Err(ProviderError::Cancelled) => {
            s.append_one_retrying(events::span_error_end(&start.id, latency_ms))
                .await?;
            finish_interrupted(s).await?;
            Ok(Next::Stop)
        }
        Err(e) => {
            let exhausted = e.is_retryable();
            let (retry, stop) = if exhausted {
                (RetryStatusKind::Exhausted, StopReason::RetriesExhausted)
            } else {
                (RetryStatusKind::Terminal, StopReason::Error)
            };
            s.append_retrying(vec![
                events::span_error_end(&start.id, latency_ms),
                events::session_error(e.session_error_type(), e.describe(&who), retry),
                EventBody::SessionStatusIdle { stop_reason: stop },
            ])
            .await?;
            Ok(Next::Stop)
        }
    }
}

/// Drafts of a response's events, its `agent.message` and first `agent.thinking` under the
/// ids their previews were announced with.
fn with_preview_ids(
    bodies: Vec<EventBody>,
    message_id: String,
    thinking_id: String,
) -> Vec<crate::store::Draft> {
    let mut message_id = Some(message_id);
    let mut thinking_id = Some(thinking_id);
    bodies
        .into_iter()
        .map(|body| {
            let id = match &body {
                EventBody::AgentMessage { .. } => message_id.take(),
                EventBody::AgentThinking { .. } => thinking_id.take(),
                _ => None,
            };
            crate::store::Draft {
                id,
                ..crate::store::Draft::new(body)
            }
        })
        .collect()
}

/// The events a complete model response becomes, in the model's block order. Each tool call
/// carries its evaluated permission; a call to a custom tool is an `agent.custom_tool_use`.
fn response_events(s: &Session, resp: &ModelResponse) -> Vec<EventBody> {
    let offered = s.row().tools;
    let agent_tools = s.agent_tool_names();
    let mut bodies = Vec::new();
    let mut text = String::new();
    for part in &resp.content {
        match part {
            Part::Thinking {
                thinking,
                signature,
            } => bodies.push(EventBody::AgentThinking {
                thinking: thinking.clone(),
                signature: signature.clone(),
            }),
            Part::Text(t) => text.push_str(t),
            _ => {}
        }
    }
    let tool_calls: Vec<EventBody> = resp
        .content
        .iter()
        .filter_map(|p| match p {
            Part::ToolUse { name, input, .. } if s.policy().is_custom(name) => {
                Some(EventBody::AgentCustomToolUse {
                    name: name.clone(),
                    input: input.clone(),
                })
            }
            Part::ToolUse { name, input, .. } if let Some(t) = s.mcp.lookup(name) => {
                Some(EventBody::AgentMcpToolUse {
                    mcp_server_name: t.server,
                    name: t.tool,
                    input: input.clone(),
                    evaluated_permission: Some(t.permission),
                })
            }
            Part::ToolUse { name, input, .. } => Some(EventBody::AgentToolUse {
                name: name.clone(),
                input: input.clone(),
                // A tool the agent did not enable is refused whatever its policy says.
                evaluated_permission: Some(match &offered {
                    _ if agent_tools.contains(&name.as_str()) => Permission::Allow,
                    Some(o) if !o.contains(name) => Permission::Deny,
                    _ => s.policy().permission(name),
                }),
            }),
            _ => None,
        })
        .collect();
    // Always one agent.message when there are no tool calls, so the model's turn is recorded
    // even if it said nothing.
    if !text.is_empty() || tool_calls.is_empty() {
        bodies.push(EventBody::AgentMessage {
            content: vec![ContentBlock::text(text)],
        });
    }
    bodies.extend(tool_calls);
    bodies
}

enum Tools {
    /// Every call has its result.
    Done,
    /// A call waits for a client's answer (`always_ask`, or a custom tool) or a worker's
    /// result (self-hosted); the calls after it wait too, so they still run in the order the
    /// model made them.
    Blocked,
}

async fn run_tools(
    s: &Arc<Session>,
    mut pending: Vec<PendingTool>,
    cancel: &CancellationToken,
) -> Result<Tools, StoreError> {
    // Multi-agent calls run together (threads work in parallel) and first; they are never
    // "interrupted" by a restart: a message is delivered once, then its reply awaited again.
    let names = s.agent_tool_names();
    if !names.is_empty()
        && let Some(agent_tools) = s.services.agent_tools.get()
    {
        let (agent_calls, rest): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|c| c.mcp.is_none() && names.contains(&c.name.as_str()));
        pending = rest;
        if !agent_calls.is_empty() {
            agent_tools.run(s, agent_calls, cancel).await?;
            if cancel.is_cancelled() {
                return Ok(Tools::Done);
            }
        }
    }
    for call in pending {
        if cancel.is_cancelled() {
            return Ok(Tools::Done);
        }
        if call.mcp.is_some() {
            if let Tools::Blocked = run_mcp(s, &call, cancel).await? {
                return Ok(Tools::Blocked);
            }
            continue;
        }
        // A tool the pinned agent disabled was never offered; refuse it without running it.
        if let Some(offered) = s.row().tools
            && !offered.contains(&call.name)
            && !s.policy().is_custom(&call.name)
        {
            let msg = if offered.is_empty() {
                format!(
                    "the tool `{}` is not enabled for this session's agent, which has no tools enabled; answer without tools",
                    call.name
                )
            } else {
                format!(
                    "the tool `{}` is not enabled for this session's agent; use one of: {}",
                    call.name,
                    offered.join(", ")
                )
            };
            s.append_one_retrying(events::denied_result(call.tool_use_id, msg))
                .await?;
            continue;
        }
        match &call.gate {
            Gate::Ask => return Ok(Tools::Blocked),
            // A self-hosted session's worker runs custom tools too (the SDK's worker is given
            // them): its work item must be on the queue even when a custom call comes first.
            Gate::Custom => {
                offer_work(s).await?;
                return Ok(Tools::Blocked);
            }
            Gate::Denied { message } => {
                let text = match message.as_deref().map(str::trim) {
                    Some(m) if !m.is_empty() => {
                        format!("The user denied this `{}` call: {m}", call.name)
                    }
                    _ => format!("The user denied this `{}` call.", call.name),
                };
                s.append_one_retrying(events::denied_result(call.tool_use_id, text))
                    .await?;
                continue;
            }
            Gate::Allowed | Gate::Confirmed => {}
        }
        // Self-hosted: a worker runs it. The session's work item is recorded before the
        // session says it waits, so a worker can always find the call.
        let on_worker = s.state().waits_on(&call);
        if on_worker {
            offer_work(s).await?;
            return Ok(Tools::Blocked);
        }
        let spool_path = spool::path(&s.services.paths.data_dir, &s.id, &call.tool_use_id);
        match &call.started {
            // An earlier daemon started this call and stopped before its result was committed.
            Some(recorded) => {
                let tail = spool::tail(&spool_path);
                if let Settle::Done(outcome) = s
                    .toolbox
                    .settle_restarted(&call.name, &call.input, recorded, &tail)
                    .await
                {
                    s.append_one_retrying(events::tool_result(call.tool_use_id, outcome, 0))
                        .await?;
                    spool::remove(&spool_path);
                    continue;
                }
            }
            // Commit the intent before the tool starts: if this fails, nothing runs.
            None => {
                let intent = s.toolbox.intent(&call.name, &call.input).await;
                s.append_one_retrying(EventBody::SpanToolCallStart {
                    tool_use_id: call.tool_use_id.clone(),
                    process: intent.process,
                    pre_sha256: intent.pre_sha256,
                    post_sha256: intent.post_sha256,
                })
                .await?;
                crash::point("after_tool_intent");
            }
        }
        s.set_live_tool(Some(call.tool_use_id.clone()));
        let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let forward = {
            let s = s.clone();
            let id = call.tool_use_id.clone();
            let mut spool = spool::Spool::new(spool_path.clone());
            tokio::spawn(async move {
                while let Some(text) = out_rx.recv().await {
                    spool.write(&text);
                    crash::point("during_tool");
                    s.emit(DeltaKind::ToolOutput {
                        tool_use_id: id.clone(),
                        text,
                    });
                }
            })
        };
        let started = Instant::now();
        // Others' writes land in the memory copies before the tool sees them.
        let before = sync_memory(s).await;
        let mut outcome = s
            .toolbox
            .run(&call.name, &call.input, Some(out_tx), cancel.child_token())
            .await;
        let _ = forward.await;
        crash::point("after_tool_exit");
        // What the tool changed in them becomes memory versions; the agent hears of conflicts.
        let after = sync_memory(s).await;
        for note in [before, after].into_iter().flatten() {
            if !outcome.content.is_empty() && !outcome.content.ends_with('\n') {
                outcome.content.push('\n');
            }
            outcome.content.push_str(&note);
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        let outcome = tools::overflow::spill(s.toolbox.workspace(), &call.tool_use_id, outcome);
        s.set_live_tool(None);
        s.append_one_retrying(events::tool_result(call.tool_use_id, outcome, duration_ms))
            .await?;
        spool::remove(&spool_path);
        crash::point("after_tool_result");
    }
    Ok(Tools::Done)
}

/// Puts a self-hosted session's work item on its environment's queue (a no-op elsewhere, and
/// when the item is already there).
async fn offer_work(s: &Arc<Session>) -> Result<(), StoreError> {
    if let (Some(env), Some(queue)) = (&s.work_env, s.services.work_queue.get()) {
        queue.offer(env, &s.id).await?;
    }
    Ok(())
}

/// Syncs the session's mounted memory stores with their copies (see
/// `orchestration::memory::mount`); the note for the agent, if any.
async fn sync_memory(s: &Arc<Session>) -> Option<String> {
    let mounts = s.row().memory;
    if mounts.is_empty() {
        return None;
    }
    let sync = s.services.memory_sync.get()?.clone();
    sync.sync(&s.id, &mounts).await
}

/// One MCP call: like a built-in one it waits for approval under `always_ask`, and commits its
/// intent (`span.tool_call_start`) before it is sent, so a call a restart cut short is reported
/// `interrupted` and never sent again (the server may have acted on it).
async fn run_mcp(
    s: &Arc<Session>,
    call: &PendingTool,
    cancel: &CancellationToken,
) -> Result<Tools, StoreError> {
    let Some(mcp) = &call.mcp else {
        return Ok(Tools::Done);
    };
    let result = |text: String, is_error: bool, status: ToolStatus, ms: u64| {
        events::result_of(call, text, is_error, status, ms)
    };
    match &call.gate {
        Gate::Ask | Gate::Custom => return Ok(Tools::Blocked),
        Gate::Denied { message } => {
            let text = match message.as_deref().map(str::trim) {
                Some(m) if !m.is_empty() => format!(
                    "The user denied this call to `{}` of the MCP server `{}`: {m}",
                    mcp.tool, mcp.server
                ),
                _ => format!(
                    "The user denied this call to `{}` of the MCP server `{}`.",
                    mcp.tool, mcp.server
                ),
            };
            s.append_one_retrying(result(text, true, ToolStatus::Denied, 0))
                .await?;
            return Ok(Tools::Done);
        }
        Gate::Allowed | Gate::Confirmed => {}
    }
    if call.started.is_some() {
        let text = format!(
            "[interrupted: tetherd restarted while this call to `{}` of the MCP server `{}` was in flight. It was NOT sent again and the server may have acted on it; check before retrying.]",
            mcp.tool, mcp.server
        );
        s.append_one_retrying(result(text, true, ToolStatus::Interrupted, 0))
            .await?;
        return Ok(Tools::Done);
    }
    s.append_one_retrying(EventBody::SpanToolCallStart {
        tool_use_id: call.tool_use_id.clone(),
        process: None,
        pre_sha256: None,
        post_sha256: None,
    })
    .await?;
    crash::point("after_tool_intent");
    s.set_live_tool(Some(call.tool_use_id.clone()));
    let started = Instant::now();
    let out = s
        .mcp
        .call(&s.toolbox, &mcp.server, &mcp.tool, &call.input, cancel)
        .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    // Questions the server asked during the call and nobody answered end with it.
    crate::session::elicitation::close_for_call(
        s,
        &call.tool_use_id,
        if out.interrupted {
            "the turn was interrupted"
        } else {
            "the tool call ended before it was answered"
        },
    )
    .await;
    crash::point("after_tool_exit");
    let outcome = tools::ToolOutcome {
        is_error: out.is_error,
        status: if out.interrupted {
            tools::ToolStatus::Interrupted
        } else if out.is_error {
            tools::ToolStatus::Error
        } else {
            tools::ToolStatus::Ok
        },
        content: out.text,
        exit_code: None,
    };
    let outcome = tools::overflow::spill(s.toolbox.workspace(), &call.tool_use_id, outcome);
    s.set_live_tool(None);
    s.append_one_retrying(result(
        outcome.content,
        outcome.is_error,
        ToolStatus::Ok,
        duration_ms,
    ))
    .await?;
    crash::point("after_tool_result");
    Ok(Tools::Done)
}

/// Every unanswered tool call gets an interrupted result, then the session goes idle.
async fn finish_interrupted(s: &Arc<Session>) -> Result<(), StoreError> {
    s.clear_live_message();
    let bodies = events::interrupted_then_idle(
        &s.state(),
        "not run: the user interrupted the turn before this tool call started",
    );
    s.append_retrying(bodies).await?;
    Ok(())
}
