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
