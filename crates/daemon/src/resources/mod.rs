//! The resources room: the stored things sessions are made from. [`agents`] (versioned agent
//! definitions: model, system prompt, tools, permission policies, MCP toolsets) and
//! [`environments`] (where a session runs: packages, networking, sandbox), with [`envbuild`]
//! building an environment's package layer and [`networking`] turning its networking into a
//! session's network policy.
//!
//! Depends on the infrastructure below it (`store`, `sandbox`, `net`, `tools`) and the
//! foundations; never on `session`, `runtime` or the doors, which use it.

pub mod agents;
pub mod envbuild;
pub mod environments;
pub mod networking;
pub mod vaults;
