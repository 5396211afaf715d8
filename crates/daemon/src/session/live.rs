//! One live session: its folded state, its broadcast of events and deltas, its tools, and the
//! handle of the turn running for it. All appends for a session go through [`Session::append`],
//! which serialises them so broadcast order is seq order.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tether_proto::{
    ContentBlock, Delta, DeltaKind, Event, EventBody, SessionInfo, SessionStatus, Snapshot,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::session::permissions::ToolPolicy;
use crate::session::services::Services;
use crate::session::state::SessionState;
use crate::store::error::StoreError;
use crate::store::rows::SessionRow;
use crate::tools::Toolbox;

/// After the first live push of a burst, a reader of the live feed (a socket client's
/// forwarder, an HTTP SSE stream) waits this long for more before it sends them, so a fast
/// stream wakes each reader a few hundred times a second instead of once per delta
/// (invisible to a person; the session's broadcast keeps 4096 pushes, far more than arrive
/// meanwhile).
pub(crate) const LIVE_COALESCE: std::time::Duration = std::time::Duration::from_millis(5);
/// Most live pushes a reader takes as one burst; a backlog this long is taken at once,
/// without the wait.
pub(crate) const LIVE_BURST: usize = 1024;

/// Live messages fanned out to attached clients.
#[derive(Debug, Clone)]
pub enum Push {
    Event(Arc<Wire<Event>>),
    Delta(Arc<Wire<Delta>>),
}

/// A pushed value with its wire bytes, encoded by the first client that sends it and shared
/// by all the others: `encoded` for the socket (the server fills it), `sse` for the HTTP
/// API's streams (its JSON data line).
#[derive(Debug)]
pub struct Wire<T> {
    pub value: T,
    pub encoded: std::sync::OnceLock<bytes::Bytes>,
    pub sse: std::sync::OnceLock<String>,
}

impl<T> Wire<T> {
    pub fn new(value: T) -> Arc<Self> {
        Arc::new(Wire {
            value,
            encoded: std::sync::OnceLock::new(),
            sse: std::sync::OnceLock::new(),
        })
    }
}

/// Per-client backlog before a slow client is told to resync.
const BROADCAST_CAPACITY: usize = 4096;

/// The session's broadcast, made when the first reader subscribes and dropped by the first
/// send that finds every reader gone: its buffer of [`BROADCAST_CAPACITY`] slots is ~200 KB,
/// which a session nobody is watching should not hold (nor should it wrap pushes nobody
/// reads). Subscribing and sending take the same lock, so a reader that subscribes before
/// it replays the log misses nothing: what was sent before it subscribed is in the log.
struct Feed<T>(Mutex<Option<broadcast::Sender<T>>>);

impl<T: Clone> Feed<T> {
    fn new() -> Self {
        Feed(Mutex::new(None))
    }

    fn subscribe(&self) -> broadcast::Receiver<T> {
        lock(&self.0)
            .get_or_insert_with(|| broadcast::channel(BROADCAST_CAPACITY).0)
            .subscribe()
    }

    /// Sends `push()` to the readers, if there are any.
    fn send(&self, push: impl FnOnce() -> T) {
        let mut feed = lock(&self.0);
        match feed.as_ref() {
            Some(tx) if tx.receiver_count() > 0 => {
                let _ = tx.send(push());
            }
            Some(_) => *feed = None,
            None => {}
        }
    }
}
/// How much of a running tool's output a reattaching client gets.
const TOOL_TAIL_BYTES: usize = 16 * 1024;

/// In-progress data that is never stored: what the attach snapshot is made of.
#[derive(Debug, Default)]
struct Live {
    n: u64,
    /// The `MessageStart` of the model response being written, for readers that join
    /// mid-response (their previews need its ids).
    message_start: Option<DeltaKind>,
    message_text: Option<String>,
    thinking_text: Option<String>,
    tool_use_id: Option<String>,
    tool_output: String,
}

