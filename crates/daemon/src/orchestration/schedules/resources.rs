//! A deployment's `resources` (hosted): files, GitHub repositories and memory stores mounted
//! into every session it fires. Checked when written as a session create would check them
//! (files and stores exist, mount paths are usable and don't clash, repository URLs are
//! GitHub's, the counts a session takes), and again when it fires: a file deleted or a
//! store archived since fails the run with an error naming it, rather than starting a
//! session without its inputs.
//!
//! A repository's `authorization_token` is sealed with the vault key
//! ([`crate::resources::vaults::seal`]) and bound to the deployment; the spec keeps only the
//! sealed blob, the wire object none of it, and it is opened only to build a fire's session.

use base64::Engine as _;
use serde_json::{Value, json};
use tether_proto::deployment::{
    DeploymentResource, DeploymentResourceParam, MAX_FILE_RESOURCES, MAX_MEMORY_RESOURCES,
};
use tether_proto::file::ResourceParam;
use tether_proto::memory::{MemoryResourceParam, SessionMemory};
use tether_proto::{ErrorBody, ErrorCode};

use super::deployments::Stored;
use crate::orchestration::memory;
use crate::resources::attach;
use crate::resources::vaults::seal::Sealer;
use crate::runtime::Runtime;

/// Resources as stored with a deployment: what is answered, and the tokens sealed.
#[derive(Debug, Default)]
pub struct Checked {
    pub resources: Vec<DeploymentResource>,
    /// base64 of the sealed JSON list of tokens, one per resource (None for a resource
    /// without one); None when no resource has a token.
    pub sealed_tokens: Option<String>,
}

fn invalid(msg: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

/// `e` about `resources[i]`.
fn at(i: usize, mut e: ErrorBody) -> ErrorBody {
    e.message = format!("resources[{i}]: {}", e.message);
    e
}

/// What the seal of deployment `id`'s tokens is bound to (not a credential's id, so neither
/// opens as the other).
fn owner(deployment_id: &str) -> String {
    format!("{deployment_id}/resources")
}

fn sealer(rt: &Runtime) -> Result<Sealer, ErrorBody> {
    Sealer::open(&rt.paths.data_dir).map_err(|e| ErrorBody::new(ErrorCode::Storage, e))
}

fn file_param(file_id: &str, mount_path: &Option<String>) -> ResourceParam {
    ResourceParam::File {
        file_id: file_id.to_string(),
        mount_path: mount_path.clone(),
    }
}

fn memory_param(
    memory_store_id: &str,
    access: Option<tether_proto::memory::Access>,
    instructions: &Option<String>,
) -> MemoryResourceParam {
    MemoryResourceParam {
        kind: "memory_store".into(),
        memory_store_id: memory_store_id.to_string(),
        access,
        instructions: instructions.clone(),
    }
}

/// Checks `params` for deployment `deployment_id` and seals their tokens. Errors name the
/// entry (`resources[i]`).
pub async fn check(
    rt: &Runtime,
    deployment_id: &str,
    params: &[DeploymentResourceParam],
) -> Result<Checked, ErrorBody> {
    let stores = params
        .iter()
        .filter(|p| matches!(p, DeploymentResourceParam::MemoryStore { .. }))
        .count();
    if stores > MAX_MEMORY_RESOURCES {
        return Err(invalid(format!(
            "resources: {stores} memory stores; each session a deployment fires mounts at most {MAX_MEMORY_RESOURCES}"
        )));
    }
    let others = params.len() - stores;
    if others > MAX_FILE_RESOURCES {
        return Err(invalid(format!(
            "resources: {others} files and repositories; each session a deployment fires takes at most {MAX_FILE_RESOURCES}"
        )));
    }
    let mut out = Vec::with_capacity(params.len());
    // (index, mount path) of the files and repositories so far; the stores so far.
    let mut mounts: Vec<(usize, String)> = Vec::new();
    let mut attached: Vec<SessionMemory> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let config = match p {
            DeploymentResourceParam::File {
                file_id,
                mount_path,
            } => {
                let planned = attach::plan(&rt.store, &[file_param(file_id, mount_path)])
                    .await
                    .map_err(|e| at(i, e))?;
                if let Some(one) = planned.first() {
                    check_mount(&mut mounts, i, attach::mount_of(&one.resource))?;
                }
                p.config()
            }
            DeploymentResourceParam::GithubRepository {
                url,
                checkout,
                mount_path,
                ..
            } => {
                let param = ResourceParam::GithubRepository {
                    url: url.clone(),
                    authorization_token: None,
                    checkout: checkout.clone(),
                    mount_path: mount_path.clone(),
                };
                let planned = attach::plan(&rt.store, &[param])
                    .await
                    .map_err(|e| at(i, e))?;
                if let Some(one) = planned.first() {
                    check_mount(&mut mounts, i, attach::mount_of(&one.resource))?;
                }
                p.config()
            }
            DeploymentResourceParam::MemoryStore {
                memory_store_id,
                access,
                instructions,
            } => {
                let m = memory::attach_one(
                    &rt.store,
                    &memory_param(memory_store_id, *access, instructions),
                )
                .await
                .map_err(|e| at(i, e))?;
                if let Some(why) = memory::clash(&attached, &m) {
                    return Err(invalid(format!("resources[{i}]: {why}")));
                }
                // Stored by id: a name given here keeps naming this store if renamed.
                let config = DeploymentResource::MemoryStore {
                    memory_store_id: m.memory_store_id.clone(),
                    access: *access,
                    instructions: instructions.clone(),
                };
                attached.push(m);
                config
            }
        };
        out.push(config);
    }
    let tokens: Vec<Option<&str>> = params.iter().map(DeploymentResourceParam::token).collect();
    let sealed_tokens = if tokens.iter().any(Option::is_some) {
        let plain = serde_json::to_vec(&tokens)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
        let sealed = sealer(rt)?
            .seal(&owner(deployment_id), &plain)
            .map_err(|e| ErrorBody::new(ErrorCode::Storage, e))?;
        Some(base64::engine::general_purpose::STANDARD.encode(sealed))
    } else {
        None
    };
    Ok(Checked {
        resources: out,
        sealed_tokens,
    })
}

