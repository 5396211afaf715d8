//! A workflow fan-out (issue 23): one task lists 1,000 items, a for_each task runs one
//! thread per item (each one model request that runs `bash true`, then one that answers),
//! on a zero-latency mock, started with `tether workflows run FILE` (which prints progress
//! and returns when the run ends). Measured:
//!
//! - the command's wall time (the issue asks ≤ 30 s) and the daemon's peak RSS (VmHWM; the
//!   issue asks ≤ 200 MiB), with nothing else attached;
//! - the TUI staying responsive while it runs (the issue asks a key press redrawn within
//!   50 ms): a second run with the real `tether attach` on a 120×40 pseudo-terminal. Every
//!   ~200 ms a character is typed into the composer (a Greek letter, which nothing else on
//!   the screen has) and timed until the pty output holds it; then the run panel is opened
//!   (ctrl-g) and ↓/↑ move its selection, timed until the newly selected row's name is
//!   redrawn. p50, p99, max and the count of each; only samples taken while the run goes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tether_mock_llm::{MockServer, Reply, Route, Script};

use crate::attach::Pty;
use crate::home::{Bins, Home, proc_status_mib, run_timed};
use crate::report::{Row, Target, Unit};

/// Fan-out items (one thread each) unless `--workflow-items` says otherwise.
pub const ITEMS: usize = 1000;
/// The bound on a key press → its redraw.
const KEY_MS: f64 = 50.0;
/// Between key presses (a person typing slowly).
const KEY_EVERY: Duration = Duration::from_millis(200);
/// Composer samples before the run panel is opened.
const COMPOSER_SAMPLES: usize = 60;
/// Run panel samples at most (the run's end stops them sooner).
const PANEL_SAMPLES: usize = 150;
/// The workflow's task ids: the panel test waits for these names to be redrawn, so no thread,
/// hint or title on that screen may contain them.
const LIST_TASK: &str = "collect";
const FAN_TASK: &str = "review";

/// A mock and a home with the fan-out workflow file written: (mock, home, file, work dir).
fn setup(
    bins: &Bins,
    items: usize,
) -> Result<(MockServer, Home, std::path::PathBuf, std::path::PathBuf)> {
    let rt = tokio::runtime::Handle::current();
    let list: Vec<usize> = (0..items).collect();
    let script = Script::sequential(vec![])
        .with_side_reply(Reply::text("title"))
        .with_route(
            Route::new(
                "lister",
                vec![Reply::text(json!({ "items": list }).to_string())],
            )
            .when_system("bench wf lister")
            .by_turn(),
        )
        .with_route(
            Route::new(
                "worker",
                vec![
                    Reply::tool_use("bash", json!({"command": "true"})),
                    Reply::text("done"),
                ],
            )
            .when_system("bench wf worker")
            .by_turn(),
        );
    let mock = rt.block_on(MockServer::start(script))?;
    let home = Home::new(bins, &mock.base_url())?;
    let dir = home
        .paths()
        .config_file()
        .parent()
        .context("config dir")?
        .to_path_buf();
    std::fs::create_dir_all(&dir)?;
    let work = dir.join("work");
    std::fs::create_dir_all(&work)?;
    let file = dir.join("fanout.json");
    // Named agents: thread names (on screen in the thread panel) differ from the task ids.
    std::fs::write(
        &file,
        json!({"name": "bench-fanout", "tasks": [
            {"id": LIST_TASK, "agent": {"name": "lister", "system": "bench wf lister"},
             "prompt": "list"},
            {"id": FAN_TASK, "agent": {"name": "worker", "system": "bench wf worker"},
             "depends_on": [LIST_TASK],
             "for_each": format!("{{{{{LIST_TASK}.output.items}}}}"), "prompt": "item {{item}}"}
        ]})
        .to_string(),
    )?;
    Ok((mock, home, file, work))
}

