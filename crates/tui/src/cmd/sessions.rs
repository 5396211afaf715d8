//! One function per CLI command.

use std::process::ExitCode;

use serde_json::{Value, json};
use tether_proto::method::{
    Attach, CreateSession, DaemonStatus, ForkSession, ListSessions, NoParams, Order, ReadEvents,
    SendMessage, SessionParams, UpdateSession, rpc,
};
use tether_proto::{ContentBlock, EventBody, ServerFrame, SessionInfo, SessionStatus, StopReason};

use crate::cli::{DaemonAction, NewArgs, RunArgs, SessionOpts};
use crate::client::{self, Client, ClientError};
use crate::render::{Printer, stop_reason_text};

pub type CmdResult = Result<ExitCode, ClientError>;

/// Exit code for a turn outcome: 0 on end_turn, 1 otherwise.
fn outcome_code(reason: Option<&StopReason>) -> ExitCode {
    match reason {
        Some(r) if r.is_success() => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

async fn connect() -> Result<Client, ClientError> {
    Client::connect(&client::paths()).await
}

fn create_params(
    prompt: Option<String>,
    name: Option<String>,
    opts: SessionOpts,
) -> Result<CreateSession, ClientError> {
    if let Some(d) = &opts.dir
        && client::is_remote()
        && !std::path::Path::new(d).is_absolute()
    {
        return Err(ClientError::Daemon(tether_proto::ErrorBody::new(
            tether_proto::ErrorCode::InvalidParams,
            format!(
                "--dir {d}: with --remote the directory is on the remote host, so give its absolute path there"
            ),
        )));
    }
    // Resolve relative to the caller's cwd, not the daemon's.
    let dir = opts.dir.map(|d| {
        std::path::absolute(&d)
            .map(|p| p.display().to_string())
            .unwrap_or(d)
    });
    Ok(CreateSession {
        name,
        title: prompt.as_ref().map(|p| title_from(p)),
        model: opts.model,
        system: opts.system,
        dir,
        max_turns: opts.max_turns,
        max_cost_usd: opts.max_cost,
        agent: opts.agent,
        environment_id: opts.env,
        initial_message: prompt
            .map(|p| vec![ContentBlock::text(p)])
            .unwrap_or_default(),
        ..Default::default()
    })
}

fn title_from(prompt: &str) -> String {
    let line = prompt.lines().next().unwrap_or("").trim();
    let mut t: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        t.push('…');
    }
    t
}

pub async fn new(args: NewArgs) -> CmdResult {
    let mut c = connect().await?;
    super::auth::warn_on_mismatch(&mut c).await;
    let has_prompt = args.prompt.is_some();
    let params = create_params(args.prompt, args.name, args.opts)?;
    if let Some(env) = &params.environment_id {
        super::envs::prepare(&mut c, env).await?;
    }
    let info = c.request::<rpc::SessionCreate>(params).await?;
    if !args.detach && !args.json && crate::tui::is_tty() {
        return crate::tui::attach(c, info, false).await;
    }
    if args.detach || !has_prompt {
        if args.json {
            println!("{}", serde_json::to_string(&info).unwrap_or_default());
        } else {
            println!("{}", info.id);
            if !args.detach {
                eprintln!(
                    "session {} created; `tether send {} \"...\"` gives it work",
                    label(&info),
                    label(&info)
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "session {} — Ctrl-C detaches, the agent keeps running",
        label(&info)
    );
    let reason = follow(&mut c, &info.id, 0, false, Printer::new(args.json), Some(0)).await?;
    Ok(outcome_code(reason.as_ref()))
}

pub async fn run(args: RunArgs) -> CmdResult {
    let mut c = connect().await?;
    super::auth::warn_on_mismatch(&mut c).await;
    let params = create_params(Some(args.prompt), args.name, args.opts)?;
    if let Some(env) = &params.environment_id {
        super::envs::prepare(&mut c, env).await?;
    }
    let info = c.request::<rpc::SessionCreate>(params).await?;
    let reason = follow(&mut c, &info.id, 0, false, Printer::new(args.json), Some(0)).await?;
    if !args.json
        && !waits_for_answer(&info.id, reason.as_ref())
        && let Some(r) = &reason
        && !r.is_success()
    {
        eprintln!(
            "session {} ended its turn with {}",
            info.id,
            stop_reason_text(r)
        );
    }
    Ok(outcome_code(reason.as_ref()))
}

/// Says how to answer when the turn stopped for `requires_action`; whether it did.
fn waits_for_answer(session: &str, reason: Option<&StopReason>) -> bool {
    let waiting = matches!(reason, Some(StopReason::RequiresAction { .. }));
    if waiting {
        eprintln!(
            "session {session} waits for your answer: `tether approve {session}` (or `--deny MESSAGE`); custom tools: `tether tool-result {session} EVENT --json '...'`"
        );
    }
    waiting
}

fn label(info: &SessionInfo) -> String {
    info.name.clone().unwrap_or_else(|| info.id.clone())
}

pub async fn send(
    session: String,
    text: String,
    wait: bool,
    json: bool,
    model: Option<String>,
) -> CmdResult {
    let mut c = connect().await?;
    super::auth::warn_on_mismatch(&mut c).await;
    let ev = c
        .request::<rpc::SessionSend>(SendMessage {
            model,
            session,
            content: vec![ContentBlock::text(text)],
        })
        .await?
        .event;
    if !wait {
        if json {
            println!("{}", serde_json::to_string(&ev).unwrap_or_default());
        } else {
            println!("{}", ev.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let reason = follow(
        &mut c,
        &ev.session_id,
        ev.seq,
        false,
        Printer::new(json),
        Some(ev.seq),
    )
    .await?;
    if !json {
        waits_for_answer(&ev.session_id, reason.as_ref());
    }
    Ok(outcome_code(reason.as_ref()))
}

pub async fn attach(session: String, read_only: bool) -> CmdResult {
    let mut c = connect().await?;
    let info = c
        .request::<rpc::SessionGet>(SessionParams { session })
        .await?;
    if crate::tui::is_tty() {
        return crate::tui::attach(c, info, read_only).await;
    }
    eprintln!(
        "attached to {} ({}, {}){} — {}Ctrl-C detaches",
        label(&info),
        info.model,
        info.status.as_str(),
        if read_only { ", read-only" } else { "" },
        if read_only {
            ""
        } else {
            "type a line to send it, /interrupt to stop the turn; "
        }
    );
    let input = (!read_only).then(stdin_lines);
    follow_with_input(
        &mut c,
        &info.id,
        0,
        read_only,
        Printer::watching(false),
        None,
        input,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Lines typed on stdin. A plain thread, not tokio's stdin: a blocking read must never keep
/// the runtime from shutting down.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

async fn next_line(input: &mut Option<tokio::sync::mpsc::Receiver<String>>) -> Option<String> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A line typed while attached: a message, or a command.
async fn handle_input(c: &mut Client, session_id: &str, line: &str) -> Result<(), ClientError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(());
    }
    let session = session_id.to_string();
    match line {
        "/interrupt" => c
            .request::<rpc::SessionInterrupt>(SessionParams { session })
            .await
            .map(|_| ()),
        _ => c
            .request::<rpc::SessionSend>(SendMessage {
                model: None,
                session,
                content: vec![ContentBlock::text(line)],
            })
            .await
            .map(|_| ()),
    }
}

/// Attaches and prints until the session goes idle after `idle_after` (or forever with None).
/// Re-attaches from the last seen seq when the daemon says this client fell behind, and
/// reconnects (without starting a daemon) when the connection drops.
async fn follow(
    c: &mut Client,
    session_id: &str,
    after_seq: u64,
    read_only: bool,
    printer: Printer,
    idle_after: Option<u64>,
) -> Result<Option<StopReason>, ClientError> {
    follow_with_input(
        c, session_id, after_seq, read_only, printer, idle_after, None,
    )
    .await
}

/// [`follow`], also sending what the user types (`input`) to the session.
async fn follow_with_input(
    c: &mut Client,
    session_id: &str,
    after_seq: u64,
    read_only: bool,
    mut printer: Printer,
    idle_after: Option<u64>,
    mut input: Option<tokio::sync::mpsc::Receiver<String>>,
) -> Result<Option<StopReason>, ClientError> {
    let attach = |after_seq| Attach {
        session: session_id.to_string(),
        after_seq,
        read_only,
    };
    let mut last = after_seq;
    let mut attached = false;
    loop {
        if !attached {
            match c.request::<rpc::SessionAttach>(attach(last)).await {
                Ok(_) => attached = true,
                Err(e) if is_connection_loss(&e) => {
                    reconnect(c, &e).await?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let pushed = tokio::select! {
            r = c.next_push() => r,
            line = next_line(&mut input) => {
                match line {
                    Some(line) => match handle_input(c, session_id, &line).await {
                        Ok(()) => {}
                        Err(e) if is_connection_loss(&e) => {
                            reconnect(c, &e).await?;
                            attached = false;
                        }
                        Err(e) => eprintln!("tether: {e}"),
                    },
                    // stdin closed: keep watching.
                    None => input = None,
                }
                continue;
            }
        };
        let frame = match pushed {
            Ok(f) => f,
            Err(e) if is_connection_loss(&e) => {
                reconnect(c, &e).await?;
                attached = false;
                continue;
            }
            Err(e) => return Err(e),
        };
        match frame {
            ServerFrame::Event(e) if e.session_id == session_id => {
                if e.seq <= last {
                    continue;
                }
                last = e.seq;
                printer.event(&e);
                if let (Some(floor), EventBody::SessionStatusIdle { stop_reason }) =
                    (idle_after, &e.body)
                    && e.seq > floor
                {
                    return Ok(Some(stop_reason.clone()));
                }
            }
            ServerFrame::Delta(d) if d.session_id == session_id => printer.delta(&d),
            ServerFrame::Snapshot(s) if s.session_id == session_id => printer.snapshot(&s),
            ServerFrame::Resync(r) if r.session_id == session_id => {
                last = last.max(r.from_seq.saturating_sub(1));
                attached = false;
            }
            _ => {}
        }
    }
}

fn is_connection_loss(e: &ClientError) -> bool {
    matches!(e, ClientError::Disconnected(_)) || e.code_is(tether_proto::ErrorCode::ShuttingDown)
}

/// Waits for the daemon (local or remote) to be reachable again, with capped exponential
/// backoff and jitter, and replaces the connection. It never starts a daemon: a stopped daemon
/// was stopped on purpose.
async fn reconnect(c: &mut Client, why: &ClientError) -> Result<(), ClientError> {
    eprintln!("\n[connection to tetherd lost: {why}; reconnecting…]");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match c.reconnect().await {
            Ok(fresh) => {
                *c = fresh;
                eprintln!("[reconnected to {}]", c.target());
                return Ok(());
            }
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(e @ (ClientError::Unreachable(_) | ClientError::Disconnected(_))) => {
                note_unreachable(&e);
                tokio::time::sleep(jittered(delay)).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Says once per attempt why reconnecting failed, on stderr (the CLI has no log).
fn note_unreachable(e: &ClientError) {
    eprintln!("[still unreachable: {e}]");
}

/// A delay uniformly in [d/2, d], so clients dropped together do not come back in lockstep.
fn jittered(d: std::time::Duration) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    d / 2 + (d / 2).mul_f64((r % 1000) as f64 / 1000.0)
}

pub async fn ls(all: bool, json: bool) -> CmdResult {
    let mut c = connect().await?;
    let sessions = c
        .request::<rpc::SessionList>(ListSessions { all })
        .await?
        .data;
    if json {
        for s in &sessions {
            println!("{}", serde_json::to_string(s).unwrap_or_default());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        eprintln!("no sessions yet; `tether new \"...\"` starts one");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<16} {:<22} {:<28} {:>6} {:>12} {:>9} {:>9}  UPDATED",
        "ID", "NAME", "STATUS", "MODEL", "EVENTS", "TOKENS", "CLIENTS", "COST"
    );
    for s in &sessions {
        let status = match (&s.status, &s.stop_reason) {
            (SessionStatus::Idle, Some(StopReason::RequiresAction { .. })) => {
                "waiting for approval".to_string()
            }
            (SessionStatus::Idle, Some(r)) if !r.is_success() => {
                format!("idle ({})", stop_reason_text(r))
            }
            (st, _) => st.as_str().to_string(),
        };
        let status = if s.archived_at.is_some() {
            format!("{status}, archived")
        } else {
            status
        };
        // Unsandboxed sessions (their environment says `sandbox = "none"`) stand out in red.
        let unsandboxed = s.sandbox.as_deref() == Some("none");
        let status = match s.sandbox.as_deref() {
            Some("none") => format!("{status}, UNSANDBOXED"),
            Some("landlock") => format!("{status}, weak sandbox"),
            _ => status,
        };
        let (red, reset) = if unsandboxed && color_out() {
            ("\x1b[31;1m", "\x1b[0m")
        } else {
            ("", "")
        };
        println!(
            "{red}{:<32} {:<16} {:<22} {:<28} {:>6} {:>12} {:>9} {:>9}  {}{reset}",
            s.id,
            s.name.as_deref().unwrap_or("-"),
            status,
            s.model,
            s.last_seq,
            format!(
                "{}/{}",
                s.usage.tokens.input_tokens, s.usage.tokens.output_tokens
            ),
            clients_text(s),
            cost_text(&s.usage),
            s.updated_at
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether stdout takes colours: a terminal, and NO_COLOR unset.
fn color_out() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Attached clients, e.g. `3 (1 ro)`.
fn clients_text(s: &SessionInfo) -> String {
    match s.read_only_clients {
        0 => s.attached_clients.to_string(),
        ro => format!("{} ({ro} ro)", s.attached_clients),
    }
}

/// `$0.0123`; `≥$0.0123` when some requests had no known price; `-` when none had one.
fn cost_text(usage: &tether_proto::SessionUsage) -> String {
    match (usage.tokens.cost_usd, usage.unpriced_requests) {
        (None, _) => "-".to_string(),
        (Some(c), 0) => format!("${c:.4}"),
        (Some(c), _) => format!("≥${c:.4}"),
    }
}

pub async fn logs(session: String, follow_: bool, after: u64, json: bool) -> CmdResult {
    let mut c = connect().await?;
    let info = c
        .request::<rpc::SessionGet>(SessionParams { session })
        .await?;
    if follow_ {
        follow(&mut c, &info.id, after, true, Printer::watching(json), None).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut printer = Printer::new(json);
    let mut cursor = after;
    loop {
        let page = c
            .request::<rpc::SessionEvents>(ReadEvents {
                session: info.id.clone(),
                after_seq: Some(cursor),
                before_seq: None,
                limit: 1000,
                order: Order::Asc,
            })
            .await?;
        for e in &page.data {
            printer.event(e);
            cursor = e.seq;
        }
        if page.next.is_none() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn interrupt(session: String) -> CmdResult {
    let mut c = connect().await?;
    let interrupted = c
        .request::<rpc::SessionInterrupt>(SessionParams { session })
        .await?;
    if interrupted.was_running {
        eprintln!("interrupted");
    } else {
        eprintln!("the session was not running; recorded the interrupt anyway");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn rm(session: String, archive: bool) -> CmdResult {
    let mut c = connect().await?;
    if archive {
        let info = c
            .request::<rpc::SessionArchive>(SessionParams { session })
            .await?;
        eprintln!("archived {}", info.id);
    } else {
        let deleted = c
            .request::<rpc::SessionDelete>(SessionParams { session })
            .await?;
        eprintln!("deleted {}", deleted.id);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn rename(session: String, name: String) -> CmdResult {
    let mut c = connect().await?;
    let info = c
        .request::<rpc::SessionUpdate>(UpdateSession {
            session,
            model: None,
            max_cost_usd: None,
            name: Some(name),
        })
        .await?;
    eprintln!(
        "renamed {} to {}",
        info.id,
        info.name.as_deref().unwrap_or("")
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn fork(session: String, name: Option<String>, json: bool) -> CmdResult {
    let mut c = connect().await?;
    let info = c
        .request::<rpc::SessionFork>(ForkSession { session, name })
        .await?;
    if json {
        println!("{}", serde_json::to_string(&info).unwrap_or_default());
    } else {
        println!("{}", info.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// A call the session waits on, as the CLI shows it.
struct Waiting {
    id: String,
    name: String,
    input: Value,
    /// A custom tool (wants a result) rather than an `always_ask` call (wants approval).
    custom: bool,
}

/// The calls `info` waits on (`requires_action`) that have no answer yet, looked up in its
/// log, newest events first.
async fn waiting_calls(c: &mut Client, info: &SessionInfo) -> Result<Vec<Waiting>, ClientError> {
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

fn usage_error(message: String) -> ClientError {
    ClientError::Daemon(tether_proto::ErrorBody::new(
        tether_proto::ErrorCode::InvalidParams,
        message,
    ))
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
                    return Err(usage_error(format!(
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
                            return Err(usage_error(format!(
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
        return Err(usage_error(format!(
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

pub async fn daemon(action: DaemonAction) -> CmdResult {
    let paths = client::paths();
    match action {
        DaemonAction::Start { foreground } => {
            if foreground && client::is_remote() {
                return Err(ClientError::Daemon(tether_proto::ErrorBody::new(
                    tether_proto::ErrorCode::InvalidParams,
                    "--foreground runs tetherd in this terminal; with --remote, run `tether daemon start --foreground` on the remote host itself",
                )));
            }
            if foreground {
                let status = std::process::Command::new(client::daemon_binary())
                    .status()
                    .map_err(|e| ClientError::Unreachable(format!("cannot run tetherd: {e}")))?;
                return Ok(ExitCode::from(status.code().unwrap_or(1) as u8));
            }
            if let Ok(c) = Client::connect_existing(&paths).await {
                eprintln!("tetherd is already running (pid {})", c.daemon_pid);
                return Ok(ExitCode::SUCCESS);
            }
            let c = Client::connect(&paths).await?;
            eprintln!("tetherd started (pid {})", c.daemon_pid);
            Ok(ExitCode::SUCCESS)
        }
        DaemonAction::Stop => {
            let pid = stop(&paths).await?;
            match pid {
                Some(pid) => {
                    eprintln!("tetherd (pid {pid}) stopped; sessions resume when it starts again")
                }
                None => eprintln!("tetherd was not running"),
            }
            Ok(ExitCode::SUCCESS)
        }
        DaemonAction::Restart => {
            stop(&paths).await?;
            let c = Client::connect(&paths).await?;
            eprintln!("tetherd restarted (pid {})", c.daemon_pid);
            Ok(ExitCode::SUCCESS)
        }
        DaemonAction::Status { json } => {
            let mut c = Client::connect_existing(&paths).await?;
            let status = c.request::<rpc::DaemonStatus>(NoParams {}).await?;
            if json {
                // Through a JSON value, as the daemon sent it: keys in the same (sorted) order.
                println!("{}", serde_json::to_value(&status).unwrap_or_default());
            } else {
                print_status(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(st: &DaemonStatus) {
    println!("tetherd {} running", st.version);
    println!("  pid         {}", st.pid);
    println!("  socket      {}", st.socket);
    println!("  data        {}", st.data_dir);
    println!("  uptime      {:.1} s", st.uptime_ms as f64 / 1000.0);
    println!(
        "  sessions    {} ({} running)",
        st.sessions, st.running_sessions
    );
    println!("  clients     {}", st.clients);
}

/// Asks the daemon to stop and waits until it has released its socket.
async fn stop(paths: &tether_proto::Paths) -> Result<Option<u32>, ClientError> {
    let mut c = match Client::connect_existing(paths).await {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let pid = c.daemon_pid;
    c.request::<rpc::DaemonShutdown>(NoParams {}).await?;
    // The daemon closes our connection once it has stopped serving.
    while c.next_push().await.is_ok() {}
    if client::is_remote() {
        // Its pid is on another machine; the closed connection is all we can see.
        return Ok(Some(pid));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while process_alive(pid) {
        if std::time::Instant::now() > deadline {
            return Err(ClientError::Unreachable(format!(
                "tetherd (pid {pid}) did not exit within 30 s; `kill {pid}` stops it (sessions stay resumable)"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(Some(pid))
}

/// Alive and not a zombie (an exited daemon may wait a while for its reaper).
fn process_alive(pid: u32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Prints the HTTP API token, starting the daemon first if it never ran (it makes the token).
pub async fn http_token() -> CmdResult {
    let paths = client::paths();
    let file = paths.http_token_file();
    if !file.exists() {
        Client::connect(&paths).await?;
    }
    match std::fs::read_to_string(&file) {
        Ok(t) if !t.trim().is_empty() => {
            println!("{}", t.trim());
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(ClientError::Unreachable(format!(
            "no HTTP token at {}; tetherd makes it when it starts — check `tether doctor`",
            file.display()
        ))),
    }
}

pub async fn doctor(json: bool) -> CmdResult {
    let paths = client::paths();
    let mut checks: Vec<(String, bool, String)> = Vec::new();
    let mut status: Option<DaemonStatus> = None;
    match Client::connect_existing(&paths).await {
        Ok(mut c) => {
            checks.push((
                "daemon".into(),
                true,
                format!("running, pid {} version {}", c.daemon_pid, c.daemon_version),
            ));
            status = c.request::<rpc::DaemonStatus>(NoParams {}).await.ok();
        }
        Err(e) => checks.push(("daemon".into(), false, e.to_string())),
    }
    checks.push(("socket".into(), true, paths.socket().display().to_string()));
    checks.push(("data".into(), true, paths.data_dir.display().to_string()));
    let config = paths.config_file();
    checks.push(match std::fs::read_to_string(&config) {
        Ok(_) => ("config".into(), true, config.display().to_string()),
        Err(_) => (
            "config".into(),
            true,
            format!("{} (absent: defaults apply)", config.display()),
        ),
    });
    checks.push((
        "logs".into(),
        true,
        format!("{}/tetherd.*.log", paths.log_dir.display()),
    ));
    let providers = status
        .as_ref()
        .map(|s| s.providers.clone())
        .unwrap_or_default();
    if providers.is_empty() {
        // No daemon to ask: judge from this shell's environment, which a daemon started from
        // here would inherit.
        let key = std::env::var("ANTHROPIC_API_KEY").is_ok_and(|k| !k.is_empty());
        let base = std::env::var("ANTHROPIC_BASE_URL").ok();
        checks.push((
            "anthropic".into(),
            key || base.is_some(),
            match (key, &base) {
                (true, Some(b)) => format!("ANTHROPIC_API_KEY set; endpoint {b}"),
                (true, None) => "ANTHROPIC_API_KEY set; endpoint https://api.anthropic.com".into(),
                (false, Some(b)) => format!("no ANTHROPIC_API_KEY; endpoint {b}"),
                (false, None) => {
                    "ANTHROPIC_API_KEY is not set: sessions cannot call the model".into()
                }
            },
        ));
    }
    for p in providers {
        checks.push((
            p.name,
            p.ready,
            format!(
                "{} — {} (as the running daemon sees it)",
                p.endpoint, p.detail
            ),
        ));
    }
    if let Some(s) = status.as_ref() {
        checks.push(match &s.web_search {
            Some(w) => (
                "web_search".into(),
                w.ready,
                if w.ready {
                    format!("{} — offered to the model", w.endpoint)
                } else {
                    w.detail.clone()
                },
            ),
            None => (
                "web_search".into(),
                true,
                "not configured, so not offered; to enable: [web_search] backend = \"searxng\", url = \"http://HOST:PORT\" (or backend = \"brave\" with BRAVE_API_KEY) in config.toml".into(),
            ),
        });
    }
    for c in status
        .as_ref()
        .map(|s| s.mcp_credentials.clone())
        .unwrap_or_default()
    {
        checks.push((
            "mcp".into(),
            c.ready,
            format!("{} — {}", c.endpoint, c.detail),
        ));
    }
    checks.extend(sandbox_checks(status.as_ref()));
    if json {
        let v: Vec<Value> = checks
            .iter()
            .map(|(n, ok, d)| json!({"check": n, "ok": ok, "detail": d}))
            .collect();
        println!("{}", Value::Array(v));
    } else {
        for (n, ok, d) in &checks {
            println!("{} {:<10} {d}", if *ok { "✓" } else { "✗" }, n);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the host offers for sandboxing tools and the level tether uses: the running daemon's
/// probe, or (no daemon) `tetherd sandbox-probe --report` run here.
fn sandbox_checks(status: Option<&DaemonStatus>) -> Vec<(String, bool, String)> {
    let from_daemon = status.and_then(|s| s.sandbox.clone());
    let report = match from_daemon {
        Some(r) => r,
        None => {
            let bin = client::daemon_binary();
            let probed = std::process::Command::new(&bin)
                .args(["sandbox-probe", "--report"])
                .stdin(std::process::Stdio::null())
                .output();
            match probed
                .ok()
                .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            {
                Some(r) => r,
                None => {
                    return vec![(
                        "sandbox".into(),
                        false,
                        format!(
                            "cannot probe: `{} sandbox-probe --report` did not answer",
                            bin.display()
                        ),
                    )];
                }
            }
        }
    };
    let mut out = vec![(
        "sandbox".to_string(),
        report.level != "unavailable",
        format!("level {}: {}", report.level, report.summary),
    )];
    out.extend(
        report
            .checks
            .into_iter()
            .map(|c| (format!("  {}", c.name), c.ok, c.detail)),
    );
    out
}
