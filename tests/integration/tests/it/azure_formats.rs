//! The bytes azure.wasm writes for every object type, format and encoding, end to end (real
//! runtime, real HTTPS, the emulator as Key Vault), against bytes computed independently by the
//! `openssl` CLI: secrets as stored or decoded, public keys of RSA/RSA-HSM/EC keys, and
//! certificates imported as PFX (legacy, AES-256, unencrypted) or PEM, each read as a certificate,
//! as a secret (PEM and PFX, text and binary) and as a key.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use crate::support::pki::{PFX_PASSWORD, pki, read_pfx};
use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyvault_emulator::{CertificateImport, KeyOptions};
use secrets_store_contract::ErrorKind;

#[tokio::test]
async fn secrets_as_stored_and_decoded_with_alias_and_permission() {
    let env = Env::start().await;
    let raw: Vec<u8> = (0u8..=255).rev().chain(*b"\r\n\0 tail").collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("raw.bin"), &raw).unwrap();
    // The stored encodings come from tools, not from the code under test.
    let as_base64 = openssl_text(dir.path(), &["base64", "-A", "-in", "raw.bin"]);
    let as_hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let utf8 = "päss wörd\nwith a second line and trailing space ";
    let v_plain = env
        .emu
        .set_secret(VAULT, "plain", utf8, Some("text/plain"))
        .unwrap();
    let v_b64 = env
        .emu
        .set_secret(VAULT, "binary-b64", &as_base64, None)
        .unwrap();
    let v_hex = env
        .emu
        .set_secret(VAULT, "binary-hex", &as_hex, None)
        .unwrap();
    // A PKCS#12 content type on a secret that backs no certificate changes nothing (upstream only
    // converts certificate-backed secrets).
    let pfx_text = STANDARD.encode(&pki().rsa_leaf.pfx_aes256);
    let v_pfx = env
        .emu
        .set_secret(
            VAULT,
            "uploaded-pfx",
            &pfx_text,
            Some("application/x-pkcs12"),
        )
        .unwrap();

    let objs = objects(&[
        object(&[("objectName", "plain"), ("objectType", "secret")]),
        object(&[
            ("objectName", "plain"),
            ("objectType", "secret"),
            ("objectEncoding", "utf-8"),
            ("objectAlias", "nested/dir/plain.txt"),
            ("filePermission", "0400"),
        ]),
        object(&[
            ("objectName", "binary-b64"),
            ("objectType", "secret"),
            ("objectEncoding", "base64"),
            ("objectAlias", "raw-from-base64.bin"),
        ]),
        object(&[
            ("objectName", "binary-hex"),
            ("objectType", "secret"),
            ("objectEncoding", "HEX"),
            ("objectAlias", "raw-from-hex.bin"),
            ("filePermission", "600"),
        ]),
        object(&[
            ("objectName", "binary-b64"),
            ("objectType", "secret"),
            ("objectAlias", "base64-text"),
        ]),
        object(&[("objectName", "uploaded-pfx"), ("objectType", "secret")]),
        object(&[
            ("objectName", "uploaded-pfx"),
            ("objectType", "secret"),
            ("objectEncoding", "base64"),
            ("objectAlias", "uploaded.pfx"),
        ]),
    ]);
    let response = env.mount(&Mount::sp(&objs)).await.unwrap();
    let files: Vec<(&str, u32)> = response
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.mode))
        .collect();
    assert_eq!(
        files,
        [
            ("plain", 0o644),
            ("nested/dir/plain.txt", 0o400),
            ("raw-from-base64.bin", 0o644),
            ("raw-from-hex.bin", 0o600),
            ("base64-text", 0o644),
            ("uploaded-pfx", 0o644),
            ("uploaded.pfx", 0o644),
        ]
    );
    assert_eq!(text(&response, "uploaded-pfx"), pfx_text);
    assert_eq!(
        file(&response, "uploaded.pfx").contents,
        pki().rsa_leaf.pfx_aes256
    );
    assert_eq!(file(&response, "plain").contents, utf8.as_bytes());
    assert_eq!(
        file(&response, "nested/dir/plain.txt").contents,
        utf8.as_bytes()
    );
    assert_eq!(file(&response, "raw-from-base64.bin").contents, raw);
    assert_eq!(file(&response, "raw-from-hex.bin").contents, raw);
    assert_eq!(
        file(&response, "base64-text").contents,
        as_base64.as_bytes()
    );
    // One version entry per object entry, id `<objectType>/<objectName>` (not the alias).
    let versions: Vec<(&str, &str)> = response
        .object_versions
        .iter()
        .map(|v| (v.id.as_str(), v.version.as_str()))
        .collect();
    assert_eq!(
        versions,
        [
            ("secret/plain", v_plain.as_str()),
            ("secret/plain", v_plain.as_str()),
            ("secret/binary-b64", v_b64.as_str()),
            ("secret/binary-hex", v_hex.as_str()),
            ("secret/binary-b64", v_b64.as_str()),
            ("secret/uploaded-pfx", v_pfx.as_str()),
            ("secret/uploaded-pfx", v_pfx.as_str()),
        ]
    );

    // A value that is not what objectEncoding says: the object and the encoding are named.
    let bad = objects(&[object(&[
        ("objectName", "plain"),
        ("objectType", "secret"),
        ("objectEncoding", "base64"),
    ])]);
    expect_error(
        env.mount(&Mount::sp(&bad)).await,
        ErrorKind::InvalidParameters,
        &["secret/plain", "base64"],
    );
}

