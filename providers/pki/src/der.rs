//! A small BER/DER reader and DER writer for the structures the providers and secret sync touch:
//! PKCS#12, PKCS#8, SEC1, PKCS#1 and the parts of X.509 needed to order a chain.
//!
//! The reader accepts BER as well (indefinite lengths, constructed OCTET STRINGs) because PFX files
//! written by Java and some Windows tools use it. It never panics: every length is checked against
//! the remaining input and nesting is bounded.
//!
//! Hand-written on purpose: the `der` crate is DER-only (it refuses the BER above), and a full
//! ASN.1 framework costs the wasm guests far more size than these few hundred lines.

use std::borrow::Cow;

/// Nesting deeper than this is rejected; the structures parsed here need fewer than 12 levels.
const MAX_DEPTH: usize = 32;

pub const TAG_INTEGER: u8 = 0x02;
pub const TAG_BIT_STRING: u8 = 0x03;
pub const TAG_OCTET_STRING: u8 = 0x04;
pub const TAG_NULL: u8 = 0x05;
pub const TAG_OID: u8 = 0x06;
pub const TAG_SEQUENCE: u8 = 0x30;
pub const TAG_SET: u8 = 0x31;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed ASN.1 ({0})")]
pub struct DerError(pub &'static str);

pub type Result<T> = std::result::Result<T, DerError>;

/// One element: identifier octet, content, and the whole encoding.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    /// The identifier octet (class, constructed bit and a low tag number).
    pub tag: u8,
    /// The content octets (for an indefinite length: up to, not including, the end-of-contents).
    pub content: &'a [u8],
}

impl<'a> Tlv<'a> {
    pub fn constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    /// The tag number with the constructed bit cleared, so primitive and constructed forms of a
    /// universal type compare equal.
    pub fn base_tag(&self) -> u8 {
        self.tag & !0x20
    }

    /// A reader over the children of a constructed element.
    pub fn children(&self) -> Result<Reader<'a>> {
        if !self.constructed() {
            return Err(DerError("expected a constructed element"));
        }
        Ok(Reader::new(self.content))
    }

    pub fn expect(self, tag: u8, what: &'static str) -> Result<Self> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(DerError(what))
        }
    }

    /// The value of an OCTET STRING (or an implicitly tagged one), joining the segments of a
    /// constructed (BER) encoding.
    pub fn octets(&self) -> Result<Cow<'a, [u8]>> {
        octets_at(self, 0)
    }

    /// The unsigned magnitude of a non-negative INTEGER, without leading zero octets.
    pub fn unsigned_integer(&self) -> Result<&'a [u8]> {
        if self.tag != TAG_INTEGER {
            return Err(DerError("expected an INTEGER"));
        }
        let bytes = self.content;
        match bytes.first() {
            None => Err(DerError("empty INTEGER")),
            Some(b) if b & 0x80 != 0 => Err(DerError("negative INTEGER")),
            Some(_) => {
                let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
                Ok(&bytes[start..])
            }
        }
    }

    /// A small non-negative INTEGER (iteration counts, versions).
    pub fn small_uint(&self) -> Result<u64> {
        let magnitude = self.unsigned_integer()?;
        if magnitude.len() > 8 {
            return Err(DerError("INTEGER too large"));
        }
        Ok(magnitude
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    pub fn oid(&self) -> Result<&'a [u8]> {
        if self.tag != TAG_OID || self.content.is_empty() {
            return Err(DerError("expected an OBJECT IDENTIFIER"));
        }
        Ok(self.content)
    }
}

fn octets_at<'a>(tlv: &Tlv<'a>, depth: usize) -> Result<Cow<'a, [u8]>> {
    if depth > MAX_DEPTH {
        return Err(DerError("nesting too deep"));
    }
    if !tlv.constructed() {
        return Ok(Cow::Borrowed(tlv.content));
    }
    let mut joined = Vec::new();
    let mut children = Reader::new(tlv.content);
    while let Some(segment) = children.next_tlv()? {
        if segment.base_tag() != TAG_OCTET_STRING {
            return Err(DerError("constructed OCTET STRING with a foreign segment"));
        }
        joined.extend_from_slice(&octets_at(&segment, depth + 1)?);
    }
    Ok(Cow::Owned(joined))
}

