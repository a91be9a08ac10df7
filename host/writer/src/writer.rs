//! The atomic writer: puts a validated payload into a target directory the way kubelet's
//! AtomicWriter does, confined to that directory.
//!
//! Confinement: the target is opened once (refusing a symlink) and every later operation is a
//! single-component `*at` call through `cap-std` handles that never follows a symlink: payload
//! directories are walked one element at a time with `O_NOFOLLOW | O_DIRECTORY`, files are opened
//! with `O_NOFOLLOW`, and entries the writer replaces (visible names, `..data`) are renamed over or
//! unlinked, which acts on the link itself. Whatever a pod or an attacker plants in the target,
//! the writer can only create, replace or delete entries inside it.
//!
//! Serialisation: one operation at a time per target directory in this process, whichever
//! `AtomicWriter` handle it goes through: handles share a mutex keyed by the directory's device
//! and inode. Leftover cleanup relies on it: a timestamped directory not pointed to by `..data`
//! is garbage only because no other write can be in progress. `flock(2)` on the target would
//! also cover other processes, but the pod sees the same directory and could hold that lock
//! forever, stalling the driver; the driver is the only process writing volumes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt};
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, OpenOptions, OpenOptionsExt, PermissionsExt};
use parking_lot::{Mutex, MutexGuard};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use secrets_store_contract::{File, PathError, shown_path as shown, validate_payload};

use crate::tsdir;

/// The symlink that names the live payload directory.
pub const DATA_DIR_NAME: &str = "..data";
/// The new `..data` link before it is renamed over the old one (kubelet's name).
const DATA_TMP_NAME: &str = "..data_tmp";
/// A visible-name link before it is renamed over a wrong entry of that name.
const LINK_TMP_NAME: &str = "..link_tmp";
/// Payload directories are traversable by everyone; each file carries its own mode. A volume
/// is read by the pod's user, which is rarely the driver's.
const DIR_MODE: u32 = 0o755;
/// Mode a payload directory or file has until it is complete, so nobody else can read a file
/// before its final (possibly stricter) mode is in place.
const PRIVATE_MODE: u32 = 0o700;
const PRIVATE_FILE_MODE: u32 = 0o600;
/// Attempts at finding an unused timestamped name before giving up.
const TS_NAME_ATTEMPTS: usize = 16;

/// What a [`AtomicWriter::write`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// False when the payload equalled the live one and nothing was written.
    pub changed: bool,
    /// Files written (0 when unchanged).
    pub files_written: usize,
    /// Bytes of file contents written (0 when unchanged).
    pub bytes_written: u64,
}

/// Why a target could not be opened, written, read or cleared.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid payload: {0}")]
    InvalidPayload(#[from] PathError),
    #[error("target {}: not a directory (a symlink is refused too)", shown_path(.target))]
    NotADirectory { target: PathBuf },
    /// An I/O failure. The cause is part of the message (operators see one line) and kept in
    /// `error` for callers that classify failures.
    #[error("target {}: cannot {op} {}: {error}", shown_path(.target), shown(.path))]
    Io {
        target: PathBuf,
        /// What was being done, e.g. `create file`.
        op: &'static str,
        /// The entry concerned, relative to the target.
        path: String,
        #[source]
        error: io::Error,
    },
    /// Something in the target is not what the writer leaves there (only [`AtomicWriter::read_payload`]
    /// reports this; a write replaces whatever it finds).
    #[error("target {}: {} {reason}", shown_path(.target), shown(.path))]
    Corrupt {
        target: PathBuf,
        path: String,
        reason: &'static str,
    },
}

fn shown_path(path: &Path) -> String {
    shown(&path.to_string_lossy())
}

/// Writes payloads into one target directory atomically. See the crate docs for the layout.
#[derive(Debug)]
pub struct AtomicWriter {
    dir: Dir,
    target: PathBuf,
    /// Shared by every handle on the same directory; see the module docs.
    lock: Arc<Mutex<()>>,
}

/// The per-directory locks of this process, by (device, inode). Entries whose writers are all
/// gone are pruned whenever a writer is opened.
static TARGET_LOCKS: Mutex<LockMap> = Mutex::new(BTreeMap::new());
type LockMap = BTreeMap<(u64, u64), Weak<Mutex<()>>>;

