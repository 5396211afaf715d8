//! Memory stores: versioned files that outlive sessions and appear inside a session's sandbox
//! under `/mnt/memory/<store>/`. Shapes follow the hosted API (`memstore_`, `mem_`,
//! `memver_`; SDK 2.17.0 `beta.memory_stores`); the socket methods' params are at the end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Largest memory content, in UTF-8 bytes (hosted: 100 KiB).
pub const MAX_CONTENT_BYTES: usize = 102_400;
/// Where attached stores appear inside a session's sandbox.
pub const MOUNT_ROOT: &str = "/mnt/memory";
/// A memory path for JSON Schema: 1 to 20 `/`-led segments, none `.` or `..`, no control
/// characters (NFC and format characters are checked by the daemon).
pub const PATH_PATTERN: &str =
    r"^(/(?!\.\.?(/|$))[^/\u0000-\u001f\u007f-\u009f\u2028\u2029]+){1,20}$";
/// At most this many stores per session (hosted).
pub const MAX_STORES_PER_SESSION: usize = 8;

/// `memory_store`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryStore {
    /// `memstore_…`
    pub id: String,
    /// Always `memory_store`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub name: String,
    /// `""` when unset.
    pub description: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
}

/// Body of `POST /v1/memory_stores` and params of `memory_store.create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryStoreSpec {
    /// 1 to 255 characters, no control characters.
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "crate::schema::Metadata")]
    pub metadata: BTreeMap<String, String>,
}

/// Body of `POST /v1/memory_stores/{id}`: `description: ""` clears it, `metadata` is a patch
/// (a `null` value deletes the key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryStoreChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::MetadataPatch>")]
    pub metadata: Option<BTreeMap<String, Option<String>>>,
}

/// `memory`. `content` is null under `view=basic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Memory {
    /// `mem_…`, kept across renames.
    pub id: String,
    /// Always `memory`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub memory_store_id: String,
    pub path: String,
    pub content: Option<String>,
    /// Lowercase hex SHA-256 of the content's UTF-8 bytes.
    pub content_sha256: String,
    pub content_size_bytes: u64,
    /// The current version: compare a version's id against it.
    pub memory_version_id: String,
    pub created_at: String,
    pub updated_at: String,
}

/// `memory_prefix`: a directory-like rollup in a `depth`-limited listing; its path ends with
/// `/` and is the next `path_prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryPrefix {
    /// Always `memory_prefix`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub path: String,
}

/// One item of a memory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum MemoryItem {
    Memory(Memory),
    Prefix(MemoryPrefix),
}

impl MemoryItem {
    pub fn path(&self) -> &str {
        match self {
            MemoryItem::Memory(m) => &m.path,
            MemoryItem::Prefix(p) => &p.path,
        }
    }
}

/// Who made a version (or redacted it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A write through a session's mount.
    SessionActor {
        session_id: String,
    },
    /// A write through the HTTP API (its token).
    ApiActor {
        api_key_id: String,
    },
    /// A write from the local CLI (the daemon's own user).
    UserActor {
        user_id: String,
    },
    ServiceAccountActor {
        service_account_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Created,
    Modified,
    Deleted,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Created => "created",
            Operation::Modified => "modified",
            Operation::Deleted => "deleted",
        }
    }
}

/// `memory_version`: one write. `content`, `content_sha256`, `content_size_bytes` and `path`
/// are null once redacted; `path` is null only then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryVersion {
    /// `memver_…`
    pub id: String,
    /// Always `memory_version`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub memory_id: String,
    pub memory_store_id: String,
    pub operation: Operation,
    pub content: Option<String>,
    pub content_sha256: Option<String>,
    pub content_size_bytes: Option<u64>,
    pub path: Option<String>,
    pub created_by: Option<Actor>,
    pub redacted_at: Option<String>,
    pub redacted_by: Option<Actor>,
    pub created_at: String,
}

/// `{id, type: "memory_store_deleted"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryStoreDeleted {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
}

