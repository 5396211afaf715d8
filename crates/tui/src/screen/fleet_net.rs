//! The picker's side of the fleet: one watcher task per host (this machine's daemon and each
//! `[[remotes]]` one) that follows its session list as the daemon pushes it
//! (`sessions.watch`: no polling, so an idle picker costs nothing on either end) and, when the
//! host is unreachable, says so and retries with backoff by itself; and the picker's actions
//! on a session of any host (peek, approve, reply).

use std::time::Duration;

use tether_proto::method::{ListSessions, Order, ReadEvents, SendMessage, SessionParams, rpc};
use tether_proto::watch::WatchSessions;
use tether_proto::{ContentBlock, ErrorCode, EventBody, ServerFrame, SessionInfo};
use tokio::sync::mpsc::UnboundedSender;

use super::picker::{PeekInfo, PickerMsg};
use crate::client::{Client, ClientError};
use crate::fleet::{self, Host, Remote};
use crate::transport::Target;

/// How often a daemon too old for `sessions.watch` is listed again.
const POLL_OLD_DAEMON: Duration = Duration::from_secs(2);
/// Backoff between attempts to reach a host that is down.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long this machine's daemon may take to connect and answer.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The watcher tasks; dropping this stops them (the picker closed).
pub struct Watchers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Watchers {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// One host to follow: None names this machine's daemon (at `target`).
#[derive(Debug, Clone)]
pub struct Feed {
    pub remote: Option<String>,
    pub target: Target,
    pub limit: Duration,
}

impl Feed {
    /// The daemon the picker's own connection goes to (`local`, or `--remote`'s).
    pub fn local(target: Target) -> Feed {
        Feed {
            remote: None,
            target,
            limit: LOCAL_TIMEOUT,
        }
    }

    pub fn remote(r: &Remote) -> Feed {
        Feed {
            remote: Some(r.name.clone()),
            target: Target::Ssh(r.ssh.clone()),
            limit: r.connect_timeout,
        }
    }

    /// What the picker hears: this host's list, or why it cannot be had. False once the
    /// picker is gone.
    fn tell(
        &self,
        tx: &UnboundedSender<PickerMsg>,
        sessions: Result<Vec<SessionInfo>, String>,
    ) -> bool {
        let msg = match (&self.remote, sessions) {
            (Some(name), sessions) => PickerMsg::Host {
                name: name.clone(),
                sessions,
            },
            (None, Ok(list)) => PickerMsg::Sessions(list),
            (None, Err(why)) => PickerMsg::Failed(format!("tetherd: {why}; retrying")),
        };
        tx.send(msg).is_ok()
    }

    /// What changed in this host's list. False once the picker is gone.
    fn tell_change(
        &self,
        tx: &UnboundedSender<PickerMsg>,
        changed: Vec<SessionInfo>,
        removed: Vec<String>,
    ) -> bool {
        tx.send(PickerMsg::Changed {
            host: self.remote.clone(),
            changed,
            removed,
        })
        .is_ok()
    }
}

/// Starts one watcher per feed, each sending what it hears to `tx`.
pub fn watch(feeds: Vec<Feed>, tx: UnboundedSender<PickerMsg>) -> Watchers {
    Watchers(
        feeds
            .into_iter()
            .map(|f| tokio::spawn(watch_one(f, tx.clone())))
            .collect(),
    )
}

/// Why following a host stopped.
enum Stop {
    /// The picker is gone.
    Picker,
    /// The host is gone, and why; retry.
    Host(String),
}

async fn watch_one(feed: Feed, tx: UnboundedSender<PickerMsg>) {
    let mut retry = FIRST_RETRY;
    loop {
        // Never starts a daemon on another box: listing is looking.
        let why =
            match tokio::time::timeout(feed.limit, Client::connect_to(&feed.target, false)).await {
                Ok(Ok(mut c)) => {
                    retry = FIRST_RETRY;
                    match follow(&feed, &mut c, &tx).await {
                        Stop::Picker => return,
                        Stop::Host(why) => why,
                    }
                }
                Ok(Err(e)) => one_line(&e.to_string()),
                Err(_) => silent(feed.limit),
            };
        if !feed.tell(&tx, Err(why)) {
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// Follows one connected host's list until the link breaks: its pushes, or (a daemon that
/// predates `sessions.watch`) a list every [`POLL_OLD_DAEMON`].
async fn follow(feed: &Feed, c: &mut Client, tx: &UnboundedSender<PickerMsg>) -> Stop {
    let asked = tokio::time::timeout(
        feed.limit,
        c.request::<rpc::SessionsWatch>(WatchSessions::default()),
    )
    .await;
    let (list, mut seq) = match asked {
        Ok(Ok(w)) => (w.data, w.seq),
        Ok(Err(e)) if e.code_is(ErrorCode::UnknownMethod) => return poll(feed, c, tx).await,
        Ok(Err(e)) => return Stop::Host(one_line(&e.to_string())),
        Err(_) => return Stop::Host(silent(feed.limit)),
    };
    if !feed.tell(tx, Ok(list)) {
        return Stop::Picker;
    }
    loop {
        // No timer here: the link's heartbeat tells a dead host from a quiet one.
        match c.next_push().await {
            // Already reflected in what the picker has.
            Ok(ServerFrame::Sessions(change)) if change.seq <= seq => {}
            Ok(ServerFrame::Sessions(change)) => {
                seq = change.seq;
                // Only what changed travels on: the picker keeps the list, and a push to a
                // fleet of thousands costs what the change costs.
                let told = if change.resync {
                    feed.tell(tx, Ok(change.changed))
                } else {
                    feed.tell_change(tx, change.changed, change.removed)
                };
                if !told {
                    return Stop::Picker;
                }
            }
            Ok(_) => {}
            Err(e) => return Stop::Host(one_line(&e.to_string())),
        }
    }
}

async fn poll(feed: &Feed, c: &mut Client, tx: &UnboundedSender<PickerMsg>) -> Stop {
    loop {
        let listed = tokio::time::timeout(
            feed.limit,
            c.request::<rpc::SessionList>(ListSessions::default()),
        )
        .await;
        match listed {
            Ok(Ok(l)) => {
                if !feed.tell(tx, Ok(l.data)) {
                    return Stop::Picker;
                }
            }
            Ok(Err(e)) => return Stop::Host(one_line(&e.to_string())),
            Err(_) => return Stop::Host(silent(feed.limit)),
        }
        tokio::time::sleep(POLL_OLD_DAEMON).await;
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
