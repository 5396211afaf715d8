//! `/v1/environments`: create, list, retrieve, update, delete, archive — the same functions
//! `tether envs` reaches through the socket. Creating or changing the config starts the
//! environment's layer build; `build` on the object (tether extension) says where it is.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde_json::Value;
use tether_proto::environment::{Environment, EnvironmentChanges, EnvironmentSpec};
use tether_proto::method::{EnvironmentDeleted, UpdateEnvironment};

use super::error::{ApiError, ApiResult};
use super::query::Query;
use super::shapes::Page;
use super::{Api, body, page};
use crate::resources::{Names, environments};

/// Hosted `scope` applies to self-hosted environments only: accepted when null.
fn without_scope(bytes: &Bytes) -> ApiResult<Value> {
    let mut v: Value = body::parse(bytes)?;
    let Value::Object(m) = &mut v else {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    };
    if let Some(scope) = m.remove("scope")
        && !scope.is_null()
    {
        return Err(ApiError::invalid(
            "scope: only self-hosted environments have a scope; remove the field",
        ));
    }
    Ok(v)
}

pub async fn create(
    State(api): State<Api>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Environment>> {
    let spec: EnvironmentSpec =
        serde_json::from_value(without_scope(&bytes)?).map_err(ApiError::body)?;
    Ok(Json(
        environments::create_with(&api.rt.store, &api.rt.builds, spec, Names::MayRepeat).await?,
    ))
}

pub async fn list(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<Environment>>> {
    let q = Query::parse(q.as_deref());
    q.limit(20, 100)?;
    let all =
        environments::list(&api.rt.store, &api.rt.builds, q.bool("include_archived")?).await?;
    Ok(Json(page::of_query(
        &q,
        all,
        |e| vec![e.created_at.clone(), e.id.clone()],
        q.descending(false)?,
        (20, 100),
    )?))
}

pub async fn retrieve(
    State(api): State<Api>,
    Path(environment_id): Path<String>,
) -> ApiResult<Json<Environment>> {
    environments::require_id(&api.rt.store, &environment_id).await?;
    Ok(Json(
        environments::get(&api.rt.store, &api.rt.builds, &environment_id).await?,
    ))
}

pub async fn update(
    State(api): State<Api>,
    Path(environment_id): Path<String>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Environment>> {
    environments::require_id(&api.rt.store, &environment_id).await?;
    let changes: EnvironmentChanges =
        serde_json::from_value(without_scope(&bytes)?).map_err(ApiError::body)?;
    let p = UpdateEnvironment {
        environment: environment_id,
        changes,
    };
    Ok(Json(
        environments::update_with(&api.rt.store, &api.rt.builds, p, Names::MayRepeat).await?,
    ))
}

pub async fn delete(
    State(api): State<Api>,
    Path(environment_id): Path<String>,
) -> ApiResult<Json<EnvironmentDeleted>> {
    environments::require_id(&api.rt.store, &environment_id).await?;
    let id = environments::delete(&api.rt.store, &environment_id).await?;
    Ok(Json(EnvironmentDeleted::new(id)))
}

pub async fn archive(
    State(api): State<Api>,
    Path(environment_id): Path<String>,
) -> ApiResult<Json<Environment>> {
    environments::require_id(&api.rt.store, &environment_id).await?;
    Ok(Json(
        environments::archive(&api.rt.store, &api.rt.builds, &environment_id).await?,
    ))
}
