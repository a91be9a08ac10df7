//! Secret sync against the in-process fake API server with a real kube client: Opaque and TLS
//! Secrets (PEM and PFX sources, RSA and EC keys, expected bytes computed with the `openssl` CLI),
//! labels, annotations, owners (controller, SecretProviderClassPodStatus, several pods), rotation
//! write counts, conflicts, RBAC refusals, foreign Secrets, disabled sync, broken entries, garbage
//! collection and the deprecated v1alpha1 class.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use secrets_store_contract::File;
use secrets_store_k8s::crd::{SecretObject, SecretObjectData, v1, v1alpha1};
use secrets_store_k8s::{EventRecorder, MountStatus, PodStatusWriter, SpcCache};
use secrets_store_sync::secret_sync::{
    REASON_FAILED_TO_CREATE_SECRET, REASON_SECRET_ROTATION_COMPLETE, REASON_SECRET_ROTATION_FAILED,
};
use secrets_store_sync::{MANAGED_LABEL, SecretSync, SyncReport, SyncRequest};
use secrets_store_test_support::openssl::{Ca, pem_blocks_only};
use serde_json::json;

const NS: &str = "team";
const CLASS: &str = "kv";

// ---------------------------------------------------------------------------------------------
// Fixtures: keys, certificates and PFX files made by the openssl CLI, and what the Secret must hold.

/// `openssl` with whitespace-separated `args` in `dir`; panics with its stderr on failure.
fn openssl(dir: &Path, args: &str) -> Vec<u8> {
    secrets_store_test_support::openssl::run_words(dir, args)
}

/// One TLS source object and the Secret values expected from it.
struct TlsCase {
    name: &'static str,
    content: Vec<u8>,
    tls_crt: String,
    tls_key: String,
}

fn tls_cases() -> &'static [TlsCase] {
    static CASES: OnceLock<Vec<TlsCase>> = OnceLock::new();
    CASES.get_or_init(build_tls_cases)
}

