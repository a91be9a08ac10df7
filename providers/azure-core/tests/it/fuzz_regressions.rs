//! Inputs the fuzz targets (`tests/fuzz`) found to break a promise of this crate, minimised and
//! kept here so the bug stays fixed without a nightly toolchain.
#![allow(clippy::unwrap_used)]

use secrets_store_azure_core::{auth, encoding, keyvault, params};

/// serde_json quotes a value of the wrong type in its message (`invalid type: string "…"`):
/// a token or secret sent in an unexpected shape went into the error text, and from there into
/// logs and Kubernetes events. Found by `keyvault_json`, `auth_json` and `spc_parameters`.
#[test]
fn json_errors_never_quote_values() {
    let secret = "s3cr3t-value";
    let e = keyvault::parse_secret(br#""s3cr3t-value""#)
        .unwrap_err()
        .to_string();
    assert!(!e.contains(secret), "{e}");
    assert!(
        e.contains("not the expected JSON") && e.contains("line 1"),
        "{e}"
    );

    let token = "eyJ0eXAiOi.eyJhdWQiOi.c2ln";
    let nmi = format!(r#"{{"token": "{token}", "clientid": "c"}}"#);
    let e = auth::parse_nmi_response(nmi.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(!e.contains(token), "{e}");
    let e = auth::parse_token_response(format!("[\"{token}\"]").as_bytes(), 0)
        .unwrap_err()
        .to_string();
    assert!(!e.contains(token), "{e}");

    let tokens = r#"{"api://AzureADTokenExchange": "bare-token-string"}"#;
    let e = params::workload_identity_token(tokens)
        .unwrap_err()
        .to_string();
    assert!(!e.contains("bare-token-string"), "{e}");
    assert!(
        e.contains("failed to unmarshal service account tokens"),
        "{e}"
    );

    // Quotes and backslashes inside the value do not end the redaction early.
    let e = keyvault::parse_key(br#"{"key": "a\"b\\\"c-secret-tail"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        !e.contains("secret-tail") && e.contains(r#"string "…""#),
        "{e}"
    );
}

#[test]
fn json_error_keeps_shape_and_position() {
    let error = serde_json::from_str::<Vec<u8>>(r#"["x\"y"]"#).unwrap_err();
    assert_eq!(
        encoding::json_error(&error),
        r#"invalid type: string "…", expected u8 at line 1 column 7"#
    );
    let error = serde_json::from_str::<Vec<u8>>("[1,").unwrap_err();
    assert_eq!(encoding::json_error(&error), error.to_string());
}

/// A line break in AAD's `error` code went into the message as is (only the description was
/// folded onto one line). Found by `auth_json`.
#[test]
fn aad_errors_are_one_line() {
    let body = br#"{"error":"ir\nTimestamp: 2024-01-01 00:00:00Z","error_description":"a\r\nb"}"#;
    let message = auth::parse_aad_error(body).unwrap();
    assert_eq!(message, "ir Timestamp: 2024-01-01 00:00:00Z: a  b");
}
