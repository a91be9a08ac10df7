//! A PKCS#12 (PFX) decoder for password-less files, as Key Vault stores certificates.
//!
//! Supports unencrypted bags, the legacy PKCS#12 PBE schemes (RC2-40/128 and two/three-key
//! 3DES with SHA-1), PBES2 (PBKDF2 with HMAC-SHA1/224/256/384/512, AES-128/192/256-CBC or
//! 3DES-CBC), and MAC verification with SHA-1 or SHA-2. The password is always empty; PKCS#12
//! implementations disagree on how an empty password is encoded (two zero octets for the BMP
//! terminator, or nothing), so both are tried, as Go's `x/crypto/pkcs12` does.
//!
//! The decoder returns the raw material in bag order; key normalisation and chain ordering live in
//! `keys` and `x509`.
//!
//! Hand-written on purpose: it must read BER (see `der`), which the RustCrypto `pkcs12`/`der`
//! crates refuse, and the crates that do read such files (`p12`, `p12-keystore`, OpenSSL) bring
//! general ASN.1 and crypto stacks too large for a provider that travels in a 1 MiB ConfigMap.

use std::borrow::Cow;

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, InnerIvInit, KeyInit, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::digest::Digest;
use sha2::digest::core_api::BlockSizeUser;
use sha2::{Sha224, Sha256, Sha384, Sha512};

use crate::der::{self, DerError, Reader, Tlv, oids};

/// Upper bound for KDF iteration counts; real files use 1–10,000 (OpenSSL 2048, Windows 2000).
const MAX_ITERATIONS: u64 = 1_000_000;
/// Upper bound on bags, so a hostile file cannot make a mount do unbounded work.
const MAX_BAGS: usize = 256;
/// Upper bound on encrypted containers (each costs one KDF run).
const MAX_ENCRYPTED: usize = 64;

/// Derives the MAC key with the PKCS#12 KDF (ID 3) and checks the HMAC over `data`.
macro_rules! mac_matches {
    ($hash:ty, $password:expr, $salt:expr, $rounds:expr, $data:expr, $expected:expr) => {{
        let key = pkcs12_kdf::<$hash>(
            $password,
            $salt,
            3,
            $rounds,
            <$hash as Digest>::output_size(),
        );
        match <Hmac<$hash> as Mac>::new_from_slice(&key) {
            Ok(mut mac) => {
                mac.update($data);
                mac.verify_slice($expected).is_ok()
            }
            Err(_) => false,
        }
    }};
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs12Error {
    #[error("PKCS#12 structure: {0}")]
    Malformed(#[from] DerError),
    #[error("PKCS#12 version {0} is not supported (expected 3)")]
    Version(u64),
    #[error("PKCS#12 files protected with public-key integrity are not supported")]
    PublicKeyIntegrity,
    #[error("PKCS#12 MAC algorithm {0} is not supported")]
    UnsupportedMac(String),
    #[error(
        "PKCS#12 MAC verification failed: the file is not protected by an empty password, or it is corrupt"
    )]
    MacMismatch,
    #[error("PKCS#12 encryption algorithm {0} is not supported")]
    UnsupportedCipher(String),
    #[error("PKCS#12 content type {0} is not supported")]
    UnsupportedContent(String),
    #[error("PKCS#12 certificate type {0} is not supported (only X.509 certificates)")]
    UnsupportedCertificate(String),
    #[error(
        "PKCS#12 decryption failed: the file is not protected by an empty password, or it is corrupt"
    )]
    Decrypt,
    #[error("PKCS#12 iteration count {0} is out of range")]
    Iterations(u64),
    #[error("PKCS#12 file has too many bags or encrypted containers")]
    TooLarge,
}

type Result<T> = std::result::Result<T, Pkcs12Error>;

/// The contents of a PFX, in bag order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pfx {
    /// Decrypted PKCS#8 `PrivateKeyInfo` encodings (as stored, not normalised).
    pub private_keys: Vec<Vec<u8>>,
    /// DER X.509 certificates.
    pub certificates: Vec<Vec<u8>>,
}

/// The two encodings of the empty password for the PKCS#12 KDF.
const EMPTY_BMP: &[u8] = &[0, 0];
const EMPTY_RAW: &[u8] = &[];

