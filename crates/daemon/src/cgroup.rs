//! cgroup v2 limits for sandboxes (reference §A6): memory, pids and cpu for the whole tree,
//! where the daemon sits in a delegated, writable cgroup v2 subtree (a systemd unit with
//! `Delegate=yes`, or `systemd-run --user --scope`). Elsewhere (cgroup v1 hosts, hybrid hosts
//! whose v2 tree has no controllers, undelegated cgroups) the sandbox keeps its rlimits, the
//! tmpfs cap and the per-call timeout, and `tether doctor` says why.
//!
//! [`detect`] finds the subtree from `/proc/self/mountinfo` and `/proc/self/cgroup`; the
//! decision itself ([`delegated_subtree`]) is pure so each kind of host is unit-tested.

use std::path::{Path, PathBuf};

/// Controllers the sandbox limits with; memory and pids are required, cpu is used if there.
pub const REQUIRED: [&str; 2] = ["memory", "pids"];

/// The mount point of the cgroup v2 hierarchy, from `/proc/self/mountinfo`.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// This process's cgroup v2 path (the `0::` line of `/proc/self/cgroup`).
pub fn own_cgroup(self_cgroup: &str) -> Option<&str> {
    self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The delegated subtree sandboxes can be put under: the daemon's own cgroup v2 directory,
/// when it offers the [`REQUIRED`] controllers and the daemon may write there. `read` reads
/// a file, `writable` tells whether a path may be written (both injected for the tests).
pub fn delegated_subtree(
    mountinfo: &str,
    self_cgroup: &str,
    read: impl Fn(&Path) -> Option<String>,
    writable: impl Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    let mount =
        cgroup2_mount(mountinfo).ok_or("no cgroup v2 hierarchy is mounted (a cgroup v1 host)")?;
    let own = own_cgroup(self_cgroup)
        .ok_or("this process is in no cgroup v2 group (a cgroup v1 host)")?;
    let dir = mount.join(own.trim_start_matches('/'));
    let controllers = read(&dir.join("cgroup.controllers"))
        .ok_or_else(|| format!("cannot read {}/cgroup.controllers", dir.display()))?;
    let have: Vec<&str> = controllers.split_whitespace().collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !have.contains(c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the cgroup v2 group {} offers no {} controller (hybrid cgroup v1 host, or not \
             delegated: run tetherd in a systemd unit with Delegate=yes)",
            dir.display(),
            missing.join("/")
        ));
    }
    for file in ["cgroup.procs", "cgroup.subtree_control"] {
        if !writable(&dir.join(file)) {
            return Err(format!(
                "{} is not writable by tetherd (not delegated: run it in a systemd unit with \
                 Delegate=yes, or under `systemd-run --user --scope`)",
                dir.join(file).display()
            ));
        }
    }
    Ok(dir)
}

/// [`delegated_subtree`] of this process.
pub fn detect() -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    delegated_subtree(
        &mountinfo,
        &self_cgroup,
        |p| std::fs::read_to_string(p).ok(),
        |p| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok(),
    )
}

/// Limits of one sandbox's cgroup: memory (swap off, so the limit is real), processes, and
/// two CPUs' worth of time.
pub const MEMORY_MAX: u64 = 4 << 30;
pub const PIDS_MAX: u64 = 1024;
pub const CPU_MAX: &str = "200000 100000";

