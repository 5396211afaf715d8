//! Per-sandbox cgroup limits (reference §A6): memory, processes and cpu for the sandbox's whole
//! tree, where the daemon may create cgroups, in one of two ways (tried in this order):
//!
//! - cgroup v2, where the daemon sits in a delegated, writable v2 subtree (a systemd unit with
//!   `Delegate=yes`, or `systemd-run --user --scope`): `<subtree>/sandbox-<pid>-<n>`;
//! - cgroup v1, where the `pids` controller is mounted and the daemon's group in it is
//!   writable (a root daemon on a cgroup v1 or hybrid host): one group per controller
//!   (`pids`, and `memory` and `cpu` where mounted), at
//!   `<hierarchy>/<daemon's group>/tether-<daemon pid>/sandbox-<pid>-<n>`. Each daemon owns its
//!   `tether-<pid>` directory, so daemons can share a host, and a starting daemon removes those
//!   of daemons that are gone.
//!
//! This matters most for a root daemon: the kernel exempts host uid 0 (what the sandbox user
//! maps to) from RLIMIT_NPROC, so a cgroup is the only process cap there. Elsewhere the
//! sandbox keeps its rlimits, the tmpfs cap and the per-call timeout, and `tether doctor` says
//! which limits bind and why.
//!
//! [`detect`] finds the groups from `/proc/self/mountinfo` and `/proc/self/cgroup`; the
//! decisions themselves ([`delegated_subtree`], [`v1_groups`]) are pure so each kind of host is
//! unit-tested.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// The mount point and root of the cgroup v1 hierarchy that has `controller`.
pub fn v1_mount<'a>(mountinfo: &'a str, controller: &str) -> Option<(PathBuf, &'a str)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        if right.next()? != "cgroup" {
            return None;
        }
        let options = right.nth(1)?;
        if !options.split(',').any(|o| o == controller) {
            return None;
        }
        let mut left = left.split_whitespace();
        let root = left.nth(3)?;
        Some((PathBuf::from(left.next()?), root))
    })
}

/// This process's group in the cgroup v1 hierarchy of `controller` (an `ID:a,b:/path` line of
/// `/proc/self/cgroup`).
pub fn own_v1_group<'a>(self_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    self_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == controller)
            .then_some(path)
    })
}

/// Where the sandboxes' cgroups go, as found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Host {
    /// The delegated cgroup v2 directory.
    V2(PathBuf),
    /// The daemon's own group in each cgroup v1 hierarchy: `pids` always, `memory` and `cpu`
    /// where mounted and writable.
    V1 {
        pids: PathBuf,
        memory: Option<PathBuf>,
        cpu: Option<PathBuf>,
    },
}

impl Host {
    pub fn has_memory(&self) -> bool {
        matches!(
            self,
            Host::V2(_)
                | Host::V1 {
                    memory: Some(_),
                    ..
                }
        )
    }

    /// A cpu limit is set (v2: where the subtree offers the controller).
    pub fn has_cpu(&self) -> bool {
        match self {
            Host::V2(dir) => std::fs::read_to_string(dir.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu")),
            Host::V1 { cpu, .. } => cpu.is_some(),
        }
    }

    /// One line for `tether doctor`.
    pub fn describe(&self) -> String {
        match self {
            Host::V2(dir) => format!("cgroup v2 delegated at {}", dir.display()),
            Host::V1 { pids, memory, cpu } => {
                let mut used = vec![format!("pids at {}", pids.display())];
                used.extend(memory.iter().map(|d| format!("memory at {}", d.display())));
                used.extend(cpu.iter().map(|d| format!("cpu at {}", d.display())));
                format!("cgroup v1 (no delegated cgroup v2): {}", used.join(", "))
            }
        }
    }
}

/// The cgroup v1 groups sandboxes can be put under: this process's group in the `pids`
/// hierarchy (required) and the `memory` and `cpu` ones (when there), each writable.
pub fn v1_groups(
    mountinfo: &str,
    self_cgroup: &str,
    writable: impl Fn(&Path) -> bool,
) -> Result<Host, String> {
    let group = |controller: &str| -> Result<PathBuf, String> {
        let (mount, root) = v1_mount(mountinfo, controller)
            .ok_or_else(|| format!("no cgroup v1 {controller} controller is mounted"))?;
        let own = own_v1_group(self_cgroup, controller)
            .ok_or_else(|| format!("this process is in no cgroup v1 {controller} group"))?;
        // Relative to the mount's root (a container may mount a subtree).
        let relative = Path::new(own)
            .strip_prefix(root)
            .unwrap_or(Path::new(own.trim_start_matches('/')));
        let dir = if relative.as_os_str().is_empty() {
            mount
        } else {
            mount.join(relative)
        };
        if !writable(&dir) {
            return Err(format!(
                "the cgroup v1 group {} is not writable by tetherd (only root may create \
                 cgroups there)",
                dir.display()
            ));
        }
        Ok(dir)
    };
    Ok(Host::V1 {
        pids: group("pids")?,
        memory: group("memory").ok(),
        cpu: group("cpu").ok(),
    })
}

/// The cgroups of this process's host: the delegated v2 subtree, else the v1 groups; Err
/// says why neither is usable.
pub fn detect() -> Result<Host, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let writable = |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok();
    delegated_subtree(
        &mountinfo,
        &self_cgroup,
        |p| std::fs::read_to_string(p).ok(),
        writable,
    )
    .map(Host::V2)
    .or_else(|v2| {
        v1_groups(&mountinfo, &self_cgroup, writable).map_err(|v1| format!("{v2}; and {v1}"))
    })
}

