//! `tether ls` over every host of the fleet, and `tether wait SESSION…`: commands that talk
//! to several daemons at once, each behind its own connection, none waiting on another.

use std::process::ExitCode;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tether_proto::method::{ListSessions, SessionParams, rpc};
use tether_proto::{ErrorCode, SessionInfo, SessionStatus, StopReason};

use super::follow::follow;
use super::sessions::{color_out, ls_table, newest_first, outcome_code, waits_for_answer};
use super::{CmdResult, usage};
use crate::client::{self, Client, ClientError};
use crate::fleet::{self, Host};
use crate::render::{Printer, stop_reason_text};
use crate::transport::Target;

/// One host's answer to `ls`.
struct Listing {
    host: String,
    sessions: Result<Vec<SessionInfo>, ClientError>,
}

/// `tether ls`: this daemon and every `[[remotes]]` one (or `--host NAME`'s), asked at once;
/// `single` (a `--remote` given) lists that daemon alone, as `host`.
pub async fn ls(
    all: bool,
    json: bool,
    deployment: Option<String>,
    only: Option<String>,
    single: Option<String>,
) -> CmdResult {
    let paths = client::paths();
    let hosts: Vec<(String, Target, std::time::Duration, bool)> = match single {
        Some(name) => vec![(
            name,
            client::target(&paths),
            Host::Local.connect_timeout(),
            true,
        )],
        None => {
            let remotes = fleet::load(&paths.config_file()).map_err(usage)?;
            fleet::hosts(&remotes, only.as_deref())
                .map_err(usage)?
                .into_iter()
                .map(|h| {
                    // Listing never starts a daemon on another box.
                    let start = h == Host::Local;
                    (
                        h.name().to_string(),
                        h.target(&paths),
                        h.connect_timeout(),
                        start,
                    )
                })
                .collect()
        }
    };
    let asked = hosts.len();
    let listings: Vec<Listing> =
        futures_util::future::join_all(hosts.into_iter().map(|(host, target, limit, start)| {
            let deployment = deployment.clone();
            async move {
                let sessions = list_one(&target, limit, start, all, deployment).await;
                Listing { host, sessions }
            }
        }))
        .await;
    let mut rows: Vec<(String, SessionInfo)> = Vec::new();
    let mut failures: Vec<(String, ClientError)> = Vec::new();
    for l in listings {
        match l.sessions {
            Ok(s) => rows.extend(s.into_iter().map(|s| (l.host.clone(), s))),
            // A deployment lives on one host; the others simply have no sessions of it.
            Err(e) if deployment.is_some() && asked > 1 && e.code_is(ErrorCode::NotFound) => {}
            Err(e) => failures.push((l.host, e)),
        }
    }
    // Nothing answered: the error itself, with its exit code (3 for an unreachable daemon).
    if (asked == 1 || (rows.is_empty() && failures.len() == asked)) && !failures.is_empty() {
        return Err(failures.swap_remove(0).1);
    }
    sort_newest_first(&mut rows);
    if json {
        for (host, s) in &rows {
            let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("host".into(), Value::String(host.clone()));
            }
            println!("{}", serde_json::to_string(&v).unwrap_or_default());
        }
        for (host, e) in &failures {
            eprintln!(
                "tether: host {host} unreachable: {}",
                one_line(&e.to_string())
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() && failures.is_empty() {
        eprintln!("no sessions yet; `tether new \"...\"` starts one");
        return Ok(ExitCode::SUCCESS);
    }
    let show_hosts = asked > 1 || only.is_some();
    let (sessions, host_names): (Vec<SessionInfo>, Vec<String>) =
        rows.into_iter().map(|(h, s)| (s, h)).unzip();
    let host_refs: Vec<&str> = host_names.iter().map(String::as_str).collect();
    let color = color_out();
    print!(
        "{}",
        ls_table(
            &sessions,
            show_hosts.then_some(host_refs.as_slice()),
            std::time::SystemTime::now(),
            color
        )
    );
    print!("{}", unreachable_lines(&failures, color));
    Ok(ExitCode::SUCCESS)
}

/// One line per host that did not answer, under the table.
fn unreachable_lines(failures: &[(String, ClientError)], color: bool) -> String {
    let (red, reset) = if color {
        ("\x1b[31;1m", "\x1b[0m")
    } else {
        ("", "")
    };
    failures
        .iter()
        .map(|(host, e)| {
            format!(
                "{red}{host:<12} ✗ unreachable: {}{reset}\n",
                one_line(&e.to_string())
            )
        })
        .collect()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Newest first across hosts (RFC 3339 UTC times sort as text), then by host and id.
fn sort_newest_first(rows: &mut [(String, SessionInfo)]) {
    rows.sort_by(|(ha, a), (hb, b)| {
        (b.created_at.as_str(), hb.as_str(), b.id.as_str()).cmp(&(
            a.created_at.as_str(),
            ha.as_str(),
            a.id.as_str(),
        ))
    });
}

/// One host's sessions, or why not, within `limit` (a hung ssh must not hold up the rest).
async fn list_one(
    target: &Target,
    limit: std::time::Duration,
    start: bool,
    all: bool,
    deployment: Option<String>,
) -> Result<Vec<SessionInfo>, ClientError> {
    let ask = async {
        let mut c = Client::connect_to(target, start).await?;
        let mut s = c
            .request::<rpc::SessionList>(ListSessions { all, deployment })
            .await?
            .data;
        newest_first(&mut s);
        Ok(s)
    };
    match tokio::time::timeout(limit, ask).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Unreachable(format!(
            "{target} did not answer within {} s (connect_timeout_secs in its [[remotes]] entry)",
            limit.as_secs()
        ))),
    }
}

/// A session `wait` waits on: as the user named it, where it is, and what it is.
struct Waited {
    label: String,
    host: String,
    client: Client,
    info: SessionInfo,
}

/// `tether wait SESSION… [--any]`: blocks until every session (or, with --any, the first) is
/// idle; prints one line per session as it goes idle. Exit code: 0 when every one waited for
/// ended its turn with end_turn, else 1 (as `send --wait`).
pub async fn wait(sessions: Vec<String>, any: bool, json: bool) -> CmdResult {
    let paths = client::paths();
    let remotes = fleet::load(&paths.config_file()).map_err(usage)?;
    let mut wanted = Vec::new();
    for arg in &sessions {
        let (host, session) = fleet::resolve(arg, &remotes).map_err(usage)?;
        let (host_name, target) = match host {
            Some(h) => (h.name().to_string(), h.target(&paths)),
            None if client::is_remote() => {
                (client::target(&paths).to_string(), client::target(&paths))
            }
            None => (fleet::LOCAL.to_string(), client::target(&paths)),
        };
        wanted.push((arg.clone(), host_name, target, session.to_string()));
    }
    // Every session is looked up first: a typo fails now, not after the others finished.
    let found = futures_util::future::join_all(wanted.into_iter().map(
        |(label, host, target, session)| async move {
            let mut client = Client::connect_to(&target, true).await?;
            let info = client
                .request::<rpc::SessionGet>(SessionParams { session })
                .await?;
            Ok::<_, ClientError>(Waited {
                label,
                host,
                client,
                info,
            })
        },
    ))
    .await;
    let mut waits = FuturesUnordered::new();
    for w in found {
        waits.push(wait_idle(w?));
    }
    let mut code = ExitCode::SUCCESS;
    while let Some(done) = waits.next().await {
        let (w, reason) = done?;
        report(&w, reason.as_ref(), json);
        if !reason.as_ref().is_some_and(StopReason::is_success) {
            code = outcome_code(reason.as_ref());
        }
        if any {
            return Ok(outcome_code(reason.as_ref()));
        }
    }
    Ok(code)
}

/// Waits until `w`'s session is idle (now, if it is), and why it stopped (None: terminated).
async fn wait_idle(mut w: Waited) -> Result<(Waited, Option<StopReason>), ClientError> {
    match w.info.status {
        SessionStatus::Idle => {
            let reason = w.info.stop_reason.clone();
            Ok((w, reason))
        }
        SessionStatus::Terminated => Ok((w, None)),
        SessionStatus::Running | SessionStatus::Rescheduling => {
            // Attaching after last_seq replays anything newer: an idle that lands meanwhile
            // is seen, not missed.
            let after = w.info.last_seq;
            let id = w.info.id.clone();
            let reason = follow(
                &mut w.client,
                &id,
                after,
                true,
                &mut Printer::quiet(),
                Some(after),
            )
            .await?;
            Ok((w, reason))
        }
    }
}

/// One line on stdout per session gone idle: `LABEL STOP_REASON` (or a JSON object).
fn report(w: &Waited, reason: Option<&StopReason>, json: bool) {
    let why = reason.map(stop_reason_text).unwrap_or("terminated");
    if json {
        let v = serde_json::json!({
            "session": w.info.id,
            "name": w.info.name,
            "host": w.host,
            "stop_reason": reason,
        });
        println!("{v}");
        return;
    }
    println!("{} {why}", w.label);
    waits_for_answer(&w.label, reason);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_unreachable_host_is_one_line_whatever_ssh_said() {
        let f = vec![(
            "gpu1".to_string(),
            ClientError::Unreachable("cannot reach\n  tetherd:\n ssh said: refused".into()),
        )];
        let text = unreachable_lines(&f, false);
        assert_eq!(
            text,
            "gpu1         ✗ unreachable: cannot reach tetherd: ssh said: refused\n"
        );
        assert!(unreachable_lines(&f, true).starts_with("\x1b[31;1m"));
    }
}
