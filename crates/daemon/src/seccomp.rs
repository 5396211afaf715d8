//! The sandbox's seccomp deny-list (reference §A "seccomp"): the kernel interfaces a shell and
//! its programs never need and that widen the kernel's attack surface or let one process
//! reach into another. Denied calls fail with EPERM, so programs see an ordinary "not
//! permitted" instead of dying. `clone3` fails with ENOSYS (its flags sit behind a pointer,
//! so seccomp can't check them) and libc falls back to `clone`, whose flags it can check.

use std::collections::BTreeMap;

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Syscalls denied whatever their arguments.
const DENIED: &[(i64, &str)] = &[
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
];

fn arg(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

fn arch() -> Result<seccompiler::TargetArch, String> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|_| format!("no seccomp filter for {}", std::env::consts::ARCH))
}

/// The EPERM filter: [`DENIED`], nested user namespaces (`unshare`/`clone` with
/// CLONE_NEWUSER), netlink sockets other than NETLINK_ROUTE, and vsock; with `deny_inet` also
/// IPv4, IPv6 and packet sockets (the fallback sandbox has no network namespace to be empty).
fn eperm_filter(deny_inet: bool) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|(nr, _)| (*nr, Vec::new())).collect();
    let newuser = libc::CLONE_NEWUSER as u64;
    for nr in [libc::SYS_unshare, libc::SYS_clone] {
        rules.insert(
            nr,
            vec![rule(vec![arg(
                0,
                SeccompCmpOp::MaskedEq(newuser),
                newuser,
            )?])?],
        );
    }
    rules.insert(
        libc::SYS_socket,
        vec![
            rule(vec![
                arg(0, SeccompCmpOp::Eq, libc::AF_NETLINK as u64)?,
                arg(2, SeccompCmpOp::Ne, libc::NETLINK_ROUTE as u64)?,
            ])?,
            rule(vec![arg(0, SeccompCmpOp::Eq, libc::AF_VSOCK as u64)?])?,
        ],
    );
    if deny_inet {
        let socket = rules.entry(libc::SYS_socket).or_default();
        for family in [libc::AF_INET, libc::AF_INET6, libc::AF_PACKET] {
            socket.push(rule(vec![arg(0, SeccompCmpOp::Eq, family as u64)?])?);
        }
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch()?,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

fn enosys_filter() -> Result<BpfProgram, String> {
    let rules = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// Installs both filters on this thread (inherited by everything it execs). Needs
/// no_new_privs, which the sandbox sets first.
pub fn apply(deny_inet: bool) -> Result<(), String> {
    for prog in [eperm_filter(deny_inet)?, enosys_filter()?] {
        seccompiler::apply_filter(&prog)
            .map_err(|e| format!("cannot install the seccomp filter: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_for_this_machine() {
        let eperm = eperm_filter(false).unwrap();
        assert!(eperm_filter(true).unwrap().len() > eperm.len());
        let enosys = enosys_filter().unwrap();
        assert!(
            eperm.len() > DENIED.len(),
            "one check per denied syscall at least"
        );
        assert!(!enosys.is_empty());
    }
}
