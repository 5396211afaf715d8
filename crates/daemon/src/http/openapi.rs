//! `GET /v1/openapi.json`: the OpenAPI 3 document of what this tetherd serves, built from
//! the route table (`routes.rs`). Request and response schemas are generated (schemars) from
//! the very types the handlers parse and answer with, so the document can't drift from the
//! code.

use axum::Json;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use tether_proto::Event;

use super::routes::{Answer, ROUTES, Route, of};

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

/// The operation object of one route.
fn operation(r: &Route, g: &mut schemars::SchemaGenerator, error: &schemars::Schema) -> Value {
    let (media, ok) = match r.answer {
        Answer::Json(ok) => ("application/json", ok(g)),
        Answer::Sse(ok) => ("text/event-stream", ok(g)),
        Answer::Bytes => (
            "application/octet-stream",
            json!({ "type": "string", "format": "binary" })
                .try_into()
                .unwrap_or_default(),
        ),
        Answer::Document => {
            return json!({ "operationId": r.id, "summary": r.summary, "responses": { "200": { "description": "OK" } } });
        }
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
        let media = if super::routes::MULTIPART_BODIES.contains(&r.id) {
            "multipart/form-data"
        } else {
            "application/json"
        };
        op["requestBody"] =
            json!({ "required": true, "content": { media: { "schema": body(g) } } });
    }
    op
}

pub fn build() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let error = of::<ErrorEnvelope>(&mut g);
    let mut paths = Map::new();
    for r in ROUTES {
        let op = operation(r, &mut g, &error);
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.verb.name()] = op;
    }
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

/// What the proto crate's schemas leave to the daemon: the built-in tool names, and that the
/// `version` of an HTTP agent update is a number when sent.
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
    // `version` on an update is optional (hosted: "omit to apply the update
    // unconditionally"), but not null.
    if let Some(Value::Object(version)) = schemas
        .get_mut("AgentChanges")
        .and_then(|o| o.pointer_mut("/properties/version"))
    {
        version.remove("nullable");
    }
}

/// One item of an event stream: a persisted event, or one of the stream's own events.
#[derive(JsonSchema)]
#[serde(untagged)]
// Only its schema is used: never built, so the variants' sizes don't matter.
#[allow(dead_code, clippy::large_enum_variant)]
pub enum StreamItem {
    Event(Event),
    Control(StreamControl),
}

/// The stream's own events: heartbeats, previews, a resync hint and errors (each `event:`
/// line names its `type`).
#[derive(JsonSchema)]
#[serde(tag = "type")]
#[allow(dead_code)]
pub enum StreamControl {
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
pub struct ErrorDetail {
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
        // Hosted: `version` on an update is optional ("omit to apply unconditionally").
        assert!(
            !schemas["AgentChanges"]["required"]
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
