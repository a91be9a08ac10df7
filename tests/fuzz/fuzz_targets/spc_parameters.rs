//! A whole Azure mount configuration, as `params::parse_parameters` reads it: the
//! SecretProviderClass parameters merged with the volume context (the `attributes` map, which the
//! driver hands over JSON-encoded), the nodePublishSecretRef data (`secrets`) and the custom cloud
//! environment file (`hostFile`).
//!
//! Input: `{"attributes":{…},"secrets":{…},"hostFile":"…"}` (anything else is skipped).
//!
//! Beyond "no panic": an accepted configuration has a valid vault name and host, a tenant safe to
//! put in a URL whenever it is used in one, an https authority, and objects that satisfy the
//! object parser's promises. Credentials never leak: the client secret and the service-account
//! token are wrapped in a marker character and the run repeated; neither the error message nor the
//! configuration's `Debug` may then show the marker.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use secrets_store_azure_core::params::{AuthMode, MountConfig, parse_parameters};
use secrets_store_azure_core::{ErrorKind, HostFileError};
use secrets_store_contract::SERVICE_ACCOUNT_TOKENS;
use secrets_store_fuzz::check_objects;
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default, rename = "hostFile")]
    host_file: Option<String>,
}

const MARKER: char = '\u{2603}';

fn parse(input: &Input) -> Result<MountConfig, secrets_store_azure_core::ProviderError> {
    let read = |_path: &str| -> Result<Vec<u8>, HostFileError> {
        input
            .host_file
            .as_ref()
            .map(|t| t.as_bytes().to_vec())
            .ok_or_else(|| HostFileError("not listed in the policy".to_string()))
    };
    parse_parameters(&input.attributes, &input.secrets, &read)
}

fn check_config(config: &MountConfig) {
    let name = &config.keyvault_name;
    assert!(
        (3..=24).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "accepted vault name {name:?}"
    );
    let host = config.vault_host();
    assert!(
        host.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'),
        "vault host {host:?}"
    );
    assert_eq!(
        config.vault_url(),
        format!(
            "https://{}",
            config.keyvault_name.clone() + "." + &config.cloud.key_vault_dns_suffix
        )
    );
    let authority = &config.cloud.active_directory_endpoint;
    assert!(
        authority.starts_with("https://")
            && authority.ends_with('/')
            && authority.bytes().all(|b| b.is_ascii_graphic()),
        "authority {authority:?}"
    );
    assert!(!config.tenant_id.is_empty());
    match &config.auth {
        AuthMode::WorkloadIdentity {
            client_id,
            assertion,
        } => {
            assert!(!client_id.is_empty() && !assertion.is_empty());
            tenant_is_url_safe(&config.tenant_id);
        }
        AuthMode::ServicePrincipal {
            client_id,
            client_secret,
        } => {
            assert!(!client_id.is_empty() && !client_secret.is_empty());
            tenant_is_url_safe(&config.tenant_id);
        }
        AuthMode::PodIdentity => {
            assert!(!config.pod_name.is_empty() && !config.pod_namespace.is_empty());
        }
        AuthMode::VmManagedIdentity { client_id } => {
            assert!(client_id.as_ref().is_none_or(|c| !c.is_empty()));
        }
    }
    check_objects(&config.objects);
}

fn tenant_is_url_safe(tenant: &str) {
    assert!(
        tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
        "tenant {tenant:?} goes into the token URL"
    );
}

/// The input with every credential wrapped in [`MARKER`]: client secrets, and the tokens of the
/// service-account token document.
fn marked(input: &Input) -> Input {
    let wrap = |s: &str| format!("{MARKER}{s}{MARKER}");
    let secrets = input
        .secrets
        .iter()
        .map(|(k, v)| {
            let value = if k.eq_ignore_ascii_case("clientsecret") && !v.is_empty() {
                wrap(v)
            } else {
                v.clone()
            };
            (k.clone(), value)
        })
        .collect();
    let mut attributes = input.attributes.clone();
    if let Some(tokens) = attributes.get_mut(SERVICE_ACCOUNT_TOKENS)
        && let Ok(mut document) = serde_json::from_str::<serde_json::Value>(tokens)
    {
        // Every string of the document: a token may sit wherever a malformed document puts it.
        secrets_store_fuzz::mark_strings(&mut document, MARKER);
        *tokens = document.to_string();
    }
    Input {
        attributes,
        secrets,
        host_file: input.host_file.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    match parse(&input) {
        Ok(config) => check_config(&config),
        Err(error) => {
            assert_eq!(error.kind, ErrorKind::InvalidParameters);
            assert!(!error.message.is_empty());
        }
    }

    // The marker may only show up where the caller wrote it in plain sight.
    let public_has_marker = input
        .attributes
        .iter()
        .filter(|(k, _)| *k != SERVICE_ACCOUNT_TOKENS)
        .any(|(k, v)| k.contains(MARKER) || v.contains(MARKER))
        || input
            .secrets
            .iter()
            .any(|(k, v)| k.contains(MARKER) || v.contains(MARKER))
        || input.host_file.as_ref().is_some_and(|h| h.contains(MARKER))
        || input
            .attributes
            .get(SERVICE_ACCOUNT_TOKENS)
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .is_some_and(|doc| secrets_store_fuzz::keys_contain(&doc, MARKER));
    if public_has_marker {
        return;
    }
    match parse(&marked(&input)) {
        Ok(config) => {
            let shown = format!("{config:?}");
            assert!(!shown.contains(MARKER), "a credential in Debug: {shown}");
        }
        Err(error) => {
            let shown = error.to_string();
            assert!(!shown.contains(MARKER), "a credential in an error: {shown}");
        }
    }
});
