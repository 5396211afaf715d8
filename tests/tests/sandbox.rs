//! The bash tool's sandbox, end to end through the real daemon (reference §C 18–28 subset):
//! a read-only host with only the session workspace writable, no network, a private /proc,
//! the whole tree killed with the shell, and fail-closed when namespaces are unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::json;
use tether_e2e::{Reply, TestEnv, bin_dir, pids_matching, tool_results, wait_until};
use tether_mock_llm::Script;
use tether_proto::ToolStatus;

/// A session whose model runs one bash `command` (with `timeout_ms`, 0 = default) in `dir`.
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

/// Runs the session to the end in `dir` and returns the bash call's status and output.
fn run_in(env: &TestEnv, dir: &Path) -> (ToolStatus, String) {
    env.run(&["run", "go", "--dir", dir.to_str().unwrap(), "--name", "sbx"]);
    tool_results(&env.events("sbx"))
        .into_iter()
        .next()
        .expect("the bash call has a result")
}

fn tempdir_in(parent: &Path, prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .unwrap()
}

// §C 18.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_workspace_is_writable_and_files_belong_to_the_host_user() {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let canary = format!("tether-sandbox-canary-{}", std::process::id());
    let probe = |data: &Path, other: &Path| {
        format!(
            "for p in /usr/{canary} /etc/{canary} {home}/{canary} {other}/{canary}; do \
               if {{ echo x > \"$p\"; }} 2>/dev/null; then echo \"WROTE $p\"; else echo \"DENIED $p\"; fi; \
             done; \
             ls -A {data} | sed 's/^/IN-DATA /'; \
             cat {other}/secret.txt 2>/dev/null; \
             echo x > /tmp/{canary} && echo TMP-OK; \
             echo mine > in-ws.txt && echo WS-OK; id -u",
            data = data.display(),
            other = other.display(),
        )
    };
    let scratch = tempfile::tempdir().unwrap();
    // Stands for the daemon's data dir, where default session workspaces live.
    let data = tempdir_in(scratch.path(), "data");
    let ws = tempdir_in(data.path(), "ws");
    let other = tempdir_in(data.path(), "other");
    std::fs::write(other.path().join("secret.txt"), "other session").unwrap();
    let env = env_running(&probe(data.path(), other.path()), 0).await;
    let (status, out) = run_in(&env, ws.path());
    assert_eq!(status, ToolStatus::Ok, "{out}");
    assert_eq!(out.matches("DENIED").count(), 4, "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    // Of the data dir only the path to this workspace exists: no other session, no files.
    let ws_name = ws.path().file_name().unwrap().to_str().unwrap();
    let listed: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("IN-DATA "))
        .collect();
    assert_eq!(listed, [ws_name], "{out}");
    assert!(!out.contains("other session"), "{out}");
    assert!(out.contains("TMP-OK\nWS-OK\n1000\n"), "{out}");
    // Nothing reached the host, except the workspace file, owned by the daemon's uid.
    for dir in [
        "/usr",
        "/etc",
        home.as_str(),
        data.path().to_str().unwrap(),
        other.path().to_str().unwrap(),
        "/tmp",
    ] {
        assert!(!Path::new(dir).join(&canary).exists(), "{dir}/{canary}");
    }
    let meta = std::fs::metadata(ws.path().join("in-ws.txt")).unwrap();
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    assert_eq!(
        std::fs::read_to_string(ws.path().join("in-ws.txt")).unwrap(),
        "mine\n"
    );
}

// §C 21.
#[tokio::test(flavor = "multi_thread")]
async fn no_network_not_even_host_loopback() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = env_running(
        &format!(
            "if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo CONNECTED; else echo REFUSED; fi; \
             grep -c : /proc/net/dev"
        ),
        0,
    )
    .await;
    let ws = tempfile::tempdir().unwrap();
    let (_, out) = run_in(&env, ws.path());
    assert!(out.contains("REFUSED"), "{out}");
    assert!(!out.contains("CONNECTED"), "{out}");
    // Only `lo` exists in the sandbox's network namespace.
    assert!(out.contains("\n1\n"), "{out}");
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the sandbox reached the host listener"
    );
}

