//! `tether deployments ...`: deployment files in; deployments, their next fires and their
//! runs out.

use std::process::ExitCode;

use serde::de::DeserializeOwned;
use tether_proto::deployment::{
    Deployment, DeploymentRun, DeploymentStatus, PausedReason, TriggerContext,
};
use tether_proto::method::{
    DeploymentParams, ListDeploymentRuns, ListDeployments, UpdateDeployment, rpc,
};

use super::{CmdResult, connect, usage};
use crate::cli::DeploymentsAction;
use crate::client::ClientError;

pub async fn run(action: DeploymentsAction) -> CmdResult {
    let p = |deployment: String| DeploymentParams { deployment };
    match action {
        DeploymentsAction::Create { file, json } => {
            let spec = read_file(&file)?;
            let d = connect()
                .await?
                .request::<rpc::DeploymentCreate>(spec)
                .await?;
            print_one(&d, json, "created");
        }
        DeploymentsAction::Ls { all, json } => {
            let list = connect()
                .await?
                .request::<rpc::DeploymentList>(ListDeployments {
                    all,
                    ..Default::default()
                })
                .await?
                .data;
            if json {
                for d in &list {
                    println!("{}", serde_json::to_string(d).unwrap_or_default());
                }
            } else if list.is_empty() {
                eprintln!("no deployments yet; `tether deployments create -f FILE` makes one");
            } else {
                println!(
                    "{:<20} {:<22} {:<30} {:<22} ID",
                    "NAME", "STATUS", "SCHEDULE", "NEXT FIRE"
                );
                for d in &list {
                    println!(
                        "{:<20} {:<22} {:<30} {:<22} {}",
                        d.name,
                        status_text(d),
                        schedule_text(d),
                        d.schedule
                            .as_ref()
                            .and_then(|s| s.upcoming_runs_at.first().cloned())
                            .unwrap_or_else(|| "-".into()),
                        d.id
                    );
                }
            }
        }
        DeploymentsAction::Show { deployment, json } => {
            let d = connect()
                .await?
                .request::<rpc::DeploymentGet>(p(deployment))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
            } else {
                print!("{}", serde_norway::to_string(&d).unwrap_or_default());
                print_next_fires(&d);
            }
        }
        DeploymentsAction::Update {
            deployment,
            file,
            json,
        } => {
            let changes = read_file(&file)?;
            let d = connect()
                .await?
                .request::<rpc::DeploymentUpdate>(UpdateDeployment {
                    deployment,
                    changes,
                })
                .await?;
            print_one(&d, json, "updated");
        }
        DeploymentsAction::Pause { deployment } => {
            let d = connect()
                .await?
                .request::<rpc::DeploymentPause>(p(deployment))
                .await?;
            println!(
                "paused {} ({}); `tether deployments unpause {}` resumes it",
                d.name, d.id, d.name
            );
        }
        DeploymentsAction::Unpause { deployment } => {
            let d = connect()
                .await?
                .request::<rpc::DeploymentUnpause>(p(deployment))
                .await?;
            println!("resumed {} ({})", d.name, d.id);
            print_next_fires(&d);
        }
        DeploymentsAction::Run { deployment, json } => {
            let run = connect()
                .await?
                .request::<rpc::DeploymentRun>(p(deployment))
                .await?;
            if json {
                println!("{}", serde_json::to_string(&run).unwrap_or_default());
            } else {
                print_run_line(&run);
            }
            if run.error.is_some() {
                return Ok(ExitCode::FAILURE);
            }
        }
        DeploymentsAction::Archive { deployment } => {
            let d = connect()
                .await?
                .request::<rpc::DeploymentArchive>(p(deployment))
                .await?;
            println!("archived {} ({})", d.name, d.id);
        }
        DeploymentsAction::Runs {
            deployment,
            failed,
            ok,
            limit,
            json,
        } => {
            if !(1..=1000).contains(&limit) {
                return Err(usage(format!("--limit: {limit} is not between 1 and 1000")));
            }
            let runs = connect()
                .await?
                .request::<rpc::DeploymentRuns>(ListDeploymentRuns {
                    deployment,
                    has_error: if failed {
                        Some(true)
                    } else if ok {
                        Some(false)
                    } else {
                        None
                    },
                    limit: Some(limit),
                })
                .await?
                .data;
            if json {
                for r in &runs {
                    println!("{}", serde_json::to_string(r).unwrap_or_default());
                }
            } else if runs.is_empty() {
                eprintln!("no runs yet; `tether deployments run DEPLOYMENT` fires one now");
            } else {
                for r in &runs {
                    print_run_line(r);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A deployment file; its `workflow:` may name a workflow file (YAML, JSON or TOML, relative
/// to the deployment file) instead of holding the plan, and the plan is read from there: the
/// same file `tether workflows run` takes. The daemon keeps the plan, not the path, so a
/// later edit of the file changes nothing until `tether deployments update`.
fn read_file<T: DeserializeOwned>(path: &str) -> Result<T, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read the deployment file {path}: {e}")))?;
    let value: serde_json::Value =
        super::spec_file::parse_with(path, &text, |_| None).map_err(usage)?;
    let Some(named) = value.get("workflow").and_then(|w| w.as_str()) else {
        // Typed from the text, so errors keep their line numbers.
        return super::spec_file::parse_with(path, &text, |_| None).map_err(usage);
    };
    let dir = std::path::Path::new(path)
        .parent()
        .unwrap_or(std::path::Path::new(""));
    let wf_path = dir.join(named).display().to_string();
    let wf_text = std::fs::read_to_string(&wf_path).map_err(|e| {
        usage(format!(
            "{path}: `workflow: {named}` names a workflow file, and {wf_path} cannot be read: \
             {e}. Give the path relative to {path}, or write the plan inline under `workflow:`."
        ))
    })?;
    let plan: serde_json::Value =
        super::spec_file::parse_with(&wf_path, &wf_text, |_| None).map_err(usage)?;
    let mut value = value;
    value["workflow"] = plan;
    serde_json::from_value(value).map_err(|e| usage(format!("{path}: {e}")))
}

fn print_one(d: &Deployment, json: bool, verb: &str) {
    if json {
        println!("{}", serde_json::to_string(d).unwrap_or_default());
    } else {
        println!("{verb} deployment {} ({})", d.name, d.id);
        if let Some(w) = &d.workflow {
            println!(
                "each fire runs workflow `{}` ({} tasks) in a new session",
                w.name,
                w.tasks.len()
            );
        }
        print_next_fires(d);
    }
}

fn print_next_fires(d: &Deployment) {
    match &d.schedule {
        None => println!(
            "no schedule: it fires only on `tether deployments run {}`",
            d.name
        ),
        Some(s) if d.archived_at.is_some() || s.upcoming_runs_at.is_empty() => {
            println!("next fires: none")
        }
        Some(s) => {
            let paused = if d.status == DeploymentStatus::Paused {
                " (paused: these are skipped until unpaused)"
            } else {
                ""
            };
            println!("next fires{paused}:");
            for t in &s.upcoming_runs_at {
                println!("  {t}");
            }
        }
    }
}

fn status_text(d: &Deployment) -> String {
    if d.archived_at.is_some() {
        return "archived".into();
    }
    match &d.paused_reason {
        None => d.status.as_str().into(),
        Some(PausedReason::Manual) => "paused".into(),
        Some(PausedReason::Error { error }) => format!("paused ({})", error.kind),
    }
}

fn schedule_text(d: &Deployment) -> String {
    match &d.schedule {
        None => "manual".into(),
        Some(s) => match (&s.expression, &s.timezone, &s.time) {
            (Some(e), Some(tz), _) => format!("{e} {tz}"),
            (_, _, Some(t)) => format!("at {t}"),
            _ => s.kind.clone(),
        },
    }
}

fn print_run_line(r: &DeploymentRun) {
    let trigger = match &r.trigger_context {
        TriggerContext::Schedule { scheduled_at } => format!("scheduled {scheduled_at}"),
        TriggerContext::Manual => "manual".into(),
    };
    let result = match (&r.session_id, &r.error) {
        (Some(s), _) => match &r.workflow_run_id {
            Some(w) => format!("workflow run {w} in session {s}"),
            None => format!("session {s}"),
        },
        (None, Some(e)) => format!("failed: {} ({})", e.message, e.kind),
        (None, None) => "starting".into(),
    };
    println!("{}  {}  {:<32}  {}", r.id, r.created_at, trigger, result);
}
