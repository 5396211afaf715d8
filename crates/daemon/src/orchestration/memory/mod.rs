//! Memory stores: versioned files that outlive sessions (hosted `memory_stores`). Both doors
//! call the functions here; [`rules`] checks input, [`db`] is the tables, [`mount`] keeps a
//! session's mounted copy (`/mnt/memory/<store>/` in its sandbox) and the store in step.
//!
//! Every write (create, modify, rename, delete) is a `memory_version` with the actor that
//! made it; the memory row is the current state. A write may carry the content hash it
//! expects (`content_sha256` precondition): checked inside the writer's transaction, so two
//! writers racing on one memory can't both win; the loser gets a 409
//! `memory_precondition_failed_error`.

pub mod db;
pub mod mount;
pub mod rules;

use std::sync::Arc;

use tether_proto::memory::{
    Access, Actor, MAX_STORES_PER_SESSION, MOUNT_ROOT, Memory, MemoryChanges, MemoryItem,
    MemoryPrefix, MemoryResourceParam, MemoryStore, MemoryStoreChanges, MemoryStoreSpec,
    MemoryVersion, NewMemory, SessionMemory, mount_slug,
};
use tether_proto::method::CreateSession;
use tether_proto::{ErrorBody, ErrorCode};

use crate::runtime::Runtime;
use crate::session::live::Session;
use crate::store::Store;

pub use db::VersionFilter;

