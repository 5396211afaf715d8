//! A session's copy of a mounted store: a plain directory under the session's data dir,
//! bound at `/mnt/memory/<store>/` in its sandbox, so the agent uses its ordinary tools. The
//! session runs [`Syncer::sync`] before and after each tool call:
//!
//! - the *base* (table `memory_mounts`) is what the copy held at the last sync, path → hash;
//! - a file whose hash differs from the base was changed by the session: it is written to the
//!   store with the base as precondition (inside the writer's transaction), as a version made
//!   by a `session_actor`;
//! - a memory whose hash differs from the base was changed by someone else: it is written
//!   into the copy, unless the session changed it too — then that is a **conflict**: the
//!   session's content is kept as a new memory `<path>.conflict-<session>`, the copy gets the
//!   other writer's content, and the agent is told. Nothing is overwritten silently.
//!
//! Crash safety: the base of a pushed path is committed with its version; the base of a
//! pulled path only after its file is written; a file equal to the store's content is
//! "in step" whatever the base says. So a kill at any point re-runs to the same state, with
//! no duplicate versions (a repeated conflict copy has the same content: no new version).
//!
//! The copy is written to by sandboxed code: every file is opened beneath the copy's root
//! (`openat2`, no symlinks followed), as the file tools do with the workspace.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use tether_proto::Paths;
use tether_proto::memory::{Access, Actor, MAX_CONTENT_BYTES, SessionMemory};

use super::{db, rules};
use crate::session::services::{MemorySync, memory_dir};
use crate::store::Store;
use crate::store::error::StoreError;
use crate::tools::path::{self as fspath, EntryType};

/// What a file's stat said when it was last hashed: unchanged stat, unchanged content.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    sha: String,
}

/// A file of the copy, as scanned.
#[derive(Debug, Clone)]
enum Local {
    /// A file that can be a memory: its hash (and content, when it was read this scan).
    File {
        sha: String,
        content: Option<String>,
    },
    /// A file that can't (too big, not UTF-8, a bad path): why.
    Unusable(String),
}

/// One session's copy of one store: (session id, store id).
type CopyKey = (String, String);
/// A scan: the copy's files by memory path, the stat → hash cache for the next one, and
/// whether anything differs from the cache it started from (a file added, removed, changed
/// or unusable).
type Scan = (BTreeMap<String, Local>, HashMap<String, Seen>, bool);

/// The memory sync of every session (one per daemon).
pub struct Syncer {
    store: Store,
    paths: Paths,
    /// Per (session, store): stat → hash of the files hashed before, so a scan reads only
    /// files that changed. Lost on restart (then everything is hashed once).
    seen: Mutex<HashMap<CopyKey, HashMap<String, Seen>>>,
    /// One sync at a time per session copy.
    locks: Mutex<HashMap<CopyKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Per copy: the store's generation ([`db::store_generation`]) read before the last
    /// reconcile that succeeded. With it unchanged and a scan that found nothing new, a sync
    /// has nothing to do (the check before and after every tool call of a big store).
    synced: Mutex<HashMap<CopyKey, i64>>,
}

impl Syncer {
    pub fn new(store: Store, paths: Paths) -> Arc<Syncer> {
        Arc::new(Syncer {
            store,
            paths,
            seen: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            synced: Mutex::new(HashMap::new()),
        })
    }

