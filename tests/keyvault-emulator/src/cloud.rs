//! Azure clouds: the Key Vault DNS suffix, the AAD login host and the Key Vault resource (audience) of
//! each, so that requests can be routed by `Host` and tokens checked against the right audience.

use serde::{Deserialize, Serialize};

/// One cloud's endpoints as the emulator serves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudProfile {
    /// Name as the Azure provider's `cloudName` parameter spells it (compared case-insensitively).
    pub name: String,
    /// DNS suffix of vaults, e.g. `vault.azure.net`; a vault is `{name}.{vault_suffix}`.
    pub vault_suffix: String,
    /// AAD host, e.g. `login.microsoftonline.com`.
    pub login_host: String,
    /// Key Vault resource / token audience, e.g. `https://vault.azure.net`.
    pub resource: String,
}

impl CloudProfile {
    fn builtin(name: &str, vault_suffix: &str, login_host: &str) -> Self {
        Self {
            name: name.to_string(),
            vault_suffix: vault_suffix.to_string(),
            login_host: login_host.to_string(),
            resource: format!("https://{vault_suffix}"),
        }
    }

    /// The four public clouds the upstream provider knows by name.
    pub fn builtins() -> Vec<CloudProfile> {
        vec![
            Self::builtin(
                "AzurePublicCloud",
                "vault.azure.net",
                "login.microsoftonline.com",
            ),
            Self::builtin(
                "AzureUSGovernmentCloud",
                "vault.usgovcloudapi.net",
                "login.microsoftonline.us",
            ),
            Self::builtin(
                "AzureChinaCloud",
                "vault.azure.cn",
                "login.chinacloudapi.cn",
            ),
            Self::builtin(
                "AzureGermanCloud",
                "vault.microsoftazure.de",
                "login.microsoftonline.de",
            ),
        ]
    }

    /// `https://{login_host}/{tenant}`: the authority a Key Vault challenge names.
    pub fn authority(&self, tenant: &str) -> String {
        format!("https://{}/{}", self.login_host, tenant)
    }

    /// Whether a token audience (or IMDS `resource`) names this cloud's Key Vault; AAD accepts the
    /// resource with or without a trailing slash.
    pub fn is_vault_audience(&self, audience: &str) -> bool {
        audience
            .trim_end_matches('/')
            .eq_ignore_ascii_case(&self.resource)
    }
}

/// All clouds the emulator serves: the built-ins plus custom ones from the config.
#[derive(Debug, Clone)]
pub struct Clouds {
    profiles: Vec<CloudProfile>,
}

impl Clouds {
    pub fn new(custom: &[CloudProfile]) -> Self {
        let mut profiles = CloudProfile::builtins();
        profiles.extend(custom.iter().cloned());
        Self { profiles }
    }

    pub fn all(&self) -> &[CloudProfile] {
        &self.profiles
    }

    pub fn by_name(&self, name: &str) -> Option<&CloudProfile> {
        let name = if name.is_empty() {
            "AzurePublicCloud"
        } else {
            name
        };
        self.profiles
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn by_login_host(&self, host: &str) -> Option<&CloudProfile> {
        self.profiles
            .iter()
            .find(|c| c.login_host.eq_ignore_ascii_case(host))
    }

    /// Splits `{vault}.{suffix}` into the vault name and the cloud owning the suffix.
    pub fn split_vault_host<'h>(&self, host: &'h str) -> Option<(&'h str, &CloudProfile)> {
        let (first, rest) = host.split_once('.')?;
        let cloud = self
            .profiles
            .iter()
            .find(|c| c.vault_suffix.eq_ignore_ascii_case(rest))?;
        Some((first, cloud))
    }

    /// The cloud whose Key Vault resource the audience names.
    pub fn by_audience(&self, audience: &str) -> Option<&CloudProfile> {
        self.profiles.iter().find(|c| c.is_vault_audience(audience))
    }

    /// DNS names the server certificate must cover for these clouds.
    pub fn dns_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for c in &self.profiles {
            names.push(format!("*.{}", c.vault_suffix));
            names.push(c.login_host.clone());
        }
        names
    }
}
