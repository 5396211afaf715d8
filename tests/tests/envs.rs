//! Environments end to end: files in through the CLI, layers built once in the sandbox and
//! mounted read-only into every session of the environment, a real package from PyPI, and the
//! failures a user meets (bad file, taken name, missing package manager, failing package).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tether_e2e::{Reply, TestEnv, wait_until};
use tether_mock_llm::Script;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn failing(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(!out.status.success(), "tether {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A model that, for each session in turn, runs one bash `command` and then says done.
fn bash_each(commands: &[&str]) -> Script {
    let mut replies = Vec::new();
    for c in commands {
        replies.push(Reply::tool_use("bash", json!({ "command": c })));
        replies.push(Reply::text("done"));
    }
    Script::sequential(replies)
}

/// Output of the (only) bash call of session `name`.
fn bash_output(env: &TestEnv, name: &str) -> String {
    let (_, output) = tether_e2e::tool_results(&env.events(name))
        .into_iter()
        .next()
        .expect("the bash call has a result");
    output
}

/// Directories under `envs/` that are layers (not logs, not build temp dirs).
fn layers(env: &TestEnv) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(env.paths.envs_dir()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn create_list_show_rm_and_unique_names() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let files = tempfile::tempdir().unwrap();
    let f = write(
        &files,
        "plain.yaml",
        "name: plain\ndescription: nothing to build\nconfig:\n  type: cloud\n  networking: {type: limited, allowed_hosts: [pypi.org], allow_package_managers: true}\nmetadata: {team: infra}\n",
    );
    let out = env.ok(&["envs", "create", "-f", &f]);
    assert!(out.contains("created environment plain (env_"), "{out}");
    assert!(out.contains("nothing to build"), "{out}");

    let ls = env.ok(&["envs", "ls"]);
    assert!(ls.lines().any(|l| l.starts_with("default ")), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.starts_with("plain ") && l.contains("limited")),
        "{ls}"
    );
    let shown: Value = serde_json::from_str(&env.ok(&["envs", "show", "plain", "--json"])).unwrap();
    assert_eq!(shown["type"], "environment");
    assert_eq!(shown["config"]["type"], "cloud");
    assert_eq!(
        shown["config"]["networking"]["allowed_hosts"],
        json!(["pypi.org"])
    );
    assert_eq!(shown["metadata"]["team"], "infra");
    assert_eq!(shown["build"]["status"], "empty");
    let yaml = env.ok(&["envs", "show", shown["id"].as_str().unwrap()]);
    assert!(yaml.contains("name: plain"), "{yaml}");

    // Names are unique: the second create is refused and stores nothing.
    let err = failing(&env, &["envs", "create", "-f", &f]);
    assert!(
        err.contains("an environment named `plain` already exists"),
        "{err}"
    );
    assert_eq!(env.ok(&["envs", "ls", "--json"]).lines().count(), 2);

    // A session names it; sessions that name none get the default environment.
    let default: Value =
        serde_json::from_str(&env.ok(&["envs", "show", "default", "--json"])).unwrap();
    let id = env.ok(&["new", "--detach", "--env", "plain", "--name", "in-plain"]);
    let sessions = env.ok(&["ls", "--json"]);
    let s: Value =
        serde_json::from_str(sessions.lines().find(|l| l.contains(id.trim())).unwrap()).unwrap();
    assert_eq!(s["environment_id"], shown["id"]);
    env.ok(&["new", "--detach", "--name", "in-default"]);
    let all = env.ok(&["ls", "--json"]);
    let d: Value =
        serde_json::from_str(all.lines().find(|l| l.contains("in-default")).unwrap()).unwrap();
    assert_eq!(d["environment_id"], default["id"]);
    let err = failing(&env, &["new", "--detach", "--env", "nope"]);
    assert!(err.contains("no environment `nope`"), "{err}");

    let out = env.ok(&["envs", "rm", "plain"]);
    assert!(out.contains("deleted environment plain"), "{out}");
    assert!(!env.ok(&["envs", "ls"]).contains("plain"));
    let err = failing(&env, &["envs", "rm", "default"]);
    assert!(err.contains("can't be deleted"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_files_point_at_the_field() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let files = tempfile::tempdir().unwrap();
    let f = write(
        &files,
        "e.yaml",
        "name: x\nconfig:\n  type: cloud\n  packages:\n    pipx: [six]\n",
    );
    let err = failing(&env, &["envs", "create", "-f", &f]);
    assert!(
        err.contains("config.packages: unknown field `pipx`"),
        "{err}"
    );
    let f = write(
        &files,
        "e.toml",
        "name = \"x\"\n[config]\ntype = \"cloud\"\n[config.packages]\npip = [\"six six\"]\n",
    );
    let err = failing(&env, &["envs", "create", "-f", &f]);
    assert!(err.contains("config.packages.pip[0]"), "{err}");
    let f = write(
        &files,
        "e.json",
        r#"{"name": "x", "config": {"type": "cloud", "packages": {"apt": ["jq", "-y"]}}}"#,
    );
    let err = failing(&env, &["envs", "create", "-f", &f]);
    assert!(err.contains("config.packages.apt[1]"), "{err}");
    assert!(err.contains("looks like an option"), "{err}");
    assert!(!env.ok(&["envs", "ls"]).contains("\nx "));
}

const STAMP_V1: &str = "name: stamp
config:
  type: cloud
  setup_commands:
    - cat /proc/sys/kernel/random/uuid > stamp
";

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_is_built_once_shared_read_only_and_rebuilt_when_the_config_changes() {
    let read = "cat $TETHER_ENV_LAYER/stamp; touch $TETHER_ENV_LAYER/x 2>&1 | grep -o 'Read-only file system'";
    let env = TestEnv::new(bash_each(&[read, read, read, read])).await;
    let files = tempfile::tempdir().unwrap();
    let v1 = write(&files, "stamp.yaml", STAMP_V1);
    let out = env.ok(&["envs", "create", "-f", &v1]);
    // The step shows live only if the client's watch starts before this short build ends;
    // its log always has it (checked below).
    assert!(out.contains("built: layer "), "{out}");
    assert_eq!(layers(&env).len(), 1);
    let first_layer = layers(&env);

    env.ok(&["run", "go", "--env", "stamp", "--name", "s1"]);
    env.ok(&["run", "go", "--env", "stamp", "--name", "s2"]);
    let (o1, o2) = (bash_output(&env, "s1"), bash_output(&env, "s2"));
    let stamp1 = o1.lines().next().unwrap().to_string();
    assert_eq!(stamp1.len(), 36, "a uuid from the build: {o1}");
    assert!(o1.contains("Read-only file system"), "{o1}");
    // The second session reused the layer: same stamp, no second build.
    assert_eq!(o2.lines().next().unwrap(), stamp1, "{o2}");
    assert_eq!(layers(&env), first_layer);
    let log = std::fs::read_to_string(env.paths.envs_dir().join(format!("{}.log", first_layer[0])))
        .unwrap();
    assert_eq!(log.matches("==> [1/1]").count(), 1, "{log}");

    // A changed config is a new layer, built once; the old one stays for sessions in it.
    let v2 = write(
        &files,
        "v2.yaml",
        "config:\n  type: cloud\n  setup_commands:\n    - cat /proc/sys/kernel/random/uuid > stamp\n    - echo two > two\n",
    );
    let out = env.ok(&["envs", "update", "stamp", "-f", &v2]);
    assert!(out.contains("[2/2] setup: echo two > two"), "{out}");
    assert_eq!(layers(&env).len(), 2);
    env.ok(&["run", "go", "--env", "stamp", "--name", "s3"]);
    let o3 = bash_output(&env, "s3");
    let stamp3 = o3.lines().next().unwrap().to_string();
    assert_ne!(stamp3, stamp1, "{o3}");

    // `rebuild` builds the same config again from scratch and replaces the layer in place.
    let out = env.ok(&["envs", "rebuild", "stamp"]);
    assert!(out.contains("rebuilding environment stamp"), "{out}");
    assert!(out.contains("[2/2] setup: echo two > two"), "{out}");
    assert_eq!(layers(&env).len(), 2);
    env.ok(&["run", "go", "--env", "stamp", "--name", "s4"]);
    let o4 = bash_output(&env, "s4");
    assert_ne!(o4.lines().next().unwrap(), stamp3, "{o4}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pip_package_from_pypi_is_importable_in_sessions() {
    let env = TestEnv::new(bash_each(&[
        "python3 -c 'import six; print(six.__version__, six.__file__)'",
    ]))
    .await;
    let files = tempfile::tempdir().unwrap();
    let f = write(
        &files,
        "py.yaml",
        "name: py\nconfig:\n  type: cloud\n  packages:\n    pip: [six==1.16.0]\n",
    );
    let out = env.ok(&["envs", "create", "-f", &f]);
    assert!(out.contains("==> [1/1] pip six==1.16.0"), "{out}");
    assert!(out.contains("Successfully installed six-1.16.0"), "{out}");
    assert!(out.contains("build log: "), "{out}");
    env.ok(&["run", "go", "--env", "py", "--name", "s"]);
    let o = bash_output(&env, "s");
    assert!(
        o.contains("1.16.0 /opt/tether/env/python/six.py"),
        "six should import from the layer: {o}"
    );
}

/// An apt package the host lacks (yajl-tools, 13 kB) and the library it needs (libyajl2) are
/// downloaded through the build's allow-list proxy and unpacked into the layer: the tool runs
/// in sessions from the layer's PATH and finds its library on LD_LIBRARY_PATH.
#[tokio::test(flavor = "multi_thread")]
async fn an_apt_package_and_its_missing_library_run_from_the_layer() {
    let env = TestEnv::new(bash_each(&[
        "echo '{ \"a\": [1, 2] }' | json_reformat -m; echo; command -v json_reformat",
    ]))
    .await;
    let files = tempfile::tempdir().unwrap();
    let f = write(
        &files,
        "yajl.yaml",
        "name: yajl\nconfig:\n  type: cloud\n  networking: {type: limited, allow_package_managers: true}\n  packages:\n    apt: [yajl-tools]\n",
    );
    let out = env.ok(&["envs", "create", "-f", &f]);
    assert!(out.contains("==> [1/1] apt yajl-tools"), "{out}");
    assert!(
        out.contains("downloading:") && out.contains("libyajl2="),
        "the missing library is fetched too: {out}"
    );
    env.ok(&["run", "go", "--env", "yajl", "--name", "s"]);
    let o = bash_output(&env, "s");
    assert!(o.contains(r#"{"a":[1,2]}"#), "{o}");
    assert!(
        o.contains("/opt/tether/env/apt/usr/bin/json_reformat"),
        "{o}"
    );

    let f = write(
        &files,
        "nope.yaml",
        "name: nope\nconfig:\n  type: cloud\n  packages:\n    apt: [tether-no-such-package-e2e]\n",
    );
    let err = failing(&env, &["envs", "create", "-f", &f]);
    assert!(
        err.contains("step 1/1 `apt tether-no-such-package-e2e` failed"),
        "{err}"
    );
    assert!(err.contains("Unable to locate package"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_package_is_named_with_its_output_and_leaves_no_layer() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    let files = tempfile::tempdir().unwrap();
    let f = write(
        &files,
        "bad.yaml",
        "name: bad\nconfig:\n  type: cloud\n  packages:\n    pip: [tether-no-such-package-e2e==0.0.1]\n",
    );
    let out = env.run(&["envs", "create", "-f", &f]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("step 1/1 `pip tether-no-such-package-e2e==0.0.1` failed"),
        "{err}"
    );
    assert!(err.contains("No matching distribution"), "{err}");
    assert!(layers(&env).is_empty(), "{:?}", layers(&env));
    let shown: Value = serde_json::from_str(&env.ok(&["envs", "show", "bad", "--json"])).unwrap();
    assert_eq!(shown["build"]["status"], "failed");
    let err = failing(&env, &["new", "--detach", "--env", "bad"]);
    assert!(err.contains("environment `bad` failed to build"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_package_manager_missing_on_the_host_fails_the_build_clearly() {
    let env = TestEnv::new(Script::sequential(vec![])).await;
    // The daemon's PATH has no pip (and nothing else).
    let empty = tempfile::tempdir().unwrap();
    let mut daemon = env
        .tetherd()
        .env("PATH", empty.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let socket = env.paths.socket();
    wait_until("tetherd accepting connections", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    })
    .await;
    let files = tempfile::tempdir().unwrap();
    let f = write(
        &files,
        "py.yaml",
        "name: py\nconfig:\n  type: cloud\n  packages:\n    pip: [six==1.16.0]\n",
    );
    let err = failing(&env, &["envs", "create", "-f", &f]);
    assert!(err.contains("pip is not installed on this host"), "{err}");
    assert!(err.contains("apt install python3-pip"), "{err}");
    assert!(layers(&env).is_empty());
    env.ok(&["daemon", "stop"]);
    let _ = daemon.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_in_an_unbuilt_environment_builds_it_first_and_shows_the_build() {
    let env = TestEnv::new(bash_each(&["cat $TETHER_ENV_LAYER/built"])).await;
    let files = tempfile::tempdir().unwrap();
    let f = write(
        &files,
        "e.yaml",
        "name: lazy\nconfig:\n  type: cloud\n  setup_commands: [\"echo built-by-setup > built\"]\n",
    );
    env.ok(&["envs", "create", "-f", &f]);
    // The layer is gone (as if deleted by hand): the environment is pending again.
    for l in layers(&env) {
        std::fs::remove_dir_all(env.paths.envs_dir().join(l)).unwrap();
    }
    let shown: Value = serde_json::from_str(&env.ok(&["envs", "show", "lazy", "--json"])).unwrap();
    assert_eq!(shown["build"]["status"], "pending");
    let out = env
        .tether()
        .args(["run", "go", "--env", "lazy", "--name", "s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("==> [1/1] setup: echo built-by-setup > built"),
        "{err}"
    );
    assert!(bash_output(&env, "s").contains("built-by-setup"));
    assert_eq!(layers(&env).len(), 1);
}
