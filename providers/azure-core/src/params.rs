//! SecretProviderClass parameters: names, defaults and validation of the upstream Azure provider
//! (`pkg/provider/types`, `pkg/provider/validate.go`, `pkg/auth`), plus the safety checks upstream
//! lacks (file names that would collide or escape, unsupported options that would otherwise be
//! silently ignored). Every error is `InvalidParameters` and names the parameter or object.

use std::collections::BTreeMap;
use std::fmt;

use secrets_store_contract::{ErrorKind, ProviderError, SERVICE_ACCOUNT_TOKENS};
use serde::Deserialize;

use crate::HostFileError;
use crate::cloud::{self, CloudEnvironment, CloudSelection};
use crate::yaml::{self, Node, Scalar};

pub const KEYVAULT_NAME: &str = "keyvaultName";
pub const TENANT_ID: &str = "tenantID";
pub const TENANT_ID_DEPRECATED: &str = "tenantId";
pub const CLOUD_NAME: &str = "cloudName";
pub const CLOUD_ENV_FILE_NAME: &str = "cloudEnvFileName";
pub const USE_POD_IDENTITY: &str = "usePodIdentity";
pub const USE_VM_MANAGED_IDENTITY: &str = "useVMManagedIdentity";
pub const USER_ASSIGNED_IDENTITY_ID: &str = "userAssignedIdentityID";
pub const CLIENT_ID: &str = "clientID";
pub const USE_POD_SERVICE_ACCOUNT_ANNOTATION: &str = "usePodServiceAccountAnnotation";
pub const OBJECTS: &str = "objects";
pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
pub const SERVICE_ACCOUNT_NAME: &str = "csi.storage.k8s.io/serviceAccount.name";

/// The audience of the projected service-account token exchanged for an AAD token.
pub const WORKLOAD_IDENTITY_AUDIENCE: &str = "api://AzureADTokenExchange";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    Secret,
    Key,
    Cert,
}

impl ObjectType {
    /// The spelling in SecretProviderClasses and object ids (`secret`, `key`, `cert`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Secret => "secret",
            ObjectType::Key => "key",
            ObjectType::Cert => "cert",
        }
    }

    /// The Key Vault REST collection (`secrets`, `keys`, `certificates`).
    pub fn collection(self) -> &'static str {
        match self {
            ObjectType::Secret => "secrets",
            ObjectType::Key => "keys",
            ObjectType::Cert => "certificates",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectEncoding {
    Utf8,
    Base64,
    Hex,
}

/// One entry of `objects`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultObject {
    pub name: String,
    /// The `objectAlias` as written (empty when absent).
    pub alias: String,
    pub object_type: ObjectType,
    /// Requested version; empty for the current one (`latest` is treated as empty).
    pub version: String,
    /// `objectVersionHistory`; values ≤ 1 mean a single version.
    pub version_history: i32,
    /// `objectFormat` is `pfx` (any case): certificate-backed secrets are written as stored.
    pub pfx: bool,
    pub encoding: ObjectEncoding,
    /// `filePermission`, parsed from octal.
    pub file_permission: Option<u32>,
    /// The relative path of the file (or, with a version history, of the directory).
    pub file_name: String,
}

impl KeyVaultObject {
    /// `<objectType>/<objectName>`, the id reported in object versions and used in errors.
    pub fn uid(&self) -> String {
        format!("{}/{}", self.object_type.as_str(), self.name)
    }

    pub fn history(&self) -> bool {
        self.version_history > 1
    }
}

/// How the provider authenticates to AAD.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// aad-pod-identity's NMI on the node.
    PodIdentity,
    /// The node's managed identity through IMDS; `None` means the system-assigned identity.
    VmManagedIdentity { client_id: Option<String> },
    /// Azure AD workload identity: the pod's service-account token as a client assertion.
    WorkloadIdentity {
        client_id: String,
        assertion: String,
    },
    /// Client id and secret from the nodePublishSecretRef.
    ServicePrincipal {
        client_id: String,
        client_secret: String,
    },
}

