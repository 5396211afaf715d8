//! The picker's side of the fleet: one watcher task per `[[remotes]]` host that lists its
//! sessions and, when the host is unreachable, says so and retries with backoff by itself;
//! and the picker's actions on a session of any host (peek, approve, reply).

use std::time::Duration;

use tether_proto::method::{ListSessions, Order, ReadEvents, SendMessage, SessionParams, rpc};
use tether_proto::{ContentBlock, EventBody};
use tokio::sync::mpsc::UnboundedSender;

use super::picker::{PeekInfo, PickerMsg};
use crate::client::{Client, ClientError};
use crate::fleet::{self, Host, Remote};
use crate::transport::Target;

/// How often a reachable host's list is refreshed (as the local one is).
const REFRESH: Duration = Duration::from_secs(2);
/// Backoff between attempts to reach a host that is down.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The watcher tasks; dropping this stops them (the picker closed).
pub struct Watchers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Watchers {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Starts one watcher per remote, each sending [`PickerMsg::Host`] to `tx`.
pub fn watch(remotes: &[Remote], tx: UnboundedSender<PickerMsg>) -> Watchers {
    Watchers(
        remotes
            .iter()
            .cloned()
            .map(|r| tokio::spawn(watch_one(r, tx.clone())))
            .collect(),
    )
}

async fn watch_one(r: Remote, tx: UnboundedSender<PickerMsg>) {
    let target = Target::Ssh(r.ssh.clone());
    let limit = r.connect_timeout;
    let send = |sessions| {
        tx.send(PickerMsg::Host {
            name: r.name.clone(),
            sessions,
        })
        .is_ok()
    };
    let mut retry = FIRST_RETRY;
    loop {
        // Never starts a daemon on another box: listing is looking.
        match tokio::time::timeout(limit, Client::connect_to(&target, false)).await {
            Ok(Ok(mut c)) => {
                retry = FIRST_RETRY;
                loop {
                    let listed = tokio::time::timeout(
                        limit,
                        c.request::<rpc::SessionList>(ListSessions::default()),
                    )
                    .await;
                    let ok = match listed {
                        Ok(Ok(l)) => send(Ok(l.data)),
                        Ok(Err(e)) => {
                            if !send(Err(one_line(&e.to_string()))) {
                                return;
                            }
                            break;
                        }
                        Err(_) => {
                            if !send(Err(silent(limit))) {
                                return;
                            }
                            break;
                        }
                    };
                    if !ok {
                        return;
                    }
                    tokio::time::sleep(REFRESH).await;
                }
            }
            Ok(Err(e)) => {
                if !send(Err(one_line(&e.to_string()))) {
                    return;
                }
            }
            Err(_) => {
                if !send(Err(silent(limit))) {
                    return;
                }
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

fn silent(limit: Duration) -> String {
    format!("no answer within {} s", limit.as_secs())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// For a `HOST:ID` key, a connection to that host and the id; None for a local key (use the
/// picker's own connection).
pub async fn open(key: &str, remotes: &[Remote]) -> Result<Option<(Client, String)>, String> {
    match fleet::resolve(key, remotes)? {
        (Some(Host::Remote(r)), id) => {
            let target = Target::Ssh(r.ssh.clone());
            match tokio::time::timeout(r.connect_timeout, Client::connect_to(&target, false)).await
            {
                Ok(Ok(c)) => Ok(Some((c, id.to_string()))),
                Ok(Err(e)) => Err(one_line(&e.to_string())),
                Err(_) => Err(format!("{}: {}", r.name, silent(r.connect_timeout))),
            }
        }
        (_, _) => Ok(None),
    }
}

/// The last thing the session said and the calls it waits on.
pub async fn peek(c: &mut Client, id: &str) -> Result<PeekInfo, ClientError> {
    let info = c
        .request::<rpc::SessionGet>(SessionParams {
            session: id.to_string(),
        })
        .await?;
    let pending = crate::cmd::approvals::waiting_calls(c, &info)
        .await?
        .into_iter()
        .map(|w| {
            let what = crate::render::tool_summary(&w.name, &w.input);
            if w.custom {
                format!("{}: {what} (custom tool: needs a result)", w.name)
            } else {
                format!("{}: {what}", w.name)
            }
        })
        .collect();
    let page = c
        .request::<rpc::SessionEvents>(ReadEvents {
            thread: None,
            session: info.id.clone(),
            after_seq: None,
            before_seq: None,
            limit: 200,
            order: Order::Desc,
        })
        .await?;
    let last_message = page.data.iter().find_map(|e| match &e.body {
        EventBody::AgentMessage { content } => Some(tether_proto::blocks_text(content)),
        _ => None,
    });
    Ok(PeekInfo {
        last_message,
        pending,
    })
}

/// Allows every `always_ask` call the session waits on; how many.
pub async fn approve_all(c: &mut Client, id: &str) -> Result<usize, ClientError> {
    let info = c
        .request::<rpc::SessionGet>(SessionParams {
            session: id.to_string(),
        })
        .await?;
    let mut n = 0;
    for w in crate::cmd::approvals::waiting_calls(c, &info).await? {
        if w.custom {
            continue;
        }
        c.request::<rpc::ToolConfirm>(tether_proto::method::ToolConfirm {
            session: info.id.clone(),
            tool_use_id: w.id,
            result: tether_proto::ConfirmationResult::Allow,
            deny_message: None,
        })
        .await?;
        n += 1;
    }
    Ok(n)
}

pub async fn reply(c: &mut Client, id: &str, text: String) -> Result<(), ClientError> {
    c.request::<rpc::SessionSend>(SendMessage {
        thread: None,
        model: None,
        session: id.to_string(),
        content: vec![ContentBlock::text(text)],
    })
    .await
    .map(|_| ())
}
