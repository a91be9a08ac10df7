//! End-to-end tests of the emulator over real TLS sockets: data plane, identity endpoints,
//! certificate import, faults and observation; its command line; the Azure Python SDK against it.
//!
//! One test binary for the crate: each file below is a module.

#![allow(clippy::unwrap_used)]

mod common;

mod certificates;
mod cli;
mod data_plane;
mod faults;
mod identity;
mod python_sdk;
