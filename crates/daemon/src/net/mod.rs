//! Network access of a session: the policy ([`policy`]), the host-side allow-list proxy the
//! sandbox reaches through a Unix socket ([`proxy`]) and the in-sandbox TCP→Unix bridge
//! ([`bridge`]). `web_fetch` (in the daemon) applies the same policy.

pub mod bridge;
pub mod policy;
pub mod proxy;

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
