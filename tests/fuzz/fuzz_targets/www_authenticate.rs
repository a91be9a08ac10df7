//! A `WWW-Authenticate` header value, as `challenge::parse_www_authenticate` splits it into
//! challenges and `challenge::verify` checks the bearer challenge against a vault.
//!
//! Beyond "no panic": schemes and parameter names are well-formed tokens (names lower-cased);
//! writing the parsed challenges back out and parsing again gives the same challenges (and the
//! same verdict); an accepted challenge has an https resource inside the vault's own domain (a
//! whole-label suffix of the vault host), a `/.default` scope, and nothing unsafe for a URL or a
//! form field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrets_store_azure_core::challenge::{Challenge, parse_www_authenticate, verify};

const VAULT_HOSTS: [&str; 3] = [
    "kv1.vault.azure.net",
    "kv-2.vault.usgovcloudapi.net",
    "a.b.vault.azure.cn",
];

/// `scheme, name="value", …, scheme, …`: the parser does not care about commas, and a comma
/// keeps a scheme from reading as the name of a parameter with an empty name.
fn serialize(challenges: &[Challenge]) -> String {
    let mut parts = Vec::new();
    for challenge in challenges {
        parts.push(challenge.scheme.clone());
        for (name, value) in &challenge.params {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            parts.push(format!("{name}=\"{escaped}\""));
        }
    }
    parts.join(", ")
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let challenges = parse_www_authenticate(header);
    for challenge in &challenges {
        assert!(!challenge.scheme.is_empty());
        assert!(
            !challenge.scheme.contains([' ', '\t', ',', '=']),
            "scheme {:?}",
            challenge.scheme
        );
        for name in challenge.params.keys() {
            assert!(!name.contains([' ', '\t', ',', '=']), "name {name:?}");
            assert!(
                !name.bytes().any(|b| b.is_ascii_uppercase()),
                "name {name:?}"
            );
        }
    }
    let written = serialize(&challenges);
    assert_eq!(
        parse_www_authenticate(&written),
        challenges,
        "round trip through {written:?}"
    );

    for vault_host in VAULT_HOSTS {
        let verdict = verify([header], vault_host);
        assert_eq!(verify([written.as_str()], vault_host), verdict);
        let Ok(challenge) = verdict else {
            continue;
        };
        assert!(challenge.scope.ends_with("/.default") || challenge.scope == challenge.resource);
        let host = challenge
            .resource
            .strip_prefix("https://")
            .expect("an https resource")
            .split('/')
            .next()
            .unwrap_or_default();
        let host = host
            .rsplit_once(':')
            .map_or(host, |(h, _)| h)
            .to_ascii_lowercase();
        assert!(
            vault_host.ends_with(&format!(".{host}")),
            "{vault_host} accepted a token for {:?}",
            challenge.resource
        );
        assert!(
            challenge.scope.bytes().all(|b| b.is_ascii_graphic())
                && !challenge.scope.contains(['?', '#', '@', '\\', '"']),
            "scope {:?}",
            challenge.scope
        );
        if let Some(tenant) = &challenge.tenant {
            assert!(!tenant.is_empty() && !tenant.contains('/'));
        }
    }
});
