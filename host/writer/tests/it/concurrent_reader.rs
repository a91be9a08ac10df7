//! A reader that keeps reading every file through the visible names while the writer swaps
//! payloads underneath it.
//!
//! Each name is opened on its own, so a pass that straddles a swap may legitimately see the old
//! generation for early names and the new one for later names (kubelet's volumes behave the
//! same; only resolving `..data` once gives a snapshot). What the `..data` swap does guarantee,
//! and what is asserted here:
//! * every file read is whole and of one generation (no torn or half-written file);
//! * within a pass and across passes generations never go backwards (the swap is a single
//!   atomic step);
//! * a pass during which `..data` did not change sees every file, all of one generation, and no
//!   older than the last write completed before the pass began.
//!
//! Synchronisation is by channel: after each write the writer waits until the reader reports a
//! complete unchanged pass that started after that write, so every generation is observed and
//! the reader is mid-pass whenever the next swap happens.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use crate::common::file;
use secrets_store_contract::File;
use secrets_store_writer::AtomicWriter;

const NAMES: [&str; 5] = ["a", "b", "c", "nested/x", "nested/y"];
const SWAPS: u64 = 300;

/// Generation `g` of the payload: every line of every file names the file and `g`.
fn payload(generation: u64) -> Vec<File> {
    // Two shapes of content (odd and even generations differ in size and mode) so the writer
    // really alternates between two kinds of payload, each stamped with its generation.
    let repeats = if generation.is_multiple_of(2) {
        64
    } else {
        200
    };
    let mode = if generation.is_multiple_of(2) {
        0o644
    } else {
        0o600
    };
    NAMES
        .iter()
        .map(|name| {
            file(
                name,
                mode,
                format!("{name}:{generation:08}\n")
                    .repeat(repeats)
                    .as_bytes(),
            )
        })
        .collect()
}

/// The generation stamped in a file, checking the file is whole and of one generation.
fn generation_of(name: &str, bytes: &[u8]) -> u64 {
    let text = std::str::from_utf8(bytes).unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_else(|| panic!("{name}: empty file"));
    assert!(
        lines.all(|line| line == first),
        "{name}: torn file (mixed lines)"
    );
    let count = text.lines().count();
    assert!(
        count == 64 || count == 200,
        "{name}: {count} lines, a partial file"
    );
    let (stamped_name, generation) = first.rsplit_once(':').unwrap();
    assert_eq!(stamped_name, name);
    generation.parse().unwrap()
}

#[derive(Debug, Default)]
struct ReaderStats {
    stable_passes: u64,
    straddling_passes: u64,
    mixed_straddling_passes: u64,
}

fn reader(
    target: &Path,
    latest: &AtomicU64,
    stop: &AtomicBool,
    done: &mpsc::Sender<u64>,
) -> ReaderStats {
    let mut stats = ReaderStats::default();
    let mut last_seen = 0;
    while !stop.load(Ordering::Acquire) {
        let floor = latest.load(Ordering::Acquire);
        let data_before = fs::read_link(target.join("..data")).unwrap();
        let mut generations = Vec::with_capacity(NAMES.len());
        let mut missing = 0;
        for name in NAMES {
            match fs::read(target.join(name)) {
                Ok(bytes) => generations.push(generation_of(name, &bytes)),
                // Possible only when the old payload directory is removed between resolving
                // `..data` and opening the file, i.e. in a pass that straddles a swap.
                Err(error) if error.kind() == ErrorKind::NotFound => missing += 1,
                Err(error) => panic!("{name}: {error}"),
            }
        }
        let data_after = fs::read_link(target.join("..data")).unwrap();

        if let Some(&first) = generations.first() {
            assert!(first >= last_seen, "went back from {last_seen} to {first}");
        }
        assert!(
            generations.windows(2).all(|w| w[0] <= w[1]),
            "generation went back within one pass: {generations:?}"
        );
        last_seen = generations.last().copied().unwrap_or(last_seen);

        if data_before == data_after {
            assert_eq!(
                missing, 0,
                "a file vanished while ..data stayed {data_before:?}"
            );
            assert!(
                generations.iter().all(|&g| g == generations[0]),
                "two generations in one pass with ..data unchanged: {generations:?}"
            );
            assert!(
                generations[0] >= floor,
                "saw {} after {floor} was written",
                generations[0]
            );
            stats.stable_passes += 1;
            if done.send(floor).is_err() {
                break;
            }
        } else {
            stats.straddling_passes += 1;
            if missing > 0 || generations.first() != generations.last() {
                stats.mixed_straddling_passes += 1;
            }
        }
    }
    stats
}

#[test]
fn readers_never_see_torn_or_backward_payloads() {
    let target = tempfile::tempdir().unwrap();
    let writer = AtomicWriter::open(target.path()).unwrap();
    writer.write(&payload(0)).unwrap();

    let latest = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let reader_thread = {
        let (target, latest, stop) = (target.path().to_owned(), latest.clone(), stop.clone());
        thread::spawn(move || reader(&target, &latest, &stop, &done_tx))
    };

    let started = std::time::Instant::now();
    'swaps: for generation in 1..=SWAPS {
        assert!(writer.write(&payload(generation)).unwrap().changed);
        latest.store(generation, Ordering::Release);
        // Wait for a whole unchanged pass that began after this write.
        loop {
            match done_rx.recv() {
                Ok(floor) if floor >= generation => break,
                Ok(_) => {}
                Err(_) => break 'swaps, // the reader died; joining shows why
            }
        }
    }
    stop.store(true, Ordering::Release);
    drop(done_rx);
    let stats = match reader_thread.join() {
        Ok(stats) => stats,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    eprintln!("{SWAPS} swaps in {:?}: {stats:?}", started.elapsed());
    assert!(stats.stable_passes >= SWAPS, "{stats:?}");
    assert_eq!(writer.read_payload().unwrap().len(), NAMES.len());
}
