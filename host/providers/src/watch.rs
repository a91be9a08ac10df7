//! The background watcher of the providers directory.
//!
//! A ConfigMap volume changes by writing a new hidden `..<timestamp>` directory and renaming a
//! `..data_tmp` symlink over `..data`; the visible names are symlinks through `..data`, so the files
//! themselves are never written in place. An inotify watch on the directory itself (not recursive)
//! sees those creations, renames and removals, as well as in-place edits of a plain directory.
//! Events are debounced (a burst becomes one reload, once the directory has been quiet for
//! [`WatchOptions::debounce`]), and a periodic rescan catches what inotify cannot see: modules
//! outside the directory (absolute paths into the image) and lost events.
//!
//! The watcher runs on its own thread because a reload compiles modules, which must not hold up
//! the async runtime.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::error::RegistryError;
use crate::registry::ProviderRegistry;

/// Timing of the watcher.
#[derive(Clone, Copy, Debug)]
pub struct WatchOptions {
    /// Quiet time after the last event before reloading.
    pub debounce: Duration,
    /// A burst of events longer than this reloads anyway.
    pub max_delay: Duration,
    /// Full rescan interval, whatever inotify says.
    pub rescan_interval: Duration,
}

impl Default for WatchOptions {
    /// 250 ms debounce, at most 2 s delay, a rescan every 60 s.
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            rescan_interval: Duration::from_secs(60),
        }
    }
}

enum Message {
    Changed,
    /// The watched directory itself went away; its watch is gone with it.
    Lost,
    Stop,
}

/// Keeps the watcher running; dropping it stops the watcher (a reload in progress finishes first,
/// on the watcher's thread).
pub struct WatchHandle {
    stop: mpsc::Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl WatchHandle {
    /// Stop the watcher and wait for its thread to end. Blocking.
    pub fn stop(mut self) {
        let _ = self.stop.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(Message::Stop);
    }
}

impl ProviderRegistry {
    /// Start watching the providers directory with the default [`WatchOptions`]. The watcher's
    /// first act is a full reload, so events between an earlier [`reload`](Self::reload) and the
    /// watch being set up are not lost. Without a providers directory there is nothing to watch:
    /// the handle is inert.
    pub fn watch(self: &Arc<Self>) -> Result<WatchHandle, RegistryError> {
        self.watch_with(WatchOptions::default())
    }

    pub fn watch_with(
        self: &Arc<Self>,
        options: WatchOptions,
    ) -> Result<WatchHandle, RegistryError> {
        let (tx, rx) = mpsc::channel();
        let Some(dir) = self.config().providers_dir.clone() else {
            return Ok(WatchHandle {
                stop: tx,
                thread: None,
            });
        };
        let watcher = start_watcher(&dir, tx.clone())?;
        let registry = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("providers-watch".into())
            .spawn({
                let tx = tx.clone();
                move || run(registry, dir, watcher, tx, rx, options)
            })
            .map_err(|source| RegistryError::WatchThread { source })?;
        Ok(WatchHandle {
            stop: tx,
            thread: Some(thread),
        })
    }
}

fn start_watcher(
    dir: &Path,
    tx: mpsc::Sender<Message>,
) -> Result<RecommendedWatcher, RegistryError> {
    let root = dir.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let message = match event {
            Ok(event) if ignorable(&event.kind) => return,
            Ok(event)
                if matches!(event.kind, EventKind::Remove(_))
                    && event.paths.iter().any(|p| p == &root) =>
            {
                Message::Lost
            }
            Ok(_) => Message::Changed,
            // Overflowed queues and the like: rescan.
            Err(_) => Message::Changed,
        };
        let _ = tx.send(message);
    })
    .map_err(|source| watch_error(dir, source))?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| watch_error(dir, source))?;
    Ok(watcher)
}

fn watch_error(dir: &Path, source: notify::Error) -> RegistryError {
    RegistryError::Watch {
        dir: dir.to_path_buf(),
        source,
    }
}

/// Reading the directory (as every reload does) must not trigger another reload.
fn ignorable(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
        EventKind::Access(_) => true,
        _ => false,
    }
}

fn run(
    registry: Weak<ProviderRegistry>,
    dir: PathBuf,
    watcher: RecommendedWatcher,
    tx: mpsc::Sender<Message>,
    rx: mpsc::Receiver<Message>,
    options: WatchOptions,
) {
    let mut watcher = Some(watcher);
    let reload = |why: &str| -> bool {
        let Some(registry) = registry.upgrade() else {
            return false;
        };
        tracing::debug!(dir = %dir.display(), why, "reloading providers");
        registry.reload();
        true
    };
    if !reload("initial load") {
        return;
    }
    let mut next_rescan = Instant::now() + options.rescan_interval;
    loop {
        let wait = next_rescan.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Message::Lost) => {
                tracing::warn!(dir = %dir.display(), "the providers directory went away; rescanning until it is back");
                watcher = None;
            }
            Ok(Message::Changed) => {
                match debounce(&rx, options) {
                    Quiet::Stop => return,
                    Quiet::Lost => watcher = None,
                    Quiet::Settled => {}
                }
                if !reload("directory changed") {
                    return;
                }
                next_rescan = Instant::now() + options.rescan_interval;
            }
            Err(RecvTimeoutError::Timeout) => {
                if watcher.is_none() {
                    watcher = start_watcher(&dir, tx.clone())
                        .inspect_err(|e| tracing::debug!(error = %e, "providers directory not watchable yet"))
                        .ok();
                }
                if !reload("periodic rescan") {
                    return;
                }
                next_rescan = Instant::now() + options.rescan_interval;
            }
        }
    }
}

enum Quiet {
    Settled,
    /// Settled, but the directory's watch was lost on the way.
    Lost,
    Stop,
}

/// Wait until no event arrived for `debounce` (or `max_delay` passed).
fn debounce(rx: &mpsc::Receiver<Message>, options: WatchOptions) -> Quiet {
    let until = Instant::now() + options.max_delay;
    let mut lost = false;
    loop {
        let wait = options
            .debounce
            .min(until.saturating_duration_since(Instant::now()));
        let message = if wait.is_zero() {
            Err(RecvTimeoutError::Timeout)
        } else {
            rx.recv_timeout(wait)
        };
        match message {
            Ok(Message::Changed) => {}
            Ok(Message::Lost) => lost = true,
            Err(RecvTimeoutError::Timeout) if lost => return Quiet::Lost,
            Err(RecvTimeoutError::Timeout) => return Quiet::Settled,
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return Quiet::Stop,
        }
    }
}
