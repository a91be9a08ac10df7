//! The `tls.crt` and `tls.key` values of a synced `kubernetes.io/tls` Secret, cut from a mounted
//! object that holds a PEM bundle or a password-less PKCS#12 (PFX) file, as upstream's
//! `secretutil.GetCertPart` cuts them:
//!
//! - `tls.crt`: every certificate, in the order the object holds them (PEM: file order; PFX: bag
//!   order), each as a `CERTIFICATE` PEM block in Go's `encoding/pem` layout;
//! - `tls.key`: the (last) private key, re-encoded as Go's `x509.MarshalPKCS1PrivateKey`
//!   (`RSA PRIVATE KEY`) or `x509.MarshalECPrivateKey` (`EC PRIVATE KEY`: SEC1 with the named-curve
//!   parameters and the uncompressed public key) would, whatever the input encoding (PKCS#1, SEC1
//!   or PKCS#8).
//!
//! Where upstream goes wrong this module does not: a bundle without a key or certificate, an
//! encrypted or unknown key, and garbage are errors (upstream writes an empty `PRIVATE KEY` block
//! for some of them), and certificates from a PFX carry no PEM headers (upstream copies the PKCS#12
//! bag attributes `friendlyName`/`localKeyId` into headers, which OpenSSL refuses to read).
//!
//! Nothing here ever puts key or certificate bytes into an error.

use secrets_store_pki::der::DerError;
use secrets_store_pki::keys::{self, KeyError};
use secrets_store_pki::pem::{self, PemError};
use secrets_store_pki::pkcs12::{self, Pkcs12Error};

/// The Secret type whose values are cut from certificates.
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";
/// Key of a TLS Secret holding the certificates.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Key of a TLS Secret holding the private key.
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";

