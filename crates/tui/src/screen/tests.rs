//! Pure update tests and insta snapshots of TestBackend frames at 80×24 and 160×48.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;
use tether_proto::deployment::Deployment;
use tether_proto::{
    ContentBlock, Delta, DeltaKind, Event, EventBody, ModelUsage, RetryStatus, RetryStatusKind,
    SessionErrorInfo, SessionInfo, SessionStatus, SessionUsage, Snapshot, StopReason, ToolStatus,
};

use super::app::{Effect, Msg, Overlay, Scroll, State, update};
use super::keys::Keys;
use super::layout::strip_ansi;
use super::net::{Cmd, ConnState, NetMsg};
use super::picker::{Picker, PickerEffect, PickerMsg};
use super::view;

const T0: &str = "2026-11-25T08:00:00Z";

fn now() -> SystemTime {
    humantime::parse_rfc3339(T0).unwrap() + Duration::from_secs(42)
}

fn ev(seq: u64, body: EventBody) -> Event {
    Event {
        id: format!("sevt_{seq:04}"),
        session_id: "sesn_1".into(),
        seq,
        processed_at: Some(T0.into()),
        session_thread_id: None,
        body,
    }
}

fn user(seq: u64, t: &str) -> Event {
    ev(seq, EventBody::user_text(t))
}

fn agent(seq: u64, t: &str) -> Event {
    ev(
        seq,
        EventBody::AgentMessage {
            content: vec![ContentBlock::text(t)],
        },
    )
}

fn tool_use(seq: u64, name: &str, input: serde_json::Value) -> Event {
    ev(
        seq,
        EventBody::AgentToolUse {
            name: name.into(),
            input,
            evaluated_permission: None,
        },
    )
}

/// An `always_ask` call.
fn ask_use(seq: u64, name: &str, input: serde_json::Value) -> Event {
    ev(
        seq,
        EventBody::AgentToolUse {
            name: name.into(),
            input,
            evaluated_permission: Some(tether_proto::Permission::Ask),
        },
    )
}

fn tool_result(seq: u64, use_seq: u64, out: &str, exit: Option<i32>) -> Event {
    ev(
        seq,
        EventBody::AgentToolResult {
            tool_use_id: format!("sevt_{use_seq:04}"),
            content: vec![ContentBlock::text(out)],
            is_error: exit.is_some_and(|c| c != 0),
            status: ToolStatus::Ok,
            exit_code: exit,
            duration_ms: 1234,
        },
    )
}

fn running(seq: u64) -> Event {
    ev(seq, EventBody::SessionStatusRunning {})
}

fn idle(seq: u64, r: StopReason) -> Event {
    ev(seq, EventBody::SessionStatusIdle { stop_reason: r })
}

fn info(name: &str, status: SessionStatus, last_seq: u64) -> SessionInfo {
    SessionInfo {
        id: format!("sesn_{name}"),
        object_type: "session".into(),
        name: Some(name.into()),
        title: None,
        status,
        stop_reason: None,
        model: "anthropic/claude-sonnet-4-6".into(),
        workspace: "/w".into(),
        created_at: T0.into(),
        updated_at: T0.into(),
        archived_at: None,
        last_seq,
        usage: SessionUsage {
            tokens: ModelUsage {
                input_tokens: 1200,
                output_tokens: 345,
                cost_usd: Some(0.0123),
                ..ModelUsage::default()
            },
            model_requests: 2,
            unpriced_requests: 0,
        },
        attached_clients: 1,
        read_only_clients: 0,
        forked_from: None,
        agent: None,
        environment_id: None,
        sandbox: None,
        outcome_evaluations: Vec::new(),
        deployment_id: None,
        context_window: None,
        waiting_checkpoints: 0,
    }
}

fn state(w: u16, h: u16) -> State {
    let mut s = State::new("sesn_1", Keys::default(), false, w, h);
    s.now = now();
    update(
        &mut s,
        Msg::Net(NetMsg::Info(Box::new(info("demo", SessionStatus::Idle, 0)))),
    );
    update(&mut s, Msg::Net(NetMsg::Conn(ConnState::Connected)));
    s
}

fn feed(s: &mut State, events: &[Event]) {
    for e in events {
        update(s, Msg::Net(NetMsg::Event(Box::new(e.clone()))));
    }
}

fn key(s: &mut State, code: KeyCode) -> Vec<Effect> {
    update(s, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn key_m(s: &mut State, code: KeyCode, m: KeyModifiers) -> Vec<Effect> {
    update(s, Msg::Key(KeyEvent::new(code, m)))
}

fn typ(s: &mut State, text: &str) {
    for c in text.chars() {
        key(s, KeyCode::Char(c));
    }
}

fn frame(s: &State) -> String {
    let mut t = Terminal::new(TestBackend::new(s.width, s.height)).unwrap();
    t.draw(|f| view::draw_session(f, s)).unwrap();
    t.backend().to_string()
}

/// Snapshots the same scene at both sizes.
fn snap_both(name: &str, build: impl Fn(&mut State)) {
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let mut s = state(w, h);
        build(&mut s);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), frame(&s));
    }
}

fn long_session() -> Vec<Event> {
    let mut evs = Vec::new();
    let mut seq = 0;
    for i in 0..30 {
        seq += 1;
        evs.push(user(seq, &format!("question {i}")));
        seq += 1;
        evs.push(agent(
            seq,
            &format!("answer {i}: line one\n\nline two of answer {i}"),
        ));
    }
    evs
}

// ---- update: follow / scroll ----

#[test]
fn new_output_never_moves_a_scrolled_up_view_and_counts_new_items() {
    let mut s = state(80, 24);
    feed(&mut s, &long_session());
    assert_eq!(s.scroll, Scroll::Follow);
    key(&mut s, KeyCode::PageUp);
    let Scroll::At { item, line } = s.scroll else {
        panic!("PgUp must leave follow mode")
    };
    feed(&mut s, &[user(61, "later"), agent(62, "later answer")]);
    assert_eq!(
        s.scroll,
        Scroll::At { item, line },
        "the view must stay where the user put it"
    );
    assert_eq!(s.new_below, 2);
    assert!(frame(&s).contains("↓ 2 new"));
    key(&mut s, KeyCode::End);
    assert_eq!(s.scroll, Scroll::Follow);
    assert_eq!(s.new_below, 0);
    assert!(frame(&s).contains("later answer"));
}

#[test]
fn paging_down_to_the_bottom_resumes_following() {
    let mut s = state(80, 24);
    feed(&mut s, &long_session());
    key(&mut s, KeyCode::PageUp);
    key(&mut s, KeyCode::PageUp);
    assert_ne!(s.scroll, Scroll::Follow);
    key(&mut s, KeyCode::PageDown);
    key(&mut s, KeyCode::PageDown);
    assert_eq!(s.scroll, Scroll::Follow);
    // The wheel works the same way.
    let wheel = |kind| {
        Msg::Mouse(MouseEvent {
            kind,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        })
    };
    update(&mut s, wheel(MouseEventKind::ScrollUp));
    assert_ne!(s.scroll, Scroll::Follow);
    update(&mut s, wheel(MouseEventKind::ScrollDown));
    assert_eq!(s.scroll, Scroll::Follow);
}

#[test]
fn scrolling_to_the_top_of_a_tail_pages_older_events_in_and_keeps_the_view() {
    let mut s = state(80, 24);
    let all = long_session();
    let (older, tail) = all.split_at(40);
    update(
        &mut s,
        Msg::Net(NetMsg::Tail {
            events: tail.to_vec(),
            has_older: true,
        }),
    );
    assert!(!frame(&s).contains("question 0"));
    let mut fx = Vec::new();
    for _ in 0..20 {
        fx.extend(key(&mut s, KeyCode::PageUp));
    }
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::LoadOlder { before_seq: 41 })],
        "one page request, from the first loaded seq"
    );
    let before = frame(&s);
    assert!(
        before
            .lines()
            .next()
            .unwrap()
            .contains("loading older events"),
        "{before}"
    );
    update(
        &mut s,
        Msg::Net(NetMsg::Older {
            events: older.to_vec(),
            has_older: false,
        }),
    );
    let after = frame(&s);
    // What was under the loading row is now the top row: the view did not jump.
    assert_eq!(after.lines().next(), before.lines().nth(1), "{after}");
    key(&mut s, KeyCode::Home);
    assert!(frame(&s).contains("question 0"));
}

#[test]
fn replayed_events_after_a_reconnect_are_not_shown_twice() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "hi"), agent(2, "hello there")]);
    let n = s.transcript.items.len();
    feed(
        &mut s,
        &[user(1, "hi"), agent(2, "hello there"), agent(3, "more")],
    );
    assert_eq!(s.transcript.items.len(), n + 1);
    assert_eq!(frame(&s).matches("hello there").count(), 1);
}

#[test]
fn snapshot_then_covered_deltas_do_not_repeat_text() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "hi"), running(2)]);
    let snap = Snapshot {
        session_id: "sesn_1".into(),
        delta_n: 5,
        message_text: Some("Hello wor".into()),
        ..Snapshot::default()
    };
    update(&mut s, Msg::Net(NetMsg::Snapshot(snap)));
    let d = |n, t: &str| {
        Msg::Net(NetMsg::Delta(Delta {
            session_id: "sesn_1".into(),
            n,
            kind: DeltaKind::Text {
                index: 0,
                text: t.into(),
            },
        }))
    };
    update(&mut s, d(5, "wor"));
    update(&mut s, d(6, "ld"));
    assert!(frame(&s).contains("Hello world"), "{}", frame(&s));
    feed(&mut s, &[agent(3, "Hello world!")]);
    let f = frame(&s);
    assert_eq!(f.matches("Hello world").count(), 1, "{f}");
}

// ---- update: search ----

#[test]
fn search_finds_jumps_and_cycles_with_n() {
    let mut s = state(80, 24);
    feed(&mut s, &long_session());
    key(&mut s, KeyCode::Char('/'));
    assert!(s.search.editing);
    typ(&mut s, "answer 3:");
    key(&mut s, KeyCode::Enter);
    assert!(!s.search.editing);
    let first = s.search.current.expect("a match");
    assert!(frame(&s).contains("answer 3: line one"));
    // "answer 3:" appears once: n wraps to the same match.
    key(&mut s, KeyCode::Char('n'));
    assert_eq!(s.search.current, Some(first));
    // A query with many matches: N goes back, n forward.
    key(&mut s, KeyCode::Esc);
    assert!(s.search.query.is_empty());
    key(&mut s, KeyCode::Char('/'));
    typ(&mut s, "question");
    key(&mut s, KeyCode::Enter);
    let last = s.search.current.unwrap();
    key(&mut s, KeyCode::Char('N'));
    let before = s.search.current.unwrap();
    assert!(before < last);
    key(&mut s, KeyCode::Char('n'));
    assert_eq!(s.search.current, Some(last));
    assert!(
        s.composer.is_empty(),
        "n/N must not be typed while searching"
    );
}

// ---- update: composer and history ----

#[test]
fn enter_sends_alt_enter_adds_a_line_and_paste_never_sends() {
    let mut s = state(80, 24);
    typ(&mut s, "one");
    key_m(&mut s, KeyCode::Enter, KeyModifiers::ALT);
    typ(&mut s, "two");
    update(&mut s, Msg::Paste("\nthree\nfour".into()));
    let fx = key(&mut s, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::Send("one\ntwo\nthree\nfour".into()))]
    );
    assert!(s.composer.is_empty());
    assert!(
        key(&mut s, KeyCode::Enter).is_empty(),
        "an empty composer sends nothing"
    );
}

#[test]
fn history_recalls_sent_messages_with_up_and_down() {
    let mut s = state(80, 24);
    for m in ["first", "second"] {
        typ(&mut s, m);
        key(&mut s, KeyCode::Enter);
    }
    key(&mut s, KeyCode::Up);
    assert_eq!(s.composer.lines(), ["second"]);
    key(&mut s, KeyCode::Up);
    assert_eq!(s.composer.lines(), ["first"]);
    key(&mut s, KeyCode::Down);
    assert_eq!(s.composer.lines(), ["second"]);
    key(&mut s, KeyCode::Down);
    assert!(s.composer.is_empty());
}

