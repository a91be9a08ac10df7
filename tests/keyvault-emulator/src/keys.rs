//! Key material: generating RSA and EC keys, reading private keys from PEM/DER (PKCS#8, PKCS#1,
//! SEC1), reading public keys from certificates and JWKs, and writing the public JWK the way Key Vault
//! returns it (`kid`, `kty`, `key_ops`, `n`/`e` or `crv`/`x`/`y`, base64url).

use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

use crate::Error;
use crate::util::{b64url, b64url_decode, strip_leading_zeros};

/// NIST curves Key Vault supports for EC keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Curve {
    #[serde(rename = "P-256")]
    P256,
    #[serde(rename = "P-384")]
    P384,
    #[serde(rename = "P-521")]
    P521,
}

impl Curve {
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    pub fn parse(name: &str) -> Option<Curve> {
        match name {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            "P-521" => Some(Curve::P521),
            _ => None,
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    fn from_oid(oid: &str) -> Option<Curve> {
        match oid {
            "1.2.840.10045.3.1.7" => Some(Curve::P256),
            "1.3.132.0.34" => Some(Curve::P384),
            "1.3.132.0.35" => Some(Curve::P521),
            _ => None,
        }
    }
}

/// The public half of a key, as a JWK carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        curve: Curve,
        x: Vec<u8>,
        y: Vec<u8>,
    },
}

impl PublicKey {
    /// `RSA`/`EC`, with the `-HSM` suffix for HSM-protected keys as the service reports them.
    pub fn kty(&self, hsm: bool) -> &'static str {
        match (self, hsm) {
            (PublicKey::Rsa { .. }, false) => "RSA",
            (PublicKey::Rsa { .. }, true) => "RSA-HSM",
            (PublicKey::Ec { .. }, false) => "EC",
            (PublicKey::Ec { .. }, true) => "EC-HSM",
        }
    }

    /// Modulus size in bits for RSA keys.
    pub fn rsa_bits(&self) -> Option<u32> {
        match self {
            PublicKey::Rsa { n, .. } => {
                let lead = n.first().copied().unwrap_or(0);
                Some((n.len() as u32) * 8 - lead.leading_zeros())
            }
            PublicKey::Ec { .. } => None,
        }
    }

    pub fn curve(&self) -> Option<Curve> {
        match self {
            PublicKey::Ec { curve, .. } => Some(*curve),
            PublicKey::Rsa { .. } => None,
        }
    }

    /// The operations Key Vault lists for a new key of this type when none are requested.
    pub fn default_key_ops(&self) -> Vec<String> {
        let ops: &[&str] = match self {
            PublicKey::Rsa { .. } => &[
                "encrypt",
                "decrypt",
                "sign",
                "verify",
                "wrapKey",
                "unwrapKey",
            ],
            PublicKey::Ec { .. } => &["sign", "verify"],
        };
        ops.iter().map(|s| s.to_string()).collect()
    }

    /// The public JWK (`kid`, `kty`, `key_ops`, then `n`/`e` or `crv`/`x`/`y`).
    pub fn to_jwk(&self, kid: &str, hsm: bool, key_ops: &[String]) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("kid".into(), json!(kid));
        m.insert("kty".into(), json!(self.kty(hsm)));
        m.insert("key_ops".into(), json!(key_ops));
        match self {
            PublicKey::Rsa { n, e } => {
                m.insert("n".into(), json!(b64url(n)));
                m.insert("e".into(), json!(b64url(e)));
            }
            PublicKey::Ec { curve, x, y } => {
                m.insert("crv".into(), json!(curve.name()));
                m.insert("x".into(), json!(b64url(x)));
                m.insert("y".into(), json!(b64url(y)));
            }
        }
        Value::Object(m)
    }

    fn ec_from_point(curve: Curve, point: &[u8]) -> Result<PublicKey, Error> {
        let len = curve.coordinate_len();
        if point.len() != 1 + 2 * len || point[0] != 0x04 {
            return Err(Error::Key(format!(
                "EC public key on {} is not an uncompressed point of {} bytes",
                curve.name(),
                1 + 2 * len
            )));
        }
        Ok(PublicKey::Ec {
            curve,
            x: point[1..1 + len].to_vec(),
            y: point[1 + len..].to_vec(),
        })
    }

    /// Reads the subject public key of a parsed certificate.
    pub fn from_certificate(
        cert: &x509_parser::certificate::X509Certificate<'_>,
    ) -> Result<Self, Error> {
        use x509_parser::public_key::PublicKey as P;
        let spki = cert.public_key();
        match spki.parsed() {
            Ok(P::RSA(rsa)) => Ok(PublicKey::Rsa {
                n: strip_leading_zeros(rsa.modulus),
                e: strip_leading_zeros(rsa.exponent),
            }),
            Ok(P::EC(point)) => {
                let oid = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                let curve = Curve::from_oid(&oid).ok_or_else(|| {
                    Error::Key(format!("certificate uses an unsupported EC curve ({oid})"))
                })?;
                Self::ec_from_point(curve, point.data())
            }
            Ok(_) => Err(Error::Key(
                "certificate key is neither RSA nor EC; Key Vault supports only those".into(),
            )),
            Err(e) => Err(Error::Key(format!(
                "certificate public key unreadable: {e}"
            ))),
        }
    }

    /// Reads the public part of an imported JWK; Key Vault's import requires the private part too.
    pub fn from_import_jwk(jwk: &Value) -> Result<(PublicKey, bool), Error> {
        let field = |name: &str| -> Result<Vec<u8>, Error> {
            let s = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Key(format!("JWK member '{name}' is missing")))?;
            b64url_decode(s)
                .ok_or_else(|| Error::Key(format!("JWK member '{name}' is not base64url")))
        };
        let kty = jwk
            .get("kty")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Key("JWK member 'kty' is missing".into()))?;
        let hsm = kty.ends_with("-HSM");
        let public = match kty.trim_end_matches("-HSM") {
            "RSA" => {
                field("d")?;
                PublicKey::Rsa {
                    n: strip_leading_zeros(&field("n")?),
                    e: strip_leading_zeros(&field("e")?),
                }
            }
            "EC" => {
                field("d")?;
                let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
                let curve = Curve::parse(crv)
                    .ok_or_else(|| Error::Key(format!("JWK curve '{crv}' is not supported")))?;
                let (x, y) = (field("x")?, field("y")?);
                let len = curve.coordinate_len();
                if x.len() != len || y.len() != len {
                    return Err(Error::Key(format!(
                        "JWK coordinates must be {len} bytes for {}",
                        curve.name()
                    )));
                }
                PublicKey::Ec { curve, x, y }
            }
            other => {
                return Err(Error::Key(format!(
                    "JWK key type '{other}' is not supported by a vault"
                )));
            }
        };
        Ok((public, hsm))
    }
}

