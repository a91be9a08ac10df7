//! The driver's custom resources, `SecretProviderClass` and `SecretProviderClassPodStatus`, and the
//! CustomResourceDefinitions that install them.
//!
//! Both kinds live in the group `secrets-store.csi.x-k8s.io` and are served at `v1` (the storage
//! version) and `v1alpha1` (deprecated, same schema, no conversion webhook: the API server only
//! rewrites `apiVersion`). The schemas are derived from the Rust types and then adjusted so that they
//! match the upstream CRDs: every field optional, no status subresource (upstream writes `status` with
//! plain create/update), no defaults and no `nullable`. Objects that were applied against the upstream
//! CRDs therefore apply unchanged.
//!
//! Deserialisation is lenient in the same way the schema is: a missing `spec` or `status`, or any
//! missing field, becomes its empty value, so one odd object in the cluster cannot stop the driver's
//! watch from listing all the others.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API group of both custom resources.
pub const GROUP: &str = "secrets-store.csi.x-k8s.io";

/// Label on every SecretProviderClassPodStatus naming the node whose driver wrote it.
pub const NODE_NAME_LABEL: &str = "internal.secrets-store.csi.k8s.io/node-name";

/// Warning the API server returns to clients that use the deprecated `v1alpha1` SecretProviderClass.
pub const SPC_V1ALPHA1_DEPRECATION_WARNING: &str =
    "secrets-store.csi.x-k8s.io/v1alpha1 is deprecated. Use secrets-store.csi.x-k8s.io/v1 instead.";

/// Serde impls for a spec declared with `#[serde(remote = "Self")]`: serialisation as derived, and
/// deserialisation that turns a missing or null `spec` into the empty spec instead of failing.
macro_rules! lenient_spec {
    ($spec:ident) => {
        impl ::serde::Serialize for $spec {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $spec::serialize(self, serializer)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $spec {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                struct Present($spec);
                impl<'de> ::serde::Deserialize<'de> for Present {
                    fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                        $spec::deserialize(d).map(Present)
                    }
                }
                // A missing field reaches here as `deserialize_option` -> none.
                Ok(Option::<Present>::deserialize(deserializer)?
                    .map(|p| p.0)
                    .unwrap_or_default())
            }
        }
    };
}
pub(crate) use lenient_spec;

fn is_false(value: &bool) -> bool {
    !*value
}

/// One key of a Kubernetes Secret filled from a mounted object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(
    description = "One key of a synced Kubernetes Secret and the mounted object it is filled from."
)]
pub struct SecretObjectData {
    /// Name of the mounted object (its file name, or its alias) whose content fills the key.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub object_name: String,
    /// Key in the Secret's data.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
}

/// A Kubernetes Secret the driver keeps in sync with mounted objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(description = "A Kubernetes Secret kept in sync with objects mounted from this class.")]
pub struct SecretObject {
    /// Name of the Secret, in the namespace of the pod that mounts the class.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret_name: String,
    /// Type of the Secret (`Opaque` when empty).
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// Labels set on the Secret.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations set on the Secret.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The Secret's keys and the objects that fill them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<SecretObjectData>,
}

/// A pod that recorded its use of a class in the (legacy) `status.byPod` list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(description = "A pod that recorded its use of this class.")]
pub struct ByPodStatus {
    /// UID of the pod.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Namespace of the pod.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Observed state of a SecretProviderClass. The driver does not write it; the field exists so that
/// objects carrying it (older drivers wrote `byPod`) keep their content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(description = "Observed state of the class.")]
pub struct SecretProviderClassStatus {
    /// Pods that recorded their use of the class.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_pod: Vec<ByPodStatus>,
}

/// An object fetched from the external store for one mount, with the version that was written.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", default)]
#[schemars(description = "An object fetched from the external secrets store and its version.")]
pub struct SecretProviderClassObject {
    /// Provider-defined identity of the object.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Version of the object that is mounted.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// Observed state of one pod's mount of one SecretProviderClass.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(description = "Observed state of one pod's mount of one SecretProviderClass.")]
pub struct SecretProviderClassPodStatusStatus {
    /// Name of the pod.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pod_name: String,
    /// Name of the SecretProviderClass, in the pod's namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret_provider_class_name: String,
    /// Whether the volume is mounted.
    #[serde(skip_serializing_if = "is_false")]
    pub mounted: bool,
    /// Path of the volume on the node.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target_path: String,
    /// Objects written into the volume, sorted by id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<SecretProviderClassObject>,
}

/// `secrets-store.csi.x-k8s.io/v1`, the storage version.
pub mod v1 {
    use std::collections::BTreeMap;

    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    pub use super::{
        ByPodStatus, SecretObject, SecretObjectData, SecretProviderClassObject,
        SecretProviderClassPodStatusStatus, SecretProviderClassStatus,
    };

