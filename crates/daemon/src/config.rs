//! `config.toml`: daemon-wide defaults. Every field is optional; a missing file means defaults.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_MODEL: &str = "anthropic/claude-sonnet-4-6";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `provider/model` (or a bare Anthropic id) for sessions that don't name one.
    pub default_model: String,
    /// Model calls allowed per turn before the turn stops with `max_turns_reached`.
    pub max_turns: u32,
    /// Output tokens per model response.
    pub max_tokens: u32,
    /// Times in a row a running session is resumed after the daemon stopped without the
    /// session making progress; one more and it goes idle with a `crash_loop` error.
    pub max_resumes: u32,
    /// Child threads a multi-agent session may have at once, idle ones included until
    /// archived (the advisor's are exempt). The hosted API's limit is 25.
    pub max_child_threads: usize,
    /// Threads one workflow run may have working at once (hosted: 64).
    pub max_workflow_threads: usize,
    /// The client's `[tui]` table (keys, ...): read by `tether`, accepted and ignored here.
    pub tui: Option<toml::Table>,
    /// The client's `[[remotes]]` (the other boxes of the fleet): read by `tether`, accepted
    /// and ignored here.
    pub remotes: Option<Vec<toml::Table>>,
    /// The client's `[notify]` (how `tether` tells you a session needs you): accepted and
    /// ignored here.
    pub notify: Option<toml::Table>,
    /// Extended thinking for every request (Anthropic `budget_tokens`; OpenAI models get a
    /// reasoning effort from it: < 4096 low, < 16384 medium, else high). Off by default.
    pub thinking_budget_tokens: Option<u32>,
    pub anthropic: AnthropicConfig,
    pub retry: RetryConfig,
    /// `[providers.NAME]`: the `NAME` of `NAME/model` ids.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// `[models."provider/model"]`: prices and context window, overriding the built-in table.
    pub models: BTreeMap<String, ModelConfig>,
    /// Per-session spending limit in USD (`None`: no limit); a turn that reaches it ends
    /// with `budget_reached`.
    pub max_cost_usd: Option<f64>,
    pub compaction: CompactionConfig,
    pub http: HttpConfig,
    pub connections: ConnectionsConfig,
    /// `[web_search]`: the backend of the `web_search` tool (not offered without one).
    pub web_search: Option<WebSearchConfig>,
    /// `[mcp]`: time limits of MCP servers and the credentials of `url` ones.
    pub mcp: McpConfig,
    /// `[workers]`: the leases of self-hosted environments' work items.
    pub workers: WorkersConfig,
    /// `[files]`: uploaded files (`/v1/files`, `tether files`).
    pub files: FilesConfig,
    /// `[webhooks]`: endpoints and how deliveries are retried.
    pub webhooks: WebhooksConfig,
}

/// `[files]`: how large an uploaded file may be.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// The largest file accepted, in bytes (the hosted limit, 500 MB, by default).
    pub max_bytes: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_bytes: 500 * 1000 * 1000,
        }
    }
}

/// `[webhooks]`: retries of deliveries, and endpoints kept in this file
/// (`[[webhooks.endpoints]]`; `tether webhooks add` makes others, kept in the database).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Attempts of one delivery before it is marked failed (`tether webhooks redeliver`
    /// sends it again).
    pub max_attempts: u32,
    /// Wait before the first retry; each next one doubles, up to `max_delay_ms`, and is
    /// jittered down by up to half so a dead receiver's backlog is spread out.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// One attempt's limit (connect + answer).
    pub timeout_secs: u64,
    /// Attempts in flight at once, over all endpoints.
    pub concurrency: usize,
    pub endpoints: Vec<WebhookEndpointConfig>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            max_attempts: 8,
            base_delay_ms: 5_000,
            max_delay_ms: 600_000,
            timeout_secs: 10,
            concurrency: 8,
            endpoints: Vec::new(),
        }
    }
}

/// One `[[webhooks.endpoints]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointConfig {
    /// Unique among these; how `tether webhooks` names it.
    pub name: String,
    pub url: String,
    /// The signing secret, `whsec_` + base64 (`secret_env` keeps it out of this file).
    #[serde(default)]
    pub secret: Option<String>,
    /// The variable of tetherd's environment holding the secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The `data.type`s to send; empty or absent: all.
    #[serde(default)]
    pub events: Vec<String>,
}

