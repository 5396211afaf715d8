//! `/v1/deployments` and `/v1/deployment_runs`: the hosted endpoints over the schedules room
//! (`orchestration::schedules`), the same functions `tether deployments` reaches through the
//! socket. Paths take exact ids.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use tether_proto::deployment::{
    Deployment, DeploymentChanges, DeploymentRun, DeploymentSpec, DeploymentStatus,
};

use super::error::{ApiError, ApiResult};
use super::query::Query;
use super::shapes::Page;
use super::{Api, body, page};
use crate::orchestration::schedules::{deployments, fire};

pub async fn create(
    State(api): State<Api>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Deployment>> {
    let spec: DeploymentSpec = body::parse(&bytes)?;
    Ok(Json(
        deployments::create(&api.rt, spec, chrono::Utc::now()).await?,
    ))
}

pub async fn list(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<Deployment>>> {
    let q = Query::parse(q.as_deref());
    let status = match q.one("status") {
        None => None,
        Some("active") => Some(DeploymentStatus::Active),
        Some("paused") => Some(DeploymentStatus::Paused),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status: expected `active` or `paused`, got `{other}`"
            )));
        }
    };
    let filter = deployments::Filter {
        agent_id: q.one("agent_id").map(str::to_string),
        include_archived: q.bool("include_archived")?,
        status,
    };
    let all = deployments::list(&api.rt, &filter).await?;
    Ok(Json(page::by_creation(
        &q,
        all,
        |d| (&d.created_at, &d.id),
        true,
        100,
    )?))
}

pub async fn retrieve(
    State(api): State<Api>,
    Path(deployment_id): Path<String>,
) -> ApiResult<Json<Deployment>> {
    let row = deployments::row_by_id(&api.rt, &deployment_id).await?;
    Ok(Json(deployments::wire(&row, chrono::Utc::now())?))
}

pub async fn update(
    State(api): State<Api>,
    Path(deployment_id): Path<String>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<Deployment>> {
    let changes: DeploymentChanges = body::parse(&bytes)?;
    let row = deployments::row_by_id(&api.rt, &deployment_id).await?;
    Ok(Json(
        deployments::update(&api.rt, row, changes, chrono::Utc::now()).await?,
    ))
}

pub async fn archive(
    State(api): State<Api>,
    Path(deployment_id): Path<String>,
) -> ApiResult<Json<Deployment>> {
    let row = deployments::row_by_id(&api.rt, &deployment_id).await?;
    Ok(Json(deployments::archive(&api.rt, row).await?))
}

pub async fn pause(
    State(api): State<Api>,
    Path(deployment_id): Path<String>,
) -> ApiResult<Json<Deployment>> {
    let row = deployments::row_by_id(&api.rt, &deployment_id).await?;
    Ok(Json(deployments::pause(&api.rt, row).await?))
}

pub async fn unpause(
    State(api): State<Api>,
    Path(deployment_id): Path<String>,
) -> ApiResult<Json<Deployment>> {
    let row = deployments::row_by_id(&api.rt, &deployment_id).await?;
    Ok(Json(
        deployments::unpause(&api.rt, row, chrono::Utc::now()).await?,
    ))
}

pub async fn run(
    State(api): State<Api>,
    Path(deployment_id): Path<String>,
) -> ApiResult<Json<DeploymentRun>> {
    let row = deployments::row_by_id(&api.rt, &deployment_id).await?;
    Ok(Json(fire::run_now(&api.rt, &row).await?))
}

pub async fn runs(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Page<DeploymentRun>>> {
    let q = Query::parse(q.as_deref());
    let has_error = match q.one("has_error") {
        None => None,
        Some(_) => Some(q.bool("has_error")?),
    };
    let trigger_type = match q.one("trigger_type") {
        None => None,
        Some(t @ ("schedule" | "manual")) => Some(t.to_string()),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "trigger_type: expected `schedule` or `manual`, got `{other}`"
            )));
        }
    };
    // An unknown deployment id is an empty page (hosted), not a 404.
    let filter = fire::RunFilter {
        deployment_id: q.one("deployment_id").map(str::to_string),
        has_error,
        trigger_type,
    };
    let all = fire::list_runs(&api.rt, &filter).await?;
    Ok(Json(page::by_creation(
        &q,
        all,
        |r| (&r.created_at, &r.id),
        true,
        1000,
    )?))
}

