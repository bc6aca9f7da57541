//! Keys and ciphers. `crypto` owns the master key (KEK) and everything derived
//! from it: the wrapping of per-customer data keys (DEKs), field sealing with
//! XChaCha20-Poly1305, keyed blind indexes and the audit-chain key.
//!
//! INVARIANT: key material lives only in `Zeroizing` buffers or in cipher
//! instances that zeroize on drop; nothing here is ever written to disk
//! except a DEK wrapped by the KEK.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Errors about keys and ciphertexts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The master key has the wrong size or encoding.
    #[error("invalid master key: {0}; expected 32 bytes written as 64 hex characters")]
    InvalidKey(String),
    /// The key file could not be read or written.
    #[error("cannot use key file `{path}`: {source}")]
    KeyFile {
        /// The key file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file can be read or written by users other than its owner,
    /// so it is not used.
    #[error(
        "key file `{path}` is open to other users (mode {mode:04o}): the master key must be readable by its owner only; fix it with `chmod 600 {path}`"
    )]
    KeyFileOpen {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The environment variable that should hold the key is missing.
    #[error("environment variable `{0}` holds no master key")]
    KeyEnv(String),
    /// The master key does not match the database.
    #[error(
        "wrong master key: this database was created with a different key; nothing was written"
    )]
    WrongKey,
    /// A ciphertext failed authentication: it was altered or moved from
    /// another customer, field or key version.
    #[error("cannot open `{what}`: the ciphertext was altered or does not belong to this record")]
    Unseal {
        /// What was being opened, e.g. `customer 7 field phone`.
        what: String,
    },
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}

/// The 32-byte master key (KEK). It never touches the disk in the clear and
/// is zeroized when dropped.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self(random_key())
    }

    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A key written as 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(CryptoError::InvalidKey(format!(
                "{} characters of text",
                text.len()
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (slot, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
            let hex = std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| CryptoError::InvalidKey("not hexadecimal".into()))?;
            *slot = hex;
        }
        Ok(Self(bytes))
    }

    /// The key as 64 lowercase hex characters.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(64));
        for byte in self.0.iter() {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// Reads a key file holding the key in hex. On Unix, refuses a file
    /// that users other than its owner may read or write (any group or
    /// other permission bit), as ssh refuses an open private key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CryptoError> {
        use std::io::Read;
        let path = path.as_ref();
        let err = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(err)?;
        // The mode of the file opened, not of whatever the path names a
        // moment later.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(err)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(CryptoError::KeyFileOpen {
                    path: path.display().to_string(),
                    mode,
                });
            }
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).map_err(err)?;
        Self::from_hex(&text)
    }

    /// Reads the key in hex from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, CryptoError> {
        let text =
            Zeroizing::new(std::env::var(var).map_err(|_| CryptoError::KeyEnv(var.to_string()))?);
        Self::from_hex(&text)
    }

    /// Writes the key in hex to a new file readable by its owner only (0600).
    /// Refuses to overwrite an existing file.
    pub fn write_new_file(&self, path: impl AsRef<Path>) -> Result<(), CryptoError> {
        use std::io::Write;
        let path = path.as_ref();
        let err = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(err)?;
        // Owner-only whatever the umask let through.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
        file.write_all(self.to_hex().as_bytes()).map_err(err)?;
        file.write_all(b"\n").map_err(err)?;
        file.sync_all().map_err(err)
    }

    fn derive(&self, context: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(context, self.0.as_slice()))
    }
}

/// Everything the engine derives from the master key, held for the life of
/// an open engine.
pub(crate) struct Keyring {
    wrap: XChaCha20Poly1305,
    blind: Zeroizing<[u8; 32]>,
    audit: Zeroizing<[u8; 32]>,
    /// Keys the tags of records at rest.
    integrity: Zeroizing<[u8; 32]>,
    check: [u8; 32],
    /// Seals principals' second-factor secrets.
    secrets: XChaCha20Poly1305,
    /// Keys the hashes of session tokens and recovery codes.
    login: Zeroizing<[u8; 32]>,
    /// Seals plugins' unscoped state and their log lines.
    plugin: XChaCha20Poly1305,
    /// Keys the names plugins' state is filed under.
    plugin_names: Zeroizing<[u8; 32]>,
}