/// Limits of one sandbox's cgroup: memory (swap off, so the limit is real), processes (the
/// same 512 as the rlimit, threads included), and two CPUs' worth of time.
pub const MEMORY_MAX: u64 = 4 << 30;
pub const PIDS_MAX: u64 = 512;
pub const CPU_MAX: &str = "200000 100000";
/// [`CPU_MAX`] for cgroup v1: period and quota, in µs.
const CPU_PERIOD_US: &str = "100000";
const CPU_QUOTA_US: &str = "200000";

/// A hierarchy a sandbox's cgroup lives in, and so which limit files it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    V2,
    V1Pids,
    V1Memory,
    V1Cpu,
}

/// The groups prepared for sandboxes: for cgroup v2 the daemon moved into a leaf of its own
/// (v2 allows controllers for children only in groups without processes) and the controllers
/// enabled for the children; for v1 the daemon's `tether-<pid>` directory in each hierarchy.
/// Leftovers of an earlier daemon are killed and removed either way.
#[derive(Debug)]
pub struct Subtree {
    /// The parent of the sandboxes' groups in each hierarchy.
    parents: Vec<(Kind, PathBuf)>,
    /// What was prepared, for `tether doctor`.
    host: Host,
    next: std::sync::atomic::AtomicU64,
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl Subtree {
    pub fn prepare(host: Host) -> Result<Subtree, String> {
        let parents = match &host {
            Host::V2(dir) => {
                prepare_v2(dir)?;
                vec![(Kind::V2, dir.clone())]
            }
            Host::V1 { pids, memory, cpu } => {
                let mut parents = vec![(Kind::V1Pids, prepare_v1(pids)?)];
                for (kind, dir) in [(Kind::V1Memory, memory), (Kind::V1Cpu, cpu)] {
                    if let Some(dir) = dir {
                        parents.push((kind, prepare_v1(dir)?));
                    }
                }
                parents
            }
        };
        Ok(Subtree {
            parents,
            host,
            next: std::sync::atomic::AtomicU64::new(1),
        })
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// A fresh cgroup for one sandbox (one directory per hierarchy), with the limits written.
    pub fn create(&self) -> Result<SandboxCgroup, String> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("sandbox-{}-{n}", std::process::id());
        // Built up as it goes, so a failure half-way removes what was created.
        let mut group = SandboxCgroup { dirs: Vec::new() };
        for (kind, parent) in &self.parents {
            let dir = parent.join(&name);
            std::fs::create_dir(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            group.dirs.push((*kind, dir.clone()));
            match kind {
                Kind::V2 => {
                    write(&dir.join("memory.max"), &MEMORY_MAX.to_string())?;
                    write(&dir.join("pids.max"), &PIDS_MAX.to_string())?;
                    // Optional: swap accounting and the cpu controller may be absent.
                    let _ = write(&dir.join("memory.swap.max"), "0");
                    let _ = write(&dir.join("cpu.max"), CPU_MAX);
                }
                Kind::V1Pids => write(&dir.join("pids.max"), &PIDS_MAX.to_string())?,
                Kind::V1Memory => {
                    write(&dir.join("memory.limit_in_bytes"), &MEMORY_MAX.to_string())?;
                    // Memory + swap, where swap is accounted (swapaccount=1).
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &MEMORY_MAX.to_string())?;
                    }
                }
                Kind::V1Cpu => {
                    write(&dir.join("cpu.cfs_period_us"), CPU_PERIOD_US)?;
                    write(&dir.join("cpu.cfs_quota_us"), CPU_QUOTA_US)?;
                }
            }
        }
        Ok(group)
    }
}

