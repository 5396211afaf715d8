//! The scheduler task: it keeps each live scheduled deployment with the time it next needs
//! looking at, sleeps until the earliest of those (never polls), and on waking handles only
//! the deployments that are due. Any change to a deployment wakes it to read them again.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;

use super::clock::Clock;
use super::deployments::parse_instant;
use super::fire::{self, Trigger};
use super::timing::{self, Timing};
use crate::runtime::Runtime;
use crate::store::deployments as sql;
use tether_proto::deployment::ScheduleSpec;

/// After a store error, how long before trying a deployment again.
const RETRY: Duration = Duration::seconds(30);

pub struct Scheduler {
    rt: Arc<Runtime>,
    clock: Arc<dyn Clock>,
    /// The clock's time at the end of each pass (tests wait on it instead of sleeping).
    passes: watch::Sender<Option<DateTime<Utc>>>,
}

/// What the scheduler keeps of a deployment between fires: its id, schedule and cursor (a
/// thousand idle deployments must cost little memory). Its row is read when it is due.
struct Entry {
    id: String,
    timing: Timing,
    /// No occurrence at or before it fires (the row's `schedule_cursor`, else its creation).
    cursor: Option<DateTime<Utc>>,
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
        let rows = match self.rt.store.read(sql::list_schedules).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read deployments; scheduled fires wait");
                return HashMap::new();
            }
        };
        rows.into_iter()
            .filter_map(|row| {
                // A schedule this build can't read is skipped (its fires wait for one that can).
                let spec: ScheduleSpec = serde_json::from_str(&row.schedule).ok()?;
                let timing = Timing::parse(&spec).ok()?;
                let cursor = row
                    .schedule_cursor
                    .as_deref()
                    .or(Some(row.created_at.as_str()))
                    .and_then(parse_instant);
                Some((
                    row.id.clone(),
                    Entry {
                        id: row.id,
                        timing,
                        cursor,
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
            // Nothing scheduled: a change wakes it; the clock may too (the system clock every
            // few minutes, which costs nothing; a test's clock whenever it is moved).
            let next = entries.values().filter_map(|e| e.wake_at).min();
            let sleep = self
                .clock
                .sleep_until(next.unwrap_or(DateTime::<Utc>::MAX_UTC), now);
            // A change first: a pause must not lose to a fire that is due at the same moment.
            tokio::select! {
                biased;
                _ = self.rt.schedules_changed.notified() => reload = true,
                _ = sleep => {}
                _ = self.rt.shutdown.cancelled() => return,
            }
        }
    }

    /// Records what was missed and fires what is due; true if the deployment changed (a fire
    /// paused it), so everything is read again.
    async fn handle(&self, e: &mut Entry, now: DateTime<Utc>) -> bool {
        let plan = timing::plan(&e.timing, &e.id, e.cursor.unwrap_or(now), now);
        if plan.missed.is_empty() && plan.due.is_empty() {
            e.wake_at = plan.wake_at;
            return false;
        }
        let id = e.id.clone();
        let row = match self
            .rt
            .store
            .read(move |c| sql::get_deployment(c, &id))
            .await
        {
            Ok(Some(row)) => row,
            // Gone meanwhile: the change that removed it reloads everything.
            Ok(None) => return true,
            Err(err) => {
                tracing::error!(deployment = %e.id, error = %err, "cannot read a due deployment");
                e.wake_at = Some(now + RETRY);
                return false;
            }
        };
        if let Err(err) = fire::record_missed(&self.rt, &row, &plan.missed).await {
            tracing::error!(deployment = %e.id, error = %err.message, "cannot record missed fires");
            e.wake_at = Some(now + RETRY);
            return false;
        }
        if let Some(last) = plan.missed.last() {
            e.cursor = Some(*last);
        }
        for at in plan.due {
            match fire::fire(&self.rt, &row, Trigger::Schedule(at)).await {
                Ok(run) => {
                    e.cursor = Some(at);
                    if run.is_some_and(|r| r.error.is_some()) {
                        // Its error may have paused the deployment.
                        return true;
                    }
                }
                Err(err) => {
                    tracing::error!(deployment = %e.id, error = %err.message, "a scheduled fire failed");
                    e.wake_at = Some(now + RETRY);
                    return false;
                }
            }
        }
        e.wake_at = plan.wake_at;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestration::schedules::clock::FakeClock;
    use crate::orchestration::schedules::deployments;
    use crate::orchestration::schedules::deployments::instant;
    use crate::store::Store;
    use crate::store::deployments::RunRow;
    use serde_json::json;
    use tether_proto::deployment::{AgentChoice, DeploymentSpec, ScheduleSpec};

    /// A runtime on a fresh database whose model endpoint is a closed loopback port and whose
    /// key is unset: fired sessions exist, their turns fail at once, nothing leaves the box.
    async fn runtime() -> (tempfile::TempDir, Arc<Runtime>) {
        runtime_on("http://127.0.0.1:9".into()).await
    }

    /// A runtime whose model endpoint is `base_url` (a mock needs no key).
    async fn runtime_on(base_url: String) -> (tempfile::TempDir, Arc<Runtime>) {
        crate::provider::http::install_crypto_provider();
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().display().to_string();
        let paths = tether_proto::Paths::resolve(|k| (k == "TETHER_HOME").then(|| home.clone()), 0);
        std::fs::create_dir_all(&paths.data_dir).unwrap();
        let store = Store::open(&paths.db()).unwrap();
        crate::resources::agents::ensure_default(&store)
            .await
            .unwrap();
        crate::resources::environments::ensure_default(&store)
            .await
            .unwrap();
        let mut config = crate::config::Config::default();
        config.anthropic.base_url = Some(base_url);
        config.anthropic.api_key_env = Some("TETHER_SCHEDULER_TEST_HAS_NO_KEY".into());
        (tmp, Runtime::new(store, paths, config))
    }

    fn spec(name: &str, agent: &str, expression: &str) -> DeploymentSpec {
        DeploymentSpec {
            name: name.into(),
            agent: AgentChoice::Latest(agent.into()),
            environment_id: "default".into(),
            initial_events: vec![
                json!({"type": "user.message", "content": [{"type": "text", "text": "go"}]}),
            ],
            workflow: None,
            description: None,
            metadata: Default::default(),
            resources: None,
            vault_ids: None,
            schedule: Some(ScheduleSpec::Cron {
                expression: expression.into(),
                timezone: "UTC".into(),
            }),
            budget: None,
        }
    }

    async fn runs(rt: &Runtime, id: &str) -> Vec<RunRow> {
        let id = id.to_string();
        rt.store
            .read(move |c| sql::list_runs(c, Some(&id)))
            .await
            .unwrap()
    }

    fn hourly() -> Timing {
        Timing::parse(&ScheduleSpec::Cron {
            expression: "0 * * * *".into(),
            timezone: "UTC".into(),
        })
        .unwrap()
    }

    /// Moves the clock to `at` and waits for the scheduler's pass at that time.
    async fn at(clock: &FakeClock, s: &Scheduler, at: DateTime<Utc>) {
        clock.set(at);
        s.passed(at).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn each_occurrence_fires_once_nothing_while_paused_and_no_backfill_on_unpause() {
        let (_tmp, rt) = runtime().await;
        let t0 = DateTime::parse_from_rfc3339("2026-03-02T10:20:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Arc::new(FakeClock::new(t0));
        let d = deployments::create(&rt, spec("hourly", "default", "0 * * * *"), t0)
            .await
            .unwrap();
        let s = Scheduler::start(rt.clone(), clock.clone());
        s.passed(t0).await;
        assert!(runs(&rt, &d.id).await.is_empty());

        let t = hourly();
        let fire_at = |h: i64| {
            let occ = t0 + Duration::minutes(40) + Duration::hours(h - 1);
            (occ, occ + t.jitter(&d.id, occ))
        };
        // 11:00 + jitter: one scheduled run, its session made, `last_run_at` set.
        let (occ1, f1) = fire_at(1);
        at(&clock, &s, f1 - Duration::seconds(1)).await;
        assert!(
            runs(&rt, &d.id).await.is_empty(),
            "not before its jittered time"
        );
        at(&clock, &s, f1).await;
        let r = runs(&rt, &d.id).await;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].scheduled_at.as_deref(), Some(instant(occ1).as_str()));
        let sid = r[0].session_id.clone().unwrap();
        assert!(!r[0].pending && r[0].error.is_none());
        let session = rt.store.get_session(&sid).await.unwrap().unwrap();
        assert_eq!(session.deployment_id.as_deref(), Some(d.id.as_str()));
        assert!(
            deployments::get(&rt, &d.id)
                .await
                .unwrap()
                .schedule
                .unwrap()
                .last_run_at
                .is_some()
        );
        // Later in the same hour: nothing more.
        at(&clock, &s, f1 + Duration::minutes(1)).await;
        assert_eq!(runs(&rt, &d.id).await.len(), 1);

        // Paused across 12:00 and 13:00: nothing fires, nothing is recorded.
        let row = deployments::row(&rt, &d.id).await.unwrap();
        deployments::pause(&rt, row).await.unwrap();
        let (_, f2) = fire_at(2);
        let (_, f3) = fire_at(3);
        at(&clock, &s, f2).await;
        at(&clock, &s, f3).await;
        assert_eq!(runs(&rt, &d.id).await.len(), 1);

        // Unpaused at 13:30: 12:00 and 13:00 are not owed; 14:00 fires.
        let unpaused_at = t0 + Duration::hours(3) + Duration::minutes(10);
        clock.set(unpaused_at);
        let row = deployments::row(&rt, &d.id).await.unwrap();
        deployments::unpause(&rt, row, unpaused_at).await.unwrap();
        s.passed(unpaused_at).await;
        assert_eq!(runs(&rt, &d.id).await.len(), 1, "no backfill on unpause");
        let (occ4, f4) = fire_at(4);
        at(&clock, &s, f4).await;
        let r = runs(&rt, &d.id).await;
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].scheduled_at.as_deref(), Some(instant(occ4).as_str()));
        assert!(r.iter().all(|r| r.error.is_none()));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn fires_missed_while_the_daemon_was_down_are_recorded_as_failed_runs() {
        let (_tmp, rt) = runtime().await;
        let t0 = DateTime::parse_from_rfc3339("2026-03-02T10:20:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let d = deployments::create(&rt, spec("hourly", "default", "0 * * * *"), t0)
            .await
            .unwrap();
        // The daemon comes back at 14:00 + jitter: 11, 12 and 13 passed unseen.
        let occ = t0 + Duration::minutes(40) + Duration::hours(3);
        let back = occ + hourly().jitter(&d.id, occ);
        let clock = Arc::new(FakeClock::new(back));
        let s = Scheduler::start(rt.clone(), clock.clone());
        s.passed(back).await;
        let r = runs(&rt, &d.id).await;
        let summary: Vec<(String, bool)> = r
            .iter()
            .map(|r| (r.scheduled_at.clone().unwrap(), r.error.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                ("2026-03-02T11:00:00Z".to_string(), true),
                ("2026-03-02T12:00:00Z".to_string(), true),
                ("2026-03-02T13:00:00Z".to_string(), true),
                ("2026-03-02T14:00:00Z".to_string(), false),
            ]
        );
        let err = r[0].error.as_ref().unwrap();
        assert!(
            err["message"].as_str().unwrap().contains("not running"),
            "{err}"
        );
        assert!(r[0].session_id.is_none());
        // Missed fires don't pause it.
        let dep = deployments::get(&rt, &d.id).await.unwrap();
        assert_eq!(dep.status.as_str(), "active");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_scheduled_fire_whose_agent_is_archived_pauses_the_deployment() {
        let (_tmp, rt) = runtime().await;
        let t0 = DateTime::parse_from_rfc3339("2026-03-02T10:20:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let agent = crate::resources::agents::create(
            &rt.store,
            tether_proto::agent::AgentSpec {
                name: "doomed".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let d = deployments::create(&rt, spec("hourly", &agent.id, "0 * * * *"), t0)
            .await
            .unwrap();
        crate::resources::agents::archive(&rt.store, &agent.id)
            .await
            .unwrap();
        let clock = Arc::new(FakeClock::new(t0));
        let s = Scheduler::start(rt.clone(), clock.clone());
        let occ = t0 + Duration::minutes(40);
        let f = occ + hourly().jitter(&d.id, occ);
        at(&clock, &s, f).await;
        let r = runs(&rt, &d.id).await;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].error.as_ref().unwrap()["type"], "agent_archived_error");
        let dep = deployments::get(&rt, &d.id).await.unwrap();
        assert_eq!(dep.status.as_str(), "paused");
        assert_eq!(
            serde_json::to_value(dep.paused_reason).unwrap(),
            json!({"type": "error", "error": {"type": "agent_archived_error"}})
        );
        // Paused by the error: the next hour doesn't fire.
        let occ2 = occ + Duration::hours(1);
        at(&clock, &s, occ2 + hourly().jitter(&d.id, occ2)).await;
        assert_eq!(runs(&rt, &d.id).await.len(), 1);
    }

    /// A cron deployment with a `workflow` fires, on the fake clock, one deployment run that
    /// names a workflow run in the fired session; the run completes on the mock model.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_cron_deployment_fires_a_workflow_run_that_completes_on_the_mock() {
        use tether_mock_llm::{MockServer, Reply, Route, Script};
        use tether_proto::workflow::RunStatus;
        let mock = MockServer::start(
            Script::by_turn(vec![Reply::text("noted")])
                .with_side_reply(Reply::text("title"))
                .with_route(
                    Route::new("a", vec![Reply::text("A-out")])
                        .when_system("You are a.")
                        .by_turn(),
                )
                .with_route(
                    Route::new("b", vec![Reply::text("B-out")])
                        .when_system("You are b.")
                        .by_turn(),
                ),
        )
        .await
        .unwrap();
        let (_tmp, rt) = runtime_on(mock.base_url()).await;
        let t0 = DateTime::parse_from_rfc3339("2026-03-02T10:20:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Arc::new(FakeClock::new(t0));
        let mut sp = spec("wf", "default", "0 * * * *");
        sp.initial_events = Vec::new();
        sp.workflow = Some(
            serde_json::from_value(json!({"name": "hourly-notes", "tasks": [
                {"id": "a", "agent": {"system": "You are a."}, "prompt": "collect"},
                {"id": "b", "agent": {"system": "You are b."}, "depends_on": ["a"],
                 "prompt": "write from {{a.output}}"}]}))
            .unwrap(),
        );
        let d = deployments::create(&rt, sp, t0).await.unwrap();
        assert_eq!(d.workflow.as_ref().unwrap().name, "hourly-notes");
        assert!(d.initial_events.is_empty());
        let s = Scheduler::start(rt.clone(), clock.clone());
        let occ = t0 + Duration::minutes(40);
        at(&clock, &s, occ + hourly().jitter(&d.id, occ)).await;
        let r = runs(&rt, &d.id).await;
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(!r[0].pending && r[0].error.is_none(), "{r:?}");
        let sid = r[0].session_id.clone().unwrap();
        let wid = r[0].workflow_run_id.clone().unwrap();
        assert!(wid.starts_with("wrun_"), "{wid}");
        let wire = fire::get_run(&rt, &r[0].id).await.unwrap();
        assert_eq!(wire.workflow_run_id.as_deref(), Some(wid.as_str()));

        // The run is in the fired session and completes there: awaited on its appends.
        let session = rt.load(&sid).await.unwrap();
        let mut appended = session.watch_appends();
        // A bound against hanging, not a timing goal: a loaded machine is slow.
        let run = tokio::time::timeout(std::time::Duration::from_secs(300), async {
            loop {
                let run = crate::orchestration::workflows::get(&rt, &wid)
                    .await
                    .unwrap();
                if run.status == RunStatus::Ended {
                    return run;
                }
                // Re-read at each append to the session, and at least every 250 ms: the
                // engine's state of the run may catch up just after the last append (waiting
                // on appends alone hung once in CI).
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(250), appended.changed())
                        .await;
            }
        })
        .await
        .expect("the workflow run ended");
        assert_eq!(run.session_id, sid);
        assert!(run.succeeded(), "{run:?}");
        let outputs: Vec<_> = run.tasks.iter().map(|t| t.output.clone()).collect();
        assert_eq!(
            outputs,
            [Some("A-out".to_string()), Some("B-out".to_string())],
            "{run:?}"
        );
        // The next hour fires a second run with its own workflow run.
        let occ2 = occ + Duration::hours(1);
        at(&clock, &s, occ2 + hourly().jitter(&d.id, occ2)).await;
        let r = runs(&rt, &d.id).await;
        assert_eq!(r.len(), 2);
        assert_ne!(r[1].workflow_run_id, r[0].workflow_run_id);
        assert!(r[1].workflow_run_id.is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_workflow_deployment_is_checked_like_a_workflow_file_and_excludes_initial_events() {
        let (_tmp, rt) = runtime().await;
        let t0 = Utc::now();
        let wf = |v: serde_json::Value| Some(serde_json::from_value(v).unwrap());
        // Both: refused, naming both fields.
        let mut both = spec("both", "default", "0 * * * *");
        both.workflow = wf(json!({"name": "w", "tasks": [{"id": "a", "prompt": "x"}]}));
        let e = deployments::create(&rt, both, t0).await.unwrap_err();
        assert!(
            e.message.contains("initial_events and workflow"),
            "{}",
            e.message
        );
        // A bad graph: the workflow file's own error, under `workflow`.
        let mut bad = spec("bad", "default", "0 * * * *");
        bad.initial_events = Vec::new();
        bad.workflow =
            wf(json!({"name": "w", "tasks": [{"id": "a", "prompt": "x", "depends_on": ["zz"]}]}));
        let e = deployments::create(&rt, bad, t0).await.unwrap_err();
        assert!(
            e.message.starts_with("workflow: ")
                && e.message.contains("task `a`: depends_on names `zz`"),
            "{}",
            e.message
        );
        // Neither: the initial events are required.
        let mut neither = spec("neither", "default", "0 * * * *");
        neither.initial_events = Vec::new();
        let e = deployments::create(&rt, neither, t0).await.unwrap_err();
        assert!(e.message.contains("initial_events"), "{}", e.message);

        // An update switches what it fires, one way and back.
        let d = deployments::create(&rt, spec("sw", "default", "0 * * * *"), t0)
            .await
            .unwrap();
        let row = deployments::row(&rt, &d.id).await.unwrap();
        let ch: tether_proto::deployment::DeploymentChanges = serde_json::from_value(
            json!({"workflow": {"name": "w", "tasks": [{"id": "a", "prompt": "x"}]}}),
        )
        .unwrap();
        let d = deployments::update(&rt, row, ch, t0).await.unwrap();
        assert!(d.initial_events.is_empty() && d.workflow.is_some());
        let row = deployments::row(&rt, &d.id).await.unwrap();
        let ch: tether_proto::deployment::DeploymentChanges = serde_json::from_value(json!({
            "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}],
            "workflow": {"name": "w", "tasks": [{"id": "a", "prompt": "x"}]}
        }))
        .unwrap();
        let e = deployments::update(&rt, row.clone(), ch, t0)
            .await
            .unwrap_err();
        assert!(e.message.contains("not both"), "{}", e.message);
        let ch: tether_proto::deployment::DeploymentChanges = serde_json::from_value(json!({
            "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
        }))
        .unwrap();
        let d = deployments::update(&rt, row, ch, t0).await.unwrap();
        assert_eq!(d.initial_events.len(), 1);
        assert!(d.workflow.is_none());
    }
}
