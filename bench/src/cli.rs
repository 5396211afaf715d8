//! Command-line flags (hand-parsed: the bench has no clap dependency).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

pub const USAGE: &str = "\
usage: cargo run --release -p tether-bench -- [OPTIONS]

  --runs N               repetitions per metric (default 20)
  --out FILE             also write the report here (default bench/results/latest.md)
  --ttft-ms MS           mock model: delay before the first body byte of each reply (default 0)
  --chunk-delay-ms MS    mock model: delay between SSE events (default 0)
  --append-sessions N    concurrent appenders in the append benchmark (default 64)
  --append-events N      events per append run, at least (default 200000)
  --fanout-deltas N      text deltas per turn in the fan-out benchmark (default 20000)
  --workflow-items N     items of the workflow fan-out benchmark (default 1000)
  --debug-bins           build and drive the debug tether/tetherd (checks a bench's code path
                         quickly; its numbers mean nothing)
  --only LIST            comma-separated subset of: warm, cold, rss, append, attach, fleet, recovery,
                         fanout, providers, http, peers, concurrent, sandbox,
                         outcome, threads (default: all)
  -h, --help             this text";

#[derive(Debug, Clone)]
pub struct Opts {
    pub runs: usize,
    pub out: PathBuf,
    pub ttft_ms: u64,
    pub chunk_delay_ms: u64,
    pub append_sessions: usize,
    pub append_events: usize,
    pub fanout_deltas: usize,
    pub workflow_items: usize,
    pub debug_bins: bool,
    pub only: Vec<Metric>,
}

/// The metric groups, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Warm,
    Cold,
    Rss,
    Append,
    Recovery,
    Attach,
    /// The fleet picker over 3 hosts × 1,000 sessions (fleet.rs).
    Fleet,
    Fanout,
    Providers,
    Http,
    /// tether vs Codex CLI, Claude Code, opencode (peers.rs).
    Peers,
    /// 100 sessions running the scenario at once.
    Concurrent,
    /// Sandbox start and per-tool-call overhead.
    Sandbox,
    /// A satisfied-first-time outcome against the same turn without one (outcome.rs).
    Outcome,
    /// 64 sub-agent threads of one session against 64 sessions (threads.rs).
    Threads,
    /// A 10,000-memory store mounted into a sandbox (memory.rs; only with --only memory).
    Memory,
    /// An idle daemon's CPU and memory with 1,000 scheduled deployments (deployments.rs).
    Deployments,
    /// A 1,000-task workflow fan-out: wall time and daemon RSS (workflows.rs; only with
    /// --only workflows).
    Workflows,
    /// Self-hosted environments' work queue (workers.rs; only with --only workers).
    Workers,
}

impl Opts {
    pub fn wants(&self, m: Metric) -> bool {
        self.only.contains(&m)
    }
}

/// `Ok(None)` means `--help` was asked for.
pub fn parse(args: impl IntoIterator<Item = String>, default_out: PathBuf) -> Result<Option<Opts>> {
    let mut o = Opts {
        runs: 20,
        out: default_out,
        ttft_ms: 0,
        chunk_delay_ms: 0,
        append_sessions: 64,
        append_events: 200_000,
        fanout_deltas: 20_000,
        workflow_items: crate::workflows::ITEMS,
        debug_bins: false,
        only: vec![
            Metric::Warm,
            Metric::Cold,
            Metric::Rss,
            Metric::Append,
            Metric::Recovery,
            Metric::Attach,
            Metric::Fleet,
            Metric::Fanout,
            Metric::Providers,
            Metric::Http,
            Metric::Peers,
            Metric::Concurrent,
            Metric::Sandbox,
            Metric::Outcome,
            Metric::Threads,
            Metric::Deployments,
        ],
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--debug-bins" {
            o.debug_bins = true;
            continue;
        }
        let mut value = || -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .with_context(|| format!("{flag} needs a value\n\n{USAGE}")),
            }
        };
        match flag.as_str() {
            "--runs" => o.runs = number(&flag, &value()?)?,
            "--out" => o.out = PathBuf::from(value()?),
            "--ttft-ms" => o.ttft_ms = number(&flag, &value()?)?,
            "--chunk-delay-ms" => o.chunk_delay_ms = number(&flag, &value()?)?,
            "--append-sessions" => o.append_sessions = number(&flag, &value()?)?,
            "--append-events" => o.append_events = number(&flag, &value()?)?,
            "--fanout-deltas" => o.fanout_deltas = number(&flag, &value()?)?,
            "--workflow-items" => o.workflow_items = number(&flag, &value()?)?,
            "--only" => {
                o.only = value()?
                    .split(',')
                    .map(|m| match m.trim() {
                        "warm" => Ok(Metric::Warm),
                        "cold" => Ok(Metric::Cold),
                        "rss" => Ok(Metric::Rss),
                        "append" => Ok(Metric::Append),
                        "recovery" => Ok(Metric::Recovery),
                        "attach" => Ok(Metric::Attach),
                        "fleet" => Ok(Metric::Fleet),
                        "fanout" => Ok(Metric::Fanout),
                        "providers" => Ok(Metric::Providers),
                        "http" => Ok(Metric::Http),
                        "peers" => Ok(Metric::Peers),
                        "concurrent" => Ok(Metric::Concurrent),
                        "sandbox" => Ok(Metric::Sandbox),
                        "outcome" => Ok(Metric::Outcome),
                        "threads" => Ok(Metric::Threads),
                        "memory" => Ok(Metric::Memory),
                        "deployments" => Ok(Metric::Deployments),
                        "workflows" => Ok(Metric::Workflows),
                        "workers" => Ok(Metric::Workers),
                        other => {
                            bail!(
                                "--only: unknown metric `{other}` (warm, cold, rss, append, attach, fleet, recovery, fanout, providers, http, peers, concurrent, sandbox, outcome, threads, memory, deployments, workflows, workers)"
                            )
                        }
                    })
                    .collect::<Result<_>>()?;
            }
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    if o.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if o.workflow_items == 0 {
        bail!("--workflow-items must be at least 1");
    }
    if o.append_sessions == 0 || o.append_events == 0 {
        bail!("--append-sessions and --append-events must be at least 1");
    }
    Ok(Some(o))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T> {
    v.parse()
        .ok()
        .with_context(|| format!("{flag} expects a non-negative integer, got `{v}`"))
}
