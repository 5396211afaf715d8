//! Multi-agent sessions in the view: the thread panel (a fold of thread events corrected by
//! `thread.list`), switching the transcript to a child thread and back (the Net commands it
//! emits), child approvals answered from the primary view; snapshots at 80×24 and 160×48.

use tether_proto::agent::AgentModel;
use tether_proto::thread::{SessionThread, ThreadAgent};

use super::*;
use crate::screen::threads::{ThreadState, Threads};

const REVIEWER: &str = "sthr_reviewer";
const TESTER: &str = "sthr_tester";
const SUMMARISER: &str = "sthr_summariser";
const ADVISOR_1: &str = "sthr_advice1";
const ADVISOR_2: &str = "sthr_advice2";
/// The tester's call waiting for approval (cross-posted with the id it has in its stream).
const TESTER_CALL: &str = "sevt_tester_bash";

/// An event of the primary's stream about child thread `thread`.
fn tev(seq: u64, thread: &str, body: EventBody) -> Event {
    Event {
        session_thread_id: Some(thread.into()),
        ..ev(seq, body)
    }
}

fn created(seq: u64, thread: &str, name: &str, model: &str) -> Event {
    tev(
        seq,
        thread,
        EventBody::SessionThreadCreated {
            agent_name: name.into(),
            workflow_run_id: None,
            model: Some(model.into()),
        },
    )
}

fn t_running(seq: u64, thread: &str, name: &str) -> Event {
    tev(
        seq,
        thread,
        EventBody::SessionThreadStatusRunning {
            agent_name: name.into(),
        },
    )
}

fn t_idle(seq: u64, thread: &str, name: &str, r: StopReason) -> Event {
    tev(
        seq,
        thread,
        EventBody::SessionThreadStatusIdle {
            agent_name: name.into(),
            stop_reason: r,
            stop_details: None,
        },
    )
}

fn sent(seq: u64, thread: &str, to: &str, text: &str) -> Event {
    ev(
        seq,
        EventBody::AgentThreadMessageSent {
            to_session_thread_id: thread.into(),
            to_agent_name: Some(to.into()),
            content: vec![ContentBlock::text(text)],
            tool_use_id: None,
        },
    )
}

fn received(seq: u64, thread: &str, from: &str, text: &str) -> Event {
    ev(
        seq,
        EventBody::AgentThreadMessageReceived {
            from_session_thread_id: thread.into(),
            from_agent_name: Some(from.into()),
            content: vec![ContentBlock::text(text)],
            tool_use_id: None,
        },
    )
}

/// The tester's `always_ask` bash call, cross-posted to the primary's stream.
fn tester_call(seq: u64) -> Event {
    Event {
        id: TESTER_CALL.into(),
        ..tev(
            seq,
            TESTER,
            EventBody::AgentToolUse {
                name: "bash".into(),
                input: json!({"command": "cargo test --workspace"}),
                evaluated_permission: Some(tether_proto::Permission::Ask),
            },
        )
    }
}

/// A primary that delegated to three children (reviewer running, tester waiting for approval,
/// summariser idle) and consulted its advisor twice.
fn three_threads() -> Vec<Event> {
    vec![
        user(1, "review and test the patch, then summarise it"),
        running(2),
        created(3, REVIEWER, "reviewer", "openai/gpt-5.1"),
        sent(4, REVIEWER, "reviewer", "Review the patch in src/lib.rs"),
        t_running(5, REVIEWER, "reviewer"),
        created(6, TESTER, "tester", "anthropic/claude-haiku-4-5"),
        sent(
            7,
            TESTER,
            "tester",
            "Run the whole test suite\nand report failures",
        ),
        t_running(8, TESTER, "tester"),
        created(9, SUMMARISER, "summariser", "ollama/llama3"),
        sent(10, SUMMARISER, "summariser", "Summarise the diff"),
        t_running(11, SUMMARISER, "summariser"),
        t_idle(12, SUMMARISER, "summariser", StopReason::EndTurn),
        received(
            13,
            SUMMARISER,
            "summariser",
            "Three files change: the parser, its tests and the README.",
        ),
        created(
            14,
            ADVISOR_1,
            "anthropic.advisor",
            "anthropic/claude-opus-4-5",
        ),
        t_idle(15, ADVISOR_1, "anthropic.advisor", StopReason::EndTurn),
        created(
            16,
            ADVISOR_2,
            "anthropic.advisor",
            "anthropic/claude-opus-4-5",
        ),
        t_idle(17, ADVISOR_2, "anthropic.advisor", StopReason::EndTurn),
        tester_call(18),
        t_idle(
            19,
            TESTER,
            "tester",
            StopReason::RequiresAction {
                event_ids: vec![TESTER_CALL.into()],
            },
        ),
    ]
}

