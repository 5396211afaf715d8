//! The `glob` and `grep` tools.
//!
//! Both walk the workspace (or a directory inside it) with [`super::walk`], from directory
//! descriptor to directory descriptor: `.gitignore`, `.ignore` and `.git/info/exclude` are
//! respected (also outside git repositories, and `.gitignore` files between the workspace
//! root and a sub-directory being searched), `.git` is skipped, hidden files are included and
//! symlinks are never followed, so neither tool can reach outside the workspace through one,
//! not even one swapped in while the walk runs. Output paths are relative to the workspace,
//! so they can be passed straight to `read`/`edit`.
//!
//! These functions block; [`super::Toolbox`] runs them on the blocking pool
//! and sets `stop` when the call is cancelled.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use globset::GlobBuilder;
use grep_regex::RegexMatcherBuilder;
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkMatch};
use serde_json::Value;

use super::args::Args;
use super::path::{EntryType, Workspace};
use super::walk::{Entry, Walk};

/// `glob` returns at most this many paths.
pub const GLOB_RESULT_LIMIT: usize = 200;
/// Both tools stop walking after this many entries.
pub const WALK_LIMIT: usize = 50_000;
/// `grep` truncates each matching line to this many characters.
pub const GREP_LINE_CHARS: usize = 2000;
/// `grep` output is capped at this many bytes.
pub const GREP_OUTPUT_LIMIT: usize = 100 * 1024;

const INTERRUPTED: &str = "[interrupted by the user]";

/// The search root: the optional `path` argument resolved and opened beneath the workspace
/// (relative to it, opened, and as given).
fn search_root(ws: &Workspace, raw: Option<&str>) -> Result<(PathBuf, File, String), String> {
    let tool = ws.tool();
    let raw = raw.filter(|r| !r.is_empty()).unwrap_or(".");
    let rel = ws.resolve(raw)?;
    let root = ws.open_read(raw, &rel, || {
        format!("{tool}: no such file or directory: {raw}")
    })?;
    Ok((rel, root, raw.to_owned()))
}

/// [`Walk`] with what both tools need around it: the interrupt check, the entry budget
/// (`cut` says it ran out) and unreadable entries skipped. `Err` means interrupted.
struct BoundedWalk<'a> {
    inner: Walk,
    stop: &'a AtomicBool,
    seen: usize,
    cut: bool,
}

impl<'a> BoundedWalk<'a> {
    fn new(ws: &Workspace, rel: PathBuf, root: File, stop: &'a AtomicBool) -> Self {
        BoundedWalk {
            inner: Walk::new(ws, rel, root),
            stop,
            seen: 0,
            cut: false,
        }
    }
}

impl Iterator for BoundedWalk<'_> {
    type Item = Result<Entry, String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let entry = self.inner.next()?;
            if self.stop.load(Ordering::Relaxed) {
                return Some(Err(INTERRUPTED.into()));
            }
            self.seen += 1;
            if self.seen > WALK_LIMIT {
                self.cut = true;
                return None;
            }
            if let Ok(entry) = entry {
                return Some(Ok(entry));
            }
        }
    }
}

fn walk_limit_note() -> String {
    format!(
        "[stopped after scanning {WALK_LIMIT} entries; results may be incomplete — pass a narrower `path`]"
    )
}

