//! The driver's gRPC surfaces, all on unix sockets: the CSI Identity and Node services kubelet calls,
//! and the upstream provider API (`v1alpha1.CSIDriverProvider`) through which the upstream Go driver
//! can use a sandboxed wasm provider. Every error becomes a `tonic::Status` here, in `status`, and
//! nowhere else.

mod identity;
mod node;
mod provider_api;
pub mod server;
pub mod status;

pub use identity::{DRIVER_NAME, IdentityService};
pub use node::NodeService;
pub use provider_api::ProviderApiService;
