//! Test helpers for `deploy/`: a real `helm` (installed on demand by `deploy/tools/ensure-helm.sh`,
//! or `$HELM`), chart rendering, and lookups in the rendered objects.
//!
//! Helm is a hard requirement of these tests: when it cannot be installed, every helper returns the
//! reason and the tests fail with it rather than skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_norway::Value;

/// Everything that can go wrong driving helm or reading its output; each names the command or file.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("installing helm with {script}: {message}")]
    Install { script: PathBuf, message: String },
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} exited with {status}:\n{stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {what}: {source}")]
    Yaml {
        what: String,
        source: serde_norway::Error,
    },
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("deploy/chart/secrets-store-csi-driver-wasm")
}

/// The path of a working helm: `$HELM` if set, otherwise the one `ensure-helm.sh` installs into
/// `target/tools/helm`. Installed once per process; the error is kept and returned to every caller.
pub fn helm() -> Result<PathBuf, DeployError> {
    static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let script = repo_root().join("deploy/tools/ensure-helm.sh");
    HELM.get_or_init(|| {
        if let Some(path) = std::env::var_os("HELM") {
            return Ok(PathBuf::from(path));
        }
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|e| format!("cannot run bash: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if path.is_empty() {
            return Err("it printed no path".to_owned());
        }
        Ok(PathBuf::from(path))
    })
    .clone()
    .map_err(|message| DeployError::Install { script, message })
}

/// Run helm with `args`; its stdout on success.
pub fn run_helm<I, S>(args: I) -> Result<String, DeployError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let helm = helm()?;
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
    let command = format!(
        "helm {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = Command::new(&helm)
        .args(&args)
        // Keep helm away from the user's repositories, plugins and caches.
        .env(
            "HELM_CONFIG_HOME",
            repo_root().join("target/tools/helm-home/config"),
        )
        .env(
            "HELM_CACHE_HOME",
            repo_root().join("target/tools/helm-home/cache"),
        )
        .env(
            "HELM_DATA_HOME",
            repo_root().join("target/tools/helm-home/data"),
        )
        .output()
        .map_err(|source| DeployError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(DeployError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What to render: extra values files (paths), `--set` expressions and other helm flags.
#[derive(Clone, Debug, Default)]
pub struct Values {
    pub files: Vec<PathBuf>,
    pub set: Vec<String>,
    pub flags: Vec<String>,
}

impl Values {
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(path.into());
        self
    }

    pub fn set(mut self, expr: impl Into<String>) -> Self {
        self.set.push(expr.into());
        self
    }

    pub fn flag(mut self, flag: impl Into<String>) -> Self {
        self.flags.push(flag.into());
        self
    }

    fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = self.flags.iter().map(Into::into).collect();
        for file in &self.files {
            args.push("--values".into());
            args.push(file.into());
        }
        for expr in &self.set {
            args.push("--set".into());
            args.push(expr.into());
        }
        args
    }
}

/// The release name and namespace every render uses.
pub const RELEASE: &str = "ssw";
pub const NAMESPACE: &str = "secrets-store";

/// `helm template` of the chart with `values`, as text.
pub fn template_text(values: &Values) -> Result<String, DeployError> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "template".into(),
        RELEASE.into(),
        chart_dir().into(),
        "--namespace".into(),
        NAMESPACE.into(),
    ];
    args.extend(values.args());
    run_helm(args)
}

/// `helm template` of the chart with `values`, parsed.
pub fn template(values: &Values) -> Result<Rendered, DeployError> {
    Rendered::parse(&template_text(values)?, "helm template output")
}

/// `helm lint` of the chart with `values`, optionally `--strict`; lint's report on success.
pub fn lint(values: &Values, strict: bool) -> Result<String, DeployError> {
    let mut args: Vec<std::ffi::OsString> = vec!["lint".into(), chart_dir().into()];
    if strict {
        args.push("--strict".into());
    }
    args.extend(values.args());
    run_helm(args)
}

/// Rendered Kubernetes objects.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub objects: Vec<Value>,
}

impl Rendered {
    /// Parse a multi-document YAML stream; empty documents (comments only) are dropped.
    pub fn parse(text: &str, what: &str) -> Result<Self, DeployError> {
        let mut objects = Vec::new();
        for document in serde_norway::Deserializer::from_str(text) {
            let value: Value =
                Value::deserialize(document).map_err(|source| DeployError::Yaml {
                    what: what.to_owned(),
                    source,
                })?;
            if !value.is_null() {
                objects.push(value);
            }
        }
        Ok(Rendered { objects })
    }

    /// Objects of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |o| o.get("kind").and_then(Value::as_str) == Some(kind))
    }

    /// The one object of `kind`, if there is exactly one.
    pub fn one(&self, kind: &str) -> Option<&Value> {
        let mut found = self
            .objects
            .iter()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some(kind));
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    /// `(kind, name)` of every object, in order.
    pub fn ids(&self) -> Vec<(String, String)> {
        self.objects
            .iter()
            .map(|o| {
                (
                    str_at(o, &["kind"]).unwrap_or_default().to_owned(),
                    str_at(o, &["metadata", "name"])
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }
}

/// The value at a path of mapping keys.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

/// The string at a path of mapping keys.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str)
}

/// The sequence at a path of mapping keys (empty when absent).
pub fn seq_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The item of a sequence whose `name` is `name` (containers, volumes, ports, env).
pub fn named<'a>(items: &'a [Value], name: &str) -> Option<&'a Value> {
    items
        .iter()
        .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
}

/// Strings of a sequence (non-strings are skipped).
pub fn strings(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Read a file under the repository root.
pub fn read_repo_file(relative: &str) -> Result<String, DeployError> {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).map_err(|source| DeployError::Read { path, source })
}
