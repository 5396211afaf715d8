//! The method table: every method parses, round-trips and answers in the shape it always had.

use super::*;
use crate::agent::AgentChanges;
use crate::environment::EnvironmentChanges;
use crate::event::{ConfirmationResult, ContentBlock, Event};
use serde_json::json;

#[test]
fn every_method_name_parses_or_reports_params() {
    for m in METHODS {
        // Each method is known: the error, if any, is about params, never the method.
        if let Err(e) = Call::parse(m, json!({})) {
            assert_eq!(e.code, ErrorCode::InvalidParams, "{m}: {e}");
        }
    }
}

#[test]
fn unknown_method_is_named() {
    let e = Call::parse("session.explode", json!({})).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownMethod);
    assert!(e.message.contains("session.explode"));
}

#[test]
fn bad_params_say_which_field() {
    let e = Call::parse("session.send", json!({"session": "x"})).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(e.message.contains("content"), "{}", e.message);
    let e = Call::parse("session.get", json!({"session": "x", "bogus": 1})).unwrap_err();
    assert!(e.message.contains("bogus"), "{}", e.message);
}

fn env(e: &str) -> EnvironmentParams {
    EnvironmentParams {
        environment: e.into(),
    }
}

#[test]
fn calls_round_trip_through_parts() {
    let calls = vec![
        Call::SessionCreate(CreateSession {
            name: Some("fix".into()),
            model: Some("claude-sonnet-4-6".into()),
            dir: Some("/tmp/w".into()),
            initial_message: vec![ContentBlock::text("go")],
            ..Default::default()
        }),
        Call::SessionList(ListSessions {
            all: true,
            ..Default::default()
        }),
        Call::SessionGet(SessionParams {
            session: "fix".into(),
        }),
        Call::SessionSend(SendMessage {
            thread: None,
            model: None,
            session: "fix".into(),
            content: vec![ContentBlock::text("more")],
        }),
        Call::SessionDefineOutcome(DefineOutcome {
            session: "fix".into(),
            outcome: crate::outcome::OutcomeSpec {
                outcome_id: None,
                description: "make the tests pass".into(),
                rubric: crate::outcome::Rubric::Text {
                    content: "- cargo test passes".into(),
                },
                max_iterations: Some(5),
                checks: vec![],
                grader: None,
                escalate: None,
            },
        }),
        Call::SessionInterrupt(Interrupt {
            session: "fix".into(),
            thread: Some("reviewer".into()),
        }),
        Call::SessionAttach(Attach {
            thread: None,
            session: "fix".into(),
            after_seq: 9,
            read_only: true,
        }),
        Call::SessionDetach(SessionParams {
            session: "fix".into(),
        }),
        Call::SessionEvents(ReadEvents {
            thread: None,
            session: "fix".into(),
            after_seq: None,
            before_seq: Some(50),
            limit: 10,
            order: Order::Desc,
        }),
        Call::SessionSearch(SearchEvents {
            session: "fix".into(),
            query: "needle".into(),
            before_seq: Some(9),
            limit: 1,
        }),
        Call::SessionFork(ForkSession {
            session: "fix".into(),
            name: Some("fix2".into()),
        }),
        Call::SessionArchive(SessionParams {
            session: "fix".into(),
        }),
        Call::SessionDelete(SessionParams {
            session: "fix".into(),
        }),
        Call::SessionUpdate(UpdateSession {
            session: "fix".into(),
            model: Some("openai/gpt-5.1".into()),
            max_cost_usd: Some(1.5),
            name: Some("fix-2".into()),
        }),
        Call::AgentCreate(AgentSpec {
            name: "a".into(),
            system: Some("be brief".into()),
            ..Default::default()
        }),
        Call::AgentList(ListAgents { all: true }),
        Call::AgentGet(AgentParams {
            agent: "a@2".into(),
            version: None,
        }),
        Call::AgentUpdate(UpdateAgent {
            agent: "a".into(),
            version: 2,
            changes: AgentChanges {
                system: Some("be terse".into()),
                ..Default::default()
            },
        }),
        Call::AgentArchive(AgentParams {
            agent: "a".into(),
            version: None,
        }),
        Call::AgentVersions(AgentParams {
            agent: "a".into(),
            version: None,
        }),
        Call::EnvironmentCreate(EnvironmentSpec {
            name: "e".into(),
            ..Default::default()
        }),
        Call::EnvironmentList(ListEnvironments { all: true }),
        Call::EnvironmentGet(env("e")),
        Call::EnvironmentUpdate(UpdateEnvironment {
            environment: "e".into(),
            changes: EnvironmentChanges {
                description: Some("d".into()),
                ..Default::default()
            },
        }),
        Call::EnvironmentArchive(env("e")),
        Call::EnvironmentDelete(env("env_1")),
        Call::EnvironmentRebuild(env("e")),
        Call::EnvironmentWatch(env("e")),
        Call::DaemonStatus(NoParams {}),
        Call::DaemonShutdown(NoParams {}),
        Call::ToolConfirm(ToolConfirm {
            session: "fix".into(),
            tool_use_id: "sevt_1".into(),
            result: ConfirmationResult::Allow,
            deny_message: None,
        }),
        Call::CustomToolResult(CustomToolResult {
            session: "fix".into(),
            custom_tool_use_id: "sevt_2".into(),
            content: vec![ContentBlock::text("r")],
            is_error: false,
        }),
        Call::ThreadList(ListThreads {
            session: "fix".into(),
            statuses: vec![crate::session::SessionStatus::Running],
            all: false,
        }),
        Call::ThreadGet(ThreadParams {
            session: "fix".into(),
            thread: "reviewer".into(),
        }),
        Call::ThreadArchive(ThreadParams {
            session: "fix".into(),
            thread: "sthr_01".into(),
        }),
        Call::MemoryStoreCreate(crate::memory::MemoryStoreSpec {
            name: "notes".into(),
            description: Some("d".into()),
            ..Default::default()
        }),
        Call::MemoryStoreList(crate::memory::ListMemoryStores { all: true }),
        Call::MemoryStoreGet(mstore()),
        Call::MemoryStoreUpdate(crate::memory::UpdateMemoryStore {
            store: "notes".into(),
            changes: crate::memory::MemoryStoreChanges {
                name: Some("n2".into()),
                description: None,
                metadata: None,
            },
        }),
        Call::MemoryStoreArchive(mstore()),
        Call::MemoryStoreDelete(mstore()),
        Call::MemoryList(crate::memory::ListMemories {
            store: "notes".into(),
            path_prefix: Some("/a/".into()),
        }),
        Call::MemoryGet(mref()),
        Call::MemoryWrite(crate::memory::WriteMemory {
            store: "notes".into(),
            path: "/a.md".into(),
            content: "x".into(),
            expected_sha256: None,
        }),
        Call::MemoryDelete(crate::memory::DeleteMemory {
            store: "notes".into(),
            memory: "/a.md".into(),
            expected_sha256: Some("ab".into()),
        }),
        Call::MemoryVersions(crate::memory::ListMemoryVersions {
            store: "notes".into(),
            memory: None,
        }),
        Call::MemoryRedact(crate::memory::RedactMemoryVersion {
            store: "notes".into(),
            version: "memver_1".into(),
        }),
        Call::DeploymentCreate(deployment_spec()),
        Call::DeploymentList(ListDeployments {
            all: false,
            agent_id: Some("agent_1".into()),
            status: Some(crate::deployment::DeploymentStatus::Paused),
        }),
        Call::DeploymentGet(dep("nightly")),
        Call::DeploymentUpdate(UpdateDeployment {
            deployment: "nightly".into(),
            changes: crate::deployment::DeploymentChanges {
                schedule: Some(None),
                description: Some(Some("d".into())),
                ..Default::default()
            },
        }),
        Call::DeploymentPause(dep("nightly")),
        Call::DeploymentUnpause(dep("nightly")),
        Call::DeploymentArchive(dep("nightly")),
        Call::DeploymentRun(dep("nightly")),
        Call::DeploymentRuns(ListDeploymentRuns {
            deployment: Some("nightly".into()),
            has_error: Some(true),
            limit: Some(5),
        }),
        Call::DeploymentRunGet(DeploymentRunParams {
            run: "drun_1".into(),
        }),
        Call::WorkflowRunStart(RunWorkflow {
            session: "s".into(),
            workflow: wf_spec(),
        }),
        Call::WorkflowList(ListWorkflowRuns::default()),
        Call::WorkflowGet(wf_run_params()),
        Call::WorkflowStop(wf_run_params()),
        Call::WorkflowResume(wf_run_params()),
        Call::WorkflowAnswer(AnswerCheckpoint {
            run: "wrun_1".into(),
            task: "approve".into(),
            approve: true,
            note: None,
        }),
        // self-hosted environments (issue 26)
        Call::EnvironmentKeyGet(crate::work::EnvironmentKeyParams {
            environment: "box".into(),
            rotate: true,
        }),
        Call::EnvironmentWorkersGet(EnvironmentParams {
            environment: "box".into(),
        }),
        // files (issue 25)
        Call::FileUpload(crate::file::UploadFile {
            filename: "a".into(),
            mime_type: Some("text/plain".into()),
            content_base64: String::new(),
        }),
        Call::FileList(NoParams {}),
        Call::FileGet(crate::file::FileParams {
            file_id: "file_1".into(),
        }),
        Call::FileRead(crate::file::ReadFile {
            file_id: "file_1".into(),
            offset: 4,
            length: 8,
        }),
        Call::FileDelete(crate::file::FileParams {
            file_id: "file_1".into(),
        }),
        // webhooks (issue 20)
        Call::WebhookCreate(crate::webhook::CreateWebhook {
            url: "https://example.com/hook".into(),
            name: Some("ci".into()),
            enabled_events: vec!["session.idled".into()],
        }),
        Call::WebhookList(NoParams {}),
        Call::WebhookDelete(crate::webhook::WebhookParams {
            webhook: "ci".into(),
        }),
        Call::WebhookDeliveries(crate::webhook::ListDeliveries::default()),
        Call::WebhookRedeliver(crate::webhook::Redeliver {
            delivery: "whe_1".into(),
            webhook: None,
        }),
        // vaults (issue 25)
        Call::VaultCreate(vault_spec()),
        Call::VaultList(crate::vault::ListVaults { all: true }),
        Call::VaultGet(vault_params()),
        Call::VaultArchive(vault_params()),
        Call::VaultDelete(vault_params()),
        Call::CredentialCreate(crate::vault::CreateCredential {
            vault: "ci".into(),
            credential: credential_spec(),
        }),
        Call::CredentialList(crate::vault::ListCredentials {
            vault: "ci".into(),
            all: false,
        }),
        Call::CredentialUpdate(crate::vault::UpdateCredential {
            vault: "ci".into(),
            credential: "vcrd_1".into(),
            changes: crate::vault::CredentialChanges::default(),
        }),
        Call::CredentialArchive(credential_params()),
        Call::CredentialDelete(credential_params()),
        Call::SkillCreate(crate::skill::CreateSkill {
            display_name: Some("Greeter".into()),
            files: vec![skill_file()],
        }),
        Call::SkillList(NoParams {}),
        Call::SkillGet(skill_params()),
        Call::SkillVersionCreate(crate::skill::CreateSkillVersion {
            skill_id: "skill_1".into(),
            files: vec![skill_file()],
        }),
        Call::SkillDelete(skill_params()),
        Call::CredentialLogin(crate::vault::LoginStart {
            vault: "ci".into(),
            mcp_server_url: "https://mcp.example.com/mcp".into(),
        }),
        Call::CredentialLoginWait(crate::vault::LoginWait {
            login_id: "login_1".into(),
            wait_secs: Some(5),
        }),
        Call::CredentialClientCredentials(crate::vault::ClientCredentialsLogin {
            vault: "ci".into(),
            mcp_server_url: "https://mcp.example.com/mcp".into(),
            client_id: "tether".into(),
            client_secret: Some(crate::vault::Secret("s3cret".into())),
            private_key: None,
            scope: None,
            display_name: None,
        }),
        Call::SessionsWatch(crate::watch::WatchSessions { all: true }),
        Call::SessionElicitations(crate::elicitation::ListElicitations {
            session: "fix".into(),
            thread: Some("reviewer".into()),
            all: true,
        }),
        Call::SessionElicitationAnswer(crate::elicitation::AnswerElicitation {
            session: "fix".into(),
            thread: None,
            elicitation_id: "elic_1".into(),
            action: crate::elicitation::ElicitationAction::Accept,
            content: Some(json!({"name": "Ada"})),
        }),
    ];
    assert_eq!(calls.len(), METHODS.len());
    for call in calls {
        let (method, params) = call.clone().into_parts();
        assert_eq!(Call::parse(&method, params).unwrap(), call);
    }
}