// Client secrets and assertions must never reach logs.
impl fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMode::PodIdentity => f.write_str("PodIdentity"),
            AuthMode::VmManagedIdentity { client_id } => f
                .debug_struct("VmManagedIdentity")
                .field("client_id", client_id)
                .finish(),
            AuthMode::WorkloadIdentity { client_id, .. } => f
                .debug_struct("WorkloadIdentity")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            AuthMode::ServicePrincipal { client_id, .. } => f
                .debug_struct("ServicePrincipal")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
        }
    }
}

impl AuthMode {
    pub fn describe(&self) -> &'static str {
        match self {
            AuthMode::PodIdentity => "pod identity",
            AuthMode::VmManagedIdentity { client_id: Some(_) } => "user-assigned managed identity",
            AuthMode::VmManagedIdentity { client_id: None } => "system-assigned managed identity",
            AuthMode::WorkloadIdentity { .. } => "workload identity",
            AuthMode::ServicePrincipal { .. } => "service principal",
        }
    }
}

/// A validated mount configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    pub keyvault_name: String,
    pub tenant_id: String,
    pub cloud: CloudEnvironment,
    pub auth: AuthMode,
    pub pod_name: String,
    pub pod_namespace: String,
    pub service_account_name: String,
    pub objects: Vec<KeyVaultObject>,
}

impl MountConfig {
    /// `https://{keyvaultName}.{suffix}` (no trailing slash).
    pub fn vault_url(&self) -> String {
        format!(
            "https://{}.{}",
            self.keyvault_name, self.cloud.key_vault_dns_suffix
        )
    }

    pub fn vault_host(&self) -> String {
        format!("{}.{}", self.keyvault_name, self.cloud.key_vault_dns_suffix).to_ascii_lowercase()
    }
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError {
        kind: ErrorKind::InvalidParameters,
        object: None,
        message: message.into(),
    }
}

fn invalid_object(object: Option<String>, message: impl Into<String>) -> ProviderError {
    ProviderError {
        kind: ErrorKind::InvalidParameters,
        object,
        message: message.into(),
    }
}

fn get<'a>(attributes: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    attributes.get(key).map(|v| v.trim()).unwrap_or_default()
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn bool_parameter(attributes: &BTreeMap<String, String>, key: &str) -> Result<bool, ProviderError> {
    let value = get(attributes, key);
    if value.is_empty() {
        return Ok(false);
    }
    parse_bool(value).ok_or_else(|| {
        invalid(format!(
            "failed to parse {key} flag: {value:?} is not a boolean (use true or false)"
        ))
    })
}

/// Reads a host file named by the user (the custom cloud environment).
pub type ReadHostFile<'a> = &'a dyn Fn(&str) -> Result<Vec<u8>, HostFileError>;

/// Parses and validates the mount parameters and the nodePublishSecretRef data.
pub fn parse_parameters(
    attributes: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
    read_host_file: ReadHostFile<'_>,
) -> Result<MountConfig, ProviderError> {
    let identity = identity_choice(attributes)?;
    let keyvault_name = get(attributes, KEYVAULT_NAME).to_string();
    if keyvault_name.is_empty() {
        return Err(invalid("keyvaultName is not set"));
    }
    let tenant_id = match get(attributes, TENANT_ID) {
        "" => get(attributes, TENANT_ID_DEPRECATED),
        value => value,
    }
    .to_string();
    if tenant_id.is_empty() {
        return Err(invalid("tenantID is not set"));
    }
    let cloud = cloud_environment(attributes, read_host_file)?;
    let pod_name = get(attributes, POD_NAME).to_string();
    let pod_namespace = get(attributes, POD_NAMESPACE).to_string();
    let service_account_name = get(attributes, SERVICE_ACCOUNT_NAME).to_string();
    let auth = auth_mode(identity, attributes, secrets, &tenant_id)?;
    let objects = parse_objects(
        attributes
            .get(OBJECTS)
            .map(String::as_str)
            .unwrap_or_default(),
    )?;
    validate_keyvault_name(&keyvault_name)?;

    Ok(MountConfig {
        keyvault_name,
        tenant_id,
        cloud,
        auth,
        pod_name,
        pod_namespace,
        service_account_name,
        objects,
    })
}

