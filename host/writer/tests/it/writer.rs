//! The atomic writer on real directories: layout, no-op writes, removals, modes, nested paths,
//! rejected payloads, planted symlinks, crash leftovers, clearing and serialisation.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::common::{
    as_map, assert_layout, assert_layout_with, file, snapshot, top_names, visible,
};
use secrets_store_contract::File;
use secrets_store_writer::{AtomicWriter, WriteError, WriteOutcome};

fn payload_one() -> Vec<File> {
    vec![
        file("tls.crt", 0o644, b"-----BEGIN CERTIFICATE-----\n"),
        file("password", 0o600, b"hunter2"),
        file("alias/0", 0o644, b"zero"),
        file("alias/1", 0o400, b"one"),
    ]
}

fn sorted(mut files: Vec<File>) -> Vec<File> {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

#[test]
fn writes_payload_with_kubelet_layout() {
    let target = tempfile::tempdir().unwrap();
    let writer = AtomicWriter::open(target.path()).unwrap();
    assert_eq!(writer.target(), target.path());
    assert_eq!(writer.read_payload().unwrap(), vec![]);

    let payload = payload_one();
    let outcome = writer.write(&payload).unwrap();
    assert_eq!(
        outcome,
        WriteOutcome {
            changed: true,
            files_written: 4,
            bytes_written: payload.iter().map(|f| f.contents.len() as u64).sum(),
        }
    );
    let ts = assert_layout(target.path(), &top_names(&payload));
    // `..YYYY_MM_DD_HH_MM_SS.<random>`
    let stamp = &ts[2..21];
    assert!(
        stamp
            .chars()
            .enumerate()
            .all(|(i, c)| if [4, 7, 10, 13, 16].contains(&i) {
                c == '_'
            } else {
                c.is_ascii_digit()
            }),
        "{ts}"
    );
    assert_eq!(&ts[21..22], ".");
    assert!(ts.len() > 22);

    assert_eq!(visible(target.path()), as_map(&payload));
    assert_eq!(writer.read_payload().unwrap(), sorted(payload));
}

#[test]
fn nested_paths_are_reached_through_the_top_level_link() {
    let target = tempfile::tempdir().unwrap();
    let writer = AtomicWriter::open(target.path()).unwrap();
    let payload = vec![
        file("alias/0", 0o644, b"first"),
        file("alias/1", 0o644, b"second"),
        file("deep/er/still/leaf", 0o640, b"leaf"),
    ];
    writer.write(&payload).unwrap();
    assert_eq!(
        fs::read_link(target.path().join("alias")).unwrap(),
        Path::new("..data/alias")
    );
    assert_eq!(fs::read(target.path().join("alias/0")).unwrap(), b"first");
    assert_eq!(fs::read(target.path().join("alias/1")).unwrap(), b"second");
    assert_eq!(
        fs::read(target.path().join("deep/er/still/leaf")).unwrap(),
        b"leaf"
    );
    let names: BTreeSet<String> = fs::read_dir(target.path().join("alias"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["0".to_owned(), "1".to_owned()].into());
    // Payload directories are traversable by the pod's user whatever the umask.
    let ts = assert_layout(target.path(), &top_names(&payload));
    for dir in [
        ts.clone(),
        format!("{ts}/alias"),
        format!("{ts}/deep/er/still"),
    ] {
        let mode = fs::symlink_metadata(target.path().join(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "{dir}");
    }
}

#[test]
fn modes_are_applied() {
    let target = tempfile::tempdir().unwrap();
    let writer = AtomicWriter::open(target.path()).unwrap();
    let modes = [0o400, 0o600, 0o644, 0o440, 0o755, 0o777, 0o000, 0o111];
    let payload: Vec<File> = modes
        .iter()
        .map(|m| file(&format!("dir/m{m:o}"), *m, format!("{m:o}").as_bytes()))
        .collect();
    writer.write(&payload).unwrap();
    for m in modes {
        let meta = fs::metadata(target.path().join(format!("dir/m{m:o}"))).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, m, "mode {m:o}");
    }
    // A change of mode alone is a change.
    let mut chmodded = payload.clone();
    chmodded[0].mode = 0o644;
    assert!(writer.write(&chmodded).unwrap().changed);
    let meta = fs::metadata(target.path().join("dir/m400")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
}

#[test]
fn unchanged_payload_writes_nothing() {
    let target = tempfile::tempdir().unwrap();
    let writer = AtomicWriter::open(target.path()).unwrap();
    let payload = payload_one();
    writer.write(&payload).unwrap();
    let data_before = fs::read_link(target.path().join("..data")).unwrap();
    let before = snapshot(target.path());

    // Same payload, other order: still identical.
    let mut reordered = payload.clone();
    reordered.reverse();
    for candidate in [payload.clone(), reordered] {
        let outcome = writer.write(&candidate).unwrap();
        assert_eq!(
            outcome,
            WriteOutcome {
                changed: false,
                files_written: 0,
                bytes_written: 0
            }
        );
        assert_eq!(
            fs::read_link(target.path().join("..data")).unwrap(),
            data_before
        );
        // Same entries, inodes, modes, times and bytes: nothing was touched.
        assert_eq!(snapshot(target.path()), before);
    }

    // One byte more is a change; the timestamped directory is replaced.
    let mut changed = payload.clone();
    changed[1].contents.push(b'!');
    assert!(writer.write(&changed).unwrap().changed);
    assert_ne!(
        fs::read_link(target.path().join("..data")).unwrap(),
        data_before
    );
    assert!(!target.path().join(&data_before).exists());
    assert_eq!(visible(target.path()), as_map(&changed));
}

#[test]
fn removed_names_disappear_and_old_payload_directory_goes() {
    let target = tempfile::tempdir().unwrap();
    let writer = AtomicWriter::open(target.path()).unwrap();
    let first = payload_one();
    writer.write(&first).unwrap();
    let old_ts = assert_layout(target.path(), &top_names(&first));

    let second = vec![
        file("password", 0o600, b"new"),
        file("alias/1", 0o644, b"one"),
    ];
    assert!(writer.write(&second).unwrap().changed);
    let new_ts = assert_layout(target.path(), &top_names(&second));
    assert_ne!(old_ts, new_ts);
    assert!(fs::symlink_metadata(target.path().join("tls.crt")).is_err());
    assert!(fs::symlink_metadata(target.path().join(&old_ts)).is_err());
    assert!(fs::metadata(target.path().join("alias/0")).is_err());
    assert_eq!(visible(target.path()), as_map(&second));

    // An empty payload removes every visible name.
    assert!(writer.write(&[]).unwrap().changed);
    assert_layout(target.path(), &BTreeSet::new());
    assert!(visible(target.path()).is_empty());
    assert_eq!(writer.read_payload().unwrap(), vec![]);
}

#[test]
fn rejected_payload_changes_nothing() {
    let bad_payloads: Vec<Vec<File>> = vec![
        vec![
            file("ok", 0o644, b"fine"),
            file("../escape", 0o644, b"TOPSECRET"),
        ],
        vec![
            file("ok", 0o644, b"fine"),
            file("..data", 0o644, b"TOPSECRET"),
        ],
        vec![
            file("dup", 0o644, b"TOPSECRET"),
            file("dup", 0o644, b"TOPSECRET"),
        ],
        vec![
            file("a", 0o644, b"TOPSECRET"),
            file("a/b", 0o644, b"TOPSECRET"),
        ],
        vec![file("ok", 0o4755, b"TOPSECRET")],
        vec![file("/etc/shadow", 0o644, b"TOPSECRET")],
        vec![file("nul\0", 0o644, b"TOPSECRET")],
    ];

    // On a fresh target: nothing is created at all.
    let fresh = tempfile::tempdir().unwrap();
    let writer = AtomicWriter::open(fresh.path()).unwrap();
    for bad in &bad_payloads {
        let error = writer.write(bad).unwrap_err();
        assert!(matches!(error, WriteError::InvalidPayload(_)), "{error}");
        assert!(!error.to_string().contains("TOPSECRET"), "{error}");
        assert_eq!(fs::read_dir(fresh.path()).unwrap().count(), 0);
    }

    // Over a live payload: byte-identical afterwards, hidden entries included.
    let target = tempfile::tempdir().unwrap();
    let writer = AtomicWriter::open(target.path()).unwrap();
    writer.write(&payload_one()).unwrap();
    let before = snapshot(target.path());
    for bad in &bad_payloads {
        writer.write(bad).unwrap_err();
        assert_eq!(snapshot(target.path()), before);
    }
    assert_eq!(writer.read_payload().unwrap(), sorted(payload_one()));
}

#[test]
fn planted_symlinks_are_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("file"), b"outside file").unwrap();
    fs::create_dir(outside.path().join("dir")).unwrap();
    fs::write(outside.path().join("dir/keep"), b"keep me").unwrap();
    fs::write(outside.path().join("dir/x"), b"not yours").unwrap();
    let outside_before = snapshot(outside.path());

    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    // Visible names of the coming payload pointing outside.
    symlink(outside.path().join("file"), t.join("secret")).unwrap();
    symlink(outside.path().join("dir"), t.join("nested")).unwrap();
    // The swap link itself pointing outside, absolute and relative.
    symlink(outside.path().join("dir"), t.join("..data")).unwrap();
    // Leftover-shaped names that are links or hold links to outside: cleanup must only unlink.
    symlink(
        outside.path().join("dir"),
        t.join("..2020_01_01_00_00_00.link"),
    )
    .unwrap();
    fs::create_dir(t.join("..2020_01_01_00_00_00.dir")).unwrap();
    symlink(
        outside.path().join("dir"),
        t.join("..2020_01_01_00_00_00.dir/escape"),
    )
    .unwrap();
    symlink(outside.path().join("dir"), t.join("..data_tmp")).unwrap();
    // A real directory in the way of a visible name, with a link to outside inside.
    fs::create_dir(t.join("victim")).unwrap();
    symlink(outside.path().join("dir"), t.join("victim/escape")).unwrap();
    // A name the payload does not use, pointing outside: not ours, left alone.
    symlink(outside.path().join("dir/keep"), t.join("stranger")).unwrap();

    let writer = AtomicWriter::open(t).unwrap();
    let payload = vec![
        file("secret", 0o600, b"inside secret"),
        file("nested/x", 0o644, b"inside x"),
        file("victim", 0o644, b"inside victim"),
    ];
    writer.write(&payload).unwrap();
    assert_eq!(snapshot(outside.path()), outside_before);

    assert_layout_with(t, &top_names(&payload), &["stranger"]);
    assert_eq!(fs::read(t.join("secret")).unwrap(), b"inside secret");
    assert_eq!(fs::read(t.join("nested/x")).unwrap(), b"inside x");
    assert_eq!(fs::read(t.join("victim")).unwrap(), b"inside victim");
    assert_eq!(
        fs::read_link(t.join("stranger")).unwrap(),
        outside.path().join("dir/keep")
    );

    // Redirect a visible name and `..data` again after a write; repeat with the same payload
    // (repair path) and a new one (swap path), then clear.
    for round in 0..2 {
        fs::remove_file(t.join("secret")).unwrap();
        symlink(outside.path().join("file"), t.join("secret")).unwrap();
        let mut next = payload.clone();
        if round == 1 {
            next[0].contents = b"rotated".to_vec();
        }
        let outcome = writer.write(&next).unwrap();
        assert_eq!(outcome.changed, round == 1);
        assert_eq!(
            fs::read_link(t.join("secret")).unwrap(),
            Path::new("..data/secret")
        );
        assert_eq!(fs::read(t.join("secret")).unwrap(), next[0].contents);
        assert_eq!(snapshot(outside.path()), outside_before);
    }
    fs::remove_file(t.join("..data")).unwrap();
    symlink(outside.path().join("dir"), t.join("..data")).unwrap();
    assert!(matches!(
        writer.read_payload(),
        Err(WriteError::Corrupt { .. })
    ));
    writer.write(&payload).unwrap();
    assert_eq!(snapshot(outside.path()), outside_before);
    writer.clear().unwrap();
    assert_eq!(snapshot(outside.path()), outside_before);
}

#[test]
fn open_refuses_symlinks_and_non_directories() {
    let base = tempfile::tempdir().unwrap();
    let real = base.path().join("real");
    fs::create_dir(&real).unwrap();
    symlink(&real, base.path().join("link")).unwrap();
    fs::write(base.path().join("plain"), b"").unwrap();

    let error = AtomicWriter::open(&base.path().join("link")).unwrap_err();
    assert!(matches!(error, WriteError::NotADirectory { .. }), "{error}");
    let error = AtomicWriter::open(&base.path().join("plain")).unwrap_err();
    assert!(matches!(error, WriteError::NotADirectory { .. }), "{error}");
    let error = AtomicWriter::open(&base.path().join("missing")).unwrap_err();
    match &error {
        WriteError::Io { error: cause, .. } => {
            assert_eq!(cause.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("unexpected {other}"),
    }
    assert!(error.to_string().contains("missing"), "{error}");
    AtomicWriter::open(&real).unwrap();
}

#[test]
fn pre_existing_entries_with_payload_names_are_replaced() {
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    fs::write(t.join("secret"), b"stale plain file").unwrap();
    fs::create_dir_all(t.join("alias/sub")).unwrap();
    fs::write(t.join("alias/sub/old"), b"stale").unwrap();
    symlink("..data/elsewhere", t.join("cert")).unwrap();
    fs::write(t.join("unrelated"), b"user data").unwrap();

    let writer = AtomicWriter::open(t).unwrap();
    let payload = vec![
        file("secret", 0o600, b"fresh"),
        file("alias/0", 0o644, b"zero"),
        file("cert", 0o644, b"pem"),
    ];
    writer.write(&payload).unwrap();
    assert_layout_with(t, &top_names(&payload), &["unrelated"]);
    let mut expected = as_map(&payload);
    expected.insert("unrelated".to_owned(), (0o644, b"user data".to_vec()));
    let mut seen = visible(t);
    // The unrelated file's mode depends on the umask; only its presence and bytes matter.
    seen.get_mut("unrelated").unwrap().0 = 0o644;
    assert_eq!(seen, expected);
}

#[test]
fn crash_leftovers_are_removed_by_the_next_write() {
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    let writer = AtomicWriter::open(t).unwrap();
    let first = payload_one();
    writer.write(&first).unwrap();

    let plant = || {
        fs::create_dir(t.join("..2020_01_01_00_00_00.abc")).unwrap();
        fs::write(t.join("..2020_01_01_00_00_00.abc/half"), b"half written").unwrap();
        symlink("..2020_01_01_00_00_00.abc", t.join("..data_tmp")).unwrap();
        symlink("..data/ghost", t.join("..link_tmp")).unwrap();
        // A visible link of a name that left the payload, from a write interrupted after the swap.
        symlink("..data/ghost", t.join("ghost")).unwrap();
        // Not the writer's: stays.
        fs::write(t.join("user-note"), b"mine").unwrap();
        fs::create_dir(t.join("..not-a-timestamp")).unwrap();
    };

    // Unchanged payload: nothing written, leftovers still go.
    plant();
    let outcome = writer.write(&first).unwrap();
    assert!(!outcome.changed);
    let names = top_names(&first);
    // Only the writer's own leftovers go: the user's file and the odd `..` directory stay.
    let check = |names: &BTreeSet<String>| {
        assert!(
            fs::symlink_metadata(t.join("..not-a-timestamp"))
                .unwrap()
                .is_dir()
        );
        fs::remove_dir(t.join("..not-a-timestamp")).unwrap();
        assert_layout_with(t, names, &["user-note"]);
        fs::remove_file(t.join("user-note")).unwrap();
    };
    check(&names);

    // Changed payload: same.
    plant();
    let second = vec![file("password", 0o600, b"rotated")];
    assert!(writer.write(&second).unwrap().changed);
    check(&top_names(&second));
    assert_eq!(writer.read_payload().unwrap(), second);
}

#[test]
fn clear_removes_what_the_writer_created_only() {
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    let writer = AtomicWriter::open(t).unwrap();
    writer.write(&payload_one()).unwrap();
    fs::write(t.join("user-note"), b"mine").unwrap();
    symlink("..data_tmp", t.join("..data_tmp")).unwrap();
    writer.clear().unwrap();
    let left: Vec<String> = fs::read_dir(t)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec!["user-note".to_owned()]);
    assert_eq!(writer.read_payload().unwrap(), vec![]);
    // Clearing twice is fine, and the target can be written again.
    writer.clear().unwrap();
    writer.write(&payload_one()).unwrap();
    assert_eq!(visible(t).len(), 5);
}

#[test]
fn read_payload_reports_a_corrupt_target() {
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    let writer = AtomicWriter::open(t).unwrap();
    fs::create_dir(t.join("..data")).unwrap();
    let error = writer.read_payload().unwrap_err();
    assert!(matches!(error, WriteError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("..data"), "{error}");

    // A write replaces the stray directory.
    writer.write(&payload_one()).unwrap();
    assert_eq!(writer.read_payload().unwrap(), sorted(payload_one()));

    // A symlink smuggled into the payload directory is reported, not followed; a write then
    // replaces the payload although the bytes would compare equal through the link.
    let ts = fs::read_link(t.join("..data")).unwrap();
    fs::remove_file(t.join(&ts).join("password")).unwrap();
    fs::write(t.join("elsewhere"), b"hunter2").unwrap();
    symlink("../elsewhere", t.join(&ts).join("password")).unwrap();
    let error = writer.read_payload().unwrap_err();
    assert!(matches!(error, WriteError::Corrupt { .. }), "{error}");
    assert!(writer.write(&payload_one()).unwrap().changed);
    assert_eq!(writer.read_payload().unwrap(), sorted(payload_one()));
}

#[test]
fn concurrent_writers_on_one_target_are_serialised() {
    // Two handles on one directory (so the lock they share by device and inode is what keeps
    // them apart), writing from two threads.
    let target = tempfile::tempdir().unwrap();
    let writers = [
        AtomicWriter::open(target.path()).unwrap(),
        AtomicWriter::open(target.path()).unwrap(),
    ];
    std::thread::scope(|scope| {
        for (id, writer) in writers.iter().enumerate() {
            scope.spawn(move || {
                for round in 0..40 {
                    let payload = vec![
                        file("who", 0o644, format!("{id}").as_bytes()),
                        file(
                            &format!("only-{id}/n"),
                            0o644,
                            format!("{round}").as_bytes(),
                        ),
                    ];
                    writer.write(&payload).unwrap();
                }
            });
        }
    });
    // Whichever wrote last, the target holds exactly its payload and nothing leaked.
    let payload = writers[0].read_payload().unwrap();
    assert_eq!(payload.len(), 2);
    assert_layout(target.path(), &top_names(&payload));
    assert_eq!(visible(target.path()), as_map(&payload));
}