/// cgroup v2: the daemon into its leaf, the controllers on for the children, leftover
/// sandbox groups removed.
fn prepare_v2(dir: &Path) -> Result<(), String> {
    let leaf = dir.join("tetherd");
    std::fs::create_dir_all(&leaf).map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
    write(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    write(
        &dir.join("cgroup.subtree_control"),
        &enable_line(&controllers),
    )?;
    for group in sandbox_groups(dir, Kind::V2) {
        group.remove();
    }
    Ok(())
}

/// cgroup v1: the groups of daemons that are gone removed (their sandboxes killed, though
/// they died with their daemon already), and this
/// daemon's `tether-<pid>` directory created under `own`, the daemon's group.
fn prepare_v1(own: &Path) -> Result<PathBuf, String> {
    if let Ok(entries) = std::fs::read_dir(own) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = daemon_dir_pid(&name.to_string_lossy()) else {
                continue;
            };
            if pid == std::process::id() || is_alive(pid) {
                continue;
            }
            for group in sandbox_groups(&e.path(), Kind::V1Pids) {
                group.remove();
            }
            let _ = std::fs::remove_dir(e.path());
        }
    }
    let mine = own.join(format!("tether-{}", std::process::id()));
    match std::fs::create_dir(&mine) {
        Ok(()) => Ok(mine),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(mine),
        Err(e) => Err(format!("cannot create {}: {e}", mine.display())),
    }
}

/// The sandbox groups under `dir` (their kind only decides how their processes are killed).
fn sandbox_groups(dir: &Path, kind: Kind) -> Vec<SandboxCgroup> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| is_sandbox_group(&e.file_name().to_string_lossy()))
        .map(|e| SandboxCgroup {
            dirs: vec![(kind, e.path())],
        })
        .collect()
}

/// The pid in a daemon's cgroup v1 directory name (`tether-<pid>`).
fn daemon_dir_pid(name: &str) -> Option<u32> {
    name.strip_prefix("tether-")?.parse().ok()
}

/// Whether process `pid` exists: maybe another daemon on this host, whose groups stay. (A
/// reused pid only keeps a dead daemon's emptied groups a while longer.)
fn is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
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

/// One sandbox's cgroup (a directory per hierarchy); removed (its processes killed first) on
/// drop.
#[derive(Debug)]
pub struct SandboxCgroup {
    dirs: Vec<(Kind, PathBuf)>,
}

impl SandboxCgroup {
    /// The directories stage 1 moves the sandbox into.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.clone()).collect()
    }

    /// How many processes the kernel's OOM killer killed in this group so far.
    pub fn oom_kills(&self) -> u64 {
        self.dirs
            .iter()
            .filter_map(|(kind, dir)| match kind {
                Kind::V2 => Some(dir.join("memory.events")),
                Kind::V1Memory => Some(dir.join("memory.oom_control")),
                Kind::V1Pids | Kind::V1Cpu => None,
            })
            .map(|f| {
                std::fs::read_to_string(f)
                    .map(|e| parse_oom_kills(&e))
                    .unwrap_or(0)
            })
            .sum()
    }

    fn remove(&self) {
        for (kind, dir) in &self.dirs {
            remove_group(*kind, dir);
        }
    }
}

