//! Environments as resources: create, list, get, update, archive, delete, rebuild. The layer
//! each one builds lives in [`crate::resources::envbuild`]; here is what is stored and checked.

use crate::store::webhooks::enqueue_resource;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tether_proto::agent::Agent;
use tether_proto::environment::{
    BuildProgress, BuildStatus, DEFAULT_ENVIRONMENT, Environment, EnvironmentChanges,
    EnvironmentSpec, Networking,
};
use tether_proto::method::{EnvironmentParams, UpdateEnvironment};
use tether_proto::{ErrorBody, ErrorCode};

use crate::ids;
use crate::resources::Names;
use crate::resources::envbuild::Builds;
use crate::resources::networking::net_policy;
use crate::store::Store;
use crate::store::error::StoreError;

fn invalid(msg: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

/// Checks what serde can't: lengths, package strings, hosts.
pub fn validate(spec: &EnvironmentSpec) -> Result<(), ErrorBody> {
    let n = spec.name.chars().count();
    if n == 0 || n > 256 {
        return Err(invalid("name: expected 1 to 256 characters".into()));
    }
    if spec
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2048)
    {
        return Err(invalid(
            "description: expected at most 2048 characters".into(),
        ));
    }
    if spec.metadata.len() > 16 {
        return Err(invalid("metadata: expected at most 16 pairs".into()));
    }
    for (manager, packages) in spec.config.packages().by_manager() {
        for (i, p) in packages.iter().enumerate() {
            let field = format!("config.packages.{manager}[{i}]");
            if p.is_empty() || p.chars().any(char::is_whitespace) {
                return Err(invalid(format!(
                    "{field}: `{p}` must be one package, pinned in {manager}'s own syntax, without spaces"
                )));
            }
            if p.starts_with('-') {
                return Err(invalid(format!(
                    "{field}: `{p}` looks like an option; list packages only"
                )));
            }
        }
    }
    for (i, c) in spec.config.setup_commands().iter().enumerate() {
        if c.trim().is_empty() {
            return Err(invalid(format!(
                "config.setup_commands[{i}]: empty command"
            )));
        }
    }
    if let Networking::Limited { allowed_hosts, .. } = spec.config.networking() {
        for (i, h) in allowed_hosts.iter().enumerate() {
            if h.is_empty() || h.contains('/') || h.chars().any(char::is_whitespace) {
                return Err(invalid(format!(
                    "config.networking.allowed_hosts[{i}]: `{h}` should be a host name like `pypi.org` (no scheme, no path)"
                )));
            }
        }
    }
    Ok(())
}

/// Stores a new environment and starts building its layer in the background
/// (`environment.watch` follows it; a session of it waits for it).
pub async fn create(
    store: &Store,
    builds: &Arc<Builds>,
    spec: EnvironmentSpec,
) -> Result<Environment, ErrorBody> {
    create_with(store, builds, spec, Names::Unique).await
}

/// [`create`], saying whether the name may already be in use.
pub async fn create_with(
    store: &Store,
    builds: &Arc<Builds>,
    spec: EnvironmentSpec,
    names: Names,
) -> Result<Environment, ErrorBody> {
    validate(&spec)?;
    let env = store
        .write(move |c| {
            let env = insert_with(c, spec, names)?;
            enqueue_resource(c, "environment.created", &env.id)?;
            Ok(env)
        })
        .await?;
    store.webhook_wake().notify_one();
    builds.start(&env.id, &env.spec.config, false);
    Ok(with_build(builds, env))
}

/// Creates the built-in `default` environment (unrestricted, nothing to build) unless one
/// of that name exists, and unarchives it if an older tetherd let it be archived (sessions
/// without `--env` run in it, so `tether run` needs it live).
pub async fn ensure_default(store: &Store) -> Result<(), StoreError> {
    store
        .write(|c| {
            match find_id_by_name(c, DEFAULT_ENVIRONMENT, true)? {
                None => {
                    insert_new(
                        c,
                        EnvironmentSpec {
                            name: DEFAULT_ENVIRONMENT.into(),
                            description: Some(
                                "tether's built-in environment: unrestricted network, no packages"
                                    .into(),
                            ),
                            ..Default::default()
                        },
                    )?;
                }
                Some(id) => {
                    c.execute(
                        "UPDATE environments SET archived_at = NULL WHERE id = ?1",
                        [&id],
                    )
                    .map_err(|e| StoreError::Write(e.to_string()))?;
                }
            }
            Ok(())
        })
        .await
}

