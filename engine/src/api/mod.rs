//! The public API: [`Engine`] and its builder, and one file per capability
//! of thin public methods, each a call of the operation path (`op`) with
//! the body that is the capability's own.

mod activity;
mod alerts;
mod audit;
mod consent;
mod csv;
mod customers;
mod guard;
mod import;
mod outbox;
mod plugins;
mod policies;
mod principals;
mod report;
mod retention;
mod sessions;
mod subject;
mod sweep;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use alerts::{Alert, Handling};
pub use consent::Lifecycle;
pub use customers::Query;
pub use guard::{Budget, Usage};
pub use import::{ImportOptions, ImportProgress, ImportReport, RowError};
pub use outbox::OutboxMessage;
pub use plugins::{PluginLogLine, check_plugin_commands};
pub use policies::InstalledPolicy;
pub use report::{FieldInventory, Inventory, PurposeReport};
pub use retention::{
    DEFAULT_SWEEP_BATCH, NOTICE_SENDER, NOTICE_TEMPLATE, RetentionChange, RetentionReport,
    SweepOptions, SweepProgress, Transition,
};
pub use subject::{Aggregate, DeletionRecord, QueuedMessage, SubjectExport};

use crate::audit::{AuditDurability, Batcher, Checkpoint, VerifyReport};
use crate::crypto::{CryptoError, Keyring, MasterKey};
use crate::model::{Clock, Schema};
use crate::op::{AuthSettings, Core, Entry, Host, Raise};
use crate::plugin::PluginSettings;
use crate::policy::{Policy, PolicyPack};
use crate::records::{MASKS_SEALED, Records};
use crate::store::{self, Location, Severity, StorageBackend, StoreError, StoredParams};
use crate::{Error, Result};

/// Builds an [`Engine`]. Defaults: the key store beside the data file
/// (`<path>.keys`), no mirrors, the bundled schema for a new database, the
/// first principal named `admin`, durable read auditing.
pub struct EngineBuilder {
    path: Option<PathBuf>,
    backend: Option<Box<dyn StorageBackend>>,
    key: Option<MasterKey>,
    key_store: Option<PathBuf>,
    mirrors: Vec<PathBuf>,
    schema: Option<Schema>,
    create: bool,
    admin: String,
    durability: AuditDurability,
    clock: Clock,
    auth: AuthSettings,
    plugins: PluginSettings,
}

