//! The sandbox room: how a session's commands (its shell, a stdio MCP server, an environment
//! build) are isolated on this host. [`support`] probes what the host offers and picks the
//! level; [`landlock_rules`], [`seccomp`] and [`cgroup`] are the layers every level stacks;
//! this file is the sandbox itself. Depends on nothing in the crate but `net::bridge` (the
//! proxy end inside the sandbox): nothing here knows sessions, resources or the doors.
//!
//! The local sandbox the session shell runs in, built into `tetherd` (no bwrap).
//!
//! The daemon starts `tetherd sandbox-exec WORKSPACE` ([`exec_main`], "stage 1"), a fresh
//! single-threaded process that unshares user, mount, pid, ipc, uts and net namespaces,
//! maps itself to root of the new user namespace and re-executes itself as
//! `tetherd sandbox-init WORKSPACE PID` ([`init_main`], "stage 2"). Stage 2 is pid 1 of the
//! new pid namespace: it builds the mount tree, pivots into it, enters a nested user
//! namespace as the unprivileged uid [`SANDBOX_UID`] (so `exec` drops every capability),
//! sets no_new_privs, writes [`READY`] on stdout and execs bash.
//!
//! Stage 1 stays behind as the daemon's child and waits. Its death kills the sandbox:
//! stage 2 has `PR_SET_PDEATHSIG = SIGKILL`, and when pid 1 of a pid namespace dies the
//! kernel kills every process in it, including setsid'd and double-forked ones. So the pid
//! the daemon records and kills is stage 1's.
//!
//! Networking: with `--proxy SOCKET`, stage 2 bind-mounts the host proxy's
//! Unix socket at [`bridge::SOCKET_IN_SANDBOX`], brings the namespace's loopback up, listens on
//! 127.0.0.1:[`bridge::PORT`] and hands that listener to the [`bridge`] process (started
//! after the shell's privileges are dropped), and points the shell's proxy variables at it.
//! Without it the network namespace stays empty: no network at all.
//!
//! Fail closed: any setup error ends the helper with a message on stderr and exit code
//! [`SETUP_FAILED`] before bash is executed; the daemon turns that into a tool error.

pub mod cgroup;
pub mod landlock_rules;
pub mod seccomp;
pub mod support;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::statvfs::{FsFlags, statvfs};
use tether_proto::environment::LAYER_MOUNT;

use crate::net::bridge;

/// The hidden subcommand that starts a sandbox (stage 1).
pub const EXEC_SUBCOMMAND: &str = "sandbox-exec";
/// The hidden subcommand stage 1 re-executes as (stage 2, pid 1 of the sandbox).
pub const INIT_SUBCOMMAND: &str = "sandbox-init";
/// Written on stdout by stage 2 right before it execs the shell.
pub const READY: &str = "__TETHER_SANDBOX_READY__\n";
/// Exit code of the helper when the sandbox could not be set up.
pub const SETUP_FAILED: u8 = 125;
/// The uid (and gid) the shell runs as inside the sandbox; files it creates in the
/// workspace belong to the daemon's uid on the host. Not 0, so that rlimits apply.
pub const SANDBOX_UID: u32 = 1000;
/// Size cap of the sandbox's `/tmp` (tmpfs pages count as memory).
pub const TMP_SIZE: &str = "512m";
const SHELL: &str = "/bin/bash";

/// How the session shell is isolated: the level [`crate::sandbox::support::choose`] picked for
/// this host, or none at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sandbox {
    /// Namespaces set up by `helper` (the tetherd binary) run as [`EXEC_SUBCOMMAND`], with
    /// Landlock on top where the kernel has it.
    Namespaces { helper: PathBuf },
    /// The fallback where user namespaces are unavailable: `helper` confines the shell with
    /// Landlock, seccomp and rlimits on the host's own tree (`--no-namespaces`).
    Landlock { helper: PathBuf },
    /// The host can't sandbox: every tool call fails with `reason` (the setting to change).
    Unavailable { reason: String },
    /// No isolation at all: environments that say `sandbox = "none"`, and the daemon's own
    /// unit tests, whose test binary is not tetherd and cannot act as the helper.
    None,
}

impl Sandbox {
    // `for_this_process` is in `support`, which probes the host: it builds on this file.

