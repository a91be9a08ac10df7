//! Wasm providers from a providers directory laid out like a ConfigMap volume: initial load, hot
//! reload through the `..data` swap, refusal of bad updates with the old module kept, removal, and
//! calls in flight across a swap. Real modules from `secrets-store-artifacts`, real inotify.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::support::*;
use secrets_store_artifacts as guests;
use secrets_store_providers::{
    ProviderHandle, ProviderRegistry, RegistryConfig, RegistryError, WatchOptions,
};
use secrets_store_runtime::CallContext;
use sha2::{Digest, Sha256};

const DEADLINE: Duration = Duration::from_secs(60);

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn yaml(text: &str) -> (&'static str, Vec<u8>) {
    ("providers.yaml", text.as_bytes().to_vec())
}

fn loaded_digest(registry: &ProviderRegistry, name: &str) -> Option<String> {
    registry
        .loaded()
        .into_iter()
        .find(|l| l.name == name)
        .map(|l| l.digest)
}

async fn mount_files(
    handle: &ProviderHandle,
    attributes: &[(&str, &str)],
) -> Vec<(String, Vec<u8>)> {
    let response = handle
        .mount(
            &request(attributes),
            &CallContext::default(),
            Path::new("/unused"),
            DEADLINE,
        )
        .await
        .unwrap_or_else(|e| panic!("mount on {}: {e}", handle.name()));
    response
        .files
        .into_iter()
        .map(|f| (f.path, f.contents))
        .collect()
}

