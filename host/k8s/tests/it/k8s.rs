//! The Kubernetes adapter against the in-process fake API server: the SecretProviderClass cache
//! (watch, versions, GET fallback, errors), the pod status writer (exact object, idempotence,
//! conflicts, garbage collection), the event recorder, pod lookup and client construction.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, pod};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use secrets_store_k8s::crd::{NODE_NAME_LABEL, SecretProviderClassObject, v1, v1alpha1};
use secrets_store_k8s::{
    ClientOptions, Error, EventRecorder, EventType, MountStatus, PodStatusWriter, SpcCache,
    WriteOutcome, build_client, get_pod, pod_status_name,
};
use secrets_store_test_support::wait_for;
use serde_json::json;

const GROUP: &str = "secrets-store.csi.x-k8s.io";
const SPCPS: &str = "secretproviderclasspodstatuses";

async fn synced(cache: &SpcCache) {
    tokio::time::timeout(Duration::from_secs(10), cache.wait_synced())
        .await
        .expect("cache synced in time");
    assert!(cache.is_synced());
}

fn class(namespace: &str, name: &str, provider: &str) -> v1::SecretProviderClass {
    let mut spc = v1::SecretProviderClass::new(
        name,
        v1::SecretProviderClassSpec {
            provider: provider.into(),
            parameters: BTreeMap::from([("keyvaultName".into(), "vault".into())]),
            secret_objects: vec![],
        },
    );
    spc.metadata.namespace = Some(namespace.into());
    spc
}

fn mount(pod: &Pod, class: &str, objects: &[(&str, &str)]) -> MountStatus {
    MountStatus {
        pod_namespace: pod.metadata.namespace.clone().unwrap(),
        pod_name: pod.metadata.name.clone().unwrap(),
        pod_uid: pod.metadata.uid.clone().unwrap(),
        class_name: class.into(),
        target_path: format!(
            "/var/lib/kubelet/pods/{}/volumes/kubernetes.io~csi/secrets/mount",
            pod.metadata.uid.clone().unwrap()
        ),
        mounted: true,
        objects: objects
            .iter()
            .map(|(id, version)| SecretProviderClassObject {
                id: id.to_string(),
                version: version.to_string(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn spc_cache_follows_creates_updates_and_deletes() {
    let server = FakeApiServer::start().await.unwrap();
    server.create(&class("ns1", "existing", "azure")).unwrap();
    let cache = SpcCache::start(server.client());
    synced(&cache).await;
    assert_eq!(cache.get("ns1", "existing").unwrap().spec.provider, "azure");

    server.create(&class("ns2", "new", "azure")).unwrap();
    wait_for("the created class", || cache.get("ns2", "new").is_some()).await;
    assert!(
        cache.get("ns1", "new").is_none(),
        "classes are per namespace"
    );

    server
        .merge_patch::<v1::SecretProviderClass>(
            "ns2",
            "new",
            &json!({"spec": {"provider": "vault"}}),
        )
        .unwrap();
    wait_for("the updated class", || {
        cache
            .get("ns2", "new")
            .is_some_and(|s| s.spec.provider == "vault")
    })
    .await;

    server
        .delete::<v1::SecretProviderClass>("ns2", "new")
        .unwrap();
    wait_for("the deleted class to go", || {
        cache.get("ns2", "new").is_none()
    })
    .await;
    assert_eq!(cache.list().len(), 1);
}

#[tokio::test]
async fn a_v1alpha1_class_is_read_through_v1() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();
    let mut old = v1alpha1::SecretProviderClass::new(
        "legacy",
        v1alpha1::SecretProviderClassSpec {
            provider: "azure".into(),
            parameters: BTreeMap::from([("objects".into(), "array: []".into())]),
            secret_objects: vec![],
        },
    );
    old.metadata.namespace = Some("default".into());
    Api::<v1alpha1::SecretProviderClass>::default_namespaced(client.clone())
        .create(&PostParams::default(), &old)
        .await
        .unwrap();

    // An object without spec (the schema allows it) must not break the list for the others.
    server
        .create_json(json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1alpha1", "kind": "SecretProviderClass",
            "metadata": {"name": "empty", "namespace": "default"}
        }))
        .unwrap();

    let cache = SpcCache::start(client.clone());
    synced(&cache).await;
    assert_eq!(
        cache.get("default", "empty").unwrap().spec,
        v1::SecretProviderClassSpec::default()
    );
    let read = cache
        .get("default", "legacy")
        .expect("the v1alpha1 object is in the v1 cache");
    assert_eq!(read.spec.provider, "azure");
    assert_eq!(read.spec.parameters["objects"], "array: []");
}

#[tokio::test]
async fn spc_cache_hits_need_no_api_call_and_misses_fall_back_to_one_get() {
    let server = FakeApiServer::start().await.unwrap();
    server.create(&class("default", "cached", "azure")).unwrap();
    // The watch is refused, so the cache holds exactly what the initial list returned.
    server.forbid("watch", GROUP, "secretproviderclasses");
    let cache = SpcCache::start(server.client());
    synced(&cache).await;

    server.clear_requests();
    let hit = cache.get_or_fetch("default", "cached").await.unwrap();
    assert_eq!(hit.spec.provider, "azure");
    assert_eq!(
        server.count("get", GROUP, "secretproviderclasses"),
        0,
        "a cached class costs no GET"
    );

    server.create(&class("default", "fresh", "vault")).unwrap();
    assert!(
        cache.get("default", "fresh").is_none(),
        "the refused watch cannot deliver it"
    );
    let fetched = cache.get_or_fetch("default", "fresh").await.unwrap();
    assert_eq!(fetched.spec.provider, "vault");
    assert_eq!(server.count("get", GROUP, "secretproviderclasses"), 1);

    let err = cache.get_or_fetch("default", "missing").await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { kind, namespace, name }
        if kind == "SecretProviderClass" && namespace == "default" && name == "missing"));
    assert_eq!(
        err.to_string(),
        "SecretProviderClass \"missing\" not found in namespace \"default\""
    );
}

