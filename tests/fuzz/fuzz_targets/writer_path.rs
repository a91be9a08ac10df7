//! One payload path, as `secrets_store_writer::validate_path` judges it.
//!
//! Beyond "no panic": the verdict equals the rules restated independently (relative, no `..`
//! element, no NUL, at most 4096 bytes, elements at most 255 bytes, first element not starting
//! with `..`, already clean); a refusal names the path and reads as one line (control characters
//! escaped). The Azure provider's own file-name cleaner must only ever produce paths the writer
//! accepts, and cleaning twice changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrets_store_azure_core::params::normalize_file_name;
use secrets_store_fuzz::{is_one_clean_line, path_is_valid};
use secrets_store_writer::validate_path;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    match validate_path(path) {
        Ok(()) => {
            assert!(path_is_valid(path), "accepted {path:?}");
            // Spelled out, the properties the rules exist for.
            assert!(!path.starts_with('/'));
            assert!(!path.split('/').any(|e| e == ".."));
            assert!(!path.contains('\0'));
            assert!(path.len() <= 4096);
            assert!(path.split('/').all(|e| !e.is_empty() && e.len() <= 255));
            assert!(!path.starts_with(".."));
        }
        Err(error) => {
            assert!(!path_is_valid(path), "refused {path:?}: {error}");
            assert_eq!(error.path().unwrap_or_default(), path);
            let message = error.to_string();
            assert!(is_one_clean_line(&message), "message {message:?}");
        }
    }
    if let Ok(cleaned) = normalize_file_name(path) {
        if let Err(e) = validate_path(&cleaned) {
            panic!("normalize_file_name({path:?}) = {cleaned:?}, which the writer refuses: {e}");
        }
        assert_eq!(normalize_file_name(&cleaned), Ok(cleaned.clone()));
    }
});
