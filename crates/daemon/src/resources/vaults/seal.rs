//! Credential secrets are sealed (ChaCha20-Poly1305, ring) with a key kept beside the
//! database, not in it: `vault.key` in the data dir, 0600. A copy of `tether.db` alone (a
//! backup, a bug report) holds only ciphertext; the key and the database together do reveal
//! them, as they must for the daemon to use them unattended.
//!
//! Each secret is bound to its credential's id (the AEAD's associated data), so a sealed blob
//! copied onto another row does not open.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const KEY_LEN: usize = 32;
pub const KEY_FILE: &str = "vault.key";

/// The key that seals and opens credential secrets.
#[derive(Clone)]
pub struct Sealer {
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// The key in `data_dir/vault.key`, made on first use (two daemons racing to make it
    /// agree: the file is created exclusively and the loser reads the winner's).
    pub fn open(data_dir: &Path) -> Result<Sealer, String> {
        let path = data_dir.join(KEY_FILE);
        match read_key(&path) {
            Ok(key) => return Ok(Sealer { key }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(key_error(&path, &e)),
        }
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| "the system random generator failed".to_string())?;
        match crate::private::file_options()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(&key)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| key_error(&path, &e))?;
                Ok(Sealer { key })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key(&path)
                .map(|key| Sealer { key })
                .map_err(|e| key_error(&path, &e)),
            Err(e) => Err(key_error(&path, &e)),
        }
    }

    fn aead(&self) -> Result<LessSafeKey, String> {
        UnboundKey::new(&CHACHA20_POLY1305, &self.key)
            .map(LessSafeKey::new)
            .map_err(|_| "the vault key is unusable".to_string())
    }

    /// `nonce || ciphertext || tag` of `plain`, bound to `owner`.
    pub fn seal(&self, owner: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "the system random generator failed".to_string())?;
        let mut buf = plain.to_vec();
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut buf,
            )
            .map_err(|_| "sealing a secret failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// The plaintext of [`Sealer::seal`]'s output for `owner`.
    pub fn open_sealed(&self, owner: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let broken = || {
            format!(
                "the secret of {owner} does not open with this data dir's {KEY_FILE} (was the database copied without its key, or the key replaced?); set the credential's secret again"
            )
        };
        if sealed.len() < NONCE_LEN {
            return Err(broken());
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| broken())?;
        let mut buf = rest.to_vec();
        let plain = self
            .aead()?
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut buf)
            .map_err(|_| broken())?;
        Ok(plain.to_vec())
    }
}

fn read_key(path: &PathBuf) -> std::io::Result<[u8; KEY_LEN]> {
    let mut f = std::fs::File::open(path)?;
    let mut key = [0u8; KEY_LEN];
    f.read_exact(&mut key)?;
    Ok(key)
}

fn key_error(path: &Path, e: &std::io::Error) -> String {
    format!(
        "the vault key {} can't be read or made: {e} (it is 32 bytes, mode 0600; without it stored credentials can't be used)",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_owner_and_is_not_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::open(dir.path()).unwrap();
        let sealed = s.seal("vcrd_1", b"hunter2-secret").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(s.open_sealed("vcrd_1", &sealed).unwrap(), b"hunter2-secret");
        assert!(s.open_sealed("vcrd_2", &sealed).is_err());
        // The same key is read back by the next open.
        let again = Sealer::open(dir.path()).unwrap();
        assert_eq!(
            again.open_sealed("vcrd_1", &sealed).unwrap(),
            b"hunter2-secret"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // Another data dir's key doesn't open it.
        let other = tempfile::tempdir().unwrap();
        assert!(
            Sealer::open(other.path())
                .unwrap()
                .open_sealed("vcrd_1", &sealed)
                .is_err()
        );
    }
}
