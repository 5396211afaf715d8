//! The full-screen TUI end to end, inside a real terminal (tmux): type, watch, detach,
//! reattach, lose the terminal mid-turn, and live through a daemon restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;
use tether_e2e::{Reply, TestEnv, bin_dir, pids_matching, wait_until};
use tether_mock_llm::Script;
use tether_proto::{EventBody, ServerFrame, blocks_text};

/// One tmux server on its own socket, running one `tether` command in a 120×40 pane.
struct Tmux {
    socket: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Tmux {
    fn start(env: &TestEnv, args: &[&str]) -> Tmux {
        Tmux::start_with(env, &[], args)
    }

    /// With extra environment variables for `tether`.
    fn start_with(env: &TestEnv, extra: &[(&str, &str)], args: &[&str]) -> Tmux {
        let socket = format!(
            "tether-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let vars = [
            ("TETHER_HOME", env.home.path().display().to_string()),
            (
                "TETHER_DAEMON_BIN",
                bin_dir().join("tetherd").display().to_string(),
            ),
            ("ANTHROPIC_BASE_URL", env.mock.base_url()),
            ("ANTHROPIC_API_KEY", "sk-test-not-a-real-key".to_string()),
            ("TETHER_LOG", "debug".to_string()),
        ];
        let mut cmd = String::from("env");
        for (k, v) in vars {
            cmd.push_str(&format!(" {k}={}", sh_quote(&v)));
        }
        for (k, v) in extra {
            cmd.push_str(&format!(" {k}={}", sh_quote(v)));
        }
        cmd.push_str(&format!(
            " {}",
            sh_quote(&bin_dir().join("tether").display().to_string())
        ));
        for a in args {
            cmd.push_str(&format!(" {}", sh_quote(a)));
        }
        // Keep the pane after tether exits so its last words can be read.
        let script = format!("{cmd}; echo \"[tether exited $?]\"; exec cat");
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "40",
                "sh",
                "-c",
                &script,
            ])
            .status()
            .expect("tmux must be installed (apt-get install tmux)")
            .success();
        assert!(ok, "tmux new-session failed");
        Tmux { socket }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "send-keys", "-t", "0"])
            .args(keys);
        assert!(c.status().unwrap().success());
    }

    /// Types text literally (no key names).
    fn type_text(&self, text: &str) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0", "-l", text])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Polls the screen (there is no event to await in a terminal) and shows it on timeout.
    async fn wait_for(&self, what: &str) {
        let start = std::time::Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(what) {
                eprintln!("[{:>6} ms] saw {what:?}", start.elapsed().as_millis());
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what:?}; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_gone(&self, what: &str) {
        wait_until(&format!("screen no longer shows {what:?}"), || {
            !self.screen().contains(what)
        })
        .await;
    }

    /// Closes the terminal under the client, as a dropped SSH connection does (SIGHUP).
    fn kill(&self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.kill();
    }
}