/// Which identity the flags ask for, before the details are read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Identity {
    Pod,
    VmManaged,
    /// Workload identity (with `clientID`) or a service principal (nodePublishSecretRef).
    Federated,
}

/// The identity flags, refusing the unsupported and contradictory combinations.
fn identity_choice(attributes: &BTreeMap<String, String>) -> Result<Identity, ProviderError> {
    let use_pod_identity = bool_parameter(attributes, USE_POD_IDENTITY)?;
    let use_vm_managed_identity = bool_parameter(attributes, USE_VM_MANAGED_IDENTITY)?;
    if bool_parameter(attributes, USE_POD_SERVICE_ACCOUNT_ANNOTATION)? {
        return Err(invalid(format!(
            "{USE_POD_SERVICE_ACCOUNT_ANNOTATION} is not supported: the sandboxed provider cannot read service accounts; set {CLIENT_ID} instead"
        )));
    }
    match (use_pod_identity, use_vm_managed_identity) {
        (true, true) => Err(invalid(format!(
            "cannot enable both pod identity and user-assigned managed identity ({USE_POD_IDENTITY} and {USE_VM_MANAGED_IDENTITY} are both true)"
        ))),
        (true, false) => Ok(Identity::Pod),
        (false, true) => Ok(Identity::VmManaged),
        (false, false) => Ok(Identity::Federated),
    }
}

/// The cloud `cloudName` names, or the custom one read from `cloudEnvFileName` (a host file).
fn cloud_environment(
    attributes: &BTreeMap<String, String>,
    read_host_file: ReadHostFile<'_>,
) -> Result<CloudEnvironment, ProviderError> {
    let cloud_name = get(attributes, CLOUD_NAME);
    match cloud::select(cloud_name) {
        Some(CloudSelection::Named(environment)) => Ok(environment),
        Some(CloudSelection::FromFile) => {
            let path = get(attributes, CLOUD_ENV_FILE_NAME);
            if path.is_empty() {
                return Err(invalid(format!(
                    "cloudName {cloud_name} requires {CLOUD_ENV_FILE_NAME}, the path of the cloud environment JSON file"
                )));
            }
            let bytes = read_host_file(path).map_err(|reason| {
                invalid(format!(
                    "{CLOUD_ENV_FILE_NAME} {path:?} could not be read ({reason}); the operator must list this path in the azure provider's host-files policy"
                ))
            })?;
            cloud::parse_environment_file(&bytes)
                .map_err(|e| invalid(format!("{CLOUD_ENV_FILE_NAME} {path:?} {e}")))
        }
        None => Err(invalid(format!(
            "cloudName {cloud_name:?} is not valid: use AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud, AzureGermanCloud or AzureStackCloud"
        ))),
    }
}

/// The credentials of the chosen identity.
fn auth_mode(
    identity: Identity,
    attributes: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
    tenant_id: &str,
) -> Result<AuthMode, ProviderError> {
    match identity {
        Identity::Pod => {
            if get(attributes, POD_NAME).is_empty() || get(attributes, POD_NAMESPACE).is_empty() {
                return Err(invalid(
                    "pod information is not available. deploy a CSIDriver object to set podInfoOnMount: true",
                ));
            }
            Ok(AuthMode::PodIdentity)
        }
        Identity::VmManaged => {
            let id = get(attributes, USER_ASSIGNED_IDENTITY_ID);
            Ok(AuthMode::VmManagedIdentity {
                client_id: (!id.is_empty()).then(|| id.to_string()),
            })
        }
        Identity::Federated => {
            let client_id = get(attributes, CLIENT_ID);
            if !client_id.is_empty() {
                let assertion = workload_identity_token(get(attributes, SERVICE_ACCOUNT_TOKENS))?;
                validate_tenant(tenant_id)?;
                Ok(AuthMode::WorkloadIdentity {
                    client_id: client_id.to_string(),
                    assertion,
                })
            } else {
                let (client_id, client_secret) = service_principal(secrets)?;
                validate_tenant(tenant_id)?;
                Ok(AuthMode::ServicePrincipal {
                    client_id,
                    client_secret,
                })
            }
        }
    }
}

