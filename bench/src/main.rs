//! `tether-bench`: measures the release `tether`/`tetherd` against the in-repo mock model.
//!
//! ```text
//! cargo run --release -p tether-bench -- [--runs N] [--out FILE]
//! ```
//!
//! Metrics (each repeated `--runs` times; the report gives median, min and max):
//! - `tether run` wall time with the daemon already up (after 2 warm-up runs), and with the
//!   daemon stopped so the call has to start it;
//! - the daemon's RSS with 10 idle sessions, and after those 10 ran the scenario concurrently;
//! - durable append throughput of the daemon's event log (`Store`), one event per call and
//!   100 per call, from 64 concurrent appenders;
//! - fan-out: a streaming turn with 0/1/10/50 attached clients, and the daemon's CPU per idle
//!   attached client (`fanout.rs`);
//! - restart recovery: 100 sessions mid-turn, daemon SIGKILLed, time until all resumed.
//! - provider CPU per request: building a 200-turn request and parsing a 10,000-delta
//!   stream, for each wire protocol;
//! - 100 sessions running the scenario at once (`concurrent.rs`);
//! - sandbox start and per-command round trip, sandboxed vs plain bash (`sandbox.rs`);
//! - tether next to Codex CLI, Claude Code and opencode, interleaved (`peers.rs`);
//! - an outcome satisfied at the first evaluation against the same turn without one
//!   (`outcome.rs`; `--only outcome` needs only tetherd);
//! - an idle daemon's CPU per minute and RSS with 1,000 scheduled deployments
//!   (`deployments.rs`; `--only deployments` needs only tetherd);
//! - a workflow fan-out of 1,000 tasks: wall time and the daemon's peak RSS, then key press →
//!   redraw in a TUI attached while it runs (`workflows.rs`; only with `--only workflows`).
//! - self-hosted workers: added latency per tool call through the work queue, long-poll wake,
//!   daemon CPU with 8 workers × 64 sessions (`workers.rs`; only with `--only workers`).
//!
//! Every metric gets its own temp `TETHER_HOME` under /tmp; its daemon is stopped (and
//! SIGKILLed if need be) when the metric ends, fails, or the bench is interrupted.

mod append;
mod attach;
mod cli;
mod concurrent;
mod deployments;
mod e2e;
mod fanout;
mod fleet;
mod home;
mod http;
mod memory;
mod outcome;
mod peers;
mod proctree;
mod providers;
mod recovery;
mod report;
mod sandbox;
mod threads;
mod workers;
mod workflows;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use tether_mock_llm::{MockServer, Timing, scenarios};

use crate::cli::Metric;
use crate::home::Bins;
use crate::report::{Row, Target, Unit};

