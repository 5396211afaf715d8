//! The daemon client: connects to the daemon over a [`crate::transport`] link (the local
//! socket, starting `tetherd` when none runs, or a remote one through ssh), handshakes, and
//! makes requests while buffering pushes for whoever streams them.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tether_proto::{
    Call, ClientFrame, ErrorBody, ErrorCode, FrameDecoder, Hello, Method, Outcome,
    PROTOCOL_VERSION, Paths, Request, ServerFrame, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::transport::{Link, SshTarget, Target, Unreachable};

/// Heartbeat intervals without a byte from the daemon before the link counts as dead.
const MISSED_HEARTBEATS: u32 = 3;
/// How long the daemon may take to answer hello: locally, and through ssh (which may be asking
/// for a passphrase meanwhile).
const HANDSHAKE_TIMEOUT_LOCAL: Duration = Duration::from_secs(15);
const HANDSHAKE_TIMEOUT_SSH: Duration = Duration::from_secs(120);

/// The remote daemon this process talks to (`--remote`/`TETHER_REMOTE`), if any.
static REMOTE: OnceLock<SshTarget> = OnceLock::new();

/// Makes every later [`Client::connect`]/[`Client::connect_existing`] in this process go to
/// `remote` over ssh instead of the local socket. Set once, by `main`.
pub fn use_remote(remote: SshTarget) {
    let _ = REMOTE.set(remote);
}

/// The daemon this process talks to: the `--remote` one, else the local one at `paths`.
pub fn target(paths: &Paths) -> Target {
    match REMOTE.get() {
        Some(r) => Target::Ssh(r.clone()),
        None => Target::Local(paths.clone()),
    }
}

pub fn is_remote() -> bool {
    REMOTE.get().is_some()
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached or started (exit code 3).
    #[error("{0}")]
    Unreachable(String),
    /// The daemon answered with an error.
    #[error("{}", .0.message)]
    Daemon(ErrorBody),
    /// The connection broke mid-conversation.
    #[error("lost the connection to tetherd: {0}")]
    Disconnected(String),
    #[error("unexpected reply from tetherd: {0}")]
    Protocol(String),
}

impl From<Unreachable> for ClientError {
    fn from(e: Unreachable) -> ClientError {
        ClientError::Unreachable(e.0)
    }
}

impl ClientError {
    pub fn code_is(&self, code: tether_proto::ErrorCode) -> bool {
        matches!(self, ClientError::Daemon(e) if e.code == code)
    }
}

pub struct Client {
    link: Link,
    target: Target,
    /// No byte for this long means the link is dead (from the daemon's heartbeat interval).
    dead_after: Option<Duration>,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    next_id: u64,
    pushes: VecDeque<ServerFrame>,
    pub daemon_pid: u32,
    pub daemon_version: String,
}

pub fn paths() -> Paths {
    Paths::resolve(|k| std::env::var(k).ok(), nix::unistd::geteuid().as_raw())
}

impl Client {
    /// Connects to this process's daemon (see [`target`]) if it is running; never starts one.
    pub async fn connect_existing(paths: &Paths) -> Result<Client, ClientError> {
        Client::open(&target(paths), false).await
    }

    /// Connects to this process's daemon (see [`target`]), starting it first if none runs.
    pub async fn connect(paths: &Paths) -> Result<Client, ClientError> {
        Client::open(&target(paths), true).await
    }

    /// A fresh connection to the same daemon, which must be running (after a dropped link).
    pub async fn reconnect(&self) -> Result<Client, ClientError> {
        Client::open(&self.target, false).await
    }

