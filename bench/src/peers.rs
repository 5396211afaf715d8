//! tether next to the agent CLIs people would pick instead: Codex CLI (`codex exec`, OpenAI
//! Responses), Claude Code (`claude -p`, Anthropic Messages) and opencode (`opencode run`, Chat
//! Completions). Each gets its own in-process mock on loopback playing the bash-then-read
//! scenario with the tool names that CLI offers, a temp HOME holding its config (the machine's
//! real config is never read), and runs non-interactively with tool approval off. Runs are
//! interleaved (tether warm, tether cold, each peer, repeat) because the machine is noisy; the
//! ratios are medians of the per-round ratios.
//!
//! The bench installs nothing: the peers come from `bench/peers/package-lock.json`
//! (`npm install --no-save --prefix bench/peers`; not `npm ci`, which npm 11 refuses because the
//! lockfile lacks other platforms' optional binaries); a missing one is skipped with a note.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tether_mock_llm::{MockServer, RecordedRequest, Reply, Script, Timing, offers_tools};

use crate::e2e::{EXPECTED, PROMPT};
use crate::home::{Home, is_tetherd};
use crate::proctree::{self, Measured};
use crate::report::{Row, Unit, stats};

/// Runs per system before the measured ones (first-run caches, page cache).
const WARMUP_ROUNDS: usize = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Codex,
    Claude,
    Opencode,
}

impl Peer {
    pub const ALL: [Peer; 3] = [Peer::Codex, Peer::Claude, Peer::Opencode];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Codex => "Codex CLI",
            Peer::Claude => "Claude Code",
            Peer::Opencode => "opencode",
        }
    }

    /// The npm package; its pinned version is in bench/peers/package.json.
    fn package(self) -> &'static str {
        match self {
            Peer::Codex => "@openai/codex",
            Peer::Claude => "@anthropic-ai/claude-code",
            Peer::Opencode => "opencode-ai",
        }
    }

    fn bin(self) -> &'static str {
        match self {
            Peer::Codex => "codex",
            Peer::Claude => "claude",
            Peer::Opencode => "opencode",
        }
    }

    /// The scenario in this CLI's own tool names: the same shell command tether's runs, then
    /// reading the file back (Codex has no read tool; it `cat`s through its shell tool).
    fn script(self, work: &Path, timing: Timing) -> Script {
        let write = "printf hello > f.txt && echo done";
        let file = work.join("f.txt").display().to_string();
        let (bash, read) = match self {
            Peer::Codex => (
                Reply::tool_use("exec_command", json!({"cmd": write})),
                Reply::tool_use("exec_command", json!({"cmd": "cat f.txt"})),
            ),
            Peer::Claude => (
                Reply::tool_use(
                    "Bash",
                    json!({"command": write, "description": "Create f.txt"}),
                ),
                Reply::tool_use("Read", json!({"file_path": file})),
            ),
            Peer::Opencode => (
                Reply::tool_use(
                    "bash",
                    json!({"command": write, "description": "Create f.txt"}),
                ),
                Reply::tool_use("read", json!({"filePath": file})),
            ),
        };
        Script::by_turn(vec![bash, read, Reply::text(EXPECTED)])
            .with_timing(timing)
            // Title generation and similar side calls offer no tools.
            .with_side_reply(Reply::text("Bench"))
    }

    /// Writes this CLI's config under `home` and returns the command for one run in `work`.
    fn command(self, exe: &Path, home: &Path, work: &Path, base_url: &str) -> Result<Command> {
        let mut c = Command::new(exe);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("TMPDIR", "/tmp")
            .current_dir(work);
        match self {
            Peer::Codex => {
                let dir = home.join(".codex");
                write(
                    &dir.join("config.toml"),
                    &format!(
                        "model = \"mock-model\"\nmodel_provider = \"mock\"\n\
                         [model_providers.mock]\nname = \"mock\"\nbase_url = \"{base_url}/v1\"\n\
                         env_key = \"MOCK_API_KEY\"\nwire_api = \"responses\"\n"
                    ),
                )?;
                c.env("CODEX_HOME", &dir)
                    .env("MOCK_API_KEY", "sk-bench-not-a-real-key")
                    // Its own sandbox for the shell tool, like tether's; no approvals in exec.
                    .args(["exec", "--skip-git-repo-check", "-s", "workspace-write"])
                    .arg(PROMPT);
            }
            Peer::Claude => {
                c.env("ANTHROPIC_BASE_URL", base_url)
                    .env("ANTHROPIC_API_KEY", "sk-bench-not-a-real-key")
                    .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
                    .env("DISABLE_AUTOUPDATER", "1")
                    // It refuses to skip permissions as root unless told it is sandboxed.
                    .env("IS_SANDBOX", "1")
                    .args(["-p", PROMPT, "--dangerously-skip-permissions"])
                    .args(["--model", "claude-sonnet-4-5"]);
            }
            Peer::Opencode => {
                let config = json!({
                    "$schema": "https://opencode.ai/config.json",
                    "autoupdate": false,
                    "share": "disabled",
                    "model": "mock/mock-model",
                    "small_model": "mock/mock-model",
                    "permission": "allow",
                    "provider": {"mock": {
                        "npm": "@ai-sdk/openai-compatible",
                        "name": "mock",
                        "options": {"baseURL": format!("{base_url}/v1"), "apiKey": "sk-bench-not-a-real-key"},
                        "models": {"mock-model": {"name": "mock-model", "tool_call": true}}
                    }}
                });
                write(
                    &home.join(".config/opencode/opencode.json"),
                    &serde_json::to_string_pretty(&config)?,
                )?;
                c.env("OPENCODE_DISABLE_AUTOUPDATE", "1")
                    .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
                    .args(["run", "--auto", PROMPT]);
            }
        }
        Ok(c)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Where `npm install --no-save --prefix bench/peers` puts the binaries.
fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

fn pinned_version(peer: Peer) -> Result<String> {
    let manifest = peers_dir().join("package.json");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let v: Value = serde_json::from_str(&text)?;
    v["dependencies"][peer.package()]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not pinned in {}", peer.package(), manifest.display()))
}

/// The installed binary if it is the pinned version, else why not (with the install command).
fn detect(peer: Peer) -> Result<(PathBuf, String), String> {
    let install = format!("npm install --no-save --prefix {}", peers_dir().display());
    let pinned = pinned_version(peer).map_err(|e| format!("{e:#}"))?;
    let exe = peers_dir().join("node_modules/.bin").join(peer.bin());
    if !exe.exists() {
        return Err(format!(
            "not installed; install the pinned {}@{pinned} with `{install}`",
            peer.package()
        ));
    }
    let out = Command::new(&exe).arg("--version").output();
    let version = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            return Err(format!(
                "`{} --version` failed ({}): {}; reinstall with `{install}`",
                exe.display(),
                o.status,
                tail(&String::from_utf8_lossy(&o.stderr), 3)
            ));
        }
        Err(e) => return Err(format!("cannot run {}: {e}", exe.display())),
    };
    if !version.contains(&pinned) {
        return Err(format!(
            "installed version `{version}` is not the pinned {pinned}; run `{install}`"
        ));
    }
    Ok((exe, version))
}