/// Key Vault names: 3–24 characters of `[-A-Za-z0-9]`.
pub fn validate_keyvault_name(name: &str) -> Result<(), ProviderError> {
    if name.len() < 3 || name.len() > 24 {
        return Err(invalid(format!(
            "Invalid vault name: {name:?}, must be between 3 and 24 chars"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(invalid(format!(
            "Invalid vault name: {name:?}, must match [-a-zA-Z0-9]{{3,24}}"
        )));
    }
    Ok(())
}

/// The tenant goes into the AAD token URL; azidentity accepts `[0-9a-zA-Z-.]+`.
fn validate_tenant(tenant: &str) -> Result<(), ProviderError> {
    if tenant
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid {TENANT_ID} {tenant:?}: only letters, digits, '-' and '.' are allowed"
        )))
    }
}

fn service_principal(
    secrets: &BTreeMap<String, String>,
) -> Result<(String, String), ProviderError> {
    if secrets.is_empty() {
        return Err(invalid(
            "failed to get credentials, nodePublishSecretRef secret is not set (no identity mode is enabled: set usePodIdentity, useVMManagedIdentity or clientID, or reference a secret with clientid and clientsecret)",
        ));
    }
    let mut client_id = "";
    let mut client_secret = "";
    for (key, value) in secrets {
        match key.to_ascii_lowercase().as_str() {
            "clientid" => client_id = value,
            "clientsecret" => client_secret = value,
            _ => {}
        }
    }
    if client_id.is_empty() {
        return Err(invalid(
            "could not find clientid in the nodePublishSecretRef secret",
        ));
    }
    if client_secret.is_empty() {
        return Err(invalid(
            "could not find clientsecret in the nodePublishSecretRef secret",
        ));
    }
    Ok((client_id.to_string(), client_secret.to_string()))
}

#[derive(Deserialize)]
struct ServiceAccountToken {
    #[serde(default)]
    token: String,
}

/// The service-account token for [`WORKLOAD_IDENTITY_AUDIENCE`] from the driver's
/// `csi.storage.k8s.io/serviceAccount.tokens` JSON (`{"<audience>":{"token":…,"expirationTimestamp":…}}`).
pub fn workload_identity_token(tokens_json: &str) -> Result<String, ProviderError> {
    if tokens_json.is_empty() {
        return Err(invalid(format!(
            "failed to parse workload identity tokens: service account tokens not found ({CLIENT_ID} is set, so the CSIDriver must request a token for audience {WORKLOAD_IDENTITY_AUDIENCE} in tokenRequests)"
        )));
    }
    let tokens: BTreeMap<String, ServiceAccountToken> =
        serde_json::from_str(tokens_json).map_err(|e| {
            invalid(format!(
                "failed to unmarshal service account tokens: {}",
                crate::encoding::json_error(&e)
            ))
        })?;
    match tokens.get(WORKLOAD_IDENTITY_AUDIENCE) {
        Some(entry) if !entry.token.is_empty() => Ok(entry.token.clone()),
        _ => Err(invalid(format!(
            "failed to parse workload identity tokens: token for audience {WORKLOAD_IDENTITY_AUDIENCE} not found (add it to the CSIDriver's tokenRequests)"
        ))),
    }
}

// -----------------------------------------------------------------------------------------------
// objects

const FIELD_NAMES: [&str; 8] = [
    "objectName",
    "objectAlias",
    "objectVersion",
    "objectVersionHistory",
    "objectType",
    "objectFormat",
    "objectEncoding",
    "filePermission",
];

/// Parses the `objects` parameter: YAML `array:` of YAML documents, one per object, with the field
/// names, trimming and validation of the upstream provider. An empty array is valid (nothing to
/// mount); an empty parameter is not.
pub fn parse_objects(text: &str) -> Result<Vec<KeyVaultObject>, ProviderError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("objects is not set"));
    }
    let root =
        yaml::parse(text).map_err(|e| invalid(format!("failed to yaml unmarshal objects: {e}")))?;
    let items = match root {
        None => Vec::new(),
        Some(Node::Scalar(s)) if s.is_null() => Vec::new(),
        Some(Node::Mapping(pairs)) => array_items(pairs)?,
        Some(other) => {
            return Err(invalid(format!(
                "failed to yaml unmarshal objects: cannot unmarshal {} into a mapping with an `array` list",
                other.kind()
            )));
        }
    };
    let mut objects = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        objects.push(parse_object(index, item)?);
    }
    check_file_names(&objects)?;
    Ok(objects)
}