fn build_tls_cases() -> Vec<TlsCase> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let read = |name: &str| std::fs::read_to_string(d.join(name)).unwrap();

    openssl(
        d,
        "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out root.key",
    );
    openssl(
        d,
        "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out int.key",
    );
    let ca = Ca::issue(
        d,
        ("root.key", "test-root"),
        ("int.key", "test-intermediate"),
        2,
    );
    let (root, intermediate) = (ca.root_pem.clone(), ca.intermediate_pem.clone());
    // Root before intermediate: a PFX built with this chain holds leaf, root, intermediate, so the
    // bag order (upstream's) differs from a chain order.
    std::fs::write(d.join("chain.pem"), format!("{root}{intermediate}")).unwrap();

    let mut cases = Vec::new();
    for (leaf, keygen) in [
        ("rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048"),
        ("p256", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256"),
        ("p384", "-algorithm EC -pkeyopt ec_paramgen_curve:P-384"),
    ] {
        openssl(d, &format!("genpkey {keygen} -out {leaf}.key"));
        let crt = ca.leaf(&format!("{leaf}.key"), &format!("{leaf}.example.com"), 3, 2);
        // genpkey writes PKCS#8 ("PRIVATE KEY"), as the Azure provider does in its PEM output.
        let pkcs8 = read(&format!("{leaf}.key"));
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        let cert = read(&crt);

        // The expected tls.key: `openssl pkey -traditional` writes PKCS#1 for RSA, SEC1 for EC.
        // Go's MarshalECPrivateKey writes SEC1 with version 1, the scalar padded to the order's
        // size, [0] the named-curve OID and [1] the uncompressed public key; OpenSSL 3 writes the
        // same four fields for a key it generated (it omits [0]/[1] only for keys flagged
        // EC_PKEY_NO_PARAMETERS/NO_PUBKEY, which a freshly generated key is not), so its output is
        // the expected value as it is. The structure is checked here so that a different OpenSSL
        // cannot silently change what "expected" means.
        let traditional =
            String::from_utf8(openssl(d, &format!("pkey -in {leaf}.key -traditional"))).unwrap();
        if leaf == "rsa" {
            assert!(traditional.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        } else {
            assert!(traditional.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
            std::fs::write(d.join("trad.pem"), &traditional).unwrap();
            let structure = String::from_utf8(openssl(d, "asn1parse -in trad.pem")).unwrap();
            let fields: Vec<&str> = structure
                .lines()
                .filter(|l| l.contains("d=1"))
                .map(|l| {
                    // "   5:d=1  hl=2 l=  32 prim: OCTET STRING  [HEX DUMP]:…" → "OCTET STRING"
                    let (_, field) = l
                        .split_once("prim:")
                        .or_else(|| l.split_once("cons:"))
                        .unwrap();
                    field.trim().split("  ").next().unwrap()
                })
                .collect();
            assert_eq!(
                fields,
                ["INTEGER", "OCTET STRING", "cont [ 0 ]", "cont [ 1 ]"],
                "{structure}"
            );
            assert!(structure.contains("OBJECT"), "{structure}");
        }

        // A PEM bundle as the Azure provider writes it: key, leaf, intermediate, root.
        cases.push(TlsCase {
            name: match leaf {
                "rsa" => "pem-rsa",
                "p256" => "pem-p256",
                _ => "pem-p384",
            },
            content: format!("{pkcs8}{cert}{intermediate}{root}").into_bytes(),
            tls_crt: format!("{cert}{intermediate}{root}"),
            tls_key: traditional.clone(),
        });
        if leaf == "p384" {
            continue;
        }
        if leaf == "rsa" {
            // Traditional key after the certificates: the label and the position do not matter.
            cases.push(TlsCase {
                name: "pem-rsa-pkcs1-last",
                content: format!("{cert}{root}{traditional}").into_bytes(),
                tls_crt: format!("{cert}{root}"),
                tls_key: traditional.clone(),
            });
        }

        // Password-less PFX files: OpenSSL 3's default (PBES2 AES-256, SHA-256 MAC) and the legacy
        // 3DES/SHA-1 form Key Vault exports.
        for (variant, options) in [
            ("aes", ""),
            (
                "3des",
                "-keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1",
            ),
        ] {
            let pfx = format!("{leaf}-{variant}.pfx");
            openssl(
                d,
                &format!(
                    "pkcs12 -export -inkey {leaf}.key -in {crt} -certfile chain.pem \
                     -passout pass: {options} -out {pfx}"
                ),
            );
            // openssl prints the certificates in bag order (with attribute lines around them).
            let tls_crt = pem_blocks_only(&openssl(
                d,
                &format!("pkcs12 -in {pfx} -nokeys -passin pass:"),
            ));
            assert_eq!(tls_crt.matches("BEGIN CERTIFICATE").count(), 3);
            assert!(
                tls_crt.starts_with(&cert) && tls_crt.ends_with(&intermediate),
                "bag order is leaf, root, intermediate"
            );
            cases.push(TlsCase {
                name: match (leaf, variant) {
                    ("rsa", "aes") => "pfx-rsa-aes",
                    ("rsa", _) => "pfx-rsa-3des",
                    (_, "aes") => "pfx-p256-aes",
                    _ => "pfx-p256-3des",
                },
                content: std::fs::read(d.join(&pfx)).unwrap(),
                tls_crt,
                tls_key: traditional.clone(),
            });
        }
    }
    cases
}

// ---------------------------------------------------------------------------------------------
// Cluster helpers.

fn secret_object(name: &str, type_: &str, data: &[(&str, &str)]) -> SecretObject {
    SecretObject {
        secret_name: name.into(),
        type_: type_.into(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        data: data
            .iter()
            .map(|(object, key)| SecretObjectData {
                object_name: object.to_string(),
                key: key.to_string(),
            })
            .collect(),
    }
}

fn class(objects: Vec<SecretObject>) -> v1::SecretProviderClass {
    let mut spc = v1::SecretProviderClass::new(
        CLASS,
        v1::SecretProviderClassSpec {
            provider: "azure".into(),
            parameters: BTreeMap::from([("keyvaultName".into(), "vault".into())]),
            secret_objects: objects,
        },
    );
    spc.metadata.namespace = Some(NS.into());
    spc
}

fn files(entries: &[(&str, &[u8])]) -> Vec<File> {
    entries
        .iter()
        .map(|(path, contents)| File {
            path: path.to_string(),
            mode: 0o644,
            contents: contents.to_vec(),
        })
        .collect()
}

/// A pod created in the fake cluster.
struct TestPod {
    name: String,
    uid: String,
}

fn create_replica_set(server: &FakeApiServer, name: &str) -> OwnerReference {
    let rs = server
        .create_json(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": NS}, "spec": {}
        }))
        .unwrap();
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: name.into(),
        uid: rs["metadata"]["uid"].as_str().unwrap().into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn create_pod(server: &FakeApiServer, name: &str, owner: Option<&OwnerReference>) -> TestPod {
    let pod = server
        .create(&Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NS.into()),
                owner_references: owner.map(|o| vec![o.clone()]),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        })
        .unwrap();
    TestPod {
        name: name.into(),
        uid: pod.metadata.uid.unwrap(),
    }
}