// §C 20, 24.
#[tokio::test(flavor = "multi_thread")]
async fn proc_shows_only_the_sandbox_and_the_shell_has_no_privileges() {
    let env = env_running(
        "echo pids=$(ls /proc | grep -cE '^[0-9]+$'); \
         echo init=$(tr '\\0' ' ' < /proc/1/cmdline); \
         for f in /proc/[0-9]*/cmdline; do echo \"cmdline $(tr '\\0' ' ' < $f)\"; done; \
         grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; \
         env | grep -c KEY | sed 's/^/keys=/'",
        0,
    )
    .await;
    let ws = tempfile::tempdir().unwrap();
    let (status, out) = run_in(&env, ws.path());
    assert_eq!(status, ToolStatus::Ok, "{out}");
    // bash (pid 1) and the few processes of this pipeline.
    let pids: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("pids="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&pids), "{out}");
    assert!(out.contains("init=/bin/bash --noprofile --norc"), "{out}");
    let cmdlines: Vec<&str> = out.lines().filter(|l| l.starts_with("cmdline ")).collect();
    assert!(
        cmdlines.iter().all(|l| !l.contains("tetherd")),
        "the daemon or the helper is visible: {out}"
    );
    assert!(out.contains("CapEff:\t0000000000000000\n"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1\n"), "{out}");
    assert!(out.contains("keys=0\n"), "{out}");
}

// §C 25: a setsid'd, double-forked job escapes a process-group kill but not the pid namespace.
#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_setsid_double_forked_jobs() {
    let env = env_running("(setsid sleep 987123 &); echo started; sleep 60", 1000).await;
    let ws = tempfile::tempdir().unwrap();
    let (status, out) = run_in(&env, ws.path());
    assert_eq!(status, ToolStatus::Timeout, "{out}");
    assert!(out.starts_with("started\n"), "{out}");
    wait_until("the double-forked sleep is gone", || {
        pids_matching("sleep 987123").is_empty()
    })
    .await;
}

/// Starts tetherd inside a user namespace that may create no further user namespaces, the
/// way a host with `user.max_user_namespaces = 0` (or an AppArmor restriction) behaves.
async fn daemon_without_user_namespaces(env: &TestEnv) -> Child {
    let template = env.tetherd();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\"",
    ])
    .arg(bin_dir().join("tetherd"))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd
        .spawn()
        .expect("unshare(1) from util-linux is installed");
    let socket = env.paths.socket();
    wait_until("tetherd accepting connections", || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tetherd exited at start ({status}):\n{}", env.daemon_log());
        }
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    })
    .await;
    child
}

// §C 28.
#[tokio::test(flavor = "multi_thread")]
async fn fails_closed_without_user_namespaces() {
    let env = env_running("touch ran-unsandboxed; echo RAN", 0).await;
    let mut daemon = daemon_without_user_namespaces(&env).await;
    let ws = tempfile::tempdir().unwrap();
    let (status, out) = run_in(&env, ws.path());
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(status, ToolStatus::Error, "{out}");
    assert!(out.contains("user.max_user_namespaces"), "{out}");
    assert!(out.contains("never runs it unsandboxed"), "{out}");
    assert!(!out.contains("RAN"), "{out}");
    assert!(!ws.path().join("ran-unsandboxed").exists());
}

// §A seccomp: kernel interfaces a shell never needs fail with EPERM inside the sandbox, and so
// does a nested user namespace; NETLINK_ROUTE (what `ip` uses) still works.
#[tokio::test(flavor = "multi_thread")]
async fn the_seccomp_deny_list_refuses_kernel_interfaces_and_nested_user_namespaces() {
    let perl = r#"
sub show { my ($name, $r) = @_; print "$name ", ($r == -1 ? "errno=" . ($! + 0) : "ok"), "\n"; }
show("io_uring_setup", syscall(425, 1, 0));
show("keyctl", syscall(250, 0, -3, 0));
show("ptrace", syscall(101, 16, 1, 0, 0));
show("bpf", syscall(321, 0, 0, 0));
show("netlink_audit", syscall(41, 16, 3, 9));
show("netlink_route", syscall(41, 16, 3, 0));
show("vsock", syscall(41, 40, 1, 0));
"#;
    let command = format!(
        "grep ^Seccomp: /proc/self/status; perl -e '{perl}'; unshare -Ur true 2>&1; echo \"unshare-rc=$?\""
    );
    let env = env_running(&command, 0).await;
    let ws = tempfile::tempdir().unwrap();
    let (status, out) = run_in(&env, ws.path());
    assert_eq!(status, ToolStatus::Ok, "{out}");
    assert!(out.contains("Seccomp:\t2"), "filter mode: {out}");
    for denied in [
        "io_uring_setup",
        "keyctl",
        "ptrace",
        "bpf",
        "netlink_audit",
        "vsock",
    ] {
        assert!(
            out.contains(&format!("{denied} errno=1\n")),
            "{denied}: {out}"
        );
    }
    assert!(out.contains("netlink_route ok\n"), "{out}");
    assert!(!out.contains("unshare-rc=0"), "{out}");
}

