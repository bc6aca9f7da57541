//! The facade: opening an engine and the one path every operation takes
//! (resolve the actor → decide → one write transaction with its audit entry
//! → the view the actor may see).

mod access;
mod activity;
mod admin;
mod auth;
mod commands;
mod customers;
mod import;
mod key_cache;
mod plugins;
mod policies;
mod privacy;
mod report;
mod retention;
mod subject;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};

pub use auth::{AuthSettings, Clock, LOGIN_FAILED, Session, SessionInfo, TotpEnrollment};
pub use customers::Query;
pub use import::{ImportOptions, ImportProgress, ImportReport, RowError};
use key_cache::{KEY_CACHE_CAPACITY, KeyCache};
pub use plugins::{Alert, CallReport, OutboxMessage, PluginLogLine};
pub use policies::InstalledPolicy;
pub use privacy::{Lifecycle, STEWARD_ROLE};
pub use report::{FieldInventory, Inventory, PurposeReport};
pub use retention::{
    DEFAULT_SWEEP_BATCH, NOTICE_SENDER, NOTICE_TEMPLATE, RetentionChange, RetentionReport,
    SweepOptions, SweepProgress, Transition,
};
pub use subject::{Aggregate, DeletionRecord, QueuedMessage, SubjectExport};

use crate::audit::{self, AuditDurability, Batcher, Outcome, Record};
use crate::crypto::{CryptoError, Keyring, MasterKey};
use crate::identity::{ADMIN_ROLE, Actor, PrincipalKind};
use crate::model::Schema;
use crate::plugin::PluginSettings;
use crate::policy::{Policy, PolicyPack};
use crate::store::{
    Identity, KeyStore, Location, Reader, StorageBackend, Store, StoreError, StoredPrincipal,
};
use crate::{Error, Result};

