//! [`EcpuLimit`]: a serverless cache's ECPU-per-second maximum
//! (`CacheUsageLimits.ECPUPerSecond.Maximum`), applied by its endpoints.
//!
//! AWS: a cache at its ECPU/second maximum is throttled, and the application "may
//! experience decreased cache performance" (the Scaling guide); commands are slowed, not
//! refused. So each command spends its ECPUs from a bucket that refills at the maximum and
//! holds one second of them, and a command that finds the bucket in debt waits until it
//! refills. A command costs one ECPU per kilobyte it moves, request and reply, and at least
//! one (AWS's pricing page: "simple SET and GET commands require 1 ECPU per kilobyte (KB)
//! of data transferred"). Commands that cost more by their CPU time are not weighed.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The ECPU bucket of one cache, shared by its endpoints.
#[derive(Debug, Default)]
pub struct EcpuLimit {
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// None: no maximum, nothing is throttled.
    per_second: Option<u64>,
    /// ECPUs left; below zero, the debt the next commands wait off.
    tokens: f64,
    refilled: Instant,
}

impl Default for Bucket {
    fn default() -> Self {
        Self { per_second: None, tokens: 0.0, refilled: Instant::now() }
    }
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.per_second {
            let earned = now.saturating_duration_since(self.refilled).as_secs_f64() * rate as f64;
            self.tokens = (self.tokens + earned).min(rate as f64);
        }
        self.refilled = now;
    }
}

impl EcpuLimit {
    /// Sets the maximum (None: none); a new maximum starts with a full second of ECPUs.
    pub fn set(&self, per_second: Option<u64>) {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        if bucket.per_second != per_second {
            *bucket = Bucket { per_second, tokens: per_second.unwrap_or(0) as f64, refilled: Instant::now() };
        }
    }

    /// What a command that moved `bytes` (request and reply) costs.
    pub fn cost(bytes: usize) -> u64 {
        (bytes as u64).div_ceil(1024).max(1)
    }

    /// Spends `ecpus`; while the bucket is in debt, waits until it has refilled.
    pub async fn spend(&self, ecpus: u64) {
        let wait = self.charge(ecpus, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `ecpus` from the bucket at `now`; how long until it is out of debt.
    fn charge(&self, ecpus: u64, now: Instant) -> Duration {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(rate) = bucket.per_second.filter(|rate| *rate > 0) else { return Duration::ZERO };
        bucket.refill(now);
        bucket.tokens -= ecpus as f64;
        Duration::from_secs_f64((-bucket.tokens).max(0.0) / rate as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_costs_an_ecpu_per_kilobyte_and_at_least_one() {
        assert_eq!(EcpuLimit::cost(0), 1);
        assert_eq!(EcpuLimit::cost(1024), 1);
        assert_eq!(EcpuLimit::cost(1025), 2);
        assert_eq!(EcpuLimit::cost(10 * 1024), 10);
    }

    #[test]
    fn the_bucket_holds_a_second_of_ecpus_and_refills_at_the_maximum() {
        let start = Instant::now();
        let mut bucket = Bucket { per_second: Some(1_000), tokens: 1_000.0, refilled: start };
        bucket.tokens -= 1_500.0;
        bucket.refill(start + Duration::from_millis(250));
        assert!((bucket.tokens - -250.0).abs() < 1e-6, "{}", bucket.tokens);
        bucket.refill(start + Duration::from_secs(10));
        assert!((bucket.tokens - 1_000.0).abs() < 1e-6, "capped at one second: {}", bucket.tokens);
    }

    #[test]
    fn a_command_waits_off_the_debt_it_leaves() {
        let limit = EcpuLimit::default();
        let now = Instant::now();
        assert_eq!(limit.charge(1_000_000, now), Duration::ZERO, "no maximum");
        limit.set(Some(1_000));
        let now = Instant::now();
        assert_eq!(limit.charge(1_000, now), Duration::ZERO, "a second's worth at once");
        assert_eq!(limit.charge(500, now), Duration::from_millis(500));
        limit.set(None);
        assert_eq!(limit.charge(1_000_000, now), Duration::ZERO, "the maximum removed");
    }
}
