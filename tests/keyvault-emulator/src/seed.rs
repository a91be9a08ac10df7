//! The seed: initial vaults, objects and identities, deserialisable from YAML (the CLI's `--seed`
//! file; the format is documented in the crate docs) or built in code.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::cloud::CloudProfile;
use crate::keys::Curve;
use crate::store::Tags;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Seed {
    /// Custom clouds (Azure Stack and the like) in addition to the four built-in ones.
    pub clouds: Vec<CloudProfile>,
    pub vaults: Vec<VaultSeed>,
    pub identities: IdentitySeed,
    /// Where relative file paths in the seed are resolved; the seed file's directory when loaded
    /// from a file.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct VaultSeed {
    pub name: String,
    /// `AzurePublicCloud` (default), `AzureUSGovernmentCloud`, `AzureChinaCloud`, `AzureGermanCloud`
    /// or the name of a custom cloud.
    pub cloud: Option<String>,
    pub tenant: String,
    pub location: Option<String>,
    /// Client ids or object ids allowed on the data plane; absent = every identity of the tenant.
    pub access: Option<Vec<String>>,
    pub secrets: Vec<SecretSeed>,
    pub keys: Vec<KeySeed>,
    pub certificates: Vec<CertificateSeed>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SecretSeed {
    pub name: String,
    /// Oldest first; the last one is the current version.
    pub versions: Vec<SecretVersionSeed>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SecretVersionSeed {
    pub value: String,
    pub content_type: Option<String>,
    pub enabled: Option<bool>,
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct KeySeed {
    pub name: String,
    pub versions: Vec<KeyVersionSeed>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct KeyVersionSeed {
    /// A PEM private key file (PKCS#8, PKCS#1 or SEC1).
    pub pem: Option<PathBuf>,
    /// Or generate one.
    pub generate: Option<GenerateSeed>,
    pub hsm: bool,
    pub enabled: Option<bool>,
    pub key_ops: Option<Vec<String>>,
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kty", deny_unknown_fields)]
pub enum GenerateSeed {
    #[serde(rename = "RSA")]
    Rsa {
        #[serde(default = "default_rsa_size")]
        size: usize,
    },
    #[serde(rename = "EC")]
    Ec {
        #[serde(default = "default_curve")]
        crv: Curve,
    },
}

fn default_rsa_size() -> usize {
    2048
}

fn default_curve() -> Curve {
    Curve::P256
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CertificateSeed {
    pub name: String,
    pub versions: Vec<CertificateVersionSeed>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CertificateVersionSeed {
    /// A PFX file or a PEM bundle (private key + certificates).
    pub file: Option<PathBuf>,
    pub password: Option<String>,
    /// Backing secret content type: `application/x-pkcs12` (default) or `application/x-pem-file`.
    pub content_type: Option<String>,
    pub enabled: Option<bool>,
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct IdentitySeed {
    /// App registrations with a client secret.
    pub apps: Vec<AppSeed>,
    /// Federated credentials (workload identity).
    pub federated: Vec<FederatedSeed>,
    /// Managed identities served by IMDS.
    pub managed: Vec<ManagedSeed>,
    /// aad-pod-identity bindings served by NMI.
    pub pods: Vec<PodSeed>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AppSeed {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FederatedSeed {
    pub tenant: String,
    pub client_id: String,
    pub issuer: String,
    pub subject: String,
    /// Default `[api://AzureADTokenExchange]`.
    pub audiences: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ManagedSeed {
    pub tenant: String,
    pub client_id: String,
    /// The VM's system-assigned identity (IMDS answers it when no client id is asked for).
    pub system_assigned: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PodSeed {
    pub namespace: String,
    pub pod: String,
    pub client_id: String,
    /// Tenant of the identity; needed only when the managed identity is not seeded separately.
    pub tenant: Option<String>,
}

impl Seed {
    pub fn from_yaml_str(text: &str, base_dir: Option<&Path>) -> Result<Seed, Error> {
        let mut seed: Seed = serde_norway::from_str(text).map_err(|e| Error::SeedSyntax {
            path: base_dir.map(Path::to_path_buf).unwrap_or_default(),
            message: e.to_string(),
        })?;
        seed.base_dir = base_dir.map(Path::to_path_buf);
        Ok(seed)
    }

    pub fn from_yaml_file(path: &Path) -> Result<Seed, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let mut seed: Seed = serde_norway::from_str(&text).map_err(|e| Error::SeedSyntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        seed.base_dir = path.parent().map(Path::to_path_buf);
        Ok(seed)
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// Reads a file named by the seed.
pub fn read_seed_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_example() {
        let yaml = r#"
vaults:
  - name: myvault
    tenant: 11111111-1111-1111-1111-111111111111
    secrets:
      - name: db-password
        versions:
          - value: first
          - value: second
            contentType: text/plain
            enabled: false
    keys:
      - name: k
        versions:
          - generate: {kty: EC, crv: P-384}
          - pem: keys/rsa.pem
            hsm: true
    certificates:
      - name: tls
        versions:
          - file: tls.pfx
            password: pw
identities:
  apps:
    - {tenant: 11111111-1111-1111-1111-111111111111, clientId: app, clientSecret: s}
  federated:
    - tenant: 11111111-1111-1111-1111-111111111111
      clientId: wi
      issuer: https://oidc.example
      subject: system:serviceaccount:default:sa
  managed:
    - {tenant: 11111111-1111-1111-1111-111111111111, clientId: mi, systemAssigned: true}
  pods:
    - {namespace: default, pod: web, clientId: mi}
"#;
        let seed = Seed::from_yaml_str(yaml, Some(Path::new("/seeds"))).unwrap();
        let v = &seed.vaults[0];
        assert_eq!(v.secrets[0].versions.len(), 2);
        assert!(matches!(
            v.keys[0].versions[0].generate,
            Some(GenerateSeed::Ec { crv: Curve::P384 })
        ));
        assert_eq!(
            seed.resolve(v.keys[0].versions[1].pem.as_deref().unwrap()),
            PathBuf::from("/seeds/keys/rsa.pem")
        );
        assert_eq!(seed.identities.pods[0].pod, "web");
        assert!(Seed::from_yaml_str("vaults: [{name: a, tenant: t, bogus: 1}]", None).is_err());
    }
}
