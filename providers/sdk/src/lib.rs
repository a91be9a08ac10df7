//! The provider SDK: everything a Rust provider for secrets-store-wasm needs.
//!
//! A provider implements [`Provider`] and calls [`export_provider!`]:
//!
//! ```ignore
//! use secrets_store_provider_sdk::{self as sdk, MountRequest, MountResponse, ProviderError, ProviderInfo};
//!
//! struct Hello;
//! impl sdk::Provider for Hello {
//!     fn describe() -> ProviderInfo {
//!         ProviderInfo::new("hello", env!("CARGO_PKG_VERSION"), &[])
//!     }
//!     fn mount(request: MountRequest) -> Result<MountResponse, ProviderError> {
//!         Ok(MountResponse::default().with_file("hello.txt", request.default_file_mode, b"hi".to_vec()))
//!     }
//! }
//! sdk::export_provider!(Hello);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` file is the component the
//! driver loads. Test it locally with `secrets-store-host mount --provider FILE.wasm …`.

pub mod cache;
pub mod host_files;
pub mod http;
pub mod log;
pub mod time;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "secrets-store:provider/provider",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_provider_world",
        default_bindings_module: "secrets_store_provider_sdk::bindings",
    });
}

pub use secrets_store_contract::{
    DEFAULT_FILE_MODE, ErrorKind, File, MountRequest, MountResponse, ObjectVersion, ProviderError,
};

use bindings::secrets_store::provider::types as wit;

/// Static facts about a provider, shown by `secrets-store-host inspect`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderInfo {
    pub name: String,
    pub version: String,
    /// Destinations to allow in the provider's policy, e.g. `https://*.vault.azure.net`.
    pub outbound_hosts: Vec<String>,
}

impl ProviderInfo {
    pub fn new(name: &str, version: &str, outbound_hosts: &[&str]) -> Self {
        ProviderInfo {
            name: name.to_string(),
            version: version.to_string(),
            outbound_hosts: outbound_hosts.iter().map(|h| h.to_string()).collect(),
        }
    }
}

/// What a provider implements.
pub trait Provider {
    /// Static facts; must not use the network.
    fn describe() -> ProviderInfo;
    /// Produce the files for one volume mount.
    fn mount(request: MountRequest) -> Result<MountResponse, ProviderError>;
}

/// Builders for responses and errors, so providers read naturally.
pub trait MountResponseExt {
    fn with_file(self, path: impl Into<String>, mode: u32, contents: Vec<u8>) -> Self;
    fn with_version(self, id: impl Into<String>, version: impl Into<String>) -> Self;
}

impl MountResponseExt for MountResponse {
    fn with_file(mut self, path: impl Into<String>, mode: u32, contents: Vec<u8>) -> Self {
        self.files.push(File {
            path: path.into(),
            mode,
            contents,
        });
        self
    }
    fn with_version(mut self, id: impl Into<String>, version: impl Into<String>) -> Self {
        self.object_versions.push(ObjectVersion {
            id: id.into(),
            version: version.into(),
        });
        self
    }
}

/// Shorthand for a [`ProviderError`].
pub fn error(kind: ErrorKind, object: Option<&str>, message: impl Into<String>) -> ProviderError {
    ProviderError {
        kind,
        object: object.map(str::to_string),
        message: message.into(),
    }
}

/// Export a [`Provider`] implementation as the component's `describe` and `mount`.
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        #[doc(hidden)]
        struct __SecretsStoreProviderExport;

        impl $crate::bindings::Guest for __SecretsStoreProviderExport {
            fn describe() -> $crate::bindings::secrets_store::provider::types::ProviderInfo {
                $crate::__private::describe::<$provider>()
            }
            fn mount(
                request: $crate::bindings::secrets_store::provider::types::MountRequest,
            ) -> ::core::result::Result<
                $crate::bindings::secrets_store::provider::types::MountResponse,
                $crate::bindings::secrets_store::provider::types::ProviderError,
            > {
                $crate::__private::mount::<$provider>(request)
            }
        }

        $crate::bindings::__export_provider_world!(
            __SecretsStoreProviderExport with_types_in $crate::bindings
        );
    };
}

#[doc(hidden)]
pub mod __private {
    use super::*;

    pub fn describe<P: Provider>() -> wit::ProviderInfo {
        let info = P::describe();
        wit::ProviderInfo {
            name: info.name,
            version: info.version,
            outbound_hosts: info.outbound_hosts,
        }
    }

    pub fn mount<P: Provider>(
        request: wit::MountRequest,
    ) -> Result<wit::MountResponse, wit::ProviderError> {
        P::mount(request_from_wit(request))
            .map(response_to_wit)
            .map_err(error_to_wit)
    }
}

fn request_from_wit(request: wit::MountRequest) -> MountRequest {
    MountRequest {
        attributes: request.attributes.into_iter().collect(),
        secrets: request.secrets.into_iter().collect(),
        default_file_mode: request.default_file_mode,
        current_object_versions: request
            .current_object_versions
            .into_iter()
            .map(|v| ObjectVersion {
                id: v.id,
                version: v.version,
            })
            .collect(),
    }
}

fn response_to_wit(response: MountResponse) -> wit::MountResponse {
    wit::MountResponse {
        files: response
            .files
            .into_iter()
            .map(|f| wit::File {
                path: f.path,
                mode: f.mode,
                contents: f.contents,
            })
            .collect(),
        object_versions: response
            .object_versions
            .into_iter()
            .map(|v| wit::ObjectVersion {
                id: v.id,
                version: v.version,
            })
            .collect(),
    }
}

fn error_to_wit(error: ProviderError) -> wit::ProviderError {
    let kind = match error.kind {
        ErrorKind::InvalidParameters => wit::ErrorKind::InvalidParameters,
        ErrorKind::Unauthenticated => wit::ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied => wit::ErrorKind::PermissionDenied,
        ErrorKind::NotFound => wit::ErrorKind::NotFound,
        ErrorKind::Throttled(ms) => wit::ErrorKind::Throttled(ms),
        ErrorKind::Upstream(status) => wit::ErrorKind::Upstream(status),
        ErrorKind::Unavailable => wit::ErrorKind::Unavailable,
        ErrorKind::Internal => wit::ErrorKind::Internal,
    };
    wit::ProviderError {
        kind,
        object: error.object,
        message: error.message,
    }
}
