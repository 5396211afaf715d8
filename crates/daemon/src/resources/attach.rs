//! A session's resources (hosted `/v1/sessions/{id}/resources`): uploaded files mounted
//! read-only into its sandbox, and GitHub repositories cloned into its workspace
//! ([`super::repos`]). Rows of `session_resources`; a file resource names its blob by sha256,
//! so the content stays while the session does, even if the file is deleted.
//!
//! Mounts are derived from the rows each time a session is loaded: every distinct parent
//! directory of the files' `mount_path`s is a directory under the session's data dir holding a
//! hard link (or copy) of each blob under its mount name, bound read-only at that parent.
//! Nothing there is authoritative, so a crash at any point leaves nothing to repair.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use tether_proto::file::{Checkout, ResourceParam, SessionResource, SessionResourceDeleted};
use tether_proto::{ErrorBody, ErrorCode, Paths};

use crate::ids;
use crate::store::Store;
use crate::store::error::StoreError;

/// At most this many resources per session (hosted: 500 on deployments).
pub const MAX_RESOURCES: usize = 100;

fn invalid(msg: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

/// A resource checked and ready to be stored with its session.
#[derive(Debug, Clone)]
pub struct Planned {
    pub resource: SessionResource,
    /// A file's blob.
    pub sha256: Option<String>,
    /// A repository's token: used for the clone, never stored.
    pub token: Option<String>,
}

/// A file's `mount_path`: absolute, clean, under `/mnt/` but not in a memory store's
/// `/mnt/memory/`, and not directly in `/mnt`.
fn check_file_mount(path: &str) -> Result<(), ErrorBody> {
    let p = Path::new(path);
    let clean = p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !path.ends_with('/')
        && !path.chars().any(char::is_control);
    let parent = p.parent().unwrap_or(Path::new("/"));
    if !clean
        || !p.starts_with("/mnt")
        || p.starts_with("/mnt/memory")
        || parent == Path::new("/mnt")
    {
        return Err(invalid(format!(
            "mount_path: `{path}` can't be used; a file is mounted at an absolute path in a directory under /mnt/ (not /mnt/memory/, which memory stores use), e.g. /mnt/session/uploads/data.csv"
        )));
    }
    Ok(())
}

/// A repository's `mount_path`: `/workspace/<dir>` (the session's workspace, where the
/// clone goes); returns the directory relative to the workspace.
pub fn repo_dir(mount_path: &str) -> Result<PathBuf, ErrorBody> {
    let rel = Path::new(mount_path)
        .strip_prefix("/workspace")
        .ok()
        .filter(|r| {
            !r.as_os_str().is_empty() && r.components().all(|c| matches!(c, Component::Normal(_)))
        });
    rel.map(Path::to_path_buf).ok_or_else(|| {
        invalid(format!(
            "mount_path: `{mount_path}` can't be used; a repository is cloned into the session's workspace, at /workspace/<directory> (e.g. /workspace/repo)"
        ))
    })
}

/// `https://github.com/OWNER/REPO` (optionally `.git`, a trailing `/`).
fn check_repo_url(url: &str) -> Result<(), ErrorBody> {
    let rest = url.strip_prefix("https://github.com/");
    let ok = rest.is_some_and(|r| {
        let parts: Vec<&str> = r.trim_end_matches('/').split('/').collect();
        parts.len() == 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && *p != "."
                    && *p != ".."
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
    });
    if !ok {
        return Err(invalid(format!(
            "url: `{url}` is not a GitHub repository URL; expected https://github.com/OWNER/REPO"
        )));
    }
    Ok(())
}

/// Checks `params` (files exist, paths are usable, no two at one path) and gives each an id.
pub async fn plan(store: &Store, params: &[ResourceParam]) -> Result<Vec<Planned>, ErrorBody> {
    if params.len() > MAX_RESOURCES {
        return Err(invalid(format!(
            "resources: {} given; a session takes at most {MAX_RESOURCES}",
            params.len()
        )));
    }
    let now = ids::now_rfc3339();
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in params {
        let planned = match p {
            ResourceParam::File {
                file_id,
                mount_path,
            } => {
                let meta = super::files::get(store, file_id).await?;
                let mount_path = mount_path
                    .clone()
                    .unwrap_or_else(|| format!("{}/{}", tether_proto::file::UPLOADS_DIR, meta.id));
                check_file_mount(&mount_path)?;
                Planned {
                    resource: SessionResource::File {
                        id: ids::session_resource_id(),
                        file_id: meta.id,
                        mount_path,
                        created_at: now.clone(),
                        updated_at: now.clone(),
                    },
                    sha256: Some(meta.sha256),
                    token: None,
                }
            }
            ResourceParam::GithubRepository {
                url,
                authorization_token,
                checkout,
                mount_path,
            } => {
                check_repo_url(url)?;
                let mount_path = match mount_path {
                    Some(m) => m.clone(),
                    None => format!(
                        "/workspace/{}",
                        tether_proto::file::repo_name(url).unwrap_or("repo")
                    ),
                };
                repo_dir(&mount_path)?;
                Planned {
                    resource: SessionResource::GithubRepository {
                        id: ids::session_resource_id(),
                        url: url.clone(),
                        mount_path,
                        checkout: checkout.clone(),
                        created_at: now.clone(),
                        updated_at: now.clone(),
                    },
                    sha256: None,
                    token: authorization_token.clone(),
                }
            }
        };
        let path = mount_of(&planned.resource).to_string();
        if !seen.insert(path.clone()) {
            return Err(invalid(format!(
                "resources: two resources are mounted at `{path}`; give one another mount_path"
            )));
        }
        out.push(planned);
    }
    Ok(out)
}

fn mount_of(r: &SessionResource) -> &str {
    match r {
        SessionResource::File { mount_path, .. }
        | SessionResource::GithubRepository { mount_path, .. } => mount_path,
    }
}

/// Stores planned resources of `session_id` (after its row; a file's blob is named before
/// the file could be deleted: both run on the writer).
pub async fn insert(store: &Store, session_id: &str, planned: &[Planned]) -> Result<(), ErrorBody> {
    let sid = session_id.to_string();
    let rows: Vec<Planned> = planned.to_vec();
    store
        .write(move |c| {
            for p in &rows {
                insert_in(c, &sid, p)?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

fn insert_in(c: &Connection, session_id: &str, p: &Planned) -> Result<(), StoreError> {
    let w = |e: rusqlite::Error| StoreError::Write(e.to_string());
    match &p.resource {
        SessionResource::File {
            id,
            file_id,
            mount_path,
            created_at,
            updated_at,
        } => {
            // The file may have been deleted since it was checked.
            let still: Option<i64> = c
                .prepare_cached("SELECT 1 FROM files WHERE id = ?1")?
                .query_row([file_id], |r| r.get(0))
                .optional()?;
            if still.is_none() {
                return Err(StoreError::Missing(format!(
                    "no file `{file_id}` (it was deleted); upload it again"
                )));
            }
            c.execute(
                "INSERT INTO session_resources (id, session_id, kind, file_id, sha256, mount_path, created_at, updated_at)
                 VALUES (?1, ?2, 'file', ?3, ?4, ?5, ?6, ?7)",
                params![id, session_id, file_id, p.sha256, mount_path, created_at, updated_at],
            )
            .map_err(w)?;
        }
        SessionResource::GithubRepository {
            id,
            url,
            mount_path,
            checkout,
            created_at,
            updated_at,
        } => {
            let checkout = checkout
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok());
            c.execute(
                "INSERT INTO session_resources (id, session_id, kind, url, checkout, mount_path, created_at, updated_at)
                 VALUES (?1, ?2, 'github_repository', ?3, ?4, ?5, ?6, ?7)",
                params![id, session_id, url, checkout, mount_path, created_at, updated_at],
            )
            .map_err(w)?;
        }
    }
    Ok(())
}

/// A row as (resource, blob sha256).
type Row = (SessionResource, Option<String>);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let kind: String = r.get(1)?;
    let id: String = r.get(0)?;
    let mount_path: String = r.get(6)?;
    let created_at: String = r.get(7)?;
    let updated_at: String = r.get(8)?;
    let sha: Option<String> = r.get(3)?;
    let resource = if kind == "file" {
        SessionResource::File {
            id,
            file_id: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            mount_path,
            created_at,
            updated_at,
        }
    } else {
        let checkout: Option<String> = r.get(5)?;
        SessionResource::GithubRepository {
            id,
            url: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
            mount_path,
            checkout: checkout.and_then(|c| serde_json::from_str::<Checkout>(&c).ok()),
            created_at,
            updated_at,
        }
    };
    Ok((resource, sha))
}

const COLS: &str = "id, kind, file_id, sha256, url, checkout, mount_path, created_at, updated_at";

fn rows_in(c: &Connection, session_id: &str) -> Result<Vec<Row>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM session_resources WHERE session_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([session_id], row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A session's resources, oldest first.
pub async fn list(store: &Store, session_id: &str) -> Result<Vec<SessionResource>, ErrorBody> {
    let sid = session_id.to_string();
    Ok(store
        .read(move |c| rows_in(c, &sid))
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect())
}

fn not_found(session_id: &str, id: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::NotFound,
        format!(
            "session `{session_id}` has no resource `{id}`; GET /v1/sessions/{session_id}/resources lists them"
        ),
    )
}

pub async fn get(store: &Store, session_id: &str, id: &str) -> Result<SessionResource, ErrorBody> {
    list(store, session_id)
        .await?
        .into_iter()
        .find(|r| r.id() == id)
        .ok_or_else(|| not_found(session_id, id))
}

/// Removes a resource; a file's blob goes if nothing else names it. (A loaded session keeps
/// what its sandbox already mounted until it is loaded again.)
pub async fn delete(
    store: &Store,
    paths: &Paths,
    session_id: &str,
    id: &str,
) -> Result<SessionResourceDeleted, ErrorBody> {
    let (sid, rid) = (session_id.to_string(), id.to_string());
    let found = store
        .write(move |c| {
            let sha: Option<Option<String>> = c
                .prepare_cached(
                    "SELECT sha256 FROM session_resources WHERE session_id = ?1 AND id = ?2",
                )?
                .query_row([&sid, &rid], |r| r.get(0))
                .optional()?;
            if sha.is_some() {
                c.execute(
                    "DELETE FROM session_resources WHERE session_id = ?1 AND id = ?2",
                    [&sid, &rid],
                )
                .map_err(|e| StoreError::Write(e.to_string()))?;
            }
            Ok(sha)
        })
        .await?;
    match found {
        None => Err(not_found(session_id, id)),
        Some(sha) => {
            if let Some(sha) = sha {
                super::files::release_blob(store, paths, sha).await;
            }
            Ok(SessionResourceDeleted {
                id: id.to_string(),
                object_type: "session_resource_deleted".into(),
            })
        }
    }
}

/// The file mounts of a session as (blob, mount path), read when it is loaded.
pub async fn file_mounts(store: &Store, paths: &Paths, session_id: &str) -> Vec<(String, String)> {
    let sid = session_id.to_string();
    let rows = store
        .read(move |c| rows_in(c, &sid))
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(session = %session_id, "cannot read the session's resources: {e}");
            Vec::new()
        });
    rows.into_iter()
        .filter_map(|(r, sha)| match (r, sha) {
            (SessionResource::File { mount_path, .. }, Some(sha)) => Some((
                super::files::blob_path(paths, &sha).display().to_string(),
                mount_path,
            )),
            _ => None,
        })
        .collect()
}

/// Sandbox mounts for `files` (blob, mount path): one read-only directory per parent of the
/// mount paths, under `sessions/<id>/mounts/`, holding each blob under its mount name.
pub fn sandbox_mounts(
    paths: &Paths,
    session_id: &str,
    files: &[(String, String)],
) -> Vec<crate::sandbox::Mount> {
    let root = paths.sessions_dir().join(session_id).join("mounts");
    let _ = std::fs::remove_dir_all(&root);
    let mut by_parent: BTreeMap<PathBuf, Vec<(&str, &str)>> = BTreeMap::new();
    for (blob, mount) in files {
        let p = Path::new(mount.as_str());
        if let (Some(parent), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) {
            by_parent
                .entry(parent.to_path_buf())
                .or_default()
                .push((blob.as_str(), name));
        }
    }
    let mut out = Vec::new();
    for (i, (parent, entries)) in by_parent.into_iter().enumerate() {
        let dir = root.join(i.to_string());
        if let Err(e) = crate::private::create_dir(&dir) {
            tracing::warn!(dir = %dir.display(), "cannot create a mount directory: {e}");
            continue;
        }
        for (blob, name) in entries {
            let link = dir.join(name);
            if std::fs::hard_link(blob, &link).is_err()
                && let Err(e) = std::fs::copy(blob, &link)
            {
                tracing::warn!(blob, "cannot place a session's file: {e}");
            }
        }
        out.push(crate::sandbox::Mount {
            src: dir,
            dst: parent,
            read_only: true,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_checked() {
        assert!(check_file_mount("/mnt/session/uploads/file_1").is_ok());
        assert!(check_file_mount("/mnt/data/a.csv").is_ok());
        for bad in [
            "mnt/a/b",
            "/mnt/a/../b",
            "/mnt/memory/x/y",
            "/mnt/x",
            "/etc/passwd",
            "/mnt/a/b/",
        ] {
            let e = check_file_mount(bad).unwrap_err();
            assert!(e.message.contains(bad), "{}", e.message);
        }
        assert_eq!(repo_dir("/workspace/repo").unwrap(), PathBuf::from("repo"));
        assert!(repo_dir("/workspace").is_err());
        assert!(repo_dir("/workspace/../x").is_err());
        assert!(repo_dir("/tmp/x").is_err());
        assert!(check_repo_url("https://github.com/o/r").is_ok());
        assert!(check_repo_url("https://github.com/o/r.git").is_ok());
        assert!(check_repo_url("http://github.com/o/r").is_err());
        assert!(check_repo_url("https://github.com/o/../x").is_err());
        assert!(check_repo_url("https://evil.com/o/r").is_err());
    }
}
