//! Compiles the repository's `proto/` files with protox (a pure-Rust protobuf compiler, so no
//! `protoc` is needed anywhere) and generates prost messages plus tonic clients and servers.
//! Also writes the encoded descriptor set (without source info, with custom options kept) for
//! gRPC reflection.

use std::env;
use std::error::Error;
use std::fs;
use std::path::PathBuf;

/// Paths relative to `proto/`; they become the file names inside the descriptors, so the
/// provider file keeps upstream's name `provider/v1alpha1/service.proto`.
const PROTOS: [&str; 2] = ["csi/v1/csi.proto", "provider/v1alpha1/service.proto"];

/// Messages whose derived `Debug` would print secret material.
const REDACTED_DEBUG: [&str; 6] = [
    ".csi.v1.NodeStageVolumeRequest",
    ".csi.v1.NodePublishVolumeRequest",
    ".csi.v1.NodeExpandVolumeRequest",
    ".csi.v1.NodeGetStorageHealthRequest",
    ".v1alpha1.MountRequest",
    ".v1alpha1.File",
];

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let proto_root = manifest_dir.join("../../proto");

    println!("cargo:rerun-if-changed=build.rs");
    for proto in PROTOS {
        println!(
            "cargo:rerun-if-changed={}",
            proto_root.join(proto).display()
        );
    }

    // Source info feeds the doc comments of the generated code; imports (the well-known types
    // protox ships) are needed to resolve google.protobuf.BoolValue and the option extensions.
    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(PROTOS)
        .map_err(|e| format!("compiling {PROTOS:?} under {}: {e}", proto_root.display()))?;
    let fds = compiler.file_descriptor_set();

    // `prost_types` drops extension values such as `(csi_secret) = true`; protox's own encoder
    // keeps them, which is what a reflection client should see.
    compiler.include_source_info(false);
    fs::write(
        out_dir.join("file_descriptor_set.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        // These carry secrets (or tokens, or secret file contents); `src/redact.rs` gives them
        // Debug impls that never print the values.
        .skip_debug(REDACTED_DEBUG)
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .compile_fds(fds)?;
    Ok(())
}
