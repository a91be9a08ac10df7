//! The emulator's contents: vaults with their secrets, keys and certificates (every version kept),
//! and the identity directory (app registrations, federated credentials, managed identities, pod
//! bindings). Both the library API and the HTTP handlers change it through these methods.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Error;
use crate::certs::{self, CONTENT_TYPE_PEM, CONTENT_TYPE_PKCS12, ParsedCertificate};
use crate::cloud::CloudProfile;
use crate::keys::PublicKey;
use crate::util::{b64std, new_version, stable_uuid, valid_object_name, x5t};

/// Object collections of a vault, as they appear in URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Secret,
    Key,
    Certificate,
}

impl ObjectKind {
    pub fn collection(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secrets",
            ObjectKind::Key => "keys",
            ObjectKind::Certificate => "certificates",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secret",
            ObjectKind::Key => "key",
            ObjectKind::Certificate => "certificate",
        }
    }
}

/// Attributes shared by all object versions (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
}

impl Attrs {
    pub fn new(now: i64, enabled: bool) -> Self {
        Self {
            enabled,
            nbf: None,
            exp: None,
            created: now,
            updated: now,
        }
    }

    /// The `attributes` object as the service writes it.
    pub fn to_json(&self, extra: &[(&str, Value)]) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("enabled".into(), json!(self.enabled));
        if let Some(nbf) = self.nbf {
            m.insert("nbf".into(), json!(nbf));
        }
        if let Some(exp) = self.exp {
            m.insert("exp".into(), json!(exp));
        }
        m.insert("created".into(), json!(self.created));
        m.insert("updated".into(), json!(self.updated));
        m.insert("recoveryLevel".into(), json!("Recoverable+Purgeable"));
        m.insert("recoverableDays".into(), json!(90));
        for (k, v) in extra {
            m.insert((*k).into(), v.clone());
        }
        Value::Object(m)
    }
}

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub struct SecretVersion {
    pub version: String,
    pub value: String,
    pub content_type: Option<String>,
    pub attrs: Attrs,
    pub tags: Option<Tags>,
    /// Backs a certificate: `managed: true` and a `kid`.
    pub managed: bool,
}

#[derive(Debug, Clone)]
pub struct KeyVersion {
    pub version: String,
    pub public: PublicKey,
    pub hsm: bool,
    pub key_ops: Vec<String>,
    pub attrs: Attrs,
    pub tags: Option<Tags>,
    pub managed: bool,
}

#[derive(Debug, Clone)]
pub struct CertVersion {
    pub version: String,
    pub der: Vec<u8>,
    pub x5t: String,
    pub attrs: Attrs,
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone)]
pub struct Versions<V> {
    /// The name as first created (names are case-insensitive).
    pub name: String,
    pub versions: Vec<V>,
}

pub trait HasVersion {
    fn version(&self) -> &str;
    fn attrs_mut(&mut self) -> &mut Attrs;
}

macro_rules! has_version {
    ($t:ty) => {
        impl HasVersion for $t {
            fn version(&self) -> &str {
                &self.version
            }
            fn attrs_mut(&mut self) -> &mut Attrs {
                &mut self.attrs
            }
        }
    };
}
has_version!(SecretVersion);
has_version!(KeyVersion);
has_version!(CertVersion);

impl<V: HasVersion> Versions<V> {
    pub fn latest(&self) -> Option<&V> {
        self.versions.last()
    }

    pub fn get(&self, version: &str) -> Option<&V> {
        self.versions
            .iter()
            .find(|v| v.version().eq_ignore_ascii_case(version))
    }

    pub fn get_mut(&mut self, version: &str) -> Option<&mut V> {
        self.versions
            .iter_mut()
            .find(|v| v.version().eq_ignore_ascii_case(version))
    }
}

/// A certificate's policy (one per certificate name, as in the service).
#[derive(Debug, Clone)]
pub struct CertPolicy {
    pub body: Value,
    pub created: i64,
    pub updated: i64,
}

