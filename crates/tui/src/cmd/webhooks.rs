//! `tether webhooks ...`: endpoints in, endpoints and the delivery log out.

use std::process::ExitCode;

use serde::Serialize;
use tether_proto::method::{NoParams, rpc};
use tether_proto::webhook::{
    CreateWebhook, ListDeliveries, Redeliver, WebhookDelivery, WebhookEndpoint, WebhookParams,
};

use super::{CmdResult, connect};
use crate::cli::WebhooksAction;

pub async fn run(action: WebhooksAction) -> CmdResult {
    match action {
        WebhooksAction::Add {
            url,
            name,
            events,
            json,
        } => {
            let e = connect()
                .await?
                .request::<rpc::WebhookCreate>(CreateWebhook {
                    url,
                    name,
                    enabled_events: events,
                })
                .await?;
            if json {
                println!("{}", to_json(&e));
            } else {
                println!("added webhook {} → {}", label(&e), e.url);
                println!(
                    "signing secret (shown only now; verify with the SDKs' webhooks.unwrap):\n{}",
                    e.signing_secret.as_deref().unwrap_or_default()
                );
            }
        }
        WebhooksAction::Ls { json } => {
            let list = connect()
                .await?
                .request::<rpc::WebhookList>(NoParams {})
                .await?
                .data;
            if json {
                for e in &list {
                    println!("{}", to_json(e));
                }
            } else if list.is_empty() {
                eprintln!(
                    "no webhooks yet; `tether webhooks add URL` adds one (or [[webhooks.endpoints]] in config.toml)"
                );
            } else {
                println!(
                    "{:<16} {:<40} {:<8} {:<32} ID",
                    "NAME", "URL", "SOURCE", "EVENTS"
                );
                for e in &list {
                    let events = if e.enabled_events.is_empty() {
                        "all".to_string()
                    } else {
                        e.enabled_events.join(",")
                    };
                    println!(
                        "{:<16} {:<40} {:<8} {:<32} {}",
                        e.name.as_deref().unwrap_or("-"),
                        e.url,
                        e.source,
                        events,
                        e.id
                    );
                }
            }
        }
        WebhooksAction::Rm { webhook } => {
            let d = connect()
                .await?
                .request::<rpc::WebhookDelete>(WebhookParams { webhook })
                .await?;
            println!("removed webhook {}", d.id);
        }
        WebhooksAction::Deliveries {
            webhook,
            failed,
            pending,
            limit,
            json,
        } => {
            let status = match (failed, pending) {
                (true, _) => Some("failed".to_string()),
                (_, true) => Some("pending".to_string()),
                _ => None,
            };
            let list = connect()
                .await?
                .request::<rpc::WebhookDeliveries>(ListDeliveries {
                    webhook,
                    status,
                    limit: Some(limit),
                })
                .await?
                .data;
            if json {
                for d in &list {
                    println!("{}", to_json(d));
                }
            } else if list.is_empty() {
                eprintln!("no deliveries");
            } else {
                println!(
                    "{:<32} {:<26} {:<10} {:>8}  {:<26} LAST ERROR",
                    "ID", "TYPE", "STATUS", "ATTEMPTS", "SESSION"
                );
                for d in &list {
                    println!("{}", delivery_line(d));
                }
            }
        }
        WebhooksAction::Redeliver { delivery, webhook } => {
            let d = connect()
                .await?
                .request::<rpc::WebhookRedeliver>(Redeliver { delivery, webhook })
                .await?;
            println!(
                "{} queued again for {} (same webhook-id); `tether webhooks deliveries` shows how it went",
                d.id, d.url
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn label(e: &WebhookEndpoint) -> String {
    match &e.name {
        Some(n) => format!("{n} ({})", e.id),
        None => e.id.clone(),
    }
}

fn delivery_line(d: &WebhookDelivery) -> String {
    let mut error = d.last_error.clone().unwrap_or_else(|| "-".into());
    if let Some(next) = d.next_attempt_at.as_deref().filter(|_| d.attempts > 0) {
        error = format!("{error} (next try {next})");
    }
    format!(
        "{:<32} {:<26} {:<10} {:>8}  {:<26} {}",
        d.id, d.event_type, d.status, d.attempts, d.subject_id, error
    )
}

fn to_json(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
