//! MCP scope step-up in the session view (issue 25): a `tether.mcp_authorization_required`
//! event shows as a notice with the login URL in full (to copy into a browser on tetherd's
//! machine; the TUI never opens it). Snapshots at 80×24 and 120×40.

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
