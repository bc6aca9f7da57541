//! A data file whose medium starts failing part-way through a write (a disk
//! filling up). Every operation caught by the failure returns a typed error
//! and never panics; after reopening on a healthy disk the database holds
//! exactly what was acknowledged, nothing that was refused, and its audit
//! chain verifies. Reads fail closed when their audit entry cannot be written.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use custodian::{
    AuditDurability, AuditError, CustomerId, CustomerUpdate, Engine, Error, FileStorage,
    ImportOptions, NewCustomer, Outcome, Query, StorageBackend, StoreError,
};

use crate::{Fixture, admin, li_na};

/// Unlimited writes.
const UNLIMITED: u64 = u64::MAX;

/// When the medium fails; shared by a test and its [`FlakyDisk`].
#[derive(Debug)]
struct Fault {
    /// Writes and resizes still allowed before the disk is full.
    writes: AtomicU64,
    /// Syncs still allowed to succeed; writes keep landing after that.
    syncs: AtomicU64,
    /// The disk is full: every write, resize and sync fails.
    full: AtomicBool,
    /// How many calls were failed on purpose.
    injected: AtomicU64,
}

/// Takes one unit from `budget`; `false` when none is left.
fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| match b {
            UNLIMITED => Some(b),
            0 => None,
            b => Some(b - 1),
        })
        .is_ok()
}

impl Fault {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            writes: AtomicU64::new(UNLIMITED),
            syncs: AtomicU64::new(UNLIMITED),
            full: AtomicBool::new(false),
            injected: AtomicU64::new(0),
        })
    }

    /// The disk fills up after `writes` more writes or resizes.
    fn arm(&self, writes: u64) {
        self.injected.store(0, Ordering::SeqCst);
        self.writes.store(writes, Ordering::SeqCst);
    }

    /// After `syncs` more successful syncs, every sync fails while writes
    /// still reach the file (a device that loses its write cache).
    fn fail_syncs_after(&self, syncs: u64) {
        self.injected.store(0, Ordering::SeqCst);
        self.syncs.store(syncs, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.writes.store(UNLIMITED, Ordering::SeqCst);
        self.syncs.store(UNLIMITED, Ordering::SeqCst);
        self.full.store(false, Ordering::SeqCst);
    }

    fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn enospc(&self) -> io::Error {
        self.injected.fetch_add(1, Ordering::SeqCst);
        io::Error::from_raw_os_error(28)
    }

    /// Admits one write or resize, or reports the disk full from now on.
    fn write(&self) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(self.enospc());
        }
        if take(&self.writes) {
            Ok(())
        } else {
            self.full.store(true, Ordering::SeqCst);
            Err(self.enospc())
        }
    }

    /// Admits one sync.
    fn sync(&self) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) || !take(&self.syncs) {
            return Err(self.enospc());
        }
        Ok(())
    }
}

/// The data file on a disk that fails on demand.
#[derive(Debug)]
struct FlakyDisk {
    file: FileStorage,
    fault: Arc<Fault>,
}

impl StorageBackend for FlakyDisk {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fault.write()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fault.sync()?;
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if let Err(e) = self.fault.write() {
            // A filling disk takes whole blocks until it has none left: a
            // short write of the first half's blocks, then the error.
            let blocks = data.len() / 2 / 4096 * 4096;
            if blocks > 0 {
                self.file.write(offset, &data[..blocks])?;
            }
            return Err(e);
        }
        self.file.write(offset, data)
    }
}

/// A database in a fixture, opened on a [`FlakyDisk`] or normally.
struct Disk {
    fixture: Fixture,
    fault: Arc<Fault>,
}

impl Disk {
    fn new() -> Self {
        Self {
            fixture: Fixture::new(),
            fault: Fault::new(),
        }
    }

    fn data(&self) -> PathBuf {
        self.fixture.dir.path().join("data.redb")
    }

    fn keys(&self) -> PathBuf {
        self.fixture.dir.path().join("data.keys")
    }

    /// Opens (creating on first use) on the flaky disk; the key store is a
    /// normal file.
    fn open_flaky(&self, durability: AuditDurability) -> Engine {
        let disk = FlakyDisk {
            file: FileStorage::open(self.data()).unwrap(),
            fault: Arc::clone(&self.fault),
        };
        Engine::builder()
            .storage_backend(Box::new(disk))
            .key_store(self.keys())
            .master_key(self.fixture.key())
            .create(true)
            .audit_durability(durability)
            .open()
            .unwrap()
    }

    /// Opens the same files the ordinary way, as after a restart on a
    /// healthy disk.
    fn reopen(&self) -> Engine {
        Engine::builder()
            .path(self.data())
            .key_store(self.keys())
            .master_key(self.fixture.key())
            .open()
            .unwrap()
    }
}

