//! The sandbox's seccomp filters (reference §A "seccomp"), installed at every sandbox level
//! (namespaces and the Landlock fallback) right before the shell is executed:
//!
//! - a deny-list of kernel interfaces a shell and its programs never need and that widen the
//!   kernel's attack surface or let one process reach into another. Denied calls fail with
//!   EPERM, so programs see an ordinary "not permitted" instead of dying;
//! - no privileged files (issue 27): the workspace is the host's own directory, and a file the
//!   shell leaves there with S_ISUID, S_ISGID or a file capability would run with the daemon
//!   user's privileges (root's, for a root daemon) for anyone on the host. So every call that
//!   sets a mode fails with EPERM when the mode has S_ISUID or S_ISGID: chmod, fchmod,
//!   fchmodat, fchmodat2, open/openat/creat with O_CREAT or O_TMPFILE, mknod/mknodat, and
//!   mkdir/mkdirat with S_ISUID (a directory's setgid bit only sets new files' group, so
//!   `mkdir` may set it; but `chmod g+s DIR` fails like any chmod with S_ISGID: seccomp sees
//!   the mode, not the file). The setxattr calls fail whatever their name (it sits behind a
//!   pointer, so `security.capability` can't be told from `user.*`), with EOPNOTSUPP: the
//!   answer of a filesystem without xattrs, which `cp -a`, `tar`, `rsync` and Python's
//!   `shutil.copystat` skip quietly, where EPERM would be reported as a failure. chown
//!   can't add these bits (the kernel clears them), and no setuid file from the host can be
//!   linked or renamed in (the host's directories are other mounts: EXDEV);
//! - `clone3` and `openat2` fail with ENOSYS: their flags and mode sit behind a pointer, so
//!   seccomp can't check them, and libc falls back to `clone` and `openat`, which it can.
//!
//! Other syscall ABIs can't bypass the filters: seccompiler's programs kill a process that
//! calls in with another architecture (i386's `int 0x80` from a 64-bit process), and on
//! x86_64 the x32 ABI's numbers (bit 30 set, same architecture) fail with ENOSYS.

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

// Syscalls newer than some libc versions know; since Linux 5.x new syscalls have one number
// on every architecture.
const SYS_OPENAT2: i64 = 437;
const SYS_FCHMODAT2: i64 = 452;
const SYS_SETXATTRAT: i64 = 463;

const S_ISUID: u64 = libc::S_ISUID as u64;
const S_ISGID: u64 = libc::S_ISGID as u64;

/// Syscalls that set a mode, with the index of their mode argument: refused with S_ISUID or
/// S_ISGID in it.
fn mode_setters() -> Vec<(i64, u8)> {
    let mut out = vec![
        (libc::SYS_fchmod, 1),
        (libc::SYS_fchmodat, 2),
        (SYS_FCHMODAT2, 2),
        (libc::SYS_mknodat, 2),
    ];
    #[cfg(target_arch = "x86_64")]
    out.extend([
        (libc::SYS_chmod, 1),
        (libc::SYS_mknod, 1),
        (libc::SYS_creat, 1),
    ]);
    out
}

/// Syscalls that create a file, with the index of their flags argument (the mode follows it):
/// refused with O_CREAT or O_TMPFILE and S_ISUID or S_ISGID in the mode.
fn openers() -> Vec<(i64, u8)> {
    let mut out = vec![(libc::SYS_openat, 2)];
    #[cfg(target_arch = "x86_64")]
    out.push((libc::SYS_open, 1));
    out
}

/// `mkdir`s, with the index of their mode argument: refused with S_ISUID (setgid is fine on
/// a directory).
fn mkdirs() -> Vec<(i64, u8)> {
    let mut out = vec![(libc::SYS_mkdirat, 2)];
    #[cfg(target_arch = "x86_64")]
    out.push((libc::SYS_mkdir, 1));
    out
}

/// The xattr setters: refused with EOPNOTSUPP whatever the name.
fn xattr_setters() -> Vec<i64> {
    vec![
        libc::SYS_setxattr,
        libc::SYS_lsetxattr,
        libc::SYS_fsetxattr,
        SYS_SETXATTRAT,
    ]
}

fn arg(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
}

/// `arg & bits == bits`.
fn has(index: u8, bits: u64) -> Result<SeccompCondition, String> {
    arg(index, SeccompCmpOp::MaskedEq(bits), bits)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

fn arch() -> Result<seccompiler::TargetArch, String> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|_| format!("no seccomp filter for {}", std::env::consts::ARCH))
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch()?,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// The EPERM filter: [`DENIED`], nested user namespaces (`unshare`/`clone` with
/// CLONE_NEWUSER), netlink sockets other than NETLINK_ROUTE, and vsock; with `deny_inet` also
/// IPv4, IPv6 and packet sockets (the fallback sandbox has no network namespace to be empty);
/// and setuid/setgid modes.
fn eperm_filter(deny_inet: bool) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|(nr, _)| (*nr, Vec::new())).collect();
    let newuser = libc::CLONE_NEWUSER as u64;
    for nr in [libc::SYS_unshare, libc::SYS_clone] {
        rules.insert(nr, vec![rule(vec![has(0, newuser)?])?]);
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
    for (nr, mode) in mode_setters() {
        rules.insert(
            nr,
            vec![
                rule(vec![has(mode, S_ISUID)?])?,
                rule(vec![has(mode, S_ISGID)?])?,
            ],
        );
    }
    let o_tmpfile = libc::O_TMPFILE as u64;
    let o_creat = libc::O_CREAT as u64;
    for (nr, flags) in openers() {
        let mut any = Vec::new();
        for creating in [o_creat, o_tmpfile] {
            for bit in [S_ISUID, S_ISGID] {
                any.push(rule(vec![has(flags, creating)?, has(flags + 1, bit)?])?);
            }
        }
        rules.insert(nr, any);
    }
    for (nr, mode) in mkdirs() {
        rules.insert(nr, vec![rule(vec![has(mode, S_ISUID)?])?]);
    }
    compile(rules, libc::EPERM)
}

