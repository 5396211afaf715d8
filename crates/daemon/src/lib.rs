//! tetherd: owns agent sessions, their append-only event log and their tools, and serves
//! clients over a local socket.
//!
//! The rooms, lowest first; a module imports only from rooms above it in this list:
//! - foundations: [`ids`], [`crash`], [`private`], [`spool`], [`config`], [`admission`];
//! - infrastructure: [`provider`] (model APIs), [`net`] (network policy and proxy),
//!   [`sandbox`] (isolation), [`store`] (the durable log), [`tools`] (the built-in tools);
//! - [`resources`]: agents and environments, the stored things sessions are made from;
//! - [`session`]: one live session, its fold, its turn loop and the requests on it;
//! - [`runtime`]: every loaded session, and the operations on sessions as a whole;
//! - [`orchestration`]: work across sessions (multi-agent threads; workflows to come);
//! - the doors: [`server`] (local socket), [`http`] (the HTTP API), and [`daemon`] (start-up);
//! - [`worker`]: `tetherd worker`, a self-hosted environment's worker: a client of the HTTP
//!   API that runs tools with [`tools`] on its own machine (nothing imports it).

// The daemon logs through tracing; stdout/stderr may be /dev/null.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod admission;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod http;
pub mod ids;
pub mod net;
pub mod orchestration;
pub mod private;
pub mod provider;
pub mod resources;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod session;
pub mod spool;
pub mod store;
pub mod tools;
pub mod worker;
// webhooks (issue 20)
pub mod webhooks;
