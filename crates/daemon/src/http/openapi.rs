//! `GET /v1/openapi.json`: the OpenAPI 3 document of what this tetherd serves. Request and
//! response schemas are generated (schemars) from the very types the handlers parse and
//! answer with, so the document can't drift from the code.

use axum::Json;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use tether_proto::Event;
use tether_proto::agent::{AgentChanges, AgentSpec};
use tether_proto::environment::{Environment, EnvironmentChanges, EnvironmentSpec};

use super::environments::DeletedEnvironment;
use super::events::SendBody;
use super::sessions::{CreateBody, UpdateBody};
use super::shapes::{DeletedSession, HostedAgent, HostedSession, Page, SentEvents, SessionPage};

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// One endpoint: how it is reached, what it takes, what it answers.
struct Route {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    query: &'static [(&'static str, Param)],
    body: Option<SchemaFn>,
    ok: SchemaFn,
    /// Answers `text/event-stream` of `ok` items instead of one JSON object.
    sse: bool,
}

/// A query parameter's schema: the values the handler accepts (see `query.rs`).
#[derive(Clone, Copy)]
enum Param {
    /// `limit`: 1 to the maximum.
    Limit(u32),
    /// An opaque cursor from `next_page`/`prev_page`.
    Page,
    Order,
    Bool,
    /// RFC 3339, any offset.
    Time,
    Text,
    /// A whole number that fits a u32 (agent versions).
    Version,
    /// A whole number (event seqs).
    Seq,
    /// Repeated `key[]=`, each one of these values.
    List(&'static [&'static str]),
    /// Repeated `key[]=`, any strings.
    Strings,
}

impl Param {
    fn schema(self) -> Value {
        match self {
            Param::Limit(max) => json!({ "type": "integer", "minimum": 1, "maximum": max }),
            Param::Page => json!({ "type": "string", "pattern": "^page_([0-9a-f]{2})+$" }),
            Param::Order => json!({ "type": "string", "enum": ["asc", "desc"] }),
            Param::Bool => json!({ "type": "boolean" }),
            Param::Time => json!({ "type": "string", "format": "date-time" }),
            Param::Text => json!({ "type": "string" }),
            Param::Version => json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX }),
            Param::Seq => json!({ "type": "integer", "minimum": 0, "maximum": i64::MAX }),
            Param::List(values) => {
                json!({ "type": "array", "items": { "type": "string", "enum": values } })
            }
            Param::Strings => json!({ "type": "array", "items": { "type": "string" } }),
        }
    }
}

/// `statuses[]` values.
const STATUSES: &[&str] = &["rescheduling", "running", "idle", "terminated"];

const PAGED: &[(&str, Param)] = &[
    ("limit", Param::Limit(100)),
    ("page", Param::Page),
    ("order", Param::Order),
    ("include_archived", Param::Bool),
    ("created_at[gte]", Param::Time),
    ("created_at[lte]", Param::Time),
];

