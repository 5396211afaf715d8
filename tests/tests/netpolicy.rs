//! `limited` networking end to end (reference §C 22): the sandboxed bash reaches an allowed
//! host only through the host-side proxy, a denied host gets the proxy's 403 (decided before
//! any DNS lookup), and traffic that ignores the proxy has no route. `web_fetch` runs in the
//! daemon under the same policy. The policy is the session environment's `networking`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;

use serde_json::json;
use tether_e2e::{Reply, TestEnv, host_server, pids_matching, wait_until};
use tether_mock_llm::Script;

/// Creates environment `name` with `networking` (YAML flow syntax) through the CLI.
fn environment(env: &TestEnv, name: &str, networking: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.yaml");
    std::fs::write(
        &file,
        format!("name: {name}\nconfig:\n  type: cloud\n  networking: {networking}\n"),
    )
    .unwrap();
    env.ok(&["envs", "create", "-f", file.to_str().unwrap()]);
}

/// An environment whose sessions reach only the test server on host loopback.
fn limited_to(env: &TestEnv, port: u16) {
    environment(
        env,
        "lim",
        &format!("{{type: limited, allowed_hosts: [\"127.0.0.1:{port}\"]}}"),
    );
}

/// The text of every tool result of session `name`, in order.
fn tool_results(env: &TestEnv, name: &str) -> Vec<String> {
    tether_e2e::tool_results(&env.events(name))
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sandboxed_bash_reaches_only_allowed_hosts_through_the_proxy() {
    let (port, hits) = host_server();
    let script = format!(
        "echo \"proxy=$HTTP_PROXY\"; \
         curl -sS -m 20 http://127.0.0.1:{port}/allowed; echo \" allowed-rc=$?\"; \
         curl -sS -m 20 http://denied.example.invalid/; echo \" denied-rc=$?\"; \
         curl -sS -m 20 https://denied.example.invalid/ 2>&1; echo \" connect-rc=$?\"; \
         curl -sS -m 20 http://127.0.0.1:{other}/; echo \" literal-rc=$?\"; \
         curl -sS -m 5 --noproxy '*' http://127.0.0.1:{port}/direct 2>&1; echo \" direct-loopback-rc=$?\"; \
         curl -sS -m 5 --noproxy '*' http://192.0.2.1/ 2>&1; echo \" direct-out-rc=$?\"",
        other = port.wrapping_add(1),
    );
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({ "command": script })),
        Reply::text("done"),
    ]))
    .await;
    limited_to(&env, port);
    let ws = tempfile::tempdir().unwrap();
    env.run(&[
        "run",
        "go",
        "--dir",
        ws.path().to_str().unwrap(),
        "--name",
        "net",
        "--env",
        "lim",
    ]);
    let out = tool_results(&env, "net").join("\n");
    assert!(out.contains("proxy=http://127.0.0.1:3128"), "{out}");
    // Allowed: through the bridge and the host proxy to the host's loopback server.
    assert!(
        out.contains("Hello from the host</h1></body></html> allowed-rc=0"),
        "{out}"
    );
    // Denied by name, before any lookup (a lookup of .invalid would fail differently).
    assert!(
        out.contains("`denied.example.invalid` is not in this session's allowed_hosts"),
        "{out}"
    );
    assert!(
        out.contains("denied-rc=0"),
        "the 403 is an HTTP answer: {out}"
    );
    assert!(
        out.contains("403") && out.contains("connect-rc=56"),
        "{out}"
    );
    assert!(
        out.contains("is an IP address") && out.contains("literal-rc=0"),
        "{out}"
    );
    // Ignoring the proxy: the sandbox's loopback is its own, and there is no route out.
    assert!(out.contains("direct-loopback-rc=7"), "{out}");
    assert!(out.contains("direct-out-rc=7"), "{out}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "only the proxied request arrived: {out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_none_environment_has_no_network_at_all() {
    let (port, hits) = host_server();
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({ "command": format!("echo \"proxy=[$HTTP_PROXY]\"; ls /run/tether 2>&1; curl -sS -m 5 -x http://127.0.0.1:3128 http://127.0.0.1:{port}/ 2>&1; echo \" rc=$?\"") }),
        ),
        Reply::text("done"),
    ]))
    .await;
    environment(&env, "offline", "{type: none}");
    let ws = tempfile::tempdir().unwrap();
    env.run(&[
        "run",
        "go",
        "--dir",
        ws.path().to_str().unwrap(),
        "--name",
        "off",
        "--env",
        "offline",
    ]);
    let out = tool_results(&env, "off").join("\n");
    assert!(out.contains("proxy=[]"), "{out}");
    assert!(out.contains("No such file or directory"), "{out}");
    assert!(out.contains(" rc=7"), "{out}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn web_fetch_follows_the_policy() {
    let (port, hits) = host_server();
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "web_fetch",
            json!({ "url": format!("http://127.0.0.1:{port}/page") }),
        ),
        Reply::tool_use(
            "web_fetch",
            json!({ "url": "http://169.254.169.254/latest/meta-data/" }),
        ),
        Reply::text("done"),
    ]))
    .await;
    limited_to(&env, port);
    let ws = tempfile::tempdir().unwrap();
    env.run(&[
        "run",
        "go",
        "--dir",
        ws.path().to_str().unwrap(),
        "--name",
        "wf",
        "--env",
        "lim",
    ]);
    let out = tool_results(&env, "wf");
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[0].ends_with("# Hello from the host"), "{}", out[0]);
    assert!(
        out[1].contains("refused http://169.254.169.254/"),
        "{}",
        out[1]
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// The proxy lives in the daemon. `kill -9` it while a sandboxed loop keeps fetching: nothing
/// reaches the host server any more. Today the sandbox dies with the daemon (its shell reads
/// commands from the daemon); should it outlive it, the bridge answers 502 instead (unit-tested
/// in `net::bridge`). Either way no request finds another way out.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_proxy_fails_closed() {
    let (port, hits) = host_server();
    let url = format!("http://127.0.0.1:{port}/loop");
    let loop_cmd = format!(
        "nohup bash -c 'while true; do curl -sS -m 5 {url} >> probe.log 2>&1; \
         echo \" rc=$?\" >> probe.log; sleep 0.1; done' > /dev/null 2>&1 & echo started"
    );
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({ "command": loop_cmd })),
        Reply::text("done"),
    ]))
    .await;
    let daemon = env.spawn_daemon(None).await;
    limited_to(&env, port);
    let ws = tempfile::tempdir().unwrap();
    env.run(&[
        "run",
        "go",
        "--dir",
        ws.path().to_str().unwrap(),
        "--name",
        "bg",
        "--env",
        "lim",
    ]);
    let probe = ws.path().join("probe.log");
    let log = || std::fs::read_to_string(&probe).unwrap_or_default();
    wait_until("a request through the proxy", || {
        log().contains("Hello from the host")
    })
    .await;

    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    env.wait_killed(daemon).await;
    let hits_when_dead = hits.load(Ordering::SeqCst);
    wait_until("the loop gone, or failing at the bridge", || {
        pids_matching(&url).is_empty() || log().matches("proxy is not reachable").count() >= 3
    })
    .await;
    assert_eq!(hits.load(Ordering::SeqCst), hits_when_dead, "{}", log());
    for pid in pids_matching(&url) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Writes an environment file with setup commands and runs `tether envs create` on it.
