//! Key encodings, byte-compatible with Go's `crypto/x509` as the upstream providers and driver use
//! it: private keys re-encoded as PKCS#8 (`MarshalPKCS8PrivateKey` after `ParsePKCS8PrivateKey`),
//! any unencrypted private key (PKCS#8, PKCS#1, SEC1) normalised to that form and cut back to its
//! traditional encoding (`MarshalPKCS1PrivateKey`, `MarshalECPrivateKey`), and JSON Web Keys as
//! PKIX `SubjectPublicKeyInfo` (`MarshalPKIXPublicKey`).

use p256::elliptic_curve::sec1::ToEncodedPoint;

use crate::der::{self, DerError, Tlv, oids};
use crate::pem;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("private key structure: {0}")]
    Malformed(#[from] DerError),
    #[error(
        "private key algorithm {0} is not supported (only RSA and ECDSA keys can be converted to PEM)"
    )]
    UnsupportedAlgorithm(String),
    #[error("elliptic curve {0} is not supported")]
    UnsupportedCurve(String),
    #[error("RSA private key is invalid: {0}")]
    InvalidRsa(&'static str),
    #[error("elliptic curve private key is invalid: {0}")]
    InvalidEc(&'static str),
    #[error("key type '{0}' currently not supported")]
    UnsupportedKeyType(String),
    #[error("curve {0} is not supported")]
    UnsupportedJwkCurve(String),
    #[error("JSON web key field '{0}' is missing or not base64url")]
    JwkField(&'static str),
    #[error("JSON web key is invalid: {0}")]
    InvalidJwk(&'static str),
}

type Result<T> = std::result::Result<T, KeyError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P224,
    P256,
    P384,
    P521,
}

impl Curve {
    fn from_oid(oid: &[u8]) -> Result<Self> {
        match oid {
            oids::CURVE_P224 => Ok(Curve::P224),
            oids::CURVE_P256 => Ok(Curve::P256),
            oids::CURVE_P384 => Ok(Curve::P384),
            oids::CURVE_P521 => Ok(Curve::P521),
            other => Err(KeyError::UnsupportedCurve(der::oid_to_string(other))),
        }
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P224 => oids::CURVE_P224,
            Curve::P256 => oids::CURVE_P256,
            Curve::P384 => oids::CURVE_P384,
            Curve::P521 => oids::CURVE_P521,
        }
    }

    fn byte_len(self) -> usize {
        match self {
            Curve::P224 => 28,
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// The group order, big-endian, for range-checking private scalars.
    fn order(self) -> &'static [u8] {
        match self {
            Curve::P224 => &P224_ORDER,
            Curve::P256 => &P256_ORDER,
            Curve::P384 => &P384_ORDER,
            Curve::P521 => &P521_ORDER,
        }
    }
}

const P224_ORDER: [u8; 28] = hex_array("ffffffffffffffffffffffffffff16a2e0b8f03e13dd29455c5c2a3d");
const P256_ORDER: [u8; 32] =
    hex_array("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
const P384_ORDER: [u8; 48] = hex_array(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
);
const P521_ORDER: [u8; 66] = hex_array(
    "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
);

const fn hex_array<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (nibble(bytes[2 * i]) << 4) | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    }
}

/// Re-encodes a PKCS#8 `PrivateKeyInfo` the way Go does after a parse round trip: RSA keys as
/// `{0, rsaEncryption NULL, RSAPrivateKey v0}`, EC keys as `{0, ecPublicKey namedCurve,
/// ECPrivateKey{1, scalar padded to the field size, [1] uncompressed public key}}`; attributes and
/// optional public keys of the input are dropped.
pub fn normalize_pkcs8(pkcs8: &[u8]) -> Result<Vec<u8>> {
    let info =
        der::parse_single(pkcs8)?.expect(der::TAG_SEQUENCE, "PrivateKeyInfo is not a SEQUENCE")?;
    let mut fields = info.children()?;
    let version = fields
        .read("missing PrivateKeyInfo version")?
        .small_uint()?;
    if version > 1 {
        return Err(DerError("unsupported PrivateKeyInfo version").into());
    }
    let algorithm = fields
        .read("missing private key algorithm")?
        .expect(der::TAG_SEQUENCE, "bad private key algorithm")?;
    let mut algorithm_fields = algorithm.children()?;
    let algorithm_oid = algorithm_fields.read("missing algorithm OID")?.oid()?;
    let params = algorithm_fields.next_tlv()?;
    let private_key = fields.read("missing private key")?;
    if private_key.base_tag() != der::TAG_OCTET_STRING {
        return Err(DerError("private key is not an OCTET STRING").into());
    }
    let private_key = private_key.octets()?;
    match algorithm_oid {
        oids::RSA_ENCRYPTION => normalize_rsa(&private_key),
        oids::EC_PUBLIC_KEY => {
            let curve_oid = match params {
                Some(p) if p.tag == der::TAG_OID => Some(p.oid()?),
                _ => None,
            };
            normalize_ec(curve_oid, &private_key)
        }
        other => Err(KeyError::UnsupportedAlgorithm(der::oid_to_string(other))),
    }
}

fn normalize_rsa(pkcs1: &[u8]) -> Result<Vec<u8>> {
    let key =
        der::parse_single(pkcs1)?.expect(der::TAG_SEQUENCE, "RSAPrivateKey is not a SEQUENCE")?;
    let mut fields = key.children()?;
    let version = fields.read("missing RSAPrivateKey version")?.small_uint()?;
    if version > 1 {
        return Err(KeyError::InvalidRsa("unsupported version"));
    }
    let mut parts: Vec<&[u8]> = Vec::with_capacity(8);
    for name in [
        "modulus",
        "publicExponent",
        "privateExponent",
        "prime1",
        "prime2",
        "exponent1",
        "exponent2",
        "coefficient",
    ] {
        let value = fields.read(name)?;
        parts.push(
            value
                .unsigned_integer()
                .map_err(|_| KeyError::InvalidRsa("negative or malformed integer"))?,
        );
    }
    if !fields.is_empty() {
        return Err(KeyError::InvalidRsa("multi-prime keys are not supported"));
    }
    // Go rejects zero modulus, exponents and primes.
    if parts[..5].iter().any(|p| p.is_empty()) {
        return Err(KeyError::InvalidRsa("contains a zero value"));
    }
    if parts[1].len() > 4 || (parts[1].len() == 4 && parts[1][0] & 0x80 != 0) {
        return Err(KeyError::InvalidRsa("public exponent too large"));
    }
    let mut rsa = der::small_integer(0);
    for part in &parts {
        rsa.extend(der::unsigned_integer(part));
    }
    let rsa = der::encode(der::TAG_SEQUENCE, &rsa);
    let algorithm = der::sequence(&[&der::oid(oids::RSA_ENCRYPTION), &der::null()]);
    Ok(der::sequence(&[
        &der::small_integer(0),
        &algorithm,
        &der::octet_string(&rsa),
    ]))
}

fn normalize_ec(pkcs8_curve: Option<&[u8]>, sec1: &[u8]) -> Result<Vec<u8>> {
    let key =
        der::parse_single(sec1)?.expect(der::TAG_SEQUENCE, "ECPrivateKey is not a SEQUENCE")?;
    let mut fields = key.children()?;
    if fields.read("missing ECPrivateKey version")?.small_uint()? != 1 {
        return Err(KeyError::InvalidEc("unknown version"));
    }
    let scalar = fields.read("missing private key")?;
    if scalar.base_tag() != der::TAG_OCTET_STRING {
        return Err(DerError("EC private key is not an OCTET STRING").into());
    }
    let scalar = scalar.octets()?;
    let mut embedded_curve = None;
    let mut embedded_public: Option<Vec<u8>> = None;
    while let Some(field) = fields.next_tlv()? {
        match field.tag {
            0xa0 => embedded_curve = Some(field.children()?.read("empty EC parameters")?),
            0xa1 => {
                let bits: Tlv<'_> = field.children()?.read("empty EC public key")?;
                let bits = bits.expect(der::TAG_BIT_STRING, "EC public key is not a BIT STRING")?;
                match bits.content.split_first() {
                    Some((0, point)) => embedded_public = Some(point.to_vec()),
                    _ => return Err(KeyError::InvalidEc("public key BIT STRING has unused bits")),
                }
            }
            _ => {}
        }
    }
    let curve_oid = match (pkcs8_curve, embedded_curve) {
        (Some(oid), _) => oid,
        (None, Some(params)) if params.tag == der::TAG_OID => params.oid()?,
        _ => return Err(KeyError::InvalidEc("no named curve")),
    };
    let curve = Curve::from_oid(curve_oid)?;

    // Go tolerates both extra leading zeros and missing ones (as older OpenSSL wrote them).
    let start = scalar.iter().position(|b| *b != 0).unwrap_or(scalar.len());
    let magnitude = &scalar[start..];
    let size = curve.byte_len();
    if magnitude.is_empty() || magnitude.len() > size {
        return Err(KeyError::InvalidEc("private key value out of range"));
    }
    let mut padded = vec![0u8; size];
    padded[size - magnitude.len()..].copy_from_slice(magnitude);
    if padded.as_slice() >= curve.order() {
        return Err(KeyError::InvalidEc("private key value out of range"));
    }
    let public = match derive_public(curve, &padded) {
        Some(public) => public,
        // No arithmetic for this curve: keep the stored point when it is uncompressed.
        None => match embedded_public {
            Some(point) if point.len() == 1 + 2 * size && point[0] == 4 => point,
            _ => return Err(KeyError::InvalidEc("public key missing or compressed")),
        },
    };

    let ec = der::sequence(&[
        &der::small_integer(1),
        &der::octet_string(&padded),
        &der::encode(0xa1, &der::bit_string(&public)),
    ]);
    let algorithm = der::sequence(&[&der::oid(oids::EC_PUBLIC_KEY), &der::oid(curve.oid())]);
    Ok(der::sequence(&[
        &der::small_integer(0),
        &algorithm,
        &der::octet_string(&ec),
    ]))
}

/// The uncompressed public point of a private scalar, for the curves with arithmetic built in.
fn derive_public(curve: Curve, scalar: &[u8]) -> Option<Vec<u8>> {
    match curve {
        Curve::P256 => {
            let secret = p256::SecretKey::from_slice(scalar).ok()?;
            Some(
                secret
                    .public_key()
                    .as_affine()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec(),
            )
        }
        Curve::P384 => {
            let secret = p384::SecretKey::from_slice(scalar).ok()?;
            Some(
                secret
                    .public_key()
                    .as_affine()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec(),
            )
        }
        Curve::P521 => {
            let secret = p521::SecretKey::from_slice(scalar).ok()?;
            Some(
                secret
                    .public_key()
                    .as_affine()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec(),
            )
        }
        Curve::P224 => None,
    }
}

/// Any of the three unencrypted private key encodings (PKCS#8, PKCS#1, SEC1), told apart by their
/// structure as Go's parsers tell them apart (a PEM label is not trusted, as upstream ignores it),
/// normalised to the PKCS#8 form Go writes.
pub fn any_to_pkcs8(key: &[u8]) -> Result<Vec<u8>> {
    let outer =
        der::parse_single(key)?.expect(der::TAG_SEQUENCE, "private key is not a SEQUENCE")?;
    let mut fields = outer.children()?;
    fields.read("missing private key version")?;
    let second = fields.read("private key has only a version")?;
    let wrapped = match second.tag {
        // PrivateKeyInfo: version, AlgorithmIdentifier, ...
        der::TAG_SEQUENCE => return normalize_pkcs8(key),
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
        _ => return Err(DerError("not a PKCS#8, PKCS#1 or SEC1 private key").into()),
    };
    normalize_pkcs8(&wrapped)
}

/// The PKCS#1 or SEC1 encoding inside a normalised PKCS#8 key, with the PEM label it is written
/// under. SEC1 gets the named-curve parameters, which PKCS#8 keeps outside the inner key.
pub fn to_traditional(pkcs8: &[u8]) -> Result<(&'static str, Vec<u8>)> {
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
        oids::RSA_ENCRYPTION => Ok((pem::RSA_PRIVATE_KEY, inner.to_vec())),
        oids::EC_PUBLIC_KEY => {
            let curve = algorithm_fields.read("missing named curve")?.oid()?;
            Ok((pem::EC_PRIVATE_KEY, sec1_with_curve(inner, curve)?))
        }
        other => Err(KeyError::UnsupportedAlgorithm(der::oid_to_string(other))),
    }
}

