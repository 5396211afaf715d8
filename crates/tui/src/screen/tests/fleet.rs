//! The picker over a fleet: sessions of this machine and of `[[remotes]]` hosts, grouped by
//! what they need; an unreachable host as one line; peek, reply and approve in place (effects
//! carry `HOST:ID`); snapshots at 80×24 and 120×40.

use super::*;
use crate::screen::picker::{Group, HostState, PeekInfo};

fn host(p: &mut Picker, name: &str, sessions: Result<Vec<SessionInfo>, String>) {
    super::super::picker::update(
        p,
        PickerMsg::Host {
            name: name.into(),
            sessions,
        },
    );
}

fn ended(name: &str, last_seq: u64) -> SessionInfo {
    let mut s = info(name, SessionStatus::Idle, last_seq);
    s.stop_reason = Some(StopReason::EndTurn);
    s
}

fn asking(name: &str) -> SessionInfo {
    let mut s = info(name, SessionStatus::Idle, 20);
    s.stop_reason = Some(StopReason::RequiresAction {
        event_ids: vec!["sevt_ask".into()],
    });
    s.updated_at = "2026-11-25T08:00:30Z".into();
    s
}

/// Local sessions, gpu1 with a session that finished since it was first listed and one that
/// asks, gpu2 down.
fn fleet_picker() -> Picker {
    let mut p = Picker {
        now: Some(now()),
        ..Picker::default()
    };
    for name in ["gpu1", "gpu2"] {
        p.remotes.push(crate::screen::picker::HostView {
            name: name.into(),
            state: HostState::Connecting,
        });
    }
    super::super::picker::update(&mut p, PickerMsg::Agents(agent_names()));
    super::super::picker::update(&mut p, PickerMsg::Sessions(sessions()));
    let mut train = info("train", SessionStatus::Running, 30);
    train.attached_clients = 0;
    host(&mut p, "gpu1", Ok(vec![ended("eval", 9), train.clone()]));
    // eval finishes another turn (the model asked again) after the picker first saw it: Done.
    let mut eval = ended("eval", 15);
    eval.usage.model_requests += 2;
    host(&mut p, "gpu1", Ok(vec![eval, train, asking("deploy")]));
    host(
        &mut p,
        "gpu2",
        Err("cannot reach tetherd on ssh://gpu2 through `tether proxy`: ssh said: Connection refused.".into()),
    );
    // The selection followed docs as rows arrived above it; start from the top.
    assert_eq!(p.visible()[p.selected].key(), "sesn_docs");
    p.selected = 0;
    p
}

