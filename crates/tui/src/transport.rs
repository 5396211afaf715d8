//! How a client reaches a daemon: the local socket (starting `tetherd` first when allowed and
//! none runs), or `ssh [-p PORT] [USER@]HOST tether proxy` (whose stdio is bridged to the
//! remote daemon's socket). Either way the client gets a byte stream in each direction and
//! speaks the same NDJSON protocol over it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_proto::Paths;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::UnixStream;

/// How long a client waits for a freshly started daemon to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon could not be reached or started (the client's `Unreachable`, exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// Where the daemon is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Local(Paths),
    Ssh(SshTarget),
}

/// `ssh://[user@]host[:port]`, or a bare `[user@]host` (an alias from ~/.ssh/config works).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// What runs `tether` on that host (a `[[remotes]]` entry's `command`); None:
    /// [`remote_command`].
    pub command: Option<String>,
}

impl SshTarget {
    pub fn parse(s: &str) -> Result<SshTarget, String> {
        let bad = |why: &str| {
            format!(
                "--remote {s:?}: {why}; expected ssh://[user@]host[:port], e.g. ssh://me@box:2222"
            )
        };
        let rest = match s.split_once("://") {
            Some(("ssh", rest)) => rest,
            Some((scheme, _)) => return Err(bad(&format!("unsupported scheme `{scheme}`"))),
            None => s,
        };
        let rest = rest.trim_end_matches('/');
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err(bad("empty user name")),
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
                ),
                None => return Err(bad("unclosed [")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| bad(&format!("bad port `{p}`")))
            })
            .transpose()?;
        // A host starting with '-' would be read by ssh as an option.
        if host.is_empty() || host.starts_with('-') || host.contains(['/', ' ']) {
            return Err(bad("bad host name"));
        }
        Ok(SshTarget {
            user,
            host: host.to_string(),
            port,
            command: None,
        })
    }

    /// `[user@]host`, as ssh takes it.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// The command that runs `tether` over there: this target's own, else [`remote_command`].
    pub fn remote_command(&self) -> String {
        self.command.clone().unwrap_or_else(remote_command)
    }

    /// The ssh command line, for messages.
    pub fn describe(&self) -> String {
        match self.port {
            Some(p) => format!("ssh -p {p} {}", self.destination()),
            None => format!("ssh {}", self.destination()),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Local(p) => write!(f, "{}", p.socket().display()),
            Target::Ssh(t) => {
                write!(f, "ssh://{}", t.destination())?;
                if let Some(p) = t.port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
        }
    }
}

/// An open byte stream to a daemon.
pub struct Link {
    pub reader: Box<dyn AsyncRead + Unpin + Send>,
    pub writer: Box<dyn AsyncWrite + Unpin + Send>,
    /// The ssh process; killed when the link is dropped.
    _child: Option<tokio::process::Child>,
    stderr: Option<StderrTail>,
}

/// The last few KiB ssh (or the remote `tether proxy`) wrote to stderr, and the task
/// collecting them (done when ssh closes its stderr).
struct StderrTail {
    bytes: Arc<Mutex<Vec<u8>>>,
    collecting: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Opens the link; `start` lets a missing daemon be started (locally, or by the remote proxy).
    pub async fn open(target: &Target, start: bool) -> Result<Link, Unreachable> {
        match target {
            Target::Local(paths) => Link::local(paths, start).await,
            Target::Ssh(t) => Link::ssh(t, start),
        }
    }

    async fn local(paths: &Paths, start: bool) -> Result<Link, Unreachable> {
        let stream = connect_local(paths, start).await?;
        let (r, w) = stream.into_split();
        Ok(Link {
            reader: Box::new(r),
            writer: Box::new(w),
            _child: None,
            stderr: None,
        })
    }

    fn ssh(t: &SshTarget, start: bool) -> Result<Link, Unreachable> {
        let remote = format!(
            "{} proxy{}",
            t.remote_command(),
            if start { "" } else { " --existing" }
        );
        let mut args: Vec<String> = vec!["-T".into()];
        if let Some(p) = t.port {
            args.extend(["-p".into(), p.to_string()]);
        }
        args.push(t.destination());
        args.push(remote);
        let mut cmd = match std::env::var("TETHER_SSH_COMMAND") {
            // Like GIT_SSH_COMMAND: a shell snippet, our arguments appended.
            Ok(custom) if !custom.trim().is_empty() => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(format!("{custom} \"$@\"")).arg("ssh");
                c
            }
            _ => tokio::process::Command::new("ssh"),
        };
        // ssh's stdin is a socket, not a pipe: written with MSG_NOSIGNAL, an ssh that died
        // (host down) is an EPIPE error to report, not a SIGPIPE that kills this process
        // (SIGPIPE is left at its default so `tether ls | head` ends quietly).
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Unreachable(format!("cannot make a socket pair for ssh: {e}")))?;
        let writer = ours
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(ours))
            .map_err(|e| Unreachable(format!("cannot set up the ssh link: {e}")))?;
        cmd.args(&args)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            Unreachable(format!(
                "cannot run ssh for {}: {e}; install an OpenSSH client or set TETHER_SSH_COMMAND",
                t.describe()
            ))
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Unreachable("ssh started without pipes".into()));
        };
        let tail = Arc::new(Mutex::new(Vec::new()));
        let collecting = tokio::spawn(keep_tail(stderr, tail.clone()));
        Ok(Link {
            reader: Box::new(stdout),
            writer: Box::new(NoSigPipe(writer)),
            _child: Some(child),
            stderr: Some(StderrTail {
                bytes: tail,
                collecting,
            }),
        })
    }

    /// What ssh said on stderr, if this is an ssh link and it said anything. Waits a moment
    /// for ssh to finish saying it (the link is failing anyway).
    pub async fn stderr_tail(&mut self) -> Option<String> {
        let tail = self.stderr.as_mut()?;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut tail.collecting).await;
        let bytes = tail.bytes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let s = String::from_utf8_lossy(&bytes).trim().to_string();
        (!s.is_empty()).then_some(s)
    }
}

