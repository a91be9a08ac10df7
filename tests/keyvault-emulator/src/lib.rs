//! A local Azure Key Vault + AAD + IMDS + NMI emulator for tests, the demo, benchmarks and provider
//! authors. It reproduces the real services' wire behaviour: the same JSON field names, ids,
//! attributes, status codes and error bodies, behind real TLS.
//!
//! # Transport
//!
//! * One **HTTPS** listener (vaults and AAD), with a test CA generated at start. Its certificate covers
//!   `*.vault.azure.net`, `*.vault.usgovcloudapi.net`, `*.vault.azure.cn`,
//!   `*.vault.microsoftazure.de`, the AAD hosts `login.microsoftonline.com`,
//!   `login.microsoftonline.us`, `login.chinacloudapi.cn`, `login.microsoftonline.de`, custom clouds'
//!   hosts, [`Config::extra_dns_names`], `localhost` and `127.0.0.1`. Requests are routed by `Host`:
//!   the first label of `{vault}.{vault suffix}` names the vault, the suffix the cloud.
//! * One **plain-HTTP** listener for IMDS (`/metadata/identity/oauth2/token`), NMI (`/host/token/`)
//!   and the `/_emulator/` control endpoint (see below).
//!
//! Clients reach both through a resolve override (`myvault.vault.azure.net:443 → https_addr`,
//! `169.254.169.254:80` and `localhost:2579 → http_addr`); [`RunningEmulator::resolve_overrides`]
//! lists them.
//!
//! # Library use
//!
//! ```no_run
//! # async fn demo() -> Result<(), keyvault_emulator::Error> {
//! use keyvault_emulator::{Config, Emulator, VaultSpec};
//! let emu = Emulator::start(Config::default()).await?;
//! emu.add_vault(VaultSpec::new("myvault", "72f988bf-86f1-41af-91ab-2d7cd011db47"))?;
//! emu.add_app("72f988bf-86f1-41af-91ab-2d7cd011db47", "my-client", "my-secret");
//! let version = emu.set_secret("myvault", "db-password", "hunter2", None)?;
//! // … point a client at emu.https_addr() trusting emu.ca_pem() …
//! emu.shutdown().await;
//! # let _ = version; Ok(()) }
//! ```
//!
//! # Seed file (YAML)
//!
//! ```yaml
//! clouds:                       # optional custom clouds (Azure Stack …)
//!   - name: AzureStackCloud
//!     vaultSuffix: vault.local.azurestack.external
//!     loginHost: login.local.azurestack.external
//!     resource: https://vault.local.azurestack.external
//! vaults:
//!   - name: myvault
//!     cloud: AzurePublicCloud   # default; AzureUSGovernmentCloud, AzureChinaCloud, AzureGermanCloud or custom
//!     tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47
//!     location: eastus          # used in Forbidden messages
//!     access: [my-client]       # optional: only these client/object ids may use the data plane
//!     secrets:
//!       - name: db-password
//!         versions:             # oldest first; the last is current
//!           - value: first
//!           - value: second
//!             contentType: text/plain
//!             enabled: false
//!             tags: {env: test}
//!     keys:
//!       - name: signing
//!         versions:
//!           - pem: keys/rsa.pem           # PKCS#8 / PKCS#1 / SEC1, relative to the seed file
//!           - generate: {kty: RSA, size: 2048}
//!           - generate: {kty: EC, crv: P-384}
//!             hsm: true                   # reported as EC-HSM
//!             enabled: false
//!             keyOps: [sign, verify]
//!     certificates:
//!       - name: tls
//!         versions:
//!           - file: certs/tls.pfx         # PFX (any encryption) or PEM bundle with the key
//!             password: pw
//!             contentType: application/x-pem-file   # backing secret format; default application/x-pkcs12
//! identities:
//!   apps:       [{tenant: 72f9…, clientId: my-client, clientSecret: my-secret}]
//!   federated:  [{tenant: 72f9…, clientId: wi-client, issuer: "https://oidc.example", subject: "system:serviceaccount:default:app"}]
//!   managed:    [{tenant: 72f9…, clientId: mi-client, systemAssigned: true}]
//!   pods:       [{namespace: default, pod: web-0, clientId: mi-client}]
//! ```
//!
//! # Control endpoint
//!
//! Out-of-process control lives under `/_emulator/` (plain-HTTP listener, or HTTPS on `localhost`):
//!
//! | request | effect |
//! |---|---|
//! | `GET /_emulator/ca.pem` | the test CA |
//! | `GET /_emulator/counters` | [`crate::Counters`] as JSON |
//! | `GET /_emulator/requests` | the request log as JSON |
//! | `POST /_emulator/reset` | clear counters and log |
//! | `PUT /_emulator/faults` | replace the [`crate::FaultPlan`] (JSON) |
//! | `POST /_emulator/inject` | `{"scope": "data_plane", "count": 2, "fault": {"kind": "throttle", "retry_after_secs": 1}}` |
//! | `PUT /_emulator/vaults/{vault}/secrets/{name}` | new secret version from `{"value", "contentType"?, "enabled"?, "tags"?}`; answers `{"version"}` |
//! | `PATCH /_emulator/vaults/{vault}/{secrets,keys,certificates}/{name}/{version}` | `{"enabled": bool}` |
//! | `POST /_emulator/clock` | `{"advanceSecs": n}` moves the emulator clock forward |

//!
//! # Tokens
//!
//! Tokens are JWT-shaped (`eyJ…`), HS256-signed with a key private to the emulator instance, with
//! AAD v1 claims (`aud`, `iss` = `https://sts.windows.net/{tid}/`, `appid`, `oid`, `tid`, `exp`, …)
//! and `xms_emu_kind` naming the flow. The data plane accepts a token only if this instance signed
//! it, it is unexpired, its audience is the vault cloud's resource and its tenant the vault's.
//!
//! # Faults
//!
//! [`FaultPlan`] rules (latency, jitter, 429 + `Retry-After`, 5xx, dropped connections) apply per
//! [`FaultScope`] (data-plane GETs, the data plane, AAD token requests, IMDS, NMI, any) and draw from
//! one RNG seeded by [`Config::rng_seed`]; [`RunningEmulator::inject`] queues deterministic faults.

mod aad;
mod admin;
mod certs;
mod cloud;
mod emulator;
mod error;
mod faults;
mod imds;
mod keys;
mod kv;
mod observe;
mod seed;
mod server;
mod store;
mod tls;
mod token;
mod util;

pub use certs::{CONTENT_TYPE_PEM, CONTENT_TYPE_PKCS12};
pub use cloud::CloudProfile;
pub use emulator::{Config, Emulator, KeySource, MintToken, RunningEmulator, VaultSpec};
pub use error::Error;
pub use faults::{Fault, FaultPlan, FaultRule, FaultScope, RequestClass};
pub use keys::Curve;
pub use observe::{Counters, LogEntry, TokenPresence};
pub use seed::{
    AppSeed, CertificateSeed, CertificateVersionSeed, FederatedSeed, GenerateSeed, IdentitySeed,
    KeySeed, KeyVersionSeed, ManagedSeed, PodSeed, SecretSeed, SecretVersionSeed, Seed, VaultSeed,
};
pub use store::{CertificateImport, ImportedCertificate, KeyOptions, ObjectKind, SecretSpec, Tags};
pub use token::TokenKind;