/// Decodes a password-less PFX.
pub fn decode(data: &[u8]) -> Result<Pfx> {
    let pfx = der::parse_single(data)?.expect(der::TAG_SEQUENCE, "PFX is not a SEQUENCE")?;
    let mut fields = pfx.children()?;
    let version = fields.read("missing PFX version")?.small_uint()?;
    if version != 3 {
        return Err(Pkcs12Error::Version(version));
    }
    let auth_safe = fields
        .read("missing authSafe")?
        .expect(der::TAG_SEQUENCE, "authSafe is not a SEQUENCE")?;
    let mut auth_fields = auth_safe.children()?;
    let content_type = auth_fields.read("missing authSafe content type")?.oid()?;
    if content_type != oids::DATA {
        return Err(Pkcs12Error::PublicKeyIntegrity);
    }
    let auth_bytes = explicit_octets(&mut auth_fields)?;

    let password = match fields.next_tlv()? {
        Some(mac_data) => Some(verify_mac(&mac_data, &auth_bytes)?),
        None => None,
    };

    let mut state = DecodeState {
        password,
        pfx: Pfx::default(),
        bags: 0,
        encrypted: 0,
    };
    let safe = der::parse_single(&auth_bytes)?
        .expect(der::TAG_SEQUENCE, "authenticated safe is not a SEQUENCE")?;
    let mut infos = safe.children()?;
    while let Some(info) = infos.next_tlv()? {
        let info = info.expect(der::TAG_SEQUENCE, "ContentInfo is not a SEQUENCE")?;
        let mut info_fields = info.children()?;
        let content_type = info_fields.read("missing content type")?.oid()?;
        if content_type == oids::DATA {
            let contents = explicit_octets(&mut info_fields)?;
            state.safe_contents(&contents, 0)?;
        } else if content_type == oids::ENCRYPTED_DATA {
            let contents = state.encrypted_data(&mut info_fields)?;
            state.safe_contents(&contents, 0)?;
        } else {
            return Err(Pkcs12Error::UnsupportedContent(der::oid_to_string(
                content_type,
            )));
        }
    }
    Ok(state.pfx)
}

/// Reads `[0] EXPLICIT OCTET STRING` and returns the octets.
fn explicit_octets(reader: &mut Reader<'_>) -> Result<Vec<u8>> {
    let wrapper = reader
        .read("missing content")?
        .expect(0xa0, "content is not [0] EXPLICIT")?;
    let inner = wrapper.children()?.read("empty [0] content")?;
    if inner.base_tag() != der::TAG_OCTET_STRING {
        return Err(DerError("content is not an OCTET STRING").into());
    }
    Ok(inner.octets()?.into_owned())
}

fn iterations(value: u64) -> Result<u32> {
    if value == 0 || value > MAX_ITERATIONS {
        return Err(Pkcs12Error::Iterations(value));
    }
    Ok(value as u32)
}

