//! The terminal and the event loops: one `tokio::select!` over terminal input, daemon pushes,
//! a tick (only while something animates) and the next frame deadline. Frames are drawn only
//! when something changed, at most 60 per second; an idle client sleeps. The terminal is
//! restored on every way out, panics included.

use std::io::{Stdout, Write};
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as TermEvent, EventStream, KeyboardEnhancementFlags, PopKeyboardEnhancementFlags,
    PushKeyboardEnhancementFlags,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tether_proto::Paths;
use tether_proto::SessionInfo;
use tether_proto::method::rpc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::unbounded_channel;

use super::app::{Effect, Msg, State, update};
use super::keys::Keys;
use super::layout;
use super::net::{self, NetMsg};
use super::palette;
use super::picker::{HostState, HostView, Picker, PickerEffect, PickerMsg};
use super::view;
use crate::client::Client;
use crate::fleet::Remote;

const FRAME: Duration = Duration::from_micros(16_667);

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// The terminal in TUI mode; dropping it restores the shell's terminal.
pub struct Tui {
    pub term: Term,
    pub depth: palette::Depth,
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        PopKeyboardEnhancementFlags,
        DisableMouseCapture,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

impl Tui {
    pub fn enter() -> std::io::Result<Tui> {
        super::highlight::warm();
        // A panic must leave a usable shell: restore first, then the normal report.
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
        enable_raw_mode()?;
        let mut out = std::io::stdout();
        if let Err(e) = execute!(
            out,
            EnterAlternateScreen,
            EnableBracketedPaste,
            EnableMouseCapture
        ) {
            restore();
            return Err(e);
        }
        // Terminals with the kitty keyboard protocol then tell shift-enter from enter; the
        // others ignore the request (no query: it would stall where nothing answers).
        let _ = execute!(
            out,
            PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES)
        );
        let term = Terminal::new(CrosstermBackend::new(out))?;
        Ok(Tui {
            term,
            depth: palette::detect(|k| std::env::var(k).ok()),
        })
    }

    fn draw(&mut self, f: impl FnOnce(&mut ratatui::Frame<'_>)) -> std::io::Result<()> {
        let depth = self.depth;
        self.term.draw(|frame| {
            f(frame);
            palette::apply(frame.buffer_mut(), depth);
        })?;
        Ok(())
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
    }
}

fn to_msg(ev: TermEvent) -> Option<Msg> {
    Some(match ev {
        TermEvent::Key(k) => Msg::Key(k),
        TermEvent::Paste(p) => Msg::Paste(p),
        TermEvent::Mouse(m) => Msg::Mouse(m),
        TermEvent::Resize(w, h) => Msg::Resize(w, h),
        _ => return None,
    })
}

/// How a session view ended.
pub enum Exit {
    Detached,
    /// The terminal went away: nothing more can be shown (crossterm's reader spins on a
    /// hung-up tty, so the process should end rather than open another view).
    Hangup,
}

/// OSC 52: the terminal (even over SSH, even in tmux with set-clipboard) puts it on the clipboard.
fn osc52(text: &str) {
    let mut out = std::io::stdout();
    let _ = write!(out, "\x1b]52;c;{}\x07", base64(text.as_bytes()));
    let _ = out.flush();
}

pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Hands the terminal to `$PAGER` with the whole transcript, then takes it back. Events older
/// than what the view has loaded are fetched and rendered page by page while the pager reads
/// (so a 100k-event log never sits in memory at once), then the loaded part follows.
async fn pager(
    tui: &mut Tui,
    text: &str,
    older: Option<(&Paths, &str, u64)>,
    mouse: bool,
) -> std::io::Result<()> {
    restore();
    let pager = std::env::var("PAGER")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "less -R".into());
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&pager)
        .stdin(std::process::Stdio::piped());
    // less shows colours with -R; any other pager gets plain text (no raw escape codes).
    let colour = pager.split_whitespace().next() == Some("less");
    if colour {
        let less = std::env::var("LESS").unwrap_or_default();
        if !less.contains('R') && !less.contains('r') {
            cmd.env("LESS", format!("{less}R"));
        }
    }
    let width = usize::from(tui.term.size().map_or(100, |r| r.width));
    let result = match cmd.spawn() {
        Ok(mut child) => {
            if let Some(mut stdin) = child.stdin.take() {
                let mut out = PagerOut {
                    to: &mut stdin,
                    colour,
                };
                // A pager quit early closes the pipe: then there is nothing more to write.
                let more = match older {
                    Some((paths, id, before)) => {
                        write_older(&mut out, paths, id, before, width).await
                    }
                    None => Ok(()),
                };
                if more.is_ok() {
                    let _ = out.write_all(text.as_bytes());
                }
            }
            child.wait().map(|_| ())
        }
        Err(e) => Err(e),
    };
    enable_raw_mode()?;
    execute!(
        std::io::stdout(),
        EnterAlternateScreen,
        EnableBracketedPaste,
        PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES)
    )?;
    if mouse {
        execute!(std::io::stdout(), EnableMouseCapture)?;
    }
    // Repaint everything. Not `Terminal::clear`: it asks the terminal for the cursor position,
    // whose answer would race the restarted input reader.
    execute!(
        std::io::stdout(),
        crossterm::terminal::Clear(crossterm::terminal::ClearType::All)
    )?;
    tui.term
        .draw(|f| f.render_widget(ratatui::widgets::Clear, f.area()))?;
    result
}