#[test]
fn methods_without_params_take_an_empty_object_and_ignore_fields() {
    for m in ["daemon.status", "daemon.shutdown"] {
        for params in [json!({}), Value::Null, json!({"extra": 1})] {
            let call = Call::parse(m, params).unwrap();
            assert_eq!(call.method(), m);
            assert_eq!(call.into_parts(), (m.to_string(), json!({})));
        }
    }
    let (_, params) = Call::DaemonStatus(NoParams {}).into_parts();
    assert_eq!(serde_json::to_string(&params).unwrap(), "{}");
}

fn event() -> Event {
    Event {
        id: "sevt_1".into(),
        session_id: "sesn_1".into(),
        seq: 7,
        processed_at: Some("2026-11-25T10:00:00Z".into()),
        session_thread_id: None,
        body: crate::EventBody::user_text("hi"),
    }
}

fn session() -> SessionInfo {
    SessionInfo {
        id: "sesn_1".into(),
        object_type: "session".into(),
        name: Some("fix".into()),
        title: None,
        status: crate::SessionStatus::Idle,
        stop_reason: Some(crate::StopReason::EndTurn),
        model: "anthropic/claude-sonnet-4-6".into(),
        workspace: "/tmp/w".into(),
        created_at: "2026-11-25T10:00:00Z".into(),
        updated_at: "2026-11-25T10:00:01Z".into(),
        archived_at: None,
        last_seq: 7,
        usage: Default::default(),
        attached_clients: 1,
        read_only_clients: 0,
        forked_from: None,
        agent: None,
        environment_id: Some("env_1".into()),
        sandbox: Some("namespaces".into()),
        outcome_evaluations: Vec::new(),
        deployment_id: None,
        context_window: None,
        waiting_checkpoints: 0,
    }
}

