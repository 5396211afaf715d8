//! Deployments as stored things: create, update, get, list, pause, unpause, archive, and
//! their wire shape (with the next fires). Every change wakes the scheduler.

use crate::store::webhooks::enqueue_resource;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_proto::deployment::{
    AgentChoice, Deployment, DeploymentChanges, DeploymentResource, DeploymentSpec,
    DeploymentStatus, PausedReason, PinnedAgent, Schedule, ScheduleSpec,
};
use tether_proto::method::AgentParams;
use tether_proto::workflow::WorkflowSpec;
use tether_proto::{ErrorBody, ErrorCode, EventBody};

use super::timing::{self, Timing};
use crate::ids;
use crate::runtime::Runtime;
use crate::store::deployments::{self as sql, DeploymentRow};
use crate::store::error::StoreError;

/// What a deployment fires, as kept in its row's `spec` column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub description: Option<String>,
    pub agent: PinnedAgent,
    pub environment_id: String,
    /// Empty when the deployment fires `workflow`.
    pub initial_events: Vec<Value>,
    /// tether: each fire runs this in a fresh session instead of sending initial events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowSpec>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub budget: Option<Value>,
    pub schedule: Option<ScheduleSpec>,
    /// Vaults (ids) the sessions it fires use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vault_ids: Vec<String>,
    /// Mounted into the sessions it fires (as answered: no token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<DeploymentResource>,
    /// The repositories' tokens, sealed ([`super::resources`]); None: no token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_tokens: Option<String>,
}

impl Stored {
    pub fn of(row: &DeploymentRow) -> Result<Stored, ErrorBody> {
        serde_json::from_value(row.spec.clone()).map_err(|e| {
            ErrorBody::new(
                ErrorCode::Storage,
                format!("deployment `{}` has an unreadable spec: {e}", row.id),
            )
        })
    }

    /// The schedule, parsed (None: manual only, or a schedule this build can't read).
    pub fn timing(&self) -> Option<Timing> {
        self.schedule.as_ref().and_then(|s| Timing::parse(s).ok())
    }
}

