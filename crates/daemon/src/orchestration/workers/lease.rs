//! Lease expiry: a worker that stops heartbeating (killed, cut off) loses its item when the
//! lease runs out. The item stops, its token stops working, and the session's open worker
//! calls are settled as after a daemon crash: read-only calls wait for the next worker (a new
//! item is queued), the others get an `interrupted` result and never run again. One task
//! sleeps until the earliest deadline; a lease that starts, moves or ends wakes it (no
//! polling). Deadlines are stored, so a restart picks up where the last daemon left off.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{WorkQueue, now_ms};
use crate::runtime::Runtime;
use crate::store::work as rows;

pub async fn run(q: Arc<WorkQueue>, shutdown: CancellationToken) {
    loop {
        let changed = q.leases_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let now = now_ms();
        let (due, next): (Vec<(String, String)>, Option<i64>) = {
            let inner = q.lock();
            let due = inner
                .leases
                .iter()
                .filter(|(_, (at, _))| *at <= now)
                .map(|(id, (_, env))| (id.clone(), env.clone()))
                .collect();
            let next = inner
                .leases
                .values()
                .map(|(at, _)| *at)
                .filter(|at| *at > now)
                .min();
            (due, next)
        };
        for (work_id, env) in due {
            expire(&q, &env, &work_id).await;
        }
        let wait = next.map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis((at - now).max(1) as u64)
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = &mut changed => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Stops an item whose lease ran out (checked again under the writer: a heartbeat may have
/// just extended it) and settles its session.
async fn expire(q: &Arc<WorkQueue>, environment_id: &str, work_id: &str) {
    let (env, id) = (environment_id.to_string(), work_id.to_string());
    let stopped = q
        .store
        .write(move |c| {
            let Some(mut r) = rows::get(c, &env, &id)? else {
                return Ok(None);
            };
            let expired =
                r.state != "stopped" && r.lease_expires_at_ms.is_some_and(|at| at <= now_ms());
            if !expired {
                return Ok(Some((r, false)));
            }
            r.state = "stopped".into();
            r.stopped_at = Some(crate::ids::now_rfc3339());
            r.lease_expires_at_ms = None;
            rows::update(c, &r)?;
            Ok(Some((r, true)))
        })
        .await;
    match stopped {
        Ok(Some((r, expired))) => {
            q.set_lease(&r);
            if expired {
                tracing::warn!(work = %r.id, session = %r.session_id, worker = r.worker_id.as_deref().unwrap_or("?"), "a worker's lease expired; settling its session's calls");
                if let Some(rt) = q.rt.upgrade() {
                    settle(rt, r.environment_id, r.session_id).await;
                }
            }
        }
        Ok(None) => {
            q.lock().leases.remove(work_id);
        }
        Err(e) => {
            // Tried again when the next lease changes (or within the hour).
            tracing::error!(work = %work_id, error = %e, "cannot expire a work item");
        }
    }
}

/// The worker that held the session's item is gone: settle its calls by the crash rules and
/// queue a new item for the calls that may run again.
pub async fn settle(rt: Arc<Runtime>, environment_id: String, session_id: String) {
    let session = match rt.load(&session_id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(session = %session_id, error = %e.message, "cannot settle a lost worker's calls");
            return;
        }
    };
    match crate::session::approvals::worker_lost(&session).await {
        Ok(true) => {
            if let Some(q) = WorkQueue::of(&rt)
                && let Err(e) = q.enqueue(&environment_id, &session_id).await
            {
                tracing::error!(session = %session_id, error = %e, "cannot queue the session's calls again");
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(session = %session_id, error = %e.message, "cannot settle a lost worker's calls");
        }
    }
}

/// The worker let the session's item go (`stop`): it runs nothing of it any more, so calls
/// it did not answer were not run by it and are offered again as they are.
pub async fn requeue(rt: Arc<Runtime>, environment_id: String, session_id: String) {
    let waiting = match rt.load(&session_id).await {
        // An archived session's calls wait for nobody: it runs nothing any more.
        Ok(s) => s.row().archived_at.is_none() && s.state().worker_calls().next().is_some(),
        Err(_) => false,
    };
    if waiting
        && let Some(q) = WorkQueue::of(&rt)
        && let Err(e) = q.enqueue(&environment_id, &session_id).await
    {
        tracing::error!(session = %session_id, error = %e, "cannot queue the session's calls again");
    }
}
