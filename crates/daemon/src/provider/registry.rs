//! The providers a daemon can talk to, by the name in `provider/model` ids:
//! built-ins (`anthropic`, `openai`, `openai-responses`, configured from the
//! usual env vars) plus every `[providers.NAME]` in config.toml. Each client is
//! built on first use (loading the system CA store costs milliseconds a cold
//! start shouldn't pay) and kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tether_proto::method::ProviderStatus;
use tokio_util::sync::CancellationToken;

use super::openai::{self, OpenAiApi, OpenAiProvider};
use super::{AnthropicProvider, ModelRequest, ModelResponse, ProviderError, StreamEvent, Who};
use crate::config::{Config, ProviderConfig, ProviderKind};

/// One provider client, whatever its wire protocol.
#[derive(Debug)]
pub enum Provider {
    Anthropic(AnthropicProvider),
    OpenAi(OpenAiProvider),
}

impl Provider {
    pub async fn stream(
        &self,
        req: &ModelRequest,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ModelResponse, ProviderError> {
        match self {
            Provider::Anthropic(p) => p.stream(req, cancel, on_event).await,
            Provider::OpenAi(p) => p.stream(req, cancel, on_event).await,
        }
    }

    /// Names for error messages.
    pub fn who(&self) -> &Who {
        match self {
            Provider::Anthropic(p) => p.who(),
            Provider::OpenAi(p) => p.who(),
        }
    }

    pub fn endpoint(&self) -> &str {
        match self {
            Provider::Anthropic(p) => p.endpoint(),
            Provider::OpenAi(p) => p.endpoint(),
        }
    }

    pub fn check_credentials(&self) -> Result<(), ProviderError> {
        match self {
            Provider::Anthropic(p) => p.check_credentials(),
            Provider::OpenAi(p) => p.check_credentials(),
        }
    }
}

/// Names that work without any configuration.
pub const BUILT_IN: &[&str] = &["anthropic", "openai", "openai-responses"];

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct Providers {
    configured: BTreeMap<String, ProviderConfig>,
    /// Legacy `[anthropic]` section (base_url, api_key_env).
    anthropic: crate::config::AnthropicConfig,
    env: Lookup,
    built: Mutex<HashMap<String, Result<Arc<Provider>, String>>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("configured", &self.configured.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Providers {
    /// Providers from the config and the process environment.
    pub fn new(config: &Config) -> Providers {
        Self::with_env(config, Arc::new(|name| std::env::var(name).ok()))
    }

    /// [`Providers::new`] with an injectable environment (tests).
    pub fn with_env(config: &Config, env: Lookup) -> Providers {
        Providers {
            configured: config.providers.clone(),
            anthropic: config.anthropic.clone(),
            env,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// Every name a model id may start with.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = BUILT_IN.iter().map(|s| s.to_string()).collect();
        for name in self.configured.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// The providers worth reporting (`daemon.status`, `tether doctor`): `anthropic`, every
    /// configured one, and the OpenAI built-ins when their env vars are set.
    pub fn in_use(&self) -> Vec<String> {
        let openai_env =
            self.var("OPENAI_API_KEY").is_some() || self.var("OPENAI_BASE_URL").is_some();
        self.names()
            .into_iter()
            .filter(|n| {
                n == "anthropic"
                    || self.configured.contains_key(n)
                    || (openai_env && BUILT_IN.contains(&n.as_str()))
            })
            .collect()
    }

    /// The client for `name`, or why there is none (a sentence with the fix).
    pub fn get(&self, name: &str) -> Result<Arc<Provider>, String> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        built
            .entry(name.to_string())
            .or_insert_with(|| self.build(name).map(Arc::new))
            .clone()
    }

    pub fn status(&self, name: &str) -> ProviderStatus {
        let (endpoint, ready, detail) = match self.get(name) {
            Ok(p) => match p.check_credentials() {
                Ok(()) => (p.endpoint().to_string(), true, "ready".to_string()),
                Err(e) => (p.endpoint().to_string(), false, e.describe(p.who())),
            },
            Err(why) => (String::new(), false, why),
        };
        ProviderStatus {
            name: name.to_string(),
            endpoint,
            ready,
            detail,
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    fn build(&self, name: &str) -> Result<Provider, String> {
        let config = match (self.configured.get(name), name) {
            (Some(c), _) => c.clone(),
            (None, "anthropic") => {
                // No table at all: behave like the official SDK (incl. ANTHROPIC_AUTH_TOKEN).
                if self.anthropic == crate::config::AnthropicConfig::default() {
                    let env = self.env.clone();
                    return AnthropicProvider::from_vars(move |v| env(v))
                        .map(Provider::Anthropic)
                        .map_err(|e| e.user_message());
                }
                ProviderConfig {
                    kind: ProviderKind::Anthropic,
                    base_url: self.anthropic.base_url.clone(),
                    api_key_env: self.anthropic.api_key_env.clone(),
                    headers: BTreeMap::new(),
                }
            }
            (None, "openai") => ProviderConfig::of_kind(ProviderKind::Openai),
            (None, "openai-responses") => ProviderConfig::of_kind(ProviderKind::OpenaiResponses),
            (None, other) => {
                return Err(format!(
                    "model provider `{other}` is not configured: use one of {} or add \
                     [providers.{other}] with kind = \"openai\" (or \"anthropic\", \
                     \"openai-responses\") and base_url to config.toml",
                    self.names()
                        .iter()
                        .map(|n| format!("`{n}/...`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        self.build_from(name, &config)
    }

    fn build_from(&self, name: &str, c: &ProviderConfig) -> Result<Provider, String> {
        let built_in = BUILT_IN.contains(&name);
        let (default_url_var, default_key_var, default_url) = match c.kind {
            ProviderKind::Anthropic => (
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_API_KEY",
                super::anthropic::DEFAULT_BASE_URL,
            ),
            ProviderKind::Openai | ProviderKind::OpenaiResponses => (
                "OPENAI_BASE_URL",
                "OPENAI_API_KEY",
                openai::DEFAULT_BASE_URL,
            ),
        };
        // Built-in names fall back to the usual env vars; a custom name says what it needs.
        let base_url = match &c.base_url {
            Some(url) => url.clone(),
            None if built_in => self
                .var(default_url_var)
                .unwrap_or_else(|| default_url.to_string()),
            None => {
                return Err(format!(
                    "[providers.{name}] in config.toml has no base_url: add one, e.g. \
                     base_url = \"http://localhost:11434/v1\""
                ));
            }
        };
        let key_var = c
            .api_key_env
            .clone()
            .or_else(|| built_in.then(|| default_key_var.to_string()));
        let key = key_var.as_deref().and_then(|v| self.var(v));
        let who = if built_in && c.kind == ProviderKind::Anthropic {
            Who {
                key_var: key_var.unwrap_or_else(|| default_key_var.into()),
                ..Who::anthropic()
            }
        } else if built_in {
            Who {
                key_var: key_var.unwrap_or_else(|| default_key_var.into()),
                ..Who::openai()
            }
        } else {
            Who {
                api: format!("the `{name}` provider ({base_url})"),
                key_var: key_var.unwrap_or_else(|| format!("api_key_env in [providers.{name}]")),
                base_url_var: format!("base_url in [providers.{name}]"),
                example_url: default_url.to_string(),
            }
        };
        let built = match c.kind {
            ProviderKind::Anthropic => {
                AnthropicProvider::with_headers(base_url, key, &c.headers, who.clone())
                    .map(Provider::Anthropic)
            }
            ProviderKind::Openai => {
                OpenAiProvider::new(OpenAiApi::Chat, &base_url, key, &c.headers, who.clone())
                    .map(Provider::OpenAi)
            }
            ProviderKind::OpenaiResponses => OpenAiProvider::new(
                OpenAiApi::Responses,
                &base_url,
                key,
                &c.headers,
                who.clone(),
            )
            .map(Provider::OpenAi),
        };
        built.map_err(|e| e.describe(&who))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn providers(config: &str, env: &[(&str, &str)]) -> Providers {
        let config = Config::parse(config).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Providers::with_env(
            &config,
            Arc::new(move |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())),
        )
    }

    #[test]
    fn built_ins_follow_the_env() {
        let p = providers(
            "",
            &[
                ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
                ("OPENAI_API_KEY", "sk-x"),
            ],
        );
        assert_eq!(
            p.get("openai").unwrap().endpoint(),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert_eq!(
            p.get("openai-responses").unwrap().endpoint(),
            "http://127.0.0.1:9/v1/responses"
        );
        assert_eq!(
            p.get("anthropic").unwrap().endpoint(),
            "https://api.anthropic.com/v1/messages"
        );
        let status = p.status("anthropic");
        assert!(!status.ready);
        assert!(status.detail.contains("ANTHROPIC_API_KEY"), "{status:?}");
        assert!(p.status("openai").ready);
        assert_eq!(p.in_use(), ["anthropic", "openai", "openai-responses"]);
        assert_eq!(providers("", &[]).in_use(), ["anthropic"]);
    }

    #[test]
    fn configured_providers() {
        let p = providers(
            "[providers.ollama]\nkind = \"openai\"\nbase_url = \"http://localhost:11434/v1\"\n\
             [providers.ollama.headers]\nX-Team = \"a\"\n\
             [providers.broken]\nkind = \"openai-responses\"\n",
            &[],
        );
        assert_eq!(
            p.get("ollama").unwrap().endpoint(),
            "http://localhost:11434/v1/chat/completions"
        );
        assert!(p.status("ollama").ready, "a local server needs no key");
        let e = p.get("broken").unwrap_err();
        assert!(
            e.contains("[providers.broken]") && e.contains("base_url"),
            "{e}"
        );
        let e = p.get("nope").unwrap_err();
        assert!(
            e.contains("`nope` is not configured") && e.contains("`ollama/...`"),
            "{e}"
        );
    }
}
