//! Workspace confinement for the file tools (`read`, `write`, `edit`, `glob`, `grep`) and the
//! large-output spill.
//!
//! The daemon (often root) runs these tools while sandboxed code can change the workspace at
//! the same moment, e.g. swap a directory with a symlink to `/etc` in a loop. So no path is ever
//! checked first and opened by name later: every operation is resolved by the kernel relative
//! to a file descriptor of the workspace root, with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)`, which fails (`EXDEV`) on anything that would leave the workspace at
//! the moment of the lookup itself — `..` above it, an absolute symlink, a relative one pointing
//! out, `/proc/…` magic links. Creating, renaming and removing then happen with the `*at` calls
//! relative to a directory descriptor opened that way, and the walks of `glob`/`grep` go from
//! descriptor to descriptor (see [`super::walk`]).
//!
//! A path from the model is first made relative to the workspace, lexically:
//! 1. an absolute path must start with the workspace (as configured or canonical), which is
//!    stripped; anything else is outside;
//! 2. `.` and `..` are resolved lexically (`a/../b` is `b`); climbing above the root is outside.
//!
//! Symlinks inside the workspace are followed when their target is relative and stays inside
//! (the kernel checks this at every step); absolute symlink targets are refused, even ones that
//! point back inside, because `RESOLVE_BENEATH` can't tell. Writing through a symlink writes its
//! target. Dangling symlinks are refused with their own message.
//!
//! The bash tool is **not** confined by this module (the sandbox does that).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// Symlinks followed by hand (the last component of a write target) before giving up, as the
/// kernel's own limit.
const MAX_SYMLINK_HOPS: usize = 40;
/// `openat2` returns `EAGAIN` when a rename elsewhere raced a `..` lookup; it may be retried.
const EAGAIN_RETRIES: usize = 32;

/// Resolution for every lookup from the workspace root.
fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Resolution for one name inside a directory already opened: no symlinks at all.
pub fn single_name() -> ResolveFlag {
    beneath() | ResolveFlag::RESOLVE_NO_SYMLINKS
}

/// `openat2(dir, path)` with `how`, retried on `EAGAIN`. An empty path is the directory itself.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
    mode: Mode,
    resolve: ResolveFlag,
) -> Result<OwnedFd, Errno> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(resolve);
    let mut result = Err(Errno::EAGAIN);
    for _ in 0..EAGAIN_RETRIES {
        result = nix::fcntl::openat2(dir, path, how);
        if !matches!(result, Err(Errno::EAGAIN)) {
            break;
        }
    }
    result
}

/// Flags for opening something to read: FIFOs must not block the daemon, ttys must not
/// become its controlling terminal.
pub fn read_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY
}

/// `lstat` of `name` in `dir`.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<FileStat, Errno> {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// The file type bits of a stat.
pub fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT
}

/// The kind of a directory entry.
pub type EntryType = nix::dir::Type;

/// The type of a stat, as a directory entry's.
pub fn entry_type(stat: &FileStat) -> Option<EntryType> {
    Some(match kind(stat) {
        SFlag::S_IFDIR => EntryType::Directory,
        SFlag::S_IFREG => EntryType::File,
        SFlag::S_IFLNK => EntryType::Symlink,
        SFlag::S_IFIFO => EntryType::Fifo,
        SFlag::S_IFSOCK => EntryType::Socket,
        SFlag::S_IFCHR => EntryType::CharacterDevice,
        SFlag::S_IFBLK => EntryType::BlockDevice,
        _ => return None,
    })
}

/// A directory's entries: name and type.
pub type DirEntries = Vec<(OsString, Option<EntryType>)>;

/// The entries of the open directory `dir` (without `.` and `..`), each with its type (from
/// `readdir`, or `lstat` when the filesystem doesn't say; `None` if that failed too), and the
/// directory handle, to open entries relative to it.
pub fn list_dir(dir: OwnedFd) -> Result<(nix::dir::Dir, DirEntries), Errno> {
    use std::os::unix::ffi::OsStrExt;
    let mut dir = nix::dir::Dir::from_fd(dir)?;
    let mut entries = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        entries.push((name.to_owned(), entry.file_type()));
    }
    for (name, ty) in &mut entries {
        if ty.is_none() {
            *ty = lstat_at(dir.as_fd(), name)
                .ok()
                .as_ref()
                .and_then(entry_type);
        }
    }
    Ok((dir, entries))
}

