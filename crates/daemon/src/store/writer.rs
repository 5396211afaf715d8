//! The single writer thread: it owns the only write connection and group-commits every
//! queued operation in one transaction, then answers each caller. An event is acknowledged
//! only after its transaction commits.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tether_proto::{Event, EventBody};
use tokio::sync::oneshot;

use crate::ids;
use crate::store::error::StoreError;
use crate::store::queries;
use crate::store::rows::{SessionRow, SessionSummary};
use crate::store::webhooks;

/// Most operations folded into one transaction.
const MAX_BATCH: usize = 4096;
/// Unindexed events allowed before the writer folds them into `events_by_session`: bounds
/// the tail a read has to scan, while each catch-up touches a session's index leaf once.
const INDEX_EVERY: u64 = 4096;
/// Longest a batch waits for more callers when the previous batch was larger. A lone caller
/// never waits: the previous batch was 1, so the target is 0.
const GATHER_WAIT: Duration = Duration::from_micros(500);

/// A write run by the writer thread on its connection.
pub(super) type WriteFn = Box<dyn FnOnce(&Connection) -> Result<(), StoreError> + Send>;

pub(super) enum Op {
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
    /// Events for several streams in one transaction (a thread's and its primary's), each
    /// stream's in order; a draft may carry a preset id (a cross-post keeps the original's)
    /// and a `session_thread_id`. With `create`, that row is inserted first (a new thread
    /// and its `session.thread_created`).
    AppendMulti {
        create: Option<Box<SessionRow>>,
        streams: Vec<StreamAppend>,
        reply: oneshot::Sender<Result<Vec<Vec<Event>>, StoreError>>,
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

/// One event to append, before it has its seq.
#[derive(Debug, Clone)]
pub struct Draft {
    /// None: a new `sevt_` id.
    pub id: Option<String>,
    pub session_thread_id: Option<String>,
    pub body: EventBody,
}

impl Draft {
    pub fn new(body: EventBody) -> Draft {
        Draft {
            id: None,
            session_thread_id: None,
            body,
        }
    }
}

/// One stream's part of an [`Op::AppendMulti`].
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub session_id: String,
    pub drafts: Vec<Draft>,
    pub summary: Option<SessionSummary>,
}

/// Starts the writer thread on `conn`; ops sent on the returned channel run in its batches.
/// `webhooks` is woken after a commit that queued webhook deliveries.
pub(super) fn start(
    conn: Connection,
    webhooks: Arc<tokio::sync::Notify>,
) -> Result<mpsc::Sender<Op>, StoreError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("tether-store-writer".into())
        .spawn(move || match Writer::new(conn, webhooks) {
            Ok(w) => w.run(rx),
            Err(e) => tracing::error!(error = %e, "the event log writer could not start"),
        })
        .map_err(|e| StoreError::Write(format!("cannot start the writer thread: {e}")))?;
    Ok(tx)
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
    /// Woken after a commit that queued webhook deliveries (`queued_webhooks`).
    webhooks: Arc<tokio::sync::Notify>,
    queued_webhooks: bool,
}

enum Reply {
    Events(oneshot::Sender<Result<Vec<Event>, StoreError>>, Vec<Event>),
    Multi(
        oneshot::Sender<Result<Vec<Vec<Event>>, StoreError>>,
        Vec<Vec<Event>>,
    ),
    Unit(oneshot::Sender<Result<(), StoreError>>),
    Failed(Failed),
}

enum Failed {
    Events(oneshot::Sender<Result<Vec<Event>, StoreError>>, StoreError),
    Multi(
        oneshot::Sender<Result<Vec<Vec<Event>>, StoreError>>,
        StoreError,
    ),
    Unit(oneshot::Sender<Result<(), StoreError>>, StoreError),
}

