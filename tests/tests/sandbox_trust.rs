//! Issue 27, the sandbox's share: what sandboxed code leaves on the host and how much of the
//! host it can take. An adversarial agent tries every route to a setuid, setgid or
//! file-capability file in its workspace (judged from the host), a fork bomb (the process
//! limit must bind even for a root daemon on a cgroup v1 host, and the daemon must stay
//! responsive), and the shell's PATH must name only what is mounted in the sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;
use tether_e2e::{Reply, TestEnv, pids_matching, tool_results, wait_until};
use tether_mock_llm::Script;
use tether_proto::ToolStatus;

/// A session whose model runs one bash `command` with `timeout_ms` (0 = default).
async fn env_running(command: &str, timeout_ms: u64) -> TestEnv {
    TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": command, "timeout_ms": timeout_ms}),
        ),
        Reply::text("done"),
    ]))
    .await
}

/// Runs session `name` to the end in `dir`; the bash call's status and output.
fn run_in(env: &TestEnv, dir: &Path, name: &str) -> (ToolStatus, String) {
    env.run(&["run", "go", "--dir", dir.to_str().unwrap(), "--name", name]);
    tool_results(&env.events(name))
        .into_iter()
        .next()
        .expect("the bash call has a result")
}

/// The routes to a privileged file that need more than a shell one-liner, run by python3 in
/// the sandbox: os.chmod, open(O_CREAT) and O_TMPFILE with setuid modes, mknod of a setuid
/// regular file, fchmodat2 (452), the setxattr family (security.capability) including
/// setxattrat (463), a tar member with the setuid bit, and chmod through the x32 and i386
/// syscall ABIs (`int 0x80` from this 64-bit process), each in a child so one that dies
/// (SIGSYS) doesn't stop the rest.
const ATTACKS_PY: &str = r##"
import ctypes, os, struct, subprocess, sys, tarfile, io
libc = ctypes.CDLL(None, use_errno=True)
# A file capability granting CAP_SETUID (VFS_CAP_REVISION_2, effective).
CAP = struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0)

def attempt(name, code):
    r = subprocess.run([sys.executable, "-c", "import ctypes, os, struct\n" + code])
    print(f"{name} rc={r.returncode}", flush=True)

attempt("os.chmod", "open('pc', 'w').close(); os.chmod('pc', 0o6755)")
attempt("open-creat", "os.close(os.open('o', os.O_CREAT | os.O_WRONLY, 0o4755))")
attempt("open-creat-sgid", "os.close(os.open('og', os.O_CREAT | os.O_WRONLY, 0o2755))")
attempt("o-tmpfile", "fd = os.open('.', os.O_TMPFILE | os.O_WRONLY, 0o4755); "
        "os.link(f'/proc/self/fd/{fd}', 'tmpf', follow_symlinks=True)")
attempt("mknod-reg", "os.mknod('m', 0o104755)")
attempt("fchmodat2", "open('f2', 'w').close(); libc = ctypes.CDLL(None, use_errno=True); "
        "r = libc.syscall(452, -100, b'f2', 0o4755, 0); print('fchmodat2', r, ctypes.get_errno())")
attempt("setxattr", f"open('cap', 'w').close(); os.setxattr('cap', 'security.capability', {CAP!r})")
attempt("setxattr-user", "open('ux', 'w').close(); os.setxattr('ux', 'user.x', b'1')")
attempt("setxattrat", "open('cap2', 'w').close(); libc = ctypes.CDLL(None, use_errno=True); "
        f"v = {CAP!r}; "
        "args = struct.pack('<QQII', ctypes.cast(ctypes.c_char_p(v), ctypes.c_void_p).value, len(v), 0, 0); "
        "r = libc.syscall(463, -100, b'cap2', 0, b'security.capability', args, len(args)); "
        "print('setxattrat', r, ctypes.get_errno())")
# x32 chmod (0x40000000 | 90): same audit architecture as x86_64, other numbers.
attempt("x32-chmod", "open('x32', 'w').close(); libc = ctypes.CDLL(None, use_errno=True); "
        "r = libc.syscall(0x40000000 | 90, b'x32', 0o4755); print('x32', r, ctypes.get_errno())")
