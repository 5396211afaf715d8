//! What the sandbox costs. The daemon has no unsandboxed mode, so this drives the same helper
//! it uses (`tetherd sandbox-exec WORKSPACE`, see crates/daemon/src/sandbox.rs) directly, next
//! to a plain `/bin/bash` started the same way:
//! - start: spawn until the shell answers its first command (for the sandbox this includes
//!   the namespaces, the mount tree and the pivot);
//! - per call: round trip of one trivial command (`echo`) through the already running shell's
//!   stdin/stdout, as the persistent bash tool does.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

/// Commands per run for the per-call figure.
pub const CALLS: usize = 200;

pub struct Sample {
    pub start_ms: f64,
    /// Median of [`CALLS`] round trips, ms.
    pub call_ms: f64,
}

struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Shell {
    fn spawn(mut cmd: Command) -> Result<Shell> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning the shell")?;
        let stdin = child.stdin.take().context("no stdin pipe")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?);
        Ok(Shell {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends `echo MARK` and reads lines until MARK comes back (skipping the sandbox's READY).
    fn round_trip(&mut self, mark: &str) -> Result<()> {
        writeln!(self.stdin, "echo {mark}").context("writing to the shell")?;
        self.stdin.flush()?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                bail!("the shell exited before answering: {err}");
            }
            if line.trim_end() == mark {
                return Ok(());
            }
        }
    }

    fn close(mut self) -> Result<()> {
        drop(self.stdin);
        let status = self.child.wait()?;
        ensure!(status.success(), "the shell exited with {status}");
        Ok(())
    }
}

fn once(cmd: Command) -> Result<Sample> {
    let start = Instant::now();
    let mut shell = Shell::spawn(cmd)?;
    shell.round_trip("ready")?;
    let start_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut calls = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let t = Instant::now();
        shell.round_trip(&format!("call{i}"))?;
        calls.push(t.elapsed().as_secs_f64() * 1e3);
    }
    shell.close()?;
    Ok(Sample {
        start_ms,
        call_ms: crate::report::stats(&calls).median,
    })
}

/// One run in the sandbox the daemon would build for `workspace`.
pub fn sandboxed(tetherd: &Path, workspace: &Path) -> Result<Sample> {
    let mut cmd = Command::new(tetherd);
    cmd.arg("sandbox-exec")
        .arg(workspace)
        .current_dir(workspace)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin");
    once(cmd).context("tetherd sandbox-exec")
}

/// The same with a plain bash in `workspace`.
pub fn plain(workspace: &Path) -> Result<Sample> {
    let mut cmd = Command::new("/bin/bash");
    cmd.args(["--noprofile", "--norc"])
        .current_dir(workspace)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin");
    once(cmd).context("/bin/bash")
}