/// `[workers]`: how long a worker's claim on a work item lasts without a heartbeat.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// A lease's length when the worker asks for none (the hosted default, 300 s). A worker
    /// silent this long has its item's calls settled by the crash rules.
    pub lease_ttl_secs: u64,
    /// The most a heartbeat's `desired_ttl_seconds` gets.
    pub max_lease_ttl_secs: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            lease_ttl_secs: 300,
            max_lease_ttl_secs: 3600,
        }
    }
}

/// `[mcp]`. Credentials map the hosted vault model onto the daemon's config: a vault
/// credential names the MCP server URL it is for and holds the secret; here an entry names the
/// URL and the *environment variables* of tetherd holding the secrets, so no secret is ever in
/// an agent, an event or a log.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Starting (or reaching) a server and its `initialize` handshake.
    pub connect_timeout_secs: u64,
    /// One `tools/call`; past it the model gets an error result and the turn goes on.
    pub call_timeout_secs: u64,
    /// `[[mcp.credentials]]`, matched against each `url` server by its URL.
    pub credentials: Vec<McpCredential>,
    /// How long a server's elicitation (a question to the user during a call) waits for an
    /// answer before tetherd cancels it; the call's own limit is paused meanwhile.
    pub elicitation_timeout_secs: u64,
    /// The https URL of a client ID metadata document describing tether (published by its
    /// user): the client id at authorization servers that support such documents, instead
    /// of registering dynamically.
    pub client_id_metadata_url: Option<String>,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            connect_timeout_secs: 30,
            call_timeout_secs: 60,
            credentials: Vec::new(),
            elicitation_timeout_secs: 600,
            client_id_metadata_url: None,
        }
    }
}

/// One credential (hosted `static_bearer`, plus tether's extra headers).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpCredential {
    /// The server URL exactly as the agent's `mcp_servers[].url` spells it (a trailing `/`
    /// aside).
    pub mcp_server_url: String,
    /// The variable holding a bearer token, sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Header name → the variable holding its value (e.g. `X-Api-Key = "MY_KEY"`).
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
}

impl McpConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.max(1))
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout_secs.max(1))
    }

    pub fn elicitation_timeout(&self) -> Duration {
        Duration::from_secs(self.elicitation_timeout_secs.max(1))
    }

    /// The credential for the server at `url`, if one is configured.
    pub fn credential(&self, url: &str) -> Option<&McpCredential> {
        let norm = |u: &str| u.trim().trim_end_matches('/').to_string();
        self.credentials
            .iter()
            .find(|c| norm(&c.mcp_server_url) == norm(url))
    }
}

/// Which search service `web_search` asks.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SearchBackendKind {
    /// A SearXNG instance's JSON API (`format=json` enabled in its settings).
    Searxng,
    /// The Brave Search API (needs a subscription token).
    Brave,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebSearchConfig {
    pub backend: SearchBackendKind,
    /// SearXNG: the instance's address; Brave: overrides the API endpoint.
    #[serde(default)]
    pub url: Option<String>,
    /// Brave: the environment variable holding the token (default BRAVE_API_KEY).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "default_max_results")]
    pub max_results: usize,
}

fn default_max_results() -> usize {
    8
}

/// `[http]`: the Managed-Agents-compatible HTTP API (off unless `listen` is set).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `HOST:PORT` to listen on, e.g. `127.0.0.1:8470`; `tetherd --http` overrides it.
    pub listen: Option<String>,
    /// Allow a non-loopback `listen` address (anyone who can reach it and has the token
    /// drives your agents and their tools).
    pub allow_remote: bool,
}

/// `[connections]`: how many clients each listener (the local socket, the HTTP API) holds at
/// once, and how long a new local connection may take to say hello.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Open connections per listener; unset: a quarter of the open-file limit, at most 4096.
    /// Past it a new connection closes the oldest one that has not said hello, or is refused
    /// with `too_many_connections` when all have.
    pub max: Option<usize>,
    /// A local connection that has not said hello within this is closed (`handshake_timeout`).
    pub handshake_timeout_ms: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max: None,
            handshake_timeout_ms: 5000,
        }
    }
}

