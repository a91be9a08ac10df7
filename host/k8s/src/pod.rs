//! Pod lookup: what the mount and Secret-sync code needs to know about the pod a volume belongs to.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Api, Client};

use crate::Error;
use crate::error::Op;

/// The parts of a Pod the driver uses.
#[derive(Clone, Debug, PartialEq)]
pub struct PodInfo {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// UID of the pod.
    pub uid: String,
    /// The pod's owners (ReplicaSet, StatefulSet, Job, ...), as the API server returned them.
    pub owner_references: Vec<OwnerReference>,
    /// Service account the pod runs as.
    pub service_account_name: Option<String>,
    /// Node the pod is bound to.
    pub node_name: Option<String>,
}

impl PodInfo {
    /// Extracts the driver's view of a Pod object.
    pub fn from_pod(pod: &Pod) -> Self {
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            owner_references: pod.metadata.owner_references.clone().unwrap_or_default(),
            service_account_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone()),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        }
    }
}

/// Reads a pod with one GET. A missing pod is [`Error::NotFound`] naming it.
pub async fn get_pod(client: &Client, namespace: &str, name: &str) -> Result<PodInfo, Error> {
    let op = Op {
        verb: "get",
        kind: "Pod",
        resource: "pods",
        namespace,
        name,
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = api.get(name).await.map_err(|e| op.error(e))?;
    Ok(PodInfo::from_pod(&pod))
}
