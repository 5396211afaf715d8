//! The durable session log: SQLite in WAL mode with `synchronous=FULL`.
//!
//! One writer thread owns the only write connection and group-commits: it drains every queued
//! operation into one transaction, commits once, then answers each caller. An event is
//! acknowledged only after its transaction commits. Reads use their own connections.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tether_proto::{Event, EventBody, SessionStatus, SessionUsage, StopReason};

use tokio::sync::oneshot;

use crate::ids;

/// Schema version stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 5;
/// Most operations folded into one transaction.
const MAX_BATCH: usize = 4096;
/// Unindexed events allowed before the writer folds them into `events_by_session`: bounds
/// the tail a read has to scan, while each catch-up touches a session's index leaf once.
const INDEX_EVERY: u64 = 4096;
/// Longest a batch waits for more callers when the previous batch was larger. A lone caller
/// never waits: the previous batch was 1, so the target is 0.
const GATHER_WAIT: Duration = Duration::from_micros(500);

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
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Read(e.to_string())
    }
}

/// A stored session row (everything but the events).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub name: Option<String>,
    pub title: Option<String>,
    pub model: String,
    pub system: Option<String>,
    pub workspace: String,
    /// The workspace was created by tether (and is removed with the session).
    pub workspace_owned: bool,
    pub max_turns: u32,
    pub status: SessionStatus,
    pub stop_reason: Option<StopReason>,
    pub usage: SessionUsage,
    pub last_seq: u64,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
    pub forked_from: Option<String>,
    /// The pinned agent version (None for sessions older than agents).
    pub agent: Option<(String, u32)>,
    /// Built-in tools offered to the model; None offers all of them.
    pub tools: Option<Vec<String>>,
    /// Hosted `metadata`: up to 16 string pairs.
    pub metadata: BTreeMap<String, String>,
    /// The environment (id) the session was created in; None for older sessions.
    pub environment: Option<String>,
    /// Hash of the environment layer the session mounts; None: no layer.
    pub env_layer: Option<String>,
    /// The environment's networking when the session was created (pinned like the layer);
    /// None for sessions older than that.
    pub networking: Option<tether_proto::environment::Networking>,
}

impl SessionRow {
    /// A new, idle session with no events yet.
    pub fn new(id: String, model: String, workspace: String, max_turns: u32) -> SessionRow {
        let now = ids::now_rfc3339();
        SessionRow {
            id,
            name: None,
            title: None,
            model,
            system: None,
            workspace,
            workspace_owned: false,
            max_turns,
            status: SessionStatus::Idle,
            stop_reason: None,
            usage: SessionUsage::default(),
            last_seq: 0,
            created_at: now.clone(),
            updated_at: now,
            archived_at: None,
            forked_from: None,
            agent: None,
            tools: None,
            metadata: BTreeMap::new(),
            environment: None,
            env_layer: None,
            networking: None,
        }
    }
}

/// Filters and position of one page of `Store::page_sessions`.
#[derive(Debug, Clone, Default)]
pub struct SessionPageQuery {
    pub include_archived: bool,
    pub statuses: Vec<SessionStatus>,
    pub agent_id: Option<String>,
    pub agent_version: Option<u32>,
    pub created_gt: Option<String>,
    pub created_gte: Option<String>,
    pub created_lt: Option<String>,
    pub created_lte: Option<String>,
    /// Newest first.
    pub desc: bool,
    /// Start next to this `(created_at, id)`: after it, or before it when `backward`.
    pub after: Option<(String, String)>,
    /// Read the page that precedes `after` in the listing's order (a `prev_page`).
    pub backward: bool,
    pub limit: u32,
}

/// Summary columns updated in the same transaction as the events that change them.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub status: SessionStatus,
    pub stop_reason: Option<StopReason>,
    pub usage: SessionUsage,
}

/// A write run by the writer thread on its connection.
type WriteFn = Box<dyn FnOnce(&Connection) -> Result<(), StoreError> + Send>;

