//! `Debug` for the generated messages that carry secret material, so that logging a request
//! (`tracing::debug!(?request)`) can never leak it: secret maps show their keys only, service
//! account tokens in a volume context are masked, the provider's attribute JSON (which embeds
//! those tokens) shows its length only, and file contents show their length only.

use std::collections::HashMap;
use std::fmt;

use secrets_store_contract::{REDACTED, SERVICE_ACCOUNT_TOKENS};

use crate::csi::v1 as csi;
use crate::provider::v1alpha1 as provider;

/// Prints a map's keys with every value masked.
struct SecretMap<'a>(&'a HashMap<String, String>);

impl fmt::Debug for SecretMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.0.keys().collect();
        keys.sort();
        f.debug_map()
            .entries(keys.into_iter().map(|k| (k, REDACTED)))
            .finish()
    }
}

/// Prints a volume context with the service account tokens masked.
struct VolumeContext<'a>(&'a HashMap<String, String>);

impl fmt::Debug for VolumeContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries: Vec<(&String, &String)> = self.0.iter().collect();
        entries.sort();
        f.debug_map()
            .entries(entries.into_iter().map(|(k, v)| {
                let shown: &dyn fmt::Debug = if k == SERVICE_ACCOUNT_TOKENS {
                    &REDACTED
                } else {
                    v
                };
                (k, shown)
            }))
            .finish()
    }
}

/// Prints only how many bytes there are.
struct Length(usize);

impl fmt::Debug for Length {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl fmt::Debug for csi::NodeStageVolumeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeStageVolumeRequest")
            .field("volume_id", &self.volume_id)
            .field("publish_context", &self.publish_context)
            .field("staging_target_path", &self.staging_target_path)
            .field("volume_capability", &self.volume_capability)
            .field("secrets", &SecretMap(&self.secrets))
            .field("volume_context", &VolumeContext(&self.volume_context))
            .finish()
    }
}

impl fmt::Debug for csi::NodePublishVolumeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodePublishVolumeRequest")
            .field("volume_id", &self.volume_id)
            .field("publish_context", &self.publish_context)
            .field("staging_target_path", &self.staging_target_path)
            .field("target_path", &self.target_path)
            .field("volume_capability", &self.volume_capability)
            .field("readonly", &self.readonly)
            .field("secrets", &SecretMap(&self.secrets))
            .field("volume_context", &VolumeContext(&self.volume_context))
            .finish()
    }
}

impl fmt::Debug for csi::NodeExpandVolumeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeExpandVolumeRequest")
            .field("volume_id", &self.volume_id)
            .field("volume_path", &self.volume_path)
            .field("capacity_range", &self.capacity_range)
            .field("staging_target_path", &self.staging_target_path)
            .field("volume_capability", &self.volume_capability)
            .field("secrets", &SecretMap(&self.secrets))
            .finish()
    }
}

impl fmt::Debug for csi::NodeGetStorageHealthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeGetStorageHealthRequest")
            .field("secrets", &SecretMap(&self.secrets))
            .finish()
    }
}

impl fmt::Debug for provider::MountRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MountRequest")
            .field("attributes", &Length(self.attributes.len()))
            .field("secrets", &Length(self.secrets.len()))
            .field("target_path", &self.target_path)
            .field("permission", &self.permission)
            .field("current_object_version", &self.current_object_version)
            .finish()
    }
}

impl fmt::Debug for provider::File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("mode", &format_args!("{:#o}", self.mode))
            .field("contents", &Length(self.contents.len()))
            .finish()
    }
}
