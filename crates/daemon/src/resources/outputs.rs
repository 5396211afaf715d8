//! A session's own directories in its sandbox, as the hosted container has them:
//! `/mnt/session/outputs` (deliverables) and `/mnt/user` (scratch), both writable and kept
//! with the session under its data dir; `/mnt/session/uploads` is [`super::attach`]'s.
//!
//! Outputs are captured into the Files API (hosted: "outputs written to
//! /mnt/session/outputs/ are captured into the Files API") when the agent ends its turn,
//! before the session is said to be idle: each regular file there becomes a file scoped to
//! the session (`GET /v1/files?scope_id=SESSION`), one per path; a changed file keeps its id
//! and gets the new content. A file deleted from the directory stays captured.
//!
//! The directory is the agent's, so it is read as the file tools read the workspace: from a
//! descriptor, one name at a time, no symlink followed, nothing but regular files opened (a
//! symlink to a host file or a FIFO is skipped, not read).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use rusqlite::{OptionalExtension, params};
use tether_proto::Paths;
use tether_proto::file::{FileMetadata, FileScope, OUTPUTS_DIR, UPLOADS_DIR, USER_DIR};

use crate::ids;
use crate::store::Store;
use crate::store::error::StoreError;
use crate::tools::path::{self as fspath, EntryType};

/// At most this many files are captured from one session (the rest are named in the log).
pub const MAX_FILES: usize = 1000;
/// Directories deeper than this are not read.
const MAX_DEPTH: usize = 16;

pub fn outputs_dir(paths: &Paths, session_id: &str) -> PathBuf {
    paths.sessions_dir().join(session_id).join("outputs")
}

pub fn user_dir(paths: &Paths, session_id: &str) -> PathBuf {
    paths.sessions_dir().join(session_id).join("user")
}

/// The writable mounts of `session_id`'s sandbox: its outputs and its `/mnt/user` (created
/// here, so the binds have sources).
pub fn sandbox_mounts(paths: &Paths, session_id: &str) -> Vec<crate::sandbox::Mount> {
    [
        (outputs_dir(paths, session_id), OUTPUTS_DIR),
        (user_dir(paths, session_id), USER_DIR),
    ]
    .into_iter()
    .filter_map(|(src, dst)| match crate::private::create_dir(&src) {
        Ok(()) => Some(crate::sandbox::Mount {
            src,
            dst: dst.into(),
            read_only: false,
        }),
        Err(e) => {
            tracing::warn!(dir = %src.display(), "cannot create a session directory: {e}");
            None
        }
    })
    .collect()
}

/// Whether `dst` is one of the session directories (which a thread shares with its session).
pub fn is_session_dir(dst: &Path) -> bool {
    [UPLOADS_DIR, OUTPUTS_DIR, USER_DIR]
        .iter()
        .any(|d| dst == Path::new(d))
}

/// What a capture did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// Files new or changed since the last capture.
    pub stored: usize,
    /// Paths left out, each with why.
    pub skipped: Vec<String>,
}

/// A file read from the outputs: its content in a temp file (not yet synced), not yet a blob.
struct Read1 {
    rel: String,
    tmp: PathBuf,
    sha256: String,
    size: u64,
    stamp: String,
}

/// What the last capture saw of a path: its content's sha256 and its stamp.
type Known = HashMap<String, (String, Option<String>)>;

/// What a scan found: new or changed files, unchanged ones whose stamp moved (path, new
/// stamp), and what was left out.
#[derive(Default)]
struct Scan {
    found: Vec<Read1>,
    restamped: Vec<(String, String)>,
    skipped: Vec<String>,
}

