//! The PKI formats every provider and the driver's secret sync share: pure Rust, no I/O, and small
//! enough to be compiled into every wasm guest.
//!
//! - [`der`]: a BER-tolerant DER reader and a DER writer;
//! - [`pem`]: PEM written in Go's layout and read with Go's lenient rules;
//! - [`pkcs12`]: password-less PKCS#12 (PFX) decoding;
//! - [`keys`]: private key normalisation (PKCS#8, PKCS#1, SEC1) and JSON Web Key → SPKI;
//! - [`x509`]: certificate chain ordering (leaf first).
//!
//! Output is byte-compatible with what Go's `crypto/x509` and `encoding/pem` write, because the
//! upstream providers and driver are Go and users compare files. Errors never carry key or
//! certificate bytes.

pub mod der;
pub mod keys;
pub mod pem;
pub mod pkcs12;
pub mod x509;