fn model(id: &str) -> AgentModel {
    AgentModel {
        id: id.into(),
        effort: None,
        speed: None,
    }
}

fn sthr(id: &str, name: &str, m: &str, status: SessionStatus, cost: Option<f64>) -> SessionThread {
    let primary = id == "sthr_1";
    SessionThread {
        id: id.into(),
        object_type: "session_thread".into(),
        session_id: "sesn_1".into(),
        parent_thread_id: (!primary).then(|| "sthr_1".into()),
        agent: if name == "anthropic.advisor" {
            ThreadAgent::Advisor { model: m.into() }
        } else {
            ThreadAgent::Inline {
                name: name.into(),
                description: None,
                system: None,
                model: model(m),
                tools: vec![],
                mcp_servers: vec![],
                skills: vec![],
            }
        },
        status,
        stats: None,
        usage: cost.map(|c| SessionUsage {
            tokens: ModelUsage {
                cost_usd: Some(c),
                ..ModelUsage::default()
            },
            model_requests: 1,
            unpriced_requests: 0,
        }),
        workflow_run_id: None,
        created_at: T0.into(),
        updated_at: T0.into(),
        archived_at: None,
        stop_reason: None,
        last_seq: 3,
    }
}

/// What `thread.list` says of the scene above (costs only it knows).
fn list() -> Vec<SessionThread> {
    vec![
        sthr(
            "sthr_1",
            "coder",
            "anthropic/claude-sonnet-4-6",
            SessionStatus::Running,
            Some(0.0123),
        ),
        sthr(
            REVIEWER,
            "reviewer",
            "openai/gpt-5.1",
            SessionStatus::Running,
            None,
        ),
        SessionThread {
            stop_reason: Some(StopReason::RequiresAction {
                event_ids: vec![TESTER_CALL.into()],
            }),
            ..sthr(
                TESTER,
                "tester",
                "anthropic/claude-haiku-4-5",
                SessionStatus::Idle,
                Some(0.004),
            )
        },
        sthr(
            SUMMARISER,
            "summariser",
            "ollama/llama3",
            SessionStatus::Idle,
            Some(0.0),
        ),
        sthr(
            ADVISOR_1,
            "anthropic.advisor",
            "anthropic/claude-opus-4-5",
            SessionStatus::Terminated,
            Some(0.01),
        ),
        sthr(
            ADVISOR_2,
            "anthropic.advisor",
            "anthropic/claude-opus-4-5",
            SessionStatus::Idle,
            Some(0.02),
        ),
    ]
}

fn net(s: &mut State, n: NetMsg) -> Vec<Effect> {
    update(s, Msg::Net(n))
}

/// The scene with its thread list in, the approval modal put away.
fn scene(s: &mut State, modal: bool) {
    feed(s, &three_threads());
    net(s, NetMsg::Threads(Some(list())));
    if !modal {
        key(s, KeyCode::Esc);
    }
}

/// The reviewer's own stream, as its task reports it.
fn reviewer_tail() -> NetMsg {
    let rev = |seq, body| Event {
        id: format!("sevt_rev_{seq}"),
        ..ev(seq, body)
    };
    NetMsg::Thread {
        thread: REVIEWER.into(),
        msg: Box::new(NetMsg::Tail {
            events: vec![
                rev(
                    1,
                    EventBody::AgentThreadMessageReceived {
                        from_session_thread_id: "sthr_1".into(),
                        from_agent_name: None,
                        content: vec![ContentBlock::text("Review the patch in src/lib.rs")],
                        tool_use_id: None,
                    },
                ),
                rev(
                    2,
                    EventBody::SessionThreadStatusRunning {
                        agent_name: "reviewer".into(),
                    },
                ),
                rev(
                    3,
                    EventBody::AgentMessage {
                        content: vec![ContentBlock::text("Reading the parser first.")],
                    },
                ),
                rev(
                    4,
                    EventBody::AgentToolUse {
                        name: "read".into(),
                        input: json!({"file_path": "src/lib.rs"}),
                        evaluated_permission: None,
                    },
                ),
            ],
            has_older: false,
        }),
    }
}