pub async fn retrieve_run(
    State(api): State<Api>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<DeploymentRun>> {
    Ok(Json(fire::get_run(&api.rt, &run_id).await?))
}

/// The create body as documented: [`DeploymentSpec`] with the rules its `Value` fields keep
/// (the initial events and budget a session takes). Requests are parsed as the spec.
#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CreateDoc {
    #[schemars(length(min = 1, max = 256), regex(pattern = tether_proto::schema::NOT_BLANK))]
    name: String,
    agent: tether_proto::deployment::AgentChoice,
    #[schemars(regex(pattern = tether_proto::schema::NOT_BLANK))]
    environment_id: String,
    /// Required unless `workflow` is given, and never with it.
    #[schemars(length(min = 1, max = 50))]
    initial_events: Option<Vec<super::sessions::InitialEvent>>,
    /// tether: instead of `initial_events`, the workflow (a workflow file's plan) each fire
    /// runs in a fresh session of `agent` and `environment_id`.
    workflow: Option<tether_proto::workflow::WorkflowSpec>,
    #[schemars(length(max = 2048))]
    description: Option<String>,
    #[schemars(with = "Option<tether_proto::schema::Metadata>")]
    metadata: Option<std::collections::BTreeMap<String, String>>,
    /// Files, GitHub repositories and memory stores mounted into each session it fires:
    /// at most 100 files and repositories and 8 memory stores (what a session takes). Each
    /// is checked now (a file or store that doesn't exist is a 404) and again at each fire.
    /// A repository's `authorization_token` is stored sealed and never answered.
    #[schemars(length(max = 108))]
    resources: Option<Vec<tether_proto::deployment::DeploymentResourceParam>>,
    /// Vaults (ids or names, each live) whose credentials the fired sessions use.
    #[schemars(length(max = 16))]
    vault_ids: Option<Vec<String>>,
    schedule: Option<ScheduleDoc>,
    budget: Option<super::sessions::BudgetIn>,
}

/// The update body as documented (see [`CreateDoc`]); `null` clears a clearable field.
#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UpdateDoc {
    #[schemars(length(min = 1, max = 256), regex(pattern = tether_proto::schema::NOT_BLANK))]
    name: Option<String>,
    agent: Option<tether_proto::deployment::AgentChoice>,
    #[schemars(regex(pattern = tether_proto::schema::NOT_BLANK))]
    environment_id: Option<String>,
    #[schemars(length(min = 1, max = 50))]
    initial_events: Option<Vec<super::sessions::InitialEvent>>,
    /// tether: fire this workflow from now on (not with `initial_events`).
    workflow: Option<tether_proto::workflow::WorkflowSpec>,
    #[schemars(length(max = 2048))]
    description: Option<String>,
    #[schemars(with = "Option<tether_proto::schema::MetadataPatch>")]
    metadata: Option<std::collections::BTreeMap<String, Option<String>>>,
    /// Replaces the resources of the sessions it fires from now on (`null` or `[]`: none);
    /// each checked as on create.
    #[schemars(length(max = 108))]
    resources: Option<Vec<tether_proto::deployment::DeploymentResourceParam>>,
    /// Replaces the vaults of the sessions it fires from now on (`null` or `[]`: none).
    #[schemars(length(max = 16))]
    vault_ids: Option<Vec<String>>,
    schedule: Option<ScheduleDoc>,
    budget: Option<super::sessions::BudgetIn>,
}

/// A schedule as documented: cron (its expression and zone are checked by the daemon, which
/// JSON Schema can't express) or a one-shot RFC 3339 time.
#[derive(schemars::JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
#[allow(dead_code)]
enum ScheduleDoc {
    /// 5-field POSIX cron on the wall clock of an IANA time zone.
    #[serde(rename = "cron")]
    Cron {
        #[schemars(regex(pattern = r"^\s*\S+(\s+\S+){4}\s*$"))]
        expression: String,
        #[schemars(regex(pattern = tether_proto::schema::NOT_BLANK))]
        timezone: String,
    },
    /// tether: once, at this time.
    #[serde(rename = "at")]
    At {
        #[schemars(extend("format" = "date-time"))]
        time: String,
    },
}
