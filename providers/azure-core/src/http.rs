//! Sending through the host with bounded concurrency and bounded, jittered retries of throttled
//! (429/503) and transiently failed requests, honouring `Retry-After`.

use std::time::{Duration, UNIX_EPOCH};

use crate::{Host, HttpRequest, HttpResponse, Level, TransportError};

/// Requests handed to the host in one `send_all` call.
pub(crate) const MAX_BATCH: usize = 16;
/// Attempts per request, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 3;
/// A server asking for a longer pause than this is not waited for: the mount fails as throttled
/// and the driver retries it later.
const MAX_SINGLE_DELAY: Duration = Duration::from_secs(15);
/// Total pause one mount may spend waiting (kubelet gives a mount about two minutes).
pub(crate) const MAX_TOTAL_SLEEP: Duration = Duration::from_secs(30);
/// First backoff when the server gives no `Retry-After`; doubles per attempt.
const BASE_BACKOFF: Duration = Duration::from_millis(500);

pub(crate) type Outcome = Result<HttpResponse, TransportError>;

/// The pause budget of one mount.
#[derive(Debug, Default)]
pub(crate) struct SleepBudget {
    pub spent: Duration,
}

/// Whether the outcome is worth another attempt.
fn retryable(outcome: &Outcome) -> bool {
    match outcome {
        Ok(response) => matches!(response.status, 429 | 503),
        Err(TransportError::Timeout) | Err(TransportError::Connect(_)) => true,
        Err(_) => false,
    }
}

/// The pause the server asked for: `x-ms-retry-after-ms`, `retry-after-ms` or `Retry-After`.
pub(crate) fn server_delay(response: &HttpResponse, now_unix_secs: u64) -> Option<Duration> {
    for name in ["x-ms-retry-after-ms", "retry-after-ms"] {
        if let Some(ms) = response
            .header(name)
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Some(Duration::from_millis(ms));
        }
    }
    response
        .header("retry-after")
        .and_then(|v| parse_retry_after(v, now_unix_secs))
}

/// Parses a `Retry-After` value: delay seconds, or an HTTP date (IMF-fixdate, RFC 850 or asctime)
/// turned into the time left from `now_unix_secs`.
pub fn parse_retry_after(value: &str, now_unix_secs: u64) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value
            .parse::<u64>()
            .unwrap_or(u64::MAX)
            .min(u64::from(u32::MAX));
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(Duration::from_secs(at.saturating_sub(now_unix_secs)))
}

/// Seconds since the Unix epoch of an HTTP date (the `httpdate` crate reads all three forms).
fn parse_http_date(value: &str) -> Option<u64> {
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// Sends `requests` through the host in batches of [`MAX_BATCH`], retrying throttled and
/// transiently failed ones up to [`MAX_ATTEMPTS`] times. Returns the last outcome of each request,
/// in input order; a request that is still throttled is returned as the throttling response.
pub(crate) fn send_with_retries(
    host: &dyn Host,
    budget: &mut SleepBudget,
    requests: &[HttpRequest],
) -> Vec<Outcome> {
    let mut results: Vec<Outcome> = requests
        .iter()
        .map(|_| Err(TransportError::Other("not sent".to_string())))
        .collect();
    let mut pending: Vec<usize> = (0..requests.len()).collect();
    for attempt in 1..=MAX_ATTEMPTS {
        for chunk in pending.chunks(MAX_BATCH) {
            let batch: Vec<HttpRequest> = chunk.iter().map(|i| requests[*i].clone()).collect();
            let mut outcomes = host.send_all(batch).into_iter();
            for index in chunk {
                results[*index] = outcomes.next().unwrap_or_else(|| {
                    Err(TransportError::Other(
                        "the host returned fewer responses than requests".to_string(),
                    ))
                });
            }
        }
        let retry: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|i| retryable(&results[*i]))
            .collect();
        if retry.is_empty() || attempt == MAX_ATTEMPTS {
            break;
        }
        let now = host.now_unix_secs();
        let backoff = BASE_BACKOFF * 2u32.pow(attempt - 1);
        let delay = retry
            .iter()
            .map(|i| match &results[*i] {
                Ok(response) => server_delay(response, now).unwrap_or(backoff),
                Err(_) => backoff,
            })
            .max()
            .unwrap_or(backoff);
        if delay > MAX_SINGLE_DELAY {
            host.log(
                Level::Warn,
                &format!(
                    "{} request(s) throttled for {} ms; not waiting that long",
                    retry.len(),
                    delay.as_millis()
                ),
            );
            break;
        }
        // Jitter spreads the retries of many pods that were throttled together.
        let jitter_range = (delay.as_millis() as u64 / 10).max(250);
        let pause = delay + Duration::from_millis(host.random_u64() % jitter_range);
        if budget.spent + pause > MAX_TOTAL_SLEEP {
            host.log(Level::Warn, "retry budget of this mount exhausted");
            break;
        }
        host.log(
            Level::Info,
            &format!(
                "{} request(s) throttled or failed transiently; retrying in {} ms (attempt {})",
                retry.len(),
                pause.as_millis(),
                attempt + 1
            ),
        );
        host.sleep(pause);
        budget.spent += pause;
        pending = retry;
    }
    results
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7", 0), Some(Duration::from_secs(7)));
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_770),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", 784_111_777),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", 784_111_767),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 900_000_000),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("", 0), None);
        assert_eq!(parse_retry_after("-1", 0), None);
        assert_eq!(parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", 0), None);
    }
}
