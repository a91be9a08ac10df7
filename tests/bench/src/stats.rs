//! Sample statistics for the report: nearest-rank percentiles over measured durations.

use std::time::Duration;

/// Durations of one scenario's iterations.
#[derive(Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Samples(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Nearest-rank percentile (`p` in 0..=100); zero when empty.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn p50_ms(&self) -> f64 {
        ms(self.percentile(50.0))
    }

    pub fn p99_ms(&self) -> f64 {
        ms(self.percentile(99.0))
    }

    pub fn p50_us(&self) -> f64 {
        us(self.percentile(50.0))
    }

    pub fn p99_us(&self) -> f64 {
        us(self.percentile(99.0))
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut s = Samples::default();
        for i in 1..=100 {
            s.push(Duration::from_millis(i));
        }
        assert_eq!(s.percentile(50.0), Duration::from_millis(50));
        assert_eq!(s.percentile(99.0), Duration::from_millis(99));
        assert_eq!(s.percentile(100.0), Duration::from_millis(100));
        assert_eq!(s.percentile(0.0), Duration::from_millis(1));
        let mut one = Samples::default();
        one.push(Duration::from_millis(7));
        assert_eq!(one.percentile(99.0), Duration::from_millis(7));
        assert_eq!(Samples::default().percentile(50.0), Duration::ZERO);
    }
}
