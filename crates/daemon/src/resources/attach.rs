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
use tether_proto::file::{
    Checkout, ResourceParam, SessionResource, SessionResourceDeleted, UPLOADS_DIR,
};
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

/// A file's `mount_path` as the hosted API resolves it: every file is mounted under
/// `/mnt/session/uploads/`. A path already there stays; any other is re-rooted there, so
/// `data.csv` and `/data.csv` are `/mnt/session/uploads/data.csv` and `/uploads/a.pdf` is
/// `/mnt/session/uploads/uploads/a.pdf` (what the session's resource then reports, and where
/// the agent finds it). `.`, `..`, an empty name and control characters are refused.
pub fn resolve_file_mount(path: &str) -> Result<String, ErrorBody> {
    let bad = |why: &str| {
        invalid(format!(
            "mount_path: `{path}` can't be used ({why}); a file is mounted under {UPLOADS_DIR}/ at the path given: `data.csv` or `/data.csv` is {UPLOADS_DIR}/data.csv"
        ))
    };
    if path.chars().any(char::is_control) {
        return Err(bad("it has a control character"));
    }
    if path.len() > 1024 {
        return Err(bad("it is longer than 1024 bytes"));
    }
    if path.trim_end_matches('/') == UPLOADS_DIR {
        return Err(bad("it is the uploads directory itself"));
    }
    let under = path
        .strip_prefix(UPLOADS_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(path)
        .trim_start_matches('/');
    if under.is_empty() || under.ends_with('/') {
        return Err(bad("it names no file"));
    }
    if under
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad("`.`, `..` and empty names aren't allowed in it"));
    }
    Ok(format!("{UPLOADS_DIR}/{under}"))
}

