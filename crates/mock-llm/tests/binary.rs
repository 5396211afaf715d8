//! The `tether-mock-llm` executable.

mod common;

use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tether-mock-llm"))
}

#[tokio::test]
async fn serves_builtin_scenario() {
    let mut child = binary()
        .args(["--scenario", "bash-then-read", "--port", "0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    let url = line
        .strip_prefix("listening on http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let port: u16 = url.trim_end().parse().unwrap();

    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut client = common::Client::from_stream(stream);
    let turns = [
        json!([common::user("go")]),
        json!([common::user("go"), common::assistant("")]),
        json!([
            common::user("go"),
            common::assistant(""),
            common::assistant("")
        ]),
    ];
    let mut results = Vec::new();
    for messages in turns {
        results.push(client.exchange(&common::request(messages)).await.events());
    }
    let tool = |events: &Vec<(String, serde_json::Value)>| {
        events[2].1["content_block"]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(tool(&results[0]), "bash");
    assert_eq!(tool(&results[1]), "read");
    assert_eq!(
        common::streamed_text(&results[2]),
        "The file contains hello."
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn bad_script_file_is_reported() {
    let dir = std::env::temp_dir().join(format!("mock-llm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.json");
    std::fs::write(&path, r#"{"mode": "sideways", "replies": []}"#).unwrap();
    let output = binary().arg("--script").arg(&path).output().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("broken.json"), "{stderr}");
    assert!(stderr.contains("unknown variant `sideways`"), "{stderr}");
}

#[tokio::test]
async fn bad_arguments_print_usage() {
    let output = binary().arg("--bogus").arg("1").output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("unknown argument \"--bogus\""), "{stderr}");
    assert!(stderr.contains("usage: tether-mock-llm"), "{stderr}");
}