    fn lock_for(&self, key: &CopyKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key.clone()).or_default().clone()
    }

    /// Syncs one mounted store; returns the notes for the agent.
    pub async fn sync_one(
        &self,
        session_id: &str,
        mount: &SessionMemory,
    ) -> Result<Vec<String>, String> {
        let key = (session_id.to_string(), mount.memory_store_id.clone());
        let lock = self.lock_for(&key);
        let _guard = lock.lock().await;
        let dir = memory_dir(&self.paths, session_id, mount);
        crate::private::create_dir(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let seen = {
            let mut all = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            all.remove(&key).unwrap_or_default()
        };
        // Read before anything else: a change after this is seen by the next sync.
        let stid = mount.memory_store_id.clone();
        let generation = self
            .store
            .read(move |c| db::store_generation(c, &stid))
            .await
            .map_err(|e| e.to_string())?;
        let scan_dir = dir.clone();
        let (local, seen, changed) = tokio::task::spawn_blocking(move || scan(&scan_dir, seen))
            .await
            .map_err(|e| format!("the scan of the memory copy failed: {e}"))??;
        // Keep only what is still there.
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), seen);
        let in_step = !changed
            && self
                .synced
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                == Some(&generation);
        if in_step {
            return Ok(Vec::new());
        }
        let result = self.reconcile(session_id, mount, &dir, local).await;
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => synced.insert(key, generation),
            Err(_) => synced.remove(&key),
        };
        result
    }

    async fn reconcile(
        &self,
        session_id: &str,
        mount: &SessionMemory,
        dir: &Path,
        local: BTreeMap<String, Local>,
    ) -> Result<Vec<String>, String> {
        let store_id = mount.memory_store_id.clone();
        let shown = |p: &str| format!("{}{p}", mount.mount_path);
        let mut notes = Vec::new();
        let (sid, stid) = (session_id.to_string(), store_id.clone());
        let (base, current) = self
            .store
            .read(move |c| {
                Ok((
                    db::mount_base(c, &sid, &stid)?,
                    db::memory_hashes(c, &stid)?,
                ))
            })
            .await
            .map_err(|e| e.to_string())?;
        let read_only = mount.access == Access::ReadOnly;

        // What the session changed.
        let mut pushes: Vec<Push> = Vec::new();
        let paths: BTreeSet<&String> = local.keys().chain(base.keys()).collect();
        for path in paths {
            let b = base.get(path);
            match local.get(path) {
                Some(Local::Unusable(why)) => {
                    notes.push(format!(
                        "{} was not saved to the memory store: {why}",
                        shown(path)
                    ));
                }
                Some(Local::File { sha, content }) => {
                    if Some(sha) != b && !read_only {
                        if current.get(path).map(|(_, s)| s) == Some(sha) {
                            continue; // already in step; the base catches up below
                        }
                        let content = match content {
                            Some(c) => c.clone(),
                            None => read_file(dir, path)?,
                        };
                        pushes.push(Push::Write {
                            path: path.clone(),
                            content,
                            base: b.cloned(),
                        });
                    }
                }
                None => {
                    if let Some(b) = b
                        && !read_only
                        && current.contains_key(path)
                    {
                        pushes.push(Push::Delete {
                            path: path.clone(),
                            base: b.clone(),
                        });
                    }
                }
            }
        }

        // Apply them in one transaction, each against the store as it is now.
        let mut forced: BTreeSet<String> = BTreeSet::new();
        if !pushes.is_empty() {
            let (sid, stid) = (session_id.to_string(), store_id.clone());
            let outcomes = self
                .store
                .write(move |c| apply_pushes(c, &sid, &stid, pushes))
                .await
                .map_err(|e| e.to_string())?;
            for o in outcomes {
                match o {
                    Applied::Done => {}
                    Applied::Conflict { path, copy } => {
                        notes.push(format!(
                            "CONFLICT: {} was changed by another writer since you last read it. Your version was saved as {}; {} now holds the other writer's version. Merge them if needed.",
                            shown(&path), shown(&copy), shown(&path)
                        ));
                        forced.insert(path);
                    }
                    Applied::Restored { path } => {
                        notes.push(format!(
                            "{} was changed by another writer after you read it, so your delete was not applied; it holds their version now.",
                            shown(&path)
                        ));
                        forced.insert(path);
                    }
                    Applied::Refused { path, why } => {
                        notes.push(format!(
                            "{} was not saved to the memory store: {why}",
                            shown(&path)
                        ));
                    }
                }
            }
        }

        // What others changed (and what the pushes settled): bring the copy in step.
        let (sid, stid) = (session_id.to_string(), store_id.clone());
        let (base, rows) = self
            .store
            .read(move |c| {
                Ok((
                    db::mount_base(c, &sid, &stid)?,
                    db::memory_hashes(c, &stid)?,
                ))
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut pulls: Vec<(String, Option<String>)> = Vec::new(); // path, wanted sha
        let mut settle: Vec<(String, Option<String>)> = Vec::new();
        let all: BTreeSet<&String> = local.keys().chain(base.keys()).chain(rows.keys()).collect();
        for path in all {
            let l = match local.get(path) {
                Some(Local::File { sha, .. }) => Some(sha),
                Some(Local::Unusable(_)) => continue,
                None => None,
            };
            let b = base.get(path);
            let c = rows.get(path).map(|(_, s)| s);
            if l == c {
                if b != c {
                    settle.push((path.clone(), c.cloned()));
                }
                continue;
            }
            // Theirs wins where the session changed nothing (or may change nothing, or lost
            // a conflict whose copy was kept).
            if l == b || read_only || forced.contains(path) {
                pulls.push((path.clone(), c.cloned()));
            }
        }
        if !pulls.is_empty() {
            let stid = store_id.clone();
            let wanted: Vec<String> = pulls
                .iter()
                .filter(|(_, c)| c.is_some())
                .map(|(p, _)| p.clone())
                .collect();
            let contents: HashMap<String, String> = self
                .store
                .read(move |c| {
                    let mut out = HashMap::new();
                    for p in wanted {
                        if let Some(row) = db::memory_by_path(c, &stid, &p)? {
                            out.insert(p, row.content.unwrap_or_default());
                        }
                    }
                    Ok(out)
                })
                .await
                .map_err(|e| e.to_string())?;
            let dir = dir.to_path_buf();
            let (done, written) = tokio::task::spawn_blocking(move || {
                let root = open_root(&dir)?;
                let mut done = Vec::new();
                // What the next scan can take as known: path -> its stat as written.
                let mut written: Vec<(String, Option<Seen>)> = Vec::new();
                for (path, want) in pulls {
                    let text = want.as_ref().and_then(|_| contents.get(&path));
                    let sha = text.map(|t| rules::sha256_hex(t.as_bytes()));
                    match (text, &sha) {
                        (Some(text), Some(sha)) => {
                            let st = write_file(root.as_fd(), &path, text.as_bytes())?;
                            written.push((
                                path.clone(),
                                Some(Seen {
                                    ino: st.st_ino,
                                    size: st.st_size,
                                    mtime: (st.st_mtime, st.st_mtime_nsec),
                                    sha: sha.clone(),
                                }),
                            ));
                        }
                        _ => {
                            remove_file(root.as_fd(), &path)?;
                            written.push((path.clone(), None));
                        }
                    }
                    done.push((path, sha));
                }
                Ok::<_, String>((done, written))
            })
            .await
            .map_err(|e| format!("writing the memory copy failed: {e}"))??;
            settle.extend(done);
            // The files just written are known: the next sync need not read them again.
            let key = (session_id.to_string(), store_id.clone());
            let mut all = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let seen = all.entry(key).or_default();
            for (path, st) in written {
                match st {
                    Some(st) => seen.insert(path, st),
                    None => seen.remove(&path),
                };
            }
        }
        if !settle.is_empty() {
            let (sid, stid) = (session_id.to_string(), store_id);
            self.store
                .write(move |c| {
                    for (path, sha) in settle {
                        db::set_base(c, &sid, &stid, &path, sha.as_deref())?;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(notes)
    }
}

impl MemorySync for Syncer {
    fn sync<'a>(
        &'a self,
        session_id: &'a str,
        mounts: &'a [SessionMemory],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(async move {
            let mut notes = Vec::new();
            for m in mounts {
                match self.sync_one(session_id, m).await {
                    Ok(n) => notes.extend(n),
                    Err(e) => {
                        tracing::warn!(session = session_id, store = %m.memory_store_id, "memory sync failed: {e}");
                        notes.push(format!(
                            "the memory store at {} could not be synced ({e}); your changes there are kept in the copy and retried after the next tool call",
                            m.mount_path
                        ));
                    }
                }
            }
            (!notes.is_empty()).then(|| format!("[memory] {}", notes.join("\n[memory] ")))
        })
    }
}

/// A change the session made, to apply to the store.
#[derive(Debug)]
enum Push {
    Write {
        path: String,
        content: String,
        base: Option<String>,
    },
    Delete {
        path: String,
        base: String,
    },
}

#[derive(Debug)]
enum Applied {
    Done,
    /// Both changed it: the session's content went to `copy`.
    Conflict {
        path: String,
        copy: String,
    },
    /// The session deleted what another writer changed: theirs stays.
    Restored {
        path: String,
    },
    Refused {
        path: String,
        why: String,
    },
}

/// Where a conflicting write of `session_id` to `path` is kept.
pub fn conflict_path(path: &str, session_id: &str) -> String {
    format!("{path}.conflict-{session_id}")
}

fn apply_pushes(
    c: &rusqlite::Connection,
    session_id: &str,
    store_id: &str,
    pushes: Vec<Push>,
) -> Result<Vec<Applied>, StoreError> {
    let actor = Actor::SessionActor {
        session_id: session_id.to_string(),
    };
    let store = db::store_by_id(c, store_id)?;
    let mut out = Vec::new();
    for p in pushes {
        match p {
            Push::Write {
                path,
                content,
                base,
            } => {
                if store.archived_at.is_some() {
                    out.push(Applied::Refused {
                        path,
                        why: "the store is archived (read-only)".into(),
                    });
                    continue;
                }
                let sha = rules::sha256_hex(content.as_bytes());
                let now = db::memory_by_path(c, store_id, &path)?;
                match now {
                    // Free, or still what the session last saw: plain write.
                    None => {
                        db::create_memory(c, store_id, &path, &content, &actor)?;
                    }
                    Some(m) if Some(&m.sha256) == base.as_ref() => {
                        db::update_memory(
                            c,
                            store_id,
                            &m.id,
                            Some(&content),
                            None,
                            Some(&m.sha256),
                            &actor,
                        )?;
                    }
                    Some(m) if m.sha256 == sha => {}
                    Some(_) => {
                        let copy = conflict_path(&path, session_id);
                        if rules::memory_path(&copy).is_err() {
                            out.push(Applied::Refused {
                                path,
                                why: "another writer changed it, and the path is too long to keep your version beside it".into(),
                            });
                            continue;
                        }
                        match db::memory_by_path(c, store_id, &copy)? {
                            Some(existing) if existing.sha256 == sha => {}
                            Some(existing) => {
                                db::update_memory(
                                    c,
                                    store_id,
                                    &existing.id,
                                    Some(&content),
                                    None,
                                    None,
                                    &actor,
                                )?;
                            }
                            None => {
                                db::create_memory(c, store_id, &copy, &content, &actor)?;
                            }
                        }
                        out.push(Applied::Conflict { path, copy });
                        continue;
                    }
                }
                db::set_base(c, session_id, store_id, &path, Some(&sha))?;
                out.push(Applied::Done);
            }
            Push::Delete { path, base } => match db::memory_by_path(c, store_id, &path)? {
                None => {
                    db::set_base(c, session_id, store_id, &path, None)?;
                    out.push(Applied::Done);
                }
                Some(m) if m.sha256 == base => {
                    db::delete_memory(c, store_id, &m.id, Some(&base), &actor)?;
                    db::set_base(c, session_id, store_id, &path, None)?;
                    out.push(Applied::Done);
                }
                Some(_) => out.push(Applied::Restored { path }),
            },
        }
    }
    Ok(out)
}

fn open_root(dir: &Path) -> Result<OwnedFd, String> {
    nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open the memory copy {}: {e}", dir.display()))
}

/// `/a/b` → `a/b`.
fn rel(path: &str) -> &Path {
    Path::new(path.trim_start_matches('/'))
}

fn read_file(dir: &Path, path: &str) -> Result<String, String> {
    let root = open_root(dir)?;
    let fd = fspath::openat2(
        root.as_fd(),
        rel(path),
        fspath::read_flags(),
        Mode::empty(),
        fspath::single_name(),
    )
    .map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(MAX_CONTENT_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(text)
}

/// Opens (creating) the directory of `path` beneath `root`, without following symlinks.
fn parent_dir(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, String> {
    let mut dir = fspath::openat2(
        root,
        Path::new(""),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
        fspath::single_name(),
    )
    .map_err(|e| format!("cannot open the memory copy: {e}"))?;
    if let Some(parent) = path.parent() {
        for name in parent.iter() {
            let open = |d: BorrowedFd<'_>| {
                fspath::openat2(
                    d,
                    Path::new(name),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                    Mode::empty(),
                    fspath::single_name(),
                )
            };
            dir = match open(dir.as_fd()) {
                Ok(d) => d,
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(
                        dir.as_fd(),
                        name,
                        Mode::from_bits_truncate(0o777),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(format!("cannot create {}: {e}", parent.display())),
                    }
                    open(dir.as_fd())
                        .map_err(|e| format!("cannot open {}: {e}", parent.display()))?
                }
                // A file or a symlink where a directory should be: the session put it there;
                // it is replaced by the directory the store has.
                Err(Errno::ENOTDIR | Errno::ELOOP) => {
                    let _ = nix::unistd::unlinkat(
                        dir.as_fd(),
                        name,
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    );
                    let _ =
                        nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o777));
                    open(dir.as_fd())
                        .map_err(|e| format!("cannot open {}: {e}", parent.display()))?
                }
                Err(e) => return Err(format!("cannot open {}: {e}", parent.display())),
            };
        }
    }
    Ok(dir)
}

