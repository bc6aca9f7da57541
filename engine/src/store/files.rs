//! The files the engine makes: readable and writable by their owner only.
//!
//! A data file, a key store or a mirror holds nothing in the clear, yet
//! whoever reads it can copy it, and whoever reads the key file too can
//! open the copy. So every file is made owner-only (0600 on Unix) from the
//! moment it exists, and the mode is set on the open file rather than left
//! to the umask.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::StoreError;

/// Makes `path` an empty file only its owner may read or write, unless a
/// file is already there (it keeps its content and mode).
pub(crate) fn create_private(path: &Path) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(file) => owner_only(&file),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets `file` to owner-only, whatever the umask let through.
#[cfg(unix)]
fn owner_only(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn owner_only(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Where the file at `path` really is: a rewrite renames over the file,
/// not over a link to it, and a later change of the working directory
/// does not move it.
pub(crate) fn resolved(path: &Path) -> Result<PathBuf, StoreError> {
    std::fs::canonicalize(path).map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))
}

/// Where a rewrite of `path` makes its new file (`<path>.scrub`), with
/// what an earlier rewrite cut short left there removed.
pub(crate) fn scratch_beside(path: &Path) -> io::Result<PathBuf> {
    let mut fresh = path.as_os_str().to_owned();
    fresh.push(".scrub");
    let fresh = PathBuf::from(fresh);
    match std::fs::remove_file(&fresh) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(fresh),
    }
}

/// Makes a rename into the folder of `path` durable (the working
/// directory for a bare file name).
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
