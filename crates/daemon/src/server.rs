//! The local-socket server: handshake, request dispatch and attach streams.
//!
//! Each connection has one writer task fed by a bounded queue of encoded frames. Attach
//! forwarders read the session's broadcast and offer each push to that queue without waiting:
//! a client too slow to drain it loses its live feed and is told to resync from its last seq,
//! so neither the agent nor the other clients ever wait for it. Each push is encoded once and
//! its bytes shared by every client. An idle connection gets a heartbeat every few seconds; a
//! peer that stops reading for [`WRITE_TIMEOUT`] is disconnected.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tether_proto::method::{
    DaemonStatus, Detached, Dispatch, EnvironmentDeleted, EventPage, Interrupted, List, Method,
    Order, Recorded, Reply, SessionDeleted, Stopping, Watching,
};
use tether_proto::{
    Call, CaughtUp, ClientFrame, Delta, ErrorBody, ErrorCode, Event, FrameDecoder, Hello,
    PROTOCOL_VERSION, Resync, ServerFrame, Welcome, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, Backoff, Slot, Throttle};
use crate::orchestration::schedules;
use crate::runtime::Runtime;
use crate::session::live::{LIVE_BURST, LIVE_COALESCE, Push, Session, Wire};

/// Entries (a frame, or a burst of live frames) queued for one client, and their total size.
/// A live feed that finds either limit reached is dropped with a resync.
const OUTBOUND_QUEUE: usize = 4096;
const MAX_QUEUED_BYTES: usize = 4 << 20;
/// Events per page when replaying the log to an attaching client.
const REPLAY_PAGE: u32 = 2000;
/// An idle connection gets a heartbeat this often.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A peer that takes longer than this to accept one write is dropped: it stopped reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A greeted connection's read buffer: small while it sends small requests, grown for one
/// that sends more than fits.
const READ_BUF_MIN: usize = 4 * 1024;
const READ_BUF_MAX: usize = 64 * 1024;
/// Largest batch of queued frames written at once.
const WRITE_BATCH: usize = 256 * 1024;

pub async fn serve(listener: tokio::net::UnixListener, rt: Arc<Runtime>) {
    let my_uid = nix::unistd::geteuid().as_raw();
    let limits = &rt.config.connections;
    let admission = Admission::new(limits.max(crate::admission::fd_limit()));
    let handshake_timeout = limits.handshake_timeout();
    tracing::debug!(
        max_connections = admission.max(),
        handshake_timeout_ms = handshake_timeout.as_millis() as u64,
        "local socket limits"
    );
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = rt.shutdown.cancelled() => return,
        };
        let stream = match accepted {
            Ok((s, _)) => {
                backoff.reset();
                s
            }
            Err(e) => {
                let exhausted = Backoff::is_exhaustion(&e);
                if let Some(left_out) = ACCEPT_FAILED.check() {
                    tracing::warn!(
                        error = %e,
                        open = admission.open(),
                        repeats_left_out = left_out,
                        "accepting a connection failed{}; backing off",
                        if exhausted { " (out of file descriptors or memory)" } else { "" }
                    );
                }
                if exhausted {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.delay()) => {}
                        _ = rt.shutdown.cancelled() => return,
                    }
                }
                continue;
            }
        };
        let Some(slot) = admission.admit() else {
            if let Some(left_out) = REFUSED.check() {
                tracing::warn!(
                    max = admission.max(),
                    repeats_left_out = left_out,
                    "refused a connection: every slot is held by a client"
                );
            }
            tokio::spawn(refuse(stream, too_many_connections(admission.max(), false)));
            continue;
        };
        let rt = rt.clone();
        tokio::spawn(async move {
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == my_uid => {}
                Ok(cred) => {
                    if let Some(left_out) = OTHER_USER.check() {
                        tracing::warn!(
                            peer_uid = cred.uid(),
                            repeats_left_out = left_out,
                            "refused a connection from another user"
                        );
                    }
                    drop(slot);
                    refuse(
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
            Connection::new(rt)
                .run(stream, slot, handshake_timeout)
                .await;
        });
    }
}

/// Repeated warnings of the accept path, at most one each per interval.
static ACCEPT_FAILED: Throttle = Throttle::new(Duration::from_secs(10));
static REFUSED: Throttle = Throttle::new(Duration::from_secs(10));
static OTHER_USER: Throttle = Throttle::new(Duration::from_secs(10));
static EVICTED: Throttle = Throttle::new(Duration::from_secs(10));
static NO_HELLO: Throttle = Throttle::new(Duration::from_secs(10));
static STOPPED_READING: Throttle = Throttle::new(Duration::from_secs(10));

/// The longest a client's first frame may be: a hello is ~100 bytes, and an idle connection
/// must not make the daemon buffer a 16 MiB frame.
const MAX_HELLO_BYTES: usize = 16 * 1024;

fn too_many_connections(max: usize, made_room: bool) -> ErrorBody {
    let what = if made_room {
        "closed this connection, which had not said hello yet, to make room for a newer one"
    } else {
        "refused this connection: every one is held by a client"
    };
    ErrorBody::new(
        ErrorCode::TooManyConnections,
        format!(
            "tetherd holds at most {max} connections and {what}; close clients you don't need (attached TUIs, scripts that keep connections open), or raise `max` under [connections] in config.toml and `tether daemon restart`"
        ),
    )
}

/// Sends a connection-level error to a client that has not been sent anything yet, then waits
/// a moment for it to hang up: a client that writes its hello just after we closed would get
/// EPIPE instead of the reason. Never waits to write (the frame fits the empty socket
/// buffer), and only [`MAX_LINGERING`] refused connections wait at once; past that they are
/// closed at once.
async fn refuse(stream: UnixStream, err: ErrorBody) {
    if let Ok(bytes) = encode_frame(&ServerFrame::Error(err)) {
        let _ = stream.try_write(&bytes);
    }
    if LINGERING.fetch_add(1, Ordering::Relaxed) < MAX_LINGERING {
        linger(stream).await;
    }
    LINGERING.fetch_sub(1, Ordering::Relaxed);
}

/// Refused connections waiting for their client to hang up.
static LINGERING: AtomicUsize = AtomicUsize::new(0);
const MAX_LINGERING: usize = 64;
const LINGER: Duration = Duration::from_millis(500);

/// Ends our side and reads (discarding) until the client hangs up or [`LINGER`] passes, so it
/// reads the error frame rather than a reset.
async fn linger(mut stream: UnixStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Why a connection ended before its hello.
enum NoHello {
    /// The peer hung up or the daemon is stopping: nothing to say.
    Gone,
    /// Close with this error frame.
    Error(ErrorBody),
}

/// Reads up to the first frame, which must be a hello of this protocol, within `timeout`.
/// Until then the connection costs a small read buffer and no writer task.
async fn handshake(
    stream: &mut UnixStream,
    decoder: &mut FrameDecoder,
    timeout: Duration,
    slot: &Slot,
    shutdown: &CancellationToken,
) -> Result<(), NoHello> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 1024];
    loop {
        match decoder.next_frame() {
            Ok(Some(line)) if line.trim().is_empty() => continue,
            Ok(Some(line)) => return check_hello(&line).map_err(NoHello::Error),
            Ok(None) if decoder.pending() > MAX_HELLO_BYTES => {
                return Err(NoHello::Error(ErrorBody::new(
                    ErrorCode::FrameTooLarge,
                    format!(
                        "the first frame must be a hello, at most {MAX_HELLO_BYTES} bytes: {{\"hello\":{{\"protocol\":{PROTOCOL_VERSION},\"client\":…,\"version\":…}}}}"
                    ),
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(NoHello::Error(e)),
        }
        let n = tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Err(NoHello::Gone),
                Ok(n) => n,
            },
            _ = tokio::time::sleep_until(deadline) => {
                if let Some(left_out) = NO_HELLO.check() {
                    tracing::info!(
                        timeout_ms = timeout.as_millis() as u64,
                        repeats_left_out = left_out,
                        "closed a connection that did not say hello in time"
                    );
                }
                return Err(NoHello::Error(ErrorBody::new(
                    ErrorCode::HandshakeTimeout,
                    format!(
                        "no hello within {} ms: tetherd closes connections that do not greet in time. Send {{\"hello\":{{\"protocol\":{PROTOCOL_VERSION},\"client\":…,\"version\":…}}}} first (`handshake_timeout_ms` under [connections] in config.toml sets the limit)",
                        timeout.as_millis()
                    ),
                )));
            }
            _ = slot.evicted().cancelled() => {
                if let Some(left_out) = EVICTED.check() {
                    tracing::info!(
                        max = slot.max(),
                        repeats_left_out = left_out,
                        "at the connection cap: closed the oldest connection that had not said hello"
                    );
                }
                return Err(NoHello::Error(too_many_connections(slot.max(), true)));
            }
            _ = shutdown.cancelled() => return Err(NoHello::Gone),
        };
        decoder.push(&buf[..n]);
    }
}

/// The first frame: a hello of this protocol, or the error that closes the connection.
fn check_hello(line: &str) -> Result<(), ErrorBody> {
    match serde_json::from_str::<ClientFrame>(line) {
        Ok(ClientFrame::Hello(h)) => check_protocol(&h),
        Ok(ClientFrame::Request(_)) => Err(handshake_required()),
        Err(e) => Err(malformed(&e)),
    }
}

fn check_protocol(h: &Hello) -> Result<(), ErrorBody> {
    if h.protocol == PROTOCOL_VERSION {
        return Ok(());
    }
    Err(ErrorBody::new(
        ErrorCode::ProtocolMismatch,
        format!(
            "protocol mismatch: {} {} speaks protocol {}, this tetherd {} speaks {}; run matching versions (`tether daemon restart` after upgrading)",
            h.client,
            h.version,
            h.protocol,
            env!("CARGO_PKG_VERSION"),
            PROTOCOL_VERSION
        ),
    ))
}

fn handshake_required() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::HandshakeRequired,
        "send {\"hello\":{\"protocol\":1,\"client\":…,\"version\":…}} before any request",
    )
}

