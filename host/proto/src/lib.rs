//! Generated gRPC code (prost messages, tonic clients and servers) for the two wire APIs the
//! driver speaks:
//!
//! - [`csi::v1`]: the CSI spec v1.13.0 Identity and Node services, served to kubelet.
//! - [`provider::v1alpha1`]: the upstream Secrets Store CSI driver provider API
//!   (`CSIDriverProvider`), for talking to out-of-process provider plugins.
//!
//! The sources are `proto/csi/v1/csi.proto` and `proto/provider/v1alpha1/service.proto` at the
//! repository root; `build.rs` compiles them with protox, so building needs no `protoc`.
//!
//! Messages that carry secrets (CSI `secrets` maps, service account tokens in a volume context,
//! the provider's `MountRequest` and `File`) have hand-written `Debug` impls that mask them; see
//! [`redact`].

pub mod redact;

/// Container Storage Interface messages and services.
pub mod csi {
    /// Package `csi.v1`: `Identity` ([`identity_server`], [`identity_client`]) and `Node`
    /// ([`node_server`], [`node_client`]).
    #[allow(
        missing_docs,
        clippy::all,
        clippy::pedantic,
        clippy::nursery,
        rustdoc::all,
        reason = "generated code"
    )]
    pub mod v1 {
        tonic::include_proto!("csi.v1");
    }
}

/// The upstream provider plugin API.
pub mod provider {
    /// Package `v1alpha1`: service `CSIDriverProvider` ([`csi_driver_provider_server`],
    /// [`csi_driver_provider_client`]).
    #[allow(
        missing_docs,
        clippy::all,
        clippy::pedantic,
        clippy::nursery,
        rustdoc::all,
        reason = "generated code"
    )]
    pub mod v1alpha1 {
        tonic::include_proto!("v1alpha1");
    }
}

/// Encoded `google.protobuf.FileDescriptorSet` of both APIs and the well-known types they import
/// (no source info; custom options such as `csi_secret` kept), e.g. for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));