/// One system in the rotation and its samples.
struct Contender {
    label: String,
    wall_ms: Vec<f64>,
    rss_mib: Vec<f64>,
    failed: Option<String>,
}

impl Contender {
    fn new(label: impl Into<String>) -> Contender {
        Contender {
            label: label.into(),
            wall_ms: Vec::new(),
            rss_mib: Vec::new(),
            failed: None,
        }
    }

    fn record(&mut self, round: usize, result: Result<Measured>) {
        match result {
            Ok(m) if round >= WARMUP_ROUNDS => {
                self.wall_ms.push(m.wall.as_secs_f64() * 1e3);
                self.rss_mib.push(m.peak_rss_mib);
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("bench: {} failed: {e:#}", self.label);
                self.failed = Some(format!("{e:#}"));
            }
        }
    }
}

struct PeerSetup {
    peer: Peer,
    exe: PathBuf,
    mock: MockServer,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
}

/// The peers section of the report: rows for the main table, then markdown (ratios, notes).
pub fn run(
    rt: &tokio::runtime::Runtime,
    bins: &crate::home::Bins,
    runs: usize,
    timing: Timing,
) -> Result<(Vec<Row>, String)> {
    let mut notes = Vec::new();
    let mut setups = Vec::new();
    for peer in Peer::ALL {
        match detect(peer) {
            Ok((exe, version)) => {
                let work = tempdir("tbpw")?;
                let mock = rt
                    .block_on(MockServer::start(peer.script(work.path(), timing.clone())))
                    .context("starting a mock model")?;
                notes.push(format!(
                    "- {}: `{version}` ({})",
                    peer.name(),
                    exe.display()
                ));
                setups.push(PeerSetup {
                    peer,
                    exe,
                    mock,
                    home: tempdir("tbph")?,
                    work,
                });
            }
            Err(why) => {
                eprintln!("bench: skipping {}: {why}", peer.name());
                notes.push(format!("- {}: skipped, {why}", peer.name()));
            }
        }
    }

    let script = tether_mock_llm::scenarios::bash_then_read().with_timing(timing);
    let tether_mock = rt
        .block_on(MockServer::start(script))
        .context("starting the mock model")?;
    let warm_home = Home::new(bins, &tether_mock.base_url())?;
    warm_home.ok(&["daemon", "start"])?;
    let cold_home = Home::new(bins, &tether_mock.base_url())?;

    let mut warm = Contender::new("tether (warm daemon)");
    let mut cold = Contender::new("tether (cold: starts the daemon)");
    let mut peers: Vec<Contender> = setups
        .iter()
        .map(|s| Contender::new(s.peer.name()))
        .collect();
    eprintln!(
        "bench: peers, {} rounds of tether warm, tether cold{} (+{WARMUP_ROUNDS} warm-up)",
        runs,
        setups
            .iter()
            .map(|s| format!(", {}", s.peer.name()))
            .collect::<String>()
    );
    for round in 0..WARMUP_ROUNDS + runs {
        if warm.failed.is_none() {
            warm.record(round, tether_once(&warm_home, &tether_mock, false));
        }
        if cold.failed.is_none() {
            cold.record(round, tether_once(&cold_home, &tether_mock, true));
        }
        for (setup, c) in setups.iter().zip(peers.iter_mut()) {
            if c.failed.is_none() {
                c.record(round, peer_once(setup));
            }
        }
    }
    drop(warm_home);
    drop(cold_home);
    rt.block_on(tether_mock.shutdown());
    for s in setups {
        rt.block_on(s.mock.shutdown());
    }

    let mut rows = Vec::new();
    for c in [&warm, &cold].into_iter().chain(peers.iter()) {
        if c.failed.is_some() {
            continue;
        }
        rows.push(Row {
            metric: format!("{}: bash-then-read, wall", c.label),
            samples: c.wall_ms.clone(),
            unit: Unit::Ms,
            target: None,
        });
        rows.push(Row {
            metric: format!("{}: peak RSS of the process tree", c.label),
            samples: c.rss_mib.clone(),
            unit: Unit::Mib,
            target: None,
        });
    }
    let md = section(&warm, &cold, &peers, &notes);
    Ok((rows, md))
}

