//! The agent loop of one turn: ask the model, run the tools it calls, repeat until it answers
//! without tools. Commit order (DESIGN.md): the model's message and its tool calls are
//! committed together once the response is complete; each tool call is committed before the
//! tool runs; each result is committed before the next model request. Deltas are only fanned
//! out, never stored.

use std::sync::Arc;
use std::time::Instant;

use tether_proto::{
    ContentBlock, DeltaKind, EventBody, ModelUsage, Permission, RetryStatus, RetryStatusKind,
    SessionErrorInfo, StopReason, ToolStatus,
};
use tokio_util::sync::CancellationToken;

use crate::config::split_model;
use crate::provider::{
    ModelRequest, ModelResponse, Part, Provider, ProviderError, StreamEvent, ToolSpec, Who, pricing,
};
use crate::session::live::Session;
use crate::session::state::{Gate, PendingTool};
use crate::store::StoreError;
use crate::tools::replay::Settle;
use crate::tools::{self, Toolbox};
use crate::{crash, spool};

/// Runs turns until nothing is left to answer. Spawned by [`Session::ensure_turn`].
pub async fn run(session: Arc<Session>, cancel: CancellationToken) {
    loop {
        if let Err(e) = turn(&session, &cancel).await {
            // The log could not be written: stop here. The log still says `running`, so the
            // next daemon start resumes from the last committed event.
            tracing::error!(session = %session.id, error = %e, "turn stopped: the event log could not be written");
            session.clear_live_message();
            if let Ok(mut t) = session.turn.lock() {
                *t = None;
            }
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
                session_error(
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

/// Applies `session.update` / `session.send {model}`: a new model (its provider must be
/// usable) and/or spending limit, recorded as `session.updated` when something changes.
pub async fn update_session(
    s: &Arc<Session>,
    model: Option<String>,
    max_cost_usd: Option<f64>,
) -> Result<(), tether_proto::ErrorBody> {
    let invalid =
        |why: String| tether_proto::ErrorBody::new(tether_proto::ErrorCode::InvalidParams, why);
    let model = match model {
        Some(m) if m.trim().is_empty() => return Err(invalid("the model is empty".into())),
        Some(m) => {
            let m = crate::config::canonical_model(m.trim());
            s.runtime
                .providers
                .get(split_model(&m).0)
                .map_err(invalid)?;
            (current_model(s) != m).then_some(m)
        }
        None => None,
    };
    if let Some(limit) = max_cost_usd {
        validate_budget(limit)?;
    }
    let max_cost_usd = max_cost_usd.filter(|l| s.state().max_cost_usd != Some(*l));
    if model.is_some() || max_cost_usd.is_some() {
        s.append_one(EventBody::SessionUpdated {
            model: model.clone(),
            max_cost_usd,
            title: None,
            name: None,
            metadata: None,
        })
        .await?;
    }
    if let Some(m) = model {
        // The event is the truth; the column only serves listings of unloaded sessions.
        s.runtime.store.set_session_model(&s.id, m).await?;
    }
    Ok(())
}

/// A spending limit must be a non-negative, finite number of dollars.
pub fn validate_budget(limit: f64) -> Result<(), tether_proto::ErrorBody> {
    if limit.is_finite() && limit >= 0.0 {
        return Ok(());
    }
    Err(tether_proto::ErrorBody::new(
        tether_proto::ErrorCode::InvalidParams,
        format!("max_cost_usd must be a non-negative number of dollars, got {limit}"),
    ))
}

/// The session's current `provider/model`: the latest `session.updated`, else the row's.
pub(crate) fn current_model(s: &Session) -> String {
    s.state().model.clone().unwrap_or_else(|| s.row().model)
}

/// The provider client for `model`, or the configuration error that ends the turn.
pub(crate) fn provider_for(s: &Session, model: &str) -> Result<Arc<Provider>, ProviderError> {
    s.runtime
        .providers
        .get(split_model(model).0)
        .map_err(ProviderError::Config)
}

/// The request for the session's conversation as it stands (compaction summary + tail).
pub(crate) fn build_request(s: &Session, model: &str) -> ModelRequest {
    let row = s.row();
    let st = s.state();
    ModelRequest {
        model: split_model(model).1.to_string(),
        system: Some(
            row.system
                .clone()
                .unwrap_or_else(|| default_system(&row.workspace)),
        ),
        messages: st.request_messages(),
        tools: {
            let mut tools = tool_specs(
                row.tools.as_deref(),
                s.policy.custom_tools(),
                &s.toolbox.unavailable(),
            );
            tools.extend(s.mcp.tool_specs());
            tools
        },
        max_tokens: s.runtime.config.max_tokens,
        thinking_budget: s
            .thinking_budget
            .or(s.runtime.config.thinking_budget_tokens),
    }
}

/// One model request (with retries) and the commit of its response.
async fn model_step(s: &Arc<Session>, cancel: &CancellationToken) -> Result<Next, StoreError> {
    let model = current_model(s);
    let provider = provider_for(s, &model);
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
    s.emit(DeltaKind::MessageStart {
        model_request_start_id: start.id.clone(),
    });
    let (outcome, who) = match provider {
        Ok(p) => {
            let request = build_request(s, &model);
            let outcome = stream_with_retries(s, &p, &request, &start.id, cancel).await?;
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
            let mut bodies = response_events(s, &resp);
            bodies.push(EventBody::SpanModelRequestEnd {
                model_request_start_id: start.id,
                is_error: false,
                model_usage: pricing::priced(&s.runtime.config.models, &model, resp.usage),
                latency_ms,
            });
            if !has_tools && !s.state().has_queued_user() {
                crash::point("before_idle");
                bodies.push(EventBody::SessionStatusIdle {
                    stop_reason: StopReason::EndTurn,
                });
                s.append_retrying(bodies).await?;
                return Ok(Next::Stop);
            }
            s.append_retrying(bodies).await?;
            crash::point("after_agent_message");
            Ok(Next::Continue)
        }
        Err(ProviderError::Cancelled) => {
            s.append_one_retrying(span_error_end(&start.id, latency_ms))
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
                span_error_end(&start.id, latency_ms),
                session_error(e.session_error_type(), e.describe(&who), retry),
                EventBody::SessionStatusIdle { stop_reason: stop },
            ])
            .await?;
            Ok(Next::Stop)
        }
    }
}

/// Calls the model, retrying transient failures with backoff. Each retry is visible as a
/// `session.error` with `retry_status: retrying`.
pub(crate) async fn stream_with_retries(
    s: &Arc<Session>,
    provider: &Provider,
    request: &ModelRequest,
    start_id: &str,
    cancel: &CancellationToken,
) -> Result<Result<ModelResponse, ProviderError>, StoreError> {
    let policy = s.runtime.config.retry.policy();
    let mut attempt = 1;
    loop {
        let mut on_event = |ev: StreamEvent| {
            crash::point("mid_stream");
            s.emit(match ev {
                StreamEvent::TextDelta { index, text } => DeltaKind::Text { index, text },
                StreamEvent::ThinkingDelta { index, text } => DeltaKind::Thinking { index, text },
                StreamEvent::ToolInputDelta {
                    index,
                    name,
                    partial_json,
                } => DeltaKind::ToolInput {
                    index,
                    name,
                    partial_json,
                },
            })
        };
        let result = provider.stream(request, cancel, &mut on_event).await;
        match result {
            Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
                let delay = policy.delay(attempt, e.retry_after(), jitter());
                let message = e.describe(provider.who());
                tracing::warn!(session = %s.id, attempt, error = %message, "model request failed; retrying");
                let mut err =
                    session_error(e.session_error_type(), message, RetryStatusKind::Retrying);
                if let EventBody::SessionError { error } = &mut err {
                    error.attempt = Some(attempt);
                    error.max_attempts = Some(policy.max_attempts);
                    error.retry_in_ms = Some(delay.as_millis() as u64);
                }
                s.append_one_retrying(err).await?;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Ok(Err(ProviderError::Cancelled)),
                }
                attempt += 1;
                // The partial message of the failed attempt is void.
                s.emit(DeltaKind::MessageStart {
                    model_request_start_id: start_id.to_string(),
                });
            }
            other => return Ok(other),
        }
    }
}

