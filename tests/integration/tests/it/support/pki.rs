//! Keys, certificates and PFX files made by the `openssl` CLI, and the bytes the provider must
//! write for them, also computed by `openssl` (never by the code under test).
//!
//! The private keys are fixtures in `tests/fixtures/` (made once with `openssl genpkey`, so no test
//! waits for RSA key generation); the certificates and PFX files are issued from them at test time:
//! a root CA (P-256), an intermediate CA (P-384), an RSA-2048 leaf and a P-256 leaf.
//!
//! The fixtures are throwaway test keys; to make new ones:
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048-key.pem` (and
//! `rsa2048-leaf.pem`), `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out
//! p256-key.pem` (and `p256-leaf.pem`, `root-ca.pem`; P-384: `p384-key.pem`,
//! `intermediate-ca.pem`; P-521: `p521-key.pem`).

use std::path::Path;
use std::sync::OnceLock;

use secrets_store_test_support::openssl::Ca;

use super::{openssl, openssl_text};

pub const PFX_PASSWORD: &str = "pfx-import-password";

/// A key object's fixture and its public key as `openssl pkey -pubout` writes it.
pub struct KeyFixture {
    pub name: &'static str,
    pub private_pem: String,
    pub public_pem: String,
}

/// A leaf certificate with its key, and its PFX files.
pub struct LeafFixture {
    /// `openssl pkey` of the key: PKCS#8 `PRIVATE KEY`.
    pub key_pkcs8_pem: String,
    pub public_pem: String,
    /// `openssl x509` of the leaf.
    pub cert_pem: String,
    /// Key, leaf, intermediate, root: upstream's PEM for a certificate-backed secret.
    pub full_chain_pem: String,
    /// PEM bundle to import, in a shuffled order (root, leaf, key, intermediate).
    pub shuffled_bundle_pem: String,
    /// `openssl pkcs12 -export -legacy` (RC2-40 certificates, 3DES key, SHA-1 MAC), password protected.
    pub pfx_legacy: Vec<u8>,
    /// `openssl pkcs12 -export` defaults (PBES2/AES-256-CBC, SHA-256 MAC), password protected.
    pub pfx_aes256: Vec<u8>,
    /// No encryption at all, empty password.
    pub pfx_unencrypted: Vec<u8>,
}

pub struct Pki {
    pub root_pem: String,
    pub intermediate_pem: String,
    pub rsa_leaf: LeafFixture,
    pub ec_leaf: LeafFixture,
    /// RSA 2048, EC P-256, P-384 and P-521 key objects.
    pub keys: Vec<KeyFixture>,
}

impl Pki {
    pub fn key(&self, name: &str) -> &KeyFixture {
        self.keys.iter().find(|k| k.name == name).unwrap()
    }
}

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Built once per test binary.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(build)
}

fn build() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in [
        "root-ca.pem",
        "intermediate-ca.pem",
        "rsa2048-leaf.pem",
        "p256-leaf.pem",
    ] {
        std::fs::write(d.join(name), fixture(name)).unwrap();
    }
    let ca = Ca::issue(
        d,
        ("root-ca.pem", "E2E Test Root CA"),
        ("intermediate-ca.pem", "E2E Test Intermediate CA"),
        3650,
    );
    let (root_pem, intermediate_pem) = (ca.root_pem.clone(), ca.intermediate_pem.clone());
    // Root before intermediate: the PFX files carry the chain out of order.
    std::fs::write(
        d.join("chain-shuffled.pem"),
        format!("{root_pem}{intermediate_pem}"),
    )
    .unwrap();

    let leaf = |key: &str, cn: &str, serial: u32| -> LeafFixture {
        let crt = ca.leaf(key, cn, serial, 825);
        let key_pkcs8_pem = openssl_text(d, &["pkey", "-in", key]);
        let cert_pem = openssl_text(d, &["x509", "-in", &crt]);
        let public_pem = openssl_text(d, &["pkey", "-in", key, "-pubout"]);
        let export = |out: &str, password: &str, extra: &[&str]| -> Vec<u8> {
            let passout = format!("pass:{password}");
            let mut args = vec![
                "pkcs12",
                "-export",
                "-inkey",
                key,
                "-in",
                &crt,
                "-certfile",
                "chain-shuffled.pem",
                "-passout",
                &passout,
                "-out",
                out,
            ];
            args.extend_from_slice(extra);
            openssl(d, &args);
            std::fs::read(d.join(out)).unwrap()
        };
        LeafFixture {
            full_chain_pem: format!("{key_pkcs8_pem}{cert_pem}{intermediate_pem}{root_pem}"),
            shuffled_bundle_pem: format!("{root_pem}{cert_pem}{key_pkcs8_pem}{intermediate_pem}"),
            pfx_legacy: export(&format!("{cn}-legacy.pfx"), PFX_PASSWORD, &["-legacy"]),
            pfx_aes256: export(&format!("{cn}-aes256.pfx"), PFX_PASSWORD, &[]),
            pfx_unencrypted: export(
                &format!("{cn}-plain.pfx"),
                "",
                &["-keypbe", "NONE", "-certpbe", "NONE", "-nomac"],
            ),
            key_pkcs8_pem,
            public_pem,
            cert_pem,
        }
    };
    let rsa_leaf = leaf("rsa2048-leaf.pem", "rsa-leaf.e2e.example", 3);
    let ec_leaf = leaf("p256-leaf.pem", "ec-leaf.e2e.example", 4);

    let keys = [
        ("rsa2048", "rsa2048-key.pem"),
        ("p256", "p256-key.pem"),
        ("p384", "p384-key.pem"),
        ("p521", "p521-key.pem"),
    ]
    .into_iter()
    .map(|(name, file)| {
        let private_pem = fixture(file);
        std::fs::write(d.join(file), &private_pem).unwrap();
        KeyFixture {
            name,
            public_pem: openssl_text(d, &["pkey", "-in", file, "-pubout"]),
            private_pem,
        }
    })
    .collect();
    Pki {
        root_pem,
        intermediate_pem,
        rsa_leaf,
        ec_leaf,
        keys,
    }
}

/// What `openssl pkcs12` reads from a PFX with an empty password: (private key as `openssl pkey`
/// writes it, certificates as `openssl x509` writes them, in file order).
pub fn read_pfx(pfx: &[u8]) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("in.pfx"), pfx).unwrap();
    // `-legacy` lets OpenSSL 3 read RC2-encrypted bags too; modern ones read either way.
    let keys = openssl_text(
        d,
        &[
            "pkcs12", "-legacy", "-in", "in.pfx", "-passin", "pass:", "-nocerts", "-nodes", "-out",
            "key.pem",
        ],
    );
    assert!(keys.is_empty());
    let key = openssl_text(d, &["pkey", "-in", "key.pem"]);
    openssl(
        d,
        &[
            "pkcs12",
            "-legacy",
            "-in",
            "in.pfx",
            "-passin",
            "pass:",
            "-nokeys",
            "-out",
            "certs.pem",
        ],
    );
    let bundle = std::fs::read_to_string(d.join("certs.pem")).unwrap();
    let mut certs = Vec::new();
    let mut rest = bundle.as_str();
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end = rest[start..].find("-----END CERTIFICATE-----").unwrap()
            + start
            + "-----END CERTIFICATE-----".len();
        std::fs::write(d.join("one.pem"), &rest[start..end]).unwrap();
        certs.push(openssl_text(d, &["x509", "-in", "one.pem"]));
        rest = &rest[end..];
    }
    (key, certs)
}