/// The running turn, if any.
pub struct TurnHandle {
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

/// What makes a session a child thread: the session it belongs to (whose stream gets its
/// cross-posts, whose budget it spends) and who runs in it. Data only: the threads room
/// (orchestration) drives threads; a session only cross-posts what clients of the primary
/// must see.
pub struct ThreadLink {
    pub primary: Arc<Session>,
    pub agent: tether_proto::thread::ThreadAgent,
}

impl ThreadLink {
    pub fn agent_name(&self) -> &str {
        self.agent.name()
    }
}

pub struct Session {
    pub id: String,
    /// Set on a child thread.
    pub thread: Option<ThreadLink>,
    /// The pinned agent's `multiagent` (primary threads only act on it).
    pub multiagent: Option<tether_proto::multiagent::Multiagent>,
    /// Usage of each loaded child thread (a primary's): the session's usage and budget
    /// cover all its threads.
    thread_usage: Mutex<std::collections::HashMap<String, tether_proto::SessionUsage>>,
    /// The last seq appended: awaited by whoever waits for this stream to reach a state
    /// (a primary waiting for a thread's reply).
    appended: tokio::sync::watch::Sender<u64>,
    /// Written only through [`Session::update_row`] (and the append path's `updated_at`).
    row: Mutex<SessionRow>,
    pub services: Arc<Services>,
    pub toolbox: Toolbox,
    /// Permission policies and custom tools of the pinned agent version with the session's
    /// own tools over it; replaced only between turns (a session update's `agent`).
    policy: Mutex<Arc<ToolPolicy>>,
    /// The pinned agent's `model.effort` as a thinking budget; None: the config's.
    pub thinking_budget: Option<u32>,
    /// The pinned agent's MCP servers, connected when a turn first needs them.
    pub mcp: crate::session::mcp::McpClients,
    /// Credentials from the session's vaults (MCP bearers, shell variables); never logged.
    /// A thread shares its session's.
    pub secrets: Arc<crate::resources::vaults::LiveSecrets>,
    /// MCP elicitations a tool call in flight waits on (issue 25).
    pub elicitations: crate::session::elicitation::Waiters,
    state: Mutex<SessionState>,
    append_lock: tokio::sync::Mutex<()>,
    live: Mutex<Live>,
    feed: Feed<Push>,
    turn: Mutex<Option<TurnHandle>>,
    pub attached: AtomicU32,
    /// How many of `attached` are read-only.
    pub attached_read_only: AtomicU32,
    /// The self-hosted environment whose workers run this session's worker tools; None:
    /// they run here, in the sandbox.
    pub work_env: Option<String>,
}

/// The session's network: its environment's policy, served by a proxy of its own whose socket
/// lives in the daemon's private runtime dir.
fn session_net(
    services: &Services,
    id: &str,
    policy: crate::net::NetPolicy,
) -> Arc<crate::net::SessionNet> {
    let socket = services
        .paths
        .runtime_dir
        .join("proxy")
        .join(format!("{id}.sock"));
    Arc::new(crate::net::SessionNet::new(
        policy,
        crate::net::policy::system_resolver(),
        socket,
    ))
}

/// The session's memory stores as sandbox mounts: each store's copy (created here, so the
/// bind has a source before the first sync fills it) at its `mount_path`.
fn memory_mounts(services: &Services, row: &SessionRow) -> Vec<crate::sandbox::Mount> {
    row.memory
        .iter()
        .map(|m| {
            let src = crate::session::services::memory_dir(&services.paths, &row.id, m);
            if let Err(e) = crate::private::create_dir(&src) {
                tracing::warn!(dir = %src.display(), "cannot create a memory store's copy: {e}");
            }
            crate::sandbox::Mount {
                src,
                dst: m.mount_path.clone().into(),
                read_only: m.access == tether_proto::memory::Access::ReadOnly,
            }
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    pub fn new(
        services: Arc<Services>,
        row: SessionRow,
        agent: Option<&tether_proto::agent::Agent>,
        net: crate::net::NetPolicy,
        sandbox: tether_proto::environment::SandboxMode,
        work_env: Option<String>,
        events: &[Event],
    ) -> Arc<Session> {
        let net = session_net(&services, &row.id, net);
        Self::build(services, row, agent, net, sandbox, work_env, events, None)
    }

    /// A child thread: the primary's workspace, environment layer and network (its proxy is
    /// shared, not doubled), its own shell, its agent's model, prompt, tools and policy.
    pub fn new_thread(
        services: Arc<Services>,
        row: SessionRow,
        agent: Option<&tether_proto::agent::Agent>,
        link: ThreadLink,
        sandbox: tether_proto::environment::SandboxMode,
        events: &[Event],
    ) -> Arc<Session> {
        let net = link.primary.toolbox.shared_net();
        // A thread's tools run where its session's do.
        let work_env = link.primary.work_env.clone();
        let s = Self::build(
            services,
            row,
            agent,
            net,
            sandbox,
            work_env,
            events,
            Some(link),
        );
        s.report_usage();
        s
    }

    // The parts a session is made of, each from a different place; a struct would only
    // rename them.
    #[allow(clippy::too_many_arguments)]
    fn build(
        services: Arc<Services>,
        row: SessionRow,
        agent: Option<&tether_proto::agent::Agent>,
        net: Arc<crate::net::SessionNet>,
        sandbox: tether_proto::environment::SandboxMode,
        work_env: Option<String>,
        events: &[Event],
        thread: Option<ThreadLink>,
    ) -> Arc<Session> {
        let policy = ToolPolicy::of(agent);
        // Validated when the version was made; a bad one read back means no extra thinking.
        let thinking_budget = agent
            .and_then(|a| a.spec.model.as_ref())
            .and_then(|m| m.effort.as_ref())
            .and_then(|e| crate::resources::agents::thinking_budget(e).ok());
        let mut toolbox = Toolbox::for_session(
            row.workspace.clone().into(),
            row.env_layer.as_ref().map(|h| services.builds.layer_dir(h)),
            net,
        )
        .with_search(services.search_backend());
        let mut mounts = memory_mounts(&services, &row);
        // The hosted container's /mnt/session/{uploads,outputs} and /mnt/user (issue 25);
        // a thread shares its session's.
        let own_tree = sandbox != tether_proto::environment::SandboxMode::None
            && matches!(
                crate::sandbox::Sandbox::for_this_process(),
                crate::sandbox::Sandbox::Namespaces { .. }
            );
        match &thread {
            None => {
                mounts.extend(crate::resources::attach::sandbox_mounts(
                    &services.paths,
                    &row.id,
                    &row.file_mounts,
                    own_tree,
                ));
                if own_tree {
                    mounts.extend(crate::resources::outputs::sandbox_mounts(
                        &services.paths,
                        &row.id,
                    ));
                }
            }
            Some(link) => {
                mounts.extend(
                    link.primary
                        .toolbox
                        .mounts()
                        .iter()
                        .filter(|m| crate::resources::outputs::is_session_dir(&m.dst))
                        .cloned(),
                );
            }
        }
        // The agent's skills (issue 25), read-only at /skills/<name>.
        mounts.extend(crate::resources::skills::sandbox_mounts(
            &services.paths,
            &row.id,
            &row.skills,
        ));
        if !mounts.is_empty() {
            toolbox = toolbox.with_mounts(mounts);
        }
        if sandbox == tether_proto::environment::SandboxMode::None {
            toolbox = toolbox.unsandboxed();
        }
        // A thread uses its session's vaults; a session resolves its own once, here.
        let secrets = match &thread {
            Some(link) => link.primary.secrets.clone(),
            None => Arc::new(crate::resources::vaults::LiveSecrets::new(
                crate::resources::vaults::session_secrets(
                    &services.store,
                    &services.paths.data_dir,
                    &row.vault_ids,
                )
                .unwrap_or_else(|e| {
                    tracing::warn!(session = %row.id, error = %e, "the session's vaults can't be read; it runs without their credentials");
                    Default::default()
                }),
            )),
        };
        toolbox = toolbox.with_vault_env(secrets.env.clone());
        let mut state = SessionState {
            remote_tools: work_env.is_some(),
            ..SessionState::default()
        };
        for e in events {
            state.apply(e);
        }
        let (appended, _) = tokio::sync::watch::channel(state.last_seq);
        // Cyclic: its MCP clients' handlers ask the session itself when a server elicits.
        Arc::new_cyclic(|me: &std::sync::Weak<Session>| Session {
            id: row.id.clone(),
            multiagent: if thread.is_none() {
                agent.and_then(|a| a.spec.multiagent.clone())
            } else {
                None
            },
            thread,
            thread_usage: Mutex::new(std::collections::HashMap::new()),
            appended,
            toolbox,
            mcp: crate::session::mcp::McpClients::new(
                policy.mcp_agent.as_ref(),
                services.config.mcp.clone(),
                secrets.clone(),
                me.clone(),
                services.store.clone(),
                services.paths.data_dir.clone(),
            ),
            secrets,
            elicitations: Default::default(),
            policy: Mutex::new(Arc::new(policy)),
            thinking_budget,
            row: Mutex::new(row),
            services,
            state: Mutex::new(state),
            append_lock: tokio::sync::Mutex::new(()),
            live: Mutex::new(Live::default()),
            feed: Feed::new(),
            turn: Mutex::new(None),
            attached: AtomicU32::new(0),
            attached_read_only: AtomicU32::new(0),
            work_env,
        })
    }

    /// The tool policy in force (a turn reads it once and keeps it to its end).
    pub fn policy(&self) -> Arc<ToolPolicy> {
        lock(&self.policy).clone()
    }

    /// The agent with the session's new tools and MCP servers, from the next turn on: the
    /// tool policy, the MCP servers (connections to the old ones closed) and `net`, the
    /// network policy for it (an environment that allows its agent's MCP servers reaches
    /// the new ones' hosts).
    pub async fn set_agent(&self, agent: &tether_proto::agent::Agent, net: crate::net::NetPolicy) {
        *lock(&self.policy) = Arc::new(ToolPolicy::of(Some(agent)));
        self.mcp.set_agent(Some(agent)).await;
        self.toolbox.shared_net().set_policy(net);
    }

    /// The folded state, to read: only the append path changes it, event by event.
    pub fn state(&self) -> MutexGuard<'_, SessionState> {
        lock(&self.state)
    }

    /// The session's spending limit in USD: its `session.updated` limit, else the config's.
    /// A child thread spends its session's budget.
    pub fn budget(&self) -> Option<f64> {
        if let Some(link) = &self.thread {
            return link.primary.budget();
        }
        self.state()
            .max_cost_usd
            .or(self.services.config.max_cost_usd)
    }

    /// What the whole session has spent, in USD: its own requests and every thread's (a child
    /// asks its primary).
    pub fn session_cost(&self) -> f64 {
        if let Some(link) = &self.thread {
            return link.primary.session_cost();
        }
        self.total_usage().tokens.cost_usd.unwrap_or(0.0)
    }

    /// This session's usage plus its threads' (live for loaded ones, as stored for the others).
    pub fn total_usage(&self) -> tether_proto::SessionUsage {
        let mut total = self.state().usage;
        for u in lock(&self.thread_usage).values() {
            total.add(u);
        }
        total
    }

    /// A thread's usage as stored, for a thread not loaded yet (a loaded one's report wins).
    pub fn seed_thread_usage(&self, thread_id: &str, usage: tether_proto::SessionUsage) {
        lock(&self.thread_usage)
            .entry(thread_id.to_string())
            .or_insert(usage);
    }

    /// A child tells its primary what it has spent so far.
    fn report_usage(&self) {
        if let Some(link) = &self.thread {
            let usage = self.state().usage;
            lock(&link.primary.thread_usage).insert(self.id.clone(), usage);
        }
    }

    /// The multi-agent tools this session's model is offered: a primary thread's, as its
    /// agent's `multiagent` enables them (children get none: depth 1).
    pub fn agent_tool_names(&self) -> Vec<&'static str> {
        use tether_proto::multiagent as ma;
        let Some(m) = self.multiagent.as_ref().filter(|_| self.thread.is_none()) else {
            return Vec::new();
        };
        let e = m.effective();
        let mut names = Vec::new();
        if let Some(sub) = &e.subagents {
            names.push(ma::TOOL_LIST_AGENTS);
            names.push(ma::TOOL_SEND_TO_AGENT);
            if sub.inline_agents {
                names.push(ma::TOOL_SPAWN_AGENT);
            }
        }
        if e.advisor.is_some() {
            names.push(ma::TOOL_CONSULT_ADVISOR);
        }
        if e.workflows.is_some() {
            names.push(ma::TOOL_START_WORKFLOW);
        }
        names
    }

    /// Seqs as they are appended: a receiver sees the latest after each commit.
    pub fn watch_appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub fn row(&self) -> SessionRow {
        lock(&self.row).clone()
    }

    /// Changes the in-memory row after its columns were stored (rename, archive, the HTTP
    /// update): the one way the session's fields are written besides the log's `updated_at`.
    pub fn update_row(&self, change: impl FnOnce(&mut SessionRow)) {
        change(&mut lock(&self.row));
        self.note_changed();
    }

    /// Tells `sessions.watch` watchers this session's summary may have changed (a child
    /// thread's changes show in its primary's summary: status, usage).
    pub fn note_changed(&self) {
        let id = match &self.thread {
            Some(link) => &link.primary.id,
            None => &self.id,
        };
        self.services.session_changes.note(id);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Push> {
        self.feed.subscribe()
    }

    /// Commits events, folds them into the state and broadcasts them, in seq order.
    pub async fn append(&self, bodies: Vec<EventBody>) -> Result<Vec<Event>, StoreError> {
        let _guard = self.append_lock.lock().await;
        self.append_locked(bodies).await
    }

    /// [`Session::append`] for a caller that holds `append_lock`.
    async fn append_locked(&self, bodies: Vec<EventBody>) -> Result<Vec<Event>, StoreError> {
        if let Some(link) = &self.thread {
            let (own, cross) =
                crate::session::crosspost::drafts(&self.id, link.agent_name(), bodies);
            let mut out = self.append_with_primary(own, cross, None).await?;
            return Ok(out.swap_remove(0));
        }
        let summary = self.state().summary_after(&bodies);
        let events = self
            .services
            .store
            .append(&self.id, bodies, Some(summary))
            .await?;
        self.publish(&events);
        Ok(events)
    }

    /// [`Session::append_retrying`] of events some of which carry an id chosen before they
    /// were written (a message whose previews already went out under that id).
    pub async fn append_retrying_with_ids(
        &self,
        drafts: Vec<crate::store::Draft>,
    ) -> Result<Vec<Event>, StoreError> {
        if drafts.iter().all(|d| d.id.is_none()) {
            return self
                .append_retrying(drafts.into_iter().map(|d| d.body).collect())
                .await;
        }
        let mut delay = std::time::Duration::from_millis(200);
        loop {
            let attempt = {
                let _guard = self.append_lock.lock().await;
                match &self.thread {
                    Some(link) => {
                        let (own, cross) = crate::session::crosspost::drafts_of(
                            &self.id,
                            link.agent_name(),
                            drafts.clone(),
                        );
                        self.append_with_primary(own, cross, None)
                            .await
                            .map(|mut out| out.swap_remove(0))
                    }
                    None => {
                        let bodies: Vec<EventBody> =
                            drafts.iter().map(|d| d.body.clone()).collect();
                        let summary = self.state().summary_after(&bodies);
                        let streams = vec![crate::store::StreamAppend {
                            session_id: self.id.clone(),
                            drafts: drafts.clone(),
                            summary: Some(summary),
                        }];
                        match self.services.store.append_multi(None, streams).await {
                            Ok(mut out) => {
                                let events = out.pop().unwrap_or_default();
                                self.publish(&events);
                                Ok(events)
                            }
                            Err(e) => Err(e),
                        }
                    }
                }
            };
            match attempt {
                Err(e @ (StoreError::Write(_) | StoreError::Read(_))) => {
                    // As append_retrying: wait for a writable log, never fail the turn.
                    tracing::warn!(session = %self.id, error = %e, "cannot write the event log; waiting");
                    self.emit(DeltaKind::Notice {
                        message: format!(
                            "{e} — the session is paused and retries in {:.1} s; free some space and it continues by itself",
                            delay.as_secs_f64()
                        ),
                    });
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
                other => return other,
            }
        }
    }

    /// Commits `own` to this stream and `primary` to the primary's (when there is one) in ONE
    /// transaction, with `create` inserted first; folds and broadcasts both. The caller holds
    /// this stream's append lock; the primary's is taken here, after it (always that order).
    /// Returns `[own events, primary events]`.
    pub(crate) async fn append_with_primary(
        &self,
        own: Vec<crate::store::Draft>,
        primary: Vec<crate::store::Draft>,
        create: Option<SessionRow>,
    ) -> Result<Vec<Vec<Event>>, StoreError> {
        let own_bodies: Vec<EventBody> = own.iter().map(|d| d.body.clone()).collect();
        let summary = self.state().summary_after(&own_bodies);
        let mut streams = vec![crate::store::StreamAppend {
            session_id: self.id.clone(),
            drafts: own,
            summary: Some(summary),
        }];
        let target = self.thread.as_ref().map(|l| l.primary.clone());
        let _primary_guard = match (&target, primary.is_empty()) {
            (Some(p), false) => {
                streams.push(crate::store::StreamAppend {
                    session_id: p.id.clone(),
                    drafts: primary,
                    summary: None,
                });
                Some(p.append_lock.lock().await)
            }
            _ => None,
        };
        let mut out = self.services.store.append_multi(create, streams).await?;
        if let Some(evs) = out.first() {
            self.publish(evs);
        }
        if let (Some(p), Some(evs)) = (&target, out.get(1)) {
            p.publish(evs);
        }
        out.resize_with(2, Vec::new);
        Ok(out)
    }

    /// A primary's own multi-stream commit: `own` here and `child` events in a thread's
    /// stream, in one transaction (the caller holds the CHILD's append lock, then this is
    /// called; the primary's lock is taken here). Used to deliver a message to a thread.
    pub(crate) async fn append_pair(
        &self,
        child: &Session,
        own: Vec<crate::store::Draft>,
        child_drafts: Vec<crate::store::Draft>,
    ) -> Result<(Vec<Event>, Vec<Event>), StoreError> {
        let _guard = self.append_lock.lock().await;
        let child_bodies: Vec<EventBody> = child_drafts.iter().map(|d| d.body.clone()).collect();
        let summary = child.state().summary_after(&child_bodies);
        let streams = vec![
            crate::store::StreamAppend {
                session_id: child.id.clone(),
                drafts: child_drafts,
                summary: Some(summary),
            },
            crate::store::StreamAppend {
                session_id: self.id.clone(),
                drafts: own,
                summary: None,
            },
        ];
        let mut out = self.services.store.append_multi(None, streams).await?;
        let mine = out.pop().unwrap_or_default();
        let theirs = out.pop().unwrap_or_default();
        child.publish(&theirs);
        self.publish(&mine);
        Ok((mine, theirs))
    }

    /// Commits `drafts` to this stream, with `create` inserted in the same transaction (a new
    /// thread row and its `session.thread_created`).
    pub(crate) async fn append_drafts(
        &self,
        create: Option<SessionRow>,
        drafts: Vec<crate::store::Draft>,
    ) -> Result<Vec<Event>, StoreError> {
        let _guard = self.append_lock.lock().await;
        let own: Vec<EventBody> = drafts
            .iter()
            .filter(|d| d.session_thread_id.is_none())
            .map(|d| d.body.clone())
            .collect();
        let summary = self.state().summary_after(&own);
        let streams = vec![crate::store::StreamAppend {
            session_id: self.id.clone(),
            drafts,
            summary: Some(summary),
        }];
        let events = self
            .services
            .store
            .append_multi(create, streams)
            .await?
            .pop()
            .unwrap_or_default();
        self.publish(&events);
        Ok(events)
    }

    /// The child's append lock, for [`Session::append_pair`] (child first, then primary).
    pub(crate) async fn lock_appends(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.append_lock.lock().await
    }

    /// Folds committed events, updates the row's time, broadcasts them and wakes watchers.
    fn publish(&self, events: &[Event]) {
        {
            let mut st = self.state();
            for e in events {
                st.apply(e);
            }
        }
        if let Some(at) = events.last().and_then(|e| e.processed_at.clone()) {
            lock(&self.row).updated_at = at;
        }
        for e in events {
            self.feed.send(|| Push::Event(Wire::new(e.clone())));
        }
        if let Some(last) = events.last() {
            self.appended.send_replace(last.seq);
        }
        self.report_usage();
        if !events.is_empty() {
            self.note_changed();
        }
    }

    /// Appends what `decide` returns for the state as it is under the append lock, so no other
    /// append can change that state between the check and the commit (two clients answering
    /// the same tool call: one wins, the other gets `decide`'s error).
    pub async fn append_checked<E: From<StoreError>>(
        &self,
        decide: impl FnOnce(&SessionState) -> Result<Vec<EventBody>, E>,
    ) -> Result<Vec<Event>, E> {
        let _guard = self.append_lock.lock().await;
        let bodies = decide(&self.state())?;
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.append_locked(bodies).await?)
    }

    /// Like [`Session::append`], but a log that can't be written (disk full, read-only file)
    /// is retried with backoff instead of failing the turn: nothing else happens until the
    /// events are durable, and watchers get a notice meanwhile.
    pub async fn append_retrying(&self, bodies: Vec<EventBody>) -> Result<Vec<Event>, StoreError> {
        let mut delay = std::time::Duration::from_millis(200);
        let mut waited = false;
        loop {
            match self.append(bodies.clone()).await {
                Ok(evs) => {
                    if waited {
                        tracing::info!(session = %self.id, "event log writable again");
                        self.emit(DeltaKind::Notice {
                            message: "the event log is writable again; the session continues"
                                .into(),
                        });
                    }
                    return Ok(evs);
                }
                Err(e @ (StoreError::Write(_) | StoreError::Read(_))) => {
                    tracing::warn!(session = %self.id, error = %e, "cannot write the event log; waiting");
                    self.emit(DeltaKind::Notice {
                        message: format!(
                            "{e} — the session is paused and retries in {:.1} s; free some space and it continues by itself",
                            delay.as_secs_f64()
                        ),
                    });
                    waited = true;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn append_one_retrying(&self, body: EventBody) -> Result<Event, StoreError> {
        let mut evs = self.append_retrying(vec![body]).await?;
        evs.pop()
            .ok_or_else(|| StoreError::Write("append returned no event".into()))
    }

    pub async fn append_one(&self, body: EventBody) -> Result<Event, StoreError> {
        let mut evs = self.append(vec![body]).await?;
        evs.pop()
            .ok_or_else(|| StoreError::Write("append returned no event".into()))
    }

    /// Sends stream-only data to attached clients and records it for the attach snapshot.
    pub fn emit(&self, kind: DeltaKind) {
        let mut live = lock(&self.live);
        live.n += 1;
        match &kind {
            DeltaKind::MessageStart { .. } => {
                live.message_start = Some(kind.clone());
                live.message_text = None;
                live.thinking_text = None;
            }
            DeltaKind::Text { text, .. } => live
                .message_text
                .get_or_insert_with(String::new)
                .push_str(text),
            DeltaKind::Thinking { text, .. } => live
                .thinking_text
                .get_or_insert_with(String::new)
                .push_str(text),
            DeltaKind::ToolInput { .. } | DeltaKind::Notice { .. } => {}
            DeltaKind::ToolOutput { tool_use_id, text } => {
                if live.tool_use_id.as_deref() != Some(tool_use_id) {
                    live.tool_use_id = Some(tool_use_id.clone());
                    live.tool_output.clear();
                }
                live.tool_output.push_str(text);
                if live.tool_output.len() > 2 * TOOL_TAIL_BYTES {
                    let cut = floor_char_boundary(
                        &live.tool_output,
                        live.tool_output.len() - TOOL_TAIL_BYTES,
                    );
                    live.tool_output.drain(..cut);
                }
            }
        }
        let delta = Delta {
            session_id: self.id.clone(),
            n: live.n,
            kind,
        };
        self.feed.send(|| Push::Delta(Wire::new(delta)));
    }

    /// The message being written is complete (or abandoned): drop it from the snapshot.
    pub fn clear_live_message(&self) {
        let mut live = lock(&self.live);
        live.message_start = None;
        live.message_text = None;
        live.thinking_text = None;
    }

    /// The response being written, for a stream reader that joins now: its `MessageStart`,
    /// the text and thinking so far, and the `n` of the last delta they include.
    pub fn live_response(&self) -> Option<(DeltaKind, Option<String>, Option<String>, u64)> {
        let live = lock(&self.live);
        live.message_start.clone().map(|start| {
            (
                start,
                live.message_text.clone(),
                live.thinking_text.clone(),
                live.n,
            )
        })
    }

    /// The tool call running now, if any.
    pub fn live_tool(&self) -> Option<String> {
        lock(&self.live).tool_use_id.clone()
    }

    pub fn set_live_tool(&self, tool_use_id: Option<String>) {
        let mut live = lock(&self.live);
        live.tool_use_id = tool_use_id;
        live.tool_output.clear();
    }

    pub fn snapshot(&self) -> Snapshot {
        let live = lock(&self.live);
        let tail = if live.tool_output.len() > TOOL_TAIL_BYTES {
            let cut =
                floor_char_boundary(&live.tool_output, live.tool_output.len() - TOOL_TAIL_BYTES);
            live.tool_output[cut..].to_string()
        } else {
            live.tool_output.clone()
        };
        Snapshot {
            session_id: self.id.clone(),
            delta_n: live.n,
            message_text: live.message_text.clone(),
            thinking_text: live.thinking_text.clone(),
            tool_use_id: live.tool_use_id.clone(),
            tool_output_tail: live.tool_use_id.as_ref().map(|_| tail),
        }
    }

    pub fn info(&self) -> SessionInfo {
        let row = self.row();
        let st = self.state();
        // Any running thread, or running workflow run, makes the session running; usage
        // covers every thread.
        let status = if st.threads.any_running() || st.kept_running_by_a_run() {
            SessionStatus::Running
        } else {
            st.status()
        };
        let usage = {
            let mut total = st.usage;
            for u in lock(&self.thread_usage).values() {
                total.add(u);
            }
            total
        };
        let mut info = info_from_row(
            &row,
            Some((status, st.stop_reason.clone(), usage, st.last_seq)),
            self.attached.load(Ordering::Relaxed),
        );
        info.read_only_clients = self.attached_read_only.load(Ordering::Relaxed);
        // Self-hosted: the worker tools run on the environment's workers, not here.
        info.sandbox = Some(match self.work_env {
            Some(_) => tether_proto::session::TOOLS_ON_WORKERS.to_string(),
            None => self.toolbox.sandbox_level().to_string(),
        });
        if let Some(model) = &st.model {
            info.model = model.clone();
        }
        info.context_window =
            crate::provider::pricing::model_info(&self.services.config.models, &info.model)
                .context_window;
        info.outcome_evaluations = st.outcome_evaluations();
        info.waiting_checkpoints = u32::try_from(st.checkpoints.len()).unwrap_or(u32::MAX);
        info
    }

    pub fn is_turn_running(&self) -> bool {
        lock(&self.turn).is_some()
    }

    /// Starts a turn unless one is running (the running one will pick new input up): `spawn`
    /// gets the new turn's cancellation and returns its task. It runs under the turn lock, so
    /// two callers can't both start one (`session::turn::ensure` is the one caller).
    pub fn start_turn(&self, spawn: impl FnOnce(CancellationToken) -> tokio::task::JoinHandle<()>) {
        let mut turn = lock(&self.turn);
        if turn.is_some() {
            return;
        }
        let cancel = CancellationToken::new();
        let task = spawn(cancel.clone());
        *turn = Some(TurnHandle { cancel, task });
    }

    /// Takes the running turn's handle, if any: the turn stopped, or a caller waits for it.
    pub fn take_turn(&self) -> Option<TurnHandle> {
        lock(&self.turn).take()
    }

    /// Called by the turn task when it is about to exit: it exits only if nothing new needs an
    /// answer (a message, or tool calls a client just answered), atomically with respect to
    /// [`Session::start_turn`].
    pub fn finish_turn(&self, cancel: &CancellationToken) -> bool {
        let mut turn = lock(&self.turn);
        if !cancel.is_cancelled() && self.state().has_work() {
            return false;
        }
        *turn = None;
        true
    }

    /// Fires the running turn's cancellation (user interrupt).
    pub fn cancel_turn(&self) -> bool {
        match lock(&self.turn).as_ref() {
            Some(t) => {
                t.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops the turn without writing anything (daemon shutdown): the log still says running,
    /// and recovery resumes it on the next start.
    pub async fn halt(&self) {
        if let Some(h) = self.take_turn() {
            h.task.abort();
            let _ = h.task.await;
        }
        self.toolbox.shutdown().await;
    }

    /// Commits a `user.message`; `session::turn::user_message` starts the turn that answers it.
    pub async fn commit_user_message(
        &self,
        content: Vec<ContentBlock>,
    ) -> Result<Event, StoreError> {
        // The message and the turn it starts commit together, so a crash right after cannot
        // leave an unanswered message in a session the log calls idle.
        let committed = {
            let _guard = self.append_lock.lock().await;
            let mut bodies = vec![EventBody::UserMessage { content }];
            if self.state().status() != SessionStatus::Running {
                bodies.push(EventBody::SessionStatusRunning {});
            }
            self.append_locked(bodies).await?
        };
        committed
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Write("append returned no event".into()))
    }
}

pub fn info_from_row(
    row: &SessionRow,
    live: Option<(
        SessionStatus,
        Option<tether_proto::StopReason>,
        tether_proto::SessionUsage,
        u64,
    )>,
    attached: u32,
) -> SessionInfo {
    let (status, stop_reason, usage, last_seq) =
        live.unwrap_or((row.status, row.stop_reason.clone(), row.usage, row.last_seq));
    SessionInfo {
        id: row.id.clone(),
        object_type: "session".into(),
        name: row.name.clone(),
        title: row.title.clone(),
        status,
        stop_reason: if status == SessionStatus::Idle {
            stop_reason
        } else {
            None
        },
        model: row.model.clone(),
        workspace: row.workspace.clone(),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        archived_at: row.archived_at.clone(),
        last_seq,
        usage,
        attached_clients: attached,
        read_only_clients: 0,
        forked_from: row.forked_from.clone(),
        agent: row
            .agent
            .as_ref()
            .map(|(id, version)| tether_proto::session::AgentPin {
                id: id.clone(),
                version: *version,
            }),
        environment_id: row.environment.clone(),
        sandbox: None,
        outcome_evaluations: row.outcome_evaluations.clone(),
        deployment_id: row.deployment_id.clone(),
        context_window: None,
        waiting_checkpoints: 0,
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn is_open<T>(feed: &Feed<T>) -> bool {
        lock(&feed.0).is_some()
    }

    #[test]
    fn the_feed_exists_only_while_someone_reads_it() {
        let feed = Feed::<u32>::new();
        feed.send(|| unreachable!("nothing is built for a feed nobody reads"));
        assert!(!is_open(&feed));

        let mut a = feed.subscribe();
        let mut b = feed.subscribe();
        feed.send(|| 1);
        assert_eq!((a.try_recv().unwrap(), b.try_recv().unwrap()), (1, 1));

        drop(a);
        feed.send(|| 2);
        assert_eq!(
            b.try_recv().unwrap(),
            2,
            "one reader left still gets everything"
        );
        drop(b);
        feed.send(|| unreachable!("the last reader is gone"));
        assert!(!is_open(&feed), "the buffer is freed once nobody reads");

        let mut c = feed.subscribe();
        feed.send(|| 3);
        assert_eq!(c.try_recv().unwrap(), 3, "a new reader opens a new feed");
    }
}