/// The version of the master key that wraps new data keys. Rotation will
/// bump it; it is bound into every AAD so old and new ciphertexts never mix.
pub(crate) const KEY_VERSION: u32 = 1;

const WRAP_AAD: &[u8] = b"custodian dek v1";
const MASK_WRAP_AAD: &[u8] = b"custodian mask key v1";
/// Bytes of one wrapped key as stored: nonce and sealed 32-byte key.
const WRAPPED_LEN: usize = 24 + 32 + 16;

impl Keyring {
    pub(crate) fn new(master: &MasterKey) -> Self {
        let wrap_key = master.derive("custodian 2026 dek wrapping");
        Self {
            wrap: XChaCha20Poly1305::new(wrap_key.as_slice().into()),
            blind: master.derive("custodian 2026 blind index"),
            audit: master.derive("custodian 2026 audit chain"),
            integrity: master.derive("custodian 2026 record integrity"),
            check: *master.derive("custodian 2026 key check"),
            secrets: XChaCha20Poly1305::new(
                master
                    .derive("custodian 2026 login secrets")
                    .as_slice()
                    .into(),
            ),
            login: master.derive("custodian 2026 login hashes"),
            plugin: XChaCha20Poly1305::new(
                master
                    .derive("custodian 2026 plugin state and logs")
                    .as_slice()
                    .into(),
            ),
            plugin_names: master.derive("custodian 2026 plugin state names"),
        }
    }

