//! PKCS#12 files as Key Vault serves certificate-backed secrets (untrusted bytes from the store):
//! `pkcs12::decode`, then `content::pfx_to_pem` on the same file in base64, plus the two parsers
//! the PEM conversion feeds (`keys::normalize_pkcs8`, `x509::key_ids`) on the raw input.
//!
//! Beyond "no panic": `pfx_to_pem` succeeds exactly when the file decodes, every key normalises
//! and every certificate parses; its output is one `PRIVATE KEY` block per key, then one
//! `CERTIFICATE` block per certificate, each holding the DER it came from (certificates in some
//! order, each once). Normalising a normalised key changes nothing.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use secrets_store_azure_core::content;
use secrets_store_pki::{keys, pkcs12, x509};

/// The DER payloads of the PEM blocks of `text`, with their labels.
fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let label = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .unwrap_or_else(|| panic!("not a PEM header: {line:?}"));
        let mut body = String::new();
        for line in lines.by_ref() {
            if line == format!("-----END {label}-----") {
                break;
            }
            assert!(line.len() <= 64, "PEM line of {} characters", line.len());
            body.push_str(line);
        }
        let der = STANDARD.decode(body).expect("PEM body is base64");
        blocks.push((label.to_string(), der));
    }
    blocks
}

fuzz_target!(|data: &[u8]| {
    let _ = keys::normalize_pkcs8(data);
    let _ = x509::key_ids(data);

    let decoded = pkcs12::decode(data);
    let converted = content::pfx_to_pem(&STANDARD.encode(data));
    let pfx = match decoded {
        Ok(pfx) => pfx,
        Err(_) => {
            assert!(
                converted.is_err(),
                "pfx_to_pem accepted what decode refused"
            );
            return;
        }
    };
    let mut normalized = Vec::new();
    for key in &pfx.private_keys {
        match keys::normalize_pkcs8(key) {
            Ok(n) => {
                assert_eq!(keys::normalize_pkcs8(&n).as_ref(), Ok(&n), "not idempotent");
                normalized.push(n);
            }
            Err(_) => {
                assert!(
                    converted.is_err(),
                    "a key that does not normalise was converted"
                );
                return;
            }
        }
    }
    if pfx.certificates.iter().any(|c| x509::key_ids(c).is_err()) {
        assert!(
            converted.is_err(),
            "a certificate that does not parse was converted"
        );
        return;
    }
    let pem = converted.expect("every part converts, so the file does");
    let blocks = pem_blocks(&pem);
    assert_eq!(blocks.len(), normalized.len() + pfx.certificates.len());
    let (key_blocks, cert_blocks) = blocks.split_at(normalized.len());
    for ((label, der), key) in key_blocks.iter().zip(&normalized) {
        assert_eq!(label, "PRIVATE KEY");
        assert_eq!(der, key);
    }
    let mut written: Vec<&Vec<u8>> = cert_blocks
        .iter()
        .map(|(label, der)| {
            assert_eq!(label, "CERTIFICATE");
            der
        })
        .collect();
    let mut expected: Vec<&Vec<u8>> = pfx.certificates.iter().collect();
    written.sort();
    expected.sort();
    assert_eq!(written, expected, "certificates lost or duplicated");
});
