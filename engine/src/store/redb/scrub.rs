//! Rewriting the data file so that nothing a transaction freed is left in
//! it. redb frees the pages a removal leaves without overwriting them: a
//! blind-index entry, a record or a masked rendering of an erased customer
//! would stay in the file's bytes until reused. A rewrite copies what is
//! live into a fresh file and puts it in place by an atomic rename, as the
//! key store does (`store::keys`).

use std::path::Path;
use std::sync::{Arc, PoisonError};

use redb::{Database, ReadableDatabase};

use super::super::StoreError;
use super::tables::{self, SETTING_SCRUB, SETTINGS};
use super::{Named, Store};

impl Store {
    /// Replaces the data file by a copy of what it holds now, without the
    /// mark that asked for the rewrite. Writes wait for it; reads go on,
    /// each on the file its snapshot began on. A crash leaves the old file
    /// (and its mark, so the next open rewrites it) or the new one.
    ///
    /// A caller-supplied medium has no path to rename over: its freed
    /// space is the medium's to clear.
    pub(crate) fn scrub(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let failed = |e: StoreError| StoreError::Rewrite(e.to_string());
        let writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = copy(&self.db(), path).map_err(failed)?;
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        *db = Arc::new(fresh);
        drop(db);
        drop(writing);
        Ok(())
    }
}

/// A copy of `db`, renamed over `path` and open.
fn copy(db: &Database, path: &Path) -> Result<Database, StoreError> {
    let io = |e: std::io::Error| StoreError::Backend(format!("{}: {e}", path.display()));
    let mut fresh = path.as_os_str().to_owned();
    fresh.push(".scrub");
    let fresh = std::path::PathBuf::from(fresh);
    match std::fs::remove_file(&fresh) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    super::super::files::create_private(&fresh).map_err(io)?;
    // Renamed only once open: after the rename the old file is gone, and
    // nothing may be written to it.
    let opened = fill(db, &fresh)
        .and_then(|()| Ok(Database::builder().open(&fresh)?))
        .and_then(|opened| std::fs::rename(&fresh, path).map(|()| opened).map_err(io));
    // A copy that failed (a full disk) is not left beside the file.
    let opened = opened.inspect_err(|_| {
        let _ = std::fs::remove_file(&fresh);
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename stands either way; only its durability is unknown,
        // and a file found marked at open is rewritten again.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(opened)
}

/// Copies what `db` holds into the new file at `fresh`, without the mark.
fn fill(db: &Database, fresh: &Path) -> Result<(), StoreError> {
    // A small cache bounds what the copy holds in memory: redb writes out
    // a transaction's pages beyond half of it before the commit.
    let to = Database::builder().set_cache_size(64 << 20).create(fresh)?;
    let from = db.begin_read()?;
    let txn = to.begin_write()?;
    tables::copy_all(&from, &txn)?;
    txn.open_table(SETTINGS.def())?.remove(SETTING_SCRUB)?;
    txn.commit()?;
    Ok(())
}
