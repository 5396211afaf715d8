//! MCP elicitation (issue 25): an MCP server asks the user for input in the middle of a tool
//! call (`elicitation/create`, form mode: a message and a flat `requestedSchema`). tetherd
//! records the request as a `tether.mcp_elicitation_requested` event, any client answers it
//! (`session.elicitation_answer`, `POST /v1/sessions/{id}/elicitations/{elic_id}`), the first
//! answer wins and is recorded (`tether.mcp_elicitation_answered`) before the server gets it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::method::SessionRef;

/// What the user did with an elicitation (the MCP `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ElicitationAction {
    /// Gave the requested content.
    Accept,
    /// Refused to give it; the tool call goes on without it.
    Decline,
    /// Dismissed it (tetherd also cancels on interrupt, timeout and restart).
    Cancel,
}

impl ElicitationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ElicitationAction::Accept => "accept",
            ElicitationAction::Decline => "decline",
            ElicitationAction::Cancel => "cancel",
        }
    }
}

/// How the server asks: a form tether shows, or a URL the user opens themselves (MCP
/// 2025-11-25 URL mode: sign-ins, payments, anything the client must not see).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ElicitationMode {
    #[default]
    Form,
    Url,
}

impl ElicitationMode {
    pub fn is_form(&self) -> bool {
        *self == ElicitationMode::Form
    }
}

/// Whether a URL-mode elicitation's `url` may be shown to the user as a link to open:
/// `https://` to any host, or `http://` to this machine (127.0.0.1, localhost, [::1]).
/// Anything else is refused with the reason, because a prompt-injected server could
/// otherwise phish: other schemes (`javascript:`, `file:`, `data:`), credentials before the
/// host (`https://bank.example@evil.example`), non-ASCII lookalike hosts, or characters
/// that make the shown text differ from the link.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > 2048 {
        return Err(format!(
            "the URL is {} bytes long (at most 2048)",
            url.len()
        ));
    }
    if let Some(c) = url
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_control() || *c == ' ')
    {
        return Err(format!(
            "the URL contains {c:?}: only plain ASCII without spaces or control characters is shown (non-ASCII hosts can look like others)"
        ));
    }
    let lower = url.to_ascii_lowercase();
    let (rest, secure) = if let Some(rest) = lower.strip_prefix("https://") {
        (rest, true)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        (rest, false)
    } else {
        let scheme = url.split(':').next().unwrap_or(url);
        return Err(format!(
            "`{scheme}:` is not a web link: only https:// (or http:// to this machine) is shown"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') || authority.contains('\\') {
        return Err(
            "the URL has credentials before its host (user@host), which hides the real host"
                .to_string(),
        );
    }
    let host = if authority.starts_with('[') {
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("the URL has no host".to_string());
    }
    if !secure && !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Err(format!(
            "http:// to {host} is not encrypted: only https:// (or http:// to this machine) is shown"
        ));
    }
    Ok(())
}

/// Whether an elicitation still waits for an answer.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ElicitationStatus {
    #[default]
    Pending,
    Answered,
}

/// One elicitation as the log tells it (`session.elicitations`, `GET .../elicitations`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Elicitation {
    /// `elic_...`.
    pub id: String,
    /// The session (or thread) stream it was asked in.
    pub session_id: String,
    pub mcp_server_name: String,
    /// The `agent.mcp_tool_use` event of the call it was asked during.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    pub message: String,
    /// A flat JSON Schema object: `properties` of type string, number, integer, boolean (or
    /// a string `enum`), and `required`.
    pub requested_schema: Value,
    pub status: ElicitationStatus,
    /// Set once answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ElicitationAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// Why tetherd cancelled it (interrupt, timeout, restart), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was asked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// `form`, or `url`: the user opens `url` themselves and accepts to say they did.
    #[serde(default)]
    pub mode: ElicitationMode,
    /// URL mode: the page to open, in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// URL mode: the server said the user finished on the page
    /// (`notifications/elicitation/complete`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub completed: bool,
    /// Asked in a child thread of this session: the thread (`sthr_...`); answer it by id on
    /// the session or on the thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_thread_id: Option<String>,
    /// The agent whose MCP server asks, when it is a child thread's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// URL mode: the server's own id, which its completion names (tetherd's business).
    #[serde(skip)]
    pub server_elicitation_id: Option<String>,
}

