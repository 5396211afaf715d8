//! The connection task of the session view: loads the tail of the log, attaches from the last
//! seq, forwards pushes to the UI, runs the UI's requests, and reconnects with backoff and
//! jitter when the daemon goes away, resuming from the last seq it forwarded (so nothing is
//! shown twice or lost).
//!
//! A multi-agent session's view may show a child thread's stream instead of the primary's:
//! the primary's connection then stays attached (thread events, approvals from any thread),
//! and a second task like the first follows the child on its own connection; what it reports
//! comes wrapped in [`NetMsg::Thread`].

use std::time::Duration;

use tether_proto::method::{
    AnswerCheckpoint, Attach, CustomToolResult, Interrupt, ListThreads, ListWorkflowRuns, Order,
    ReadEvents, SearchEvents, SendMessage, SessionParams, ToolConfirm, rpc,
};
use tether_proto::thread::SessionThread;
use tether_proto::{
    ConfirmationResult, ContentBlock, Delta, ErrorCode, Event, Paths, ServerFrame, SessionInfo,
    Snapshot,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::client::{Client, ClientError};

/// Events loaded per page (the tail on attach, then older pages on demand).
pub const PAGE: u32 = 200;

/// What the UI asks of the daemon (the update function's `Effect::Net`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Send(String),
    Interrupt,
    Confirm {
        tool_use_id: String,
        allow: bool,
        /// With a denial: why, for the model.
        deny_message: Option<String>,
    },
    /// A custom tool's result, typed in the modal.
    CustomResult {
        tool_use_id: String,
        text: String,
        is_error: bool,
    },
    LoadOlder {
        before_seq: u64,
    },
    /// Find the newest match older than `before_seq` in the whole log and load up to it.
    SearchOlder {
        query: String,
        before_seq: u64,
    },
    /// Ask `thread.list` again (answered with `NetMsg::Threads`).
    ListThreads,
    /// Follow this child thread's stream (`sthr_...`) beside the primary's; None stops it.
    ViewThread(Option<String>),
    /// Answer a workflow checkpoint (`workflow.answer`).
    AnswerCheckpoint {
        run: String,
        task: String,
        approve: bool,
        note: Option<String>,
    },
    /// Answer an MCP server's question (`session.elicitation_answer`).
    AnswerElicitation {
        elicitation_id: String,
        action: tether_proto::elicitation::ElicitationAction,
        content: Option<serde_json::Value>,
    },
    /// A command about the viewed child thread's stream (send, interrupt, older pages).
    InThread {
        thread: String,
        cmd: Box<Cmd>,
    },
}

/// The connection as the status bar shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnState {
    Connecting,
    Connected,
    Reconnecting {
        attempt: u32,
        retry_in_ms: u64,
        reason: String,
    },
    /// Gave up, or the session is gone.
    Lost(String),
}

/// What the connection task reports.
#[derive(Debug, Clone)]
pub enum NetMsg {
    Info(Box<SessionInfo>),
    /// The newest page of the log (ascending), loaded before attaching.
    Tail {
        events: Vec<Event>,
        has_older: bool,
    },
    Older {
        events: Vec<Event>,
        has_older: bool,
    },
    /// The answer to `Cmd::SearchOlder`: the match's seq (its events came as `Older`
    /// first), or none in the whole log.
    SearchOlder {
        query: String,
        seq: Option<u64>,
    },
    Event(Box<Event>),
    Delta(Delta),
    Snapshot(Snapshot),
    Conn(ConnState),
    /// A request failed; shown in the footer.
    Failed(String),
    /// The session's threads (`thread.list`); None when this tetherd has no threads.
    Threads(Option<Vec<SessionThread>>),
    /// The session's open workflow runs (`workflow.list`), asked on every (re)connect.
    Runs(Vec<tether_proto::workflow::WorkflowRun>),
    /// What the task following a child thread reports.
    Thread {
        thread: String,
        msg: Box<NetMsg>,
    },
}

/// Where a connection task reports: the primary's as it is, a child thread's wrapped.
#[derive(Clone)]
struct Out {
    tx: UnboundedSender<NetMsg>,
    thread: Option<String>,
}

