//! The CLI's commands; `main` routes each subcommand here.

pub mod agents;
pub mod auth;
pub mod envs;
pub mod proxy;
pub mod sessions;
