//! Workflow runs in the session view: the run panel (a fold of the run events, seeded by
//! `workflow.list`), jumping to a task's thread, the checkpoint prompt (y approves, n asks a
//! note then denies, it closes when anyone answered); snapshots at 80×24 and 120×40.

use tether_proto::workflow::{
    AttemptStatus, Phase, RunResult, RunStatus, RunTask, TaskStatus, WorkflowRun, WorkflowSpec,
};

use super::*;
use crate::screen::runs::{Runs, status_label};

const RUN: &str = "wrun_notes";
const DRAFT_THREAD: &str = "sthr_draft2";

fn spec() -> WorkflowSpec {
    serde_json::from_value(json!({"name": "release-notes", "tasks": [
        {"id": "collect", "agent": "researcher", "prompt": "List every merged change."},
        {"id": "draft", "depends_on": ["collect"],
         "agent": {"name": "writer", "model": "openai/gpt-5.1"},
         "prompt": "Write the notes from: {{collect.output}}", "retries": 2,
         "escalate": {"after": 1, "model": "anthropic/claude-opus-4-6"}},
        {"id": "approve", "depends_on": ["draft"], "checkpoint": "Publish these notes?"},
        {"id": "per-module", "depends_on": ["collect"], "for_each": "{{collect.output.modules}}",
         "agent": "reviewer", "prompt": "Review {{item}}"}
    ]}))
    .unwrap()
}

fn created(seq: u64) -> Event {
    run_created(seq, RUN, spec())
}

/// `workflow_run.created` of `run`, one phase per task of `spec`.
pub(super) fn run_created(seq: u64, run: &str, spec: WorkflowSpec) -> Event {
    ev(
        seq,
        EventBody::WorkflowRunCreated {
            workflow_run_id: run.into(),
            name: spec.name.clone(),
            description: None,
            phases: spec
                .tasks
                .iter()
                .map(|t| Phase {
                    id: t.id.clone(),
                    name: t.id.clone(),
                    description: None,
                })
                .collect(),
            spec: Some(Box::new(spec)),
            tool_use_id: None,
        },
    )
}

fn run_running(seq: u64) -> Event {
    ev(
        seq,
        EventBody::WorkflowRunStatusRunning {
            workflow_run_id: RUN.into(),
        },
    )
}

fn started(seq: u64, task: &str, attempt: u32, thread: Option<&str>, model: &str) -> Event {
    ev(
        seq,
        EventBody::SpanWorkflowTaskStarted {
            workflow_run_id: RUN.into(),
            task_id: task.into(),
            attempt,
            thread_id: thread.map(str::to_string),
            model: thread.map(|_| model.to_string()),
        },
    )
}

fn ended(seq: u64, task: &str, attempt: u32, status: AttemptStatus, why: Option<&str>) -> Event {
    ev(
        seq,
        EventBody::SpanWorkflowTaskEnded {
            workflow_run_id: RUN.into(),
            task_id: task.into(),
            attempt,
            status,
            output: None,
            explanation: why.map(str::to_string),
            usage: Some(ModelUsage {
                input_tokens: 900,
                output_tokens: 100,
                cost_usd: Some(0.0125),
                ..ModelUsage::default()
            }),
        },
    )
}

fn fanned(seq: u64, n: usize) -> Event {
    ev(
        seq,
        EventBody::SpanWorkflowTaskFannedOut {
            workflow_run_id: RUN.into(),
            task_id: "per-module".into(),
            items: (0..n).map(|i| json!(format!("mod{i}"))).collect(),
        },
    )
}

fn run_ended(seq: u64) -> Event {
    ev(
        seq,
        EventBody::WorkflowRunStatusEnded {
            workflow_run_id: RUN.into(),
            result: RunResult::Completed {
                failed_tasks: vec![],
            },
            notice: None,
        },
    )
}

