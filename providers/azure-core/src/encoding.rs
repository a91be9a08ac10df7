//! Base64 and hex decoding with the semantics of the Go code upstream relies on, and error
//! messages that give a position only, never the (secret) input; JSON errors likewise. Percent
//! encoding of URL parts and form values as Go's `net/url` writes them (through `percent-encoding`).

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters is escaped (Go's `url.PathEscape` and
/// `url.QueryEscape` agree on these).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// In a query value `:` and `/` may stay, so that a resource URL reads as upstream sends it
/// (`?resource=https://vault.azure.net`).
const QUERY_VALUE: &AsciiSet = &UNRESERVED.remove(b':').remove(b'/');

/// One URL path segment, percent-encoded.
pub fn url_segment(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// One query value, percent-encoded but keeping `:` and `/`.
pub fn query_value(text: &str) -> String {
    utf8_percent_encode(text, QUERY_VALUE).to_string()
}

/// One `application/x-www-form-urlencoded` name or value, as Go's `url.QueryEscape`: spaces
/// become `+`.
pub fn form_value(text: &str) -> String {
    text.split(' ')
        .map(|part| utf8_percent_encode(part, UNRESERVED).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits tolerated.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Standard alphabet, padding optional (JSON `[]byte` fields as Azure SDKs read them).
const LENIENT_STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// URL-safe alphabet, padding optional (JSON Web Key members).
const LENIENT_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("illegal base64 data at input byte {0}")]
    Base64(usize),
    #[error("invalid hex data at input byte {0}")]
    Hex(usize),
    #[error("odd length hex string")]
    OddHex,
}

fn position(error: base64::DecodeError, len: usize) -> DecodeError {
    match error {
        base64::DecodeError::InvalidByte(offset, _)
        | base64::DecodeError::InvalidLastSymbol(offset, _) => DecodeError::Base64(offset),
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => {
            DecodeError::Base64(len)
        }
    }
}

/// Go's `base64.StdEncoding.DecodeString`, which skips `\r` and `\n`.
pub fn go_std_base64(text: &str) -> Result<Vec<u8>, DecodeError> {
    let cleaned: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    GO_STD
        .decode(&cleaned)
        .map_err(|e| position(e, cleaned.len()))
}

pub fn lenient_std_base64(text: &str) -> Result<Vec<u8>, DecodeError> {
    LENIENT_STD
        .decode(text)
        .map_err(|e| position(e, text.len()))
}

pub fn lenient_url_base64(text: &str) -> Result<Vec<u8>, DecodeError> {
    LENIENT_URL
        .decode(text)
        .map_err(|e| position(e, text.len()))
}

/// A `serde_json` error as text, with every string it quotes from the input cut to `"…"`.
/// serde describes a value of the wrong type by quoting it (`invalid type: string "…",
/// expected struct …`), and in a token or secret response that value is the token or the secret.
/// The category, the expected shape and the position stay.
pub fn json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            // serde quotes with `{:?}`: skip escaped characters up to the closing quote.
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            out.push_str("…\"");
        }
    }
    out
}

/// Go's `hex.DecodeString` (either case, even length).
pub fn go_hex(text: &str) -> Result<Vec<u8>, DecodeError> {
    let bytes = text.as_bytes();
    let value = |b: u8| -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = value(pair[0]).ok_or(DecodeError::Hex(2 * i))?;
        let Some(&lo) = pair.get(1) else {
            return Err(DecodeError::OddHex);
        };
        let lo = value(lo).ok_or(DecodeError::Hex(2 * i + 1))?;
        out.push((hi << 4) | lo);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_as_go_writes_it() {
        assert_eq!(url_segment("a/b c~é"), "a%2Fb%20c~%C3%A9");
        assert_eq!(form_value("a b*+~"), "a+b%2A%2B~");
        assert_eq!(form_value(" "), "+");
        assert_eq!(
            query_value("https://vault.azure.net/x?y"),
            "https://vault.azure.net/x%3Fy"
        );
    }

    #[test]
    fn go_semantics() {
        assert_eq!(go_std_base64("aGk=\r\n").unwrap(), b"hi");
        assert_eq!(go_std_base64("aGl=").unwrap(), b"hi"); // trailing bits tolerated
        assert_eq!(go_std_base64("aGk"), Err(DecodeError::Base64(3)));
        assert_eq!(go_std_base64("a!k="), Err(DecodeError::Base64(1)));
        assert_eq!(go_hex("48656C6c6f").unwrap(), b"Hello");
        assert_eq!(go_hex("4"), Err(DecodeError::OddHex));
        assert_eq!(go_hex("zz"), Err(DecodeError::Hex(0)));
        assert_eq!(lenient_url_base64("-_8").unwrap(), vec![0xfb, 0xff]);
    }
}
