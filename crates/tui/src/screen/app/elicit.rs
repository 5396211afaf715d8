//! The MCP elicitation prompt (issue 25): an MCP server asked the user for input during a
//! tool call. One input per field of its requested schema; tab moves between them, enter
//! accepts, ctrl-d declines, ctrl-x cancels, esc puts it away (ctrl-a brings it back). In URL
//! mode it shows the link to open (tether never opens it) and enter says "I opened it". A
//! child thread's question is labelled with its agent. It opens by itself
//! when nothing else is open (never on a read-only client) and closes when the answer is
//! recorded, whoever answered.

use std::collections::BTreeSet;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Map, Value};
use tether_proto::elicitation::{
    ElicitationAction, ElicitationMode, FieldKind, FormField, form_fields, validate,
};
use tether_proto::{Event, EventBody};

use super::{Cmd, Effect, Overlay, State};

/// One request as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub id: String,
    pub server: String,
    pub message: String,
    pub schema: Value,
    /// The child thread's agent whose server asks (None: the session's own).
    pub agent: Option<String>,
    /// URL mode: the page the user is to open themselves (never opened by tether).
    pub url: Option<String>,
}

/// The session's pending elicitations and which the user put away or already answered here.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    pub asked: Vec<Asked>,
    put_away: BTreeSet<String>,
    /// Answered from this client; closed for good once its answered event arrives.
    sent: BTreeSet<String>,
}

impl Pending {
    /// Folds an event of the primary's stream (a child thread's come cross-posted).
    pub fn apply(&mut self, e: &Event) {
        match &e.body {
            EventBody::McpElicitationRequested {
                elicitation_id,
                mcp_server_name,
                message,
                requested_schema,
                mode,
                url,
                agent_name,
                ..
            } if !self.asked.iter().any(|a| &a.id == elicitation_id) => self.asked.push(Asked {
                id: elicitation_id.clone(),
                server: mcp_server_name.clone(),
                message: message.clone(),
                schema: requested_schema.clone(),
                agent: agent_name.clone(),
                url: (*mode == ElicitationMode::Url).then(|| url.clone().unwrap_or_default()),
            }),
            // Answered (here or elsewhere), or the server said the page is done.
            EventBody::McpElicitationAnswered { elicitation_id, .. }
            | EventBody::McpElicitationCompleted { elicitation_id } => {
                self.asked.retain(|a| &a.id != elicitation_id);
                self.put_away.remove(elicitation_id);
                self.sent.remove(elicitation_id);
            }
            _ => {}
        }
    }

    pub fn get(&self, id: &str) -> Option<&Asked> {
        self.asked.iter().find(|a| a.id == id)
    }

    /// Pending ones whose prompt is not shown (for ctrl-a).
    pub fn put_away_any(&self) -> bool {
        self.asked.iter().any(|a| self.put_away.contains(&a.id))
    }
}

/// What is typed into one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Text(String),
    Bool(bool),
    /// An enum's option (index), or none chosen yet.
    Choice(Option<usize>),
}

/// The prompt's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub fields: Vec<FormField>,
    pub inputs: Vec<Input>,
    pub focus: usize,
    /// Why enter did not send (a field that does not fit), shown under the form.
    pub error: Option<String>,
}

impl Form {
    pub fn of(schema: &Value) -> Form {
        let fields = form_fields(schema);
        let inputs = fields
            .iter()
            .map(|f| match &f.kind {
                FieldKind::Boolean => Input::Bool(f.default == Some(Value::Bool(true))),
                FieldKind::Enum(options) => Input::Choice(
                    f.default
                        .as_ref()
                        .and_then(Value::as_str)
                        .and_then(|d| options.iter().position(|(v, _)| v == d)),
                ),
                _ => Input::Text(match &f.default {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ Value::Number(_)) => v.to_string(),
                    _ => String::new(),
                }),
            })
            .collect();
        Form {
            fields,
            inputs,
            focus: 0,
            error: None,
        }
    }

    /// The content to accept with: empty text fields and unchosen enums left out, numbers
    /// parsed (a field that doesn't parse is sent as text, and the schema check names it).
    pub fn content(&self) -> Value {
        let mut out = Map::new();
        for (f, input) in self.fields.iter().zip(&self.inputs) {
            let v = match (input, &f.kind) {
                (Input::Bool(b), _) => Value::Bool(*b),
                (Input::Choice(Some(i)), FieldKind::Enum(options)) => match options.get(*i) {
                    Some((v, _)) => Value::String(v.clone()),
                    None => continue,
                },
                (Input::Choice(_), _) => continue,
                // Left out, so a required one is refused as missing (clearer than "too short").
                (Input::Text(t), _) if t.trim().is_empty() => continue,
                (Input::Text(t), FieldKind::Integer) => t
                    .trim()
                    .parse::<i64>()
                    .map_or_else(|_| Value::String(t.clone()), Value::from),
                (Input::Text(t), FieldKind::Number) => t
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(t.clone()), Value::Number),
                (Input::Text(t), _) => Value::String(t.clone()),
            };
            out.insert(f.name.clone(), v);
        }
        Value::Object(out)
    }
}

