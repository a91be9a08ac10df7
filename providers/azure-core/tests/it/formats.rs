//! Output bytes checked against the `openssl` CLI: keys, certificates and chains are generated at
//! test time, PFX files are built with `openssl pkcs12 -export` in every encryption, and the
//! expected PEM comes from `openssl pkey` / `openssl x509` in upstream's order (keys, then leaf →
//! intermediate → root).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrets_store_azure_core::content::pfx_to_pem;
use secrets_store_azure_core::{ErrorKind, mount};
use secrets_store_pki::keys::normalize_pkcs8;
use secrets_store_pki::pem;
use secrets_store_pki::pkcs12::{self, Pkcs12Error};
use serde_json::json;

use crate::openssl::{Ca, run as openssl};

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

/// The PFX encodings exercised for every leaf.
const PFX_VARIANTS: &[(&str, &[&str])] = &[
    ("aes256-sha256mac", &[]),
    ("legacy-rc2-3des-sha1mac", &["-legacy"]),
    ("unencrypted", &["-keypbe", "NONE", "-certpbe", "NONE"]),
    (
        "aes128-sha1mac",
        &[
            "-keypbe",
            "AES-128-CBC",
            "-certpbe",
            "AES-128-CBC",
            "-macalg",
            "sha1",
        ],
    ),
    (
        "aes192-sha512mac",
        &[
            "-keypbe",
            "AES-192-CBC",
            "-certpbe",
            "AES-192-CBC",
            "-macalg",
            "sha512",
        ],
    ),
    (
        "3des-both",
        &["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES"],
    ),
    (
        "rc2-128-certs",
        &["-legacy", "-certpbe", "PBE-SHA1-RC2-128"],
    ),
    ("no-mac", &["-nomac"]),
];

struct Leaf {
    name: &'static str,
    key_path: PathBuf,
    cert_path: PathBuf,
    /// `openssl pkey` (PKCS#8) + leaf + intermediate + root, as upstream writes a PFX.
    expected_pem: String,
    /// PFX files by variant name.
    pfx: Vec<(&'static str, Vec<u8>)>,
}

struct Fixtures {
    dir: tempfile::TempDir,
    root_pem: String,
    intermediate_pem: String,
    leaves: Vec<Leaf>,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(build_fixtures)
}

fn build_fixtures() -> Fixtures {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "root.key",
        ],
    );
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            "int.key",
        ],
    );
    let ca = Ca::issue(
        d,
        ("root.key", "Test Root"),
        ("int.key", "Test Intermediate"),
        3650,
    );
    let (root_pem, intermediate_pem) = (ca.root_pem.clone(), ca.intermediate_pem.clone());
    // The chain file lists the root before the intermediate, so the PFX holds leaf, root, intermediate.
    std::fs::write(d.join("chain.pem"), format!("{root_pem}{intermediate_pem}")).unwrap();

    let mut leaves = Vec::new();
    for (name, keygen) in [
        (
            "rsa2048",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
        ),
        (
            "p256",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
        (
            "p384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
        ),
        (
            "p521",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"][..],
        ),
    ] {
        let key = format!("{name}.key");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(keygen);
        args.extend_from_slice(&["-out", &key]);
        openssl(d, &args);
        let cert = ca.leaf(&key, &format!("{name}.example.com"), 3, 365);
        let expected_pem = format!(
            "{}{}{intermediate_pem}{root_pem}",
            text(openssl(d, &["pkey", "-in", &key])),
            text(openssl(d, &["x509", "-in", &cert]))
        );
        let mut pfx = Vec::new();
        for (variant, extra) in PFX_VARIANTS {
            let out = format!("{name}-{variant}.pfx");
            let mut args = vec![
                "pkcs12",
                "-export",
                "-inkey",
                &key,
                "-in",
                &cert,
                "-certfile",
                "chain.pem",
                "-passout",
                "pass:",
                "-out",
                &out,
            ];
            args.extend_from_slice(extra);
            openssl(d, &args);
            pfx.push((*variant, std::fs::read(d.join(&out)).unwrap()));
        }
        leaves.push(Leaf {
            name,
            key_path: d.join(&key),
            cert_path: d.join(&cert),
            expected_pem,
            pfx,
        });
    }
    Fixtures {
        dir,
        root_pem,
        intermediate_pem,
        leaves,
    }
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[test]
fn pfx_to_pem_matches_openssl_for_every_encryption_and_key_type() {
    let f = fixtures();
    for leaf in &f.leaves {
        for (variant, pfx) in &leaf.pfx {
            let pem =
                pfx_to_pem(&b64(pfx)).unwrap_or_else(|e| panic!("{} {variant}: {e}", leaf.name));
            assert_eq!(pem, leaf.expected_pem, "{} {variant}", leaf.name);
        }
    }
}

#[test]
fn pfx_base64_with_line_breaks_is_accepted_like_go() {
    let f = fixtures();
    let leaf = &f.leaves[0];
    let wrapped: String = b64(&leaf.pfx[0].1)
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect();
    assert_eq!(pfx_to_pem(&wrapped).unwrap(), leaf.expected_pem);
}

#[test]
fn certificate_only_pfx_is_ordered_leaf_to_root() {
    let f = fixtures();
    let d = f.dir.path();
    let leaf_pem = text(openssl(
        d,
        &["x509", "-in", f.leaves[1].cert_path.to_str().unwrap()],
    ));
    std::fs::write(
        d.join("shuffled.pem"),
        format!("{}{leaf_pem}{}", f.intermediate_pem, f.root_pem),
    )
    .unwrap();
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-nokeys",
            "-in",
            "shuffled.pem",
            "-passout",
            "pass:",
            "-out",
            "certs-only.pfx",
        ],
    );
    let pfx = std::fs::read(d.join("certs-only.pfx")).unwrap();
    assert_eq!(
        pfx_to_pem(&b64(&pfx)).unwrap(),
        format!("{leaf_pem}{}{}", f.intermediate_pem, f.root_pem)
    );
}

