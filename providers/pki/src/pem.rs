//! PEM, written with the exact layout of Go's `encoding/pem.Encode` (what the upstream providers
//! write) and read the way Go's `pem.Decode` reads it.
//!
//! Writing goes through `pem-rfc7468`, whose strict RFC 7468 output (base64 in 64-character lines,
//! `\n` line endings) is Go's layout, except for an empty body, where Go writes no line at all.
//!
//! Reading stays hand-written on purpose: what is read are objects users put in a secret store,
//! and upstream accepts them with Go's lenient rules, which a strict RFC 7468 parser refuses: text
//! around and between blocks, RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, which must be seen to
//! refuse an encrypted key), `\r\n` line endings, and broken blocks that are skipped rather than
//! failing the whole object.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pem_rfc7468::LineEnding;

pub const CERTIFICATE: &str = "CERTIFICATE";
pub const PRIVATE_KEY: &str = "PRIVATE KEY";
pub const PUBLIC_KEY: &str = "PUBLIC KEY";
pub const RSA_PRIVATE_KEY: &str = "RSA PRIVATE KEY";
pub const EC_PRIVATE_KEY: &str = "EC PRIVATE KEY";
pub const ENCRYPTED_PRIVATE_KEY: &str = "ENCRYPTED PRIVATE KEY";

/// Why a block could not be written: a label RFC 7468 does not allow, or an impossible length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write a PEM block labelled {label:?}")]
pub struct PemError {
    label: String,
    #[source]
    source: pem_rfc7468::Error,
}

/// Appends one PEM block to `out`.
pub fn encode_into(out: &mut String, label: &str, der: &[u8]) -> Result<(), PemError> {
    let error = |source| PemError {
        label: label.to_string(),
        source,
    };
    let mut block = pem_rfc7468::encode_string(label, LineEnding::LF, der).map_err(error)?;
    if der.is_empty() {
        // Go writes no body line for an empty block; RFC 7468's encoder writes an empty one.
        block = block.replacen("-----\n\n", "-----\n", 1);
    }
    out.push_str(&block);
    Ok(())
}

/// One PEM block.
pub fn encode(label: &str, der: &[u8]) -> Result<String, PemError> {
    let mut out = String::new();
    encode_into(&mut out, label, der)?;
    Ok(out)
}

/// One decoded PEM block. Not `Debug`: it may hold a private key.
pub struct Block {
    pub label: String,
    /// Whether RFC 1421 headers mark it encrypted (`Proc-Type: 4,ENCRYPTED`).
    pub encrypted: bool,
    pub der: Vec<u8>,
}

/// The PEM blocks of `data`, in order, read the way Go's `pem.Decode` reads them: text around and
/// between blocks is ignored, headers are skipped, and a block whose END line is missing or does
/// not match, or whose body is not base64, is ignored. No block: the data is not PEM.
pub fn decode_blocks(data: &[u8]) -> Vec<Block> {
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
        if let Some(block) = decode_body(label, body) {
            blocks.push(block);
        }
    }
    blocks
}

/// A block from its label and the lines between BEGIN and END; `None` if it is not readable.
fn decode_body(label: &[u8], body: &[&[u8]]) -> Option<Block> {
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
    let label = std::str::from_utf8(label).ok()?;
    let der = STANDARD.decode(&text).ok()?;
    Some(Block {
        label: label.to_string(),
        encrypted,
        der,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_layout() {
        assert_eq!(
            encode("X", &[]).unwrap(),
            "-----BEGIN X-----\n-----END X-----\n"
        );
        // 48 bytes -> exactly 64 characters: no empty line before END.
        let block = encode("X", &[0u8; 48]).unwrap();
        assert_eq!(
            block,
            format!("-----BEGIN X-----\n{}\n-----END X-----\n", "A".repeat(64))
        );
        let block = encode("X", &[0u8; 49]).unwrap();
        assert_eq!(
            block,
            format!(
                "-----BEGIN X-----\n{}\nAA==\n-----END X-----\n",
                "A".repeat(64)
            )
        );
        let block = encode("X", &[0u8; 1]).unwrap();
        assert_eq!(block, "-----BEGIN X-----\nAA==\n-----END X-----\n");
    }

    #[test]
    fn bad_labels_are_errors() {
        assert!(encode("BAD-\nLABEL", b"x").is_err());
        assert!(encode("BAD-\nLABEL", b"").is_err());
    }

    #[test]
    fn reader_skips_text_headers_and_broken_blocks() {
        let cert = encode(CERTIFICATE, b"cert-one").unwrap();
        let text = format!(
            "leading text\r\n{cert}-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\nAAAA\n-----END OTHER-----\n\
             -----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"
        );
        let blocks = decode_blocks(text.as_bytes());
        let labels: Vec<_> = blocks.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["CERTIFICATE", "RSA PRIVATE KEY"]);
        assert_eq!(blocks[0].der, b"cert-one");
        assert!(!blocks[0].encrypted);
        assert!(blocks[1].encrypted);
    }
}
