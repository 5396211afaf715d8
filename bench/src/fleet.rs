//! The fleet picker: `tether` alone over this machine's daemon and two `[[remotes]]`, 1,000
//! sessions each, run on a pseudo-terminal (120×40) the way a person runs it. The remotes are
//! reached through a stand-in for `ssh` that runs the remote command on this machine: the
//! link, `tether proxy`, framing and the remote daemons are real, only the network is not.
//!
//! - first complete frame: spawn → every host's newest session has been drawn;
//! - the client's and the three daemons' CPU over 10 s in which nothing happens (every list
//!   is pushed by its daemon as it changes: an idle picker should cost ~0 on every end);
//! - client CPU per update: [`UPDATES`] renames on a remote, one at a time, each pushed
//!   through its ssh link and drawn before the next.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tether_daemon::ids;
use tether_daemon::store::Store;
use tether_daemon::store::rows::SessionRow;

use crate::attach::{Pty, cpu_ticks};
use crate::home::{Bins, Home};

pub const SESSIONS: usize = 1000;
const HOSTS: [&str; 3] = ["local", "gpu1", "gpu2"];
/// Each host's newest session: names that share no letter with any other name at any
/// position, so the terminal output shows each whole once its host's list is drawn.
const TOKENS: [&str; 3] = ["LLLLLLLL", "XXXXXXXX", "YYYYYYYY"];
const WINDOW: Duration = Duration::from_secs(10);
/// Renames measured for the CPU per update; each new name shares no letter at any position
/// with the names on screen (the terminal only gets the cells that changed).
const UPDATE_NAMES: [&str; 12] = [
    "AAAAAAAA", "BBBBBBBB", "CCCCCCCC", "DDDDDDDD", "EEEEEEEE", "FFFFFFFF", "HHHHHHHH", "JJJJJJJJ",
    "KKKKKKKK", "MMMMMMMM", "NNNNNNNN", "PPPPPPPP",
];
pub const UPDATES: usize = UPDATE_NAMES.len();

pub struct FleetSample {
    pub first_frame_ms: f64,
    pub cpu_ms_per_update: f64,
    pub client_cpu_pct: f64,
    pub daemons_cpu_pct: f64,
}

/// Three homes with `SESSIONS` idle sessions each; the first lists the other two as remotes.
pub async fn setup(bins: &Bins, url: &str) -> Result<(Vec<Home>, std::path::PathBuf)> {
    let homes: Vec<Home> = (0..3)
        .map(|_| Home::new(bins, url))
        .collect::<Result<_>>()?;
    let mut stores = Vec::new();
    for home in &homes {
        let paths = home.paths();
        std::fs::create_dir_all(&paths.data_dir)?;
        stores.push(Store::open(&paths.db()).context("opening a store")?);
    }
    let row = |home: &Home, name: String, at: String| {
        let ws = home.paths().data_dir.join("ws");
        let _ = std::fs::create_dir_all(&ws);
        let mut r = SessionRow::new(
            ids::session_id(),
            "anthropic/claude-sonnet-4-6".into(),
            ws.display().to_string(),
            50,
        );
        r.name = Some(name);
        r.created_at = at.clone();
        r.updated_at = at;
        r
    };
    for (h, (home, store)) in homes.iter().zip(&stores).enumerate() {
        for i in 0..SESSIONS - 1 {
            let at = format!(
                "2026-01-01T{:02}:{:02}:{:02}.000Z",
                i / 3600,
                i / 60 % 60,
                i % 60
            );
            store
                .create_session(row(home, format!("{}-{i:04}", &HOSTS[h][..1]), at), None)
                .await?;
        }
        let at = format!("2026-06-01T00:00:0{h}.000Z");
        store
            .create_session(row(home, TOKENS[h].into(), at), None)
            .await?;
    }
    drop(stores);
    // The stand-in for ssh: drop its options and the destination, run the command here.
    let fake_ssh = homes[0].paths().data_dir.join("fake-ssh");
    std::fs::write(
        &fake_ssh,
        "#!/bin/sh\nwhile [ $# -gt 1 ]; do case \"$1\" in -p) shift 2;; -*) shift;; *) break;; esac; done\nshift\nexec sh -c \"$*\"\n",
    )?;
    std::fs::set_permissions(
        &fake_ssh,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let mut config = String::new();
    for (h, home) in homes.iter().enumerate().skip(1) {
        config.push_str(&format!(
            "[[remotes]]\nname = \"{}\"\nurl = \"ssh://bench-{}\"\ncommand = \"env TETHER_HOME={} {}\"\n",
            HOSTS[h],
            HOSTS[h],
            home.paths().data_dir.display(),
            bins.tether.display()
        ));
    }
    std::fs::write(homes[0].paths().config_file(), config)?;
    for home in &homes {
        home.ok(&["daemon", "start"])?;
    }
    Ok((homes, fake_ssh))
}

/// One picker: spawn, first complete frame, 10 s of nothing, [`UPDATES`] pushed renames,
/// quit. Each run leaves gpu1's newest session renamed back to its token.
pub fn run_once(homes: &[Home], fake_ssh: &std::path::Path) -> Result<FleetSample> {
    let ssh = fake_ssh.display().to_string();
    let start = Instant::now();
    let mut pty = Pty::spawn_with(&homes[0], &[], &[("TETHER_SSH_COMMAND", ssh.as_str())])?;
    while !TOKENS.iter().all(|t| pty.contains_after(0, t)) {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the picker never drew every host's newest session");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let first_frame_ms = start.elapsed().as_secs_f64() * 1000.0;
    let client = pty.pid();
    let daemons: Vec<u32> = homes
        .iter()
        .map(|h| h.running_daemon_pid().map(|p| p as u32))
        .collect::<Result<_>>()?;
    let daemon_ticks = || -> u64 { daemons.iter().map(|p| cpu_ticks(*p).unwrap_or(0)).sum() };
    // Idle: nothing changes anywhere.
    let c0 = cpu_ticks(client)?;
    let d0 = daemon_ticks();
    let t0 = Instant::now();
    std::thread::sleep(WINDOW);
    let secs = t0.elapsed().as_secs_f64();
    let idle_client = cpu_ticks(client)? - c0;
    let idle_daemons = daemon_ticks() - d0;
    // Updates: gpu1's newest session renamed, one push (and one frame) at a time.
    let mut old = TOKENS[1].to_string();
    let c1 = cpu_ticks(client)?;
    for name in UPDATE_NAMES {
        let mark = pty.len();
        homes[1].ok(&["rename", &old, name])?;
        let asked = Instant::now();
        while !pty.contains_after(mark, name) {
            if asked.elapsed() > Duration::from_secs(30) {
                bail!("the picker never drew the rename to {name}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        old = name.to_string();
    }
    let update_ticks = cpu_ticks(client)? - c1;
    homes[1].ok(&["rename", &old, TOKENS[1]])?;
    // USER_HZ is 100 on Linux: a tick is 10 ms.
    let cpu_ms_per_update = update_ticks as f64 * 10.0 / UPDATES as f64;
    let pct = |ticks: u64| ticks as f64 / 100.0 / secs * 100.0;
    pty.send(b"\x1b")?;
    Ok(FleetSample {
        first_frame_ms,
        cpu_ms_per_update,
        client_cpu_pct: pct(idle_client),
        daemons_cpu_pct: pct(idle_daemons),
    })
}
