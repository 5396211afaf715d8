//! What mounting a memory store costs (issue 24): a store of 10,000 memories, attached to a
//! session, until the sandbox's first command sees it. Three parts, each timed:
//! - first sync: the session's copy written from the store (10,000 files);
//! - resync: the check before and after every tool call when nothing changed (a stat scan);
//! - sandbox start with the copy bind-mounted at /mnt/memory/<store>, until a command in it
//!   has counted the files, next to the same start without the mount.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use tether_daemon::orchestration::memory::{self, mount::Syncer};
use tether_daemon::store::Store;
use tether_daemon::store::rows::SessionRow;
use tether_proto::Paths;
use tether_proto::memory::{Access, MemoryStoreSpec, SessionMemory};

pub const MEMORIES: usize = 10_000;

pub struct Sample {
    pub first_sync_ms: f64,
    pub resync_ms: f64,
    pub mounted_start_ms: f64,
    pub plain_start_ms: f64,
}

/// Starts the sandbox on `workspace` with `extra` options and runs `command` in it; returns
/// the time until its output arrived, and the output.
fn sandbox_run(
    tetherd: &Path,
    workspace: &Path,
    extra: &[&str],
    command: &str,
) -> Result<(f64, String)> {
    let t = Instant::now();
    let out = Command::new(tetherd)
        .arg("sandbox-exec")
        .arg(workspace)
        .args(extra)
        .args(["--", "/bin/bash", "-c", command])
        .current_dir(workspace)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .context("tetherd sandbox-exec")?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    ensure!(
        out.status.success(),
        "the sandbox failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((ms, String::from_utf8_lossy(&out.stdout).into_owned()))
}

pub async fn run(tetherd: &Path, runs: usize) -> Result<Vec<Sample>> {
    let home = tempfile::Builder::new().prefix("tbm").tempdir_in("/tmp")?;
    let h = home.path().display().to_string();
    let paths = Paths::resolve(|k| (k == "TETHER_HOME").then(|| h.clone()), 0);
    std::fs::create_dir_all(&paths.data_dir)?;
    let store = Store::open(&paths.db())?;
    let s = memory::create_store(
        &store,
        MemoryStoreSpec {
            name: "Bench".into(),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sid = s.id.clone();
    store
        .write(move |c| {
            let actor = memory::local_user();
            for i in 0..MEMORIES {
                let path = format!("/topic-{:02}/note-{i:05}.md", i % 50);
                let content = format!(
                    "memory {i}: {}\n",
                    "the user prefers short answers. ".repeat(6)
                );
                memory::db::create_memory(c, &sid, &path, &content, &actor)?;
            }
            Ok(())
        })
        .await?;
    let mount = SessionMemory {
        kind: "memory_store".into(),
        memory_store_id: s.id.clone(),
        access: Access::ReadWrite,
        instructions: None,
        name: s.name.clone(),
        description: String::new(),
        mount_path: "/mnt/memory/bench".into(),
    };
    let syncer = Syncer::new(store.clone(), paths.clone());
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs {
        let session = format!("sesn_bench{i:04}");
        let ws = paths.sessions_dir().join(&session).join("workspace");
        std::fs::create_dir_all(&ws)?;
        store
            .create_session(
                SessionRow::new(session.clone(), "m".into(), ws.display().to_string(), 10),
                None,
            )
            .await?;
        let t = Instant::now();
        let notes = syncer
            .sync_one(&session, &mount)
            .await
            .map_err(anyhow::Error::msg)?;
        let first_sync_ms = t.elapsed().as_secs_f64() * 1e3;
        ensure!(notes.is_empty(), "{notes:?}");
        let t = Instant::now();
        syncer
            .sync_one(&session, &mount)
            .await
            .map_err(anyhow::Error::msg)?;
        let resync_ms = t.elapsed().as_secs_f64() * 1e3;
        let copy = memory::mount::copy_dir(&paths, &session, &mount);
        let copy = copy.display().to_string();
        let (mounted_start_ms, listed) = sandbox_run(
            tetherd,
            &ws,
            &["--mount", &copy, "/mnt/memory/bench"],
            "find /mnt/memory/bench -type f | wc -l",
        )?;
        // After the sandbox's READY line.
        let counted = listed.lines().last().unwrap_or("").trim();
        ensure!(
            counted == MEMORIES.to_string(),
            "the sandbox saw {counted} files, not {MEMORIES}"
        );
        let (plain_start_ms, _) = sandbox_run(tetherd, &ws, &[], "find /tmp -type f | wc -l")?;
        out.push(Sample {
            first_sync_ms,
            resync_ms,
            mounted_start_ms,
            plain_start_ms,
        });
    }
    Ok(out)
}