#[test]
fn incomplete_chain_keeps_the_original_order() {
    let f = fixtures();
    let d = f.dir.path();
    let leaf_pem = text(openssl(
        d,
        &["x509", "-in", f.leaves[0].cert_path.to_str().unwrap()],
    ));
    // No intermediate: the leaf's issuer is missing. Upstream would write only part of this.
    std::fs::write(d.join("broken.pem"), format!("{}{leaf_pem}", f.root_pem)).unwrap();
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-nokeys",
            "-in",
            "broken.pem",
            "-passout",
            "pass:",
            "-out",
            "broken.pfx",
        ],
    );
    let pfx = std::fs::read(d.join("broken.pfx")).unwrap();
    assert_eq!(
        pfx_to_pem(&b64(&pfx)).unwrap(),
        format!("{}{leaf_pem}", f.root_pem)
    );
}

#[test]
fn pfx_with_a_password_is_refused() {
    let f = fixtures();
    let d = f.dir.path();
    let key = f.leaves[1].key_path.to_str().unwrap();
    let cert = f.leaves[1].cert_path.to_str().unwrap();
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            key,
            "-in",
            cert,
            "-passout",
            "pass:hunter2",
            "-out",
            "pw.pfx",
        ],
    );
    let pfx = std::fs::read(d.join("pw.pfx")).unwrap();
    assert_eq!(pkcs12::decode(&pfx), Err(Pkcs12Error::MacMismatch));
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-nomac",
            "-inkey",
            key,
            "-in",
            cert,
            "-passout",
            "pass:hunter2",
            "-out",
            "pw-nomac.pfx",
        ],
    );
    let pfx = std::fs::read(d.join("pw-nomac.pfx")).unwrap();
    assert_eq!(pkcs12::decode(&pfx), Err(Pkcs12Error::Decrypt));
}