/// The session workspace, opened for one tool call.
#[derive(Debug)]
pub struct Workspace {
    /// As configured (used in messages).
    given: PathBuf,
    /// Canonical form (to strip absolute paths given by the model).
    canonical: PathBuf,
    /// Every lookup starts here.
    root: OwnedFd,
    tool: &'static str,
}

/// Where a write lands: the directory that holds the file (opened beneath the workspace) and
/// the file's name in it.
pub struct WriteTarget {
    dir: OwnedFd,
    name: OsString,
    /// The file there now, if any (not a directory or symlink).
    pub existing: Option<FileStat>,
}

impl Workspace {
    /// Opens the workspace for `tool`; fails if it doesn't exist.
    pub fn open(root: &Path, tool: &'static str) -> Result<Self, String> {
        Self::open_as(root, root, tool)
    }

    /// Opens `root`, a directory the sandbox shows at `shown` (a mount such as /mnt/user):
    /// absolute paths under `shown` resolve inside `root`, and messages name `shown`.
    pub fn open_as(root: &Path, shown: &Path, tool: &'static str) -> Result<Self, String> {
        let not_accessible = |e: &dyn std::fmt::Display| {
            format!(
                "{tool}: the session workspace {} is not accessible: {e}",
                root.display()
            )
        };
        let canonical = std::fs::canonicalize(root).map_err(|e| not_accessible(&e))?;
        let fd = nix::fcntl::open(
            &canonical,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ENOTDIR => format!(
                "{tool}: the session workspace {} is not a directory",
                root.display()
            ),
            e => not_accessible(&io::Error::from(e)),
        })?;
        Ok(Self {
            given: shown.to_path_buf(),
            canonical,
            root: fd,
            tool,
        })
    }

    /// The canonical workspace path (for messages and absolute patterns; never opened).
    pub fn canonical(&self) -> &Path {
        &self.canonical
    }

    pub fn tool(&self) -> &'static str {
        self.tool
    }

    /// A workspace-relative path for output: `.` for the workspace itself.
    pub fn display(rel: &Path) -> String {
        if rel.as_os_str().is_empty() {
            ".".to_owned()
        } else {
            rel.to_string_lossy().into_owned()
        }
    }

    fn outside(&self, raw: &str) -> String {
        format!(
            "{}: path `{raw}` is outside the session workspace {}; file tools can only touch files inside it",
            self.tool,
            self.given.display()
        )
    }

    /// A path that is inside lexically but leads out through a symlink.
    fn escapes(&self, raw: &str) -> String {
        format!(
            "{} (a symlink on its way points out of the workspace; symlinks are followed only when their target is relative and stays inside)",
            self.outside(raw)
        )
    }

    /// `raw` made relative to the workspace and normalized, without touching the filesystem
    /// (see the module docs); empty for the workspace itself.
    pub fn resolve(&self, raw: &str) -> Result<PathBuf, String> {
        let tool = self.tool;
        if raw.is_empty() {
            return Err(format!("{tool}: path must not be empty"));
        }
        if raw.contains('\0') {
            return Err(format!("{tool}: path must not contain NUL characters"));
        }
        let given = Path::new(raw);
        if given.is_absolute() {
            let normalized = normalize_lexically(given);
            let rel = normalized
                .strip_prefix(&self.canonical)
                .or_else(|_| normalized.strip_prefix(normalize_lexically(&self.given)))
                .map_err(|_| self.outside(raw))?;
            return Ok(rel.to_path_buf());
        }
        let mut rel = PathBuf::new();
        for component in given.components() {
            match component {
                Component::Normal(name) => rel.push(name),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !rel.pop() {
                        return Err(self.outside(raw));
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(self.outside(raw)),
            }
        }
        Ok(rel)
    }

    /// `openat2` of `rel` from the workspace root, beneath it.
    pub fn open_beneath(&self, rel: &Path, flags: OFlag, mode: Mode) -> Result<OwnedFd, Errno> {
        openat2(self.root.as_fd(), rel, flags, mode, beneath())
    }

    /// Opens `rel` (given as `raw`) to read: a file or a directory. `missing` is the message
    /// when it doesn't exist.
    pub fn open_read(
        &self,
        raw: &str,
        rel: &Path,
        missing: impl FnOnce() -> String,
    ) -> Result<File, String> {
        self.open_beneath(rel, read_flags(), Mode::empty())
            .map(File::from)
            .map_err(|e| self.explain(raw, rel, e, missing))
    }

    /// Opens the directory `rel`.
    fn open_dir(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        self.open_beneath(
            rel,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOCTTY,
            Mode::empty(),
        )
    }

    /// The message for a failed lookup of `rel` (given as `raw`).
    pub fn explain(
        &self,
        raw: &str,
        rel: &Path,
        err: Errno,
        missing: impl FnOnce() -> String,
    ) -> String {
        let tool = self.tool;
        match err {
            Errno::EXDEV => self.escapes(raw),
            Errno::ENOENT => self.dangling(raw, rel).unwrap_or_else(missing),
            Errno::ELOOP => format!(
                "{tool}: path `{raw}` goes through a symlink loop or a /proc magic link; file tools don't follow those"
            ),
            Errno::ENXIO => format!("{tool}: `{raw}` is not a regular file (a socket)"),
            Errno::EAGAIN => format!(
                "{tool}: the workspace kept changing while `{raw}` was looked up; try again"
            ),
            e => format!("{tool}: cannot open `{raw}`: {}", io::Error::from(e)),
        }
    }

    /// If the deepest existing component of `rel` is a dangling symlink, says so. Only for
    /// messages: nothing is opened through what it finds.
    fn dangling(&self, raw: &str, rel: &Path) -> Option<String> {
        let parts: Vec<&OsStr> = rel.iter().collect();
        for k in (1..=parts.len()).rev() {
            let parent: PathBuf = parts[..k - 1].iter().collect();
            let Ok(dir) = self.open_beneath(&parent, OFlag::O_PATH, Mode::empty()) else {
                continue;
            };
            match lstat_at(dir.as_fd(), parts[k - 1]) {
                Ok(stat) if kind(&stat) == SFlag::S_IFLNK => {
                    let target = nix::fcntl::readlinkat(dir.as_fd(), parts[k - 1]).ok()?;
                    let link: PathBuf = parts[..k].iter().collect();
                    return Some(format!(
                        "{}: path `{raw}` goes through the dangling symlink {} -> {}; file tools don't follow dangling symlinks",
                        self.tool,
                        link.display(),
                        Path::new(&target).display()
                    ));
                }
                Ok(_) => return None,
                Err(_) => {}
            }
        }
        None
    }

    /// Finds where a write of `rel` (given as `raw`) lands: its directory, created (with the
    /// missing parents) when `create_dirs`, and the name in it. A symlink as the last
    /// component is followed by hand to its target, so the atomic rename replaces the target
    /// and the link stays; every directory on the way is opened beneath the root.
    pub fn write_target(
        &self,
        raw: &str,
        rel: &Path,
        create_dirs: bool,
    ) -> Result<WriteTarget, String> {
        let tool = self.tool;
        let is_dir = || format!("{tool}: `{raw}` is a directory");
        // Grows `..` components when a symlink's target has them; the kernel resolves those
        // (beneath the root) when the parent is opened.
        let mut path = rel.to_path_buf();
        for hop in 0..=MAX_SYMLINK_HOPS {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(is_dir());
            };
            let (parent, name) = (parent.to_path_buf(), name.to_owned());
            let dir = if hop == 0 && create_dirs {
                self.create_dirs(raw, &parent)?
            } else {
                self.open_dir(&parent).map_err(|e| {
                    self.explain(raw, &parent, e, || format!("{tool}: no such file: {raw}"))
                })?
            };
            match lstat_at(dir.as_fd(), &name) {
                Err(Errno::ENOENT) if hop == 0 => {
                    return Ok(WriteTarget {
                        dir,
                        name,
                        existing: None,
                    });
                }
                Err(Errno::ENOENT) => {
                    return Err(format!(
                        "{tool}: path `{raw}` goes through a dangling symlink (its target {} does not exist); file tools don't follow dangling symlinks",
                        path.display()
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "{tool}: cannot access `{raw}`: {}",
                        io::Error::from(e)
                    ));
                }
                Ok(stat) if kind(&stat) == SFlag::S_IFDIR => return Err(is_dir()),
                Ok(stat) if kind(&stat) == SFlag::S_IFLNK => {
                    let target = nix::fcntl::readlinkat(dir.as_fd(), name.as_os_str())
                        .map_err(|e| format!("{tool}: cannot read the symlink `{raw}`: {e}"))?;
                    if Path::new(&target).is_absolute() {
                        return Err(self.escapes(raw));
                    }
                    path = parent.join(target);
                }
                Ok(stat) => {
                    return Ok(WriteTarget {
                        dir,
                        name,
                        existing: Some(stat),
                    });
                }
            }
        }
        Err(self.explain(raw, rel, Errno::ELOOP, String::new))
    }

    /// Opens the directory `rel`, creating it and its missing parents (each `mkdirat` in a
    /// parent opened beneath the root).
    fn create_dirs(&self, raw: &str, rel: &Path) -> Result<OwnedFd, String> {
        let tool = self.tool;
        match self.open_dir(rel) {
            Ok(dir) => return Ok(dir),
            // Found out, and said, component by component below.
            Err(Errno::ENOENT | Errno::ENOTDIR) => {}
            Err(e) => return Err(self.explain(raw, rel, e, String::new)),
        }
        let mut dir = self
            .open_dir(Path::new(""))
            .map_err(|e| self.explain(raw, Path::new(""), e, String::new))?;
        let mut prefix = PathBuf::new();
        for name in rel.iter() {
            prefix.push(name);
            let cannot_create = |e: Errno| {
                format!(
                    "{tool}: cannot create directory `{}`: {}",
                    prefix.display(),
                    io::Error::from(e)
                )
            };
            dir = match self.open_dir(&prefix) {
                Ok(next) => next,
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(
                        dir.as_fd(),
                        name,
                        Mode::from_bits_truncate(0o777),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(cannot_create(e)),
                    }
                    self.open_dir(&prefix).map_err(|e| {
                        self.explain(raw, &prefix, e, || cannot_create(Errno::ENOENT))
                    })?
                }
                Err(Errno::ENOTDIR) => return Err(cannot_create(Errno::EEXIST)),
                Err(e) => return Err(self.explain(raw, &prefix, e, String::new)),
            };
        }
        Ok(dir)
    }

    /// Replaces the file at `target` with `bytes` atomically: a temp file in the same
    /// directory (created there, never followed), the old file's permissions (without setuid
    /// and setgid), then a rename over it. The temp file is removed on failure.
    pub fn replace(target: &WriteTarget, bytes: &[u8]) -> io::Result<()> {
        let dir = target.dir.as_fd();
        let tmp = temp_name(&target.name.to_string_lossy());
        let fd = openat2(
            dir,
            Path::new(&tmp),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o666),
            single_name(),
        )?;
        let mut file = File::from(fd);
        let result = (|| {
            io::Write::write_all(&mut file, bytes)?;
            if let Some(old) = &target.existing {
                file.set_permissions(std::fs::Permissions::from_mode(old.st_mode & 0o777))?;
            }
            file.sync_all()?;
            drop(file);
            nix::fcntl::renameat(dir, tmp.as_str(), dir, target.name.as_os_str())?;
            Ok(())
        })();
        if result.is_err() {
            let _ =
                nix::unistd::unlinkat(dir, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        result
    }
}