/// Kills what is left in one group and removes it.
fn remove_group(kind: Kind, dir: &Path) {
    let kill = || {
        if kind == Kind::V2 {
            let kill = dir.join("cgroup.kill");
            if kill.exists() {
                let _ = std::fs::write(kill, "1");
            }
            return;
        }
        // cgroup v1 has no cgroup.kill: signal each member.
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    };
    kill();
    // rmdir fails while killed processes are still exiting; retry briefly.
    for attempt in 0..100 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        if attempt % 10 == 9 {
            kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    tracing::warn!(dir = %dir.display(), "could not remove a sandbox cgroup");
}

impl Drop for SandboxCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The `oom_kill` count of a v2 `memory.events` or v1 `memory.oom_control` file.
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
        "[killed: out of memory — the sandbox's memory limit is {} GiB (cgroup memory limit)]",
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
        assert_eq!(daemon_dir_pid("tether-42"), Some(42));
        assert_eq!(daemon_dir_pid("tetherd"), None);
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
        let sub = Subtree::prepare(Host::V2(root.clone())).unwrap();
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
        let [dir] = &g.dirs()[..] else {
            panic!("one v2 group: {g:?}")
        };
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.max")).unwrap(),
            MEMORY_MAX.to_string()
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("pids.max")).unwrap(),
            "512"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.max")).unwrap(),
            CPU_MAX
        );
        std::fs::write(dir.join("memory.events"), "oom_kill 2\n").unwrap();
        assert_eq!(g.oom_kills(), 2);
        // A real cgroup directory's files vanish with it; the fake's must go first.
        std::fs::remove_dir_all(dir).unwrap();
    }

    // cgroup v1 against a fake tree: the groups of a daemon that is gone go (with their
    // sandbox groups), this daemon gets `tether-<pid>`, a sandbox gets a group per hierarchy
    // with its limits.
    #[test]
    fn a_prepared_v1_tree_creates_limited_groups_per_hierarchy() {
        let tree = tempfile::tempdir().unwrap();
        let [pids, memory, cpu] = ["pids", "memory", "cpu"].map(|c| tree.path().join(c));
        for d in [&pids, &memory, &cpu] {
            std::fs::create_dir(d).unwrap();
        }
        // Beyond pid_max: surely no running process.
        let dead = pids.join("tether-4194399");
        std::fs::create_dir_all(dead.join("sandbox-4194399-3")).unwrap();
        let host = Host::V1 {
            pids: pids.clone(),
            memory: Some(memory.clone()),
            cpu: Some(cpu.clone()),
        };
        let sub = Subtree::prepare(host.clone()).unwrap();
        assert_eq!(sub.host(), &host);
        assert!(!dead.exists(), "the dead daemon's groups stay");
        let mine = format!("tether-{}", std::process::id());
        let g = sub.create().unwrap();
        let dirs = g.dirs();
        assert_eq!(dirs.len(), 3, "{dirs:?}");
        for (dir, parent) in dirs.iter().zip([&pids, &memory, &cpu]) {
            assert!(dir.starts_with(parent.join(&mine)), "{}", dir.display());
        }
        let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read(&dirs[0], "pids.max"), "512");
        assert_eq!(
            read(&dirs[1], "memory.limit_in_bytes"),
            MEMORY_MAX.to_string()
        );
        assert_eq!(read(&dirs[2], "cpu.cfs_quota_us"), "200000");
        std::fs::write(
            dirs[1].join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        assert_eq!(g.oom_kills(), 3);
        for d in &dirs {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    // This machine's shape: v1 controllers at /sys/fs/cgroup/<name>, the process in a nested
    // memory group; cpu mounted together with cpuacct elsewhere.
    #[test]
    fn v1_groups_are_found_per_controller_and_need_write_access() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
38 30 0:34 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
39 30 0:35 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let self_cgroup = "8:pids:/\n4:memory:/process_api/1ede\n2:cpu,cpuacct:/\n0::/\n";
        assert_eq!(
            v1_groups(mountinfo, self_cgroup, |_| true).unwrap(),
            Host::V1 {
                pids: "/sys/fs/cgroup/pids".into(),
                memory: Some("/sys/fs/cgroup/memory/process_api/1ede".into()),
                cpu: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
            }
        );
        // Memory not writable: pids alone still caps processes.
        let only_pids = v1_groups(mountinfo, self_cgroup, |p| {
            !p.starts_with("/sys/fs/cgroup/memory")
        });
        assert!(
            matches!(only_pids, Ok(Host::V1 { memory: None, .. })),
            "{only_pids:?}"
        );
        let e = v1_groups(mountinfo, self_cgroup, |_| false).unwrap_err();
        assert!(e.contains("not writable"), "{e}");
        let e = v1_groups(UNIFIED, "0::/\n", |_| true).unwrap_err();
        assert!(e.contains("no cgroup v1 pids controller"), "{e}");
        // A container that mounts its own subtree as the hierarchy's root.
        let nested = "38 30 0:34 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        let Host::V1 { pids, .. } =
            v1_groups(nested, "8:pids:/docker/abc/inner\n", |_| true).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(pids, PathBuf::from("/sys/fs/cgroup/pids/inner"));
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
