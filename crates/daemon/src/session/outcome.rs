//! An outcome's evaluation cycle, run by the turn loop where the agent would go idle with
//! `end_turn`: the cycle's start, its checks, its judges, its end, and the follow-up message
//! (revision or acknowledgment) with the escalation switch. Every step is recorded before
//! the next one runs, so a restart picks the cycle up from the log (grading is read-only:
//! an evaluation cut short is run again from scratch).

use std::sync::Arc;
use std::time::Duration;

use tether_proto::outcome::{CheckResult, EvaluationEnd, EvaluationResult, OutcomeCheck};
use tether_proto::{EventBody, ModelUsage};
use tokio_util::sync::CancellationToken;

use crate::crash;
use crate::session::grader::{self, Grading, Stop};
use crate::session::live::Session;
use crate::session::model;
use crate::session::state::{OutcomePhase, OutcomeState, TurnEnd};
use crate::store::error::StoreError;

/// A check's default timeout.
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// How the step went for the turn loop.
pub enum Step {
    /// Something was recorded; ask the state what is next.
    Continue,
    /// The user interrupted: the turn settles and goes idle.
    Interrupted,
}

/// Carries out a [`TurnEnd`] other than `Idle`.
pub async fn step(
    s: &Arc<Session>,
    decision: TurnEnd,
    cancel: &CancellationToken,
) -> Result<Step, StoreError> {
    match decision {
        TurnEnd::Idle => Ok(Step::Continue),
        TurnEnd::FollowUp(bodies) => {
            follow_up(s, bodies).await?;
            Ok(Step::Continue)
        }
        TurnEnd::Evaluate { start_id } => evaluate(s, start_id, cancel).await,
    }
}

/// Appends the revision or acknowledgment message (decided again under the append lock, so
/// it is never appended twice), then records an escalation's model in the session row.
async fn follow_up(s: &Arc<Session>, bodies: Vec<EventBody>) -> Result<(), StoreError> {
    let expected = bodies.clone();
    let committed = s
        .append_checked(|st| {
            Ok::<_, StoreError>(match st.turn_end() {
                TurnEnd::FollowUp(now) if now == expected => now,
                _ => Vec::new(),
            })
        })
        .await?;
    for e in &committed {
        if let EventBody::SessionUpdated { model: Some(m), .. } = &e.body {
            tracing::info!(session = %s.id, model = %m, "outcome escalation: the agent switches model");
            // The event is the truth; the column only serves listings of unloaded sessions.
            s.services.store.set_session_model(&s.id, m.clone()).await?;
        }
    }
    crash::point("after_evaluation_follow_up");
    Ok(())
}

/// One evaluation cycle: start (unless a restart left one open), checks, judges, end.
async fn evaluate(
    s: &Arc<Session>,
    start_id: Option<String>,
    cancel: &CancellationToken,
) -> Result<Step, StoreError> {
    let Some(o) = s.state().active_outcome().cloned() else {
        return Ok(Step::Continue);
    };
    let start_id = match start_id {
        Some(id) => id,
        None => {
            let ev = s
                .append_one_retrying(EventBody::SpanOutcomeEvaluationStart {
                    outcome_id: o.id.clone(),
                    iteration: o.iteration,
                })
                .await?;
            crash::point("after_evaluation_start");
            ev.id
        }
    };
    let end = |result: EvaluationResult, explanation: String| {
        EvaluationEnd::verdict(
            start_id.clone(),
            o.id.clone(),
            o.iteration,
            last_cycle_cap(&o, result),
            explanation,
        )
    };
    // Checks first: a failing one needs revision, and no grader tokens are spent.
    let checks = run_checks(s, &o, cancel).await;
    if cancel.is_cancelled() {
        return Ok(Step::Interrupted);
    }
    let failing: Vec<&CheckResult> = checks.iter().filter(|c| !c.passed).collect();
    if !failing.is_empty() {
        let mut text = String::from("These checks failed:");
        for c in &failing {
            text.push_str(&format!(
                "\n\n`{}`{}:\n{}",
                c.check,
                c.exit_code
                    .map(|x| format!(" (exit code {x})"))
                    .unwrap_or_default(),
                c.output.trim_end()
            ));
        }
        let mut e = end(EvaluationResult::NeedsRevision, text);
        e.checks = checks;
        return finish(s, e).await;
    }
    let grader_model = o
        .spec
        .grader
        .as_ref()
        .and_then(|g| g.model.clone())
        .unwrap_or_else(|| model::current_model(s));
    let provider = match model::provider_for(s, &grader_model) {
        Ok(p) => p,
        Err(e) => {
            let mut e = end(
                EvaluationResult::Failed,
                format!("the grader could not run: {e}"),
            );
            e.checks = checks;
            return finish(s, e).await;
        }
    };
    let grading = Grading {
        provider,
        model: grader_model.clone(),
        system: grader::system_prompt(&o.spec),
        first: grader::first_message(&o.spec, &s.row().workspace),
        tools: grader::tool_specs(
            o.spec
                .grader
                .as_ref()
                .is_some_and(|g| !g.dimensions.is_empty()),
        ),
        outcome_id: o.id.clone(),
        iteration: o.iteration,
    };
    // The judges run in parallel, each in its own context.
    let runs = futures_util::future::join_all(
        (0..o.spec.judges()).map(|_| grader::judge(s, &grading, cancel)),
    )
    .await;
    let mut usage = ModelUsage::default();
    let mut verdicts = Vec::new();
    for r in runs {
        match r {
            Ok(run) => {
                usage.add(&run.usage);
                verdicts.push(run.verdict);
            }
            Err(Stop::Cancelled) => return Ok(Step::Interrupted),
            Err(Stop::Store(e)) => return Err(e),
        }
    }
    if cancel.is_cancelled() {
        return Ok(Step::Interrupted);
    }
    let v = grader::aggregate(&verdicts, &o.spec);
    let mut e = end(v.result, v.explanation);
    e.usage = usage;
    e.criteria = v.criteria;
    e.checks = checks;
    e.judges = v.judges;
    e.score = v.score;
    e.grader_model = Some(grader_model);
    finish(s, e).await
}