// The shell's rlimits: processes, open files, no core dumps. (The process limit binds only when
// the daemon is not root: the kernel exempts processes whose host uid is 0 from RLIMIT_NPROC,
// and the sandbox user maps to the daemon's own uid so workspace files stay the user's.)
#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_has_its_own_process_and_file_limits() {
    let env = env_running(
        "echo limits=$(ulimit -u)/$(ulimit -n)/$(ulimit -c)/$(ulimit -d)",
        0,
    )
    .await;
    let ws = tempfile::tempdir().unwrap();
    let (status, out) = run_in(&env, ws.path());
    assert_eq!(status, ToolStatus::Ok, "{out}");
    assert!(out.contains("limits=512/4096/0/8388608"), "{out}");
}

// §A Landlock: a second lock behind the mount tree. /proc/self/comm is writable as far as
// the mounts go; Landlock (everything visible is read-only but the workspace, /tmp, /dev/shm
// and the devices) refuses it, while pipes, devices and the workspace still work.
#[tokio::test(flavor = "multi_thread")]
async fn landlock_refuses_writes_the_mount_tree_allows() {
    let env = env_running(
        "if { echo x > /proc/self/comm; } 2>/dev/null; then echo COMM-WROTE; else echo COMM-DENIED; fi; \
         echo to-stderr > /dev/stderr; echo ok > /dev/null && echo NULL-OK; \
         touch /dev/shm/s /tmp/t ws-file && echo RW-OK",
        0,
    )
    .await;
    let ws = tempfile::tempdir().unwrap();
    let (status, out) = run_in(&env, ws.path());
    assert_eq!(status, ToolStatus::Ok, "{out}");
    assert!(out.contains("COMM-DENIED"), "{out}");
    assert!(out.contains("to-stderr\nNULL-OK\nRW-OK"), "{out}");
    assert!(ws.path().join("ws-file").exists());
}

/// Runs `script` in the Landlock fallback (`tetherd sandbox-exec WS --no-namespaces`) as the
/// unprivileged `uid`, the way a non-root daemon without user namespaces runs it. Tests use
/// different uids: RLIMIT_NPROC counts every process of a uid.
fn run_fallback_as(uid: u32, ws: &Path, script: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(bin_dir().join("tetherd"))
        .arg("sandbox-exec")
        .arg(ws)
        .arg("--no-namespaces")
        .current_dir(ws)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv(1) from util-linux is installed");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("exec 2>&1\n{script}\nexit\n").as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        text.starts_with("__TETHER_SANDBOX_READY__\n"),
        format!("{text}{err}"),
    )
}

