//! `tether`: the CLI (and, in a later release, the TUI) for the tether daemon.

mod cli;
mod client;
mod cmd;
mod fleet;
mod notify;
mod outcome;
mod render;
mod screen;
mod settings;
mod transport;

use std::process::ExitCode;

use clap::Parser;
use tether_proto::ErrorCode;

use crate::cli::{Cli, Command};
use crate::client::ClientError;

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = dispatch(cli) => r,
            // Ctrl-C detaches; the session keeps running in the daemon.
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\ndetached; the session keeps running (`tether ls`)");
                Ok(ExitCode::from(130))
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tether: {e}");
            ExitCode::from(match &e {
                ClientError::Unreachable(_) | ClientError::Disconnected(_) => 3,
                ClientError::Daemon(b) if b.code == ErrorCode::InvalidParams => 2,
                _ => 1,
            })
        }
    }
}

async fn dispatch(cli: Cli) -> cmd::CmdResult {
    // The proxy is the far end of a remote link: it always talks to its local daemon.
    let is_proxy = matches!(cli.command, Some(Command::Proxy { .. }));
    let usage =
        |m: String| ClientError::Daemon(tether_proto::ErrorBody::new(ErrorCode::InvalidParams, m));
    let config = client::paths().config_file();
    let remotes = if is_proxy {
        Vec::new()
    } else {
        fleet::load(&config).map_err(usage)?
    };
    let mut command = cli.command;
    // HOST:SESSION picks the daemon for this command, over --remote and `[tui] remote`.
    let pinned = match command.as_mut().and_then(session_arg) {
        Some(arg) => {
            let (host, session) = fleet::resolve(arg, &remotes).map_err(usage)?;
            let session = session.to_string();
            *arg = session;
            host
        }
        None => None,
    };
    // --remote / TETHER_REMOTE, else `[tui] remote` in config.toml; `local` means this machine.
    let remote = match (&pinned, cli.remote.clone()) {
        (Some(fleet::Host::Local), _) => None,
        (Some(fleet::Host::Remote(r)), _) => Some(r.name.clone()),
        (None, Some(r)) => Some(r),
        (None, None) if is_proxy => None,
        (None, None) => settings::load(&config).map_err(usage)?.remote,
    };
    let mut chosen_remote = None;
    if let Some(remote) = remote
        .as_deref()
        .filter(|r| !r.is_empty() && *r != fleet::LOCAL && !is_proxy)
    {
        // A `[[remotes]]` name, else an ssh URL.
        let target = match remotes.iter().find(|r| r.name == remote) {
            Some(r) => r.ssh.clone(),
            None => transport::SshTarget::parse(remote).map_err(usage)?,
        };
        client::use_remote(target);
        chosen_remote = Some(remote.to_string());
    }
    let Some(command) = command else {
        if screen::is_tty() {
            return screen::picker().await;
        }
        eprintln!("the full-screen TUI arrives in a later release; meanwhile:");
        return cmd::fleet::ls(false, false, None, None, chosen_remote).await;
    };
    match command {
        Command::New(a) => cmd::sessions::new(a).await,
        Command::Attach {
            session,
            read_only,
            thread: Some(thread),
        } => cmd::threads::attach(session, thread, read_only).await,
        Command::Attach {
            session,
            read_only,
            thread: None,
        } => cmd::sessions::attach(session, read_only).await,
        Command::Ls {
            all,
            json,
            deployment,
            host,
        } => cmd::fleet::ls(all, json, deployment, host, chosen_remote).await,
        Command::Wait {
            sessions,
            any,
            json,
        } => cmd::fleet::wait(sessions, any, json).await,
        Command::Send {
            session,
            text,
            wait,
            json,
            thread: Some(thread),
            ..
        } => cmd::threads::send(session, thread, text.unwrap_or_default(), wait, json).await,
        Command::Send {
            session,
            text,
            wait,
            json,
            model,
            outcome,
            thread: None,
        } => cmd::sessions::send(session, text, wait, json, model, outcome).await,
        Command::Run(a) => cmd::sessions::run(a).await,
        Command::Logs {
            session,
            follow,
            after,
            json,
            thread: Some(thread),
        } => cmd::threads::logs(session, thread, follow, after, json).await,
        Command::Logs {
            session,
            follow,
            after,
            json,
            thread: None,
        } => cmd::sessions::logs(session, follow, after, json).await,
        Command::Interrupt {
            session,
            thread: Some(thread),
        } => cmd::threads::interrupt(session, thread).await,
        Command::Interrupt {
            session,
            thread: None,
        } => cmd::sessions::interrupt(session).await,
        Command::Threads {
            session,
            archive: Some(thread),
            ..
        } => cmd::threads::archive(session, thread).await,
        Command::Threads {
            session,
            json,
            archive: None,
        } => cmd::threads::list(session, json).await,
        Command::Rm {
            session,
            archive,
            keep_branch,
            delete_branch,
        } => cmd::sessions::rm(session, archive, keep_branch, delete_branch).await,
        Command::Diff { session } => cmd::sessions::diff(session).await,
        Command::Rename { session, name } => cmd::sessions::rename(session, name).await,
        Command::Fork {
            session,
            name,
            json,
        } => cmd::sessions::fork(session, name, json).await,
        Command::Approve {
            session,
            event,
            deny,
        } => cmd::approvals::approve(session, event, deny).await,
        Command::ToolResult {
            session,
            event,
            json,
            error,
        } => cmd::approvals::tool_result(session, event, json, error).await,
        Command::Agents { action } => cmd::agents::run(action).await,
        Command::Envs { action } => cmd::envs::run(action).await,
        Command::Worker {
            env,
            url: remote,
            key,
            workdir,
            no_network,
            allow_host,
            allow_package_managers,
            once,
        } => {
            let network = cmd::worker::WorkerNetwork {
                none: no_network,
                allow_hosts: allow_host,
                allow_package_managers,
            };
            cmd::worker::run(env, remote, key, workdir, network, once).await
        }
        Command::Memory { action } => cmd::memory::run(action).await,
        Command::Files { action } => cmd::files::run(action).await,
        Command::Vaults { action } => cmd::vaults::run(action).await,
        Command::Skills { action } => cmd::skills::run(action).await,
        Command::Deployments { action } => cmd::deployments::run(action).await,
        Command::Workflows { action } => cmd::workflows::run(action).await,
        Command::Auth { action } => cmd::auth::run(action).await,
        Command::Daemon { action } => cmd::daemon::run(action).await,
        Command::Doctor { json } => cmd::doctor::run(json).await,
        Command::Proxy { existing } => cmd::proxy::run(!existing).await,
        Command::HttpToken => cmd::daemon::http_token().await,
        Command::Webhooks { action } => cmd::webhooks::run(action).await,
        Command::Elicitations {
            action,
            session,
            all,
            json,
        } => cmd::elicitations::run(action, session, all, json).await,
    }
}

/// The SESSION argument of a command that takes one (where `HOST:SESSION` is resolved).
/// `wait` takes several and resolves each itself.
fn session_arg(command: &mut Command) -> Option<&mut String> {
    match command {
        Command::Attach { session, .. }
        | Command::Send { session, .. }
        | Command::Logs { session, .. }
        | Command::Interrupt { session, .. }
        | Command::Threads { session, .. }
        | Command::Rm { session, .. }
        | Command::Diff { session }
        | Command::Rename { session, .. }
        | Command::Fork { session, .. }
        | Command::Approve { session, .. }
        | Command::ToolResult { session, .. } => Some(session),
        _ => None,
    }
}

/// `tether logs S | head` should end quietly like any Unix tool, not panic on a closed pipe.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
}