enum Op {
    Append {
        session_id: String,
        bodies: Vec<EventBody>,
        summary: Option<SessionSummary>,
        reply: oneshot::Sender<Result<Vec<Event>, StoreError>>,
    },
    CreateSession {
        row: Box<SessionRow>,
        copy_events_from: Option<String>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    SetArchived {
        session_id: String,
        at: Option<String>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    DeleteSession {
        session_id: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A small read-modify-write (agents) run in the writer's transaction, in a savepoint.
    Exec {
        f: WriteFn,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Fold the WAL back into the database file (clean shutdown: faster next start).
    Checkpoint {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// Cheap to clone; every clone talks to the same writer thread.
#[derive(Clone)]
pub struct Store {
    writer: mpsc::Sender<Op>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
}

fn open_conn(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(open_err)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // Checkpoint every ~64 MiB of WAL instead of 4 MiB: a leaf rewritten by many commits is
        // copied back once, not once per 1000 frames (measured: +25% append throughput).
        conn.pragma_update(None, "wal_autocheckpoint", 16384)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(open_err)?;
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                name TEXT UNIQUE,
                title TEXT,
                model TEXT NOT NULL,
                system TEXT,
                workspace TEXT NOT NULL,
                workspace_owned INTEGER NOT NULL,
                max_turns INTEGER NOT NULL,
                status TEXT NOT NULL,
                stop_reason TEXT,
                usage TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                archived_at TEXT,
                forked_from TEXT,
                -- as of the last index catch-up; reads add the unindexed tail
                last_seq INTEGER NOT NULL DEFAULT 0,
                last_event_at TEXT
             );
             -- Append-ordered: a commit touches the table's last pages only, however many
             -- sessions it carries.
             CREATE TABLE events (
                rowid INTEGER PRIMARY KEY,
                session_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                id TEXT NOT NULL,
                type TEXT NOT NULL,
                processed_at TEXT NOT NULL,
                body TEXT NOT NULL
             );
             -- (session, seq) -> row for every event up to index_state.last_row, filled in bulk
             -- by the writer; the few rows after it are found by scanning the tail.
             CREATE TABLE events_by_session (
                session_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                row INTEGER NOT NULL,
                PRIMARY KEY (session_id, seq)
             ) WITHOUT ROWID;
             CREATE TABLE index_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                last_row INTEGER NOT NULL
             );
             INSERT INTO index_state (id, last_row) VALUES (1, 0);
             PRAGMA user_version = 1;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 2 {
        // Agents: one row per (id, version), never updated except `archived_at`. Sessions pin
        // a version and keep the built-in tools it enabled (NULL: all of them).
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE agents (
                id TEXT NOT NULL,
                version INTEGER NOT NULL,
                name TEXT NOT NULL,
                spec TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                archived_at TEXT,
                PRIMARY KEY (id, version)
             );
             CREATE INDEX agents_by_name ON agents (name);
             ALTER TABLE sessions ADD COLUMN agent_id TEXT;
             ALTER TABLE sessions ADD COLUMN agent_version INTEGER;
             ALTER TABLE sessions ADD COLUMN tools TEXT;
             PRAGMA user_version = 2;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 3 {
        // Environments: one row each, `spec` the JSON body. Sessions record the environment
        // and the layer (config hash) they were created with; NULL: no layer.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE environments (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                spec TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                archived_at TEXT
             );
             CREATE INDEX environments_by_name ON environments (name);
             ALTER TABLE sessions ADD COLUMN environment_id TEXT;
             ALTER TABLE sessions ADD COLUMN env_layer TEXT;
             PRAGMA user_version = 3;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 4 {
        // Session metadata (hosted `metadata`, a JSON object of strings) and the order the
        // HTTP API pages sessions in.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE sessions ADD COLUMN metadata TEXT;
             CREATE INDEX sessions_by_created ON sessions (created_at, id);
             PRAGMA user_version = 4;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 5 {
        // The environment networking a session was created with (JSON), pinned like its
        // layer; NULL for older sessions (they keep following their environment).
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE sessions ADD COLUMN networking TEXT;
             PRAGMA user_version = 5;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating and migrating if needed) the log at `path` and starts the writer thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |e: std::io::Error| StoreError::Open {
            path: path.to_path_buf(),
            source: rusqlite::Error::InvalidPath(PathBuf::from(e.to_string())),
        };
        if let Some(dir) = path.parent() {
            crate::private::create_dir(dir).map_err(open_err)?;
        }
        // Made 0600 before SQLite opens it: SQLite gives its -wal and -shm the database's mode.
        crate::private::file_options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(open_err)?;
        let conn = open_conn(path, false)?;
        migrate(&conn)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("tether-store-writer".into())
            .spawn(move || match Writer::new(conn) {
                Ok(w) => w.run(rx),
                Err(e) => tracing::error!(error = %e, "the event log writer could not start"),
            })
            .map_err(|e| StoreError::Write(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            writer: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            path: path.to_path_buf(),
        })
    }

    /// Hands an op to the writer and waits for its commit.
    async fn submit<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(op(reply))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Appends events to a session's log; returns them with their seq once committed.
    pub async fn append(
        &self,
        session_id: &str,
        bodies: Vec<EventBody>,
        summary: Option<SessionSummary>,
    ) -> Result<Vec<Event>, StoreError> {
        self.submit(|reply| Op::Append {
            session_id: session_id.to_string(),
            bodies,
            summary,
            reply,
        })
        .await
    }

    /// Creates a session; with `copy_events_from`, its log starts as a copy of that session's.
    pub async fn create_session(
        &self,
        row: SessionRow,
        copy_events_from: Option<String>,
    ) -> Result<(), StoreError> {
        self.submit(|reply| Op::CreateSession {
            row: Box::new(row),
            copy_events_from,
            reply,
        })
        .await
    }

    pub async fn set_archived(
        &self,
        session_id: &str,
        at: Option<String>,
    ) -> Result<(), StoreError> {
        self.submit(|reply| Op::SetArchived {
            session_id: session_id.to_string(),
            at,
            reply,
        })
        .await
    }

    pub async fn delete_session(&self, session_id: &str) -> Result<(), StoreError> {
        self.submit(|reply| Op::DeleteSession {
            session_id: session_id.to_string(),
            reply,
        })
        .await
    }

    /// Runs `f` on the write connection inside the writer's transaction; its result is
    /// returned once that transaction commits. An error rolls back only `f`'s writes.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.submit(|reply| Op::Exec {
            f: Box::new(move |c| {
                let v = f(c)?;
                if let Ok(mut s) = out.lock() {
                    *s = Some(v);
                }
                Ok(())
            }),
            reply,
        })
        .await?;
        let v = slot.lock().ok().and_then(|mut s| s.take());
        v.ok_or_else(|| StoreError::Write("internal: the write produced no result".into()))
    }

    /// Moves the WAL's content into the database file and truncates the WAL.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if let Ok(mut pool) = self.readers.lock() {
            // Open readers would pin the WAL.
            pool.clear();
        }
        self.submit(|reply| Op::Checkpoint { reply }).await
    }

