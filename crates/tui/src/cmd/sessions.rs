//! `tether new|run|send|attach|ls|logs|interrupt|rm|rename|fork`: sessions from the command
//! line.

use std::process::ExitCode;

use tether_proto::method::{
    CreateSession, DefineOutcome, ForkSession, ListSessions, Order, ReadEvents, SendMessage,
    SessionParams, UpdateSession, rpc,
};
use tether_proto::{ContentBlock, SessionInfo, SessionStatus, StopReason};

use super::follow::{follow, follow_with_input, stdin_lines};
use super::{CmdResult, connect, usage};
use crate::cli::{NewArgs, OutcomeArgs, RunArgs, SessionOpts};
use crate::client::{self, ClientError};
use crate::render::{Printer, stop_reason_text};

/// Exit code for a turn outcome: 0 on end_turn, 1 otherwise.
fn outcome_code(reason: Option<&StopReason>) -> ExitCode {
    match reason {
        Some(r) if r.is_success() => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
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
        return Err(usage(format!(
            "--dir {d}: with --remote the directory is on the remote host, so give its absolute path there"
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
    if !args.detach && !args.json && crate::screen::is_tty() {
        return crate::screen::attach(c, info, false).await;
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
    let mut printer = Printer::new(args.json);
    let reason = follow(&mut c, &info.id, 0, false, &mut printer, Some(0)).await?;
    Ok(outcome_code(reason.as_ref()))
}

pub async fn run(args: RunArgs) -> CmdResult {
    // Checked before connecting: a bad rubric is reported before anything starts.
    let outcome = super::outcome::spec(
        args.prompt.as_deref(),
        &args.outcome,
        &super::outcome::Files,
    )
    .map_err(usage)?;
    let prompt = if outcome.is_some() { None } else { args.prompt };
    let mut c = connect().await?;
    super::auth::warn_on_mismatch(&mut c).await;
    let mut params = create_params(prompt, args.name, args.opts)?;
    if let Some(o) = &outcome {
        params.title = Some(title_from(&o.description));
    }
    if let Some(env) = &params.environment_id {
        super::envs::prepare(&mut c, env).await?;
    }
    let info = c.request::<rpc::SessionCreate>(params).await?;
    let mut printer = Printer::new(args.json);
    if let Some(o) = outcome {
        let ev = c
            .request::<rpc::SessionDefineOutcome>(DefineOutcome {
                session: info.id.clone(),
                outcome: o,
            })
            .await?
            .event;
        let reason = follow(&mut c, &info.id, 0, false, &mut printer, Some(ev.seq)).await?;
        if !args.json {
            waits_for_answer(&info.id, reason.as_ref());
        }
        return Ok(super::outcome::finish(
            &info.id,
            printer.verdict,
            reason.as_ref(),
            args.json,
        ));
    }
    let reason = follow(&mut c, &info.id, 0, false, &mut printer, Some(0)).await?;
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

pub(super) fn label(info: &SessionInfo) -> String {
    info.name.clone().unwrap_or_else(|| info.id.clone())
}

pub async fn send(
    session: String,
    text: Option<String>,
    wait: bool,
    json: bool,
    model: Option<String>,
    outcome_args: OutcomeArgs,
) -> CmdResult {
    // Checked before connecting: a bad rubric is reported before anything is sent.
    let outcome = super::outcome::spec(text.as_deref(), &outcome_args, &super::outcome::Files)
        .map_err(usage)?;
    let mut c = connect().await?;
    super::auth::warn_on_mismatch(&mut c).await;
    let mut printer = Printer::new(json);
    let ev = match (outcome, text) {
        (Some(o), _) => {
            // --model applies from this outcome on, as it would from a message.
            if model.is_some() {
                c.request::<rpc::SessionUpdate>(UpdateSession {
                    session: session.clone(),
                    model,
                    max_cost_usd: None,
                    name: None,
                })
                .await?;
            }
            // The echo is not followed (it is below the floor): the printer is told.
            printer.outcome_max = Some(o.max_iterations());
            c.request::<rpc::SessionDefineOutcome>(DefineOutcome {
                session,
                outcome: o,
            })
            .await?
            .event
        }
        (None, text) => {
            c.request::<rpc::SessionSend>(SendMessage {
                model,
                session,
                content: vec![ContentBlock::text(text.unwrap_or_default())],
            })
            .await?
            .event
        }
    };
    let is_outcome = matches!(ev.body, tether_proto::EventBody::UserDefineOutcome(_));
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
        &mut printer,
        Some(ev.seq),
    )
    .await?;
    if !json {
        waits_for_answer(&ev.session_id, reason.as_ref());
    }
    if is_outcome {
        return Ok(super::outcome::finish(
            &ev.session_id,
            printer.verdict,
            reason.as_ref(),
            json,
        ));
    }
    Ok(outcome_code(reason.as_ref()))
}

pub async fn attach(session: String, read_only: bool) -> CmdResult {
    let mut c = connect().await?;
    let info = c
        .request::<rpc::SessionGet>(SessionParams { session })
        .await?;
    if crate::screen::is_tty() {
        return crate::screen::attach(c, info, read_only).await;
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
        &mut Printer::watching(false),
        None,
        input,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn ls(all: bool, json: bool, deployment: Option<String>) -> CmdResult {
    let mut c = connect().await?;
    let sessions = c
        .request::<rpc::SessionList>(ListSessions { all, deployment })
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
        "{:<32} {:<16} {:<22} {:<18} {:<28} {:>6} {:>12} {:>9} {:>9}  UPDATED",
        "ID", "NAME", "STATUS", "OUTCOME", "MODEL", "EVENTS", "TOKENS", "CLIENTS", "COST"
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
            "{red}{:<32} {:<16} {:<22} {:<18} {:<28} {:>6} {:>12} {:>9} {:>9}  {}{reset}",
            s.id,
            s.name.as_deref().unwrap_or("-"),
            status,
            // The latest outcome (one at a time); `-` for sessions that never had one.
            s.outcome_evaluations
                .last()
                .map(crate::outcome::state_text)
                .unwrap_or_else(|| "-".into()),
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
        follow(
            &mut c,
            &info.id,
            after,
            true,
            &mut Printer::watching(json),
            None,
        )
        .await?;
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
