//! Wire-format checks: the generated messages must produce and accept exactly the bytes the
//! protobuf encoding rules give for the CSI v1.13.0 and provider v1alpha1 field numbers and
//! types. The expected bytes are written out by hand from those rules (tag = field << 3 | wire
//! type; 2 = length-delimited, 0 = varint), independently of the generated code.

use std::collections::HashMap;

use prost::Message;
use secrets_store_proto::csi::v1 as csi;
use secrets_store_proto::provider::v1alpha1 as provider;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn publish_request() -> csi::NodePublishVolumeRequest {
    csi::NodePublishVolumeRequest {
        volume_id: "vol-1".into(),
        publish_context: HashMap::new(),
        staging_target_path: String::new(),
        target_path: "/t".into(),
        volume_capability: Some(csi::VolumeCapability {
            access_type: Some(csi::volume_capability::AccessType::Mount(
                csi::volume_capability::MountVolume::default(),
            )),
            access_mode: Some(csi::volume_capability::AccessMode {
                mode: csi::volume_capability::access_mode::Mode::SingleNodeReaderOnly as i32,
            }),
        }),
        readonly: true,
        secrets: map(&[("a", "b")]),
        volume_context: map(&[("k", "v")]),
    }
}

/// `publish_request()` encoded by hand, fields in number order.
const PUBLISH_REQUEST_BYTES: &[u8] = &[
    0x0a, 0x05, b'v', b'o', b'l', b'-', b'1', // 1 volume_id
    0x22, 0x02, b'/', b't', // 4 target_path
    0x2a, 0x06, // 5 volume_capability, 6 bytes:
    0x12, 0x00, //   2 mount (empty MountVolume, still present: it selects the oneof)
    0x1a, 0x02, 0x08, 0x02, //   3 access_mode { 1 mode = SINGLE_NODE_READER_ONLY (2) }
    0x30, 0x01, // 6 readonly = true
    0x3a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', // 7 secrets entry {1 key, 2 value}
    0x42, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // 8 volume_context entry
];

#[test]
fn node_publish_volume_request_encodes_to_the_spec_bytes() {
    assert_eq!(publish_request().encode_to_vec(), PUBLISH_REQUEST_BYTES);
}

#[test]
fn node_publish_volume_request_decodes_out_of_order_fields_and_skips_unknown_ones() {
    // A newer kubelet may send fields we do not know; decoding must skip them. Field order on
    // the wire is free.
    let mut bytes = vec![
        0x42, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // 8 volume_context
        0x98, 0x06, 0x07, // unknown field 99 (varint) = 7
        0x30, 0x01, // 6 readonly
        0xa2, 0x06, 0x02, b'z', b'z', // unknown field 100 (length-delimited) = "zz"
    ];
    bytes.extend_from_slice(&PUBLISH_REQUEST_BYTES[..11]); // volume_id, target_path
    bytes.extend_from_slice(&PUBLISH_REQUEST_BYTES[11..19]); // volume_capability
    bytes.extend_from_slice(&PUBLISH_REQUEST_BYTES[21..29]); // secrets
    let decoded = csi::NodePublishVolumeRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(decoded, publish_request());
}

#[test]
fn node_get_info_and_probe_responses_encode_to_the_spec_bytes() {
    let info = csi::NodeGetInfoResponse {
        node_id: "n1".into(),
        max_volumes_per_node: 0,
        accessible_topology: Some(csi::Topology {
            segments: map(&[("zone", "z1")]),
        }),
    };
    let expected: &[u8] = &[
        0x0a, 0x02, b'n', b'1', // 1 node_id
        0x1a, 0x0c, // 3 accessible_topology, 12 bytes:
        0x0a, 0x0a, //   1 segments entry, 10 bytes:
        0x0a, 0x04, b'z', b'o', b'n', b'e', 0x12, 0x02, b'z', b'1',
    ];
    assert_eq!(info.encode_to_vec(), expected);

    // ready is a google.protobuf.BoolValue (a message whose field 1 is the bool).
    let probe = csi::ProbeResponse { ready: Some(true) };
    assert_eq!(probe.encode_to_vec(), [0x0a, 0x02, 0x08, 0x01]);
    assert_eq!(csi::ProbeResponse { ready: None }.encode_to_vec(), [0u8; 0]);
}

#[test]
fn node_capabilities_use_the_spec_enum_values() {
    use csi::node_service_capability::{Rpc, Type, rpc::Type as RpcType};
    let response = csi::NodeGetCapabilitiesResponse {
        capabilities: vec![csi::NodeServiceCapability {
            r#type: Some(Type::Rpc(Rpc {
                r#type: RpcType::VolumeMountGroup as i32,
            })),
        }],
    };
    // 1 capabilities { 1 rpc { 1 type = VOLUME_MOUNT_GROUP (6) } }
    assert_eq!(
        response.encode_to_vec(),
        [0x0a, 0x04, 0x0a, 0x02, 0x08, 0x06]
    );
    assert_eq!(RpcType::GetStorageHealth as i32, 8);
    assert_eq!(
        csi::plugin_capability::service::Type::SnapshotAccessibilityConstraints as i32,
        5
    );
    assert_eq!(
        csi::volume_capability::access_mode::Mode::SingleNodeMultiWriter as i32,
        7
    );
}

