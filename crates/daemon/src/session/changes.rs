//! The daemon-wide feed of "this session's summary may have changed" (issue 20): what
//! `sessions.watch` pushes from, so a watching picker never polls.
//!
//! A session notes its own id (a child thread its primary's) after each committed append and
//! each row change; the runtime notes a deletion. Each note takes the next number of one
//! counter *after* the change is visible, so a watcher that subscribes, then reads the
//! counter, then lists, knows every note numbered at or below what it read is already in its
//! list (subscribe before replay; dedupe by seq). A watcher that falls more than
//! [`CAPACITY`] notes behind is told it lagged and lists again.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast;

/// Notes a watcher may fall behind before it must resync.
pub const CAPACITY: usize = 4096;

/// One note: change number `seq` touched session `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub seq: u64,
    pub id: String,
}

pub struct SessionChanges {
    tx: broadcast::Sender<Changed>,
    seq: AtomicU64,
}

impl Default for SessionChanges {
    fn default() -> Self {
        SessionChanges {
            tx: broadcast::channel(CAPACITY).0,
            seq: AtomicU64::new(0),
        }
    }
}

impl SessionChanges {
    /// Session `id` changed (call after the change is visible to readers).
    pub fn note(&self, id: &str) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        // Nobody watching: nothing to build (the counter still moves).
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Changed {
                seq,
                id: id.to_string(),
            });
        }
    }

    /// A new watcher's feed and the change number its first list must be read after.
    pub fn subscribe(&self) -> (broadcast::Receiver<Changed>, u64) {
        let rx = self.tx.subscribe();
        (rx, self.seq.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_sees_only_changes_after_the_seq_it_starts_from() {
        let c = SessionChanges::default();
        c.note("before");
        let (mut rx, from) = c.subscribe();
        assert_eq!(from, 1);
        c.note("a");
        c.note("b");
        assert_eq!(
            rx.try_recv().unwrap(),
            Changed {
                seq: 2,
                id: "a".into()
            }
        );
        assert_eq!(rx.try_recv().unwrap().seq, 3);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_watcher_too_far_behind_is_told_it_lagged() {
        let c = SessionChanges::default();
        let (mut rx, _) = c.subscribe();
        for _ in 0..CAPACITY + 1 {
            c.note("busy");
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