// ---- update: detach and interrupt keys ----

#[test]
fn detach_is_the_chord_and_only_the_chord() {
    let mut s = state(80, 24);
    assert!(key_m(&mut s, KeyCode::Char('b'), KeyModifiers::CONTROL).is_empty());
    assert_eq!(key(&mut s, KeyCode::Char('d')), vec![Effect::Detach]);
    // prefix + another key: nothing, and that key is not typed.
    key_m(&mut s, KeyCode::Char('b'), KeyModifiers::CONTROL);
    assert!(key(&mut s, KeyCode::Char('x')).is_empty());
    assert!(s.composer.is_empty());
    // plain d types a d.
    assert!(key(&mut s, KeyCode::Char('d')).is_empty());
    assert_eq!(s.composer.lines(), ["d"]);
    // SIGHUP is a detach.
    assert_eq!(update(&mut s, Msg::Hangup), vec![Effect::Detach]);
    // A single-key binding from config.
    let mut s = State::new(
        "x",
        Keys {
            detach: Keys::parse_detach("ctrl-q").unwrap(),
        },
        false,
        80,
        24,
    );
    assert_eq!(
        key_m(&mut s, KeyCode::Char('q'), KeyModifiers::CONTROL),
        vec![Effect::Detach]
    );
}

#[test]
fn esc_interrupts_only_on_the_second_press_and_ctrl_c_never_does() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "go"), running(2)]);
    for _ in 0..3 {
        let fx = key_m(&mut s, KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert!(fx.is_empty(), "ctrl-c must not interrupt or detach: {fx:?}");
    }
    assert!(key(&mut s, KeyCode::Esc).is_empty());
    assert!(s.interrupt_armed);
    assert!(frame(&s).contains("press esc again"));
    // Any other key disarms.
    key(&mut s, KeyCode::Char('x'));
    assert!(!s.interrupt_armed);
    key(&mut s, KeyCode::Esc);
    assert_eq!(key(&mut s, KeyCode::Esc), vec![Effect::Net(Cmd::Interrupt)]);
    // Idle: esc does nothing at all.
    feed(&mut s, &[idle(3, StopReason::Interrupted)]);
    assert_eq!(
        s.notice, None,
        "the 'interrupting…' notice ends with the turn"
    );
    assert!(key(&mut s, KeyCode::Esc).is_empty());
    assert!(key(&mut s, KeyCode::Esc).is_empty());
}

#[test]
fn requires_action_opens_the_approval_modal_and_answers_go_out() {
    let mut s = state(80, 24);
    feed(
        &mut s,
        &[
            user(1, "delete it"),
            running(2),
            ask_use(3, "bash", json!({"command": "rm -rf build"})),
            idle(
                4,
                StopReason::RequiresAction {
                    event_ids: vec!["sevt_0003".into()],
                },
            ),
        ],
    );
    assert!(matches!(s.overlay, Overlay::Approval { .. }));
    let fx = key(&mut s, KeyCode::Char('a'));
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::Confirm {
            tool_use_id: "sevt_0003".into(),
            allow: true,
            deny_message: None,
        })]
    );
    assert_eq!(s.overlay, Overlay::None);
}

fn two_asks(s: &mut State) {
    feed(
        s,
        &[
            user(1, "clean up"),
            running(2),
            ask_use(3, "bash", json!({"command": "rm -rf build"})),
            ask_use(4, "bash", json!({"command": "git clean -fdx"})),
            idle(
                5,
                StopReason::RequiresAction {
                    event_ids: vec!["sevt_0003".into(), "sevt_0004".into()],
                },
            ),
        ],
    );
}

#[test]
fn n_asks_why_then_denies_with_the_message_and_esc_steps_back() {
    let mut s = state(80, 24);
    two_asks(&mut s);
    assert!(
        key(&mut s, KeyCode::Char('n')).is_empty(),
        "n only opens the prompt"
    );
    for c in "no rm".chars() {
        assert!(key(&mut s, KeyCode::Char(c)).is_empty());
    }
    key(&mut s, KeyCode::Backspace);
    key(&mut s, KeyCode::Backspace);
    for c in "git".chars() {
        key(&mut s, KeyCode::Char(c));
    }
    assert_eq!(
        key(&mut s, KeyCode::Enter),
        vec![Effect::Net(Cmd::Confirm {
            tool_use_id: "sevt_0003".into(),
            allow: false,
            deny_message: Some("no git".into()),
        })]
    );
    // The other call is still there; esc in the prompt goes back without sending.
    assert!(
        matches!(&s.overlay, Overlay::Approval { ids, draft: None, .. } if ids == &["sevt_0004".to_string()])
    );
    key(&mut s, KeyCode::Char('n'));
    assert!(key(&mut s, KeyCode::Esc).is_empty());
    assert!(matches!(&s.overlay, Overlay::Approval { draft: None, .. }));
    // An empty reason denies without a message.
    key(&mut s, KeyCode::Char('n'));
    assert_eq!(
        key(&mut s, KeyCode::Enter),
        vec![Effect::Net(Cmd::Confirm {
            tool_use_id: "sevt_0004".into(),
            allow: false,
            deny_message: None,
        })]
    );
    assert_eq!(s.overlay, Overlay::None);
    // Dismissed answers stay dismissed: Esc closes it with a hint.
    let mut s = state(80, 24);
    two_asks(&mut s);
    key(&mut s, KeyCode::Esc);
    assert_eq!(s.overlay, Overlay::None);
    assert!(s.notice.as_deref().unwrap().contains("tether approve"));
}

#[test]
fn an_answer_from_another_client_takes_the_call_off_the_modal() {
    let mut s = state(80, 24);
    two_asks(&mut s);
    feed(
        &mut s,
        &[ev(
            6,
            EventBody::UserToolConfirmation {
                tool_use_id: "sevt_0003".into(),
                result: tether_proto::ConfirmationResult::Allow,
                deny_message: None,
            },
        )],
    );
    assert!(
        matches!(&s.overlay, Overlay::Approval { ids, .. } if ids == &["sevt_0004".to_string()])
    );
    feed(
        &mut s,
        &[ev(
            7,
            EventBody::UserToolConfirmation {
                tool_use_id: "sevt_0004".into(),
                result: tether_proto::ConfirmationResult::Deny,
                deny_message: None,
            },
        )],
    );
    assert_eq!(s.overlay, Overlay::None);
}

#[test]
fn snapshot_approval_deny_prompt() {
    snap_both("approval_deny", |s| {
        two_asks(s);
        key(s, KeyCode::Char('n'));
        for c in "use make clean".chars() {
            key(s, KeyCode::Char(c));
        }
    });
}

/// A bash call whose command wraps three times in an 80-column modal.
fn long_ask(s: &mut State) {
    let command = "cargo build --release --workspace --all-targets --locked && \
        rsync -av --delete target/release/tetherd target/release/tether deploy@build-host-01:/srv/tether/bin/ && \
        ssh deploy@build-host-01 'systemctl --user restart tetherd && journalctl --user -u tetherd -n 50'";
    feed(
        s,
        &[
            user(1, "ship it"),
            running(2),
            ask_use(3, "bash", json!({ "command": command })),
            idle(
                4,
                StopReason::RequiresAction {
                    event_ids: vec!["sevt_0003".into()],
                },
            ),
        ],
    );
}

/// A write call whose input is far taller than the screen.
fn tall_ask(s: &mut State) {
    let content: String = (1..=60)
        .map(|n| format!("line {n} of the new file\n"))
        .collect();
    feed(
        s,
        &[
            user(1, "write it"),
            running(2),
            ask_use(
                3,
                "write",
                json!({ "path": "notes.txt", "content": content }),
            ),
            idle(
                4,
                StopReason::RequiresAction {
                    event_ids: vec!["sevt_0003".into()],
                },
            ),
        ],
    );
}

#[test]
fn snapshot_approval_long_command() {
    snap_both("approval_long_command", |s| {
        long_ask(s);
    });
}

#[test]
fn snapshot_approval_long_command_deny_reason() {
    snap_both("approval_long_command_deny", |s| {
        long_ask(s);
        key(s, KeyCode::Char('n'));
        typ(s, "not on the build host");
    });
}

#[test]
fn a_modal_taller_than_the_screen_scrolls_and_keeps_hints_and_reason_visible() {
    let mut s = state(80, 24);
    tall_ask(&mut s);
    let top = frame(&s);
    assert!(top.contains("line 1 of the new file"), "{top}");
    assert!(!top.contains("line 60 of the new file"), "{top}");
    assert!(top.contains("y allow · n deny"), "hints on screen:\n{top}");
    assert!(top.contains("pgup/pgdn scroll"), "says it scrolls:\n{top}");
    for _ in 0..20 {
        key(&mut s, KeyCode::PageDown);
    }
    let bottom = frame(&s);
    assert!(bottom.contains("line 60 of the new file"), "{bottom}");
    assert!(bottom.contains("y allow · n deny"), "{bottom}");
    // PageUp from the bottom moves at once (no overshoot to climb back through).
    key(&mut s, KeyCode::PageUp);
    assert_ne!(frame(&s), bottom);
    // The reason being typed stays on screen however far the body scrolled.
    key(&mut s, KeyCode::Char('n'));
    typ(&mut s, "too big");
    let typing = frame(&s);
    assert!(typing.contains("Why deny?"), "{typing}");
    assert!(typing.contains("too big▏"), "{typing}");
    assert!(typing.contains("enter deny"), "{typing}");
}

#[test]
fn snapshot_approval_taller_than_the_screen() {
    snap_both("approval_tall", |s| {
        tall_ask(s);
        key(s, KeyCode::PageDown);
    });
}

#[test]
fn ctrl_a_reopens_an_approval_put_away_with_esc() {
    let mut s = state(80, 24);
    two_asks(&mut s);
    key(&mut s, KeyCode::Esc);
    assert_eq!(s.overlay, Overlay::None);
    assert!(s.notice.as_deref().unwrap().contains("ctrl-a"));
    assert!(
        frame(&s).contains("ctrl-a"),
        "the footer says how to reopen it"
    );
    assert!(key_m(&mut s, KeyCode::Char('a'), KeyModifiers::CONTROL).is_empty());
    assert!(
        matches!(&s.overlay, Overlay::Approval { ids, .. } if ids.len() == 2),
        "{:?}",
        s.overlay
    );
    // Answered elsewhere while put away: nothing comes back, ctrl-a is the composer's again.
    key(&mut s, KeyCode::Esc);
    for (seq, id) in [(6, "sevt_0003"), (7, "sevt_0004")] {
        feed(
            &mut s,
            &[ev(
                seq,
                EventBody::UserToolConfirmation {
                    tool_use_id: id.into(),
                    result: tether_proto::ConfirmationResult::Allow,
                    deny_message: None,
                },
            )],
        );
    }
    assert!(s.put_away.is_empty());
    key_m(&mut s, KeyCode::Char('a'), KeyModifiers::CONTROL);
    assert_eq!(s.overlay, Overlay::None);
    assert!(!frame(&s).contains("ctrl-a"));
}

#[test]
fn footer_hints_are_never_cut_at_80_columns_the_least_useful_go_first() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "go"), running(2)]);
    s.put_away = vec!["sevt_0009".into()];
    s.search.query = "needle".into();
    let screen = frame(&s);
    let footer = screen.lines().last().unwrap().trim_matches('"').trim_end();
    let whole = [
        "ctrl-a answer (1 waiting)",
        "ctrl-b d detach",
        "esc esc interrupt",
        "? help",
        "n/N next/prev match",
        "ctrl-o pager",
        "pgup/pgdn scroll",
    ];
    for part in footer.trim().split(" · ") {
        assert!(
            whole.contains(&part),
            "cut or unknown hint {part:?} in {footer:?}"
        );
    }
    for must in ["ctrl-a answer", "? help", "detach", "esc esc interrupt"] {
        assert!(footer.contains(must), "{must} missing from {footer:?}");
    }
    assert!(
        !footer.contains("pgup/pgdn"),
        "the least useful went first: {footer:?}"
    );
    // Wide enough, everything shows.
    let mut s = state(160, 48);
    feed(&mut s, &[user(1, "go"), running(2)]);
    s.put_away = vec!["sevt_0009".into()];
    let wide = frame(&s);
    assert!(
        wide.lines()
            .last()
            .unwrap()
            .contains("pgup/pgdn scroll · ctrl-o pager")
    );
}

