//! Restart recovery: 100 sessions are mid-turn (each waiting on a model stream the mock holds
//! open) when the daemon is SIGKILLed; the clock runs from starting a new daemon until every
//! session has re-issued its model request, i.e. is running again.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tether_mock_llm::{Block, MockServer, Reply, Script};

use crate::home::{Bins, Home, is_tetherd};

pub const SESSIONS: usize = 100;

/// One sample, in milliseconds.
pub fn once(bins: &Bins, rt: &tokio::runtime::Runtime) -> Result<f64> {
    let stalls = (0..2 * SESSIONS)
        .map(|_| Reply::stall(vec![Block::text("held")]))
        .collect();
    let mock = rt
        .block_on(MockServer::start(Script::sequential(stalls)))
        .context("starting the mock model")?;
    let home = Home::new(bins, &mock.base_url())?;
    home.ok(&["daemon", "start"])?;
    for i in 0..SESSIONS {
        home.ok(&["new", "--detach", "--name", &format!("r{i}"), "go"])?;
    }
    wait_requests(rt, &mock, SESSIONS, "the sessions to reach the model")?;

    let pid = home.running_daemon_pid()?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .context("killing tetherd")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_tetherd(pid) {
        ensure!(Instant::now() < deadline, "tetherd {pid} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(1));
    }

    let start = Instant::now();
    let mut daemon = home
        .tetherd()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting tetherd")?;
    wait_requests(rt, &mock, 2 * SESSIONS, "every session to resume")?;
    let took = start.elapsed();

    mock.release_stalls();
    home.stop_daemon()?;
    let _ = daemon.wait();
    rt.block_on(mock.shutdown());
    Ok(took.as_secs_f64() * 1000.0)
}

fn wait_requests(
    rt: &tokio::runtime::Runtime,
    mock: &MockServer,
    n: usize,
    what: &str,
) -> Result<()> {
    let waited = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), mock.wait_for_requests(n)).await
    });
    ensure!(
        waited.is_ok(),
        "timed out waiting for {what}: the mock saw {} of {n} requests",
        mock.request_count()
    );
    Ok(())
}
