//! Helpers shared by the writer's integration tests: payload builders and views of a target
//! directory, both as a pod sees it (through the visible names) and as it really is on disk.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use secrets_store_contract::File;

pub fn file(path: &str, mode: u32, contents: &[u8]) -> File {
    File {
        path: path.to_owned(),
        mode,
        contents: contents.to_vec(),
    }
}

/// A payload as a map, the shape the visible view is compared against.
pub fn as_map(files: &[File]) -> BTreeMap<String, (u32, Vec<u8>)> {
    files
        .iter()
        .map(|f| (f.path.clone(), (f.mode, f.contents.clone())))
        .collect()
}

/// What a pod sees: every file reachable through the visible (non-`..`) names, following
/// symlinks, with its mode and contents.
pub fn visible(target: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(target).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("..") {
            collect_visible(&target.join(&name), &name, &mut out);
        }
    }
    out
}

fn collect_visible(path: &Path, rel: &str, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            collect_visible(&path.join(&name), &format!("{rel}/{name}"), out);
        }
    } else {
        let contents = fs::read(path).unwrap();
        out.insert(
            rel.to_owned(),
            (meta.permissions().mode() & 0o7777, contents),
        );
    }
}

/// One entry of the real on-disk tree (symlinks not followed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Link(PathBuf),
    Dir {
        mode: u32,
        ino: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
    },
    File {
        mode: u32,
        ino: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
        contents: Vec<u8>,
    },
}

/// The whole tree below `root`, hidden entries included, with inodes and times, so two
/// snapshots are equal only if nothing was created, removed, rewritten or chmod'ed.
pub fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    snapshot_into(root, "", &mut out);
    out
}

fn snapshot_into(dir: &Path, rel: &str, out: &mut BTreeMap<String, Entry>) {
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let path = dir.join(&name);
        let rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let mtime = (meta.mtime(), meta.mtime_nsec());
        let ctime = (meta.ctime(), meta.ctime_nsec());
        if meta.file_type().is_symlink() {
            out.insert(rel, Entry::Link(fs::read_link(&path).unwrap()));
        } else if meta.is_dir() {
            out.insert(
                rel.clone(),
                Entry::Dir {
                    mode,
                    ino: meta.ino(),
                    mtime,
                    ctime,
                },
            );
            snapshot_into(&path, &rel, out);
        } else {
            let contents = fs::read(&path).unwrap();
            out.insert(
                rel,
                Entry::File {
                    mode,
                    ino: meta.ino(),
                    mtime,
                    ctime,
                    contents,
                },
            );
        }
    }
}

/// Names of the top-level entries starting with `..`.
pub fn hidden_names(target: &Path) -> BTreeSet<String> {
    fs::read_dir(target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".."))
        .collect()
}

/// Asserts the writer's layout after a successful write of a payload whose top-level names are
/// `visible_names`: exactly `..data` and the one timestamped directory it points to as hidden
/// entries, and each visible name a link `name -> ..data/name`. Returns the timestamped name.
pub fn assert_layout(target: &Path, visible_names: &BTreeSet<String>) -> String {
    assert_layout_with(target, visible_names, &[])
}

/// [`assert_layout`] for a target that also holds entries the writer does not own (`others`).
pub fn assert_layout_with(
    target: &Path,
    visible_names: &BTreeSet<String>,
    others: &[&str],
) -> String {
    let data = fs::read_link(target.join("..data")).unwrap();
    let ts = data.to_str().unwrap().to_owned();
    assert!(ts.starts_with("..") && !ts.contains('/'), "..data -> {ts}");
    assert!(fs::symlink_metadata(target.join(&ts)).unwrap().is_dir());
    let expected_hidden: BTreeSet<String> = ["..data".to_owned(), ts.clone()].into();
    assert_eq!(hidden_names(target), expected_hidden);
    for name in visible_names {
        let link = fs::read_link(target.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(link, Path::new("..data").join(name));
    }
    let actual_visible: BTreeSet<String> = fs::read_dir(target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with(".."))
        .collect();
    let mut expected_visible = visible_names.clone();
    expected_visible.extend(others.iter().map(|o| (*o).to_owned()));
    assert_eq!(actual_visible, expected_visible);
    ts
}

pub fn top_names(files: &[File]) -> BTreeSet<String> {
    files
        .iter()
        .map(|f| f.path.split('/').next().unwrap().to_owned())
        .collect()
}
