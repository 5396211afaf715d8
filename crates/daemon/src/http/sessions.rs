//! `/v1/sessions`: create (the three `agent` forms, `initial_events`), list (filters,
//! two-way keyset paging), retrieve, update, delete, archive.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;
use serde_json::Value;
use tether_proto::method::CreateSession;
use tether_proto::{ContentBlock, EventBody, SessionStatus};

use super::error::{ApiError, ApiResult};
use super::page::Cursor;
use super::query::Query;
use super::shapes::{self, AgentCache, DeletedSession, HostedSession, SessionPage};
use super::{Api, body};
use crate::runtime::Runtime;
use crate::session::live::{Session, info_from_row};
use crate::store::rows::{SessionPageQuery, SessionRow};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[schemars(with = "AgentChoice")]
    agent: Value,
    /// An environment's id (or, tether, its name).
    #[schemars(regex(pattern = tether_proto::schema::NOT_BLANK))]
    environment_id: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    #[schemars(with = "tether_proto::schema::Metadata")]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    #[schemars(with = "Option<BudgetIn>")]
    budget: Option<Value>,
    #[serde(default)]
    #[schemars(with = "Vec<InitialEvent>", length(max = 50))]
    initial_events: Vec<Value>,
    /// Memory stores to mount under `/mnt/memory/`, files to mount read-only, GitHub
    /// repositories to clone into the workspace.
    #[serde(default)]
    #[schemars(length(max = 100))]
    resources: Vec<ResourceIn>,
    /// Vaults whose credentials the session uses (MCP server auth, sandbox variables).
    #[serde(default)]
    #[schemars(length(max = 16))]
    vault_ids: Vec<String>,
}

/// One entry of `resources` on create: a memory store, or a file or repository (issue 25).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(super) enum ResourceIn {
    Memory(tether_proto::memory::MemoryResourceParam),
    Other(tether_proto::file::ResourceParam),
}

/// The three forms of a session's `agent` (for the document; parsed by hand for errors that
/// name the form).
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum AgentChoice {
    /// An agent id (or, tether, `NAME[@VERSION]`).
    Id(#[schemars(regex(pattern = r"^[^@]*(@[0-9]{1,9})?$"))] String),
    Pinned(PinnedAgent),
}

#[derive(schemars::JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
#[allow(dead_code)]
enum PinnedAgent {
    #[serde(rename = "agent")]
    Agent {
        #[schemars(regex(pattern = r"^[^@]*(@[0-9]{1,9})?$"))]
        id: String,
        #[schemars(range(max = 4294967295u32))]
        version: Option<u32>,
    },
    #[serde(rename = "agent_with_overrides")]
    WithOverrides {
        #[schemars(regex(pattern = r"^[^@]*(@[0-9]{1,9})?$"))]
        id: String,
        #[schemars(range(max = 4294967295u32))]
        version: Option<u32>,
        model: Option<tether_proto::agent::AgentModel>,
        system: Option<String>,
        tools: Option<Vec<tether_proto::agent::AgentTool>>,
        /// Not supported by this tetherd: only an empty list is accepted.
        #[schemars(length(max = 0))]
        mcp_servers: Option<Vec<Value>>,
        /// Replaces the agent's skills for this session (`[]`: none); custom skills only.
        #[schemars(length(max = 20))]
        skills: Option<Vec<tether_proto::skill::SkillRef>>,
    },
}

/// `{type: "limit", max_list_cost: {amount, currency: "USD"}}`.
#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct BudgetIn {
    #[serde(rename = "type")]
    #[schemars(regex(pattern = "^limit$"))]
    kind: String,
    max_list_cost: MoneyIn,
}

#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub(super) struct MoneyIn {
    /// Decimal dollars: `"5.00"` or 5.
    #[schemars(with = "Amount")]
    amount: Value,
    #[schemars(regex(pattern = "^USD$"))]
    currency: Option<String>,
}

#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(super) enum Amount {
    Text(#[schemars(regex(pattern = r"^[0-9]{1,12}(\.[0-9]{1,12})?$"))] String),
    Number(#[schemars(range(min = 0.0))] f64),
}

/// `initial_events` entries: user messages and at most one outcome, sent in order once the
/// session exists.
#[derive(schemars::JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
#[allow(dead_code)]
pub(super) enum InitialEvent {
    #[serde(rename = "user.message")]
    Message {
        #[schemars(with = "Vec<super::events::UserText>", length(min = 1))]
        content: Vec<ContentBlock>,
    },
    /// At most one; its rubric is required.
    #[serde(rename = "user.define_outcome")]
    DefineOutcome(super::events::DefineOutcomeDoc),
}

/// `agent_with_overrides`: fields that replace the pinned version's for this session.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSelector {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    model: Option<tether_proto::agent::AgentModel>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    tools: Option<Vec<tether_proto::agent::AgentTool>>,
    #[serde(default)]
    mcp_servers: Option<Vec<tether_proto::agent::McpServer>>,
    #[serde(default)]
    skills: Option<Vec<tether_proto::skill::SkillRef>>,
}