/// Writes the pod's SecretProviderClassPodStatus, as the publish pipeline does before syncing.
async fn write_pod_status(server: &FakeApiServer, pod: &TestPod) -> String {
    let writer = PodStatusWriter::new(server.client(), "node-a").unwrap();
    writer
        .write(&MountStatus {
            pod_namespace: NS.into(),
            pod_name: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            class_name: CLASS.into(),
            target_path: format!(
                "/var/lib/kubelet/pods/{}/volumes/kubernetes.io~csi/v/mount",
                pod.uid
            ),
            mounted: true,
            objects: vec![],
        })
        .await
        .unwrap();
    let name = format!("{}-{NS}-{CLASS}", pod.name);
    server
        .get::<v1::SecretProviderClassPodStatus>(NS, &name)
        .unwrap()
        .metadata
        .uid
        .unwrap()
}

fn request<'a>(
    class: &'a v1::SecretProviderClass,
    pod: &'a TestPod,
    files: &'a [File],
    rotation: bool,
) -> SyncRequest<'a> {
    SyncRequest {
        class,
        pod_namespace: NS,
        pod_name: &pod.name,
        pod_uid: &pod.uid,
        files,
        rotation,
    }
}

fn secret(server: &FakeApiServer, name: &str) -> Secret {
    server
        .get::<Secret>(NS, name)
        .unwrap_or_else(|| panic!("Secret {name} exists"))
}

fn data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

fn owners(secret: &Secret) -> Vec<(String, String, String, String)> {
    secret
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            assert_eq!(
                (o.controller, o.block_owner_deletion),
                (None, None),
                "a shared Secret has no controller"
            );
            (o.api_version, o.kind, o.name, o.uid)
        })
        .collect()
}

/// (type, reason, message) of every event on `pod`, after the recorder has written them all.
async fn events(
    server: &FakeApiServer,
    recorder: &EventRecorder,
    pod: &TestPod,
) -> Vec<(String, String, String)> {
    recorder.flush().await;
    server
        .list::<Event>()
        .into_iter()
        .filter(|e| e.involved_object.uid.as_deref() == Some(pod.uid.as_str()))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

/// The requests made since the last clear, as (verb, resource), leaving out event writes.
fn api_calls(server: &FakeApiServer) -> Vec<(String, String)> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.resource != "events")
        .map(|r| (r.verb, r.resource))
        .collect()
}

fn calls(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(v, r)| (v.to_string(), r.to_string()))
        .collect()
}

struct Env {
    server: FakeApiServer,
    recorder: EventRecorder,
    sync: SecretSync,
}

async fn env() -> Env {
    env_with(true).await
}

async fn env_with(enabled: bool) -> Env {
    let server = FakeApiServer::start().await.unwrap();
    let recorder = EventRecorder::new(server.client(), "csi-secrets-store", "node-a");
    let sync = SecretSync::new(server.client(), recorder.clone(), enabled);
    Env {
        server,
        recorder,
        sync,
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn the_syncer_can_be_shared_between_tasks() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<SecretSync>();
}

#[tokio::test]
async fn an_opaque_secret_gets_labels_annotations_and_the_pod_controller_as_owner() {
    let Env {
        server,
        recorder,
        sync,
    } = env().await;
    let rs = create_replica_set(&server, "web-6d4f");
    let pod = create_pod(&server, "web-6d4f-x1", Some(&rs));
    let mut object = secret_object(
        "db",
        "",
        &[("password", "DB_PASSWORD"), ("user-alias", " DB_USER ")],
    );
    object.labels = BTreeMap::from([("app".into(), "web".into())]);
    object.annotations = BTreeMap::from([("team.example.com/owner".into(), "payments".into())]);
    let spc = class(vec![object]);
    let mounted = files(&[
        ("password", b"s3cr3t\n"),
        ("user-alias", b"admin"),
        ("unrelated", b"x"),
    ]);

    server.clear_requests();
    let report = sync.sync(&request(&spc, &pod, &mounted, false)).await;
    assert_eq!(
        report,
        SyncReport {
            written: vec!["db".into()],
            ..SyncReport::default()
        }
    );
    assert_eq!(
        api_calls(&server),
        calls(&[("get", "pods"), ("get", "secrets"), ("create", "secrets")])
    );

    let stored = secret(&server, "db");
    assert_eq!(stored.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        data(&stored),
        BTreeMap::from([
            ("DB_PASSWORD".to_string(), b"s3cr3t\n".to_vec()),
            ("DB_USER".to_string(), b"admin".to_vec()),
        ])
    );
    assert_eq!(
        stored.metadata.labels.clone().unwrap(),
        BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            (MANAGED_LABEL.to_string(), "true".to_string()),
        ])
    );
    assert_eq!(
        stored.metadata.annotations.clone().unwrap(),
        BTreeMap::from([("team.example.com/owner".to_string(), "payments".to_string())])
    );
    assert_eq!(
        owners(&stored),
        [(
            "apps/v1".to_string(),
            "ReplicaSet".to_string(),
            "web-6d4f".to_string(),
            rs.uid.clone()
        )]
    );
    assert!(events(&server, &recorder, &pod).await.is_empty());
}

