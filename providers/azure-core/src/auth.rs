//! Access tokens: the request of each identity mode, the parsing of AAD, IMDS and NMI responses,
//! and the cache keys that keep one identity's token away from every other identity.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::challenge::VaultChallenge;
use crate::encoding::{self, json_error};
use crate::params::{AuthMode, MountConfig};
use crate::{HttpRequest, Method};

/// aad-pod-identity's NMI endpoint on the node.
pub const NMI_ENDPOINT: &str = "http://localhost:2579/host/token/";
/// The Azure Instance Metadata Service token endpoint.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
pub const IMDS_API_VERSION: &str = "2018-02-01";
/// Tokens are reused until this long before they expire.
pub const EXPIRY_MARGIN_SECS: u64 = 300;

/// A bearer token. `Debug` hides the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    #[serde(rename = "t")]
    pub token: String,
    /// Unix seconds.
    #[serde(rename = "e")]
    pub expires_on: u64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_on", &self.expires_on)
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// Seconds the token may still be cached (zero when it is about to expire).
    pub fn cache_ttl(&self, now: u64) -> u64 {
        self.expires_on
            .saturating_sub(now)
            .saturating_sub(EXPIRY_MARGIN_SECS)
    }
}

/// application/x-www-form-urlencoded, as Go's `url.Values.Encode`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encoding::form_value(k), encoding::form_value(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The request that obtains a token for the vault's challenge with the configured identity.
pub fn token_request(config: &MountConfig, challenge: &VaultChallenge) -> HttpRequest {
    let aad_token_url = format!(
        "{}{}/oauth2/v2.0/token",
        config.cloud.active_directory_endpoint, config.tenant_id
    );
    let form_headers = vec![
        (
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("Accept".to_string(), "application/json".to_string()),
    ];
    match &config.auth {
        AuthMode::ServicePrincipal {
            client_id,
            client_secret,
        } => HttpRequest {
            method: Method::Post,
            url: aad_token_url,
            headers: form_headers,
            body: form_encode(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("scope", &challenge.scope),
            ])
            .into_bytes(),
        },
        AuthMode::WorkloadIdentity {
            client_id,
            assertion,
        } => HttpRequest {
            method: Method::Post,
            url: aad_token_url,
            headers: form_headers,
            body: form_encode(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
                ("scope", &challenge.scope),
            ])
            .into_bytes(),
        },
        AuthMode::VmManagedIdentity { client_id } => {
            let mut url = format!(
                "{IMDS_ENDPOINT}?api-version={IMDS_API_VERSION}&resource={}",
                form_encode(&[("", &challenge.resource)]).trim_start_matches('=')
            );
            if let Some(id) = client_id {
                url.push_str("&client_id=");
                url.push_str(form_encode(&[("", id)]).trim_start_matches('='));
            }
            HttpRequest {
                method: Method::Get,
                url,
                headers: vec![("Metadata".to_string(), "true".to_string())],
                body: Vec::new(),
            }
        }
        AuthMode::PodIdentity => HttpRequest {
            method: Method::Get,
            url: format!(
                "{NMI_ENDPOINT}?resource={}",
                encoding::query_value(&challenge.resource)
            ),
            headers: vec![
                ("podns".to_string(), config.pod_namespace.clone()),
                ("podname".to_string(), config.pod_name.clone()),
            ],
            body: Vec::new(),
        },
    }
}