fn array_items(pairs: Vec<(Node, Node)>) -> Result<Vec<String>, ProviderError> {
    let mut array: Option<Node> = None;
    for (key, value) in pairs {
        if matches!(&key, Node::Scalar(k) if k.value == "array") {
            if array.is_some() {
                return Err(invalid(
                    "failed to yaml unmarshal objects: mapping key \"array\" already defined",
                ));
            }
            array = Some(value);
        }
    }
    let items = match array {
        None => return Ok(Vec::new()),
        Some(Node::Scalar(s)) if s.is_null() => return Ok(Vec::new()),
        Some(Node::Sequence(items)) => items,
        Some(other) => {
            return Err(invalid(format!(
                "failed to yaml unmarshal objects: cannot unmarshal {} into the `array` list",
                other.kind()
            )));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Node::Scalar(s) if s.is_null() => Ok(String::new()),
            Node::Scalar(s) => Ok(s.value),
            other => Err(invalid(format!(
                "failed to yaml unmarshal objects: array item {index} is a {} but must be a string holding the object's YAML (write `- |` before the object)",
                other.kind()
            ))),
        })
        .collect()
}

fn scalar_string(object: &str, field: &str, node: &Node) -> Result<String, ProviderError> {
    match node {
        Node::Scalar(s) if s.is_null() => Ok(String::new()),
        Node::Scalar(s) if s.tag.as_deref() == Some("tag:yaml.org,2002:binary") => {
            Err(invalid_object(
                object_label(object),
                format!("{field}: !!binary values are not supported"),
            ))
        }
        Node::Scalar(s) => Ok(s.value.trim().to_string()),
        other => Err(invalid_object(
            object_label(object),
            format!("{field} must be a string, not {}", other.kind()),
        )),
    }
}

fn object_label(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_string())
}

/// One object of `objects`, checked field by field with upstream's rules.
fn parse_object(index: usize, text: &str) -> Result<KeyVaultObject, ProviderError> {
    let fields = ObjectFields::parse(index, text)?;
    let name = fields.object_name()?;
    let object_type = fields.object_type()?;
    let pfx = fields.object_format(object_type)?;
    let encoding = fields.object_encoding(object_type)?;
    let version = fields.object_version()?;
    let version_history = match fields.fields.get("objectVersionHistory") {
        None => 0,
        Some(node) => {
            parse_history(node).map_err(|e| fields.err(format!("objectVersionHistory {e}")))?
        }
    };
    let file_permission = fields.file_permission()?;
    let alias = fields.text("objectAlias")?;
    let shown = if alias.is_empty() { &name } else { &alias };
    let file_name = normalize_file_name(shown)
        .map_err(|reason| fields.err(format!("file name {shown:?} {reason}")))?;

    Ok(KeyVaultObject {
        name,
        alias,
        object_type,
        version,
        version_history,
        pfx,
        encoding,
        file_permission,
        file_name,
    })
}

/// The known fields of one object's YAML, with the object's name picked first so that every
/// later error can name the object.
struct ObjectFields {
    name: String,
    /// `"name"`, or `at index N` for an object without a name.
    label: String,
    fields: BTreeMap<&'static str, Node>,
}

