//! A provider's sandbox policy: where it may connect and how much it may use.
//!
//! Parsed once, when the provider is loaded; everything not allowed here is denied.
//!
//! ## Outbound destinations
//! `allowedHosts` entries have the form `scheme://host[:port]`. The port defaults to the scheme's
//! (80 for http, 443 for https); `:*` allows any port.
//!
//! | entry                        | allows                                                        |
//! |------------------------------|---------------------------------------------------------------|
//! | `https://vault.azure.net`    | exactly that host, https, port 443                            |
//! | `https://*.vault.azure.net`  | any name ending in `.vault.azure.net` (not the bare suffix)   |
//! | `https://example.com:8443`   | that host on port 8443 only                                   |
//! | `http://169.254.169.254`     | that IP literal (IP literals are only ever matched exactly)   |
//! | `http://localhost:2579`      | `localhost`, which may then resolve to loopback               |
//!
//! Names are compared case-insensitively, without a trailing dot. There is no allow-all entry.
//!
//! ## Addresses after name resolution
//! A name that resolves through DNS to a loopback, private, link-local, shared (CGNAT), unique-local,
//! multicast, documentation or unspecified address is refused unless the address lies in one of
//! `privateNetworks` (CIDRs), or the name is `localhost` and was allowed by an exact entry. An
//! address given by an operator's resolve override (`--resolve`) is an explicit choice and is used
//! as is. A request to an IP literal needs an exact entry for that IP, whatever its range.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// Errors in a policy document.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("allowed host {entry:?}: {reason}")]
    BadHost { entry: String, reason: String },
    #[error("private network {entry:?} is not a CIDR (for example 10.0.0.0/8)")]
    BadNetwork { entry: String },
    #[error("{field} must be {rule}, got {value}")]
    OutOfRange {
        field: &'static str,
        rule: &'static str,
        value: String,
    },
    #[error("policy document: {0}")]
    Parse(#[source] serde_norway::Error),
}

/// The policy of one provider, in the form operators write it (YAML or JSON, camelCase keys).
/// Unknown keys are an error.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PolicySpec {
    pub allowed_hosts: Vec<String>,
    pub private_networks: Vec<String>,
    /// Linear memory cap of one instance.
    #[serde(rename = "memoryLimitMiB")]
    pub memory_limit_mib: u64,
    /// Wall-clock budget of one mount call, network included.
    pub timeout_seconds: u64,
    /// Largest response body the provider may receive for one request.
    pub max_response_bytes: u64,
    /// Largest request body the provider may send.
    pub max_request_bytes: u64,
    /// Requests one mount call may make in total (bounds runaway retry loops).
    pub max_requests_per_mount: u32,
    /// Requests of one mount in flight at the same time.
    pub max_concurrent_requests: u32,
    /// Files one mount may return, and their total size.
    pub max_files: u32,
    pub max_total_bytes: u64,
    /// Host files the provider may read through `host-files` (absolute paths).
    pub host_files: Vec<PathBuf>,
    /// The provider's cache: entry count, bytes per value, bytes in all.
    pub cache_max_entries: u32,
    pub cache_max_value_bytes: u32,
    pub cache_max_total_bytes: u64,
    /// Cache identical successful GETs (same URL and headers) for this long; 0 turns it off.
    pub response_cache_seconds: u64,
    /// Requests per second to one destination host, across all mounts of this provider; 0 is unlimited.
    pub rate_limit_per_host: f64,
    /// Burst allowance for `rate_limit_per_host`.
    pub rate_limit_burst: u32,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            allowed_hosts: Vec::new(),
            private_networks: Vec::new(),
            memory_limit_mib: 64,
            timeout_seconds: 30,
            max_response_bytes: 4 << 20,
            max_request_bytes: 1 << 20,
            max_requests_per_mount: 1000,
            max_concurrent_requests: 16,
            max_files: 1000,
            max_total_bytes: 32 << 20,
            host_files: Vec::new(),
            cache_max_entries: 1024,
            cache_max_value_bytes: 64 << 10,
            cache_max_total_bytes: 4 << 20,
            response_cache_seconds: 0,
            rate_limit_per_host: 0.0,
            rate_limit_burst: 50,
        }
    }
}

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub allowed_hosts: Vec<HostPattern>,
    pub private_networks: Vec<IpNet>,
    pub memory_limit: usize,
    pub timeout: Duration,
    pub max_response_bytes: usize,
    pub max_request_bytes: usize,
    pub max_requests_per_mount: u32,
    pub max_concurrent_requests: u32,
    pub max_files: usize,
    pub max_total_bytes: u64,
    pub host_files: Vec<PathBuf>,
    pub cache_max_entries: usize,
    pub cache_max_value_bytes: usize,
    pub cache_max_total_bytes: usize,
    pub response_cache_ttl: Option<Duration>,
    pub rate_limit_per_host: Option<(f64, u32)>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from_spec(&PolicySpec::default())
            .unwrap_or_else(|_| unreachable!("the default policy is valid"))
    }
}

