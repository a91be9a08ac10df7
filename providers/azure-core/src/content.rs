//! The bytes written for each object, identical to upstream's `getSecret`/`getKey`/
//! `getCertificate`, `decodePKCS12`, `fetchCertChains` and `getContentBytes`.

use secrets_store_pki::keys::{self, KeyError};
use secrets_store_pki::pem::{self, PemError};
use secrets_store_pki::pkcs12::{self, Pkcs12Error};
use secrets_store_pki::{der, x509};

use crate::encoding::{self, DecodeError};
use crate::keyvault::{CertificateBundle, JsonWebKey, SecretBundle};
use crate::params::{KeyVaultObject, ObjectEncoding};

pub const CONTENT_TYPE_PEM: &str = "application/x-pem-file";
pub const CONTENT_TYPE_PFX: &str = "application/x-pkcs12";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("failed to get certificate. unknown content type '{0}'")]
    UnknownContentType(String),
    #[error("the certificate's PFX is not valid base64 ({0})")]
    PfxBase64(#[source] DecodeError),
    #[error("{0}")]
    Pkcs12(#[from] Pkcs12Error),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("certificate {index} in the PFX cannot be parsed: {error}")]
    Certificate {
        index: usize,
        #[source]
        error: der::DerError,
    },
    #[error("failed to decode the secret value as {encoding}: {error}")]
    Encoding {
        encoding: &'static str,
        #[source]
        error: DecodeError,
    },
    #[error("{0}")]
    Pem(#[from] PemError),
    #[error("key is missing its '{0}' member")]
    KeyMember(&'static str),
}

/// Converts a base64 PFX (as Key Vault stores certificate secrets) to PEM: every private key as
/// PKCS#8 `PRIVATE KEY` in bag order, then the certificates ordered leaf → root.
pub fn pfx_to_pem(pfx_base64: &str) -> Result<String, ContentError> {
    let pfx = encoding::go_std_base64(pfx_base64).map_err(ContentError::PfxBase64)?;
    let decoded = pkcs12::decode(&pfx)?;
    let mut out = String::new();
    for key in &decoded.private_keys {
        pem::encode_into(&mut out, pem::PRIVATE_KEY, &keys::normalize_pkcs8(key)?)?;
    }
    let mut ids = Vec::with_capacity(decoded.certificates.len());
    for (index, cert) in decoded.certificates.iter().enumerate() {
        ids.push(x509::key_ids(cert).map_err(|error| ContentError::Certificate { index, error })?);
    }
    for index in x509::order_chain(&ids) {
        pem::encode_into(&mut out, pem::CERTIFICATE, &decoded.certificates[index])?;
    }
    Ok(out)
}

/// A secret's file content.
pub fn secret_content(
    bundle: &SecretBundle,
    object: &KeyVaultObject,
) -> Result<Vec<u8>, ContentError> {
    let value = bundle.value.as_deref().unwrap_or_default();
    let backs_certificate = bundle.kid.as_deref().is_some_and(|kid| !kid.is_empty());
    let converted;
    let content = if backs_certificate {
        match bundle.content_type.as_deref().unwrap_or_default() {
            CONTENT_TYPE_PEM => value,
            CONTENT_TYPE_PFX if object.pfx => value,
            CONTENT_TYPE_PFX => {
                converted = pfx_to_pem(value)?;
                converted.as_str()
            }
            other => return Err(ContentError::UnknownContentType(other.to_string())),
        }
    } else {
        value
    };
    decode_content(content, object.encoding)
}

/// upstream's `getContentBytes` for secrets.
pub fn decode_content(content: &str, encoding: ObjectEncoding) -> Result<Vec<u8>, ContentError> {
    match encoding {
        ObjectEncoding::Utf8 => Ok(content.as_bytes().to_vec()),
        ObjectEncoding::Base64 => {
            encoding::go_std_base64(content).map_err(|error| ContentError::Encoding {
                encoding: "base64",
                error,
            })
        }
        ObjectEncoding::Hex => encoding::go_hex(content).map_err(|error| ContentError::Encoding {
            encoding: "hex",
            error,
        }),
    }
}

/// A key's file content: its public half as PKIX `PUBLIC KEY` PEM.
pub fn key_content(key: &JsonWebKey) -> Result<Vec<u8>, ContentError> {
    let spki = match key.kty.as_str() {
        "RSA" | "RSA-HSM" => {
            let n = key.n.as_deref().ok_or(ContentError::KeyMember("n"))?;
            let e = key.e.as_deref().ok_or(ContentError::KeyMember("e"))?;
            keys::rsa_spki(n, e)?
        }
        "EC" | "EC-HSM" => {
            let crv = key.crv.as_deref().ok_or(ContentError::KeyMember("crv"))?;
            let x = key.x.as_deref().ok_or(ContentError::KeyMember("x"))?;
            let y = key.y.as_deref().ok_or(ContentError::KeyMember("y"))?;
            keys::ec_spki(crv, x, y)?
        }
        other => return Err(KeyError::UnsupportedKeyType(other.to_string()).into()),
    };
    Ok(pem::encode(pem::PUBLIC_KEY, &spki)?.into_bytes())
}

/// A certificate's file content: the certificate as `CERTIFICATE` PEM.
pub fn certificate_content(bundle: &CertificateBundle) -> Result<Vec<u8>, ContentError> {
    Ok(pem::encode(pem::CERTIFICATE, &bundle.cer)?.into_bytes())
}