const ROUTES: &[Route] = &[
    Route {
        method: "post",
        path: "/v1/agents",
        id: "agents.create",
        summary: "Create an agent (version 1)",
        query: &[],
        body: Some(of::<AgentSpec>),
        ok: of::<HostedAgent>,
        sse: false,
    },
    Route {
        method: "get",
        path: "/v1/agents",
        id: "agents.list",
        summary: "List agents (newest version of each)",
        query: PAGED,
        body: None,
        ok: of::<Page<HostedAgent>>,
        sse: false,
    },
    Route {
        method: "get",
        path: "/v1/agents/{agent_id}",
        id: "agents.retrieve",
        summary: "Get an agent; `?version=N` for an older version",
        query: &[("version", Param::Version)],
        body: None,
        ok: of::<HostedAgent>,
        sse: false,
    },
    Route {
        method: "post",
        path: "/v1/agents/{agent_id}",
        id: "agents.update",
        summary: "Create a new version; `version` is an optimistic lock, `metadata` a patch",
        query: &[],
        body: Some(of::<AgentChanges>),
        ok: of::<HostedAgent>,
        sse: false,
    },
    Route {
        method: "post",
        path: "/v1/agents/{agent_id}/archive",
        id: "agents.archive",
        summary: "Archive an agent (agents have no delete)",
        query: &[],
        body: None,
        ok: of::<HostedAgent>,
        sse: false,
    },
    Route {
        method: "get",
        path: "/v1/agents/{agent_id}/versions",
        id: "agents.versions",
        summary: "List an agent's versions",
        query: PAGED,
        body: None,
        ok: of::<Page<HostedAgent>>,
        sse: false,
    },
    Route {
        method: "post",
        path: "/v1/environments",
        id: "environments.create",
        summary: "Create an environment (starts its layer build)",
        query: &[],
        body: Some(of::<EnvironmentSpec>),
        ok: of::<Environment>,
        sse: false,
    },
    Route {
        method: "get",
        path: "/v1/environments",
        id: "environments.list",
        summary: "List environments",
        query: PAGED,
        body: None,
        ok: of::<Page<Environment>>,
        sse: false,
    },
    Route {
        method: "get",
        path: "/v1/environments/{environment_id}",
        id: "environments.retrieve",
        summary: "Get an environment",
        query: &[],
        body: None,
        ok: of::<Environment>,
        sse: false,
    },
    Route {
        method: "post",
        path: "/v1/environments/{environment_id}",
        id: "environments.update",
        summary: "Update an environment (new sessions get the new config)",
        query: &[],
        body: Some(of::<EnvironmentChanges>),
        ok: of::<Environment>,
        sse: false,
    },
    Route {
        method: "delete",
        path: "/v1/environments/{environment_id}",
        id: "environments.delete",
        summary: "Delete an environment",
        query: &[],
        body: None,
        ok: of::<DeletedEnvironment>,
        sse: false,
    },
    Route {
        method: "post",
        path: "/v1/environments/{environment_id}/archive",
        id: "environments.archive",
        summary: "Archive an environment",
        query: &[],
        body: None,
        ok: of::<Environment>,
        sse: false,
    },
    Route {
        method: "post",
        path: "/v1/sessions",
        id: "sessions.create",
        summary: "Create a session",
        query: &[],
        body: Some(of::<CreateBody>),
        ok: of::<HostedSession>,
        sse: false,
    },
    Route {
        method: "get",
        path: "/v1/sessions",
        id: "sessions.list",
        summary: "List sessions, newest first; pages both ways",
        query: &[
            ("limit", Param::Limit(100)),
            ("page", Param::Page),
            ("order", Param::Order),
            ("include_archived", Param::Bool),
            ("statuses[]", Param::List(STATUSES)),
            ("agent_id", Param::Text),
            ("agent_version", Param::Version),
            ("created_at[gt]", Param::Time),
            ("created_at[gte]", Param::Time),
            ("created_at[lt]", Param::Time),
            ("created_at[lte]", Param::Time),
        ],
        body: None,
        ok: of::<SessionPage>,
        sse: false,
    },
    Route {
        method: "get",
        path: "/v1/sessions/{session_id}",
        id: "sessions.retrieve",
        summary: "Get a session",
        query: &[],
        body: None,
        ok: of::<HostedSession>,
        sse: false,
    },
    Route {
        method: "post",
        path: "/v1/sessions/{session_id}",
        id: "sessions.update",
        summary: "Update title, metadata (a patch) or budget",
        query: &[],
        body: Some(of::<UpdateBody>),
        ok: of::<HostedSession>,
        sse: false,
    },
    Route {
        method: "delete",
        path: "/v1/sessions/{session_id}",
        id: "sessions.delete",
        summary: "Delete a session with its log and workspace",
        query: &[],
        body: None,
        ok: of::<DeletedSession>,
        sse: false,
    },
    Route {
        method: "post",
        path: "/v1/sessions/{session_id}/archive",
        id: "sessions.archive",
        summary: "Archive a session (read-only from then on)",
        query: &[],
        body: None,
        ok: of::<HostedSession>,
        sse: false,
    },
    Route {
        method: "get",
        path: "/v1/sessions/{session_id}/events",
        id: "sessions.events.list",
        summary: "A session's event history, oldest first",
        query: &[
            ("limit", Param::Limit(1000)),
            ("page", Param::Page),
            ("order", Param::Order),
            ("types[]", Param::Strings),
            ("created_at[gte]", Param::Time),
            ("created_at[lte]", Param::Time),
        ],
        body: None,
        ok: of::<Page<Event>>,
        sse: false,
    },
    Route {
        method: "post",
        path: "/v1/sessions/{session_id}/events",
        id: "sessions.events.send",
        summary: "Send user events",
        query: &[],
        body: Some(of::<SendBody>),
        ok: of::<SentEvents>,
        sse: false,
    },
    Route {
        method: "get",
        path: "/v1/sessions/{session_id}/events/stream",
        id: "sessions.events.stream",
        summary: "Server-Sent Events: `id:` is the event's seq; resume with Last-Event-ID or ?after_seq=; `event_deltas[]` opts into previews",
        query: &[
            (
                "event_deltas[]",
                Param::List(&["agent.message", "agent.thinking"]),
            ),
            ("after_seq", Param::Seq),
        ],
        body: None,
        ok: of::<StreamItem>,
        sse: true,
    },
];

