//! Environments: sandbox templates sessions run in (network policy, packages, setup commands).
//! Shapes follow the hosted Managed Agents API (`config: {type: cloud, networking, packages}`);
//! `networking: none` and `setup_commands` are tether extensions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The environment sessions use when they name none; it exists from the daemon's first start.
pub const DEFAULT_ENVIRONMENT: &str = "default";
/// Where an environment's layer appears inside the sandbox, during its build and in sessions.
pub const LAYER_MOUNT: &str = "/opt/tether/env";

/// `{type: unrestricted}` | `{type: limited, ...}` | `{type: none}` (tether).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Networking {
    #[default]
    Unrestricted,
    Limited {
        /// Host names like `pypi.org`: no scheme, no path.
        #[serde(default)]
        #[schemars(inner(regex(pattern = crate::schema::HOST)))]
        allowed_hosts: Vec<String>,
        #[serde(default)]
        allow_package_managers: bool,
        #[serde(default)]
        allow_mcp_servers: bool,
    },
    /// tether: no network at all.
    None,
}

/// Packages per manager, each pinned in the manager's own syntax (`six==1.16.0`,
/// `left-pad@1.3.0`, `ripgrep@14.1.0`); a bare name installs the latest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    /// Hosted: optional `type: packages`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = crate::schema::PACKAGE)))]
    pub apt: Vec<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = crate::schema::PACKAGE)))]
    pub cargo: Vec<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = crate::schema::PACKAGE)))]
    pub gem: Vec<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = crate::schema::PACKAGE)))]
    pub go: Vec<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = crate::schema::PACKAGE)))]
    pub npm: Vec<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = crate::schema::PACKAGE)))]
    pub pip: Vec<String>,
}

impl Packages {
    /// `(manager, packages)` in the order they install: alphabetical, as hosted.
    pub fn by_manager(&self) -> [(&'static str, &[String]); 6] {
        [
            ("apt", &self.apt),
            ("cargo", &self.cargo),
            ("gem", &self.gem),
            ("go", &self.go),
            ("npm", &self.npm),
            ("pip", &self.pip),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.by_manager().iter().all(|(_, p)| p.is_empty())
    }
}

/// `config` of an environment: `cloud` (tools run in tetherd's sandbox) or `self_hosted`
/// (tools run on workers that poll the environment's work queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
// Parsed a handful of times per request, never stored in bulk: not worth a Box in every match.
#[allow(clippy::large_enum_variant)]
pub enum EnvironmentConfig {
    Cloud {
        #[serde(default)]
        networking: Networking,
        #[serde(default)]
        packages: Packages,
        /// tether: shell commands run once after the packages, in the layer directory.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(inner(regex(pattern = crate::schema::NOT_BLANK)))]
        setup_commands: Vec<String>,
        /// tether: `"none"` runs this environment's tools unsandboxed (explicit opt-in only;
        /// shown in red wherever its sessions appear).
        #[serde(default, skip_serializing_if = "SandboxMode::is_default")]
        sandbox: SandboxMode,
    },
    /// Sessions' `bash`, `read`, `write`, `edit`, `glob` and `grep` calls become work for the
    /// environment's workers (`/v1/environments/{id}/work`); nothing is built here.
    SelfHosted {},
}

/// What a self-hosted environment has none of (its workers bring their own).
static NO_NETWORKING: Networking = Networking::Unrestricted;
static NO_PACKAGES: Packages = Packages {
    kind: None,
    apt: Vec::new(),
    cargo: Vec::new(),
    gem: Vec::new(),
    go: Vec::new(),
    npm: Vec::new(),
    pip: Vec::new(),
};

/// Whether an environment's tools run in the sandbox.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// The host's sandbox, at the level `tether doctor` reports (the default).
    #[default]
    Default,
    /// No sandbox at all: tools run as the daemon's user with its view of the host.
    None,
}

impl SandboxMode {
    pub fn is_default(&self) -> bool {
        *self == SandboxMode::Default
    }
}

impl Default for EnvironmentConfig {
    fn default() -> Self {
        EnvironmentConfig::Cloud {
            networking: Networking::Unrestricted,
            packages: Packages::default(),
            setup_commands: Vec::new(),
            sandbox: SandboxMode::Default,
        }
    }
}

impl EnvironmentConfig {
    pub fn networking(&self) -> &Networking {
        match self {
            EnvironmentConfig::Cloud { networking, .. } => networking,
            EnvironmentConfig::SelfHosted {} => &NO_NETWORKING,
        }
    }

