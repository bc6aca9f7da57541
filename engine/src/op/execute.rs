//! Plugin commands, executed: a planned call runs in ONE write on the
//! path, as the plugin's principal. Each command gets its policy decision
//! and its audit entry, and goes through the same `records` writes as the
//! public API; the plugin's state and log and the call's own entry commit
//! with them. Any refusal executes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::commands::{CallDone, LogStep, MessageStep, Plan, StateWrite, Step};
use super::{Caller, Core, Emitted, Entry, Keep, Op, Write};
use crate::audit::Outcome;
use crate::model::CustomerId;
use crate::plugin::{PluginError, PluginStatus};
use crate::policy::Action;
use crate::records::{
    FieldChange, FollowUpWrite, InteractionWrite, MessageWrite, address_field, message_purpose,
    owner_rule,
};
use crate::{Denied, Result};

/// What executing a call's commands changed.
#[derive(Debug, Default)]
pub(super) struct Applied {
    pub(super) created: Vec<CustomerId>,
    pub(super) updated: Vec<CustomerId>,
    pub(super) interactions: Vec<u64>,
    pub(super) follow_ups: Vec<u64>,
    pub(super) messages: Vec<u64>,
    /// Messages not queued, and why (no consent, no address).
    pub(super) skipped_messages: Vec<String>,
}

impl Core {
    /// Runs a planned call as `caller` (the plugin's principal).
    pub(super) fn execute(
        self: &Arc<Self>,
        caller: &Caller,
        plugin: &str,
        plan: Plan,
        done: CallDone<'_>,
    ) -> Result<Applied> {
        let keys: Vec<(u64, Vec<u8>)> = (plan.sealed.iter())
            .map(|(id, (_, wrapped))| (*id, wrapped.clone()))
            .collect();
        let mut op = Op::new(done.entry.clone()).itemized();
        if !keys.is_empty() {
            op = op.claim(self.records.claim_new(&keys)?);
        }
        let Plan {
            steps,
            mut sealed,
            links,
        } = plan;
        self.write_as(caller, op, |tx| {
            // A refused call keeps the plugin's log, as a failed one does.
            tx.keep_on_refusal(Keep::PluginLog {
                plugin: plugin.to_string(),
                lines: done.log.to_vec(),
            });
            // Checked again on this transaction: the plugin may have been
            // disabled, quarantined, upgraded or re-granted during the call.
            let now = tx.txn().plugin(plugin)?;
            let admitted = done.info;
            let unchanged = now.as_ref().is_some_and(|p| {
                p.status == PluginStatus::Enabled
                    && p.code_hash == admitted.code_hash
                    && p.grant == admitted.grant
            });
            if !unchanged {
                let status = now.map_or_else(|| "removed".to_string(), |p| p.status.to_string());
                let status = match status.as_str() {
                    "enabled" => "changed during the call".to_string(),
                    _ => status,
                };
                return Err(Denied::PluginNotEnabled {
                    name: plugin.to_string(),
                    status,
                }
                .into());
            }
            // Read once for the whole call: the purposes no longer pursued.
            let retired: BTreeSet<String> = tx.txn().retired_purposes()?.into_iter().collect();
            let mut applied = Applied::default();
            for step in steps {
                match step {
                    Step::Create(id) => {
                        if let Some((record, _)) = sealed.remove(&id) {
                            create(tx, &record)?;
                            applied.created.push(id);
                        }
                    }
                    Step::Update { id, set, tags } => {
                        if update(tx, &retired, id, set, tags)?
                            && !applied.created.contains(&id)
                            && !applied.updated.contains(&id)
                        {
                            applied.updated.push(id);
                        }
                    }
                    Step::Log(step) => applied.interactions.push(log(tx, step)?),
                    Step::FollowUp { id, due, note } => {
                        applied.follow_ups.push(follow_up(tx, id, due, &note)?);
                    }
                    Step::Message(step) => match message(tx, &retired, plugin, step)? {
                        Queued::Yes(id) => applied.messages.push(id),
                        Queued::Skipped(why) => applied.skipped_messages.push(why),
                    },
                }
            }
            for (hash, id) in &links {
                // Linking an existing customer is a write about it.
                if !applied.created.contains(id) {
                    tx.customer(*id, Action::Update)?;
                }
                tx.txn().put_link(hash, *id)?;
            }
            keep_state(tx, plugin, done.state_writes)?;
            tx.core().write_log(tx.txn(), plugin, done.log)?;
            tx.audit(done.entry.clone(), Outcome::Ok)?;
            Ok(applied)
        })
    }
}

/// Keeps a call's state writes, within the quota of all the plugin's
/// state (counted by the store as it writes). A write about a customer
/// erased during the call is dropped with it.
fn keep_state(tx: &mut Write<'_>, plugin: &str, writes: &[StateWrite]) -> Result<()> {
    let mut total = None;
    for w in writes {
        let bytes = match w.customer {
            None => {
                tx.txn().remove_uncounted_state(plugin, &w.key)?;
                tx.txn().put_plugin_state(plugin, &w.name, &w.sealed)?
            }
            Some(id) if tx.txn().customer(id)?.is_some() => {
                (tx.txn()).put_customer_state(id, plugin, &w.name, &w.sealed)?
            }
            Some(_) => continue,
        };
        total = Some(bytes);
    }
    let limit = tx.core().plugins.settings().max_state_bytes;
    match total {
        Some(total) if total > limit => Err(PluginError::Quota {
            name: plugin.to_string(),
            reason: format!(
                "its state would take {total} bytes; the quota of all its state is {limit} bytes"
            ),
        }
        .into()),
        _ => Ok(()),
    }
}