/// The pager's input: text with colours, or without when the pager would show the codes.
struct PagerOut<'a, W: Write> {
    to: &'a mut W,
    colour: bool,
}

impl<W: Write> PagerOut<'_, W> {
    fn write_all(&mut self, text: &[u8]) -> std::io::Result<()> {
        if self.colour {
            return self.to.write_all(text);
        }
        let plain = layout::strip_ansi(&String::from_utf8_lossy(text));
        self.to.write_all(plain.as_bytes())
    }
}

/// Items kept back at most while waiting for a tool call's result (a call that never got one
/// must not hold the whole log in memory).
const PAGER_HOLD: usize = 2000;

/// Writes the events before seq `before` as transcript text, oldest first. Err only when the
/// pager stopped reading.
async fn write_older(
    out: &mut PagerOut<'_, impl Write>,
    paths: &Paths,
    id: &str,
    before: u64,
    width: usize,
) -> std::io::Result<()> {
    let note = |e: &dyn std::fmt::Display| {
        format!(
            "[the events before seq {before} could not be loaded ({e}); `tether logs {id}` prints them]\n\n"
        )
    };
    let mut c = match Client::connect_existing(paths).await {
        Ok(c) => c,
        Err(e) => return out.write_all(note(&e).as_bytes()),
    };
    let mut rolling = super::transcript::Transcript::default();
    let mut after = 0;
    loop {
        let page: tether_proto::method::EventPage = match c
            .request::<tether_proto::method::rpc::SessionEvents>(tether_proto::method::ReadEvents {
                thread: None,
                session: id.to_string(),
                after_seq: Some(after),
                before_seq: Some(before),
                limit: 1000,
                order: tether_proto::method::Order::Asc,
            })
            .await
        {
            Ok(p) => p,
            Err(e) => return out.write_all(note(&e).as_bytes()),
        };
        for e in &page.data {
            rolling.push_event(e);
            after = e.seq;
        }
        let done = page.next.is_none() || page.data.is_empty();
        // Everything up to a call still waiting for its result (in a later page) is final.
        let ready = if done {
            rolling.items.len()
        } else {
            let waiting = rolling.items.iter().position(
                |i| matches!(&i.body, super::transcript::Body::Tool(c) if c.result.is_none()),
            );
            match waiting {
                Some(w) if rolling.items.len() - w < PAGER_HOLD => w,
                _ => rolling.items.len(),
            }
        };
        let mut text = String::new();
        for item in rolling.items.drain(..ready) {
            layout::item_text(&item, width, &mut text);
        }
        out.write_all(text.as_bytes())?;
        if done {
            return Ok(());
        }
    }
}