/// collect passed; draft failed once and runs again on the stronger model; the fan-out has
/// three items (one passed, one running, one pending).
fn midway() -> Vec<Event> {
    vec![
        user(1, "write the release notes"),
        created(2),
        run_running(3),
        started(
            4,
            "collect",
            1,
            Some("sthr_collect"),
            "anthropic/claude-sonnet-4-6",
        ),
        ended(5, "collect", 1, AttemptStatus::Succeeded, None),
        started(6, "draft", 1, Some("sthr_draft1"), "openai/gpt-5.1"),
        fanned(7, 3),
        started(
            8,
            "per-module[0]",
            1,
            Some("sthr_m0"),
            "anthropic/claude-haiku-4-5",
        ),
        ended(
            9,
            "draft",
            1,
            AttemptStatus::Failed,
            Some("check `test -s NOTES.md` exited 1"),
        ),
        started(
            10,
            "draft",
            2,
            Some(DRAFT_THREAD),
            "anthropic/claude-opus-4-6",
        ),
        ended(11, "per-module[0]", 1, AttemptStatus::Succeeded, None),
        started(
            12,
            "per-module[1]",
            1,
            Some("sthr_m1"),
            "anthropic/claude-haiku-4-5",
        ),
    ]
}

/// `midway`, then draft passed and the checkpoint waits.
fn waiting() -> Vec<Event> {
    let mut evs = midway();
    evs.push(ended(13, "draft", 2, AttemptStatus::Succeeded, None));
    evs.push(started(14, "approve", 1, None, ""));
    evs
}

fn statuses(runs: &Runs) -> Vec<(String, String, u32)> {
    runs.runs[0]
        .tasks
        .iter()
        .map(|t| (t.id.clone(), status_label(t), t.attempts))
        .collect()
}

fn row(id: &str, status: &str, attempts: u32) -> (String, String, u32) {
    (id.into(), status.into(), attempts)
}

#[test]
fn the_panel_folds_every_tasks_status_from_the_run_events() {
    let mut s = state(80, 24);
    feed(&mut s, &midway());
    assert_eq!(
        statuses(&s.runs),
        vec![
            row("collect", "passed", 1),
            row("draft", "running (retry 1)", 2),
            row("approve", "pending", 0),
            row("per-module", "running (3 items)", 0),
            row("per-module[0]", "passed", 1),
            row("per-module[1]", "running", 1),
            row("per-module[2]", "pending", 0),
        ]
    );
    let r = &s.runs.runs[0];
    assert_eq!(r.status, RunStatus::Running);
    assert_eq!(r.progress(), (1, 4));
    let draft = r.task("draft").unwrap();
    assert_eq!(draft.thread.as_deref(), Some(DRAFT_THREAD));
    assert_eq!(draft.model.as_deref(), Some("anthropic/claude-opus-4-6"));
    assert_eq!(draft.agent.as_deref(), Some("writer"));
    assert_eq!(
        draft.verdict.as_deref(),
        Some("check `test -s NOTES.md` exited 1")
    );
    // Three ended attempts at $0.0125 each.
    assert!((r.cost_usd().unwrap() - 0.0375).abs() < 1e-9);

    // The rest of the run: the fan-out fans in, the checkpoint passes, the run ends.
    feed(
        &mut s,
        &[
            ended(13, "draft", 2, AttemptStatus::Succeeded, None),
            ended(14, "per-module[1]", 1, AttemptStatus::Succeeded, None),
            started(15, "per-module[2]", 1, Some("sthr_m2"), "m"),
            ended(16, "per-module[2]", 1, AttemptStatus::Succeeded, None),
            started(17, "approve", 1, None, ""),
        ],
    );
    assert_eq!(
        status_label(s.runs.runs[0].task("approve").unwrap()),
        "waiting for you"
    );
    assert_eq!(
        s.runs.runs[0].task("per-module").unwrap().status,
        TaskStatus::Succeeded
    );
    feed(
        &mut s,
        &[
            ended(18, "approve", 1, AttemptStatus::Succeeded, None),
            run_ended(19),
        ],
    );
    assert!(
        s.runs.runs[0]
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Succeeded)
    );
    assert_eq!(s.runs.runs[0].progress(), (4, 4));
}