fn parameters(r: &Route) -> Vec<Value> {
    let path = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }));
    let query = r.query.iter().map(
        |(name, p)| json!({ "name": name, "in": "query", "required": false, "schema": p.schema() }),
    );
    path.chain(query).collect()
}

pub fn build() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let error = of::<ErrorEnvelope>(&mut g);
    let mut paths = Map::new();
    for r in ROUTES {
        let ok = (r.ok)(&mut g);
        let media = if r.sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut op = json!({
            "operationId": r.id,
            "summary": r.summary,
            "parameters": parameters(r),
            "responses": {
                "200": { "description": "OK", "content": { media: { "schema": ok } } },
                "default": { "description": "Error", "content": { "application/json": { "schema": error } } },
            },
        });
        if let Some(body) = r.body {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": body(&mut g) } } });
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    paths.insert(
        "/v1/openapi.json".into(),
        json!({ "get": { "operationId": "openapi", "summary": "This document", "responses": { "200": { "description": "OK" } } } }),
    );
    let mut schemas: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    state_daemon_rules(&mut schemas);
    json!({
        "openapi": "3.0.3",
        "info": { "title": "tetherd", "version": env!("CARGO_PKG_VERSION"),
                  "description": "The Managed-Agents-compatible API of a local tetherd" },
        "security": [ { "api_key": [] }, { "bearer": [] } ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "api_key": { "type": "apiKey", "in": "header", "name": "x-api-key" },
                "bearer": { "type": "http", "scheme": "bearer" },
            },
            "schemas": schemas,
        },
    })
}

