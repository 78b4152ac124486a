//! How long a retry message waits before its next delivery.
//!
//! A message that failed for a transient reason is hidden for `30 s × 2^(n−1)`, capped at
//! 15 minutes, where `n` is its `ApproximateReceiveCount`: 30 s, 1, 2, 4, 8 min, then 15
//! min per receive. Receive `n` happens about `Σ delay(1..n−1)` after the first:
//! receive 13 comes 7 230 s (just over 2 hours) after the first, so a queue with
//! `maxReceiveCount` of at least 13 outlasts a 2-hour outage (see [`receives_to_outlast`]).

use std::time::Duration;

const FIRST: u64 = 30;
/// SQS allows up to 12 hours; 15 minutes keeps a recovered database's backlog short.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// The visibility timeout to set after receive number `receive_count` (1 for the first).
pub fn delay_after(receive_count: u32) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(16);
    Duration::from_secs(FIRST << doublings).min(MAX_DELAY)
}

/// The smallest `maxReceiveCount` whose last receive comes after `outage` has passed
/// (counting from the first receive), so that nothing is dead-lettered during it.
pub fn receives_to_outlast(outage: Duration) -> u32 {
    let mut waited = Duration::ZERO;
    let mut receive = 1;
    while waited < outage {
        waited += delay_after(receive);
        receive += 1;
    }
    receive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_30_seconds_up_to_15_minutes() {
        let secs: Vec<u64> = (1..=8).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(delay_after(0).as_secs(), 30);
        assert_eq!(delay_after(u32::MAX).as_secs(), 900);
    }

    #[test]
    fn thirteen_receives_outlast_a_two_hour_outage() {
        assert_eq!(receives_to_outlast(Duration::from_secs(2 * 3600)), 13);
        assert_eq!(receives_to_outlast(Duration::from_secs(15 * 60)), 6);
    }
}