// §A levels: without user namespaces an unprivileged daemon falls back to Landlock + seccomp +
// rlimits on the host's tree. The shell writes only its workspace and private temp dir, reads
// no home or stray host file, can't read another process's environment or signal it (Landlock
// scopes ptrace-like access and signals), and has no inet sockets.
#[tokio::test(flavor = "multi_thread")]
async fn the_landlock_fallback_confines_an_unprivileged_shell() {
    let canary = format!("tether-fallback-canary-{}", std::process::id());
    let ws = tempfile::tempdir().unwrap();
    nix::unistd::chown(
        ws.path(),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    // A world-readable host file outside the workspace, and a same-uid process with a secret.
    let stray = std::env::temp_dir().join(format!("{canary}-stray"));
    std::fs::write(&stray, "stray host file").unwrap();
    let mut secret_holder = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["sleep", "600"])
        .env_clear()
        .env("ANTHROPIC_API_KEY", "sk-fallback-canary")
        .spawn()
        .unwrap();
    let holder = secret_holder.id();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (ready, out) = run_fallback_as(
        65534,
        ws.path(),
        &format!(
            "echo uid=$(id -u); echo mine > in-ws.txt && echo WS-OK; \
             touch \"$TMPDIR/t\" && echo PRIVATE-TMP-OK; \
             for p in /tmp/{canary} /usr/{canary} /var/tmp/{canary}; do \
               if {{ echo x > \"$p\"; }} 2>/dev/null; then echo \"WROTE $p\"; else echo \"DENIED $p\"; fi; \
             done; \
             cat {stray} 2>/dev/null || echo STRAY-DENIED; \
             ls /root /home >/dev/null 2>&1 || echo HOMES-DENIED; \
             tr '\\0' '\\n' < /proc/{holder}/environ 2>/dev/null | grep -c canary | sed 's/^/environ-hits=/'; \
             kill -0 {holder} 2>/dev/null && echo SIGNALLED; \
             if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo CONNECTED; else echo NO-INET; fi",
            stray = stray.display(),
        ),
    );
    let _ = secret_holder.kill();
    let _ = secret_holder.wait();
    let _ = std::fs::remove_file(&stray);
    assert!(ready, "{out}");
    assert!(out.contains("uid=65534\nWS-OK\nPRIVATE-TMP-OK\n"), "{out}");
    assert_eq!(out.matches("DENIED /").count(), 3, "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    assert!(out.contains("STRAY-DENIED"), "{out}");
    assert!(!out.contains("stray host file"), "{out}");
    assert!(out.contains("HOMES-DENIED"), "{out}");
    assert!(out.contains("environ-hits=0"), "{out}");
    assert!(!out.contains("SIGNALLED"), "{out}");
    assert!(out.contains("NO-INET"), "{out}");
    assert!(!out.contains("CONNECTED"), "{out}");
    assert!(!std::env::temp_dir().join(&canary).exists());
    assert_eq!(
        std::fs::read_to_string(ws.path().join("in-ws.txt")).unwrap(),
        "mine\n"
    );
}

// The fallback refuses to run for root (whose capabilities it can't drop) and never runs the
// command: fail closed, with the fix.
#[tokio::test(flavor = "multi_thread")]
async fn the_landlock_fallback_refuses_root() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    let out = Command::new(bin_dir().join("tetherd"))
        .arg("sandbox-exec")
        .arg(ws.path())
        .arg("--no-namespaces")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("cannot drop root's privileges"), "{err}");
    assert!(err.contains("never runs it unsandboxed"), "{err}");
}

// §C 25 and issue 5 "Killing": the daemon's `kill -9` takes the sandbox with it, even a
// command that isn't reading the shell's stdin (stage 1's parent-death signal, set from the
// daemon's spawner thread; the pid namespace takes the rest).
#[tokio::test(flavor = "multi_thread")]
async fn daemon_kill_9_leaves_no_sandbox_process() {
    let env = env_running("(setsid sleep 987321 &); sleep 987322", 600_000).await;
    let mut daemon = env.spawn_daemon(None).await;
    let ws = tempfile::tempdir().unwrap();
    env.ok(&[
        "new",
        "--detach",
        "--name",
        "doomed",
        "--dir",
        ws.path().to_str().unwrap(),
        "go",
    ]);
    wait_until("the sandboxed sleeps run", || {
        !pids_matching("sleep 987321").is_empty() && !pids_matching("sleep 987322").is_empty()
    })
    .await;
    daemon.kill().unwrap();
    env.wait_killed(daemon).await;
    // This session's sandbox only: other tests (and other daemons) on the box have their own.
    let own_sandbox = format!("sandbox-exec {}", ws.path().display());
    wait_until("no sandbox process is left", || {
        pids_matching("sleep 98732").is_empty() && pids_matching(&own_sandbox).is_empty()
    })
    .await;
}

// §A levels: `tether doctor` reports the level tether uses and each kernel feature.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_the_sandbox_level_and_landlock_abi() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    env.ok(&["ls"]);
    let checks: serde_json::Value = serde_json::from_str(&env.ok(&["doctor", "--json"])).unwrap();
    let find = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {checks}"))
            .clone()
    };
    let sandbox = find("sandbox");
    assert_eq!(sandbox["ok"], true, "{sandbox}");
    assert!(
        sandbox["detail"]
            .as_str()
            .unwrap()
            .starts_with("level namespaces: tools run in namespaces"),
        "{sandbox}"
    );
    assert_eq!(find("  userns")["ok"], true);
    assert_eq!(find("  seccomp")["ok"], true);
    let landlock = find("  landlock");
    assert!(
        landlock["detail"].as_str().unwrap().starts_with("ABI "),
        "{landlock}"
    );
    // Without usable cgroups doctor says why; this kind of host (cgroup v1, root) has v1.
    let cgroup = find("  cgroup");
    if cgroup["ok"] == false {
        assert!(
            cgroup["detail"].as_str().unwrap().contains("rlimits"),
            "{cgroup}"
        );
    }
}

