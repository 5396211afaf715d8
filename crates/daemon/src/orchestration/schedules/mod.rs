//! The schedules room: deployments (a saved agent + environment + initial events) and the
//! scheduler that fires them as sessions on a cron schedule, once at a time (`at`), or on
//! demand. Hosted semantics (reference §3): wall-clock DST rules, per-deployment jitter, at
//! most one run per `(deployment, scheduled_at)` whatever crashes, missed fires recorded as
//! failed runs and never backfilled, auto-pause on the listed errors.
//!
//! - [`timing`]: when a schedule fires (pure; croner for cron, chrono-tz for zones);
//! - [`clock`]: the time the scheduler reads (system in the daemon, by hand in tests);
//! - [`deployments`]: create / update / pause / unpause / archive and the wire shape;
//! - [`resources`]: the files, repositories and memory stores its sessions mount (tokens
//!   sealed);
//! - [`fire`]: one fire, crash-safe (run recorded before the session), and recovery;
//! - [`scheduler`]: the task that sleeps until the next fire.

pub mod clock;
pub mod deployments;
pub mod fire;
pub mod resources;
pub mod scheduler;
pub mod timing;

pub use scheduler::Scheduler;
