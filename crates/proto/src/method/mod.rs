//! Requests a client can make: `<resource>.<verb>`, each declared once in the `methods!`
//! table below with what it takes (its params, `params.rs`) and what it answers (its result,
//! `results.rs`).
//!
//! From that one table come [`Call`] (every request, typed), [`METHODS`], [`Call::method`],
//! one [`rpc`] marker type per method implementing [`Method`] (so a client asks
//! `request::<rpc::SessionGet>(params)` and gets a typed answer), and [`Dispatch`], whose
//! [`Reply`] tokens make a server answer each method with that method's result type.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{Agent, AgentSpec};
use crate::deployment::{Deployment, DeploymentRun, DeploymentSpec};
use crate::environment::{Environment, EnvironmentSpec};
use crate::error::{ErrorBody, ErrorCode};
use crate::session::SessionInfo;
use crate::thread::SessionThread;
use crate::workflow::WorkflowRun;
// memory stores
use crate::memory::{
    DeleteMemory, ListMemories, ListMemoryStores, ListMemoryVersions, Memory, MemoryDeleted,
    MemoryItem, MemoryRef, MemoryStore, MemoryStoreDeleted, MemoryStoreParams, MemoryStoreSpec,
    MemoryVersion, RedactMemoryVersion, UpdateMemoryStore, WriteMemory,
};

mod params;
mod results;

pub use params::*;
pub use results::*;

/// One method of the protocol: its wire name, what it takes and what it answers.
pub trait Method {
    /// The wire name, e.g. `session.get`.
    const NAME: &'static str;
    type Params: Serialize + DeserializeOwned + fmt::Debug + Clone + PartialEq;
    type Result: Serialize + DeserializeOwned + fmt::Debug + Clone + PartialEq;
    /// The request for this method with these params.
    fn call(params: Self::Params) -> Call;
}

/// Proof that a dispatched call was method `M`: only `M::Result` answers it. Only
/// [`Call::dispatch`] makes one, so a server cannot answer a method with another's shape.
pub struct Reply<M>(PhantomData<fn() -> M>);

impl<M: Method> Reply<M> {
    /// The response's `result` value.
    pub fn encode(self, result: &M::Result) -> Result<Value, serde_json::Error> {
        serde_json::to_value(result)
    }
}

impl<M: Method> fmt::Debug for Reply<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply<{}>", M::NAME)
    }
}

/// Declares the methods. Each entry: doc comments, `"wire.name" => Variant(Params) -> Result;`.
macro_rules! methods {
    ($(
        $(#[$doc:meta])*
        $name:literal => $variant:ident($params:ty) -> $result:ty;
    )*) => {
        /// Every request, typed. On the wire: `{"id": N, "method": "session.create", "params": {...}}`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "method", content = "params")]
        pub enum Call {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant($params),
            )*
        }

        /// Every method name the protocol knows.
        pub const METHODS: &[&str] = &[$($name),*];

        /// One type per method, naming it where a [`Method`] is expected.
        pub mod rpc {
            $(
                #[doc = concat!("`", $name, "`")]
                #[doc = ""]
                $(#[$doc])*
                #[derive(Debug, Clone, Copy)]
                pub struct $variant;
            )*
        }

        $(
            impl Method for rpc::$variant {
                const NAME: &'static str = $name;
                type Params = $params;
                type Result = $result;
                fn call(params: $params) -> Call {
                    Call::$variant(params)
                }
            }
        )*

        /// A [`Call`] split into its params and the [`Reply`] that only its result type fills.
        #[derive(Debug)]
        pub enum Dispatch {
            $( $variant($params, Reply<rpc::$variant>), )*
        }

        impl Call {
            pub fn method(&self) -> &'static str {
                match self {
                    $( Call::$variant(_) => $name, )*
                }
            }

            /// Splits the call for a server: the params, and the token its answer needs.
            pub fn dispatch(self) -> Dispatch {
                match self {
                    $( Call::$variant(p) => Dispatch::$variant(p, Reply(PhantomData)), )*
                }
            }
        }
    };
}