/// Reads `{type: "limit", max_list_cost: {amount, currency: "USD"}}` as dollars.
pub fn parse_budget(v: &Value) -> ApiResult<f64> {
    let bad = || {
        ApiError::invalid(
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
        return Err(ApiError::invalid(format!(
            "budget.max_list_cost.currency: only USD is priced here, got `{c}`"
        )));
    }
    let amount = match cost.get("amount") {
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| bad())?,
        Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if !(amount.is_finite() && amount >= 0.0) {
        return Err(bad());
    }
    Ok(amount)
}

/// An `initial_events` entry, checked before the session is created.
enum Initial {
    Message(Vec<ContentBlock>),
    Outcome(tether_proto::outcome::OutcomeSpec),
}

/// Parses an `initial_events` entry: a `user.message` or a `user.define_outcome`.
fn initial_event(v: Value) -> ApiResult<Initial> {
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if kind != "user.message" && kind != "user.define_outcome" {
        return Err(ApiError::invalid(format!(
            "initial_events: `{kind}` can't be sent here; this tetherd accepts `user.message` and one `user.define_outcome` here (send other events to POST /v1/sessions/{{id}}/events once the session exists)"
        )));
    }
    match serde_json::from_value::<EventBody>(v).map_err(ApiError::body)? {
        EventBody::UserMessage { content } => Ok(Initial::Message(content)),
        EventBody::UserDefineOutcome(spec) => Ok(Initial::Outcome(spec)),
        _ => Err(ApiError::invalid(
            "initial_events: expected a user.message or a user.define_outcome",
        )),
    }
}

pub async fn create(
    State(api): State<Api>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<HostedSession>> {
    let b: CreateBody = body::parse(&bytes)?;
    if b.environment_id.trim().is_empty() {
        return Err(ApiError::invalid(
            "environment_id: required (see GET /v1/environments)",
        ));
    }
    if b.initial_events.len() > 50 {
        return Err(ApiError::invalid(
            "initial_events: at most 50 events at creation; send the rest to /events",
        ));
    }
    let budget = b.budget.as_ref().map(parse_budget).transpose()?;
    let mut initial = b
        .initial_events
        .into_iter()
        .map(initial_event)
        .collect::<ApiResult<Vec<_>>>()?;
    let mut outcomes = 0;
    for i in &mut initial {
        if let Initial::Outcome(spec) = i {
            outcomes += 1;
            // Client-set ids are not taken: the daemon names the outcome.
            spec.outcome_id = None;
            crate::session::ops::check_outcome(&api.rt, spec)?;
        }
    }
    if outcomes > 1 {
        return Err(ApiError::invalid(format!(
            "initial_events: {outcomes} user.define_outcome events; a session works on one outcome at a time, so send at most one (define the next after the first one's terminal span.outcome_evaluation_end)"
        )));
    }
    let mut p = CreateSession {
        environment_id: Some(b.environment_id),
        title: b.title,
        metadata: b.metadata,
        vault_ids: b.vault_ids,
        ..Default::default()
    };
    for r in b.resources {
        match r {
            ResourceIn::Memory(m) => p.memory_stores.push(m),
            ResourceIn::Other(o) => p.resources.push(o),
        }
    }
    if p.memory_stores.len() > 8 {
        return Err(ApiError::invalid(format!(
            "resources: {} memory stores; a session mounts at most 8",
            p.memory_stores.len()
        )));
    }
    match b.agent {
        Value::String(id) => p.agent = Some(id),
        v @ Value::Object(_) => {
            let sel: AgentSelector =
                serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("agent: {e}")))?;
            match sel.kind.as_str() {
                "agent" | "agent_with_overrides" => {}
                other => {
                    return Err(ApiError::invalid(format!(
                        "agent.type: expected `agent` or `agent_with_overrides`, got `{other}`"
                    )));
                }
            }
            let overrides = sel.model.is_some()
                || sel.system.is_some()
                || sel.tools.is_some()
                || sel.mcp_servers.is_some()
                || sel.skills.is_some();
            if overrides && sel.kind == "agent" {
                return Err(ApiError::invalid(
                    "agent: overrides (model, system, tools, ...) need `type: agent_with_overrides`",
                ));
            }
            p.agent = Some(match sel.version {
                Some(v) => format!("{}@{v}", sel.id),
                None => sel.id,
            });
            p.model = sel.model.map(|m| m.id);
            p.system = sel.system;
            p.tools = sel.tools;
            p.mcp_servers = sel.mcp_servers;
            p.skills = sel.skills;
        }
        _ => {
            return Err(ApiError::invalid(
                "agent: expected an agent id, {\"type\": \"agent\", \"id\", \"version\"} or {\"type\": \"agent_with_overrides\", ...}",
            ));
        }
    }
    p.max_cost_usd = budget;
    let s = crate::orchestration::memory::create_session(&api.rt, p).await?;
    for i in initial {
        match i {
            Initial::Message(content) => {
                crate::session::ops::send_message(&s, content, None).await?;
            }
            Initial::Outcome(spec) => {
                crate::session::ops::define_outcome(&s, spec).await?;
            }
        }
    }
    Ok(Json(loaded(&api.rt, &s).await?))
}

