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
        // reqwest is built without a default TLS provider (the daemon picks ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (child, base, token) = env.spawn_http_daemon().await;
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
}
