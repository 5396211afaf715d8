//! `tether new|run|send|attach|ls|logs|interrupt|rm|rename|fork`: sessions from the command
//! line.

use std::process::ExitCode;

use tether_proto::method::{
    CreateSession, DefineOutcome, ForkSession, Interrupt, Order, ReadEvents, SendMessage,
    SessionParams, UpdateSession, rpc,
};
use tether_proto::{ContentBlock, EventBody, SessionInfo, SessionStatus, StopReason};

use super::follow::{follow, follow_with_input, stdin_lines};
use super::{CmdResult, connect, usage};
use crate::cli::{NewArgs, OutcomeArgs, RunArgs, SessionOpts};
use crate::client::{self, ClientError};
use crate::render::{Printer, stop_reason_text};

/// Exit code for a turn outcome: 0 on end_turn, 1 otherwise.
pub(super) fn outcome_code(reason: Option<&StopReason>) -> ExitCode {
    match reason {
        Some(r) if r.is_success() => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

/// Where a new session works.
#[derive(Debug, Clone, PartialEq)]
enum Workplace {
    /// A fresh workspace under the data dir (`--private`, or the default with `--remote`).
    Private,
    /// An existing directory, absolute: `--dir`, or the current directory by default.
    Dir(String),
    /// A new git worktree of the repository containing this directory.
    Worktree(std::path::PathBuf),
}

/// Picks the workplace from the flags, `[tui] workspace` and the current directory.
fn workplace(
    opts: &SessionOpts,
    remote: bool,
    setting: Option<&str>,
    cwd: Option<std::path::PathBuf>,
) -> Result<Workplace, ClientError> {
    if let Some(d) = &opts.dir
        && remote
        && !std::path::Path::new(d).is_absolute()
    {
        return Err(usage(format!(
            "--dir {d}: with --remote the directory is on the remote host, so give its absolute path there"
        )));
    }
    // Resolve relative to the caller's cwd, not the daemon's.
    let dir = opts.dir.as_ref().map(|d| {
        std::path::absolute(d)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| d.clone())
    });
    if opts.worktree {
        if remote {
            return Err(usage(
                "--worktree runs git on this machine, so it does not work with --remote; run                  `tether new --worktree` on the remote host, or pass --dir"
                    .into(),
            ));
        }
        return match dir.or_else(|| cwd.map(|c| c.display().to_string())) {
            Some(d) => Ok(Workplace::Worktree(d.into())),
            None => Err(usage(
                "--worktree: cannot tell the current directory; pass --dir".into(),
            )),
        };
    }
    if opts.private {
        return Ok(Workplace::Private);
    }
    if let Some(d) = dir {
        return Ok(Workplace::Dir(d));
    }
    match setting {
        None | Some("cwd") => {}
        Some("private") => return Ok(Workplace::Private),
        Some(other) => {
            return Err(usage(format!(
                "[tui] workspace = \"{other}\" in config.toml: expected \"cwd\" or \"private\""
            )));
        }
    }
    // This machine's current directory means nothing to a remote daemon.
    match cwd {
        Some(c) if !remote => Ok(Workplace::Dir(c.display().to_string())),
        _ => Ok(Workplace::Private),
    }
}

/// The session to create, and the worktree made for it (removed again if creation fails).
fn create_params(
    prompt: Option<String>,
    name: Option<String>,
    opts: SessionOpts,
) -> Result<(CreateSession, Option<super::worktree::Worktree>), ClientError> {
    let setting = crate::settings::load(&client::paths().config_file())
        .map_err(usage)?
        .workspace;
    let cwd = std::env::current_dir().ok();
    let place = workplace(&opts, client::is_remote(), setting.as_deref(), cwd)?;
    let (dir, worktree) = match place {
        Workplace::Private => (None, None),
        Workplace::Dir(d) => {
            if std::env::var_os("HOME")
                .is_some_and(|h| std::path::Path::new(&h) == std::path::Path::new(&d))
            {
                eprintln!(
                    "note: the session works in your home directory and can change anything \
                     in it; --private gives it a scratch workspace, --dir DIR another place"
                );
            }
            (Some(d), None)
        }
        Workplace::Worktree(start) => {
            let wt = super::worktree::create(&start, name.as_deref(), &client::paths().data_dir)?;
            (Some(wt.path.display().to_string()), Some(wt))
        }
    };
    let params = CreateSession {
        name,
        title: prompt.as_ref().map(|p| title_from(p)),
        model: opts.model,
        system: opts.system,
        dir,
        max_turns: opts.max_turns,
        max_cost_usd: opts.max_cost,
        agent: opts.agent,
        environment_id: opts.env,
        memory_stores: super::memory::resources(&opts.memory),
        vault_ids: opts.vaults,
        initial_message: prompt
            .map(|p| vec![ContentBlock::text(p)])
            .unwrap_or_default(),
        ..Default::default()
    };
    Ok((params, worktree))
}

/// Creates the session; a worktree made for it is removed if that fails, and its branch
/// named after the session id when the session has no name.
async fn create_session(
    c: &mut client::Client,
    params: CreateSession,
    worktree: Option<super::worktree::Worktree>,
) -> Result<SessionInfo, ClientError> {
    if let Some(agent) = &params.agent {
        super::names::note_shared_agent_name(c, agent).await;
    }
    if let Some(env) = &params.environment_id {
        super::names::note_shared_environment_name(c, env).await;
    }
    if let Some(env) = &params.environment_id
        && let Err(e) = super::envs::prepare(c, env).await
    {
        if let Some(wt) = &worktree {
            super::worktree::remove(wt, true);
        }
        return Err(e);
    }
    let info = match c.request::<rpc::SessionCreate>(params).await {
        Ok(info) => info,
        Err(e) => {
            if let Some(wt) = &worktree {
                super::worktree::remove(wt, true);
            }
            return Err(e);
        }
    };
    match worktree {
        Some(mut wt) => {
            if info.name.is_none() {
                super::worktree::rename_branch(&mut wt, &info.id);
            }
            eprintln!(
                "session {} works in {} (git worktree on branch {})",
                label(&info),
                info.workspace,
                wt.branch
            );
        }
        None => eprintln!("session {} works in {}", label(&info), info.workspace),
    }
    Ok(info)
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
    let (params, worktree) = create_params(args.prompt, args.name, args.opts)?;
    let info = create_session(&mut c, params, worktree).await?;
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
    let (mut params, worktree) = create_params(prompt, args.name, args.opts)?;
    if let Some(o) = &outcome {
        params.title = Some(title_from(&o.description));
    }
    let info = create_session(&mut c, params, worktree).await?;
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
pub(super) fn waits_for_answer(session: &str, reason: Option<&StopReason>) -> bool {
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
    let session_label = session.clone();
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
                thread: None,
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
            // stdout stays the event id (scripts read it); what happened goes to stderr.
            println!("{}", ev.id);
            let queued = busy_before(&mut c, &ev.session_id, ev.seq).await?;
            eprintln!("{}", delivery_text(&session_label, queued, is_outcome));
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

/// Whether the session was in a turn when the event at `seq` landed: the status event
/// before it says `running` (the message then waits for that turn to end).
async fn busy_before(c: &mut client::Client, session: &str, seq: u64) -> Result<bool, ClientError> {
    let mut before = seq;
    loop {
        let page = c
            .request::<rpc::SessionEvents>(ReadEvents {
                thread: None,
                session: session.into(),
                after_seq: None,
                before_seq: Some(before),
                limit: 200,
                order: Order::Desc,
            })
            .await?;
        if let Some(running) = page.data.iter().find_map(|e| match e.body {
            EventBody::SessionStatusRunning {} | EventBody::SessionStatusRescheduled {} => {
                Some(true)
            }
            EventBody::SessionStatusIdle { .. } | EventBody::SessionStatusTerminated {} => {
                Some(false)
            }
            _ => None,
        }) {
            return Ok(running);
        }
        match (page.next, page.data.last()) {
            (Some(_), Some(last)) => before = last.seq,
            _ => return Ok(false),
        }
    }
}

/// What `send` tells you happened, and how to follow.
fn delivery_text(session: &str, queued: bool, outcome: bool) -> String {
    let what = if outcome { "outcome" } else { "message" };
    let happened = if queued {
        format!("{what} queued: {session} is busy with a turn and takes it when that ends")
    } else {
        format!("{what} sent: {session} started a turn on it")
    };
    format!("{happened}; follow with `tether attach {session}` or `tether logs -f {session}`")
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

/// Newest first: the session you just started is on top. RFC 3339 times of one daemon
/// share a format, so they sort as text; ids (ULIDs) break ties in creation order.
pub(super) fn newest_first(sessions: &mut [SessionInfo]) {
    sessions.sort_by(|a, b| {
        (b.created_at.as_str(), b.id.as_str()).cmp(&(a.created_at.as_str(), a.id.as_str()))
    });
}

/// What `ls` shows in its NAME column: the name, else the title (quoted, so it does not
/// pass for a name you could type), else `-`.
fn name_or_title(s: &SessionInfo) -> String {
    match (&s.name, s.title.as_deref().map(str::trim)) {
        (Some(n), _) => n.clone(),
        (None, Some(t)) if !t.is_empty() => {
            // Quotes and all, it fits the 24-wide column.
            let mut short: String = t.chars().take(21).collect();
            if t.chars().count() > 22 {
                short = format!("{}…", short.trim_end());
            } else {
                short = t.to_string();
            }
            format!("\"{short}\"")
        }
        _ => "-".into(),
    }
}

/// The STATUS column, and whether it is a failure (drawn red with a `✗`). An interrupted
/// turn is something you did, not a failure.
fn status_text(s: &SessionInfo) -> (String, bool) {
    let (status, failed) = match (&s.status, &s.stop_reason) {
        (SessionStatus::Idle, Some(StopReason::RequiresAction { .. })) => {
            ("waiting for approval".to_string(), false)
        }
        (SessionStatus::Idle, Some(StopReason::Interrupted)) => {
            ("idle, interrupted".to_string(), false)
        }
        (SessionStatus::Idle, Some(r @ (StopReason::Error | StopReason::RetriesExhausted))) => {
            (format!("✗ idle ({})", stop_reason_text(r)), true)
        }
        (SessionStatus::Idle, Some(r)) if !r.is_success() => {
            (format!("idle ({})", stop_reason_text(r)), false)
        }
        (st, _) => (st.as_str().to_string(), false),
    };
    let status = if s.archived_at.is_some() {
        format!("{status}, archived")
    } else {
        status
    };
    match s.sandbox.as_deref() {
        Some("none") => (format!("{status}, UNSANDBOXED"), true),
        Some("landlock") => (format!("{status}, weak sandbox"), failed),
        _ => (status, failed),
    }
}

/// The `ls` table, times relative to `now` ("3m ago"); with `hosts` (one per session), a
/// HOST column first.
pub(super) fn ls_table(
    sessions: &[SessionInfo],
    hosts: Option<&[&str]>,
    now: std::time::SystemTime,
    color: bool,
) -> String {
    let host_cell = |h: &str| match hosts {
        Some(_) => format!("{h:<12} "),
        None => String::new(),
    };
    let mut out = format!(
        "{}{:<32} {:<24} {:<22} {:<18} {:<28} {:>6} {:>12} {:>9} {:>9}  UPDATED\n",
        host_cell("HOST"),
        "ID",
        "NAME",
        "STATUS",
        "OUTCOME",
        "MODEL",
        "EVENTS",
        "TOKENS",
        "CLIENTS",
        "COST"
    );
    for (i, s) in sessions.iter().enumerate() {
        let host = hosts.and_then(|h| h.get(i)).copied().unwrap_or("");
        let (status, red) = status_text(s);
        // Failures and unsandboxed sessions (`sandbox = "none"`) stand out in red.
        let (red, reset) = if red && color {
            ("\x1b[31;1m", "\x1b[0m")
        } else {
            ("", "")
        };
        out.push_str(&format!(
            "{red}{}{:<32} {:<24} {:<22} {:<18} {:<28} {:>6} {:>12} {:>9} {:>9}  {}{reset}\n",
            host_cell(host),
            s.id,
            name_or_title(s),
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
            ago(&s.updated_at, now)
        ));
    }
    out
}

/// "3m ago" from an RFC 3339 time; the time itself when it does not parse.
fn ago(t: &str, now: std::time::SystemTime) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(t) else {
        return t.to_string();
    };
    match now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0) {
        s @ 0..60 => format!("{s}s ago"),
        s @ 60..3600 => format!("{}m ago", s / 60),
        s @ 3600..86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

/// Whether stdout takes colours: a terminal, and NO_COLOR unset.
pub(super) fn color_out() -> bool {
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
                thread: None,
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
    let info = c
        .request::<rpc::SessionGet>(SessionParams { session })
        .await?;
    // An idle session has nothing to stop: record nothing. (A turn that starts between this
    // check and the request below is interrupted, which is what was asked for.)
    if !has_work_to_interrupt(&info) {
        eprintln!(
            "{} is {}: nothing to interrupt, nothing recorded",
            label(&info),
            info.status.as_str()
        );
        return Ok(ExitCode::from(1));
    }
    let interrupted = c
        .request::<rpc::SessionInterrupt>(Interrupt {
            session: info.id.clone(),
            thread: None,
        })
        .await?;
    if interrupted.was_running {
        eprintln!("interrupted {}", label(&info));
    } else {
        eprintln!(
            "{}: dropped the calls waiting for an answer; the next message starts fresh",
            label(&info)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A running turn, or calls waiting on approval / custom results (the interrupt drops them).
fn has_work_to_interrupt(info: &SessionInfo) -> bool {
    match info.status {
        SessionStatus::Running | SessionStatus::Rescheduling => true,
        SessionStatus::Idle => matches!(info.stop_reason, Some(StopReason::RequiresAction { .. })),
        SessionStatus::Terminated => false,
    }
}

pub async fn rm(
    session: String,
    archive: bool,
    keep_branch: bool,
    delete_branch: bool,
) -> CmdResult {
    let mut c = connect().await?;
    if archive {
        let info = c
            .request::<rpc::SessionArchive>(SessionParams { session })
            .await?;
        eprintln!("archived {}", info.id);
        return Ok(ExitCode::SUCCESS);
    }
    let info = c
        .request::<rpc::SessionGet>(SessionParams { session })
        .await?;
    // Asked before anything is deleted, so a wrong answer or a script without the flag
    // loses nothing. (Over --remote the workspace is not on this machine: git is not run.)
    let worktree = (!client::is_remote())
        .then(|| super::worktree::of_workspace(std::path::Path::new(&info.workspace)))
        .flatten();
    let choice = match &worktree {
        Some(wt) => Some(super::worktree::choose(
            wt,
            &label(&info),
            keep_branch,
            delete_branch,
        )?),
        None => None,
    };
    // The daemon stops the session's tools before it answers, so the worktree is quiet.
    let deleted = c
        .request::<rpc::SessionDelete>(SessionParams {
            session: info.id.clone(),
        })
        .await?;
    eprintln!("deleted {}", deleted.id);
    if let (Some(wt), Some(choice)) = (worktree, choice) {
        use super::worktree::BranchChoice;
        if choice == BranchChoice::Keep {
            match super::worktree::commit_leftovers(&wt, &info.id) {
                Ok(true) => eprintln!("committed its uncommitted work to {}", wt.branch),
                Ok(false) => {}
                Err(e) => {
                    eprintln!(
                        "could not commit the uncommitted work to {} ({e}); the worktree {} \
                         stays so nothing is lost: `git worktree remove` it when done",
                        wt.branch,
                        wt.path.display()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
        super::worktree::remove(&wt, choice == BranchChoice::Delete);
        match choice {
            BranchChoice::Keep => eprintln!(
                "removed the worktree {}; kept branch {} (`git log {}`)",
                wt.path.display(),
                wt.branch,
                wt.branch
            ),
            BranchChoice::Delete => eprintln!(
                "removed the worktree {} and branch {}",
                wt.path.display(),
                wt.branch
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tether diff SESSION`: what a `--worktree` session changed since its branch point.
pub async fn diff(session: String) -> CmdResult {
    if client::is_remote() {
        return Err(usage(
            "tether diff runs git on this machine; over --remote run it on the remote host".into(),
        ));
    }
    let mut c = connect().await?;
    let info = c
        .request::<rpc::SessionGet>(SessionParams { session })
        .await?;
    let Some(wt) = super::worktree::of_workspace(std::path::Path::new(&info.workspace)) else {
        return Err(usage(format!(
            "session {} does not work in a --worktree git worktree, so there is no branch point \
             to compare with; its workspace is {} (`git -C {} diff` if it is a repository)",
            label(&info),
            info.workspace,
            info.workspace
        )));
    };
    use std::io::Write;
    let patch = super::worktree::diff(&wt, color_out())?;
    if patch.is_empty() {
        eprintln!(
            "no changes on {} since {}",
            wt.branch,
            wt.base.get(..12).unwrap_or(&wt.base)
        );
    }
    let _ = std::io::stdout().write_all(patch.as_bytes());
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use tether_proto::SessionUsage;

    use super::*;

    fn at(t: &str) -> SystemTime {
        humantime::parse_rfc3339_weak(t).unwrap()
    }

    fn session(id: &str, created: &str) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            object_type: "session".into(),
            name: None,
            title: None,
            status: SessionStatus::Idle,
            stop_reason: Some(StopReason::EndTurn),
            model: "anthropic/claude-sonnet-4-6".into(),
            workspace: "/w".into(),
            created_at: created.into(),
            updated_at: created.into(),
            archived_at: None,
            last_seq: 3,
            usage: SessionUsage::default(),
            attached_clients: 0,
            read_only_clients: 0,
            forked_from: None,
            agent: None,
            environment_id: None,
            sandbox: None,
            outcome_evaluations: Vec::new(),
            deployment_id: None,
            context_window: None,
            waiting_checkpoints: 0,
        }
    }

    #[test]
    fn ls_lists_newest_first_with_titles_and_relative_times() {
        let mut old = session("sesn_01OLD", "2026-12-01T10:00:00.000Z");
        old.name = Some("build".into());
        let mut new = session("sesn_02NEW", "2026-12-01T11:57:00.000Z");
        new.title = Some("Fix the flaky reconnect test in the TUI client".into());
        let mut sessions = vec![old, new];
        newest_first(&mut sessions);
        let now = at("2026-12-01T12:00:00.000Z");
        let table = ls_table(&sessions, None, now, false);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].starts_with("sesn_02NEW"), "{table}");
        assert!(
            lines[1].contains("\"Fix the flaky reconne…\""),
            "the title stands in for the missing name: {table}"
        );
        assert!(lines[1].ends_with("3m ago"), "{table}");
        assert!(
            lines[2].contains(" build ") && lines[2].ends_with("2h ago"),
            "{table}"
        );
        assert_eq!(
            ago("2026-12-01T12:00:00Z", now + Duration::from_secs(86400 * 3)),
            "3d ago"
        );
        assert_eq!(ago("yesterday", now), "yesterday");
    }

    #[test]
    fn an_interrupted_session_is_not_drawn_like_a_failure() {
        let mut s = session("sesn_1", "2026-12-01T10:00:00.000Z");
        s.stop_reason = Some(StopReason::Interrupted);
        assert_eq!(status_text(&s), ("idle, interrupted".to_string(), false));
        let table = ls_table(&[s.clone()], None, at("2026-12-01T10:00:05Z"), true);
        assert!(!table.contains("\x1b[31"), "no red: {table:?}");
        s.stop_reason = Some(StopReason::Error);
        assert_eq!(status_text(&s), ("✗ idle (error)".to_string(), true));
        let table = ls_table(&[s], None, at("2026-12-01T10:00:05Z"), true);
        assert!(table.contains("\x1b[31;1msesn_1"), "{table:?}");
    }

    #[test]
    fn send_says_whether_it_started_or_queued_and_how_to_follow() {
        let started = delivery_text("q", false, false);
        assert!(
            started.starts_with("message sent: q started a turn"),
            "{started}"
        );
        let queued = delivery_text("q", true, true);
        assert!(queued.starts_with("outcome queued: q is busy"), "{queued}");
        assert!(
            queued.contains("`tether attach q`") && queued.contains("`tether logs -f q`"),
            "{queued}"
        );
    }

    #[test]
    fn only_a_turn_or_waiting_calls_can_be_interrupted() {
        let mut s = session("sesn_1", "2026-12-01T10:00:00.000Z");
        assert!(!has_work_to_interrupt(&s));
        s.stop_reason = Some(StopReason::RequiresAction { event_ids: vec![] });
        assert!(has_work_to_interrupt(&s));
        s.status = SessionStatus::Running;
        s.stop_reason = None;
        assert!(has_work_to_interrupt(&s));
    }

    #[test]
    fn sessions_work_in_the_current_directory_unless_told_otherwise() {
        let cwd = Some(std::path::PathBuf::from("/home/me/project"));
        let opts = SessionOpts::default();
        let here = Workplace::Dir("/home/me/project".into());
        assert_eq!(workplace(&opts, false, None, cwd.clone()).unwrap(), here);
        assert_eq!(
            workplace(&opts, false, Some("cwd"), cwd.clone()).unwrap(),
            here
        );
        assert_eq!(
            workplace(&opts, false, Some("private"), cwd.clone()).unwrap(),
            Workplace::Private
        );
        // A remote daemon cannot use this machine's directory.
        assert_eq!(
            workplace(&opts, true, None, cwd.clone()).unwrap(),
            Workplace::Private
        );
        let private = SessionOpts {
            private: true,
            ..SessionOpts::default()
        };
        assert_eq!(
            workplace(&private, false, None, cwd.clone()).unwrap(),
            Workplace::Private
        );
        let dir = SessionOpts {
            dir: Some("/srv/x".into()),
            ..SessionOpts::default()
        };
        assert_eq!(
            workplace(&dir, false, Some("private"), cwd.clone()).unwrap(),
            Workplace::Dir("/srv/x".into())
        );
        let worktree = SessionOpts {
            worktree: true,
            ..SessionOpts::default()
        };
        assert_eq!(
            workplace(&worktree, false, None, cwd.clone()).unwrap(),
            Workplace::Worktree("/home/me/project".into())
        );
        let e = workplace(&worktree, true, None, cwd.clone()).unwrap_err();
        assert!(e.to_string().contains("--remote"), "{e}");
        let e = workplace(&opts, false, Some("scratch"), cwd).unwrap_err();
        assert!(
            e.to_string().contains("expected \"cwd\" or \"private\""),
            "{e}"
        );
    }
}