impl Out {
    /// False when the UI is gone.
    fn send(&self, msg: NetMsg) -> bool {
        self.tx
            .send(match &self.thread {
                None => msg,
                Some(t) => NetMsg::Thread {
                    thread: t.clone(),
                    msg: Box::new(msg),
                },
            })
            .is_ok()
    }
}

/// Starts the task; it ends when the returned sender is dropped (the UI detached).
pub fn spawn(
    client: Client,
    paths: Paths,
    info: SessionInfo,
    read_only: bool,
    out: UnboundedSender<NetMsg>,
) -> UnboundedSender<Cmd> {
    let (tx, rx) = unbounded_channel();
    let (primary_tx, primary_rx) = unbounded_channel();
    let stream = Stream {
        paths: paths.clone(),
        id: info.id.clone(),
        read_only,
    };
    let primary = Out {
        tx: out.clone(),
        thread: None,
    };
    tokio::spawn(run(Some(client), stream.clone(), primary, primary_rx));
    tokio::spawn(route(rx, primary_tx, stream, out));
    tx
}

/// What a connection task follows: the session, and (for a child thread) which thread.
#[derive(Clone)]
struct Stream {
    paths: Paths,
    id: String,
    read_only: bool,
}

/// Hands the UI's commands to the primary's task, or to the viewed child thread's (started
/// and stopped here); in order, so each task sees its commands as the UI sent them.
async fn route(
    mut rx: UnboundedReceiver<Cmd>,
    primary: UnboundedSender<Cmd>,
    stream: Stream,
    out: UnboundedSender<NetMsg>,
) {
    let mut child: Option<(String, UnboundedSender<Cmd>)> = None;
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::ViewThread(None) => child = None,
            Cmd::ViewThread(Some(thread)) => {
                if child.as_ref().is_some_and(|(t, _)| *t == thread) {
                    continue;
                }
                // Dropping the old sender ends the old task.
                let (tx, crx) = unbounded_channel();
                let o = Out {
                    tx: out.clone(),
                    thread: Some(thread.clone()),
                };
                tokio::spawn(run(None, stream.clone(), o, crx));
                child = Some((thread, tx));
            }
            Cmd::InThread { thread, cmd } => match &child {
                Some((t, tx)) if *t == thread => {
                    let _ = tx.send(*cmd);
                }
                // The view moved on meanwhile: the command was for a stream no longer shown.
                _ => {}
            },
            cmd => {
                if primary.send(cmd).is_err() {
                    return;
                }
            }
        }
    }
}

fn lost(e: &ClientError) -> bool {
    matches!(e, ClientError::Disconnected(_)) || e.code_is(ErrorCode::ShuttingDown)
}

