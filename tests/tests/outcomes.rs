//! Outcomes (issue 21): work graded against a rubric before it is called done. The daemon is
//! driven over its socket (and HTTP for the SDK) against the in-repo mock, whose `grader`
//! route answers the requests that offer `submit_evaluation` from their own replies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv, assert_log_invariants, python, sdk_script};
use tether_mock_llm::{Route, Script};
use tether_proto::outcome::{EvaluationEnd, EvaluationResult};
use tether_proto::{Event, EventBody, StopReason, blocks_text};

const GRADER_TOOL: &str = "submit_evaluation";

fn grader(replies: Vec<Reply>) -> Route {
    Route::new("grader", replies).when_tool(GRADER_TOOL)
}

fn verdict(result: &str, explanation: &str) -> Reply {
    Reply::tool_use(
        GRADER_TOOL,
        json!({"result": result, "explanation": explanation,
               "criteria": [{"name": "greets", "met": result == "satisfied", "note": explanation}]}),
    )
}

fn outcome(extra: Value) -> Value {
    let mut o = json!({
        "description": "write a greeting to hello.txt",
        "rubric": {"type": "text", "content": "- hello.txt says hello"},
    });
    for (k, v) in extra.as_object().unwrap() {
        o[k] = v.clone();
    }
    o
}

/// A daemon, a session in a fresh workspace, and the outcome defined on it.
async fn start(env: &TestEnv, spec: Value) -> String {
    env.spawn_daemon(None).await;
    start_on_running(env, spec).await
}

async fn start_on_running(env: &TestEnv, spec: Value) -> String {
    let mut c = env.client().await;
    let ws = tempfile::Builder::new()
        .prefix("ws")
        .tempdir_in(env.home.path())
        .unwrap()
        .keep();
    let info = c
        .call("session.create", json!({"dir": ws.display().to_string()}))
        .await
        .unwrap();
    let id = info["id"].as_str().unwrap().to_string();
    let rec = c
        .call(
            "session.define_outcome",
            json!({"session": id, "outcome": spec}),
        )
        .await
        .unwrap();
    assert_eq!(rec["event"]["type"], "user.define_outcome", "{rec}");
    assert!(
        rec["event"]["outcome_id"]
            .as_str()
            .unwrap()
            .starts_with("outc_"),
        "{rec}"
    );
    id
}

async fn settle(env: &TestEnv, id: &str) -> Vec<Event> {
    env.wait_idle(id).await;
    let events = env.log(id).await;
    assert_log_invariants(&events);
    events
}

fn ends(events: &[Event]) -> Vec<EvaluationEnd> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SpanOutcomeEvaluationEnd(end) => Some(end.clone()),
            _ => None,
        })
        .collect()
}

fn results(events: &[Event]) -> Vec<EvaluationResult> {
    ends(events).iter().map(|e| e.result).collect()
}

fn user_texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::UserMessage { content } => Some(blocks_text(content)),
            _ => None,
        })
        .collect()
}

fn last_stop(events: &[Event]) -> StopReason {
    match &events.last().unwrap().body {
        EventBody::SessionStatusIdle { stop_reason } => stop_reason.clone(),
        other => panic!("the log should end idle, ends with {other:?}"),
    }
}