fn options() -> WatchOptions {
    WatchOptions {
        debounce: Duration::from_millis(100),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_follows_configmap_updates() {
    init_tracing();
    let echo = read(guests::ECHO);
    let cache_logger = read(guests::CACHE_LOGGER);
    let mut volume = ConfigMapDir::new(&[
        yaml(
            "providers:\n  p: {module: echo.wasm}\n  zipped: {module: echo.wasm.gz, timeoutSeconds: 7}\n",
        ),
        ("echo.wasm", echo.clone()),
        ("echo.wasm.gz", gzip(&echo)),
    ]);
    let (registry, totals) = counted_registry_for(volume.path(), vec![]);
    assert!(!registry.is_ready());
    let _watch = registry.watch_with(options()).unwrap();

    // Initial load.
    wait_until(&registry, "initial load", |r| r.is_ready()).await;
    let loaded = registry.loaded();
    assert_eq!(
        loaded.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["p", "zipped"]
    );
    assert!(loaded.iter().all(|l| l.digest == digest(&echo)));
    assert_eq!(loaded[0].module, volume.path().join("echo.wasm"));
    assert_eq!(loaded[1].module, volume.path().join("echo.wasm.gz"));
    let p = registry.resolve("p").unwrap();
    assert_eq!((p.name(), p.kind()), ("p", "wasm"));
    assert_eq!(
        mount_files(&p, &[]).await,
        [("hello.txt".to_string(), b"hello from echo\n".to_vec())]
    );
    let zipped = registry.resolve("zipped").unwrap();
    let ProviderHandle::Wasm(zipped_provider) = &zipped else {
        panic!("wasm provider expected");
    };
    assert_eq!(zipped_provider.policy().timeout, Duration::from_secs(7));
    let zipped_loaded_at = loaded[1].loaded_at;
    let stats = totals.stats();
    assert_eq!(
        (stats.loads, stats.reload_failures, stats.loaded),
        (2, 0, 2)
    );

    // A new version of the volume: `p` becomes the cache-logger module under the same name.
    volume.update(&[
        yaml("providers:\n  p: {module: cache_logger.wasm}\n  zipped: {module: echo.wasm.gz, timeoutSeconds: 7}\n"),
        ("cache_logger.wasm", cache_logger.clone()),
        ("echo.wasm.gz", gzip(&echo)),
    ]);
    assert_eq!(
        volume.payload_dirs().len(),
        1,
        "kubelet removes the old payload"
    );
    wait_until(&registry, "p swapped to cache-logger", |r| {
        loaded_digest(r, "p") == Some(digest(&cache_logger))
    })
    .await;
    let p2 = registry.resolve("p").unwrap();
    let files = mount_files(&p2, &[]).await;
    assert_eq!(files[0], ("count".to_string(), b"1".to_vec()));
    // The handle resolved before the swap still runs the old module.
    assert_eq!(mount_files(&p, &[]).await[0].0, "hello.txt");
    // The unchanged provider was not reloaded.
    let zipped_now = registry
        .loaded()
        .into_iter()
        .find(|l| l.name == "zipped")
        .unwrap();
    assert_eq!(zipped_now.loaded_at, zipped_loaded_at);
    assert_eq!(
        totals.stats().loads,
        3,
        "only the changed module was loaded"
    );

    // A policy change alone gives the same module a new policy without loading it again.
    volume.update(&[
        yaml("providers:\n  p: {module: cache_logger.wasm}\n  zipped: {module: echo.wasm.gz, timeoutSeconds: 9}\n"),
        ("cache_logger.wasm", cache_logger.clone()),
        ("echo.wasm.gz", gzip(&echo)),
    ]);
    wait_until(&registry, "zipped policy updated", |_| {
        totals.stats().policy_updates == 1
    })
    .await;
    let ProviderHandle::Wasm(zipped_provider) = registry.resolve("zipped").unwrap() else {
        panic!("wasm provider expected");
    };
    assert_eq!(zipped_provider.policy().timeout, Duration::from_secs(9));
    assert_eq!(totals.stats().loads, 3);

    // A broken module is refused; the previous one keeps serving.
    let failures = totals.stats().reload_failures;
    volume.update(&[
        yaml("providers:\n  p: {module: cache_logger.wasm}\n  zipped: {module: echo.wasm.gz, timeoutSeconds: 9}\n"),
        ("cache_logger.wasm", cache_logger[..cache_logger.len() / 2].to_vec()),
        ("echo.wasm.gz", gzip(&echo)),
    ]);
    wait_until(&registry, "truncated module refused", |_| {
        totals.stats().reload_failures > failures
    })
    .await;
    assert_eq!(loaded_digest(&registry, "p"), Some(digest(&cache_logger)));
    let files = mount_files(&registry.resolve("p").unwrap(), &[]).await;
    assert_eq!(files[0].0, "count");

    // Dropping a provider from providers.yaml makes it unavailable with a clear message.
    volume.update(&[
        yaml("providers:\n  zipped: {module: echo.wasm.gz, timeoutSeconds: 9}\n"),
        ("echo.wasm.gz", gzip(&echo)),
    ]);
    wait_until(&registry, "p removed", |r| loaded_digest(r, "p").is_none()).await;
    let err = registry.resolve("p").unwrap_err();
    assert!(
        matches!(&err, RegistryError::NotFound { name, wasm_available, .. }
        if name == "p" && wasm_available == &["zipped".to_string()]),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("\"p\" not found") && message.contains("(zipped)"),
        "{message}"
    );
    assert_eq!(totals.stats().loaded, 1);
}

#[test]
fn refused_updates_keep_the_previous_module() {
    init_tracing();
    let echo = read(guests::ECHO);
    let good = "providers:\n  p: {module: echo.wasm}\n";
    let mut volume = ConfigMapDir::new(&[yaml(good), ("echo.wasm", echo.clone())]);
    let (registry, totals) = counted_registry_for(volume.path(), vec![]);
    let report = registry.reload();
    assert_eq!(report.loaded, ["p"]);
    assert!(report.is_ok(), "{report:?}");
    assert!(registry.is_ready());

    // (what, the volume's new files, the name reported as failed, a part of the cause)
    type Case = (
        &'static str,
        Vec<(&'static str, Vec<u8>)>,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "truncated module",
            vec![yaml(good), ("echo.wasm", echo[..echo.len() - 100].to_vec())],
            "p",
            "invalid component",
        ),
        (
            "not wasm at all",
            vec![yaml(good), ("echo.wasm", b"#!/bin/sh\n".to_vec())],
            "p",
            "WebAssembly magic number",
        ),
        (
            "a component of another world",
            vec![yaml(good), ("echo.wasm", read(guests::CLI_APP))],
            "p",
            "does not fit the secrets-store:provider",
        ),
        (
            "corrupt gzip",
            vec![
                yaml("providers:\n  p: {module: echo.wasm.gz}\n"),
                ("echo.wasm.gz", gzip(&echo)[..200].to_vec()),
            ],
            "p",
            "decompressing module",
        ),
        (
            "unknown policy key",
            vec![
                yaml("providers:\n  p: {module: echo.wasm, allowedHost: ['https://x.test']}\n"),
                ("echo.wasm", echo.clone()),
            ],
            "p",
            "unknown field `allowedHost`",
        ),
        (
            "invalid policy value",
            vec![
                yaml("providers:\n  p: {module: echo.wasm, allowedHosts: ['ftp://x.test']}\n"),
                ("echo.wasm", echo.clone()),
            ],
            "p",
            "ftp://x.test",
        ),
        (
            "memory above the runtime's maximum",
            vec![
                yaml("providers:\n  p: {module: echo.wasm, memoryLimitMiB: 4000}\n"),
                ("echo.wasm", echo.clone()),
            ],
            "p",
            "exceeds the runtime's maximum",
        ),
        (
            "invalid YAML",
            vec![
                yaml("providers:\n  p: {module: echo.wasm\n"),
                ("echo.wasm", echo.clone()),
            ],
            "providers.yaml",
            "providers.yaml",
        ),
        (
            "unknown top-level key",
            vec![
                yaml("provider:\n  p: {module: echo.wasm}\n"),
                ("echo.wasm", echo.clone()),
            ],
            "providers.yaml",
            "unknown field `provider`",
        ),
    ];
    for (what, files, failed_name, cause) in cases {
        let before = totals.stats();
        volume.update(&files);
        let report = registry.reload();
        assert!(
            report.loaded.is_empty() && report.removed.is_empty(),
            "{what}: {report:?}"
        );
        assert_eq!(report.failed.len(), 1, "{what}: {report:?}");
        let (name, reason) = &report.failed[0];
        assert_eq!(name, failed_name, "{what}");
        assert!(reason.contains(cause), "{what}: {reason}");
        assert_eq!(
            loaded_digest(&registry, "p"),
            Some(digest(&echo)),
            "{what}: the old module stays"
        );
        let after = totals.stats();
        assert_eq!(after.reload_failures, before.reload_failures + 1, "{what}");
        assert_eq!(after.loads, before.loads, "{what}");
        assert!(registry.resolve("p").is_ok(), "{what}");
    }

    // Back to a good configuration: the module is unchanged, so nothing is loaded again.
    volume.update(&[yaml(good), ("echo.wasm", echo.clone())]);
    let report = registry.reload();
    assert_eq!(
        (report.unchanged.as_slice(), report.is_ok()),
        (&["p".to_string()][..], true)
    );
}

#[test]
fn unchanged_reloads_do_not_recompile() {
    let echo = read(guests::ECHO);
    let mut volume = ConfigMapDir::new(&[
        yaml("providers:\n  a: {module: echo.wasm}\n"),
        ("echo.wasm", echo.clone()),
    ]);
    let (registry, totals) = counted_registry_for(volume.path(), vec![]);
    assert_eq!(registry.reload().loaded, ["a"]);
    let first = registry.loaded();
    let mut generation = registry.generation();
    let before = *generation.borrow_and_update();

    let report = registry.reload();
    assert_eq!(report.unchanged, ["a"]);
    assert!(report.loaded.is_empty());
    assert!(
        generation.has_changed().unwrap(),
        "every reload bumps the generation"
    );
    assert_eq!(*generation.borrow_and_update(), before + 1);
    assert_eq!(registry.loaded(), first, "same module, same load time");
    assert_eq!(totals.stats().loads, 1);

    // The same component gzipped under another name: same digest, still no new load.
    volume.update(&[
        yaml("providers:\n  a: {module: other.wasm.gz}\n"),
        ("other.wasm.gz", gzip(&echo)),
    ]);
    let report = registry.reload();
    assert_eq!(report.unchanged, ["a"]);
    let now = registry.loaded();
    assert_eq!(now[0].module, volume.path().join("other.wasm.gz"));
    assert_eq!(now[0].loaded_at, first[0].loaded_at);
    let stats = totals.stats();
    assert_eq!((stats.loads, stats.reloads), (1, 3));
}

#[test]
fn modules_by_absolute_path_and_disappearing_modules() {
    let echo = read(guests::ECHO);
    let image = tempfile::tempdir().unwrap();
    let shipped = image.path().join("echo.wasm");
    std::fs::write(&shipped, &echo).unwrap();
    let volume = ConfigMapDir::new(&[yaml(&format!(
        "providers:\n  shipped: {{module: {}}}\n",
        shipped.display()
    ))]);
    let socket_dir = tempfile::tempdir().unwrap();
    let registry = registry_for(volume.path(), vec![socket_dir.path().to_path_buf()]);
    assert_eq!(registry.reload().loaded, ["shipped"]);
    assert_eq!(registry.loaded()[0].module, shipped);

    // The module file vanishes: the provider is withdrawn, and says why.
    std::fs::remove_file(&shipped).unwrap();
    let report = registry.reload();
    assert_eq!(report.removed, ["shipped"]);
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].1.contains("does not exist"), "{report:?}");
    let err = registry.resolve("shipped").unwrap_err();
    assert!(matches!(err, RegistryError::NotLoaded { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("configured")
            && message.contains("does not exist")
            && message.contains(&socket_dir.path().display().to_string()),
        "{message}"
    );

    // It comes back when the file does.
    std::fs::write(&shipped, &echo).unwrap();
    assert_eq!(registry.reload().loaded, ["shipped"]);
    assert!(registry.resolve("shipped").is_ok());
}

#[test]
fn providers_file_absent_or_directory_missing() {
    let volume = ConfigMapDir::new(&[("README", b"no providers here".to_vec())]);
    let registry = registry_for(volume.path(), vec![]);
    let report = registry.reload();
    assert!(report.is_ok() && report.loaded.is_empty(), "{report:?}");
    assert!(registry.is_ready());

    let gone = volume.path().join("nope");
    let registry = registry_for(&gone, vec![]);
    let report = registry.reload();
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].1.contains("nope"), "{report:?}");
    assert!(
        registry.is_ready(),
        "a failed first attempt still finishes the first load"
    );
    assert!(matches!(registry.watch(), Err(RegistryError::Watch { .. })));

    // Without a providers directory the registry is ready at once and serves sockets only.
    let registry = ProviderRegistry::new(runtime(), RegistryConfig::default());
    assert!(registry.is_ready());
    let _inert = registry.watch().unwrap();
}

