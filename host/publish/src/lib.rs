//! The publish pipeline: everything between a kubelet NodePublishVolume and the files on the
//! volume — SecretProviderClass lookup, the tmpfs mount, the provider call, the atomic write, and
//! the pod status.

pub mod request;