/// Writes `bytes` at `path` beneath `root`: a fresh file directly, an existing one through
/// a temp file and a rename (a reader never sees half a file). No fsync: the store is the
/// truth, the copy a cache rebuilt from it.
/// Writes a file of the copy (atomically when it exists) and returns its stat as written,
/// taken on the written fd (so the next scan knows it without reading it).
fn write_file(
    root: BorrowedFd<'_>,
    path: &str,
    bytes: &[u8],
) -> Result<nix::sys::stat::FileStat, String> {
    let p = rel(path);
    let dir = parent_dir(root, p)?;
    let Some(name) = p.file_name() else {
        return Err(format!("{path} has no file name"));
    };
    let tmp = format!(".{}.tether-sync.tmp", name.to_string_lossy());
    let fail = |e: &dyn std::fmt::Display| format!("cannot write {path}: {e}");
    let create = |n: &Path| {
        fspath::openat2(
            dir.as_fd(),
            n,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o666),
            fspath::single_name(),
        )
    };
    let write = |fd: OwnedFd| {
        let mut f = std::fs::File::from(fd);
        f.write_all(bytes).map_err(|e| fail(&e))?;
        nix::sys::stat::fstat(f.as_fd()).map_err(|e| fail(&e))
    };
    match create(Path::new(name)) {
        Ok(fd) => write(fd),
        Err(Errno::EEXIST) => {
            let _ = nix::unistd::unlinkat(
                dir.as_fd(),
                tmp.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            let fd = create(Path::new(&tmp)).map_err(|e| fail(&e))?;
            let st = write(fd)?;
            // A directory in the way is removed only if empty; then the rename fails.
            if let Ok(st) = fspath::lstat_at(dir.as_fd(), name)
                && fspath::kind(&st) == nix::sys::stat::SFlag::S_IFDIR
            {
                let _ =
                    nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::RemoveDir);
            }
            nix::fcntl::renameat(dir.as_fd(), tmp.as_str(), dir.as_fd(), name)
                .map_err(|e| fail(&e))?;
            Ok(st)
        }
        Err(e) => Err(fail(&e)),
    }
}

