//! Compiles every wasm guest once per build and writes their paths into `$OUT_DIR/guests.rs`.
//!
//! The guests live in their own cargo workspaces (`providers/`, `tests/guests/`) because they only
//! build for wasm32-wasip2. They are built with the toolchain running this build, into
//! `<target>/wasm`, so `cargo test` on a fresh clone needs nothing else.
//!
//! The guest list is not kept by hand: `cargo metadata` of each guest workspace names its members,
//! and every `cdylib` (a provider or a reactor guest) or `bin` (a command guest) target becomes a
//! constant, its name upper-cased (`cache_logger` → `CACHE_LOGGER`, `cli-app` → `CLI_APP`). The
//! build reruns only when something a guest is built from changes: the sources and manifests of the
//! local packages the guest workspaces use (the SDK, azure-core, the contract, …), their lock files,
//! and `wit/`; never because of what it writes itself (under the target directory).

use std::collections::BTreeSet;
use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest workspaces, relative to the repository root. Providers have their own suites; the
/// `foreach_guest!` macro lists the test guests only.
const WORKSPACES: &[(&str, Kind)] = &[
    ("providers", Kind::Provider),
    ("tests/guests", Kind::TestGuest),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Provider,
    TestGuest,
}

/// One wasm artifact of a guest workspace.
struct Guest {
    /// The generated constant's name.
    constant: String,
    /// The artifact's file stem under `wasm32-wasip2/release`.
    stem: String,
}

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

    let mut watched = BTreeSet::new();
    watched.insert(root.join("wit"));
    let mut generated = String::new();
    let mut names = Vec::new();
    for (workspace, kind) in WORKSPACES {
        let manifest = root.join(workspace).join("Cargo.toml");
        let metadata = metadata(&cargo, &manifest);
        watched.insert(manifest.clone());
        watched.insert(root.join(workspace).join("Cargo.lock"));
        watched.extend(local_sources(&metadata));
        build_workspace(&cargo, &manifest, &wasm_target);
        for guest in guests(&metadata) {
            let path = wasm_target
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", guest.stem));
            assert!(
                path.exists(),
                "guest {} was not produced at {}",
                guest.stem,
                path.display()
            );
            writeln!(
                generated,
                "/// `{}.wasm` from `{workspace}`.\npub const {}: &str = {:?};",
                guest.stem,
                guest.constant,
                path.display().to_string()
            )
            .expect("writing to a String");
            if *kind == Kind::TestGuest {
                names.push(guest.constant.to_lowercase());
            }
        }
    }
    for path in &watched {
        println!("cargo:rerun-if-changed={}", path.display());
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

/// A command for `cargo` on a guest workspace, without the outer build's settings: they are for
/// the host target (or for clippy) and must not leak into a wasm build.
fn guest_cargo(cargo: &str) -> Command {
    let mut cmd = Command::new(cargo);
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
    cmd
}

/// `cargo metadata` of a guest workspace for the wasm target, dependencies resolved (from its lock
/// file), so the local packages it uses from outside its directory are listed too.
fn metadata(cargo: &str, manifest: &Path) -> serde_json::Value {
    let output = guest_cargo(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .unwrap_or_else(|e| panic!("running {cargo} metadata for {}: {e}", manifest.display()));
    assert!(
        output.status.success(),
        "cargo metadata for {} failed: {}",
        manifest.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("cargo metadata for {}: {e}", manifest.display()))
}

/// The wasm artifacts of the workspace's members: every `cdylib` and `bin` target.
fn guests(metadata: &serde_json::Value) -> Vec<Guest> {
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str())
        .collect();
    let mut guests = Vec::new();
    for package in packages(metadata) {
        if !package["id"]
            .as_str()
            .is_some_and(|id| members.contains(id))
        {
            continue;
        }
        for target in package["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = target["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str())
                .collect();
            let Some(name) = target["name"].as_str() else {
                continue;
            };
            // A library's file is named after the target with `-` as `_`; a binary's as is.
            let stem = if kinds.contains(&"cdylib") {
                name.replace('-', "_")
            } else if kinds.contains(&"bin") {
                name.to_string()
            } else {
                continue;
            };
            guests.push(Guest {
                constant: name.replace('-', "_").to_uppercase(),
                stem,
            });
        }
    }
    guests
}

/// What the local (path) packages of a workspace are built from: each one's manifest, `src/` and
/// build script. Their tests, benches and fuzz targets are not part of a guest.
fn local_sources(metadata: &serde_json::Value) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for package in packages(metadata) {
        // Registry and git packages have a source; local ones do not.
        if !package["source"].is_null() {
            continue;
        }
        let Some(manifest) = package["manifest_path"].as_str().map(PathBuf::from) else {
            continue;
        };
        let Some(dir) = manifest.parent() else {
            continue;
        };
        paths.push(dir.join("src"));
        let build_script = dir.join("build.rs");
        if build_script.exists() {
            paths.push(build_script);
        }
        paths.push(manifest);
    }
    paths
}

fn packages(metadata: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    metadata["packages"].as_array().into_iter().flatten()
}

fn build_workspace(cargo: &str, manifest: &Path, target_dir: &Path) {
    let mut cmd = guest_cargo(cargo);
    cmd.args([
        "build",
        "--release",
        "--workspace",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(manifest);
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
