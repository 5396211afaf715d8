//! The deliverer: one task that sends the outbox's due deliveries, a bounded number at a
//! time, each signed afresh per attempt (the timestamp is the attempt's) with the same
//! `webhook-id`. It only reads the outbox and records attempts, so a slow or dead receiver
//! never touches a session: sessions only ever write rows.
//!
//! At-least-once: a delivery is marked delivered after the receiver's 2xx; a crash in
//! between sends it again on restart, with the same id.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WebhooksConfig;
use crate::orchestration::schedules::clock::Clock;
use crate::store::Store;
use crate::store::webhooks::{self as rows, Attempt, DueDelivery};
use crate::webhooks::sign;

/// How a failed attempt is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    pub fn from_config(c: &WebhooksConfig) -> RetryPolicy {
        RetryPolicy {
            max_attempts: c.max_attempts.max(1),
            base: Duration::from_millis(c.base_delay_ms),
            max: Duration::from_millis(c.max_delay_ms.max(c.base_delay_ms)),
        }
    }

    /// The wait after attempt number `attempt` (1-based) failed, or None when it was the
    /// last. Exponential, capped, with jitter down to half: deterministic per delivery (a
    /// hash of its id), so deliveries that failed together spread out, and tests can
    /// check the bounds.
    pub fn delay_after(&self, attempt: u32, delivery_id: &str) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exp = self
            .base
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(20))
            .min(self.max);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (delivery_id, attempt).hash(&mut h);
        let half = exp / 2;
        let jitter_ms = match half.as_millis() as u64 {
            0 => 0,
            n => h.finish() % (n + 1),
        };
        Some(exp - Duration::from_millis(jitter_ms))
    }
}

pub struct Deliverer {
    store: Store,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    concurrency: usize,
    shutdown: CancellationToken,
}

/// Answers of a receiver kept in the log, at most this much.
const MAX_ERROR_TEXT: usize = 300;

