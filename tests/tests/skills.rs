//! Skills (issue 25): `/v1/skills` and versions through the official Python SDK, an agent
//! with a skill, and a session that finds it announced in its system prompt, mounted
//! read-only at `/skills/<name>/`; `tether skills` on the command line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_e2e::{Reply, TestEnv};
use tether_mock_llm::Script;

fn read_then_write_script() -> Script {
    Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "cat /skills/greeter/SKILL.md"})),
        Reply::tool_use(
            "bash",
            json!({"command": "echo hacked > /skills/greeter/SKILL.md; touch /skills/greeter/new; cat /skills/greeter/SKILL.md"}),
        ),
        Reply::text("hej"),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_uploads_a_skill_and_a_session_uses_it() {
    let env = TestEnv::new(read_then_write_script()).await;
    env.run_sdk_program(
        &tether_e2e::python(),
        &[&tether_e2e::sdk_script("skills.py")],
        "python sdk skills ok",
    )
    .await;
    // The model was told about the skill: name, description and where SKILL.md is.
    let requests = env.mock.requests();
    let turn = requests
        .iter()
        .find(|r| {
            r.body["messages"]
                .to_string()
                .contains("say hello in Swedish")
        })
        .expect("the session's first model request");
    let system = turn.body["system"].to_string();
    assert!(system.contains("<name>greeter</name>"), "{system}");
    assert!(
        system.contains("Greets people in their own language"),
        "{system}"
    );
    assert!(system.contains("/skills/greeter/SKILL.md"), "{system}");
    // Progressive disclosure: the body of SKILL.md is not in the prompt.
    assert!(!system.contains("phrase list"), "{system}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tether_skills_creates_lists_shows_and_removes() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let mut daemon = env.spawn_daemon(None).await;
    let dir = env.home.path().join("pdf-forms");
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        "---\nname: pdf-forms\ndescription: Fill PDF forms.\n---\nRun scripts/fill.py.\n",
    )
    .unwrap();
    std::fs::write(dir.join("scripts/fill.py"), "print('filled')\n").unwrap();

    let out = env.ok(&["skills", "create", dir.to_str().unwrap()]);
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("skill_"))
        .unwrap_or_else(|| panic!("no skill id in {out:?}"))
        .to_string();
    let ls = env.ok(&["skills", "ls"]);
    assert!(ls.contains(&id) && ls.contains("pdf-forms"), "{ls}");
    let show = env.ok(&["skills", "show", "pdf-forms"]);
    assert!(show.contains("Fill PDF forms."), "{show}");
    assert!(show.contains("scripts/fill.py"), "{show}");

    // A directory without SKILL.md is refused with the reason.
    let empty = env.home.path().join("empty-skill");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("README.md"), "x").unwrap();
    let bad = env.run(&["skills", "create", empty.to_str().unwrap()]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("SKILL.md"), "{err}");

    env.ok(&["skills", "rm", &id]);
    let bad = env.run(&["skills", "show", &id]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains(&id), "{err}");
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// tests/sdk/session_skills.py: `agent_with_overrides.skills` replaces the agent's skills for
/// one session: mounted, listed on the session, and announced to the model instead of the
/// agent's.
#[tokio::test(flavor = "multi_thread")]
async fn a_sessions_own_skills_replace_its_agents() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use("bash", json!({"command": "ls /skills"})),
        Reply::text("counter"),
    ]))
    .await;
    env.run_sdk_program(
        &tether_e2e::python(),
        &[&tether_e2e::sdk_script("session_skills.py")],
        "python sdk session skills ok",
    )
    .await;
    let requests = env.mock.requests();
    let turn = requests
        .iter()
        .find(|r| r.body["messages"].to_string().contains("which skills?"))
        .expect("the session's first model request");
    let system = turn.body["system"].to_string();
    assert!(system.contains("<name>counter</name>"), "{system}");
    assert!(!system.contains("<name>greeter</name>"), "{system}");
}