fn script() -> Script {
    Script::sequential(vec![
        Reply::text("Hello from the mock model"),
        Reply::tool_use(
            "bash",
            json!({"command": "echo working-on-it; while [ ! -f gate ]; do sleep 0.02; done; echo gate-open"}),
        ),
        Reply::text("slow thing finished"),
        Reply::text("answer after the restart"),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn type_detach_reattach_drop_and_reconnect_in_a_real_terminal() {
    let env = TestEnv::new(script()).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().display().to_string();

    // Start an empty session in the TUI, type a prompt, see the answer.
    let t = Tmux::start(&env, &["new", "--name", "tuitest", "--dir", &dir]);
    t.wait_for("No messages yet").await;
    t.type_text("say hi");
    t.keys(&["Enter"]);
    t.wait_for("Hello from the mock model").await;
    t.wait_for("○ idle").await;

    // Detach with the documented chord: the client exits, the session stays.
    t.keys(&["C-b", "d"]);
    t.wait_for("detached from tuitest").await;
    t.wait_for("[tether exited 0]").await;
    let ls = env.ok(&["ls"]);
    assert!(ls.contains("tuitest"), "{ls}");

    // Reattach: the whole transcript is there.
    let t = Tmux::start(&env, &["attach", "tuitest"]);
    t.wait_for("Hello from the mock model").await;
    assert!(t.screen().contains("say hi"), "{}", t.screen());

    // Start a slow turn, watch its live output, then lose the terminal mid-turn.
    t.type_text("run the slow thing");
    t.keys(&["Enter"]);
    t.wait_for("working-on-it").await;
    t.kill();
    wait_until("the killed client exited", || {
        pids_matching("tether attach tuitest").is_empty()
    })
    .await;

    // The agent kept going without any client; let the tool finish.
    std::fs::write(work.path().join("gate"), "").unwrap();
    let mut c = env.client().await;
    let id = env
        .ok(&["ls", "--json"])
        .lines()
        .next()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .unwrap();
    c.attach_until(&id, 0, |f| {
        matches!(f, ServerFrame::Event(e) if matches!(&e.body, EventBody::AgentMessage { content } if blocks_text(content).contains("slow thing finished")))
    })
    .await;
    drop(c);

    // Reattach: what happened while away is on screen, once.
    let t = Tmux::start(&env, &["attach", "tuitest"]);
    t.wait_for("slow thing finished").await;
    let screen = t.screen();
    assert!(screen.contains("gate-open"), "{screen}");
    assert_eq!(
        screen.matches("Hello from the mock model").count(),
        1,
        "{screen}"
    );

    // Restart the daemon under the attached client: it shows the banner, reconnects, resumes.
    env.ok(&["daemon", "stop"]);
    t.wait_for("reconnecting").await;
    env.ok(&["daemon", "start"]);
    t.wait_gone("reconnecting").await;
    t.wait_for("● connected").await;
    t.type_text("and now?");
    t.keys(&["Enter"]);
    t.wait_for("answer after the restart").await;
    let screen = t.screen();
    for line in [
        "Hello from the mock model",
        "slow thing finished",
        "answer after the restart",
    ] {
        assert_eq!(
            screen.matches(line).count(),
            1,
            "{line} must appear exactly once:\n{screen}"
        );
    }
    t.keys(&["C-b", "d"]);
    t.wait_for("[tether exited 0]").await;
}

/// A log longer than the page the TUI loads on attach: its beginning is not loaded.
#[tokio::test(flavor = "multi_thread")]
async fn search_and_the_pager_reach_events_that_were_never_loaded() {
    let steps: Vec<(&str, serde_json::Value)> = (0..80)
        .map(|i| ("bash", json!({"command": format!("echo step-{i}")})))
        .collect();
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("the first answer mentions zebra-early"),
        Reply::tools(steps),
        Reply::text("done with the steps"),
    ]))
    .await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().display().to_string();
    env.ok(&["run", "say zebra", "--name", "long", "--dir", &dir]);
    env.ok(&["send", "long", "now the steps", "--wait"]);
    assert!(env.events("long").len() > 250);

    let paged = work.path().join("paged.txt");
    let pager = format!("cat > {}", sh_quote(&paged.display().to_string()));
    let t = Tmux::start_with(&env, &[("PAGER", &pager)], &["attach", "long"]);
    t.wait_for("done with the steps").await;
    assert!(!t.screen().contains("zebra-early"));

    // Search: not in the loaded part, so the daemon finds it and the view pages it in.
    t.keys(&["/"]);
    t.type_text("zebra-early");
    t.keys(&["Enter"]);
    t.wait_for("match 1/1 for").await;
    assert!(t.screen().contains("the first answer mentions zebra-early"));

    // The pager gets the whole transcript, oldest first, each line once.
    t.keys(&["End"]);
    t.keys(&["C-o"]);
    wait_until("the pager got the whole transcript", || {
        std::fs::read_to_string(&paged).is_ok_and(|t| t.contains("done with the steps"))
    })
    .await;
    let text = std::fs::read_to_string(&paged).unwrap();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing:\n{text}"))
    };
    assert!(at("say zebra") < at("zebra-early"));
    assert!(at("zebra-early") < at("step-0"));
    assert!(at("step-79") < at("done with the steps"));
    assert_eq!(text.matches("zebra-early").count(), 1, "{text}");
    // The pager's end is not the view's return: keys sent before the TUI is back in raw mode
    // go to the cooked terminal and are lost (CI saw it under load). The transcript on
    // screen again says it is back.
    t.wait_for("done with the steps").await;
    t.keys(&["C-b", "d"]);
    t.wait_for("[tether exited 0]").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_picker_renames_a_session() {
    let env = TestEnv::new(Script::sequential(Vec::new())).await;
    env.ok(&["new", "--detach", "--name", "alpha"]);
    let t = Tmux::start(&env, &[]);
    t.wait_for("alpha").await;
    t.keys(&["C-r"]);
    t.wait_for("rename alpha").await;
    t.keys(&["BSpace", "BSpace", "BSpace", "BSpace", "BSpace"]);
    t.type_text("beta");
    t.keys(&["Enter"]);
    t.wait_for("renamed to beta").await;
    let ls = env.ok(&["ls"]);
    assert!(ls.contains("beta") && !ls.contains("alpha"), "{ls}");
    // The log says so too, for every client that reads it.
    let events = env.events("beta");
    assert!(
        events.iter().any(
            |e| matches!(&e.body, EventBody::SessionUpdated { name: Some(n), .. } if n == "beta")
        ),
        "{events:?}"
    );
    t.keys(&["Escape"]);
    t.wait_for("[tether exited 0]").await;
}

