//! Hot paths, one at a time (`cargo bench -p tether-bench`): the frame codec, the session
//! state fold, request building and SSE parsing for each wire protocol, the file tools, and the
//! TUI's layout of a long transcript.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use divan::{Bencher, black_box};
use serde_json::json;
use tether_daemon::provider::Wire;
use tether_daemon::session::state::SessionState;
use tether_proto::{
    ContentBlock, Event, EventBody, FrameDecoder, ServerFrame, StopReason, ToolStatus, encode_frame,
};

// The request/stream fixtures the `providers` metric of the bench binary uses.
#[allow(dead_code)]
#[path = "../../src/providers.rs"]
mod providers;

// The TUI's markdown layout and word wrap, compiled in from the client crate (a binary crate,
// so there is no library to link against); these two files depend only on ratatui,
// pulldown-cmark and unicode-width.
#[allow(dead_code)]
mod tui;

fn main() {
    divan::main();
}

/// A realistic session: `turns` × (user message, running, tool use, tool result, answer, idle).
fn session_events(turns: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(turns * 6);
    let mut seq = 0;
    let mut push = |body: EventBody, events: &mut Vec<Event>| {
        seq += 1;
        events.push(Event {
            id: format!("sevt_{seq:026}"),
            session_id: "sesn_bench".into(),
            seq,
            processed_at: Some("2026-01-01T00:00:00Z".into()),
            session_thread_id: None,
            body,
        });
        format!("sevt_{seq:026}")
    };
    for t in 0..turns {
        push(
            EventBody::user_text(format!("turn {t}: run the tests")),
            &mut events,
        );
        push(EventBody::SessionStatusRunning {}, &mut events);
        let tool = push(
            EventBody::AgentToolUse {
                name: "bash".into(),
                input: json!({"command": "cargo test"}),
                evaluated_permission: None,
            },
            &mut events,
        );
        push(
            EventBody::AgentToolResult {
                tool_use_id: tool,
                content: vec![ContentBlock::text(
                    "running 12 tests\ntest result: ok. 12 passed\n",
                )],
                is_error: false,
                status: ToolStatus::Ok,
                exit_code: Some(0),
                duration_ms: 1500,
            },
            &mut events,
        );
        push(
            EventBody::AgentMessage {
                content: vec![ContentBlock::text(format!(
                    "Turn {t}: all **12** tests pass."
                ))],
            },
            &mut events,
        );
        push(
            EventBody::SessionStatusIdle {
                stop_reason: StopReason::EndTurn,
            },
            &mut events,
        );
    }
    events
}

mod codec {
    use super::*;

    #[divan::bench]
    fn encode_event_frame(b: Bencher<'_, '_>) {
        let e = session_events(1).swap_remove(4);
        let frame = ServerFrame::Event(Box::new(e));
        b.bench(|| encode_frame(black_box(&frame)).unwrap());
    }

    /// 1,000 event frames split into 16 KiB reads, decoded back into lines.
    #[divan::bench]
    fn decode_1000_frames(b: Bencher<'_, '_>) {
        let mut bytes = Vec::new();
        for e in session_events(167).into_iter().take(1000) {
            bytes.extend(encode_frame(&ServerFrame::Event(Box::new(e))).unwrap());
        }
        b.bench(|| {
            let mut d = FrameDecoder::new(1 << 20);
            let mut n = 0;
            for chunk in bytes.chunks(16 * 1024) {
                d.push(chunk);
                while let Some(line) = d.next_frame().unwrap() {
                    black_box(&line);
                    n += 1;
                }
            }
            assert_eq!(n, 1000);
        });
    }
}

mod fold {
    use super::*;

    /// Rebuilding a session's state from its log, as recovery and attach do.
    #[divan::bench(args = [100, 10_000])]
    fn fold_events(b: Bencher<'_, '_>, events: usize) {
        let log = session_events(events.div_ceil(6));
        b.bench(|| SessionState::from_events(black_box(&log)));
    }
}

mod provider {
    use super::*;

    const WIRES: [Wire; 3] = Wire::ALL;

    #[divan::bench(args = WIRES)]
    fn build_200_turn_request(b: Bencher<'_, '_>, wire: Wire) {
        let req = providers::history();
        b.bench(|| wire.request_bytes(black_box(&req)));
    }

    #[divan::bench(args = WIRES)]
    fn parse_10k_delta_stream(b: Bencher<'_, '_>, wire: Wire) {
        let (chunks, text) = providers::stream_chunks(wire);
        b.with_inputs(|| chunks.clone())
            .bench_values(|c| providers::parse_once(wire, c, &text).unwrap());
    }
}

mod file_tools {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use tether_daemon::tools::{files, path::Workspace, search};

    /// A workspace with `big.txt` (1 MiB: 16,384 lines of 64 bytes) and `src/` (200 small
    /// files in 10 directories).
    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let line = format!("{}\n", "x".repeat(63));
        std::fs::write(dir.path().join("big.txt"), line.repeat(16_384)).unwrap();
        for d in 0..10 {
            let sub = dir.path().join(format!("src/m{d}"));
            std::fs::create_dir_all(&sub).unwrap();
            for f in 0..20 {
                std::fs::write(sub.join(format!("f{f}.rs")), "fn main() {}\n").unwrap();
            }
        }
        dir
    }

    /// One `read` call of a 1 MiB file as the toolbox makes it: the workspace opened, the
    /// path resolved beneath it, the first 256 KiB numbered (the issue's bound: under 1 ms).
    #[divan::bench]
    fn read_1mib_file(b: Bencher<'_, '_>) {
        let dir = workspace();
        let input = json!({"file_path": "big.txt"});
        b.bench(|| {
            let ws = Workspace::open(dir.path(), "read").unwrap();
            files::read(&ws, black_box(&input)).unwrap()
        });
    }

    /// One `glob` over 211 entries, walked by directory descriptors.
    #[divan::bench]
    fn glob_200_files(b: Bencher<'_, '_>) {
        let dir = workspace();
        let input = json!({"pattern": "**/*.rs"});
        let stop = AtomicBool::new(false);
        b.bench(|| {
            let ws = Workspace::open(dir.path(), "glob").unwrap();
            search::glob(&ws, black_box(&input), &stop).unwrap()
        });
    }
}

mod tui_layout {
    use super::*;

    /// Laying out a transcript of 1,000 assistant messages (markdown: emphasis, code, lists,
    /// a highlighted rust block each; 1,000 distinct blocks outrun the highlight cache) at 100
    /// columns, as the TUI does on first attach or after a resize.
    #[divan::bench]
    fn layout_1000_messages(b: Bencher<'_, '_>) {
        let messages: Vec<String> = (0..1000)
            .map(|i| {
                format!(
                    "Step {i}: I checked **src/part{i}.rs** and the `parse` function looks fine. \
                     {}\n\n- the error path returns `Err`\n- the happy path is covered\n\n\
                     ```rust\nfn f_{i}() -> u32 {{ {i} }}\n```\n",
                    "It handles the edge cases the tests describe. ".repeat(4)
                )
            })
            .collect();
        b.bench(|| {
            messages
                .iter()
                .map(|m| tui::markdown::render_blocks(black_box(m), 100).0.len())
                .sum::<usize>()
        });
    }
}
