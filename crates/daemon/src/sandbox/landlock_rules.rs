//! Landlock, the sandbox's second filesystem layer (reference §A "Landlock"): whatever the
//! mount tree lets through, the kernel still refuses writes outside the writable roots.
//!
//! With namespaces ([`namespace_rules`]) the mount tree already hides the host, so the layer
//! is defence in depth: everything visible is readable, only the workspace, `/tmp`, `/dev/shm`
//! and the character devices are writable. Without user namespaces ([`host_rules`]) Landlock
//! *is* the filesystem sandbox: the shell sees the host's tree but may read only the system
//! directories and a few `/etc` files, and write only the workspace and its private temp dir.
//!
//! Best effort: the rights of [`TARGET`] are asked for and an older kernel enforces the subset
//! it knows; [`Applied`] says which ABI that was. Where Landlock is the only filesystem layer
//! the caller demands it be enforced.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, LandlockStatus, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, path_beneath_rules,
};
use tether_proto::environment::LAYER_MOUNT;

/// The newest Landlock ABI whose rights tether asks for (v6: scoped signals and abstract
/// Unix sockets; v7 only adds audit logging).
const TARGET: ABI = ABI::V6;

/// What the shell may do beneath a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Read files, list directories, execute.
    Read,
    /// Everything, including creating, removing and truncating.
    Write,
}

/// A sandbox's Landlock rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub paths: Vec<(PathBuf, Grant)>,
    /// Refuse TCP bind and connect (ABI v4+): the no-network fallback's second lock, behind
    /// seccomp's refusal of inet sockets.
    pub deny_tcp: bool,
}

/// Character devices a shell writes to (`> /dev/null`) or reads from.
const DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/random",
    "/dev/urandom",
];

/// Rules inside the namespace sandbox, after the pivot into its own root.
pub fn namespace_rules(workspace: &Path, layer_writable: bool) -> Rules {
    namespace_rules_with(workspace, layer_writable, &[])
}

/// [`namespace_rules`], plus `writable` (paths inside the sandbox: read-write mounts of
/// memory stores). A read-only mount needs no rule: `/` is read-only already.
pub fn namespace_rules_with(workspace: &Path, layer_writable: bool, writable: &[PathBuf]) -> Rules {
    let mut paths = vec![
        (PathBuf::from("/"), Grant::Read),
        (workspace.to_path_buf(), Grant::Write),
        (PathBuf::from("/tmp"), Grant::Write),
        (PathBuf::from("/dev/shm"), Grant::Write),
    ];
    paths.extend(DEVICES.iter().map(|d| (PathBuf::from(d), Grant::Write)));
    if layer_writable {
        paths.push((PathBuf::from(LAYER_MOUNT), Grant::Write));
    }
    paths.extend(writable.iter().map(|p| (p.clone(), Grant::Write)));
    Rules {
        paths,
        deny_tcp: false,
    }
}

/// Host paths the fallback sandbox may read: programs, libraries, certificates, name service.
/// Home directories, the daemon's data dir, other workspaces and the rest of `/etc` stay
/// unreadable.
const HOST_READABLE: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/proc",
];

/// Rules of the fallback sandbox on the host's own tree (no mount namespace): `tmp` is the
/// sandbox's private temp dir.
pub fn host_rules(workspace: &Path, tmp: &Path, network: bool) -> Rules {
    let mut paths: Vec<(PathBuf, Grant)> = HOST_READABLE
        .iter()
        .map(|p| (PathBuf::from(p), Grant::Read))
        .collect();
    // Not /dev/tty: without a new session that could be the daemon's terminal (TIOCSTI).
    paths.extend(
        DEVICES
            .iter()
            .filter(|d| **d != "/dev/tty")
            .map(|d| (PathBuf::from(d), Grant::Write)),
    );
    paths.push((workspace.to_path_buf(), Grant::Write));
    paths.push((tmp.to_path_buf(), Grant::Write));
    Rules {
        paths,
        deny_tcp: !network,
    }
}