/// Refuses to archive, delete or rename the built-in environment: every session started
/// without an environment (`tether run`, `tether new`) runs in it, found by name.
fn check_not_builtin(env: &Environment, doing: &str) -> Result<(), StoreError> {
    if env.spec.name == DEFAULT_ENVIRONMENT {
        return Err(StoreError::Conflict(format!(
            "the built-in `{DEFAULT_ENVIRONMENT}` environment can't be {doing}: sessions started without an environment (`tether run`) use it; create your own environment and pass `--env NAME` instead"
        )));
    }
    Ok(())
}

/// Whether an environment has exactly this id. HTTP paths take ids only: names are a
/// convenience of the CLI and the socket protocol.
pub async fn require_id(store: &Store, id: &str) -> Result<(), ErrorBody> {
    let missing = format!("no environment with id `{id}`; GET /v1/environments lists them");
    Ok(store.require_exact_id("environments", id, missing).await?)
}

fn with_build(builds: &Builds, mut env: Environment) -> Environment {
    env.build = Some(builds.info(&env.spec.config));
    env
}

pub async fn list(
    store: &Store,
    builds: &Builds,
    all: bool,
) -> Result<Vec<Environment>, ErrorBody> {
    let rows = store
        .read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLS} FROM environments WHERE (?1 OR archived_at IS NULL) ORDER BY created_at, id"
            ))?;
            let rows = st.query_map([all], row_to_env)?;
            rows.map(|r| r.map_err(StoreError::from)?)
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(rows.into_iter().map(|e| with_build(builds, e)).collect())
}

pub async fn get(
    store: &Store,
    builds: &Builds,
    reference: &str,
) -> Result<Environment, ErrorBody> {
    let r = reference.to_string();
    let env = store.read(move |c| load(c, &resolve(c, &r)?)).await?;
    Ok(with_build(builds, env))
}

/// Applies `changes`; a changed config builds its layer (sessions created afterwards use it,
/// running ones keep theirs).
pub async fn update(
    store: &Store,
    builds: &Arc<Builds>,
    p: UpdateEnvironment,
) -> Result<Environment, ErrorBody> {
    update_with(store, builds, p, Names::Unique).await
}

/// [`update`], saying whether a new name may already be in use.
pub async fn update_with(
    store: &Store,
    builds: &Arc<Builds>,
    p: UpdateEnvironment,
    names: Names,
) -> Result<Environment, ErrorBody> {
    let current = get(store, builds, &p.environment).await?;
    validate(&apply(current.spec.clone(), p.changes.clone()))?;
    let (reference, changes) = (p.environment, p.changes);
    let env = store
        .write(move |c| {
            let id = resolve(c, &reference)?;
            let env = load(c, &id)?;
            if env.archived_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "environment `{}` is archived and can't be changed",
                    env.spec.name
                )));
            }
            let spec = apply(env.spec.clone(), changes);
            if spec.name != env.spec.name {
                check_not_builtin(&env, "renamed")?;
            }
            if let Some(other) = find_id_by_name(c, &spec.name, false)?
                && other != id
                && (names == Names::Unique || spec.name == DEFAULT_ENVIRONMENT)
            {
                return Err(name_taken(&spec.name));
            }
            let json = encode(&spec)?;
            c.execute(
                "UPDATE environments SET name = ?2, spec = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, spec.name, json, ids::now_rfc3339()],
            )
            .map_err(|e| StoreError::Write(e.to_string()))?;
            enqueue_resource(c, "environment.updated", &id)?;
            load(c, &id)
        })
        .await?;
    store.webhook_wake().notify_one();
    builds.start(&env.id, &env.spec.config, false);
    Ok(with_build(builds, env))
}

fn apply(mut spec: EnvironmentSpec, ch: EnvironmentChanges) -> EnvironmentSpec {
    if let Some(v) = ch.name {
        spec.name = v;
    }
    if let Some(v) = ch.description {
        spec.description = Some(v);
    }
    if let Some(v) = ch.config {
        spec.config = v;
    }
    if let Some(v) = ch.metadata {
        spec.metadata = v;
    }
    spec
}