/// An RFC 3339 UTC instant as stored and answered (seconds; cron has no finer grain).
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn invalid(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

/// The first error as the wire's, the others as storage errors.
fn store_err(e: StoreError) -> ErrorBody {
    e.into()
}

/// The agent version a deployment pins: a string pins the newest version.
async fn pin_agent(rt: &Runtime, choice: &AgentChoice) -> Result<PinnedAgent, ErrorBody> {
    let (agent, version) = match choice {
        AgentChoice::Latest(id) => (id.clone(), None),
        AgentChoice::Pinned { kind, id, version } => {
            if kind != "agent" {
                return Err(invalid(format!(
                    "agent.type: expected `agent`, got `{kind}`"
                )));
            }
            (id.clone(), *version)
        }
    };
    let a = crate::resources::agents::get(&rt.store, &AgentParams { agent, version }).await?;
    if a.archived_at.is_some() {
        return Err(ErrorBody::new(
            ErrorCode::Conflict,
            format!(
                "agent `{}` is archived; a deployment can't use it (see `tether agents ls`)",
                a.id
            ),
        ));
    }
    Ok(PinnedAgent::new(a.id, a.version))
}

async fn check_environment(rt: &Runtime, reference: &str) -> Result<String, ErrorBody> {
    Ok(
        crate::resources::environments::for_session(&rt.store, Some(reference))
            .await?
            .id,
    )
}

/// 1-50 `user.message` / `user.define_outcome` events, at most one outcome.
fn check_initial_events(rt: &Runtime, events: &[Value]) -> Result<(), ErrorBody> {
    if events.is_empty() || events.len() > 50 {
        return Err(invalid(format!(
            "initial_events: {} events; a deployment needs 1 to 50 (what each session it starts is sent first)",
            events.len()
        )));
    }
    let mut outcomes = 0;
    for (i, v) in events.iter().enumerate() {
        match initial_event(v) {
            Ok(EventBody::UserMessage { content }) if content.is_empty() => {
                return Err(invalid(format!(
                    "initial_events[{i}]: a user.message needs content"
                )));
            }
            Ok(EventBody::UserMessage { .. }) => {}
            Ok(EventBody::UserDefineOutcome(mut spec)) => {
                outcomes += 1;
                crate::session::ops::check_outcome(rt, &mut spec)?;
            }
            Ok(_) => unreachable_event(i)?,
            Err(e) => return Err(invalid(format!("initial_events[{i}]: {e}"))),
        }
    }
    if outcomes > 1 {
        return Err(invalid(format!(
            "initial_events: {outcomes} user.define_outcome events; a session works on one outcome at a time, so send at most one"
        )));
    }
    Ok(())
}

/// What a deployment fires: its initial events, or (tether) a workflow, never both. The
/// workflow is checked as `tether workflows run` checks a file, with the same errors.
fn check_fires(
    rt: &Runtime,
    events: &[Value],
    workflow: Option<&WorkflowSpec>,
) -> Result<(), ErrorBody> {
    match workflow {
        Some(_) if !events.is_empty() => Err(invalid(
            "initial_events and workflow: a deployment fires either a session's initial events or a workflow run, not both; drop one of them",
        )),
        Some(w) => w
            .validate()
            .map_err(|e| invalid(format!("workflow: the workflow is not valid: {e}"))),
        None => check_initial_events(rt, events),
    }
}

fn unreachable_event(i: usize) -> Result<(), ErrorBody> {
    Err(invalid(format!(
        "initial_events[{i}]: expected a user.message or a user.define_outcome"
    )))
}

/// Parses one initial event; only the two kinds a session takes at creation.
pub fn initial_event(v: &Value) -> Result<EventBody, String> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "user.message" && kind != "user.define_outcome" {
        return Err(format!(
            "`{kind}` can't start a session here; use `user.message` or one `user.define_outcome` (this tetherd has no `system.message`)"
        ));
    }
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        // Client-set ids are not taken: the daemon names each outcome when it fires.
        if let Some(Value::Object(_)) = m.get("rubric") {
            m.remove("outcome_id");
        }
    }
    serde_json::from_value::<EventBody>(v).map_err(|e| e.to_string())
}

/// `{type: "limit", max_list_cost: {amount, currency: "USD"}}` in dollars.
pub fn budget_dollars(v: &Value) -> Result<f64, ErrorBody> {
    let bad = || {
        invalid(
            "budget: expected {\"type\": \"limit\", \"max_list_cost\": {\"amount\": \"5.00\", \"currency\": \"USD\"}}",
        )
    };
    if v.get("type").and_then(Value::as_str) != Some("limit") {
        return Err(bad());
    }
    let cost = v.get("max_list_cost").ok_or_else(bad)?;
    if let Some(c) = cost.get("currency").and_then(Value::as_str)
        && c != "USD"
    {
        return Err(invalid(format!(
            "budget.max_list_cost.currency: only USD is priced here, got `{c}`"
        )));
    }
    let amount = match cost.get("amount") {
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| bad())?,
        Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    crate::session::ops::validate_budget(amount)?;
    Ok(amount)
}

fn check_name(name: &str) -> Result<(), ErrorBody> {
    if name.trim().is_empty() {
        return Err(invalid("name: required and not blank"));
    }
    if name.chars().count() > 256 {
        return Err(invalid("name: at most 256 characters"));
    }
    Ok(())
}

fn check_schedule(s: &ScheduleSpec) -> Result<(), ErrorBody> {
    Timing::parse(s).map(|_| ()).map_err(invalid)
}