/// Verifies the MAC and returns the password encoding that produced it.
fn verify_mac(mac_data: &Tlv<'_>, auth_bytes: &[u8]) -> Result<&'static [u8]> {
    let mut fields = mac_data
        .expect(der::TAG_SEQUENCE, "MacData is not a SEQUENCE")?
        .children()?;
    let digest_info = fields
        .read("missing DigestInfo")?
        .expect(der::TAG_SEQUENCE, "DigestInfo is not a SEQUENCE")?;
    let mut digest_fields = digest_info.children()?;
    let algorithm = digest_fields
        .read("missing MAC algorithm")?
        .expect(der::TAG_SEQUENCE, "bad MAC algorithm")?;
    let algorithm_oid = algorithm
        .children()?
        .read("missing MAC algorithm OID")?
        .oid()?;
    let expected = digest_fields.read("missing MAC digest")?;
    if expected.base_tag() != der::TAG_OCTET_STRING {
        return Err(DerError("MAC digest is not an OCTET STRING").into());
    }
    let expected = expected.octets()?;
    let salt = fields.read("missing MAC salt")?;
    if salt.base_tag() != der::TAG_OCTET_STRING {
        return Err(DerError("MAC salt is not an OCTET STRING").into());
    }
    let salt = salt.octets()?;
    let rounds = match fields.next_tlv()? {
        Some(count) => iterations(count.small_uint()?)?,
        None => 1,
    };
    for password in [EMPTY_BMP, EMPTY_RAW] {
        let ok = match algorithm_oid {
            oids::SHA1 => mac_matches!(Sha1, password, &salt, rounds, auth_bytes, &expected),
            oids::SHA224 => mac_matches!(Sha224, password, &salt, rounds, auth_bytes, &expected),
            oids::SHA256 => mac_matches!(Sha256, password, &salt, rounds, auth_bytes, &expected),
            oids::SHA384 => mac_matches!(Sha384, password, &salt, rounds, auth_bytes, &expected),
            oids::SHA512 => mac_matches!(Sha512, password, &salt, rounds, auth_bytes, &expected),
            other => return Err(Pkcs12Error::UnsupportedMac(der::oid_to_string(other))),
        };
        if ok {
            return Ok(password);
        }
    }
    Err(Pkcs12Error::MacMismatch)
}

/// The PKCS#12 key derivation function (RFC 7292, appendix B.2).
pub fn pkcs12_kdf<D: Digest + BlockSizeUser>(
    password: &[u8],
    salt: &[u8],
    id: u8,
    rounds: u32,
    len: usize,
) -> Vec<u8> {
    let v = D::block_size();
    let u = <D as Digest>::output_size();
    let repeat_to_blocks = |input: &[u8]| -> Vec<u8> {
        if input.is_empty() {
            return Vec::new();
        }
        let total = input.len().div_ceil(v) * v;
        input.iter().copied().cycle().take(total).collect()
    };
    let d = vec![id; v];
    let mut i_block = repeat_to_blocks(salt);
    i_block.extend(repeat_to_blocks(password));
    let mut out = Vec::with_capacity(len + u);
    while out.len() < len {
        let mut hasher = D::new();
        hasher.update(&d);
        hasher.update(&i_block);
        let mut a = hasher.finalize();
        for _ in 1..rounds {
            a = D::digest(&a);
        }
        out.extend_from_slice(&a);
        if out.len() >= len {
            break;
        }
        let b: Vec<u8> = a.iter().copied().cycle().take(v).collect();
        for chunk in i_block.chunks_mut(v) {
            // chunk = (chunk + b + 1) mod 2^(8v), big-endian.
            let mut carry = 1u16;
            for (x, y) in chunk.iter_mut().zip(b.iter()).rev() {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    out.truncate(len);
    out
}

struct DecodeState {
    /// The password encoding the MAC verified with; `None` when the file has no MAC.
    password: Option<&'static [u8]>,
    pfx: Pfx,
    bags: usize,
    encrypted: usize,
}

impl DecodeState {
    fn encrypted_data(&mut self, info_fields: &mut Reader<'_>) -> Result<Vec<u8>> {
        let wrapper = info_fields
            .read("missing encrypted content")?
            .expect(0xa0, "content is not [0] EXPLICIT")?;
        let encrypted = wrapper
            .children()?
            .read("empty EncryptedData")?
            .expect(der::TAG_SEQUENCE, "EncryptedData is not a SEQUENCE")?;
        let mut fields = encrypted.children()?;
        let _version = fields.read("missing EncryptedData version")?.small_uint()?;
        let content_info = fields
            .read("missing EncryptedContentInfo")?
            .expect(der::TAG_SEQUENCE, "bad EncryptedContentInfo")?;
        let mut content_fields = content_info.children()?;
        let _content_type = content_fields.read("missing content type")?.oid()?;
        let algorithm = content_fields.read("missing content encryption algorithm")?;
        let ciphertext = content_fields.read("missing encrypted content")?;
        if ciphertext.base_tag() != 0x80 {
            return Err(DerError("encrypted content is not [0] IMPLICIT").into());
        }
        let ciphertext = ciphertext.octets()?;
        self.decrypt(&algorithm, &ciphertext)
    }

    fn safe_contents(&mut self, data: &[u8], depth: usize) -> Result<()> {
        if depth > 4 {
            return Err(DerError("safe contents nested too deeply").into());
        }
        let contents =
            der::parse_single(data)?.expect(der::TAG_SEQUENCE, "SafeContents is not a SEQUENCE")?;
        let mut bags = contents.children()?;
        while let Some(bag) = bags.next_tlv()? {
            self.bags += 1;
            if self.bags > MAX_BAGS {
                return Err(Pkcs12Error::TooLarge);
            }
            let mut fields = bag
                .expect(der::TAG_SEQUENCE, "SafeBag is not a SEQUENCE")?
                .children()?;
            let bag_id = fields.read("missing bag id")?.oid()?;
            let value = fields
                .read("missing bag value")?
                .expect(0xa0, "bag value is not [0] EXPLICIT")?;
            let value = value.children()?.read("empty bag value")?;
            // Attributes (friendly name, local key id, CSP name, …) do not reach the output.
            match bag_id {
                oids::KEY_BAG => self.pfx.private_keys.push(value_bytes(&value)),
                oids::SHROUDED_KEY_BAG => {
                    let mut key_fields = value
                        .expect(
                            der::TAG_SEQUENCE,
                            "EncryptedPrivateKeyInfo is not a SEQUENCE",
                        )?
                        .children()?;
                    let algorithm = key_fields.read("missing key encryption algorithm")?;
                    let ciphertext = key_fields.read("missing encrypted key")?;
                    if ciphertext.base_tag() != der::TAG_OCTET_STRING {
                        return Err(DerError("encrypted key is not an OCTET STRING").into());
                    }
                    let plaintext = self.decrypt(&algorithm, &ciphertext.octets()?)?;
                    self.pfx.private_keys.push(plaintext);
                }
                oids::CERT_BAG => {
                    let mut cert_fields = value
                        .expect(der::TAG_SEQUENCE, "CertBag is not a SEQUENCE")?
                        .children()?;
                    let cert_type = cert_fields.read("missing certificate type")?.oid()?;
                    if cert_type != oids::X509_CERTIFICATE {
                        return Err(Pkcs12Error::UnsupportedCertificate(der::oid_to_string(
                            cert_type,
                        )));
                    }
                    let wrapper = cert_fields
                        .read("missing certificate")?
                        .expect(0xa0, "certificate is not [0] EXPLICIT")?;
                    let cert = wrapper.children()?.read("empty certificate")?;
                    if cert.base_tag() != der::TAG_OCTET_STRING {
                        return Err(DerError("certificate is not an OCTET STRING").into());
                    }
                    self.pfx.certificates.push(cert.octets()?.into_owned());
                }
                oids::SAFE_CONTENTS_BAG => self.safe_contents(&value_bytes(&value), depth + 1)?,
                // CRL and secret bags carry nothing the provider writes.
                _ => {}
            }
        }
        Ok(())
    }

    fn decrypt(&mut self, algorithm: &Tlv<'_>, ciphertext: &[u8]) -> Result<Vec<u8>> {
        self.encrypted += 1;
        if self.encrypted > MAX_ENCRYPTED {
            return Err(Pkcs12Error::TooLarge);
        }
        let mut fields = algorithm
            .expect(der::TAG_SEQUENCE, "AlgorithmIdentifier is not a SEQUENCE")?
            .children()?;
        let oid = fields.read("missing algorithm OID")?.oid()?;
        let params = fields.next_tlv()?;
        if oid == oids::PBES2 {
            let params = params.ok_or(DerError("missing PBES2 parameters"))?;
            return decrypt_pbes2(&params, ciphertext);
        }
        let scheme = match oid {
            oids::PBE_SHA1_3DES => LegacyCipher::TripleDes3,
            oids::PBE_SHA1_2DES => LegacyCipher::TripleDes2,
            oids::PBE_SHA1_RC2_128 => LegacyCipher::Rc2 {
                key_len: 16,
                effective_bits: 128,
            },
            oids::PBE_SHA1_RC2_40 => LegacyCipher::Rc2 {
                key_len: 5,
                effective_bits: 40,
            },
            oids::PBE_SHA1_RC4_128 | oids::PBE_SHA1_RC4_40 => {
                return Err(Pkcs12Error::UnsupportedCipher(format!(
                    "{} (RC4)",
                    der::oid_to_string(oid)
                )));
            }
            other => return Err(Pkcs12Error::UnsupportedCipher(der::oid_to_string(other))),
        };
        let params = params.ok_or(DerError("missing PBE parameters"))?;
        let mut param_fields = params
            .expect(der::TAG_SEQUENCE, "PBE parameters are not a SEQUENCE")?
            .children()?;
        let salt = param_fields.read("missing PBE salt")?;
        if salt.base_tag() != der::TAG_OCTET_STRING {
            return Err(DerError("PBE salt is not an OCTET STRING").into());
        }
        let salt = salt.octets()?;
        let rounds = iterations(param_fields.read("missing PBE iterations")?.small_uint()?)?;
        let candidates: &[&[u8]] = match self.password {
            Some(verified) => &[verified][..],
            None => &[EMPTY_BMP, EMPTY_RAW][..],
        };
        for password in candidates {
            if let Some(plaintext) = scheme.decrypt(password, &salt, rounds, ciphertext) {
                return Ok(plaintext);
            }
        }
        Err(Pkcs12Error::Decrypt)
    }
}

/// The encoding of an element nested in `[0] EXPLICIT`, re-encoded with a definite length so
/// that BER input yields DER-framed output.
fn value_bytes(value: &Tlv<'_>) -> Vec<u8> {
    der::encode(value.tag, value.content)
}

#[derive(Clone, Copy)]
enum LegacyCipher {
    TripleDes3,
    TripleDes2,
    Rc2 {
        key_len: usize,
        effective_bits: usize,
    },
}

impl LegacyCipher {
    fn decrypt(
        self,
        password: &[u8],
        salt: &[u8],
        rounds: u32,
        ciphertext: &[u8],
    ) -> Option<Vec<u8>> {
        let key_len = match self {
            LegacyCipher::TripleDes3 => 24,
            LegacyCipher::TripleDes2 => 16,
            LegacyCipher::Rc2 { key_len, .. } => key_len,
        };
        let key = pkcs12_kdf::<Sha1>(password, salt, 1, rounds, key_len);
        let iv = pkcs12_kdf::<Sha1>(password, salt, 2, rounds, 8);
        let mut buffer = ciphertext.to_vec();
        let plaintext_len = match self {
            LegacyCipher::TripleDes3 => cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
                .ok()?
                .decrypt_padded_mut::<Pkcs7>(&mut buffer)
                .ok()?
                .len(),
            LegacyCipher::TripleDes2 => cbc::Decryptor::<des::TdesEde2>::new_from_slices(&key, &iv)
                .ok()?
                .decrypt_padded_mut::<Pkcs7>(&mut buffer)
                .ok()?
                .len(),
            LegacyCipher::Rc2 { effective_bits, .. } => {
                let cipher = rc2::Rc2::new_with_eff_key_len(&key, effective_bits);
                cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(cipher, &iv)
                    .ok()?
                    .decrypt_padded_mut::<Pkcs7>(&mut buffer)
                    .ok()?
                    .len()
            }
        };
        buffer.truncate(plaintext_len);
        Some(buffer)
    }
}

fn decrypt_pbes2(params: &Tlv<'_>, ciphertext: &[u8]) -> Result<Vec<u8>> {
    let mut fields = params
        .expect(der::TAG_SEQUENCE, "PBES2 parameters are not a SEQUENCE")?
        .children()?;
    let kdf = fields
        .read("missing PBES2 key derivation")?
        .expect(der::TAG_SEQUENCE, "bad PBES2 key derivation")?;
    let scheme = fields
        .read("missing PBES2 encryption scheme")?
        .expect(der::TAG_SEQUENCE, "bad PBES2 encryption scheme")?;
    let kdf = Pbkdf2::parse(&kdf)?;
    let cipher = Cbc::parse(&scheme)?;
    if kdf
        .key_length
        .is_some_and(|len| len != cipher.key_len as u64)
    {
        return Err(DerError("PBKDF2 key length does not match the cipher").into());
    }
    let key = kdf.derive(cipher.key_len)?;
    cipher.decrypt(&key, ciphertext)
}

/// PBES2's key derivation: PBKDF2 with its salt, rounds, optional key length and PRF (RFC 8018
/// A.2).
struct Pbkdf2<'a> {
    salt: Cow<'a, [u8]>,
    rounds: u32,
    key_length: Option<u64>,
    prf: &'a [u8],
}

impl<'a> Pbkdf2<'a> {
    fn parse(kdf: &Tlv<'a>) -> Result<Self> {
        let mut kdf_fields = kdf.children()?;
        let kdf_oid = kdf_fields.read("missing KDF OID")?.oid()?;
        if kdf_oid != oids::PBKDF2 {
            return Err(Pkcs12Error::UnsupportedCipher(format!(
                "key derivation {}",
                der::oid_to_string(kdf_oid)
            )));
        }
        let kdf_params = kdf_fields
            .read("missing PBKDF2 parameters")?
            .expect(der::TAG_SEQUENCE, "bad PBKDF2 parameters")?;
        let mut fields = kdf_params.children()?;
        let salt = fields.read("missing PBKDF2 salt")?;
        if salt.base_tag() != der::TAG_OCTET_STRING {
            return Err(Pkcs12Error::UnsupportedCipher(
                "PBKDF2 with a non-literal salt".to_string(),
            ));
        }
        let salt = salt.octets()?;
        let rounds = iterations(fields.read("missing PBKDF2 iterations")?.small_uint()?)?;
        let key_length = match fields.read_optional(der::TAG_INTEGER)? {
            Some(length) => Some(length.small_uint()?),
            None => None,
        };
        let prf = match fields.read_optional(der::TAG_SEQUENCE)? {
            Some(prf) => prf.children()?.read("missing PRF OID")?.oid()?,
            None => oids::HMAC_SHA1,
        };
        Ok(Pbkdf2 {
            salt,
            rounds,
            key_length,
            prf,
        })
    }

    fn derive(&self, key_len: usize) -> Result<Vec<u8>> {
        // PBES2 derives from the password octets themselves: for an empty password, nothing.
        let password: &[u8] = EMPTY_RAW;
        let (salt, rounds) = (&self.salt[..], self.rounds);
        let mut key = vec![0u8; key_len];
        match self.prf {
            oids::HMAC_SHA1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, rounds, &mut key),
            oids::HMAC_SHA224 => pbkdf2::pbkdf2_hmac::<Sha224>(password, salt, rounds, &mut key),
            oids::HMAC_SHA256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut key),
            oids::HMAC_SHA384 => pbkdf2::pbkdf2_hmac::<Sha384>(password, salt, rounds, &mut key),
            oids::HMAC_SHA512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut key),
            other => {
                return Err(Pkcs12Error::UnsupportedCipher(format!(
                    "PBKDF2 PRF {}",
                    der::oid_to_string(other)
                )));
            }
        }
        Ok(key)
    }
}

