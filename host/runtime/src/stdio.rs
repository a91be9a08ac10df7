//! Guest stdout/stderr: kept (bounded) and sent to the host log after the call, never failing the
//! guest's writes, so a chatty provider neither crashes nor floods the node's log.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

const CAPTURE_LIMIT: usize = 16 * 1024;

#[derive(Clone, Default)]
pub(crate) struct CapturedOutput {
    buffer: Arc<Mutex<(Vec<u8>, bool)>>,
}

impl CapturedOutput {
    /// What was written, and whether more was dropped.
    pub(crate) fn take(&self) -> (String, bool) {
        let mut guard = self.buffer.lock();
        let (bytes, truncated) = std::mem::take(&mut *guard);
        (String::from_utf8_lossy(&bytes).into_owned(), truncated)
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut guard = self.buffer.lock();
        let room = CAPTURE_LIMIT.saturating_sub(guard.0.len());
        guard.0.extend_from_slice(&buf[..buf.len().min(room)]);
        if buf.len() > room {
            guard.1 = true;
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
