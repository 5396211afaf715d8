//! Self-hosted environments' work queues: the hosted shapes of `/v1/environments/{id}/work`
//! (a work item is one session's claim on a worker) and tether's socket views of a queue
//! (its key, the workers seen).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a work item is for: always a session here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkData {
    /// The session id.
    pub id: String,
    /// `session`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A work item as the hosted API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Work {
    pub id: String,
    /// `work`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub acknowledged_at: Option<String>,
    pub created_at: String,
    pub data: WorkData,
    pub environment_id: String,
    pub latest_heartbeat_at: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Only in a poll's answer: URL-safe base64 of `{"sessions_token": ...}`, the item's
    /// credential for its session's endpoints.
    pub secret: Option<String>,
    pub started_at: Option<String>,
    /// `queued`, `starting`, `active`, `stopping` or `stopped`.
    pub state: String,
    pub stop_requested_at: Option<String>,
    pub stopped_at: Option<String>,
}

/// The answer to a heartbeat (and, refused, the lease as the server holds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkHeartbeat {
    /// `work_heartbeat`.
    #[serde(rename = "type")]
    pub object_type: String,
    /// What the next heartbeat must echo as `expected_last_heartbeat`; empty if none.
    pub last_heartbeat: String,
    /// False once the item is stopping or stopped: the worker should stop.
    pub lease_extended: bool,
    pub state: String,
    pub ttl_seconds: u64,
}

/// `GET /v1/environments/{id}/work/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkQueueStats {
    /// `work_queue_stats`.
    #[serde(rename = "type")]
    pub object_type: String,
    /// Items no poll has handed out yet.
    pub depth: u64,
    /// Items handed out by a poll but not acknowledged.
    pub pending: u64,
    pub oldest_queued_at: Option<String>,
    /// Workers that polled in the last 30 seconds.
    pub workers_polling: Option<u64>,
}

/// `environment.key`: shows an environment's key, making it if it has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentKeyParams {
    /// A name or an id.
    pub environment: String,
    /// Replace the key: the old one stops working at once.
    #[serde(default)]
    pub rotate: bool,
}

/// An environment key. Only its sha256 is kept, so `key` is set only when it was just made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentKey {
    pub environment_id: String,
    pub key: Option<String>,
    pub created_at: String,
}

/// One worker seen polling an environment (since the daemon started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSeen {
    /// `Anthropic-Worker-ID` (the SDK's is `HOST-<12 hex>`).
    pub worker_id: String,
    pub host: String,
    /// Its last poll or heartbeat.
    pub last_seen_at: String,
    /// Work items it holds (acknowledged, not stopped).
    pub in_flight: u64,
}

/// `environment.workers`: an environment's queue as `tether envs show` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentWorkers {
    pub environment_id: String,
    pub has_key: bool,
    pub workers: Vec<WorkerSeen>,
    pub queued: u64,
    pub in_flight: u64,
}
