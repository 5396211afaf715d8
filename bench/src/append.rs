//! Durable append throughput of the daemon's event log (`tether_daemon::store::Store`, WAL with
//! `synchronous=FULL`), driven directly: N concurrent appenders, each awaiting its append before
//! the next, so any batching comes from the store's group commit.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use tether_daemon::ids;
use tether_daemon::store::Store;
use tether_daemon::store::rows::SessionRow;
use tether_proto::EventBody;
use tokio::task::JoinSet;

/// A typical short user message (~100 bytes of text; ~300 bytes of stored JSON).
const TEXT: &str = "please run the test suite again and tell me which of the failures are new since the last commit";

fn row(id: &str, name: String) -> SessionRow {
    SessionRow {
        name: Some(name),
        ..SessionRow::new(
            id.to_string(),
            "anthropic/claude-sonnet-4-6".into(),
            "/tmp/tether-bench".into(),
            50,
        )
    }
}

/// One run on a fresh database in `dir`: `sessions` appenders, each calling `append` with
/// `batch` events until at least `total_events` have been committed overall. Returns
/// committed events per second.
pub async fn run(dir: &Path, sessions: usize, total_events: usize, batch: usize) -> Result<f64> {
    let db = dir.join("tether.db");
    let store = Store::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let mut ids_ = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let id = ids::session_id();
        store
            .create_session(row(&id, format!("a{i}")), None)
            .await
            .context("creating a session")?;
        ids_.push(id);
    }
    let calls = total_events.div_ceil(sessions * batch);

    let start = Instant::now();
    let mut set = JoinSet::new();
    for id in ids_.clone() {
        let store = store.clone();
        set.spawn(async move {
            for _ in 0..calls {
                let bodies = vec![EventBody::user_text(TEXT); batch];
                let evs = store.append(&id, bodies, None).await?;
                ensure!(evs.len() == batch, "append returned {} events", evs.len());
            }
            Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("appender task panicked")??;
    }
    let took = start.elapsed();

    // Every event is there, gapless per session.
    let per_session = (calls * batch) as u64;
    for id in &ids_ {
        let s = store
            .get_session(id)
            .await?
            .with_context(|| format!("session {id} vanished"))?;
        ensure!(
            s.last_seq == per_session,
            "session {id}: last_seq {} after {per_session} appends",
            s.last_seq
        );
    }
    let total = sessions * calls * batch;
    Ok(total as f64 / took.as_secs_f64())
}