fn create_with_setup(
    env: &TestEnv,
    name: &str,
    networking: &str,
    setup: &str,
) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.yaml");
    std::fs::write(
        &file,
        format!(
            "name: {name}\nconfig:\n  type: cloud\n  networking: {networking}\n  setup_commands:\n    - {setup}\n"
        ),
    )
    .unwrap();
    env.run(&["envs", "create", "-f", file.to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_run_under_the_environments_own_network_policy() {
    let (port, hits) = host_server();
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": "cat /opt/tether/env/fetched.html"}),
        ),
        Reply::text("done"),
    ]))
    .await;
    let fetch = format!("curl -fsS http://127.0.0.1:{port}/tool -o fetched.html");
    // Listed: the build reaches the host through its own proxy; sessions see what it fetched.
    let ok = create_with_setup(
        &env,
        "fetcher",
        &format!("{{type: limited, allowed_hosts: [\"127.0.0.1:{port}\"]}}"),
        &fetch,
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    env.ok(&["run", "go", "--env", "fetcher", "--name", "f"]);
    let out = tool_results(&env, "f").join("\n");
    assert!(out.contains("Hello from the host"), "{out}");
    // Not listed, or no network at all: the step fails, names itself, and nothing got out.
    let blocked = format!("curl -fsS http://127.0.0.1:{port}/other -o other.html");
    for (name, networking) in [
        (
            "blocked",
            "{type: limited, allowed_hosts: [\"example.invalid\"]}",
        ),
        ("offline", "{type: none}"),
    ] {
        let out = create_with_setup(&env, name, networking, &blocked);
        assert!(!out.status.success(), "{name} built");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("setup: curl"), "{name}: {text}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a refused build reached the host"
    );
}