fn check_mount(mounts: &mut Vec<(usize, String)>, i: usize, path: &str) -> Result<(), ErrorBody> {
    if let Some((j, other)) = mounts.iter().find(|(_, m)| attach::mounts_clash(m, path)) {
        return Err(invalid(format!(
            "resources[{i}].mount_path: `{path}` clashes with resources[{j}] at `{other}` (the same path, or one inside the other); give one of them another mount_path"
        )));
    }
    mounts.push((i, path.to_string()));
    Ok(())
}

/// The tokens of `st`'s resources, one per resource (None where there is none).
pub fn open_tokens(
    rt: &Runtime,
    deployment_id: &str,
    st: &Stored,
) -> Result<Vec<Option<String>>, ErrorBody> {
    let Some(b64) = &st.sealed_tokens else {
        return Ok(vec![None; st.resources.len()]);
    };
    let broken = |why: String| {
        ErrorBody::new(
            ErrorCode::Storage,
            format!(
                "the repository tokens of deployment `{deployment_id}` can't be opened ({why}); send its resources again with their tokens (POST /v1/deployments/{deployment_id} with `resources`)"
            ),
        )
    };
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| broken(e.to_string()))?;
    let plain = sealer(rt)?
        .open_sealed(&owner(deployment_id), &sealed)
        .map_err(broken)?;
    let tokens: Vec<Option<String>> =
        serde_json::from_slice(&plain).map_err(|e| broken(e.to_string()))?;
    if tokens.len() != st.resources.len() {
        return Err(broken(format!(
            "{} tokens for {} resources",
            tokens.len(),
            st.resources.len()
        )));
    }
    Ok(tokens)
}

fn run_error(kind: &str, message: String) -> Value {
    json!({ "type": kind, "message": message })
}

/// Why `st`'s resources can't be mounted by a fire now, as a run error: a file deleted, a
/// memory store deleted or archived, tokens that don't open. None: all there.
pub async fn precheck(rt: &Runtime, deployment_id: &str, st: &Stored) -> Option<Value> {
    if let Err(e) = open_tokens(rt, deployment_id, st) {
        return Some(run_error("unknown_error", e.message));
    }
    let fix = format!(
        "replace the deployment's resources (POST /v1/deployments/{deployment_id} with `resources`)"
    );
    for (i, r) in st.resources.iter().enumerate() {
        match r {
            DeploymentResource::File { file_id, .. } => {
                match crate::resources::files::get(&rt.store, file_id).await {
                    Ok(_) => {}
                    Err(e) if e.code == ErrorCode::NotFound => {
                        return Some(run_error(
                            "file_not_found_error",
                            format!(
                                "resources[{i}]: file `{file_id}` no longer exists (deleted since the deployment was set up); upload it again and {fix}"
                            ),
                        ));
                    }
                    Err(e) => {
                        return Some(run_error(
                            "unknown_error",
                            format!("resources[{i}]: {}", e.message),
                        ));
                    }
                }
            }
            DeploymentResource::MemoryStore {
                memory_store_id, ..
            } => match memory::resolve(&rt.store, memory_store_id).await {
                Ok(s) if s.archived_at.is_some() => {
                    return Some(run_error(
                        "memory_store_archived_error",
                        format!(
                            "resources[{i}]: memory store `{memory_store_id}` is archived and can't be attached to new sessions; {fix}"
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::NotFound => {
                    return Some(run_error(
                        "session_resource_not_found_error",
                        format!(
                            "resources[{i}]: memory store `{memory_store_id}` no longer exists (deleted since the deployment was set up); {fix}"
                        ),
                    ));
                }
                Err(e) => {
                    return Some(run_error(
                        "unknown_error",
                        format!("resources[{i}]: {}", e.message),
                    ));
                }
            },
            // Checked by the clone itself: a repository that can't be cloned is an error
            // event in the session, as for any session.
            DeploymentResource::GithubRepository { .. } => {}
        }
    }
    None
}

/// A fire's session resources: files and repositories (with their tokens), and memory
/// stores.
pub fn session_params(
    st: &Stored,
    tokens: Vec<Option<String>>,
) -> (Vec<ResourceParam>, Vec<MemoryResourceParam>) {
    let (mut files, mut stores) = (Vec::new(), Vec::new());
    for (r, token) in st.resources.iter().zip(tokens) {
        match r {
            DeploymentResource::File {
                file_id,
                mount_path,
            } => files.push(file_param(file_id, mount_path)),
            DeploymentResource::GithubRepository {
                url,
                checkout,
                mount_path,
            } => files.push(ResourceParam::GithubRepository {
                url: url.clone(),
                authorization_token: token,
                checkout: checkout.clone(),
                mount_path: mount_path.clone(),
            }),
            DeploymentResource::MemoryStore {
                memory_store_id,
                access,
                instructions,
            } => stores.push(memory_param(memory_store_id, *access, instructions)),
        }
    }
    (files, stores)
}
