//! Typed error codes shared by the wire protocol and the CLI.

use serde::{Deserialize, Serialize};

/// Every error the daemon can answer with. Clients branch on the code, people read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Client and daemon speak different protocol versions.
    ProtocolMismatch,
    /// The first frame was not `hello`, or a request came before the handshake.
    HandshakeRequired,
    /// A frame that is not valid JSON or not a known frame shape.
    MalformedFrame,
    /// A frame longer than [`crate::MAX_FRAME_BYTES`].
    FrameTooLarge,
    /// A frame that is not valid UTF-8.
    InvalidUtf8,
    UnknownMethod,
    InvalidParams,
    NotFound,
    /// A session reference (id prefix or name) matches more than one session.
    Ambiguous,
    /// The session is archived and takes no more input.
    Archived,
    /// The connection attached read-only and tried to change the session.
    ReadOnly,
    /// The request conflicts with the current state (e.g. name already taken).
    Conflict,
    /// The feature exists in the protocol but this daemon does not provide it yet.
    NotImplemented,
    /// The event log could not be written (disk full, unwritable database, ...).
    Storage,
    /// The daemon is shutting down.
    ShuttingDown,
    /// The connection was refused (e.g. a peer with another uid).
    PermissionDenied,
    /// The daemon holds as many connections as it allows; this one was refused or, if it had
    /// not said hello yet, closed to make room.
    TooManyConnections,
    /// No `hello` arrived within the daemon's handshake timeout.
    HandshakeTimeout,
    Internal,
    /// A memory's content no longer has the hash the write expected (someone else wrote it).
    MemoryPreconditionFailed,
    /// Another memory of the store already has that path.
    MemoryPathConflict,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ProtocolMismatch => "protocol_mismatch",
            ErrorCode::HandshakeRequired => "handshake_required",
            ErrorCode::MalformedFrame => "malformed_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Ambiguous => "ambiguous",
            ErrorCode::Archived => "archived",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::Storage => "storage",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::HandshakeTimeout => "handshake_timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::MemoryPreconditionFailed => "memory_precondition_failed",
            ErrorCode::MemoryPathConflict => "memory_path_conflict",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{code, message}`: the error half of a response, or a connection-level error frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} [{code}]")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}