/// A failure must be a storage or audit error, and one the fault caused.
fn assert_refused(result: Result<impl std::fmt::Debug, Error>, fault: &Fault, what: &str) {
    match result {
        Err(Error::Store(StoreError::Backend(_)) | Error::Audit(AuditError::Unwritable(_))) => {}
        Err(other) => panic!("{what}: expected a storage or audit error, got {other:?}"),
        Ok(value) => panic!("{what}: succeeded on a full disk: {value:?}"),
    }
    assert!(
        fault.injected() > 0,
        "{what} failed without an injected fault"
    );
}

fn customer(n: u64) -> (String, NewCustomer) {
    let phone = format!("1370000{n:04}");
    let new = NewCustomer::new()
        .field("name", format!("Customer {n}"))
        .field("phone", phone.as_str())
        .field("email", format!("c{n}@example.com"));
    (phone, new)
}

/// What the database must hold: id → (name, phone digits, email).
#[derive(Default)]
struct Expected {
    customers: BTreeMap<CustomerId, (String, String, String)>,
    refused_phones: Vec<String>,
    /// Name and email of each refused row, in step with `refused_phones`.
    refused_rows: Vec<(String, String)>,
    refused_emails: Vec<String>,
    /// Emails of refused updates (also in `refused_emails`).
    refused_updates: Vec<String>,
    updates: usize,
}

impl Expected {
    fn acknowledge(&mut self, id: CustomerId, n: u64) {
        let (phone, new) = customer(n);
        let name = new.fields["name"].clone();
        let email = new.fields["email"].clone();
        assert!(self.customers.insert(id, (name, phone, email)).is_none());
    }

