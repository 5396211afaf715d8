//! Files and session resources (issue 25): `/v1/files` (multipart upload as the SDKs send it,
//! paged listing, metadata, content, delete, the size limit), `tether files`, files mounted
//! read-only into a session's sandbox under /mnt/session/uploads (mount paths re-rooted there
//! as the hosted API does, files added or removed mid-session seen at once), and the
//! session's own /mnt/session/outputs (captured into files scoped to it) and /mnt/user.
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
    assert_eq!(
        a["filename"], "report.csv",
        "only the last component is kept"
    );
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

    let resp =
        h.c.get(format!("{}/v1/files/{id}/content", h.base))
            .header("x-api-key", &h.token)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv");
    assert_eq!(&resp.bytes().await.unwrap()[..], b"id,name\n1,ada\n");

    // Over the limit: a 413 in the hosted envelope the client reads (not a reset), and
    // nothing kept.
    let (status, e) = h
        .upload("big.bin", "application/octet-stream", &vec![7u8; 150_000])
        .await;
    assert_eq!(status, 413, "{e}");
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "request_too_large");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_bytes"),
        "{e}"
    );
    // Just under the declared-length check, over the limit once streamed.
    let (status, e) = h
        .upload("big.bin", "application/octet-stream", &vec![7u8; 100_001])
        .await;
    assert_eq!(status, 413, "{e}");
    assert_eq!(blobs(&env).len(), 2);
    let tmp = env.paths.data_dir.join("files").join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);

    // No `file` part: says what to send.
    let resp =
        h.c.post(format!("{}/v1/files", h.base))
            .header("x-api-key", &h.token)
            .json(&json!({"file": "x"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("multipart/form-data"),
        "{e}"
    );

    let d = h.ok("DELETE", &format!("/v1/files/{id}"), None).await;
    assert_eq!(d, json!({"id": id, "type": "file_deleted"}));
    let (status, e) = h.call("GET", &format!("/v1/files/{id}"), None).await;
    assert_eq!(status, 404);
    assert!(e["error"]["message"].as_str().unwrap().contains(&id), "{e}");
    let (status, _) = h
        .call("GET", &format!("/v1/files/{id}/content"), None)
        .await;
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

/// The agent reads a mounted file with bash; writing or removing it fails (read-only), and
/// the file on the host is untouched.
fn read_then_write_script() -> Script {
    Script::sequential(vec![
        tether_e2e::Reply::tool_use(
            "bash",
            json!({"command": "cat /mnt/session/uploads/data.csv"}),
        ),
        tether_e2e::Reply::tool_use(
            "bash",
            json!({"command": "echo hacked > /mnt/session/uploads/data.csv; rm -f /mnt/session/uploads/data.csv; cat /mnt/session/uploads/data.csv"}),
        ),
        tether_e2e::Reply::text("done"),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_resource_is_mounted_read_only() {
    let env = TestEnv::new(read_then_write_script()).await;
    let (mut daemon, h) = Http::start(&env).await;
    let (_, f) = h
        .upload("data.csv", "text/csv", b"city,temp\nOslo,3\n")
        .await;
    let file_id = f["id"].as_str().unwrap().to_string();

    // Bad resources are refused before anything is made.
    let (status, e) = h
        .call(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": "default", "environment_id": "default",
                "resources": [{"type": "file", "file_id": "file_nope"}]})),
        )
        .await;
    assert_eq!(status, 404, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("file_nope"),
        "{e}"
    );
    let (status, e) = h
        .call(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": "default", "environment_id": "default",
                "resources": [{"type": "file", "file_id": file_id, "mount_path": "../etc/x"}]})),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/mnt/session/uploads/"),
        "{e}"
    );

    let s = h
        .ok(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": "default", "environment_id": "default",
                "resources": [{"type": "file", "file_id": file_id,
                               "mount_path": "/mnt/session/uploads/data.csv"}]})),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    let list = h
        .ok("GET", &format!("/v1/sessions/{sid}/resources"), None)
        .await;
    assert_eq!(list["data"][0]["type"], "file", "{list}");
    assert_eq!(list["data"][0]["file_id"], file_id.as_str());
    let rid = list["data"][0]["id"].as_str().unwrap().to_string();

    h.ok(
        "POST",
        &format!("/v1/sessions/{sid}/events"),
        Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "read it"}]}]})),
    )
    .await;
    env.wait_idle(&sid).await;
    let results = tether_e2e::tool_results(&env.log(&sid).await);
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[0].1.contains("Oslo,3"), "{results:?}");
    assert!(
        results[1].1.contains("Read-only file system"),
        "{results:?}"
    );
    assert!(results[1].1.contains("Oslo,3"), "still there: {results:?}");
    let blob = env
        .paths
        .data_dir
        .join("files/blobs")
        .join(f["sha256"].as_str().unwrap());
    assert_eq!(std::fs::read(&blob).unwrap(), b"city,temp\nOslo,3\n");

    // The file's deletion leaves the session's copy; the resource's deletion releases it.
    h.ok("DELETE", &format!("/v1/files/{file_id}"), None).await;
    assert!(blob.exists(), "the session still mounts it");
    let (status, e) = h
        .call(
            "GET",
            &format!("/v1/sessions/{sid}/resources/sesrsc_nope"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sesrsc_nope"),
        "{e}"
    );
    let d = h
        .ok(
            "DELETE",
            &format!("/v1/sessions/{sid}/resources/{rid}"),
            None,
        )
        .await;
    assert_eq!(d["type"], "session_resource_deleted");
    assert!(!blob.exists());

    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_uploads_a_file_and_a_session_reads_it() {
    let env = TestEnv::new(read_then_write_script()).await;
    env.run_sdk_program(
        &tether_e2e::python(),
        &[&tether_e2e::sdk_script("files.py")],
        "python sdk files ok",
    )
    .await;
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
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
    String::from_utf8_lossy(&out.stdout).trim().to_string()
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

#[tokio::test(flavor = "multi_thread")]
async fn github_repositories_are_cloned_with_a_token_that_is_never_written() {
    const TOKEN: &str = "ghs_tEsTtOkEn4242secret";
    let env = TestEnv::new(Script::sequential(vec![])).await;
    // A repository with two commits on main and a branch `feature`.
    let srv = env.home.path().join("git-srv");
    // GitHub serves `octo/hello` (no `.git`), so the bare repository is named that.
    let bare = srv.join("octo/hello");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "--quiet", "--bare", "-b", "main"]);
    let work = env.home.path().join("git-work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "-b", "main"]);
    std::fs::write(work.join("a.txt"), "v1\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "one"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("a.txt"), "v2\n").unwrap();
    git(&work, &["commit", "--quiet", "-am", "two"]);
    git(&work, &["checkout", "--quiet", "-b", "feature"]);
    std::fs::write(work.join("f.txt"), "feature\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "feat"]);
    git(
        &work,
        &["push", "--quiet", bare.to_str().unwrap(), "main", "feature"],
    );

    let base = tether_e2e::git_server::serve(srv, TOKEN).await;
    let port = base.rsplit(':').next().unwrap().to_string();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (mut daemon, b, token) = env
        .spawn_http_daemon_with_env(&[("TETHER_TEST_GITHUB_BASE", &base)])
        .await;
    let h = Http {
        base: b,
        token,
        c: reqwest::Client::new(),
    };
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
    let repo = |token: &str, checkout: Value, mount: &str| {
        json!({"type": "github_repository", "url": "https://github.com/octo/hello",
               "authorization_token": token, "checkout": checkout, "mount_path": mount})
    };
    let s = h
        .ok(
            "POST",
            "/v1/sessions",
            Some(
                json!({"agent": "default", "environment_id": env_id, "resources": [
                    repo(TOKEN, json!({"type": "branch", "name": "feature"}), "/workspace/hello"),
                    repo(TOKEN, json!({"type": "commit", "sha": first}), "/workspace/old"),
                ]}),
            ),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    let ws = env.paths.sessions_dir().join(&sid).join("workspace");
    assert_eq!(
        std::fs::read_to_string(ws.join("hello/f.txt")).unwrap(),
        "feature\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("old/a.txt")).unwrap(),
        "v1\n"
    );
    assert!(!ws.join("old/f.txt").exists());
    let list = h
        .ok("GET", &format!("/v1/sessions/{sid}/resources"), None)
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list["data"][0]["type"], "github_repository");
    assert!(
        list["data"][0].get("authorization_token").is_none(),
        "{list}"
    );
    assert!(tether_e2e::session_errors(&env.log(&sid).await).is_empty());

    // A wrong token: an error event that says so; the session goes on.
    let s2 = h
        .ok(
            "POST",
            "/v1/sessions",
            Some(
                json!({"agent": "default", "environment_id": env_id, "resources": [
                repo("ghs_wrong", json!({"type": "branch", "name": "main"}), "/workspace/hello")]}),
            ),
        )
        .await;
    let sid2 = s2["id"].as_str().unwrap().to_string();
    let errors = tether_e2e::session_errors(&env.log(&sid2).await);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].kind, "repository_authentication_error",
        "{errors:?}"
    );
    assert!(
        errors[0].message.contains("github.com/octo/hello"),
        "{errors:?}"
    );
    assert_eq!(s2["status"], "idle");

    // Outside the environment's network policy: refused before any connection.
    let s3 = h
        .ok(
            "POST",
            "/v1/sessions",
            Some(
                json!({"agent": "default", "environment_id": "default", "resources": [
                repo(TOKEN, json!({"type": "branch", "name": "main"}), "/workspace/hello")]}),
            ),
        )
        .await;
    let errors = tether_e2e::session_errors(&env.log(s3["id"].as_str().unwrap()).await);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("network policy"), "{errors:?}");

    let _ = daemon.kill();
    let _ = daemon.wait();
    // The token is nowhere: not in the workspaces (.git/config), the database, the log.
    let leaks = files_containing(&env.paths.data_dir, TOKEN);
    assert!(leaks.is_empty(), "the token was written to {leaks:?}");
    let log = env.daemon_log();
    assert!(!log.is_empty() && !log.contains(TOKEN));
    assert!(
        std::fs::read_to_string(ws.join("hello/.git/config"))
            .unwrap()
            .contains("https://github.com/octo/hello")
            || std::fs::read_to_string(ws.join("hello/.git/config"))
                .unwrap()
                .contains("/octo/hello")
    );
}

