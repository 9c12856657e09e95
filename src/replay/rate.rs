//! `--max-ops` / `--max-bytes`: token buckets shared by every shard, so a replay cannot flood a
//! production target. One second of burst.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket refilled at `rate` per second, holding at most one second's worth.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// Whether the bucket limits anything (so callers can skip counting for an unlimited one).
    pub fn limited(&self) -> bool {
        self.rate > 0.0
    }

    /// A bucket of `rate` tokens per second (`0`: unlimited).
    pub fn new(rate: u64) -> Bucket {
        Bucket {
            rate: rate as f64,
            state: Mutex::new((rate as f64, Instant::now())),
        }
    }

    /// Takes `n` tokens, waiting as needed (a request above the burst waits proportionally).
    pub async fn take(&self, n: u64) {
        if self.rate <= 0.0 {
            return;
        }
        let wait = {
            let mut st = self.state.lock().unwrap();
            let now = Instant::now();
            let (tokens, last) = *st;
            let tokens =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
            let left = tokens - n as f64;
            *st = (left, now);
            if left >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-left / self.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
