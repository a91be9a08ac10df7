//! The volume's tmpfs: mount it size-capped, recognise it again (also after a driver restart, from
//! `/proc/self/mountinfo`), check it is healthy, and unmount it.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

/// The source name our tmpfs mounts carry, so they can be told apart from anything else.
pub const MOUNT_SOURCE: &str = "secrets-store-wasm";

/// What is mounted at a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountState {
    /// Nothing is mounted there.
    None,
    /// Our tmpfs; `healthy` when its directory can be read.
    Ours { healthy: bool },
    /// Something else (file system type given) — never touched.
    Foreign(String),
}

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl MountEntry {
    pub fn is_ours(&self) -> bool {
        self.fstype == "tmpfs" && self.source == MOUNT_SOURCE
    }
}

/// All current mounts.
pub fn mount_table() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// The state of `target` (the topmost mount wins, as path lookup does).
pub fn state(target: &Path) -> io::Result<MountState> {
    let table = mount_table()?;
    Ok(match table.iter().rev().find(|m| m.mount_point == target) {
        None => MountState::None,
        Some(m) if m.is_ours() => MountState::Ours {
            healthy: std::fs::read_dir(target).is_ok(),
        },
        Some(m) => MountState::Foreign(m.fstype.clone()),
    })
}

/// Our mounts at or below `dir` (tests count them to prove nothing leaks).
pub fn ours_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(mount_table()?
        .into_iter()
        .filter(|m| m.is_ours() && m.mount_point.starts_with(dir))
        .map(|m| m.mount_point)
        .collect())
}

/// Mount a tmpfs of at most `size_bytes` at `target`: not executable, no devices, no set-id.
pub fn mount_tmpfs(target: &Path, size_bytes: u64) -> io::Result<()> {
    let options = std::ffi::CString::new(format!("size={size_bytes},mode=0755"))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mount options"))?;
    rustix::mount::mount(
        MOUNT_SOURCE,
        target,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        options.as_c_str(),
    )
    .map_err(io::Error::from)
}

/// Unmount `target`; if a process still holds it open, detach it (the kernel frees it when the last
/// user goes) rather than leave the volume behind.
pub fn unmount(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            tracing::warn!(target = %target.display(), "volume busy; detaching it lazily");
            rustix::mount::unmount(target, UnmountFlags::DETACH).map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options [optional…] - fstype source super-options
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let source = right.next()?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape(mount_point)),
                fstype: unescape(fstype),
                source: unescape(source),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 22 0:33 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/v\\040x/mount rw,nosuid,nodev,noexec shared:7 - tmpfs secrets-store-wasm rw,size=1024k,mode=755
37 22 0:34 / /tmp/other rw - tmpfs tmpfs rw
";
        let table = parse_mountinfo(text);
        assert_eq!(table.len(), 3);
        assert_eq!(
            table[1].mount_point,
            PathBuf::from("/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/v x/mount")
        );
        assert!(table[1].is_ours());
        assert!(!table[2].is_ours(), "a tmpfs of someone else's is not ours");
    }
}