    /// Runs `f` on a pooled read connection in the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| StoreError::Read(format!("reader task failed: {e}")))?
    }

    /// Succeeds when `table` has a row with exactly this id, else [`StoreError::Missing`] with
    /// `missing`. For HTTP paths, which take ids only (names and prefixes are conveniences of
    /// the CLI and the socket protocol).
    pub async fn require_exact_id(
        &self,
        table: &'static str,
        id: &str,
        missing: String,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            let found: Option<i64> = c
                .prepare_cached(&format!("SELECT 1 FROM {table} WHERE id = ?1 LIMIT 1"))?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            found.map(|_| ()).ok_or(StoreError::Missing(missing))
        })
        .await
    }

    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().ok().and_then(|mut p| p.pop());
        let conn = match pooled {
            Some(c) => c,
            None => open_conn(&self.path, true)?,
        };
        // One snapshot for every statement of the closure (index and tail must agree).
        conn.execute_batch("BEGIN")
            .map_err(|e| StoreError::Read(e.to_string()))?;
        let out = f(&conn);
        let _ = conn.execute_batch("COMMIT");
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < 4
        {
            pool.push(conn);
        }
        out
    }

    pub async fn list_sessions(
        &self,
        include_archived: bool,
    ) -> Result<Vec<SessionRow>, StoreError> {
        self.read(move |c| queries::list_sessions(c, include_archived))
            .await
    }

    pub async fn get_session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let id = id.to_string();
        self.read(move |c| queries::get_session(c, &id)).await
    }

    /// One page of sessions in creation order (keyset paging on `(created_at, id)`), and
    /// whether more rows lie beyond it in the direction read.
    pub async fn page_sessions(
        &self,
        q: SessionPageQuery,
    ) -> Result<(Vec<SessionRow>, bool), StoreError> {
        self.read(move |c| queries::page_sessions(c, &q)).await
    }

    /// Sets a session's title and metadata columns (the HTTP API's session update).
    pub async fn set_session_fields(
        &self,
        session_id: &str,
        title: Option<String>,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let id = session_id.to_string();
        self.write(move |c| {
            let meta = (!metadata.is_empty())
                .then(|| serde_json::to_string(&metadata).ok())
                .flatten();
            let n = c
                .execute(
                    "UPDATE sessions SET title = ?2, metadata = ?3 WHERE id = ?1",
                    params![id, title, meta],
                )
                .map_err(|e| StoreError::Write(e.to_string()))?;
            if n == 0 {
                return Err(StoreError::NotFound(id));
            }
            Ok(())
        })
        .await
    }

    /// Sets a session's model column after a `session.updated` switched it, so listings of
    /// sessions not loaded in memory show the model the session now uses.
    pub async fn set_session_model(
        &self,
        session_id: &str,
        model: String,
    ) -> Result<(), StoreError> {
        let id = session_id.to_string();
        self.write(move |c| {
            c.execute(
                "UPDATE sessions SET model = ?2 WHERE id = ?1",
                params![id, model],
            )
            .map_err(|e| StoreError::Write(e.to_string()))?;
            Ok(())
        })
        .await
    }

    /// Renames a session; a name another session has is a conflict.
    pub async fn set_session_name(&self, session_id: &str, name: String) -> Result<(), StoreError> {
        let id = session_id.to_string();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE sessions SET name = ?2 WHERE id = ?1",
                    params![id, name],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        StoreError::Conflict(format!(
                            "a session named `{name}` already exists; pick another name"
                        ))
                    }
                    e => StoreError::Write(e.to_string()),
                })?;
            if n == 0 {
                return Err(StoreError::NotFound(id));
            }
            Ok(())
        })
        .await
    }

    /// Events with `after < seq <= before`, ascending or descending, at most `limit`.
    pub async fn read_events(
        &self,
        session_id: &str,
        after: u64,
        before: Option<u64>,
        limit: u32,
        descending: bool,
    ) -> Result<Vec<Event>, StoreError> {
        let id = session_id.to_string();
        self.read(move |c| queries::read_events(c, &id, after, before, limit, descending))
            .await
    }

    /// Events older than `before` whose text contains `query` (ASCII case-insensitive), newest
    /// first, at most `limit`: the log is walked backwards in chunks on the reader thread.
    pub async fn search_events(
        &self,
        session_id: &str,
        query: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let id = session_id.to_string();
        let needle = query.to_ascii_lowercase();
        self.read(move |c| {
            const CHUNK: u32 = 1000;
            let mut out = Vec::new();
            let mut before = before;
            loop {
                let chunk = queries::read_events(c, &id, 0, before, CHUNK, true)?;
                let Some(last) = chunk.last() else {
                    return Ok(out);
                };
                before = Some(last.seq);
                let full = chunk.len() as u32 == CHUNK;
                for e in chunk {
                    if e.body.search_text().to_ascii_lowercase().contains(&needle) {
                        out.push(e);
                        if out.len() as u32 >= limit {
                            return Ok(out);
                        }
                    }
                }
                if !full {
                    return Ok(out);
                }
            }
        })
        .await
    }

    /// Resolves an id, a name or a unique id prefix to session ids (0, 1 or several matches).
    pub async fn resolve(&self, reference: &str) -> Result<Vec<String>, StoreError> {
        let r = reference.to_string();
        self.read(move |c| queries::resolve(c, &r)).await
    }
}

pub mod queries {
    //! Read-side SQL, usable on any connection.

    use super::*;

    /// A resource reference (agents, environments): an exact id (`id_sql` with `?1` finds it),
    /// else the name of a live resource, else the name of an archived one (`by_name(c, name,
    /// archived_too)`); `missing` says what to do when nothing matches.
    pub fn resolve_id_or_name(
        c: &Connection,
        reference: &str,
        id_sql: &str,
        by_name: impl Fn(&Connection, &str, bool) -> Result<Option<String>, StoreError>,
        missing: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        let by_id: Option<String> = c
            .prepare_cached(id_sql)?
            .query_row([reference], |r| r.get(0))
            .optional()?;
        if let Some(id) = by_id {
            return Ok(id);
        }
        if let Some(id) = by_name(c, reference, false)? {
            return Ok(id);
        }
        by_name(c, reference, true)?.ok_or_else(|| StoreError::Missing(missing()))
    }

    const SESSION_COLS: &str = "s.id, s.name, s.title, s.model, s.system, s.workspace, s.workspace_owned, s.max_turns, s.status, s.stop_reason, s.usage, \
        s.last_seq, s.created_at, MAX(s.updated_at, COALESCE(s.last_event_at, '')), s.archived_at, s.forked_from, s.agent_id, s.agent_version, s.tools, s.environment_id, s.env_layer, s.metadata, s.networking";