#[tokio::test]
async fn keys_are_written_as_their_public_key() {
    let env = Env::start().await;
    let pki = pki();
    let mut expected = Vec::new();
    for key in &pki.keys {
        let version = env
            .emu
            .import_key_pem(
                VAULT,
                &format!("key-{}", key.name),
                &key.private_pem,
                KeyOptions::default(),
            )
            .unwrap();
        expected.push((format!("key-{}", key.name), version, key.public_pem.clone()));
    }
    // The same RSA key reported as HSM-protected (kty RSA-HSM) and an HSM EC key (EC-HSM).
    let hsm = KeyOptions {
        hsm: true,
        ..Default::default()
    };
    for (name, fixture) in [("key-rsa-hsm", "rsa2048"), ("key-ec-hsm", "p384")] {
        let version = env
            .emu
            .import_key_pem(VAULT, name, &pki.key(fixture).private_pem, hsm.clone())
            .unwrap();
        expected.push((
            name.to_string(),
            version,
            pki.key(fixture).public_pem.clone(),
        ));
    }
    let objs = objects(
        &expected
            .iter()
            .map(|(name, _, _)| object(&[("objectName", name), ("objectType", "key")]))
            .collect::<Vec<_>>(),
    );
    let response = env.mount(&Mount::sp(&objs)).await.unwrap();
    for (name, version_id, public_pem) in &expected {
        assert_eq!(text(&response, name), *public_pem, "{name}");
        assert_eq!(version(&response, &format!("key/{name}")), version_id);
    }
}

/// The ways to read one certificate (the binary PFX only when the secret holds a PFX).
fn certificate_views(name: &str, binary_pfx: bool) -> Vec<String> {
    let mut views = vec![
        object(&[
            ("objectName", name),
            ("objectType", "cert"),
            ("objectAlias", &format!("{name}.crt")),
        ]),
        object(&[
            ("objectName", name),
            ("objectType", "secret"),
            ("objectAlias", &format!("{name}.pem")),
            ("filePermission", "0440"),
        ]),
        object(&[
            ("objectName", name),
            ("objectType", "secret"),
            ("objectFormat", "pfx"),
            ("objectAlias", &format!("{name}.pfx.b64")),
        ]),
        object(&[
            ("objectName", name),
            ("objectType", "key"),
            ("objectAlias", &format!("{name}.pub")),
        ]),
    ];
    if binary_pfx {
        views.push(binary_pfx_view(name));
    }
    views
}

fn binary_pfx_view(name: &str) -> String {
    object(&[
        ("objectName", name),
        ("objectType", "secret"),
        ("objectFormat", "pfx"),
        ("objectEncoding", "base64"),
        ("objectAlias", &format!("{name}.pfx")),
    ])
}