/// What the session view shows first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Focus {
    Primary,
    /// A child thread's stream (`sthr_...`).
    Thread(String),
    /// A workflow run's panel (`wrun_...`).
    Run(String),
}

/// The session view until the user detaches (or the terminal goes away).
// Each input is used once, at the start; grouping them would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn session(
    tui: &mut Tui,
    client: Client,
    paths: Paths,
    info: SessionInfo,
    read_only: bool,
    keys: Keys,
    focus: Focus,
    fleet: Option<super::alerts::Fleet>,
) -> std::io::Result<Exit> {
    let (net_tx, mut net_rx) = unbounded_channel();
    // The rest of the fleet, for notifications while this session is on screen.
    let (fleet_tx, mut fleet_rx) = unbounded_channel();
    let (_fleet_watchers, mut alerts, notify) = match fleet {
        Some(f) => (
            Some(super::fleet_net::watch(f.feeds, fleet_tx)),
            Some(super::alerts::Alerts::new(f.looking_at, &f.notify)),
            f.notify,
        ),
        None => (None, None, crate::notify::NotifySettings::default()),
    };
    let cmd = net::spawn(client, paths.clone(), info.clone(), read_only, net_tx);
    let size = tui.term.size()?;
    let mut s = State::new(&info.id, keys, read_only, size.width, size.height);
    s.now = SystemTime::now();
    update(&mut s, Msg::Net(NetMsg::Info(Box::new(info))));
    match focus {
        Focus::Primary => {}
        // `tether attach --thread`: that thread's stream first.
        Focus::Thread(thread) => {
            for fx in s.view_thread(Some(thread)) {
                if let Effect::Net(c) = fx {
                    let _ = cmd.send(c);
                }
            }
        }
        // `tether workflows watch`: the run panel, once the run is known.
        Focus::Run(run) => s.watch_run = Some(run),
    }
    let mut events = EventStream::new();
    let mut hangup = signal(SignalKind::hangup())?;
    // `kill` (SIGTERM) ends the client cleanly too: terminal restored, agent untouched.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(125));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    loop {
        if dirty && last_draw.elapsed() >= FRAME {
            tui.draw(|f| view::draw_session(f, &s))?;
            dirty = false;
            last_draw = Instant::now();
        }
        let next_frame = tokio::time::Instant::from_std(last_draw + FRAME);
        let msg = tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(ev)) => match to_msg(ev) { Some(m) => m, None => continue },
                // The terminal is gone.
                Some(Err(_)) | None => Msg::Hangup,
            },
            Some(n) = net_rx.recv() => Msg::Net(n),
            Some(m) = fleet_rx.recv() => {
                if let Some(a) = alerts.as_mut() {
                    for n in a.update(m, SystemTime::now()) {
                        crate::notify::send(&notify, &n);
                    }
                    let waiting = a.needs_input();
                    if waiting != s.fleet_waiting {
                        s.fleet_waiting = waiting;
                        dirty = true;
                    }
                }
                continue;
            }
            _ = tick.tick(), if s.needs_tick() => Msg::Tick(SystemTime::now()),
            _ = tokio::time::sleep_until(next_frame), if dirty => continue,
            _ = hangup.recv() => Msg::Hangup,
            _ = terminate.recv() => Msg::Hangup,
        };
        dirty = true;
        let hangup = matches!(msg, Msg::Hangup);
        for fx in update(&mut s, msg) {
            let sent = match fx {
                Effect::Net(c) => cmd.send(c).is_ok(),
                Effect::Copy(text) => {
                    osc52(&text);
                    true
                }
                Effect::Pager { text, older_than } => {
                    // The event stream would steal the pager's keys: drop it while the pager runs.
                    drop(events);
                    let id = s.header.id.clone();
                    let older = older_than.map(|b| (&paths, id.as_str(), b));
                    let r = pager(tui, &text, older, s.mouse_capture).await;
                    events = EventStream::new();
                    if let Err(e) = r {
                        s.notice = Some(format!("pager failed: {e} (set $PAGER)"));
                    }
                    true
                }
                Effect::SetMouse(on) => {
                    let mut out = std::io::stdout();
                    if on {
                        execute!(out, EnableMouseCapture)?
                    } else {
                        execute!(out, DisableMouseCapture)?
                    }
                    true
                }
                Effect::Detach if hangup => return Ok(Exit::Hangup),
                Effect::Detach => return Ok(Exit::Detached),
            };
            if !sent {
                s.notice = Some("the connection task stopped; detach and attach again".into());
            }
        }
    }
}

