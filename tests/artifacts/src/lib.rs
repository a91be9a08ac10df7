//! Paths of the compiled wasm guests, built once per build by `build.rs`.
//!
//! Test crates depend on this crate (as a dev-dependency) and load the components from these paths.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