/// `session.elicitations`: the session's elicitations, oldest first (pending ones only
/// unless `all`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListElicitations {
    pub session: SessionRef,
    /// One thread's only (its `sthr_` id or its agent's name); None: the session's, its
    /// child threads' included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    #[serde(default)]
    pub all: bool,
}

/// `session.elicitation_answer`: answers one pending elicitation. `content` goes with
/// `accept` (checked against the requested schema) and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerElicitation {
    pub session: SessionRef,
    /// The thread that asked (its `sthr_` id or its agent's name); None: found by the id
    /// among the session's and its child threads'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    pub elicitation_id: String,
    pub action: ElicitationAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
}

/// The body of `POST /v1/sessions/{id}/elicitations/{elicitation_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElicitationReply {
    pub action: ElicitationAction,
    /// With `accept`: an object matching the requested schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Map<String, Value>>,
}

/// One field of a requested schema, as a form shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormField {
    pub name: String,
    pub title: String,
    pub description: Option<String>,
    pub kind: FieldKind,
    pub required: bool,
    pub default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Number,
    Integer,
    Boolean,
    /// A string that must be one of these values (with their display titles).
    Enum(Vec<(String, String)>),
}

/// The fields of a requested schema in its order (`properties` as stored), for forms.
pub fn form_fields(schema: &Value) -> Vec<FormField> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut fields: Vec<FormField> = props
        .iter()
        .map(|(name, p)| FormField {
            name: name.clone(),
            title: p
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string(),
            description: p
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            kind: field_kind(p),
            required: required.contains(&name.as_str()),
            default: p.get("default").cloned(),
        })
        .collect();
    // JSON objects lose the server's order of `properties` on the way here; `required` is an
    // array and keeps it. So: the required fields in the server's order, then the rest by name.
    fields.sort_by_key(|f| {
        required
            .iter()
            .position(|r| *r == f.name)
            .unwrap_or(usize::MAX)
    });
    fields
}

fn field_kind(p: &Value) -> FieldKind {
    if let Some(options) = enum_options(p) {
        return FieldKind::Enum(options);
    }
    match p.get("type").and_then(Value::as_str) {
        Some("number") => FieldKind::Number,
        Some("integer") => FieldKind::Integer,
        Some("boolean") => FieldKind::Boolean,
        _ => FieldKind::String,
    }
}

/// The values (and titles) of an enum property: `enum` (+ legacy `enumNames`) or `oneOf` of
/// `{const, title}`.
fn enum_options(p: &Value) -> Option<Vec<(String, String)>> {
    if let Some(values) = p.get("enum").and_then(Value::as_array) {
        let names = p.get("enumNames").and_then(Value::as_array);
        return Some(
            values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let v = v.as_str()?.to_string();
                    let title = names
                        .and_then(|n| n.get(i))
                        .and_then(Value::as_str)
                        .map_or_else(|| v.clone(), str::to_string);
                    Some((v, title))
                })
                .collect(),
        );
    }
    let one_of = p.get("oneOf").or_else(|| p.get("anyOf"))?.as_array()?;
    Some(
        one_of
            .iter()
            .filter_map(|o| {
                let v = o.get("const")?.as_str()?.to_string();
                let title = o
                    .get("title")
                    .and_then(Value::as_str)
                    .map_or_else(|| v.clone(), str::to_string);
                Some((v, title))
            })
            .collect(),
    )
}

