//! The publish pipeline: everything between a kubelet NodePublishVolume and the files on the
//! volume — SecretProviderClass lookup, the provider call, the tmpfs mount, the atomic write, and
//! the pod status — and its reverse, NodeUnpublishVolume.

mod error;
pub mod mounts;
mod pipeline;
pub mod request;
pub mod target;

pub use error::PublishError;
pub use pipeline::{
    Cluster, PublishMetrics, PublishOutcome, PublishRequest, Publisher, PublisherConfig,
};