/// What the picker chose.
pub enum Choice {
    Attach(String),
    Create(super::picker::NewSession),
    Quit,
}

/// The session picker; shows each host's list (this machine's and each remote's) as its
/// watcher reports the daemon's pushes.
pub async fn picker(
    tui: &mut Tui,
    c: &mut Client,
    notice: Option<String>,
    remotes: &[Remote],
    seen: &mut super::picker::Seen,
    notify: &crate::notify::NotifySettings,
) -> std::io::Result<Choice> {
    let mut p = Picker {
        notify_min_turn: notify.min_turn(),
        notice,
        now: Some(SystemTime::now()),
        remotes: remotes
            .iter()
            .map(|r| HostView {
                name: r.name.clone(),
                state: HostState::Connecting,
            })
            .collect(),
        seen: std::mem::take(seen),
        ..Picker::default()
    };
    let choice = picker_loop(tui, c, &mut p, remotes, notify).await;
    // What was looked at stays looked at across attaches.
    *seen = std::mem::take(&mut p.seen);
    choice
}

async fn picker_loop(
    tui: &mut Tui,
    c: &mut Client,
    p: &mut Picker,
    remotes: &[Remote],
    notify: &crate::notify::NotifySettings,
) -> std::io::Result<Choice> {
    let mut events = EventStream::new();
    let mut hangup = signal(SignalKind::hangup())?;
    // `kill` (SIGTERM) ends the client cleanly too: terminal restored, agent untouched.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut spin = tokio::time::interval(Duration::from_millis(125));
    spin.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (host_tx, mut host_rx) = unbounded_channel();
    // Every host's list is pushed by its daemon as it changes: nothing here polls.
    let feeds = std::iter::once(super::fleet_net::Feed::local(c.target().clone()))
        .chain(remotes.iter().map(super::fleet_net::Feed::remote))
        .collect();
    let _watchers = super::fleet_net::watch(feeds, host_tx);
    // Agent names and deployments are read again when the local list changes, at most this
    // often (a new agent or schedule shows with the next session change).
    let mut names_read: Option<Instant> = None;
    loop {
        tui.draw(|f| view::picker::draw(f, p))?;
        let msg = tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(TermEvent::Key(k))) => PickerMsg::Key(k),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(Choice::Quit),
            },
            Some(m) = host_rx.recv() => m,
            _ = spin.tick(), if p.any_running() => PickerMsg::Tick(SystemTime::now()),
            _ = hangup.recv() => return Ok(Choice::Quit),
            _ = terminate.recv() => return Ok(Choice::Quit),
        };
        if matches!(
            msg,
            PickerMsg::Sessions(_) | PickerMsg::Changed { host: None, .. }
        ) && names_read.is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
        {
            names_read = Some(Instant::now());
            // Names of the agents sessions pin (by id); the list works without them.
            if let Ok(names) = agent_names(c).await {
                super::picker::update(p, PickerMsg::Agents(names));
            }
            if let Ok(list) = deployments(c).await {
                super::picker::update(p, PickerMsg::Deployments(list));
            }
        }
        // Lists are stamped with the time they arrive (how long a turn ran).
        if matches!(
            msg,
            PickerMsg::Sessions(_) | PickerMsg::Host { .. } | PickerMsg::Changed { .. }
        ) {
            p.now = Some(SystemTime::now());
        }
        for fx in super::picker::update(p, msg) {
            match fx {
                PickerEffect::Notify(n) => {
                    crate::notify::send(notify, &n);
                    continue;
                }
                PickerEffect::Attach(id) => return Ok(Choice::Attach(id)),
                PickerEffect::Create(form) => return Ok(Choice::Create(form)),
                PickerEffect::Quit => return Ok(Choice::Quit),
                // What an action changes comes back as a push from the host's watcher.
                fx => {
                    if let Some(m) = on_session(c, remotes, p, fx).await {
                        super::picker::update(p, m);
                    }
                }
            }
        }
    }
}

