//! A real OpenSSH server on 127.0.0.1 for the remote and fleet tests: its own sshd with a
//! throwaway host key and user key, letting the current user in.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd on 127.0.0.1 that lets the current user in with `key`.
pub struct Sshd {
    /// Its keys, config and log; tests may put their own files here.
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Sshd {
    pub fn start() -> Result<Sshd, String> {
        if !Path::new(SSHD).exists() {
            return Err(format!(
                "{SSHD} is missing (Debian: apt-get install openssh-server)"
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("tsh")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        for key in ["host_key", "user_key"] {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .status()
                .map_err(|e| format!("ssh-keygen: {e}"))?;
            if !ok.success() {
                return Err("ssh-keygen failed".into());
            }
        }
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
        // Privilege separation needs this directory when sshd runs as root.
        if nix::unistd::geteuid().is_root() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .map_err(|e| format!("cannot run {SSHD}: {e}"))?;
        let mut sshd = Sshd { dir, port, child };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                return Err(format!("sshd exited ({status}): {}", sshd.log()));
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("sshd did not listen within 10 s: {}", sshd.log()));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(sshd)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("user_key")
    }

    pub fn url(&self) -> String {
        format!("ssh://127.0.0.1:{}", self.port)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// `TETHER_SSH_COMMAND` for a client: this server's user key, no host-key prompts.
    pub fn ssh_command(&self) -> String {
        format!(
            "ssh -i {} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR -o BatchMode=yes",
            self.key().display()
        )
    }
}

pub fn sshd_or_skip() -> Option<Sshd> {
    match Sshd::start() {
        Ok(s) => Some(s),
        Err(why) => {
            eprintln!("SKIPPED: cannot start sshd for the remote tests: {why}");
            None
        }
    }
}
