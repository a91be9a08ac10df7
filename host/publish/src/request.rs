//! How a provider's mount request is assembled from a SecretProviderClass and a volume's context,
//! exactly as the upstream driver does it, so that providers see the same attributes either way.

use std::collections::BTreeMap;

use secrets_store_contract::{DEFAULT_FILE_MODE, MountRequest, ObjectVersion};

/// Volume context keys kubelet sets (with `podInfoOnMount: true` and `tokenRequests`).
pub const SECRET_PROVIDER_CLASS: &str = "secretProviderClass";
pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
pub const SERVICE_ACCOUNT_NAME: &str = "csi.storage.k8s.io/serviceAccount.name";
pub use secrets_store_contract::SERVICE_ACCOUNT_TOKENS;
pub const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";

/// Build the request: the class's parameters, then the volume context on top (it wins), then the
/// service-account tokens — from the request's secrets when kubelet put them there, otherwise from
/// the volume context.
pub fn mount_request(
    parameters: &BTreeMap<String, String>,
    volume_context: &BTreeMap<String, String>,
    request_secrets: &BTreeMap<String, String>,
    node_publish_secrets: BTreeMap<String, String>,
    current_object_versions: Vec<ObjectVersion>,
) -> MountRequest {
    let mut attributes = parameters.clone();
    for (key, value) in volume_context {
        attributes.insert(key.clone(), value.clone());
    }
    if let Some(tokens) = request_secrets
        .get(SERVICE_ACCOUNT_TOKENS)
        .or_else(|| volume_context.get(SERVICE_ACCOUNT_TOKENS))
    {
        attributes.insert(SERVICE_ACCOUNT_TOKENS.to_string(), tokens.clone());
    }
    MountRequest {
        attributes,
        secrets: node_publish_secrets,
        default_file_mode: DEFAULT_FILE_MODE,
        current_object_versions,
    }
}

/// The `csi.storage.k8s.io/serviceAccount.tokens` JSON for the given audience → token pairs.
pub fn tokens_json(tokens: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .map(|(audience, token)| {
            (
                audience.clone(),
                serde_json::json!({ "token": token, "expirationTimestamp": "" }),
            )
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn volume_context_wins_and_tokens_prefer_the_request_secrets() {
        let parameters = map(&[("keyvaultName", "kv"), (POD_NAME, "spoofed")]);
        let context = map(&[
            (POD_NAME, "real-pod"),
            (SERVICE_ACCOUNT_TOKENS, "from-context"),
        ]);
        let request = mount_request(
            &parameters,
            &context,
            &BTreeMap::new(),
            BTreeMap::new(),
            vec![],
        );
        assert_eq!(request.attributes[POD_NAME], "real-pod");
        assert_eq!(request.attributes["keyvaultName"], "kv");
        assert_eq!(request.attributes[SERVICE_ACCOUNT_TOKENS], "from-context");
        assert_eq!(request.default_file_mode, 0o644);
        let request = mount_request(
            &parameters,
            &context,
            &map(&[(SERVICE_ACCOUNT_TOKENS, "from-secrets")]),
            BTreeMap::new(),
            vec![],
        );
        assert_eq!(request.attributes[SERVICE_ACCOUNT_TOKENS], "from-secrets");
    }

    #[test]
    fn tokens_json_shape() {
        let json = tokens_json(&[("api://AzureADTokenExchange".into(), "t".into())]);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["api://AzureADTokenExchange"]["token"], "t");
    }
}
