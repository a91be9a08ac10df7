//! Compiles every wasm guest once per build and writes their paths into `$OUT_DIR/guests.rs`.
//!
//! The guests live in their own cargo workspaces (`providers/`, `tests/guests/`) because they only
//! build for wasm32-wasip2. They are built with the toolchain running this build, into
//! `<target>/wasm`, so `cargo test` on a fresh clone needs nothing else.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (workspace, [(constant, artifact file stem)])
const WORKSPACES: &[(&str, &[(&str, &str)])] = &[
    ("providers", &[("AZURE", "azure")]),
    (
        "tests/guests",
        &[
            ("ECHO", "echo"),
            ("FETCH", "fetch"),
            ("SPIN", "spin"),
            ("HOG", "hog"),
            ("PANIC", "panic"),
            ("CACHE_LOGGER", "cache_logger"),
            ("CLI_APP", "cli-app"),
        ],
    ),
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("tests/artifacts sits two levels below the root")
        .to_path_buf();
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let wasm_target = target.join("wasm");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());

    for watched in ["wit", "providers", "tests/guests", "host/contract"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let mut generated = String::new();
    let mut names = Vec::new();
    for (workspace, guests) in WORKSPACES {
        build_workspace(
            &cargo,
            &root.join(workspace).join("Cargo.toml"),
            &wasm_target,
        );
        for (constant, stem) in *guests {
            let path = wasm_target
                .join("wasm32-wasip2/release")
                .join(format!("{stem}.wasm"));
            assert!(
                path.exists(),
                "guest {stem} was not produced at {}",
                path.display()
            );
            writeln!(
                generated,
                "/// `{stem}.wasm` from `{workspace}`.\npub const {constant}: &str = {:?};",
                path.display().to_string()
            )
            .expect("writing to a String");
            // The macro lists test guests only; providers have their own suites.
            if *workspace == "tests/guests" {
                names.push(constant.to_lowercase());
            }
        }
    }
    writeln!(
        generated,
        "/// Invokes `$mac!(name)` for every test guest, so a test suite can insist each has a test.\n#[macro_export]\nmacro_rules! foreach_guest {{\n    ($mac:ident) => {{\n{}    }};\n}}",
        names.iter().map(|n| format!("        $mac!({n});\n")).collect::<String>()
    )
    .expect("writing to a String");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("guests.rs");
    std::fs::write(&out, generated).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

fn build_workspace(cargo: &str, manifest: &Path, target_dir: &Path) {
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--workspace",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(manifest);
    // The outer build's settings are for the host target (or for clippy); they must not leak into a
    // wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_TARGET_DIR", target_dir);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cargo} for {}: {e}", manifest.display()));
    assert!(
        status.success(),
        "building the wasm guests in {} failed ({status}); is the wasm32-wasip2 target installed? \
         (`rustup target add wasm32-wasip2`, or run cargo with RUSTUP_AUTO_INSTALL=1)",
        manifest.display()
    );
}