fn ctrl_t(s: &mut State) -> Vec<Effect> {
    key_m(s, KeyCode::Char('t'), KeyModifiers::CONTROL)
}

fn view(thread: Option<&str>) -> Vec<Effect> {
    vec![Effect::Net(Cmd::ViewThread(thread.map(str::to_string)))]
}

// ---- the fold ----

#[test]
fn the_thread_tree_folds_from_events_and_the_list_adds_costs() {
    let mut t = Threads::default();
    for e in three_threads() {
        t.apply(&e);
    }
    let state = |id: &str| t.get(id).map(|r| r.state);
    assert_eq!(state(REVIEWER), Some(ThreadState::Running));
    assert_eq!(state(TESTER), Some(ThreadState::Waiting));
    assert_eq!(state(SUMMARISER), Some(ThreadState::Idle));
    assert!(t.get(TESTER).unwrap().waits());
    assert_eq!(
        t.owner_of(TESTER_CALL).map(|r| r.name.as_str()),
        Some("tester")
    );
    assert_eq!(
        t.get(REVIEWER).unwrap().model.as_deref(),
        Some("openai/gpt-5.1")
    );
    // Events alone know no cost.
    assert_eq!(t.get(TESTER).unwrap().cost_usd, None);
    t.set_list(&list());
    assert_eq!(t.get(TESTER).unwrap().cost_usd, Some(0.004));
    assert!(
        t.get(TESTER).unwrap().waits(),
        "the list keeps the waiting call"
    );

    // The answer's echo (it names the thread) takes the call off.
    t.apply(&tev(
        20,
        TESTER,
        EventBody::UserToolConfirmation {
            tool_use_id: TESTER_CALL.into(),
            result: tether_proto::ConfirmationResult::Allow,
            deny_message: None,
        },
    ));
    assert!(t.get(TESTER).unwrap().waiting.is_empty());
    t.apply(&t_running(21, TESTER, "tester"));
    assert!(!t.get(TESTER).unwrap().waits());

    // The primary first, the advisor's two consultations as one row (showing the newest).
    let s = state_with(&[]);
    let rows = t.tree(s.thread_rows().remove(0));
    let names: Vec<(&str, usize)> = rows.iter().map(|r| (r.name.as_str(), r.count)).collect();
    assert_eq!(
        names,
        vec![
            ("primary", 1),
            ("reviewer", 1),
            ("tester", 1),
            ("summariser", 1),
            ("anthropic.advisor", 2)
        ]
    );
    let advisor = rows.last().unwrap();
    assert_eq!(advisor.id, ADVISOR_2);
    assert_eq!(advisor.cost_usd, Some(0.03));
    assert!(rows[1..].iter().all(|r| r.depth == 1));
}

#[test]
fn a_status_of_a_thread_created_before_the_loaded_page_still_makes_a_row() {
    let mut t = Threads::default();
    t.apply(&t_running(400, REVIEWER, "reviewer"));
    assert_eq!(t.get(REVIEWER).map(|r| r.name.as_str()), Some("reviewer"));
    // A stream's own events (no thread named) are no thread's business.
    assert_eq!(t.apply(&running(401)), Default::default());
    assert_eq!(t.children.len(), 1);
}

fn state_with(events: &[Event]) -> State {
    let mut s = state(160, 48);
    feed(&mut s, events);
    s
}

