//! What can go wrong with the event log, and how each failure reads on the wire.

use std::path::PathBuf;

use tether_proto::{ErrorBody, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the event log at {path} could not be opened: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the event log was written by a newer tether (schema {found}, this build knows {known}); upgrade tether"
    )]
    TooNew { found: i64, known: i64 },
    #[error("writing the event log failed: {0} (is the disk full or the database read-only?)")]
    Write(String),
    #[error("reading the event log failed: {0}")]
    Read(String),
    #[error("{0}")]
    Conflict(String),
    #[error("no session `{0}`")]
    NotFound(String),
    /// Not found, with the whole message (resources other than sessions).
    #[error("{0}")]
    Missing(String),
    #[error("the event log writer has stopped")]
    Closed,
    /// A request the stored data refuses (e.g. a roster naming an archived agent).
    #[error("{0}")]
    Invalid(String),
    /// A write refused for a reason of the resource's own (memory preconditions, paths...),
    /// answered as is; the transaction's writes are rolled back.
    #[error("{0}")]
    Refused(ErrorBody),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Read(e.to_string())
    }
}

impl From<StoreError> for ErrorBody {
    fn from(e: StoreError) -> Self {
        if let StoreError::Refused(body) = e {
            return body;
        }
        let code = match &e {
            StoreError::NotFound(_) | StoreError::Missing(_) => ErrorCode::NotFound,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::Invalid(_) => ErrorCode::InvalidParams,
            StoreError::Closed => ErrorCode::ShuttingDown,
            _ => ErrorCode::Storage,
        };
        ErrorBody::new(code, e.to_string())
    }
}