    fn refuse(&mut self, n: u64) {
        let (phone, new) = customer(n);
        self.refused_phones.push(phone);
        self.refused_rows
            .push((new.fields["name"].clone(), new.fields["email"].clone()));
        self.refused_emails.push(new.fields["email"].clone());
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Create,
    Import,
    Update,
}

#[test]
fn a_full_disk_refuses_writes_and_keeps_exactly_what_was_acknowledged() {
    let disk = Disk::new();
    let admin = admin();
    let mut expected = Expected::default();
    let mut next = 0u64;

    // Acknowledged work on a healthy disk.
    let li_na_id = {
        let engine = disk.open_flaky(AuditDurability::Durable);
        let li_na_id = engine.create_customer(&admin, li_na()).unwrap();
        expected.customers.insert(
            li_na_id,
            (
                "Li Na".into(),
                "13800138000".into(),
                "li.na@example.com".into(),
            ),
        );
        for _ in 0..2 {
            next += 1;
            let (_, new) = customer(next);
            let id = engine.create_customer(&admin, new).unwrap();
            expected.acknowledge(id, next);
        }
        let batch: Vec<NewCustomer> = (next + 1..=next + 20).map(|n| customer(n).1).collect();
        let report = engine
            .import_customers(&admin, batch, &ImportOptions { batch_size: 10 }, |_| {})
            .unwrap();
        for (i, id) in (report.first_id.unwrap()..=report.last_id.unwrap()).enumerate() {
            expected.acknowledge(id, next + 1 + i as u64);
        }
        next += 20;
        engine
            .update_customer(
                &admin,
                li_na_id,
                CustomerUpdate::new().set("email", "li.na@corp.example"),
            )
            .unwrap();
        expected.customers.get_mut(&li_na_id).unwrap().2 = "li.na@corp.example".into();
        expected.updates += 1;
        li_na_id
    };

    // Each operation, with the disk filling up after 0, 1, 2, ... writes:
    // every write position of its commit fails once, until it fits.
    for op in [Op::Create, Op::Import, Op::Update] {
        let mut budget = 0;
        loop {
            assert!(budget < 500, "{op:?} never fits on the disk");
            let engine = disk.open_flaky(AuditDurability::Durable);
            disk.fault.arm(budget);
            let what = format!("{op:?} with room for {budget} writes");
            let done = match op {
                Op::Create => {
                    next += 1;
                    let (_, new) = customer(next);
                    match engine.create_customer(&admin, new) {
                        Ok(id) => {
                            expected.acknowledge(id, next);
                            true
                        }
                        Err(e) => {
                            assert_refused(Err::<(), _>(e), &disk.fault, &what);
                            expected.refuse(next);
                            false
                        }
                    }
                }
                Op::Import => {
                    // Five customers in three commits: a failure part-way
                    // keeps the commits acknowledged before it.
                    let first = next + 1;
                    next += 5;
                    let batch: Vec<NewCustomer> = (first..=next).map(|n| customer(n).1).collect();
                    let mut acked = Vec::new();
                    let result = engine.import_customers(
                        &admin,
                        batch,
                        &ImportOptions { batch_size: 2 },
                        |p| acked.push(p.clone()),
                    );
                    let mut through = 0;
                    for p in &acked {
                        for (i, id) in p.ids.clone().enumerate() {
                            let line = p.last_line + 1 - (p.ids.clone().count() - i) as u64;
                            assert_eq!(line, through + 1, "{what}: lines acknowledged in order");
                            through = line;
                            expected.acknowledge(id, first - 1 + line);
                        }
                    }
                    for line in through + 1..=5 {
                        expected.refuse(first - 1 + line);
                    }
                    match result {
                        Ok(report) => {
                            assert_eq!(report.imported, 5, "{what}");
                            assert_eq!(through, 5, "{what}: every commit reported");
                            true
                        }
                        Err(e) => {
                            assert!(through < 5, "{what}: failed after acknowledging all");
                            assert_refused(Err::<(), _>(e), &disk.fault, &what);
                            false
                        }
                    }
                }
                Op::Update => {
                    let email = format!("update{budget}@example.com");
                    let update = CustomerUpdate::new().set("email", email.as_str());
                    match engine.update_customer(&admin, li_na_id, update) {
                        Ok(()) => {
                            let old = std::mem::replace(
                                &mut expected.customers.get_mut(&li_na_id).unwrap().2,
                                email,
                            );
                            expected.refused_emails.push(old);
                            expected.updates += 1;
                            true
                        }
                        Err(e) => {
                            assert_refused(Err::<(), _>(e), &disk.fault, &what);
                            expected.refused_updates.push(email.clone());
                            expected.refused_emails.push(email);
                            false
                        }
                    }
                }
            };
            if !done {
                // Once full, the disk stays full: nothing more is accepted.
                next += 1;
                let (_, new) = customer(next);
                let again = engine.create_customer(&admin, new);
                assert_refused(again, &disk.fault, &format!("a create after {what}"));
                expected.refuse(next);
            }
            drop(engine);
            disk.fault.disarm();
            if done {
                break;
            }
            budget += 1;
        }
        assert!(
            budget > 0,
            "{op:?} succeeded with no room for a single write"
        );
    }

    // Restart on a healthy disk: everything acknowledged is there, whole.
    // A refused operation is absent, except where the failure struck after
    // its commit record reached the file (the final sync failed): then it
    // is whole, like every committed change, never half there. Those are
    // collected as `landed` and checked as carefully as the acknowledged.
    let engine = disk.reopen();
    engine.verify_audit(None).unwrap();
    crate::lift_budgets(&engine);
    let whole = |id: CustomerId, name: &str, phone: &str, email: &str| {
        let c = engine.customer(&admin, id).unwrap();
        assert_eq!(c.get("name"), Some(name), "customer {id}");
        assert_eq!(c.get("phone"), Some(format!("+86{phone}").as_str()));
        assert_eq!(c.get("email"), Some(email), "customer {id}");
    };
    // The updated customer holds the last acknowledged email, or the email
    // of a refused update that landed.
    let li_na_email = engine
        .customer(&admin, li_na_id)
        .unwrap()
        .get("email")
        .map(String::from);
    let mut landed_updates = 0;
    if li_na_email.as_deref() != Some(expected.customers[&li_na_id].2.as_str()) {
        let landed_email = li_na_email.unwrap();
        assert!(
            expected.refused_updates.contains(&landed_email),
            "customer {li_na_id} holds `{landed_email}`, which nobody wrote"
        );
        expected.customers.get_mut(&li_na_id).unwrap().2 = landed_email.clone();
        expected.refused_emails.retain(|e| *e != landed_email);
        landed_updates = 1;
    }
    for (id, (name, phone, email)) in &expected.customers {
        whole(*id, name, phone, email);
        let found = engine
            .find_customers(&admin, &Query::field("phone", phone), 10)
            .unwrap();
        assert_eq!(found.len(), 1, "phone {phone}");
        assert_eq!(found[0].id, *id);
    }
    let mut landed = BTreeMap::new();
    for (phone, (name, email)) in expected.refused_phones.iter().zip(&expected.refused_rows) {
        let found = engine
            .find_customers(&admin, &Query::field("phone", phone), 10)
            .unwrap();
        assert!(found.len() <= 1, "refused phone {phone} stored twice");
        if let Some(c) = found.first() {
            whole(c.id, name, phone, email);
            landed.insert(c.id, phone.clone());
        }
    }
    let count = engine.count_customers(&admin).unwrap();
    assert_eq!(count, (expected.customers.len() + landed.len()) as u64);
    assert!(
        landed.len() + landed_updates <= 3,
        "at most one landed commit per kind of operation: {landed:?}, {landed_updates}"
    );
    for email in &expected.refused_emails {
        let found = engine
            .find_customers(&admin, &Query::field("email", email), 10)
            .unwrap();
        assert!(
            found.iter().all(|c| landed.contains_key(&c.id)),
            "refused email {email} is stored"
        );
    }
    // The chain records exactly the changes that are there.
    let entries = engine.audit_tail(&admin, usize::MAX).unwrap();
    let created: Vec<CustomerId> = entries
        .iter()
        .filter(|e| e.action == "customer.create" && e.outcome == Outcome::Ok)
        .flat_map(|e| e.customers.clone())
        .collect();
    let mut present: Vec<CustomerId> = expected.customers.keys().copied().collect();
    present.extend(landed.keys());
    present.sort_unstable();
    assert_eq!(created, present);
    let updates = entries
        .iter()
        .filter(|e| e.action == "customer.update" && e.outcome == Outcome::Ok)
        .count();
    assert_eq!(updates, expected.updates + landed_updates);
    engine.verify_audit(None).unwrap();
}

#[test]
fn a_read_fails_closed_when_its_audit_entry_cannot_be_written() {
    let disk = Disk::new();
    let admin = admin();
    let id = {
        let engine = disk.open_flaky(AuditDurability::Durable);
        let id = engine.create_customer(&admin, li_na()).unwrap();
        assert_eq!(
            engine.customer(&admin, id).unwrap().get("phone"),
            Some("+8613800138000")
        );
        id
    };
    let engine = disk.open_flaky(AuditDurability::Durable);
    let before = engine.verify_audit(None).unwrap().entries;

    disk.fault.arm(0);
    match engine.customer(&admin, id) {
        Err(Error::Audit(AuditError::Unwritable(_))) => {}
        other => panic!("a read whose audit entry cannot be written must fail: {other:?}"),
    }
    assert!(disk.fault.injected() > 0);
    assert_refused(
        engine.find_customers(&admin, &Query::field("phone", "13800138000"), 10),
        &disk.fault,
        "a search on a full disk",
    );
    assert_refused(
        engine.count_customers(&admin),
        &disk.fault,
        "a count on a full disk",
    );
    drop(engine);
    disk.fault.disarm();

    // Nothing was shown, so nothing is missing from the chain.
    let engine = disk.reopen();
    assert_eq!(engine.verify_audit(None).unwrap().entries, before);
    assert_eq!(
        engine.customer(&admin, id).unwrap().get("email"),
        Some("li.na@example.com")
    );
    assert_eq!(engine.verify_audit(None).unwrap().entries, before + 1);
}

/// A commit whose final sync fails has an unknown outcome: its pages and
/// header may have reached the file. After a restart the customer must be
/// either absent or whole (readable, with its data key), never half there.
/// Regression: keys of a batch whose commit reported an error were destroyed
/// although the commit had reached the file.
#[test]
fn a_create_whose_sync_fails_is_absent_or_whole_after_a_restart() {
    let admin = admin();
    for syncs in 0.. {
        assert!(syncs < 50, "a create never fits");
        let disk = Disk::new();
        let engine = disk.open_flaky(AuditDurability::Durable);
        let li_na_id = engine.create_customer(&admin, li_na()).unwrap();
        disk.fault.fail_syncs_after(syncs);
        let (phone, new) = customer(1);
        let result = engine.create_customer(&admin, new);
        drop(engine);
        disk.fault.disarm();

        let engine = disk.reopen();
        let what = format!("a create with {syncs} good syncs");
        assert_eq!(
            engine.customer(&admin, li_na_id).unwrap().get("name"),
            Some("Li Na")
        );
        let found = engine.find_customers(&admin, &Query::field("phone", &phone), 10);
        let found = found.unwrap_or_else(|e| panic!("{what}: its customer is unreadable: {e}"));
        assert!(found.len() <= 1, "{what}: stored twice");
        for c in &found {
            assert_eq!(c.get("name"), Some("Customer 1"), "{what}");
            assert_eq!(c.get("email"), Some("c1@example.com"), "{what}");
        }
        let stored = engine.count_customers(&admin).unwrap();
        assert_eq!(stored, 1 + found.len() as u64, "{what}");
        engine.verify_audit(None).unwrap();
        match result {
            Ok(id) => {
                assert_eq!(found.len(), 1, "{what}: acknowledged but missing");
                assert_eq!(found[0].id, id);
                break;
            }
            Err(e) => assert_refused(Err::<(), _>(e), &disk.fault, &what),
        }
    }
}