/// `glob {pattern, path?}`: files whose path relative to the search root
/// matches the doublestar pattern, newest-modified first.
pub fn glob(ws: &Workspace, input: &Value, stop: &AtomicBool) -> Result<String, String> {
    let args = Args::new("glob", input)?;
    let pattern = args.req_str("pattern")?;
    let (root_rel, root, root_raw) = search_root(ws, args.opt_str("path")?)?;
    if !root.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(format!("glob: `{root_raw}` is not a directory"));
    }
    // Accept absolute patterns that spell out the search root.
    let mut pattern = pattern.trim();
    if Path::new(pattern).is_absolute() {
        let root_str = if root_rel.as_os_str().is_empty() {
            format!("{}/", ws.canonical().display())
        } else {
            format!("{}/", ws.canonical().join(&root_rel).display())
        };
        match pattern.strip_prefix(root_str.as_str()) {
            Some(rest) => pattern = rest,
            None => {
                return Err(format!(
                    "glob: pattern `{pattern}` must be relative to the searched directory (e.g. `**/*.rs`)"
                ));
            }
        }
    }
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    if pattern.is_empty() {
        return Err("glob: `pattern` must not be empty".into());
    }
    let matcher = GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("glob: invalid pattern `{pattern}`: {e}"))?
        .compile_matcher();

    let mut hits: Vec<(SystemTime, String)> = Vec::new();
    let mut walk = BoundedWalk::new(ws, root_rel.clone(), root, stop);
    for entry in walk.by_ref() {
        let entry = entry?;
        if entry.depth == 0 || entry.ty.is_none_or(|t| t == EntryType::Directory) {
            continue;
        }
        let Ok(rel) = entry.rel.strip_prefix(&root_rel) else {
            continue;
        };
        if !matcher.is_match(rel) {
            continue;
        }
        let mtime = entry.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        hits.push((mtime, Workspace::display(&entry.rel)));
    }
    hits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));

    let mut lines: Vec<String> = Vec::new();
    if hits.is_empty() {
        lines.push("no files match".into());
    }
    let more = hits.len().saturating_sub(GLOB_RESULT_LIMIT);
    lines.extend(hits.into_iter().take(GLOB_RESULT_LIMIT).map(|(_, p)| p));
    if more > 0 {
        lines.push(format!(
            "[... and {more} more matching files not shown; these are the {GLOB_RESULT_LIMIT} most recently modified — narrow the pattern or path]"
        ));
    }
    if walk.cut {
        lines.push(walk_limit_note());
    }
    Ok(lines.join("\n"))
}

/// Collects one file's matching lines as output rows, within a byte budget;
/// gives up on binary files.
struct FileSink {
    prefix: String,
    rows: String,
    matches: usize,
    budget: usize,
    full: bool,
    binary: bool,
}

impl Sink for FileSink {
    type Error = std::io::Error;

    fn matched(&mut self, _searcher: &Searcher, mat: &SinkMatch<'_>) -> Result<bool, Self::Error> {
        let raw = String::from_utf8_lossy(mat.bytes());
        let text = raw.trim_end_matches(['\n', '\r']);
        let text = match text.char_indices().nth(GREP_LINE_CHARS) {
            Some((cut, _)) => format!("{}… [line truncated]", &text[..cut]),
            None => text.to_owned(),
        };
        let row = format!(
            "{}:{}:{text}\n",
            self.prefix,
            mat.line_number().unwrap_or(0)
        );
        if self.rows.len() + row.len() > self.budget {
            self.full = true;
            return Ok(false);
        }
        self.rows.push_str(&row);
        self.matches += 1;
        Ok(true)
    }

    fn binary_data(&mut self, _searcher: &Searcher, _offset: u64) -> Result<bool, Self::Error> {
        self.binary = true;
        Ok(false)
    }
}

