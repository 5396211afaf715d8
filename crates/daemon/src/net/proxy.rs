//! The host-side allow-list proxy of a `limited` session, on a Unix socket that is bind-mounted
//! into the sandbox (the sandbox's own network namespace has only loopback).
//!
//! It speaks HTTP CONNECT (a tunnel, used for https) and absolute-form HTTP
//! (`GET http://host/path`). Every request is checked against the session's [`NetPolicy`](super::NetPolicy)
//! before any DNS lookup, then resolved and connected to exactly the checked addresses. A
//! keep-alive connection is re-checked on every request: each absolute-form request gets its
//! own upstream connection, so a second request can never ride on the first one's.
//! A refusal is a `403` whose body says which rule refused and how to allow it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

use super::policy::{Refusal, Resolver};

/// Largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How long a client connection may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_HEADERS: usize = 128;
/// Hop-by-hop headers that are never forwarded (RFC 9110 §7.6.1), plus the proxy's own.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// A running proxy. Dropping it stops accepting and removes the socket file; connections
/// already tunnelled end with the session's sandbox.
pub struct ProxyHandle {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the accept loop still runs.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Shared {
    policy: Arc<super::LivePolicy>,
    resolver: Arc<dyn Resolver>,
}

/// Starts a proxy listening on `path` (a stale socket file there is replaced). Must be called
/// inside a tokio runtime.
pub fn start(
    path: &Path,
    policy: Arc<super::LivePolicy>,
    resolver: Arc<dyn Resolver>,
) -> std::io::Result<ProxyHandle> {
    if let Some(dir) = path.parent() {
        crate::private::create_dir(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    // Only the daemon's uid could connect before (no write bit for others); now it says so.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let shared = Arc::new(Shared { policy, resolver });
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    tokio::spawn(serve(conn, shared.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(ProxyHandle {
        path: path.to_path_buf(),
        task,
    })
}

/// A stream with the bytes read past the last parsed head.
struct Buffered<S> {
    io: S,
    buf: Vec<u8>,
}

#[derive(Debug)]
enum HeadError {
    Io(std::io::Error),
    /// Not HTTP, or too large; the text is for the 400 body.
    Bad(String),
}

impl From<std::io::Error> for HeadError {
    fn from(e: std::io::Error) -> Self {
        HeadError::Io(e)
    }
}

struct RequestHead {
    method: String,
    target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

struct ResponseHead {
    code: u16,
    reason: String,
    headers: Vec<(String, Vec<u8>)>,
}

/// How a message body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

fn find<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

fn has_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect()
}

/// The body framing from the headers; `Err` for a message whose length can't be known.
fn body_framing(headers: &[(String, Vec<u8>)], is_request: bool) -> Result<Framing, String> {
    if find(headers, "transfer-encoding").is_some() {
        let last_is_chunked = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|(_, v)| v.split(|b| *b == b','))
            .next_back()
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return match (last_is_chunked, is_request) {
            (true, _) => Ok(Framing::Chunked),
            (false, false) => Ok(Framing::UntilClose),
            (false, true) => Err("a request body must be chunked or have a Content-Length".into()),
        };
    }
    let mut length = None;
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        let n: u64 = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or("the Content-Length is not a number")?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting Content-Length headers".into());
        }
        length = Some(n);
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None if is_request => Framing::Empty,
        None => Framing::UntilClose,
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin> Buffered<S> {
    fn new(io: S) -> Self {
        Buffered {
            io,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.io.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next request head; `None` when the client closed the connection between requests.
    async fn read_request(&mut self) -> Result<Option<RequestHead>, HeadError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = RequestHead {
                        method: req.method.unwrap_or_default().to_string(),
                        target: req.path.unwrap_or_default().to_string(),
                        version: req.version.unwrap_or(1),
                        headers: owned_headers(req.headers),
                    };
                    self.buf.drain(..len);
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(HeadError::Bad(format!("not an HTTP request: {e}"))),
            }
            if self.buf.len() > MAX_HEAD {
                return Err(HeadError::Bad("the request head is too large".into()));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(HeadError::Bad("the request head was cut short".into()))
                };
            }
        }
    }

    async fn read_response(&mut self) -> Result<ResponseHead, HeadError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = ResponseHead {
                        code: resp.code.unwrap_or(0),
                        reason: resp.reason.unwrap_or_default().to_string(),
                        headers: owned_headers(resp.headers),
                    };
                    self.buf.drain(..len);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(HeadError::Bad(format!("not an HTTP response: {e}"))),
            }
            if self.buf.len() > MAX_HEAD {
                return Err(HeadError::Bad("the response head is too large".into()));
            }
            if self.fill().await? == 0 {
                return Err(HeadError::Bad("the server closed before answering".into()));
            }
        }
    }

    /// Copies exactly `n` bytes (buffered ones first) to `to`.
    async fn copy_exact<W: AsyncWrite + Unpin>(
        &mut self,
        mut n: u64,
        to: &mut W,
    ) -> std::io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() && self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let take = self.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            to.write_all(&self.buf[..take]).await?;
            self.buf.drain(..take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Copies one CRLF-terminated line to `to` and returns it.
    async fn copy_line<W: AsyncWrite + Unpin>(&mut self, to: &mut W) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                to.write_all(&line).await?;
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(std::io::Error::other("a chunk line is too long"));
            }
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Copies one message body framed as `framing` to `to`.
    async fn copy_body<W: AsyncWrite + Unpin>(
        &mut self,
        framing: Framing,
        to: &mut W,
    ) -> std::io::Result<()> {
        match framing {
            Framing::Empty => Ok(()),
            Framing::Length(n) => self.copy_exact(n, to).await,
            Framing::Chunked => loop {
                let line = self.copy_line(to).await?;
                let size = match httparse::parse_chunk_size(&line) {
                    Ok(httparse::Status::Complete((_, size))) => size,
                    _ => return Err(std::io::Error::other("a bad chunk size line")),
                };
                if size == 0 {
                    // Trailer fields, then the empty line.
                    while self.copy_line(to).await? != b"\r\n" {}
                    return Ok(());
                }
                self.copy_exact(size + 2, to).await?;
            },
            Framing::UntilClose => {
                to.write_all(&self.buf).await?;
                self.buf.clear();
                tokio::io::copy(&mut self.io, to).await.map(|_| ())
            }
        }
    }
}

