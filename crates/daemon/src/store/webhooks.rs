//! Webhook endpoints and the delivery outbox: the rows and their SQL. The writer calls
//! [`enqueue`] in the transaction of the event (or session change) a webhook reports; what
//! a delivery attempt does is the `webhooks` room's business, this file only moves rows.

use rusqlite::{Connection, OptionalExtension, params};
use tether_proto::Event;
use tether_proto::webhook::{
    ORGANIZATION_ID, WORKSPACE_ID, WebhookDelivery, WebhookEndpoint, WebhookEvent,
    WebhookEventData, types_for,
};

use crate::store::error::StoreError;

fn w(e: rusqlite::Error) -> StoreError {
    StoreError::Write(e.to_string())
}

/// An endpoint with its secret (the deliverer signs with it).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub name: Option<String>,
    pub secret: String,
    pub events: Vec<String>,
    pub source: String,
    pub created_at: String,
    pub updated_at: String,
}

impl EndpointRow {
    /// The wire view; the secret only when `with_secret`.
    pub fn view(&self, with_secret: bool) -> WebhookEndpoint {
        WebhookEndpoint {
            id: self.id.clone(),
            object_type: "webhook_endpoint".into(),
            url: self.url.clone(),
            name: self.name.clone(),
            enabled_events: self.events.clone(),
            state: "enabled".into(),
            source: self.source.clone(),
            signing_secret: with_secret.then(|| self.secret.clone()),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }
}

/// A delivery the deliverer should attempt: its exact body and where to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub url: String,
    pub secret: String,
    pub body: String,
    pub attempts: u32,
}

const ENDPOINT_COLS: &str = "id, url, name, secret, events, source, created_at, updated_at";

