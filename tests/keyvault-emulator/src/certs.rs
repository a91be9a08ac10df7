//! Certificate import as Key Vault does it: read a PFX (unencrypted, legacy PBE or PBES2) or a PEM
//! bundle, find the leaf that matches the private key, order the chain, describe the leaf for the
//! certificate policy, and re-export the backing secret as a password-less PFX or as PEM text.
//!
//! The service re-exports imported certificates with an empty password. Its PFX is the classic
//! Windows/legacy shape, which this module reproduces with the `p12` crate: the key in a
//! pkcs8ShroudedKeyBag under pbeWithSHAAnd3-KeyTripleDES-CBC, the certificates in an EncryptedData
//! under pbeWithSHAAnd40BitRC2-CBC, and a SHA-1 MAC (2048 iterations each).

use serde_json::{Value, json};
use x509_parser::prelude::*;

use crate::keys::{KeyMaterial, PublicKey, parse_private_der};
use crate::util::{b64std_decode, months_between};

pub const CONTENT_TYPE_PKCS12: &str = "application/x-pkcs12";
pub const CONTENT_TYPE_PEM: &str = "application/x-pem-file";

/// Messages the service answers a bad import with (400 BadParameter).
pub const PFX_UNREADABLE: &str = "The specified PKCS#12 X.509 certificate content can not be read. Please check if certificate is in valid PKCS#12 format.";
pub const PEM_UNREADABLE: &str = "The specified PEM X.509 certificate content is in an unexpected format. Please check if certificate is in valid PEM format.";
pub const PEM_NO_KEY: &str = "Private key is not specified in the specified X.509 PEM certificate content. Please specify private key in the X.509 PEM certificate.";
pub const PFX_NO_KEY: &str = "Private key is not specified in the specified PKCS#12 X.509 certificate content. Please specify private key in the PKCS#12 X.509 certificate.";
pub const NO_MATCHING_CERT: &str =
    "The specified X.509 certificate content does not contain a certificate for the private key.";

/// An imported certificate: the leaf, the rest of the chain in issuer order, and the private key.
#[derive(Clone)]
pub struct ParsedCertificate {
    pub leaf_der: Vec<u8>,
    pub chain_der: Vec<Vec<u8>>,
    pub key: KeyMaterial,
}

impl std::fmt::Debug for ParsedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedCertificate")
            .field("leaf_der_len", &self.leaf_der.len())
            .field("chain_len", &self.chain_der.len())
            .field("key", &self.key)
            .finish()
    }
}

/// Interprets an import request's `value`: PEM text, base64 of PEM text, or base64 of a PFX.
pub fn parse_import_value(
    value: &str,
    password: Option<&str>,
) -> Result<ParsedCertificate, String> {
    let trimmed = value.trim_start();
    if trimmed.starts_with("-----BEGIN") {
        return parse_pem_bundle(trimmed);
    }
    let bytes = b64std_decode(value).ok_or_else(|| PFX_UNREADABLE.to_string())?;
    if bytes.starts_with(b"-----BEGIN") {
        let text = String::from_utf8(bytes).map_err(|_| PEM_UNREADABLE.to_string())?;
        return parse_pem_bundle(&text);
    }
    parse_pfx(&bytes, password.unwrap_or(""))
}

/// Reads a PFX with any of the encryption schemes in common use.
pub fn parse_pfx(der: &[u8], password: &str) -> Result<ParsedCertificate, String> {
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(der, password)
        .map_err(|_| PFX_UNREADABLE.to_string())?;
    let key_bag = archive.keys.first().ok_or_else(|| PFX_NO_KEY.to_string())?;
    let key = parse_private_der(key_bag.key.as_der()).map_err(|e| e.to_string())?;
    let certs: Vec<Vec<u8>> = archive
        .certs
        .iter()
        .map(|c| c.cert.as_der().to_vec())
        .collect();
    assemble(key, certs)
}

/// Reads PEM text holding one private key and one or more certificates.
pub fn parse_pem_bundle(text: &str) -> Result<ParsedCertificate, String> {
    let blocks = ::pem::parse_many(text).map_err(|_| PEM_UNREADABLE.to_string())?;
    let mut key = None;
    let mut certs = Vec::new();
    for b in &blocks {
        match b.tag() {
            "CERTIFICATE" => certs.push(b.contents().to_vec()),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" if key.is_none() => {
                key = Some(parse_private_der(b.contents()).map_err(|e| e.to_string())?);
            }
            _ => {}
        }
    }
    if certs.is_empty() {
        return Err(PEM_UNREADABLE.to_string());
    }
    let key = key.ok_or_else(|| PEM_NO_KEY.to_string())?;
    assemble(key, certs)
}

