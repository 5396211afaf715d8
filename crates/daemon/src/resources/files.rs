//! Uploaded files (hosted `/v1/files`): the content is a blob under the data dir named by its
//! sha256 (`files/blobs/<sha256>`), the metadata a row of `files`.
//!
//! Crash safety: an upload is written to `files/tmp/`, fsynced, then — on the writer thread,
//! so no delete can interleave — renamed to its blob name (the directory fsynced) and its row
//! inserted. A kill before the rename leaves a temp file, after it at worst a blob without a
//! row; both are swept at start ([`sweep`]). A row never exists without its blob. A delete
//! removes the row, then (again on the writer) the blob if no file or session resource still
//! names it. Identical uploads share a blob.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use tether_proto::file::{FileDeleted, FileMetadata};
use tether_proto::{ErrorBody, ErrorCode, Paths};

use crate::ids;
use crate::store::Store;
use crate::store::error::StoreError;

/// Where a blob of `sha256` lives.
pub fn blob_path(paths: &Paths, sha256: &str) -> PathBuf {
    paths.data_dir.join("files").join("blobs").join(sha256)
}

pub(crate) fn tmp_dir(paths: &Paths) -> PathBuf {
    paths.data_dir.join("files").join("tmp")
}

fn not_found(id: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::NotFound,
        format!("no file `{id}`; `tether files ls` (or GET /v1/files) lists them"),
    )
}

/// The MIME type of a file called `name`, from its extension (`application/octet-stream`
/// when unknown).
pub fn guess_mime(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "html" | "htm" => "text/html",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "zip" => "application/zip",
        "py" => "text/x-python",
        "rs" => "text/x-rust",
        _ => "application/octet-stream",
    }
}

/// The name kept for an uploaded file: the last component of what the client sent (hosted
/// rule), `unnamed` if that is empty.
pub fn clean_filename(sent: Option<&str>) -> String {
    let last = sent
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect::<String>();
    match last.trim() {
        "" | "." | ".." => "unnamed".into(),
        t => t.to_string(),
    }
}

/// An upload in progress: bytes go to a temp file while they are hashed and counted.
pub struct Upload {
    file: std::fs::File,
    tmp: PathBuf,
    hash: ring::digest::Context,
    size: u64,
    max: u64,
}

/// Why an upload stopped.
#[derive(Debug)]
pub enum UploadError {
    /// More than the limit was sent.
    TooLarge {
        max: u64,
    },
    Io(String),
}

