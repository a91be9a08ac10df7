//! Atomic, confined writer of a mount's files (kubelet AtomicWriter semantics).
