//! An in-process fake Kubernetes API server for tests.
//!
//! It listens on plain HTTP at `127.0.0.1:<random port>` and speaks the real REST/JSON protocol, so a
//! real [`kube::Client`] (or a separate driver process given [`Handle::write_kubeconfig`]) talks to it
//! exactly as to a cluster:
//!
//! - GET, LIST (namespaced and cluster-wide; `labelSelector`, `fieldSelector`, `limit`/`continue`
//!   with consistent snapshots, `resourceVersion` + `resourceVersionMatch`), WATCH (ADDED, MODIFIED,
//!   DELETED, BOOKMARK with `allowWatchBookmarks`, `sendInitialEvents`, `timeoutSeconds`, an ERROR
//!   event with a 410 Expired Status for a compacted resourceVersion, as apiserver sends it), POST,
//!   PUT (409 Conflict on a stale resourceVersion), PATCH (JSON merge patch and JSON patch; 415 for
//!   the rest), DELETE (preconditions, finalizers, background and orphan propagation) and
//!   deletecollection;
//! - server-set uid, creationTimestamp, resourceVersion (one counter, like etcd revisions) and
//!   generation; name and label validation (422); Secret `stringData` folded into `data`;
//! - errors as `Status` bodies worded as apiserver words them;
//! - all served versions of a custom resource share one store (a CRD with `conversion: None`);
//! - a synchronous garbage collector: an object all of whose owners are gone is deleted, as the
//!   real one eventually does (owners must therefore exist, as in a cluster);
//! - RBAC simulation ([`Handle::forbid`]) answering 403 with the real message.
//!
//! Test hooks on [`Handle`] read and write the store directly (bypassing RBAC), count requests,
//! inject failures, run code before a given request, compact the history and end watches.
//!
//! Not implemented: authentication, admission webhooks, schema validation and pruning of custom
//! resources, server-side apply and strategic merge patch (415), protobuf, subresources (404),
//! `dryRun` (400), graceful pod deletion (pods go at once), foreground propagation (treated as
//! background), namespace lifecycle unless [`Builder::require_namespaces`].

mod resources;
mod selector;
mod server;
mod status;
mod store;

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub use resources::{ResourceType, default_resources};

/// A pod named `name` in `namespace`, nothing else set: what tests create to own or reference.
pub fn pod(namespace: &str, name: &str) -> k8s_openapi::api::core::v1::Pod {
    k8s_openapi::api::core::v1::Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}
use status::ApiError;
use store::{DeleteOptions, State};

/// User the RBAC simulation names in 403 messages unless [`Builder::user`] says otherwise.
pub const DEFAULT_USER: &str = "system:serviceaccount:kube-system:secrets-store-csi-driver";

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// API verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`),
    /// or empty for non-resource paths.
    pub verb: String,
    /// API group of the resource ("" for core).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Namespace in the URL, if any.
    pub namespace: Option<String>,
    /// Object name in the URL, if any.
    pub name: Option<String>,
    /// Response status code.
    pub status: u16,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

impl RequestRecord {
    /// Whether the verb changes state.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// An error from a test hook, carrying the Status the API would have answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct StoreError {
    /// HTTP code.
    pub code: u16,
    /// Status reason.
    pub reason: String,
    /// Status message.
    pub message: String,
}

impl From<ApiError> for StoreError {
    fn from(e: ApiError) -> Self {
        Self {
            code: e.code,
            reason: e.reason.to_string(),
            message: e.message,
        }
    }
}

type HookFn = Box<dyn FnOnce(&Handle) + Send>;

enum Action {
    Run(HookFn),
    Fail(ApiError),
}

struct Pending {
    verb: String,
    group: String,
    resource: String,
    action: Action,
}

struct Rule {
    verb: String,
    group: String,
    resource: String,
    namespace: Option<String>,
}

#[derive(Default)]
struct Control {
    forbidden: Vec<Rule>,
    requests: Vec<RequestRecord>,
    pending: Vec<Pending>,
}

struct Shared {
    state: Mutex<State>,
    control: Mutex<Control>,
    user: String,
    addr: SocketAddr,
}

