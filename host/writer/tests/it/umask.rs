//! Modes come from the payload, never from the process umask. Its own test binary because the
//! umask is process-wide and would leak into other tests running in parallel.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::{assert_layout, file, top_names};
use rustix::fs::Mode;
use secrets_store_writer::AtomicWriter;

#[test]
fn modes_ignore_the_umask() {
    for umask in [0o077, 0o777, 0o000] {
        let previous = rustix::process::umask(Mode::from_raw_mode(umask));
        let target = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::open(target.path()).unwrap();
        let payload = vec![
            file("public", 0o644, b"p"),
            file("exec", 0o755, b"e"),
            file("world", 0o666, b"w"),
            file("alias/0", 0o444, b"0"),
        ];
        writer.write(&payload).unwrap();
        rustix::process::umask(previous);

        for f in &payload {
            let meta = fs::metadata(target.path().join(&f.path)).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o7777,
                f.mode,
                "{} under umask {umask:o}",
                f.path
            );
        }
        let ts = assert_layout(target.path(), &top_names(&payload));
        for dir in [ts.clone(), format!("{ts}/alias")] {
            let meta = fs::symlink_metadata(target.path().join(&dir)).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o7777,
                0o755,
                "{dir} under umask {umask:o}"
            );
        }
    }
}