/// A temp-file name unique within this process.
fn temp_name(target_name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        ".{target_name}.tether-{}-{n}-{nanos}.tmp",
        std::process::id()
    )
}

/// Removes `.` components and resolves `..` against the preceding
/// component, without touching the filesystem. `..` at the root stays at the
/// root.
pub fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(p) => out.push(p.as_os_str()),
            Component::RootDir => out.push(Component::RootDir.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;

    struct Fixture {
        _outer: TempDir,
        ws_dir: PathBuf,
        outside_dir: PathBuf,
        ws: Workspace,
    }

    /// outer/ws (the workspace) and outer/outside (with secret.txt).
    fn fixture() -> Fixture {
        let outer = TempDir::new().unwrap();
        let ws_dir = outer.path().join("ws");
        let outside_dir = outer.path().join("outside");
        std::fs::create_dir_all(ws_dir.join("sub")).unwrap();
        std::fs::create_dir_all(&outside_dir).unwrap();
        std::fs::write(outside_dir.join("secret.txt"), "secret").unwrap();
        std::fs::write(ws_dir.join("a.txt"), "a").unwrap();
        std::fs::write(ws_dir.join("sub/x.txt"), "x").unwrap();
        let ws = Workspace::open(&ws_dir, "read").unwrap();
        Fixture {
            _outer: outer,
            ws_dir,
            outside_dir,
            ws,
        }
    }

    fn is_outside<T>(result: Result<T, String>) -> bool {
        match result {
            Err(message) => message.contains("is outside the session workspace"),
            Ok(_) => false,
        }
    }

    /// Resolves and opens `raw` to read; the file's content.
    fn read(ws: &Workspace, raw: &str) -> Result<String, String> {
        let rel = ws.resolve(raw)?;
        let mut file = ws.open_read(raw, &rel, || format!("missing {raw}"))?;
        let mut text = String::new();
        io::Read::read_to_string(&mut file, &mut text).map_err(|e| e.to_string())?;
        Ok(text)
    }

    /// Resolves `raw` and finds where a write lands, creating directories.
    fn target(ws: &Workspace, raw: &str) -> Result<WriteTarget, String> {
        ws.write_target(raw, &ws.resolve(raw)?, true)
    }

    #[test]
    fn lexical_normalization() {
        assert_eq!(
            normalize_lexically(Path::new("/a/./b/../c")),
            Path::new("/a/c")
        );
        assert_eq!(normalize_lexically(Path::new("/../../x")), Path::new("/x"));
        assert_eq!(normalize_lexically(Path::new("/a/b/..")), Path::new("/a"));
    }

    #[test]
    fn paths_inside_resolve_relative_to_the_workspace() {
        let f = fixture();
        assert_eq!(f.ws.resolve("a.txt").unwrap(), Path::new("a.txt"));
        assert_eq!(f.ws.resolve("./sub/../a.txt").unwrap(), Path::new("a.txt"));
        assert_eq!(f.ws.resolve(".").unwrap(), Path::new(""));
        let abs = f.ws_dir.join("a.txt");
        assert_eq!(
            f.ws.resolve(abs.to_str().unwrap()).unwrap(),
            Path::new("a.txt")
        );
        let canonical = f.ws.canonical().join("sub/../sub/x.txt");
        assert_eq!(
            f.ws.resolve(canonical.to_str().unwrap()).unwrap(),
            Path::new("sub/x.txt")
        );
        // Not-yet-existing paths are fine.
        assert_eq!(
            f.ws.resolve("new/dir/file.rs").unwrap(),
            Path::new("new/dir/file.rs")
        );
        assert_eq!(Workspace::display(Path::new("sub/x")), "sub/x");
        assert_eq!(Workspace::display(Path::new("")), ".");
        assert_eq!(read(&f.ws, "a.txt").unwrap(), "a");
        assert_eq!(read(&f.ws, abs.to_str().unwrap()).unwrap(), "a");
    }

    #[test]
    fn dotdot_escapes_are_refused() {
        let f = fixture();
        assert!(is_outside(f.ws.resolve("../outside/secret.txt")));
        assert!(is_outside(f.ws.resolve("sub/../../outside/secret.txt")));
        assert!(is_outside(f.ws.resolve("..")));
        assert!(is_outside(f.ws.resolve("../x")));
        let message = f.ws.resolve("../x").unwrap_err();
        assert_eq!(
            message,
            format!(
                "read: path `../x` is outside the session workspace {}; file tools can only touch files inside it",
                f.ws_dir.display()
            )
        );
    }

    #[test]
    fn absolute_paths_outside_are_refused() {
        let f = fixture();
        assert!(is_outside(f.ws.resolve("/etc/passwd")));
        assert!(is_outside(f.ws.resolve("/")));
        assert!(is_outside(
            f.ws.resolve(f.outside_dir.join("secret.txt").to_str().unwrap())
        ));
        // A sibling whose name starts with the workspace's name.
        let sibling = format!("{}-evil/x", f.ws_dir.display());
        assert!(is_outside(f.ws.resolve(&sibling)));
    }

    #[test]
    fn symlink_escapes_are_refused() {
        let f = fixture();
        symlink("/etc", f.ws_dir.join("etc")).unwrap();
        symlink(&f.outside_dir, f.ws_dir.join("out")).unwrap();
        symlink("../outside", f.ws_dir.join("out-rel")).unwrap();
        symlink(
            f.outside_dir.join("secret.txt"),
            f.ws_dir.join("secret-link"),
        )
        .unwrap();
        symlink("/proc/self/environ", f.ws_dir.join("environ")).unwrap();
        symlink("sub/../../outside", f.ws_dir.join("sneaky")).unwrap();
        for raw in [
            "etc/passwd",
            "etc",
            "out/secret.txt",
            "out-rel/secret.txt",
            "secret-link",
            "environ",
            "sneaky/secret.txt",
        ] {
            assert!(is_outside(read(&f.ws, raw)), "read {raw}");
        }
        for raw in [
            "out/new-file.txt",
            "out/new/dir/file.txt",
            "out-rel/new.txt",
            "secret-link",
            "sneaky/new.txt",
            "etc/passwd",
        ] {
            assert!(is_outside(target(&f.ws, raw)), "write {raw}");
        }
        assert_eq!(std::fs::read_dir(&f.outside_dir).unwrap().count(), 1);
        // A dangling link pointing outside.
        symlink(f.outside_dir.join("nope"), f.ws_dir.join("dangling-out")).unwrap();
        assert!(is_outside(read(&f.ws, "dangling-out")));
        assert!(is_outside(read(&f.ws, "dangling-out/x")));
        assert!(is_outside(target(&f.ws, "dangling-out")));
        assert!(is_outside(target(&f.ws, "dangling-out/x")));
        assert!(!f.outside_dir.join("nope").exists());
    }

    #[test]
    fn relative_symlinks_inside_the_workspace_are_followed() {
        let f = fixture();
        symlink("sub", f.ws_dir.join("sublink")).unwrap();
        symlink("a.txt", f.ws_dir.join("a-link")).unwrap();
        symlink("../a.txt", f.ws_dir.join("sub/up-link")).unwrap();
        assert_eq!(read(&f.ws, "sublink/x.txt").unwrap(), "x");
        assert_eq!(read(&f.ws, "a-link").unwrap(), "a");
        assert_eq!(read(&f.ws, "sub/up-link").unwrap(), "a");
        // A write through a link lands on its target.
        let t = target(&f.ws, "sub/up-link").unwrap();
        assert_eq!(t.name, "a.txt");
        assert!(t.existing.is_some());
        Workspace::replace(&t, b"new a").unwrap();
        assert_eq!(
            std::fs::read_to_string(f.ws_dir.join("a.txt")).unwrap(),
            "new a"
        );
        assert!(
            std::fs::symlink_metadata(f.ws_dir.join("sub/up-link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // Dangling but pointing inside: refused with its own message.
        symlink("missing.txt", f.ws_dir.join("dangling-in")).unwrap();
        let message = read(&f.ws, "dangling-in").unwrap_err();
        assert!(message.contains("dangling symlink"), "{message}");
        let message = target(&f.ws, "dangling-in").err().unwrap();
        assert!(message.contains("dangling symlink"), "{message}");
        assert!(!f.ws_dir.join("missing.txt").exists());
    }

    #[test]
    fn absolute_symlinks_are_refused_even_pointing_inside() {
        // RESOLVE_BENEATH can't follow an absolute target; the message says what to do.
        let f = fixture();
        symlink(f.ws_dir.join("sub"), f.ws_dir.join("abs-sublink")).unwrap();
        let message = read(&f.ws, "abs-sublink/x.txt").unwrap_err();
        assert!(
            message.contains("is outside the session workspace"),
            "{message}"
        );
        assert!(message.contains("target is relative"), "{message}");
    }

    #[test]
    fn workspace_reached_through_a_symlink() {
        let f = fixture();
        let alias = f._outer.path().join("alias");
        symlink(&f.ws_dir, &alias).unwrap();
        let ws = Workspace::open(&alias, "write").unwrap();
        assert_eq!(ws.canonical(), f.ws.canonical());
        assert!(read(&ws, alias.join("a.txt").to_str().unwrap()).is_ok());
        assert!(read(&ws, f.ws_dir.join("a.txt").to_str().unwrap()).is_ok());
        assert!(is_outside(ws.resolve("../outside/secret.txt")));
    }

    #[test]
    fn missing_workspace_and_bad_input() {
        let f = fixture();
        assert!(Workspace::open(&f.ws_dir.join("nope"), "read").is_err());
        let file = Workspace::open(&f.ws_dir.join("a.txt"), "read").unwrap_err();
        assert!(file.contains("is not a directory"), "{file}");
        assert!(f.ws.resolve("").is_err());
        assert!(f.ws.resolve("a\0b").is_err());
    }

    #[test]
    fn directories_are_created_beneath_and_files_replaced_atomically() {
        let f = fixture();
        let t = target(&f.ws, "new/deep/file.txt").unwrap();
        assert!(t.existing.is_none());
        Workspace::replace(&t, b"hello").unwrap();
        assert_eq!(
            std::fs::read_to_string(f.ws_dir.join("new/deep/file.txt")).unwrap(),
            "hello"
        );
        let message = target(&f.ws, "a.txt/inner.txt").err().unwrap();
        assert!(
            message.contains("cannot create directory `a.txt`"),
            "{message}"
        );
        let message = target(&f.ws, "sub").err().unwrap();
        assert_eq!(message, "read: `sub` is a directory");
        let message = target(&f.ws, ".").err().unwrap();
        assert_eq!(message, "read: `.` is a directory");
    }
}
