//! Where a volume may be mounted: only a plain directory below the kubelet's pods directory, reached
//! without symlinks. A target path is input from the node's kubelet, but it decides where the driver
//! mounts and deletes, so it is checked like any other input.

use std::path::{Component, Path, PathBuf};

/// Why a target path is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("target path {0:?} is not an absolute, normalised path")]
    NotNormal(PathBuf),
    #[error("target path {path:?} is outside the kubelet pods directory {pods:?}")]
    Outside { path: PathBuf, pods: PathBuf },
    #[error("target path {path:?} goes through a symlink ({link:?})")]
    Symlink { path: PathBuf, link: PathBuf },
    #[error("target path {0:?} exists and is not a directory")]
    NotADirectory(PathBuf),
    #[error("target path {path:?}: parent directory {parent:?} does not exist")]
    NoParent { path: PathBuf, parent: PathBuf },
}

/// Check `path` as a publish or unpublish target. `pods_dir` is `<kubelet-dir>/pods`.
pub fn check(path: &Path, pods_dir: &Path) -> Result<(), TargetError> {
    let normal = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && path.as_os_str().len() < 4096;
    if !normal {
        return Err(TargetError::NotNormal(path.to_path_buf()));
    }
    let below = path
        .strip_prefix(pods_dir)
        .map(|rest| rest.components().count() > 0)
        .unwrap_or(false);
    if !below {
        return Err(TargetError::Outside {
            path: path.to_path_buf(),
            pods: pods_dir.to_path_buf(),
        });
    }
    // Every component from the pods directory down must be a real directory: a symlink planted by a
    // pod (or anyone) could redirect the mount or the clean-up elsewhere.
    let mut current = pods_dir.to_path_buf();
    for component in path.strip_prefix(pods_dir).unwrap_or(path).components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(TargetError::Symlink {
                    path: path.to_path_buf(),
                    link: current,
                });
            }
            Ok(meta) if !meta.is_dir() => return Err(TargetError::NotADirectory(current)),
            Ok(_) => {}
            Err(_) if current == path => break,
            Err(_) => {
                return Err(TargetError::NoParent {
                    path: path.to_path_buf(),
                    parent: current,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_directories_below_the_pods_dir() {
        let root = tempfile::tempdir().unwrap();
        let pods = root.path().join("pods");
        let volume = pods.join("uid/volumes/kubernetes.io~csi/vol");
        std::fs::create_dir_all(&volume).unwrap();
        let target = volume.join("mount");
        assert_eq!(
            check(&target, &pods),
            Ok(()),
            "missing leaf is fine (publish creates it)"
        );
        std::fs::create_dir(&target).unwrap();
        assert_eq!(check(&target, &pods), Ok(()));

        assert!(matches!(
            check(Path::new("relative/x"), &pods),
            Err(TargetError::NotNormal(_))
        ));
        assert!(matches!(
            check(&pods.join("uid/../../etc"), &pods),
            Err(TargetError::NotNormal(_))
        ));
        assert!(matches!(
            check(&root.path().join("elsewhere"), &pods),
            Err(TargetError::Outside { .. })
        ));
        assert!(
            matches!(check(&pods, &pods), Err(TargetError::Outside { .. })),
            "the pods dir itself is not a volume"
        );
        assert!(matches!(
            check(&pods.join("nope/volumes/x/mount"), &pods),
            Err(TargetError::NoParent { .. })
        ));

        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let link = volume.join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(
            matches!(check(&link, &pods), Err(TargetError::Symlink { .. })),
            "a symlinked target"
        );
        assert!(
            matches!(
                check(&link.join("mount"), &pods),
                Err(TargetError::Symlink { .. })
            ),
            "a symlink on the way"
        );
        let file = volume.join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check(&file, &pods),
            Err(TargetError::NotADirectory(_))
        ));
    }
}