#[tokio::test]
async fn tls_secrets_from_pem_and_pfx_hold_what_openssl_computes() {
    let Env {
        server,
        recorder,
        sync,
    } = env().await;
    let pod = create_pod(&server, "standalone", None);
    let pod_status_uid = write_pod_status(&server, &pod).await;
    let cases = tls_cases();
    let spc = class(
        cases
            .iter()
            .map(|c| {
                secret_object(
                    c.name,
                    "kubernetes.io/tls",
                    &[(c.name, "tls.crt"), (c.name, "tls.key")],
                )
            })
            .collect(),
    );
    let mounted: Vec<File> = cases
        .iter()
        .map(|c| File {
            path: c.name.into(),
            mode: 0o644,
            contents: c.content.clone(),
        })
        .collect();

    let report = sync.sync(&request(&spc, &pod, &mounted, false)).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.written.len(), cases.len());
    for case in cases {
        let stored = secret(&server, case.name);
        assert_eq!(stored.type_.as_deref(), Some("kubernetes.io/tls"));
        let values = data(&stored);
        assert_eq!(values.len(), 2, "{}", case.name);
        assert_eq!(
            String::from_utf8(values["tls.key"].clone()).unwrap(),
            case.tls_key,
            "tls.key of {}",
            case.name
        );
        assert_eq!(
            String::from_utf8(values["tls.crt"].clone()).unwrap(),
            case.tls_crt,
            "tls.crt of {}",
            case.name
        );
        // A pod without a controller: its SecretProviderClassPodStatus owns the Secret.
        assert_eq!(
            owners(&stored),
            [(
                "secrets-store.csi.x-k8s.io/v1".to_string(),
                "SecretProviderClassPodStatus".to_string(),
                format!("standalone-{NS}-{CLASS}"),
                pod_status_uid.clone()
            )]
        );
    }
    assert!(events(&server, &recorder, &pod).await.is_empty());
}

#[tokio::test]
async fn a_tls_secret_with_another_key_is_refused_by_name() {
    let Env {
        server,
        recorder,
        sync,
    } = env().await;
    let rs = create_replica_set(&server, "ingress");
    let pod = create_pod(&server, "ingress-1", Some(&rs));
    let case = &tls_cases()[0];
    let spc = class(vec![secret_object(
        "tls",
        "kubernetes.io/tls",
        &[("cert", "tls.crt"), ("cert", "ca.crt")],
    )]);
    let mounted = files(&[("cert", &case.content)]);

    let report = sync.sync(&request(&spc, &pod, &mounted, false)).await;
    assert!(report.written.is_empty());
    assert_eq!(report.failed.len(), 1);
    let expected = format!(
        "cannot sync Secret {NS}/tls for SecretProviderClass {NS}/{CLASS}: object \"cert\" for key \
         \"ca.crt\": key \"ca.crt\" is not supported for a Secret of type kubernetes.io/tls: only \
         \"tls.crt\" and \"tls.key\" are"
    );
    assert_eq!(report.failed[0], ("tls".to_string(), expected.clone()));
    assert_eq!(
        events(&server, &recorder, &pod).await,
        [(
            "Warning".to_string(),
            REASON_FAILED_TO_CREATE_SECRET.to_string(),
            expected
        )]
    );
    assert!(server.get::<Secret>(NS, "tls").is_none());
    assert_eq!(server.writes("", "secrets"), 0);
}

