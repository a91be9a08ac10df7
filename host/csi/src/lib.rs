//! The driver's gRPC surfaces, all on unix sockets: the CSI Identity and Node services kubelet calls,
//! and the upstream provider API (`v1alpha1.CSIDriverProvider`) through which the upstream Go driver
//! can use a sandboxed wasm provider. Every error becomes a `tonic::Status` here, in `status`, and
//! nowhere else.
//!
//! | module | job |
//! |---|---|
//! | `error` | [`RequestError`]: what the services refuse themselves |
//! | `identity` | CSI Identity: who the driver is, and the liveness probe |
//! | `node` | CSI Node: publish and unpublish through the pipeline |
//! | `provider_api` | `v1alpha1.CSIDriverProvider` in front of one wasm provider |
//! | [`server`] | serving on a unix socket, replacing stale sockets, stopping gracefully |
//! | [`status`] | the pipeline's [`ErrorClass`](secrets_store_publish::ErrorClass) as a gRPC code |

mod error;
mod identity;
mod node;
mod provider_api;
pub mod server;
pub mod status;

pub use error::RequestError;
pub use identity::{DRIVER_NAME, IdentityService};
pub use node::NodeService;
pub use provider_api::ProviderApiService;