fn digest_fields(fields: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for field in fields {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The cache key of the token for this identity and scope, or `None` when the identity cannot be
/// told apart from others (then the token is not cached).
///
/// Keys cover everything that identifies the credential:
/// service principal: authority, tenant, client id and a SHA-256 of the client secret;
/// workload identity: authority, tenant, client id, pod namespace and service account (a token
/// obtained with one service account's assertion must not serve another);
/// managed identity: the user-assigned client id, or `system`;
/// pod identity: pod namespace, name and uid.
pub fn token_cache_key(config: &MountConfig, pod_uid: &str, scope: &str) -> Option<String> {
    let authority = config.cloud.active_directory_endpoint.as_str();
    let tenant = config.tenant_id.as_str();
    let (mode, digest) = match &config.auth {
        AuthMode::ServicePrincipal {
            client_id,
            client_secret,
        } => {
            let secret_hash = hex::encode(Sha256::digest(client_secret.as_bytes()));
            (
                "sp",
                digest_fields(&["sp", authority, tenant, client_id, &secret_hash, scope]),
            )
        }
        AuthMode::WorkloadIdentity { client_id, .. } => {
            if config.pod_namespace.is_empty() || config.service_account_name.is_empty() {
                return None;
            }
            let fields = [
                "wi",
                authority,
                tenant,
                client_id,
                &config.pod_namespace,
                &config.service_account_name,
                scope,
            ];
            ("wi", digest_fields(&fields))
        }
        AuthMode::VmManagedIdentity { client_id } => {
            let id = client_id.as_deref().unwrap_or("system");
            ("mi", digest_fields(&["mi", id, scope]))
        }
        AuthMode::PodIdentity => {
            if config.pod_namespace.is_empty() || config.pod_name.is_empty() {
                return None;
            }
            (
                "pi",
                digest_fields(&[
                    "pi",
                    &config.pod_namespace,
                    &config.pod_name,
                    pod_uid,
                    scope,
                ]),
            )
        }
    };
    Some(format!("aad-token/v1/{mode}/{digest}"))
}

/// The cache key of a vault's verified challenge.
pub fn challenge_cache_key(vault_host: &str) -> String {
    format!("kv-challenge/v1/{vault_host}")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token response is not the expected JSON: {0}")]
    Json(String),
    #[error("the token response has no access_token")]
    MissingToken,
    #[error("the token response holds a malformed access_token")]
    MalformedToken,
    #[error("nmi did not return expected values in response: token and clientid")]
    NmiIncomplete,
}

/// A JSON number, or a string holding one (AAD, IMDS and NMI disagree).
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Int(u64),
    Float(f64),
    Text(String),
}

impl Number {
    fn seconds(&self) -> Option<u64> {
        match self {
            Number::Int(v) => Some(*v),
            Number::Float(v) if v.is_finite() && *v >= 0.0 => Some(*v as u64),
            Number::Float(_) => None,
            Number::Text(t) => t.trim().parse::<u64>().ok().or_else(|| {
                t.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .map(|v| v as u64)
            }),
        }
    }
}

#[derive(Deserialize)]
struct TokenJson {
    access_token: Option<String>,
    expires_in: Option<Number>,
    expires_on: Option<Number>,
}

fn checked_token(token: Option<String>) -> Result<String, TokenError> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::MissingToken)?;
    // The token goes into an Authorization header.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::MalformedToken);
    }
    Ok(token)
}

/// An AAD v2 (or IMDS) token response. `expires_on` (absolute) wins over `expires_in`.
pub fn parse_token_response(body: &[u8], now: u64) -> Result<AccessToken, TokenError> {
    let parsed: TokenJson =
        serde_json::from_slice(body).map_err(|e| TokenError::Json(json_error(&e)))?;
    let token = checked_token(parsed.access_token)?;
    let expires_on = parsed
        .expires_on
        .and_then(|n| n.seconds())
        .or_else(|| {
            parsed
                .expires_in
                .and_then(|n| n.seconds())
                .map(|s| now.saturating_add(s))
        })
        .unwrap_or(now);
    Ok(AccessToken { token, expires_on })
}

#[derive(Deserialize)]
struct NmiJson {
    token: Option<TokenJson>,
    clientid: Option<String>,
}

