//! `/v1/memory_stores`: stores, their memories and the memories' versions — the functions
//! `tether memory` reaches through the socket (`orchestration::memory`). Writes made here
//! are versions by an `api_actor` (the API's token).
//!
//! Beta header: the SDK sends `agent-memory-2026-07-22` here (not
//! `managed-agents-2026-04-01`); sending both is refused, as the hosted API does.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use tether_proto::memory::{
    Memory, MemoryChanges, MemoryDeleted, MemoryItem, MemoryStore, MemoryStoreChanges,
    MemoryStoreDeleted, MemoryStoreSpec, MemoryVersion, NewMemory,
};

use super::error::{ApiError, ApiResult};
use super::query::Query;
use super::shapes::Page;
use super::{Api, body, page};
use crate::orchestration::memory;

/// The two beta flags that may not be combined on memory store requests.
fn check_beta(headers: &HeaderMap) -> ApiResult<()> {
    let flags: Vec<&str> = headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if flags.contains(&"agent-memory-2026-07-22") && flags.contains(&"managed-agents-2026-04-01") {
        return Err(ApiError::invalid(
            "anthropic-beta: send either agent-memory-2026-07-22 or managed-agents-2026-04-01 to memory store endpoints, not both",
        ));
    }
    Ok(())
}

/// `view`: `basic` (no content) or `full`; `default` when absent.
fn full_view(q: &Query, default_full: bool) -> ApiResult<bool> {
    match q.one("view") {
        None => Ok(default_full),
        Some("full") => Ok(true),
        Some("basic") => Ok(false),
        Some(v) => Err(ApiError::invalid(format!(
            "view: expected `basic` or `full`, got `{v}`"
        ))),
    }
}

fn with_view(mut m: Memory, full: bool) -> Memory {
    if !full {
        m.content = None;
    }
    m
}