/// Model requests one run of `bash_then_read` makes.
const REQUESTS_PER_RUN: usize = 3;

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let bench_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = bench_dir
        .parent()
        .context("the bench crate has no parent directory")?
        .to_path_buf();
    let Some(opts) = cli::parse(
        std::env::args().skip(1),
        bench_dir.join("results/latest.md"),
    )?
    else {
        println!("{}", cli::USAGE);
        return Ok(());
    };
    if cfg!(debug_assertions) {
        eprintln!(
            "bench: warning: this is a debug build of the bench; the append figures measure debug code (use --release)"
        );
    }
    // The outcome, threads and deployments metrics drive tetherd over HTTP: alone, they
    // need no `tether` client.
    let bins = build_bins(
        &root,
        opts.only
            .iter()
            .any(|m| !matches!(m, Metric::Outcome | Metric::Threads | Metric::Deployments)),
        opts.debug_bins,
    )?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let _rt_guard = rt.enter();
    rt.spawn(kill_daemons_on_signal());

    let script = scenarios::bash_then_read().with_timing(Timing {
        ttft_ms: opts.ttft_ms,
        chunk_delay_ms: opts.chunk_delay_ms,
        ..Timing::default()
    });
    let mock = rt
        .block_on(MockServer::start(script))
        .context("starting the mock model")?;
    let url = mock.base_url();
    let runs = opts.runs;
    let mut rows = Vec::new();
    let mut scenario_runs = 0;

    // First, on a quiet machine: CPU time is what it measures, and the process-heavy groups
    // (100 sandboxed shells) leave teardown work behind that skews it.
    if opts.wants(Metric::Providers) {
        rows.extend(provider_rows(runs)?);
    }
    if opts.wants(Metric::Warm) {
        eprintln!("bench: tether run, warm daemon ({runs} runs + 2 warm-up)");
        let warm = e2e::run_warm(&bins, &url, runs).context("run warm")?;
        scenario_runs += warm.len() + 2;
        rows.push(Row {
            metric: "`tether run`, warm daemon".into(),
            samples: warm,
            unit: Unit::Ms,
            target: Some(Target::AtMost(50.0)),
        });
    }
    if opts.wants(Metric::Cold) {
        eprintln!("bench: tether run, cold daemon ({runs} runs)");
        let cold = e2e::run_cold(&bins, &url, runs).context("run cold")?;
        scenario_runs += cold.len();
        rows.push(Row {
            metric: "`tether run`, cold (starts the daemon)".into(),
            samples: cold,
            unit: Unit::Ms,
            target: Some(Target::AtMost(150.0)),
        });
    }
    if opts.wants(Metric::Rss) {
        eprintln!("bench: daemon RSS with 10 sessions ({runs} fresh daemons)");
        let mut rss = Vec::with_capacity(runs);
        for i in 0..runs {
            rss.push(e2e::rss_once(&bins, &url).with_context(|| format!("RSS run {i}"))?);
        }
        scenario_runs += 10 * rss.len();
        let rss_row = |metric: &str, f: fn(&e2e::RssSample) -> f64, target| Row {
            metric: metric.into(),
            samples: rss.iter().map(f).collect(),
            unit: Unit::Mib,
            target,
        };
        rows.push(rss_row("daemon RSS, idle, no sessions", |r| r.empty, None));
        rows.push(rss_row(
            "daemon RSS, idle, 10 sessions",
            |r| r.idle,
            Some(Target::AtMost(20.0)),
        ));
        rows.push(rss_row(
            "daemon RSS, 10 sessions after each ran the scenario",
            |r| r.after_runs,
            None,
        ));
        rows.push(rss_row(
            "daemon peak RSS (VmHWM), 10 concurrent runs",
            |r| r.peak,
            None,
        ));
    }
    if opts.wants(Metric::Concurrent) {
        let n = concurrent::SESSIONS;
        eprintln!("bench: {n} sessions running the scenario at once ({runs} runs)");
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs {
            samples.push(
                concurrent::once(&bins, &url).with_context(|| format!("concurrent run {i}"))?,
            );
        }
        scenario_runs += n * samples.len();
        let row = |metric: String, f: fn(&concurrent::Sample) -> f64, unit| Row {
            metric,
            samples: samples.iter().map(f).collect(),
            unit,
            target: None,
        };
        rows.push(row(
            format!("{n} sessions run the scenario at once: total wall"),
            |s| s.wall_ms,
            Unit::Ms,
        ));
        rows.push(row(
            format!("{n} concurrent sessions: daemon peak RSS (VmHWM)"),
            |s| s.daemon_peak_mib,
            Unit::Mib,
        ));
        rows.push(row(
            format!("{n} concurrent sessions: peak RSS of daemon + sandboxed shells"),
            |s| s.tree_peak_mib,
            Unit::Mib,
        ));
    }
    let expected_requests = REQUESTS_PER_RUN * scenario_runs;
    let requests = mock.request_count();
    if requests != expected_requests {
        bail!(
            "the mock saw {requests} model requests, expected {expected_requests}: retries or extra calls distort the timings"
        );
    }
    rt.block_on(mock.shutdown());

    if opts.wants(Metric::Append) {
        let (sessions, events) = (opts.append_sessions, opts.append_events);
        let mut single = Vec::with_capacity(runs);
        let mut batched = Vec::with_capacity(runs);
        eprintln!(
            "bench: durable append, {sessions} appenders, ≥ {events} events per run ({runs} runs × 2)"
        );
        for i in 0..runs {
            for (batch, out) in [(1, &mut single), (100, &mut batched)] {
                let dir = tempfile::Builder::new()
                    .prefix("tba")
                    .tempdir_in("/tmp")
                    .context("creating a temp dir for the append db")?;
                let rate = rt
                    .block_on(append::run(dir.path(), sessions, events, batch))
                    .with_context(|| format!("append run {i} (batch {batch})"))?;
                out.push(rate);
            }
        }
        rows.push(Row {
            metric: format!("durable append, {sessions} appenders × 1 event/call"),
            samples: single,
            unit: Unit::EventsPerSec,
            target: Some(Target::AtLeast(100_000.0)),
        });
        rows.push(Row {
            metric: format!("durable append, {sessions} appenders × 100 events/call"),
            samples: batched,
            unit: Unit::EventsPerSec,
            target: None,
        });
    }

    if opts.wants(Metric::Recovery) {
        let n = recovery::SESSIONS;
        eprintln!("bench: restart recovery, {n} sessions mid-turn ({runs} runs)");
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs {
            samples.push(recovery::once(&bins, &rt).with_context(|| format!("recovery run {i}"))?);
        }
        rows.push(Row {
            metric: format!("restart after kill -9, {n} sessions mid-turn → all resumed"),
            samples,
            unit: Unit::Ms,
            target: Some(Target::AtMost(1000.0)),
        });
    }
    if opts.wants(Metric::Attach) {
        rows.extend(attach_rows(&rt, &bins, &url, runs)?);
    }

    if opts.wants(Metric::Fleet) {
        rows.extend(fleet_rows(&rt, &bins, &url, runs)?);
    }

    if opts.wants(Metric::Fanout) {
        eprintln!(
            "bench: fan-out, {} deltas per turn to {:?} attached clients ({runs} runs each)",
            opts.fanout_deltas,
            fanout::CLIENT_COUNTS
        );
        rows.extend(
            rt.block_on(fanout::run(
                &bins,
                runs,
                opts.fanout_deltas,
                opts.chunk_delay_ms,
            ))
            .context("fan-out")?,
        );
    }
    if opts.wants(Metric::Http) {
        eprintln!(
            "bench: HTTP API, paging {} sessions and {:?} SSE readers ({runs} runs)",
            http::SESSIONS,
            http::SSE_READERS
        );
        rows.extend(
            rt.block_on(http::list(&bins, runs.min(3)))
                .context("HTTP session list")?,
        );
        rows.extend(
            rt.block_on(http::fanout(
                &bins,
                runs,
                opts.fanout_deltas,
                opts.chunk_delay_ms,
            ))
            .context("HTTP SSE fan-out")?,
        );
    }
    if opts.wants(Metric::Outcome) {
        eprintln!(
            "bench: a satisfied-first-time outcome vs the same turn without one ({runs} runs each)"
        );
        rows.extend(outcome::rows(&bins, runs).context("outcome overhead")?);
    }
    if opts.wants(Metric::Threads) {
        eprintln!(
            "bench: {} sub-agent threads of one session at once vs as many sessions",
            threads::THREADS
        );
        rows.extend(threads::rows(&bins).context("threads")?);
    }
    if opts.wants(Metric::Workflows) {
        eprintln!(
            "bench: a workflow fan-out of {} tasks (one model call and one bash call each), then again with a TUI attached",
            opts.workflow_items
        );
        rows.extend(workflows::rows(&bins, opts.workflow_items).context("workflow fan-out")?);
    }
    if opts.wants(Metric::Memory) {
        eprintln!(
            "bench: a store of {} memories synced into a session's copy and mounted into its sandbox ({runs} runs)",
            memory::MEMORIES
        );
        let samples = rt
            .block_on(memory::run(&bins.tetherd, runs))
            .context("memory store mount")?;
        let row = |metric: &str, f: fn(&memory::Sample) -> f64, target: Option<Target>| Row {
            metric: metric.into(),
            samples: samples.iter().map(f).collect(),
            unit: Unit::Ms,
            target,
        };
        rows.push(row(
            "memory: first sync of 10,000 memories into a session's copy",
            |s| s.first_sync_ms,
            None,
        ));
        rows.push(row(
            "memory: resync with nothing changed (before/after each tool call)",
            |s| s.resync_ms,
            None,
        ));
        rows.push(row(
            "memory: sandbox start with the 10,000-file copy mounted → files counted",
            |s| s.mounted_start_ms,
            None,
        ));
        rows.push(row(
            "memory: the mount's own cost (mounted start − plain start)",
            |s| s.mounted_start_ms - s.plain_start_ms,
            Some(Target::AtMost(50.0)),
        ));
    }
    if opts.wants(Metric::Workers) {
        eprintln!(
            "bench: self-hosted workers: per-call overhead, long-poll wake, {} workers × {} sessions ({runs} runs)",
            workers::WORKERS,
            workers::SESSIONS
        );
        // Its own mock: the scenario groups' one is shut down once their requests are counted.
        let mock = rt
            .block_on(MockServer::start(workers::script()))
            .context("starting the mock model")?;
        let paced = rt
            .block_on(MockServer::start(workers::script().with_timing(Timing {
                ttft_ms: workers::PACED_TTFT_MS,
                ..Timing::default()
            })))
            .context("starting the paced mock model")?;
        let measured =
            workers::rows(&bins, &mock.base_url(), &paced.base_url(), runs).context("workers");
        rt.block_on(mock.shutdown());
        rt.block_on(paced.shutdown());
        rows.extend(measured?);
    }
    if opts.wants(Metric::Deployments) {
        eprintln!(
            "bench: an idle daemon's CPU over a minute and RSS, without and with {} scheduled deployments",
            deployments::DEPLOYMENTS
        );
        rows.extend(deployments::rows(&bins).context("deployments")?);
    }
    if opts.wants(Metric::Sandbox) {
        eprintln!(
            "bench: sandbox start and {} shell round trips, sandboxed vs plain bash ({runs} runs)",
            sandbox::CALLS
        );
        let (mut boxed, mut plain) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        for i in 0..runs {
            let work = tempfile::Builder::new()
                .prefix("tbs")
                .tempdir_in("/tmp")
                .context("creating a sandbox workspace")?;
            boxed.push(
                sandbox::sandboxed(&bins.tetherd, work.path())
                    .with_context(|| format!("sandbox run {i}"))?,
            );
            plain.push(sandbox::plain(work.path()).with_context(|| format!("plain bash run {i}"))?);
        }
        let row = |metric: &str, s: &[sandbox::Sample], f: fn(&sandbox::Sample) -> f64| Row {
            metric: metric.into(),
            samples: s.iter().map(f).collect(),
            unit: Unit::Ms,
            target: None,
        };
        rows.push(row(
            "sandbox start → first command answered",
            &boxed,
            |s| s.start_ms,
        ));
        rows.push(row(
            "plain bash start → first command answered",
            &plain,
            |s| s.start_ms,
        ));
        rows.push(row(
            "per command round trip, sandboxed shell",
            &boxed,
            |s| s.call_ms,
        ));
        rows.push(row("per command round trip, plain bash", &plain, |s| {
            s.call_ms
        }));
    }
    let mut peers_md = String::new();
    if opts.wants(Metric::Peers) {
        let timing = Timing {
            ttft_ms: opts.ttft_ms,
            chunk_delay_ms: opts.chunk_delay_ms,
            ..Timing::default()
        };
        let (peer_rows, md) = peers::run(&rt, &bins, runs, timing).context("peers")?;
        rows.extend(peer_rows);
        peers_md = md;
    }

    let mut md = String::from("# tether benchmark\n\n");
    for line in report::machine_lines(&root, &bins.tether) {
        md.push_str(&line);
        md.push('\n');
    }
    md.push_str(&format!(
        "- runs: {runs} per metric; mock model in-process on loopback, scenario `bash_then_read` \
         (3 model calls, bash + read), ttft {} ms, chunk delay {} ms\n\n",
        opts.ttft_ms, opts.chunk_delay_ms
    ));
    md.push_str(&report::table(&rows));
    md.push_str(&peers_md);

    println!("{md}");
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&opts.out, &md).with_context(|| format!("writing {}", opts.out.display()))?;
    eprintln!("bench: report written to {}", opts.out.display());
    Ok(())
}

