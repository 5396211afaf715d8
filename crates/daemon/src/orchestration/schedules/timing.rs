//! When a schedule fires: pure functions of the schedule, the deployment's id and "now" (the
//! caller's clock). Cron matching is croner's and time-zone conversion chrono-tz's; this file
//! only picks among their answers.
//!
//! Wall-clock rules (the hosted ones): an expression matches local wall-clock times; a local
//! time a DST gap skips never fires, a local time a DST fold repeats fires twice (once per
//! offset). Each fire is delayed by a jitter that is fixed per deployment (a hash of its id)
//! and bounded by 15% of the interval to the next occurrence, clamped to 5 s ..= 9 min.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use tether_proto::deployment::ScheduleSpec;

/// Fires later than this after their time are missed (the daemon was down or asleep), not run.
pub const GRACE: Duration = Duration::minutes(2);
/// Missed fires recorded at most, newest kept; older ones are forgotten (no backfill anyway).
pub const MAX_MISSED: usize = 100;
/// How far back missed fires are looked for.
pub const MISSED_WINDOW: Duration = Duration::hours(24);
/// `upcoming_runs_at` length.
pub const UPCOMING: usize = 5;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Timing {
    Cron {
        cron: Box<Cron>,
        tz: Tz,
    },
    /// tether: one fire at this instant.
    At(DateTime<Utc>),
}

/// Checks the hosted rules croner is laxer about: exactly five fields, no seconds or year, no
/// `L W # ?` and no `@daily`-style shortcuts (names such as `MON` or `JAN` are fine).
fn check_expression(expr: &str) -> Result<(), String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "schedule.expression: `{expr}` has {} fields; expected 5 (minute hour day-of-month month day-of-week), e.g. `0 9 * * 1-5`",
            fields.len()
        ));
    }
    for field in fields {
        for token in field.split([',', '-', '/']) {
            let ok = token == "*"
                || (!token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()))
                || (token.len() == 3 && token.bytes().all(|b| b.is_ascii_alphabetic()));
            if !ok {
                return Err(format!(
                    "schedule.expression: `{token}` in `{expr}` is not allowed; use numbers, `*`, `,`, `-`, `/` and three-letter day or month names (no `L`, `W`, `#`, `?` or `@` shortcuts)"
                ));
            }
        }
    }
    Ok(())
}

impl Timing {
    pub fn parse(spec: &ScheduleSpec) -> Result<Timing, String> {
        match spec {
            ScheduleSpec::Cron {
                expression,
                timezone,
            } => {
                check_expression(expression)?;
                let cron = Cron::new(expression)
                    .parse()
                    .map_err(|e| format!("schedule.expression: `{expression}`: {e}"))?;
                let tz: Tz = timezone.parse().map_err(|_| {
                    format!(
                        "schedule.timezone: `{timezone}` is not an IANA time zone name (e.g. `UTC`, `Europe/Paris`, `America/New_York`)"
                    )
                })?;
                let t = Timing::Cron {
                    cron: Box::new(cron),
                    tz,
                };
                // `0 0 31 2 *` parses but never fires: say so now, not by never running.
                if t.next_after(Utc::now()).is_none() {
                    return Err(format!(
                        "schedule.expression: `{expression}` never matches a real date"
                    ));
                }
                Ok(t)
            }
            ScheduleSpec::At { time } => DateTime::parse_from_rfc3339(time)
                .map(|t| Timing::At(t.with_timezone(&Utc)))
                .map_err(|e| {
                    format!(
                        "schedule.time: `{time}` is not an RFC 3339 time ({e}); e.g. `2026-05-09T08:00:00Z`"
                    )
                }),
        }
    }

