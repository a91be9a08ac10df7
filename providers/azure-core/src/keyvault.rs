//! Key Vault data plane (REST api-version 7.4): request URLs and the JSON bodies the provider
//! reads (secret, key and certificate bundles, version lists, errors).

use serde::Deserialize;

use crate::encoding::{json_error, lenient_std_base64, lenient_url_base64, url_segment};

use crate::params::ObjectType;

pub const API_VERSION: &str = "7.4";

/// `GET {vault}/{secrets|keys|certificates}/{name}[/{version}]?api-version=7.4`.
pub fn object_url(vault_url: &str, object_type: ObjectType, name: &str, version: &str) -> String {
    let mut url = format!(
        "{vault_url}/{}/{}",
        object_type.collection(),
        url_segment(name)
    );
    if !version.is_empty() {
        url.push('/');
        url.push_str(&url_segment(version));
    }
    url.push_str("?api-version=");
    url.push_str(API_VERSION);
    url
}

/// `GET {vault}/{collection}/{name}/versions?api-version=7.4`.
pub fn versions_url(vault_url: &str, object_type: ObjectType, name: &str) -> String {
    format!(
        "{vault_url}/{}/{}/versions?api-version={API_VERSION}",
        object_type.collection(),
        url_segment(name)
    )
}

/// The version of an object id: its last path segment
/// (`https://kv.vault.azure.net/secrets/name/abc` → `abc`).
pub fn version_from_id(id: &str) -> String {
    let path = id.split(['?', '#']).next().unwrap_or_default();
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("Key Vault's response is not the expected JSON: {0}")]
    Json(String),
    #[error("Key Vault's response has no {0}")]
    Missing(&'static str),
    #[error("Key Vault's response field {0} is not valid base64")]
    Base64(&'static str),
}

fn json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, BodyError> {
    serde_json::from_slice(body).map_err(|e| BodyError::Json(json_error(&e)))
}

/// A secret bundle. `Debug` omits the value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct SecretBundle {
    pub value: Option<String>,
    pub id: Option<String>,
    #[serde(rename = "contentType")]
    pub content_type: Option<String>,
    /// Set when the secret backs a certificate.
    pub kid: Option<String>,
}

impl std::fmt::Debug for SecretBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBundle")
            .field("id", &self.id)
            .field("content_type", &self.content_type)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

pub fn parse_secret(body: &[u8]) -> Result<SecretBundle, BodyError> {
    let bundle: SecretBundle = json(body)?;
    if bundle.value.is_none() {
        return Err(BodyError::Missing("secret value"));
    }
    if bundle.id.as_deref().is_none_or(str::is_empty) {
        return Err(BodyError::Missing("secret id"));
    }
    Ok(bundle)
}

/// The public half of a JSON Web Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonWebKey {
    pub kid: String,
    pub kty: String,
    pub n: Option<Vec<u8>>,
    pub e: Option<Vec<u8>>,
    pub crv: Option<String>,
    pub x: Option<Vec<u8>>,
    pub y: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct KeyBundleJson {
    key: Option<JwkJson>,
}