    /// What a SecretProviderClass asks of its provider.
    #[derive(
        CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
    )]
    #[kube(
        group = "secrets-store.csi.x-k8s.io",
        version = "v1",
        kind = "SecretProviderClass",
        namespaced,
        status = "SecretProviderClassStatus",
        derive = "PartialEq",
        derive = "Default",
        doc = "A SecretProviderClass names the provider that fetches a volume's objects and the parameters it gets."
    )]
    #[serde(rename_all = "camelCase", default, remote = "Self")]
    #[schemars(
        description = "Desired state of the class: the provider, its parameters, Secrets to sync."
    )]
    pub struct SecretProviderClassSpec {
        /// Name of the provider that fetches the objects.
        #[serde(skip_serializing_if = "String::is_empty")]
        pub provider: String,
        /// Provider-specific parameters, passed to the provider as they are.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        pub parameters: BTreeMap<String, String>,
        /// Kubernetes Secrets to keep in sync with the mounted objects.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub secret_objects: Vec<SecretObject>,
    }

    super::lenient_spec!(SecretProviderClassSpec);

    /// The root-level fields of a SecretProviderClassPodStatus besides `status`: there are none, the
    /// kind has no `spec`.
    #[derive(
        CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
    )]
    #[kube(
        group = "secrets-store.csi.x-k8s.io",
        version = "v1",
        kind = "SecretProviderClassPodStatus",
        namespaced,
        no_spec,
        status = "SecretProviderClassPodStatusStatus",
        derive = "PartialEq",
        derive = "Default",
        doc = "A SecretProviderClassPodStatus records one pod's mount of one SecretProviderClass on a node."
    )]
    pub struct SecretProviderClassPodStatusFields {}
}

/// `secrets-store.csi.x-k8s.io/v1alpha1`, served but deprecated; same schema as `v1`.
pub mod v1alpha1 {
    use std::collections::BTreeMap;

    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    pub use super::{
        ByPodStatus, SecretObject, SecretObjectData, SecretProviderClassObject,
        SecretProviderClassPodStatusStatus, SecretProviderClassStatus,
    };

    /// What a SecretProviderClass asks of its provider (deprecated version).
    #[derive(
        CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
    )]
    #[kube(
        group = "secrets-store.csi.x-k8s.io",
        version = "v1alpha1",
        kind = "SecretProviderClass",
        namespaced,
        status = "SecretProviderClassStatus",
        derive = "PartialEq",
        derive = "Default",
        served = true,
        storage = false,
        deprecated = "secrets-store.csi.x-k8s.io/v1alpha1 is deprecated. Use secrets-store.csi.x-k8s.io/v1 instead.",
        doc = "A SecretProviderClass names the provider that fetches a volume's objects and the parameters it gets."
    )]
    #[serde(rename_all = "camelCase", default, remote = "Self")]
    #[schemars(
        description = "Desired state of the class: the provider, its parameters, Secrets to sync."
    )]
    pub struct SecretProviderClassSpec {
        /// Name of the provider that fetches the objects.
        #[serde(skip_serializing_if = "String::is_empty")]
        pub provider: String,
        /// Provider-specific parameters, passed to the provider as they are.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        pub parameters: BTreeMap<String, String>,
        /// Kubernetes Secrets to keep in sync with the mounted objects.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub secret_objects: Vec<SecretObject>,
    }

    super::lenient_spec!(SecretProviderClassSpec);

    /// The root-level fields of a SecretProviderClassPodStatus besides `status` (deprecated version).
    #[derive(
        CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
    )]
    #[kube(
        group = "secrets-store.csi.x-k8s.io",
        version = "v1alpha1",
        kind = "SecretProviderClassPodStatus",
        namespaced,
        no_spec,
        status = "SecretProviderClassPodStatusStatus",
        derive = "PartialEq",
        derive = "Default",
        served = true,
        storage = false,
        deprecated,
        doc = "A SecretProviderClassPodStatus records one pod's mount of one SecretProviderClass on a node."
    )]
    pub struct SecretProviderClassPodStatusFields {}
}

