//! The resources room: the stored things sessions are made from. [`agents`] (versioned agent
//! definitions: model, system prompt, tools, permission policies, MCP toolsets) and
//! [`environments`] (where a session runs: packages, networking, sandbox), with [`envbuild`]
//! building an environment's package layer and [`networking`] turning its networking into a
//! session's network policy. [`files`] keeps uploaded files (content-addressed blobs),
//! [`skills`] versioned skill directories over the same blobs; [`attach`] mounts files into a
//! session and [`outputs`] captures what its agent leaves in `/mnt/session/outputs`.
//!
//! Depends on the infrastructure below it (`store`, `sandbox`, `net`, `tools`) and the
//! foundations; never on `session`, `runtime` or the doors, which use it.

/// Whether a name may be shared by several live agents (or environments). The hosted API
/// allows it (its clients create the same name again and again), so HTTP creates and renames
/// say `MayRepeat`; the CLI's files keep names unique, so that `tether agents create` of a
/// name in use points at `update` instead. The built-in `default` stays unique either way
/// (sessions without an agent or environment find it by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Unique,
    MayRepeat,
}

pub mod agents;
pub mod attach;
pub mod envbuild;
pub mod environments;
pub mod files;
pub mod networking;
pub mod outputs;
pub mod repos;
pub mod skills;
pub mod vaults;