/// aad-pod-identity's NMI response (`{"token":{…},"clientid":…}`). An unreadable `expires_on`
/// means "already expired", as upstream's `Token.Expires` decides.
pub fn parse_nmi_response(body: &[u8]) -> Result<AccessToken, TokenError> {
    let parsed: NmiJson =
        serde_json::from_slice(body).map_err(|e| TokenError::Json(json_error(&e)))?;
    let token = parsed.token.ok_or(TokenError::NmiIncomplete)?;
    if parsed.clientid.as_deref().unwrap_or_default().is_empty() {
        return Err(TokenError::NmiIncomplete);
    }
    let expires_on = token.expires_on.and_then(|n| n.seconds()).unwrap_or(0);
    let token = checked_token(token.access_token).map_err(|e| match e {
        TokenError::MissingToken => TokenError::NmiIncomplete,
        other => other,
    })?;
    Ok(AccessToken { token, expires_on })
}

#[derive(Deserialize)]
struct AadErrorJson {
    error: Option<String>,
    error_description: Option<String>,
}

/// `error: error_description` of an AAD or IMDS error body, when it has one.
pub fn parse_aad_error(body: &[u8]) -> Option<String> {
    let parsed: AadErrorJson = serde_json::from_slice(body).ok()?;
    // AADSTS descriptions end with trace/correlation ids on new lines; one line reads better,
    // and a line break in the code would start a forged log line.
    let error = parsed.error?.replace(['\r', '\n'], " ");
    let description = parsed
        .error_description
        .unwrap_or_default()
        .replace(['\r', '\n'], " ");
    let description = description.trim();
    Some(if description.is_empty() {
        error
    } else {
        format!("{error}: {description}")
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_matches_go() {
        assert_eq!(
            form_encode(&[
                ("scope", "https://vault.azure.net/.default"),
                ("a b", "c+d&e")
            ]),
            "scope=https%3A%2F%2Fvault.azure.net%2F.default&a+b=c%2Bd%26e"
        );
    }

    #[test]
    fn token_responses() {
        let t = parse_token_response(
            br#"{"token_type":"Bearer","expires_in":3599,"access_token":"abc"}"#,
            1000,
        )
        .unwrap();
        assert_eq!(t.expires_on, 4599);
        let t = parse_token_response(
            br#"{"access_token":"abc","expires_in":"86399","expires_on":"1700000000"}"#,
            1000,
        )
        .unwrap();
        assert_eq!(t.expires_on, 1_700_000_000);
        assert_eq!(
            parse_token_response(br#"{"access_token":""}"#, 0),
            Err(TokenError::MissingToken)
        );
        assert_eq!(
            parse_token_response(b"{\"access_token\":\"a\\r\\nX: y\"}", 0),
            Err(TokenError::MalformedToken)
        );
        assert!(parse_token_response(b"nope", 0).is_err());
        assert_eq!(t.cache_ttl(1_700_000_000 - 400), 100);
        assert_eq!(t.cache_ttl(1_700_000_000 - 100), 0);
    }

    #[test]
    fn nmi_responses() {
        let t = parse_nmi_response(
            br#"{"token":{"access_token":"abc","expires_on":"1700000000"},"clientid":"cid"}"#,
        )
        .unwrap();
        assert_eq!(t.expires_on, 1_700_000_000);
        let t = parse_nmi_response(
            br#"{"token":{"access_token":"abc","expires_on":1700000000.5},"clientid":"cid"}"#,
        )
        .unwrap();
        assert_eq!(t.expires_on, 1_700_000_000);
        assert_eq!(
            parse_nmi_response(br#"{"token":{"access_token":"abc"}}"#),
            Err(TokenError::NmiIncomplete)
        );
        assert_eq!(
            parse_nmi_response(br#"{"token":{},"clientid":"c"}"#),
            Err(TokenError::NmiIncomplete)
        );
    }

    #[test]
    fn aad_errors() {
        assert_eq!(
            parse_aad_error(br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret.\r\nTrace ID: x"}"#).as_deref(),
            Some("invalid_client: AADSTS7000215: Invalid client secret.  Trace ID: x")
        );
        assert_eq!(parse_aad_error(b"<html/>"), None);
    }
}