/// A multi-agent session: the primary spawns a reviewer thread; the TUI shows it in the panel,
/// ctrl-t switches the transcript to the reviewer's own stream (and the status bar names it),
/// alt-0 comes back to the primary. The CLI lists the threads and prints the reviewer's log.
#[tokio::test(flavor = "multi_thread")]
async fn the_tui_switches_to_a_child_thread_and_back() {
    let env = TestEnv::new(Script::sequential(vec![
        // The primary delegates...
        Reply::tool_use(
            "spawn_agent",
            json!({"name": "reviewer", "system": "You review patches.", "message": "review the patch please"}),
        ),
        // ...the reviewer answers in its own thread...
        Reply::text("reviewer-verdict: looks good"),
        // ...and the primary finishes with the reply in hand.
        Reply::text("primary-done: the reviewer approved"),
        // The message typed in the reviewer's view, answered by the reviewer.
        Reply::text("reviewer-again: the tests pass"),
    ]))
    .await;
    let files = tempfile::tempdir().unwrap();
    let lead = files.path().join("lead.yaml");
    std::fs::write(
        &lead,
        "name: lead\nmodel: claude-agent-test-model\nsystem: You lead.\nmultiagent:\n  type: multiagent_20261001\n",
    )
    .unwrap();
    env.ok(&["agents", "create", "-f", &lead.display().to_string()]);
    env.ok(&["new", "--detach", "--name", "team", "--agent", "lead"]);
    env.ok(&["send", "team", "get the patch reviewed", "--wait"]);

    // The command line: the threads, the reviewer's own log, a clear error for a typo.
    let threads = env.ok(&["threads", "team"]);
    assert!(
        threads.lines().nth(1).unwrap().contains("primary"),
        "{threads}"
    );
    assert!(threads.contains("reviewer"), "{threads}");
    let log = env.ok(&["logs", "team", "--thread", "reviewer"]);
    assert!(log.contains("reviewer-verdict: looks good"), "{log}");
    assert!(!log.contains("primary-done"), "{log}");
    let out = env.run(&["logs", "team", "--thread", "reveiwer"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reviewer (sthr_"),
        "the error lists the threads: {err}"
    );

    // 120 columns: the panel beside the transcript, the primary shown.
    let t = Tmux::start(&env, &["attach", "team"]);
    t.wait_for("primary-done: the reviewer approved").await;
    t.wait_for(" threads ").await;
    t.wait_for("reviewer · idle").await;
    t.wait_for("⑂ reviewer started").await;

    // ctrl-t: the reviewer's stream, from its own first event.
    t.keys(&["C-t"]);
    t.wait_for("▸ reviewer").await;
    t.wait_for("← primary: review the patch please").await;
    t.wait_for("reviewer-verdict: looks good").await;
    let screen = t.screen();
    assert!(!screen.contains("primary-done"), "{screen}");

    // A message typed here goes to the reviewer's thread.
    t.type_text("and the tests?");
    t.keys(&["Enter"]);
    t.wait_for("┃ and the tests?").await;
    t.wait_for("reviewer-again: the tests pass").await;

    // alt-0: back to the primary, as it was.
    t.keys(&["M-0"]);
    t.wait_gone("▸ reviewer").await;
    t.wait_for("primary-done: the reviewer approved").await;
    t.keys(&["C-b", "d"]);
    t.wait_for("[tether exited 0]").await;

    // The message went to the reviewer, not to the primary.
    let log = env.ok(&["logs", "team", "--thread", "reviewer", "--json"]);
    assert!(log.contains("and the tests?"), "{log}");
    let primary = env.ok(&["logs", "team", "--json"]);
    assert!(!primary.contains("and the tests?"), "{primary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_count_is_live_and_a_read_only_composer_is_disabled() {
    let env = TestEnv::new(Script::sequential(Vec::new())).await;
    env.ok(&["new", "--detach", "--name", "watched"]);
    let writer = Tmux::start(&env, &["attach", "watched"]);
    writer.wait_for("1 client ").await;
    // A second client comes with no event in the log: the count still follows.
    let watcher = Tmux::start(&env, &["attach", "--read-only", "watched"]);
    watcher.wait_for("⊘ read-only: watching").await;
    assert!(!watcher.screen().contains("Message the agent"));
    writer.wait_for("2 clients").await;
    watcher.keys(&["C-b", "d"]);
    watcher.wait_for("[tether exited 0]").await;
    writer.wait_for("1 client ").await;
    writer.keys(&["C-b", "d"]);
    writer.wait_for("[tether exited 0]").await;
}

// ---- workflow runs (issue 23): the run panel and a checkpoint answered in the session view ----

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_checkpoint_is_approved_from_the_session_view_and_the_run_completes() {
    use tether_mock_llm::Route;
    let route = |who: &str, text: &str| {
        Route::new(who, vec![Reply::text(text)])
            .when_system(who)
            .by_turn()
    };
    let env = TestEnv::new(
        Script::by_turn(vec![Reply::text("primary")])
            .with_side_reply(Reply::text("title"))
            .with_route(route("You are gather.", "gathered-output"))
            .with_route(route("You are publish.", "published-output")),
    )
    .await;
    env.ok(&["new", "--detach", "--name", "wf"]);
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("ship.yaml");
    std::fs::write(
        &file,
        "name: ship\ntasks:\n  - id: gather\n    agent: {system: You are gather.}\n    prompt: gather the changes\n  - id: approve\n    depends_on: [gather]\n    checkpoint: Ship these changes?\n  - id: publish\n    depends_on: [approve, gather]\n    agent: {system: You are publish.}\n    prompt: \"publish {{gather.output}}\"\n",
    )
    .unwrap();
    let t = Tmux::start(&env, &["attach", "wf"]);
    t.wait_for("● connected").await;
    let run = env
        .ok(&[
            "workflows",
            "run",
            &file.display().to_string(),
            "--session",
            "wf",
            "--detach",
        ])
        .trim()
        .to_string();
    assert!(run.starts_with("wrun_"), "{run}");

    // The checkpoint asks by itself once `gather` passed.
    t.wait_for("Ship these changes?").await;
    t.wait_for("y approve · n deny").await;
    // The run panel shows where it stands meanwhile (ctrl-g from the prompt).
    t.keys(&["C-g"]);
    t.wait_for("⛓ ship · running · 1/3 done").await;
    t.wait_for("waiting for you").await;
    let screen = t.screen();
    assert!(screen.contains("gather"), "{screen}");
    assert!(screen.contains("passed"), "{screen}");
    // y on the waiting task approves it; the run goes on to the end.
    t.keys(&["y"]);
    t.wait_for("⛓ ship · completed · 3/3 done").await;
    t.wait_gone("waiting for you").await;
    t.keys(&["Escape"]);
    t.wait_for("⛓ workflow run completed: every task succeeded")
        .await;
    t.keys(&["C-b", "d"]);
    t.wait_for("[tether exited 0]").await;

    let shown = env.ok(&["workflows", "show", &run]);
    assert!(shown.contains("(ended)"), "{shown}");
    for task in ["gather", "approve", "publish"] {
        let line = shown
            .lines()
            .find(|l| l.trim_start().starts_with(task))
            .unwrap_or_else(|| panic!("no {task} in {shown}"));
        assert!(line.contains("succeeded"), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_prompt_denies_with_a_note_and_closes_when_another_client_answers() {
    let env = TestEnv::new(
        Script::by_turn(vec![Reply::text("primary")]).with_side_reply(Reply::text("title")),
    )
    .await;
    env.ok(&["new", "--detach", "--name", "wf2"]);
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("two.yaml");
    std::fs::write(
        &file,
        "name: two\ntasks:\n  - id: first\n    checkpoint: First question?\n  - id: second\n    checkpoint: Second question?\n",
    )
    .unwrap();
    let t = Tmux::start(&env, &["attach", "wf2"]);
    t.wait_for("● connected").await;
    let run = env
        .ok(&[
            "workflows",
            "run",
            &file.display().to_string(),
            "--session",
            "wf2",
            "--detach",
        ])
        .trim()
        .to_string();
    // Both wait at once: one prompt at a time.
    t.wait_for("First question?").await;
    // Another client answers it: the prompt moves on to the next one.
    env.ok(&["workflows", "approve", &run, "first"]);
    t.wait_for("Second question?").await;
    // n: a note, then the denial.
    t.keys(&["n"]);
    t.wait_for("Why deny?").await;
    t.type_text("not this week");
    t.keys(&["Enter"]);
    t.wait_for("✗ task second attempt 1 failed").await;
    t.keys(&["C-b", "d"]);
    t.wait_for("[tether exited 0]").await;
    let shown = env.ok(&["workflows", "show", &run]);
    assert!(shown.contains("not this week"), "{shown}");
}