/// Error building a CRD; only a bug in this module can cause it.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The storage and deprecated versions do not merge into one CRD.
    #[error("building the {crd} CustomResourceDefinition: {source}")]
    Merge {
        crd: &'static str,
        #[source]
        source: kube::core::crd::MergeError,
    },
    /// A version came out of the derive without a schema.
    #[error("building the {crd} CustomResourceDefinition: version {version} has no schema")]
    NoSchema { crd: &'static str, version: String },
    /// The schema does not round-trip through JSON.
    #[error("building the {crd} CustomResourceDefinition: {source}")]
    Schema {
        crd: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The CRD does not serialise to YAML.
    #[error(
        "building the secrets-store CustomResourceDefinition: serialising {name} to YAML: {source}"
    )]
    Yaml {
        name: String,
        #[source]
        source: serde_norway::Error,
    },
}

/// The two CustomResourceDefinitions, each with `v1` (storage) and `v1alpha1` (served, deprecated).
pub fn crds() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    Ok(vec![
        merged(
            "secretproviderclasses",
            v1::SecretProviderClass::crd(),
            v1alpha1::SecretProviderClass::crd(),
        )?,
        merged(
            "secretproviderclasspodstatuses",
            v1::SecretProviderClassPodStatus::crd(),
            v1alpha1::SecretProviderClassPodStatus::crd(),
        )?,
    ])
}

/// The CRDs as YAML documents keyed by the file name they are committed under in `deploy/crds/`.
pub fn crd_files() -> Result<Vec<(String, String)>, CrdError> {
    crds()?
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let yaml = serde_norway::to_string(&crd)
                .map_err(|source| CrdError::Yaml { name, source })?;
            let header = "# Generated by `cargo run -p secrets-store-k8s --bin crdgen -- deploy/crds`; do not edit.\n---\n";
            Ok((format!("{GROUP}_{}.yaml", crd.spec.names.plural), format!("{header}{yaml}")))
        })
        .collect()
}

fn merged(
    crd: &'static str,
    storage: CustomResourceDefinition,
    deprecated: CustomResourceDefinition,
) -> Result<CustomResourceDefinition, CrdError> {
    let mut merged = kube::core::crd::merge_crds(vec![storage, deprecated], "v1")
        .map_err(|source| CrdError::Merge { crd, source })?;
    merged.spec.names.list_kind = Some(format!("{}List", merged.spec.names.kind));
    for version in &mut merged.spec.versions {
        // Upstream has no status subresource: `status` is written together with the object.
        version.subresources = None;
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            return Err(CrdError::NoSchema {
                crd,
                version: version.name.clone(),
            });
        };
        *schema = upstream_shaped(crd, schema)?;
    }
    Ok(merged)
}

/// Rewrites a derived root schema into the shape of the upstream one: the standard `apiVersion`,
/// `kind` and `metadata` properties, no `required`, no `title`, no `default`, no `nullable`.
fn upstream_shaped(
    crd: &'static str,
    schema: &JSONSchemaProps,
) -> Result<JSONSchemaProps, CrdError> {
    let mut value =
        serde_json::to_value(schema).map_err(|source| CrdError::Schema { crd, source })?;
    strip_keys(&mut value);
    if let Some(root) = value.as_object_mut() {
        root.remove("required");
        root.remove("title");
        let properties = root
            .entry("properties")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(properties) = properties.as_object_mut() {
            properties.insert(
                "apiVersion".into(),
                serde_json::json!({
                    "description": "Versioned schema of this representation of the object (group/version).",
                    "type": "string"
                }),
            );
            properties.insert(
                "kind".into(),
                serde_json::json!({
                    "description": "REST resource this object represents, in CamelCase.",
                    "type": "string"
                }),
            );
            properties.insert("metadata".into(), serde_json::json!({ "type": "object" }));
        }
    }
    serde_json::from_value(value).map_err(|source| CrdError::Schema { crd, source })
}

