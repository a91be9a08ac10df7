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

use secrets_store_runtime::{Policy, PolicySpec};
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
    providers: Option<BTreeMap<String, serde_yaml::Value>>,
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

pub(crate) struct EntryError {
    /// The module path, when the entry got that far.
    pub(crate) module: Option<PathBuf>,
    pub(crate) reason: String,
}

impl EntryError {
    fn new(reason: impl Into<String>) -> Self {
        EntryError {
            module: None,
            reason: reason.into(),
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
pub(crate) fn read_config(dir: &Path, base: &Path) -> Result<Option<Config>, String> {
    let path = base.join(PROVIDERS_FILE);
    let shown = dir.join(PROVIDERS_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match std::fs::metadata(base) {
                Ok(meta) if meta.is_dir() => Ok(None),
                Ok(_) => Err(format!("{} is not a directory", dir.display())),
                Err(e) => Err(format!("providers directory {}: {e}", dir.display())),
            };
        }
        Err(e) => return Err(format!("reading {}: {e}", shown.display())),
    };
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading {}: {e}", shown.display()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "{} is larger than {MAX_CONFIG_BYTES} bytes",
            shown.display()
        ));
    }
    parse_config(&text, dir, base)
        .map(Some)
        .map_err(|e| format!("{}: {e}", shown.display()))
}

pub(crate) fn parse_config(text: &str, dir: &Path, base: &Path) -> Result<Config, String> {
    // An empty document is `null` to YAML: no providers.
    let file: Option<ProvidersFile> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
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
    value: serde_yaml::Value,
    dir: &Path,
    base: &Path,
) -> Result<Entry, EntryError> {
    if !valid_name(name) {
        return Err(EntryError::new(
            "invalid provider name: 1 to 30 characters of a-z, A-Z, 0-9, `_` and `-`",
        ));
    }
    // `module` is split off by hand: serde's `flatten` would disable PolicySpec's
    // `deny_unknown_fields`, and a misspelt policy key must not pass silently.
    let mut map = match value {
        serde_yaml::Value::Mapping(map) => map,
        serde_yaml::Value::Null => serde_yaml::Mapping::new(),
        _ => {
            return Err(EntryError::new(
                "the entry must be a map with `module` and policy keys",
            ));
        }
    };
    let module = match map.remove("module") {
        Some(serde_yaml::Value::String(module)) if !module.is_empty() => module,
        Some(_) => return Err(EntryError::new("`module` must be a non-empty path")),
        None => return Err(EntryError::new("`module` is missing")),
    };
    let source = base.join(&module);
    let module = dir.join(module);
    let fail = |reason: String| EntryError {
        module: Some(module.clone()),
        reason,
    };
    let spec: PolicySpec = serde_yaml::from_value(serde_yaml::Value::Mapping(map))
        .map_err(|e| fail(format!("policy: {e}")))?;
    let policy = Policy::from_spec(&spec).map_err(|e| fail(format!("policy: {e}")))?;
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

/// Why a module could not be read.
pub(crate) enum ReadError {
    /// The file does not exist (any more).
    Missing(String),
    Other(String),
}

impl ReadError {
    pub(crate) fn message(&self) -> &str {
        match self {
            ReadError::Missing(m) | ReadError::Other(m) => m,
        }
    }
}

/// Read a module from `path`, gunzipping `*.gz`, bounded by [`MAX_MODULE_BYTES`]. Messages name it
/// `shown` (the path as configured).
pub(crate) fn read_module(path: &Path, shown: &Path) -> Result<Module, ReadError> {
    let shown = shown.display();
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ReadError::Missing(format!("module file {shown} does not exist"))
        } else {
            ReadError::Other(format!("reading module {shown}: {e}"))
        }
    })?;
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
    read.map_err(|e| {
        let what = if gzipped {
            "decompressing module"
        } else {
            "reading module"
        };
        ReadError::Other(format!("{what} {shown}: {e}"))
    })?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(ReadError::Other(format!(
            "module {shown} is larger than {} MiB",
            MAX_MODULE_BYTES >> 20
        )));
    }
    let digest = hex::encode(Sha256::digest(&bytes));
    Ok(Module { bytes, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
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
        let good = config["good"].as_ref().ok().expect("good parses");
        assert_eq!(good.module, Path::new("/providers/good.wasm"));
        assert_eq!(good.source, Path::new("/providers/..v1/good.wasm"));
        assert_eq!(good.spec.timeout_seconds, 5);
        assert_eq!(good.policy.timeout.as_secs(), 5);
        let abs = config["abs"].as_ref().ok().expect("abs parses");
        assert_eq!(abs.module, Path::new("/opt/abs.wasm.gz"));
        assert_eq!(abs.source, Path::new("/opt/abs.wasm.gz"));
        let reason = |name: &str| match &config[name] {
            Err(e) => e.reason.clone(),
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
