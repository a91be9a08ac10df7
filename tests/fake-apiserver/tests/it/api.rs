//! The fake API server's behaviour, exercised with a real kube client: CRUD and the exact Status
//! bodies, optimistic concurrency, patches, versions sharing one store, lists with selectors and
//! pages, watches (bookmarks, 410, timeouts, the kube runtime watcher), garbage collection,
//! finalizers, RBAC simulation, hooks and the request log.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::time::Duration;

use fake_apiserver::{FakeApiServer, StoreError, pod};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::{Api, Client};
use secrets_store_test_support::wait_for;
use serde_json::{Value, json};

const GROUP: &str = "secrets-store.csi.x-k8s.io";

fn spc_resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, version, "SecretProviderClass"),
        "secretproviderclasses",
    )
}

fn spc_api(client: &Client, namespace: &str, version: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &spc_resource(version))
}

fn spc(name: &str, version: &str, provider: &str) -> DynamicObject {
    let mut object = DynamicObject::new(name, &spc_resource(version));
    object.data = json!({ "spec": { "provider": provider, "parameters": { "a": "b" } } });
    object
}

fn owned_secret(namespace: &str, name: &str, owners: &[&Pod]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            owner_references: Some(
                owners
                    .iter()
                    .map(|p| OwnerReference {
                        api_version: "v1".into(),
                        kind: "Pod".into(),
                        name: p.metadata.name.clone().unwrap(),
                        uid: p.metadata.uid.clone().unwrap(),
                        ..OwnerReference::default()
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    }
}

/// Sends a raw request and returns status and JSON body.
async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_update_patch_delete_with_server_set_metadata() {
    let server = FakeApiServer::start().await.unwrap();
    let api = spc_api(&server.client(), "default", "v1");

    let created = api
        .create(&PostParams::default(), &spc("kv", "v1", "azure"))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let rv1 = created.metadata.resource_version.clone().unwrap();
    assert_eq!(uid.len(), 36);
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));

    let fetched = api.get("kv").await.unwrap();
    assert_eq!(fetched.data["spec"]["provider"], "azure");
    assert_eq!(
        fetched.metadata.resource_version.as_deref(),
        Some(rv1.as_str())
    );

    let mut changed = fetched.clone();
    changed.data["spec"]["provider"] = json!("vault");
    let updated = api
        .replace("kv", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(updated.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(updated.metadata.generation, Some(2));
    assert_ne!(updated.metadata.resource_version, Some(rv1.clone()));

    // An update that changes nothing is not a write: same resourceVersion.
    let same = api
        .replace("kv", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        updated.metadata.resource_version
    );

    // A label change moves resourceVersion but not generation.
    let patched = api
        .patch(
            "kv",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["x"], "y");
    assert_eq!(patched.metadata.generation, Some(2));
    assert_eq!(patched.data["spec"]["provider"], "vault");

    let json_patched = api
        .patch(
            "kv",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/spec/provider", "value": "gcp"}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(json_patched.data["spec"]["provider"], "gcp");

    let deleted = api.delete("kv", &DeleteParams::default()).await.unwrap();
    assert!(
        deleted.is_left(),
        "a custom resource's DELETE returns the object"
    );
    assert!(api.get_opt("kv").await.unwrap().is_none());
}

#[tokio::test]
async fn not_found_already_exists_and_conflict_have_real_status_bodies() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();

    let (code, body) = raw(
        &client,
        "GET",
        "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/default/secretproviderclasses/x",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        body,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "secretproviderclasses.secrets-store.csi.x-k8s.io \"x\" not found",
            "reason": "NotFound",
            "details": {"name": "x", "group": "secrets-store.csi.x-k8s.io", "kind": "secretproviderclasses"},
            "code": 404
        })
    );
    let (code, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/pods/p",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(body["message"], "pods \"p\" not found");
    assert_eq!(body["details"], json!({"name": "p", "kind": "pods"}));

    let api = spc_api(&client, "default", "v1");
    let created = api
        .create(&PostParams::default(), &spc("kv", "v1", "azure"))
        .await
        .unwrap();
    let err = api_status(
        api.create(&PostParams::default(), &spc("kv", "v1", "azure"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(
        err.message,
        "secretproviderclasses.secrets-store.csi.x-k8s.io \"kv\" already exists"
    );

    // Someone else updates; our copy is stale.
    let mut theirs = created.clone();
    theirs.data["spec"]["provider"] = json!("theirs");
    api.replace("kv", &PostParams::default(), &theirs)
        .await
        .unwrap();
    let mut ours = created.clone();
    ours.data["spec"]["provider"] = json!("ours");
    let err = api_status(
        api.replace("kv", &PostParams::default(), &ours)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on secretproviderclasses.secrets-store.csi.x-k8s.io \"kv\": the object has \
         been modified; please apply your changes to the latest version and try again"
    );

    // PUT to a missing object does not create it.
    let err = api_status(
        api.replace("nope", &PostParams::default(), &spc("nope", "v1", "a"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);

    // Invalid names are 422.
    let err = api_status(
        api.create(&PostParams::default(), &spc("Bad_Name", "v1", "a"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(
        err.message.starts_with(
            "SecretProviderClass.secrets-store.csi.x-k8s.io \"Bad_Name\" is invalid: metadata.name"
        ),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn unsupported_patch_types_are_415() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();
    spc_api(&client, "default", "v1")
        .create(&PostParams::default(), &spc("kv", "v1", "azure"))
        .await
        .unwrap();
    let path = "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/default/secretproviderclasses/kv";
    for content_type in [
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        let (code, body) = raw(&client, "PATCH", path, content_type, json!({"spec": {}})).await;
        assert_eq!(code, 415, "{content_type}");
        assert_eq!(body["reason"], "UnsupportedMediaType");
    }
    let (code, _) = raw(
        &client,
        "PATCH",
        path,
        "application/merge-patch+json",
        json!({"spec": {"provider": "x"}}),
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn both_versions_share_one_store() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();
    let alpha = spc_api(&client, "ns1", "v1alpha1");
    let created = alpha
        .create(&PostParams::default(), &spc("old", "v1alpha1", "azure"))
        .await
        .unwrap();
    assert_eq!(
        created.types.unwrap().api_version,
        "secrets-store.csi.x-k8s.io/v1alpha1"
    );

    let v1 = spc_api(&client, "ns1", "v1");
    let read = v1.get("old").await.unwrap();
    assert_eq!(
        read.types.unwrap().api_version,
        "secrets-store.csi.x-k8s.io/v1"
    );
    assert_eq!(read.data["spec"]["provider"], "azure");
    assert_eq!(read.metadata.uid, created.metadata.uid);
    assert_eq!(
        server
            .get_json(GROUP, "secretproviderclasses", "ns1", "old")
            .unwrap()["apiVersion"],
        "secrets-store.csi.x-k8s.io/v1"
    );

    // A body whose apiVersion disagrees with the URL is refused.
    let err = api_status(
        v1.create(&PostParams::default(), &spc("x", "v1alpha1", "a"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn lists_filter_by_namespace_labels_and_fields_and_page_consistently() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();
    for (ns, name, app) in [("a", "p1", "web"), ("a", "p2", "db"), ("b", "p3", "web")] {
        let mut p = pod(ns, name);
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        Api::<Pod>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &p)
            .await
            .unwrap();
    }
    let all: Api<Pod> = Api::all(client.clone());
    let list = all.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 3);
    assert_eq!(
        list.metadata.resource_version,
        Some(server.resource_version().to_string())
    );

    let web = all
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(
        web.items
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["p1", "p3"]
    );
    let in_a: Api<Pod> = Api::namespaced(client.clone(), "a");
    assert_eq!(
        in_a.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    let by_name = all
        .list(&ListParams::default().fields("metadata.name=p2"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let by_ns = all
        .list(&ListParams::default().fields("metadata.namespace!=a"))
        .await
        .unwrap();
    assert_eq!(by_ns.items[0].metadata.name.as_deref(), Some("p3"));

    // Pages come from one snapshot: an object created between pages does not appear.
    let first = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("a continue token");
    in_a.create(&PostParams::default(), &pod("a", "p0"))
        .await
        .unwrap();
    let second = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["p3"]
    );
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    assert!(second.metadata.continue_.is_none());

    // A compacted continue token is 410.
    server.compact();
    let err = api_status(
        all.list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));

    // Custom resources support only metadata field selectors.
    let err = api_status(
        spc_api(&client, "a", "v1")
            .list(&ListParams::default().fields("spec.provider=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "field label not supported: spec.provider")
    );
}

#[tokio::test]
async fn watch_streams_changes_and_bookmarks_at_the_requested_version() {
    let server = FakeApiServer::builder()
        .bookmark_interval(None)
        .start()
        .await
        .unwrap();
    let client = server.client();
    let v1 = spc_api(&client, "default", "v1");
    v1.create(&PostParams::default(), &spc("before", "v1", "a"))
        .await
        .unwrap();
    let start = server.resource_version().to_string();

    let alpha = spc_api(&client, "default", "v1alpha1");
    let mut events = alpha
        .watch(&WatchParams::default().labels("watched=yes"), &start)
        .await
        .unwrap()
        .boxed();
    wait_for("the watch to open", || server.open_watches() == 1).await;

    let mut watched = spc("w", "v1", "a");
    watched.metadata.labels = Some([("watched".to_string(), "yes".to_string())].into());
    v1.create(&PostParams::default(), &watched).await.unwrap();
    v1.create(&PostParams::default(), &spc("ignored", "v1", "a"))
        .await
        .unwrap();
    v1.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"provider": "b"}})),
    )
    .await
    .unwrap();
    // Leaving the selector is a DELETED for this watch.
    v1.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"watched": "no"}}})),
    )
    .await
    .unwrap();
    server.send_bookmarks();

    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(match event {
            WatchEvent::Added(o) => format!(
                "ADDED {} {}",
                o.metadata.name.unwrap(),
                o.types.unwrap().api_version
            ),
            WatchEvent::Modified(o) => format!(
                "MODIFIED {} {}",
                o.metadata.name.unwrap(),
                o.data["spec"]["provider"]
            ),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
            WatchEvent::Error(e) => format!("ERROR {e:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "ADDED w secrets-store.csi.x-k8s.io/v1alpha1".to_string(),
            "MODIFIED w \"b\"".to_string(),
            "DELETED w".to_string(),
            format!("BOOKMARK {}", server.resource_version()),
        ]
    );
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_410_in_the_stream() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let old = server.resource_version().to_string();
    api.create(&PostParams::default(), &pod("default", "a"))
        .await
        .unwrap();
    server.compact();

    let mut events = api
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match first {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status
                    .message
                    .starts_with(&format!("too old resource version: {old}")),
                "{}",
                status.message
            );
        }
        other => panic!("expected an ERROR event, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn watch_honours_timeout_seconds_with_a_final_bookmark() {
    let server = FakeApiServer::builder()
        .bookmark_interval(None)
        .start()
        .await
        .unwrap();
    let api: Api<Pod> = Api::namespaced(server.client(), "default");
    let rv = server.resource_version().to_string();
    let started = tokio::time::Instant::now();
    let mut events = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    let mut kinds = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        kinds.push(matches!(event, WatchEvent::Bookmark(_)));
    }
    assert_eq!(kinds, [true], "one bookmark, then the stream ends");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn kube_watcher_syncs_and_relists_after_compaction() {
    // No periodic bookmarks: the watcher's resourceVersion stays the one of its list.
    let server = FakeApiServer::builder()
        .bookmark_interval(None)
        .start()
        .await
        .unwrap();
    let client = server.client();
    let api: Api<Pod> = Api::all(client.clone());
    Api::<Pod>::namespaced(client.clone(), "a")
        .create(&PostParams::default(), &pod("a", "one"))
        .await
        .unwrap();

    let (store, writer) = kube::runtime::reflector::store::<Pod>();
    let stream = kube::runtime::reflector(writer, watcher(api, watcher::Config::default()));
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    wait_for("the initial list", || store.state().len() == 1).await;

    // Another type's change moves the global resourceVersion past the watcher's; compacting then
    // makes the watcher's version too old, so its next watch gets 410 and it lists again.
    wait_for("the watch to open", || server.open_watches() == 1).await;
    server.create(&owned_secret("a", "unrelated", &[])).unwrap();
    server.compact();
    server.close_watches();
    server.create(&pod("b", "two")).unwrap();
    wait_for("the relisted pod", || store.state().len() == 2).await;
    assert!(
        server.count("list", "", "pods") >= 2,
        "a compacted watch makes the watcher list again"
    );
    task.abort();
}

#[tokio::test]
async fn garbage_collection_follows_owner_references() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let p1 = pods
        .create(&PostParams::default(), &pod("default", "p1"))
        .await
        .unwrap();
    let p2 = pods
        .create(&PostParams::default(), &pod("default", "p2"))
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &owned_secret("default", "shared", &[&p1, &p2]),
        )
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &owned_secret("default", "only-p1", &[&p1]),
        )
        .await
        .unwrap();

    pods.delete("p1", &DeleteParams::default()).await.unwrap();
    assert!(
        secrets.get_opt("only-p1").await.unwrap().is_none(),
        "its only owner is gone"
    );
    assert!(
        secrets.get_opt("shared").await.unwrap().is_some(),
        "one owner remains"
    );
    pods.delete("p2", &DeleteParams::default()).await.unwrap();
    assert!(secrets.get_opt("shared").await.unwrap().is_none());

    // An owner reference with a stale uid does not keep an object alive.
    let p3 = pods
        .create(&PostParams::default(), &pod("default", "p3"))
        .await
        .unwrap();
    let mut stale = p3.clone();
    stale.metadata.uid = Some("00000000-0000-4000-8000-000000000000".into());
    secrets
        .create(
            &PostParams::default(),
            &owned_secret("default", "stale", &[&stale]),
        )
        .await
        .unwrap();
    assert!(secrets.get_opt("stale").await.unwrap().is_none());

    // Orphan propagation keeps dependents and drops the reference.
    secrets
        .create(
            &PostParams::default(),
            &owned_secret("default", "kept", &[&p3]),
        )
        .await
        .unwrap();
    pods.delete("p3", &DeleteParams::orphan()).await.unwrap();
    let kept = secrets.get("kept").await.unwrap();
    assert!(kept.metadata.owner_references.is_none());
}

#[tokio::test]
async fn finalizers_delay_deletion_until_removed() {
    let server = FakeApiServer::start().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
    let mut secret = owned_secret("default", "f", &[]);
    secret.metadata.owner_references = None;
    secret.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let deleting = secrets
        .delete("f", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert!(secrets.get_opt("f").await.unwrap().is_some());
    secrets
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(secrets.get_opt("f").await.unwrap().is_none());
}

#[tokio::test]
async fn forbidden_verbs_get_the_rbac_message() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();
    server.forbid("create", "", "secrets");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let err = api_status(
        secrets
            .create(&PostParams::default(), &owned_secret("default", "x", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        err.message,
        "secrets is forbidden: User \"system:serviceaccount:kube-system:secrets-store-csi-driver\" cannot create \
         resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
    server.forbid("get", "", "secrets");
    let err = api_status(secrets.get("x").await.unwrap_err());
    assert!(
        err.message.starts_with("secrets \"x\" is forbidden: User"),
        "{}",
        err.message
    );

    server.forbid("list", GROUP, "secretproviderclasses");
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &spc_resource("v1"));
    let err = api_status(all.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(
        err.message,
        "secretproviderclasses.secrets-store.csi.x-k8s.io is forbidden: User \
         \"system:serviceaccount:kube-system:secrets-store-csi-driver\" cannot list resource \
         \"secretproviderclasses\" in API group \"secrets-store.csi.x-k8s.io\" at the cluster scope"
    );
    server.allow_all();
    assert!(all.list(&ListParams::default()).await.is_ok());
}

#[tokio::test]
async fn request_log_counters_failures_and_hooks() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client_with_user_agent(Some("test-agent/1"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("default", "a"))
        .await
        .unwrap();
    pods.get("a").await.unwrap();
    let log = server.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].method.as_str(), log[0].verb.as_str(), log[0].status),
        ("POST", "create", 201)
    );
    assert_eq!(log[1].path, "/api/v1/namespaces/default/pods/a");
    assert_eq!(log[1].user_agent.as_deref(), Some("test-agent/1"));
    assert_eq!(server.writes("", "pods"), 1);
    assert_eq!(server.count("get", "", "pods"), 1);

    server.fail_next("get", "", "pods", 500, "InternalError", "boom");
    let err = api_status(pods.get("a").await.unwrap_err());
    assert_eq!(
        (err.code, err.reason.as_str(), err.message.as_str()),
        (500, "InternalError", "boom")
    );

    // A hook that changes the object between a read and a write makes the write conflict for real.
    let current = pods.get("a").await.unwrap();
    server.before_next("update", "", "pods", |handle| {
        handle
            .merge_patch::<Pod>(
                "default",
                "a",
                &json!({"metadata": {"labels": {"by": "hook"}}}),
            )
            .unwrap();
    });
    let err = api_status(
        pods.replace("a", &PostParams::default(), &current)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(
        server
            .get::<Pod>("default", "a")
            .unwrap()
            .metadata
            .labels
            .unwrap()["by"],
        "hook"
    );
}

#[tokio::test]
async fn test_hooks_read_and_write_the_store() {
    let server = FakeApiServer::start().await.unwrap();
    let created = server.create(&pod("ns", "p")).unwrap();
    assert!(created.metadata.uid.is_some());
    let err: StoreError = server.create(&pod("ns", "p")).unwrap_err();
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(server.list::<Pod>().len(), 1);
    let value = server
        .create_json(json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1alpha1", "kind": "SecretProviderClass",
            "metadata": {"name": "c", "namespace": "ns"}, "spec": {"provider": "p"}
        }))
        .unwrap();
    assert_eq!(value["apiVersion"], "secrets-store.csi.x-k8s.io/v1alpha1");
    assert_eq!(server.list_json(GROUP, "secretproviderclasses").len(), 1);
    server.delete::<Pod>("ns", "p").unwrap();
    assert!(server.get::<Pod>("ns", "p").is_none());
    assert_eq!(server.total_writes(), 0, "hooks are not requests");
}

#[tokio::test]
async fn a_kubeconfig_file_reaches_the_server() {
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    server.create(&pod("default", "k")).unwrap();
    assert_eq!(
        Api::<Pod>::default_namespaced(client)
            .get("k")
            .await
            .unwrap()
            .metadata
            .name
            .as_deref(),
        Some("k")
    );
}
