//! Where tether keeps its files. Pure: the caller passes the environment in, so both the daemon
//! and the client resolve the same paths without sharing any I/O code.

use std::path::PathBuf;

/// Every location tether uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `tether.db`, `sessions/<id>/workspace/`.
    pub data_dir: PathBuf,
    /// `config.toml`.
    pub config_dir: PathBuf,
    /// Socket, pid file and start lock (mode 0700).
    pub runtime_dir: PathBuf,
    /// `tetherd.<date>.log`, rotated daily.
    pub log_dir: PathBuf,
}

impl Paths {
    /// `TETHER_HOME` overrides everything; otherwise the XDG base directories, with the
    /// runtime dir falling back to `/tmp/tether-$UID`.
    pub fn resolve(env: impl Fn(&str) -> Option<String>, uid: u32) -> Paths {
        let get = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(home) = get("TETHER_HOME") {
            return Paths {
                data_dir: home.clone(),
                config_dir: home.clone(),
                runtime_dir: home.join("run"),
                log_dir: home.join("logs"),
            };
        }
        let user_home = get("HOME").unwrap_or_else(|| PathBuf::from("/"));
        let xdg = |var: &str, fallback: &str| {
            get(var)
                .unwrap_or_else(|| user_home.join(fallback))
                .join("tether")
        };
        Paths {
            data_dir: xdg("XDG_DATA_HOME", ".local/share"),
            config_dir: xdg("XDG_CONFIG_HOME", ".config"),
            runtime_dir: get("XDG_RUNTIME_DIR")
                .map(|d| d.join("tether"))
                .unwrap_or_else(|| PathBuf::from(format!("/tmp/tether-{uid}"))),
            log_dir: xdg("XDG_STATE_HOME", ".local/state"),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join(crate::socket_file_name())
    }

    pub fn pid_file(&self) -> PathBuf {
        self.runtime_dir.join("tetherd.pid")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.runtime_dir.join("tetherd.lock")
    }

    pub fn db(&self) -> PathBuf {
        self.data_dir.join("tether.db")
    }

    pub fn sessions_dir(&self) -> PathBuf {
        self.data_dir.join("sessions")
    }

    /// Environment layers (`<hash>/`) and their build logs.
    pub fn envs_dir(&self) -> PathBuf {
        self.data_dir.join("envs")
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The HTTP API's bound address (`127.0.0.1:8470`), written while it listens: how a
    /// client finds a port chosen with `--http 127.0.0.1:0`.
    pub fn http_addr_file(&self) -> PathBuf {
        self.runtime_dir.join("tetherd.http")
    }

    /// Provider keys stored by `tether auth login` (mode 0600), read by the daemon on use.
    pub fn credentials_file(&self) -> PathBuf {
        self.config_dir.join("credentials.toml")
    }

    /// The HTTP API's bearer token (mode 0600), made by the daemon's first start.
    pub fn http_token_file(&self) -> PathBuf {
        self.config_dir.join("http-token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn tether_home_wins() {
        let p = Paths::resolve(
            env(&[("TETHER_HOME", "/h"), ("XDG_RUNTIME_DIR", "/run/user/1")]),
            1,
        );
        assert_eq!(p.socket(), PathBuf::from("/h/run/tetherd-v1.sock"));
        assert_eq!(p.db(), PathBuf::from("/h/tether.db"));
    }

    #[test]
    fn xdg_and_fallbacks() {
        let p = Paths::resolve(env(&[("HOME", "/home/u")]), 1000);
        assert_eq!(p.data_dir, PathBuf::from("/home/u/.local/share/tether"));
        assert_eq!(
            p.config_file(),
            PathBuf::from("/home/u/.config/tether/config.toml")
        );
        assert_eq!(p.runtime_dir, PathBuf::from("/tmp/tether-1000"));
        assert_eq!(p.log_dir, PathBuf::from("/home/u/.local/state/tether"));
        let p = Paths::resolve(
            env(&[
                ("HOME", "/home/u"),
                ("XDG_RUNTIME_DIR", "/run/user/1000"),
                ("XDG_DATA_HOME", "/d"),
            ]),
            1000,
        );
        assert_eq!(p.runtime_dir, PathBuf::from("/run/user/1000/tether"));
        assert_eq!(p.data_dir, PathBuf::from("/d/tether"));
    }
}
