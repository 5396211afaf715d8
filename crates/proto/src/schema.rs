//! JSON Schema for what serde's types alone can't say: the limits the daemon checks
//! (`metadata` sizes, the two shapes of an MCP server, the model's `effort` levels). The
//! HTTP API's `/v1/openapi.json` is generated from these, so a request the document calls
//! valid is one the daemon accepts.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::agent::{AgentModel, McpServer};

// Whitespace, as the daemon's checks see it (Rust's `char::is_whitespace`): ECMA-262's `\s`
// (the document's regex dialect) lacks U+0085, so the patterns name it.

/// Not blank: at least one character that isn't whitespace.
pub const NOT_BLANK: &str = r"[^\s\u0085]";
/// One package in its manager's syntax: no whitespace, not an option.
pub const PACKAGE: &str = r"^[^-\s\u0085][^\s\u0085]*$";
/// A host name: no whitespace, no `/`.
pub const HOST: &str = r"^[^/\s\u0085]+$";

/// Hosted limits on `metadata`: at most 16 pairs, keys up to 64 characters, values up to 512.
pub struct Metadata;

impl JsonSchema for Metadata {
    fn schema_name() -> Cow<'static, str> {
        "Metadata".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "maxProperties": 16,
            "propertyNames": { "maxLength": 64 },
            "additionalProperties": { "type": "string", "maxLength": 512 },
        })
    }
}

/// A `metadata` patch: like [`Metadata`], and a `null` value deletes the key.
pub struct MetadataPatch;

impl JsonSchema for MetadataPatch {
    fn schema_name() -> Cow<'static, str> {
        "MetadataPatch".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "maxProperties": 16,
            "propertyNames": { "maxLength": 64 },
            "additionalProperties": { "type": "string", "maxLength": 512, "nullable": true },
        })
    }
}

/// One `configs` entry of the built-in toolset. The daemon fills in the `name` enum (the tool
/// names live with the tools).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct BuiltinToolConfig {
    name: String,
    /// The same as `name` when sent (hosted clients echo it).
    #[serde(rename = "type")]
    kind: Option<String>,
    enabled: Option<bool>,
    permission_policy: Option<crate::agent::PermissionPolicy>,
}

/// The effort levels `model.effort` takes, as `{type: LEVEL}` or the bare level.
fn effort() -> serde_json::Value {
    let levels = ["low", "medium", "high", "xhigh", "max"];
    serde_json::json!({
        "anyOf": [
            { "type": "string", "enum": levels },
            { "type": "object", "required": ["type"], "properties": { "type": { "type": "string", "enum": levels } } },
        ]
    })
}

impl JsonSchema for AgentModel {
    fn schema_name() -> Cow<'static, str> {
        "AgentModel".into()
    }

    /// A model id string, or `{id, effort?, speed?}`.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "required": ["id"],
                    "additionalProperties": false,
                    "properties": {
                        "id": { "type": "string" },
                        "effort": effort(),
                        "speed": { "type": "string" },
                    },
                },
            ]
        })
    }
}

/// An MCP server name: it becomes part of the tool names the model sees (`mcp__<server>__<tool>`).
fn server_name() -> serde_json::Value {
    serde_json::json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "not": { "pattern": "__" } })
}

impl JsonSchema for McpServer {
    fn schema_name() -> Cow<'static, str> {
        "McpServer".into()
    }

    /// `{type: url, name, url}` or (tether) `{type: stdio, name, command, args?, env?}`.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                {
                    "type": "object",
                    "required": ["type", "name", "url"],
                    "additionalProperties": false,
                    "properties": {
                        "type": { "type": "string", "enum": ["url"] },
                        "name": server_name(),
                        "url": { "type": "string", "pattern": "^https?://" },
                    },
                },
                {
                    "type": "object",
                    "required": ["type", "name", "command"],
                    "additionalProperties": false,
                    "properties": {
                        "type": { "type": "string", "enum": ["stdio"] },
                        "name": server_name(),
                        "command": { "type": "string", "pattern": NOT_BLANK },
                        "args": { "type": "array", "items": { "type": "string" } },
                        "env": {
                            "type": "object",
                            "propertyNames": { "minLength": 1, "pattern": "^[^=\\u0000]*$" },
                            "additionalProperties": { "type": "string" },
                        },
                    },
                },
            ]
        })
    }
}
