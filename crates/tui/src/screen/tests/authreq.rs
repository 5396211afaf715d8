//! MCP authorization in the session view (issue 25): a `tether.mcp_authorization_required`
//! event (a scope step-up, or a server the session has no credential for; a child thread's,
//! cross-posted) shows as a notice with the login URL in full, and alt-u copies that URL
//! (OSC 52) to paste into a browser on tetherd's machine; the TUI never opens it. Snapshots at
//! 80×24 and 120×40.

use super::*;

const URL: &str = "http://127.0.0.1:8931/authorize?client_id=tether&scope=files%3Awrite&state=Zk3q";

fn scene(s: &mut State) {
    feed(
        s,
        &[
            user(1, "save the report"),
            running(2),
            ev(
                3,
                EventBody::AgentMcpToolUse {
                    mcp_server_name: "files".into(),
                    name: "write".into(),
                    input: json!({"path": "report.md"}),
                    evaluated_permission: None,
                },
            ),
            ev(
                4,
                EventBody::McpAuthorizationRequired {
                    mcp_server_name: "files".into(),
                    mcp_server_url: "http://127.0.0.1:8931/mcp".into(),
                    authorization_url: URL.into(),
                    login_id: "login_01".into(),
                    scope: Some("files:write".into()),
                    reason: "insufficient_scope".into(),
                },
            ),
            ev(
                5,
                EventBody::AgentMcpToolResult {
                    mcp_tool_use_id: "sevt_0003".into(),
                    content: vec![ContentBlock::text(
                        "authorization pending: the MCP server `files` needs a wider OAuth scope",
                    )],
                    is_error: true,
                },
            ),
            agent(6, "Please authorize tether, then tell me."),
            idle(7, StopReason::EndTurn),
        ],
    );
}

#[test]
fn the_notice_names_the_server_and_scope_and_shows_the_whole_url() {
    let mut s = state(120, 40);
    scene(&mut s);
    let f = frame(&s);
    assert!(f.contains("MCP server files needs you to authorize"), "{f}");
    assert!(f.contains("files:write"), "{f}");
    // The URL in one piece, so it can be copied as it is.
    assert!(f.contains(URL), "{f}");
    // Nothing to act on but the URL: no prompt opens, and the input stays the user's.
    assert_eq!(s.overlay, Overlay::None);
}

#[test]
fn snapshot_authorization_notice() {
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        let mut s = state(w, h);
        scene(&mut s);
        insta::assert_snapshot!(format!("authorization_required_{w}x{h}"), frame(&s));
    }
}

const LOGIN_URL: &str = "http://127.0.0.1:8931/authorize?response_type=code&client_id=tether-7Qm2&redirect_uri=http%3A%2F%2F127.0.0.1%3A41877%2Fcallback&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=Zk3q&resource=http%3A%2F%2F127.0.0.1%3A8931%2Fmcp";

/// A child thread's server refused the session (no credential): the primary's stream has the
/// cross-posted notice, naming the thread.
fn unauthorized_scene(s: &mut State) {
    feed(
        s,
        &[
            user(1, "ask the reviewer to read the tracker"),
            running(2),
            Event {
                session_thread_id: Some("sthr_reviewer".into()),
                ..ev(
                    3,
                    EventBody::SessionThreadCreated {
                        agent_name: "reviewer".into(),
                        workflow_run_id: None,
                        model: Some("claude-haiku-4-5".into()),
                    },
                )
            },
            Event {
                session_thread_id: Some("sthr_reviewer".into()),
                ..ev(
                    4,
                    EventBody::McpAuthorizationRequired {
                        mcp_server_name: "tracker".into(),
                        mcp_server_url: "http://127.0.0.1:8931/mcp".into(),
                        authorization_url: LOGIN_URL.into(),
                        login_id: "login_02".into(),
                        scope: None,
                        reason: "unauthorized".into(),
                    },
                )
            },
            agent(5, "The tracker needs you to authorize tether first."),
            idle(6, StopReason::EndTurn),
        ],
    );
}

#[test]
fn alt_u_copies_the_newest_authorization_url_whole() {
    let mut s = state(80, 24);
    assert!(key_m(&mut s, KeyCode::Char('u'), KeyModifiers::ALT).is_empty());
    assert!(
        s.notice
            .as_deref()
            .is_some_and(|n| n.contains("no MCP server")),
        "{:?}",
        s.notice
    );
    unauthorized_scene(&mut s);
    // The URL wraps at 80 columns; the copy is the one URL, not the screen's lines.
    assert_eq!(
        key_m(&mut s, KeyCode::Char('u'), KeyModifiers::ALT),
        vec![Effect::Copy(LOGIN_URL.into())]
    );
    // A newer notice (a step-up later on) is the one copied.
    feed(
        &mut s,
        &[ev(
            7,
            EventBody::McpAuthorizationRequired {
                mcp_server_name: "files".into(),
                mcp_server_url: "http://127.0.0.1:8931/mcp".into(),
                authorization_url: URL.into(),
                login_id: "login_03".into(),
                scope: Some("files:write".into()),
                reason: "insufficient_scope".into(),
            },
        )],
    );
    assert_eq!(
        key_m(&mut s, KeyCode::Char('u'), KeyModifiers::ALT),
        vec![Effect::Copy(URL.into())]
    );
    assert!(
        s.notice.as_deref().is_some_and(|n| n.contains("OSC 52")),
        "{:?}",
        s.notice
    );
    // Typing goes on as before: alt-u put nothing in the composer.
    assert!(s.composer.is_empty());
}

#[test]
fn a_childs_notice_in_the_primary_names_the_thread_and_the_copy_key() {
    let mut s = state(120, 40);
    unauthorized_scene(&mut s);
    let f = frame(&s);
    assert!(
        f.contains("reviewer's MCP server tracker needs you to authorize tether:"),
        "{f}"
    );
    assert!(f.contains("alt-u copies it"), "{f}");
}

#[test]
fn snapshot_unauthorized_notice_of_a_child_thread() {
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        let mut s = state(w, h);
        unauthorized_scene(&mut s);
        insta::assert_snapshot!(format!("authorization_unauthorized_{w}x{h}"), frame(&s));
    }
}
