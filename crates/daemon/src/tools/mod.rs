//! The agent's tools: `bash`, `read`, `write`, `edit`, `glob`, `grep`, `web_fetch` and
//! `web_search`.
//!
//! One [`Toolbox`] exists per session. It owns the session's persistent bash
//! shell and resolves every file-tool path against the session workspace.
//!
//! Module map:
//! - [`args`]: parsing and validating a tool call's JSON input.
//! - [`ansi`]: streaming removal of terminal escape sequences.
//! - [`bash`]: the persistent shell (start, run one command, kill the tree).
//! - [`files`]: `read`, `write`, `edit`.
//! - [`layer`]: the environment layer's variables in the shell's environment.
//! - [`mcp_names`]: the names MCP servers' tools are offered to the model by.
//! - [`overflow`]: outputs over 100,000 characters go to a workspace file.
//! - [`path`]: workspace confinement of file-tool paths (openat2 beneath the workspace's fd).
//! - [`procs`]: finding and killing a process tree through `/proc`.
//! - [`replay`]: what a call records before it runs; settling calls a restart cut short.
//! - [`schema`]: the tool definitions (JSON Schemas) the model sees.
//! - [`search`]: `glob`, `grep`.
//! - [`walk`]: their directory walk, by descriptors, with the ignore-file rules.
//! - [`web_fetch`]: `web_fetch`, under the session's network policy.
//! - [`web_search`]: `web_search`, through the configured search backend.
//!
//! Confinement: the file tools resolve every path beneath the workspace ([`path`]);
//! `bash` runs in the session's sandbox ([`crate::sandbox`], its level chosen for the host
//! by [`crate::sandbox::support`]). With namespaces it gets a mount tree of its own in which
//! only the workspace, `/tmp` and `/dev/shm` are writable; without them, Landlock on the
//! host's tree lets it read the system directories and write only the workspace and a
//! private temp dir. Both levels add seccomp and rlimits (and cgroup limits where the daemon
//! may create cgroups). Its only network is the session's proxy, which applies the
//! environment's networking policy: none at all without one, nor at the Landlock level
//! (seccomp refuses internet sockets there). A host that can't sandbox fails every bash
//! call; only an environment with `sandbox = "none"` ([`Toolbox::unsandboxed`]) and the
//! daemon's unit tests run it unconfined.
//!
//! Behaviour the turn loop (`session::turn`) can rely on:
//! - `run` never panics; bad input and unknown tools give status `Error`.
//! - bash calls are serialized per toolbox; file tools don't wait for them.
//! - A non-zero bash exit code is in `exit_code` *and* appended to `content`
//!   as a final "[exit code N]" line, so the model sees it.
//! - On timeout, interrupt or `shutdown` the shell's process tree is dead and
//!   reaped when the call returns; the next bash call starts a fresh shell
//!   (after an interrupt, shutdown or `exit` its content starts with a
//!   "[shell restarted: …]" line).
//! - If a `run` future is dropped mid-command, the command's tree is killed
//!   at once, and the next bash call reports the restart.
//! - Dropping the toolbox SIGKILLs the shell's tree too; `shutdown` also
//!   waits for it to be reaped.

pub mod ansi;
pub mod args;
pub mod bash;
pub mod files;
pub mod layer;
pub mod mcp_names;
pub mod overflow;
pub mod path;
pub mod procs;
#[cfg(test)]
mod race_tests;
pub mod replay;
pub mod schema;
pub mod search;
pub mod walk;
pub mod web_fetch;
pub mod web_search;

use std::path::PathBuf;
use std::sync::Arc;

use crate::net::SessionNet;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStatus {
    /// The tool did what was asked (for bash: exit code 0).
    Ok,
    /// The tool failed, the input was invalid, or the command exited non-zero.
    Error,
    /// The bash command ran past its timeout; the shell was killed.
    Timeout,
    /// The user interrupted the call (the `cancel` token fired).
    Interrupted,
}

