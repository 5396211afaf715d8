//! Threads of multi-agent sessions on the command line: `tether threads SESSION`, and the
//! `--thread NAME` of `logs`, `attach`, `send` and `interrupt`. A thread is named by its
//! agent's name or its `sthr_` id; a name the session doesn't have gets an error that lists the
//! ones it does.

use std::process::ExitCode;

use tether_proto::method::{
    Interrupt, ListThreads, Order, ReadEvents, SendMessage, SessionParams, ThreadParams, rpc,
};
use tether_proto::thread::SessionThread;
use tether_proto::{ContentBlock, ErrorBody, ErrorCode, SessionInfo, SessionStatus, StopReason};

use super::follow::{follow_stream, stdin_lines};
use super::{CmdResult, connect};
use crate::client::{Client, ClientError};
use crate::render::{Printer, stop_reason_text};

/// `tether threads SESSION`: the primary, then the children in creation order.
pub async fn list(session: String, json: bool) -> CmdResult {
    let mut c = connect().await?;
    let info = session_info(&mut c, session).await?;
    let threads = all_threads(&mut c, &info).await?;
    if json {
        for t in &threads {
            println!("{}", serde_json::to_string(t).unwrap_or_default());
        }
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", table(&threads));
    Ok(ExitCode::SUCCESS)
}

/// The `tether threads` table.
pub fn table(threads: &[SessionThread]) -> String {
    let mut out = format!(
        "{:<32} {:<20} {:<36} {:<22} {:>9}\n",
        "ID", "NAME", "MODEL", "STATUS", "COST"
    );
    for t in threads {
        let name = match &t.parent_thread_id {
            None if t.agent_name() == "primary" => "primary".to_string(),
            None => format!("{} (primary)", t.agent_name()),
            Some(_) => t.agent_name().to_string(),
        };
        out.push_str(&format!(
            "{:<32} {:<20} {:<36} {:<22} {:>9}\n",
            t.id,
            name,
            t.agent.model_id(),
            status_text(t),
            t.usage
                .as_ref()
                .and_then(|u| u.tokens.cost_usd)
                .map(|c| format!("${c:.4}"))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    out
}

fn status_text(t: &SessionThread) -> String {
    let s = match (t.status, &t.stop_reason) {
        (SessionStatus::Idle, Some(StopReason::RequiresAction { .. })) => {
            "waiting for input".to_string()
        }
        (SessionStatus::Idle, Some(r)) if !r.is_success() => {
            format!("idle ({})", stop_reason_text(r))
        }
        (st, _) => st.as_str().to_string(),
    };
    if t.archived_at.is_some() {
        format!("{s}, archived")
    } else {
        s
    }
}

async fn session_info(c: &mut Client, session: String) -> Result<SessionInfo, ClientError> {
    c.request::<rpc::SessionGet>(SessionParams { session })
        .await
}

async fn all_threads(
    c: &mut Client,
    info: &SessionInfo,
) -> Result<Vec<SessionThread>, ClientError> {
    Ok(c.request::<rpc::ThreadList>(ListThreads {
        session: info.id.clone(),
        statuses: Vec::new(),
        all: true,
    })
    .await?
    .data)
}

/// The thread `name` (agent name or `sthr_` id) of the session. Unknown: a not_found error
/// that lists the session's threads.
pub async fn resolve(
    c: &mut Client,
    info: &SessionInfo,
    name: &str,
) -> Result<SessionThread, ClientError> {
    match c
        .request::<rpc::ThreadGet>(ThreadParams {
            session: info.id.clone(),
            thread: name.to_string(),
        })
        .await
    {
        Err(e) if e.code_is(ErrorCode::NotFound) => {
            // The session exists (we have its info): it is the thread that doesn't.
            let known = all_threads(c, info).await.unwrap_or_default();
            Err(ClientError::Daemon(ErrorBody::new(
                ErrorCode::NotFound,
                unknown_thread(&label(info), name, &known),
            )))
        }
        r => r,
    }
}

/// What `--thread NAME` says when the session has no such thread.
pub fn unknown_thread(session: &str, name: &str, known: &[SessionThread]) -> String {
    let names: Vec<String> = known
        .iter()
        .map(|t| match &t.parent_thread_id {
            None => format!("{} (primary, {})", t.agent_name(), t.id),
            Some(_) => format!("{} ({})", t.agent_name(), t.id),
        })
        .collect();
    if known.iter().all(|t| t.parent_thread_id.is_none()) {
        return format!(
            "session {session} has no thread {name:?}: it has only its primary thread \
             (a single-agent session, or its agent has not started any yet)"
        );
    }
    format!(
        "session {session} has no thread {name:?}; its threads: {} (`tether threads {session}` lists them)",
        names.join(", ")
    )
}

fn label(info: &SessionInfo) -> String {
    info.name.clone().unwrap_or_else(|| info.id.clone())
}

/// `tether logs SESSION --thread NAME [--follow]`.
pub async fn logs(
    session: String,
    thread: String,
    follow: bool,
    after: u64,
    json: bool,
) -> CmdResult {
    let mut c = connect().await?;
    let info = session_info(&mut c, session).await?;
    let t = resolve(&mut c, &info, &thread).await?;
    if follow {
        follow_stream(
            &mut c,
            &info.id,
            Some(&t.id),
            after,
            true,
            &mut Printer::watching(json),
            None,
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
                thread: Some(t.id.clone()),
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

/// `tether attach SESSION --thread NAME`: the TUI showing that thread first, or its stream
/// followed line by line (typed lines go to that thread).
pub async fn attach(session: String, thread: String, read_only: bool) -> CmdResult {
    let mut c = connect().await?;
    let info = session_info(&mut c, session).await?;
    let t = resolve(&mut c, &info, &thread).await?;
    if crate::screen::is_tty() {
        let child = t.parent_thread_id.is_some().then(|| t.id.clone());
        return crate::screen::attach_thread(c, info, read_only, child).await;
    }
    eprintln!(
        "attached to thread {} of {} ({}, {}){} — {}Ctrl-C detaches",
        t.agent_name(),
        label(&info),
        t.agent.model_id(),
        t.status.as_str(),
        if read_only { ", read-only" } else { "" },
        if read_only {
            ""
        } else {
            "type a line to send it to this thread, /interrupt to stop it; "
        }
    );
    let input = (!read_only).then(stdin_lines);
    follow_stream(
        &mut c,
        &info.id,
        Some(&t.id),
        0,
        read_only,
        &mut Printer::watching(false),
        None,
        input,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `tether threads SESSION --archive NAME`.
pub async fn archive(session: String, thread: String) -> CmdResult {
    let mut c = connect().await?;
    let info = session_info(&mut c, session).await?;
    let t = resolve(&mut c, &info, &thread).await?;
    let t = c
        .request::<rpc::ThreadArchive>(ThreadParams {
            session: info.id.clone(),
            thread: t.id,
        })
        .await?;
    eprintln!("archived thread {} ({})", t.agent_name(), t.id);
    Ok(ExitCode::SUCCESS)
}

/// `tether interrupt SESSION --thread NAME`: that thread only.
pub async fn interrupt(session: String, thread: String) -> CmdResult {
    let mut c = connect().await?;
    let info = session_info(&mut c, session).await?;
    let t = resolve(&mut c, &info, &thread).await?;
    let interrupted = c
        .request::<rpc::SessionInterrupt>(Interrupt {
            session: info.id.clone(),
            thread: Some(t.id.clone()),
        })
        .await?;
    if interrupted.was_running {
        eprintln!("interrupted thread {}", t.agent_name());
    } else {
        eprintln!(
            "thread {} was not running; recorded the interrupt anyway",
            t.agent_name()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tether send SESSION --thread NAME TEXT [--wait]`: a message to that thread.
pub async fn send(
    session: String,
    thread: String,
    text: String,
    wait: bool,
    json: bool,
) -> CmdResult {
    let mut c = connect().await?;
    let info = session_info(&mut c, session).await?;
    let t = resolve(&mut c, &info, &thread).await?;
    let ev = c
        .request::<rpc::SessionSend>(SendMessage {
            thread: Some(t.id.clone()),
            model: None,
            session: info.id.clone(),
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
    let reason = follow_stream(
        &mut c,
        &info.id,
        Some(&t.id),
        ev.seq,
        false,
        &mut Printer::new(json),
        Some(ev.seq),
        None,
    )
    .await?;
    Ok(if reason.as_ref().is_some_and(StopReason::is_success) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tether_proto::agent::AgentModel;
    use tether_proto::thread::ThreadAgent;

    use super::*;

    fn t(id: &str, name: &str, parent: Option<&str>, status: SessionStatus) -> SessionThread {
        SessionThread {
            id: id.into(),
            object_type: "session_thread".into(),
            session_id: "sesn_1".into(),
            parent_thread_id: parent.map(Into::into),
            agent: ThreadAgent::Inline {
                name: name.into(),
                description: None,
                system: None,
                model: AgentModel {
                    id: "openai/gpt-5.1".into(),
                    effort: None,
                    speed: None,
                },
                tools: vec![],
                mcp_servers: vec![],
                skills: vec![],
            },
            status,
            stats: None,
            usage: None,
            workflow_run_id: None,
            created_at: "2026-12-07T10:00:00Z".into(),
            updated_at: "2026-12-07T10:00:00Z".into(),
            archived_at: None,
            stop_reason: None,
            last_seq: 0,
        }
    }

    #[test]
    fn an_unknown_thread_name_lists_the_sessions_threads() {
        let known = [
            t("sthr_1", "coder", None, SessionStatus::Running),
            t("sthr_r", "reviewer", Some("sthr_1"), SessionStatus::Idle),
        ];
        let m = unknown_thread("demo", "reveiwer", &known);
        assert!(m.contains("no thread \"reveiwer\""), "{m}");
        assert!(
            m.contains("coder (primary, sthr_1), reviewer (sthr_r)"),
            "{m}"
        );
        assert!(m.contains("tether threads demo"), "{m}");
        let single = unknown_thread("demo", "x", &known[..1]);
        assert!(single.contains("only its primary thread"), "{single}");
    }

    #[test]
    fn the_table_names_the_primary_and_marks_waiting_threads() {
        let waiting = SessionThread {
            stop_reason: Some(StopReason::RequiresAction {
                event_ids: vec!["sevt_1".into()],
            }),
            ..t("sthr_r", "reviewer", Some("sthr_1"), SessionStatus::Idle)
        };
        let out = table(&[t("sthr_1", "coder", None, SessionStatus::Running), waiting]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ID"), "{out}");
        assert!(
            lines[1].contains("coder (primary)") && lines[1].contains("running"),
            "{out}"
        );
        assert!(
            lines[2].contains("reviewer") && lines[2].contains("waiting for input"),
            "{out}"
        );
        assert!(lines[2].contains("openai/gpt-5.1") && lines[2].trim_end().ends_with('-'));
    }
}