/// The events a complete model response becomes, in the model's block order. Each tool call
/// carries its evaluated permission; a call to a custom tool is an `agent.custom_tool_use`.
fn response_events(s: &Session, resp: &ModelResponse) -> Vec<EventBody> {
    let offered = s.row().tools;
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
            Part::ToolUse { name, input, .. } if s.policy.is_custom(name) => {
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
                    Some(o) if !o.contains(name) => Permission::Deny,
                    _ => s.policy.permission(name),
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
    /// A call waits for a client's answer (`always_ask`, or a custom tool); the calls after it
    /// wait too, so they still run in the order the model made them.
    Blocked,
}

async fn run_tools(
    s: &Arc<Session>,
    pending: Vec<PendingTool>,
    cancel: &CancellationToken,
) -> Result<Tools, StoreError> {
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
            && !s.policy.is_custom(&call.name)
        {
            let msg = format!(
                "the tool `{}` is not enabled for this session's agent; use one of: {}",
                call.name,
                offered.join(", ")
            );
            s.append_one_retrying(denied_result(call.tool_use_id, msg))
                .await?;
            continue;
        }
        match &call.gate {
            Gate::Ask | Gate::Custom => return Ok(Tools::Blocked),
            Gate::Denied { message } => {
                let text = match message.as_deref().map(str::trim) {
                    Some(m) if !m.is_empty() => {
                        format!("The user denied this `{}` call: {m}", call.name)
                    }
                    _ => format!("The user denied this `{}` call.", call.name),
                };
                s.append_one_retrying(denied_result(call.tool_use_id, text))
                    .await?;
                continue;
            }
            Gate::Allowed | Gate::Confirmed => {}
        }
        let spool_path = spool::path(&s.runtime.paths.data_dir, &s.id, &call.tool_use_id);
        match &call.started {
            // An earlier daemon started this call and stopped before its result was committed.
            Some(recorded) => {
                let tail = spool::tail(&spool_path);
                if let Settle::Done(outcome) = s
                    .toolbox
                    .settle_restarted(&call.name, &call.input, recorded, &tail)
                    .await
                {
                    s.append_one_retrying(tool_result(call.tool_use_id, outcome, 0))
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
        let outcome = s
            .toolbox
            .run(&call.name, &call.input, Some(out_tx), cancel.child_token())
            .await;
        let _ = forward.await;
        crash::point("after_tool_exit");
        let duration_ms = started.elapsed().as_millis() as u64;
        let outcome = tools::overflow::spill(s.toolbox.workspace(), &call.tool_use_id, outcome);
        s.set_live_tool(None);
        s.append_one_retrying(tool_result(call.tool_use_id, outcome, duration_ms))
            .await?;
        spool::remove(&spool_path);
        crash::point("after_tool_result");
    }
    Ok(Tools::Done)
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
        crate::runtime::result_of(call, text, is_error, status, ms)
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

/// The result of a call that was not run: refused by policy or denied by the user.
fn denied_result(tool_use_id: String, text: String) -> EventBody {
    EventBody::AgentToolResult {
        tool_use_id,
        content: vec![ContentBlock::text(text)],
        is_error: true,
        status: ToolStatus::Denied,
        exit_code: None,
        duration_ms: 0,
    }
}

fn tool_result(tool_use_id: String, outcome: tools::ToolOutcome, duration_ms: u64) -> EventBody {
    EventBody::AgentToolResult {
        tool_use_id,
        content: vec![ContentBlock::text(outcome.content)],
        is_error: outcome.is_error,
        status: match outcome.status {
            tools::ToolStatus::Ok => ToolStatus::Ok,
            tools::ToolStatus::Error => ToolStatus::Error,
            tools::ToolStatus::Timeout => ToolStatus::Timeout,
            tools::ToolStatus::Interrupted => ToolStatus::Interrupted,
        },
        exit_code: outcome.exit_code,
        duration_ms,
    }
}

/// Every unanswered tool call gets an interrupted result, then the session goes idle.
async fn finish_interrupted(s: &Arc<Session>) -> Result<(), StoreError> {
    s.clear_live_message();
    let bodies = crate::runtime::interrupted_then_idle(
        &s.state().pending_tools,
        "not run: the user interrupted the turn before this tool call started",
    );
    s.append_retrying(bodies).await?;
    Ok(())
}

pub(crate) fn span_error_end(start_id: &str, latency_ms: Option<u64>) -> EventBody {
    EventBody::SpanModelRequestEnd {
        model_request_start_id: start_id.to_string(),
        is_error: true,
        model_usage: ModelUsage::default(),
        latency_ms,
    }
}

pub(crate) fn session_error(kind: &str, message: String, retry: RetryStatusKind) -> EventBody {
    EventBody::SessionError {
        error: SessionErrorInfo {
            kind: kind.to_string(),
            message,
            retry_status: RetryStatus { kind: retry },
            attempt: None,
            max_attempts: None,
            retry_in_ms: None,
            mcp_server_name: None,
        },
    }
}

/// The built-in tools the session's pinned agent enabled (all of them when `offered` is None)
/// but the ones this session can't run, then its custom tools.
fn tool_specs(
    offered: Option<&[String]>,
    custom: &[ToolSpec],
    unavailable: &[&str],
) -> Vec<ToolSpec> {
    Toolbox::definitions()
        .into_iter()
        .filter(|d| offered.is_none_or(|o| o.iter().any(|n| n == d.name)))
        .filter(|d| !unavailable.contains(&d.name))
        .map(|d| ToolSpec {
            name: d.name.to_string(),
            description: d.description.to_string(),
            input_schema: d.input_schema,
        })
        .chain(custom.iter().cloned())
        .collect()
}

fn default_system(workspace: &str) -> String {
    format!(
        "You are a capable software agent working in a terminal. Your working directory is {workspace}. \
Use the tools to inspect and change files and run commands; prefer small, verifiable steps, and say briefly what you did when you are done."
    )
}

/// Spread for retry backoff; any cheap varying number will do.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_fetch_is_offered_only_with_a_network() {
        let names = |network_off| -> Vec<String> {
            tool_specs(None, &[], if network_off { &["web_fetch"] } else { &[] })
                .into_iter()
                .map(|t| t.name)
                .collect()
        };
        assert!(names(false).iter().any(|n| n == "web_fetch"));
        assert!(!names(true).iter().any(|n| n == "web_fetch"));
        assert_eq!(names(true).len(), tools::TOOL_NAMES.len() - 1);
    }
}
