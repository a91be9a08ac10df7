//! Serving on a unix socket: parse the endpoint, replace a stale socket (never a live one), create the
//! new one owner-only, and stop gracefully — in-flight calls finish — when told to.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Router;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("endpoint {0:?}: want unix:///path/to/socket")]
    Endpoint(String),
    #[error("endpoint {path:?}: another process is serving on it")]
    InUse { path: PathBuf },
    #[error("endpoint {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// `unix:///abs/path` (or upstream's `unix://tmp/csi.sock`, read as `/tmp/csi.sock`).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ServeError> {
    let rest = endpoint
        .strip_prefix("unix://")
        .ok_or_else(|| ServeError::Endpoint(endpoint.to_string()))?;
    if rest.is_empty() {
        return Err(ServeError::Endpoint(endpoint.to_string()));
    }
    Ok(if rest.starts_with('/') {
        PathBuf::from(rest)
    } else {
        PathBuf::from("/").join(rest)
    })
}

/// Bind `path` for serving: a leftover socket from a dead process is removed; a live one is an error.
pub async fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    let io_error = |source| ServeError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ServeError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(io_error)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    // Owner-only from the start: set the umask around bind instead of a chmod afterwards, so the
    // socket is never connectable by others, even briefly.
    let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let listener = UnixListener::bind(path);
    rustix::process::umask(previous);
    listener.map_err(io_error)
}

/// Serve `router` on the socket until `shutdown` resolves; calls in flight finish; the socket file is
/// removed afterwards.
pub async fn serve(
    router: Router,
    path: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let listener = bind(path).await?;
    tracing::info!(socket = %path.display(), "serving gRPC");
    let result = router
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(path);
    result.map_err(ServeError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("unix://tmp/csi.sock").unwrap(),
            PathBuf::from("/tmp/csi.sock")
        );
        assert!(socket_path("tcp://1.2.3.4:5").is_err());
        assert!(socket_path("unix://").is_err());
    }

    #[tokio::test]
    async fn stale_sockets_are_replaced_live_ones_are_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csi.sock");
        let live = bind(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "owner-only socket");
        assert!(
            matches!(bind(&path).await, Err(ServeError::InUse { .. })),
            "a live socket is not stolen"
        );
        drop(live);
        bind(&path).await.expect("a stale socket is replaced");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(
            bind(&file).await.is_err(),
            "a regular file is never removed"
        );
        assert!(file.exists());
    }
}
