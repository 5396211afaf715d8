//! tether's files are the user's alone: the event log (its WAL holds prompts, transcripts and
//! tool output), spools, logs, config and the workspaces tether creates. Directories are made
//! 0700 and files 0600 whatever the umask, and at start anything an older tetherd left looser
//! is tightened. Inside a workspace or an environment layer files keep their modes (the
//! agent's and the packages' own); the private directories above them keep other users out.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tether_proto::Paths;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents with mode 0700 (an existing `dir` is left as it is).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Options that create a file with mode 0600.
pub fn file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Takes the group and other bits off `path` if it is ours and not a symlink; true if it
/// changed anything.
pub fn tighten(path: &Path) -> io::Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink()
        || meta.uid() != nix::unistd::geteuid().as_raw()
        || meta.mode() & 0o077 == 0
    {
        return Ok(false);
    }
    std::fs::set_permissions(path, Permissions::from_mode(meta.mode() & 0o7700))?;
    Ok(true)
}

/// Makes the data, config and log directories (0700) and tightens what tether keeps there:
/// each directory and every entry at its top level (the database with its WAL and SHM,
/// `config.toml`, `http-token`, logs, `sessions/`, `spool/`, `envs/`), each session's
/// directory and the workspace tether made in it, and the whole spool. Returns how many
/// paths were tightened.
pub fn secure_home(paths: &Paths) -> io::Result<usize> {
    let mut tightened = 0;
    let mut tight = |p: &Path| -> io::Result<()> {
        if tighten(p)? {
            tracing::debug!(path = %p.display(), "took group and other permissions off");
            tightened += 1;
        }
        Ok(())
    };
    for dir in [&paths.data_dir, &paths.config_dir, &paths.log_dir] {
        create_dir(dir).map_err(|e| with_path(e, dir))?;
        tight(dir)?;
        for entry in entries(dir)? {
            tight(&entry)?;
        }
    }
    // Made here so later plain `create_dir_all`s of what is under them find them private.
    for dir in [paths.sessions_dir(), paths.envs_dir(), spool_dir(paths)] {
        create_dir(&dir).map_err(|e| with_path(e, &dir))?;
        tight(&dir)?;
    }
    for session in entries(&paths.sessions_dir())? {
        tight(&session)?;
        tight(&session.join("workspace"))?;
    }
    let mut stack = vec![spool_dir(paths)];
    while let Some(dir) = stack.pop() {
        for entry in entries(&dir)? {
            tight(&entry)?;
            if std::fs::symlink_metadata(&entry).is_ok_and(|m| m.is_dir()) {
                stack.push(entry);
            }
        }
    }
    Ok(tightened)
}

fn spool_dir(paths: &Paths) -> PathBuf {
    paths.data_dir.join("spool")
}

fn entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()
            .map_err(|e| with_path(e, dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(with_path(e, dir)),
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The rolling log appender with each new file made 0600 as soon as it appears:
/// tracing-appender creates them with the process umask and has no mode option. Checked once
/// per UTC day, the appender's rotation period.
pub struct PrivateLogs<W> {
    inner: W,
    dir: PathBuf,
    day: Option<u64>,
}

impl<W> PrivateLogs<W> {
    pub fn new(inner: W, dir: &Path) -> PrivateLogs<W> {
        PrivateLogs {
            inner,
            dir: dir.to_path_buf(),
            day: None,
        }
    }
}

impl<W: Write> Write for PrivateLogs<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Read before the write: if the appender rotates in this write, the day differs now or
        // at the next write, never at neither.
        let day = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400);
        let n = self.inner.write(buf)?;
        if self.day != Some(day) {
            self.day = Some(day);
            for f in entries(&self.dir).unwrap_or_default() {
                // Logging about logging would recurse; a failure here only leaves a file as
                // private as its 0700 directory makes it.
                let _ = tighten(&f);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn new_dirs_and_files_are_private_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("f");
        file_options().create(true).write(true).open(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
    }

    #[test]
    fn the_home_is_tightened_but_not_workspace_contents_or_symlink_targets() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let home_s = home.display().to_string();
        let paths = Paths::resolve(|k| (k == "TETHER_HOME").then(|| home_s.clone()), 0);
        let ws = paths.sessions_dir().join("sesn_1/workspace");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(home.join("spool/sesn_1")).unwrap();
        let loose_file = |p: &Path| {
            std::fs::write(p, "x").unwrap();
            std::fs::set_permissions(p, Permissions::from_mode(0o644)).unwrap();
        };
        for f in [
            "tether.db",
            "tether.db-wal",
            "config.toml",
            "spool/sesn_1/t.log",
        ] {
            loose_file(&home.join(f));
        }
        loose_file(&ws.join("agent-made"));
        let outside = tmp.path().join("outside");
        loose_file(&outside);
        std::os::unix::fs::symlink(&outside, home.join("link")).unwrap();
        for d in [
            &home,
            &paths.sessions_dir(),
            &ws,
            &home.join("spool/sesn_1"),
        ] {
            std::fs::set_permissions(d, Permissions::from_mode(0o755)).unwrap();
        }

        assert!(secure_home(&paths).unwrap() >= 9);
        for d in [
            home.clone(),
            paths.sessions_dir(),
            paths.sessions_dir().join("sesn_1"),
            ws.clone(),
            paths.log_dir.clone(),
            paths.envs_dir(),
            home.join("spool/sesn_1"),
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        for f in [
            "tether.db",
            "tether.db-wal",
            "config.toml",
            "spool/sesn_1/t.log",
        ] {
            assert_eq!(mode(&home.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&ws.join("agent-made")), 0o644);
        assert_eq!(mode(&outside), 0o644);
        // Nothing left to do the second time.
        assert_eq!(secure_home(&paths).unwrap(), 0);
    }

    #[test]
    fn a_new_log_file_is_made_private_at_its_first_write() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("tetherd.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&f)
            .unwrap();
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        let mut w = PrivateLogs::new(file, tmp.path());
        w.write_all(b"line\n").unwrap();
        assert_eq!(mode(&f), 0o600);
    }
}
