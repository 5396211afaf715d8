//! What the host offers for sandboxing and the level tether uses (fail closed, in levels):
//!
//! - `namespaces`: user, mount, pid, ipc, uts and net namespaces, Landlock on top where the
//!   kernel has it, seccomp, rlimits (and cgroup limits where the daemon may create cgroups:
//!   a delegated v2 subtree, or v1 for a root daemon, see [`crate::sandbox::cgroup`]);
//! - `landlock`: where user namespaces are unavailable and the daemon is not root, Landlock +
//!   seccomp + rlimits on the host's own tree (weaker, and said so);
//! - `unavailable`: every tool call fails with the host setting to change.
//!
//! Never unsandboxed unless an environment says `sandbox = "none"`.
//!
//! The facts are probed once by running `tetherd sandbox-probe` ([`probe_main`]), a throwaway
//! process that tries each feature for real (unshare + a mount, a Landlock ruleset, the
//! seccomp filter); [`choose`] turns them into the level and is unit-tested for each
//! combination.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;

use nix::mount::{MsFlags, mount};
use nix::sched::unshare;
use serde::{Deserialize, Serialize};
use tether_proto::method::{SandboxCheck, SandboxSupport};

use crate::sandbox::{self, Sandbox, explain_unshare_error};

/// The hidden subcommand that probes the host and prints [`HostFacts`] as JSON.
pub const PROBE_SUBCOMMAND: &str = "sandbox-probe";

/// What the host supports, as probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// The daemon runs as uid 0.
    pub root: bool,
    /// User namespaces (with a mount namespace we can mount in) work; Err says why not.
    pub user_namespaces: Result<(), String>,
    /// The Landlock ABI the kernel enforces; None without Landlock.
    pub landlock_abi: Option<u32>,
    /// The seccomp filter installs; Err says why not.
    pub seccomp: Result<(), String>,
    /// Where sandboxes get their cgroups; Err says why nowhere.
    pub cgroup: Result<crate::sandbox::cgroup::Host, String>,
}

/// The level tether uses on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    Namespaces,
    Landlock,
    /// Tools fail with this explanation.
    Unavailable(String),
}

/// The level for `facts`. The order matters: namespaces need seccomp (the deny-list is part
/// of the sandbox); the fallback needs Landlock, seccomp and a non-root daemon (root's
/// capabilities can't be dropped without a user namespace).
pub fn choose(facts: &HostFacts) -> Level {
    if let Err(e) = &facts.seccomp {
        return Level::Unavailable(format!(
            "the sandbox's seccomp filter cannot be installed ({e}); tether needs a kernel \
             with CONFIG_SECCOMP_FILTER"
        ));
    }
    let userns = match &facts.user_namespaces {
        Ok(()) => return Level::Namespaces,
        Err(e) => e,
    };
    if facts.landlock_abi.is_none() {
        return Level::Unavailable(format!(
            "{userns}; the fallback needs Landlock, which this kernel does not enforce \
             (CONFIG_SECURITY_LANDLOCK and `lsm=landlock,...` on the kernel command line)"
        ));
    }
    if facts.root {
        return Level::Unavailable(format!(
            "{userns}; the Landlock fallback cannot drop root's privileges, so run tetherd as \
             an unprivileged user or allow user namespaces"
        ));
    }
    Level::Landlock
}

/// The probed host: the facts, the report for `tether doctor` and the sandbox sessions use.
#[derive(Debug)]
pub struct HostSupport {
    pub facts: HostFacts,
    pub report: SandboxSupport,
    pub sandbox: Sandbox,
    /// The cgroups sandboxes get their limits in, when there are any.
    pub cgroups: Option<crate::sandbox::cgroup::Subtree>,
}

/// Set to `off` in tetherd's environment, sandboxes get no cgroups (to test, or to rule the
/// cgroups out when something misbehaves); `tether doctor` then says which limits lapse.
pub const CGROUPS_ENV: &str = "TETHER_SANDBOX_CGROUPS";

/// The prepared cgroups of this host, if any.
pub fn cgroups() -> Option<&'static crate::sandbox::cgroup::Subtree> {
    if cfg!(test) {
        return None;
    }
    this_host().cgroups.as_ref()
}

static THIS_HOST: OnceLock<HostSupport> = OnceLock::new();

impl Sandbox {
    /// The sandbox this process's sessions use: this very binary as the helper, at the level
    /// the host supports (probed once, see [`this_host`]).
    pub fn for_this_process() -> Self {
        if cfg!(test) {
            return Sandbox::None;
        }
        this_host().sandbox.clone()
    }
}