    /// Short name of the level for the session object and `tether ls`: `namespaces`,
    /// `landlock`, `unavailable` or `none`.
    pub fn level_name(&self) -> &'static str {
        match self {
            Sandbox::Namespaces { .. } => "namespaces",
            Sandbox::Landlock { .. } => "landlock",
            Sandbox::Unavailable { .. } => "unavailable",
            Sandbox::None => "none",
        }
    }

    /// The command that starts a sandbox on `workspace` with `options` (its stdout begins with
    /// [`READY`]); None when unsandboxed, so the caller runs the program itself; an error
    /// naming the host setting to change when the host can't sandbox.
    pub fn helper_command(
        &self,
        workspace: &Path,
        options: &Options,
    ) -> Result<Option<tokio::process::Command>, String> {
        let (helper, no_namespaces) = match self {
            Sandbox::Namespaces { helper } => (helper, false),
            Sandbox::Landlock { helper } => (helper, true),
            Sandbox::Unavailable { reason } => {
                return Err(format!(
                    "{reason}; the command was not run (tether never runs it unsandboxed)"
                ));
            }
            Sandbox::None => return Ok(None),
        };
        let options = Options {
            no_namespaces,
            die_with: Some(std::process::id()),
            ..options.clone()
        };
        let mut cmd = tokio::process::Command::new(helper);
        cmd.arg(EXEC_SUBCOMMAND)
            .arg(workspace)
            .args(options.to_args());
        Ok(Some(cmd))
    }
}

type SpawnJob = Box<dyn FnOnce() + Send>;

/// The daemon's one spawner thread. A sandbox's stage 1 sets `PR_SET_PDEATHSIG`, which fires
/// when the *thread* that forked it exits (not the process); tokio's blocking-pool threads come
/// and go, so every sandbox is forked from this thread, which lives as long as the daemon.
fn spawner() -> std::io::Result<&'static std::sync::mpsc::Sender<SpawnJob>> {
    static SPAWNER: std::sync::OnceLock<Option<std::sync::mpsc::Sender<SpawnJob>>> =
        std::sync::OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
            std::thread::Builder::new()
                .name("sandbox-spawner".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
        .ok_or_else(|| std::io::Error::other("cannot start the sandbox spawner thread"))
}

/// Spawns `cmd` (a sandbox helper, or an unsandboxed program) from the spawner thread.
pub async fn spawn(mut cmd: tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    let job: SpawnJob = Box::new(move || {
        // The child is registered with this runtime's process driver.
        let _entered = runtime.enter();
        let _ = tx.send(cmd.spawn());
    });
    spawner()?
        .send(job)
        .map_err(|_| std::io::Error::other("the sandbox spawner thread is gone"))?;
    rx.await
        .map_err(|_| std::io::Error::other("the sandbox spawner thread dropped the request"))?
}

/// A setup step that failed, with the explanation for the user.
#[derive(Debug)]
pub(crate) struct SetupError(pub(crate) String);

fn step(what: &str) -> impl FnOnce(Errno) -> SetupError + '_ {
    move |e| SetupError(format!("{what}: {e}"))
}

fn io_step(what: &str) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |e| SetupError(format!("{what}: {e}"))
}

fn fail(e: SetupError) -> ExitCode {
    let _ = writeln!(
        std::io::stderr(),
        "tether sandbox: {}; the command was not run (tether never runs it unsandboxed)",
        e.0
    );
    ExitCode::from(SETUP_FAILED)
}

/// Explains why `unshare` failed and which host setting fixes it.
pub fn explain_unshare_error(e: Errno) -> String {
    match e {
        Errno::ENOSPC => "cannot create a user namespace: the host allows none \
             (sysctl user.max_user_namespaces is 0 for this user namespace). \
             Fix: `sudo sysctl -w user.max_user_namespaces=15000`"
            .into(),
        Errno::EPERM | Errno::EACCES => "cannot create a user namespace: the kernel refused \
             (unprivileged user namespaces are restricted). Fix: on Ubuntu 23.10+ \
             `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; on older \
             Debian `sudo sysctl -w kernel.unprivileged_userns_clone=1`; inside a container, \
             allow the unshare syscall in its seccomp profile"
            .into(),
        Errno::EINVAL => "cannot create namespaces: this kernel lacks user, pid or network \
             namespace support (CONFIG_USER_NS / CONFIG_PID_NS / CONFIG_NET_NS)"
            .into(),
        e => format!("cannot create the sandbox namespaces: unshare failed: {e}"),
    }
}

/// Closes every inherited fd above 2, so a descriptor the daemon leaked without
/// CLOEXEC never reaches the sandbox.
fn close_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        close_raw(fd);
    }
}

fn close_raw(fd: i32) {
    // Any fd above 2 is one this freshly exec'd, single-threaded helper inherited and nothing
    // in it owns; EBADF (the directory iterator's own fd, already closed) is fine.
    let _ = nix::unistd::close(fd);
}

fn write_file(path: &str, text: &str) -> Result<(), SetupError> {
    std::fs::write(path, text).map_err(|e| SetupError(format!("write {path}: {e}")))
}

/// Every namespace a sandbox is made of (a build that shares the host's network drops
/// `CLONE_NEWNET`). `tetherd sandbox-probe` tries the same set.
pub(crate) fn namespaces() -> CloneFlags {
    CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWNET
}

/// Makes every mount of this (new) mount namespace private, so nothing mounted here
/// propagates back to the host.
pub(crate) fn private_mount_tree() -> nix::Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
}

