//! The local-socket server: handshake, request dispatch and attach streams.
//!
//! Each connection has one writer task fed by a bounded queue. Attach forwarders read the
//! session's broadcast and push into that queue; a client too slow to drain it makes its
//! broadcast receiver lag, and it is then told to resync instead of slowing the agent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tether_proto::method::{EventPage, Order};
use tether_proto::{
    Call, CaughtUp, ClientFrame, ErrorBody, ErrorCode, FrameDecoder, PROTOCOL_VERSION, Resync,
    ServerFrame, Welcome, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{broadcast, mpsc};

use crate::runtime::Runtime;
use crate::session::{Push, Session};

/// Frames queued for one client before its attach feeds start lagging.
const OUTBOUND_QUEUE: usize = 1024;
/// Events per page when replaying the log to an attaching client.
const REPLAY_PAGE: u32 = 2000;

pub async fn serve(listener: tokio::net::UnixListener, rt: Arc<Runtime>) {
    let my_uid = nix::unistd::geteuid().as_raw();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = rt.shutdown.cancelled() => return,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let rt = rt.clone();
        tokio::spawn(async move {
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == my_uid => {}
                Ok(cred) => {
                    tracing::warn!(
                        peer_uid = cred.uid(),
                        "refused a connection from another user"
                    );
                    let _ = reject(
                        stream,
                        ErrorBody::new(
                            ErrorCode::PermissionDenied,
                            "tetherd only accepts connections from the user it runs as",
                        ),
                    )
                    .await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read peer credentials; refusing");
                    return;
                }
            }
            rt.clients.fetch_add(1, Ordering::Relaxed);
            Connection::new(rt.clone()).run(stream).await;
            rt.clients.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn reject(mut stream: UnixStream, err: ErrorBody) -> std::io::Result<()> {
    if let Ok(bytes) = encode_frame(&ServerFrame::Error(err)) {
        stream.write_all(&bytes).await?;
    }
    stream.shutdown().await
}

struct Attachment {
    session: Arc<Session>,
    read_only: bool,
    task: tokio::task::JoinHandle<()>,
}

impl Attachment {
    /// Stops the feed and stops counting this client as attached.
    fn end(self) {
        self.task.abort();
        self.session.attached.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Connection {
    rt: Arc<Runtime>,
    attachments: HashMap<String, Attachment>,
}

impl Connection {
    fn new(rt: Arc<Runtime>) -> Self {
        Connection {
            rt,
            attachments: HashMap::new(),
        }
    }

    async fn run(mut self, stream: UnixStream) {
        let (mut reader, writer) = stream.into_split();
        let (out_tx, out_rx) = mpsc::channel::<ServerFrame>(OUTBOUND_QUEUE);
        let writer_task = tokio::spawn(write_loop(writer, out_rx));
        let mut decoder = FrameDecoder::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut greeted = false;
        'conn: loop {
            let n = tokio::select! {
                r = reader.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                _ = self.rt.shutdown.cancelled() => {
                    let _ = out_tx.send(ServerFrame::Error(ErrorBody::new(ErrorCode::ShuttingDown, "tetherd is shutting down"))).await;
                    break;
                }
            };
            decoder.push(&buf[..n]);
            loop {
                let line = match decoder.next_frame() {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "bad frame; closing the connection");
                        let _ = out_tx.send(ServerFrame::Error(e)).await;
                        break 'conn;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                let frame: ClientFrame = match serde_json::from_str(&line) {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = out_tx
                            .send(ServerFrame::Error(ErrorBody::new(
                                ErrorCode::MalformedFrame,
                                format!("malformed frame: {e}; expected one JSON object per line: {{\"hello\":…}} or {{\"id\",\"method\",\"params\"}}"),
                            )))
                            .await;
                        break 'conn;
                    }
                };
                match frame {
                    ClientFrame::Hello(h) => {
                        if h.protocol != PROTOCOL_VERSION {
                            let _ = out_tx
                                .send(ServerFrame::Error(ErrorBody::new(
                                    ErrorCode::ProtocolMismatch,
                                    format!(
                                        "protocol mismatch: {} {} speaks protocol {}, this tetherd {} speaks {}; run matching versions (`tether daemon restart` after upgrading)",
                                        h.client, h.version, h.protocol, env!("CARGO_PKG_VERSION"), PROTOCOL_VERSION
                                    ),
                                )))
                                .await;
                            break 'conn;
                        }
                        greeted = true;
                        let _ = out_tx
                            .send(ServerFrame::Welcome(Welcome {
                                protocol: PROTOCOL_VERSION,
                                daemon_version: env!("CARGO_PKG_VERSION").to_string(),
                                pid: std::process::id(),
                            }))
                            .await;
                    }
                    ClientFrame::Request(req) => {
                        if !greeted {
                            let _ = out_tx
                                .send(ServerFrame::Error(ErrorBody::new(
                                    ErrorCode::HandshakeRequired,
                                    "send {\"hello\":{\"protocol\":1,\"client\":…,\"version\":…}} before any request",
                                )))
                                .await;
                            break 'conn;
                        }
                        let id = req.id;
                        let reply = match Call::parse(&req.method, req.params) {
                            Ok(call) => self.handle(id, call, &out_tx).await,
                            Err(e) => Err(e),
                        };
                        match reply {
                            Ok(Some(v)) => {
                                if out_tx.send(ServerFrame::result(id, v)).await.is_err() {
                                    break 'conn;
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                if out_tx
                                    .send(ServerFrame::error(id, e.code, e.message))
                                    .await
                                    .is_err()
                                {
                                    break 'conn;
                                }
                            }
                        }
                        if self.rt.shutdown.is_cancelled() {
                            break 'conn;
                        }
                    }
                }
            }
        }
        for (_, a) in self.attachments.drain() {
            a.end();
        }
        drop(out_tx);
        let _ = writer_task.await;
    }

    fn check_not_read_only(&self, session: &Session) -> Result<(), ErrorBody> {
        match self.attachments.get(&session.id) {
            Some(a) if a.read_only => Err(ErrorBody::new(
                ErrorCode::ReadOnly,
                "this client attached read-only; it can watch but not send, interrupt, approve, archive or delete",
            )),
            _ => Ok(()),
        }
    }

    fn check_writable(&self, session: &Session) -> Result<(), ErrorBody> {
        self.check_not_read_only(session)?;
        if session.row().archived_at.is_some() {
            return Err(ErrorBody::new(
                ErrorCode::Archived,
                format!(
                    "session {} is archived and takes no more input; `tether fork {}` continues from it",
                    session.id, session.id
                ),
            ));
        }
        Ok(())
    }

    /// Handles one request. `Ok(None)` means the reply was already queued (attach).
    async fn handle(
        &mut self,
        id: u64,
        call: Call,
        out: &mpsc::Sender<ServerFrame>,
    ) -> Result<Option<Value>, ErrorBody> {
        let rt = self.rt.clone();
        let v = match call {
            Call::SessionCreate(p) => {
                let s = rt.create(p).await?;
                to_value(s.info())
            }
            Call::SessionList(p) => to_value(json!({ "data": rt.list(p.all).await? })),
            Call::SessionGet(p) => {
                let sid = rt.resolve(&p.session).await?;
                to_value(rt.info(&sid).await?)
            }
            Call::SessionSend(p) => {
                let s = rt.session(&p.session).await?;
                self.check_writable(&s)?;
                if p.content.iter().all(|b| b.as_text().trim().is_empty()) {
                    return Err(ErrorBody::new(
                        ErrorCode::InvalidParams,
                        "the message is empty",
                    ));
                }
                if p.model.is_some() {
                    crate::harness::update_session(&s, p.model, None).await?;
                }
                let ev = s.user_message(p.content).await?;
                to_value(json!({ "event": ev, "session": s.info() }))
            }
            Call::SessionInterrupt(p) => {
                let s = rt.session(&p.session).await?;
                self.check_writable(&s)?;
                let ev = s
                    .append_one(tether_proto::EventBody::UserInterrupt {})
                    .await?;
                let was_running = s.cancel_turn();
                to_value(json!({ "event": ev, "was_running": was_running }))
            }
            Call::SessionAttach(p) => {
                let s = rt.session(&p.session).await?;
                if let Some(old) = self.attachments.remove(&s.id) {
                    old.end();
                }
                // Subscribe before reading the log so nothing falls between the two.
                let rx = s.subscribe();
                s.attached.fetch_add(1, Ordering::Relaxed);
                let info = s.info();
                if out
                    .send(ServerFrame::result(id, to_value(info)))
                    .await
                    .is_err()
                {
                    s.attached.fetch_sub(1, Ordering::Relaxed);
                    return Ok(None);
                }
                let task = tokio::spawn(forward(s.clone(), rx, p.after_seq, out.clone()));
                self.attachments.insert(
                    s.id.clone(),
                    Attachment {
                        session: s,
                        read_only: p.read_only,
                        task,
                    },
                );
                return Ok(None);
            }
            Call::SessionDetach(p) => {
                let sid = rt.resolve(&p.session).await?;
                let was = self.attachments.remove(&sid).map(Attachment::end).is_some();
                json!({ "detached": was })
            }
            Call::SessionEvents(p) => {
                let sid = rt.resolve(&p.session).await?;
                let limit = p.limit.clamp(1, 10_000);
                let desc = p.order == Order::Desc;
                let data = rt
                    .store
                    .read_events(&sid, p.after_seq.unwrap_or(0), p.before_seq, limit, desc)
                    .await?;
                let next = if data.len() as u32 == limit {
                    data.last().map(|e| e.seq)
                } else {
                    None
                };
                to_value(EventPage { data, next })
            }
            Call::SessionUpdate(p) => {
                let s = rt.session(&p.session).await?;
                self.check_writable(&s)?;
                crate::harness::update_session(&s, p.model, p.max_cost_usd).await?;
                to_value(s.info())
            }
            Call::SessionFork(p) => {
                let s = rt.session(&p.session).await?;
                let f = rt.fork(&s, p.name).await?;
                to_value(f.info())
            }
            Call::SessionArchive(p) => {
                let s = rt.session(&p.session).await?;
                self.check_not_read_only(&s)?;
                rt.archive(&s).await?;
                to_value(s.info())
            }
            Call::SessionDelete(p) => {
                let s = rt.session(&p.session).await?;
                self.check_not_read_only(&s)?;
                if let Some(a) = self.attachments.remove(&s.id) {
                    a.end();
                }
                rt.delete(&s).await?;
                json!({ "id": s.id, "deleted": true })
            }
            Call::DaemonStatus {} => {
                let rows = rt.store.list_sessions(true).await?;
                let running = rt
                    .loaded_sessions()
                    .iter()
                    .filter(|s| s.is_turn_running())
                    .count();
                to_value(tether_proto::method::DaemonStatus {
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    protocol: PROTOCOL_VERSION,
                    socket: rt.paths.socket().display().to_string(),
                    data_dir: rt.paths.data_dir.display().to_string(),
                    uptime_ms: rt.started.elapsed().as_millis() as u64,
                    sessions: rows.len() as u64,
                    running_sessions: running as u64,
                    clients: rt.client_count(),
                    providers: rt.provider_statuses(),
                })
            }
            Call::DaemonShutdown {} => {
                tracing::info!("shutdown requested by a client");
                let _ = out
                    .send(ServerFrame::result(id, json!({ "stopping": true })))
                    .await;
                rt.shutdown.cancel();
                return Ok(None);
            }
            Call::AgentCreate(_)
            | Call::AgentList(_)
            | Call::AgentGet(_)
            | Call::AgentUpdate(_)
            | Call::AgentArchive(_) => {
                return Err(not_yet("agents", "--model and --system on `tether new`"));
            }
            Call::EnvironmentCreate(_)
            | Call::EnvironmentList(_)
            | Call::EnvironmentGet(_)
            | Call::EnvironmentDelete(_) => {
                return Err(not_yet("environments", "--dir on `tether new`"));
            }
            Call::ToolConfirm(p) => {
                let s = rt.session(&p.session).await?;
                self.check_writable(&s)?;
                // Every built-in tool runs under always_allow until permission policies land,
                // so no call can be waiting; say precisely why the answer has nowhere to go.
                let pending = s
                    .state()
                    .pending_tools
                    .iter()
                    .any(|t| t.tool_use_id == p.tool_use_id);
                return Err(if pending {
                    ErrorBody::new(
                        ErrorCode::Conflict,
                        format!(
                            "tool call {} was allowed by its permission policy (always_allow) and is not waiting for approval",
                            p.tool_use_id
                        ),
                    )
                } else {
                    ErrorBody::new(
                        ErrorCode::NotFound,
                        format!(
                            "no tool call {} is waiting for approval in session {}",
                            p.tool_use_id, s.id
                        ),
                    )
                });
            }
            Call::CustomToolResult(p) => {
                let s = rt.session(&p.session).await?;
                self.check_writable(&s)?;
                return Err(ErrorBody::new(
                    ErrorCode::NotFound,
                    format!(
                        "no custom tool call {} is waiting for a result in session {} (this session's agent declares no custom tools)",
                        p.custom_tool_use_id, s.id
                    ),
                ));
            }
        };
        Ok(Some(v))
    }
}

fn not_yet(what: &str, instead: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::NotImplemented,
        format!("{what} are not available in this tetherd yet; meanwhile use {instead}"),
    )
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The attach contract: (subscribed already) replay `seq > after_seq` from the log, send the
/// in-progress snapshot, then live pushes with already-sent seqs dropped.
async fn forward(
    session: Arc<Session>,
    mut rx: broadcast::Receiver<Push>,
    after_seq: u64,
    out: mpsc::Sender<ServerFrame>,
) {
    let mut last_sent = after_seq;
    loop {
        let page = match session
            .runtime
            .store
            .read_events(&session.id, last_sent, None, REPLAY_PAGE, false)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let _ = out
                    .send(ServerFrame::Error(ErrorBody::new(
                        ErrorCode::Storage,
                        e.to_string(),
                    )))
                    .await;
                return;
            }
        };
        let done = (page.len() as u32) < REPLAY_PAGE;
        for ev in page {
            last_sent = ev.seq;
            if out.send(ServerFrame::Event(Box::new(ev))).await.is_err() {
                return;
            }
        }
        if done {
            break;
        }
    }
    let snapshot = session.snapshot();
    let delta_floor = snapshot.delta_n;
    if out.send(ServerFrame::Snapshot(snapshot)).await.is_err() {
        return;
    }
    if out
        .send(ServerFrame::CaughtUp(CaughtUp {
            session_id: session.id.clone(),
            last_seq: last_sent,
        }))
        .await
        .is_err()
    {
        return;
    }
    loop {
        match rx.recv().await {
            Ok(Push::Event(ev)) => {
                if ev.seq <= last_sent {
                    continue;
                }
                last_sent = ev.seq;
                if out
                    .send(ServerFrame::Event(Box::new((*ev).clone())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(Push::Delta(d)) => {
                if d.n <= delta_floor {
                    continue;
                }
                if out.send(ServerFrame::Delta((*d).clone())).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::info!(session = %session.id, skipped, "client fell behind; asking it to resync");
                let _ = out
                    .send(ServerFrame::Resync(Resync {
                        session_id: session.id.clone(),
                        from_seq: last_sent + 1,
                    }))
                    .await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn write_loop(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<ServerFrame>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(frame) = rx.recv().await {
        let closing = matches!(frame, ServerFrame::Error(_));
        push_frame(&mut buf, &frame);
        // Batch whatever else is already queued into one write.
        while buf.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(f) => push_frame(&mut buf, &f),
                Err(_) => break,
            }
        }
        if writer.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
        if closing {
            let _ = writer.shutdown().await;
            return;
        }
    }
    let _ = writer.shutdown().await;
}

fn push_frame(buf: &mut Vec<u8>, frame: &ServerFrame) {
    match encode_frame(frame) {
        Ok(bytes) => buf.extend_from_slice(&bytes),
        Err(e) => tracing::error!(error = %e, "dropping a frame that cannot be encoded"),
    }
}
