//! The memory tables: every read and write as a function of one connection, run by the
//! store's reader pool or inside the writer's transaction (so a precondition checked here
//! holds until the write commits: there is one writer).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use tether_proto::memory::{
    Actor, Memory, MemoryStore, MemoryStoreChanges, MemoryStoreSpec, MemoryVersion, Operation,
};
use tether_proto::{ErrorBody, ErrorCode};

use super::rules;
use crate::ids;
use crate::store::error::StoreError;

fn refused(code: ErrorCode, msg: String) -> StoreError {
    StoreError::Refused(ErrorBody::new(code, msg))
}

fn write_err(e: rusqlite::Error) -> StoreError {
    StoreError::Write(e.to_string())
}

const STORE_COLS: &str = "id, name, description, metadata, created_at, updated_at, archived_at";

fn row_to_store(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryStore> {
    let metadata: String = r.get(3)?;
    Ok(MemoryStore {
        id: r.get(0)?,
        object_type: "memory_store".into(),
        name: r.get(1)?,
        description: r.get(2)?,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        archived_at: r.get(6)?,
    })
}

pub fn insert_store(c: &Connection, spec: &MemoryStoreSpec) -> Result<MemoryStore, StoreError> {
    let now = ids::now_rfc3339();
    let store = MemoryStore {
        id: ids::memory_store_id(),
        object_type: "memory_store".into(),
        name: spec.name.clone(),
        description: spec.description.clone().unwrap_or_default(),
        metadata: spec.metadata.clone(),
        created_at: now.clone(),
        updated_at: now,
        archived_at: None,
    };
    c.execute(
        &format!("INSERT INTO memory_stores ({STORE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)"),
        params![
            store.id,
            store.name,
            store.description,
            serde_json::to_string(&store.metadata).unwrap_or_else(|_| "{}".into()),
            store.created_at,
            store.updated_at,
        ],
    )
    .map_err(write_err)?;
    Ok(store)
}

pub fn get_store(c: &Connection, id: &str) -> Result<Option<MemoryStore>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {STORE_COLS} FROM memory_stores WHERE id = ?1"
    ))?
    .query_row([id], row_to_store)
    .optional()?)
}

fn no_store(reference: &str) -> StoreError {
    StoreError::Missing(format!(
        "no memory store `{reference}`; `tether memory stores ls` (or GET /v1/memory_stores) lists them"
    ))
}

/// The store `reference` names: an id, else a name (a live store before an archived one).
pub fn resolve_store(c: &Connection, reference: &str) -> Result<MemoryStore, StoreError> {
    if let Some(s) = get_store(c, reference)? {
        return Ok(s);
    }
    let mut named: Vec<MemoryStore> = c
        .prepare_cached(&format!(
            "SELECT {STORE_COLS} FROM memory_stores WHERE name = ?1 ORDER BY archived_at IS NOT NULL, created_at DESC"
        ))?
        .query_map([reference], row_to_store)?
        .collect::<Result<_, _>>()?;
    let live = named.iter().filter(|s| s.archived_at.is_none()).count();
    if live > 1 {
        return Err(refused(
            ErrorCode::Ambiguous,
            format!("{live} memory stores are named `{reference}`; use the id"),
        ));
    }
    if named.is_empty() {
        return Err(no_store(reference));
    }
    Ok(named.remove(0))
}

/// The store with exactly this id (HTTP paths take ids only).
pub fn store_by_id(c: &Connection, id: &str) -> Result<MemoryStore, StoreError> {
    get_store(c, id)?.ok_or_else(|| no_store(id))
}

pub fn list_stores(c: &Connection, include_archived: bool) -> Result<Vec<MemoryStore>, StoreError> {
    let sql = format!(
        "SELECT {STORE_COLS} FROM memory_stores {} ORDER BY created_at, id",
        if include_archived {
            ""
        } else {
            "WHERE archived_at IS NULL"
        }
    );
    Ok(c.prepare_cached(&sql)?
        .query_map([], row_to_store)?
        .collect::<Result<_, _>>()?)
}

fn archived(store: &MemoryStore, what: &str) -> StoreError {
    refused(
        ErrorCode::InvalidParams,
        format!(
            "the memory store {} is archived: {what}. Archived stores stay readable; create a new store to write",
            store.id
        ),
    )
}