/// A private key in PKCS#8 DER with its public half.
#[derive(Clone)]
pub struct KeyMaterial {
    pub public: PublicKey,
    pub pkcs8: Vec<u8>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("public", &self.public)
            .field("pkcs8", &"<private>")
            .finish()
    }
}

fn rsa_material(key: &rsa::PrivateKey) -> Result<KeyMaterial, Error> {
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| Error::Key(format!("cannot encode RSA key as PKCS#8: {e}")))?;
    Ok(KeyMaterial {
        public: PublicKey::Rsa {
            n: strip_leading_zeros(&key.n_bytes()),
            e: strip_leading_zeros(&key.e_bytes()),
        },
        pkcs8: pkcs8.as_bytes().to_vec(),
    })
}

macro_rules! ec_material {
    ($crate_:ident, $curve:expr, $secret:expr) => {{
        let secret: &$crate_::SecretKey = $secret;
        let point = secret.public_key().to_encoded_point(false);
        let pkcs8 = secret
            .to_pkcs8_der()
            .map_err(|e| Error::Key(format!("cannot encode EC key as PKCS#8: {e}")))?;
        Ok::<KeyMaterial, Error>(KeyMaterial {
            public: PublicKey::ec_from_point($curve, point.as_bytes())?,
            pkcs8: pkcs8.as_bytes().to_vec(),
        })
    }};
}

