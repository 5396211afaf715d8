//! What the listeners let in: a cap on open connections, room made by closing the oldest
//! connection that has not said hello yet, an accept loop that backs off when the process is
//! out of file descriptors, and warnings that repeat at most once per interval.
//!
//! A flood of idle connections must not lock out the user's own `tether ls`: every connection
//! counts against the cap, but one that has not greeted yet is the first to go when a new one
//! arrives at the cap, and the handshake timeout closes the rest. A client that greets at once
//! is therefore always let in unless every slot is held by a greeted client.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Connections allowed when the open-file limit is unknown.
const FALLBACK_MAX: usize = 256;
/// The default cap never goes above this: a single user's clients need far fewer.
const DEFAULT_MAX_CEILING: usize = 4096;
/// Nor below this, whatever the limit says.
const DEFAULT_MAX_FLOOR: usize = 16;

/// The soft open-file limit, raised to the hard one (the daemon's fds bound how many clients,
/// sessions, shells and model streams it can hold at once). Returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    // RLIM_INFINITY is not a valid soft limit for fds (the kernel caps at fs.nr_open).
    let target = hard.min(1 << 20);
    if soft < target && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        return Some(target);
    }
    Some(soft)
}

/// The soft open-file limit in force.
pub fn fd_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// The default connection cap for each listener: a quarter of the open-file limit, so both
/// listeners full still leave half the fds to sessions (shells, pipes, the database, model
/// streams), within [16, 4096].
pub fn default_max_connections(fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(n) => usize::try_from(n / 4).map_or(DEFAULT_MAX_CEILING, |q| {
            q.clamp(DEFAULT_MAX_FLOOR, DEFAULT_MAX_CEILING)
        }),
        None => FALLBACK_MAX,
    }
}

/// The cap on one listener's open connections.
pub struct Admission {
    max: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: usize,
    next_id: u64,
    /// Admitted connections that have not greeted yet, oldest first, with the token that
    /// closes each to make room.
    ungreeted: BTreeMap<u64, CancellationToken>,
}

impl Admission {
    pub fn new(max: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max: max.max(1),
            state: Mutex::new(State::default()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Open connections (greeted or not).
    pub fn open(&self) -> usize {
        self.lock().open
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters: a panic elsewhere cannot leave it half-updated.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a new connection. At the cap the oldest connection that has not greeted is
    /// told to close (its slot passes to the new one); `None` when every slot is held by a
    /// greeted connection.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut s = self.lock();
        if s.open >= self.max {
            let (_, oldest) = s.ungreeted.pop_first()?;
            oldest.cancel();
            s.open -= 1;
        }
        s.open += 1;
        s.next_id += 1;
        let id = s.next_id;
        let evicted = CancellationToken::new();
        s.ungreeted.insert(id, evicted.clone());
        Some(Slot {
            admission: self.clone(),
            id,
            evicted,
            greeted: false,
        })
    }
}

/// One admitted connection; dropping it frees the slot.
pub struct Slot {
    admission: Arc<Admission>,
    id: u64,
    evicted: CancellationToken,
    greeted: bool,
}

impl Slot {
    /// Fires when the connection was closed to make room for a newer one.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }

    /// The cap this slot counts against.
    pub fn max(&self) -> usize {
        self.admission.max
    }

    /// Marks the connection greeted, so it is no longer closed to make room. False if it was
    /// chosen for closing first.
    pub fn greet(&mut self) -> bool {
        if self.admission.lock().ungreeted.remove(&self.id).is_some() {
            self.greeted = true;
        }
        self.greeted
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.admission.lock();
        // An evicted slot was already given to its successor.
        if self.greeted || s.ungreeted.remove(&self.id).is_some() {
            s.open -= 1;
        }
    }
}

/// A warning that may repeat fast (one per refused connection, one per failed accept) is
/// logged at most once per interval, with the count of those left out since.
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(left out since the last one)` when this occurrence is to be logged.
    pub fn check(&self) -> Option<u64> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => {
                s.1 += 1;
                None
            }
            _ => {
                s.0 = Some(now);
                Some(std::mem::take(&mut s.1))
            }
        }
    }
}

/// Sleeps between failed accepts: a listener out of fds stays readable, so retrying at once
/// spins a core (and used to write a log line per spin).
#[derive(Default)]
pub struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);

    pub fn reset(&mut self) {
        self.next = None;
    }

    /// The next delay: 10 ms, doubling up to 1 s.
    pub fn delay(&mut self) -> Duration {
        let d = self.next.unwrap_or(Self::FIRST);
        self.next = Some((d * 2).min(Self::MOST));
        d
    }

    /// Whether an accept error means the process (or system) is out of fds or memory rather
    /// than one connection having gone away.
    pub fn is_exhaustion(e: &std::io::Error) -> bool {
        use nix::errno::Errno;
        matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn default_cap_follows_the_fd_limit() {
        assert_eq!(default_max_connections(Some(1024)), 256);
        assert_eq!(default_max_connections(Some(20_000)), 4096);
        assert_eq!(default_max_connections(Some(32)), 16);
        assert_eq!(default_max_connections(None), FALLBACK_MAX);
    }

    #[test]
    fn at_the_cap_the_oldest_ungreeted_connection_makes_room() {
        let a = Admission::new(2);
        let mut greeted = a.admit().unwrap();
        assert!(greeted.greet());
        let idle = a.admit().unwrap();
        assert_eq!(a.open(), 2);
        // Full: the idle one is told to go and the newcomer takes its slot.
        let newcomer = a.admit().unwrap();
        assert!(idle.evicted().is_cancelled());
        assert!(!greeted.evicted().is_cancelled());
        assert_eq!(a.open(), 2);
        drop(idle);
        assert_eq!(a.open(), 2, "the evicted slot was already handed on");
        let mut newcomer = newcomer;
        assert!(newcomer.greet());
        // Every slot greeted: nobody is let in.
        assert!(a.admit().is_none());
        drop(greeted);
        assert_eq!(a.open(), 1);
        assert!(a.admit().is_some());
    }

    #[test]
    fn an_evicted_connection_cannot_greet() {
        let a = Admission::new(1);
        let mut first = a.admit().unwrap();
        let _second = a.admit().unwrap();
        assert!(!first.greet());
        drop(first);
        assert_eq!(a.open(), 1);
    }

    #[test]
    fn throttle_counts_what_it_leaves_out() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.check(), Some(0));
        assert_eq!(t.check(), None);
        assert_eq!(t.check(), None);
        let t = Throttle::new(Duration::ZERO);
        assert_eq!(t.check(), Some(0));
        assert_eq!(t.check(), Some(0));
    }

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..9).map(|_| b.delay().as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.delay().as_millis(), 10);
        let emfile = std::io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32);
        assert!(Backoff::is_exhaustion(&emfile));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert!(!Backoff::is_exhaustion(&reset));
    }
}