/// A PKCS#8-embedded ECPrivateKey re-encoded with its `[0]` named curve, as `MarshalECPrivateKey`.
fn sec1_with_curve(inner: &[u8], curve: &[u8]) -> Result<Vec<u8>> {
    let ec =
        der::parse_single(inner)?.expect(der::TAG_SEQUENCE, "ECPrivateKey is not a SEQUENCE")?;
    let mut ec_fields = ec.children()?;
    let version = ec_fields.read("missing ECPrivateKey version")?;
    let scalar = ec_fields.read("missing EC private key")?.expect(
        der::TAG_OCTET_STRING,
        "EC private key is not an OCTET STRING",
    )?;
    let public = ec_fields
        .read_optional(0xa1)?
        .ok_or(DerError("missing EC public key"))?;
    Ok(der::sequence(&[
        &der::encode(version.tag, version.content),
        &der::octet_string(scalar.content),
        &der::encode(0xa0, &der::oid(curve)),
        &der::encode(0xa1, public.content),
    ]))
}

/// `SubjectPublicKeyInfo` for an RSA key from its JWK `n` and `e` (big-endian magnitudes).
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Result<Vec<u8>> {
    let e_start = e.iter().position(|b| *b != 0).unwrap_or(e.len());
    let e = &e[e_start..];
    if n.iter().all(|b| *b == 0) {
        return Err(KeyError::InvalidJwk("RSA modulus is zero"));
    }
    // Go converts e to an int; anything wider than 64 bits cannot round-trip.
    if e.is_empty() || e.len() > 8 {
        return Err(KeyError::InvalidJwk("RSA public exponent out of range"));
    }
    let public = der::sequence(&[&der::unsigned_integer(n), &der::unsigned_integer(e)]);
    let algorithm = der::sequence(&[&der::oid(oids::RSA_ENCRYPTION), &der::null()]);
    Ok(der::sequence(&[&algorithm, &der::bit_string(&public)]))
}