/// The fleet picker over 3 hosts × 1,000 sessions (see fleet.rs); one setup for all runs.
fn fleet_rows(
    rt: &tokio::runtime::Runtime,
    bins: &Bins,
    url: &str,
    runs: usize,
) -> Result<Vec<Row>> {
    let runs = runs.min(5);
    eprintln!(
        "bench: fleet picker, 3 hosts × {} sessions ({runs} runs)",
        fleet::SESSIONS
    );
    let (homes, fake_ssh) = rt
        .block_on(fleet::setup(bins, url))
        .context("fleet setup")?;
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        samples.push(fleet::run_once(&homes, &fake_ssh).with_context(|| format!("fleet run {i}"))?);
    }
    let row = |metric: &str, samples: Vec<f64>, unit, target| Row {
        metric: metric.into(),
        samples,
        unit,
        target,
    };
    Ok(vec![
        row(
            "fleet picker, 3 hosts × 1,000 sessions: first complete frame",
            samples.iter().map(|s| s.first_frame_ms).collect(),
            Unit::Ms,
            Some(Target::AtMost(150.0)),
        ),
        row(
            "fleet picker: client CPU per pushed update (a remote rename)",
            samples.iter().map(|s| s.cpu_ms_per_update).collect(),
            Unit::Ms,
            Some(Target::AtMost(5.0)),
        ),
        row(
            "fleet picker: client CPU while nothing happens",
            samples.iter().map(|s| s.client_cpu_pct).collect(),
            Unit::Percent,
            None,
        ),
        row(
            "fleet picker: 3 daemons' CPU while nothing happens",
            samples.iter().map(|s| s.daemons_cpu_pct).collect(),
            Unit::Percent,
            None,
        ),
    ])
}

