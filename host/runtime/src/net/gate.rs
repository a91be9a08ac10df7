//! Per-destination gates of one provider: the policy's rate limit (a token bucket per
//! `host:port`) and the back-off a server asked for with `Retry-After`. Every upstream exchange
//! waits at its destination's gate before it leaves.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use parking_lot::Mutex;

use crate::policy::Target;

/// The longest a server's `Retry-After` can hold a destination back.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Idle destinations whose gate state is dropped once the table grows past this.
const MAX_GATES: usize = 1024;

/// The gates of one provider's destinations.
pub(super) struct Gates {
    /// Requests per second and burst, per destination; None for no rate limit.
    rate: Option<(f64, u32)>,
    table: Mutex<HashMap<String, Gate>>,
}

struct Gate {
    tokens: f64,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Gates {
    pub(super) fn new(rate: Option<(f64, u32)>) -> Self {
        Gates {
            rate,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Wait until the destination may be contacted: after any `Retry-After` it asked for, and
    /// within the policy's per-host rate.
    pub(super) async fn wait(&self, target: &Target) {
        while let Some(wait) = self.try_pass(target) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Pass the gate now (None), or how long to wait before trying again.
    fn try_pass(&self, target: &Target) -> Option<Duration> {
        let mut gates = self.table.lock();
        let now = Instant::now();
        if gates.len() > MAX_GATES {
            gates.retain(|_, g| now.duration_since(g.last) < Duration::from_secs(600));
        }
        let burst = self.rate.map(|(_, b)| f64::from(b)).unwrap_or(0.0);
        let gate = gates.entry(gate_key(target)).or_insert(Gate {
            tokens: burst,
            last: now,
            blocked_until: None,
        });
        if let Some(until) = gate.blocked_until.filter(|until| *until > now) {
            return Some(until - now);
        }
        let Some((rate, burst)) = self.rate else {
            gate.last = now;
            return None;
        };
        gate.tokens = (gate.tokens + now.duration_since(gate.last).as_secs_f64() * rate)
            .min(f64::from(burst));
        gate.last = now;
        if gate.tokens >= 1.0 {
            gate.tokens -= 1.0;
            return None;
        }
        Some(Duration::from_secs_f64((1.0 - gate.tokens) / rate))
    }

    /// Hold requests to the destination back for `wait` (a server's `Retry-After`).
    pub(super) fn hold_back(&self, target: &Target, wait: Duration) {
        let mut gates = self.table.lock();
        let now = Instant::now();
        let gate = gates.entry(gate_key(target)).or_insert(Gate {
            tokens: 0.0,
            last: now,
            blocked_until: None,
        });
        let until = now + wait;
        if gate.blocked_until.is_none_or(|b| b < until) {
            gate.blocked_until = Some(until);
        }
    }
}

fn gate_key(target: &Target) -> String {
    format!("{}:{}", target.host, target.port)
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert("retry-after", later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
