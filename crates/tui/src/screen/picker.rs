//! The session picker (`tether` alone): state and its pure update.

use std::collections::HashMap;
use std::time::SystemTime;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tether_proto::SessionInfo;

#[derive(Debug)]
pub enum PickerMsg {
    Key(KeyEvent),
    Sessions(Vec<SessionInfo>),
    /// Agent names by id (sessions pin an agent by id).
    Agents(HashMap<String, String>),
    Failed(String),
    Tick(SystemTime),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickerEffect {
    Attach(String),
    Create(NewSession),
    Archive(String),
    Delete(String),
    Rename { id: String, name: String },
    Quit,
}

/// The new name being typed for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renaming {
    pub id: String,
    /// What the session is called now (shown in the prompt).
    pub from: String,
    pub name: String,
}

/// The new-session form: each field optional (the daemon's defaults apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSession {
    pub name: String,
    /// `NAME[@VERSION]`.
    pub agent: String,
    pub model: String,
    pub dir: String,
    /// The field being typed into: an index into `LABELS`.
    pub field: usize,
}

impl NewSession {
    pub const LABELS: [&'static str; 4] = ["name", "agent", "model", "directory"];

    fn field_mut(&mut self) -> &mut String {
        match self.field {
            0 => &mut self.name,
            1 => &mut self.agent,
            2 => &mut self.model,
            _ => &mut self.dir,
        }
    }

    pub fn value(&self, field: usize) -> &str {
        match field {
            0 => &self.name,
            1 => &self.agent,
            2 => &self.model,
            _ => &self.dir,
        }
    }
}

#[derive(Debug, Default)]
pub struct Picker {
    pub sessions: Vec<SessionInfo>,
    pub agents: HashMap<String, String>,
    pub loaded: bool,
    pub filter: String,
    pub selected: usize,
    /// Id of the session a delete waits to be confirmed for.
    pub confirm_delete: Option<String>,
    /// The name being typed for a new session.
    pub creating: Option<NewSession>,
    pub renaming: Option<Renaming>,
    pub notice: Option<String>,
    pub spinner: usize,
    pub now: Option<SystemTime>,
}

impl Picker {
    /// Sessions matching the filter (name, id, title, model or agent contain it).
    pub fn visible(&self) -> Vec<&SessionInfo> {
        let f = self.filter.to_lowercase();
        self.sessions
            .iter()
            .filter(|s| {
                f.is_empty()
                    || [
                        Some(&s.id),
                        s.name.as_ref(),
                        s.title.as_ref(),
                        Some(&s.model),
                        self.agent_name(s),
                    ]
                    .into_iter()
                    .flatten()
                    .any(|t| t.to_lowercase().contains(&f))
            })
            .collect()
    }

    /// The name of the agent a session pinned, when it is not the default one.
    pub fn agent_name(&self, s: &SessionInfo) -> Option<&String> {
        let name = self.agents.get(&s.agent.as_ref()?.id)?;
        (name != "default").then_some(name)
    }

    fn current(&self) -> Option<&SessionInfo> {
        self.visible().get(self.selected).copied()
    }

