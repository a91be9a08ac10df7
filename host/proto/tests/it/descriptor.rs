//! Checks on the exported `FILE_DESCRIPTOR_SET`: it describes both APIs with their upstream
//! package, service and method names, and it keeps the `csi_secret` field options that
//! `prost_types` would have dropped.

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use secrets_store_proto::FILE_DESCRIPTOR_SET;

fn set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

fn file<'a>(set: &'a FileDescriptorSet, name: &str) -> &'a FileDescriptorProto {
    set.file
        .iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn methods(file: &FileDescriptorProto, service: &str) -> Vec<String> {
    file.service
        .iter()
        .find(|s| s.name() == service)
        .unwrap_or_else(|| panic!("service {service} missing"))
        .method
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

#[test]
fn csi_file_has_the_identity_and_node_services_only() {
    let set = set();
    let csi = file(&set, "csi/v1/csi.proto");
    assert_eq!(csi.package(), "csi.v1");
    assert_eq!(
        methods(csi, "Identity"),
        ["GetPluginInfo", "GetPluginCapabilities", "Probe"]
    );
    assert_eq!(
        methods(csi, "Node"),
        [
            "NodeStageVolume",
            "NodeUnstageVolume",
            "NodePublishVolume",
            "NodeUnpublishVolume",
            "NodeGetVolumeStats",
            "NodeGetVolumeHealth",
            "NodeGetStorageHealth",
            "NodeExpandVolume",
            "NodeGetCapabilities",
            "NodeGetInfo",
        ]
    );
    assert_eq!(csi.service.len(), 2);
    // The imports travel with the set, so a reflection client can resolve everything.
    file(&set, "google/protobuf/wrappers.proto");
    file(&set, "google/protobuf/descriptor.proto");
    // No source info: comments are not shipped in the binary.
    assert!(set.file.iter().all(|f| f.source_code_info.is_none()));
}

#[test]
fn provider_file_matches_upstream_names() {
    let set = set();
    let provider = file(&set, "provider/v1alpha1/service.proto");
    assert_eq!(provider.package(), "v1alpha1");
    assert_eq!(
        provider
            .options
            .as_ref()
            .and_then(|o| o.go_package.as_deref()),
        Some("./provider/v1alpha1")
    );
    assert_eq!(methods(provider, "CSIDriverProvider"), ["Version", "Mount"]);
    let mount = provider
        .message_type
        .iter()
        .find(|m| m.name() == "MountRequest")
        .expect("MountRequest");
    let fields: Vec<(&str, i32)> = mount.field.iter().map(|f| (f.name(), f.number())).collect();
    assert_eq!(
        fields,
        [
            ("attributes", 1),
            ("secrets", 2),
            ("target_path", 3),
            ("permission", 4),
            ("current_object_version", 5)
        ]
    );
}

/// Counts non-overlapping occurrences of `needle` in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

#[test]
fn csi_secret_options_survive_in_the_encoded_set() {
    // FieldDescriptorProto.options (field 8, length-delimited: 0x42) holding FieldOptions with
    // extension 1059 (csi_secret) = true: tag 1059 << 3 = 0x2118, varint 0x98 0x42, value 1.
    let csi_secret_only = [0x42, 0x03, 0x98, 0x42, 0x01];
    // NodeStageVolumeRequest, NodePublishVolumeRequest and NodeGetStorageHealthRequest secrets.
    assert_eq!(occurrences(FILE_DESCRIPTOR_SET, &csi_secret_only), 3);
    // NodeExpandVolumeRequest.secrets also carries alpha_field (1060 << 3 = 0x2120: 0xa0 0x42).
    let csi_secret_and_alpha = [0x42, 0x06, 0x98, 0x42, 0x01, 0xa0, 0x42, 0x01];
    assert_eq!(occurrences(FILE_DESCRIPTOR_SET, &csi_secret_and_alpha), 1);
}
