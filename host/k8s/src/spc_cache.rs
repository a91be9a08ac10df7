//! A watch-backed cache of every SecretProviderClass in the cluster.
//!
//! One LIST+WATCH (at `v1`, all namespaces) feeds a kube reflector store, so a mount looks its class
//! up in memory instead of with a GET. The initial LIST uses `resourceVersion=0` (served from the API
//! server's watch cache, as client-go informers do) because every node of a large cluster runs one.
//! A class created a moment before its pod may not have reached the watch yet; [`SpcCache::get_or_fetch`]
//! then falls back to a single GET.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;
use crate::crd::v1::SecretProviderClass;
use crate::error::Op;

/// Annotation `kubectl apply` stores a full copy of the object in; the driver never reads it.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Cluster-wide cache of SecretProviderClasses. Dropping it stops the watch.
pub struct SpcCache {
    client: Client,
    store: Store<SecretProviderClass>,
    synced: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl SpcCache {
    /// Starts watching SecretProviderClasses on the current tokio runtime. The cache is empty until
    /// [`SpcCache::is_synced`]; watch failures are logged and retried with backoff.
    pub fn start(client: Client) -> Self {
        let api: Api<SecretProviderClass> = Api::all(client.clone());
        let (store, writer) = reflector::store();
        let (synced_tx, synced) = watch::channel(false);
        let config = watcher::Config::default().any_semantic();
        let stream = watcher(api, config)
            .default_backoff()
            .modify(|spc: &mut SecretProviderClass| {
                // Both can be larger than the object itself; nothing in the driver reads them.
                spc.metadata.managed_fields = None;
                if let Some(annotations) = spc.metadata.annotations.as_mut() {
                    annotations.remove(LAST_APPLIED_ANNOTATION);
                }
            })
            .reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if !synced_tx.send_replace(true) {
                            tracing::info!("SecretProviderClass cache synced");
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "watching SecretProviderClasses failed; retrying with backoff");
                    }
                }
            }
        });
        Self {
            client,
            store,
            synced,
            task,
        }
    }

    /// The cached class, without any API call. `None` if it is not (yet) in the cache.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<SecretProviderClass>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    /// The class from the cache, or else from one GET. A class that does not exist is
    /// [`Error::NotFound`] naming the class and the namespace.
    pub async fn get_or_fetch(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<SecretProviderClass>, Error> {
        if let Some(spc) = self.get(namespace, name) {
            return Ok(spc);
        }
        let op = Op {
            verb: "get",
            kind: "SecretProviderClass",
            resource: "secretproviderclasses.secrets-store.csi.x-k8s.io",
            namespace,
            name,
        };
        let api: Api<SecretProviderClass> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await.map_err(|e| op.error(e))? {
            Some(spc) => Ok(Arc::new(spc)),
            None => Err(Error::NotFound {
                kind: "SecretProviderClass".into(),
                namespace: namespace.into(),
                name: name.into(),
            }),
        }
    }

    /// Every cached class.
    pub fn list(&self) -> Vec<Arc<SecretProviderClass>> {
        self.store.state()
    }

    /// Whether the initial list has completed (the cache then holds every class).
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the initial list has completed. Bound it with `tokio::time::timeout`: it waits
    /// for as long as the API server cannot be listed.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.clone();
        // An error means the watch task is gone, which only happens when the cache is dropped.
        let _ = synced.wait_for(|done| *done).await;
    }
}

impl Drop for SpcCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}
