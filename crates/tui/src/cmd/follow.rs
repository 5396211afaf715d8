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

/// A line typed while attached: a message, or a command.
async fn handle_input(c: &mut Client, session_id: &str, line: &str) -> Result<(), ClientError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(());
    }
    let session = session_id.to_string();
    match line {
        "/interrupt" => c
            .request::<rpc::SessionInterrupt>(Interrupt {
                session,
                thread: None,
            })
            .await
            .map(|_| ()),
        _ => c
            .request::<rpc::SessionSend>(SendMessage {
                thread: None,
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
    mut input: Option<tokio::sync::mpsc::Receiver<String>>,
) -> Result<Option<StopReason>, ClientError> {
    let attach = |after_seq| Attach {
        thread: None,
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
