//! `web_search {query}`: a web search through the backend configured in `[web_search]` — a
//! SearXNG instance's JSON API or the Brave Search API. The backend is the operator's own
//! service, reached from the daemon (like the model provider), so the session's network
//! policy does not apply to it (hosted: networking does not restrict web_search). With no
//! backend configured the tool is not offered to the model; `tether doctor` says how.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::args::Args;
use super::{INTERRUPTED_NOTE, ToolOutcome};
use crate::config::{SearchBackendKind, WebSearchConfig};
use crate::provider::http::{client_builder, error_chain, install_crypto_provider};

const TIME_LIMIT: Duration = Duration::from_secs(20);
const BRAVE_URL: &str = "https://api.search.brave.com/res/v1/web/search";

/// A configured search backend, with its client built once.
pub struct WebSearch {
    kind: SearchBackendKind,
    url: String,
    api_key: Option<String>,
    max_results: usize,
    client: reqwest::Client,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub title: String,
    pub url: String,
    pub snippet: String,
}

impl WebSearch {
    /// The backend `config` describes; `Err` says what is missing (shown by `tether doctor`
    /// and in the daemon log).
    pub fn from_config(config: &WebSearchConfig) -> Result<WebSearch, String> {
        let kind = config.backend;
        let url = match (kind, &config.url) {
            (_, Some(u)) => u.trim_end_matches('/').to_string(),
            (SearchBackendKind::Brave, None) => BRAVE_URL.to_string(),
            (SearchBackendKind::Searxng, None) => {
                return Err("[web_search] backend = \"searxng\" needs `url`, the instance's address (e.g. http://127.0.0.1:8888)".into());
            }
        };
        let api_key = match kind {
            SearchBackendKind::Brave => {
                let var = config.api_key_env.as_deref().unwrap_or("BRAVE_API_KEY");
                let key = std::env::var(var).ok().filter(|k| !k.trim().is_empty());
                Some(key.ok_or_else(|| {
                    format!("[web_search] backend = \"brave\" needs an API key in ${var} (get one at https://brave.com/search/api/)")
                })?)
            }
            SearchBackendKind::Searxng => None,
        };
        install_crypto_provider();
        let client = client_builder()
            .timeout(TIME_LIMIT)
            .build()
            .map_err(|e| format!("[web_search]: cannot build the HTTP client: {e}"))?;
        Ok(WebSearch {
            kind,
            url,
            api_key,
            max_results: config.max_results.clamp(1, 20),
            client,
        })
    }

    pub fn describe(&self) -> String {
        match self.kind {
            SearchBackendKind::Searxng => format!("SearXNG at {}", self.url),
            SearchBackendKind::Brave => format!("Brave Search API ({})", self.url),
        }
    }

    /// Runs one `web_search` call.
    pub async fn run(&self, input: &Value, cancel: &CancellationToken) -> ToolOutcome {
        let query = match Args::new("web_search", input)
            .and_then(|a| a.req_str("query").map(str::to_string))
        {
            Ok(q) if !q.trim().is_empty() => q,
            Ok(_) => return ToolOutcome::error("web_search: the query is empty"),
            Err(e) => return ToolOutcome::error(e),
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => ToolOutcome::interrupted(INTERRUPTED_NOTE),
            r = self.search(&query) => match r {
                Ok(hits) => ToolOutcome::ok(render(&query, &hits)),
                Err(e) => ToolOutcome::error(e),
            },
        }
    }

    pub async fn search(&self, query: &str) -> Result<Vec<Hit>, String> {
        let count = self.max_results.to_string();
        let (base, params): (String, Vec<(&str, &str)>) = match self.kind {
            SearchBackendKind::Searxng => (
                format!("{}/search", self.url),
                vec![("q", query), ("format", "json")],
            ),
            SearchBackendKind::Brave => (self.url.clone(), vec![("q", query), ("count", &count)]),
        };
        let url = reqwest::Url::parse_with_params(&base, &params).map_err(|e| {
            format!("web_search: `{base}` is not a URL ({e}); fix [web_search] url")
        })?;
        let mut req = self.client.get(url).header("Accept", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("X-Subscription-Token", key);
        }
        let resp = req.send().await.map_err(|e| {
            format!(
                "web_search: {} did not answer: {}",
                self.describe(),
                error_chain(&e)
            )
        })?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("web_search: reading the answer failed: {}", error_chain(&e)))?;
        if !status.is_success() {
            let hint = match (self.kind, status.as_u16()) {
                (SearchBackendKind::Searxng, 403) => {
                    " (enable the json format under `search.formats` in the instance's settings.yml)"
                }
                (SearchBackendKind::Brave, 401 | 422) => " (check the API key)",
                (_, 429) => " (rate limited; try again later)",
                _ => "",
            };
            let tail: String = body.chars().take(300).collect();
            return Err(format!(
                "web_search: {} answered {status}{hint}: {tail}",
                self.describe()
            ));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| {
            format!(
                "web_search: {} answered something that is not JSON ({e})",
                self.describe()
            )
        })?;
        Ok(parse_hits(self.kind, &v, self.max_results))
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The hits of a SearXNG (`results[]`) or Brave (`web.results[]`) answer.
pub fn parse_hits(kind: SearchBackendKind, v: &Value, max: usize) -> Vec<Hit> {
    let (list, snippet_key) = match kind {
        SearchBackendKind::Searxng => (v.get("results"), "content"),
        SearchBackendKind::Brave => (v.get("web").and_then(|w| w.get("results")), "description"),
    };
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|r| Hit {
                    title: text(r, "title"),
                    url: text(r, "url"),
                    snippet: strip_tags(&text(r, snippet_key)),
                })
                .filter(|h| !h.url.is_empty())
                .take(max)
                .collect()
        })
        .unwrap_or_default()
}