/// Runs one turn: sends `text`, waits for idle, returns the turn's tool results.
async fn turn(env: &TestEnv, h: &Http, sid: &str, text: &str) -> Vec<String> {
    let before = tether_e2e::tool_results(&env.log(sid).await).len();
    h.ok(
        "POST",
        &format!("/v1/sessions/{sid}/events"),
        Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]})),
    )
    .await;
    env.wait_idle(sid).await;
    tether_e2e::tool_results(&env.log(sid).await)
        .into_iter()
        .skip(before)
        .map(|(_, t)| t)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_paths_are_rerooted_under_uploads_and_changes_reach_a_running_sandbox() {
    let env = TestEnv::new(Script::sequential(vec![
        // turn 1: the files where the hosted API puts them, through bash and the file tools
        tether_e2e::Reply::tool_use(
            "bash",
            json!({"command": "cat /mnt/session/uploads/calc.py /mnt/session/uploads/uploads/notes.txt"}),
        ),
        tether_e2e::Reply::tool_use("read", json!({"file_path": "/mnt/session/uploads/calc.py"})),
        tether_e2e::Reply::tool_use(
            "write",
            json!({"file_path": "/mnt/session/uploads/calc.py", "content": "hacked"}),
        ),
        tether_e2e::Reply::text("read them"),
        // turn 2: a file added while the shell runs
        tether_e2e::Reply::tool_use("bash", json!({"command": "cat /mnt/session/uploads/late/l.txt"})),
        tether_e2e::Reply::text("saw it"),
        // turn 3: and removed
        tether_e2e::Reply::tool_use(
            "bash",
            json!({"command": "cat /mnt/session/uploads/late/l.txt; ls /mnt/session/uploads"}),
        ),
        tether_e2e::Reply::text("gone"),
    ]))
    .await;
    let (mut daemon, h) = Http::start(&env).await;
    let id_of = |v: &Value| v["id"].as_str().unwrap().to_string();
    let calc = id_of(
        &h.upload("calc.py", "text/x-python", b"def add(a, b): return a + b\n")
            .await
            .1,
    );
    let notes = id_of(
        &h.upload("notes.txt", "text/plain", b"remember the milk\n")
            .await
            .1,
    );
    let late = id_of(&h.upload("l.txt", "text/plain", b"added later\n").await.1);

    // A path inside another resource's file can't be given.
    let (status, e) = h
        .call(
            "POST",
            "/v1/sessions",
            Some(
                json!({"agent": "default", "environment_id": "default", "resources": [
                {"type": "file", "file_id": calc, "mount_path": "calc.py"},
                {"type": "file", "file_id": notes, "mount_path": "calc.py/notes.txt"}]}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("calc.py/notes.txt"),
        "{e}"
    );

    let s = h
        .ok(
            "POST",
            "/v1/sessions",
            Some(
                json!({"agent": "default", "environment_id": "default", "resources": [
                {"type": "file", "file_id": calc, "mount_path": "calc.py"},
                {"type": "file", "file_id": notes, "mount_path": "/uploads/notes.txt"}]}),
            ),
        )
        .await;
    let sid = id_of(&s);
    let paths: Vec<String> = h
        .ok("GET", &format!("/v1/sessions/{sid}/resources"), None)
        .await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mount_path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/mnt/session/uploads/calc.py",
            "/mnt/session/uploads/uploads/notes.txt"
        ]
    );

    let r = turn(&env, &h, &sid, "read the files").await;
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(
        r[0].contains("return a + b") && r[0].contains("remember the milk"),
        "{r:?}"
    );
    assert!(r[1].contains("return a + b"), "{r:?}");
    assert!(r[2].contains("mounted read-only"), "{r:?}");
    assert!(r[2].contains("/mnt/session/uploads/calc.py"), "{r:?}");

    let added = h
        .ok(
            "POST",
            &format!("/v1/sessions/{sid}/resources"),
            Some(json!({"type": "file", "file_id": late, "mount_path": "late/l.txt"})),
        )
        .await;
    assert_eq!(
        added["mount_path"], "/mnt/session/uploads/late/l.txt",
        "{added}"
    );
    let (status, e) = h
        .call(
            "POST",
            &format!("/v1/sessions/{sid}/resources"),
            Some(json!({"type": "file", "file_id": late, "mount_path": "/mnt/session/uploads/calc.py"})),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    let r = turn(&env, &h, &sid, "read the new one").await;
    assert!(r[0].contains("added later"), "{r:?}");

    h.ok(
        "DELETE",
        &format!("/v1/sessions/{sid}/resources/{}", id_of(&added)),
        None,
    )
    .await;
    let r = turn(&env, &h, &sid, "again").await;
    assert!(r[0].contains("No such file"), "{r:?}");
    assert!(
        r[0].contains("calc.py") && r[0].contains("uploads"),
        "{r:?}"
    );

    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn outputs_become_session_files_and_symlinks_out_are_not_followed() {
    let env = TestEnv::new(Script::sequential(vec![
        // turn 1: deliverables, scratch, and an attempt to have the daemon copy a host file
        // (a symlink to the daemon's own config) or hang on a FIFO
        tether_e2e::Reply::tool_use(
            "bash",
            json!({"command": "cd /mnt/session/outputs && printf v1 > report.md && mkdir -p sub && printf deep > sub/d.txt && ln -s /etc/passwd leak && ln -s /etc sub/etc && (mkfifo pipe || true) && echo scratch > /mnt/user/s.txt && echo wrote"}),
        ),
        tether_e2e::Reply::text("delivered"),
        // turn 2: a changed deliverable; the scratch file is still there
        tether_e2e::Reply::tool_use(
            "bash",
            json!({"command": "printf v2 > /mnt/session/outputs/report.md && cat /mnt/user/s.txt"}),
        ),
        tether_e2e::Reply::text("revised"),
    ]))
    .await;
    let (mut daemon, h) = Http::start(&env).await;
    let s = h
        .ok(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": "default", "environment_id": "default"})),
        )
        .await;
    let sid = s["id"].as_str().unwrap().to_string();
    let r = turn(&env, &h, &sid, "deliver").await;
    assert!(r[0].contains("wrote"), "{r:?}");

    // Captured before the session said it was idle: listed as soon as idle is seen.
    let scoped = h
        .ok("GET", &format!("/v1/files?scope_id={sid}"), None)
        .await;
    let names: Vec<&str> = scoped["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["report.md", "sub/d.txt"], "{scoped}");
    for f in scoped["data"].as_array().unwrap() {
        assert_eq!(f["scope"], json!({"id": sid, "type": "session"}), "{f}");
    }
    let report = scoped["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == "report.md")
        .unwrap()
        .clone();
    let rid = report["id"].as_str().unwrap().to_string();
    let content = |id: String| {
        let (c, base, token) = (h.c.clone(), h.base.clone(), h.token.clone());
        async move {
            c.get(format!("{base}/v1/files/{id}/content"))
                .header("x-api-key", token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(content(rid.clone()).await, "v1");
    // Uploads elsewhere are not this session's outputs; the unscoped listing has both.
    let (_, other) = h.upload("mine.txt", "text/plain", b"mine").await;
    assert_eq!(other["scope"], Value::Null, "{other}");
    let all = h.ok("GET", "/v1/files", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3, "{all}");
    let none = h.ok("GET", "/v1/files?scope_id=sesn_other", None).await;
    assert_eq!(none["data"], json!([]), "{none}");
    let ls = env.ok(&["files", "ls", "--session", &sid]);
    assert!(ls.contains("report.md") && ls.contains("sub/d.txt"), "{ls}");
    assert!(!ls.contains("mine.txt"), "{ls}");
    let show = env.ok(&["files", "show", &rid]);
    assert!(show.contains(&format!("session:    {sid}")), "{show}");
    let v1_blob = env
        .paths
        .data_dir
        .join("files/blobs")
        .join(report["sha256"].as_str().unwrap());
    assert!(v1_blob.exists());

    let r = turn(&env, &h, &sid, "revise").await;
    assert!(r[0].contains("scratch"), "/mnt/user is kept: {r:?}");
    let scoped = h
        .ok("GET", &format!("/v1/files?scope_id={sid}"), None)
        .await;
    assert_eq!(scoped["data"].as_array().unwrap().len(), 2, "{scoped}");
    assert_eq!(content(rid).await, "v2", "a changed output keeps its id");
    assert!(!v1_blob.exists(), "the old content's blob is released");

    // Nothing the daemon stored came through the symlinks.
    for entry in std::fs::read_dir(env.paths.data_dir.join("files/blobs")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("root:"),
            "a host file was captured"
        );
    }

    let _ = daemon.kill();
    let _ = daemon.wait();
}