fn invalid(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

/// The actor of writes made through the local socket (the CLI): the daemon's own user.
pub fn local_user() -> Actor {
    Actor::UserActor {
        user_id: format!("user_uid{}", nix::unistd::getuid().as_raw()),
    }
}

/// The actor of writes made through the HTTP API: its one token.
pub fn http_token() -> Actor {
    Actor::ApiActor {
        api_key_id: "apikey_tether_http_token".into(),
    }
}

pub async fn create_store(store: &Store, spec: MemoryStoreSpec) -> Result<MemoryStore, ErrorBody> {
    rules::store_name(&spec.name)?;
    if let Some(d) = &spec.description {
        rules::description(d)?;
    }
    crate::resources::agents::validate_metadata(&spec.metadata)?;
    Ok(store.write(move |c| db::insert_store(c, &spec)).await?)
}

pub async fn list_stores(
    store: &Store,
    include_archived: bool,
) -> Result<Vec<MemoryStore>, ErrorBody> {
    Ok(store
        .read(move |c| db::list_stores(c, include_archived))
        .await?)
}

/// A store by id or name (the socket and the CLI).
pub async fn resolve(store: &Store, reference: &str) -> Result<MemoryStore, ErrorBody> {
    let r = reference.to_string();
    Ok(store.read(move |c| db::resolve_store(c, &r)).await?)
}

/// A store by exact id (HTTP paths).
pub async fn by_id(store: &Store, id: &str) -> Result<MemoryStore, ErrorBody> {
    let id = id.to_string();
    Ok(store.read(move |c| db::store_by_id(c, &id)).await?)
}

pub async fn update_store(
    store: &Store,
    id: &str,
    changes: MemoryStoreChanges,
) -> Result<MemoryStore, ErrorBody> {
    if let Some(n) = &changes.name {
        rules::store_name(n)?;
    }
    if let Some(d) = &changes.description {
        rules::description(d)?;
    }
    if let Some(m) = &changes.metadata {
        let set: std::collections::BTreeMap<String, String> = m
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect();
        crate::resources::agents::validate_metadata(&set)?;
    }
    let id = id.to_string();
    Ok(store
        .write(move |c| db::update_store(c, &id, &changes))
        .await?)
}

pub async fn archive_store(store: &Store, id: &str) -> Result<MemoryStore, ErrorBody> {
    let id = id.to_string();
    Ok(store.write(move |c| db::archive_store(c, &id)).await?)
}

pub async fn delete_store(store: &Store, id: &str) -> Result<(), ErrorBody> {
    let id = id.to_string();
    Ok(store.write(move |c| db::delete_store(c, &id)).await?)
}

/// The memories under `prefix` (`/` for all); with `depth` > 0, memories deeper than that
/// many segments below the prefix are rolled up into `memory_prefix` items. By path.
pub async fn list_memories(
    store: &Store,
    store_id: &str,
    prefix: Option<&str>,
    depth: u32,
    full: bool,
) -> Result<Vec<MemoryItem>, ErrorBody> {
    let prefix = prefix.unwrap_or("/").to_string();
    rules::path_prefix(&prefix)?;
    let id = store_id.to_string();
    let rows = store
        .read(move |c| {
            db::store_by_id(c, &id)?;
            db::list_memories(c, &id, full)
        })
        .await?;
    Ok(rollup(
        rows.iter()
            .filter(|r| r.path.starts_with(&prefix))
            .map(|r| r.to_memory(full)),
        &prefix,
        depth,
    ))
}

/// Memories (sorted by path) under `prefix`, those more than `depth` segments below it
/// replaced by one `memory_prefix` per directory at that depth.
fn rollup(memories: impl Iterator<Item = Memory>, prefix: &str, depth: u32) -> Vec<MemoryItem> {
    let mut out: Vec<MemoryItem> = Vec::new();
    for m in memories {
        let rest = &m.path[prefix.len()..];
        if depth > 0 {
            let cut = rest
                .match_indices('/')
                .nth(depth as usize - 1)
                .map(|(i, _)| i);
            if let Some(i) = cut {
                let dir = format!("{prefix}{}/", &rest[..i]);
                if out.last().map(MemoryItem::path) != Some(dir.as_str()) {
                    out.push(MemoryItem::Prefix(MemoryPrefix {
                        object_type: "memory_prefix".into(),
                        path: dir,
                    }));
                }
                continue;
            }
        }
        out.push(MemoryItem::Memory(m));
    }
    // Prefixes sort by their path among the memories.
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// One memory by id or path, with its content.
pub async fn get_memory(
    store: &Store,
    store_id: &str,
    reference: &str,
) -> Result<Memory, ErrorBody> {
    let (id, r) = (store_id.to_string(), reference.to_string());
    let row = store
        .read(move |c| {
            db::store_by_id(c, &id)?;
            db::find_memory(c, &id, &r)
        })
        .await?;
    Ok(row.to_memory(true))
}

pub async fn create_memory(
    store: &Store,
    store_id: &str,
    new: NewMemory,
    actor: Actor,
) -> Result<Memory, ErrorBody> {
    rules::memory_path(&new.path)?;
    let content = new.content.unwrap_or_default();
    rules::content(&content)?;
    let id = store_id.to_string();
    let row = store
        .write(move |c| db::create_memory(c, &id, &new.path, &content, &actor))
        .await?;
    Ok(row.to_memory(true))
}

pub async fn update_memory(
    store: &Store,
    store_id: &str,
    memory_id: &str,
    changes: MemoryChanges,
    actor: Actor,
) -> Result<Memory, ErrorBody> {
    if let Some(p) = &changes.path {
        rules::memory_path(p)?;
    }
    if let Some(t) = &changes.content {
        rules::content(t)?;
    }
    let expected = match changes.precondition {
        Some(p) => {
            if p.kind != "content_sha256" {
                return Err(invalid(format!(
                    "precondition.type: expected `content_sha256`, got `{}`",
                    p.kind
                )));
            }
            rules::sha("precondition.content_sha256", &p.content_sha256)?;
            Some(p.content_sha256)
        }
        None => None,
    };
    let (sid, mid) = (store_id.to_string(), memory_id.to_string());
    let row = store
        .write(move |c| {
            db::store_by_id(c, &sid)?;
            db::update_memory(
                c,
                &sid,
                &mid,
                changes.content.as_deref(),
                changes.path.as_deref(),
                expected.as_deref(),
                &actor,
            )
        })
        .await?;
    Ok(row.to_memory(true))
}

/// The socket's write: creates the memory at `path` or replaces its content. `expected`:
/// the hash the current content must have, or `""` for "only if there is none yet".
pub async fn write_memory(
    store: &Store,
    store_id: &str,
    path: String,
    content: String,
    expected: Option<String>,
    actor: Actor,
) -> Result<Memory, ErrorBody> {
    rules::memory_path(&path)?;
    rules::content(&content)?;
    if let Some(e) = expected.as_deref().filter(|e| !e.is_empty()) {
        rules::sha("expected_sha256", e)?;
    }
    let sid = store_id.to_string();
    let row = store
        .write(move |c| match db::memory_by_path(c, &sid, &path)? {
            Some(existing) => {
                if expected.as_deref() == Some("") {
                    return Err(crate::store::error::StoreError::Refused(ErrorBody::new(
                        ErrorCode::MemoryPreconditionFailed,
                        format!(
                            "a memory is already at `{path}` ({}); pass its hash to replace it",
                            existing.id
                        ),
                    )));
                }
                db::update_memory(c, &sid, &existing.id, Some(&content), None, expected.as_deref(), &actor)
            }
            None => match expected.as_deref() {
                Some(e) if !e.is_empty() => Err(crate::store::error::StoreError::Refused(
                    ErrorBody::new(
                        ErrorCode::MemoryPreconditionFailed,
                        format!("no memory is at `{path}` any more (expected content_sha256 {e}); it was deleted or moved"),
                    ),
                )),
                _ => db::create_memory(c, &sid, &path, &content, &actor),
            },
        })
        .await?;
    Ok(row.to_memory(true))
}

/// Deletes a memory by id or path; returns its id.
pub async fn delete_memory(
    store: &Store,
    store_id: &str,
    reference: &str,
    expected: Option<String>,
    actor: Actor,
) -> Result<String, ErrorBody> {
    if let Some(e) = &expected {
        rules::sha("expected_content_sha256", e)?;
    }
    let (sid, r) = (store_id.to_string(), reference.to_string());
    Ok(store
        .write(move |c| {
            let row = db::find_memory(c, &sid, &r)?;
            db::delete_memory(c, &sid, &row.id, expected.as_deref(), &actor)?;
            Ok(row.id)
        })
        .await?)
}

pub async fn list_versions(
    store: &Store,
    store_id: &str,
    filter: VersionFilter,
    full: bool,
) -> Result<Vec<MemoryVersion>, ErrorBody> {
    let sid = store_id.to_string();
    Ok(store
        .read(move |c| {
            db::store_by_id(c, &sid)?;
            db::list_versions(c, &sid, &filter, full)
        })
        .await?)
}

pub async fn get_version(
    store: &Store,
    store_id: &str,
    id: &str,
    full: bool,
) -> Result<MemoryVersion, ErrorBody> {
    let (sid, id) = (store_id.to_string(), id.to_string());
    Ok(store
        .read(move |c| {
            db::store_by_id(c, &sid)?;
            db::get_version(c, &sid, &id, full)
        })
        .await?)
}

pub async fn redact_version(
    store: &Store,
    store_id: &str,
    id: &str,
    actor: Actor,
) -> Result<MemoryVersion, ErrorBody> {
    let (sid, id) = (store_id.to_string(), id.to_string());
    Ok(store
        .write(move |c| db::redact_version(c, &sid, &id, &actor))
        .await?)
}

/// Checks a session's `memory_store` resources and snapshots each store's name and
/// description; at most 8, each store once, none archived.
pub async fn attach(
    store: &Store,
    params: &[MemoryResourceParam],
) -> Result<Vec<SessionMemory>, ErrorBody> {
    if params.len() > MAX_STORES_PER_SESSION {
        return Err(invalid(format!(
            "resources: {} memory stores; a session mounts at most {MAX_STORES_PER_SESSION}",
            params.len()
        )));
    }
    let mut out: Vec<SessionMemory> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let m = attach_one(store, p).await.map_err(|mut e| {
            e.message = format!("resources[{i}]: {}", e.message);
            e
        })?;
        if let Some(clash) = clash(&out, &m) {
            return Err(invalid(format!("resources[{i}]: {clash}")));
        }
        out.push(m);
    }
    Ok(out)
}

/// One `memory_store` resource checked (the store exists and is live) and snapshotted.
pub async fn attach_one(
    store: &Store,
    p: &MemoryResourceParam,
) -> Result<SessionMemory, ErrorBody> {
    if p.kind != "memory_store" {
        return Err(invalid(format!(
            "type: expected `memory_store`, got `{}`",
            p.kind
        )));
    }
    if let Some(t) = &p.instructions {
        rules::instructions(t)?;
    }
    let s = resolve(store, &p.memory_store_id).await?;
    if s.archived_at.is_some() {
        return Err(invalid(format!(
            "the memory store {} is archived and can't be attached to new sessions",
            s.id
        )));
    }
    let mount_path = format!("{MOUNT_ROOT}/{}", mount_slug(&s.name));
    Ok(SessionMemory {
        kind: "memory_store".into(),
        memory_store_id: s.id,
        access: p.access.unwrap_or(Access::ReadWrite),
        instructions: p.instructions.clone(),
        name: s.name,
        description: s.description,
        mount_path,
    })
}

/// Why `m` can't be attached beside `others`: the same store twice, or two at one mount.
pub fn clash(others: &[SessionMemory], m: &SessionMemory) -> Option<String> {
    if others
        .iter()
        .any(|o| o.memory_store_id == m.memory_store_id)
    {
        return Some(format!(
            "the memory store {} is attached twice",
            m.memory_store_id
        ));
    }
    others
        .iter()
        .any(|o| o.mount_path == m.mount_path)
        .then(|| {
            format!(
                "two attached stores would both mount at {}; rename one of them",
                m.mount_path
            )
        })
}

/// Creates a session with its memory stores attached (both doors create sessions here).
pub async fn create_session(
    rt: &Arc<Runtime>,
    mut p: CreateSession,
) -> Result<Arc<Session>, ErrorBody> {
    let memory = attach(&rt.store, &std::mem::take(&mut p.memory_stores)).await?;
    rt.create_with_memory(p, memory, crate::runtime::Origin::default())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(path: &str) -> Memory {
        Memory {
            id: format!("mem_{path}"),
            object_type: "memory".into(),
            memory_store_id: "memstore_x".into(),
            path: path.into(),
            content: None,
            content_sha256: String::new(),
            content_size_bytes: 0,
            memory_version_id: String::new(),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn depth_rolls_up_deeper_memories_into_prefixes() {
        // Sorted by path, as the table answers.
        let all = ["/a.md", "/d/e/z.md", "/d/x.md", "/d/y.md", "/z.md"];
        let paths = |prefix: &str, depth| -> Vec<String> {
            rollup(
                all.iter().filter(|p| p.starts_with(prefix)).map(|p| mem(p)),
                prefix,
                depth,
            )
            .iter()
            .map(|i| i.path().to_string())
            .collect()
        };
        assert_eq!(paths("/", 0), all);
        assert_eq!(paths("/", 1), ["/a.md", "/d/", "/z.md"]);
        assert_eq!(paths("/d/", 1), ["/d/e/", "/d/x.md", "/d/y.md"]);
        assert_eq!(
            paths("/", 2),
            ["/a.md", "/d/e/", "/d/x.md", "/d/y.md", "/z.md"]
        );
    }
}
