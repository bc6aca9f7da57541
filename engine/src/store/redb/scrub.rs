//! Rewriting the data file so that nothing a transaction freed is left in
//! it. redb frees the pages a removal leaves without overwriting them: a
//! blind-index entry, a record or a masked rendering of an erased customer
//! would stay in the file's bytes until reused. A rewrite copies what is
//! live into a fresh file and puts it in place by an atomic rename, as the
//! key store does (`store::keys`).
//!
//! A file owes a rewrite when a transaction that removed personal data
//! marked it (`scrub_owed`, in that transaction), or when it was last
//! written by a version that did not rewrite (it lacks `rewritten`). The
//! copy drops the mark and records `rewritten`.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use redb::{Database, MultimapTableHandle, ReadableDatabase, ReadableTable, TableHandle};

use super::super::integrity::Integrity;
use super::super::{StoreError, files};
use super::tables::{self, SETTING_REWRITTEN, SETTING_SCRUB, SETTINGS};
use super::tagged;
use super::{Named, Open, Store};

impl Store {
    /// Whether the file owes a rewrite.
    pub(crate) fn owes_rewrite(&self) -> Result<bool, StoreError> {
        let reader = self.reader()?;
        let Some(settings) = reader.table(SETTINGS)? else {
            return Ok(false);
        };
        let marked = settings.get(SETTING_SCRUB)?.is_some();
        Ok(marked || settings.get(SETTING_REWRITTEN)?.is_none())
    }

    /// Replaces the data file, if it owes it, by a copy of what it holds
    /// now, without the mark. Writes wait for it (a rewrite another one did
    /// meanwhile is not done twice); snapshots go on, each on the file it
    /// began on. A crash leaves the old file (still marked, so the next
    /// open rewrites it) or the new one.
    ///
    /// A caller-supplied medium has no path to rename over: its freed
    /// space is the medium's to clear, and its mark stays.
    pub(crate) fn scrub_if_owed(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.maybe_owed.load(Ordering::Acquire) {
            return Ok(());
        }
        let writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.owes_rewrite()? {
            self.maybe_owed.store(false, Ordering::Release);
            return Ok(());
        }
        let (fresh, synced) = copy(&self.db(), path, &self.integrity).map_err(failed)?;
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        *db = Arc::new(fresh);
        drop(db);
        self.maybe_owed.store(false, Ordering::Release);
        drop(writing);
        synced.map_err(failed)
    }
}

/// A rewrite's failure, said once: the change that asked for it is saved.
fn failed(e: StoreError) -> StoreError {
    match e {
        StoreError::Backend(detail) => StoreError::Rewrite(detail),
        other => StoreError::Rewrite(other.to_string()),
    }
}

/// A copy of `db`, renamed over `path` and open; and whether the rename
/// was made durable (if not, the old file may come back after a crash,
/// still marked).
fn copy(
    db: &Database,
    path: &Path,
    integrity: &Integrity,
) -> Result<(Database, Result<(), StoreError>), StoreError> {
    let io = |e: std::io::Error| StoreError::Backend(format!("{}: {e}", path.display()));
    let fresh = files::scratch_beside(path).map_err(io)?;
    create_like(&fresh, path).map_err(io)?;
    // Renamed only once open: after the rename the old file is gone, and
    // nothing may be written to it.
    let opened = fill(db, &fresh, integrity)
        .and_then(|()| Ok(Database::builder().open(&fresh)?))
        .and_then(|opened| std::fs::rename(&fresh, path).map(|()| opened).map_err(io));
    // A copy that failed (a full disk) is not left beside the file.
    let opened = opened.inspect_err(|_| {
        let _ = std::fs::remove_file(&fresh);
    })?;
    let synced = files::sync_parent(path).map_err(io);
    Ok((opened, synced))
}

/// Makes `fresh` a new empty file, owner-only, with the owner and group of
/// `like`: a rewrite run by another account (root, say) must not take the
/// file away from the one the engine runs as. A file already at `fresh`
/// (a link planted there) is refused, never followed.
fn create_like(fresh: &Path, like: &Path) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        options.mode(0o600);
        let file = options.open(fresh)?;
        let owner = std::fs::metadata(like)?;
        let mine = file.metadata()?;
        if (owner.uid(), owner.gid()) != (mine.uid(), mine.gid()) {
            std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid()))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    options.open(fresh).map(drop)
}

/// Copies what `db` holds into the new file at `fresh`: without the mark,
/// with `rewritten`. A table this build does not know (written by a newer
/// version, or planted) is not dropped silently: the rewrite is refused.
fn fill(db: &Database, fresh: &Path, integrity: &Integrity) -> Result<(), StoreError> {
    let from = db.begin_read()?;
    let names = (from.list_tables()?.map(|t| t.name().to_string()))
        .chain(from.list_multimap_tables()?.map(|t| t.name().to_string()));
    for name in names {
        if !tables::KNOWN.contains(&name.as_str()) {
            return Err(StoreError::Backend(format!(
                "the data file holds a table this version does not know (`{name}`: written by a newer version, or by someone else), so it is not rewritten"
            )));
        }
    }
    // A small cache bounds what the copy holds in memory: redb writes out
    // a transaction's pages beyond half of it before the commit.
    let to = Database::builder().set_cache_size(64 << 20).create(fresh)?;
    let txn = to.begin_write()?;
    tables::copy_all(&from, &txn)?;
    {
        let mut settings = txn.open_table(SETTINGS.def())?;
        settings.remove(SETTING_SCRUB)?;
        let done = tagged::seal::<&str>(integrity, SETTINGS.name(), &SETTING_REWRITTEN, &[]);
        settings.insert(SETTING_REWRITTEN, done.as_ref())?;
    }
    txn.commit()?;
    Ok(())
}