/// This host, probed on first use (a few milliseconds, once per daemon).
pub fn this_host() -> &'static HostSupport {
    THIS_HOST.get_or_init(|| {
        let helper = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
        let facts = probe(&helper);
        let level = choose(&facts);
        let sandbox = match &level {
            Level::Namespaces => Sandbox::Namespaces {
                helper: helper.clone(),
            },
            Level::Landlock => Sandbox::Landlock {
                helper: helper.clone(),
            },
            Level::Unavailable(reason) => Sandbox::Unavailable {
                reason: reason.clone(),
            },
        };
        let mut facts = facts;
        if std::env::var(CGROUPS_ENV).is_ok_and(|v| v == "off") {
            facts.cgroup = Err(format!("turned off ({CGROUPS_ENV}=off)"));
        }
        let cgroups = match (&facts.cgroup, &level) {
            (Ok(host), Level::Namespaces | Level::Landlock) => {
                match crate::sandbox::cgroup::Subtree::prepare(host.clone()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        facts.cgroup = Err(e);
                        None
                    }
                }
            }
            _ => None,
        };
        let report = report(&facts, &level);
        tracing::info!(level = %report.level, summary = %report.summary, "sandbox level");
        HostSupport {
            facts,
            report,
            sandbox,
            cgroups,
        }
    })
}