/// The hosted object of a loaded session.
async fn loaded(rt: &Runtime, s: &Arc<Session>) -> ApiResult<HostedSession> {
    shapes::session(
        rt,
        &mut AgentCache::default(),
        &s.info(),
        &s.row(),
        s.budget(),
    )
    .await
}

/// The hosted object of a stored row, live if the session is loaded.
async fn of_row(
    rt: &Runtime,
    cache: &mut AgentCache,
    row: &SessionRow,
) -> ApiResult<HostedSession> {
    match rt.loaded(&row.id) {
        Some(s) => shapes::session(rt, cache, &s.info(), &s.row(), s.budget()).await,
        None => {
            shapes::session(
                rt,
                cache,
                &info_from_row(row, None, 0),
                row,
                rt.config.max_cost_usd,
            )
            .await
        }
    }
}

pub async fn list(State(api): State<Api>, RawQuery(q): RawQuery) -> ApiResult<Json<SessionPage>> {
    let q = Query::parse(q.as_deref());
    let desc = q.descending(true)?;
    let range = q.created_at()?;
    let statuses = q
        .all("statuses")
        .into_iter()
        .map(|s| {
            serde_json::from_value::<SessionStatus>(Value::String(s.to_string())).map_err(|_| {
                ApiError::invalid(format!(
                    "statuses: `{s}` is not one of rescheduling, running, idle, terminated"
                ))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let agent_version = q
        .u64("agent_version")?
        .map(|v| {
            u32::try_from(v)
                .map_err(|_| ApiError::invalid(format!("agent_version: {v} is too large")))
        })
        .transpose()?;
    let agent_id = q.one("agent_id").map(str::to_string);
    let deployment_id = q.one("deployment_id").map(str::to_string);
    if agent_version.is_some() && agent_id.is_none() {
        return Err(ApiError::invalid(
            "agent_version: only applies together with agent_id",
        ));
    }
    let cursor = q.one("page").map(|p| Cursor::decode(p, desc)).transpose()?;
    let mut pq = SessionPageQuery {
        include_archived: q.bool("include_archived")?,
        statuses,
        agent_id,
        agent_version,
        deployment_id,
        created_gt: range.gt,
        created_gte: range.gte,
        created_lt: range.lt,
        created_lte: range.lte,
        desc,
        limit: q.limit(20, 100)?,
        ..Default::default()
    };
    if let Some(c) = &cursor {
        let [at, id] = c.key.as_slice() else {
            return Err(ApiError::invalid("page: not a session cursor"));
        };
        pq.after = Some((at.clone(), id.clone()));
        pq.backward = c.backward;
    }
    let backward = pq.backward;
    let (rows, more) = api.rt.store.page_sessions(pq).await?;
    let key = |r: &SessionRow| vec![r.created_at.clone(), r.id.clone()];
    let edge = |r: Option<&SessionRow>, backward: bool| {
        r.map(|r| {
            Cursor {
                desc,
                backward,
                key: key(r),
            }
            .encode()
        })
    };
    let (next, prev) = if backward {
        (
            edge(rows.last(), false),
            if more { edge(rows.first(), true) } else { None },
        )
    } else {
        (
            if more { edge(rows.last(), false) } else { None },
            if cursor.is_some() {
                edge(rows.first(), true)
            } else {
                None
            },
        )
    };
    let mut cache = AgentCache::default();
    let mut data = Vec::with_capacity(rows.len());
    for r in &rows {
        data.push(of_row(&api.rt, &mut cache, r).await?);
    }
    Ok(Json(SessionPage {
        data,
        next_page: next,
        prev_page: prev,
    }))
}

/// The stored session with exactly this id. HTTP paths take ids only: unique prefixes and
/// names are conveniences of the CLI, and over HTTP a short guess must not address (or
/// delete) a session.
pub async fn row_by_id(api: &Api, id: &str) -> ApiResult<SessionRow> {
    // A thread's row is not a session (its endpoints are under its session's).
    let row = api
        .rt
        .store
        .get_session(id)
        .await?
        .filter(|r| r.parent_id.is_none());
    row.ok_or_else(|| {
        ApiError::not_found(format!(
            "no session with id `{id}`; ids are matched exactly here (GET /v1/sessions lists them)"
        ))
    })
}

/// The live session with exactly this id (see [`row_by_id`]).
pub async fn by_id(api: &Api, id: &str) -> ApiResult<Arc<Session>> {
    let row = row_by_id(api, id).await?;
    Ok(api.rt.load(&row.id).await?)
}

pub async fn retrieve(
    State(api): State<Api>,
    Path(session_id): Path<String>,
) -> ApiResult<Json<HostedSession>> {
    let row = row_by_id(&api, &session_id).await?;
    Ok(Json(
        of_row(&api.rt, &mut AgentCache::default(), &row).await?,
    ))
}

/// `POST /v1/sessions/{id}`: every field optional; `metadata` is a patch (null deletes a
/// key), `title: null` clears the title.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, deserialize_with = "present")]
    pub title: Option<Option<String>>,
    #[serde(default)]
    #[schemars(with = "Option<tether_proto::schema::MetadataPatch>")]
    pub metadata: Option<BTreeMap<String, Option<String>>>,
    /// Absent: unchanged; `null`: a removal, which is refused (so not in the document).
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "BudgetIn")]
    pub budget: Option<Option<Value>>,
    /// The session's own tools and MCP servers from its next turn on, each list given
    /// replacing the one it has (`[]` clears); the session must not be running.
    #[serde(default)]
    #[schemars(with = "Option<tether_proto::agent::SessionAgentUpdate>")]
    pub agent: Option<Value>,
    /// The session's vaults from now on (replacing its set; `[]` drops them all): its next
    /// MCP connections and shell commands use their credentials; a turn under way is not
    /// restarted. (The hosted API reserves this field; tether takes it.)
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub vault_ids: Option<Vec<String>>,
}

/// A field that is present, even as `null` (`Some(None)`); absent fields stay `None` by
/// `#[serde(default)]`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub async fn update(
    State(api): State<Api>,
    Path(session_id): Path<String>,
    body::Body(bytes): body::Body,
) -> ApiResult<Json<HostedSession>> {
    let typed: UpdateBody = body::parse(&bytes)?;
    let agent_update = match typed.agent {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<tether_proto::agent::SessionAgentUpdate>(v).map_err(|e| {
                let e = e.to_string();
                let hint = if e.starts_with("unknown field") {
                    "; only `tools` and `mcp_servers` can change mid-session"
                } else {
                    ""
                };
                ApiError::invalid(format!("agent: {e}{hint}"))
            })?,
        ),
    };
    let s = by_id(&api, &session_id).await?;
    crate::session::ops::check_writable(&s)?;
    // Everything is checked before anything changes: a refused field leaves the session as
    // it was.
    let row = s.row();
    let title = typed.title.unwrap_or_else(|| row.title.clone());
    let mut metadata = row.metadata.clone();
    for (k, v) in typed.metadata.unwrap_or_default() {
        match v {
            None => metadata.remove(&k),
            Some(v) => metadata.insert(k, v),
        };
    }
    crate::resources::agents::validate_metadata(&metadata)?;
    let budget = match &typed.budget {
        None => None,
        Some(None) => {
            return Err(ApiError::invalid(
                "budget: a session's limit can be changed but not removed; set a higher one",
            ));
        }
        Some(Some(v)) => Some(parse_budget(v)?),
    };
    if let Some(limit) = budget {
        crate::session::ops::validate_budget(limit)?;
    }
    if let Some(refs) = &typed.vault_ids {
        crate::resources::vaults::session_vaults(&api.rt.store, refs).await?;
    }
    // The agent's checks are its own (and the last): a refused change of tools changes
    // nothing else either.
    if let Some(update) = &agent_update
        && crate::session::ops::update_agent(&s, update)
            .await?
            .is_some()
    {
        let row = s.row();
        let model = crate::session::model::current_model(&s);
        let snapshot =
            shapes::session_agent(&api.rt, &mut AgentCache::default(), &row, &model).await?;
        s.append_one(EventBody::SessionUpdated {
            model: None,
            max_cost_usd: None,
            title: None,
            name: None,
            metadata: None,
            vault_ids: None,
            agent: serde_json::to_value(&snapshot).ok(),
        })
        .await?;
    }
    if let Some(limit) = budget {
        crate::session::ops::update_session(&s, None, Some(limit)).await?;
    }
    let title_changed = title != row.title;
    let metadata_changed = metadata != row.metadata;
    if title_changed || metadata_changed {
        api.rt
            .store
            .set_session_fields(&s.id, title.clone(), metadata.clone())
            .await?;
        s.update_row(|r| {
            r.title = title.clone();
            r.metadata = metadata.clone();
        });
        s.append_one(EventBody::SessionUpdated {
            model: None,
            max_cost_usd: None,
            title: if title_changed { title } else { None },
            name: None,
            metadata: metadata_changed.then_some(metadata),
            vault_ids: None,
            agent: None,
        })
        .await?;
    }
    if let Some(refs) = &typed.vault_ids {
        set_vaults(&api.rt, &s, refs).await?;
    }
    Ok(Json(loaded(&api.rt, &s).await?))
}