pub fn update_store(
    c: &Connection,
    id: &str,
    changes: &MemoryStoreChanges,
) -> Result<MemoryStore, StoreError> {
    let mut store = store_by_id(c, id)?;
    if store.archived_at.is_some() {
        return Err(archived(&store, "it can't be updated"));
    }
    if let Some(n) = &changes.name {
        store.name = n.clone();
    }
    if let Some(d) = &changes.description {
        store.description = d.clone();
    }
    if let Some(patch) = &changes.metadata {
        for (k, v) in patch {
            match v {
                Some(v) => store.metadata.insert(k.clone(), v.clone()),
                None => store.metadata.remove(k),
            };
        }
        if store.metadata.len() > 16 {
            return Err(refused(
                ErrorCode::InvalidParams,
                "metadata: a store has at most 16 pairs after the patch".into(),
            ));
        }
    }
    store.updated_at = ids::now_rfc3339();
    c.execute(
        "UPDATE memory_stores SET name = ?2, description = ?3, metadata = ?4, updated_at = ?5 WHERE id = ?1",
        params![
            store.id,
            store.name,
            store.description,
            serde_json::to_string(&store.metadata).unwrap_or_else(|_| "{}".into()),
            store.updated_at
        ],
    )
    .map_err(write_err)?;
    Ok(store)
}

pub fn archive_store(c: &Connection, id: &str) -> Result<MemoryStore, StoreError> {
    let mut store = store_by_id(c, id)?;
    if store.archived_at.is_none() {
        let now = ids::now_rfc3339();
        c.execute(
            "UPDATE memory_stores SET archived_at = ?2, updated_at = ?2 WHERE id = ?1",
            params![store.id, now],
        )
        .map_err(write_err)?;
        store.archived_at = Some(now.clone());
        store.updated_at = now;
    }
    Ok(store)
}

/// Deletes the store; its memories, versions and mounts' bases go with it (cascade).
pub fn delete_store(c: &Connection, id: &str) -> Result<(), StoreError> {
    store_by_id(c, id)?;
    c.execute("DELETE FROM memory_stores WHERE id = ?1", [id])
        .map_err(write_err)?;
    Ok(())
}

// ---- memories ----

/// A memory row: the current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRow {
    pub id: String,
    pub store_id: String,
    pub path: String,
    pub content: Option<String>,
    pub sha256: String,
    pub size: u64,
    pub version_id: String,
    pub created_at: String,
    pub updated_at: String,
}

impl MemoryRow {
    pub fn to_memory(&self, full: bool) -> Memory {
        Memory {
            id: self.id.clone(),
            object_type: "memory".into(),
            memory_store_id: self.store_id.clone(),
            path: self.path.clone(),
            content: if full { self.content.clone() } else { None },
            content_sha256: self.sha256.clone(),
            content_size_bytes: self.size,
            memory_version_id: self.version_id.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }
}

fn mem_cols(with_content: bool) -> &'static str {
    if with_content {
        "id, store_id, path, content, sha256, length(CAST(content AS BLOB)), version_id, created_at, updated_at"
    } else {
        "id, store_id, path, NULL, sha256, length(CAST(content AS BLOB)), version_id, created_at, updated_at"
    }
}

fn row_to_memory(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryRow> {
    Ok(MemoryRow {
        id: r.get(0)?,
        store_id: r.get(1)?,
        path: r.get(2)?,
        content: r.get(3)?,
        sha256: r.get(4)?,
        size: r.get::<_, i64>(5)? as u64,
        version_id: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// Every memory of a store, by path.
pub fn list_memories(
    c: &Connection,
    store_id: &str,
    with_content: bool,
) -> Result<Vec<MemoryRow>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {} FROM memories WHERE store_id = ?1 ORDER BY path",
        mem_cols(with_content)
    ))?
    .query_map([store_id], row_to_memory)?
    .collect::<Result<_, _>>()?)
}

/// Path and hash of every memory of a store (what a mount compares against).
/// Grows with every change to the store's memories (each writes a version row, and version
/// rows are only deleted with their store): equal twice, nothing changed in between.
pub fn store_generation(c: &Connection, store_id: &str) -> Result<i64, StoreError> {
    Ok(
        c.prepare_cached(
            "SELECT COALESCE(MAX(rowid), 0) FROM memory_versions WHERE store_id = ?1",
        )?
        .query_row([store_id], |r| r.get(0))?,
    )
}

