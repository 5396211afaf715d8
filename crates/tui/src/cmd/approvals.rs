//! `tether approve` and `tether tool-result`: answering the calls a session waits on.

use std::process::ExitCode;

use serde_json::Value;
use tether_proto::method::{Order, ReadEvents, SessionParams, rpc};
use tether_proto::{ContentBlock, EventBody, SessionInfo, SessionStatus, StopReason};

use super::sessions::label;
use super::{CmdResult, connect, usage};
use crate::client::{Client, ClientError};

/// A call the session waits on, as the CLI shows it.
pub(crate) struct Waiting {
    pub id: String,
    pub name: String,
    pub input: Value,
    /// A custom tool (wants a result) rather than an `always_ask` call (wants approval).
    pub custom: bool,
}

/// The calls `info` waits on (`requires_action`) that have no answer yet, looked up in its
/// log, newest events first.
pub(crate) async fn waiting_calls(
    c: &mut Client,
    info: &SessionInfo,
) -> Result<Vec<Waiting>, ClientError> {
    let ids = match &info.stop_reason {
        Some(StopReason::RequiresAction { event_ids }) if info.status == SessionStatus::Idle => {
            event_ids.clone()
        }
        _ => return Ok(Vec::new()),
    };
    let mut found: Vec<Waiting> = Vec::new();
    // The idle event names every call; some may have been answered since (newer events, so
    // seen first going backwards).
    let mut answered: Vec<String> = Vec::new();
    let mut before = None;
    while found.len() + answered.len() < ids.len() {
        let page = c
            .request::<rpc::SessionEvents>(ReadEvents {
                thread: None,
                session: info.id.clone(),
                after_seq: None,
                before_seq: before,
                limit: 500,
                order: Order::Desc,
            })
            .await?;
        for e in &page.data {
            match &e.body {
                EventBody::UserToolConfirmation { tool_use_id: a, .. }
                | EventBody::UserCustomToolResult {
                    custom_tool_use_id: a,
                    ..
                } if ids.contains(a) && !answered.contains(a) => answered.push(a.clone()),
                _ => {}
            }
            if !ids.contains(&e.id) || answered.contains(&e.id) {
                continue;
            }
            let (name, input, custom) = match &e.body {
                EventBody::AgentToolUse { name, input, .. } => (name.clone(), input, false),
                EventBody::AgentMcpToolUse {
                    mcp_server_name,
                    name,
                    input,
                    ..
                } => (format!("{mcp_server_name}/{name} (MCP)"), input, false),
                EventBody::AgentCustomToolUse { name, input } => (name.clone(), input, true),
                _ => continue,
            };
            found.push(Waiting {
                id: e.id.clone(),
                name,
                input: input.clone(),
                custom,
            });
        }
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    found.sort_by_key(|w| ids.iter().position(|i| *i == w.id));
    Ok(found)
}

/// Asks on the terminal which of several calls to answer; None when stdin is not a terminal.
fn pick_call(calls: &[&Waiting]) -> Option<String> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return None;
    }
    loop {
        eprint!("which one? [1-{}] ", calls.len());
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim();
        if let Ok(n) = line.parse::<usize>()
            && (1..=calls.len()).contains(&n)
        {
            return Some(calls[n - 1].id.clone());
        }
        if let Some(w) = calls.iter().find(|w| w.id == line) {
            return Some(w.id.clone());
        }
    }
}

pub async fn approve(session: String, event: Option<String>, deny: Option<String>) -> CmdResult {
    let mut c = connect().await?;
    let info = c
        .request::<rpc::SessionGet>(SessionParams {
            session: session.clone(),
        })
        .await?;
    let who = label(&info);
    let tool_use_id = match event {
        Some(e) => e,
        None => {
            let waiting = waiting_calls(&mut c, &info).await?;
            let asks: Vec<&Waiting> = waiting.iter().filter(|w| !w.custom).collect();
            match asks.as_slice() {
                [one] => one.id.clone(),
                [] if waiting.is_empty() => {
                    eprintln!("nothing in {who} is waiting for approval");
                    return Ok(ExitCode::from(1));
                }
                [] => {
                    return Err(usage(format!(
                        "{who} waits only on custom tool calls, which need a result: `tether tool-result {who} {} --json '...'`",
                        waiting[0].id
                    )));
                }
                several => {
                    eprintln!("{who} waits for approval of {} calls:", several.len());
                    for (i, w) in several.iter().enumerate() {
                        eprintln!(
                            "  {}. {}  {}: {}",
                            i + 1,
                            w.id,
                            w.name,
                            crate::render::tool_summary(&w.name, &w.input)
                        );
                    }
                    match pick_call(several) {
                        Some(id) => id,
                        None => {
                            return Err(usage(format!(
                                "several calls wait for approval; name one: `tether approve {who} EVENT` (add --deny MESSAGE to refuse)"
                            )));
                        }
                    }
                }
            }
        }
    };
    let result = if deny.is_some() {
        tether_proto::ConfirmationResult::Deny
    } else {
        tether_proto::ConfirmationResult::Allow
    };
    let answered = c
        .request::<rpc::ToolConfirm>(tether_proto::method::ToolConfirm {
            session: info.id.clone(),
            tool_use_id: tool_use_id.clone(),
            result,
            deny_message: deny.clone(),
        })
        .await?;
    eprintln!(
        "{} {tool_use_id}; {}",
        if deny.is_some() { "denied" } else { "allowed" },
        answered_then(&answered.session)
    );
    Ok(ExitCode::SUCCESS)
}

/// What happens after an answer, from the session as the reply gives it.
fn answered_then(session: &SessionInfo) -> String {
    if session.status == SessionStatus::Idle {
        "the session still waits for other answers (`tether approve` / `tether tool-result`)"
            .to_string()
    } else {
        format!("the turn continues (`tether attach {}`)", label(session))
    }
}

pub async fn tool_result(session: String, event: String, json: String, error: bool) -> CmdResult {
    if let Err(e) = serde_json::from_str::<Value>(&json) {
        return Err(usage(format!(
            "--json is not valid JSON ({e}); quote it for the shell, e.g. --json '{{\"ok\":true}}'"
        )));
    }
    let mut c = connect().await?;
    let answered = c
        .request::<rpc::CustomToolResult>(tether_proto::method::CustomToolResult {
            session,
            custom_tool_use_id: event.clone(),
            content: vec![ContentBlock::text(json)],
            is_error: error,
        })
        .await?;
    eprintln!(
        "sent the result of {event}; {}",
        answered_then(&answered.session)
    );
    Ok(ExitCode::SUCCESS)
}
