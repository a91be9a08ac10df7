//! Oracles shared by the fuzz targets: what a parsed SecretProviderClass object must satisfy, a
//! serializer back to the `objects` YAML for round trips, and the writer's path rules restated
//! independently of `secrets_store_writer`, so a target can check the real code against them.

use secrets_store_azure_core::params::{KeyVaultObject, ObjectEncoding, ObjectType};
use secrets_store_contract::File;

/// A YAML double-quoted scalar holding exactly `text`: printable ASCII as is, everything else
/// escaped, so the result is safe on one line inside a block scalar.
pub fn yaml_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// The `objects` parameter that describes `objects`, in the upstream layout (`array:` of block
/// scalars, each one object's YAML).
pub fn objects_yaml(objects: &[KeyVaultObject]) -> String {
    let mut out = String::from("array:\n");
    for object in objects {
        out.push_str("  - |\n");
        let mut field = |name: &str, value: String| {
            out.push_str("    ");
            out.push_str(name);
            out.push_str(": ");
            out.push_str(&value);
            out.push('\n');
        };
        field("objectName", yaml_quote(&object.name));
        field("objectType", yaml_quote(object.object_type.as_str()));
        if !object.alias.is_empty() {
            field("objectAlias", yaml_quote(&object.alias));
        }
        if !object.version.is_empty() {
            field("objectVersion", yaml_quote(&object.version));
        }
        if object.version_history != 0 {
            field("objectVersionHistory", object.version_history.to_string());
        }
        if object.pfx {
            // Upper case: accepted (and ignored) on keys and certificates too.
            field("objectFormat", yaml_quote("PFX"));
        }
        match object.encoding {
            ObjectEncoding::Utf8 => {}
            ObjectEncoding::Base64 => field("objectEncoding", yaml_quote("base64")),
            ObjectEncoding::Hex => field("objectEncoding", yaml_quote("hex")),
        }
        if let Some(mode) = object.file_permission {
            field("filePermission", yaml_quote(&format!("0{mode:o}")));
        }
    }
    out
}

/// The paths a mount of `objects` writes: the file name, or `<name>/0`, `<name>/1`, … for an
/// object with a version history (capped at three here; the rule does not depend on the count).
pub fn payload_of(objects: &[KeyVaultObject]) -> Vec<File> {
    let mut files = Vec::new();
    for object in objects {
        let mode = object.file_permission.unwrap_or(0o644);
        if object.history() {
            for position in 0..object.version_history.min(3) {
                files.push(File {
                    path: format!("{}/{position}", object.file_name),
                    mode,
                    contents: Vec::new(),
                });
            }
        } else {
            files.push(File {
                path: object.file_name.clone(),
                mode,
                contents: Vec::new(),
            });
        }
    }
    files
}

/// Everything an accepted object list promises: Key Vault names, URL-safe versions, modes,
/// options only where they apply, and file names the writer accepts with no two colliding.
pub fn check_objects(objects: &[KeyVaultObject]) {
    for object in objects {
        assert!(
            !object.name.is_empty()
                && object.name.len() <= 127
                && object
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "accepted object name {:?}",
            object.name
        );
        assert!(
            !object.version.contains(['/', '?', '#', '%'])
                && !object.version.chars().any(char::is_control)
                && object.version != "latest",
            "accepted object version {:?}",
            object.version
        );
        assert!(object.file_permission.is_none_or(|m| m <= 0o777));
        if object.object_type != ObjectType::Secret {
            assert_eq!(
                object.encoding,
                ObjectEncoding::Utf8,
                "encoding on a non-secret"
            );
        }
        assert_eq!(object.alias, object.alias.trim());
        // The file name is the alias (or name), cleaned: it must pass the writer's rules itself.
        if let Err(e) = secrets_store_writer::validate_path(&object.file_name) {
            panic!(
                "accepted file name {:?} is refused by the writer: {e}",
                object.file_name
            );
        }
        assert!(path_is_valid(&object.file_name));
    }
    let payload = payload_of(objects);
    if let Err(e) = secrets_store_writer::validate_payload(&payload) {
        panic!("accepted objects give a payload the writer refuses: {e}");
    }
}

/// The writer's path rules (kubelet's), restated: non-empty, no NUL, at most 4096 bytes,
/// relative, every element non-empty and neither `.` nor `..` and at most 255 bytes, and the
/// first element not starting with `..`.
pub fn path_is_valid(path: &str) -> bool {
    if path.is_empty() || path.contains('\0') || path.len() > 4096 || path.starts_with('/') {
        return false;
    }
    let elements: Vec<&str> = path.split('/').collect();
    if elements
        .iter()
        .any(|e| e.is_empty() || *e == "." || *e == ".." || e.len() > 255)
    {
        return false;
    }
    !elements[0].starts_with("..")
}

/// The writer's payload rules, restated pairwise: every path valid, every mode within 0o777,
/// no path twice, and no path a directory of another.
pub fn payload_is_valid(files: &[File]) -> bool {
    if files
        .iter()
        .any(|f| !path_is_valid(&f.path) || f.mode > 0o777)
    {
        return false;
    }
    for (i, a) in files.iter().enumerate() {
        for b in &files[i + 1..] {
            let nested = |outer: &str, inner: &str| {
                inner.len() > outer.len()
                    && inner.starts_with(outer)
                    && inner.as_bytes()[outer.len()] == b'/'
            };
            if a.path == b.path || nested(&a.path, &b.path) || nested(&b.path, &a.path) {
                return false;
            }
        }
    }
    true
}

/// Whether a message is one safe log line: no control characters at all.
pub fn is_one_clean_line(message: &str) -> bool {
    !message.chars().any(char::is_control)
}

/// Wraps every non-empty string value of a JSON document (not the object keys) in `marker`, so a
/// test can tell whether any value reached a message.
pub fn mark_strings(value: &mut serde_json::Value, marker: char) {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => *s = format!("{marker}{s}{marker}"),
        serde_json::Value::Array(items) => {
            for item in items {
                mark_strings(item, marker);
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                mark_strings(item, marker);
            }
        }
        _ => {}
    }
}

/// Whether any object key of a JSON document contains `marker`.
pub fn keys_contain(value: &serde_json::Value, marker: char) -> bool {
    match value {
        serde_json::Value::Array(items) => items.iter().any(|i| keys_contain(i, marker)),
        serde_json::Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains(marker) || keys_contain(v, marker)),
        _ => false,
    }
}
