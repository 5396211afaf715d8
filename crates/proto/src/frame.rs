//! Frames: one JSON object per NDJSON line.
//!
//! Client → daemon: `{"hello": {...}}` first, then requests `{"id", "method", "params"}`.
//! Daemon → client: `{"welcome": {...}}`, responses `{"id", "result"}` / `{"id", "error"}`,
//! pushes `{"event": ...}`, `{"delta": ...}`, `{"snapshot": ...}`, `{"resync": ...}`,
//! `{"heartbeat": {}}` and a connection-level `{"error": {...}}` right before a close.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorBody, ErrorCode};
use crate::event::{Delta, Event};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// Client name, e.g. `tether-cli`.
    pub client: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u32,
    pub daemon_version: String,
    pub pid: u32,
    /// The daemon sends `{"heartbeat":{}}` after this long without other output, so a client
    /// that hears nothing for a few intervals knows the link is dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Result(Value),
    Error(ErrorBody),
}

/// What a reattaching client needs to show the message being written and the running tool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub session_id: String,
    /// Deltas with `n <= delta_n` are already included here.
    pub delta_n: u64,
    /// Text of the assistant message being streamed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_text: Option<String>,
    /// The running tool call and the tail of its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_output_tail: Option<String>,
}

/// The client fell behind: re-attach with `after_seq = from_seq - 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resync {
    pub session_id: String,
    pub from_seq: u64,
}

/// The attach replay is complete: everything up to `last_seq` has been sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaughtUp {
    pub session_id: String,
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientFrame {
    Hello(Hello),
    #[serde(untagged)]
    Request(Request),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome(Welcome),
    Event(Box<Event>),
    Delta(Delta),
    Snapshot(Snapshot),
    CaughtUp(CaughtUp),
    Resync(Resync),
    /// Sent on an otherwise idle connection; moves no cursor.
    Heartbeat {},
    /// tether: progress of an environment build a client watches (`environment.watch`).
    Build(crate::environment::BuildProgress),
    /// tether: sessions whose summary changed, for a client that ran `sessions.watch`.
    Sessions(crate::watch::SessionsChanged),
    /// Connection-level error; the daemon closes the connection after sending it.
    Error(ErrorBody),
    #[serde(untagged)]
    Response(Response),
}

impl ServerFrame {
    pub fn result(id: u64, value: Value) -> Self {
        ServerFrame::Response(Response {
            id,
            outcome: Outcome::Result(value),
        })
    }

    pub fn error(id: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Response(Response {
            id,
            outcome: Outcome::Error(ErrorBody::new(code, message)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{DeltaKind, EventBody};
    use serde_json::json;

    fn rt_server(f: ServerFrame) {
        let s = serde_json::to_string(&f).unwrap();
        assert!(!s.contains('\n'));
        let back: ServerFrame = serde_json::from_str(&s).unwrap();
        assert_eq!(back, f, "{s}");
    }

    #[test]
    fn client_frames_round_trip_and_have_the_documented_shape() {
        let hello = ClientFrame::Hello(Hello {
            protocol: 1,
            client: "tether-cli".into(),
            version: "0.1.0".into(),
        });
        let v = serde_json::to_value(&hello).unwrap();
        assert_eq!(
            v,
            json!({"hello": {"protocol": 1, "client": "tether-cli", "version": "0.1.0"}})
        );
        assert_eq!(serde_json::from_value::<ClientFrame>(v).unwrap(), hello);

        let req = ClientFrame::Request(Request {
            id: 4,
            method: "session.get".into(),
            params: json!({"session": "x"}),
        });
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({"id": 4, "method": "session.get", "params": {"session": "x"}})
        );
        assert_eq!(serde_json::from_value::<ClientFrame>(v).unwrap(), req);
        // params may be omitted
        let r: ClientFrame = serde_json::from_str(r#"{"id":1,"method":"daemon.status"}"#).unwrap();
        assert!(matches!(r, ClientFrame::Request(Request { id: 1, .. })));
    }

    #[test]
    fn garbage_is_not_a_client_frame() {
        for s in [r#"{"nope":1}"#, "[]", "3", r#"{"id":"x","method":1}"#] {
            assert!(serde_json::from_str::<ClientFrame>(s).is_err(), "{s}");
        }
    }

    #[test]
    fn server_frames_round_trip() {
        rt_server(ServerFrame::Welcome(Welcome {
            protocol: 1,
            daemon_version: "0.1.0".into(),
            pid: 42,
            heartbeat_ms: Some(5000),
        }));
        rt_server(ServerFrame::result(3, json!({"ok": true})));
        rt_server(ServerFrame::error(3, ErrorCode::NotFound, "no session `x`"));
        rt_server(ServerFrame::Event(Box::new(Event {
            id: "sevt_1".into(),
            session_id: "sesn_1".into(),
            seq: 1,
            processed_at: None,
            session_thread_id: None,
            body: EventBody::user_text("hi"),
        })));
        rt_server(ServerFrame::Delta(Delta {
            session_id: "sesn_1".into(),
            n: 1,
            kind: DeltaKind::Text {
                index: 0,
                text: "x".into(),
            },
        }));
        rt_server(ServerFrame::Snapshot(Snapshot {
            session_id: "sesn_1".into(),
            delta_n: 5,
            message_text: Some("partial".into()),
            ..Default::default()
        }));
        rt_server(ServerFrame::CaughtUp(CaughtUp {
            session_id: "sesn_1".into(),
            last_seq: 9,
        }));
        rt_server(ServerFrame::Resync(Resync {
            session_id: "sesn_1".into(),
            from_seq: 10,
        }));
        rt_server(ServerFrame::Heartbeat {});
        rt_server(ServerFrame::Error(ErrorBody::new(
            ErrorCode::FrameTooLarge,
            "too big",
        )));
    }

    #[test]
    fn response_shapes_are_flat() {
        let v = serde_json::to_value(ServerFrame::error(7, ErrorCode::Archived, "m")).unwrap();
        assert_eq!(
            v,
            json!({"id": 7, "error": {"code": "archived", "message": "m"}})
        );
        let v = serde_json::to_value(ServerFrame::result(7, json!(1))).unwrap();
        assert_eq!(v, json!({"id": 7, "result": 1}));
    }
}