#[test]
fn names_are_validated() {
    let registry = ProviderRegistry::new(runtime(), RegistryConfig::default());
    for bad in ["", "../azure", "a.b", &"x".repeat(31), "a b"] {
        let err = registry.resolve(bad).unwrap_err();
        assert!(
            matches!(err, RegistryError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let err = registry.resolve("nosuchprovider").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("no wasm providers are loaded")
            && message.contains(
                "/etc/kubernetes/secrets-store-csi-providers, /var/run/secrets-store-csi-providers"
            ),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_in_flight_finishes_on_the_old_module() {
    init_tracing();
    let mut server = HoldServer::start("slow!").await;
    let fetch = read(guests::FETCH);
    let echo = read(guests::ECHO);
    let config = format!(
        "providers:\n  p: {{module: fetch.wasm, allowedHosts: ['http://127.0.0.1:{}']}}\n",
        server.port
    );
    let mut volume = ConfigMapDir::new(&[yaml(&config), ("fetch.wasm", fetch.clone())]);
    let registry = registry_for(volume.path(), vec![]);
    let _watch = registry.watch_with(options()).unwrap();
    wait_until(&registry, "initial load", |r| {
        loaded_digest(r, "p") == Some(digest(&fetch))
    })
    .await;

    let old = registry.resolve("p").unwrap();
    let url = format!("http://127.0.0.1:{}/held", server.port);
    let in_flight = tokio::spawn(async move { mount_files(&old, &[("urls", url.as_str())]).await });
    server.arrivals.recv().await.unwrap();

    volume.update(&[
        yaml("providers:\n  p: {module: echo.wasm}\n"),
        ("echo.wasm", echo.clone()),
    ]);
    wait_until(&registry, "p swapped to echo", |r| {
        loaded_digest(r, "p") == Some(digest(&echo))
    })
    .await;
    let new = registry.resolve("p").unwrap();
    assert_eq!(mount_files(&new, &[]).await[0].0, "hello.txt");
    assert!(!in_flight.is_finished());

    server.release_all();
    let files = in_flight.await.unwrap();
    assert_eq!(files, [("body-0".to_string(), b"slow!".to_vec())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_directory_edits_and_periodic_rescans() {
    let echo = read(guests::ECHO);
    let dir = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let outside = image.path().join("outside.wasm");
    std::fs::write(&outside, &echo).unwrap();
    std::fs::write(dir.path().join("echo.wasm"), &echo).unwrap();
    std::fs::write(dir.path().join("providers.yaml"), "providers: {}\n").unwrap();
    let registry = registry_for(dir.path(), vec![]);
    let _watch = registry
        .watch_with(WatchOptions {
            debounce: Duration::from_millis(50),
            rescan_interval: Duration::from_millis(300),
            ..Default::default()
        })
        .unwrap();
    wait_until(&registry, "initial load", |r| r.is_ready()).await;
    assert!(registry.loaded().is_empty());

    // An in-place write of a plain file is seen.
    std::fs::write(
        dir.path().join("providers.yaml"),
        format!(
            "providers:\n  a: {{module: echo.wasm}}\n  b: {{module: {}}}\n",
            outside.display()
        ),
    )
    .unwrap();
    wait_until(&registry, "a and b loaded", |r| r.loaded().len() == 2).await;

    // A module outside the watched directory changes: only the periodic rescan can see it.
    let cache_logger = read(guests::CACHE_LOGGER);
    std::fs::write(&outside, &cache_logger).unwrap();
    wait_until(&registry, "b reloaded by a rescan", |r| {
        loaded_digest(r, "b") == Some(digest(&cache_logger))
    })
    .await;
    assert_eq!(loaded_digest(&registry, "a"), Some(digest(&echo)));
}

#[test]
fn registry_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ProviderRegistry>();
    check::<ProviderHandle>();
}