/// Access to a running fake server's store and controls. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

/// Configures a fake server.
pub struct Builder {
    resources: Vec<ResourceType>,
    user: String,
    history_limit: usize,
    bookmark_interval: Option<Duration>,
    gc: bool,
    require_namespaces: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            resources: default_resources(),
            user: DEFAULT_USER.into(),
            history_limit: 10_000,
            bookmark_interval: Some(Duration::from_secs(60)),
            gc: true,
            require_namespaces: false,
        }
    }
}

impl Builder {
    /// Serves one more resource type.
    pub fn resource(mut self, resource: ResourceType) -> Self {
        self.resources.push(resource);
        self
    }

    /// The user named in 403 messages.
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.into();
        self
    }

    /// How many changes the history keeps; older resourceVersions are compacted (410).
    pub fn history_limit(mut self, changes: usize) -> Self {
        self.history_limit = changes.max(1);
        self
    }

    /// How often watches that allow bookmarks get one (default one minute, like apiserver);
    /// `None` sends them only through [`Handle::send_bookmarks`] and before a watch times out.
    pub fn bookmark_interval(mut self, interval: Option<Duration>) -> Self {
        self.bookmark_interval = interval;
        self
    }

    /// Whether the garbage collector runs (default yes).
    pub fn garbage_collection(mut self, enabled: bool) -> Self {
        self.gc = enabled;
        self
    }

    /// Whether creating a namespaced object requires its Namespace to exist (default no).
    pub fn require_namespaces(mut self, required: bool) -> Self {
        self.require_namespaces = required;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    pub async fn start(self) -> std::io::Result<FakeApiServer> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(
                self.resources,
                self.history_limit,
                self.gc,
                self.require_namespaces,
            )),
            control: Mutex::new(Control::default()),
            user: self.user,
            addr,
        });
        let handle = Handle { shared };
        let server = tokio::spawn(server::serve(listener, handle.clone()));
        let bookmarks = self.bookmark_interval.map(|interval| {
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    handle.send_bookmarks();
                }
            })
        });
        Ok(FakeApiServer {
            handle,
            server,
            bookmarks,
        })
    }
}

/// A running fake API server; dropping it stops the server and ends every watch.
pub struct FakeApiServer {
    handle: Handle,
    server: JoinHandle<()>,
    bookmarks: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// A server with the default resource types and settings.
    pub async fn start() -> std::io::Result<Self> {
        Builder::default().start().await
    }

    /// Configures a server.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A handle that outlives borrows of the server (for hooks and spawned tasks).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Deref for FakeApiServer {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(task) = &self.bookmarks {
            task.abort();
        }
        self.handle.state().watchers.clear();
    }
}

fn typed<K: DeserializeOwned>(value: Value) -> Result<K, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError {
        code: 500,
        reason: "InternalError".into(),
        message: format!("stored object does not deserialise into the requested type: {e}"),
    })
}

fn to_json<K: Serialize>(object: &K) -> Result<Value, StoreError> {
    serde_json::to_value(object).map_err(|e| StoreError {
        code: 400,
        reason: "BadRequest".into(),
        message: format!("object does not serialise: {e}"),
    })
}

