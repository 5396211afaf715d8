//! The log's SQLite schema: opening a connection (WAL, `synchronous=FULL`) and migrating an
//! older database up to [`SCHEMA_VERSION`].

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::store::error::StoreError;

/// Schema version stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 24;

pub(super) fn open_conn(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
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

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
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
    if version < 6 {
        // The session's outcome_evaluations (JSON), kept with the events that change them so
        // a listing shows them without loading the session; NULL: none.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE sessions ADD COLUMN outcomes TEXT;
             PRAGMA user_version = 6;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 7 {
        // Multi-agent threads: a child thread is a row of its own (`sthr_` id, its own log)
        // whose `parent_id` is its session; `thread_agent` is who runs in it (ThreadAgent
        // JSON). Session listings skip rows with a parent.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE sessions ADD COLUMN parent_id TEXT;
             ALTER TABLE sessions ADD COLUMN thread_agent TEXT;
             CREATE INDEX sessions_by_parent ON sessions (parent_id) WHERE parent_id IS NOT NULL;
             PRAGMA user_version = 7;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 8 {
        // Memory stores (issue 24). A memory row is the current state; every write is also a
        // version row (versions outlive their memory). `memory_mounts` is what each session's
        // mounted copy held when last synced: the base a change in the copy is compared
        // against, so a write made elsewhere meanwhile is a conflict, never overwritten.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE memory_stores (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                description TEXT NOT NULL,
                metadata TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                archived_at TEXT
             );
             CREATE INDEX memory_stores_by_name ON memory_stores (name);
             CREATE TABLE memories (
                id TEXT PRIMARY KEY,
                store_id TEXT NOT NULL REFERENCES memory_stores (id) ON DELETE CASCADE,
                path TEXT NOT NULL,
                content TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                version_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                UNIQUE (store_id, path)
             );
             CREATE TABLE memory_versions (
                id TEXT PRIMARY KEY,
                store_id TEXT NOT NULL REFERENCES memory_stores (id) ON DELETE CASCADE,
                memory_id TEXT NOT NULL,
                operation TEXT NOT NULL,
                path TEXT,
                content TEXT,
                sha256 TEXT,
                size INTEGER,
                created_by TEXT,
                session_id TEXT,
                redacted_at TEXT,
                redacted_by TEXT,
                created_at TEXT NOT NULL
             );
             CREATE INDEX memory_versions_by_store ON memory_versions (store_id, id);
             CREATE INDEX memory_versions_by_memory ON memory_versions (memory_id, id);
             CREATE TABLE memory_mounts (
                session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
                store_id TEXT NOT NULL REFERENCES memory_stores (id) ON DELETE CASCADE,
                path TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                PRIMARY KEY (session_id, store_id, path)
             ) WITHOUT ROWID;
             ALTER TABLE sessions ADD COLUMN memory TEXT;
             PRAGMA user_version = 8;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 9 {
        // Deployments (`spec` is the JSON of what fires; `schedule_cursor` the last
        // occurrence handled, or when the schedule was set or unpaused: nothing at or before
        // it fires). A run row is written, with the session id it will use, before the
        // session exists; UNIQUE(deployment_id, scheduled_at) makes a scheduled occurrence
        // fire at most once whatever crashes (manual runs have a NULL scheduled_at).
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE deployments (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                spec TEXT NOT NULL,
                status TEXT NOT NULL,
                paused_reason TEXT,
                schedule_cursor TEXT,
                last_run_at TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                archived_at TEXT
             );
             CREATE INDEX deployments_by_created ON deployments (created_at, id);
             CREATE TABLE deployment_runs (
                id TEXT PRIMARY KEY,
                deployment_id TEXT NOT NULL,
                trigger TEXT NOT NULL,
                scheduled_at TEXT,
                agent_id TEXT NOT NULL,
                agent_version INTEGER NOT NULL,
                session_id TEXT,
                error TEXT,
                pending INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                UNIQUE (deployment_id, scheduled_at)
             );
             CREATE INDEX deployment_runs_by_created ON deployment_runs (created_at, id);
             CREATE INDEX deployment_runs_pending ON deployment_runs (pending) WHERE pending = 1;
             ALTER TABLE sessions ADD COLUMN deployment_id TEXT;
             CREATE INDEX sessions_by_deployment ON sessions (deployment_id) WHERE deployment_id IS NOT NULL;
             PRAGMA user_version = 9;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 10 {
        // Workflow runs live in their session's log (their state is a fold over it); this
        // finds a run's session and the runs still open without scanning every event.
        conn.execute_batch(
            "BEGIN;
             CREATE INDEX events_workflow_runs ON events (type, session_id)
                WHERE type IN ('workflow_run.created', 'workflow_run.status_ended');
             PRAGMA user_version = 10;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 11 {
        // Self-hosted environments: the environment key (only its sha256 is kept) and the
        // work queue. A work item is one session's claim on a worker: written before any
        // poll can hand it out, leased by ack + heartbeats (`lease_expires_at`), and its
        // per-poll sessions token is kept as a sha256 too. Self-contained: needs no step 10.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE environment_keys (
                environment_id TEXT PRIMARY KEY,
                key_sha256 TEXT NOT NULL,
                created_at TEXT NOT NULL
             );
             CREATE TABLE work_items (
                id TEXT PRIMARY KEY,
                environment_id TEXT NOT NULL,
                session_id TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at TEXT NOT NULL,
                polled_at_ms INTEGER,
                worker_id TEXT,
                token_sha256 TEXT,
                acknowledged_at TEXT,
                started_at TEXT,
                latest_heartbeat_at TEXT,
                lease_expires_at_ms INTEGER,
                stop_requested_at TEXT,
                stopped_at TEXT,
                metadata TEXT NOT NULL DEFAULT '{}'
             );
             CREATE INDEX work_items_by_env ON work_items (environment_id, created_at, id);
             CREATE INDEX work_items_live ON work_items (state) WHERE state != 'stopped';
             CREATE INDEX work_items_by_session ON work_items (session_id) WHERE state != 'stopped';
             PRAGMA user_version = 11;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 13 {
        // Files (issue 25): an upload's metadata; its content is the blob named by `sha256`
        // under the data dir. A session's resources: files mounted read-only (they keep the
        // blob alive by its `sha256`, even once the file is deleted) and cloned repositories
        // (never their token). Self-contained: needs no step 12.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS files (
                id TEXT PRIMARY KEY,
                filename TEXT NOT NULL,
                mime_type TEXT NOT NULL,
                size_bytes INTEGER NOT NULL,
                sha256 TEXT NOT NULL,
                created_at TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS files_by_sha ON files (sha256);
             CREATE TABLE IF NOT EXISTS session_resources (
                id TEXT PRIMARY KEY,
                session_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                file_id TEXT,
                sha256 TEXT,
                url TEXT,
                checkout TEXT,
                mount_path TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS session_resources_by_session
                ON session_resources (session_id, created_at, id);
             CREATE INDEX IF NOT EXISTS session_resources_by_sha ON session_resources (sha256);
             PRAGMA user_version = 13;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 15 {
        // Webhooks (issue 20): endpoints, and the outbox that is also the delivery log. A
        // delivery row is written in the transaction of the event it reports, so a crash
        // can neither lose it nor send it for an event that was not kept; `id` (`whe_`) is
        // the `webhook-id`, the same on every attempt. `events` is a JSON array of
        // `data.type`s, `[]` for all. Self-contained: needs no step 12 to 14.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE webhook_endpoints (
                id TEXT PRIMARY KEY,
                url TEXT NOT NULL,
                name TEXT,
                secret TEXT NOT NULL,
                events TEXT NOT NULL DEFAULT '[]',
                source TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
             );
             CREATE TABLE webhook_deliveries (
                id TEXT NOT NULL,
                endpoint_id TEXT NOT NULL,
                type TEXT NOT NULL,
                subject_id TEXT NOT NULL,
                body TEXT NOT NULL,
                created_at TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_ms INTEGER NOT NULL DEFAULT 0,
                last_attempt_at TEXT,
                last_status INTEGER,
                last_error TEXT,
                delivered_at TEXT,
                PRIMARY KEY (id, endpoint_id)
             );
             CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms)
                WHERE status = 'pending';
             CREATE INDEX webhook_deliveries_by_created ON webhook_deliveries (created_at);
             PRAGMA user_version = 15;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 16 {
        // Vaults (issue 25). A credential's public `auth` is JSON; its secrets are `sealed`
        // with the data dir's vault.key (resources/vaults/seal.rs), never stored in clear.
        // Sessions keep the vault ids they were created with. Self-contained: needs no 12/13.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE vaults (
                id TEXT PRIMARY KEY,
                display_name TEXT NOT NULL,
                metadata TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                archived_at TEXT
             );
             CREATE TABLE vault_credentials (
                id TEXT PRIMARY KEY,
                vault_id TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
                display_name TEXT,
                auth TEXT NOT NULL,
                metadata TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                archived_at TEXT,
                sealed BLOB NOT NULL
             );
             CREATE INDEX vault_credentials_by_vault ON vault_credentials (vault_id, created_at, id);
             ALTER TABLE sessions ADD COLUMN vault_ids TEXT;
             PRAGMA user_version = 16;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 17 {
        // Skills (issue 25): a skill, its versions (ids are epoch microseconds, per skill),
        // and each version's files as content-addressed blobs shared with `files`.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE skills (
                id TEXT PRIMARY KEY,
                display_name TEXT NOT NULL,
                name TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
             );
             CREATE TABLE skill_versions (
                skill_id TEXT NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
                id TEXT NOT NULL,
                name TEXT NOT NULL,
                description TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (skill_id, id)
             );
             CREATE TABLE skill_files (
                skill_id TEXT NOT NULL,
                version_id TEXT NOT NULL,
                path TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                size_bytes INTEGER NOT NULL,
                PRIMARY KEY (skill_id, version_id, path),
                FOREIGN KEY (skill_id, version_id) REFERENCES skill_versions (skill_id, id) ON DELETE CASCADE
             );
             CREATE INDEX skill_files_by_sha ON skill_files (sha256);
             PRAGMA user_version = 17;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 19 {
        // Deployments that fire a workflow (issue 24): a run reserves its workflow run's id
        // with its session's, before either exists, so recovery after a crash starts that
        // run at most once. Self-contained: needs no step 17 or 18.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE deployment_runs ADD COLUMN workflow_run_id TEXT;
             PRAGMA user_version = 19;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 22 {
        // A session's own skills (`agent_with_overrides.skills`, issue 25): the refs as JSON,
        // NULL for the agent's.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE sessions ADD COLUMN skills TEXT;
             PRAGMA user_version = 22;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 23 {
        // A session's outputs (issue 25): each file the agent leaves in /mnt/session/outputs
        // is a file scoped to the session, one per path (a changed file keeps its id); its
        // stamp (size, ctime, inode) lets an unchanged file go unread at the next capture.
        // Self-contained: needs no step 20 to 22.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE files ADD COLUMN scope_id TEXT;
             ALTER TABLE files ADD COLUMN scope_path TEXT;
             ALTER TABLE files ADD COLUMN scope_stamp TEXT;
             CREATE UNIQUE INDEX files_by_scope ON files (scope_id, scope_path)
                WHERE scope_id IS NOT NULL;
             PRAGMA user_version = 23;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    if version < 24 {
        // A session's own tools and MCP servers (`agent_with_overrides`, or `agent` on a
        // session update; issue 25) as JSON, NULL for its agent version's: a reload applies
        // them again, so they outlive a restart.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE sessions ADD COLUMN agent_overrides TEXT;
             PRAGMA user_version = 24;
             COMMIT;",
        )
        .map_err(|e| StoreError::Write(e.to_string()))?;
    }
    Ok(())
}
