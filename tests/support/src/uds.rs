//! A tonic channel over a unix socket: the CSI and provider sockets are unix sockets, and tonic's
//! endpoints only speak TCP without a custom connector.

use std::path::Path;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connect once to `socket` (the URI is a placeholder: every connection goes to the socket).
pub async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
}

/// A channel to `socket` once something serves on it; panics after `bound`.
pub async fn channel_when_ready(socket: &Path, bound: Duration) -> Channel {
    let deadline = Instant::now() + bound;
    loop {
        if socket.exists()
            && let Ok(channel) = channel(socket).await
        {
            return channel;
        }
        assert!(
            Instant::now() < deadline,
            "nothing served on {} within {bound:?}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
