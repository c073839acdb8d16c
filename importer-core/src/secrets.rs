//! Secrets: encryption at rest of API keys (with key rotation), the [`Secret`] wrapper that
//! keeps them out of logs, redaction for display, and validation of the Mailchimp API key shape.
//!
//! A stored secret is `0x02 || key id (8 bytes) || nonce (12 bytes) || ChaCha20-Poly1305
//! ciphertext and tag`. The associated data binds it to its place: the header, the account id and
//! the column ([`SecretSlot`]), so a ciphertext copied to another account or column fails to
//! decrypt. The key id (a truncated SHA-256 of the key, which reveals nothing usable about it)
//! says which key sealed the value, which is what tells "this process lacks the key" (a fault of
//! the process) from "these bytes were swapped or altered" (a fault of the row).
//!
//! Keys come as 64 hex characters: `IMPORTER_SECRET_KEY` seals and opens, and during a rotation
//! `IMPORTER_SECRET_KEY_PREVIOUS` only opens. Values written before this format (`nonce ||
//! ciphertext`, no header, no associated data) still open, and `secrets rotate` rewrites them.

use std::fmt;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// The environment variable holding the current key, which seals every new secret.
pub const SECRET_KEY_ENV: &str = "IMPORTER_SECRET_KEY";
/// The environment variable holding the previous key during a rotation (opens, never seals).
pub const PREVIOUS_SECRET_KEY_ENV: &str = "IMPORTER_SECRET_KEY_PREVIOUS";

const VERSION: u8 = 2;
const KEY_ID_LEN: usize = 8;
const HEADER_LEN: usize = 1 + KEY_ID_LEN;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Errors of the encryption keys and of decryption.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable holding the encryption key is unset or not unicode.
    #[error("environment variable {var} is not set: it must hold the 32-byte encryption key as 64 hex characters")]
    MissingEnv {
        /// Name of the environment variable.
        var: String,
    },
    /// The encryption key is not 64 hex characters (the key itself is never echoed).
    #[error("{origin}: the encryption key must be 64 hex characters (32 bytes)")]
    BadKey {
        /// Where the key came from: the environment variable's name, or `encryption key`.
        origin: String,
    },
    /// The stored value is shorter than a nonce plus a tag: not something we encrypted.
    #[error("stored secret is {len} bytes, shorter than a nonce and tag ({min} bytes)")]
    TooShort {
        /// Length of the stored value, in bytes.
        len: usize,
        /// Smallest valid length: nonce plus tag, in bytes.
        min: usize,
    },
    /// The value was sealed by a key this process does not have: a fault of its configuration.
    #[error("stored secret was sealed by key {key_id}, which is neither IMPORTER_SECRET_KEY (key {current}) nor IMPORTER_SECRET_KEY_PREVIOUS")]
    UnknownKey {
        /// Id of the key that sealed the value.
        key_id: String,
        /// Id of this process's current key.
        current: String,
    },
    /// Sealed by a key we have, but it does not open here: the bytes were altered or belong to
    /// another account or column.
    #[error("stored secret does not open for account {account_id}'s {column}: it was altered or copied from another account or column")]
    Misplaced {
        /// The account the value was read for.
        account_id: i64,
        /// The column it was read from.
        column: &'static str,
    },
    /// An old-format value (no key id) that none of this process's keys opens.
    #[error("stored secret (old format, no key id) opens with none of this process's keys: wrong IMPORTER_SECRET_KEY or corrupted data")]
    Decrypt,
    /// The decrypted bytes are not UTF-8 (cannot happen for values we encrypted).
    #[error("decrypted secret is not valid UTF-8")]
    NotUtf8,
}

impl SecretError {
    /// Whether the process reading the value is at fault (a missing or wrong key), rather than
    /// the stored value: another process with the right keys can open it.
    pub fn is_key_fault(&self) -> bool {
        matches!(self, SecretError::UnknownKey { .. } | SecretError::Decrypt)
    }
}

