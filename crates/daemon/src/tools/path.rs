//! Workspace confinement for the file tools (`read`, `write`, `edit`, `glob`,
//! `grep`).
//!
//! A path from the model is resolved like this:
//! 1. relative paths are joined to the workspace; absolute paths are taken
//!    as they are;
//! 2. `.` and `..` are resolved lexically (so `a/../b` is `b`, and the
//!    operation then uses exactly that path);
//! 3. the deepest existing ancestor is canonicalized (following symlinks)
//!    and the not-yet-existing rest appended; a dangling symlink anywhere on
//!    the way is refused;
//! 4. the result must lie inside the canonical workspace.
//!
//! The resolved path is canonical, so the tools open exactly what was checked
//! (writing through a symlink that points inside the workspace writes its
//! target). The check and the use are not atomic: something else changing
//! the workspace in between (only the unconfined bash tool could) is out of
//! scope until bash is sandboxed.
//!
//! The bash tool is **not** confined by this module.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

/// The session workspace, opened for one tool call.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// As configured (used in messages).
    given: PathBuf,
    /// Canonical form (used for every check).
    canonical: PathBuf,
    tool: &'static str,
}

impl Workspace {
    /// Opens the workspace for `tool`; fails if it doesn't exist.
    pub fn open(root: &Path, tool: &'static str) -> Result<Self, String> {
        let canonical = std::fs::canonicalize(root).map_err(|e| {
            format!(
                "{tool}: the session workspace {} is not accessible: {e}",
                root.display()
            )
        })?;
        if !canonical.is_dir() {
            return Err(format!(
                "{tool}: the session workspace {} is not a directory",
                root.display()
            ));
        }
        Ok(Self {
            given: root.to_path_buf(),
            canonical,
            tool,
        })
    }

    /// The canonical workspace root.
    pub fn root(&self) -> &Path {
        &self.canonical
    }