    /// The name a plugin's state key is filed under: a keyed hash, so the
    /// key a plugin chose is never stored.
    pub(crate) fn plugin_state_name(&self, plugin: &str, key: &str) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.plugin_names);
        hasher.update(plugin.as_bytes());
        hasher.update(&[0]);
        hasher.update(key.as_bytes());
        let hash = hasher.finalize();
        format!("~{}", hex(hash.as_bytes().get(..16).unwrap_or_default()))
    }

    /// Seals a value of a plugin's unscoped state, bound to the plugin and
    /// the name it is filed under.
    pub(crate) fn seal_plugin_state(
        &self,
        plugin: &str,
        name: &str,
        plain: &[u8],
    ) -> Result<Sealed, CryptoError> {
        seal_raw(
            &self.plugin,
            plain,
            plugin_aad("state", plugin, name).as_bytes(),
        )
    }

    /// Opens what [`Keyring::seal_plugin_state`] sealed.
    pub(crate) fn open_plugin_state(
        &self,
        plugin: &str,
        name: &str,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, CryptoError> {
        let aad = plugin_aad("state", plugin, name);
        open_raw(&self.plugin, sealed, aad.as_bytes()).map_err(|()| CryptoError::Unseal {
            what: format!("state of plugin `{plugin}`"),
        })
    }

    /// Seals a line of a plugin's log, bound to the plugin.
    pub(crate) fn seal_plugin_log(&self, plugin: &str, text: &str) -> Result<Sealed, CryptoError> {
        seal_raw(
            &self.plugin,
            text.as_bytes(),
            plugin_aad("log", plugin, "").as_bytes(),
        )
    }

    /// Opens what [`Keyring::seal_plugin_log`] sealed.
    pub(crate) fn open_plugin_log(
        &self,
        plugin: &str,
        sealed: &Sealed,
    ) -> Result<String, CryptoError> {
        let err = || CryptoError::Unseal {
            what: format!("log of plugin `{plugin}`"),
        };
        let aad = plugin_aad("log", plugin, "");
        let plain = open_raw(&self.plugin, sealed, aad.as_bytes()).map_err(|()| err())?;
        String::from_utf8(plain).map_err(|_| err())
    }

    /// The key-check value stored in the database: it proves a key is the
    /// right one without revealing it.
    pub(crate) fn check_value(&self) -> [u8; 32] {
        self.check
    }

    pub(crate) fn audit_key(&self) -> &[u8; 32] {
        &self.audit
    }

    /// The key of the tags that authenticate records at rest.
    pub(crate) fn integrity_key(&self) -> &[u8; 32] {
        &self.integrity
    }

    /// The key of session-token and recovery-code hashes.
    pub(crate) fn login_key(&self) -> &[u8; 32] {
        &self.login
    }

    /// Seals a principal's secret (a TOTP seed); `slot` names what and
    /// whose it is, so a sealed secret opens only in its slot.
    pub(crate) fn seal_secret(&self, slot: &str, plain: &[u8]) -> Result<Sealed, CryptoError> {
        seal_raw(&self.secrets, plain, slot.as_bytes())
    }

    /// Opens what [`Keyring::seal_secret`] sealed.
    pub(crate) fn open_secret(
        &self,
        slot: &str,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        open_raw(&self.secrets, sealed, slot.as_bytes())
            .map(Zeroizing::new)
            .map_err(|()| CryptoError::Unseal {
                what: format!("secret `{slot}`"),
            })
    }

    /// Fresh keys for `customer` (its data key and its mask key),
    /// returned with their wrapped form, as the key store keeps them.
    pub(crate) fn new_data_key(
        &self,
        customer: u64,
    ) -> Result<(DataKey, MaskKey, Vec<u8>), CryptoError> {
        let key = random_key();
        let wrapped = seal_raw(&self.wrap, key.as_slice(), &dek_aad(customer, KEY_VERSION))?;
        let data_key = DataKey {
            aead: XChaCha20Poly1305::new(key.as_slice().into()),
            customer,
            version: KEY_VERSION,
        };
        let mut stored = encode_wrapped(KEY_VERSION, wrapped);
        let (mask, wrapped_mask) = self.new_mask_key(customer, KEY_VERSION)?;
        stored.extend_from_slice(&wrapped_mask);
        Ok((data_key, mask, stored))
    }

    /// A fresh mask key and its wrapped form.
    fn new_mask_key(&self, customer: u64, version: u32) -> Result<(MaskKey, Vec<u8>), CryptoError> {
        let key = random_key();
        let aad = key_aad(MASK_WRAP_AAD, customer, version);
        let wrapped = seal_raw(&self.wrap, key.as_slice(), &aad)?;
        let mask = MaskKey(DataKey {
            aead: XChaCha20Poly1305::new(key.as_slice().into()),
            customer,
            version,
        });
        let mut out = wrapped.nonce.to_vec();
        out.extend_from_slice(&wrapped.ciphertext);
        Ok((mask, out))
    }

    /// The mask key of `customer` from its stored keys (`None`: stored
    /// before customers had one).
    pub(crate) fn open_mask_key(
        &self,
        customer: u64,
        stored: &[u8],
    ) -> Result<Option<MaskKey>, CryptoError> {
        let unwrap_err = || CryptoError::Unseal {
            what: format!("mask key of customer {customer}"),
        };
        let (version, _) = decode_wrapped(stored).ok_or_else(unwrap_err)?;
        let Some(part) = stored.get(4 + WRAPPED_LEN..) else {
            return Ok(None);
        };
        if part.is_empty() {
            return Ok(None);
        }
        let (nonce, ciphertext) = part.split_first_chunk::<24>().ok_or_else(unwrap_err)?;
        let sealed = Sealed {
            nonce: *nonce,
            ciphertext: ciphertext.to_vec(),
        };
        let aad = key_aad(MASK_WRAP_AAD, customer, version);
        let key = Zeroizing::new(open_raw(&self.wrap, &sealed, &aad).map_err(|_| unwrap_err())?);
        if key.len() != 32 {
            return Err(unwrap_err());
        }
        Ok(Some(MaskKey(DataKey {
            aead: XChaCha20Poly1305::new(key.as_slice().into()),
            customer,
            version,
        })))
    }

    /// Stored keys of a customer that has no mask key yet, with one added.
    pub(crate) fn add_mask_key(
        &self,
        customer: u64,
        stored: &[u8],
    ) -> Result<(MaskKey, Vec<u8>), CryptoError> {
        if let Some(mask) = self.open_mask_key(customer, stored)? {
            return Ok((mask, stored.to_vec()));
        }
        let (version, _) = decode_wrapped(stored).ok_or_else(|| CryptoError::Unseal {
            what: format!("data key of customer {customer}"),
        })?;
        let (mask, wrapped) = self.new_mask_key(customer, version)?;
        let mut out = stored.get(..4 + WRAPPED_LEN).unwrap_or(stored).to_vec();
        out.extend_from_slice(&wrapped);
        Ok((mask, out))
    }

    /// Unwraps the stored data key of `customer`.
    pub(crate) fn open_data_key(
        &self,
        customer: u64,
        stored: &[u8],
    ) -> Result<DataKey, CryptoError> {
        let unwrap_err = || CryptoError::Unseal {
            what: format!("data key of customer {customer}"),
        };
        let (version, wrapped) = decode_wrapped(stored).ok_or_else(unwrap_err)?;
        let key = Zeroizing::new(
            open_raw(&self.wrap, &wrapped, &dek_aad(customer, version))
                .map_err(|_| unwrap_err())?,
        );
        if key.len() != 32 {
            return Err(unwrap_err());
        }
        Ok(DataKey {
            aead: XChaCha20Poly1305::new(key.as_slice().into()),
            customer,
            version,
        })
    }

    /// The keyed blind index of a normalized value of `field`. Equal values
    /// give equal indexes; without the master key an index reveals nothing.
    pub(crate) fn blind_index(&self, field: &str, normalized: &str) -> [u8; 16] {
        let mut hasher = blake3::Hasher::new_keyed(&self.blind);
        hasher.update(field.as_bytes());
        hasher.update(&[0]);
        hasher.update(normalized.as_bytes());
        let hash = hasher.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&hash.as_bytes()[..16]);
        out
    }
}

