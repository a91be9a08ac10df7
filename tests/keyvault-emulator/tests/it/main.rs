//! End-to-end tests of the emulator over real TLS sockets: data plane, identity endpoints,
//! certificate import, faults and observation.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod certificates;
mod data_plane;
mod faults;
mod identity;