/// Delay before reconnect attempt `n` (1-based): exponential, capped at 5 s, with jitter so a
/// crowd of clients doesn't hammer a restarting daemon in lockstep.
pub fn backoff(n: u32, seed: u64) -> Duration {
    let base = 100u64.saturating_mul(1 << n.min(6)).min(5000);
    let jitter = seed % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

async fn run(client: Option<Client>, stream: Stream, out: Out, mut rx: UnboundedReceiver<Cmd>) {
    let Stream {
        paths,
        id,
        read_only,
    } = stream;
    let mut client = client;
    let mut last: u64 = 0;
    let mut loaded_tail = false;
    let mut attempt = 0u32;
    loop {
        let mut c = match client.take() {
            Some(c) => c,
            None => match Client::connect_existing(&paths).await {
                Ok(c) => c,
                Err(e) => {
                    attempt += 1;
                    let wait = backoff(attempt, seed());
                    let _ = out.send(NetMsg::Conn(ConnState::Reconnecting {
                        attempt,
                        retry_in_ms: wait.as_millis() as u64,
                        reason: short(&e.to_string()),
                    }));
                    // The UI may detach meanwhile.
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        cmd = rx.recv() => match cmd {
                            None => return,
                            Some(_) => {
                                let _ = out.send(NetMsg::Failed("not connected to tetherd: try again once it is back".into()));
                                continue;
                            }
                        }
                    }
                }
            },
        };
        match session(
            &mut c,
            &id,
            out.thread.as_deref(),
            read_only,
            &mut last,
            &mut loaded_tail,
            &out,
            &mut rx,
        )
        .await
        {
            Ok(()) => return,
            Err(e) if lost(&e) => {
                attempt = 1;
                let wait = backoff(attempt, seed());
                let _ = out.send(NetMsg::Conn(ConnState::Reconnecting {
                    attempt,
                    retry_in_ms: wait.as_millis() as u64,
                    reason: short(&e.to_string()),
                }));
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                let _ = out.send(NetMsg::Conn(ConnState::Lost(e.to_string())));
                // Stay around so the UI can still detach cleanly; nothing more to do.
                while rx.recv().await.is_some() {}
                return;
            }
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// One connection's life: (tail load,) attach, forward. Ok(()) when the UI went away.
#[allow(clippy::too_many_arguments)]
async fn session(
    c: &mut Client,
    id: &str,
    thread: Option<&str>,
    read_only: bool,
    last: &mut u64,
    loaded_tail: &mut bool,
    out: &Out,
    rx: &mut UnboundedReceiver<Cmd>,
) -> Result<(), ClientError> {
    if !*loaded_tail {
        // The newest page first, so the first frame costs the same for any log length.
        let page = c
            .request::<rpc::SessionEvents>(ReadEvents {
                thread: thread.map(str::to_string),
                session: id.to_string(),
                after_seq: None,
                before_seq: None,
                limit: PAGE,
                order: Order::Desc,
            })
            .await?;
        let mut events = page.data;
        events.reverse();
        *last = events.last().map(|e| e.seq).unwrap_or(0);
        let has_older = events.first().is_some_and(|e| e.seq > 1);
        let _ = out.send(NetMsg::Tail { events, has_older });
        *loaded_tail = true;
    }
    let attach = |after_seq| Attach {
        thread: thread.map(str::to_string),
        session: id.to_string(),
        after_seq,
        read_only,
    };
    let info = c.request::<rpc::SessionAttach>(attach(*last)).await?;
    let _ = out.send(NetMsg::Info(Box::new(info)));
    let _ = out.send(NetMsg::Conn(ConnState::Connected));
    if thread.is_none() {
        // Whether the session has threads (and which) survives no reconnect unasked.
        list_threads(c, id, out).await?;
        // Runs started before the loaded events: their state so far.
        list_runs(c, id, out).await?;
    }
    // A child thread's events may name the session or the thread.
    let ours = |sid: &str| sid == id || thread.is_some_and(|t| t == sid);
    // Clients come and go without an event: the header's count is asked for now and then.
    let mut refresh =
        tokio::time::interval_at(tokio::time::Instant::now() + INFO_REFRESH, INFO_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = refresh.tick(), if thread.is_none() => {
                match c
                    .request::<rpc::SessionGet>(SessionParams { session: id.to_string() })
                    .await
                {
                    Ok(info) => {
                        let _ = out.send(NetMsg::Info(Box::new(info)));
                    }
                    Err(e) if lost(&e) => return Err(e),
                    // Not worth a word: the next event or refresh asks again.
                    Err(_) => {}
                }
            }
            push = c.next_push() => match push? {
                // Events at or below the last seq were already forwarded (a replay after a resync).
                ServerFrame::Event(e) if ours(&e.session_id) && e.seq > *last => {
                    *last = e.seq;
                    let status_change = matches!(
                        e.body,
                        tether_proto::EventBody::SessionStatusIdle { .. } | tether_proto::EventBody::SessionStatusRunning {}
                    );
                    let _ = out.send(NetMsg::Event(e));
                    if status_change && thread.is_none() {
                        // Refresh the attached-client count and usage now and then.
                        if let Ok(info) = c.request::<rpc::SessionGet>(SessionParams { session: id.to_string() }).await {
                            let _ = out.send(NetMsg::Info(Box::new(info)));
                        }
                    }
                }
                ServerFrame::Delta(d) if ours(&d.session_id) => {
                    let _ = out.send(NetMsg::Delta(d));
                }
                ServerFrame::Snapshot(s) if ours(&s.session_id) => {
                    let _ = out.send(NetMsg::Snapshot(s));
                }
                ServerFrame::Resync(r) if ours(&r.session_id) => {
                    // Fell behind: attach again from what we have.
                    *last = (*last).max(r.from_seq.saturating_sub(1));
                    let info = c.request::<rpc::SessionAttach>(attach(*last)).await?;
                    let _ = out.send(NetMsg::Info(Box::new(info)));
                }
                _ => {}
            },
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return Ok(()) };
                run_cmd(c, id, thread, cmd, out).await?;
            }
        }
    }
}