impl ObjectFields {
    /// Reads the YAML mapping: duplicate known keys and `objectNotAfter` are errors, unknown keys
    /// are ignored (as yaml.v3 does).
    fn parse(index: usize, text: &str) -> Result<Self, ProviderError> {
        let unmarshal = |detail: String| {
            invalid(format!(
                "unmarshal failed for keyVaultObjects at index {index}: {detail}"
            ))
        };
        let pairs = match yaml::parse(text).map_err(|e| unmarshal(e.to_string()))? {
            None => Vec::new(),
            Some(Node::Scalar(s)) if s.is_null() => Vec::new(),
            Some(Node::Mapping(pairs)) => pairs,
            Some(other) => {
                return Err(unmarshal(format!(
                    "cannot unmarshal {} into an object",
                    other.kind()
                )));
            }
        };
        let name = pairs
            .iter()
            .find(|(k, _)| matches!(k, Node::Scalar(s) if s.value == "objectName"))
            .and_then(|(_, v)| match v {
                Node::Scalar(s) if !s.is_null() => Some(s.value.trim().to_string()),
                _ => None,
            })
            .unwrap_or_default();
        let label = if name.is_empty() {
            format!("at index {index}")
        } else {
            format!("{name:?}")
        };
        let mut object = ObjectFields {
            name,
            label,
            fields: BTreeMap::new(),
        };
        let mut not_after = false;
        for (key, value) in pairs {
            let Node::Scalar(Scalar { value: key, .. }) = key else {
                return Err(object.err("object keys must be strings".to_string()));
            };
            if key == "objectNotAfter" {
                not_after = !matches!(&value, Node::Scalar(s) if s.is_null());
                continue;
            }
            if let Some(field) = FIELD_NAMES.iter().find(|f| **f == key)
                && object.fields.insert(field, value).is_some()
            {
                return Err(object.err(format!("mapping key {key:?} already defined")));
            }
        }
        if not_after {
            return Err(object.err(
                "objectNotAfter is not supported by this provider; pin objectVersion instead"
                    .to_string(),
            ));
        }
        Ok(object)
    }

    /// An error about this object.
    fn err(&self, message: String) -> ProviderError {
        invalid_object(
            object_label(&self.name),
            format!("object {}: {message}", self.label),
        )
    }

    /// A string field, trimmed; empty when absent or null.
    fn text(&self, field: &str) -> Result<String, ProviderError> {
        match self.fields.get(field) {
            None => Ok(String::new()),
            Some(node) => scalar_string(&self.name, field, node).map_err(|e| self.err(e.message)),
        }
    }

    /// `objectName`: set, a string, and a Key Vault object name.
    fn object_name(&self) -> Result<String, ProviderError> {
        let name = &self.name;
        if name.is_empty() {
            return Err(self.err("objectName is not set".to_string()));
        }
        self.text("objectName")?;
        if name.len() > 127 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(self.err(format!(
                "objectName {name:?} is not a Key Vault object name (1-127 letters, digits and '-')"
            )));
        }
        Ok(name.clone())
    }

    fn object_type(&self) -> Result<ObjectType, ProviderError> {
        match self.text("objectType")?.as_str() {
            "secret" => Ok(ObjectType::Secret),
            "key" => Ok(ObjectType::Key),
            "cert" => Ok(ObjectType::Cert),
            other => Err(self.err(format!(
                "objectType {other:?} is not one of secret, key, cert"
            ))),
        }
    }

    /// `objectFormat`: whether the object is written as the PFX it is stored as.
    fn object_format(&self, object_type: ObjectType) -> Result<bool, ProviderError> {
        let format = self.text("objectFormat")?;
        if !format.is_empty()
            && !format.eq_ignore_ascii_case("pem")
            && !format.eq_ignore_ascii_case("pfx")
        {
            return Err(self.err(format!("objectFormat {format:?} is not one of pem, pfx")));
        }
        // Upstream compares the lower-case spelling here; `PFX` on a key or cert is accepted and
        // ignored.
        if format == "pfx" && object_type != ObjectType::Secret {
            return Err(
                self.err("objectFormat pfx is only supported for objectType secret".to_string())
            );
        }
        Ok(format.eq_ignore_ascii_case("pfx"))
    }

    fn object_encoding(&self, object_type: ObjectType) -> Result<ObjectEncoding, ProviderError> {
        let text = self.text("objectEncoding")?;
        if text.is_empty() {
            Ok(ObjectEncoding::Utf8)
        } else if object_type != ObjectType::Secret {
            Err(self.err("objectEncoding is only supported for objectType secret".to_string()))
        } else if text.eq_ignore_ascii_case("utf-8") {
            Ok(ObjectEncoding::Utf8)
        } else if text.eq_ignore_ascii_case("base64") {
            Ok(ObjectEncoding::Base64)
        } else if text.eq_ignore_ascii_case("hex") {
            Ok(ObjectEncoding::Hex)
        } else {
            Err(self.err(format!(
                "objectEncoding {text:?} is not one of utf-8, base64, hex"
            )))
        }
    }

    /// `objectVersion`: empty for the latest, else one clean URL path segment.
    fn object_version(&self) -> Result<String, ProviderError> {
        let mut version = self.text("objectVersion")?;
        if version == "latest" {
            version.clear();
        }
        if version.contains(['/', '?', '#', '%']) || version.chars().any(char::is_control) {
            return Err(self.err(format!(
                "objectVersion {version:?} is not a Key Vault version"
            )));
        }
        Ok(version)
    }

    fn file_permission(&self) -> Result<Option<u32>, ProviderError> {
        let text = self.text("filePermission")?;
        if text.is_empty() {
            return Ok(None);
        }
        parse_permission(&text).map(Some).ok_or_else(|| {
            self.err(format!(
                "filePermission {text:?} must be an octal file mode between 0000 and 0777"
            ))
        })
    }
}

