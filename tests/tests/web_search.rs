//! `web_search` end to end: offered only with a backend in `[web_search]`, and a call reaches
//! the configured SearXNG instance (here a stand-in on loopback speaking its JSON API).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv};
use tether_mock_llm::Script;
use tether_proto::EventBody;

/// A SearXNG stand-in: answers `/search?...&format=json` and remembers the request lines.
fn searxng() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            log.lock().unwrap().push(first.trim().to_string());
            let body = json!({"results": [
                {"title": "The Rust Book", "url": "https://doc.rust-lang.org/book/", "content": "Learn Rust"},
            ]})
            .to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

fn tools_offered(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn web_search_asks_the_configured_backend() {
    let (port, seen) = searxng();
    let env = TestEnv::with_config(
        Script::sequential(vec![
            Reply::tool_use("web_search", json!({"query": "rust book"})),
            Reply::text("found it"),
        ]),
        &format!("[web_search]\nbackend = \"searxng\"\nurl = \"http://127.0.0.1:{port}\"\n"),
    )
    .await;
    env.ok(&["run", "search", "--name", "s"]);
    let reqs = env.mock.requests();
    assert!(tools_offered(&reqs[0].body).contains(&"web_search".to_string()));
    let result = env
        .events("s")
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentToolResult {
                content, is_error, ..
            } => Some((tether_proto::blocks_text(content), *is_error)),
            _ => None,
        })
        .unwrap();
    assert!(!result.1, "{}", result.0);
    assert!(
        result
            .0
            .contains("1. The Rust Book\n   https://doc.rust-lang.org/book/"),
        "{}",
        result.0
    );
    let lines = seen.lock().unwrap().clone();
    assert_eq!(lines, ["GET /search?q=rust+book&format=json HTTP/1.1"]);
    let doctor = env.ok(&["doctor"]);
    assert!(
        doctor.contains(&format!("SearXNG at http://127.0.0.1:{port}")),
        "{doctor}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_backend_web_search_is_not_offered_and_doctor_says_how() {
    let env = TestEnv::new(Script::sequential(vec![Reply::text("ok")])).await;
    env.ok(&["run", "hello", "--name", "n"]);
    let offered = tools_offered(&env.mock.requests()[0].body);
    assert!(!offered.contains(&"web_search".to_string()), "{offered:?}");
    assert!(offered.contains(&"web_fetch".to_string()), "{offered:?}");
    let doctor = env.ok(&["doctor"]);
    assert!(doctor.contains("[web_search] backend"), "{doctor}");
}