fn mount_request() -> provider::MountRequest {
    provider::MountRequest {
        attributes: "{}".into(),
        secrets: "{}".into(),
        target_path: "/p".into(),
        permission: "420".into(),
        current_object_version: vec![provider::ObjectVersion {
            id: "secret/a".into(),
            version: "v1".into(),
        }],
    }
}

const OBJECT_VERSION_BYTES: &[u8] = &[
    0x0a, 0x08, b's', b'e', b'c', b'r', b'e', b't', b'/', b'a', // 1 id
    0x12, 0x02, b'v', b'1', // 2 version
];

#[test]
fn mount_request_encodes_to_the_upstream_bytes() {
    let mut expected = vec![
        0x0a, 0x02, b'{', b'}', // 1 attributes
        0x12, 0x02, b'{', b'}', // 2 secrets
        0x1a, 0x02, b'/', b'p', // 3 target_path
        0x22, 0x03, b'4', b'2', b'0', // 4 permission
        0x2a, 0x0e, // 5 current_object_version, 14 bytes
    ];
    expected.extend_from_slice(OBJECT_VERSION_BYTES);
    assert_eq!(mount_request().encode_to_vec(), expected);
    assert_eq!(
        provider::MountRequest::decode(expected.as_slice()).expect("decodes"),
        mount_request()
    );
}

#[test]
fn mount_response_decodes_from_the_upstream_bytes() {
    let mut bytes = vec![0x0a, 0x0e]; // 1 object_version, 14 bytes
    bytes.extend_from_slice(OBJECT_VERSION_BYTES);
    bytes.extend_from_slice(&[
        0x12, 0x04, 0x0a, 0x02, b'E', b'1', // 2 error { 1 code }
        0x1a, 0x0b, // 3 files, 11 bytes:
        0x0a, 0x01, b'a', //   1 path
        0x10, 0xa4, 0x03, //   2 mode = 420 (0o644) as a varint
        0x1a, 0x03, 0x00, 0x01, 0xff, //   3 contents
    ]);
    let expected = provider::MountResponse {
        object_version: vec![provider::ObjectVersion {
            id: "secret/a".into(),
            version: "v1".into(),
        }],
        error: Some(provider::Error { code: "E1".into() }),
        files: vec![provider::File {
            path: "a".into(),
            mode: 0o644,
            contents: vec![0x00, 0x01, 0xff],
        }],
    };
    assert_eq!(
        provider::MountResponse::decode(bytes.as_slice()).expect("decodes"),
        expected
    );
    assert_eq!(expected.encode_to_vec(), bytes);
}

#[test]
fn version_messages_encode_to_the_upstream_bytes() {
    let request = provider::VersionRequest {
        version: "v1alpha1".into(),
    };
    assert_eq!(request.encode_to_vec(), b"\x0a\x08v1alpha1");
    let response = provider::VersionResponse {
        version: "v1alpha1".into(),
        runtime_name: "n".into(),
        runtime_version: "1".into(),
    };
    assert_eq!(
        response.encode_to_vec(),
        b"\x0a\x08v1alpha1\x12\x01n\x1a\x011"
    );
}

#[test]
fn debug_output_never_contains_secret_material() {
    let mut request = publish_request();
    request.secrets = map(&[("clientsecret", "hunter2-value")]);
    request.volume_context = map(&[
        ("csi.storage.k8s.io/pod.name", "web-0"),
        (
            "csi.storage.k8s.io/serviceAccount.tokens",
            "{\"api://AzureADTokenExchange\":{\"token\":\"eyJtoken\"}}",
        ),
    ]);
    let shown = format!("{request:?}");
    assert!(!shown.contains("hunter2-value"), "{shown}");
    assert!(!shown.contains("eyJtoken"), "{shown}");
    assert!(shown.contains("clientsecret"), "{shown}");
    assert!(shown.contains("web-0"), "{shown}");
    assert!(shown.contains("vol-1"), "{shown}");

    let mount = provider::MountRequest {
        attributes: "{\"csi.storage.k8s.io/serviceAccount.tokens\":\"eyJtoken\"}".into(),
        secrets: "{\"clientsecret\":\"hunter2-value\"}".into(),
        ..mount_request()
    };
    let shown = format!("{mount:?}");
    assert!(
        !shown.contains("eyJtoken") && !shown.contains("hunter2-value"),
        "{shown}"
    );
    assert!(shown.contains("secret/a"), "{shown}");

    let file = provider::File {
        path: "tls.key".into(),
        mode: 0o600,
        contents: b"-----BEGIN PRIVATE KEY-----".to_vec(),
    };
    let shown = format!("{file:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(
        shown.contains("tls.key") && shown.contains("0o600"),
        "{shown}"
    );
    assert!(shown.contains("27 bytes"), "{shown}");

    let expand = csi::NodeExpandVolumeRequest {
        secrets: map(&[("k", "hunter2-value")]),
        ..Default::default()
    };
    assert!(!format!("{expand:?}").contains("hunter2-value"));
    let stage = csi::NodeStageVolumeRequest {
        secrets: map(&[("k", "hunter2-value")]),
        ..Default::default()
    };
    assert!(!format!("{stage:?}").contains("hunter2-value"));
    let health = csi::NodeGetStorageHealthRequest {
        secrets: map(&[("k", "hunter2-value")]),
    };
    assert!(!format!("{health:?}").contains("hunter2-value"));
}