fn assemble(key: KeyMaterial, certs: Vec<Vec<u8>>) -> Result<ParsedCertificate, String> {
    let mut parsed = Vec::new();
    for der in &certs {
        let (_, cert) = X509Certificate::from_der(der).map_err(|_| PFX_UNREADABLE.to_string())?;
        parsed.push(cert);
    }
    let leaf_idx = parsed
        .iter()
        .position(|c| PublicKey::from_certificate(c).ok().as_ref() == Some(&key.public))
        .ok_or_else(|| NO_MATCHING_CERT.to_string())?;
    let mut remaining: Vec<usize> = (0..parsed.len()).filter(|i| *i != leaf_idx).collect();
    let mut order = vec![leaf_idx];
    let mut current = leaf_idx;
    // Walk issuer links so the chain is leaf → intermediate(s) → root whatever the input order.
    while let Some(pos) = remaining.iter().position(|i| {
        parsed[*i].subject().as_raw() == parsed[current].issuer().as_raw()
            && parsed[current].subject().as_raw() != parsed[current].issuer().as_raw()
    }) {
        current = remaining.remove(pos);
        order.push(current);
    }
    order.extend(remaining);
    let leaf_der = certs[order[0]].clone();
    let chain_der = order[1..].iter().map(|i| certs[*i].clone()).collect();
    Ok(ParsedCertificate {
        leaf_der,
        chain_der,
        key,
    })
}

/// The backing secret's PFX: empty password, legacy PBE like the service's own exports.
pub fn export_pfx(cert: &ParsedCertificate) -> Result<Vec<u8>, String> {
    let chain: Vec<&[u8]> = cert.chain_der.iter().map(|c| c.as_slice()).collect();
    let pfx = p12::PFX::new_with_cas(&cert.leaf_der, &cert.key.pkcs8, &chain, "", "")
        .ok_or_else(|| "PKCS#12 export failed".to_string())?;
    Ok(pfx.to_der())
}

/// The backing secret's PEM: the PKCS#8 private key, then the leaf and the chain.
pub fn export_pem(cert: &ParsedCertificate) -> String {
    let mut blocks = vec![::pem::Pem::new("PRIVATE KEY", cert.key.pkcs8.clone())];
    blocks.push(::pem::Pem::new("CERTIFICATE", cert.leaf_der.clone()));
    for c in &cert.chain_der {
        blocks.push(::pem::Pem::new("CERTIFICATE", c.clone()));
    }
    ::pem::encode_many_config(
        &blocks,
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// What the certificate attributes and policy say about a leaf.
#[derive(Debug, Clone)]
pub struct LeafInfo {
    pub public: PublicKey,
    pub not_before: i64,
    pub not_after: i64,
    pub x509_props: Value,
}

pub fn describe_leaf(der: &[u8]) -> Result<LeafInfo, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| PFX_UNREADABLE.to_string())?;
    let public = PublicKey::from_certificate(&cert).map_err(|e| e.to_string())?;
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let mut props = serde_json::Map::new();
    props.insert("subject".into(), json!(cert.subject().to_string()));
    let mut dns = Vec::new();
    let mut emails = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::RFC822Name(e) => emails.push(e.to_string()),
                _ => {}
            }
        }
    }
    if !dns.is_empty() || !emails.is_empty() {
        let mut sans = serde_json::Map::new();
        if !emails.is_empty() {
            sans.insert("emails".into(), json!(emails));
        }
        if !dns.is_empty() {
            sans.insert("dns_names".into(), json!(dns));
        }
        props.insert("sans".into(), Value::Object(sans));
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        let e = eku.value;
        let mut ekus = Vec::new();
        for (set, oid) in [
            (e.server_auth, "1.3.6.1.5.5.7.3.1"),
            (e.client_auth, "1.3.6.1.5.5.7.3.2"),
            (e.code_signing, "1.3.6.1.5.5.7.3.3"),
            (e.email_protection, "1.3.6.1.5.5.7.3.4"),
            (e.time_stamping, "1.3.6.1.5.5.7.3.8"),
            (e.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
            (e.any, "2.5.29.37.0"),
        ] {
            if set {
                ekus.push(oid.to_string());
            }
        }
        ekus.extend(e.other.iter().map(|o| o.to_id_string()));
        props.insert("ekus".into(), json!(ekus));
    }
    if let Ok(Some(ku)) = cert.key_usage() {
        let k = ku.value;
        let mut usages = Vec::new();
        for (set, name) in [
            (k.digital_signature(), "digitalSignature"),
            (k.non_repudiation(), "nonRepudiation"),
            (k.key_encipherment(), "keyEncipherment"),
            (k.data_encipherment(), "dataEncipherment"),
            (k.key_agreement(), "keyAgreement"),
            (k.key_cert_sign(), "keyCertSign"),
            (k.crl_sign(), "cRLSign"),
            (k.encipher_only(), "encipherOnly"),
            (k.decipher_only(), "decipherOnly"),
        ] {
            if set {
                usages.push(name);
            }
        }
        props.insert("key_usage".into(), json!(usages));
    }
    props.insert(
        "validity_months".into(),
        json!(months_between(not_before, not_after)),
    );
    Ok(LeafInfo {
        public,
        not_before,
        not_after,
        x509_props: Value::Object(props),
    })
}