/// Who is acting, and for which purpose. Every operation takes one; both are
/// written to the audit entry.
///
/// A context is made either from a session token that [`Engine::login`]
/// issued ([`Context::session`]), or by a host application that
/// authenticates its users itself and vouches for them
/// ([`Context::new`]: the host capability; only code holding the engine,
/// and so the master key, can use it).
#[derive(Clone, PartialEq, Eq)]
pub struct Context {
    principal: String,
    purpose: String,
    session: Option<String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("principal", &self.principal)
            .field("purpose", &self.purpose)
            .field("session", &self.session.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Context {
    /// `principal`, authenticated by the host, acting for `purpose` (e.g.
    /// `sales_contact`, `support`).
    pub fn new(principal: impl Into<String>, purpose: impl Into<String>) -> Self {
        Self {
            principal: principal.into(),
            purpose: purpose.into(),
            session: None,
        }
    }

    /// Whoever holds the session `token` (from [`Engine::login`]), acting
    /// for `purpose`. An expired or revoked token fails every call.
    pub fn session(token: impl Into<String>, purpose: impl Into<String>) -> Self {
        Self {
            principal: "(session)".into(),
            purpose: purpose.into(),
            session: Some(token.into()),
        }
    }

    /// The acting principal's name.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The stated purpose.
    pub fn purpose(&self) -> &str {
        &self.purpose
    }
}

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

    /// Where logins and sessions read the time; the system clock by default.
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

    /// Opens the engine: checks the key before writing anything, repairs
    /// after a crash, collects orphan keys.
    pub fn open(self) -> Result<Engine> {
        let key = self
            .key
            .ok_or_else(|| Error::Config("no master key given".into()))?;
        let ring = Keyring::new(&key);
        drop(key);
        let key_store_path = match (&self.key_store, &self.path) {
            (Some(k), _) => k.clone(),
            (None, Some(p)) => with_suffix(p, ".keys"),
            (None, None) => {
                return Err(Error::Config("give a data path or a key store path".into()));
            }
        };
        let data_exists = match (&self.backend, &self.path) {
            (Some(b), _) => !b
                .is_empty()
                .map_err(|e| StoreError::Backend(e.to_string()))?,
            (None, Some(p)) => Store::exists(p),
            (None, None) => return Err(Error::Config("give a data path".into())),
        };
        let keys_exist = key_store_path.exists();
        // Check the key against both files read-only: a wrong key writes nothing.
        if keys_exist {
            check(KeyStore::peek_key_check(&key_store_path), &ring)?;
        }
        let mut data_initialized = data_exists;
        if data_exists
            && self.backend.is_none()
            && let Some(p) = &self.path
        {
            let peeked = Store::peek_key_check(p);
            // An empty meta table: creation was interrupted before the
            // file's identity was written.
            data_initialized = !matches!(peeked, Ok(None));
            check(peeked, &ring)?;
        }
        if data_initialized && !keys_exist {
            return Err(StoreError::Missing(key_store_path.display().to_string()).into());
        }
        if !data_exists && !self.create {
            let shown = self
                .path
                .as_ref()
                .map_or_else(|| "the storage backend".into(), |p| p.display().to_string());
            return Err(StoreError::Missing(shown).into());
        }
        let schema = self.schema.unwrap_or_default();
        let creating = !data_exists;
        let keys = match KeyStore::open(
            &key_store_path,
            &self.mirrors,
            ring.check_value(),
            (creating || !keys_exist).then(crate::crypto::random_bytes::<16>),
        ) {
            Err(StoreError::KeyCheckMismatch) => return Err(CryptoError::WrongKey.into()),
            other => other?,
        };
        // A new data file may finish an interrupted creation's key store,
        // but never adopt one that already holds another database's keys.
        if !data_initialized && keys_exist && keys.holds_keys()? {
            return Err(StoreError::KeyStoreInUse(key_store_path.display().to_string()).into());
        }
        // A key store left by an interrupted `create` keeps its id: the new
        // data file takes it, so the pair opens.
        let store_id = keys
            .store_id()?
            .ok_or_else(|| StoreError::Corrupt("key store without an id".into()))?;
        let location = match self.backend {
            Some(b) => Location::Backend(b),
            None => match &self.path {
                Some(p) => Location::Path(p),
                None => return Err(Error::Config("give a data path".into())),
            },
        };
        let (store, meta) = Store::open(location, creating)?;
        // A data file whose creation was interrupted before its identity
        // was written is finished now; any other must match the key.
        let initialized = meta.key_check.is_some();
        if initialized && meta.key_check != Some(ring.check_value()) {
            return Err(CryptoError::WrongKey.into());
        }
        if !initialized && !creating && !self.create {
            return Err(StoreError::Corrupt(
                "the database was never initialized; open it with create enabled".into(),
            )
            .into());
        }
        let identity = (!initialized).then(|| Identity {
            key_check: ring.check_value(),
            store_id,
            schema: schema.source(),
        });
        if meta.store_id.is_some() && keys.store_id()? != meta.store_id {
            return Err(StoreError::KeyStoreMismatch(key_store_path.display().to_string()).into());
        }
        store.prepare(identity)?;
        let schema = match meta.schema {
            Some(text) => Schema::from_toml(&text)?,
            None => schema,
        };
        let inner = Arc::new(Inner {
            pending: Mutex::new(HashMap::new()),
            store,
            key_cache: KeyCache::new(KEY_CACHE_CAPACITY),
            keys,
            ring,
            schema,
            batcher: Batcher::new(self.durability),
            next_id: AtomicU64::new(meta.next_id),
            key_store_path,
            clock: self.clock,
            auth: self.auth,
            policy: RwLock::new(Arc::new(Policy::compile(&PolicyPack::default_pack())?)),
            plugins: plugins::Plugins::new(self.plugins),
            retention: RwLock::new(Arc::new(crate::privacy::RetentionPolicy::default())),
            retired: RwLock::new(Arc::default()),
        });
        // Also after a crash between creating the file and its first admin.
        inner.bootstrap_admin(&self.admin)?;
        inner.load_policy()?;
        inner.load_retention()?;
        inner.load_retired()?;
        inner.collect_orphan_keys()?;
        inner.refresh_subscriptions()?;
        let flusher = match self.durability {
            AuditDurability::Buffered { flush_interval, .. } => Some(Arc::new(Flusher::start(
                Arc::clone(&inner),
                flush_interval,
            )?)),
            AuditDurability::Durable => None,
        };
        Ok(Engine {
            _flusher: flusher,
            inner,
        })
    }
}

fn check(found: Result<Option<[u8; 32]>, StoreError>, ring: &Keyring) -> Result<()> {
    match found {
        Ok(Some(check)) if check != ring.check_value() => Err(CryptoError::WrongKey.into()),
        // A file that needs crash repair cannot be opened read-only; the
        // key is checked again after the repairing open, before any write.
        Ok(_) | Err(_) => Ok(()),
    }
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
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn start(inner: Arc<Inner>, interval: std::time::Duration) -> Result<Self> {
        let worker = Arc::clone(&inner);
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
            inner,
            thread: Some(thread),
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.inner.batcher.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An open Custodian database. Cheap to clone; share it between threads.
#[derive(Clone)]
pub struct Engine {
    // INVARIANT: declared before `inner`, so the last handle stops the
    // flush thread (which holds its own `Arc<Inner>`) before releasing
    // `inner`; dropping the last handle then closes the files.
    _flusher: Option<Arc<Flusher>>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("key_store", &self.inner.key_store_path)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    /// Operations in flight holding a key-store pending mark, per id: a
    /// mark is cleared only when the last of them is done with it.
    pending: Mutex<HashMap<u64, u32>>,
    store: Store,
    key_cache: KeyCache,
    keys: KeyStore,
    ring: Keyring,
    schema: Schema,
    batcher: Batcher,
    next_id: AtomicU64,
    key_store_path: PathBuf,
    clock: Clock,
    auth: AuthSettings,
    /// The policy in force; replaced whole by an install.
    policy: RwLock<Arc<Policy>>,
    /// The plugin host.
    plugins: plugins::Plugins,
    /// The retention policy in force; replaced whole by an install.
    retention: RwLock<Arc<crate::privacy::RetentionPolicy>>,
    /// Purposes the company no longer pursues: they give no basis.
    retired: RwLock<Arc<std::collections::BTreeSet<String>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.flush_audit();
    }
}

pub(crate) fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
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
        &self.inner.schema
    }

