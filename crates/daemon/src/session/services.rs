//! The daemon-wide services every session uses: the event log, paths, config, the model
//! provider clients, environment layer builds and the `web_search` backend. Built once at
//! start-up; a session holds them, the runtime adds the registry of sessions on top.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use tether_proto::memory::SessionMemory;
use tether_proto::{ErrorBody, Paths};

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
    /// The multi-agent tools (`send_to_agent`, ...), installed by the threads room at start:
    /// a session's turn runs them through this without knowing the room.
    pub agent_tools: std::sync::OnceLock<Arc<dyn AgentTools>>,
    /// Keeps the memory stores a session mounts and its copies in step; set at start-up by
    /// the daemon (orchestration implements it; nothing here knows memory stores). Unset:
    /// the copies are not synced (unit tests).
    pub memory_sync: OnceLock<Arc<dyn MemorySync>>,
    /// The work queues of self-hosted environments, installed at start-up by the daemon
    /// (`orchestration::workers` implements it). Unset: nothing is queued (unit tests).
    pub work_queue: OnceLock<Arc<dyn WorkQueue>>,
    /// Sessions whose summary changed, for `sessions.watch` (issue 20).
    pub session_changes: crate::session::changes::SessionChanges,
}

/// Hands a self-hosted session's worker calls to its environment's workers.
pub trait WorkQueue: Send + Sync {
    /// Makes sure `session_id` has a live work item on `environment_id`'s queue (a poll can
    /// hand it to a worker); returns once the item is recorded.
    fn offer<'a>(
        &'a self,
        environment_id: &'a str,
        session_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), crate::store::error::StoreError>> + Send + 'a>>;

    /// `session_id` is archived or deleted: its live item (if any) stops — at once when
    /// `force` (or nobody holds it), else at its worker's next heartbeat.
    fn withdraw<'a>(
        &'a self,
        session_id: &'a str,
        force: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), ErrorBody>> + Send + 'a>>;

    /// The implementation, for the doors that serve the queue.
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

/// Syncs a session's mounted memory stores (see `orchestration::memory::mount`).
pub trait MemorySync: Send + Sync {
    /// Brings the session's copies of `mounts` and the stores in step: what changed in a copy
    /// becomes a version made by the session, what others wrote lands in the copy. Returns
    /// what the agent must be told (conflicts, files that can't be memories), if anything.
    fn sync<'a>(
        &'a self,
        session_id: &'a str,
        mounts: &'a [SessionMemory],
    ) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;
}

/// The host directory holding a session's copy of a mounted store (bound at its
/// `mount_path` in the sandbox).
pub fn memory_dir(paths: &Paths, session_id: &str, mount: &SessionMemory) -> PathBuf {
    let slug = mount
        .mount_path
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("store");
    paths
        .sessions_dir()
        .join(session_id)
        .join("memory")
        .join(slug)
}

/// Runs the multi-agent tool calls of a primary thread's turn (implemented by
/// `orchestration::threads`).
pub trait AgentTools: Send + Sync {
    /// The tool definitions offered to a session whose agent enables `names`.
    fn specs(&self, names: &[&'static str]) -> Vec<crate::provider::ToolSpec>;
    /// Gives every call in `calls` its result (concurrently: messages are delivered, then
    /// all replies awaited); returns early, leaving calls open, when `cancel` fires.
    fn run<'a>(
        &'a self,
        session: &'a Arc<crate::session::live::Session>,
        calls: Vec<crate::session::state::PendingTool>,
        cancel: &'a tokio_util::sync::CancellationToken,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<(), crate::store::error::StoreError>>
                + Send
                + 'a,
        >,
    >;
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
            agent_tools: std::sync::OnceLock::new(),
            memory_sync: OnceLock::new(),
            work_queue: OnceLock::new(),
            session_changes: Default::default(),
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
