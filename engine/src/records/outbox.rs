//! The outbox: messages waiting for the host to deliver them. The engine
//! resolves the address itself when it hands a message out, so a plugin
//! that queues one never sees it.

use super::Records;
use super::Slot;
use crate::Result;
use crate::model::CustomerId;
use crate::store::{StoreError, StoredMessage, StoredParams, Txn};

/// The address field of a message channel.
pub(crate) fn address_field(channel: &str) -> Option<&'static str> {
    match channel {
        "sms" => Some("phone"),
        "email" => Some("email"),
        _ => None,
    }
}

/// The consent purpose a message needs: `marketing`, or `service` for
/// reminders and order updates.
pub(crate) fn message_purpose(marketing: bool) -> &'static str {
    if marketing { "marketing" } else { "service" }
}

/// A message to queue.
pub(crate) struct MessageWrite {
    pub(crate) sender: String,
    pub(crate) channel: String,
    pub(crate) customer: CustomerId,
    pub(crate) template: String,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) marketing: bool,
    /// When it is queued (µs).
    pub(crate) at: i64,
}

impl Records {
    /// Queues a message; returns its id.
    pub(crate) fn queue_message(&self, txn: &mut dyn Txn, m: MessageWrite) -> Result<u64> {
        let params = self.seal_message_params(m.customer, &m.params)?;
        let id = self.reserve_ids(1);
        txn.put_message(
            id,
            &StoredMessage {
                plugin: m.sender,
                channel: m.channel,
                customer: m.customer,
                template: m.template,
                params,
                marketing: m.marketing,
                created_at: m.at,
            },
        )?;
        txn.record_id(id);
        Ok(id)
    }

    /// The template parameters of a message to customer `id`, sealed.
    pub(crate) fn seal_message_params(
        &self,
        id: CustomerId,
        params: &[(String, String)],
    ) -> Result<StoredParams> {
        let key = self.data_key(id)?;
        let bytes = postcard::to_stdvec(params)
            .map_err(|e| StoreError::Corrupt(format!("message parameters: {e}")))?;
        let sealed = key.seal_bytes(&Slot::MessageParams.name(), &bytes)?;
        Ok(StoredParams::Sealed(sealed))
    }

    /// The template parameters of a message, opened.
    pub(crate) fn message_params(&self, m: &StoredMessage) -> Result<Vec<(String, String)>> {
        match &m.params {
            StoredParams::Clear(params) => Ok(params.clone()),
            StoredParams::Sealed(sealed) => {
                let key = self.data_key(m.customer)?;
                let bytes = key.open_bytes(&Slot::MessageParams.name(), sealed)?;
                postcard::from_bytes(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("message parameters: {e}")).into())
            }
        }
    }

    /// Whether customer `id` consented to `purpose`.
    pub(crate) fn consented(&self, txn: &dyn Txn, id: CustomerId, purpose: &str) -> Result<bool> {
        Ok(txn.consent(id, purpose)?.is_some_and(|c| c.granted))
    }
}
