//! Legacy gRPC providers: a v1alpha1 daemon (tonic, generated server trait) on a real unix socket in
//! a temporary directory, reached through the registry.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;
use secrets_store_artifacts as guests;
use secrets_store_contract::{File, ObjectVersion};
use secrets_store_providers::{
    GrpcCode, ProviderCallError, ProviderHandle, ProviderRegistry, RegistryConfig, RegistryError,
};
use secrets_store_runtime::CallContext;
use tonic::Status;

const TARGET: &str = "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/vol/mount";

fn legacy_registry(dirs: &[&Path], max_recv_msg_size: usize) -> std::sync::Arc<ProviderRegistry> {
    ProviderRegistry::new(
        runtime(),
        RegistryConfig {
            providers_dir: None,
            legacy_dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
            max_recv_msg_size,
        },
    )
}

async fn mount(
    handle: &ProviderHandle,
    request: &secrets_store_contract::MountRequest,
    deadline: Duration,
) -> Result<secrets_store_contract::MountResponse, ProviderCallError> {
    handle
        .mount(
            request,
            &CallContext::default(),
            Path::new(TARGET),
            deadline,
        )
        .await
}

fn ok(files: &[(&str, i32, &[u8])]) -> Reply {
    Reply::Ok(files_response(files, &[("secret/db", "v7")]))
}

#[tokio::test]
async fn mount_speaks_the_upstream_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(
        dir.path(),
        "vault",
        vec![ok(&[
            ("db/password", 0o600, b"hunter2"),
            ("config.json", 0o644, b"{}"),
        ])],
    );
    let registry = legacy_registry(&[dir.path()], 4 << 20);
    let handle = registry.resolve("vault").unwrap();
    assert_eq!((handle.name(), handle.kind()), ("vault", "grpc"));
    let ProviderHandle::Legacy(legacy) = &handle else {
        panic!("legacy provider expected")
    };
    assert_eq!(legacy.socket(), daemon.socket);

    let mut request = request(&[
        ("objects", "array:\n  - objectName: db\n"),
        ("csi.storage.k8s.io/pod.name", "web-0"),
    ]);
    request.secrets = [
        ("clientid".to_string(), "id-1".to_string()),
        ("clientsecret".to_string(), "s3cret-value".to_string()),
    ]
    .into();
    request.current_object_versions = vec![ObjectVersion {
        id: "secret/db".into(),
        version: "v6".into(),
    }];
    let response = mount(&handle, &request, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        response.files,
        [
            File {
                path: "db/password".into(),
                mode: 0o600,
                contents: b"hunter2".to_vec()
            },
            File {
                path: "config.json".into(),
                mode: 0o644,
                contents: b"{}".to_vec()
            },
        ]
    );
    assert_eq!(
        response.object_versions,
        [ObjectVersion {
            id: "secret/db".into(),
            version: "v7".into()
        }]
    );

    let seen = daemon.provider.mounts.lock().clone();
    assert_eq!(seen.len(), 1);
    let sent = &seen[0];
    assert_eq!(json_map(&sent.attributes), request.attributes);
    assert_eq!(json_map(&sent.secrets), request.secrets);
    assert_eq!(sent.permission, "420", "0644 as upstream sends it: decimal");
    assert_eq!(sent.target_path, TARGET);
    assert_eq!(sent.current_object_version.len(), 1);
    assert_eq!(sent.current_object_version[0].id, "secret/db");
    assert_eq!(sent.current_object_version[0].version, "v6");

    // The channel is reused for the next call, and Version works too.
    mount(&handle, &request, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(daemon.provider.calls(), 2);
    let version = legacy.version(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (
            version.version.as_str(),
            version.runtime_name.as_str(),
            version.runtime_version.as_str()
        ),
        ("v1alpha1", "fake", "1.2.3")
    );
}

#[tokio::test]
async fn provider_errors_are_reported_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut coded = files_response(&[], &[("secret/db", "v1")]);
    coded.error = Some(secrets_store_proto::provider::v1alpha1::Error {
        code: "KeyVaultAccessDenied".into(),
    });
    let daemon = start_daemon(
        dir.path(),
        "vault",
        vec![
            Reply::Ok(coded),
            Reply::Status(Status::permission_denied(
                "identity id-1 with secret s3cret-value may not read secret/db",
            )),
        ],
    );
    let registry = legacy_registry(&[dir.path()], 4 << 20);
    let handle = registry.resolve("vault").unwrap();
    let mut request = request(&[]);
    request.secrets = [("clientsecret".to_string(), "s3cret-value".to_string())].into();

    let err = mount(&handle, &request, Duration::from_secs(10))
        .await
        .unwrap_err();
    let ProviderCallError::Grpc {
        provider,
        code,
        message,
        socket,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((provider.as_str(), *code), ("vault", GrpcCode::Unknown));
    assert!(
        message.contains("provider error code KeyVaultAccessDenied"),
        "{message}"
    );
    assert_eq!(socket, &daemon.socket);
    assert!(
        err.to_string()
            .contains(&daemon.socket.display().to_string()),
        "{err}"
    );
    assert_eq!(err.kind_label(), "grpc_error");

    let err = mount(&handle, &request, Duration::from_secs(10))
        .await
        .unwrap_err();
    let ProviderCallError::Grpc { code, message, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*code, GrpcCode::PermissionDenied);
    assert!(message.contains("may not read secret/db"), "{message}");
    assert!(!err.to_string().contains("s3cret-value"), "{err}");
    assert_eq!(daemon.provider.calls(), 2, "only UNAVAILABLE is retried");
}

