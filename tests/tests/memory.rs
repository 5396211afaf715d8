//! Memory stores (issue 24): the HTTP API (CRUD, preconditions, versions, redaction), a
//! session reading and writing a mounted store through bash and the file tools, read_only
//! enforced by the sandbox, and the official Python SDK driving the endpoints unmodified.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv, python, sdk_script, tool_results};
use tether_mock_llm::Script;

struct Http {
    base: String,
    token: String,
    c: reqwest::Client,
}

impl Http {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .c
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("x-api-key", &self.token)
            .header("anthropic-beta", "agent-memory-2026-07-22");
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        v
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn sha(text: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    out.stdin
        .as_ref()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = out.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_crud_preconditions_versions_and_redaction() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let (mut child, base, token) = env.spawn_http_daemon().await;
    let h = Http {
        base,
        token,
        c: client(),
    };
    let store = h
        .ok(
            "POST",
            "/v1/memory_stores",
            Some(json!({"name": "Team Notes"})),
        )
        .await;
    let sid = store["id"].as_str().unwrap().to_string();
    assert!(sid.starts_with("memstore_"));
    assert_eq!(store["description"], "");
    let m = h
        .ok(
            "POST",
            &format!("/v1/memory_stores/{sid}/memories"),
            Some(json!({"path": "/a/b.md", "content": "one"})),
        )
        .await;
    let mid = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["content"], Value::Null, "view=basic by default on create");
    assert_eq!(m["content_sha256"], sha("one"));
    assert_eq!(m["content_size_bytes"], 3);