/// `now` is the scheduler's clock (the system's, outside tests): nothing of the schedule
/// before it fires.
pub async fn create(
    rt: &Arc<Runtime>,
    spec: DeploymentSpec,
    now: DateTime<Utc>,
) -> Result<Deployment, ErrorBody> {
    check_name(&spec.name)?;
    // Live vaults now (by id or name, stored as ids); one archived later fails that fire.
    let vault_ids = crate::resources::vaults::session_vaults(
        &rt.store,
        spec.vault_ids.as_deref().unwrap_or_default(),
    )
    .await?;
    crate::resources::agents::validate_metadata(&spec.metadata)?;
    check_fires(rt, &spec.initial_events, spec.workflow.as_ref())?;
    if let Some(s) = &spec.schedule {
        check_schedule(s)?;
    }
    if let Some(b) = &spec.budget {
        budget_dollars(b)?;
    }
    let agent = pin_agent(rt, &spec.agent).await?;
    let environment_id = check_environment(rt, &spec.environment_id).await?;
    // The id first: the resources' tokens are sealed to it.
    let id = ids::deployment_id();
    let checked =
        super::resources::check(rt, &id, spec.resources.as_deref().unwrap_or_default()).await?;
    let stored = Stored {
        description: spec.description.filter(|d| !d.is_empty()),
        agent,
        environment_id,
        initial_events: spec.initial_events,
        workflow: spec.workflow,
        metadata: spec.metadata,
        budget: spec.budget,
        schedule: spec.schedule,
        vault_ids,
        resources: checked.resources,
        sealed_tokens: checked.sealed_tokens,
    };
    let row = DeploymentRow {
        id,
        name: spec.name,
        spec: serde_json::to_value(&stored)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?,
        status: DeploymentStatus::Active.as_str().into(),
        paused_reason: None,
        // Nothing before creation fires.
        schedule_cursor: Some(instant(now)),
        last_run_at: None,
        created_at: ids::now_rfc3339(),
        updated_at: ids::now_rfc3339(),
        archived_at: None,
    };
    let r = row.clone();
    rt.store
        .write(move |c| {
            sql::insert_deployment(c, &r)?;
            enqueue_resource(c, "deployment.created", &r.id).map(|_| ())
        })
        .await
        .map_err(store_err)?;
    rt.store.webhook_wake().notify_one();
    rt.schedules_changed.notify_one();
    wire(&row, now)
}

/// The deployment a reference names: an id, a name, or a unique id prefix.
pub async fn row(rt: &Runtime, reference: &str) -> Result<DeploymentRow, ErrorBody> {
    let reference = reference.trim().to_string();
    if reference.is_empty() {
        return Err(invalid(
            "empty deployment reference; pass a deployment id or name (see `tether deployments ls`)",
        ));
    }
    let r = reference.clone();
    let found = rt
        .store
        .read(move |c| {
            let ids = sql::resolve_deployment(c, &r)?;
            match ids.as_slice() {
                [one] => Ok((ids.clone(), sql::get_deployment(c, one)?)),
                _ => Ok((ids, None)),
            }
        })
        .await?;
    match found {
        (_, Some(row)) => Ok(row),
        (ids, None) if ids.len() > 1 => Err(ErrorBody::new(
            ErrorCode::Ambiguous,
            format!(
                "`{reference}` matches several deployments ({}); use the id",
                ids.join(", ")
            ),
        )),
        _ => Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("no deployment `{reference}`; `tether deployments ls --all` lists them"),
        )),
    }
}

/// The deployment with exactly this id (HTTP paths take ids only).
pub async fn row_by_id(rt: &Runtime, id: &str) -> Result<DeploymentRow, ErrorBody> {
    let i = id.to_string();
    rt.store
        .read(move |c| sql::get_deployment(c, &i))
        .await?
        .ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::NotFound,
                format!("no deployment with id `{id}` (GET /v1/deployments lists them)"),
            )
        })
}

pub async fn get(rt: &Runtime, reference: &str) -> Result<Deployment, ErrorBody> {
    wire(&row(rt, reference).await?, Utc::now())
}

/// Filters of a listing.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub agent_id: Option<String>,
    pub include_archived: bool,
    pub status: Option<DeploymentStatus>,
}

