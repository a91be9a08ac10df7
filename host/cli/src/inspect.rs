//! `secrets-store-host inspect FILE.wasm`: whether a module fits the provider world, what it says
//! about itself, and the policy an operator would write for it.

use std::path::Path;

use secrets_store_runtime::{Policy, Runtime};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::CliError;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectReport {
    pub file: String,
    pub bytes: usize,
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub outbound_hosts: Vec<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl InspectReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}: fits secrets-store:provider@0.1\n  provider   {} {}\n  size       {} bytes\n  sha256     {}\n  imports    {}\n  exports    {}\n",
            self.file,
            self.name,
            self.version,
            self.bytes,
            self.sha256,
            self.imports.join(", "),
            self.exports.join(", "),
        );
        out.push_str("suggested policy:\n  allowedHosts:\n");
        for host in &self.outbound_hosts {
            out.push_str(&format!("    - {host}\n"));
        }
        out
    }
}

/// Load the module with no network at all and ask it to describe itself.
pub async fn run(runtime: &Runtime, file: &Path) -> Result<InspectReport, CliError> {
    let bytes = std::fs::read(file).map_err(CliError::io(file))?;
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("provider")
        .trim_end_matches(".wasm")
        .to_string();
    let provider = runtime.load(&name, &bytes, Policy::default())?;
    let info = provider.describe().await?;
    let (imports, exports) = provider.interface();
    Ok(InspectReport {
        file: file.display().to_string(),
        bytes: bytes.len(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        name: info.name,
        version: info.version,
        outbound_hosts: info.outbound_hosts,
        imports,
        exports,
    })
}
