//! Workflow runs (issue 23): task graphs on a session's threads, driven over the socket (and
//! the CLI) against the in-repo mock. Each task's thread is routed to its own replies by its
//! system prompt (inline agents `You are <task>.`) or by model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv};
use tether_mock_llm::{Route, Script};
use tether_proto::{Event, EventBody, ServerFrame, blocks_text};

/// A route answering the threads whose system prompt contains `who`, each with `replies`.
fn task_route(who: &str, replies: Vec<Reply>) -> Route {
    Route::new(who, replies).when_system(who).by_turn()
}

fn script(routes: Vec<Route>) -> Script {
    let mut s = Script::by_turn(vec![Reply::text("primary")]).with_side_reply(Reply::text("title"));
    for r in routes {
        s = s.with_route(r);
    }
    s
}

fn agent(task: &str) -> Value {
    json!({"system": format!("You are {task}.")})
}

async fn session(env: &TestEnv) -> String {
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
    info["id"].as_str().unwrap().to_string()
}

/// A test env with the daemon up and one session in it.
async fn setup(routes: Vec<Route>) -> (TestEnv, String) {
    let env = TestEnv::new(script(routes)).await;
    env.spawn_daemon(None).await;
    let s = session(&env).await;
    (env, s)
}

/// Starts a run; its id.
async fn start(env: &TestEnv, session: &str, workflow: Value) -> String {
    let run = start_run(env, session, workflow).await;
    let id = run["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("wrun_"), "{run}");
    id
}

/// Waits until the run's task `task` has started an attempt.
async fn task_started(env: &TestEnv, session: &str, run: &str, task: &str) {
    let mut c = env.client().await;
    c.attach_until(session, 0, |f| {
        matches!(f, ServerFrame::Event(e) if matches!(&e.body, EventBody::SpanWorkflowTaskStarted { workflow_run_id, task_id, .. } if workflow_run_id == run && task_id == task))
    })
    .await;
}

async fn start_run(env: &TestEnv, session: &str, workflow: Value) -> Value {
    let mut c = env.client().await;
    c.call(
        "workflow.run",
        json!({"session": session, "workflow": workflow}),
    )
    .await
    .unwrap()
}

/// Waits for the run's `status_ended` (or, with `idle`, its `status_idle`) in the session's
/// stream, then returns the run.
async fn wait_run(env: &TestEnv, session: &str, run: &str, until: &str) -> Value {
    let mut c = env.client().await;
    let run_s = run.to_string();
    let until = until.to_string();
    c.attach_until(session, 0, |f| {
        matches!(f, ServerFrame::Event(e) if e.body.workflow_run_id() == Some(run_s.as_str()) && e.type_name() == until)
    })
    .await;
    get(env, run).await
}

async fn get(env: &TestEnv, run: &str) -> Value {
    env.client()
        .await
        .call("workflow.get", json!({"run": run}))
        .await
        .unwrap()
}

fn task<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {run}"))
}

async fn thread_log(env: &TestEnv, session: &str, thread: &str) -> Vec<Event> {
    let page = env
        .client()
        .await
        .call(
            "session.events",
            json!({"session": session, "thread": thread, "limit": 10000, "order": "asc"}),
        )
        .await
        .unwrap();
    serde_json::from_value(page["data"].clone()).unwrap()
}

/// The task message a thread received.
async fn received(env: &TestEnv, session: &str, thread: &str) -> String {
    thread_log(env, session, thread)
        .await
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentThreadMessageReceived { content, .. } => Some(blocks_text(content)),
            _ => None,
        })
        .unwrap()
}

fn run_events<'a>(log: &'a [Event], run: &str) -> Vec<&'a Event> {
    log.iter()
        .filter(|e| e.body.workflow_run_id() == Some(run))
        .collect()
}

