//! Workflow runs: a task graph (dependencies, checks, retries with escalation, human
//! checkpoints, for_each fan-out) run on a session's threads. A person writes the graph as a
//! file (YAML, JSON or TOML, read by the client into a [`WorkflowSpec`]); the daemon checks it
//! with [`WorkflowSpec::validate`] and runs it. The run's events use the hosted
//! `workflow_run.*` names (each task is a phase); what the hosted API has no word for (task
//! attempts, fan-out items, checkpoint answers) is in tether's `span.workflow_task_*` events.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Threads of one run working at once, unless `max_workflow_threads` says otherwise (hosted).
pub const MAX_RUN_THREADS: usize = 64;
/// Tasks in a workflow file (hosted: ~1000 threads per run).
pub const MAX_RUN_TASKS: usize = 1000;
/// Threads one run may start over its life, fan-out items and retries included. Hosted says
/// ~1000 and "not a hard ceiling"; tether enforces this, so a 1,000-item fan-out fits.
pub const MAX_RUN_THREADS_LIFETIME: usize = 1024;
/// Open runs (idle ones included) a session may have (hosted).
pub const MAX_OPEN_RUNS: usize = 10;
/// A run's lifetime unless its file sets `timeout_secs` (hosted: 24 h, the agent may shorten it).
pub const DEFAULT_RUN_TIMEOUT_SECS: u64 = 24 * 60 * 60;
/// Hosted cuts names and descriptions to these lengths.
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// A workflow file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seconds from the run's creation to its end: past it, work in flight is stopped and the
    /// run ends with `timeout_error` (default and most: 24 h, hosted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_secs: Option<u64>,
    pub tasks: Vec<TaskSpec>,
}

/// One task: an agent's prompt, or (with `checkpoint`) a question a person answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// A predefined agent's name or id, or an inline agent; default: the session's model
    /// with no system prompt of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<TaskAgent>,
    /// What the task's thread is asked; may use `{{task.output}}`, `{{task.output.field}}`
    /// and (with `for_each`) `{{item}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Graded after the task's reply like a session outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<TaskOutcome>,
    /// Commands run in the session's sandbox after the reply; any non-zero exit fails the
    /// attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// Attempts after the first one failed.
    #[serde(default)]
    #[schemars(range(max = 4294967295u32))]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<Escalate>,
    /// A question for a person: the task waits for approve/deny from any client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// A template naming a JSON array in a dependency's output: one task per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// A failure of this task does not fail the run.
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum TaskAgent {
    Named(String),
    Inline(InlineAgent),
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineAgent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// `provider/model`; default: the session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskOutcome {
    pub rubric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 4294967295u32))]
    pub max_iterations: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub command: String,
    /// Default 120.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// From attempt `after + 1` on, the task runs on `model` (a stronger one, or a fallback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalate {
    #[serde(default = "one")]
    #[schemars(range(max = 4294967295u32))]
    pub after: u32,
    pub model: String,
}

fn one() -> u32 {
    1
}

/// A `{{...}}` reference in a prompt or `for_each`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRef {
    /// `{{item}}`: the fan-out item (JSON text unless it is a string).
    Item,
    /// `{{task.output}}` (empty path) or `{{task.output.a.b}}` (a field of its JSON output).
    Output { task: String, path: Vec<String> },
}

/// One piece of a template: literal text or a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Ref(TemplateRef),
}

/// Splits a template into text and references; the error names the bad reference.
pub fn parse_template(text: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(TemplatePart::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(format!(
                "`{{{{` without a closing `}}}}` in `{}`",
                cut(&rest[start..], 40)
            ));
        };
        let inner = after[..end].trim();
        parts.push(TemplatePart::Ref(parse_ref(inner)?));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_string()));
    }
    Ok(parts)
}

