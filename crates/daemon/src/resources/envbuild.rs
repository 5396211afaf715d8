//! Environment layers: building an environment's packages and setup commands once into
//! `data/envs/<hash>/`, keyed by a hash of what goes into it, and sharing it read-only with
//! every session of that environment (mounted at [`LAYER_MOUNT`], bin dirs on PATH).
//!
//! A build runs each step (one package, or one setup command) in its own sandbox with the
//! layer mounted writable at the same path sessions see it, so absolute paths written by
//! installers (shebangs, npm bin links) stay valid. It builds into a temp directory renamed
//! into place only when every step succeeded: a failed or interrupted build leaves nothing.
//!
//! apt packages are not installed (that needs root and writes all over `/`): the build asks
//! apt which of the package and its dependencies the host lacks (`apt-get -s install`, against
//! a private copy of the host's apt config, package lists and dpkg status), downloads those
//! (`apt-get download`) and unpacks them with `dpkg-deb -x` into `<layer>/apt`; sessions get
//! its bin dirs on PATH and its lib dirs on LD_LIBRARY_PATH. Maintainer scripts do not run, so
//! packages that need them (services, alternatives, generated files) may not work; tools and
//! libraries do.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tether_proto::environment::{
    BuildInfo, BuildProgress, BuildStatus, EnvironmentConfig, LAYER_MOUNT,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, watch};

use crate::sandbox::{self, Sandbox};

/// Bumped when the layer layout or the install commands change, so old layers are not reused.
const LAYOUT_VERSION: &str = "tether-env-layer-v1";
/// Output lines kept for a failure's message.
const TAIL_LINES: usize = 20;
/// One step may take this long before the build fails (a compile of a big crate fits).
const STEP_LIMIT: Duration = Duration::from_secs(30 * 60);
/// Trust settings a build step inherits from the daemon, so installers trust the same CAs as
/// the host (e.g. a TLS-inspecting proxy's CA for Node, which ignores the system store).
const CA_VARS: [&str; 7] = [
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];
/// Directories of the host the sandbox sees; a package manager elsewhere can't run in it.
const SANDBOX_VISIBLE: [&str; 3] = ["/usr/", "/bin/", "/sbin/"];

