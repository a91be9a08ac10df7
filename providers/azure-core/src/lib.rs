//! Azure Key Vault provider logic, pure Rust: parameters, auth flows, Key Vault calls, output formats.