/// PBES2's encryption scheme: a CBC block cipher and its IV.
struct Cbc<'a> {
    oid: &'a [u8],
    iv: Cow<'a, [u8]>,
    key_len: usize,
}

impl<'a> Cbc<'a> {
    fn parse(scheme: &Tlv<'a>) -> Result<Self> {
        let mut fields = scheme.children()?;
        let oid = fields.read("missing cipher OID")?.oid()?;
        let iv = fields.read("missing cipher IV")?;
        if iv.base_tag() != der::TAG_OCTET_STRING {
            return Err(Pkcs12Error::UnsupportedCipher(format!(
                "{} with non-IV parameters",
                der::oid_to_string(oid)
            )));
        }
        let iv = iv.octets()?;
        let key_len = match oid {
            oids::AES128_CBC => 16,
            oids::AES192_CBC => 24,
            oids::AES256_CBC => 32,
            oids::DES_EDE3_CBC => 24,
            other => return Err(Pkcs12Error::UnsupportedCipher(der::oid_to_string(other))),
        };
        Ok(Cbc { oid, iv, key_len })
    }

    fn decrypt(&self, key: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>> {
        let mut buffer = ciphertext.to_vec();
        let iv = &self.iv[..];
        let plaintext_len = match self.oid {
            oids::AES128_CBC => cbc_decrypt::<aes::Aes128>(key, iv, &mut buffer),
            oids::AES192_CBC => cbc_decrypt::<aes::Aes192>(key, iv, &mut buffer),
            oids::AES256_CBC => cbc_decrypt::<aes::Aes256>(key, iv, &mut buffer),
            _ => cbc_decrypt::<des::TdesEde3>(key, iv, &mut buffer),
        }
        .ok_or(Pkcs12Error::Decrypt)?;
        buffer.truncate(plaintext_len);
        Ok(buffer)
    }
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8], buffer: &mut [u8]) -> Option<usize>
where
    C: cbc::cipher::BlockDecryptMut + cbc::cipher::BlockCipher + KeyInit,
{
    let decryptor = cbc::Decryptor::<C>::new_from_slices(key, iv).ok()?;
    decryptor
        .decrypt_padded_mut::<Pkcs7>(buffer)
        .ok()
        .map(|plaintext| plaintext.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kdf_matches_known_vector() {
        // RFC 7292 style vector (from OpenSSL's test suite): password "smeg" (BMP), salt
        // 0A58CF64530D823F, ID 1, 1 iteration, 24 bytes.
        let password = [0u8, 0x73, 0, 0x6d, 0, 0x65, 0, 0x67, 0, 0];
        let salt = [0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f];
        let key = pkcs12_kdf::<Sha1>(&password, &salt, 1, 1, 24);
        assert_eq!(
            hex::encode(key),
            "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3"
        );
        let iv = pkcs12_kdf::<Sha1>(&password, &salt, 2, 1, 8);
        assert_eq!(hex::encode(iv), "79993dfe048d3b76");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"").is_err());
        assert!(decode(b"\x30\x03\x02\x01\x03").is_err());
        assert!(matches!(
            decode(b"\x30\x03\x02\x01\x02"),
            Err(Pkcs12Error::Version(2))
        ));
    }
}