fn lock_for(device: u64, inode: u64) -> Arc<Mutex<()>> {
    let mut locks = TARGET_LOCKS.lock();
    locks.retain(|_, lock| lock.strong_count() > 0);
    if let Some(lock) = locks.get(&(device, inode)).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(Mutex::new(()));
    locks.insert((device, inode), Arc::downgrade(&lock));
    lock
}

/// Failures while walking a payload directory, mapped to a [`WriteError`] by the caller.
enum TreeError {
    Io {
        op: &'static str,
        path: String,
        error: io::Error,
    },
    Unexpected {
        path: String,
        reason: &'static str,
    },
}

impl AtomicWriter {
    /// Opens an existing target directory. The last component must not be a symlink: the
    /// target is the mount point the kubelet gave us, and a link there would redirect every
    /// write. The handle is kept; the path is only used in messages afterwards.
    pub fn open(target: &Path) -> Result<Self, WriteError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(target, flags, Mode::empty()).map_err(|errno| match errno {
            Errno::NOTDIR | Errno::LOOP => WriteError::NotADirectory {
                target: target.to_path_buf(),
            },
            other => WriteError::Io {
                target: target.to_path_buf(),
                op: "open target directory",
                path: ".".to_owned(),
                error: other.into(),
            },
        })?;
        let stat = rustix::fs::fstat(&fd).map_err(|errno| WriteError::Io {
            target: target.to_path_buf(),
            op: "inspect target directory",
            path: ".".to_owned(),
            error: errno.into(),
        })?;
        Ok(Self {
            dir: Dir::from_std_file(std::fs::File::from(fd)),
            target: target.to_path_buf(),
            lock: lock_for(stat.st_dev, stat.st_ino),
        })
    }

    /// The target directory this writer was opened on.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Makes `files` the content of the target.
    ///
    /// The payload is validated first; an invalid one changes nothing. A payload equal to the
    /// live one (same paths, modes and bytes) writes nothing and reports `changed: false`.
    /// Otherwise the payload goes into a new timestamped directory, visible names are linked,
    /// `..data` is swapped in one rename, then names that left the payload and the old
    /// directory are removed. Leftovers of an interrupted earlier write are removed first.
    ///
    /// An error before the swap leaves the previous payload live. An error after it (only
    /// cleanup remains then) is reported too, although the new payload is already live; the
    /// next write finishes the cleanup.
    pub fn write(&self, files: &[File]) -> Result<WriteOutcome, WriteError> {
        validate_payload(files)?;
        let _locked = self.lock();

        let current = self.current_data_dir()?;
        self.remove_leftovers(current.as_deref())?;
        let visible: BTreeSet<&str> = files.iter().map(|f| top_level(&f.path)).collect();

        if let Some(current) = current.as_deref()
            && self.payload_matches(current, files)
        {
            // Nothing to write, but a visible name someone removed or redirected is repaired.
            self.link_visible(&visible)?;
            self.remove_stale_visible(&visible)?;
            return Ok(WriteOutcome::default());
        }

        let new_dir = self.create_ts_dir()?;
        let mut linked = Vec::new();
        let prepared = self
            .fill(&new_dir, files)
            .and_then(|()| self.link_visible_into(&visible, &mut linked))
            .and_then(|()| self.swap_data(&new_dir));
        if let Err(error) = prepared {
            // Best effort: the previous payload is still live, and whatever is left here is
            // removed by the next write anyway.
            for name in &linked {
                let _ = self.dir.remove_file(name);
            }
            let _ = self.remove_any(&new_dir);
            let _ = self.dir.remove_file(DATA_TMP_NAME);
            return Err(error);
        }

        // The new payload is live from here on.
        self.sync_target()?;
        self.remove_stale_visible(&visible)?;
        if let Some(old) = current.as_deref() {
            self.remove_any(old)?;
        }
        self.sync_target()?;
        Ok(WriteOutcome {
            changed: true,
            files_written: files.len(),
            bytes_written: files.iter().map(|f| f.contents.len() as u64).sum(),
        })
    }

    /// The live payload, sorted by path; empty when nothing has been written yet.
    pub fn read_payload(&self) -> Result<Vec<File>, WriteError> {
        let _locked = self.lock();
        let Some(current) = self.current_data_dir()? else {
            return match self.dir.symlink_metadata(DATA_DIR_NAME) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(error) => Err(self.io("inspect", DATA_DIR_NAME)(error)),
                Ok(_) => Err(WriteError::Corrupt {
                    target: self.target.clone(),
                    path: DATA_DIR_NAME.to_owned(),
                    reason: "is not a symlink to a payload directory",
                }),
            };
        };
        self.read_tree(&current).map_err(|e| match e {
            TreeError::Io { op, path, error } => self.io(op, &path)(error),
            TreeError::Unexpected { path, reason } => WriteError::Corrupt {
                target: self.target.clone(),
                path,
                reason,
            },
        })
    }

    /// Removes everything the writer created: visible links into `..data`, `..data`, the
    /// payload directories and temporary links. Entries the writer did not create stay.
    pub fn clear(&self) -> Result<(), WriteError> {
        let _locked = self.lock();
        self.remove_stale_visible(&BTreeSet::new())?;
        self.remove_any(DATA_DIR_NAME)?;
        self.remove_leftovers(None)?;
        self.sync_target()
    }

    /// Serialises operations on this target (a panic in an earlier holder leaves nothing to
    /// distrust: every operation re-reads the directory's state).
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock()
    }

    /// Maps an I/O error to a [`WriteError::Io`] naming the operation and the entry.
    fn io<'a>(
        &'a self,
        op: &'static str,
        path: &'a str,
    ) -> impl FnOnce(io::Error) -> WriteError + 'a {
        move |error| WriteError::Io {
            target: self.target.clone(),
            op,
            path: path.to_owned(),
            error,
        }
    }

    /// The name of the live payload directory: the `..data` link's text if it has the shape of
    /// a timestamped name in the target. Anything else (missing, not a link, pointing outside)
    /// counts as no live payload, and is replaced by the next write without being followed.
    fn current_data_dir(&self) -> Result<Option<String>, WriteError> {
        match self.dir.symlink_metadata(DATA_DIR_NAME) {
            Ok(meta) if meta.is_symlink() => {}
            Ok(_) => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.io("inspect", DATA_DIR_NAME)(error)),
        }
        let text = self
            .dir
            .read_link_contents(DATA_DIR_NAME)
            .map_err(self.io("read link", DATA_DIR_NAME))?;
        Ok(text
            .to_str()
            .filter(|name| tsdir::is_ts_name(name))
            .map(str::to_owned))
    }

    /// Removes what an interrupted write leaves: timestamped directories other than `keep`,
    /// and the temporary links.
    fn remove_leftovers(&self, keep: Option<&str>) -> Result<(), WriteError> {
        for name in self.entry_names()? {
            let Some(name) = name.to_str() else { continue };
            let leftover = name == DATA_TMP_NAME
                || name == LINK_TMP_NAME
                || (tsdir::is_ts_name(name) && Some(name) != keep);
            if leftover {
                self.remove_any(name)?;
            }
        }
        Ok(())
    }

    fn entry_names(&self) -> Result<Vec<OsString>, WriteError> {
        let mut names = Vec::new();
        for entry in self.dir.entries().map_err(self.io("list", "."))? {
            names.push(entry.map_err(self.io("list", "."))?.file_name());
        }
        Ok(names)
    }

    /// Removes a top-level entry of any kind without following it; a directory goes with its
    /// contents (cap-std's `remove_dir_all` does not follow symlinks inside either).
    fn remove_any(&self, name: &str) -> Result<(), WriteError> {
        let result = match self.dir.symlink_metadata(name) {
            Ok(meta) if meta.is_dir() => self.dir.remove_dir_all(name),
            Ok(_) => self.dir.remove_file(name),
            Err(error) => Err(error),
        };
        match result {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(self.io("remove", name)(error))
            }
            _ => Ok(()),
        }
    }

    /// Whether the payload directory `current` holds exactly `files`. Any doubt (unreadable
    /// file, unexpected entry) answers no: rewriting is always safe.
    fn payload_matches(&self, current: &str, files: &[File]) -> bool {
        let Ok(old) = self.read_tree(current) else {
            return false;
        };
        let mut new: Vec<&File> = files.iter().collect();
        new.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        old.len() == new.len() && old.iter().zip(new).all(|(old, new)| old == new)
    }

    /// Reads a payload directory, sorted by path. Walks with one open directory at a time
    /// (reopened from the top for each level) so a deep but valid payload cannot exhaust file
    /// descriptors.
    fn read_tree(&self, ts_dir: &str) -> Result<Vec<File>, TreeError> {
        let mut files = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(rel) = pending.pop() {
            let shown_rel = |name: &str| join(&join(ts_dir, &rel), name);
            let dir = open_chain(&self.dir, ts_dir, &rel).map_err(|error| TreeError::Io {
                op: "open directory",
                path: join(ts_dir, &rel),
                error,
            })?;
            let mut empty = true;
            let entries = dir.entries().map_err(|error| TreeError::Io {
                op: "list",
                path: join(ts_dir, &rel),
                error,
            })?;
            for entry in entries {
                empty = false;
                let entry = entry.map_err(|error| TreeError::Io {
                    op: "list",
                    path: join(ts_dir, &rel),
                    error,
                })?;
                let os_name = entry.file_name();
                let Some(name) = os_name.to_str() else {
                    return Err(TreeError::Unexpected {
                        path: join(ts_dir, &rel),
                        reason: "holds an entry whose name is not UTF-8",
                    });
                };
                let file_type = entry.file_type().map_err(|error| TreeError::Io {
                    op: "inspect",
                    path: shown_rel(name),
                    error,
                })?;
                if file_type.is_dir() {
                    pending.push(join(&rel, name));
                } else if file_type.is_file() {
                    files.push(read_file(&dir, name, join(&rel, name)).map_err(|error| {
                        TreeError::Io {
                            op: "read file",
                            path: shown_rel(name),
                            error,
                        }
                    })?);
                } else {
                    return Err(TreeError::Unexpected {
                        path: shown_rel(name),
                        reason: "is neither a regular file nor a directory",
                    });
                }
            }
            // The writer never creates an empty directory; a payload cannot express one.
            if empty && !rel.is_empty() {
                return Err(TreeError::Unexpected {
                    path: join(ts_dir, &rel),
                    reason: "is an empty directory",
                });
            }
        }
        files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Creates a new, private timestamped directory and returns its name.
    fn create_ts_dir(&self) -> Result<String, WriteError> {
        let mut builder = DirBuilder::new();
        builder.mode(PRIVATE_MODE);
        let mut last_error = None;
        for _ in 0..TS_NAME_ATTEMPTS {
            let name = tsdir::new_name();
            match self.dir.create_dir_with(&name, &builder) {
                Ok(()) => return Ok(name),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = Some(error)
                }
                Err(error) => return Err(self.io("create payload directory", &name)(error)),
            }
        }
        let error = last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
        Err(self.io("create payload directory", "..<timestamp>")(error))
    }

    /// Writes every file into the new payload directory, each created private, filled, given
    /// its mode explicitly (the umask must not decide what a pod can read) and fsync'd; then
    /// the directories are fsync'd and the payload directory opened up to [`DIR_MODE`].
    fn fill(&self, ts_dir: &str, files: &[File]) -> Result<(), WriteError> {
        let mut sorted: Vec<&File> = files.iter().collect();
        sorted.sort_unstable_by(|a, b| a.path.cmp(&b.path));

        let root =
            open_subdir(&self.dir, ts_dir).map_err(self.io("open payload directory", ts_dir))?;
        let mut made_dirs: Vec<String> = Vec::new();
        let mut known_dirs: HashSet<String> = HashSet::new();
        // Sorted paths keep siblings together, so the parent handle is usually reused.
        let mut parent: Option<(String, Dir)> = None;

        for file in sorted {
            let shown_path = join(ts_dir, &file.path);
            let (parent_rel, name) = file.path.rsplit_once('/').unwrap_or(("", &file.path));
            if parent.as_ref().is_none_or(|(rel, _)| rel != parent_rel) {
                let dir =
                    self.make_dirs(&root, ts_dir, parent_rel, &mut known_dirs, &mut made_dirs)?;
                parent = Some((parent_rel.to_owned(), dir));
            }
            let Some((_, dir)) = parent.as_ref() else {
                unreachable!("parent handle set just above")
            };

            let mut options = OpenOptions::new();
            options
                .write(true)
                .create_new(true)
                .mode(PRIVATE_FILE_MODE)
                .follow(FollowSymlinks::No);
            let mut handle = dir
                .open_with(name, &options)
                .map_err(self.io("create file", &shown_path))?;
            handle
                .write_all(&file.contents)
                .map_err(self.io("write file", &shown_path))?;
            rustix::fs::fchmod(&handle, Mode::from_raw_mode(file.mode))
                .map_err(|errno| self.io("set mode of", &shown_path)(errno.into()))?;
            handle
                .sync_all()
                .map_err(self.io("sync file", &shown_path))?;
        }
        drop(parent);

        // Directory entries must be durable before `..data` points at them.
        for rel in made_dirs.iter().rev() {
            let shown_path = join(ts_dir, rel);
            let dir = open_chain(&self.dir, ts_dir, rel)
                .map_err(self.io("open directory", &shown_path))?;
            rustix::fs::fsync(&dir)
                .map_err(|errno| self.io("sync directory", &shown_path)(errno.into()))?;
        }
        rustix::fs::fchmod(&root, Mode::from_raw_mode(DIR_MODE))
            .map_err(|errno| self.io("set mode of", ts_dir)(errno.into()))?;
        rustix::fs::fsync(&root).map_err(|errno| self.io("sync directory", ts_dir)(errno.into()))
    }

    /// Creates the directories of `rel` below the payload root (each set to [`DIR_MODE`]) and
    /// returns a handle on the last one.
    fn make_dirs(
        &self,
        root: &Dir,
        ts_dir: &str,
        rel: &str,
        known: &mut HashSet<String>,
        made: &mut Vec<String>,
    ) -> Result<Dir, WriteError> {
        let mut current = root
            .try_clone()
            .map_err(self.io("open directory", ts_dir))?;
        if rel.is_empty() {
            return Ok(current);
        }
        let mut so_far = String::new();
        for element in rel.split('/') {
            so_far = join(&so_far, element);
            let shown_path = join(ts_dir, &so_far);
            let fresh = !known.contains(&so_far);
            if fresh {
                current
                    .create_dir(element)
                    .map_err(self.io("create directory", &shown_path))?;
            }
            current =
                open_subdir(&current, element).map_err(self.io("open directory", &shown_path))?;
            if fresh {
                rustix::fs::fchmod(&current, Mode::from_raw_mode(DIR_MODE))
                    .map_err(|errno| self.io("set mode of", &shown_path)(errno.into()))?;
                known.insert(so_far.clone());
                made.push(so_far.clone());
            }
        }
        Ok(current)
    }

    /// Points each visible name at `..data/<name>`.
    fn link_visible(&self, names: &BTreeSet<&str>) -> Result<(), WriteError> {
        self.link_visible_into(names, &mut Vec::new())
    }

    /// As [`Self::link_visible`], recording names that did not exist before in `created`.
    ///
    /// Runs before the swap: a new name then dangles for a moment (reads as absent, as it
    /// should while the old payload is live) and resolves the instant `..data` changes.
    fn link_visible_into(
        &self,
        names: &BTreeSet<&str>,
        created: &mut Vec<String>,
    ) -> Result<(), WriteError> {
        for &name in names {
            let want = data_link(name);
            match self.dir.symlink_metadata(name) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    self.dir
                        .symlink(&want, name)
                        .map_err(self.io("create link", name))?;
                    created.push(name.to_owned());
                }
                Err(error) => return Err(self.io("inspect", name)(error)),
                Ok(meta) if meta.is_symlink() => {
                    let text = self
                        .dir
                        .read_link_contents(name)
                        .map_err(self.io("read link", name))?;
                    if text != Path::new(&want) {
                        self.replace_with_link(name, &want)?;
                    }
                }
                // rename(2) cannot put a link over a directory; this one is not ours anyway.
                Ok(meta) if meta.is_dir() => {
                    self.dir
                        .remove_dir_all(name)
                        .map_err(self.io("remove", name))?;
                    self.dir
                        .symlink(&want, name)
                        .map_err(self.io("create link", name))?;
                }
                Ok(_) => self.replace_with_link(name, &want)?,
            }
        }
        Ok(())
    }

    /// Atomically replaces the entry `name` (never followed) by a link to `want`.
    fn replace_with_link(&self, name: &str, want: &str) -> Result<(), WriteError> {
        self.remove_any(LINK_TMP_NAME)?;
        self.dir
            .symlink(want, LINK_TMP_NAME)
            .map_err(self.io("create link", LINK_TMP_NAME))?;
        self.dir
            .rename(LINK_TMP_NAME, &self.dir, name)
            .map_err(self.io("replace", name))
    }

    /// Removes the writer's visible links (`name -> ..data/name`) for names not in `keep`.
    /// Only links of exactly that shape are the writer's; anything else is left alone.
    fn remove_stale_visible(&self, keep: &BTreeSet<&str>) -> Result<(), WriteError> {
        for name in self.entry_names()? {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("..") || keep.contains(name) {
                continue;
            }
            let is_link = self
                .dir
                .symlink_metadata(name)
                .map(|meta| meta.is_symlink())
                .unwrap_or(false);
            if !is_link {
                continue;
            }
            match self.dir.read_link_contents(name) {
                Ok(text) if text == Path::new(&data_link(name)) => {
                    match self.dir.remove_file(name) {
                        Err(error) if error.kind() != io::ErrorKind::NotFound => {
                            return Err(self.io("remove", name)(error));
                        }
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(self.io("read link", name)(error)),
            }
        }
        Ok(())
    }

    /// Makes `..data` point at `ts_dir` in one rename.
    fn swap_data(&self, ts_dir: &str) -> Result<(), WriteError> {
        self.remove_any(DATA_TMP_NAME)?;
        self.dir
            .symlink(ts_dir, DATA_TMP_NAME)
            .map_err(self.io("create link", DATA_TMP_NAME))?;
        // A real directory named `..data` (not ours: ours is a link) would make the rename
        // fail; it holds no live payload, so it goes.
        if let Ok(meta) = self.dir.symlink_metadata(DATA_DIR_NAME)
            && meta.is_dir()
        {
            self.remove_any(DATA_DIR_NAME)?;
        }
        self.dir
            .rename(DATA_TMP_NAME, &self.dir, DATA_DIR_NAME)
            .map_err(self.io("replace", DATA_DIR_NAME))
    }

    fn sync_target(&self) -> Result<(), WriteError> {
        rustix::fs::fsync(&self.dir).map_err(|errno| self.io("sync directory", ".")(errno.into()))
    }
}

/// Opens the directory `name` (one element) below `parent` without following a symlink.
///
/// cap-std's own `open_dir_nofollow` hands out `O_PATH` descriptors on Linux, which can be
/// walked but not fchmod'ed or fsync'ed; this opens a readable descriptor instead.
fn open_subdir(parent: &Dir, name: &str) -> io::Result<Dir> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .follow(FollowSymlinks::No)
        .maybe_dir(true)
        .custom_flags(OFlags::DIRECTORY.bits() as i32);
    Ok(Dir::from_std_file(
        parent.open_with(name, &options)?.into_std(),
    ))
}

/// Opens `ts_dir/rel` one element at a time, never following a symlink.
fn open_chain(top: &Dir, ts_dir: &str, rel: &str) -> io::Result<Dir> {
    let mut dir = open_subdir(top, ts_dir)?;
    for element in rel.split('/').filter(|e| !e.is_empty()) {
        dir = open_subdir(&dir, element)?;
    }
    Ok(dir)
}

/// Reads one regular file of a payload directory without following a symlink.
fn read_file(dir: &Dir, name: &str, path: String) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No);
    let mut handle = dir.open_with(name, &options)?;
    let meta = handle.metadata()?;
    let mut contents = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    handle.read_to_end(&mut contents)?;
    Ok(File {
        path,
        mode: meta.permissions().mode() & 0o7777,
        contents,
    })
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

fn data_link(name: &str) -> String {
    format!("{DATA_DIR_NAME}/{name}")
}

fn join(base: &str, name: &str) -> String {
    match (base.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => base.to_owned(),
        _ => format!("{base}/{name}"),
    }
}