/// Maps uid/gid `inside` of the current (fresh) user namespace to `outside`.
pub(crate) fn map_ids(inside: u32, outside_uid: u32, outside_gid: u32) -> Result<(), SetupError> {
    write_file("/proc/self/setgroups", "deny")?;
    write_file("/proc/self/uid_map", &format!("{inside} {outside_uid} 1\n"))?;
    write_file("/proc/self/gid_map", &format!("{inside} {outside_gid} 1\n"))
}

/// What a sandbox gets beyond the workspace: an environment layer, and (builds only) the
/// host's network. Passed after the workspace as `--layer DIR [--layer-writable] [--share-net]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Mounted at [`LAYER_MOUNT`], read-only unless `layer_writable`.
    pub layer: Option<PathBuf>,
    pub layer_writable: bool,
    /// Keep the host's network namespace (environment builds; the limited-network proxy
    /// replaces this for `limited` environments).
    pub share_net: bool,
    /// The session's network proxy (a Unix socket on the host): bridged to 127.0.0.1:3128
    /// inside the sandbox's own network namespace.
    pub proxy: Option<PathBuf>,
    /// The program (and its arguments) pid 1 execs instead of the shell: a stdio MCP server.
    /// Passed last, after `--`.
    pub command: Vec<OsString>,
    /// The Landlock fallback: no namespaces, the host's tree confined by Landlock.
    pub no_namespaces: bool,
    /// The daemon's pid: stage 1 dies with the thread that spawned it (the daemon's spawner
    /// thread) and refuses to start if that parent is already gone.
    pub die_with: Option<u32>,
    /// The sandbox's cgroup directories (one for cgroup v2, one per controller for v1; limits
    /// already written) stage 1 moves into first, so the whole tree is under their limits.
    pub cgroup: Vec<PathBuf>,
    /// Host directories bound inside the sandbox (memory stores at `/mnt/memory/<store>`).
    pub mounts: Vec<Mount>,
}

/// A host directory `src` bound at `dst` inside the sandbox; read-only mounts are read-only
/// both as a mount and for Landlock. Passed as `--mount[-ro] SRC DST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub read_only: bool,
}

impl Options {
    /// A session's sandbox with its environment layer.
    pub fn session(layer: Option<PathBuf>) -> Options {
        Options {
            layer,
            ..Options::default()
        }
    }

    /// A build step's sandbox: the layer being built is writable, the network is on.
    pub fn build(layer: &Path) -> Options {
        Options {
            layer: Some(layer.to_path_buf()),
            layer_writable: true,
            share_net: true,
            ..Options::default()
        }
    }

    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = Vec::new();
        if let Some(l) = &self.layer {
            out.push("--layer".into());
            out.push(l.clone().into_os_string());
        }
        if self.layer_writable {
            out.push("--layer-writable".into());
        }
        if self.share_net {
            out.push("--share-net".into());
        }
        if let Some(p) = &self.proxy {
            out.push("--proxy".into());
            out.push(p.clone().into_os_string());
        }
        if self.no_namespaces {
            out.push("--no-namespaces".into());
        }
        if let Some(pid) = self.die_with {
            out.push("--die-with".into());
            out.push(pid.to_string().into());
        }
        for dir in &self.cgroup {
            out.push("--cgroup".into());
            out.push(dir.clone().into_os_string());
        }
        for m in &self.mounts {
            out.push(if m.read_only { "--mount-ro" } else { "--mount" }.into());
            out.push(m.src.clone().into_os_string());
            out.push(m.dst.clone().into_os_string());
        }
        if !self.command.is_empty() {
            out.push("--".into());
            out.extend(self.command.iter().cloned());
        }
        out
    }

    fn parse(args: &[OsString]) -> Result<Options, SetupError> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.to_str() {
                Some("--layer") => {
                    let dir = it
                        .next()
                        .ok_or_else(|| SetupError("--layer needs a directory".into()))?;
                    o.layer = Some(PathBuf::from(dir));
                }
                Some("--layer-writable") => o.layer_writable = true,
                Some("--share-net") => o.share_net = true,
                Some("--proxy") => {
                    let socket = it
                        .next()
                        .ok_or_else(|| SetupError("--proxy needs a socket path".into()))?;
                    o.proxy = Some(PathBuf::from(socket));
                }
                Some("--no-namespaces") => o.no_namespaces = true,
                Some("--cgroup") => {
                    let dir = it
                        .next()
                        .ok_or_else(|| SetupError("--cgroup needs a directory".into()))?;
                    o.cgroup.push(PathBuf::from(dir));
                }
                Some("--die-with") => {
                    let pid = it.next().and_then(|p| p.to_str()?.parse().ok());
                    o.die_with =
                        Some(pid.ok_or_else(|| SetupError("--die-with needs a pid".into()))?);
                }
                Some(flag @ ("--mount" | "--mount-ro")) => {
                    let (Some(src), Some(dst)) = (it.next(), it.next()) else {
                        return Err(SetupError(format!("{flag} needs a source and a target")));
                    };
                    o.mounts.push(Mount {
                        src: PathBuf::from(src),
                        dst: PathBuf::from(dst),
                        read_only: flag == "--mount-ro",
                    });
                }
                Some("--") => {
                    o.command = it.cloned().collect();
                    break;
                }
                _ => return Err(SetupError(format!("unknown sandbox option {a:?}"))),
            }
        }
        Ok(o)
    }
}