/// Why a TLS value could not be made from an object. The messages name what is wrong, never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A key other than `tls.crt` and `tls.key` was asked of a TLS Secret.
    #[error(
        "key {0:?} is not supported for a Secret of type kubernetes.io/tls: only \"tls.crt\" and \"tls.key\" are"
    )]
    UnsupportedKey(String),
    /// A PEM object without any `CERTIFICATE` block.
    #[error("the object is PEM but holds no CERTIFICATE block")]
    NoCertificate,
    /// A PEM object without a private key block.
    #[error(
        "the object is PEM but holds no private key block (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
    )]
    NoPrivateKey,
    /// The private key is encrypted with a passphrase.
    #[error("the private key is encrypted; only unencrypted keys can be synced")]
    EncryptedKey,
    /// A PFX without a certificate.
    #[error("the PKCS#12 (PFX) object holds no certificate")]
    PfxNoCertificate,
    /// A PFX without a private key.
    #[error("the PKCS#12 (PFX) object holds no private key")]
    PfxNoPrivateKey,
    /// Neither PEM nor a readable PFX.
    #[error("the object is neither PEM nor a password-less PKCS#12 (PFX) file ({error}){hint}")]
    NotPemOrPfx {
        /// Why the PFX decoder refused it.
        #[source]
        error: Pkcs12Error,
        /// Advice when the content looks like base64 text.
        hint: &'static str,
    },
    /// The private key cannot be parsed or re-encoded.
    #[error("the private key cannot be used: {0}")]
    Key(#[from] KeyError),
    /// The PEM output cannot be written (not expected: the labels are fixed).
    #[error(transparent)]
    Pem(#[from] PemError),
}

impl From<DerError> for TlsError {
    fn from(error: DerError) -> Self {
        TlsError::Key(KeyError::Malformed(error))
    }
}

/// The value of `key` (`tls.crt` or `tls.key`, surrounding whitespace ignored as upstream does) for
/// a TLS Secret filled from `content`.
pub fn tls_value(content: &[u8], key: &str) -> Result<Vec<u8>, TlsError> {
    match key.trim() {
        TLS_CERT_KEY => certificates(content),
        TLS_PRIVATE_KEY_KEY => private_key(content),
        other => Err(TlsError::UnsupportedKey(other.to_string())),
    }
}

/// `tls.crt`: the object's certificates, in the order it holds them, as `CERTIFICATE` PEM blocks.
pub fn certificates(content: &[u8]) -> Result<Vec<u8>, TlsError> {
    let blocks = pem::decode_blocks(content);
    let ders: Vec<Vec<u8>> = if blocks.is_empty() {
        let pfx = decode_pfx(content)?;
        if pfx.certificates.is_empty() {
            return Err(TlsError::PfxNoCertificate);
        }
        pfx.certificates
    } else {
        let certificates: Vec<Vec<u8>> = blocks
            .into_iter()
            .filter(|b| b.label == pem::CERTIFICATE)
            .map(|b| b.der)
            .collect();
        if certificates.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        certificates
    };
    let mut out = String::new();
    for der in &ders {
        pem::encode_into(&mut out, pem::CERTIFICATE, der)?;
    }
    Ok(out.into_bytes())
}

/// `tls.key`: the object's private key (the last one, when it holds several, as upstream) as
/// `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1).
pub fn private_key(content: &[u8]) -> Result<Vec<u8>, TlsError> {
    let blocks = pem::decode_blocks(content);
    let pkcs8 = if blocks.is_empty() {
        let pfx = decode_pfx(content)?;
        let key = pfx.private_keys.last().ok_or(TlsError::PfxNoPrivateKey)?;
        keys::normalize_pkcs8(key)?
    } else {
        let block = blocks
            .iter()
            .rev()
            .find(|b| b.label.ends_with("PRIVATE KEY"))
            .ok_or(TlsError::NoPrivateKey)?;
        if block.encrypted || block.label == pem::ENCRYPTED_PRIVATE_KEY {
            return Err(TlsError::EncryptedKey);
        }
        keys::any_to_pkcs8(&block.der)?
    };
    let (label, der) = keys::to_traditional(&pkcs8)?;
    Ok(pem::encode(label, &der)?.into_bytes())
}

fn decode_pfx(content: &[u8]) -> Result<pkcs12::Pfx, TlsError> {
    pkcs12::decode(content).map_err(|error| TlsError::NotPemOrPfx {
        error,
        hint: if looks_like_base64(content) {
            "; the content looks like base64 text: for a PFX object set objectEncoding to base64 \
             so that the mounted file holds the binary PFX"
        } else {
            ""
        },
    })
}

fn looks_like_base64(content: &[u8]) -> bool {
    content.iter().any(|b| !b.is_ascii_whitespace())
        && content
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=\r\n\t ".contains(b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block(label: &str, der: &[u8]) -> String {
        pem::encode(label, der).unwrap()
    }

    #[test]
    fn other_keys_are_refused_by_name() {
        let err = tls_value(b"", "ca.crt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "key \"ca.crt\" is not supported for a Secret of type kubernetes.io/tls: only \"tls.crt\" and \"tls.key\" are"
        );
        // Surrounding whitespace is ignored, as upstream trims keys.
        assert!(matches!(
            tls_value(b"", " tls.crt "),
            Err(TlsError::NotPemOrPfx { .. })
        ));
    }

    #[test]
    fn encrypted_pem_keys_are_refused() {
        let text = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(private_key(text.as_bytes()), Err(TlsError::EncryptedKey));
    }

    #[test]
    fn certificates_keep_file_order_and_drop_everything_else() {
        let text = format!(
            "{}{}{}",
            block("CERTIFICATE", b"second"),
            block("PRIVATE KEY", b"key"),
            block("CERTIFICATE", b"first")
        );
        let crt = certificates(text.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(crt).unwrap(),
            format!(
                "{}{}",
                block("CERTIFICATE", b"second"),
                block("CERTIFICATE", b"first")
            )
        );
    }

    #[test]
    fn incomplete_bundles_are_errors_not_empty_values() {
        let only_cert = block("CERTIFICATE", b"c");
        assert_eq!(
            private_key(only_cert.as_bytes()),
            Err(TlsError::NoPrivateKey)
        );
        let only_key = block("PRIVATE KEY", b"k");
        assert_eq!(
            certificates(only_key.as_bytes()),
            Err(TlsError::NoCertificate)
        );
        assert!(matches!(
            private_key(only_key.as_bytes()),
            Err(TlsError::Key(_))
        ));
        let encrypted = block("ENCRYPTED PRIVATE KEY", b"k");
        assert_eq!(
            private_key(encrypted.as_bytes()),
            Err(TlsError::EncryptedKey)
        );
    }

    #[test]
    fn garbage_is_neither_pem_nor_pfx_and_base64_text_gets_a_hint() {
        let err = certificates(&[0x30, 0x03, 0x02, 0x01, 0x03]).unwrap_err();
        assert!(
            matches!(&err, TlsError::NotPemOrPfx { hint: "", .. }),
            "{err:?}"
        );
        let err = private_key(b"MIIKcQIBAzCCCjcGCSqGSIb3DQEHAaCCCig=\n").unwrap_err();
        assert!(err.to_string().contains("objectEncoding"), "{err}");
    }

    #[test]
    fn unsupported_key_algorithms_are_named() {
        // An Ed25519 PKCS#8 key.
        let ed = hex::decode(
            "302e020100300506032b657004220420d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842",
        )
        .unwrap();
        let err = private_key(block("PRIVATE KEY", &ed).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("1.3.101.112"), "{err}");
    }
}