/// The TUI attached to a 100,000-event session (see attach.rs); one seeded home for all runs.
fn attach_rows(
    rt: &tokio::runtime::Runtime,
    bins: &Bins,
    url: &str,
    runs: usize,
) -> Result<Vec<Row>> {
    const EVENTS: usize = 100_000;
    eprintln!("bench: TUI attach to a {EVENTS}-event session ({runs} runs)");
    let home = home::Home::new(bins, url)?;
    rt.block_on(attach::seed(&home, EVENTS))
        .context("seeding the big session")?;
    home.ok(&["daemon", "start"])?;
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        samples.push(attach::run_once(&home).with_context(|| format!("attach run {i}"))?);
    }
    let row = |metric: &str, samples: Vec<f64>, unit, target| Row {
        metric: metric.into(),
        samples,
        unit,
        target,
    };
    Ok(vec![
        row(
            "TUI attach, 100k-event session: first frame",
            samples.iter().map(|s| s.first_frame_ms).collect(),
            Unit::Ms,
            Some(Target::AtMost(100.0)),
        ),
        row(
            "TUI attach: PgUp → frame written (20 pages per run)",
            samples
                .iter()
                .flat_map(|s| s.page_ms.iter().copied())
                .collect(),
            Unit::Ms,
            Some(Target::AtMost(16.0)),
        ),
        row(
            "TUI client RSS after 20 pages",
            samples.iter().map(|s| s.rss_mib).collect(),
            Unit::Mib,
            Some(Target::AtMost(25.0)),
        ),
        row(
            "TUI client CPU, idle attached (2 s)",
            samples.iter().map(|s| s.idle_cpu_pct).collect(),
            Unit::Percent,
            Some(Target::AtMost(1.0)),
        ),
    ])
}