#[tokio::test]
async fn spc_cache_reports_forbidden_gets() {
    let server = FakeApiServer::start().await.unwrap();
    let cache = SpcCache::start(server.client());
    synced(&cache).await;
    server.forbid("get", GROUP, "secretproviderclasses");
    let err = cache.get_or_fetch("team", "kv").await.unwrap_err();
    match err {
        Error::Forbidden {
            verb,
            resource,
            message,
        } => {
            assert_eq!(verb, "get");
            assert_eq!(resource, "secretproviderclasses.secrets-store.csi.x-k8s.io");
            assert!(
                message.contains("cannot get resource \"secretproviderclasses\""),
                "{message}"
            );
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn pod_status_writer_creates_the_upstream_object() {
    let server = FakeApiServer::start().await.unwrap();
    let pod = server.create(&pod("team", "web-0")).unwrap();
    let writer = PodStatusWriter::new(server.client(), "node-a").unwrap();
    let status = mount(
        &pod,
        "kv",
        &[("secret/zeta", "3"), ("cert/alpha", "1"), ("key/mid", "2")],
    );

    assert_eq!(writer.write(&status).await.unwrap(), WriteOutcome::Created);
    let stored: v1::SecretProviderClassPodStatus =
        server.get("team", "web-0-team-kv").expect("stored");
    assert_eq!(
        stored.metadata.labels.clone().unwrap(),
        BTreeMap::from([(NODE_NAME_LABEL.to_string(), "node-a".to_string())])
    );
    assert_eq!(
        stored.metadata.owner_references.clone().unwrap(),
        [OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "web-0".into(),
            uid: pod.metadata.uid.clone().unwrap(),
            controller: None,
            block_owner_deletion: None,
        }]
    );
    let s = stored.status.clone().unwrap();
    assert_eq!(
        (
            s.pod_name.as_str(),
            s.secret_provider_class_name.as_str(),
            s.mounted
        ),
        ("web-0", "kv", true)
    );
    assert_eq!(s.target_path, status.target_path);
    let ids: Vec<_> = s
        .objects
        .iter()
        .map(|o| (o.id.as_str(), o.version.as_str()))
        .collect();
    assert_eq!(
        ids,
        [("cert/alpha", "1"), ("key/mid", "2"), ("secret/zeta", "3")]
    );

    // The exact JSON body, as upstream's controller and kubectl see it.
    let raw = server
        .get_json(GROUP, SPCPS, "team", "web-0-team-kv")
        .unwrap();
    assert_eq!(
        raw["status"],
        json!({
            "podName": "web-0", "secretProviderClassName": "kv", "mounted": true,
            "targetPath": status.target_path,
            "objects": [
                {"id": "cert/alpha", "version": "1"}, {"id": "key/mid", "version": "2"}, {"id": "secret/zeta", "version": "3"}
            ]
        })
    );
    assert!(raw.get("spec").is_none());

    // It belongs to the pod: deleting the pod collects it.
    server.delete::<Pod>("team", "web-0").unwrap();
    assert!(
        server
            .get::<v1::SecretProviderClassPodStatus>("team", "web-0-team-kv")
            .is_none()
    );
}

#[tokio::test]
async fn pod_status_writer_skips_identical_writes_and_updates_changes() {
    let server = FakeApiServer::start().await.unwrap();
    let pod = server.create(&pod("team", "web-1")).unwrap();
    let writer = PodStatusWriter::new(server.client(), "node-a").unwrap();
    let status = mount(&pod, "kv", &[("b", "1"), ("a", "1")]);
    writer.write(&status).await.unwrap();
    let first: v1::SecretProviderClassPodStatus = server.get("team", "web-1-team-kv").unwrap();

    server.clear_requests();
    // Same content in another order: nothing to write.
    let reordered = mount(&pod, "kv", &[("a", "1"), ("b", "1")]);
    assert_eq!(
        writer.write(&reordered).await.unwrap(),
        WriteOutcome::Unchanged
    );
    assert_eq!(
        server.total_writes(),
        0,
        "an identical status causes no write"
    );
    assert_eq!(server.count("get", GROUP, SPCPS), 1);

    // A new version is replaced with the resourceVersion that was read.
    let rotated = mount(&pod, "kv", &[("a", "2"), ("b", "1")]);
    assert_eq!(writer.write(&rotated).await.unwrap(), WriteOutcome::Updated);
    let second: v1::SecretProviderClassPodStatus = server.get("team", "web-1-team-kv").unwrap();
    assert_ne!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(second.metadata.uid, first.metadata.uid);
    assert_eq!(second.status.unwrap().objects[0].version, "2");
    let update = server
        .requests()
        .into_iter()
        .find(|r| r.verb == "update")
        .unwrap();
    assert_eq!(update.status, 200);

    // Another node taking the volume over relabels it; foreign labels survive.
    server
        .merge_patch::<v1::SecretProviderClassPodStatus>(
            "team",
            "web-1-team-kv",
            &json!({"metadata": {"labels": {"keep": "me"}}}),
        )
        .unwrap();
    let other_node = PodStatusWriter::new(server.client(), "node-b").unwrap();
    assert_eq!(
        other_node.write(&rotated).await.unwrap(),
        WriteOutcome::Updated
    );
    let labels = server
        .get::<v1::SecretProviderClassPodStatus>("team", "web-1-team-kv")
        .unwrap()
        .metadata
        .labels
        .unwrap();
    assert_eq!(labels[NODE_NAME_LABEL], "node-b");
    assert_eq!(labels["keep"], "me");
}

#[tokio::test]
async fn pod_status_writer_retries_conflicts_with_a_fresh_read() {
    let server = FakeApiServer::start().await.unwrap();
    let pod = server.create(&pod("team", "web-2")).unwrap();
    let writer = PodStatusWriter::new(server.client(), "node-a").unwrap();
    writer
        .write(&mount(&pod, "kv", &[("a", "1")]))
        .await
        .unwrap();

    // Between the writer's read and its replace, someone else changes the object.
    server.before_next("update", GROUP, SPCPS, |handle| {
        handle
            .merge_patch::<v1::SecretProviderClassPodStatus>(
                "team",
                "web-2-team-kv",
                &json!({"metadata": {"annotations": {"other": "writer"}}}),
            )
            .unwrap();
    });
    server.clear_requests();
    assert_eq!(
        writer
            .write(&mount(&pod, "kv", &[("a", "2")]))
            .await
            .unwrap(),
        WriteOutcome::Updated
    );
    let statuses: Vec<(String, u16)> = server
        .requests()
        .into_iter()
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
    let stored: v1::SecretProviderClassPodStatus = server.get("team", "web-2-team-kv").unwrap();
    assert_eq!(
        stored.metadata.annotations.unwrap()["other"],
        "writer",
        "the other writer's change is kept"
    );
    assert_eq!(stored.status.unwrap().objects[0].version, "2");

    // Conflicts on every attempt end in Error::Conflict after the bounded number of attempts.
    let writer = writer.with_max_attempts(2);
    for n in 0..2 {
        server.before_next("update", GROUP, SPCPS, move |handle| {
            handle
                .merge_patch::<v1::SecretProviderClassPodStatus>(
                    "team",
                    "web-2-team-kv",
                    &json!({"metadata": {"annotations": {"n": n.to_string()}}}),
                )
                .unwrap();
        });
    }
    let err = writer
        .write(&mount(&pod, "kv", &[("a", "3")]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { name, .. } if name == "web-2-team-kv"),
        "{err:?}"
    );
    assert!(err.to_string().contains("after 2 attempts"), "{err}");
}

#[tokio::test]
async fn pod_status_writer_handles_a_concurrent_create() {
    let server = FakeApiServer::start().await.unwrap();
    let pod = server.create(&pod("team", "web-3")).unwrap();
    let writer = PodStatusWriter::new(server.client(), "node-a").unwrap();
    let status = mount(&pod, "kv", &[("a", "1")]);
    let desired = writer.desired(&status);
    server.before_next("create", GROUP, SPCPS, move |handle| {
        handle.create(&desired).unwrap();
    });
    assert_eq!(
        writer.write(&status).await.unwrap(),
        WriteOutcome::Unchanged
    );
    assert_eq!(server.count("create", GROUP, SPCPS), 1);
}

#[tokio::test]
async fn pod_status_names_too_long_for_the_api_are_shortened() {
    let server = FakeApiServer::start().await.unwrap();
    let pod = server.create(&pod("team", &"p".repeat(200))).unwrap();
    let class = format!("{}.example", "c".repeat(80));
    let writer = PodStatusWriter::new(server.client(), "node-a").unwrap();
    assert_eq!(
        writer.write(&mount(&pod, &class, &[])).await.unwrap(),
        WriteOutcome::Created
    );
    let name = pod_status_name(&"p".repeat(200), "team", &class);
    assert!(name.len() <= 253);
    assert!(
        server
            .get::<v1::SecretProviderClassPodStatus>("team", &name)
            .is_some()
    );

    let err = PodStatusWriter::new(server.client(), &"n".repeat(64))
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidObject { .. }), "{err:?}");
}

