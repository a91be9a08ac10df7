//! Kubernetes side of the driver: CRD types, SecretProviderClass cache, pod status, events, and the
//! API error type. Secret sync (`secrets-store-sync`) builds on it.
//!
//! Everything here talks to the API server through a [`kube::Client`] built by [`client::build`];
//! the driver uses GET, LIST, WATCH, create, replace (with the resourceVersion it read), DELETE and
//! JSON merge patch only, never server-side apply.

pub mod client;
pub mod crd;
mod error;
pub mod events;
pub mod pod;
pub mod pod_status;
pub mod spc_cache;

pub use client::{ClientOptions, build as build_client};
pub use crd::v1::{SecretProviderClass, SecretProviderClassPodStatus};
pub use error::{Error, Op};
pub use events::{EventRecorder, EventType, pod_reference};
pub use pod::{PodInfo, get_pod};
pub use pod_status::{MountStatus, PodStatusWriter, WriteOutcome, pod_status_name};
pub use spc_cache::SpcCache;
