//! Word when a session needs you: the `[notify]` table of config.toml, the terminal's own
//! desktop notifications (OSC 9 and OSC 777, and the bell; wrapped for tmux to pass through),
//! and a hook command run with the event as JSON on stdin (ntfy, Slack and the like).

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[notify]` in config.toml.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Desktop notifications through the terminal (OSC 9 / OSC 777) and the bell.
    pub terminal: bool,
    /// Run with `sh -c`, the event as one JSON object on stdin.
    pub command: Option<String>,
    /// A finished turn is news only when it ran at least this long (seconds).
    pub min_turn_secs: u64,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            terminal: true,
            command: None,
            min_turn_secs: 30,
        }
    }
}

impl NotifySettings {
    pub fn min_turn(&self) -> Duration {
        Duration::from_secs(self.min_turn_secs)
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    notify: NotifySettings,
}

/// Reads `[notify]` from config.toml at `path`; a missing file means defaults.
pub fn load(path: &std::path::Path) -> Result<NotifySettings, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) => return Ok(NotifySettings::default()),
    };
    toml::from_str::<ConfigFile>(&text)
        .map(|c| c.notify)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim()))
}

/// What happened, as the hook gets it on stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// `session.requires_action`, `session.errored` or `session.idled` (the names of the
    /// hosted API's webhook events).
    #[serde(rename = "type")]
    pub kind: String,
    /// `local` or the `[[remotes]]` name.
    pub host: String,
    pub session_id: String,
    pub name: Option<String>,
    /// One line for a human: `gpu1:fix-tests needs input`.
    pub text: String,
}

/// The bytes that make the terminal notify: OSC 9 (iTerm2, kitty, WezTerm, Windows Terminal),
/// OSC 777 (foot, rxvt, VTE terminals) and BEL. Inside tmux each escape is wrapped in a DCS
/// passthrough (needs `set -g allow-passthrough on` in tmux ≥ 3.3).
pub fn terminal_bytes(title: &str, body: &str, in_tmux: bool) -> Vec<u8> {
    let clean = |s: &str| {
        s.chars()
            .filter(|c| !c.is_control() && *c != ';')
            .collect::<String>()
    };
    let (title, body) = (clean(title), clean(body));
    let seqs = [
        format!("\x1b]9;{title}: {body}\x07"),
        format!("\x1b]777;notify;{title};{body}\x07"),
    ];
    let mut out = String::new();
    for s in seqs {
        if in_tmux {
            // Every ESC inside the passthrough is doubled.
            out.push_str(&format!(
                "\x1bPtmux;{}\x1b\\",
                s.replace('\x1b', "\x1b\x1b")
            ));
        } else {
            out.push_str(&s);
        }
    }
    // The bell goes straight to tmux, which shows it and passes it on.
    out.push('\x07');
    out.into_bytes()
}

/// Tells the terminal (when enabled) and runs the hook (when set), without waiting for it.
pub fn send(settings: &NotifySettings, notice: &Notice) {
    if settings.terminal {
        let bytes = terminal_bytes("tether", &notice.text, std::env::var_os("TMUX").is_some());
        let mut out = std::io::stdout();
        let _ = out.write_all(&bytes).and_then(|()| out.flush());
    }
    if let Some(cmd) = &settings.command {
        run_hook(cmd, notice);
    }
}

/// Runs `cmd` with `sh -c`, `notice` as JSON on stdin; its output is dropped (the screen is
/// the TUI's) and it is reaped in the background.
fn run_hook(cmd: &str, notice: &Notice) {
    let json = serde_json::to_string(notice).unwrap_or_default();
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    // A hook that cannot start must not disturb the screen; the picker goes on.
    let Ok(mut child) = child else {
        return;
    };
    let stdin = child.stdin.take();
    std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(json.as_bytes());
            let _ = stdin.write_all(b"\n");
        }
        let _ = child.wait();
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn osc_9_and_777_and_the_bell_wrapped_for_tmux() {
        let plain =
            String::from_utf8(terminal_bytes("tether", "gpu1:x needs input", false)).unwrap();
        assert_eq!(
            plain,
            "\x1b]9;tether: gpu1:x needs input\x07\x1b]777;notify;tether;gpu1:x needs input\x07\x07"
        );
        let tmux = String::from_utf8(terminal_bytes("tether", "done", true)).unwrap();
        assert_eq!(
            tmux,
            "\x1bPtmux;\x1b\x1b]9;tether: done\x07\x1b\\\x1bPtmux;\x1b\x1b]777;notify;tether;done\x07\x1b\\\x07"
        );
        // A name cannot end the sequence early or split OSC 777's fields.
        let hostile = String::from_utf8(terminal_bytes("t", "a\x07b;c\x1b]", false)).unwrap();
        assert!(hostile.starts_with("\x1b]9;t: abc]\x07"), "{hostile:?}");
    }

    #[test]
    fn notify_settings_default_and_from_config() {
        let c: ConfigFile = toml::from_str("[tui]\nx = 1\n").unwrap_or_default();
        assert_eq!(c.notify, NotifySettings::default());
        let c: ConfigFile = toml::from_str(
            "[notify]\ncommand = \"notify-send tether\"\nmin_turn_secs = 5\nterminal = false\n",
        )
        .unwrap();
        assert_eq!(c.notify.command.as_deref(), Some("notify-send tether"));
        assert_eq!(c.notify.min_turn(), Duration::from_secs(5));
        assert!(!c.notify.terminal);
        assert!(toml::from_str::<ConfigFile>("[notify]\ncomand = \"x\"\n").is_err());
    }
}
