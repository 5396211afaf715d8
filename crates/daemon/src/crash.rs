//! Named crash points for the crash tests. With the `crash-points` feature,
//! `TETHER_CRASH_AT=<point>[:n]` makes the daemon SIGKILL itself the n-th time (default 1st)
//! execution passes `point(<point>)`. Without the feature `point` is an empty inline function,
//! so release builds pay nothing.
//!
//! Points: `after_user_message`, `mid_stream` (once per streamed delta), `after_agent_message`,
//! `after_tool_intent` (tool call committed, process not started), `during_tool` (the tool is
//! running), `after_tool_exit` (result not committed), `after_tool_result` (before the next
//! model call), `before_idle`, `after_interrupt` (interrupt committed, not acted on),
//! `after_requires_action` (idle waiting for a tool confirmation or custom result),
//! `after_answer` (the last awaited answer committed, the turn not restarted yet);
//! outcomes: `after_evaluation_start` (cycle started, no grader asked yet),
//! `before_evaluation_end` (verdict reached, not committed), `after_evaluation_end` (verdict
//! committed, its revision message not yet), `after_evaluation_follow_up` (revision or
//! acknowledgment committed, the next turn not started); threads: `after_thread_created` (a
//! child's row and `session.thread_created` committed, no message yet),
//! `after_thread_message_sent` (the message delivered, the thread's turn not started);
//! workflows: `after_workflow_run_created`, `after_workflow_task_started` (the attempt, its
//! thread row and `session.thread_created` committed, no message yet),
//! `after_workflow_message_delivered`, `after_workflow_task_ended`, `after_workflow_fan_out`,
//! `after_workflow_tool_intent` (a `start_workflow` call's intent committed, no run yet),
//! `before_workflow_tool_result` (its run created and driven, the call's result not committed);
//! deployments: `after_run_recorded` (the run and its reserved ids committed, no session),
//! `before_run_workflow` (a workflow deployment's session made, its run not started),
//! `after_run_session` (session and initial events or workflow run made, the run not done);
//! webhooks: `before_webhook_send` (a delivery committed with its event, not sent yet),
//! `after_webhook_send` (the receiver answered, the attempt not recorded).

#[cfg(feature = "crash-points")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Target {
        point: String,
        nth: u32,
        hits: AtomicU32,
    }

    fn target() -> Option<&'static Target> {
        static TARGET: OnceLock<Option<Target>> = OnceLock::new();
        TARGET
            .get_or_init(|| {
                let spec = std::env::var("TETHER_CRASH_AT").ok()?;
                let (point, nth) = match spec.split_once(':') {
                    Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
                    None => (spec, 1),
                };
                Some(Target {
                    point,
                    nth,
                    hits: AtomicU32::new(0),
                })
            })
            .as_ref()
    }

    pub fn point(name: &str) {
        let Some(t) = target() else { return };
        if t.point != name {
            return;
        }
        if t.hits.fetch_add(1, Ordering::SeqCst) + 1 == t.nth {
            tracing::error!(
                point = name,
                "TETHER_CRASH_AT: killing the daemon on purpose"
            );
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[cfg(feature = "crash-points")]
pub use armed::point;

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &str) {}
