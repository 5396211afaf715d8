//! Following a session from the CLI: attach, print its events as they come, send what the user
//! types, and survive a fall-behind (resync) or a lost connection (reconnect).

use tether_proto::method::{Attach, Interrupt, SendMessage, rpc};
use tether_proto::{ContentBlock, EventBody, ServerFrame, StopReason};

use crate::client::{Client, ClientError};
use crate::render::Printer;

/// Lines typed on stdin. A plain thread, not tokio's stdin: a blocking read must never keep
/// the runtime from shutting down.
pub(super) fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
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

/// A line typed while attached: a message, or a command (to the thread followed, if any).
async fn handle_input(
    c: &mut Client,
    session_id: &str,
    thread: Option<&str>,
    line: &str,
) -> Result<(), ClientError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(());
    }
    let session = session_id.to_string();
    match line {
        "/interrupt" => c
            .request::<rpc::SessionInterrupt>(Interrupt {
                session,
                thread: thread.map(str::to_string),
            })
            .await
            .map(|_| ()),
        _ => c
            .request::<rpc::SessionSend>(SendMessage {
                thread: thread.map(str::to_string),
                model: None,
                session,
                content: vec![ContentBlock::text(line)],
            })
            .await
            .map(|_| ()),
    }
}

/// Attaches and prints until the session goes idle after `idle_after` (or forever with None);
/// `printer` keeps what it saw (the latest outcome verdict).
/// Re-attaches from the last seen seq when the daemon says this client fell behind, and
/// reconnects (without starting a daemon) when the connection drops.
pub(super) async fn follow(
    c: &mut Client,
    session_id: &str,
    after_seq: u64,
    read_only: bool,
    printer: &mut Printer,
    idle_after: Option<u64>,
) -> Result<Option<StopReason>, ClientError> {
    follow_with_input(
        c, session_id, after_seq, read_only, printer, idle_after, None,
    )
    .await
}

/// [`follow`], also sending what the user types (`input`) to the session.
pub(super) async fn follow_with_input(
    c: &mut Client,
    session_id: &str,
    after_seq: u64,
    read_only: bool,
    printer: &mut Printer,
    idle_after: Option<u64>,
    input: Option<tokio::sync::mpsc::Receiver<String>>,
) -> Result<Option<StopReason>, ClientError> {
    follow_stream(
        c, session_id, None, after_seq, read_only, printer, idle_after, input,
    )
    .await
}

/// [`follow_with_input`] of one thread's stream (`sthr_...`; None: the primary's). A child
/// thread's stream ends a wait with its own `session.thread_status_idle`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn follow_stream(
    c: &mut Client,
    session_id: &str,
    thread: Option<&str>,
    after_seq: u64,
    read_only: bool,
    printer: &mut Printer,
    idle_after: Option<u64>,
    mut input: Option<tokio::sync::mpsc::Receiver<String>>,
) -> Result<Option<StopReason>, ClientError> {
    // A child thread's events may name the session or the thread.
    let ours = |sid: &str| sid == session_id || thread.is_some_and(|t| t == sid);
    let attach = |after_seq| Attach {
        thread: thread.map(str::to_string),
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
                    Some(line) => match handle_input(c, session_id, thread, &line).await {
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
            ServerFrame::Event(e) if ours(&e.session_id) => {
                if e.seq <= last {
                    continue;
                }
                last = e.seq;
                printer.event(&e);
                let idle = match &e.body {
                    EventBody::SessionStatusIdle { stop_reason } => Some(stop_reason),
                    // A child's own stream; cross-posts (naming another thread) don't count.
                    EventBody::SessionThreadStatusIdle { stop_reason, .. }
                        if thread.is_some()
                            && e.session_thread_id
                                .as_deref()
                                .is_none_or(|t| Some(t) == thread) =>
                    {
                        Some(stop_reason)
                    }
                    _ => None,
                };
                if let (Some(floor), Some(stop_reason)) = (idle_after, idle)
                    && e.seq > floor
                {
                    return Ok(Some(stop_reason.clone()));
                }
            }
            ServerFrame::Delta(d) if ours(&d.session_id) => printer.delta(&d),
            ServerFrame::Snapshot(s) if ours(&s.session_id) => printer.snapshot(&s),
            ServerFrame::Resync(r) if ours(&r.session_id) => {
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