/// Why a string is not a Mailchimp API key. Messages never contain the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key does not have the shape `<32 hex>-<data centre>`.
    #[error("a Mailchimp API key looks like <32 hex characters>-<data centre such as us6>")]
    Shape,
}

/// A secret value (an API key). `Debug` and `Display` print `[redacted]`; use [`Secret::expose`]
/// only where the value goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place it must be used (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The encrypted columns of `importer.accounts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretField {
    /// `mailchimp_key`.
    MailchimpKey,
    /// `destination_key`.
    DestinationKey,
}

impl SecretField {
    /// The column's name.
    pub fn column(self) -> &'static str {
        match self {
            SecretField::MailchimpKey => "mailchimp_key",
            SecretField::DestinationKey => "destination_key",
        }
    }

    /// The redacted form of a value of this field, safe to display (its `_hint` column).
    pub fn hint(self, secret: &Secret) -> String {
        match self {
            SecretField::MailchimpKey => redact_mailchimp_key(secret.expose()),
            SecretField::DestinationKey => redact_destination_key(secret.expose()),
        }
    }
}

/// Where a stored secret lives: the associated data that binds a ciphertext to its row and
/// column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSlot {
    /// The account's id.
    pub account_id: i64,
    /// The column.
    pub field: SecretField,
}

impl SecretSlot {
    /// The slot of `field` in account `account_id`.
    pub fn new(account_id: i64, field: SecretField) -> Self {
        SecretSlot { account_id, field }
    }

    fn associated_data(self, header: &[u8]) -> Vec<u8> {
        let mut aad = header.to_vec();
        aad.extend_from_slice(
            format!(
                "importer.accounts/{}/{}",
                self.field.column(),
                self.account_id
            )
            .as_bytes(),
        );
        aad
    }
}

/// A secret sealed for one slot, with its display hint: what an account row stores.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// The redacted value for display.
    pub hint: String,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({})", self.hint)
    }
}

/// Which key sealed a stored value, as [`SecretBox::key_of`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedBy {
    /// The current key: nothing to rotate.
    Current,
    /// The previous key: `secrets rotate` rewrites it.
    Previous,
    /// Another key, by id: this process cannot open it.
    Unknown(String),
    /// The old format without a key id: `secrets rotate` rewrites it.
    Legacy,
}

/// One 32-byte key and its id.
#[derive(Clone)]
struct KeyEntry {
    id: [u8; KEY_ID_LEN],
    cipher: ChaCha20Poly1305,
}

impl KeyEntry {
    fn parse(hex_key: &str, origin: &str) -> Result<Self, SecretError> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key.trim(), &mut key).map_err(|_| SecretError::BadKey {
            origin: origin.to_owned(),
        })?;
        let digest = Sha256::new()
            .chain_update(b"mailchimp-importer secret key id\0")
            .chain_update(key)
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Ok(KeyEntry {
            id,
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }
}

/// Seals secrets with the current key and opens them with the current or the previous one.
#[derive(Clone)]
pub struct SecretBox {
    current: KeyEntry,
    previous: Option<KeyEntry>,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBox(key {})", self.current_key_id())
    }
}

impl SecretBox {
    /// Builds a box from 64 hex characters. Errors with [`SecretError::BadKey`] otherwise.
    pub fn from_hex(hex_key: &str) -> Result<Self, SecretError> {
        Ok(SecretBox {
            current: KeyEntry::parse(hex_key, "encryption key")?,
            previous: None,
        })
    }

    /// This box, also opening (never sealing) values of the previous key `hex_key`.
    pub fn with_previous(self, hex_key: &str) -> Result<Self, SecretError> {
        self.previous_from(hex_key, "previous encryption key")
    }

    /// Sets the previous key (ignored when it is the current one); errors name `origin`.
    fn previous_from(mut self, hex_key: &str, origin: &str) -> Result<Self, SecretError> {
        let previous = KeyEntry::parse(hex_key, origin)?;
        self.previous = (previous.id != self.current.id).then_some(previous);
        Ok(self)
    }