/// The run's output checked: it succeeded, every item once.
fn check_run(out: &std::process::Output, items: usize) -> Result<()> {
    if !out.status.success() {
        bail!(
            "the workflow run failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let prefix = format!("✓ task {FAN_TASK}[");
    let succeeded = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .count();
    if succeeded != items {
        bail!("expected {items} fan-out items to succeed, saw {succeeded}");
    }
    Ok(())
}

pub fn rows(bins: &Bins, items: usize) -> Result<Vec<Row>> {
    let (_mock, home, file, work) = setup(bins, items)?;
    // Start the daemon first, so the wall time is the run's, not the daemon's start.
    home.ok(&["daemon", "start"])?;
    let pid = home.running_daemon_pid()?;
    let mut cmd = home.tether();
    cmd.current_dir(&work).args(["workflows", "run"]).arg(&file);
    let (out, took) = run_timed(&mut cmd)?;
    let peak = proc_status_mib(pid, "VmHWM")?;
    let rss = proc_status_mib(pid, "VmRSS")?;
    let _ = home.stop_daemon();
    check_run(&out, items)?;
    eprintln!(
        "bench: workflow fan-out of {items} took {:.1} s; daemon RSS peak {peak:.0} MiB, at the end {rss:.0} MiB",
        took.as_secs_f64()
    );
    let mut rows = vec![
        Row {
            metric: format!("workflow fan-out of {items} tasks (model + bash each), wall"),
            samples: vec![took.as_secs_f64() * 1e3],
            unit: Unit::Ms,
            target: Some(Target::AtMost(30_000.0)),
        },
        Row {
            metric: format!("daemon peak RSS during the {items}-task fan-out"),
            samples: vec![peak],
            unit: Unit::Mib,
            target: Some(Target::AtMost(200.0)),
        },
    ];
    rows.extend(tui_rows(bins, items).context("the TUI during the fan-out")?);
    Ok(rows)
}

/// The fan-out again with `tether attach` on a pty: key press → redraw, in the composer and
/// in the run panel.
fn tui_rows(bins: &Bins, items: usize) -> Result<Vec<Row>> {
    let (_mock, home, file, work) = setup(bins, items)?;
    home.ok(&["daemon", "start"])?;
    let mut new = home.tether();
    new.current_dir(&work)
        .args(["new", "--detach", "--name", "wfui"]);
    let (out, _) = run_timed(&mut new)?;
    if !out.status.success() {
        bail!(
            "tether new failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut pty = Pty::spawn_with(&home, &["attach", "wfui"], &[])?;
    // Unchanged cells (spaces on a blank screen) are skipped in the output: one word.
    pty.wait_for(0, "Message", Duration::from_secs(30))
        .context("the attached TUI's first frame")?;
    pty.burst_end(0, Duration::from_millis(100), Duration::from_secs(10))?;

    let mut cmd = home.tether();
    cmd.current_dir(&work)
        .args(["workflows", "run", "--session", "wfui"])
        .arg(&file);
    let from = pty.len();
    let run = std::thread::spawn(move || run_timed(&mut cmd));
    pty.wait_for(from, "bench-fanout", Duration::from_secs(30))
        .context("the run's start in the transcript")?;

    // Greek letters: nothing else the TUI draws here has them.
    let letters: Vec<char> = ('α'..='ω').filter(|c| *c != 'ς').collect();
    let mut composer = Vec::new();
    let mut next = Instant::now();
    while composer.len() < COMPOSER_SAMPLES && !run.is_finished() {
        pace(&mut next);
        let c = letters[composer.len() % letters.len()].to_string();
        let from = pty.len();
        let sent = pty.send(c.as_bytes())?;
        let seen = pty.wait_for(from, &c, Duration::from_secs(10))?;
        composer.push(seen.duration_since(sent).as_secs_f64() * 1e3);
        // Rub it out: the composer stays one line.
        pty.send(b"\x7f")?;
    }

    let mut panel = Vec::new();
    if !run.is_finished() {
        pace(&mut next);
        let from = pty.len();
        pty.send(b"\x07")?;
        pty.wait_for(from, "⛓ bench-fanout", Duration::from_secs(10))
            .context("the run panel (ctrl-g)")?;
        // The panel opens on the first row (the list task); ↓ selects the fan-out, ↑ back.
        while panel.len() < PANEL_SAMPLES && !run.is_finished() {
            pace(&mut next);
            let (key, name): (&[u8], &str) = if panel.len() % 2 == 0 {
                (b"\x1b[B", FAN_TASK)
            } else {
                (b"\x1b[A", LIST_TASK)
            };
            let from = pty.len();
            let sent = pty.send(key)?;
            let seen = pty.wait_for(from, name, Duration::from_secs(10))?;
            panel.push(seen.duration_since(sent).as_secs_f64() * 1e3);
        }
    }
    let (out, took) = run
        .join()
        .map_err(|_| anyhow::anyhow!("the workflow run's thread panicked"))??;
    drop(pty);
    let _ = home.stop_daemon();
    check_run(&out, items)?;

    let mut rows = vec![Row {
        metric: format!("workflow fan-out of {items} tasks with a TUI attached, wall"),
        samples: vec![took.as_secs_f64() * 1e3],
        unit: Unit::Ms,
        target: None,
    }];
    for (what, samples) in [
        ("TUI key → composer echo", &composer),
        ("TUI ↓/↑ in the run panel → row redrawn", &panel),
    ] {
        if samples.is_empty() {
            eprintln!(
                "bench: {what}: no sample, the run of {items} ended first (more --workflow-items)"
            );
            continue;
        }
        let (p50, p99, max) = (pct(samples, 50.0), pct(samples, 99.0), pct(samples, 100.0));
        eprintln!(
            "bench: {what} during the {items}-task fan-out: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({} presses)",
            samples.len()
        );
        rows.push(Row {
            metric: format!(
                "{what} during the {items}-task fan-out ({} presses; median = p50)",
                samples.len()
            ),
            samples: samples.clone(),
            unit: Unit::Ms,
            target: Some(Target::AtMost(KEY_MS)),
        });
        rows.push(Row {
            metric: format!("{what} during the fan-out, p99"),
            samples: vec![p99],
            unit: Unit::Ms,
            target: Some(Target::AtMost(KEY_MS)),
        });
    }
    Ok(rows)
}

/// Sleeps until `next`, then sets the next press [`KEY_EVERY`] later.
fn pace(next: &mut Instant) {
    let now = Instant::now();
    if *next > now {
        std::thread::sleep(*next - now);
    }
    *next = Instant::now() + KEY_EVERY;
}

/// The `p`th percentile (nearest rank) of `samples`.
fn pct(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s.get(rank.clamp(1, s.len().max(1)) - 1)
        .copied()
        .unwrap_or(f64::NAN)
}
