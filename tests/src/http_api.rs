//! A client of a test daemon's HTTP API: the hosted headers, the token, and answers as
//! status and JSON (a body that is not JSON comes back as a string, to show in a message).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

use crate::TestEnv;

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    /// Starts `env`'s tetherd serving HTTP and a client of it.
    pub async fn start(env: &TestEnv) -> (std::process::Child, Api) {
        Self::start_with_env(env, &[]).await
    }

    /// [`Api::start`] with extra environment variables for tetherd.
    pub async fn start_with_env(
        env: &TestEnv,
        vars: &[(&str, &str)],
    ) -> (std::process::Child, Api) {
        // reqwest is built without a default TLS provider (the daemon picks ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (child, base, token) = env.spawn_http_daemon_with_env(vars).await;
        let api = Api {
            http: reqwest::Client::new(),
            base,
            token,
        };
        (child, api)
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .header("x-api-key", &self.token)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "managed-agents-2026-04-01");
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// A call that must answer 200.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert_eq!(s, 200, "{method} {path}: {v}");
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        self.ok("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.ok("POST", path, Some(body)).await
    }

    /// `POST /v1/files` as the SDK sends it (multipart, one `file` part); the new file's id.
    pub async fn upload(&self, filename: &str, mime: &str, content: &[u8]) -> String {
        let boundary = "----tetherboundary7MA4YWxkTrZu0gW";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let resp = self
            .http
            .post(format!("{}/v1/files", self.base))
            .header("x-api-key", &self.token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "POST /v1/files: {v}");
        v["id"].as_str().unwrap().to_string()
    }
}
