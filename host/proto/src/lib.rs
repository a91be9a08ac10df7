//! Generated gRPC code for the CSI spec and the upstream provider API (v1alpha1).