/// `include_archived` widens the set to archived deployments, then `status` keeps those whose
/// reported `status` matches: the filter is the field a client sees, so an archived deployment
/// (which reports `active`, hosted) is kept by `active`, never by `paused`. The hosted API
/// refuses the pair; the SDK's own tests send it, so tether gives it this meaning instead.
pub async fn list(rt: &Runtime, f: &Filter) -> Result<Vec<Deployment>, ErrorBody> {
    let rows = rt.store.read(sql::list_deployments).await?;
    let now = Utc::now();
    let mut out = Vec::new();
    for r in rows {
        if r.archived_at.is_some() && !f.include_archived {
            continue;
        }
        let d = wire(&r, now)?;
        if f.agent_id.as_ref().is_some_and(|a| *a != d.agent.id) {
            continue;
        }
        if f.status.is_some_and(|s| s != d.status) {
            continue;
        }
        out.push(d);
    }
    Ok(out)
}

/// Stores `row`; `webhook` is the change's webhook type, None when nothing changed (a no-op
/// emits nothing).
async fn save(
    rt: &Runtime,
    row: DeploymentRow,
    webhook: Option<&'static str>,
) -> Result<Deployment, ErrorBody> {
    let r = row.clone();
    rt.store
        .write(move |c| {
            sql::update_deployment(c, &r)?;
            match webhook {
                Some(kind) => enqueue_resource(c, kind, &r.id).map(|_| ()),
                None => Ok(()),
            }
        })
        .await
        .map_err(store_err)?;
    if webhook.is_some() {
        rt.store.webhook_wake().notify_one();
    }
    rt.schedules_changed.notify_one();
    wire(&row, Utc::now())
}

fn check_live(row: &DeploymentRow) -> Result<(), ErrorBody> {
    if row.archived_at.is_some() {
        // 409: the request is fine, the deployment's state refuses it.
        return Err(ErrorBody::new(
            ErrorCode::Conflict,
            format!(
                "deployment `{}` is archived and can't be changed or run; create a new one",
                row.id
            ),
        ));
    }
    Ok(())
}

pub async fn update(
    rt: &Arc<Runtime>,
    mut row: DeploymentRow,
    ch: DeploymentChanges,
    now: DateTime<Utc>,
) -> Result<Deployment, ErrorBody> {
    check_live(&row)?;
    let mut st = Stored::of(&row)?;
    if let Some(name) = ch.name {
        check_name(&name)?;
        row.name = name;
    }
    // Replaced whole (hosted): a repository sent without its token has none from now on.
    if let Some(r) = &ch.resources {
        let checked =
            super::resources::check(rt, &row.id, r.as_deref().unwrap_or_default()).await?;
        st.resources = checked.resources;
        st.sealed_tokens = checked.sealed_tokens;
    }
    if let Some(v) = &ch.vault_ids {
        st.vault_ids =
            crate::resources::vaults::session_vaults(&rt.store, v.as_deref().unwrap_or_default())
                .await?;
    }
    if let Some(agent) = &ch.agent {
        st.agent = pin_agent(rt, agent).await?;
    }
    if let Some(env) = &ch.environment_id {
        st.environment_id = check_environment(rt, env).await?;
    }
    match (ch.initial_events, ch.workflow) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "initial_events and workflow: a deployment fires either a session's initial events or a workflow run, not both; send one of them",
            ));
        }
        // Either one switches what the deployment fires.
        (Some(events), None) => {
            check_fires(rt, &events, None)?;
            st.initial_events = events;
            st.workflow = None;
        }
        (None, Some(w)) => {
            check_fires(rt, &[], Some(&w))?;
            st.initial_events = Vec::new();
            st.workflow = Some(w);
        }
        (None, None) => {}
    }
    if let Some(d) = ch.description {
        st.description = d.filter(|d| !d.is_empty());
    }
    if let Some(patch) = ch.metadata {
        for (k, v) in patch {
            match v {
                Some(v) => st.metadata.insert(k, v),
                None => st.metadata.remove(&k),
            };
        }
        crate::resources::agents::validate_metadata(&st.metadata)?;
    }
    if let Some(b) = ch.budget {
        if let Some(b) = &b {
            budget_dollars(b)?;
        }
        st.budget = b;
    }
    if let Some(s) = ch.schedule {
        if let Some(s) = &s {
            check_schedule(s)?;
        }
        if s != st.schedule {
            // A new schedule starts from now: nothing of it is owed from before.
            row.schedule_cursor = Some(instant(now));
        }
        st.schedule = s;
    }
    row.spec = serde_json::to_value(&st)
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    row.updated_at = ids::now_rfc3339();
    save(rt, row, Some("deployment.updated")).await
}

