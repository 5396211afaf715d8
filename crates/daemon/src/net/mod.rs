//! Network access of a session: the policy ([`policy`]), the host-side allow-list proxy the
//! sandbox reaches through a Unix socket ([`proxy`]) and the in-sandbox TCP→Unix bridge
//! ([`bridge`]). `web_fetch` (in the daemon) applies the same policy.

pub mod bridge;
pub mod policy;
pub mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

pub use policy::{NetPolicy, Refusal, Resolver};

/// A policy that can be replaced while connections read it: each connection checks against
/// the policy of its moment (a session update that gives the agent another MCP server
/// widens an `allow_mcp_servers` policy to its host).
pub struct LivePolicy(std::sync::RwLock<Arc<NetPolicy>>);

impl LivePolicy {
    pub fn new(policy: NetPolicy) -> Arc<LivePolicy> {
        Arc::new(LivePolicy(std::sync::RwLock::new(Arc::new(policy))))
    }

    pub fn get(&self) -> Arc<NetPolicy> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, policy: NetPolicy) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
    }
}

/// One session's network: its policy, and its proxy, started when the sandbox first needs it.
pub struct SessionNet {
    policy: Arc<LivePolicy>,
    resolver: Arc<dyn Resolver>,
    /// Where the proxy listens (under the daemon's 0700 runtime dir).
    socket: PathBuf,
    proxy: Mutex<Option<proxy::ProxyHandle>>,
}

impl SessionNet {
    pub fn new(policy: NetPolicy, resolver: Arc<dyn Resolver>, socket: PathBuf) -> SessionNet {
        SessionNet {
            policy: LivePolicy::new(policy),
            resolver,
            socket,
            proxy: Mutex::new(None),
        }
    }

    /// No network at all.
    pub fn off() -> SessionNet {
        SessionNet::new(NetPolicy::None, policy::system_resolver(), PathBuf::new())
    }

    pub fn policy(&self) -> Arc<NetPolicy> {
        self.policy.get()
    }

    /// The policy from now on, for new connections (the proxy's included). Whether there is
    /// a network at all is the environment's and does not change: a `None` policy stays.
    pub fn set_policy(&self, policy: NetPolicy) {
        if self.policy.get().is_none() != policy.is_none() {
            tracing::warn!("a session's network can't be turned on or off while it lives; kept");
            return;
        }
        self.policy.set(policy);
    }

    pub fn resolver(&self) -> &dyn Resolver {
        self.resolver.as_ref()
    }

    /// The proxy socket to bridge into the sandbox, (re)started if it is not running; `None`
    /// when the session has no network. Must be called inside a tokio runtime.
    pub fn proxy_socket(&self) -> Result<Option<PathBuf>, String> {
        if self.policy.get().is_none() {
            return Ok(None);
        }
        let mut proxy = self.proxy.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = proxy.as_ref().filter(|p| p.is_running()) {
            return Ok(Some(p.path().to_path_buf()));
        }
        let handle = proxy::start(&self.socket, self.policy.clone(), self.resolver.clone())
            .map_err(|e| {
                format!(
                    "cannot start the session's network proxy on {}: {e}; the command was not \
                     run (without the proxy the sandbox has no network)",
                    self.socket.display()
                )
            })?;
        let path = handle.path().to_path_buf();
        *proxy = Some(handle);
        Ok(Some(path))
    }
}

/// An HTTP client that connects `host` only to `addrs` (the addresses the policy checked:
/// no second lookup DNS rebinding could answer), follows no redirect (each hop must be
/// checked again) and ignores proxy variables. `web_fetch` and MCP servers use it.
pub fn pinned_client(
    host: &str,
    addrs: &[SocketAddr],
    scheme: &str,
) -> Result<reqwest::Client, String> {
    use crate::provider::http::{client_builder, error_chain, install_crypto_provider};
    install_crypto_provider();
    let builder = || {
        client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .resolve_to_addrs(host, addrs)
    };
    match builder().build() {
        Ok(c) => Ok(c),
        // No CA roots on this host: plain http still works.
        Err(_) if scheme == "http" => builder()
            .tls_certs_only(std::iter::empty())
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {}", error_chain(&e))),
        Err(e) => Err(format!(
            "cannot set up TLS ({}); install the system CA certificates (ca-certificates) or \
             point SSL_CERT_FILE at a PEM bundle",
            error_chain(&e)
        )),
    }
}