#[test]
fn fleet_rows_are_grouped_and_keys_name_their_host() {
    let mut p = fleet_picker();
    let rows: Vec<(Group, String)> = p.visible().iter().map(|e| (e.group, e.key())).collect();
    assert_eq!(
        rows,
        vec![
            (Group::NeedsInput, "gpu1:sesn_deploy".to_string()),
            (Group::NeedsInput, "sesn_docs".into()),
            (Group::Working, "gpu1:sesn_train".into()),
            (Group::Working, "sesn_fix-tests".into()),
            (Group::Done, "gpu1:sesn_eval".into()),
            (Group::Failed, "sesn_bench".into()),
        ]
    );
    assert_eq!(p.needs_you(), 4);
    // Enter on the Done one attaches through its host, and it is no longer news.
    for _ in 0..4 {
        picker_key(&mut p, KeyCode::Down, KeyModifiers::NONE);
    }
    assert_eq!(
        picker_key(&mut p, KeyCode::Enter, KeyModifiers::NONE),
        vec![PickerEffect::Attach("gpu1:sesn_eval".into())]
    );
    assert!(
        p.visible()
            .iter()
            .any(|e| e.key() == "gpu1:sesn_eval" && e.group == Group::Idle)
    );
    // Filtering by host name finds its sessions.
    for c in "gpu1".chars() {
        picker_key(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
    }
    assert_eq!(p.visible().len(), 3);
}

#[test]
fn a_host_that_goes_down_hides_its_rows_and_comes_back_by_itself() {
    let mut p = fleet_picker();
    host(&mut p, "gpu1", Err("no answer within 10 s".into()));
    assert!(p.visible().iter().all(|e| e.host == "local"));
    assert!(
        picker_frame(&p, 120, 40).contains("gpu1 ✗ unreachable (retrying): no answer within 10 s")
    );
    host(&mut p, "gpu1", Ok(vec![asking("deploy")]));
    assert_eq!(p.visible()[0].key(), "gpu1:sesn_deploy");
    assert!(!picker_frame(&p, 120, 40).contains("gpu1 ✗"));
}

#[test]
fn peek_then_reply_or_approve_in_place() {
    let mut p = fleet_picker();
    assert_eq!(
        picker_key(&mut p, KeyCode::Tab, KeyModifiers::NONE),
        vec![PickerEffect::Peek("gpu1:sesn_deploy".into())]
    );
    // A late answer for another session is dropped.
    super::super::picker::update(
        &mut p,
        PickerMsg::Peeked {
            key: "sesn_docs".into(),
            found: Ok(PeekInfo::default()),
        },
    );
    assert!(p.peek.as_ref().unwrap().found.is_none());
    super::super::picker::update(
        &mut p,
        PickerMsg::Peeked {
            key: "gpu1:sesn_deploy".into(),
            found: Ok(PeekInfo {
                last_message: Some("Tests pass. Deploy to staging now?".into()),
                pending: vec!["bash: ./deploy.sh staging".into()],
            }),
        },
    );
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        insta::assert_snapshot!(format!("fleet_peek_{w}x{h}"), picker_frame(&p, w, h));
    }
    // Typing goes to the reply, not the filter; enter sends it to that host's session.
    for c in "yes".chars() {
        picker_key(&mut p, KeyCode::Char(c), KeyModifiers::NONE);
    }
    assert!(p.filter.is_empty());
    assert_eq!(
        picker_key(&mut p, KeyCode::Enter, KeyModifiers::NONE),
        vec![PickerEffect::Reply {
            key: "gpu1:sesn_deploy".into(),
            text: "yes".into()
        }]
    );
    assert_eq!(
        picker_key(&mut p, KeyCode::Char('y'), KeyModifiers::CONTROL),
        vec![PickerEffect::Approve("gpu1:sesn_deploy".into())]
    );
    picker_key(&mut p, KeyCode::Esc, KeyModifiers::NONE);
    assert!(p.peek.is_none());
    // An empty reply's enter attaches.
    picker_key(&mut p, KeyCode::Tab, KeyModifiers::NONE);
    assert_eq!(
        picker_key(&mut p, KeyCode::Enter, KeyModifiers::NONE),
        vec![PickerEffect::Attach("gpu1:sesn_deploy".into())]
    );
}

#[test]
fn snapshot_fleet_picker() {
    let p = fleet_picker();
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        insta::assert_snapshot!(format!("fleet_picker_{w}x{h}"), picker_frame(&p, w, h));
    }
}

fn notices(fx: Vec<PickerEffect>) -> Vec<(String, String)> {
    fx.into_iter()
        .filter_map(|f| match f {
            PickerEffect::Notify(n) => Some((n.kind, n.text)),
            _ => None,
        })
        .collect()
}

#[test]
fn notices_for_needs_input_failures_and_long_turns_but_not_the_session_looked_at() {
    let mut p = fleet_picker();
    p.notify_min_turn = Duration::from_secs(10);
    // train worked since the picker saw it (now()); 60 s later it ends its turn.
    p.now = Some(now() + Duration::from_secs(60));
    let mut train = ended("train", 31);
    train.attached_clients = 0;
    let fx = super::super::picker::update(
        &mut p,
        PickerMsg::Host {
            name: "gpu1".into(),
            sessions: Ok(vec![ended("eval", 15), train, asking("deploy")]),
        },
    );
    assert_eq!(
        notices(fx),
        vec![(
            "session.idled".to_string(),
            "gpu1:train finished its turn (60 s)".to_string()
        )]
    );
    // Locally: fix-tests stops for an approval, docs (being peeked at) fails: one notice.
    let mut local = sessions();
    local[0].status = SessionStatus::Idle;
    local[0].stop_reason = Some(StopReason::RequiresAction {
        event_ids: vec!["sevt_2".into()],
    });
    local[1].stop_reason = Some(StopReason::Error);
    p.selected = p
        .visible()
        .iter()
        .position(|e| e.key() == "sesn_docs")
        .unwrap();
    picker_key(&mut p, KeyCode::Tab, KeyModifiers::NONE);
    let fx = super::super::picker::update(&mut p, PickerMsg::Sessions(local.clone()));
    assert_eq!(
        notices(fx),
        vec![(
            "session.requires_action".to_string(),
            "fix-tests needs input".to_string()
        )]
    );
    // The same list again is no news.
    assert!(
        notices(super::super::picker::update(
            &mut p,
            PickerMsg::Sessions(local)
        ))
        .is_empty()
    );
}