fn section(warm: &Contender, cold: &Contender, peers: &[Contender], notes: &[String]) -> String {
    let mut md = String::from(
        "\n## tether vs other agent CLIs\n\nSame scenario (3 model calls: a shell command writes \
         f.txt, the file is read back, a text answer), each CLI against its own in-process mock \
         on loopback, runs interleaved. Wall: spawn to exit of the CLI. RSS: peak of the summed \
         RSS of the CLI's process tree sampled every 5 ms (for tether, the client plus the \
         daemon and its sandboxed tools). Ratio: median over rounds of tether/peer within the \
         round; below 1 means tether is faster or smaller.\n\n",
    );
    md.push_str(
        "| peer | peer wall (ms) | peer RSS (MiB) | wall ratio, tether warm/peer | wall ratio, tether cold/peer | RSS ratio, tether warm/peer | RSS ratio, tether cold/peer |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for p in peers {
        if let Some(why) = &p.failed {
            md.push_str(&format!("| {} | failed | — | — | — | — | — |\n", p.label));
            md.push_str(&format!(
                "\n<details><summary>{} failed</summary>\n\n```\n{}\n```\n</details>\n\n",
                p.label,
                tail(why, 15)
            ));
            continue;
        }
        let ratio = |a: &[f64], b: &[f64]| -> String {
            let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
            if r.is_empty() {
                "—".into()
            } else {
                format!("{:.3}", stats(&r).median)
            }
        };
        md.push_str(&format!(
            "| {} | {:.0} | {:.1} | {} | {} | {} | {} |\n",
            p.label,
            stats(&p.wall_ms).median,
            stats(&p.rss_mib).median,
            ratio(&warm.wall_ms, &p.wall_ms),
            ratio(&cold.wall_ms, &p.wall_ms),
            ratio(&warm.rss_mib, &p.rss_mib),
            ratio(&cold.rss_mib, &p.rss_mib),
        ));
    }
    for t in [warm, cold] {
        if let Some(why) = &t.failed {
            md.push_str(&format!(
                "\n{} failed:\n```\n{}\n```\n",
                t.label,
                tail(why, 15)
            ));
        }
    }
    md.push_str("\nPeers:\n");
    for n in notes {
        md.push_str(n);
        md.push('\n');
    }
    md
}

