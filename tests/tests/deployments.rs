//! Deployments end to end: the real daemon fires sessions from a deployment (on demand, and
//! from a one-shot schedule through its own scheduler), the CLI and the HTTP API see them,
//! a crash between recording a run and creating its session makes exactly one session, and
//! the official Python SDK drives the endpoints unmodified. A deployment may fire a workflow
//! run instead (tether): on demand from a YAML file here, and kill -9 at each step of such a
//! fire makes exactly one workflow run; its cron firing is unit-tested on the fake clock in
//! crates/daemon/src/orchestration/schedules/scheduler.rs. Schedule timing itself (cron,
//! zones, DST, jitter, pause without backfill, missed fires) is unit-tested with a fake clock
//! in crates/daemon/src/orchestration/schedules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::http_api::Api;
use tether_e2e::{Reply, TestEnv, python, sdk_script, wait_until};
use tether_mock_llm::Route;
use tether_mock_llm::Script;
use tether_proto::{EventBody, ServerFrame};

const DEPLOYMENT_YAML: &str = "\
name: nightly
agent: default
environment_id: default
initial_events:
  - type: user.message
    content:
      - type: text
        text: summarise the day
schedule:
  type: cron
  expression: \"30 2 * * *\"
  timezone: Europe/Paris
";

fn script() -> Script {
    Script::sequential(vec![Reply::text("summary"), Reply::text("summary 2")])
        .with_side_reply(Reply::text("title"))
}

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A stored run: (id, session_id, error, pending).
type RunState = (String, Option<String>, Option<String>, bool);