fn malformed(e: &serde_json::Error) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::MalformedFrame,
        format!(
            "malformed frame: {e}; expected one JSON object per line: {{\"hello\":…}} or {{\"id\",\"method\",\"params\"}}"
        ),
    )
}

fn welcome() -> ServerFrame {
    ServerFrame::Welcome(Welcome {
        protocol: PROTOCOL_VERSION,
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        heartbeat_ms: Some(HEARTBEAT_EVERY.as_millis() as u64),
    })
}

struct Attachment {
    session: Arc<Session>,
    read_only: bool,
    task: tokio::task::JoinHandle<()>,
}

impl Attachment {
    /// Counts a client as attached (before its feed starts, so its reply shows it).
    fn count(session: &Session, read_only: bool) {
        session.attached.fetch_add(1, Ordering::Relaxed);
        if read_only {
            session.attached_read_only.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn uncount(session: &Session, read_only: bool) {
        session.attached.fetch_sub(1, Ordering::Relaxed);
        if read_only {
            session.attached_read_only.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Stops the feed and stops counting this client as attached.
    fn end(self) {
        self.task.abort();
        Attachment::uncount(&self.session, self.read_only);
    }
}

/// One encoded frame for a client's writer; `closing` frames end the connection.
struct Out {
    bytes: Bytes,
    closing: bool,
}

/// The sending side of a client's outbound queue, which is bounded twice: in entries by the
/// channel, and in bytes by `queued` (added here, subtracted as the writer takes entries).
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Out>,
    queued: Arc<AtomicUsize>,
}

/// The client's connection is gone.
struct Gone;

/// Why live pushes were not queued.
enum Offer {
    Full,
    Gone,
}

impl Outbox {
    fn new() -> (Outbox, Outq) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        (
            Outbox {
                tx,
                queued: queued.clone(),
            },
            Outq { rx, queued },
        )
    }

    /// Queues a frame, waiting for room: for replies and replays, never for live pushes.
    async fn send(&self, frame: &ServerFrame) -> Result<(), Gone> {
        let Some(bytes) = encode(frame) else {
            return Ok(());
        };
        let closing = matches!(frame, ServerFrame::Error(_));
        let len = bytes.len();
        self.queued.fetch_add(len, Ordering::Relaxed);
        let sent = self.tx.send(Out { bytes, closing }).await;
        if sent.is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
        }
        sent.map_err(|_| Gone)
    }

    /// Queues live pushes if there is room; never waits.
    fn offer(&self, bytes: Bytes) -> Result<(), Offer> {
        let len = bytes.len();
        let queued = self.queued.load(Ordering::Relaxed);
        // A single oversized burst still goes through an empty queue.
        if queued > 0 && queued + len > MAX_QUEUED_BYTES {
            return Err(Offer::Full);
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        let sent = self.tx.try_send(Out {
            bytes,
            closing: false,
        });
        if sent.is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
        }
        sent.map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Offer::Full,
            mpsc::error::TrySendError::Closed(_) => Offer::Gone,
        })
    }
}

/// The writer's side of the outbound queue.
struct Outq {
    rx: mpsc::Receiver<Out>,
    queued: Arc<AtomicUsize>,
}

impl Outq {
    fn took(&self, o: &Out) {
        self.queued.fetch_sub(o.bytes.len(), Ordering::Relaxed);
    }
}

fn encode<T: Serialize>(frame: &T) -> Option<Bytes> {
    match encode_frame(frame) {
        Ok(b) => Some(Bytes::from(b)),
        Err(e) => {
            tracing::error!(error = %e, "dropping a frame that cannot be encoded");
            None
        }
    }
}