impl ConnectionsConfig {
    /// The cap, given the process's open-file limit.
    pub fn max(&self, fd_limit: Option<u64>) -> usize {
        self.max
            .unwrap_or_else(|| crate::admission::default_max_connections(fd_limit))
            .max(1)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.max(1))
    }
}

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Anthropic Messages API.
    Anthropic,
    /// OpenAI Chat Completions (also Ollama, vLLM, LM Studio, OpenRouter, LiteLLM).
    Openai,
    /// OpenAI Responses API.
    OpenaiResponses,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// E.g. `http://localhost:11434/v1`; built-in names default to their env var / public URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of the environment variable holding the key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl ProviderConfig {
    pub fn of_kind(kind: ProviderKind) -> ProviderConfig {
        ProviderConfig {
            kind,
            base_url: None,
            api_key_env: None,
            headers: BTreeMap::new(),
        }
    }
}

/// Per-model overrides; prices are USD per million tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub context_window: Option<u64>,
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
    pub cache_read_per_mtok: Option<f64>,
    pub cache_write_per_mtok: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Compact when the next request would use more than this share of the context window.
    pub threshold: f64,
    /// Most recent messages kept verbatim after a compaction.
    pub keep_recent_messages: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            threshold: 0.8,
            keep_recent_messages: 6,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnthropicConfig {
    /// Overrides ANTHROPIC_BASE_URL.
    pub base_url: Option<String>,
    /// Name of the environment variable holding the key (default ANTHROPIC_API_KEY).
    pub api_key_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            base_delay_ms: 1000,
            max_delay_ms: 60_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_model: DEFAULT_MODEL.to_string(),
            max_turns: 100,
            max_tokens: 16_384,
            max_resumes: 3,
            max_child_threads: tether_proto::multiagent::MAX_CHILD_THREADS,
            max_workflow_threads: tether_proto::workflow::MAX_RUN_THREADS,
            tui: None,
            remotes: None,
            notify: None,
            thinking_budget_tokens: None,
            anthropic: AnthropicConfig::default(),
            retry: RetryConfig::default(),
            providers: BTreeMap::new(),
            models: BTreeMap::new(),
            max_cost_usd: None,
            compaction: CompactionConfig::default(),
            http: HttpConfig::default(),
            connections: ConnectionsConfig::default(),
            web_search: None,
            mcp: McpConfig::default(),
            workers: WorkersConfig::default(),
            files: FilesConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        if let Some(u) = &c.mcp.client_id_metadata_url {
            // The draft (and MCP 2025-11-25) require an https URL with a path.
            let ok = reqwest::Url::parse(u)
                .is_ok_and(|p| p.scheme() == "https" && p.path() != "/" && !p.path().is_empty());
            if !ok {
                return Err(format!(
                    "[mcp] client_id_metadata_url: `{u}` must be an https URL with a path (where tether's client ID metadata document is published, e.g. https://example.com/tether/client.json)"
                ));
            }
        }
        Ok(c)
    }
}

/// `provider/model` → (provider, model); a bare id means Anthropic.
pub fn split_model(model: &str) -> (&str, &str) {
    match model.split_once('/') {
        Some((p, m)) => (p, m),
        None => ("anthropic", model),
    }
}