impl Handle {
    fn state(&self) -> MutexGuard<'_, State> {
        // parking_lot: a panicking test thread does not poison the store for the others.
        self.shared.state.lock()
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.shared.control.lock()
    }

    /// Address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kube client for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.client_with_user_agent(None)
    }

    /// A kube client sending `user_agent`.
    pub fn client_with_user_agent(&self, user_agent: Option<&str>) -> kube::Client {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let uri: http::Uri = match self.url().parse() {
            Ok(uri) => uri,
            Err(e) => panic!("the fake server URL {} does not parse: {e}", self.url()),
        };
        let mut config = kube::Config::new(uri);
        if let Some(agent) = user_agent.and_then(|a| http::HeaderValue::from_str(a).ok()) {
            config.headers.push((http::header::USER_AGENT, agent));
        }
        match kube::Client::try_from(config) {
            Ok(client) => client,
            Err(e) => panic!("building a kube client for the fake API server failed: {e}"),
        }
    }

    /// Writes a kubeconfig pointing at this server (no credentials), for a separate process.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": "fake", "cluster": { "server": self.url() } }],
            "users": [{ "name": "fake", "user": {} }],
            "contexts": [{ "name": "fake", "context": { "cluster": "fake", "user": "fake", "namespace": "default" } }],
            "current-context": "fake",
        });
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&kubeconfig).map_err(std::io::Error::other)?,
        )
    }

    fn index_of<K: Resource<DynamicType = ()>>(&self) -> Result<usize, StoreError> {
        let (group, plural) = (K::group(&()), K::plural(&()));
        self.state()
            .resource_index(&group, &plural)
            .ok_or_else(|| StoreError {
                code: 404,
                reason: "NotFound".into(),
                message: format!("the fake server does not serve {plural} in group {group:?}"),
            })
    }

    /// Creates an object as POST would (server-set metadata, events, GC), bypassing RBAC and
    /// hooks. The object's namespace (default `default`) is used.
    pub fn create<K>(&self, object: &K) -> Result<K, StoreError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let res = self.index_of::<K>()?;
        let mut value = to_json(object)?;
        let namespace = object
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let mut state = self.state();
        let created = state.create(res, &namespace, value, false)?;
        typed(state.at_version(res, &K::version(&()), &created))
    }

    /// Replaces an object as PUT would; a resourceVersion in it must be current.
    pub fn replace<K>(&self, object: &K) -> Result<K, StoreError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let res = self.index_of::<K>()?;
        let value = to_json(object)?;
        let namespace = object
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = object.meta().name.clone().unwrap_or_default();
        let mut state = self.state();
        let updated = state.update(res, &namespace, &name, value)?;
        typed(state.at_version(res, &K::version(&()), &updated))
    }

    /// Applies a JSON merge patch to an object, as PATCH would.
    pub fn merge_patch<K>(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<K, StoreError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let res = self.index_of::<K>()?;
        let body = serde_json::to_vec(patch).unwrap_or_default();
        let mut state = self.state();
        let patched = state.patch(res, namespace, name, "application/merge-patch+json", &body)?;
        typed(state.at_version(res, &K::version(&()), &patched))
    }

    /// Deletes an object as DELETE would (background propagation, finalizers respected).
    pub fn delete<K>(&self, namespace: &str, name: &str) -> Result<(), StoreError>
    where
        K: Resource<DynamicType = ()>,
    {
        let res = self.index_of::<K>()?;
        self.state()
            .delete(res, namespace, name, &DeleteOptions::default())?;
        Ok(())
    }

    /// The stored object, at `K`'s version.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let res = self.index_of::<K>().ok()?;
        let state = self.state();
        let value = state.get(res, namespace, name).ok()?;
        typed(state.at_version(res, &K::version(&()), &value)).ok()
    }

    /// Every stored object of `K`'s type, at `K`'s version, ordered by namespace and name.
    pub fn list<K>(&self) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let Ok(res) = self.index_of::<K>() else {
            return Vec::new();
        };
        let state = self.state();
        let version = K::version(&());
        state
            .objects
            .iter()
            .filter(|((r, _, _), _)| *r == res)
            .filter_map(|(_, v)| typed(state.at_version(res, &version, v)).ok())
            .collect()
    }

    /// Creates an object given as JSON; its `apiVersion` and `kind` pick the resource type.
    pub fn create_json(&self, mut object: Value) -> Result<Value, StoreError> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (group, version) = api_version
            .rsplit_once('/')
            .unwrap_or(("", api_version.as_str()));
        let mut state = self.state();
        let res = state
            .resources
            .iter()
            .position(|r| {
                r.group == group && r.kind == kind && r.versions.iter().any(|v| v == version)
            })
            .ok_or_else(|| StoreError {
                code: 404,
                reason: "NotFound".into(),
                message: format!("the fake server does not serve kind {kind:?} at {api_version:?}"),
            })?;
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let created = state.create(res, &namespace, object, false)?;
        Ok(state.at_version(res, version, &created))
    }

    /// The stored object of resource `group`/`plural`, as stored (storage version).
    pub fn get_json(
        &self,
        group: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let state = self.state();
        let res = state.resource_index(group, plural)?;
        state.get(res, namespace, name).ok()
    }

    /// Every stored object of resource `group`/`plural`.
    pub fn list_json(&self, group: &str, plural: &str) -> Vec<Value> {
        let state = self.state();
        let Some(res) = state.resource_index(group, plural) else {
            return Vec::new();
        };
        state
            .objects
            .iter()
            .filter(|((r, _, _), _)| *r == res)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The current resourceVersion (the last change's).
    pub fn resource_version(&self) -> u64 {
        self.state().rv
    }

    /// Refuses `verb` (or `*`) on `group`/`resource` in every namespace with 403 Forbidden.
    pub fn forbid(&self, verb: &str, group: &str, resource: &str) {
        self.control().forbidden.push(Rule {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: None,
        });
    }

    /// Refuses `verb` on `group`/`resource` in one namespace.
    pub fn forbid_in_namespace(&self, verb: &str, group: &str, resource: &str, namespace: &str) {
        self.control().forbidden.push(Rule {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: Some(namespace.into()),
        });
    }

    /// Lifts every [`Handle::forbid`].
    pub fn allow_all(&self) {
        self.control().forbidden.clear();
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.control().requests.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.control().requests.clear();
    }

    /// Requests with `verb` on `group`/`resource`.
    pub fn count(&self, verb: &str, group: &str, resource: &str) -> usize {
        self.control()
            .requests
            .iter()
            .filter(|r| r.verb == verb && r.group == group && r.resource == resource)
            .count()
    }

    /// Write requests (create, update, patch, delete, deletecollection) on `group`/`resource`,
    /// whatever their outcome.
    pub fn writes(&self, group: &str, resource: &str) -> usize {
        self.control()
            .requests
            .iter()
            .filter(|r| r.is_write() && r.group == group && r.resource == resource)
            .count()
    }

    /// Write requests on any resource.
    pub fn total_writes(&self) -> usize {
        self.control()
            .requests
            .iter()
            .filter(|r| r.is_write())
            .count()
    }

    /// Answers the next request with `verb` on `group`/`resource` with this error instead of
    /// serving it (after RBAC). Each queued failure or hook is used by one request, in order.
    pub fn fail_next(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        code: u16,
        reason: &'static str,
        message: &str,
    ) {
        self.control().pending.push(Pending {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            action: Action::Fail(ApiError::new(code, reason, message)),
        });
    }

    /// Runs `hook` just before the next request with `verb` on `group`/`resource` is served, e.g.
    /// to change the object a client has just read so that its update genuinely conflicts. Each
    /// queued hook or failure is used by one request, in order.
    pub fn before_next(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        hook: impl FnOnce(&Handle) + Send + 'static,
    ) {
        self.control().pending.push(Pending {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            action: Action::Run(Box::new(hook)),
        });
    }

    /// Drops the change history: watches and list continuations from any earlier resourceVersion
    /// get 410 Expired.
    pub fn compact(&self) {
        self.state().compact();
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch that allows bookmarks.
    pub fn send_bookmarks(&self) {
        self.state().send_bookmarks();
    }

    /// Ends every open watch (as apiserver does when it restarts or a watch times out); clients
    /// re-watch from their last resourceVersion.
    pub fn close_watches(&self) {
        self.state().watchers.clear();
    }

    /// Number of open watches (a watch whose client went away counts until the next event for it
    /// finds it gone).
    pub fn open_watches(&self) -> usize {
        self.state().watchers.len()
    }

    /// Open watches on `group`/`resource`.
    pub fn open_watches_on(&self, group: &str, resource: &str) -> usize {
        let state = self.state();
        let Some(res) = state.resource_index(group, resource) else {
            return 0;
        };
        state.watchers.iter().filter(|w| w.res == res).count()
    }
}
