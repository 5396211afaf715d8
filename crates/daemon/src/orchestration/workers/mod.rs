//! Self-hosted environments' work queues. A session in a `self_hosted` environment does not
//! run its `bash`/`read`/`write`/`edit`/`glob`/`grep` calls: it waits for a worker's
//! `user.tool_result` (`requires_action`), and gets a work item on its environment's queue,
//! recorded before the session says it waits. The hosted protocol, as the official SDK's
//! worker speaks it: a poll hands an item out (with a per-poll sessions token in its
//! `secret`), `ack` takes it off the queue and starts its lease, heartbeats extend the lease,
//! `stop` ends it. The worker then reads the session's events and posts results like any
//! client; each is committed as the same `agent.tool_result` a local call gets.
//!
//! One item per session at a time, one worker per item: a reclaimed poll gets a fresh token
//! (the old one stops working) and the first heartbeat claims the lease (`NO_HEARTBEAT`),
//! so two live workers never serve one session. A lease that runs out is settled by the
//! daemon-crash rules ([`lease`]); calls still waiting when a worker stops its item go to
//! the next worker.
//!
//! Credentials: the environment key (only its sha256 is stored) opens that environment's
//! work endpoints and nothing else; an item's sessions token opens its session's reads and
//! event posts and its own heartbeat and stop, until the item stops. Both are checked in
//! memory ([`WorkQueue::allows`]).

pub mod lease;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tether_proto::work::{
    EnvironmentKey, EnvironmentWorkers, Work, WorkData, WorkHeartbeat, WorkQueueStats, WorkerSeen,
};
use tether_proto::{ErrorBody, ErrorCode};
use tokio::sync::Notify;

use crate::runtime::Runtime;
use crate::store::Store;
use crate::store::error::StoreError;
use crate::store::work::{self as rows, WorkRow};

/// What a poll that names no `reclaim_older_than_ms` waits before handing out an item that
/// was polled but never acknowledged (hosted default).
pub const DEFAULT_RECLAIM_MS: i64 = 5000;
/// A poll blocks at most this long (hosted: `block_ms` is 1-999).
pub const MAX_BLOCK_MS: u64 = 999;
/// `expected_last_heartbeat` that claims a lease nobody has heartbeated yet.
pub const NO_HEARTBEAT: &str = "NO_HEARTBEAT";

/// A sessions token's reach: one item, its session, its environment.
#[derive(Debug, Clone)]
struct Grant {
    work_id: String,
    session_id: String,
    environment_id: String,
}

#[derive(Default)]
struct Inner {
    /// environment id → sha256 of its key.
    keys: HashMap<String, String>,
    /// sha256 of a live item's sessions token → what it opens.
    tokens: HashMap<String, Grant>,
    /// Woken when an environment gets a queued item (long polls wait on it).
    wakers: HashMap<String, Arc<Notify>>,
    /// environment id → worker id → last poll or heartbeat (since this daemon started).
    seen: HashMap<String, BTreeMap<String, (Instant, String)>>,
    /// work id → when its lease ends (unix ms), for the items that hold one.
    leases: HashMap<String, (i64, String)>,
}

