//! `tether envs ...`: environment files in, environments and live build progress out.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use serde_json::Value;
use tether_proto::environment::{
    BuildProgress, BuildStatus, Environment, EnvironmentChanges, EnvironmentConfig,
    EnvironmentSpec, Networking, Packages,
};
use tether_proto::method::{EnvironmentParams, ListEnvironments, UpdateEnvironment, Watching, rpc};
use tether_proto::work::{EnvironmentKey, EnvironmentKeyParams, EnvironmentWorkers};
use tether_proto::{ErrorBody, ErrorCode, ServerFrame};

use super::{CmdResult, connect, usage};
use crate::cli::EnvsAction;
use crate::client::{Client, ClientError};

/// Output lines the live display keeps under the step line.
const LIVE_LINES: usize = 6;

pub async fn run(action: EnvsAction) -> CmdResult {
    let reference = match &action {
        EnvsAction::Show { env, .. }
        | EnvsAction::Key { env, .. }
        | EnvsAction::Update { env, .. }
        | EnvsAction::Rm { env }
        | EnvsAction::Rebuild { env, .. } => Some(env.clone()),
        _ => None,
    };
    if let Some(reference) = reference {
        super::names::note_shared_environment_name(&mut connect().await?, &reference).await;
    }
    match action {
        EnvsAction::Create {
            file,
            name,
            self_hosted,
            no_wait,
            json,
        } => {
            let spec: EnvironmentSpec = match (file, name) {
                (Some(file), _) => read_file(&file)?,
                (None, Some(name)) if self_hosted => EnvironmentSpec {
                    name,
                    config: EnvironmentConfig::SelfHosted {},
                    ..EnvironmentSpec::default()
                },
                _ => {
                    return Err(usage(
                        "give a spec file (-f FILE) or a name with --self-hosted".into(),
                    ));
                }
            };
            let mut c = connect().await?;
            let env = c.request::<rpc::EnvironmentCreate>(spec).await?;
            if env.spec.config.is_self_hosted() {
                let key = c
                    .request::<rpc::EnvironmentKeyGet>(EnvironmentKeyParams {
                        environment: env.id.clone(),
                        rotate: false,
                    })
                    .await?;
                print_key(&env.spec.name, &key, json);
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                println!("created environment {} ({})", env.spec.name, env.id);
            }
            if no_wait {
                print_json(&env, json);
                return Ok(ExitCode::SUCCESS);
            }
            return follow(&mut c, env.id, json).await;
        }
        EnvsAction::Ls { all, json } => {
            let page = connect()
                .await?
                .request::<rpc::EnvironmentList>(ListEnvironments { all })
                .await?;
            if json {
                for e in &page.data {
                    println!("{}", serde_json::to_string(e).unwrap_or_default());
                }
            } else {
                println!(
                    "{:<20} {:<12} {:<28} {:<9} ID",
                    "NAME", "NETWORK", "PACKAGES", "BUILD"
                );
                for e in &page.data {
                    println!(
                        "{:<20} {:<12} {:<28} {:<9} {}{}",
                        e.spec.name,
                        network_of(e),
                        packages_of(e.spec.config.packages()),
                        build_of(e),
                        e.id,
                        if e.archived_at.is_some() {
                            "  (archived)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        EnvsAction::Show { env, json } => {
            let mut c = connect().await?;
            let e = c.request::<rpc::EnvironmentGet>(p(env)).await?;
            let workers = if e.spec.config.is_self_hosted() {
                Some(
                    c.request::<rpc::EnvironmentWorkersGet>(p(e.id.clone()))
                        .await?,
                )
            } else {
                None
            };
            if json {
                let mut v = serde_json::to_value(&e).unwrap_or_default();
                if let (Some(w), Value::Object(m)) = (&workers, &mut v) {
                    m.insert(
                        "workers".into(),
                        serde_json::to_value(w).unwrap_or_default(),
                    );
                }
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", serde_norway::to_string(&e).unwrap_or_default());
                if let Some(w) = workers {
                    print_workers(&w);
                }
            }
        }
        EnvsAction::Key { env, rotate, json } => {
            let mut c = connect().await?;
            let e = c.request::<rpc::EnvironmentGet>(p(env.clone())).await?;
            let key = c
                .request::<rpc::EnvironmentKeyGet>(EnvironmentKeyParams {
                    environment: e.id.clone(),
                    rotate,
                })
                .await?;
            print_key(&e.spec.name, &key, json);
        }
        EnvsAction::Update { env, file, json } => {
            let changes: EnvironmentChanges = read_file(&file)?;
            let mut c = connect().await?;
            let e = c
                .request::<rpc::EnvironmentUpdate>(UpdateEnvironment {
                    environment: env,
                    changes,
                })
                .await?;
            if !json {
                println!("updated environment {} ({})", e.spec.name, e.id);
            }
            return follow(&mut c, e.id, json).await;
        }
        EnvsAction::Rm { env } => {
            let deleted = connect()
                .await?
                .request::<rpc::EnvironmentDelete>(p(env.clone()))
                .await?;
            println!("deleted environment {env} ({})", deleted.id);
        }
        EnvsAction::Rebuild { env, json } => {
            let mut c = connect().await?;
            let e = c.request::<rpc::EnvironmentRebuild>(p(env)).await?;
            if !json {
                println!("rebuilding environment {} ({})", e.spec.name, e.id);
            }
            return follow(&mut c, e.id, json).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The key, once, with how to use it; or where it went if it was made before.
fn print_key(name: &str, key: &EnvironmentKey, json: bool) {
    if json {
        println!("{}", serde_json::to_string(key).unwrap_or_default());
        return;
    }
    match &key.key {
        Some(k) => {
            println!(
                "worker key of self-hosted environment {name} ({}):",
                key.environment_id
            );
            println!("  {k}");
            println!("It is shown only now (tetherd keeps its hash). Run a worker with it:");
            println!(
                "  tether worker --env {} --remote http://HOST:PORT --key {k}",
                key.environment_id
            );
            println!(
                "or the SDK's: client.beta.environments.work.worker(environment_id=..., environment_key=...).run()"
            );
        }
        None => {
            println!(
                "environment {name} ({}) has a worker key, made {}; it was shown when it was made and is not kept. `tether envs key {name} --rotate` makes a new one (the old one stops working).",
                key.environment_id, key.created_at
            );
        }
    }
}

fn print_workers(w: &EnvironmentWorkers) {
    println!(
        "workers: {} seen since tetherd started; {} item(s) queued, {} in flight{}",
        w.workers.len(),
        w.queued,
        w.in_flight,
        if w.has_key {
            ""
        } else {
            " (no worker key yet: `tether envs key ENV`)"
        }
    );
    if !w.workers.is_empty() {
        println!(
            "  {:<24} {:<32} {:<26} IN FLIGHT",
            "HOST", "WORKER", "LAST HEARTBEAT"
        );
        for s in &w.workers {
            println!(
                "  {:<24} {:<32} {:<26} {}",
                s.host, s.worker_id, s.last_seen_at, s.in_flight
            );
        }
    }
}

fn p(environment: String) -> EnvironmentParams {
    EnvironmentParams { environment }
}

fn print_json(e: &Environment, json: bool) {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
    }
}

/// Follows the environment's build to its end: a live display on a terminal, plain lines
/// otherwise (`--json`: progress pushes as JSON lines, then the environment). Exit code 1
/// when the build fails.
async fn follow(c: &mut Client, env_id: String, json: bool) -> CmdResult {
    let mut display = Display::new(json);
    let (w, failure) = watch(c, &env_id, &mut display).await?;
    // The final state, with the layer and log paths.
    let e = if w.watching {
        c.request::<rpc::EnvironmentGet>(p(env_id)).await?
    } else {
        w.environment
    };
    let build = e.build.clone();
    if json {
        print_json(&e, true);
    } else if let Some(b) = &build {
        match b.status {
            BuildStatus::Empty => println!("nothing to build: no packages, no setup_commands"),
            BuildStatus::Ready => {
                println!("built: layer {}", b.layer.as_deref().unwrap_or("(unknown)"))
            }
            _ => {}
        }
        if let Some(log) = &b.log {
            println!("build log: {log}");
        }
    }
    let failure = failure.or_else(|| {
        build
            .filter(|b| b.status == BuildStatus::Failed)
            .and_then(|b| b.error)
    });
    match failure {
        Some(error) => {
            eprintln!(
                "tether: environment `{}` failed to build: {error}",
                e.spec.name
            );
            Ok(ExitCode::from(1))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Follows the environment's build (starting it if its layer was never built) until it ends;
/// returns the watch reply and the failure, if the build failed.
async fn watch(
    c: &mut Client,
    env: &str,
    display: &mut Display,
) -> Result<(Watching, Option<String>), ClientError> {
    let w = c
        .request::<rpc::EnvironmentWatch>(p(env.to_string()))
        .await?;
    let mut failure = None;
    if w.watching {
        loop {
            match c.next_push().await? {
                ServerFrame::Build(b) if b.environment_id == w.environment.id => {
                    display.show(&b);
                    match b.status {
                        BuildStatus::Ready => break,
                        BuildStatus::Failed => {
                            failure = b.error.clone();
                            break;
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        display.finish();
    }
    Ok((w, failure))
}

/// Before a session is created in `env`: shows its layer's build on stderr if one is needed,
/// so `tether new --env X` is not a silent wait. A failed build is the error.
pub async fn prepare(c: &mut Client, env: &str) -> Result<(), ClientError> {
    let mut display = Display::on_stderr();
    let (w, failure) = watch(c, env, &mut display).await?;
    match failure {
        Some(e) => Err(ClientError::Daemon(ErrorBody::new(
            ErrorCode::Conflict,
            format!(
                "environment `{}` failed to build: {e}\n(fix it and run `tether envs rebuild {}`)",
                w.environment.spec.name, w.environment.spec.name
            ),
        ))),
        None => Ok(()),
    }
}

/// Build progress on screen: on a terminal, the step line and the last output lines redrawn
/// in place; elsewhere every line once.
struct Display {
    json: bool,
    live: bool,
    to_stderr: bool,
    step: u32,
    lines: Vec<String>,
    drawn: usize,
}

impl Display {
    fn new(json: bool) -> Display {
        Display {
            json,
            live: !json && std::io::stdout().is_terminal(),
            to_stderr: false,
            step: 0,
            lines: Vec::new(),
            drawn: 0,
        }
    }

    /// Progress on stderr, for commands whose stdout is something else (`tether run`).
    fn on_stderr() -> Display {
        Display {
            live: std::io::stderr().is_terminal(),
            to_stderr: true,
            ..Display::new(false)
        }
    }

    fn out(&self) -> Box<dyn Write> {
        if self.to_stderr {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        }
    }

    fn show(&mut self, b: &BuildProgress) {
        let mut out = self.out();
        if self.json {
            let _ = writeln!(out, "{}", serde_json::to_string(b).unwrap_or_default());
            return;
        }
        let new_step = b.step != self.step && b.step > 0;
        if new_step {
            self.step = b.step;
            self.lines.clear();
        }
        if !self.live {
            if new_step {
                let _ = writeln!(out, "==> [{}/{}] {}", b.step, b.steps, b.label);
            }
            for l in &b.lines {
                let _ = writeln!(out, "    {l}");
            }
            return;
        }
        // Blank lines waste the few rows the live view has.
        self.lines
            .extend(b.lines.iter().filter(|l| !l.trim().is_empty()).cloned());
        let over = self.lines.len().saturating_sub(LIVE_LINES);
        self.lines.drain(..over);
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A\x1b[J", self.drawn);
        }
        let width = terminal_width();
        let _ = writeln!(out, "\x1b[1m[{}/{}] {}\x1b[0m", b.step, b.steps, b.label);
        for l in &self.lines {
            let clipped: String = l.chars().take(width.saturating_sub(4)).collect();
            let _ = writeln!(out, "\x1b[2m    {clipped}\x1b[0m");
        }
        self.drawn = 1 + self.lines.len();
        let _ = out.flush();
    }

    /// Leaves the last step's line and output on screen.
    fn finish(&mut self) {
        self.drawn = 0;
    }
}

fn terminal_width() -> usize {
    // A pty with no size set (e.g. under `script`) reports 0.
    match crossterm::terminal::size() {
        Ok((w, _)) if w >= 20 => w as usize,
        _ => 100,
    }
}

fn network_of(e: &Environment) -> &'static str {
    if e.spec.config.is_self_hosted() {
        return "self-hosted";
    }
    match e.spec.config.networking() {
        Networking::Unrestricted => "unrestricted",
        Networking::Limited { .. } => "limited",
        Networking::None => "none",
    }
}

fn packages_of(p: &Packages) -> String {
    let parts: Vec<String> = p
        .by_manager()
        .iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(m, list)| format!("{m}:{}", list.len()))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn build_of(e: &Environment) -> &'static str {
    match e.build.as_ref().map(|b| b.status) {
        Some(BuildStatus::Empty) | None => "-",
        Some(BuildStatus::Pending) => "pending",
        Some(BuildStatus::Building) => "building",
        Some(BuildStatus::Ready) => "ready",
        Some(BuildStatus::Failed) => "FAILED",
    }
}

fn read_file<T: serde::de::DeserializeOwned>(path: &str) -> Result<T, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read the environment file {path}: {e}")))?;
    parse(path, &text).map_err(usage)
}

fn parse<T: serde::de::DeserializeOwned>(path: &str, text: &str) -> Result<T, String> {
    super::spec_file::parse_with(path, text, locate_in_config)
}

/// `config` is tagged by `type`, so serde reports errors inside it at `config`; this finds the
/// part that fails, e.g. `config.packages: unknown field `pipx``.
fn locate_in_config(v: &Value) -> Option<String> {
    fn check<T: serde::de::DeserializeOwned>(at: &str, v: Option<&Value>) -> Option<String> {
        serde_json::from_value::<T>(v?.clone())
            .err()
            .map(|e| format!("{at}: {e}"))
    }
    let config = v.get("config")?;
    check::<Packages>("config.packages", config.get("packages"))
        .or_else(|| check::<Networking>("config.networking", config.get("networking")))
        .or_else(|| check::<Vec<String>>("config.setup_commands", config.get("setup_commands")))
        .or_else(|| check::<tether_proto::environment::EnvironmentConfig>("config", Some(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_environment_reads_from_yaml_json_and_toml() {
        let y: EnvironmentSpec = parse(
            "e.yaml",
            "name: py\nconfig:\n  type: cloud\n  networking: {type: unrestricted}\n  packages:\n    pip: [six==1.16.0]\n  setup_commands: [\"echo hi\"]\n",
        )
        .unwrap();
        assert_eq!(y.config.packages().pip, ["six==1.16.0"]);
        let j: EnvironmentSpec = parse("e.json", &serde_json::to_string(&y).unwrap()).unwrap();
        let t: EnvironmentSpec = parse(
            "e.toml",
            "name = \"py\"\n[config]\ntype = \"cloud\"\nsetup_commands = [\"echo hi\"]\n[config.networking]\ntype = \"unrestricted\"\n[config.packages]\npip = [\"six==1.16.0\"]\n",
        )
        .unwrap();
        assert_eq!(y, j);
        assert_eq!(y, t);
    }

    #[test]
    fn bad_files_point_at_the_field() {
        let e = parse::<EnvironmentSpec>(
            "e.yaml",
            "name: x\nconfig:\n  type: cloud\n  packages:\n    pipx: [a]\n",
        )
        .unwrap_err();
        assert!(e.contains("config.packages: unknown field `pipx`"), "{e}");
        let e = parse::<EnvironmentSpec>(
            "e.yaml",
            "name: x\nconfig:\n  type: cloud\n  networking: {type: limited, allowed_hosts: pypi.org}\n",
        )
        .unwrap_err();
        assert!(e.contains("config.networking: invalid type"), "{e}");
        let e = parse::<EnvironmentSpec>("e.yaml", "name: x\nconfg: {}\n").unwrap_err();
        assert!(e.contains("unknown field `confg`"), "{e}");
        let e =
            parse::<EnvironmentSpec>("e.yaml", "name: x\nconfig: {type: docker}\n").unwrap_err();
        assert!(e.contains("config: unknown variant `docker`"), "{e}");
    }
}