fn row_to_endpoint(r: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointRow> {
    let events: String = r.get(4)?;
    Ok(EndpointRow {
        id: r.get(0)?,
        url: r.get(1)?,
        name: r.get(2)?,
        secret: r.get(3)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        source: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

/// Queues the webhooks `ev` stands for, one delivery per endpoint that wants each type, if
/// its session is a top-level one (a thread's own stream reports nothing: its lifecycle is
/// reported by the cross-posts in its primary's). Returns the number of deliveries queued.
pub fn enqueue_event(c: &Connection, ev: &Event) -> Result<usize, StoreError> {
    let types = types_for(&ev.body, ev.session_thread_id.as_deref());
    let mut n = 0;
    for t in types {
        n += enqueue(
            c,
            t,
            &ev.session_id,
            ev.session_thread_id.as_deref(),
            ev.processed_at.as_deref().unwrap_or_default(),
        )?;
    }
    Ok(n)
}

/// Queues one webhook of type `kind` about session `session_id` for every endpoint that
/// wants it (none if the session is a thread). Returns the number of deliveries queued.
pub fn enqueue(
    c: &Connection,
    kind: &str,
    session_id: &str,
    session_thread_id: Option<&str>,
    created_at: &str,
) -> Result<usize, StoreError> {
    let id = crate::ids::webhook_event_id();
    let event = WebhookEvent::new(
        id.clone(),
        created_at.to_string(),
        WebhookEventData {
            kind: kind.to_string(),
            id: session_id.to_string(),
            organization_id: ORGANIZATION_ID.into(),
            workspace_id: WORKSPACE_ID.into(),
            session_thread_id: session_thread_id.map(str::to_string),
            vault_id: None,
        },
    );
    let body = serde_json::to_string(&event)
        .map_err(|e| StoreError::Write(format!("cannot encode a webhook event: {e}")))?;
    c.prepare_cached(
        "INSERT INTO webhook_deliveries (id, endpoint_id, type, subject_id, body, created_at, status, attempts, next_attempt_ms)
         SELECT ?1, e.id, ?2, ?3, ?4, ?5, 'pending', 0, 0 FROM webhook_endpoints e
         WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?3 AND parent_id IS NULL)
           AND (e.events = '[]' OR EXISTS (SELECT 1 FROM json_each(e.events) WHERE value = ?2))",
    )?
    .execute(params![id, kind, session_id, body, created_at])
    .map_err(w)
}

/// Queues one webhook of type `kind` (`agent.created`, `environment.deleted`...) about the
/// resource `resource_id` for every endpoint that wants it, in the transaction of the change
/// it reports (issue 20). After the commit, wake the deliverer (`Store::webhook_wake`).
pub fn enqueue_resource(
    c: &Connection,
    kind: &str,
    resource_id: &str,
) -> Result<usize, StoreError> {
    enqueue_about(c, kind, resource_id, None)
}

/// [`enqueue_resource`] for a vault credential: `data.vault_id` names its vault.
pub fn enqueue_credential(
    c: &Connection,
    kind: &str,
    credential_id: &str,
    vault_id: &str,
) -> Result<usize, StoreError> {
    enqueue_about(c, kind, credential_id, Some(vault_id))
}

fn enqueue_about(
    c: &Connection,
    kind: &str,
    resource_id: &str,
    vault_id: Option<&str>,
) -> Result<usize, StoreError> {
    let id = crate::ids::webhook_event_id();
    let created_at = crate::ids::now_rfc3339();
    let event = WebhookEvent::new(
        id.clone(),
        created_at.clone(),
        WebhookEventData {
            kind: kind.to_string(),
            id: resource_id.to_string(),
            organization_id: ORGANIZATION_ID.into(),
            workspace_id: WORKSPACE_ID.into(),
            session_thread_id: None,
            vault_id: vault_id.map(str::to_string),
        },
    );
    let body = serde_json::to_string(&event)
        .map_err(|e| StoreError::Write(format!("cannot encode a webhook event: {e}")))?;
    c.prepare_cached(
        "INSERT INTO webhook_deliveries (id, endpoint_id, type, subject_id, body, created_at, status, attempts, next_attempt_ms)
         SELECT ?1, e.id, ?2, ?3, ?4, ?5, 'pending', 0, 0 FROM webhook_endpoints e
         WHERE e.events = '[]' OR EXISTS (SELECT 1 FROM json_each(e.events) WHERE value = ?2)",
    )?
    .execute(params![id, kind, resource_id, body, created_at])
    .map_err(w)
}

pub fn insert_endpoint(c: &Connection, e: &EndpointRow) -> Result<(), StoreError> {
    let events = serde_json::to_string(&e.events)
        .map_err(|err| StoreError::Write(format!("cannot encode the event types: {err}")))?;
    c.execute(
        &format!("INSERT INTO webhook_endpoints ({ENDPOINT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![e.id, e.url, e.name, e.secret, events, e.source, e.created_at, e.updated_at],
    )
    .map_err(w)?;
    Ok(())
}

/// Makes the `config` endpoints exactly `wanted` (matched by name; a changed one keeps its
/// id and its deliveries). Endpoints made over the API are untouched.
pub fn sync_config_endpoints(c: &Connection, wanted: &[EndpointRow]) -> Result<(), StoreError> {
    let have = list_endpoints(c)?;
    for old in have.iter().filter(|e| e.source == "config") {
        if !wanted.iter().any(|n| n.name == old.name) {
            delete_endpoint(c, &old.id)?;
        }
    }
    for new in wanted {
        match have
            .iter()
            .find(|e| e.source == "config" && e.name == new.name)
        {
            Some(old) => {
                if (&old.url, &old.secret, &old.events) != (&new.url, &new.secret, &new.events) {
                    let events = serde_json::to_string(&new.events).map_err(|err| {
                        StoreError::Write(format!("cannot encode the event types: {err}"))
                    })?;
                    c.execute(
                        "UPDATE webhook_endpoints SET url = ?2, secret = ?3, events = ?4, updated_at = ?5 WHERE id = ?1",
                        params![old.id, new.url, new.secret, events, new.updated_at],
                    )
                    .map_err(w)?;
                }
            }
            None => insert_endpoint(c, new)?,
        }
    }
    Ok(())
}

pub fn list_endpoints(c: &Connection) -> Result<Vec<EndpointRow>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLS} FROM webhook_endpoints ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([], row_to_endpoint)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The endpoint with this id, or else the one with this name.
pub fn find_endpoint(c: &Connection, reference: &str) -> Result<Option<EndpointRow>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC, created_at LIMIT 1"
    ))?
    .query_row([reference], row_to_endpoint)
    .optional()?)
}

/// Removes an endpoint with its deliveries (pending ones would have nowhere to go).
pub fn delete_endpoint(c: &Connection, id: &str) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM webhook_deliveries WHERE endpoint_id = ?1",
        [id],
    )
    .map_err(w)?;
    c.execute("DELETE FROM webhook_endpoints WHERE id = ?1", [id])
        .map_err(w)?;
    Ok(())
}

