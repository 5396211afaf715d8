//! Deployments and their runs: the rows and their SQL, run on the writer's connection (inside
//! `Store::write`) or a reader's (`Store::read`). What the columns mean is the schedules
//! room's business (`orchestration::schedules`); this file only moves them.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::store::error::StoreError;

/// A stored deployment. `spec` is the JSON of what fires (agent pin, environment, initial
/// events, schedule, ...); status and paused reason are wire strings / JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRow {
    pub id: String,
    pub name: String,
    pub spec: Value,
    /// `active` or `paused`.
    pub status: String,
    pub paused_reason: Option<Value>,
    /// RFC 3339 UTC: no occurrence at or before it fires (the last one handled, or when the
    /// schedule was set or unpaused).
    pub schedule_cursor: Option<String>,
    pub last_run_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
}

/// A stored run. While `pending`, `session_id` is the id reserved for the session the run is
/// creating; once done exactly one of `session_id` and `error` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub deployment_id: String,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// RFC 3339 UTC, seconds precision (the unique key with the deployment); None if manual.
    pub scheduled_at: Option<String>,
    pub agent_id: String,
    pub agent_version: u32,
    pub session_id: Option<String>,
    /// A workflow deployment's run: the workflow run's id, reserved like the session's.
    pub workflow_run_id: Option<String>,
    /// `{type, message}`.
    pub error: Option<Value>,
    pub pending: bool,
    pub created_at: String,
}

fn w(e: rusqlite::Error) -> StoreError {
    StoreError::Write(e.to_string())
}

fn json(v: &Value) -> String {
    v.to_string()
}

fn parse_json(s: Option<String>) -> Option<Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

const DEPLOYMENT_COLS: &str = "id, name, spec, status, paused_reason, schedule_cursor, last_run_at, created_at, updated_at, archived_at";

fn row_to_deployment(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeploymentRow> {
    Ok(DeploymentRow {
        id: r.get(0)?,
        name: r.get(1)?,
        spec: parse_json(r.get(2)?).unwrap_or(Value::Null),
        status: r.get(3)?,
        paused_reason: parse_json(r.get(4)?),
        schedule_cursor: r.get(5)?,
        last_run_at: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        archived_at: r.get(9)?,
    })
}

pub fn insert_deployment(c: &Connection, d: &DeploymentRow) -> Result<(), StoreError> {
    c.execute(
        &format!("INSERT INTO deployments ({DEPLOYMENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            d.id,
            d.name,
            json(&d.spec),
            d.status,
            d.paused_reason.as_ref().map(json),
            d.schedule_cursor,
            d.last_run_at,
            d.created_at,
            d.updated_at,
            d.archived_at
        ],
    )
    .map_err(w)?;
    Ok(())
}

/// Writes every column but the id and `created_at`.
pub fn update_deployment(c: &Connection, d: &DeploymentRow) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE deployments SET name = ?2, spec = ?3, status = ?4, paused_reason = ?5, schedule_cursor = ?6, last_run_at = ?7, updated_at = ?8, archived_at = ?9 WHERE id = ?1",
            params![
                d.id,
                d.name,
                json(&d.spec),
                d.status,
                d.paused_reason.as_ref().map(json),
                d.schedule_cursor,
                d.last_run_at,
                d.updated_at,
                d.archived_at
            ],
        )
        .map_err(w)?;
    if n == 0 {
        return Err(StoreError::Missing(format!("no deployment `{}`", d.id)));
    }
    Ok(())
}

pub fn get_deployment(c: &Connection, id: &str) -> Result<Option<DeploymentRow>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE id = ?1"
    ))?
    .query_row([id], row_to_deployment)
    .optional()?)
}

/// Every deployment in creation order.
pub fn list_deployments(c: &Connection) -> Result<Vec<DeploymentRow>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {DEPLOYMENT_COLS} FROM deployments ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([], row_to_deployment)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What the scheduler keeps of a live (active, not archived) scheduled deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub id: String,
    /// The spec's `schedule` as JSON.
    pub schedule: String,
    pub schedule_cursor: Option<String>,
    pub created_at: String,
}

