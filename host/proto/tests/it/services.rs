//! Service-path checks over a real unix socket: a tonic server built from the generated
//! `IdentityServer`, `NodeServer` and `CsiDriverProviderServer` must answer at the exact gRPC
//! paths kubelet, csi-sanity and upstream providers use (checked with hand-framed HTTP/2 requests
//! that do not go through the generated clients), and the generated clients must reach them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use secrets_store_proto::csi::v1 as csi;
use secrets_store_proto::provider::v1alpha1 as provider;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

struct Identity;

#[tonic::async_trait]
impl csi::identity_server::Identity for Identity {
    async fn get_plugin_info(
        &self,
        _: Request<csi::GetPluginInfoRequest>,
    ) -> Reply<csi::GetPluginInfoResponse> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: "secrets-store.csi.k8s.io".into(),
            vendor_version: "test".into(),
            manifest: HashMap::new(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Reply<csi::GetPluginCapabilitiesResponse> {
        Ok(Response::new(csi::GetPluginCapabilitiesResponse::default()))
    }

    async fn probe(&self, _: Request<csi::ProbeRequest>) -> Reply<csi::ProbeResponse> {
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}

/// Records what NodePublishVolume received; every other Node rpc is unimplemented.
#[derive(Default)]
struct Node {
    published: Mutex<Vec<csi::NodePublishVolumeRequest>>,
}

fn unimplemented<T>() -> Reply<T> {
    Err(Status::unimplemented("not served by this test"))
}

#[tonic::async_trait]
impl csi::node_server::Node for Node {
    async fn node_stage_volume(
        &self,
        _: Request<csi::NodeStageVolumeRequest>,
    ) -> Reply<csi::NodeStageVolumeResponse> {
        unimplemented()
    }

    async fn node_unstage_volume(
        &self,
        _: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Reply<csi::NodeUnstageVolumeResponse> {
        unimplemented()
    }

    async fn node_publish_volume(
        &self,
        request: Request<csi::NodePublishVolumeRequest>,
    ) -> Reply<csi::NodePublishVolumeResponse> {
        self.published.lock().push(request.into_inner());
        Ok(Response::new(csi::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        _: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Reply<csi::NodeUnpublishVolumeResponse> {
        unimplemented()
    }

    async fn node_get_volume_stats(
        &self,
        _: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Reply<csi::NodeGetVolumeStatsResponse> {
        unimplemented()
    }

    async fn node_get_volume_health(
        &self,
        _: Request<csi::NodeGetVolumeHealthRequest>,
    ) -> Reply<csi::NodeGetVolumeHealthResponse> {
        unimplemented()
    }

    async fn node_get_storage_health(
        &self,
        _: Request<csi::NodeGetStorageHealthRequest>,
    ) -> Reply<csi::NodeGetStorageHealthResponse> {
        unimplemented()
    }

    async fn node_expand_volume(
        &self,
        _: Request<csi::NodeExpandVolumeRequest>,
    ) -> Reply<csi::NodeExpandVolumeResponse> {
        unimplemented()
    }

    async fn node_get_capabilities(
        &self,
        _: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Reply<csi::NodeGetCapabilitiesResponse> {
        Ok(Response::new(csi::NodeGetCapabilitiesResponse::default()))
    }

    async fn node_get_info(
        &self,
        _: Request<csi::NodeGetInfoRequest>,
    ) -> Reply<csi::NodeGetInfoResponse> {
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: "node-a".into(),
            ..Default::default()
        }))
    }
}

/// Records Mount requests and answers with one fixed file.
#[derive(Default)]
struct Provider {
    mounts: Mutex<Vec<provider::MountRequest>>,
}

fn mount_response() -> provider::MountResponse {
    provider::MountResponse {
        object_version: vec![provider::ObjectVersion {
            id: "secret/a".into(),
            version: "v1".into(),
        }],
        error: None,
        files: vec![provider::File {
            path: "a".into(),
            mode: 0o644,
            contents: b"value".to_vec(),
        }],
    }
}

#[tonic::async_trait]
impl provider::csi_driver_provider_server::CsiDriverProvider for Provider {
    async fn version(
        &self,
        request: Request<provider::VersionRequest>,
    ) -> Reply<provider::VersionResponse> {
        Ok(Response::new(provider::VersionResponse {
            version: request.into_inner().version,
            runtime_name: "fake".into(),
            runtime_version: "0.0.1".into(),
        }))
    }

    async fn mount(
        &self,
        request: Request<provider::MountRequest>,
    ) -> Reply<provider::MountResponse> {
        self.mounts.lock().push(request.into_inner());
        Ok(Response::new(mount_response()))
    }
}

/// A running server on `<tempdir>/csi.sock`; dropped fields clean up the directory.
struct Running {
    socket: PathBuf,
    node: Arc<Node>,
    provider: Arc<Provider>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    _dir: tempfile::TempDir,
}

fn start() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("csi.sock");
    // Bound before the server task runs, so clients that connect early wait in the backlog.
    let listener = UnixListener::bind(&socket).expect("bind unix socket");
    let node = Arc::new(Node::default());
    let provider = Arc::new(Provider::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        Server::builder()
            .add_service(csi::identity_server::IdentityServer::new(Identity))
            .add_service(csi::node_server::NodeServer::from_arc(Arc::clone(&node)))
            .add_service(
                provider::csi_driver_provider_server::CsiDriverProviderServer::from_arc(
                    Arc::clone(&provider),
                ),
            )
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    Running {
        socket,
        node,
        provider,
        stop,
        task,
        _dir: dir,
    }
}

impl Running {
    async fn shut_down(self) {
        self.stop.send(()).expect("server still running");
        self.task
            .await
            .expect("server task")
            .expect("server exits cleanly");
    }
}

/// Outcome of one hand-made gRPC call.
struct RawReply {
    grpc_status: String,
    message: Option<Vec<u8>>,
}

/// Sends one length-prefixed gRPC message to `path` over HTTP/2 on the unix socket, without any
/// generated code involved.
async fn raw_unary(socket: &Path, path: &str, message: &[u8]) -> RawReply {
    let stream = UnixStream::connect(socket).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);

    let mut frame = vec![0u8]; // not compressed
    frame.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(message);
    let request = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(frame)))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), http::StatusCode::OK, "{path}");
    let header_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let collected = response.into_body().collect().await.expect("body");
    let trailer_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().expect("ascii").to_owned());
    let mut body = collected.to_bytes();
    let message = if body.is_empty() {
        None
    } else {
        assert_eq!(body.get_u8(), 0, "uncompressed reply");
        let len = usize::try_from(body.get_u32()).expect("fits");
        assert_eq!(body.len(), len, "exactly one message in the reply");
        Some(body.to_vec())
    };
    RawReply {
        grpc_status: header_status
            .or(trailer_status)
            .expect("grpc-status in headers or trailers"),
        message,
    }
}