/// (tag, header length, content length) of the DER element at the start of `data`.
fn tlv(data: &[u8]) -> (u8, usize, usize) {
    let first = data[1];
    if first < 0x80 {
        return (data[0], 2, usize::from(first));
    }
    let count = usize::from(first & 0x7f);
    let len = data[2..2 + count]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    (data[0], 2 + count, len)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

#[test]
fn both_empty_password_encodings_verify() {
    // OpenSSL MACs an empty password as the BMP terminator (00 00); other tools use no bytes at
    // all. Build the second kind: an unencrypted PFX without MAC, then a MAC computed by OpenSSL's
    // PKCS12KDF over an empty password.
    let f = fixtures();
    let d = f.dir.path();
    let key = f.leaves[1].key_path.to_str().unwrap();
    let cert = f.leaves[1].cert_path.to_str().unwrap();
    openssl(
        d,
        &[
            "pkcs12", "-export", "-keypbe", "NONE", "-certpbe", "NONE", "-nomac", "-inkey", key,
            "-in", cert, "-passout", "pass:", "-out", "bare.pfx",
        ],
    );
    let bare = std::fs::read(d.join("bare.pfx")).unwrap();
    let (_, header, _) = tlv(&bare);
    let body = &bare[header..];
    let (_, version_header, version_len) = tlv(body);
    let auth_safe = &body[version_header + version_len..];
    // ContentInfo { OID data, [0] { OCTET STRING auth_bytes } }
    let (_, ci_header, _) = tlv(auth_safe);
    let oid_start = &auth_safe[ci_header..];
    let (_, oid_header, oid_len) = tlv(oid_start);
    let explicit = &oid_start[oid_header + oid_len..];
    let (_, explicit_header, _) = tlv(explicit);
    let octets = &explicit[explicit_header..];
    let (_, octets_header, octets_len) = tlv(octets);
    let auth_bytes = &octets[octets_header..octets_header + octets_len];
    std::fs::write(d.join("auth.bin"), auth_bytes).unwrap();

    for (password, should_verify) in [("", true), ("0000", true), ("0061", false)] {
        let salt = "0102030405060708";
        let mac_key = text(openssl(
            d,
            &[
                "kdf",
                "-keylen",
                "32",
                "-kdfopt",
                "digest:SHA256",
                "-kdfopt",
                &format!("hexpass:{password}"),
                "-kdfopt",
                &format!("hexsalt:{salt}"),
                "-kdfopt",
                "iter:2048",
                "-kdfopt",
                "id:3",
                "PKCS12KDF",
            ],
        ))
        .trim()
        .replace(':', "");
        let mac = text(openssl(
            d,
            &[
                "mac",
                "-digest",
                "SHA256",
                "-macopt",
                &format!("hexkey:{mac_key}"),
                "-in",
                "auth.bin",
                "HMAC",
            ],
        ))
        .trim()
        .to_string();
        let digest_info = der(
            0x30,
            &[
                der(
                    0x30,
                    &[
                        der(
                            0x06,
                            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
                        ),
                        vec![0x05, 0x00],
                    ]
                    .concat(),
                ),
                der(0x04, &hex::decode(mac).unwrap()),
            ]
            .concat(),
        );
        let mac_data = der(
            0x30,
            &[
                digest_info,
                der(0x04, &hex::decode(salt).unwrap()),
                der(0x02, &[0x08, 0x00]),
            ]
            .concat(),
        );
        let pfx = der(0x30, &[body, &mac_data].concat());
        match pkcs12::decode(&pfx) {
            Ok(decoded) => {
                assert!(should_verify, "password {password:?} must not verify");
                assert_eq!(decoded.certificates.len(), 1);
                assert_eq!(decoded.private_keys.len(), 1);
            }
            Err(e) => {
                assert!(!should_verify, "password {password:?}: {e}");
                assert_eq!(e, Pkcs12Error::MacMismatch);
            }
        }
    }
}

fn scalar_hex(dir: &Path, key: &Path) -> String {
    // `openssl pkey -text` prints "priv:" followed by colon-separated hex lines.
    let dump = text(openssl(
        dir,
        &["pkey", "-in", key.to_str().unwrap(), "-noout", "-text"],
    ));
    let mut hex = String::new();
    let mut inside = false;
    for line in dump.lines() {
        if line.starts_with("priv:") {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with(' ') {
                break;
            }
            hex.push_str(&line.trim().replace(':', ""));
        }
    }
    hex
}

#[test]
fn ec_keys_without_a_public_point_get_one_computed() {
    // Java and some HSM exports omit the optional public key of ECPrivateKey; Go recomputes it.
    let f = fixtures();
    let d = f.dir.path();
    for (leaf, curve) in [
        (&f.leaves[1], "prime256v1"),
        (&f.leaves[2], "secp384r1"),
        (&f.leaves[3], "secp521r1"),
    ] {
        let scalar = scalar_hex(d, &leaf.key_path);
        let config = format!(
            "asn1=SEQUENCE:pk8\n[pk8]\nversion=INTEGER:0\nalg=SEQUENCE:alg\nkey=OCTWRAP,SEQUENCE:ec\n[alg]\noid=OID:id-ecPublicKey\ncurve=OID:{curve}\n[ec]\nversion=INTEGER:1\npriv=FORMAT:HEX,OCTETSTRING:{scalar}\n"
        );
        let conf = format!("{}-nopub.cnf", leaf.name);
        let out = format!("{}-nopub.der", leaf.name);
        std::fs::write(d.join(&conf), config).unwrap();
        openssl(d, &["asn1parse", "-genconf", &conf, "-out", &out, "-noout"]);
        // OpenSSL keeps the point out when re-encoding this file; Go (upstream) writes it, which is
        // what `openssl pkey` prints for the original key.
        let ours = pem::encode(
            pem::PRIVATE_KEY,
            &normalize_pkcs8(&std::fs::read(d.join(&out)).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            ours,
            text(openssl(
                d,
                &["pkey", "-in", leaf.key_path.to_str().unwrap()]
            )),
            "{}",
            leaf.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// through mount

fn mount_one(host: &FakeHost, object_yaml_extra: &[(&str, &str, &str)]) -> Vec<Vec<u8>> {
    let response =
        mount(host, &sp_request(&objects(object_yaml_extra))).unwrap_or_else(|e| panic!("{e}"));
    response.files.into_iter().map(|f| f.contents).collect()
}

#[test]
fn certificate_backed_secrets_as_pem_and_pfx() {
    let f = fixtures();
    let host = FakeHost::default();
    for leaf in &f.leaves {
        let (_, pfx) = &leaf.pfx[0];
        host.azure.borrow_mut().add(
            "secrets",
            leaf.name,
            "v1",
            json!({"value": b64(pfx), "contentType": "application/x-pkcs12", "kid": format!("https://kv1.vault.azure.net/keys/{}/v1", leaf.name)}),
            1,
        );
    }
    for leaf in &f.leaves {
        let pfx = &leaf.pfx[0].1;
        let files = mount_one(
            &host,
            &[
                (leaf.name, "secret", ""),
                (
                    leaf.name,
                    "secret",
                    "objectAlias: as-pfx\nobjectFormat: pfx",
                ),
                (
                    leaf.name,
                    "secret",
                    "objectAlias: as-pfx-binary\nobjectFormat: PFX\nobjectEncoding: base64",
                ),
            ],
        );
        assert_eq!(
            String::from_utf8(files[0].clone()).unwrap(),
            leaf.expected_pem,
            "{}",
            leaf.name
        );
        assert_eq!(files[1], b64(pfx).into_bytes(), "{}", leaf.name);
        assert_eq!(&files[2], pfx, "{}", leaf.name);
    }
    // A PEM conversion cannot then be base64-decoded (as upstream).
    let e = mount(
        &host,
        &sp_request(&objects(&[("p256", "secret", "objectEncoding: base64")])),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameters);
    assert!(
        e.message.contains("illegal base64 data at input byte 0"),
        "{e}"
    );
}

#[test]
fn keys_are_written_as_pkix_public_keys() {
    let f = fixtures();
    let d = f.dir.path();
    let host = FakeHost::default();
    let mut expected = Vec::new();
    let mut items = Vec::new();
    for (i, leaf) in f.leaves.iter().enumerate() {
        let key = leaf.key_path.to_str().unwrap();
        let jwk = if leaf.name == "rsa2048" {
            let modulus = text(openssl(d, &["rsa", "-in", key, "-noout", "-modulus"]));
            let n = hex::decode(modulus.trim().strip_prefix("Modulus=").unwrap()).unwrap();
            json!({"kty": if i % 2 == 0 { "RSA" } else { "RSA-HSM" }, "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB", "key_ops": ["sign"]})
        } else {
            let spki = openssl(d, &["pkey", "-in", key, "-pubout", "-outform", "DER"]);
            let size = match leaf.name {
                "p256" => 32,
                "p384" => 48,
                _ => 66,
            };
            let point = &spki[spki.len() - (1 + 2 * size)..];
            assert_eq!(point[0], 4);
            let crv = format!("P-{}", &leaf.name[1..]);
            json!({"kty": if i % 2 == 0 { "EC" } else { "EC-HSM" }, "crv": crv,
                   "x": URL_SAFE_NO_PAD.encode(&point[1..=size]), "y": URL_SAFE_NO_PAD.encode(&point[1 + size..])})
        };
        host.azure.borrow_mut().add(
            "keys",
            leaf.name,
            "kv-version",
            json!({"key": jwk, "attributes": {"enabled": true}}),
            1,
        );
        expected.push(openssl(d, &["pkey", "-in", key, "-pubout"]));
        items.push((leaf.name, "key", ""));
    }
    let response = mount(&host, &sp_request(&objects(&items))).unwrap();
    for ((file, expected), leaf) in response.files.iter().zip(&expected).zip(&f.leaves) {
        assert_eq!(&file.contents, expected, "{}", leaf.name);
    }
    assert_eq!(response.object_versions[0].id, "key/rsa2048");
    assert_eq!(response.object_versions[0].version, "kv-version");
}

#[test]
fn certificates_are_written_as_pem() {
    let f = fixtures();
    let d = f.dir.path();
    let host = FakeHost::default();
    for leaf in &f.leaves {
        let der = openssl(
            d,
            &[
                "x509",
                "-in",
                leaf.cert_path.to_str().unwrap(),
                "-outform",
                "DER",
            ],
        );
        host.azure.borrow_mut().add(
            "certificates",
            leaf.name,
            "c1",
            json!({"cer": b64(&der), "x5t": "x", "kid": "k", "sid": "s"}),
            1,
        );
    }
    let items: Vec<(&str, &str, &str)> = f.leaves.iter().map(|l| (l.name, "cert", "")).collect();
    let response = mount(&host, &sp_request(&objects(&items))).unwrap();
    for (file, leaf) in response.files.iter().zip(&f.leaves) {
        assert_eq!(
            file.contents,
            openssl(d, &["x509", "-in", leaf.cert_path.to_str().unwrap()]),
            "{}",
            leaf.name
        );
    }
    assert_eq!(response.object_versions[0].id, "cert/rsa2048");
    assert_eq!(response.object_versions[0].version, "c1");
}

#[test]
fn secret_encodings_match_openssl() {
    let f = fixtures();
    let d = f.dir.path();
    openssl(d, &["rand", "-out", "random.bin", "700"]);
    let raw = std::fs::read(d.join("random.bin")).unwrap();
    // openssl base64 wraps at 64 columns; Go (and this provider) skip the line breaks.
    let wrapped = text(openssl(d, &["base64", "-in", "random.bin"]));
    let single = text(openssl(d, &["base64", "-A", "-in", "random.bin"]));
    let host = FakeHost::default();
    host.azure.borrow_mut().add_secret("wrapped", "v", &wrapped);
    host.azure.borrow_mut().add_secret("single", "v", &single);
    host.azure
        .borrow_mut()
        .add_secret("hex", "v", &hex::encode(&raw));
    host.azure.borrow_mut().add_secret("text", "v", &single);
    let files = mount_one(
        &host,
        &[
            ("wrapped", "secret", "objectEncoding: base64"),
            ("single", "secret", "objectEncoding: Base64"),
            ("hex", "secret", "objectEncoding: hex"),
            ("text", "secret", ""),
        ],
    );
    assert_eq!(files[0], raw);
    assert_eq!(files[1], raw);
    assert_eq!(files[2], raw);
    assert_eq!(files[3], single.into_bytes());
}