    /// Connects to the daemon at `target` (one host of the fleet), starting it if `start`.
    pub async fn connect_to(target: &Target, start: bool) -> Result<Client, ClientError> {
        Client::open(target, start).await
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    async fn open(target: &Target, start: bool) -> Result<Client, ClientError> {
        let link = Link::open(target, start).await?;
        let mut c = Client {
            link,
            target: target.clone(),
            dead_after: Some(match target {
                Target::Local(_) => HANDSHAKE_TIMEOUT_LOCAL,
                Target::Ssh(_) => HANDSHAKE_TIMEOUT_SSH,
            }),
            decoder: FrameDecoder::default(),
            buf: vec![0; 64 * 1024],
            next_id: 1,
            pushes: VecDeque::new(),
            daemon_pid: 0,
            daemon_version: String::new(),
        };
        match c.handshake().await {
            Ok(()) => Ok(c),
            Err(e) => Err(c.explain(e).await),
        }
    }

    async fn handshake(&mut self) -> Result<(), ClientError> {
        let ours = env!("CARGO_PKG_VERSION");
        self.send_frame(&ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: "tether-cli".into(),
            version: ours.into(),
        }))
        .await?;
        match self.read_frame().await? {
            ServerFrame::Welcome(w) if w.protocol != PROTOCOL_VERSION => {
                Err(ClientError::Daemon(ErrorBody::new(
                    ErrorCode::ProtocolMismatch,
                    format!(
                        "version mismatch: this tether {ours} speaks protocol {PROTOCOL_VERSION}, but tetherd {} at {} speaks protocol {}; install the same tether version on both ends",
                        w.daemon_version, self.target, w.protocol
                    ),
                )))
            }
            ServerFrame::Welcome(w) => {
                self.daemon_pid = w.pid;
                self.daemon_version = w.daemon_version.clone();
                self.dead_after = w.heartbeat_ms.map(|ms| {
                    Duration::from_millis(ms) * MISSED_HEARTBEATS + Duration::from_secs(1)
                });
                Ok(())
            }
            ServerFrame::Error(e) => Err(ClientError::Daemon(e)),
            other => Err(ClientError::Protocol(format!(
                "expected welcome, got {other:?}"
            ))),
        }
    }

    /// Adds what ssh said to a failed remote handshake, and what to do about it.
    async fn explain(&mut self, e: ClientError) -> ClientError {
        let Target::Ssh(t) = self.target.clone() else {
            return e;
        };
        match e {
            ClientError::Disconnected(_) | ClientError::Protocol(_) => {
                let said = self
                    .link
                    .stderr_tail()
                    .await
                    .map(|s| format!(" ssh said: {s}."))
                    .unwrap_or_default();
                let remote = t.remote_command();
                ClientError::Unreachable(format!(
                    "cannot reach tetherd on {} through `{remote} proxy`:{said} Check that `{} {remote} --version` works; if tether is not on the remote PATH, set TETHER_REMOTE_COMMAND=/path/to/tether",
                    self.target,
                    t.describe(),
                ))
            }
            ClientError::Daemon(mut b) if b.code == ErrorCode::ProtocolMismatch => {
                b.message = format!("{} (remote {})", b.message, self.target);
                ClientError::Daemon(b)
            }
            other => other,
        }
    }

    async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        let bytes = encode_frame(frame).map_err(ClientError::Daemon)?;
        let w = &mut self.link.writer;
        match w.write_all(&bytes).await {
            Ok(()) => w.flush().await,
            Err(e) => Err(e),
        }
        .map_err(|e| ClientError::Disconnected(e.to_string()))
    }

    /// The next frame other than a heartbeat. Silence longer than a few heartbeat intervals
    /// means the link is dead.
    async fn read_frame(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(line)) => {
                    match serde_json::from_str(&line) {
                        Ok(ServerFrame::Heartbeat {}) => continue,
                        Ok(f) => return Ok(f),
                        Err(e) => {
                            return Err(ClientError::Protocol(format!(
                                "{e} in frame {}",
                                truncate(&line, 200)
                            )));
                        }
                    };
                }
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.message)),
            }
            let read = self.link.reader.read(&mut self.buf);
            let n = match self.dead_after {
                Some(limit) => tokio::time::timeout(limit, read).await.map_err(|_| {
                    ClientError::Disconnected(format!(
                        "no word from tetherd at {} for {} s (no reply, not even a heartbeat); the link looks dead",
                        self.target,
                        limit.as_secs()
                    ))
                })?,
                None => read.await,
            }
            .map_err(|e| ClientError::Disconnected(e.to_string()))?;
            if n == 0 {
                return Err(ClientError::Disconnected(format!(
                    "tetherd at {} closed the connection",
                    self.target
                )));
            }
            self.decoder.push(&self.buf[..n]);
        }
    }

    /// Makes a request and waits for its reply; pushes that arrive meanwhile are kept.
    async fn call(&mut self, call: Call) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let (method, params) = call.into_parts();
        self.send_frame(&ClientFrame::Request(Request { id, method, params }))
            .await?;
        loop {
            match self.read_frame().await? {
                ServerFrame::Response(r) if r.id == id => {
                    return match r.outcome {
                        Outcome::Result(v) => Ok(v),
                        Outcome::Error(e) => Err(ClientError::Daemon(e)),
                    };
                }
                ServerFrame::Error(e) => return Err(ClientError::Daemon(e)),
                ServerFrame::Response(r) => {
                    return Err(ClientError::Protocol(format!(
                        "reply for request {} while waiting for {id}",
                        r.id
                    )));
                }
                push => self.pushes.push_back(push),
            }
        }
    }

    /// Makes a request of method `M` and reads its answer as `M`'s result type:
    /// `c.request::<rpc::SessionGet>(SessionParams { .. })` gives a `SessionInfo`.
    pub async fn request<M: Method>(
        &mut self,
        params: M::Params,
    ) -> Result<M::Result, ClientError> {
        let v = self.call(M::call(params)).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// The next push (event, delta, snapshot, resync...).
    pub async fn next_push(&mut self) -> Result<ServerFrame, ClientError> {
        if let Some(p) = self.pushes.pop_front() {
            return Ok(p);
        }
        match self.read_frame().await? {
            ServerFrame::Error(e) => Err(ClientError::Daemon(e)),
            f => Ok(f),
        }
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
