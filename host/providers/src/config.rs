//! `providers.yaml` and the module files it names.
//!
//! ```yaml
//! providers:
//!   azure:
//!     module: azure.wasm.gz            # relative to the providers directory, or absolute
//!     allowedHosts: ["https://*.vault.azure.net", "https://login.microsoftonline.com"]
//!     timeoutSeconds: 20               # any other key of the runtime's PolicySpec
//! ```
//!
//! A document that cannot be read as a whole (syntax, an unknown top-level key, `providers` not a
//! map) is one failure that leaves every loaded provider as it was. Inside, each provider is judged
//! on its own: a bad name, a missing `module`, an unknown or invalid policy key fails that provider
//! only.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use secrets_store_runtime::{Policy, PolicyError, PolicySpec};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The configuration file's name inside the providers directory.
pub const PROVIDERS_FILE: &str = "providers.yaml";

/// The largest module accepted (after decompression). A component with an embedded interpreter is
/// tens of MiB; anything far beyond is a mistake or an attack on the driver's memory.
pub const MAX_MODULE_BYTES: u64 = 256 << 20;

/// The largest `providers.yaml` read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersFile {
    #[serde(default)]
    providers: Option<BTreeMap<String, serde_norway::Value>>,
}

/// One provider's entry, parsed.
pub(crate) struct Entry {
    /// The module as configured, relative paths resolved against the providers directory.
    pub(crate) module: PathBuf,
    /// Where to read it: for a ConfigMap volume, inside the payload directory `..data` pointed to
    /// when `providers.yaml` was read, so that the document and its modules come from one version.
    pub(crate) source: PathBuf,
    pub(crate) spec: PolicySpec,
    pub(crate) policy: Policy,
}

/// What a readable `providers.yaml` says: per provider, its entry or why it is unusable.
pub(crate) type Config = BTreeMap<String, Result<Entry, EntryError>>;

/// `providers.yaml` as a whole is unusable; every loaded provider stays as it was.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("{} is not a directory", .dir.display())]
    NotADirectory { dir: PathBuf },
    #[error("providers directory {}: {source}", .dir.display())]
    Directory {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is larger than {MAX_CONFIG_BYTES} bytes", .path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {source}", .path.display())]
    Syntax {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
}

/// One provider's entry is unusable; the other providers are judged on their own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryError {
    #[error("invalid provider name: 1 to 30 characters of a-z, A-Z, 0-9, `_` and `-`")]
    InvalidName,
    #[error("the entry must be a map with `module` and policy keys")]
    NotAMap,
    #[error("`module` must be a non-empty path")]
    InvalidModule,
    #[error("`module` is missing")]
    NoModule,
    #[error("policy: {source}")]
    Spec {
        module: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("policy: {source}")]
    Policy {
        module: PathBuf,
        #[source]
        source: PolicyError,
    },
}

impl EntryError {
    /// The module path, when the entry got that far.
    pub(crate) fn module(&self) -> Option<&Path> {
        match self {
            EntryError::Spec { module, .. } | EntryError::Policy { module, .. } => Some(module),
            _ => None,
        }
    }
}

/// Whether `name` is a valid provider name: upstream's `^[a-zA-Z0-9_-]{0,30}$`, except that the
/// empty name is refused too (a SecretProviderClass must name its provider).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 30
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Read `providers.yaml` from `base` (the providers directory `dir`, or the payload directory of its
/// current ConfigMap version). `Ok(None)`: the directory exists but has no such file (no wasm
/// providers configured). `Err`: the whole document is unusable.
pub(crate) fn read_config(dir: &Path, base: &Path) -> Result<Option<Config>, ConfigError> {
    let path = base.join(PROVIDERS_FILE);
    let shown = dir.join(PROVIDERS_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match std::fs::metadata(base) {
                Ok(meta) if meta.is_dir() => Ok(None),
                Ok(_) => Err(ConfigError::NotADirectory {
                    dir: dir.to_path_buf(),
                }),
                Err(source) => Err(ConfigError::Directory {
                    dir: dir.to_path_buf(),
                    source,
                }),
            };
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: shown,
                source,
            });
        }
    };
    let mut text = String::new();
    if let Err(source) = file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text) {
        return Err(ConfigError::Read {
            path: shown,
            source,
        });
    }
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { path: shown });
    }
    parse_config(&text, dir, base)
        .map(Some)
        .map_err(|source| ConfigError::Syntax {
            path: shown,
            source,
        })
}

pub(crate) fn parse_config(
    text: &str,
    dir: &Path,
    base: &Path,
) -> Result<Config, serde_norway::Error> {
    // An empty document is `null` to YAML: no providers.
    let file: Option<ProvidersFile> = serde_norway::from_str(text)?;
    let providers = file.and_then(|f| f.providers).unwrap_or_default();
    Ok(providers
        .into_iter()
        .map(|(name, value)| {
            let entry = parse_entry(&name, value, dir, base);
            (name, entry)
        })
        .collect())
}

