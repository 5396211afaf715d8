//! Webhooks (issue 20): session changes POSTed to endpoints in the hosted API's envelope,
//! signed the Standard Webhooks way ([`sign`]), from a durable outbox ([`deliver`]).
//!
//! The store's writer queues a delivery row per endpoint in the transaction of the event a
//! webhook reports (`store::webhooks`), so nothing is lost or invented by a crash; the
//! deliverer is one task of its own that sends them. This file is the socket methods' side:
//! endpoints (made here or kept in config.toml) and the delivery log.

pub mod deliver;
pub mod sign;

use std::sync::Arc;

use tether_proto::webhook::{
    CreateWebhook, ListDeliveries, Redeliver, WEBHOOK_EVENT_TYPES, WebhookDeleted, WebhookDelivery,
    WebhookEndpoint,
};
use tether_proto::{ErrorBody, ErrorCode};

use crate::config::{WebhookEndpointConfig, WebhooksConfig};
use crate::orchestration::schedules::clock::Clock;
use crate::store::Store;
use crate::store::error::StoreError;
use crate::store::webhooks::{self as rows, EndpointRow};

/// Delivered deliveries older than this are forgotten at start (pending and failed ones stay).
const DELIVERED_KEPT_DAYS: i64 = 30;

fn invalid(msg: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

/// Makes the config file's endpoints the `config` ones in the database, then starts the
/// deliverer. A bad config endpoint is an error that names it (the daemon does not start
/// with a webhook it would silently not send).
pub async fn start(
    store: &Store,
    config: &WebhooksConfig,
    clock: Arc<dyn Clock>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let now = crate::ids::now_rfc3339();
    let wanted = config
        .endpoints
        .iter()
        .map(|e| config_endpoint(e, &now))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("config.toml [[webhooks.endpoints]]: {}", e.message))?;
    let mut names: Vec<&str> = config.endpoints.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        anyhow::bail!(
            "config.toml [[webhooks.endpoints]]: two endpoints are named `{}`; names must be unique",
            w[0]
        );
    }
    let keep_from =
        rows::ms_rfc3339(clock.now().timestamp_millis() - DELIVERED_KEPT_DAYS * 24 * 3600 * 1000);
    store
        .write(move |c| {
            rows::sync_config_endpoints(c, &wanted)?;
            rows::prune_delivered(c, &keep_from)
        })
        .await?;
    let d = deliver::Deliverer::new(store.clone(), config, clock, shutdown)
        .map_err(|e| anyhow::anyhow!(e))?;
    tokio::spawn(d.run());
    Ok(())
}

fn config_endpoint(e: &WebhookEndpointConfig, now: &str) -> Result<EndpointRow, ErrorBody> {
    let name = &e.name;
    let secret = match (&e.secret, &e.secret_env) {
        (Some(s), None) => s.clone(),
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            invalid(format!(
                "endpoint `{name}`: secret_env names `{var}`, which is not set in tetherd's environment"
            ))
        })?,
        _ => {
            return Err(invalid(format!(
                "endpoint `{name}` needs exactly one of `secret` (whsec_…) and `secret_env`"
            )));
        }
    };
    sign::key_bytes(&secret).map_err(|err| invalid(format!("endpoint `{name}`: {err}")))?;
    check_url(&e.url).map_err(|m| invalid(format!("endpoint `{name}`: {m}")))?;
    check_events(&e.events).map_err(|m| invalid(format!("endpoint `{name}`: {m}")))?;
    Ok(EndpointRow {
        id: crate::ids::webhook_endpoint_id(),
        url: e.url.trim().to_string(),
        name: Some(name.clone()),
        secret,
        events: e.events.clone(),
        source: "config".into(),
        created_at: now.to_string(),
        updated_at: now.to_string(),
    })
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| format!("`{url}` is not a URL ({e}); give e.g. https://example.com/hook"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "`{url}` is not an http:// or https:// URL with a host; give e.g. https://example.com/hook"
        ));
    }
    Ok(())
}

fn check_events(events: &[String]) -> Result<(), String> {
    match events
        .iter()
        .find(|t| !WEBHOOK_EVENT_TYPES.contains(&t.as_str()))
    {
        Some(t) => Err(format!(
            "tether does not send `{t}` webhooks; it sends: {}",
            WEBHOOK_EVENT_TYPES.join(", ")
        )),
        None => Ok(()),
    }
}

