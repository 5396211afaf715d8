//! The `bash` tool: one persistent `/bin/bash --noprofile --norc` per session.
//!
//! cwd, exported variables, functions and background jobs survive between
//! calls, like a shell in a container. The shell runs in its own process
//! group with the workspace as its initial cwd, stdin and stdout piped and
//! stderr merged into stdout by `exec 2>&1`, so ordering is kept.
//!
//! Each command is sent to the shell's stdin as
//!
//! ```text
//! { __tether_f=$-; set +x; } 2>/dev/null
//! IFS= read -r -d '' __tether_cmd <<'__TETHER_CMD_<nonce>' || :
//! <command>
//! __TETHER_CMD_<nonce>
//! case $__tether_f in *x*) __tether_cmd="set -x
//! $__tether_cmd";; esac
//! eval "$__tether_cmd" < /dev/null; { __tether_rc=$?; __tether_f=$-; set +x; } 2>/dev/null
//! printf '\n__TETHER_END_%s_%d\n' '<nonce>' "$__tether_rc"
//! unset __tether_cmd __tether_rc
//! case $__tether_f in *x*) set -x;; esac
//! ```
//!
//! and stdout is read until the end marker `\n__TETHER_END_<nonce>_<code>\n`.
//! Passing the command through a quoted heredoc and `eval` means multi-line
//! commands, heredocs and trailing comments work, and a syntax error (say an
//! unterminated quote) fails that one command with exit code 2 instead of
//! swallowing the marker. (After such an error bash fails to recognise a
//! reserved word such as `{` at the start of the next line, hence the
//! status capture on the `eval` line itself.) The literal marker never
//! appears in what is sent (the nonce is a separate `printf` argument), so
//! `set -v` can't fake it, and `set -x` traces are switched off around the
//! wrapper's own lines so they don't clutter the output. Commands run with
//! stdin at `/dev/null`.
//!
//! In the daemon the shell runs inside the namespace sandbox of
//! [`crate::sandbox`]: the recorded pid is the sandbox helper's, whose death
//! kills every process in the sandbox. The daemon's own unit tests run it
//! unsandboxed ([`Sandbox::None`]) because their binary can't be the helper.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ansi::{AnsiStripper, Utf8Chunker};
use super::args::Args;
use super::procs;
use super::{INTERRUPTED_NOTE, ToolOutcome, ToolStatus};
use crate::net::SessionNet;
use crate::sandbox::{self, Sandbox};

/// Timeout when `timeout_ms` is absent or 0.
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;
/// Longest accepted timeout (24 h); larger values are clamped.
pub const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;
/// Only the last this-many bytes of a command's output are returned.
pub const OUTPUT_LIMIT: usize = 100 * 1024;

const SHELL: &str = "/bin/bash";
/// Sent to a fresh shell before its first command.
const SHELL_SETUP: &str = "exec 2>&1\n";
/// How long to keep reading after the shell exited on its own, for output
/// still in the pipe.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// How long the sandbox may take to come up before the call fails.
pub(crate) const SANDBOX_START_LIMIT: Duration = Duration::from_secs(10);
/// How long to wait for a SIGKILLed tree to disappear.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Environment variables passed from the daemon to the shell (plus `LC_*`).
pub const ENV_ALLOWLIST: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "GOPATH",
    "GOROOT",
    "JAVA_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// A variable whose name contains one of these (case-insensitively) never
/// reaches the shell, even if allow-listed.
pub const ENV_DENY_SUBSTRINGS: &[&str] =
    &["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"];

/// Builds the shell's environment from the daemon's: the allow-listed
/// variables minus anything that looks like a secret, plus `TERM=dumb`,
/// `PAGER=cat`, `GIT_PAGER=cat`, `GIT_TERMINAL_PROMPT=0` and `NO_COLOR=1`.
pub fn shell_env(parent: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = parent
        .into_iter()
        .filter(|(name, _)| ENV_ALLOWLIST.contains(&name.as_str()) || name.starts_with("LC_"))
        .filter(|(name, _)| {
            let upper = name.to_ascii_uppercase();
            !ENV_DENY_SUBSTRINGS.iter().any(|s| upper.contains(s))
        })
        .collect();
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push((
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ));
    }
    for (name, value) in [
        ("TERM", "dumb"),
        ("PAGER", "cat"),
        ("GIT_PAGER", "cat"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("NO_COLOR", "1"),
    ] {
        env.retain(|(n, _)| n != name);
        env.push((name.into(), value.into()));
    }
    env
}

/// A validated `bash` tool input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BashInput {
    /// `None` only when `restart` is set.
    pub command: Option<String>,
    pub restart: bool,
    pub timeout: Duration,
}

impl BashInput {
    pub fn parse(input: &Value) -> Result<Self, String> {
        let args = Args::new("bash", input)?;
        let command = args
            .opt_str("command")?
            .filter(|c| !c.trim().is_empty())
            .map(str::to_owned);
        let restart = args.opt_bool("restart")?.unwrap_or(false);
        let timeout_ms = match args.opt_i64("timeout_ms")? {
            None | Some(0) => DEFAULT_TIMEOUT_MS,
            Some(ms) if ms < 0 => {
                return Err(format!(
                    "bash: field `timeout_ms` must be a non-negative integer, got {ms}"
                ));
            }
            Some(ms) => u64::try_from(ms)
                .unwrap_or(MAX_TIMEOUT_MS)
                .min(MAX_TIMEOUT_MS),
        };
        if command.is_none() && !restart {
            return Err(
                "bash: missing required field `command` (or set `restart: true` to restart the shell)"
                    .into(),
            );
        }
        if command.as_deref().is_some_and(|c| c.contains('\0')) {
            return Err("bash: `command` must not contain NUL characters".into());
        }
        Ok(Self {
            command,
            restart,
            timeout: Duration::from_millis(timeout_ms),
        })
    }
}

/// Formats a timeout for the model: "120 s", "1.5 s", "0.25 s".
fn format_secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        let s = format!("{}.{:03}", ms / 1000, ms % 1000);
        format!("{} s", s.trim_end_matches('0'))
    }
}

/// A 128-bit random hex string (std's `RandomState` is randomly keyed).
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut parts = [0u64; 2];
    for (i, part) in parts.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(count);
        h.write_u128(now);
        h.write_usize(i);
        h.write_u32(std::process::id());
        *part = h.finish();
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

/// The text written to the shell's stdin to run `command` (see module docs).
/// The wrapper's own lines are hidden from `set -x` traces (xtrace is
/// switched off around them and restored for the command).
fn wrap_command(command: &str, nonce: &str) -> String {
    let body = command.strip_suffix('\n').unwrap_or(command);
    format!(
        "{{ __tether_f=$-; set +x; }} 2>/dev/null\n\
         IFS= read -r -d '' __tether_cmd <<'__TETHER_CMD_{nonce}' || :\n\
         {body}\n\
         __TETHER_CMD_{nonce}\n\
         case $__tether_f in *x*) __tether_cmd=\"set -x\n$__tether_cmd\";; esac\n\
         eval \"$__tether_cmd\" < /dev/null; {{ __tether_rc=$?; __tether_f=$-; set +x; }} 2>/dev/null\n\
         printf '\\n__TETHER_END_%s_%d\\n' '{nonce}' \"$__tether_rc\"\n\
         unset __tether_cmd __tether_rc\n\
         case $__tether_f in *x*) set -x;; esac\n"
    )
}

