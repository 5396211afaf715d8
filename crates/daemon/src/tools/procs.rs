//! Finding and killing a shell's process tree through `/proc` (Linux).
//!
//! The shell runs in its own process group, so `killpg` reaches everything it
//! starts — except processes that moved to another group (`setsid`,
//! `timeout`, `setpgid`). Those are found as descendants through the
//! `PPid` links in `/proc` while the shell is still alive, and killed one by
//! one. Processes that both left the group and were re-parented away (a
//! daemon that double-forked) are not reachable; the sandbox will close that.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// One process as seen in `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    /// The one-letter state (`R`, `S`, `Z`, …).
    pub state: char,
}

/// Parses the contents of `/proc/<pid>/stat`.
pub fn parse_stat(stat: &str) -> Option<ProcInfo> {
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    // The command name is in parentheses and may contain spaces and ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgrp,
        state,
    })
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot. With
/// the pid it names one process for good, even after the pid is reused.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // `after` starts at field 3 (state), so field 22 is the 20th of it.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Start time of a live process, `None` if it is gone.
pub fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Kills what an earlier daemon left running: the process `pid` (a process-group leader),
/// its group and its descendants, but only if `pid` still names the process that started at
/// `started` (not a stranger that reused the pid). Returns whether anything was killed.
pub async fn kill_leftover(pid: u32, started: u64) -> bool {
    if start_time(pid) != Some(started) {
        return false;
    }
    let found = kill_tree(pid);
    wait_gone(pid, &found, Duration::from_secs(2)).await;
    true
}

/// A snapshot of all processes; empty if `/proc` can't be read.
pub fn snapshot() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let name = entry.file_name();
        let pid: i32 = name.to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat)
    })
    .collect()
}

/// All transitive children of `root` in `procs` (not `root` itself).
pub fn descendants(procs: &[ProcInfo], root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    let mut out = Vec::new();
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if child != root && seen.insert(child) {
                out.push(child);
                stack.push(child);
            }
        }
    }
    out
}

/// Sends SIGKILL to process group `pgid` and to every descendant of its
/// leader `pgid` (which must still exist, possibly as an unreaped zombie, so
/// that its pid can't have been reused). Returns the descendants found, for
/// [`wait_gone`].
pub fn kill_tree(pgid: u32) -> Vec<i32> {
    let Ok(leader) = i32::try_from(pgid) else {
        return Vec::new();
    };
    if leader <= 1 {
        return Vec::new();
    }
    let found = descendants(&snapshot(), leader);
    let _ = killpg(Pid::from_raw(leader), Signal::SIGKILL);
    for &pid in &found {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    found
}

/// Whether any live (non-zombie) process is in group `pgid` or is one of
/// `pids`.
fn any_alive(pgid: i32, pids: &[i32]) -> bool {
    snapshot()
        .iter()
        .any(|p| p.state != 'Z' && (p.pgrp == pgid || pids.contains(&p.pid)))
}

/// Waits (up to `limit`) until no live process remains in group `pgid` or
/// among `pids`, so that callers can rely on the tree being gone when they
/// return. SIGKILL is asynchronous; this usually takes well under 10 ms.
pub async fn wait_gone(pgid: u32, pids: &[i32], limit: Duration) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return true;
    };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if !any_alive(pgid, pids) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(pgid, "processes survived SIGKILL of the shell's tree");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Pids of live processes whose command line contains `needle` (test helper
/// and diagnostics).
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    snapshot()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .map(|p| p.pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let p = parse_stat("1234 (my (weird) cmd) S 1 1234 1234 0 -1 4194560 ...").unwrap();
        assert_eq!(
            p,
            ProcInfo {
                pid: 1234,
                ppid: 1,
                pgrp: 1234,
                state: 'S'
            }
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn parses_start_time_past_odd_command_names() {
        let stat = "77 (a) b) S 1 77 77 0 -1 4194560 10 0 0 0 1 2 0 0 20 0 1 0 987654 100 200";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("77 (x) S 1"), None);
        let me = std::process::id();
        assert!(start_time(me).is_some());
    }

    #[tokio::test]
    async fn kill_leftover_checks_the_start_time() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = start_time(pid).unwrap();
        assert!(
            !kill_leftover(pid, started + 1).await,
            "a different start time is a stranger"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the stranger must live"
        );
        assert!(kill_leftover(pid, started).await);
        let status = child.wait().unwrap();
        assert!(!status.success());
    }

    #[test]
    fn descendants_are_transitive() {
        let mk = |pid, ppid| ProcInfo {
            pid,
            ppid,
            pgrp: 0,
            state: 'S',
        };
        let procs = [mk(10, 1), mk(11, 10), mk(12, 11), mk(13, 1), mk(14, 10)];
        let mut d = descendants(&procs, 10);
        d.sort_unstable();
        assert_eq!(d, vec![11, 12, 14]);
        assert!(descendants(&procs, 13).is_empty());
    }

    #[test]
    fn snapshot_sees_this_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(snapshot().iter().any(|p| p.pid == me));
    }
}