#[derive(Debug, Clone)]
pub struct Vault {
    pub name: String,
    pub cloud: CloudProfile,
    pub tenant: String,
    pub location: String,
    /// Client ids or object ids allowed on the data plane; `None` lets every identity of the
    /// vault's tenant in.
    pub access: Option<Vec<String>>,
    pub secrets: BTreeMap<String, Versions<SecretVersion>>,
    pub keys: BTreeMap<String, Versions<KeyVersion>>,
    pub certificates: BTreeMap<String, Versions<CertVersion>>,
    pub policies: BTreeMap<String, CertPolicy>,
}

impl Vault {
    pub fn base_url(&self) -> String {
        format!("https://{}.{}", self.name, self.cloud.vault_suffix)
    }

    pub fn object_id(&self, kind: ObjectKind, name: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{}/{}/{}/{}", self.base_url(), kind.collection(), name, v),
            None => format!("{}/{}/{}", self.base_url(), kind.collection(), name),
        }
    }

    pub fn allows(&self, client_id: &str, object_id: &str) -> bool {
        match &self.access {
            None => true,
            Some(list) => list
                .iter()
                .any(|a| a.eq_ignore_ascii_case(client_id) || a.eq_ignore_ascii_case(object_id)),
        }
    }
}

/// What a new secret version holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretSpec {
    pub value: String,
    pub content_type: Option<String>,
    pub enabled: Option<bool>,
    pub tags: Option<Tags>,
    /// Unix seconds.
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
}

impl SecretSpec {
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }
}

/// Options for a new key version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyOptions {
    /// Report the key as HSM-protected (`RSA-HSM`/`EC-HSM`).
    pub hsm: bool,
    pub enabled: Option<bool>,
    pub key_ops: Option<Vec<String>>,
    pub tags: Option<Tags>,
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
}

/// A certificate to import: PFX bytes or PEM text, with the backing secret's content type.
#[derive(Debug, Clone)]
pub struct CertificateImport {
    pub data: Vec<u8>,
    pub password: Option<String>,
    /// `application/x-pkcs12` (default) or `application/x-pem-file`.
    pub content_type: Option<String>,
    pub enabled: Option<bool>,
    pub tags: Option<Tags>,
}

impl CertificateImport {
    pub fn pfx(data: Vec<u8>, password: Option<&str>) -> Self {
        Self {
            data,
            password: password.map(str::to_string),
            content_type: None,
            enabled: None,
            tags: None,
        }
    }

    pub fn pem(text: &str) -> Self {
        Self {
            data: text.as_bytes().to_vec(),
            password: None,
            content_type: Some(CONTENT_TYPE_PEM.to_string()),
            enabled: None,
            tags: None,
        }
    }
}

/// Per-import choices: the backing secret's content type, the enabled flag and tags.
pub struct ImportOptions<'a> {
    pub content_type: Option<&'a str>,
    pub enabled: Option<bool>,
    pub tags: Option<Tags>,
}

/// What an import created: the shared version of the certificate, its key and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedCertificate {
    pub version: String,
    pub x5t: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    App,
    ManagedIdentity,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub kind: IdentityKind,
    pub tenant: String,
    pub client_id: String,
    pub object_id: String,
    pub secret: Option<String>,
    pub system_assigned: bool,
}