#[test]
fn ctrl_o_gives_the_pager_every_card_expanded_with_colours() {
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let mut s = state(w, h);
        tool_session(&mut s, false);
        let long: String = (1..=40).map(|i| format!("row {i}\n")).collect();
        feed(
            &mut s,
            &[
                user(14, "more"),
                running(15),
                tool_use(16, "bash", json!({"command": "seq 40"})),
                tool_result(17, 16, &long, Some(0)),
                agent(18, "# Done\n\nAll **forty** rows."),
                idle(19, StopReason::EndTurn),
            ],
        );
        assert!(
            !frame(&s).contains("row 20"),
            "collapsed on screen (else the test shows nothing)"
        );
        let fx = key_m(&mut s, KeyCode::Char('o'), KeyModifiers::CONTROL);
        let [Effect::Pager { text, .. }] = fx.as_slice() else {
            panic!("{fx:?}")
        };
        let plain = strip_ansi(text);
        assert!(
            plain.contains("row 20") && plain.contains("row 40"),
            "{plain}"
        );
        assert!(!plain.contains("ctrl-e expands"), "{plain}");
        // Colours kept: the user's bar is blue, their words bold, a failed call red.
        assert!(text.contains("\x1b[34m┃ \x1b[0m"), "{text:?}");
        assert!(text.contains("\x1b[1mmore\x1b[0m"), "{text:?}");
        assert!(
            text.contains("\x1b[31m") || text.contains("\x1b[1;31m"),
            "{text:?}"
        );
        // The page is laid out at the terminal's width.
        assert!(plain.lines().all(|l| l.chars().count() <= usize::from(w)));
        insta::assert_snapshot!(format!("pager_expanded_{w}x{h}"), plain);
    }
}

#[test]
fn jump_between_user_messages_and_copy_the_focused_one() {
    let mut s = state(80, 24);
    feed(&mut s, &long_session());
    for _ in 0..5 {
        key_m(&mut s, KeyCode::Up, KeyModifiers::CONTROL);
    }
    let f = s.focus.unwrap();
    assert!(s.transcript.items[f].is_user());
    assert_eq!(s.anchor(), (f, 0), "the message is at the top of the view");
    assert_eq!(
        key(&mut s, KeyCode::Char('y')),
        vec![Effect::Copy("question 25".into())]
    );
    for _ in 0..5 {
        key_m(&mut s, KeyCode::Down, KeyModifiers::CONTROL);
    }
    assert_eq!(s.scroll, Scroll::Follow);
}

// ---- snapshots ----

fn tool_session(s: &mut State, expanded: bool) {
    let out: String = (1..=12).map(|i| format!("line {i}\n")).collect();
    feed(
        s,
        &[
            user(1, "show me the tools"),
            running(2),
            tool_use(3, "bash", json!({"command": "seq 1 12"})),
            tool_result(4, 3, &out, Some(0)),
            tool_use(5, "read", json!({"file_path": "src/main.rs"})),
            tool_result(6, 5, "fn main() {}\n// end\n", None),
            tool_use(
                7,
                "edit",
                json!({"file_path": "notes.md", "old_string": "hello", "new_string": "hello, world"}),
            ),
            tool_result(8, 7, "edited", None),
            tool_use(
                9,
                "write",
                json!({"file_path": "f.txt", "content": "a\nb\n"}),
            ),
            tool_result(10, 9, "wrote 4 bytes", None),
            tool_use(11, "bash", json!({"command": "false"})),
            tool_result(12, 11, "boom", Some(1)),
            idle(13, StopReason::EndTurn),
        ],
    );
    if expanded {
        for i in 0..s.transcript.items.len() {
            s.transcript.items[i].expanded = true;
            s.transcript.items[i].touch();
        }
        // Show the top: the expanded cards are taller than the screen.
        update(
            s,
            Msg::Key(KeyEvent::new(KeyCode::Home, KeyModifiers::NONE)),
        );
    }
}

#[test]
fn snapshot_empty_session() {
    snap_both("empty_session", |_| {});
}

#[test]
fn snapshot_streaming_message() {
    snap_both("streaming", |s| {
        feed(s, &[user(1, "Explain *markdown*"), running(2)]);
        let text = "# Plan\n\nFirst **bold**, then `code` and a [link](http://x).\n\n- one\n- two\n\n```rust\nfn main() { let x = 1; }\n```\n\nStill writ";
        update(
            s,
            Msg::Net(NetMsg::Delta(Delta {
                session_id: "sesn_1".into(),
                n: 1,
                kind: DeltaKind::Text {
                    index: 0,
                    text: text.into(),
                },
            })),
        );
    });
}

#[test]
fn snapshot_tool_cards_collapsed() {
    snap_both("tools_collapsed", |s| tool_session(s, false));
}

#[test]
fn snapshot_tool_cards_expanded() {
    snap_both("tools_expanded", |s| tool_session(s, true));
}

#[test]
fn snapshot_running_bash_with_live_output() {
    snap_both("bash_running", |s| {
        feed(
            s,
            &[
                user(1, "loop"),
                running(2),
                tool_use(
                    3,
                    "bash",
                    json!({"command": "for i in $(seq 9); do echo step $i; done"}),
                ),
            ],
        );
        let out: String = (1..=9).map(|i| format!("step {i}\n")).collect();
        update(
            s,
            Msg::Net(NetMsg::Delta(Delta {
                session_id: "sesn_1".into(),
                n: 1,
                kind: DeltaKind::ToolOutput {
                    tool_use_id: "sevt_0003".into(),
                    text: out,
                },
            })),
        );
    });
}

#[test]
fn snapshot_error_with_retry() {
    snap_both("error_retry", |s| {
        feed(s, &[user(1, "hi"), running(2)]);
        feed(
            s,
            &[ev(
                3,
                EventBody::SessionError {
                    error: SessionErrorInfo {
                        kind: "model_overloaded_error".into(),
                        message: "Overloaded".into(),
                        retry_status: RetryStatus {
                            kind: RetryStatusKind::Retrying,
                        },
                        attempt: Some(2),
                        max_attempts: Some(5),
                        retry_in_ms: Some(4000),
                        mcp_server_name: None,
                    },
                },
            )],
        );
    });
}

#[test]
fn snapshot_search_highlights() {
    snap_both("search", |s| {
        feed(s, &long_session());
        key(s, KeyCode::Char('/'));
        typ(s, "answer 2");
        key(s, KeyCode::Enter);
    });
}

#[test]
fn snapshot_help_overlay() {
    snap_both("help", |s| {
        key(s, KeyCode::Char('?'));
    });
}

#[test]
fn snapshot_approval_modal() {
    snap_both("approval", |s| {
        feed(
            s,
            &[
                user(1, "clean up"),
                running(2),
                ask_use(3, "bash", json!({"command": "rm -rf build"})),
                idle(
                    4,
                    StopReason::RequiresAction {
                        event_ids: vec!["sevt_0003".into()],
                    },
                ),
            ],
        );
    });
}

#[test]
fn snapshot_new_below_indicator() {
    snap_both("new_below", |s| {
        feed(s, &long_session());
        key(s, KeyCode::PageUp);
        feed(
            s,
            &[
                user(61, "more"),
                agent(62, "more answer"),
                user(63, "again"),
            ],
        );
    });
}

#[test]
fn snapshot_reconnecting_banner() {
    snap_both("reconnecting", |s| {
        feed(s, &[user(1, "hi"), agent(2, "hello")]);
        update(
            s,
            Msg::Net(NetMsg::Conn(ConnState::Reconnecting {
                attempt: 3,
                retry_in_ms: 800,
                reason: "tetherd closed the connection".into(),
            })),
        );
    });
}

fn lose_daemon(s: &mut State) {
    update(
        s,
        Msg::Net(NetMsg::Conn(ConnState::Reconnecting {
            attempt: 2,
            retry_in_ms: 1600,
            reason: "connection refused".into(),
        })),
    );
}

#[test]
fn snapshot_disconnected_while_running_with_a_draft() {
    snap_both("disconnected", |s| {
        feed(s, &[user(1, "hi"), running(2), agent(3, "working on it")]);
        typ(s, "and then the docs");
        lose_daemon(s);
        update(s, Msg::Tick(now() + Duration::from_secs(30)));
    });
}

#[test]
fn disconnected_the_spinner_and_timers_stop_and_the_banner_says_how_to_start_tetherd() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "hi"), running(2)]);
    update(&mut s, Msg::Tick(now() + Duration::from_secs(5)));
    assert!(s.needs_tick());
    lose_daemon(&mut s);
    assert!(!s.needs_tick(), "nothing moves while the daemon is away");
    let before = frame(&s);
    assert!(before.contains("tether daemon start"), "{before}");
    assert!(before.contains("◌ running"), "a still spinner:\n{before}");
    for n in 1..=5 {
        update(&mut s, Msg::Tick(now() + Duration::from_secs(5 + n * 10)));
    }
    assert_eq!(frame(&s), before, "ticks change nothing while disconnected");
    // Back: the clock and the spinner move again.
    update(&mut s, Msg::Net(NetMsg::Conn(ConnState::Connected)));
    update(&mut s, Msg::Tick(now() + Duration::from_secs(60)));
    let after = frame(&s);
    assert!(
        !after.contains("tether daemon start") && !after.contains("◌"),
        "{after}"
    );
}

#[test]
fn enter_while_disconnected_keeps_the_draft_and_sends_it_once_back() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "hi"), agent(2, "hello")]);
    lose_daemon(&mut s);
    typ(&mut s, "ship it");
    assert!(key(&mut s, KeyCode::Enter).is_empty(), "nothing goes out");
    assert_eq!(s.composer.lines().join("\n"), "ship it");
    assert!(s.notice.as_deref().unwrap().contains("not connected"));
    update(&mut s, Msg::Net(NetMsg::Conn(ConnState::Connected)));
    assert_eq!(
        key(&mut s, KeyCode::Enter),
        vec![Effect::Net(Cmd::Send("ship it".into()))]
    );
}

/// The transcript shows before the attach answers; a message sent in that moment is not
/// refused as "not connected" but goes out once the connection is made.
#[test]
fn enter_while_the_first_connection_is_made_sends_once_it_is() {
    let mut s = State::new("sesn_1", Keys::default(), false, 80, 24);
    feed(&mut s, &[user(1, "hi"), agent(2, "hello")]);
    assert_eq!(s.conn, ConnState::Connecting);
    typ(&mut s, "run the slow thing");
    assert!(key(&mut s, KeyCode::Enter).is_empty(), "not yet");
    assert_eq!(
        s.composer.lines().join(""),
        "",
        "taken, not left as a draft"
    );
    assert!(!s.notice.as_deref().unwrap_or("").contains("not connected"));
    assert_eq!(
        update(&mut s, Msg::Net(NetMsg::Conn(ConnState::Connected))),
        vec![Effect::Net(Cmd::Send("run the slow thing".into()))]
    );
    assert!(s.send_on_connect.is_empty());
    // Lost later, the rule is the old one: the draft stays.
    lose_daemon(&mut s);
    typ(&mut s, "ship it");
    assert!(key(&mut s, KeyCode::Enter).is_empty());
    assert_eq!(s.composer.lines().join("\n"), "ship it");
}

