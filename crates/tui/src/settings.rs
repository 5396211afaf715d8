//! The client's own settings: the `[tui]` table of config.toml (the rest of the file belongs
//! to the daemon, which accepts and ignores this table).

use serde::Deserialize;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// The TUI's detach key, e.g. `"ctrl-b d"`.
    pub detach: Option<String>,
    /// Default daemon to talk to, `ssh://[user@]host[:port]`; `--remote`/`TETHER_REMOTE` win,
    /// `--remote local` means this machine's daemon.
    pub remote: Option<String>,
    /// Where `tether new`/`run` work without --dir/--private/--worktree: `"cwd"` (the
    /// default: the current directory) or `"private"` (a fresh workspace in the data dir).
    pub workspace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    tui: ClientSettings,
}

/// Reads `[tui]` from `path`; a missing file means defaults, a broken one an error naming it.
pub fn load(path: &std::path::Path) -> Result<ClientSettings, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) => return Ok(ClientSettings::default()),
    };
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse(text: &str) -> Result<ClientSettings, String> {
    toml::from_str::<ConfigFile>(text)
        .map(|c| c.tui)
        .map_err(|e| e.to_string().trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tui_table_and_nothing_else() {
        let s = parse(
            "default_model = \"x\"\n[retry]\nmax_attempts = 2\n[tui]\ndetach = \"ctrl-q\"\nremote = \"ssh://me@devbox\"\n",
        )
        .unwrap();
        assert_eq!(s.detach.as_deref(), Some("ctrl-q"));
        assert_eq!(s.remote.as_deref(), Some("ssh://me@devbox"));
        assert_eq!(parse("").unwrap(), ClientSettings::default());
        let e = parse("[tui]\nremot = \"x\"\n").unwrap_err();
        assert!(e.contains("remot"), "{e}");
    }
}