/// What the database holds, read without a daemon: the runs, and the sessions deployments
/// fired.
fn db_state(env: &TestEnv) -> (Vec<RunState>, Vec<String>) {
    let db = rusqlite::Connection::open_with_flags(
        env.paths.db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let runs = db
        .prepare("SELECT id, session_id, error, pending FROM deployment_runs ORDER BY created_at")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let sessions = db
        .prepare("SELECT id FROM sessions WHERE deployment_id IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (runs, sessions)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_fires_a_session_that_carries_the_deployment_id_in_the_cli_and_over_http() {
    let env = TestEnv::new(script()).await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let file = env.home.path().join("nightly.yaml");
    std::fs::write(&file, DEPLOYMENT_YAML).unwrap();

    let created = lines(&env.ok(&[
        "deployments",
        "create",
        "-f",
        file.to_str().unwrap(),
        "--json",
    ]));
    let id = created[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("depl_"), "{id}");
    assert_eq!(created[0]["status"], "active");
    // `show` prints the next fires: 02:30 Paris is 01:30 or 00:30 UTC.
    let shown = env.ok(&["deployments", "show", "nightly"]);
    let fires: Vec<&str> = shown
        .lines()
        .filter(|l| l.starts_with("  20") && l.ends_with('Z'))
        .collect();
    assert_eq!(fires.len(), 5, "{shown}");
    assert!(
        fires
            .iter()
            .all(|f| f.contains("T01:30:00Z") || f.contains("T00:30:00Z")),
        "{shown}"
    );

    let run: Value =
        serde_json::from_str(&env.ok(&["deployments", "run", "nightly", "--json"])).unwrap();
    assert_eq!(run["deployment_id"], id.as_str());
    assert_eq!(run["trigger_context"], json!({"type": "manual"}));
    assert_eq!(run["error"], Value::Null);
    let session = run["session_id"].as_str().unwrap().to_string();
    env.wait_idle(&session).await;
    // The session got the deployment's initial message and ran a turn on it.
    let events = env.events(&session);
    let first_user: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::UserMessage { content } => Some(tether_proto::blocks_text(content)),
            _ => None,
        })
        .collect();
    assert_eq!(first_user, ["summarise the day"]);

    // `tether ls --deployment` shows exactly that session; other sessions are left out.
    env.ok(&["new", "--detach", "unrelated"]);
    let listed = lines(&env.ok(&["ls", "--deployment", "nightly", "--json"]));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], session.as_str());
    assert_eq!(listed[0]["deployment_id"], id.as_str());
    let all = lines(&env.ok(&["ls", "--json"]));
    assert_eq!(all.len(), 2);
    let missing = env.run(&["ls", "--deployment", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no deployment `nope`"));

    let runs = lines(&env.ok(&["deployments", "runs", "nightly", "--json"]));
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["session_id"], session.as_str());

    // Over HTTP: the session filter, the session's deployment_id and the run listing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let get = |path: String| {
        let req = http
            .get(format!("{base}{path}"))
            .header("x-api-key", &token)
            .header("anthropic-beta", "managed-agents-2026-04-01");
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (s, page) = get(format!("/v1/sessions?deployment_id={id}")).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [session.as_str()]);
    assert_eq!(page["data"][0]["deployment_id"], id.as_str());
    let (_, page) = get(format!(
        "/v1/deployment_runs?deployment_id={id}&has_error=false"
    ))
    .await;
    assert_eq!(page["data"][0]["id"], run["id"]);
    let (s, err) = get("/v1/deployments/depl_nope".into()).await;
    assert_eq!(s, 404);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("depl_nope"),
        "{err}"
    );

    // Paused: `ls` says so; archived: `run` is refused with the reason.
    env.ok(&["deployments", "pause", "nightly"]);
    let ls = env.ok(&["deployments", "ls"]);
    assert!(ls.contains("paused"), "{ls}");
    env.ok(&["deployments", "archive", "nightly"]);
    let refused = env.run(&["deployments", "run", id.as_str()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("archived"));
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// A one-shot `{type: at}` schedule fires through the daemon's own scheduler, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_one_shot_schedule_fires_once_through_the_scheduler() {
    let env = TestEnv::new(script()).await;
    let _daemon = env.spawn_daemon(None).await;
    let mut c = env.client().await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(1);
    let d = c
        .call(
            "deployment.create",
            json!({
                "name": "soon",
                "agent": "default",
                "environment_id": "default",
                "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "wake up"}]}],
                "schedule": {"type": "at", "time": at.to_rfc3339()},
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        d["schedule"]["upcoming_runs_at"].as_array().unwrap().len(),
        1
    );
    wait_until("the one-shot fire", || {
        let (runs, _) = db_state(&env);
        runs.iter().any(|r| !r.3)
    })
    .await;
    let runs = c
        .call("deployment.runs", json!({"deployment": "soon"}))
        .await
        .unwrap();
    let runs = runs["data"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["trigger_context"]["type"], "schedule");
    let session = runs[0]["session_id"].as_str().unwrap();
    env.wait_idle(session).await;
    let got = c
        .call("deployment.get", json!({"deployment": "soon"}))
        .await
        .unwrap();
    assert!(got["schedule"]["last_run_at"].is_string(), "{got}");
    assert_eq!(got["schedule"]["upcoming_runs_at"], json!([]));
    let _ = env.ok(&["daemon", "stop"]);
}

/// Kills the daemon at `point` during `deployment.run`, restarts it, and checks the run was
/// finished exactly once: one run, one session, the initial message sent once.
async fn crash_during_a_run(point: &str) {
    let env = TestEnv::new(script()).await;
    let daemon = env.spawn_daemon(Some(point)).await;
    let mut c = env.client().await;
    c.call(
        "deployment.create",
        json!({
            "name": "crashy",
            "agent": "default",
            "environment_id": "default",
            "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "once"}]}],
        }),
    )
    .await
    .unwrap();
    let out = env.run(&["deployments", "run", "crashy"]);
    assert!(!out.status.success(), "the daemon should have died mid-run");
    env.wait_killed(daemon).await;
    let (runs, sessions) = db_state(&env);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0].3,
        "the run is recorded, pending, before the session: {runs:?}"
    );
    let expected_sessions = usize::from(point == "after_run_session");
    assert_eq!(sessions.len(), expected_sessions, "{sessions:?}");

    // Recovery finishes it; a second restart changes nothing.
    for _ in 0..2 {
        let d = env.spawn_daemon(None).await;
        wait_until("the interrupted run finished", || !db_state(&env).0[0].3).await;
        let (runs, sessions) = db_state(&env);
        assert_eq!(runs.len(), 1, "{runs:?}");
        let session = runs[0].1.clone().expect("the run has its session");
        assert_eq!(runs[0].2, None);
        assert_eq!(sessions, std::slice::from_ref(&session));
        env.wait_idle(&session).await;
        let sent: Vec<_> = env
            .events(&session)
            .into_iter()
            .filter(|e| matches!(e.body, EventBody::UserMessage { .. }))
            .collect();
        assert_eq!(sent.len(), 1, "the initial message is sent exactly once");
        let _ = env.ok(&["daemon", "stop"]);
        let mut d = d;
        let _ = d.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_run_is_recorded_makes_exactly_one_session() {
    crash_during_a_run("after_run_recorded").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_session_is_made_does_not_make_another() {
    crash_during_a_run("after_run_session").await;
}

/// tests/sdk/deployments.py: the official Python SDK, unmodified.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_drives_deployments() {
    let env = TestEnv::new(script()).await;
    env.run_sdk_program(
        &python(),
        &[&sdk_script("deployments.py")],
        "python sdk deployments ok",
    )
    .await;
}

const WORKFLOW_DEPLOYMENT_YAML: &str = "\
name: notes
agent: default
environment_id: default
workflow:
  name: release-notes
  tasks:
    - id: collect
      agent: {system: \"You are collect.\"}
      prompt: list the changes
    - id: draft
      depends_on: [collect]
      agent: {system: \"You are draft.\"}
      prompt: \"write notes from {{collect.output}}\"
";

/// The primary answers the run's ending notice; each task's thread has its own route.
fn workflow_script() -> Script {
    Script::by_turn(vec![Reply::text("noted")])
        .with_side_reply(Reply::text("title"))
        .with_route(
            Route::new("collect", vec![Reply::text("#1 fix")])
                .when_system("You are collect.")
                .by_turn(),
        )
        .with_route(
            Route::new("draft", vec![Reply::text("notes: #1 fix")])
                .when_system("You are draft.")
                .by_turn(),
        )
}

/// Waits for the workflow run's `status_ended` in its session, then returns the run.
async fn wait_workflow_end(env: &TestEnv, session: &str, run: &str) -> Value {
    let mut c = env.client().await;
    c.attach_until(session, 0, |f| {
        matches!(f, ServerFrame::Event(e) if matches!(&e.body, EventBody::WorkflowRunStatusEnded { workflow_run_id, .. } if workflow_run_id == run))
    })
    .await;
    c.call("workflow.get", json!({"run": run})).await.unwrap()
}

/// The ids of the workflow runs created in a session's log, in order.
async fn created_runs(env: &TestEnv, session: &str) -> Vec<String> {
    env.log(session)
        .await
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::WorkflowRunCreated {
                workflow_run_id, ..
            } => Some(workflow_run_id),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_deployment_from_a_file_runs_on_demand_and_its_runs_name_the_workflow_run() {
    let env = TestEnv::new(workflow_script()).await;
    let (mut daemon, base, token) = env.spawn_http_daemon().await;
    let file = env.home.path().join("notes.yaml");
    std::fs::write(&file, WORKFLOW_DEPLOYMENT_YAML).unwrap();
    let out = env.ok(&["deployments", "create", "-f", file.to_str().unwrap()]);
    assert!(
        out.contains("each fire runs workflow `release-notes` (2 tasks)"),
        "{out}"
    );
    let shown: Value =
        serde_json::from_str(&env.ok(&["deployments", "show", "notes", "--json"])).unwrap();
    assert_eq!(
        shown["workflow"]["tasks"][1]["depends_on"],
        json!(["collect"])
    );
    assert_eq!(shown["initial_events"], json!([]));

    let run: Value =
        serde_json::from_str(&env.ok(&["deployments", "run", "notes", "--json"])).unwrap();
    assert_eq!(run["error"], Value::Null, "{run}");
    let session = run["session_id"].as_str().unwrap().to_string();
    let wrun = run["workflow_run_id"].as_str().unwrap().to_string();
    assert!(wrun.starts_with("wrun_"), "{run}");
    let ended = wait_workflow_end(&env, &session, &wrun).await;
    assert_eq!(ended["result"], json!({"type": "completed"}), "{ended}");
    assert_eq!(ended["session_id"], session.as_str());
    assert_eq!(ended["tasks"][1]["output"], "notes: #1 fix", "{ended}");
    assert_eq!(created_runs(&env, &session).await, [wrun.as_str()]);
    // No initial message: the session's only user input is the run's end.
    assert!(
        !env.log(&session)
            .await
            .iter()
            .any(|e| matches!(e.body, EventBody::UserMessage { .. }))
    );

    let listed = env.ok(&["deployments", "runs", "notes"]);
    assert!(
        listed.contains(&format!("workflow run {wrun} in session {session}")),
        "{listed}"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let got: Value = reqwest::Client::new()
        .get(format!(
            "{base}/v1/deployment_runs/{}",
            run["id"].as_str().unwrap()
        ))
        .header("x-api-key", &token)
        .header("anthropic-beta", "managed-agents-2026-04-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["workflow_run_id"], wrun.as_str(), "{got}");
    assert_eq!(got["session_id"], session.as_str());

    // A workflow the workflow file rules refuse is refused at create, with that file's error.
    let bad = env.home.path().join("bad.yaml");
    std::fs::write(
        &bad,
        WORKFLOW_DEPLOYMENT_YAML
            .replace("name: notes", "name: bad")
            .replace("depends_on: [collect]", "depends_on: [nope]"),
    )
    .unwrap();
    let out = env.run(&["deployments", "create", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("workflow: the workflow is not valid") && err.contains("`nope`"),
        "{err}"
    );

    // `workflow:` may name the workflow file a person runs with `tether workflows run`,
    // relative to the deployment file; the plan is read from it.
    let dir = env.home.path().join("flows");
    std::fs::create_dir_all(dir.join("wf")).unwrap();
    let plan: String = WORKFLOW_DEPLOYMENT_YAML
        .split_once("workflow:\n")
        .unwrap()
        .1
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    std::fs::write(dir.join("wf/release.yaml"), plan).unwrap();
    let by_path = dir.join("by-path.yaml");
    std::fs::write(
        &by_path,
        "name: by-path\nagent: default\nenvironment_id: default\nworkflow: wf/release.yaml\n",
    )
    .unwrap();
    let out = env.ok(&["deployments", "create", "-f", by_path.to_str().unwrap()]);
    assert!(
        out.contains("each fire runs workflow `release-notes` (2 tasks)"),
        "{out}"
    );
    let shown: Value =
        serde_json::from_str(&env.ok(&["deployments", "show", "by-path", "--json"])).unwrap();
    assert_eq!(shown["workflow"]["tasks"][0]["id"], "collect", "{shown}");
    // A path that isn't there says which file it looked for and how to fix it.
    std::fs::write(
        &by_path,
        "name: by-path2\nagent: default\nenvironment_id: default\nworkflow: wf/gone.yaml\n",
    )
    .unwrap();
    let out = env.run(&["deployments", "create", "-f", by_path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wf/gone.yaml") && err.contains("relative to"),
        "{err}"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// kill -9 at each step of a workflow deployment's fire (run recorded; session made, run
/// not started; run created; run started, deployment run not finished), then restarts:
/// one deployment run, one session, exactly one workflow run, which completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_during_a_workflow_fire_neither_loses_nor_doubles_the_workflow_run() {
    for point in [
        "after_run_recorded",
        "before_run_workflow",
        "after_workflow_run_created",
        "after_run_session",
    ] {
        let env = TestEnv::new(workflow_script()).await;
        let daemon = env.spawn_daemon(Some(point)).await;
        let file = env.home.path().join("notes.yaml");
        std::fs::write(&file, WORKFLOW_DEPLOYMENT_YAML).unwrap();
        env.ok(&["deployments", "create", "-f", file.to_str().unwrap()]);
        let out = env.run(&["deployments", "run", "notes"]);
        assert!(
            !out.status.success(),
            "{point}: the daemon should have died"
        );
        env.wait_killed(daemon).await;
        let (runs, _) = db_state(&env);
        assert!(runs.len() == 1 && runs[0].3, "{point}: {runs:?}");

        for restart in 0..2 {
            let mut d = env.spawn_daemon(None).await;
            wait_until("the interrupted run finished", || !db_state(&env).0[0].3).await;
            let (runs, sessions) = db_state(&env);
            assert_eq!(runs.len(), 1, "{point}: {runs:?}");
            assert_eq!(runs[0].2, None, "{point}: {runs:?}");
            let session = runs[0].1.clone().expect("the run has its session");
            assert_eq!(sessions, std::slice::from_ref(&session), "{point}");
            let got = env
                .client()
                .await
                .call("deployment.run_get", json!({"run": runs[0].0}))
                .await
                .unwrap();
            let wrun = got["workflow_run_id"].as_str().unwrap().to_string();
            let ended = wait_workflow_end(&env, &session, &wrun).await;
            assert_eq!(
                ended["result"],
                json!({"type": "completed"}),
                "{point} (restart {restart}): {ended}"
            );
            assert_eq!(
                created_runs(&env, &session).await,
                [wrun.as_str()],
                "{point} (restart {restart}): exactly one workflow run"
            );
            let started = env
                .log(&session)
                .await
                .iter()
                .filter(|e| matches!(&e.body, EventBody::SpanWorkflowTaskStarted { task_id, .. } if task_id == "collect"))
                .count();
            assert_eq!(started, 1, "{point}: the first task ran once");
            let _ = env.ok(&["daemon", "stop"]);
            let _ = d.wait();
        }
    }
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let out = std::process::Command::new("grep")
        .args(["-rl", "--binary-files=text", needle])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

const GIT_TOKEN: &str = "ghs_dEpLoYtOkEn7788secret";

/// A deployment's resources (hosted `resources`): checked when written (errors name the
/// entry), echoed without the repository's token, mounted into the session each fire makes
/// (the file read-only at its path, the repository cloned with the token, the memory store
/// under /mnt/memory), replaced or cleared by an update; a file deleted since fails the
/// fire with `file_not_found_error` (and pauses a scheduled one) instead of starting a
/// session without it. The token is nowhere: not in any answer, the database, the session's
/// log or workspace, nor the daemon's log.
#[tokio::test(flavor = "multi_thread")]
async fn deployment_resources_are_mounted_in_each_fire_and_the_token_stays_sealed() {
    let env = TestEnv::new(
        Script::sequential(vec![
            Reply::tool_use(
                "bash",
                json!({"command": "cat /mnt/session/uploads/in/data.csv; cat /mnt/memory/team-notes/hello.md; cat hello/f.txt"}),
            ),
            Reply::text("done"),
        ])
        .with_side_reply(Reply::text("title")),
    )
    .await;
    // `octo/hello` on a local git server that wants the token: main, and a branch `feature`.
    let srv = env.home.path().join("git-srv");
    let bare = srv.join("octo/hello");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "--quiet", "--bare", "-b", "main"]);
    let work = env.home.path().join("git-work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "-b", "main"]);
    std::fs::write(work.join("a.txt"), "main\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "one"]);
    git(&work, &["checkout", "--quiet", "-b", "feature"]);
    std::fs::write(work.join("f.txt"), "from the feature branch\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "feat"]);
    git(
        &work,
        &["push", "--quiet", bare.to_str().unwrap(), "main", "feature"],
    );
    let git_base = tether_e2e::git_server::serve(srv, GIT_TOKEN).await;
    let port = git_base.rsplit(':').next().unwrap().to_string();

    let (mut daemon, h) =
        Api::start_with_env(&env, &[("TETHER_TEST_GITHUB_BASE", &git_base)]).await;
    let e = h
        .ok(
            "POST",
            "/v1/environments",
            Some(
                json!({"name": "git", "config": {"type": "cloud", "networking":
                {"type": "limited", "allowed_hosts": [format!("127.0.0.1:{port}")]}}}),
            ),
        )
        .await;
    let env_id = e["id"].as_str().unwrap().to_string();
    let file_id = h
        .upload("data.csv", "text/csv", b"city,temp\nOslo,3\n")
        .await;
    let store = h
        .ok(
            "POST",
            "/v1/memory_stores",
            Some(json!({"name": "Team Notes"})),
        )
        .await;
    let store_id = store["id"].as_str().unwrap().to_string();
    h.ok(
        "POST",
        &format!("/v1/memory_stores/{store_id}/memories"),
        Some(json!({"path": "/hello.md", "content": "remember the milk"})),
    )
    .await;

    let file = json!({"type": "file", "file_id": file_id, "mount_path": "in/data.csv"});
    let repo = json!({"type": "github_repository", "url": "https://github.com/octo/hello",
        "authorization_token": GIT_TOKEN, "checkout": {"type": "branch", "name": "feature"},
        "mount_path": "/workspace/hello"});
    // By name (tether); stored and answered as the store's id.
    let memory = json!({"type": "memory_store", "memory_store_id": "Team Notes",
        "access": "read_only", "instructions": "notes of the team"});
    let create = |resources: Value| {
        json!({"name": "with-resources", "agent": "default", "environment_id": env_id,
            "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}],
            "resources": resources})
    };

    // Refused when written, each error naming the entry.
    let refused = [
        (
            json!([file, {"type": "file", "file_id": "file_nope"}]),
            404,
            vec!["resources[1]", "file_nope"],
        ),
        (
            json!([file, {"type": "file", "file_id": file_id, "mount_path": "/mnt/session/uploads/in"}]),
            400,
            vec!["resources[1]", "resources[0]", "mount_path"],
        ),
        (
            json!([{"type": "github_repository", "url": "https://gitlab.com/o/r"}]),
            400,
            vec!["resources[0]", "https://github.com/OWNER/REPO"],
        ),
        (
            json!([repo, {"type": "github_repository", "url": "https://github.com/o/r", "mount_path": "/etc"}]),
            400,
            vec!["resources[1]", "/workspace/"],
        ),
        (
            json!([memory, {"type": "memory_store", "memory_store_id": store_id}]),
            400,
            vec!["resources[1]", "attached twice"],
        ),
        (
            json!([{"type": "memory_store", "memory_store_id": "memstore_nope"}]),
            404,
            vec!["resources[0]", "memstore_nope"],
        ),
    ];
    for (resources, status, words) in refused {
        let (s, err) = h
            .call("POST", "/v1/deployments", Some(create(resources.clone())))
            .await;
        let msg = err["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(s, status, "{resources}: {err}");
        for w in words {
            assert!(msg.contains(w), "`{w}` not in: {msg}");
        }
        assert!(!msg.contains(GIT_TOKEN), "{msg}");
    }

    let d = h
        .ok(
            "POST",
            "/v1/deployments",
            Some(create(json!([file, repo, memory]))),
        )
        .await;
    let id = d["id"].as_str().unwrap().to_string();
    // Echoed as given, minus the token (a store's name answered as its id).
    assert_eq!(
        d["resources"],
        json!([
            {"type": "file", "file_id": file_id, "mount_path": "in/data.csv"},
            {"type": "github_repository", "url": "https://github.com/octo/hello",
             "checkout": {"type": "branch", "name": "feature"}, "mount_path": "/workspace/hello"},
            {"type": "memory_store", "memory_store_id": store_id, "access": "read_only",
             "instructions": "notes of the team"},
        ]),
        "{d}"
    );
    let got = h.ok("GET", &format!("/v1/deployments/{id}"), None).await;
    assert_eq!(got["resources"], d["resources"]);

    let run = h
        .ok("POST", &format!("/v1/deployments/{id}/run"), None)
        .await;
    assert_eq!(run["error"], Value::Null, "{run}");
    let sid = run["session_id"].as_str().unwrap().to_string();
    env.wait_idle(&sid).await;
    let log = env.log(&sid).await;
    assert!(tether_e2e::session_errors(&log).is_empty(), "{log:?}");
    let results = tether_e2e::tool_results(&log);
    assert_eq!(results.len(), 1, "{results:?}");
    for seen in ["Oslo,3", "remember the milk", "from the feature branch"] {
        assert!(results[0].1.contains(seen), "{seen}: {results:?}");
    }
    let ws = env.paths.sessions_dir().join(&sid).join("workspace");
    assert!(ws.join("hello/.git").is_dir());
    let session = h.ok("GET", &format!("/v1/sessions/{sid}"), None).await;
    assert_eq!(
        session["resources"][0]["memory_store_id"],
        store_id.as_str()
    );
    assert_eq!(session["resources"][0]["access"], "read_only");
    let listed = h
        .ok("GET", &format!("/v1/sessions/{sid}/resources"), None)
        .await;
    let kinds: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["file", "github_repository"], "{listed}");
    let answers = [
        serde_json::to_string(&log).unwrap(),
        h.ok("GET", "/v1/deployments", None).await.to_string(),
        listed.to_string(),
        session.to_string(),
    ];
    for a in &answers {
        assert!(!a.contains(GIT_TOKEN), "{a}");
    }

    // Absent keeps them; a list replaces them whole; null and [] clear them.
    let kept = h
        .ok(
            "POST",
            &format!("/v1/deployments/{id}"),
            Some(json!({"description": "still mounted"})),
        )
        .await;
    assert_eq!(kept["resources"], d["resources"]);
    let replaced = h
        .ok(
            "POST",
            &format!("/v1/deployments/{id}"),
            Some(json!({"resources": [file]})),
        )
        .await;
    assert_eq!(
        replaced["resources"],
        json!([{"type": "file", "file_id": file_id, "mount_path": "in/data.csv"}])
    );
    let (s, err) = h
        .call(
            "POST",
            &format!("/v1/deployments/{id}"),
            Some(json!({"resources": [file, file]})),
        )
        .await;
    assert_eq!(s, 400, "{err}");
    assert!(err.to_string().contains("resources[1]"), "{err}");

    // The file deleted since: the fire fails, naming it, and makes no session.
    h.ok("DELETE", &format!("/v1/files/{file_id}"), None).await;
    let failed = h
        .ok("POST", &format!("/v1/deployments/{id}/run"), None)
        .await;
    assert_eq!(failed["session_id"], Value::Null, "{failed}");
    assert_eq!(failed["error"]["type"], "file_not_found_error", "{failed}");
    let msg = failed["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&file_id) && msg.contains("resources[0]") && msg.contains("resources"),
        "{msg}"
    );
    // A scheduled fire fails the same way and pauses the deployment (hosted auto-pause).
    let at = chrono::Utc::now() + chrono::Duration::seconds(1);
    h.ok(
        "POST",
        &format!("/v1/deployments/{id}"),
        Some(json!({"schedule": {"type": "at", "time": at.to_rfc3339()}})),
    )
    .await;
    wait_until("the scheduled fire to fail", || {
        db_state(&env).0.iter().filter(|r| r.2.is_some()).count() == 2
    })
    .await;
    let paused = h.ok("GET", &format!("/v1/deployments/{id}"), None).await;
    assert_eq!(paused["status"], "paused", "{paused}");
    assert_eq!(
        paused["paused_reason"],
        json!({"type": "error", "error": {"type": "file_not_found_error"}})
    );
    let (_, sessions) = db_state(&env);
    assert_eq!(
        sessions,
        std::slice::from_ref(&sid),
        "only the first fire made a session"
    );

    for clear in [json!(null), json!([])] {
        h.ok(
            "POST",
            &format!("/v1/deployments/{id}"),
            Some(json!({"resources": [repo]})),
        )
        .await;
        let cleared = h
            .ok(
                "POST",
                &format!("/v1/deployments/{id}"),
                Some(json!({"resources": clear})),
            )
            .await;
        assert_eq!(cleared["resources"], json!([]), "{cleared}");
    }

    let _ = daemon.kill();
    let _ = daemon.wait();
    // Sealed in the database; in no file of the data dir (database, logs, workspaces).
    let leaks = files_containing(&env.paths.data_dir, GIT_TOKEN);
    assert!(leaks.is_empty(), "the token was written to {leaks:?}");
    let daemon_log = env.daemon_log();
    assert!(!daemon_log.is_empty() && !daemon_log.contains(GIT_TOKEN));
    let db = rusqlite::Connection::open_with_flags(
        env.paths.db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let spec: String = db
        .query_row("SELECT spec FROM deployments WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(!spec.contains(GIT_TOKEN), "{spec}");
}