/// Pending deliveries due at `now_ms`, oldest due first, at most `limit`.
pub fn due(c: &Connection, now_ms: i64, limit: u32) -> Result<Vec<DueDelivery>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT d.id, d.endpoint_id, e.url, e.secret, d.body, d.attempts
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
         WHERE d.status = 'pending' AND d.next_attempt_ms <= ?1
         ORDER BY d.next_attempt_ms, d.created_at LIMIT ?2",
    )?;
    let rows = st.query_map(params![now_ms, limit], |r| {
        Ok(DueDelivery {
            id: r.get(0)?,
            endpoint_id: r.get(1)?,
            url: r.get(2)?,
            secret: r.get(3)?,
            body: r.get(4)?,
            attempts: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the first pending delivery due after `now_ms` is due (ms since the epoch).
pub fn pending_after(c: &Connection, now_ms: i64) -> Result<Option<i64>, StoreError> {
    Ok(c
        .prepare_cached(
            "SELECT MIN(next_attempt_ms) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_ms > ?1",
        )?
        .query_row([now_ms], |r| r.get(0))?)
}

/// What one attempt found.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub at: String,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Delivered (a 2xx).
    pub delivered: bool,
    /// None: no more attempts (the delivery fails).
    pub retry_at_ms: Option<i64>,
}

pub fn record_attempt(
    c: &Connection,
    id: &str,
    endpoint_id: &str,
    a: &Attempt,
) -> Result<(), StoreError> {
    let status = if a.delivered {
        "delivered"
    } else if a.retry_at_ms.is_some() {
        "pending"
    } else {
        "failed"
    };
    c.prepare_cached(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?3, last_attempt_at = ?4,
            last_status = ?5, last_error = ?6, next_attempt_ms = COALESCE(?7, next_attempt_ms),
            delivered_at = CASE WHEN ?3 = 'delivered' THEN ?4 ELSE delivered_at END
         WHERE id = ?1 AND endpoint_id = ?2 AND status = 'pending'",
    )?
    .execute(params![
        id,
        endpoint_id,
        status,
        a.at,
        a.status,
        a.error,
        a.retry_at_ms
    ])
    .map_err(w)?;
    Ok(())
}

const DELIVERY_SELECT: &str = "SELECT d.id, d.endpoint_id, COALESCE(e.url, ''), d.type, d.subject_id, d.status, d.attempts, d.created_at, d.last_attempt_at, d.last_status, d.last_error, d.next_attempt_ms, d.delivered_at FROM webhook_deliveries d LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id";

fn row_to_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<WebhookDelivery> {
    let status: String = r.get(5)?;
    let next_ms: i64 = r.get(11)?;
    Ok(WebhookDelivery {
        id: r.get(0)?,
        endpoint_id: r.get(1)?,
        url: r.get(2)?,
        event_type: r.get(3)?,
        subject_id: r.get(4)?,
        attempts: r.get(6)?,
        created_at: r.get(7)?,
        last_attempt_at: r.get(8)?,
        last_status: r.get(9)?,
        last_error: r.get(10)?,
        next_attempt_at: (status == "pending").then(|| ms_rfc3339(next_ms)),
        delivered_at: r.get(12)?,
        status,
    })
}

/// RFC 3339 of a time in ms since the epoch (0 and earlier: the epoch).
pub fn ms_rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The delivery log, newest first.
pub fn list_deliveries(
    c: &Connection,
    endpoint_id: Option<&str>,
    status: Option<&str>,
    limit: u32,
) -> Result<Vec<WebhookDelivery>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "{DELIVERY_SELECT} WHERE (?1 IS NULL OR d.endpoint_id = ?1) AND (?2 IS NULL OR d.status = ?2)
         ORDER BY d.created_at DESC, d.id DESC LIMIT ?3"
    ))?;
    let rows = st.query_map(params![endpoint_id, status, limit], row_to_delivery)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The deliveries of webhook event `id` (one per endpoint it went to).
pub fn deliveries_of(c: &Connection, id: &str) -> Result<Vec<WebhookDelivery>, StoreError> {
    let mut st = c.prepare_cached(&format!("{DELIVERY_SELECT} WHERE d.id = ?1"))?;
    let rows = st.query_map([id], row_to_delivery)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Makes a delivery pending again, due now, with a fresh round of attempts.
pub fn requeue(c: &Connection, id: &str, endpoint_id: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_ms = 0, delivered_at = NULL WHERE id = ?1 AND endpoint_id = ?2",
        params![id, endpoint_id],
    )
    .map_err(w)?;
    Ok(())
}

/// Forgets delivered deliveries created before `before` (RFC 3339): the log keeps what is
/// pending, what failed, and recent history.
pub fn prune_delivered(c: &Connection, before: &str) -> Result<usize, StoreError> {
    c.execute(
        "DELETE FROM webhook_deliveries WHERE status = 'delivered' AND created_at < ?1",
        [before],
    )
    .map_err(w)
}
