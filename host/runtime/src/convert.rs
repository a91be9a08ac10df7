//! Conversions between the contract's types and the generated WIT types, and the cleaning of text
//! a guest chose before it travels into statuses, events and log lines.

use secrets_store_contract::{
    ErrorKind, File, MountRequest, MountResponse, ObjectVersion, ProviderError,
};

use crate::bindings::wit;

pub(crate) fn to_wit(request: &MountRequest) -> wit::MountRequest {
    wit::MountRequest {
        attributes: request
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        secrets: request
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        default_file_mode: request.default_file_mode,
        current_object_versions: request
            .current_object_versions
            .iter()
            .map(|v| wit::ObjectVersion {
                id: v.id.clone(),
                version: v.version.clone(),
            })
            .collect(),
    }
}

pub(crate) fn from_wit_response(response: wit::MountResponse) -> MountResponse {
    MountResponse {
        files: response
            .files
            .into_iter()
            .map(|f| File {
                path: f.path,
                mode: f.mode,
                contents: f.contents,
            })
            .collect(),
        object_versions: response
            .object_versions
            .into_iter()
            .map(|v| ObjectVersion {
                id: v.id,
                version: v.version,
            })
            .collect(),
    }
}

pub(crate) fn from_wit_error(error: wit::ProviderError) -> ProviderError {
    let kind = match error.kind {
        wit::ErrorKind::InvalidParameters => ErrorKind::InvalidParameters,
        wit::ErrorKind::Unauthenticated => ErrorKind::Unauthenticated,
        wit::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        wit::ErrorKind::NotFound => ErrorKind::NotFound,
        wit::ErrorKind::Throttled(ms) => ErrorKind::Throttled(ms),
        wit::ErrorKind::Upstream(status) => ErrorKind::Upstream(status),
        wit::ErrorKind::Unavailable => ErrorKind::Unavailable,
        wit::ErrorKind::Internal => ErrorKind::Internal,
    };
    ProviderError {
        kind,
        object: error.object,
        message: error.message,
    }
}

/// Text a guest chose, made fit to show: control characters escaped (a NUL or a line break must not
/// reach a gRPC status, an event or a log line raw) and the length bounded.
pub(crate) fn guest_text(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes + 4));
    for c in text.chars() {
        if out.len() >= max_bytes {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_is_escaped_and_bounded() {
        assert_eq!(
            guest_text("fi\0ne\nx\u{1b}[2J", 100),
            "fi\\u{0}ne\\nx\\u{1b}[2J"
        );
        assert_eq!(guest_text("plain", 5), "plain");
        assert_eq!(guest_text("plain!", 5), "plain…");
        let long = guest_text(&"é".repeat(5000), 4096);
        assert!(long.ends_with('…') && long.len() <= 4096 + '…'.len_utf8());
    }
}
