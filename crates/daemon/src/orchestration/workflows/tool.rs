//! `start_workflow`: the agent tool that starts a workflow run (hosted: runs are started by
//! the agent, when its `multiagent.workflows` member is enabled). The input is the plan, in
//! the workflow file's shape. The call returns once the run is recorded; the run goes on in
//! the background and its end reaches the agent as a message (the `notice` of its
//! `workflow_run.status_ended`).
//!
//! Crash safety: the call's intent is recorded first (by the caller), the run's
//! `workflow_run.created` carries the call's id, so after a restart a call whose run exists
//! only gets its result, never a second run.

use std::sync::Arc;

use serde_json::{Value, json};
use tether_proto::ToolStatus;
use tether_proto::multiagent::TOOL_START_WORKFLOW;
use tether_proto::workflow::WorkflowSpec;

use crate::provider::ToolSpec;
use crate::runtime::Runtime;
use crate::session::events;
use crate::session::live::Session;
use crate::session::state::PendingTool;
use crate::store::error::StoreError;

pub fn spec() -> ToolSpec {
    ToolSpec {
        name: TOOL_START_WORKFLOW.to_string(),
        description: "Start a workflow run: a graph of tasks, each run by its own agent thread in this session's workspace, as many at once as the dependencies allow. A task has a `prompt` (it may use `{{other_task.output}}` of a task in its `depends_on`, or `{{other_task.output.field}}` of JSON output), optionally an `agent` ({system, model} or a predefined agent's name), `checks` (commands that must exit 0), `retries`, `for_each` (one task per item of a list in a dependency's output; the prompt uses `{{item}}`), `optional`. The call returns at once with the run's id; when the run ends you get a message with every task's status and output. Don't wait or poll for it.".to_string(),
        input_schema: json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "A short name for the run."},
                "description": {"type": "string"},
                "timeout_secs": {"type": "integer", "minimum": 1, "maximum": 86400},
                "tasks": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "description": "1-64 letters, digits, - or _."},
                        "prompt": {"type": "string"},
                        "depends_on": {"type": "array", "items": {"type": "string"}},
                        "agent": {"description": "A predefined agent's name, or {system, model}."},
                        "checks": {"type": "array", "items": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
                        "retries": {"type": "integer", "minimum": 0},
                        "for_each": {"type": "string"},
                        "optional": {"type": "boolean"}
                    },
                    "required": ["id", "prompt"]
                }}
            },
            "required": ["name", "tasks"]
        }),
    }
}

/// Runs one `start_workflow` call to its result (its intent is already recorded).
pub async fn run(
    rt: &Arc<Runtime>,
    s: &Arc<Session>,
    call: &PendingTool,
) -> Result<(), StoreError> {
    crate::crash::point("after_workflow_tool_intent");
    let started = s
        .state()
        .threads
        .workflow_calls
        .get(&call.tool_use_id)
        .cloned();
    let (text, is_error) = match started {
        // Started before a restart: only the result is left to give.
        Some(run) => (started_text(&run), false),
        None => match parse(&call.input) {
            Err(why) => (why, true),
            Ok(spec) => match super::start(rt, s, spec, Some(call.tool_use_id.clone())).await {
                Ok(run) => (started_text(&run.id), false),
                Err(e) => (e.message, true),
            },
        },
    };
    crate::crash::point("before_workflow_tool_result");
    s.append_one_retrying(events::result_of(
        call,
        text,
        is_error,
        if is_error {
            ToolStatus::Error
        } else {
            ToolStatus::Ok
        },
        0,
    ))
    .await?;
    Ok(())
}

fn started_text(run: &str) -> String {
    format!(
        "Started workflow run {run}. It runs in the background; you will get a message with its result when it ends."
    )
}

/// The plan, checked; the error tells the model what to fix.
fn parse(input: &Value) -> Result<WorkflowSpec, String> {
    let spec: WorkflowSpec = serde_json::from_value(input.clone()).map_err(|e| {
        format!("{TOOL_START_WORKFLOW}: the plan is not a workflow: {e}; fix it and call again")
    })?;
    spec.validate().map_err(|e| {
        format!("{TOOL_START_WORKFLOW}: the plan is not valid: {e}; fix it and call again")
    })?;
    Ok(spec)
}