fn agent() -> Agent {
    Agent {
        id: "agent_1".into(),
        object_type: "agent".into(),
        version: 2,
        spec: AgentSpec {
            name: "a".into(),
            system: Some("be brief".into()),
            ..Default::default()
        },
        created_at: "2026-11-25T10:00:00Z".into(),
        updated_at: "2026-11-25T10:00:01Z".into(),
        archived_at: None,
    }
}

fn environment() -> Environment {
    Environment {
        id: "env_1".into(),
        object_type: "environment".into(),
        spec: EnvironmentSpec {
            name: "e".into(),
            ..Default::default()
        },
        created_at: "2026-11-25T10:00:00Z".into(),
        updated_at: "2026-11-25T10:00:01Z".into(),
        archived_at: None,
        build: None,
    }
}

fn status() -> DaemonStatus {
    DaemonStatus {
        pid: 42,
        version: "0.1.0".into(),
        protocol: 1,
        socket: "/run/t.sock".into(),
        data_dir: "/data".into(),
        uptime_ms: 1500,
        sessions: 3,
        running_sessions: 1,
        clients: 2,
        providers: vec![ProviderStatus {
            name: "anthropic".into(),
            endpoint: "https://api.anthropic.com".into(),
            ready: true,
            detail: "key set".into(),
            key_source: Some("ANTHROPIC_API_KEY in tetherd's environment".into()),
            key_hint: None,
        }],
        web_search: None,
        mcp_credentials: Vec::new(),
        sandbox: Some(SandboxSupport {
            level: "namespaces".into(),
            summary: "full".into(),
            checks: vec![SandboxCheck {
                name: "user namespaces".into(),
                ok: true,
                detail: "on".into(),
            }],
        }),
    }
}

/// A result goes on the wire as its JSON value (keys sorted): these are the values the daemon
/// built by hand before results were typed, so the bytes stay the same.
fn wire<T: Serialize>(v: &T) -> String {
    serde_json::to_string(&serde_json::to_value(v).unwrap()).unwrap()
}

