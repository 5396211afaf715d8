//! One line per workflow run event: the transcript's markers and `tether workflows run`'s
//! progress say the same thing.

use tether_proto::EventBody;
use tether_proto::workflow::{AttemptStatus, RunResult};

/// The line for a workflow run event; None for the ones a reader needs no line for.
pub fn marker(body: &EventBody) -> Option<String> {
    Some(match body {
        EventBody::WorkflowRunCreated {
            workflow_run_id,
            name,
            phases,
            ..
        } => format!(
            "⛓ workflow `{name}` started ({} tasks) {workflow_run_id}",
            phases.len()
        ),
        EventBody::WorkflowRunStatusIdle { workflow_run_id } => {
            format!(
                "⏸ workflow run {workflow_run_id} stopped; `tether workflows resume {workflow_run_id}` goes on"
            )
        }
        EventBody::WorkflowRunError { error, .. } => {
            format!(
                "✗ workflow run error {}: {}",
                error.kind.as_str(),
                error.message
            )
        }
        EventBody::WorkflowRunStatusEnded { result, .. } => match result {
            RunResult::Completed { failed_tasks } if failed_tasks.is_empty() => {
                "⛓ workflow run completed: every task succeeded".to_string()
            }
            RunResult::Completed { failed_tasks } => format!(
                "⛓ workflow run completed with failed tasks: {}",
                failed_tasks.join(", ")
            ),
            RunResult::Stopped {} => "⛓ workflow run stopped".to_string(),
            RunResult::Error { error } => format!(
                "⛓ workflow run ended in error {}: {}",
                error.kind.as_str(),
                error.message
            ),
        },
        EventBody::SpanWorkflowTaskStarted {
            workflow_run_id,
            task_id,
            attempt,
            model,
            thread_id,
        } => match thread_id {
            None => format!(
                "? task {task_id} waits for approval: `tether workflows approve {workflow_run_id} {task_id}` (or deny)"
            ),
            Some(_) => format!(
                "▸ task {task_id} attempt {attempt} started{}",
                model
                    .as_deref()
                    .map(|m| format!(" on {m}"))
                    .unwrap_or_default()
            ),
        },
        EventBody::SpanWorkflowTaskFannedOut { task_id, items, .. } => {
            format!("⑂ task {task_id} fans out to {} items", items.len())
        }
        EventBody::SpanWorkflowTaskEnded {
            task_id,
            attempt,
            status,
            explanation,
            ..
        } => match status {
            AttemptStatus::Succeeded => format!("✓ task {task_id} succeeded (attempt {attempt})"),
            AttemptStatus::Failed => format!(
                "✗ task {task_id} attempt {attempt} failed: {}",
                explanation.as_deref().unwrap_or("no reason given")
            ),
            AttemptStatus::Stopped => format!("⏸ task {task_id} attempt {attempt} stopped"),
        },
        _ => return None,
    })
}
