//! Command-line grammar (clap). Scripts depend on these names, flags and exit codes.

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tether",
    version,
    about = "tmux for agents: start agent sessions, detach, come back, steer",
    after_help = "Exit codes: 0 success (turn ended with end_turn; with --outcome: the grader was satisfied), 1 failed turn or error, 2 usage error, 3 daemon unreachable, 4 the outcome was not satisfied (max iterations reached, failed, or interrupted)."
)]
pub struct Cli {
    /// Talk to the daemon on another machine through ssh (`ssh://[user@]host[:port]`, or an
    /// ssh config alias); the remote side runs `tether proxy` (TETHER_REMOTE_COMMAND overrides
    /// `tether` there, TETHER_SSH_COMMAND overrides `ssh` here).
    #[arg(long, global = true, env = "TETHER_REMOTE", value_name = "URL")]
    pub remote: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a session (with an optional first prompt) and open it, or --detach.
    New(NewArgs),
    /// Open the session full screen (on a terminal; otherwise follow it line by line).
    Attach {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
        /// Watch only: this client cannot send, interrupt or approve.
        #[arg(long)]
        read_only: bool,
        /// Show this thread of a multi-agent session (agent name or sthr_ id) first.
        #[arg(long, value_name = "NAME")]
        thread: Option<String>,
    },
    /// List sessions.
    Ls {
        /// Include archived sessions.
        #[arg(long)]
        all: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Only sessions this deployment (id or name) fired.
        #[arg(long, value_name = "DEPLOYMENT")]
        deployment: Option<String>,
        /// Only this host: `local` or a `[[remotes]]` name from config.toml (default: all).
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
    },
    /// Send a message to a session, or give it an outcome (--outcome TASK --rubric FILE).
    #[command(after_help = OUTCOME_HELP)]
    Send {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
        /// The message. With --rubric and no --outcome it is the outcome's task.
        #[arg(required_unless_present = "outcome")]
        text: Option<String>,
        /// Stream the reply and wait until the session is idle; exit code = outcome.
        #[arg(long)]
        wait: bool,
        /// With --wait: print events as JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// Switch the session to this provider/model from this message on.
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        outcome: OutcomeArgs,
        /// Send to this thread of a multi-agent session (agent name or sthr_ id).
        #[arg(long, value_name = "NAME", conflicts_with_all = ["model", "outcome", "rubric", "rubric_text"])]
        thread: Option<String>,
    },
    /// New session, send PROMPT (or an --outcome), stream until idle; exit code = outcome.
    #[command(after_help = OUTCOME_HELP)]
    Run(RunArgs),
    /// Block until the sessions are idle (or the first is, with --any); one line per session
    /// as it goes idle. Exit code as `send --wait`: 0 when every turn ended with end_turn.
    Wait {
        /// Sessions (id, unique id prefix, or name; HOST:SESSION for another box).
        #[arg(required = true, value_name = "SESSION")]
        sessions: Vec<String>,
        /// Return when the first of them is idle (exit code: its outcome).
        #[arg(long)]
        any: bool,
        /// One JSON object per idle session: {session, name, host, stop_reason}.
        #[arg(long)]
        json: bool,
    },
    /// Print a session's event log.
    Logs {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
        /// Keep following new events (resumes from where it is).
        #[arg(short, long)]
        follow: bool,
        /// Only events with seq greater than this.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Events exactly as stored, one JSON object per line.
        #[arg(long)]
        json: bool,
        /// This thread's log (agent name or sthr_ id) instead of the primary's.
        #[arg(long, value_name = "NAME")]
        thread: Option<String>,
    },
    /// Stop the session's current turn (kills running tools); every thread's, or --thread's.
    Interrupt {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
        /// Only this thread of a multi-agent session (agent name or sthr_ id).
        #[arg(long, value_name = "NAME")]
        thread: Option<String>,
    },
    /// List the threads of a multi-agent session: id, name, model, status, cost.
    Threads {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
        /// One JSON object (a session_thread) per line.
        #[arg(long)]
        json: bool,
        /// Archive this idle child thread instead (frees one of the session's 25 slots).
        #[arg(long, value_name = "NAME")]
        archive: Option<String>,
    },
    /// Delete a session, its log and its workspace (unless it was a --dir); for a --worktree
    /// session, also its worktree, keeping or deleting its branch (asked when not given).
    Rm {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
        /// Archive instead: keep the log readable, refuse new input.
        #[arg(long)]
        archive: bool,
        /// --worktree session: keep its branch (uncommitted work is committed to it first).
        #[arg(long, conflicts_with = "delete_branch")]
        keep_branch: bool,
        /// --worktree session: delete its branch with the worktree.
        #[arg(long)]
        delete_branch: bool,
    },
    /// Show what a --worktree session changed: a patch against its branch point, with its
    /// commits, uncommitted edits and new files.
    Diff {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
    },
    /// Give a session a new name (every attached client sees it).
    Rename {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
        /// The new name (unique among sessions).
        name: String,
    },
    /// New session whose log and workspace start as copies of SESSION's.
    Fork {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
        /// Name for the new session.
        #[arg(long)]
        name: Option<String>,
        /// Print the new session as one JSON object instead of its id.
        #[arg(long)]
        json: bool,
    },
    /// Answer a tool call waiting on approval (all of them, or EVENT).
    Approve {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
        /// The `agent.tool_use` event id; default: every call the session waits on.
        event: Option<String>,
        /// Deny instead, with this message for the model.
        #[arg(long, value_name = "MSG")]
        deny: Option<String>,
    },
    /// Answer a custom tool call the session is waiting on.
    ToolResult {
        /// Session id, unique id prefix, or name (HOST:SESSION for another box).
        session: String,
        /// The `agent.custom_tool_use` event id.
        event: String,
        /// The result, as JSON text (passed to the model as-is).
        #[arg(long, value_name = "J")]
        json: String,
        /// Mark the result as an error.
        #[arg(long)]
        error: bool,
    },
    /// Manage agents: versioned system prompt, model and tools that sessions pin.
    Agents {
        #[command(subcommand)]
        action: AgentsAction,
    },
    /// Deployments: an agent + environment + first messages, fired as a new session on a
    /// cron schedule, once at a given time, or on demand.
    Deployments {
        #[command(subcommand)]
        action: DeploymentsAction,
    },
    /// Workflow runs: task graphs (dependencies, checks, retries, checkpoints, fan-out) run
    /// on a session's threads, from a YAML, JSON or TOML file.
    Workflows {
        #[command(subcommand)]
        action: WorkflowsAction,
    },
    /// Serve a self-hosted environment: poll its work queue and run its sessions' tools
    /// here, in tether's sandbox. The worker key comes from --key or TETHER_ENV_KEY.
    Worker {
        /// The environment's id (a name works with a local tetherd).
        #[arg(long = "env")]
        env: String,
        /// tetherd's HTTP API on another machine, e.g. https://tether.example.com (TLS via a
        /// reverse proxy) or http://127.0.0.1:8470 through an ssh tunnel. Default: the
        /// local tetherd's HTTP API (`tetherd --http`). (Not the global --remote, which
        /// reaches a daemon's socket over ssh.)
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// The environment's worker key (`tether envs key ENV`); prefer TETHER_ENV_KEY, which
        /// `ps` does not show.
        #[arg(long)]
        key: Option<String>,
        /// Where the tools run (the sessions' working directory on this machine); default:
        /// the current directory.
        #[arg(long)]
        workdir: Option<std::path::PathBuf>,
        /// Give the tools no network (default: public hosts, as a cloud environment's
        /// `unrestricted`; loopback, private and metadata addresses are refused either way).
        #[arg(long, conflicts_with_all = ["allow_host", "allow_package_managers"])]
        no_network: bool,
        /// Let the tools reach only these hosts, through the worker's proxy (repeatable; an
        /// environment's `allowed_hosts` syntax: `example.com`, `*.example.com`,
        /// `host:port`), as a cloud environment's `limited` networking.
        #[arg(long, value_name = "HOST")]
        allow_host: Vec<String>,
        /// With a limited network, also the package registries (PyPI, npm, crates.io, ...).
        #[arg(long)]
        allow_package_managers: bool,
        /// Serve one work item, then exit.
        #[arg(long, hide = true)]
        once: bool,
    },
    /// Manage environments: packages, setup commands and network policy sessions run with.
    Envs {
        #[command(subcommand)]
        action: EnvsAction,
    },
    /// Memory stores: versioned files that outlive sessions, mounted with `--memory`.
    #[command(after_help = MEMORY_HELP)]
    Memory {
        #[command(subcommand)]
        action: MemoryAction,
    },
    /// Uploaded files (the hosted Files API): mount them into sessions as resources.
    Files {
        #[command(subcommand)]
        action: FilesAction,
    },
    /// Skills: directories with a SKILL.md that agents load (mounted at /skills/<name>/).
    Skills {
        #[command(subcommand)]
        action: SkillsAction,
    },
    /// Vaults: credentials sessions use (`--vault`) without ever holding them in their log.
    #[command(after_help = VAULTS_HELP)]
    Vaults {
        #[command(subcommand)]
        action: VaultsAction,
    },
    /// Store or remove model-provider API keys; see which key the daemon uses.
    Auth {
        #[command(subcommand)]
        action: crate::cmd::auth::AuthAction,
    },
    /// Manage the daemon.
    Daemon {
        #[command(subcommand)]
        action: DaemonAction,
    },
    /// Report paths, daemon state, credentials and host isolation support.
    Doctor {
        /// One JSON array of {check, ok, required, detail}.
        #[arg(long)]
        json: bool,
    },
    /// Print the HTTP API's token (for `x-api-key` / `ANTHROPIC_API_KEY` in the SDKs).
    HttpToken,
    /// Bridge stdin/stdout to the local daemon (what `--remote` runs on the far side of ssh).
    Proxy {
        /// Fail instead of starting the daemon when none runs.
        #[arg(long)]
        existing: bool,
    },
    /// Webhooks: session changes (needs input, idle, errored, ...) POSTed to your URLs in the
    /// hosted API's shape, signed (Standard Webhooks), retried; and their delivery log.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
    },
    // MCP elicitation (issue 25)
    /// Questions a session's MCP servers asked the user during tool calls: list the pending
    /// ones, or `tether elicitations answer SESSION ID --accept JSON | --decline | --cancel`.
    #[command(args_conflicts_with_subcommands = true)]
    Elicitations {
        #[command(subcommand)]
        action: Option<ElicitationsAction>,
        /// Session id, unique id prefix, or name.
        session: Option<String>,
        /// Answered ones too.
        #[arg(long)]
        all: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct SessionOpts {
    /// Model as provider/model (a bare id means anthropic/).
    #[arg(long, short)]
    pub model: Option<String>,
    /// Work in this existing directory (default: the current directory; `[tui] workspace =
    /// "private"` in config.toml makes --private the default). Tools are confined to it.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<String>,
    /// Work in a fresh private workspace under tether's data dir instead of a directory of
    /// yours (it is deleted with the session).
    #[arg(long, conflicts_with_all = ["dir", "worktree"])]
    pub private: bool,
    /// Work in a fresh git worktree of the repository here (or of --dir), on a new branch
    /// `tether/<name-or-id>` from HEAD; `tether diff SESSION` shows what it changed.
    #[arg(long)]
    pub worktree: bool,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Model calls allowed per turn.
    #[arg(long)]
    pub max_turns: Option<u32>,
    /// Spending limit for the whole session, in USD: the turn that reaches it ends with
    /// budget_reached.
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// Agent to pin, as NAME[@VERSION] or an id (default: the built-in `default` agent).
    #[arg(long, value_name = "NAME[@VERSION]")]
    pub agent: Option<String>,
    /// Environment to run in, by name or id (default: the built-in `default` environment).
    /// Waits for its layer to build if it is not built yet.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// Mount a memory store (name or id) at /mnt/memory/<name>/ in the sandbox; `:ro`
    /// mounts it read-only. Repeat for several stores (at most 8).
    #[arg(long = "memory", value_name = "STORE[:ro]")]
    pub memory: Vec<String>,
    /// Use a vault's credentials (name or id): MCP server tokens and shell variables.
    /// Repeat for several; the first wins when two name the same server or variable.
    #[arg(long = "vault", value_name = "VAULT")]
    pub vaults: Vec<String>,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The first message; without it the session waits for `tether send`.
    pub prompt: Option<String>,
    /// A unique, human-friendly name usable wherever the id is.
    #[arg(long, short)]
    pub name: Option<String>,
    /// Print the session id and return; the session runs on in the daemon.
    #[arg(long, short)]
    pub detach: bool,
    /// Print the new session as one JSON object (implies not opening it).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: SessionOpts,
}

/// How `run` and `send` treat an outcome; shown under their --help.
pub const OUTCOME_HELP: &str = "Outcomes: --outcome TASK --rubric FILE gives the agent TASK instead of a message; after each turn a grader (its own context, read-only tools) checks the workspace against the rubric, and the agent revises until the grader is satisfied or --max-iterations evaluations are spent. A PROMPT with --rubric and no --outcome is the task; a PROMPT and --outcome together are refused. With --outcome (and `run`, or `send --wait`) the exit code is the verdict: 0 satisfied, 4 not satisfied (max iterations reached, failed, interrupted), 1 the turn stopped first (error, budget, waiting for approval).";

/// The outcome flags of `run` and `send`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Outcome")]
pub struct OutcomeArgs {
    /// Give the agent TASK, graded against the rubric after each turn, instead of a message.
    #[arg(long, value_name = "TASK")]
    pub outcome: Option<String>,
    /// The rubric the grader judges by: a text file (`-` reads it from stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "rubric_text")]
    pub rubric: Option<String>,
    /// The rubric inline, instead of --rubric FILE (it may start with `- `, a list).
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub rubric_text: Option<String>,
    /// Evaluations before giving up (default 3, at most 20).
    #[arg(long, value_name = "N")]
    pub max_iterations: Option<u32>,
    /// A command that must exit 0 (run in the sandbox, from the workspace) before the grader
    /// is asked; a failure is a revision with its output. Repeatable.
    #[arg(long = "check", value_name = "COMMAND")]
    pub checks: Vec<String>,
    /// A file (relative to the workspace) that must exist before the grader is asked.
    /// Repeatable.
    #[arg(long = "check-file", value_name = "PATH")]
    pub check_files: Vec<String>,
    /// The grader's provider/model (default: the agent's).
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub grader_model: Option<String>,
    /// Graders in parallel, each in its own context; the verdict is their majority.
    #[arg(long, value_name = "N")]
    pub judges: Option<u32>,
    /// After K evaluations that needed revision, switch the agent to --escalate-model.
    #[arg(long, value_name = "K", requires = "escalate_model")]
    pub escalate_after: Option<u32>,
    /// The provider/model the agent continues on after --escalate-after.
    #[arg(long, value_name = "PROVIDER/MODEL", requires = "escalate_after")]
    pub escalate_model: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The first message. With --rubric and no --outcome it is the outcome's task.
    #[arg(required_unless_present = "outcome")]
    pub prompt: Option<String>,
    /// A unique, human-friendly name usable wherever the id is.
    #[arg(long, short)]
    pub name: Option<String>,
    /// Print events as JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: SessionOpts,
    #[command(flatten)]
    pub outcome: OutcomeArgs,
}

#[derive(Subcommand, Debug)]
pub enum DaemonAction {
    /// Start the daemon in the background (or --foreground).
    Start {
        /// Run in this terminal (logs to stderr) instead of in the background.
        #[arg(long)]
        foreground: bool,
    },
    /// Stop the daemon; running sessions resume when it starts again.
    Stop,
    /// Whether the daemon runs: pid, version, uptime, sessions and clients.
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Stop the daemon and start it again (from this shell: it takes this environment).
    Restart,
}

#[derive(Subcommand, Debug)]
pub enum AgentsAction {
    /// Create an agent from a YAML, JSON or TOML file (the `ant beta:agents create` body).
    Create {
        /// The spec file: YAML, JSON or TOML.
        #[arg(short, long, value_name = "FILE")]
        file: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List agents (newest version of each).
    Ls {
        /// Include archived agents.
        #[arg(long)]
        all: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print an agent (as YAML, or --json).
    Show {
        /// NAME[@VERSION] or id.
        agent: String,
        #[arg(long)]
        version: Option<u32>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a new version from a file of changes (omitted fields keep their value; a
    /// `version` field in the file is the version the changes were made against).
    Update {
        /// NAME or id.
        agent: String,
        /// The spec file: YAML, JSON or TOML.
        #[arg(short, long, value_name = "FILE")]
        file: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List every version of an agent.
    Versions {
        /// NAME or id.
        agent: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Archive an agent: its versions stay readable, new sessions can't use it.
    Archive {
        /// NAME or id.
        agent: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum EnvsAction {
    /// Create an environment from a YAML, JSON or TOML file and follow its build, or
    /// `NAME --self-hosted`: one whose tools run on workers (`tether worker`, the SDK's).
    Create {
        /// The spec file: YAML, JSON or TOML.
        #[arg(
            short,
            long,
            value_name = "FILE",
            required_unless_present = "self_hosted",
            conflicts_with = "self_hosted"
        )]
        file: Option<String>,
        /// With --self-hosted: the new environment's name.
        #[arg(requires = "self_hosted")]
        name: Option<String>,
        /// `config: {type: self_hosted}`: sessions' bash/read/write/edit/glob/grep calls run
        /// on workers polling this environment; prints the worker key once.
        #[arg(long, requires = "name")]
        self_hosted: bool,
        /// Return at once instead of following the build.
        #[arg(long)]
        no_wait: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List environments.
    Ls {
        /// Include archived environments.
        #[arg(long)]
        all: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print an environment and its build state (as YAML, or --json).
    Show {
        /// Name or id.
        env: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change an environment from a file of changes (omitted fields keep their value; a
    /// new `config` applies to sessions created afterwards).
    Update {
        /// Name or id.
        env: String,
        /// The spec file: YAML, JSON or TOML.
        #[arg(short, long, value_name = "FILE")]
        file: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete an environment (sessions already in it keep their layer).
    Rm {
        /// Name or id.
        env: String,
    },
    /// Build the environment's layer again from scratch and follow the build.
    Rebuild {
        /// Name or id.
        env: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A self-hosted environment's worker key: made and printed if it has none (only its
    /// hash is kept, so it is shown once); --rotate replaces it (the old one stops working).
    Key {
        /// Name or id.
        env: String,
        /// Make a new key and print it; the old one stops working at once.
        #[arg(long)]
        rotate: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

const MEMORY_HELP: &str = "Examples:
  tether memory stores create prefs --description \"User preferences\"
  tether memory write prefs /style.md --file style.md
  tether memory cat prefs /style.md
  tether run \"tidy up\" --memory prefs        (the agent sees /mnt/memory/prefs/style.md)
  tether memory versions prefs /style.md";

// files (issue 25)
#[derive(Subcommand, Debug)]
pub enum FilesAction {
    /// Upload a file (up to 8 MiB this way; larger ones through POST /v1/files); prints its id.
    Upload {
        /// The file to upload.
        path: std::path::PathBuf,
        /// The name it is kept under (default: the path's file name).
        #[arg(long)]
        name: Option<String>,
        /// Its MIME type (default: guessed from the name).
        #[arg(long = "mime-type")]
        mime_type: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List files, newest first.
    Ls {
        /// Only what this session's agent left in /mnt/session/outputs (id or name).
        #[arg(long)]
        session: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a file's metadata.
    Show {
        /// File id.
        file: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a file's content to OUTPUT (default: its filename; `-` for stdout).
    Download {
        /// File id.
        file: String,
        /// Where to write it (default: its filename; `-` for stdout).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
    /// Delete a file (sessions that mount it keep it).
    Rm {
        /// File id.
        file: String,
    },
}

// memory stores (issue 24)
#[derive(Subcommand, Debug)]
pub enum MemoryAction {
    /// Create, list, show, archive or delete memory stores.
    Stores {
        #[command(subcommand)]
        action: MemoryStoresAction,
    },
    /// List a store's memories (path, size, hash, id).
    Ls {
        /// Store name or id.
        store: String,
        /// Only memories under this prefix, e.g. /notes/.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a memory's content.
    Cat {
        /// Store name or id.
        store: String,
        /// The memory's path (/notes.md) or id (mem_...).
        memory: String,
        /// The whole memory object as JSON instead.
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create or replace the memory at PATH (content from --content, --file, or stdin).
    Write {
        /// Store name or id.
        store: String,
        /// The memory's path, e.g. /notes/today.md.
        path: String,
        /// The new content.
        #[arg(long, conflicts_with = "file")]
        content: Option<String>,
        /// Read the new content from this file (`-`: stdin).
        #[arg(long, short, value_name = "FILE")]
        file: Option<String>,
        /// Only if the current content has this SHA-256 (`none`: only if the path is free);
        /// otherwise nothing is written and the exit code is 1.
        #[arg(long, value_name = "SHA256")]
        if_sha: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a memory (its versions stay).
    Rm {
        /// Store name or id.
        store: String,
        /// The memory's path or id.
        memory: String,
        /// Only if the current content has this SHA-256.
        #[arg(long, value_name = "SHA256")]
        if_sha: Option<String>,
    },
    /// List versions, newest first: every write, who made it (session, CLI, API) and when.
    Versions {
        /// Store name or id.
        store: String,
        /// Only this memory's versions (path or id; ids work after deletion).
        memory: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Wipe a past version's content and path (the current version can't be redacted).
    Redact {
        /// Store name or id.
        store: String,
        /// The version id (memver_...).
        version: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemoryStoresAction {
    /// Create a memory store.
    Create {
        /// The store's name (sessions mount it at /mnt/memory/<name, lowercased>).
        name: String,
        /// What the store holds; shown to agents that mount it.
        #[arg(long)]
        description: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List memory stores.
    Ls {
        /// Include archived stores.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a store as JSON.
    Show {
        /// Store name or id.
        store: String,
    },
    /// Archive a store: readable, but no new writes or sessions (irreversible).
    Archive {
        /// Store name or id.
        store: String,
    },
    /// Delete a store with all its memories and versions (irreversible).
    Delete {
        /// Store name or id.
        store: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeploymentsAction {
    /// Create a deployment from a YAML, JSON or TOML file (the `POST /v1/deployments` body:
    /// name, agent, environment_id, initial_events, schedule {type: cron, expression,
    /// timezone} or {type: at, time}, ...).
    Create {
        /// The deployment file.
        #[arg(short, long, value_name = "FILE")]
        file: String,
        /// Print the deployment as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List deployments with their status and next fire.
    Ls {
        /// Include archived deployments.
        #[arg(long)]
        all: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print a deployment and its next fire times (as YAML, or --json).
    Show {
        /// Deployment id, name, or unique id prefix.
        deployment: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a deployment from a file of changes (omitted fields keep their value, `null`
    /// clears description, schedule or budget; `schedule: null` makes it manual-only).
    Update {
        /// Deployment id, name, or unique id prefix.
        deployment: String,
        /// The file of changes (YAML, JSON or TOML).
        #[arg(short, long, value_name = "FILE")]
        file: String,
        /// Print the deployment as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop scheduled fires; `run` still works.
    Pause {
        /// Deployment id, name, or unique id prefix.
        deployment: String,
    },
    /// Resume scheduled fires from the next occurrence (nothing missed meanwhile is run).
    Unpause {
        /// Deployment id, name, or unique id prefix.
        deployment: String,
    },
    /// Fire the deployment now: start its session and print the run.
    Run {
        /// Deployment id, name, or unique id prefix.
        deployment: String,
        /// Print the run as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Archive a deployment: it never fires again (its runs and sessions stay).
    Archive {
        /// Deployment id, name, or unique id prefix.
        deployment: String,
    },
    /// List runs (newest first), of one deployment or all.
    Runs {
        /// Deployment id, name, or unique id prefix; all deployments when omitted.
        deployment: Option<String>,
        /// Only runs that failed to start a session.
        #[arg(long, conflicts_with = "ok")]
        failed: bool,
        /// Only runs that started a session.
        #[arg(long)]
        ok: bool,
        /// At most this many runs (1-1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

// webhooks (issue 20)
#[derive(Subcommand, Debug)]
pub enum WebhooksAction {
    /// Add an endpoint; prints its signing secret (whsec_…), shown only now.
    Add {
        /// Where to POST, http:// or https://.
        url: String,
        /// A name to refer to it by.
        #[arg(long)]
        name: Option<String>,
        /// Send only this event type (repeatable), e.g. session.requires_action; all by default.
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
        /// Print the endpoint (with its secret) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List endpoints (config.toml's too).
    Ls {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Remove an endpoint (its pending deliveries are dropped).
    Rm {
        /// Endpoint id or name.
        webhook: String,
    },
    /// The delivery log, newest first: status, attempts, last error.
    Deliveries {
        /// Only this endpoint's (id or name).
        #[arg(long)]
        webhook: Option<String>,
        /// Only failed deliveries (attempts used up).
        #[arg(long, conflicts_with = "pending")]
        failed: bool,
        /// Only deliveries waiting for their next attempt.
        #[arg(long)]
        pending: bool,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Send a delivery again now, with the same webhook-id.
    Redeliver {
        /// The delivery's id (whe_…, the webhook-id).
        delivery: String,
        /// The endpoint, when the event went to several.
        #[arg(long)]
        webhook: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every subcommand and argument `--help` lists, without a description, as `path: name`.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") || arg.is_hide_set() {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path}: argument {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            let sub_path = format!("{path} {}", sub.get_name());
            if sub.get_name() != "help"
                && sub.get_about().is_none()
                && sub.get_long_about().is_none()
            {
                out.push(format!("{sub_path}: subcommand"));
            }
            undocumented(sub, &sub_path, out);
        }
    }

    #[test]
    fn every_argument_and_subcommand_has_help_text() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "tether", &mut missing);
        assert!(
            missing.is_empty(),
            "add a `///` line to each of these:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }
}

#[derive(Subcommand, Debug)]
pub enum WorkflowsAction {
    /// Start a run of a workflow file and print its progress; exits 0 only when every task
    /// succeeded (1 otherwise). The run goes on in the daemon if this command stops.
    Run {
        /// The workflow file (YAML, JSON or TOML): name, tasks [{id, prompt | checkpoint,
        /// depends_on, agent, checks, retries, escalate, for_each, optional}].
        file: String,
        /// Run in this session (id, name or prefix); default: a new session working in the
        /// current directory.
        #[arg(long)]
        session: Option<String>,
        /// Print the run's id and return at once.
        #[arg(long)]
        detach: bool,
    },
    /// List open runs (--all: ended ones too).
    Ls {
        /// Ended runs too.
        #[arg(long)]
        all: bool,
        /// Only this session's runs.
        #[arg(long)]
        session: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Every task of a run with its status, attempts, model, verdicts and output.
    Show {
        /// The run's id (`wrun_...`).
        run: String,
        /// The run as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Follow a run live: on a terminal, its session's view with the run panel open (answer
    /// checkpoints there; ctrl-b d leaves it running); otherwise its progress lines until it
    /// ends (exit 0 only when every task succeeded).
    Watch {
        /// The run's id (`wrun_...`).
        run: String,
    },
    /// Interrupt a run's threads; the run waits, idle, until `resume`.
    Stop {
        /// The run's id (`wrun_...`).
        run: String,
    },
    /// Start a stopped run again where it was: finished tasks stay finished.
    Resume {
        /// The run's id (`wrun_...`).
        run: String,
    },
    /// Approve a checkpoint task waiting for an answer.
    Approve {
        /// The run's id (`wrun_...`).
        run: String,
        /// The checkpoint task's id.
        task: String,
        /// A note the dependents see as the checkpoint's output.
        #[arg(long)]
        note: Option<String>,
    },
    /// Deny a checkpoint task: it fails (and the run with it unless it is optional).
    Deny {
        /// The run's id (`wrun_...`).
        run: String,
        /// The checkpoint task's id.
        task: String,
        /// Why: the failure explanation the run records.
        #[arg(long)]
        note: Option<String>,
    },
}

// vaults (issue 25)
const VAULTS_HELP: &str = "Examples:
  tether vaults create ci
  tether vaults add ci --mcp-url https://mcp.example.com/mcp < token.txt
  tether vaults add ci --env GITHUB_TOKEN --host api.github.com     (value typed, hidden)
  tether run \"open a PR\" --vault ci
Secrets are read from stdin (hidden when it is a terminal), never from arguments, and are
never shown again.";

#[derive(Subcommand, Debug)]
pub enum VaultsAction {
    /// Create a vault.
    Create {
        /// Its display name.
        name: String,
    },
    /// List vaults.
    Ls {
        /// Archived ones too.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List a vault's credentials (never their secrets).
    Show {
        /// Vault name or id.
        vault: String,
        /// Archived credentials too.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a credential; its secret is read from stdin.
    #[command(group = clap::ArgGroup::new("kind").required(true).args(["mcp_url", "env"]))]
    Add {
        /// Vault name or id.
        vault: String,
        /// A bearer token for the MCP server at this URL (as the agent's mcp_servers[].url).
        #[arg(long, value_name = "URL")]
        mcp_url: Option<String>,
        /// A variable of the session's sandboxed shell.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// With --env: the hosts the secret is for (default: any the environment allows).
        #[arg(long = "host", value_name = "HOST", requires = "env")]
        hosts: Vec<String>,
        /// The credential's display name.
        #[arg(long)]
        name: Option<String>,
        /// With --mcp-url: tether gets its tokens itself with the OAuth client-credentials
        /// grant (no user) as this client id; the client secret is read from stdin, unless
        /// --private-key is given.
        #[arg(long, value_name = "ID", requires = "mcp_url")]
        client_id: Option<String>,
        /// With --client-id: authenticate with this PKCS#8 PEM private key (private_key_jwt,
        /// ES256 or RS256) instead of a client secret.
        #[arg(long, value_name = "FILE", requires = "client_id")]
        private_key: Option<std::path::PathBuf>,
        /// With --client-id: the scope to ask for (default: what the server advertises).
        #[arg(long, requires = "client_id")]
        scope: Option<String>,
    },
    /// Replace a credential's secret (read from stdin).
    Set {
        /// Vault name or id.
        vault: String,
        /// The credential's id (vcrd_...).
        credential: String,
    },
    /// Archive a vault, or one of its credentials (its secret is erased).
    Archive {
        /// Vault name or id.
        vault: String,
        /// The credential's id (vcrd_...); without it, the whole vault.
        credential: Option<String>,
    },
    /// Delete a vault with its credentials, or one credential.
    Rm {
        /// Vault name or id.
        vault: String,
        /// The credential's id (vcrd_...); without it, the whole vault.
        credential: Option<String>,
    },
    /// Log in to an MCP server that uses OAuth: open the printed URL in a browser on this
    /// machine; the tokens are kept (and refreshed) as an mcp_oauth credential in the vault.
    Login {
        /// Vault name or id.
        vault: String,
        /// The MCP server's URL (as the agent's mcp_servers[].url).
        #[arg(long, value_name = "URL")]
        mcp_url: String,
    },
}

// skills (issue 25)
#[derive(Subcommand, Debug)]
pub enum SkillsAction {
    /// Upload a directory as a skill (SKILL.md with `name` and `description` front matter at
    /// its top); with --skill, as a new version of that skill. Prints the id.
    Create {
        /// The skill's directory.
        dir: std::path::PathBuf,
        /// Its display name (default: SKILL.md's `name`).
        #[arg(long)]
        name: Option<String>,
        /// Add a version to this skill (id or name) instead of making a new one.
        #[arg(long)]
        skill: Option<String>,
    },
    /// List skills, newest first.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a skill: its versions and the latest one's files.
    Show {
        /// Skill id or name.
        skill: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a skill with all its versions.
    Rm {
        /// Skill id or name.
        skill: String,
    },
}

// MCP elicitation (issue 25)
#[derive(Subcommand, Debug)]
pub enum ElicitationsAction {
    /// Answer a pending elicitation; the first answer wins.
    #[command(group(clap::ArgGroup::new("answer").required(true).args(["accept", "decline", "cancel"])))]
    Answer {
        /// Session id, unique id prefix, or name.
        session: String,
        /// The elicitation's id (`elic_...`, from `tether elicitations SESSION`).
        id: String,
        /// Give the server what it asked for: a JSON object of the requested fields. For a
        /// URL-mode question, `--accept` alone: you opened the link.
        #[arg(long, value_name = "JSON", num_args = 0..=1, default_missing_value = "{}")]
        accept: Option<String>,
        /// Refuse; the tool call goes on without it.
        #[arg(long)]
        decline: bool,
        /// Dismiss it.
        #[arg(long)]
        cancel: bool,
    },
}