fn parse_ref(inner: &str) -> Result<TemplateRef, String> {
    if inner == "item" {
        return Ok(TemplateRef::Item);
    }
    let mut segs = inner.split('.');
    let task = segs.next().unwrap_or_default();
    match segs.next() {
        Some("output") if !task.is_empty() => {
            let path: Vec<String> = segs.map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("`{{{{{inner}}}}}` has an empty field name"));
            }
            Ok(TemplateRef::Output {
                task: task.to_string(),
                path,
            })
        }
        _ => Err(format!(
            "`{{{{{inner}}}}}` is not a reference tether knows: use `{{{{TASK.output}}}}`, `{{{{TASK.output.FIELD}}}}` or `{{{{item}}}}`"
        )),
    }
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl WorkflowSpec {
    pub fn timeout(&self) -> u64 {
        self.timeout_secs.unwrap_or(DEFAULT_RUN_TIMEOUT_SECS)
    }

    /// Every rule that needs no lookup. The message names the task and the field, and says
    /// what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty: give the workflow a name".into());
        }
        if let Some(t) = self.timeout_secs
            && (t == 0 || t > DEFAULT_RUN_TIMEOUT_SECS)
        {
            return Err(format!(
                "`timeout_secs` is {t}: a run's timeout is 1..={DEFAULT_RUN_TIMEOUT_SECS} seconds (24 h); leave it out for 24 h"
            ));
        }
        if self.tasks.is_empty() {
            return Err("`tasks` is empty: a workflow needs at least one task".into());
        }
        if self.tasks.len() > MAX_RUN_TASKS {
            return Err(format!(
                "{} tasks: a run may have at most {MAX_RUN_TASKS}; split the workflow",
                self.tasks.len()
            ));
        }
        let mut ids = BTreeSet::new();
        for t in &self.tasks {
            if !valid_id(&t.id) {
                return Err(format!(
                    "task id `{}` is not valid: use 1-64 letters, digits, `-` or `_`",
                    t.id
                ));
            }
            if !ids.insert(t.id.as_str()) {
                return Err(format!(
                    "task id `{}` is used twice: task ids must be unique",
                    t.id
                ));
            }
        }
        for t in &self.tasks {
            let id = &t.id;
            for d in &t.depends_on {
                if d == id {
                    return Err(format!("task `{id}`: depends_on lists itself"));
                }
                if !ids.contains(d.as_str()) {
                    return Err(format!(
                        "task `{id}`: depends_on names `{d}`, which is not a task of this workflow (tasks: {})",
                        ids.iter().copied().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            match (&t.checkpoint, &t.prompt) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "task `{id}` has both `checkpoint` and `prompt`: a checkpoint is a question for a person, make it a task of its own"
                    ));
                }
                (None, None) => {
                    return Err(format!(
                        "task `{id}` has neither `prompt` nor `checkpoint`: say what the agent should do, or what a person should approve"
                    ));
                }
                (Some(q), None) => {
                    if q.trim().is_empty() {
                        return Err(format!("task `{id}`: `checkpoint` is an empty question"));
                    }
                    if t.for_each.is_some() || !t.checks.is_empty() || t.outcome.is_some() {
                        return Err(format!(
                            "task `{id}` is a checkpoint: `for_each`, `checks` and `outcome` apply to agent tasks only"
                        ));
                    }
                }
                (None, Some(_)) => {}
            }
            if let Some(e) = &t.escalate {
                if e.model.trim().is_empty() {
                    return Err(format!("task `{id}`: escalate.model is empty"));
                }
                if e.after == 0 || e.after > t.retries {
                    return Err(format!(
                        "task `{id}`: escalate.after is {} but the task has {} retries: escalation happens after 1..={} failed attempts (raise `retries`)",
                        e.after,
                        t.retries,
                        t.retries.max(1)
                    ));
                }
            }
            for c in &t.checks {
                if c.command.trim().is_empty() {
                    return Err(format!("task `{id}`: a check has an empty `command`"));
                }
            }
            let fields = [
                ("prompt", t.prompt.as_deref()),
                ("for_each", t.for_each.as_deref()),
            ];
            for (field, text) in fields {
                let Some(text) = text else { continue };
                let parts =
                    parse_template(text).map_err(|e| format!("task `{id}`: {field}: {e}"))?;
                for p in parts {
                    match p {
                        TemplatePart::Ref(TemplateRef::Item)
                            if t.for_each.is_none() || field == "for_each" =>
                        {
                            return Err(format!(
                                "task `{id}`: {field} uses `{{{{item}}}}`, which only a for_each task's prompt has"
                            ));
                        }
                        TemplatePart::Ref(TemplateRef::Output { task, .. })
                            if !t.depends_on.contains(&task) =>
                        {
                            return Err(format!(
                                "task `{id}`: {field} uses `{{{{{task}.output}}}}` but `{task}` is not in its depends_on{}",
                                if ids.contains(task.as_str()) {
                                    format!("; add `{task}` to depends_on")
                                } else {
                                    " (no task has that id)".to_string()
                                }
                            ));
                        }
                        _ => {}
                    }
                }
            }
            if let Some(f) = &t.for_each {
                let parts = parse_template(f).unwrap_or_default();
                if !matches!(
                    parts.as_slice(),
                    [TemplatePart::Ref(TemplateRef::Output { .. })]
                ) {
                    return Err(format!(
                        "task `{id}`: for_each must be exactly one reference to a list, like `{{{{collect.output.modules}}}}`"
                    ));
                }
            }
        }
        if let Some(cycle) = self.cycle() {
            return Err(format!(
                "the tasks depend on each other in a cycle: {}; remove one of these dependencies",
                cycle.join(" -> ")
            ));
        }
        Ok(())
    }

    /// A dependency cycle, as task ids from one back to itself.
    fn cycle(&self) -> Option<Vec<String>> {
        let deps: BTreeMap<&str, &[String]> = self
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.depends_on.as_slice()))
            .collect();
        // 0 new, 1 on the path, 2 done.
        let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
        fn visit<'a>(
            id: &'a str,
            deps: &BTreeMap<&'a str, &'a [String]>,
            mark: &mut BTreeMap<&'a str, u8>,
            path: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            match mark.get(id) {
                Some(2) => return None,
                Some(1) => {
                    let from = path.iter().position(|p| *p == id).unwrap_or(0);
                    let mut c: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                    c.push(id.to_string());
                    return Some(c);
                }
                _ => {}
            }
            mark.insert(id, 1);
            path.push(id);
            for d in deps.get(id).copied().unwrap_or_default() {
                if let Some(c) = visit(d, deps, mark, path) {
                    return Some(c);
                }
            }
            path.pop();
            mark.insert(id, 2);
            None
        }
        for t in &self.tasks {
            let mut path = Vec::new();
            if let Some(c) = visit(&t.id, &deps, &mut mark, &mut path) {
                return Some(c);
            }
        }
        None
    }

    pub fn task(&self, id: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.id == id)
    }
}

