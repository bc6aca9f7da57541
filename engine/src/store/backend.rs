//! Pluggable storage media for the data file.

use std::fmt::Debug;
use std::io;
use std::path::Path;

/// Where the data file's bytes live. The default is a file on disk; a host
/// may supply its own medium, and tests use one that fails on purpose.
pub trait StorageBackend: Debug + Send + Sync + 'static {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the medium is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `out` from `offset`; reading past the end is an error.
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()>;
    /// Grows or shrinks the medium; new bytes read as zero.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every write so far durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Writes `data` at `offset`.
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()>;
}

/// A data file on disk, as used by default.
#[derive(Debug)]
pub struct FileStorage(redb::backends::FileBackend);

impl FileStorage {
    /// Opens the file at `path`, or creates it readable by its owner only.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        super::files::create_private(path)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        redb::backends::FileBackend::new(file)
            .map(Self)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

impl StorageBackend for FileStorage {
    fn len(&self) -> io::Result<u64> {
        redb::StorageBackend::len(&self.0)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        redb::StorageBackend::read(&self.0, offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        redb::StorageBackend::set_len(&self.0, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        redb::StorageBackend::sync_data(&self.0)
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        redb::StorageBackend::write(&self.0, offset, data)
    }
}

/// Presents a [`StorageBackend`] to redb.
#[derive(Debug)]
pub(crate) struct BackendAdapter(pub(crate) Box<dyn StorageBackend>);

impl redb::StorageBackend for BackendAdapter {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write(offset, data)
    }
}
