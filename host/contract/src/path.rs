//! File-name rules for a payload: which relative paths may be written into a volume.
//!
//! These are kubelet's rules for projected volumes (`validatePath` in its AtomicWriter), the fix
//! for the class of bug behind CVE-2020-8567. Everything is checked on the string alone, before
//! the file system is touched. The rule is part of the contract, so there is one definition: the
//! writer applies it before writing, the wasm runtime and the legacy gRPC client to what a
//! provider returns, secret sync to an object alias.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::File;

/// Longest accepted path in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest accepted path element in bytes (Linux `NAME_MAX`).
pub const MAX_ELEMENT_LEN: usize = 255;
/// Highest accepted file mode: permission bits only. setuid/setgid/sticky have no business in a
/// secret volume.
pub const MAX_MODE: u32 = 0o777;

/// Why a path or a payload was refused. Paths are shown escaped and truncated; file contents are
/// never part of an error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("file path is empty")]
    Empty,
    #[error("file path {} contains a NUL byte", shown(.path))]
    Nul { path: String },
    #[error("file path {} is {len} bytes long; at most {MAX_PATH_LEN} are allowed", shown(.path))]
    TooLong { path: String, len: usize },
    #[error("file path {} is absolute; it must be relative to the volume", shown(.path))]
    Absolute { path: String },
    #[error("file path {} is not clean: {problem}", shown(.path))]
    NotClean { path: String, problem: &'static str },
    #[error("file path {} contains a `..` element", shown(.path))]
    ParentElement { path: String },
    #[error(
        "file path {} starts with `..`, which is reserved for the writer's own entries",
        shown(.path)
    )]
    Reserved { path: String },
    #[error(
        "file path {} has an element of {len} bytes; at most {MAX_ELEMENT_LEN} are allowed",
        shown(.path)
    )]
    ElementTooLong { path: String, len: usize },
    #[error("file path {} appears more than once in the payload", shown(.path))]
    Duplicate { path: String },
    #[error(
        "file path {} is a file but also the directory of {}",
        shown(.file),
        shown(.nested)
    )]
    FileDirClash { file: String, nested: String },
    #[error("file {} has mode {mode:#o}; at most {MAX_MODE:#o} is allowed", shown(.path))]
    InvalidMode { path: String, mode: u32 },
}

impl PathError {
    /// The payload path the error is about, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            PathError::Empty => None,
            PathError::Nul { path }
            | PathError::TooLong { path, .. }
            | PathError::Absolute { path }
            | PathError::NotClean { path, .. }
            | PathError::ParentElement { path }
            | PathError::Reserved { path }
            | PathError::ElementTooLong { path, .. }
            | PathError::Duplicate { path }
            | PathError::InvalidMode { path, .. } => Some(path),
            PathError::FileDirClash { nested, .. } => Some(nested),
        }
    }
}

/// Checks one relative file path against kubelet's rules.
///
/// Accepted: `a`, `a/b`, `dir/..hidden` (only the first element is reserved). Refused: empty,
/// absolute, unclean (`a//b`, `a/`, `./a`, `a/./b`), any `..` element, a first element starting
/// with `..` (`..data`, `..2024_…` are the writer's), NUL, more than 4096 bytes in all or more
/// than 255 in one element.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    let owned = || path.to_owned();
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.contains('\0') {
        return Err(PathError::Nul { path: owned() });
    }
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong {
            path: owned(),
            len: path.len(),
        });
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute { path: owned() });
    }
    if path.ends_with('/') {
        return Err(PathError::NotClean {
            path: owned(),
            problem: "trailing `/`",
        });
    }
    for (index, element) in path.split('/').enumerate() {
        match element {
            "" => {
                return Err(PathError::NotClean {
                    path: owned(),
                    problem: "empty element (`//`)",
                });
            }
            "." => {
                return Err(PathError::NotClean {
                    path: owned(),
                    problem: "`.` element",
                });
            }
            ".." => return Err(PathError::ParentElement { path: owned() }),
            _ => {}
        }
        if index == 0 && element.starts_with("..") {
            return Err(PathError::Reserved { path: owned() });
        }
        if element.len() > MAX_ELEMENT_LEN {
            return Err(PathError::ElementTooLong {
                path: owned(),
                len: element.len(),
            });
        }
    }
    Ok(())
}

/// Checks a whole payload: every path valid, no path twice, no path that is both a file and the
/// directory of another (`a` and `a/b`), every mode within `0o777`. The first problem found (in
/// payload order) is reported; one bad entry rejects the payload.
pub fn validate_payload(files: &[File]) -> Result<(), PathError> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(files.len());
    for file in files {
        validate_path(&file.path)?;
        if file.mode > MAX_MODE {
            return Err(PathError::InvalidMode {
                path: file.path.clone(),
                mode: file.mode,
            });
        }
        if !seen.insert(file.path.as_str()) {
            return Err(PathError::Duplicate {
                path: file.path.clone(),
            });
        }
    }
    // A second pass because the clash can come in either order (`a/b` before `a` or after).
    for file in files {
        for (slash, _) in file.path.match_indices('/') {
            let dir = &file.path[..slash];
            if seen.contains(dir) {
                return Err(PathError::FileDirClash {
                    file: dir.to_owned(),
                    nested: file.path.clone(),
                });
            }
        }
    }
    Ok(())
}

/// How a payload path appears in messages: quoted, control characters escaped (a path is
/// provider-controlled and must not forge log lines), long ones cut.
pub fn shown(path: &str) -> String {
    const MAX_CHARS: usize = 128;
    let mut out = String::with_capacity(path.len().min(MAX_CHARS) + 2);
    out.push('"');
    for (count, c) in path.chars().enumerate() {
        if count == MAX_CHARS {
            let _ = write!(out, "…\" ({} bytes)", path.len());
            return out;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_truncates() {
        assert_eq!(shown("a\nb\0\x1b"), r#""a\nb\0\u{1b}""#);
        let long = "x".repeat(300);
        let s = shown(&long);
        assert!(s.ends_with("…\" (300 bytes)"), "{s}");
        assert_eq!(s.chars().filter(|&c| c == 'x').count(), 128);
    }

    #[test]
    fn error_messages_name_path_and_rule() {
        let e = validate_path("a/../b").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"file path "a/../b" contains a `..` element"#
        );
        let e = validate_path("x\n/../etc").unwrap_err();
        assert!(e.to_string().contains(r#""x\n/../etc""#), "{e}");
        assert!(!e.to_string().contains('\n'));
    }
}
