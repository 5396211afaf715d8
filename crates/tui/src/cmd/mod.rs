//! The CLI's commands, one file per command group; `main` routes each subcommand here.

pub mod agents;
pub mod approvals;
pub mod auth;
pub mod daemon;
pub mod deployments;
// MCP elicitation (issue 25)
pub mod doctor;
pub mod elicitations;
pub mod envs;
pub mod files;
pub mod fleet;
mod follow;
pub mod memory;
mod names;
mod outcome;
pub mod proxy;
pub mod sessions;
pub mod skills;
mod spec_file;
pub mod threads;
// webhooks (issue 20)
pub mod vaults;
pub mod webhooks;
pub mod worker;
pub mod workflows;
mod worktree;

use std::process::ExitCode;

use tether_proto::{ErrorBody, ErrorCode};

use crate::client::{self, Client, ClientError};

pub type CmdResult = Result<ExitCode, ClientError>;

/// Connects to this process's daemon, starting it if none runs.
async fn connect() -> Result<Client, ClientError> {
    Client::connect(&client::paths()).await
}

/// One line typed with echo off (a key or secret never shows on screen or in scrollback),
/// or the whole of stdin when it is not a terminal (`… | tether auth login`). `what` names it
/// in the prompt and in errors.
pub(crate) fn read_hidden(what: &str) -> Result<String, crate::client::ClientError> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        eprint!("{what} (input hidden, Enter to finish): ");
        let _ = std::io::stderr().flush();
        let saved = tcgetattr(&stdin).map_err(|e| usage(format!("terminal: {e}")))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(|e| usage(format!("terminal: {e}")))?;
        let read = stdin.lock().read_line(&mut line);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        read.map_err(|e| usage(format!("reading the {what}: {e}")))?;
    } else {
        std::io::Read::read_to_string(&mut stdin.lock(), &mut line)
            .map_err(|e| usage(format!("reading the {what} from stdin: {e}")))?;
    }
    Ok(line)
}

/// A usage mistake, reported like the daemon's `invalid_params` (exit code 2).
fn usage(message: String) -> ClientError {
    ClientError::Daemon(ErrorBody::new(ErrorCode::InvalidParams, message))
}
