//! `/v1/agents`: create, list, retrieve (`?version=`), update (optimistic lock), archive,
//! versions — the same functions `tether agents` reaches through the socket.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde_json::Value;
use tether_proto::ErrorCode;
use tether_proto::agent::{AgentChanges, AgentSpec};
use tether_proto::method::{AgentParams, UpdateAgent};

use super::error::{ApiError, ApiResult};
use super::query::Query;
use super::shapes::{HostedAgent, Page};
use super::{Api, body, page, shapes};
use crate::resources::{Names, agents};

/// Hosted fields tether does not model: accepted when empty, refused otherwise.
fn strip_unsupported(v: &mut Value) -> ApiResult<()> {
    let Value::Object(m) = v else {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    };
    // `null` means none; a list is checked against the stored skills (resources::skills).
    if m.get("skills").is_some_and(Value::is_null) {
        m.remove("skills");
    }
    // Null and `service_account` mean the default (hosted), which is all tether has.
    if let Some(identity) = m.remove("execution_identity")
        && !identity.is_null()
        && identity != serde_json::json!({"type": "service_account"})
    {
        return Err(ApiError::invalid(
            "execution_identity: tools run as the user tetherd runs as, so only {\"type\": \"service_account\"} (the default) is accepted; remove the field or send that",
        ));
    }
    Ok(())
}

pub async fn create(
    State(api): State<Api>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<HostedAgent>> {
    let mut v: Value = body::parse(&bytes)?;
    strip_unsupported(&mut v)?;
    let spec: AgentSpec = serde_json::from_value(v).map_err(ApiError::body)?;
    let a = agents::create_with(&api.rt.store, spec, Names::MayRepeat).await?;
    Ok(Json(shapes::agent(&api.rt, &a)))
}

pub async fn list(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<HostedAgent>>> {
    let q = Query::parse(q.as_deref());
    let limit = q.limit(20, 100)?;
    let range = q.created_at()?;
    let all = agents::list(&api.rt.store, q.bool("include_archived")?).await?;
    let all: Vec<_> = all
        .into_iter()
        .filter(|a| range.contains(&a.created_at))
        .collect();
    let (items, next) = page::slice(
        all,
        |a| vec![a.created_at.clone(), a.id.clone()],
        q.descending(false)?,
        q.one("page"),
        limit,
    )?;
    let data = items.iter().map(|a| shapes::agent(&api.rt, a)).collect();
    Ok(Json(Page {
        data,
        next_page: next,
    }))
}

pub async fn retrieve(
    State(api): State<Api>,
    Path(agent_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<HostedAgent>> {
    agents::require_id(&api.rt.store, &agent_id).await?;
    let q = Query::parse(q.as_deref());
    let version = q
        .u64("version")?
        .map(|v| {
            u32::try_from(v).map_err(|_| ApiError::invalid(format!("version: {v} is too large")))
        })
        .transpose()?;
    let a = agents::get(
        &api.rt.store,
        &AgentParams {
            agent: agent_id,
            version,
        },
    )
    .await?;
    Ok(Json(shapes::agent(&api.rt, &a)))
}

pub async fn update(
    State(api): State<Api>,
    Path(agent_id): Path<String>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<HostedAgent>> {
    agents::require_id(&api.rt.store, &agent_id).await?;
    let mut v: Value = body::parse(&bytes)?;
    strip_unsupported(&mut v)?;
    // Hosted `metadata` on update is a patch: a null value deletes the key.
    let patch = match &mut v {
        Value::Object(m) => m.remove("metadata"),
        _ => None,
    };
    let mut changes: AgentChanges = serde_json::from_value(v).map_err(ApiError::body)?;
    if let Some(patch) = patch.filter(|p| !p.is_null()) {
        let Value::Object(patch) = patch else {
            return Err(ApiError::invalid("metadata: expected an object"));
        };
        let current = agents::get(
            &api.rt.store,
            &AgentParams {
                agent: agent_id.clone(),
                version: None,
            },
        )
        .await?;
        let mut metadata = current.spec.metadata;
        for (k, val) in patch {
            match val {
                Value::Null => {
                    metadata.remove(&k);
                }
                Value::String(s) => {
                    metadata.insert(k, s);
                }
                _ => {
                    return Err(ApiError::invalid(format!(
                        "metadata.{k}: expected a string, or null to remove the key"
                    )));
                }
            }
        }
        changes.metadata = Some(metadata);
    }
    // Hosted: `version` is optional, "omit to apply the update unconditionally". Without
    // it the change applies to whatever version is newest when it lands; a concurrent update
    // in between is a version conflict, so take the newest again and retry.
    let pinned = changes.version.take();
    let mut attempts = 0;
    let a = loop {
        let version = match pinned {
            Some(v) => v,
            None => {
                agents::get(
                    &api.rt.store,
                    &AgentParams {
                        agent: agent_id.clone(),
                        version: None,
                    },
                )
                .await?
                .version
            }
        };
        match agents::update_with(
            &api.rt.store,
            UpdateAgent {
                agent: agent_id.clone(),
                version,
                changes: changes.clone(),
            },
            Names::MayRepeat,
        )
        .await
        {
            Err(e) if pinned.is_none() && e.code == ErrorCode::Conflict && attempts < 3 => {
                attempts += 1;
            }
            other => break other?,
        }
    };
    Ok(Json(shapes::agent(&api.rt, &a)))
}

pub async fn archive(
    State(api): State<Api>,
    Path(agent_id): Path<String>,
) -> ApiResult<Json<HostedAgent>> {
    agents::require_id(&api.rt.store, &agent_id).await?;
    let a = agents::archive(&api.rt.store, &agent_id).await?;
    Ok(Json(shapes::agent(&api.rt, &a)))
}

pub async fn versions(
    State(api): State<Api>,
    Path(agent_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<HostedAgent>>> {
    agents::require_id(&api.rt.store, &agent_id).await?;
    let q = Query::parse(q.as_deref());
    let limit = q.limit(20, 100)?;
    let all = agents::versions(&api.rt.store, &agent_id).await?;
    let (items, next) = page::slice(
        all,
        |a| vec![format!("{:010}", a.version)],
        q.descending(false)?,
        q.one("page"),
        limit,
    )?;
    let data = items.iter().map(|a| shapes::agent(&api.rt, a)).collect();
    Ok(Json(Page {
        data,
        next_page: next,
    }))
}
