//! `tether elicitations`: the questions a session's MCP servers asked the user during tool
//! calls (issue 25), listed, and answered from the command line.

use std::process::ExitCode;

use serde_json::Value;
use tether_proto::elicitation::{
    AnswerElicitation, Elicitation, ElicitationAction, FieldKind, ListElicitations, form_fields,
};
use tether_proto::method::rpc;

use super::{CmdResult, connect, usage};
use crate::cli::ElicitationsAction;

pub async fn run(
    action: Option<ElicitationsAction>,
    session: Option<String>,
    all: bool,
    json: bool,
) -> CmdResult {
    match action {
        Some(ElicitationsAction::Answer {
            session,
            id,
            accept,
            decline,
            cancel: _,
        }) => {
            let (action, content) = match (accept, decline) {
                (Some(text), _) => {
                    let content: Value = serde_json::from_str(&text).map_err(|e| {
                        usage(format!(
                            "--accept is not valid JSON ({e}); give the fields as an object, e.g. --accept '{{\"name\":\"Ada\"}}'"
                        ))
                    })?;
                    (ElicitationAction::Accept, Some(content))
                }
                (None, true) => (ElicitationAction::Decline, None),
                (None, false) => (ElicitationAction::Cancel, None),
            };
            answer(session, id, action, content).await
        }
        None => {
            let Some(session) = session else {
                return Err(usage(
                    "name a session: `tether elicitations SESSION` lists its pending elicitations; `tether elicitations answer SESSION ID --accept JSON | --decline | --cancel` answers one".into(),
                ));
            };
            list(session, all, json).await
        }
    }
}

async fn list(session: String, all: bool, json: bool) -> CmdResult {
    let mut c = connect().await?;
    let found = c
        .request::<rpc::SessionElicitations>(ListElicitations {
            session: session.clone(),
            thread: None,
            all,
        })
        .await?;
    if json {
        for e in &found.data {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if found.data.is_empty() {
        println!(
            "no {}elicitations in {session}",
            if all { "" } else { "pending " }
        );
        return Ok(ExitCode::SUCCESS);
    }
    for e in &found.data {
        print!("{}", describe(e));
    }
    if found.data.iter().any(|e| e.action.is_none()) {
        println!(
            "answer: tether elicitations answer {session} ID --accept '{{...}}' (a link: --accept alone) | --decline | --cancel"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One elicitation as text: id, server, message, then one line per field.
fn describe(e: &Elicitation) -> String {
    let state = match (e.action, &e.reason) {
        (None, _) => "pending".to_string(),
        (Some(a), None) => a.as_str().to_string(),
        (Some(a), Some(r)) => format!("{} ({r})", a.as_str()),
    };
    // A child thread's question names its agent (and thread): answer it on either id.
    let who = match (&e.agent_name, &e.session_thread_id) {
        (Some(agent), Some(thread)) => {
            format!("{agent}'s {}  (thread {thread})", e.mcp_server_name)
        }
        (Some(agent), None) => format!("{agent}'s {}", e.mcp_server_name),
        _ => e.mcp_server_name.clone(),
    };
    let mut out = format!("{}  {who}  [{state}]\n  {}\n", e.id, e.message);
    if let Some(url) = &e.url {
        // In full: what is shown is what would be opened; tether never opens it.
        out.push_str(&format!(
            "  open this link yourself{}:\n  {url}\n",
            if e.completed {
                " (the server says it is done)"
            } else {
                ", then --accept"
            }
        ));
    }
    for f in form_fields(&e.requested_schema) {
        let kind = match &f.kind {
            FieldKind::String => "string".to_string(),
            FieldKind::Number => "number".to_string(),
            FieldKind::Integer => "integer".to_string(),
            FieldKind::Boolean => "true/false".to_string(),
            FieldKind::Enum(options) => {
                let values: Vec<&str> = options.iter().map(|(v, _)| v.as_str()).collect();
                format!("one of {}", values.join(", "))
            }
        };
        out.push_str(&format!(
            "  - {}: {kind}{}{}\n",
            f.name,
            if f.required { ", required" } else { "" },
            if f.title != f.name {
                format!(" ({})", f.title)
            } else {
                String::new()
            }
        ));
    }
    out
}

async fn answer(
    session: String,
    id: String,
    action: ElicitationAction,
    content: Option<Value>,
) -> CmdResult {
    let mut c = connect().await?;
    c.request::<rpc::SessionElicitationAnswer>(AnswerElicitation {
        session,
        thread: None,
        elicitation_id: id.clone(),
        action,
        content,
    })
    .await?;
    eprintln!(
        "{} {id}",
        match action {
            ElicitationAction::Accept => "accepted",
            ElicitationAction::Decline => "declined",
            ElicitationAction::Cancel => "cancelled",
        }
    );
    Ok(ExitCode::SUCCESS)
}
