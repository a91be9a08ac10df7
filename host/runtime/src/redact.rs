//! Removes credentials from text before it reaches a log line or an error message.
//!
//! It knows the values a mount handed the provider (the nodePublishSecretRef data, the
//! service-account tokens, attributes that look like credentials), every credential the provider
//! sent in an `Authorization` header, and it recognises JWT-shaped strings.

use parking_lot::Mutex;
use secrets_store_contract::MountRequest;

/// The contract's redaction marker (one definition for the whole driver).
pub use secrets_store_contract::REDACTED;

/// Log filter directives a driver must apply whatever verbosity the operator asks for: at debug and
/// trace these libraries log call arguments, guest output and HTTP headers, which carry secrets.
pub const THIRD_PARTY_LOG_CAPS: &[&str] = &[
    "wasmtime=warn",
    "wasmtime_wasi=warn",
    "wasmtime_wasi_http=warn",
    "wasmtime_wasi_io=warn",
    "cranelift_codegen=warn",
    "cranelift_frontend=warn",
    "hyper=warn",
    "hyper_util=warn",
    "h2=warn",
    "rustls=warn",
    "tokio_rustls=warn",
    "tower=warn",
    "tonic=warn",
    "kube=info",
    "kube_client=info",
    "kube_runtime=info",
];

/// Values shorter than this are not redacted by value: they would blank out ordinary words.
const MIN_SECRET_LEN: usize = 4;

#[derive(Default)]
pub struct Redactor {
    known: Mutex<Vec<String>>,
}

impl Redactor {
    pub fn for_request(request: &MountRequest) -> Self {
        let redactor = Redactor::default();
        for value in request.secrets.values() {
            redactor.add(value);
        }
        for (key, value) in &request.attributes {
            let key = key.to_ascii_lowercase();
            // The volume context's `secretProviderClass` names the class, it holds no secret:
            // redacting it would blank the class name (and every word that contains it, such as
            // a vault named after it) out of the messages that must say what went wrong.
            if key == "secretproviderclass" {
                continue;
            }
            if ["token", "secret", "password", "credential"]
                .iter()
                .any(|w| key.contains(w))
            {
                redactor.add(value);
                // The token map is JSON: redact each token inside it as well.
                if let Ok(serde_json::Value::Object(map)) =
                    serde_json::from_str::<serde_json::Value>(value)
                {
                    for entry in map.values() {
                        if let Some(token) = entry.get("token").and_then(|t| t.as_str()) {
                            redactor.add(token);
                        }
                    }
                }
            }
        }
        redactor
    }

    pub fn add(&self, value: &str) {
        let value = value.trim();
        if value.len() >= MIN_SECRET_LEN {
            let mut known = self.known.lock();
            if !known.iter().any(|k| k == value) {
                known.push(value.to_string());
                // Longest first, so a value containing another is removed whole.
                known.sort_by_key(|k| std::cmp::Reverse(k.len()));
            }
        }
    }

    /// Record the credential of an `Authorization` header value (`Bearer xyz` → also `xyz`).
    pub fn add_authorization(&self, header: &str) {
        self.add(header);
        if let Some((_, credential)) = header.split_once(' ') {
            self.add(credential);
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in self.known.lock().iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        redact_jwts(&out)
    }
}

/// Replace anything shaped like a JWT (`eyJ…` header, dot, payload, dot, signature).
pub fn redact_jwts(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while let Some(pos) = text[i..].find("eyJ") {
        let start = i + pos;
        let mut end = start;
        let mut dots = 0;
        let mut segment_len = 0;
        let mut ok_segments = 0;
        while end < bytes.len() {
            let b = bytes[end];
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=' {
                segment_len += 1;
            } else if b == b'.' && dots < 2 {
                if segment_len >= 8 {
                    ok_segments += 1;
                }
                dots += 1;
                segment_len = 0;
            } else {
                break;
            }
            end += 1;
        }
        if dots == 2 && ok_segments == 2 {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
            i = end;
        } else {
            i = start + 3;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_jwts_are_removed() {
        let mut request = MountRequest::default();
        request
            .secrets
            .insert("clientsecret".into(), "s3cr3t-value".into());
        request.secrets.insert("short".into(), "ab".into());
        request.attributes.insert(
            secrets_store_contract::SERVICE_ACCOUNT_TOKENS.into(),
            r#"{"api://AzureADTokenExchange":{"token":"sa-token-123456","expirationTimestamp":"x"}}"#.into(),
        );
        request
            .attributes
            .insert("keyvaultName".into(), "myvault".into());
        request
            .attributes
            .insert("secretProviderClass".into(), "vault".into());
        let r = Redactor::for_request(&request);
        r.add_authorization("Bearer access-token-9876");
        let line = "secret s3cr3t-value token sa-token-123456 auth Bearer access-token-9876 vault myvault ab \
                    jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl end";
        let clean = r.redact(line);
        for leaked in [
            "s3cr3t-value",
            "sa-token-123456",
            "access-token-9876",
            "eyJhbGci",
        ] {
            assert!(!clean.contains(leaked), "{leaked} leaked: {clean}");
        }
        assert!(
            clean.contains("vault myvault"),
            "ordinary values stay: {clean}"
        );
        assert!(clean.ends_with(" end"));
    }

    #[test]
    fn jwt_lookalikes_survive() {
        assert_eq!(
            redact_jwts("eyJ is not a token. eyJabc.def"),
            "eyJ is not a token. eyJabc.def"
        );
        assert_eq!(
            redact_jwts("x eyJaaaaaaaaa.bbbbbbbbbb.c y"),
            "x [REDACTED] y"
        );
    }
}