/// Stage 1 (`tetherd sandbox-exec WORKSPACE [OPTIONS]`): creates the namespaces, runs stage 2
/// and mirrors its end.
pub fn exec_main(args: &[OsString]) -> ExitCode {
    let [workspace, rest @ ..] = args else {
        return fail(SetupError(
            "usage: tetherd sandbox-exec WORKSPACE [OPTIONS]".into(),
        ));
    };
    let mut options = match Options::parse(rest) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    if let Some(parent) = options.die_with.take()
        && let Err(e) = die_with(parent)
    {
        return fail(e);
    }
    // Into the limits before anything else runs (and while still the host's uid).
    for dir in std::mem::take(&mut options.cgroup) {
        let procs = dir.join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, "0") {
            return fail(SetupError(format!(
                "cannot enter the sandbox's cgroup {}: {e}",
                dir.display()
            )));
        }
    }
    close_inherited_fds();
    if options.no_namespaces {
        return match restricted(Path::new(workspace), &options) {
            Ok(never) => match never {},
            Err(e) => fail(e),
        };
    }
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let mut flags = namespaces();
    if options.share_net {
        flags.remove(CloneFlags::CLONE_NEWNET);
    }
    if let Err(e) = unshare(flags) {
        return fail(SetupError(explain_unshare_error(e)));
    }
    if let Err(e) = map_ids(0, uid, gid) {
        return fail(e);
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return fail(SetupError(format!("cannot find the tetherd binary: {e}"))),
    };
    let mut child = match Command::new(exe)
        .arg(INIT_SUBCOMMAND)
        .arg(workspace)
        .arg(std::process::id().to_string())
        .args(options.to_args())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(SetupError(format!("cannot start the sandbox init: {e}"))),
    };
    match child.wait() {
        Ok(status) => {
            if let Some(code) = status.code() {
                return ExitCode::from(u8::try_from(code).unwrap_or(1));
            }
            // Mirror a signal death so the daemon reports "killed by signal N".
            if let Some(sig) = status.signal().and_then(|s| Signal::try_from(s).ok()) {
                let _ = nix::sys::signal::raise(sig);
            }
            ExitCode::from(128 + status.signal().unwrap_or(0).clamp(0, 127) as u8)
        }
        Err(e) => fail(SetupError(format!("waiting for the sandbox init: {e}"))),
    }
}

/// Stage 2 (`tetherd sandbox-init WORKSPACE PARENT_PID [OPTIONS]`): pid 1 of the sandbox.
pub fn init_main(args: &[OsString]) -> ExitCode {
    let [workspace, parent, rest @ ..] = args else {
        return fail(SetupError(
            "usage: tetherd sandbox-init WORKSPACE PARENT_PID [OPTIONS]".into(),
        ));
    };
    let options = match Options::parse(rest) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    match init(Path::new(workspace), parent, &options) {
        Ok(never) => match never {},
        Err(e) => fail(e),
    }
}

enum Never {}

/// Dies with the daemon: SIGKILL when the thread that spawned this process exits (the
/// daemon's never-exiting spawner thread, so in effect the daemon). Set before checking that
/// the parent is still `parent`, so there is no gap.
fn die_with(parent: u32) -> Result<(), SetupError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(step("set the parent-death signal"))?;
    if nix::unistd::getppid().as_raw() != parent as i32 {
        return Err(SetupError(
            "the daemon that started the sandbox is gone".into(),
        ));
    }
    Ok(())
}

