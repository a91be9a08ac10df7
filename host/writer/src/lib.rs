//! Atomic, confined writer of a mount's files (kubelet AtomicWriter semantics).
//!
//! This crate is the only code in the driver that writes into a pod's volume. Two halves:
//!
//! * [`validate_path`] / [`validate_payload`]: the file-name rules kubelet applies to projected
//!   volumes (the class of bug behind CVE-2020-8567, where an object alias such as `../../x`
//!   escaped the mount). They are the contract's rule (defined in `secrets-store-contract`,
//!   re-exported here); every payload is checked as a whole before a single byte is written.
//! * [`AtomicWriter`]: writes a payload into a fresh hidden timestamped directory, then swaps the
//!   `..data` symlink to it in one `rename(2)`. Visible names are symlinks through `..data`, so a
//!   reader that opens `name` gets the old or the new file, never a torn one. All file-system
//!   access goes through a `cap-std` directory handle of the target and never follows a symlink,
//!   so nothing planted in the target can redirect a write or a removal outside it.
//!
//! Layout of a target after a write of `{tls.crt, alias/0}`:
//!
//! ```text
//! ..2024_05_01_12_00_00.1234567890/   the payload (mode 0755, files with their own modes)
//! ..data -> ..2024_05_01_12_00_00.1234567890
//! tls.crt -> ..data/tls.crt
//! alias -> ..data/alias
//! ```

mod tsdir;
mod writer;

// The payload rule is the contract's; re-exported for the writer's callers.
pub use secrets_store_contract::{
    MAX_ELEMENT_LEN, MAX_MODE, MAX_PATH_LEN, PathError, validate_path, validate_payload,
};
pub use writer::{AtomicWriter, DATA_DIR_NAME, WriteError, WriteOutcome};
