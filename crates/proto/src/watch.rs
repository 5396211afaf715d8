//! `sessions.watch` (issue 20): the daemon's session list once, then only what changes.
//!
//! The answer is the list with the change counter it reflects (`seq`); `sessions` pushes
//! follow, each with a larger `seq`, carrying the summaries that changed (status, title,
//! cost, last activity...) and the ids that left the list. A watcher that fell behind gets a
//! push with `resync: true` whose `changed` is the whole list: replace, don't merge. An idle
//! daemon sends nothing but the connection's heartbeat.

use serde::{Deserialize, Serialize};

use crate::session::SessionInfo;

/// Params of `sessions.watch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSessions {
    /// Include archived sessions (else one that is archived leaves the list).
    #[serde(default)]
    pub all: bool,
}

/// Result of `sessions.watch`: the list as of change `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionsWatching {
    pub data: Vec<SessionInfo>,
    pub seq: u64,
}

/// A `sessions` push: what changed since the previous one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionsChanged {
    /// The daemon's change counter this push brings the list up to.
    pub seq: u64,
    /// New or changed sessions, whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<SessionInfo>,
    /// Ids of sessions that left the list (deleted, or archived when not watching `all`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// `changed` is the whole list (the watcher fell behind and some changes were lost).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync: bool,
}

impl SessionsChanged {
    /// Folds this push into a watcher's copy of the list that is at `*seq`; a push that is
    /// not newer changes nothing (it is already reflected). Returns whether the list changed.
    pub fn apply(self, list: &mut Vec<SessionInfo>, seq: &mut u64) -> bool {
        if self.seq <= *seq {
            return false;
        }
        *seq = self.seq;
        if self.resync {
            *list = self.changed;
            return true;
        }
        if !self.removed.is_empty() {
            list.retain(|s| !self.removed.contains(&s.id));
        }
        for s in self.changed {
            match list.iter_mut().find(|o| o.id == s.id) {
                Some(o) => *o = s,
                None => list.push(s),
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionStatus;

    fn info(id: &str, status: SessionStatus) -> SessionInfo {
        serde_json::from_value(serde_json::json!({
            "id": id, "type": "session", "name": null, "title": null, "status": status,
            "model": "m", "workspace": "/w", "created_at": "t", "updated_at": "t",
            "archived_at": null, "usage": {}, "last_seq": 1, "attached_clients": 0,
            "metadata": {}
        }))
        .unwrap()
    }

    #[test]
    fn pushes_fold_in_order_and_old_ones_change_nothing() {
        let mut list = vec![
            info("a", SessionStatus::Idle),
            info("b", SessionStatus::Idle),
        ];
        let mut seq = 5;
        // Already reflected by the snapshot at seq 5.
        let stale = SessionsChanged {
            seq: 5,
            removed: vec!["a".into()],
            ..Default::default()
        };
        assert!(!stale.apply(&mut list, &mut seq));
        assert_eq!(list.len(), 2);
        let push = SessionsChanged {
            seq: 7,
            changed: vec![
                info("b", SessionStatus::Running),
                info("c", SessionStatus::Idle),
            ],
            removed: vec!["a".into()],
            resync: false,
        };
        assert!(push.apply(&mut list, &mut seq));
        assert_eq!(seq, 7);
        let ids: Vec<_> = list.iter().map(|s| (s.id.as_str(), s.status)).collect();
        assert_eq!(
            ids,
            [("b", SessionStatus::Running), ("c", SessionStatus::Idle)]
        );
        let resync = SessionsChanged {
            seq: 9,
            changed: vec![info("z", SessionStatus::Idle)],
            resync: true,
            ..Default::default()
        };
        assert!(resync.apply(&mut list, &mut seq));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, "z");
    }

    #[test]
    fn a_push_round_trips_and_omits_what_is_empty() {
        let p = SessionsChanged {
            seq: 3,
            removed: vec!["sesn_1".into()],
            ..Default::default()
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v, serde_json::json!({"seq": 3, "removed": ["sesn_1"]}));
        assert_eq!(serde_json::from_value::<SessionsChanged>(v).unwrap(), p);
    }
}