    /// The first occurrence strictly after `t` (before jitter), if any.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (cron, tz) = match self {
            Timing::At(at) => return (*at > t).then_some(*at),
            Timing::Cron { cron, tz } => (cron, tz),
        };
        // Offsets around `t`: a wall-clock time n maps to the instant n - offset, so the
        // matches worth looking at start at t + the smallest offset, and none after
        // best + the largest offset can beat the best found. Outside a DST change both are
        // equal and this reads one or two matches.
        let offset_at = |at: DateTime<Utc>| {
            Duration::seconds(i64::from(
                tz.offset_from_utc_datetime(&at.naive_utc())
                    .fix()
                    .local_minus_utc(),
            ))
        };
        let day = Duration::days(1);
        let offsets = [offset_at(t - day), offset_at(t), offset_at(t + day)];
        let min = offsets.iter().copied().min()?;
        let max = offsets.iter().copied().max()?;
        // croner matches naive wall-clock times, carried as UTC so it sees no gaps or folds.
        let mut cursor = Utc.from_utc_datetime(&(t.naive_utc() + min)) - Duration::seconds(1);
        let mut best: Option<DateTime<Utc>> = None;
        loop {
            let next = cron.find_next_occurrence(&cursor, false).ok()?;
            let wall = next.naive_utc();
            if let Some(b) = best
                && wall - max > b.naive_utc()
            {
                return best;
            }
            for instant in instants(tz, wall) {
                if instant > t && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
            cursor = next;
        }
    }

    /// The first `n` occurrences strictly after `t`.
    pub fn occurrences_after(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            let Some(next) = self.next_after(at) else {
                break;
            };
            out.push(next);
            at = next;
        }
        out
    }

    /// The delay of the fire scheduled at `at`: a fixed fraction (per deployment) of 15% of the
    /// interval to the next occurrence, that bound clamped to 5 s ..= 9 min. None for `at`
    /// schedules, which fire on the second they name.
    pub fn jitter(&self, deployment_id: &str, at: DateTime<Utc>) -> Duration {
        if matches!(self, Timing::At(_)) {
            return Duration::zero();
        }
        let interval = self
            .next_after(at)
            .map(|n| n - at)
            .unwrap_or(Duration::hours(1));
        let bound_ms = (interval.num_milliseconds() * 15 / 100).clamp(5_000, 540_000);
        Duration::milliseconds((fnv1a(deployment_id) % bound_ms as u64) as i64)
    }
}

/// The instants a local wall-clock time names: none in a DST gap, two in a fold.
fn instants(tz: &Tz, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::None => vec![],
        LocalResult::Single(a) => vec![a.with_timezone(&Utc)],
        LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
    }
}

/// A stable 64-bit hash (FNV-1a): the same jitter for a deployment across restarts and builds.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What a deployment's schedule asks for at `now`.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Occurrences to fire now (their jittered time has come, within [`GRACE`]).
    pub due: Vec<DateTime<Utc>>,
    /// Occurrences whose time passed unnoticed (more than [`GRACE`] ago): recorded as failed
    /// runs, never run late. The newest [`MAX_MISSED`] of the last [`MISSED_WINDOW`].
    pub missed: Vec<DateTime<Utc>>,
    /// When to look again: the next occurrence's jittered time.
    pub wake_at: Option<DateTime<Utc>>,
}

