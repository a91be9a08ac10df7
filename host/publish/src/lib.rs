//! The publish pipeline: everything between a kubelet NodePublishVolume and the files on the
//! volume — SecretProviderClass lookup, the provider call, the tmpfs mount, the atomic write, and
//! the pod status — and its reverse, NodeUnpublishVolume.
//!
//! | module | job |
//! |---|---|
//! | `pipeline` | the [`Publisher`]: publish, first mount, unpublish; `pipeline::rotation` the republish |
//! | `volume` | the request, the volume's pod and class, busy and mounted volumes in memory |
//! | `cluster` | the Kubernetes side: the class, the pod status, events, synced Secrets |
//! | [`request`] | the provider's mount request, assembled as upstream does |
//! | [`target`] | which target paths may be mounted |
//! | [`mounts`] | the volume's tmpfs |
//! | `error`, `class` | [`PublishError`] and its one classification, [`ErrorClass`] |
//! | `metrics` | [`PublishMetrics`], what the pipeline reports |

mod class;
mod cluster;
mod error;
mod metrics;
pub mod mounts;
mod pipeline;
pub mod request;
pub mod target;
mod volume;

pub use class::ErrorClass;
pub use cluster::Cluster;
pub use error::PublishError;
pub use metrics::PublishMetrics;
pub use pipeline::{PublishOutcome, Publisher, PublisherConfig};
/// The gRPC status code a gRPC provider answered with, as [`ErrorClass::Provider`] carries it.
pub use secrets_store_providers::GrpcCode;
pub use volume::PublishRequest;