/// `grep {pattern, path?}`: lines matching a Rust regex, as `path:line:text`.
pub fn grep(ws: &Workspace, input: &Value, stop: &AtomicBool) -> Result<String, String> {
    let args = Args::new("grep", input)?;
    let pattern = args.req_str("pattern")?;
    let matcher = RegexMatcherBuilder::new()
        .line_terminator(Some(b'\n'))
        .build(pattern)
        .map_err(|e| format!("grep: invalid regex `{pattern}`: {e}"))?;
    let (root_rel, root, _) = search_root(ws, args.opt_str("path")?)?;
    let mut searcher = SearcherBuilder::new()
        .binary_detection(BinaryDetection::quit(0))
        .line_number(true)
        .build();

    let mut out = String::new();
    let mut matches = 0usize;
    let mut truncated = false;
    let mut walk = BoundedWalk::new(ws, root_rel, root, stop);
    for entry in walk.by_ref() {
        let entry = entry?;
        // Regular files only: symlinks are not followed (and `open` refuses one swapped in).
        if entry.ty != Some(EntryType::File) {
            continue;
        }
        let Some(file) = entry
            .open()
            .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
        else {
            continue;
        };
        let mut sink = FileSink {
            prefix: Workspace::display(&entry.rel),
            rows: String::new(),
            matches: 0,
            budget: GREP_OUTPUT_LIMIT.saturating_sub(out.len()),
            full: false,
            binary: false,
        };
        if searcher.search_file(&matcher, &file, &mut sink).is_err() || sink.binary {
            continue;
        }
        out.push_str(&sink.rows);
        matches += sink.matches;
        if sink.full {
            truncated = true;
            break;
        }
    }
    if out.is_empty() && !truncated {
        out.push_str("no matches");
    }
    if truncated {
        out.push_str(&format!(
            "[output truncated at {} KiB after {matches} matching lines; narrow the pattern or path]",
            GREP_OUTPUT_LIMIT / 1024
        ));
    }
    if walk.cut {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&walk_limit_note());
    }
    Ok(out.trim_end_matches('\n').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::symlink;
    use std::time::Duration;
    use tempfile::TempDir;

    fn no_stop() -> AtomicBool {
        AtomicBool::new(false)
    }

    fn touch(path: &Path, content: &str, age_secs: u64) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, content).unwrap();
        let when = SystemTime::now() - Duration::from_secs(age_secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    fn ws(dir: &TempDir, tool: &'static str) -> Workspace {
        Workspace::open(dir.path(), tool).unwrap()
    }

    #[test]
    fn glob_orders_newest_first() {
        let dir = TempDir::new().unwrap();
        let p = dir.path();
        touch(&p.join("old.rs"), "", 300);
        touch(&p.join("src/new.rs"), "", 10);
        touch(&p.join("src/deep/mid.rs"), "", 100);
        touch(&p.join("src/notes.txt"), "", 1);
        let out = glob(
            &ws(&dir, "glob"),
            &json!({"pattern": "**/*.rs"}),
            &no_stop(),
        )
        .unwrap();
        assert_eq!(out, "src/new.rs\nsrc/deep/mid.rs\nold.rs");
        // `*` does not cross directories.
        let out = glob(&ws(&dir, "glob"), &json!({"pattern": "*.rs"}), &no_stop()).unwrap();
        assert_eq!(out, "old.rs");
        // With a path: matched relative to it, printed relative to the workspace.
        let out = glob(
            &ws(&dir, "glob"),
            &json!({"pattern": "*.rs", "path": "src"}),
            &no_stop(),
        )
        .unwrap();
        assert_eq!(out, "src/new.rs");
        let out = glob(&ws(&dir, "glob"), &json!({"pattern": "*.zig"}), &no_stop()).unwrap();
        assert_eq!(out, "no files match");
    }

    #[test]
    fn glob_caps_results() {
        let dir = TempDir::new().unwrap();
        for i in 0..250u64 {
            touch(&dir.path().join(format!("f{i:03}.txt")), "", 1000 - i);
        }
        let out = glob(&ws(&dir, "glob"), &json!({"pattern": "*.txt"}), &no_stop()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), GLOB_RESULT_LIMIT + 1);
        assert_eq!(lines[0], "f249.txt", "newest first");
        assert_eq!(lines[GLOB_RESULT_LIMIT - 1], "f050.txt");
        assert!(lines[GLOB_RESULT_LIMIT].starts_with("[... and 50 more matching files"));
    }

    #[test]
    fn glob_respects_gitignore_skips_git_and_includes_hidden() {
        let dir = TempDir::new().unwrap();
        let p = dir.path();
        touch(&p.join(".gitignore"), "target/\n*.log\n", 0);
        touch(&p.join("target/debug/out.rs"), "", 0);
        touch(&p.join("app.log"), "", 0);
        touch(&p.join(".git/config.rs"), "", 0);
        touch(&p.join(".hidden/h.rs"), "", 0);
        touch(&p.join("sub/.gitignore"), "gen.rs\n", 0);
        touch(&p.join("sub/gen.rs"), "", 0);
        touch(&p.join("sub/keep.rs"), "", 0);
        touch(&p.join("sub/target/x.rs"), "", 0);
        let out = glob(&ws(&dir, "glob"), &json!({"pattern": "**/*"}), &no_stop()).unwrap();
        let mut got: Vec<&str> = out.lines().collect();
        got.sort_unstable();
        assert_eq!(
            got,
            vec![
                ".gitignore",
                ".hidden/h.rs",
                "sub/.gitignore",
                "sub/keep.rs"
            ]
        );
        // Searching a subdirectory still honours the workspace's .gitignore.
        let out = glob(
            &ws(&dir, "glob"),
            &json!({"pattern": "**/*.rs", "path": "sub"}),
            &no_stop(),
        )
        .unwrap();
        assert_eq!(out, "sub/keep.rs");
    }

    #[test]
    fn glob_input_errors() {
        let dir = TempDir::new().unwrap();
        touch(&dir.path().join("f.txt"), "", 0);
        let w = ws(&dir, "glob");
        let err = glob(&w, &json!({"pattern": "a[", "path": "."}), &no_stop()).unwrap_err();
        assert!(err.starts_with("glob: invalid pattern `a[`"), "{err}");
        let err = glob(&w, &json!({"pattern": "*", "path": "f.txt"}), &no_stop()).unwrap_err();
        assert_eq!(err, "glob: `f.txt` is not a directory");
        let err = glob(&w, &json!({"pattern": "*", "path": "nope"}), &no_stop()).unwrap_err();
        assert_eq!(err, "glob: no such file or directory: nope");
        let err = glob(&w, &json!({"pattern": "*", "path": "/etc"}), &no_stop()).unwrap_err();
        assert!(err.contains("outside the session workspace"), "{err}");
        let err = glob(&w, &json!({"pattern": "/etc/*"}), &no_stop()).unwrap_err();
        assert!(err.contains("must be relative"), "{err}");
        let stop = AtomicBool::new(true);
        assert_eq!(
            glob(&w, &json!({"pattern": "*"}), &stop).unwrap_err(),
            INTERRUPTED
        );
    }

    #[test]
    fn grep_finds_matches_with_line_numbers() {
        let dir = TempDir::new().unwrap();
        let p = dir.path();
        touch(
            &p.join("a.rs"),
            "fn main() {\n    println!(\"hi\");\n}\n",
            0,
        );
        touch(&p.join("src/b.rs"), "// nothing\nfn helper() {}\n", 0);
        touch(&p.join("notes.md"), "no functions here\n", 0);
        let w = ws(&dir, "grep");
        let out = grep(&w, &json!({"pattern": r"fn \w+\("}), &no_stop()).unwrap();
        assert_eq!(out, "a.rs:1:fn main() {\nsrc/b.rs:2:fn helper() {}");
        let out = grep(
            &w,
            &json!({"pattern": "(?i)PRINTLN", "path": "a.rs"}),
            &no_stop(),
        )
        .unwrap();
        assert_eq!(out, "a.rs:2:    println!(\"hi\");");
        let out = grep(&w, &json!({"pattern": "fn", "path": "src"}), &no_stop()).unwrap();
        assert_eq!(out, "src/b.rs:2:fn helper() {}");
        let out = grep(&w, &json!({"pattern": "zzz"}), &no_stop()).unwrap();
        assert_eq!(out, "no matches");
    }

    #[test]
    fn grep_invalid_regex_is_a_clear_error() {
        let dir = TempDir::new().unwrap();
        let err = grep(
            &ws(&dir, "grep"),
            &json!({"pattern": "fn (unclosed"}),
            &no_stop(),
        )
        .unwrap_err();
        assert!(
            err.starts_with("grep: invalid regex `fn (unclosed`: "),
            "{err}"
        );
        assert!(err.contains("unclosed group"), "{err}");
    }

    #[test]
    fn grep_skips_binary_files_and_truncates_long_lines() {
        let dir = TempDir::new().unwrap();
        let p = dir.path();
        let mut bin = b"needle at the start\n".to_vec();
        bin.extend_from_slice(&[0u8; 16]);
        bin.extend_from_slice(b"needle again\n");
        std::fs::write(p.join("blob.bin"), &bin).unwrap();
        touch(
            &p.join("long.txt"),
            &format!("needle{}\n", "x".repeat(5000)),
            0,
        );
        let out = grep(&ws(&dir, "grep"), &json!({"pattern": "needle"}), &no_stop()).unwrap();
        assert!(!out.contains("blob.bin"), "{out}");
        assert!(out.starts_with("long.txt:1:needle"));
        assert!(out.ends_with("… [line truncated]"));
        let text = out.strip_prefix("long.txt:1:").unwrap();
        assert_eq!(
            text.strip_suffix("… [line truncated]")
                .unwrap()
                .chars()
                .count(),
            GREP_LINE_CHARS
        );
    }

    #[test]
    fn grep_caps_total_output() {
        let dir = TempDir::new().unwrap();
        let line = format!("match {}\n", "m".repeat(90));
        touch(&dir.path().join("big.txt"), &line.repeat(5000), 0);
        let out = grep(&ws(&dir, "grep"), &json!({"pattern": "^match"}), &no_stop()).unwrap();
        assert!(out.len() <= GREP_OUTPUT_LIMIT + 200);
        assert!(out.len() > GREP_OUTPUT_LIMIT - 200);
        assert!(
            out.lines()
                .last()
                .unwrap()
                .starts_with("[output truncated at 100 KiB after "),
            "{}",
            out.lines().last().unwrap()
        );
    }

    #[test]
    fn search_does_not_follow_symlinks_out_of_the_workspace() {
        let outer = TempDir::new().unwrap();
        let ws_dir = outer.path().join("ws");
        let outside = outer.path().join("outside");
        std::fs::create_dir_all(&ws_dir).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.rs"), "TOPSECRET\n").unwrap();
        std::fs::write(ws_dir.join("mine.rs"), "visible\n").unwrap();
        symlink("/etc", ws_dir.join("etc")).unwrap();
        symlink(&outside, ws_dir.join("out")).unwrap();
        symlink(outside.join("secret.rs"), ws_dir.join("secret-link.rs")).unwrap();
        let g = Workspace::open(&ws_dir, "glob").unwrap();
        let out = glob(&g, &json!({"pattern": "**/*"}), &no_stop()).unwrap();
        assert!(
            !out.lines()
                .any(|l| l.starts_with("etc/") || l.starts_with("out/")),
            "{out}"
        );
        assert!(out.lines().any(|l| l == "mine.rs"));
        assert!(glob(&g, &json!({"pattern": "*", "path": "out"}), &no_stop()).is_err());
        let r = Workspace::open(&ws_dir, "grep").unwrap();
        let out = grep(&r, &json!({"pattern": "TOPSECRET|root:"}), &no_stop()).unwrap();
        assert_eq!(out, "no matches");
        let err = grep(
            &r,
            &json!({"pattern": "x", "path": "etc/passwd"}),
            &no_stop(),
        )
        .unwrap_err();
        assert!(err.contains("outside the session workspace"), "{err}");
        let err = grep(
            &r,
            &json!({"pattern": "x", "path": "secret-link.rs"}),
            &no_stop(),
        )
        .unwrap_err();
        assert!(err.contains("outside the session workspace"), "{err}");
    }
}
