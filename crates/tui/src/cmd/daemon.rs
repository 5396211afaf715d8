//! `tether daemon start|stop|restart|status` and `tether http-token`.

use std::process::ExitCode;

use tether_proto::method::{DaemonStatus, NoParams, rpc};

use super::CmdResult;
use crate::cli::DaemonAction;
use crate::client::{self, Client, ClientError};

pub async fn run(action: DaemonAction) -> CmdResult {
    let paths = client::paths();
    match action {
        DaemonAction::Start { foreground } => {
            if foreground && client::is_remote() {
                return Err(ClientError::Daemon(tether_proto::ErrorBody::new(
                    tether_proto::ErrorCode::InvalidParams,
                    "--foreground runs tetherd in this terminal; with --remote, run `tether daemon start --foreground` on the remote host itself",
                )));
            }
            if foreground {
                let status = std::process::Command::new(crate::transport::daemon_binary())
                    .status()
                    .map_err(|e| ClientError::Unreachable(format!("cannot run tetherd: {e}")))?;
                return Ok(ExitCode::from(status.code().unwrap_or(1) as u8));
            }
            if let Ok(c) = Client::connect_existing(&paths).await {
                eprintln!("tetherd is already running (pid {})", c.daemon_pid);
                return Ok(ExitCode::SUCCESS);
            }
            let c = Client::connect(&paths).await?;
            eprintln!("tetherd started (pid {})", c.daemon_pid);
            Ok(ExitCode::SUCCESS)
        }
        DaemonAction::Stop => {
            let pid = stop(&paths).await?;
            match pid {
                Some(pid) => {
                    eprintln!("tetherd (pid {pid}) stopped; sessions resume when it starts again")
                }
                None => eprintln!("tetherd was not running"),
            }
            Ok(ExitCode::SUCCESS)
        }
        DaemonAction::Restart => {
            stop(&paths).await?;
            let c = Client::connect(&paths).await?;
            eprintln!("tetherd restarted (pid {})", c.daemon_pid);
            Ok(ExitCode::SUCCESS)
        }
        DaemonAction::Status { json } => {
            let mut c = Client::connect_existing(&paths).await?;
            let status = c.request::<rpc::DaemonStatus>(NoParams {}).await?;
            if json {
                // Through a JSON value, as the daemon sent it: keys in the same (sorted) order.
                println!("{}", serde_json::to_value(&status).unwrap_or_default());
            } else {
                print_status(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(st: &DaemonStatus) {
    println!("tetherd {} running", st.version);
    println!("  pid         {}", st.pid);
    println!("  socket      {}", st.socket);
    println!("  data        {}", st.data_dir);
    println!("  uptime      {:.1} s", st.uptime_ms as f64 / 1000.0);
    println!(
        "  sessions    {} ({} running)",
        st.sessions, st.running_sessions
    );
    println!("  clients     {}", st.clients);
}

/// Asks the daemon to stop and waits until it has released its socket.
async fn stop(paths: &tether_proto::Paths) -> Result<Option<u32>, ClientError> {
    let mut c = match Client::connect_existing(paths).await {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let pid = c.daemon_pid;
    c.request::<rpc::DaemonShutdown>(NoParams {}).await?;
    // The daemon closes our connection once it has stopped serving.
    while c.next_push().await.is_ok() {}
    if client::is_remote() {
        // Its pid is on another machine; the closed connection is all we can see.
        return Ok(Some(pid));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while process_alive(pid) {
        if std::time::Instant::now() > deadline {
            return Err(ClientError::Unreachable(format!(
                "tetherd (pid {pid}) did not exit within 30 s; `kill {pid}` stops it (sessions stay resumable)"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(Some(pid))
}

/// Alive and not a zombie (an exited daemon may wait a while for its reaper).
fn process_alive(pid: u32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Prints the HTTP API token, starting the daemon first if it never ran (it makes the token).
pub async fn http_token() -> CmdResult {
    let paths = client::paths();
    let file = paths.http_token_file();
    if !file.exists() {
        Client::connect(&paths).await?;
    }
    match std::fs::read_to_string(&file) {
        Ok(t) if !t.trim().is_empty() => {
            println!("{}", t.trim());
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(ClientError::Unreachable(format!(
            "no HTTP token at {}; tetherd makes it when it starts — check `tether doctor`",
            file.display()
        ))),
    }
}
