//! Kubernetes side of the driver: CRD types, SecretProviderClass cache, pod status, events, secret sync.
