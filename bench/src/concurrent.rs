//! 100 sessions run the bash-then-read scenario at once: the wall time from the first
//! `tether send --wait` spawned to the last one done, the daemon's peak RSS (VmHWM), and the peak
//! RSS of the daemon's whole tree (with the 100 sandboxed shells), sampled while they run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

use crate::home::{Bins, Home, proc_status_mib};
use crate::proctree::tree_rss_kb;

pub const SESSIONS: usize = 100;

pub struct Sample {
    pub wall_ms: f64,
    pub daemon_peak_mib: f64,
    pub tree_peak_mib: f64,
}

pub fn once(bins: &Bins, base_url: &str) -> Result<Sample> {
    let home = Home::new(bins, base_url)?;
    home.ok(&["daemon", "start"])?;
    let pid = home.running_daemon_pid()?;
    let names: Vec<String> = (0..SESSIONS).map(|i| format!("c{i}")).collect();
    for name in &names {
        home.ok(&["new", "--detach", "--name", name])?;
    }

    let done = Arc::new(AtomicBool::new(false));
    let peak_kb = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak_kb) = (Arc::clone(&done), Arc::clone(&peak_kb));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak_kb.fetch_max(tree_rss_kb(&[pid], None), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Instant::now();
    let sent = crate::e2e::send_to_all(&home, &names);
    let wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    sent?;
    ensure!(
        home.running_daemon_pid()? == pid,
        "the daemon restarted during the concurrent runs"
    );
    let daemon_peak_mib = proc_status_mib(pid, "VmHWM")?;
    home.stop_daemon()?;
    Ok(Sample {
        wall_ms: wall.as_secs_f64() * 1e3,
        daemon_peak_mib,
        tree_peak_mib: peak_kb.load(Ordering::Relaxed) as f64 / 1024.0,
    })
}
