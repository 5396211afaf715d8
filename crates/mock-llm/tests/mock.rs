mod common;

use std::time::Duration;

use common::{Chunk, Client, assistant, parse_sse, request, streamed_text, user};
use serde_json::{Value, json};
use tether_mock_llm::{Block, MockServer, Reply, Script, Timing, Usage};

fn hello() -> Value {
    request(json!([user("hello")]))
}

#[tokio::test]
async fn text_message_is_byte_exact() {
    let reply = Reply::text("Hello there, this is a longer reply.").with_usage(Usage {
        input_tokens: 10,
        output_tokens: 9,
        cache_read_input_tokens: 3,
        cache_creation_input_tokens: 2,
    });
    let server = MockServer::start(Script::sequential(vec![reply]))
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    let response = client.exchange(&hello()).await;

    assert_eq!(response.head.status, 200);
    assert_eq!(
        response.head.header("content-type"),
        Some("text/event-stream")
    );
    assert!(response.complete);
    let expected = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_01mock000000000000000001","type":"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"output_tokens":1}}}"#,
        "\n\n",
        "event: ping\n",
        r#"data: {"type": "ping"}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello there, thi"}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"s is a longer re"}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ply."}}"#,
        "\n\n",
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":0}"#,
        "\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}"#,
        "\n\n",
        "event: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    );
    assert_eq!(response.body, expected);
}

