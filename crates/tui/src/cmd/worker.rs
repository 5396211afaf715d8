//! `tether worker --env ENV`: serves a self-hosted environment from this machine. The worker
//! itself is `tetherd worker` (the tools and the sandbox live in the daemon's crate); this
//! resolves where tetherd is and the key, then becomes that process.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use tether_proto::method::{EnvironmentParams, rpc};

use super::{CmdResult, connect, usage};
use crate::client;

/// The tools' network on the worker's machine: none, an allow-list, or public hosts.
pub struct WorkerNetwork {
    pub none: bool,
    pub allow_hosts: Vec<String>,
    pub allow_package_managers: bool,
}

pub async fn run(
    env: String,
    remote: Option<String>,
    key: Option<String>,
    workdir: Option<PathBuf>,
    network: WorkerNetwork,
    once: bool,
) -> CmdResult {
    let key = key
        .or_else(|| std::env::var("TETHER_ENV_KEY").ok())
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            usage(format!(
                "no worker key: pass --key or set TETHER_ENV_KEY (`tether envs key {env}` on tetherd's machine prints it, once; --rotate makes a new one)"
            ))
        })?;
    let (url, env_id) = match remote {
        Some(url) => {
            if !env.starts_with("env_") {
                return Err(usage(format!(
                    "--env {env}: with --url give the environment's id (env_...), as `tether envs ls` on tetherd's machine shows it"
                )));
            }
            (url, env)
        }
        None => {
            let paths = client::paths();
            let addr = std::fs::read_to_string(paths.http_addr_file()).map_err(|_| {
                usage(
                    "the local tetherd does not serve its HTTP API, which workers use: start it with `tetherd --http 127.0.0.1:8470` (or `[http] listen` in config.toml), or point at another with --url URL".into(),
                )
            })?;
            let e = connect()
                .await?
                .request::<rpc::EnvironmentGet>(EnvironmentParams { environment: env })
                .await?;
            (format!("http://{}", addr.trim()), e.id)
        }
    };
    let workdir = match workdir {
        Some(w) => w,
        None => std::env::current_dir().map_err(|e| {
            usage(format!(
                "cannot read the current directory ({e}); pass --workdir"
            ))
        })?,
    };
    let mut cmd = std::process::Command::new(crate::transport::daemon_binary());
    cmd.arg("worker")
        .args(["--url", &url, "--env", &env_id])
        .arg("--workdir")
        .arg(&workdir)
        .env("TETHER_ENV_KEY", key.trim());
    if network.none {
        cmd.arg("--no-network");
    }
    for h in &network.allow_hosts {
        cmd.args(["--allow-host", h]);
    }
    if network.allow_package_managers {
        cmd.arg("--allow-package-managers");
    }
    if once {
        cmd.arg("--once");
    }
    eprintln!(
        "tether worker: serving {env_id} of {url} in {}",
        workdir.display()
    );
    let err = cmd.exec();
    Err(usage(format!(
        "cannot run `{}`: {err}; put tetherd next to tether or on PATH, or set TETHER_DAEMON_BIN",
        crate::transport::daemon_binary().display()
    )))
}