/// The canonical `provider/model` spelling.
pub fn canonical_model(model: &str) -> String {
    let (p, m) = split_model(model);
    format!("{p}/{m}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_partial_files() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c = Config::parse("default_model = \"claude-opus-4-1\"\n[retry]\nbase_delay_ms = 5\n")
            .unwrap();
        assert_eq!(c.default_model, "claude-opus-4-1");
        assert_eq!(c.retry.base_delay_ms, 5);
        assert_eq!(c.retry.max_attempts, 5);
    }

    #[test]
    fn the_clients_tui_table_is_accepted() {
        let c = Config::parse(
            "[tui]\ndetach = \"ctrl-q\"\n[[remotes]]\nname = \"gpu1\"\nurl = \"ssh://me@gpu1\"\n[notify]\ncommand = \"x\"\n",
        )
        .unwrap();
        assert_eq!(c.default_model, DEFAULT_MODEL);
    }

    #[test]
    fn providers_models_and_budget() {
        let c = Config::parse(
            "max_cost_usd = 2.5\n\
             [providers.ollama]\nkind = \"openai\"\nbase_url = \"http://localhost:11434/v1\"\n\
             [providers.resp]\nkind = \"openai-responses\"\napi_key_env = \"MY_KEY\"\n\
             [providers.resp.headers]\nOpenAI-Organization = \"org-1\"\n\
             [models.\"ollama/qwen3:8b\"]\ncontext_window = 32768\ninput_per_mtok = 0.0\n",
        )
        .unwrap();
        assert_eq!(c.max_cost_usd, Some(2.5));
        assert_eq!(c.providers["ollama"].kind, ProviderKind::Openai);
        assert_eq!(c.providers["resp"].kind, ProviderKind::OpenaiResponses);
        assert_eq!(c.providers["resp"].api_key_env.as_deref(), Some("MY_KEY"));
        assert_eq!(c.providers["resp"].headers["OpenAI-Organization"], "org-1");
        assert_eq!(c.models["ollama/qwen3:8b"].context_window, Some(32768));
        let e = Config::parse("[providers.x]\nkind = \"gemini\"\n").unwrap_err();
        assert!(e.contains("gemini"), "{e}");
    }

    /// The example in README.md stays a valid config.
    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("`config.toml` (all optional):\n\n```toml\n")
            .expect("README has the config example");
        let block = &readme[start..];
        let block = &block[block.find("```toml\n").unwrap() + 8..];
        let block = &block[..block.find("```").unwrap()];
        let c = Config::parse(block).unwrap();
        assert_eq!(c.providers["ollama"].kind, ProviderKind::Openai);
        assert_eq!(c.max_cost_usd, Some(5.0));
        assert_eq!(c.compaction.threshold, 0.8);
    }

    #[test]
    fn mcp_limits_and_credentials() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.mcp.call_timeout(), Duration::from_secs(60));
        let c = Config::parse(
            "[mcp]\ncall_timeout_secs = 5\n\
             [[mcp.credentials]]\nmcp_server_url = \"https://mcp.example.com/mcp/\"\n\
             bearer_token_env = \"EX_TOKEN\"\nheaders_env = { X-Api-Key = \"EX_KEY\" }\n",
        )
        .unwrap();
        assert_eq!(c.mcp.call_timeout(), Duration::from_secs(5));
        assert_eq!(c.mcp.connect_timeout(), Duration::from_secs(30));
        let cred = c.mcp.credential("https://mcp.example.com/mcp").unwrap();
        assert_eq!(cred.bearer_token_env.as_deref(), Some("EX_TOKEN"));
        assert_eq!(cred.headers_env["X-Api-Key"], "EX_KEY");
        assert!(c.mcp.credential("https://other.example.com/mcp").is_none());
        let e = Config::parse("[[mcp.credentials]]\nmcp_server_url = \"x\"\ntoken = \"t\"\n")
            .unwrap_err();
        assert!(e.contains("token"), "{e}");
        let c =
            Config::parse("[mcp]\nclient_id_metadata_url = \"https://example.com/tether.json\"\n")
                .unwrap();
        assert_eq!(
            c.mcp.client_id_metadata_url.as_deref(),
            Some("https://example.com/tether.json")
        );
        let e = Config::parse("[mcp]\nclient_id_metadata_url = \"http://example.com/t.json\"\n")
            .unwrap_err();
        assert!(e.contains("https URL with a path"), "{e}");
    }

    #[test]
    fn connection_limits() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.connections.max(Some(1024)), 256);
        assert_eq!(c.connections.handshake_timeout(), Duration::from_secs(5));
        let c = Config::parse("[connections]\nmax = 10\nhandshake_timeout_ms = 250\n").unwrap();
        assert_eq!(c.connections.max(Some(1024)), 10);
        assert_eq!(
            c.connections.handshake_timeout(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse("defualt_model = \"x\"").unwrap_err();
        assert!(e.contains("defualt_model"), "{e}");
    }

    #[test]
    fn model_ids() {
        assert_eq!(
            split_model("claude-sonnet-4-6"),
            ("anthropic", "claude-sonnet-4-6")
        );
        assert_eq!(split_model("openai/gpt-5.1"), ("openai", "gpt-5.1"));
        assert_eq!(split_model("ollama/qwen3:8b"), ("ollama", "qwen3:8b"));
        assert_eq!(canonical_model("claude-x"), "anthropic/claude-x");
    }
}