#[test]
fn a_task_out_of_retries_fails_and_the_rest_is_skipped_when_the_run_ends() {
    let mut s = state(80, 24);
    let mut evs = midway();
    evs.push(ended(
        13,
        "draft",
        2,
        AttemptStatus::Failed,
        Some("still no file"),
    ));
    evs.push(started(14, "draft", 3, Some("sthr_draft3"), "m"));
    evs.push(ended(
        15,
        "draft",
        3,
        AttemptStatus::Failed,
        Some("gave up"),
    ));
    feed(&mut s, &evs);
    let draft = s.runs.runs[0].task("draft").unwrap();
    assert_eq!(draft.status, TaskStatus::Failed, "2 retries, 3 failures");
    assert_eq!(status_label(draft), "failed");
    feed(
        &mut s,
        &[ev(
            16,
            EventBody::WorkflowRunStatusEnded {
                workflow_run_id: RUN.into(),
                result: RunResult::Completed {
                    failed_tasks: vec!["draft".into()],
                },
                notice: None,
            },
        )],
    );
    let r = &s.runs.runs[0];
    assert_eq!(r.task("approve").unwrap().status, TaskStatus::Skipped);
    assert_eq!(r.task("per-module[2]").unwrap().status, TaskStatus::Skipped);
    assert_eq!(r.task("collect").unwrap().status, TaskStatus::Succeeded);
}

#[test]
fn replayed_run_events_change_nothing() {
    let mut once = Runs::default();
    let mut twice = Runs::default();
    for e in midway() {
        once.apply(&e);
        twice.apply(&e);
    }
    // A reconnect replays what was already folded.
    for e in midway() {
        twice.apply(&e);
    }
    assert_eq!(once, twice);
}

fn snapshot_run() -> WorkflowRun {
    let task = |id: &str, status, attempts, failures, thread: Option<&str>| RunTask {
        id: id.into(),
        depends_on: match id {
            "draft" => vec!["collect".into()],
            "approve" => vec!["draft".into()],
            _ => Vec::new(),
        },
        status,
        attempts,
        failures,
        session_thread_id: thread.map(str::to_string),
        model: thread.map(|_| "anthropic/claude-sonnet-4-6".to_string()),
        output: None,
        verdicts: Vec::new(),
        question: (id == "approve").then(|| "Publish these notes?".into()),
        items: None,
        optional: false,
        usage: ModelUsage::default(),
    };
    WorkflowRun {
        id: RUN.into(),
        object_type: "workflow_run".into(),
        session_id: "sesn_1".into(),
        name: "release-notes".into(),
        description: None,
        status: RunStatus::Running,
        result: None,
        tasks: vec![
            task("collect", TaskStatus::Succeeded, 1, 0, Some("sthr_collect")),
            task("draft", TaskStatus::Running, 2, 1, Some(DRAFT_THREAD)),
            task("approve", TaskStatus::Queued, 0, 0, None),
        ],
        usage: ModelUsage::default(),
        created_at: T0.into(),
        ended_at: None,
    }
}

#[test]
fn a_run_older_than_the_loaded_events_comes_from_the_list_and_takes_later_events() {
    let mut s = state(80, 24);
    // The tail holds the run's newest events only: a placeholder until the list answers.
    feed(&mut s, &[started(40, "draft", 2, Some(DRAFT_THREAD), "m")]);
    assert!(!s.runs.runs[0].tasks.is_empty());
    update(&mut s, Msg::Net(NetMsg::Runs(vec![snapshot_run()])));
    assert_eq!(s.runs.runs.len(), 1);
    assert_eq!(s.runs.runs[0].name, "release-notes");
    // Pushes after the answer: one already in it (a replay of attempt 2's start), then new.
    feed(
        &mut s,
        &[
            started(40, "draft", 2, Some(DRAFT_THREAD), "m"),
            ended(41, "draft", 2, AttemptStatus::Succeeded, None),
            started(42, "approve", 1, None, ""),
        ],
    );
    let r = &s.runs.runs[0];
    assert_eq!(r.task("draft").unwrap().status, TaskStatus::Succeeded);
    assert_eq!(r.task("draft").unwrap().failures, 1);
    assert_eq!(
        s.runs.waiting(),
        vec![(RUN.to_string(), "approve".to_string())]
    );
    // A run folded from its creation is newer than any list answer: the answer leaves it.
    let mut folded = state(80, 24);
    feed(&mut folded, &waiting());
    let before = folded.runs.clone();
    update(&mut folded, Msg::Net(NetMsg::Runs(vec![snapshot_run()])));
    assert_eq!(folded.runs, before);
}