/// The occurrences after `cursor` (the last occurrence already handled, or the moment the
/// schedule was set or unpaused: nothing at or before it ever fires) as of `now`.
pub fn plan(
    timing: &Timing,
    deployment_id: &str,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Plan {
    let mut out = Plan::default();
    let mut at = cursor.max(now - MISSED_WINDOW);
    while let Some(s) = timing.next_after(at) {
        let fire_at = s + timing.jitter(deployment_id, s);
        if fire_at > now {
            out.wake_at = Some(fire_at);
            break;
        }
        if now - fire_at <= GRACE {
            out.due.push(s);
        } else {
            out.missed.push(s);
            if out.missed.len() > MAX_MISSED {
                out.missed.remove(0);
            }
        }
        at = s;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(expression: &str, timezone: &str) -> Timing {
        Timing::parse(&ScheduleSpec::Cron {
            expression: expression.into(),
            timezone: timezone.into(),
        })
        .unwrap()
    }

    fn fmt(v: &[DateTime<Utc>]) -> Vec<String> {
        v.iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    #[test]
    fn cron_in_several_time_zones_matches_local_wall_clock() {
        let from = utc("2026-01-15T00:00:00Z");
        assert_eq!(
            fmt(&cron("0 9 * * *", "UTC").occurrences_after(from, 2)),
            ["2026-01-15T09:00:00Z", "2026-01-16T09:00:00Z"]
        );
        // Paris is UTC+1 in winter, Tokyo +9, New York -5.
        assert_eq!(
            fmt(&cron("0 9 * * *", "Europe/Paris").occurrences_after(from, 1)),
            ["2026-01-15T08:00:00Z"]
        );
        assert_eq!(
            fmt(&cron("0 9 * * *", "Asia/Tokyo").occurrences_after(from, 1)),
            // 09:00 JST on the 15th is `from` itself, and occurrences are strictly after it.
            ["2026-01-16T00:00:00Z"]
        );
        assert_eq!(
            fmt(&cron("30 8 * * 1-5", "America/New_York").occurrences_after(from, 3)),
            // Thu 15th, Fri 16th, then Monday the 19th.
            [
                "2026-01-15T13:30:00Z",
                "2026-01-16T13:30:00Z",
                "2026-01-19T13:30:00Z"
            ]
        );
        // India's half-hour offset, and day-of-week 7 meaning Sunday.
        assert_eq!(
            fmt(&cron("0 0 * * 7", "Asia/Kolkata").occurrences_after(from, 1)),
            ["2026-01-17T18:30:00Z"]
        );
    }

    #[test]
    fn a_time_the_spring_gap_skips_never_fires() {
        // New York, 2026-03-08: 02:00 jumps to 03:00, so 02:30 doesn't exist that day.
        let t = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            fmt(&t.occurrences_after(utc("2026-03-07T12:00:00Z"), 2)),
            // 02:30 EST on the 7th was 07:30Z, so next is 02:30 EDT on the 9th: the 8th is skipped.
            ["2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"]
        );
        // Every 30 minutes across the gap: 01:30 EST then 03:00 EDT, nothing in between.
        let t = cron("*/30 * * * *", "America/New_York");
        assert_eq!(
            fmt(&t.occurrences_after(utc("2026-03-08T06:00:00Z"), 3)),
            [
                "2026-03-08T06:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T07:30:00Z"
            ]
        );
    }

    #[test]
    fn a_time_the_autumn_fold_repeats_fires_twice() {
        // New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST, so 01:30 happens twice.
        let t = cron("30 1 * * *", "America/New_York");
        assert_eq!(
            fmt(&t.occurrences_after(utc("2026-11-01T00:00:00Z"), 3)),
            [
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-02T06:30:00Z"
            ]
        );
        // Every 20 minutes through the fold: strictly increasing instants, each wall time of
        // the repeated hour once per offset.
        let t = cron("*/20 1 * * *", "America/New_York");
        assert_eq!(
            fmt(&t.occurrences_after(utc("2026-11-01T04:00:00Z"), 6)),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:20:00Z",
                "2026-11-01T05:40:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:20:00Z",
                "2026-11-01T06:40:00Z"
            ]
        );
    }

    #[test]
    fn expressions_outside_five_field_posix_cron_are_refused_with_the_reason() {
        let bad = |e: &str, tz: &str| {
            Timing::parse(&ScheduleSpec::Cron {
                expression: e.into(),
                timezone: tz.into(),
            })
            .unwrap_err()
        };
        assert!(bad("0 9 * *", "UTC").contains("has 4 fields"));
        assert!(bad("0 0 9 * * *", "UTC").contains("has 6 fields"));
        assert!(bad("@daily", "UTC").contains("has 1 fields"));
        assert!(bad("0 9 L * *", "UTC").contains("`L`"));
        assert!(bad("0 9 * * 1#2", "UTC").contains("`1#2`"));
        assert!(bad("0 9 ? * *", "UTC").contains("`?`"));
        assert!(bad("61 9 * * *", "UTC").contains("61 9"));
        assert!(bad("0 0 31 2 *", "UTC").contains("never matches"));
        assert!(bad("0 9 * * *", "Mars/Olympus").contains("IANA"));
        assert!(
            Timing::parse(&ScheduleSpec::At {
                time: "tomorrow".into()
            })
            .unwrap_err()
            .contains("RFC 3339")
        );
        cron("0 9 * * MON-FRI", "UTC");
        cron("*/15 8-18 1,15 JAN-JUN *", "Europe/Berlin");
    }

    #[test]
    fn jitter_is_fixed_per_deployment_and_within_its_bounds() {
        let hourly = cron("0 * * * *", "UTC");
        let minutely = cron("* * * * *", "UTC");
        let weekly = cron("0 0 * * 0", "UTC");
        let at = utc("2026-01-15T10:00:00Z");
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let id = format!("depl_{i:04}");
            let j = hourly.jitter(&id, at);
            assert_eq!(j, hourly.jitter(&id, at), "deterministic");
            // 15% of an hour is 9 min: the cap.
            assert!(j >= Duration::zero() && j < Duration::minutes(9), "{j}");
            // 15% of a minute is 9 s.
            let j = minutely.jitter(&id, at);
            assert!(j < Duration::seconds(9), "{j}");
            // A week's 15% is capped at 9 min too.
            assert!(weekly.jitter(&id, at) < Duration::minutes(9));
            seen.insert(hourly.jitter(&id, at).num_seconds());
        }
        assert!(
            seen.len() > 100,
            "jitter spreads deployments: {}",
            seen.len()
        );
        let one_shot = Timing::At(at);
        assert_eq!(one_shot.jitter("depl_x", at), Duration::zero());
    }

    #[test]
    fn plan_fires_what_is_due_and_sleeps_until_the_next() {
        let t = cron("0 * * * *", "UTC");
        let id = "depl_plan";
        let j = t.jitter(id, utc("2026-01-15T10:00:00Z"));
        let cursor = utc("2026-01-15T09:30:00Z");
        // Before 10:00 + jitter: nothing due, wake at 10:00 + jitter.
        let p = plan(&t, id, cursor, utc("2026-01-15T09:59:00Z"));
        assert!(p.due.is_empty() && p.missed.is_empty());
        assert_eq!(p.wake_at, Some(utc("2026-01-15T10:00:00Z") + j));
        // At the wake: 10:00 is due (scheduled_at is the pre-jitter time).
        let p = plan(&t, id, cursor, utc("2026-01-15T10:00:00Z") + j);
        assert_eq!(fmt(&p.due), ["2026-01-15T10:00:00Z"]);
        assert!(p.wake_at.unwrap() >= utc("2026-01-15T11:00:00Z"));
        // Once handled (cursor moved to it), it is never due again.
        let p = plan(
            &t,
            id,
            utc("2026-01-15T10:00:00Z"),
            utc("2026-01-15T10:00:00Z") + j,
        );
        assert!(p.due.is_empty());
    }

    #[test]
    fn fires_missed_while_down_are_listed_as_missed_not_due() {
        let t = cron("0 * * * *", "UTC");
        let id = "depl_down";
        // Down from 09:30 to 13:01 (plus the largest jitter): 10, 11, 12 missed; 13 due.
        let now = utc("2026-01-15T13:00:00Z") + t.jitter(id, utc("2026-01-15T13:00:00Z"));
        let p = plan(&t, id, utc("2026-01-15T09:30:00Z"), now);
        assert_eq!(
            fmt(&p.missed),
            [
                "2026-01-15T10:00:00Z",
                "2026-01-15T11:00:00Z",
                "2026-01-15T12:00:00Z"
            ]
        );
        assert_eq!(fmt(&p.due), ["2026-01-15T13:00:00Z"]);
        // Down for weeks on a minutely schedule: only the newest MAX_MISSED of the last day.
        let t = cron("* * * * *", "UTC");
        let now = utc("2026-02-15T00:00:30Z");
        let p = plan(&t, id, utc("2026-01-01T00:00:00Z"), now);
        assert_eq!(p.missed.len(), MAX_MISSED);
        assert!(p.missed.iter().all(|m| now - *m < MISSED_WINDOW));
        assert!(p.missed.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_one_shot_fires_once_at_its_time() {
        let t = Timing::At(utc("2026-01-15T10:00:00Z"));
        let p = plan(
            &t,
            "d",
            utc("2026-01-15T09:00:00Z"),
            utc("2026-01-15T09:59:59Z"),
        );
        assert_eq!(p.wake_at, Some(utc("2026-01-15T10:00:00Z")));
        let p = plan(
            &t,
            "d",
            utc("2026-01-15T09:00:00Z"),
            utc("2026-01-15T10:00:00Z"),
        );
        assert_eq!(fmt(&p.due), ["2026-01-15T10:00:00Z"]);
        assert_eq!(p.wake_at, None);
        let p = plan(
            &t,
            "d",
            utc("2026-01-15T10:00:00Z"),
            utc("2026-01-15T10:00:01Z"),
        );
        assert_eq!(p, Plan::default());
    }
}
