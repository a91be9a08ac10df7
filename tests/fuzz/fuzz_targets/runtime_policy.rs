//! A provider's sandbox policy document (YAML or JSON), as `secrets_store_runtime::Policy::parse`
//! reads it, and each line on its own as one `allowedHosts` entry (`HostPattern::from_str`).
//!
//! Beyond "no panic": an accepted policy keeps every limit in its documented range and only
//! absolute host-file paths; each accepted host entry parses again from its own text to the same
//! pattern, admits a request to exactly the host and port it names (any port for `:*`), refuses
//! the other scheme, and a wildcard admits a subdomain but never the bare suffix. Refusals name
//! the offending entry.
#![no_main]

use std::str::FromStr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use secrets_store_runtime::Policy;
use secrets_store_runtime::policy::{HostMatch, HostPattern, PolicyError, Scheme, Target};

fn check_policy(policy: &Policy) {
    assert!((1..=4096).contains(&(policy.memory_limit >> 20)));
    assert_eq!(policy.memory_limit & ((1 << 20) - 1), 0);
    assert!(policy.timeout >= Duration::from_secs(1) && policy.timeout <= Duration::from_secs(600));
    assert!(policy.max_concurrent_requests >= 1);
    assert!(policy.max_files >= 1);
    assert!(policy.host_files.iter().all(|p| p.is_absolute()));
    if let Some((rate, burst)) = policy.rate_limit_per_host {
        assert!(rate.is_finite() && rate > 0.0 && burst >= 1);
    }
    assert!(policy.response_cache_ttl.is_none_or(|t| !t.is_zero()));
    for pattern in &policy.allowed_hosts {
        check_pattern(pattern);
    }
}

fn other(scheme: Scheme) -> Scheme {
    match scheme {
        Scheme::Http => Scheme::Https,
        Scheme::Https => Scheme::Http,
    }
}

fn check_pattern(pattern: &HostPattern) {
    let text = pattern.to_string();
    let again = HostPattern::from_str(&text).expect("an accepted entry parses again");
    assert_eq!(&again, pattern);
    let port = pattern.port.unwrap_or(8443);
    if let Some(p) = pattern.port {
        assert_ne!(p, 0);
    }
    let target = |scheme, host: &str, ip| Target {
        scheme,
        host: host.to_string(),
        port,
        ip,
    };
    match &pattern.host {
        HostMatch::Exact(name) => {
            assert!(!name.is_empty() && !name.ends_with('.'));
            assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
            assert!(pattern.matches(&target(pattern.scheme, name, None)));
            assert!(!pattern.matches(&target(other(pattern.scheme), name, None)));
            assert!(!pattern.matches(&target(pattern.scheme, &format!("x.{name}"), None)));
        }
        HostMatch::Suffix(suffix) => {
            assert!(suffix.starts_with('.') && suffix[1..].contains('.'));
            let bare = &suffix[1..];
            assert!(!pattern.matches(&target(pattern.scheme, bare, None)));
            assert!(pattern.matches(&target(pattern.scheme, &format!("x{suffix}"), None)));
            assert!(!pattern.matches(&target(other(pattern.scheme), &format!("x{suffix}"), None)));
        }
        HostMatch::Ip(ip) => {
            assert!(pattern.matches(&target(pattern.scheme, &ip.to_string(), Some(*ip))));
            // An IP pattern never matches a name, whatever the name.
            assert!(!pattern.matches(&target(pattern.scheme, &ip.to_string(), None)));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::parse(text) {
        Ok(policy) => check_policy(&policy),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
    for line in text.lines().take(64) {
        match HostPattern::from_str(line) {
            Ok(pattern) => check_pattern(&pattern),
            Err(PolicyError::BadHost { entry, .. }) => assert_eq!(entry, line),
            Err(other) => panic!("a host entry refused with {other}"),
        }
    }
});