#[derive(Debug, Clone)]
pub struct FederatedCredential {
    pub tenant: String,
    pub client_id: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PodBinding {
    pub namespace: String,
    pub pod: String,
    pub client_id: String,
}

#[derive(Debug, Default)]
pub struct State {
    pub vaults: BTreeMap<String, Vault>,
    pub identities: Vec<Identity>,
    pub federated: Vec<FederatedCredential>,
    pub pods: Vec<PodBinding>,
}

fn check_name(name: &str) -> Result<(), Error> {
    if valid_object_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

impl State {
    pub fn vault(&self, name: &str) -> Result<&Vault, Error> {
        self.vaults
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| Error::UnknownVault(name.to_string()))
    }

    pub fn vault_mut(&mut self, name: &str) -> Result<&mut Vault, Error> {
        self.vaults
            .get_mut(&name.to_ascii_lowercase())
            .ok_or_else(|| Error::UnknownVault(name.to_string()))
    }

    pub fn known_tenant(&self, tenant: &str) -> bool {
        self.vaults
            .values()
            .any(|v| v.tenant.eq_ignore_ascii_case(tenant))
            || self
                .identities
                .iter()
                .any(|i| i.tenant.eq_ignore_ascii_case(tenant))
    }

    pub fn add_vault(&mut self, vault: Vault) -> Result<(), Error> {
        let key = vault.name.to_ascii_lowercase();
        if self.vaults.contains_key(&key) {
            return Err(Error::DuplicateVault(vault.name));
        }
        self.vaults.insert(key, vault);
        Ok(())
    }

    pub fn add_secret(
        &mut self,
        vault: &str,
        name: &str,
        spec: SecretSpec,
        now: i64,
    ) -> Result<String, Error> {
        check_name(name)?;
        let v = self.vault_mut(vault)?;
        let version = new_version();
        let mut attrs = Attrs::new(now, spec.enabled.unwrap_or(true));
        attrs.nbf = spec.not_before;
        attrs.exp = spec.expires;
        let entry = v
            .secrets
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Versions {
                name: name.to_string(),
                versions: Vec::new(),
            });
        entry.versions.push(SecretVersion {
            version: version.clone(),
            value: spec.value,
            content_type: spec.content_type,
            attrs,
            tags: spec.tags,
            managed: false,
        });
        Ok(version)
    }

