//! The CSI driver end to end, as kubelet uses it: the real `secrets-store-host serve` binary, a gRPC
//! client on its unix socket, real tmpfs mounts, the fake API server, wasm providers (test guests
//! and azure.wasm against the Key Vault emulator) and a legacy gRPC provider.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::driver::hold::HoldServer;
use crate::driver::{Driver, NODE, Setup};
use secrets_store_artifacts as guests;
use secrets_store_proto::csi::v1 as csi;
use tonic::Code;

const NS: &str = "default";

fn echo_setup(extra: &str) -> Setup {
    Setup {
        providers_yaml: format!("providers:\n  echo:\n    module: echo.wasm\n{extra}"),
        modules: vec![("echo.wasm".into(), guests::ECHO.into())],
        ..Setup::default()
    }
}

fn unpublish(volume_id: &str, target: &Path) -> csi::NodeUnpublishVolumeRequest {
    csi::NodeUnpublishVolumeRequest {
        volume_id: volume_id.into(),
        target_path: target.display().to_string(),
    }
}

fn read(target: &Path, name: &str) -> String {
    std::fs::read_to_string(target.join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_node_info() {
    let driver = Driver::start(echo_setup("")).await;
    let mut identity = driver.identity().await;
    let info = identity
        .get_plugin_info(csi::GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "secrets-store.csi.k8s.io");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    assert!(
        identity
            .get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner()
            .capabilities
            .is_empty()
    );
    assert_eq!(
        identity
            .probe(csi::ProbeRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready,
        Some(true)
    );

    let mut node = driver.node().await;
    assert_eq!(
        node.node_get_info(csi::NodeGetInfoRequest {})
            .await
            .unwrap()
            .into_inner()
            .node_id,
        NODE
    );
    assert!(
        node.node_get_capabilities(csi::NodeGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner()
            .capabilities
            .is_empty()
    );
    let status = node
        .node_stage_volume(csi::NodeStageVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    let status = node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    // The socket is owner-only.
    let mode = std::fs::metadata(&driver.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Metrics and health.
    let body = http_get(driver.metrics, "/readyz").await;
    assert!(body.starts_with("200"), "{body}");
    let body = http_get(driver.metrics, "/metrics").await;
    assert!(body.contains("provider_modules_loaded 1"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argument_errors_use_the_spec_codes() {
    let driver = Driver::start(echo_setup("")).await;
    let mut node = driver.node().await;
    let target = driver.target("uid-1", "vol");
    let good = driver.publish_request("vol-1", &target, "c", (NS, "p", "uid-1"));

    let cases: Vec<(&str, csi::NodePublishVolumeRequest, &str)> = vec![
        (
            "no volume id",
            csi::NodePublishVolumeRequest {
                volume_id: String::new(),
                ..good.clone()
            },
            "Volume ID",
        ),
        (
            "no target",
            csi::NodePublishVolumeRequest {
                target_path: String::new(),
                ..good.clone()
            },
            "Target path",
        ),
        (
            "no capability",
            csi::NodePublishVolumeRequest {
                volume_capability: None,
                ..good.clone()
            },
            "capability",
        ),
        (
            "not read-only",
            csi::NodePublishVolumeRequest {
                readonly: false,
                ..good.clone()
            },
            "read-only",
        ),
        (
            "no class",
            {
                let mut r = good.clone();
                r.volume_context.remove("secretProviderClass");
                r
            },
            "secretProviderClass",
        ),
        (
            "outside the pods dir",
            csi::NodePublishVolumeRequest {
                target_path: "/tmp/somewhere".into(),
                ..good.clone()
            },
            "outside",
        ),
        (
            "relative",
            csi::NodePublishVolumeRequest {
                target_path: "pods/x".into(),
                ..good.clone()
            },
            "normalised",
        ),
    ];
    for (what, request, expect) in cases {
        let status = node.node_publish_volume(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains(expect),
            "{what}: {}",
            status.message()
        );
    }

    // A target that is a symlink (pointing anywhere) is refused and nothing is mounted there.
    let elsewhere = driver.root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = driver.target("uid-1", "linked");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let status = node
        .node_publish_volume(driver.publish_request("vol-2", &link, "c", (NS, "p", "uid-1")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("symlink"), "{}", status.message());
    assert!(driver.our_mounts().is_empty());

    for (request, expect) in [
        (
            csi::NodeUnpublishVolumeRequest {
                volume_id: String::new(),
                target_path: "/x".into(),
            },
            "Volume ID",
        ),
        (
            csi::NodeUnpublishVolumeRequest {
                volume_id: "v".into(),
                target_path: String::new(),
            },
            "Target path",
        ),
    ] {
        let status = node.node_unpublish_volume(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(expect));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_republish_unpublish() {
    let driver = Driver::start(echo_setup("")).await;
    let uid_web = driver.create_pod(NS, "web");
    driver.create_class(NS, "echo-class", "echo", &[("files", r#"[{"path":"greeting","contents":"hello"},{"path":"dir/key","contents":"k","mode":256}]"#)]);
    let mut node = driver.node().await;
    let target = driver.target("uid-web", "secrets");
    let request = driver.publish_request(
        "vol-web",
        &target,
        "echo-class",
        (NS, "web", uid_web.as_str()),
    );

    node.node_publish_volume(request.clone()).await.unwrap();
    assert_eq!(read(&target, "greeting"), "hello");
    assert_eq!(read(&target, "dir/key"), "k");
    assert_eq!(
        std::fs::metadata(target.join("dir/key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o400
    );
    assert_eq!(
        driver.our_mounts(),
        vec![target.clone()],
        "a tmpfs of ours is mounted at the target"
    );

    // The pod status, as upstream writes it.
    let status = driver
        .pod_status(NS, "web", "echo-class")
        .expect("pod status written");
    assert_eq!(
        status["metadata"]["labels"]["internal.secrets-store.csi.k8s.io/node-name"],
        NODE
    );
    assert_eq!(
        status["metadata"]["ownerReferences"][0]["uid"],
        uid_web.as_str()
    );
    assert_eq!(status["status"]["mounted"], true);
    assert_eq!(status["status"]["targetPath"], target.display().to_string());
    assert_eq!(status["status"]["objects"][0]["id"], "echo/files");

    // Publishing again (kubelet retries, or republishes) is fine and changes nothing.
    node.node_publish_volume(request.clone()).await.unwrap();
    assert_eq!(driver.our_mounts().len(), 1);

    node.node_unpublish_volume(unpublish("vol-web", &target))
        .await
        .unwrap();
    assert!(driver.our_mounts().is_empty());
    assert!(!target.exists(), "the target directory is removed");
    node.node_unpublish_volume(unpublish("vol-web", &target))
        .await
        .expect("unpublishing twice is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_leave_nothing_behind_and_say_why() {
    let mut setup = echo_setup("  spin:\n    module: spin.wasm\n    timeoutSeconds: 1\n");
    setup
        .modules
        .push(("spin.wasm".into(), guests::SPIN.into()));
    let driver = Driver::start(setup).await;
    let uid_p = driver.create_pod(NS, "p");
    driver.create_class(NS, "no-provider", "", &[("a", "b")]);
    driver.create_class(NS, "no-params", "echo", &[]);
    driver.create_class(NS, "missing-provider", "gcp", &[("a", "b")]);
    driver.create_class(NS, "bad-name", "no/such", &[("a", "b")]);
    driver.create_class(
        NS,
        "bad-payload",
        "echo",
        &[("files", r#"[{"path":"../../etc/evil","contents":"x"}]"#)],
    );
    driver.create_class(NS, "slow", "spin", &[("a", "b")]);
    let mut node = driver.node().await;

    for (class, code, expect) in [
        (
            "absent",
            Code::NotFound,
            "SecretProviderClass \"absent\" not found in namespace \"default\"",
        ),
        (
            "no-provider",
            Code::InvalidArgument,
            "spec.provider is empty",
        ),
        (
            "no-params",
            Code::InvalidArgument,
            "spec.parameters is empty",
        ),
        ("missing-provider", Code::FailedPrecondition, "gcp"),
        ("bad-name", Code::InvalidArgument, "no/such"),
        ("bad-payload", Code::Internal, "../../etc/evil"),
        ("slow", Code::DeadlineExceeded, "deadline"),
    ] {
        let target = driver.target("uid-p", class);
        let status = node
            .node_publish_volume(driver.publish_request(
                &format!("vol-{class}"),
                &target,
                class,
                (NS, "p", uid_p.as_str()),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{class}: {status:?}");
        assert!(
            status.message().contains(expect),
            "{class}: {}",
            status.message()
        );
        assert!(
            status.message().contains(class) || class == "absent",
            "the message names the class: {}",
            status.message()
        );
        assert!(!target.exists(), "{class}: nothing is left at the target");
    }
    assert!(driver.our_mounts().is_empty());
    driver
        .eventually("a Warning event per failure", || {
            driver
                .events_for("p")
                .iter()
                .filter(|(kind, _, _)| kind == "Warning")
                .count()
                >= 7
        })
        .await;
    let events = driver.events_for("p");
    assert!(
        events.iter().any(
            |(_, reason, message)| reason == "SecretProviderClassNotFound"
                && message.contains("absent")
        ),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operation_per_volume_at_a_time() {
    let hold = HoldServer::start().await;
    let setup = Setup {
        providers_yaml: format!(
            "providers:\n  fetch:\n    module: fetch.wasm\n    allowedHosts: [\"http://{}\"]\n",
            hold.addr
        ),
        modules: vec![("fetch.wasm".into(), guests::FETCH.into())],
        ..Setup::default()
    };
    let driver = Driver::start(setup).await;
    let uid_p = driver.create_pod(NS, "p");
    driver.create_class(
        NS,
        "held",
        "fetch",
        &[("urls", &format!("http://{}/held", hold.addr))],
    );
    let target = driver.target("uid-p", "held");
    let request = driver.publish_request("vol-held", &target, "held", (NS, "p", uid_p.as_str()));

    let mut first_client = driver.node().await;
    let first_request = request.clone();
    let first = tokio::spawn(async move { first_client.node_publish_volume(first_request).await });
    hold.arrived().await;
    let mut node = driver.node().await;
    let status = node.node_publish_volume(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let status = node
        .node_unpublish_volume(unpublish("vol-held", &target))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    hold.release(1);
    first.await.unwrap().unwrap();
    assert_eq!(read(&target, "body-0"), "released");
    node.node_unpublish_volume(unpublish("vol-held", &target))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_calls_in_flight_finish() {
    let hold = HoldServer::start().await;
    let setup = Setup {
        providers_yaml: format!(
            "providers:\n  fetch:\n    module: fetch.wasm\n    allowedHosts: [\"http://{}\"]\n",
            hold.addr
        ),
        modules: vec![("fetch.wasm".into(), guests::FETCH.into())],
        ..Setup::default()
    };
    let mut driver = Driver::start(setup).await;
    let uid_p = driver.create_pod(NS, "p");
    driver.create_class(
        NS,
        "held",
        "fetch",
        &[("urls", &format!("http://{}/held", hold.addr))],
    );
    let target = driver.target("uid-p", "held");
    let request = driver.publish_request("vol-held", &target, "held", (NS, "p", uid_p.as_str()));
    let mut client = driver.node().await;
    let call = tokio::spawn(async move { client.node_publish_volume(request).await });
    hold.arrived().await;
    let pid = rustix::process::Pid::from_raw(driver.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    hold.release(1);
    call.await.unwrap().expect("the call in flight completes");
    let status = driver.stop(false);
    assert!(
        status.success() || status.code().is_none(),
        "clean exit: {status:?}"
    );
    assert!(!driver.socket.exists(), "the socket is removed on shutdown");
    assert_eq!(read(&target, "body-0"), "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_survive_a_driver_crash() {
    let mut driver = Driver::start(Setup {
        args: vec![
            "--enable-secret-rotation".into(),
            "--rotation-poll-interval=0s".into(),
        ],
        ..echo_setup("")
    })
    .await;
    let uid_p = driver.create_pod(NS, "p");
    driver.create_class(
        NS,
        "c",
        "echo",
        &[("files", r#"[{"path":"f","contents":"v1"}]"#)],
    );
    let mut node = driver.node().await;
    let targets: Vec<_> = (0..3)
        .map(|i| driver.target("uid-p", &format!("v{i}")))
        .collect();
    for (i, target) in targets.iter().enumerate() {
        node.node_publish_volume(driver.publish_request(
            &format!("vol-{i}"),
            target,
            "c",
            (NS, "p", uid_p.as_str()),
        ))
        .await
        .unwrap();
    }
    driver.restart().await; // SIGKILL, then a new process
    for target in &targets {
        assert_eq!(read(target, "f"), "v1", "still readable after the crash");
    }
    assert_eq!(driver.our_mounts().len(), 3);
    let mut node = driver.node().await;
    for (i, target) in targets.iter().enumerate() {
        node.node_publish_volume(driver.publish_request(
            &format!("vol-{i}"),
            target,
            "c",
            (NS, "p", uid_p.as_str()),
        ))
        .await
        .expect("republish after restart");
        node.node_unpublish_volume(unpublish(&format!("vol-{i}"), target))
            .await
            .expect("unpublish after restart");
        assert!(!target.exists());
    }
    assert!(driver.our_mounts().is_empty(), "no tmpfs leaked");
}

/// A driver that dies between writing a volume's files and its pod status leaves kubelet retrying a
/// publish that never finished; the next driver adopts that volume (fresh content, status written)
/// and leaves a volume whose publish did finish alone (rotation is off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_without_its_pod_status_is_adopted_after_a_restart() {
    let mut driver = Driver::start(echo_setup("")).await;
    driver.create_class(
        NS,
        "c",
        "echo",
        &[("files", r#"[{"path":"f","contents":"v1"}]"#)],
    );
    let mut volumes = Vec::new();
    for pod in ["finished", "lost"] {
        let uid = driver.create_pod(NS, pod);
        let target = driver.target(&uid, "secrets");
        let request = driver.publish_request(&format!("vol-{pod}"), &target, "c", (NS, pod, &uid));
        volumes.push((pod, target, request));
    }
    let mut node = driver.node().await;
    for (_, _, request) in &volumes {
        node.node_publish_volume(request.clone()).await.unwrap();
    }
    // As if the process had died before recording the second pod's status; the store has moved
    // on meanwhile.
    let lost_status = secrets_store_k8s::pod_status_name("lost", NS, "c");
    driver
        .api
        .delete::<secrets_store_k8s::SecretProviderClassPodStatus>(NS, &lost_status)
        .unwrap();
    driver
        .api
        .merge_patch::<secrets_store_k8s::SecretProviderClass>(
            NS,
            "c",
            &serde_json::json!({"spec": {"parameters": {"files": r#"[{"path":"f","contents":"v2"}]"#}}}),
        )
        .unwrap();

    driver.restart().await;
    let mut node = driver.node().await;
    for (_, _, request) in &volumes {
        node.node_publish_volume(request.clone())
            .await
            .expect("publish after the restart");
    }
    let (finished, lost) = (&volumes[0].1, &volumes[1].1);
    assert_eq!(read(finished, "f"), "v1", "a finished volume is left alone");
    assert_eq!(read(lost, "f"), "v2", "the adopted volume was refreshed");
    let status = driver
        .pod_status(NS, "lost", "c")
        .expect("the pod status is written again");
    assert_eq!(status["status"]["mounted"], true);
    assert_eq!(
        status["status"]["targetPath"].as_str(),
        Some(lost.to_str().unwrap())
    );
    for (pod, target, _) in &volumes {
        node.node_unpublish_volume(unpublish(&format!("vol-{pod}"), target))
            .await
            .unwrap();
    }
    assert!(driver.our_mounts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_grpc_provider_is_reached_through_its_socket() {
    let driver = Driver::start(echo_setup("")).await;
    let socket = driver.legacy_dir.join("legacy.sock");
    let seen = legacy::serve(&socket).await;
    let uid_p = driver.create_pod(NS, "p");
    driver.create_class(NS, "old", "legacy", &[("objects", "whatever")]);
    let mut node = driver.node().await;
    let target = driver.target("uid-p", "old");
    let mut request = driver.publish_request("vol-old", &target, "old", (NS, "p", uid_p.as_str()));
    request.secrets.insert("clientid".into(), "abc".into());
    node.node_publish_volume(request).await.unwrap();
    assert_eq!(read(&target, "from-legacy"), "legacy bytes");
    let received = seen.lock().clone().expect("the provider was called");
    assert_eq!(
        received.permission, "420",
        "permission as upstream sends it"
    );
    assert_eq!(received.target_path, target.display().to_string());
    let attributes: serde_json::Value = serde_json::from_str(&received.attributes).unwrap();
    assert_eq!(attributes["objects"], "whatever");
    assert_eq!(attributes["csi.storage.k8s.io/pod.name"], "p");
    let secrets: serde_json::Value = serde_json::from_str(&received.secrets).unwrap();
    assert_eq!(secrets["clientid"], "abc");
    let status = driver.pod_status(NS, "p", "old").unwrap();
    assert_eq!(status["status"]["objects"][0]["version"], "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_subcommand_serves_the_upstream_api() {
    use secrets_store_proto::provider::v1alpha1 as api;
    use secrets_store_proto::provider::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("echo.sock");
    let mut child = std::process::Command::new(crate::driver::BINARY)
        .args([
            "provider",
            &format!("--endpoint=unix://{}", socket.display()),
            &format!("--module={}", guests::ECHO),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let channel = crate::driver::unix_channel_when_ready(&socket).await;
    let mut client = CsiDriverProviderClient::new(channel);
    let version = client
        .version(api::VersionRequest {
            version: "v1alpha1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.version, "v1alpha1");
    assert!(version.runtime_name.contains("echo"));
    let response = client
        .mount(api::MountRequest {
            attributes: r#"{"files":"[{\"path\":\"a\",\"contents\":\"A\"}]"}"#.into(),
            secrets: "{}".into(),
            target_path: "/ignored".into(),
            permission: "420".into(),
            current_object_version: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.files.len(), 1);
    assert_eq!(
        (
            response.files[0].path.as_str(),
            response.files[0].mode,
            response.files[0].contents.as_slice()
        ),
        ("a", 0o644, &b"A"[..])
    );
    assert_eq!(response.object_version[0].id, "echo/files");
    let status = client
        .mount(api::MountRequest {
            attributes: "not json".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_mounts_rotates_and_keeps_content_when_a_refresh_fails() {
    use keyvault_emulator::{Config, Emulator, Fault, FaultScope, VaultSpec};
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let emulator = Emulator::start(Config::default()).await.unwrap();
    emulator
        .add_vault(VaultSpec::new("kv-e2e", TENANT))
        .unwrap();
    emulator.add_app(TENANT, "app", "app-secret-value");
    emulator
        .set_secret("kv-e2e", "db-password", "first-value", None)
        .unwrap();
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), emulator.ca_pem()).unwrap();
    let mut args = vec![
        "--enable-secret-rotation".to_string(),
        "--rotation-poll-interval=0s".to_string(),
        format!("--ca-file={}", ca.path().display()),
    ];
    for (host, port, addr) in emulator.resolve_overrides() {
        args.push(format!("--resolve={host}:{port}={addr}"));
    }
    let setup = Setup {
        providers_yaml: "providers:\n  azure:\n    module: azure.wasm\n    allowedHosts: [\"https://*.vault.azure.net\", \"https://login.microsoftonline.com\"]\n".into(),
        modules: vec![("azure.wasm".into(), guests::AZURE.into())],
        args,
        ..Setup::default()
    };
    let driver = Driver::start(setup).await;
    let uid_app = driver.create_pod(NS, "app");
    let objects = "array:\n  - |\n    objectName: db-password\n    objectType: secret\n";
    driver.create_class(
        NS,
        "kv",
        "azure",
        &[
            ("keyvaultName", "kv-e2e"),
            ("tenantID", TENANT),
            ("objects", objects),
        ],
    );
    let mut node = driver.node().await;
    let target = driver.target("uid-app", "kv");
    let mut request =
        driver.publish_request("vol-kv", &target, "kv", (NS, "app", uid_app.as_str()));
    request.secrets.insert("clientid".into(), "app".into());
    request
        .secrets
        .insert("clientsecret".into(), "app-secret-value".into());

    node.node_publish_volume(request.clone()).await.unwrap();
    assert_eq!(read(&target, "db-password"), "first-value");

    let version = emulator
        .set_secret("kv-e2e", "db-password", "second-value", None)
        .unwrap();
    node.node_publish_volume(request.clone()).await.unwrap();
    assert_eq!(
        read(&target, "db-password"),
        "second-value",
        "a republish refreshes the content"
    );
    let status = driver.pod_status(NS, "app", "kv").unwrap();
    assert_eq!(status["status"]["objects"][0]["version"], version.as_str());

    // The vault breaks: the republish still answers OK and the previous content stays.
    emulator.inject(
        FaultScope::DataPlane,
        100,
        Fault::ServerError { status: 500 },
    );
    emulator
        .set_secret("kv-e2e", "db-password", "third-value", None)
        .unwrap();
    node.node_publish_volume(request.clone())
        .await
        .expect("a failed refresh is not a failed volume");
    assert_eq!(read(&target, "db-password"), "second-value");
    driver
        .eventually("rotation events", || {
            let events = driver.events_for("app");
            events
                .iter()
                .any(|(_, reason, _)| reason == "MountRotationComplete")
                && events
                    .iter()
                    .any(|(kind, reason, _)| kind == "Warning" && reason == "MountRotationFailed")
        })
        .await;
    emulator.clear_injected();
    node.node_unpublish_volume(unpublish("vol-kv", &target))
        .await
        .unwrap();

    // Nothing secret reached the driver's log (it ran at the highest verbosity).
    let logs = driver.logs();
    for secret in ["first-value", "second-value", "app-secret-value", "eyJ"] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the driver log"
        );
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    // "HTTP/1.1 200 OK ..." → "200 …body…"
    text.split_once(' ')
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(text)
}

/// A minimal upstream-style provider daemon on a unix socket.
mod legacy {
    use std::path::Path;
    use std::sync::Arc;

    use parking_lot::Mutex;

    use secrets_store_proto::provider::v1alpha1 as api;
    use secrets_store_proto::provider::v1alpha1::csi_driver_provider_server::{
        CsiDriverProvider, CsiDriverProviderServer,
    };
    use tonic::{Request, Response, Status};

    pub type Seen = Arc<Mutex<Option<api::MountRequest>>>;

    struct Legacy(Seen);

    #[tonic::async_trait]
    impl CsiDriverProvider for Legacy {
        async fn version(
            &self,
            _: Request<api::VersionRequest>,
        ) -> Result<Response<api::VersionResponse>, Status> {
            Ok(Response::new(api::VersionResponse {
                version: "v1alpha1".into(),
                runtime_name: "legacy".into(),
                runtime_version: "1".into(),
            }))
        }
        async fn mount(
            &self,
            request: Request<api::MountRequest>,
        ) -> Result<Response<api::MountResponse>, Status> {
            *self.0.lock() = Some(request.into_inner());
            Ok(Response::new(api::MountResponse {
                object_version: vec![api::ObjectVersion {
                    id: "secret/x".into(),
                    version: "7".into(),
                }],
                error: None,
                files: vec![api::File {
                    path: "from-legacy".into(),
                    mode: 0o644,
                    contents: b"legacy bytes".to_vec(),
                }],
            }))
        }
    }

    pub async fn serve(socket: &Path) -> Seen {
        let seen: Seen = Arc::default();
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let service = CsiDriverProviderServer::new(Legacy(seen.clone()));
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await;
        });
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_objects_are_synced_when_enabled() {
    let driver = Driver::start(Setup {
        args: vec!["--enable-secret-sync".into()],
        ..echo_setup("")
    })
    .await;
    let uid = driver.create_pod(NS, "web");
    driver
        .api
        .create_json(serde_json::json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
            "metadata": {"name": "synced-class", "namespace": NS},
            "spec": {
                "provider": "echo",
                "parameters": {"files": r#"[{"path":"greeting","contents":"hello"}]"#},
                "secretObjects": [{
                    "secretName": "web-greeting", "type": "Opaque", "labels": {"app": "web"},
                    "data": [{"objectName": "greeting", "key": "message"}]
                }]
            }
        }))
        .unwrap();
    let mut node = driver.node().await;
    let target = driver.target("uid-web", "synced");
    node.node_publish_volume(driver.publish_request(
        "vol-synced",
        &target,
        "synced-class",
        (NS, "web", uid.as_str()),
    ))
    .await
    .unwrap();
    let secret = driver
        .api
        .get_json("", "secrets", NS, "web-greeting")
        .expect("the Secret is created with the mount");
    assert_eq!(secret["data"]["message"], "aGVsbG8=");
    assert_eq!(
        secret["metadata"]["labels"]["secrets-store.csi.k8s.io/managed"],
        "true"
    );
    assert_eq!(secret["metadata"]["labels"]["app"], "web");
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["kind"], "SecretProviderClassPodStatus",
        "a pod without a controller: the pod status owns it"
    );
    node.node_unpublish_volume(unpublish("vol-synced", &target))
        .await
        .unwrap();
    // Deleting the pod removes its status object and, through the owner references, the Secret.
    driver
        .api
        .delete::<k8s_openapi::api::core::v1::Pod>(NS, "web")
        .unwrap();
    assert!(
        driver
            .api
            .get_json("", "secrets", NS, "web-greeting")
            .is_none(),
        "garbage collected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_added_to_the_configmap_are_used_without_a_restart() {
    let mut setup = echo_setup("");
    setup
        .modules
        .push(("second.wasm".into(), guests::ECHO.into()));
    let driver = Driver::start(setup).await;
    let uid = driver.create_pod(NS, "p");
    driver.create_class(
        NS,
        "second",
        "second",
        &[("files", r#"[{"path":"x","contents":"from second"}]"#)],
    );
    let mut node = driver.node().await;
    let target = driver.target("uid-p", "second");
    let request = driver.publish_request("vol-second", &target, "second", (NS, "p", uid.as_str()));
    let status = node.node_publish_volume(request.clone()).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "not configured yet: {status:?}"
    );

    // The operator edits the ConfigMap: kubelet swaps the file in place.
    let yaml = "providers:\n  echo:\n    module: echo.wasm\n  second:\n    module: second.wasm\n";
    let staged = driver.providers_dir.join(".providers.yaml.new");
    std::fs::write(&staged, yaml).unwrap();
    std::fs::rename(&staged, driver.providers_dir.join("providers.yaml")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match node.node_publish_volume(request.clone()).await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the new provider was never picked up"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(read(&target, "x"), "from second");
    node.node_unpublish_volume(unpublish("vol-second", &target))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_volume_is_a_write_error_and_leaves_nothing() {
    let driver = Driver::start(Setup {
        args: vec!["--volume-size-limit-mib=1".into()],
        ..echo_setup("")
    })
    .await;
    let uid = driver.create_pod(NS, "p");
    // Three files of 500 kB: within the provider's policy, more than the 1 MiB volume holds.
    driver.create_class(NS, "big", "echo", &[("generate", "3:500000")]);
    let mut node = driver.node().await;
    let target = driver.target("uid-p", "big");
    let status = node
        .node_publish_volume(driver.publish_request(
            "vol-big",
            &target,
            "big",
            (NS, "p", uid.as_str()),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status.message().contains("writing the files"),
        "{}",
        status.message()
    );
    assert!(
        !target.exists(),
        "the failed volume is unmounted and removed"
    );
    assert!(driver.our_mounts().is_empty());
    let body = http_get(driver.metrics, "/metrics").await;
    assert!(
        body.contains(
            "node_publish_error_total{provider=\"echo\",error_type=\"FileWriteError\"} 1"
        ),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_module_is_refused_counted_and_does_not_stop_the_others() {
    let mut setup = echo_setup("  broken:\n    module: broken.wasm\n");
    let truncated = std::fs::read(guests::ECHO).unwrap()[..1000].to_vec();
    setup.module_bytes.push(("broken.wasm".into(), truncated));
    let driver = Driver::start(setup).await;
    let uid = driver.create_pod(NS, "p");
    driver.create_class(NS, "uses-broken", "broken", &[("a", "b")]);
    driver.create_class(NS, "uses-echo", "echo", &[("a", "b")]);
    let mut node = driver.node().await;
    let target = driver.target("uid-p", "broken");
    let status = node
        .node_publish_volume(driver.publish_request(
            "vol-broken",
            &target,
            "uses-broken",
            (NS, "p", uid.as_str()),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("broken"), "{}", status.message());
    let ok = driver.target("uid-p", "echo");
    node.node_publish_volume(driver.publish_request(
        "vol-echo",
        &ok,
        "uses-echo",
        (NS, "p", uid.as_str()),
    ))
    .await
    .expect("the other providers keep working");
    let body = http_get(driver.metrics, "/metrics").await;
    assert!(
        body.contains("provider_module_reloads_total{result=\"failure\"}"),
        "{body}"
    );
    assert!(body.contains("provider_modules_loaded 1"), "{body}");
    node.node_unpublish_volume(unpublish("vol-echo", &ok))
        .await
        .unwrap();
}
