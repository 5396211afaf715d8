//! Every loaded session, and the operations on sessions as a whole: create, load, fork,
//! rename, archive, delete and recovery at start-up. Built on the daemon-wide
//! [`Services`] that sessions share; the context the doors (socket, HTTP) and start-up hold.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tether_proto::{
    ErrorBody, ErrorCode, EventBody, Paths, SessionInfo, SessionStatus, StopReason,
};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::ids;
use crate::session::events;
use crate::session::live::{Session, info_from_row};
use crate::session::services::Services;
use crate::session::turn;
use crate::store::Store;
use crate::store::error::StoreError;
use crate::store::rows::SessionRow;

/// What only the daemon sets on a new session: a deployment's fire reserves the session's id
/// in its run record before creating it (so a crash between the two is finished, not
/// repeated) and marks the session as the deployment's.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub id: Option<String>,
    pub deployment_id: Option<String>,
}

pub struct Runtime {
    /// What every session uses; fields of [`Services`] read as fields of the runtime.
    services: Arc<Services>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    pub started: Instant,
    pub shutdown: CancellationToken,
    pub clients: AtomicU64,
    /// Signalled when a deployment changes, so the scheduler (orchestration) reads them again.
    pub schedules_changed: tokio::sync::Notify,
}

/// The runtime is the daemon-wide services plus the registry of loaded sessions: the doors
/// read `rt.store`, `rt.config` and the like through this, and sessions hold only the
/// [`Services`] part, so nothing below the runtime needs it.
impl std::ops::Deref for Runtime {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

impl Runtime {
    pub fn new(store: Store, paths: Paths, config: Config) -> Arc<Runtime> {
        Arc::new(Runtime {
            services: Services::new(store, paths, config),
            sessions: Mutex::new(HashMap::new()),
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            clients: AtomicU64::new(0),
            schedules_changed: tokio::sync::Notify::new(),
        })
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn web_search_status(&self) -> Option<tether_proto::method::ProviderStatus> {
        self.web_search.as_ref().map(|r| match r {
            Ok(s) => tether_proto::method::ProviderStatus {
                name: "web_search".into(),
                endpoint: s.describe(),
                ready: true,
                detail: "offered to the model".into(),
                ..Default::default()
            },
            Err(e) => tether_proto::method::ProviderStatus {
                name: "web_search".into(),
                endpoint: String::new(),
                ready: false,
                detail: e.clone(),
                ..Default::default()
            },
        })
    }

    pub fn loaded_sessions(&self) -> Vec<Arc<Session>> {
        self.registry().values().cloned().collect()
    }

    pub fn loaded(&self, id: &str) -> Option<Arc<Session>> {
        self.registry().get(id).cloned()
    }

    /// Resolves an id, unique id prefix or name to a session id.
    pub async fn resolve(&self, reference: &str) -> Result<String, ErrorBody> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(ErrorBody::new(
                ErrorCode::InvalidParams,
                "empty session reference; pass a session id, id prefix or name (see `tether ls`)",
            ));
        }
        let ids = self.store.resolve(reference).await?;
        match ids.as_slice() {
            [] => Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("no session matches `{reference}`; `tether ls --all` lists them"),
            )),
            [one] => Ok(one.clone()),
            many => Err(ErrorBody::new(
                ErrorCode::Ambiguous,
                format!(
                    "`{reference}` matches several sessions ({}); use more of the id or the name",
                    many.join(", ")
                ),
            )),
        }
    }

    /// The live session for `id`, loading and folding it from the log if needed.
    pub async fn load(self: &Arc<Self>, id: &str) -> Result<Arc<Session>, ErrorBody> {
        if let Some(s) = self.loaded(id) {
            return Ok(s);
        }
        let mut row = self
            .store
            .get_session(id)
            .await?
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no session `{id}`")))?;
        row.file_mounts = crate::resources::attach::file_mounts(&self.store, &self.paths, id).await;
        let events = self.store.read_events(id, 0, None, u32::MAX, false).await?;
        // The pinned version's permission policies must hold after a restart too: a session
        // whose agent can't be read is not loaded rather than run with every tool allowed.
        let agent = match &row.agent {
            Some((agent_id, version)) => {
                let mut a = crate::resources::agents::get(
                    &self.store,
                    &tether_proto::method::AgentParams {
                        agent: agent_id.clone(),
                        version: Some(*version),
                    },
                )
                .await?;
                // The session's own tools and MCP servers, over its version's.
                if let Some(o) = &row.agent_overrides {
                    o.apply(&mut a.spec);
                    row.tools = Some(crate::resources::agents::offered_tools(&a));
                }
                Some(a)
            }
            None => None,
        };
        // Skills (issue 25): re-resolved at each load; one deleted since is left out, said.
        if let Some(a) = &agent {
            let refs = row.skill_refs.as_ref().unwrap_or(&a.spec.skills);
            row.skills = crate::resources::skills::resolve(&self.store, &self.paths, refs)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(session = %id, "the session's skills can't be mounted: {}", e.message);
                    Vec::new()
                });
        }
        let net =
            crate::resources::environments::session_net_policy(&self.store, &row, agent.as_ref())
                .await;
        let sandbox = crate::resources::environments::session_sandbox(
            &self.store,
            row.environment.as_deref(),
        )
        .await;
        let session = match &row.parent_id {
            // A child thread: its session is loaded first (it shares its network, and its
            // appends cross-post to it).
            Some(parent) => {
                let primary = Box::pin(self.load(parent)).await?;
                let Some(agent_of_thread) = row.thread_agent.clone() else {
                    return Err(ErrorBody::new(
                        ErrorCode::Internal,
                        format!("thread {id} has no agent recorded; it can't be loaded"),
                    ));
                };
                Session::new_thread(
                    self.services.clone(),
                    row,
                    agent.as_ref(),
                    crate::session::live::ThreadLink {
                        primary,
                        agent: agent_of_thread,
                    },
                    sandbox,
                    &events,
                )
            }
            None => {
                let work_env = crate::resources::environments::session_work_env(
                    &self.store,
                    row.environment.as_deref(),
                )
                .await;
                let s = Session::new(
                    self.services.clone(),
                    row,
                    agent.as_ref(),
                    net,
                    sandbox,
                    work_env,
                    &events,
                );
                // Its threads' usage as last stored, until each loads and reports its own:
                // the session's usage and budget cover threads idle since a restart too.
                if !s.state().threads.children.is_empty() {
                    for child in self.store.list_threads(id).await? {
                        s.seed_thread_usage(&child.id, child.usage);
                    }
                }
                s
            }
        };
        // A process an earlier daemon ran this session's tools in may have outlived it.
        let leftover = session.state().last_process;
        if let Some(p) = leftover
            && crate::tools::procs::kill_leftover(p.pid, p.start_time).await
        {
            tracing::warn!(session = %id, pid = p.pid, "killed processes left over from an earlier tetherd");
        }
        // Another task may have loaded it meanwhile: keep the first.
        let mut reg = self.registry();
        Ok(reg.entry(id.to_string()).or_insert(session).clone())
    }

    pub async fn session(self: &Arc<Self>, reference: &str) -> Result<Arc<Session>, ErrorBody> {
        let id = self.resolve(reference).await?;
        self.load(&id).await
    }

    /// The model's context window, when known (a session's info says it loaded or not).
    fn context_window(&self, model: &str) -> Option<u64> {
        crate::provider::pricing::model_info(&self.config.models, model).context_window
    }

    pub async fn info(&self, id: &str) -> Result<SessionInfo, ErrorBody> {
        if let Some(s) = self.loaded(id) {
            return Ok(s.info());
        }
        let row = self
            .store
            .get_session(id)
            .await?
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no session `{id}`")))?;
        let mut info = info_from_row(&row, None, 0);
        info.context_window = self.context_window(&info.model);
        info.sandbox = Some(self.sandbox_level(row.environment.as_deref()).await);
        // Usage covers every thread (one indexed query; none for a session without).
        for child in self.store.list_threads(id).await? {
            info.usage.add(&child.usage);
        }
        Ok(info)
    }

    pub async fn list(&self, all: bool) -> Result<Vec<SessionInfo>, ErrorBody> {
        let rows = self.store.list_sessions(all).await?;
        // One lookup per environment, not per session.
        let mut levels: HashMap<Option<String>, String> = HashMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(match self.loaded(&r.id) {
                Some(s) => s.info(),
                None => {
                    let mut info = info_from_row(r, None, 0);
                    info.context_window = self.context_window(&info.model);
                    let level = match levels.get(&r.environment) {
                        Some(l) => l.clone(),
                        None => {
                            let l = self.sandbox_level(r.environment.as_deref()).await;
                            levels.insert(r.environment.clone(), l.clone());
                            l
                        }
                    };
                    info.sandbox = Some(level);
                    info
                }
            });
        }
        Ok(out)
    }

    /// How the tools of a session in `environment` are isolated, as [`Session::info`] reports
    /// it for a loaded one: `none` when the environment opts out, else this host's level.
    async fn sandbox_level(&self, environment: Option<&str>) -> String {
        if crate::resources::environments::session_work_env(&self.store, environment)
            .await
            .is_some()
        {
            return tether_proto::session::TOOLS_ON_WORKERS.into();
        }
        match crate::resources::environments::session_sandbox(&self.store, environment).await {
            tether_proto::environment::SandboxMode::None => "none".into(),
            tether_proto::environment::SandboxMode::Default => {
                crate::sandbox::Sandbox::for_this_process()
                    .level_name()
                    .into()
            }
        }
    }

    pub async fn create(
        self: &Arc<Self>,
        p: tether_proto::method::CreateSession,
    ) -> Result<Arc<Session>, ErrorBody> {
        self.create_as(p, Origin::default()).await
    }

    /// [`Runtime::create`] with what only the daemon sets (a deployment's fire).
    pub async fn create_as(
        self: &Arc<Self>,
        p: tether_proto::method::CreateSession,
        origin: Origin,
    ) -> Result<Arc<Session>, ErrorBody> {
        if !p.memory_stores.is_empty() {
            // Checked and snapshotted by `orchestration::memory::create_session`.
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                "memory stores must be attached through orchestration::memory::create_session",
            ));
        }
        self.create_with_memory(p, Vec::new(), origin).await
    }

    /// Creates a session with `memory` (checked attachments) mounted under `/mnt/memory/`.
    pub async fn create_with_memory(
        self: &Arc<Self>,
        p: tether_proto::method::CreateSession,
        memory: Vec<tether_proto::memory::SessionMemory>,
        origin: Origin,
    ) -> Result<Arc<Session>, ErrorBody> {
        if let Some(name) = &p.name {
            validate_name(name)?;
        }
        // Files and repositories (issue 25): checked before anything is made.
        let resources = crate::resources::attach::plan(&self.store, &p.resources).await?;
        if let Some(limit) = p.max_cost_usd {
            crate::session::ops::validate_budget(limit)?;
        }
        let mut agent =
            crate::resources::agents::for_session(&self.store, p.agent.as_deref()).await?;
        // The session's own tools and MCP servers replace the agent's (hosted
        // `agent_with_overrides`), kept on the row so a reload applies them again.
        let overrides = tether_proto::agent::SessionAgentUpdate {
            tools: p.tools.clone(),
            mcp_servers: p.mcp_servers.clone(),
        };
        if !overrides.is_empty() {
            overrides.apply(&mut agent.spec);
            crate::resources::agents::validate(&agent.spec)?;
        }
        // The session's own skills replace the agent's (hosted `agent_with_overrides`).
        if let Some(skills) = &p.skills {
            crate::resources::skills::check_session_refs(&self.store, skills).await?;
            agent.spec.skills = skills.clone();
        }
        crate::resources::agents::validate_metadata(&p.metadata)?;
        // Skills (issue 25): resolved (and checked to still exist) before anything is made.
        let skills =
            crate::resources::skills::resolve(&self.store, &self.paths, &agent.spec.skills).await?;
        let vault_ids = crate::resources::vaults::session_vaults(&self.store, &p.vault_ids).await?;
        let env =
            crate::resources::environments::for_session(&self.store, p.environment_id.as_deref())
                .await?;
        // Built before the session exists: its shell mounts the layer from the first call.
        let env_layer = self
            .builds
            .ensure(&env.id, &env.spec.name, &env.spec.config)
            .await
            .map_err(|e| ErrorBody::new(ErrorCode::Conflict, e))?;
        let networking = env.spec.config.networking().clone();
        let net = crate::resources::networking::net_policy(&networking, Some(&agent))?;
        let id = origin.id.unwrap_or_else(ids::session_id);
        let (workspace, owned) = match &p.dir {
            Some(dir) => (existing_dir(dir)?, false),
            None => {
                let ws = self.paths.sessions_dir().join(&id).join("workspace");
                crate::private::create_dir(&ws).map_err(|e| {
                    ErrorBody::new(
                        ErrorCode::Storage,
                        format!("cannot create the workspace {}: {e}", ws.display()),
                    )
                })?;
                (ws, true)
            }
        };
        // Explicit --model/--system win over the pinned agent's, which win over the config's.
        let model = config::canonical_model(
            p.model
                .as_deref()
                .or(agent.spec.model.as_ref().map(|m| m.id.as_str()))
                .unwrap_or(&self.config.default_model),
        );
        let row = SessionRow {
            name: p.name.clone(),
            title: p.title.clone(),
            system: p.system.clone().or(agent.spec.system.clone()),
            workspace_owned: owned,
            tools: Some(crate::resources::agents::offered_tools(&agent)),
            agent: Some((agent.id.clone(), agent.version)),
            metadata: p.metadata.clone(),
            environment: Some(env.id.clone()),
            env_layer,
            networking: Some(networking),
            memory,
            deployment_id: origin.deployment_id,
            file_mounts: resources
                .iter()
                .filter_map(|r| match (&r.resource, &r.sha256) {
                    (tether_proto::file::SessionResource::File { mount_path, .. }, Some(sha)) => {
                        Some((
                            crate::resources::files::blob_path(&self.paths, sha)
                                .display()
                                .to_string(),
                            mount_path.clone(),
                        ))
                    }
                    _ => None,
                })
                .collect(),
            vault_ids,
            skills,
            skill_refs: p.skills.clone(),
            agent_overrides: (!overrides.is_empty()).then_some(overrides),
            ..SessionRow::new(
                id.clone(),
                model,
                workspace.display().to_string(),
                p.max_turns.unwrap_or(self.config.max_turns),
            )
        };
        if let Err(e) = self.store.create_session(row.clone(), None).await {
            if owned {
                let _ = std::fs::remove_dir_all(workspace.parent().unwrap_or(&workspace));
            }
            return Err(e.into());
        }
        if let Err(e) = crate::resources::attach::insert(&self.store, &id, &resources).await {
            let _ = self.store.delete_session(&id).await;
            if owned {
                let _ = std::fs::remove_dir_all(workspace.parent().unwrap_or(&workspace));
            }
            return Err(e);
        }
        let sandbox = env.spec.config.sandbox();
        let work_env = env.spec.config.is_self_hosted().then(|| env.id.clone());
        let clone_policy = net.clone();
        let session = Session::new(
            self.services.clone(),
            row,
            Some(&agent),
            net,
            sandbox,
            work_env,
            &[],
        );
        self.registry().insert(id, session.clone());
        // Repositories are cloned before the first turn; a failure is an error event and
        // the session goes on without that repository.
        let clone_errors = crate::resources::repos::clone_all(
            &workspace,
            &clone_policy,
            crate::net::policy::system_resolver().as_ref(),
            &resources,
        )
        .await;
        for e in clone_errors {
            session.append_one(e).await?;
        }
        if p.max_cost_usd.is_some() {
            crate::session::ops::update_session(&session, None, p.max_cost_usd).await?;
        }
        if !p.initial_message.is_empty() {
            turn::user_message(&session, p.initial_message).await?;
        }
        Ok(session)
    }

    pub async fn fork(
        self: &Arc<Self>,
        source: &Arc<Session>,
        name: Option<String>,
    ) -> Result<Arc<Session>, ErrorBody> {
        if let Some(n) = &name {
            validate_name(n)?;
        }
        let src = source.row();
        let id = ids::session_id();
        let ws = self.paths.sessions_dir().join(&id).join("workspace");
        let from = PathBuf::from(&src.workspace);
        let copy = {
            let (from, to) = (from.clone(), ws.clone());
            // The fork's workspace is tether's, so private like a new one.
            tokio::task::spawn_blocking(move || {
                crate::private::create_dir(&to)?;
                copy_dir(&from, &to)
            })
            .await
        };
        match copy {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ErrorBody::new(
                    ErrorCode::Storage,
                    format!(
                        "cannot copy the workspace {} to {}: {e}",
                        from.display(),
                        ws.display()
                    ),
                ));
            }
            Err(e) => return Err(ErrorBody::new(ErrorCode::Internal, e.to_string())),
        }
        let now = ids::now_rfc3339();
        let row = SessionRow {
            id: id.clone(),
            name,
            workspace: ws.display().to_string(),
            workspace_owned: true,
            created_at: now.clone(),
            updated_at: now,
            archived_at: None,
            forked_from: Some(src.id.clone()),
            ..src
        };
        if let Err(e) = self
            .store
            .create_session(row, Some(source.id.clone()))
            .await
        {
            let _ = std::fs::remove_dir_all(ws.parent().unwrap_or(&ws));
            return Err(e.into());
        }
        let fork = self.load(&id).await?;
        // A fork of a session caught mid-turn starts idle: close what was open.
        if fork.state().status() != SessionStatus::Idle {
            settle_interrupted(&fork, "the session was forked while this ran").await?;
        }
        Ok(fork)
    }

    /// Gives a session a new name, recorded as `session.updated {name}` so every attached
    /// client sees it; the same name again changes nothing.
    pub async fn rename(&self, session: &Arc<Session>, name: String) -> Result<(), ErrorBody> {
        let name = name.trim().to_string();
        validate_name(&name)?;
        if session.row().name.as_deref() == Some(name.as_str()) {
            return Ok(());
        }
        self.store
            .set_session_name(&session.id, name.clone())
            .await?;
        session.update_row(|row| row.name = Some(name.clone()));
        session
            .append_one(EventBody::SessionUpdated {
                model: None,
                max_cost_usd: None,
                title: None,
                name: Some(name),
                metadata: None,
                vault_ids: None,
                agent: None,
            })
            .await?;
        Ok(())
    }

    pub async fn archive(&self, session: &Arc<Session>) -> Result<(), ErrorBody> {
        // A session's threads go with it (a thread has none of its own).
        if session.thread.is_none() {
            for row in self.store.list_threads(&session.id).await? {
                if row.archived_at.is_some() {
                    continue;
                }
                match self.loaded(&row.id) {
                    Some(t) => Box::pin(self.archive(&t)).await?,
                    None => {
                        self.store
                            .set_archived(&row.id, Some(ids::now_rfc3339()))
                            .await?
                    }
                }
            }
        }
        if session.cancel_turn() {
            wait_turn_end(session).await;
        }
        session.toolbox.shutdown().await;
        session.mcp.close().await;
        let now = ids::now_rfc3339();
        self.store
            .set_archived(&session.id, Some(now.clone()))
            .await?;
        session.update_row(|row| row.archived_at = Some(now));
        // Its worker hears it at the next heartbeat (`lease_extended: false`) and lets go.
        if let Some(q) = self.services.work_queue.get() {
            q.withdraw(&session.id, false).await?;
        }
        Ok(())
    }

    pub async fn delete(&self, session: &Arc<Session>) -> Result<(), ErrorBody> {
        if let Some(q) = self.services.work_queue.get() {
            q.withdraw(&session.id, true).await?;
        }
        for row in self.store.list_threads(&session.id).await? {
            let loaded = self.registry().remove(&row.id);
            if let Some(t) = loaded {
                t.halt().await;
            }
            self.store.delete_session(&row.id).await?;
        }
        session.halt().await;
        self.store.delete_session(&session.id).await?;
        self.registry().remove(&session.id);
        self.session_changes.note(&session.id);
        crate::spool::remove_session(&self.paths.data_dir, &session.id);
        let row = session.row();
        if row.workspace_owned {
            let dir = self.paths.sessions_dir().join(&row.id);
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
                tracing::warn!(session = %row.id, error = %e, "could not remove the workspace");
            }
        }
        Ok(())
    }

    /// Resumes sessions that were running when the daemon stopped. A session that can't be
    /// resumed is logged and left as it is (the next start tries again); the others go on.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, ErrorBody> {
        let rows = self.store.list_sessions(false).await?;
        let mut resumed = 0;
        for row in rows {
            if !matches!(
                row.status,
                SessionStatus::Running | SessionStatus::Rescheduling
            ) {
                continue;
            }
            match self.resume(&row.id).await {
                Ok(()) => resumed += 1,
                Err(e) => {
                    tracing::error!(session = %row.id, error = %e, "could not resume the session; the next start tries again")
                }
            }
        }
        // Child threads resume by the same rules (a primary waiting for one awaits it again).
        for id in self.store.running_threads().await? {
            match self.resume(&id).await {
                Ok(()) => resumed += 1,
                Err(e) => {
                    tracing::error!(thread = %id, error = %e, "could not resume the thread; the next start tries again")
                }
            }
        }
        Ok(resumed)
    }

    /// Resumes one session that was running: says so (`session.status_rescheduled`), closes
    /// the model request that was cut off (it is re-issued; its deltas were never stored),
    /// then honours a pending interrupt, gives up on a crash loop, or lets the turn loop go on
    /// (it settles tool calls that were in flight, by kind).
    async fn resume(self: &Arc<Self>, id: &str) -> Result<(), ErrorBody> {
        let session = self.load(id).await?;
        tracing::info!(session = %id, "resuming a session that was running");
        let open = session.state().open_request.clone();
        let mut bodies = vec![EventBody::SessionStatusRescheduled {}];
        // Nothing waits for an elicitation across a restart: its call is interrupted below.
        bodies.extend(crate::session::elicitation::close_stale(
            &session.state(),
            "tetherd restarted while it waited for an answer; the tool call it belongs to was interrupted",
        ));
        if let Some(start) = open {
            bodies.push(EventBody::SpanModelRequestEnd {
                model_request_start_id: start,
                is_error: true,
                model_usage: Default::default(),
                latency_ms: None,
            });
        }
        session.append(bodies).await?;
        let (interrupted, resumes) = {
            let st = session.state();
            (st.interrupt_requested, st.resumes_without_progress)
        };
        if interrupted {
            settle_interrupted(
                &session,
                "the user interrupted the turn; tetherd restarted before it stopped, so this call did not run",
            )
            .await?;
            return Ok(());
        }
        let limit = self.config.max_resumes;
        if resumes > limit {
            tracing::error!(session = %id, resumes, "the session keeps crashing at the same point; stopping it");
            let mut bodies = events::interrupted_results(
                &session.state().pending_tools,
                "not run: the session was stopped after crashing repeatedly",
            );
            bodies.push(EventBody::SessionError {
                error: tether_proto::SessionErrorInfo {
                    kind: "crash_loop".into(),
                    message: format!(
                        "tetherd stopped {resumes} times in a row while running this session without it making progress, so it was not resumed again (max_resumes = {limit}). Check the daemon log (`tether daemon logs`) for the cause, then send a message to continue."
                    ),
                    retry_status: tether_proto::RetryStatus {
                        kind: tether_proto::RetryStatusKind::Exhausted,
                    },
                    attempt: Some(resumes),
                    max_attempts: Some(limit),
                    retry_in_ms: None,
                    mcp_server_name: None,
                },
            });
            bodies.push(EventBody::SessionStatusIdle {
                stop_reason: StopReason::Error,
            });
            session.append(bodies).await?;
            return Ok(());
        }
        turn::ensure(&session);
        Ok(())
    }

    pub fn anthropic_status(&self) -> tether_proto::method::ProviderStatus {
        self.providers.status("anthropic")
    }

    /// Readiness of every provider in use (see `Providers::in_use`).
    pub fn provider_statuses(&self) -> Vec<tether_proto::method::ProviderStatus> {
        self.providers
            .in_use()
            .iter()
            .map(|name| self.providers.status(name))
            .collect()
    }

    pub fn client_count(&self) -> u64 {
        self.clients.load(Ordering::Relaxed)
    }
}

