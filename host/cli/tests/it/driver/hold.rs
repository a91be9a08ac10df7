//! An HTTP server that holds every request until the test releases it, so a test can keep a
//! provider call in flight for exactly as long as it needs to.

#![allow(dead_code, clippy::unwrap_used)] // Test support: a failed unwrap is a failed test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::{Semaphore, mpsc};

pub struct HoldServer {
    pub addr: SocketAddr,
    arrivals: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    releases: Arc<Semaphore>,
}

impl HoldServer {
    pub async fn start() -> HoldServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let releases = Arc::new(Semaphore::new(0));
        let gate = releases.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            let gate = gate.clone();
                            async move {
                                let _ = tx.send(request.uri().path().to_string());
                                gate.acquire().await.unwrap().forget();
                                Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                    Bytes::from_static(b"released"),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        HoldServer {
            addr,
            arrivals: tokio::sync::Mutex::new(rx),
            releases,
        }
    }

    /// Wait until a request has arrived (and is being held); returns its path.
    pub async fn arrived(&self) -> String {
        self.arrivals.lock().await.recv().await.unwrap()
    }

    /// Let `n` held requests answer.
    pub fn release(&self, n: usize) {
        self.releases.add_permits(n);
    }
}