#[test]
fn thread_events_ask_for_the_list_once_at_a_time() {
    let mut s = state(160, 48);
    let fx = net(
        &mut s,
        NetMsg::Event(Box::new(created(3, REVIEWER, "reviewer", "openai/gpt-5.1"))),
    );
    assert_eq!(fx, vec![Effect::Net(Cmd::ListThreads)]);
    // One in flight: the next event waits for its answer...
    let fx = net(
        &mut s,
        NetMsg::Event(Box::new(t_running(4, REVIEWER, "reviewer"))),
    );
    assert_eq!(fx, vec![]);
    // ...which asks once more, since something changed meanwhile.
    assert_eq!(
        net(&mut s, NetMsg::Threads(Some(list()))),
        vec![Effect::Net(Cmd::ListThreads)]
    );
    assert_eq!(net(&mut s, NetMsg::Threads(Some(list()))), vec![]);
    // Other events ask nothing.
    assert_eq!(net(&mut s, NetMsg::Event(Box::new(agent(5, "ok")))), vec![]);
}

#[test]
fn a_daemon_without_threads_is_never_asked_again_and_shows_no_panel() {
    let mut s = state(160, 48);
    net(&mut s, NetMsg::Threads(None));
    let fx = net(
        &mut s,
        NetMsg::Event(Box::new(created(3, REVIEWER, "reviewer", "openai/gpt-5.1"))),
    );
    assert_eq!(fx, vec![], "no thread.list to a daemon that has none");
    // The event alone still makes the panel.
    assert!(s.side_panel());
}

// ---- single-agent sessions look as before ----

#[test]
fn a_single_agent_session_has_no_panel_and_ctrl_t_only_says_so() {
    let mut plain = state(160, 48);
    let mut listed = state(160, 48);
    for s in [&mut plain, &mut listed] {
        feed(
            s,
            &[
                user(1, "hi"),
                running(2),
                agent(3, "hello"),
                idle(4, StopReason::EndTurn),
            ],
        );
    }
    // thread.list answers with the primary alone.
    net(
        &mut listed,
        NetMsg::Threads(Some(vec![sthr(
            "sthr_1",
            "coder",
            "anthropic/claude-sonnet-4-6",
            SessionStatus::Idle,
            None,
        )])),
    );
    assert!(!listed.threads.any());
    assert_eq!(frame(&plain), frame(&listed));
    assert_eq!(listed.text_width(), 160);
    assert_eq!(ctrl_t(&mut listed), vec![]);
    assert_eq!(
        listed.notice.as_deref(),
        Some("this session has no other threads")
    );
    let mut narrow = state(80, 24);
    feed(&mut narrow, &[user(1, "hi")]);
    assert!(!narrow.thread_strip());
    assert!(!frame(&narrow).contains('⑂'));
}

// ---- switching ----

#[test]
fn ctrl_t_and_alt_digits_switch_threads_and_emit_view_commands() {
    let mut s = state(160, 48);
    scene(&mut s, false);
    assert_eq!(ctrl_t(&mut s), view(Some(REVIEWER)));
    assert_eq!(s.viewed_thread(), Some(REVIEWER));
    assert_eq!(ctrl_t(&mut s), view(Some(TESTER)));
    // alt-N: the panel's numbers (0 the primary, 4 the advisor's newest consultation).
    assert_eq!(
        key_m(&mut s, KeyCode::Char('4'), KeyModifiers::ALT),
        view(Some(ADVISOR_2))
    );
    assert_eq!(
        key_m(&mut s, KeyCode::Char('3'), KeyModifiers::ALT),
        view(Some(SUMMARISER))
    );
    // The thread shown again: nothing to do.
    assert_eq!(key_m(&mut s, KeyCode::Char('3'), KeyModifiers::ALT), vec![]);
    assert_eq!(key_m(&mut s, KeyCode::Char('9'), KeyModifiers::ALT), vec![]);
    assert!(
        s.notice.as_deref().unwrap().contains("0 to 4"),
        "{:?}",
        s.notice
    );
    // Past the last, back to the primary.
    ctrl_t(&mut s);
    assert_eq!(ctrl_t(&mut s), view(None));
    assert_eq!(s.viewed_thread(), None);
    assert_eq!(
        key_m(&mut s, KeyCode::Char('1'), KeyModifiers::ALT),
        view(Some(REVIEWER))
    );
    assert_eq!(
        key_m(&mut s, KeyCode::Char('0'), KeyModifiers::ALT),
        view(None)
    );
}