#[test]
fn a_short_turn_is_no_news() {
    let mut p = fleet_picker();
    p.notify_min_turn = Duration::from_secs(10);
    p.now = Some(now() + Duration::from_secs(5));
    let fx = super::super::picker::update(
        &mut p,
        PickerMsg::Host {
            name: "gpu1".into(),
            sessions: Ok(vec![
                ended("eval", 15),
                ended("train", 31),
                asking("deploy"),
            ]),
        },
    );
    assert!(notices(fx).is_empty());
    // ...but it is Done all the same.
    assert!(
        p.visible()
            .iter()
            .any(|e| e.key() == "gpu1:sesn_train" && e.group == Group::Done)
    );
}

/// While a session is on screen, the fleet's news: every host's, never the session's own.
#[test]
fn attached_alerts_tell_of_other_sessions_never_the_one_on_screen() {
    use crate::screen::alerts::Alerts;
    let settings = crate::notify::NotifySettings {
        min_turn_secs: 10,
        ..Default::default()
    };
    // On screen: gpu1's deploy.
    let mut a = Alerts::new("gpu1:sesn_deploy".into(), &settings);
    let t0 = now();
    // First lists are history, not news.
    assert!(a.update(PickerMsg::Sessions(sessions()), t0).is_empty());
    let mut train = info("train", SessionStatus::Running, 30);
    train.attached_clients = 0;
    let first = vec![
        ended("eval", 9),
        train,
        info("deploy", SessionStatus::Running, 3),
    ];
    let gpu1 = |sessions| PickerMsg::Host {
        name: "gpu1".into(),
        sessions: Ok(sessions),
    };
    assert!(a.update(gpu1(first), t0).is_empty());
    // docs needed input in the first list already: it counts, fix-tests's turn does not.
    assert_eq!(a.needs_input(), 1);
    // A minute later: deploy (on screen) and train ask, train's turn was long anyway.
    let mut train = asking("train");
    train.attached_clients = 0;
    let fx = a.update(
        gpu1(vec![ended("eval", 9), train, asking("deploy")]),
        t0 + Duration::from_secs(60),
    );
    let texts: Vec<_> = fx
        .iter()
        .map(|n| (n.kind.as_str(), n.text.as_str()))
        .collect();
    assert_eq!(
        texts,
        [("session.requires_action", "gpu1:train needs input")]
    );
    assert_eq!(fx[0].host, "gpu1");
    // docs and train wait; deploy is the one looked at.
    assert_eq!(a.needs_input(), 2);
    // A local failure is news too; a host going down is not news about its sessions.
    let mut local = sessions();
    local[0].status = SessionStatus::Idle;
    local[0].stop_reason = Some(StopReason::Error);
    let fx = a.update(PickerMsg::Sessions(local), t0 + Duration::from_secs(61));
    assert_eq!(fx.len(), 1);
    assert_eq!(fx[0].text, "fix-tests failed (error)");
    let down = PickerMsg::Host {
        name: "gpu1".into(),
        sessions: Err("gone".into()),
    };
    assert!(a.update(down, t0 + Duration::from_secs(62)).is_empty());
    assert_eq!(a.needs_input(), 1, "a host that is down counts for nothing");
}

#[test]
fn the_session_view_status_bar_counts_sessions_waiting_elsewhere() {
    let mut s = super::state(120, 30);
    assert!(!super::frame(&s).contains("waiting elsewhere"));
    s.fleet_waiting = 3;
    assert!(
        super::frame(&s).contains("3 waiting elsewhere"),
        "{}",
        super::frame(&s)
    );
}