/// `SubjectPublicKeyInfo` for an EC key from its JWK `crv`, `x` and `y`; the point must be on
/// the curve (Go refuses to marshal one that is not).
pub fn ec_spki(crv: &str, x: &[u8], y: &[u8]) -> Result<Vec<u8>> {
    let curve = match crv {
        "P-256" => Curve::P256,
        "P-384" => Curve::P384,
        "P-521" => Curve::P521,
        other => return Err(KeyError::UnsupportedJwkCurve(other.to_string())),
    };
    let size = curve.byte_len();
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(4);
    for coordinate in [x, y] {
        let start = coordinate
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(coordinate.len());
        let magnitude = &coordinate[start..];
        if magnitude.len() > size {
            return Err(KeyError::InvalidJwk(
                "EC coordinate longer than the field size",
            ));
        }
        point.extend(std::iter::repeat_n(0u8, size - magnitude.len()));
        point.extend_from_slice(magnitude);
    }
    let on_curve = match curve {
        Curve::P256 => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
        Curve::P384 => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
        Curve::P521 => p521::PublicKey::from_sec1_bytes(&point).is_ok(),
        Curve::P224 => false,
    };
    if !on_curve {
        return Err(KeyError::InvalidJwk("EC point is not on the curve"));
    }
    let algorithm = der::sequence(&[&der::oid(oids::EC_PUBLIC_KEY), &der::oid(curve.oid())]);
    Ok(der::sequence(&[&algorithm, &der::bit_string(&point)]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_algorithms_and_garbage() {
        assert!(normalize_pkcs8(b"").is_err());
        // Ed25519 PKCS#8.
        let ed = hex::decode("302e020100300506032b657004220420d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842").unwrap();
        assert!(matches!(
            normalize_pkcs8(&ed),
            Err(KeyError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn traditional_forms_round_trip_through_pkcs8() {
        // A toy PKCS#1 RSAPrivateKey is recognised by its structure and wrapped, but a key that
        // does not hold together is refused, not re-encoded.
        let toy_rsa = der::sequence(&[&der::small_integer(0), &der::unsigned_integer(&[5])]);
        assert!(any_to_pkcs8(&toy_rsa).is_err());
        assert!(matches!(
            any_to_pkcs8(&der::sequence(&[&der::small_integer(0), &der::null()])),
            Err(KeyError::Malformed(_))
        ));
        assert!(any_to_pkcs8(b"not DER").is_err());
        // Only RSA and EC keys have a traditional form; others are named by OID.
        let ed = hex::decode("302e020100300506032b657004220420d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842").unwrap();
        assert!(matches!(
            to_traditional(&ed),
            Err(KeyError::UnsupportedAlgorithm(oid)) if oid == "1.3.101.112"
        ));
    }

    #[test]
    fn ec_points_must_be_on_the_curve() {
        assert!(ec_spki("P-256", &[1; 32], &[2; 32]).is_err());
        assert!(matches!(
            ec_spki("P-256K", &[1], &[2]),
            Err(KeyError::UnsupportedJwkCurve(_))
        ));
    }

    #[test]
    fn rsa_spki_shape() {
        let spki = rsa_spki(&[0xc0, 0x01], &[0x01, 0x00, 0x01]).unwrap();
        assert_eq!(
            hex::encode(spki),
            "301e300d06092a864886f70d0101010500030d00300a020300c0010203010001"
        );
    }
}
