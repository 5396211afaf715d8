//! Issue 27 item 2, end to end: a sandboxed background job swaps the workspace directory `d`
//! with a symlink to a directory outside the workspace (`renameat2(RENAME_EXCHANGE)` in a
//! loop, via python's ctypes), while the model sends read, write, edit, glob and grep calls
//! through `d/…` to the real daemon (running as root here). No result may show the outside,
//! and nothing outside may be created or changed. The daemon's unit tests
//! (tools::race_tests) run the same race at 10,000 attempts per tool; here fewer go through
//! the whole daemon to keep the suite's time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv, tool_results};
use tether_mock_llm::Script;
use tether_proto::ToolStatus;

/// Calls per tool through the daemon.
const PER_TOOL: usize = 300;
/// Tool calls the mock model makes in one reply.
const BATCH: usize = 50;
const SECRET: &str = "OUTSIDE-SECRET-e2e-51c7";
const OUTSIDE_ENTRY: &str = "outside-only-entry.txt";

/// Starts the swap loop in the background and waits until it has swapped once.
fn start_racer(outside: &str) -> String {
    let python = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
# renameat2(AT_FDCWD, "d", AT_FDCWD, "link", RENAME_EXCHANGE) on x86_64.
if libc.syscall(316, -100, b"d", -100, b"link", 2) != 0:
    open(".racer-failed", "w").write(str(ctypes.get_errno()))
    sys.exit(1)
open(".racer-started", "w").close()
while True:
    libc.syscall(316, -100, b"d", -100, b"link", 2)
"#;
    format!(
        "mkdir -p d && echo inside > d/secret.txt && echo tick > d/e.txt && ln -sfn {outside} link && \
         {{ /usr/bin/python3 -c '{python}' >/dev/null 2>&1 & }}; echo $! > .racer.pid; \
         while [ ! -e .racer-started ] && [ ! -e .racer-failed ]; do sleep 0.01; done; \
         cat .racer-failed 2>/dev/null && echo RACER-FAILED || echo RACING"
    )
}

/// The calls of one tool, `i` numbering them.
fn call(tool: &str, i: usize) -> Value {
    match tool {
        "read" => json!({"file_path": "d/secret.txt"}),
        "write" if i.is_multiple_of(2) => {
            json!({"file_path": format!("d/w{i}.txt"), "content": "w"})
        }
        "write" => json!({"file_path": format!("d/n{i}/f.txt"), "content": "w"}),
        "edit" if i.is_multiple_of(2) => {
            json!({"file_path": "d/e.txt", "old_string": "tick", "new_string": "tock"})
        }
        "edit" => json!({"file_path": "d/e.txt", "old_string": "tock", "new_string": "tick"}),
        "glob" if i.is_multiple_of(2) => json!({"pattern": "**/*", "path": "d"}),
        "glob" => json!({"pattern": "d/**/*"}),
        "grep" if i.is_multiple_of(2) => json!({"pattern": "SECRET|inside|tick", "path": "d"}),
        "grep" => json!({"pattern": "SECRET|inside", "path": "d/secret.txt"}),
        other => panic!("no calls for {other}"),
    }
}

fn outside_state(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut state: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let content = std::fs::read_to_string(e.path()).unwrap_or_else(|_| "<dir>".into());
            (e.file_name().to_string_lossy().into_owned(), content)
        })
        .collect();
    state.sort();
    state
}

#[tokio::test(flavor = "multi_thread")]
async fn file_tools_never_reach_outside_while_sandboxed_code_swaps_a_symlink() {
    let outer = tempfile::tempdir().unwrap();
    let outside = outer.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), format!("{SECRET}\n")).unwrap();
    std::fs::write(outside.join("e.txt"), format!("tick {SECRET}\n")).unwrap();
    std::fs::write(outside.join(OUTSIDE_ENTRY), "x\n").unwrap();
    let before = outside_state(&outside);

    // write last: the files it creates would make every later glob result long, and a long
    // transcript gets compacted (a model request that would take a scripted reply).
    let tools = ["read", "edit", "glob", "grep", "write"];
    let mut replies = vec![Reply::tool_use(
        "bash",
        json!({"command": start_racer(outside.to_str().unwrap())}),
    )];
    for tool in tools {
        for start in (0..PER_TOOL).step_by(BATCH) {
            let calls = (start..(start + BATCH).min(PER_TOOL))
                .map(|i| (tool, call(tool, i)))
                .collect();
            replies.push(Reply::tools(calls));
        }
    }
    replies.push(Reply::tool_use(
        "bash",
        json!({"command": "kill $(cat .racer.pid) && echo STOPPED"}),
    ));
    replies.push(Reply::text("done"));
    // Title and compaction requests (no tools offered) don't take a scripted reply.
    let script = Script::sequential(replies).with_side_reply(Reply::text("a summary"));
    let env = TestEnv::new(script).await;
    let ws = tempfile::tempdir().unwrap();
    tether_e2e::bin_dir(); // built before the clock starts
    let started = std::time::Instant::now();
    env.run(&[
        "run",
        "race",
        "--dir",
        ws.path().to_str().unwrap(),
        "--name",
        "race",
        "--max-turns",
        "1000",
    ]);
    eprintln!(
        "{} tool calls through the daemon in {:?}",
        PER_TOOL * tools.len(),
        started.elapsed()
    );

    let events = env.events("race");
    let results = tool_results(&events);
    assert_eq!(
        results.len(),
        PER_TOOL * tools.len() + 2,
        "every call ran: {:?}",
        tether_e2e::session_errors(&events)
    );
    assert!(results[0].1.contains("RACING"), "{:?}", results[0]);
    let calls = &results[1..results.len() - 1];
    let leaks: Vec<String> = tools
        .iter()
        .zip(calls.chunks(PER_TOOL))
        .filter_map(|(tool, results)| {
            let leaked: Vec<&String> = results
                .iter()
                .map(|(_, text)| text)
                .filter(|text| text.contains(SECRET) || text.contains(OUTSIDE_ENTRY))
                .collect();
            let first = leaked.first()?;
            Some(format!(
                "{tool}: {} of {PER_TOOL}, e.g. {first}",
                leaked.len()
            ))
        })
        .collect();
    let after = outside_state(&outside);
    let created: Vec<&String> = after
        .iter()
        .filter(|entry| !before.contains(entry))
        .map(|(name, _)| name)
        .collect();
    assert!(
        leaks.is_empty() && created.is_empty(),
        "file tools reached outside the workspace:\n{}\ncreated or changed outside: {created:?}",
        leaks.join("\n")
    );
    assert_eq!(after, before, "nothing outside was removed either");
    // The race was real: reads ran both while `d` was the directory and while it was the
    // symlink (refused), and some went through.
    let reads = &calls[..PER_TOOL];
    let read_ok = reads.iter().filter(|(s, _)| *s == ToolStatus::Ok).count();
    assert!(
        reads.iter().any(|(_, t)| t.contains("\tinside")),
        "no read got through: {reads:?}"
    );
    assert!(
        results.last().unwrap().1.contains("STOPPED"),
        "{:?}",
        results.last()
    );
    eprintln!("reads: {read_ok} of {PER_TOOL} succeeded, the rest were refused");
}
