//! Access tokens: JWT-shaped (`eyJ…`) HS256 tokens signed with a key that lives only in this emulator
//! instance. Clients treat them as opaque, like AAD tokens; the emulator reads the claims back to
//! decide who is calling (tenant, client id, audience, expiry). A token from another instance or any
//! altered token fails the signature check.

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::util::{b64url, b64url_decode};

/// How the token was obtained; recorded in the claims so logs and counters can say which flow ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// AAD client credentials with a client secret.
    ClientSecret,
    /// AAD client credentials with a federated (workload identity) client assertion.
    ClientAssertion,
    /// IMDS managed identity.
    ManagedIdentity,
    /// aad-pod-identity NMI.
    PodIdentity,
    /// Minted directly through the library API.
    Minted,
}

/// The claims the emulator puts in (and reads back from) its tokens. Names follow AAD v1 access tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub appid: String,
    pub appidacr: String,
    pub idtyp: String,
    pub oid: String,
    pub sub: String,
    pub tid: String,
    pub ver: String,
    pub xms_emu_kind: TokenKind,
}

impl TokenClaims {
    /// The `iss` AAD v1 tokens carry for a tenant.
    pub fn issuer_for(tenant: &str) -> String {
        format!("https://sts.windows.net/{tenant}/")
    }
}

/// Why a presented token was not accepted before any claim check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
}

/// Signs and verifies tokens with a per-instance random key.
pub struct TokenAuthority {
    key: hmac::Key,
}

const HEADER: &str = r#"{"typ":"JWT","alg":"HS256","kid":"keyvault-emulator"}"#;

impl TokenAuthority {
    pub fn new() -> Self {
        let secret: [u8; 32] = rand::random();
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    pub fn issue(&self, claims: &TokenClaims) -> String {
        // Serialising a plain struct of strings and integers cannot fail.
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!("{}.{}", b64url(HEADER.as_bytes()), b64url(&body));
        let tag = hmac::sign(&self.key, signing_input.as_bytes());
        format!("{signing_input}.{}", b64url(tag.as_ref()))
    }

    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let sig = b64url_decode(s).ok_or(TokenError::Malformed)?;
        let claims_raw = b64url_decode(c).ok_or(TokenError::Malformed)?;
        let header_raw = b64url_decode(h).ok_or(TokenError::Malformed)?;
        serde_json::from_slice::<serde_json::Value>(&header_raw)
            .map_err(|_| TokenError::Malformed)?;
        let signing_input = &token[..h.len() + 1 + c.len()];
        hmac::verify(&self.key, signing_input.as_bytes(), &sig)
            .map_err(|_| TokenError::BadSignature)?;
        serde_json::from_slice(&claims_raw).map_err(|_| TokenError::Malformed)
    }
}

impl Default for TokenAuthority {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims() -> TokenClaims {
        TokenClaims {
            aud: "https://vault.azure.net".into(),
            iss: TokenClaims::issuer_for("t"),
            iat: 1,
            nbf: 1,
            exp: 2,
            appid: "app".into(),
            appidacr: "1".into(),
            idtyp: "app".into(),
            oid: "o".into(),
            sub: "o".into(),
            tid: "t".into(),
            ver: "1.0".into(),
            xms_emu_kind: TokenKind::Minted,
        }
    }

    #[test]
    fn roundtrip_and_foreign() {
        let a = TokenAuthority::new();
        let b = TokenAuthority::new();
        let t = a.issue(&claims());
        assert!(t.starts_with("eyJ"));
        assert_eq!(a.verify(&t).unwrap(), claims());
        assert_eq!(b.verify(&t), Err(TokenError::BadSignature));
        assert_eq!(a.verify("abc"), Err(TokenError::Malformed));
        let mut tampered = t.clone();
        tampered.insert(t.find('.').unwrap() + 3, 'A');
        assert!(a.verify(&tampered).is_err());
    }
}