#[tokio::test]
async fn unavailable_is_retried_three_times_in_all() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(
        dir.path(),
        "flaky",
        vec![
            Reply::Status(Status::unavailable("warming up")),
            Reply::Status(Status::unavailable("warming up")),
            ok(&[("a", 0o644, b"1")]),
        ],
    );
    let registry = legacy_registry(&[dir.path()], 4 << 20);
    let handle = registry.resolve("flaky").unwrap();
    let started = Instant::now();
    let response = mount(&handle, &request(&[]), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(response.files[0].path, "a");
    assert_eq!(daemon.provider.calls(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "two backoffs of at least 0.5 s each"
    );

    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(
        dir.path(),
        "down",
        vec![Reply::Status(Status::unavailable("down"))],
    );
    let registry = legacy_registry(&[dir.path()], 4 << 20);
    let handle = registry.resolve("down").unwrap();
    let err = mount(&handle, &request(&[]), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ProviderCallError::Grpc {
                code: GrpcCode::Unavailable,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(daemon.provider.calls(), 3, "three attempts, then give up");

    // Retries never outlast the deadline: with 300 ms there is no time for a 0.5 s backoff.
    let err = mount(&handle, &request(&[]), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ProviderCallError::Grpc {
                code: GrpcCode::Unavailable,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(daemon.provider.calls(), 4);
}

#[tokio::test]
async fn a_hanging_provider_hits_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path(), "slow", vec![Reply::Hang]);
    let registry = legacy_registry(&[dir.path()], 4 << 20);
    let handle = registry.resolve("slow").unwrap();
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let err = mount(&handle, &request(&[]), deadline).await.unwrap_err();
    assert!(
        matches!(&err, ProviderCallError::Deadline { provider, after } if provider == "slow" && *after == deadline),
        "{err:?}"
    );
    assert!(started.elapsed() >= deadline);
    assert_eq!(daemon.provider.calls(), 1);
    assert!(err.to_string().contains("deadline exceeded"), "{err}");
}

#[tokio::test]
async fn sockets_are_searched_in_order() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let registry = legacy_registry(&[first.path(), second.path()], 4 << 20);

    let in_second = start_daemon(second.path(), "p", vec![ok(&[("from", 0o644, b"second")])]);
    let in_first = start_daemon(first.path(), "p", vec![ok(&[("from", 0o644, b"first")])]);
    let handle = registry.resolve("p").unwrap();
    let response = mount(&handle, &request(&[]), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(response.files[0].contents, b"first");

    // The first directory's provider goes away (socket removed): the second one answers.
    drop(in_first);
    std::fs::remove_file(first.path().join("p.sock")).unwrap();
    let handle = registry.resolve("p").unwrap();
    let ProviderHandle::Legacy(legacy) = &handle else {
        panic!("legacy provider expected")
    };
    assert_eq!(legacy.socket(), in_second.socket);
    let response = mount(&handle, &request(&[]), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(response.files[0].contents, b"second");

    // A regular file of that name is not a socket and does not hide the real one.
    std::fs::write(first.path().join("p.sock"), b"").unwrap();
    let ProviderHandle::Legacy(legacy) = registry.resolve("p").unwrap() else {
        panic!("legacy provider expected")
    };
    assert_eq!(legacy.socket(), in_second.socket);
}

#[tokio::test]
async fn unsafe_responses_are_refused() {
    let cases: Vec<(
        &str,
        secrets_store_proto::provider::v1alpha1::MountResponse,
        &str,
    )> = vec![
        (
            "path traversal",
            files_response(&[("../escape", 0o644, b"x")], &[("secret/a", "1")]),
            "`..`",
        ),
        (
            "absolute path",
            files_response(&[("/etc/passwd", 0o644, b"x")], &[("secret/a", "1")]),
            "absolute",
        ),
        (
            "setuid mode",
            files_response(&[("a", 0o4755, b"x")], &[("secret/a", "1")]),
            "mode",
        ),
        (
            "negative mode",
            files_response(&[("a", -1, b"x")], &[("secret/a", "1")]),
            "negative mode",
        ),
        (
            "no object versions",
            files_response(&[("a", 0o644, b"x")], &[]),
            "no object versions",
        ),
    ];
    for (what, response, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let daemon = start_daemon(dir.path(), "bad", vec![Reply::Ok(response)]);
        let registry = legacy_registry(&[dir.path()], 4 << 20);
        let handle = registry.resolve("bad").unwrap();
        let err = mount(&handle, &request(&[]), Duration::from_secs(10))
            .await
            .unwrap_err();
        let ProviderCallError::InvalidResponse {
            provider,
            message,
            socket,
        } = &err
        else {
            panic!("{what}: {err:?}")
        };
        assert_eq!(provider, "bad", "{what}");
        assert_eq!(socket, &daemon.socket, "{what}");
        assert!(message.contains(expected), "{what}: {message}");
    }
}

#[tokio::test]
async fn oversized_responses_are_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![b'x'; 8192];
    let _daemon = start_daemon(dir.path(), "big", vec![ok(&[("big", 0o644, &big)])]);
    let registry = legacy_registry(&[dir.path()], 4096);
    let handle = registry.resolve("big").unwrap();
    let err = mount(&handle, &request(&[]), Duration::from_secs(10))
        .await
        .unwrap_err();
    let ProviderCallError::Grpc { code, message, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*code, GrpcCode::ResourceExhausted);
    assert!(message.contains("limited to 4096 bytes"), "{message}");
}

#[tokio::test]
async fn a_socket_nobody_listens_on_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dead.sock");
    // Bound and closed: the socket file stays, connections are refused.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let registry = legacy_registry(&[dir.path()], 4 << 20);
    let handle = registry.resolve("dead").unwrap();
    let err = mount(&handle, &request(&[]), Duration::from_secs(30))
        .await
        .unwrap_err();
    let ProviderCallError::Unreachable {
        provider,
        socket: at,
        message,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((provider.as_str(), at), ("dead", &socket));
    assert!(message.contains("connecting to the socket"), "{message}");
    assert!(
        err.to_string().contains(&socket.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn not_found_says_where_it_looked() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let volume = ConfigMapDir::new(&[
        (
            "providers.yaml",
            b"providers:\n  echo: {module: echo.wasm}\n".to_vec(),
        ),
        ("echo.wasm", read(guests::ECHO)),
    ]);
    let registry = registry_for(
        volume.path(),
        vec![first.path().to_path_buf(), second.path().to_path_buf()],
    );
    registry.reload();
    let err = registry.resolve("vault").unwrap_err();
    let RegistryError::NotFound {
        name,
        searched,
        wasm_available,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(name, "vault");
    assert_eq!(
        searched,
        &[first.path().to_path_buf(), second.path().to_path_buf()]
    );
    assert_eq!(wasm_available, &["echo".to_string()]);
    let message = err.to_string();
    for part in [
        "vault.sock".to_string(),
        first.path().display().to_string(),
        second.path().display().to_string(),
        "(echo)".to_string(),
    ] {
        assert!(message.contains(&part), "{part} in {message}");
    }

    // A wasm provider wins over a socket of the same name.
    let _daemon = start_daemon(first.path(), "echo", vec![ok(&[])]);
    assert_eq!(registry.resolve("echo").unwrap().kind(), "wasm");
}

#[test]
fn upstream_socket_order() {
    let default = RegistryConfig::default();
    assert_eq!(
        default.legacy_dirs,
        [
            PathBuf::from("/etc/kubernetes/secrets-store-csi-providers"),
            PathBuf::from("/var/run/secrets-store-csi-providers"),
        ]
    );
    assert_eq!(default.max_recv_msg_size, 4 << 20);
    assert_eq!(
        RegistryConfig::upstream_legacy_dirs(
            Path::new("/pv"),
            &[PathBuf::from("/a1"), PathBuf::from("/a2")]
        ),
        [
            PathBuf::from("/a1"),
            PathBuf::from("/a2"),
            PathBuf::from("/pv")
        ]
    );
}

#[tokio::test]
async fn a_restarted_daemon_is_reached_again() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let registry = legacy_registry(&[dir.path()], 4 << 20);
    let first = start_daemon(dir.path(), "p", vec![ok(&[("from", 0o644, b"first")])]);
    let handle = registry.resolve("p").unwrap();
    let response = mount(&handle, &request(&[]), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(response.files[0].contents, b"first");

    // The daemon restarts (a provider DaemonSet rollout): same socket path, new process.
    let socket = first.socket.clone();
    first.shut_down().await;
    std::fs::remove_file(&socket).unwrap();
    let second = start_daemon(dir.path(), "p", vec![ok(&[("from", 0o644, b"second")])]);
    let handle = registry.resolve("p").unwrap();
    let response = mount(&handle, &request(&[]), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(response.files[0].contents, b"second");
    assert_eq!(second.provider.calls(), 1);
}