fn remove_file(root: BorrowedFd<'_>, path: &str) -> Result<(), String> {
    let p = rel(path);
    let Some(name) = p.file_name() else {
        return Ok(());
    };
    let dir = match p.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(parent) => fspath::openat2(
            root,
            parent,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
            fspath::single_name(),
        ),
        None => fspath::openat2(
            root,
            Path::new(""),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
            fspath::single_name(),
        ),
    };
    match dir {
        Ok(dir) => {
            match nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(format!("cannot remove {path}: {e}")),
            }
        }
        Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(()),
        Err(e) => Err(format!("cannot remove {path}: {e}")),
    }
}

/// Walks the copy: every regular file under it, by memory path. Symlinks, devices and the
/// like are not memories and are skipped; files whose stat matches `seen` keep their hash
/// without being read. Returns the files and the new `seen`.
fn scan(dir: &Path, seen: HashMap<String, Seen>) -> Result<Scan, String> {
    let root = open_root(dir)?;
    let mut out = BTreeMap::new();
    let mut next_seen = HashMap::new();
    let mut changed = false;
    let mut stack: Vec<(OwnedFd, String, usize)> = vec![(root, String::new(), 0)];
    while let Some((fd, prefix, depth)) = stack.pop() {
        let (d, entries) =
            fspath::list_dir(fd).map_err(|e| format!("cannot list the memory copy: {e}"))?;
        for (name, ty) in entries {
            let Some(name_str) = name.to_str().map(str::to_string) else {
                out.insert(
                    format!("{prefix}/{}", name.to_string_lossy()),
                    Local::Unusable("its name is not UTF-8".into()),
                );
                continue;
            };
            if name_str.ends_with(".tether-sync.tmp") {
                continue;
            }
            let path = format!("{prefix}/{name_str}");
            match ty {
                Some(EntryType::Directory) => {
                    if depth + 1 >= 20 {
                        out.insert(path, Local::Unusable("deeper than 20 segments".into()));
                        continue;
                    }
                    if let Ok(sub) = fspath::openat2(
                        d.as_fd(),
                        Path::new(&name),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                        Mode::empty(),
                        fspath::single_name(),
                    ) {
                        stack.push((sub, path, depth + 1));
                    }
                }
                Some(EntryType::File) => {
                    let (local, cached) = hash_file(d.as_fd(), &name, &path, &seen, &mut next_seen);
                    changed |= !cached;
                    out.insert(path, local);
                }
                _ => {}
            }
        }
    }
    changed |= out.values().any(|l| matches!(l, Local::Unusable(_)));
    // A file of the last scan that is gone.
    changed |= next_seen.len() != seen.len();
    Ok((out, next_seen, changed))
}

