//! Webhooks: the hosted API's webhook event envelope (`{type:"event", id, created_at, data}`),
//! which of tether's log events become which `data.type`, and tether's socket views of its
//! endpoints and their delivery log.
//!
//! Payloads are thin, as hosted: `data` names the session (and thread); a receiver fetches
//! the rest.

use serde::{Deserialize, Serialize};

use crate::event::{EventBody, RetryStatusKind, StopReason};

/// The `data.type`s tether sends, in the hosted API's names (SDK 2.17.0) plus tether's one
/// extension, `session.errored` (a turn ended by an error that will not be retried).
///
/// Resource changes (issue 20): `agent.{created,updated,archived}` (tether never deletes an
/// agent), `environment.{created,updated,archived,deleted}` and
/// `deployment.{created,updated,paused,unpaused,archived}` (nor a deployment); `data.id` is
/// the resource's id. A no-op (archiving what is archived) sends nothing.
///
/// Vault credentials (issue 25): `vault_credential.refresh_failed` when a token endpoint
/// refuses to give an `mcp_oauth` credential a new token; `data.id` is the credential,
/// `data.vault_id` its vault.
///
/// Hosted types tether never sends: `session.pending` (tether has no pending state);
/// `deployment_run.*`, `memory_store.*`, `vault.*` and the other `vault_credential.*` (not
/// yet);
/// `external_key.*`, `external_storage.*` and `user_profile.*` (tether has no such things).
pub const WEBHOOK_EVENT_TYPES: &[&str] = &[
    "session.created",
    "session.running",
    "session.idled",
    "session.requires_action",
    "session.budget_reached",
    "session.errored",
    "session.updated",
    "session.archived",
    "session.deleted",
    "session.outcome_evaluation_ended",
    "session.status_run_started",
    "session.status_idled",
    "session.status_rescheduled",
    "session.status_terminated",
    "session.thread_created",
    "session.thread_idled",
    "session.thread_terminated",
    // resources (issue 20)
    "agent.created",
    "agent.updated",
    "agent.archived",
    "environment.created",
    "environment.updated",
    "environment.archived",
    "environment.deleted",
    "deployment.created",
    "deployment.updated",
    "deployment.paused",
    "deployment.unpaused",
    "deployment.archived",
    // vault credentials (issue 25, mcpauth2)
    "vault_credential.refresh_failed",
];

/// `data.organization_id` / `data.workspace_id`: a self-hosted daemon has one of each.
pub const ORGANIZATION_ID: &str = "local";
pub const WORKSPACE_ID: &str = "default";

/// The webhook types one event of a top-level session's own stream stands for, in order.
/// `session_thread_id` is the event's: thread lifecycle events count only as the cross-posts
/// in the primary's stream (which carry it), so each is sent once.
pub fn types_for(body: &EventBody, session_thread_id: Option<&str>) -> Vec<&'static str> {
    match body {
        EventBody::SessionStatusRunning {} => {
            vec!["session.status_run_started", "session.running"]
        }
        EventBody::SessionStatusIdle { stop_reason } => {
            let specific = match stop_reason {
                StopReason::RequiresAction { .. } => "session.requires_action",
                StopReason::BudgetReached => "session.budget_reached",
                _ => "session.idled",
            };
            vec!["session.status_idled", specific]
        }
        EventBody::SessionStatusRescheduled {} => vec!["session.status_rescheduled"],
        EventBody::SessionStatusTerminated {} => vec!["session.status_terminated"],
        EventBody::SessionError { error } => match error.retry_status.kind {
            RetryStatusKind::Exhausted | RetryStatusKind::Terminal => vec!["session.errored"],
            RetryStatusKind::Retrying => vec![],
        },
        EventBody::SessionUpdated { .. } => vec!["session.updated"],
        EventBody::SpanOutcomeEvaluationEnd(_) => vec!["session.outcome_evaluation_ended"],
        EventBody::SessionThreadCreated { .. } if session_thread_id.is_some() => {
            vec!["session.thread_created"]
        }
        EventBody::SessionThreadStatusIdle { .. } if session_thread_id.is_some() => {
            vec!["session.thread_idled"]
        }
        EventBody::SessionThreadStatusTerminated { .. } if session_thread_id.is_some() => {
            vec!["session.thread_terminated"]
        }
        _ => vec![],
    }
}

/// `data` of a webhook event: thin, as hosted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookEventData {
    #[serde(rename = "type")]
    pub kind: String,
    /// The session's id.
    pub id: String,
    pub organization_id: String,
    pub workspace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_thread_id: Option<String>,
    /// `vault_credential.*`: the credential's vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
}

/// The body POSTed to an endpoint. `id` is also the `webhook-id` header, the same on every
/// attempt (receivers dedupe on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookEvent {
    /// `event`.
    #[serde(rename = "type")]
    pub object_type: String,
    /// `whe_…`.
    pub id: String,
    /// When the event happened (RFC 3339).
    pub created_at: String,
    pub data: WebhookEventData,
}

