//! Just enough X.509 to order a certificate chain the way the upstream provider does
//! (`--construct-pem-chain`, on by default): leaf first, then each issuer, matched by
//! Authority Key Identifier → Subject Key Identifier.

use crate::der::{self, DerError, Tlv, oids};

/// The key identifiers of one certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIds {
    pub subject: Option<Vec<u8>>,
    pub authority: Option<Vec<u8>>,
}

/// Parses a DER certificate far enough to read its key identifiers; fails on anything that is
/// not a certificate.
pub fn key_ids(certificate: &[u8]) -> Result<KeyIds, DerError> {
    let mut ids = KeyIds::default();
    let Some(extensions) = extensions(certificate)? else {
        return Ok(ids);
    };
    let list = extensions
        .children()?
        .read("empty extensions")?
        .expect(der::TAG_SEQUENCE, "extensions are not a SEQUENCE")?;
    let mut list = list.children()?;
    while let Some(extension) = list.next_tlv()? {
        read_key_id(&mut ids, extension)?;
    }
    Ok(ids)
}

/// Checks the certificate's outer structure and walks its TBSCertificate to the `[3]` extensions,
/// if there are any.
fn extensions(certificate: &[u8]) -> Result<Option<Tlv<'_>>, DerError> {
    let cert = der::parse_single(certificate)?
        .expect(der::TAG_SEQUENCE, "certificate is not a SEQUENCE")?;
    let mut cert_fields = cert.children()?;
    let tbs = cert_fields
        .read("missing TBSCertificate")?
        .expect(der::TAG_SEQUENCE, "TBSCertificate is not a SEQUENCE")?;
    cert_fields
        .read("missing signature algorithm")?
        .expect(der::TAG_SEQUENCE, "bad signature algorithm")?;
    let signature = cert_fields.read("missing signature")?;
    if signature.base_tag() != der::TAG_BIT_STRING {
        return Err(DerError("signature is not a BIT STRING"));
    }

    let mut fields = tbs.children()?;
    fields.read_optional(0xa0)?; // version
    fields
        .read("missing serial number")?
        .expect(der::TAG_INTEGER, "serial number is not an INTEGER")?;
    for what in [
        "signature",
        "issuer",
        "validity",
        "subject",
        "subjectPublicKeyInfo",
    ] {
        fields
            .read(what)?
            .expect(der::TAG_SEQUENCE, "TBSCertificate field is not a SEQUENCE")?;
    }
    fields.read_optional(0x81)?; // issuerUniqueID
    fields.read_optional(0xa1)?;
    fields.read_optional(0x82)?; // subjectUniqueID
    fields.read_optional(0xa2)?;
    fields.read_optional(0xa3)
}

/// Reads one extension into `ids` when it is a subject or authority key identifier.
fn read_key_id(ids: &mut KeyIds, extension: Tlv<'_>) -> Result<(), DerError> {
    let mut ext = extension
        .expect(der::TAG_SEQUENCE, "extension is not a SEQUENCE")?
        .children()?;
    let id = ext.read("missing extension id")?.oid()?;
    let mut value = ext.read("missing extension value")?;
    if value.tag == 0x01 {
        value = ext.read("missing extension value")?; // critical flag
    }
    if value.base_tag() != der::TAG_OCTET_STRING {
        return Err(DerError("extension value is not an OCTET STRING"));
    }
    let value = value.octets()?;
    if id == oids::SUBJECT_KEY_ID {
        if ids.subject.is_some() {
            return Err(DerError("duplicate subject key identifier"));
        }
        let ski = der::parse_single(&value)?;
        if ski.base_tag() != der::TAG_OCTET_STRING {
            return Err(DerError("subject key identifier is not an OCTET STRING"));
        }
        ids.subject = Some(ski.octets()?.into_owned());
    } else if id == oids::AUTHORITY_KEY_ID {
        if ids.authority.is_some() {
            return Err(DerError("duplicate authority key identifier"));
        }
        let aki = der::parse_single(&value)?.expect(
            der::TAG_SEQUENCE,
            "authority key identifier is not a SEQUENCE",
        )?;
        let mut aki_fields = aki.children()?;
        // keyIdentifier [0] IMPLICIT OCTET STRING OPTIONAL; the issuer/serial form is ignored.
        ids.authority = match aki_fields.peek_tag() {
            Some(0x80) | Some(0xa0) => {
                Some(aki_fields.read("keyIdentifier")?.octets()?.into_owned())
            }
            _ => None,
        };
    }
    Ok(())
}

/// Orders certificates leaf → intermediates → root.
///
/// Upstream links each certificate to the first other one whose SKI equals its AKI, starts at the
/// first certificate that is nobody's issuer and follows the links. Upstream then writes only the
/// walked chain, dropping certificates that are not on it; this provider keeps the original order
/// instead when the walk does not cover every certificate (incomplete chain, several leaves, a
/// cycle), so no certificate is ever lost.
pub fn order_chain(ids: &[KeyIds]) -> Vec<usize> {
    let n = ids.len();
    let identity: Vec<usize> = (0..n).collect();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut is_parent = vec![false; n];
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let aki = ids[i].authority.as_deref();
            let ski = ids[j].subject.as_deref();
            if aki.is_none() && ski.is_none() {
                continue;
            }
            // Go compares the byte strings, so an absent identifier equals an empty one.
            if aki.unwrap_or_default() == ski.unwrap_or_default() {
                is_parent[j] = true;
                parent[i] = Some(j);
                break;
            }
        }
    }
    let Some(leaf) = (0..n).find(|i| !is_parent[*i]) else {
        return identity;
    };
    let mut chain = Vec::with_capacity(n);
    let mut next = Some(leaf);
    while let Some(current) = next {
        if chain.len() >= n {
            return identity; // cycle
        }
        chain.push(current);
        next = parent[current];
    }
    if chain.len() == n { chain } else { identity }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ids(subject: Option<&[u8]>, authority: Option<&[u8]>) -> KeyIds {
        KeyIds {
            subject: subject.map(<[u8]>::to_vec),
            authority: authority.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn orders_a_shuffled_chain() {
        let root = ids(Some(b"R"), Some(b"R"));
        let intermediate = ids(Some(b"I"), Some(b"R"));
        let leaf = ids(Some(b"L"), Some(b"I"));
        assert_eq!(
            order_chain(&[root.clone(), leaf.clone(), intermediate.clone()]),
            vec![1, 2, 0]
        );
        assert_eq!(
            order_chain(&[intermediate.clone(), root.clone(), leaf.clone()]),
            vec![2, 0, 1]
        );
        assert_eq!(order_chain(&[leaf, intermediate, root]), vec![0, 1, 2]);
    }

    #[test]
    fn keeps_original_order_when_incomplete() {
        let root = ids(Some(b"R"), None);
        let leaf = ids(None, Some(b"I"));
        assert_eq!(order_chain(&[root, leaf]), vec![0, 1]);
        let a = ids(Some(b"A"), Some(b"B"));
        let b = ids(Some(b"B"), Some(b"A"));
        assert_eq!(order_chain(&[a, b]), vec![0, 1]);
        assert_eq!(order_chain(&[]), Vec::<usize>::new());
    }
}
