//! A running tool's output, spooled to a file as it arrives, so that after a crash the
//! interrupted call's result can show the model what the command had printed. Never part of
//! the log; deleted once the call's result is committed. Writes go to the page cache without
//! fsync: they must survive a daemon crash, not a power cut.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How much of a spool the interrupted result quotes.
pub const TAIL_BYTES: u64 = 4096;

/// Spool file of one tool call.
pub fn path(data_dir: &Path, session_id: &str, tool_use_id: &str) -> PathBuf {
    data_dir
        .join("spool")
        .join(session_id)
        .join(format!("{tool_use_id}.log"))
}

/// The spool of one call. The file is created at the first output, so tools that print
/// nothing (the file tools) cost no I/O. Failing to spool only loses the tail for a crash
/// report, so errors are logged, never raised.
pub struct Spool {
    path: PathBuf,
    file: Option<File>,
    failed: bool,
}

impl Spool {
    pub fn new(path: PathBuf) -> Spool {
        Spool {
            path,
            file: None,
            failed: false,
        }
    }

    pub fn write(&mut self, text: &str) {
        if self.failed {
            return;
        }
        if self.file.is_none() {
            let opened = self
                .path
                .parent()
                .map_or(Ok(()), crate::private::create_dir)
                .and_then(|()| {
                    crate::private::file_options()
                        .create(true)
                        .truncate(true)
                        .write(true)
                        .open(&self.path)
                });
            match opened {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot spool tool output");
                    self.failed = true;
                    return;
                }
            }
        }
        if let Some(f) = &mut self.file
            && let Err(e) = f.write_all(text.as_bytes())
        {
            tracing::warn!(error = %e, "spooling tool output failed; keeping on without it");
            self.file = None;
            self.failed = true;
        }
    }
}

/// The last [`TAIL_BYTES`] of a spool ("" if there is none), cut at a line start when one is
/// near, with a note when output was cut.
pub fn tail(path: &Path) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if f.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        if let Some(nl) = text.find('\n')
            && nl + 1 < text.len()
        {
            text.drain(..=nl);
        }
        text.insert_str(
            0,
            &format!("[… {start} earlier bytes of output not shown]\n"),
        );
    }
    text
}

pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a spool file"),
    }
}

/// Removes a session's spool directory (session deleted).
pub fn remove_session(data_dir: &Path, session_id: &str) {
    let _ = std::fs::remove_dir_all(data_dir.join("spool").join(session_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_round_trip_and_tail() {
        let dir = tempfile::TempDir::new().unwrap();
        let p = path(dir.path(), "sesn_1", "sevt_2");
        assert_eq!(tail(&p), "", "no spool, no tail");
        let s = Spool::new(p.clone());
        drop(s);
        assert!(!p.exists(), "nothing printed, no file");
        let mut s = Spool::new(p.clone());
        s.write("line one\n");
        s.write("line two\n");
        drop(s);
        assert_eq!(tail(&p), "line one\nline two\n");

        let mut s = Spool::new(p.clone());
        for i in 0..2000 {
            s.write(&format!("row {i}\n"));
        }
        drop(s);
        let t = tail(&p);
        assert!(t.starts_with("[… "), "{}", &t[..40]);
        assert!(t.ends_with("row 1999\n"));
        let first_row = t.lines().nth(1).unwrap();
        assert!(
            first_row.starts_with("row "),
            "cut at a line start: {first_row}"
        );
        assert!(t.len() < TAIL_BYTES as usize + 100);
        remove(&p);
        assert!(!p.exists());
        remove(&p);
    }
}
