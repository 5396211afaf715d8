//! Pure backoff policy for the harness's retry loop.

use std::time::Duration;

use super::ProviderError;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts, the first one included (default 5).
    pub max_attempts: u32,
    /// Delay after the first failure, before jitter (default 1 s).
    pub base_delay: Duration,
    /// Ceiling of the computed backoff (default 60 s).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` after failure number `attempt` (1-based;
    /// 0 is treated as 1).
    ///
    /// Without `retry_after`: `d = min(base * 2^(attempt-1), max_delay)`, then
    /// jittered into `[d/2, d]` as `d * (0.5 + 0.5 * jitter)`. `jitter` is a
    /// number in `[0, 1)` supplied by the caller (clamped; NaN counts as 0), so
    /// the function stays pure.
    ///
    /// With `retry_after` the server wins: the delay is exactly what it asked for,
    /// never less (retrying sooner only earns another 429) and not cut down to
    /// `max_delay` either. Header parsing already clamps absurd values.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(server) = retry_after {
            return server;
        }
        let exponent = attempt.max(1) - 1;
        let max = self.max_delay.as_secs_f64();
        // 2^exponent in f64 never overflows to a panic; `min` caps it.
        let full = (self.base_delay.as_secs_f64() * 2f64.powi(exponent.min(1023) as i32)).min(max);
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let secs = full * (0.5 + 0.5 * jitter);
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Whether the harness should try again after failure number `attempt`
    /// (1-based) with `error`.
    pub fn should_retry(&self, attempt: u32, error: &ProviderError) -> bool {
        attempt < self.max_attempts && error.is_retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    #[test]
    fn defaults() {
        let p = policy();
        assert_eq!(p.max_attempts, 5);
        assert_eq!(p.base_delay, Duration::from_secs(1));
        assert_eq!(p.max_delay, Duration::from_secs(60));
    }

    #[test]
    fn grows_exponentially() {
        let p = policy();
        // jitter just below 1 gives (almost) the full delay.
        let full: Vec<u128> = (1..=6)
            .map(|a| p.delay(a, None, 0.999_999).as_millis())
            .collect();
        assert_eq!(full, vec![999, 1999, 3999, 7999, 15999, 31999]);
        let low: Vec<Duration> = (1..=4).map(|a| p.delay(a, None, 0.0)).collect();
        assert_eq!(
            low,
            vec![
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4)
            ]
        );
        assert_eq!(p.delay(0, None, 0.0), p.delay(1, None, 0.0));
    }

    #[test]
    fn capped_at_max_delay() {
        let p = policy();
        for attempt in [7, 8, 20, 64, 1000, u32::MAX] {
            for jitter in [0.0, 0.5, 0.999] {
                let d = p.delay(attempt, None, jitter);
                assert!(d <= p.max_delay, "{attempt} {jitter} {d:?}");
                assert!(d >= p.max_delay / 2, "{attempt} {jitter} {d:?}");
            }
        }
        assert_eq!(p.delay(100, None, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn jitter_bounds() {
        let p = policy();
        for attempt in 1..=8u32 {
            let nominal = (p.base_delay * 2u32.pow(attempt - 1)).min(p.max_delay);
            for i in 0..100 {
                let jitter = f64::from(i) / 100.0;
                let d = p.delay(attempt, None, jitter);
                assert!(d >= nominal / 2 && d <= nominal, "{attempt} {jitter} {d:?}");
            }
            // Out-of-range jitter is clamped rather than trusted.
            assert_eq!(p.delay(attempt, None, -3.0), nominal / 2);
            assert_eq!(p.delay(attempt, None, f64::NAN), nominal / 2);
            assert_eq!(p.delay(attempt, None, 7.0), nominal);
        }
    }

    #[test]
    fn honours_retry_after() {
        let p = policy();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7)), 0.3),
            Duration::from_secs(7)
        );
        // Shorter than the backoff: the server still wins.
        assert_eq!(
            p.delay(6, Some(Duration::from_millis(250)), 0.9),
            Duration::from_millis(250)
        );
        // Longer than max_delay: never retry sooner than the server asked.
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(90)), 0.0),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn should_retry_counts_attempts() {
        let p = policy();
        let e = ProviderError::Transport("reset".into());
        assert!(p.should_retry(1, &e));
        assert!(p.should_retry(4, &e));
        assert!(!p.should_retry(5, &e));
        assert!(!p.should_retry(1, &ProviderError::Config("x".into())));
    }
}
