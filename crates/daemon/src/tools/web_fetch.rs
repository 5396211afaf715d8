//! `web_fetch {url}`: one GET from the daemon, under the session's network policy and the same
//! SSRF rules as the sandbox proxy ([`crate::net::policy`]): the host is checked before any
//! DNS lookup and the client connects only to the checked addresses. Redirects are followed
//! by hand, at most [`MAX_REDIRECTS`], each hop checked again (a public page redirecting to
//! `http://169.254.169.254/` is refused). HTML becomes Markdown; other text passes through.

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::args::Args;
use super::{INTERRUPTED_NOTE, ToolOutcome};
use crate::net::SessionNet;
use crate::provider::http::error_chain;

/// Largest body read; the rest is cut off with a note.
pub const MAX_BYTES: usize = 5 * 1024 * 1024;
/// The whole fetch, redirects included.
pub const TIME_LIMIT: Duration = Duration::from_secs(30);
pub const MAX_REDIRECTS: usize = 5;

/// Runs one `web_fetch` call.
pub async fn run(net: &SessionNet, input: &Value, cancel: &CancellationToken) -> ToolOutcome {
    let url = match parse_input(input) {
        Ok(url) => url,
        Err(e) => return ToolOutcome::error(e),
    };
    tokio::select! {
        biased;
        _ = cancel.cancelled() => ToolOutcome::interrupted(INTERRUPTED_NOTE),
        done = tokio::time::timeout(TIME_LIMIT, fetch(net, url.clone())) => match done {
            Ok(Ok(text)) => ToolOutcome::ok(text),
            Ok(Err(e)) => ToolOutcome::error(e),
            Err(_) => ToolOutcome::error(format!(
                "web_fetch: {url} did not answer within {} s; try again later or fetch a smaller page",
                TIME_LIMIT.as_secs()
            )),
        },
    }
}

fn parse_input(input: &Value) -> Result<Url, String> {
    let args = Args::new("web_fetch", input)?;
    let raw = args.req_str("url")?.trim();
    Url::parse(raw).map_err(|e| {
        format!(
            "web_fetch: `{raw}` is not a URL ({e}); write it in full, like https://example.com/page"
        )
    })
}

async fn fetch(net: &SessionNet, mut url: Url) -> Result<String, String> {
    let asked = url.clone();
    for hop in 0..=MAX_REDIRECTS {
        let resp = get_once(net, &url).await?;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .filter(|_| resp.status().is_redirection());
        let Some(location) = location else {
            return render(&asked, &url, resp).await;
        };
        if hop == MAX_REDIRECTS {
            return Err(format!(
                "web_fetch: {asked} redirected more than {MAX_REDIRECTS} times (last to {url}); \
                 fetch the final address directly"
            ));
        }
        let location = location
            .to_str()
            .map_err(|_| format!("web_fetch: {url} redirected to an unreadable Location"))?;
        url = url
            .join(location)
            .map_err(|e| format!("web_fetch: {url} redirected to `{location}`, not a URL: {e}"))?;
    }
    Err(format!("web_fetch: {asked}: too many redirects"))
}

/// One GET of `url` to the addresses the policy checked; redirects are not followed here.
async fn get_once(net: &SessionNet, url: &Url) -> Result<reqwest::Response, String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "web_fetch: only http and https URLs can be fetched, not {}:",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("web_fetch: {url} has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let refused = |r: crate::net::Refusal| format!("web_fetch: refused {url}: {r}");
    let target = net.policy().check(host, port).map_err(refused)?;
    let addrs = target.resolve(net.resolver()).await.map_err(refused)?;
    let client = crate::net::pinned_client(host, &addrs, url.scheme())
        .map_err(|e| format!("web_fetch: {e}"))?;
    client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("web_fetch: GET {url} failed: {}", error_chain(&e)))
}