#[test]
fn a_child_view_sends_and_interrupts_in_its_thread_but_answers_calls_by_id() {
    let mut s = state(160, 48);
    scene(&mut s, false);
    ctrl_t(&mut s);
    net(&mut s, reviewer_tail());
    typ(&mut s, "look at the lexer too");
    let in_thread = |cmd| {
        vec![Effect::Net(Cmd::InThread {
            thread: REVIEWER.into(),
            cmd: Box::new(cmd),
        })]
    };
    assert_eq!(
        key(&mut s, KeyCode::Enter),
        in_thread(Cmd::Send("look at the lexer too".into()))
    );
    key(&mut s, KeyCode::Esc);
    assert_eq!(key(&mut s, KeyCode::Esc), in_thread(Cmd::Interrupt));
    // The tester's call is answered from here too, by its id, on the session.
    s.overlay = Overlay::Approval {
        ids: vec![TESTER_CALL.into()],
        selected: 0,
        draft: None,
        error: false,
        scroll: 0,
    };
    assert_eq!(
        key(&mut s, KeyCode::Char('y')),
        vec![Effect::Net(Cmd::Confirm {
            tool_use_id: TESTER_CALL.into(),
            allow: true,
            deny_message: None,
        })]
    );
}

#[test]
fn switching_back_restores_the_primary_which_kept_taking_its_events() {
    let mut s = state(80, 24);
    feed(&mut s, &long_session());
    scene(&mut s, false);
    // Scrolled up in the primary.
    key(&mut s, KeyCode::PageUp);
    let scrolled = s.scroll;
    assert_ne!(scrolled, Scroll::Follow);
    let primary_items = s.transcript.items.len();

    ctrl_t(&mut s);
    assert!(
        s.transcript.items.is_empty(),
        "a child starts from its own stream"
    );
    assert_eq!(s.scroll, Scroll::Follow);
    net(&mut s, reviewer_tail());
    assert_eq!(s.transcript.items.len(), 3, "received, message, read card");
    // The primary's stream goes on meanwhile: into its parked transcript.
    net(
        &mut s,
        NetMsg::Event(Box::new(agent(100, "the reviewer is on it"))),
    );
    assert_eq!(s.transcript.items.len(), 3);
    // A stream the view left reports late: dropped.
    let late = NetMsg::Thread {
        thread: TESTER.into(),
        msg: Box::new(NetMsg::Event(Box::new(agent(9, "stale")))),
    };
    net(&mut s, late);
    assert_eq!(s.transcript.items.len(), 3);

    assert_eq!(
        key_m(&mut s, KeyCode::Char('0'), KeyModifiers::ALT),
        view(None)
    );
    assert_eq!(s.transcript.items.len(), primary_items + 1);
    assert_eq!(s.scroll, scrolled, "the primary's scroll is as it was left");
    assert_eq!(s.new_below, 1, "and counts what came meanwhile");
}

#[test]
fn older_pages_of_a_child_are_asked_of_its_stream() {
    let mut s = state(80, 24);
    scene(&mut s, false);
    ctrl_t(&mut s);
    let page = (500..540)
        .map(|q| agent(q, &format!("reviewer line {q}")))
        .collect();
    net(
        &mut s,
        NetMsg::Thread {
            thread: REVIEWER.into(),
            msg: Box::new(NetMsg::Tail {
                events: page,
                has_older: true,
            }),
        },
    );
    let fx = key(&mut s, KeyCode::Home);
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::InThread {
            thread: REVIEWER.into(),
            cmd: Box::new(Cmd::LoadOlder { before_seq: 500 }),
        })]
    );
}

