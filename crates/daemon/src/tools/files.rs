//! The `read`, `write` and `edit` tools. Every path is opened through [`Workspace`], relative
//! to the workspace's descriptor and beneath it, so they only touch files inside the
//! workspace even while its contents change under them.
//! These functions block; [`super::Toolbox`] runs them on the blocking pool.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use serde_json::Value;

use super::args::Args;
use super::path::Workspace;

/// At most this much file content is returned by one `read`.
pub const READ_LIMIT: usize = 256 * 1024;
/// A file is binary if this prefix contains a NUL byte.
pub const BINARY_SNIFF: usize = 8 * 1024;
/// `edit` refuses larger files.
pub const EDIT_LIMIT: u64 = 64 * 1024 * 1024;
/// A directory given to `read` lists at most this many entries.
const DIR_LISTING_LIMIT: usize = 100;

fn io_error(tool: &str, verb: &str, raw: &str, err: &io::Error) -> String {
    format!("{tool}: cannot {verb} `{raw}`: {err}")
}

/// Reads the next line (including its `\n`) into `buf`, keeping at most
/// `cap` bytes of it and discarding the rest. `None` at end of file;
/// otherwise whether the line was cut.
fn next_line(r: &mut impl BufRead, cap: usize, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    buf.clear();
    let mut any = false;
    let mut cut = false;
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return Ok(any.then_some(cut));
        }
        any = true;
        let (len, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = cap.saturating_sub(buf.len());
        if len > room {
            buf.extend_from_slice(&available[..room]);
            cut = true;
        } else {
            buf.extend_from_slice(&available[..len]);
        }
        r.consume(len);
        if done {
            return Ok(Some(cut));
        }
    }
}

