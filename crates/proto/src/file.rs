//! Files (hosted `/v1/files`) and a session's resources (`/v1/sessions/{id}/resources`):
//! uploaded files kept by tetherd, mounted read-only into a session's sandbox, and GitHub
//! repositories cloned into its workspace.

use serde::{Deserialize, Serialize};

/// Where a session's files are mounted (read-only).
pub const UPLOADS_DIR: &str = "/mnt/session/uploads";
/// Where a session's agent leaves its deliverables: each file there becomes a file scoped to
/// the session (`GET /v1/files?scope_id=SESSION`) when the agent ends its turn.
pub const OUTPUTS_DIR: &str = "/mnt/session/outputs";
/// The hosted container's writable scratch directory, kept with the session.
pub const USER_DIR: &str = "/mnt/user";

/// What a file belongs to (hosted `BetaFileScope`): the session whose outputs it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileScope {
    pub id: String,
    /// Always `session`.
    #[serde(rename = "type")]
    pub scope_type: String,
}

/// An uploaded file's metadata (hosted `BetaFileMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileMetadata {
    /// `file_…`.
    pub id: String,
    /// Always `file`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub created_at: String,
    /// Always true here: tetherd keeps what it is given.
    pub downloadable: bool,
    /// tetherd's files don't expire.
    pub expires_at: Option<String>,
    /// tether: the sha256 of the content (the name of its blob).
    pub sha256: String,
    /// The session a captured output belongs to; null for an upload.
    #[serde(default)]
    pub scope: Option<FileScope>,
}

/// `DELETE /v1/files/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileDeleted {
    pub id: String,
    /// Always `file_deleted`.
    #[serde(rename = "type")]
    pub object_type: String,
}

/// A file by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileParams {
    pub file_id: String,
}

/// `file.upload` over the socket: the whole content in one frame (base64), so at most
/// [`MAX_SOCKET_UPLOAD`] bytes; larger files go through `POST /v1/files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadFile {
    pub filename: String,
    /// Guessed from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub content_base64: String,
}

/// The largest file `file.upload` takes (its base64 fits a 16 MiB frame).
pub const MAX_SOCKET_UPLOAD: usize = 8 * 1024 * 1024;

/// `file.read`: a slice of a file's content, for downloads over the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadFile {
    pub file_id: String,
    #[serde(default)]
    pub offset: u64,
    /// At most [`MAX_SOCKET_UPLOAD`] bytes are answered.
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChunk {
    pub content_base64: String,
    /// Nothing follows this chunk.
    pub eof: bool,
}

/// A `checkout` of a repository resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Checkout {
    Branch {
        #[schemars(length(min = 1, max = 255))]
        name: String,
    },
    Commit {
        #[schemars(regex(pattern = "^[0-9a-fA-F]{7,64}$"))]
        sha: String,
    },
}

/// One entry of `resources` on session create (and `POST …/resources`, `file` only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResourceParam {
    File {
        file_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mount_path: Option<String>,
    },
    GithubRepository {
        /// `https://github.com/OWNER/REPO`.
        url: String,
        /// Write-only: used for the clone and never stored.
        #[serde(default, skip_serializing)]
        authorization_token: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkout: Option<Checkout>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mount_path: Option<String>,
    },
}

/// A session's resource as answered (hosted `session.resources[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionResource {
    File {
        id: String,
        file_id: String,
        mount_path: String,
        created_at: String,
        updated_at: String,
    },
    GithubRepository {
        id: String,
        url: String,
        mount_path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkout: Option<Checkout>,
        created_at: String,
        updated_at: String,
    },
}

impl SessionResource {
    pub fn id(&self) -> &str {
        match self {
            SessionResource::File { id, .. } | SessionResource::GithubRepository { id, .. } => id,
        }
    }
}

/// `DELETE /v1/sessions/{id}/resources/{resource_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionResourceDeleted {
    pub id: String,
    /// Always `session_resource_deleted`.
    #[serde(rename = "type")]
    pub object_type: String,
}

/// `POST /v1/sessions/{id}/resources/{resource_id}`: a new token (repositories only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceUpdate {
    #[schemars(length(min = 1))]
    pub authorization_token: String,
}

/// The name a repository URL is mounted under by default (`/workspace/<name>`).
pub fn repo_name(url: &str) -> Option<&str> {
    let name = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()?
        .trim_end_matches(".git");
    (!name.is_empty() && name != "." && name != "..").then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_read_but_never_written() {
        let p: ResourceParam = serde_json::from_str(
            r#"{"type":"github_repository","url":"https://github.com/o/r","authorization_token":"ghp_secret","checkout":{"type":"branch","name":"main"}}"#,
        )
        .unwrap();
        let ResourceParam::GithubRepository {
            authorization_token,
            ..
        } = &p
        else {
            panic!("{p:?}")
        };
        assert_eq!(authorization_token.as_deref(), Some("ghp_secret"));
        let back = serde_json::to_string(&p).unwrap();
        assert!(!back.contains("ghp_secret"), "{back}");
    }

    #[test]
    fn repo_names() {
        assert_eq!(repo_name("https://github.com/o/repo"), Some("repo"));
        assert_eq!(repo_name("https://github.com/o/repo.git/"), Some("repo"));
        assert_eq!(repo_name("https://github.com/o/.."), None);
    }
}