fn count(log: &[&Event], ty: &str, task: &str) -> usize {
    log.iter()
        .filter(|e| {
            e.type_name() == ty
                && serde_json::to_value(&e.body).unwrap()["task_id"].as_str() == Some(task)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_diamond_runs_each_task_once_in_dependency_order_with_outputs_flowing_through_templates()
{
    let (env, s) = setup(vec![
        task_route("You are a.", vec![Reply::text("{\"topic\": \"tides\"}")]),
        task_route("You are b.", vec![Reply::text("B-out")]),
        task_route("You are c.", vec![Reply::text("C-out")]),
        task_route("You are d.", vec![Reply::text("D-out")]),
    ])
    .await;
    let id = start(&env, &s, json!({"name": "diamond", "tasks": [
            {"id": "a", "agent": agent("a"), "prompt": "pick a topic"},
            {"id": "b", "agent": agent("b"), "depends_on": ["a"], "prompt": "left on {{a.output.topic}}"},
            {"id": "c", "agent": agent("c"), "depends_on": ["a"], "prompt": "right on {{a.output.topic}}"},
            {"id": "d", "agent": agent("d"), "depends_on": ["b", "c"], "prompt": "join {{b.output}} and {{c.output}}"}
        ]})).await;

    let run = wait_run(&env, &s, &id, "workflow_run.status_ended").await;
    assert_eq!(run["result"], json!({"type": "completed"}), "{run}");
    for t in ["a", "b", "c", "d"] {
        assert_eq!(task(&run, t)["status"], "succeeded", "{run}");
        assert_eq!(task(&run, t)["attempts"], 1, "{run}");
    }
    assert_eq!(task(&run, "d")["output"], "D-out");
    let d_thread = task(&run, "d")["session_thread_id"].as_str().unwrap();
    assert_eq!(received(&env, &s, d_thread).await, "join B-out and C-out");
    let b_thread = task(&run, "b")["session_thread_id"].as_str().unwrap();
    assert_eq!(received(&env, &s, b_thread).await, "left on tides");

    let log = env.log(&s).await;
    let ev = run_events(&log, &id);
    assert_eq!(ev.first().unwrap().type_name(), "workflow_run.created");
    assert_eq!(ev.last().unwrap().type_name(), "workflow_run.status_ended");
    let pos = |ty: &str, t: &str| {
        ev.iter()
            .position(|e| {
                e.type_name() == ty
                    && serde_json::to_value(&e.body).unwrap()["task_id"].as_str() == Some(t)
            })
            .unwrap()
    };
    // d started only after both b and c ended.
    assert!(pos("span.workflow_task_started", "d") > pos("span.workflow_task_ended", "b"));
    assert!(pos("span.workflow_task_started", "d") > pos("span.workflow_task_ended", "c"));
    for t in ["a", "b", "c", "d"] {
        assert_eq!(count(&ev, "span.workflow_task_started", t), 1);
    }
    // One phase per task, each started and ended exactly once, ended before status_ended.
    let phases = |ty: &str| ev.iter().filter(|e| e.type_name() == ty).count();
    assert_eq!(phases("workflow_run.phase_started"), 4);
    assert_eq!(phases("workflow_run.phase_ended"), 4);
    // The run's threads carry its id.
    let created: Vec<&Event> = log
        .iter()
        .filter(|e| matches!(&e.body, EventBody::SessionThreadCreated { workflow_run_id: Some(r), .. } if *r == id))
        .collect();
    assert_eq!(created.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_of_50_runs_each_item_once_and_fans_in_as_a_list() {
    let items: Vec<u32> = (0..50).collect();
    let (env, s) = setup(vec![
        task_route(
            "You are lister.",
            vec![Reply::text(format!(
                "Here you are:\n```json\n{}\n```",
                json!({"items": items})
            ))],
        ),
        task_route("You are worker.", vec![Reply::text("done")]),
        task_route("You are summer.", vec![Reply::text("all summed")]),
    ])
    .await;
    let id = start(&env, &s, json!({"name": "fan", "tasks": [
            {"id": "list", "agent": agent("lister"), "prompt": "list them"},
            {"id": "each", "agent": agent("worker"), "depends_on": ["list"],
             "for_each": "{{list.output.items}}", "prompt": "work on item {{item}}"},
            {"id": "sum", "agent": agent("summer"), "depends_on": ["each"], "prompt": "sum {{each.output}}"}
        ]})).await;
    let run = wait_run(&env, &s, &id, "workflow_run.status_ended").await;
    assert_eq!(run["result"], json!({"type": "completed"}), "{run}");
    assert_eq!(task(&run, "each")["items"], 50);
    assert_eq!(task(&run, "each")["status"], "succeeded");
    let log = env.log(&s).await;
    let ev = run_events(&log, &id);
    for i in 0..50 {
        let t = format!("each[{i}]");
        assert_eq!(count(&ev, "span.workflow_task_started", &t), 1, "{t}");
        assert_eq!(count(&ev, "span.workflow_task_ended", &t), 1, "{t}");
    }
    let item7 = task(&run, "each[7]")["session_thread_id"].as_str().unwrap();
    assert_eq!(received(&env, &s, item7).await, "work on item 7");
    let sum_thread = task(&run, "sum")["session_thread_id"].as_str().unwrap();
    let fan_in = received(&env, &s, sum_thread).await;
    let list: Vec<String> = serde_json::from_str(
        fan_in
            .strip_prefix("sum ")
            .unwrap_or_else(|| panic!("{fan_in}")),
    )
    .unwrap();
    assert_eq!(list, vec!["done".to_string(); 50]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_check_is_retried_with_its_explanation_then_escalated_to_the_stronger_model() {
    // The first attempt replies without writing the file; the escalated one (another model)
    // writes it with bash, so the check passes.
    let (env, s) = setup(vec![
        Route::new(
            "strong",
            vec![
                Reply::tool_use("bash", json!({"command": "echo ok > NOTES.md"})),
                Reply::text("wrote NOTES.md"),
            ],
        )
        .when_model("gpt-4.1")
        .by_turn(),
        task_route("You are writer.", vec![Reply::text("I think it's fine")]),
    ])
    .await;
    let id = start(
        &env,
        &s,
        json!({"name": "esc", "tasks": [
            {"id": "draft", "agent": agent("writer"), "prompt": "write NOTES.md",
             "checks": [{"command": "test -s NOTES.md"}], "retries": 1,
             "escalate": {"after": 1, "model": "openai/gpt-4.1"}}
        ]}),
    )
    .await;
    let run = wait_run(&env, &s, &id, "workflow_run.status_ended").await;
    let draft = task(&run, "draft");
    assert_eq!(run["result"], json!({"type": "completed"}), "{run}");
    assert_eq!(draft["status"], "succeeded", "{run}");
    assert_eq!(draft["attempts"], 2);
    assert_eq!(draft["failures"], 1);
    assert_eq!(
        draft["model"], "openai/gpt-4.1",
        "the retry ran on the escalation model"
    );
    let verdict = draft["verdicts"][0].as_str().unwrap();
    assert!(
        verdict.contains("check `test -s NOTES.md` failed"),
        "{verdict}"
    );
    let retry_thread = draft["session_thread_id"].as_str().unwrap();
    let msg = received(&env, &s, retry_thread).await;
    assert!(
        msg.starts_with("write NOTES.md") && msg.contains("previous attempt at this task failed"),
        "the retry carries the failure: {msg}"
    );
    let log = env.log(&s).await;
    let ev = run_events(&log, &id);
    assert_eq!(count(&ev, "span.workflow_task_checking", "draft"), 2);
}

/// The outcome grader: its requests offer `submit_evaluation`; each gets the next verdict.
fn grader(verdicts: &[(&str, &str)]) -> Route {
    let replies = verdicts
        .iter()
        .map(|(result, explanation)| {
            Reply::tool_use(
                "submit_evaluation",
                json!({"result": result, "explanation": explanation,
                       "criteria": [{"name": "greets", "met": *result == "satisfied"}]}),
            )
        })
        .collect();
    Route::new("grader", replies).when_tool("submit_evaluation")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_outcome_is_graded_a_failed_grade_is_retried_and_each_attempt_costs_tokens() {
    // Attempt 1: the grader wants a revision, but max_iterations is 1, so the outcome ends
    // max_iterations_reached (after the thread's acknowledgment turn): a failed attempt.
    // Attempt 2 (a new thread, told why) is graded satisfied.
    let (env, s) = setup(vec![
        grader(&[
            ("needs_revision", "hello.txt has no greeting"),
            ("satisfied", "it greets"),
        ]),
        task_route(
            "You are greeter.",
            vec![Reply::text("wrote hello.txt"), Reply::text("understood")],
        ),
    ])
    .await;
    let id = start(
        &env,
        &s,
        json!({"name": "graded", "tasks": [
            {"id": "greet", "agent": agent("greeter"), "prompt": "write a greeting to hello.txt",
             "outcome": {"rubric": "hello.txt says hello", "max_iterations": 1}, "retries": 1}
        ]}),
    )
    .await;
    let run = wait_run(&env, &s, &id, "workflow_run.status_ended").await;
    assert_eq!(run["result"], json!({"type": "completed"}), "{run}");
    let greet = task(&run, "greet");
    assert_eq!(greet["status"], "succeeded", "{run}");
    assert_eq!(greet["attempts"], 2);
    assert_eq!(greet["failures"], 1);
    assert_eq!(greet["output"], "wrote hello.txt");
    let verdict = greet["verdicts"][0].as_str().unwrap();
    assert!(
        verdict.contains("max_iterations_reached") && verdict.contains("hello.txt has no greeting"),
        "the grader's explanation is the attempt's verdict: {verdict}"
    );
    // The second thread's outcome carries the first failure, and the grader ran there.
    let thread = greet["session_thread_id"].as_str().unwrap();
    let log = thread_log(&env, &s, thread).await;
    let defined: Vec<String> = log
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::UserDefineOutcome(o) => Some(o.description.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(defined.len(), 1, "the outcome is defined once per attempt");
    assert!(
        defined[0].starts_with("write a greeting to hello.txt")
            && defined[0].contains("hello.txt has no greeting"),
        "{}",
        defined[0]
    );
    assert!(
        log.iter()
            .any(|e| e.type_name() == "span.outcome_evaluation_end"),
        "the thread's own outcome loop graded it"
    );
    // Cost: each attempt's thread (its turns and the grader) adds up per task and per run.
    let tokens = greet["usage"]["input_tokens"].as_u64().unwrap();
    assert!(tokens > 0, "{greet}");
    assert_eq!(run["usage"]["input_tokens"].as_u64().unwrap(), tokens);
    let shown = env.ok(&["workflows", "show", &id]);
    assert!(
        shown.contains(&format!("{tokens} in /")) && shown.contains("cost: "),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_past_its_timeout_ends_with_timeout_error_and_stops_its_work() {
    let (env, s) = setup(vec![
        Route::new(
            "slow",
            vec![Reply::stall(vec![tether_mock_llm::Block::text("never")])],
        )
        .when_system("You are slow."),
    ])
    .await;
    let id = start(
        &env,
        &s,
        json!({"name": "late", "timeout_secs": 1, "tasks": [
            {"id": "slow", "agent": agent("slow"), "prompt": "take your time"},
            {"id": "after", "agent": agent("slow"), "depends_on": ["slow"], "prompt": "x"}
        ]}),
    )
    .await;
    let run = wait_run(&env, &s, &id, "workflow_run.status_ended").await;
    assert_eq!(run["result"]["type"], "error", "{run}");
    assert_eq!(run["result"]["error"]["type"], "timeout_error", "{run}");
    assert!(
        run["result"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timeout of 1s"),
        "{run}"
    );
    assert_eq!(task(&run, "slow")["status"], "skipped");
    assert_eq!(task(&run, "after")["status"], "skipped");
    let log = env.log(&s).await;
    let ev = run_events(&log, &id);
    let types: Vec<&str> = ev.iter().map(|e| e.type_name()).collect();
    let n = types.len();
    assert_eq!(
        &types[n - 3..],
        [
            "workflow_run.phase_ended",
            "workflow_run.error",
            "workflow_run.status_ended"
        ],
        "the open phase ends, then the error, then the end: {types:?}"
    );
    let thread = task(&run, "slow")["session_thread_id"].as_str().unwrap();
    let thread_types: Vec<String> = thread_log(&env, &s, thread)
        .await
        .iter()
        .map(|e| e.type_name().to_string())
        .collect();
    assert!(
        thread_types.iter().any(|t| t == "user.interrupt"),
        "the task's thread was interrupted: {thread_types:?}"
    );
    // An out-of-range timeout is refused before anything runs.
    let e = env
        .client()
        .await
        .call(
            "workflow.run",
            json!({"session": s, "workflow": {"name": "w", "timeout_secs": 0, "tasks": [{"id": "a", "prompt": "x"}]}}),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("`timeout_secs` is 0"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_starts_a_run_with_its_tool_sees_the_hosted_phases_and_reads_the_result_when_it_ends()
 {
    // The primary's turns: the tool call, a reply to its result, then a reply to the run's
    // ending notice.
    let plan = json!({"name": "agent-plan", "tasks": [
        {"id": "a", "agent": agent("a"), "prompt": "say A"},
        {"id": "b", "agent": agent("b"), "depends_on": ["a"], "prompt": "after {{a.output}}"}]});
    let env = TestEnv::new(
        Script::by_turn(vec![
            Reply::tool_use("start_workflow", plan),
            Reply::text("started; I'll wait for the result"),
            Reply::text("the run is done"),
        ])
        .with_side_reply(Reply::text("title"))
        .with_route(task_route("You are a.", vec![Reply::text("A-out")]))
        .with_route(task_route("You are b.", vec![Reply::text("B-out")])),
    )
    .await;
    env.spawn_daemon(None).await;
    let mut c = env.client().await;
    c.call(
        "agent.create",
        json!({"name": "planner", "multiagent": {"type": "multiagent_20261001",
               "workflows": {"type": "enabled"}}}),
    )
    .await
    .unwrap();
    let ws = tempfile::Builder::new()
        .prefix("ws")
        .tempdir_in(env.home.path())
        .unwrap()
        .keep();
    let info = c
        .call(
            "session.create",
            json!({"agent": "planner", "dir": ws.display().to_string()}),
        )
        .await
        .unwrap();
    let s = info["id"].as_str().unwrap().to_string();
    c.call(
        "session.send",
        json!({"session": s, "content": [{"type": "text", "text": "plan it"}]}),
    )
    .await
    .unwrap();
    let mut c = env.client().await;
    c.attach_until(&s, 0, |f| {
        matches!(f, ServerFrame::Event(e) if matches!(&e.body, EventBody::AgentMessage { content } if blocks_text(content) == "the run is done"))
    })
    .await;
    let log = env.log(&s).await;
    let (run, call) = log
        .iter()
        .find_map(|e| match &e.body {
            EventBody::WorkflowRunCreated {
                workflow_run_id,
                tool_use_id: Some(call),
                ..
            } => Some((workflow_run_id.clone(), call.clone())),
            _ => None,
        })
        .expect("the run records the call that started it");
    let result = log
        .iter()
        .find_map(|e| match &e.body {
            EventBody::AgentToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } if *tool_use_id == call => Some((blocks_text(content), *is_error)),
            _ => None,
        })
        .unwrap();
    assert!(!result.1 && result.0.contains(&run), "{result:?}");
    // The hosted event sequence of the run, on the primary's stream.
    let hosted: Vec<&str> = run_events(&log, &run)
        .iter()
        .map(|e| e.type_name())
        .filter(|t| t.starts_with("workflow_run."))
        .collect();
    assert_eq!(
        hosted,
        [
            "workflow_run.created",
            "workflow_run.status_running",
            "workflow_run.phase_started",
            "workflow_run.phase_ended",
            "workflow_run.phase_started",
            "workflow_run.phase_ended",
            "workflow_run.status_ended"
        ]
    );
    // The ending notice is recorded with the end and is what the agent's last turn read.
    let notice = log
        .iter()
        .find_map(|e| match &e.body {
            EventBody::WorkflowRunStatusEnded {
                notice: Some(n), ..
            } => Some(n.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        notice.contains("every task succeeded") && notice.contains("B-out"),
        "{notice}"
    );
    // The primary's last request (the only thread offered the tool) carries the notice.
    let last = env
        .mock
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.body.to_string().contains("\"start_workflow\""))
        .unwrap()
        .body
        .to_string();
    assert!(last.contains("B-out"), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_failure_ends_the_run_completed_with_failed_tasks_and_skips_dependents() {
    let (env, s) = setup(vec![task_route(
        "You are writer.",
        vec![Reply::text("nothing written")],
    )])
    .await;
    let id = start(&env, &s, json!({"name": "fail", "tasks": [
            {"id": "draft", "agent": agent("writer"), "prompt": "x", "checks": [{"command": "false"}]},
            {"id": "after", "agent": agent("writer"), "depends_on": ["draft"], "prompt": "y"}
        ]})).await;
    let run = wait_run(&env, &s, &id, "workflow_run.status_ended").await;
    assert_eq!(
        run["result"],
        json!({"type": "completed", "failed_tasks": ["draft"]})
    );
    assert_eq!(task(&run, "draft")["status"], "failed");
    assert_eq!(task(&run, "after")["status"], "skipped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_waits_for_an_answer_and_bad_answers_are_refused() {
    let (env, s) = setup(vec![task_route(
        "You are pub.",
        vec![Reply::text("published")],
    )])
    .await;
    let id = start(
        &env,
        &s,
        json!({"name": "cp", "tasks": [
            {"id": "approve", "checkpoint": "Publish?"},
            {"id": "publish", "agent": agent("pub"), "depends_on": ["approve"], "prompt": "go"}
        ]}),
    )
    .await;
    task_started(&env, &s, &id, "approve").await;
    let run = get(&env, &id).await;
    assert_eq!(task(&run, "approve")["status"], "waiting_for_approval");
    let info = env
        .client()
        .await
        .call("session.get", json!({"session": s}))
        .await
        .unwrap();
    assert_eq!(
        info["waiting_checkpoints"], 1,
        "the session needs input: {info}"
    );
    assert_eq!(task(&run, "approve")["question"], "Publish?");
    assert_eq!(task(&run, "publish")["status"], "queued");
    let mut c = env.client().await;
    let e = c
        .call(
            "workflow.answer",
            json!({"run": id, "task": "publish", "approve": true}),
        )
        .await
        .unwrap_err();
    assert!(
        e.message.contains("not a checkpoint waiting"),
        "{}",
        e.message
    );
    let e = c
        .call("workflow.get", json!({"run": "wrun_nope"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, tether_proto::ErrorCode::NotFound);
    assert!(e.message.contains("wrun_nope"), "{}", e.message);
    c.call(
        "workflow.answer",
        json!({"run": id, "task": "approve", "approve": true, "note": "ship it"}),
    )
    .await
    .unwrap();
    let run = wait_run(&env, &s, &id, "workflow_run.status_ended").await;
    assert_eq!(run["result"], json!({"type": "completed"}), "{run}");
    assert_eq!(task(&run, "approve")["output"], "approved: ship it");
    let info = env
        .client()
        .await
        .call("session.get", json!({"session": s}))
        .await
        .unwrap();
    assert!(
        info.get("waiting_checkpoints").is_none(),
        "answered: {info}"
    );
    assert_eq!(task(&run, "publish")["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_workflow_is_refused_with_the_task_named() {
    let (env, s) = setup(vec![]).await;
    let mut c = env.client().await;
    let e = c
        .call(
            "workflow.run",
            json!({"session": s, "workflow": {"name": "w", "tasks": [
                {"id": "a", "prompt": "x", "depends_on": ["b"]},
                {"id": "b", "prompt": "x", "depends_on": ["a"]}]}}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, tether_proto::ErrorCode::InvalidParams);
    assert!(e.message.contains("cycle: a -> b -> a"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_run_goes_idle_and_resumes_without_rerunning_finished_tasks() {
    // The slow task's first request stalls until the stop interrupts it; its second attempt
    // (after resume) answers.
    let (env, s) = setup(vec![
        task_route("You are first.", vec![Reply::text("first done")]),
        Route::new(
            "slow",
            vec![
                Reply::stall(vec![tether_mock_llm::Block::text("never")]),
                Reply::text("slow done"),
            ],
        )
        .when_system("You are slow."),
    ])
    .await;
    let id = start(&env, &s, json!({"name": "pause", "tasks": [
            {"id": "first", "agent": agent("first"), "prompt": "go"},
            {"id": "slow", "agent": agent("slow"), "depends_on": ["first"], "prompt": "take your time"}
        ]})).await;
    task_started(&env, &s, &id, "slow").await;
    // The CLI stops it; the run is idle and open.
    let out = env.ok(&["workflows", "stop", &id]);
    assert!(out.contains("stopped"), "{out}");
    let stopped = get(&env, &id).await;
    assert_eq!(stopped["status"], "idle", "{stopped}");
    assert_eq!(task(&stopped, "slow")["status"], "queued", "{stopped}");
    assert_eq!(task(&stopped, "first")["status"], "succeeded");
    let ls = env.ok(&["workflows", "ls"]);
    assert!(ls.contains(&id) && ls.contains("idle"), "{ls}");
    env.ok(&["workflows", "resume", &id]);
    let run = wait_run(&env, &s, &id, "workflow_run.status_ended").await;
    assert_eq!(run["result"], json!({"type": "completed"}), "{run}");
    assert_eq!(task(&run, "slow")["attempts"], 2);
    assert_eq!(task(&run, "slow")["failures"], 0, "a stop is not a failure");
    assert_eq!(task(&run, "slow")["output"], "slow done");
    let log = env.log(&s).await;
    let ev = run_events(&log, &id);
    assert_eq!(count(&ev, "span.workflow_task_started", "first"), 1);
    let types: Vec<&str> = ev.iter().map(|e| e.type_name()).collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "workflow_run.status_running")
            .count(),
        2,
        "{types:?}"
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "workflow_run.status_idle")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_eleventh_open_run_of_a_session_is_refused_with_max_workflow_runs_error() {
    let (env, s) = setup(vec![]).await;
    let waiting = json!({"name": "wait", "tasks": [{"id": "ok", "checkpoint": "Go?"}]});
    for _ in 0..10 {
        start_run(&env, &s, waiting.clone()).await;
    }
    let mut c = env.client().await;
    let e = c
        .call("workflow.run", json!({"session": s, "workflow": waiting}))
        .await
        .unwrap_err();
    assert_eq!(e.code, tether_proto::ErrorCode::Conflict);
    assert!(
        e.message.starts_with("max_workflow_runs_error:"),
        "{}",
        e.message
    );
    let log = env.log(&s).await;
    let errors: Vec<&Event> = log
        .iter()
        .filter(|e| matches!(&e.body, EventBody::WorkflowRunError { workflow_run_id: None, error } if error.kind == tether_proto::workflow::RunErrorType::MaxWorkflowRunsError))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "the refusal is in the session's stream with a null run id"
    );
    let list = c
        .call("workflow.list", json!({"session": s}))
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_runs_a_yaml_workflow_prints_progress_and_exits_by_the_result() {
    let (env, s) = setup(vec![
        task_route("You are ok.", vec![Reply::text("fine")]),
        task_route("You are bad.", vec![Reply::text("oops")]),
    ])
    .await;
    let good = env.home.path().join("good.yaml");
    std::fs::write(
        &good,
        "name: good\ntasks:\n  - id: one\n    agent: {system: \"You are ok.\"}\n    prompt: do it\n",
    )
    .unwrap();
    let out = env
        .tether()
        .args(["workflows", "run"])
        .arg(&good)
        .args(["--session", &s])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("▸ task one attempt 1 started"), "{stdout}");
    assert!(stdout.contains("✓ task one succeeded"), "{stdout}");
    let bad = env.home.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"bad\"\n[[tasks]]\nid = \"one\"\nprompt = \"x\"\nagent = {system = \"You are bad.\"}\nchecks = [{command = \"exit 3\"}]\n",
    )
    .unwrap();
    let out = env
        .tether()
        .args(["workflows", "run"])
        .arg(&bad)
        .args(["--session", &s])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failed (exit 3)"), "{stdout}");
    // A bad file never reaches the daemon: the error names the task and field.
    let cyc = env.home.path().join("cyc.json");
    std::fs::write(
        &cyc,
        r#"{"name": "c", "tasks": [{"id": "a", "prompt": "x", "depends_on": ["zz"]}]}"#,
    )
    .unwrap();
    let out = env
        .tether()
        .args(["workflows", "run"])
        .arg(&cyc)
        .args(["--session", &s])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("task `a`: depends_on names `zz`"),
        "{stderr}"
    );
}

/// kill -9 at each workflow crash point, then a restart: the run completes with every task
/// (and fan-out item) started and ended exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_daemon_resumes_runs_without_rerunning_or_duplicating_tasks() {
    for point in [
        "after_workflow_run_created",
        "after_workflow_task_started:2",
        "after_workflow_message_delivered:2",
        "after_workflow_task_ended:2",
        "after_workflow_fan_out",
        "after_workflow_task_ended:5",
    ] {
        let env = TestEnv::new(script(vec![
            task_route(
                "You are lister.",
                vec![Reply::text("{\"xs\": [\"p\", \"q\", \"r\"]}")],
            ),
            task_route("You are worker.", vec![Reply::text("w")]),
            task_route("You are tail.", vec![Reply::text("t")]),
        ]))
        .await;
        let daemon = env.spawn_daemon(Some(point)).await;
        let s = session(&env).await;
        let mut c = env.client().await;
        // The daemon may die before it answers: the call runs where its panic is caught.
        let s2 = s.clone();
        let call = tokio::spawn(async move {
            c.call(
                "workflow.run",
                json!({"session": s2, "workflow": {"name": "crash", "tasks": [
                    {"id": "list", "agent": agent("lister"), "prompt": "list"},
                    {"id": "each", "agent": agent("worker"), "depends_on": ["list"],
                     "for_each": "{{list.output.xs}}", "prompt": "{{item}}"},
                    {"id": "tail", "agent": agent("tail"), "depends_on": ["each"], "prompt": "{{each.output}}"}
                ]}}),
            )
            .await
        });
        env.wait_killed(daemon).await;
        let _ = call.await;
        env.spawn_daemon(None).await;
        let log = env.log(&s).await;
        let Some(created) = log.iter().find_map(|e| match &e.body {
            EventBody::WorkflowRunCreated {
                workflow_run_id, ..
            } => Some(workflow_run_id.clone()),
            _ => None,
        }) else {
            panic!("{point}: the run was not recorded");
        };
        let run = wait_run(&env, &s, &created, "workflow_run.status_ended").await;
        assert_eq!(
            run["result"],
            json!({"type": "completed"}),
            "{point}: {run}"
        );
        let log = env.log(&s).await;
        let ev = run_events(&log, &created);
        for t in ["list", "each[0]", "each[1]", "each[2]", "tail"] {
            assert_eq!(
                count(&ev, "span.workflow_task_started", t),
                1,
                "{point}: {t}"
            );
            assert_eq!(count(&ev, "span.workflow_task_ended", t), 1, "{point}: {t}");
        }
        assert_eq!(
            count(&ev, "span.workflow_task_fanned_out", "each"),
            1,
            "{point}"
        );
        let tail = task(&run, "tail")["session_thread_id"].as_str().unwrap();
        assert_eq!(
            received(&env, &s, tail).await,
            "[\"w\",\"w\",\"w\"]",
            "{point}"
        );
    }
}

/// One call of the HTTP API of the daemon at `base` (the tests' shared client).
async fn http(
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let api = tether_e2e::http_api::Api {
        http: reqwest::Client::new(),
        base: base.to_string(),
        token: token.to_string(),
    };
    api.call(method, path, body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_is_answered_over_http_and_runs_are_read_there() {
    let env = TestEnv::new(script(vec![task_route(
        "You are pub.",
        vec![Reply::text("published")],
    )]))
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_daemon, base, token) = env.spawn_http_daemon().await;
    let (code, s) = http(
        &base,
        &token,
        "POST",
        "/v1/sessions",
        Some(json!({"agent": "default", "environment_id": "default"})),
    )
    .await;
    assert_eq!(code, 200, "{s}");
    let s = s["id"].as_str().unwrap().to_string();
    let (code, run) = http(
        &base,
        &token,
        "POST",
        &format!("/v1/sessions/{s}/workflow_runs"),
        Some(json!({"name": "cp", "tasks": [
            {"id": "approve", "checkpoint": "Publish?"},
            {"id": "publish", "agent": agent("pub"), "depends_on": ["approve"], "prompt": "after {{approve.output}}"}]})),
    )
    .await;
    assert_eq!(code, 200, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    task_started(&env, &s, &id, "approve").await;
    let (code, _) = http(&base, &token, "GET", "/v1/workflow_runs/wrun_missing", None).await;
    assert_eq!(code, 404);
    let (code, body) = http(
        &base,
        &token,
        "POST",
        &format!("/v1/workflow_runs/{id}/tasks/approve/answer"),
        Some(json!({"approve": true, "note": "go"})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let run = wait_run(&env, &s, &id, "workflow_run.status_ended").await;
    assert_eq!(run["result"], json!({"type": "completed"}), "{run}");
    let publish = task(&run, "publish")["session_thread_id"].as_str().unwrap();
    assert_eq!(received(&env, &s, publish).await, "after approved: go");
    let (code, list) = http(
        &base,
        &token,
        "GET",
        &format!("/v1/sessions/{s}/workflow_runs"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(list["data"][0]["id"], id.as_str());
    // A hosted client reading the session's events sees the run's hosted events, not
    // tether's task spans.
    let (_, page) = http(
        &base,
        &token,
        "GET",
        &format!("/v1/sessions/{s}/events?limit=1000"),
        None,
    )
    .await;
    let types: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        types.contains(&"workflow_run.created") && types.contains(&"workflow_run.status_ended"),
        "{types:?}"
    );
    assert!(
        !types.iter().any(|t| t.starts_with("span.workflow_task")),
        "{types:?}"
    );
}

/// kill -9 at each side-effect point of an agent's `start_workflow` call (the call committed
/// with the agent's message; its intent committed; the run created; the run driven but the
/// call's result not committed), then a restart: exactly one run, which completes, and
/// exactly one result for the call, which the primary's next request carries once.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_daemon_gives_a_start_workflow_call_exactly_one_run_and_one_result() {
    let plan = json!({"name": "agent-plan", "tasks": [
        {"id": "a", "agent": agent("a"), "prompt": "say A"},
        {"id": "b", "agent": agent("b"), "depends_on": ["a"], "prompt": "after {{a.output}}"}]});
    for point in [
        "after_agent_message",
        "after_workflow_tool_intent",
        "after_workflow_run_created",
        "before_workflow_tool_result",
    ] {
        let env = TestEnv::new(
            Script::by_turn(vec![
                Reply::tool_use("start_workflow", plan.clone()),
                Reply::text("started; I'll wait for the result"),
                Reply::text("the run is done"),
            ])
            .with_side_reply(Reply::text("title"))
            .with_route(task_route("You are a.", vec![Reply::text("A-out")]))
            .with_route(task_route("You are b.", vec![Reply::text("B-out")])),
        )
        .await;
        let daemon = env.spawn_daemon(Some(point)).await;
        let mut c = env.client().await;
        c.call(
            "agent.create",
            json!({"name": "planner", "multiagent": {"type": "multiagent_20261001",
                   "workflows": {"type": "enabled"}}}),
        )
        .await
        .unwrap();
        let s = session_of(&env, "planner").await;
        // The daemon dies during the turn this message starts.
        let s2 = s.clone();
        let send = tokio::spawn(async move {
            c.call(
                "session.send",
                json!({"session": s2, "content": [{"type": "text", "text": "plan it"}]}),
            )
            .await
        });
        env.wait_killed(daemon).await;
        let _ = send.await;
        env.spawn_daemon(None).await;
        let mut c = env.client().await;
        c.attach_until(&s, 0, |f| {
            matches!(f, ServerFrame::Event(e) if matches!(&e.body, EventBody::AgentMessage { content } if blocks_text(content) == "the run is done"))
        })
        .await;
        let log = env.log(&s).await;
        let created: Vec<(&str, Option<&str>)> = log
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::WorkflowRunCreated {
                    workflow_run_id,
                    tool_use_id,
                    ..
                } => Some((workflow_run_id.as_str(), tool_use_id.as_deref())),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), 1, "{point}: exactly one run: {created:?}");
        let (run, call) = (created[0].0.to_string(), created[0].1.unwrap().to_string());
        let results: Vec<(String, bool)> = log
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::AgentToolResult {
                    tool_use_id,
                    content,
                    is_error,
                    ..
                } if *tool_use_id == call => Some((blocks_text(content), *is_error)),
                _ => None,
            })
            .collect();
        assert_eq!(results.len(), 1, "{point}: one result: {results:?}");
        assert!(
            !results[0].1 && results[0].0.contains(&run),
            "{point}: {results:?}"
        );
        let ended = get(&env, &run).await;
        assert_eq!(
            ended["result"],
            json!({"type": "completed"}),
            "{point}: {ended}"
        );
        let ev = run_events(&log, &run);
        for t in ["a", "b"] {
            assert_eq!(count(&ev, "span.workflow_task_ended", t), 1, "{point}: {t}");
        }
        // The primary's requests after the call each carry its result exactly once.
        let needle = format!("\"tool_use_id\":\"{call}\"");
        let carried: Vec<usize> = env
            .mock
            .requests()
            .into_iter()
            .filter(|r| r.body.to_string().contains("\"start_workflow\""))
            .map(|r| r.body.to_string().matches(&needle).count())
            .collect();
        assert!(
            carried.contains(&1) && carried.iter().all(|n| *n <= 1),
            "{point}: results per primary request: {carried:?}"
        );
    }
}

/// A session of `agent` working in a fresh directory; its id.
async fn session_of(env: &TestEnv, agent: &str) -> String {
    let ws = tempfile::Builder::new()
        .prefix("ws")
        .tempdir_in(env.home.path())
        .unwrap()
        .keep();
    let info = env
        .client()
        .await
        .call(
            "session.create",
            json!({"agent": agent, "dir": ws.display().to_string()}),
        )
        .await
        .unwrap();
    info["id"].as_str().unwrap().to_string()
}

/// Hosted §2.6: a running run keeps its session `running` though the primary's turn ended
/// (here while a task's check waits for a file, no thread working); when the run ends and
/// the primary's turn on its ending notice ends, the session is idle. Over the socket and
/// over HTTP alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_reports_running_while_its_run_runs_and_idle_once_the_run_and_its_turn_end() {
    let plan = json!({"name": "gated", "tasks": [{"id": "a", "agent": agent("a"), "prompt": "say A",
        "checks": [{"command": "for i in $(seq 1 1200); do [ -e go ] && exit 0; sleep 0.05; done; exit 1"}]}]});
    let env = TestEnv::new(
        Script::by_turn(vec![
            Reply::tool_use("start_workflow", plan),
            Reply::text("started; I'll wait for the result"),
            Reply::text("the run is done"),
        ])
        .with_side_reply(Reply::text("title"))
        .with_route(task_route("You are a.", vec![Reply::text("A-out")])),
    )
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_daemon, base, token) = env.spawn_http_daemon().await;
    let mut c = env.client().await;
    c.call(
        "agent.create",
        json!({"name": "planner", "multiagent": {"type": "multiagent_20261001",
               "workflows": {"type": "enabled"}}}),
    )
    .await
    .unwrap();
    let ws = tempfile::Builder::new()
        .prefix("ws")
        .tempdir_in(env.home.path())
        .unwrap()
        .keep();
    let s = c
        .call(
            "session.create",
            json!({"agent": "planner", "dir": ws.display().to_string()}),
        )
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.call(
        "session.send",
        json!({"session": s, "content": [{"type": "text", "text": "plan it"}]}),
    )
    .await
    .unwrap();
    let status = |c: Value| c["status"].as_str().unwrap().to_string();
    let statuses = async || {
        let socket = env
            .client()
            .await
            .call("session.get", json!({"session": s}))
            .await
            .unwrap();
        let (code, over_http) =
            http(&base, &token, "GET", &format!("/v1/sessions/{s}"), None).await;
        assert_eq!(code, 200, "{over_http}");
        (status(socket), status(over_http))
    };

    // The primary's turn has ended (idle, end_turn) and the task is being checked.
    let (mut replied, mut primary_idle, mut checking) = (false, false, false);
    env.client()
        .await
        .attach_until(&s, 0, |f| {
            if let ServerFrame::Event(e) = f {
                match &e.body {
                    EventBody::AgentMessage { content }
                        if blocks_text(content).starts_with("started") =>
                    {
                        replied = true
                    }
                    EventBody::SessionStatusIdle { .. }
                        if replied && e.session_thread_id.is_none() =>
                    {
                        primary_idle = true
                    }
                    EventBody::SpanWorkflowTaskChecking { .. } => checking = true,
                    _ => {}
                }
            }
            primary_idle && checking
        })
        .await;
    let log = env.log(&s).await;
    let run = log
        .iter()
        .find_map(|e| match &e.body {
            EventBody::WorkflowRunCreated {
                workflow_run_id, ..
            } => Some(workflow_run_id.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(task(&get(&env, &run).await, "a")["status"], "checking");
    assert_eq!(
        statuses().await,
        ("running".to_string(), "running".to_string()),
        "a running run keeps the session running"
    );

    // The check passes, the run ends, the primary answers its notice and goes idle.
    std::fs::write(ws.join("go"), "").unwrap();
    let mut done = false;
    env.client()
        .await
        .attach_until(&s, 0, |f| {
            if let ServerFrame::Event(e) = f {
                match &e.body {
                    EventBody::AgentMessage { content }
                        if blocks_text(content) == "the run is done" =>
                    {
                        done = true
                    }
                    EventBody::SessionStatusIdle { .. }
                        if done && e.session_thread_id.is_none() =>
                    {
                        return true;
                    }
                    _ => {}
                }
            }
            false
        })
        .await;
    assert_eq!(
        get(&env, &run).await["result"],
        json!({"type": "completed"})
    );
    assert_eq!(
        statuses().await,
        ("idle".to_string(), "idle".to_string()),
        "no open run and the turn on its notice ended"
    );
}