impl Reply {
    /// Answers the caller: success only if the transaction committed.
    fn send(self, committed: Result<(), &str>) {
        match (self, committed) {
            (Reply::Events(tx, evs), Ok(())) => {
                let _ = tx.send(Ok(evs));
            }
            (Reply::Multi(tx, evs), Ok(())) => {
                let _ = tx.send(Ok(evs));
            }
            (Reply::Multi(tx, _), Err(msg)) => {
                let _ = tx.send(Err(StoreError::Write(msg.to_string())));
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
    fn new(conn: Connection, webhooks: Arc<tokio::sync::Notify>) -> Result<Self, StoreError> {
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
            webhooks,
            queued_webhooks: false,
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
                Op::AppendMulti {
                    create,
                    streams,
                    reply,
                } => match self.append_multi_in_savepoint(create.as_deref(), streams) {
                    Ok(evs) => Reply::Multi(reply, evs),
                    // Rolled back to its savepoint: only this op fails.
                    Err(e @ (StoreError::NotFound(_) | StoreError::Conflict(_))) => {
                        Reply::Failed(Failed::Multi(reply, e))
                    }
                    Err(e) => {
                        doomed = Some(e.to_string());
                        Reply::Failed(Failed::Multi(reply, e))
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
        if outcome.is_ok() && std::mem::take(&mut self.queued_webhooks) {
            self.webhooks.notify_one();
        }
        if let Err(msg) = &outcome {
            self.queued_webhooks = false;
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
            let outcomes = summary
                .outcome_evaluations
                .as_ref()
                .and_then(|o| serde_json::to_string(o).ok());
            self.conn
                .prepare_cached(
                    "UPDATE sessions SET updated_at = ?2, status = ?3, stop_reason = ?4, usage = ?5, outcomes = COALESCE(?6, outcomes) WHERE id = ?1",
                )?
                .execute(params![id, at, summary.status.as_str(), stop, usage, outcomes])
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
            Op::Append { .. } | Op::AppendMulti { .. } | Op::Checkpoint { .. } => Err(failed(
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
            } => match self
                .exec_one(
                    "UPDATE sessions SET archived_at = ?2, updated_at = ?3 WHERE id = ?1",
                    params![session_id, at, ids::now_rfc3339()],
                    &session_id,
                )
                .and_then(|()| match &at {
                    Some(at) => {
                        webhooks::enqueue(&self.conn, "session.archived", &session_id, None, at)
                    }
                    None => Ok(0),
                })
                .map(|n| self.queued_webhooks |= n > 0)
            {
                Ok(()) => Ok(Reply::Unit(reply)),
                Err(e) => Err(Failed::Unit(reply, e)),
            },
            Op::DeleteSession { session_id, reply } => {
                self.set_seq(&session_id, None);
                self.dirty.remove(&session_id);
                // Queued while the row still says whether it is a top-level session.
                let r = webhooks::enqueue(
                    &self.conn,
                    "session.deleted",
                    &session_id,
                    None,
                    &ids::now_rfc3339(),
                )
                .map(|n| self.queued_webhooks |= n > 0)
                .and_then(|()| {
                    self.conn
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
                    })
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
        self.append_drafts(
            session_id,
            bodies.into_iter().map(Draft::new).collect(),
            summary,
        )
    }

    /// [`Writer::append_multi`] all or nothing: a failing part rolls back its parts (rows,
    /// events, seq cache and summaries) and leaves the rest of the batch alone.
    fn append_multi_in_savepoint(
        &mut self,
        create: Option<&SessionRow>,
        streams: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Event>>, StoreError> {
        self.conn
            .execute_batch("SAVEPOINT multi")
            .map_err(|e| StoreError::Write(e.to_string()))?;
        let mark = self.undo.len();
        let unindexed = self.unindexed;
        let dirty_before: Vec<(String, Option<(SessionSummary, String)>)> = streams
            .iter()
            .map(|st| {
                (
                    st.session_id.clone(),
                    self.dirty.get(&st.session_id).cloned(),
                )
            })
            .collect();
        match self.append_multi(create, streams) {
            Ok(out) => {
                let _ = self.conn.execute_batch("RELEASE multi");
                Ok(out)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK TO multi; RELEASE multi");
                self.undo_to(mark);
                self.unindexed = unindexed;
                for (id, before) in dirty_before {
                    match before {
                        Some(d) => self.dirty.insert(id, d),
                        None => self.dirty.remove(&id),
                    };
                }
                Err(e)
            }
        }
    }

    fn append_multi(
        &mut self,
        create: Option<&SessionRow>,
        streams: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Event>>, StoreError> {
        if let Some(row) = create {
            self.create(row, None)?;
        }
        let mut out = Vec::with_capacity(streams.len());
        for s in streams {
            out.push(self.append_drafts(&s.session_id, s.drafts, s.summary)?);
        }
        Ok(out)
    }

    fn append_drafts(
        &mut self,
        session_id: &str,
        drafts: Vec<Draft>,
        summary: Option<SessionSummary>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut seq = self.current_seq(session_id)?;
        let now = self.batch_now.clone();
        let mut out = Vec::with_capacity(drafts.len());
        let mut queued = 0;
        {
            let mut st = self.conn.prepare_cached(
                "INSERT INTO events (session_id, seq, id, type, processed_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for d in drafts {
                seq += 1;
                let ev = Event {
                    id: d.id.unwrap_or_else(ids::event_id),
                    session_id: session_id.to_string(),
                    seq,
                    processed_at: Some(now.clone()),
                    session_thread_id: d.session_thread_id,
                    body: d.body,
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
                queued += webhooks::enqueue_event(&self.conn, &ev)?;
                out.push(ev);
            }
        }
        self.queue_webhooks(queued);
        self.unindexed += out.len() as u64;
        self.set_seq(session_id, Some(seq));
        if let Some(mut summary) = summary
            && self.written.get(session_id) != Some(&summary)
        {
            for o in summary.outcome_evaluations.iter_mut().flatten() {
                if o.completed_at.is_none()
                    && !matches!(o.result.as_str(), "pending" | "running" | "evaluating")
                {
                    o.completed_at = Some(now.clone());
                }
            }
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
                    "INSERT INTO sessions ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
                    "id, name, title, model, system, workspace, workspace_owned, max_turns, status, stop_reason, usage, created_at, updated_at, archived_at, forked_from, agent_id, agent_version, tools, environment_id, env_layer, metadata, networking, parent_id, thread_agent, deployment_id"
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
                    row.parent_id,
                    row.thread_agent
                        .as_ref()
                        .and_then(|a| serde_json::to_string(a).ok()),
                    row.deployment_id,
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
        if !row.memory.is_empty() {
            let memory = serde_json::to_string(&row.memory)
                .map_err(|e| StoreError::Write(format!("cannot encode the memory stores: {e}")))?;
            self.conn
                .execute(
                    "UPDATE sessions SET memory = ?2 WHERE id = ?1",
                    params![row.id, memory],
                )
                .map_err(|e| StoreError::Write(e.to_string()))?;
        }
        if !row.vault_ids.is_empty() {
            let vaults = serde_json::to_string(&row.vault_ids)
                .map_err(|e| StoreError::Write(format!("cannot encode the vault ids: {e}")))?;
            self.conn
                .execute(
                    "UPDATE sessions SET vault_ids = ?2 WHERE id = ?1",
                    params![row.id, vaults],
                )
                .map_err(|e| StoreError::Write(e.to_string()))?;
        }
        if let Some(refs) = &row.skill_refs {
            let refs = serde_json::to_string(refs)
                .map_err(|e| StoreError::Write(format!("cannot encode the skills: {e}")))?;
            self.conn
                .execute(
                    "UPDATE sessions SET skills = ?2 WHERE id = ?1",
                    params![row.id, refs],
                )
                .map_err(|e| StoreError::Write(e.to_string()))?;
        }
        if let Some(o) = &row.agent_overrides {
            self.conn
                .execute(
                    "UPDATE sessions SET agent_overrides = ?2 WHERE id = ?1",
                    params![row.id, encode_agent_overrides(o)?],
                )
                .map_err(|e| StoreError::Write(e.to_string()))?;
        }
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
        let n = webhooks::enqueue(
            &self.conn,
            "session.created",
            &row.id,
            None,
            &row.created_at,
        )?;
        self.queue_webhooks(n);
        Ok(())
    }

    fn queue_webhooks(&mut self, queued: usize) {
        self.queued_webhooks |= queued > 0;
    }
}

fn failed(op: Op, e: StoreError) -> Failed {
    match op {
        Op::Append { reply, .. } => Failed::Events(reply, e),
        Op::AppendMulti { reply, .. } => Failed::Multi(reply, e),
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
            Failed::Multi(tx, e) => {
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

/// A session's own tools and MCP servers as stored in `sessions.agent_overrides`.
pub(crate) fn encode_agent_overrides(
    o: &tether_proto::agent::SessionAgentUpdate,
) -> Result<String, StoreError> {
    serde_json::to_string(o)
        .map_err(|e| StoreError::Write(format!("cannot encode the session's tools: {e}")))
}