/// `webhook.create`: the answer carries the signing secret, shown only here.
pub async fn create(store: &Store, p: CreateWebhook) -> Result<WebhookEndpoint, ErrorBody> {
    check_url(&p.url).map_err(invalid)?;
    check_events(&p.enabled_events).map_err(invalid)?;
    if let Some(name) = &p.name
        && name.trim().is_empty()
    {
        return Err(invalid(
            "a webhook's name cannot be empty; leave it out or give one".into(),
        ));
    }
    let secret = sign::new_secret().map_err(|_| {
        ErrorBody::new(
            ErrorCode::Internal,
            "the system's random number generator failed; nothing was created".to_string(),
        )
    })?;
    let now = crate::ids::now_rfc3339();
    let mut events = p.enabled_events;
    events.sort();
    events.dedup();
    let row = EndpointRow {
        id: crate::ids::webhook_endpoint_id(),
        url: p.url.trim().to_string(),
        name: p.name,
        secret,
        events,
        source: "api".into(),
        created_at: now.clone(),
        updated_at: now,
    };
    let r = row.clone();
    store
        .write(move |c| {
            if let Some(name) = &r.name
                && rows::find_endpoint(c, name)?.is_some()
            {
                return Err(StoreError::Conflict(format!(
                    "a webhook named `{name}` already exists; pick another name or remove it first (`tether webhooks rm {name}`)"
                )));
            }
            rows::insert_endpoint(c, &r)
        })
        .await?;
    Ok(row.view(true))
}

pub async fn list(store: &Store) -> Result<Vec<WebhookEndpoint>, ErrorBody> {
    let rows = store.read(rows::list_endpoints).await?;
    Ok(rows.iter().map(|r| r.view(false)).collect())
}

async fn endpoint(store: &Store, reference: &str) -> Result<EndpointRow, ErrorBody> {
    let r = reference.to_string();
    store
        .read(move |c| rows::find_endpoint(c, &r))
        .await?
        .ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::NotFound,
                format!("no webhook `{reference}`; `tether webhooks ls` lists them"),
            )
        })
}

pub async fn delete(store: &Store, reference: &str) -> Result<WebhookDeleted, ErrorBody> {
    let e = endpoint(store, reference).await?;
    if e.source == "config" {
        return Err(invalid(format!(
            "webhook `{}` comes from config.toml ([[webhooks.endpoints]]); remove it there and restart tetherd",
            e.name.as_deref().unwrap_or(&e.id)
        )));
    }
    let id = e.id.clone();
    store.write(move |c| rows::delete_endpoint(c, &id)).await?;
    Ok(WebhookDeleted {
        id: e.id,
        object_type: "webhook_endpoint_deleted".into(),
    })
}

pub async fn deliveries(
    store: &Store,
    p: ListDeliveries,
) -> Result<Vec<WebhookDelivery>, ErrorBody> {
    if let Some(s) = &p.status
        && !matches!(s.as_str(), "pending" | "delivered" | "failed")
    {
        return Err(invalid(format!(
            "no delivery status `{s}`; use pending, delivered or failed"
        )));
    }
    let endpoint_id = match &p.webhook {
        Some(w) => Some(endpoint(store, w).await?.id),
        None => None,
    };
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let status = p.status;
    Ok(store
        .read(move |c| rows::list_deliveries(c, endpoint_id.as_deref(), status.as_deref(), limit))
        .await?)
}

pub async fn redeliver(store: &Store, p: Redeliver) -> Result<WebhookDelivery, ErrorBody> {
    let id = p.delivery.clone();
    let all = store.read(move |c| rows::deliveries_of(c, &id)).await?;
    let chosen = match &p.webhook {
        Some(w) => {
            let ep = endpoint(store, w).await?.id;
            all.into_iter().find(|d| d.endpoint_id == ep)
        }
        None if all.len() > 1 => {
            return Err(invalid(format!(
                "webhook event {} went to {} endpoints; say which with --webhook ({})",
                p.delivery,
                all.len(),
                all.iter()
                    .map(|d| d.endpoint_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        None => all.into_iter().next(),
    };
    let Some(d) = chosen else {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!(
                "no delivery `{}`; `tether webhooks deliveries` lists them (ids start with whe_)",
                p.delivery
            ),
        ));
    };
    let (id, ep) = (d.id.clone(), d.endpoint_id.clone());
    let now = store
        .write(move |c| {
            rows::requeue(c, &id, &ep)?;
            rows::deliveries_of(c, &id)
        })
        .await?;
    // Due now: the deliverer may be asleep until the next retry.
    store.webhook_wake().notify_one();
    now.into_iter()
        .find(|x| x.endpoint_id == d.endpoint_id)
        .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no delivery `{}`", d.id)))
}