/// `{id, type: "memory_deleted"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryDeleted {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
}

/// Body of `POST /v1/memory_stores/{id}/memories`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMemory {
    #[schemars(length(min = 2, max = 1024), regex(pattern = PATH_PATTERN))]
    pub path: String,
    /// `""` (or null) for an empty memory; at most 100 KiB of UTF-8.
    #[schemars(length(max = 102400))]
    pub content: Option<String>,
}

/// `{type: "content_sha256", content_sha256}`: the write applies only if the memory's content
/// still has this hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Precondition {
    /// Always `content_sha256`.
    #[serde(rename = "type")]
    #[schemars(regex(pattern = "^content_sha256$"))]
    pub kind: String,
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub content_sha256: String,
}

/// Body of `POST /v1/memory_stores/{id}/memories/{memory_id}`: new content, a new path
/// (rename; the id stays), or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 102400))]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1024), regex(pattern = PATH_PATTERN))]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precondition: Option<Precondition>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    #[default]
    ReadWrite,
    ReadOnly,
}

/// A `memory_store` entry of a session's `resources` at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryResourceParam {
    /// Always `memory_store`.
    #[serde(rename = "type")]
    #[schemars(regex(pattern = "^memory_store$"))]
    pub kind: String,
    /// An id (tether: or a store's name).
    pub memory_store_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// Rendered into the agent's system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub instructions: Option<String>,
}

impl MemoryResourceParam {
    pub fn new(store: impl Into<String>, access: Access) -> MemoryResourceParam {
        MemoryResourceParam {
            kind: "memory_store".into(),
            memory_store_id: store.into(),
            access: Some(access),
            instructions: None,
        }
    }
}

/// A store attached to a session: the request's fields, with the store's name and
/// description as they were at attach time and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionMemory {
    /// Always `memory_store`.
    #[serde(rename = "type")]
    pub kind: String,
    pub memory_store_id: String,
    pub access: Access,
    pub instructions: Option<String>,
    pub name: String,
    pub description: String,
    /// `/mnt/memory/<slug of the name>`.
    pub mount_path: String,
}

/// The mount directory name of a store called `name`: lowercased, every run of characters
/// outside `[a-z0-9]` one `-` (hosted rule), trimmed of dashes; `store` if nothing is left.
pub fn mount_slug(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c);
        } else {
            dash = true;
        }
    }
    if out.is_empty() { "store".into() } else { out }
}

// ---- socket params (`memory_store.*`, `memory.*`) ----

/// A store by id or name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryStoreParams {
    pub store: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListMemoryStores {
    /// Include archived stores.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemoryStore {
    pub store: String,
    pub changes: MemoryStoreChanges,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListMemories {
    pub store: String,
    /// Only memories under this prefix (ends with `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

/// One memory of a store, by path (`/notes.md`) or id (`mem_…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryRef {
    pub store: String,
    pub memory: String,
}

/// Creates the memory at `path`, or replaces its content; with `expected_sha256`, only if the
/// current content has that hash (an empty string: only if no memory is there yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteMemory {
    pub store: String,
    pub path: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteMemory {
    pub store: String,
    pub memory: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListMemoryVersions {
    pub store: String,
    /// Only this memory's versions (a path or a `mem_` id; ids work after deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactMemoryVersion {
    pub store: String,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_hosted_rule() {
        assert_eq!(mount_slug("User Preferences"), "user-preferences");
        assert_eq!(mount_slug("a__b--c"), "a-b-c");
        assert_eq!(mount_slug("  Notes!  "), "notes");
        assert_eq!(mount_slug("日本"), "store");
        assert_eq!(mount_slug("v2.1"), "v2-1");
    }

    #[test]
    fn actors_are_tagged_by_type() {
        let a = Actor::SessionActor {
            session_id: "sesn_1".into(),
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"type": "session_actor", "session_id": "sesn_1"})
        );
    }
}