/// `cargo build --release --bins -p tether -p tether-daemon`, so the bench never measures stale
/// binaries; returns where they are.
/// Provider request building and stream parsing, per wire protocol.
fn provider_rows(runs: usize) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    eprintln!("bench: provider request building and stream parsing ({runs} runs each)");
    for wire in tether_daemon::provider::Wire::ALL {
        rows.push(Row {
            metric: format!(
                "{}: build a {}-turn request (CPU)",
                wire.name(),
                providers::TURNS
            ),
            samples: providers::build_ms(wire, runs),
            unit: Unit::Ms,
            target: Some(Target::AtMost(1.0)),
        });
        rows.push(Row {
            metric: format!(
                "{}: parse a {}-delta stream (CPU)",
                wire.name(),
                providers::DELTAS
            ),
            samples: providers::parse_ms(wire, runs)?,
            unit: Unit::Ms,
            target: Some(Target::AtMost(1.0)),
        });
        rows.push(Row {
            metric: format!(
                "{}: reference, serde_json only validating the same events (CPU)",
                wire.name()
            ),
            samples: providers::json_floor_ms(wire, runs)?,
            unit: Unit::Ms,
            target: None,
        });
    }
    Ok(rows)
}

fn build_bins(root: &Path, client: bool, debug: bool) -> Result<Bins> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = if debug { "debug" } else { "release" };
    eprintln!("bench: building {profile} binaries");
    let mut packages = vec!["-p", "tether-daemon"];
    if client {
        packages.extend(["-p", "tether"]);
    }
    let mut build = Command::new(&cargo);
    build.args(["build", "--bins"]);
    if !debug {
        build.arg("--release");
    }
    let status = build
        .args(packages)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .status()
        .with_context(|| format!("running {}", PathBuf::from(&cargo).display()))?;
    if !status.success() {
        bail!("building the {profile} binaries failed ({status})");
    }
    // This binary is target/<profile>/tether-bench; the binaries are in target/<profile>.
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench binary is not inside a cargo target directory")?;
    let dir = target.join(profile);
    let bins = Bins {
        tether: dir.join("tether"),
        tetherd: dir.join("tetherd"),
    };
    for b in [&bins.tether, &bins.tetherd] {
        if !b.is_file() && (client || *b == bins.tetherd) {
            bail!("{} is missing after the build", b.display());
        }
    }
    Ok(bins)
}

/// On Ctrl-C or SIGTERM, `Drop` guards never run: kill the daemons here, then exit.
async fn kill_daemons_on_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
    eprintln!("\nbench: interrupted; stopping daemons");
    home::kill_all_live();
    std::process::exit(130);
}
