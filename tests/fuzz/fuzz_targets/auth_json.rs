//! Token endpoint bodies, as the Azure provider reads them: AAD v2 and IMDS token responses
//! (`auth::parse_token_response`), aad-pod-identity NMI responses (`auth::parse_nmi_response`) and
//! AAD error bodies (`auth::parse_aad_error`).
//!
//! Beyond "no panic": an accepted token is non-empty and safe in an `Authorization` header, its
//! expiry follows `expires_on` over `expires_in`; `Debug` never shows the token; the token
//! survives the provider's cache encoding (serde) and a re-encoded response unchanged; an AAD
//! error is one line. No error message carries a value of the body (checked by wrapping every
//! string in a marker character and parsing again).
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrets_store_azure_core::auth::{
    AccessToken, parse_aad_error, parse_nmi_response, parse_token_response,
};
use serde_json::json;

const NOW: u64 = 1_700_000_000;
const MARKER: char = '\u{2603}';

fn check_token(token: &AccessToken) {
    assert!(!token.token.is_empty());
    assert!(
        token.token.bytes().all(|b| b.is_ascii_graphic()),
        "token unsafe in a header"
    );
    let shown = format!("{token:?}");
    if token.token.len() >= 4 && !token.expires_on.to_string().contains(&token.token) {
        assert!(!shown.contains(&token.token), "Debug shows the token");
    }
    let cached = serde_json::to_vec(token).expect("encode for the cache");
    let restored: AccessToken = serde_json::from_slice(&cached).expect("decode from the cache");
    assert_eq!(&restored, token);
    assert!(token.cache_ttl(NOW) <= token.expires_on.saturating_sub(NOW));
}

fn errors(body: &[u8]) -> Vec<String> {
    let mut messages = Vec::new();
    match parse_token_response(body, NOW) {
        Ok(token) => {
            check_token(&token);
            let again = parse_token_response(
                json!({"access_token": token.token, "expires_on": token.expires_on})
                    .to_string()
                    .as_bytes(),
                0,
            )
            .expect("re-encoded token response");
            assert_eq!(again, token);
        }
        Err(e) => messages.push(e.to_string()),
    }
    match parse_nmi_response(body) {
        Ok(token) => {
            check_token(&token);
            let again = parse_nmi_response(
                json!({"token": {"access_token": token.token, "expires_on": token.expires_on.to_string()},
                       "clientid": "c"})
                .to_string()
                .as_bytes(),
            )
            .expect("re-encoded NMI response");
            assert_eq!(again, token);
        }
        Err(e) => messages.push(e.to_string()),
    }
    messages
}

fuzz_target!(|data: &[u8]| {
    for message in errors(data) {
        assert!(!message.is_empty());
    }
    if let Some(message) = parse_aad_error(data) {
        assert!(
            !message.contains(['\r', '\n']),
            "AAD error over lines: {message:?}"
        );
    }

    let Ok(mut document) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if secrets_store_fuzz::keys_contain(&document, MARKER) {
        return;
    }
    secrets_store_fuzz::mark_strings(&mut document, MARKER);
    let marked = document.to_string();
    for message in errors(marked.as_bytes()) {
        assert!(
            !message.contains(MARKER),
            "a value of the body in an error: {message}"
        );
    }
});
