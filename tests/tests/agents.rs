//! Agents end to end: files in through the CLI, versions pinned by sessions, and what the
//! model is actually sent (system prompt, model, offered tools) per pinned version.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use tether_e2e::{Reply, TestEnv};
use tether_mock_llm::Script;

fn system_of(body: &Value) -> String {
    body["system"][0]["text"].as_str().unwrap_or("").to_string()
}

fn tools_of(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn failing(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(!out.status.success(), "tether {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const CODER_V1: &str = "name: coder
description: Reads and edits, never runs commands
model: claude-agent-test-model
system: You are coder, version one.
tools:
  - type: agent_toolset_20260401
    default_config:
      permission_policy: {type: always_allow}
    configs:
      - name: bash
        enabled: false
      - name: write
        enabled: false
metadata:
  team: infra
";

#[tokio::test(flavor = "multi_thread")]
async fn sessions_keep_the_agent_version_they_pinned() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("one"),
        Reply::text("two"),
        Reply::text("three"),
        Reply::text("four"),
    ]))
    .await;
    let files = tempfile::tempdir().unwrap();
    let v1 = write(&files, "coder.yaml", CODER_V1);
    let out = env.ok(&["agents", "create", "-f", &v1]);
    assert!(out.contains("created agent coder version 1"), "{out}");

    // Session 1 pins coder@1: its prompt, its model, and only the tools it enabled.
    env.ok(&["run", "hello", "--agent", "coder", "--name", "s1"]);
    let coder = env.ok(&["agents", "show", "coder", "--json"]);
    let coder: Value = serde_json::from_str(&coder).unwrap();
    let s1: Value =
        serde_json::from_str(env.ok(&["ls", "--json"]).lines().next().unwrap()).unwrap();
    assert_eq!(s1["agent"]["id"], coder["id"]);
    assert_eq!(s1["agent"]["version"], 1);
    let reqs = env.mock.requests();
    assert_eq!(system_of(&reqs[0].body), "You are coder, version one.");
    assert_eq!(reqs[0].body["model"], "claude-agent-test-model");
    // web_fetch: enabled by the toolset default, and the default environment has a network.
    assert_eq!(
        tools_of(&reqs[0].body),
        ["read", "edit", "glob", "grep", "web_fetch"]
    );

    // A new version (JSON this time) changes the prompt and turns bash back on.
    let v2 = write(
        &files,
        "v2.json",
        r#"{"system": "You are coder, version two.",
            "tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "write", "enabled": false}]}]}"#,
    );
    let out = env.ok(&["agents", "update", "coder", "-f", &v2]);
    assert!(out.contains("updated agent coder version 2"), "{out}");

    // The existing session still runs on version 1.
    env.ok(&["send", "s1", "again", "--wait"]);
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(system_of(&reqs[1].body), "You are coder, version one.");
    assert_eq!(
        tools_of(&reqs[1].body),
        ["read", "edit", "glob", "grep", "web_fetch"]
    );

    // A new session gets version 2; `coder@1` still pins the old one.
    env.ok(&["run", "hi", "--agent", "coder", "--name", "s2"]);
    env.ok(&["run", "hi", "--agent", "coder@1", "--name", "s3"]);
    let reqs = env.mock.requests();
    assert_eq!(system_of(&reqs[2].body), "You are coder, version two.");
    assert_eq!(reqs[2].body["model"], "claude-agent-test-model");
    assert_eq!(
        tools_of(&reqs[2].body),
        ["bash", "read", "edit", "glob", "grep", "web_fetch"]
    );
    assert_eq!(system_of(&reqs[3].body), "You are coder, version one.");

    let versions = env.ok(&["agents", "versions", "coder"]);
    assert_eq!(versions.lines().count(), 2, "{versions}");
    let shown = env.ok(&["agents", "show", "coder", "--version", "1"]);
    assert!(shown.contains("version one"), "{shown}");
    assert!(shown.contains("team: infra"), "{shown}");

    // An update made against version 1 is refused now that 2 exists, and writes nothing.
    let stale = write(&files, "stale.yaml", "version: 1\nsystem: lost update\n");
    let err = failing(&env, &["agents", "update", "coder", "-f", &stale]);
    assert!(err.contains("version 2, not 1"), "{err}");
    assert_eq!(env.ok(&["agents", "versions", "coder"]).lines().count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_agent_bad_files_and_archive() {
    let env = TestEnv::new(Script::sequential(vec![Reply::text("ok")])).await;
    let ls = env.ok(&["agents", "ls"]);
    assert!(ls.lines().any(|l| l.starts_with("default ")), "{ls}");

    // No --agent: the built-in default agent, every built-in tool this session can run
    // (web_search needs a configured backend), tether's own prompt.
    env.ok(&["run", "hi"]);
    let reqs = env.mock.requests();
    assert_eq!(
        tools_of(&reqs[0].body),
        ["bash", "read", "write", "edit", "glob", "grep", "web_fetch"]
    );
    assert!(
        system_of(&reqs[0].body).contains("capable software agent"),
        "{}",
        system_of(&reqs[0].body)
    );

    let files = tempfile::tempdir().unwrap();
    let typo = write(&files, "typo.yaml", "name: x\nsytem: hi\n");
    let err = failing(&env, &["agents", "create", "-f", &typo]);
    assert!(err.contains("typo.yaml"), "{err}");
    assert!(err.contains("unknown field `sytem`"), "{err}");
    let bad_tool = write(
        &files,
        "bad.toml",
        "name = \"x\"\n[[tools]]\ntype = \"agent_toolset_20260401\"\nconfigs = [{ name = \"bsh\" }]\n",
    );
    let err = failing(&env, &["agents", "create", "-f", &bad_tool]);
    assert!(
        err.contains("tools[0].configs[0].name: unknown tool `bsh`"),
        "{err}"
    );
    let err = failing(&env, &["new", "--agent", "nobody", "-d"]);
    assert!(err.contains("no agent `nobody`"), "{err}");

    let a = write(&files, "a.yaml", "name: short-lived\nsystem: brief\n");
    env.ok(&["agents", "create", "-f", &a]);
    let out = env.ok(&["agents", "archive", "short-lived"]);
    assert!(out.contains("archived agent short-lived"), "{out}");
    let err = failing(&env, &["new", "--agent", "short-lived", "-d"]);
    assert!(err.contains("archived"), "{err}");
    assert!(!env.ok(&["agents", "ls"]).contains("short-lived"));
    assert!(env.ok(&["agents", "ls", "--all"]).contains("(archived)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_tool_the_model_calls_anyway_is_refused_not_run() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", serde_json::json!({"command": "touch marker"})),
        Reply::text("understood"),
    ]))
    .await;
    let files = tempfile::tempdir().unwrap();
    let spec = write(&files, "coder.yaml", CODER_V1);
    env.ok(&["agents", "create", "-f", &spec]);
    let work = tempfile::tempdir().unwrap();
    let out = env.ok(&[
        "run",
        "make a marker",
        "--agent",
        "coder",
        "--dir",
        work.path().to_str().unwrap(),
    ]);
    assert!(out.contains("understood"), "{out}");
    assert!(!work.path().join("marker").exists(), "bash ran anyway");
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    let result = reqs[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .find(|b| b["type"] == "tool_result")
        .expect("a tool_result for the refused call");
    assert_eq!(result["is_error"], true);
    assert!(
        result["content"].to_string().contains("not enabled"),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn model_effort_sets_the_thinking_of_the_sessions_that_pin_it() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::text("thought hard"),
        Reply::text("thought little"),
    ]))
    .await;
    let files = tempfile::tempdir().unwrap();
    let bad = write(
        &files,
        "bad.yaml",
        "name: x\nmodel: {id: claude-sonnet-4-5, effort: {type: extreme}}\n",
    );
    let err = failing(&env, &["agents", "create", "-f", &bad]);
    assert!(err.contains("model.effort"), "{err}");
    assert!(err.contains("xhigh"), "the error lists the levels: {err}");

    let deep = write(
        &files,
        "deep.yaml",
        "name: deep\nmodel: {id: claude-sonnet-4-5, effort: {type: high}}\n",
    );
    env.ok(&["agents", "create", "-f", &deep]);
    env.ok(&["run", "--agent", "deep", "think"]);
    env.ok(&["run", "plain"]);
    let reqs = env.mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].body["thinking"],
        serde_json::json!({"type": "enabled", "budget_tokens": 16384}),
        "effort high → extended thinking"
    );
    assert!(
        reqs[0].body["max_tokens"].as_u64().unwrap() > 16384,
        "room for the answer beside the thinking"
    );
    assert!(
        reqs[1].body.get("thinking").is_none(),
        "the default agent asks for no thinking: {}",
        reqs[1].body
    );
}
