//! Just enough HTTP/1.1 for the mock: request heads via `httparse`,
//! `content-length` and chunked request bodies, keep-alive, and helpers for
//! fixed-length and chunked responses.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A parsed request with its whole body.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    /// The request target as sent, query string included.
    pub target: String,
    /// Names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the client allows another request on this connection.
    pub keep_alive: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The target without its query string (`/v1/messages?beta=true` → `/v1/messages`).
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection failed or ended mid-request; nothing useful can be sent.
    Gone,
    /// The request cannot be understood; worth a 400 before closing.
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Gone
    }
}

/// A client connection with its read-ahead buffer (which may hold the start of
/// the next keep-alive request).
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads the next request. `Ok(None)` means the client closed the
    /// connection cleanly between requests.
    pub async fn read_request(&mut self) -> Result<Option<Request>, ReadError> {
        let Some((mut request, head_len, version)) = self.read_head().await? else {
            return Ok(None);
        };
        self.buf.drain(..head_len);

        if version == 1
            && request
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            self.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }

        let chunked = request
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        // Per RFC 9112 a transfer-encoding overrides any content-length.
        request.body = if chunked {
            self.read_chunked_body().await?
        } else if let Some(len) = request.header("content-length") {
            let len = len
                .trim()
                .parse::<usize>()
                .map_err(|_| ReadError::Bad(format!("invalid content-length {len:?}")))?;
            if len > MAX_BODY_BYTES {
                return Err(ReadError::Bad(format!(
                    "request body of {len} bytes is too large"
                )));
            }
            self.fill_to(len).await?;
            self.buf.drain(..len).collect()
        } else {
            Vec::new()
        };
        Ok(Some(request))
    }

    /// Parses the request head, returning it with its length and HTTP minor version.
    async fn read_head(&mut self) -> Result<Option<(Request, usize, u8)>, ReadError> {
        loop {
            if !self.buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Request::new(&mut headers);
                match parsed.parse(&self.buf) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let version = parsed.version.unwrap_or(1);
                        let headers: Vec<(String, String)> = parsed
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect();
                        let connection = header(&headers, "connection")
                            .map(str::to_ascii_lowercase)
                            .unwrap_or_default();
                        // HTTP/1.1 defaults to keep-alive, HTTP/1.0 to close.
                        let keep_alive = if version == 1 {
                            !connection.contains("close")
                        } else {
                            connection.contains("keep-alive")
                        };
                        let request = Request {
                            method: parsed.method.unwrap_or_default().to_string(),
                            target: parsed.path.unwrap_or_default().to_string(),
                            headers,
                            body: Vec::new(),
                            keep_alive,
                        };
                        return Ok(Some((request, head_len, version)));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(ReadError::Bad(format!("malformed request head: {e}"))),
                }
                if self.buf.len() > MAX_HEAD_BYTES {
                    return Err(ReadError::Bad("request head too large".into()));
                }
            }
            if self.read_more().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Gone)
                };
            }
        }
    }

    async fn read_chunked_body(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let (size_line_len, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete(parsed)) => break parsed,
                    Ok(httparse::Status::Partial) => self.read_some().await?,
                    Err(_) => return Err(ReadError::Bad("invalid chunk size line".into())),
                }
            };
            self.buf.drain(..size_line_len);
            if size == 0 {
                self.skip_trailers().await?;
                return Ok(body);
            }
            let size = usize::try_from(size)
                .ok()
                .filter(|size| body.len() + size <= MAX_BODY_BYTES)
                .ok_or_else(|| ReadError::Bad("chunked request body is too large".into()))?;
            self.fill_to(size + 2).await?;
            if self.buf[size..size + 2] != *b"\r\n" {
                return Err(ReadError::Bad("chunk data not followed by CRLF".into()));
            }
            body.extend(self.buf.drain(..size + 2).take(size));
        }
    }

    /// Consumes the trailer section that ends a chunked body (usually just CRLF).
    async fn skip_trailers(&mut self) -> Result<(), ReadError> {
        loop {
            match self.buf.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.buf.drain(..2);
                    return Ok(());
                }
                Some(line_end) => {
                    self.buf.drain(..line_end + 2);
                }
                None if self.buf.len() > MAX_HEAD_BYTES => {
                    return Err(ReadError::Bad("chunked trailers too large".into()));
                }
                None => self.read_some().await?,
            }
        }
    }

    /// Reads until the buffer holds at least `len` bytes.
    async fn fill_to(&mut self, len: usize) -> Result<(), ReadError> {
        while self.buf.len() < len {
            self.read_some().await?;
        }
        Ok(())
    }

    /// Reads at least one byte; the peer closing here is an error (mid-request).
    async fn read_some(&mut self) -> Result<(), ReadError> {
        match self.read_more().await? {
            0 => Err(ReadError::Gone),
            _ => Ok(()),
        }
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Resolves when the peer closes the connection (or it fails). Anything the
    /// client sends meanwhile is kept for the next `read_request`.
    pub async fn closed(&mut self) {
        while let Ok(1..) = self.read_more().await {}
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Status line and headers; `content-length`/`transfer-encoding` are up to the caller.
    pub async fn write_head(&mut self, status: u16, headers: &[(&str, &str)]) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.write_all(head.as_bytes()).await
    }

    /// A complete response with a `content-length` body.
    pub async fn write_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let len = body.len().to_string();
        let mut all = headers.to_vec();
        all.push(("content-length", &len));
        self.write_head(status, &all).await?;
        self.write_all(body).await
    }

    /// One chunk of a `transfer-encoding: chunked` body (must not be empty:
    /// an empty chunk would end the body).
    pub async fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
        chunk.extend_from_slice(data);
        chunk.extend_from_slice(b"\r\n");
        self.write_all(&chunk).await
    }

    /// The terminating zero-length chunk.
    pub async fn finish_chunked(&mut self) -> io::Result<()> {
        self.write_all(b"0\r\n\r\n").await
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Unknown",
    }
}
