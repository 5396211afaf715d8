//! The fleet: this machine's daemon and the other boxes listed as `[[remotes]]` in
//! config.toml, and `HOST:SESSION`, the one way every command names a session on one of them.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::transport::{SshTarget, Target};

/// The host name of this machine's daemon (in `HOST:SESSION`, `ls`'s HOST column, `--json`).
pub const LOCAL: &str = "local";

/// How long one host may take to connect and answer before it counts as unreachable.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One `[[remotes]]` entry, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub name: String,
    pub ssh: SshTarget,
    /// Connecting plus the first answer; past it the host is shown unreachable.
    pub connect_timeout: Duration,
}

/// A daemon of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum Host {
    Local,
    Remote(Remote),
}

impl Host {
    pub fn name(&self) -> &str {
        match self {
            Host::Local => LOCAL,
            Host::Remote(r) => &r.name,
        }
    }

    pub fn target(&self, paths: &tether_proto::Paths) -> Target {
        match self {
            Host::Local => Target::Local(paths.clone()),
            Host::Remote(r) => Target::Ssh(r.ssh.clone()),
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        match self {
            // Starting the local daemon may take most of this.
            Host::Local => Duration::from_secs(30),
            Host::Remote(r) => r.connect_timeout,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteEntry {
    name: Spanned<String>,
    url: Spanned<String>,
    /// What runs `tether` on that box (default: TETHER_REMOTE_COMMAND, else `tether`).
    command: Option<String>,
    connect_timeout_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
struct FleetFile {
    #[serde(default)]
    remotes: Vec<RemoteEntry>,
}

/// Reads `[[remotes]]` from config.toml at `path`; a missing file means none, a broken entry
/// an error naming the file and line.
pub fn load(path: &std::path::Path) -> Result<Vec<Remote>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) => return Ok(Vec::new()),
    };
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse(text: &str) -> Result<Vec<Remote>, String> {
    let file: FleetFile = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    let line = |span: std::ops::Range<usize>| {
        1 + text
            .get(..span.start)
            .unwrap_or("")
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
    };
    let mut remotes: Vec<Remote> = Vec::new();
    for e in file.remotes {
        let name = e.name.get_ref();
        let at = line(e.name.span());
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok_name {
            return Err(format!(
                "line {at}: [[remotes]] name {name:?}: use 1-64 letters, digits, `-`, `_` or `.` (it is the HOST of HOST:SESSION)"
            ));
        }
        if name == LOCAL {
            return Err(format!(
                "line {at}: [[remotes]] name \"local\" is taken by this machine's daemon; pick another name"
            ));
        }
        if remotes.iter().any(|r| &r.name == name) {
            return Err(format!(
                "line {at}: [[remotes]] name {name:?} is used twice; each remote needs its own name"
            ));
        }
        let mut ssh = SshTarget::parse(e.url.get_ref()).map_err(|why| {
            format!(
                "line {}: [[remotes]] {name:?} url: {}",
                line(e.url.span()),
                why.trim_start_matches("--remote ")
            )
        })?;
        ssh.command = e.command.filter(|c| !c.trim().is_empty());
        let connect_timeout = match e.connect_timeout_secs {
            Some(t) if *t.get_ref() == 0 => {
                return Err(format!(
                    "line {}: [[remotes]] {name:?} connect_timeout_secs must be at least 1",
                    line(t.span())
                ));
            }
            Some(t) => Duration::from_secs(*t.get_ref()),
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        remotes.push(Remote {
            name: name.clone(),
            ssh,
            connect_timeout,
        });
    }
    Ok(remotes)
}

/// Splits `HOST:SESSION`: the host (None when the argument names no host) and the session.
/// Session names cannot contain `:`, so a colon always means a host.
pub fn resolve<'a>(arg: &'a str, remotes: &[Remote]) -> Result<(Option<Host>, &'a str), String> {
    let Some((host, session)) = arg.split_once(':') else {
        return Ok((None, arg));
    };
    if session.is_empty() {
        return Err(format!(
            "`{arg}`: no session after `{host}:`; write HOST:SESSION, e.g. {host}:fix-tests"
        ));
    }
    if host == LOCAL {
        return Ok((Some(Host::Local), session));
    }
    match remotes.iter().find(|r| r.name == host) {
        Some(r) => Ok((Some(Host::Remote(r.clone())), session)),
        None => Err(format!(
            "`{arg}`: no remote named `{host}`; {}",
            known_hosts(remotes)
        )),
    }
}

/// The hosts there are, for an error about one that is not.
pub fn known_hosts(remotes: &[Remote]) -> String {
    if remotes.is_empty() {
        return "config.toml lists no [[remotes]] (add `[[remotes]]` with `name = \"gpu1\"` and `url = \"ssh://me@gpu1\"`)".into();
    }
    let names: Vec<&str> = remotes.iter().map(|r| r.name.as_str()).collect();
    format!(
        "the hosts are `local` and the [[remotes]] of config.toml: {}",
        names.join(", ")
    )
}

/// The hosts `ls` asks: `--host NAME` alone, else this machine and every remote.
pub fn hosts(remotes: &[Remote], only: Option<&str>) -> Result<Vec<Host>, String> {
    let all = std::iter::once(Host::Local)
        .chain(remotes.iter().cloned().map(Host::Remote))
        .collect::<Vec<_>>();
    match only {
        None => Ok(all),
        Some(name) => match all.into_iter().find(|h| h.name() == name) {
            Some(h) => Ok(vec![h]),
            None => Err(format!(
                "--host {name}: no such host; {}",
                known_hosts(remotes)
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TWO: &str = "default_model = \"x\"\n[tui]\ndetach = \"ctrl-q\"\n\n[[remotes]]\nname = \"gpu1\"\nurl = \"ssh://me@gpu1\"\n\n[[remotes]]\nname = \"build\"\nurl = \"ssh://ci@build.lan:2222\"\ncommand = \"/opt/tether/bin/tether\"\nconnect_timeout_secs = 3\n";

    #[test]
    fn remotes_are_read_in_order_with_their_options() {
        let r = parse(TWO).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "gpu1");
        assert_eq!(r[0].ssh.destination(), "me@gpu1");
        assert_eq!(r[0].connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(r[1].ssh.port, Some(2222));
        assert_eq!(r[1].ssh.remote_command(), "/opt/tether/bin/tether");
        assert_eq!(r[1].connect_timeout, Duration::from_secs(3));
        assert!(parse("[tui]\ndetach = \"x\"\n").unwrap().is_empty());
    }

    #[test]
    fn a_bad_remote_is_reported_with_its_line() {
        let cases = [
            (
                "[[remotes]]\nname = \"a b\"\nurl = \"ssh://x\"\n",
                "line 2",
                "letters",
            ),
            (
                "[[remotes]]\nname = \"local\"\nurl = \"ssh://x\"\n",
                "line 2",
                "taken",
            ),
            (
                "[[remotes]]\nname = \"a\"\nurl = \"ssh://x\"\n[[remotes]]\nname = \"a\"\nurl = \"ssh://y\"\n",
                "line 5",
                "used twice",
            ),
            (
                "[[remotes]]\nname = \"a\"\n\nurl = \"http://x\"\n",
                "line 4",
                "scheme",
            ),
            (
                "[[remotes]]\nname = \"a\"\nurl = \"ssh://x\"\nport = 22\n",
                "line 4",
                "port",
            ),
            ("[[remotes]]\nname = \"a\"\n", "line 1", "url"),
            (
                "[[remotes]]\nname = \"a\"\nurl = \"ssh://x\"\nconnect_timeout_secs = 0\n",
                "line 4",
                "at least 1",
            ),
        ];
        for (text, line, what) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(line) && e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn host_colon_session_names_a_host_and_unknown_hosts_are_named() {
        let r = parse(TWO).unwrap();
        assert_eq!(resolve("fix-tests", &r).unwrap(), (None, "fix-tests"));
        assert_eq!(
            resolve("local:fix-tests", &r).unwrap(),
            (Some(Host::Local), "fix-tests")
        );
        let (h, s) = resolve("build:sesn_01ABC", &r).unwrap();
        assert_eq!((h.unwrap().name(), s), ("build", "sesn_01ABC"));
        let e = resolve("gpu2:x", &r).unwrap_err();
        assert!(
            e.contains("gpu2") && e.contains("gpu1, build"),
            "names the known hosts: {e}"
        );
        assert!(resolve("gpu1:", &r).unwrap_err().contains("no session"));
        assert!(resolve("a:b", &[]).unwrap_err().contains("[[remotes]]"));
    }

    #[test]
    fn ls_asks_every_host_or_the_one_named() {
        let r = parse(TWO).unwrap();
        let names = |hs: Vec<Host>| hs.iter().map(|h| h.name().to_string()).collect::<Vec<_>>();
        assert_eq!(names(hosts(&r, None).unwrap()), ["local", "gpu1", "build"]);
        assert_eq!(names(hosts(&r, Some("build")).unwrap()), ["build"]);
        assert_eq!(names(hosts(&r, Some("local")).unwrap()), ["local"]);
        assert!(hosts(&r, Some("nope")).unwrap_err().contains("gpu1, build"));
    }
}