/// A live push as it goes on the wire: the same bytes as `ServerFrame::Event`/`Delta`, but
/// serialised from the shared value without cloning it.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum PushFrame<'a> {
    Event(&'a Event),
    Delta(&'a Delta),
}

/// The push's wire bytes, encoded by the first client that needs them.
fn push_bytes(push: &Push) -> Bytes {
    match push {
        Push::Event(w) => w
            .encoded
            .get_or_init(|| encode(&PushFrame::Event(&w.value)).unwrap_or_default()),
        Push::Delta(w) => w
            .encoded
            .get_or_init(|| encode(&PushFrame::Delta(&w.value)).unwrap_or_default()),
    }
    .clone()
}

/// Consecutive deltas of one burst that continue each other, sent as one: a client reading a
/// flat-out stream then decodes a frame per burst instead of one per token (the daemon encodes
/// the merged frame for this client; a lone delta keeps its shared encoding).
#[derive(Default)]
struct DeltaRun {
    first: Option<Arc<Wire<Delta>>>,
    merged: Option<Delta>,
}

impl DeltaRun {
    fn add(&mut self, next: Arc<Wire<Delta>>, parts: &mut Vec<Bytes>) {
        if let Some(first) = &self.first {
            let merged = self.merged.get_or_insert_with(|| first.value.clone());
            if merged.absorb(&next.value) {
                return;
            }
            if merged.n == first.value.n {
                // Nothing was absorbed: keep the shared encoding of the lone delta.
                self.merged = None;
            }
        }
        self.flush(parts);
        self.first = Some(next);
    }

    fn flush(&mut self, parts: &mut Vec<Bytes>) {
        let first = self.first.take();
        if let Some(merged) = self.merged.take() {
            parts.extend(encode(&PushFrame::Delta(&merged)));
        } else if let Some(first) = first {
            parts.push(push_bytes(&Push::Delta(first)));
        }
    }
}

struct Connection {
    rt: Arc<Runtime>,
    attachments: HashMap<String, Attachment>,
    /// Sessions this connection attached to read-only; it stays read-only for them.
    read_only: HashSet<String>,
}

impl Connection {
    fn new(rt: Arc<Runtime>) -> Self {
        Connection {
            rt,
            attachments: HashMap::new(),
            read_only: HashSet::new(),
        }
    }

    async fn run(mut self, mut stream: UnixStream, mut slot: Slot, handshake_timeout: Duration) {
        let mut decoder = FrameDecoder::default();
        let greeted = handshake(
            &mut stream,
            &mut decoder,
            handshake_timeout,
            &slot,
            &self.rt.shutdown,
        )
        .await;
        let greeted = match greeted {
            Ok(()) if slot.greet() => Ok(()),
            // Chosen to make room between its hello and now.
            Ok(()) => Err(NoHello::Error(too_many_connections(slot.max(), true))),
            Err(e) => Err(e),
        };
        match greeted {
            Ok(()) => {}
            Err(NoHello::Gone) => return,
            Err(NoHello::Error(e)) => {
                drop(slot);
                refuse(stream, e).await;
                return;
            }
        }
        self.rt.clients.fetch_add(1, Ordering::Relaxed);
        // Boxed: the request handling's state is large, and a task is allocated at its full
        // size when spawned, so unboxed every silent connection would pay for it too.
        Box::pin(self.serve_greeted(stream, decoder)).await;
        self.rt.clients.fetch_sub(1, Ordering::Relaxed);
        drop(slot);
    }

    /// Serves a client past its hello; `decoder` holds whatever it sent after the hello.
    async fn serve_greeted(&mut self, stream: UnixStream, mut decoder: FrameDecoder) {
        let (mut reader, writer) = stream.into_split();
        let (out_tx, out_rx) = Outbox::new();
        let writer_done = CancellationToken::new();
        let writer_task = tokio::spawn({
            let done = writer_done.clone();
            async move {
                let end = write_loop(writer, out_rx, HEARTBEAT_EVERY, WRITE_TIMEOUT).await;
                if end == WriteEnd::TimedOut
                    && let Some(left_out) = STOPPED_READING.check()
                {
                    tracing::info!(
                        timeout_s = WRITE_TIMEOUT.as_secs(),
                        repeats_left_out = left_out,
                        "dropped a client that stopped reading"
                    );
                }
                done.cancel();
            }
        });
        let _ = out_tx.send(&welcome()).await;
        // Grown to READ_BUF_MAX only for a client that fills it.
        let mut buf = vec![0u8; READ_BUF_MIN];
        'conn: loop {
            loop {
                let line = match decoder.next_frame() {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "bad frame; closing the connection");
                        let _ = out_tx.send(&ServerFrame::Error(e)).await;
                        break 'conn;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                let frame: ClientFrame = match serde_json::from_str(&line) {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = out_tx.send(&ServerFrame::Error(malformed(&e))).await;
                        break 'conn;
                    }
                };
                match frame {
                    ClientFrame::Hello(h) => {
                        if let Err(e) = check_protocol(&h) {
                            let _ = out_tx.send(&ServerFrame::Error(e)).await;
                            break 'conn;
                        }
                        let _ = out_tx.send(&welcome()).await;
                    }
                    ClientFrame::Request(req) => {
                        let id = req.id;
                        let reply = match Call::parse(&req.method, req.params) {
                            Ok(call) => self.handle(id, call, &out_tx).await,
                            Err(e) => Err(e),
                        };
                        match reply {
                            Ok(Some(v)) => {
                                if out_tx.send(&ServerFrame::result(id, v)).await.is_err() {
                                    break 'conn;
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                if out_tx
                                    .send(&ServerFrame::error(id, e.code, e.message))
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
            let n = tokio::select! {
                r = reader.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                _ = writer_done.cancelled() => break,
                _ = self.rt.shutdown.cancelled() => {
                    let _ = out_tx.send(&ServerFrame::Error(ErrorBody::new(ErrorCode::ShuttingDown, "tetherd is shutting down"))).await;
                    break;
                }
            };
            decoder.push(&buf[..n]);
            if n == buf.len() && buf.len() < READ_BUF_MAX {
                buf.resize(READ_BUF_MAX, 0);
            }
        }
        for (_, a) in self.attachments.drain() {
            a.end();
        }
        drop(out_tx);
        let _ = writer_task.await;
    }

    fn check_not_read_only(&self, session: &Session) -> Result<(), ErrorBody> {
        if self.read_only.contains(&session.id) {
            return Err(ErrorBody::new(
                ErrorCode::ReadOnly,
                format!(
                    "this connection attached to session {} read-only: it can watch but not send, interrupt, approve, answer tools, archive or delete; attach without --read-only from another terminal to steer it",
                    session.id
                ),
            ));
        }
        Ok(())
    }

    fn check_writable(&self, session: &Session) -> Result<(), ErrorBody> {
        self.check_not_read_only(session)?;
        crate::session::ops::check_writable(session)
    }

    /// Handles one request, answering each method with its own result type. `Ok(None)` means
    /// the reply was already queued (attach, shutdown).
    async fn handle(
        &mut self,
        id: u64,
        call: Call,
        out: &Outbox,
    ) -> Result<Option<Value>, ErrorBody> {
        let rt = self.rt.clone();
        let v = match call.dispatch() {
            Dispatch::SessionCreate(p, r) => {
                let s = crate::orchestration::memory::create_session(&rt, p).await?;
                answer(r, s.info())
            }
            Dispatch::SessionList(p, r) => {
                let mut data = rt.list(p.all).await?;
                if let Some(d) = &p.deployment {
                    let id = schedules::deployments::row(&rt, d).await?.id;
                    data.retain(|s| s.deployment_id.as_deref() == Some(id.as_str()));
                }
                answer(r, List { data })
            }
            Dispatch::SessionGet(p, r) => {
                let sid = rt.resolve(&p.session).await?;
                answer(r, rt.info(&sid).await?)
            }
            Dispatch::SessionSend(p, r) => {
                let s = rt.session(&p.session).await?;
                self.check_not_read_only(&s)?;
                let target = match &p.thread {
                    Some(t) => crate::orchestration::threads::find(&rt, &s, t).await?,
                    None => s.clone(),
                };
                if matches!(
                    target.thread.as_ref().map(|l| &l.agent),
                    Some(tether_proto::thread::ThreadAgent::Advisor { .. })
                ) {
                    return Err(ErrorBody::new(
                        ErrorCode::InvalidParams,
                        "the advisor's thread takes no messages; the primary consults it with consult_advisor",
                    ));
                }
                let event = crate::session::ops::send_message(&target, p.content, p.model).await?;
                answer(
                    r,
                    Recorded {
                        event,
                        session: s.info(),
                    },
                )
            }
            Dispatch::SessionDefineOutcome(p, r) => {
                let s = rt.session(&p.session).await?;
                self.check_not_read_only(&s)?;
                let event = crate::session::ops::define_outcome(&s, p.outcome).await?;
                answer(
                    r,
                    Recorded {
                        event,
                        session: s.info(),
                    },
                )
            }
            Dispatch::SessionInterrupt(p, r) => {
                let s = rt.session(&p.session).await?;
                self.check_not_read_only(&s)?;
                let (event, was_running) =
                    crate::orchestration::threads::interrupt(&rt, &s, p.thread.as_deref()).await?;
                answer(r, Interrupted { event, was_running })
            }
            Dispatch::ThreadList(p, r) => {
                let s = rt.session(&p.session).await?;
                let mut data = crate::orchestration::threads::list(&rt, &s, p.all).await?;
                if !p.statuses.is_empty() {
                    data.retain(|t| p.statuses.contains(&t.status));
                }
                answer(r, List { data })
            }
            Dispatch::ThreadGet(p, r) => {
                let s = rt.session(&p.session).await?;
                answer(
                    r,
                    crate::orchestration::threads::get(&rt, &s, &p.thread).await?,
                )
            }
            Dispatch::ThreadArchive(p, r) => {
                let s = rt.session(&p.session).await?;
                self.check_not_read_only(&s)?;
                answer(
                    r,
                    crate::orchestration::threads::archive(&rt, &s, &p.thread).await?,
                )
            }
            Dispatch::SessionAttach(p, r) => {
                let s = rt.session(&p.session).await?;
                let s = match &p.thread {
                    Some(t) => crate::orchestration::threads::find(&rt, &s, t).await?,
                    None => s,
                };
                if let Some(old) = self.attachments.remove(&s.id) {
                    old.end();
                }
                // Subscribe before reading the log so nothing falls between the two.
                let rx = s.subscribe();
                // Read-only sticks: re-attaching (e.g. after a resync) cannot shed it.
                let read_only = p.read_only || self.read_only.contains(&s.id);
                if read_only {
                    self.read_only.insert(s.id.clone());
                }
                Attachment::count(&s, read_only);
                // The reply goes first, then the feed.
                if out
                    .send(&ServerFrame::result(id, answer(r, s.info())))
                    .await
                    .is_err()
                {
                    Attachment::uncount(&s, read_only);
                    return Ok(None);
                }
                let task = tokio::spawn(forward(s.clone(), rx, p.after_seq, out.clone()));
                self.attachments.insert(
                    s.id.clone(),
                    Attachment {
                        session: s,
                        read_only,
                        task,
                    },
                );
                return Ok(None);
            }
            Dispatch::SessionDetach(p, r) => {
                let sid = rt.resolve(&p.session).await?;
                let was = self.attachments.remove(&sid).map(Attachment::end).is_some();
                answer(r, Detached { detached: was })
            }
            Dispatch::SessionEvents(p, r) => {
                let sid = rt.resolve(&p.session).await?;
                let sid = match &p.thread {
                    Some(t) => {
                        let s = rt.load(&sid).await?;
                        crate::orchestration::threads::find(&rt, &s, t)
                            .await?
                            .id
                            .clone()
                    }
                    None => sid,
                };
                let limit = p.limit.clamp(1, 10_000);
                let desc = p.order == Order::Desc;
                let data = rt
                    .store
                    .read_events(&sid, p.after_seq.unwrap_or(0), p.before_seq, limit, desc)
                    .await?;
                answer(r, EventPage::new(data, limit))
            }
            Dispatch::SessionSearch(p, r) => {
                let sid = rt.resolve(&p.session).await?;
                if p.query.trim().is_empty() {
                    return Err(ErrorBody::new(
                        ErrorCode::InvalidParams,
                        "empty search query; pass the text to look for",
                    ));
                }
                let limit = p.limit.clamp(1, 1000);
                let data = rt
                    .store
                    .search_events(&sid, &p.query, p.before_seq, limit)
                    .await?;
                answer(r, EventPage::new(data, limit))
            }
            Dispatch::SessionUpdate(p, r) => {
                let s = rt.session(&p.session).await?;
                self.check_writable(&s)?;
                if let Some(name) = p.name {
                    rt.rename(&s, name).await?;
                }
                crate::session::ops::update_session(&s, p.model, p.max_cost_usd).await?;
                answer(r, s.info())
            }
            Dispatch::SessionFork(p, r) => {
                let s = rt.session(&p.session).await?;
                let f = rt.fork(&s, p.name).await?;
                answer(r, f.info())
            }
            Dispatch::SessionArchive(p, r) => {
                let s = rt.session(&p.session).await?;
                self.check_not_read_only(&s)?;
                rt.archive(&s).await?;
                answer(r, s.info())
            }
            Dispatch::SessionDelete(p, r) => {
                let s = rt.session(&p.session).await?;
                self.check_not_read_only(&s)?;
                if let Some(a) = self.attachments.remove(&s.id) {
                    a.end();
                }
                rt.delete(&s).await?;
                answer(r, SessionDeleted::new(s.id.clone()))
            }
            Dispatch::DaemonStatus(_, r) => {
                let rows = rt.store.list_sessions(true).await?;
                let running = rt
                    .loaded_sessions()
                    .iter()
                    .filter(|s| s.is_turn_running())
                    .count();
                answer(
                    r,
                    DaemonStatus {
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
                        web_search: rt.web_search_status(),
                        mcp_credentials: crate::session::mcp::credential_statuses(&rt.config.mcp),
                        sandbox: Some(crate::sandbox::support::this_host().report.clone()),
                    },
                )
            }
            Dispatch::DaemonShutdown(_, r) => {
                tracing::info!("shutdown requested by a client");
                let stopping = answer(r, Stopping { stopping: true });
                let _ = out.send(&ServerFrame::result(id, stopping)).await;
                rt.shutdown.cancel();
                return Ok(None);
            }
            Dispatch::AgentCreate(spec, r) => {
                answer(r, crate::resources::agents::create(&rt.store, spec).await?)
            }
            Dispatch::AgentList(p, r) => answer(
                r,
                List {
                    data: crate::resources::agents::list(&rt.store, p.all).await?,
                },
            ),
            Dispatch::AgentGet(p, r) => {
                answer(r, crate::resources::agents::get(&rt.store, &p).await?)
            }
            Dispatch::AgentUpdate(p, r) => {
                answer(r, crate::resources::agents::update(&rt.store, p).await?)
            }
            Dispatch::AgentArchive(p, r) => answer(
                r,
                crate::resources::agents::archive(&rt.store, &p.agent).await?,
            ),
            Dispatch::AgentVersions(p, r) => answer(
                r,
                List {
                    data: crate::resources::agents::versions(&rt.store, &p.agent).await?,
                },
            ),
            Dispatch::EnvironmentWatch(p, r) => {
                let (environment, feed) =
                    crate::resources::environments::watch(&rt.store, &rt.builds, &p.environment)
                        .await?;
                let watching = feed.is_some();
                if let Some((first, rx)) = feed {
                    tokio::spawn(forward_build(first, rx, out.clone()));
                }
                // `watching: false`: no build is running; `environment.build` says how it ended.
                answer(
                    r,
                    Watching {
                        environment,
                        watching,
                    },
                )
            }
            Dispatch::EnvironmentCreate(spec, r) => answer(
                r,
                crate::resources::environments::create(&rt.store, &rt.builds, spec).await?,
            ),
            Dispatch::EnvironmentList(p, r) => answer(
                r,
                List {
                    data: crate::resources::environments::list(&rt.store, &rt.builds, p.all)
                        .await?,
                },
            ),
            Dispatch::EnvironmentGet(p, r) => answer(
                r,
                crate::resources::environments::get(&rt.store, &rt.builds, &p.environment).await?,
            ),
            Dispatch::EnvironmentUpdate(p, r) => answer(
                r,
                crate::resources::environments::update(&rt.store, &rt.builds, p).await?,
            ),
            Dispatch::EnvironmentArchive(p, r) => answer(
                r,
                crate::resources::environments::archive(&rt.store, &rt.builds, &p.environment)
                    .await?,
            ),
            Dispatch::EnvironmentDelete(p, r) => answer(
                r,
                EnvironmentDeleted::new(
                    crate::resources::environments::delete(&rt.store, &p.environment).await?,
                ),
            ),
            Dispatch::EnvironmentRebuild(p, r) => answer(
                r,
                crate::resources::environments::rebuild(&rt.store, &rt.builds, &p).await?,
            ),
            Dispatch::ToolConfirm(p, r) => {
                let s = rt.session(&p.session).await?;
                self.check_writable(&s)?;
                // Answered in whichever thread of the session holds the call.
                let t = crate::orchestration::threads::holder_of(&rt, &s, &p.tool_use_id).await?;
                let event = crate::session::approvals::confirm(
                    &t,
                    &p.tool_use_id,
                    p.result,
                    p.deny_message,
                )
                .await?;
                let event =
                    crate::orchestration::threads::as_seen_by_primary(&rt, &s, &t, event).await;
                answer(
                    r,
                    Recorded {
                        event,
                        session: s.info(),
                    },
                )
            }
            Dispatch::CustomToolResult(p, r) => {
                let s = rt.session(&p.session).await?;
                self.check_writable(&s)?;
                // Answered in whichever thread of the session holds the call.
                let t = crate::orchestration::threads::holder_of(&rt, &s, &p.custom_tool_use_id)
                    .await?;
                let event = crate::session::approvals::custom_result(
                    &t,
                    &p.custom_tool_use_id,
                    p.content,
                    p.is_error,
                )
                .await?;
                let event =
                    crate::orchestration::threads::as_seen_by_primary(&rt, &s, &t, event).await;
                answer(
                    r,
                    Recorded {
                        event,
                        session: s.info(),
                    },
                )
            }
            // vaults (issue 25): vaults by id or display name, credentials by id
            Dispatch::VaultCreate(spec, r) => {
                answer(r, vaults::create_vault(&rt.store, spec).await?)
            }
            Dispatch::VaultList(p, r) => answer(
                r,
                List {
                    data: vaults::list_vaults(&rt.store, p.all).await?,
                },
            ),
            Dispatch::VaultGet(p, r) => {
                answer(r, vaults::resolve_vault(&rt.store, &p.vault).await?)
            }
            Dispatch::VaultArchive(p, r) => {
                let id = vaults::resolve_vault(&rt.store, &p.vault).await?.id;
                answer(r, vaults::archive_vault(&rt.store, &id).await?)
            }
            Dispatch::VaultDelete(p, r) => {
                let id = vaults::resolve_vault(&rt.store, &p.vault).await?.id;
                vaults::delete_vault(&rt.store, &id).await?;
                answer(
                    r,
                    tether_proto::vault::Deleted {
                        id,
                        object_type: "vault_deleted".into(),
                    },
                )
            }
            Dispatch::CredentialCreate(p, r) => {
                let id = vaults::resolve_vault(&rt.store, &p.vault).await?.id;
                answer(
                    r,
                    vaults::create_credential(&rt.store, &rt.paths.data_dir, &id, p.credential)
                        .await?,
                )
            }
            Dispatch::CredentialList(p, r) => {
                let id = vaults::resolve_vault(&rt.store, &p.vault).await?.id;
                answer(
                    r,
                    List {
                        data: vaults::list_credentials(&rt.store, &id, p.all).await?,
                    },
                )
            }
            Dispatch::CredentialUpdate(p, r) => {
                let id = vaults::resolve_vault(&rt.store, &p.vault).await?.id;
                answer(
                    r,
                    vaults::update_credential(
                        &rt.store,
                        &rt.paths.data_dir,
                        &id,
                        &p.credential,
                        p.changes,
                    )
                    .await?,
                )
            }
            Dispatch::CredentialArchive(p, r) => {
                let id = vaults::resolve_vault(&rt.store, &p.vault).await?.id;
                answer(
                    r,
                    vaults::archive_credential(&rt.store, &id, &p.credential).await?,
                )
            }
            Dispatch::CredentialDelete(p, r) => {
                let id = vaults::resolve_vault(&rt.store, &p.vault).await?.id;
                vaults::delete_credential(&rt.store, &id, &p.credential).await?;
                answer(
                    r,
                    tether_proto::vault::Deleted {
                        id: p.credential,
                        object_type: "vault_credential_deleted".into(),
                    },
                )
            }
            // mcp_oauth login (issue 25, mcpauth)
            Dispatch::CredentialLogin(p, r) => {
                let id = vaults::resolve_vault(&rt.store, &p.vault).await?.id;
                answer(
                    r,
                    vaults::login::start(
                        &rt.store,
                        &rt.paths.data_dir,
                        &id,
                        &p.mcp_server_url,
                        rt.config.mcp.client_id_metadata_url.as_deref(),
                    )
                    .await?,
                )
            }
            Dispatch::CredentialLoginWait(p, r) => answer(
                r,
                vaults::login::wait(
                    &p.login_id,
                    std::time::Duration::from_secs(p.wait_secs.unwrap_or(30).min(120)),
                )
                .await?,
            ),
            // memory stores (issue 24): stores by id or name, memories by path or id
            Dispatch::MemoryStoreCreate(spec, r) => {
                answer(r, memory::create_store(&rt.store, spec).await?)
            }
            Dispatch::MemoryStoreList(p, r) => answer(
                r,
                List {
                    data: memory::list_stores(&rt.store, p.all).await?,
                },
            ),
            Dispatch::MemoryStoreGet(p, r) => {
                answer(r, memory::resolve(&rt.store, &p.store).await?)
            }
            Dispatch::MemoryStoreUpdate(p, r) => {
                let id = memory::resolve(&rt.store, &p.store).await?.id;
                answer(r, memory::update_store(&rt.store, &id, p.changes).await?)
            }
            Dispatch::MemoryStoreArchive(p, r) => {
                let id = memory::resolve(&rt.store, &p.store).await?.id;
                answer(r, memory::archive_store(&rt.store, &id).await?)
            }
            Dispatch::MemoryStoreDelete(p, r) => {
                let id = memory::resolve(&rt.store, &p.store).await?.id;
                memory::delete_store(&rt.store, &id).await?;
                answer(
                    r,
                    tether_proto::memory::MemoryStoreDeleted {
                        id,
                        object_type: "memory_store_deleted".into(),
                    },
                )
            }
            Dispatch::MemoryList(p, r) => {
                let id = memory::resolve(&rt.store, &p.store).await?.id;
                let data =
                    memory::list_memories(&rt.store, &id, p.path_prefix.as_deref(), 0, false)
                        .await?;
                answer(r, List { data })
            }
            Dispatch::MemoryGet(p, r) => {
                let id = memory::resolve(&rt.store, &p.store).await?.id;
                answer(r, memory::get_memory(&rt.store, &id, &p.memory).await?)
            }
            Dispatch::MemoryWrite(p, r) => {
                let id = memory::resolve(&rt.store, &p.store).await?.id;
                let m = memory::write_memory(
                    &rt.store,
                    &id,
                    p.path,
                    p.content,
                    p.expected_sha256,
                    memory::local_user(),
                )
                .await?;
                answer(r, m)
            }
            Dispatch::MemoryDelete(p, r) => {
                let id = memory::resolve(&rt.store, &p.store).await?.id;
                let mid = memory::delete_memory(
                    &rt.store,
                    &id,
                    &p.memory,
                    p.expected_sha256,
                    memory::local_user(),
                )
                .await?;
                answer(
                    r,
                    tether_proto::memory::MemoryDeleted {
                        id: mid,
                        object_type: "memory_deleted".into(),
                    },
                )
            }
            Dispatch::MemoryVersions(p, r) => {
                let id = memory::resolve(&rt.store, &p.store).await?.id;
                let memory_id = match p.memory {
                    Some(m) if m.starts_with('/') => {
                        Some(memory::get_memory(&rt.store, &id, &m).await?.id)
                    }
                    other => other,
                };
                let filter = memory::VersionFilter {
                    memory_id,
                    ..Default::default()
                };
                answer(
                    r,
                    List {
                        data: memory::list_versions(&rt.store, &id, filter, true).await?,
                    },
                )
            }
            Dispatch::MemoryRedact(p, r) => {
                let id = memory::resolve(&rt.store, &p.store).await?.id;
                answer(
                    r,
                    memory::redact_version(&rt.store, &id, &p.version, memory::local_user())
                        .await?,
                )
            }
            Dispatch::DeploymentCreate(spec, r) => answer(
                r,
                schedules::deployments::create(&rt, spec, chrono::Utc::now()).await?,
            ),
            Dispatch::DeploymentList(p, r) => {
                let filter = schedules::deployments::Filter {
                    agent_id: p.agent_id,
                    include_archived: p.all,
                    status: p.status,
                };
                answer(
                    r,
                    List {
                        data: schedules::deployments::list(&rt, &filter).await?,
                    },
                )
            }
            Dispatch::DeploymentGet(p, r) => {
                answer(r, schedules::deployments::get(&rt, &p.deployment).await?)
            }
            Dispatch::DeploymentUpdate(p, r) => {
                let row = schedules::deployments::row(&rt, &p.deployment).await?;
                answer(
                    r,
                    schedules::deployments::update(&rt, row, p.changes, chrono::Utc::now()).await?,
                )
            }
            Dispatch::DeploymentPause(p, r) => {
                let row = schedules::deployments::row(&rt, &p.deployment).await?;
                answer(r, schedules::deployments::pause(&rt, row).await?)
            }
            Dispatch::DeploymentUnpause(p, r) => {
                let row = schedules::deployments::row(&rt, &p.deployment).await?;
                answer(
                    r,
                    schedules::deployments::unpause(&rt, row, chrono::Utc::now()).await?,
                )
            }
            Dispatch::DeploymentArchive(p, r) => {
                let row = schedules::deployments::row(&rt, &p.deployment).await?;
                answer(r, schedules::deployments::archive(&rt, row).await?)
            }
            Dispatch::DeploymentRun(p, r) => {
                let row = schedules::deployments::row(&rt, &p.deployment).await?;
                answer(r, schedules::fire::run_now(&rt, &row).await?)
            }
            Dispatch::DeploymentRuns(p, r) => {
                let deployment = match &p.deployment {
                    Some(d) => Some(schedules::deployments::row(&rt, d).await?.id),
                    None => None,
                };
                let filter = schedules::fire::RunFilter {
                    deployment_id: deployment,
                    has_error: p.has_error,
                    ..Default::default()
                };
                let mut data = schedules::fire::list_runs(&rt, &filter).await?;
                // Newest first, the newest `limit`.
                data.reverse();
                data.truncate(p.limit.unwrap_or(20).clamp(1, 1000) as usize);
                answer(r, List { data })
            }
            Dispatch::DeploymentRunGet(p, r) => {
                answer(r, schedules::fire::get_run(&rt, &p.run).await?)
            }
            Dispatch::WorkflowRunStart(p, r) => {
                answer(r, workflows::run(&rt, &p.session, p.workflow).await?)
            }
            Dispatch::WorkflowList(p, r) => {
                let mut data = workflows::list(&rt, p.session.as_deref(), p.all).await?;
                data.truncate(1000);
                answer(r, List { data })
            }
            Dispatch::WorkflowGet(p, r) => answer(r, workflows::get(&rt, &p.run).await?),
            Dispatch::WorkflowStop(p, r) => answer(r, workflows::stop(&rt, &p.run).await?),
            Dispatch::WorkflowResume(p, r) => answer(r, workflows::resume(&rt, &p.run).await?),
            Dispatch::WorkflowAnswer(p, r) => answer(
                r,
                workflows::answer(&rt, &p.run, &p.task, p.approve, p.note).await?,
            ),
            // self-hosted environments (issue 26)
            Dispatch::EnvironmentKeyGet(p, r) => {
                let q = crate::orchestration::workers::serving(&rt)?;
                let env = crate::orchestration::workers::self_hosted(&rt, &p.environment).await?;
                answer(r, q.key(&env, p.rotate).await?)
            }
            Dispatch::EnvironmentWorkersGet(p, r) => {
                let q = crate::orchestration::workers::serving(&rt)?;
                let env = crate::orchestration::workers::self_hosted(&rt, &p.environment).await?;
                answer(r, q.workers(&env).await?)
            }
            // files (issue 25)
            Dispatch::FileUpload(p, r) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(p.content_base64.as_bytes())
                    .map_err(|e| {
                        ErrorBody::new(
                            ErrorCode::InvalidParams,
                            format!("content_base64 is not base64: {e}"),
                        )
                    })?;
                let max = rt.config.files.max_bytes;
                let f = crate::resources::files::store_bytes(
                    &rt.store,
                    &rt.paths,
                    max,
                    &p.filename,
                    p.mime_type,
                    &bytes,
                )
                .await?;
                answer(r, f)
            }
            Dispatch::FileList(_, r) => {
                let mut data = crate::resources::files::list(&rt.store, None).await?;
                data.reverse();
                answer(r, List { data })
            }
            Dispatch::FileGet(p, r) => answer(
                r,
                crate::resources::files::get(&rt.store, &p.file_id).await?,
            ),
            Dispatch::FileRead(p, r) => {
                use base64::Engine as _;
                let length = p.length.min(tether_proto::file::MAX_SOCKET_UPLOAD as u64);
                let (bytes, eof) = crate::resources::files::read_slice(
                    &rt.store, &rt.paths, &p.file_id, p.offset, length,
                )
                .await?;
                answer(
                    r,
                    tether_proto::file::FileChunk {
                        content_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
                        eof,
                    },
                )
            }
            Dispatch::FileDelete(p, r) => answer(
                r,
                crate::resources::files::delete(&rt.store, &rt.paths, &p.file_id).await?,
            ),
            // webhooks (issue 20)
            Dispatch::WebhookCreate(p, r) => {
                answer(r, crate::webhooks::create(&rt.store, p).await?)
            }
            Dispatch::WebhookList(_, r) => answer(
                r,
                List {
                    data: crate::webhooks::list(&rt.store).await?,
                },
            ),
            Dispatch::WebhookDelete(p, r) => {
                answer(r, crate::webhooks::delete(&rt.store, &p.webhook).await?)
            }
            Dispatch::WebhookDeliveries(p, r) => answer(
                r,
                List {
                    data: crate::webhooks::deliveries(&rt.store, p).await?,
                },
            ),
            Dispatch::WebhookRedeliver(p, r) => {
                answer(r, crate::webhooks::redeliver(&rt.store, p).await?)
            }
            // skills (issue 25)
            Dispatch::SkillCreate(p, r) => {
                let files = crate::resources::skills::decode_files(p.files)?;
                answer(
                    r,
                    crate::resources::skills::create(&rt.store, &rt.paths, p.display_name, files)
                        .await?,
                )
            }
            Dispatch::SkillVersionCreate(p, r) => {
                let files = crate::resources::skills::decode_files(p.files)?;
                let id = crate::resources::skills::find(&rt.store, &p.skill_id)
                    .await?
                    .id;
                answer(
                    r,
                    crate::resources::skills::create_version(&rt.store, &rt.paths, &id, files)
                        .await?,
                )
            }
            Dispatch::SkillList(_, r) => {
                let mut data = crate::resources::skills::list(&rt.store).await?;
                data.reverse();
                answer(r, List { data })
            }
            Dispatch::SkillGet(p, r) => {
                let skill = crate::resources::skills::find(&rt.store, &p.skill).await?;
                let mut versions = crate::resources::skills::versions(&rt.store, &skill.id).await?;
                versions.reverse();
                let files = crate::resources::skills::version_files(
                    &rt.store,
                    &skill.id,
                    &skill.latest_version_id,
                )
                .await?;
                answer(
                    r,
                    tether_proto::skill::SkillDetail {
                        skill,
                        versions,
                        files,
                    },
                )
            }
            Dispatch::SkillDelete(p, r) => {
                let id = crate::resources::skills::find(&rt.store, &p.skill)
                    .await?
                    .id;
                answer(
                    r,
                    crate::resources::skills::delete(&rt.store, &rt.paths, &id).await?,
                )
            }
            // the fleet, pushed (issue 20)
            Dispatch::SessionsWatch(p, r) => {
                // Subscribe before listing: a change after the list is read is never missed,
                // and one the list already shows is numbered at or below `seq`.
                let (rx, seq) = rt.session_changes.subscribe();
                let data = rt.list(p.all).await?;
                let sent = data.iter().map(|s| (s.id.clone(), s.clone())).collect();
                let watching = tether_proto::watch::SessionsWatching { data, seq };
                // The reply goes first, then the pushes.
                if out
                    .send(&ServerFrame::result(id, answer(r, watching)))
                    .await
                    .is_err()
                {
                    return Ok(None);
                }
                tokio::spawn(watch_sessions(
                    rt.clone(),
                    p.all,
                    rx,
                    seq,
                    sent,
                    out.clone(),
                ));
                return Ok(None);
            }
            // MCP elicitation (issue 25)
            Dispatch::SessionElicitations(p, r) => {
                let mut s = rt.session(&p.session).await?;
                if let Some(thread) = &p.thread {
                    s = crate::orchestration::threads::find(&rt, &s, thread).await?;
                }
                let data = crate::session::elicitation::list(&s, p.all);
                answer(r, List { data })
            }
            Dispatch::SessionElicitationAnswer(p, r) => {
                let s = rt.session(&p.session).await?;
                self.check_writable(&s)?;
                // A child thread's, answered by id on its session (or on the thread named):
                // the thread records it.
                let t = match &p.thread {
                    Some(thread) => crate::orchestration::threads::find(&rt, &s, thread).await?,
                    None => {
                        crate::orchestration::threads::elicitation_holder(
                            &rt,
                            &s,
                            &p.elicitation_id,
                        )
                        .await?
                    }
                };
                let event =
                    crate::session::elicitation::answer(&t, &p.elicitation_id, p.action, p.content)
                        .await?;
                let event =
                    crate::orchestration::threads::as_seen_by_primary(&rt, &s, &t, event).await;
                answer(
                    r,
                    Recorded {
                        event,
                        session: s.info(),
                    },
                )
            }
            // MCP client credentials (issue 25, mcpauth2)
            Dispatch::CredentialClientCredentials(p, r) => {
                let id = vaults::resolve_vault(&rt.store, &p.vault).await?.id;
                answer(
                    r,
                    vaults::login::client_credentials(&rt.store, &rt.paths.data_dir, &id, p)
                        .await?,
                )
            }
        };
        Ok(Some(v))
    }
}

/// A method's `result` value, from that method's result type; one that cannot be encoded
/// answers null.
use crate::orchestration::memory;
use crate::orchestration::workflows;
use crate::resources::vaults;

fn answer<M: Method>(reply: Reply<M>, result: M::Result) -> Value {
    reply.encode(&result).unwrap_or(Value::Null)
}

// sessions.watch (issue 20)
/// How long a session watcher gathers notes before it pushes: one push per burst.
const WATCH_COALESCE: Duration = Duration::from_millis(50);

/// Pushes `sessions` frames to a `sessions.watch` client until its connection closes: per
/// burst of notes, the summaries that differ from what it was last sent and the ids that
/// left its list. A watcher that lagged the feed gets the whole list again (`resync`).
/// Waits on nothing but the feed while no session changes.
async fn watch_sessions(
    rt: Arc<Runtime>,
    all: bool,
    mut rx: broadcast::Receiver<crate::session::changes::Changed>,
    mut seq: u64,
    mut sent: HashMap<String, tether_proto::SessionInfo>,
    out: Outbox,
) {
    use broadcast::error::{RecvError, TryRecvError};
    loop {
        let mut ids: Vec<String> = Vec::new();
        let mut top = seq;
        let mut lagged = false;
        let mut take = |c: crate::session::changes::Changed| {
            if c.seq > seq {
                top = top.max(c.seq);
                if !ids.contains(&c.id) {
                    ids.push(c.id);
                }
            }
        };
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = out.tx.closed() => return,
            _ = rt.shutdown.cancelled() => return,
        };
        match first {
            Ok(c) => take(c),
            Err(RecvError::Lagged(_)) => lagged = true,
            Err(RecvError::Closed) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_COALESCE) => {}
            _ = out.tx.closed() => return,
        }
        loop {
            match rx.try_recv() {
                Ok(c) => take(c),
                Err(TryRecvError::Lagged(_)) => lagged = true,
                Err(_) => break,
            }
        }
        let push = if lagged {
            // Number first, then list: what the list shows is at least that new.
            let (_, now) = rt.session_changes.subscribe();
            let Ok(data) = rt.list(all).await else {
                continue;
            };
            sent = data.iter().map(|s| (s.id.clone(), s.clone())).collect();
            seq = now;
            tether_proto::watch::SessionsChanged {
                seq,
                changed: data,
                removed: Vec::new(),
                resync: true,
            }
        } else {
            let mut push = tether_proto::watch::SessionsChanged {
                seq: top,
                ..Default::default()
            };
            seq = top;
            for id in ids {
                match rt.info(&id).await {
                    Ok(info) if all || info.archived_at.is_none() => {
                        if sent.get(&id) != Some(&info) {
                            sent.insert(id, info.clone());
                            push.changed.push(info);
                        }
                    }
                    // A store hiccup is not a removal: the next note tries again.
                    Err(e) if e.code != ErrorCode::NotFound => {}
                    // Deleted, or archived out of the list.
                    _ => {
                        if sent.remove(&id).is_some() {
                            push.removed.push(id);
                        }
                    }
                }
            }
            if push.changed.is_empty() && push.removed.is_empty() {
                continue;
            }
            push
        };
        if out.send(&ServerFrame::Sessions(push)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod watch_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    async fn runtime() -> (tempfile::TempDir, Arc<Runtime>) {
        crate::provider::http::install_crypto_provider();
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().display().to_string();
        let paths = tether_proto::Paths::resolve(|k| (k == "TETHER_HOME").then(|| home.clone()), 0);
        std::fs::create_dir_all(&paths.data_dir).unwrap();
        let store = crate::store::Store::open(&paths.db()).unwrap();
        crate::resources::agents::ensure_default(&store)
            .await
            .unwrap();
        crate::resources::environments::ensure_default(&store)
            .await
            .unwrap();
        let mut config = crate::config::Config::default();
        config.anthropic.base_url = Some("http://127.0.0.1:9".into());
        (tmp, Runtime::new(store, paths, config))
    }

    async fn next_push(q: &mut Outq) -> tether_proto::watch::SessionsChanged {
        let out = tokio::time::timeout(Duration::from_secs(10), q.rx.recv())
            .await
            .expect("a push within 10 s")
            .expect("the watcher is running");
        q.took(&out);
        let line = String::from_utf8(out.bytes.to_vec()).unwrap();
        match serde_json::from_str(line.trim()).unwrap() {
            ServerFrame::Sessions(c) => c,
            other => panic!("expected a sessions push, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_rename_is_pushed_once_and_a_delete_as_removed() {
        let (_tmp, rt) = runtime().await;
        let s = rt
            .create(tether_proto::method::CreateSession::default())
            .await
            .unwrap();
        let (rx, seq) = rt.session_changes.subscribe();
        let list = rt.list(false).await.unwrap();
        assert_eq!(list.len(), 1);
        let sent = list.iter().map(|s| (s.id.clone(), s.clone())).collect();
        let (out, mut q) = Outbox::new();
        let task = tokio::spawn(watch_sessions(rt.clone(), false, rx, seq, sent, out));
        // A note with nothing new to say sends nothing; the rename that follows does.
        rt.session_changes.note(&s.id);
        rt.rename(&s, "renamed".into()).await.unwrap();
        let push = next_push(&mut q).await;
        assert!(push.seq > seq && !push.resync, "{push:?}");
        assert_eq!(push.changed.len(), 1);
        assert_eq!(push.changed[0].name.as_deref(), Some("renamed"));
        rt.delete(&s).await.unwrap();
        let push = next_push(&mut q).await;
        assert_eq!(push.removed, vec![s.id.clone()]);
        assert!(push.changed.is_empty());
        task.abort();
    }

    #[tokio::test]
    async fn a_watcher_that_lagged_gets_the_whole_list_again() {
        let (_tmp, rt) = runtime().await;
        let s = rt
            .create(tether_proto::method::CreateSession::default())
            .await
            .unwrap();
        let (rx, seq) = rt.session_changes.subscribe();
        let (out, mut q) = Outbox::new();
        // It was told nothing yet: a resync is the only way it learns of the session.
        let task = tokio::spawn(watch_sessions(
            rt.clone(),
            false,
            rx,
            seq,
            HashMap::new(),
            out,
        ));
        for _ in 0..crate::session::changes::CAPACITY + 10 {
            rt.session_changes.note("sesn_nobody");
        }
        let push = next_push(&mut q).await;
        assert!(push.resync, "{push:?}");
        assert!(push.seq >= seq + crate::session::changes::CAPACITY as u64);
        assert_eq!(push.changed.len(), 1);
        assert_eq!(push.changed[0].id, s.id);
        // And it goes on from there: later notes are numbered above the resync.
        rt.rename(&s, "after".into()).await.unwrap();
        let next = next_push(&mut q).await;
        assert!(next.seq > push.seq && !next.resync);
        assert_eq!(next.changed[0].name.as_deref(), Some("after"));
        task.abort();
    }
}

/// Pushes a build's progress to a watching client until the build ends (the last push has
/// status `ready` or `failed`). The reply to `environment.watch` is queued before this runs.
async fn forward_build(
    first: tether_proto::environment::BuildProgress,
    mut rx: tokio::sync::broadcast::Receiver<tether_proto::environment::BuildProgress>,
    out: Outbox,
) {
    let mut next = Some(first);
    loop {
        let p = match next.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Ok(p) => p,
                // A slow watcher misses some output lines, never the end.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        let end = matches!(
            p.status,
            tether_proto::environment::BuildStatus::Ready
                | tether_proto::environment::BuildStatus::Failed
        );
        if out.send(&ServerFrame::Build(p)).await.is_err() || end {
            return;
        }
    }
}

/// The attach contract: (subscribed already) replay `seq > after_seq` from the log, send the
/// in-progress snapshot, then live pushes with already-sent seqs dropped. A live push that
/// finds the client's queue full ends the feed with a resync from the last seq queued.
async fn forward(
    session: Arc<Session>,
    mut rx: broadcast::Receiver<Push>,
    after_seq: u64,
    out: Outbox,
) {
    let mut last_sent = after_seq;
    loop {
        let page = match session
            .services
            .store
            .read_events(&session.id, last_sent, None, REPLAY_PAGE, false)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let _ = out
                    .send(&ServerFrame::Error(ErrorBody::new(
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
            if out.send(&ServerFrame::Event(Box::new(ev))).await.is_err() {
                return;
            }
        }
        if done {
            break;
        }
    }
    let snapshot = session.snapshot();
    let delta_floor = snapshot.delta_n;
    if out.send(&ServerFrame::Snapshot(snapshot)).await.is_err() {
        return;
    }
    let caught_up = ServerFrame::CaughtUp(CaughtUp {
        session_id: session.id.clone(),
        last_seq: last_sent,
    });
    if out.send(&caught_up).await.is_err() {
        return;
    }
    let mut burst: Vec<Push> = Vec::with_capacity(LIVE_BURST);
    let mut parts: Vec<Bytes> = Vec::with_capacity(LIVE_BURST);
    let why = loop {
        // Wait for one push, give the rest of the burst a moment to arrive, then take all that
        // is there: one wake-up, one queue entry and one write per burst, not per push.
        let mut lagged = None;
        match rx.recv().await {
            Ok(p) => burst.push(p),
            Err(broadcast::error::RecvError::Lagged(skipped)) => lagged = Some(skipped),
            Err(broadcast::error::RecvError::Closed) => return,
        }
        if rx.len() < LIVE_BURST {
            tokio::time::sleep(LIVE_COALESCE).await;
        }
        while lagged.is_none() && burst.len() < LIVE_BURST {
            match rx.try_recv() {
                Ok(p) => burst.push(p),
                Err(broadcast::error::TryRecvError::Lagged(skipped)) => lagged = Some(skipped),
                Err(_) => break,
            }
        }
        let mut burst_last = last_sent;
        let mut run = DeltaRun::default();
        for push in burst.drain(..) {
            match &push {
                Push::Event(w) if w.value.seq <= burst_last => continue,
                Push::Event(w) => burst_last = w.value.seq,
                Push::Delta(w) if w.value.n <= delta_floor => continue,
                Push::Delta(w) => {
                    run.add(w.clone(), &mut parts);
                    continue;
                }
            }
            run.flush(&mut parts);
            parts.push(push_bytes(&push));
        }
        run.flush(&mut parts);
        let bytes = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => {
                let joined = Bytes::from(parts.concat());
                parts.clear();
                Some(joined)
            }
        };
        if let Some(bytes) = bytes {
            match out.offer(bytes) {
                Ok(()) => last_sent = burst_last,
                Err(Offer::Full) => {
                    break format!(
                        "its outbound queue is full ({OUTBOUND_QUEUE} entries or {} MiB)",
                        MAX_QUEUED_BYTES >> 20
                    );
                }
                Err(Offer::Gone) => return,
            }
        }
        if let Some(skipped) = lagged {
            break format!("its feed lagged the session by {skipped} pushes");
        }
    };
    tracing::info!(session = %session.id, last_sent, "a client fell behind ({why}); asking it to resync");
    // Waits for room; only this client's feed waits.
    let _ = out
        .send(&ServerFrame::Resync(Resync {
            session_id: session.id.clone(),
            from_seq: last_sent + 1,
        }))
        .await;
}

#[derive(Debug, PartialEq, Eq)]
enum WriteEnd {
    /// The queue closed or a closing frame was sent.
    Closed,
    /// Writing failed: the peer went away.
    PeerGone,
    /// The peer did not accept a write within the timeout.
    TimedOut,
}

const HEARTBEAT_FRAME: &[u8] = b"{\"heartbeat\":{}}\n";

/// Writes queued frames in batches; a heartbeat when nothing was queued for `heartbeat`; gives
/// up on a peer that does not take a batch within `write_timeout`.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut q: Outq,
    heartbeat: Duration,
    write_timeout: Duration,
) -> WriteEnd {
    // Grows with the first batch: an idle client costs no 64 KiB buffer.
    let mut buf = Vec::new();
    loop {
        let mut closing = false;
        match tokio::time::timeout(heartbeat, q.rx.recv()).await {
            Ok(Some(o)) => {
                q.took(&o);
                closing = o.closing;
                buf.extend_from_slice(&o.bytes);
            }
            Ok(None) => break,
            Err(_) => buf.extend_from_slice(HEARTBEAT_FRAME),
        }
        // Batch whatever else is already queued into one write.
        while !closing && buf.len() < WRITE_BATCH {
            match q.rx.try_recv() {
                Ok(o) => {
                    q.took(&o);
                    closing = o.closing;
                    buf.extend_from_slice(&o.bytes);
                }
                Err(_) => break,
            }
        }
        match tokio::time::timeout(write_timeout, writer.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return WriteEnd::PeerGone,
            Err(_) => return WriteEnd::TimedOut,
        }
        buf.clear();
        if closing {
            break;
        }
    }
    let _ = writer.shutdown().await;
    WriteEnd::Closed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::session::live::Wire;
    use tether_proto::{DeltaKind, EventBody};

    #[test]
    fn shared_push_bytes_are_the_server_frame_bytes() {
        let ev = Event {
            id: "sevt_1".into(),
            session_id: "sesn_1".into(),
            seq: 7,
            processed_at: Some("2026-11-25T10:00:00Z".into()),
            session_thread_id: None,
            body: EventBody::user_text("hi"),
        };
        let push = Push::Event(Wire::new(ev.clone()));
        let expected = encode_frame(&ServerFrame::Event(Box::new(ev))).unwrap();
        assert_eq!(push_bytes(&push), expected);
        // Encoded once: the second call returns the same buffer.
        assert_eq!(push_bytes(&push).as_ptr(), push_bytes(&push).as_ptr());

        let d = Delta {
            session_id: "sesn_1".into(),
            n: 3,
            kind: DeltaKind::Text {
                index: 0,
                text: "x".into(),
            },
        };
        let expected = encode_frame(&ServerFrame::Delta(d.clone())).unwrap();
        assert_eq!(push_bytes(&Push::Delta(Wire::new(d))), expected);
    }

    fn text_delta(n: u64, index: u32, text: &str) -> Arc<Wire<Delta>> {
        Wire::new(Delta {
            session_id: "sesn_1".into(),
            n,
            kind: DeltaKind::Text {
                index,
                text: text.into(),
            },
        })
    }

    fn decoded(parts: &[Bytes]) -> Vec<ServerFrame> {
        let mut decoder = FrameDecoder::default();
        for p in parts {
            decoder.push(p);
        }
        std::iter::from_fn(|| decoder.next_frame().unwrap())
            .map(|line| serde_json::from_str(&line).unwrap())
            .collect()
    }

    #[test]
    fn a_burst_of_continuing_deltas_goes_out_as_one() {
        let mut run = DeltaRun::default();
        let mut parts = Vec::new();
        for (n, t) in [(1, "he"), (2, "ll"), (3, "o")] {
            run.add(text_delta(n, 0, t), &mut parts);
        }
        // Another block starts a new run; a lone delta keeps its shared encoding.
        let lone = text_delta(4, 1, "!");
        run.add(lone.clone(), &mut parts);
        run.flush(&mut parts);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], push_bytes(&Push::Delta(lone)));
        let frames = decoded(&parts);
        let ServerFrame::Delta(first) = &frames[0] else {
            panic!("{frames:?}");
        };
        assert_eq!(first.n, 3, "the merged delta takes the last n");
        assert_eq!(
            first.kind,
            DeltaKind::Text {
                index: 0,
                text: "hello".into()
            }
        );
        // Nothing left over after a flush.
        run.flush(&mut parts);
        assert_eq!(parts.len(), 2);
    }

    #[test]
    fn heartbeat_frame_is_the_protocol_heartbeat() {
        assert_eq!(
            HEARTBEAT_FRAME,
            encode_frame(&ServerFrame::Heartbeat {}).unwrap()
        );
    }

    #[tokio::test]
    async fn an_idle_connection_gets_heartbeats() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (tx, q) = Outbox::new();
        let task = tokio::spawn(write_loop(
            ours,
            q,
            Duration::from_millis(20),
            Duration::from_secs(5),
        ));
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 2 * HEARTBEAT_FRAME.len() {
            let n = theirs.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got[..HEARTBEAT_FRAME.len()], HEARTBEAT_FRAME);
        drop(tx);
        assert_eq!(task.await.unwrap(), WriteEnd::Closed);
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_is_dropped() {
        let (ours, _theirs_never_reads) = UnixStream::pair().unwrap();
        let (tx, q) = Outbox::new();
        let task = tokio::spawn(write_loop(
            ours,
            q,
            Duration::from_secs(60),
            Duration::from_millis(200),
        ));
        // Far more than the socket buffer holds.
        let chunk = Bytes::from(vec![b'x'; 1024 * 1024]);
        for _ in 0..16 {
            if tx
                .tx
                .send(Out {
                    bytes: chunk.clone(),
                    closing: false,
                })
                .await
                .is_err()
            {
                break;
            }
        }
        let end = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the writer gave up on the stalled peer")
            .unwrap();
        assert_eq!(end, WriteEnd::TimedOut);
    }

    #[tokio::test]
    async fn live_pushes_are_refused_past_the_byte_bound_and_accepted_once_written() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (out, q) = Outbox::new();
        let queued = q.queued.clone();
        let chunk = Bytes::from(vec![b'x'; MAX_QUEUED_BYTES / 4]);
        // Nobody drains yet: the fifth quarter does not fit.
        for _ in 0..4 {
            assert!(out.offer(chunk.clone()).is_ok());
        }
        assert!(matches!(out.offer(chunk.clone()), Err(Offer::Full)));
        // The writer takes entries and the room comes back.
        let task = tokio::spawn(write_loop(
            ours,
            q,
            Duration::from_secs(60),
            Duration::from_secs(60),
        ));
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0;
        while read < MAX_QUEUED_BYTES {
            read += theirs.read(&mut buf).await.unwrap();
        }
        assert_eq!(queued.load(Ordering::Relaxed), 0);
        assert!(out.offer(chunk).is_ok());
        drop(out);
        task.abort();
    }
}