fn restart_mid_reply(s: &mut State) {
    feed(s, &[user(1, "write the report"), running(2)]);
    let d = |n, t: &str| {
        Msg::Net(NetMsg::Delta(Delta {
            session_id: "sesn_1".into(),
            n,
            kind: DeltaKind::Text {
                index: 0,
                text: t.into(),
            },
        }))
    };
    update(s, d(1, "The first half of the rep"));
    lose_daemon(s);
    // The daemon is back: it replays what it stored, then the reply streams again.
    update(s, Msg::Net(NetMsg::Conn(ConnState::Connected)));
    feed(
        s,
        &[ev(3, EventBody::SessionStatusRescheduled {}), running(4)],
    );
    update(
        s,
        Msg::Net(NetMsg::Snapshot(Snapshot {
            session_id: "sesn_1".into(),
            delta_n: 1,
            message_text: Some("The report, ".into()),
            ..Snapshot::default()
        })),
    );
    update(s, d(2, "again from the top."));
}

#[test]
fn a_reply_streamed_again_after_a_restart_renders_below_the_resumed_marker() {
    let mut s = state(80, 24);
    restart_mid_reply(&mut s);
    let f = frame(&s);
    let marker = f.find("resumed after a daemon restart").expect(&f);
    let old = f.find("The first half of the rep").expect(&f);
    let new = f.find("The report, again from the top.").expect(&f);
    assert!(old < marker && marker < new, "{f}");
    assert!(f.contains("cut off by the daemon restart"), "{f}");
    // The stored reply takes the place of the streamed one, below the marker.
    feed(&mut s, &[agent(5, "The report, again from the top. Done.")]);
    let f = frame(&s);
    let marker = f.find("resumed after a daemon restart").expect(&f);
    let done = f.find("again from the top. Done.").expect(&f);
    assert!(marker < done, "{f}");
    assert_eq!(f.matches("again from the top").count(), 1, "{f}");
}

#[test]
fn snapshot_resumed_after_a_restart() {
    snap_both("resumed_below_marker", restart_mid_reply);
}

fn read_only_state(w: u16, h: u16) -> State {
    let mut s = State::new("sesn_1", Keys::default(), true, w, h);
    s.now = now();
    update(
        &mut s,
        Msg::Net(NetMsg::Info(Box::new(info("demo", SessionStatus::Idle, 0)))),
    );
    update(&mut s, Msg::Net(NetMsg::Conn(ConnState::Connected)));
    feed(&mut s, &[user(1, "hi"), agent(2, "hello")]);
    s
}

#[test]
fn a_read_only_clients_composer_is_visibly_disabled_and_takes_no_text() {
    let mut s = read_only_state(80, 24);
    typ(&mut s, "hello");
    update(&mut s, Msg::Paste("pasted".into()));
    assert!(key(&mut s, KeyCode::Enter).is_empty());
    assert!(
        s.composer.lines().concat().is_empty(),
        "nothing typed into a box it cannot send"
    );
    let f = frame(&s);
    assert!(f.contains("⊘ read-only: watching"), "{f}");
    assert!(!f.contains("Message the agent"), "{f}");
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        insta::assert_snapshot!(format!("read_only_{w}x{h}"), frame(&read_only_state(w, h)));
    }
}

fn at(mut e: Event, t: &str) -> Event {
    e.processed_at = Some(t.into());
    e
}

#[test]
fn a_turn_ends_with_how_long_it_worked_approval_waits_included() {
    let mut s = state(80, 24);
    feed(
        &mut s,
        &[
            user(1, "go"),
            at(running(2), "2026-11-25T08:00:00Z"),
            ask_use(3, "bash", json!({"command": "ls"})),
            at(
                idle(
                    4,
                    StopReason::RequiresAction {
                        event_ids: vec!["sevt_0003".into()],
                    },
                ),
                "2026-11-25T08:00:02Z",
            ),
            at(running(5), "2026-11-25T08:00:04Z"),
            at(agent(6, "done"), "2026-11-25T08:00:05Z"),
            at(idle(7, StopReason::EndTurn), "2026-11-25T08:00:06Z"),
            user(8, "again"),
            at(running(9), "2026-11-25T08:01:00Z"),
            at(idle(10, StopReason::Interrupted), "2026-11-25T08:01:03Z"),
        ],
    );
    let f = frame(&s);
    assert_eq!(
        f.matches("worked for 6 s").count(),
        1,
        "from the first running:\n{f}"
    );
    assert!(
        f.contains("turn ended: interrupted · worked for 3 s"),
        "{f}"
    );
    // Under a second: no line (most test turns, and quick answers).
    let mut s = state(80, 24);
    feed(
        &mut s,
        &[user(1, "hi"), running(2), idle(3, StopReason::EndTurn)],
    );
    assert!(!frame(&s).contains("worked for"));
}

#[test]
fn a_tool_card_without_a_run_time_shows_the_time_from_call_to_result() {
    let mut s = state(80, 24);
    let mut agent_result = tool_result(4, 3, "spawned the reviewer", None);
    if let EventBody::AgentToolResult { duration_ms, .. } = &mut agent_result.body {
        *duration_ms = 0;
    }
    feed(
        &mut s,
        &[
            user(1, "review it"),
            running(2),
            at(
                tool_use(3, "agent", json!({"agent": "reviewer"})),
                "2026-11-25T08:00:00Z",
            ),
            at(agent_result, "2026-11-25T08:00:04.500Z"),
            tool_use(5, "bash", json!({"command": "true"})),
            tool_result(6, 5, "", Some(0)),
        ],
    );
    let f = frame(&s);
    assert!(f.contains("✓ 4.5 s"), "{f}");
    assert!(!f.contains("0 ms"), "{f}");
    assert!(
        f.contains("exit 0 · 1.2 s"),
        "the daemon's run time stays: {f}"
    );
}

#[test]
fn the_status_bar_counts_output_tokens_while_text_streams() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "write"), running(2)]);
    assert!(frame(&s).contains("↓345 "), "{}", frame(&s));
    let text = "word ".repeat(800); // 4000 characters ≈ 1000 tokens
    update(
        &mut s,
        Msg::Net(NetMsg::Delta(Delta {
            session_id: "sesn_1".into(),
            n: 1,
            kind: DeltaKind::Text { index: 0, text },
        })),
    );
    let f = frame(&s);
    assert!(f.contains("↓~1.3k "), "345 + ~1000 while streaming:\n{f}");
    // The stored message ends the estimate.
    feed(&mut s, &[agent(3, "done")]);
    assert!(frame(&s).contains("↓345 "), "{}", frame(&s));
}

#[test]
fn snapshot_markdown_headings_tables_and_wrapped_code() {
    snap_both("markdown_rendering", |s| {
        feed(
            s,
            &[
                user(1, "summarise"),
                agent(
                    2,
                    "# Report\n\n## Sizes\n\n| crate | lines | owner |\n|---|---|---|\n| daemon | 41230 | core |\n| tui | 9120 | client team |\n\n### The fix\n\n```rust\n    let reply = client.request::<rpc::SessionSend>(params).await.map_err(|e| anyhow!(\"send failed: {e}\"))?;\n```\n",
                ),
            ],
        );
    });
}

#[test]
fn edit_cards_count_changes_and_show_shared_lines_as_context_write_cards_number_lines() {
    let mut s = state(80, 24);
    feed(
        &mut s,
        &[
            user(1, "fix it"),
            running(2),
            tool_use(
                3,
                "edit",
                json!({"file_path": "src/lib.rs", "old_string": "fn a() {\n    old();\n}", "new_string": "fn a() {\n    new();\n    more();\n}"}),
            ),
            tool_result(
                4,
                3,
                "edited src/lib.rs: replaced 1 occurrence at line 41",
                None,
            ),
            tool_use(
                5,
                "write",
                json!({"file_path": "f.txt", "content": "a\nb\nc\n"}),
            ),
            tool_result(6, 5, "wrote", None),
        ],
    );
    let f = frame(&s);
    for row in [
        "edit src/lib.rs  ✓ 1.2 s +2 −1",
        // Numbered from where the result says it landed.
        "  41   fn a() {",
        "  42 -     old();",
        "  42 +     new();",
        "  43 +     more();",
        "  44   }",
        "write f.txt  ✓ 1.2 s +3",
        "  1 + a",
        "  3 + c",
    ] {
        assert!(f.contains(row), "{row:?} missing:\n{f}");
    }
}

fn picker_frame(p: &Picker, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::picker::draw(f, p)).unwrap();
    t.backend().to_string()
}

fn sessions() -> Vec<SessionInfo> {
    let mut a = info("fix-tests", SessionStatus::Running, 40);
    a.attached_clients = 2;
    let mut b = info("docs", SessionStatus::Idle, 12);
    b.stop_reason = Some(StopReason::RequiresAction {
        event_ids: vec!["sevt_1".into()],
    });
    b.attached_clients = 0;
    let mut c = info("bench", SessionStatus::Idle, 7);
    c.stop_reason = Some(StopReason::RetriesExhausted);
    c.updated_at = "2026-11-25T07:00:00Z".into();
    a.agent = Some(tether_proto::session::AgentPin {
        id: "agent_coder".into(),
        version: 2,
    });
    b.agent = Some(tether_proto::session::AgentPin {
        id: "agent_default".into(),
        version: 1,
    });
    vec![a, b, c]
}