// Issue 5: `sandbox = "none"` (explicit opt-in) runs the tools on the host, and the session
// says so (`tether ls`, the session object); other sessions stay sandboxed.
#[tokio::test(flavor = "multi_thread")]
async fn an_unsandboxed_environment_runs_on_the_host_and_is_marked() {
    let marker = tempfile::NamedTempFile::new().unwrap();
    let env = env_running(
        &format!(
            "test -e {} && echo HOST-VISIBLE; id -u",
            marker.path().display()
        ),
        0,
    )
    .await;
    let files = tempfile::tempdir().unwrap();
    let spec = files.path().join("unboxed.yaml");
    std::fs::write(
        &spec,
        "name: unboxed\nconfig:\n  type: cloud\n  sandbox: none\n",
    )
    .unwrap();
    env.ok(&["envs", "create", "-f", spec.to_str().unwrap()]);
    let shown: serde_json::Value =
        serde_json::from_str(&env.ok(&["envs", "show", "unboxed", "--json"])).unwrap();
    assert_eq!(shown["config"]["sandbox"], "none", "{shown}");
    let ws = tempfile::tempdir().unwrap();
    env.run(&[
        "run",
        "go",
        "--env",
        "unboxed",
        "--dir",
        ws.path().to_str().unwrap(),
        "--name",
        "sbx",
    ]);
    let (_, out) = tool_results(&env.events("sbx")).into_iter().next().unwrap();
    assert!(out.contains("HOST-VISIBLE"), "{out}");
    assert!(
        out.contains(&format!("\n{}\n", nix::unistd::geteuid().as_raw())),
        "{out}"
    );
    env.ok(&["new", "--detach", "--name", "boxed"]);
    let ls = env.ok(&["ls"]);
    let line = |name: &str| ls.lines().find(|l| l.contains(name)).unwrap().to_string();
    assert!(line(" sbx ").contains("UNSANDBOXED"), "{ls}");
    assert!(!line(" boxed ").contains("UNSANDBOXED"), "{ls}");
    let json = env.ok(&["ls", "--json"]);
    let info = |name: &str| -> serde_json::Value {
        serde_json::from_str(json.lines().find(|l| l.contains(name)).unwrap()).unwrap()
    };
    assert_eq!(info("\"sbx\"")["sandbox"], "none");
    assert_eq!(info("\"boxed\"")["sandbox"], "namespaces");
}

/// A session whose model runs each of `commands` as its own bash call, in order.
async fn env_running_all(commands: &[&str]) -> TestEnv {
    let mut replies: Vec<Reply> = commands
        .iter()
        .map(|c| Reply::tool_use("bash", json!({ "command": c })))
        .collect();
    replies.push(Reply::text("done"));
    TestEnv::new(Script::sequential(replies)).await
}

/// Runs the session in `dir` and returns every bash call's status and output, in order.
fn run_all_in(env: &TestEnv, dir: &Path) -> Vec<(ToolStatus, String)> {
    env.run(&["run", "go", "--dir", dir.to_str().unwrap(), "--name", "sbx"]);
    tool_results(&env.events("sbx"))
}

// §C 19: symlinks out of the workspace lead nowhere writable, to a file or to a directory.
#[tokio::test(flavor = "multi_thread")]
async fn symlinks_out_of_the_workspace_lead_nowhere_writable() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), "untouched").unwrap();
    let env = env_running(
        &format!(
            "ln -s /etc/passwd pw && {{ echo x > pw; }} 2>/dev/null || echo PASSWD-DENIED; \
             ln -s {o} outdir && {{ echo x > outdir/victim; }} 2>/dev/null || echo DIR-DENIED; \
             {{ echo x > outdir/new; }} 2>/dev/null || echo NEW-DENIED",
            o = outside.path().display()
        ),
        0,
    )
    .await;
    let ws = tempfile::tempdir().unwrap();
    let (_, out) = run_in(&env, ws.path());
    assert!(
        out.contains("PASSWD-DENIED\nDIR-DENIED\nNEW-DENIED"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(outside.path().join("victim")).unwrap(),
        "untouched"
    );
    assert!(!outside.path().join("new").exists());
    assert!(
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("root:")
    );
}