/// Reads consecutive elements from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next element, or `None` at the end of the input.
    pub fn next_tlv(&mut self) -> Result<Option<Tlv<'a>>> {
        if self.is_empty() {
            return Ok(None);
        }
        let (tlv, used) = parse_tlv(&self.data[self.pos..], 0)?;
        self.pos += used;
        Ok(Some(tlv))
    }

    /// The next element, which must exist.
    pub fn read(&mut self, what: &'static str) -> Result<Tlv<'a>> {
        self.next_tlv()?.ok_or(DerError(what))
    }

    /// The next element if it carries `tag`; otherwise nothing is consumed.
    pub fn read_optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>> {
        match self.data.get(self.pos) {
            Some(t) if *t == tag => self.next_tlv(),
            _ => Ok(None),
        }
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }
}

/// Parses exactly one element covering all of `data`.
pub fn parse_single(data: &[u8]) -> Result<Tlv<'_>> {
    let (tlv, used) = parse_tlv(data, 0)?;
    if used != data.len() {
        return Err(DerError("trailing data"));
    }
    Ok(tlv)
}

fn parse_tlv(data: &[u8], depth: usize) -> Result<(Tlv<'_>, usize)> {
    if depth > MAX_DEPTH {
        return Err(DerError("nesting too deep"));
    }
    let tag = *data.first().ok_or(DerError("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError("high tag numbers are not supported"));
    }
    if tag == 0 {
        return Err(DerError("unexpected end-of-contents"));
    }
    let first_len = *data.get(1).ok_or(DerError("truncated length"))?;
    let mut header = 2usize;
    if first_len == 0x80 {
        if tag & 0x20 == 0 {
            return Err(DerError("indefinite length on a primitive element"));
        }
        // Walk the children to find the end-of-contents octets.
        let mut pos = header;
        loop {
            let rest = data.get(pos..).ok_or(DerError("truncated"))?;
            if rest.len() >= 2 && rest[0] == 0 && rest[1] == 0 {
                let content = &data[header..pos];
                return Ok((Tlv { tag, content }, pos + 2));
            }
            if rest.is_empty() {
                return Err(DerError("missing end-of-contents"));
            }
            let (_, used) = parse_tlv(rest, depth + 1)?;
            pos += used;
        }
    }
    let len = if first_len & 0x80 == 0 {
        usize::from(first_len)
    } else {
        let count = usize::from(first_len & 0x7f);
        if count == 0 || count > 4 {
            return Err(DerError("unsupported length encoding"));
        }
        let bytes = data.get(2..2 + count).ok_or(DerError("truncated length"))?;
        header += count;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let end = header.checked_add(len).ok_or(DerError("length overflow"))?;
    let content = data.get(header..end).ok_or(DerError("truncated content"))?;
    Ok((Tlv { tag, content }, end))
}

// ---------------------------------------------------------------------------------------------
// Writer

/// Encodes one element with a definite (DER) length.
pub fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    encode(TAG_SEQUENCE, &parts.concat())
}

/// A DER INTEGER from an unsigned big-endian magnitude (leading zeros are dropped, a zero octet
/// is added when the high bit is set).
pub fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len());
    let trimmed = &magnitude[start..];
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    encode(TAG_INTEGER, &content)
}

pub fn small_integer(value: u8) -> Vec<u8> {
    unsigned_integer(&[value])
}

pub fn octet_string(value: &[u8]) -> Vec<u8> {
    encode(TAG_OCTET_STRING, value)
}