#[tokio::test]
async fn event_recorder_aggregates_repeats_and_survives_failures() {
    let server = FakeApiServer::start().await.unwrap();
    let pod = server.create(&pod("team", "web-4")).unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    let recorder = EventRecorder::new(server.client(), "csi-secrets-store", "node-a");

    recorder.record_pod(
        "team",
        "web-4",
        &uid,
        EventType::Warning,
        "FailedToMount",
        "provider said no",
    );
    recorder.record_pod(
        "team",
        "web-4",
        &uid,
        EventType::Warning,
        "FailedToMount",
        "provider said no",
    );
    recorder.record_pod(
        "team",
        "web-4",
        &uid,
        EventType::Normal,
        "MountRotationComplete",
        "rotated",
    );
    recorder.flush().await;

    let events = server.list::<Event>();
    assert_eq!(events.len(), 2);
    let failed = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedToMount"))
        .unwrap();
    assert_eq!(failed.count, Some(2));
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(failed.message.as_deref(), Some("provider said no"));
    assert_eq!(failed.metadata.namespace.as_deref(), Some("team"));
    assert!(
        failed
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("web-4.")
    );
    let involved = &failed.involved_object;
    assert_eq!(
        (
            involved.kind.as_deref(),
            involved.name.as_deref(),
            involved.uid.as_deref(),
            involved.api_version.as_deref()
        ),
        (Some("Pod"), Some("web-4"), Some(uid.as_str()), Some("v1"))
    );
    let source = failed.source.clone().unwrap();
    assert_eq!(
        (source.component.as_deref(), source.host.as_deref()),
        (Some("csi-secrets-store"), Some("node-a"))
    );
    assert!(failed.last_timestamp >= failed.first_timestamp);
    assert_eq!(server.count("create", "", "events"), 2);
    assert_eq!(server.count("patch", "", "events"), 1);

    // An expired event is written again under its name with the running count.
    let name = failed.metadata.name.clone().unwrap();
    server.delete::<Event>("team", &name).unwrap();
    recorder.record_pod(
        "team",
        "web-4",
        &uid,
        EventType::Warning,
        "FailedToMount",
        "provider said no",
    );
    recorder.flush().await;
    let again = server.get::<Event>("team", &name).unwrap();
    assert_eq!(again.count, Some(3));

    // Refused writes are logged, never surfaced: the caller carries on, and later events work.
    server.forbid("create", "", "events");
    recorder.record_pod(
        "team",
        "web-4",
        &uid,
        EventType::Warning,
        "FileWriteError",
        "disk full",
    );
    recorder.flush().await;
    assert!(
        server
            .list::<Event>()
            .iter()
            .all(|e| e.reason.as_deref() != Some("FileWriteError"))
    );
    server.allow_all();
    recorder.record_pod(
        "team",
        "web-4",
        &uid,
        EventType::Warning,
        "FileWriteError",
        "disk full",
    );
    recorder.flush().await;
    assert!(
        server
            .list::<Event>()
            .iter()
            .any(|e| e.reason.as_deref() == Some("FileWriteError"))
    );

    // A pod name of the maximum length still yields a valid event name.
    let long = server.create(&self::pod("team", &"p".repeat(253))).unwrap();
    let long_uid = long.metadata.uid.clone().unwrap();
    recorder.record_pod(
        "team",
        &"p".repeat(253),
        &long_uid,
        EventType::Normal,
        "Mounted",
        "ok",
    );
    recorder.flush().await;
    let event = server
        .list::<Event>()
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("Mounted"))
        .unwrap();
    assert!(event.metadata.name.unwrap().len() <= 253);
}

