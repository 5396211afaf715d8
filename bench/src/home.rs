//! One isolated tether installation (a temp `TETHER_HOME`) pointed at the in-process mock, and
//! the guarantee that its daemon dies with it: [`Home`]'s `Drop` runs `tether daemon stop`, then
//! SIGKILLs whatever the pid file still names. A Ctrl-C handler ([`kill_all_live`]) covers the
//! paths where `Drop` never runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tether_proto::Paths;

/// No single tether command in the bench should take anywhere near this long.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Homes whose daemon may be alive, for the signal handler.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The release binaries under test.
#[derive(Debug, Clone)]
pub struct Bins {
    pub tether: PathBuf,
    pub tetherd: PathBuf,
}

pub struct Home {
    dir: tempfile::TempDir,
    paths: Paths,
    bins: Bins,
    base_url: String,
}

impl Home {
    pub fn new(bins: &Bins, base_url: &str) -> Result<Home> {
        // Short path: Unix socket paths are limited to ~108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("tb")
            .tempdir_in("/tmp")
            .context("creating a TETHER_HOME under /tmp")?;
        let home = dir.path().display().to_string();
        let paths = Paths::resolve(
            |k| (k == "TETHER_HOME").then(|| home.clone()),
            nix::unistd::geteuid().as_raw(),
        );
        if let Ok(mut live) = LIVE.lock() {
            live.push(dir.path().to_path_buf());
        }
        Ok(Home {
            dir,
            paths,
            bins: bins.clone(),
            base_url: base_url.to_string(),
        })
    }

    /// `tether` with this home's environment (and nothing inherited that changes behaviour).
    pub fn tether(&self) -> Command {
        let mut c = Command::new(&self.bins.tether);
        c.env("TETHER_HOME", self.dir.path())
            .env("TETHER_DAEMON_BIN", &self.bins.tetherd)
            .env("ANTHROPIC_BASE_URL", &self.base_url)
            .env("ANTHROPIC_API_KEY", "sk-bench-not-a-real-key")
            .env_remove("ANTHROPIC_AUTH_TOKEN")
            .env_remove("TETHER_LOG")
            .stdin(Stdio::null());
        c
    }

    /// `tetherd` in the foreground with this home's environment.
    pub fn tetherd(&self) -> Command {
        let c = self.tether();
        let mut d = Command::new(&self.bins.tetherd);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => d.env(k, v),
                None => d.env_remove(k),
            };
        }
        d.stdin(Stdio::null());
        d
    }

    /// Runs `tether ARGS`; returns its output and wall time (spawn to exit). Fails if it
    /// exits non-zero.
    pub fn timed(&self, args: &[&str]) -> Result<(Output, Duration)> {
        let (out, took) = run_timed(self.tether().args(args))
            .with_context(|| format!("running tether {args:?}"))?;
        if !out.status.success() {
            bail!(
                "`tether {}` failed ({}) after {took:?}\n--- stdout\n{}\n--- stderr\n{}\n--- daemon log (tail)\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.daemon_log_tail(40)
            );
        }
        Ok((out, took))
    }

    /// Runs `tether ARGS`, requiring success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let (out, _) = self.timed(args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        read_pid(&self.paths.pid_file())
    }

    /// The pid of the running daemon, or an error if there is none.
    pub fn running_daemon_pid(&self) -> Result<i32> {
        let pid = self
            .daemon_pid()
            .with_context(|| format!("no pid file at {}", self.paths.pid_file().display()))?;
        if !is_tetherd(pid) {
            bail!("the pid file names {pid}, which is not a running tetherd");
        }
        Ok(pid)
    }

    /// `tether daemon stop`, then checks nothing is left.
    pub fn stop_daemon(&self) -> Result<()> {
        let before = self.daemon_pid();
        self.ok(&["daemon", "stop"])?;
        if let Some(pid) = before
            && is_tetherd(pid)
        {
            bail!("tetherd (pid {pid}) is still alive after `tether daemon stop`");
        }
        Ok(())
    }

    /// The last `n` lines of the daemon's log files, for error messages.
    pub fn daemon_log_tail(&self, n: usize) -> String {
        let mut text = String::new();
        if let Ok(dir) = std::fs::read_dir(&self.paths.log_dir) {
            let mut files: Vec<_> = dir.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                text.push_str(&std::fs::read_to_string(f).unwrap_or_default());
            }
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        if self.daemon_pid().is_some_and(is_tetherd) {
            let _ = run_timed(self.tether().args(["daemon", "stop"]));
        }
        kill_by_pid_file(&self.paths.pid_file());
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|p| p != self.dir.path());
        }
    }
}

/// SIGKILLs the daemon of every home still alive and removes those homes. For the signal
/// handler: `Drop` does not run when the process exits.
pub fn kill_all_live() {
    let homes = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    for home in homes {
        kill_by_pid_file(&home.join("run").join("tetherd.pid"));
        let _ = std::fs::remove_dir_all(&home);
    }
}

fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Alive (not a zombie) and its command line names tetherd: guards against pid reuse.
pub fn is_tetherd(pid: i32) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmd).contains("tetherd") {
        return false;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    !status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'))
}

fn kill_by_pid_file(pid_file: &Path) {
    let Some(pid) = read_pid(pid_file) else {
        return;
    };
    if !is_tetherd(pid) {
        return;
    }
    eprintln!("bench: tetherd (pid {pid}) still alive; sending SIGKILL");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_tetherd(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Spawns `cmd` with piped output and waits for it; returns the output and the wall time from
/// just before spawn to exit. A watchdog kills it after [`COMMAND_TIMEOUT`].
pub fn run_timed(cmd: &mut Command) -> Result<(Output, Duration)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd.spawn().context("spawning")?;
    let pid = child.id();
    let (done, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(COMMAND_TIMEOUT) {
            // Still unreaped (the waiter has not returned), so the pid is still ours.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            return true;
        }
        false
    });
    let out = child.wait_with_output();
    let took = start.elapsed();
    let _ = done.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let out = out.context("waiting for the child")?;
    if timed_out {
        bail!(
            "timed out after {COMMAND_TIMEOUT:?}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((out, took))
}

/// A `/proc/<pid>/status` field in kB (`VmRSS`, `VmHWM`), as MiB.
pub fn proc_status_mib(pid: i32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kb: f64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("cannot parse `{line}`"))?;
    Ok(kb / 1024.0)
}
