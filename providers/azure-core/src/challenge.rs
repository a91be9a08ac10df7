//! Key Vault's challenge-based authentication: the `WWW-Authenticate` header of a 401 names the
//! token audience (`resource` or `scope`) and the authority. As the Azure SDKs do, the audience
//! must belong to the vault's domain: the vault host has to end with `.` + the audience host, so a
//! spoofed challenge cannot make the provider mint a token for another service.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The auth-params of one challenge, names lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value into its challenges (RFC 7235: `scheme param=value, …`,
/// values quoted or not, several challenges separated by commas).
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let bytes = value.as_bytes();
    let mut challenges: Vec<Challenge> = Vec::new();
    let mut pos = 0;
    let skip = |pos: &mut usize, also_commas: bool| {
        while *pos < bytes.len()
            && (bytes[*pos] == b' ' || bytes[*pos] == b'\t' || (also_commas && bytes[*pos] == b','))
        {
            *pos += 1;
        }
    };
    loop {
        skip(&mut pos, true);
        if pos >= bytes.len() {
            break;
        }
        let start = pos;
        while pos < bytes.len() && !matches!(bytes[pos], b' ' | b'\t' | b',' | b'=') {
            pos += 1;
        }
        let token = &value[start..pos];
        let mut lookahead = pos;
        skip(&mut lookahead, false);
        if lookahead < bytes.len() && bytes[lookahead] == b'=' && !challenges.is_empty() {
            pos = lookahead + 1;
            skip(&mut pos, false);
            let param_value = if pos < bytes.len() && bytes[pos] == b'"' {
                pos += 1;
                let mut text = Vec::new();
                while pos < bytes.len() && bytes[pos] != b'"' {
                    if bytes[pos] == b'\\' && pos + 1 < bytes.len() {
                        pos += 1;
                    }
                    text.push(bytes[pos]);
                    pos += 1;
                }
                pos += 1; // closing quote (or end of input)
                String::from_utf8_lossy(&text).into_owned()
            } else {
                let value_start = pos;
                while pos < bytes.len() && !matches!(bytes[pos], b',' | b' ' | b'\t') {
                    pos += 1;
                }
                value[value_start..pos].to_string()
            };
            if let Some(current) = challenges.last_mut() {
                current
                    .params
                    .entry(token.to_ascii_lowercase())
                    .or_insert(param_value);
            }
        } else if token.is_empty() {
            // A stray '=' with no scheme before it.
            pos += 1;
        } else {
            challenges.push(Challenge {
                scheme: token.to_string(),
                params: BTreeMap::new(),
            });
        }
    }
    challenges
}

/// A verified bearer challenge for one vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultChallenge {
    /// The token scope, e.g. `https://vault.azure.net/.default`.
    pub scope: String,
    /// The scope without `/.default`, the `resource` for IMDS and NMI.
    pub resource: String,
    /// The tenant named in the authorization URI, when there is one (informational).
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("Key Vault sent no bearer challenge (WWW-Authenticate with resource or scope)")]
    Missing,
    #[error("the challenge resource {resource:?} is not a valid https URL")]
    InvalidResource { resource: String },
    #[error("challenge resource {resource:?} doesn't match the requested domain {vault_host:?}")]
    DomainMismatch {
        resource: String,
        vault_host: String,
    },
}

/// Finds the bearer challenge among `WWW-Authenticate` values and checks it against the vault.
pub fn verify<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    vault_host: &str,
) -> Result<VaultChallenge, ChallengeError> {
    let challenge = header_values
        .into_iter()
        .flat_map(parse_www_authenticate)
        .find(|c| {
            c.scheme.eq_ignore_ascii_case("bearer")
                && (c.params.contains_key("scope") || c.params.contains_key("resource"))
        })
        .ok_or(ChallengeError::Missing)?;
    let scope = match (
        challenge.params.get("scope"),
        challenge.params.get("resource"),
    ) {
        (Some(scope), _) if !scope.is_empty() => scope.clone(),
        (_, Some(resource)) if !resource.is_empty() => {
            format!("{}/.default", resource.trim_end_matches('/'))
        }
        _ => return Err(ChallengeError::Missing),
    };
    let resource = scope
        .strip_suffix("/.default")
        .unwrap_or(&scope)
        .to_string();
    let host = https_host(&resource).ok_or_else(|| ChallengeError::InvalidResource {
        resource: resource.clone(),
    })?;
    let vault_host = vault_host.to_ascii_lowercase();
    if !vault_host.ends_with(&format!(".{host}")) {
        return Err(ChallengeError::DomainMismatch {
            resource,
            vault_host,
        });
    }
    let authorization = challenge
        .params
        .get("authorization")
        .or_else(|| challenge.params.get("authorization_uri"));
    let tenant = authorization
        .and_then(|uri| uri.split_once("://"))
        .and_then(|(_, rest)| rest.split('/').nth(1))
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok(VaultChallenge {
        scope,
        resource,
        tenant,
    })
}

/// The lower-cased host (without port) of an `https://host[:port][/path]` URL whose characters
/// are all safe to place in a URL or form field.
fn https_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    if !url.bytes().all(|b| b.is_ascii_graphic()) || url.contains(['?', '#', '@', '\\', '"']) {
        return None;
    }
    let authority = rest.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_vault_challenges() {
        let parsed = parse_www_authenticate(
            r#"Bearer authorization="https://login.windows.net/72f988bf", resource="https://vault.azure.net""#,
        );
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].params["resource"], "https://vault.azure.net");
        let parsed = parse_www_authenticate(
            r#"Basic realm="x", Bearer authorization_uri="https://a/t", scope="https://vault.azure.net/.default", error="invalid_token""#,
        );
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[1].params["scope"],
            "https://vault.azure.net/.default"
        );
        assert_eq!(parsed[1].params["error"], "invalid_token");
        assert!(parse_www_authenticate("").is_empty());
        assert_eq!(
            parse_www_authenticate(r#"Bearer a="unterminated"#)[0].params["a"],
            "unterminated"
        );
        assert_eq!(
            parse_www_authenticate(r#"Bearer a="q\"uote""#)[0].params["a"],
            "q\"uote"
        );
    }

    #[test]
    fn verifies_the_domain() {
        let ok = verify([r#"Bearer authorization="https://login.windows.net/tid", resource="https://vault.azure.net""#], "kv1.vault.azure.net").unwrap();
        assert_eq!(ok.scope, "https://vault.azure.net/.default");
        assert_eq!(ok.resource, "https://vault.azure.net");
        assert_eq!(ok.tenant.as_deref(), Some("tid"));
        let scoped = verify(
            [r#"Bearer authorization_uri="https://x/t", scope="https://vault.azure.net/.default""#],
            "KV1.Vault.Azure.Net",
        )
        .unwrap();
        assert_eq!(scoped.resource, "https://vault.azure.net");
        assert!(matches!(
            verify(
                [r#"Bearer resource="https://evil.example""#],
                "kv1.vault.azure.net"
            ),
            Err(ChallengeError::DomainMismatch { .. })
        ));
        // A suffix that is not a whole label does not count.
        assert!(
            verify(
                [r#"Bearer resource="https://t.azure.net""#],
                "kv1.vaulttest.azure.net"
            )
            .is_err()
        );
        assert!(
            verify(
                [r#"Bearer resource="http://vault.azure.net""#],
                "kv1.vault.azure.net"
            )
            .is_err()
        );
        assert_eq!(
            verify(["Basic realm=x"], "kv1.vault.azure.net"),
            Err(ChallengeError::Missing)
        );
    }
}
