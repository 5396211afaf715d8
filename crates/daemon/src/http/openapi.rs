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
    query: &'static [(&'static str, &'static str)],
    body: Option<SchemaFn>,
    ok: SchemaFn,
    /// Answers `text/event-stream` of `ok` items instead of one JSON object.
    sse: bool,
}

const PAGED: &[(&str, &str)] = &[
    ("limit", "integer"),
    ("page", "string"),
    ("order", "string"),
    ("include_archived", "boolean"),
    ("created_at[gte]", "string"),
    ("created_at[lte]", "string"),
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
        query: &[("version", "integer")],
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
            ("limit", "integer"),
            ("page", "string"),
            ("order", "string"),
            ("include_archived", "boolean"),
            ("statuses[]", "string"),
            ("agent_id", "string"),
            ("agent_version", "integer"),
            ("created_at[gt]", "string"),
            ("created_at[gte]", "string"),
            ("created_at[lt]", "string"),
            ("created_at[lte]", "string"),
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
            ("limit", "integer"),
            ("page", "string"),
            ("order", "string"),
            ("types[]", "string"),
            ("created_at[gte]", "string"),
            ("created_at[lte]", "string"),
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
        query: &[("event_deltas[]", "string"), ("after_seq", "integer")],
        body: None,
        ok: of::<Event>,
        sse: true,
    },
];

fn parameters(r: &Route) -> Vec<Value> {
    let path = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }));
    let query = r
        .query
        .iter()
        .map(|(name, ty)| json!({ "name": name, "in": "query", "required": false, "schema": { "type": ty } }));
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
    let schemas: Map<String, Value> = g.take_definitions(true).into_iter().collect();
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
}
