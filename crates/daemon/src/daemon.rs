//! The daemon process: runtime dir, start lock, socket, pid file, signals, graceful stop.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use tether_proto::Paths;

use crate::config::Config;
use crate::runtime::Runtime;
use crate::store::Store;

/// Exit code when another tetherd already holds the start lock.
pub const EXIT_ALREADY_RUNNING: i32 = 75;

/// Holds the start lock for the life of the daemon.
pub struct StartLock {
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "tetherd is already running (pid {pid}); `tether daemon status` shows it, `tether daemon stop` stops it"
)]
pub struct AlreadyRunning {
    pub pid: String,
}

/// Creates the runtime dir with mode 0700 (fixing the mode if it is looser).
pub fn prepare_runtime_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the runtime directory {}", dir.display()))?;
    let meta = std::fs::metadata(dir)?;
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        bail!(
            "the runtime directory {} belongs to another user (uid {}); set XDG_RUNTIME_DIR or TETHER_HOME to a directory you own",
            dir.display(),
            meta.uid()
        );
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// How long a start waits for the lock of a daemon that is already dead (see below).
const DEAD_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Takes the start lock so two racing starts yield one daemon.
///
/// A daemon killed while it was starting a process leaves that child holding a copy of the
/// lock (and of the listening socket) until the child's `exec` closes them: a few ms, longer
/// on a loaded host. A start in that window would wrongly say "already running" (and a
/// client could reach the dead daemon's socket), so while the pid file names a process that
/// no longer exists the start waits for the lock, up to [`DEAD_HOLDER_WAIT`].
pub fn take_start_lock(paths: &Paths) -> anyhow::Result<StartLock> {
    take_start_lock_waiting(paths, || {
        std::thread::sleep(std::time::Duration::from_millis(10))
    })
}

/// [`take_start_lock`] with what to do between two tries (tests release the lock there).
fn take_start_lock_waiting(
    paths: &Paths,
    mut between_tries: impl FnMut(),
) -> anyhow::Result<StartLock> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(paths.lock_file())
        .with_context(|| format!("cannot open {}", paths.lock_file().display()))?;
    let deadline = std::time::Instant::now() + DEAD_HOLDER_WAIT;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(StartLock { _lock: lock }),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                let pid = std::fs::read_to_string(paths.pid_file())
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "unknown".into());
                if !names_dead_process(&pid) || std::time::Instant::now() >= deadline {
                    return Err(AlreadyRunning { pid }.into());
                }
                tracing::debug!(pid, "the start lock outlives its dead daemon; waiting");
                between_tries();
                file = f;
            }
            Err((_, e)) => {
                return Err(anyhow::anyhow!(
                    "cannot lock {}: {e}",
                    paths.lock_file().display()
                ));
            }
        }
    }
}

/// Whether `pid` (the pid file's text) names a process that does not exist.
fn names_dead_process(pid: &str) -> bool {
    pid.parse::<i32>().is_ok_and(|p| {
        p > 0
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None)
                == Err(nix::errno::Errno::ESRCH)
    })
}

