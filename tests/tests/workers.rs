//! Self-hosted environments (issue 26): sessions whose tools run on workers that poll
//! tetherd's work queue. The official Python SDK's ready-made worker, unmodified
//! (tests/sdk/worker.py, serve_worker.py), against the real tetherd over HTTP and the mock
//! model; the queue endpoints by hand where a worker's misbehaviour is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv, tool_results, wait_until};
use tether_mock_llm::Script;
use tether_proto::{EventBody, ToolStatus};

fn python() -> String {
    std::env::var("TETHER_SDK_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn sdk(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sdk")
        .join(file)
        .display()
        .to_string()
}

/// `tether envs create NAME --self-hosted --json`: (environment id, worker key).
fn self_hosted_env(env: &TestEnv, name: &str) -> (String, String) {
    let out = env.ok(&["envs", "create", name, "--self-hosted", "--json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    (
        v["environment_id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

/// The SDK's worker polling `env_id` forever (until killed), running tools in `workdir`.
fn spawn_sdk_worker(base: &str, env_id: &str, key: &str, workdir: &Path, id: &str) -> Child {
    Command::new(python())
        .arg(sdk("serve_worker.py"))
        .env("TETHER_URL", base)
        .env("TETHER_ENV", env_id)
        .env("TETHER_ENV_KEY", key)
        .env("WORKDIR", workdir)
        .env("WORKER_ID", id)
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn new_session(base: &str, token: &str, env_id: &str, text: &str) -> String {
    let s: Value = http()
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(token)
        .json(&json!({"agent": "default", "environment_id": env_id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = s["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{s}"))
        .to_string();
    let r = http()
        .post(format!("{base}/v1/sessions/{id}/events"))
        .bearer_auth(token)
        .json(&json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    id
}

fn ended_turn(env: &TestEnv, session: &str) -> bool {
    env.events(session)
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            EventBody::SessionStatusIdle { stop_reason } => {
                Some(matches!(stop_reason, tether_proto::StopReason::EndTurn))
            }
            EventBody::SessionStatusRunning {} => Some(false),
            _ => None,
        })
        == Some(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdks_worker_runs_a_self_hosted_sessions_bash_call() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": "echo made-by-worker > made.txt && cat made.txt"}),
        ),
        Reply::text("done"),
    ]))
    .await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let (env_id, key) = self_hosted_env(&env, "box");
    let workdir = tempfile::tempdir().unwrap();
    let (b, t, e, k, w) = (
        base.clone(),
        token.clone(),
        env_id.clone(),
        key.clone(),
        workdir.path().to_path_buf(),
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(sdk("worker.py"))
            .env("TETHER_URL", b)
            .env("TETHER_TOKEN", t)
            .env("TETHER_ENV", e)
            .env("TETHER_ENV_KEY", k)
            .env("WORKDIR", w)
            .env_remove("ANTHROPIC_BASE_URL")
            .env_remove("ANTHROPIC_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains("sdk worker ok"),
        "the SDK worker failed:\nstdout: {stdout}\nstderr: {}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        env.daemon_log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let session = stdout.trim().rsplit(' ').next().unwrap().to_string();
    // It ran on the worker's machine (its workdir), not in tetherd's sandbox.
    assert_eq!(
        std::fs::read_to_string(workdir.path().join("made.txt")).unwrap(),
        "made-by-worker\n"
    );
    let events = env.events(&session);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.body, EventBody::SpanToolCallStart { .. })),
        "tetherd ran the call itself"
    );
    let results = tool_results(&events);
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].0, ToolStatus::Ok);
    assert!(results[0].1.contains("made-by-worker"), "{results:?}");
    // The queue says who served it; the item is stopped.
    let shown = env.ok(&["envs", "show", "box", "--json"]);
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["workers"]["workers"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["workers"]["in_flight"], 0, "{v}");
    let seen = v["workers"]["workers"][0].clone();
    // A restart forgets the polls but not who served the queue.
    let _ = daemon.kill();
    let _ = daemon.wait();
    let (mut daemon, _, _) = env.spawn_http_daemon().await;
    let shown = env.ok(&["envs", "show", "box", "--json"]);
    let v: Value = serde_json::from_str(&shown).unwrap();
    let after = &v["workers"]["workers"];
    assert_eq!(after.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(after[0]["worker_id"], seen["worker_id"], "{v}");
    assert_eq!(after[0]["host"], seen["host"], "{v}");
    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_or_misplaced_key_gets_401_and_nothing() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "echo secret-output"})),
        Reply::text("done"),
    ]))
    .await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let (env_id, key) = self_hosted_env(&env, "box");
    let (other_id, other_key) = self_hosted_env(&env, "other");
    let session = new_session(&base, &token, &env_id, "go").await;
    wait_until("the session to wait for a worker", || {
        env.events(&session).iter().any(|e| {
            matches!(
                &e.body,
                EventBody::SessionStatusIdle {
                    stop_reason: tether_proto::StopReason::RequiresAction { .. }
                }
            )
        })
    })
    .await;
    let get = |path: String, bearer: String| {
        let base = base.clone();
        async move {
            let r = http()
                .get(format!("{base}{path}"))
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let poll = format!("/v1/environments/{env_id}/work/poll");
    for (what, path, bearer) in [
        (
            "a wrong key",
            poll.clone(),
            "tether-envkey-0000".to_string(),
        ),
        ("another environment's key", poll.clone(), other_key.clone()),
        (
            "the key on a session",
            format!("/v1/sessions/{session}"),
            key.clone(),
        ),
        (
            "the key on its events",
            format!("/v1/sessions/{session}/events"),
            key.clone(),
        ),
        ("the key on the agents", "/v1/agents".into(), key.clone()),
    ] {
        let (status, body) = get(path, bearer).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            !body.contains("secret-output") && !body.contains("work_"),
            "{what} leaked: {body}"
        );
    }
    // Its own key polls its own queue and gets the session's item, with a sessions token
    // that opens that session and nothing else.
    let (status, body) = get(poll, key.clone()).await;
    assert_eq!(status, 200, "{body}");
    let work: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(work["data"]["id"], session.as_str(), "{work}");
    let secret = work["secret"].as_str().unwrap();
    let token_json = decode_base64url(secret);
    let sessions_token = serde_json::from_slice::<Value>(&token_json).unwrap()["sessions_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = get(format!("/v1/sessions/{session}"), sessions_token.clone()).await;
    assert_eq!(status, 200);
    let (status, _) = get("/v1/sessions".into(), sessions_token.clone()).await;
    assert_eq!(status, 401, "the sessions token lists sessions");
    let (status, _) = get(
        format!("/v1/environments/{other_id}/work/poll"),
        sessions_token,
    )
    .await;
    assert_eq!(status, 401, "the sessions token polls another queue");
    let _ = daemon.kill();
    let _ = daemon.wait();
}

fn decode_base64url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_bash_loses_its_lease_and_the_call_is_interrupted_not_rerun() {
    let env = TestEnv::with_config(
        Script::sequential(vec![
            Reply::tool_use("bash", json!({"command": "echo ran >> runs.txt; sleep 60"})),
            Reply::text("noted"),
        ]),
        "[workers]\nlease_ttl_secs = 2\n",
    )
    .await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let (env_id, key) = self_hosted_env(&env, "box");
    let workdir = tempfile::tempdir().unwrap();
    let runs = workdir.path().join("runs.txt");
    let session = new_session(&base, &token, &env_id, "go").await;
    let mut first = spawn_sdk_worker(&base, &env_id, &key, workdir.path(), "box1-000000000001");
    wait_until("the first worker to start the bash call", || runs.exists()).await;
    // kill -9 mid-call: no stop, no result, its heartbeats just end.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = first.wait();
    // A second worker is ready; it must not run the call again.
    let mut second = spawn_sdk_worker(&base, &env_id, &key, workdir.path(), "box2-000000000002");
    wait_until("the lease to expire and the turn to end", || {
        ended_turn(&env, &session)
    })
    .await;
    let results = tool_results(&env.events(&session));
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].0, ToolStatus::Interrupted, "{results:?}");
    assert!(results[0].1.contains("NOT run again"), "{results:?}");
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap(),
        "ran\n",
        "the call ran twice"
    );
    let _ = second.kill();
    let _ = second.wait();
    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_on_one_queue_run_each_call_exactly_once() {
    const SESSIONS: usize = 6;
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use(
            "bash",
            json!({"command": "echo $PPID-$RANDOM >> calls.txt; sleep 0.2"}),
        ),
        Reply::text("done"),
    ]))
    .await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let (env_id, key) = self_hosted_env(&env, "box");
    let workdir = tempfile::tempdir().unwrap();
    let mut workers = vec![
        spawn_sdk_worker(&base, &env_id, &key, workdir.path(), "box1-00000000000a"),
        spawn_sdk_worker(&base, &env_id, &key, workdir.path(), "box2-00000000000b"),
    ];
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        sessions.push(new_session(&base, &token, &env_id, &format!("go {i}")).await);
    }
    wait_until("every session to end its turn", || {
        sessions.iter().all(|s| ended_turn(&env, s))
    })
    .await;
    for s in &sessions {
        let results = tool_results(&env.events(s));
        assert_eq!(results.len(), 1, "{s}: {results:?}");
        assert_eq!(results[0].0, ToolStatus::Ok, "{s}: {results:?}");
    }
    let calls = std::fs::read_to_string(workdir.path().join("calls.txt")).unwrap();
    assert_eq!(
        calls.lines().count(),
        SESSIONS,
        "each call exactly once:\n{calls}"
    );
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn tether_worker_in_its_own_home_serves_a_session_in_its_sandbox() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": "echo from-tether-worker > f.txt && cat f.txt"}),
        ),
        Reply::tool_use("read", json!({"file_path": "f.txt"})),
        Reply::text("done"),
    ]))
    .await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let (env_id, key) = self_hosted_env(&env, "box");
    // The second box: its own TETHER_HOME, no daemon of its own, only the URL and the key.
    let box_home = tempfile::Builder::new()
        .prefix("tw")
        .tempdir_in("/tmp")
        .unwrap();
    let workdir = box_home.path().join("work");
    let mut worker = Command::new(tether_e2e::bin_dir().join("tether"))
        .args(["worker", "--env", &env_id, "--url", &base])
        .arg("--workdir")
        .arg(&workdir)
        .env("TETHER_HOME", box_home.path())
        .env("TETHER_DAEMON_BIN", tether_e2e::bin_dir().join("tetherd"))
        .env("TETHER_ENV_KEY", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = new_session(&base, &token, &env_id, "go").await;
    for _ in 0..300 {
        if ended_turn(&env, &session) || worker.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let results = tool_results(&env.events(&session));
    let _ = worker.kill();
    let out = worker.wait_with_output().unwrap();
    assert!(
        ended_turn(&env, &session),
        "the turn did not end: {:?}\nworker: {}",
        tether_e2e::types(&env.events(&session)),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        results.len(),
        2,
        "{results:?}\nworker: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(results[0].0, ToolStatus::Ok, "{results:?}");
    assert!(results[0].1.contains("from-tether-worker"), "{results:?}");
    assert!(
        results[1].1.contains("from-tether-worker"),
        "the read: {results:?}"
    );
    assert_eq!(
        std::fs::read_to_string(workdir.join("f.txt")).unwrap(),
        "from-tether-worker\n"
    );
    // tetherd lists the box it saw.
    let shown = env.ok(&["envs", "show", "box"]);
    assert!(shown.contains("workers: 1 seen"), "{shown}");
    // A wrong key: the worker says what to do and exits non-zero.
    let bad = Command::new(tether_e2e::bin_dir().join("tether"))
        .args([
            "worker",
            "--env",
            &env_id,
            "--url",
            &base,
            "--key",
            "tether-envkey-wrong",
        ])
        .env("TETHER_HOME", box_home.path())
        .env("TETHER_DAEMON_BIN", tether_e2e::bin_dir().join("tetherd"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("refused the environment key"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// `tether worker --allow-host`: the worker box's tools get a cloud environment's `limited`
/// network, an allowed host through the proxy and every other one refused by name; a bad
/// host pattern stops the worker before it takes any work, saying which.
#[tokio::test(flavor = "multi_thread")]
async fn tether_worker_with_allow_host_limits_the_tools_network_to_those_hosts() {
    let (port, hits) = tether_e2e::host_server();
    let command = format!(
        "curl -sS -m 20 http://127.0.0.1:{port}/ok; echo \" allowed-rc=$?\"; \
         curl -sS -m 20 http://denied.example.invalid/; echo \" denied-rc=$?\"; \
         curl -sS -m 5 --noproxy '*' http://127.0.0.1:{port}/direct 2>&1; echo \" direct-rc=$?\""
    );
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({ "command": command })),
        Reply::text("done"),
    ]))
    .await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let (env_id, key) = self_hosted_env(&env, "box");
    let box_home = tempfile::Builder::new()
        .prefix("tw")
        .tempdir_in("/tmp")
        .unwrap();
    let worker = |extra: &[&str]| {
        let mut c = Command::new(tether_e2e::bin_dir().join("tether"));
        c.args(["worker", "--env", &env_id, "--url", &base])
            .args(extra)
            .arg("--workdir")
            .arg(box_home.path().join("work"))
            .env("TETHER_HOME", box_home.path())
            .env("TETHER_DAEMON_BIN", tether_e2e::bin_dir().join("tetherd"))
            .env("TETHER_ENV_KEY", &key);
        c
    };
    let bad = worker(&["--allow-host", "not a host"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("--allow-host: allowed_hosts entry `not a host` is not valid"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let allowed = format!("127.0.0.1:{port}");
    let mut running = worker(&["--allow-host", &allowed])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = new_session(&base, &token, &env_id, "go").await;
    wait_until("the worker to run the call", || ended_turn(&env, &session)).await;
    let _ = running.kill();
    let _ = running.wait();
    let results = tool_results(&env.events(&session));
    assert_eq!(results.len(), 1, "{results:?}");
    let out = &results[0].1;
    assert!(
        out.contains("Hello from the host</h1></body></html> allowed-rc=0"),
        "{out}"
    );
    assert!(
        out.contains("`denied.example.invalid` is not in this session's allowed_hosts"),
        "{out}"
    );
    // Around the proxy there is no route: the sandbox's loopback is its own.
    assert!(out.contains("direct-rc=7"), "{out}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the proxied request arrived: {out}"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}

fn upstream(file: &str) -> String {
    sdk(&format!("upstream/{file}"))
}

/// Runs the upstream example `file` with `vars` set and checks it succeeded: its stdout and
/// a report (stdout and the tail of stderr) for assertions.
async fn run_example(file: &'static str, vars: Vec<(&'static str, String)>) -> (String, String) {
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(python());
        cmd.arg(upstream(file));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let why = format!(
        "stdout:\n{stdout}\nstderr (tail):\n{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.status.success(), "the example {file} failed\n{why}");
    (stdout, why)
}

/// The SDK's `examples/managed-agents-self-hosted-sandbox-worker.py`, byte for byte: it makes
/// an agent with the built-in toolset and a custom tool, a session in the self-hosted
/// environment, and serves the calls with the SDK's `EnvironmentWorker` for its own 60 s.
/// The model calls the custom tool first: its work item must be queued all the same.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdks_self_hosted_worker_example_runs_unmodified() {
    let env = TestEnv::with_config(
        Script::sequential(vec![
            Reply::message(vec![
                tether_e2e::Block::tool_use("current_time", json!({})),
                tether_e2e::Block::tool_use("bash", json!({"command": "pwd"})),
            ]),
            Reply::text("It is now; the directory is shown above."),
        ]),
        "[workers]\nlease_ttl_secs = 2\n",
    )
    .await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let (env_id, key) = self_hosted_env(&env, "box");
    let workdir = tempfile::tempdir().unwrap();
    let w = workdir.path().canonicalize().unwrap();
    let (stdout, why) = run_example(
        "managed-agents-self-hosted-sandbox-worker.py",
        vec![
            ("ANTHROPIC_BASE_URL", base),
            ("ANTHROPIC_API_KEY", token),
            ("ANTHROPIC_ENVIRONMENT_ID", env_id),
            ("ANTHROPIC_ENVIRONMENT_KEY", key),
            ("ANTHROPIC_WORKDIR", w.display().to_string()),
        ],
    )
    .await;
    // Its printed transcript: both calls answered by the worker, then the model's reply.
    assert!(stdout.contains("agent.custom_tool_use"), "{why}");
    assert!(
        stdout.contains("user.custom_tool_result: 20"),
        "no time\n{why}"
    );
    assert!(
        stdout.contains(&format!("agent.tool_result: {}", w.display())),
        "pwd did not run in the worker's workdir\n{why}"
    );
    assert!(
        stdout.contains("agent.message: It is now; the directory is shown above."),
        "{why}"
    );
    assert!(stdout.contains("deleted session"), "{why}");
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// The SDK's `examples/managed-agents-observe-tool-calls.py`, byte for byte: it drives a
/// session in the self-hosted environment itself, runs each built-in tool call locally with
/// `tool_runner` and prints it, stops 60 s (the runner's `max_idle`) after the turn ends and
/// deletes the session. A result it posts is the call's result.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdks_observe_tool_calls_example_runs_unmodified() {
    let env = TestEnv::new(Script::by_turn(vec![
        Reply::tool_use("bash", json!({"command": "pwd"})),
        Reply::tool_use("bash", json!({"command": "ls"})),
        Reply::text("That is the working directory."),
    ]))
    .await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let (env_id, _key) = self_hosted_env(&env, "observer");
    let workdir = tempfile::tempdir().unwrap();
    std::fs::write(workdir.path().join("observed.txt"), "x").unwrap();
    let (stdout, why) = run_example(
        "managed-agents-observe-tool-calls.py",
        vec![
            ("ANTHROPIC_BASE_URL", base),
            ("ANTHROPIC_API_KEY", token),
            ("ANTHROPIC_ENVIRONMENT_ID", env_id),
            ("ANTHROPIC_WORKDIR", workdir.path().display().to_string()),
        ],
    )
    .await;
    assert!(
        stdout.contains("bash {'command': 'pwd'} is_error=False posted=True"),
        "{why}"
    );
    assert!(
        stdout.contains("bash {'command': 'ls'} is_error=False posted=True"),
        "{why}"
    );
    assert!(stdout.contains("deleted session"), "{why}");
    // What the model was given is what ran in the example's workdir.
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 3, "{why}");
    assert!(
        reqs[2].body.to_string().contains("observed.txt"),
        "the ls result is not the runner's: {}",
        reqs[2].body
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// The SDK's `examples/managed-agents-worker-dispatch.py`, byte for byte: it serves one item
/// something else claimed (here the test, polling and acknowledging as `ant beta:worker poll
/// --on-work` does) with `handle_item()`, with only the environment key (its API key is a dummy).
/// Archiving the session stops the item: the worker hears it at its next heartbeat and exits.
/// A worker's credentials answer calls and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdks_dispatch_example_serves_a_claimed_item_until_the_session_is_archived() {
    let env = TestEnv::with_config(
        Script::sequential(vec![
            Reply::tool_use("current_time", json!({})),
            Reply::text("It is now."),
        ]),
        // Long enough for Python to start and send its first heartbeat on a loaded box;
        // the worker heartbeats every ttl/2, which bounds how soon it hears of the archive.
        "[workers]\nlease_ttl_secs = 10\n",
    )
    .await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let (env_id, key) = self_hosted_env(&env, "box");
    let post = |path: String, bearer: String, body: Value| {
        let base = base.clone();
        async move {
            let r = http()
                .post(format!("{base}{path}"))
                .bearer_auth(bearer)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or_default(),
            )
        }
    };
    let (status, agent) = post(
        "/v1/agents".into(),
        token.clone(),
        json!({"name": "clock", "model": "claude-haiku-4-5", "tools": [
            {"type": "agent_toolset_20260401"},
            {"type": "custom", "name": "current_time", "description": "now",
             "input_schema": {"type": "object", "properties": {}}}]}),
    )
    .await;
    assert_eq!(status, 200, "{agent}");
    let (status, s) = post(
        "/v1/sessions".into(),
        token.clone(),
        json!({"agent": agent["id"], "environment_id": env_id}),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    let session = s["id"].as_str().unwrap().to_string();
    let (status, _) = post(
        format!("/v1/sessions/{session}/events"),
        token.clone(),
        json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "time?"}]}]}),
    )
    .await;
    assert_eq!(status, 200);
    // Claim the item the way an upstream poller does: poll, then acknowledge.
    let mut work = Value::Null;
    for _ in 0..40 {
        let r = http()
            .get(format!(
                "{base}/v1/environments/{env_id}/work/poll?block_ms=500"
            ))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let body = r.text().await.unwrap();
        if !body.trim().is_empty() && body.trim() != "null" {
            work = serde_json::from_str(&body).unwrap();
            break;
        }
    }
    let work_id = work["id"].as_str().expect("no work item").to_string();
    assert_eq!(work["data"]["id"], session.as_str(), "{work}");
    // A worker's credentials do not speak for the user.
    let sessions_token =
        serde_json::from_slice::<Value>(&decode_base64url(work["secret"].as_str().unwrap()))
            .unwrap()["sessions_token"]
            .as_str()
            .unwrap()
            .to_string();
    for bearer in [key.clone(), sessions_token] {
        let (status, body) = post(
            format!("/v1/sessions/{session}/events"),
            bearer,
            json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "rm -rf"}]}]}),
        )
        .await;
        assert_eq!(status, 403, "a worker sent a user message: {body}");
        assert_eq!(body["error"]["type"], "permission_error", "{body}");
    }
    // Acknowledged just before the worker starts: the lease runs from here.
    let (status, acked) = post(
        format!("/v1/environments/{env_id}/work/{work_id}/ack"),
        key.clone(),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{acked}");
    // Its log goes to a file: a full pipe would stall it before it exits.
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("worker.log");
    let mut child = Command::new(python())
        .arg(upstream("managed-agents-worker-dispatch.py"))
        .env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", "unused-by-the-worker")
        .env("ANTHROPIC_WORK_ID", &work_id)
        .env("ANTHROPIC_ENVIRONMENT_ID", &env_id)
        .env("ANTHROPIC_SESSION_ID", &session)
        .env("ANTHROPIC_ENVIRONMENT_KEY", &key)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ended_turn(&env, &session) {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not answer the call in 60 s\nworker log:\n{}\nevents: {:#?}",
            std::fs::read_to_string(&log_path).unwrap_or_default(),
            env.events(&session)
                .iter()
                .map(|e| e.body.type_name())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let events = env.events(&session);
    assert!(
        events.iter().any(|e| matches!(
            &e.body,
            EventBody::UserCustomToolResult { content, .. } if format!("{content:?}").contains("20")
        )),
        "no custom tool result from the worker"
    );
    let (status, _) = post(
        format!("/v1/sessions/{session}/archive"),
        token.clone(),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    wait_until(
        "the worker to let go of the archived session's item",
        || child.try_wait().unwrap().is_some(),
    )
    .await;
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("work item complete"),
        "stdout: {stdout}\nstderr: {}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let item: Value = http()
        .get(format!("{base}/v1/environments/{env_id}/work/{work_id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(item["state"], "stopped", "{item}");
    let _ = daemon.kill();
    let _ = daemon.wait();
}