/// One `tether run`; the tree measured is the client plus the daemon (which a cold run starts).
fn tether_once(home: &Home, mock: &MockServer, cold: bool) -> Result<Measured> {
    if cold {
        home.stop_daemon()?;
    }
    let work = tempdir("tbw")?;
    let before = mock.request_count();
    let mut cmd = home.tether();
    cmd.args(["run", PROMPT, "--dir"]).arg(work.path());
    let pid_file = home.paths().pid_file();
    let m = proctree::measure(&mut cmd, move || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|&p| is_tetherd(p))
            .into_iter()
            .collect()
    })?;
    let requests = mock.requests();
    check(
        &m,
        &requests[before.min(requests.len())..],
        work.path(),
        "tether",
    )?;
    Ok(m)
}

fn peer_once(s: &PeerSetup) -> Result<Measured> {
    let f = s.work.path().join("f.txt");
    if f.exists() {
        std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
    }
    let before = s.mock.request_count();
    let mut cmd = s
        .peer
        .command(&s.exe, s.home.path(), s.work.path(), &s.mock.base_url())?;
    let m = proctree::measure(&mut cmd, Vec::new)?;
    let requests = s.mock.requests();
    check(
        &m,
        &requests[before.min(requests.len())..],
        s.work.path(),
        s.peer.name(),
    )?;
    Ok(m)
}

/// The run completed the scenario: exit 0, exactly 3 model calls that offered tools, f.txt
/// written by the shell tool, the file's content in the last call (the read tool ran), and the
/// scripted answer printed.
fn check(m: &Measured, requests: &[RecordedRequest], work: &Path, who: &str) -> Result<()> {
    let stdout = String::from_utf8_lossy(&m.output.stdout);
    let stderr = String::from_utf8_lossy(&m.output.stderr);
    let context = || {
        format!(
            "--- stdout (tail)\n{}\n--- stderr (tail)\n{}",
            tail(&stdout, 10),
            tail(&stderr, 20)
        )
    };
    ensure!(!m.timed_out, "{who} timed out\n{}", context());
    if !m.output.status.success() {
        bail!("{who} exited with {}\n{}", m.output.status, context());
    }
    let turns: Vec<&RecordedRequest> = requests.iter().filter(|r| offers_tools(&r.body)).collect();
    ensure!(
        turns.len() == 3,
        "{who}: the mock saw {} model calls offering tools ({} in all), expected 3\n{}",
        turns.len(),
        requests.len(),
        context()
    );
    let f = std::fs::read_to_string(work.join("f.txt"))
        .with_context(|| format!("{who}: f.txt was not created (the shell tool did not run)"))?;
    ensure!(f == "hello", "{who}: f.txt holds {f:?}, not \"hello\"");
    let hellos = |r: &RecordedRequest| r.body.to_string().matches("hello").count();
    ensure!(
        hellos(turns[2]) > hellos(turns[1]),
        "{who}: the last model call carries no new \"hello\": the read tool's result is missing"
    );
    ensure!(
        stdout.contains(EXPECTED) || stderr.contains(EXPECTED),
        "{who}: the final answer {EXPECTED:?} was not printed\n{}",
        context()
    );
    Ok(())
}

fn tempdir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .context("creating a temp dir under /tmp")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peer_is_pinned_to_an_exact_version() {
        for peer in Peer::ALL {
            let v = pinned_version(peer).unwrap();
            assert!(
                v.split('.').count() == 3 && v.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "{} is pinned to `{v}`, not an exact version",
                peer.package()
            );
        }
    }

    #[test]
    fn peer_scripts_offer_three_turns_and_answer_side_calls() {
        for peer in Peer::ALL {
            let s = peer.script(Path::new("/w"), Timing::default());
            assert_eq!(s.replies.len(), 3);
            assert_eq!(
                s.pick(None, 0, &json!({"messages": []})),
                Ok(&Reply::text("Bench"))
            );
        }
    }
}