fn init(workspace: &Path, parent: &OsString, options: &Options) -> Result<Never, SetupError> {
    // Die with stage 1. Set before checking that it is still alive, so there is no gap.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(step("set the parent-death signal"))?;
    // The host /proc is still mounted, so the parent's host pid is visible.
    let parent = parent.to_string_lossy();
    if !Path::new(&format!("/proc/{parent}")).exists() {
        return Err(SetupError("the sandbox helper's parent is gone".into()));
    }
    if !workspace.is_absolute() {
        return Err(SetupError(format!(
            "the workspace {} is not an absolute path",
            workspace.display()
        )));
    }
    let proxy = options.proxy.as_deref();
    if let Some(p) = proxy.filter(|p| !p.is_absolute()) {
        return Err(SetupError(format!(
            "the proxy socket {} is not an absolute path",
            p.display()
        )));
    }
    build_root(workspace, options)?;
    nix::unistd::sethostname("sandbox").map_err(step("set the hostname"))?;
    // Bound while we still administer the network namespace; served by the bridge below.
    let listener = proxy
        .map(|_| bridge::listen().map_err(SetupError))
        .transpose()?;
    // A nested user namespace where we are the unprivileged SANDBOX_UID: the exec below
    // then clears every capability, and the mounts (owned by the outer namespace) are locked.
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| SetupError(explain_unshare_error(e)))?;
    map_ids(SANDBOX_UID, 0, 0)?;
    nix::sys::prctl::set_no_new_privs().map_err(step("set no_new_privs"))?;
    // A new session: no controlling terminal to inject input into (TIOCSTI).
    nix::unistd::setsid().map_err(step("start a new session"))?;
    std::env::set_current_dir(workspace).map_err(io_step("enter the workspace"))?;
    if let Some(listener) = listener {
        bridge::spawn(listener).map_err(SetupError)?;
    }
    let mut stdout = std::io::stdout();
    stdout
        .write_all(READY.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(io_step("report readiness"))?;
    set_limits()?;
    // Best effort: the mount tree is the filesystem sandbox here, Landlock a second lock.
    let writable: Vec<PathBuf> = options
        .mounts
        .iter()
        .filter(|m| !m.read_only)
        .map(|m| m.dst.clone())
        .collect();
    crate::sandbox::landlock_rules::apply(&crate::sandbox::landlock_rules::namespace_rules_with(
        workspace,
        options.layer_writable,
        &writable,
    ))
    .map_err(SetupError)?;
    // Last, so the helper's own setup above is not constrained by it.
    crate::sandbox::seccomp::apply(false).map_err(SetupError)?;
    let mut env = if proxy.is_some() {
        bridge::proxy_env()
    } else {
        Vec::new()
    };
    // After the pivot, so what exists is what is mounted.
    env.push(("PATH", shell_path(|dir| dir.is_dir())));
    exec_program(options, workspace, env)
}

/// Execs the shell (or the options' command) with the sandbox's identity in its environment.
fn exec_program(
    options: &Options,
    workspace: &Path,
    extra_env: Vec<(&'static str, String)>,
) -> Result<Never, SetupError> {
    let mut cmd = match options.command.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
        None => {
            let mut c = Command::new(SHELL);
            c.args(["--noprofile", "--norc"]);
            c
        }
    };
    let e = cmd
        .envs(extra_env)
        .env("HOME", workspace)
        .env("USER", "sandbox")
        .env("LOGNAME", "sandbox")
        .exec();
    let program = options
        .command
        .first()
        .map_or(SHELL.into(), |p| p.to_string_lossy());
    Err(SetupError(format!("cannot execute {program}: {e}")))
}

/// The Landlock fallback (`sandbox-exec WORKSPACE --no-namespaces`), for hosts without user
/// namespaces: this process becomes the shell, on the host's own tree, confined by Landlock
/// ([`crate::sandbox::landlock_rules::host_rules`]: system dirs read-only, the workspace and a private
/// temp dir writable, the rest unreadable), seccomp (no inet sockets unless the network is
/// shared) and rlimits. Weaker than namespaces, and said so by `tether doctor`: no private
/// /proc (Landlock still bars ptrace-like access to the daemon and signals out of the
/// sandbox), a double-forked process can outlive a timeout, no environment layer, no proxy.
fn restricted(workspace: &Path, options: &Options) -> Result<Never, SetupError> {
    if options.layer.is_some() || options.proxy.is_some() || !options.mounts.is_empty() {
        return Err(SetupError(
            "environment packages, limited networking and memory stores need user namespaces, \
             which this host does not allow (see `tether doctor`)"
                .into(),
        ));
    }
    if nix::unistd::geteuid().is_root() {
        return Err(SetupError(
            "the Landlock fallback cannot drop root's privileges; run tetherd as an \
             unprivileged user or allow user namespaces (see `tether doctor`)"
                .into(),
        ));
    }
    if !workspace.is_absolute() {
        return Err(SetupError(format!(
            "the workspace {} is not an absolute path",
            workspace.display()
        )));
    }
    // A process-group leader (as the daemon spawns it) can't setsid; then there is no new
    // session, and the rules leave /dev/tty out, so there is no terminal to inject input into.
    let _ = nix::unistd::setsid();
    let tmp = std::env::temp_dir().join(format!(
        "tether-sandbox-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| {
            SetupError(format!(
                "create the private temp dir {}: {e}",
                tmp.display()
            ))
        })?;
    std::env::set_current_dir(workspace).map_err(io_step("enter the workspace"))?;
    nix::sys::prctl::set_no_new_privs().map_err(step("set no_new_privs"))?;
    set_limits()?;
    let rules = crate::sandbox::landlock_rules::host_rules(workspace, &tmp, options.share_net);
    let applied = crate::sandbox::landlock_rules::apply(&rules).map_err(SetupError)?;
    if applied.abi.is_none() {
        return Err(SetupError(
            "this kernel enforces no Landlock rules, and without user namespaces nothing else \
             can confine the filesystem"
                .into(),
        ));
    }
    crate::sandbox::seccomp::apply(!options.share_net).map_err(SetupError)?;
    let mut stdout = std::io::stdout();
    stdout
        .write_all(READY.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(io_step("report readiness"))?;
    // What Landlock lets the shell read: a directory beneath one of the rules' paths.
    let path = shell_path(|dir| {
        std::fs::canonicalize(dir)
            .is_ok_and(|d| d.is_dir() && rules.paths.iter().any(|(root, _)| d.starts_with(root)))
    });
    exec_program(
        options,
        workspace,
        vec![
            ("TMPDIR", tmp.to_string_lossy().into_owned()),
            ("PATH", path),
        ],
    )
}

/// The system directories a shell's PATH falls back to.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The shell's PATH: the daemon's (as passed in this process's environment), without the
/// directories the sandbox lacks (a toolchain under the daemon user's home, say), relative
/// entries (they would follow the shell's working directory) and repeats.
fn shell_path(present: impl Fn(&Path) -> bool) -> String {
    let inherited = std::env::var("PATH").unwrap_or_default();
    filter_path(&inherited, present)
}

/// [`shell_path`] of `path`: the entries `present` keeps, or [`DEFAULT_PATH`]'s when none is
/// left.
pub fn filter_path(path: &str, present: impl Fn(&Path) -> bool) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for dir in path.split(':') {
        if dir.starts_with('/') && !kept.contains(&dir) && present(Path::new(dir)) {
            kept.push(dir);
        }
    }
    if kept.is_empty() {
        kept = DEFAULT_PATH
            .split(':')
            .filter(|d| present(Path::new(d)))
            .collect();
    }
    kept.join(":")
}