/// A phase as `workflow_run.created` lists it (one per task).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Phase {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `{type, message}` of `workflow_run.error` (hosted types; the message holds no run content).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunError {
    #[serde(rename = "type")]
    pub kind: RunErrorType,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunErrorType {
    TimeoutError,
    ProgramError,
    ThreadLimitError,
    MaxWorkflowRunsError,
    UnknownError,
}

impl RunErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            RunErrorType::TimeoutError => "timeout_error",
            RunErrorType::ProgramError => "program_error",
            RunErrorType::ThreadLimitError => "thread_limit_error",
            RunErrorType::MaxWorkflowRunsError => "max_workflow_runs_error",
            RunErrorType::UnknownError => "unknown_error",
        }
    }
}

/// `result` of `workflow_run.status_ended`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunResult {
    /// The plan finished, not necessarily successfully (tether: `failed_tasks` says which
    /// required tasks failed).
    Completed {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed_tasks: Vec<String>,
    },
    Stopped {},
    Error {
        error: RunError,
    },
}

/// How one attempt of a task ended (`span.workflow_task_ended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    Succeeded,
    Failed,
    /// Cut short by `stop`: not a failure, the task runs again on resume.
    Stopped,
}

/// A task's status as a run's readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Checking,
    WaitingForApproval,
    Succeeded,
    Failed,
    /// Not run: the run ended (a required task failed, or it was stopped) first.
    Skipped,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Checking => "checking",
            TaskStatus::WaitingForApproval => "waiting_for_approval",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Skipped
        )
    }
}