    /// The key store's path.
    pub fn key_store_path(&self) -> &Path {
        &self.inner.key_store_path
    }

    /// How read entries are audited.
    pub fn audit_durability(&self) -> AuditDurability {
        self.inner.batcher.mode()
    }

    /// Commits every queued read entry now.
    pub fn flush_audit(&self) -> Result<()> {
        self.inner.flush_audit()
    }
}

/// What a [`Record`] is about, filled in by each operation.
pub(crate) struct Event<'a> {
    pub(crate) action: &'a str,
    pub(crate) target: Option<String>,
    pub(crate) customers: Vec<u64>,
    pub(crate) fields: Vec<String>,
}

impl<'a> Event<'a> {
    pub(crate) fn new(action: &'a str) -> Self {
        Self {
            action,
            target: None,
            customers: Vec::new(),
            fields: Vec::new(),
        }
    }

    pub(crate) fn customer(mut self, id: u64) -> Self {
        self.target = Some(format!("customer {id}"));
        self.customers = vec![id];
        self
    }

    pub(crate) fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub(crate) fn fields(mut self, fields: Vec<String>) -> Self {
        self.fields = fields;
        self
    }

    /// The audit record. Caller-supplied text (principal, purpose, search
    /// terms) is cut to a bounded length: a refused call by an unknown
    /// principal must not be able to write an entry of any size.
    pub(crate) fn record(self, ctx: &Context, outcome: Outcome) -> Record {
        Record {
            at: now_micros(),
            actor: clip(&ctx.principal, 128),
            action: self.action.to_string(),
            target: self.target.map(|t| clip(&t, 256)),
            customers: self.customers,
            fields: self.fields,
            purpose: clip(&ctx.purpose, 256),
            outcome,
        }
    }
}

