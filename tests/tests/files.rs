//! Files and session resources (issue 25): `/v1/files` (multipart upload as the SDKs send it,
//! paged listing, metadata, content, delete, the size limit), `tether files`, and files
//! mounted read-only into a session's sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::TestEnv;
use tether_mock_llm::Script;

struct Http {
    base: String,
    token: String,
    c: reqwest::Client,
}

/// A multipart/form-data body with one `file` part, as the SDK builds it.
fn multipart(filename: &str, mime: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----tetherboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Http {
    async fn start(env: &TestEnv) -> (std::process::Child, Http) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (child, base, token) = env.spawn_http_daemon().await;
        (
            child,
            Http {
                base,
                token,
                c: reqwest::Client::new(),
            },
        )
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .c
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("x-api-key", &self.token);
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

    async fn upload(&self, filename: &str, mime: &str, content: &[u8]) -> (u16, Value) {
        let (ctype, body) = multipart(filename, mime, content);
        let resp = self
            .c
            .post(format!("{}/v1/files", self.base))
            .header("x-api-key", &self.token)
            .header("anthropic-beta", "files-api-2025-04-14")
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn blobs(env: &TestEnv) -> Vec<String> {
    std::fs::read_dir(env.paths.data_dir.join("files").join("blobs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_upload_list_download_and_delete_over_http() {
    let env = TestEnv::with_config(Script::by_turn(vec![]), "[files]\nmax_bytes = 100000\n").await;
    let (mut daemon, h) = Http::start(&env).await;

    let (status, a) = h
        .upload("dir/report.csv", "text/csv", b"id,name\n1,ada\n")
        .await;
    assert_eq!(status, 200, "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("file_"), "{a}");
    assert_eq!(a["type"], "file");
    assert_eq!(a["filename"], "report.csv", "only the last component is kept");
    assert_eq!(a["mime_type"], "text/csv");
    assert_eq!(a["size_bytes"], 14);
    assert_eq!(a["downloadable"], true);
    assert!(a["created_at"].as_str().unwrap().ends_with('Z'));

    // A part without a type gets one from its name.
    let (_, b) = h
        .upload("notes.md", "application/octet-stream", b"# hi")
        .await;
    assert_eq!(b["mime_type"], "text/markdown");
    let b_id = b["id"].as_str().unwrap().to_string();

    assert_eq!(h.ok("GET", &format!("/v1/files/{id}"), None).await, a);

    // Newest first, one per page, the cursor leading to the next.
    let p1 = h.ok("GET", "/v1/files?limit=1", None).await;
    assert_eq!(p1["data"][0]["id"], b_id.as_str());
    let next = p1["next_page"].as_str().unwrap();
    let p2 = h
        .ok("GET", &format!("/v1/files?limit=1&page={next}"), None)
        .await;
    assert_eq!(p2["data"][0]["id"], id.as_str());
    assert!(p2["next_page"].is_null(), "{p2}");

    let resp = h
        .c
        .get(format!("{}/v1/files/{id}/content", h.base))
        .header("x-api-key", &h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv");
    assert_eq!(&resp.bytes().await.unwrap()[..], b"id,name\n1,ada\n");

    // Over the limit: a 413 in the hosted envelope the client reads (not a reset), and
    // nothing kept.
    let (status, e) = h.upload("big.bin", "application/octet-stream", &vec![7u8; 150_000]).await;
    assert_eq!(status, 413, "{e}");
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "request_too_large");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("max_bytes"),
        "{e}"
    );
    // Just under the declared-length check, over the limit once streamed.
    let (status, e) = h.upload("big.bin", "application/octet-stream", &vec![7u8; 100_001]).await;
    assert_eq!(status, 413, "{e}");
    assert_eq!(blobs(&env).len(), 2);
    let tmp = env.paths.data_dir.join("files").join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);

    // No `file` part: says what to send.
    let resp = h
        .c
        .post(format!("{}/v1/files", h.base))
        .header("x-api-key", &h.token)
        .json(&json!({"file": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert!(
        e["error"]["message"].as_str().unwrap().contains("multipart/form-data"),
        "{e}"
    );

    let d = h.ok("DELETE", &format!("/v1/files/{id}"), None).await;
    assert_eq!(d, json!({"id": id, "type": "file_deleted"}));
    let (status, e) = h.call("GET", &format!("/v1/files/{id}"), None).await;
    assert_eq!(status, 404);
    assert!(e["error"]["message"].as_str().unwrap().contains(&id), "{e}");
    let (status, _) = h.call("GET", &format!("/v1/files/{id}/content"), None).await;
    assert_eq!(status, 404);
    assert_eq!(blobs(&env).len(), 1, "the deleted file's blob went");

    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn tether_files_uploads_lists_downloads_and_removes() {
    let env = TestEnv::new(Script::by_turn(vec![])).await;
    let src = env.home.path().join("data.txt");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &content).unwrap();

    let id = env.ok(&["files", "upload", src.to_str().unwrap()]);
    let id = id.trim().to_string();
    assert!(id.starts_with("file_"), "{id}");
    let ls = env.ok(&["files", "ls"]);
    assert!(ls.contains(&id) && ls.contains("data.txt"), "{ls}");
    let show: Value = serde_json::from_str(&env.ok(&["files", "show", &id, "--json"])).unwrap();
    assert_eq!(show["size_bytes"], 200_000);
    assert_eq!(show["mime_type"], "text/plain");

    let out = env.home.path().join("back.txt");
    env.ok(&["files", "download", &id, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), content);

    env.ok(&["files", "rm", &id]);
    let o = env.run(&["files", "show", &id]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&id) && err.contains("files ls"), "{err}");
    assert!(blobs(&env).is_empty());
}
