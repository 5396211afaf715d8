//! The full-screen interactive client (the TUI): the session picker (`tether`) and the session
//! view (`tether attach`, `tether new`). Dependencies point one way: the transcript model
//! (transcript.rs) knows nothing of how it looks; layout/ lays its items out as lines (cached);
//! state and pure update in app/ and picker.rs; frames drawn from state in view/; the daemon
//! connection in net.rs; the terminal loop that ties them together in run.rs.

pub mod alerts;
pub mod app;
pub mod fleet_net;
pub mod highlight;
pub mod keys;
pub mod layout;
pub mod markdown;
pub mod net;
pub mod palette;
pub mod picker;
pub mod run;
pub mod rungraph;
pub mod runs;
pub mod threads;
pub mod transcript;
pub mod view;
pub mod workflow;
pub mod wrap;

#[cfg(test)]
mod tests;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use tether_proto::method::{CreateSession, SessionParams, rpc};
use tether_proto::{ErrorBody, ErrorCode, SessionInfo};

use crate::client::{self, Client, ClientError};

/// The TUI needs a terminal on both ends; scripts and pipes keep the line output.
pub fn is_tty() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

fn keys() -> Result<keys::Keys, ClientError> {
    keys::load(&client::paths().config_file())
        .map_err(|m| ClientError::Daemon(ErrorBody::new(ErrorCode::InvalidParams, m)))
}

fn io_err(e: std::io::Error) -> ClientError {
    ClientError::Protocol(format!("terminal: {e}"))
}

fn label(info: &SessionInfo) -> String {
    info.name.clone().unwrap_or_else(|| info.id.clone())
}

/// `tether attach` / `tether new` on a terminal: the session view until detach.
pub async fn attach(
    c: Client,
    info: SessionInfo,
    read_only: bool,
) -> Result<ExitCode, ClientError> {
    attach_thread(c, info, read_only, None).await
}

/// [`attach`], showing child thread `thread` (`sthr_...`) first (ctrl-t moves on from it).
pub async fn attach_thread(
    c: Client,
    info: SessionInfo,
    read_only: bool,
    thread: Option<String>,
) -> Result<ExitCode, ClientError> {
    let focus = thread.map_or(run::Focus::Primary, run::Focus::Thread);
    attach_with(c, info, read_only, focus).await
}

/// `tether workflows watch RUN` on a terminal: the run's session with its run panel open.
pub async fn watch_run(c: Client, info: SessionInfo, run: String) -> Result<ExitCode, ClientError> {
    attach_with(c, info, false, run::Focus::Run(run)).await
}

async fn attach_with(
    c: Client,
    info: SessionInfo,
    read_only: bool,
    focus: run::Focus,
) -> Result<ExitCode, ClientError> {
    let keys = keys()?;
    let fleet = attached_fleet(&c, &info);
    let mut tui = run::Tui::enter().map_err(io_err)?;
    let r = run::session(
        &mut tui,
        c,
        client::paths(),
        info.clone(),
        read_only,
        keys,
        focus,
        fleet,
    )
    .await;
    drop(tui);
    if let run::Exit::Hangup = r.map_err(io_err)? {
        return Ok(ExitCode::SUCCESS);
    }
    // The terminal may be gone (SIGHUP): a failed write is not worth a panic.
    let _ = writeln!(
        std::io::stderr(),
        "detached from {}; it keeps running — `tether attach {}` to return",
        label(&info),
        label(&info)
    );
    Ok(ExitCode::SUCCESS)
}

/// The fleet a `tether attach` listens to for notifications: this machine's daemon (or
/// `--remote`'s) and the `[[remotes]]`, with the attached session left out. None when
/// config.toml cannot be read (attaching works without notifications).
fn attached_fleet(c: &Client, info: &SessionInfo) -> Option<alerts::Fleet> {
    let paths = client::paths();
    let remotes = crate::fleet::load(&paths.config_file()).ok()?;
    let notify = crate::notify::load(&paths.config_file()).ok()?;
    let home = client::target(&paths);
    let host = remotes
        .iter()
        .find(|r| *c.target() == crate::transport::Target::Ssh(r.ssh.clone()))
        .map_or(crate::fleet::LOCAL, |r| r.name.as_str());
    Some(alerts::Fleet {
        feeds: std::iter::once(fleet_net::Feed::local(home))
            .chain(remotes.iter().map(fleet_net::Feed::remote))
            .collect(),
        notify,
        looking_at: picker::key(host, &info.id),
    })
}