/// The result of one tool call, ready to be sent back to the model.
#[derive(Debug, Clone)]
pub struct ToolOutcome {
    /// The text the model sees.
    pub content: String,
    /// `true` for every status but [`ToolStatus::Ok`].
    pub is_error: bool,
    pub status: ToolStatus,
    /// Exit code of a bash command (or of the shell, when the command made it
    /// exit). `None` for the other tools and for timeouts/interrupts.
    pub exit_code: Option<i32>,
}

impl ToolOutcome {
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
            status: ToolStatus::Ok,
            exit_code: None,
        }
    }

    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
            status: ToolStatus::Error,
            exit_code: None,
        }
    }

    pub fn interrupted(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
            status: ToolStatus::Interrupted,
            exit_code: None,
        }
    }

    fn from_result(result: Result<String, String>) -> Self {
        match result {
            Ok(content) => Self::ok(content),
            Err(message) => Self::error(message),
        }
    }
}

/// A tool as advertised to the model.
#[derive(Debug, Clone)]
pub struct ToolDefinition {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: serde_json::Value,
}

/// Names of all tools, in the order [`Toolbox::definitions`] lists them.
pub const TOOL_NAMES: [&str; 8] = [
    "bash",
    "read",
    "write",
    "edit",
    "glob",
    "grep",
    "web_fetch",
    "web_search",
];

/// The text appended to a call's output when the user interrupts it.
pub const INTERRUPTED_NOTE: &str = "[interrupted by the user]";

/// One per session. Owns the persistent bash shell.
pub struct Toolbox {
    workspace: PathBuf,
    shell: bash::Shell,
    net: Arc<SessionNet>,
    search: Option<Arc<web_search::WebSearch>>,
    /// Host directories the sandbox shows at other paths (memory stores): the file tools
    /// map those paths to them, confined beneath each one as beneath the workspace.
    mounts: Vec<crate::sandbox::Mount>,
}

impl Toolbox {
    /// Creates the toolbox for a session whose workspace is `workspace`.
    /// Cheap: the shell starts lazily at the first bash call. The shell's
    /// environment is built from this process's environment (see
    /// [`bash::shell_env`] for what is kept).
    /// No network: the sandbox has none and `web_fetch` refuses.
    pub fn new(workspace: PathBuf) -> Self {
        Self::for_session(workspace, None, Arc::new(SessionNet::off()))
    }

    /// A session's toolbox: the environment layer `layer` mounted read-only with its bin dirs
    /// on PATH, and the session's network (sandbox proxy and `web_fetch`).
    pub fn for_session(workspace: PathBuf, layer: Option<PathBuf>, net: Arc<SessionNet>) -> Self {
        let mut env = bash::shell_env(std::env::vars().collect());
        if layer.is_some() {
            layer::layer_env(&mut env);
        }
        Self::build(workspace, env, layer, net)
    }

    /// Like [`Toolbox::new`], but the shell's environment is derived from
    /// `parent_env` instead of this process's environment (used by tests).
    #[cfg(test)]
    pub(crate) fn with_parent_env(workspace: PathBuf, parent_env: Vec<(String, String)>) -> Self {
        Self::build(
            workspace,
            bash::shell_env(parent_env),
            None,
            Arc::new(SessionNet::off()),
        )
    }

    fn build(
        workspace: PathBuf,
        env: Vec<(String, String)>,
        layer: Option<PathBuf>,
        net: Arc<SessionNet>,
    ) -> Self {
        let shell = bash::Shell::new(
            workspace.clone(),
            env,
            crate::sandbox::Sandbox::for_this_process(),
        )
        .with_options(crate::sandbox::Options::session(layer))
        .with_net(net.clone());
        Self {
            workspace,
            shell,
            net,
            search: None,
            mounts: Vec::new(),
        }
    }