# i386 chmod (nr 15) via int 0x80, from code in a page below 4 GiB (MAP_32BIT).
attempt("int80-chmod", r'''
import mmap
open('x86', 'w').close()
m = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40,
              prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
assert addr < 2**32, hex(addr)
m[256:260] = b'x86\0'
code = (b'\x53' + b'\xb8' + struct.pack('<I', 15) + b'\xbb' + struct.pack('<I', addr + 256)
        + b'\xb9' + struct.pack('<I', 0o4755) + b'\xcd\x80' + b'\x5b\xc3')
m[0:len(code)] = code
print('int80 rc', ctypes.CFUNCTYPE(ctypes.c_int)(addr)(), flush=True)
''')
# An archive with a setuid and a setgid member, for tar to extract.
with tarfile.open("evil.tar", "w") as t:
    for name, mode in [("tsb", 0o4755), ("tsg", 0o2755)]:
        info = tarfile.TarInfo(name)
        info.mode = mode
        data = b"#!/bin/sh\nid\n"
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
print("attacks done", flush=True)
"##;

/// Regular (non-directory) files under `dir` that carry S_ISUID or S_ISGID, and any file that
/// carries a `security.capability` xattr, as the host sees them.
fn privileged_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.mode() & 0o6000 != 0 {
                found.push(format!("{} mode {:o}", e.path().display(), meta.mode()));
            }
        }
    }
    // xattrs: read with the host's python3 (no xattr call in the test's dependencies).
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import os, sys\n\
             for root, dirs, files in os.walk(sys.argv[1]):\n\
             \x20   for n in dirs + files:\n\
             \x20       p = os.path.join(root, n)\n\
             \x20       if 'security.capability' in os.listxattr(p, follow_symlinks=False):\n\
             \x20           print(p, 'has security.capability')\n",
        )
        .arg(dir)
        .output()
        .expect("python3 on the host");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    found.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from),
    );
    found
}

// Issue 27 item 1: no route gives a setuid/setgid/file-capability file on the host.
#[tokio::test(flavor = "multi_thread")]
async fn sandboxed_code_leaves_no_setuid_setgid_or_capability_file_on_the_host() {
    let setuid_host_file = ["/usr/bin/passwd", "/usr/bin/chsh", "/usr/bin/su"]
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o4000 != 0))
        .unwrap_or("/bin/true");
    let command = format!(
        "cp /bin/bash ./sb; chmod 4755 sb; chmod g+s sb; \
         install -m 4755 /bin/true ./i; \
         python3 -c 'import os; os.chmod(\"sb\", 0o6755); fd=os.open(\"o1\", os.O_CREAT|os.O_WRONLY, 0o4755)'; \
         python3 attacks.py; \
         mkdir x1 && tar -xf evil.tar -C x1; mkdir x2 && tar -xpf evil.tar -C x2; \
         cp -p {setuid_host_file} ./copied; cp -a {setuid_host_file} ./copied-a; \
         mkdir -m 4755 dsu; mkdir -m 2775 dsg && touch dsg/inside; \
         ls -la; echo ALL-TRIED"
    );
    let env = env_running(&command, 0).await;
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("attacks.py"), ATTACKS_PY).unwrap();
    let (_, out) = run_in(&env, ws.path(), "suid");
    assert!(out.contains("attacks done"), "{out}");
    assert!(out.contains("ALL-TRIED"), "{out}");
    // The attempts ran (the files exist where the step creates them apart from setting the
    // mode), they just carry no privilege.
    for f in [
        "sb", "i", "pc", "x1/tsb", "x2/tsb", "copied", "copied-a", "x86",
    ] {
        assert!(ws.path().join(f).exists(), "{f} missing: {out}");
    }
    let found = privileged_files(ws.path());
    assert!(
        found.is_empty(),
        "privileged files on the host: {found:#?}\n{out}"
    );
    eprintln!("{out}");
    // The setgid directory is fine (setgid on directories only sets the group of new files).
    let dsg = std::fs::metadata(ws.path().join("dsg")).unwrap();
    assert!(dsg.is_dir());
}

/// Processes counted in the sandbox's own /proc while a bounded fork loop holds as many as it
/// can (perl: fork fails at once at the limit, where bash would retry for seconds).
const FORK_PROBE: &str = "perl -e 'my @kids; for (1..1500) { my $p = fork(); \
    if (!defined $p) { print \"fork-failed: $!\\n\"; last } \
    if ($p == 0) { sleep 300; exit 0 } push @kids, $p } \
    opendir(my $d, \"/proc\"); my $n = grep { /^[0-9]+$/ } readdir($d); \
    print \"started=\", scalar(@kids), \" procs=$n\\n\"; kill 9, @kids; waitpid($_, 0) for @kids;'";

