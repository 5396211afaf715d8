//! Sortable ids (`sesn_…`, `sevt_…`) and timestamps.

use std::sync::Mutex;
use std::time::SystemTime;

/// Monotonic within a millisecond, so ids made in one batch still sort in creation order.
static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());

fn new_id(prefix: &str) -> String {
    let id = GENERATOR
        .lock()
        .ok()
        .and_then(|mut g| g.generate().ok())
        .unwrap_or_else(ulid::Ulid::generate);
    let mut out = format!("{prefix}_{id}");
    out.make_ascii_lowercase();
    out
}

/// `elic_…`: one MCP elicitation (a server's question to the user).
pub fn elicitation_id() -> String {
    new_id("elic")
}

pub fn session_id() -> String {
    new_id("sesn")
}

pub fn agent_id() -> String {
    new_id("agent")
}

pub fn request_id() -> String {
    new_id("req")
}

pub fn environment_id() -> String {
    new_id("env")
}

/// `outc_…`: one `user.define_outcome`.
pub fn outcome_id() -> String {
    new_id("outc")
}

/// `depl_…`: a deployment.
pub fn deployment_id() -> String {
    new_id("depl")
}

/// `drun_…`: one fire of a deployment.
pub fn deployment_run_id() -> String {
    new_id("drun")
}

/// `wrun_…`: a workflow run.
pub fn workflow_run_id() -> String {
    new_id("wrun")
}

/// `file_…`: an uploaded file.
pub fn file_id() -> String {
    new_id("file")
}

/// `sesrsc_…`: a session's resource.
pub fn session_resource_id() -> String {
    new_id("sesrsc")
}

pub fn event_id() -> String {
    new_id("sevt")
}

/// RFC 3339 UTC with millisecond precision, e.g. `2026-11-25T08:00:00.123Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// `memstore_…`: a memory store.
pub fn memory_store_id() -> String {
    new_id("memstore")
}

/// `mem_…`: a memory (kept across renames).
pub fn memory_id() -> String {
    new_id("mem")
}

/// `memver_…`: one write of a memory; sorts in creation order.
pub fn memory_version_id() -> String {
    new_id("memver")
}

/// `work_…`: a self-hosted environment's work item.
pub fn work_id() -> String {
    new_id("work")
}

/// `whe_…`: one webhook event (the envelope's id and the `webhook-id` header).
pub fn webhook_event_id() -> String {
    new_id("whe")
}

/// `whep_…`: a webhook endpoint.
pub fn webhook_endpoint_id() -> String {
    new_id("whep")
}

/// `vlt_…`: a vault.
pub fn vault_id() -> String {
    new_id("vlt")
}

/// `vcrd_…`: a vault credential.
pub fn credential_id() -> String {
    new_id("vcrd")
}

/// `skill_…`: a skill (its versions are epoch microseconds, as hosted).
pub fn skill_id() -> String {
    new_id("skill")
}