/// A run's status: `running`, `idle` (stopped by a person, resumable) or `ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Idle,
    Ended,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Idle => "idle",
            RunStatus::Ended => "ended",
        }
    }
}

/// One task of a run (a fan-out item is a task `parent[i]` of its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunTask {
    pub id: String,
    /// The tasks it waits for (its file's `depends_on`; none for a fan-out item): a client
    /// draws the graph from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    pub status: TaskStatus,
    pub attempts: u32,
    /// Failed attempts (stopped ones don't count).
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_thread_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Why each failed attempt failed, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<String>,
    /// A checkpoint's question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// A fan-out task's items (each is task `id[i]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// Tokens (and cost) of every attempt's thread, grading included.
    #[serde(default)]
    pub usage: crate::ModelUsage,
}

/// A run as `workflow.get` returns it: the fold of its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowRun {
    /// `wrun_...`
    pub id: String,
    /// Always `"workflow_run"`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub session_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    pub tasks: Vec<RunTask>,
    /// The tasks' usage summed.
    #[serde(default)]
    pub usage: crate::ModelUsage,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

impl WorkflowRun {
    /// Ended with every required task succeeded.
    pub fn succeeded(&self) -> bool {
        matches!(&self.result, Some(RunResult::Completed { failed_tasks }) if failed_tasks.is_empty())
    }
}

