//! The trivial provider: returns the files its attributes describe, with no network.
//!
//! Attributes: `files` — JSON list of `{"path", "contents", "mode"?}` (default: one `hello.txt`);
//! `generate` — `COUNT:SIZE`, adds COUNT files `f/N` of SIZE bytes each.

use secrets_store_provider_sdk::{
    self as sdk, ErrorKind, MountRequest, MountResponse, MountResponseExt, ProviderError,
    ProviderInfo,
};

#[derive(serde::Deserialize)]
struct FileSpec {
    path: String,
    contents: String,
    mode: Option<u32>,
}

struct Echo;

impl sdk::Provider for Echo {
    fn describe() -> ProviderInfo {
        ProviderInfo::new("echo", env!("CARGO_PKG_VERSION"), &[])
    }

    fn mount(request: MountRequest) -> Result<MountResponse, ProviderError> {
        let mode = request.default_file_mode;
        let mut response = MountResponse::default();
        match request.attributes.get("files") {
            Some(json) => {
                let specs: Vec<FileSpec> = serde_json::from_str(json).map_err(|e| {
                    sdk::error(
                        ErrorKind::InvalidParameters,
                        None,
                        format!("attribute files: {e}"),
                    )
                })?;
                for spec in specs {
                    response = response.with_file(
                        spec.path,
                        spec.mode.unwrap_or(mode),
                        spec.contents.into_bytes(),
                    );
                }
            }
            None => response = response.with_file("hello.txt", mode, b"hello from echo\n".to_vec()),
        }
        if let Some(generate) = request.attributes.get("generate") {
            let (count, size) = generate
                .split_once(':')
                .and_then(|(c, s)| Some((c.parse::<usize>().ok()?, s.parse::<usize>().ok()?)))
                .ok_or_else(|| {
                    sdk::error(
                        ErrorKind::InvalidParameters,
                        None,
                        "attribute generate: want COUNT:SIZE",
                    )
                })?;
            for i in 0..count {
                response = response.with_file(format!("f/{i}"), mode, vec![b'x'; size]);
            }
        }
        Ok(response.with_version("echo/files", "1"))
    }
}

sdk::export_provider!(Echo);