/// Every live scheduled deployment, reading only its schedule out of the spec: the
/// scheduler loads them all at each change, and whole rows would be parsed for nothing.
pub fn list_schedules(c: &Connection) -> Result<Vec<ScheduleRow>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT id, json_extract(spec, '$.schedule'), schedule_cursor, created_at FROM deployments
         WHERE archived_at IS NULL AND status = 'active'
           AND json_type(spec, '$.schedule') = 'object'
         ORDER BY created_at, id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(ScheduleRow {
            id: r.get(0)?,
            schedule: r.get(1)?,
            schedule_cursor: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An exact id, else the name of one deployment (live ones first), else an id prefix that
/// only one deployment has: every id that matches at the first rule that matches at all.
pub fn resolve_deployment(c: &Connection, reference: &str) -> Result<Vec<String>, StoreError> {
    let ids = |sql: &str, arg: &str| -> Result<Vec<String>, StoreError> {
        let mut st = c.prepare_cached(sql)?;
        let rows = st.query_map([arg], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    for sql in [
        "SELECT id FROM deployments WHERE id = ?1",
        "SELECT id FROM deployments WHERE name = ?1 AND archived_at IS NULL",
        "SELECT id FROM deployments WHERE name = ?1",
    ] {
        let found = ids(sql, reference)?;
        if !found.is_empty() {
            return Ok(found);
        }
    }
    if reference.starts_with("depl_") {
        return ids(
            "SELECT id FROM deployments WHERE substr(id, 1, length(?1)) = ?1",
            reference,
        );
    }
    Ok(Vec::new())
}

const RUN_COLS: &str = "id, deployment_id, trigger, scheduled_at, agent_id, agent_version, session_id, error, pending, created_at, workflow_run_id";

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        deployment_id: r.get(1)?,
        trigger: r.get(2)?,
        scheduled_at: r.get(3)?,
        agent_id: r.get(4)?,
        agent_version: r.get(5)?,
        session_id: r.get(6)?,
        error: parse_json(r.get(7)?),
        pending: r.get(8)?,
        created_at: r.get(9)?,
        workflow_run_id: r.get(10)?,
    })
}

/// Records a run; false (and nothing written) if this deployment already has a run for
/// this `scheduled_at`.
pub fn insert_run(c: &Connection, run: &RunRow) -> Result<bool, StoreError> {
    let r = c.execute(
        &format!("INSERT INTO deployment_runs ({RUN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            run.id,
            run.deployment_id,
            run.trigger,
            run.scheduled_at,
            run.agent_id,
            run.agent_version,
            run.session_id,
            run.error.as_ref().map(json),
            run.pending,
            run.created_at,
            run.workflow_run_id
        ],
    );
    match r {
        Ok(_) => Ok(true),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Ok(false)
        }
        Err(e) => Err(w(e)),
    }
}

/// Ends a pending run with its session (and workflow run) or its error (the reserved ids
/// are dropped when there is an error).
pub fn finish_run(
    c: &Connection,
    run_id: &str,
    session_id: Option<&str>,
    workflow_run_id: Option<&str>,
    error: Option<&Value>,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE deployment_runs SET session_id = ?2, workflow_run_id = ?3, error = ?4, pending = 0 WHERE id = ?1",
        params![run_id, session_id, workflow_run_id, error.map(json)],
    )
    .map_err(w)?;
    Ok(())
}

pub fn get_run(c: &Connection, id: &str) -> Result<Option<RunRow>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {RUN_COLS} FROM deployment_runs WHERE id = ?1"
    ))?
    .query_row([id], row_to_run)
    .optional()?)
}

/// Runs in creation order, of one deployment or all.
pub fn list_runs(c: &Connection, deployment_id: Option<&str>) -> Result<Vec<RunRow>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {RUN_COLS} FROM deployment_runs WHERE (?1 IS NULL OR deployment_id = ?1) ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([deployment_id], row_to_run)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Runs a crash left half done: recorded, session maybe not created.
pub fn pending_runs(c: &Connection) -> Result<Vec<RunRow>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {RUN_COLS} FROM deployment_runs WHERE pending = 1 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([], row_to_run)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