fn number(out: &str, key: &str) -> usize {
    out.split(|c: char| c.is_whitespace())
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in: {out}"))
        .parse()
        .unwrap()
}

// Issue 27 item 3: a root daemon on a cgroup v1 host (this machine) caps a session at 512
// processes; a real fork bomb (bounded by the bash call's timeout, which kills the sandbox)
// leaves the daemon and another session responsive.
#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_is_capped_and_the_daemon_stays_responsive() {
    // Both sessions play the same script (by turn); only the one whose workspace has the
    // marker runs the bomb. The bomb runs only once the probe has shown the cap binds: on a
    // host where it would not, the test fails on the probe instead of flooding the machine.
    let command = format!(
        "if [ ! -e bomb-here ]; then echo other-session-ok; else \
           probe=$({FORK_PROBE}); echo \"$probe\"; n=${{probe##*started=}}; \
           if [ \"${{n%% *}}\" -lt 600 ]; then \
             bash -c ':(){{ :|:& }};:' tether-bomb-{pid} 2>/dev/null; echo bomb-started; sleep 600; \
           fi; \
         fi",
        pid = std::process::id()
    );
    let env = TestEnv::new(
        Script::by_turn(vec![
            // The call's timeout ends the bomb: tether kills the sandbox's whole tree.
            Reply::tool_use("bash", json!({"command": command, "timeout_ms": 30_000})),
            Reply::text("done"),
        ])
        .with_side_reply(Reply::text("side")),
    )
    .await;
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("bomb-here"), "").unwrap();
    env.ok(&[
        "new",
        "--detach",
        "--name",
        "bomb",
        "--dir",
        ws.path().to_str().unwrap(),
        "go",
    ]);
    let needle = format!("tether-bomb-{}", std::process::id());
    // Only after the probe passed (else the bomb never starts and this times out).
    wait_until("the fork bomb is running", || {
        pids_matching(&needle).len() >= 100
    })
    .await;
    // The daemon answers, and another session completes a turn, while the bomb holds its cap.
    assert!(env.ok(&["ls"]).contains("bomb"));
    let other = tempfile::tempdir().unwrap();
    let (status, out) = run_in(&env, other.path(), "other");
    assert_eq!(status, ToolStatus::Ok, "{out}");
    assert!(out.contains("other-session-ok"), "{out}");
    assert!(
        !pids_matching(&needle).is_empty(),
        "the bomb ended before the other session's turn: the check proved nothing"
    );
    env.wait_idle("bomb").await;
    let (status, out) = tool_results(&env.events("bomb"))
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(status, ToolStatus::Timeout, "{out}");
    let started = number(&out, "started=");
    let procs = number(&out, "procs=");
    assert!(out.contains("fork-failed"), "{out}");
    assert!(started < 512, "the loop was not limited: {out}");
    assert!(procs <= 512, "{out}");
    assert!(out.contains("bomb-started"), "{out}");
    wait_until("the bomb is gone with its sandbox", || {
        pids_matching(&needle).is_empty()
    })
    .await;
}

// Issue 27 item 7: the shell's PATH holds only directories that exist in the sandbox, not
// host-only ones from the daemon's PATH (a toolchain under the daemon user's home).
#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_path_names_only_what_is_mounted() {
    let host_only = tempfile::tempdir().unwrap();
    let tool = host_only.path().join("host-only-tool");
    std::fs::write(&tool, "#!/bin/sh\necho HOST-ONLY-RAN\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = env_running(
        "echo \"PATH=$PATH\"; IFS=:; for d in $PATH; do [ -d \"$d\" ] || echo \"MISSING $d\"; done; \
         host-only-tool 2>/dev/null || echo TOOL-ABSENT",
        0,
    )
    .await;
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin:/nonexistent/bin:relative/bin",
        host_only.path().display()
    );
    let mut daemon = env
        .spawn_daemon_with_env(None, &[("PATH", path.as_str())])
        .await;
    let ws = tempfile::tempdir().unwrap();
    let (status, out) = run_in(&env, ws.path(), "path");
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(status, ToolStatus::Ok, "{out}");
    let line = out.lines().find_map(|l| l.strip_prefix("PATH=")).unwrap();
    assert!(!line.contains(host_only.path().to_str().unwrap()), "{out}");
    assert!(
        !line.contains("nonexistent") && !line.contains("relative"),
        "{out}"
    );
    assert!(line.split(':').any(|d| d == "/usr/bin"), "{out}");
    assert!(!out.contains("MISSING"), "{out}");
    assert!(out.contains("TOOL-ABSENT"), "{out}");
}

