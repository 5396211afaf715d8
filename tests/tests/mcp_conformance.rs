//! tetherd's MCP OAuth client against `@modelcontextprotocol/conformance`'s auth scenarios:
//! the suite starts its scripted MCP and authorization servers and runs
//! `tether-mcp-conformance-client` (tests/src/bin) against each. The scenarios tether passes
//! must keep passing; the pass count is printed.
//!
//! The suite is an npm package, not vendored: install it with
//! `npm install --prefix DIR @modelcontextprotocol/conformance@0.1.10` (0.1.11+ need Node 22)
//! and set TETHER_MCP_CONFORMANCE_DIR=DIR. Without it (or without `node`) the test skips with
//! a message, unless TETHER_REQUIRE_MCP_CONFORMANCE=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

/// Scenarios tether's client passes: all 17 of the suite's auth scenarios in 0.1.10.
const PASSING: &[&str] = &[
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/metadata-var2",
    "auth/metadata-var3",
    "auth/2025-03-26-oauth-metadata-backcompat",
    "auth/2025-03-26-oauth-endpoint-fallback",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/client-credentials-jwt",
    "auth/client-credentials-basic",
    "auth/basic-cimd",
];

fn suite() -> Result<PathBuf, String> {
    let dir = std::env::var_os("TETHER_MCP_CONFORMANCE_DIR").ok_or(
        "TETHER_MCP_CONFORMANCE_DIR is not set: run `npm install --prefix DIR @modelcontextprotocol/conformance@0.1.10` and set it to DIR",
    )?;
    let entry =
        PathBuf::from(dir).join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    if !entry.exists() {
        return Err(format!(
            "{} does not exist: install the suite there",
            entry.display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(entry),
        _ => Err("`node` is not on PATH".into()),
    }
}

#[test]
fn the_conformance_auth_scenarios_pass() {
    let entry = match suite() {
        Ok(e) => e,
        Err(why) => {
            if std::env::var_os("TETHER_REQUIRE_MCP_CONFORMANCE").is_some() {
                panic!("{why}");
            }
            eprintln!(
                "SKIPPED: {why}; set TETHER_REQUIRE_MCP_CONFORMANCE=1 to make this a failure"
            );
            return;
        }
    };
    let results = tempfile::tempdir().unwrap();
    let out = Command::new("node")
        .arg(&entry)
        .args(["client", "--suite", "auth", "--command"])
        .arg(env!("CARGO_BIN_EXE_tether-mcp-conformance-client"))
        .current_dir(results.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .split("=== SUITE SUMMARY ===")
        .nth(1)
        .unwrap_or_else(|| {
            panic!(
                "no suite summary in the output:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // Lines like `✓ auth/metadata-default: 9 passed, 0 failed`.
    let scenarios: Vec<(&str, bool)> = summary
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let passed = l.starts_with('✓');
            let name = l.trim_start_matches(['✓', '✗', ' ']).split(':').next()?;
            name.starts_with("auth/").then_some((name, passed))
        })
        .collect();
    let passed = scenarios.iter().filter(|(_, p)| *p).count();
    eprintln!(
        "MCP conformance auth scenarios: {passed}/{} pass\n{summary}",
        scenarios.len()
    );
    for want in PASSING {
        assert!(
            scenarios.iter().any(|(n, p)| n == want && *p),
            "{want} does not pass:\n{summary}"
        );
    }
}
