//! A deliberately dumb raw-TCP HTTP/1.1 client, so the tests check the bytes
//! the mock puts on the wire rather than what a forgiving client makes of them.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failing loudly is the point

use serde_json::{Value, json};
use tether_mock_llm::MockServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Client {
    stream: BufReader<TcpStream>,
}

#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub struct Response {
    pub head: Head,
    pub body: String,
    /// False when the connection ended before the body did.
    pub complete: bool,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn events(&self) -> Vec<(String, Value)> {
        parse_sse(&self.body)
    }

    pub fn event_names(&self) -> Vec<String> {
        self.events().into_iter().map(|(name, _)| name).collect()
    }
}

pub enum Chunk {
    Data(String),
    End,
    Eof,
}

impl Client {
    pub async fn connect(server: &MockServer) -> Client {
        Client::from_stream(TcpStream::connect(server.addr()).await.unwrap())
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        Client {
            stream: BufReader::new(stream),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
    }

    /// Sends `POST /v1/messages` with a content-length JSON body.
    pub async fn post(&mut self, body: &Value, extra_headers: &[(&str, &str)]) {
        let body = body.to_string();
        let mut request = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n",
            body.len()
        );
        for (name, value) in extra_headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        self.send_raw(request.as_bytes()).await;
    }

    pub async fn exchange(&mut self, body: &Value) -> Response {
        self.post(body, &[]).await;
        self.read_response().await
    }

    pub async fn read_head(&mut self) -> Head {
        let status_line = self
            .line()
            .await
            .expect("connection closed before response");
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line:?}");
        let status = parts.next().unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let line = self.line().await.unwrap();
            if line.is_empty() {
                return Head { status, headers };
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_string(), value.trim().to_string()));
        }
    }

    pub async fn read_response(&mut self) -> Response {
        let head = self.read_head().await;
        if let Some(len) = head.header("content-length") {
            let mut body = vec![0; len.parse().unwrap()];
            self.stream.read_exact(&mut body).await.unwrap();
            let body = String::from_utf8(body).unwrap();
            return Response {
                head,
                body,
                complete: true,
            };
        }
        assert_eq!(head.header("transfer-encoding"), Some("chunked"));
        let mut body = String::new();
        loop {
            match self.read_chunk().await {
                Chunk::Data(data) => body.push_str(&data),
                Chunk::End => {
                    return Response {
                        head,
                        body,
                        complete: true,
                    };
                }
                Chunk::Eof => {
                    return Response {
                        head,
                        body,
                        complete: false,
                    };
                }
            }
        }
    }

    pub async fn read_chunk(&mut self) -> Chunk {
        let Some(size_line) = self.line().await else {
            return Chunk::Eof;
        };
        let size = usize::from_str_radix(&size_line, 16).unwrap();
        if size == 0 {
            assert_eq!(self.line().await.as_deref(), Some(""));
            return Chunk::End;
        }
        let mut data = vec![0; size + 2];
        if self.stream.read_exact(&mut data).await.is_err() {
            return Chunk::Eof;
        }
        assert!(data.ends_with(b"\r\n"));
        data.truncate(size);
        Chunk::Data(String::from_utf8(data).unwrap())
    }

    /// Reads chunks into `body` until it contains `needle`.
    pub async fn read_until(&mut self, body: &mut String, needle: &str) {
        while !body.contains(needle) {
            match self.read_chunk().await {
                Chunk::Data(data) => body.push_str(&data),
                _ => panic!("stream ended before {needle:?}; got {body}"),
            }
        }
    }

    /// True if the server has closed the connection (read hits EOF).
    pub async fn at_eof(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte).await, Ok(0) | Err(_))
    }

    /// One CRLF-terminated line without the CRLF; `None` on EOF.
    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stream.read_line(&mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.strip_suffix("\r\n").unwrap_or(&line).to_string()),
        }
    }
}

/// Splits an SSE body into (event name, parsed data), insisting on the exact
/// `event: …\ndata: …\n\n` framing.
pub fn parse_sse(body: &str) -> Vec<(String, Value)> {
    let body = body.strip_suffix("\n\n").unwrap_or(body);
    body.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            let (event, data) = frame.split_once('\n').unwrap();
            let name = event.strip_prefix("event: ").unwrap();
            let data = data.strip_prefix("data: ").unwrap();
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "event name must match data.type");
            (name.to_string(), data)
        })
        .collect()
}

/// A streaming request body with the given conversation.
pub fn request(messages: Value) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 1024,
        "stream": true,
        "messages": messages,
    })
}

pub fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

pub fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": [{"type": "text", "text": text}]})
}

/// All `text_delta`s of a stream, concatenated.
pub fn streamed_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(_, data)| data["delta"]["type"] == "text_delta")
        .map(|(_, data)| data["delta"]["text"].as_str().unwrap())
        .collect()
}
