//! The session room: one live session and everything that acts on it. Its modules, lowest
//! first; each imports only from those above it in this list:
//! - [`state`]: the session's state as a pure fold over its events;
//! - [`permissions`]: what the pinned agent version says about tool calls;
//! - [`mcp`]: the MCP servers of the pinned agent;
//! - [`live`]: the live [`live::Session`]: its log appends, broadcast and turn handle;
//! - [`compaction`]: summarising the conversation when it outgrows the context window;
//! - [`turn`]: the agent loop of one turn;
//! - [`approvals`]: answers to the tool calls a turn waits on;
//! - [`ops`]: the requests on one session that both doors (socket and HTTP) handle the same way.
//!
//! Depends on `resources`, the infrastructure rooms and the foundations; never on `runtime`,
//! `orchestration` or the doors, which use it.

pub mod approvals;
pub mod compaction;
pub mod live;
pub mod mcp;
pub mod ops;
pub mod permissions;
pub mod state;
pub mod turn;