#[test]
fn a_childs_call_opens_the_modal_labelled_and_a_session_running_keeps_it() {
    let mut s = state(80, 24);
    scene(&mut s, true);
    let Overlay::Approval { ids, .. } = &s.overlay else {
        panic!("the tester's call must open the modal: {:?}", s.overlay)
    };
    assert_eq!(ids, &vec![TESTER_CALL.to_string()]);
    // The session goes on running (the reviewer works): the tester still waits.
    feed(&mut s, &[running(20)]);
    assert!(matches!(s.overlay, Overlay::Approval { .. }));
    // Answered by another client: the echo takes it off.
    feed(
        &mut s,
        &[tev(
            21,
            TESTER,
            EventBody::UserToolConfirmation {
                tool_use_id: TESTER_CALL.into(),
                result: tether_proto::ConfirmationResult::Allow,
                deny_message: None,
            },
        )],
    );
    assert_eq!(s.overlay, Overlay::None);
    assert!(!s.thread_rows()[2].waits);
    // Its result is in the tester's stream only: the primary's card says where it went.
    let f = frame(&s);
    assert!(f.contains("answered · continues in tester"), "{f}");
    assert!(!f.contains("running…"), "{f}");
}

#[test]
fn thread_messages_are_one_line_cards_that_expand() {
    let mut s = state(160, 48);
    scene(&mut s, false);
    let f = frame(&s);
    assert!(f.contains("⑂ reviewer started on openai/gpt-5.1"), "{f}");
    assert!(
        f.contains("→ tester: Run the whole test suite (+1 line, ctrl-e)"),
        "{f}"
    );
    assert!(f.contains("← summariser: Three files change"), "{f}");
    assert!(f.contains("tester › bash cargo test --workspace"), "{f}");
    assert!(f.contains("⑂ advisor consulted on claude-opus-4-5"), "{f}");
    assert!(!f.contains("and report failures"), "{f}");
    // ctrl-e on the focused card shows the whole message.
    let i = s
        .transcript
        .items
        .iter()
        .position(|i| i.copy_text().contains("and report failures"))
        .unwrap();
    s.focus = Some(i);
    key_m(&mut s, KeyCode::Char('e'), KeyModifiers::CONTROL);
    let f = frame(&s);
    assert!(f.contains("│ and report failures"), "{f}");
}

// ---- snapshots ----

#[test]
fn snapshot_three_threads_in_the_primary_view() {
    snap_both("threads_primary", |s| scene(s, false));
}

#[test]
fn snapshot_the_transcript_switched_to_a_child() {
    snap_both("threads_child", |s| {
        scene(s, false);
        ctrl_t(s);
        net(s, reviewer_tail());
    });
}

#[test]
fn snapshot_the_approval_modal_for_a_childs_call() {
    snap_both("threads_approval", |s| scene(s, true));
}

#[test]
fn the_tree_nests_children_under_their_parent_and_scales_to_a_fan_out() {
    let mut list = vec![sthr("sthr_1", "primary", "m", SessionStatus::Idle, None)];
    // A thousand children of the primary (a run's fan-out), one grandchild under the first,
    // one whose parent is unknown (it hangs under the primary) and an archived one.
    for i in 0..1000 {
        list.push(sthr(
            &format!("sthr_c{i:04}"),
            &format!("item{i}"),
            "m",
            SessionStatus::Idle,
            None,
        ));
    }
    let mut grandchild = sthr("sthr_g", "grandchild", "m", SessionStatus::Idle, None);
    grandchild.parent_thread_id = Some("sthr_c0000".into());
    let mut orphan = sthr("sthr_o", "orphan", "m", SessionStatus::Idle, None);
    orphan.parent_thread_id = Some("sthr_gone".into());
    let mut archived = sthr("sthr_a", "archived", "m", SessionStatus::Idle, None);
    archived.archived_at = Some("2026-12-07T00:00:00Z".into());
    list.extend([grandchild, orphan, archived]);
    let mut t = Threads::default();
    t.set_list(&list);
    let s = state_with(&[]);
    let started = std::time::Instant::now();
    let rows = t.tree(s.thread_rows().remove(0));
    eprintln!("tree of 1,003 threads: {:?}", started.elapsed());
    let names: Vec<(&str, usize)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.depth))
        .take(4)
        .collect();
    assert_eq!(
        names,
        vec![
            ("primary", 0),
            ("item0", 1),
            ("grandchild", 2),
            ("item1", 1)
        ]
    );
    assert_eq!(rows.len(), 1 + 1000 + 2, "the archived thread is not a row");
    assert_eq!(
        (
            rows.last().unwrap().name.as_str(),
            rows.last().unwrap().depth
        ),
        ("orphan", 1)
    );
}