/// Gives a session the vaults `refs` names (ids or display names; each live): the row first,
/// then the live credentials, then `session.updated` with the ids, so a reload after a crash
/// reads the same set. No change, no event.
async fn set_vaults(rt: &Runtime, s: &Arc<Session>, refs: &[String]) -> ApiResult<()> {
    if let Some(link) = &s.thread {
        return Err(ApiError::invalid(format!(
            "vault_ids: a thread uses its session's vaults; update the session {} instead",
            link.primary.id
        )));
    }
    let ids = crate::resources::vaults::session_vaults(&rt.store, refs).await?;
    if ids == s.row().vault_ids {
        return Ok(());
    }
    let (store, data_dir, read) = (rt.store.clone(), rt.paths.data_dir.clone(), ids.clone());
    let unread = |e: String| {
        ApiError::from(tether_proto::ErrorBody::new(
            tether_proto::ErrorCode::Storage,
            format!(
                "vault_ids: the vaults' credentials can't be read ({e}); the session keeps its vaults"
            ),
        ))
    };
    let secrets = tokio::task::spawn_blocking(move || {
        crate::resources::vaults::session_secrets(&store, &data_dir, &read)
    })
    .await
    .map_err(|e| unread(e.to_string()))?
    .map_err(unread)?;
    rt.store.set_session_vaults(&s.id, &ids).await?;
    s.update_row(|r| r.vault_ids = ids.clone());
    s.secrets.set(secrets);
    s.append_one(EventBody::SessionUpdated {
        model: None,
        max_cost_usd: None,
        title: None,
        name: None,
        metadata: None,
        vault_ids: Some(ids),
        agent: None,
    })
    .await?;
    Ok(())
}

pub async fn delete(
    State(api): State<Api>,
    Path(session_id): Path<String>,
) -> ApiResult<Json<DeletedSession>> {
    let s = by_id(&api, &session_id).await?;
    api.rt.delete(&s).await?;
    Ok(Json(DeletedSession {
        id: s.id.clone(),
        object_type: "session_deleted".into(),
    }))
}

pub async fn archive(
    State(api): State<Api>,
    Path(session_id): Path<String>,
) -> ApiResult<Json<HostedSession>> {
    let s = by_id(&api, &session_id).await?;
    api.rt.archive(&s).await?;
    Ok(Json(loaded(&api.rt, &s).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_bodies_tell_null_from_absent() {
        let b: UpdateBody = serde_json::from_str(r#"{"title": null, "budget": null}"#).unwrap();
        assert_eq!(b.title, Some(None));
        assert_eq!(b.budget, Some(None));
        let b: UpdateBody = serde_json::from_str(r#"{"title": "t"}"#).unwrap();
        assert_eq!(b.title, Some(Some("t".to_string())));
        assert_eq!(b.budget, None);
        assert!(serde_json::from_str::<UpdateBody>(r#"{"colour": 1}"#).is_err());
    }
}
