//! The CLI's commands, one file per command group; `main` routes each subcommand here.

pub mod agents;
pub mod approvals;
pub mod auth;
pub mod daemon;
pub mod deployments;
pub mod doctor;
pub mod envs;
pub mod files;
pub mod fleet;
mod follow;
pub mod memory;
mod names;
mod outcome;
pub mod proxy;
pub mod sessions;
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

/// A usage mistake, reported like the daemon's `invalid_params` (exit code 2).
fn usage(message: String) -> ClientError {
    ClientError::Daemon(ErrorBody::new(ErrorCode::InvalidParams, message))
}