/// A file of the copy, and whether it came from the cache (its stat unchanged: not read).
fn hash_file(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &str,
    seen: &HashMap<String, Seen>,
    next_seen: &mut HashMap<String, Seen>,
) -> (Local, bool) {
    if let Err(e) = rules::memory_path(path) {
        return (Local::Unusable(e.message), false);
    }
    // One stat, not following a link, settles an unchanged file without opening it: a link
    // or another file put in its place has another inode, and is opened safely below.
    if let Some(s) = seen.get(path)
        && let Ok(st) = nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        && (s.ino, s.size, s.mtime) == (st.st_ino, st.st_size, (st.st_mtime, st.st_mtime_nsec))
    {
        next_seen.insert(path.to_string(), s.clone());
        let sha = s.sha.clone();
        return (Local::File { sha, content: None }, true);
    }
    (read_file_at(dir, name, path, seen, next_seen), false)
}

fn read_file_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &str,
    seen: &HashMap<String, Seen>,
    next_seen: &mut HashMap<String, Seen>,
) -> Local {
    let Ok(fd) = fspath::openat2(
        dir,
        Path::new(name),
        fspath::read_flags(),
        Mode::empty(),
        fspath::single_name(),
    ) else {
        return Local::Unusable("it could not be opened".into());
    };
    let Ok(st) = nix::sys::stat::fstat(fd.as_fd()) else {
        return Local::Unusable("it could not be read".into());
    };
    if st.st_size as u64 > MAX_CONTENT_BYTES as u64 {
        return Local::Unusable(format!(
            "it is {} bytes, over the {MAX_CONTENT_BYTES}-byte (100 KiB) limit of a memory; split it",
            st.st_size
        ));
    }
    let stat_key = (st.st_ino, st.st_size, (st.st_mtime, st.st_mtime_nsec));
    if let Some(s) = seen.get(path)
        && (s.ino, s.size, s.mtime) == stat_key
    {
        next_seen.insert(path.to_string(), s.clone());
        return Local::File {
            sha: s.sha.clone(),
            content: None,
        };
    }
    let mut bytes = Vec::with_capacity(st.st_size as usize);
    if std::fs::File::from(fd)
        .take(MAX_CONTENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return Local::Unusable("it could not be read".into());
    }
    let Ok(text) = String::from_utf8(bytes) else {
        return Local::Unusable("it is not UTF-8 text".into());
    };
    if text.len() > MAX_CONTENT_BYTES {
        return Local::Unusable(format!(
            "it is over the {MAX_CONTENT_BYTES}-byte (100 KiB) limit of a memory; split it"
        ));
    }
    let sha = rules::sha256_hex(text.as_bytes());
    next_seen.insert(
        path.to_string(),
        Seen {
            ino: stat_key.0,
            size: stat_key.1,
            mtime: stat_key.2,
            sha: sha.clone(),
        },
    );
    Local::File {
        sha,
        content: Some(text),
    }
}