#[tokio::test]
async fn certificates_imported_as_pfx_read_every_way() {
    let env = Env::start().await;
    let pki = pki();
    let imports = [
        (
            "tls-rsa-legacy",
            &pki.rsa_leaf,
            pki.rsa_leaf.pfx_legacy.clone(),
            Some(PFX_PASSWORD),
        ),
        (
            "tls-rsa-aes256",
            &pki.rsa_leaf,
            pki.rsa_leaf.pfx_aes256.clone(),
            Some(PFX_PASSWORD),
        ),
        (
            "tls-rsa-plain",
            &pki.rsa_leaf,
            pki.rsa_leaf.pfx_unencrypted.clone(),
            None,
        ),
        (
            "tls-ec-aes256",
            &pki.ec_leaf,
            pki.ec_leaf.pfx_aes256.clone(),
            Some(PFX_PASSWORD),
        ),
        (
            "tls-ec-legacy",
            &pki.ec_leaf,
            pki.ec_leaf.pfx_legacy.clone(),
            Some(PFX_PASSWORD),
        ),
    ];
    let mut all = Vec::new();
    let mut versions = Vec::new();
    for (name, _, pfx, password) in &imports {
        let imported = env
            .emu
            .import_certificate(VAULT, name, CertificateImport::pfx(pfx.clone(), *password))
            .unwrap();
        versions.push(imported.version);
        all.extend(certificate_views(name, true));
    }
    let response = env.mount(&Mount::sp(&objects(&all))).await.unwrap();
    assert_eq!(response.files.len(), imports.len() * 5);

    for ((name, leaf, _, _), imported_version) in imports.iter().zip(&versions) {
        // objectType cert: the leaf alone, as `openssl x509` writes it.
        assert_eq!(
            text(&response, &format!("{name}.crt")),
            leaf.cert_pem,
            "{name}"
        );
        // objectType secret: PKCS#8 key, then leaf → intermediate → root (the PFX had them shuffled).
        let pem = file(&response, &format!("{name}.pem"));
        assert_eq!(
            String::from_utf8(pem.contents.clone()).unwrap(),
            leaf.full_chain_pem,
            "{name}"
        );
        assert_eq!(pem.mode, 0o440);
        // objectFormat pfx: Key Vault's base64 PFX text as stored; with objectEncoding base64 the
        // binary PFX, which openssl opens with an empty password and finds the same key and chain.
        let pfx_text = text(&response, &format!("{name}.pfx.b64"));
        let pfx = &file(&response, &format!("{name}.pfx")).contents;
        assert_eq!(STANDARD.decode(pfx_text.trim()).unwrap(), *pfx, "{name}");
        let (key, certs) = read_pfx(pfx);
        assert_eq!(key, leaf.key_pkcs8_pem, "{name}");
        assert_eq!(
            certs.first(),
            Some(&leaf.cert_pem),
            "{name}: the leaf comes first"
        );
        let mut chain = certs[1..].to_vec();
        chain.sort();
        let mut want = vec![pki.intermediate_pem.clone(), pki.root_pem.clone()];
        want.sort();
        assert_eq!(chain, want, "{name}");
        // objectType key: the certificate's public key.
        assert_eq!(
            text(&response, &format!("{name}.pub")),
            leaf.public_pem,
            "{name}"
        );
        // Certificate, secret and key share the version of the import.
        for kind in ["cert", "secret", "key"] {
            assert_eq!(
                version(&response, &format!("{kind}/{name}")),
                imported_version,
                "{kind}/{name}"
            );
        }
    }
}

#[tokio::test]
async fn certificates_imported_as_pem_are_served_as_stored() {
    let env = Env::start().await;
    let pki = pki();
    let mut all = Vec::new();
    for (name, leaf) in [("pem-rsa", &pki.rsa_leaf), ("pem-ec", &pki.ec_leaf)] {
        // Root, leaf, key, intermediate: the import puts them in order.
        env.emu
            .import_certificate(
                VAULT,
                name,
                CertificateImport::pem(&leaf.shuffled_bundle_pem),
            )
            .unwrap();
        all.extend(certificate_views(name, false));
    }
    let response = env.mount(&Mount::sp(&objects(&all))).await.unwrap();
    assert_eq!(response.files.len(), 8);
    for (name, leaf) in [("pem-rsa", &pki.rsa_leaf), ("pem-ec", &pki.ec_leaf)] {
        assert_eq!(
            text(&response, &format!("{name}.crt")),
            leaf.cert_pem,
            "{name}"
        );
        // The secret is written as stored: the key and the chain in order. (How the store separates
        // the blocks is its business, so blank lines between them are not compared.)
        let stored = text(&response, &format!("{name}.pem"));
        assert_eq!(without_blank_lines(&stored), leaf.full_chain_pem, "{name}");
        // A PEM-backed secret has no PFX to give: objectFormat pfx writes the same PEM.
        assert_eq!(
            text(&response, &format!("{name}.pfx.b64")),
            stored,
            "{name}"
        );
        assert_eq!(
            text(&response, &format!("{name}.pub")),
            leaf.public_pem,
            "{name}"
        );
    }
    // …and decoding that PEM text as base64 fails, naming the object and the encoding.
    let binary = objects(&[binary_pfx_view("pem-ec")]);
    expect_error(
        env.mount(&Mount::sp(&binary)).await,
        ErrorKind::InvalidParameters,
        &["secret/pem-ec", "base64"],
    );
}

fn without_blank_lines(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}
