//! The keys `tether auth login` stores in `credentials.toml`, as the daemon sees them: read
//! when a provider client is needed and read again whenever the file changed, so a key added
//! (or removed) while the daemon runs takes effect on the next model request, no restart.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use tether_proto::credentials::Credentials;

/// What identifies one version of the file: a rewrite (temp file + rename) changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    mtime_ns: i128,
}

#[derive(Debug, Default)]
struct Loaded {
    stamp: Option<Stamp>,
    credentials: Credentials,
    /// Why the file could not be used (shown by `tether doctor` / `tether auth status`).
    problem: Option<String>,
}

#[derive(Debug)]
pub struct CredentialFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl CredentialFile {
    pub fn new(path: PathBuf) -> CredentialFile {
        CredentialFile {
            path,
            loaded: Mutex::new(Loaded::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the file if it changed since the last look (one `stat` otherwise); true when
    /// what it says may have changed.
    pub fn refresh(&self) -> bool {
        let stamp = std::fs::metadata(&self.path).ok().map(|m| Stamp {
            inode: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        });
        let mut loaded = self.lock();
        if loaded.stamp == stamp {
            return false;
        }
        loaded.stamp = stamp;
        loaded.problem = None;
        loaded.credentials = Credentials::default();
        if stamp.is_none() {
            return true;
        }
        match std::fs::read_to_string(&self.path) {
            Ok(text) => match toml::from_str::<Credentials>(&text) {
                Ok(c) => loaded.credentials = c,
                Err(e) => {
                    let why = format!(
                        "{} is not valid: {}; fix it or run `tether auth login` again",
                        self.path.display(),
                        e.message()
                    );
                    tracing::warn!("{why}");
                    loaded.problem = Some(why);
                }
            },
            Err(e) => {
                let why = format!("cannot read {}: {e}", self.path.display());
                tracing::warn!("{why}");
                loaded.problem = Some(why);
            }
        }
        true
    }

    /// The stored key for `provider`, as of the last [`CredentialFile::refresh`].
    pub fn key(&self, provider: &str) -> Option<String> {
        self.lock().credentials.key(provider).map(str::to_string)
    }

    pub fn problem(&self) -> Option<String> {
        self.lock().problem.clone()
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_seen_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        let file = CredentialFile::new(path.clone());
        assert!(!file.refresh(), "no file, nothing changed");
        assert_eq!(file.key("anthropic"), None);

        std::fs::write(&path, "[anthropic]\napi_key = \"sk-ant-one\"\n").unwrap();
        assert!(file.refresh());
        assert_eq!(file.key("anthropic").as_deref(), Some("sk-ant-one"));
        assert!(!file.refresh(), "unchanged file is not re-read");

        // A rewrite the way `tether auth login` does it: temp file, then rename.
        let tmp = dir.path().join("credentials.toml.new");
        std::fs::write(&tmp, "[anthropic]\napi_key = \"sk-ant-two\"\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(file.refresh());
        assert_eq!(file.key("anthropic").as_deref(), Some("sk-ant-two"));

        std::fs::remove_file(&path).unwrap();
        assert!(file.refresh());
        assert_eq!(file.key("anthropic"), None);
    }

    #[test]
    fn a_broken_file_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        std::fs::write(&path, "[anthropic\napi_key = 1").unwrap();
        let file = CredentialFile::new(path);
        assert!(file.refresh());
        assert_eq!(file.key("anthropic"), None);
        let p = file.problem().unwrap();
        assert!(p.contains("credentials.toml is not valid"), "{p}");
        assert!(!p.contains("api_key = 1"), "never echo the file: {p}");
    }
}