fn directory_listing(dir: File, raw: &str) -> String {
    let mut names: Vec<String> = match super::path::list_dir(OwnedFd::from(dir)) {
        Ok((_, entries)) => entries
            .into_iter()
            .map(|(name, ty)| {
                let mut name = name.to_string_lossy().into_owned();
                if ty == Some(super::path::EntryType::Directory) {
                    name.push('/');
                }
                name
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    let mut message = format!("read: `{raw}` is a directory, not a file");
    if names.is_empty() {
        message.push_str(" (it is empty)");
        return message;
    }
    message.push_str("; its entries:\n");
    let more = names.len().saturating_sub(DIR_LISTING_LIMIT);
    names.truncate(DIR_LISTING_LIMIT);
    message.push_str(&names.join("\n"));
    if more > 0 {
        message.push_str(&format!("\n[... and {more} more; use glob to search it]"));
    }
    message
}

/// `read {file_path, view_range?}`: the file's lines numbered like `cat -n`.
pub fn read(ws: &Workspace, input: &Value) -> Result<String, String> {
    let args = Args::new("read", input)?;
    let raw = args.req_str("file_path")?;
    let range = args.opt_i64_pair("view_range")?;
    let (start, end) = match range {
        None => (1u64, None),
        Some((s, _)) if s < 1 => {
            return Err(format!(
                "read: view_range start must be 1 or more (lines are numbered from 1), got {s}"
            ));
        }
        Some((s, e)) if e <= 0 => (s.unsigned_abs(), None),
        Some((s, e)) if e < s => {
            return Err(format!(
                "read: view_range end ({e}) is before its start ({s}); use -1 to read to the end of the file"
            ));
        }
        Some((s, e)) => (s.unsigned_abs(), Some(e.unsigned_abs())),
    };
    let rel = ws.resolve(raw)?;
    let mut file = ws.open_read(raw, &rel, || format!("read: no such file: {raw}"))?;
    let meta = file
        .metadata()
        .map_err(|e| io_error("read", "access", raw, &e))?;
    if meta.is_dir() {
        return Err(directory_listing(file, raw));
    }
    if !meta.is_file() {
        return Err(format!(
            "read: `{raw}` is not a regular file (a device, socket or pipe)"
        ));
    }
    let mut head = Vec::with_capacity(BINARY_SNIFF);
    (&mut file)
        .take(BINARY_SNIFF as u64)
        .read_to_end(&mut head)
        .map_err(|e| io_error("read", "read", raw, &e))?;
    if head.contains(&0) {
        return Err(format!(
            "read: `{raw}` is a binary file ({} bytes); it can't be shown as text",
            meta.len()
        ));
    }
    if head.is_empty() {
        return Ok(format!("[`{raw}` is empty]"));
    }
    let mut reader = BufReader::new(io::Cursor::new(head).chain(file));

    let mut out = String::new();
    let mut budget = READ_LIMIT;
    let mut line = Vec::new();
    let mut number: u64 = 0;
    let mut shown = 0u64;
    let mut truncated_note = None;
    loop {
        let want = number + 1;
        if end.is_some_and(|e| want > e) {
            break;
        }
        let cap = if want < start { 0 } else { budget };
        let Some(cut) = next_line(&mut reader, cap, &mut line)
            .map_err(|e| io_error("read", "read", raw, &e))?
        else {
            break;
        };
        number = want;
        if want < start {
            continue;
        }
        if cut && shown > 0 {
            truncated_note = Some(format!(
                "[output truncated at {} KiB of file content: showed lines {start}-{}; read the rest with view_range [{number}, -1]]",
                READ_LIMIT / 1024,
                number - 1
            ));
            break;
        }
        budget -= line.len();
        let text = String::from_utf8_lossy(&line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        out.push_str(&format!("{number:>6}\t{text}\n"));
        shown += 1;
        if cut {
            truncated_note = Some(format!(
                "[line {number} is longer than {} KiB; only its beginning is shown]",
                READ_LIMIT / 1024
            ));
            break;
        }
    }
    if shown == 0 {
        return Err(format!(
            "read: view_range start {start} is past the end of `{raw}` ({number} lines)"
        ));
    }
    if let Some(note) = truncated_note {
        out.push_str(&note);
    }
    Ok(out)
}

/// `write {file_path, content}`: creates parent directories and replaces the
/// whole file atomically.
pub fn write(ws: &Workspace, input: &Value) -> Result<String, String> {
    let args = Args::new("write", input)?;
    let raw = args.req_str("file_path")?;
    let content = args.req_str("content")?;
    let rel = ws.resolve(raw)?;
    let target = ws.write_target(raw, &rel, true)?;
    Workspace::replace(&target, content.as_bytes())
        .map_err(|e| io_error("write", "write", raw, &e))?;
    let verb = if target.existing.is_some() {
        "overwrote"
    } else {
        "created"
    };
    Ok(format!("{verb} {raw} ({} bytes written)", content.len()))
}

/// Works out an `edit` without writing it: validates the input and the file and computes the
/// new content.
pub fn plan_edit(ws: &Workspace, input: &Value) -> Result<EditPlan, String> {
    let args = Args::new("edit", input)?;
    let raw = args.req_str("file_path")?;
    let old = args.req_str("old_string")?;
    let new = args.req_str("new_string")?;
    let replace_all = args.opt_bool("replace_all")?.unwrap_or(false);
    if old.is_empty() {
        return Err(
            "edit: old_string must not be empty (use write to create or overwrite a file)".into(),
        );
    }
    if old == new {
        return Err("edit: old_string and new_string are identical; nothing to change".into());
    }
    let rel = ws.resolve(raw)?;
    let file = ws.open_read(raw, &rel, || format!("edit: no such file: {raw}"))?;
    let meta = file
        .metadata()
        .map_err(|e| io_error("edit", "access", raw, &e))?;
    if meta.is_dir() {
        return Err(format!("edit: `{raw}` is a directory"));
    }
    if !meta.is_file() {
        return Err(format!("edit: `{raw}` is not a regular file"));
    }
    if meta.len() > EDIT_LIMIT {
        return Err(format!(
            "edit: `{raw}` is too large to edit ({} bytes; the limit is {EDIT_LIMIT})",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(EDIT_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("edit", "read", raw, &e))?;
    let content = String::from_utf8(bytes).map_err(|_| {
        format!("edit: `{raw}` is not valid UTF-8 text; edit only changes text files")
    })?;

    // Files with CRLF line endings: accept strings written with plain LF.
    let (old, new) = if !content.contains(old) && old.contains('\n') && content.contains("\r\n") {
        (
            old.replace("\r\n", "\n").replace('\n', "\r\n"),
            new.replace("\r\n", "\n").replace('\n', "\r\n"),
        )
    } else {
        (old.to_owned(), new.to_owned())
    };
    let count = content.matches(old.as_str()).count();
    if count == 0 {
        return Err(format!("edit: old_string not found in {raw}"));
    }
    if count > 1 && !replace_all {
        return Err(format!(
            "edit: old_string matches {count} times in {raw}; add surrounding context to make it unique, or set replace_all"
        ));
    }
    let updated = if replace_all {
        content.replace(old.as_str(), &new)
    } else {
        content.replacen(old.as_str(), &new, 1)
    };
    let line = content
        .find(old.as_str())
        .map_or(1, |at| content[..at].matches('\n').count() + 1);
    Ok(EditPlan {
        rel,
        raw: raw.to_owned(),
        before: content,
        after: updated,
        count,
        line,
    })
}

/// An `edit` worked out but not yet written: what the file holds now and will hold after.
pub struct EditPlan {
    /// The file, relative to the workspace.
    pub rel: PathBuf,
    pub raw: String,
    pub before: String,
    pub after: String,
    pub count: usize,
    /// The 1-based line where the (first) replaced text starts.
    pub line: usize,
}

/// `edit {file_path, old_string, new_string, replace_all?}`: exact string
/// replacement; without `replace_all`, `old_string` must occur exactly once.
pub fn edit(ws: &Workspace, input: &Value) -> Result<String, String> {
    let EditPlan {
        rel,
        raw,
        after: updated,
        count,
        line,
        ..
    } = plan_edit(ws, input)?;
    let raw = raw.as_str();
    // Found again from the root: whatever is there now, it is inside the workspace.
    let target = ws.write_target(raw, &rel, false)?;
    Workspace::replace(&target, updated.as_bytes())
        .map_err(|e| io_error("edit", "write", raw, &e))?;
    // Where it landed: the model can read around it, and clients number the edit's lines.
    Ok(if count == 1 {
        format!("edited {raw}: replaced 1 occurrence at line {line}")
    } else {
        format!("edited {raw}: replaced {count} occurrences, the first at line {line}")
    })
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a workspace file's content, `None` if it can't be read.
pub fn file_sha256(ws: &Workspace, raw: &str) -> Option<String> {
    let rel = ws.resolve(raw).ok()?;
    let mut file = ws.open_read(raw, &rel, String::new).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(sha256_hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use tempfile::TempDir;

    fn setup() -> (TempDir, Workspace) {
        let dir = TempDir::new().unwrap();
        let ws = Workspace::open(dir.path(), "read").unwrap();
        (dir, ws)
    }

    fn ws_for(dir: &TempDir, tool: &'static str) -> Workspace {
        Workspace::open(dir.path(), tool).unwrap()
    }

    #[test]
    fn read_numbers_lines_like_cat_n() {
        let (dir, ws) = setup();
        std::fs::write(dir.path().join("f.txt"), "one\ntwo\nthree\nfour\nfive").unwrap();
        let out = read(&ws, &json!({"file_path": "f.txt"})).unwrap();
        assert_eq!(
            out,
            "     1\tone\n     2\ttwo\n     3\tthree\n     4\tfour\n     5\tfive\n"
        );
        let out = read(&ws, &json!({"file_path": "f.txt", "view_range": [2, 3]})).unwrap();
        assert_eq!(out, "     2\ttwo\n     3\tthree\n");
        let out = read(&ws, &json!({"file_path": "f.txt", "view_range": [4, -1]})).unwrap();
        assert_eq!(out, "     4\tfour\n     5\tfive\n");
        let out = read(&ws, &json!({"file_path": "f.txt", "view_range": [5, 0]})).unwrap();
        assert_eq!(out, "     5\tfive\n");
        let out = read(&ws, &json!({"file_path": "f.txt", "view_range": [3, 99]})).unwrap();
        assert_eq!(out, "     3\tthree\n     4\tfour\n     5\tfive\n");
    }

    #[test]
    fn read_rejects_bad_ranges() {
        let (dir, ws) = setup();
        std::fs::write(dir.path().join("f.txt"), "a\nb\n").unwrap();
        let err = read(&ws, &json!({"file_path": "f.txt", "view_range": [0, 2]})).unwrap_err();
        assert!(err.contains("start must be 1 or more"), "{err}");
        let err = read(&ws, &json!({"file_path": "f.txt", "view_range": [2, 1]})).unwrap_err();
        assert!(err.contains("before its start"), "{err}");
        let err = read(&ws, &json!({"file_path": "f.txt", "view_range": [3, 4]})).unwrap_err();
        assert_eq!(
            err,
            "read: view_range start 3 is past the end of `f.txt` (2 lines)"
        );
        let err = read(&ws, &json!({"file_path": "f.txt", "view_range": [1]})).unwrap_err();
        assert!(err.contains("two integers"), "{err}");
    }

    #[test]
    fn read_missing_directory_binary_and_empty() {
        let (dir, ws) = setup();
        assert_eq!(
            read(&ws, &json!({"file_path": "nope.txt"})).unwrap_err(),
            "read: no such file: nope.txt"
        );
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/x.rs"), "").unwrap();
        std::fs::create_dir(dir.path().join("d/inner")).unwrap();
        let err = read(&ws, &json!({"file_path": "d"})).unwrap_err();
        assert_eq!(
            err,
            "read: `d` is a directory, not a file; its entries:\ninner/\nx.rs"
        );
        let mut bin = vec![0x7f, b'E', b'L', b'F', 0, 1, 2];
        bin.extend(std::iter::repeat_n(b'x', 1000));
        std::fs::write(dir.path().join("prog"), &bin).unwrap();
        let err = read(&ws, &json!({"file_path": "prog"})).unwrap_err();
        assert_eq!(
            err,
            "read: `prog` is a binary file (1007 bytes); it can't be shown as text"
        );
        std::fs::write(dir.path().join("empty"), "").unwrap();
        assert_eq!(
            read(&ws, &json!({"file_path": "empty"})).unwrap(),
            "[`empty` is empty]"
        );
    }

    #[test]
    fn read_caps_content_and_says_how_to_continue() {
        let (dir, ws) = setup();
        // 4000 lines of 100 bytes = 400,000 bytes > 256 KiB.
        let line = format!("{}\n", "y".repeat(99));
        std::fs::write(dir.path().join("big.txt"), line.repeat(4000)).unwrap();
        let out = read(&ws, &json!({"file_path": "big.txt"})).unwrap();
        let shown = READ_LIMIT / 100; // 2621 whole lines fit
        assert!(out.contains(&format!("{shown:>6}\t")));
        assert!(!out.contains(&format!("{:>6}\t", shown + 1)));
        assert!(
            out.ends_with(&format!(
                "[output truncated at 256 KiB of file content: showed lines 1-{shown}; read the rest with view_range [{}, -1]]",
                shown + 1
            )),
            "{}",
            &out[out.len() - 200..]
        );
        // Continuing from there works.
        let out = read(
            &ws,
            &json!({"file_path": "big.txt", "view_range": [shown + 1, -1]}),
        )
        .unwrap();
        assert!(out.starts_with(&format!("{:>6}\t", shown + 1)));
        assert!(out.contains("  4000\t"));

        // A single giant line is shown cut.
        std::fs::write(dir.path().join("one.txt"), "z".repeat(READ_LIMIT * 2)).unwrap();
        let out = read(&ws, &json!({"file_path": "one.txt"})).unwrap();
        assert!(out.ends_with("only its beginning is shown]"));
        assert!(out.len() < READ_LIMIT + 200);
    }

    #[test]
    fn read_handles_invalid_utf8_and_crlf() {
        let (dir, ws) = setup();
        std::fs::write(dir.path().join("f"), b"caf\xe9\r\nok\r\n").unwrap();
        let out = read(&ws, &json!({"file_path": "f"})).unwrap();
        assert_eq!(out, "     1\tcaf\u{fffd}\r\n     2\tok\r\n");
    }

    #[test]
    fn write_creates_dirs_overwrites_and_keeps_mode() {
        let dir = TempDir::new().unwrap();
        let ws = ws_for(&dir, "write");
        let out = write(&ws, &json!({"file_path": "a/b/c.txt", "content": "hello"})).unwrap();
        assert_eq!(out, "created a/b/c.txt (5 bytes written)");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/b/c.txt")).unwrap(),
            "hello"
        );
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "old").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = write(
            &ws,
            &json!({"file_path": "run.sh", "content": "#!/bin/sh\n"}),
        )
        .unwrap();
        assert_eq!(out, "overwrote run.sh (10 bytes written)");
        assert_eq!(std::fs::read_to_string(&script).unwrap(), "#!/bin/sh\n");
        let mode = std::fs::metadata(&script).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // Absolute path inside the workspace.
        let abs = dir.path().join("abs.txt");
        write(
            &ws,
            &json!({"file_path": abs.to_str().unwrap(), "content": ""}),
        )
        .unwrap();
        assert!(abs.exists());
        // No temp files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tether-"))
            .collect();
        assert!(leftovers.is_empty());
        let err = write(&ws, &json!({"file_path": "a", "content": "x"})).unwrap_err();
        assert_eq!(err, "write: `a` is a directory");
        let err = write(&ws, &json!({"file_path": "x"})).unwrap_err();
        assert_eq!(err, "write: missing required field `content`");
    }

    #[test]
    fn write_through_symlink_inside_writes_the_target() {
        let dir = TempDir::new().unwrap();
        let ws = ws_for(&dir, "write");
        std::fs::write(dir.path().join("real.txt"), "old").unwrap();
        symlink("real.txt", dir.path().join("link.txt")).unwrap();
        write(&ws, &json!({"file_path": "link.txt", "content": "new"})).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("real.txt")).unwrap(),
            "new"
        );
        assert!(
            std::fs::symlink_metadata(dir.path().join("link.txt"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    fn edit_ws(content: &str) -> (TempDir, Workspace) {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("f.rs"), content).unwrap();
        let ws = ws_for(&dir, "edit");
        (dir, ws)
    }

    #[test]
    fn edit_requires_a_unique_match() {
        let (dir, ws) = edit_ws("let a = 1;\nlet b = 1;\n");
        let f = dir.path().join("f.rs");
        let err = edit(
            &ws,
            &json!({"file_path": "f.rs", "old_string": "let c", "new_string": "x"}),
        )
        .unwrap_err();
        assert_eq!(err, "edit: old_string not found in f.rs");
        let err = edit(
            &ws,
            &json!({"file_path": "f.rs", "old_string": "= 1;", "new_string": "= 2;"}),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "edit: old_string matches 2 times in f.rs; add surrounding context to make it unique, or set replace_all"
        );
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "let a = 1;\nlet b = 1;\n"
        );
        let out = edit(
            &ws,
            &json!({"file_path": "f.rs", "old_string": "let b = 1;", "new_string": "let b = 2;"}),
        )
        .unwrap();
        assert_eq!(out, "edited f.rs: replaced 1 occurrence at line 2");
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "let a = 1;\nlet b = 2;\n"
        );
    }

    #[test]
    fn edit_replace_all_and_bad_inputs() {
        let (dir, ws) = edit_ws("x x x");
        let out = edit(
            &ws,
            &json!({"file_path": "f.rs", "old_string": "x", "new_string": "yy", "replace_all": true}),
        )
        .unwrap();
        assert_eq!(
            out,
            "edited f.rs: replaced 3 occurrences, the first at line 1"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f.rs")).unwrap(),
            "yy yy yy"
        );
        let err = edit(
            &ws,
            &json!({"file_path": "f.rs", "old_string": "yy", "new_string": "yy"}),
        )
        .unwrap_err();
        assert!(err.contains("identical"), "{err}");
        let err = edit(
            &ws,
            &json!({"file_path": "f.rs", "old_string": "", "new_string": "a"}),
        )
        .unwrap_err();
        assert!(err.contains("must not be empty"), "{err}");
        let err = edit(
            &ws,
            &json!({"file_path": "missing.rs", "old_string": "a", "new_string": "b"}),
        )
        .unwrap_err();
        assert_eq!(err, "edit: no such file: missing.rs");
        let err = edit(&ws, &json!({"file_path": "f.rs", "old_string": "a"})).unwrap_err();
        assert_eq!(err, "edit: missing required field `new_string`");
    }

    #[test]
    fn edit_crlf_file_with_lf_strings() {
        let (dir, ws) = edit_ws("a\r\nb\r\nc\r\n");
        edit(
            &ws,
            &json!({"file_path": "f.rs", "old_string": "a\nb", "new_string": "a\nB\nb"}),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f.rs")).unwrap(),
            "a\r\nB\r\nb\r\nc\r\n"
        );
    }

    /// outer/ws is the workspace; outer/outside holds a secret; ws/etc -> /etc
    /// and ws/out -> outer/outside.
    fn escape_fixture() -> (TempDir, std::path::PathBuf, std::path::PathBuf) {
        let outer = TempDir::new().unwrap();
        let ws = outer.path().join("ws");
        let outside = outer.path().join("outside");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "top secret").unwrap();
        symlink("/etc", ws.join("etc")).unwrap();
        symlink(&outside, ws.join("out")).unwrap();
        symlink(outside.join("secret.txt"), ws.join("secret-link")).unwrap();
        (outer, ws, outside)
    }

    fn refused(result: Result<String, String>) -> bool {
        matches!(result, Err(m) if m.contains("is outside the session workspace"))
    }

    #[test]
    fn confinement_for_read_write_edit() {
        let (_outer, ws_dir, outside) = escape_fixture();
        let r = Workspace::open(&ws_dir, "read").unwrap();
        let w = Workspace::open(&ws_dir, "write").unwrap();
        let e = Workspace::open(&ws_dir, "edit").unwrap();
        for p in [
            "../outside/secret.txt",
            "/etc/passwd",
            "etc/passwd",
            "out/secret.txt",
            "secret-link",
        ] {
            assert!(refused(read(&r, &json!({"file_path": p}))), "read {p}");
            assert!(
                refused(edit(
                    &e,
                    &json!({"file_path": p, "old_string": "top", "new_string": "x"})
                )),
                "edit {p}"
            );
            assert!(
                refused(write(&w, &json!({"file_path": p, "content": "pwned"}))),
                "write {p}"
            );
        }
        let err = read(&r, &json!({"file_path": "../x"})).unwrap_err();
        assert!(
            err.starts_with("read: path `../x` is outside the session workspace"),
            "{err}"
        );
        // New files under a symlinked parent directory.
        assert!(refused(write(
            &w,
            &json!({"file_path": "out/new.txt", "content": "x"})
        )));
        assert!(refused(write(
            &w,
            &json!({"file_path": "out/deep/new.txt", "content": "x"})
        )));
        assert!(!outside.join("new.txt").exists());
        assert!(!outside.join("deep").exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
            "top secret"
        );
    }
}