/// `text` cut to at most `max` bytes, on a character boundary, marked `…`.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

impl Inner {
    fn flush_audit(&self) -> Result<()> {
        self.batcher.flush(&|records| self.write_records(records))?;
        Ok(())
    }

    fn write_records(&self, records: &[Record]) -> Result<(), String> {
        let key = self.ring.audit_key();
        self.store
            .write(|w| {
                for record in records {
                    audit::append(w, key, record)?;
                }
                Ok::<_, StoreError>(())
            })
            .map_err(|e| e.to_string())
    }

    /// Audits an operation that changed nothing (a read, a search, a denial),
    /// through the group commit.
    pub(crate) fn audit_read(&self, record: Record) -> Result<()> {
        self.batcher
            .record(record, &|records| self.write_records(records))?;
        Ok(())
    }

    /// Audits a refusal and returns it as the error.
    pub(crate) fn deny<T>(&self, ctx: &Context, event: Event<'_>, reason: String) -> Result<T> {
        self.audit_read(event.record(ctx, Outcome::Denied(reason.clone())))?;
        Err(Error::Denied(reason))
    }

    /// Resolves the acting principal in a snapshot; a refusal is audited.
    pub(crate) fn actor(
        &self,
        r: &Reader,
        ctx: &Context,
        event: impl FnOnce() -> Event<'static>,
    ) -> Result<Actor> {
        match Actor::resolve(&ctx.principal, r.principal(&ctx.principal)?) {
            Ok(actor) => Ok(actor),
            Err(reason) => self.deny(ctx, event(), reason),
        }
    }

    /// Records that an operation holds the pending mark of `ids`.
    pub(crate) fn hold_pending(&self, ids: &[u64]) {
        let mut held = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            *held.entry(*id).or_insert(0) += 1;
        }
    }

    /// Releases what [`Inner::hold_pending`] held; returns the ids no
    /// operation holds any more, whose mark may be cleared.
    pub(crate) fn release_pending(&self, ids: &[u64]) -> Vec<u64> {
        let mut held = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let mut free = Vec::new();
        for id in ids {
            if let Some(count) = held.get_mut(id) {
                *count -= 1;
                if *count == 0 {
                    held.remove(id);
                    free.push(*id);
                }
            }
        }
        free
    }

    /// Reserves `n` consecutive ids.
    pub(crate) fn reserve_ids(&self, n: u64) -> u64 {
        self.next_id.fetch_add(n, Ordering::Relaxed)
    }

    fn bootstrap_admin(&self, name: &str) -> Result<()> {
        crate::identity::check_name(name)?;
        let ctx = Context::new(name, "setup");
        if self.store.read(|r| r.principal_count())? > 0 {
            return Ok(());
        }
        let key = self.ring.audit_key();
        self.store.write(|w| {
            if w.principal_count()? > 0 {
                return Ok(());
            }
            w.put_principal(&StoredPrincipal {
                name: name.to_string(),
                kind: PrincipalKind::User,
                roles: vec![ADMIN_ROLE.to_string()],
                active: true,
                created_at: now_micros(),
                attributes: Default::default(),
            })?;
            let event = Event::new("principal.create").target(format!("principal {name}"));
            audit::append(w, key, &event.record(&ctx, Outcome::Ok))?;
            Ok::<_, Error>(())
        })
    }

    /// Settles pending keys: a key whose customer is not in the data file
    /// (a crash or failed write between the two stores) is destroyed.
    fn collect_orphan_keys(&self) -> Result<()> {
        let pending = self.keys.pending()?;
        if pending.is_empty() {
            return Ok(());
        }
        let orphans = self.store.read(|r| {
            let mut orphans = Vec::new();
            for id in &pending {
                if r.customer(*id)?.is_none() {
                    orphans.push(*id);
                }
            }
            Ok::<_, Error>(orphans)
        })?;
        self.keys.remove(&orphans)?;
        self.keys.settle(&pending)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