pub struct WorkQueue {
    rt: Weak<Runtime>,
    store: Store,
    default_ttl: u64,
    max_ttl: u64,
    inner: Mutex<Inner>,
    /// Woken when a lease starts, moves or ends (the lease timer waits on it).
    leases_changed: Notify,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn sha256_hex(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn random_token(prefix: &str) -> Result<String, ErrorBody> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ErrorBody::new(ErrorCode::Internal, "the system random source failed"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{prefix}{hex}"))
}

/// URL-safe base64 without padding (the hosted `secret` encoding).
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The host part of a worker id: the SDK's are `HOST-<12 hex>`.
fn host_of(worker_id: &str) -> String {
    match worker_id.rsplit_once('-') {
        Some((host, tail)) if tail.len() == 12 && tail.chars().all(|c| c.is_ascii_hexdigit()) => {
            host.to_string()
        }
        _ => worker_id.to_string(),
    }
}

fn not_found(environment_id: &str, work_id: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::NotFound,
        format!(
            "no work item `{work_id}` in environment `{environment_id}`; `GET /v1/environments/{environment_id}/work` lists them"
        ),
    )
}

/// The hosted shape of a row; `secret` only in a poll's answer.
pub fn to_work(r: &WorkRow, secret: Option<String>) -> Work {
    let metadata = match &r.metadata {
        Value::Object(m) => m
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    };
    Work {
        id: r.id.clone(),
        object_type: "work".into(),
        acknowledged_at: r.acknowledged_at.clone(),
        created_at: r.created_at.clone(),
        data: WorkData {
            id: r.session_id.clone(),
            kind: "session".into(),
        },
        environment_id: r.environment_id.clone(),
        latest_heartbeat_at: r.latest_heartbeat_at.clone(),
        metadata,
        secret,
        started_at: r.started_at.clone(),
        state: r.state.clone(),
        stop_requested_at: r.stop_requested_at.clone(),
        stopped_at: r.stopped_at.clone(),
    }
}

/// Why a heartbeat was refused.
pub enum HeartbeatError {
    Error(ErrorBody),
    /// `expected_last_heartbeat` is not the stored one: another worker may hold the lease.
    Precondition(WorkHeartbeat),
}

impl From<ErrorBody> for HeartbeatError {
    fn from(e: ErrorBody) -> Self {
        HeartbeatError::Error(e)
    }
}

impl From<StoreError> for HeartbeatError {
    fn from(e: StoreError) -> Self {
        HeartbeatError::Error(e.into())
    }
}

impl WorkQueue {
    /// Loads keys, live items' tokens and leases, installs the queue in the runtime's
    /// services and starts the lease timer.
    pub async fn start(rt: &Arc<Runtime>) -> Result<Arc<WorkQueue>, StoreError> {
        let (keys, live) = rt
            .store
            .read(|c| Ok((rows::keys(c)?, rows::live(c)?)))
            .await?;
        let mut inner = Inner {
            keys: keys.into_iter().collect(),
            ..Inner::default()
        };
        for r in &live {
            if let Some(sha) = &r.token_sha256 {
                inner.tokens.insert(sha.clone(), grant_of(r));
            }
            if let Some(at) = r.lease_expires_at_ms {
                inner
                    .leases
                    .insert(r.id.clone(), (at, r.environment_id.clone()));
            }
        }
        let q = Arc::new(WorkQueue {
            rt: Arc::downgrade(rt),
            store: rt.store.clone(),
            default_ttl: rt.config.workers.lease_ttl_secs.max(1),
            max_ttl: rt.config.workers.max_lease_ttl_secs.max(1),
            inner: Mutex::new(inner),
            leases_changed: Notify::new(),
        });
        let _ = rt.work_queue.set(q.clone());
        tokio::spawn(lease::run(q.clone(), rt.shutdown.clone()));
        Ok(q)
    }

