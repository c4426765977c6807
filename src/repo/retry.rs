//! Trying again after losing a race to another writer: one limit and one backoff for every
//! layer that retries (commits rebased, updates and history operations planned again).

use std::time::Duration;

/// Attempts before an operation gives up on a branch that other writers keep moving.
pub(crate) const MAX_ATTEMPTS: u32 = 16;

/// The wait before attempt `attempt + 1`: exponential from 10 ms, capped at 320 ms, plus a
/// jitter from the clock and the process id so that racing writers spread out.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
        ^ u64::from(std::process::id()).wrapping_mul(0x9E37_79B9);
    let base = 10u64 << attempt.min(5);
    Duration::from_millis(base + jitter % base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) < Duration::from_millis(40));
        assert!(backoff(5) >= Duration::from_millis(320));
        assert!(backoff(30) < Duration::from_millis(640));
    }
}