/// Finds the end marker `\n__TETHER_END_<nonce>_<code>\n` in a byte stream,
/// passing through everything before it and holding back any tail that might
/// be the start of a marker split across reads.
#[derive(Debug)]
pub struct MarkerScanner {
    prefix: Vec<u8>,
    pending: Vec<u8>,
}

/// The marker was found.
#[derive(Debug, PartialEq, Eq)]
pub struct MarkerFound {
    pub exit_code: i32,
    /// Bytes after the marker (output of background jobs).
    pub leftover: Vec<u8>,
}

impl MarkerScanner {
    pub fn new(nonce: &str) -> Self {
        Self {
            prefix: format!("\n__TETHER_END_{nonce}_").into_bytes(),
            pending: Vec::new(),
        }
    }

    /// Feeds `data`; output bytes that are certainly not part of the marker
    /// are appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Option<MarkerFound> {
        self.pending.extend_from_slice(data);
        let plen = self.prefix.len();
        let found = self
            .pending
            .windows(plen)
            .position(|w| w == self.prefix.as_slice());
        if let Some(start) = found {
            let digits_start = start + plen;
            let newline = self.pending[digits_start..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| digits_start + i);
            out.extend_from_slice(&self.pending[..start]);
            match newline {
                Some(end) => {
                    let exit_code = std::str::from_utf8(&self.pending[digits_start..end])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(-1);
                    let leftover = self.pending[end + 1..].to_vec();
                    self.pending.clear();
                    return Some(MarkerFound {
                        exit_code,
                        leftover,
                    });
                }
                None => {
                    self.pending.drain(..start);
                    return None;
                }
            }
        }
        // Hold back the longest tail that is a proper prefix of the marker.
        let max = self.pending.len().min(plen - 1);
        let keep = (1..=max)
            .rev()
            .find(|&k| self.pending.ends_with(&self.prefix[..k]))
            .unwrap_or(0);
        let emit = self.pending.len() - keep;
        out.extend(self.pending.drain(..emit));
        None
    }

    /// The held-back bytes, when the stream ends without a marker.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }
}

/// Collects a command's output: strips escapes, streams chunks to the
/// caller's channel and keeps the last [`OUTPUT_LIMIT`] bytes.
struct Collector {
    stripper: AnsiStripper,
    chunker: Utf8Chunker,
    tail: String,
    total: u64,
    sink: Option<UnboundedSender<String>>,
}

impl Collector {
    fn new(sink: Option<UnboundedSender<String>>) -> Self {
        Self {
            stripper: AnsiStripper::new(),
            chunker: Utf8Chunker::new(),
            tail: String::new(),
            total: 0,
            sink,
        }
    }

    fn push(&mut self, raw: &[u8]) {
        if raw.is_empty() {
            return;
        }
        let mut stripped = Vec::with_capacity(raw.len());
        self.stripper.push(raw, &mut stripped);
        let text = self.chunker.push(&stripped);
        self.emit(text);
    }

    fn emit(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        self.total += text.len() as u64;
        self.tail.push_str(&text);
        if self.tail.len() > 2 * OUTPUT_LIMIT {
            let cut = char_boundary_at_or_after(&self.tail, self.tail.len() - OUTPUT_LIMIT);
            self.tail.drain(..cut);
        }
        if let Some(sink) = &self.sink {
            // A closed receiver only means nobody watches live output.
            let _ = sink.send(text);
        }
    }

    /// The final text: the last [`OUTPUT_LIMIT`] bytes, with a note when
    /// earlier output was dropped.
    fn finish(mut self) -> String {
        let mut rest = Vec::new();
        self.stripper.finish(&mut rest);
        let mut text = self.chunker.push(&rest);
        text.push_str(&self.chunker.finish());
        self.emit(text);
        if self.tail.len() > OUTPUT_LIMIT {
            let cut = char_boundary_at_or_after(&self.tail, self.tail.len() - OUTPUT_LIMIT);
            self.tail.drain(..cut);
        }
        let kept = self.tail.len() as u64;
        if self.total > kept {
            format!(
                "[... {} bytes of earlier output omitted ...]\n{}",
                self.total - kept,
                self.tail
            )
        } else {
            self.tail
        }
    }
}

