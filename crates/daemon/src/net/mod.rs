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

/// One session's network: its policy, and its proxy, started when the sandbox first needs it.
pub struct SessionNet {
    policy: Arc<NetPolicy>,
    resolver: Arc<dyn Resolver>,
    /// Where the proxy listens (under the daemon's 0700 runtime dir).
    socket: PathBuf,
    proxy: Mutex<Option<proxy::ProxyHandle>>,
}

impl SessionNet {
    pub fn new(policy: NetPolicy, resolver: Arc<dyn Resolver>, socket: PathBuf) -> SessionNet {
        SessionNet {
            policy: Arc::new(policy),
            resolver,
            socket,
            proxy: Mutex::new(None),
        }
    }

    /// No network at all.
    pub fn off() -> SessionNet {
        SessionNet::new(NetPolicy::None, policy::system_resolver(), PathBuf::new())
    }

    pub fn policy(&self) -> &NetPolicy {
        &self.policy
    }

    pub fn resolver(&self) -> &dyn Resolver {
        self.resolver.as_ref()
    }

    /// The proxy socket to bridge into the sandbox, (re)started if it is not running; `None`
    /// when the session has no network. Must be called inside a tokio runtime.
    pub fn proxy_socket(&self) -> Result<Option<PathBuf>, String> {
        if self.policy.is_none() {
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
