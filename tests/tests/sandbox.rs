//! The bash tool's sandbox, end to end through the real daemon (reference §C 18–28 subset):
//! a read-only host with only the session workspace writable, no network, a private /proc,
//! the whole tree killed with the shell, and fail-closed when namespaces are unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::json;
use tether_e2e::{Reply, TestEnv, bin_dir, pids_matching, wait_until};
use tether_mock_llm::Script;
use tether_proto::{EventBody, ToolStatus};

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
    env.events("sbx")
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentToolResult {
                status, content, ..
            } => Some((*status, tether_proto::blocks_text(content))),
            _ => None,
        })
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
    let env = env_running("echo limits=$(ulimit -u)/$(ulimit -n)/$(ulimit -c)", 0).await;
    let ws = tempfile::tempdir().unwrap();
    let (status, out) = run_in(&env, ws.path());
    assert_eq!(status, ToolStatus::Ok, "{out}");
    assert!(out.contains("limits=512/4096/0"), "{out}");
}
