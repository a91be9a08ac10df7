//! Test fixtures: a directory laid out and updated exactly like a kubelet ConfigMap volume, a
//! v1alpha1 provider daemon on a unix socket, an HTTP server that holds requests until released,
//! and waiting on the registry's generation.

#![allow(dead_code, clippy::unwrap_used)] // Test support: a failed unwrap is a failed test.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use secrets_store_proto::provider::v1alpha1 as wire;
use secrets_store_providers::{ProviderRegistry, RegistryConfig};
use secrets_store_runtime::{Runtime, RuntimeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// Log output for failing tests (`RUST_LOG=debug cargo test`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 4,
        network: secrets_store_runtime::NetworkConfig {
            no_system_roots: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap()
}

pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub use secrets_store_test_support::mount_request as request;

/// A directory kept the way kubelet keeps a ConfigMap volume: the payload in a hidden
/// `..<timestamp>` directory, `..data` a symlink to it, every visible name a symlink through
/// `..data`. Updates follow kubelet's AtomicWriter order.
pub struct ConfigMapDir {
    dir: tempfile::TempDir,
    version: u32,
    current: Option<(String, Vec<String>)>,
}

impl ConfigMapDir {
    pub fn new(files: &[(&str, Vec<u8>)]) -> ConfigMapDir {
        let mut volume = ConfigMapDir {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
            current: None,
        };
        volume.update(files);
        volume
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The hidden payload directories now present.
    pub fn payload_dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..2026_"))
            .collect();
        dirs.sort();
        dirs
    }

    pub fn update(&mut self, files: &[(&str, Vec<u8>)]) {
        self.version += 1;
        let root = self.dir.path();
        let payload = format!(
            "..2026_01_02_03_04_{:02}.{}",
            self.version,
            1000 + self.version
        );
        let payload_path = root.join(&payload);
        std::fs::create_dir(&payload_path).unwrap();
        for (name, contents) in files {
            std::fs::write(payload_path.join(name), contents).unwrap();
        }
        // Swap `..data` in one rename.
        let tmp = root.join("..data_tmp");
        std::os::unix::fs::symlink(&payload, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
        let names: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
        for name in &names {
            let link = root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
        if let Some((old_payload, old_names)) = self.current.take() {
            for name in old_names.iter().filter(|n| !names.contains(n)) {
                std::fs::remove_file(root.join(name)).unwrap();
            }
            std::fs::remove_dir_all(root.join(old_payload)).unwrap();
        }
        self.current = Some((payload, names));
    }
}

pub fn registry_for(dir: &Path, legacy_dirs: Vec<PathBuf>) -> Arc<ProviderRegistry> {
    ProviderRegistry::new(
        runtime(),
        RegistryConfig {
            providers_dir: Some(dir.to_path_buf()),
            legacy_dirs,
            ..Default::default()
        },
    )
}

/// Totals of what a registry reported to its observer, as the metrics would count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistryStats {
    pub reloads: u64,
    pub loads: u64,
    pub policy_updates: u64,
    pub reload_failures: u64,
    /// Wasm providers loaded after the last reload.
    pub loaded: usize,
}

/// A registry observer that keeps [`RegistryStats`].
#[derive(Default)]
pub struct Totals(Mutex<RegistryStats>);

impl Totals {
    pub fn stats(&self) -> RegistryStats {
        *self.0.lock()
    }
}

impl secrets_store_providers::RegistryObserver for Totals {
    fn module_loaded(&self, _provider: &str) {
        self.0.lock().loads += 1;
    }
    fn policy_updated(&self, _provider: &str) {
        self.0.lock().policy_updates += 1;
    }
    fn reload_finished(&self, report: &secrets_store_providers::ReloadReport, loaded: usize) {
        let mut stats = self.0.lock();
        stats.reloads += 1;
        stats.reload_failures += report.failed.len() as u64;
        stats.loaded = loaded;
    }
}

/// [`registry_for`], with the totals of what it reports.
pub fn counted_registry_for(
    dir: &Path,
    legacy_dirs: Vec<PathBuf>,
) -> (Arc<ProviderRegistry>, Arc<Totals>) {
    let totals = Arc::new(Totals::default());
    let registry = ProviderRegistry::with_observer(
        runtime(),
        RegistryConfig {
            providers_dir: Some(dir.to_path_buf()),
            legacy_dirs,
            ..Default::default()
        },
        totals.clone(),
    );
    (registry, totals)
}

/// Wait, on generation changes only, until `condition` holds. Fails after a generous bound.
pub async fn wait_until(
    registry: &ProviderRegistry,
    what: &str,
    mut condition: impl FnMut(&ProviderRegistry) -> bool,
) {
    let mut generation = registry.generation();
    let waited = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            generation.borrow_and_update();
            if condition(registry) {
                return;
            }
            generation.changed().await.unwrap();
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for: {what}");
}

// ---------------------------------------------------------------------------------------------
// A v1alpha1 provider daemon.

/// What the fake daemon does for one Mount call.
pub enum Reply {
    Ok(wire::MountResponse),
    Status(Status),
    /// Never answer (until the test ends).
    Hang,
}

#[derive(Default)]
pub struct FakeProvider {
    /// Replies in order; the last one repeats.
    replies: Mutex<VecDeque<Reply>>,
    pub mounts: Mutex<Vec<wire::MountRequest>>,
    pub arrived: Notify,
}

impl FakeProvider {
    pub fn calls(&self) -> usize {
        self.mounts.lock().len()
    }
}

fn clone_reply(reply: &Reply) -> Reply {
    match reply {
        Reply::Ok(r) => Reply::Ok(r.clone()),
        Reply::Status(s) => Reply::Status(Status::new(s.code(), s.message())),
        Reply::Hang => Reply::Hang,
    }
}

#[tonic::async_trait]
impl wire::csi_driver_provider_server::CsiDriverProvider for FakeProvider {
    async fn version(
        &self,
        request: Request<wire::VersionRequest>,
    ) -> Result<Response<wire::VersionResponse>, Status> {
        Ok(Response::new(wire::VersionResponse {
            version: request.into_inner().version,
            runtime_name: "fake".into(),
            runtime_version: "1.2.3".into(),
        }))
    }

    async fn mount(
        &self,
        request: Request<wire::MountRequest>,
    ) -> Result<Response<wire::MountResponse>, Status> {
        self.mounts.lock().push(request.into_inner());
        self.arrived.notify_one();
        let reply = {
            let mut replies = self.replies.lock();
            if replies.len() > 1 {
                replies.pop_front().unwrap()
            } else {
                clone_reply(replies.front().expect("a reply is configured"))
            }
        };
        match reply {
            Reply::Ok(response) => Ok(Response::new(response)),
            Reply::Status(status) => Err(status),
            Reply::Hang => std::future::pending().await,
        }
    }
}

/// A fake daemon serving `<dir>/<name>.sock` until dropped.
pub struct FakeDaemon {
    pub socket: PathBuf,
    pub provider: Arc<FakeProvider>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl FakeDaemon {
    /// Stop the way a terminating daemon does: stop accepting, close every connection, and return
    /// once that is done.
    pub async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn start_daemon(dir: &Path, name: &str, replies: Vec<Reply>) -> FakeDaemon {
    let socket = dir.join(format!("{name}.sock"));
    let listener = UnixListener::bind(&socket).unwrap();
    let provider = Arc::new(FakeProvider {
        replies: Mutex::new(replies.into()),
        ..Default::default()
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                wire::csi_driver_provider_server::CsiDriverProviderServer::from_arc(
                    provider.clone(),
                ),
            )
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    FakeDaemon {
        socket,
        provider,
        stop: Some(stop),
        task: Some(task),
    }
}

pub fn files_response(
    files: &[(&str, i32, &[u8])],
    versions: &[(&str, &str)],
) -> wire::MountResponse {
    wire::MountResponse {
        object_version: versions
            .iter()
            .map(|(id, version)| wire::ObjectVersion {
                id: id.to_string(),
                version: version.to_string(),
            })
            .collect(),
        error: None,
        files: files
            .iter()
            .map(|(path, mode, contents)| wire::File {
                path: path.to_string(),
                mode: *mode,
                contents: contents.to_vec(),
            })
            .collect(),
    }
}

pub fn json_map(text: &str) -> BTreeMap<String, String> {
    serde_json::from_str(text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// An HTTP server that holds every request until the test releases it.

pub struct HoldServer {
    pub port: u16,
    pub arrivals: mpsc::UnboundedReceiver<()>,
    release: watch::Sender<bool>,
}

impl HoldServer {
    pub async fn start(body: &'static str) -> HoldServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, arrivals) = mpsc::unbounded_channel();
        let (release, held) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let mut held = held.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tx.send(());
                    let _ = held.wait_for(|released| *released).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        HoldServer {
            port,
            arrivals,
            release,
        }
    }

    /// Let every held request (and any later one) be answered.
    pub fn release_all(&self) {
        self.release.send_replace(true);
    }
}
