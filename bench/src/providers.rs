//! Provider CPU cost, no network: building the request bytes for a 200-turn conversation,
//! and folding a 10,000-delta SSE body (SSE framing included), for each wire protocol.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::json;
use tether_daemon::provider::{Message, ModelRequest, Part, ToolSpec, Wire};
use tether_mock_llm::{Api, Block, Usage, render_stream};

/// CPU time of the calling thread: the targets are CPU per request, and wall time on a
/// busy 2-core machine mostly measures the other processes.
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Turns of history: user text, assistant text + tool call, tool result.
pub const TURNS: usize = 200;
/// Deltas in the parsed stream (one character each).
pub const DELTAS: usize = 10_000;

pub fn history() -> ModelRequest {
    let mut messages = Vec::with_capacity(TURNS * 3);
    for i in 0..TURNS {
        let id = format!("sevt_01JTURN{i:019}");
        messages.push(Message::user_text(format!(
            "Step {i}: look at src/module_{i}.rs and tell me what the function does. {}",
            "Context sentence. ".repeat(8)
        )));
        messages.push(Message::assistant(vec![
            Part::Text(format!("I'll read src/module_{i}.rs first.")),
            Part::ToolUse {
                id: id.clone(),
                name: "read".into(),
                input: json!({"file_path": format!("src/module_{i}.rs")}),
            },
        ]));
        messages.push(Message::user(vec![Part::ToolResult {
            tool_use_id: id,
            content: format!("fn f_{i}() -> u32 {{ {i} }}\n").repeat(30),
            is_error: false,
        }]));
    }
    ModelRequest {
        model: "bench-model".into(),
        system: Some("You are a capable software agent. ".repeat(20)),
        messages,
        tools: (0..6)
            .map(|i| ToolSpec {
                name: format!("tool_{i}"),
                description: "Does one thing well. ".repeat(5),
                input_schema: json!({
                    "type": "object",
                    "properties": {"file_path": {"type": "string"}, "n": {"type": "integer"}},
                    "required": ["file_path"]
                }),
            })
            .collect(),
        max_tokens: 16_384,
        thinking_budget: None,
    }
}

fn api(wire: Wire) -> Api {
    match wire {
        Wire::Anthropic => Api::Messages,
        Wire::Chat => Api::Chat,
        Wire::Responses => Api::Responses,
    }
}

/// CPU milliseconds per request build (median over `runs`), per wire.
pub fn build_ms(wire: Wire, runs: usize) -> Vec<f64> {
    let req = history();
    (0..runs)
        .map(|_| {
            let t = thread_cpu();
            let bytes = wire.request_bytes(&req);
            let ms = (thread_cpu() - t).as_secs_f64() * 1000.0;
            std::hint::black_box(bytes);
            ms
        })
        .collect()
}

/// A 10,000-delta text reply in `wire`'s SSE format, cut into 16 KiB chunks, and its text.
pub fn stream_chunks(wire: Wire) -> (Vec<Bytes>, String) {
    let text: String = "abcdefghij".repeat(DELTAS / 10);
    let body = render_stream(
        api(wire),
        vec![Block::text(text.clone())],
        Usage {
            input_tokens: 10,
            output_tokens: DELTAS as u64,
            ..Usage::default()
        },
        1,
    );
    let chunks = body
        .as_bytes()
        .chunks(16 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    (chunks, text)
}

/// Folds the chunks into a response, checking every delta arrived and the text is intact.
pub fn parse_once(wire: Wire, chunks: Vec<Bytes>, text: &str) -> Result<()> {
    let mut deltas = 0usize;
    let response = wire
        .parse_stream(chunks, &mut |_| deltas += 1)
        .with_context(|| format!("parsing the {} stream", wire.name()))?;
    if deltas != DELTAS || response.content != vec![Part::Text(text.to_string())] {
        bail!(
            "the {} parse saw {deltas} deltas, expected {DELTAS}",
            wire.name()
        );
    }
    Ok(())
}

/// CPU milliseconds per parse of a 10,000-delta body cut into 16 KiB chunks, per wire.
pub fn parse_ms(wire: Wire, runs: usize) -> Result<Vec<f64>> {
    let (chunks, text) = stream_chunks(wire);
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let chunks = chunks.clone();
        let t = thread_cpu();
        parse_once(wire, chunks, &text)?;
        out.push((thread_cpu() - t).as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// The JSON payloads of `chunks`' events (the `data:` lines; every event the mock writes
/// has exactly one).
fn event_payloads(chunks: &[Bytes]) -> Vec<String> {
    let body: Vec<u8> = chunks.concat();
    String::from_utf8_lossy(&body)
        .split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|data| data.starts_with('{'))
        .map(str::to_string)
        .collect()
}

/// A reference, not tether's code: CPU milliseconds serde_json needs just to check that
/// each event of the same stream is valid JSON (`IgnoredAny`, nothing extracted, no
/// framing). Any parser built on serde_json costs at least this much, which shows how
/// much of the parse row is JSON and how much is tether.
pub fn json_floor_ms(wire: Wire, runs: usize) -> Result<Vec<f64>> {
    let (chunks, _) = stream_chunks(wire);
    let payloads = event_payloads(&chunks);
    if payloads.len() < DELTAS {
        bail!(
            "found {} JSON events in the {} stream, expected at least {DELTAS}",
            payloads.len(),
            wire.name()
        );
    }
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = thread_cpu();
        for payload in &payloads {
            serde_json::from_str::<serde::de::IgnoredAny>(payload)
                .with_context(|| format!("{} event {payload}", wire.name()))?;
        }
        out.push((thread_cpu() - t).as_secs_f64() * 1000.0);
    }
    Ok(out)
}