    pub fn tool(&self) -> &'static str {
        self.tool
    }

    /// `real` (a resolved path) relative to the workspace, for output; `.`
    /// for the workspace itself.
    pub fn relative(&self, real: &Path) -> String {
        match real.strip_prefix(&self.canonical) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
            Ok(rel) => rel.to_string_lossy().into_owned(),
            Err(_) => real.to_string_lossy().into_owned(),
        }
    }

    fn outside(&self, raw: &str) -> String {
        format!(
            "{}: path `{raw}` is outside the session workspace {}; file tools can only touch files inside it",
            self.tool,
            self.given.display()
        )
    }

    /// Whether an already-resolved path lies inside the workspace.
    pub fn contains(&self, real: &Path) -> bool {
        real.starts_with(&self.canonical)
    }

    /// Resolves `raw` (see the module docs) to a canonical path inside the
    /// workspace, or explains why not.
    pub fn resolve(&self, raw: &str) -> Result<PathBuf, String> {
        let tool = self.tool;
        if raw.is_empty() {
            return Err(format!("{tool}: path must not be empty"));
        }
        if raw.contains('\0') {
            return Err(format!("{tool}: path must not contain NUL characters"));
        }
        let given = Path::new(raw);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.canonical.join(given)
        };
        let normalized = normalize_lexically(&joined);

        // Canonicalize the deepest existing ancestor.
        let mut existing: &Path = &normalized;
        let mut missing = Vec::new();
        let real_base = loop {
            match std::fs::canonicalize(existing) {
                Ok(real) => break real,
                Err(err) => {
                    if let Ok(meta) = std::fs::symlink_metadata(existing) {
                        if meta.file_type().is_symlink() && err.kind() == ErrorKind::NotFound {
                            return Err(self.dangling(raw, existing));
                        }
                        return Err(format!("{tool}: cannot resolve path `{raw}`: {err}"));
                    }
                    match (existing.parent(), existing.file_name()) {
                        (Some(parent), Some(name)) => {
                            missing.push(name.to_owned());
                            existing = parent;
                        }
                        _ => return Err(format!("{tool}: cannot resolve path `{raw}`: {err}")),
                    }
                }
            }
        };
        let mut real = real_base;
        for name in missing.iter().rev() {
            real.push(name);
        }
        if !self.contains(&real) {
            return Err(self.outside(raw));
        }
        Ok(real)
    }

    fn dangling(&self, raw: &str, link: &Path) -> String {
        let target = std::fs::read_link(link).unwrap_or_default();
        let parent = link.parent().unwrap_or(Path::new("/"));
        let resolved = normalize_lexically(&parent.join(&target));
        if !resolved.starts_with(&self.canonical) {
            return self.outside(raw);
        }
        format!(
            "{}: path `{raw}` goes through the dangling symlink {} -> {}; file tools don't follow dangling symlinks",
            self.tool,
            self.relative(link),
            target.display()
        )
    }
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
        let ws = Workspace::open(&ws_dir, "read").unwrap();
        Fixture {
            _outer: outer,
            ws_dir,
            outside_dir,
            ws,
        }
    }

    fn is_outside(result: Result<PathBuf, String>) -> bool {
        match result {
            Err(message) => message.contains("is outside the session workspace"),
            Ok(_) => false,
        }
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
    fn paths_inside_resolve_to_canonical() {
        let f = fixture();
        let root = f.ws.root().to_path_buf();
        assert_eq!(f.ws.resolve("a.txt").unwrap(), root.join("a.txt"));
        assert_eq!(f.ws.resolve("./sub/../a.txt").unwrap(), root.join("a.txt"));
        assert_eq!(f.ws.resolve(".").unwrap(), root);
        let abs = f.ws_dir.join("a.txt");
        assert_eq!(
            f.ws.resolve(abs.to_str().unwrap()).unwrap(),
            root.join("a.txt")
        );
        // Not-yet-existing paths are fine.
        assert_eq!(
            f.ws.resolve("new/dir/file.rs").unwrap(),
            root.join("new/dir/file.rs")
        );
        assert_eq!(f.ws.relative(&root.join("sub/x")), "sub/x");
        assert_eq!(f.ws.relative(&root), ".");
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
        symlink(
            f.outside_dir.join("secret.txt"),
            f.ws_dir.join("secret-link"),
        )
        .unwrap();
        assert!(is_outside(f.ws.resolve("etc/passwd")));
        assert!(is_outside(f.ws.resolve("etc")));
        assert!(is_outside(f.ws.resolve("out/secret.txt")));
        assert!(is_outside(f.ws.resolve("out/new-file.txt")));
        assert!(is_outside(f.ws.resolve("out/new/dir/file.txt")));
        assert!(is_outside(f.ws.resolve("secret-link")));
        // A dangling link pointing outside.
        symlink(f.outside_dir.join("nope"), f.ws_dir.join("dangling-out")).unwrap();
        assert!(is_outside(f.ws.resolve("dangling-out")));
        assert!(is_outside(f.ws.resolve("dangling-out/x")));
    }

    #[test]
    fn symlinks_inside_the_workspace_are_followed() {
        let f = fixture();
        symlink(f.ws_dir.join("sub"), f.ws_dir.join("sublink")).unwrap();
        symlink("a.txt", f.ws_dir.join("a-link")).unwrap();
        let root = f.ws.root().to_path_buf();
        assert_eq!(
            f.ws.resolve("sublink/x.txt").unwrap(),
            root.join("sub/x.txt")
        );
        assert_eq!(f.ws.resolve("a-link").unwrap(), root.join("a.txt"));
        // Dangling but pointing inside: refused with its own message.
        symlink("missing.txt", f.ws_dir.join("dangling-in")).unwrap();
        let message = f.ws.resolve("dangling-in").unwrap_err();
        assert!(message.contains("dangling symlink"), "{message}");
    }

    #[test]
    fn workspace_reached_through_a_symlink() {
        let f = fixture();
        let alias = f._outer.path().join("alias");
        symlink(&f.ws_dir, &alias).unwrap();
        let ws = Workspace::open(&alias, "write").unwrap();
        assert_eq!(ws.root(), f.ws.root());
        assert!(ws.resolve(alias.join("a.txt").to_str().unwrap()).is_ok());
        assert!(ws.resolve(f.ws_dir.join("a.txt").to_str().unwrap()).is_ok());
        assert!(is_outside(ws.resolve("../outside/secret.txt")));
    }

    #[test]
    fn missing_workspace_and_bad_input() {
        let f = fixture();
        assert!(Workspace::open(&f.ws_dir.join("nope"), "read").is_err());
        assert!(f.ws.resolve("").is_err());
        assert!(f.ws.resolve("a\0b").is_err());
    }
}