/// Captures `session_id`'s outputs into its scoped files (see the module's doc). Files larger
/// than `max_bytes` (`[files] max_bytes`) are skipped.
pub async fn capture(
    store: &Store,
    paths: &Paths,
    session_id: &str,
    max_bytes: u64,
) -> Result<Captured, StoreError> {
    let dir = outputs_dir(paths, session_id);
    if !dir.is_dir() {
        return Ok(Captured::default());
    }
    let sid = session_id.to_string();
    let known: Known = store
        .read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT scope_path, sha256, scope_stamp FROM files WHERE scope_id = ?1 AND scope_path IS NOT NULL",
            )?;
            let rows = st.query_map([&sid], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
            Ok(rows.collect::<Result<Known, _>>()?)
        })
        .await?;
    let p = paths.clone();
    let scan = tokio::task::spawn_blocking(move || read_all(&p, &dir, max_bytes, &known))
        .await
        .map_err(|e| StoreError::Write(format!("the outputs scan stopped: {e}")))?;
    let Scan {
        found,
        restamped,
        skipped,
    } = scan;
    if !skipped.is_empty() {
        tracing::warn!(session = %session_id, ?skipped, "some outputs were not captured");
    }
    let stored = found.len();
    if found.is_empty() && restamped.is_empty() {
        return Ok(Captured { stored, skipped });
    }
    // One sync for every temp file (the kernel's, not one fsync each): a row never names a
    // blob whose content could be lost.
    if !found.is_empty() {
        let tmp = super::files::tmp_dir(paths);
        let synced = tokio::task::spawn_blocking(move || {
            let dir = std::fs::File::open(&tmp)?;
            nix::unistd::syncfs(&dir).map_err(std::io::Error::from)
        })
        .await
        .map_err(|e| StoreError::Write(format!("the outputs sync stopped: {e}")))?;
        if let Err(e) = synced {
            for f in &found {
                let _ = std::fs::remove_file(&f.tmp);
            }
            return Err(StoreError::Write(format!(
                "cannot save the session's outputs: {e}"
            )));
        }
    }
    let sid = session_id.to_string();
    let blobs_dir = paths.data_dir.join("files").join("blobs");
    let leftovers: Vec<PathBuf> = found.iter().map(|f| f.tmp.clone()).collect();
    let replaced = store
        .write(move |c| {
            let w = |e: rusqlite::Error| StoreError::Write(e.to_string());
            // Every blob in place, then the directory synced once, then the rows.
            if !found.is_empty() {
                crate::private::create_dir(&blobs_dir).map_err(|e| {
                    StoreError::Write(format!("cannot create {}: {e}", blobs_dir.display()))
                })?;
                for f in &found {
                    std::fs::rename(&f.tmp, blobs_dir.join(&f.sha256))
                        .map_err(|e| StoreError::Write(format!("cannot store an output: {e}")))?;
                }
                std::fs::File::open(&blobs_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| StoreError::Write(format!("cannot sync the blobs: {e}")))?;
            }
            for (rel, stamp) in &restamped {
                c.execute(
                    "UPDATE files SET scope_stamp = ?1 WHERE scope_id = ?2 AND scope_path = ?3",
                    params![stamp, sid, rel],
                )
                .map_err(w)?;
            }
            let mut replaced = Vec::new();
            for f in &found {
                let existing: Option<(String, String)> = c
                    .prepare_cached(
                        "SELECT id, sha256 FROM files WHERE scope_id = ?1 AND scope_path = ?2",
                    )?
                    .query_row(params![sid, f.rel], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let id = match existing {
                    Some((id, old)) => {
                        c.execute(
                            "UPDATE files SET sha256 = ?1, size_bytes = ?2 WHERE id = ?3",
                            params![f.sha256, f.size as i64, id],
                        )
                        .map_err(w)?;
                        replaced.push(old);
                        id
                    }
                    None => {
                        let meta = FileMetadata {
                            id: ids::file_id(),
                            object_type: "file".into(),
                            filename: f.rel.clone(),
                            mime_type: super::files::guess_mime(&f.rel).to_string(),
                            size_bytes: f.size,
                            created_at: ids::now_rfc3339(),
                            downloadable: true,
                            expires_at: None,
                            sha256: f.sha256.clone(),
                            scope: Some(FileScope {
                                id: sid.clone(),
                                scope_type: "session".into(),
                            }),
                        };
                        super::files::insert(c, &meta)?;
                        meta.id
                    }
                };
                c.execute(
                    "UPDATE files SET scope_path = ?1, scope_stamp = ?2 WHERE id = ?3",
                    params![f.rel, f.stamp, id],
                )
                .map_err(w)?;
            }
            Ok(replaced)
        })
        .await;
    // A failed commit leaves temp files (swept at start too) and maybe blobs without rows,
    // which the start-up sweep removes.
    for tmp in leftovers {
        let _ = std::fs::remove_file(tmp);
    }
    for old in replaced? {
        super::files::release_blob(store, paths, old).await;
    }
    Ok(Captured { stored, skipped })
}

