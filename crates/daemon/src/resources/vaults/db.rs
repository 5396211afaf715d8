//! The `vaults` and `vault_credentials` tables. A credential row keeps its public `auth`
//! (what the API answers) as JSON and its secrets sealed (see [`super::seal`]).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use tether_proto::vault::{Credential, CredentialAuth, Vault};

use crate::store::error::StoreError;

fn write_err(e: rusqlite::Error) -> StoreError {
    StoreError::Write(e.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

const VAULT_COLS: &str = "id, display_name, metadata, created_at, updated_at, archived_at";

fn row_to_vault(r: &rusqlite::Row<'_>) -> rusqlite::Result<Vault> {
    let metadata: String = r.get(2)?;
    Ok(Vault {
        id: r.get(0)?,
        object_type: "vault".into(),
        display_name: r.get(1)?,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
        archived_at: r.get(5)?,
    })
}

pub fn no_vault(id: &str) -> StoreError {
    StoreError::Missing(format!(
        "no vault `{id}`; `tether vaults ls` (or GET /v1/vaults) lists them"
    ))
}

pub fn insert_vault(c: &Connection, v: &Vault) -> Result<(), StoreError> {
    c.execute(
        &format!("INSERT INTO vaults ({VAULT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            v.id,
            v.display_name,
            json(&v.metadata),
            v.created_at,
            v.updated_at,
            v.archived_at
        ],
    )
    .map_err(write_err)?;
    Ok(())
}

pub fn get_vault(c: &Connection, id: &str) -> Result<Vault, StoreError> {
    c.prepare_cached(&format!("SELECT {VAULT_COLS} FROM vaults WHERE id = ?1"))?
        .query_row([id], row_to_vault)
        .optional()?
        .ok_or_else(|| no_vault(id))
}

/// Oldest first.
pub fn list_vaults(c: &Connection, include_archived: bool) -> Result<Vec<Vault>, StoreError> {
    let filter = if include_archived {
        ""
    } else {
        "WHERE archived_at IS NULL"
    };
    Ok(c.prepare_cached(&format!(
        "SELECT {VAULT_COLS} FROM vaults {filter} ORDER BY created_at, id"
    ))?
    .query_map([], row_to_vault)?
    .collect::<Result<_, _>>()?)
}

pub fn save_vault(c: &Connection, v: &Vault) -> Result<(), StoreError> {
    c.execute(
        "UPDATE vaults SET display_name = ?2, metadata = ?3, updated_at = ?4, archived_at = ?5 WHERE id = ?1",
        params![v.id, v.display_name, json(&v.metadata), v.updated_at, v.archived_at],
    )
    .map_err(write_err)?;
    Ok(())
}

/// Deletes the vault and (cascade) its credentials.
pub fn delete_vault(c: &Connection, id: &str) -> Result<(), StoreError> {
    get_vault(c, id)?;
    c.execute("DELETE FROM vaults WHERE id = ?1", [id])
        .map_err(write_err)?;
    Ok(())
}

const CRED_COLS: &str =
    "id, vault_id, display_name, auth, metadata, created_at, updated_at, archived_at, sealed";

/// A credential row: what may be shown, and its sealed secrets.
pub struct CredentialRow {
    pub credential: Credential,
    pub sealed: Vec<u8>,
}

fn row_to_cred(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<CredentialRow, StoreError>> {
    let auth: String = r.get(3)?;
    let metadata: String = r.get(4)?;
    let id: String = r.get(0)?;
    let auth: CredentialAuth = match serde_json::from_str(&auth) {
        Ok(a) => a,
        Err(e) => {
            return Ok(Err(StoreError::Read(format!(
                "the stored auth of credential {id} is unreadable: {e}"
            ))));
        }
    };
    Ok(Ok(CredentialRow {
        credential: Credential {
            id,
            object_type: "vault_credential".into(),
            vault_id: r.get(1)?,
            display_name: r.get(2)?,
            auth,
            metadata: serde_json::from_str::<BTreeMap<String, String>>(&metadata)
                .unwrap_or_default(),
            created_at: r.get(5)?,
            updated_at: r.get(6)?,
            archived_at: r.get(7)?,
        },
        sealed: r.get(8)?,
    }))
}

pub fn insert_credential(c: &Connection, row: &CredentialRow) -> Result<(), StoreError> {
    let cr = &row.credential;
    c.execute(
        &format!(
            "INSERT INTO vault_credentials ({CRED_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            cr.id,
            cr.vault_id,
            cr.display_name,
            json(&cr.auth),
            json(&cr.metadata),
            cr.created_at,
            cr.updated_at,
            cr.archived_at,
            row.sealed
        ],
    )
    .map_err(write_err)?;
    Ok(())
}

pub fn save_credential(c: &Connection, row: &CredentialRow) -> Result<(), StoreError> {
    let cr = &row.credential;
    c.execute(
        "UPDATE vault_credentials SET display_name = ?2, auth = ?3, metadata = ?4, updated_at = ?5, archived_at = ?6, sealed = ?7 WHERE id = ?1",
        params![
            cr.id,
            cr.display_name,
            json(&cr.auth),
            json(&cr.metadata),
            cr.updated_at,
            cr.archived_at,
            row.sealed
        ],
    )
    .map_err(write_err)?;
    Ok(())
}

/// The credential `id` of vault `vault_id` (a credential of another vault is not found).
pub fn get_credential(
    c: &Connection,
    vault_id: &str,
    id: &str,
) -> Result<CredentialRow, StoreError> {
    get_vault(c, vault_id)?;
    c.prepare_cached(&format!(
        "SELECT {CRED_COLS} FROM vault_credentials WHERE id = ?1 AND vault_id = ?2"
    ))?
    .query_row([id, vault_id], row_to_cred)
    .optional()?
    .unwrap_or_else(|| {
        Err(StoreError::Missing(format!(
            "no credential `{id}` in vault `{vault_id}`; GET /v1/vaults/{vault_id}/credentials lists them"
        )))
    })
}

/// A vault's credentials, oldest first.
pub fn list_credentials(
    c: &Connection,
    vault_id: &str,
    include_archived: bool,
) -> Result<Vec<CredentialRow>, StoreError> {
    get_vault(c, vault_id)?;
    let filter = if include_archived {
        ""
    } else {
        "AND archived_at IS NULL"
    };
    c.prepare_cached(&format!(
        "SELECT {CRED_COLS} FROM vault_credentials WHERE vault_id = ?1 {filter} ORDER BY created_at, id"
    ))?
    .query_map([vault_id], row_to_cred)?
    .map(|r| r.map_err(StoreError::from).and_then(|x| x))
    .collect()
}

pub fn delete_credential(c: &Connection, vault_id: &str, id: &str) -> Result<(), StoreError> {
    get_credential(c, vault_id, id)?;
    c.execute("DELETE FROM vault_credentials WHERE id = ?1", [id])
        .map_err(write_err)?;
    Ok(())
}
