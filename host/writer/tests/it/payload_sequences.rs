//! Property test: any sequence of payloads, valid or not, leaves the target showing exactly the
//! last payload that was accepted, with the writer's layout and nothing leaked; a refused
//! payload and a repeated one change nothing on disk, and a fresh writer on the same target (a
//! driver restart) sees the same payload.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use crate::common::{as_map, assert_layout, snapshot, top_names, visible};
use proptest::prelude::*;
use secrets_store_contract::File;
use secrets_store_writer::{AtomicWriter, WriteError, validate_payload};

/// Path elements from a small alphabet so duplicates and file/directory clashes are common,
/// with now and then an element that breaks a rule.
fn element() -> impl Strategy<Value = String> {
    prop_oneof![
        14 => prop::sample::select(vec!["a", "b", "c", "key.pem"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["", ".", "..", "..data", "..x", "n\0l"]).prop_map(str::to_owned),
        // One byte over NAME_MAX: refused, where 255 bytes are accepted.
        1 => prop::sample::select(vec![255, 256]).prop_map(|len| "l".repeat(len)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => prop::collection::vec(element(), 1..=3).prop_map(|elements| elements.join("/")),
        1 => Just("/abs".to_owned()),
        1 => Just("a/".to_owned()),
    ]
}

/// Modes keep the owner-read bit so the test can read the files back without root.
fn mode() -> impl Strategy<Value = u32> {
    prop_oneof![
        20 => prop::sample::select(vec![0o400, 0o440, 0o444, 0o600, 0o640, 0o644, 0o700, 0o755, 0o777]),
        1 => Just(0o1644),
    ]
}

fn payload() -> impl Strategy<Value = Vec<File>> {
    let file = (path(), mode(), prop::collection::vec(any::<u8>(), 0..24)).prop_map(
        |(path, mode, contents)| File {
            path,
            mode,
            contents,
        },
    );
    prop_oneof![
        1 => Just(Vec::new()),
        8 => prop::collection::vec(file, 1..6),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Write(Vec<File>),
    /// The last accepted payload again, in reverse order.
    Repeat,
    /// A fresh writer on the same target, as after a driver restart: it must pick up the live
    /// payload from the directory alone.
    Reopen,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            8 => payload().prop_map(Step::Write),
            2 => Just(Step::Repeat),
            1 => Just(Step::Reopen),
        ],
        1..10,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn target_always_shows_the_last_accepted_payload(steps in steps()) {
        let target = tempfile::tempdir().unwrap();
        let mut writer = AtomicWriter::open(target.path()).unwrap();
        let mut last: Option<Vec<File>> = None;
        for step in steps {
            let files = match step {
                Step::Write(files) => files,
                Step::Repeat => match &last {
                    Some(files) => files.iter().rev().cloned().collect(),
                    None => continue,
                },
                Step::Reopen => {
                    writer = AtomicWriter::open(target.path()).unwrap();
                    let mut expected = last.clone().unwrap_or_default();
                    expected.sort_by(|a, b| a.path.cmp(&b.path));
                    prop_assert_eq!(writer.read_payload().unwrap(), expected);
                    continue;
                }
            };
            let before = snapshot(target.path());
            let result = writer.write(&files);
            match validate_payload(&files) {
                Err(expected) => {
                    match result {
                        Err(WriteError::InvalidPayload(error)) => prop_assert_eq!(error, expected),
                        other => prop_assert!(false, "invalid payload gave {:?}", other),
                    }
                    prop_assert_eq!(snapshot(target.path()), before);
                }
                Ok(()) => {
                    let outcome = result.unwrap();
                    let same = last.as_ref().is_some_and(|l| as_map(l) == as_map(&files));
                    prop_assert_eq!(outcome.changed, !same);
                    if same {
                        prop_assert_eq!(snapshot(target.path()), before);
                    } else {
                        prop_assert_eq!(outcome.files_written, files.len());
                    }
                    last = Some(files);
                }
            }
            match &last {
                Some(files) => {
                    assert_layout(target.path(), &top_names(files));
                    prop_assert_eq!(visible(target.path()), as_map(files));
                    let mut sorted = files.clone();
                    sorted.sort_by(|a, b| a.path.cmp(&b.path));
                    prop_assert_eq!(writer.read_payload().unwrap(), sorted);
                }
                None => {
                    prop_assert_eq!(visible(target.path()), BTreeMap::new());
                    prop_assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
                }
            }
        }
    }
}