#[tokio::test]
async fn pods_sharing_a_secret_all_own_it_with_one_write_each() {
    let Env {
        server,
        recorder: _recorder,
        sync,
    } = env().await;
    let rs_a = create_replica_set(&server, "a-rs");
    let rs_b = create_replica_set(&server, "b-rs");
    let pod_a = create_pod(&server, "a-1", Some(&rs_a));
    let pod_b = create_pod(&server, "b-1", Some(&rs_b));
    let pod_c = create_pod(&server, "c", None);
    let c_status = write_pod_status(&server, &pod_c).await;
    let spc = class(vec![secret_object("shared", "", &[("k", "k")])]);
    let mounted = files(&[("k", b"v")]);

    server.clear_requests();
    for pod in [&pod_a, &pod_b, &pod_c] {
        let report = sync.sync(&request(&spc, pod, &mounted, false)).await;
        assert_eq!(report.written, ["shared"], "pod {}", pod.name);
    }
    assert_eq!(server.count("create", "", "secrets"), 1);
    assert_eq!(server.count("update", "", "secrets"), 2);
    assert_eq!(server.writes("", "secrets"), 3, "one write per pod");
    let uids: Vec<String> = owners(&secret(&server, "shared"))
        .into_iter()
        .map(|o| o.3)
        .collect();
    assert_eq!(uids, [rs_a.uid.clone(), rs_b.uid.clone(), c_status]);

    // Every pod is an owner now: syncing any of them again changes nothing.
    server.clear_requests();
    for pod in [&pod_a, &pod_b, &pod_c] {
        let report = sync.sync(&request(&spc, pod, &mounted, false)).await;
        assert_eq!(report.unchanged, ["shared"]);
    }
    assert_eq!(server.total_writes(), 0);

    // Another node's driver (no cache) finds the owners present with one read.
    let other = SecretSync::new(server.client(), _recorder.clone(), true);
    server.clear_requests();
    let report = other.sync(&request(&spc, &pod_b, &mounted, false)).await;
    assert_eq!(report.unchanged, ["shared"]);
    assert_eq!(
        api_calls(&server),
        calls(&[("get", "pods"), ("get", "secrets")])
    );
}

#[tokio::test]
async fn rotation_writes_once_per_change_and_not_at_all_without_one() {
    let Env {
        server,
        recorder,
        sync,
    } = env().await;
    let rs = create_replica_set(&server, "api");
    let pod = create_pod(&server, "api-1", Some(&rs));
    let spc = class(vec![
        secret_object("one", "", &[("a", "a")]),
        secret_object("two", "", &[("b", "b")]),
    ]);
    let v1_files = files(&[("a", b"1"), ("b", b"1")]);
    sync.sync(&request(&spc, &pod, &v1_files, false)).await;

    // "a" changes: exactly one update, of "one", and a rotation event naming it.
    let v2_files = files(&[("a", b"2"), ("b", b"1")]);
    server.clear_requests();
    let report = sync.sync(&request(&spc, &pod, &v2_files, true)).await;
    assert_eq!(report.written, ["one"]);
    assert_eq!(report.unchanged, ["two"]);
    assert_eq!(
        api_calls(&server),
        calls(&[("get", "secrets"), ("update", "secrets")])
    );
    assert_eq!(data(&secret(&server, "one"))["a"], b"2");
    let rotated = events(&server, &recorder, &pod).await;
    assert_eq!(
        rotated,
        [(
            "Normal".to_string(),
            REASON_SECRET_ROTATION_COMPLETE.to_string(),
            format!(
                "successfully rotated Kubernetes Secret {NS}/one for SecretProviderClass {NS}/{CLASS}"
            )
        )]
    );

    // Nothing changes: no API call at all, not even a read, and no event.
    server.clear_requests();
    let report = sync.sync(&request(&spc, &pod, &v2_files, true)).await;
    assert_eq!(report.unchanged, ["one", "two"]);
    assert!(report.written.is_empty());
    recorder.flush().await;
    assert_eq!(server.requests(), [], "an unchanged refresh costs nothing");

    // Without the in-memory record (a restarted driver), the Secrets are read and compared.
    let restarted = SecretSync::new(server.client(), recorder.clone(), true);
    server.clear_requests();
    let report = restarted.sync(&request(&spc, &pod, &v2_files, true)).await;
    assert_eq!(report.unchanged, ["one", "two"]);
    assert_eq!(
        api_calls(&server),
        calls(&[("get", "pods"), ("get", "secrets"), ("get", "secrets")])
    );
    assert_eq!(server.total_writes(), 0);

    // A record past the verify interval is checked again, and drift is repaired.
    let verifying = SecretSync::new(server.client(), recorder.clone(), true)
        .with_verify_interval(Duration::ZERO);
    verifying.sync(&request(&spc, &pod, &v2_files, true)).await;
    server
        .merge_patch::<Secret>(NS, "two", &json!({"data": {"b": "ZHJpZnQ="}}))
        .unwrap();
    server.clear_requests();
    let report = verifying.sync(&request(&spc, &pod, &v2_files, true)).await;
    assert_eq!(report.written, ["two"]);
    assert_eq!(data(&secret(&server, "two"))["b"], b"1");
    assert_eq!(server.writes("", "secrets"), 1);
}

