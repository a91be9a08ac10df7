//! The on-disk cache of compiled components, keyed by module digest and engine fingerprint, so a
//! driver restart does not recompile. The files are machine code the driver will run, so the
//! directory must belong to the driver's user and be writable by nobody else.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

pub(crate) struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// Create the directory if needed (mode 0700) and check that only the driver may write it.
    pub(crate) fn open(dir: PathBuf) -> Result<Self, LoadError> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let err = |what: &'static str| {
            let dir = dir.clone();
            move |source| LoadError::ArtifactCache { dir, what, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(err("create"))?;
        let meta = std::fs::metadata(&dir).map_err(err("stat"))?;
        // Compiled artifacts are machine code the driver will run: nobody else may write them.
        if meta.mode() & 0o022 != 0 || meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(LoadError::ArtifactCacheUnsafe { dir });
        }
        Ok(ArtifactCache { dir })
    }

    /// Where the component with `digest`, compiled by an engine with `fingerprint`, is kept.
    pub(crate) fn path(&self, digest: &str, fingerprint: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{fingerprint}.cwasm"))
    }

    #[allow(unsafe_code)]
    pub(crate) fn load(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
        // Read into memory rather than mapping the file: a mapped artifact truncated under a running
        // driver would crash it with SIGBUS.
        let bytes = std::fs::read(path)?;
        // SAFETY: the file was written by `store` of this runtime into a directory that only the
        // driver's user can write (checked by `open`), under a name that binds the module digest
        // and this engine's fingerprint; wasmtime checks the engine compatibility header again
        // when deserializing.
        unsafe { Component::deserialize(engine, &bytes) }
    }

    /// Write the compiled component to `path` atomically: a private temporary file in the same
    /// directory, synced, then renamed over the name.
    pub(crate) fn store(component: &Component, path: &Path) -> std::io::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        // tempfile creates it with mode 0600 and removes it if anything below fails.
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}