#[tokio::test]
async fn server_answers_at_the_spec_paths() {
    let server = start();

    let info = raw_unary(&server.socket, "/csi.v1.Identity/GetPluginInfo", &[]).await;
    assert_eq!(info.grpc_status, "0");
    let info = csi::GetPluginInfoResponse::decode(info.message.expect("reply").as_slice())
        .expect("decodes");
    assert_eq!(info.name, "secrets-store.csi.k8s.io");

    let probe = raw_unary(&server.socket, "/csi.v1.Identity/Probe", &[]).await;
    assert_eq!(
        probe.message.as_deref(),
        Some(&[0x0a, 0x02, 0x08, 0x01][..])
    );

    // NodePublishVolumeRequest { volume_id: "v", target_path: "/t", readonly: true,
    // secrets: {"a": "b"} }, encoded by hand.
    let publish = [
        0x0a, 0x01, b'v', 0x22, 0x02, b'/', b't', 0x30, 0x01, 0x3a, 0x06, 0x0a, 0x01, b'a', 0x12,
        0x01, b'b',
    ];
    let reply = raw_unary(&server.socket, "/csi.v1.Node/NodePublishVolume", &publish).await;
    assert_eq!(reply.grpc_status, "0");
    assert_eq!(
        reply.message.as_deref(),
        Some(&[][..]),
        "empty response message"
    );
    {
        let published = server.node.published.lock();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].volume_id, "v");
        assert_eq!(published[0].target_path, "/t");
        assert!(published[0].readonly);
        assert_eq!(published[0].secrets.get("a").map(String::as_str), Some("b"));
    }

    let info = raw_unary(&server.socket, "/csi.v1.Node/NodeGetInfo", &[]).await;
    assert_eq!(info.message.as_deref(), Some(&b"\x0a\x06node-a"[..]));

    // MountRequest { attributes: "{}", current_object_version: [{id: "secret/a"}] }.
    let mount = [
        0x0a, 0x02, b'{', b'}', 0x2a, 0x0a, 0x0a, 0x08, b's', b'e', b'c', b'r', b'e', b't', b'/',
        b'a',
    ];
    let reply = raw_unary(&server.socket, "/v1alpha1.CSIDriverProvider/Mount", &mount).await;
    assert_eq!(reply.grpc_status, "0");
    assert_eq!(
        reply.message.expect("reply"),
        mount_response().encode_to_vec()
    );
    {
        let mounts = server.provider.mounts.lock();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].attributes, "{}");
        assert_eq!(mounts[0].current_object_version[0].id, "secret/a");
    }

    let version = raw_unary(
        &server.socket,
        "/v1alpha1.CSIDriverProvider/Version",
        b"\x0a\x08v1alpha1",
    )
    .await;
    assert_eq!(version.grpc_status, "0");

    // Services that are not registered (the driver serves no Controller) answer UNIMPLEMENTED.
    let controller = raw_unary(&server.socket, "/csi.v1.Controller/CreateVolume", &[]).await;
    assert_eq!(controller.grpc_status, "12");
    // So do registered services asked for a method they do not have.
    let unknown = raw_unary(&server.socket, "/csi.v1.Node/NodeGetID", &[]).await;
    assert_eq!(unknown.grpc_status, "12");

    server.shut_down().await;
}