impl Policy {
    /// Parse a YAML or JSON policy document.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let spec: PolicySpec = serde_norway::from_str(text).map_err(PolicyError::Parse)?;
        Policy::from_spec(&spec)
    }

    pub fn from_spec(spec: &PolicySpec) -> Result<Self, PolicyError> {
        let allowed_hosts = spec
            .allowed_hosts
            .iter()
            .map(|h| h.parse())
            .collect::<Result<Vec<_>, _>>()?;
        let private_networks = spec
            .private_networks
            .iter()
            .map(|n| {
                IpNet::from_str(n)
                    .or_else(|_| IpAddr::from_str(n).map(IpNet::from))
                    .map_err(|_| PolicyError::BadNetwork { entry: n.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_ranges(spec)?;
        let usize_of = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Ok(Policy {
            allowed_hosts,
            private_networks,
            memory_limit: usize_of(spec.memory_limit_mib << 20),
            timeout: Duration::from_secs(spec.timeout_seconds),
            max_response_bytes: usize_of(spec.max_response_bytes),
            max_request_bytes: usize_of(spec.max_request_bytes),
            max_requests_per_mount: spec.max_requests_per_mount,
            max_concurrent_requests: spec.max_concurrent_requests,
            max_files: spec.max_files as usize,
            max_total_bytes: spec.max_total_bytes,
            host_files: spec.host_files.clone(),
            cache_max_entries: spec.cache_max_entries as usize,
            cache_max_value_bytes: spec.cache_max_value_bytes as usize,
            cache_max_total_bytes: usize_of(spec.cache_max_total_bytes),
            response_cache_ttl: (spec.response_cache_seconds > 0)
                .then(|| Duration::from_secs(spec.response_cache_seconds)),
            rate_limit_per_host: (spec.rate_limit_per_host > 0.0)
                .then_some((spec.rate_limit_per_host, spec.rate_limit_burst.max(1))),
        })
    }

    /// The entry that allows `target`, if any.
    pub fn allowing(&self, target: &Target) -> Option<&HostPattern> {
        self.allowed_hosts.iter().find(|p| p.matches(target))
    }

    /// Whether an address that DNS gave for `target` may be used.
    pub fn address_allowed(&self, target: &Target, addr: IpAddr) -> bool {
        if is_public(addr) || self.private_networks.iter().any(|n| n.contains(&addr)) {
            return true;
        }
        // `localhost` listed by name is a deliberate request for loopback.
        addr.is_loopback()
            && target.host == "localhost"
            && self
                .allowing(target)
                .is_some_and(|p| matches!(p.host, HostMatch::Exact(_)))
    }
}

/// The numeric and path fields of a spec, each within its documented range.
fn check_ranges(spec: &PolicySpec) -> Result<(), PolicyError> {
    let range = |field, ok: bool, rule, value: String| {
        if ok {
            Ok(())
        } else {
            Err(PolicyError::OutOfRange { field, rule, value })
        }
    };
    range(
        "memoryLimitMiB",
        (1..=4096).contains(&spec.memory_limit_mib),
        "between 1 and 4096",
        spec.memory_limit_mib.to_string(),
    )?;
    range(
        "timeoutSeconds",
        (1..=600).contains(&spec.timeout_seconds),
        "between 1 and 600",
        spec.timeout_seconds.to_string(),
    )?;
    range(
        "maxConcurrentRequests",
        spec.max_concurrent_requests >= 1,
        "at least 1",
        spec.max_concurrent_requests.to_string(),
    )?;
    range(
        "maxFiles",
        spec.max_files >= 1,
        "at least 1",
        spec.max_files.to_string(),
    )?;
    range(
        "rateLimitPerHost",
        spec.rate_limit_per_host.is_finite() && spec.rate_limit_per_host >= 0.0,
        "a non-negative number",
        spec.rate_limit_per_host.to_string(),
    )?;
    for path in &spec.host_files {
        range(
            "hostFiles",
            path.is_absolute(),
            "absolute paths",
            path.display().to_string(),
        )?;
    }
    Ok(())
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub scheme: Scheme,
    /// Lowercase name without a trailing dot, or an IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub ip: Option<IpAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

impl Target {
    pub fn from_uri(uri: &http::Uri) -> Option<Target> {
        let scheme = match uri.scheme_str()? {
            s if s.eq_ignore_ascii_case("https") => Scheme::Https,
            s if s.eq_ignore_ascii_case("http") => Scheme::Http,
            _ => return None,
        };
        let raw = uri.host()?;
        let host = normalize_host(raw.trim_start_matches('[').trim_end_matches(']'));
        let ip = IpAddr::from_str(&host).ok();
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        Some(Target {
            scheme,
            host,
            port,
            ip,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            Some(IpAddr::V6(_)) => write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port),
            _ => write!(f, "{}://{}:{}", self.scheme, self.host, self.port),
        }
    }
}

/// One `allowedHosts` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    pub scheme: Scheme,
    pub host: HostMatch,
    /// None: any port.
    pub port: Option<u16>,
    source: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.suffix`: the stored value is `.suffix`.
    Suffix(String),
    Ip(IpAddr),
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl HostPattern {
    pub fn matches(&self, target: &Target) -> bool {
        if self.scheme != target.scheme || self.port.is_some_and(|p| p != target.port) {
            return false;
        }
        match (&self.host, target.ip) {
            (HostMatch::Ip(ip), Some(target_ip)) => *ip == target_ip,
            (HostMatch::Exact(name), None) => *name == target.host,
            (HostMatch::Suffix(suffix), None) => {
                target.host.len() > suffix.len() && target.host.ends_with(suffix.as_str())
            }
            _ => false,
        }
    }
}

impl FromStr for HostPattern {
    type Err = PolicyError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| PolicyError::BadHost {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| bad("must look like https://host[:port]"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            _ => return Err(bad("scheme must be http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("only scheme, host and port are allowed"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("malformed host or port"))?;
        let port = match port {
            None => Some(scheme.default_port()),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("port must be 1-65535 or *"))?,
            ),
        };
        let host = normalize_host(host);
        let host = if let Ok(ip) = IpAddr::from_str(&host) {
            HostMatch::Ip(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !valid_dns_name(suffix) || !suffix.contains('.') {
                return Err(bad(
                    "a wildcard needs a suffix of at least two labels, like *.vault.azure.net",
                ));
            }
            HostMatch::Suffix(format!(".{suffix}"))
        } else if valid_dns_name(&host) {
            HostMatch::Exact(host)
        } else {
            return Err(bad(
                "not a valid host name (wildcards only as a leading *.)",
            ));
        };
        Ok(HostPattern {
            scheme,
            host,
            port,
            source: entry.to_string(),
        })
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether an address is an ordinary public unicast address.
pub fn is_public(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared address space
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64, may reach private IPv4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::from_uri(&url.parse().unwrap()).unwrap()
    }

    fn policy(hosts: &[&str]) -> Policy {
        Policy::from_spec(&PolicySpec {
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn matching_table() {
        let p = policy(&[
            "https://vault.azure.net",
            "https://*.vault.azure.net",
            "https://example.com:8443",
            "http://169.254.169.254",
            "http://localhost:2579",
            "https://any-port.example:*",
        ]);
        let allowed = [
            "https://vault.azure.net/x",
            "https://myvault.vault.azure.net/secrets/a",
            "https://MyVault.Vault.Azure.Net./secrets/a",
            "https://a.b.vault.azure.net/",
            "https://example.com:8443/",
            "http://169.254.169.254/metadata",
            "http://localhost:2579/host/token",
            "https://any-port.example:1234/",
        ];
        let denied = [
            "http://myvault.vault.azure.net/",      // scheme
            "https://myvault.vault.azure.net:444/", // port
            "https://evilvault.azure.net/",         // not a subdomain
            "https://vault.azure.net.evil.com/",
            "https://example.com/",     // default port 443 not listed
            "https://169.254.169.254/", // scheme
            "http://169.254.169.253/",  // other IP
            "http://127.0.0.1:2579/",   // IP literal needs an IP entry
            "http://localhost/",        // port
            "https://other.example/",
        ];
        for url in allowed {
            assert!(
                p.allowing(&target(url)).is_some(),
                "{url} should be allowed"
            );
        }
        for url in denied {
            assert!(p.allowing(&target(url)).is_none(), "{url} should be denied");
        }
    }

    #[test]
    fn bad_entries_are_rejected_with_the_entry_named() {
        for entry in [
            "vault.azure.net",
            "ftp://x.com",
            "https://*",
            "https://*.com",
            "https://a.com/path",
            "https://a.com:0",
            "https://a.com:99999",
            "https://x*.com",
            "https://user@a.com",
        ] {
            let err = entry.parse::<HostPattern>().unwrap_err().to_string();
            assert!(err.contains(entry), "{err}");
        }
    }

    #[test]
    fn private_addresses_after_dns() {
        let p = Policy::from_spec(&PolicySpec {
            allowed_hosts: vec![
                "https://*.corp.example".into(),
                "http://localhost:2579".into(),
                "https://*.local.example".into(),
            ],
            private_networks: vec!["10.1.0.0/16".into()],
            ..Default::default()
        })
        .unwrap();
        let t = target("https://kv.corp.example/");
        assert!(p.address_allowed(&t, "20.1.2.3".parse().unwrap()));
        assert!(p.address_allowed(&t, "10.1.2.3".parse().unwrap()));
        for addr in [
            "10.2.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!p.address_allowed(&t, addr.parse().unwrap()), "{addr}");
        }
        let local = target("http://localhost:2579/");
        assert!(p.address_allowed(&local, "127.0.0.1".parse().unwrap()));
        assert!(!p.address_allowed(&local, "10.9.9.9".parse().unwrap()));
        // A wildcard never grants loopback.
        assert!(!p.address_allowed(
            &target("https://localhost.local.example/"),
            "127.0.0.1".parse().unwrap()
        ));
    }

    #[test]
    fn documents_parse_and_unknown_keys_fail() {
        let p = Policy::parse(
            "allowedHosts: [https://*.vault.azure.net]\nmemoryLimitMiB: 32\ntimeoutSeconds: 5\n",
        )
        .unwrap();
        assert_eq!(p.memory_limit, 32 << 20);
        assert_eq!(p.timeout, Duration::from_secs(5));
        let err = Policy::parse("allowedHost: [https://x.com]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("allowedHost"), "{err}");
        let err = Policy::parse("memoryLimitMiB: 0").unwrap_err().to_string();
        assert!(err.contains("memoryLimitMiB"), "{err}");
        let err = Policy::parse("privateNetworks: [nonsense]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nonsense"), "{err}");
    }
}