impl WebhookEvent {
    pub fn new(id: String, created_at: String, data: WebhookEventData) -> WebhookEvent {
        WebhookEvent {
            object_type: "event".into(),
            id,
            created_at,
            data,
        }
    }
}

/// A webhook endpoint as tether shows it. The signing secret is in the answer to
/// `webhook.create` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookEndpoint {
    /// `whep_…`.
    pub id: String,
    /// `webhook_endpoint`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub url: String,
    pub name: Option<String>,
    /// The `data.type`s sent; empty means every one tether sends.
    pub enabled_events: Vec<String>,
    /// `enabled`.
    pub state: String,
    /// `api` (made by `webhook.create`) or `config` (a `[[webhooks.endpoints]]` of
    /// config.toml: changed there, not here).
    pub source: String,
    /// `whsec_…`: only when just created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `webhook.create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http://` or `https://`.
    pub url: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Empty: every type tether sends ([`WEBHOOK_EVENT_TYPES`]).
    #[serde(default)]
    pub enabled_events: Vec<String>,
}

/// `webhook.delete`: an endpoint's id or name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookParams {
    pub webhook: String,
}

/// Answer to `webhook.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookDeleted {
    pub id: String,
    /// `webhook_endpoint_deleted`.
    #[serde(rename = "type")]
    pub object_type: String,
}

/// `webhook.deliveries`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListDeliveries {
    /// One endpoint's (id or name); all when absent.
    #[serde(default)]
    pub webhook: Option<String>,
    /// `pending`, `delivered` or `failed`.
    #[serde(default)]
    pub status: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `webhook.redeliver`: send a delivery again (a failed one, or a delivered one a receiver
/// lost), with the same `webhook-id`, now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeliver {
    /// The `whe_…` id (the `webhook-id`).
    pub delivery: String,
    /// The endpoint, when the event went to several.
    #[serde(default)]
    pub webhook: Option<String>,
}

/// One event's delivery to one endpoint: the delivery log's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookDelivery {
    /// `whe_…`: the envelope's id and the `webhook-id` header.
    pub id: String,
    pub endpoint_id: String,
    pub url: String,
    /// `data.type`.
    pub event_type: String,
    /// `data.id` (the session).
    pub subject_id: String,
    /// `pending` (waiting for its next attempt), `delivered` or `failed` (attempts used up;
    /// `webhook.redeliver` sends it again).
    pub status: String,
    pub attempts: u32,
    pub created_at: String,
    pub last_attempt_at: Option<String>,
    /// The receiver's HTTP status at the last attempt, if it answered.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_maps_to_the_status_type_and_one_by_stop_reason() {
        let idle = |stop_reason| EventBody::SessionStatusIdle { stop_reason };
        assert_eq!(
            types_for(&idle(StopReason::EndTurn), None),
            ["session.status_idled", "session.idled"]
        );
        assert_eq!(
            types_for(
                &idle(StopReason::RequiresAction {
                    event_ids: vec!["sevt_1".into()]
                }),
                None
            ),
            ["session.status_idled", "session.requires_action"]
        );
        assert_eq!(
            types_for(&idle(StopReason::BudgetReached), None),
            ["session.status_idled", "session.budget_reached"]
        );
    }

    #[test]
    fn only_errors_that_end_the_turn_are_sent() {
        let err = |kind: &str| {
            serde_json::from_value::<EventBody>(serde_json::json!({
                "type": "session.error",
                "error": {"type": "model_overloaded_error", "message": "busy",
                          "retry_status": {"type": kind}}
            }))
            .unwrap()
        };
        assert!(types_for(&err("retrying"), None).is_empty());
        assert_eq!(types_for(&err("exhausted"), None), ["session.errored"]);
        assert_eq!(types_for(&err("terminal"), None), ["session.errored"]);
    }

    #[test]
    fn thread_lifecycle_counts_only_as_the_primarys_cross_post() {
        let body = EventBody::SessionThreadStatusIdle {
            agent_name: "helper".into(),
            stop_reason: StopReason::EndTurn,
            stop_details: None,
        };
        assert!(types_for(&body, None).is_empty());
        assert_eq!(types_for(&body, Some("sthr_1")), ["session.thread_idled"]);
    }

    #[test]
    fn every_type_sent_is_listed() {
        let bodies = [
            EventBody::SessionStatusRunning {},
            EventBody::SessionStatusRescheduled {},
            EventBody::SessionStatusTerminated {},
        ];
        for b in &bodies {
            for t in types_for(b, None) {
                assert!(WEBHOOK_EVENT_TYPES.contains(&t), "{t}");
            }
        }
    }
}