fn strip_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("default");
            map.remove("nullable");
            for (key, child) in map.iter_mut() {
                // The keys of `properties` are field names, not schema keywords.
                match (key.as_str(), child) {
                    ("properties", Value::Object(fields)) => {
                        fields.values_mut().for_each(strip_keys)
                    }
                    (_, child) => strip_keys(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_keys),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_class_without_spec_or_with_null_fields_still_reads() {
        let spc: v1::SecretProviderClass = serde_json::from_value(json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {"name": "a", "namespace": "ns"}
        }))
        .unwrap();
        assert_eq!(spc.spec, v1::SecretProviderClassSpec::default());
        assert!(spc.status.is_none());

        let spc: v1::SecretProviderClass = serde_json::from_value(json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": null
        }))
        .unwrap();
        assert_eq!(spc.spec, v1::SecretProviderClassSpec::default());
    }

    #[test]
    fn a_full_class_round_trips_with_upstream_field_names() {
        let value = json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {"name": "kv", "namespace": "ns"},
            "spec": {
                "provider": "azure",
                "parameters": {"keyvaultName": "v", "objects": "array:\n- |\n  objectName: s\n"},
                "secretObjects": [{
                    "secretName": "tls",
                    "type": "kubernetes.io/tls",
                    "labels": {"a": "b"},
                    "annotations": {"c": "d"},
                    "data": [{"objectName": "cert", "key": "tls.crt"}]
                }]
            },
            "status": {"byPod": [{"id": "uid-1", "namespace": "ns"}]}
        });
        let spc: v1::SecretProviderClass = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(spc.spec.provider, "azure");
        assert_eq!(spc.spec.secret_objects[0].type_, "kubernetes.io/tls");
        assert_eq!(spc.spec.secret_objects[0].data[0].key, "tls.crt");
        assert_eq!(serde_json::to_value(&spc).unwrap(), value);
    }

    #[test]
    fn pod_status_serialises_like_upstream() {
        let status = v1::SecretProviderClassPodStatus {
            metadata: Default::default(),
            spec: v1::SecretProviderClassPodStatusFields {},
            status: Some(SecretProviderClassPodStatusStatus {
                pod_name: "p".into(),
                secret_provider_class_name: "c".into(),
                mounted: false,
                target_path: "/t".into(),
                objects: vec![],
            }),
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({
                "apiVersion": "secrets-store.csi.x-k8s.io/v1",
                "kind": "SecretProviderClassPodStatus",
                "metadata": {},
                "status": {"podName": "p", "secretProviderClassName": "c", "targetPath": "/t"}
            })
        );
    }

    #[test]
    fn crds_have_upstream_names_versions_and_no_status_subresource() {
        let crds = crds().unwrap();
        let names: Vec<_> = crds
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "secretproviderclasses.secrets-store.csi.x-k8s.io",
                "secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io"
            ]
        );
        for crd in &crds {
            assert_eq!(crd.spec.scope, "Namespaced");
            assert_eq!(
                crd.spec.names.list_kind,
                Some(format!("{}List", crd.spec.names.kind))
            );
            assert!(crd.spec.names.short_names.is_none());
            let versions: Vec<_> = crd
                .spec
                .versions
                .iter()
                .map(|v| {
                    (
                        v.name.as_str(),
                        v.served,
                        v.storage,
                        v.deprecated,
                        v.subresources.is_some(),
                    )
                })
                .collect();
            assert_eq!(
                versions,
                [
                    ("v1", true, true, None, false),
                    ("v1alpha1", true, false, Some(true), false)
                ]
            );
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            let text = schema.to_string();
            assert!(
                !text.contains("nullable")
                    && !text.contains("\"default\"")
                    && !text.contains("required")
            );
            assert_eq!(crd.spec.versions[0].schema, crd.spec.versions[1].schema);
        }
    }
}