async fn unix_channel(socket: &Path) -> Channel {
    secrets_store_test_support::uds::channel(socket)
        .await
        .expect("channel over unix socket")
}

#[tokio::test]
async fn generated_clients_reach_the_generated_servers() {
    let server = start();
    let channel = unix_channel(&server.socket).await;

    let mut identity = csi::identity_client::IdentityClient::new(channel.clone());
    let info = identity
        .get_plugin_info(csi::GetPluginInfoRequest {})
        .await
        .expect("GetPluginInfo")
        .into_inner();
    assert_eq!(info.vendor_version, "test");

    let mut node = csi::node_client::NodeClient::new(channel.clone());
    let request = csi::NodePublishVolumeRequest {
        volume_id: "vol".into(),
        target_path: "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/s/mount".into(),
        volume_context: [("secretProviderClass".to_owned(), "spc".to_owned())].into(),
        ..Default::default()
    };
    node.node_publish_volume(request.clone())
        .await
        .expect("NodePublishVolume");
    assert_eq!(*server.node.published.lock(), vec![request]);
    let health = node
        .node_get_volume_health(csi::NodeGetVolumeHealthRequest::default())
        .await
        .expect_err("not served");
    assert_eq!(health.code(), tonic::Code::Unimplemented);

    let mut client = provider::csi_driver_provider_client::CsiDriverProviderClient::new(channel);
    let version = client
        .version(provider::VersionRequest {
            version: "v1alpha1".into(),
        })
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(version.runtime_name, "fake");
    let mounted = client
        .mount(provider::MountRequest::default())
        .await
        .expect("Mount")
        .into_inner();
    assert_eq!(mounted, mount_response());

    server.shut_down().await;
}

#[test]
fn service_names_match_the_specs() {
    assert_eq!(csi::identity_server::SERVICE_NAME, "csi.v1.Identity");
    assert_eq!(csi::node_server::SERVICE_NAME, "csi.v1.Node");
    assert_eq!(
        provider::csi_driver_provider_server::SERVICE_NAME,
        "v1alpha1.CSIDriverProvider"
    );
}