impl EngineBuilder {
    /// The data file.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The master key (from a key file, an environment variable or a KMS).
    pub fn master_key(mut self, key: MasterKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Where the key store lives; `<path>.keys` by default.
    pub fn key_store(mut self, path: impl Into<PathBuf>) -> Self {
        self.key_store = Some(path.into());
        self
    }

    /// Another path that receives every key-store write (a mirror on another
    /// disk). Erasure destroys keys in every mirror.
    pub fn key_mirror(mut self, path: impl Into<PathBuf>) -> Self {
        self.mirrors.push(path.into());
        self
    }

    /// The schema of a database created by this builder (ignored when the
    /// database exists: its stored schema applies).
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Create the database if it does not exist (off by default).
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// The name of the first administrator of a new database.
    pub fn initial_admin(mut self, name: impl Into<String>) -> Self {
        self.admin = name.into();
        self
    }

    /// How read entries reach the audit chain; see [`AuditDurability`].
    pub fn audit_durability(mut self, durability: AuditDurability) -> Self {
        self.durability = durability;
        self
    }

    /// Where records, logins and sessions read the time; the system clock
    /// by default.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Login throttling and session lifetimes; see [`AuthSettings`].
    pub fn auth_settings(mut self, settings: AuthSettings) -> Self {
        self.auth = settings;
        self
    }

    /// Limits of the plugin sandbox; see [`PluginSettings`].
    pub fn plugin_settings(mut self, settings: PluginSettings) -> Self {
        self.plugins = settings;
        self
    }

    /// Keep the data file on a custom medium instead of `path` (the key
    /// store still needs `path` or [`EngineBuilder::key_store`]).
    pub fn storage_backend(mut self, backend: Box<dyn StorageBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Opens the engine's two files, checking the key first.
    fn open_files(&mut self, to_verify: bool) -> Result<(Keyring, PathBuf, store::open::Opened)> {
        let key = (self.key.take()).ok_or_else(|| Error::Config("no master key given".into()))?;
        let ring = Keyring::new(&key);
        drop(key);
        let key_store_path = match (&self.key_store, &self.path) {
            (Some(k), _) => k.clone(),
            (None, Some(p)) => with_suffix(p, ".keys"),
            (None, None) => {
                return Err(Error::Config("give a data path or a key store path".into()));
            }
        };
        let location = match self.backend.take() {
            Some(b) => Location::Backend(b),
            None => match &self.path {
                Some(p) => Location::Path(p),
                None => return Err(Error::Config("give a data path".into())),
            },
        };
        let schema = self.schema.clone().unwrap_or_default();
        let opened = store::open::open(store::open::Request {
            data: location,
            key_store: &key_store_path,
            mirrors: &self.mirrors,
            key_check: ring.check_value(),
            integrity: store::Integrity::new(ring.integrity_key()),
            create: self.create && !to_verify,
            to_verify,
            schema: schema.source(),
        });
        match opened {
            Err(StoreError::KeyCheckMismatch) => Err(CryptoError::WrongKey.into()),
            other => Ok((ring, key_store_path, other?)),
        }
    }

    /// Verifies a database without serving it: the audit chain (and,
    /// given one, against an exported checkpoint) and every authenticated
    /// record. Unlike [`Engine::verify_audit`], it needs none of the
    /// records an engine loads to serve (policy, plugins, settings), so it
    /// reports a tampered one instead of failing to open.
    pub fn verify(mut self, checkpoint: Option<&Checkpoint>) -> Result<VerifyReport> {
        let (ring, _, opened) = self.open_files(true)?;
        audit::verify_store(&opened.store, &ring, checkpoint)
    }

    /// Opens the engine: checks the key before writing anything, repairs
    /// after a crash, collects orphan keys.
    pub fn open(mut self) -> Result<Engine> {
        let (ring, key_store_path, opened) = self.open_files(false)?;
        let store::open::Opened { store, keys, meta } = opened;
        let schema = match meta.schema {
            Some(text) => Schema::from_toml(&text)?,
            None => self.schema.take().unwrap_or_default(),
        };
        let records = Records::new(schema, ring, self.clock, keys, meta.next_id);
        let core = Arc::new(Core::new(
            store,
            records,
            Batcher::new(self.durability),
            self.auth,
            Host::new(self.plugins),
            key_store_path,
            Policy::compile(&PolicyPack::default_pack())?,
        ));
        // Also after a crash between creating the file and its first admin.
        principals::bootstrap_admin(&core, &self.admin)?;
        policies::load(&core)?;
        retention::load(&core)?;
        seal_clear_masks(&core)?;
        seal_clear_message_params(&core)?;
        core.records
            .reload_retired(|| core.store.read(|r| r.retired_purposes()))?;
        core.store.read(|r| {
            core.records
                .settle_pending(|id| Ok(r.contains_customer(id)?))
        })?;
        // What the guard counted, as committed: budgets survive a restart.
        core.restore_guard()?;
        // A chain written before the indexes by actor and customer.
        audit::index_chain(&core)?;
        // A rewrite a crash or a failure cut short, the masks sealed above,
        // or a file last written by a version that left freed pages as
        // they were: done once the keys are settled. One that fails does
        // not keep the database closed: the file stays marked, the next
        // removal or open tries again, and staff see an alert.
        if let Err(e) = core.store.scrub_if_owed() {
            let said = e.to_string();
            let raise = Raise::new(
                "storage.rewrite_failed",
                "the data file",
                format!("the data file could not be rewritten after an erasure: {said}"),
                Severity::Critical,
            );
            core.raise_alert(raise)?;
        }
        core.refresh_subscriptions()?;
        // Events left queued by the last run (a crash, a close mid-way)
        // are delivered first.
        let deliverer = Arc::new(Deliverer::start(Arc::clone(&core))?);
        let flusher = match self.durability {
            AuditDurability::Buffered { flush_interval, .. } => {
                Some(Arc::new(Flusher::start(Arc::clone(&core), flush_interval)?))
            }
            AuditDurability::Durable => None,
        };
        Ok(Engine {
            _deliverer: deliverer,
            _flusher: flusher,
            core,
        })
    }
}

/// Seals the template parameters that messages queued by an older version
/// keep in the clear: once, in one audited transaction, marking the file
/// for the rewrite that clears the pages they free.
fn seal_clear_message_params(core: &Core) -> Result<()> {
    if core.store.read(|r| r.setting(PARAMS_SEALED))?.is_some() {
        return Ok(());
    }
    let entry = Entry::new("outbox.seal_params").target("message parameters kept in the clear");
    core.setup("setup", entry, |txn| {
        let mut sealed = false;
        for (id, mut message) in txn.messages(usize::MAX)? {
            let StoredParams::Clear(params) = &message.params else {
                continue;
            };
            sealed = true;
            match core.records.seal_message_params(message.customer, params) {
                Ok(params) => {
                    message.params = params;
                    txn.put_message(id, &message)?;
                }
                // Its customer's keys are gone: it could never be handed
                // out (its address cannot be opened).
                Err(_) => {
                    txn.remove_message(id)?;
                }
            }
        }
        if sealed {
            txn.owe_rewrite();
        }
        txn.put_setting(PARAMS_SEALED, b"done")?;
        Ok(sealed)
    })
}

/// The setting that says every message's parameters are sealed.
const PARAMS_SEALED: &str = "message_params_sealed";

/// Seals the masked renderings that a database made before they were
/// sealed keeps in the clear: once, in audited batches, each marking the
/// file for the rewrite that clears the pages they free (done at the end
/// of the open).
fn seal_clear_masks(core: &Core) -> Result<()> {
    if core.store.read(|r| r.setting(MASKS_SEALED))?.is_some() {
        return Ok(());
    }
    let mut after = 0;
    loop {
        let (ids, last) = core
            .store
            .read(|r| core.records.clear_masks(r, after, 1_000))?;
        if !ids.is_empty() {
            let keys = core.records.add_mask_keys(&ids)?;
            let target = format!("masked renderings of {} customers", keys.len());
            let entry = Entry::new("customer.seal_masks").target(target);
            core.setup("setup", entry, |txn| {
                for (id, mask) in &keys {
                    core.records.seal_clear_masks(txn, *id, mask)?;
                }
                txn.owe_rewrite();
                Ok(!keys.is_empty())
            })?;
        }
        match last {
            Some(last) => after = last,
            None => break,
        }
    }
    core.store
        .write(|w| Ok::<_, Error>(w.put_setting(MASKS_SEALED, b"done")?))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut os = path.as_os_str().to_owned();
    os.push(suffix);
    PathBuf::from(os)
}

/// The thread that commits buffered read entries every flush interval.
/// Dropping it stops and joins the thread, so once the last [`Engine`]
/// handle is gone the files are closed, not held by a thread in flight.
struct Flusher {
    core: Arc<Core>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn start(core: Arc<Core>, interval: std::time::Duration) -> Result<Self> {
        let worker = Arc::clone(&core);
        let thread = std::thread::Builder::new()
            .name("custodian-audit-flush".into())
            .spawn(move || {
                // A failed flush is kept by the batcher, which then refuses reads.
                worker
                    .batcher
                    .run_flusher(interval, &|records| worker.write_records(records));
            })
            .map_err(|e| Error::Config(format!("cannot start the audit flush thread: {e}")))?;
        Ok(Self {
            core,
            thread: Some(thread),
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.core.batcher.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread that delivers the event queue. Dropping it stops the thread
/// after the delivery in progress (which its plugin's deadline bounds) and
/// joins it; what is still queued is delivered after the next open.
struct Deliverer {
    core: Arc<Core>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Deliverer {
    fn start(core: Arc<Core>) -> Result<Self> {
        let worker = Arc::clone(&core);
        let thread = std::thread::Builder::new()
            .name("custodian-events".into())
            .spawn(move || worker.run_delivery())
            .map_err(|e| Error::Config(format!("cannot start the event delivery thread: {e}")))?;
        core.events.wake();
        Ok(Self {
            core,
            thread: Some(thread),
        })
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.core.events.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An open Custodian database. Cheap to clone; share it between threads.
#[derive(Clone)]
pub struct Engine {
    // INVARIANT: declared before `core`, so the last handle stops the
    // delivery and flush threads (which hold their own `Arc<Core>`)
    // before releasing `core`; dropping the last handle then closes the
    // files.
    _deliverer: Arc<Deliverer>,
    _flusher: Option<Arc<Flusher>>,
    core: Arc<Core>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("key_store", &self.core.key_store_path)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts configuring an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            path: None,
            backend: None,
            key: None,
            key_store: None,
            mirrors: Vec::new(),
            schema: None,
            create: false,
            admin: "admin".into(),
            durability: AuditDurability::Durable,
            clock: Clock::system(),
            auth: AuthSettings::default(),
            plugins: PluginSettings::default(),
        }
    }

    /// The schema in force.
    pub fn schema(&self) -> &Schema {
        &self.core.records.schema
    }

    /// The key store's path.
    pub fn key_store_path(&self) -> &Path {
        &self.core.key_store_path
    }

    /// How read entries are audited.
    pub fn audit_durability(&self) -> AuditDurability {
        self.core.batcher.mode()
    }

    /// Commits every queued read entry now.
    pub fn flush_audit(&self) -> Result<()> {
        self.core.flush_audit()
    }

    /// Waits until the event queue is delivered: every event queued before
    /// this call, and those their deliveries caused. Returns how many
    /// events are still queued: 0, unless a delivery failed for a reason
    /// of the host (the storage, the plugin runtime), in which case its
    /// event waits for the next write or open to try again, or a plugin is
    /// over a budget of its policy, in which case its events wait (in
    /// order) and are tried again a minute later.
    ///
    /// Events are written to a durable queue in the transaction of the
    /// change that caused them and delivered by a worker thread after the
    /// commit, at least once and in order per plugin: an operation never
    /// waits for a plugin. A host that wants a plugin's reaction before it
    /// goes on (or before it exits) calls this; each delivery is bounded
    /// by its plugin's deadline. Dropping the last handle stops the worker
    /// after the delivery in progress and leaves the rest for the next
    /// open.
    pub fn drain_events(&self) -> Result<u64> {
        self.core.events.wait_drained();
        Ok(self.core.store.read(|r| r.queued_event_count())?)
    }
}

#[cfg(test)]
mod tests;