impl Upload {
    pub fn start(paths: &Paths, max: u64) -> Result<Upload, UploadError> {
        let dir = tmp_dir(paths);
        crate::private::create_dir(&dir)
            .map_err(|e| UploadError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let tmp = dir.join(ids::request_id());
        let file = crate::private::file_options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| UploadError::Io(format!("cannot create {}: {e}", tmp.display())))?;
        Ok(Upload {
            file,
            tmp,
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            size: 0,
            max,
        })
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(UploadError::TooLarge { max: self.max });
        }
        self.hash.update(chunk);
        self.file
            .write_all(chunk)
            .map_err(|e| UploadError::Io(format!("cannot write the upload: {e}")))
    }

    /// Makes the content durable and stores the file: blob first, then its row.
    pub async fn finish(
        self,
        store: &Store,
        paths: &Paths,
        filename: String,
        mime_type: String,
    ) -> Result<FileMetadata, ErrorBody> {
        let Upload {
            file,
            tmp,
            hash,
            size,
            ..
        } = self;
        let storage = |e: String| ErrorBody::new(ErrorCode::Storage, e);
        let synced = tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| storage(e.to_string()))?;
        if let Err(e) = synced {
            let _ = std::fs::remove_file(&tmp);
            return Err(storage(format!("cannot save the upload: {e}")));
        }
        let sha256: String = hash
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let meta = FileMetadata {
            id: ids::file_id(),
            object_type: "file".into(),
            filename,
            mime_type,
            size_bytes: size,
            created_at: ids::now_rfc3339(),
            downloadable: true,
            expires_at: None,
            sha256: sha256.clone(),
            scope: None,
        };
        let blob = blob_path(paths, &sha256);
        let row = meta.clone();
        let cleanup = tmp.clone();
        let stored = store
            .write(move |c| {
                // On the writer: no delete of the same blob runs between rename and insert.
                place_blob(&tmp, &blob).map_err(StoreError::Write)?;
                insert(c, &row)
            })
            .await;
        if let Err(e) = stored {
            let _ = std::fs::remove_file(&cleanup);
            return Err(e.into());
        }
        Ok(meta)
    }

    /// Makes the content durable without storing a file row: (temp path, sha256, size), for
    /// a caller that places the blob ([`place_blob`]) and names it in its own rows (skills).
    pub fn seal(self) -> Result<(PathBuf, String, u64), UploadError> {
        self.seal_with(true)
    }

    /// As [`Self::seal`] but without the fsync, for a caller that syncs many at once
    /// (`syncfs`) before it names them.
    pub fn seal_unsynced(self) -> Result<(PathBuf, String, u64), UploadError> {
        self.seal_with(false)
    }

    fn seal_with(self, sync: bool) -> Result<(PathBuf, String, u64), UploadError> {
        let Upload {
            file,
            tmp,
            hash,
            size,
            ..
        } = self;
        if sync && let Err(e) = file.sync_all() {
            let _ = std::fs::remove_file(&tmp);
            return Err(UploadError::Io(format!("cannot save the upload: {e}")));
        }
        let sha256 = hash
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((tmp, sha256, size))
    }

    /// Gives up: the temp file goes.
    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Stores `bytes` as a file (the socket's `file.upload`; HTTP streams into an [`Upload`]).
pub async fn store_bytes(
    store: &Store,
    paths: &Paths,
    max: u64,
    filename: &str,
    mime_type: Option<String>,
    bytes: &[u8],
) -> Result<FileMetadata, ErrorBody> {
    let filename = clean_filename(Some(filename));
    let mime_type = mime_type.unwrap_or_else(|| guess_mime(&filename).to_string());
    let mut up = Upload::start(paths, max).map_err(ErrorBody::from)?;
    if let Err(e) = up.write(bytes) {
        up.abort();
        return Err(e.into());
    }
    up.finish(store, paths, filename, mime_type).await
}

impl From<UploadError> for ErrorBody {
    fn from(e: UploadError) -> ErrorBody {
        match e {
            UploadError::TooLarge { max } => {
                ErrorBody::new(ErrorCode::InvalidParams, too_large_message(max))
            }
            UploadError::Io(m) => ErrorBody::new(ErrorCode::Storage, m),
        }
    }
}

/// What a too-large upload is told.
pub fn too_large_message(max: u64) -> String {
    format!(
        "the file is larger than {max} bytes, the most this tetherd accepts; split it, or raise `max_bytes` under [files] in config.toml"
    )
}

/// Renames the fsynced temp file to its blob name and makes the rename durable.
pub(crate) fn place_blob(tmp: &Path, blob: &Path) -> Result<(), String> {
    let dir = blob.parent().ok_or("a blob path has a parent")?;
    crate::private::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::rename(tmp, blob).map_err(|e| format!("cannot store the upload: {e}"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

pub(crate) const COLS: &str = "id, filename, mime_type, size_bytes, sha256, created_at, scope_id";

pub(crate) fn row_to_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileMetadata> {
    Ok(FileMetadata {
        id: r.get(0)?,
        object_type: "file".into(),
        filename: r.get(1)?,
        mime_type: r.get(2)?,
        size_bytes: r.get::<_, i64>(3)?.max(0) as u64,
        sha256: r.get(4)?,
        created_at: r.get(5)?,
        downloadable: true,
        expires_at: None,
        scope: r
            .get::<_, Option<String>>(6)?
            .map(|id| tether_proto::file::FileScope {
                id,
                scope_type: "session".into(),
            }),
    })
}

pub(crate) fn insert(c: &Connection, f: &FileMetadata) -> Result<(), StoreError> {
    c.execute(
        &format!("INSERT INTO files ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            f.id,
            f.filename,
            f.mime_type,
            f.size_bytes as i64,
            f.sha256,
            f.created_at,
            f.scope.as_ref().map(|s| &s.id)
        ],
    )
    .map_err(|e| StoreError::Write(e.to_string()))?;
    Ok(())
}

pub fn get_in(c: &Connection, id: &str) -> Result<Option<FileMetadata>, StoreError> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM files WHERE id = ?1"))?
            .query_row([id], row_to_file)
            .optional()?,
    )
}

pub async fn get(store: &Store, id: &str) -> Result<FileMetadata, ErrorBody> {
    let key = id.to_string();
    store
        .read(move |c| get_in(c, &key))
        .await?
        .ok_or_else(|| not_found(id))
}

/// Every file, oldest first; with `scope_id`, only the outputs of that session.
pub async fn list(store: &Store, scope_id: Option<&str>) -> Result<Vec<FileMetadata>, ErrorBody> {
    let scope = scope_id.map(str::to_string);
    Ok(store
        .read(move |c| {
            let rows = match &scope {
                None => {
                    let mut st = c.prepare_cached(&format!(
                        "SELECT {COLS} FROM files ORDER BY created_at, id"
                    ))?;
                    st.query_map([], row_to_file)?
                        .collect::<Result<Vec<_>, _>>()?
                }
                Some(id) => {
                    let mut st = c.prepare_cached(&format!(
                        "SELECT {COLS} FROM files WHERE scope_id = ?1 ORDER BY created_at, id"
                    ))?;
                    st.query_map([id], row_to_file)?
                        .collect::<Result<Vec<_>, _>>()?
                }
            };
            Ok(rows)
        })
        .await?)
}

/// Whether anything still names the blob `sha256`.
pub(crate) fn blob_in_use(c: &Connection, sha256: &str) -> Result<bool, StoreError> {
    let used: Option<i64> = c
        .prepare_cached(
            "SELECT 1 FROM files WHERE sha256 = ?1
             UNION ALL SELECT 1 FROM session_resources WHERE sha256 = ?1
             UNION ALL SELECT 1 FROM skill_files WHERE sha256 = ?1 LIMIT 1",
        )?
        .query_row([sha256], |r| r.get(0))
        .optional()?;
    Ok(used.is_some())
}

/// Removes the blob `sha256` if nothing names it any more (on the writer, after the commit
/// that dropped the last name). A failure leaves it for the sweep at start.
pub async fn release_blob(store: &Store, paths: &Paths, sha256: String) {
    let blob = blob_path(paths, &sha256);
    let released = store
        .write(move |c| {
            if !blob_in_use(c, &sha256)? {
                match std::fs::remove_file(&blob) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(blob = %blob.display(), "cannot remove a blob: {e}"),
                }
            }
            Ok(())
        })
        .await;
    if let Err(e) = released {
        tracing::warn!("a file's blob was kept: {e}");
    }
}

pub async fn delete(store: &Store, paths: &Paths, id: &str) -> Result<FileDeleted, ErrorBody> {
    let key = id.to_string();
    let sha = store
        .write(move |c| {
            let sha: Option<String> = c
                .prepare_cached("SELECT sha256 FROM files WHERE id = ?1")?
                .query_row([&key], |r| r.get(0))
                .optional()?;
            c.execute("DELETE FROM files WHERE id = ?1", [&key])
                .map_err(|e| StoreError::Write(e.to_string()))?;
            Ok(sha)
        })
        .await?
        .ok_or_else(|| not_found(id))?;
    release_blob(store, paths, sha).await;
    Ok(FileDeleted {
        id: id.to_string(),
        object_type: "file_deleted".into(),
    })
}

/// Start-up: temp files of interrupted uploads, resources of sessions that are gone, and
/// blobs nothing names are removed. Returns how many blobs went.
pub async fn sweep(store: &Store, paths: &Paths) -> Result<usize, StoreError> {
    let _ = std::fs::remove_dir_all(tmp_dir(paths));
    let blobs = paths.data_dir.join("files").join("blobs");
    store
        .write(move |c| {
            c.execute(
                "DELETE FROM session_resources WHERE session_id NOT IN (SELECT id FROM sessions)",
                [],
            )
            .map_err(|e| StoreError::Write(e.to_string()))?;
            let Ok(entries) = std::fs::read_dir(&blobs) else {
                return Ok(0);
            };
            let mut removed = 0;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !blob_in_use(c, &name)? && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
}

/// Reads `length` bytes at `offset` of a file's content (fewer at its end).
pub async fn read_slice(
    store: &Store,
    paths: &Paths,
    id: &str,
    offset: u64,
    length: u64,
) -> Result<(Vec<u8>, bool), ErrorBody> {
    use std::io::{Read, Seek, SeekFrom};
    let meta = get(store, id).await?;
    let blob = blob_path(paths, &meta.sha256);
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&blob)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.take(length).read_to_end(&mut buf)?;
        let eof = offset + buf.len() as u64 >= meta.size_bytes;
        Ok::<_, std::io::Error>((buf, eof))
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?
    .map_err(|e| ErrorBody::new(ErrorCode::Storage, format!("cannot read file `{id}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_keep_their_last_component() {
        assert_eq!(clean_filename(Some("a/b/report.csv")), "report.csv");
        assert_eq!(clean_filename(Some("C:\\x\\y.txt")), "y.txt");
        assert_eq!(clean_filename(Some("")), "unnamed");
        assert_eq!(clean_filename(None), "unnamed");
        assert_eq!(clean_filename(Some("../..")), "unnamed");
        assert_eq!(guess_mime("A.CSV"), "text/csv");
        assert_eq!(guess_mime("noext"), "application/octet-stream");
    }

    fn store() -> (tempfile::TempDir, Store, Paths) {
        crate::store::in_temp_home()
    }

    async fn upload(store: &Store, paths: &Paths, bytes: &[u8]) -> FileMetadata {
        let mut up = Upload::start(paths, 1024).unwrap();
        up.write(bytes).unwrap();
        up.finish(store, paths, "a.txt".into(), "text/plain".into())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_shared_blob_goes_with_its_last_file() {
        let (_tmp, store, paths) = store();
        let a = upload(&store, &paths, b"same").await;
        let b = upload(&store, &paths, b"same").await;
        assert_eq!(a.sha256, b.sha256);
        assert_ne!(a.id, b.id);
        let blob = blob_path(&paths, &a.sha256);
        delete(&store, &paths, &a.id).await.unwrap();
        assert!(blob.exists(), "b still names the blob");
        assert_eq!(
            read_slice(&store, &paths, &b.id, 1, 10).await.unwrap(),
            (b"ame".to_vec(), true)
        );
        delete(&store, &paths, &b.id).await.unwrap();
        assert!(!blob.exists());
        let e = delete(&store, &paths, &b.id).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains(&b.id), "{}", e.message);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn too_much_is_refused_and_leaves_nothing() {
        let (_tmp, _store, paths) = store();
        let mut up = Upload::start(&paths, 4).unwrap();
        up.write(b"1234").unwrap();
        assert!(matches!(
            up.write(b"5"),
            Err(UploadError::TooLarge { max: 4 })
        ));
        up.abort();
        assert_eq!(std::fs::read_dir(tmp_dir(&paths)).unwrap().count(), 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_sweep_removes_orphans_and_keeps_named_blobs() {
        let (_tmp, store, paths) = store();
        let kept = upload(&store, &paths, b"kept").await;
        // A crash after the rename, before the row: a blob nothing names.
        let orphan = blob_path(&paths, &"0".repeat(64));
        std::fs::write(&orphan, b"x").unwrap();
        // A crash mid-upload: a temp file.
        let up = Upload::start(&paths, 10).unwrap();
        let tmp = up.tmp.clone();
        drop(up);
        assert!(tmp.exists());
        assert_eq!(sweep(&store, &paths).await.unwrap(), 1);
        assert!(!orphan.exists());
        assert!(!tmp.exists());
        assert!(blob_path(&paths, &kept.sha256).exists());
    }
}