#[test]
fn ctrl_g_opens_the_panel_and_enter_shows_the_tasks_thread() {
    let mut s = state(120, 40);
    key_m(&mut s, KeyCode::Char('g'), KeyModifiers::CONTROL);
    assert_eq!(s.overlay, Overlay::None, "no runs: no panel");
    assert!(s.notice.as_deref().unwrap().contains("no workflow runs"));
    feed(&mut s, &midway());
    key_m(&mut s, KeyCode::Char('g'), KeyModifiers::CONTROL);
    assert_eq!(
        s.overlay,
        Overlay::Runs {
            run: 0,
            selected: 0
        }
    );
    key(&mut s, KeyCode::Down);
    let fx = key(&mut s, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::ViewThread(Some(DRAFT_THREAD.into())))]
    );
    assert_eq!(s.overlay, Overlay::None);
    assert_eq!(s.viewed_thread(), Some(DRAFT_THREAD));
    // The graph: collect, then draft (and approve under it), then per-module.
    key_m(&mut s, KeyCode::Char('g'), KeyModifiers::CONTROL);
    for _ in 0..3 {
        key(&mut s, KeyCode::Down);
    }
    // A fan-out task runs as its items: enter unfolds them, and one has a thread to show.
    assert!(key(&mut s, KeyCode::Enter).is_empty());
    assert_eq!(s.run_rows(0).len(), 7, "4 tasks and 3 items");
    key(&mut s, KeyCode::Down);
    assert_eq!(
        key(&mut s, KeyCode::Enter),
        vec![Effect::Net(Cmd::ViewThread(Some("sthr_m0".into())))]
    );
    key_m(&mut s, KeyCode::Char('g'), KeyModifiers::CONTROL);
    // A task not started has no thread to show.
    key(&mut s, KeyCode::End);
    assert!(key(&mut s, KeyCode::Enter).is_empty());
    assert!(s.notice.as_deref().unwrap().contains("has no thread yet"));
    key(&mut s, KeyCode::Esc);
    assert_eq!(s.overlay, Overlay::None);
}

fn answer(approve: bool, note: Option<&str>) -> Vec<Effect> {
    vec![Effect::Net(Cmd::AnswerCheckpoint {
        run: RUN.into(),
        task: "approve".into(),
        approve,
        note: note.map(str::to_string),
    })]
}

fn prompt() -> Overlay {
    Overlay::Checkpoint {
        run: RUN.into(),
        task: "approve".into(),
        draft: None,
    }
}

#[test]
fn a_waiting_checkpoint_prompts_y_approves_and_the_run_going_on_keeps_it_closed() {
    let mut s = state(80, 24);
    feed(&mut s, &midway());
    assert_eq!(s.overlay, Overlay::None);
    feed(&mut s, &waiting()[12..]);
    assert_eq!(s.overlay, prompt());
    assert!(frame(&s).contains("Publish these notes?"));
    assert_eq!(key(&mut s, KeyCode::Char('y')), answer(true, None));
    assert_eq!(s.overlay, Overlay::None);
    // Until the answer's event is in, the prompt doesn't come back.
    update(&mut s, Msg::Tick(now()));
    assert_eq!(s.overlay, Overlay::None);
    feed(
        &mut s,
        &[
            ended(15, "approve", 1, AttemptStatus::Succeeded, None),
            run_ended(16),
        ],
    );
    assert_eq!(s.overlay, Overlay::None);
    assert!(s.runs.waiting().is_empty());
}

#[test]
fn n_asks_for_a_note_then_denies_and_esc_steps_back() {
    let mut s = state(80, 24);
    feed(&mut s, &waiting());
    key(&mut s, KeyCode::Char('n'));
    assert!(matches!(&s.overlay, Overlay::Checkpoint { draft: Some(d), .. } if d.is_empty()));
    typ(&mut s, "typo");
    key(&mut s, KeyCode::Esc);
    assert_eq!(s.overlay, prompt(), "esc drops the note, sends nothing");
    key(&mut s, KeyCode::Char('n'));
    typ(&mut s, "the PR list is wrong");
    assert!(frame(&s).contains("the PR list is wrong▏"));
    assert_eq!(
        key(&mut s, KeyCode::Enter),
        answer(false, Some("the PR list is wrong"))
    );
    assert_eq!(s.overlay, Overlay::None);
}

