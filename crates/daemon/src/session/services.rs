//! The daemon-wide services every session uses: the event log, paths, config, the model
//! provider clients, environment layer builds and the `web_search` backend. Built once at
//! start-up; a session holds them, the runtime adds the registry of sessions on top.

use std::sync::Arc;

use tether_proto::Paths;

use crate::config::Config;
use crate::provider::Providers;
use crate::resources::envbuild::Builds;
use crate::store::Store;
use crate::tools::web_search::WebSearch;

pub struct Services {
    pub store: Store,
    pub paths: Paths,
    pub config: Config,
    /// Model provider clients by name, each built on first use.
    pub providers: Providers,
    /// Environment layer builds.
    pub builds: Arc<Builds>,
    /// The `web_search` backend, or why the configured one can't be used.
    pub web_search: Option<Result<Arc<WebSearch>, String>>,
}

impl Services {
    pub fn new(store: Store, paths: Paths, config: Config) -> Arc<Services> {
        let builds = Arc::new(Builds::for_this_process(
            paths.envs_dir(),
            paths.runtime_dir.join("proxy"),
        ));
        let web_search = config.web_search.as_ref().map(|c| {
            WebSearch::from_config(c)
                .map(Arc::new)
                .inspect_err(|e| tracing::warn!("web_search is not offered: {e}"))
        });
        let credentials = paths.credentials_file();
        Arc::new(Services {
            web_search,
            store,
            paths,
            providers: Providers::new(&config, credentials),
            builds,
            config,
        })
    }

    /// The `web_search` backend sessions get, if one is configured and usable.
    pub fn search_backend(&self) -> Option<Arc<WebSearch>> {
        self.web_search
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .cloned()
    }
}