fn agent_names() -> std::collections::HashMap<String, String> {
    [("agent_coder", "coder"), ("agent_default", "default")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn snapshot_picker_empty_and_with_sessions() {
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let mut p = Picker {
            now: Some(now()),
            ..Picker::default()
        };
        super::picker::update(&mut p, PickerMsg::Sessions(Vec::new()));
        insta::assert_snapshot!(format!("picker_empty_{w}x{h}"), picker_frame(&p, w, h));
        super::picker::update(&mut p, PickerMsg::Agents(agent_names()));
        super::picker::update(&mut p, PickerMsg::Sessions(sessions()));
        insta::assert_snapshot!(format!("picker_sessions_{w}x{h}"), picker_frame(&p, w, h));
        // Typing an agent's name filters by it.
        for c in "coder".chars() {
            picker_key(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
        }
        assert_eq!(p.visible().len(), 1);
        picker_key(&mut p, KeyCode::Esc, KeyModifiers::NONE);
        // The new-session form.
        picker_key(&mut p, KeyCode::Char('n'), KeyModifiers::CONTROL);
        for c in "fix-ci".chars() {
            picker_key(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
        }
        picker_key(&mut p, KeyCode::Tab, KeyModifiers::NONE);
        for c in "coder".chars() {
            picker_key(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
        }
        insta::assert_snapshot!(format!("picker_new_{w}x{h}"), picker_frame(&p, w, h));
    }
}

#[test]
fn picker_filters_by_typing_attaches_and_confirms_deletes() {
    let mut p = Picker::default();
    super::picker::update(&mut p, PickerMsg::Sessions(sessions()));
    let k =
        |p: &mut Picker, code, m| super::picker::update(p, PickerMsg::Key(KeyEvent::new(code, m)));
    for c in "doc".chars() {
        k(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
    }
    assert_eq!(p.visible().len(), 1);
    assert_eq!(
        k(&mut p, KeyCode::Enter, KeyModifiers::NONE),
        vec![PickerEffect::Attach("sesn_docs".into())]
    );
    // Delete asks first; anything but y keeps it.
    assert!(k(&mut p, KeyCode::Char('d'), KeyModifiers::CONTROL).is_empty());
    assert!(k(&mut p, KeyCode::Char('n'), KeyModifiers::NONE).is_empty());
    k(&mut p, KeyCode::Char('d'), KeyModifiers::CONTROL);
    assert_eq!(
        k(&mut p, KeyCode::Char('y'), KeyModifiers::NONE),
        vec![PickerEffect::Delete("sesn_docs".into())]
    );
    // Esc clears the filter, then quits.
    assert!(k(&mut p, KeyCode::Esc, KeyModifiers::NONE).is_empty());
    assert_eq!(p.visible().len(), 3);
    assert_eq!(
        k(&mut p, KeyCode::Esc, KeyModifiers::NONE),
        vec![PickerEffect::Quit]
    );
    // Create: name, tab, agent, tab, model, tab, directory.
    k(&mut p, KeyCode::Char('n'), KeyModifiers::CONTROL);
    for c in "new1".chars() {
        k(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
    }
    k(&mut p, KeyCode::Tab, KeyModifiers::NONE);
    for c in "coder@2".chars() {
        k(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
    }
    k(&mut p, KeyCode::Tab, KeyModifiers::NONE);
    k(&mut p, KeyCode::Tab, KeyModifiers::NONE);
    for c in "/tmp/w".chars() {
        k(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
    }
    assert!(picker_frame(&p, 80, 24).contains("▶ directory /tmp/w"));
    let expected = super::picker::NewSession {
        name: "new1".into(),
        agent: "coder@2".into(),
        dir: "/tmp/w".into(),
        ..Default::default()
    };
    assert_eq!(
        k(&mut p, KeyCode::Enter, KeyModifiers::NONE),
        vec![PickerEffect::Create(expected)]
    );
}

#[test]
fn search_matches_are_highlighted_in_the_frame() {
    let mut s = state(80, 24);
    feed(
        &mut s,
        &[
            user(1, "find the needle here"),
            agent(2, "no match in this one"),
        ],
    );
    key(&mut s, KeyCode::Char('/'));
    typ(&mut s, "NEEDLE");
    key(&mut s, KeyCode::Enter);
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| view::draw_session(f, &s)).unwrap();
    let buf = t.backend().buffer();
    let cells: Vec<_> = (0..80u16).map(|x| &buf[(x, 0)]).collect();
    let start = (0..74)
        .find(|&x| (x..x + 6).map(|y| cells[y].symbol()).collect::<String>() == "needle")
        .expect("the match is on the first row");
    for (x, cell) in cells.iter().enumerate().skip(start).take(6) {
        assert_eq!(
            cell.bg,
            ratatui::style::Color::Yellow,
            "cell {x} of the current match"
        );
    }
    assert_ne!(
        cells[start - 2].bg,
        ratatui::style::Color::Yellow,
        "text around the match is not highlighted"
    );
}

// ---- transcript model ----

#[test]
fn a_result_whose_call_is_in_an_older_page_gets_its_name_when_that_page_loads() {
    let mut s = state(80, 24);
    let evs = [
        user(1, "go"),
        tool_use(2, "bash", json!({"command": "make"})),
        tool_result(3, 2, "built", Some(0)),
        agent(4, "done"),
    ];
    update(
        &mut s,
        Msg::Net(NetMsg::Tail {
            events: evs[2..].to_vec(),
            has_older: true,
        }),
    );
    assert!(frame(&s).contains("⏺ tool"), "{}", frame(&s));
    update(
        &mut s,
        Msg::Net(NetMsg::Older {
            events: evs[..2].to_vec(),
            has_older: false,
        }),
    );
    let f = frame(&s);
    assert!(f.contains("⏺ bash make"), "{f}");
    assert_eq!(
        f.matches('⏺').count(),
        1,
        "one card for the call and its result:\n{f}"
    );
}

#[test]
fn a_retried_response_replaces_the_partial_text_and_an_interrupted_one_keeps_it() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "hi"), running(2)]);
    let d = |n, kind| {
        Msg::Net(NetMsg::Delta(Delta {
            session_id: "sesn_1".into(),
            n,
            kind,
        }))
    };
    update(
        &mut s,
        d(
            1,
            DeltaKind::MessageStart {
                model_request_start_id: "a".into(),
                message_id: None,
                thinking_id: None,
            },
        ),
    );
    update(
        &mut s,
        d(
            2,
            DeltaKind::Text {
                index: 0,
                text: "first attem".into(),
            },
        ),
    );
    update(
        &mut s,
        d(
            3,
            DeltaKind::MessageStart {
                model_request_start_id: "b".into(),
                message_id: None,
                thinking_id: None,
            },
        ),
    );
    update(
        &mut s,
        d(
            4,
            DeltaKind::Text {
                index: 0,
                text: "second try".into(),
            },
        ),
    );
    let f = frame(&s);
    assert!(
        !f.contains("first attem") && f.contains("second try"),
        "{f}"
    );
    feed(
        &mut s,
        &[
            ev(3, EventBody::UserInterrupt {}),
            idle(4, StopReason::Interrupted),
        ],
    );
    let f = frame(&s);
    assert!(
        f.contains("second try") && f.contains("turn ended: interrupted"),
        "{f}"
    );
}

#[test]
fn no_color_strips_every_colour_but_keeps_the_text() {
    let mut s = state(80, 24);
    feed(
        &mut s,
        &[user(1, "hi"), agent(2, "`code`"), agent(3, CODE_ANSWER)],
    );
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| {
        view::draw_session(f, &s);
        super::palette::apply(f.buffer_mut(), super::palette::Depth::None);
    })
    .unwrap();
    let buf = t.backend().buffer();
    assert!(
        buf.content
            .iter()
            .all(|c| c.fg == ratatui::style::Color::Reset && c.bg == ratatui::style::Color::Reset)
    );
    assert!(t.backend().to_string().contains("code"));
}

#[test]
fn y_types_a_letter_unless_browsing_and_alt_y_always_copies() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "hi"), agent(2, "the answer")]);
    assert!(key(&mut s, KeyCode::Char('y')).is_empty());
    assert_eq!(s.composer.lines(), ["y"]);
    assert_eq!(
        key_m(&mut s, KeyCode::Char('y'), KeyModifiers::ALT),
        vec![Effect::Copy("the answer".into())]
    );
}

#[test]
fn a_custom_tool_call_is_answered_with_its_result_in_the_modal() {
    let mut s = state(80, 24);
    feed(
        &mut s,
        &[
            user(1, "look it up"),
            running(2),
            ev(
                3,
                EventBody::AgentCustomToolUse {
                    name: "lookup".into(),
                    input: json!({"q": 1}),
                },
            ),
            idle(
                4,
                StopReason::RequiresAction {
                    event_ids: vec!["sevt_0003".into()],
                },
            ),
        ],
    );
    assert!(matches!(s.overlay, Overlay::Approval { .. }));
    assert!(frame(&s).contains("y answer · n answer with an error"));
    // y asks for the result; enter sends it as the tool's output.
    assert!(key(&mut s, KeyCode::Char('y')).is_empty());
    typ(&mut s, "{\"hits\": 3}");
    assert!(frame(&s).contains("The tool's result"));
    assert_eq!(
        key(&mut s, KeyCode::Enter),
        vec![Effect::Net(Cmd::CustomResult {
            tool_use_id: "sevt_0003".into(),
            text: "{\"hits\": 3}".into(),
            is_error: false
        })]
    );
    assert_eq!(s.overlay, Overlay::None);
}

#[test]
fn a_custom_tool_can_be_answered_with_an_error() {
    snap_both("custom_tool_error", |s| {
        feed(
            s,
            &[
                user(1, "look it up"),
                running(2),
                ev(
                    3,
                    EventBody::AgentCustomToolUse {
                        name: "lookup".into(),
                        input: json!({"q": "weather"}),
                    },
                ),
                idle(
                    4,
                    StopReason::RequiresAction {
                        event_ids: vec!["sevt_0003".into()],
                    },
                ),
            ],
        );
        key(s, KeyCode::Char('n'));
        typ(s, "service down");
    });
    let mut s = state(80, 24);
    feed(
        &mut s,
        &[
            ev(
                3,
                EventBody::AgentCustomToolUse {
                    name: "lookup".into(),
                    input: json!({}),
                },
            ),
            idle(
                4,
                StopReason::RequiresAction {
                    event_ids: vec!["sevt_0003".into()],
                },
            ),
        ],
    );
    key(&mut s, KeyCode::Char('n'));
    typ(&mut s, "down");
    assert_eq!(
        key(&mut s, KeyCode::Enter),
        vec![Effect::Net(Cmd::CustomResult {
            tool_use_id: "sevt_0003".into(),
            text: "down".into(),
            is_error: true
        })]
    );
}

// ---- rename ----

fn picker_key(p: &mut Picker, code: KeyCode, m: KeyModifiers) -> Vec<PickerEffect> {
    super::picker::update(p, PickerMsg::Key(KeyEvent::new(code, m)))
}