fn char_boundary_at_or_after(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// How a command ended.
#[derive(Debug)]
enum End {
    /// The end marker arrived with this exit code.
    Marker(i32),
    Timeout,
    Cancelled,
    Shutdown,
    /// The shell exited (or closed its stdout) before the marker.
    Exited(Option<ExitStatus>),
}

/// The variables a session's vaults give its shell, changeable while the shell lives (a
/// session update's `vault_ids`). Each change gets a new generation; a shell started before it
/// is handed the new set before its next command (not mid-command), a new shell starts with it.
#[derive(Default)]
pub struct VaultEnv {
    vars: StdMutex<(u64, Vec<(String, String)>)>,
}

impl VaultEnv {
    pub fn new(vars: Vec<(String, String)>) -> Self {
        Self {
            vars: StdMutex::new((0, vars)),
        }
    }

    /// Replaces the set; shells pick it up before their next command.
    pub fn set(&self, vars: Vec<(String, String)>) {
        let mut g = self.vars.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 += 1;
        g.1 = vars;
    }

    fn snapshot(&self) -> (u64, Vec<(String, String)>) {
        self.vars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A shell-safe single-quoted word.
fn single_quoted(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// What a live shell runs (silently, before the next command) to go from the vault variables
/// `old` to `new`: a name no longer given is unset, or back to the shell's own value of it.
fn vault_switch(base: &[(String, String)], old: &[String], new: &[(String, String)]) -> String {
    let is_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let mut script = String::new();
    for name in old.iter().filter(|n| is_name(n)) {
        if new.iter().any(|(n, _)| n == name) {
            continue;
        }
        match base.iter().find(|(n, _)| n == name) {
            Some((_, v)) => script.push_str(&format!("export {name}={}\n", single_quoted(v))),
            None => script.push_str(&format!("unset -v {name}\n")),
        }
    }
    for (name, v) in new.iter().filter(|(n, _)| is_name(n)) {
        script.push_str(&format!("export {name}={}\n", single_quoted(v)));
    }
    script
}

/// A running shell.
struct Live {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Kept open so nothing in the shell gets SIGPIPE on stderr before `exec 2>&1`.
    _stderr: ChildStderr,
    pid: u32,
    /// Output that arrived after the previous command's marker (background
    /// jobs); it belongs to the next command's output.
    carry: Vec<u8>,
    /// Setup commands not yet sent.
    setup_pending: bool,
    /// The [`VaultEnv`] generation this shell has, and the names it gave.
    vault_generation: u64,
    vault_names: Vec<String>,
    /// A command was sent and its result not yet collected. Still set at the
    /// next call only if the previous call's future was dropped mid-command.
    busy: bool,
    /// The shell was reaped: its pid may be reused, never signal it again.
    reaped: bool,
    /// The sandbox's cgroup, where there are cgroups (removed after the tree: the field
    /// drops after [`Live::drop`] killed it).
    cgroup: Option<crate::sandbox::cgroup::SandboxCgroup>,
}

impl Drop for Live {
    fn drop(&mut self) {
        if !self.reaped {
            // Dropped without shutdown (e.g. the Toolbox was dropped): kill
            // the tree; tokio reaps the orphaned child in the background.
            procs::kill_tree(self.pid);
        }
    }
}

/// Kills the shell's tree if a command's future is dropped mid-command.
struct AbandonGuard {
    pid: u32,
    armed: bool,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if self.armed {
            procs::kill_tree(self.pid);
        }
    }
}

#[derive(Default)]
struct State {
    live: Option<Live>,
    /// Told to the model at the next call, when the shell was lost without
    /// that being said in the call that lost it.
    lost_note: Option<String>,
    /// Notes of a [`Shell::ensure_started`] not yet consumed by a [`Shell::run`].
    prepared: Option<String>,
}

/// The persistent shell of one session.
pub struct Shell {
    workspace: PathBuf,
    env: Vec<(String, String)>,
    /// The session's vault variables (set after `env`, so they win on a clash).
    vault_env: Arc<VaultEnv>,
    sandbox: Sandbox,
    /// The environment layer and other sandbox extras.
    options: sandbox::Options,
    /// The session's network: with a policy other than none, the sandbox is bridged to its
    /// proxy.
    net: Arc<SessionNet>,
    state: tokio::sync::Mutex<State>,
    /// Pid of the live shell, 0 if none (readable without the state lock).
    pid: AtomicU32,
    /// Fired by [`Shell::shutdown`] to stop a running command; replaced by a
    /// fresh token once the shutdown is done.
    kill_switch: StdMutex<CancellationToken>,
}

impl Shell {
    pub fn new(workspace: PathBuf, env: Vec<(String, String)>, sandbox: Sandbox) -> Self {
        Self {
            workspace,
            env,
            vault_env: Arc::default(),
            sandbox,
            options: sandbox::Options::default(),
            net: Arc::new(SessionNet::off()),
            state: tokio::sync::Mutex::new(State::default()),
            pid: AtomicU32::new(0),
            kill_switch: StdMutex::new(CancellationToken::new()),
        }
    }

    /// The same shell with sandbox `options` (e.g. an environment layer).
    pub fn with_options(mut self, options: sandbox::Options) -> Self {
        self.options = options;
        self
    }

    /// The same shell with host directories bound inside its sandbox (memory stores).
    pub fn with_mounts(mut self, mounts: Vec<sandbox::Mount>) -> Self {
        self.options.mounts = mounts;
        self
    }

    /// The shell with the session's vault variables (shared with its threads' shells).
    pub fn with_vault_env(mut self, vars: Arc<VaultEnv>) -> Self {
        self.vault_env = vars;
        self
    }

    /// The shell with another sandbox (`sandbox = "none"` environments).
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = sandbox;
        self
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The shell with the session's network.
    pub fn with_net(mut self, net: Arc<SessionNet>) -> Self {
        self.net = net;
        self
    }

    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    fn kill_switch(&self) -> CancellationToken {
        self.kill_switch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A command that runs `argv` where the shell runs: in a sandbox of its own with the same
    /// workspace, layer, network and environment (plus `extra_env`). With namespaces, its stdout
    /// starts with [`sandbox::READY`] (see [`await_ready`]); the bool says so.
    pub fn sandboxed_command(
        &self,
        argv: &[String],
        extra_env: &[(String, String)],
    ) -> Result<(tokio::process::Command, bool), String> {
        let Some((program, args)) = argv.split_first() else {
            return Err("no command to run".into());
        };
        let mut options = self.options.clone();
        options.proxy = self.net.proxy_socket()?;
        options.command = argv.iter().map(Into::into).collect();
        let (mut cmd, sandboxed) = match self.sandbox.helper_command(&self.workspace, &options)? {
            Some(cmd) => (cmd, true),
            None => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args);
                (cmd, false)
            }
        };
        cmd.current_dir(&self.workspace)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(
                self.vault_env
                    .snapshot()
                    .1
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .envs(extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        Ok((cmd, sandboxed))
    }

    async fn start(&self) -> Result<Live, String> {
        let mut options = self.options.clone();
        // Fail closed: no proxy, no shell (rather than a shell with no network that the model
        // would try to work around).
        options.proxy = self.net.proxy_socket().map_err(|e| format!("bash: {e}"))?;
        // Memory, pids and cpu limits for the whole tree where the daemon may create cgroups.
        let cgroup = match crate::sandbox::support::cgroups() {
            Some(subtree)
                if matches!(
                    self.sandbox,
                    Sandbox::Namespaces { .. } | Sandbox::Landlock { .. }
                ) =>
            {
                let group = subtree
                    .create()
                    .map_err(|e| format!("bash: {e}; the command was not run"))?;
                options.cgroup = group.dirs();
                Some(group)
            }
            _ => None,
        };
        let helper = self
            .sandbox
            .helper_command(&self.workspace, &options)
            .map_err(|e| format!("bash: {e}"))?;
        let sandboxed = helper.is_some();
        let mut cmd = helper.unwrap_or_else(|| {
            let mut cmd = tokio::process::Command::new(SHELL);
            cmd.args(["--noprofile", "--norc"]);
            cmd
        });
        let (vault_generation, vault_vars) = self.vault_env.snapshot();
        cmd.current_dir(&self.workspace)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(vault_vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = sandbox::spawn(cmd).await.map_err(|e| {
            if sandboxed {
                format!("bash: failed to start the sandbox helper: {e}; the command was not run")
            } else {
                format!(
                    "bash: failed to start {SHELL} in {}: {e}",
                    self.workspace.display()
                )
            }
        })?;
        let pid = child.id();
        let (Some(pid), Some(stdin), Some(mut stdout), Some(stderr)) = (
            pid,
            child.stdin.take(),
            child.stdout.take(),
            child.stderr.take(),
        ) else {
            return Err("bash: failed to set up the shell's pipes".into());
        };
        let mut carry = Vec::new();
        if sandboxed {
            let ready =
                tokio::time::timeout(SANDBOX_START_LIMIT, await_ready(&mut stdout, &mut carry))
                    .await;
            if !matches!(ready, Ok(true)) {
                let mut why = String::new();
                if ready.is_ok() {
                    let mut stderr = stderr;
                    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, stderr.read_to_string(&mut why))
                        .await;
                }
                let found = procs::kill_tree(pid);
                let _ = tokio::time::timeout(KILL_WAIT, child.wait()).await;
                procs::wait_gone(pid, &found, KILL_WAIT).await;
                let why = why.trim();
                return Err(if ready.is_err() {
                    format!(
                        "bash: the sandbox did not start within {}; the command was not run",
                        format_secs(SANDBOX_START_LIMIT)
                    )
                } else if why.is_empty() {
                    "bash: the sandbox helper exited before the shell started; the command was not run".into()
                } else {
                    format!("bash: {why}")
                });
            }
        }
        let live = Live {
            child,
            stdin,
            stdout,
            _stderr: stderr,
            pid,
            carry,
            setup_pending: true,
            vault_generation,
            vault_names: vault_vars.into_iter().map(|(k, _)| k).collect(),
            busy: false,
            reaped: false,
            cgroup,
        };
        self.pid.store(pid, Ordering::SeqCst);
        tracing::debug!(pid, workspace = %self.workspace.display(), sandbox = ?self.sandbox, "started session shell");
        Ok(live)
    }

    /// SIGKILLs the shell's tree, reaps the shell and waits until the tree is
    /// gone.
    async fn kill_and_reap(&self, mut live: Live) {
        let pid = live.pid;
        let found = procs::kill_tree(pid);
        match tokio::time::timeout(KILL_WAIT, live.child.wait()).await {
            Ok(_) => live.reaped = true,
            Err(_) => tracing::warn!(pid, "shell did not exit after SIGKILL"),
        }
        procs::wait_gone(pid, &found, KILL_WAIT).await;
        let _ = self
            .pid
            .compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
        drop(live);
    }

    /// Kills the shell's process group and reaps it; a running command ends
    /// as Interrupted. The next bash call starts a fresh shell and tells the
    /// model that the old shell's state is gone.
    pub async fn shutdown(&self) {
        self.kill_switch().cancel();
        let mut state = self.state.lock().await;
        state.prepared = None;
        if let Some(live) = state.live.take() {
            self.kill_and_reap(live).await;
            state.lost_note = Some(lost_note("the shell was shut down"));
        }
        *self
            .kill_switch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = CancellationToken::new();
        self.pid.store(0, Ordering::SeqCst);
    }

    /// Makes sure a live shell is ready for the next command (restarting it when asked, or when
    /// the last one died or was abandoned) and returns the notes the model must be told.
    async fn prepare(&self, state: &mut State, restart: bool) -> Result<String, String> {
        let mut notes = String::new();
        if restart {
            if let Some(live) = state.live.take() {
                self.kill_and_reap(live).await;
            }
            state.lost_note = None;
            notes.push_str("shell restarted\n");
        } else {
            let lost = match state.live.as_mut() {
                Some(live) if live.busy => {
                    Some("the previous command was abandoned before it finished".to_owned())
                }
                Some(live) => match live.child.try_wait() {
                    Ok(Some(status)) => {
                        live.reaped = true;
                        Some(format!("the previous shell exited ({})", describe(status)))
                    }
                    Ok(None) => None,
                    Err(e) => Some(format!("the previous shell could not be checked ({e})")),
                },
                None => None,
            };
            if let Some(reason) = lost {
                if let Some(live) = state.live.take() {
                    self.kill_and_reap(live).await;
                }
                state.lost_note = Some(lost_note(&reason));
            }
        }
        if state.live.is_none() {
            if let Some(note) = state.lost_note.take() {
                notes.push_str(&note);
            }
            state.live = Some(self.start().await?);
        }
        Ok(notes)
    }

    /// Starts (or restarts, with `restart`) the shell the next command will run in and returns
    /// its pid, so the caller can record the process before the command starts. The next
    /// [`Shell::run`] uses this shell and reports what preparing it found.
    pub async fn ensure_started(&self, restart: bool) -> Result<u32, String> {
        let mut state = self.state.lock().await;
        if state.prepared.is_none() {
            let notes = self.prepare(&mut state, restart).await?;
            state.prepared = Some(notes);
        }
        state
            .live
            .as_ref()
            .map(|live| live.pid)
            .ok_or_else(|| "bash: the shell is not running".to_string())
    }

    pub async fn run(
        &self,
        input: BashInput,
        output: Option<UnboundedSender<String>>,
        cancel: CancellationToken,
    ) -> ToolOutcome {
        let kill_switch = self.kill_switch();
        let mut state = tokio::select! {
            biased;
            _ = cancel.cancelled() => return ToolOutcome::interrupted(INTERRUPTED_NOTE),
            _ = kill_switch.cancelled() => return ToolOutcome::interrupted(SHUTDOWN_NOTE),
            guard = self.state.lock() => guard,
        };

        let notes = match state.prepared.take() {
            Some(notes) if state.live.is_some() => notes,
            _ => match self.prepare(&mut state, input.restart).await {
                Ok(notes) => notes,
                Err(message) => return ToolOutcome::error(message),
            },
        };
        let Some(command) = input.command else {
            return ToolOutcome::ok(notes.trim_end().to_owned());
        };
        let Some(live) = state.live.as_mut() else {
            return ToolOutcome::error("bash: the shell is not running");
        };

        let nonce = nonce();
        let mut script = String::new();
        if live.setup_pending {
            script.push_str(SHELL_SETUP);
            live.setup_pending = false;
        }
        let (generation, vars) = self.vault_env.snapshot();
        if generation != live.vault_generation {
            // Written to the shell's stdin, never to the log: the command is what is logged.
            script.push_str(&vault_switch(&self.env, &live.vault_names, &vars));
            live.vault_generation = generation;
            live.vault_names = vars.into_iter().map(|(k, _)| k).collect();
        }
        script.push_str(&wrap_command(&command, &nonce));
        let deadline = Instant::now() + input.timeout;
        let mut collector = Collector::new(output);
        live.busy = true;
        let mut guard = AbandonGuard {
            pid: live.pid,
            armed: true,
        };
        let ooms_before = live.cgroup.as_ref().map(|g| g.oom_kills());
        let end = exec(
            live,
            script.as_bytes(),
            &nonce,
            deadline,
            &mut collector,
            &cancel,
            &kill_switch,
        )
        .await;
        guard.armed = false;
        live.busy = false;
        let oom_killed = live
            .cgroup
            .as_ref()
            .zip(ooms_before)
            .is_some_and(|(g, before)| g.oom_kills() > before);

        let mut outcome = match &end {
            End::Marker(code) => {
                let code = *code;
                let mut text = collector.finish();
                if code != 0 {
                    append_note(&mut text, &format!("[exit code {code}]"));
                }
                with_code(text, code)
            }
            End::Timeout | End::Cancelled | End::Shutdown | End::Exited(_) => {
                if let Some(live) = state.live.take() {
                    self.kill_and_reap(live).await;
                }
                let mut text = collector.finish();
                match &end {
                    End::Timeout => {
                        append_note(
                            &mut text,
                            &format!(
                                "[command timed out after {}; the shell was restarted — cwd, env and background jobs are gone]",
                                format_secs(input.timeout)
                            ),
                        );
                        ToolOutcome {
                            content: text,
                            is_error: true,
                            status: ToolStatus::Timeout,
                            exit_code: None,
                        }
                    }
                    End::Exited(status) => {
                        let what = status.map_or_else(
                            || "closed its output".to_owned(),
                            |s| format!("exited ({})", describe(s)),
                        );
                        append_note(
                            &mut text,
                            &format!(
                                "[the shell {what}; cwd, env, functions and background jobs are gone — the next command starts in a fresh shell]"
                            ),
                        );
                        state.lost_note = Some(lost_note(&format!("the previous shell {what}")));
                        let code = status.map_or(-1, exit_code_of);
                        with_code(text, code)
                    }
                    _ => {
                        let note = if matches!(end, End::Shutdown) {
                            SHUTDOWN_NOTE
                        } else {
                            INTERRUPTED_NOTE
                        };
                        append_note(&mut text, note);
                        state.lost_note = Some(lost_note(
                            "the previous command was interrupted and its shell killed",
                        ));
                        ToolOutcome::interrupted(text)
                    }
                }
            }
        };
        if oom_killed {
            append_note(&mut outcome.content, &crate::sandbox::cgroup::oom_note());
            outcome.is_error = true;
        }
        if !notes.is_empty() {
            outcome.content.insert_str(0, &notes);
        }
        outcome
    }
}

/// Reads the sandbox helper's stdout up to [`sandbox::READY`]; what follows it goes to
/// `carry`. False when the helper closed its stdout first (it failed; stderr says why).
pub(crate) async fn await_ready(stdout: &mut ChildStdout, carry: &mut Vec<u8>) -> bool {
    let marker = sandbox::READY.as_bytes();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if let Some(at) = seen.windows(marker.len()).position(|w| w == marker) {
            carry.extend_from_slice(&seen[at + marker.len()..]);
            return true;
        }
    }
}

const SHUTDOWN_NOTE: &str = "[interrupted: the session's shell was shut down]";

fn lost_note(reason: &str) -> String {
    format!(
        "[shell restarted: {reason}, so cwd, exported variables, functions and background jobs from before are gone]\n"
    )
}

fn append_note(text: &mut String, note: &str) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(note);
}

fn with_code(content: String, code: i32) -> ToolOutcome {
    ToolOutcome {
        content,
        is_error: code != 0,
        status: if code == 0 {
            ToolStatus::Ok
        } else {
            ToolStatus::Error
        },
        exit_code: Some(code),
    }
}

fn exit_code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Sends `script` and reads output until the marker, a timeout, a cancel or
/// the shell's death.
async fn exec(
    live: &mut Live,
    script: &[u8],
    nonce: &str,
    deadline: Instant,
    collector: &mut Collector,
    cancel: &CancellationToken,
    kill_switch: &CancellationToken,
) -> End {
    let mut scanner = MarkerScanner::new(nonce);
    let mut out = Vec::new();
    // Background-job output that arrived after the previous marker.
    let carry = std::mem::take(&mut live.carry);
    if let Some(found) = scanner.push(&carry, &mut out) {
        collector.push(&out);
        live.carry = found.leftover;
        return End::Marker(found.exit_code);
    }
    collector.push(&out);

    let mut buf = vec![0u8; 64 * 1024];
    let write = live.stdin.write_all(script);
    tokio::pin!(write);
    let mut written = false;
    let mut exited: Option<ExitStatus> = None;
    let mut exit_seen = false;
    let mut drain_until: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return End::Cancelled,
            _ = kill_switch.cancelled() => return End::Shutdown,
            _ = tokio::time::sleep_until(deadline) => return End::Timeout,
            result = &mut write, if !written => {
                written = true;
                if let Err(e) = result {
                    // The shell is gone; reading will show EOF.
                    tracing::debug!(error = %e, "writing to the shell failed");
                }
            }
            read = live.stdout.read(&mut buf) => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    let mut rest = Vec::new();
                    scanner.finish(&mut rest);
                    collector.push(&rest);
                    if !exit_seen {
                        exited = tokio::time::timeout(DRAIN_AFTER_EXIT, live.child.wait())
                            .await
                            .ok()
                            .and_then(Result::ok);
                    }
                    return End::Exited(exited);
                }
                out.clear();
                if let Some(found) = scanner.push(&buf[..n], &mut out) {
                    collector.push(&out);
                    live.carry = found.leftover;
                    return End::Marker(found.exit_code);
                }
                collector.push(&out);
            }
            status = live.child.wait(), if !exit_seen => {
                exit_seen = true;
                live.reaped = true;
                exited = status.ok();
                // Background jobs may hold the pipe open: kill what is left of
                // the group so the pipe closes, then drain it briefly.
                procs::kill_tree(live.pid);
                drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = sleep_until_opt(drain_until) => {
                let mut rest = Vec::new();
                scanner.finish(&mut rest);
                collector.push(&rest);
                return End::Exited(exited);
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Toolbox;
    use super::*;
    use serde_json::json;
    use tempfile::TempDir;

    fn test_env() -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        vec![
            ("PATH".into(), path),
            ("HOME".into(), "/tmp".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ]
    }

    fn toolbox() -> (TempDir, Toolbox) {
        let dir = TempDir::new().unwrap();
        let tb = Toolbox::with_parent_env(dir.path().to_path_buf(), test_env());
        (dir, tb)
    }

    async fn bash(tb: &Toolbox, command: &str) -> ToolOutcome {
        tb.run(
            "bash",
            &json!({ "command": command }),
            None,
            CancellationToken::new(),
        )
        .await
    }

    #[test]
    fn parse_input() {
        let p = BashInput::parse(&json!({"command": "ls"})).unwrap();
        assert_eq!(p.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert!(!p.restart);
        let p = BashInput::parse(&json!({"command": "ls", "timeout_ms": 0})).unwrap();
        assert_eq!(p.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        let p = BashInput::parse(&json!({"command": "ls", "timeout_ms": 1500})).unwrap();
        assert_eq!(p.timeout, Duration::from_millis(1500));
        let p = BashInput::parse(&json!({"restart": true})).unwrap();
        assert_eq!(p.command, None);
        assert!(BashInput::parse(&json!({})).is_err());
        assert!(BashInput::parse(&json!({"command": "  "})).is_err());
        assert!(BashInput::parse(&json!({"command": "ls", "timeout_ms": -1})).is_err());
        assert!(BashInput::parse(&json!({"command": "a\u{0}b"})).is_err());
        assert!(BashInput::parse(&json!({"command": 5})).is_err());
        let p = BashInput::parse(&json!({"command": "ls", "timeout_ms": i64::MAX})).unwrap();
        assert_eq!(p.timeout, Duration::from_millis(MAX_TIMEOUT_MS));
    }

    #[test]
    fn env_drops_secrets_and_sets_defaults() {
        let env = shell_env(vec![
            ("PATH".into(), "/bin".into()),
            ("HOME".into(), "/home/u".into()),
            ("LC_ALL".into(), "C".into()),
            ("ANTHROPIC_API_KEY".into(), "sk-ant".into()),
            ("GITHUB_TOKEN".into(), "ghp".into()),
            ("RANDOM_THING".into(), "x".into()),
            ("TERM".into(), "xterm-256color".into()),
        ]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("HOME"), Some("/home/u"));
        assert_eq!(get("LC_ALL"), Some("C"));
        assert_eq!(get("TERM"), Some("dumb"));
        assert_eq!(get("PAGER"), Some("cat"));
        assert_eq!(get("GIT_PAGER"), Some("cat"));
        assert_eq!(get("ANTHROPIC_API_KEY"), None);
        assert_eq!(get("GITHUB_TOKEN"), None);
        assert_eq!(get("RANDOM_THING"), None);
        assert_eq!(env.iter().filter(|(n, _)| n == "TERM").count(), 1);
        let env = shell_env(vec![]);
        assert!(
            env.iter()
                .any(|(n, v)| n == "PATH" && v.contains("/usr/bin"))
        );
    }

    #[test]
    fn format_secs_variants() {
        assert_eq!(format_secs(Duration::from_millis(120_000)), "120 s");
        assert_eq!(format_secs(Duration::from_millis(1_500)), "1.5 s");
        assert_eq!(format_secs(Duration::from_millis(250)), "0.25 s");
    }

    #[test]
    fn nonces_differ() {
        let a = nonce();
        let b = nonce();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn marker_scanner_handles_every_split() {
        let nonce = "abc123";
        let stream = b"hello\nworld\n__TETHER_END_abc12 fake\n\n__TETHER_END_abc123_42\nlate";
        for split in 0..=stream.len() {
            for split2 in split..=stream.len() {
                let mut scanner = MarkerScanner::new(nonce);
                let mut out = Vec::new();
                let mut found: Option<MarkerFound> = None;
                for part in [&stream[..split], &stream[split..split2], &stream[split2..]] {
                    match &mut found {
                        None => found = scanner.push(part, &mut out),
                        Some(f) => f.leftover.extend_from_slice(part),
                    }
                }
                let found = found.unwrap_or_else(|| panic!("no marker at {split}/{split2}"));
                assert_eq!(found.exit_code, 42);
                assert_eq!(out, b"hello\nworld\n__TETHER_END_abc12 fake\n");
                assert_eq!(found.leftover, b"late");
            }
        }
    }

    #[test]
    fn marker_scanner_streams_unrelated_output_promptly() {
        let mut scanner = MarkerScanner::new("n");
        let mut out = Vec::new();
        assert!(scanner.push(b"abc\n", &mut out).is_none());
        // Only the trailing "\n" (a possible marker start) is held back.
        assert_eq!(out, b"abc");
        assert!(scanner.push(b"def", &mut out).is_none());
        assert_eq!(out, b"abc\ndef");
        let mut rest = Vec::new();
        scanner.finish(&mut rest);
        assert!(rest.is_empty());
    }

    #[test]
    fn collector_keeps_the_tail() {
        let mut c = Collector::new(None);
        let big = "x".repeat(OUTPUT_LIMIT * 3);
        c.push(big.as_bytes());
        c.push(b"\nEND\n");
        let text = c.finish();
        let omitted = OUTPUT_LIMIT * 3 + 5 - OUTPUT_LIMIT;
        assert!(
            text.starts_with(&format!(
                "[... {omitted} bytes of earlier output omitted ...]\n"
            )),
            "{}",
            &text[..80]
        );
        assert!(text.ends_with("x\nEND\n"));
        let body = text.split_once('\n').unwrap().1;
        assert_eq!(body.len(), OUTPUT_LIMIT);
    }

    #[tokio::test]
    async fn state_persists_between_calls() {
        let (dir, tb) = toolbox();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let out = bash(
            &tb,
            "cd sub && export TETHER_T=persisted && greet() { echo \"hi $1\"; }",
        )
        .await;
        assert_eq!(out.status, ToolStatus::Ok, "{}", out.content);
        assert_eq!(out.exit_code, Some(0));
        let pid = tb.shell_pid().unwrap();
        let out = bash(&tb, "pwd; echo $TETHER_T; greet there").await;
        assert_eq!(out.status, ToolStatus::Ok, "{}", out.content);
        let canon = dir.path().canonicalize().unwrap().join("sub");
        assert_eq!(
            out.content,
            format!("{}\npersisted\nhi there\n", canon.display())
        );
        assert_eq!(tb.shell_pid(), Some(pid), "same shell");
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn starts_in_workspace_with_stdin_closed_and_stderr_merged() {
        let (dir, tb) = toolbox();
        let out = bash(&tb, "pwd; cat; echo out; echo err >&2; echo out2").await;
        let canon = dir.path().canonicalize().unwrap();
        assert_eq!(
            out.content,
            format!("{}\nout\nerr\nout2\n", canon.display())
        );
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn nonzero_exit_code() {
        let (_dir, tb) = toolbox();
        let out = bash(&tb, "echo before; (exit 7)").await;
        assert_eq!(out.status, ToolStatus::Error);
        assert!(out.is_error);
        assert_eq!(out.exit_code, Some(7));
        assert_eq!(out.content, "before\n[exit code 7]");
        let out = bash(&tb, "false").await;
        assert_eq!(out.exit_code, Some(1));
        assert_eq!(out.content, "[exit code 1]");
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn multiline_heredoc_and_trailing_comment() {
        let (_dir, tb) = toolbox();
        let cmd = "x=1\nif [ \"$x\" = 1 ]; then\n  echo one\nfi\ncat <<'EOF'\nliteral $x \"quotes\" 'single'\n}\nEOF\ncat <<EOF\nexpanded $x\nEOF\necho done # a trailing comment";
        let out = bash(&tb, cmd).await;
        assert_eq!(out.status, ToolStatus::Ok, "{}", out.content);
        assert_eq!(
            out.content,
            "one\nliteral $x \"quotes\" 'single'\n}\nexpanded 1\ndone\n"
        );
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn syntax_error_fails_only_that_command() {
        let (_dir, tb) = toolbox();
        assert_eq!(bash(&tb, "export KEEP=yes").await.status, ToolStatus::Ok);
        let out = bash(&tb, "echo \"unterminated").await;
        assert_eq!(out.status, ToolStatus::Error);
        assert_eq!(out.exit_code, Some(2));
        assert!(out.content.contains("unexpected EOF"), "{}", out.content);
        assert!(out.content.ends_with("\n[exit code 2]"), "{}", out.content);
        let pid = tb.shell_pid();
        let out = bash(&tb, "if then").await;
        assert_eq!(out.exit_code, Some(2));
        assert!(out.content.contains("syntax error"), "{}", out.content);
        let out = bash(&tb, "echo $KEEP").await;
        assert_eq!(out.content, "yes\n");
        assert_eq!(tb.shell_pid(), pid, "the shell survived");
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn set_e_and_xtrace_do_not_break_the_protocol() {
        let (_dir, tb) = toolbox();
        let out = bash(&tb, "set -e; echo ok").await;
        assert_eq!(out.status, ToolStatus::Ok, "{}", out.content);
        let out = bash(&tb, "set -x; echo traced").await;
        assert_eq!(out.status, ToolStatus::Ok, "{}", out.content);
        // (`++`: the command runs inside an eval.)
        assert_eq!(out.content, "++ echo traced\ntraced\n");
        // xtrace stays on for later commands, and the wrapper stays hidden.
        let out = bash(&tb, "echo still").await;
        assert_eq!(out.status, ToolStatus::Ok, "{}", out.content);
        assert_eq!(out.content, "++ echo still\nstill\n");
        let out = bash(&tb, "set +x; echo quiet").await;
        assert_eq!(out.content, "++ set +x\nquiet\n");
        assert_eq!(bash(&tb, "echo q2").await.content, "q2\n");
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn output_streams_live_and_marker_never_leaks() {
        let (dir, tb) = toolbox();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let go = dir.path().join("go");
        let cmd =
            "echo first; while [ ! -e go ]; do sleep 0.01; done; echo second; printf 'no newline'";
        let tb = std::sync::Arc::new(tb);
        let task = {
            let tb = tb.clone();
            tokio::spawn(async move {
                tb.run(
                    "bash",
                    &json!({ "command": cmd }),
                    Some(tx),
                    CancellationToken::new(),
                )
                .await
            })
        };
        // "first" arrives while the command is still blocked waiting for `go`.
        let mut streamed = String::new();
        while !streamed.contains("first") {
            streamed.push_str(&rx.recv().await.unwrap());
        }
        assert!(!task.is_finished());
        assert!(!streamed.contains("second"));
        std::fs::write(&go, "").unwrap();
        let out = task.await.unwrap();
        let mut chunks = 1;
        while let Some(chunk) = rx.recv().await {
            chunks += 1;
            streamed.push_str(&chunk);
        }
        assert!(chunks >= 2, "expected several chunks");
        assert_eq!(out.status, ToolStatus::Ok);
        assert_eq!(out.content, "first\nsecond\nno newline");
        assert_eq!(streamed, out.content);
        assert!(!streamed.contains("TETHER"));
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn large_output_keeps_last_100k() {
        let (_dir, tb) = toolbox();
        let out = bash(
            &tb,
            "head -c 300000 /dev/zero | tr '\\0' a; echo; seq 1 5; echo END",
        )
        .await;
        assert_eq!(out.status, ToolStatus::Ok);
        let total = 300_000 + 1 + 10 + 4;
        let omitted = total - OUTPUT_LIMIT;
        let note = format!("[... {omitted} bytes of earlier output omitted ...]\n");
        assert!(out.content.starts_with(&note), "{}", &out.content[..100]);
        assert_eq!(out.content.len(), note.len() + OUTPUT_LIMIT);
        assert!(out.content.ends_with("aaaa\n1\n2\n3\n4\n5\nEND\n"));
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn ansi_sequences_are_stripped() {
        let (_dir, tb) = toolbox();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let out = tb
            .run(
                "bash",
                &json!({"command": "printf '\\033[1;31mred\\033[0m plain\\ttab\\n'"}),
                Some(tx),
                CancellationToken::new(),
            )
            .await;
        assert_eq!(out.content, "red plain\ttab\n");
        let mut streamed = String::new();
        while let Some(c) = rx.recv().await {
            streamed.push_str(&c);
        }
        assert_eq!(streamed, "red plain\ttab\n");
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_tree() {
        let (_dir, tb) = toolbox();
        let out = bash(&tb, "echo setting up").await;
        assert_eq!(out.status, ToolStatus::Ok);
        let old_pid = tb.shell_pid().unwrap();
        let out = tb
            .run(
                "bash",
                &json!({
                    "command": "echo started; sleep 987651 & setsid sleep 987652 & sleep 987653",
                    "timeout_ms": 1500
                }),
                None,
                CancellationToken::new(),
            )
            .await;
        assert_eq!(out.status, ToolStatus::Timeout);
        assert!(out.is_error);
        assert_eq!(out.exit_code, None);
        assert!(out.content.starts_with("started\n"), "{}", out.content);
        assert!(
            out.content.ends_with(
                "[command timed out after 1.5 s; the shell was restarted — cwd, env and background jobs are gone]"
            ),
            "{}",
            out.content
        );
        for needle in ["sleep 987651", "sleep 987652", "sleep 987653"] {
            assert!(
                procs::pids_with_cmdline(needle).is_empty(),
                "{needle} survived"
            );
        }
        assert!(!std::path::Path::new(&format!("/proc/{old_pid}")).exists());
        assert_eq!(tb.shell_pid(), None);
        // The next call gets a fresh shell.
        let out = bash(&tb, "echo fresh").await;
        assert_eq!(out.content, "fresh\n");
        assert_ne!(tb.shell_pid(), Some(old_pid));
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn cancel_interrupts_promptly_and_kills_the_tree() {
        let (_dir, tb) = toolbox();
        let tb = std::sync::Arc::new(tb);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let task = {
            let tb = tb.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tb.run(
                    "bash",
                    &json!({"command": "sleep 987656 & echo started; sleep 987657"}),
                    Some(tx),
                    cancel,
                )
                .await
            })
        };
        let mut streamed = String::new();
        while !streamed.contains("started") {
            streamed.push_str(&rx.recv().await.unwrap());
        }
        let pid = tb.shell_pid().unwrap();
        let t0 = std::time::Instant::now();
        cancel.cancel();
        let out = task.await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert_eq!(out.status, ToolStatus::Interrupted);
        assert!(out.is_error);
        assert_eq!(out.content, "started\n[interrupted by the user]");
        assert!(procs::pids_with_cmdline("sleep 987656").is_empty());
        assert!(procs::pids_with_cmdline("sleep 987657").is_empty());
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        // The next call says the shell was restarted.
        let out = bash(&tb, "echo again").await;
        assert!(
            out.content.starts_with("[shell restarted: "),
            "{}",
            out.content
        );
        assert!(out.content.ends_with("\nagain\n"));
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn exit_then_next_call_reports_restart() {
        let (_dir, tb) = toolbox();
        bash(&tb, "export GONE=1").await;
        let first_pid = tb.shell_pid().unwrap();
        let out = bash(&tb, "echo bye; exit 3").await;
        assert_eq!(out.status, ToolStatus::Error);
        assert_eq!(out.exit_code, Some(3));
        assert!(
            out.content
                .starts_with("bye\n[the shell exited (exit code 3)"),
            "{}",
            out.content
        );
        let out = bash(&tb, "echo ${GONE:-unset}").await;
        assert_eq!(out.status, ToolStatus::Ok);
        let (first, rest) = out.content.split_once('\n').unwrap();
        assert!(
            first.starts_with("[shell restarted: the previous shell exited (exit code 3)"),
            "{first}"
        );
        assert_eq!(rest, "unset\n");
        assert_ne!(tb.shell_pid(), Some(first_pid));
        // Only once.
        assert_eq!(bash(&tb, "echo x").await.content, "x\n");
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn exit_with_background_job_holding_the_pipe() {
        let (_dir, tb) = toolbox();
        let out = tb
            .run(
                "bash",
                &json!({"command": "sleep 987661 & exit 4", "timeout_ms": 20000}),
                None,
                CancellationToken::new(),
            )
            .await;
        assert_eq!(out.exit_code, Some(4), "{}", out.content);
        assert!(procs::pids_with_cmdline("sleep 987661").is_empty());
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn shell_killed_between_calls_is_restarted_with_note() {
        let (_dir, tb) = toolbox();
        bash(&tb, "true").await;
        let pid = tb.shell_pid().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Wait until the kernel has made it a zombie (it can't be reaped by
        // anyone but us).
        while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| procs::parse_stat(&s).map(|p| p.state) == Some('Z'))
            .unwrap_or(true)
        {
            tokio::task::yield_now().await;
        }
        let out = bash(&tb, "echo ok").await;
        assert!(
            out.content
                .starts_with("[shell restarted: the previous shell exited (killed by signal 9)"),
            "{}",
            out.content
        );
        assert!(out.content.ends_with("\nok\n"));
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn secrets_do_not_reach_the_shell() {
        let dir = TempDir::new().unwrap();
        let mut env = test_env();
        env.push(("ANTHROPIC_API_KEY".into(), "sk-ant-super-secret".into()));
        env.push(("MY_SECRET".into(), "hush".into()));
        env.push(("GH_TOKEN".into(), "ghp_x".into()));
        env.push(("DB_PASSWORD".into(), "pw".into()));
        let tb = Toolbox::with_parent_env(dir.path().to_path_buf(), env);
        let out = bash(&tb, "env; echo \"key=${ANTHROPIC_API_KEY-unset}\"").await;
        assert_eq!(out.status, ToolStatus::Ok);
        assert!(out.content.contains("key=unset\n"), "{}", out.content);
        for leaked in ["sk-ant-super-secret", "hush", "ghp_x", "DB_PASSWORD"] {
            assert!(!out.content.contains(leaked), "{leaked} leaked");
        }
        assert!(out.content.contains("TERM=dumb\n"));
        assert!(out.content.contains("PAGER=cat\n"));
        assert!(out.content.contains("GIT_PAGER=cat\n"));
        assert!(out.content.contains("PATH="));
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn restart_gives_a_fresh_shell() {
        let (_dir, tb) = toolbox();
        bash(&tb, "export R=1").await;
        let old = tb.shell_pid().unwrap();
        let out = tb
            .run(
                "bash",
                &json!({"restart": true}),
                None,
                CancellationToken::new(),
            )
            .await;
        assert_eq!(out.status, ToolStatus::Ok);
        assert_eq!(out.content, "shell restarted");
        let new = tb.shell_pid().unwrap();
        assert_ne!(new, old);
        assert!(!std::path::Path::new(&format!("/proc/{old}")).exists());
        assert_eq!(bash(&tb, "echo ${R:-unset}").await.content, "unset\n");
        let out = tb
            .run(
                "bash",
                &json!({"restart": true, "command": "echo hi"}),
                None,
                CancellationToken::new(),
            )
            .await;
        assert_eq!(out.content, "shell restarted\nhi\n");
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn background_job_output_shows_up_in_a_later_call() {
        let (dir, tb) = toolbox();
        let out = bash(
            &tb,
            "(while [ ! -e go ]; do sleep 0.01; done; echo from-background; touch done) &",
        )
        .await;
        assert_eq!(out.status, ToolStatus::Ok, "{}", out.content);
        std::fs::write(dir.path().join("go"), "").unwrap();
        let out = bash(&tb, "while [ ! -e done ]; do sleep 0.01; done; echo fg").await;
        assert_eq!(out.status, ToolStatus::Ok);
        assert!(out.content.contains("fg\n"), "{}", out.content);
        let both = format!("{}{}", out.content, bash(&tb, "true").await.content);
        assert!(both.contains("from-background\n"), "{both}");
        assert!(!both.contains("TETHER"));
        tb.shutdown().await;
    }

    /// Whether `pid` is a live (non-zombie) process.
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| procs::parse_stat(&s))
            .is_some_and(|p| p.state != 'Z')
    }

    #[tokio::test]
    async fn shutdown_kills_and_reaps() {
        let (_dir, tb) = toolbox();
        assert_eq!(tb.shell_pid(), None, "lazy start");
        let out = bash(&tb, "sleep 987671 & echo $!").await;
        let job: i32 = out.content.trim().parse().unwrap();
        assert!(alive(job));
        let pid = tb.shell_pid().unwrap();
        tb.shutdown().await;
        assert_eq!(tb.shell_pid(), None);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(!alive(job), "background job survived shutdown");
        assert!(procs::pids_with_cmdline("sleep 987671").is_empty());
        // Still usable afterwards, and the model is told the state is gone.
        assert_eq!(
            bash(&tb, "echo back").await.content,
            format!("{}back\n", lost_note("the shell was shut down"))
        );
        // Shutting down a toolbox whose shell never started changes nothing.
        let (_dir2, idle) = toolbox();
        idle.shutdown().await;
        assert_eq!(bash(&idle, "echo idle").await.content, "idle\n");
        idle.shutdown().await;
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_interrupts_a_running_command() {
        let (_dir, tb) = toolbox();
        let tb = std::sync::Arc::new(tb);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = {
            let tb = tb.clone();
            tokio::spawn(async move {
                tb.run(
                    "bash",
                    &json!({"command": "echo go; sleep 987681"}),
                    Some(tx),
                    CancellationToken::new(),
                )
                .await
            })
        };
        assert!(rx.recv().await.unwrap().contains("go"));
        tb.shutdown().await;
        let out = task.await.unwrap();
        assert_eq!(out.status, ToolStatus::Interrupted);
        assert!(procs::pids_with_cmdline("sleep 987681").is_empty());
    }

    #[tokio::test]
    async fn dropped_call_kills_the_command_and_next_call_restarts() {
        let (_dir, tb) = toolbox();
        let tb = std::sync::Arc::new(tb);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = {
            let tb = tb.clone();
            tokio::spawn(async move {
                tb.run(
                    "bash",
                    &json!({"command": "echo go; sleep 987691"}),
                    Some(tx),
                    CancellationToken::new(),
                )
                .await
            })
        };
        assert!(rx.recv().await.unwrap().contains("go"));
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        let out = bash(&tb, "echo next").await;
        assert!(
            out.content
                .starts_with("[shell restarted: the previous command was abandoned"),
            "{}",
            out.content
        );
        assert!(out.content.ends_with("\nnext\n"));
        assert!(procs::pids_with_cmdline("sleep 987691").is_empty());
        tb.shutdown().await;
    }

    #[tokio::test]
    async fn drop_without_shutdown_kills_the_tree() {
        let (_dir, tb) = toolbox();
        let out = bash(&tb, "sleep 987695 & echo $!").await;
        let job: i32 = out.content.trim().parse().unwrap();
        assert!(alive(job));
        drop(tb);
        // SIGKILL was sent synchronously in drop; wait for the kernel to
        // deliver it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(job) {
            assert!(std::time::Instant::now() < deadline, "sleep survived drop");
            tokio::task::yield_now().await;
        }
    }
}