#[tokio::test]
async fn conflicting_writers_cause_a_fresh_read_and_keep_each_others_changes() {
    let Env {
        server,
        recorder: _recorder,
        sync,
    } = env().await;
    let rs = create_replica_set(&server, "svc");
    let pod = create_pod(&server, "svc-1", Some(&rs));
    let spc = class(vec![secret_object("s", "", &[("a", "a")])]);
    sync.sync(&request(&spc, &pod, &files(&[("a", b"1")]), false))
        .await;

    server.before_next("update", "", "secrets", |handle| {
        handle
            .merge_patch::<Secret>(
                NS,
                "s",
                &json!({"metadata": {"annotations": {"other": "writer"}}}),
            )
            .unwrap();
    });
    server.clear_requests();
    let report = sync
        .sync(&request(&spc, &pod, &files(&[("a", b"2")]), true))
        .await;
    assert_eq!(report.written, ["s"]);
    let statuses: Vec<(String, u16)> = server
        .requests()
        .into_iter()
        .filter(|r| r.resource == "secrets")
        .map(|r| (r.verb, r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("get".to_string(), 200),
            ("update".to_string(), 409),
            ("get".to_string(), 200),
            ("update".to_string(), 200)
        ]
    );
    let stored = secret(&server, "s");
    assert_eq!(data(&stored)["a"], b"2");
    assert_eq!(stored.metadata.annotations.unwrap()["other"], "writer");
}