methods! {
    "session.create" => SessionCreate(CreateSession) -> SessionInfo;
    "session.list" => SessionList(ListSessions) -> List<SessionInfo>;
    "session.get" => SessionGet(SessionParams) -> SessionInfo;
    "session.send" => SessionSend(SendMessage) -> Recorded;
    /// The event recorded is the `user.define_outcome` with its `outcome_id`.
    "session.define_outcome" => SessionDefineOutcome(DefineOutcome) -> Recorded;
    /// Without `thread`, interrupts every thread of the session; with one, only that thread.
    "session.interrupt" => SessionInterrupt(Interrupt) -> Interrupted;
    "session.update" => SessionUpdate(UpdateSession) -> SessionInfo;
    /// Answers with the session, then replays its log and streams it live.
    "session.attach" => SessionAttach(Attach) -> SessionInfo;
    "session.detach" => SessionDetach(SessionParams) -> Detached;
    "session.events" => SessionEvents(ReadEvents) -> EventPage;
    "session.search" => SessionSearch(SearchEvents) -> EventPage;
    "session.fork" => SessionFork(ForkSession) -> SessionInfo;
    "session.archive" => SessionArchive(SessionParams) -> SessionInfo;
    "session.delete" => SessionDelete(SessionParams) -> SessionDeleted;
    "agent.create" => AgentCreate(AgentSpec) -> Agent;
    "agent.list" => AgentList(ListAgents) -> List<Agent>;
    "agent.get" => AgentGet(AgentParams) -> Agent;
    "agent.update" => AgentUpdate(UpdateAgent) -> Agent;
    "agent.archive" => AgentArchive(AgentParams) -> Agent;
    /// tether: every version of an agent, oldest first.
    "agent.versions" => AgentVersions(AgentParams) -> List<Agent>;
    /// Stores the environment and starts building its layer.
    "environment.create" => EnvironmentCreate(EnvironmentSpec) -> Environment;
    "environment.list" => EnvironmentList(ListEnvironments) -> List<Environment>;
    "environment.get" => EnvironmentGet(EnvironmentParams) -> Environment;
    "environment.update" => EnvironmentUpdate(UpdateEnvironment) -> Environment;
    "environment.archive" => EnvironmentArchive(EnvironmentParams) -> Environment;
    "environment.delete" => EnvironmentDelete(EnvironmentParams) -> EnvironmentDeleted;
    /// tether: builds the layer again from scratch, even if one is cached.
    "environment.rebuild" => EnvironmentRebuild(EnvironmentParams) -> Environment;
    /// tether: streams the current build as `build` pushes until it ends (starting it if the
    /// layer was never built); answers at once with `{environment, watching}`.
    "environment.watch" => EnvironmentWatch(EnvironmentParams) -> Watching;
    "daemon.status" => DaemonStatus(NoParams) -> DaemonStatus;
    /// Answers, then stops the daemon.
    "daemon.shutdown" => DaemonShutdown(NoParams) -> Stopping;
    "tool.confirm" => ToolConfirm(ToolConfirm) -> Recorded;
    "custom_tool.result" => CustomToolResult(CustomToolResult) -> Recorded;
    /// The session's threads, the primary first, then children in creation order.
    "thread.list" => ThreadList(ListThreads) -> List<SessionThread>;
    "thread.get" => ThreadGet(ThreadParams) -> SessionThread;
    /// Archives an idle child thread (`requires_action` counts as idle); it frees a slot of
    /// the session's 25.
    "thread.archive" => ThreadArchive(ThreadParams) -> SessionThread;
    // memory stores (issue 24)
    "memory_store.create" => MemoryStoreCreate(MemoryStoreSpec) -> MemoryStore;
    "memory_store.list" => MemoryStoreList(ListMemoryStores) -> List<MemoryStore>;
    "memory_store.get" => MemoryStoreGet(MemoryStoreParams) -> MemoryStore;
    "memory_store.update" => MemoryStoreUpdate(UpdateMemoryStore) -> MemoryStore;
    /// Irreversible: the store stays readable but takes no new writes or sessions.
    "memory_store.archive" => MemoryStoreArchive(MemoryStoreParams) -> MemoryStore;
    /// Deletes the store with its memories and versions.
    "memory_store.delete" => MemoryStoreDelete(MemoryStoreParams) -> MemoryStoreDeleted;
    /// Every memory of a store (content omitted), by path.
    "memory.list" => MemoryList(ListMemories) -> List<MemoryItem>;
    /// One memory with its content.
    "memory.get" => MemoryGet(MemoryRef) -> Memory;
    /// Creates or replaces the memory at a path (optionally only if its hash is as expected).
    "memory.write" => MemoryWrite(WriteMemory) -> Memory;
    "memory.delete" => MemoryDelete(DeleteMemory) -> MemoryDeleted;
    /// A store's versions (or one memory's), newest first.
    "memory.versions" => MemoryVersions(ListMemoryVersions) -> List<MemoryVersion>;
    "memory.redact" => MemoryRedact(RedactMemoryVersion) -> MemoryVersion;
    "deployment.create" => DeploymentCreate(DeploymentSpec) -> Deployment;
    "deployment.list" => DeploymentList(ListDeployments) -> List<Deployment>;
    "deployment.get" => DeploymentGet(DeploymentParams) -> Deployment;
    /// Absent fields keep their value, `null` clears the clearable ones (see
    /// [`crate::deployment::DeploymentChanges`]).
    "deployment.update" => DeploymentUpdate(UpdateDeployment) -> Deployment;
    /// Stops scheduled fires (manual runs still work).
    "deployment.pause" => DeploymentPause(DeploymentParams) -> Deployment;
    /// Resumes at the next occurrence: nothing missed while paused is run.
    "deployment.unpause" => DeploymentUnpause(DeploymentParams) -> Deployment;
    "deployment.archive" => DeploymentArchive(DeploymentParams) -> Deployment;
    /// Fires the deployment now; answers with the run (its session or its error).
    "deployment.run" => DeploymentRun(DeploymentParams) -> DeploymentRun;
    /// Runs, newest first.
    "deployment.runs" => DeploymentRuns(ListDeploymentRuns) -> List<DeploymentRun>;
    "deployment.run_get" => DeploymentRunGet(DeploymentRunParams) -> DeploymentRun;
    /// Starts a workflow run in a session; answers with the run as it starts.
    "workflow.run" => WorkflowRunStart(RunWorkflow) -> WorkflowRun;
    /// Open runs (with `all`, ended ones too), oldest first.
    "workflow.list" => WorkflowList(ListWorkflowRuns) -> List<WorkflowRun>;
    /// One run: every task with its status, attempts, verdicts and output.
    "workflow.get" => WorkflowGet(WorkflowRunParams) -> WorkflowRun;
    /// Interrupts the run's threads; the run goes idle, resumable.
    "workflow.stop" => WorkflowStop(WorkflowRunParams) -> WorkflowRun;
    /// Starts an idle run again where it stopped.
    "workflow.resume" => WorkflowResume(WorkflowRunParams) -> WorkflowRun;
    /// Approves or denies a checkpoint task waiting for an answer.
    "workflow.answer" => WorkflowAnswer(AnswerCheckpoint) -> WorkflowRun;
    // self-hosted environments (issue 26)
    /// Prints the environment's worker key, making one if it has none; `rotate` replaces it.
    /// Only its hash is kept: an existing key is never shown again.
    "environment.key" => EnvironmentKeyGet(crate::work::EnvironmentKeyParams) -> crate::work::EnvironmentKey;
    /// The workers seen polling the environment and its queue.
    "environment.workers" => EnvironmentWorkersGet(EnvironmentParams) -> crate::work::EnvironmentWorkers;
    // files and session resources (issue 25)
    /// Stores a file (at most `file::MAX_SOCKET_UPLOAD` bytes this way).
    "file.upload" => FileUpload(crate::file::UploadFile) -> crate::file::FileMetadata;
    /// Every file, newest first.
    "file.list" => FileList(NoParams) -> List<crate::file::FileMetadata>;
    "file.get" => FileGet(crate::file::FileParams) -> crate::file::FileMetadata;
    /// A slice of a file's content (downloads go slice by slice).
    "file.read" => FileRead(crate::file::ReadFile) -> crate::file::FileChunk;
    /// Deletes the file; sessions that mount it keep their copy until they end.
    "file.delete" => FileDelete(crate::file::FileParams) -> crate::file::FileDeleted;
    // webhooks (issue 20)
    /// Adds an endpoint; the answer is the only time its signing secret is shown.
    "webhook.create" => WebhookCreate(crate::webhook::CreateWebhook) -> crate::webhook::WebhookEndpoint;
    /// Every endpoint (config.toml's too), oldest first.
    "webhook.list" => WebhookList(NoParams) -> List<crate::webhook::WebhookEndpoint>;
    /// Removes an endpoint made by `webhook.create`; its pending deliveries are dropped.
    "webhook.delete" => WebhookDelete(crate::webhook::WebhookParams) -> crate::webhook::WebhookDeleted;
    /// The delivery log, newest first: status, attempts, last error.
    "webhook.deliveries" => WebhookDeliveries(crate::webhook::ListDeliveries) -> List<crate::webhook::WebhookDelivery>;
    /// Sends a delivery again now, with the same `webhook-id`.
    "webhook.redeliver" => WebhookRedeliver(crate::webhook::Redeliver) -> crate::webhook::WebhookDelivery;
    // vaults (issue 25): secrets go in, never out
    "vault.create" => VaultCreate(crate::vault::VaultSpec) -> crate::vault::Vault;
    "vault.list" => VaultList(crate::vault::ListVaults) -> List<crate::vault::Vault>;
    "vault.get" => VaultGet(crate::vault::VaultParams) -> crate::vault::Vault;
    /// New sessions can't use an archived vault.
    "vault.archive" => VaultArchive(crate::vault::VaultParams) -> crate::vault::Vault;
    /// Deletes the vault with its credentials.
    "vault.delete" => VaultDelete(crate::vault::VaultParams) -> crate::vault::Deleted;
    "credential.create" => CredentialCreate(crate::vault::CreateCredential) -> crate::vault::Credential;
    "credential.list" => CredentialList(crate::vault::ListCredentials) -> List<crate::vault::Credential>;
    "credential.update" => CredentialUpdate(crate::vault::UpdateCredential) -> crate::vault::Credential;
    /// Archives the credential and erases its secret.
    "credential.archive" => CredentialArchive(crate::vault::CredentialParams) -> crate::vault::Credential;
    "credential.delete" => CredentialDelete(crate::vault::CredentialParams) -> crate::vault::Deleted;
    // skills (issue 25)
    /// Uploads a skill: one directory's files, SKILL.md (front matter `name`, `description`) among them.
    "skill.create" => SkillCreate(crate::skill::CreateSkill) -> crate::skill::Skill;
    /// Every skill, newest first.
    "skill.list" => SkillList(NoParams) -> List<crate::skill::Skill>;
    "skill.get" => SkillGet(crate::skill::SkillParams) -> crate::skill::SkillDetail;
    "skill.version_create" => SkillVersionCreate(crate::skill::CreateSkillVersion) -> crate::skill::SkillVersion;
    /// Deletes the skill with all its versions.
    "skill.delete" => SkillDelete(crate::skill::SkillParams) -> crate::skill::SkillDeleted;
    // mcp_oauth login (issue 25, mcpauth)
    /// Starts the MCP authorization flow for a server; the user opens the answered URL.
    "credential.login" => CredentialLogin(crate::vault::LoginStart) -> crate::vault::LoginStarted;
    /// Waits for a login to end (or `wait_secs`): the `mcp_oauth` credential it made.
    "credential.login_wait" => CredentialLoginWait(crate::vault::LoginWait) -> crate::vault::LoginStatus;
    // the fleet, pushed (issue 20)
    /// Answers with the session list and its change seq; `sessions` pushes then carry each
    /// change (status, title, cost, last activity, gone) until the connection closes.
    "sessions.watch" => SessionsWatch(crate::watch::WatchSessions) -> crate::watch::SessionsWatching;
    // MCP elicitation (issue 25)
    /// The session's MCP elicitations, oldest first: pending ones, or every one with `all`.
    "session.elicitations" => SessionElicitations(crate::elicitation::ListElicitations) -> List<crate::elicitation::Elicitation>;
    /// Answers a pending elicitation (accept with content, decline, cancel); the first answer
    /// wins, a later one is a conflict.
    "session.elicitation_answer" => SessionElicitationAnswer(crate::elicitation::AnswerElicitation) -> Recorded;
    // MCP client credentials (issue 25, mcpauth2)
    /// Gets a token with the client-credentials grant (no user) and keeps it as an
    /// `mcp_oauth` credential that gets the next one the same way.
    "credential.client_credentials" => CredentialClientCredentials(crate::vault::ClientCredentialsLogin) -> crate::vault::Credential;
}

impl Call {
    /// Types a request's `method` + `params`, telling an unknown method apart from bad params.
    pub fn parse(method: &str, params: Value) -> Result<Call, ErrorBody> {
        if !METHODS.contains(&method) {
            return Err(ErrorBody::new(
                ErrorCode::UnknownMethod,
                format!(
                    "unknown method `{method}`; known methods: {}",
                    METHODS.join(", ")
                ),
            ));
        }
        let params = match params {
            Value::Null => Value::Object(Default::default()),
            p => p,
        };
        let tagged = serde_json::json!({ "method": method, "params": params });
        serde_json::from_value(tagged).map_err(|e| {
            ErrorBody::new(
                ErrorCode::InvalidParams,
                format!("invalid params for `{method}`: {e}"),
            )
        })
    }

    /// Splits into wire `method` and `params`.
    pub fn into_parts(self) -> (String, Value) {
        let method = self.method().to_string();
        let params = match serde_json::to_value(&self) {
            Ok(Value::Object(mut m)) => m.remove("params").unwrap_or(Value::Null),
            _ => Value::Null,
        };
        (method, params)
    }
}

#[cfg(test)]
mod tests;
