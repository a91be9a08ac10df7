//! What the suites expect of the Azure provider, stated independently of its code. `std` only:
//! the provider's own suite (providers/azure-core, also a member of the guest workspace) includes
//! this file by path rather than depending on this crate.

/// Every destination the Azure provider may need in any cloud (Key Vault and AAD hosts of the
/// public, US Government, China and Germany clouds; IMDS; NMI), stated here independently of the
/// provider's code so the suites can check what it declares and configure policies that name each
/// one (no wildcard shortcuts for IMDS or NMI).
pub const AZURE_HOSTS: &[&str] = &[
    "https://*.vault.azure.net",
    "https://*.vault.usgovcloudapi.net",
    "https://*.vault.azure.cn",
    "https://*.vault.microsoftazure.de",
    "https://login.microsoftonline.com",
    "https://login.microsoftonline.us",
    "https://login.chinacloudapi.cn",
    "https://login.microsoftonline.de",
    "http://169.254.169.254",
    "http://localhost:2579",
];