/// Ceilings a runaway program hits inside its own sandbox before the host notices: processes
/// (counted per user namespace; the kernel exempts host uid 0, so this binds only when the
/// daemon is not root; a root daemon caps processes with a cgroup, see [`crate::sandbox::cgroup`]),
/// open files, no core dumps, and the data segment (heap and private writable mappings, not
/// address-space reservations, so JVM/Go/V8 still start): a memory hog gets ENOMEM where no
/// cgroup bounds the whole tree.
const LIMITS: [(nix::sys::resource::Resource, u64); 4] = [
    (nix::sys::resource::Resource::RLIMIT_NPROC, NPROC_LIMIT),
    (nix::sys::resource::Resource::RLIMIT_NOFILE, NOFILE_LIMIT),
    (nix::sys::resource::Resource::RLIMIT_CORE, 0),
    (nix::sys::resource::Resource::RLIMIT_DATA, DATA_LIMIT),
];

/// Processes (threads included) of the sandbox's user.
pub const NPROC_LIMIT: u64 = 512;
/// Open files per process.
pub const NOFILE_LIMIT: u64 = 4096;
/// The per-process data limit (8 GiB).
pub const DATA_LIMIT: u64 = 8 << 30;

fn set_limits() -> Result<(), SetupError> {
    for (resource, n) in LIMITS {
        nix::sys::resource::setrlimit(resource, n, n)
            .map_err(step(&format!("set the {resource:?} limit")))?;
    }
    Ok(())
}

/// The mount flags of `path` that must be kept when remounting a bind of it (a user
/// namespace may not clear the read-only, nosuid, nodev, noexec or atime flags the host set).
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    };
    let f = st.flags();
    let mut out = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    for (fs, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

fn bind(src: &Path, dst: &Path, read_only: bool) -> Result<(), SetupError> {
    let what = || format!("bind {} to {}", src.display(), dst.display());
    mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| SetupError(format!("{}: {e}", what())))?;
    if read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(dst);
        mount(None::<&str>, dst, None::<&str>, flags, None::<&str>)
            .map_err(|e| SetupError(format!("{} read-only: {e}", what())))?;
    }
    Ok(())
}

fn tmpfs(dst: &Path, options: &str) -> Result<(), SetupError> {
    mount(
        Some("tmpfs"),
        dst,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options),
    )
    .map_err(|e| SetupError(format!("mount a tmpfs on {}: {e}", dst.display())))
}

fn mkdir(path: &Path) -> Result<(), SetupError> {
    std::fs::create_dir_all(path).map_err(|e| SetupError(format!("mkdir {}: {e}", path.display())))
}

/// Host path `p` (absolute) as seen under the old root.
fn host(p: &str) -> PathBuf {
    Path::new("/oldroot").join(p.trim_start_matches('/'))
}

/// Path `p` (absolute) inside the new root.
fn new(p: &str) -> PathBuf {
    Path::new("/newroot").join(p.trim_start_matches('/'))
}