/// How often the view asks for the session's header (attached clients, usage) between events.
const INFO_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Events loaded above a match found by the daemon, so it shows with some context.
const SEARCH_CONTEXT: u64 = 3;

/// `thread.list` for the view. A daemon without threads (or any other refusal) just means no
/// thread panel: nothing to show the user.
async fn list_threads(c: &mut Client, id: &str, out: &Out) -> Result<(), ClientError> {
    match c
        .request::<rpc::ThreadList>(ListThreads {
            session: id.to_string(),
            statuses: Vec::new(),
            all: false,
        })
        .await
    {
        Ok(list) => {
            let _ = out.send(NetMsg::Threads(Some(list.data)));
            Ok(())
        }
        Err(e) if lost(&e) => Err(e),
        Err(_) => {
            let _ = out.send(NetMsg::Threads(None));
            Ok(())
        }
    }
}

/// `workflow.list` for the view: the session's open runs. A daemon without workflows just
/// means no runs to show.
async fn list_runs(c: &mut Client, id: &str, out: &Out) -> Result<(), ClientError> {
    match c
        .request::<rpc::WorkflowList>(ListWorkflowRuns {
            session: Some(id.to_string()),
            all: false,
        })
        .await
    {
        Ok(list) => {
            let _ = out.send(NetMsg::Runs(list.data));
            Ok(())
        }
        Err(e) if lost(&e) => Err(e),
        Err(_) => Ok(()),
    }
}

/// Asks the daemon for the newest match older than `before_seq`; when there is one, loads
/// everything from just above it up to what the view has (one contiguous transcript), then says
/// where it is.
async fn search_older(
    c: &mut Client,
    id: &str,
    thread: Option<&str>,
    query: String,
    before_seq: u64,
    out: &Out,
) -> Result<(), ClientError> {
    if thread.is_some() {
        // `session.search` covers the primary's log only: a child's search stays within
        // what is loaded.
        let _ = out.send(NetMsg::SearchOlder { query, seq: None });
        return Ok(());
    }
    let page = c
        .request::<rpc::SessionSearch>(SearchEvents {
            session: id.to_string(),
            query: query.clone(),
            before_seq: Some(before_seq),
            limit: 1,
        })
        .await?;
    let Some(seq) = page.data.first().map(|e| e.seq) else {
        let _ = out.send(NetMsg::SearchOlder { query, seq: None });
        return Ok(());
    };
    let mut events = Vec::new();
    let mut after = seq.saturating_sub(SEARCH_CONTEXT + 1);
    loop {
        let page = c
            .request::<rpc::SessionEvents>(ReadEvents {
                thread: thread.map(str::to_string),
                session: id.to_string(),
                after_seq: Some(after),
                before_seq: Some(before_seq),
                limit: 5000,
                order: Order::Asc,
            })
            .await?;
        after = page.data.last().map(|e| e.seq).unwrap_or(after);
        let done = page.next.is_none() || page.data.is_empty();
        events.extend(page.data);
        if done {
            break;
        }
    }
    let has_older = events.first().is_some_and(|e| e.seq > 1);
    let _ = out.send(NetMsg::Older { events, has_older });
    let _ = out.send(NetMsg::SearchOlder {
        query,
        seq: Some(seq),
    });
    Ok(())
}

