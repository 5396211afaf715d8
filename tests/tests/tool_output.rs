//! A tool output over 100,000 characters reaches the model as a preview plus the path of a
//! workspace file holding all of it (hosted behaviour).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_e2e::{Reply, TestEnv};
use tether_mock_llm::Script;
use tether_proto::EventBody;

#[tokio::test(flavor = "multi_thread")]
async fn long_tool_output_goes_to_a_workspace_file() {
    let env = TestEnv::new(Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": "printf 'first-line\\n'; head -c 101000 /dev/zero | tr '\\0' a"}),
        ),
        Reply::text("done"),
    ]))
    .await;
    let ws = tempfile::tempdir().unwrap();
    env.run(&[
        "run",
        "go",
        "--dir",
        ws.path().to_str().unwrap(),
        "--name",
        "long",
    ]);
    let (id, text) = env
        .events("long")
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentToolResult {
                tool_use_id,
                content,
                ..
            } => Some((tool_use_id.clone(), tether_proto::blocks_text(content))),
            _ => None,
        })
        .expect("the bash call has a result");
    let relative = format!(".tether/outputs/{id}.txt");
    assert!(text.contains(&relative), "{text}");
    assert!(
        text.contains("first-line"),
        "the preview is the start: {text}"
    );
    assert!(
        text.len() < 6_000,
        "only a preview reaches the model ({} bytes)",
        text.len()
    );
    let saved = std::fs::read_to_string(ws.path().join(&relative)).unwrap();
    assert!(saved.starts_with("first-line\n"));
    assert_eq!(saved.matches('a').count(), 101_000);
}
