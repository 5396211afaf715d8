//! The directory walk of `glob` and `grep`, from descriptor to descriptor: each directory is
//! opened by name relative to its parent's descriptor with no symlink followed
//! (`RESOLVE_NO_SYMLINKS`), and each file is opened the same way, so a directory swapped for a
//! symlink mid-walk is skipped instead of followed out of the workspace. No path is ever
//! resolved again from the top.
//!
//! It keeps what the `ignore` crate's walker gave these tools before: `.ignore`, `.gitignore`
//! and `.git/info/exclude` are honoured in every directory (also outside git repositories;
//! deeper files win, and within a directory `.ignore` over `.gitignore` over `exclude`), the
//! `.gitignore` files between the workspace root and a sub-directory being searched apply
//! too, `.git` is skipped, hidden files are included, entries come depth-first sorted by
//! name, and symlinks are listed but never followed. Only the matching is the `ignore`
//! crate's ([`Gitignore`]); the files are read here, through the descriptors.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::path::{self, EntryType, Workspace};

/// Ignore files are read up to this size.
const IGNORE_FILE_LIMIT: u64 = 1 << 20;

/// One entry of the walk.
pub struct Entry {
    /// Relative to the workspace.
    pub rel: PathBuf,
    /// 0 for the search root.
    pub depth: usize,
    /// `None` if it could not be told.
    pub ty: Option<EntryType>,
    place: Place,
}

enum Place {
    /// The search root, already open.
    Root(Rc<File>),
    /// `name` in the directory `dir`.
    In(Rc<Dir>, OsString),
}

impl Entry {
    /// Opens the entry to read, never through a symlink (FIFOs don't block).
    pub fn open(&self) -> Option<File> {
        match &self.place {
            Place::Root(file) => file.try_clone().ok(),
            Place::In(dir, name) => path::openat2(
                dir.as_fd(),
                Path::new(name),
                path::read_flags(),
                Mode::empty(),
                path::single_name(),
            )
            .ok()
            .map(File::from),
        }
    }

    /// Its modification time (of a symlink itself, not its target).
    pub fn modified(&self) -> Option<SystemTime> {
        match &self.place {
            Place::Root(file) => file.metadata().ok()?.modified().ok(),
            Place::In(dir, name) => {
                let stat = path::lstat_at(dir.as_fd(), name).ok()?;
                let secs = u64::try_from(stat.st_mtime).ok()?;
                let nanos = u32::try_from(stat.st_mtime_nsec).ok()?;
                SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
            }
        }
    }
}

/// The ignore files of one directory on the way down.
struct Level {
    ignore: Gitignore,
    git: Gitignore,
    exclude: Gitignore,
}

/// A directory being walked.
struct Frame {
    dir: Rc<Dir>,
    rel: PathBuf,
    depth: usize,
    entries: std::vec::IntoIter<(OsString, Option<EntryType>)>,
}

/// Walks the search root `root` (open, relative to the workspace at `rel`). Yields `Err` for
/// a directory that could not be read.
pub struct Walk {
    /// The canonical workspace path: ignore rules match paths under it (never opened).
    base: PathBuf,
    root: Option<Entry>,
    stack: Vec<Frame>,
    levels: Vec<Level>,
    /// `.gitignore` files of the directories above the search root, inside the workspace.
    ancestors: Vec<Gitignore>,
    failed: bool,
}

impl Walk {
    pub fn new(ws: &Workspace, rel: PathBuf, root: File) -> Walk {
        let base = ws.canonical().to_path_buf();
        let ancestors = rel
            .ancestors()
            .skip(1)
            .filter_map(|dir| {
                let file = ws
                    .open_beneath(&dir.join(".gitignore"), path::read_flags(), Mode::empty())
                    .ok()?;
                let gi = parse_ignore(File::from(file), &base, dir, ".gitignore");
                (!gi.is_empty()).then_some(gi)
            })
            .collect();
        let ty = root.metadata().ok().map(|m| {
            if m.is_dir() {
                EntryType::Directory
            } else if m.is_file() {
                EntryType::File
            } else {
                EntryType::Fifo
            }
        });
        Walk {
            base,
            root: Some(Entry {
                rel,
                depth: 0,
                ty,
                place: Place::Root(Rc::new(root)),
            }),
            stack: Vec::new(),
            levels: Vec::new(),
            ancestors,
            failed: false,
        }
    }

