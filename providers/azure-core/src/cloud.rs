//! Azure clouds: the four named environments of go-autorest and custom (Azure Stack) environments
//! read from a JSON file in go-autorest's `azure.Environment` format.

use serde::Deserialize;

/// The parts of a cloud environment the provider uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEnvironment {
    pub name: String,
    /// The AAD authority host, always ending in `/` (e.g. `https://login.microsoftonline.com/`).
    pub active_directory_endpoint: String,
    /// DNS suffix of vaults (e.g. `vault.azure.net`).
    pub key_vault_dns_suffix: String,
}

impl CloudEnvironment {
    fn named(name: &str, aad: &str, suffix: &str) -> Self {
        Self {
            name: name.to_string(),
            active_directory_endpoint: aad.to_string(),
            key_vault_dns_suffix: suffix.to_string(),
        }
    }

    pub fn public() -> Self {
        Self::named(
            "AzurePublicCloud",
            "https://login.microsoftonline.com/",
            "vault.azure.net",
        )
    }

    pub fn us_government() -> Self {
        Self::named(
            "AzureUSGovernmentCloud",
            "https://login.microsoftonline.us/",
            "vault.usgovcloudapi.net",
        )
    }

    pub fn china() -> Self {
        Self::named(
            "AzureChinaCloud",
            "https://login.chinacloudapi.cn/",
            "vault.azure.cn",
        )
    }

    pub fn german() -> Self {
        Self::named(
            "AzureGermanCloud",
            "https://login.microsoftonline.de/",
            "vault.microsoftazure.de",
        )
    }
}

/// How `cloudName` selects an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudSelection {
    Named(CloudEnvironment),
    /// `AzureStackCloud`: the environment comes from `cloudEnvFileName`.
    FromFile,
}

/// Resolves `cloudName` like go-autorest's `EnvironmentFromName` (case-insensitive; empty means
/// the public cloud). Returns `None` for an unknown name. Case folding is ASCII-only: Go's
/// Unicode `ToUpper` would also map `ı` and `ſ` onto `I` and `S`, which no real name relies on,
/// and the Unicode tables cost 34 KB of wasm.
pub fn select(cloud_name: &str) -> Option<CloudSelection> {
    if cloud_name.is_empty() {
        return Some(CloudSelection::Named(CloudEnvironment::public()));
    }
    let environment = match cloud_name.to_ascii_uppercase().as_str() {
        "AZURESTACKCLOUD" => return Some(CloudSelection::FromFile),
        "AZUREPUBLICCLOUD" | "AZURECLOUD" => CloudEnvironment::public(),
        "AZUREUSGOVERNMENTCLOUD" | "AZUREUSGOVERNMENT" => CloudEnvironment::us_government(),
        "AZURECHINACLOUD" => CloudEnvironment::china(),
        "AZUREGERMANCLOUD" => CloudEnvironment::german(),
        _ => return None,
    };
    Some(CloudSelection::Named(environment))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudFileError {
    #[error("is not a valid cloud environment JSON document: {0}")]
    Json(String),
    #[error("does not set {0}")]
    Missing(&'static str),
    #[error("sets {field} to {value:?}, {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
}

#[derive(Deserialize)]
struct EnvironmentFile {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "activeDirectoryEndpoint")]
    active_directory_endpoint: String,
    #[serde(default, rename = "keyVaultDNSSuffix")]
    key_vault_dns_suffix: String,
}

/// Parses a custom cloud environment document (go-autorest `azure.Environment` JSON; fields the
/// provider does not use are ignored).
pub fn parse_environment_file(bytes: &[u8]) -> Result<CloudEnvironment, CloudFileError> {
    let file: EnvironmentFile =
        serde_json::from_slice(bytes).map_err(|e| CloudFileError::Json(e.to_string()))?;
    let aad = file.active_directory_endpoint.trim();
    if aad.is_empty() {
        return Err(CloudFileError::Missing("activeDirectoryEndpoint"));
    }
    let Some(rest) = aad.strip_prefix("https://") else {
        return Err(CloudFileError::Invalid {
            field: "activeDirectoryEndpoint",
            value: aad.to_string(),
            reason: "which is not an https URL",
        });
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || !rest.chars().all(|c| c.is_ascii_graphic()) || rest.contains(['?', '#']) {
        return Err(CloudFileError::Invalid {
            field: "activeDirectoryEndpoint",
            value: aad.to_string(),
            reason: "which is not an https URL",
        });
    }
    let suffix = file.key_vault_dns_suffix.trim().trim_start_matches('.');
    if suffix.is_empty() {
        return Err(CloudFileError::Missing("keyVaultDNSSuffix"));
    }
    if !is_dns_name(suffix) {
        return Err(CloudFileError::Invalid {
            field: "keyVaultDNSSuffix",
            value: suffix.to_string(),
            reason: "which is not a DNS name",
        });
    }
    let mut authority = aad.to_string();
    if !authority.ends_with('/') {
        authority.push('/');
    }
    Ok(CloudEnvironment {
        name: if file.name.is_empty() {
            "AzureStackCloud".to_string()
        } else {
            file.name
        },
        active_directory_endpoint: authority,
        key_vault_dns_suffix: suffix.to_string(),
    })
}

fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(
            select("azureusgovernmentcloud"),
            Some(CloudSelection::Named(CloudEnvironment::us_government()))
        );
        assert_eq!(select("AzureStackCloud"), Some(CloudSelection::FromFile));
        assert_eq!(
            select(""),
            Some(CloudSelection::Named(CloudEnvironment::public()))
        );
        assert_eq!(select("AzureWrongCloud"), None);
    }

    #[test]
    fn parses_environment_files() {
        let env = parse_environment_file(
            br#"{"name":"AzureStackCloud","activeDirectoryEndpoint":"https://login.stack.example","keyVaultDNSSuffix":"vault.stack.example","resourceManagerEndpoint":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            env.active_directory_endpoint,
            "https://login.stack.example/"
        );
        assert_eq!(env.key_vault_dns_suffix, "vault.stack.example");
        assert!(matches!(
            parse_environment_file(b"{}"),
            Err(CloudFileError::Missing("activeDirectoryEndpoint"))
        ));
        assert!(
            parse_environment_file(
                br#"{"activeDirectoryEndpoint":"http://x/","keyVaultDNSSuffix":"v"}"#
            )
            .is_err()
        );
        assert!(
            parse_environment_file(
                br#"{"activeDirectoryEndpoint":"https://x/","keyVaultDNSSuffix":"a/b"}"#
            )
            .is_err()
        );
        assert!(parse_environment_file(b"not json").is_err());
    }
}