/// Binds the socket (mode 0600), replacing a stale one left by a dead daemon.
pub fn bind_socket(paths: &Paths) -> anyhow::Result<tokio::net::UnixListener> {
    let path = paths.socket();
    if path.exists() {
        // We hold the start lock, so nobody is serving it: it is stale.
        tracing::info!(socket = %path.display(), "removing a stale socket");
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub fn write_pid_file(paths: &Paths) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(paths.pid_file())?;
    writeln!(f, "{}", std::process::id())?;
    Ok(())
}

/// Runs the daemon until a signal or `daemon.shutdown`.
pub async fn run(paths: Paths, _lock: StartLock, http: Option<String>) -> anyhow::Result<()> {
    let config = Config::load(&paths.config_file())?;
    // Made on every first start, so `tether http-token` works before the API is turned on.
    let token = crate::http::token::load_or_create(&paths.http_token_file())?;
    let http_listener = match http.or(config.http.listen.clone()) {
        Some(listen) => {
            let addr = crate::http::listen_addr(&listen, config.http.allow_remote)?;
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen for HTTP on {addr}; is another program using the port?")
            })?;
            Some(l)
        }
        None => None,
    };
    let store = Store::open(&paths.db())?;
    crate::resources::agents::ensure_default(&store)
        .await
        .context("cannot create the built-in default agent")?;
    crate::resources::environments::ensure_default(&store)
        .await
        .context("cannot create the built-in default environment")?;
    let listener = bind_socket(&paths)?;
    write_pid_file(&paths)?;
    let rt = Runtime::new(store, paths.clone(), config);
    crate::orchestration::threads::Threads::install(&rt);
    let _ = rt
        .memory_sync
        .set(crate::orchestration::memory::mount::Syncer::new(
            rt.store.clone(),
            paths.clone(),
        ));
    rt.builds.remove_leftovers();
    // Uploads a crash interrupted, and blobs nothing names any more (issue 25).
    match crate::resources::files::sweep(&rt.store, &paths).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed file blobs nothing names"),
        Err(e) => tracing::warn!(error = %e, "cannot sweep the file blobs"),
    }
    // Probe the host's sandboxing now (a few ms, off the async threads), not at the first call.
    tokio::task::spawn_blocking(|| {
        crate::sandbox::support::this_host();
    });
    // Before recovery: a resumed self-hosted session queues its work on it.
    if let Err(e) = crate::orchestration::workers::WorkQueue::start(&rt).await {
        tracing::error!(error = %e, "self-hosted work queues are not served");
    }
    match rt.recover().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(resumed = n, "resumed running sessions"),
        Err(e) => tracing::error!(error = %e, "recovery failed"),
    }
    // Workflow runs that were running go on (their threads resumed above).
    match crate::orchestration::workflows::recover(&rt).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(resumed = n, "resumed running workflow runs"),
        Err(e) => tracing::error!(error = %e, "workflow run recovery failed"),
    }
    // Deployments: finish the fires a crash interrupted, then sleep until the next one.
    crate::orchestration::schedules::Scheduler::start(
        rt.clone(),
        Arc::new(crate::orchestration::schedules::clock::SystemClock),
    );
    // Webhooks: deliveries a crash left pending go out first (same webhook-id).
    crate::webhooks::start(
        &rt.store,
        &rt.config.webhooks,
        Arc::new(crate::orchestration::schedules::clock::SystemClock),
        rt.shutdown.clone(),
    )
    .await
    .context("cannot start webhooks")?;
    tracing::info!(socket = %paths.socket().display(), pid = std::process::id(), "tetherd ready");
    let server = tokio::spawn(crate::server::serve(listener, rt.clone()));
    let http_server = match http_listener {
        Some(l) => {
            let addr = l.local_addr()?;
            crate::private::file_options()
                .create(true)
                .truncate(true)
                .write(true)
                .open(paths.http_addr_file())
                .and_then(|mut f| f.write_all(format!("{addr}\n").as_bytes()))
                .with_context(|| format!("cannot write {}", paths.http_addr_file().display()))?;
            tracing::info!(%addr, "HTTP API listening");
            Some(tokio::spawn(crate::http::serve(l, rt.clone(), token)))
        }
        None => {
            let _ = std::fs::remove_file(paths.http_addr_file());
            None
        }
    };
    // Build the model client off the accept path so the first connection isn't kept waiting.
    let warm = rt.clone();
    tokio::task::spawn_blocking(move || {
        for status in warm.provider_statuses() {
            if !status.ready {
                tracing::warn!("{}: {}", status.name, status.detail);
            }
        }
    });
    wait_for_stop(&rt).await;
    tracing::info!("stopping: sessions stay resumable");
    rt.shutdown.cancel();
    let _ = std::fs::remove_file(paths.socket());
    let _ = server.await;
    if let Some(h) = http_server {
        let _ = h.await;
        let _ = std::fs::remove_file(paths.http_addr_file());
    }
    for s in rt.loaded_sessions() {
        s.halt().await;
    }
    if let Err(e) = rt.store.checkpoint().await {
        tracing::warn!(error = %e, "could not checkpoint the event log (harmless: replayed next start)");
    }
    let _ = std::fs::remove_file(paths.pid_file());
    tracing::info!("tetherd stopped");
    Ok(())
}

async fn wait_for_stop(rt: &Arc<Runtime>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            rt.shutdown.cancelled().await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); return; }
            _ = int.recv() => { tracing::info!("SIGINT"); return; }
            // A lost terminal must not stop the agents.
            _ = hup.recv() => { tracing::info!("ignoring SIGHUP"); }
            _ = rt.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        let home = dir.display().to_string();
        Paths::resolve(
            |k| (k == "TETHER_HOME").then(|| home.clone()),
            nix::unistd::geteuid().as_raw(),
        )
    }

    fn hold(paths: &Paths) -> Flock<File> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(paths.lock_file())
            .unwrap();
        Flock::lock(f, FlockArg::LockExclusiveNonblock).unwrap()
    }

    /// A live holder (this test's process in the pid file) means "already running" at once.
    #[test]
    fn a_live_daemon_holding_the_lock_is_already_running() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        std::fs::create_dir_all(&p.runtime_dir).unwrap();
        let _held = hold(&p);
        std::fs::write(p.pid_file(), format!("{}\n", std::process::id())).unwrap();
        let err = take_start_lock(&p).err().unwrap();
        assert!(err.downcast_ref::<AlreadyRunning>().is_some(), "{err:#}");
    }

    /// The lock outliving its dead daemon (a child of it still holds a copy) is waited for.
    #[test]
    fn a_lock_outliving_its_dead_daemon_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        std::fs::create_dir_all(&p.runtime_dir).unwrap();
        let mut held = Some(hold(&p));
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        dead.wait().unwrap();
        std::fs::write(p.pid_file(), format!("{}\n", dead.id())).unwrap();
        let mut tries = 0;
        // The first try fails while the lock is held; then the holder "execs" and lets go.
        let lock = take_start_lock_waiting(&p, || {
            tries += 1;
            held.take();
        });
        assert!(lock.is_ok(), "{:#}", lock.err().unwrap());
        assert_eq!(tries, 1);
    }
}