impl Deliverer {
    pub fn new(
        store: Store,
        config: &WebhooksConfig,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Deliverer, String> {
        crate::provider::http::install_crypto_provider();
        let builder = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(config.timeout_secs.max(1)))
                .connect_timeout(Duration::from_secs(config.timeout_secs.clamp(1, 10)))
                // A redirect is an answer, not a place to send the event to.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("tetherd/", env!("CARGO_PKG_VERSION"), " webhooks"))
        };
        // No CA roots on the host still allows plain-http receivers.
        let http = builder()
            .build()
            .or_else(|_| builder().tls_certs_only(std::iter::empty()).build())
            .map_err(|e| format!("could not create the webhooks' HTTP client: {e}"))?;
        Ok(Deliverer {
            store,
            http,
            clock,
            policy: RetryPolicy::from_config(config),
            concurrency: config.concurrency.max(1),
            shutdown,
        })
    }

    /// Runs until shutdown: sends what is due, sleeps until the next due time, an attempt's
    /// end, or a commit that queued something new.
    pub async fn run(self) {
        let this = Arc::new(self);
        let wake = this.store.webhook_wake();
        let mut in_flight: HashSet<(String, String)> = HashSet::new();
        let mut tasks: JoinSet<(String, String)> = JoinSet::new();
        loop {
            let now = this.clock.now();
            let mut next_ms = None;
            if tasks.len() < this.concurrency {
                let want = (this.concurrency + in_flight.len()) as u32;
                let now_ms = now.timestamp_millis();
                match this
                    .store
                    .read(move |c| {
                        Ok((rows::due(c, now_ms, want)?, rows::pending_after(c, now_ms)?))
                    })
                    .await
                {
                    Ok((due, next)) => {
                        next_ms = next;
                        for d in due {
                            if tasks.len() >= this.concurrency {
                                break;
                            }
                            let key = (d.id.clone(), d.endpoint_id.clone());
                            if in_flight.insert(key) {
                                let me = this.clone();
                                tasks.spawn(async move { me.attempt(d).await });
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the webhook outbox; trying again in a minute");
                        next_ms = Some(now_ms + 60_000);
                    }
                }
            }
            let at = next_ms
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .unwrap_or_else(|| now + chrono::Duration::days(1));
            tokio::select! {
                _ = this.shutdown.cancelled() => break,
                _ = wake.notified() => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(key) = done {
                        in_flight.remove(&key);
                    }
                }
                _ = this.clock.sleep_until(at, now) => {}
            }
        }
        tasks.abort_all();
    }

    /// One attempt of one delivery, recorded. Returns its key.
    async fn attempt(self: Arc<Self>, d: DueDelivery) -> (String, String) {
        let key = (d.id.clone(), d.endpoint_id.clone());
        let attempt_no = d.attempts + 1;
        crate::crash::point("before_webhook_send");
        let (status, error) = self.send(&d).await;
        crate::crash::point("after_webhook_send");
        let delivered = error.is_none();
        let now = self.clock.now();
        let retry_at_ms = match delivered {
            true => None,
            false => self
                .policy
                .delay_after(attempt_no, &d.id)
                .map(|wait| now.timestamp_millis() + wait.as_millis() as i64),
        };
        if !delivered {
            tracing::info!(
                delivery = %d.id, url = %d.url, attempt = attempt_no,
                error = error.as_deref().unwrap_or_default(),
                "webhook delivery failed{}",
                if retry_at_ms.is_some() { "; will retry" } else { "; giving up" }
            );
        }
        let a = Attempt {
            at: rows::ms_rfc3339(now.timestamp_millis()),
            status,
            error,
            delivered,
            retry_at_ms,
        };
        let (id, ep) = key.clone();
        if let Err(e) = self
            .store
            .write(move |c| rows::record_attempt(c, &id, &ep, &a))
            .await
        {
            // Left pending and due: sent again (at-least-once), never lost.
            tracing::warn!(error = %e, delivery = %key.0, "cannot record a webhook attempt");
        }
        key
    }

    /// POSTs the delivery; the receiver's status if it answered, and what went wrong unless
    /// it was a 2xx.
    async fn send(&self, d: &DueDelivery) -> (Option<u16>, Option<String>) {
        let key = match sign::key_bytes(&d.secret) {
            Ok(k) => k,
            Err(e) => return (None, Some(e.to_string())),
        };
        let ts = self.clock.now().timestamp();
        let sig = sign::signature(&key, &d.id, ts, &d.body);
        let sent = self
            .http
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let mut text: String = text.trim().chars().take(MAX_ERROR_TEXT).collect();
                if !text.is_empty() {
                    text = format!(": {text}");
                }
                (Some(status.as_u16()), Some(format!("HTTP {status}{text}")))
            }
            Err(e) => (None, Some(describe(&e))),
        }
    }
}