    /// The keys that open values: the current one, then the previous one.
    fn keys(&self) -> impl Iterator<Item = &KeyEntry> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }

    /// Builds a box from `IMPORTER_SECRET_KEY` and, when set and non-empty,
    /// `IMPORTER_SECRET_KEY_PREVIOUS`; errors name the variable.
    pub fn from_env() -> Result<Self, SecretError> {
        let sbox = Self::from_env_var(SECRET_KEY_ENV)?;
        match std::env::var(PREVIOUS_SECRET_KEY_ENV) {
            Ok(previous) if !previous.trim().is_empty() => {
                sbox.previous_from(&previous, PREVIOUS_SECRET_KEY_ENV)
            }
            _ => Ok(sbox),
        }
    }

    /// Builds a box from the named environment variable alone; errors name the variable.
    pub fn from_env_var(var: &str) -> Result<Self, SecretError> {
        let value = std::env::var(var).map_err(|_| SecretError::MissingEnv {
            var: var.to_owned(),
        })?;
        Ok(SecretBox {
            current: KeyEntry::parse(&value, var)?,
            previous: None,
        })
    }

    /// A fresh random key as 64 hex characters, for `IMPORTER_SECRET_KEY`.
    pub fn generate_key_hex() -> String {
        hex::encode(ChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// The current key's id (16 hex characters), safe to print.
    pub fn current_key_id(&self) -> String {
        hex::encode(self.current.id)
    }

    /// The previous key's id, when this box has one.
    pub fn previous_key_id(&self) -> Option<String> {
        self.previous.as_ref().map(|k| hex::encode(k.id))
    }

    /// Encrypts `plaintext` for `slot` under the current key and a fresh random nonce.
    ///
    /// # Panics
    /// Only for plaintexts over 256 GiB, the cipher's limit (API keys are tens of bytes).
    pub fn encrypt(&self, slot: SecretSlot, plaintext: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.current.id);
        let aad = slot.associated_data(&out);
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        #[allow(clippy::expect_used)] // the only failure is the 256 GiB length limit
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("ChaCha20-Poly1305 encrypts anything under 256 GiB");
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Seals `secret` for `field` of account `account_id`, with its display hint.
    pub fn seal(&self, account_id: i64, field: SecretField, secret: &Secret) -> Sealed {
        Sealed {
            bytes: self.encrypt(SecretSlot::new(account_id, field), secret.expose()),
            hint: field.hint(secret),
        }
    }

    /// Which key sealed `stored` (no decryption: a look at the header).
    pub fn key_of(&self, stored: &[u8]) -> SealedBy {
        match self.header_key(stored) {
            Some(Ok(entry)) if entry.id == self.current.id => SealedBy::Current,
            Some(Ok(_)) => SealedBy::Previous,
            Some(Err(id)) => SealedBy::Unknown(hex::encode(id)),
            None => SealedBy::Legacy,
        }
    }

    /// The key named by a current-format header: `Ok` when this box has it, `Err(id)` when not;
    /// `None` when `stored` has no such header.
    fn header_key(&self, stored: &[u8]) -> Option<Result<&KeyEntry, [u8; KEY_ID_LEN]>> {
        if stored.len() < HEADER_LEN + NONCE_LEN + TAG_LEN || stored[0] != VERSION {
            return None;
        }
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&stored[1..HEADER_LEN]);
        let entry = self.keys().find(|k| k.id == id);
        Some(entry.ok_or(id))
    }

    /// Decrypts a value stored in `slot`. Errors: [`SecretError::UnknownKey`] (and, for the
    /// old format, [`SecretError::Decrypt`]) when this box lacks the key,
    /// [`SecretError::Misplaced`] when the key is here but the bytes do not open for this slot,
    /// [`SecretError::TooShort`] for bytes we cannot have written.
    pub fn decrypt(&self, slot: SecretSlot, stored: &[u8]) -> Result<Secret, SecretError> {
        let plaintext = match self.header_key(stored) {
            Some(Ok(entry)) => {
                let (header, rest) = stored.split_at(HEADER_LEN);
                let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
                let aad = slot.associated_data(header);
                let opened = entry.cipher.decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                );
                opened.map_err(|_| SecretError::Misplaced {
                    account_id: slot.account_id,
                    column: slot.field.column(),
                })?
            }
            // An old-format value whose random nonce happens to start like a header (1 in 256)
            // is tried as one before giving up.
            Some(Err(id)) => self
                .decrypt_legacy(stored)
                .map_err(|_| SecretError::UnknownKey {
                    key_id: hex::encode(id),
                    current: self.current_key_id(),
                })?,
            None => self.decrypt_legacy(stored)?,
        };
        String::from_utf8(plaintext)
            .map(Secret)
            .map_err(|_| SecretError::NotUtf8)
    }

    /// Opens the old format, `nonce || ciphertext` without associated data, with any key here.
    fn decrypt_legacy(&self, stored: &[u8]) -> Result<Vec<u8>, SecretError> {
        if stored.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::TooShort {
                len: stored.len(),
                min: NONCE_LEN + TAG_LEN,
            });
        }
        let (nonce, ciphertext) = stored.split_at(NONCE_LEN);
        self.keys()
            .find_map(|k| k.cipher.decrypt(Nonce::from_slice(nonce), ciphertext).ok())
            .ok_or(SecretError::Decrypt)
    }

    /// Re-seals `stored` (read from `slot`) under the current key; `Ok(None)` when it already is.
    pub fn reseal(&self, slot: SecretSlot, stored: &[u8]) -> Result<Option<Vec<u8>>, SecretError> {
        if self.key_of(stored) == SealedBy::Current {
            // Opened anyway, so a rotation never counts a misplaced value as done.
            self.decrypt(slot, stored)?;
            return Ok(None);
        }
        let secret = self.decrypt(slot, stored)?;
        Ok(Some(self.encrypt(slot, secret.expose())))
    }
}