/// The synthetic `/etc` files: who the shell is, and that `sandbox` is this host.
pub fn etc_files(workspace: &Path) -> [(&'static str, String); 5] {
    [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n\
                 sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{}:/bin/bash\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                workspace.display()
            ),
        ),
        (
            "group",
            format!("root:x:0:\nsandbox:x:{SANDBOX_UID}:\nnogroup:x:65534:\n"),
        ),
        (
            "hosts",
            "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost\n".into(),
        ),
        ("hostname", "sandbox\n".into()),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files\n".into(),
        ),
    ]
}

/// Builds the sandbox's root and pivots into it. Runs as root of the outer user namespace.
fn build_root(workspace: &Path, options: &Options) -> Result<(), SetupError> {
    private_mount_tree().map_err(step("make the mount tree private"))?;
    // A scratch root holding the old root (source of binds) and the new one.
    tmpfs(Path::new("/tmp"), "size=1m,mode=0755")?;
    std::env::set_current_dir("/tmp").map_err(io_step("enter the scratch root"))?;
    mkdir(Path::new("newroot"))?;
    mkdir(Path::new("oldroot"))?;
    nix::unistd::pivot_root(".", "oldroot").map_err(step("pivot into the scratch root"))?;
    std::env::set_current_dir("/").map_err(io_step("enter the scratch root"))?;

    tmpfs(Path::new("/newroot"), "size=1m,mode=0755")?;
    for dir in [
        "/usr",
        "/etc/ssl",
        "/etc/ca-certificates",
        "/etc/alternatives",
    ] {
        if host(dir).is_dir() {
            mkdir(&new(dir))?;
            bind(&host(dir), &new(dir), true)?;
        }
    }
    for file in ["/etc/ld.so.cache", "/etc/localtime"] {
        if host(file).is_file() {
            std::fs::write(new(file), "").map_err(io_step("create a mount point"))?;
            bind(&host(file), &new(file), true)?;
        }
    }
    // /bin, /lib... are symlinks into /usr on merged-usr hosts, directories elsewhere.
    for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        let src = host(top);
        if let Ok(target) = std::fs::read_link(&src) {
            std::os::unix::fs::symlink(target, new(top)).map_err(io_step("create a symlink"))?;
        } else if src.is_dir() {
            mkdir(&new(top))?;
            bind(&src, &new(top), true)?;
        }
    }
    mkdir(&new("/etc"))?;
    for (name, text) in etc_files(workspace) {
        std::fs::write(new("/etc").join(name), text).map_err(io_step("write /etc"))?;
    }

    // A minimal /dev: the usual character devices bound from the host.
    mkdir(&new("/dev"))?;
    tmpfs(&new("/dev"), "size=64k,mode=0755")?;
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let dst = new("/dev").join(dev);
        std::fs::write(&dst, "").map_err(io_step("create a device mount point"))?;
        bind(&host("/dev").join(dev), &dst, false)?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, new("/dev").join(link))
            .map_err(io_step("create a /dev symlink"))?;
    }
    mkdir(&new("/dev/shm"))?;
    tmpfs(&new("/dev/shm"), "size=64m,mode=1777")?;

    // A /proc of the new pid namespace: only the sandbox's processes.
    mkdir(&new("/proc"))?;
    mount(
        Some("proc"),
        &new("/proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(step("mount /proc"))?;
    mkdir(&new("/tmp"))?;
    tmpfs(&new("/tmp"), &format!("size={TMP_SIZE},mode=1777"))?;

    // The host proxy's socket, the sandbox's only way out.
    if let Some(socket) = &options.proxy {
        let dst = new(bridge::SOCKET_IN_SANDBOX);
        if let Some(dir) = dst.parent() {
            mkdir(dir)?;
        }
        std::fs::write(&dst, "").map_err(io_step("create the proxy socket's mount point"))?;
        bind(&host(&socket.to_string_lossy()), &dst, true)?;
    }

    // The workspace, read-write at the same path as on the host.
    let ws = workspace.to_string_lossy();
    mkdir(&new(&ws))?;
    bind(&host(&ws), &new(&ws), false)?;
    // nosuid: a setuid file can't be made here (seccomp), and wouldn't work if it were.
    mount(
        None::<&str>,
        &new(&ws),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | locked_flags(&new(&ws)),
        None::<&str>,
    )
    .map_err(step("remount the workspace nosuid"))?;
    mount_extras(options)?;

    // Enter the new root; the scratch root and the host's old root go away entirely.
    std::env::set_current_dir("/newroot").map_err(io_step("enter the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(step("pivot into the new root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(step("detach the host's root"))?;
    std::env::set_current_dir("/").map_err(io_step("enter the new root"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(step("make / read-only"))?;
    Ok(())
}

/// The environment layer, the extra mounts, and name resolution when the host network is
/// shared.
fn mount_extras(options: &Options) -> Result<(), SetupError> {
    if let Some(layer) = &options.layer {
        let src = host(&layer.to_string_lossy());
        mkdir(&new(LAYER_MOUNT))?;
        bind(&src, &new(LAYER_MOUNT), !options.layer_writable)?;
    }
    for m in &options.mounts {
        let (src, dst) = (m.src.to_string_lossy(), m.dst.to_string_lossy());
        if !m.src.is_absolute() || !m.dst.is_absolute() {
            return Err(SetupError(format!(
                "the mount {src} -> {dst} needs absolute paths"
            )));
        }
        mkdir(&new(&dst))?;
        bind(&host(&src), &new(&dst), m.read_only)?;
        if !m.read_only {
            // nosuid like the workspace.
            mount(
                None::<&str>,
                &new(&dst),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | locked_flags(&new(&dst)),
                None::<&str>,
            )
            .map_err(|e| SetupError(format!("remount {dst} nosuid: {e}")))?;
        }
    }
    if options.share_net {
        // Copy the host's resolv.conf (following an absolute symlink within the old root).
        let mut conf = host("/etc/resolv.conf");
        if let Ok(target) = std::fs::read_link(&conf)
            && target.is_absolute()
        {
            conf = host(&target.to_string_lossy());
        }
        let text = std::fs::read_to_string(&conf).unwrap_or_default();
        std::fs::write(new("/etc/resolv.conf"), text).map_err(io_step("write /etc/resolv.conf"))?;
        std::fs::write(
            new("/etc/nsswitch.conf"),
            "passwd: files\ngroup: files\nhosts: files dns\n",
        )
        .map_err(io_step("write /etc/nsswitch.conf"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_args() {
        let o = Options::build(Path::new("/d/envs/x"));
        assert_eq!(Options::parse(&o.to_args()).unwrap(), o);
        // A command goes last, and its own flags stay its own.
        let o = Options {
            proxy: Some("/run/p.sock".into()),
            command: vec!["srv".into(), "--layer".into(), "--".into()],
            ..Options::session(None)
        };
        assert_eq!(Options::parse(&o.to_args()).unwrap(), o);
        let o = Options {
            mounts: vec![
                Mount {
                    src: "/d/sessions/s/memory/a".into(),
                    dst: "/mnt/memory/a".into(),
                    read_only: false,
                },
                Mount {
                    src: "/d/sessions/s/memory/b".into(),
                    dst: "/mnt/memory/b".into(),
                    read_only: true,
                },
            ],
            ..Options::default()
        };
        assert_eq!(Options::parse(&o.to_args()).unwrap(), o);
        assert!(Options::parse(&["--mount".into(), "/a".into()]).is_err());
        let o = Options {
            no_namespaces: true,
            die_with: Some(4242),
            cgroup: vec![
                "/sys/fs/cgroup/pids/tether-7/sandbox-7-1".into(),
                "/sys/fs/cgroup/memory/tether-7/sandbox-7-1".into(),
            ],
            ..Options::session(Some("/l".into()))
        };
        assert_eq!(Options::parse(&o.to_args()).unwrap(), o);
        assert!(Options::parse(&["--die-with".into(), "x".into()]).is_err());
        assert_eq!(Options::parse(&[]).unwrap(), Options::default());
        assert!(Options::parse(&["--bogus".into()]).is_err());
    }

    #[test]
    fn unshare_errors_name_the_setting_to_change() {
        assert!(explain_unshare_error(Errno::ENOSPC).contains("user.max_user_namespaces"));
        assert!(
            explain_unshare_error(Errno::EPERM)
                .contains("kernel.apparmor_restrict_unprivileged_userns=0")
        );
        assert!(explain_unshare_error(Errno::EINVAL).contains("CONFIG_USER_NS"));
    }

    #[test]
    fn passwd_names_the_sandbox_user_with_the_workspace_as_home() {
        let files = etc_files(Path::new("/w/s"));
        let passwd = &files[0].1;
        assert!(passwd.contains("sandbox:x:1000:1000:sandbox:/w/s:/bin/bash\n"));
        assert!(!passwd.contains("/root"));
    }

    #[test]
    fn the_shell_path_keeps_only_present_absolute_directories() {
        let present = |d: &Path| {
            ["/usr/bin", "/bin", "/opt/layer/bin"]
                .iter()
                .any(|p| d == Path::new(p))
        };
        assert_eq!(
            filter_path(
                "/root/.cargo/bin:/usr/bin:relative:/usr/bin::/bin:/opt/layer/bin",
                present
            ),
            "/usr/bin:/bin:/opt/layer/bin"
        );
        // Nothing left: the system directories that exist.
        assert_eq!(filter_path("/root/.cargo/bin", present), "/usr/bin:/bin");
        assert_eq!(filter_path("", present), "/usr/bin:/bin");
    }

    #[test]
    fn paths_map_under_old_and_new_root() {
        assert_eq!(host("/usr"), PathBuf::from("/oldroot/usr"));
        assert_eq!(new("/tmp/ws"), PathBuf::from("/newroot/tmp/ws"));
    }

    #[test]
    fn unit_tests_run_without_the_helper() {
        assert_eq!(Sandbox::for_this_process(), Sandbox::None);
    }
}