/// A BIT STRING with no unused bits.
pub fn bit_string(value: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(value.len() + 1);
    content.push(0);
    content.extend_from_slice(value);
    encode(TAG_BIT_STRING, &content)
}

pub fn oid(encoded: &[u8]) -> Vec<u8> {
    encode(TAG_OID, encoded)
}

pub fn null() -> Vec<u8> {
    encode(TAG_NULL, &[])
}

/// Well-known object identifiers, as their DER content octets.
pub mod oids {
    pub const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    pub const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];

    pub const KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
    ];
    pub const SHROUDED_KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
    ];
    pub const CERT_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
    ];
    pub const SAFE_CONTENTS_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x06,
    ];
    pub const X509_CERTIFICATE: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];

    pub const PBE_SHA1_RC4_128: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x01];
    pub const PBE_SHA1_RC4_40: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x02];
    pub const PBE_SHA1_3DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
    pub const PBE_SHA1_2DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x04];
    pub const PBE_SHA1_RC2_128: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x05];
    pub const PBE_SHA1_RC2_40: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x06];

    pub const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
    pub const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
    pub const HMAC_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x07];
    pub const HMAC_SHA224: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x08];
    pub const HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
    pub const HMAC_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x0a];
    pub const HMAC_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x0b];
    pub const AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
    pub const AES192_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16];
    pub const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
    pub const DES_EDE3_CBC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07];

    pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    pub const SHA224: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04];
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const CURVE_P224: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x21];
    pub const CURVE_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub const CURVE_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    pub const CURVE_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

    pub const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
    pub const AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
}

/// Dotted form of an encoded OID, for error messages.
pub fn oid_to_string(encoded: &[u8]) -> String {
    let mut arcs: Vec<u128> = Vec::new();
    let mut value: u128 = 0;
    for (i, b) in encoded.iter().enumerate() {
        if value > (u128::MAX >> 8) {
            return "(invalid OID)".to_string();
        }
        value = (value << 7) | u128::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let (first, second) = match value {
                    0..=39 => (0, value),
                    40..=79 => (1, value - 40),
                    _ => (2, value - 80),
                };
                arcs.push(first);
                arcs.push(second);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i + 1 == encoded.len() {
            return "(invalid OID)".to_string();
        }
    }
    arcs.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_long_lengths() {
        let content = vec![7u8; 300];
        let encoded = encode(TAG_OCTET_STRING, &content);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let tlv = parse_single(&encoded).unwrap();
        assert_eq!(tlv.content, &content[..]);
    }

    #[test]
    fn reads_indefinite_constructed_octet_strings() {
        // 24 80 (04 02 aa bb) (04 01 cc) 00 00
        let ber = [
            0x24, 0x80, 0x04, 0x02, 0xaa, 0xbb, 0x04, 0x01, 0xcc, 0x00, 0x00,
        ];
        let tlv = parse_single(&ber).unwrap();
        assert_eq!(tlv.octets().unwrap().as_ref(), &[0xaa, 0xbb, 0xcc]);
    }

    #[test]
    fn integers_are_minimal() {
        assert_eq!(
            unsigned_integer(&[0, 0, 0x80]),
            vec![0x02, 0x02, 0x00, 0x80]
        );
        assert_eq!(
            unsigned_integer(&[0x01, 0x00, 0x01]),
            vec![0x02, 0x03, 0x01, 0x00, 0x01]
        );
        assert_eq!(unsigned_integer(&[]), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for input in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x80, 0x30, 0x80],
            &[0x1f, 0],
        ] {
            assert!(parse_single(input).is_err());
        }
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend_from_slice(&[0x30, 0x80]);
        }
        assert!(parse_single(&deep).is_err());
    }

    #[test]
    fn oid_strings() {
        assert_eq!(oid_to_string(oids::PBES2), "1.2.840.113549.1.5.13");
        assert_eq!(oid_to_string(oids::CURVE_P521), "1.3.132.0.35");
    }
}