    /// Built-in tools this session can't run, so they are not offered: `web_fetch` without a
    /// network, `web_search` without a backend.
    pub fn unavailable(&self) -> Vec<&'static str> {
        let mut off = Vec::new();
        if self.net.policy().is_none() {
            off.push("web_fetch");
        }
        if self.search.is_none() {
            off.push("web_search");
        }
        off
    }

    /// The same toolbox with its tools unsandboxed: only for environments that say
    /// `sandbox = "none"`.
    pub fn unsandboxed(mut self) -> Self {
        self.shell = self.shell.with_sandbox(crate::sandbox::Sandbox::None);
        self
    }

    /// How this toolbox's commands are isolated (see [`crate::sandbox::Sandbox::level_name`]).
    pub fn sandbox_level(&self) -> &'static str {
        self.shell.sandbox().level_name()
    }

    /// The same toolbox with host directories mounted in its sandbox (memory stores at
    /// `/mnt/memory/<store>`); the file tools reach them at the same paths.
    pub fn with_mounts(mut self, mounts: Vec<crate::sandbox::Mount>) -> Self {
        self.shell = self.shell.with_mounts(mounts.clone());
        self.mounts = mounts;
        self
    }

    /// The directories bound into the sandbox besides the workspace.
    pub fn mounts(&self) -> &[crate::sandbox::Mount] {
        &self.mounts
    }

    /// A file tool's call whose path is inside one of the mounts: the mount (its host
    /// directory and where the sandbox shows it); an error for a change to a read-only mount;
    /// None for a call on the workspace.
    fn in_mount(
        &self,
        tool: &str,
        input: &serde_json::Value,
    ) -> Option<Result<&crate::sandbox::Mount, String>> {
        let key = if matches!(tool, "glob" | "grep") {
            "path"
        } else {
            "file_path"
        };
        let raw = input.get(key)?.as_str()?;
        if !raw.starts_with('/') {
            return None;
        }
        let path = path::normalize_lexically(std::path::Path::new(raw));
        // The innermost mount holding the path.
        let m = self
            .mounts
            .iter()
            .filter(|m| path.starts_with(&m.dst))
            .max_by_key(|m| m.dst.components().count())?;
        if m.read_only && matches!(tool, "write" | "edit") {
            let what = if m.dst.starts_with("/mnt/memory") {
                "a memory store attached read_only"
            } else {
                "which is mounted read-only"
            };
            return Some(Err(format!(
                "{tool}: `{raw}` is in {}, {what}; it can't be changed (copy it into the workspace or /mnt/user first)",
                m.dst.display()
            )));
        }
        Some(Ok(m))
    }

    /// The same toolbox with the session's vault variables in its shell's environment: set
    /// after the inherited ones, so they win on a clash; a change reaches the next command.
    pub fn with_vault_env(mut self, vars: Arc<bash::VaultEnv>) -> Self {
        self.shell = self.shell.with_vault_env(vars);
        self
    }

    /// The same toolbox with the daemon's `web_search` backend (None: the tool refuses).
    pub fn with_search(mut self, search: Option<Arc<web_search::WebSearch>>) -> Self {
        self.search = search;
        self
    }

    /// A command running `argv` in a sandbox like the session shell's (a stdio MCP server);
    /// see [`bash::Shell::sandboxed_command`].
    pub fn sandboxed_command(
        &self,
        argv: &[String],
        extra_env: &[(String, String)],
    ) -> Result<(tokio::process::Command, bool), String> {
        self.shell.sandboxed_command(argv, extra_env)
    }

    /// The session's network (policy and sandbox proxy).
    /// The session's network to share with its threads (one proxy per session).
    pub fn shared_net(&self) -> Arc<SessionNet> {
        self.net.clone()
    }

    pub fn net(&self) -> &SessionNet {
        &self.net
    }

    /// The session workspace this toolbox was created with.
    pub fn workspace(&self) -> &std::path::Path {
        &self.workspace
    }

    /// The tools the model sees: bash, read, write, edit, glob, grep, web_fetch.
    pub fn definitions() -> Vec<ToolDefinition> {
        schema::definitions()
    }

    /// Whether a tool only reads (read, glob, grep, web_fetch).
    pub fn is_read_only(name: &str) -> bool {
        matches!(name, "read" | "glob" | "grep" | "web_fetch" | "web_search")
    }

    /// Runs one tool call. Never panics; every failure is an outcome with
    /// `is_error: true`.
    ///
    /// `output` receives live output chunks of `bash` (stdout and stderr
    /// merged, ANSI-stripped, never containing the internal end marker); the
    /// other tools send nothing to it. Chunks concatenate to the command's
    /// full output (the final `content` is its last 100 KiB plus notes).
    /// A closed receiver is ignored.
    ///
    /// `cancel` fires on user interrupt: the running tool stops promptly,
    /// bash's whole process tree is killed and reaped, and the outcome has
    /// status [`ToolStatus::Interrupted`].
    pub async fn run(
        &self,
        name: &str,
        input: &serde_json::Value,
        output: Option<UnboundedSender<String>>,
        cancel: CancellationToken,
    ) -> ToolOutcome {
        if !TOOL_NAMES.contains(&name) {
            return ToolOutcome::error(format!(
                "unknown tool `{name}`; available tools: {}",
                TOOL_NAMES.join(", ")
            ));
        }
        if cancel.is_cancelled() {
            return ToolOutcome::interrupted(format!("{INTERRUPTED_NOTE} ({name} did not run)"));
        }
        match name {
            "bash" => match bash::BashInput::parse(input) {
                Ok(parsed) => self.shell.run(parsed, output, cancel).await,
                Err(message) => ToolOutcome::error(message),
            },
            "web_fetch" => web_fetch::run(&self.net, input, &cancel).await,
            "web_search" => match &self.search {
                Some(s) => s.run(input, &cancel).await,
                None => ToolOutcome::error(
                    "web_search: no search backend is configured; add [web_search] to config.toml (see `tether doctor`)",
                ),
            },
            _ => self.run_file_tool(name, input, cancel).await,
        }
    }

    /// Runs a file tool on the blocking pool, racing it against `cancel`.
    async fn run_file_tool(
        &self,
        name: &str,
        input: &serde_json::Value,
        cancel: CancellationToken,
    ) -> ToolOutcome {
        // A path in a mount resolves in the mount's host directory, under the name the
        // sandbox gives it (so messages say /mnt/user/x, as the model wrote it).
        let (root, shown) = match self.in_mount(name, input) {
            None => (self.workspace.clone(), self.workspace.clone()),
            Some(Ok(m)) => (m.src.clone(), m.dst.clone()),
            Some(Err(message)) => return ToolOutcome::error(message),
        };
        let input = input.clone();
        let tool = match TOOL_NAMES.iter().find(|n| **n == name) {
            Some(tool) => *tool,
            None => return ToolOutcome::error(format!("unknown tool `{name}`")),
        };
        // Set when the caller gives up, so long walks stop early.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_in_task = stop.clone();
        let task = tokio::task::spawn_blocking(move || {
            let ws = match path::Workspace::open_as(&root, &shown, tool) {
                Ok(ws) => ws,
                Err(message) => return Err(message),
            };
            match tool {
                "read" => files::read(&ws, &input),
                "write" => files::write(&ws, &input),
                "edit" => files::edit(&ws, &input),
                "glob" => search::glob(&ws, &input, &stop_in_task),
                "grep" => search::grep(&ws, &input, &stop_in_task),
                other => Err(format!("unknown tool `{other}`")),
            }
        });
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                ToolOutcome::interrupted(INTERRUPTED_NOTE)
            }
            joined = task => match joined {
                Ok(result) => ToolOutcome::from_result(result),
                Err(err) => ToolOutcome::error(format!("{tool}: internal error: {err}")),
            },
        }
    }

    /// Pid (= process-group id) of the live shell, if one is running.
    ///
    /// `None` before the first bash call, after a timeout, interrupt or
    /// `exit` (until the next bash call starts a fresh shell), and after
    /// [`Toolbox::shutdown`]. After `restart: true` it is the new shell's pid.
    pub fn shell_pid(&self) -> Option<u32> {
        self.shell.pid()
    }

    /// Kills the shell's whole process group (SIGKILL) and reaps it. A bash
    /// call running at that moment ends promptly as Interrupted. The toolbox
    /// stays usable: a later bash call starts a fresh shell (its content
    /// starts with a "[shell restarted: …]" line).
    pub async fn shutdown(&self) {
        self.shell.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definitions_cover_all_tools_with_object_schemas() {
        let defs = Toolbox::definitions();
        let names: Vec<&str> = defs.iter().map(|d| d.name).collect();
        assert_eq!(names, TOOL_NAMES.to_vec());
        for def in &defs {
            assert_eq!(def.input_schema["type"], "object", "{}", def.name);
            assert!(!def.description.is_empty());
        }
    }

    #[test]
    fn read_only_tools() {
        assert!(Toolbox::is_read_only("read"));
        assert!(Toolbox::is_read_only("glob"));
        assert!(Toolbox::is_read_only("grep"));
        assert!(Toolbox::is_read_only("web_fetch"));
        assert!(!Toolbox::is_read_only("bash"));
        assert!(!Toolbox::is_read_only("write"));
        assert!(!Toolbox::is_read_only("edit"));
        assert!(!Toolbox::is_read_only("nope"));
    }

    #[tokio::test]
    async fn unknown_tool_and_bad_input_are_errors() {
        let dir = tempfile::TempDir::new().unwrap();
        let tb = Toolbox::new(dir.path().to_path_buf());
        let out = tb
            .run("frobnicate", &json!({}), None, CancellationToken::new())
            .await;
        assert!(out.is_error);
        assert_eq!(out.status, ToolStatus::Error);
        assert!(
            out.content.contains("unknown tool `frobnicate`"),
            "{}",
            out.content
        );

        let out = tb
            .run("read", &json!({}), None, CancellationToken::new())
            .await;
        assert_eq!(out.status, ToolStatus::Error);
        assert_eq!(out.content, "read: missing required field `file_path`");

        let out = tb
            .run(
                "read",
                &json!({"file_path": 3}),
                None,
                CancellationToken::new(),
            )
            .await;
        assert_eq!(out.status, ToolStatus::Error);
        assert!(out.content.contains("must be a string"), "{}", out.content);

        let out = tb
            .run("grep", &json!("x"), None, CancellationToken::new())
            .await;
        assert_eq!(out.status, ToolStatus::Error);
        assert!(out.content.contains("JSON object"), "{}", out.content);

        let out = tb
            .run("bash", &json!({}), None, CancellationToken::new())
            .await;
        assert_eq!(out.status, ToolStatus::Error);
        assert!(out.content.contains("command"), "{}", out.content);
        assert_eq!(
            tb.shell_pid(),
            None,
            "a rejected call must not start the shell"
        );
    }

    #[tokio::test]
    async fn already_cancelled_call_does_not_run() {
        let dir = tempfile::TempDir::new().unwrap();
        let tb = Toolbox::new(dir.path().to_path_buf());
        let cancel = CancellationToken::new();
        cancel.cancel();
        let out = tb
            .run(
                "write",
                &json!({"file_path": "a.txt", "content": "x"}),
                None,
                cancel,
            )
            .await;
        assert_eq!(out.status, ToolStatus::Interrupted);
        assert!(out.is_error);
        assert!(!dir.path().join("a.txt").exists());
    }

    #[tokio::test]
    async fn file_tools_round_trip_through_run() {
        let dir = tempfile::TempDir::new().unwrap();
        let tb = Toolbox::new(dir.path().to_path_buf());
        let c = CancellationToken::new;
        let out = tb
            .run(
                "write",
                &json!({"file_path": "src/a.txt", "content": "alpha\nbeta\n"}),
                None,
                c(),
            )
            .await;
        assert_eq!(out.status, ToolStatus::Ok, "{}", out.content);
        let out = tb
            .run(
                "edit",
                &json!({"file_path": "src/a.txt", "old_string": "beta", "new_string": "gamma"}),
                None,
                c(),
            )
            .await;
        assert_eq!(out.status, ToolStatus::Ok, "{}", out.content);
        let out = tb
            .run("read", &json!({"file_path": "src/a.txt"}), None, c())
            .await;
        assert_eq!(out.content, "     1\talpha\n     2\tgamma\n");
        let out = tb
            .run("glob", &json!({"pattern": "**/*.txt"}), None, c())
            .await;
        assert_eq!(out.content, "src/a.txt");
        let out = tb
            .run("grep", &json!({"pattern": "gam+a"}), None, c())
            .await;
        assert_eq!(out.content, "src/a.txt:2:gamma");
    }
}