/// A Mailchimp API key's public part, once its shape is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailchimpKey {
    /// The data centre (`us6`), which picks the API base URL.
    pub dc: String,
}

/// Checks the shape `<32 hex>-<dc>` (dc: letters then digits, like `us6` or `us21`). Hex in
/// either case: CONTRACTS.md says `<32 hex>`, and Mailchimp's own keys happen to be lowercase.
/// Errors with [`KeyError::Shape`], whose message describes the shape without echoing the key.
pub fn validate_mailchimp_key(key: &str) -> Result<MailchimpKey, KeyError> {
    let (hex_part, dc) = key.split_once('-').ok_or(KeyError::Shape)?;
    let hex_ok = hex_part.len() == 32 && hex_part.bytes().all(|b| b.is_ascii_hexdigit());
    if hex_ok && is_data_centre(dc) {
        Ok(MailchimpKey { dc: dc.to_owned() })
    } else {
        Err(KeyError::Shape)
    }
}

/// Letters then digits, short: `us6`, `us21`.
fn is_data_centre(dc: &str) -> bool {
    let letters = dc.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = dc[letters..].bytes().take_while(u8::is_ascii_digit).count();
    letters > 0 && digits > 0 && letters + digits == dc.len() && dc.len() <= 8
}

/// `0123…abcd-us6` → `…-us6`: only the data centre, which is not secret.
pub fn redact_mailchimp_key(key: &str) -> String {
    match key.rsplit_once('-') {
        Some((_, dc)) if is_data_centre(dc) => format!("…-{dc}"),
        _ => "…".to_owned(),
    }
}

/// `…` plus the last 4 characters when the key has at least 16 (enough left hidden), else `…`.
pub fn redact_destination_key(key: &str) -> String {
    let len = key.chars().count();
    if len >= 16 {
        let tail: String = key.chars().skip(len - 4).collect();
        format!("…{tail}")
    } else {
        "…".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_centres_are_letters_then_digits() {
        for ok in ["us6", "us21", "eu1"] {
            assert!(is_data_centre(ok), "{ok}");
        }
        for bad in ["", "us", "6", "6us", "us-6", "US6", "us6x", "usaaaaaa6"] {
            assert!(!is_data_centre(bad), "{bad}");
        }
    }
}
