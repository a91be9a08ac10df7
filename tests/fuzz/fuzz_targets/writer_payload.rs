//! A whole payload, as `secrets_store_writer::validate_payload` judges it and `AtomicWriter`
//! writes it.
//!
//! Input: one file per line, `MODE PATH` (octal mode) or just `PATH` (mode 0644); the contents
//! are derived from the line number.
//!
//! Beyond "no panic": the verdict equals the rules restated pairwise (every path valid, modes
//! within 0777, no path twice, no path the directory of another); a refusal reads as one line. An
//! accepted payload is written into a fresh directory (on tmpfs when there is one), and reading
//! it back gives exactly the payload; writing it again in another order changes nothing, and an
//! empty payload then leaves nothing visible.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use secrets_store_contract::File;
use secrets_store_fuzz::{is_one_clean_line, payload_is_valid};
use secrets_store_writer::{AtomicWriter, validate_payload};

/// Larger payloads are only validated: writing costs a directory walk per file.
const MAX_WRITTEN: usize = 16;

fn payload(text: &str) -> Vec<File> {
    text.split('\n')
        .enumerate()
        .map(|(line, entry)| {
            let (mode, path) = match entry.split_once(' ') {
                Some((mode, path))
                    if !mode.is_empty() && mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
                {
                    (u32::from_str_radix(mode, 8).unwrap_or(u32::MAX), path)
                }
                _ => (0o644, entry),
            };
            File {
                path: path.to_owned(),
                mode,
                contents: line.to_string().into_bytes(),
            }
        })
        .collect()
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("fuzz-writer").to_owned();
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return dir;
    }
    builder.tempdir().expect("a scratch directory")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = payload(text);
    match validate_payload(&files) {
        Ok(()) => assert!(payload_is_valid(&files), "accepted {files:?}"),
        Err(error) => {
            assert!(!payload_is_valid(&files), "refused {files:?}: {error}");
            if let Some(path) = error.path() {
                assert!(files.iter().any(|f| f.path == path), "error names {path:?}");
            }
            let message = error.to_string();
            assert!(is_one_clean_line(&message), "message {message:?}");
            return;
        }
    }
    if files.len() > MAX_WRITTEN {
        return;
    }

    // Owner-read on every file, so the read-back works without root too.
    let files: Vec<File> = files
        .into_iter()
        .map(|f| File {
            mode: f.mode | 0o400,
            ..f
        })
        .collect();
    let dir = scratch();
    let writer = AtomicWriter::open(dir.path()).expect("open the scratch target");
    let outcome = writer.write(&files).expect("write an accepted payload");
    assert!(outcome.changed);
    assert_eq!(outcome.files_written, files.len());
    let mut sorted = files.clone();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(writer.read_payload().expect("read back"), sorted);

    let reversed: Vec<File> = files.iter().rev().cloned().collect();
    let again = writer.write(&reversed).expect("rewrite");
    assert!(
        !again.changed,
        "the same payload in another order was rewritten"
    );
    assert_eq!(writer.read_payload().expect("read back"), sorted);

    writer.write(&[]).expect("write an empty payload");
    assert_eq!(writer.read_payload().expect("read back"), Vec::new());
    let visible = std::fs::read_dir(dir.path())
        .expect("list the target")
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
        .count();
    assert_eq!(visible, 0, "names left after an empty payload");
});