/// Reads every regular file under `dir` whose content differs from `known` (path → sha256).
fn read_all(paths: &Paths, dir: &Path, max_bytes: u64, known: &Known) -> Scan {
    let mut scan = Scan::default();
    let Scan {
        found,
        restamped,
        skipped,
    } = &mut scan;
    let root = match nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            skipped.push(format!("{OUTPUTS_DIR}: cannot be opened ({e})"));
            return scan;
        }
    };
    let mut seen = 0usize;
    // Depth-first over (directory, its path relative to the outputs).
    let mut stack = vec![(root, String::new(), 0usize)];
    while let Some((fd, prefix, depth)) = stack.pop() {
        let (dirh, mut entries) = match fspath::list_dir(fd) {
            Ok(x) => x,
            Err(e) => {
                skipped.push(format!("{OUTPUTS_DIR}/{prefix}: cannot be listed ({e})"));
                continue;
            }
        };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, ty) in entries {
            let Some(name_str) = name.to_str().map(str::to_string) else {
                skipped.push(format!(
                    "{OUTPUTS_DIR}/{prefix}{}: the name is not UTF-8",
                    String::from_utf8_lossy(name.as_bytes())
                ));
                continue;
            };
            let rel = format!("{prefix}{name_str}");
            match ty {
                Some(EntryType::Directory) if depth < MAX_DEPTH => {
                    match fspath::openat2(
                        dirh.as_fd(),
                        Path::new(&name),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                        Mode::empty(),
                        fspath::single_name(),
                    ) {
                        Ok(sub) => stack.push((sub, format!("{rel}/"), depth + 1)),
                        Err(e) => {
                            skipped.push(format!("{OUTPUTS_DIR}/{rel}: cannot be opened ({e})"))
                        }
                    }
                }
                Some(EntryType::Directory) => {
                    skipped.push(format!(
                        "{OUTPUTS_DIR}/{rel}: deeper than {MAX_DEPTH} directories"
                    ));
                }
                Some(EntryType::File) => {
                    seen += 1;
                    if seen > MAX_FILES {
                        skipped.push(format!(
                            "{OUTPUTS_DIR}/{rel} and the rest: a session keeps at most {MAX_FILES} outputs"
                        ));
                        return scan;
                    }
                    let before = known.get(&rel);
                    match read_one(paths, dirh.as_fd(), &name, max_bytes, before) {
                        Ok(Seen::Unchanged) => {}
                        Ok(Seen::Read {
                            tmp,
                            sha256,
                            size,
                            stamp,
                        }) => {
                            if before.is_some_and(|(sha, _)| *sha == sha256) {
                                let _ = std::fs::remove_file(&tmp);
                                restamped.push((rel, stamp));
                            } else {
                                found.push(Read1 {
                                    rel,
                                    tmp,
                                    sha256,
                                    size,
                                    stamp,
                                });
                            }
                        }
                        Err(why) => skipped.push(format!("{OUTPUTS_DIR}/{rel}: {why}")),
                    }
                }
                _ => skipped.push(format!(
                    "{OUTPUTS_DIR}/{rel}: not a regular file (a symlink, FIFO, socket or device)"
                )),
            }
        }
    }
    scan
}

/// What reading one output gave.
enum Seen {
    /// Its stamp is the one last captured: not read.
    Unchanged,
    /// Its content in a temp file (not synced).
    Read {
        tmp: PathBuf,
        sha256: String,
        size: u64,
        stamp: String,
    },
}

