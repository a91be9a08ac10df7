//! Every test guest run through the real runtime: what it may do, and that the host contains what
//! it may not. Each guest has a module here (checked at compile time by `foreach_guest!`).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use crate::support::*;
use futures::FutureExt;
use secrets_store_artifacts as guests;
use secrets_store_runtime::contract::ErrorKind;
use secrets_store_runtime::{
    CallContext, CallError, LoadError, NetworkConfig, Observer, PolicySpec, ResolveOverride,
    RuntimeConfig,
};

macro_rules! assert_guest_tested {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
guests::foreach_guest!(assert_guest_tested);

fn ctx() -> CallContext {
    CallContext {
        pod: Some("default/test-pod".into()),
    }
}

/// After any failure the host must still serve the next mount.
async fn assert_host_still_works(runtime: &secrets_store_runtime::Runtime) {
    let echo = load(runtime, "echo", guests::ECHO, PolicySpec::default());
    let response = echo
        .mount(&request(&[]), &ctx())
        .await
        .expect("the host keeps working after a failure");
    assert_eq!(response.files[0].contents, b"hello from echo\n");
}

mod echo {
    use super::*;

    #[tokio::test]
    async fn describe_and_mount() {
        let runtime = runtime();
        let echo = load(&runtime, "echo", guests::ECHO, PolicySpec::default());
        let info = echo.describe().await.unwrap();
        assert_eq!(info.name, "echo");
        let response = echo
            .mount(
                &request(&[(
                    "files",
                    r#"[{"path":"a/b.txt","contents":"B","mode":384},{"path":"c","contents":"C"}]"#,
                )]),
                &ctx(),
            )
            .await
            .unwrap();
        let files: Vec<_> = response
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.mode, f.contents.as_slice()))
            .collect();
        assert_eq!(
            files,
            vec![("a/b.txt", 0o600, &b"B"[..]), ("c", 0o644, &b"C"[..])]
        );
        assert_eq!(response.object_versions[0].id, "echo/files");
    }

    #[tokio::test]
    async fn unsafe_paths_are_refused_whole() {
        let runtime = runtime();
        let echo = load(&runtime, "echo", guests::ECHO, PolicySpec::default());
        for (files, expect) in [
            (
                r#"[{"path":"ok","contents":"x"},{"path":"../escape","contents":"x"}]"#,
                "../escape",
            ),
            (r#"[{"path":"/etc/passwd","contents":"x"}]"#, "/etc/passwd"),
            (
                r#"[{"path":"a","contents":"x"},{"path":"a","contents":"y"}]"#,
                "\"a\"",
            ),
            (r#"[{"path":"..data/x","contents":"x"}]"#, "..data"),
        ] {
            let err = echo
                .mount(&request(&[("files", files)]), &ctx())
                .await
                .unwrap_err();
            assert!(matches!(err, CallError::InvalidOutput { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains(expect) && text.contains("echo"), "{text}");
        }
        assert_host_still_works(&runtime).await;
    }

    #[tokio::test]
    async fn too_many_files_or_bytes() {
        let runtime = runtime();
        let echo = load(
            &runtime,
            "echo",
            guests::ECHO,
            PolicySpec {
                max_files: 1000,
                max_total_bytes: 1 << 20,
                ..Default::default()
            },
        );
        let err = echo
            .mount(&request(&[("generate", "10000:1")]), &ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CallError::OutputLimit {
                    what: "files",
                    limit: 1000,
                    actual: 10001,
                    ..
                }
            ),
            "10,000 tiny files (plus hello.txt) are over the limit: {err}"
        );
        let err = echo
            .mount(&request(&[("generate", "3:500000")]), &ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(err, CallError::OutputLimit { what: "bytes", .. }),
            "{err}"
        );
        assert!(
            echo.mount(&request(&[("generate", "999:1")]), &ctx())
                .await
                .is_ok(),
            "exactly at the limit is fine"
        );
    }

    #[tokio::test]
    async fn ten_thousand_tiny_files_are_bounded_by_the_default_policy() {
        let runtime = runtime();
        let echo = load(&runtime, "echo", guests::ECHO, PolicySpec::default());
        let err = echo
            .mount(&request(&[("generate", "10000:1")]), &ctx())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider echo returned 10001 files, more than the policy's limit of 1000"
        );
        // An operator who raises the bound gets them all: the host copes with the count itself.
        let generous = load(
            &runtime,
            "echo",
            guests::ECHO,
            PolicySpec {
                max_files: 20_000,
                ..Default::default()
            },
        );
        let response = generous
            .mount(&request(&[("generate", "10000:1")]), &ctx())
            .await
            .unwrap();
        assert_eq!(response.files.len(), 10_001);
        assert_host_still_works(&runtime).await;
    }

    #[tokio::test]
    async fn compiled_artifacts_are_cached_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let make = || {
            secrets_store_runtime::Runtime::new(RuntimeConfig {
                artifact_cache: Some(cache.clone()),
                network: NetworkConfig {
                    no_system_roots: true,
                    ..Default::default()
                },
                ..Default::default()
            })
            .unwrap()
        };
        let first = make();
        let provider = load(&first, "echo", guests::ECHO, PolicySpec::default());
        let artifact = cache.join(format!(
            "{}-{}.cwasm",
            provider.digest(),
            first.fingerprint()
        ));
        assert!(
            artifact.exists(),
            "compiled artifact written to {}",
            artifact.display()
        );
        let written = std::fs::metadata(&artifact).unwrap().modified().unwrap();
        drop(provider);
        drop(first);
        let second = make();
        let provider = load(&second, "echo", guests::ECHO, PolicySpec::default());
        assert_eq!(
            std::fs::metadata(&artifact).unwrap().modified().unwrap(),
            written,
            "loaded, not rewritten"
        );
        assert!(provider.mount(&request(&[]), &ctx()).await.is_ok());
        // A damaged artifact is discarded and the module compiled again.
        std::fs::write(&artifact, b"garbage").unwrap();
        let provider = load(&second, "echo", guests::ECHO, PolicySpec::default());
        assert!(provider.mount(&request(&[]), &ctx()).await.is_ok());
        assert_ne!(std::fs::read(&artifact).unwrap(), b"garbage");
    }

    #[tokio::test]
    async fn more_calls_than_instance_slots() {
        let runtime = runtime();
        let echo = load(&runtime, "echo", guests::ECHO, PolicySpec::default());
        let calls = (0..40).map(|i| {
            let echo = echo.clone();
            async move {
                echo.mount(
                    &request(&[("files", &format!(r#"[{{"path":"n","contents":"{i}"}}]"#))]),
                    &ctx(),
                )
                .await
            }
        });
        let results = futures::future::join_all(calls).await;
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(r.unwrap().files[0].contents, i.to_string().into_bytes());
        }
    }

    #[tokio::test]
    async fn broken_modules_are_refused_with_the_cause() {
        let runtime = runtime();
        let bytes = std::fs::read(guests::ECHO).unwrap();
        let policy = || policy(PolicySpec::default());
        let err = runtime
            .load("trunc", &bytes[..bytes.len() / 2], policy())
            .unwrap_err();
        assert!(matches!(err, LoadError::Compile { .. }), "{err}");
        assert!(err.to_string().contains("trunc"), "{err}");
        let err = runtime
            .load("junk", b"not wasm at all", policy())
            .unwrap_err();
        assert!(err.to_string().contains("magic number"), "{err}");
        let core_module = b"\0asm\x01\0\0\0";
        let err = runtime.load("core", core_module, policy()).unwrap_err();
        assert!(err.to_string().contains("core WebAssembly module"), "{err}");
        let err = runtime
            .load_file(
                "missing",
                std::path::Path::new("/nonexistent/x.wasm"),
                policy(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.wasm"), "{err}");
    }
}

mod cli_app {
    use super::*;

    #[tokio::test]
    async fn a_component_of_another_world_is_refused() {
        let runtime = runtime();
        let err = runtime
            .load_file(
                "cli",
                std::path::Path::new(guests::CLI_APP),
                policy(PolicySpec::default()),
            )
            .unwrap_err();
        assert!(matches!(err, LoadError::WorldMismatch { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("secrets-store:provider") && text.contains("cli"),
            "{text}"
        );
        assert!(
            text.contains("describe") || text.contains("mount"),
            "names the missing export: {text}"
        );
    }
}

mod spin {
    use super::*;

    #[tokio::test]
    async fn an_endless_loop_hits_the_deadline() {
        let runtime = runtime();
        let spin = load(
            &runtime,
            "spin",
            guests::SPIN,
            PolicySpec {
                timeout_seconds: 1,
                ..Default::default()
            },
        );
        let err = spin.mount(&request(&[]), &ctx()).await.unwrap_err();
        assert!(matches!(err, CallError::Deadline { .. }), "{err}");
        assert!(err.to_string().contains("deadline"), "{err}");
        assert_host_still_works(&runtime).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_spinning_guest_does_not_starve_other_work() {
        // On a single-threaded executor a guest that never yields would block this timer forever.
        let runtime = runtime();
        let spin = load(
            &runtime,
            "spin",
            guests::SPIN,
            PolicySpec {
                timeout_seconds: 2,
                ..Default::default()
            },
        );
        let ticks = Arc::new(Mutex::new(0u32));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                *counter.lock() += 1;
            }
        });
        let err = spin.mount(&request(&[]), &ctx()).await.unwrap_err();
        ticker.abort();
        assert!(matches!(err, CallError::Deadline { .. }));
        assert!(*ticks.lock() > 5, "other tasks ran while the guest spun");
    }
}

mod hog {
    use super::*;

    #[tokio::test]
    async fn a_1_gib_allocation_hits_the_memory_cap() {
        let runtime = runtime();
        let hog = load(
            &runtime,
            "hog",
            guests::HOG,
            PolicySpec {
                memory_limit_mib: 64,
                ..Default::default()
            },
        );
        let err = hog.mount(&request(&[]), &ctx()).await.unwrap_err();
        assert!(
            matches!(err, CallError::MemoryLimit { limit_mib: 64, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("64 MiB"), "{err}");
        assert_host_still_works(&runtime).await;
    }
}

mod panic {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_a_trap_not_a_host_crash() {
        let runtime = runtime();
        let panic = load(&runtime, "panic", guests::PANIC, PolicySpec::default());
        let err = panic.mount(&request(&[]), &ctx()).await.unwrap_err();
        assert!(matches!(err, CallError::Trap { .. }), "{err}");
        assert!(err.to_string().contains("panic"), "{err}");
        assert_host_still_works(&runtime).await;
    }
}

mod cache_logger {
    use super::*;

    /// Collects formatted log output.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn cache_persists_across_fresh_instances_and_logs_are_redacted() {
        let captured = Captured::default();
        let writer = captured.clone();
        let mut filter = tracing_subscriber::EnvFilter::new("trace");
        for cap in secrets_store_runtime::redact::THIRD_PARTY_LOG_CAPS {
            filter = filter.add_directive(cap.parse().unwrap());
        }
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let dir = tempfile::tempdir().unwrap();
        let env_file = dir.path().join("custom-cloud.json");
        std::fs::write(&env_file, br#"{"name":"custom"}"#).unwrap();
        let runtime = runtime();
        let provider = load(
            &runtime,
            "cache-logger",
            guests::CACHE_LOGGER,
            PolicySpec {
                host_files: vec![env_file.clone()],
                ..Default::default()
            },
        );
        let mut req = request(&[
            (
                "csi.storage.k8s.io/serviceAccount.tokens",
                r#"{"api://AzureADTokenExchange":{"token":"sa-token-abcdef","expirationTimestamp":""}}"#,
            ),
            ("host-file", env_file.to_str().unwrap()),
        ]);
        req.secrets
            .insert("clientsecret".into(), "super-secret-value".into());
        for expected in ["1", "2", "3"] {
            let response = provider.mount(&req, &ctx()).await.unwrap();
            let count = response.files.iter().find(|f| f.path == "count").unwrap();
            assert_eq!(
                count.contents,
                expected.as_bytes(),
                "the cache outlives each fresh instance"
            );
            let host_file = response
                .files
                .iter()
                .find(|f| f.path == "host-file")
                .unwrap();
            assert_eq!(host_file.contents, br#"{"name":"custom"}"#);
        }
        // A separately loaded provider has its own cache.
        let other = load(
            &runtime,
            "cache-logger",
            guests::CACHE_LOGGER,
            PolicySpec {
                host_files: vec![env_file.clone()],
                ..Default::default()
            },
        );
        let response = other.mount(&req, &ctx()).await.unwrap();
        assert_eq!(
            response
                .files
                .iter()
                .find(|f| f.path == "count")
                .unwrap()
                .contents,
            b"1"
        );

        // A file the policy does not list is refused, with the reason.
        let refused = request(&[("host-file", "/etc/hostname")]);
        let err = provider
            .mount(&refused, &ctx())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/hostname") && err.contains("hostFiles"),
            "{err}"
        );

        let logs = String::from_utf8(captured.0.lock().clone()).unwrap();
        assert!(
            logs.contains("careless provider"),
            "guest log lines reach the host log: {logs}"
        );
        assert!(logs.contains("test-pod"), "lines carry the pod: {logs}");
        assert!(logs.contains("[REDACTED]"));
        for secret in ["super-secret-value", "sa-token-abcdef"] {
            assert!(
                !logs.contains(secret),
                "{secret} leaked into the log:\n{logs}"
            );
        }
    }
}

mod fetch {
    use super::*;
    use http::StatusCode;

    fn fetch_provider(
        runtime: &secrets_store_runtime::Runtime,
        spec: PolicySpec,
    ) -> secrets_store_runtime::Provider {
        load(runtime, "fetch", guests::FETCH, spec)
    }

    fn resolve(host: &str, port: u16, server: &TestServer) -> ResolveOverride {
        format!("{host}:{port}={}", server.addr).parse().unwrap()
    }

    #[tokio::test]
    async fn https_through_a_resolve_override_and_an_extra_ca() {
        let server = TestServer::https(&["api.example.test"], |seen| {
            async move { text(200, format!("you asked for {}", seen.path)) }.boxed()
        })
        .await;
        let mut network = NetworkConfig {
            no_system_roots: true,
            resolve: vec![resolve("api.example.test", 443, &server)],
            ..Default::default()
        };
        network.add_ca_pem(server.ca_pem.as_bytes()).unwrap();
        let runtime = runtime_with(network);
        let fetch = fetch_provider(&runtime, allow(&["https://api.example.test"]));
        let response = fetch
            .mount(
                &request(&[(
                    "urls",
                    "https://api.example.test/one https://api.example.test/two?x=1",
                )]),
                &ctx(),
            )
            .await
            .unwrap();
        assert_eq!(response.files[0].contents, b"you asked for /one");
        assert_eq!(response.files[1].contents, b"you asked for /two?x=1");
        assert_eq!(server.requests()[0].headers["host"], "api.example.test");

        // Without the CA the same request fails on TLS.
        let runtime = runtime_with(NetworkConfig {
            no_system_roots: true,
            resolve: vec![resolve("api.example.test", 443, &server)],
            ..Default::default()
        });
        let fetch = fetch_provider(&runtime, allow(&["https://api.example.test"]));
        let err = fetch
            .mount(
                &request(&[("urls", "https://api.example.test/one")]),
                &ctx(),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
    }

    #[tokio::test]
    async fn disallowed_destinations_are_denied_not_trapped() {
        let server =
            TestServer::http(|_| async { text(200, "should not be reached") }.boxed()).await;
        let port = server.addr.port();
        let network = NetworkConfig {
            no_system_roots: true,
            resolve: vec![resolve("evil.example", port, &server)],
            ..Default::default()
        };
        let runtime = runtime_with(network);
        let fetch = fetch_provider(&runtime, allow(&["https://*.vault.azure.net"]));
        for (url, destination) in [
            (
                format!("http://evil.example:{port}/steal"),
                format!("http://evil.example:{port}"),
            ),
            (
                format!("http://127.0.0.1:{port}/"),
                format!("http://127.0.0.1:{port}"),
            ),
            (
                "http://169.254.169.254/metadata/identity/oauth2/token".to_string(),
                "http://169.254.169.254:80".to_string(),
            ),
        ] {
            let err = fetch
                .mount(&request(&[("urls", &url)]), &ctx())
                .await
                .unwrap_err();
            let CallError::Provider { error, denied, .. } = &err else {
                panic!("expected a provider error, got {err}")
            };
            assert_eq!(error.kind, ErrorKind::Unavailable);
            assert!(
                error.message.contains("outbound policy"),
                "{}",
                error.message
            );
            assert_eq!(denied, &vec![destination.clone()]);
            assert!(err.to_string().contains(&destination), "{err}");
        }
        assert!(server.requests().is_empty(), "nothing reached the server");
        assert_host_still_works(&runtime).await;
    }

    #[tokio::test]
    async fn listed_ip_literals_and_localhost_are_reachable() {
        let server = TestServer::http(|_| async { text(200, "ok") }.boxed()).await;
        let port = server.addr.port();
        let runtime = runtime();
        let fetch = fetch_provider(
            &runtime,
            allow(&[
                &format!("http://127.0.0.1:{port}"),
                &format!("http://localhost:{port}"),
            ]),
        );
        let response = fetch
            .mount(
                &request(&[(
                    "urls",
                    &format!("http://127.0.0.1:{port}/a http://localhost:{port}/b"),
                )]),
                &ctx(),
            )
            .await
            .unwrap();
        assert_eq!(response.files.len(), 2);
    }

    #[tokio::test]
    async fn response_bodies_are_bounded() {
        let server = TestServer::http(|_| async { text(200, vec![b'x'; 2 << 20]) }.boxed()).await;
        let port = server.addr.port();
        let runtime = runtime();
        let fetch = fetch_provider(
            &runtime,
            PolicySpec {
                max_response_bytes: 1 << 20,
                ..allow(&[&format!("http://127.0.0.1:{port}")])
            },
        );
        let err = fetch
            .mount(
                &request(&[("urls", &format!("http://127.0.0.1:{port}/big"))]),
                &ctx(),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("larger than 1048576 bytes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_trickling_server_is_cut_off_by_the_deadline() {
        // Set when the server's trickle stops because the client hung up.
        let hung_up = Arc::new(tokio::sync::Notify::new());
        let flag = hung_up.clone();
        let server = TestServer::http(move |_| {
            let flag = flag.clone();
            async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<
                    Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
                >(1);
                tokio::spawn(async move {
                    // The server's own pacing: one byte every 200 ms, forever.
                    loop {
                        if tx
                            .send(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
                                b".",
                            ))))
                            .await
                            .is_err()
                        {
                            flag.notify_one();
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                });
                let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
                http::Response::new(http_body_util::BodyExt::boxed(body))
            }
            .boxed()
        })
        .await;
        let port = server.addr.port();
        let runtime = runtime();
        let fetch = fetch_provider(
            &runtime,
            PolicySpec {
                timeout_seconds: 2,
                ..allow(&[&format!("http://127.0.0.1:{port}")])
            },
        );
        let err = fetch
            .mount(
                &request(&[("urls", &format!("http://127.0.0.1:{port}/slow"))]),
                &ctx(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Deadline { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "provider fetch did not finish within 2s (deadline exceeded)"
        );
        // The connection does not outlive the call: the server's trickle ends.
        tokio::time::timeout(Duration::from_secs(10), hung_up.notified())
            .await
            .expect("the trickling connection was left open after the deadline");
        assert_host_still_works(&runtime).await;
    }

    /// A raw TCP server that never answers: it reports each request's arrival, then each
    /// connection's end (the client closing it).
    async fn silent_server() -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<&'static str>,
    ) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    let mut arrived = false;
                    loop {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => {
                                let _ = tx.send("closed");
                                return;
                            }
                            Ok(n) => {
                                seen.extend_from_slice(&buf[..n]);
                                if !arrived && seen.windows(4).any(|w| w == b"\r\n\r\n") {
                                    arrived = true;
                                    let _ = tx.send("request");
                                }
                            }
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn spinning_while_a_request_is_open_hits_the_deadline() {
        let (addr, mut events) = silent_server().await;
        let port = addr.port();
        let runtime = runtime();
        let fetch = fetch_provider(
            &runtime,
            PolicySpec {
                timeout_seconds: 1,
                ..allow(&[&format!("http://127.0.0.1:{port}")])
            },
        );
        let err = fetch
            .mount(
                &request(&[
                    ("urls", &format!("http://127.0.0.1:{port}/hang")),
                    ("spin-after-send", "true"),
                ]),
                &ctx(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Deadline { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "provider fetch did not finish within 1s (deadline exceeded)"
        );
        // The guest really held a request open while it spun, and the deadline closed it.
        async fn next(
            events: &mut tokio::sync::mpsc::UnboundedReceiver<&'static str>,
            what: &str,
        ) -> &'static str {
            tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .unwrap_or_else(|_| panic!("the server never saw the {what}"))
                .unwrap()
        }
        assert_eq!(next(&mut events, "request").await, "request");
        assert_eq!(next(&mut events, "connection close").await, "closed");
        // And blocked in host I/O rather than spinning: the timer still ends it.
        let err = fetch
            .mount(
                &request(&[("urls", &format!("http://127.0.0.1:{port}/hang"))]),
                &ctx(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Deadline { .. }), "{err}");
        assert_eq!(next(&mut events, "second request").await, "request");
        assert_eq!(next(&mut events, "second connection close").await, "closed");
        assert_host_still_works(&runtime).await;
    }

    /// Records when a GET joins one already in flight.
    #[derive(Default)]
    struct Joins(tokio::sync::Notify, Mutex<u32>);

    struct JoinObserver(Arc<Joins>);

    impl Observer for JoinObserver {
        fn joined_in_flight(&self, _provider: &str, _host: &str) {
            *self.0.1.lock() += 1;
            self.0.0.notify_one();
        }
    }

    /// The fetch guest, allowed to reach 127.0.0.1:`port`, on a runtime that records joins.
    fn fetch_counting_joins(port: u16) -> (Arc<Joins>, secrets_store_runtime::Provider) {
        let joins = Arc::new(Joins::default());
        let runtime = runtime_from(RuntimeConfig {
            observer: Arc::new(JoinObserver(joins.clone())),
            ..Default::default()
        });
        let fetch = fetch_provider(&runtime, allow(&[&format!("http://127.0.0.1:{port}")]));
        (joins, fetch)
    }

    #[tokio::test]
    async fn identical_gets_in_flight_share_one_upstream_request() {
        let release = Arc::new(tokio::sync::Notify::new());
        let gate = release.clone();
        let server = TestServer::http(move |seen| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                text(
                    200,
                    format!(
                        "for {}",
                        seen.headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap())
                            .unwrap_or("-")
                    ),
                )
            }
            .boxed()
        })
        .await;
        let port = server.addr.port();
        let (joins, fetch) = fetch_counting_joins(port);
        let url = format!("http://127.0.0.1:{port}/secrets/a");
        let mount = |auth: &'static str| {
            let fetch = fetch.clone();
            let url = url.clone();
            tokio::spawn(async move {
                fetch
                    .mount(&request(&[("urls", &url), ("authorization", auth)]), &ctx())
                    .await
            })
        };
        let first = mount("Bearer alice");
        server.next_arrival().await;
        let second = mount("Bearer alice");
        joins.0.notified().await;
        let other_identity = mount("Bearer bob");
        server.next_arrival().await;
        release.notify_waiters();
        // notify_waiters only wakes current waiters; wake any handler that registers late.
        for _ in 0..4 {
            release.notify_one();
        }
        let a = first.await.unwrap().unwrap();
        let b = second.await.unwrap().unwrap();
        let c = other_identity.await.unwrap().unwrap();
        assert_eq!(a.files[0].contents, b"for Bearer alice");
        assert_eq!(b.files[0].contents, b"for Bearer alice");
        assert_eq!(
            c.files[0].contents, b"for Bearer bob",
            "a different credential never shares"
        );
        assert_eq!(
            server.requests().len(),
            2,
            "alice's two GETs went upstream once"
        );
        assert_eq!(*joins.1.lock(), 1);
    }

    #[tokio::test]
    async fn a_waiter_giving_up_leaves_the_shared_request_to_the_others() {
        let release = Arc::new(tokio::sync::Notify::new());
        let gate = release.clone();
        let server = TestServer::http(move |_| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                text(200, "shared")
            }
            .boxed()
        })
        .await;
        let port = server.addr.port();
        let (joins, fetch) = fetch_counting_joins(port);
        let url = format!("http://127.0.0.1:{port}/secrets/a");
        let mount = || {
            let fetch = fetch.clone();
            let url = url.clone();
            tokio::spawn(async move { fetch.mount(&request(&[("urls", &url)]), &ctx()).await })
        };
        let first = mount();
        server.next_arrival().await;
        let second = mount();
        joins.0.notified().await;
        // The mount that started the exchange is cancelled (as a deadline would); the other
        // waiter still gets the answer of the one upstream request.
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        release.notify_one();
        let b = second.await.unwrap().unwrap();
        assert_eq!(b.files[0].contents, b"shared");
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_call_queued_before_a_get_left_gets_its_answer_and_a_later_call_does_not() {
        let release = Arc::new(tokio::sync::Notify::new());
        let gate = release.clone();
        let served = Arc::new(Mutex::new(0u32));
        let count = served.clone();
        let server = TestServer::http(move |_| {
            let gate = gate.clone();
            let count = count.clone();
            async move {
                gate.notified().await;
                let n = {
                    let mut served = count.lock();
                    *served += 1;
                    *served
                };
                text(200, format!("read {n}"))
            }
            .boxed()
        })
        .await;
        let port = server.addr.port();
        // One instance slot: the second call waits for the first to finish before it can ask.
        let runtime = runtime_from(RuntimeConfig {
            max_instances: 1,
            ..Default::default()
        });
        let fetch = fetch_provider(&runtime, allow(&[&format!("http://127.0.0.1:{port}")]));
        let mount = |path: &str| {
            let fetch = fetch.clone();
            let url = format!("http://127.0.0.1:{port}{path}");
            tokio::spawn(async move { fetch.mount(&request(&[("urls", &url)]), &ctx()).await })
        };
        // A call that holds the only slot while the next two are made.
        let blocker = mount("/block");
        server.next_arrival().await;
        let first = mount("/secrets/a");
        let queued = mount("/secrets/a");
        // Let both calls begin (they then wait for the slot); nothing of theirs has left yet.
        tokio::task::yield_now().await;
        assert_eq!(server.requests().len(), 1);
        release.notify_one();
        assert_eq!(blocker.await.unwrap().unwrap().files[0].contents, b"read 1");
        // One of the two goes upstream; the other runs only after that answer is back.
        server.next_arrival().await;
        release.notify_one();
        let a = first.await.unwrap().unwrap();
        let b = queued.await.unwrap().unwrap();
        assert_eq!(a.files[0].contents, b"read 2");
        assert_eq!(
            b.files[0].contents, b"read 2",
            "the answer was read after the queued call began"
        );
        assert_eq!(server.requests().len(), 2);
        // A call made after that answer's request left reads the store again.
        let later = mount("/secrets/a");
        server.next_arrival().await;
        release.notify_one();
        let c = later.await.unwrap().unwrap();
        assert_eq!(c.files[0].contents, b"read 3");
        assert_eq!(server.requests().len(), 3);
    }

    #[tokio::test]
    async fn response_cache_is_off_by_default_and_short_when_on() {
        let server = TestServer::http(|_| async { text(200, "v") }.boxed()).await;
        let port = server.addr.port();
        let url = format!("http://127.0.0.1:{port}/x");
        let runtime = runtime();
        let plain = fetch_provider(&runtime, allow(&[&format!("http://127.0.0.1:{port}")]));
        plain
            .mount(&request(&[("urls", &url)]), &ctx())
            .await
            .unwrap();
        plain
            .mount(&request(&[("urls", &url)]), &ctx())
            .await
            .unwrap();
        assert_eq!(server.requests().len(), 2);
        let cached = fetch_provider(
            &runtime,
            PolicySpec {
                response_cache_seconds: 300,
                ..allow(&[&format!("http://127.0.0.1:{port}")])
            },
        );
        cached
            .mount(&request(&[("urls", &url)]), &ctx())
            .await
            .unwrap();
        cached
            .mount(&request(&[("urls", &url)]), &ctx())
            .await
            .unwrap();
        assert_eq!(
            server.requests().len(),
            3,
            "the second GET was answered from the cache"
        );
    }

    #[tokio::test]
    async fn retry_after_holds_back_the_destination() {
        let hits = Arc::new(Mutex::new(0u32));
        let counter = hits.clone();
        let server = TestServer::http(move |_| {
            let counter = counter.clone();
            async move {
                let n = {
                    let mut hits = counter.lock();
                    *hits += 1;
                    *hits
                };
                if n == 1 {
                    let mut response = text(429, "slow down");
                    response
                        .headers_mut()
                        .insert("retry-after", "1".parse().unwrap());
                    response
                } else {
                    text(200, "ok")
                }
            }
            .boxed()
        })
        .await;
        let port = server.addr.port();
        let runtime = runtime();
        let fetch = fetch_provider(&runtime, allow(&[&format!("http://127.0.0.1:{port}")]));
        let url = format!("http://127.0.0.1:{port}/x");
        let err = fetch
            .mount(&request(&[("urls", &url)]), &ctx())
            .await
            .unwrap_err();
        let CallError::Provider { error, .. } = err else {
            panic!()
        };
        assert_eq!(
            error.kind,
            ErrorKind::Upstream(StatusCode::TOO_MANY_REQUESTS.as_u16())
        );
        fetch
            .mount(&request(&[("urls", &url)]), &ctx())
            .await
            .unwrap();
        let seen = server.requests();
        let gap = seen[1].at.duration_since(seen[0].at);
        assert!(
            gap >= Duration::from_millis(900),
            "the next request waited for Retry-After, gap {gap:?}"
        );
    }

    #[tokio::test]
    async fn per_host_rate_limit_spaces_requests() {
        let server = TestServer::http(|_| async { text(200, "ok") }.boxed()).await;
        let port = server.addr.port();
        let runtime = runtime();
        let fetch = fetch_provider(
            &runtime,
            PolicySpec {
                rate_limit_per_host: 10.0,
                rate_limit_burst: 1,
                ..allow(&[&format!("http://127.0.0.1:{port}")])
            },
        );
        let urls: Vec<String> = (0..6)
            .map(|i| format!("http://127.0.0.1:{port}/{i}"))
            .collect();
        fetch
            .mount(&request(&[("urls", &urls.join(" "))]), &ctx())
            .await
            .unwrap();
        let seen = server.requests();
        let span = seen.last().unwrap().at.duration_since(seen[0].at);
        assert!(
            span >= Duration::from_millis(450),
            "6 requests at 10/s with burst 1 span at least 0.5 s, got {span:?}"
        );
    }

    #[tokio::test]
    async fn request_budget_per_mount() {
        let server = TestServer::http(|_| async { text(200, "ok") }.boxed()).await;
        let port = server.addr.port();
        let runtime = runtime();
        let fetch = fetch_provider(
            &runtime,
            PolicySpec {
                max_requests_per_mount: 3,
                ..allow(&[&format!("http://127.0.0.1:{port}")])
            },
        );
        let urls: Vec<String> = (0..5)
            .map(|i| format!("http://127.0.0.1:{port}/{i}"))
            .collect();
        let err = fetch
            .mount(&request(&[("urls", &urls.join(" "))]), &ctx())
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Provider { .. }), "{err}");
        assert_eq!(server.requests().len(), 3);
    }
}

/// Adapts an mpsc receiver into a stream without pulling in tokio-stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