#[test]
fn ctrl_r_renames_the_selected_session_and_esc_or_no_change_sends_nothing() {
    let mut p = Picker::default();
    super::picker::update(&mut p, PickerMsg::Sessions(sessions()));
    // docs needs input: it is listed first.
    picker_key(&mut p, KeyCode::Char('r'), KeyModifiers::CONTROL);
    // The prompt starts from the current name; typing edits it, it does not filter.
    assert_eq!(p.renaming.as_ref().unwrap().name, "docs");
    for c in "-v2".chars() {
        picker_key(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
    }
    assert!(p.filter.is_empty());
    assert_eq!(
        picker_key(&mut p, KeyCode::Enter, KeyModifiers::NONE),
        vec![PickerEffect::Rename {
            id: "sesn_docs".into(),
            name: "docs-v2".into()
        }]
    );
    assert!(p.renaming.is_none());
    // Esc, or the same name, changes nothing.
    picker_key(&mut p, KeyCode::Char('r'), KeyModifiers::CONTROL);
    picker_key(&mut p, KeyCode::Char('x'), KeyModifiers::NONE);
    assert!(picker_key(&mut p, KeyCode::Esc, KeyModifiers::NONE).is_empty());
    assert!(p.renaming.is_none());
    picker_key(&mut p, KeyCode::Char('r'), KeyModifiers::CONTROL);
    assert!(picker_key(&mut p, KeyCode::Enter, KeyModifiers::NONE).is_empty());
    assert_eq!(p.notice.as_deref(), Some("not renamed"));
}

/// Issue 19's picker fields: a space in a name is kept as `-` (not dropped), a directory
/// keeps its spaces, ctrl-u and ctrl-w edit fields and the filter, and Enter on a filter
/// that matches nothing says so instead of opening the new-session form.
#[test]
fn picker_fields_keep_spaces_edit_with_ctrl_u_and_ctrl_w_and_a_dead_filter_opens_nothing() {
    let mut p = Picker::default();
    super::picker::update(&mut p, PickerMsg::Sessions(sessions()));
    let typed = |p: &mut Picker, text: &str| {
        for c in text.chars() {
            picker_key(p, KeyCode::Char(c), KeyModifiers::NONE);
        }
    };
    typed(&mut p, "zzz nothing");
    assert!(picker_key(&mut p, KeyCode::Enter, KeyModifiers::NONE).is_empty());
    assert!(p.creating.is_none(), "no surprise form");
    assert!(
        p.notice
            .as_deref()
            .unwrap()
            .contains("no session matches `zzz nothing`")
    );
    picker_key(&mut p, KeyCode::Char('w'), KeyModifiers::CONTROL);
    assert_eq!(p.filter, "zzz ");
    picker_key(&mut p, KeyCode::Char('u'), KeyModifiers::CONTROL);
    assert_eq!(p.filter, "");

    picker_key(&mut p, KeyCode::Char('n'), KeyModifiers::CONTROL);
    typed(&mut p, "fix the tests");
    assert_eq!(p.creating.as_ref().unwrap().name, "fix-the-tests");
    picker_key(&mut p, KeyCode::Char('w'), KeyModifiers::CONTROL);
    assert_eq!(p.creating.as_ref().unwrap().name, "fix-the");
    for _ in 0..3 {
        picker_key(&mut p, KeyCode::Tab, KeyModifiers::NONE);
    }
    typed(&mut p, "/tmp/my project/src");
    assert_eq!(p.creating.as_ref().unwrap().dir, "/tmp/my project/src");
    picker_key(&mut p, KeyCode::Char('w'), KeyModifiers::CONTROL);
    assert_eq!(p.creating.as_ref().unwrap().dir, "/tmp/my project");
    picker_key(&mut p, KeyCode::Char('u'), KeyModifiers::CONTROL);
    assert_eq!(p.creating.as_ref().unwrap().dir, "");
    typed(&mut p, "/srv/app");
    let effects = picker_key(&mut p, KeyCode::Enter, KeyModifiers::NONE);
    assert!(
        matches!(&effects[..], [PickerEffect::Create(f)] if f.name == "fix-the" && f.dir == "/srv/app"),
        "{effects:?}"
    );
}

#[test]
fn snapshot_picker_rename_prompt() {
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let mut p = Picker {
            now: Some(now()),
            ..Picker::default()
        };
        super::picker::update(&mut p, PickerMsg::Sessions(sessions()));
        // fix-tests is second, under Working.
        picker_key(&mut p, KeyCode::Down, KeyModifiers::NONE);
        picker_key(&mut p, KeyCode::Char('r'), KeyModifiers::CONTROL);
        for _ in 0.."tests".len() {
            picker_key(&mut p, KeyCode::Backspace, KeyModifiers::NONE);
        }
        for c in "flaky".chars() {
            picker_key(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
        }
        insta::assert_snapshot!(format!("picker_rename_{w}x{h}"), picker_frame(&p, w, h));
    }
}

#[test]
fn a_rename_from_any_client_shows_in_the_status_bar_and_the_transcript() {
    snap_both("renamed", |s| {
        feed(
            s,
            &[
                user(1, "hello"),
                agent(2, "hi"),
                ev(
                    3,
                    EventBody::SessionUpdated {
                        model: None,
                        max_cost_usd: None,
                        title: None,
                        name: Some("better-name".into()),
                        metadata: None,
                        vault_ids: None,
                        agent: None,
                    },
                ),
            ],
        );
    });
    let mut s = state(80, 24);
    assert_eq!(s.header.label, "demo");
    feed(
        &mut s,
        &[ev(
            1,
            EventBody::SessionUpdated {
                model: None,
                max_cost_usd: None,
                title: None,
                name: Some("better-name".into()),
                metadata: None,
                vault_ids: None,
                agent: None,
            },
        )],
    );
    assert_eq!(s.header.label, "better-name");
    assert!(frame(&s).contains("⚙ renamed → better-name"));
}

/// A session made over HTTP often has a title and no name: the status bar shows the title
/// (not the opaque id), follows a new title, and a name, once given, wins.
#[test]
fn the_status_bar_names_an_unnamed_session_by_its_title() {
    let mut s = state(80, 24);
    let mut i = info("x", SessionStatus::Idle, 0);
    i.name = None;
    i.title = Some("Order #1234 inquiry".into());
    update(&mut s, Msg::Net(NetMsg::Info(Box::new(i))));
    assert_eq!(s.header.label, "Order #1234 inquiry");
    let updated = |seq, title: Option<&str>, name: Option<&str>| {
        ev(
            seq,
            EventBody::SessionUpdated {
                model: None,
                max_cost_usd: None,
                title: title.map(str::to_string),
                name: name.map(str::to_string),
                metadata: None,
                vault_ids: None,
                agent: None,
            },
        )
    };
    feed(&mut s, &[updated(1, Some("Refund"), None)]);
    assert_eq!(s.header.label, "Refund");
    feed(&mut s, &[updated(2, None, Some("refunds"))]);
    feed(&mut s, &[updated(3, Some("Later title"), None)]);
    assert_eq!(s.header.label, "refunds");
    let mut bare = info("y", SessionStatus::Idle, 0);
    bare.name = None;
    update(&mut s, Msg::Net(NetMsg::Info(Box::new(bare))));
    assert_eq!(s.header.label, "sesn_y");
}

/// A session update that changed the tools (over HTTP, from any client) says which tools
/// the session now has, in the transcript.
#[test]
fn a_change_of_the_sessions_tools_shows_in_the_transcript() {
    snap_both("tools_changed", |s| {
        feed(
            s,
            &[
                user(1, "hello"),
                agent(2, "hi"),
                ev(
                    3,
                    EventBody::SessionUpdated {
                        model: None,
                        max_cost_usd: None,
                        title: None,
                        name: None,
                        metadata: None,
                        vault_ids: None,
                        agent: Some(serde_json::json!({
                            "tools": [
                                {"type": "agent_toolset_20260401", "configs": [
                                    {"name": "bash", "enabled": false},
                                    {"name": "read", "enabled": true}]},
                                {"type": "custom", "name": "lookup"}],
                            "mcp_servers": []})),
                    },
                ),
            ],
        );
    });
}

#[test]
fn an_unsandboxed_session_says_so_in_red_in_the_status_bar() {
    let unsandboxed = |s: &mut State| {
        let mut i = info("demo", SessionStatus::Idle, 0);
        i.sandbox = Some("none".into());
        update(s, Msg::Net(NetMsg::Info(Box::new(i))));
    };
    snap_both("unsandboxed", |s| unsandboxed(s));
    let mut s = state(80, 24);
    assert!(!frame(&s).contains("UNSANDBOXED"));
    unsandboxed(&mut s);
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| view::draw_session(f, &s)).unwrap();
    let buf = t.backend().buffer();
    let row = (0..24)
        .find(|&y| {
            (0..80)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .contains("UNSANDBOXED")
        })
        .expect("the status bar names it");
    let x = (0..80).find(|&x| buf[(x, row)].symbol() == "U").unwrap();
    assert_eq!(buf[(x, row)].fg, ratatui::style::Color::Red);
    // The full sandbox goes unsaid.
    let mut i = info("demo", SessionStatus::Idle, 0);
    i.sandbox = Some("namespaces".into());
    update(&mut s, Msg::Net(NetMsg::Info(Box::new(i))));
    assert!(!frame(&s).contains("sandbox"));
}

#[test]
fn a_self_hosted_session_says_its_tools_run_on_workers() {
    let mut s = state(100, 24);
    assert!(!frame(&s).contains("on workers"));
    let mut i = info("demo", SessionStatus::Idle, 0);
    i.sandbox = Some(tether_proto::session::TOOLS_ON_WORKERS.into());
    update(&mut s, Msg::Net(NetMsg::Info(Box::new(i))));
    assert!(frame(&s).contains("tools: on workers"), "{}", frame(&s));
}

// ---- code blocks ----

const CODE_ANSWER: &str = "Here is the fix:\n\n```rust\nfn parse(input: &str) -> Result<u32, String> {\n    // trims first, then parses; a really long comment that has to break at the edge of a narrow terminal\n    input.trim().parse().map_err(|e| format!(\"bad number: {e}\"))\n}\n```\n\nand the test:\n\n```sh\ncargo test -p demo # runs it\n```";

#[test]
fn snapshot_highlighted_code_blocks() {
    snap_both("code_blocks", |s| {
        feed(s, &[user(1, "fix parse"), agent(2, CODE_ANSWER)]);
    });
}

#[test]
fn code_in_the_frame_is_coloured_by_role() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "fix parse"), agent(2, CODE_ANSWER)]);
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| view::draw_session(f, &s)).unwrap();
    let buf = t.backend().buffer().clone();
    // The cell where `text` starts on the row that contains it.
    let cell = |text: &str| {
        for y in 0..buf.area.height {
            let row: String = (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect();
            if let Some(byte) = row.find(text) {
                let x = row[..byte].chars().count() as u16;
                return buf[(x, y)].clone();
            }
        }
        panic!("{text} not on screen:\n{}", frame(&s));
    };
    use super::highlight::colors;
    assert_eq!(cell("fn parse").fg, colors::KEYWORD);
    assert_eq!(cell("parse(input").fg, colors::FUNCTION);
    assert_eq!(cell("\"bad number").fg, colors::STRING);
    assert!(
        cell("// trims")
            .modifier
            .contains(ratatui::style::Modifier::DIM)
    );
    assert_eq!(cell("cargo").fg, colors::FUNCTION);
    // Prose around the blocks keeps the terminal's colours.
    assert_eq!(cell("Here is").fg, ratatui::style::Color::Reset);
}

#[test]
fn a_16_colour_terminal_gets_only_named_colours() {
    let mut s = state(80, 24);
    feed(&mut s, &[user(1, "fix parse"), agent(2, CODE_ANSWER)]);
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| {
        view::draw_session(f, &s);
        super::palette::apply(f.buffer_mut(), super::palette::Depth::Ansi16);
    })
    .unwrap();
    let buf = t.backend().buffer();
    use ratatui::style::Color;
    let named = |c: Color| !matches!(c, Color::Rgb(..) | Color::Indexed(_));
    assert!(buf.content.iter().all(|c| named(c.fg) && named(c.bg)));
    // The highlighting survives, in named colours.
    assert!(buf.content.iter().any(|c| c.fg == Color::Magenta));
}

// ---- code block focus and copy ----

#[test]
fn brackets_walk_code_blocks_and_y_copies_only_the_block() {
    let mut s = state(80, 24);
    feed(
        &mut s,
        &[
            user(1, "fix parse"),
            agent(2, CODE_ANSWER),
            user(3, "and python?"),
            agent(4, "```python\nprint('hi')\n```"),
        ],
    );
    // `[` starts from the bottom: the newest block.
    key(&mut s, KeyCode::Char('['));
    assert_eq!((s.focus, s.block), (Some(3), Some(0)));
    assert_eq!(
        key(&mut s, KeyCode::Char('y')),
        vec![Effect::Copy("print('hi')".into())]
    );
    assert!(
        s.notice
            .as_deref()
            .unwrap()
            .contains("python code block (1 line)")
    );
    // Back through the message with two blocks, last one first.
    key(&mut s, KeyCode::Char('['));
    assert_eq!((s.focus, s.block), (Some(1), Some(1)));
    assert_eq!(
        key(&mut s, KeyCode::Char('y')),
        vec![Effect::Copy("cargo test -p demo # runs it".into())]
    );
    key(&mut s, KeyCode::Char('['));
    assert_eq!((s.focus, s.block), (Some(1), Some(0)));
    let Effect::Copy(code) = &key(&mut s, KeyCode::Char('y'))[0] else {
        panic!("y must copy")
    };
    assert!(
        code.starts_with("fn parse(input: &str)") && code.ends_with('}'),
        "{code}"
    );
    // Nothing above: it says so and stays.
    key(&mut s, KeyCode::Char('['));
    assert_eq!((s.focus, s.block), (Some(1), Some(0)));
    assert!(s.notice.as_deref().unwrap().contains("no code block above"));
    key(&mut s, KeyCode::Char(']'));
    assert_eq!((s.focus, s.block), (Some(1), Some(1)));
    // Esc lets go of the block, then of the message; y then copies the whole message.
    key(&mut s, KeyCode::Esc);
    assert_eq!((s.focus, s.block), (Some(1), None));
    let Effect::Copy(all) = &key(&mut s, KeyCode::Char('y'))[0] else {
        panic!("y must copy")
    };
    assert!(all.starts_with("Here is the fix:"));
    // With text in the composer, brackets are text.
    typ(&mut s, "a[0]");
    assert_eq!(s.composer.lines()[0], "a[0]");
}

#[test]
fn focusing_a_block_scrolls_it_into_view() {
    let mut s = state(80, 24);
    let mut evs = vec![user(1, "code please"), agent(2, CODE_ANSWER)];
    evs.extend(long_session().into_iter().map(|mut e| {
        e.seq += 2;
        e
    }));
    feed(&mut s, &evs);
    key(&mut s, KeyCode::Char('['));
    assert_eq!((s.focus, s.block), (Some(1), Some(1)));
    assert!(
        frame(&s).contains("▌ │ cargo test -p demo"),
        "{}",
        frame(&s)
    );
}

#[test]
fn snapshot_focused_code_block() {
    snap_both("code_block_focused", |s| {
        feed(s, &[user(1, "fix parse"), agent(2, CODE_ANSWER)]);
        key(s, KeyCode::Char('['));
        key(s, KeyCode::Char('['));
    });
}

// ---- search across the whole session ----

/// The query of the whole-session search tests.
const Q: &str = "answer 2:";

/// A 60-event session of which only the newest 40 are loaded.
fn tail_only(s: &mut State) -> Vec<Event> {
    let all = long_session();
    update(
        s,
        Msg::Net(NetMsg::Tail {
            events: all[20..].to_vec(),
            has_older: true,
        }),
    );
    all
}

