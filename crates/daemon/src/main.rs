//! `tetherd`: the tether daemon.

use clap::Parser;
use tether_daemon::{admission, daemon, net, private, sandbox, worker};
use tether_proto::Paths;

#[derive(Parser)]
#[command(
    name = "tetherd",
    version,
    about = "The tether daemon: owns agent sessions, their event log and tools"
)]
struct Args {
    /// Detach from the terminal (new session, no stdio); used when a client starts the daemon.
    #[arg(long)]
    detach: bool,
    /// Serve the Managed-Agents-compatible HTTP API on HOST:PORT (loopback unless
    /// `[http] allow_remote = true`); overrides `[http] listen` in config.toml.
    #[arg(long, value_name = "HOST:PORT")]
    http: Option<String>,
}

fn main() -> std::process::ExitCode {
    // The sandbox helper stages: dispatched before anything starts a thread, because
    // unshare(CLONE_NEWUSER) requires a single-threaded process.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match argv.get(1).and_then(|a| a.to_str()) {
        Some(sandbox::EXEC_SUBCOMMAND) => return sandbox::exec_main(&argv[2..]),
        Some(sandbox::INIT_SUBCOMMAND) => return sandbox::init_main(&argv[2..]),
        Some(sandbox::support::PROBE_SUBCOMMAND) => {
            return sandbox::support::probe_main(&argv[2..]);
        }
        Some(net::bridge::SUBCOMMAND) => return net::bridge::main(&argv[2..]),
        Some(worker::SUBCOMMAND) => return worker_main(&argv[2..]),
        _ => {}
    }
    let args = Args::parse();
    let paths = Paths::resolve(|k| std::env::var(k).ok(), nix::unistd::geteuid().as_raw());
    if args.detach {
        // Own session: a closed terminal or lost SSH link must not reach us.
        let _ = nix::unistd::setsid();
    }
    let _log_guard = match init_logging(&paths, !args.detach) {
        Ok(g) => g,
        Err(e) => {
            eprintln!(
                "tetherd: cannot set up logging in {}: {e:#}",
                paths.log_dir.display()
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    // Before anything is read or written there: the log's WAL holds prompts and transcripts.
    match private::secure_home(&paths) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            tightened = n,
            "took group and other permissions off files and directories an older tetherd left readable"
        ),
        Err(e) => {
            let msg = format!(
                "cannot make tether's files private to you ({e}); fix the owner or permissions of that path, since it holds your sessions' prompts and transcripts"
            );
            tracing::error!("{msg}");
            eprintln!("tetherd: {msg}");
            return std::process::ExitCode::FAILURE;
        }
    }
    if let Err(e) = daemon::prepare_runtime_dir(&paths.runtime_dir) {
        tracing::error!("{e:#}");
        eprintln!("tetherd: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    // Clients, sessions' shells and model streams all take fds; the connection caps are a
    // share of this limit.
    let fd_limit = admission::raise_fd_limit();
    tracing::debug!(fd_limit, "open-file limit");
    let lock = match daemon::take_start_lock(&paths) {
        Ok(l) => l,
        Err(e) => {
            let already = e.downcast_ref::<daemon::AlreadyRunning>().is_some();
            eprintln!("tetherd: {e:#}");
            return std::process::ExitCode::from(if already {
                daemon::EXIT_ALREADY_RUNNING as u8
            } else {
                1
            });
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tetherd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(daemon::run(paths, lock, args.http)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tetherd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(
    paths: &Paths,
    to_stderr: bool,
) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::prelude::*;
    private::create_dir(&paths.log_dir)?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("tetherd")
        .filename_suffix("log")
        .max_log_files(7)
        .build(&paths.log_dir)?;
    let (file, guard) =
        tracing_appender::non_blocking(private::PrivateLogs::new(appender, &paths.log_dir));
    let filter = std::env::var("TETHER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let file_layer = tracing_subscriber::fmt::layer()
        .with_writer(file)
        .with_ansi(false);
    let stderr_layer =
        to_stderr.then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stderr_layer)
        .init();
    Ok(guard)
}

/// `tetherd worker --url URL --env ENV_ID [--workdir DIR] [--worker-id ID]
/// [--no-network | --allow-host HOST... [--allow-package-managers]] [--once]`, the key in `TETHER_ENV_KEY` (never on the command line, where `ps` shows it).
/// Started by `tether worker`.
#[derive(Parser)]
#[command(name = "tetherd worker")]
struct WorkerCli {
    #[arg(long)]
    url: String,
    #[arg(long = "env")]
    environment: String,
    #[arg(long)]
    workdir: std::path::PathBuf,
    #[arg(long)]
    worker_id: Option<String>,
    #[arg(long, conflicts_with_all = ["allow_host", "allow_package_managers"])]
    no_network: bool,
    /// Limit the tools' network to these hosts (an environment's `allowed_hosts` syntax).
    #[arg(long, value_name = "HOST")]
    allow_host: Vec<String>,
    #[arg(long)]
    allow_package_managers: bool,
    #[arg(long)]
    once: bool,
}

impl WorkerCli {
    /// The tools' network policy, as a local environment's `networking` would give it.
    fn network(&self) -> Result<tether_daemon::net::NetPolicy, String> {
        use tether_daemon::net::NetPolicy;
        if self.no_network {
            return Ok(NetPolicy::None);
        }
        if self.allow_host.is_empty() && !self.allow_package_managers {
            return Ok(NetPolicy::Unrestricted);
        }
        NetPolicy::limited(&self.allow_host, self.allow_package_managers)
            .map_err(|e| format!("--allow-host: {e}"))
    }
}

fn worker_main(args: &[std::ffi::OsString]) -> std::process::ExitCode {
    let cli = match WorkerCli::try_parse_from(
        std::iter::once(std::ffi::OsString::from("tetherd worker")).chain(args.iter().cloned()),
    ) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(2);
        }
    };
    let network = match cli.network() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("tetherd worker: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let Some(key) = std::env::var("TETHER_ENV_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    else {
        eprintln!(
            "tetherd worker: set TETHER_ENV_KEY to the environment's worker key (`tether envs key ENV` on the daemon's machine)"
        );
        return std::process::ExitCode::from(2);
    };
    let filter = std::env::var("TETHER_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "worker".into());
    let worker_id = cli.worker_id.unwrap_or_else(|| {
        format!(
            "{host}-{:012x}",
            std::process::id() as u64
                ^ (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
                    & 0xffff_ffff_0000)
        )
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tetherd worker: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let args = worker::WorkerArgs {
        url: cli.url,
        environment_id: cli.environment,
        key: key.trim().to_string(),
        workdir: cli.workdir,
        worker_id,
        network,
        once: cli.once,
    };
    match rt.block_on(worker::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tetherd worker: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