async fn run_cmd(
    c: &mut Client,
    id: &str,
    thread: Option<&str>,
    cmd: Cmd,
    out: &Out,
) -> Result<(), ClientError> {
    let session = id.to_string();
    if let Cmd::SearchOlder { query, before_seq } = cmd {
        return match search_older(c, id, thread, query, before_seq, out).await {
            Err(e) if !lost(&e) => {
                let _ = out.send(NetMsg::Failed(format!("search failed: {e}")));
                Ok(())
            }
            r => r,
        };
    }
    // Typed per method; only a page of older events has an answer the view needs.
    let answer = match &cmd {
        Cmd::Send(text) => c
            .request::<rpc::SessionSend>(SendMessage {
                thread: thread.map(str::to_string),
                session,
                content: vec![ContentBlock::text(text.clone())],
                model: None,
            })
            .await
            .map(|_| None),
        Cmd::Interrupt => c
            .request::<rpc::SessionInterrupt>(Interrupt {
                session,
                thread: thread.map(str::to_string),
            })
            .await
            .map(|_| None),
        Cmd::Confirm {
            tool_use_id,
            allow,
            deny_message,
        } => c
            .request::<rpc::ToolConfirm>(ToolConfirm {
                session,
                tool_use_id: tool_use_id.clone(),
                result: if *allow {
                    ConfirmationResult::Allow
                } else {
                    ConfirmationResult::Deny
                },
                deny_message: deny_message.clone(),
            })
            .await
            .map(|_| None),
        Cmd::CustomResult {
            tool_use_id,
            text,
            is_error,
        } => c
            .request::<rpc::CustomToolResult>(CustomToolResult {
                session,
                custom_tool_use_id: tool_use_id.clone(),
                content: vec![ContentBlock::text(text.clone())],
                is_error: *is_error,
            })
            .await
            .map(|_| None),
        Cmd::LoadOlder { before_seq } => c
            .request::<rpc::SessionEvents>(ReadEvents {
                thread: thread.map(str::to_string),
                session,
                after_seq: None,
                before_seq: Some(*before_seq),
                limit: PAGE,
                order: Order::Desc,
            })
            .await
            .map(Some),
        Cmd::ListThreads => return list_threads(c, id, out).await,
        Cmd::AnswerCheckpoint {
            run,
            task,
            approve,
            note,
        } => c
            .request::<rpc::WorkflowAnswer>(AnswerCheckpoint {
                run: run.clone(),
                task: task.clone(),
                approve: *approve,
                note: note.clone(),
            })
            .await
            .map(|_| None),
        Cmd::AnswerElicitation {
            elicitation_id,
            action,
            content,
        } => c
            .request::<rpc::SessionElicitationAnswer>(
                tether_proto::elicitation::AnswerElicitation {
                    session,
                    // Found by id among the session's threads.
                    thread: None,
                    elicitation_id: elicitation_id.clone(),
                    action: *action,
                    content: content.clone(),
                },
            )
            .await
            .map(|_| None),
        // The router's business; never sent to a connection task.
        Cmd::SearchOlder { .. } | Cmd::ViewThread(_) | Cmd::InThread { .. } => return Ok(()),
    };
    match answer {
        Ok(page) => {
            if let Some(page) = page {
                let mut events = page.data;
                events.reverse();
                let has_older = events.first().is_some_and(|e| e.seq > 1);
                let _ = out.send(NetMsg::Older { events, has_older });
            }
            Ok(())
        }
        Err(e) if lost(&e) => {
            if let Cmd::Send(_) = cmd {
                let _ = out.send(NetMsg::Failed("the connection dropped while sending; check the transcript before sending again".into()));
            }
            Err(e)
        }
        Err(e) => {
            let _ = out.send(NetMsg::Failed(e.to_string()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        for n in 1..12 {
            for seed in [0, 7, 12345, u64::MAX] {
                let d = backoff(n, seed).as_millis() as u64;
                let base = (100u64 << n.min(6)).min(5000);
                assert!(
                    d >= base / 2 && d <= base,
                    "attempt {n}: {d} ms outside [{}, {base}]",
                    base / 2
                );
            }
        }
        assert!(backoff(10, 0) <= Duration::from_secs(5));
        assert_ne!(backoff(3, 1), backoff(3, 2), "jitter must spread clients");
    }
}