    fn row_to_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
        let status: String = r.get(8)?;
        let stop: Option<String> = r.get(9)?;
        let usage: String = r.get(10)?;
        Ok(SessionRow {
            id: r.get(0)?,
            name: r.get(1)?,
            title: r.get(2)?,
            model: r.get(3)?,
            system: r.get(4)?,
            workspace: r.get(5)?,
            workspace_owned: r.get(6)?,
            max_turns: r.get(7)?,
            status: serde_json::from_value(serde_json::Value::String(status))
                .unwrap_or(SessionStatus::Idle),
            stop_reason: stop.and_then(|s| serde_json::from_str(&s).ok()),
            usage: serde_json::from_str(&usage).unwrap_or_default(),
            last_seq: r.get::<_, i64>(11)? as u64,
            created_at: r.get(12)?,
            updated_at: r.get(13)?,
            archived_at: r.get(14)?,
            forked_from: r.get(15)?,
            agent: match (
                r.get::<_, Option<String>>(16)?,
                r.get::<_, Option<u32>>(17)?,
            ) {
                (Some(id), Some(v)) => Some((id, v)),
                _ => None,
            },
            tools: r
                .get::<_, Option<String>>(18)?
                .and_then(|t| serde_json::from_str(&t).ok()),
            environment: r.get(19)?,
            env_layer: r.get(20)?,
            metadata: r
                .get::<_, Option<String>>(21)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
            networking: r
                .get::<_, Option<String>>(22)?
                .and_then(|t| serde_json::from_str(&t).ok()),
        })
    }

    /// Rows after this one are not in `events_by_session` yet.
    pub fn last_indexed_row(c: &Connection) -> Result<i64, StoreError> {
        Ok(
            c.prepare_cached("SELECT last_row FROM index_state WHERE id = 1")?
                .query_row([], |r| r.get(0))?,
        )
    }

    /// Newest seq and event time per session among the unindexed tail.
    fn tail_stats(
        c: &Connection,
        session: Option<&str>,
    ) -> Result<HashMap<String, (u64, String)>, StoreError> {
        let last = last_indexed_row(c)?;
        let mut st = c.prepare_cached(
            "SELECT session_id, MAX(seq), MAX(processed_at) FROM events WHERE rowid > ?1 AND (?2 IS NULL OR session_id = ?2) GROUP BY session_id",
        )?;
        let rows = st.query_map(params![last, session], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (id, seq, at) = row?;
            out.insert(id, (seq, at));
        }
        Ok(out)
    }

    fn with_tail(mut row: SessionRow, tail: &HashMap<String, (u64, String)>) -> SessionRow {
        if let Some((seq, at)) = tail.get(&row.id) {
            row.last_seq = row.last_seq.max(*seq);
            if *at > row.updated_at {
                row.updated_at = at.clone();
            }
        }
        row
    }

    pub fn list_sessions(
        c: &Connection,
        include_archived: bool,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions s {} ORDER BY s.created_at, s.id",
            if include_archived {
                ""
            } else {
                "WHERE s.archived_at IS NULL"
            }
        );
        let tail = tail_stats(c, None)?;
        let mut st = c.prepare_cached(&sql)?;
        let rows = st.query_map([], row_to_session)?;
        rows.map(|r| Ok(with_tail(r?, &tail))).collect()
    }

    pub fn page_sessions(
        c: &Connection,
        q: &SessionPageQuery,
    ) -> Result<(Vec<SessionRow>, bool), StoreError> {
        let mut sql = format!("SELECT {SESSION_COLS} FROM sessions s WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if !q.include_archived {
            sql.push_str(" AND s.archived_at IS NULL");
        }
        if !q.statuses.is_empty() {
            let list: Vec<String> = q
                .statuses
                .iter()
                .map(|st| format!("'{}'", st.as_str()))
                .collect();
            sql.push_str(&format!(" AND s.status IN ({})", list.join(",")));
        }
        if let Some(a) = &q.agent_id {
            arg(&mut sql, " AND s.agent_id = ?", a.clone().into());
        }
        if let Some(v) = q.agent_version {
            arg(&mut sql, " AND s.agent_version = ?", i64::from(v).into());
        }
        for (op, bound) in [
            (">", &q.created_gt),
            (">=", &q.created_gte),
            ("<", &q.created_lt),
            ("<=", &q.created_lte),
        ] {
            if let Some(b) = bound {
                arg(
                    &mut sql,
                    &format!(" AND s.created_at {op} ?"),
                    b.clone().into(),
                );
            }
        }
        // Reading towards newer rows: ascending, or a descending listing's previous page.
        let towards_newer = q.desc == q.backward;
        if let Some((at, id)) = &q.after {
            let op = if towards_newer { ">" } else { "<" };
            args.push(at.clone().into());
            args.push(id.clone().into());
            let (a, b) = (args.len() - 1, args.len());
            sql.push_str(&format!(" AND (s.created_at, s.id) {op} (?{a}, ?{b})"));
        }
        let dir = if towards_newer { "ASC" } else { "DESC" };
        sql.push_str(&format!(
            " ORDER BY s.created_at {dir}, s.id {dir} LIMIT {}",
            q.limit + 1
        ));
        let tail = tail_stats(c, None)?;
        let mut st = c.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), row_to_session)?;
        let mut out = rows
            .map(|r| Ok(with_tail(r?, &tail)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let more = out.len() > q.limit as usize;
        out.truncate(q.limit as usize);
        if q.backward {
            out.reverse();
        }
        Ok((out, more))
    }

    pub fn get_session(c: &Connection, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLS} FROM sessions s WHERE s.id = ?1");
        let row = c
            .prepare_cached(&sql)?
            .query_row([id], row_to_session)
            .optional()?;
        match row {
            Some(r) => Ok(Some(with_tail(r, &tail_stats(c, Some(id))?))),
            None => Ok(None),
        }
    }

    /// Newest seq of a session (0 if it has no events).
    pub fn max_seq(c: &Connection, session_id: &str) -> Result<u64, StoreError> {
        let last = last_indexed_row(c)?;
        let indexed: i64 = c
            .prepare_cached(
                "SELECT COALESCE(MAX(seq), 0) FROM events_by_session WHERE session_id = ?1",
            )?
            .query_row([session_id], |r| r.get(0))?;
        let tail: i64 = c
            .prepare_cached(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE rowid > ?1 AND session_id = ?2",
            )?
            .query_row(params![last, session_id], |r| r.get(0))?;
        Ok(indexed.max(tail) as u64)
    }

    /// Events with `after < seq < before`. A session's indexed events all precede its tail
    /// events (both grow with rowid), so the two parts concatenate in seq order.
    pub fn read_events(
        c: &Connection,
        session_id: &str,
        after: u64,
        before: Option<u64>,
        limit: u32,
        descending: bool,
    ) -> Result<Vec<Event>, StoreError> {
        let last = last_indexed_row(c)?;
        let before = before.map(|b| b as i64).unwrap_or(i64::MAX);
        let (indexed_sql, tail_sql) = if descending {
            (
                "SELECT e.body FROM events_by_session i JOIN events e ON e.rowid = i.row WHERE i.session_id = ?1 AND i.seq > ?2 AND i.seq < ?3 ORDER BY i.seq DESC LIMIT ?4",
                "SELECT body FROM events WHERE rowid > ?5 AND session_id = ?1 AND seq > ?2 AND seq < ?3 ORDER BY rowid DESC LIMIT ?4",
            )
        } else {
            (
                "SELECT e.body FROM events_by_session i JOIN events e ON e.rowid = i.row WHERE i.session_id = ?1 AND i.seq > ?2 AND i.seq < ?3 ORDER BY i.seq ASC LIMIT ?4",
                "SELECT body FROM events WHERE rowid > ?5 AND session_id = ?1 AND seq > ?2 AND seq < ?3 ORDER BY rowid ASC LIMIT ?4",
            )
        };
        let parts: [(&str, bool); 2] = if descending {
            [(tail_sql, true), (indexed_sql, false)]
        } else {
            [(indexed_sql, false), (tail_sql, true)]
        };
        let mut out = Vec::new();
        for (sql, is_tail) in parts {
            let want = i64::from(limit) - out.len() as i64;
            if want <= 0 {
                break;
            }
            let mut st = c.prepare_cached(sql)?;
            let mut rows = if is_tail {
                st.query(params![session_id, after as i64, before, want, last])?
            } else {
                st.query(params![session_id, after as i64, before, want])?
            };
            while let Some(r) = rows.next()? {
                let body: String = r.get(0)?;
                let ev: Event = serde_json::from_str(&body)
                    .map_err(|e| StoreError::Read(format!("corrupt event in {session_id}: {e}")))?;
                out.push(ev);
            }
        }
        Ok(out)
    }

    pub fn resolve(c: &Connection, reference: &str) -> Result<Vec<String>, StoreError> {
        let exact: Option<String> = c
            .prepare_cached("SELECT id FROM sessions WHERE id = ?1 OR name = ?1")?
            .query_row([reference], |r| r.get(0))
            .optional()?;
        if let Some(id) = exact {
            return Ok(vec![id]);
        }
        // Prefix match on ids; escape LIKE wildcards so user text is literal.
        let escaped = reference
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let mut st = c.prepare_cached(
            "SELECT id FROM sessions WHERE id LIKE ?1 ESCAPE '\\' OR id LIKE ?2 ESCAPE '\\' ORDER BY id LIMIT 10",
        )?;
        let rows = st.query_map(
            params![format!("{escaped}%"), format!("sesn\\_{escaped}%")],
            |r| r.get::<_, String>(0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The single writer: owns the write connection and a cache of each session's last seq.
struct Writer {
    conn: Connection,
    last_seq: HashMap<String, u64>,
    /// Undo log for `last_seq` while a transaction is open (restored on rollback).
    undo: Vec<(String, Option<u64>)>,
    /// Summary columns of the open transaction that changed, one UPDATE per session.
    dirty: HashMap<String, (SessionSummary, String)>,
    /// Last summary written per session: most events don't change it, so no row write.
    written: HashMap<String, SessionSummary>,
    /// Events after `index_state.last_row`.
    unindexed: u64,
    /// `processed_at` of every event in the open transaction.
    batch_now: String,
}

enum Reply {
    Events(oneshot::Sender<Result<Vec<Event>, StoreError>>, Vec<Event>),
    Unit(oneshot::Sender<Result<(), StoreError>>),
    Failed(Failed),
}

enum Failed {
    Events(oneshot::Sender<Result<Vec<Event>, StoreError>>, StoreError),
    Unit(oneshot::Sender<Result<(), StoreError>>, StoreError),
}

impl Reply {
    /// Answers the caller: success only if the transaction committed.
    fn send(self, committed: Result<(), &str>) {
        match (self, committed) {
            (Reply::Events(tx, evs), Ok(())) => {
                let _ = tx.send(Ok(evs));
            }
            (Reply::Unit(tx), Ok(())) => {
                let _ = tx.send(Ok(()));
            }
            (Reply::Events(tx, _), Err(msg)) => {
                let _ = tx.send(Err(StoreError::Write(msg.to_string())));
            }
            (Reply::Unit(tx), Err(msg)) => {
                let _ = tx.send(Err(StoreError::Write(msg.to_string())));
            }
            (Reply::Failed(f), _) => f.send(),
        }
    }
}

impl Writer {
    fn new(conn: Connection) -> Result<Self, StoreError> {
        let last = queries::last_indexed_row(&conn)?;
        let unindexed: i64 = conn.query_row(
            "SELECT COUNT(*) FROM events WHERE rowid > ?1",
            [last],
            |r| r.get(0),
        )?;
        let mut w = Writer {
            conn,
            last_seq: HashMap::new(),
            undo: Vec::new(),
            dirty: HashMap::new(),
            written: HashMap::new(),
            unindexed: unindexed as u64,
            batch_now: ids::now_rfc3339(),
        };
        if w.unindexed > 0 {
            // Start with an empty tail (e.g. after a crash).
            w.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| StoreError::Write(e.to_string()))?;
            match w.catch_up_index() {
                Ok(()) => w
                    .conn
                    .execute_batch("COMMIT")
                    .map_err(|e| StoreError::Write(e.to_string()))?,
                Err(e) => {
                    let _ = w.conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
        Ok(w)
    }

    /// Folds the unindexed tail into `events_by_session` and the sessions' last_seq, inside
    /// the caller's transaction. Sorted bulk inserts: one leaf write per session, not per event.
    fn catch_up_index(&mut self) -> Result<(), StoreError> {
        let last = queries::last_indexed_row(&self.conn)?;
        let w = |e: rusqlite::Error| StoreError::Write(e.to_string());
        self.conn
            .prepare_cached(
                "INSERT INTO events_by_session (session_id, seq, row) SELECT session_id, seq, rowid FROM events WHERE rowid > ?1 ORDER BY session_id, seq",
            )?
            .execute([last])
            .map_err(w)?;
        self.conn
            .prepare_cached(
                "UPDATE sessions SET last_seq = t.m, last_event_at = t.at FROM (SELECT session_id, MAX(seq) AS m, MAX(processed_at) AS at FROM events WHERE rowid > ?1 GROUP BY session_id) AS t WHERE sessions.id = t.session_id",
            )?
            .execute([last])
            .map_err(w)?;
        self.conn
            .prepare_cached(
                "UPDATE index_state SET last_row = (SELECT COALESCE(MAX(rowid), ?1) FROM events) WHERE id = 1",
            )?
            .execute([last])
            .map_err(w)?;
        self.unindexed = 0;
        Ok(())
    }

    fn run(mut self, rx: mpsc::Receiver<Op>) {
        // Size of the previous batch: under concurrent load the callers it answered come back
        // within microseconds, and waiting briefly for them halves the number of fsyncs.
        let mut last_batch = 0usize;
        while let Ok(first) = rx.recv() {
            let mut batch = Vec::new();
            let mut checkpoint = None;
            let target = last_batch.min(MAX_BATCH);
            let deadline = Instant::now() + GATHER_WAIT;
            let mut next = Some(first);
            while let Some(op) = next.take() {
                match op {
                    // Runs after the batch commits, outside any transaction.
                    Op::Checkpoint { reply } => {
                        checkpoint = Some(reply);
                        break;
                    }
                    op => batch.push(op),
                }
                if batch.len() >= MAX_BATCH {
                    break;
                }
                next = rx.try_recv().ok();
                if next.is_none() && batch.len() < target {
                    let left = deadline.saturating_duration_since(Instant::now());
                    next = rx.recv_timeout(left).ok();
                }
            }
            last_batch = batch.len();
            if !batch.is_empty() {
                self.commit_batch(batch);
            }
            if let Some(reply) = checkpoint {
                let r = self
                    .conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(|e| StoreError::Write(e.to_string()));
                let _ = reply.send(r);
            }
        }
        tracing::debug!("store writer stopped");
    }

    fn set_seq(&mut self, session_id: &str, seq: Option<u64>) {
        let prev = match seq {
            Some(s) => self.last_seq.insert(session_id.to_string(), s),
            None => self.last_seq.remove(session_id),
        };
        self.undo.push((session_id.to_string(), prev));
    }

    fn undo_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            if let Some((id, prev)) = self.undo.pop() {
                match prev {
                    Some(s) => self.last_seq.insert(id, s),
                    None => self.last_seq.remove(&id),
                };
            }
        }
    }

    /// One transaction for the whole batch: one fsync however many callers are waiting.
    fn commit_batch(&mut self, batch: Vec<Op>) {
        self.undo.clear();
        self.dirty.clear();
        let unindexed_before = self.unindexed;
        self.batch_now = ids::now_rfc3339();
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            for op in batch {
                fail(op, StoreError::Write(msg.clone()));
            }
            return;
        }
        let mut replies = Vec::with_capacity(batch.len());
        // A write error inside the transaction dooms all of it.
        let mut doomed: Option<String> = None;
        for op in batch {
            if let Some(msg) = &doomed {
                fail(op, StoreError::Write(msg.clone()));
                continue;
            }
            let reply = match op {
                Op::Append {
                    session_id,
                    bodies,
                    summary,
                    reply,
                } => match self.append(&session_id, bodies, summary) {
                    Ok(evs) => Reply::Events(reply, evs),
                    // Checked before anything was written: only this op fails.
                    Err(e @ StoreError::NotFound(_)) => Reply::Failed(Failed::Events(reply, e)),
                    Err(e) => {
                        doomed = Some(e.to_string());
                        Reply::Failed(Failed::Events(reply, e))
                    }
                },
                other => self.apply_in_savepoint(other),
            };
            replies.push(reply);
        }
        if doomed.is_none()
            && self.unindexed >= INDEX_EVERY
            && let Err(e) = self.catch_up_index()
        {
            doomed = Some(e.to_string());
        }
        if doomed.is_none()
            && let Err(e) = self.flush_rows()
        {
            doomed = Some(e.to_string());
        }
        let outcome = match doomed {
            Some(msg) => Err(msg),
            None => self.conn.execute_batch("COMMIT").map_err(|e| e.to_string()),
        };
        if let Err(msg) = &outcome {
            tracing::error!(error = %msg, "the event log transaction failed; nothing of it was kept");
            let _ = self.conn.execute_batch("ROLLBACK");
            self.undo_to(0);
            self.written.clear();
            self.unindexed = unindexed_before;
        }
        for r in replies {
            r.send(outcome.as_ref().map(|_| ()).map_err(|m| m.as_str()));
        }
    }

    fn flush_rows(&mut self) -> Result<(), StoreError> {
        for (id, (summary, at)) in self.dirty.drain() {
            let (stop, usage) = summary_columns(summary.stop_reason.as_ref(), &summary.usage);
            self.conn
                .prepare_cached(
                    "UPDATE sessions SET updated_at = ?2, status = ?3, stop_reason = ?4, usage = ?5 WHERE id = ?1",
                )?
                .execute(params![id, at, summary.status.as_str(), stop, usage])
                .map_err(|e| StoreError::Write(e.to_string()))?;
            self.written.insert(id, summary);
        }
        Ok(())
    }

    /// Rare ops run inside a savepoint so a failing one doesn't take the batch down.
    fn apply_in_savepoint(&mut self, op: Op) -> Reply {
        if let Err(e) = self.conn.execute_batch("SAVEPOINT op") {
            return Reply::Failed(failed(op, StoreError::Write(e.to_string())));
        }
        let mark = self.undo.len();
        let result = match op {
            Op::Append { .. } | Op::Checkpoint { .. } => Err(failed(
                op,
                StoreError::Write("internal: op routed to the savepoint path".into()),
            )),
            Op::Exec { f, reply } => match f(&self.conn) {
                Ok(()) => Ok(Reply::Unit(reply)),
                Err(e) => Err(Failed::Unit(reply, e)),
            },
            Op::CreateSession {
                row,
                copy_events_from,
                reply,
            } => match self.create(&row, copy_events_from.as_deref()) {
                Ok(()) => Ok(Reply::Unit(reply)),
                Err(e) => Err(Failed::Unit(reply, e)),
            },
            Op::SetArchived {
                session_id,
                at,
                reply,
            } => match self.exec_one(
                "UPDATE sessions SET archived_at = ?2, updated_at = ?3 WHERE id = ?1",
                params![session_id, at, ids::now_rfc3339()],
                &session_id,
            ) {
                Ok(()) => Ok(Reply::Unit(reply)),
                Err(e) => Err(Failed::Unit(reply, e)),
            },
            Op::DeleteSession { session_id, reply } => {
                self.set_seq(&session_id, None);
                self.dirty.remove(&session_id);
                let r = self
                    .conn
                    .execute(
                        "DELETE FROM events WHERE rowid IN (SELECT row FROM events_by_session WHERE session_id = ?1) OR (rowid > (SELECT last_row FROM index_state) AND session_id = ?1)",
                        [&session_id],
                    )
                    .and_then(|_| {
                        self.conn.execute(
                            "DELETE FROM events_by_session WHERE session_id = ?1",
                            [&session_id],
                        )
                    })
                    .map_err(|e| StoreError::Write(e.to_string()))
                    .and_then(|_| {
                        self.exec_one(
                            "DELETE FROM sessions WHERE id = ?1",
                            params![session_id],
                            &session_id,
                        )
                    });
                match r {
                    Ok(()) => Ok(Reply::Unit(reply)),
                    Err(e) => Err(Failed::Unit(reply, e)),
                }
            }
        };
        match result {
            Ok(r) => {
                let _ = self.conn.execute_batch("RELEASE op");
                r
            }
            Err(f) => {
                let _ = self.conn.execute_batch("ROLLBACK TO op; RELEASE op");
                self.undo_to(mark);
                Reply::Failed(f)
            }
        }
    }

    fn exec_one(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        session_id: &str,
    ) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute(sql, p)
            .map_err(|e| StoreError::Write(e.to_string()))?;
        if n == 0 {
            return Err(StoreError::NotFound(session_id.to_string()));
        }
        Ok(())
    }

    fn current_seq(&mut self, session_id: &str) -> Result<u64, StoreError> {
        if let Some(s) = self.last_seq.get(session_id) {
            return Ok(*s);
        }
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
            .query_row([session_id], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound(session_id.to_string()));
        }
        let seq = queries::max_seq(&self.conn, session_id)?;
        // A cache fill, not a change: nothing to undo.
        self.last_seq.insert(session_id.to_string(), seq);
        Ok(seq)
    }

    fn append(
        &mut self,
        session_id: &str,
        bodies: Vec<EventBody>,
        summary: Option<SessionSummary>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut seq = self.current_seq(session_id)?;
        let now = self.batch_now.clone();
        let mut out = Vec::with_capacity(bodies.len());
        {
            let mut st = self.conn.prepare_cached(
                "INSERT INTO events (session_id, seq, id, type, processed_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for body in bodies {
                seq += 1;
                let ev = Event {
                    id: ids::event_id(),
                    session_id: session_id.to_string(),
                    seq,
                    processed_at: Some(now.clone()),
                    body,
                };
                let json = serde_json::to_string(&ev)
                    .map_err(|e| StoreError::Write(format!("cannot encode event: {e}")))?;
                st.execute(params![
                    session_id,
                    seq as i64,
                    ev.id,
                    ev.type_name(),
                    now,
                    json
                ])
                .map_err(|e| StoreError::Write(e.to_string()))?;
                out.push(ev);
            }
        }
        self.unindexed += out.len() as u64;
        self.set_seq(session_id, Some(seq));
        if let Some(summary) = summary
            && self.written.get(session_id) != Some(&summary)
        {
            // Stamped with the events' time, so updated_at matches the newest event.
            self.dirty.insert(session_id.to_string(), (summary, now));
        }
        Ok(out)
    }

    fn create(&mut self, row: &SessionRow, copy_from: Option<&str>) -> Result<(), StoreError> {
        let (stop, usage) = summary_columns(row.stop_reason.as_ref(), &row.usage);
        self.conn
            .execute(
                &format!(
                    "INSERT INTO sessions ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
                    "id, name, title, model, system, workspace, workspace_owned, max_turns, status, stop_reason, usage, created_at, updated_at, archived_at, forked_from, agent_id, agent_version, tools, environment_id, env_layer, metadata, networking"
                ),
                params![
                    row.id,
                    row.name,
                    row.title,
                    row.model,
                    row.system,
                    row.workspace,
                    row.workspace_owned,
                    row.max_turns,
                    row.status.as_str(),
                    stop,
                    usage,
                    row.created_at,
                    row.updated_at,
                    row.archived_at,
                    row.forked_from,
                    row.agent.as_ref().map(|a| &a.0),
                    row.agent.as_ref().map(|a| a.1),
                    row.tools.as_ref().and_then(|t| serde_json::to_string(t).ok()),
                    row.environment,
                    row.env_layer,
                    (!row.metadata.is_empty())
                        .then(|| serde_json::to_string(&row.metadata).ok())
                        .flatten(),
                    row.networking
                        .as_ref()
                        .and_then(|n| serde_json::to_string(n).ok()),
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict(format!(
                        "a session named `{}` already exists; pick another name",
                        row.name.as_deref().unwrap_or("")
                    ))
                }
                e => StoreError::Write(e.to_string()),
            })?;
        let mut last = 0;
        if let Some(src) = copy_from {
            // Copy the log, re-stamping each stored body with the new session id.
            let events = queries::read_events(&self.conn, src, 0, None, u32::MAX, false)?;
            let mut st = self.conn.prepare_cached(
                "INSERT INTO events (session_id, seq, id, type, processed_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for mut ev in events {
                ev.session_id = row.id.clone();
                last = ev.seq;
                self.unindexed += 1;
                let json = serde_json::to_string(&ev)
                    .map_err(|e| StoreError::Write(format!("cannot encode event: {e}")))?;
                st.execute(params![
                    row.id,
                    ev.seq as i64,
                    ev.id,
                    ev.type_name(),
                    ev.processed_at,
                    json
                ])
                .map_err(|e| StoreError::Write(e.to_string()))?;
            }
        }
        self.set_seq(&row.id, Some(last));
        Ok(())
    }
}