/// What the proto crate's schemas leave to the daemon: the built-in tool names, and that HTTP
/// updates of an agent carry the `version` they are based on.
fn state_daemon_rules(schemas: &mut Map<String, Value>) {
    let tools: Vec<&str> = crate::tools::TOOL_NAMES.to_vec();
    if let Some(name) = schemas
        .get_mut("BuiltinToolConfig")
        .and_then(|s| s.pointer_mut("/properties/name"))
    {
        name["enum"] = json!(tools);
    }
    // A custom tool can't take a built-in's name, nor the `mcp__` prefix of MCP tools.
    if let Some(Value::Array(variants)) = schemas
        .get_mut("AgentTool")
        .and_then(|s| s.get_mut("oneOf"))
    {
        for v in variants {
            let custom = v.pointer("/properties/type/const") == Some(&json!("custom"))
                || v.pointer("/properties/type/enum") == Some(&json!(["custom"]));
            if custom && let Some(name) = v.pointer_mut("/properties/name") {
                name["not"] = json!({ "anyOf": [
                    { "pattern": format!("^{}", crate::tools::mcp_names::PREFIX) },
                    { "enum": tools },
                ] });
            }
        }
    }
    if let Some(Value::Object(o)) = schemas.get_mut("AgentChanges") {
        if let Value::Array(required) = o.entry("required").or_insert_with(|| json!([])) {
            required.push(json!("version"));
        }
        if let Some(Value::Object(version)) =
            o.get_mut("properties").and_then(|p| p.get_mut("version"))
        {
            version.remove("nullable");
        }
    }
}

/// One item of an event stream: a persisted event, or one of the stream's own events.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum StreamItem {
    Event(Event),
    Control(StreamControl),
}

/// The stream's own events: heartbeats, previews, a resync hint and errors (each `event:`
/// line names its `type`).
#[derive(JsonSchema)]
#[serde(tag = "type")]
#[allow(dead_code)]
enum StreamControl {
    #[serde(rename = "ping")]
    Ping {},
    /// A preview starts (`event_deltas[]`).
    #[serde(rename = "event_start")]
    EventStart { event: Value },
    /// More text of a preview.
    #[serde(rename = "event_delta")]
    EventDelta { event_id: String, delta: Value },
    /// The reader fell behind: reconnect with `Last-Event-ID: <after_seq>`.
    #[serde(rename = "resync")]
    Resync { after_seq: u64, message: String },
    /// The stream ends with this error (e.g. tetherd is stopping).
    #[serde(rename = "error")]
    Error { error: ErrorDetail },
}

/// The error envelope, for the document only (errors are built in `error.rs`).
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ErrorEnvelope {
    /// Always `error`.
    r#type: String,
    error: ErrorDetail,
    request_id: String,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `api_error` or `overloaded_error`.
    r#type: String,
    message: String,
}

pub async fn document() -> Json<Value> {
    Json(build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_and_bodies_are_typed() {
        let doc = build();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        let create = &doc["paths"]["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert!(create.to_string().contains("CreateBody"), "{create}");
        assert!(schemas["CreateBody"].to_string().contains("environment_id"));
        assert!(schemas["Event"].to_string().contains("agent.tool_use"));
        assert_eq!(
            doc["paths"]["/v1/sessions/{session_id}/events/stream"]["get"]["parameters"][0]["name"],
            "session_id"
        );
    }

    #[test]
    fn the_document_states_what_the_handlers_check() {
        let doc = build();
        let schemas = &doc["components"]["schemas"];
        let limit = &doc["paths"]["/v1/agents"]["get"]["parameters"][0];
        assert_eq!(
            (
                limit["name"].as_str(),
                &limit["schema"]["minimum"],
                &limit["schema"]["maximum"]
            ),
            (Some("limit"), &json!(1), &json!(100))
        );
        assert_eq!(schemas["AgentSpec"]["properties"]["name"]["minLength"], 1);
        assert_eq!(
            schemas["EnvironmentSpec"]["properties"]["name"]["minLength"],
            1
        );
        assert_eq!(schemas["SendBody"]["properties"]["events"]["minItems"], 1);
        assert_eq!(
            schemas["AgentChanges"]["properties"]["version"]["maximum"],
            u32::MAX
        );
        assert!(
            schemas["AgentChanges"]["required"]
                .to_string()
                .contains("version")
        );
        assert!(
            schemas["BuiltinToolConfig"]
                .to_string()
                .contains("web_fetch")
        );
        // The stream's own `error` event is part of what it answers.
        assert!(schemas["StreamControl"].to_string().contains("\"error\""));
    }
}
