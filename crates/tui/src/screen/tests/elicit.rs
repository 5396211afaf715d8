//! MCP elicitation in the session view (issue 25): the prompt opens when a server asks, one
//! input per schema field, tab moves, enter accepts (checked against the schema first),
//! ctrl-d declines, esc puts it away and ctrl-a brings it back; it closes when the answer is
//! recorded, whoever answered; never on a read-only client. Snapshots at 80×24 and 120×40.

use serde_json::Value;
use tether_proto::elicitation::ElicitationAction;

use super::*;

const ELIC: &str = "elic_01";

fn asked(seq: u64) -> Event {
    ev(
        seq,
        EventBody::McpElicitationRequested {
            elicitation_id: ELIC.into(),
            mcp_server_name: "forms".into(),
            tool_use_id: Some("sevt_0003".into()),
            message: "Who are you? The signup form needs a few details.".into(),
            requested_schema: json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "title": "Name", "description": "As on your badge", "minLength": 1},
                    "age": {"type": "integer", "title": "Age", "minimum": 0, "maximum": 150},
                    "color": {"type": "string", "title": "Favourite color", "enum": ["red", "green", "blue"]},
                    "subscribe": {"type": "boolean", "title": "Subscribe"}
                },
                "required": ["name", "age"]
            }),
            mode: Default::default(),
            url: None,
            server_elicitation_id: None,
            agent_name: None,
        },
    )
}

fn answered(seq: u64, action: ElicitationAction) -> Event {
    ev(
        seq,
        EventBody::McpElicitationAnswered {
            elicitation_id: ELIC.into(),
            action,
            content: None,
            reason: None,
        },
    )
}

fn scene(s: &mut State) {
    feed(
        s,
        &[
            user(1, "sign me up"),
            running(2),
            ev(
                3,
                EventBody::AgentMcpToolUse {
                    mcp_server_name: "forms".into(),
                    name: "ask".into(),
                    input: json!({}),
                    evaluated_permission: None,
                },
            ),
            asked(4),
        ],
    );
}

/// Fields are in the schema's order as stored (by name): age, color, name, subscribe.
#[test]
fn typing_tabbing_and_enter_accept_with_the_typed_content() {
    let mut s = state(80, 24);
    scene(&mut s);
    assert!(matches!(&s.overlay, Overlay::Elicitation { id, .. } if id == ELIC));
    // name (required, first as the server listed it), then age, color, subscribe
    typ(&mut s, "Adax");
    key(&mut s, KeyCode::Backspace);
    key(&mut s, KeyCode::Tab);
    typ(&mut s, "36");
    key(&mut s, KeyCode::Tab);
    // color: right twice = green
    key(&mut s, KeyCode::Right);
    key(&mut s, KeyCode::Right);
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Char(' '));
    let fx = key(&mut s, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::AnswerElicitation {
            elicitation_id: ELIC.into(),
            action: ElicitationAction::Accept,
            content: Some(json!({"age": 36, "color": "green", "name": "Ada", "subscribe": true})),
        })]
    );
    assert_eq!(s.overlay, Overlay::None);
    // It stays closed until the answer lands, then is gone for good.
    feed(&mut s, &[answered(5, ElicitationAction::Accept)]);
    assert_eq!(s.overlay, Overlay::None);
    assert!(s.elicitations.asked.is_empty());
}

#[test]
fn enter_with_a_field_that_does_not_fit_says_which_and_sends_nothing() {
    let mut s = state(80, 24);
    scene(&mut s);
    typ(&mut s, "Ada");
    key(&mut s, KeyCode::Tab);
    typ(&mut s, "old");
    let fx = key(&mut s, KeyCode::Enter);
    assert!(fx.is_empty(), "{fx:?}");
    let Overlay::Elicitation { form, .. } = &s.overlay else {
        panic!("closed: {:?}", s.overlay);
    };
    assert!(
        form.error.as_deref().unwrap().starts_with("content.age"),
        "{:?}",
        form.error
    );
}

#[test]
fn ctrl_d_declines_and_esc_puts_it_away_until_ctrl_a() {
    let mut s = state(80, 24);
    scene(&mut s);
    key(&mut s, KeyCode::Esc);
    assert_eq!(s.overlay, Overlay::None);
    assert!(s.notice.as_deref().unwrap().contains("ctrl-a"));
    key_m(&mut s, KeyCode::Char('a'), KeyModifiers::CONTROL);
    assert!(matches!(&s.overlay, Overlay::Elicitation { .. }));
    let fx = key_m(&mut s, KeyCode::Char('d'), KeyModifiers::CONTROL);
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::AnswerElicitation {
            elicitation_id: ELIC.into(),
            action: ElicitationAction::Decline,
            content: None,
        })]
    );
}

#[test]
fn an_answer_from_another_client_closes_the_prompt() {
    let mut s = state(80, 24);
    scene(&mut s);
    feed(&mut s, &[answered(5, ElicitationAction::Cancel)]);
    assert_eq!(s.overlay, Overlay::None);
    assert!(s.notice.as_deref().unwrap().contains("answered"));
}

#[test]
fn a_read_only_client_never_opens_it() {
    let mut s = read_only_state(80, 24);
    feed(&mut s, &[asked(10)]);
    assert_eq!(
        s.elicitations.asked.len(),
        1,
        "it is known, just not prompted"
    );
    assert_eq!(s.overlay, Overlay::None);
    key_m(&mut s, KeyCode::Char('a'), KeyModifiers::CONTROL);
    assert_eq!(s.overlay, Overlay::None);
}