    /// Starts walking the directory `fd` at `rel`.
    fn enter(&mut self, fd: OwnedFd, rel: PathBuf, depth: usize) {
        let Ok((dir, mut entries)) = path::list_dir(fd) else {
            self.failed = true;
            return;
        };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let has = |name: &str, ty: EntryType| {
            entries
                .iter()
                .any(|(n, t)| n == name && (*t == Some(ty) || *t == Some(EntryType::Symlink)))
        };
        let read = |name: &str, wanted: bool| -> Gitignore {
            if !wanted {
                return Gitignore::empty();
            }
            match read_beneath(dir.as_fd(), name) {
                Some(file) => parse_ignore(file, &self.base, &rel, name),
                None => Gitignore::empty(),
            }
        };
        let level = Level {
            ignore: read(".ignore", has(".ignore", EntryType::File)),
            git: read(".gitignore", has(".gitignore", EntryType::File)),
            exclude: read(".git/info/exclude", has(".git", EntryType::Directory)),
        };
        self.levels.push(level);
        self.stack.push(Frame {
            dir: Rc::new(dir),
            rel,
            depth,
            entries: entries.into_iter(),
        });
    }

    /// Whether the ignore files say to skip `rel`.
    fn ignored(&self, rel: &Path, is_dir: bool) -> bool {
        let path = self.base.join(rel);
        let (mut ignore, mut git, mut exclude) = (Match::None, Match::None, Match::None);
        for level in self.levels.iter().rev() {
            if ignore.is_none() {
                ignore = level.ignore.matched(&path, is_dir);
            }
            if git.is_none() {
                git = level.git.matched(&path, is_dir);
            }
            if exclude.is_none() {
                exclude = level.exclude.matched(&path, is_dir);
            }
        }
        if ignore.or(git).or(exclude).is_ignore() {
            return true;
        }
        self.ancestors.iter().any(|gi| {
            path.strip_prefix(gi.path())
                .is_ok_and(|rel| gi.matched_path_or_any_parents(rel, is_dir).is_ignore())
        })
    }
}

impl Iterator for Walk {
    type Item = Result<Entry, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(root) = self.root.take() {
            if root.ty == Some(EntryType::Directory)
                && let Place::Root(file) = &root.place
            {
                match file.as_fd().try_clone_to_owned() {
                    Ok(fd) => self.enter(fd, root.rel.clone(), 0),
                    Err(_) => self.failed = true,
                }
            }
            return Some(Ok(root));
        }
        loop {
            if std::mem::take(&mut self.failed) {
                return Some(Err(()));
            }
            let frame = self.stack.last_mut()?;
            let Some((name, ty)) = frame.entries.next() else {
                self.stack.pop();
                self.levels.pop();
                continue;
            };
            if name == ".git" {
                continue;
            }
            let (dir, rel, depth) = (frame.dir.clone(), frame.rel.join(&name), frame.depth + 1);
            let is_dir = ty == Some(EntryType::Directory);
            if self.ignored(&rel, is_dir) {
                continue;
            }
            if is_dir {
                // Not through a symlink, even if `name` was swapped for one since the listing.
                match path::openat2(
                    dir.as_fd(),
                    Path::new(&name),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOCTTY,
                    Mode::empty(),
                    path::single_name(),
                ) {
                    Ok(fd) => self.enter(fd, rel.clone(), depth),
                    Err(_) => self.failed = true,
                }
            }
            return Some(Ok(Entry {
                rel,
                depth,
                ty,
                place: Place::In(dir, name),
            }));
        }
    }
}

/// Opens `name` (which may have several components) beneath the directory `dir`, to read.
fn read_beneath(dir: BorrowedFd<'_>, name: &str) -> Option<File> {
    let fd = path::openat2(
        dir,
        Path::new(name),
        path::read_flags(),
        Mode::empty(),
        nix::fcntl::ResolveFlag::RESOLVE_BENEATH | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
    .ok()?;
    let file = File::from(fd);
    file.metadata().ok()?.is_file().then_some(file)
}

/// The rules of the ignore file `file`, found at `name` in the directory `dir` (relative to the
/// workspace at `base`), read as the `ignore` crate reads them: line by line, lines that are
/// not UTF-8 and bad patterns skipped, a leading BOM dropped.
fn parse_ignore(file: File, base: &Path, dir: &Path, name: &str) -> Gitignore {
    let dir = base.join(dir);
    let from = dir.join(name);
    let mut bytes = Vec::new();
    if file
        .take(IGNORE_FILE_LIMIT)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return Gitignore::empty();
    }
    let mut builder = GitignoreBuilder::new(&dir);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = if i == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        let _ = builder.add_line(Some(from.clone()), line);
    }
    builder.build().unwrap_or_else(|_| Gitignore::empty())
}