/// The delegated subtree, prepared for sandboxes: the daemon moved into a leaf of its own
/// (cgroup v2 allows controllers for children only in groups without processes), the
/// controllers enabled for the children, leftovers of an earlier daemon killed and removed.
#[derive(Debug)]
pub struct Subtree {
    dir: PathBuf,
    next: std::sync::atomic::AtomicU64,
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl Subtree {
    pub fn prepare(dir: PathBuf) -> Result<Subtree, String> {
        let leaf = dir.join("tetherd");
        std::fs::create_dir_all(&leaf)
            .map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
        write(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
        let controllers =
            std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        write(
            &dir.join("cgroup.subtree_control"),
            &enable_line(&controllers),
        )?;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if is_sandbox_group(&e.file_name().to_string_lossy()) {
                    SandboxCgroup { dir: e.path() }.remove();
                }
            }
        }
        Ok(Subtree {
            dir,
            next: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// A fresh cgroup for one sandbox, with the limits written.
    pub fn create(&self) -> Result<SandboxCgroup, String> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.dir.join(format!("sandbox-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let group = SandboxCgroup { dir };
        write(&group.dir.join("memory.max"), &MEMORY_MAX.to_string())?;
        write(&group.dir.join("pids.max"), &PIDS_MAX.to_string())?;
        // Optional: swap accounting and the cpu controller may be absent.
        let _ = write(&group.dir.join("memory.swap.max"), "0");
        let _ = write(&group.dir.join("cpu.max"), CPU_MAX);
        Ok(group)
    }
}

/// `+memory +pids` (and `+cpu` when offered) for `cgroup.subtree_control`.
pub fn enable_line(controllers: &str) -> String {
    let mut line = String::from("+memory +pids");
    if controllers.split_whitespace().any(|c| c == "cpu") {
        line.push_str(" +cpu");
    }
    line
}

fn is_sandbox_group(name: &str) -> bool {
    name.starts_with("sandbox-")
}

/// One sandbox's cgroup; removed (its processes killed first) on drop.
#[derive(Debug)]
pub struct SandboxCgroup {
    pub dir: PathBuf,
}

impl SandboxCgroup {
    /// How many processes the kernel's OOM killer killed in this group so far.
    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .map(|e| parse_oom_kills(&e))
            .unwrap_or(0)
    }

    fn remove(&self) {
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() {
            let _ = std::fs::write(kill, "1");
        }
        // rmdir fails while killed processes are still exiting; retry briefly.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        tracing::warn!(dir = %self.dir.display(), "could not remove a sandbox cgroup");
    }
}

impl Drop for SandboxCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The `oom_kill` count of a `memory.events` file.
pub fn parse_oom_kills(events: &str) -> u64 {
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// What the model is told when the OOM killer struck during a command.
pub fn oom_note() -> String {
    format!(
        "[killed: out of memory — the sandbox's memory limit is {} GiB (cgroup memory.max)]",
        MEMORY_MAX >> 30
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:22 / /sys rw,nosuid - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
    const UNIFIED: &str = "35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
    const V1_ONLY: &str = "33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    const SELF_DELEGATED: &str =
        "0::/user.slice/user-1000.slice/user@1000.service/app.slice/tetherd.service\n";

    fn files(controllers: &'static str) -> impl Fn(&Path) -> Option<String> {
        move |p: &Path| {
            p.ends_with("cgroup.controllers")
                .then(|| controllers.to_string())
        }
    }

    #[test]
    fn oom_kills_are_counted_from_memory_events() {
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(events), 1);
        assert_eq!(parse_oom_kills("low 0\n"), 0);
        assert!(oom_note().contains("out of memory"));
    }

    #[test]
    fn controllers_are_enabled_for_the_children_cpu_when_offered() {
        assert_eq!(enable_line("memory pids"), "+memory +pids");
        assert_eq!(
            enable_line("cpuset cpu io memory pids"),
            "+memory +pids +cpu"
        );
        assert!(is_sandbox_group("sandbox-12-3"));
        assert!(!is_sandbox_group("tetherd"));
    }

    // The whole lifecycle against a fake cgroup tree (plain files in a temp dir): the daemon
    // moves into its leaf, the controllers are enabled, a leftover sandbox group goes, a new
    // group gets its limits.
    #[test]
    fn a_prepared_subtree_creates_limited_sandbox_groups() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path().to_path_buf();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids").unwrap();
        std::fs::create_dir(root.join("sandbox-1-1")).unwrap();
        let sub = Subtree::prepare(root.clone()).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("tetherd/cgroup.procs")).unwrap(),
            std::process::id().to_string()
        );
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        assert!(!root.join("sandbox-1-1").exists(), "the leftover stays");
        let g = sub.create().unwrap();
        assert_eq!(
            std::fs::read_to_string(g.dir.join("memory.max")).unwrap(),
            MEMORY_MAX.to_string()
        );
        assert_eq!(
            std::fs::read_to_string(g.dir.join("pids.max")).unwrap(),
            "1024"
        );
        assert_eq!(
            std::fs::read_to_string(g.dir.join("cpu.max")).unwrap(),
            CPU_MAX
        );
        std::fs::write(g.dir.join("memory.events"), "oom_kill 2\n").unwrap();
        assert_eq!(g.oom_kills(), 2);
        // A real cgroup directory's files vanish with it; the fake's must go first.
        std::fs::remove_dir_all(&g.dir).unwrap();
    }

    #[test]
    fn finds_the_v2_mount_on_unified_and_hybrid_hosts() {
        assert_eq!(
            cgroup2_mount(UNIFIED),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            cgroup2_mount(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount(V1_ONLY), None);
        assert_eq!(own_cgroup("4:memory:/x\n0::/a/b\n"), Some("/a/b"));
    }

    #[test]
    fn a_delegated_writable_group_with_memory_and_pids_is_used() {
        let dir =
            delegated_subtree(UNIFIED, SELF_DELEGATED, files("cpu memory pids"), |_| true).unwrap();
        assert_eq!(
            dir,
            PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/tetherd.service"
            )
        );
    }

    #[test]
    fn a_hybrid_host_with_an_empty_v2_tree_is_refused() {
        // This machine's shape: v2 mounted at /unified, no controllers in it.
        let e = delegated_subtree(HYBRID, "4:memory:/x\n0::/\n", files(""), |_| true).unwrap_err();
        assert!(e.contains("no memory/pids controller"), "{e}");
        assert!(e.contains("/sys/fs/cgroup/unified"), "{e}");
    }

    #[test]
    fn v1_hosts_undelegated_and_read_only_groups_are_refused() {
        let e = delegated_subtree(V1_ONLY, "4:memory:/x\n", files(""), |_| true).unwrap_err();
        assert!(e.contains("cgroup v1"), "{e}");
        let e =
            delegated_subtree(UNIFIED, SELF_DELEGATED, files("cpu memory"), |_| true).unwrap_err();
        assert!(e.contains("no pids controller"), "{e}");
        let e = delegated_subtree(UNIFIED, SELF_DELEGATED, files("memory pids"), |p| {
            !p.ends_with("cgroup.subtree_control")
        })
        .unwrap_err();
        assert!(e.contains("Delegate=yes"), "{e}");
        let e = delegated_subtree(UNIFIED, SELF_DELEGATED, |_| None, |_| true).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
