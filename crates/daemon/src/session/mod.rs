//! The session room: one live session and everything that acts on it. Its modules, lowest
//! first; each imports only from those above it in this list:
//! - [`changes`]: the daemon-wide feed of session summaries that changed (`sessions.watch`);
//! - [`services`]: the daemon-wide services a session uses (log, config, providers, builds);
//! - [`state`]: the session's state as a pure fold over its events;
//! - [`events`]: the event bodies the modules below build (tool results, errors, span ends);
//! - [`permissions`]: what the pinned agent version says about tool calls;
//! - [`mcp`]: the MCP servers of the pinned agent;
//! - [`crosspost`]: what a child thread's appends copy into its primary's stream;
//! - [`live`]: the live [`live::Session`]: its log appends, broadcast, fields and turn handle;
//! - [`elicitation`]: MCP servers' questions to the user during a call, and their answers;
//! - [`model`]: the model calls: provider, request, streaming with retries;
//! - [`compaction`]: summarising the conversation when it outgrows the context window;
//! - [`grader`]: an outcome's grader (one judge's loop, its tools, the verdict of several);
//! - [`outcome`]: an outcome's evaluation cycle, run where a turn would go idle;
//! - [`turn`]: the agent loop of one turn, and starting it;
//! - [`approvals`]: answers to the tool calls a turn waits on;
//! - [`ops`]: the requests on one session that both doors (socket and HTTP) handle the same
//!   way, with their checks (writable, message, model and spending limit).
//!
//! Depends on `resources`, the infrastructure rooms and the foundations; never on `runtime`,
//! `orchestration` or the doors, which use it.

pub mod approvals;
pub mod changes;
pub mod compaction;
pub mod crosspost;
pub mod elicitation;
pub mod events;
pub mod grader;
pub mod live;
pub mod mcp;
pub mod model;
pub mod ops;
pub mod outcome;
pub mod permissions;
pub mod services;
pub mod state;
pub mod turn;