#[tokio::test]
async fn get_pod_returns_uid_and_owners() {
    let server = FakeApiServer::start().await.unwrap();
    let owner = server
        .create_json(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "team"}, "spec": {}
        }))
        .unwrap();
    let mut p = pod("team", "web-abc-1");
    p.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "web-abc".into(),
        uid: owner["metadata"]["uid"].as_str().unwrap().into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    let created = server.create(&p).unwrap();

    let info = get_pod(&server.client(), "team", "web-abc-1")
        .await
        .unwrap();
    assert_eq!(info.uid, created.metadata.uid.unwrap());
    assert_eq!(info.owner_references[0].kind, "ReplicaSet");
    assert_eq!(info.owner_references[0].controller, Some(true));

    let err = get_pod(&server.client(), "team", "gone").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Pod \"gone\" not found in namespace \"team\""
    );
}

#[tokio::test]
async fn client_from_a_kubeconfig_sends_the_driver_user_agent() {
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).unwrap();
    let options = ClientOptions {
        kubeconfig: Some(path),
        ..ClientOptions::default()
    };
    let client = build_client(&options).await.unwrap();
    server.create(&pod("default", "x")).unwrap();
    get_pod(&client, "default", "x").await.unwrap();
    let agent = server
        .requests()
        .last()
        .unwrap()
        .user_agent
        .clone()
        .unwrap();
    assert!(
        agent.starts_with("secrets-store-csi-driver-wasm/"),
        "{agent}"
    );

    let missing = ClientOptions {
        kubeconfig: Some(dir.path().join("nope")),
        ..ClientOptions::default()
    };
    let err = build_client(&missing).await.err().unwrap();
    assert!(
        matches!(&err, Error::Config { message, .. } if message.contains("nope")),
        "{err}"
    );
}