pub fn memory_hashes(
    c: &Connection,
    store_id: &str,
) -> Result<BTreeMap<String, (String, String)>, StoreError> {
    let mut out = BTreeMap::new();
    let mut st = c.prepare_cached("SELECT path, id, sha256 FROM memories WHERE store_id = ?1")?;
    let rows = st.query_map([store_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for r in rows {
        let (path, id, sha) = r?;
        out.insert(path, (id, sha));
    }
    Ok(out)
}

pub fn memory_by_id(
    c: &Connection,
    store_id: &str,
    id: &str,
) -> Result<Option<MemoryRow>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {} FROM memories WHERE store_id = ?1 AND id = ?2",
        mem_cols(true)
    ))?
    .query_row([store_id, id], row_to_memory)
    .optional()?)
}

pub fn memory_by_path(
    c: &Connection,
    store_id: &str,
    path: &str,
) -> Result<Option<MemoryRow>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {} FROM memories WHERE store_id = ?1 AND path = ?2",
        mem_cols(true)
    ))?
    .query_row([store_id, path], row_to_memory)
    .optional()?)
}

pub fn no_memory(store_id: &str, reference: &str) -> StoreError {
    StoreError::Missing(format!(
        "no memory `{reference}` in the memory store {store_id}"
    ))
}

/// A memory by id (`mem_…`) or path (`/…`).
pub fn find_memory(
    c: &Connection,
    store_id: &str,
    reference: &str,
) -> Result<MemoryRow, StoreError> {
    let found = if reference.starts_with('/') {
        memory_by_path(c, store_id, reference)?
    } else {
        memory_by_id(c, store_id, reference)?
    };
    found.ok_or_else(|| no_memory(store_id, reference))
}

fn path_taken(path: &str, other: &str) -> StoreError {
    refused(
        ErrorCode::MemoryPathConflict,
        format!(
            "the path `{path}` is taken by the memory {other} (conflicting_memory_id: {other}); update that memory, or pick another path"
        ),
    )
}

fn precondition_failed(id: &str, expected: &str, actual: Option<&str>) -> StoreError {
    refused(
        ErrorCode::MemoryPreconditionFailed,
        match actual {
            Some(actual) => format!(
                "the memory {id} changed since you read it: its content_sha256 is {actual}, not {expected}. Read it again, merge, and retry with the new hash"
            ),
            None => format!(
                "the memory {id} no longer exists (expected content_sha256 {expected}); it was deleted"
            ),
        },
    )
}

fn writable(c: &Connection, store_id: &str, what: &str) -> Result<MemoryStore, StoreError> {
    let store = store_by_id(c, store_id)?;
    if store.archived_at.is_some() {
        return Err(archived(&store, what));
    }
    Ok(store)
}

#[allow(clippy::too_many_arguments)]
fn insert_version(
    c: &Connection,
    store_id: &str,
    memory_id: &str,
    op: Operation,
    path: &str,
    content: Option<&str>,
    actor: &Actor,
    at: &str,
) -> Result<String, StoreError> {
    let id = ids::memory_version_id();
    let session = match actor {
        Actor::SessionActor { session_id } => Some(session_id.as_str()),
        _ => None,
    };
    c.prepare_cached(
        "INSERT INTO memory_versions (id, store_id, memory_id, operation, path, content, sha256, size, created_by, session_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        id,
        store_id,
        memory_id,
        op.as_str(),
        path,
        content,
        content.map(|t| rules::sha256_hex(t.as_bytes())),
        content.map(|t| t.len() as i64),
        serde_json::to_string(actor).ok(),
        session,
        at,
    ])
    .map_err(write_err)?;
    Ok(id)
}

/// Creates a memory at a free path.
pub fn create_memory(
    c: &Connection,
    store_id: &str,
    path: &str,
    content: &str,
    actor: &Actor,
) -> Result<MemoryRow, StoreError> {
    writable(c, store_id, "no memory can be created in it")?;
    if let Some(other) = memory_by_path(c, store_id, path)? {
        return Err(path_taken(path, &other.id));
    }
    let now = ids::now_rfc3339();
    let id = ids::memory_id();
    let version = insert_version(
        c,
        store_id,
        &id,
        Operation::Created,
        path,
        Some(content),
        actor,
        &now,
    )?;
    let row = MemoryRow {
        id,
        store_id: store_id.into(),
        path: path.into(),
        content: Some(content.into()),
        sha256: rules::sha256_hex(content.as_bytes()),
        size: content.len() as u64,
        version_id: version,
        created_at: now.clone(),
        updated_at: now,
    };
    c.prepare_cached(
        "INSERT INTO memories (id, store_id, path, content, sha256, version_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        row.id,
        row.store_id,
        row.path,
        content,
        row.sha256,
        row.version_id,
        row.created_at,
        row.updated_at
    ])
    .map_err(write_err)?;
    Ok(row)
}