fn search(s: &mut State, q: &str) -> Vec<Effect> {
    key(s, KeyCode::Char('/'));
    typ(s, q);
    key(s, KeyCode::Enter)
}

#[test]
fn a_match_only_in_unloaded_events_is_found_by_the_daemon_and_paged_in() {
    let mut s = state(80, 24);
    let all = tail_only(&mut s);
    // "answer 2:" (seq 5) is not loaded: the daemon is asked, from the oldest loaded seq.
    let fx = search(&mut s, "answer 2:");
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::SearchOlder {
            query: "answer 2:".into(),
            before_seq: 21
        })]
    );
    assert!(frame(&s).contains("searching older events"));
    // N while waiting doesn't ask twice.
    assert!(key(&mut s, KeyCode::Char('N')).is_empty());
    // The connection task loads from just above the match up to the loaded part, then answers.
    update(
        &mut s,
        Msg::Net(NetMsg::Older {
            events: all[1..20].to_vec(),
            has_older: true,
        }),
    );
    assert!(
        update(
            &mut s,
            Msg::Net(NetMsg::SearchOlder {
                query: Q.into(),
                seq: Some(6),
            })
        )
        .is_empty()
    );
    let (item, _) = s.search.current.expect("the match is current");
    assert_eq!(s.transcript.items[item].seq, 6);
    let f = frame(&s);
    assert!(f.contains("answer 2:") && f.contains("match 1/1+"), "{f}");
    // Back again: nothing older in the whole log → wrap to the newest, and say so.
    let fx = key(&mut s, KeyCode::Char('N'));
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::SearchOlder {
            query: "answer 2:".into(),
            before_seq: 2
        })]
    );
    update(
        &mut s,
        Msg::Net(NetMsg::SearchOlder {
            query: Q.into(),
            seq: None,
        }),
    );
    assert!(s.search.exhausted);
    assert!(s.notice.as_deref().unwrap().contains("no older match"));
    // From now on N wraps locally.
    assert!(key(&mut s, KeyCode::Char('N')).is_empty());
}

#[test]
fn a_daemon_match_the_view_does_not_show_asks_further_back() {
    let mut s = state(80, 24);
    let all = tail_only(&mut s);
    search(&mut s, "zebra");
    update(
        &mut s,
        Msg::Net(NetMsg::Older {
            events: all[9..20].to_vec(),
            has_older: true,
        }),
    );
    // Say the daemon matched seq 12 in text this view doesn't show: look before it.
    assert_eq!(
        update(
            &mut s,
            Msg::Net(NetMsg::SearchOlder {
                query: "zebra".into(),
                seq: Some(12),
            })
        ),
        vec![Effect::Net(Cmd::SearchOlder {
            query: "zebra".into(),
            before_seq: 12
        })]
    );
    update(
        &mut s,
        Msg::Net(NetMsg::SearchOlder {
            query: "zebra".into(),
            seq: None,
        }),
    );
    assert!(
        s.notice
            .as_deref()
            .unwrap()
            .contains("no match for “zebra”")
    );
    assert_eq!(s.search.current, None);
}

#[test]
fn loaded_matches_come_first_and_the_daemon_only_past_the_oldest() {
    let mut s = state(80, 24);
    tail_only(&mut s);
    // "answer 2" matches loaded items (answer 20..29 are loaded); no request yet.
    assert!(search(&mut s, "answer 2").is_empty());
    let mut asked = Vec::new();
    for _ in 0..30 {
        asked = key(&mut s, KeyCode::Char('N'));
        if !asked.is_empty() {
            break;
        }
    }
    assert_eq!(
        asked,
        vec![Effect::Net(Cmd::SearchOlder {
            query: "answer 2".into(),
            before_seq: 21
        })]
    );
}

#[test]
fn collapsed_tool_output_matches_on_the_card() {
    let mut s = state(80, 24);
    let out: String = (0..20).map(|i| format!("line {i}\n")).collect();
    feed(
        &mut s,
        &[
            tool_use(1, "bash", json!({"command": "seq 20"})),
            tool_result(2, 1, &format!("{out}hidden needle"), Some(0)),
        ],
    );
    assert!(search(&mut s, "hidden needle").is_empty());
    assert_eq!(s.search.current, Some((0, 0)));
}

#[test]
fn snapshot_search_found_in_older_events() {
    snap_both("search_older", |s| {
        let all = tail_only(s);
        search(s, "answer 2:");
        update(
            s,
            Msg::Net(NetMsg::Older {
                events: all[1..20].to_vec(),
                has_older: true,
            }),
        );
        update(
            s,
            Msg::Net(NetMsg::SearchOlder {
                query: Q.into(),
                seq: Some(6),
            }),
        );
    });
}

#[test]
fn the_pager_gets_the_loaded_text_and_where_the_unloaded_part_ends() {
    let mut s = state(80, 24);
    tail_only(&mut s);
    let fx = key_m(&mut s, KeyCode::Char('o'), KeyModifiers::CONTROL);
    let [Effect::Pager { text, older_than }] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    assert_eq!(*older_than, Some(21));
    let plain = strip_ansi(text);
    assert!(plain.starts_with("┃ question 10\n") && plain.contains("answer 29: line one"));
    // Everything loaded: nothing to fetch.
    let mut s = state(80, 24);
    feed(&mut s, &long_session());
    let fx = key_m(&mut s, KeyCode::Char('o'), KeyModifiers::CONTROL);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Pager {
            older_than: None,
            ..
        }]
    ));
}

#[test]
fn an_answer_for_a_search_since_closed_is_ignored() {
    let mut s = state(80, 24);
    let all = tail_only(&mut s);
    search(&mut s, Q);
    key(&mut s, KeyCode::Esc);
    update(
        &mut s,
        Msg::Net(NetMsg::Older {
            events: all[1..20].to_vec(),
            has_older: true,
        }),
    );
    let fx = update(
        &mut s,
        Msg::Net(NetMsg::SearchOlder {
            query: Q.into(),
            seq: Some(6),
        }),
    );
    assert!(fx.is_empty());
    assert_eq!(s.search.current, None);
    // A new search works as usual (the loaded events stay).
    assert!(search(&mut s, Q).is_empty());
    assert!(s.search.current.is_some());
}

// ---- outcomes ----

fn define_outcome(seq: u64, max: u32) -> Event {
    ev(
        seq,
        serde_json::from_value(json!({
            "type": "user.define_outcome", "outcome_id": "outc_1",
            "description": "Make the tests pass and document the --verbose flag",
            "rubric": {"type": "text", "content":
                "# Rubric\n- `cargo test` passes\n- README.md documents --verbose with an example\n- no new warnings"},
            "max_iterations": max,
            "checks": [{"type": "command", "command": "cargo test"}]
        }))
        .unwrap(),
    )
}

fn eval_start(seq: u64, iteration: u32) -> Event {
    ev(
        seq,
        EventBody::SpanOutcomeEvaluationStart {
            outcome_id: "outc_1".into(),
            iteration,
        },
    )
}

fn eval_ongoing(seq: u64, iteration: u32) -> Event {
    ev(
        seq,
        EventBody::SpanOutcomeEvaluationOngoing {
            outcome_id: "outc_1".into(),
            iteration,
        },
    )
}

fn eval_end(seq: u64, start_seq: u64, iteration: u32, body: serde_json::Value) -> Event {
    let mut v = json!({
        "type": "span.outcome_evaluation_end",
        "outcome_evaluation_start_id": format!("sevt_{start_seq:04}"),
        "outcome_id": "outc_1", "iteration": iteration,
        "usage": {"input_tokens": 10400, "output_tokens": 812, "cache_read_input_tokens": 2000,
                  "cache_creation_input_tokens": 0, "cost_usd": 0.0214},
        "grader_model": "openai/gpt-5.1"
    });
    if let (Some(o), Some(b)) = (v.as_object_mut(), body.as_object()) {
        o.extend(b.clone());
    }
    ev(seq, serde_json::from_value(v).unwrap())
}

fn revision_end(seq: u64, start_seq: u64) -> Event {
    eval_end(
        seq,
        start_seq,
        0,
        json!({"result": "needs_revision",
            "explanation": "The tests pass, but README.md never mentions --verbose: add a usage section with an example invocation.",
            "criteria": [
                {"name": "`cargo test` passes", "met": true},
                {"name": "README.md documents --verbose with an example", "met": false,
                 "note": "no mention of --verbose anywhere in README.md"},
                {"name": "no new warnings", "met": true}]}),
    )
}

fn outcome_start(s: &mut State, max: u32) {
    feed(
        s,
        &[
            define_outcome(1, max),
            running(2),
            agent(3, "Fixed the failing test in src/parse.rs."),
        ],
    );
}

#[test]
fn snapshot_outcome_needs_revision() {
    snap_both("outcome_needs_revision", |s| {
        outcome_start(s, 3);
        feed(
            s,
            &[eval_start(4, 0), eval_ongoing(5, 0), revision_end(6, 4)],
        );
    });
}

#[test]
fn snapshot_outcome_evaluating() {
    snap_both("outcome_evaluating", |s| {
        outcome_start(s, 3);
        feed(
            s,
            &[eval_start(4, 0), eval_ongoing(5, 0), eval_ongoing(6, 0)],
        );
    });
}

#[test]
fn snapshot_outcome_satisfied() {
    snap_both("outcome_satisfied", |s| {
        outcome_start(s, 3);
        feed(
            s,
            &[
                eval_start(4, 0),
                revision_end(5, 4),
                user(
                    6,
                    "The grader found the work needs revision (evaluation 1 of 3): …",
                ),
                agent(7, "Added a usage section for --verbose to README.md."),
                eval_start(8, 1),
                eval_end(
                    9,
                    8,
                    1,
                    json!({"result": "satisfied",
                        "explanation": "All criteria are met.",
                        "criteria": [
                            {"name": "`cargo test` passes", "met": true},
                            {"name": "README.md documents --verbose with an example", "met": true,
                             "note": "README.md § Usage"},
                            {"name": "no new warnings", "met": true}],
                        "judges": [{"score": 4.6}, {"score": 4.4}, {"score": 1.5, "outlier": true}],
                        "score": 4.5}),
                ),
                idle(10, StopReason::EndTurn),
            ],
        );
    });
}