// Issue 27 item 1 at the other sandbox level: the Landlock fallback (no user namespaces, an
// unprivileged daemon) runs the same seccomp filter, so a file there can't become
// setuid-to-the-daemon's-user either. Run as the helper is run by such a daemon.
#[tokio::test(flavor = "multi_thread")]
async fn the_landlock_fallback_makes_no_setuid_files_either() {
    use std::io::Write;
    const UID: u32 = 61_277;
    let ws = tempfile::tempdir().unwrap();
    nix::unistd::chown(
        ws.path(),
        Some(nix::unistd::Uid::from_raw(UID)),
        Some(nix::unistd::Gid::from_raw(UID)),
    )
    .unwrap();
    let mut child = std::process::Command::new("setpriv")
        .arg(format!("--reuid={UID}"))
        .arg(format!("--regid={UID}"))
        .arg("--clear-groups")
        .arg(tether_e2e::bin_dir().join("tetherd"))
        .arg("sandbox-exec")
        .arg(ws.path())
        .arg("--no-namespaces")
        .current_dir(ws.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv(1) from util-linux is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"exec 2>&1\n\
              cp /bin/true t; chmod 4755 t; chmod g+s t; install -m 6755 /bin/true i; \
              python3 -c 'import os; os.close(os.open(\"o\", os.O_CREAT|os.O_WRONLY, 0o4755))'; \
              ls -l; echo TRIED\nexit\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("__TETHER_SANDBOX_READY__\n"), "{text}");
    assert!(text.contains("TRIED"), "{text}");
    for f in ["t", "i"] {
        assert!(ws.path().join(f).exists(), "{f}: {text}");
    }
    let found = privileged_files(ws.path());
    assert!(
        found.is_empty(),
        "privileged files on the host: {found:#?}\n{text}"
    );
}

// Issue 27 item 3: `tether doctor` says which limits truly bind, with the host's cgroups and
// with them turned off (TETHER_SANDBOX_CGROUPS=off), and that setuid files are blocked.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_says_which_limits_bind_with_and_without_cgroups() {
    let root = nix::unistd::geteuid().is_root();
    let v1_pids = Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists();
    for off in [false, true] {
        let env = TestEnv::new(Script::sequential(vec![])).await;
        let vars: &[(&str, &str)] = if off {
            &[("TETHER_SANDBOX_CGROUPS", "off")]
        } else {
            &[]
        };
        let mut daemon = env.spawn_daemon_with_env(None, vars).await;
        let checks: serde_json::Value =
            serde_json::from_str(&env.ok(&["doctor", "--json"])).unwrap();
        let _ = daemon.kill();
        let _ = daemon.wait();
        let find = |name: &str| {
            let c = checks
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["check"] == format!("  {name}"))
                .unwrap_or_else(|| panic!("no {name} check: {checks}"));
            (
                c["ok"].as_bool().unwrap(),
                c["detail"].as_str().unwrap().to_string(),
            )
        };
        let (ok, detail) = find("setuid");
        assert!(ok, "{detail}");
        assert!(
            detail.starts_with("setuid/setgid/file capabilities: blocked (seccomp)"),
            "{detail}"
        );
        assert!(find("open files").0);
        let (procs_ok, procs) = find("processes");
        match (root, off) {
            (false, _) => assert!(procs_ok, "{procs}"),
            (true, true) => {
                assert!(!procs_ok, "{procs}");
                assert!(procs.contains("exempts host uid 0"), "{procs}");
                assert!(procs.contains("TETHER_SANDBOX_CGROUPS=off"), "{procs}");
                assert!(!find("memory").0);
                assert!(!find("cpu").0);
            }
            (true, false) if v1_pids => {
                assert!(procs_ok, "{procs}");
                assert!(procs.contains("512 per session, binding"), "{procs}");
                let (mem_ok, memory) = find("memory");
                assert!(mem_ok, "{memory}");
            }
            (true, false) => {}
        }
    }
}
