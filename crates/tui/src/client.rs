//! The daemon client: connects to the local socket (starting `tetherd` when none runs),
//! handshakes, and makes requests while buffering pushes for whoever streams them.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tether_proto::{
    Call, ClientFrame, ErrorBody, FrameDecoder, Hello, Outcome, PROTOCOL_VERSION, Paths, Request,
    ServerFrame, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// How long a client waits for a freshly started daemon to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

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

impl ClientError {
    pub fn code_is(&self, code: tether_proto::ErrorCode) -> bool {
        matches!(self, ClientError::Daemon(e) if e.code == code)
    }
}

pub struct Client {
    stream: UnixStream,
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

/// Finds the `tetherd` binary: `TETHER_DAEMON_BIN`, next to this executable, or on PATH.
pub fn daemon_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TETHER_DAEMON_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let sibling = dir.join("tetherd");
        if sibling.exists() {
            return sibling;
        }
    }
    PathBuf::from("tetherd")
}

impl Client {
    /// Connects to a running daemon only.
    pub async fn connect_existing(paths: &Paths) -> Result<Client, ClientError> {
        let socket = paths.socket();
        let stream = UnixStream::connect(&socket).await.map_err(|e| {
            ClientError::Unreachable(format!(
                "tetherd is not running (no answer on {}: {e}); `tether daemon start` starts it",
                socket.display()
            ))
        })?;
        Client::handshake(stream).await
    }

    /// Connects, starting the daemon first if none is running.
    pub async fn connect(paths: &Paths) -> Result<Client, ClientError> {
        if let Ok(stream) = UnixStream::connect(paths.socket()).await {
            return Client::handshake(stream).await;
        }
        start_daemon(paths).await?;
        let stream = UnixStream::connect(paths.socket()).await.map_err(|e| {
            ClientError::Unreachable(format!("tetherd started but its socket refused us: {e}"))
        })?;
        Client::handshake(stream).await
    }

    async fn handshake(stream: UnixStream) -> Result<Client, ClientError> {
        let mut c = Client {
            stream,
            decoder: FrameDecoder::default(),
            buf: vec![0; 64 * 1024],
            next_id: 1,
            pushes: VecDeque::new(),
            daemon_pid: 0,
            daemon_version: String::new(),
        };
        c.send_frame(&ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: "tether-cli".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
        .await?;
        match c.read_frame().await? {
            ServerFrame::Welcome(w) => {
                c.daemon_pid = w.pid;
                c.daemon_version = w.daemon_version;
                Ok(c)
            }
            ServerFrame::Error(e) => Err(ClientError::Daemon(e)),
            other => Err(ClientError::Protocol(format!(
                "expected welcome, got {other:?}"
            ))),
        }
    }

    async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        let bytes = encode_frame(frame).map_err(ClientError::Daemon)?;
        self.stream
            .write_all(&bytes)
            .await
            .map_err(|e| ClientError::Disconnected(e.to_string()))
    }

    async fn read_frame(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(line)) => {
                    return serde_json::from_str(&line).map_err(|e| {
                        ClientError::Protocol(format!("{e} in frame {}", truncate(&line, 200)))
                    });
                }
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.message)),
            }
            let n = self
                .stream
                .read(&mut self.buf)
                .await
                .map_err(|e| ClientError::Disconnected(e.to_string()))?;
            if n == 0 {
                return Err(ClientError::Disconnected(
                    "tetherd closed the connection".into(),
                ));
            }
            self.decoder.push(&self.buf[..n]);
        }
    }

    /// Makes a request and waits for its reply; pushes that arrive meanwhile are kept.
    pub async fn call(&mut self, call: Call) -> Result<Value, ClientError> {
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

    pub async fn call_as<T: DeserializeOwned>(&mut self, call: Call) -> Result<T, ClientError> {
        let v = self.call(call).await?;
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

/// Starts `tetherd --detach` and waits until its socket accepts connections. Racing starts are
/// fine: the daemon's lock lets one win and the others exit, and everyone connects to the winner.
pub async fn start_daemon(paths: &Paths) -> Result<u32, ClientError> {
    std::fs::create_dir_all(&paths.runtime_dir).map_err(|e| {
        ClientError::Unreachable(format!(
            "cannot create the runtime directory {}: {e}",
            paths.runtime_dir.display()
        ))
    })?;
    let start_log = paths.runtime_dir.join("tetherd-start.log");
    let stderr = std::fs::File::create(&start_log)
        .map(std::process::Stdio::from)
        .unwrap_or_else(|_| std::process::Stdio::null());
    let bin = daemon_binary();
    let mut child = std::process::Command::new(&bin)
        .arg("--detach")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| {
            ClientError::Unreachable(format!(
                "cannot start the daemon `{}`: {e}; put tetherd next to tether or on PATH, or set TETHER_DAEMON_BIN",
                bin.display()
            ))
        })?;
    let pid = child.id();
    let deadline = Instant::now() + START_TIMEOUT;
    let mut delay = Duration::from_millis(2);
    loop {
        if UnixStream::connect(paths.socket()).await.is_ok() {
            // Reap it in the background if it exits later (it setsid()s and keeps running).
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait()
            && status.code() != Some(75)
        {
            let log = std::fs::read_to_string(&start_log).unwrap_or_default();
            return Err(ClientError::Unreachable(format!(
                "tetherd exited during start ({status}): {}",
                log.trim()
            )));
        }
        if Instant::now() > deadline {
            return Err(ClientError::Unreachable(format!(
                "tetherd did not open {} within {} s; its log is in {}",
                paths.socket().display(),
                START_TIMEOUT.as_secs(),
                paths.log_dir.display()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
