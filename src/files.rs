//! The files the command line writes (subject exports, audit checkpoints):
//! readable and writable by their owner only, whatever the umask.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result};

/// Writes `text` and a newline to `path`, replacing what was there, in a
/// file only its owner may read (0600 on Unix). An existing file is made
/// owner-only before anything is written to it.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    let fail = || format!("cannot write `{}`", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(fail)?;
    }
    file.set_len(0).with_context(fail)?;
    writeln!(file, "{text}").with_context(fail)?;
    file.sync_all().with_context(fail)
}
