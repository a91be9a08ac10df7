//! An in-process fake Kubernetes API server for tests.
