//! `tether-mcp-conformance-client <server-url>`: tetherd's MCP OAuth client
//! (`tether_daemon::resources::vaults::authorize`) driven by `@modelcontextprotocol/conformance`'s
//! client scenarios. Test-only (a binary of the e2e crate, never in a user's build).
//!
//! It connects as tetherd does (rmcp, streamable HTTP); on a 401 or a 403 insufficient_scope
//! it runs the authorization flow and connects again. The user who opens the authorization
//! URL is played by this program: it fetches the URL without following the redirect and
//! hands the `Location` (tetherd's loopback callback in real use) to `finish`.
//!
//! When the scenario's context (`MCP_CONFORMANCE_CONTEXT`) gives a `client_id` with a
//! `client_secret` or a `private_key_pem`, it uses the client-credentials grant instead, as
//! `tether vaults add --client-credentials` makes tetherd do.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use tether_daemon::resources::vaults::authorize::{self, Challenge};

/// Authorizations before giving up (the scope-retry-limit scenario refuses forever).
const MAX_AUTHORIZATIONS: usize = 3;
const REDIRECT_URI: &str = "http://127.0.0.1:33418/callback";
/// The client ID metadata document the suite's `basic-cimd` expects (the URL its reference
/// client uses; tetherd takes it from `[mcp] client_id_metadata_url`).
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut s = e.source();
    while let Some(x) = s {
        out.push_str(": ");
        out.push_str(&x.to_string());
        s = x.source();
    }
    out
}

fn auth_challenge(text: &str) -> Option<Challenge> {
    let auth = [
        "authorization required",
        "insufficient scope",
        "Auth required",
        "401",
        "403",
    ]
    .iter()
    .any(|m| text.contains(m));
    auth.then(|| authorize::challenge_in(text).unwrap_or_default())
}

/// The machine client's credentials the scenario gives, if any.
fn client_credentials() -> Option<(String, authorize::ClientSecret)> {
    let ctx: serde_json::Value =
        serde_json::from_str(&std::env::var("MCP_CONFORMANCE_CONTEXT").ok()?).ok()?;
    let id = ctx.get("client_id")?.as_str()?.to_string();
    let text = |k: &str| ctx.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let secret = text("private_key_pem")
        .map(authorize::ClientSecret::PrivateKey)
        .or_else(|| text("client_secret").map(authorize::ClientSecret::Secret))?;
    Some((id, secret))
}

async fn authorize(url: &str, challenge: &Challenge) -> anyhow::Result<String> {
    if let Some((id, secret)) = client_credentials() {
        let auth = authorize::client_credentials(url, challenge, &id, &secret, None)
            .await
            .map_err(anyhow::Error::msg)?;
        let tether_proto::vault::AuthParams::McpOauth { access_token, .. } = auth else {
            anyhow::bail!("client_credentials answered a credential that is not mcp_oauth");
        };
        return Ok(access_token.0);
    }
    let plan = authorize::prepare(
        url,
        challenge,
        REDIRECT_URI,
        "tether conformance client",
        Some(CLIENT_METADATA_URL),
        // As `tether vaults login`: the user asked for it.
        None,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let resp = browser.get(plan.authorization_url()).send().await?;
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the authorization endpoint answered {} without a redirect",
                resp.status()
            )
        })?
        .to_string();
    let granted = authorize::finish(&plan, &location)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(granted.access_token)
}

/// One session: connect, list the tools, call each; the challenge when the server wants auth.
async fn session(url: &str, token: Option<&str>) -> anyhow::Result<Option<Challenge>> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(t) = token {
        config = config.auth_header(t.to_string());
    }
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    let client = match ().serve(transport).await {
        Ok(c) => c,
        Err(e) => {
            let text = chain(&e);
            return match auth_challenge(&text) {
                Some(_) => Ok(Some(
                    authorize::fetch_challenge(url, token)
                        .await
                        .unwrap_or_default(),
                )),
                None => Err(anyhow::anyhow!("connect: {text}")),
            };
        }
    };
    let tools = match client.list_all_tools().await {
        Ok(t) => t,
        Err(e) => {
            let text = chain(&e);
            return auth_challenge(&text)
                .map(Some)
                .ok_or_else(|| anyhow::anyhow!("tools/list: {text}"));
        }
    };
    for tool in tools {
        if let Err(e) = client
            .call_tool(CallToolRequestParams::new(tool.name.to_string()))
            .await
        {
            let text = chain(&e);
            if let Some(c) = auth_challenge(&text) {
                return Ok(Some(c));
            }
            eprintln!("tools/call {}: {text}", tool.name);
        }
    }
    let _ = client.cancel().await;
    Ok(None)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = std::env::args()
        .next_back()
        .ok_or_else(|| anyhow::anyhow!("usage: tether-mcp-conformance-client <server-url>"))?;
    let mut token = None;
    let mut authorizations = 0;
    loop {
        let Some(challenge) = session(&url, token.as_deref()).await? else {
            return Ok(());
        };
        if authorizations == MAX_AUTHORIZATIONS {
            anyhow::bail!(
                "the server still wants authorization after {MAX_AUTHORIZATIONS} authorizations: {challenge:?}"
            );
        }
        authorizations += 1;
        eprintln!("authorizing: {challenge:?}");
        token = Some(authorize(&url, &challenge).await?);
    }
}