/// Generates an RSA key (Key Vault allows 2048, 3072 and 4096 bits). Slow in debug builds: call it
/// off the async runtime.
pub fn generate_rsa(bits: usize) -> Result<KeyMaterial, Error> {
    let mut rng = getrandom::SysRng;
    let key = rsa::PrivateKey::new(&mut rng, bits)
        .map_err(|e| Error::Key(format!("RSA-{bits} generation failed: {e}")))?;
    rsa_material(&key)
}

fn random_scalar(len: usize, top_mask: u8) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| Error::Key(format!("OS RNG failed: {e}")))?;
    bytes[0] &= top_mask;
    Ok(bytes)
}

/// Generates an EC key on a NIST curve.
pub fn generate_ec(curve: Curve) -> Result<KeyMaterial, Error> {
    // A random scalar is out of range only with negligible probability; retry then.
    for _ in 0..64 {
        match curve {
            Curve::P256 => {
                let b = random_scalar(32, 0xff)?;
                if let Ok(k) = p256::SecretKey::from_slice(&b) {
                    return ec_material!(p256, curve, &k);
                }
            }
            Curve::P384 => {
                let b = random_scalar(48, 0xff)?;
                if let Ok(k) = p384::SecretKey::from_slice(&b) {
                    return ec_material!(p384, curve, &k);
                }
            }
            Curve::P521 => {
                let b = random_scalar(66, 0x01)?;
                if let Ok(k) = p521::SecretKey::from_slice(&b) {
                    return ec_material!(p521, curve, &k);
                }
            }
        }
    }
    Err(Error::Key(format!(
        "could not draw a valid {} scalar",
        curve.name()
    )))
}

/// Reads a private key from DER: PKCS#8 (RSA or EC), PKCS#1 RSA, or SEC1 EC.
pub fn parse_private_der(der: &[u8]) -> Result<KeyMaterial, Error> {
    if let Ok(k) = rsa::PrivateKey::from_pkcs8_der(der) {
        return rsa_material(&k);
    }
    if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        return ec_material!(p256, Curve::P256, &k);
    }
    if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
        return ec_material!(p384, Curve::P384, &k);
    }
    if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
        return ec_material!(p521, Curve::P521, &k);
    }
    if let Ok(k) = rsa::PrivateKey::from_pkcs1_der(der) {
        return rsa_material(&k);
    }
    if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        return ec_material!(p256, Curve::P256, &k);
    }
    if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        return ec_material!(p384, Curve::P384, &k);
    }
    if let Ok(k) = p521::SecretKey::from_sec1_der(der) {
        return ec_material!(p521, Curve::P521, &k);
    }
    Err(Error::Key(
        "private key is not an unencrypted PKCS#8, PKCS#1 (RSA) or SEC1 (EC P-256/P-384/P-521) key"
            .into(),
    ))
}

/// Reads the first private key block from PEM text.
pub fn parse_private_pem(text: &str) -> Result<KeyMaterial, Error> {
    let blocks =
        pem::parse_many(text).map_err(|e| Error::Key(format!("PEM is not readable: {e}")))?;
    let block = blocks
        .iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .ok_or_else(|| Error::Key("PEM holds no PRIVATE KEY block".into()))?;
    if block.tag() == "ENCRYPTED PRIVATE KEY" {
        return Err(Error::Key(
            "encrypted PEM private keys are not supported; decrypt the key first".into(),
        ));
    }
    parse_private_der(block.contents())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ec_generation_and_reparse() {
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            let m = generate_ec(curve).unwrap();
            let again = parse_private_der(&m.pkcs8).unwrap();
            assert_eq!(again.public, m.public);
            assert_eq!(m.public.curve(), Some(curve));
            let jwk = m.public.to_jwk("kid", false, &m.public.default_key_ops());
            assert_eq!(jwk["crv"], curve.name());
            assert_eq!(
                b64url_decode(jwk["x"].as_str().unwrap()).unwrap().len(),
                curve.coordinate_len()
            );
        }
    }

    #[test]
    fn import_jwk_requires_private_part() {
        let jwk = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        assert!(PublicKey::from_import_jwk(&jwk).is_err());
    }
}
