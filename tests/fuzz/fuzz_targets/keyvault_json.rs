//! Key Vault response bodies, as the Azure provider reads them: secret, key and certificate
//! bundles, version-list pages and error bodies (`keyvault::parse_*`), and the file contents
//! made from them (`content::key_content`, `certificate_content`, `secret_content`).
//!
//! Beyond "no panic": accepted bundles carry what the provider relies on (an id, a value, key
//! material), `Debug` of a secret bundle never shows the value, versions taken from ids are single
//! path segments; re-encoding an accepted bundle as Key Vault would and parsing it again gives the
//! same bundle. No error message carries a value of the body: every string of the document is
//! wrapped in a marker character and the body parsed again; no message may show the marker.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use secrets_store_azure_core::content;
use secrets_store_azure_core::keyvault;
use secrets_store_azure_core::params::{KeyVaultObject, ObjectEncoding, ObjectType};
use serde_json::json;

const MARKER: char = '\u{2603}';

fn object(encoding: ObjectEncoding, pfx: bool) -> KeyVaultObject {
    KeyVaultObject {
        name: "s".into(),
        alias: String::new(),
        object_type: ObjectType::Secret,
        version: String::new(),
        version_history: 0,
        pfx,
        encoding,
        file_permission: None,
        file_name: "s".into(),
    }
}

fn check_secret(body: &[u8]) -> Result<(), String> {
    let bundle = keyvault::parse_secret(body).map_err(|e| e.to_string())?;
    let value = bundle
        .value
        .clone()
        .expect("an accepted secret has a value");
    assert!(bundle.id.as_deref().is_some_and(|i| !i.is_empty()));
    let shown = format!("{bundle:?}");
    if value.len() >= 4
        && ![&bundle.id, &bundle.content_type, &bundle.kid]
            .iter()
            .any(|f| f.as_deref().is_some_and(|f| f.contains(&value)))
    {
        assert!(!shown.contains(&value), "Debug shows the secret value");
    }
    let again = keyvault::parse_secret(
        json!({"value": value, "id": bundle.id, "contentType": bundle.content_type, "kid": bundle.kid})
            .to_string()
            .as_bytes(),
    )
    .expect("re-encoded secret");
    assert_eq!(again, bundle);
    for encoding in [
        ObjectEncoding::Utf8,
        ObjectEncoding::Base64,
        ObjectEncoding::Hex,
    ] {
        for pfx in [false, true] {
            if let Ok(bytes) = content::secret_content(&bundle, &object(encoding, pfx))
                && encoding == ObjectEncoding::Utf8
                && bundle.kid.as_deref().is_none_or(str::is_empty)
            {
                assert_eq!(bytes, value.as_bytes());
            }
        }
    }
    Ok(())
}

fn check_key(body: &[u8]) -> Result<(), String> {
    let key = keyvault::parse_key(body).map_err(|e| e.to_string())?;
    assert!(!key.kid.is_empty());
    let member = |v: &Option<Vec<u8>>| v.as_ref().map(|b| URL_SAFE_NO_PAD.encode(b));
    let again = keyvault::parse_key(
        json!({"key": {"kid": key.kid, "kty": key.kty, "n": member(&key.n), "e": member(&key.e),
                       "crv": key.crv, "x": member(&key.x), "y": member(&key.y)}})
        .to_string()
        .as_bytes(),
    )
    .expect("re-encoded key");
    assert_eq!(again, key);
    if let Ok(pem) = content::key_content(&key) {
        let pem = String::from_utf8(pem).expect("PEM is text");
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
    }
    Ok(())
}

fn check_certificate(body: &[u8]) -> Result<(), String> {
    let bundle = keyvault::parse_certificate(body).map_err(|e| e.to_string())?;
    assert!(!bundle.id.is_empty());
    let again = keyvault::parse_certificate(
        json!({"id": bundle.id, "cer": STANDARD.encode(&bundle.cer)})
            .to_string()
            .as_bytes(),
    )
    .expect("re-encoded certificate");
    assert_eq!(again, bundle);
    let pem = content::certificate_content(&bundle).expect("any certificate bytes encode as PEM");
    let pem = String::from_utf8(pem).expect("PEM is text");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    Ok(())
}

fn check_versions(body: &[u8]) -> Result<(), String> {
    let page = keyvault::parse_version_page(body).map_err(|e| e.to_string())?;
    for item in &page.items {
        assert!(
            !item.version.contains(['/', '?', '#']),
            "version {:?}",
            item.version
        );
    }
    if page.next_link.as_deref() == Some("") {
        panic!("an empty next link is kept");
    }
    // Re-encode the items whose version can be an id's last segment.
    if page.items.iter().all(|i| !i.version.is_empty()) {
        let value: Vec<_> = page
            .items
            .iter()
            .map(|i| {
                json!({"id": format!("https://kv.vault.azure.net/secrets/n/{}", i.version),
                       "attributes": {"enabled": true, "created": i.created}})
            })
            .collect();
        let again = keyvault::parse_version_page(
            json!({"value": value, "nextLink": page.next_link})
                .to_string()
                .as_bytes(),
        )
        .expect("re-encoded page");
        assert_eq!(again, page);
    }
    Ok(())
}

fn errors(body: &[u8]) -> Vec<String> {
    [
        check_secret(body),
        check_key(body),
        check_certificate(body),
        check_versions(body),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect()
}

fuzz_target!(|data: &[u8]| {
    for message in errors(data) {
        assert!(!message.is_empty());
    }
    // Key Vault's own error code and message are meant to be shown; only robustness here.
    let _ = keyvault::parse_error(data);

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