#[derive(Deserialize)]
struct JwkJson {
    kid: Option<String>,
    kty: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Base64url as JWKs use it (padding tolerated).
fn base64url(value: Option<String>, field: &'static str) -> Result<Option<Vec<u8>>, BodyError> {
    value
        .map(|v| lenient_url_base64(&v).map_err(|_| BodyError::Base64(field)))
        .transpose()
}

pub fn parse_key(body: &[u8]) -> Result<JsonWebKey, BodyError> {
    let bundle: KeyBundleJson = json(body)?;
    let key = bundle.key.ok_or(BodyError::Missing("key"))?;
    let kid = key
        .kid
        .filter(|k| !k.is_empty())
        .ok_or(BodyError::Missing("key id"))?;
    let kty = key.kty.ok_or(BodyError::Missing("key type"))?;
    Ok(JsonWebKey {
        kid,
        kty,
        n: base64url(key.n, "n")?,
        e: base64url(key.e, "e")?,
        crv: key.crv,
        x: base64url(key.x, "x")?,
        y: base64url(key.y, "y")?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateBundle {
    pub id: String,
    /// The DER certificate.
    pub cer: Vec<u8>,
}

#[derive(Deserialize)]
struct CertificateJson {
    id: Option<String>,
    cer: Option<String>,
}

pub fn parse_certificate(body: &[u8]) -> Result<CertificateBundle, BodyError> {
    let bundle: CertificateJson = json(body)?;
    let cer = bundle
        .cer
        .ok_or(BodyError::Missing("certificate value (cer)"))?;
    let cer = lenient_std_base64(&cer).map_err(|_| BodyError::Base64("cer"))?;
    let id = bundle
        .id
        .filter(|i| !i.is_empty())
        .ok_or(BodyError::Missing("certificate id"))?;
    Ok(CertificateBundle { id, cer })
}

/// One entry of a version list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionItem {
    pub version: String,
    /// Creation time (Unix seconds); absent counts as the epoch, as upstream does.
    pub created: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionPage {
    /// Enabled versions only: upstream skips disabled ones and those without attributes.
    pub items: Vec<VersionItem>,
    pub next_link: Option<String>,
}

#[derive(Deserialize)]
struct VersionPageJson {
    #[serde(default)]
    value: Vec<VersionItemJson>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct VersionItemJson {
    id: Option<String>,
    kid: Option<String>,
    attributes: Option<AttributesJson>,
}

#[derive(Deserialize)]
struct AttributesJson {
    enabled: Option<bool>,
    created: Option<serde_json::Number>,
}

pub fn parse_version_page(body: &[u8]) -> Result<VersionPage, BodyError> {
    let page: VersionPageJson = json(body)?;
    let mut items = Vec::with_capacity(page.value.len());
    for item in page.value {
        let Some(attributes) = item.attributes else {
            continue;
        };
        if attributes.enabled == Some(false) {
            continue;
        }
        let id = item
            .id
            .or(item.kid)
            .filter(|i| !i.is_empty())
            .ok_or(BodyError::Missing("version id"))?;
        let created = attributes
            .created
            .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
            .unwrap_or(0);
        items.push(VersionItem {
            version: version_from_id(&id),
            created,
        });
    }
    Ok(VersionPage {
        items,
        next_link: page.next_link.filter(|l| !l.is_empty()),
    })
}

/// Key Vault's error body (`{"error":{"code":…,"message":…}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub code: String,
    pub message: String,
}

#[derive(Deserialize)]
struct ErrorJson {
    error: Option<ErrorDetailJson>,
}

#[derive(Deserialize)]
struct ErrorDetailJson {
    code: Option<String>,
    message: Option<String>,
    innererror: Option<Box<ErrorDetailJson>>,
}

pub fn parse_error(body: &[u8]) -> Option<ServiceError> {
    let parsed: ErrorJson = serde_json::from_slice(body).ok()?;
    let detail = parsed.error?;
    let mut code = detail.code.unwrap_or_default();
    if let Some(inner) = detail.innererror.as_ref().and_then(|i| i.code.as_ref()) {
        code = format!("{code}/{inner}");
    }
    // The service's words end up in log lines and events: one line each, so nothing can forge more.
    let one_line = |text: String| text.replace(['\r', '\n'], " ");
    Some(ServiceError {
        code: one_line(code),
        message: one_line(detail.message.unwrap_or_default()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            object_url(
                "https://kv.vault.azure.net",
                ObjectType::Secret,
                "db-pass",
                ""
            ),
            "https://kv.vault.azure.net/secrets/db-pass?api-version=7.4"
        );
        assert_eq!(
            object_url("https://kv.vault.azure.net", ObjectType::Cert, "c", "a b/c"),
            "https://kv.vault.azure.net/certificates/c/a%20b%2Fc?api-version=7.4"
        );
        assert_eq!(
            versions_url("https://kv", ObjectType::Key, "k"),
            "https://kv/keys/k/versions?api-version=7.4"
        );
        assert_eq!(version_from_id("https://kv/secrets/n/abc"), "abc");
        assert_eq!(version_from_id("https://kv/secrets/n/abc/"), "abc");
        assert_eq!(version_from_id(""), "");
    }

    #[test]
    fn version_pages_skip_disabled_and_attributeless_items() {
        let page = parse_version_page(
            br#"{"value":[{"id":"https://kv/secrets/s/a","attributes":{"enabled":true,"created":10}},
                          {"id":"https://kv/secrets/s/b","attributes":{"enabled":false,"created":20}},
                          {"id":"https://kv/secrets/s/c"},
                          {"kid":"https://kv/keys/s/d","attributes":{}}],
                "nextLink":"https://kv/secrets/s/versions?$skiptoken=x"}"#,
        )
        .unwrap();
        assert_eq!(
            page.items,
            vec![
                VersionItem {
                    version: "a".into(),
                    created: 10
                },
                VersionItem {
                    version: "d".into(),
                    created: 0
                }
            ]
        );
        assert_eq!(
            page.next_link.as_deref(),
            Some("https://kv/secrets/s/versions?$skiptoken=x")
        );
    }

    #[test]
    fn errors() {
        let e = parse_error(br#"{"error":{"code":"Forbidden","message":"no","innererror":{"code":"AccessDenied"}}}"#).unwrap();
        assert_eq!(e.code, "Forbidden/AccessDenied");
        assert_eq!(parse_error(b"<html>"), None);
        let e = parse_error(br#"{"error":{"code":"A\nB","message":"line1\r\nfake log line"}}"#)
            .unwrap();
        assert!(!e.code.contains('\n') && !e.message.contains('\n') && !e.message.contains('\r'));
        assert!(parse_secret(br#"{"id":"x"}"#).is_err());
        assert!(parse_key(br#"{"key":{"kid":"k","kty":"RSA","n":"!!"}}"#).is_err());
    }
}