/// Why `objectVersionHistory` is not an `int32` (the messages follow the field name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum HistoryError {
    #[error("must be an integer, not {0}")]
    NotScalar(&'static str),
    #[error("{0:?} must be an integer, not a quoted string")]
    Quoted(String),
    #[error("{0:?} is not an integer")]
    NotInteger(String),
    #[error("{0:?} overflows a 32-bit integer")]
    Overflow(String),
}

/// `objectVersionHistory` as yaml.v3 decodes an `int32`: plain integers in any base Go accepts,
/// underscores ignored, floats truncated, null as zero; quoted strings are an error.
fn parse_history(node: &Node) -> Result<i32, HistoryError> {
    let Node::Scalar(scalar) = node else {
        return Err(HistoryError::NotScalar(node.kind()));
    };
    if scalar.is_null() {
        return Ok(0);
    }
    let core_int = scalar.tag.as_deref() == Some("tag:yaml.org,2002:int");
    if !scalar.plain && !core_int {
        return Err(HistoryError::Quoted(scalar.value.clone()));
    }
    let text = scalar.value.trim().replace('_', "");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let parsed = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        i64::from_str_radix(oct, 8).ok()
    } else if let Some(bin) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        i64::from_str_radix(bin, 2).ok()
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        i64::from_str_radix(&digits[1..], 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()
    } else if is_yaml_float(digits) {
        digits
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && f.abs() < 9.2e18)
            .map(|f| f.trunc() as i64)
    } else {
        None
    };
    let value = parsed.ok_or_else(|| HistoryError::NotInteger(scalar.value.clone()))?;
    let value = if negative { -value } else { value };
    i32::try_from(value).map_err(|_| HistoryError::Overflow(scalar.value.clone()))
}

fn is_yaml_float(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (!int.is_empty() || !frac.is_empty())
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

/// Go's `strconv.ParseInt(s, 8, 32)`, limited to permission bits.
fn parse_permission(text: &str) -> Option<u32> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let value = u32::from_str_radix(digits, 8).ok()?;
    (value <= 0o777).then_some(value)
}

/// Validates a file name with upstream's rules (not empty, relative, no `..`) and the writer's
/// (no NUL, at most 4096 bytes, elements at most 255 bytes), and returns it cleaned (`./a//b/` →
/// `a/b`), as Go's `filepath.Join` cleaned it upstream.
pub fn normalize_file_name(name: &str) -> Result<String, &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.starts_with('/') {
        return Err("must be a relative path");
    }
    if name.contains("..") {
        return Err("must not contain '..'");
    }
    if name.contains('\0') {
        return Err("must not contain NUL");
    }
    let elements: Vec<&str> = name
        .split('/')
        .filter(|e| !e.is_empty() && *e != ".")
        .collect();
    if elements.is_empty() {
        return Err("must name a file below the mount");
    }
    if elements.iter().any(|e| e.len() > 255) {
        return Err("has an element longer than 255 bytes");
    }
    let cleaned = elements.join("/");
    if cleaned.len() > 4000 {
        return Err("is longer than 4000 bytes");
    }
    Ok(cleaned)
}