/// The mock's requests split into the agent's and the grader's.
fn requests(env: &TestEnv) -> (Vec<Value>, Vec<Value>) {
    let all: Vec<Value> = env
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/messages"))
        .map(|r| r.body)
        .collect();
    let is_grader = |b: &Value| {
        b["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == GRADER_TOOL))
    };
    let (g, a): (Vec<Value>, Vec<Value>) = all.into_iter().partition(is_grader);
    (a, g)
}

async fn outcome_evaluations(env: &TestEnv, id: &str) -> Vec<Value> {
    let mut c = env.client().await;
    let info = c.call("session.get", json!({"session": id})).await.unwrap();
    info["outcome_evaluations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn needs_revision_then_revise_then_satisfied() {
    let env = TestEnv::new(
        Script::sequential(vec![
            Reply::text("AGENT-SECRET first attempt"),
            Reply::text("second attempt"),
        ])
        .with_route(grader(vec![
            verdict("needs_revision", "hello.txt is missing"),
            verdict("satisfied", "hello.txt says hello"),
        ])),
    )
    .await;
    let id = start(&env, outcome(json!({}))).await;
    let events = settle(&env, &id).await;
    assert_eq!(
        results(&events),
        vec![EvaluationResult::NeedsRevision, EvaluationResult::Satisfied]
    );
    assert_eq!(last_stop(&events), StopReason::EndTurn);
    let e = ends(&events);
    assert_eq!((e[0].iteration, e[1].iteration), (0, 1));
    assert!(e[1].usage.input_tokens > 0, "grader usage is recorded");
    assert_eq!(e[0].criteria[0].name, "greets");
    // Each end names its own start.
    for end in &e {
        let start = events
            .iter()
            .find(|x| x.id == end.outcome_evaluation_start_id)
            .unwrap();
        assert!(
            matches!(start.body, EventBody::SpanOutcomeEvaluationStart { iteration, .. } if iteration == end.iteration)
        );
    }
    // The session never went idle between cycles.
    let idles = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::SessionStatusIdle { .. }))
        .count();
    assert_eq!(idles, 1);
    let texts = user_texts(&events);
    assert_eq!(texts.len(), 1, "one revision message: {texts:?}");
    assert!(
        texts[0].starts_with("The grader found the work needs revision (evaluation 1 of 3):")
            && texts[0].contains("hello.txt is missing"),
        "{}",
        texts[0]
    );
    let (agent, graders) = requests(&env);
    assert_eq!((agent.len(), graders.len()), (2, 2));
    // The agent saw the outcome (description and rubric), then the revision.
    let first = agent[0]["messages"].to_string();
    assert!(
        first.contains("write a greeting") && first.contains("hello.txt says hello"),
        "{first}"
    );
    assert!(
        agent[1]["messages"]
            .to_string()
            .contains("hello.txt is missing")
    );
    // The grader has its own context: the rubric, not the agent's words; read-only tools.
    for g in &graders {
        let body = g.to_string();
        assert!(!body.contains("AGENT-SECRET"), "{body}");
        assert!(body.contains("- hello.txt says hello"));
        let tools: Vec<&str> = g["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(tools, vec!["read", "glob", "grep", "bash", GRADER_TOOL]);
    }
    let evals = outcome_evaluations(&env, &id).await;
    assert_eq!(evals.len(), 1);
    assert_eq!(evals[0]["result"], "satisfied");
    assert_eq!(evals[0]["iteration"], 1);
    assert_eq!(evals[0]["type"], "outcome_evaluation");
}

/// A session the restarted daemon has not loaded lists its outcome from the row, exactly as
/// the fold says it (completed_at is the end's commit time).
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_after_a_restart_shows_the_outcome_without_loading_the_session() {
    let env = TestEnv::new(
        Script::sequential(vec![Reply::text("first"), Reply::text("second")]).with_route(grader(
            vec![
                verdict("needs_revision", "not yet"),
                verdict("satisfied", "good"),
            ],
        )),
    )
    .await;
    let mut daemon = env.spawn_daemon(None).await;
    let id = start_on_running(&env, outcome(json!({}))).await;
    let events = settle(&env, &id).await;
    let loaded = outcome_evaluations(&env, &id).await;
    let end = events
        .iter()
        .rev()
        .find(|e| matches!(e.body, EventBody::SpanOutcomeEvaluationEnd(_)))
        .unwrap();
    assert_eq!(loaded[0]["completed_at"], json!(end.processed_at));
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    env.spawn_daemon(None).await;
    let mut c = env.client().await;
    let list = c.call("session.list", json!({})).await.unwrap();
    let listed = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!(id))
        .unwrap()
        .clone();
    assert_eq!(listed["outcome_evaluations"], json!(loaded), "{listed}");
    assert_eq!(listed["outcome_evaluations"][0]["result"], "satisfied");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_iterations_reached_gets_one_acknowledgment_turn() {
    let env = TestEnv::new(
        Script::sequential(vec![
            Reply::text("try 1"),
            Reply::text("try 2"),
            Reply::text("summary: still missing"),
        ])
        .with_route(grader(vec![
            verdict("needs_revision", "missing one"),
            verdict("needs_revision", "missing two"),
        ])),
    )
    .await;
    let id = start(&env, outcome(json!({"max_iterations": 2}))).await;
    let events = settle(&env, &id).await;
    assert_eq!(
        results(&events),
        vec![
            EvaluationResult::NeedsRevision,
            EvaluationResult::MaxIterationsReached
        ]
    );
    let texts = user_texts(&events);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[1].starts_with("The evaluation budget for this outcome is spent"));
    assert!(texts[1].contains("missing two"), "{}", texts[1]);
    assert_eq!(last_stop(&events), StopReason::EndTurn);
    let (agent, graders) = requests(&env);
    assert_eq!(
        (agent.len(), graders.len()),
        (3, 2),
        "no evaluation after the acknowledgment"
    );
    let evals = outcome_evaluations(&env, &id).await;
    assert_eq!(evals[0]["result"], "max_iterations_reached");
    assert!(evals[0]["completed_at"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grader_that_never_submits_fails_the_outcome() {
    let env = TestEnv::new(
        Script::sequential(vec![Reply::text("done")]).with_route(grader(vec![
            Reply::text("looks fine to me"),
            Reply::text("really fine"),
        ])),
    )
    .await;
    let id = start(&env, outcome(json!({}))).await;
    let events = settle(&env, &id).await;
    assert_eq!(results(&events), vec![EvaluationResult::Failed]);
    let e = &ends(&events)[0];
    assert!(e.explanation.contains(GRADER_TOOL), "{}", e.explanation);
    let (_, graders) = requests(&env);
    assert_eq!(graders.len(), 2, "one reminder, then it gives up");
    assert!(
        graders[1]["messages"]
            .to_string()
            .contains("You must answer")
    );
    assert_eq!(last_stop(&events), StopReason::EndTurn);
    assert_eq!(outcome_evaluations(&env, &id).await[0]["result"], "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupt_during_evaluation_ends_it_interrupted() {
    let env = TestEnv::new(
        Script::sequential(vec![Reply::text("done"), Reply::text("again")]).with_route(grader(
            vec![Reply::stall(vec![]), verdict("satisfied", "fine")],
        )),
    )
    .await;
    let id = start(&env, outcome(json!({}))).await;
    // The agent's request, then the grader's (stalled).
    env.mock.wait_for_requests(2).await;
    let mut c = env.client().await;
    let evals = outcome_evaluations(&env, &id).await;
    assert_eq!(evals[0]["result"], "evaluating");
    // One outcome at a time.
    let err = c
        .call(
            "session.define_outcome",
            json!({"session": id, "outcome": outcome(json!({}))}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, tether_proto::ErrorCode::Conflict);
    assert!(
        err.message.contains("one outcome at a time"),
        "{}",
        err.message
    );
    c.call("session.interrupt", json!({"session": id}))
        .await
        .unwrap();
    let events = settle(&env, &id).await;
    assert_eq!(results(&events), vec![EvaluationResult::Interrupted]);
    let e = &ends(&events)[0];
    let start = events
        .iter()
        .find(|x| matches!(x.body, EventBody::SpanOutcomeEvaluationStart { .. }))
        .unwrap();
    assert_eq!(e.outcome_evaluation_start_id, start.id);
    assert_eq!(last_stop(&events), StopReason::Interrupted);
    assert_eq!(
        outcome_evaluations(&env, &id).await[0]["result"],
        "interrupted"
    );
    // The next outcome is accepted and runs to its verdict.
    c.call(
        "session.define_outcome",
        json!({"session": id, "outcome": outcome(json!({}))}),
    )
    .await
    .unwrap();
    env.mock.wait_for_requests(4).await;
    let events = settle(&env, &id).await;
    assert_eq!(
        results(&events),
        vec![EvaluationResult::Interrupted, EvaluationResult::Satisfied]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_check_needs_revision_without_asking_the_grader() {
    let env = TestEnv::new(
        Script::sequential(vec![
            Reply::text("I think it's done"),
            Reply::tool_use(
                "write",
                json!({"file_path": "hello.txt", "content": "hello\n"}),
            ),
            Reply::text("now it is"),
        ])
        .with_route(grader(vec![verdict("satisfied", "says hello")])),
    )
    .await;
    let id = start(
        &env,
        outcome(json!({"checks": [
            {"type": "file_exists", "path": "hello.txt"},
            {"type": "command", "command": "echo checking; grep -q hello hello.txt"}
        ]})),
    )
    .await;
    let events = settle(&env, &id).await;
    assert_eq!(
        results(&events),
        vec![EvaluationResult::NeedsRevision, EvaluationResult::Satisfied]
    );
    let e = ends(&events);
    assert_eq!(e[0].grader_model, None, "no grader ran");
    assert_eq!(e[0].usage.input_tokens, 0);
    assert_eq!(
        e[0].checks.iter().map(|c| c.passed).collect::<Vec<_>>(),
        vec![false, false]
    );
    assert!(
        e[0].checks[1].output.contains("checking"),
        "{:?}",
        e[0].checks
    );
    assert!(
        e[0].explanation.contains("grep -q hello"),
        "{}",
        e[0].explanation
    );
    assert!(e[1].checks.iter().all(|c| c.passed), "{:?}", e[1].checks);
    let texts = user_texts(&events);
    assert!(texts[0].contains("failing check"), "{}", texts[0]);
    let (_, graders) = requests(&env);
    assert_eq!(
        graders.len(),
        1,
        "the grader only ran once the checks passed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_judges_and_an_outlier_is_dropped() {
    let scored = |score: f64, result: &str| {
        Reply::tool_use(
            GRADER_TOOL,
            json!({"result": result, "explanation": format!("score {score}"),
                   "criteria": [], "scores": [{"dimension": "quality", "score": score}]}),
        )
    };
    let env = TestEnv::new(
        Script::sequential(vec![Reply::text("done")]).with_route(grader(vec![
            scored(4.5, "satisfied"),
            scored(1.0, "needs_revision"),
            scored(4.0, "satisfied"),
        ])),
    )
    .await;
    let id = start(
        &env,
        outcome(json!({"grader": {"judges": 3, "dimensions": [{"name": "quality"}]}})),
    )
    .await;
    let events = settle(&env, &id).await;
    assert_eq!(results(&events), vec![EvaluationResult::Satisfied]);
    let e = &ends(&events)[0];
    assert_eq!(e.score, Some(4.25));
    let mut judges: Vec<(f64, bool)> = e.judges.iter().map(|j| (j.score, j.outlier)).collect();
    judges.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(judges, vec![(1.0, true), (4.0, false), (4.5, false)]);
    let (_, graders) = requests(&env);
    assert_eq!(graders.len(), 3);
    assert!(graders[0]["system"].to_string().contains("quality"));
    let ongoing = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::SpanOutcomeEvaluationOngoing { .. }))
        .count();
    assert_eq!(ongoing, 3, "one heartbeat per grader request");
}

#[tokio::test(flavor = "multi_thread")]
async fn escalation_switches_the_agent_model() {
    let env = TestEnv::new(
        Script::sequential(vec![Reply::text("weak try"), Reply::text("strong try")]).with_route(
            grader(vec![
                verdict("needs_revision", "not yet"),
                verdict("satisfied", "good"),
            ]),
        ),
    )
    .await;
    let id = start(
        &env,
        outcome(json!({"escalate": {"after": 1, "model": "anthropic/claude-escalated"}})),
    )
    .await;
    let events = settle(&env, &id).await;
    assert_eq!(
        results(&events),
        vec![EvaluationResult::NeedsRevision, EvaluationResult::Satisfied]
    );
    let switches: Vec<&String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SessionUpdated { model: Some(m), .. } => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(switches, vec!["anthropic/claude-escalated"]);
    let (agent, _) = requests(&env);
    assert_ne!(agent[0]["model"], "claude-escalated");
    assert_eq!(agent[1]["model"], "claude-escalated");
    let mut c = env.client().await;
    let info = c.call("session.get", json!({"session": id})).await.unwrap();
    assert_eq!(info["model"], "anthropic/claude-escalated");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_outcomes_are_refused_with_what_to_change() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    env.spawn_daemon(None).await;
    let mut c = env.client().await;
    let info = c.call("session.create", json!({})).await.unwrap();
    let id = info["id"].as_str().unwrap();
    for (spec, needle) in [
        (outcome(json!({"max_iterations": 21})), "between 1 and 20"),
        (
            json!({"description": "d", "rubric": {"type": "file", "file_id": "file_1"}}),
            "no Files API",
        ),
        (
            outcome(json!({"escalate": {"after": 1, "model": "nosuch/model"}})),
            "escalate.model",
        ),
    ] {
        let err = c
            .call(
                "session.define_outcome",
                json!({"session": id, "outcome": spec}),
            )
            .await
            .unwrap_err();
        assert!(err.message.contains(needle), "{needle}: {}", err.message);
    }
    assert_eq!(env.log(id).await.len(), 0, "nothing was recorded");
}

/// Kills the daemon at `point`, restarts it, and checks the outcome finished with exactly one
/// start and one end per cycle and exactly one revision message per `needs_revision`.
async fn crash_and_resume(point: &str) {
    let env = TestEnv::new(
        Script::sequential(
            (0..6)
                .map(|i| Reply::text(format!("attempt {i}")))
                .collect(),
        )
        .with_route(grader(vec![
            verdict("needs_revision", "not yet"),
            verdict("needs_revision", "still not"),
            verdict("satisfied", "good"),
            verdict("satisfied", "good"),
            verdict("satisfied", "good"),
        ])),
    )
    .await;
    let daemon = env.spawn_daemon(Some(point)).await;
    let id = start_on_running(&env, outcome(json!({}))).await;
    env.wait_killed(daemon).await;
    env.spawn_daemon(None).await;
    let events = settle(&env, &id).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e.body, EventBody::SessionStatusRescheduled {})),
        "{point}: the restart is recorded"
    );
    let e = ends(&events);
    assert_eq!(
        e.last().unwrap().result,
        EvaluationResult::Satisfied,
        "{point}"
    );
    let starts: Vec<&Event> = events
        .iter()
        .filter(|x| matches!(x.body, EventBody::SpanOutcomeEvaluationStart { .. }))
        .collect();
    assert_eq!(starts.len(), e.len(), "{point}: one start per end");
    for (i, end) in e.iter().enumerate() {
        assert_eq!(end.iteration, i as u32, "{point}: one end per cycle");
        assert_eq!(end.outcome_evaluation_start_id, starts[i].id, "{point}");
    }
    let revisions = user_texts(&events)
        .iter()
        .filter(|t| t.starts_with("The grader found the work needs revision"))
        .count();
    let needed = e
        .iter()
        .filter(|x| x.result == EvaluationResult::NeedsRevision)
        .count();
    assert_eq!(
        revisions, needed,
        "{point}: one revision message per needs_revision"
    );
    assert_eq!(last_stop(&events), StopReason::EndTurn, "{point}");
    assert_eq!(
        outcome_evaluations(&env, &id).await[0]["result"],
        "satisfied",
        "{point}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_evaluation_start_reruns_it() {
    crash_and_resume("after_evaluation_start").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_before_the_evaluation_end_reruns_it() {
    crash_and_resume("before_evaluation_end").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_evaluation_end_still_sends_the_revision_once() {
    crash_and_resume("after_evaluation_end").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_revision_message_goes_on_with_the_next_cycle() {
    crash_and_resume("after_evaluation_follow_up").await;
}

/// The official Python SDK (`anthropic`, unmodified) sends `user.define_outcome` with
/// `beta.sessions.events.send` and reads the spans and `outcome_evaluations` in its own types:
/// tests/sdk/define_outcome.py.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_defines_an_outcome_and_reads_its_evaluation() {
    let env = TestEnv::new(
        Script::sequential(vec![Reply::text("done"), Reply::text("done again")])
            .with_side_reply(Reply::text("title"))
            .with_route(grader(vec![
                verdict("satisfied", "hello.txt says hello"),
                verdict("satisfied", "fine"),
            ])),
    )
    .await;
    env.run_sdk_program(
        &python(),
        &[&sdk_script("define_outcome.py")],
        "python sdk outcome ok",
    )
    .await;
}
