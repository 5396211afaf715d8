//! A workflow fan-out (issue 23): one task lists 1,000 items, a for_each task runs one
//! thread per item (each one model request that runs `bash true`, then one that answers),
//! on a zero-latency mock, started with `tether workflows run FILE` (which prints progress
//! and returns when the run ends). Measured: the command's wall time (the issue asks
//! ≤ 30 s) and the daemon's peak RSS (VmHWM; the issue asks ≤ 200 MiB).

use anyhow::{Context, Result, bail};
use serde_json::json;
use tether_mock_llm::{MockServer, Reply, Route, Script};

use crate::home::{Bins, Home, proc_status_mib, run_timed};
use crate::report::{Row, Target, Unit};

/// Fan-out items (one thread each).
pub const ITEMS: usize = 1000;

pub fn rows(bins: &Bins) -> Result<Vec<Row>> {
    let rt = tokio::runtime::Handle::current();
    let items: Vec<usize> = (0..ITEMS).collect();
    let script = Script::sequential(vec![])
        .with_side_reply(Reply::text("title"))
        .with_route(
            Route::new(
                "lister",
                vec![Reply::text(json!({ "items": items }).to_string())],
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
    std::fs::write(
        &file,
        json!({"name": "bench-fanout", "tasks": [
            {"id": "list", "agent": {"system": "bench wf lister"}, "prompt": "list"},
            {"id": "each", "agent": {"system": "bench wf worker"}, "depends_on": ["list"],
             "for_each": "{{list.output.items}}", "prompt": "item {{item}}"}
        ]})
        .to_string(),
    )?;
    // Start the daemon first, so the wall time is the run's, not the daemon's start.
    home.ok(&["daemon", "start"])?;
    let pid = home.running_daemon_pid()?;
    let mut cmd = home.tether();
    cmd.current_dir(&work).args(["workflows", "run"]).arg(&file);
    let (out, took) = run_timed(&mut cmd)?;
    let peak = proc_status_mib(pid, "VmHWM")?;
    let rss = proc_status_mib(pid, "VmRSS")?;
    let _ = home.stop_daemon();
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
    let succeeded = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("✓ task each["))
        .count();
    if succeeded != ITEMS {
        bail!("expected {ITEMS} fan-out items to succeed, saw {succeeded}");
    }
    eprintln!(
        "bench: workflow fan-out of {ITEMS} took {:.1} s; daemon RSS peak {peak:.0} MiB, at the end {rss:.0} MiB",
        took.as_secs_f64()
    );
    Ok(vec![
        Row {
            metric: format!("workflow fan-out of {ITEMS} tasks (model + bash each), wall"),
            samples: vec![took.as_secs_f64() * 1e3],
            unit: Unit::Ms,
            target: Some(Target::AtMost(30_000.0)),
        },
        Row {
            metric: format!("daemon peak RSS during the {ITEMS}-task fan-out"),
            samples: vec![peak],
            unit: Unit::Mib,
            target: Some(Target::AtMost(200.0)),
        },
    ])
}
