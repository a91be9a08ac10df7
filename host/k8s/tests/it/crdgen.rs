//! The CRDs committed under `deploy/crds/` must be exactly what `crdgen` generates now.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::Path;

#[test]
fn committed_crds_match_the_generated_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds");
    let regenerate =
        "regenerate them with `cargo run -p secrets-store-k8s --bin crdgen -- deploy/crds`";
    let files = secrets_store_k8s::crd::crd_files().unwrap();
    assert_eq!(files.len(), 2);
    for (name, generated) in files {
        let path = dir.join(&name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); {regenerate}", path.display()));
        assert!(
            committed == generated,
            "{} differs from the generated CRD; {regenerate}",
            path.display()
        );
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("secrets-store.csi.x-k8s.io_"))
        .collect();
    on_disk.sort();
    assert_eq!(
        on_disk,
        [
            "secrets-store.csi.x-k8s.io_secretproviderclasses.yaml",
            "secrets-store.csi.x-k8s.io_secretproviderclasspodstatuses.yaml"
        ],
        "stale CRD files in deploy/crds; {regenerate}"
    );
}

#[test]
fn committed_crds_parse_as_custom_resource_definitions() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    for (name, yaml) in secrets_store_k8s::crd::crd_files().unwrap() {
        let crd: CustomResourceDefinition =
            serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(crd.spec.group, "secrets-store.csi.x-k8s.io");
    }
}
