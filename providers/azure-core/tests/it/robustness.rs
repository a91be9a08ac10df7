//! The public parsers (the fuzz targets' entry points) on mutated and random input: they must
//! return errors, never panic. Deterministic (a fixed xorshift seed), bounded in count.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use secrets_store_azure_core::{
    HostFileError, auth, challenge, cloud, content, encoding, keyvault, params, parse_retry_after,
    yaml,
};
use secrets_store_pki::{keys, pkcs12, x509};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A copy of `seed` with a few random edits: bit flips, byte changes, truncation,
    /// duplication of a slice, insertion of interesting bytes.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut data = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            if data.is_empty() {
                data.push(self.next() as u8);
                continue;
            }
            let at = self.below(data.len());
            match self.below(6) {
                0 => data[at] ^= 1 << self.below(8),
                1 => data[at] = [0x00, 0x80, 0xff, 0x7f, 0x30, 0x04, 0x81, 0x82][self.below(8)],
                2 => data.truncate(at),
                3 => {
                    let end = (at + self.below(16)).min(data.len());
                    let copy = data[at..end].to_vec();
                    data.splice(at..at, copy);
                }
                4 => data.insert(at, self.next() as u8),
                _ => {
                    data.remove(at);
                }
            }
        }
        data
    }
}

/// The shared oracle; these tests only need the files it writes.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    crate::openssl::run(dir, args);
}

#[test]
fn pkcs12_keys_and_certificates_never_panic() {
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
            "k.pem",
        ],
    );
    openssl(
        d,
        &[
            "req", "-x509", "-new", "-key", "k.pem", "-subj", "/CN=fuzz", "-days", "2", "-out",
            "c.pem",
        ],
    );
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-keypbe",
            "NONE",
            "-certpbe",
            "NONE",
            "-nomac",
            "-inkey",
            "k.pem",
            "-in",
            "c.pem",
            "-passout",
            "pass:",
            "-out",
            "plain.pfx",
        ],
    );
    openssl(
        d,
        &[
            "pkcs12", "-export", "-iter", "1", "-inkey", "k.pem", "-in", "c.pem", "-passout",
            "pass:", "-out", "aes.pfx",
        ],
    );
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-legacy",
            "-iter",
            "1",
            "-maciter",
            "-inkey",
            "k.pem",
            "-in",
            "c.pem",
            "-passout",
            "pass:",
            "-out",
            "legacy.pfx",
        ],
    );
    openssl(
        d,
        &["pkey", "-in", "k.pem", "-outform", "DER", "-out", "k.der"],
    );
    openssl(
        d,
        &["x509", "-in", "c.pem", "-outform", "DER", "-out", "c.der"],
    );
    let read = |name: &str| std::fs::read(d.join(name)).unwrap();
    let (plain, aes, legacy, key, cert) = (
        read("plain.pfx"),
        read("aes.pfx"),
        read("legacy.pfx"),
        read("k.der"),
        read("c.der"),
    );
    for pfx in [&plain, &aes, &legacy] {
        let decoded = pkcs12::decode(pfx).unwrap();
        assert_eq!(
            (decoded.private_keys.len(), decoded.certificates.len()),
            (1, 1)
        );
    }

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for i in 0..3000 {
        let seed = match i % 10 {
            0 => &aes,
            1 => &legacy,
            _ => &plain,
        };
        let input = rng.mutate(seed);
        if pkcs12::decode(&input).is_ok() {
            accepted += 1;
        }
        let _ = keys::normalize_pkcs8(&rng.mutate(&key));
        let _ = x509::key_ids(&rng.mutate(&cert));
    }
    // Most mutations must be caught (by the MAC, the padding or the structure).
    assert!(accepted < 2000, "{accepted}");
    for _ in 0..200 {
        let text: String = (0..rng.below(64))
            .map(|_| ['A', '/', '=', '\n', '*', 'z'][rng.below(6)])
            .collect();
        let _ = content::pfx_to_pem(&text);
    }
}