/// Whether two mount paths can't both be used: the same path, or one a directory of the
/// other.
pub fn mounts_clash(a: &str, b: &str) -> bool {
    let inside = |x: &str, dir: &str| x.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
    a == b || inside(a, b) || inside(b, a)
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
    let mut seen: Vec<String> = Vec::new();
    for p in params {
        let planned = match p {
            ResourceParam::File {
                file_id,
                mount_path,
            } => {
                let meta = super::files::get(store, file_id).await?;
                let mount_path = match mount_path {
                    Some(m) => resolve_file_mount(m)?,
                    None => format!("{UPLOADS_DIR}/{}", meta.id),
                };
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
        if let Some(other) = seen.iter().find(|s: &&String| mounts_clash(s, &path)) {
            return Err(invalid(format!(
                "resources: `{path}` and `{other}` can't both be mounted (the same path, or one inside the other); give one another mount_path"
            )));
        }
        seen.push(path);
        out.push(planned);
    }
    Ok(out)
}

/// Where a resource is mounted (a file) or cloned (a repository).
pub fn mount_of(r: &SessionResource) -> &str {
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

/// Removes a resource; a file leaves the session's uploads tree at once, and its blob goes if
/// nothing else names it.
pub async fn delete(
    store: &Store,
    paths: &Paths,
    session_id: &str,
    id: &str,
) -> Result<SessionResourceDeleted, ErrorBody> {
    let (sid, rid) = (session_id.to_string(), id.to_string());
    let found = store
        .write(move |c| {
            let sha: Option<(Option<String>, String)> = c
                .prepare_cached(
                    "SELECT sha256, mount_path FROM session_resources WHERE session_id = ?1 AND id = ?2",
                )?
                .query_row([&sid, &rid], |r| Ok((r.get(0)?, r.get(1)?)))
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
        Some((sha, mount_path)) => {
            unplace(paths, session_id, &mount_path);
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

/// The host directory bound read-only at `/mnt/session/uploads` in `session_id`'s sandbox: a
/// tree of hard links (or copies) of its files' blobs at their mount paths.
pub fn uploads_dir(paths: &Paths, session_id: &str) -> PathBuf {
    paths.sessions_dir().join(session_id).join("uploads")
}

/// Builds `session_id`'s uploads tree from `files` (blob, mount path) anew and returns the
/// sandbox mounts for them: the tree at `/mnt/session/uploads` (when it holds a file, or
/// `always`, so that files added later appear in a running sandbox), and, for files stored
/// by older versions at other paths under `/mnt/`, one read-only directory per parent.
pub fn sandbox_mounts(
    paths: &Paths,
    session_id: &str,
    files: &[(String, String)],
    always: bool,
) -> Vec<crate::sandbox::Mount> {
    let tree = uploads_dir(paths, session_id);
    let legacy_root = paths.sessions_dir().join(session_id).join("mounts");
    let _ = std::fs::remove_dir_all(&tree);
    let _ = std::fs::remove_dir_all(&legacy_root);
    let mut out = Vec::new();
    if let Err(e) = crate::private::create_dir(&tree) {
        tracing::warn!(dir = %tree.display(), "cannot create the session's uploads directory: {e}");
        return out;
    }
    let mut by_parent: BTreeMap<PathBuf, Vec<(&str, &str)>> = BTreeMap::new();
    let mut uploads = 0;
    for (blob, mount) in files {
        if let Some(rel) = under_uploads(mount) {
            place_in(&tree, blob, rel);
            uploads += 1;
            continue;
        }
        let p = Path::new(mount.as_str());
        if let (Some(parent), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) {
            by_parent
                .entry(parent.to_path_buf())
                .or_default()
                .push((blob.as_str(), name));
        }
    }
    if uploads > 0 || always {
        out.push(crate::sandbox::Mount {
            src: tree,
            dst: UPLOADS_DIR.into(),
            read_only: true,
        });
    }
    for (i, (parent, entries)) in by_parent.into_iter().enumerate() {
        let dir = legacy_root.join(i.to_string());
        if let Err(e) = crate::private::create_dir(&dir) {
            tracing::warn!(dir = %dir.display(), "cannot create a mount directory: {e}");
            continue;
        }
        for (blob, name) in entries {
            place_in(&dir, blob, name);
        }
        out.push(crate::sandbox::Mount {
            src: dir,
            dst: parent,
            read_only: true,
        });
    }
    out
}

/// A mount path's place in the uploads tree.
fn under_uploads(mount_path: &str) -> Option<&str> {
    mount_path
        .strip_prefix(UPLOADS_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .filter(|r| !r.is_empty())
}

/// Links `blob` at `rel` in `tree` (its directories created).
fn place_in(tree: &Path, blob: &str, rel: &str) {
    let link = tree.join(rel);
    if let Some(dir) = link.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        tracing::warn!(dir = %dir.display(), "cannot create a directory for a session's file: {e}");
        return;
    }
    let _ = std::fs::remove_file(&link);
    if std::fs::hard_link(blob, &link).is_err()
        && let Err(e) = std::fs::copy(blob, &link)
    {
        tracing::warn!(blob, "cannot place a session's file: {e}");
    }
}

/// A file added to a session: placed in its uploads tree at once when the tree exists (the
/// session is or was loaded), so a running sandbox sees it; otherwise the next load does.
pub fn place_added(paths: &Paths, session_id: &str, sha256: &str, mount_path: &str) {
    let tree = uploads_dir(paths, session_id);
    if let (true, Some(rel)) = (tree.is_dir(), under_uploads(mount_path)) {
        let blob = super::files::blob_path(paths, sha256);
        place_in(&tree, &blob.to_string_lossy(), rel);
    }
}

/// A file removed from a session: gone from its uploads tree at once.
fn unplace(paths: &Paths, session_id: &str, mount_path: &str) {
    if let Some(rel) = under_uploads(mount_path) {
        let _ = std::fs::remove_file(uploads_dir(paths, session_id).join(rel));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_rerooted_under_uploads() {
        for (given, resolved) in [
            ("data.csv", "/mnt/session/uploads/data.csv"),
            ("/data.csv", "/mnt/session/uploads/data.csv"),
            (
                "/uploads/receipt.pdf",
                "/mnt/session/uploads/uploads/receipt.pdf",
            ),
            (
                "/mnt/session/uploads/a/b.txt",
                "/mnt/session/uploads/a/b.txt",
            ),
            ("/mnt/data/a.csv", "/mnt/session/uploads/mnt/data/a.csv"),
            ("/etc/passwd", "/mnt/session/uploads/etc/passwd"),
        ] {
            assert_eq!(resolve_file_mount(given).unwrap(), resolved, "{given}");
        }
        for bad in [
            "",
            "/",
            "/mnt/session/uploads",
            "/mnt/session/uploads/",
            "a/../../etc/passwd",
            "./a",
            "a//b",
            "a/b/",
            "a\nb",
        ] {
            let e = resolve_file_mount(bad).unwrap_err();
            assert!(e.message.contains("can't be used"), "{bad}: {}", e.message);
        }
        assert!(mounts_clash("/u/a", "/u/a"));
        assert!(mounts_clash("/u/a", "/u/a/b"));
        assert!(mounts_clash("/u/a/b", "/u/a"));
        assert!(!mounts_clash("/u/a", "/u/ab"));
    }

    #[test]
    fn paths_and_urls_are_checked() {
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
