//! The scheduler's time: the system clock in the daemon, a clock moved by hand in tests (so
//! no test sleeps to see a schedule fire).

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once `now() >= at` (or earlier; the scheduler looks at the time again).
    /// `seen` is the time the caller last read: a clock that moved since may wake at once.
    fn sleep_until(&self, at: DateTime<Utc>, seen: DateTime<Utc>) -> Sleep;
}

/// Wall-clock time. Long sleeps are cut to [`SystemClock::MAX_SLEEP`]: a sleep runs on the
/// monotonic clock, which a suspended machine or a set clock leaves behind the wall clock.
pub struct SystemClock;

impl SystemClock {
    pub const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(600);
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>, _seen: DateTime<Utc>) -> Sleep {
        let wait = (at - Utc::now())
            .to_std()
            .unwrap_or_default()
            .min(Self::MAX_SLEEP);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told ([`FakeClock::set`], [`FakeClock::advance`]).
pub struct FakeClock {
    now: tokio::sync::watch::Sender<DateTime<Utc>>,
}

impl FakeClock {
    pub fn new(start: DateTime<Utc>) -> FakeClock {
        FakeClock {
            now: tokio::sync::watch::Sender::new(start),
        }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        self.now.send_replace(at);
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.now.send_modify(|t| *t += by);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    /// Also resolves whenever the clock is moved (including since `seen`), so every move is a
    /// pass a test can await.
    fn sleep_until(&self, at: DateTime<Utc>, seen: DateTime<Utc>) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let now = *rx.borrow_and_update();
            if now >= at || now != seen {
                return;
            }
            let _ = rx.changed().await;
        })
    }
}
