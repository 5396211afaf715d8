//! tetherd: owns agent sessions, their append-only event log and their tools, and serves
//! clients over a local socket.

// The daemon logs through tracing; stdout/stderr may be /dev/null.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod admission;
pub mod agents;
pub mod approvals;
pub mod cgroup;
pub mod compaction;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod envbuild;
pub mod environments;
pub mod harness;
pub mod http;
pub mod ids;
pub mod landlock_rules;
pub mod mcp;
pub mod net;
pub mod ops;
pub mod permissions;
pub mod private;
pub mod provider;
pub mod runtime;
pub mod sandbox;
pub mod sandbox_support;
pub mod seccomp;
pub mod server;
pub mod session;
pub mod spool;
pub mod state;
pub mod store;
pub mod tools;
