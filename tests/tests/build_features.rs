//! What a user's build contains: test-only machinery (the daemon's named crash points) must not
//! reach the `tetherd` that `cargo build --release` at the root produces, even though this
//! workspace's e2e tests turn it on for their own build.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

/// The features of `tether-daemon` in a plain (non-test) build of the whole workspace, as cargo's
/// resolver decides them: `cargo tree` without dev-dependencies is exactly that build's graph.
fn daemon_features_in_user_build() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args([
            "tree",
            "--workspace",
            "--offline",
            "--edges",
            "normal,build,features",
            "--invert",
            "tether-daemon",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_plain_workspace_build_has_no_crash_points() {
    let tree = daemon_features_in_user_build();
    assert!(
        tree.contains("tether-daemon"),
        "unexpected cargo tree output:\n{tree}"
    );
    assert!(
        !tree.contains("crash-points"),
        "`cargo build --release` at the root would build tetherd with the crash-points \
         feature:\n{tree}"
    );
}