/// The model's view of a response: a header line, then the page as Markdown or text.
async fn render(asked: &Url, url: &Url, mut resp: reqwest::Response) -> Result<String, String> {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("web_fetch: reading {url} failed: {}", error_chain(&e)))?
    {
        let room = MAX_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let is_html = matches!(mime.as_str(), "text/html" | "application/xhtml+xml");
    let is_text = mime.starts_with("text/")
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
        || matches!(
            mime.as_str(),
            "application/json" | "application/xml" | "application/javascript" | ""
        );
    if !is_text && !is_html {
        return Err(format!(
            "web_fetch: {url} is `{mime}` ({} bytes), not text; download it with bash (curl) if \
             the session's network allows it",
            body.len()
        ));
    }
    let text = String::from_utf8_lossy(&body);
    if mime.is_empty() && text.contains('\u{FFFD}') {
        return Err(format!(
            "web_fetch: {url} has no content type and is not text ({} bytes)",
            body.len()
        ));
    }
    let content = if is_html {
        // Scripts, styles and the like are code, not content.
        htmd::HtmlToMarkdown::builder()
            .skip_tags(vec!["script", "style", "noscript", "template", "head"])
            .build()
            .convert(&text)
            .map_err(|e| format!("web_fetch: converting {url} to Markdown: {e}"))?
    } else {
        text.into_owned()
    };
    let mut out = format!("URL: {url}\n");
    if url != asked {
        out.push_str(&format!("Redirected from: {asked}\n"));
    }
    out.push_str(&format!(
        "Status: {status}\nContent-Type: {}\n\n{}",
        if mime.is_empty() { "(none)" } else { &mime },
        content.trim()
    ));
    if truncated {
        out.push_str(&format!(
            "\n\n[truncated: only the first {} MB were read]",
            MAX_BYTES / (1024 * 1024)
        ));
    }
    if status.is_client_error() || status.is_server_error() {
        return Err(format!("web_fetch: {url} answered {status}\n\n{out}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetPolicy;
    use crate::net::policy::tests::FakeResolver;
    use serde_json::json;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-request-per-connection HTTP server with a few fixed routes.
    async fn server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut c, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let path = loop {
                        let n = c.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                        let mut headers = [httparse::EMPTY_HEADER; 32];
                        let mut req = httparse::Request::new(&mut headers);
                        if let Ok(httparse::Status::Complete(_)) = req.parse(&buf) {
                            break req.path.unwrap().to_string();
                        }
                    };
                    let (status, ctype, extra, body): (&str, &str, String, Vec<u8>) = match path
                        .as_str()
                    {
                        "/page" => (
                            "200 OK",
                            "text/html; charset=utf-8",
                            String::new(),
                            b"<html><body><h1>Title</h1><p>Hello <b>world</b>.</p>\
                                  <script>var x = 1;</script></body></html>"
                                .to_vec(),
                        ),
                        "/plain" => ("200 OK", "text/plain", String::new(), b"just text".to_vec()),
                        "/big" => (
                            "200 OK",
                            "text/plain",
                            String::new(),
                            vec![b'a'; MAX_BYTES + 10],
                        ),
                        "/bin" => (
                            "200 OK",
                            "application/octet-stream",
                            String::new(),
                            vec![0, 1, 2],
                        ),
                        "/missing" => (
                            "404 Not Found",
                            "text/plain",
                            String::new(),
                            b"nope".to_vec(),
                        ),
                        "/to-plain" => (
                            "302 Found",
                            "text/plain",
                            "Location: /plain\r\n".into(),
                            Vec::new(),
                        ),
                        "/to-metadata" => (
                            "302 Found",
                            "text/plain",
                            "Location: http://169.254.169.254/latest/meta-data/\r\n".into(),
                            Vec::new(),
                        ),
                        "/to-internal" => (
                            "301 Moved Permanently",
                            "text/plain",
                            "Location: http://internal.test/\r\n".into(),
                            Vec::new(),
                        ),
                        _ => (
                            "302 Found",
                            "text/plain",
                            format!("Location: {path}x\r\n"),
                            Vec::new(),
                        ),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = c.write_all(head.as_bytes()).await;
                    let _ = c.write_all(&body).await;
                });
            }
        });
        addr
    }

    fn net(policy: NetPolicy, resolver: Arc<FakeResolver>) -> SessionNet {
        SessionNet::new(policy, resolver, std::path::PathBuf::new())
    }

    async fn fetch_with(net: &SessionNet, url: &str) -> ToolOutcome {
        run(net, &json!({ "url": url }), &CancellationToken::new()).await
    }

    async fn setup() -> (SocketAddr, SessionNet, Arc<FakeResolver>) {
        let addr = server().await;
        let resolver = Arc::new(FakeResolver::with(&[("internal.test", "10.0.0.7")]));
        let policy =
            NetPolicy::limited(&[addr.to_string(), "internal.test".to_string()], false).unwrap();
        (addr, net(policy, resolver.clone()), resolver)
    }

    #[tokio::test]
    async fn html_becomes_markdown_and_text_passes_through() {
        let (addr, net, _) = setup().await;
        let out = fetch_with(&net, &format!("http://{addr}/page")).await;
        assert!(!out.is_error, "{}", out.content);
        assert!(out.content.contains("# Title"), "{}", out.content);
        assert!(out.content.contains("Hello **world**."), "{}", out.content);
        assert!(!out.content.contains("var x"), "{}", out.content);
        let out = fetch_with(&net, &format!("http://{addr}/plain")).await;
        assert!(out.content.ends_with("\n\njust text"), "{}", out.content);
    }

    #[tokio::test]
    async fn redirects_are_followed_and_each_hop_is_checked() {
        let (addr, net, resolver) = setup().await;
        let out = fetch_with(&net, &format!("http://{addr}/to-plain")).await;
        assert!(!out.is_error, "{}", out.content);
        assert!(out.content.contains("Redirected from: "), "{}", out.content);
        assert!(out.content.ends_with("just text"), "{}", out.content);

        let out = fetch_with(&net, &format!("http://{addr}/to-metadata")).await;
        assert!(out.is_error);
        assert!(
            out.content.contains("refused http://169.254.169.254/"),
            "{}",
            out.content
        );

        // A listed name that resolves to a private address.
        let out = fetch_with(&net, &format!("http://{addr}/to-internal")).await;
        assert!(out.is_error);
        assert!(
            out.content
                .contains("resolves to 10.0.0.7, a private address"),
            "{}",
            out.content
        );
        assert_eq!(resolver.asked(), vec!["internal.test"]);

        let out = fetch_with(&net, &format!("http://{addr}/loop")).await;
        assert!(out.is_error);
        assert!(
            out.content.contains("redirected more than 5 times"),
            "{}",
            out.content
        );
    }

    #[tokio::test]
    async fn unrestricted_still_refuses_loopback_and_private_targets() {
        let addr = server().await;
        let resolver = Arc::new(FakeResolver::with(&[("sneaky.test", "127.0.0.1")]));
        let net = net(NetPolicy::Unrestricted, resolver);
        for url in [
            format!("http://{addr}/plain"),
            format!("http://sneaky.test:{}/plain", addr.port()),
            "http://[fd00:ec2::254]/".to_string(),
        ] {
            let out = fetch_with(&net, &url).await;
            assert!(out.is_error, "{url}: {}", out.content);
            assert!(
                out.content.contains("loopback") || out.content.contains("metadata"),
                "{}",
                out.content
            );
        }
    }

    #[tokio::test]
    async fn denied_hosts_are_never_resolved() {
        let (_, net, resolver) = setup().await;
        let out = fetch_with(&net, "https://example.com/").await;
        assert!(out.is_error);
        assert!(
            out.content.contains("not in this session's allowed_hosts"),
            "{}",
            out.content
        );
        let out = fetch_with(&SessionNet::off(), "https://example.com/").await;
        assert!(out.content.contains("networking: none"), "{}", out.content);
        assert!(resolver.asked().is_empty());
    }

    #[tokio::test]
    async fn caps_errors_and_bad_input() {
        let (addr, net, _) = setup().await;
        let out = fetch_with(&net, &format!("http://{addr}/big")).await;
        assert!(!out.is_error);
        assert!(
            out.content
                .ends_with("[truncated: only the first 5 MB were read]")
        );
        assert!(out.content.len() < MAX_BYTES + 500);
        let out = fetch_with(&net, &format!("http://{addr}/bin")).await;
        assert!(
            out.is_error && out.content.contains("not text"),
            "{}",
            out.content
        );
        let out = fetch_with(&net, &format!("http://{addr}/missing")).await;
        assert!(
            out.is_error && out.content.contains("404"),
            "{}",
            out.content
        );
        let out = fetch_with(&net, "ftp://example.com/x").await;
        assert!(
            out.content.contains("only http and https"),
            "{}",
            out.content
        );
        let out = fetch_with(&net, "not a url").await;
        assert!(out.content.contains("is not a URL"), "{}", out.content);
        let out = run(&net, &json!({}), &CancellationToken::new()).await;
        assert_eq!(out.content, "web_fetch: missing required field `url`");
    }
}