/// Brave marks matches with `<strong>`; the model wants plain text.
fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

pub fn render(query: &str, hits: &[Hit]) -> String {
    if hits.is_empty() {
        return format!("No results for \"{query}\".");
    }
    let mut out = format!("Results for \"{query}\":\n");
    for (i, h) in hits.iter().enumerate() {
        out.push_str(&format!("\n{}. {}\n   {}\n", i + 1, h.title, h.url));
        if !h.snippet.is_empty() {
            out.push_str(&format!("   {}\n", h.snippet));
        }
    }
    out.push_str("\nUse web_fetch to read a page.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_answer_shapes_become_numbered_hits() {
        let searx = json!({"results": [
            {"title": "Rust", "url": "https://rust-lang.org", "content": "A language"},
            {"title": "No url"},
            {"title": "Tokio", "url": "https://tokio.rs", "content": ""}]});
        let hits = parse_hits(SearchBackendKind::Searxng, &searx, 5);
        assert_eq!(hits.len(), 2);
        let text = render("rust", &hits);
        assert!(
            text.contains("1. Rust\n   https://rust-lang.org\n   A language"),
            "{text}"
        );
        assert!(text.contains("2. Tokio\n   https://tokio.rs\n"), "{text}");
        let brave = json!({"web": {"results": [
            {"title": "A", "url": "https://a.example", "description": "the <strong>a</strong> site"}]}});
        let hits = parse_hits(SearchBackendKind::Brave, &brave, 5);
        assert_eq!(hits[0].snippet, "the a site");
        assert_eq!(parse_hits(SearchBackendKind::Brave, &searx, 5), vec![]);
        assert_eq!(render("zzz", &[]), "No results for \"zzz\".");
        let many = json!({"results": (0..30).map(|i| json!({"title": i.to_string(), "url": format!("https://x/{i}")})).collect::<Vec<_>>()});
        assert_eq!(parse_hits(SearchBackendKind::Searxng, &many, 3).len(), 3);
    }

    #[test]
    fn missing_settings_are_explained() {
        let e = WebSearch::from_config(&WebSearchConfig {
            backend: SearchBackendKind::Searxng,
            url: None,
            api_key_env: None,
            max_results: 5,
        })
        .err()
        .unwrap();
        assert!(e.contains("needs `url`"), "{e}");
        let e = WebSearch::from_config(&WebSearchConfig {
            backend: SearchBackendKind::Brave,
            url: None,
            api_key_env: Some("TETHER_TEST_NO_SUCH_KEY_VAR".into()),
            max_results: 5,
        })
        .err()
        .unwrap();
        assert!(e.contains("$TETHER_TEST_NO_SUCH_KEY_VAR"), "{e}");
    }

    #[tokio::test]
    async fn a_searxng_instance_is_queried_with_the_json_format() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let body =
                r#"{"results":[{"title":"Found","url":"https://found.example","content":"it"}]}"#;
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(resp.as_bytes()).await.unwrap();
            head
        });
        let ws = WebSearch::from_config(&WebSearchConfig {
            backend: SearchBackendKind::Searxng,
            url: Some(format!("http://{addr}/")),
            api_key_env: None,
            max_results: 5,
        })
        .unwrap();
        let out = ws
            .run(
                &json!({"query": "what is found"}),
                &CancellationToken::new(),
            )
            .await;
        assert!(!out.is_error, "{}", out.content);
        assert!(out.content.contains("1. Found"), "{}", out.content);
        let head = server.await.unwrap();
        assert!(
            head.starts_with("GET /search?q=what+is+found&format=json "),
            "{head}"
        );
    }
}
