//! The providers a daemon can talk to, by the name in `provider/model` ids:
//! built-ins (`anthropic`, `openai`, `openai-responses`, configured from the
//! usual env vars) plus every `[providers.NAME]` in config.toml. Each client is
//! built on first use (loading the system CA store costs milliseconds a cold
//! start shouldn't pay) and kept until `credentials.toml` changes.
//!
//! A key comes from the daemon's environment (the variable the provider names) or, failing
//! that, from `credentials.toml` (`tether auth login`), which is looked at on every use.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use std::path::PathBuf;

use tether_proto::credentials::key_hint;
use tether_proto::method::ProviderStatus;
use tokio_util::sync::CancellationToken;

use super::credentials::CredentialFile;
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

/// The variable a provider of `kind` reads its key from by default.
fn default_key_var(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
        ProviderKind::Openai | ProviderKind::OpenaiResponses => "OPENAI_API_KEY",
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
    /// `tether auth login`'s keys; None in tests that only inject an environment.
    credentials: Option<CredentialFile>,
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
    /// Providers from the config, the process environment and the stored credentials.
    pub fn new(config: &Config, credentials: PathBuf) -> Providers {
        let mut p = Self::with_env(config, Arc::new(|name| std::env::var(name).ok()));
        p.credentials = Some(CredentialFile::new(credentials));
        p
    }

    /// [`Providers::new`] with an injectable environment (tests).
    pub fn with_env(config: &Config, env: Lookup) -> Providers {
        Providers {
            configured: config.providers.clone(),
            anthropic: config.anthropic.clone(),
            env,
            credentials: None,
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
    /// configured one, and the OpenAI built-ins when their env vars are set or a key is stored.
    pub fn in_use(&self) -> Vec<String> {
        drop(self.built());
        let openai_env = self.var("OPENAI_API_KEY").is_some()
            || self.var("OPENAI_BASE_URL").is_some()
            || self.stored("openai").is_some();
        self.names()
            .into_iter()
            .filter(|n| {
                n == "anthropic"
                    || self.configured.contains_key(n)
                    || (openai_env && BUILT_IN.contains(&n.as_str()))
            })
            .collect()
    }

    /// The built clients, forgotten first when the credentials file changed since the last
    /// look: clients hold their key, so they are built again. Every reader of the file goes
    /// through here, so no reader can see a new key while a client still has the old one.
    fn built(&self) -> std::sync::MutexGuard<'_, HashMap<String, Result<Arc<Provider>, String>>> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if self.credentials.as_ref().is_some_and(|c| c.refresh()) {
            built.clear();
        }
        built
    }

    /// The client for `name`, or why there is none (a sentence with the fix).
    pub fn get(&self, name: &str) -> Result<Arc<Provider>, String> {
        let mut built = self.built();
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
        let (key_source, key_hint) = match self.key_origin(name) {
            Some((source, key)) => (Some(source), Some(key_hint(&key))),
            None => (None, None),
        };
        let detail = match self.credentials.as_ref().and_then(|c| c.problem()) {
            Some(problem) if key_source.is_none() => format!("{detail}; {problem}"),
            _ => detail,
        };
        ProviderStatus {
            name: name.to_string(),
            endpoint,
            ready,
            detail,
            key_source,
            key_hint,
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    /// The key stored for `name` by `tether auth login`.
    fn stored(&self, name: &str) -> Option<String> {
        self.credentials.as_ref().and_then(|c| c.key(name))
    }

    /// The environment variable `name`'s key is read from, if it has one.
    fn key_var(&self, name: &str) -> Option<String> {
        match (self.configured.get(name), name) {
            (Some(c), _) => c.api_key_env.clone().or_else(|| {
                BUILT_IN
                    .contains(&name)
                    .then(|| default_key_var(c.kind).to_string())
            }),
            (None, "anthropic") => Some(
                self.anthropic
                    .api_key_env
                    .clone()
                    .unwrap_or_else(|| "ANTHROPIC_API_KEY".into()),
            ),
            (None, "openai" | "openai-responses") => Some("OPENAI_API_KEY".into()),
            (None, _) => None,
        }
    }

    /// Where the key for `name` comes from and the key itself (the order [`Providers::build`]
    /// uses: the daemon's environment first, then the stored credentials).
    fn key_origin(&self, name: &str) -> Option<(String, String)> {
        if let Some(var) = self.key_var(name)
            && let Some(key) = self.var(&var)
        {
            return Some((format!("{var} in tetherd's environment"), key));
        }
        if name == "anthropic"
            && !self.configured.contains_key(name)
            && let Some(token) = self.var("ANTHROPIC_AUTH_TOKEN")
        {
            return Some((
                "ANTHROPIC_AUTH_TOKEN in tetherd's environment".into(),
                token,
            ));
        }
        let file = self.credentials.as_ref()?;
        let key = file.key(name)?;
        Some((
            format!("{} (tether auth login)", file.path().display()),
            key,
        ))
    }

    fn build(&self, name: &str) -> Result<Provider, String> {
        let config = match (self.configured.get(name), name) {
            (Some(c), _) => c.clone(),
            (None, "anthropic") => {
                // No table at all: behave like the official SDK (incl. ANTHROPIC_AUTH_TOKEN).
                if self.anthropic == crate::config::AnthropicConfig::default() {
                    let env = self.env.clone();
                    let stored = self.stored("anthropic");
                    let has_token = self.var("ANTHROPIC_AUTH_TOKEN").is_some();
                    return AnthropicProvider::from_vars(move |v| {
                        let stored = (v == "ANTHROPIC_API_KEY" && !has_token)
                            .then(|| stored.clone())
                            .flatten();
                        env(v).filter(|k| !k.trim().is_empty()).or(stored)
                    })
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
        let key = key_var
            .as_deref()
            .and_then(|v| self.var(v))
            .or_else(|| self.stored(name));
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

    #[test]
    fn stored_keys_are_used_when_the_environment_has_none_and_seen_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials.toml");
        let mut p = providers("", &[]);
        p.credentials = Some(CredentialFile::new(file.clone()));
        let before = p.status("anthropic");
        assert!(!before.ready && before.key_source.is_none(), "{before:?}");
        let keyless = p.get("anthropic").unwrap();

        std::fs::write(
            &file,
            "[anthropic]\napi_key = \"sk-ant-api03-0123456789abcdefWXYZ\"\n\
             [openai]\napi_key = \"sk-proj-0123456789abcdef9876\"\n",
        )
        .unwrap();
        // Whoever looks first (here the provider listing of `daemon.status`), the client
        // built without a key is not handed out again.
        assert_eq!(p.in_use(), ["anthropic", "openai", "openai-responses"]);
        assert!(!Arc::ptr_eq(&keyless, &p.get("anthropic").unwrap()));
        let after = p.status("anthropic");
        assert!(after.ready, "{after:?}");
        assert_eq!(after.key_hint.as_deref(), Some("sk-ant-…WXYZ"));
        assert!(after.key_source.unwrap().contains("tether auth login"));
        assert!(p.status("openai-responses").ready, "shares the openai key");
        assert_eq!(p.in_use(), ["anthropic", "openai", "openai-responses"]);

        // The daemon's own environment wins over the file.
        let mut q = providers("", &[("OPENAI_API_KEY", "sk-proj-fromenvironment0000")]);
        q.credentials = Some(CredentialFile::new(file));
        let s = q.status("openai");
        assert_eq!(s.key_hint.as_deref(), Some("sk-proj-…0000"));
        assert_eq!(
            s.key_source.as_deref(),
            Some("OPENAI_API_KEY in tetherd's environment")
        );
    }
}