/// `needs_revision` on the last allowed cycle is `max_iterations_reached`.
fn last_cycle_cap(o: &OutcomeState, r: EvaluationResult) -> EvaluationResult {
    if r == EvaluationResult::NeedsRevision && o.iteration + 1 >= o.spec.max_iterations() {
        EvaluationResult::MaxIterationsReached
    } else {
        r
    }
}

/// Appends the cycle's end, unless an interrupt already closed the cycle.
async fn finish(s: &Arc<Session>, end: EvaluationEnd) -> Result<Step, StoreError> {
    crash::point("before_evaluation_end");
    let start = end.outcome_evaluation_start_id.clone();
    s.append_checked(|st| {
        Ok::<_, StoreError>(match st.active_outcome().map(|o| &o.phase) {
            Some(OutcomePhase::Evaluating { start_id }) if *start_id == start => {
                vec![EventBody::SpanOutcomeEvaluationEnd(end)]
            }
            _ => Vec::new(),
        })
    })
    .await?;
    crash::point("after_evaluation_end");
    Ok(Step::Continue)
}

/// Runs the outcome's checks in order, each in a fresh sandboxed process from the workspace.
async fn run_checks(
    s: &Arc<Session>,
    o: &OutcomeState,
    cancel: &CancellationToken,
) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for c in &o.spec.checks {
        if cancel.is_cancelled() {
            break;
        }
        out.push(match c {
            OutcomeCheck::Command {
                command,
                timeout_secs,
            } => {
                let timeout = timeout_secs.map_or(CHECK_TIMEOUT, Duration::from_secs);
                match grader::run_command(&s.toolbox, command, timeout, cancel).await {
                    Ok(r) => CheckResult {
                        check: command.clone(),
                        passed: r.exit_code == Some(0) && !r.timed_out,
                        exit_code: r.exit_code,
                        output: r.output,
                    },
                    Err(why) => CheckResult {
                        check: command.clone(),
                        passed: false,
                        exit_code: None,
                        output: format!("could not run: {why}"),
                    },
                }
            }
            OutcomeCheck::FileExists { path } => {
                let root = s.toolbox.workspace().to_path_buf();
                let raw = path.clone();
                let found = tokio::task::spawn_blocking(move || {
                    let ws = crate::tools::path::Workspace::open(&root, "file_exists")?;
                    let rel = ws.resolve(&raw)?;
                    ws.open_read(&raw, &rel, || format!("`{raw}` does not exist"))
                        .map(|_| ())
                })
                .await
                .unwrap_or_else(|e| Err(format!("internal error: {e}")));
                CheckResult {
                    check: format!("file_exists {path}"),
                    passed: found.is_ok(),
                    exit_code: None,
                    output: found.err().unwrap_or_default(),
                }
            }
        });
    }
    out
}