#[test]
fn another_clients_answer_closes_the_prompt() {
    let mut s = state(80, 24);
    feed(&mut s, &waiting());
    assert_eq!(s.overlay, prompt());
    feed(
        &mut s,
        &[ended(
            15,
            "approve",
            1,
            AttemptStatus::Failed,
            Some("denied: not yet"),
        )],
    );
    assert_eq!(s.overlay, Overlay::None);
    assert!(s.notice.as_deref().unwrap().contains("was answered"));
}

#[test]
fn esc_puts_the_prompt_away_ctrl_a_brings_it_back_and_typing_is_never_interrupted() {
    let mut s = state(80, 24);
    feed(&mut s, &waiting());
    key(&mut s, KeyCode::Esc);
    assert_eq!(s.overlay, Overlay::None);
    assert!(frame(&s).contains("ctrl-a reopens the checkpoint"));
    // Other events don't bring it back by themselves.
    feed(&mut s, &[agent(15, "waiting on you")]);
    assert_eq!(s.overlay, Overlay::None);
    key_m(&mut s, KeyCode::Char('a'), KeyModifiers::CONTROL);
    assert_eq!(s.overlay, prompt());

    // A checkpoint that starts waiting while the user types waits for the composer to empty.
    let mut s = state(80, 24);
    feed(&mut s, &midway());
    typ(&mut s, "yes and");
    feed(&mut s, &waiting()[12..]);
    assert_eq!(s.overlay, Overlay::None);
    assert_eq!(s.composer.lines(), ["yes and"]);
    assert!(frame(&s).contains("ctrl-a answer checkpoint"));

    // A read-only client sees the panel but is never prompted.
    let mut s = State::new("sesn_1", Keys::default(), true, 80, 24);
    feed(&mut s, &waiting());
    assert_eq!(s.overlay, Overlay::None);
}

#[test]
fn y_on_a_waiting_checkpoint_in_the_panel_approves_it() {
    let mut s = state(120, 40);
    feed(&mut s, &waiting());
    key(&mut s, KeyCode::Esc);
    key_m(&mut s, KeyCode::Char('g'), KeyModifiers::CONTROL);
    key(&mut s, KeyCode::Down);
    key(&mut s, KeyCode::Down);
    assert!(frame(&s).contains("y approve · n deny"));
    assert_eq!(key(&mut s, KeyCode::Char('y')), answer(true, None));
}

#[test]
fn watching_a_run_opens_its_panel_once_the_run_is_known_on_its_waiting_checkpoint() {
    let mut s = state(80, 24);
    s.watch_run = Some(RUN.into());
    // Not known yet (the tail is still loading): nothing opens.
    update(&mut s, Msg::Tick(now()));
    assert_eq!(s.overlay, Overlay::None);
    // Known from the list answer: the panel, on the checkpoint waiting (not the prompt).
    let mut listed = snapshot_run();
    listed.tasks[1].status = TaskStatus::Succeeded;
    listed.tasks[2].status = TaskStatus::WaitingForApproval;
    listed.tasks[2].attempts = 1;
    update(&mut s, Msg::Net(NetMsg::Runs(vec![listed])));
    assert_eq!(
        s.overlay,
        Overlay::Runs {
            run: 0,
            selected: 2
        }
    );
    assert_eq!(s.watch_run, None);
    // Closing the panel brings the prompt for the waiting checkpoint.
    key(&mut s, KeyCode::Esc);
    assert_eq!(s.overlay, prompt());
}

// ---- snapshots ----

fn snap_sizes(name: &str, build: impl Fn(&mut State)) {
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        let mut s = state(w, h);
        build(&mut s);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), frame(&s));
    }
}

#[test]
fn snapshot_the_run_panel() {
    snap_sizes("runs_panel", |s| {
        feed(s, &midway());
        key_m(s, KeyCode::Char('g'), KeyModifiers::CONTROL);
        key(s, KeyCode::Down);
    });
}

#[test]
fn snapshot_the_checkpoint_prompt() {
    snap_sizes("runs_checkpoint", |s| feed(s, &waiting()));
}

#[test]
fn snapshot_the_checkpoint_denial_note() {
    snap_sizes("runs_checkpoint_deny", |s| {
        feed(s, &waiting());
        key(s, KeyCode::Char('n'));
        typ(s, "the PR list is wrong");
    });
}