impl State {
    /// Opens the prompt of the first pending elicitation when nothing else is open and the
    /// user isn't typing; closes a prompt whose elicitation was answered (here or elsewhere).
    pub(super) fn sync_elicitation(&mut self) {
        if let Overlay::Elicitation { id, .. } = &self.overlay
            && self.elicitations.get(id).is_none()
        {
            self.notice = Some("the MCP server's question was answered".into());
            self.overlay = Overlay::None;
        }
        if !self.may_open_prompt() {
            return;
        }
        let p = &self.elicitations;
        if let Some(a) = p
            .asked
            .iter()
            .find(|a| !p.put_away.contains(&a.id) && !p.sent.contains(&a.id))
        {
            self.overlay = Overlay::Elicitation {
                id: a.id.clone(),
                form: Form::of(&a.schema),
            };
        }
    }

    /// ctrl-a with nothing else put away: the elicitation put away, prompted again.
    pub(super) fn reopen_elicitation(&mut self) -> Option<Vec<Effect>> {
        if self.read_only || self.overlay != Overlay::None {
            return None;
        }
        let a = self
            .elicitations
            .asked
            .iter()
            .find(|a| self.elicitations.put_away.contains(&a.id))?
            .clone();
        self.elicitations.put_away.remove(&a.id);
        self.overlay = Overlay::Elicitation {
            id: a.id,
            form: Form::of(&a.schema),
        };
        Some(Vec::new())
    }
}

/// Keys of the open prompt.
pub(super) fn key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    let Overlay::Elicitation { id, form } = &mut s.overlay else {
        return Vec::new();
    };
    let id = id.clone();
    let n = form.fields.len();
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    match k.code {
        KeyCode::Esc => {
            s.elicitations.put_away.insert(id);
            s.overlay = Overlay::None;
            s.notice = Some(
                "ctrl-a reopens the MCP server's question (or `tether elicitations answer`)".into(),
            );
        }
        KeyCode::Char('d') if ctrl => return send(s, id, ElicitationAction::Decline, None),
        KeyCode::Char('x') if ctrl => return send(s, id, ElicitationAction::Cancel, None),
        // URL mode: enter says "I opened it"; the server gets no content.
        KeyCode::Enter if s.elicitations.get(&id).is_some_and(|a| a.url.is_some()) => {
            return send(s, id, ElicitationAction::Accept, None);
        }
        KeyCode::Enter => {
            let content = form.content();
            let schema = s.elicitations.get(&id).map(|a| a.schema.clone());
            if let Some(schema) = schema
                && let Err(why) = validate(&schema, &content)
            {
                if let Overlay::Elicitation { form, .. } = &mut s.overlay {
                    form.error = Some(why);
                }
                return Vec::new();
            }
            return send(s, id, ElicitationAction::Accept, Some(content));
        }
        KeyCode::Tab | KeyCode::Down if n > 0 => form.focus = (form.focus + 1) % n,
        KeyCode::BackTab | KeyCode::Up if n > 0 => form.focus = (form.focus + n - 1) % n,
        _ => {
            let Some(input) = form.inputs.get_mut(form.focus) else {
                return Vec::new();
            };
            let kind = &form.fields[form.focus].kind;
            match (input, k.code) {
                (Input::Bool(b), KeyCode::Char(' ') | KeyCode::Left | KeyCode::Right) => *b = !*b,
                (Input::Bool(b), KeyCode::Char('y')) => *b = true,
                (Input::Bool(b), KeyCode::Char('n')) => *b = false,
                (Input::Choice(c), KeyCode::Char(' ') | KeyCode::Right) => {
                    let len = options_len(kind);
                    *c = match *c {
                        None if len > 0 => Some(0),
                        Some(i) if i + 1 < len => Some(i + 1),
                        _ => None,
                    };
                }
                (Input::Choice(c), KeyCode::Left) => {
                    let len = options_len(kind);
                    *c = match *c {
                        None if len > 0 => Some(len - 1),
                        Some(i) if i > 0 => Some(i - 1),
                        _ => None,
                    };
                }
                (Input::Text(t), KeyCode::Backspace) => {
                    t.pop();
                }
                (Input::Text(t), KeyCode::Char(c)) if !ctrl => t.push(c),
                _ => {}
            }
            form.error = None;
        }
    }
    Vec::new()
}

fn options_len(kind: &FieldKind) -> usize {
    match kind {
        FieldKind::Enum(o) => o.len(),
        _ => 0,
    }
}

fn send(
    s: &mut State,
    id: String,
    action: ElicitationAction,
    content: Option<Value>,
) -> Vec<Effect> {
    s.elicitations.sent.insert(id.clone());
    s.overlay = Overlay::None;
    // A refusal (another client answered first) replaces it with the daemon's word.
    s.notice = Some(format!(
        "{} the MCP server's question",
        match action {
            ElicitationAction::Accept => "answered",
            ElicitationAction::Decline => "declined",
            ElicitationAction::Cancel => "cancelled",
        }
    ));
    vec![Effect::Net(Cmd::AnswerElicitation {
        elicitation_id: id,
        action,
        content,
    })]
}