/// A short plain-text answer from the proxy itself.
async fn answer<W: AsyncWrite + Unpin>(
    to: &mut W,
    code: u16,
    reason: &str,
    body: &str,
    close: bool,
) -> std::io::Result<()> {
    let body = format!("tether proxy: {body}\n");
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if code == 403 {
        head.push_str("X-Proxy-Error: blocked-by-allowlist\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    to.write_all(head.as_bytes()).await?;
    to.write_all(body.as_bytes()).await?;
    to.flush().await
}

/// Checks, resolves and connects: the only way the proxy opens an upstream connection.
async fn connect_checked(
    shared: &Shared,
    host: &str,
    port: u16,
) -> Result<TcpStream, (u16, String)> {
    let refused = |r: Refusal| {
        tracing::info!(host, port, reason = %r, "proxy refused a connection");
        (403, r.to_string())
    };
    let target = shared.policy.get().check(host, port).map_err(refused)?;
    let addrs = target
        .resolve(shared.resolver.as_ref())
        .await
        .map_err(refused)?;
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = format!("cannot connect to {host}:{port} ({addr}): {e}"),
            Err(_) => last = format!("connecting to {host}:{port} ({addr}) timed out"),
        }
    }
    Err((502, last))
}

/// `host:port` of a CONNECT request; `[v6]:port` for IPv6.
fn split_authority(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = authority.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

async fn serve(conn: UnixStream, shared: Arc<Shared>) {
    let mut client = Buffered::new(conn);
    loop {
        let head = match tokio::time::timeout(IDLE_TIMEOUT, client.read_request()).await {
            Err(_) | Ok(Ok(None)) | Ok(Err(HeadError::Io(_))) => return,
            Ok(Err(HeadError::Bad(why))) => {
                let _ = answer(&mut client.io, 400, "Bad Request", &why, true).await;
                return;
            }
            Ok(Ok(Some(head))) => head,
        };
        let keep_going = if head.method.eq_ignore_ascii_case("CONNECT") {
            tunnel(&mut client, &shared, &head).await;
            false
        } else {
            forward(&mut client, &shared, head).await.unwrap_or(false)
        };
        if !keep_going {
            return;
        }
    }
}

/// CONNECT: check, connect, answer 200 and splice both ways until either side closes.
async fn tunnel(client: &mut Buffered<UnixStream>, shared: &Shared, head: &RequestHead) {
    let Some((host, port)) = split_authority(&head.target) else {
        let why = format!("`CONNECT {}`: expected host:port", head.target);
        let _ = answer(&mut client.io, 400, "Bad Request", &why, true).await;
        return;
    };
    let mut upstream = match connect_checked(shared, host, port).await {
        Ok(s) => s,
        Err((code, why)) => {
            let reason = if code == 403 {
                "Forbidden"
            } else {
                "Bad Gateway"
            };
            let _ = answer(&mut client.io, code, reason, &why, true).await;
            return;
        }
    };
    if client
        .io
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    if !client.buf.is_empty() {
        if upstream.write_all(&client.buf).await.is_err() {
            return;
        }
        client.buf.clear();
    }
    let _ = tokio::io::copy_bidirectional(&mut client.io, &mut upstream).await;
}

/// One absolute-form request: check its own target, forward it on a fresh upstream
/// connection, relay the response. `Ok(true)` when the client connection can carry another
/// request.
async fn forward(
    client: &mut Buffered<UnixStream>,
    shared: &Shared,
    head: RequestHead,
) -> std::io::Result<bool> {
    let client_close = head.version == 0 || has_token(&head.headers, "connection", "close");
    let req_framing = match body_framing(&head.headers, true) {
        Ok(f) => f,
        Err(why) => {
            answer(&mut client.io, 400, "Bad Request", &why, true).await?;
            return Ok(false);
        }
    };
    let expects_continue = has_token(&head.headers, "expect", "100-continue");
    // A client waiting for `100 Continue` has not sent its body: answer and close instead of
    // waiting for it.
    let close_on_refusal = client_close || (expects_continue && req_framing != Framing::Empty);
    let url = match reqwest::Url::parse(&head.target) {
        Ok(u) if u.scheme() == "http" && u.host_str().is_some() => u,
        Ok(u) if u.scheme() == "https" => {
            let why = "https goes through CONNECT; set HTTPS_PROXY, not an https:// request line";
            if !close_on_refusal {
                client
                    .copy_body(req_framing, &mut tokio::io::sink())
                    .await?;
            }
            answer(&mut client.io, 400, "Bad Request", why, close_on_refusal).await?;
            return Ok(!close_on_refusal);
        }
        _ => {
            let why = format!(
                "`{} {}`: this is a proxy; send an absolute URL (`GET http://host/path`) or \
                 CONNECT host:port",
                head.method, head.target
            );
            answer(&mut client.io, 400, "Bad Request", &why, true).await?;
            return Ok(false);
        }
    };
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    let mut upstream = match connect_checked(shared, host, port).await {
        Ok(s) => Buffered::new(s),
        Err((code, why)) => {
            // Read past the refused request's body so the next request parses.
            if !close_on_refusal {
                client
                    .copy_body(req_framing, &mut tokio::io::sink())
                    .await?;
            }
            let reason = if code == 403 {
                "Forbidden"
            } else {
                "Bad Gateway"
            };
            answer(&mut client.io, code, reason, &why, close_on_refusal).await?;
            return Ok(!close_on_refusal);
        }
    };
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut out = format!(
        "{} {}{query} HTTP/1.1\r\nHost: {authority}\r\n",
        head.method,
        url.path()
    )
    .into_bytes();
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) || lower == "host" || lower == "expect" {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    upstream.io.write_all(&out).await?;
    if expects_continue {
        client
            .io
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    client.copy_body(req_framing, &mut upstream.io).await?;

    let resp = loop {
        let read = tokio::time::timeout(IDLE_TIMEOUT, upstream.read_response()).await;
        let resp = match read.unwrap_or_else(|_| {
            Err(HeadError::Bad(format!(
                "no answer within {} s",
                IDLE_TIMEOUT.as_secs()
            )))
        }) {
            Ok(r) => r,
            Err(HeadError::Io(e)) => {
                let why = format!("reading the answer of {authority}: {e}");
                answer(&mut client.io, 502, "Bad Gateway", &why, true).await?;
                return Ok(false);
            }
            Err(HeadError::Bad(why)) => {
                let why = format!("{authority}: {why}");
                answer(&mut client.io, 502, "Bad Gateway", &why, true).await?;
                return Ok(false);
            }
        };
        // Interim answers go through as they are; the final one follows.
        if (100..200).contains(&resp.code) && resp.code != 101 {
            write_response_head(&mut client.io, &resp, false).await?;
            continue;
        }
        break resp;
    };
    if resp.code == 101 {
        // Protocol switch (WebSocket): the target was checked; splice both ways.
        write_response_head(&mut client.io, &resp, false).await?;
        client.io.write_all(&upstream.buf).await?;
        upstream.buf.clear();
        if !client.buf.is_empty() {
            upstream.io.write_all(&client.buf).await?;
            client.buf.clear();
        }
        let _ = tokio::io::copy_bidirectional(&mut client.io, &mut upstream.io).await;
        return Ok(false);
    }
    let framing = if head.method.eq_ignore_ascii_case("HEAD") || matches!(resp.code, 204 | 304) {
        Framing::Empty
    } else {
        body_framing(&resp.headers, false).unwrap_or(Framing::UntilClose)
    };
    let close = client_close || framing == Framing::UntilClose;
    write_response_head(&mut client.io, &resp, close).await?;
    upstream.copy_body(framing, &mut client.io).await?;
    client.io.flush().await?;
    Ok(!close)
}

async fn write_response_head<W: AsyncWrite + Unpin>(
    to: &mut W,
    resp: &ResponseHead,
    close: bool,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.code, resp.reason).into_bytes();
    for (name, value) in &resp.headers {
        let lower = name.to_ascii_lowercase();
        // `upgrade` must stay on a 101; the other hop-by-hop headers are the proxy's business.
        if HOP_BY_HOP.contains(&lower.as_str()) && !(resp.code == 101 && lower == "upgrade") {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if resp.code == 101 {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    to.write_all(&out).await
}

/// The addresses a test server listens on are loopback; the policy reaches them only as
/// listed IP literals (`127.0.0.1:PORT`).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::policy::tests::FakeResolver;
    use std::net::SocketAddr;
    use tokio::net::TcpListener;

    /// An HTTP server answering every request with its method and path, keep-alive.
    async fn upstream() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (conn, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut c = Buffered::new(conn);
                    while let Ok(Some(req)) = c.read_request().await {
                        let framing = body_framing(&req.headers, true).unwrap();
                        let mut body = Vec::new();
                        c.copy_body(framing, &mut body).await.unwrap();
                        let host = String::from_utf8_lossy(find(&req.headers, "host").unwrap())
                            .to_string();
                        let text = format!(
                            "upstream saw {} {} host={host} body={}",
                            req.method,
                            req.target,
                            String::from_utf8_lossy(&body)
                        );
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if c.io.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    struct Setup {
        _dir: tempfile::TempDir,
        handle: ProxyHandle,
        resolver: Arc<FakeResolver>,
        server: SocketAddr,
    }

    async fn setup(extra_hosts: &[&str], resolver: FakeResolver) -> Setup {
        let server = upstream().await;
        let mut hosts = vec![server.to_string()];
        hosts.extend(extra_hosts.iter().map(|h| h.to_string()));
        let policy =
            crate::net::LivePolicy::new(crate::net::NetPolicy::limited(&hosts, false).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let resolver = Arc::new(resolver);
        let handle = start(&dir.path().join("proxy.sock"), policy, resolver.clone()).unwrap();
        Setup {
            _dir: dir,
            handle,
            resolver,
            server,
        }
    }

    impl Setup {
        async fn client(&self) -> Buffered<UnixStream> {
            Buffered::new(UnixStream::connect(self.handle.path()).await.unwrap())
        }
    }

    /// Sends `request` and reads one response: (status, body).
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        c: &mut Buffered<S>,
        request: &str,
    ) -> (u16, String) {
        c.io.write_all(request.as_bytes()).await.unwrap();
        let resp = c.read_response().await.unwrap();
        let mut body = Vec::new();
        let framing = body_framing(&resp.headers, false).unwrap();
        c.copy_body(framing, &mut body).await.unwrap();
        (resp.code, String::from_utf8(body).unwrap())
    }

    #[tokio::test]
    async fn allowed_host_works_and_every_keep_alive_request_is_checked() {
        let s = setup(&[], FakeResolver::default()).await;
        let mut c = s.client().await;
        let ok = format!(
            "POST http://{}/a?b=1 HTTP/1.1\r\nHost: evil.test\r\nContent-Length: 2\r\n\r\nhi",
            s.server
        );
        let (code, body) = exchange(&mut c, &ok).await;
        assert_eq!(code, 200, "{body}");
        // Origin-form upstream, Host taken from the URL, the body forwarded.
        assert_eq!(
            body,
            format!("upstream saw POST /a?b=1 host={} body=hi", s.server)
        );
        // The same connection, now to a host that is not listed: refused, never resolved.
        let (code, body) = exchange(
            &mut c,
            "GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\nContent-Length: 3\r\n\r\nxyz",
        )
        .await;
        assert_eq!(code, 403);
        assert!(
            body.contains("`denied.test` is not in this session's allowed_hosts"),
            "{body}"
        );
        assert!(
            body.contains("add `denied.test` to allowed_hosts"),
            "{body}"
        );
        // And the connection is still in step: a third, allowed request works.
        let (code, body) = exchange(
            &mut c,
            &format!("GET http://{}/c HTTP/1.1\r\n\r\n", s.server),
        )
        .await;
        assert_eq!(code, 200);
        assert!(body.starts_with("upstream saw GET /c"), "{body}");
        assert!(s.resolver.asked().is_empty(), "{:?}", s.resolver.asked());
    }

    #[tokio::test]
    async fn connect_tunnels_to_an_allowed_target() {
        let s = setup(&[], FakeResolver::default()).await;
        let mut c = s.client().await;
        let (code, _) =
            exchange_head(&mut c, &format!("CONNECT {} HTTP/1.1\r\n\r\n", s.server)).await;
        assert_eq!(code, 200);
        let (code, body) = exchange(&mut c, "GET /tunnelled HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(code, 200);
        assert_eq!(body, "upstream saw GET /tunnelled host=x body=");
    }

    /// Reads only a head (a 200 to CONNECT has no body).
    async fn exchange_head(c: &mut Buffered<UnixStream>, request: &str) -> (u16, String) {
        c.io.write_all(request.as_bytes()).await.unwrap();
        let resp = c.read_response().await.unwrap();
        (resp.code, resp.reason)
    }

    #[tokio::test]
    async fn denied_names_are_refused_without_a_dns_lookup() {
        let s = setup(
            &["allowed.test"],
            FakeResolver::with(&[("denied.test", "93.184.216.34")]),
        )
        .await;
        for request in [
            "CONNECT denied.test:443 HTTP/1.1\r\n\r\n",
            "CONNECT allowed.test:22 HTTP/1.1\r\n\r\n",
            "GET http://denied.test/ HTTP/1.1\r\n\r\n",
        ] {
            let mut c = s.client().await;
            let (code, body) = exchange(&mut c, request).await;
            assert_eq!(code, 403, "{request}: {body}");
        }
        assert!(s.resolver.asked().is_empty(), "{:?}", s.resolver.asked());
    }

    #[tokio::test]
    async fn ip_literals_are_refused_unless_listed() {
        let s = setup(&[], FakeResolver::default()).await;
        let other_port = s.server.port().wrapping_add(1);
        for request in [
            "CONNECT 93.184.216.34:443 HTTP/1.1\r\n\r\n".to_string(),
            format!("GET http://127.0.0.1:{other_port}/ HTTP/1.1\r\n\r\n"),
            "GET http://[::1]/ HTTP/1.1\r\n\r\n".to_string(),
        ] {
            let mut c = s.client().await;
            let (code, body) = exchange(&mut c, &request).await;
            assert_eq!(code, 403, "{request}: {body}");
            assert!(body.contains("is an IP address"), "{body}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let s = setup(
            &["internal.test", "meta.test"],
            FakeResolver::with(&[
                ("internal.test", "10.1.2.3"),
                ("meta.test", "169.254.169.254"),
            ]),
        )
        .await;
        for (request, what) in [
            (
                "CONNECT internal.test:443 HTTP/1.1\r\n\r\n",
                "a private address",
            ),
            (
                "GET http://meta.test/latest HTTP/1.1\r\n\r\n",
                "the cloud metadata address",
            ),
        ] {
            let mut c = s.client().await;
            let (code, body) = exchange(&mut c, request).await;
            assert_eq!(code, 403, "{body}");
            assert!(
                body.contains("resolves to") && body.contains(what),
                "{body}"
            );
        }
        assert_eq!(s.resolver.asked(), vec!["internal.test", "meta.test"]);
    }

    #[tokio::test]
    async fn a_refused_request_waiting_for_100_continue_is_answered_at_once() {
        let s = setup(&[], FakeResolver::default()).await;
        let mut c = s.client().await;
        // The body is never sent: the 403 must come anyway, and the connection then closes.
        let (code, body) = exchange(
            &mut c,
            "PUT http://denied.test/ HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(c.fill().await.unwrap(), 0, "closed after the refusal");
    }

    #[tokio::test]
    async fn an_allowed_request_waiting_for_100_continue_gets_it() {
        let s = setup(&[], FakeResolver::default()).await;
        let mut c = s.client().await;
        let (code, _) = exchange_head(
            &mut c,
            &format!(
                "PUT http://{}/e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                s.server
            ),
        )
        .await;
        assert_eq!(code, 100);
        let (code, body) = exchange(&mut c, "hello").await;
        assert_eq!(code, 200);
        assert!(body.ends_with("body=hello"), "{body}");
    }

    #[tokio::test]
    async fn chunked_bodies_are_forwarded_whole() {
        let s = setup(&[], FakeResolver::default()).await;
        let mut c = s.client().await;
        let req = format!(
            "PUT http://{}/up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            s.server
        );
        let (code, body) = exchange(&mut c, &req).await;
        assert_eq!(code, 200);
        // The test server echoes the body as it arrived: still chunked, every chunk there.
        assert!(
            body.ends_with("body=3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            "{body:?}"
        );
    }

    #[tokio::test]
    async fn a_stopped_proxy_fails_closed() {
        let s = setup(&[], FakeResolver::default()).await;
        let path = s.handle.path().to_path_buf();
        assert!(s.handle.is_running());
        drop(s.handle);
        assert!(UnixStream::connect(&path).await.is_err());
    }

    #[test]
    fn authorities() {
        assert_eq!(
            split_authority("example.com:443"),
            Some(("example.com", 443))
        );
        assert_eq!(split_authority("[::1]:8080"), Some(("::1", 8080)));
        assert_eq!(split_authority("example.com"), None);
        assert_eq!(split_authority(":80"), None);
    }
}