#[test]
fn renaming_a_looked_at_session_is_not_a_finished_turn() {
    let mut p = Picker::default();
    super::super::picker::update(&mut p, PickerMsg::Sessions(vec![ended("a", 5)]));
    assert_eq!(p.needs_you(), 0, "idle before the picker saw it: looked at");
    // A rename appends an event: the seq moves, no model request was made.
    let mut renamed = ended("a", 6);
    renamed.name = Some("b".into());
    super::super::picker::update(&mut p, PickerMsg::Sessions(vec![renamed]));
    assert_eq!(p.needs_you(), 0, "a rename is not news");
    // A turn: the model was asked again.
    let mut turned = ended("a", 14);
    turned.usage.model_requests += 2;
    super::super::picker::update(&mut p, PickerMsg::Sessions(vec![turned.clone()]));
    assert_eq!(p.needs_you(), 1, "a finished turn is Done");
    assert_eq!(
        crate::screen::picker::group(&turned, p.seen.get(crate::fleet::LOCAL, "sesn_a")),
        Group::Done
    );
}

#[test]
fn a_pushed_change_folds_in_like_the_whole_list_and_keeps_the_selection() {
    let mut whole = fleet_picker();
    let mut pushed = fleet_picker();
    whole.notify_min_turn = Duration::from_secs(10);
    pushed.notify_min_turn = Duration::from_secs(10);
    // gpu1: train ends a 60 s turn, deploy leaves, a new session arrives asking.
    for p in [&mut whole, &mut pushed] {
        p.now = Some(now() + Duration::from_secs(60));
        p.selected = p
            .visible()
            .iter()
            .position(|e| e.key() == "gpu1:sesn_eval")
            .unwrap();
    }
    let mut train = ended("train", 31);
    train.attached_clients = 0;
    let mut fresh = asking("review");
    fresh.updated_at = "2026-11-25T09:00:00Z".into();
    let fx_whole = super::super::picker::update(
        &mut whole,
        PickerMsg::Host {
            name: "gpu1".into(),
            sessions: Ok(vec![ended("eval", 15), train.clone(), fresh.clone()]),
        },
    );
    let fx_pushed = super::super::picker::update(
        &mut pushed,
        PickerMsg::Changed {
            host: Some("gpu1".into()),
            changed: vec![train, fresh],
            removed: vec!["sesn_deploy".into()],
        },
    );
    assert_eq!(notices(fx_pushed.clone()), notices(fx_whole));
    assert_eq!(
        notices(fx_pushed),
        vec![
            (
                "session.idled".to_string(),
                "gpu1:train finished its turn (60 s)".to_string()
            ),
            (
                "session.requires_action".to_string(),
                "gpu1:review needs input".to_string()
            ),
        ]
    );
    let rows = |p: &Picker| -> Vec<(Group, String)> {
        p.visible().iter().map(|e| (e.group, e.key())).collect()
    };
    assert_eq!(rows(&pushed), rows(&whole));
    assert!(!rows(&pushed).iter().any(|(_, k)| k == "gpu1:sesn_deploy"));
    // The selection stayed on eval though rows moved above it.
    assert_eq!(pushed.visible()[pushed.selected].key(), "gpu1:sesn_eval");
    // A local push for a session already listed: changed in place.
    let mut docs = sessions().remove(1);
    docs.name = Some("docs-renamed".into());
    super::super::picker::update(
        &mut pushed,
        PickerMsg::Changed {
            host: None,
            changed: vec![docs],
            removed: vec![],
        },
    );
    assert_eq!(
        pushed
            .sessions
            .iter()
            .filter(|s| s.id == "sesn_docs")
            .map(|s| s.name.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("docs-renamed")]
    );
}

#[test]
fn a_key_names_its_session_without_being_built() {
    use crate::screen::picker::is_key;
    assert!(is_key("sesn_a", crate::fleet::LOCAL, "sesn_a"));
    assert!(is_key("gpu1:sesn_a", "gpu1", "sesn_a"));
    assert!(!is_key("gpu1:sesn_a", "gpu2", "sesn_a"));
    assert!(!is_key("gpu1sesn_a", "gpu1", "sesn_a"));
    assert!(!is_key("gpu1:sesn_ab", "gpu1", "sesn_a"));
    assert!(!is_key("sesn_a", "gpu1", "sesn_a"));
}