/// Gives open tool calls an interrupted result and marks the session idle.
pub async fn settle_interrupted(session: &Arc<Session>, why: &str) -> Result<(), StoreError> {
    let bodies = events::interrupted_then_idle(&session.state(), why);
    session.append(bodies).await?;
    Ok(())
}

async fn wait_turn_end(session: &Arc<Session>) {
    if let Some(t) = session.take_turn() {
        let _ = t.task.await;
    }
}

fn validate_name(name: &str) -> Result<(), ErrorBody> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with("sesn_");
    if ok {
        Ok(())
    } else {
        Err(ErrorBody::new(
            ErrorCode::InvalidParams,
            format!(
                "invalid session name `{name}`: use 1-64 letters, digits, `-`, `_` or `.` (and don't start with `sesn_`)"
            ),
        ))
    }
}

fn existing_dir(dir: &str) -> Result<PathBuf, ErrorBody> {
    let p = std::fs::canonicalize(dir).map_err(|e| {
        ErrorBody::new(
            ErrorCode::InvalidParams,
            format!(
                "--dir {dir}: {e}; create the directory first or omit --dir for a fresh workspace"
            ),
        )
    })?;
    if !p.is_dir() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidParams,
            format!("--dir {dir} is not a directory"),
        ));
    }
    Ok(p)
}

/// Recursive copy keeping symlinks as symlinks (never following them out of the tree).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(target, &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}