    pub fn add_key(
        &mut self,
        vault: &str,
        name: &str,
        public: PublicKey,
        opts: KeyOptions,
        now: i64,
    ) -> Result<String, Error> {
        check_name(name)?;
        let v = self.vault_mut(vault)?;
        let version = new_version();
        let mut attrs = Attrs::new(now, opts.enabled.unwrap_or(true));
        attrs.nbf = opts.not_before;
        attrs.exp = opts.expires;
        let key_ops = opts.key_ops.unwrap_or_else(|| public.default_key_ops());
        let entry = v
            .keys
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Versions {
                name: name.to_string(),
                versions: Vec::new(),
            });
        entry.versions.push(KeyVersion {
            version: version.clone(),
            public,
            hsm: opts.hsm,
            key_ops,
            attrs,
            tags: opts.tags,
            managed: false,
        });
        Ok(version)
    }

    /// Imports a certificate, creating the certificate, key and secret versions under one version id.
    pub fn import_certificate(
        &mut self,
        vault: &str,
        name: &str,
        parsed: &ParsedCertificate,
        opts: ImportOptions<'_>,
        now: i64,
    ) -> Result<ImportedCertificate, Error> {
        check_name(name)?;
        let ImportOptions {
            content_type,
            enabled,
            tags,
        } = opts;
        let content_type = content_type.unwrap_or(CONTENT_TYPE_PKCS12);
        let secret_value = match content_type {
            CONTENT_TYPE_PKCS12 => b64std(&certs::export_pfx(parsed).map_err(Error::Certificate)?),
            CONTENT_TYPE_PEM => certs::export_pem(parsed),
            other => {
                return Err(Error::Certificate(format!(
                    "content type '{other}' is neither {CONTENT_TYPE_PKCS12} nor {CONTENT_TYPE_PEM}"
                )));
            }
        };
        let leaf = certs::describe_leaf(&parsed.leaf_der).map_err(Error::Certificate)?;
        let v = self.vault_mut(vault)?;
        let version = new_version();
        let mut attrs = Attrs::new(now, enabled.unwrap_or(true));
        attrs.nbf = Some(leaf.not_before);
        attrs.exp = Some(leaf.not_after);
        let thumb = x5t(&parsed.leaf_der);
        let key = name.to_ascii_lowercase();

        let key_props = match leaf.public.curve() {
            None => json!({
                "exportable": true,
                "kty": "RSA",
                "key_size": leaf.public.rsa_bits(),
                "reuse_key": false
            }),
            Some(curve) => json!({
                "exportable": true,
                "kty": "EC",
                "crv": curve.name(),
                "reuse_key": false
            }),
        };
        let policy = json!({
            "key_props": key_props,
            "secret_props": {"contentType": content_type},
            "x509_props": leaf.x509_props,
            "lifetime_actions": [
                {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}
            ],
            "issuer": {"name": "Unknown"},
        });
        match v.policies.get_mut(&key) {
            Some(p) => {
                p.body = policy;
                p.updated = now;
            }
            None => {
                v.policies.insert(
                    key.clone(),
                    CertPolicy {
                        body: policy,
                        created: now,
                        updated: now,
                    },
                );
            }
        }

        v.certificates
            .entry(key.clone())
            .or_insert_with(|| Versions {
                name: name.to_string(),
                versions: Vec::new(),
            })
            .versions
            .push(CertVersion {
                version: version.clone(),
                der: parsed.leaf_der.clone(),
                x5t: thumb.clone(),
                attrs: attrs.clone(),
                tags: tags.clone(),
            });
        let public = leaf.public.clone();
        v.keys
            .entry(key.clone())
            .or_insert_with(|| Versions {
                name: name.to_string(),
                versions: Vec::new(),
            })
            .versions
            .push(KeyVersion {
                version: version.clone(),
                key_ops: public.default_key_ops(),
                public,
                hsm: false,
                attrs: attrs.clone(),
                tags: tags.clone(),
                managed: true,
            });
        v.secrets
            .entry(key)
            .or_insert_with(|| Versions {
                name: name.to_string(),
                versions: Vec::new(),
            })
            .versions
            .push(SecretVersion {
                version: version.clone(),
                value: secret_value,
                content_type: Some(content_type.to_string()),
                attrs,
                tags,
                managed: true,
            });
        Ok(ImportedCertificate {
            version,
            x5t: thumb,
        })
    }

    pub fn set_enabled(
        &mut self,
        vault: &str,
        kind: ObjectKind,
        name: &str,
        version: &str,
        enabled: bool,
        now: i64,
    ) -> Result<(), Error> {
        let v = self.vault_mut(vault)?;
        let vault_name = v.name.clone();
        let key = name.to_ascii_lowercase();
        let unknown_object = || Error::UnknownObject {
            vault: vault_name.clone(),
            kind: kind.noun(),
            name: name.to_string(),
        };
        let unknown_version = || Error::UnknownVersion {
            vault: vault_name.clone(),
            kind: kind.noun(),
            name: name.to_string(),
            version: version.to_string(),
        };
        let attrs = match kind {
            ObjectKind::Secret => v
                .secrets
                .get_mut(&key)
                .ok_or_else(unknown_object)?
                .get_mut(version)
                .ok_or_else(unknown_version)?
                .attrs_mut(),
            ObjectKind::Key => v
                .keys
                .get_mut(&key)
                .ok_or_else(unknown_object)?
                .get_mut(version)
                .ok_or_else(unknown_version)?
                .attrs_mut(),
            ObjectKind::Certificate => v
                .certificates
                .get_mut(&key)
                .ok_or_else(unknown_object)?
                .get_mut(version)
                .ok_or_else(unknown_version)?
                .attrs_mut(),
        };
        attrs.enabled = enabled;
        attrs.updated = now;
        Ok(())
    }

    pub fn find_identity(&self, tenant: Option<&str>, client_id: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| {
            i.client_id.eq_ignore_ascii_case(client_id)
                && tenant.is_none_or(|t| i.tenant.eq_ignore_ascii_case(t))
        })
    }

    pub fn upsert_identity(
        &mut self,
        kind: IdentityKind,
        tenant: &str,
        client_id: &str,
        secret: Option<String>,
        system_assigned: bool,
    ) {
        if let Some(i) = self.identities.iter_mut().find(|i| {
            i.client_id.eq_ignore_ascii_case(client_id) && i.tenant.eq_ignore_ascii_case(tenant)
        }) {
            if secret.is_some() {
                i.secret = secret;
            }
            if kind == IdentityKind::ManagedIdentity {
                i.kind = kind;
                i.system_assigned |= system_assigned;
            }
            return;
        }
        self.identities.push(Identity {
            kind,
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            object_id: stable_uuid(&format!("{tenant}/{client_id}")),
            secret,
            system_assigned,
        });
    }
}