#[test]
fn snapshot_elicitation_prompt() {
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        let mut s = state(w, h);
        scene(&mut s);
        key(&mut s, KeyCode::Tab);
        typ(&mut s, "3x");
        key(&mut s, KeyCode::Tab);
        key(&mut s, KeyCode::Right);
        insta::assert_snapshot!(format!("elicitation_{w}x{h}"), frame(&s));
        key(&mut s, KeyCode::Enter);
        insta::assert_snapshot!(format!("elicitation_error_{w}x{h}"), frame(&s));
    }
}

/// SEP-1034 (what `@modelcontextprotocol/conformance`'s `elicitation-sep1034-client-defaults`
/// checks of a client): the form starts from the schema's defaults, so enter alone accepts them.
#[test]
fn the_form_starts_from_the_schema_defaults() {
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
        "verified": {"type": "boolean", "default": true}
    }, "required": []});
    let form = crate::screen::app::elicit::Form::of(&schema);
    assert_eq!(
        form.content(),
        json!({"name": "John Doe", "age": 30, "score": 95.5, "status": "active", "verified": true})
    );
}

const CHILD_ELIC: &str = "elic_02";
const URL: &str = "https://auth.example.com/oauth/authorize?client_id=tether-demo&state=af83b1c2d9e04f5a&redirect_uri=http%3A%2F%2F127.0.0.1%3A8123%2Fcallback";

/// A question of the `reviewer` child thread's MCP server, as the primary's stream gets it
/// (cross-posted: same id, `session_thread_id` set); URL mode with `url`.
fn child_asked(seq: u64, url: Option<&str>) -> Event {
    let mut e = ev(
        seq,
        EventBody::McpElicitationRequested {
            elicitation_id: CHILD_ELIC.into(),
            mcp_server_name: "github".into(),
            tool_use_id: Some("sevt_0009".into()),
            message: "Sign in to GitHub so the reviewer can read the pull request.".into(),
            requested_schema: if url.is_some() {
                Value::Null
            } else {
                json!({"type": "object", "properties": {"token": {"type": "string", "title": "Token"}}, "required": ["token"]})
            },
            mode: if url.is_some() {
                tether_proto::elicitation::ElicitationMode::Url
            } else {
                Default::default()
            },
            url: url.map(str::to_string),
            server_elicitation_id: url.map(|_| "gh-1".to_string()),
            agent_name: Some("reviewer".into()),
        },
    );
    e.session_thread_id = Some("sthr_01".into());
    e
}

fn child_scene(s: &mut State, url: Option<&str>) {
    feed(
        s,
        &[user(1, "review my PR"), running(2), child_asked(3, url)],
    );
}

#[test]
fn a_child_threads_question_prompts_on_the_primary_labelled_with_its_agent() {
    let mut s = state(80, 24);
    child_scene(&mut s, None);
    assert!(matches!(&s.overlay, Overlay::Elicitation { id, .. } if id == CHILD_ELIC));
    let shown = frame(&s);
    assert!(
        shown.contains("reviewer's MCP server github asks:"),
        "{shown}"
    );
    typ(&mut s, "ghp_x");
    let fx = key(&mut s, KeyCode::Enter);
    // Answered on the primary by id (the daemon hands it to the thread).
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::AnswerElicitation {
            elicitation_id: CHILD_ELIC.into(),
            action: ElicitationAction::Accept,
            content: Some(json!({"token": "ghp_x"})),
        })]
    );
    let mut done = ev(
        4,
        EventBody::McpElicitationAnswered {
            elicitation_id: CHILD_ELIC.into(),
            action: ElicitationAction::Accept,
            content: None,
            reason: None,
        },
    );
    done.session_thread_id = Some("sthr_01".into());
    feed(&mut s, &[done]);
    assert!(s.elicitations.asked.is_empty());
}

#[test]
fn a_url_question_shows_the_whole_link_and_enter_says_i_opened_it() {
    let mut s = state(80, 24);
    child_scene(&mut s, Some(URL));
    let shown = frame(&s);
    // The link in full (cut at the box's width, never shortened) and its host.
    let joined: String = shown
        .lines()
        .map(|l| l.trim_matches(|c: char| c == '│' || c == ' ' || c == '"'))
        .collect();
    assert!(joined.contains(URL), "{shown}");
    assert!(shown.contains("host: auth.example.com"), "{shown}");
    assert!(shown.contains("tether never opens links"), "{shown}");
    let fx = key(&mut s, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::AnswerElicitation {
            elicitation_id: CHILD_ELIC.into(),
            action: ElicitationAction::Accept,
            content: None,
        })]
    );
}

#[test]
fn ctrl_x_cancels_and_the_servers_completion_closes_the_prompt() {
    let mut s = state(80, 24);
    child_scene(&mut s, Some(URL));
    let fx = key_m(&mut s, KeyCode::Char('x'), KeyModifiers::CONTROL);
    assert_eq!(
        fx,
        vec![Effect::Net(Cmd::AnswerElicitation {
            elicitation_id: CHILD_ELIC.into(),
            action: ElicitationAction::Cancel,
            content: None,
        })]
    );
    // Another client's view: the completion alone closes it.
    let mut s = state(80, 24);
    child_scene(&mut s, Some(URL));
    assert!(matches!(&s.overlay, Overlay::Elicitation { .. }));
    let mut done = ev(
        4,
        EventBody::McpElicitationCompleted {
            elicitation_id: CHILD_ELIC.into(),
        },
    );
    done.session_thread_id = Some("sthr_01".into());
    feed(&mut s, &[done]);
    assert_eq!(s.overlay, Overlay::None);
    assert!(s.elicitations.asked.is_empty());
}

#[test]
fn snapshot_url_elicitation_prompt() {
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        let mut s = state(w, h);
        child_scene(&mut s, Some(URL));
        insta::assert_snapshot!(format!("elicitation_url_{w}x{h}"), frame(&s));
    }
}