pub async fn pause(rt: &Runtime, mut row: DeploymentRow) -> Result<Deployment, ErrorBody> {
    check_live(&row)?;
    let changed = row.status != DeploymentStatus::Paused.as_str();
    if changed {
        row.status = DeploymentStatus::Paused.as_str().into();
        row.paused_reason = serde_json::to_value(PausedReason::Manual).ok();
        row.updated_at = ids::now_rfc3339();
    }
    save(rt, row, changed.then_some("deployment.paused")).await
}

/// Resumes at the next occurrence: what fell due while paused is not owed (no backfill).
pub async fn unpause(
    rt: &Runtime,
    mut row: DeploymentRow,
    now: DateTime<Utc>,
) -> Result<Deployment, ErrorBody> {
    check_live(&row)?;
    let changed = row.status != DeploymentStatus::Active.as_str();
    if changed {
        row.status = DeploymentStatus::Active.as_str().into();
        row.paused_reason = None;
        row.schedule_cursor = Some(instant(now));
        row.updated_at = ids::now_rfc3339();
    }
    save(rt, row, changed.then_some("deployment.unpaused")).await
}

pub async fn archive(rt: &Runtime, mut row: DeploymentRow) -> Result<Deployment, ErrorBody> {
    let changed = row.archived_at.is_none();
    if changed {
        let now = ids::now_rfc3339();
        row.archived_at = Some(now.clone());
        // Archived deployments report `active` (hosted).
        row.status = DeploymentStatus::Active.as_str().into();
        row.paused_reason = None;
        row.updated_at = now;
    }
    save(rt, row, changed.then_some("deployment.archived")).await
}

/// The wire object, with the next fires as of `now` for live deployments.
pub fn wire(row: &DeploymentRow, now: DateTime<Utc>) -> Result<Deployment, ErrorBody> {
    let st = Stored::of(row)?;
    let status = if row.status == DeploymentStatus::Paused.as_str() {
        DeploymentStatus::Paused
    } else {
        DeploymentStatus::Active
    };
    let schedule = st.schedule.as_ref().map(|spec| {
        let upcoming = match (row.archived_at.is_some(), Timing::parse(spec)) {
            (false, Ok(t)) => {
                // From the cursor or now, whichever is later: what the scheduler will fire.
                let from = row
                    .schedule_cursor
                    .as_deref()
                    .and_then(parse_instant)
                    .map_or(now, |c| c.max(now));
                // Before jitter (hosted): a run starts at or shortly after each.
                t.occurrences_after(from, timing::UPCOMING)
                    .into_iter()
                    .map(instant)
                    .collect()
            }
            _ => Vec::new(),
        };
        let (kind, expression, timezone, time) = match spec {
            ScheduleSpec::Cron {
                expression,
                timezone,
            } => (
                "cron",
                Some(expression.clone()),
                Some(timezone.clone()),
                None,
            ),
            ScheduleSpec::At { time } => ("at", None, None, Some(time.clone())),
        };
        Schedule {
            kind: kind.into(),
            expression,
            timezone,
            time,
            last_run_at: row.last_run_at.clone(),
            upcoming_runs_at: upcoming,
        }
    });
    Ok(Deployment {
        id: row.id.clone(),
        object_type: "deployment".into(),
        name: row.name.clone(),
        description: st.description,
        agent: st.agent,
        environment_id: st.environment_id,
        initial_events: st.initial_events,
        workflow: st.workflow,
        resources: st.resources,
        vault_ids: st.vault_ids,
        metadata: st.metadata,
        budget: st.budget,
        schedule,
        status,
        paused_reason: if status == DeploymentStatus::Paused {
            row.paused_reason
                .clone()
                .and_then(|v| serde_json::from_value(v).ok())
                .or(Some(PausedReason::Manual))
        } else {
            None
        },
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        archived_at: row.archived_at.clone(),
    })
}
