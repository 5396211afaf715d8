//! The store room: the durable session log and the resources' tables, in SQLite (WAL mode,
//! `synchronous=FULL`). [`Store`] is the handle; [`writer`] group-commits every write on one
//! thread, [`queries`] are the reads, [`schema`] opens and migrates the database, [`rows`] and
//! [`error`] are what they exchange. Depends only on the foundations (`ids`, `private`).
//!
//! One writer thread owns the only write connection and group-commits: it drains every queued
//! operation into one transaction, commits once, then answers each caller. An event is
//! acknowledged only after its transaction commits. Reads use their own connections.

pub mod deployments;
pub mod error;
pub mod queries;
pub mod rows;
pub mod schema;
#[cfg(test)]
mod tests;
pub mod webhooks;
pub mod work;
mod writer;
pub use writer::{Draft, StreamAppend};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension};
use std::sync::mpsc;
use tether_proto::{Event, EventBody};
use tokio::sync::oneshot;

use crate::store::error::StoreError;
use crate::store::rows::{SessionPageQuery, SessionRow, SessionSummary};
use crate::store::writer::Op;

/// Cheap to clone; every clone talks to the same writer thread.
#[derive(Clone)]
pub struct Store {
    writer: mpsc::Sender<Op>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    /// Woken after a commit that queued webhook deliveries.
    webhook_wake: Arc<tokio::sync::Notify>,
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
        let conn = schema::open_conn(path, false)?;
        schema::migrate(&conn)?;
        let webhook_wake = Arc::new(tokio::sync::Notify::new());
        let writer = writer::start(conn, webhook_wake.clone())?;
        Ok(Store {
            writer,
            readers: Arc::new(Mutex::new(Vec::new())),
            path: path.to_path_buf(),
            webhook_wake,
        })
    }

    /// Notified after every commit that queued webhook deliveries (the deliverer waits on it).
    pub fn webhook_wake(&self) -> Arc<tokio::sync::Notify> {
        self.webhook_wake.clone()
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

    /// Appends to several streams in one transaction (see [`Op::AppendMulti`]); returns each
    /// stream's events once committed.
    pub async fn append_multi(
        &self,
        create: Option<SessionRow>,
        streams: Vec<writer::StreamAppend>,
    ) -> Result<Vec<Vec<Event>>, StoreError> {
        self.submit(|reply| Op::AppendMulti {
            create: create.map(Box::new),
            streams,
            reply,
        })
        .await
    }

    /// A session's child threads (archived ones too), oldest first.
    pub async fn list_threads(&self, parent: &str) -> Result<Vec<SessionRow>, StoreError> {
        let p = parent.to_string();
        self.read(move |c| queries::list_threads(c, &p)).await
    }

    /// How many child threads of `parent` count against its limit: not archived, not the
    /// advisor's. One indexed count, run before every spawn.
    pub async fn live_child_threads(&self, parent: &str) -> Result<usize, StoreError> {
        let p = parent.to_string();
        self.read(move |c| queries::live_child_threads(c, &p)).await
    }

    /// The newest non-archived child thread of `parent` whose agent is called `name` (the
    /// advisor's excepted).
    pub async fn live_thread_named(
        &self,
        parent: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        let (p, n) = (parent.to_string(), name.to_string());
        self.read(move |c| queries::live_thread_named(c, &p, &n))
            .await
    }

    /// Ids of the child threads the log calls running.
    pub async fn running_threads(&self) -> Result<Vec<String>, StoreError> {
        self.read(queries::running_threads).await
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
            None => schema::open_conn(&self.path, true)?,
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
        let meta = (!metadata.is_empty())
            .then(|| serde_json::to_string(&metadata).ok())
            .flatten();
        self.set_session_columns(
            session_id,
            "title = ?2, metadata = ?3",
            vec![title.into(), meta.into()],
            None,
        )
        .await
    }

    /// Sets a session's vaults (ids; a session update's `vault_ids`), read again whenever the
    /// session is loaded.
    pub async fn set_session_vaults(
        &self,
        session_id: &str,
        vault_ids: &[String],
    ) -> Result<(), StoreError> {
        let vaults = (!vault_ids.is_empty())
            .then(|| serde_json::to_string(vault_ids).ok())
            .flatten();
        self.set_session_columns(session_id, "vault_ids = ?2", vec![vaults.into()], None)
            .await
    }

    /// Sets a session's own tools and MCP servers (None: its agent version's again).
    pub async fn set_session_agent_overrides(
        &self,
        session_id: &str,
        overrides: Option<&tether_proto::agent::SessionAgentUpdate>,
    ) -> Result<(), StoreError> {
        let json = overrides.map(writer::encode_agent_overrides).transpose()?;
        self.set_session_columns(session_id, "agent_overrides = ?2", vec![json.into()], None)
            .await
    }

    /// Sets a session's model column after a `session.updated` switched it, so listings of
    /// sessions not loaded in memory show the model the session now uses.
    pub async fn set_session_model(
        &self,
        session_id: &str,
        model: String,
    ) -> Result<(), StoreError> {
        match self
            .set_session_columns(session_id, "model = ?2", vec![model.into()], None)
            .await
        {
            // The event is the truth: a session deleted meanwhile has no listing to keep.
            Err(StoreError::NotFound(_)) => Ok(()),
            r => r,
        }
    }

    /// Renames a session; a name another session has is a conflict.
    pub async fn set_session_name(&self, session_id: &str, name: String) -> Result<(), StoreError> {
        let conflict = format!("a session named `{name}` already exists; pick another name");
        self.set_session_columns(session_id, "name = ?2", vec![name.into()], Some(conflict))
            .await
    }

    /// Sets columns of one session's row in the writer's transaction: `set` is the SQL `SET`
    /// list over `?2`, `?3`…, and `values` are those parameters. No such session is
    /// [`StoreError::NotFound`]; a unique-constraint clash is [`StoreError::Conflict`] with
    /// the message `conflict` when given.
    async fn set_session_columns(
        &self,
        session_id: &str,
        set: &'static str,
        values: Vec<rusqlite::types::Value>,
        conflict: Option<String>,
    ) -> Result<(), StoreError> {
        let id = session_id.to_string();
        self.write(move |c| {
            let args = std::iter::once(rusqlite::types::Value::from(id.clone())).chain(values);
            let n = c
                .execute(
                    &format!("UPDATE sessions SET {set} WHERE id = ?1"),
                    rusqlite::params_from_iter(args),
                )
                .map_err(|e| match (e, conflict) {
                    (rusqlite::Error::SqliteFailure(f, _), Some(msg))
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        StoreError::Conflict(msg)
                    }
                    (e, _) => StoreError::Write(e.to_string()),
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

/// A store in a fresh temporary TETHER_HOME, for the resources rooms' unit tests: the
/// directory (kept alive by the caller), the store and the paths under it.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub fn in_temp_home() -> (tempfile::TempDir, Store, tether_proto::Paths) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().display().to_string();
    let paths = tether_proto::Paths::resolve(|k| (k == "TETHER_HOME").then(|| home.clone()), 0);
    let store = Store::open(&paths.db()).unwrap();
    (tmp, store, paths)
}