#[test]
fn results_have_the_shapes_the_daemon_always_sent() {
    let (ev, info) = (event(), session());
    let pairs: Vec<(String, Value)> = vec![
        (
            wire(&List {
                data: vec![info.clone()],
            }),
            json!({ "data": [info] }),
        ),
        (
            wire(&List {
                data: vec![agent()],
            }),
            json!({ "data": [agent()] }),
        ),
        (
            wire(&Recorded {
                event: ev.clone(),
                session: info.clone(),
            }),
            json!({ "event": ev, "session": info }),
        ),
        (
            wire(&Interrupted {
                event: ev.clone(),
                was_running: true,
            }),
            json!({ "event": ev, "was_running": true }),
        ),
        (
            wire(&Detached { detached: false }),
            json!({ "detached": false }),
        ),
        (
            wire(&SessionDeleted::new("sesn_1".into())),
            json!({ "id": "sesn_1", "deleted": true }),
        ),
        (
            wire(&EnvironmentDeleted::new("env_1".into())),
            json!({ "id": "env_1", "type": "environment_deleted" }),
        ),
        (
            wire(&Watching {
                environment: environment(),
                watching: true,
            }),
            json!({ "environment": environment(), "watching": true }),
        ),
        (
            wire(&Stopping { stopping: true }),
            json!({ "stopping": true }),
        ),
    ];
    for (typed, by_hand) in pairs {
        assert_eq!(typed, serde_json::to_string(&by_hand).unwrap());
    }
    // The small ones, spelled out.
    assert_eq!(wire(&Detached { detached: true }), r#"{"detached":true}"#);
    assert_eq!(
        wire(&SessionDeleted::new("sesn_1".into())),
        r#"{"deleted":true,"id":"sesn_1"}"#
    );
    assert_eq!(
        wire(&EnvironmentDeleted::new("env_1".into())),
        r#"{"id":"env_1","type":"environment_deleted"}"#
    );
    assert_eq!(wire(&Stopping { stopping: true }), r#"{"stopping":true}"#);
    assert_eq!(
        wire(&EventPage::new(vec![ev.clone()], 1)),
        serde_json::to_string(&json!({ "data": [ev], "next": 7 })).unwrap()
    );
    assert_eq!(
        wire(&EventPage::new(vec![], 10)),
        r#"{"data":[],"next":null}"#
    );
}

/// Checks one method of the table: its call parses back from the wire, and its result
/// round-trips.
fn check<M: Method>(params: M::Params, result: M::Result, seen: &mut Vec<&'static str>) {
    let call = M::call(params.clone());
    assert_eq!(call.method(), M::NAME);
    let (method, wire_params) = call.clone().into_parts();
    assert_eq!(method, M::NAME);
    assert_eq!(Call::parse(&method, wire_params).unwrap(), call);
    let v = serde_json::to_value(&result).unwrap();
    assert_eq!(
        serde_json::from_value::<M::Result>(v).unwrap(),
        result,
        "{}",
        M::NAME
    );
    seen.push(M::NAME);
}

#[test]
fn every_method_in_the_table_parses_and_round_trips() {
    let s = |session: &str| SessionParams {
        session: session.into(),
    };
    let a = |agent: &str| AgentParams {
        agent: agent.into(),
        version: None,
    };
    let recorded = Recorded {
        event: event(),
        session: session(),
    };
    let agents = List {
        data: vec![agent()],
    };
    let page = EventPage::new(vec![event()], 1);
    let mut seen = Vec::new();
    check::<rpc::SessionCreate>(
        CreateSession {
            name: Some("fix".into()),
            ..Default::default()
        },
        session(),
        &mut seen,
    );
    check::<rpc::SessionList>(
        ListSessions {
            all: true,
            ..Default::default()
        },
        List {
            data: vec![session()],
        },
        &mut seen,
    );
    check::<rpc::SessionGet>(s("fix"), session(), &mut seen);
    check::<rpc::SessionSend>(
        SendMessage {
            thread: None,
            session: "fix".into(),
            content: vec![ContentBlock::text("more")],
            model: None,
        },
        recorded.clone(),
        &mut seen,
    );
    check::<rpc::SessionDefineOutcome>(
        DefineOutcome {
            session: "fix".into(),
            outcome: crate::outcome::OutcomeSpec {
                outcome_id: None,
                description: "make the tests pass".into(),
                rubric: crate::outcome::Rubric::Text {
                    content: "- cargo test passes".into(),
                },
                max_iterations: Some(5),
                checks: vec![],
                grader: None,
                escalate: None,
            },
        },
        recorded.clone(),
        &mut seen,
    );
    check::<rpc::SessionInterrupt>(
        Interrupt {
            session: "fix".into(),
            thread: None,
        },
        Interrupted {
            event: event(),
            was_running: false,
        },
        &mut seen,
    );
    check::<rpc::SessionUpdate>(
        UpdateSession {
            session: "fix".into(),
            model: None,
            max_cost_usd: Some(2.5),
            name: None,
        },
        session(),
        &mut seen,
    );
    check::<rpc::SessionAttach>(
        Attach {
            thread: None,
            session: "fix".into(),
            after_seq: 3,
            read_only: false,
        },
        session(),
        &mut seen,
    );
    check::<rpc::SessionDetach>(s("fix"), Detached { detached: true }, &mut seen);
    check::<rpc::SessionEvents>(
        ReadEvents {
            thread: None,
            session: "fix".into(),
            after_seq: Some(1),
            before_seq: None,
            limit: 10,
            order: Order::Asc,
        },
        page.clone(),
        &mut seen,
    );
    check::<rpc::SessionSearch>(
        SearchEvents {
            session: "fix".into(),
            query: "needle".into(),
            before_seq: None,
            limit: 1,
        },
        page,
        &mut seen,
    );
    check::<rpc::SessionFork>(
        ForkSession {
            session: "fix".into(),
            name: None,
        },
        session(),
        &mut seen,
    );
    check::<rpc::SessionArchive>(s("fix"), session(), &mut seen);
    check::<rpc::SessionDelete>(s("fix"), SessionDeleted::new("sesn_1".into()), &mut seen);
    check::<rpc::AgentCreate>(agent().spec, agent(), &mut seen);
    check::<rpc::AgentList>(ListAgents { all: false }, agents.clone(), &mut seen);
    check::<rpc::AgentGet>(a("a@2"), agent(), &mut seen);
    check::<rpc::AgentUpdate>(
        UpdateAgent {
            agent: "a".into(),
            version: 2,
            changes: AgentChanges::default(),
        },
        agent(),
        &mut seen,
    );
    check::<rpc::AgentArchive>(a("a"), agent(), &mut seen);
    check::<rpc::AgentVersions>(a("a"), agents, &mut seen);
    check::<rpc::EnvironmentCreate>(environment().spec, environment(), &mut seen);
    check::<rpc::EnvironmentList>(
        ListEnvironments { all: true },
        List {
            data: vec![environment()],
        },
        &mut seen,
    );
    check::<rpc::EnvironmentGet>(env("e"), environment(), &mut seen);
    check::<rpc::EnvironmentUpdate>(
        UpdateEnvironment {
            environment: "e".into(),
            changes: EnvironmentChanges::default(),
        },
        environment(),
        &mut seen,
    );
    check::<rpc::EnvironmentArchive>(env("e"), environment(), &mut seen);
    check::<rpc::EnvironmentDelete>(env("e"), EnvironmentDeleted::new("env_1".into()), &mut seen);
    check::<rpc::EnvironmentRebuild>(env("e"), environment(), &mut seen);
    check::<rpc::EnvironmentWatch>(
        env("e"),
        Watching {
            environment: environment(),
            watching: false,
        },
        &mut seen,
    );
    check::<rpc::DaemonStatus>(NoParams {}, status(), &mut seen);
    check::<rpc::DaemonShutdown>(NoParams {}, Stopping { stopping: true }, &mut seen);
    check::<rpc::ToolConfirm>(
        ToolConfirm {
            session: "fix".into(),
            tool_use_id: "sevt_1".into(),
            result: ConfirmationResult::Deny,
            deny_message: Some("no".into()),
        },
        recorded.clone(),
        &mut seen,
    );
    check::<rpc::CustomToolResult>(
        CustomToolResult {
            session: "fix".into(),
            custom_tool_use_id: "sevt_2".into(),
            content: vec![ContentBlock::text("r")],
            is_error: true,
        },
        recorded,
        &mut seen,
    );
    let thread = || crate::thread::SessionThread {
        id: "sthr_01".into(),
        object_type: "session_thread".into(),
        session_id: "sesn_01".into(),
        parent_thread_id: Some("sthr_00".into()),
        agent: crate::thread::ThreadAgent::Inline {
            name: "summariser".into(),
            description: None,
            system: Some("Summarise.".into()),
            model: crate::agent::AgentModel {
                id: "ollama/llama3".into(),
                effort: None,
                speed: None,
            },
            tools: vec![],
            mcp_servers: vec![],
            skills: vec![],
        },
        status: crate::session::SessionStatus::Idle,
        stats: None,
        usage: None,
        workflow_run_id: None,
        created_at: "2026-12-07T10:00:00Z".into(),
        updated_at: "2026-12-07T10:00:00Z".into(),
        archived_at: None,
        stop_reason: Some(crate::event::StopReason::EndTurn),
        last_seq: 9,
    };
    check::<rpc::ThreadList>(
        ListThreads {
            session: "fix".into(),
            statuses: vec![],
            all: true,
        },
        List {
            data: vec![thread()],
        },
        &mut seen,
    );
    let tp = || ThreadParams {
        session: "fix".into(),
        thread: "summariser".into(),
    };
    check::<rpc::ThreadGet>(tp(), thread(), &mut seen);
    check::<rpc::ThreadArchive>(tp(), thread(), &mut seen);
    let store = || crate::memory::MemoryStore {
        id: "memstore_1".into(),
        object_type: "memory_store".into(),
        name: "notes".into(),
        description: String::new(),
        metadata: Default::default(),
        created_at: "2026-12-07T10:00:00Z".into(),
        updated_at: "2026-12-07T10:00:00Z".into(),
        archived_at: None,
    };
    let memory = || crate::memory::Memory {
        id: "mem_1".into(),
        object_type: "memory".into(),
        memory_store_id: "memstore_1".into(),
        path: "/a.md".into(),
        content: Some("x".into()),
        content_sha256: "2d71".into(),
        content_size_bytes: 1,
        memory_version_id: "memver_1".into(),
        created_at: "2026-12-07T10:00:00Z".into(),
        updated_at: "2026-12-07T10:00:00Z".into(),
    };
    let version = || crate::memory::MemoryVersion {
        id: "memver_1".into(),
        object_type: "memory_version".into(),
        memory_id: "mem_1".into(),
        memory_store_id: "memstore_1".into(),
        operation: crate::memory::Operation::Created,
        content: None,
        content_sha256: None,
        content_size_bytes: None,
        path: None,
        created_by: None,
        redacted_at: Some("2026-12-07T10:00:00Z".into()),
        redacted_by: None,
        created_at: "2026-12-07T10:00:00Z".into(),
    };
    check::<rpc::MemoryStoreCreate>(
        crate::memory::MemoryStoreSpec {
            name: "notes".into(),
            ..Default::default()
        },
        store(),
        &mut seen,
    );
    check::<rpc::MemoryStoreList>(
        crate::memory::ListMemoryStores { all: false },
        List {
            data: vec![store()],
        },
        &mut seen,
    );
    check::<rpc::MemoryStoreGet>(mstore(), store(), &mut seen);
    check::<rpc::MemoryStoreUpdate>(
        crate::memory::UpdateMemoryStore {
            store: "notes".into(),
            changes: Default::default(),
        },
        store(),
        &mut seen,
    );
    check::<rpc::MemoryStoreArchive>(mstore(), store(), &mut seen);
    check::<rpc::MemoryStoreDelete>(
        mstore(),
        crate::memory::MemoryStoreDeleted {
            id: "memstore_1".into(),
            object_type: "memory_store_deleted".into(),
        },
        &mut seen,
    );
    check::<rpc::MemoryList>(
        crate::memory::ListMemories {
            store: "notes".into(),
            path_prefix: None,
        },
        List {
            data: vec![crate::memory::MemoryItem::Memory(memory())],
        },
        &mut seen,
    );
    check::<rpc::MemoryGet>(mref(), memory(), &mut seen);
    check::<rpc::MemoryWrite>(
        crate::memory::WriteMemory {
            store: "notes".into(),
            path: "/a.md".into(),
            content: "x".into(),
            expected_sha256: Some("2d71".into()),
        },
        memory(),
        &mut seen,
    );
    check::<rpc::MemoryDelete>(
        crate::memory::DeleteMemory {
            store: "notes".into(),
            memory: "mem_1".into(),
            expected_sha256: None,
        },
        crate::memory::MemoryDeleted {
            id: "mem_1".into(),
            object_type: "memory_deleted".into(),
        },
        &mut seen,
    );
    check::<rpc::MemoryVersions>(
        crate::memory::ListMemoryVersions {
            store: "notes".into(),
            memory: Some("/a.md".into()),
        },
        List {
            data: vec![version()],
        },
        &mut seen,
    );
    check::<rpc::MemoryRedact>(
        crate::memory::RedactMemoryVersion {
            store: "notes".into(),
            version: "memver_1".into(),
        },
        version(),
        &mut seen,
    );
    check::<rpc::DeploymentCreate>(deployment_spec(), deployment(), &mut seen);
    check::<rpc::DeploymentList>(
        ListDeployments::default(),
        List {
            data: vec![deployment()],
        },
        &mut seen,
    );
    check::<rpc::DeploymentGet>(dep("nightly"), deployment(), &mut seen);
    check::<rpc::DeploymentUpdate>(
        UpdateDeployment {
            deployment: "nightly".into(),
            changes: crate::deployment::DeploymentChanges {
                name: Some("n".into()),
                budget: Some(None),
                ..Default::default()
            },
        },
        deployment(),
        &mut seen,
    );
    check::<rpc::DeploymentPause>(dep("nightly"), deployment(), &mut seen);
    check::<rpc::DeploymentUnpause>(dep("nightly"), deployment(), &mut seen);
    check::<rpc::DeploymentArchive>(dep("nightly"), deployment(), &mut seen);
    check::<rpc::DeploymentRun>(dep("nightly"), deployment_run(), &mut seen);
    check::<rpc::DeploymentRuns>(
        ListDeploymentRuns::default(),
        List {
            data: vec![deployment_run()],
        },
        &mut seen,
    );
    check::<rpc::DeploymentRunGet>(
        DeploymentRunParams {
            run: "drun_1".into(),
        },
        deployment_run(),
        &mut seen,
    );
    check::<rpc::WorkflowRunStart>(
        RunWorkflow {
            session: "s".into(),
            workflow: wf_spec(),
        },
        wf_run(),
        &mut seen,
    );
    check::<rpc::WorkflowList>(
        ListWorkflowRuns::default(),
        List {
            data: vec![wf_run()],
        },
        &mut seen,
    );
    check::<rpc::WorkflowGet>(wf_run_params(), wf_run(), &mut seen);
    check::<rpc::WorkflowStop>(wf_run_params(), wf_run(), &mut seen);
    check::<rpc::WorkflowResume>(wf_run_params(), wf_run(), &mut seen);
    check::<rpc::WorkflowAnswer>(
        AnswerCheckpoint {
            run: "wrun_1".into(),
            task: "approve".into(),
            approve: false,
            note: Some("not yet".into()),
        },
        wf_run(),
        &mut seen,
    );
    // self-hosted environments (issue 26)
    check::<rpc::EnvironmentKeyGet>(
        crate::work::EnvironmentKeyParams {
            environment: "box".into(),
            rotate: false,
        },
        crate::work::EnvironmentKey {
            environment_id: "env_1".into(),
            key: None,
            created_at: "2026-12-07T10:00:00.000Z".into(),
        },
        &mut seen,
    );
    check::<rpc::EnvironmentWorkersGet>(
        EnvironmentParams {
            environment: "box".into(),
        },
        crate::work::EnvironmentWorkers {
            environment_id: "env_1".into(),
            has_key: true,
            workers: vec![crate::work::WorkerSeen {
                worker_id: "box1-0123456789ab".into(),
                host: "box1".into(),
                last_seen_at: "2026-12-07T10:00:00.000Z".into(),
                in_flight: 1,
            }],
            queued: 0,
            in_flight: 1,
        },
        &mut seen,
    );
    // files (issue 25)
    let file = || crate::file::FileMetadata {
        id: "file_1".into(),
        object_type: "file".into(),
        filename: "a.csv".into(),
        mime_type: "text/csv".into(),
        size_bytes: 3,
        created_at: "2026-12-07T10:00:00.000Z".into(),
        downloadable: true,
        expires_at: None,
        sha256: "ab".into(),
        scope: None,
    };
    let fp = || crate::file::FileParams {
        file_id: "file_1".into(),
    };
    check::<rpc::FileUpload>(
        crate::file::UploadFile {
            filename: "a.csv".into(),
            mime_type: None,
            content_base64: "YWJj".into(),
        },
        file(),
        &mut seen,
    );
    check::<rpc::FileList>(NoParams {}, List { data: vec![file()] }, &mut seen);
    check::<rpc::FileGet>(fp(), file(), &mut seen);
    check::<rpc::FileRead>(
        crate::file::ReadFile {
            file_id: "file_1".into(),
            offset: 0,
            length: 3,
        },
        crate::file::FileChunk {
            content_base64: "YWJj".into(),
            eof: true,
        },
        &mut seen,
    );
    check::<rpc::FileDelete>(
        fp(),
        crate::file::FileDeleted {
            id: "file_1".into(),
            object_type: "file_deleted".into(),
        },
        &mut seen,
    );
    // webhooks (issue 20)
    let endpoint = crate::webhook::WebhookEndpoint {
        id: "whep_1".into(),
        object_type: "webhook_endpoint".into(),
        url: "https://example.com/hook".into(),
        name: Some("ci".into()),
        enabled_events: vec![],
        state: "enabled".into(),
        source: "api".into(),
        signing_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        created_at: "2026-12-07T10:00:00.000Z".into(),
        updated_at: "2026-12-07T10:00:00.000Z".into(),
    };
    let delivery = crate::webhook::WebhookDelivery {
        id: "whe_1".into(),
        endpoint_id: "whep_1".into(),
        url: "https://example.com/hook".into(),
        event_type: "session.idled".into(),
        subject_id: "sesn_1".into(),
        status: "pending".into(),
        attempts: 2,
        created_at: "2026-12-07T10:00:00.000Z".into(),
        last_attempt_at: Some("2026-12-07T10:00:05.000Z".into()),
        last_status: Some(500),
        last_error: Some("HTTP 500 Internal Server Error".into()),
        next_attempt_at: Some("2026-12-07T10:00:15.000Z".into()),
        delivered_at: None,
    };
    check::<rpc::WebhookCreate>(
        crate::webhook::CreateWebhook {
            url: "https://example.com/hook".into(),
            name: None,
            enabled_events: vec![],
        },
        endpoint.clone(),
        &mut seen,
    );
    check::<rpc::WebhookList>(
        NoParams {},
        List {
            data: vec![endpoint],
        },
        &mut seen,
    );
    check::<rpc::WebhookDelete>(
        crate::webhook::WebhookParams {
            webhook: "whep_1".into(),
        },
        crate::webhook::WebhookDeleted {
            id: "whep_1".into(),
            object_type: "webhook_endpoint_deleted".into(),
        },
        &mut seen,
    );
    check::<rpc::WebhookDeliveries>(
        crate::webhook::ListDeliveries {
            webhook: Some("ci".into()),
            status: Some("failed".into()),
            limit: Some(10),
        },
        List {
            data: vec![delivery.clone()],
        },
        &mut seen,
    );
    check::<rpc::WebhookRedeliver>(
        crate::webhook::Redeliver {
            delivery: "whe_1".into(),
            webhook: Some("whep_1".into()),
        },
        delivery,
        &mut seen,
    );
    // vaults (issue 25)
    let vault = crate::vault::Vault {
        id: "vlt_1".into(),
        object_type: "vault".into(),
        display_name: "ci".into(),
        metadata: Default::default(),
        created_at: "2026-12-07T10:00:00.000Z".into(),
        updated_at: "2026-12-07T10:00:00.000Z".into(),
        archived_at: None,
    };
    let credential = crate::vault::Credential {
        id: "vcrd_1".into(),
        object_type: "vault_credential".into(),
        vault_id: "vlt_1".into(),
        display_name: None,
        auth: crate::vault::CredentialAuth::StaticBearer {
            mcp_server_url: "https://mcp.example.com/mcp".into(),
        },
        metadata: Default::default(),
        created_at: "2026-12-07T10:00:00.000Z".into(),
        updated_at: "2026-12-07T10:00:00.000Z".into(),
        archived_at: None,
    };
    let deleted = crate::vault::Deleted {
        id: "vlt_1".into(),
        object_type: "vault_deleted".into(),
    };
    check::<rpc::VaultCreate>(vault_spec(), vault.clone(), &mut seen);
    check::<rpc::VaultList>(
        crate::vault::ListVaults { all: false },
        List {
            data: vec![vault.clone()],
        },
        &mut seen,
    );
    check::<rpc::VaultGet>(vault_params(), vault.clone(), &mut seen);
    check::<rpc::VaultArchive>(vault_params(), vault, &mut seen);
    check::<rpc::VaultDelete>(vault_params(), deleted.clone(), &mut seen);
    check::<rpc::CredentialCreate>(
        crate::vault::CreateCredential {
            vault: "ci".into(),
            credential: credential_spec(),
        },
        credential.clone(),
        &mut seen,
    );
    check::<rpc::CredentialList>(
        crate::vault::ListCredentials {
            vault: "ci".into(),
            all: true,
        },
        List {
            data: vec![credential.clone()],
        },
        &mut seen,
    );
    check::<rpc::CredentialUpdate>(
        crate::vault::UpdateCredential {
            vault: "ci".into(),
            credential: "vcrd_1".into(),
            changes: crate::vault::CredentialChanges::default(),
        },
        credential.clone(),
        &mut seen,
    );
    check::<rpc::CredentialArchive>(credential_params(), credential, &mut seen);
    check::<rpc::CredentialDelete>(credential_params(), deleted, &mut seen);
    let skill = crate::skill::Skill {
        id: "skill_1".into(),
        object_type: "skill".into(),
        display_name: "Greeter".into(),
        latest_version_id: "1765100000000000".into(),
        source: crate::skill::SkillSource {
            kind: "custom".into(),
        },
        created_at: "2026-12-07T10:00:00.000Z".into(),
        updated_at: "2026-12-07T10:00:00.000Z".into(),
    };
    let version = crate::skill::SkillVersion {
        id: "1765100000000000".into(),
        object_type: "skill_version".into(),
        skill_id: "skill_1".into(),
        name: "greeter".into(),
        description: "Greets".into(),
        created_at: "2026-12-07T10:00:00.000Z".into(),
    };
    check::<rpc::SkillCreate>(
        crate::skill::CreateSkill {
            display_name: None,
            files: vec![skill_file()],
        },
        skill.clone(),
        &mut seen,
    );
    check::<rpc::SkillList>(
        NoParams {},
        List {
            data: vec![skill.clone()],
        },
        &mut seen,
    );
    check::<rpc::SkillGet>(
        skill_params(),
        crate::skill::SkillDetail {
            skill,
            versions: vec![version.clone()],
            files: vec!["greeter/SKILL.md".into()],
        },
        &mut seen,
    );
    check::<rpc::SkillVersionCreate>(
        crate::skill::CreateSkillVersion {
            skill_id: "skill_1".into(),
            files: vec![skill_file()],
        },
        version,
        &mut seen,
    );
    check::<rpc::SkillDelete>(
        skill_params(),
        crate::skill::SkillDeleted {
            id: "skill_1".into(),
            object_type: "skill_deleted".into(),
        },
        &mut seen,
    );
    check::<rpc::CredentialLogin>(
        crate::vault::LoginStart {
            vault: "ci".into(),
            mcp_server_url: "https://mcp.example.com/mcp".into(),
        },
        crate::vault::LoginStarted {
            login_id: "login_1".into(),
            authorization_url: "https://auth.example.com/authorize?x=1".into(),
            redirect_uri: "http://127.0.0.1:40000/callback".into(),
        },
        &mut seen,
    );
    check::<rpc::CredentialLoginWait>(
        crate::vault::LoginWait {
            login_id: "login_1".into(),
            wait_secs: None,
        },
        crate::vault::LoginStatus::Failed {
            message: "the browser never came back".into(),
        },
        &mut seen,
    );
    check::<rpc::SessionsWatch>(
        crate::watch::WatchSessions::default(),
        crate::watch::SessionsWatching {
            data: Vec::new(),
            seq: 4,
        },
        &mut seen,
    );
    check::<rpc::SessionElicitations>(
        crate::elicitation::ListElicitations {
            session: "fix".into(),
            thread: None,
            all: false,
        },
        List {
            data: vec![crate::elicitation::Elicitation {
                id: "elic_1".into(),
                session_id: "sesn_1".into(),
                mcp_server_name: "forms".into(),
                tool_use_id: Some("sevt_2".into()),
                message: "Your name?".into(),
                requested_schema: json!({"type": "object", "properties": {"name": {"type": "string"}}}),
                status: crate::elicitation::ElicitationStatus::Pending,
                action: None,
                content: None,
                reason: None,
                created_at: Some("2026-12-07T19:00:00Z".into()),
                session_thread_id: Some("sthr_1".into()),
                agent_name: Some("reviewer".into()),
                ..Default::default()
            }],
        },
        &mut seen,
    );
    check::<rpc::SessionElicitationAnswer>(
        crate::elicitation::AnswerElicitation {
            session: "fix".into(),
            thread: None,
            elicitation_id: "elic_1".into(),
            action: crate::elicitation::ElicitationAction::Decline,
            content: None,
        },
        Recorded {
            event: event(),
            session: session(),
        },
        &mut seen,
    );
    check::<rpc::CredentialClientCredentials>(
        crate::vault::ClientCredentialsLogin {
            vault: "ci".into(),
            mcp_server_url: "https://mcp.example.com/mcp".into(),
            client_id: "tether".into(),
            client_secret: None,
            private_key: Some(crate::vault::Secret("-----BEGIN PRIVATE KEY-----".into())),
            scope: Some("mcp:tools".into()),
            display_name: None,
        },
        crate::vault::Credential {
            auth: crate::vault::CredentialAuth::McpOauth {
                mcp_server_url: "https://mcp.example.com/mcp".into(),
                expires_at: None,
                refresh: Some(crate::vault::OauthRefresh {
                    client_id: "tether".into(),
                    token_endpoint: "https://auth.example.com/token".into(),
                    token_endpoint_auth: crate::vault::TokenEndpointAuthKind {
                        kind: crate::vault::TokenEndpointAuthType::PrivateKeyJwt,
                        audience: Some("https://auth.example.com".into()),
                    },
                    resource: None,
                    scope: None,
                    grant_type: Some(crate::vault::OauthGrantType::ClientCredentials),
                }),
            },
            id: "vcrd_2".into(),
            object_type: "vault_credential".into(),
            vault_id: "vlt_1".into(),
            display_name: None,
            metadata: Default::default(),
            created_at: "2026-12-07T10:00:00.000Z".into(),
            updated_at: "2026-12-07T10:00:00.000Z".into(),
            archived_at: None,
        },
        &mut seen,
    );
    // Every method of the table, once, in its order.
    assert_eq!(seen, METHODS);
}

fn skill_file() -> crate::skill::SkillFile {
    crate::skill::SkillFile {
        path: "greeter/SKILL.md".into(),
        content_base64: "LS0tCm5hbWU6IGdyZWV0ZXIKLS0tCg==".into(),
    }
}

fn skill_params() -> crate::skill::SkillParams {
    crate::skill::SkillParams {
        skill: "skill_1".into(),
    }
}

fn vault_spec() -> crate::vault::VaultSpec {
    crate::vault::VaultSpec {
        display_name: "ci".into(),
        metadata: Default::default(),
    }
}

fn vault_params() -> crate::vault::VaultParams {
    crate::vault::VaultParams { vault: "ci".into() }
}

fn credential_params() -> crate::vault::CredentialParams {
    crate::vault::CredentialParams {
        vault: "ci".into(),
        credential: "vcrd_1".into(),
    }
}

fn credential_spec() -> crate::vault::CredentialSpec {
    crate::vault::CredentialSpec {
        auth: crate::vault::AuthParams::StaticBearer {
            mcp_server_url: "https://mcp.example.com/mcp".into(),
            token: crate::vault::Secret("t".into()),
        },
        display_name: None,
        metadata: Default::default(),
    }
}

fn wf_spec() -> crate::workflow::WorkflowSpec {
    serde_json::from_value(serde_json::json!({"name": "w", "tasks": [{"id": "a", "prompt": "p"}]}))
        .unwrap()
}

fn wf_run_params() -> WorkflowRunParams {
    WorkflowRunParams {
        run: "wrun_1".into(),
    }
}

fn wf_run() -> crate::workflow::WorkflowRun {
    serde_json::from_value(serde_json::json!({"id": "wrun_1", "type": "workflow_run",
        "session_id": "sesn_1", "name": "w", "status": "ended",
        "result": {"type": "completed"}, "created_at": "t",
        "tasks": [{"id": "a", "status": "succeeded", "attempts": 1, "failures": 0, "output": "o"}]}))
    .unwrap()
}

#[test]
fn dispatch_keeps_the_params_and_names_the_method() {
    let call = Call::SessionGet(SessionParams {
        session: "fix".into(),
    });
    let Dispatch::SessionGet(p, reply) = call.dispatch() else {
        panic!("dispatched to another method");
    };
    assert_eq!(p.session, "fix");
    assert_eq!(format!("{reply:?}"), "Reply<session.get>");
    assert_eq!(reply.encode(&session()).unwrap(), json!(session()));
}

fn mstore() -> crate::memory::MemoryStoreParams {
    crate::memory::MemoryStoreParams {
        store: "notes".into(),
    }
}

fn mref() -> crate::memory::MemoryRef {
    crate::memory::MemoryRef {
        store: "notes".into(),
        memory: "/a.md".into(),
    }
}

fn dep(d: &str) -> DeploymentParams {
    DeploymentParams {
        deployment: d.into(),
    }
}

fn deployment_spec() -> DeploymentSpec {
    DeploymentSpec {
        name: "nightly".into(),
        agent: crate::deployment::AgentChoice::Latest("agent_1".into()),
        environment_id: "env_1".into(),
        initial_events: vec![
            json!({"type": "user.message", "content": [{"type": "text", "text": "go"}]}),
        ],
        workflow: None,
        description: None,
        metadata: Default::default(),
        resources: None,
        vault_ids: None,
        schedule: Some(crate::deployment::ScheduleSpec::Cron {
            expression: "0 3 * * *".into(),
            timezone: "Europe/Paris".into(),
        }),
        budget: None,
    }
}

fn deployment() -> Deployment {
    use crate::deployment::*;
    Deployment {
        id: "depl_1".into(),
        object_type: "deployment".into(),
        name: "nightly".into(),
        description: None,
        agent: PinnedAgent::new("agent_1".into(), 2),
        environment_id: "env_1".into(),
        initial_events: deployment_spec().initial_events,
        workflow: None,
        resources: vec![],
        vault_ids: vec![],
        metadata: Default::default(),
        budget: None,
        schedule: Some(Schedule {
            kind: "cron".into(),
            expression: Some("0 3 * * *".into()),
            timezone: Some("Europe/Paris".into()),
            time: None,
            last_run_at: None,
            upcoming_runs_at: vec!["2026-11-26T02:03:04Z".into()],
        }),
        status: DeploymentStatus::Paused,
        paused_reason: Some(PausedReason::Error {
            error: ErrorKind {
                kind: "environment_archived_error".into(),
            },
        }),
        created_at: "2026-11-25T10:00:00Z".into(),
        updated_at: "2026-11-25T10:00:00Z".into(),
        archived_at: None,
    }
}

fn deployment_run() -> DeploymentRun {
    use crate::deployment::*;
    DeploymentRun {
        id: "drun_1".into(),
        object_type: "deployment_run".into(),
        deployment_id: "depl_1".into(),
        agent: PinnedAgent::new("agent_1".into(), 2),
        trigger_context: TriggerContext::Schedule {
            scheduled_at: "2026-11-26T02:00:00Z".into(),
        },
        session_id: Some("sesn_1".into()),
        workflow_run_id: None,
        error: None,
        created_at: "2026-11-26T02:03:04Z".into(),
    }
}

#[test]
fn deployment_shapes_are_the_hosted_ones() {
    let v = serde_json::to_value(deployment()).unwrap();
    assert_eq!(v["type"], "deployment");
    assert_eq!(
        v["agent"],
        json!({"type": "agent", "id": "agent_1", "version": 2})
    );
    assert_eq!(
        v["paused_reason"],
        json!({"type": "error", "error": {"type": "environment_archived_error"}})
    );
    assert_eq!(v["schedule"]["type"], "cron");
    let v = serde_json::to_value(deployment_run()).unwrap();
    assert_eq!(
        v["trigger_context"],
        json!({"type": "schedule", "scheduled_at": "2026-11-26T02:00:00Z"})
    );
    assert_eq!(
        serde_json::to_value(crate::deployment::TriggerContext::Manual).unwrap(),
        json!({"type": "manual"})
    );
    assert_eq!(
        serde_json::to_value(crate::deployment::PausedReason::Manual).unwrap(),
        json!({"type": "manual"})
    );
    // An update tells null (clear) from absent (keep).
    let ch: crate::deployment::DeploymentChanges =
        serde_json::from_value(json!({"schedule": null})).unwrap();
    assert_eq!(ch.schedule, Some(None));
    assert_eq!(ch.budget, None);
    let spec: DeploymentSpec = serde_json::from_value(json!({
        "name": "n", "agent": {"type": "agent", "id": "agent_1", "version": 3},
        "environment_id": "env_1", "initial_events": [],
        "schedule": {"type": "at", "time": "2026-11-26T02:00:00Z"}
    }))
    .unwrap();
    assert!(matches!(
        spec.agent,
        crate::deployment::AgentChoice::Pinned {
            version: Some(3),
            ..
        }
    ));
}