#[tokio::test]
async fn a_forbidden_write_names_the_missing_permission_and_how_to_get_it() {
    let Env {
        server,
        recorder,
        sync,
    } = env().await;
    let rs = create_replica_set(&server, "job");
    let pod = create_pod(&server, "job-1", Some(&rs));
    let spc = class(vec![secret_object("creds", "", &[("a", "a")])]);
    server.forbid("create", "", "secrets");

    let report = sync
        .sync(&request(&spc, &pod, &files(&[("a", b"1")]), false))
        .await;
    assert_eq!(report.failed.len(), 1);
    let message = &report.failed[0].1;
    for part in [
        "cannot sync Secret team/creds for SecretProviderClass team/kv",
        "not allowed to create secrets in namespace \"team\"",
        "verb \"create\" on resource \"secrets\"",
        "syncSecret.enabled=true",
        "cannot create resource \"secrets\"",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
    let recorded = events(&server, &recorder, &pod).await;
    assert_eq!(
        recorded,
        [(
            "Warning".to_string(),
            REASON_FAILED_TO_CREATE_SECRET.to_string(),
            message.clone()
        )]
    );

    // On a refresh the same problem is a rotation failure; once allowed, the Secret is created.
    sync.sync(&request(&spc, &pod, &files(&[("a", b"1")]), true))
        .await;
    let recorded = events(&server, &recorder, &pod).await;
    assert!(
        recorded
            .iter()
            .any(|(_, reason, _)| reason == REASON_SECRET_ROTATION_FAILED)
    );
    server.allow_all();
    let report = sync
        .sync(&request(&spc, &pod, &files(&[("a", b"1")]), true))
        .await;
    assert_eq!(report.written, ["creds"]);
}

#[tokio::test]
async fn a_secret_the_driver_does_not_manage_is_never_overwritten() {
    let Env {
        server,
        recorder,
        sync,
    } = env().await;
    let rs = create_replica_set(&server, "w");
    let pod = create_pod(&server, "w-1", Some(&rs));
    let mut foreign = Secret {
        metadata: ObjectMeta {
            name: Some("config".into()),
            namespace: Some(NS.into()),
            labels: Some(BTreeMap::from([(
                MANAGED_LABEL.to_string(),
                "false".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    foreign.data = Some(BTreeMap::from([(
        "a".to_string(),
        k8s_openapi::ByteString(b"theirs".to_vec()),
    )]));
    server.create(&foreign).unwrap();
    let spc = class(vec![secret_object("config", "", &[("a", "a")])]);

    server.clear_requests();
    let report = sync
        .sync(&request(&spc, &pod, &files(&[("a", b"ours")]), false))
        .await;
    assert_eq!(report.failed.len(), 1);
    let expected = format!(
        "cannot sync Secret {NS}/config for SecretProviderClass {NS}/{CLASS}: Secret {NS}/config \
         exists and is not managed by the Secrets Store CSI driver (it lacks the label \
         {MANAGED_LABEL}=true), so it is not overwritten; choose another secretName or delete that Secret"
    );
    assert_eq!(report.failed[0].1, expected);
    assert_eq!(server.writes("", "secrets"), 0);
    assert_eq!(data(&secret(&server, "config"))["a"], b"theirs");
    assert_eq!(
        events(&server, &recorder, &pod).await,
        [(
            "Warning".to_string(),
            REASON_FAILED_TO_CREATE_SECRET.to_string(),
            expected
        )]
    );
}

#[tokio::test]
async fn disabled_sync_makes_no_api_call_and_warns_once_per_pod_and_class() {
    let Env {
        server,
        recorder,
        sync,
    } = env_with(false).await;
    assert!(!sync.enabled());
    let pod = create_pod(&server, "p", None);
    let spc = class(vec![
        secret_object("one", "", &[("a", "a")]),
        secret_object("two", "", &[("a", "a")]),
    ]);
    let mounted = files(&[("a", b"1")]);

    server.clear_requests();
    for rotation in [false, true, false] {
        let report = sync.sync(&request(&spc, &pod, &mounted, rotation)).await;
        assert_eq!(
            report,
            SyncReport {
                skipped_disabled: true,
                ..SyncReport::default()
            }
        );
    }
    let recorded = events(&server, &recorder, &pod).await;
    assert_eq!(api_calls(&server), [], "nothing but the event is written");
    assert_eq!(server.count("create", "", "events"), 1);
    assert_eq!(recorded.len(), 1);
    let (type_, reason, message) = &recorded[0];
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Warning", REASON_FAILED_TO_CREATE_SECRET)
    );
    for part in [
        "SecretProviderClass team/kv",
        "(one, two)",
        "Secret sync is disabled",
        "--enable-secret-sync",
        "syncSecret.enabled=true",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }

    // A class without secretObjects is no reason to warn.
    let plain = class(vec![]);
    let other = create_pod(&server, "q", None);
    let report = sync.sync(&request(&plain, &other, &mounted, false)).await;
    assert_eq!(report, SyncReport::default());
    assert!(events(&server, &recorder, &other).await.is_empty());
}

#[tokio::test]
async fn broken_entries_are_reported_and_the_others_still_sync() {
    let Env {
        server,
        recorder,
        sync,
    } = env().await;
    let rs = create_replica_set(&server, "m");
    let pod = create_pod(&server, "m-1", Some(&rs));
    let spc = class(vec![
        secret_object("first", "", &[("a", "a")]),
        secret_object("missing", "", &[("a", "a"), ("nope", "n")]),
        secret_object("", "", &[("a", "a")]),
        secret_object("nodata", "", &[]),
        secret_object("badkey", "", &[("a", "a/b")]),
        secret_object("first", "", &[("b", "b")]),
        secret_object("last", "", &[("b", "b")]),
    ]);
    let mounted = files(&[("a", b"1"), ("b", b"2"), ("b/versions/0", b"old")]);

    let report = sync.sync(&request(&spc, &pod, &mounted, false)).await;
    assert_eq!(report.written, ["first", "last"]);
    let failed: Vec<&str> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        failed,
        ["missing", "secretObjects[2]", "nodata", "badkey", "first"]
    );
    let prefix = format!("for SecretProviderClass {NS}/{CLASS}: ");
    let details: Vec<String> = report
        .failed
        .iter()
        .map(|(_, m)| {
            m.split_once(&prefix)
                .map_or(m.clone(), |(_, d)| d.to_string())
        })
        .collect();
    assert_eq!(
        details[0],
        "object \"nope\" (for key \"n\") is not among the mounted objects (mounted: \"a\", \"b\", \"b/versions/0\")"
    );
    assert_eq!(
        report.failed[1].1,
        format!(
            "cannot sync secretObjects[2] of SecretProviderClass {NS}/{CLASS}: secretName is empty"
        )
    );
    assert_eq!(details[2], "secretObjects[3] has no data");
    assert!(details[3].starts_with("key \"a/b\" (object \"a\") is not a valid Secret key"));
    assert_eq!(
        details[4],
        "secretObjects[5] names the same Secret as secretObjects[0], which is used"
    );
    assert_eq!(data(&secret(&server, "first"))["a"], b"1");
    assert!(server.get::<Secret>(NS, "missing").is_none());

    let recorded = events(&server, &recorder, &pod).await;
    let mut messages: Vec<String> = recorded
        .into_iter()
        .map(|(type_, reason, message)| {
            assert_eq!(
                (type_.as_str(), reason.as_str()),
                ("Warning", REASON_FAILED_TO_CREATE_SECRET)
            );
            message
        })
        .collect();
    let mut expected: Vec<String> = report.failed.iter().map(|(_, m)| m.clone()).collect();
    messages.sort();
    expected.sort();
    assert_eq!(messages, expected);
}

#[tokio::test]
async fn secrets_go_with_their_last_owner_through_garbage_collection() {
    let Env {
        server,
        recorder: _recorder,
        sync,
    } = env().await;
    let spc = class(vec![secret_object("by-rs", "", &[("a", "a")])]);
    let standalone_spc = class(vec![secret_object("by-status", "", &[("a", "a")])]);
    let mounted = files(&[("a", b"1")]);

    // Owned by a ReplicaSet: the pod going does not take the Secret, the ReplicaSet going does.
    let rs = create_replica_set(&server, "rs");
    let pod = create_pod(&server, "rs-1", Some(&rs));
    assert_eq!(
        sync.sync(&request(&spc, &pod, &mounted, false))
            .await
            .written,
        ["by-rs"]
    );
    server.delete::<Pod>(NS, "rs-1").unwrap();
    assert!(server.get::<Secret>(NS, "by-rs").is_some());
    server
        .delete::<k8s_openapi::api::apps::v1::ReplicaSet>(NS, "rs")
        .unwrap();
    assert!(server.get::<Secret>(NS, "by-rs").is_none());

    // Owned by two pods' statuses: it stays until the second pod is gone.
    let first = create_pod(&server, "solo-1", None);
    let second = create_pod(&server, "solo-2", None);
    write_pod_status(&server, &first).await;
    write_pod_status(&server, &second).await;
    for pod in [&first, &second] {
        sync.sync(&request(&standalone_spc, pod, &mounted, false))
            .await;
    }
    assert_eq!(owners(&secret(&server, "by-status")).len(), 2);
    server.delete::<Pod>(NS, "solo-1").unwrap();
    assert!(server.get::<Secret>(NS, "by-status").is_some());
    server.delete::<Pod>(NS, "solo-2").unwrap();
    assert!(
        server
            .get::<v1::SecretProviderClassPodStatus>(NS, &format!("solo-2-{NS}-{CLASS}"))
            .is_none()
    );
    assert!(server.get::<Secret>(NS, "by-status").is_none());
    assert_eq!(
        server.count("delete", "", "secrets"),
        0,
        "the driver deletes nothing"
    );
}

#[tokio::test]
async fn a_pod_without_its_status_object_cannot_own_secrets() {
    let Env {
        server,
        recorder,
        sync,
    } = env().await;
    let pod = create_pod(&server, "orphan", None);
    let spc = class(vec![secret_object("s", "", &[("a", "a")])]);
    let report = sync
        .sync(&request(&spc, &pod, &files(&[("a", b"1")]), false))
        .await;
    assert_eq!(report.failed.len(), 1);
    let message = &report.failed[0].1;
    assert!(
        message.contains("SecretProviderClassPodStatus \"orphan-team-kv\" not found"),
        "{message}"
    );
    assert!(server.get::<Secret>(NS, "s").is_none());
    assert_eq!(events(&server, &recorder, &pod).await.len(), 1);
}

#[tokio::test]
async fn a_type_change_is_reported_instead_of_attempted() {
    let Env {
        server,
        recorder: _recorder,
        sync,
    } = env().await;
    let rs = create_replica_set(&server, "t");
    let pod = create_pod(&server, "t-1", Some(&rs));
    let mounted = files(&[("a", b"1")]);
    let opaque = class(vec![secret_object("s", "", &[("a", "a")])]);
    sync.sync(&request(&opaque, &pod, &mounted, false)).await;
    let basic = class(vec![secret_object(
        "s",
        "kubernetes.io/basic-auth",
        &[("a", "username")],
    )]);
    server.clear_requests();
    let report = sync.sync(&request(&basic, &pod, &mounted, false)).await;
    assert!(
        report.failed[0].1.contains(
            "has type \"Opaque\" but secretObjects asks for \"kubernetes.io/basic-auth\""
        ),
        "{:?}",
        report.failed
    );
    assert_eq!(server.writes("", "secrets"), 0);
}

#[tokio::test]
async fn a_v1alpha1_class_with_secret_objects_syncs() {
    let Env {
        server,
        recorder: _recorder,
        sync,
    } = env().await;
    let client = server.client();
    let mut old = v1alpha1::SecretProviderClass::new(
        "legacy",
        v1alpha1::SecretProviderClassSpec {
            provider: "azure".into(),
            parameters: BTreeMap::new(),
            secret_objects: vec![secret_object("legacy-secret", "Opaque", &[("a", "key")])],
        },
    );
    old.metadata.namespace = Some(NS.into());
    Api::<v1alpha1::SecretProviderClass>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &old)
        .await
        .unwrap();

    // The publish pipeline reads classes through the (v1) cache.
    let cache = SpcCache::start(client);
    tokio::time::timeout(Duration::from_secs(10), cache.wait_synced())
        .await
        .unwrap();
    let read = cache.get_or_fetch(NS, "legacy").await.unwrap();
    assert_eq!(read.spec.secret_objects.len(), 1);

    let rs = create_replica_set(&server, "l");
    let pod = create_pod(&server, "l-1", Some(&rs));
    let report = sync
        .sync(&SyncRequest {
            class: &read,
            pod_namespace: NS,
            pod_name: &pod.name,
            pod_uid: &pod.uid,
            files: &files(&[("a", b"1")]),
            rotation: false,
        })
        .await;
    assert_eq!(report.written, ["legacy-secret"]);
    assert_eq!(data(&secret(&server, "legacy-secret"))["key"], b"1");
}