/// The EOPNOTSUPP filter: every xattr setter.
fn eopnotsupp_filter() -> Result<BpfProgram, String> {
    let rules = xattr_setters()
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect();
    compile(rules, libc::EOPNOTSUPP)
}

/// The ENOSYS filter: `clone3`, `openat2`, and (x86_64) the x32 ABI.
fn enosys_filter() -> Result<BpfProgram, String> {
    let rules = [(libc::SYS_clone3, Vec::new()), (SYS_OPENAT2, Vec::new())]
        .into_iter()
        .collect();
    let program = compile(rules, libc::ENOSYS)?;
    Ok(deny_x32(program))
}

/// Prefixes `program` with a check that fails x32 calls with ENOSYS. x32 shares x86_64's
/// audit architecture, so seccompiler's architecture check lets it through, and its syscall
/// numbers (`0x40000000 | n`) match no rule: without this, `chmod` called as x32 syscall 90
/// would pass on a kernel built with CONFIG_X86_X32_ABI.
#[cfg(target_arch = "x86_64")]
fn deny_x32(program: BpfProgram) -> BpfProgram {
    use seccompiler::sock_filter;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // Classic BPF: load the syscall number (offset 0 of seccomp_data); jump if >= the x32 bit.
    // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JGE | BPF_K, BPF_RET | BPF_K.
    const LD_W_ABS: u16 = 0x20;
    const JMP_JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    let mut out = vec![
        sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        sock_filter {
            code: JMP_JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
    ];
    out.extend(program);
    out
}

#[cfg(not(target_arch = "x86_64"))]
fn deny_x32(program: BpfProgram) -> BpfProgram {
    program
}

/// Installs the filters on this thread (inherited by everything it execs). Needs
/// no_new_privs, which the sandbox sets first.
pub fn apply(deny_inet: bool) -> Result<(), String> {
    for prog in [
        eperm_filter(deny_inet)?,
        eopnotsupp_filter()?,
        enosys_filter()?,
    ] {
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
        assert!(!eopnotsupp_filter().unwrap().is_empty());
    }

    // The filters on a thread of their own (seccomp and no_new_privs are per thread, and the
    // thread's end takes them along): setuid/setgid modes fail by every route, ordinary modes
    // and setgid directories still work. (xattrs: the e2e test, nix has no setxattr.)
    #[test]
    fn setuid_and_setgid_modes_are_refused_by_every_route() {
        use nix::errno::Errno;
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::{Mode, fchmod, stat};
        use nix::unistd::mkdir;
        use std::os::unix::fs::MetadataExt;

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || {
            nix::sys::prctl::set_no_new_privs().unwrap();
            apply(false).unwrap();
            let f = d.join("f");
            let fd = open(
                &f,
                OFlag::O_CREAT | OFlag::O_WRONLY,
                Mode::from_bits_truncate(0o644),
            )
            .unwrap();
            let suid = Mode::from_bits_truncate(0o4755);
            let sgid = Mode::from_bits_truncate(0o2755);
            assert_eq!(fchmod(&fd, suid), Err(Errno::EPERM));
            assert_eq!(fchmod(&fd, sgid), Err(Errno::EPERM));
            assert_eq!(fchmod(&fd, Mode::from_bits_truncate(0o755)), Ok(()));
            assert_eq!(
                std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o4755))
                    .map_err(|e| e.raw_os_error()),
                Err(Some(libc::EPERM))
            );
            for flags in [OFlag::O_CREAT, OFlag::O_TMPFILE] {
                let target = if flags == OFlag::O_CREAT {
                    d.join("g")
                } else {
                    d.clone()
                };
                assert_eq!(
                    open(&target, flags | OFlag::O_WRONLY, suid).err(),
                    Some(Errno::EPERM),
                    "{flags:?}"
                );
            }
            // Without O_CREAT the mode is ignored, so it is not checked either.
            assert!(open(&f, OFlag::O_RDONLY, suid).is_ok());
            assert_eq!(
                nix::sys::stat::mknod(&d.join("m"), nix::sys::stat::SFlag::S_IFREG, suid, 0),
                Err(Errno::EPERM)
            );
            assert_eq!(
                mkdir(&d.join("su"), Mode::from_bits_truncate(0o4755)),
                Err(Errno::EPERM)
            );
            assert_eq!(mkdir(&d.join("sg"), sgid), Ok(()));
            assert!(stat(&d.join("sg")).is_ok());
            let meta = std::fs::metadata(&f).unwrap();
            assert_eq!(meta.mode() & 0o6000, 0);
        })
        .join()
        .unwrap();
    }
}