pub async fn create_store(
    State(api): State<Api>,
    headers: HeaderMap,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<MemoryStore>> {
    check_beta(&headers)?;
    let spec: MemoryStoreSpec = body::parse(&bytes)?;
    Ok(Json(memory::create_store(&api.rt.store, spec).await?))
}

pub async fn list_stores(
    State(api): State<Api>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<MemoryStore>>> {
    check_beta(&headers)?;
    let q = Query::parse(q.as_deref());
    let all = memory::list_stores(&api.rt.store, q.bool("include_archived")?).await?;
    Ok(Json(page::by_creation(
        &q,
        all,
        |s| (&s.created_at, &s.id),
        false,
        100,
    )?))
}

pub async fn retrieve_store(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(store_id): Path<String>,
) -> ApiResult<Json<MemoryStore>> {
    check_beta(&headers)?;
    Ok(Json(memory::by_id(&api.rt.store, &store_id).await?))
}

pub async fn update_store(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(store_id): Path<String>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<MemoryStore>> {
    check_beta(&headers)?;
    memory::by_id(&api.rt.store, &store_id).await?;
    let changes: MemoryStoreChanges = body::parse(&bytes)?;
    Ok(Json(
        memory::update_store(&api.rt.store, &store_id, changes).await?,
    ))
}

pub async fn delete_store(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(store_id): Path<String>,
) -> ApiResult<Json<MemoryStoreDeleted>> {
    check_beta(&headers)?;
    memory::delete_store(&api.rt.store, &store_id).await?;
    Ok(Json(MemoryStoreDeleted {
        id: store_id,
        object_type: "memory_store_deleted".into(),
    }))
}

pub async fn archive_store(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(store_id): Path<String>,
) -> ApiResult<Json<MemoryStore>> {
    check_beta(&headers)?;
    Ok(Json(memory::archive_store(&api.rt.store, &store_id).await?))
}

pub async fn create_memory(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(store_id): Path<String>,
    RawQuery(q): RawQuery,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Memory>> {
    check_beta(&headers)?;
    let full = full_view(&Query::parse(q.as_deref()), false)?;
    memory::by_id(&api.rt.store, &store_id).await?;
    let new: NewMemory = body::parse(&bytes)?;
    let m = memory::create_memory(&api.rt.store, &store_id, new, memory::http_token()).await?;
    Ok(Json(with_view(m, full)))
}

pub async fn list_memories(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(store_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<MemoryItem>>> {
    check_beta(&headers)?;
    let q = Query::parse(q.as_deref());
    let full = full_view(&q, false)?;
    let mut limit = q.limit(20, 100)?;
    if full {
        limit = limit.min(20);
    }
    let depth = match q.u64("depth")? {
        None => 0,
        Some(d) => u32::try_from(d).map_err(|_| ApiError::invalid("depth: too large"))?,
    };
    let items =
        memory::list_memories(&api.rt.store, &store_id, q.one("path_prefix"), depth, full).await?;
    let (data, next_page) = page::slice(
        items,
        |i| vec![i.path().to_string()],
        false,
        q.one("page"),
        limit,
    )?;
    Ok(Json(Page { data, next_page }))
}

pub async fn retrieve_memory(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((store_id, memory_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Memory>> {
    check_beta(&headers)?;
    let full = full_view(&Query::parse(q.as_deref()), true)?;
    if memory_id.starts_with('/') {
        return Err(ApiError::not_found(format!("no memory `{memory_id}`")));
    }
    let m = memory::get_memory(&api.rt.store, &store_id, &memory_id).await?;
    Ok(Json(with_view(m, full)))
}

pub async fn update_memory(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((store_id, memory_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Memory>> {
    check_beta(&headers)?;
    let full = full_view(&Query::parse(q.as_deref()), false)?;
    memory::by_id(&api.rt.store, &store_id).await?;
    let changes: MemoryChanges = body::parse(&bytes)?;
    let m = memory::update_memory(
        &api.rt.store,
        &store_id,
        &memory_id,
        changes,
        memory::http_token(),
    )
    .await?;
    Ok(Json(with_view(m, full)))
}

pub async fn delete_memory(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((store_id, memory_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<MemoryDeleted>> {
    check_beta(&headers)?;
    let q = Query::parse(q.as_deref());
    if memory_id.starts_with('/') {
        return Err(ApiError::not_found(format!("no memory `{memory_id}`")));
    }
    let expected = q.one("expected_content_sha256").map(str::to_string);
    let id = memory::delete_memory(
        &api.rt.store,
        &store_id,
        &memory_id,
        expected,
        memory::http_token(),
    )
    .await?;
    Ok(Json(MemoryDeleted {
        id,
        object_type: "memory_deleted".into(),
    }))
}

pub async fn list_versions(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(store_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<MemoryVersion>>> {
    check_beta(&headers)?;
    let q = Query::parse(q.as_deref());
    let full = full_view(&q, false)?;
    let mut limit = q.limit(20, 100)?;
    if full {
        limit = limit.min(20);
    }
    let range = q.created_at()?;
    if let Some(op) = q.one("operation")
        && !matches!(op, "created" | "modified" | "deleted")
    {
        return Err(ApiError::invalid(format!(
            "operation: expected created, modified or deleted, got `{op}`"
        )));
    }
    let filter = memory::VersionFilter {
        memory_id: q.one("memory_id").map(str::to_string),
        operation: q.one("operation").map(str::to_string),
        session_id: q.one("session_id").map(str::to_string),
    };
    // Versions made through this API carry its one key; other keys and service accounts
    // made none.
    let by_other_key = q
        .one("api_key_id")
        .is_some_and(|k| k != "apikey_tether_http_token")
        || q.one("service_account_id").is_some();
    let mut all: Vec<MemoryVersion> = memory::list_versions(&api.rt.store, &store_id, filter, full)
        .await?
        .into_iter()
        .filter(|v| range.contains(&v.created_at))
        .filter(|v| {
            q.one("api_key_id").is_none()
                || matches!(
                    &v.created_by,
                    Some(tether_proto::memory::Actor::ApiActor { .. })
                )
        })
        .collect();
    if by_other_key {
        all.clear();
    }
    // Newest first: the slice walks ascending ids reversed.
    all.reverse();
    let (data, next_page) = page::slice(all, |v| vec![v.id.clone()], true, q.one("page"), limit)?;
    Ok(Json(Page { data, next_page }))
}

pub async fn retrieve_version(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((store_id, version_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<MemoryVersion>> {
    check_beta(&headers)?;
    let full = full_view(&Query::parse(q.as_deref()), true)?;
    Ok(Json(
        memory::get_version(&api.rt.store, &store_id, &version_id, full).await?,
    ))
}

pub async fn redact_version(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((store_id, version_id)): Path<(String, String)>,
) -> ApiResult<Json<MemoryVersion>> {
    check_beta(&headers)?;
    Ok(Json(
        memory::redact_version(&api.rt.store, &store_id, &version_id, memory::http_token()).await?,
    ))
}
