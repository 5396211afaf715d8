//! `tether workflows ...`: workflow files in; runs, their tasks and their progress out.

use std::process::ExitCode;

use tether_proto::method::{
    AnswerCheckpoint, Attach, CreateSession, ListWorkflowRuns, RunWorkflow, SessionParams,
    WorkflowRunParams, rpc,
};
use tether_proto::workflow::{WorkflowRun, WorkflowSpec};
use tether_proto::{EventBody, ServerFrame};

use super::{CmdResult, connect, usage};
use crate::cli::WorkflowsAction;
use crate::client::{Client, ClientError};

pub async fn run(action: WorkflowsAction) -> CmdResult {
    let p = |run: String| WorkflowRunParams { run };
    match action {
        WorkflowsAction::Run {
            file,
            session,
            detach,
        } => {
            let workflow: WorkflowSpec = read_file(&file)?;
            workflow
                .validate()
                .map_err(|e| usage(format!("{file}: {e}")))?;
            let mut c = connect().await?;
            let session = match session {
                Some(s) => s,
                None => {
                    let dir = std::env::current_dir()
                        .map_err(|e| usage(format!("cannot read the current directory: {e}")))?;
                    c.request::<rpc::SessionCreate>(CreateSession {
                        name: None,
                        title: Some(format!("workflow {}", workflow.name)),
                        dir: Some(dir.display().to_string()),
                        ..Default::default()
                    })
                    .await?
                    .id
                }
            };
            let r = c
                .request::<rpc::WorkflowRunStart>(RunWorkflow {
                    session: session.clone(),
                    workflow,
                })
                .await?;
            if detach {
                println!("{}", r.id);
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "workflow run {} in session {} (Ctrl-C leaves it running; `tether workflows show {}`)",
                r.id, r.session_id, r.id
            );
            let end = follow(&mut c, &r.session_id, &r.id).await?;
            print_tasks(&end);
            Ok(if end.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        WorkflowsAction::Ls { all, session, json } => {
            let list = connect()
                .await?
                .request::<rpc::WorkflowList>(ListWorkflowRuns { session, all })
                .await?
                .data;
            if json {
                for r in &list {
                    println!("{}", serde_json::to_string(r).unwrap_or_default());
                }
            } else if list.is_empty() {
                eprintln!("no workflow runs; `tether workflows run FILE` starts one");
            } else {
                println!(
                    "{:<32} {:<20} {:<8} {:<10} SESSION",
                    "ID", "NAME", "STATUS", "TASKS"
                );
                for r in &list {
                    let done = r.tasks.iter().filter(|t| t.status.is_final()).count();
                    println!(
                        "{:<32} {:<20} {:<8} {:<10} {}",
                        r.id,
                        r.name,
                        r.status.as_str(),
                        format!("{done}/{}", r.tasks.len()),
                        r.session_id
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowsAction::Show { run, json } => {
            let r = connect().await?.request::<rpc::WorkflowGet>(p(run)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                println!(
                    "{} {} ({}) in {}",
                    r.id,
                    r.name,
                    r.status.as_str(),
                    r.session_id
                );
                print_tasks(&r);
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowsAction::Watch { run } => {
            let mut c = connect().await?;
            let r = c.request::<rpc::WorkflowGet>(p(run)).await?;
            if crate::screen::is_tty() {
                let info = c
                    .request::<rpc::SessionGet>(SessionParams {
                        session: r.session_id.clone(),
                    })
                    .await?;
                return crate::screen::watch_run(c, info, r.id).await;
            }
            let end = match r.result {
                Some(_) => r,
                None => follow(&mut c, &r.session_id, &r.id).await?,
            };
            print_tasks(&end);
            Ok(if end.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        WorkflowsAction::Stop { run } => {
            let r = connect()
                .await?
                .request::<rpc::WorkflowStop>(p(run))
                .await?;
            println!(
                "stopped {}; `tether workflows resume {}` goes on",
                r.id, r.id
            );
            Ok(ExitCode::SUCCESS)
        }
        WorkflowsAction::Resume { run } => {
            let r = connect()
                .await?
                .request::<rpc::WorkflowResume>(p(run))
                .await?;
            println!("resumed {}", r.id);
            Ok(ExitCode::SUCCESS)
        }
        WorkflowsAction::Approve { run, task, note } => answer(run, task, true, note).await,
        WorkflowsAction::Deny { run, task, note } => answer(run, task, false, note).await,
    }
}

async fn answer(run: String, task: String, approve: bool, note: Option<String>) -> CmdResult {
    connect()
        .await?
        .request::<rpc::WorkflowAnswer>(AnswerCheckpoint {
            run: run.clone(),
            task: task.clone(),
            approve,
            note,
        })
        .await?;
    println!(
        "{} task {task} of {run}",
        if approve { "approved" } else { "denied" }
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the run's events as they come until it ends; returns the ended run.
async fn follow(c: &mut Client, session: &str, run: &str) -> Result<WorkflowRun, ClientError> {
    c.request::<rpc::SessionAttach>(Attach {
        session: session.to_string(),
        after_seq: 0,
        read_only: true,
        thread: None,
    })
    .await?;
    loop {
        match c.next_push().await? {
            ServerFrame::Event(e) if e.body.workflow_run_id() == Some(run) => {
                if let Some(line) = crate::screen::workflow::marker(&e.body) {
                    println!("{line}");
                }
                if matches!(e.body, EventBody::WorkflowRunStatusEnded { .. }) {
                    break;
                }
            }
            ServerFrame::Resync(_) => {
                // Fell behind: the run's state is what matters, not every line.
                let r = c
                    .request::<rpc::WorkflowGet>(WorkflowRunParams {
                        run: run.to_string(),
                    })
                    .await?;
                if r.result.is_some() {
                    return Ok(r);
                }
            }
            _ => {}
        }
    }
    c.request::<rpc::WorkflowGet>(WorkflowRunParams {
        run: run.to_string(),
    })
    .await
}

fn print_tasks(r: &WorkflowRun) {
    for t in &r.tasks {
        let mut line = format!(
            "  {:<24} {:<20} attempts {}",
            t.id,
            t.status.as_str(),
            t.attempts
        );
        if let Some(m) = &t.model {
            line.push_str(&format!("  {m}"));
        }
        if t.usage.input_tokens + t.usage.output_tokens > 0 {
            line.push_str(&format!("  {}", usage_text(&t.usage)));
        }
        if let Some(th) = &t.session_thread_id {
            line.push_str(&format!("  {th}"));
        }
        println!("{line}");
        for v in &t.verdicts {
            println!("      ✗ {v}");
        }
        if let Some(q) = &t.question {
            println!("      ? {q}");
        }
    }
    if r.usage.input_tokens + r.usage.output_tokens > 0 {
        println!("cost: {}", usage_text(&r.usage));
    }
    if let Some(res) = &r.result {
        use tether_proto::workflow::RunResult;
        match res {
            RunResult::Completed { failed_tasks } if failed_tasks.is_empty() => {
                println!("result: completed, every task succeeded")
            }
            RunResult::Completed { failed_tasks } => println!(
                "result: completed with failed tasks: {}",
                failed_tasks.join(", ")
            ),
            RunResult::Stopped {} => println!("result: stopped"),
            RunResult::Error { error } => {
                println!("result: error {}: {}", error.kind.as_str(), error.message)
            }
        }
    }
}

/// `1200 in / 80 out tokens $0.0123` (no price: tokens only).
fn usage_text(u: &tether_proto::ModelUsage) -> String {
    let mut s = format!(
        "{} in / {} out tokens",
        u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens,
        u.output_tokens
    );
    if let Some(c) = u.cost_usd {
        s.push_str(&format!(" ${c:.4}"));
    }
    s
}

fn read_file<T: serde::de::DeserializeOwned>(path: &str) -> Result<T, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read the workflow file {path}: {e}")))?;
    super::spec_file::parse_with(path, &text, |_| None).map_err(usage)
}
