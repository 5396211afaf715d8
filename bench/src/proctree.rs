//! Wall time and peak memory of a whole process tree: a command is spawned, and until it exits a
//! thread sums the RSS of it and every descendant (plus extra roots, e.g. a daemon that detached
//! from the client) every [`SAMPLE_EVERY`], from /proc. Descendants of the extra roots count
//! only if they started after the command did: a warm daemon's shells from earlier sessions are
//! not part of this run. Sampling can miss a peak shorter than the interval, the same way for
//! every program measured.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// Nothing measured should come near this; a hung peer is killed and reported as failed.
const TIMEOUT: Duration = Duration::from_secs(180);

pub struct Measured {
    pub output: Output,
    pub wall: Duration,
    /// Largest sum of RSS over the tree seen at any sample, MiB.
    pub peak_rss_mib: f64,
    pub timed_out: bool,
}

/// Runs `cmd` (stdin null, output captured) and measures it. `extra_roots` is called at every
/// sample and names more processes whose trees count (a daemon the command started or talks to).
pub fn measure(
    cmd: &mut Command,
    extra_roots: impl Fn() -> Vec<i32> + Send + 'static,
) -> Result<Measured> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd.spawn().context("spawning")?;
    let root = child.id() as i32;
    let since = start_ticks(root);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut peak_kb = 0u64;
            let mut timed_out = false;
            while !done.load(Ordering::Relaxed) {
                let mut roots = extra_roots();
                roots.push(root);
                peak_kb = peak_kb.max(tree_rss_kb(&roots, since));
                if start.elapsed() > TIMEOUT {
                    // The child is unreaped until `wait_with_output` returns, so the pid is ours.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(root),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    timed_out = true;
                    break;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            (peak_kb, timed_out)
        })
    };
    let output = child.wait_with_output();
    let wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let (peak_kb, timed_out) = sampler.join().unwrap_or((0, false));
    Ok(Measured {
        output: output.context("waiting for the child")?,
        wall,
        peak_rss_mib: peak_kb as f64 / 1024.0,
        timed_out,
    })
}

/// Sum of VmRSS (kB) over `roots` and all their descendants that started at or after `since`
/// (clock ticks after boot, as in /proc/PID/stat), each process counted once.
pub fn tree_rss_kb(roots: &[i32], since: Option<u64>) -> u64 {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Some((ppid, started)) = parent_and_start(pid) else {
                continue;
            };
            if since.is_none_or(|since| started >= since) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut seen = Vec::new();
    let mut stack: Vec<i32> = roots.to_vec();
    let mut total = 0;
    while let Some(pid) = stack.pop() {
        if seen.contains(&pid) {
            continue;
        }
        seen.push(pid);
        total += rss_kb(pid);
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids);
        }
    }
    total
}

/// The ppid and starttime fields of /proc/PID/stat (counted after the parenthesised command
/// name, which may hold spaces).
fn parent_and_start(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state): ppid is field 4, starttime field 22.
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

fn start_ticks(pid: i32) -> Option<u64> {
    parent_and_start(pid).map(|(_, start)| start)
}

fn rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_children_of_a_shell() {
        // A shell whose child holds memory: the tree's peak must exceed the shell's own RSS.
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "head -c 40000000 /dev/zero | (sleep 0.3; cat) >/dev/null",
        ]);
        let m = measure(&mut cmd, Vec::new).unwrap();
        assert!(m.output.status.success());
        assert!(!m.timed_out);
        assert!(m.peak_rss_mib > 1.0, "peak {}", m.peak_rss_mib);
        assert!(m.wall >= Duration::from_millis(300));
    }

    #[test]
    fn parent_of_self_is_our_parent() {
        let me = std::process::id() as i32;
        let (ppid, start) = parent_and_start(me).unwrap();
        assert_eq!(ppid, nix::unistd::getppid().as_raw(), "ppid of {me}");
        // A child started now is not older than this process.
        let child = Command::new("sleep").arg("1").spawn().unwrap();
        let child_start = start_ticks(child.id() as i32).unwrap();
        assert!(child_start >= start);
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
