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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrets_store_azure_core::der::{self, DerError, oids};
use secrets_store_azure_core::keys::{KeyError, normalize_pkcs8};
use secrets_store_azure_core::pem;
use secrets_store_azure_core::pkcs12::{self, Pkcs12Error};

/// The Secret type whose values are cut from certificates.
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";
/// Key of a TLS Secret holding the certificates.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Key of a TLS Secret holding the private key.
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";

const LABEL_RSA_PRIVATE_KEY: &str = "RSA PRIVATE KEY";
const LABEL_EC_PRIVATE_KEY: &str = "EC PRIVATE KEY";

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
        error: Pkcs12Error,
        /// Advice when the content looks like base64 text.
        hint: &'static str,
    },
    /// The private key cannot be parsed or re-encoded.
    #[error("the private key cannot be used: {0}")]
    Key(#[from] KeyError),
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
    let blocks = pem_blocks(content);
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
        pem::encode_into(&mut out, pem::CERTIFICATE, der);
    }
    Ok(out.into_bytes())
}

/// `tls.key`: the object's private key (the last one, when it holds several, as upstream) as
/// `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1).
pub fn private_key(content: &[u8]) -> Result<Vec<u8>, TlsError> {
    let blocks = pem_blocks(content);
    let pkcs8 = if blocks.is_empty() {
        let pfx = decode_pfx(content)?;
        let key = pfx.private_keys.last().ok_or(TlsError::PfxNoPrivateKey)?;
        normalize_pkcs8(key)?
    } else {
        let block = blocks
            .iter()
            .rev()
            .find(|b| b.label.ends_with("PRIVATE KEY"))
            .ok_or(TlsError::NoPrivateKey)?;
        if block.encrypted || block.label == "ENCRYPTED PRIVATE KEY" {
            return Err(TlsError::EncryptedKey);
        }
        any_key_to_pkcs8(&block.der)?
    };
    let (label, der) = traditional(&pkcs8)?;
    Ok(pem::encode(label, &der).into_bytes())
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

/// Any of the three unencrypted private key encodings (PKCS#8, PKCS#1, SEC1), told apart by their
/// structure as Go's parsers tell them apart (the PEM label is not trusted, as upstream ignores
/// it), normalised to the PKCS#8 form Go writes.
fn any_key_to_pkcs8(key: &[u8]) -> Result<Vec<u8>, TlsError> {
    let outer =
        der::parse_single(key)?.expect(der::TAG_SEQUENCE, "private key is not a SEQUENCE")?;
    let mut fields = outer.children()?;
    fields.read("missing private key version")?;
    let second = fields.read("private key has only a version")?;
    let wrapped = match second.tag {
        // PrivateKeyInfo: version, AlgorithmIdentifier, ...
        der::TAG_SEQUENCE => return Ok(normalize_pkcs8(key)?),
        // RSAPrivateKey: version, modulus, ...
        der::TAG_INTEGER => {
            let algorithm = der::sequence(&[&der::oid(oids::RSA_ENCRYPTION), &der::null()]);
            der::sequence(&[&der::small_integer(0), &algorithm, &der::octet_string(key)])
        }
        // ECPrivateKey: version, privateKey OCTET STRING, [0] parameters, [1] publicKey. The
        // algorithm carries no curve, so the key's own [0] parameters name it.
        der::TAG_OCTET_STRING => {
            let algorithm = der::sequence(&[&der::oid(oids::EC_PUBLIC_KEY)]);
            der::sequence(&[&der::small_integer(0), &algorithm, &der::octet_string(key)])
        }
        _ => {
            return Err(DerError("not a PKCS#8, PKCS#1 or SEC1 private key").into());
        }
    };
    Ok(normalize_pkcs8(&wrapped)?)
}

/// The PKCS#1 or SEC1 encoding inside a normalised PKCS#8 key, with the label it is written under.
/// SEC1 gets the named-curve parameters, which PKCS#8 keeps outside the inner key.
fn traditional(pkcs8: &[u8]) -> Result<(&'static str, Vec<u8>), TlsError> {
    let info =
        der::parse_single(pkcs8)?.expect(der::TAG_SEQUENCE, "PrivateKeyInfo is not a SEQUENCE")?;
    let mut fields = info.children()?;
    fields.read("missing PrivateKeyInfo version")?;
    let algorithm = fields
        .read("missing private key algorithm")?
        .expect(der::TAG_SEQUENCE, "bad private key algorithm")?;
    let mut algorithm_fields = algorithm.children()?;
    let algorithm_oid = algorithm_fields.read("missing algorithm OID")?.oid()?;
    let inner = fields
        .read("missing private key")?
        .expect(der::TAG_OCTET_STRING, "private key is not an OCTET STRING")?
        .content;
    match algorithm_oid {
        oids::RSA_ENCRYPTION => Ok((LABEL_RSA_PRIVATE_KEY, inner.to_vec())),
        oids::EC_PUBLIC_KEY => {
            let curve = algorithm_fields.read("missing named curve")?.oid()?;
            let ec = der::parse_single(inner)?
                .expect(der::TAG_SEQUENCE, "ECPrivateKey is not a SEQUENCE")?;
            let mut ec_fields = ec.children()?;
            let version = ec_fields.read("missing ECPrivateKey version")?;
            let scalar = ec_fields.read("missing EC private key")?.expect(
                der::TAG_OCTET_STRING,
                "EC private key is not an OCTET STRING",
            )?;
            let public = ec_fields
                .read_optional(0xa1)?
                .ok_or(DerError("missing EC public key"))?;
            let sec1 = der::sequence(&[
                &der::encode(version.tag, version.content),
                &der::octet_string(scalar.content),
                &der::encode(0xa0, &der::oid(curve)),
                &der::encode(0xa1, public.content),
            ]);
            Ok((LABEL_EC_PRIVATE_KEY, sec1))
        }
        other => Err(KeyError::UnsupportedAlgorithm(der::oid_to_string(other)).into()),
    }
}

/// One decoded PEM block.
struct PemBlock {
    label: String,
    /// Whether RFC 1421 headers mark it encrypted (`Proc-Type: 4,ENCRYPTED`).
    encrypted: bool,
    der: Vec<u8>,
}

/// The PEM blocks of `data`, in order, read the way Go's `pem.Decode` reads them: text around and
/// between blocks is ignored, headers are skipped, and a block whose END line is missing or does
/// not match, or whose body is not base64, is ignored.
fn pem_blocks(data: &[u8]) -> Vec<PemBlock> {
    let lines: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .map(|line| line.trim_ascii_end())
        .collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(label) = lines[i]
            .strip_prefix(b"-----BEGIN ")
            .and_then(|rest| rest.strip_suffix(b"-----"))
        else {
            i += 1;
            continue;
        };
        let end_line = [b"-----END ".as_slice(), label, b"-----"].concat();
        let Some(end) = lines[i + 1..]
            .iter()
            .position(|l| *l == end_line.as_slice())
        else {
            // No END for this BEGIN: look for another BEGIN further on.
            i += 1;
            continue;
        };
        let body = &lines[i + 1..i + 1 + end];
        i += end + 2;

        // Headers are `Name: value` lines before the base64, ended by an empty line.
        let header_count = body.iter().take_while(|l| l.contains(&b':')).count();
        let encrypted = body[..header_count]
            .iter()
            .any(|l| l.starts_with(b"Proc-Type:") && l.ends_with(b"ENCRYPTED"));
        let text: Vec<u8> = body[header_count..]
            .iter()
            .flat_map(|l| l.iter().copied())
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let (Ok(label), Ok(der)) = (std::str::from_utf8(label), STANDARD.decode(&text)) else {
            continue;
        };
        blocks.push(PemBlock {
            label: label.to_string(),
            encrypted,
            der,
        });
    }
    blocks
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block(label: &str, der: &[u8]) -> String {
        pem::encode(label, der)
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
    fn pem_reader_skips_text_headers_and_broken_blocks() {
        let cert = block("CERTIFICATE", b"cert-one");
        let text = format!(
            "leading text\r\n{cert}-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\nAAAA\n-----END OTHER-----\n\
             -----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"
        );
        let blocks = pem_blocks(text.as_bytes());
        let labels: Vec<_> = blocks.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["CERTIFICATE", "RSA PRIVATE KEY"]);
        assert_eq!(blocks[0].der, b"cert-one");
        assert!(blocks[1].encrypted);
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