/// The hash naming a config's layer: only what changes the layer's content counts (the network
/// policy does not), so changing networking reuses the layer.
pub fn layer_hash(config: &EnvironmentConfig) -> String {
    let inputs = serde_json::json!({
        "layout": LAYOUT_VERSION,
        "packages": config.packages().by_manager(),
        "setup_commands": config.setup_commands(),
    });
    let digest = ring::digest::digest(&ring::digest::SHA256, inputs.to_string().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies what apt reads on the host (its config, package lists and the dpkg status) into
/// `home/apt` and writes an `apt.conf` pointing there, so apt runs unprivileged inside the
/// build sandbox (which sees none of /etc/apt and /var/lib) and writes only there. Files the
/// daemon can't read (e.g. root-only auth.conf.d entries) are skipped.
fn prepare_apt(home: &Path) -> Result<(), String> {
    let apt = home.join("apt");
    if !Path::new("/etc/apt").is_dir() {
        return Err(
            "config.packages.apt: this host has no /etc/apt; apt packages need a Debian or \
             Ubuntu host (list the tools under another package manager, or fetch them in \
             setup_commands)"
                .into(),
        );
    }
    copy_tree(Path::new("/etc/apt"), &apt.join("etc"))?;
    copy_tree(Path::new("/var/lib/apt/lists"), &apt.join("lists"))?;
    for d in ["lists/partial", "cache/archives/partial", "state"] {
        std::fs::create_dir_all(apt.join(d))
            .map_err(|e| format!("cannot create {}: {e}", apt.join(d).display()))?;
    }
    let status = apt.join("status");
    if let Err(e) = std::fs::copy("/var/lib/dpkg/status", &status) {
        tracing::warn!(error = %e, "no dpkg status to copy: every dependency will be unpacked");
        std::fs::write(&status, "")
            .map_err(|e| format!("cannot write {}: {e}", status.display()))?;
    }
    let a = apt.display();
    let conf = format!(
        "Dir::Etc \"{a}/etc\";\nDir::State \"{a}/state\";\nDir::State::Lists \"{a}/lists\";\n\
         Dir::State::status \"{a}/status\";\nDir::Cache \"{a}/cache\";\n\
         Debug::NoLocking \"true\";\nAPT::Sandbox::User \"root\";\n"
    );
    std::fs::write(apt.join("apt.conf"), conf).map_err(|e| format!("cannot write apt.conf: {e}"))
}

/// Copies regular files and directories under `from` to `to`; unreadable entries and
/// anything else (sockets, lock files' special cases) are skipped.
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        match std::fs::metadata(&src) {
            Ok(m) if m.is_dir() => copy_tree(&src, &dst)?,
            Ok(m) if m.is_file() => {
                if let Err(e) = std::fs::copy(&src, &dst) {
                    tracing::debug!(file = %src.display(), error = %e, "not copied for apt");
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One step of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    /// `pip six==1.16.0`, `setup: make install`.
    label: String,
    script: String,
}

/// A package manager on the host: where it is, or why it can't be used.
fn find_manager(manager: &str, path_var: &str) -> Result<PathBuf, String> {
    let (names, install): (&[&str], &str) = match manager {
        "pip" => (&["pip3", "pip"], "`sudo apt install python3-pip`"),
        "npm" => (&["npm"], "`sudo apt install npm`"),
        "cargo" => (&["cargo"], "`sudo apt install cargo`"),
        "go" => (&["go"], "`sudo apt install golang-go`"),
        "gem" => (&["gem"], "`sudo apt install ruby`"),
        "apt" => (
            &["apt-get"],
            "nothing: apt-get comes with Debian and Ubuntu (on other systems list the tools \
             under another package manager, or fetch them in setup_commands)",
        ),
        "dpkg-deb" => (
            &["dpkg-deb"],
            "`sudo apt install dpkg` (tether unpacks apt packages with it)",
        ),
        other => return Err(format!("unknown package manager `{other}`")),
    };
    let mut outside = None;
    for dir in path_var.split(':').filter(|d| d.starts_with('/')) {
        for name in names {
            let p = Path::new(dir).join(name);
            if !is_executable(&p) {
                continue;
            }
            // Resolve shims like /usr/bin/pip -> /etc/alternatives/... only as far as "is it
            // under a directory the sandbox mounts": the sandbox runs the same path.
            let visible = SANDBOX_VISIBLE
                .iter()
                .any(|v| dir.starts_with(v.trim_end_matches('/')));
            if visible {
                return Ok(p);
            }
            outside.get_or_insert(p);
        }
    }
    Err(match outside {
        Some(p) => format!(
            "{manager} was found at {}, outside what the build sandbox can see (/usr, /bin, /sbin); \
             install it system-wide, e.g. {install}, and run `tether envs rebuild`",
            p.display()
        ),
        None => format!(
            "{manager} is not installed on this host (looked for {} on tetherd's PATH {path_var}); \
             install it, e.g. {install}, then run `tether envs rebuild`",
            names.join(", ")
        ),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Single-quotes `s` for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The steps of a build, or why it can't start (a package manager missing on the host).
fn plan(config: &EnvironmentConfig, path_var: &str) -> Result<Vec<Step>, String> {
    let l = LAYER_MOUNT;
    let mut steps = Vec::new();
    for (manager, packages) in config.packages().by_manager() {
        if packages.is_empty() {
            continue;
        }
        let bin = find_manager(manager, path_var)?;
        let bin = quote(&bin.to_string_lossy());
        let dpkg_deb = if manager == "apt" {
            quote(&find_manager("dpkg-deb", path_var)?.to_string_lossy())
        } else {
            String::new()
        };
        for pkg in packages {
            let q = quote(pkg);
            let script = match manager {
                "apt" => apt_script(&bin, &dpkg_deb, pkg),
                "cargo" => format!("{bin} install --root {l} {q}"),
                "gem" => format!(
                    "{bin} install --no-document --install-dir {l}/gem --bindir {l}/bin {q}"
                ),
                "go" => {
                    let p = if pkg.contains('@') {
                        q
                    } else {
                        quote(&format!("{pkg}@latest"))
                    };
                    format!("GOBIN={l}/bin {bin} install {p}")
                }
                "npm" => format!("{bin} install --no-audit --no-fund --prefix {l}/node {q}"),
                "pip" => format!(
                    "{bin} install --no-warn-script-location --disable-pip-version-check --target {l}/python {q}"
                ),
                _ => return Err(format!("unknown package manager `{manager}`")),
            };
            steps.push(Step {
                label: format!("{manager} {pkg}"),
                script,
            });
        }
    }
    for cmd in config.setup_commands() {
        steps.push(Step {
            label: format!("setup: {cmd}"),
            script: format!("cd {l}\n{cmd}"),
        });
    }
    Ok(steps)
}

/// Downloads `pkg` (apt syntax: `name` or `name=version`) and the dependencies the host lacks,
/// and unpacks them into the layer. Runs with `APT_CONFIG` pointing at [`prepare_apt`]'s copy.
fn apt_script(apt_get: &str, dpkg_deb: &str, pkg: &str) -> String {
    let l = LAYER_MOUNT;
    let q = quote(pkg);
    format!(
        r#"set -o pipefail
lists="$(dirname "$APT_CONFIG")/lists"
if ! ls "$lists"/*_Packages* >/dev/null 2>&1; then
  echo "this host has no apt package lists; fetching them"
  {apt_get} update
fi
cd "$(mktemp -d)"
missing=$({apt_get} -s -qq install --no-install-recommends {q} | awk '/^Inst /{{i=3; if ($3 ~ /^\[/) i=4; v=$i; sub(/^\(/, "", v); print $2 "=" v}}')
if [ -z "$missing" ]; then
  echo {done}
  exit 0
fi
echo "downloading:" $missing
if ! {apt_get} download $missing; then
  echo "apt-get download failed; if it says 404, the host's package lists are stale: run 'sudo apt-get update' on the host, then 'tether envs rebuild'"
  exit 1
fi
for deb in ./*.deb; do
  echo "unpacking $deb"
  {dpkg_deb} -x "$deb" {l}/apt
done"#,
        done = quote(&format!(
            "{pkg} and its dependencies are installed on the host already (sessions see its /usr)"
        )),
    )
}

/// A build in progress: its latest progress and a feed of the following ones.
struct Running {
    last: Mutex<BuildProgress>,
    tx: broadcast::Sender<BuildProgress>,
    /// Some(result) once finished.
    done: watch::Receiver<Option<Result<(), String>>>,
}

/// Every build of this daemon; builds of the same hash are shared.
/// The network of one build.
enum BuildNet {
    /// The host's own (unrestricted environments).
    Host,
    /// Through a proxy enforcing the environment's allow-list (limited).
    Proxy(crate::net::SessionNet),
    /// None at all.
    Off,
}

pub struct Builds {
    dir: PathBuf,
    /// None: this process's, probed at the first build (not while the daemon starts).
    sandbox: Option<Sandbox>,
    /// PATH the managers are looked up on and the build steps run with.
    path_var: String,
    /// [`CA_VARS`] set in the daemon's environment.
    ca_env: Vec<(String, String)>,
    running: Mutex<HashMap<String, Arc<Running>>>,
    failed: Mutex<HashMap<String, String>>,
    /// Where a `limited` build's proxy socket goes (the daemon's runtime dir); None: such
    /// builds get no network (unit tests).
    proxy_dir: Option<PathBuf>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Builds {
    pub fn new(dir: PathBuf, sandbox: Sandbox, path_var: String) -> Builds {
        Builds {
            dir,
            sandbox: Some(sandbox),
            path_var,
            ca_env: Vec::new(),
            running: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            proxy_dir: None,
        }
    }

    /// The daemon's builds: layers under `dir`, this binary as the sandbox helper, the
    /// daemon's own PATH.
    pub fn for_this_process(dir: PathBuf, proxy_dir: PathBuf) -> Builds {
        let path = std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        let mut b = Builds::new(dir, Sandbox::None, path);
        b.sandbox = None;
        b.proxy_dir = Some(proxy_dir);
        b.ca_env = std::env::vars()
            .filter(|(k, _)| CA_VARS.contains(&k.as_str()))
            .collect();
        b
    }

    /// Removes build directories an earlier daemon left when it died mid-build (only one
    /// daemon runs per data directory, so none of them is in use).
    pub fn remove_leftovers(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(".build-") {
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => {
                        tracing::info!(dir = %e.path().display(), "removed an unfinished environment build")
                    }
                    Err(err) => {
                        tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove an unfinished environment build")
                    }
                }
            }
        }
    }

    pub fn layer_dir(&self, hash: &str) -> PathBuf {
        self.dir.join(hash)
    }

    fn log_file(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.log"))
    }

    /// Where `config`'s layer stands.
    pub fn info(&self, config: &EnvironmentConfig) -> BuildInfo {
        let hash = layer_hash(config);
        let log = self.log_file(&hash);
        let log = log.exists().then(|| log.display().to_string());
        let mut info = BuildInfo {
            status: BuildStatus::Pending,
            hash: hash.clone(),
            layer: None,
            log,
            error: None,
        };
        if !config.needs_layer() {
            info.status = BuildStatus::Empty;
        } else if lock(&self.running).contains_key(&hash) {
            info.status = BuildStatus::Building;
        } else if self.layer_dir(&hash).is_dir() {
            info.status = BuildStatus::Ready;
            info.layer = Some(self.layer_dir(&hash).display().to_string());
        } else if let Some(e) = lock(&self.failed).get(&hash) {
            info.status = BuildStatus::Failed;
            info.error = Some(e.clone());
        }
        info
    }

    /// Starts building `config`'s layer unless it is built (and `force` is off) or building.
    /// Returns the build to wait on, None when there is nothing to do.
    pub fn start(
        self: &Arc<Self>,
        env_id: &str,
        config: &EnvironmentConfig,
        force: bool,
    ) -> Option<watch::Receiver<Option<Result<(), String>>>> {
        if !config.needs_layer() {
            return None;
        }
        let hash = layer_hash(config);
        let mut running = lock(&self.running);
        if let Some(r) = running.get(&hash) {
            return Some(r.done.clone());
        }
        if !force && self.layer_dir(&hash).is_dir() {
            return None;
        }
        lock(&self.failed).remove(&hash);
        let (done_tx, done) = watch::channel(None);
        let (tx, _) = broadcast::channel(256);
        let run = Arc::new(Running {
            last: Mutex::new(BuildProgress {
                environment_id: env_id.to_string(),
                hash: hash.clone(),
                status: BuildStatus::Building,
                step: 0,
                steps: 0,
                label: String::new(),
                lines: Vec::new(),
                error: None,
            }),
            tx,
            done: done.clone(),
        });
        running.insert(hash.clone(), run.clone());
        drop(running);
        let me = self.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let result = me.build(&hash, &config, &run).await;
            let mut last = lock(&run.last).clone();
            last.lines.clear();
            match &result {
                Ok(()) => {
                    last.status = BuildStatus::Ready;
                    tracing::info!(hash = %hash, "environment layer built");
                }
                Err(e) => {
                    last.status = BuildStatus::Failed;
                    last.error = Some(e.clone());
                    lock(&me.failed).insert(hash.clone(), e.clone());
                    tracing::warn!(hash = %hash, error = %e, "environment build failed");
                }
            }
            *lock(&run.last) = last.clone();
            lock(&me.running).remove(&hash);
            let _ = run.tx.send(last);
            let _ = done_tx.send(Some(result));
        });
        Some(done)
    }

    /// The build of `config` in progress: its latest progress and a receiver of the next.
    pub fn watch(
        &self,
        config: &EnvironmentConfig,
    ) -> Option<(BuildProgress, broadcast::Receiver<BuildProgress>)> {
        let running = lock(&self.running);
        let r = running.get(&layer_hash(config))?;
        // Subscribe under `last`'s lock so no progress falls between the two.
        let last = lock(&r.last);
        Some((last.clone(), r.tx.subscribe()))
    }

    /// The layer (its hash) a new session of this environment mounts, building it first if
    /// needed; None when the environment has nothing to build.
    pub async fn ensure(
        self: &Arc<Self>,
        env_id: &str,
        env_name: &str,
        config: &EnvironmentConfig,
    ) -> Result<Option<String>, String> {
        if !config.needs_layer() {
            return Ok(None);
        }
        if let Some(mut done) = self.start(env_id, config, false) {
            let result = done
                .wait_for(|d| d.is_some())
                .await
                .map_err(|_| "the build stopped (is tetherd shutting down?)".to_string())?
                .clone();
            if let Some(Err(e)) = result {
                return Err(format!(
                    "environment `{env_name}` failed to build: {e}\n(fix it and run `tether envs rebuild {env_name}`)"
                ));
            }
        }
        Ok(Some(layer_hash(config)))
    }

    fn progress(&self, run: &Running, f: impl FnOnce(&mut BuildProgress)) {
        let mut last = lock(&run.last);
        f(&mut last);
        let _ = run.tx.send(last.clone());
        last.lines.clear();
    }

    async fn build(
        &self,
        hash: &str,
        config: &EnvironmentConfig,
        run: &Running,
    ) -> Result<(), String> {
        let steps = plan(config, &self.path_var)?;
        let apt = !config.packages().apt.is_empty();
        let net = self.build_net(hash, config)?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let tmp = self.dir.join(format!(
            ".build-{hash}-{}",
            crate::ids::session_id().trim_start_matches("sesn_")
        ));
        let result = self.build_into(&tmp, hash, &steps, apt, &net, run).await;
        let result = match result {
            Ok(()) => self.publish(&tmp.join("layer"), hash),
            Err(e) => Err(e),
        };
        if let Err(e) = std::fs::remove_dir_all(&tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %tmp.display(), error = %e, "cannot remove a build directory");
        }
        result
    }

    /// A build's network under the environment's own policy: `unrestricted` builds use the
    /// host's network directly, `limited` ones go through a proxy of their own with the same
    /// allow-list as the sessions, `none` ones have no network.
    fn build_net(&self, hash: &str, config: &EnvironmentConfig) -> Result<BuildNet, String> {
        use crate::net::{NetPolicy, SessionNet};
        let policy = crate::resources::networking::net_policy(config.networking(), None)
            .map_err(|e| e.message)?;
        Ok(match (&policy, &self.proxy_dir) {
            (NetPolicy::Unrestricted, _) => BuildNet::Host,
            (NetPolicy::Limited(_), Some(dir)) => {
                let socket = dir.join(format!("build-{}.sock", &hash[..hash.len().min(16)]));
                BuildNet::Proxy(SessionNet::new(
                    policy,
                    crate::net::policy::system_resolver(),
                    socket,
                ))
            }
            _ => BuildNet::Off,
        })
    }

    async fn build_into(
        &self,
        tmp: &Path,
        hash: &str,
        steps: &[Step],
        apt: bool,
        net: &BuildNet,
        run: &Running,
    ) -> Result<(), String> {
        let (layer, home) = (tmp.join("layer"), tmp.join("home"));
        for d in [&layer, &home, &home.join("tmp")] {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        if apt {
            prepare_apt(&home)?;
        }
        let log_path = self.log_file(hash);
        let mut log = tokio::fs::File::create(&log_path)
            .await
            .map_err(|e| format!("cannot create the build log {}: {e}", log_path.display()))?;
        let total = steps.len() as u32;
        for (i, step) in steps.iter().enumerate() {
            let n = i as u32 + 1;
            self.progress(run, |p| {
                p.step = n;
                p.steps = total;
                p.label = step.label.clone();
            });
            let header = format!("==> [{n}/{total}] {}\n", step.label);
            let _ = log.write_all(header.as_bytes()).await;
            let tail = self.run_step(step, &layer, &home, net, run, &mut log).await;
            let _ = log.flush().await;
            if let Err((why, tail)) = tail {
                let tail = tail.into_iter().collect::<Vec<_>>().join("\n");
                return Err(format!(
                    "step {n}/{total} `{}` {why}; last output:\n{tail}\n(full log: {})",
                    step.label,
                    log_path.display()
                ));
            }
        }
        Ok(())
    }

    /// Runs one step in a sandbox with the build's network.
    async fn run_step(
        &self,
        step: &Step,
        layer: &Path,
        home: &Path,
        net: &BuildNet,
        run: &Running,
        log: &mut tokio::fs::File,
    ) -> Result<(), (String, VecDeque<String>)> {
        let mut tail = VecDeque::new();
        let script = home.join("step.sh");
        if let Err(e) = std::fs::write(&script, format!("set -e\n{}\n", step.script)) {
            return Err((format!("could not be written: {e}"), tail));
        }
        let h = home.display();
        let env = [
            ("PATH", self.path_var.as_str()),
            ("LANG", "C.UTF-8"),
            ("TERM", "dumb"),
            ("NO_COLOR", "1"),
        ];
        let extra = [
            ("TMPDIR", format!("{h}/tmp")),
            ("CARGO_HOME", format!("{h}/cargo")),
            ("GOPATH", format!("{h}/go")),
            ("GOCACHE", format!("{h}/gocache")),
            ("npm_config_cache", format!("{h}/npm-cache")),
            ("npm_config_update_notifier", "false".into()),
            ("APT_CONFIG", format!("{h}/apt/apt.conf")),
        ];
        let mut options = sandbox::Options::build(layer);
        options.share_net = matches!(net, BuildNet::Host);
        if let BuildNet::Proxy(n) = net {
            match n.proxy_socket() {
                Ok(socket) => options.proxy = socket,
                Err(e) => return Err((format!("could not start its network proxy: {e}"), tail)),
            }
        }
        // Unit tests: no sandbox, so the layer is not at LAYER_MOUNT; they only plan.
        let helper = self
            .sandbox
            .clone()
            .unwrap_or_else(Sandbox::for_this_process)
            .helper_command(home, &options)
            .map_err(|e| (e, tail.clone()))?;
        let sandboxed = helper.is_some();
        let mut cmd = helper.unwrap_or_else(|| tokio::process::Command::new("/bin/bash"));
        cmd.current_dir(home)
            .env_clear()
            .envs(env)
            .envs(extra)
            .envs(self.ca_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match sandbox::spawn(cmd).await {
            Ok(c) => c,
            Err(e) => return Err((format!("could not start the sandbox: {e}"), tail)),
        };
        let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(("could not set up its pipes".into(), tail));
        };
        // The shell reads this one line; the step's own stdin is empty, its stderr merged.
        let line = format!(
            "exec /bin/bash {} </dev/null 2>&1\n",
            quote(&script.to_string_lossy())
        );
        if stdin.write_all(line.as_bytes()).await.is_err() {
            return Err(("could not be sent to the sandbox".into(), tail));
        }
        drop(stdin);
        let mut errs = String::new();
        let read = async {
            let mut buf = vec![0u8; 16 * 1024];
            let mut pending = Vec::new();
            let mut ready = !sandboxed;
            loop {
                let n = match stdout.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                if !ready {
                    let marker = sandbox::READY.as_bytes();
                    match pending.windows(marker.len()).position(|w| w == marker) {
                        Some(at) => {
                            pending.drain(..at + marker.len());
                            ready = true;
                        }
                        None => continue,
                    }
                }
                let mut lines = Vec::new();
                while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                    let raw: Vec<u8> = pending.drain(..=nl).collect();
                    let _ = log.write_all(&raw).await;
                    let text = crate::tools::ansi::strip(&raw);
                    lines.push(text.trim_end().to_string());
                }
                if !lines.is_empty() {
                    for l in &lines {
                        tail.push_back(l.clone());
                        if tail.len() > TAIL_LINES {
                            tail.pop_front();
                        }
                    }
                    self.progress(run, |p| p.lines = lines);
                }
            }
            if !pending.is_empty() {
                let _ = log.write_all(&pending).await;
                tail.push_back(String::from_utf8_lossy(&pending).trim_end().to_string());
            }
            let _ = stderr.read_to_string(&mut errs).await;
        };
        if tokio::time::timeout(STEP_LIMIT, read).await.is_err() {
            let _ = child.kill().await;
            return Err((
                format!(
                    "took longer than {} minutes and was stopped",
                    STEP_LIMIT.as_secs() / 60
                ),
                tail,
            ));
        }
        let status = match child.wait().await {
            Ok(s) => s,
            Err(e) => return Err((format!("could not be waited for: {e}"), tail)),
        };
        match status.code() {
            Some(0) => Ok(()),
            Some(c) if c == i32::from(sandbox::SETUP_FAILED) && !errs.trim().is_empty() => {
                Err((errs.trim().to_string(), tail))
            }
            Some(c) => Err((format!("failed (exit code {c})"), tail)),
            None => Err(("was killed by a signal".into(), tail)),
        }
    }

    /// Moves a finished layer into place. A layer being replaced (rebuild) is swapped out
    /// first; sessions that mounted it keep their mount.
    fn publish(&self, built: &Path, hash: &str) -> Result<(), String> {
        let target = self.layer_dir(hash);
        let old = built.with_file_name("old");
        if target.exists() {
            std::fs::rename(&target, &old).map_err(|e| {
                format!("cannot move the old layer {} aside: {e}", target.display())
            })?;
        }
        std::fs::rename(built, &target)
            .map_err(|e| format!("cannot move the layer into {}: {e}", target.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: serde_json::Value) -> EnvironmentConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_hash_follows_packages_and_setup_but_not_networking() {
        let a = config(json!({"type": "cloud", "packages": {"pip": ["six==1.16.0"]}}));
        let b = config(
            json!({"type": "cloud", "packages": {"pip": ["six==1.16.0"]},
            "networking": {"type": "none"}}),
        );
        let c = config(json!({"type": "cloud", "packages": {"pip": ["six==1.15.0"]}}));
        let d = config(
            json!({"type": "cloud", "packages": {"pip": ["six==1.16.0"]},
            "setup_commands": ["true"]}),
        );
        assert_eq!(layer_hash(&a), layer_hash(&b));
        assert_ne!(layer_hash(&a), layer_hash(&c));
        assert_ne!(layer_hash(&a), layer_hash(&d));
        assert_eq!(layer_hash(&a).len(), 64);
    }

    #[test]
    fn plans_install_in_manager_order_then_setup() {
        let dir = tempfile::tempdir().unwrap();
        for m in ["pip3", "npm"] {
            let p = dir.path().join(m);
            std::fs::write(&p, "").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let c = config(json!({"type": "cloud",
            "packages": {"pip": ["six==1.16.0"], "npm": ["left-pad@1.3.0"]},
            "setup_commands": ["echo hi > x"]}));
        // A manager outside /usr, /bin, /sbin is found but refused: the sandbox can't run it.
        let e = plan(&c, &dir.path().display().to_string()).unwrap_err();
        assert!(
            e.contains("npm was found at") && e.contains("outside"),
            "{e}"
        );
        let e = plan(&c, "/nonexistent").unwrap_err();
        assert!(e.starts_with("npm is not installed on this host"), "{e}");
        assert!(e.contains("apt install npm"), "{e}");
        let c = config(json!({"type": "cloud", "packages": {"apt": ["jq=1.6-2.1"]}}));
        let e = plan(&c, "/nonexistent").unwrap_err();
        assert!(e.starts_with("apt is not installed on this host"), "{e}");
        assert!(e.contains("apt-get"), "{e}");
        if Path::new("/usr/bin/apt-get").exists() && Path::new("/usr/bin/dpkg-deb").exists() {
            let steps = plan(&c, "/usr/bin").unwrap();
            assert_eq!(steps[0].label, "apt jq=1.6-2.1");
            assert!(steps[0].script.contains("download $missing"));
            assert!(
                steps[0]
                    .script
                    .contains(&format!("-x \"$deb\" {LAYER_MOUNT}/apt"))
            );
        }
        let c = config(json!({"type": "cloud", "setup_commands": ["echo 'a b' > x", "true"]}));
        let steps = plan(&c, "/nonexistent").unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].label, "setup: echo 'a b' > x");
        assert!(steps[0].script.starts_with(&format!("cd {LAYER_MOUNT}\n")));
    }

    #[test]
    fn unfinished_builds_are_removed_and_layers_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".build-abc-1/layer")).unwrap();
        std::fs::create_dir_all(dir.path().join("abc")).unwrap();
        let b = Builds::new(dir.path().to_path_buf(), Sandbox::None, String::new());
        b.remove_leftovers();
        assert!(!dir.path().join(".build-abc-1").exists());
        assert!(dir.path().join("abc").is_dir());
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}