#[test]
fn text_parsers_never_panic() {
    let seeds: &[&str] = &[
        "array:\n  - |\n    objectName: a\n    objectType: secret\n    objectVersionHistory: 0x10\n    filePermission: \"0644\"\n  - |\n    objectName: b\n    objectType: key\n",
        "array: &a [*a]\n",
        "a: [1, {b: c}, 'd', \"e\\u00e9\"]\n--- !!str x\n",
        r#"Bearer authorization="https://login.windows.net/t", resource="https://vault.azure.net", scope="x\"y""#,
        r#"{"value":[{"id":"https://kv/secrets/s/a","attributes":{"enabled":true,"created":1.5e3}}],"nextLink":null}"#,
        r#"{"key":{"kid":"k","kty":"EC","crv":"P-256","x":"AQ","y":"Ag=="}}"#,
        r#"{"token":{"access_token":"a","expires_on":"12"},"clientid":"c","expires_in":-1}"#,
        r#"{"activeDirectoryEndpoint":"https://x/","keyVaultDNSSuffix":"v.example"}"#,
        r#"{"api://AzureADTokenExchange":{"token":"t","expirationTimestamp":"x"}}"#,
        "Sun, 06 Nov 1994 08:49:37 GMT",
    ];
    let mut rng = Rng(42);
    for round in 0..4000 {
        let seed = seeds[round % seeds.len()].as_bytes();
        let bytes = rng.mutate(seed);
        let text = String::from_utf8_lossy(&bytes);
        let _ = params::parse_objects(&text);
        let _ = yaml::parse(&text);
        let _ = challenge::parse_www_authenticate(&text);
        let _ = challenge::verify([text.as_ref()], "kv.vault.azure.net");
        let _ = keyvault::parse_secret(&bytes);
        let _ = keyvault::parse_key(&bytes);
        let _ = keyvault::parse_certificate(&bytes);
        let _ = keyvault::parse_version_page(&bytes);
        let _ = keyvault::parse_error(&bytes);
        let _ = keyvault::version_from_id(&text);
        let _ = auth::parse_token_response(&bytes, u64::MAX);
        let _ = auth::parse_nmi_response(&bytes);
        let _ = auth::parse_aad_error(&bytes);
        let _ = cloud::parse_environment_file(&bytes);
        let _ = cloud::select(&text);
        let _ = params::workload_identity_token(&text);
        let _ = params::normalize_file_name(&text);
        let _ = parse_retry_after(&text, u64::MAX);
        let _ = parse_retry_after(&text, 0);
        let _ = encoding::go_std_base64(&text);
        let _ = encoding::go_hex(&text);
    }
}

#[test]
fn parameter_parsing_never_panics() {
    let keys = [
        "keyvaultName",
        "tenantID",
        "tenantId",
        "cloudName",
        "cloudEnvFileName",
        "usePodIdentity",
        "useVMManagedIdentity",
        "userAssignedIdentityID",
        "clientID",
        "objects",
        "csi.storage.k8s.io/pod.name",
        "csi.storage.k8s.io/pod.namespace",
        "csi.storage.k8s.io/serviceAccount.tokens",
    ];
    let values = [
        "",
        " ",
        "true",
        "kv1",
        "AzureStackCloud",
        "x/y",
        "array:\n  - |\n    objectName: a\n    objectType: secret\n",
        "{}",
        "\u{0}",
    ];
    let mut rng = Rng(7);
    let read = |path: &str| -> Result<Vec<u8>, HostFileError> {
        if path.len().is_multiple_of(2) {
            Ok(path.as_bytes().to_vec())
        } else {
            Err(HostFileError("refused".to_string()))
        }
    };
    for _ in 0..3000 {
        let mut attributes = BTreeMap::new();
        for key in keys {
            if rng.below(3) > 0 {
                attributes.insert(key.to_string(), values[rng.below(values.len())].to_string());
            }
        }
        let mut secrets = BTreeMap::new();
        if rng.below(2) == 0 {
            secrets.insert(
                "ClientId".to_string(),
                values[rng.below(values.len())].to_string(),
            );
            secrets.insert(
                "clientSECRET".to_string(),
                values[rng.below(values.len())].to_string(),
            );
        }
        let _ = params::parse_parameters(&attributes, &secrets, &read);
    }
}