/// Checks `content` against a requested schema: an object, every required field present,
/// no field the schema lacks, each value of its type (string length and format, number and
/// integer range, enum membership). The error names the field and says what it must be.
pub fn validate(schema: &Value, content: &Value) -> Result<(), String> {
    let Some(content) = content.as_object() else {
        return Err(format!(
            "content must be a JSON object of the requested fields, got {content}"
        ));
    };
    let fields = form_fields(schema);
    for f in &fields {
        if f.required && !content.contains_key(&f.name) {
            return Err(format!(
                "content.{}: required by the server but missing",
                f.name
            ));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    for (name, value) in content {
        let Some(p) = props.and_then(|p| p.get(name)) else {
            let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            return Err(format!(
                "content.{name}: the server did not ask for this field (it asked for: {})",
                known.join(", ")
            ));
        };
        check_value(name, p, value)?;
    }
    Ok(())
}

fn check_value(name: &str, p: &Value, value: &Value) -> Result<(), String> {
    let num = |k: &str| p.get(k).and_then(Value::as_f64);
    let uint = |k: &str| p.get(k).and_then(Value::as_u64);
    if let Some(options) = enum_options(p) {
        let ok = value
            .as_str()
            .is_some_and(|v| options.iter().any(|(o, _)| o == v));
        if !ok {
            let values: Vec<&str> = options.iter().map(|(o, _)| o.as_str()).collect();
            return Err(format!(
                "content.{name}: must be one of {}, got {value}",
                values.join(", ")
            ));
        }
        return Ok(());
    }
    match p.get("type").and_then(Value::as_str) {
        Some("boolean") => {
            if !value.is_boolean() {
                return Err(format!(
                    "content.{name}: must be true or false, got {value}"
                ));
            }
        }
        Some(kind @ ("number" | "integer")) => {
            let Some(n) = value.as_f64() else {
                let what = if kind == "integer" {
                    "an integer"
                } else {
                    "a number"
                };
                return Err(format!("content.{name}: must be {what}, got {value}"));
            };
            if kind == "integer" && (n.fract() != 0.0 || !value.is_i64() && !value.is_u64()) {
                return Err(format!(
                    "content.{name}: must be a whole number, got {value}"
                ));
            }
            if let Some(min) = num("minimum")
                && n < min
            {
                return Err(format!("content.{name}: must be at least {min}, got {n}"));
            }
            if let Some(max) = num("maximum")
                && n > max
            {
                return Err(format!("content.{name}: must be at most {max}, got {n}"));
            }
        }
        _ => {
            let Some(s) = value.as_str() else {
                return Err(format!("content.{name}: must be a string, got {value}"));
            };
            let chars = s.chars().count() as u64;
            if let Some(min) = uint("minLength")
                && chars < min
            {
                return Err(format!(
                    "content.{name}: must be at least {min} characters, got {chars}"
                ));
            }
            if let Some(max) = uint("maxLength")
                && chars > max
            {
                return Err(format!(
                    "content.{name}: must be at most {max} characters, got {chars}"
                ));
            }
            if p.get("format").and_then(Value::as_str) == Some("email")
                && !s
                    .split_once('@')
                    .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
            {
                return Err(format!(
                    "content.{name}: must be an email address, got {s:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "title": "Your name", "minLength": 1, "maxLength": 10},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "ratio": {"type": "number", "maximum": 1.5},
                "color": {"type": "string", "enum": ["red", "green"], "enumNames": ["Red", "Green"]},
                "size": {"type": "string", "oneOf": [{"const": "s", "title": "Small"}, {"const": "l", "title": "Large"}]},
                "subscribe": {"type": "boolean", "default": false},
                "email": {"type": "string", "format": "email"}
            },
            "required": ["name", "age"]
        })
    }

    #[test]
    fn good_content_passes() {
        let ok = json!({"name": "Ada", "age": 36, "ratio": 1.0, "color": "red", "size": "l", "subscribe": true, "email": "a@b.io"});
        assert_eq!(validate(&schema(), &ok), Ok(()));
        assert_eq!(validate(&schema(), &json!({"name": "A", "age": 0})), Ok(()));
    }

    #[test]
    fn bad_content_names_the_field() {
        let cases = [
            (json!({"age": 3}), "content.name: required"),
            (
                json!({"name": "", "age": 3}),
                "content.name: must be at least 1",
            ),
            (
                json!({"name": "abcdefghijk", "age": 3}),
                "content.name: must be at most 10",
            ),
            (
                json!({"name": 7, "age": 3}),
                "content.name: must be a string",
            ),
            (
                json!({"name": "a", "age": 3.5}),
                "content.age: must be a whole",
            ),
            (
                json!({"name": "a", "age": "3"}),
                "content.age: must be an integer",
            ),
            (
                json!({"name": "a", "age": 151}),
                "content.age: must be at most 150",
            ),
            (
                json!({"name": "a", "age": -1}),
                "content.age: must be at least 0",
            ),
            (
                json!({"name": "a", "age": 1, "ratio": 2}),
                "content.ratio: must be at most 1.5",
            ),
            (
                json!({"name": "a", "age": 1, "color": "blue"}),
                "content.color: must be one of red, green",
            ),
            (
                json!({"name": "a", "age": 1, "size": "m"}),
                "content.size: must be one of s, l",
            ),
            (
                json!({"name": "a", "age": 1, "subscribe": "yes"}),
                "content.subscribe: must be true",
            ),
            (
                json!({"name": "a", "age": 1, "email": "nope"}),
                "content.email: must be an email",
            ),
            (
                json!({"name": "a", "age": 1, "extra": 1}),
                "content.extra: the server did not ask",
            ),
            (json!(["a"]), "content must be a JSON object"),
        ];
        for (content, want) in cases {
            let err = validate(&schema(), &content).unwrap_err();
            assert!(err.starts_with(want), "{content}: {err}");
        }
    }

    #[test]
    fn form_fields_keep_titles_kinds_and_requirement() {
        let fields = form_fields(&schema());
        let name = fields.iter().find(|f| f.name == "name").unwrap();
        assert_eq!(name.title, "Your name");
        assert!(name.required);
        let color = fields.iter().find(|f| f.name == "color").unwrap();
        assert_eq!(
            color.kind,
            FieldKind::Enum(vec![
                ("red".into(), "Red".into()),
                ("green".into(), "Green".into())
            ])
        );
        let size = fields.iter().find(|f| f.name == "size").unwrap();
        assert!(matches!(&size.kind, FieldKind::Enum(o) if o[1] == ("l".into(), "Large".into())));
        let sub = fields.iter().find(|f| f.name == "subscribe").unwrap();
        assert_eq!(sub.kind, FieldKind::Boolean);
        assert!(!sub.required);
        assert_eq!(sub.default, Some(json!(false)));
    }

    #[test]
    fn required_fields_come_first_in_the_order_the_server_gave() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"}, "age": {"type": "integer"},
                "color": {"type": "string"}, "bio": {"type": "string"}
            },
            "required": ["name", "age"]
        });
        let order: Vec<String> = form_fields(&schema).into_iter().map(|f| f.name).collect();
        assert_eq!(order, ["name", "age", "bio", "color"]);
    }

    #[test]
    fn only_web_links_a_person_can_read_are_shown() {
        for ok in [
            "https://example.com/login?state=abc#x",
            "HTTPS://Example.com:8443/",
            "http://127.0.0.1:8080/callback",
            "http://localhost/cb",
            "http://[::1]:9/cb",
            "https://xn--80ak6aa92e.com/",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("javascript:alert(1)", "`javascript:` is not a web link"),
            ("data:text/html,<b>x</b>", "`data:` is not a web link"),
            ("file:///etc/passwd", "`file:` is not a web link"),
            ("https//example.com", "is not a web link"),
            (
                "http://example.com/",
                "http:// to example.com is not encrypted",
            ),
            ("http://localhost.evil.com/", "not encrypted"),
            (
                "https://bank.example@evil.example/",
                "credentials before its host",
            ),
            ("https://\u{430}pple.com/", "non-ASCII"),
            ("https://example.com/a b", "without spaces"),
            ("https://example.com/\u{202e}gpj.exe", "non-ASCII"),
            ("https:///path", "no host"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