fn create(tx: &mut Write<'_>, record: &crate::store::StoredCustomer) -> Result<()> {
    let names = record.public.keys().chain(record.sealed.keys()).cloned();
    tx.begin_item(
        Entry::new("customer.create")
            .customer(record.id)
            .fields(names.collect()),
    );
    owner_rule(&record.owner, tx.txn().principal(&record.owner)?.as_ref())?;
    tx.require(Action::Create, record)?;
    tx.records().recheck_new(tx.txn(), &[(record, &[])])?;
    tx.records().insert(tx.txn(), &[record])?;
    tx.end_item(Outcome::Ok)?;
    tx.emit(Emitted::Created(record.id));
    Ok(())
}

/// Returns whether anything changed.
fn update(
    tx: &mut Write<'_>,
    retired: &BTreeSet<String>,
    id: CustomerId,
    mut set: std::collections::BTreeMap<String, String>,
    tags: Vec<String>,
) -> Result<bool> {
    let mut touched: Vec<String> = set.keys().cloned().collect();
    if !tags.is_empty() {
        touched.push("tags".into());
    }
    let entry = Entry::new("customer.update").customer(id).fields(touched);
    let record = tx.txn().customer(id)?;
    if record.is_some() && set.is_empty() && tags.is_empty() {
        return Ok(false);
    }
    tx.begin_item(entry);
    let Some(mut record) = record else {
        return Err(crate::Error::NotFound(format!("customer {id}")));
    };
    tx.require(Action::Update, &record)?;
    if !tags.is_empty() {
        let mut all: Vec<String> = (record.public.get("tags"))
            .map(|t| t.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        all.extend(tags);
        let joined = tx.records().schema.normalize("tags", &all.join(","))?;
        set.insert("tags".into(), joined);
    }
    let change = FieldChange {
        set,
        ..FieldChange::default()
    };
    tx.records()
        .update(tx.txn(), &mut record, &change, retired)?;
    tx.end_item(Outcome::Ok)?;
    tx.emit(Emitted::Updated(id));
    Ok(true)
}

fn log(tx: &mut Write<'_>, step: LogStep) -> Result<u64> {
    let LogStep {
        id: customer,
        channel,
        direction,
        at,
        summary,
        body,
        amount_minor,
        items,
    } = step;
    let fields = vec!["summary".into(), "body".into()];
    tx.begin_item(
        Entry::new("interaction.log")
            .customer(customer)
            .fields(fields),
    );
    let mut record = tx.customer(customer, Action::LogInteraction)?;
    let logged_by = tx.actor().name.clone();
    let new = InteractionWrite {
        channel,
        direction,
        at,
        summary: &summary,
        body: body.as_deref(),
        amount_minor,
        items,
        logged_by: &logged_by,
    };
    let id = tx.records().log_interaction(tx.txn(), &mut record, new)?;
    tx.end_item(Outcome::Ok)?;
    tx.emit(Emitted::Logged {
        customer,
        interaction: id,
        channel,
        at,
    });
    Ok(id)
}

fn follow_up(tx: &mut Write<'_>, customer: CustomerId, due: i64, note: &str) -> Result<u64> {
    let fields = vec!["note".into()];
    tx.begin_item(
        Entry::new("followup.create")
            .customer(customer)
            .fields(fields),
    );
    let record = tx.customer(customer, Action::WriteFollowUps)?;
    let created_by = tx.actor().name.clone();
    let new = FollowUpWrite {
        due,
        note,
        assignee: &record.owner,
        created_by: &created_by,
    };
    let id = tx.records().add_follow_up(tx.txn(), customer, new)?;
    tx.end_item(Outcome::Ok)?;
    Ok(id)
}

/// Whether a message was queued: one that is not (no consent, no
/// address) refuses nothing else.
enum Queued {
    Yes(u64),
    Skipped(String),
}

/// Queues a message, or says why it was not.
fn message(
    tx: &mut Write<'_>,
    retired: &BTreeSet<String>,
    plugin: &str,
    step: MessageStep,
) -> Result<Queued> {
    let MessageStep {
        id: customer,
        channel,
        template,
        params,
        marketing,
    } = step;
    let target = format!("{channel} {template}");
    tx.begin_item(Entry::new("outbox.queue").customer(customer).target(target));
    let record = tx.customer(customer, Action::Read)?;
    let purpose = message_purpose(marketing);
    let field = address_field(&channel).unwrap_or("phone");
    let skip = if retired.contains(purpose) {
        Some(format!(
            "purpose `{purpose}` is retired: message `{template}` not queued"
        ))
    } else if !tx.records().consented(tx.txn(), customer, purpose)? {
        Some(format!(
            "customer {customer} has not consented to `{purpose}` messages: message `{template}` not queued"
        ))
    } else if !record.sealed.contains_key(field) && !record.public.contains_key(field) {
        Some(format!(
            "customer {customer} has no {field}: message `{template}` not queued"
        ))
    } else {
        None
    };
    if let Some(reason) = skip {
        tx.end_item(Outcome::Denied(reason.clone()))?;
        return Ok(Queued::Skipped(reason));
    }
    let at = tx.records().now();
    let new = MessageWrite {
        sender: plugin.to_string(),
        channel,
        customer,
        template,
        params,
        marketing,
        at,
    };
    let id = tx.records().queue_message(tx.txn(), new)?;
    tx.end_item(Outcome::Ok)?;
    Ok(Queued::Yes(id))
}
