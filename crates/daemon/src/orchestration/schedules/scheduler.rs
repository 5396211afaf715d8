//! The scheduler task: it keeps each live scheduled deployment with the time it next needs
//! looking at, sleeps until the earliest of those (never polls), and on waking handles only
//! the deployments that are due. Any change to a deployment wakes it to read them again.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;

use super::clock::Clock;
use super::deployments::{Stored, instant, parse_instant};
use super::fire::{self, Trigger};
use super::timing::{self, Timing};
use crate::runtime::Runtime;
use crate::store::deployments::{self as sql, DeploymentRow};

/// After a store error, how long before trying a deployment again.
const RETRY: Duration = Duration::seconds(30);

pub struct Scheduler {
    rt: Arc<Runtime>,
    clock: Arc<dyn Clock>,
    /// The clock's time at the end of each pass (tests wait on it instead of sleeping).
    passes: watch::Sender<Option<DateTime<Utc>>>,
}

struct Entry {
    row: DeploymentRow,
    timing: Timing,
    /// When to look at it next; None: at the next pass.
    wake_at: Option<DateTime<Utc>>,
}

impl Scheduler {
    /// Finishes the runs a crash interrupted, then schedules every live deployment.
    pub fn start(rt: Arc<Runtime>, clock: Arc<dyn Clock>) -> Arc<Scheduler> {
        let s = Arc::new(Scheduler {
            rt,
            clock,
            passes: watch::Sender::new(None),
        });
        let task = s.clone();
        tokio::spawn(async move {
            match fire::recover(&task.rt).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "finished deployment runs a crash interrupted"),
                Err(e) => tracing::error!(error = %e.message, "deployment run recovery failed"),
            }
            task.run().await;
        });
        s
    }

    /// Resolves once a pass has ended at clock time `at` or later.
    pub async fn passed(&self, at: DateTime<Utc>) {
        let mut rx = self.passes.subscribe();
        let _ = rx.wait_for(|p| p.is_some_and(|p| p >= at)).await;
    }

    async fn load(&self) -> HashMap<String, Entry> {
        let rows = match self.rt.store.read(sql::list_deployments).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read deployments; scheduled fires wait");
                return HashMap::new();
            }
        };
        rows.into_iter()
            .filter(|r| r.archived_at.is_none() && r.status == "active")
            .filter_map(|row| {
                let timing = Stored::of(&row).ok()?.timing()?;
                Some((
                    row.id.clone(),
                    Entry {
                        row,
                        timing,
                        wake_at: None,
                    },
                ))
            })
            .collect()
    }

    async fn run(self: Arc<Self>) {
        let mut entries = HashMap::new();
        let mut reload = true;
        loop {
            if reload {
                entries = self.load().await;
                reload = false;
            }
            let now = self.clock.now();
            for entry in entries.values_mut() {
                if entry.wake_at.is_none_or(|w| w <= now) && self.handle(entry, now).await {
                    reload = true;
                }
            }
            entries.retain(|_, e| e.wake_at.is_some());
            self.passes.send_replace(Some(now));
            if reload {
                continue;
            }
            let sleep = match entries.values().filter_map(|e| e.wake_at).min() {
                Some(at) => self.clock.sleep_until(at),
                None => Box::pin(std::future::pending()),
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.rt.schedules_changed.notified() => reload = true,
                _ = self.rt.shutdown.cancelled() => return,
            }
        }
    }

    /// Records what was missed and fires what is due; true if the deployment changed (a fire
    /// paused it), so everything is read again.
    async fn handle(&self, e: &mut Entry, now: DateTime<Utc>) -> bool {
        let cursor = e
            .row
            .schedule_cursor
            .as_deref()
            .or(Some(e.row.created_at.as_str()))
            .and_then(parse_instant)
            .unwrap_or(now);
        let plan = timing::plan(&e.timing, &e.row.id, cursor, now);
        if let Err(err) = fire::record_missed(&self.rt, &e.row, &plan.missed).await {
            tracing::error!(deployment = %e.row.id, error = %err.message, "cannot record missed fires");
            e.wake_at = Some(now + RETRY);
            return false;
        }
        if let Some(last) = plan.missed.last() {
            e.row.schedule_cursor = Some(instant(*last));
        }
        for at in plan.due {
            match fire::fire(&self.rt, &e.row, Trigger::Schedule(at)).await {
                Ok(run) => {
                    e.row.schedule_cursor = Some(instant(at));
                    if run.is_some_and(|r| r.error.is_some()) {
                        // Its error may have paused the deployment.
                        return true;
                    }
                }
                Err(err) => {
                    tracing::error!(deployment = %e.row.id, error = %err.message, "a scheduled fire failed");
                    e.wake_at = Some(now + RETRY);
                    return false;
                }
            }
        }
        e.wake_at = plan.wake_at;
        false
    }
}