/// A socket written with `send(MSG_NOSIGNAL)`: a closed peer is an error, never a signal.
struct NoSigPipe(tokio::net::UnixStream);

impl AsyncWrite for NoSigPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::os::fd::AsRawFd;
        let sock = &self.0;
        loop {
            std::task::ready!(sock.poll_write_ready(cx))?;
            let sent = sock.try_io(tokio::io::Interest::WRITABLE, || {
                nix::sys::socket::send(
                    sock.as_raw_fd(),
                    buf,
                    nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                )
                .map_err(std::io::Error::from)
            });
            match sent {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return std::task::Poll::Ready(other),
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The command that runs `tether` on the remote host: `TETHER_REMOTE_COMMAND` (e.g.
/// `/opt/tether/bin/tether`, or `TETHER_HOME=/srv/t tether`), default `tether` from the remote
/// login shell's PATH.
pub fn remote_command() -> String {
    std::env::var("TETHER_REMOTE_COMMAND")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "tether".into())
}

/// Keeps the last 4 KiB of a child's stderr.
async fn keep_tail(mut stderr: tokio::process::ChildStderr, tail: Arc<Mutex<Vec<u8>>>) {
    const KEEP: usize = 4096;
    let mut buf = [0u8; 1024];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        t.extend_from_slice(&buf[..n]);
        if t.len() > KEEP {
            let cut = t.len() - KEEP;
            t.drain(..cut);
        }
    }
}

/// Connects to the local daemon's socket, starting the daemon first if allowed and needed.
pub async fn connect_local(paths: &Paths, start: bool) -> Result<UnixStream, Unreachable> {
    let socket = paths.socket();
    match UnixStream::connect(&socket).await {
        Ok(s) => Ok(s),
        Err(e) if !start => Err(not_running(&socket, e)),
        Err(_) => {
            start_daemon(paths).await?;
            UnixStream::connect(&socket)
                .await
                .map_err(|e| Unreachable(format!("tetherd started but its socket refused us: {e}")))
        }
    }
}

fn not_running(socket: &Path, e: std::io::Error) -> Unreachable {
    Unreachable(format!(
        "tetherd is not running (no answer on {}: {e}); `tether daemon start` starts it",
        socket.display()
    ))
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

/// Starts `tetherd --detach` and waits until its socket accepts connections. Racing starts are
/// fine: the daemon's lock lets one win and the others exit, and everyone connects to the winner.
pub async fn start_daemon(paths: &Paths) -> Result<u32, Unreachable> {
    std::fs::create_dir_all(&paths.runtime_dir).map_err(|e| {
        Unreachable(format!(
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
            Unreachable(format!(
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
            return Err(Unreachable(format!(
                "tetherd exited during start ({status}): {}",
                log.trim()
            )));
        }
        if Instant::now() > deadline {
            return Err(Unreachable(format!(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ssh_targets_parse() {
        let t = SshTarget::parse("ssh://me@box.example:2222").unwrap();
        assert_eq!(
            (t.user.as_deref(), t.host.as_str(), t.port),
            (Some("me"), "box.example", Some(2222))
        );
        let t = SshTarget::parse("ssh://127.0.0.1:40022/").unwrap();
        assert_eq!(
            (t.user, t.host.as_str(), t.port),
            (None, "127.0.0.1", Some(40022))
        );
        let t = SshTarget::parse("devbox").unwrap();
        assert_eq!(t.destination(), "devbox");
        let t = SshTarget::parse("ssh://root@[::1]:22").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", Some(22)));
        assert_eq!(
            Target::Ssh(SshTarget::parse("ssh://a@b:3").unwrap()).to_string(),
            "ssh://a@b:3"
        );
        for bad in [
            "http://box",
            "ssh://",
            "ssh://box:notaport",
            "ssh://-oProxyCommand=evil",
            "ssh://@box",
        ] {
            assert!(SshTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