/// Runs `helper sandbox-probe`; a helper that can't run or answer leaves every feature
/// unavailable (so tools fail closed, with the reason).
pub fn probe(helper: &Path) -> HostFacts {
    let broken = |why: String| HostFacts {
        root: nix::unistd::geteuid().is_root(),
        user_namespaces: Err(why.clone()),
        landlock_abi: None,
        seccomp: Err(why.clone()),
        cgroup: Err(why),
    };
    let out = match std::process::Command::new(helper)
        .arg(PROBE_SUBCOMMAND)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            return broken(format!(
                "cannot run the sandbox probe {}: {e}",
                helper.display()
            ));
        }
    };
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        broken(format!(
            "the sandbox probe gave no answer ({e}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })
}

/// The doctor's view of `facts` at `level`.
pub fn report(facts: &HostFacts, level: &Level) -> SandboxSupport {
    let check = |name: &str, ok: bool, detail: String| SandboxCheck {
        name: name.into(),
        ok,
        detail,
    };
    let landlock = match facts.landlock_abi {
        Some(abi) => check("landlock", true, format!("ABI {abi}")),
        None => check(
            "landlock",
            false,
            "not enforced by this kernel (CONFIG_SECURITY_LANDLOCK, lsm=landlock)".into(),
        ),
    };
    let mut checks = vec![
        match &facts.user_namespaces {
            Ok(()) => check("userns", true, "user namespaces available".into()),
            Err(e) => check("userns", false, e.clone()),
        },
        landlock,
        match &facts.seccomp {
            Ok(()) => check("seccomp", true, "filter installs".into()),
            Err(e) => check("seccomp", false, e.clone()),
        },
        match &facts.cgroup {
            Ok(host) => check("cgroup", true, host.describe()),
            Err(e) => check(
                "cgroup",
                false,
                format!("{e}; limits fall back to rlimits, the /tmp cap and timeouts"),
            ),
        },
    ];
    if !matches!(level, Level::Unavailable(_)) {
        checks.extend(
            limits(facts)
                .into_iter()
                .map(|(name, ok, detail)| check(name, ok, detail)),
        );
    }
    let (name, summary) = match level {
        Level::Namespaces => (
            "namespaces",
            format!(
                "tools run in namespaces{} + seccomp + rlimits{}",
                facts
                    .landlock_abi
                    .map_or(String::new(), |abi| format!(" + Landlock ABI {abi}")),
                match &facts.cgroup {
                    Ok(crate::sandbox::cgroup::Host::V2(_)) => " + cgroup v2 limits",
                    Ok(crate::sandbox::cgroup::Host::V1 { .. }) => " + cgroup v1 limits",
                    Err(_) => "",
                }
            ),
        ),
        Level::Landlock => (
            "landlock",
            "WEAKER: no user namespaces, so tools run with Landlock + seccomp + rlimits on the \
             host's tree (no private /proc or network namespace, no environment packages or \
             limited networking; double-forked processes can outlive a timeout)"
                .to_string(),
        ),
        Level::Unavailable(reason) => ("unavailable", format!("tools will fail: {reason}")),
    };
    SandboxSupport {
        level: name.into(),
        summary,
        checks,
    }
}

/// What a sandbox on this host truly gets: no privileged files, and each limit, binding or not
/// (and why not).
fn limits(facts: &HostFacts) -> Vec<(&'static str, bool, String)> {
    use crate::sandbox::cgroup::{MEMORY_MAX, PIDS_MAX};
    use crate::sandbox::{DATA_LIMIT, NOFILE_LIMIT, NPROC_LIMIT, TMP_SIZE};
    let cgroup = facts.cgroup.as_ref();
    let kind = |h: &crate::sandbox::cgroup::Host| match h {
        crate::sandbox::cgroup::Host::V2(_) => "cgroup v2",
        crate::sandbox::cgroup::Host::V1 { .. } => "cgroup v1",
    };
    let setuid = (
        "setuid",
        facts.seccomp.is_ok(),
        "setuid/setgid/file capabilities: blocked (seccomp): chmod, open, mknod and mkdir \
         calls that set S_ISUID or S_ISGID fail with EPERM and setxattr with EOPNOTSUPP, so no \
         file the sandbox leaves in its workspace runs with privileges on the host"
            .to_string(),
    );
    let processes = match cgroup {
        Ok(host) => (
            true,
            format!("{PIDS_MAX} per session, binding ({} pids.max)", kind(host)),
        ),
        Err(_) if !facts.root => (
            true,
            format!("{NPROC_LIMIT} per session, binding (RLIMIT_NPROC; tetherd is not root)"),
        ),
        Err(why) => (
            false,
            format!(
                "NOT capped: tetherd runs as root, the kernel exempts host uid 0 (what the \
                 sandbox user maps to) from RLIMIT_NPROC, and there is no cgroup ({why}); a \
                 fork bomb can fill the host's process table. Fix: run tetherd as an \
                 unprivileged user, or in a systemd unit with Delegate=yes, or mount the cgroup \
                 v1 pids controller"
            ),
        ),
    };
    let memory = match cgroup {
        Ok(host) if host.has_memory() => (
            true,
            format!(
                "{} GiB per session, binding ({} memory limit)",
                MEMORY_MAX >> 30,
                kind(host)
            ),
        ),
        _ => (
            false,
            format!(
                "no per-session cap (no cgroup memory controller): {} GiB of data per process \
                 (RLIMIT_DATA) and the {TMP_SIZE} /tmp, but many processes together can use more",
                DATA_LIMIT >> 30
            ),
        ),
    };
    let cpu = match cgroup {
        Ok(host) if host.has_cpu() => (
            true,
            format!("2 CPUs per session, binding ({} cpu quota)", kind(host)),
        ),
        _ => (
            false,
            "not limited (no cgroup cpu controller); each bash call still ends at its timeout"
                .to_string(),
        ),
    };
    vec![
        setuid,
        ("processes", processes.0, processes.1),
        ("memory", memory.0, memory.1),
        (
            "open files",
            true,
            format!("{NOFILE_LIMIT} per process, binding (RLIMIT_NOFILE, for root too)"),
        ),
        ("cpu", cpu.0, cpu.1),
    ]
}

/// `tetherd sandbox-probe [--report]`: tries each feature in this throwaway process and prints
/// the [`HostFacts`] (with `--report`, the doctor's [`SandboxSupport`]) as JSON. Order
/// matters: the namespace test first (Landlock and seccomp would forbid its mount and
/// unshare), then Landlock, then seccomp.
pub fn probe_main(args: &[std::ffi::OsString]) -> ExitCode {
    let cgroup = crate::sandbox::cgroup::detect();
    let facts = HostFacts {
        root: nix::unistd::geteuid().is_root(),
        user_namespaces: probe_user_namespaces(),
        landlock_abi: crate::sandbox::landlock_rules::apply(
            &crate::sandbox::landlock_rules::Rules {
                paths: Vec::new(),
                deny_tcp: false,
            },
        )
        .ok()
        .and_then(|a| a.abi),
        seccomp: nix::sys::prctl::set_no_new_privs()
            .map_err(|e| format!("no_new_privs: {e}"))
            .and_then(|()| crate::sandbox::seccomp::apply(false)),
        cgroup,
    };
    let text = if args.iter().any(|a| a == "--report") {
        serde_json::to_string(&report(&facts, &choose(&facts)))
    } else {
        serde_json::to_string(&facts)
    }
    .unwrap_or_default();
    let _ = writeln!(std::io::stdout(), "{text}");
    ExitCode::SUCCESS
}

/// What the sandbox does first: unshare every namespace, map ids, mount a tmpfs.
fn probe_user_namespaces() -> Result<(), String> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    unshare(sandbox::namespaces()).map_err(explain_unshare_error)?;
    let restricted = |what: &str, e: String| {
        format!(
            "user namespaces are restricted: {what} failed ({e}). Fix: on Ubuntu 23.10+ \
             `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
        )
    };
    sandbox::map_ids(0, uid, gid).map_err(|e| restricted("mapping ids", e.0))?;
    sandbox::private_mount_tree()
        .and_then(|()| {
            mount(
                Some("tmpfs"),
                "/tmp",
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("size=64k"),
            )
        })
        .map_err(|e| restricted("mounting", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            root: false,
            user_namespaces: Ok(()),
            landlock_abi: Some(7),
            seccomp: Ok(()),
            cgroup: Err("hybrid".into()),
        }
    }

    const NO_USERNS: &str = "cannot create a user namespace: sysctl user.max_user_namespaces";

    #[test]
    fn user_namespaces_and_seccomp_give_the_full_level() {
        assert_eq!(choose(&facts()), Level::Namespaces);
        // Landlock is a bonus there, and root is fine (the shell runs as uid 1000 inside).
        let f = HostFacts {
            landlock_abi: None,
            root: true,
            ..facts()
        };
        assert_eq!(choose(&f), Level::Namespaces);
    }

    #[test]
    fn without_user_namespaces_an_unprivileged_daemon_falls_back_to_landlock() {
        let f = HostFacts {
            user_namespaces: Err(NO_USERNS.into()),
            ..facts()
        };
        assert_eq!(choose(&f), Level::Landlock);
        let r = report(&f, &choose(&f));
        assert_eq!(r.level, "landlock");
        assert!(r.summary.starts_with("WEAKER"), "{}", r.summary);
    }

    #[test]
    fn without_user_namespaces_root_or_no_landlock_fail_closed_naming_the_setting() {
        for f in [
            HostFacts {
                user_namespaces: Err(NO_USERNS.into()),
                root: true,
                ..facts()
            },
            HostFacts {
                user_namespaces: Err(NO_USERNS.into()),
                landlock_abi: None,
                ..facts()
            },
        ] {
            let Level::Unavailable(why) = choose(&f) else {
                panic!("{f:?} must be unavailable");
            };
            assert!(why.contains("user.max_user_namespaces"), "{why}");
            let r = report(&f, &choose(&f));
            assert_eq!(r.level, "unavailable");
            assert!(r.summary.contains("tools will fail"), "{}", r.summary);
        }
    }

    #[test]
    fn no_seccomp_is_unavailable_whatever_else_works() {
        let f = HostFacts {
            seccomp: Err("EINVAL".into()),
            ..facts()
        };
        let Level::Unavailable(why) = choose(&f) else {
            panic!("must be unavailable");
        };
        assert!(why.contains("CONFIG_SECCOMP_FILTER"), "{why}");
    }

    #[test]
    fn the_report_names_the_landlock_abi_and_why_cgroups_are_off() {
        let r = report(&facts(), &Level::Namespaces);
        assert_eq!(r.level, "namespaces");
        assert!(r.summary.contains("Landlock ABI 7"), "{}", r.summary);
        let cg = r.checks.iter().find(|c| c.name == "cgroup").unwrap();
        assert!(!cg.ok);
        assert!(cg.detail.contains("hybrid"), "{}", cg.detail);
        let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "userns",
                "landlock",
                "seccomp",
                "cgroup",
                "setuid",
                "processes",
                "memory",
                "open files",
                "cpu"
            ]
        );
    }

    fn check<'a>(r: &'a SandboxSupport, name: &str) -> &'a SandboxCheck {
        r.checks.iter().find(|c| c.name == name).unwrap()
    }

    // Issue 27: doctor says which limits truly bind. A root daemon without cgroups has no
    // process cap (the kernel exempts uid 0 from RLIMIT_NPROC); with cgroup v1 it has one.
    #[test]
    fn the_report_says_which_limits_bind_for_root_with_and_without_cgroups() {
        let root = HostFacts {
            root: true,
            ..facts()
        };
        let r = report(&root, &Level::Namespaces);
        let p = check(&r, "processes");
        assert!(!p.ok && p.detail.contains("NOT capped"), "{p:?}");
        assert!(!check(&r, "memory").ok);
        assert!(!check(&r, "cpu").ok);
        assert!(check(&r, "open files").ok);
        let s = check(&r, "setuid");
        assert!(
            s.ok && s
                .detail
                .starts_with("setuid/setgid/file capabilities: blocked (seccomp)")
        );

        let v1 = HostFacts {
            cgroup: Ok(crate::sandbox::cgroup::Host::V1 {
                pids: "/sys/fs/cgroup/pids".into(),
                memory: Some("/sys/fs/cgroup/memory/x".into()),
                cpu: None,
            }),
            ..root
        };
        let r = report(&v1, &Level::Namespaces);
        let p = check(&r, "processes");
        assert!(p.ok && p.detail.contains("cgroup v1 pids.max"), "{p:?}");
        assert!(check(&r, "memory").ok);
        assert!(!check(&r, "cpu").ok);
        assert!(check(&r, "cgroup").detail.starts_with("cgroup v1"));

        // Not root: RLIMIT_NPROC binds without any cgroup.
        let r = report(&facts(), &Level::Namespaces);
        assert!(check(&r, "processes").ok);
        // Nothing runs at the unavailable level, so no limits are listed.
        let r = report(&facts(), &Level::Unavailable("x".into()));
        assert!(r.checks.iter().all(|c| c.name != "processes"));
    }
}