/// `tether` on a terminal: pick a session, attach, detach back to the list.
pub async fn picker() -> Result<ExitCode, ClientError> {
    let keys = keys()?;
    let paths = client::paths();
    let remotes = crate::fleet::load(&paths.config_file()).map_err(|m| {
        ClientError::Daemon(tether_proto::ErrorBody::new(ErrorCode::InvalidParams, m))
    })?;
    let notify = crate::notify::load(&paths.config_file()).map_err(|m| {
        ClientError::Daemon(tether_proto::ErrorBody::new(ErrorCode::InvalidParams, m))
    })?;
    let mut c = Client::connect(&paths).await?;
    let mut tui = run::Tui::enter().map_err(io_err)?;
    let mut notice = None;
    let mut seen = picker::Seen::default();
    loop {
        // The daemon the session lives on: this one, or a remote's through ssh.
        let mut target = client::target(&paths);
        // The session's key (`HOST:ID` or a local id): left out of the notifications.
        let mut looking_at = None;
        let info: SessionInfo = match run::picker(
            &mut tui,
            &mut c,
            notice.take(),
            &remotes,
            &mut seen,
            &notify,
        )
        .await
        .map_err(io_err)?
        {
            run::Choice::Quit => return Ok(ExitCode::SUCCESS),
            run::Choice::Attach(key) => {
                let (host, id) = match crate::fleet::resolve(&key, &remotes) {
                    Ok(r) => r,
                    Err(m) => {
                        notice = Some(m);
                        continue;
                    }
                };
                if let Some(h) = host {
                    target = h.target(&paths);
                }
                // Picker keys carry ids, as the lists do.
                looking_at = Some(key.clone());
                let got = match Client::connect_to(&target, false).await {
                    Ok(mut rc) => {
                        rc.request::<rpc::SessionGet>(SessionParams {
                            session: id.to_string(),
                        })
                        .await
                    }
                    Err(e) => Err(e),
                };
                match got {
                    Ok(i) => i,
                    Err(e) if e.code_is(ErrorCode::NotFound) => continue,
                    // A remote that went away meanwhile: say so in the picker.
                    Err(e) => {
                        notice = Some(e.to_string());
                        continue;
                    }
                }
            }
            run::Choice::Create(form) => {
                let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
                // Relative to where `tether` runs, not to the daemon.
                let dir = opt(&form.dir).map(|d| {
                    std::path::absolute(&d)
                        .map(|p| p.display().to_string())
                        .unwrap_or(d)
                });
                let create = CreateSession {
                    name: opt(&form.name),
                    agent: opt(&form.agent),
                    model: opt(&form.model),
                    dir,
                    ..CreateSession::default()
                };
                match c.request::<rpc::SessionCreate>(create).await {
                    Ok(i) => i,
                    // e.g. the name is taken: say so in the picker.
                    Err(ClientError::Daemon(e)) => {
                        notice = Some(e.message);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        // The session view owns its own connection (it reconnects on its own).
        let own = Client::connect_to(&target, true).await?;
        let looking_at = looking_at.unwrap_or_else(|| info.id.clone());
        let fleet = alerts::Fleet {
            feeds: std::iter::once(fleet_net::Feed::local(c.target().clone()))
                .chain(remotes.iter().map(fleet_net::Feed::remote))
                .collect(),
            notify: notify.clone(),
            looking_at,
        };
        let exit = run::session(
            &mut tui,
            own,
            paths.clone(),
            info,
            false,
            keys.clone(),
            run::Focus::Primary,
            Some(fleet),
        )
        .await
        .map_err(io_err)?;
        if let run::Exit::Hangup = exit {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
