//! `/v1/vaults` and their credentials (hosted `beta.vaults`): CRUD, archive, paging. The
//! functions are `resources::vaults`'; secrets go in and never come out.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use tether_proto::vault::{
    Credential, CredentialChanges, CredentialSpec, CredentialValidation, Deleted, Vault,
    VaultChanges, VaultSpec,
};

use super::error::ApiResult;
use super::query::Query;
use super::shapes::Page;
use super::{Api, body, page};
use crate::resources::vaults;

fn paged<T>(all: Vec<T>, key: impl Fn(&T) -> Vec<String>, q: &Query) -> ApiResult<Json<Page<T>>> {
    page::of_query(q, all, key, false, (20, 100)).map(Json)
}

pub async fn create(
    State(api): State<Api>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Vault>> {
    let spec: VaultSpec = body::parse(&bytes)?;
    Ok(Json(vaults::create_vault(&api.rt.store, spec).await?))
}

pub async fn list(State(api): State<Api>, RawQuery(q): RawQuery) -> ApiResult<Json<Page<Vault>>> {
    let q = Query::parse(q.as_deref());
    let all = vaults::list_vaults(&api.rt.store, q.bool("include_archived")?).await?;
    paged(all, |v| vec![v.created_at.clone(), v.id.clone()], &q)
}

pub async fn retrieve(
    State(api): State<Api>,
    Path(vault_id): Path<String>,
) -> ApiResult<Json<Vault>> {
    Ok(Json(vaults::get_vault(&api.rt.store, &vault_id).await?))
}

pub async fn update(
    State(api): State<Api>,
    Path(vault_id): Path<String>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Vault>> {
    vaults::get_vault(&api.rt.store, &vault_id).await?;
    let changes: VaultChanges = body::parse(&bytes)?;
    Ok(Json(
        vaults::update_vault(&api.rt.store, &vault_id, changes).await?,
    ))
}

pub async fn delete(
    State(api): State<Api>,
    Path(vault_id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    vaults::delete_vault(&api.rt.store, &vault_id).await?;
    Ok(Json(Deleted {
        id: vault_id,
        object_type: "vault_deleted".into(),
    }))
}

pub async fn archive(
    State(api): State<Api>,
    Path(vault_id): Path<String>,
) -> ApiResult<Json<Vault>> {
    Ok(Json(vaults::archive_vault(&api.rt.store, &vault_id).await?))
}

pub async fn create_credential(
    State(api): State<Api>,
    Path(vault_id): Path<String>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Credential>> {
    vaults::get_vault(&api.rt.store, &vault_id).await?;
    let spec: CredentialSpec = body::parse(&bytes)?;
    Ok(Json(
        vaults::create_credential(&api.rt.store, &api.rt.paths.data_dir, &vault_id, spec).await?,
    ))
}

pub async fn list_credentials(
    State(api): State<Api>,
    Path(vault_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<Credential>>> {
    let q = Query::parse(q.as_deref());
    let all =
        vaults::list_credentials(&api.rt.store, &vault_id, q.bool("include_archived")?).await?;
    paged(all, |c| vec![c.created_at.clone(), c.id.clone()], &q)
}

pub async fn retrieve_credential(
    State(api): State<Api>,
    Path((vault_id, credential_id)): Path<(String, String)>,
) -> ApiResult<Json<Credential>> {
    Ok(Json(
        vaults::get_credential(&api.rt.store, &vault_id, &credential_id).await?,
    ))
}

pub async fn update_credential(
    State(api): State<Api>,
    Path((vault_id, credential_id)): Path<(String, String)>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Credential>> {
    vaults::get_credential(&api.rt.store, &vault_id, &credential_id).await?;
    let changes: CredentialChanges = body::parse(&bytes)?;
    Ok(Json(
        vaults::update_credential(
            &api.rt.store,
            &api.rt.paths.data_dir,
            &vault_id,
            &credential_id,
            changes,
        )
        .await?,
    ))
}

pub async fn delete_credential(
    State(api): State<Api>,
    Path((vault_id, credential_id)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    vaults::delete_credential(&api.rt.store, &vault_id, &credential_id).await?;
    Ok(Json(Deleted {
        id: credential_id,
        object_type: "vault_credential_deleted".into(),
    }))
}

pub async fn archive_credential(
    State(api): State<Api>,
    Path((vault_id, credential_id)): Path<(String, String)>,
) -> ApiResult<Json<Credential>> {
    Ok(Json(
        vaults::archive_credential(&api.rt.store, &vault_id, &credential_id).await?,
    ))
}

pub async fn validate_credential(
    State(api): State<Api>,
    Path((vault_id, credential_id)): Path<(String, String)>,
) -> ApiResult<Json<CredentialValidation>> {
    Ok(Json(
        vaults::oauth::validate(
            &api.rt.store,
            &api.rt.paths.data_dir,
            &vault_id,
            &credential_id,
        )
        .await?,
    ))
}