/// The host dir of a mount (for the bench and tests).
pub fn copy_dir(paths: &Paths, session_id: &str, mount: &SessionMemory) -> PathBuf {
    memory_dir(paths, session_id, mount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rows::SessionRow;
    use tether_proto::memory::{MemoryStoreSpec, NewMemory};

    struct Fixture {
        _tmp: tempfile::TempDir,
        paths: Paths,
        store: Store,
        mount: SessionMemory,
        syncer: Arc<Syncer>,
    }

    async fn fixture(sessions: &[&str], access: Access) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().display().to_string();
        let paths = Paths::resolve(|k| (k == "TETHER_HOME").then(|| home.clone()), 0);
        std::fs::create_dir_all(&paths.data_dir).unwrap();
        let store = Store::open(&paths.db()).unwrap();
        for id in sessions {
            let row = SessionRow::new(id.to_string(), "m".into(), home.clone(), 10);
            store.create_session(row, None).await.unwrap();
        }
        let s = super::super::create_store(
            &store,
            MemoryStoreSpec {
                name: "Notes".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let new = NewMemory {
            path: "/n.md".into(),
            content: Some("base".into()),
        };
        super::super::create_memory(&store, &s.id, new, super::super::local_user())
            .await
            .unwrap();
        let mount = SessionMemory {
            kind: "memory_store".into(),
            memory_store_id: s.id,
            access,
            instructions: None,
            name: "Notes".into(),
            description: String::new(),
            mount_path: "/mnt/memory/notes".into(),
        };
        let syncer = Syncer::new(store.clone(), paths.clone());
        Fixture {
            _tmp: tmp,
            paths,
            store,
            mount,
            syncer,
        }
    }

    impl Fixture {
        fn file(&self, session: &str, rel: &str) -> PathBuf {
            memory_dir(&self.paths, session, &self.mount).join(rel)
        }

        async fn content(&self, path: &str) -> Option<String> {
            let (s, p) = (self.mount.memory_store_id.clone(), path.to_string());
            self.store
                .read(move |c| db::memory_by_path(c, &s, &p))
                .await
                .unwrap()
                .map(|r| r.content.unwrap_or_default())
        }

        async fn versions(&self) -> Vec<tether_proto::memory::MemoryVersion> {
            let s = self.mount.memory_store_id.clone();
            self.store
                .read(move |c| db::list_versions(c, &s, &db::VersionFilter::default(), true))
                .await
                .unwrap()
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_sessions_writing_one_memory_never_lose_a_write() {
        let f = fixture(&["sesn_a", "sesn_b"], Access::ReadWrite).await;
        for s in ["sesn_a", "sesn_b"] {
            assert!(f.syncer.sync_one(s, &f.mount).await.unwrap().is_empty());
            assert_eq!(std::fs::read_to_string(f.file(s, "n.md")).unwrap(), "base");
        }
        std::fs::write(f.file("sesn_a", "n.md"), "from A").unwrap();
        std::fs::write(f.file("sesn_b", "n.md"), "from B").unwrap();

        assert!(
            f.syncer
                .sync_one("sesn_a", &f.mount)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(f.content("/n.md").await.as_deref(), Some("from A"));

        let notes = f.syncer.sync_one("sesn_b", &f.mount).await.unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("CONFLICT"), "{notes:?}");
        let copy = conflict_path("/n.md", "sesn_b");
        assert!(
            notes[0].contains(&format!("/mnt/memory/notes{copy}")),
            "{notes:?}"
        );
        // Neither write is lost: A's is the memory, B's is kept beside it, by B.
        assert_eq!(f.content("/n.md").await.as_deref(), Some("from A"));
        assert_eq!(f.content(&copy).await.as_deref(), Some("from B"));
        let v = f.versions().await;
        assert_eq!(
            v[0].created_by,
            Some(Actor::SessionActor {
                session_id: "sesn_b".into()
            })
        );
        // B's copy now shows A's version and its own beside it.
        assert_eq!(
            std::fs::read_to_string(f.file("sesn_b", "n.md")).unwrap(),
            "from A"
        );
        let copy_file = f.file("sesn_b", copy.trim_start_matches('/'));
        assert_eq!(std::fs::read_to_string(copy_file).unwrap(), "from B");

        // Syncing again changes nothing and makes no version.
        let count = f.versions().await.len();
        assert!(
            f.syncer
                .sync_one("sesn_b", &f.mount)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            f.syncer
                .sync_one("sesn_a", &f.mount)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(f.versions().await.len(), count);
        // A sees B's kept version too.
        let in_a = f.file("sesn_a", copy.trim_start_matches('/'));
        assert_eq!(std::fs::read_to_string(in_a).unwrap(), "from B");
    }

    /// The check before and after every tool call: with nothing changed on either side it
    /// does not reconcile (a base row tampered with stays as it is); a change on either side
    /// is still seen at once.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_unchanged_copy_of_an_unchanged_store_is_not_reconciled() {
        let f = fixture(&["sesn_a"], Access::ReadWrite).await;
        let stid = f.mount.memory_store_id.clone();
        let base = |path: &'static str| {
            let stid = stid.clone();
            let store = f.store.clone();
            async move {
                store
                    .read(move |c| db::mount_base(c, "sesn_a", &stid))
                    .await
                    .unwrap()
                    .get(path)
                    .cloned()
            }
        };
        // The first sync writes the copy (and knows what it wrote); the second has no work.
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        let real = base("/n.md").await.unwrap();
        let s2 = stid.clone();
        f.store
            .write(move |c| db::set_base(c, "sesn_a", &s2, "/n.md", Some("tampered")))
            .await
            .unwrap();
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        assert_eq!(
            base("/n.md").await.as_deref(),
            Some("tampered"),
            "no reconcile"
        );

        // Another writer: pulled at the next sync (and the base settled again).
        let new = NewMemory {
            path: "/other.md".into(),
            content: Some("theirs".into()),
        };
        super::super::create_memory(&f.store, &stid, new, super::super::local_user())
            .await
            .unwrap();
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(f.file("sesn_a", "other.md")).unwrap(),
            "theirs"
        );
        assert_eq!(base("/n.md").await, Some(real));

        // The session's own change with the store unchanged: pushed.
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        std::fs::write(f.file("sesn_a", "n.md"), "mine").unwrap();
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        assert_eq!(f.content("/n.md").await.as_deref(), Some("mine"));
        // And a deleted file too.
        std::fs::remove_file(f.file("sesn_a", "other.md")).unwrap();
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        assert_eq!(f.content("/other.md").await, None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn deletes_pushes_and_pulls_follow_the_base() {
        let f = fixture(&["sesn_a", "sesn_b"], Access::ReadWrite).await;
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        f.syncer.sync_one("sesn_b", &f.mount).await.unwrap();
        // A deletes, B (unchanged) sees the delete.
        std::fs::remove_file(f.file("sesn_a", "n.md")).unwrap();
        std::fs::create_dir_all(f.file("sesn_a", "d")).unwrap();
        std::fs::write(f.file("sesn_a", "d/new.md"), "new").unwrap();
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        assert_eq!(f.content("/n.md").await, None);
        assert_eq!(f.content("/d/new.md").await.as_deref(), Some("new"));
        f.syncer.sync_one("sesn_b", &f.mount).await.unwrap();
        assert!(!f.file("sesn_b", "n.md").exists());
        assert_eq!(
            std::fs::read_to_string(f.file("sesn_b", "d/new.md")).unwrap(),
            "new"
        );
        // A file that can't be a memory is reported, not saved.
        std::fs::write(
            f.file("sesn_b", "big.bin"),
            vec![b'x'; MAX_CONTENT_BYTES + 1],
        )
        .unwrap();
        let notes = f.syncer.sync_one("sesn_b", &f.mount).await.unwrap();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("big.bin") && n.contains("100 KiB")),
            "{notes:?}"
        );
        assert_eq!(f.content("/big.bin").await, None);
        // A symlink out of the copy is not followed.
        std::os::unix::fs::symlink("/etc/hostname", f.file("sesn_b", "link")).unwrap();
        f.syncer.sync_one("sesn_b", &f.mount).await.unwrap();
        assert_eq!(f.content("/link").await, None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_read_only_copy_is_never_pushed() {
        let f = fixture(&["sesn_a"], Access::ReadOnly).await;
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        std::fs::write(f.file("sesn_a", "n.md"), "changed").unwrap();
        f.syncer.sync_one("sesn_a", &f.mount).await.unwrap();
        assert_eq!(f.content("/n.md").await.as_deref(), Some("base"));
        assert_eq!(
            std::fs::read_to_string(f.file("sesn_a", "n.md")).unwrap(),
            "base"
        );
    }
}
