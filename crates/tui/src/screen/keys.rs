//! Key bindings that users can change in config.toml (`[tui]` table), e.g.
//! `detach = "ctrl-b d"` (a tmux-like chord) or `detach = "ctrl-q"` (one key).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl KeySpec {
    pub fn matches(&self, k: &KeyEvent) -> bool {
        // Shift is part of the character for printable keys.
        let mods = k.modifiers & !KeyModifiers::SHIFT;
        k.code == self.code && mods == self.mods & !KeyModifiers::SHIFT
    }

    pub fn parse(s: &str) -> Option<KeySpec> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = s.trim();
        loop {
            let lower = rest.to_ascii_lowercase();
            if let Some(r) = lower
                .strip_prefix("ctrl-")
                .or_else(|| lower.strip_prefix("c-"))
            {
                mods |= KeyModifiers::CONTROL;
                rest = &rest[rest.len() - r.len()..];
            } else if let Some(r) = lower
                .strip_prefix("alt-")
                .or_else(|| lower.strip_prefix("m-"))
            {
                mods |= KeyModifiers::ALT;
                rest = &rest[rest.len() - r.len()..];
            } else {
                break;
            }
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "esc" => KeyCode::Esc,
            "enter" => KeyCode::Enter,
            "tab" => KeyCode::Tab,
            "space" => KeyCode::Char(' '),
            f if f.starts_with('f') && f.len() > 1 => KeyCode::F(f[1..].parse().ok()?),
            _ => {
                let mut chars = rest.chars();
                let c = chars.next()?;
                if chars.next().is_some() {
                    return None;
                }
                KeyCode::Char(if mods.contains(KeyModifiers::CONTROL) {
                    c.to_ascii_lowercase()
                } else {
                    c
                })
            }
        };
        Some(KeySpec { code, mods })
    }

    pub fn label(&self) -> String {
        let mut s = String::new();
        if self.mods.contains(KeyModifiers::CONTROL) {
            s.push_str("ctrl-");
        }
        if self.mods.contains(KeyModifiers::ALT) {
            s.push_str("alt-");
        }
        match self.code {
            KeyCode::Char(' ') => s.push_str("space"),
            KeyCode::Char(c) => s.push(c),
            KeyCode::F(n) => s.push_str(&format!("f{n}")),
            KeyCode::Esc => s.push_str("esc"),
            KeyCode::Enter => s.push_str("enter"),
            KeyCode::Tab => s.push_str("tab"),
            _ => s.push('?'),
        }
        s
    }
}

/// The detach binding: one key, or a prefix key then a key (like tmux).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub detach: Vec<KeySpec>,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            detach: vec![
                KeySpec {
                    code: KeyCode::Char('b'),
                    mods: KeyModifiers::CONTROL,
                },
                KeySpec {
                    code: KeyCode::Char('d'),
                    mods: KeyModifiers::NONE,
                },
            ],
        }
    }
}

impl Keys {
    pub fn detach_label(&self) -> String {
        self.detach
            .iter()
            .map(KeySpec::label)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parses `"ctrl-b d"` / `"ctrl-q"`.
    pub fn parse_detach(s: &str) -> Result<Vec<KeySpec>, String> {
        let keys: Option<Vec<KeySpec>> = s.split_whitespace().map(KeySpec::parse).collect();
        match keys {
            Some(k) if (1..=2).contains(&k.len()) => Ok(k),
            _ => Err(format!(
                "`detach = \"{s}\"` is not a key binding; write one key or two, e.g. \"ctrl-b d\" or \"ctrl-q\""
            )),
        }
    }
}

/// The key bindings `[tui]` in config.toml asks for. A missing file means defaults; a broken
/// binding is an error with the fix.
pub fn load(path: &std::path::Path) -> Result<Keys, String> {
    let settings = crate::settings::load(path)?;
    let mut keys = Keys::default();
    if let Some(d) = settings.detach {
        keys.detach =
            Keys::parse_detach(&d).map_err(|e| format!("{}: [tui] {e}", path.display()))?;
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chords_and_single_keys() {
        assert_eq!(
            Keys::parse_detach("ctrl-b d").unwrap(),
            Keys::default().detach
        );
        let k = Keys::parse_detach("C-q").unwrap();
        assert_eq!(
            k,
            vec![KeySpec {
                code: KeyCode::Char('q'),
                mods: KeyModifiers::CONTROL
            }]
        );
        assert!(Keys::parse_detach("ctrl-b d x").is_err());
        assert!(Keys::parse_detach("hyper-q").is_err());
        assert_eq!(Keys::default().detach_label(), "ctrl-b d");
    }

    #[test]
    fn config_file_tui_table_sets_detach_and_ignores_daemon_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(
            &p,
            "default_model = \"x\"\n[retry]\nmax_attempts = 2\n[tui]\ndetach = \"ctrl-q\"\n",
        )
        .unwrap();
        assert_eq!(load(&p).unwrap().detach_label(), "ctrl-q");
        std::fs::write(&p, "[tui]\ndetach = \"nope nope nope\"\n").unwrap();
        assert!(load(&p).unwrap_err().contains("ctrl-b d"));
        assert_eq!(
            load(&dir.path().join("absent.toml")).unwrap(),
            Keys::default()
        );
    }
}