#[tokio::test]
async fn tool_use_input_arrives_as_json_fragments() {
    let input = json!({"command": "echo hi && ls -la /tmp", "timeout": 30});
    let server = MockServer::start(Script::sequential(vec![Reply::message(vec![
        Block::text("Let me run that."),
        Block::tool_use("bash", input.clone()),
    ])]))
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    let events = client.exchange(&hello()).await.events();

    let start = events
        .iter()
        .find(|(name, data)| name == "content_block_start" && data["index"] == 1)
        .unwrap();
    let block = &start.1["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "bash");
    assert_eq!(block["input"], json!({}));
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));

    let pieces: Vec<&str> = events
        .iter()
        .filter(|(_, data)| data["index"] == 1 && data["delta"]["type"] == "input_json_delta")
        .map(|(_, data)| data["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(pieces[0], "", "the real API starts with an empty fragment");
    assert!(pieces.len() > 3, "{pieces:?}");
    let joined: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(joined, input);

    let (_, delta) = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(events.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn tool_ids_are_unique_unless_given() {
    let server = MockServer::start(Script::sequential(vec![
        Reply::tools(vec![("bash", json!({})), ("read", json!({}))]),
        Reply::message(vec![Block::ToolUse {
            id: Some("toolu_fixed".into()),
            name: "bash".into(),
            input: json!({}),
        }]),
    ]))
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    let ids = |events: Vec<(String, Value)>| -> Vec<String> {
        events
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| d["content_block"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    let first = ids(client.exchange(&hello()).await.events());
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], first[1]);
    assert_eq!(
        ids(client.exchange(&hello()).await.events()),
        ["toolu_fixed"]
    );
}

#[tokio::test]
async fn thinking_block_ends_with_signature() {
    let server = MockServer::start(
        Script::sequential(vec![Reply::message(vec![
            Block::thinking("I should say hi politely.", "EqQBCgIYAhIM"),
            Block::text("Hi!"),
        ])])
        .with_timing(Timing {
            chunk_chars: 8,
            ..Timing::default()
        }),
    )
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    let events = client.exchange(&hello()).await.events();

    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(
        events[2].1["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    let thinking: String = events[3..7]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "thinking_delta");
            d["delta"]["thinking"].as_str().unwrap()
        })
        .collect();
    assert_eq!(thinking, "I should say hi politely.");
    assert_eq!(
        events[7].1["delta"],
        json!({"type": "signature_delta", "signature": "EqQBCgIYAhIM"})
    );
    assert_eq!(events[9].1["index"], 1);
    assert_eq!(events[12].1["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn text_splits_on_characters_not_bytes() {
    let text = "héllo wörld ✓ ünïcödé 🎉 done";
    let server = MockServer::start(Script::sequential(vec![Reply::text(text)]).with_timing(
        Timing {
            chunk_chars: 3,
            ..Timing::default()
        },
    ))
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    let events = client.exchange(&hello()).await.events();
    assert_eq!(streamed_text(&events), text);
    assert!(events.len() > 10);
}

#[tokio::test]
async fn rate_limit_error_has_retry_after_and_envelope() {
    let server = MockServer::start(Script::sequential(vec![
        Reply::rate_limited(7),
        Reply::overloaded(),
        Reply::text("ok now"),
    ]))
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;

    let response = client.exchange(&hello()).await;
    assert_eq!(response.head.status, 429);
    assert_eq!(response.head.header("retry-after"), Some("7"));
    assert_eq!(
        response.head.header("content-type"),
        Some("application/json")
    );
    assert_eq!(
        response.body,
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#
    );

    // Errors keep the connection usable, as a pooling client expects.
    let response = client.exchange(&hello()).await;
    assert_eq!(response.head.status, 529);
    assert_eq!(response.head.header("retry-after"), None);
    assert_eq!(response.json()["error"]["type"], "overloaded_error");

    let response = client.exchange(&hello()).await;
    assert_eq!(streamed_text(&response.events()), "ok now");
}

#[tokio::test]
async fn by_turn_picks_reply_by_assistant_message_count() {
    let server = MockServer::start(Script::by_turn(vec![
        Reply::text("first"),
        Reply::text("second"),
    ]))
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    let turn_one = request(json!([user("a"), assistant("first"), user("b")]));
    let turn_zero = request(json!([user("a")]));
    let turn_two = request(json!([
        user("a"),
        assistant("first"),
        user("b"),
        assistant("second"),
        user("c")
    ]));

    // Order of arrival does not matter, only the conversation.
    let events = client.exchange(&turn_one).await.events();
    assert_eq!(streamed_text(&events), "second");
    let events = client.exchange(&turn_zero).await.events();
    assert_eq!(streamed_text(&events), "first");
    let events = client.exchange(&turn_one).await.events();
    assert_eq!(streamed_text(&events), "second");

    let response = client.exchange(&turn_two).await;
    assert_eq!(response.head.status, 500);
    assert_eq!(response.json()["error"]["type"], "api_error");
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with("mock script exhausted: got request #4 but the script has 2 replies"),
        "{message}"
    );
}

#[tokio::test]
async fn sequential_script_exhaustion_is_a_500() {
    let server = MockServer::start(Script::sequential(vec![Reply::text("only")]))
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    assert_eq!(client.exchange(&hello()).await.head.status, 200);
    let response = client.exchange(&hello()).await;
    assert_eq!(response.head.status, 500);
    assert_eq!(
        response.json(),
        json!({"type": "error", "error": {
            "type": "api_error",
            "message": "mock script exhausted: got request #2 but the script has 1 replies"
        }})
    );
}

#[tokio::test]
async fn sequential_counts_across_connections() {
    let server = MockServer::start(Script::sequential(vec![
        Reply::text("one"),
        Reply::text("two"),
    ]))
    .await
    .unwrap();
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    assert_eq!(streamed_text(&a.exchange(&hello()).await.events()), "one");
    assert_eq!(streamed_text(&b.exchange(&hello()).await.events()), "two");
}

#[tokio::test]
async fn keep_alive_serves_several_requests_then_honours_close() {
    let server = MockServer::start(Script::by_turn(vec![Reply::text("same answer")]))
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    for _ in 0..2 {
        let response = client.exchange(&hello()).await;
        assert!(response.complete);
        assert_eq!(response.head.header("connection"), None);
        assert_eq!(streamed_text(&response.events()), "same answer");
    }
    client.post(&hello(), &[("connection", "close")]).await;
    let response = client.read_response().await;
    assert_eq!(response.head.header("connection"), Some("close"));
    assert_eq!(streamed_text(&response.events()), "same answer");
    assert!(client.at_eof().await);
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn pipelined_requests_in_one_write_are_both_answered() {
    let server = MockServer::start(Script::sequential(vec![Reply::text("a"), Reply::text("b")]))
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    let body = hello().to_string();
    let one = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.send_raw(format!("{one}{one}").as_bytes()).await;
    assert_eq!(streamed_text(&client.read_response().await.events()), "a");
    assert_eq!(streamed_text(&client.read_response().await.events()), "b");
}

#[tokio::test]
async fn chunked_request_body_is_decoded() {
    let server = MockServer::start(Script::sequential(vec![Reply::text("ok")]))
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    let body = hello().to_string();
    let (a, b) = body.split_at(10);
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
         {:x};ext=1\r\n{a}\r\n{:X}\r\n{b}\r\n0\r\ntrailer: yes\r\n\r\n",
        a.len(),
        b.len()
    );
    // Dribble it out to exercise partial reads.
    for piece in request.as_bytes().chunks(7) {
        client.send_raw(piece).await;
    }
    let response = client.read_response().await;
    assert_eq!(streamed_text(&response.events()), "ok");
    assert_eq!(server.requests()[0].body, hello());
}

#[tokio::test]
async fn stall_holds_the_stream_until_released() {
    let server = MockServer::start(
        Script::sequential(vec![Reply::stall(vec![Block::text(
            "first part, then the rest after release",
        )])])
        .with_timing(Timing {
            chunk_chars: 11,
            ..Timing::default()
        }),
    )
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    client.post(&hello(), &[]).await;
    let head = client.read_head().await;
    assert_eq!(head.status, 200);

    let mut body = String::new();
    client.read_until(&mut body, "first part,").await;
    let stalled = tokio::time::timeout(Duration::from_millis(100), client.read_chunk()).await;
    assert!(stalled.is_err(), "nothing may arrive while stalled");

    server.release_stalls();
    loop {
        match client.read_chunk().await {
            Chunk::Data(data) => body.push_str(&data),
            Chunk::End => break,
            Chunk::Eof => panic!("connection closed"),
        }
    }
    let events = parse_sse(&body);
    assert_eq!(
        streamed_text(&events),
        "first part, then the rest after release"
    );
    assert_eq!(events.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn release_right_after_arrival_is_not_lost() {
    let server = MockServer::start(Script::sequential(vec![Reply::stall(vec![Block::text(
        "x",
    )])]))
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    client.post(&hello(), &[]).await;
    server.wait_for_requests(1).await;
    // The reply may not have reached its stall point yet; it must still go through.
    server.release_stalls();
    let response = client.read_response().await;
    assert!(response.complete);
    assert_eq!(response.event_names().last().unwrap(), "message_stop");
}

#[tokio::test]
async fn drop_mid_stream_closes_without_message_stop() {
    let server = MockServer::start(Script::sequential(vec![Reply::drop_mid_stream(vec![
        Block::text("this reply will be cut off somewhere in the middle"),
    ])]))
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    let response = client.exchange(&hello()).await;
    assert_eq!(response.head.status, 200);
    assert!(
        !response.complete,
        "the chunked body must not be terminated"
    );
    let names = response.event_names();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta"
        ]
    );
    assert!(client.at_eof().await);
}

#[tokio::test]
async fn malformed_stream_has_broken_json() {
    let server = MockServer::start(Script::sequential(vec![Reply::Malformed]))
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    let response = client.exchange(&hello()).await;
    assert_eq!(response.head.status, 200);
    assert_eq!(response.head.header("connection"), Some("close"));
    assert!(response.body.starts_with("event: message_start\n"));
    assert!(response.body.contains("\n\ndata: {not json\n\n"));
    assert!(response.body.ends_with(
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    ));
    assert!(client.at_eof().await);
}

#[tokio::test]
async fn mid_stream_error_event_then_close() {
    let server = MockServer::start(Script::sequential(vec![Reply::mid_stream_error(
        "overloaded_error",
        "Overloaded",
    )]))
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    let response = client.exchange(&hello()).await;
    assert_eq!(response.head.status, 200);
    assert!(response.body.ends_with(concat!(
        "event: error\n",
        r#"data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        "\n\n"
    )));
    assert_eq!(response.event_names(), ["message_start", "ping", "error"]);
    assert!(client.at_eof().await);
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let server = MockServer::start(Script::by_turn(vec![Reply::text("hi")]))
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    client
        .post(
            &hello(),
            &[
                ("X-Api-Key", "sk-test"),
                ("anthropic-version", "2023-06-01"),
            ],
        )
        .await;
    client.read_response().await;
    client
        .send_raw(b"GET /v1/models?limit=1 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let not_found = client.read_response().await;
    assert_eq!(not_found.head.status, 404);
    assert_eq!(not_found.json()["type"], "error");
    assert_eq!(not_found.json()["error"]["type"], "not_found_error");

    server.wait_for_requests(2).await;
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/messages");
    assert_eq!(requests[0].header("x-api-key"), Some("sk-test"));
    assert_eq!(requests[0].header("ANTHROPIC-VERSION"), Some("2023-06-01"));
    assert!(
        requests[0].headers.iter().any(|(n, _)| n == "x-api-key"),
        "names are lowercased"
    );
    assert_eq!(requests[0].body, hello());
    assert_eq!(requests[1].method, "GET");
    assert_eq!(requests[1].path, "/v1/models?limit=1");
    assert_eq!(requests[1].body, Value::Null);
}

#[tokio::test]
async fn query_string_on_messages_path_is_accepted() {
    let server = MockServer::start(Script::sequential(vec![Reply::text("hi")]))
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    let body = hello().to_string();
    client
        .send_raw(
            format!(
                "POST /v1/messages?beta=true HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(streamed_text(&client.read_response().await.events()), "hi");
}

#[tokio::test]
async fn bad_requests_get_400() {
    let server = MockServer::start(Script::sequential(vec![Reply::text("hi")]))
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    client
        .send_raw(b"POST /v1/messages HTTP/1.1\r\ncontent-length: 8\r\n\r\nnot json")
        .await;
    let response = client.read_response().await;
    assert_eq!(response.head.status, 400);
    assert_eq!(response.json()["error"]["type"], "invalid_request_error");

    let mut client = Client::connect(&server).await;
    client.send_raw(b"NOT HTTP AT ALL\r\n\r\n").await;
    let response = client.read_response().await;
    assert_eq!(response.head.status, 400);
    assert!(client.at_eof().await);
}

#[tokio::test]
async fn non_streaming_request_gets_a_message_object() {
    let server = MockServer::start(Script::sequential(vec![Reply::tool_use(
        "read",
        json!({"file_path": "a.txt"}),
    )]))
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    let mut body = hello();
    body["stream"] = json!(false);
    let response = client.exchange(&body).await;
    assert_eq!(response.head.status, 200);
    let message = response.json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["model"], "claude-test");
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(
        message["content"][0]["input"],
        json!({"file_path": "a.txt"})
    );
    assert!(message["usage"]["input_tokens"].as_u64().unwrap() > 1);
}

#[tokio::test]
async fn default_usage_is_plausible() {
    let server = MockServer::start(Script::sequential(vec![Reply::text("x".repeat(400))]))
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    let events = client.exchange(&hello()).await.events();
    let start_usage = &events[0].1["message"]["usage"];
    assert!(start_usage["input_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(start_usage["cache_read_input_tokens"], 0);
    let (_, delta) = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 100);
}

#[tokio::test]
async fn timing_delays_the_stream() {
    let server = MockServer::start(
        Script::sequential(vec![Reply::text("abcdefgh")]).with_timing(Timing {
            ttft_ms: 50,
            chunk_delay_ms: 5,
            chunk_chars: 2,
        }),
    )
    .await
    .unwrap();
    let mut client = Client::connect(&server).await;
    let started = std::time::Instant::now();
    let events = client.exchange(&hello()).await.events();
    // 50ms to first byte + 9 gaps of 5ms between the 10 events.
    assert_eq!(events.len(), 10);
    assert!(
        started.elapsed() >= Duration::from_millis(95),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn concurrent_by_turn_sessions() {
    let server = MockServer::start(Script::by_turn(vec![
        Reply::text("zero"),
        Reply::text("one"),
    ]))
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = Client::connect(&server).await;
        tasks.push(tokio::spawn(async move {
            let first =
                streamed_text(&client.exchange(&request(json!([user("q")]))).await.events());
            let second = streamed_text(
                &client
                    .exchange(&request(json!([user("q"), assistant("zero"), user("r")])))
                    .await
                    .events(),
            );
            (first, second)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), ("zero".to_string(), "one".to_string()));
    }
    server.wait_for_requests(16).await;
    assert_eq!(server.request_count(), 16);
}

#[tokio::test]
async fn shutdown_stops_listening_and_cuts_stalls() {
    let server = MockServer::start(Script::by_turn(vec![Reply::stall(vec![Block::text("x")])]))
        .await
        .unwrap();
    let addr = server.addr();
    let mut client = Client::connect(&server).await;
    client.post(&hello(), &[]).await;
    let mut body = String::new();
    client.read_head().await;
    client.read_until(&mut body, "text_delta").await;
    server.shutdown().await;
    assert!(matches!(client.read_chunk().await, Chunk::Eof));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