/// Carries out an effect on one session, on its host (`HOST:ID` keys reach the remote).
async fn on_session(
    c: &mut Client,
    remotes: &[Remote],
    p: &mut Picker,
    fx: PickerEffect,
) -> Option<PickerMsg> {
    let key = match &fx {
        PickerEffect::Rename { id, .. }
        | PickerEffect::Archive(id)
        | PickerEffect::Delete(id)
        | PickerEffect::Peek(id)
        | PickerEffect::Approve(id)
        | PickerEffect::Reply { key: id, .. } => id.clone(),
        _ => return None,
    };
    let (mut remote, id) = match super::fleet_net::open(&key, remotes).await {
        Ok(Some((rc, id))) => (Some(rc), id),
        Ok(None) => (None, key.clone()),
        Err(e) => {
            return Some(match fx {
                PickerEffect::Peek(_) => PickerMsg::Peeked { key, found: Err(e) },
                _ => PickerMsg::Failed(e),
            });
        }
    };
    let cl: &mut Client = match remote.as_mut() {
        Some(r) => r,
        None => c,
    };
    let done = |r: Result<String, crate::client::ClientError>| {
        Some(match r {
            Ok(m) => PickerMsg::Notice(m),
            Err(e) => PickerMsg::Failed(e.to_string()),
        })
    };
    match fx {
        PickerEffect::Rename { name, .. } => done(
            cl.request::<rpc::SessionUpdate>(tether_proto::method::UpdateSession {
                session: id,
                model: None,
                max_cost_usd: None,
                name: Some(name.clone()),
            })
            .await
            .map(|_| format!("renamed to {name}")),
        ),
        PickerEffect::Archive(_) => {
            match cl
                .request::<rpc::SessionArchive>(tether_proto::method::SessionParams { session: id })
                .await
            {
                Ok(_) => None,
                Err(e) => Some(PickerMsg::Failed(e.to_string())),
            }
        }
        PickerEffect::Delete(_) => done(
            cl.request::<rpc::SessionDelete>(tether_proto::method::SessionParams { session: id })
                .await
                .map(|_| "deleted".into()),
        ),
        PickerEffect::Peek(_) => Some(PickerMsg::Peeked {
            key,
            found: super::fleet_net::peek(cl, &id)
                .await
                .map_err(|e| e.to_string()),
        }),
        PickerEffect::Approve(_) => {
            p.peek = None;
            done(
                super::fleet_net::approve_all(cl, &id)
                    .await
                    .map(|n| match n {
                        0 => "nothing waits for approval there".to_string(),
                        1 => "approved; the turn goes on".to_string(),
                        n => format!("approved {n} calls; the turn goes on"),
                    }),
            )
        }
        PickerEffect::Reply { text, .. } => {
            p.peek = None;
            done(
                super::fleet_net::reply(cl, &id, text)
                    .await
                    .map(|()| "sent".to_string()),
            )
        }
        _ => None,
    }
}

async fn agent_names(c: &mut Client) -> Result<std::collections::HashMap<String, String>, String> {
    let agents = c
        .request::<rpc::AgentList>(tether_proto::method::ListAgents { all: true })
        .await
        .map_err(|e| e.to_string())?;
    Ok(agents
        .data
        .into_iter()
        .map(|a| (a.id, a.spec.name))
        .collect())
}

/// This daemon's deployments that are not archived (the picker's Scheduled lines).
async fn deployments(c: &mut Client) -> Result<Vec<tether_proto::deployment::Deployment>, String> {
    c.request::<rpc::DeploymentList>(tether_proto::method::ListDeployments::default())
        .await
        .map(|l| l.data)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(
            super::base64("héllo wörld".as_bytes()),
            "aMOpbGxvIHfDtnJsZA=="
        );
    }
}