pub async fn archive(
    store: &Store,
    builds: &Builds,
    reference: &str,
) -> Result<Environment, ErrorBody> {
    let r = reference.to_string();
    let env = store
        .write(move |c| {
            let id = resolve(c, &r)?;
            check_not_builtin(&load(c, &id)?, "archived")?;
            let changed = c
                .execute(
                    "UPDATE environments SET archived_at = ?2 WHERE id = ?1 AND archived_at IS NULL",
                    params![id, ids::now_rfc3339()],
                )
                .map_err(|e| StoreError::Write(e.to_string()))?;
            if changed > 0 {
                enqueue_resource(c, "environment.archived", &id)?;
            }
            load(c, &id)
        })
        .await?;
    store.webhook_wake().notify_one();
    Ok(with_build(builds, env))
}

/// `{id, type: "environment_deleted"}`. Sessions created in it keep running on their layer.
/// Deletes an environment; its id.
pub async fn delete(store: &Store, reference: &str) -> Result<String, ErrorBody> {
    let r = reference.to_string();
    let id = store
        .write(move |c| {
            let id = resolve(c, &r)?;
            check_not_builtin(&load(c, &id)?, "deleted")?;
            c.execute("DELETE FROM environments WHERE id = ?1", [&id])
                .map_err(|e| StoreError::Write(e.to_string()))?;
            enqueue_resource(c, "environment.deleted", &id)?;
            Ok(id)
        })
        .await?;
    store.webhook_wake().notify_one();
    Ok(id)
}

/// Builds the layer again from scratch, replacing the cached one when it succeeds.
pub async fn rebuild(
    store: &Store,
    builds: &Arc<Builds>,
    p: &EnvironmentParams,
) -> Result<Environment, ErrorBody> {
    let env = get(store, builds, &p.environment).await?;
    if !env.spec.config.needs_layer() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidParams,
            format!(
                "environment `{}` has no packages and no setup_commands: there is nothing to build",
                env.spec.name
            ),
        ));
    }
    builds.start(&env.id, &env.spec.config, true);
    Ok(with_build(builds, env))
}

/// A feed of build progress: the latest, then the following ones until the build ends.
pub type BuildFeed = (
    BuildProgress,
    tokio::sync::broadcast::Receiver<BuildProgress>,
);

/// The environment and, when its layer is building, a feed of the build (the last item has
/// status `ready` or `failed`). A layer never built (e.g. created by an earlier daemon) starts
/// building now; a failed one waits for [`rebuild`].
pub async fn watch(
    store: &Store,
    builds: &Arc<Builds>,
    reference: &str,
) -> Result<(Environment, Option<BuildFeed>), ErrorBody> {
    let env = get(store, builds, reference).await?;
    if env.build.as_ref().map(|b| b.status) == Some(BuildStatus::Pending) {
        builds.start(&env.id, &env.spec.config, false);
    }
    let feed = builds.watch(&env.spec.config);
    Ok((with_build(builds, env), feed))
}

/// The environment a new session runs in: a name or an id; default `default`.
pub async fn for_session(store: &Store, reference: Option<&str>) -> Result<Environment, ErrorBody> {
    let r = reference.unwrap_or(DEFAULT_ENVIRONMENT).to_string();
    let env = store.read(move |c| load(c, &resolve(c, &r)?)).await?;
    if env.archived_at.is_some() {
        return Err(ErrorBody::new(
            ErrorCode::Conflict,
            format!(
                "environment `{}` is archived; new sessions can't use it (see `tether envs ls`)",
                env.spec.name
            ),
        ));
    }
    Ok(env)
}

const COLS: &str = "id, spec, created_at, updated_at, archived_at";