fn plugin_aad(what: &str, plugin: &str, name: &str) -> String {
    format!("custodian plugin {what}\0{plugin}\0{name}")
}

fn dek_aad(customer: u64, version: u32) -> Vec<u8> {
    key_aad(WRAP_AAD, customer, version)
}

fn key_aad(label: &[u8], customer: u64, version: u32) -> Vec<u8> {
    let mut aad = label.to_vec();
    aad.extend_from_slice(&customer.to_le_bytes());
    aad.extend_from_slice(&version.to_le_bytes());
    aad
}

fn encode_wrapped(version: u32, wrapped: Sealed) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 24 + wrapped.ciphertext.len());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&wrapped.nonce);
    out.extend_from_slice(&wrapped.ciphertext);
    out
}

/// The data key's part of a customer's stored keys.
fn decode_wrapped(stored: &[u8]) -> Option<(u32, Sealed)> {
    let version = u32::from_le_bytes(stored.get(..4)?.try_into().ok()?);
    let nonce: [u8; 24] = stored.get(4..28)?.try_into().ok()?;
    let ciphertext = stored.get(28..4 + WRAPPED_LEN)?.to_vec();
    Some((version, Sealed { nonce, ciphertext }))
}

/// A ciphertext with its nonce, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sealed {
    pub(crate) nonce: [u8; 24],
    pub(crate) ciphertext: Vec<u8>,
}