#[test]
fn snapshot_outcome_max_iterations() {
    snap_both("outcome_max_iterations", |s| {
        outcome_start(s, 1);
        feed(
            s,
            &[
                eval_start(4, 0),
                eval_end(
                    5,
                    4,
                    0,
                    json!({"result": "max_iterations_reached",
                        "explanation": "check failed: cargo test (exit 101)",
                        "usage": {"input_tokens": 0, "output_tokens": 0,
                                  "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
                        "grader_model": null,
                        "checks": [{"check": "cargo test", "passed": false, "exit_code": 101,
                            "output": "running 12 tests\ntest parse::empty ... FAILED\n\nfailures:\n    parse::empty\n\ntest result: FAILED. 11 passed; 1 failed"}]}),
                ),
                user(
                    6,
                    "The evaluation budget is spent; still unmet: cargo test. Summarise.",
                ),
                agent(7, "One test still fails: parse::empty."),
                idle(8, StopReason::EndTurn),
            ],
        );
    });
}

#[test]
fn outcome_cycles_move_the_status_and_fold_into_one_card_each() {
    let mut s = state(80, 24);
    outcome_start(&mut s, 3);
    let o = s.header.outcome.clone().unwrap();
    assert_eq!((o.iteration, o.max), (0, Some(3)));
    assert_eq!(o.phase, super::app::OutcomePhase::Working);
    feed(&mut s, &[eval_start(4, 0), eval_ongoing(5, 0)]);
    assert_eq!(
        s.header.outcome.as_ref().unwrap().phase,
        super::app::OutcomePhase::Evaluating
    );
    feed(&mut s, &[revision_end(6, 4)]);
    let o = s.header.outcome.clone().unwrap();
    assert_eq!(
        (o.iteration, o.phase),
        (1, super::app::OutcomePhase::Working)
    );
    // start, ongoing and end are one card.
    let cards: Vec<_> = s
        .transcript
        .items
        .iter()
        .filter_map(|i| match &i.body {
            super::transcript::Body::Evaluation(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0].requests, 1);
    assert_eq!(cards[0].max_iterations, Some(3));
    assert!(cards[0].end.is_some());
    // A session loaded later knows the state from its info alone.
    let mut fresh = state(80, 24);
    let mut i = info("demo", SessionStatus::Running, 9);
    i.outcome_evaluations = vec![tether_proto::outcome::OutcomeEvaluation {
        object_type: "outcome_evaluation".into(),
        outcome_id: "outc_1".into(),
        description: "d".into(),
        iteration: 2,
        max_iterations: 3,
        result: "max_iterations_reached".into(),
        explanation: None,
        completed_at: None,
        usage: ModelUsage::default(),
    }];
    update(&mut fresh, Msg::Net(NetMsg::Info(Box::new(i))));
    assert_eq!(
        fresh.header.outcome.as_ref().unwrap().phase,
        super::app::OutcomePhase::Done(
            tether_proto::outcome::EvaluationResult::MaxIterationsReached
        )
    );
}

#[test]
fn an_end_whose_start_is_in_an_older_page_is_one_card_after_paging() {
    let mut s = state(80, 24);
    feed(&mut s, &[revision_end(6, 4)]);
    s.transcript.has_older = true;
    let older = [
        define_outcome(1, 3),
        running(2),
        agent(3, "done"),
        eval_start(4, 0),
        eval_ongoing(5, 0),
    ];
    update(
        &mut s,
        Msg::Net(NetMsg::Older {
            events: older.to_vec(),
            has_older: false,
        }),
    );
    let cards: Vec<_> = s
        .transcript
        .items
        .iter()
        .filter_map(|i| match &i.body {
            super::transcript::Body::Evaluation(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(cards.len(), 1, "{:?}", s.transcript.items);
    assert_eq!(cards[0].max_iterations, Some(3));
    assert!(cards[0].end.is_some());
}

#[test]
fn ctrl_e_expands_the_rubric() {
    let mut s = state(80, 24);
    feed(&mut s, &[define_outcome(1, 3)]);
    // What the screen shows (the pager always shows everything).
    let text = |s: &State| frame(s);
    assert!(
        text(&s).contains("rubric (4 lines, ctrl-e expands): # Rubric"),
        "{}",
        text(&s)
    );
    assert!(!text(&s).contains("no new warnings"));
    key_m(&mut s, KeyCode::Char('e'), KeyModifiers::CONTROL);
    assert!(text(&s).contains("│ - no new warnings"), "{}", text(&s));
}

#[test]
fn an_unnamed_session_keeps_the_outcome_in_a_narrow_status_bar() {
    let mut s = state(80, 24);
    let mut unnamed = info("demo", SessionStatus::Idle, 0);
    unnamed.id = "sesn_01m97g5tfwchk40xdjfnjtb32k".into();
    unnamed.name = None;
    update(&mut s, Msg::Net(NetMsg::Info(Box::new(unnamed))));
    outcome_start(&mut s, 1);
    feed(
        &mut s,
        &[
            eval_start(4, 0),
            eval_end(
                5,
                4,
                0,
                json!({"result": "max_iterations_reached", "explanation": "no",
                    "usage": {"input_tokens": 0, "output_tokens": 0,
                              "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}),
            ),
        ],
    );
    let bar = frame(&s)
        .lines()
        .find(|l| l.contains("sesn_"))
        .unwrap()
        .to_string();
    assert!(bar.contains(" sesn_01m97g5tfw… "), "{bar}");
    assert!(bar.contains("✗ outcome max iterations"), "{bar}");
}

// Multi-agent sessions: the thread panel, switching threads, child approvals.
mod fleet;
// Workflow runs: the run panel and the checkpoint prompt.
mod rungraph;
mod runs;
mod threads;
// MCP elicitation: the prompt (issue 25).
mod elicit;
// MCP scope step-up: the authorization notice (issue 25, mcpauth2).
mod authreq;

fn deployment(id: &str, name: &str, cron: &str, next: Option<&str>, paused: bool) -> Deployment {
    use tether_proto::deployment::{DeploymentStatus, PausedReason, PinnedAgent, Schedule};
    Deployment {
        id: id.into(),
        object_type: "deployment".into(),
        name: name.into(),
        description: None,
        agent: PinnedAgent {
            kind: "agent".into(),
            id: "agent_coder".into(),
            version: 1,
        },
        environment_id: "env_default".into(),
        initial_events: Vec::new(),
        workflow: None,
        resources: Vec::new(),
        vault_ids: Vec::new(),
        metadata: Default::default(),
        budget: None,
        schedule: Some(Schedule {
            kind: "cron".into(),
            expression: Some(cron.into()),
            timezone: Some("Europe/Paris".into()),
            time: None,
            last_run_at: None,
            upcoming_runs_at: next.map(|t| vec![t.to_string()]).unwrap_or_default(),
        }),
        status: if paused {
            DeploymentStatus::Paused
        } else {
            DeploymentStatus::Active
        },
        paused_reason: paused.then_some(PausedReason::Manual),
        created_at: T0.into(),
        updated_at: T0.into(),
        archived_at: None,
    }
}

/// Scheduled sessions: the deployments that fire by themselves, soonest first with their
/// next fire time (paused last), and a session a schedule fired marked as such.
#[test]
fn snapshot_picker_with_schedules() {
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        let mut p = Picker {
            now: Some(now()),
            ..Picker::default()
        };
        let mut list = sessions();
        list[1].deployment_id = Some("depl_nightly".into());
        super::picker::update(&mut p, PickerMsg::Agents(agent_names()));
        super::picker::update(&mut p, PickerMsg::Sessions(list));
        super::picker::update(
            &mut p,
            PickerMsg::Deployments(vec![
                deployment("depl_weekly", "weekly-report", "0 8 * * 1", None, true),
                deployment(
                    "depl_nightly",
                    "nightly-tests",
                    "0 9 * * *",
                    Some("2026-11-26T08:00:00Z"),
                    false,
                ),
                deployment(
                    "depl_deps",
                    "dep-updates",
                    "30 9 * * 1-5",
                    Some("2026-11-25T08:30:00Z"),
                    false,
                ),
            ]),
        );
        let order: Vec<&str> = p.scheduled().iter().map(|(d, _)| d.name.as_str()).collect();
        assert_eq!(order, ["dep-updates", "nightly-tests", "weekly-report"]);
        let frame = picker_frame(&p, w, h);
        assert!(frame.contains("Scheduled (3)"), "{frame}");
        assert!(frame.contains("⏱ docs"), "{frame}");
        insta::assert_snapshot!(format!("picker_schedules_{w}x{h}"), frame);
    }
}

/// The status bar shows how full the context is once the model's window is known: the
/// primary's latest request (a thread's requests are other conversations), yellow from 70 %.
#[test]
fn the_status_bar_shows_the_share_of_the_context_window() {
    let request_end = |seq: u64, input: u64, thread: Option<&str>| {
        let mut e = ev(
            seq,
            EventBody::SpanModelRequestEnd {
                model_request_start_id: "sevt_x".into(),
                is_error: false,
                model_usage: tether_proto::ModelUsage {
                    input_tokens: 1_000,
                    cache_read_input_tokens: input - 1_000,
                    output_tokens: 500,
                    ..Default::default()
                },
                latency_ms: None,
            },
        );
        e.session_thread_id = thread.map(str::to_string);
        e
    };
    snap_both("context_share", |s| {
        let mut i = info("demo", SessionStatus::Idle, 0);
        i.context_window = Some(200_000);
        update(s, Msg::Net(NetMsg::Info(Box::new(i))));
        feed(s, &[user(1, "go"), request_end(2, 149_500, None)]);
    });
    let mut s = state(100, 24);
    // Unknown window: nothing is claimed.
    feed(&mut s, &[user(1, "go"), request_end(2, 99_500, None)]);
    assert!(!frame(&s).contains("ctx "), "{}", frame(&s));
    let mut i = info("demo", SessionStatus::Idle, 0);
    i.context_window = Some(200_000);
    update(&mut s, Msg::Net(NetMsg::Info(Box::new(i))));
    assert!(frame(&s).contains("ctx 50% "), "{}", frame(&s));
    // A sub-agent's big request is not the primary's context.
    feed(&mut s, &[request_end(3, 180_000, Some("sthr_child"))]);
    assert!(frame(&s).contains("ctx 50% "), "{}", frame(&s));
    feed(&mut s, &[request_end(4, 159_500, None)]);
    let f = frame(&s);
    assert!(f.contains("ctx 80% "), "{f}");
    let mut t = Terminal::new(TestBackend::new(100, 24)).unwrap();
    t.draw(|f| view::draw_session(f, &s)).unwrap();
    let buf = t.backend().buffer();
    let (x, y) = (0..24)
        .find_map(|y| {
            let row: String = (0..100).map(|x| buf[(x, y)].symbol()).collect();
            row.find("ctx 80%")
                .map(|i| (row[..i].chars().count() as u16, y))
        })
        .unwrap();
    assert_eq!(buf[(x, y)].fg, ratatui::style::Color::Yellow);
}
#[test]
fn a_session_waiting_on_a_workflow_checkpoint_needs_input_whatever_its_agent_does() {
    use super::picker::{Group, group};
    let mut s = info("wf", SessionStatus::Idle, 9);
    s.stop_reason = Some(StopReason::EndTurn);
    assert_eq!(group(&s, Some(9)), Group::Idle);
    s.waiting_checkpoints = 1;
    assert_eq!(group(&s, Some(9)), Group::NeedsInput);
    s.status = SessionStatus::Running;
    s.stop_reason = None;
    assert_eq!(group(&s, Some(9)), Group::NeedsInput);
}

#[test]
fn a_name_too_long_for_its_column_ends_in_an_ellipsis() {
    let mut p = Picker {
        now: Some(now()),
        ..Picker::default()
    };
    let long = info(
        "release-notes-for-the-spring-cleanup-of-the-parser",
        SessionStatus::Idle,
        3,
    );
    super::picker::update(&mut p, PickerMsg::Sessions(vec![long]));
    let frame = picker_frame(&p, 80, 24);
    let row = frame
        .lines()
        .find(|l| l.contains("release-no"))
        .unwrap_or_else(|| panic!("no row:\n{frame}"));
    assert!(row.contains("…"), "cut without a mark: {row}");
    assert!(
        !row.contains("parser"),
        "the name did not need cutting: {row}"
    );
}

#[test]
fn a_long_list_scrolls_to_keep_the_selection_on_screen() {
    let mut p = Picker {
        now: Some(now()),
        ..Picker::default()
    };
    let list: Vec<SessionInfo> = (0..300)
        .map(|i| info(&format!("s{i:03}"), SessionStatus::Idle, 3))
        .collect();
    super::picker::update(&mut p, PickerMsg::Sessions(list));
    let names: Vec<String> = p
        .visible()
        .iter()
        .map(|e| e.session.name.clone().unwrap())
        .collect();
    let frame = picker_frame(&p, 80, 24);
    assert!(frame.contains(&names[0]), "the top at first:\n{frame}");
    assert!(frame.contains("Idle (300)"), "{frame}");
    p.selected = names.len() - 1;
    let frame = picker_frame(&p, 80, 24);
    assert!(frame.contains(&names[names.len() - 1]), "{frame}");
    assert!(frame.contains(&names[names.len() - 2]), "{frame}");
    assert!(
        !frame.contains(&names[0]),
        "scrolled past the top:\n{frame}"
    );
    assert!(
        !frame.contains("Idle (300)"),
        "the heading scrolled away:\n{frame}"
    );
    p.selected = 150;
    let frame = picker_frame(&p, 80, 24);
    assert!(frame.contains(&names[150]), "{frame}");
}