fn row_to_env(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Environment, StoreError>> {
    let id: String = r.get(0)?;
    let spec: String = r.get(1)?;
    let (created_at, updated_at, archived_at) = (r.get(2)?, r.get(3)?, r.get(4)?);
    Ok(serde_json::from_str::<EnvironmentSpec>(&spec)
        .map(|spec| Environment {
            id: id.clone(),
            object_type: "environment".into(),
            spec,
            created_at,
            updated_at,
            archived_at,
            build: None,
        })
        .map_err(|e| StoreError::Read(format!("environment {id} is unreadable: {e}"))))
}

fn load(c: &Connection, id: &str) -> Result<Environment, StoreError> {
    c.prepare_cached(&format!("SELECT {COLS} FROM environments WHERE id = ?1"))?
        .query_row([id], row_to_env)
        .optional()?
        .unwrap_or_else(|| Err(StoreError::Missing(format!("no environment `{id}`"))))
}

/// An id, else a name, preferring environments that are not archived.
fn resolve(c: &Connection, reference: &str) -> Result<String, StoreError> {
    crate::store::queries::resolve_id_or_name(
        c,
        reference,
        "SELECT id FROM environments WHERE id = ?1",
        find_id_by_name,
        || format!("no environment `{reference}`; `tether envs ls` lists them"),
    )
}

fn find_id_by_name(
    c: &Connection,
    name: &str,
    archived_too: bool,
) -> Result<Option<String>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT id FROM environments WHERE name = ?1 AND (?2 OR archived_at IS NULL) \
         ORDER BY archived_at IS NOT NULL, created_at DESC, id DESC LIMIT 1",
    )?
    .query_row(params![name, archived_too], |r| r.get(0))
    .optional()?)
}

fn name_taken(name: &str) -> StoreError {
    StoreError::Conflict(format!(
        "an environment named `{name}` already exists; remove it (`tether envs rm {name}`) or pick another name"
    ))
}

fn encode(spec: &EnvironmentSpec) -> Result<String, StoreError> {
    serde_json::to_string(spec)
        .map_err(|e| StoreError::Write(format!("cannot encode environment: {e}")))
}

fn insert_new(c: &Connection, spec: EnvironmentSpec) -> Result<Environment, StoreError> {
    insert_with(c, spec, Names::Unique)
}

fn insert_with(
    c: &Connection,
    spec: EnvironmentSpec,
    names: Names,
) -> Result<Environment, StoreError> {
    if (names == Names::Unique || spec.name == DEFAULT_ENVIRONMENT)
        && find_id_by_name(c, &spec.name, false)?.is_some()
    {
        return Err(name_taken(&spec.name));
    }
    let id = ids::environment_id();
    let now = ids::now_rfc3339();
    c.execute(
        "INSERT INTO environments (id, name, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![id, spec.name, encode(&spec)?, now],
    )
    .map_err(|e| StoreError::Write(e.to_string()))?;
    load(c, &id)
}

/// The policy of a stored session: the networking it was created with (pinned in its row, so
/// a changed environment or a restart never changes a running session's policy); for
/// sessions older than that, their environment's current config. No network when there is
/// neither or it can't be read (fail closed, with a warning).
pub async fn session_net_policy(
    store: &Store,
    row: &crate::store::rows::SessionRow,
    agent: Option<&Agent>,
) -> crate::net::NetPolicy {
    let networking = match (&row.networking, &row.environment) {
        (Some(n), _) => Ok(n.clone()),
        (None, None) => return crate::net::NetPolicy::None,
        (None, Some(id)) => {
            let r = id.clone();
            store
                .read(move |c| load(c, &resolve(c, &r)?))
                .await
                .map(|e| e.spec.config.networking().clone())
                .map_err(ErrorBody::from)
        }
    };
    match networking.and_then(|n| net_policy(&n, agent)) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(session = %row.id, error = %e.message, "no network for this session: its networking can't be read");
            crate::net::NetPolicy::None
        }
    }
}

/// Whether a stored session's environment opts out of the sandbox; sandboxed when it can't
/// be read (fail closed).
pub async fn session_sandbox(
    store: &Store,
    environment: Option<&str>,
) -> tether_proto::environment::SandboxMode {
    let Some(id) = environment else {
        return Default::default();
    };
    let r = id.to_string();
    store
        .read(move |c| load(c, &resolve(c, &r)?))
        .await
        .map(|e| e.spec.config.sandbox())
        .unwrap_or_default()
}