impl Sealed {
    /// The nonce then the ciphertext.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.ciphertext.len());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// What [`Sealed::to_bytes`] wrote; `None` if too short to be one.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (nonce, ciphertext) = bytes.split_first_chunk::<24>()?;
        if ciphertext.len() < 16 {
            return None;
        }
        Some(Self {
            nonce: *nonce,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

fn seal_raw(aead: &XChaCha20Poly1305, plain: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let ciphertext = aead
        .encrypt(&nonce, Payload { msg: plain, aad })
        .map_err(|_| CryptoError::Random("encryption failed".into()))?;
    Ok(Sealed {
        nonce: nonce.into(),
        ciphertext,
    })
}

fn open_raw(aead: &XChaCha20Poly1305, sealed: &Sealed, aad: &[u8]) -> Result<Vec<u8>, ()> {
    aead.decrypt(
        XNonce::from_slice(&sealed.nonce),
        Payload {
            msg: &sealed.ciphertext,
            aad,
        },
    )
    .map_err(|_| ())
}

/// A customer's unwrapped mask key: it seals and opens the masked
/// renderings of that customer's fields (`138****8000`), and nothing else,
/// so a masked read never holds the key to the values. Erasure destroys it
/// with the data key.
pub(crate) struct MaskKey(DataKey);

impl MaskKey {
    fn slot(field: &str) -> String {
        format!("mask/{field}")
    }

    /// Seals the masked rendering of `field`.
    pub(crate) fn seal(&self, field: &str, masked: &str) -> Result<Sealed, CryptoError> {
        self.0.seal(&Self::slot(field), masked)
    }

    /// Opens a masked rendering borrowed from storage.
    pub(crate) fn open_parts(
        &self,
        field: &str,
        nonce: &[u8; 24],
        ciphertext: &[u8],
    ) -> Result<String, CryptoError> {
        self.0.open_parts(&Self::slot(field), nonce, ciphertext)
    }
}

/// A customer's unwrapped data key, ready to seal and open that customer's
/// fields. The cipher zeroizes its key when dropped.
pub(crate) struct DataKey {
    aead: XChaCha20Poly1305,
    customer: u64,
    version: u32,
}

impl DataKey {
    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    // AAD = customer id, key version and slot name: a ciphertext opens only
    // where it was sealed.
    fn aad(&self, slot: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(12 + slot.len());
        aad.extend_from_slice(&self.customer.to_le_bytes());
        aad.extend_from_slice(&self.version.to_le_bytes());
        aad.extend_from_slice(slot.as_bytes());
        aad
    }

    /// Seals `plain` for `slot` (a field name, or e.g. `interaction/9/summary`).
    pub(crate) fn seal(&self, slot: &str, plain: &str) -> Result<Sealed, CryptoError> {
        seal_raw(&self.aead, plain.as_bytes(), &self.aad(slot))
    }

    /// Seals bytes for `slot`.
    pub(crate) fn seal_bytes(&self, slot: &str, plain: &[u8]) -> Result<Sealed, CryptoError> {
        seal_raw(&self.aead, plain, &self.aad(slot))
    }

    /// Opens what [`DataKey::seal_bytes`] sealed for the same customer and
    /// slot.
    pub(crate) fn open_bytes(&self, slot: &str, sealed: &Sealed) -> Result<Vec<u8>, CryptoError> {
        let payload = Payload {
            msg: &sealed.ciphertext,
            aad: &self.aad(slot),
        };
        (self.aead)
            .decrypt(XNonce::from_slice(&sealed.nonce), payload)
            .map_err(|_| CryptoError::Unseal {
                what: format!("customer {} {slot}", self.customer),
            })
    }

    /// Opens what [`DataKey::seal`] sealed for the same customer and slot.
    pub(crate) fn open(&self, slot: &str, sealed: &Sealed) -> Result<String, CryptoError> {
        self.open_parts(slot, &sealed.nonce, &sealed.ciphertext)
    }

    /// [`DataKey::open`] on a nonce and ciphertext borrowed from storage.
    pub(crate) fn open_parts(
        &self,
        slot: &str,
        nonce: &[u8; 24],
        ciphertext: &[u8],
    ) -> Result<String, CryptoError> {
        let err = || CryptoError::Unseal {
            what: format!("customer {} {slot}", self.customer),
        };
        let payload = Payload {
            msg: ciphertext,
            aad: &self.aad(slot),
        };
        let plain = self
            .aead
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| err())?;
        String::from_utf8(plain).map_err(|_| err())
    }
}

/// A fresh 256-bit key, zeroized when dropped.
fn random_key() -> Zeroizing<[u8; 32]> {
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(key.as_mut_slice());
    key
}

/// Random bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// A keyed hash for the audit chain.
pub(crate) fn keyed_hash(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    for part in parts {
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// Hex rendering of bytes, for hashes shown to people.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_bad_keys() {
        let key = MasterKey::generate();
        let again = MasterKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(key.to_hex(), again.to_hex());
        assert!(MasterKey::from_hex("abc").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn sealed_field_opens_only_in_its_slot_and_customer() {
        let ring = Keyring::new(&MasterKey::generate());
        let (key, _, wrapped) = ring.new_data_key(7).unwrap();
        let sealed = key.seal("phone", "+8613800138000").unwrap();
        assert_eq!(key.open("phone", &sealed).unwrap(), "+8613800138000");
        assert!(key.open("email", &sealed).is_err());
        let reopened = ring.open_data_key(7, &wrapped).unwrap();
        assert_eq!(reopened.open("phone", &sealed).unwrap(), "+8613800138000");
        assert!(ring.open_data_key(8, &wrapped).is_err());
        let (other, _, _) = ring.new_data_key(8).unwrap();
        assert!(other.open("phone", &sealed).is_err());
    }
}