    pub fn packages(&self) -> &Packages {
        match self {
            EnvironmentConfig::Cloud { packages, .. } => packages,
            EnvironmentConfig::SelfHosted {} => &NO_PACKAGES,
        }
    }

    pub fn sandbox(&self) -> SandboxMode {
        match self {
            EnvironmentConfig::Cloud { sandbox, .. } => *sandbox,
            EnvironmentConfig::SelfHosted {} => SandboxMode::Default,
        }
    }

    pub fn setup_commands(&self) -> &[String] {
        match self {
            EnvironmentConfig::Cloud { setup_commands, .. } => setup_commands,
            EnvironmentConfig::SelfHosted {} => &[],
        }
    }

    /// Whether sessions' sandbox tools run on the environment's workers.
    pub fn is_self_hosted(&self) -> bool {
        matches!(self, EnvironmentConfig::SelfHosted {})
    }

    /// Whether building produces anything: an environment with neither packages nor setup
    /// commands has no layer.
    pub fn needs_layer(&self) -> bool {
        !self.packages().is_empty() || !self.setup_commands().is_empty()
    }
}

/// The body of `environment.create` (and of `tether envs create -f FILE`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Always sent (null when unset): the hosted SDK requires the key.
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    #[serde(default)]
    pub config: EnvironmentConfig,
    #[serde(default)]
    #[schemars(with = "crate::schema::Metadata")]
    pub metadata: BTreeMap<String, String>,
}

/// `environment.update` changes: an omitted field keeps its value; `config` is replaced whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<EnvironmentConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::schema::Metadata>")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Where an environment's layer stands (tether extension on the resource).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    /// Nothing to build: no packages, no setup commands.
    Empty,
    /// Not built yet (or its last build failed in an earlier daemon).
    Pending,
    Building,
    Ready,
    Failed,
}

/// The build state of an environment's current config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BuildInfo {
    pub status: BuildStatus,
    /// sha256 of the config's build inputs: the layer's directory name.
    pub hash: String,
    /// The layer directory (when ready) and the last build's log, on the daemon's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Why the last build failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An environment as every `environment.*` method returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Environment {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
    #[serde(flatten)]
    pub spec: EnvironmentSpec,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
    /// tether: the layer's build state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildInfo>,
}

/// One step of a build as a progress push streams it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BuildProgress {
    pub environment_id: String,
    pub hash: String,
    pub status: BuildStatus,
    /// 1-based step being run, of `steps`; 0 before the first.
    pub step: u32,
    pub steps: u32,
    /// What the step installs or runs: `pip six==1.16.0`, `setup: make`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// Output lines since the previous progress push.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    /// Set when the build ended in failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosted_bodies_parse_and_unknown_fields_are_named() {
        let s: EnvironmentSpec = serde_json::from_value(json!({
            "name": "py",
            "config": {"type": "cloud",
                "networking": {"type": "limited", "allowed_hosts": ["pypi.org"], "allow_package_managers": true},
                "packages": {"type": "packages", "pip": ["six==1.16.0"]}}
        }))
        .unwrap();
        assert_eq!(s.config.packages().pip, ["six==1.16.0"]);
        assert!(matches!(
            s.config.networking(),
            Networking::Limited {
                allow_package_managers: true,
                allow_mcp_servers: false,
                ..
            }
        ));
        let s: EnvironmentSpec = serde_json::from_value(json!({"name": "bare"})).unwrap();
        assert_eq!(s.config.networking(), &Networking::Unrestricted);
        assert!(!s.config.needs_layer());
        let e = serde_json::from_value::<EnvironmentSpec>(json!({
            "name": "x", "config": {"type": "cloud", "packages": {"pipx": ["a"]}}
        }))
        .unwrap_err();
        assert!(e.to_string().contains("pipx"), "{e}");
        let s: EnvironmentSpec =
            serde_json::from_value(json!({"name": "x", "config": {"type": "self_hosted"}}))
                .unwrap();
        assert!(s.config.is_self_hosted() && !s.config.needs_layer());
        let e = serde_json::from_value::<EnvironmentSpec>(
            json!({"name": "x", "config": {"type": "self_hosted", "packages": {}}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("packages"), "{e}");
    }

    #[test]
    fn managers_install_in_alphabetical_order() {
        let names: Vec<_> = Packages::default()
            .by_manager()
            .iter()
            .map(|(m, _)| *m)
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }
}