fn parse_entry(
    name: &str,
    value: serde_norway::Value,
    dir: &Path,
    base: &Path,
) -> Result<Entry, EntryError> {
    if !valid_name(name) {
        return Err(EntryError::InvalidName);
    }
    // `module` is split off by hand: serde's `flatten` would disable PolicySpec's
    // `deny_unknown_fields`, and a misspelt policy key must not pass silently.
    let mut map = match value {
        serde_norway::Value::Mapping(map) => map,
        serde_norway::Value::Null => serde_norway::Mapping::new(),
        _ => return Err(EntryError::NotAMap),
    };
    let module = match map.remove("module") {
        Some(serde_norway::Value::String(module)) if !module.is_empty() => module,
        Some(_) => return Err(EntryError::InvalidModule),
        None => return Err(EntryError::NoModule),
    };
    let source = base.join(&module);
    let module = dir.join(module);
    let spec: PolicySpec = match serde_norway::from_value(serde_norway::Value::Mapping(map)) {
        Ok(spec) => spec,
        Err(source) => return Err(EntryError::Spec { module, source }),
    };
    let policy = match Policy::from_spec(&spec) {
        Ok(policy) => policy,
        Err(source) => return Err(EntryError::Policy { module, source }),
    };
    Ok(Entry {
        module,
        source,
        spec,
        policy,
    })
}

/// The payload directory a ConfigMap volume's `..data` symlink points to now, if `dir` is one.
pub(crate) fn configmap_payload(dir: &Path) -> Option<PathBuf> {
    std::fs::read_link(dir.join("..data"))
        .ok()
        .map(|target| dir.join(target))
}

/// A module file read into memory.
pub(crate) struct Module {
    pub(crate) bytes: Vec<u8>,
    /// SHA-256 of `bytes` (the decompressed component), hex: the same digest the runtime computes.
    pub(crate) digest: String,
}

/// Why a module could not be read. Messages name the module as configured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModuleError {
    /// The file does not exist (any more).
    #[error("module file {} does not exist", .path.display())]
    Missing { path: PathBuf },
    #[error("reading module {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decompressing module {}: {source}", .path.display())]
    Decompress {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("module {} is larger than {} MiB", .path.display(), MAX_MODULE_BYTES >> 20)]
    TooLarge { path: PathBuf },
}

/// Read a module from `path`, gunzipping `*.gz`, bounded by [`MAX_MODULE_BYTES`]. Errors name it
/// `shown` (the path as configured).
pub(crate) fn read_module(path: &Path, shown: &Path) -> Result<Module, ModuleError> {
    let shown = shown.to_path_buf();
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModuleError::Missing { path: shown });
        }
        Err(source) => {
            return Err(ModuleError::Read {
                path: shown,
                source,
            });
        }
    };
    let gzipped = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".gz"));
    let mut bytes = Vec::new();
    let read = if gzipped {
        flate2::read::MultiGzDecoder::new(file)
            .take(MAX_MODULE_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        file.take(MAX_MODULE_BYTES + 1).read_to_end(&mut bytes)
    };
    match read {
        Ok(_) => {}
        Err(source) if gzipped => {
            return Err(ModuleError::Decompress {
                path: shown,
                source,
            });
        }
        Err(source) => {
            return Err(ModuleError::Read {
                path: shown,
                source,
            });
        }
    }
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(ModuleError::TooLarge { path: shown });
    }
    let digest = hex::encode(Sha256::digest(&bytes));
    Ok(Module { bytes, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, serde_norway::Error> {
        parse_config(text, Path::new("/providers"), Path::new("/providers/..v1"))
    }

    #[test]
    fn names() {
        for ok in ["a", "azure", "my_provider-2", &"x".repeat(30)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", &"x".repeat(31), "a.b", "a/b", "..", "a b", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn entries_are_judged_one_by_one() {
        let config = parse(
            "providers:\n\
             \x20 good: {module: good.wasm, timeoutSeconds: 5, allowedHosts: ['https://example.com']}\n\
             \x20 abs: {module: /opt/abs.wasm.gz}\n\
             \x20 typo: {module: t.wasm, allowedHost: []}\n\
             \x20 nomodule: {timeoutSeconds: 5}\n\
             \x20 badrange: {module: b.wasm, timeoutSeconds: 0}\n\
             \x20 bad.name: {module: x.wasm}\n\
             \x20 scalar: x.wasm\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let good = config["good"].as_ref().expect("good parses");
        assert_eq!(good.module, Path::new("/providers/good.wasm"));
        assert_eq!(good.source, Path::new("/providers/..v1/good.wasm"));
        assert_eq!(good.spec.timeout_seconds, 5);
        assert_eq!(good.policy.timeout.as_secs(), 5);
        let abs = config["abs"].as_ref().expect("abs parses");
        assert_eq!(abs.module, Path::new("/opt/abs.wasm.gz"));
        assert_eq!(abs.source, Path::new("/opt/abs.wasm.gz"));
        let reason = |name: &str| match &config[name] {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{name} must fail"),
        };
        assert!(reason("typo").contains("allowedHost"), "{}", reason("typo"));
        assert!(reason("nomodule").contains("`module` is missing"));
        assert!(reason("badrange").contains("timeoutSeconds"));
        assert!(reason("bad.name").contains("invalid provider name"));
        assert!(reason("scalar").contains("must be a map"));
    }

    #[test]
    fn whole_document_errors() {
        assert!(parse("providers: [a, b]").is_err());
        assert!(parse("provider: {}").is_err(), "unknown top-level key");
        assert!(parse("providers: {a: {module: x}").is_err(), "syntax");
        assert!(parse("").expect("empty document").is_empty());
        assert!(parse("providers:").expect("null providers").is_empty());
    }
}