// §C 20, 27: no hardlink to a host file, no device nodes, setuid gives nothing, no mount.
#[tokio::test(flavor = "multi_thread")]
async fn hardlinks_devices_setuid_and_mount_give_nothing() {
    let env = env_running(
        "ln /etc/passwd hl 2>/dev/null && echo LINKED || echo LINK-DENIED; \
         mknod dev c 1 3 2>/dev/null && echo MKNOD || echo MKNOD-DENIED; \
         cp /bin/bash sbash && { chmod u+s sbash 2>/dev/null; ./sbash -p -c 'echo suid-uid=$(id -u) euid=$(id -u)'; }; \
         mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED || echo MOUNT-DENIED",
        0,
    )
    .await;
    let ws = tempfile::tempdir().unwrap();
    let (_, out) = run_in(&env, ws.path());
    assert!(out.contains("LINK-DENIED"), "{out}");
    assert!(out.contains("MKNOD-DENIED"), "{out}");
    assert!(out.contains("suid-uid=1000 euid=1000"), "{out}");
    assert!(out.contains("MOUNT-DENIED"), "{out}");
    assert!(!ws.path().join("hl").exists());
    assert!(!ws.path().join("dev").exists());
}

// §C 23, 24: only fds 0–2 reach the sandbox, even one the daemon inherited without CLOEXEC;
// API keys in the daemon's environment are in neither `env` nor `/proc/1/environ`.
#[tokio::test(flavor = "multi_thread")]
async fn no_inherited_fd_or_api_key_reaches_the_sandbox() {
    use std::os::fd::AsRawFd;
    let env = env_running(
        "for f in /proc/1/fd/*; do echo \"fd ${f##*/} $(readlink $f)\"; done; \
         env | grep -c -i key | sed 's/^/env-keys=/'; \
         tr '\\0' '\\n' < /proc/1/environ | grep -c -i key | sed 's/^/environ-keys=/'",
        0,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let canary = std::fs::File::create(dir.path().join("canary-fd")).unwrap();
    // Inherited by the daemon (no CLOEXEC), as a careless library would leave it.
    nix::fcntl::fcntl(
        &canary,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    assert!(canary.as_raw_fd() > 2);
    let mut daemon = env.spawn_daemon(None).await;
    let ws = tempfile::tempdir().unwrap();
    let (status, out) = run_in(&env, ws.path());
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(status, ToolStatus::Ok, "{out}");
    // The shell's stdio pipes, /dev/null, and bash's saved copy of stdin (fd 10, from the
    // wrapper's `< /dev/null`): nothing else, and never the canary.
    let fds: Vec<&str> = out.lines().filter(|l| l.starts_with("fd ")).collect();
    assert!(fds.len() >= 3, "{out}");
    for fd in &fds {
        let target = fd.splitn(3, ' ').nth(2).unwrap();
        assert!(
            target.starts_with("pipe:") || target == "/dev/null",
            "{fd}: {out}"
        );
    }
    assert!(!out.contains("canary-fd"), "{out}");
    assert!(out.contains("env-keys=0"), "{out}");
    assert!(out.contains("environ-keys=0"), "{out}");
}

// §C 26: /tmp is a tmpfs with a size cap, so filling it stops there (the host's disk and
// memory are safe).
#[tokio::test(flavor = "multi_thread")]
async fn filling_tmp_stops_at_the_tmpfs_cap() {
    let env = env_running(
        "head -c 2G /dev/zero > /tmp/x; echo rc=$?; echo size=$(stat -c %s /tmp/x); rm /tmp/x",
        0,
    )
    .await;
    let ws = tempfile::tempdir().unwrap();
    let (_, out) = run_in(&env, ws.path());
    assert!(out.contains("No space left on device"), "{out}");
    assert!(!out.contains("rc=0"), "{out}");
    let size: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("size="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(size <= 512 << 20, "{out}");
}

// §C 26: a fork loop hits the sandbox's process limit (RLIMIT_NPROC binds for a non-root
// user, which is how the fallback runs and how a non-root daemon's namespaces map) and the
// host keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn a_fork_loop_is_contained_for_an_unprivileged_user() {
    // A uid of its own, so the loop's processes count against no other test.
    const FORK_UID: u32 = 61_234;
    let ws = tempfile::tempdir().unwrap();
    nix::unistd::chown(
        ws.path(),
        Some(nix::unistd::Uid::from_raw(FORK_UID)),
        Some(nix::unistd::Gid::from_raw(FORK_UID)),
    )
    .unwrap();
    let fork_loop = "my @kids; for (1..700) { my $p = fork(); \
        if (!defined $p) { print \"fork-failed: $!\\n\"; last } \
        if ($p == 0) { sleep 30; exit 0 } push @kids, $p } \
        print \"started=\", scalar(@kids), \"\\n\"; kill 9, @kids; waitpid($_, 0) for @kids;";
    let (ready, out) = run_fallback_as(
        FORK_UID,
        ws.path(),
        &format!("perl -e '{fork_loop}'; echo host-ok"),
    );
    assert!(ready, "{out}");
    let started: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("started="))
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .parse()
        .unwrap();
    assert!(out.contains("fork-failed"), "{out}");
    assert!(started < 700, "the loop was not limited: {out}");
    assert!(out.contains("host-ok"), "{out}");
}

// Issue 5 shape: the persistent shell keeps cwd and env between calls; after `exit` the next
// call gets a fresh shell, in the workspace, and the model is told.
#[tokio::test(flavor = "multi_thread")]
async fn the_persistent_shell_keeps_cwd_and_env_and_restarts_after_exit() {
    let env = env_running_all(&[
        "mkdir -p sub && cd sub && export TETHER_TEST_VAR=kept",
        "pwd; echo var=$TETHER_TEST_VAR",
        "exit 3",
        "pwd; echo var=${TETHER_TEST_VAR:-unset}",
    ])
    .await;
    let ws = tempfile::tempdir().unwrap();
    let results = run_all_in(&env, ws.path());
    assert_eq!(results.len(), 4, "{results:?}");
    let ws_path = ws.path().canonicalize().unwrap();
    let second = &results[1].1;
    assert!(
        second.contains(&format!("{}/sub\nvar=kept", ws_path.display())),
        "{second}"
    );
    let fourth = &results[3].1;
    assert!(fourth.contains("shell restarted"), "{fourth}");
    assert!(
        fourth.contains(&format!("{}\nvar=unset", ws_path.display())),
        "{fourth}"
    );
}

// §C 30: workspace files survive a daemon restart and the resumed session's shell works in
// the same workspace; /tmp belongs to one sandbox and starts empty in the next.
#[tokio::test(flavor = "multi_thread")]
async fn the_workspace_outlives_the_daemon_and_tmp_does_not() {
    let env = env_running_all(&[
        "echo kept > ws.txt; echo gone > /tmp/t.txt; echo written",
        "cat ws.txt; cat /tmp/t.txt 2>/dev/null || echo TMP-FRESH",
    ])
    .await;
    let ws = tempfile::tempdir().unwrap();
    // Killed after the first call's result is committed, before the next model call.
    let first = env.spawn_daemon(Some("after_tool_result")).await;
    env.run(&[
        "new",
        "--detach",
        "--name",
        "sbx",
        "--dir",
        ws.path().to_str().unwrap(),
        "go",
    ]);
    env.wait_killed(first).await;
    assert_eq!(
        std::fs::read_to_string(ws.path().join("ws.txt")).unwrap(),
        "kept\n"
    );
    env.ok(&["ls"]);
    let id = env.ok(&["ls", "--json"]);
    let id: serde_json::Value = serde_json::from_str(id.lines().next().unwrap()).unwrap();
    env.wait_idle(id["id"].as_str().unwrap()).await;
    let results: Vec<String> = tool_results(&env.events("sbx"))
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    let last = results.last().unwrap();
    assert!(last.contains("kept\nTMP-FRESH"), "{results:?}");
}

// §C 26: a memory hog is stopped. With a delegated cgroup v2 the OOM killer ends it and the
// model is told (unit-tested in cgroup.rs); on hosts without one, like this cgroup v1 kind,
// RLIMIT_DATA refuses the allocation and the host's memory is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_stopped() {
    let env = env_running(
        "perl -e '$x = \"a\" x (9 * 2**30); print \"ALLOCATED\\n\"'; echo rc=$?",
        0,
    )
    .await;
    let ws = tempfile::tempdir().unwrap();
    let (_, out) = run_in(&env, ws.path());
    assert!(!out.contains("ALLOCATED"), "{out}");
    assert!(!out.contains("rc=0"), "{out}");
    assert!(
        out.contains("Out of memory") || out.contains("out of memory"),
        "{out}"
    );
}
