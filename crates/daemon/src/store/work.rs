//! Self-hosted environments' keys and work items: the rows and their SQL, run on the writer's
//! connection (inside `Store::write`) or a reader's. What the states and leases mean is the
//! workers room's business (`orchestration::workers`); this file only moves them.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::store::error::StoreError;

/// A stored work item: one session's claim on a worker of its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkRow {
    pub id: String,
    pub environment_id: String,
    pub session_id: String,
    /// `queued`, `starting`, `active`, `stopping` or `stopped` (hosted names).
    pub state: String,
    pub created_at: String,
    /// When a poll last handed it out (unix ms); a queued item polled longer ago than the
    /// poller's `reclaim_older_than_ms` may be handed out again.
    pub polled_at_ms: Option<i64>,
    /// The worker that polled it last (`Anthropic-Worker-ID`).
    pub worker_id: Option<String>,
    /// sha256 of the sessions token the last poll handed out.
    pub token_sha256: Option<String>,
    pub acknowledged_at: Option<String>,
    pub started_at: Option<String>,
    /// The value a heartbeat must echo (RFC 3339 ms); None before the first.
    pub latest_heartbeat_at: Option<String>,
    /// When the lease ends unless a heartbeat extends it (unix ms); set from the ack on.
    pub lease_expires_at_ms: Option<i64>,
    pub stop_requested_at: Option<String>,
    pub stopped_at: Option<String>,
    pub metadata: Value,
}

fn w(e: rusqlite::Error) -> StoreError {
    StoreError::Write(e.to_string())
}

const COLS: &str = "id, environment_id, session_id, state, created_at, polled_at_ms, worker_id, token_sha256, acknowledged_at, started_at, latest_heartbeat_at, lease_expires_at_ms, stop_requested_at, stopped_at, metadata";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkRow> {
    let metadata: String = r.get(14)?;
    Ok(WorkRow {
        id: r.get(0)?,
        environment_id: r.get(1)?,
        session_id: r.get(2)?,
        state: r.get(3)?,
        created_at: r.get(4)?,
        polled_at_ms: r.get(5)?,
        worker_id: r.get(6)?,
        token_sha256: r.get(7)?,
        acknowledged_at: r.get(8)?,
        started_at: r.get(9)?,
        latest_heartbeat_at: r.get(10)?,
        lease_expires_at_ms: r.get(11)?,
        stop_requested_at: r.get(12)?,
        stopped_at: r.get(13)?,
        metadata: serde_json::from_str(&metadata).unwrap_or(Value::Object(Default::default())),
    })
}

fn many(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<WorkRow>, StoreError> {
    let mut st = c.prepare_cached(sql)?;
    let rows = st.query_map(p, row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn insert(c: &Connection, r: &WorkRow) -> Result<(), StoreError> {
    c.execute(
        &format!("INSERT INTO work_items ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
        params![
            r.id,
            r.environment_id,
            r.session_id,
            r.state,
            r.created_at,
            r.polled_at_ms,
            r.worker_id,
            r.token_sha256,
            r.acknowledged_at,
            r.started_at,
            r.latest_heartbeat_at,
            r.lease_expires_at_ms,
            r.stop_requested_at,
            r.stopped_at,
            r.metadata.to_string()
        ],
    )
    .map_err(w)?;
    Ok(())
}

/// Writes every column but the id, environment, session and `created_at`.
pub fn update(c: &Connection, r: &WorkRow) -> Result<(), StoreError> {
    c.execute(
        "UPDATE work_items SET state = ?2, polled_at_ms = ?3, worker_id = ?4, token_sha256 = ?5, acknowledged_at = ?6, started_at = ?7, latest_heartbeat_at = ?8, lease_expires_at_ms = ?9, stop_requested_at = ?10, stopped_at = ?11, metadata = ?12 WHERE id = ?1",
        params![
            r.id,
            r.state,
            r.polled_at_ms,
            r.worker_id,
            r.token_sha256,
            r.acknowledged_at,
            r.started_at,
            r.latest_heartbeat_at,
            r.lease_expires_at_ms,
            r.stop_requested_at,
            r.stopped_at,
            r.metadata.to_string()
        ],
    )
    .map_err(w)?;
    Ok(())
}

pub fn get(c: &Connection, environment_id: &str, id: &str) -> Result<Option<WorkRow>, StoreError> {
    Ok(c.query_row(
        &format!("SELECT {COLS} FROM work_items WHERE id = ?1 AND environment_id = ?2"),
        params![id, environment_id],
        row,
    )
    .optional()?)
}

/// Each worker that ever held an item of `environment_id`, with the last time the queue heard
/// from it (its last heartbeat, else its acknowledgement): what `tether envs show` lists
/// after a restart, when the daemon's in-memory record of polls is gone.
pub fn workers_of(
    c: &Connection,
    environment_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT worker_id, MAX(COALESCE(latest_heartbeat_at, acknowledged_at, created_at)) \
         FROM work_items WHERE environment_id = ?1 AND worker_id IS NOT NULL GROUP BY worker_id",
    )?;
    let rows = stmt.query_map(params![environment_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The session's item that has not stopped, if any (there is at most one).
pub fn live_for_session(c: &Connection, session_id: &str) -> Result<Option<WorkRow>, StoreError> {
    Ok(many(
        c,
        &format!("SELECT {COLS} FROM work_items WHERE session_id = ?1 AND state != 'stopped' ORDER BY created_at, id LIMIT 1"),
        params![session_id],
    )?
    .pop())
}

/// The oldest queued item a poll may hand out now: never polled, or polled at or before
/// `reclaim_before_ms` and still not acknowledged.
pub fn next_queued(
    c: &Connection,
    environment_id: &str,
    reclaim_before_ms: i64,
) -> Result<Option<WorkRow>, StoreError> {
    Ok(many(
        c,
        &format!("SELECT {COLS} FROM work_items WHERE environment_id = ?1 AND state = 'queued' AND (polled_at_ms IS NULL OR polled_at_ms <= ?2) ORDER BY created_at, id LIMIT 1"),
        params![environment_id, reclaim_before_ms],
    )?
    .pop())
}

/// Every item that has not stopped (the lease timer's and the token cache's start).
pub fn live(c: &Connection) -> Result<Vec<WorkRow>, StoreError> {
    many(
        c,
        &format!("SELECT {COLS} FROM work_items WHERE state != 'stopped' ORDER BY created_at, id"),
        [],
    )
}

/// An environment's items, newest first.
pub fn list(c: &Connection, environment_id: &str) -> Result<Vec<WorkRow>, StoreError> {
    many(
        c,
        &format!(
            "SELECT {COLS} FROM work_items WHERE environment_id = ?1 ORDER BY created_at DESC, id DESC"
        ),
        params![environment_id],
    )
}

pub fn set_key(
    c: &Connection,
    environment_id: &str,
    key_sha256: &str,
    now: &str,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO environment_keys (environment_id, key_sha256, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (environment_id) DO UPDATE SET key_sha256 = ?2, created_at = ?3",
        params![environment_id, key_sha256, now],
    )
    .map_err(w)?;
    Ok(())
}

/// When the environment's key was made, if it has one.
pub fn key_created_at(c: &Connection, environment_id: &str) -> Result<Option<String>, StoreError> {
    Ok(c.query_row(
        "SELECT created_at FROM environment_keys WHERE environment_id = ?1",
        params![environment_id],
        |r| r.get(0),
    )
    .optional()?)
}

/// `(environment_id, key_sha256)` of every environment key.
pub fn keys(c: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut st = c.prepare_cached("SELECT environment_id, key_sha256 FROM environment_keys")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