/// New content and/or a new path for a memory, if its hash is still `expected` (when given).
/// A change to nothing makes no version.
pub fn update_memory(
    c: &Connection,
    store_id: &str,
    memory_id: &str,
    content: Option<&str>,
    path: Option<&str>,
    expected: Option<&str>,
    actor: &Actor,
) -> Result<MemoryRow, StoreError> {
    writable(c, store_id, "its memories can't be changed")?;
    let Some(mut row) = memory_by_id(c, store_id, memory_id)? else {
        return Err(match expected {
            Some(e) => precondition_failed(memory_id, e, None),
            None => no_memory(store_id, memory_id),
        });
    };
    if let Some(e) = expected
        && e != row.sha256
    {
        return Err(precondition_failed(memory_id, e, Some(&row.sha256)));
    }
    let new_path = path.unwrap_or(&row.path).to_string();
    let new_content =
        content.map_or_else(|| row.content.clone().unwrap_or_default(), str::to_string);
    if new_path == row.path && row.content.as_deref() == Some(new_content.as_str()) {
        return Ok(row);
    }
    if new_path != row.path
        && let Some(other) = memory_by_path(c, store_id, &new_path)?
    {
        return Err(path_taken(&new_path, &other.id));
    }
    let now = ids::now_rfc3339();
    row.version_id = insert_version(
        c,
        store_id,
        memory_id,
        Operation::Modified,
        &new_path,
        Some(&new_content),
        actor,
        &now,
    )?;
    row.sha256 = rules::sha256_hex(new_content.as_bytes());
    row.size = new_content.len() as u64;
    row.path = new_path;
    row.content = Some(new_content);
    row.updated_at = now;
    c.prepare_cached(
        "UPDATE memories SET path = ?2, content = ?3, sha256 = ?4, version_id = ?5, updated_at = ?6 WHERE id = ?1",
    )?
    .execute(params![
        row.id,
        row.path,
        row.content,
        row.sha256,
        row.version_id,
        row.updated_at
    ])
    .map_err(write_err)?;
    Ok(row)
}

/// Deletes a memory (its versions stay), if its hash is still `expected` (when given).
/// Allowed on archived stores.
pub fn delete_memory(
    c: &Connection,
    store_id: &str,
    memory_id: &str,
    expected: Option<&str>,
    actor: &Actor,
) -> Result<(), StoreError> {
    store_by_id(c, store_id)?;
    let Some(row) = memory_by_id(c, store_id, memory_id)? else {
        return Err(no_memory(store_id, memory_id));
    };
    if let Some(e) = expected
        && e != row.sha256
    {
        return Err(precondition_failed(memory_id, e, Some(&row.sha256)));
    }
    let now = ids::now_rfc3339();
    insert_version(
        c,
        store_id,
        memory_id,
        Operation::Deleted,
        &row.path,
        None,
        actor,
        &now,
    )?;
    c.execute("DELETE FROM memories WHERE id = ?1", [memory_id])
        .map_err(write_err)?;
    Ok(())
}

// ---- versions ----

const VERSION_COLS: &str = "id, memory_id, store_id, operation, content, sha256, size, path, created_by, redacted_at, redacted_by, created_at";

fn row_to_version(r: &rusqlite::Row<'_>, full: bool) -> rusqlite::Result<MemoryVersion> {
    let op: String = r.get(3)?;
    let actor = |i: usize| -> rusqlite::Result<Option<Actor>> {
        Ok(r.get::<_, Option<String>>(i)?
            .and_then(|a| serde_json::from_str(&a).ok()))
    };
    Ok(MemoryVersion {
        id: r.get(0)?,
        object_type: "memory_version".into(),
        memory_id: r.get(1)?,
        memory_store_id: r.get(2)?,
        operation: match op.as_str() {
            "created" => Operation::Created,
            "deleted" => Operation::Deleted,
            _ => Operation::Modified,
        },
        content: if full { r.get(4)? } else { None },
        content_sha256: r.get(5)?,
        content_size_bytes: r.get::<_, Option<i64>>(6)?.map(|n| n as u64),
        path: r.get(7)?,
        created_by: actor(8)?,
        redacted_at: r.get(9)?,
        redacted_by: actor(10)?,
        created_at: r.get(11)?,
    })
}

