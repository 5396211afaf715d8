//! The markdown report: a header describing the machine and build, then one table row per
//! metric (median, min, max over the runs).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Ms,
    Mib,
    EventsPerSec,
    Percent,
    KiB,
    /// A dimensionless quotient of two measurements.
    Ratio,
    /// How many of something (events, rows) per unit of work.
    Count,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Mib => "MiB",
            Unit::EventsPerSec => "events/s",
            Unit::Percent => "%",
            Unit::KiB => "KiB",
            Unit::Ratio => "×",
            Unit::Count => "",
        }
    }

    fn fmt(self, v: f64) -> String {
        match self {
            Unit::Ms if v < 10.0 => format!("{v:.3}"),
            Unit::Ms | Unit::Mib | Unit::Percent | Unit::KiB => format!("{v:.1}"),
            Unit::Ratio => format!("{v:.2}"),
            Unit::Count => format!("{v:.1}"),
            Unit::EventsPerSec => thousands(v.round() as u64),
        }
    }
}

pub struct Row {
    pub metric: String,
    pub samples: Vec<f64>,
    pub unit: Unit,
    pub target: Option<Target>,
}

#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn stats(samples: &[f64]) -> Stats {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    };
    Stats {
        median,
        min: s.first().copied().unwrap_or(f64::NAN),
        max: s.last().copied().unwrap_or(f64::NAN),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::from("| metric | median | min | max | unit | target |\n");
    out.push_str("|---|---:|---:|---:|---|---|\n");
    for r in rows {
        let s = stats(&r.samples);
        let target = match r.target {
            None => "—".to_string(),
            Some(Target::AtMost(t)) => {
                format!("≤ {} {}", r.unit.fmt(t), mark(s.median <= t))
            }
            Some(Target::AtLeast(t)) => {
                format!("≥ {} {}", r.unit.fmt(t), mark(s.median >= t))
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.metric,
            r.unit.fmt(s.median),
            r.unit.fmt(s.min),
            r.unit.fmt(s.max),
            r.unit.name(),
            target
        );
    }
    out
}

fn mark(met: bool) -> &'static str {
    if met { "✅" } else { "❌" }
}

/// Facts about the machine and the build, one markdown bullet each.
pub fn machine_lines(root: &Path, tether: &Path) -> Vec<String> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let version = command_stdout(Command::new(tether).arg("--version"))
        .unwrap_or_else(|| "tether (version unknown)".into());
    let commit = command_stdout(Command::new("git").arg("-C").arg(root).args([
        "rev-parse",
        "--short",
        "HEAD",
    ]));
    let dirty = command_stdout(Command::new("git").arg("-C").arg(root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_some_and(|s| !s.is_empty());
    let build = match commit {
        Some(c) => format!("{version} (git {c}{})", if dirty { ", dirty" } else { "" }),
        None => version,
    };
    vec![
        format!("- date: {}", utc_now()),
        format!(
            "- tether: {build}, {} build",
            // `--debug-bins` drives target/debug: say so next to its numbers.
            if tether.parent().is_some_and(|d| d.ends_with("debug")) {
                "debug"
            } else {
                "release"
            }
        ),
        format!("- machine: {cpus} CPUs ({model}), {mem} RAM, Linux {kernel}"),
        format!("- /tmp (homes, workspaces, append db): {}", fs_of("/tmp")),
    ]
}

fn command_stdout(c: &mut Command) -> Option<String> {
    let out = c.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Filesystem type and device of the mount holding `path`, from /proc/self/mounts.
fn fs_of(path: &str) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [dev, mnt, fstype, ..] = f[..] else {
            continue;
        };
        let covers = path == mnt
            || mnt == "/"
            || path.starts_with(&format!("{}/", mnt.trim_end_matches('/')));
        if covers && best.as_ref().is_none_or(|(len, _)| mnt.len() >= *len) {
            best = Some((mnt.len(), format!("{fstype} ({dev} on {mnt})")));
        }
    }
    best.map(|(_, s)| s).unwrap_or_else(|| "unknown".into())
}

/// `YYYY-MM-DD HH:MM UTC`, without a date crate.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = stats(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(stats(&[5.0, 1.0, 3.0]).median, 3.0);
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn date_is_plausible() {
        let d = utc_now();
        assert!(d.starts_with("20") && d.ends_with(" UTC"), "{d}");
    }
}
