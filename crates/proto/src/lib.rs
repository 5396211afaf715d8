//! tether wire protocol: the frames a client and `tetherd` exchange, the event types stored in a
//! session's log, typed error codes and NDJSON framing.
//!
//! serde only: no tokio, no I/O. Both the daemon and the clients import this crate and nothing
//! else is shared between them.

pub mod agent;
pub mod codec;
pub mod credentials;
pub mod deployment;
pub mod environment;
pub mod error;
pub mod event;
pub mod file;
pub mod frame;
pub mod memory;
pub mod method;
pub mod multiagent;
pub mod outcome;
pub mod paths;
pub mod schema;
pub mod session;
pub mod thread;
pub mod vault;
pub mod work;
pub mod workflow;
// webhooks (issue 20)
pub mod webhook;
// skills (issue 25)
pub mod skill;
// sessions.watch: the session list pushed as it changes (issue 20)
pub mod watch;
// MCP elicitation (issue 25)
pub mod elicitation;

pub use codec::{FrameDecoder, MAX_FRAME_BYTES, encode_frame};
pub use error::{ErrorBody, ErrorCode};
pub use event::{
    ConfirmationResult, ContentBlock, Delta, DeltaKind, Event, EventBody, ModelUsage, Permission,
    ProcessRecord, RetryStatus, RetryStatusKind, SessionErrorInfo, StopReason, ToolStatus,
    blocks_text,
};
pub use frame::{
    CaughtUp, ClientFrame, Hello, Outcome, Request, Response, Resync, ServerFrame, Snapshot,
    Welcome,
};
pub use method::{Call, Method};
pub use paths::Paths;
pub use session::{SessionInfo, SessionStatus, SessionUsage};

/// Protocol version. Bumped on any incompatible wire change; it is part of the socket name so
/// mismatched builds never meet.
pub const PROTOCOL_VERSION: u32 = 1;

/// The daemon's socket file name inside the runtime directory.
pub fn socket_file_name() -> String {
    format!("tetherd-v{PROTOCOL_VERSION}.sock")
}