    // Path rules and conflicts.
    let (status, e) = h
        .call(
            "POST",
            &format!("/v1/memory_stores/{sid}/memories"),
            Some(json!({"path": "/a/b.md", "content": "dup"})),
        )
        .await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["type"], "memory_path_conflict_error");
    assert!(e["error"]["message"].as_str().unwrap().contains(&mid));
    for bad in ["a.md", "/a/../b", "/a//b", "/x\u{200B}"] {
        let (status, e) = h
            .call(
                "POST",
                &format!("/v1/memory_stores/{sid}/memories"),
                Some(json!({"path": bad, "content": "x"})),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {e}");
    }
    let (status, e) = h
        .call(
            "POST",
            &format!("/v1/memory_stores/{sid}/memories"),
            Some(json!({"path": "/big", "content": "x".repeat(102_401)})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(e["error"]["message"].as_str().unwrap().contains("100 KiB"));

    // Preconditions: a stale hash is a 409 and writes nothing.
    let url = format!("/v1/memory_stores/{sid}/memories/{mid}");
    let (status, e) = h
        .call(
            "POST",
            &url,
            Some(json!({"content": "two", "precondition": {"type": "content_sha256", "content_sha256": sha("zero")}})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(e["error"]["type"], "memory_precondition_failed_error");
    assert_eq!(h.ok("GET", &url, None).await["content"], "one");
    let m2 = h
        .ok(
            "POST",
            &format!("{url}?view=full"),
            Some(json!({"content": "two", "path": "/c.md", "precondition": {"type": "content_sha256", "content_sha256": sha("one")}})),
        )
        .await;
    assert_eq!(m2["content"], "two");
    assert_eq!(m2["path"], "/c.md");
    assert_eq!(m2["id"], mid.as_str(), "a rename keeps the id");
    let basic = h.ok("GET", &format!("{url}?view=basic"), None).await;
    assert_eq!(basic["content"], Value::Null);

    // Versions: newest first, with the API actor; redaction wipes a past one.
    let versions = h
        .ok(
            "GET",
            &format!("/v1/memory_stores/{sid}/memory_versions"),
            None,
        )
        .await;
    let v = versions["data"].as_array().unwrap();
    assert_eq!(v.len(), 2, "{versions}");
    assert_eq!(v[0]["operation"], "modified");
    assert_eq!(v[0]["id"], m2["memory_version_id"]);
    assert_eq!(v[1]["operation"], "created");
    assert_eq!(v[1]["created_by"]["type"], "api_actor");
    assert_eq!(v[1]["content"], Value::Null, "basic on lists");
    let old = v[1]["id"].as_str().unwrap().to_string();
    let full = h
        .ok(
            "GET",
            &format!("/v1/memory_stores/{sid}/memory_versions/{old}"),
            None,
        )
        .await;
    assert_eq!(full["content"], "one");
    assert_eq!(full["path"], "/a/b.md");
    let (status, _) = h
        .call(
            "POST",
            &format!(
                "/v1/memory_stores/{sid}/memory_versions/{}/redact",
                v[0]["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 400, "the current version can't be redacted");
    let red = h
        .ok(
            "POST",
            &format!("/v1/memory_stores/{sid}/memory_versions/{old}/redact"),
            None,
        )
        .await;
    assert_eq!(red["content"], Value::Null);
    assert_eq!(red["path"], Value::Null);
    assert_eq!(red["content_sha256"], Value::Null);
    assert!(red["redacted_at"].is_string());
    assert_eq!(red["redacted_by"]["type"], "api_actor");

    // Delete with a stale expected hash: 409 and nothing deleted; then for real.
    let (status, _) = h
        .call(
            "DELETE",
            &format!("{url}?expected_content_sha256={}", sha("one")),
            None,
        )
        .await;
    assert_eq!(status, 409);
    h.ok("GET", &url, None).await;
    let d = h
        .ok(
            "DELETE",
            &format!("{url}?expected_content_sha256={}", sha("two")),
            None,
        )
        .await;
    assert_eq!(d, json!({"id": mid, "type": "memory_deleted"}));
    let (status, _) = h.call("GET", &url, None).await;
    assert_eq!(status, 404);
    let after = h
        .ok(
            "GET",
            &format!("/v1/memory_stores/{sid}/memory_versions?memory_id={mid}"),
            None,
        )
        .await;
    let ops: Vec<&str> = after["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["deleted", "modified", "created"]);

    // Archive: reads work, writes and updates are refused; delete cascades.
    h.ok("POST", &format!("/v1/memory_stores/{sid}/archive"), None)
        .await;
    let (status, _) = h
        .call(
            "POST",
            &format!("/v1/memory_stores/{sid}/memories"),
            Some(json!({"path": "/late", "content": "x"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .call(
            "POST",
            &format!("/v1/memory_stores/{sid}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 400);
    let listed = h.ok("GET", "/v1/memory_stores", None).await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        0,
        "archived stores are hidden"
    );
    let listed = h
        .ok("GET", "/v1/memory_stores?include_archived=true", None)
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let d = h
        .ok("DELETE", &format!("/v1/memory_stores/{sid}"), None)
        .await;
    assert_eq!(d["type"], "memory_store_deleted");
    let (status, e) = h
        .call("GET", &format!("/v1/memory_stores/{sid}"), None)
        .await;
    assert_eq!(status, 404);
    assert!(e["error"]["message"].as_str().unwrap().contains(&sid));

    // Both beta flags at once are refused.
    let resp =
        h.c.get(format!("{}/v1/memory_stores", h.base))
            .header("x-api-key", &h.token)
            .header(
                "anthropic-beta",
                "agent-memory-2026-07-22,managed-agents-2026-04-01",
            )
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let _ = child.kill();
    let _ = child.wait();
}

/// The versions of a store, over HTTP.
async fn versions(h: &Http, sid: &str) -> Vec<Value> {
    h.ok(
        "GET",
        &format!("/v1/memory_stores/{sid}/memory_versions?limit=100"),
        None,
    )
    .await["data"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_reads_and_writes_a_store_through_bash_and_the_file_tools() {
    let script = Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": "cat /mnt/memory/team-notes/hello.md && mkdir -p /mnt/memory/team-notes/sub && echo from-bash > /mnt/memory/team-notes/sub/bash.md"}),
        ),
        Reply::tool_use(
            "write",
            json!({"file_path": "/mnt/memory/team-notes/tools.md", "content": "from the write tool"}),
        ),
        Reply::tool_use(
            "edit",
            json!({"file_path": "/mnt/memory/team-notes/hello.md", "old_string": "hi", "new_string": "hello"}),
        ),
        Reply::tool_use(
            "read",
            json!({"file_path": "/mnt/memory/team-notes/sub/bash.md"}),
        ),
        Reply::tool_use("bash", json!({"command": "ls -R /mnt/memory/team-notes"})),
        Reply::text("done"),
    ]);
    let env = TestEnv::new(script).await;
    let (mut child, base, token) = env.spawn_http_daemon().await;
    let h = Http {
        base,
        token,
        c: client(),
    };
    env.ok(&[
        "memory",
        "stores",
        "create",
        "Team Notes",
        "--description",
        "what the team decided",
    ]);
    env.ok(&[
        "memory",
        "write",
        "Team Notes",
        "/hello.md",
        "--content",
        "hi there",
    ]);
    let sid = h.ok("GET", "/v1/memory_stores", None).await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let out = env.ok(&["run", "use the notes", "--memory", "Team Notes", "--json"]);
    let session = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["session_id"].as_str().map(str::to_string))
        .expect("a session id in the run's output");
    let results = tool_results(&env.log(&session).await);
    assert_eq!(results.len(), 5, "{results:?}");
    assert!(
        results[0].1.contains("hi there"),
        "bash read the store: {:?}",
        results[0]
    );
    for (status, text) in &results {
        assert_eq!(*status, tether_proto::ToolStatus::Ok, "{text}");
        assert!(!text.contains("CONFLICT"), "{text}");
    }
    assert!(results[3].1.contains("from-bash"), "{:?}", results[3]);
    assert!(results[4].1.contains("tools.md"), "{:?}", results[4]);

    // Each change is a version made by the session.
    let vs = versions(&h, &sid).await;
    let by_session: Vec<(&str, &str)> = vs
        .iter()
        .filter(|v| v["created_by"] == json!({"type": "session_actor", "session_id": session}))
        .map(|v| {
            (
                v["operation"].as_str().unwrap(),
                v["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(by_session.contains(&("created", "/sub/bash.md")), "{vs:?}");
    assert!(by_session.contains(&("created", "/tools.md")), "{vs:?}");
    assert!(by_session.contains(&("modified", "/hello.md")), "{vs:?}");
    assert_eq!(by_session.len(), 3, "one version per change: {vs:?}");
    let hello = env.ok(&["memory", "cat", "Team Notes", "/hello.md"]);
    assert_eq!(hello, "hello there");
    // Filter by session over HTTP.
    let filtered = h
        .ok(
            "GET",
            &format!("/v1/memory_stores/{sid}/memory_versions?session_id={session}"),
            None,
        )
        .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 3);

    // The session object lists the store, mounted where the agent found it.
    let s = h.ok("GET", &format!("/v1/sessions/{session}"), None).await;
    assert_eq!(s["resources"][0]["type"], "memory_store");
    assert_eq!(s["resources"][0]["mount_path"], "/mnt/memory/team-notes");
    assert_eq!(s["resources"][0]["access"], "read_write");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_store_is_read_only_inside_the_sandbox() {
    let script = Script::sequential(vec![
        Reply::tool_use(
            "bash",
            json!({"command": "cat /mnt/memory/facts/a.md; echo changed > /mnt/memory/facts/a.md; echo new > /mnt/memory/facts/b.md; echo rc=$?"}),
        ),
        Reply::tool_use(
            "write",
            json!({"file_path": "/mnt/memory/facts/a.md", "content": "changed"}),
        ),
        Reply::text("done"),
    ]);
    let env = TestEnv::new(script).await;
    let (mut child, base, token) = env.spawn_http_daemon().await;
    let h = Http {
        base,
        token,
        c: client(),
    };
    env.ok(&["memory", "stores", "create", "facts"]);
    env.ok(&["memory", "write", "facts", "/a.md", "--content", "original"]);
    let sid = h.ok("GET", "/v1/memory_stores", None).await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env.ok(&[
        "run",
        "try to change facts",
        "--memory",
        "facts:ro",
        "--json",
    ]);
    let session = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["session_id"].as_str().map(str::to_string))
        .unwrap();
    let results = tool_results(&env.log(&session).await);
    assert!(results[0].1.contains("original"), "{:?}", results[0]);
    assert!(
        results[0].1.contains("Read-only file system"),
        "a write inside the sandbox fails with EROFS: {:?}",
        results[0]
    );
    assert!(results[0].1.contains("rc=1"), "{:?}", results[0]);
    assert_eq!(results[1].0, tether_proto::ToolStatus::Error);
    assert!(results[1].1.contains("read_only"), "{:?}", results[1]);
    assert_eq!(env.ok(&["memory", "cat", "facts", "/a.md"]), "original");
    assert_eq!(versions(&h, &sid).await.len(), 1, "the store is unchanged");
    let s = h.ok("GET", &format!("/v1/sessions/{session}"), None).await;
    assert_eq!(s["resources"][0]["access"], "read_only");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_drives_memory_stores() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    env.run_sdk_program(
        &python(),
        &[&sdk_script("memory_stores.py")],
        "python sdk memory stores ok",
    )
    .await;
}