    pub fn any_running(&self) -> bool {
        self.sessions
            .iter()
            .any(|s| s.status == tether_proto::SessionStatus::Running)
    }
}

pub fn update(p: &mut Picker, msg: PickerMsg) -> Vec<PickerEffect> {
    match msg {
        PickerMsg::Sessions(list) => {
            let keep = p.current().map(|s| s.id.clone());
            p.sessions = list;
            p.loaded = true;
            if let Some(id) = keep {
                p.selected = p.visible().iter().position(|s| s.id == id).unwrap_or(0);
            }
            Vec::new()
        }
        PickerMsg::Agents(names) => {
            p.agents = names;
            Vec::new()
        }
        PickerMsg::Failed(m) => {
            p.notice = Some(m);
            Vec::new()
        }
        PickerMsg::Tick(now) => {
            p.now = Some(now);
            p.spinner = p.spinner.wrapping_add(1);
            Vec::new()
        }
        PickerMsg::Key(k) if k.kind == KeyEventKind::Release => Vec::new(),
        PickerMsg::Key(k) => on_key(p, k),
    }
}

fn on_key(p: &mut Picker, k: KeyEvent) -> Vec<PickerEffect> {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    if let Some(form) = &mut p.creating {
        match k.code {
            KeyCode::Enter => {
                let mut form = form.clone();
                form.field = 0;
                p.creating = None;
                return vec![PickerEffect::Create(form)];
            }
            KeyCode::Esc => p.creating = None,
            KeyCode::Tab | KeyCode::Down => {
                form.field = (form.field + 1) % NewSession::LABELS.len()
            }
            KeyCode::BackTab | KeyCode::Up => {
                form.field = (form.field + NewSession::LABELS.len() - 1) % NewSession::LABELS.len()
            }
            KeyCode::Backspace => {
                form.field_mut().pop();
            }
            KeyCode::Char(c) if !ctrl && !c.is_whitespace() => form.field_mut().push(c),
            _ => {}
        }
        return Vec::new();
    }
    if let Some(r) = &mut p.renaming {
        match k.code {
            KeyCode::Enter => {
                let r = r.clone();
                p.renaming = None;
                if r.name.trim().is_empty() || r.name == r.from {
                    p.notice = Some("not renamed".into());
                    return Vec::new();
                }
                p.notice = Some(format!("renaming {} to {}…", r.from, r.name));
                return vec![PickerEffect::Rename {
                    id: r.id,
                    name: r.name,
                }];
            }
            KeyCode::Esc => {
                p.renaming = None;
                p.notice = Some("not renamed".into());
            }
            KeyCode::Backspace => {
                r.name.pop();
            }
            // Names are one word (letters, digits, - _ .); the daemon explains the rules.
            KeyCode::Char(c) if !ctrl && !c.is_whitespace() => r.name.push(c),
            _ => {}
        }
        return Vec::new();
    }
    if let Some(id) = p.confirm_delete.take() {
        if matches!(k.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
            p.notice = Some(format!("deleting {id}…"));
            return vec![PickerEffect::Delete(id)];
        }
        p.notice = Some("not deleted".into());
        return Vec::new();
    }
    p.notice = None;
    let n = p.visible().len();
    match k.code {
        KeyCode::Char('c') | KeyCode::Char('q') if ctrl => vec![PickerEffect::Quit],
        KeyCode::Esc if p.filter.is_empty() => vec![PickerEffect::Quit],
        KeyCode::Esc => {
            p.filter.clear();
            p.selected = 0;
            Vec::new()
        }
        KeyCode::Up => {
            p.selected = p.selected.saturating_sub(1);
            Vec::new()
        }
        KeyCode::Down => {
            p.selected = (p.selected + 1).min(n.saturating_sub(1));
            Vec::new()
        }
        KeyCode::Enter => match p.current() {
            Some(s) => vec![PickerEffect::Attach(s.id.clone())],
            None => {
                p.creating = Some(NewSession::default());
                Vec::new()
            }
        },
        KeyCode::Char('n') if ctrl => {
            p.creating = Some(NewSession::default());
            Vec::new()
        }
        KeyCode::Char('a') if ctrl => match p.current() {
            Some(s) => vec![PickerEffect::Archive(s.id.clone())],
            None => Vec::new(),
        },
        KeyCode::Char('d') if ctrl => {
            if let Some(s) = p.current() {
                let label = s.name.clone().unwrap_or_else(|| s.id.clone());
                p.confirm_delete = Some(s.id.clone());
                p.notice = Some(format!(
                    "delete {label} with its log and workspace? y to confirm, any other key keeps it"
                ));
            }
            Vec::new()
        }
        KeyCode::Delete => {
            if let Some(s) = p.current() {
                let label = s.name.clone().unwrap_or_else(|| s.id.clone());
                p.confirm_delete = Some(s.id.clone());
                p.notice = Some(format!(
                    "delete {label} with its log and workspace? y to confirm, any other key keeps it"
                ));
            }
            Vec::new()
        }
        KeyCode::Char('r') if ctrl => {
            if let Some(s) = p.current() {
                let from = s.name.clone().unwrap_or_else(|| s.id.clone());
                p.renaming = Some(Renaming {
                    id: s.id.clone(),
                    name: s.name.clone().unwrap_or_default(),
                    from,
                });
            }
            Vec::new()
        }
        KeyCode::Backspace => {
            p.filter.pop();
            p.selected = 0;
            Vec::new()
        }
        KeyCode::Char(c) if !ctrl => {
            p.filter.push(c);
            p.selected = 0;
            Vec::new()
        }
        _ => Vec::new(),
    }
}