/// What the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The Landlock ABI the rules were applied with; None when the kernel has no Landlock.
    pub abi: Option<u32>,
    /// Every requested right is enforced (false: a subset, on an older kernel, or none).
    pub full: bool,
}

/// The ABI of a Landlock status, as a number (None: unsupported).
fn abi_number(status: LandlockStatus) -> Option<u32> {
    match status {
        LandlockStatus::Available { effective_abi, .. } => effective_abi.to_string().parse().ok(),
        LandlockStatus::NotEnabled | LandlockStatus::NotImplemented => None,
    }
}

/// Restricts this thread (and what it execs) to `rules`. Paths that don't exist are skipped.
pub fn apply(rules: &Rules) -> Result<Applied, String> {
    let err = |e: landlock::RulesetError| format!("cannot apply the Landlock rules: {e}");
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET))
        .map_err(err)?
        .scope(Scope::from_all(TARGET))
        .map_err(err)?;
    if rules.deny_tcp {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(TARGET))
            .map_err(err)?;
    }
    let mut created = ruleset.create().map_err(err)?;
    for (grant, access) in [
        (Grant::Read, AccessFs::from_read(TARGET)),
        (Grant::Write, AccessFs::from_all(TARGET)),
    ] {
        let paths = rules
            .paths
            .iter()
            .filter(|(_, g)| *g == grant)
            .map(|(p, _)| p);
        created = created
            .add_rules(path_beneath_rules(paths, access))
            .map_err(err)?;
    }
    let status = created.restrict_self().map_err(err)?;
    Ok(Applied {
        abi: abi_number(status.landlock),
        full: status.ruleset == RulesetStatus::FullyEnforced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant_of(rules: &Rules, path: &str) -> Option<Grant> {
        rules
            .paths
            .iter()
            .find(|(p, _)| p == Path::new(path))
            .map(|(_, g)| *g)
    }

    #[test]
    fn namespace_rules_write_only_the_workspace_tmp_and_devices() {
        let r = namespace_rules(Path::new("/w/s"), false);
        assert_eq!(grant_of(&r, "/"), Some(Grant::Read));
        assert_eq!(grant_of(&r, "/w/s"), Some(Grant::Write));
        assert_eq!(grant_of(&r, "/tmp"), Some(Grant::Write));
        assert_eq!(grant_of(&r, "/dev/null"), Some(Grant::Write));
        assert_eq!(grant_of(&r, LAYER_MOUNT), None);
        let writable: Vec<_> = r.paths.iter().filter(|(_, g)| *g == Grant::Write).collect();
        assert_eq!(writable.len(), 3 + DEVICES.len());
        let build = namespace_rules(Path::new("/w/s"), true);
        assert_eq!(grant_of(&build, LAYER_MOUNT), Some(Grant::Write));
        let mem = namespace_rules_with(Path::new("/w/s"), false, &["/mnt/memory/a".into()]);
        assert_eq!(grant_of(&mem, "/mnt/memory/a"), Some(Grant::Write));
        // A read-only store gets no grant of its own: `/`'s read covers it.
        assert_eq!(grant_of(&mem, "/mnt/memory/b"), None);
    }

    #[test]
    fn host_rules_keep_home_and_secrets_out_of_reach() {
        let r = host_rules(Path::new("/w/s"), Path::new("/tmp/t"), false);
        assert!(r.deny_tcp);
        assert_eq!(grant_of(&r, "/usr"), Some(Grant::Read));
        assert_eq!(grant_of(&r, "/tmp/t"), Some(Grant::Write));
        assert_eq!(grant_of(&r, "/w/s"), Some(Grant::Write));
        for hidden in [
            "/",
            "/etc",
            "/root",
            "/home",
            "/tmp",
            "/etc/shadow",
            "/var",
            "/dev/tty",
        ] {
            assert_eq!(grant_of(&r, hidden), None, "{hidden}");
        }
        assert!(!host_rules(Path::new("/w"), Path::new("/t"), true).deny_tcp);
    }
}
