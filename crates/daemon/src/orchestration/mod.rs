//! The orchestration room: work that spans sessions or outlives a turn. Its modules (the
//! ones not here yet land with their issues):
//! - [`threads`]: several agents' threads working on one task, passing messages (a session's
//!   primary thread delegates through agent tools the session runs via
//!   `Services::agent_tools`, installed at start-up);
//! - [`workflows`]: task graphs (dependencies, checks, retries, checkpoints, fan-out) run
//!   on a session's threads;
//! - schedules: sessions started by time or event rather than by a client;
//! - memory: what agents keep across sessions;
//! - [`workers`]: self-hosted environments' work queues (tools run on worker machines).
//!
//! The dependency rule: orchestration drives sessions from above, as a client would. It may
//! use `runtime` (to create and find sessions), `session` (the requests in `session::ops`),
//! `resources`, `store` and the rooms below them; nothing of those imports it (a session
//! knows nothing of the thread or workflow it is part of: what it must know arrives as its
//! events or settings). Only the doors (`server`, `http`) and `daemon` call into it.
//!
//! Outcomes are not here: their evaluation cycle runs inside one session's turn (where the
//! turn would go idle), so they live in the session room (`session::outcome`,
//! `session::grader`).

pub mod memory;
pub mod schedules;
pub mod threads;
pub mod workers;
pub mod workflows;
