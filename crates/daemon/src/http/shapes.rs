//! tether's objects in the hosted shapes: every field the SDK models declare, tether's
//! extras alongside (additive).

use std::collections::HashMap;

use serde_json::{Value, json};
use tether_proto::SessionInfo;
use tether_proto::agent::Agent;
use tether_proto::method::AgentParams;

use super::error::ApiResult;
use crate::runtime::Runtime;
use crate::store::SessionRow;

/// The environment sessions run in until environments are resources of their own.
pub const DEFAULT_ENVIRONMENT_ID: &str = "env_default";

/// An agent version as `BetaManagedAgentsAgent`.
pub fn agent(rt: &Runtime, a: &Agent) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        // tether lets an agent leave the model to the daemon's default; say which it is.
        if m.get("model").is_none_or(Value::is_null) {
            m.insert("model".into(), json!({ "id": rt.config.default_model }));
        }
        for key in ["description", "system", "multiagent"] {
            m.entry(key).or_insert(Value::Null);
        }
        m.entry("skills").or_insert(json!([]));
    }
    v
}

/// `BetaMonetaryAmount` for a USD figure.
pub fn usd(amount: f64) -> Value {
    json!({ "amount": format!("{amount:.6}"), "currency": "USD" })
}

/// Agent snapshots by `(id, version)`, so a page of sessions reads each version once.
#[derive(Default)]
pub struct AgentCache(HashMap<(String, u32), Value>);

impl AgentCache {
    async fn snapshot(&mut self, rt: &Runtime, id: &str, version: u32) -> ApiResult<Value> {
        let key = (id.to_string(), version);
        if let Some(v) = self.0.get(&key) {
            return Ok(v.clone());
        }
        let a = crate::agents::get(
            &rt.store,
            &AgentParams {
                agent: id.to_string(),
                version: Some(version),
            },
        )
        .await?;
        let mut v = agent(rt, &a);
        if let Value::Object(m) = &mut v {
            // The session object's agent is the resolved definition, not the resource.
            for key in ["created_at", "updated_at", "archived_at", "metadata"] {
                m.remove(key);
            }
        }
        self.0.insert(key, v.clone());
        Ok(v)
    }
}

/// A session as `BetaManagedAgentsSession`. `info` carries the live status and usage;
/// `row` the settings; `budget` the spending limit when the session is loaded.
pub async fn session(
    rt: &Runtime,
    cache: &mut AgentCache,
    info: &SessionInfo,
    row: &SessionRow,
    budget: Option<f64>,
) -> ApiResult<Value> {
    let mut agent = match &row.agent {
        Some((id, version)) => cache.snapshot(rt, id, *version).await?,
        None => json!({ "type": "agent", "id": null, "version": 0, "name": "default",
                        "tools": [], "mcp_servers": [], "skills": [] }),
    };
    if let Value::Object(m) = &mut agent {
        // What the session actually runs: a model switch or a --system override wins.
        m.insert("model".into(), json!({ "id": info.model }));
        if row.system.is_some() {
            m.insert("system".into(), json!(row.system));
        }
    }
    let t = &info.usage.tokens;
    let mut usage = json!({
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cache_read_input_tokens": t.cache_read_input_tokens,
        "cache_creation": { "ephemeral_5m_input_tokens": t.cache_creation_input_tokens },
    });
    if let Some(cost) = t.cost_usd {
        usage["list_cost"] = usd(cost);
    }
    let duration = humantime::parse_rfc3339(&info.created_at)
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map(|d| d.as_secs_f64());
    Ok(json!({
        "id": info.id,
        "type": "session",
        "status": info.status,
        "title": info.title,
        "agent": agent,
        "environment_id": DEFAULT_ENVIRONMENT_ID,
        "resources": [],
        "vault_ids": [],
        "metadata": row.metadata,
        "budget": budget.map(|b| json!({ "type": "limit", "max_list_cost": usd(b) })),
        "outcome_evaluations": [],
        "stats": { "duration_seconds": duration },
        "usage": usage,
        "deployment_id": null,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "archived_at": info.archived_at,
        // tether extensions
        "name": info.name,
        "stop_reason": info.stop_reason,
        "workspace": info.workspace,
        "last_seq": info.last_seq,
        "attached_clients": info.attached_clients,
        "forked_from": info.forked_from,
    }))
}