fn failed(op: Op, e: StoreError) -> Failed {
    match op {
        Op::Append { reply, .. } => Failed::Events(reply, e),
        Op::CreateSession { reply, .. }
        | Op::SetArchived { reply, .. }
        | Op::DeleteSession { reply, .. }
        | Op::Exec { reply, .. }
        | Op::Checkpoint { reply } => Failed::Unit(reply, e),
    }
}

fn fail(op: Op, e: StoreError) {
    failed(op, e).send();
}

impl Failed {
    fn send(self) {
        match self {
            Failed::Events(tx, e) => {
                let _ = tx.send(Err(e));
            }
            Failed::Unit(tx, e) => {
                let _ = tx.send(Err(e));
            }
        }
    }
}

/// The `stop_reason` and `usage` columns of a sessions row, as stored.
fn summary_columns(
    stop_reason: Option<&tether_proto::StopReason>,
    usage: &tether_proto::SessionUsage,
) -> (Option<String>, String) {
    (
        stop_reason.and_then(|r| serde_json::to_string(r).ok()),
        serde_json::to_string(usage).unwrap_or_else(|_| "{}".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn row(id: &str, name: Option<&str>) -> SessionRow {
        SessionRow {
            name: name.map(Into::into),
            ..SessionRow::new(
                id.into(),
                "anthropic/claude-sonnet-4-6".into(),
                "/tmp/w".into(),
                50,
            )
        }
    }

    fn seqs(evs: &[Event]) -> Vec<u64> {
        evs.iter().map(|e| e.seq).collect()
    }

    /// Reads must see the same log whether events sit in the index or in the unindexed tail,
    /// across catch-ups, reopen and delete.
    #[tokio::test]
    async fn reads_are_identical_across_the_index_and_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let n_per: u64 = 3_500;
        {
            let store = Store::open(&path).unwrap();
            for s in ["sesn_a", "sesn_b", "sesn_c"] {
                store.create_session(row(s, None), None).await.unwrap();
            }
            // Interleave sessions and batch sizes; total 10,500 events: two catch-ups and a tail.
            for round in 0..(n_per / 50) {
                for s in ["sesn_a", "sesn_b", "sesn_c"] {
                    let k = if round % 2 == 0 { 1 } else { 99 };
                    store
                        .append(s, vec![EventBody::user_text("x"); k], None)
                        .await
                        .unwrap();
                }
            }
            let total = (n_per / 50).div_ceil(2) + (n_per / 50 / 2) * 99;
            for s in ["sesn_a", "sesn_b", "sesn_c"] {
                let all = store
                    .read_events(s, 0, None, u32::MAX, false)
                    .await
                    .unwrap();
                assert_eq!(seqs(&all), (1..=total).collect::<Vec<_>>(), "{s}");
                assert!(all.iter().all(|e| e.session_id == s));
                let desc = store
                    .read_events(s, 100, Some(110), 100, true)
                    .await
                    .unwrap();
                assert_eq!(seqs(&desc), (101..110).rev().collect::<Vec<_>>());
                // A page that straddles index and tail, both directions.
                let tail_start = total - 5;
                let page = store
                    .read_events(s, tail_start - 10, None, 20, false)
                    .await
                    .unwrap();
                assert_eq!(seqs(&page), ((tail_start - 9)..=total).collect::<Vec<_>>());
                let page = store.read_events(s, 0, None, 20, true).await.unwrap();
                assert_eq!(
                    seqs(&page),
                    ((total - 19)..=total).rev().collect::<Vec<_>>()
                );
                assert_eq!(store.get_session(s).await.unwrap().unwrap().last_seq, total);
            }
            let listed = store.list_sessions(false).await.unwrap();
            assert!(listed.iter().all(|r| r.last_seq == total));
            store.delete_session("sesn_b").await.unwrap();
            assert!(
                store
                    .read_events("sesn_b", 0, None, 10, false)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        // Reopen: the tail is folded in at start; seqs continue where they were.
        let store = Store::open(&path).unwrap();
        let before = store
            .read_events("sesn_a", 0, None, u32::MAX, false)
            .await
            .unwrap();
        let next = store
            .append("sesn_a", vec![EventBody::user_text("y")], None)
            .await
            .unwrap();
        assert_eq!(next[0].seq, before.len() as u64 + 1);
        let after = store
            .read_events("sesn_a", 0, None, u32::MAX, false)
            .await
            .unwrap();
        assert_eq!(&after[..before.len()], &before[..]);
        assert!(
            store
                .read_events("sesn_b", 0, None, 10, false)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .read_events("sesn_c", 0, None, u32::MAX, false)
                .await
                .unwrap()
                .len(),
            before.len()
        );
    }

    #[tokio::test]
    async fn appends_are_gapless_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .create_session(row("sesn_a", Some("a")), None)
                .await
                .unwrap();
            let evs = store
                .append(
                    "sesn_a",
                    vec![EventBody::user_text("1"), EventBody::user_text("2")],
                    None,
                )
                .await
                .unwrap();
            assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
            let evs = store
                .append("sesn_a", vec![EventBody::user_text("3")], None)
                .await
                .unwrap();
            assert_eq!(evs[0].seq, 3);
        }
        let store = Store::open(&path).unwrap();
        let evs = store
            .read_events("sesn_a", 0, None, 100, false)
            .await
            .unwrap();
        assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        let evs = store
            .append("sesn_a", vec![EventBody::user_text("4")], None)
            .await
            .unwrap();
        assert_eq!(evs[0].seq, 4);
        let desc = store
            .read_events("sesn_a", 0, Some(4), 2, true)
            .await
            .unwrap();
        assert_eq!(desc.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 2]);
    }

    #[tokio::test]
    async fn concurrent_appenders_get_distinct_contiguous_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .create_session(row("sesn_a", None), None)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    s.append("sesn_a", vec![EventBody::user_text(i.to_string())], None)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let evs = store
            .read_events("sesn_a", 0, None, 1000, false)
            .await
            .unwrap();
        assert_eq!(evs.len(), 400);
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1);
        }
    }

    #[tokio::test]
    async fn unknown_session_fails_without_poisoning_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .create_session(row("sesn_a", None), None)
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            store.append("sesn_nope", vec![EventBody::user_text("x")], None),
            store.append("sesn_a", vec![EventBody::user_text("y")], None)
        );
        assert!(matches!(a, Err(StoreError::NotFound(_))));
        assert_eq!(b.unwrap()[0].seq, 1);
    }

    #[tokio::test]
    async fn duplicate_name_is_a_conflict_and_resolve_finds_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .create_session(row("sesn_01abc", Some("fix")), None)
            .await
            .unwrap();
        store
            .create_session(row("sesn_01abd", None), None)
            .await
            .unwrap();
        let e = store
            .create_session(row("sesn_02", Some("fix")), None)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{e}");
        assert_eq!(store.resolve("fix").await.unwrap(), vec!["sesn_01abc"]);
        assert_eq!(store.resolve("01abd").await.unwrap(), vec!["sesn_01abd"]);
        assert_eq!(store.resolve("sesn_01ab").await.unwrap().len(), 2);
        assert!(store.resolve("zzz").await.unwrap().is_empty());
        assert!(store.resolve("%").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn rename_moves_the_name_and_a_taken_name_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .create_session(row("sesn_a", Some("old")), None)
            .await
            .unwrap();
        store
            .create_session(row("sesn_b", Some("taken")), None)
            .await
            .unwrap();
        store
            .set_session_name("sesn_a", "new".into())
            .await
            .unwrap();
        assert_eq!(store.resolve("new").await.unwrap(), vec!["sesn_a"]);
        assert!(store.resolve("old").await.unwrap().is_empty());
        let e = store
            .set_session_name("sesn_a", "taken".into())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Conflict(m) if m.contains("`taken`")),
            "{e}"
        );
        let e = store
            .set_session_name("sesn_zz", "x".into())
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    }

    #[tokio::test]
    async fn search_walks_the_whole_log_backwards_in_text_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .create_session(row("sesn_s", None), None)
            .await
            .unwrap();
        // 2,500 events (more than one chunk); the needle early and late.
        let mut bodies: Vec<EventBody> = (0..2500)
            .map(|i| EventBody::user_text(format!("filler {i}")))
            .collect();
        bodies[10] = EventBody::user_text("the Needle, early");
        bodies[2400] = EventBody::AgentMessage {
            content: vec![tether_proto::ContentBlock::text("a NEEDLE late")],
        };
        for chunk in bodies.chunks(500) {
            store.append("sesn_s", chunk.to_vec(), None).await.unwrap();
        }
        let seqs = |v: Vec<Event>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        let found = store
            .search_events("sesn_s", "needle", None, 5)
            .await
            .unwrap();
        assert_eq!(seqs(found), vec![2401, 11]);
        let older = store
            .search_events("sesn_s", "needle", Some(2401), 1)
            .await
            .unwrap();
        assert_eq!(seqs(older), vec![11]);
        // Only the text a person reads: event types and ids are not matched.
        assert!(
            store
                .search_events("sesn_s", "user.message", None, 1)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn fork_copies_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .create_session(row("sesn_a", None), None)
            .await
            .unwrap();
        store
            .append(
                "sesn_a",
                vec![EventBody::user_text("1"), EventBody::user_text("2")],
                None,
            )
            .await
            .unwrap();
        store
            .create_session(row("sesn_b", None), Some("sesn_a".into()))
            .await
            .unwrap();
        let evs = store
            .read_events("sesn_b", 0, None, 10, false)
            .await
            .unwrap();
        assert_eq!(evs.len(), 2);
        assert!(evs.iter().all(|e| e.session_id == "sesn_b"));
        let next = store
            .append("sesn_b", vec![EventBody::user_text("3")], None)
            .await
            .unwrap();
        assert_eq!(next[0].seq, 3);
        assert_eq!(
            store.get_session("sesn_b").await.unwrap().unwrap().last_seq,
            3
        );
    }
}
