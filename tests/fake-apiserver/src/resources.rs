//! The resource types the fake server serves: group, versions, plural, kind, scope, and whether the
//! type behaves like a custom resource (no strategic merge patch, the deleted object returned from
//! DELETE, `metadata.generation` bumped on any non-metadata change).

/// One resource type served by the fake server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// Served versions; the first is the storage version. All versions share one store, as a CRD
    /// with `conversion: None` does: only `apiVersion` differs between them.
    pub versions: Vec<String>,
    /// Plural resource name used in URLs, e.g. `pods`.
    pub plural: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether the type is a custom resource.
    pub custom: bool,
}

impl ResourceType {
    /// A built-in (non-custom) type.
    pub fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            versions: vec![version.into()],
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            custom: false,
        }
    }

    /// A custom resource type served at `versions` (the first is the storage version).
    pub fn custom(
        group: &str,
        versions: &[&str],
        plural: &str,
        kind: &str,
        namespaced: bool,
    ) -> Self {
        Self {
            group: group.into(),
            versions: versions.iter().map(|v| v.to_string()).collect(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            custom: true,
        }
    }

    /// `apiVersion` of objects at `version`.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// `apiVersion` of stored objects.
    pub fn storage_api_version(&self) -> String {
        self.api_version(&self.versions[0])
    }

    /// The resource as the API server names it in messages: `pods`, or
    /// `secretproviderclasses.secrets-store.csi.x-k8s.io`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind as the API server names it in validation messages: `Pod`, or
    /// `SecretProviderClassPodStatus.secrets-store.csi.x-k8s.io`.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether `metadata.generation` is maintained (custom resources and the apps/batch workloads).
    pub(crate) fn tracks_generation(&self) -> bool {
        self.custom || self.group == "apps" || self.group == "batch"
    }
}

/// The types every fake server serves: core pods, secrets, events, configmaps, serviceaccounts,
/// namespaces and nodes; events.k8s.io/v1 events; the apps and batch workloads (so tests can give pods real owners); and the
/// driver's two custom resources at `v1` and `v1alpha1`.
pub fn default_resources() -> Vec<ResourceType> {
    vec![
        ResourceType::builtin("", "v1", "pods", "Pod", true),
        ResourceType::builtin("", "v1", "secrets", "Secret", true),
        ResourceType::builtin("", "v1", "events", "Event", true),
        // A store of its own here; apiserver shows the same events through both APIs.
        ResourceType::builtin("events.k8s.io", "v1", "events", "Event", true),
        ResourceType::builtin("", "v1", "configmaps", "ConfigMap", true),
        ResourceType::builtin("", "v1", "serviceaccounts", "ServiceAccount", true),
        ResourceType::builtin("", "v1", "namespaces", "Namespace", false),
        ResourceType::builtin("", "v1", "nodes", "Node", false),
        ResourceType::builtin("apps", "v1", "deployments", "Deployment", true),
        ResourceType::builtin("apps", "v1", "replicasets", "ReplicaSet", true),
        ResourceType::builtin("apps", "v1", "statefulsets", "StatefulSet", true),
        ResourceType::builtin("apps", "v1", "daemonsets", "DaemonSet", true),
        ResourceType::builtin("batch", "v1", "jobs", "Job", true),
        ResourceType::custom(
            "secrets-store.csi.x-k8s.io",
            &["v1", "v1alpha1"],
            "secretproviderclasses",
            "SecretProviderClass",
            true,
        ),
        ResourceType::custom(
            "secrets-store.csi.x-k8s.io",
            &["v1", "v1alpha1"],
            "secretproviderclasspodstatuses",
            "SecretProviderClassPodStatus",
            true,
        ),
    ]
}
