//! `--worktree` sessions: a fresh git worktree on its own branch `tether/<name-or-id>`,
//! `tether diff`, and what `tether rm` does with the branch.
//!
//! The client, not the daemon, runs git: it runs as you, in your repository, with your git
//! config and hooks, and a mistake (not a repository, a taken branch) is reported before any
//! session exists. The daemon only sees a directory (`CreateSession.dir`), so it confines the
//! session's tools to the worktree as it does any `--dir`. The branch point is written to
//! `tether-base` in the worktree's own git dir (`.git/worktrees/<name>/`), which git removes
//! with the worktree; nothing is added to your refs but the branch.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::usage;
use crate::client::ClientError;

/// A worktree made for a session.
#[derive(Debug, Clone)]
pub struct Worktree {
    pub path: PathBuf,
    pub branch: String,
    pub base: String,
}

/// The file in the worktree's git dir that holds the commit it started from.
const BASE_FILE: &str = "tether-base";

/// Runs git in `dir`; its stdout (trimmed) on success, else its stderr as the error.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e} (is git installed and on PATH?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Makes a worktree of the repository containing `start` at `HEAD`, on branch
/// `tether/<name>` (a temporary `tether/new-…` without a name: [`rename_branch`] gives it
/// the session id once there is one), under `<data_dir>/worktrees/`.
pub fn create(start: &Path, name: Option<&str>, data_dir: &Path) -> Result<Worktree, ClientError> {
    let fail = |m: String| usage(format!("--worktree: {m}"));
    let root = git(start, &["rev-parse", "--show-toplevel"]).map_err(|e| {
        fail(format!(
            "{} is not in a git repository ({e}); run it inside one, or drop --worktree",
            start.display()
        ))
    })?;
    let root = PathBuf::from(root);
    let base = git(&root, &["rev-parse", "--verify", "HEAD^{commit}"]).map_err(|_| {
        fail(format!(
            "{} has no commit yet, so there is nothing to branch from; commit once first",
            root.display()
        ))
    })?;
    let suffix = match name {
        Some(n) => n.to_string(),
        None => format!(
            "new-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ),
    };
    let branch = format!("tether/{suffix}");
    git(&root, &["check-ref-format", "--branch", &branch]).map_err(|_| {
        fail(format!(
            "`{branch}` is not a valid git branch name; pick a --name without spaces or `..`"
        ))
    })?;
    let repo_name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".into());
    let path = data_dir
        .join("worktrees")
        .join(format!("{repo_name}-{}", suffix.replace('/', "-")));
    if path.exists() {
        return Err(fail(format!(
            "{} already exists (a worktree of an earlier session?); `git worktree list` in {} shows it",
            path.display(),
            root.display()
        )));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    }
    let path_text = path.display().to_string();
    git(
        &root,
        &["worktree", "add", "-b", &branch, &path_text, &base],
    )
    .map_err(|e| fail(format!("git worktree add failed: {e}")))?;
    let made = Worktree { path, branch, base };
    let recorded = git(&made.path, &["rev-parse", "--absolute-git-dir"]).and_then(|d| {
        std::fs::write(Path::new(&d).join(BASE_FILE), format!("{}\n", made.base))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = recorded {
        remove(&made, true);
        return Err(fail(format!("cannot record the branch point: {e}")));
    }
    if git(&root, &["status", "--porcelain", "--untracked-files=no"]).is_ok_and(|s| !s.is_empty()) {
        eprintln!(
            "note: your uncommitted changes in {} are not in the worktree (it starts at {})",
            root.display(),
            short(&made.base)
        );
    }
    Ok(made)
}

/// Renames the branch to `tether/<id>` once the session exists (created without a name).
pub fn rename_branch(wt: &mut Worktree, id: &str) {
    let branch = format!("tether/{id}");
    match git(&wt.path, &["branch", "-m", &wt.branch, &branch]) {
        Ok(_) => wt.branch = branch,
        Err(e) => eprintln!(
            "warning: could not rename branch {} to {branch} ({e}); the session works on {}",
            wt.branch, wt.branch
        ),
    }
}

/// Removes the worktree, and the branch when `delete_branch`. Best effort: says what failed.
pub fn remove(wt: &Worktree, delete_branch: bool) {
    let common = git(
        &wt.path,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    );
    let path_text = wt.path.display().to_string();
    if let Err(e) = git(&wt.path, &["worktree", "remove", "--force", &path_text]) {
        eprintln!("warning: could not remove the worktree {path_text}: {e}");
        return;
    }
    if delete_branch
        && let Ok(common) = common
        && let Err(e) = git(Path::new(&common), &["branch", "-D", &wt.branch])
    {
        eprintln!("warning: could not delete branch {}: {e}", wt.branch);
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The worktree a session's workspace is, if it was made by `--worktree`.
pub fn of_workspace(workspace: &Path) -> Option<Worktree> {
    // The worktree itself, not a directory inside one (a session started from within it).
    let top = git(workspace, &["rev-parse", "--show-toplevel"]).ok()?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(workspace).ok()? {
        return None;
    }
    let git_dir = git(workspace, &["rev-parse", "--absolute-git-dir"]).ok()?;
    let base = std::fs::read_to_string(Path::new(&git_dir).join(BASE_FILE)).ok()?;
    let branch = git(workspace, &["symbolic-ref", "--short", "HEAD"]).ok()?;
    Some(Worktree {
        path: workspace.to_path_buf(),
        branch,
        base: base.trim().to_string(),
    })
}

/// What the session changed since the branch point: commits made on the branch and the
/// work tree, untracked files included (as new files), as one patch. Reads only: nothing is
/// added to the index or the object store.
pub fn diff(wt: &Worktree, color: bool) -> Result<String, ClientError> {
    let color = if color {
        "--color=always"
    } else {
        "--color=never"
    };
    let mut out = git(&wt.path, &["diff", color, &wt.base, "--"])
        .map_err(|e| usage(format!("git diff failed in {}: {e}", wt.path.display())))?;
    let untracked = git(
        &wt.path,
        &["ls-files", "--others", "--exclude-standard", "-z"],
    )
    .map_err(|e| usage(format!("git ls-files failed: {e}")))?;
    for file in untracked.split('\0').filter(|f| !f.is_empty()) {
        // `--no-index` exits 1 when the files differ, which they always do here.
        let new = Command::new("git")
            .arg("-C")
            .arg(&wt.path)
            .args(["diff", "--no-index", color, "--", "/dev/null", file])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| usage(format!("cannot run git: {e}")))?;
        let text = String::from_utf8_lossy(&new.stdout);
        if !out.is_empty() && !text.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&text);
    }
    Ok(out)
}

/// What to do with a worktree session's branch on `rm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchChoice {
    Keep,
    Delete,
}

/// The flags' answer, else the user's (asked on a terminal); a script must say.
pub fn choose(
    wt: &Worktree,
    session: &str,
    keep: bool,
    delete: bool,
) -> Result<BranchChoice, ClientError> {
    match (keep, delete) {
        (true, _) => return Ok(BranchChoice::Keep),
        (_, true) => return Ok(BranchChoice::Delete),
        _ => {}
    }
    let what = format!(
        "{session} works in the git worktree {} on branch {}",
        wt.path.display(),
        wt.branch
    );
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "{what}: say what to do with the branch: --keep-branch (its work, uncommitted \
             changes too, stays on the branch) or --delete-branch; nothing was removed"
        )));
    }
    eprint!("{what}.\nKeep the branch (uncommitted work is committed to it) or delete it? [k/d] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| usage(format!("reading the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "k" | "keep" => Ok(BranchChoice::Keep),
        "d" | "delete" => Ok(BranchChoice::Delete),
        other => Err(usage(format!(
            "`{other}` is neither k nor d: nothing was removed"
        ))),
    }
}

/// Commits what the session left uncommitted to its branch, so keeping the branch keeps
/// all of its work. Uses your git identity, or `tether` when none is configured.
pub fn commit_leftovers(wt: &Worktree, session: &str) -> Result<bool, String> {
    if git(&wt.path, &["status", "--porcelain"])?.is_empty() {
        return Ok(false);
    }
    git(&wt.path, &["add", "-A"])?;
    let message = format!("tether: uncommitted work of session {session}");
    let mut args: Vec<&str> = Vec::new();
    if git(&wt.path, &["config", "user.email"]).is_err() {
        args.extend([
            "-c",
            "user.name=tether",
            "-c",
            "user.email=tether@localhost",
        ]);
    }
    args.extend(["commit", "--no-verify", "-q", "-m", &message]);
    git(&wt.path, &args)?;
    Ok(true)
}