/// The id of a stored session's environment when it is self-hosted (its worker tools run on
/// that environment's workers); None otherwise or when it can't be read.
pub async fn session_work_env(store: &Store, environment: Option<&str>) -> Option<String> {
    let r = environment?.to_string();
    store
        .read(move |c| load(c, &resolve(c, &r)?))
        .await
        .ok()
        .filter(|e| e.spec.config.is_self_hosted())
        .map(|e| e.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spec(v: Value) -> EnvironmentSpec {
        serde_json::from_value(v).unwrap()
    }

    async fn setup() -> (tempfile::TempDir, Store, Arc<Builds>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).unwrap();
        let b = Arc::new(Builds::new(
            dir.path().join("envs"),
            crate::sandbox::Sandbox::None,
            "/nonexistent".into(),
        ));
        (dir, s, b)
    }

    #[tokio::test]
    async fn create_get_list_update_delete() {
        let (_d, s, b) = setup().await;
        let e = create(&s, &b, spec(json!({"name": "py", "description": "d"})))
            .await
            .unwrap();
        assert!(e.id.starts_with("env_"), "{}", e.id);
        assert_eq!(e.object_type, "environment");
        assert_eq!(e.build.as_ref().unwrap().status, BuildStatus::Empty);
        assert_eq!(get(&s, &b, "py").await.unwrap().id, e.id);
        assert_eq!(get(&s, &b, &e.id).await.unwrap().spec.name, "py");
        let u = update(
            &s,
            &b,
            UpdateEnvironment {
                environment: "py".into(),
                changes: serde_json::from_value(json!({"description": "new"})).unwrap(),
            },
        )
        .await
        .unwrap();
        assert_eq!(u.spec.description.as_deref(), Some("new"));
        assert_eq!(list(&s, &b, false).await.unwrap().len(), 1);
        // The wire answer names what was deleted.
        let gone = tether_proto::method::EnvironmentDeleted::new(delete(&s, "py").await.unwrap());
        assert_eq!(
            serde_json::to_value(gone).unwrap(),
            json!({"id": e.id, "type": "environment_deleted"})
        );
        assert_eq!(
            get(&s, &b, "py").await.unwrap_err().code,
            ErrorCode::NotFound
        );
    }

    #[tokio::test]
    async fn names_are_unique_until_archived() {
        let (_d, s, b) = setup().await;
        create(&s, &b, spec(json!({"name": "py"}))).await.unwrap();
        let e = create(&s, &b, spec(json!({"name": "py"})))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains("already exists"), "{}", e.message);
        archive(&s, &b, "py").await.unwrap();
        assert!(for_session(&s, Some("py")).await.is_err());
        create(&s, &b, spec(json!({"name": "py"}))).await.unwrap();
        assert_eq!(list(&s, &b, true).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn the_default_environment_exists_once_and_stays() {
        let (_d, s, b) = setup().await;
        ensure_default(&s).await.unwrap();
        ensure_default(&s).await.unwrap();
        let d = for_session(&s, None).await.unwrap();
        assert_eq!(d.spec.name, DEFAULT_ENVIRONMENT);
        assert_eq!(d.spec.config.networking(), &Networking::Unrestricted);
        assert!(!d.spec.config.needs_layer());
        assert_eq!(list(&s, &b, true).await.unwrap().len(), 1);
        let e = delete(&s, "default").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        let e = archive(&s, &b, "default").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains("tether run"), "{}", e.message);
        let rename = UpdateEnvironment {
            environment: "default".into(),
            changes: serde_json::from_value(json!({"name": "mine"})).unwrap(),
        };
        let e = update(&s, &b, rename).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        // An older tetherd let it be archived: the next start brings it back.
        s.write(|c| {
            c.execute(
                "UPDATE environments SET archived_at = '2026-01-01T00:00:00Z'",
                [],
            )
            .map_err(|e| StoreError::Write(e.to_string()))
        })
        .await
        .unwrap();
        assert!(for_session(&s, None).await.is_err());
        ensure_default(&s).await.unwrap();
        assert!(for_session(&s, None).await.is_ok());
    }

    #[tokio::test]
    async fn bad_specs_name_the_field() {
        let (_d, s, b) = setup().await;
        for (body, field) in [
            (json!({"name": ""}), "name:"),
            (
                json!({"name": "x", "config": {"type": "cloud", "packages": {"pip": ["six", "a b"]}}}),
                "config.packages.pip[1]:",
            ),
            (
                json!({"name": "x", "config": {"type": "cloud", "packages": {"npm": ["--global"]}}}),
                "config.packages.npm[0]:",
            ),
            (
                json!({"name": "x", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["https://x.org"]}}}),
                "config.networking.allowed_hosts[0]:",
            ),
        ] {
            let e = create(&s, &b, spec(body)).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParams);
            assert!(e.message.starts_with(field), "{field}: {}", e.message);
        }
    }

    /// A session's networking is what it was created with, not its environment's current one;
    /// sessions older than that follow their environment; without either there is no network.
    #[tokio::test]
    async fn sessions_keep_the_networking_they_were_created_with() {
        use crate::net::NetPolicy;
        let (_d, s, b) = setup().await;
        let e = create(&s, &b, spec(json!({"name": "n"}))).await.unwrap();
        let mut row =
            crate::store::rows::SessionRow::new("sesn_1".into(), "m".into(), "/w".into(), 1);
        assert_eq!(session_net_policy(&s, &row, None).await, NetPolicy::None);
        row.environment = Some(e.id.clone());
        assert_eq!(
            session_net_policy(&s, &row, None).await,
            NetPolicy::Unrestricted,
            "an older session follows its environment"
        );
        row.networking = Some(Networking::None);
        assert_eq!(
            session_net_policy(&s, &row, None).await,
            NetPolicy::None,
            "the pinned networking wins over the environment's current one"
        );
    }

    #[tokio::test]
    async fn a_missing_package_manager_fails_the_build_and_leaves_no_layer() {
        let (d, s, b) = setup().await;
        let e = create(
            &s,
            &b,
            spec(json!({"name": "py", "config": {"type": "cloud", "packages": {"pip": ["six==1.16.0"]}}})),
        )
        .await
        .unwrap();
        let err = b.ensure(&e.id, "py", &e.spec.config).await.unwrap_err();
        assert!(err.contains("pip is not installed on this host"), "{err}");
        assert!(err.contains("tether envs rebuild py"), "{err}");
        let info = get(&s, &b, "py").await.unwrap().build.unwrap();
        assert_eq!(info.status, BuildStatus::Failed);
        let left: Vec<_> = std::fs::read_dir(d.path().join("envs"))
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn watch_starts_a_pending_build_and_its_feed_ends_with_the_outcome() {
        let (_d, s, b) = setup().await;
        // Stored directly: `create` would start the build itself.
        let body =
            spec(json!({"name": "w", "config": {"type": "cloud", "setup_commands": ["exit 3"]}}));
        s.write(move |c| insert_new(c, body)).await.unwrap();
        let before = get(&s, &b, "w").await.unwrap().build.unwrap();
        assert_eq!(before.status, BuildStatus::Pending);
        let (env, feed) = watch(&s, &b, "w").await.unwrap();
        assert_eq!(env.build.unwrap().status, BuildStatus::Building);
        let (first, mut rx) = feed.expect("a build to follow");
        assert_eq!(first.status, BuildStatus::Building);
        let last = loop {
            let p = rx.recv().await.unwrap();
            if p.status != BuildStatus::Building {
                break p;
            }
        };
        assert_eq!(last.status, BuildStatus::Failed);
        assert!(last.error.unwrap().contains("step 1/1"));
        // A failed build is not restarted by watching it.
        let (env, feed) = watch(&s, &b, "w").await.unwrap();
        assert!(feed.is_none());
        assert_eq!(env.build.unwrap().status, BuildStatus::Failed);
    }

    #[tokio::test]
    async fn a_failing_step_is_named_with_its_output_and_leaves_only_the_log() {
        let (d, s, b) = setup().await;
        let e = create(
            &s,
            &b,
            spec(json!({"name": "t", "config": {"type": "cloud", "setup_commands": ["echo some-output; exit 7"]}})),
        )
        .await
        .unwrap();
        let err = b.ensure(&e.id, "t", &e.spec.config).await.unwrap_err();
        // Unsandboxed here, so `cd` into the layer mount may fail first; either way the step
        // and its exit code are named.
        assert!(
            err.contains("step 1/1 `setup: echo some-output; exit 7` failed (exit code"),
            "{err}"
        );
        assert!(err.contains("tether envs rebuild t"), "{err}");
        let names: Vec<_> = std::fs::read_dir(d.path().join("envs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(".log"), "{names:?}");
    }
}