/// The id fan-out item `i` of task `parent` runs under.
pub fn item_task_id(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// The parent of a fan-out item id, if `id` is one.
pub fn item_parent(id: &str) -> Option<(&str, usize)> {
    let open = id.rfind('[')?;
    let i = id.get(open + 1..id.len().checked_sub(1)?)?.parse().ok()?;
    id.ends_with(']').then_some((&id[..open], i))
}

/// Extracts the JSON value at `path` of a task's output: the output parsed as JSON (or the
/// first ```json fenced block in it). None when it is not JSON or lacks the field.
pub fn output_field(output: &str, path: &[String]) -> Option<Value> {
    let v = parse_output_json(output)?;
    let mut cur = &v;
    for p in path {
        cur = match cur {
            Value::Object(m) => m.get(p)?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur.clone())
}

fn parse_output_json(output: &str) -> Option<Value> {
    let t = output.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Some(v);
    }
    let start = t.find("```")?;
    let body = &t[start + 3..];
    let body = body.strip_prefix("json").unwrap_or(body);
    let end = body.find("```")?;
    serde_json::from_str(body[..end].trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> WorkflowSpec {
        serde_json::from_value(v).unwrap()
    }

    fn err(v: Value) -> String {
        spec(v).validate().unwrap_err()
    }

    #[test]
    fn the_issue_example_is_valid() {
        let s = spec(json!({"name": "release-notes", "tasks": [
            {"id": "collect", "agent": "researcher", "prompt": "List changes.",
             "outcome": {"rubric": "Every change has a PR number", "max_iterations": 3}},
            {"id": "draft", "depends_on": ["collect"], "agent": {"model": "openai/gpt-5.1", "system": "You write release notes."},
             "prompt": "Write the notes from: {{collect.output}}", "checks": [{"command": "test -s NOTES.md"}],
             "retries": 2, "escalate": {"after": 1, "model": "anthropic/claude-opus-4-6"}},
            {"id": "approve", "depends_on": ["draft"], "checkpoint": "Publish these notes?"},
            {"id": "per-module", "depends_on": ["collect"], "for_each": "{{collect.output.modules}}",
             "agent": "reviewer", "prompt": "Review {{item}}"}
        ]}));
        s.validate().unwrap();
        assert!(matches!(s.tasks[0].agent, Some(TaskAgent::Named(ref n)) if n == "researcher"));
        assert!(matches!(s.tasks[1].agent, Some(TaskAgent::Inline(_))));
    }

    #[test]
    fn errors_name_the_task_and_field() {
        let e = err(
            json!({"name": "w", "tasks": [{"id": "a", "prompt": "x", "depends_on": ["nope"]}]}),
        );
        assert!(e.contains("task `a`") && e.contains("`nope`"), "{e}");
        let e = err(
            json!({"name": "w", "tasks": [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]}),
        );
        assert!(e.contains("`a` is used twice"), "{e}");
        let e = err(json!({"name": "w", "tasks": [
            {"id": "a", "prompt": "x", "depends_on": ["c"]},
            {"id": "b", "prompt": "x", "depends_on": ["a"]},
            {"id": "c", "prompt": "x", "depends_on": ["b"]}]}));
        assert!(e.contains("cycle: a -> c -> b -> a"), "{e}");
        let e = err(
            json!({"name": "w", "tasks": [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "use {{a.output}}"}]}),
        );
        assert!(
            e.contains("task `b`: prompt uses `{{a.output}}`")
                && e.contains("add `a` to depends_on"),
            "{e}"
        );
        let e = err(json!({"name": "w", "tasks": [{"id": "a", "prompt": "{{a.result}}"}]}));
        assert!(
            e.contains("task `a`: prompt") && e.contains("not a reference"),
            "{e}"
        );
        let e = err(json!({"name": "w", "tasks": [{"id": "a", "prompt": "{{item}}"}]}));
        assert!(e.contains("only a for_each task"), "{e}");
        let e = err(
            json!({"name": "w", "tasks": [{"id": "a", "prompt": "x", "retries": 0, "escalate": {"model": "m"}}]}),
        );
        assert!(e.contains("escalate.after"), "{e}");
        let e = err(json!({"name": "w", "tasks": [{"id": "a"}]}));
        assert!(e.contains("neither `prompt` nor `checkpoint`"), "{e}");
        let unknown = serde_json::from_value::<WorkflowSpec>(
            json!({"name": "w", "tasks": [{"id": "a", "prompt": "x", "depend_on": ["b"]}]}),
        )
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("depend_on"), "{unknown}");
    }

    #[test]
    fn templates_parse_and_fields_resolve() {
        let parts = parse_template("a {{x.output}} b {{ y.output.m.0 }}{{item}}").unwrap();
        assert_eq!(parts.len(), 5);
        assert_eq!(
            parts[3],
            TemplatePart::Ref(TemplateRef::Output {
                task: "y".into(),
                path: vec!["m".into(), "0".into()]
            })
        );
        assert!(parse_template("{{x.output").is_err());
        let out = "Here:\n```json\n{\"modules\": [\"a\", \"b\"]}\n```";
        assert_eq!(
            output_field(out, &["modules".into()]),
            Some(json!(["a", "b"]))
        );
        assert_eq!(output_field("not json", &["m".into()]), None);
        assert_eq!(item_parent("review[12]"), Some(("review", 12)));
        assert_eq!(item_parent("review"), None);
    }

    #[test]
    fn run_results_have_the_hosted_shape() {
        let r = RunResult::Error {
            error: RunError {
                kind: RunErrorType::ThreadLimitError,
                message: "m".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"type": "error", "error": {"type": "thread_limit_error", "message": "m"}})
        );
        assert_eq!(
            serde_json::to_value(RunResult::Completed {
                failed_tasks: vec![]
            })
            .unwrap(),
            json!({"type": "completed"})
        );
    }
}