/// Filters of a version listing.
#[derive(Debug, Clone, Default)]
pub struct VersionFilter {
    pub memory_id: Option<String>,
    pub operation: Option<String>,
    pub session_id: Option<String>,
}

/// A store's versions, newest first.
pub fn list_versions(
    c: &Connection,
    store_id: &str,
    f: &VersionFilter,
    full: bool,
) -> Result<Vec<MemoryVersion>, StoreError> {
    let mut sql = format!("SELECT {VERSION_COLS} FROM memory_versions WHERE store_id = ?1");
    let mut args: Vec<String> = vec![store_id.into()];
    for (col, v) in [
        ("memory_id", &f.memory_id),
        ("operation", &f.operation),
        ("session_id", &f.session_id),
    ] {
        if let Some(v) = v {
            args.push(v.clone());
            sql.push_str(&format!(" AND {col} = ?{}", args.len()));
        }
    }
    sql.push_str(" ORDER BY id DESC");
    Ok(c.prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args), |r| {
            row_to_version(r, full)
        })?
        .collect::<Result<_, _>>()?)
}

pub fn get_version(
    c: &Connection,
    store_id: &str,
    id: &str,
    full: bool,
) -> Result<MemoryVersion, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {VERSION_COLS} FROM memory_versions WHERE store_id = ?1 AND id = ?2"
    ))?
    .query_row([store_id, id], |r| row_to_version(r, full))
    .optional()?
    .ok_or_else(|| {
        StoreError::Missing(format!(
            "no memory version `{id}` in the memory store {store_id}"
        ))
    })
}

/// Wipes a version's content, hash, size and path (kept: who, when, which memory). The
/// current version of a memory can't be redacted: its content is the memory's.
pub fn redact_version(
    c: &Connection,
    store_id: &str,
    id: &str,
    actor: &Actor,
) -> Result<MemoryVersion, StoreError> {
    store_by_id(c, store_id)?;
    let v = get_version(c, store_id, id, false)?;
    if v.redacted_at.is_none() {
        let current: Option<String> = c
            .prepare_cached("SELECT id FROM memories WHERE version_id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        if let Some(mem) = current {
            return Err(refused(
                ErrorCode::InvalidParams,
                format!(
                    "{id} is the current version of the memory {mem}; write new content (or delete the memory) first, then redact this version"
                ),
            ));
        }
        c.execute(
            "UPDATE memory_versions SET content = NULL, sha256 = NULL, size = NULL, path = NULL, redacted_at = ?2, redacted_by = ?3 WHERE id = ?1",
            params![id, ids::now_rfc3339(), serde_json::to_string(actor).ok()],
        )
        .map_err(write_err)?;
    }
    get_version(c, store_id, id, true)
}

// ---- mounts: what each session's copy held when last synced ----

pub fn mount_base(
    c: &Connection,
    session_id: &str,
    store_id: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    let mut out = BTreeMap::new();
    let mut st = c.prepare_cached(
        "SELECT path, sha256 FROM memory_mounts WHERE session_id = ?1 AND store_id = ?2",
    )?;
    for r in st.query_map([session_id, store_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })? {
        let (p, s) = r?;
        out.insert(p, s);
    }
    Ok(out)
}

/// Records (`Some`) or forgets (`None`) what the session's copy of `path` holds.
pub fn set_base(
    c: &Connection,
    session_id: &str,
    store_id: &str,
    path: &str,
    sha: Option<&str>,
) -> Result<(), StoreError> {
    match sha {
        Some(sha) => c
            .prepare_cached(
                "INSERT OR REPLACE INTO memory_mounts (session_id, store_id, path, sha256) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![session_id, store_id, path, sha]),
        None => c
            .prepare_cached(
                "DELETE FROM memory_mounts WHERE session_id = ?1 AND store_id = ?2 AND path = ?3",
            )?
            .execute(params![session_id, store_id, path]),
    }
    .map_err(write_err)?;
    Ok(())
}