/// One file, unless its stamp (size, change time, inode: the change time is the kernel's,
/// which no process can set back) is the one `before` has; then it goes unread.
fn read_one(
    paths: &Paths,
    dir: std::os::fd::BorrowedFd<'_>,
    name: &OsStr,
    max_bytes: u64,
    before: Option<&(String, Option<String>)>,
) -> Result<Seen, String> {
    use std::os::unix::fs::MetadataExt;
    let fd = fspath::openat2(
        dir,
        Path::new(name),
        fspath::read_flags(),
        Mode::empty(),
        fspath::single_name(),
    )
    .map_err(|e| format!("cannot be opened ({e})"))?;
    let mut file = std::fs::File::from(fd);
    // Checked on the open file: the entry may have been swapped since it was listed.
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be read ({e})"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let stamp = format!(
        "{}:{}.{:09}:{}",
        meta.len(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.ino()
    );
    if before.and_then(|(_, s)| s.as_deref()) == Some(stamp.as_str()) {
        return Ok(Seen::Unchanged);
    }
    if meta.len() > max_bytes {
        return Err(format!("larger than {max_bytes} bytes ([files] max_bytes)"));
    }
    let mut up = super::files::Upload::start(paths, max_bytes).map_err(|e| format!("{e:?}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                up.abort();
                return Err(format!("cannot be read ({e})"));
            }
        };
        if let Err(e) = up.write(&buf[..n]) {
            up.abort();
            return Err(match e {
                super::files::UploadError::TooLarge { max } => {
                    format!("larger than {max} bytes ([files] max_bytes)")
                }
                super::files::UploadError::Io(m) => m,
            });
        }
    }
    let (tmp, sha256, size) = up.seal_unsynced().map_err(|e| format!("{e:?}"))?;
    Ok(Seen::Read {
        tmp,
        sha256,
        size,
        stamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store, Paths) {
        crate::store::in_temp_home()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn captures_regular_files_once_and_follows_no_link() {
        let (tmp, store, paths) = store();
        let out = outputs_dir(&paths, "sesn_1");
        std::fs::create_dir_all(out.join("sub")).unwrap();
        std::fs::write(out.join("a.md"), "one").unwrap();
        std::fs::write(out.join("sub/b.txt"), "two").unwrap();
        std::fs::write(out.join("big.bin"), vec![7u8; 2048]).unwrap();
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, "host secret").unwrap();
        std::os::unix::fs::symlink(&secret, out.join("leak")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), out.join("dir-leak")).unwrap();
        nix::unistd::mkfifo(&out.join("pipe"), Mode::from_bits_truncate(0o600)).unwrap();

        let c = capture(&store, &paths, "sesn_1", 1024).await.unwrap();
        assert_eq!(c.stored, 2, "{c:?}");
        let skipped = c.skipped.join("\n");
        for name in ["big.bin", "leak", "dir-leak", "pipe"] {
            assert!(skipped.contains(name), "{name} not reported: {skipped}");
        }
        let files = super::super::files::list(&store, Some("sesn_1"))
            .await
            .unwrap();
        let mut names: Vec<&str> = files.iter().map(|f| f.filename.as_str()).collect();
        names.sort();
        assert_eq!(names, ["a.md", "sub/b.txt"]);
        assert!(
            super::super::files::list(&store, Some("sesn_2"))
                .await
                .unwrap()
                .is_empty()
        );

        // Nothing changed: nothing stored again. A change keeps the id.
        assert_eq!(
            capture(&store, &paths, "sesn_1", 1024)
                .await
                .unwrap()
                .stored,
            0
        );
        let a = files.iter().find(|f| f.filename == "a.md").unwrap();
        std::fs::write(out.join("a.md"), "one, revised").unwrap();
        assert_eq!(
            capture(&store, &paths, "sesn_1", 1024)
                .await
                .unwrap()
                .stored,
            1
        );
        let again = super::super::files::get(&store, &a.id).await.unwrap();
        assert_eq!(again.size_bytes, 12);
        assert!(!super::super::files::blob_path(&paths, &a.sha256).exists());
        // The same bytes written again: read (its change time moved), not stored again.
        std::fs::write(out.join("a.md"), "one, revised").unwrap();
        assert_eq!(
            capture(&store, &paths, "sesn_1", 1024)
                .await
                .unwrap()
                .stored,
            0
        );
        assert_eq!(
            super::super::files::get(&store, &a.id)
                .await
                .unwrap()
                .sha256,
            again.sha256
        );
        // A session without outputs captures nothing and fails nothing.
        assert_eq!(
            capture(&store, &paths, "sesn_none", 1024).await.unwrap(),
            Captured::default()
        );
    }

    #[test]
    fn session_dirs_are_known() {
        assert!(is_session_dir(Path::new("/mnt/session/outputs")));
        assert!(is_session_dir(Path::new("/mnt/session/uploads")));
        assert!(is_session_dir(Path::new("/mnt/user")));
        assert!(!is_session_dir(Path::new("/mnt/memory/notes")));
    }
}
