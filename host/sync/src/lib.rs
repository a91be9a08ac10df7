//! Secret sync: after a mount (and on every republish refresh), the Kubernetes Secrets a
//! SecretProviderClass describes in `spec.secretObjects` are created or updated from the files just
//! written.
//!
//! - [`secret_sync`]: [`SecretSync`], the steps of one sync (check the entries, find the owner,
//!   write each Secret) and its caches;
//! - `desired`: what each entry asks for, checked without the API, and its fingerprint;
//! - `secret`: the Secret objects written (created, updated, refused);
//! - [`tls`]: the `tls.crt`/`tls.key` values of a `kubernetes.io/tls` Secret, cut with
//!   `secrets-store-pki`;
//! - [`SyncError`]: why one Secret was not synced.
//!
//! The Kubernetes adapter (`secrets-store-k8s`) supplies the client, the CRD types, the pod lookup
//! and the event recorder; this crate decides what to write.

mod desired;
mod error;
mod secret;
pub mod secret_sync;
pub mod tls;

pub use error::SyncError;
pub use secret_sync::{MANAGED_LABEL, SecretSync, SyncReport, SyncRequest};