    /// The queue the daemon installed, for the doors.
    pub fn of(rt: &Runtime) -> Option<Arc<WorkQueue>> {
        let any = rt.work_queue.get()?.clone().as_any();
        any.downcast::<WorkQueue>().ok()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waker(&self, environment_id: &str) -> Arc<Notify> {
        self.lock()
            .wakers
            .entry(environment_id.to_string())
            .or_default()
            .clone()
    }

    fn saw(&self, environment_id: &str, worker_id: Option<&str>) {
        if let Some(w) = worker_id.filter(|w| !w.is_empty()) {
            self.lock()
                .seen
                .entry(environment_id.to_string())
                .or_default()
                .insert(w.to_string(), (Instant::now(), crate::ids::now_rfc3339()));
        }
    }

    fn set_lease(&self, r: &WorkRow) {
        {
            let mut inner = self.lock();
            match r.lease_expires_at_ms {
                Some(at) if r.state != "stopped" => {
                    inner
                        .leases
                        .insert(r.id.clone(), (at, r.environment_id.clone()));
                }
                _ => {
                    inner.leases.remove(&r.id);
                }
            }
            if r.state == "stopped"
                && let Some(sha) = &r.token_sha256
            {
                inner.tokens.remove(sha);
            }
        }
        self.leases_changed.notify_one();
    }

    /// Records a queued item for the session unless it has a live one, then wakes the
    /// environment's long polls.
    pub async fn enqueue(&self, environment_id: &str, session_id: &str) -> Result<(), StoreError> {
        let (env, sid) = (environment_id.to_string(), session_id.to_string());
        let added = self
            .store
            .write(move |c| {
                if rows::live_for_session(c, &sid)?.is_some() {
                    return Ok(false);
                }
                rows::insert(
                    c,
                    &WorkRow {
                        id: crate::ids::work_id(),
                        environment_id: env,
                        session_id: sid,
                        state: "queued".into(),
                        created_at: crate::ids::now_rfc3339(),
                        polled_at_ms: None,
                        worker_id: None,
                        token_sha256: None,
                        acknowledged_at: None,
                        started_at: None,
                        latest_heartbeat_at: None,
                        lease_expires_at_ms: None,
                        stop_requested_at: None,
                        stopped_at: None,
                        metadata: Value::Object(Default::default()),
                    },
                )?;
                Ok(true)
            })
            .await?;
        if added {
            self.waker(environment_id).notify_waiters();
        }
        Ok(())
    }

    /// Hands out the oldest item available, waiting up to `block_ms` for one.
    pub async fn poll(
        &self,
        environment_id: &str,
        worker_id: Option<&str>,
        block_ms: u64,
        reclaim_ms: i64,
    ) -> Result<Option<Work>, ErrorBody> {
        self.saw(environment_id, worker_id);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(block_ms);
        let waker = self.waker(environment_id);
        loop {
            // Registered before looking, so an item queued in between still wakes us.
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(w) = self.take(environment_id, worker_id, reclaim_ms).await? {
                return Ok(Some(w));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn take(
        &self,
        environment_id: &str,
        worker_id: Option<&str>,
        reclaim_ms: i64,
    ) -> Result<Option<Work>, ErrorBody> {
        let token = random_token("tether-wst-")?;
        let sha = sha256_hex(&token);
        let (env, worker) = (environment_id.to_string(), worker_id.map(str::to_string));
        let taken = self
            .store
            .write(move |c| {
                let now = now_ms();
                let Some(mut r) = rows::next_queued(c, &env, now - reclaim_ms.max(0))? else {
                    return Ok(None);
                };
                let old = r.token_sha256.replace(sha);
                r.polled_at_ms = Some(now);
                r.worker_id = worker;
                rows::update(c, &r)?;
                Ok(Some((r, old)))
            })
            .await?;
        let Some((r, old)) = taken else {
            return Ok(None);
        };
        {
            let mut inner = self.lock();
            if let Some(old) = old {
                // A reclaimed item: whoever polled it before can no longer act for it.
                inner.tokens.remove(&old);
            }
            if let Some(sha) = &r.token_sha256 {
                inner.tokens.insert(sha.clone(), grant_of(&r));
            }
        }
        let secret = base64url(
            serde_json::json!({ "sessions_token": token })
                .to_string()
                .as_bytes(),
        );
        Ok(Some(to_work(&r, Some(secret))))
    }

    async fn get_row(&self, environment_id: &str, work_id: &str) -> Result<WorkRow, ErrorBody> {
        let (env, id) = (environment_id.to_string(), work_id.to_string());
        self.store
            .read(move |c| rows::get(c, &env, &id))
            .await?
            .ok_or_else(|| not_found(environment_id, work_id))
    }

    pub async fn retrieve(&self, environment_id: &str, work_id: &str) -> Result<Work, ErrorBody> {
        Ok(to_work(&self.get_row(environment_id, work_id).await?, None))
    }

    pub async fn list(&self, environment_id: &str) -> Result<Vec<Work>, ErrorBody> {
        let env = environment_id.to_string();
        let all = self.store.read(move |c| rows::list(c, &env)).await?;
        Ok(all.iter().map(|r| to_work(r, None)).collect())
    }

    /// Runs `change` on the stored row under the writer (so concurrent requests see each
    /// other's writes), then mirrors the result in memory.
    async fn change<T: Send + 'static>(
        &self,
        environment_id: &str,
        work_id: &str,
        change: impl FnOnce(&mut WorkRow) -> Result<T, ErrorBody> + Send + 'static,
    ) -> Result<(WorkRow, T), ErrorBody> {
        let (env, id) = (environment_id.to_string(), work_id.to_string());
        let missing = not_found(environment_id, work_id);
        let out = self
            .store
            .write(move |c| {
                let Some(mut r) = rows::get(c, &env, &id)? else {
                    return Ok(Err(missing));
                };
                let before = r.clone();
                let t = match change(&mut r) {
                    Ok(t) => t,
                    Err(e) => return Ok(Err(e)),
                };
                if r != before {
                    rows::update(c, &r)?;
                }
                Ok(Ok((r, t)))
            })
            .await??;
        self.set_lease(&out.0);
        Ok(out)
    }

    /// Takes the item off the queue and starts its lease.
    pub async fn ack(&self, environment_id: &str, work_id: &str) -> Result<Work, ErrorBody> {
        let ttl = self.default_ttl;
        let (r, ()) = self
            .change(environment_id, work_id, move |r| {
                if r.state != "queued" {
                    return Err(ErrorBody::new(
                        ErrorCode::Conflict,
                        format!(
                            "work item {} is {}, not queued: it was already acknowledged; poll for another",
                            r.id, r.state
                        ),
                    ));
                }
                r.state = "starting".into();
                r.acknowledged_at = Some(crate::ids::now_rfc3339());
                r.lease_expires_at_ms = Some(now_ms() + ttl as i64 * 1000);
                Ok(())
            })
            .await?;
        Ok(to_work(&r, None))
    }

    /// Extends the lease if `expected` is the stored heartbeat (or `NO_HEARTBEAT` for the
    /// first); says `lease_extended: false` once the item is stopping or stopped.
    pub async fn heartbeat(
        &self,
        environment_id: &str,
        work_id: &str,
        expected: Option<String>,
        desired_ttl: Option<u64>,
    ) -> Result<WorkHeartbeat, HeartbeatError> {
        let ttl = desired_ttl
            .unwrap_or(self.default_ttl)
            .clamp(1, self.max_ttl);
        let (r, refused) = self
            .change(environment_id, work_id, move |r| {
                let current = r.latest_heartbeat_at.clone();
                let view = |r: &WorkRow, extended: bool| WorkHeartbeat {
                    object_type: "work_heartbeat".into(),
                    last_heartbeat: r.latest_heartbeat_at.clone().unwrap_or_default(),
                    lease_extended: extended,
                    state: r.state.clone(),
                    ttl_seconds: ttl,
                };
                match r.state.as_str() {
                    "stopping" | "stopped" => return Ok(Some(Ok(view(r, false)))),
                    "queued" => {
                        return Err(ErrorBody::new(
                            ErrorCode::Conflict,
                            format!(
                                "work item {} is queued: acknowledge it (POST .../work/{}/ack) before its first heartbeat",
                                r.id, r.id
                            ),
                        ));
                    }
                    _ => {}
                }
                let stored = current.as_deref().unwrap_or(NO_HEARTBEAT);
                if let Some(e) = &expected
                    && e != stored
                {
                    return Ok(Some(Err(view(r, false))));
                }
                let mut now = crate::ids::now_rfc3339();
                if current.as_deref() == Some(now.as_str()) {
                    // Two heartbeats in one millisecond: keep the echo value unique.
                    now.push_str("+1");
                }
                r.latest_heartbeat_at = Some(now.clone());
                r.started_at.get_or_insert(now);
                r.state = "active".into();
                r.lease_expires_at_ms = Some(now_ms() + ttl as i64 * 1000);
                Ok(None)
            })
            .await?;
        self.saw(environment_id, r.worker_id.as_deref());
        match refused {
            Some(Ok(not_extended)) => Ok(not_extended),
            Some(Err(state)) => Err(HeartbeatError::Precondition(state)),
            None => Ok(WorkHeartbeat {
                object_type: "work_heartbeat".into(),
                last_heartbeat: r.latest_heartbeat_at.clone().unwrap_or_default(),
                lease_extended: true,
                state: r.state.clone(),
                ttl_seconds: ttl,
            }),
        }
    }

    /// Stops the item: at once when `force` (or nobody acknowledged it), else `stopping`
    /// (its worker hears it at its next heartbeat and stops it). A stop says the worker
    /// runs nothing of the session any more (the SDK's worker finishes and posts a running
    /// call first), so calls still waiting are offered to the next worker; only a lease that
    /// runs out (a worker that vanished) gets the crash rules.
    pub async fn stop(
        &self,
        environment_id: &str,
        work_id: &str,
        force: bool,
    ) -> Result<Work, ErrorBody> {
        let (r, ()) = self
            .change(environment_id, work_id, move |r| {
                // 409, as hosted: the SDKs' workers take it to mean "already stopped".
                if r.state == "stopped" {
                    return Err(ErrorBody::new(
                        ErrorCode::Conflict,
                        format!("work item {} is already stopped", r.id),
                    ));
                }
                let now = crate::ids::now_rfc3339();
                r.stop_requested_at.get_or_insert(now.clone());
                if force || r.state == "queued" || r.state == "stopping" {
                    r.state = "stopped".into();
                    r.stopped_at = Some(now);
                    r.lease_expires_at_ms = None;
                } else {
                    r.state = "stopping".into();
                }
                Ok(())
            })
            .await?;
        if r.state == "stopped" {
            self.settle_after_stop(&r);
        }
        Ok(to_work(&r, None))
    }

    /// Merges `metadata` (null deletes a key).
    pub async fn update_metadata(
        &self,
        environment_id: &str,
        work_id: &str,
        patch: BTreeMap<String, Option<String>>,
    ) -> Result<Work, ErrorBody> {
        let (r, ()) = self
            .change(environment_id, work_id, move |r| {
                let mut m = match std::mem::take(&mut r.metadata) {
                    Value::Object(m) => m,
                    _ => Default::default(),
                };
                for (k, v) in patch {
                    match v {
                        Some(v) => {
                            m.insert(k, Value::String(v));
                        }
                        None => {
                            m.remove(&k);
                        }
                    }
                }
                r.metadata = Value::Object(m);
                Ok(())
            })
            .await?;
        Ok(to_work(&r, None))
    }

    pub async fn stats(&self, environment_id: &str) -> Result<WorkQueueStats, ErrorBody> {
        let env = environment_id.to_string();
        let live = self.store.read(rows::live).await?;
        let queued: Vec<&WorkRow> = live
            .iter()
            .filter(|r| r.environment_id == env && r.state == "queued")
            .collect();
        let pending = queued.iter().filter(|r| r.polled_at_ms.is_some()).count() as u64;
        let polling = self
            .lock()
            .seen
            .get(environment_id)
            .map(|m| {
                m.values()
                    .filter(|(at, _)| at.elapsed() < Duration::from_secs(30))
                    .count() as u64
            })
            .unwrap_or(0);
        Ok(WorkQueueStats {
            object_type: "work_queue_stats".into(),
            depth: queued.len() as u64 - pending,
            pending,
            oldest_queued_at: queued.first().map(|r| r.created_at.clone()),
            workers_polling: Some(polling),
        })
    }

    /// `tether envs show`: the workers seen and what they hold.
    pub async fn workers(&self, environment_id: &str) -> Result<EnvironmentWorkers, ErrorBody> {
        let env = environment_id.to_string();
        let live = self.store.read(rows::live).await?;
        let mine: Vec<&WorkRow> = live.iter().filter(|r| r.environment_id == env).collect();
        let held = |w: &str| {
            mine.iter()
                .filter(|r| r.state != "queued" && r.worker_id.as_deref() == Some(w))
                .count() as u64
        };
        let e = env.clone();
        // Workers that held items are on record; pure pollers only in memory since start.
        let mut last: BTreeMap<String, String> = self
            .store
            .read(move |c| rows::workers_of(c, &e))
            .await?
            .into_iter()
            .collect();
        let inner = self.lock();
        for (id, (_, at)) in inner.seen.get(environment_id).into_iter().flatten() {
            let newer = last.get(id).is_none_or(|known| known < at);
            if newer {
                last.insert(id.clone(), at.clone());
            }
        }
        let workers = last
            .into_iter()
            .map(|(id, at)| WorkerSeen {
                host: host_of(&id),
                in_flight: held(&id),
                worker_id: id,
                last_seen_at: at,
            })
            .collect();
        Ok(EnvironmentWorkers {
            environment_id: env.clone(),
            has_key: inner.keys.contains_key(&env),
            workers,
            queued: mine.iter().filter(|r| r.state == "queued").count() as u64,
            in_flight: mine.iter().filter(|r| r.state != "queued").count() as u64,
        })
    }

    /// Makes a key if the environment has none (or `rotate`); the key is in the answer only
    /// then, as only its hash is kept.
    pub async fn key(
        &self,
        environment_id: &str,
        rotate: bool,
    ) -> Result<EnvironmentKey, ErrorBody> {
        let env = environment_id.to_string();
        let existing = self
            .store
            .read(move |c| rows::key_created_at(c, &env))
            .await?;
        if let (Some(created_at), false) = (&existing, rotate) {
            return Ok(EnvironmentKey {
                environment_id: environment_id.to_string(),
                key: None,
                created_at: created_at.clone(),
            });
        }
        let key = random_token("tether-envkey-")?;
        let sha = sha256_hex(&key);
        let now = crate::ids::now_rfc3339();
        let (env, s, n) = (environment_id.to_string(), sha.clone(), now.clone());
        self.store
            .write(move |c| rows::set_key(c, &env, &s, &n))
            .await?;
        self.lock().keys.insert(environment_id.to_string(), sha);
        Ok(EnvironmentKey {
            environment_id: environment_id.to_string(),
            key: Some(key),
            created_at: now,
        })
    }

    /// Whether `token` (not the daemon's own) opens `method path`: the environment key its
    /// environment's work endpoints and the sessions its workers hold items of, a sessions
    /// token its item's session and its own heartbeat and stop. What a worker may post to a
    /// session is narrowed further by the events handler (`WorkerCaller`).
    pub fn allows(&self, token: &str, method: &axum::http::Method, path: &str) -> bool {
        use axum::http::Method;
        let sha = sha256_hex(token.trim());
        let seg: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let inner = self.lock();
        match seg.as_slice() {
            ["v1", "environments", env, "work", rest @ ..] => {
                if inner
                    .keys
                    .get(*env)
                    .is_some_and(|k| crate::http::token::matches(&sha, k))
                {
                    return true;
                }
                let grant = inner.tokens.get(&sha);
                matches!((grant, rest), (Some(g), [id, "heartbeat" | "stop"])
                    if g.environment_id == *env && g.work_id == *id && method == Method::POST)
            }
            ["v1", "sessions", sid, rest @ ..] => {
                let opens = matches!(
                    (method, rest),
                    (&Method::GET, [] | ["events"] | ["events", "stream"])
                        | (&Method::POST, ["events"])
                );
                // The item's sessions token; or the environment key, for a session of its
                // environment that a worker holds an item of (the SDK's `handle_item` falls
                // back to the key when the item's secret is not handed to it).
                let by_token = inner.tokens.get(&sha).is_some_and(|g| g.session_id == *sid);
                let by_key = || {
                    inner.tokens.values().any(|g| {
                        g.session_id == *sid
                            && inner
                                .keys
                                .get(&g.environment_id)
                                .is_some_and(|k| crate::http::token::matches(&sha, k))
                    })
                };
                opens && (by_token || by_key())
            }
            _ => false,
        }
    }

    /// An item stopped: calls of its session still waiting go to the next worker.
    fn settle_after_stop(&self, r: &WorkRow) {
        if let Some(rt) = self.rt.upgrade() {
            let (env, sid) = (r.environment_id.clone(), r.session_id.clone());
            tokio::spawn(lease::requeue(rt, env, sid));
        }
    }
}

/// The queue, or why this daemon serves none.
pub fn serving(rt: &Runtime) -> Result<Arc<WorkQueue>, ErrorBody> {
    WorkQueue::of(rt).ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::Internal,
            "this tetherd could not start its work queues (see its log); restart it",
        )
    })
}

/// The id of the self-hosted environment `reference` names; an error naming it otherwise.
pub async fn self_hosted(rt: &Runtime, reference: &str) -> Result<String, ErrorBody> {
    let env = crate::resources::environments::get(&rt.store, &rt.builds, reference).await?;
    if !env.spec.config.is_self_hosted() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidParams,
            format!(
                "environment `{reference}` ({}) runs its tools in tetherd (config type cloud); only self_hosted environments have workers and a key: `tether envs create NAME --self-hosted`",
                env.id
            ),
        ));
    }
    Ok(env.id)
}

fn grant_of(r: &WorkRow) -> Grant {
    Grant {
        work_id: r.id.clone(),
        session_id: r.session_id.clone(),
        environment_id: r.environment_id.clone(),
    }
}

impl crate::session::services::WorkQueue for WorkQueue {
    fn offer<'a>(
        &'a self,
        environment_id: &'a str,
        session_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        Box::pin(self.enqueue(environment_id, session_id))
    }

    fn withdraw<'a>(
        &'a self,
        session_id: &'a str,
        force: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), ErrorBody>> + Send + 'a>> {
        Box::pin(async move {
            let sid = session_id.to_string();
            let live = self
                .store
                .read(move |c| rows::live_for_session(c, &sid))
                .await?;
            if let Some(r) = live {
                self.stop(&r.environment_id, &r.id, force).await?;
            }
            Ok(())
        })
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_the_sdks_base64url_json() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn host_is_the_worker_id_without_the_sdks_suffix() {
        assert_eq!(host_of("box1-0123456789ab"), "box1");
        assert_eq!(host_of("my-box-0123456789ab"), "my-box");
        assert_eq!(host_of("plain"), "plain");
        assert_eq!(host_of("a-b"), "a-b");
    }
}
