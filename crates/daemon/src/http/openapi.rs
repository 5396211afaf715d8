//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of what this tetherd serves, built from
//! the same route table the router is made of.

use axum::Json;
use serde_json::{Map, Value, json};

/// `(method, path, operationId, summary)` of every endpoint.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    (
        "post",
        "/v1/agents",
        "agents.create",
        "Create an agent (version 1)",
    ),
    (
        "get",
        "/v1/agents",
        "agents.list",
        "List agents (newest version of each)",
    ),
    (
        "get",
        "/v1/agents/{agent_id}",
        "agents.retrieve",
        "Get an agent; `?version=N` for an older version",
    ),
    (
        "post",
        "/v1/agents/{agent_id}",
        "agents.update",
        "Create a new version; `version` in the body is an optimistic lock",
    ),
    (
        "post",
        "/v1/agents/{agent_id}/archive",
        "agents.archive",
        "Archive an agent (no delete)",
    ),
    (
        "get",
        "/v1/agents/{agent_id}/versions",
        "agents.versions",
        "List an agent's versions",
    ),
    (
        "post",
        "/v1/sessions",
        "sessions.create",
        "Create a session",
    ),
    (
        "get",
        "/v1/sessions",
        "sessions.list",
        "List sessions (next_page and prev_page)",
    ),
    (
        "get",
        "/v1/sessions/{session_id}",
        "sessions.retrieve",
        "Get a session",
    ),
    (
        "post",
        "/v1/sessions/{session_id}",
        "sessions.update",
        "Update title, metadata or budget",
    ),
    (
        "delete",
        "/v1/sessions/{session_id}",
        "sessions.delete",
        "Delete a session, its log and workspace",
    ),
    (
        "post",
        "/v1/sessions/{session_id}/archive",
        "sessions.archive",
        "Archive a session (read-only from then on)",
    ),
    (
        "get",
        "/v1/sessions/{session_id}/events",
        "sessions.events.list",
        "A session's event history",
    ),
    (
        "post",
        "/v1/sessions/{session_id}/events",
        "sessions.events.send",
        "Send user events",
    ),
    (
        "get",
        "/v1/sessions/{session_id}/events/stream",
        "sessions.events.stream",
        "Server-Sent Events; `id:` is the seq, resume with Last-Event-ID",
    ),
    ("get", "/v1/openapi.json", "openapi", "This document"),
];

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect()
}

pub fn build() -> Value {
    let mut paths = Map::new();
    for (method, path, id, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = json!({
            "operationId": id,
            "summary": summary,
            "parameters": path_params(path),
            "responses": {
                "200": { "description": "OK" },
                "default": { "description": "Error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
            },
        });
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "tetherd", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Managed-Agents-compatible API served by a local tetherd" },
        "security": [ { "api_key": [] }, { "bearer": [] } ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "api_key": { "type": "apiKey", "in": "header", "name": "x-api-key" },
                "bearer": { "type": "http", "scheme": "bearer" },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["type", "error"],
                    "properties": {
                        "type": { "const": "error" },
                        "error": { "type": "object", "required": ["type", "message"],
                                   "properties": { "type": { "type": "string" }, "message": { "type": "string" } } },
                        "request_id": { "type": "string" },
                    },
                },
            },
        },
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}