/// What a failed request means, for the delivery log.
fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::error::StoreError;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(5),
            max: Duration::from_secs(30),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_down_to_half() {
        let p = policy();
        for (attempt, full) in [(1, 5), (2, 10), (3, 20), (4, 30)] {
            for id in ["whe_a", "whe_b", "whe_c"] {
                let d = p.delay_after(attempt, id).unwrap();
                let full = Duration::from_secs(full);
                assert!(d <= full && d >= full / 2, "{attempt} {id}: {d:?}");
                // The same delivery and attempt wait the same (no hidden randomness).
                assert_eq!(Some(d), p.delay_after(attempt, id));
            }
        }
        assert_eq!(
            p.delay_after(5, "whe_a"),
            None,
            "the 5th failure is the last"
        );
    }

    /// A receiver failing twice: each retry waits for the (fake) clock to pass its backoff,
    /// every attempt has the same webhook-id, is signed for the clock's time, and the third
    /// is recorded as delivered.
    #[tokio::test(flavor = "multi_thread")]
    async fn retries_wait_for_the_clock_and_keep_the_webhook_id() {
        use crate::orchestration::schedules::clock::FakeClock;
        use axum::http::{HeaderMap, StatusCode};

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let (tx, mut hits) = tokio::sync::mpsc::unbounded_channel::<(HeaderMap, String)>();
        let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (tx, count) = (tx.clone(), count.clone());
                async move {
                    let _ = tx.send((headers, body));
                    match count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                        0 | 1 => StatusCode::INTERNAL_SERVER_ERROR,
                        _ => StatusCode::NO_CONTENT,
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let secret = sign::new_secret().unwrap();
        let ep = rows::EndpointRow {
            id: "whep_1".into(),
            url,
            name: None,
            secret: secret.clone(),
            events: vec![],
            source: "api".into(),
            created_at: "2026-12-07T10:00:00.000Z".into(),
            updated_at: "2026-12-07T10:00:00.000Z".into(),
        };
        store
            .write(move |c| {
                rows::insert_endpoint(c, &ep)?;
                c.execute(
                    "INSERT INTO sessions (id, model, workspace, workspace_owned, max_turns, status, usage, created_at, updated_at) VALUES ('sesn_1', 'm', '/w', 0, 1, 'idle', '{}', 'x', 'x')",
                    [],
                )
                .map_err(|e| StoreError::Write(e.to_string()))?;
                rows::enqueue(c, "session.idled", "sesn_1", None, "2026-12-07T10:00:00.000Z")
            })
            .await
            .unwrap();
        let t0 = Utc::now();
        let clock = Arc::new(FakeClock::new(t0));
        let config = WebhooksConfig {
            max_attempts: 5,
            base_delay_ms: 5_000,
            max_delay_ms: 60_000,
            ..WebhooksConfig::default()
        };
        let shutdown = CancellationToken::new();
        let d = Deliverer::new(store.clone(), &config, clock.clone(), shutdown.clone()).unwrap();
        tokio::spawn(d.run());
        let key = sign::key_bytes(&secret).unwrap();
        let recorded = |attempts: u32| {
            let store = store.clone();
            async move {
                for _ in 0..2000 {
                    let l = store
                        .read(|c| rows::list_deliveries(c, None, None, 10))
                        .await
                        .unwrap();
                    if l[0].attempts == attempts {
                        return l[0].clone();
                    }
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                panic!("attempt {attempts} never recorded");
            }
        };
        let mut ids = Vec::new();
        for (n, wait) in [(1u32, 0i64), (2, 5), (3, 10)] {
            if wait > 0 {
                // Not before its backoff (jitter takes off up to half).
                clock.advance(chrono::Duration::milliseconds(wait * 1000 / 2 - 100));
                tokio::task::yield_now().await;
                assert!(hits.try_recv().is_err(), "attempt {n} came early");
                clock.advance(chrono::Duration::milliseconds(wait * 1000 / 2 + 100));
            }
            let (headers, body) = hits.recv().await.unwrap();
            let h = |k: &str| headers.get(k).unwrap().to_str().unwrap().to_string();
            let ts: i64 = h("webhook-timestamp").parse().unwrap();
            assert_eq!(ts, clock.now().timestamp(), "signed at the clock's time");
            assert_eq!(
                h("webhook-signature"),
                sign::signature(&key, &h("webhook-id"), ts, &body)
            );
            ids.push(h("webhook-id"));
            let row = recorded(n).await;
            if n < 3 {
                assert_eq!(row.status, "pending");
                assert_eq!(row.last_status, Some(500));
            } else {
                assert_eq!(row.status, "delivered");
                assert_eq!(row.last_status, Some(204));
            }
        }
        assert!(
            ids.iter().all(|i| i == &ids[0] && i.starts_with("whe_")),
            "{ids:?}"
        );
        shutdown.cancel();
    }

    #[test]
    fn jitter_spreads_deliveries_that_failed_together() {
        let p = policy();
        let waits: HashSet<Duration> = (0..20)
            .map(|i| p.delay_after(3, &format!("whe_{i}")).unwrap())
            .collect();
        assert!(waits.len() > 10, "{waits:?}");
    }
}
