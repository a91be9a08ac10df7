//! PEM encoding with the exact layout of Go's `encoding/pem.Encode` (what the upstream provider
//! writes): a BEGIN line, base64 in 64-character lines, an END line, each ending in `\n`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub const CERTIFICATE: &str = "CERTIFICATE";
pub const PRIVATE_KEY: &str = "PRIVATE KEY";
pub const PUBLIC_KEY: &str = "PUBLIC KEY";

/// Appends one PEM block to `out`.
pub fn encode_into(out: &mut String, label: &str, der: &[u8]) {
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let text = STANDARD.encode(der);
    for line in text.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}

pub fn encode(label: &str, der: &[u8]) -> String {
    let mut out = String::new();
    encode_into(&mut out, label, der);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_layout() {
        assert_eq!(encode("X", &[]), "-----BEGIN X-----\n-----END X-----\n");
        // 48 bytes -> exactly 64 characters: no empty line before END.
        let block = encode("X", &[0u8; 48]);
        assert_eq!(
            block,
            format!("-----BEGIN X-----\n{}\n-----END X-----\n", "A".repeat(64))
        );
        let block = encode("X", &[0u8; 49]);
        assert_eq!(
            block,
            format!(
                "-----BEGIN X-----\n{}\nAA==\n-----END X-----\n",
                "A".repeat(64)
            )
        );
    }
}