/// Two objects must not write the same file, nor a file where another needs a directory (an
/// object with a version history writes `<name>/0`, `<name>/1`, …).
fn check_file_names(objects: &[KeyVaultObject]) -> Result<(), ProviderError> {
    let below = |path: &str, dir: &str| {
        path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
    };
    for (i, object) in objects.iter().enumerate() {
        for other in &objects[..i] {
            let (mine, theirs) = (object.file_name.as_str(), other.file_name.as_str());
            let why = if mine == theirs {
                "is already the file of"
            } else if below(theirs, mine) {
                if object.history() {
                    "is its version history directory, which would hold the file of"
                } else {
                    "would be a directory holding the file of"
                }
            } else if below(mine, theirs) {
                if other.history() {
                    "would be inside the version history directory of"
                } else {
                    "would need a directory where there is the file of"
                }
            } else {
                continue;
            };
            return Err(invalid_object(
                Some(object.name.clone()),
                format!(
                    "object {:?}: file name {mine:?} {why} object {:?} ({theirs:?})",
                    object.name, other.name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn objects(yaml: &str) -> Result<Vec<KeyVaultObject>, ProviderError> {
        parse_objects(yaml)
    }

    #[test]
    fn history_parsing_follows_yaml_v3() {
        let node = |text: &str| yaml::parse(&format!("v: {text}")).unwrap().unwrap();
        let value = |text: &str| match node(text) {
            Node::Mapping(pairs) => parse_history(&pairs[0].1),
            _ => unreachable!(),
        };
        assert_eq!(value("5"), Ok(5));
        assert_eq!(value("0x10"), Ok(16));
        assert_eq!(value("010"), Ok(8));
        assert_eq!(value("0o10"), Ok(8));
        assert_eq!(value("1_000"), Ok(1000));
        assert_eq!(value("2.9"), Ok(2));
        assert_eq!(value("-3"), Ok(-3));
        assert_eq!(value("~"), Ok(0));
        assert!(value("'5'").is_err());
        assert!(value("five").is_err());
        assert!(value("3000000000").is_err());
    }

    #[test]
    fn permissions_are_octal() {
        assert_eq!(parse_permission("0644"), Some(0o644));
        assert_eq!(parse_permission("400"), Some(0o400));
        assert_eq!(parse_permission("0o644"), None);
        assert_eq!(parse_permission("0888"), None);
        assert_eq!(parse_permission("1777"), None);
        assert_eq!(parse_permission("-1"), None);
    }

    #[test]
    fn file_names_are_cleaned_and_checked() {
        assert_eq!(normalize_file_name("./a//b/"), Ok("a/b".to_string()));
        assert!(normalize_file_name("/etc/passwd").is_err());
        assert!(normalize_file_name("a/../../b").is_err());
        assert!(normalize_file_name("a..b").is_err());
        assert!(normalize_file_name(".").is_err());
        assert!(normalize_file_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn conflicting_file_names_are_rejected() {
        let two = "array:\n  - |\n    objectName: a\n    objectType: secret\n  - |\n    objectName: b\n    objectAlias: a\n    objectType: secret\n";
        let e = objects(two).unwrap_err();
        assert!(e.message.contains("is already"), "{e}");
        let nested = "array:\n  - |\n    objectName: a\n    objectType: secret\n  - |\n    objectName: b\n    objectAlias: a/b\n    objectType: secret\n";
        assert!(objects(nested).is_err());
        let history = "array:\n  - |\n    objectName: a\n    objectType: secret\n    objectVersionHistory: 3\n  - |\n    objectName: b\n    objectAlias: a/0\n    objectType: secret\n";
        let e = objects(history).unwrap_err();
        assert!(e.message.contains("version history directory"), "{e}");
        // Same secret under two aliases is fine (and common).
        let aliases = "array:\n  - |\n    objectName: a\n    objectType: secret\n  - |\n    objectName: a\n    objectAlias: b\n    objectType: secret\n";
        assert_eq!(objects(aliases).unwrap().len(), 2);
    }
}
