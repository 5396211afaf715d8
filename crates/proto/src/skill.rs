//! Skills (hosted `/v1/skills`): a directory of files with a `SKILL.md` whose front matter
//! names and describes it, versioned; agents reference them by `{type, skill_id, version}`.
//! Shapes are the hosted SDK's (`BetaSkill`, `BetaSkillVersion`, ...).

use serde::{Deserialize, Serialize};

/// At most this many skills per agent (hosted limit).
pub const MAX_AGENT_SKILLS: usize = 20;

/// Where a skill's files appear in a session's sandbox: `/skills/<name>/`.
pub const MOUNT_ROOT: &str = "/skills";

/// `{type: "custom"}`: the only source tether has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SkillSource {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Skill {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub display_name: String,
    pub latest_version_id: String,
    pub source: SkillSource,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SkillVersion {
    /// The version: a Unix epoch in microseconds, as hosted (`"1759178010641129"`).
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub skill_id: String,
    /// The kebab-case slug from SKILL.md's `name`; the directory it is mounted as.
    pub name: String,
    pub description: String,
    pub created_at: String,
}

/// `{id, type: "skill_deleted" | "skill_version_deleted"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SkillDeleted {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
}

/// `agent.skills[]`: a skill and the version to load (`latest` when omitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillRef {
    /// `custom` (uploaded) or `anthropic` (which tetherd does not ship).
    #[serde(rename = "type")]
    pub kind: SkillKind,
    #[schemars(length(min = 1, max = 256))]
    pub skill_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkillKind {
    Custom,
    Anthropic,
}

/// One file of an upload: its path (`my-skill/SKILL.md`) and content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillFile {
    pub path: String,
    pub content_base64: String,
}

/// `skill.create`: the files of one directory, SKILL.md among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSkill {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub files: Vec<SkillFile>,
}

/// `skill.version_create`: a new version of `skill_id` from these files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSkillVersion {
    pub skill_id: String,
    pub files: Vec<SkillFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillParams {
    /// A skill id, or the name of one (its newest match).
    pub skill: String,
}

/// `skill.get` answers the skill with its versions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillDetail {
    pub skill: Skill,
    pub versions: Vec<SkillVersion>,
    /// The latest version's file paths.
    pub files: Vec<String>,
}

/// The total bytes a skill upload may hold (hosted: 30 MB per upload; the socket's frame
/// caps CLI uploads lower).
pub const MAX_SKILL_BYTES: u64 = 30 * 1024 * 1024;

/// A skill as a session mounts it: the resolved version, and its files as (blob on the
/// host, path inside the skill's directory). The daemon derives it when a session loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountedSkill {
    pub skill_id: String,
    pub version: String,
    pub name: String,
    pub description: String,
    /// `/skills/<name>`.
    pub mount_path: String,
    pub files: Vec<(String, String)>,
}
