//! Secrets: encryption at rest of API keys, the [`Secret`] wrapper that keeps them out of logs,
//! redaction for display, and validation of the Mailchimp API key shape.
//!
//! Stored secrets are `nonce (12 bytes) || ChaCha20-Poly1305 ciphertext with its tag`, under one
//! 32-byte key given to every process as 64 hex characters in `IMPORTER_SECRET_KEY`.

use std::fmt;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The environment variable [`SecretBox::from_env`] reads.
pub const SECRET_KEY_ENV: &str = "IMPORTER_SECRET_KEY";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Errors of the encryption key and of decryption.
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
    /// Authentication failed: wrong encryption key, or the stored bytes were altered.
    #[error("stored secret failed to decrypt: wrong encryption key or corrupted data")]
    Decrypt,
    /// The decrypted bytes are not UTF-8 (cannot happen for values we encrypted).
    #[error("decrypted secret is not valid UTF-8")]
    NotUtf8,
}

/// Why a string is not a Mailchimp API key. Messages never contain the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key does not have the shape `<32 lowercase hex>-<data centre>`.
    #[error(
        "a Mailchimp API key looks like <32 lowercase hex characters>-<data centre such as us6>"
    )]
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

/// Encrypts and decrypts secrets with one ChaCha20-Poly1305 key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

impl SecretBox {
    /// Builds a box from 64 hex characters. Errors with [`SecretError::BadKey`] otherwise.
    pub fn from_hex(hex_key: &str) -> Result<Self, SecretError> {
        Self::parse(hex_key, "encryption key")
    }

    /// Builds a box from `IMPORTER_SECRET_KEY`; errors name the variable.
    pub fn from_env() -> Result<Self, SecretError> {
        Self::from_env_var(SECRET_KEY_ENV)
    }

    /// Builds a box from the named environment variable; errors name the variable.
    pub fn from_env_var(var: &str) -> Result<Self, SecretError> {
        let value = std::env::var(var).map_err(|_| SecretError::MissingEnv {
            var: var.to_owned(),
        })?;
        Self::parse(&value, var)
    }

    fn parse(hex_key: &str, origin: &str) -> Result<Self, SecretError> {
        let bad = || SecretError::BadKey {
            origin: origin.to_owned(),
        };
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key.trim(), &mut key).map_err(|_| bad())?;
        Ok(SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    /// A fresh random key as 64 hex characters, for `IMPORTER_SECRET_KEY`.
    pub fn generate_key_hex() -> String {
        hex::encode(ChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// Encrypts `plaintext` under a fresh random nonce; returns `nonce || ciphertext`.
    ///
    /// # Panics
    /// Only for plaintexts over 256 GiB, the cipher's limit (API keys are tens of bytes).
    pub fn encrypt(&self, plaintext: &str) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        #[allow(clippy::expect_used)] // the only failure is the 256 GiB length limit
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("ChaCha20-Poly1305 encrypts anything under 256 GiB");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts `nonce || ciphertext`. Errors: [`SecretError::TooShort`] for bytes we cannot have
    /// written, [`SecretError::Decrypt`] for a wrong key or tampered bytes.
    pub fn decrypt(&self, stored: &[u8]) -> Result<Secret, SecretError> {
        if stored.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::TooShort {
                len: stored.len(),
                min: NONCE_LEN + TAG_LEN,
            });
        }
        let (nonce, ciphertext) = stored.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(plaintext)
            .map(Secret)
            .map_err(|_| SecretError::NotUtf8)
    }
}

/// A Mailchimp API key's public part, once its shape is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailchimpKey {
    /// The data centre (`us6`), which picks the API base URL.
    pub dc: String,
}

/// Checks the shape `<32 lowercase hex>-<dc>` (dc: letters then digits, like `us6` or `us21`).
/// Errors with [`KeyError::Shape`], whose message describes the shape without echoing the key.
pub fn validate_mailchimp_key(key: &str) -> Result<MailchimpKey, KeyError> {
    let (hex_part, dc) = key.split_once('-').ok_or(KeyError::Shape)?;
    let hex_ok = hex_part.len() == 32
        && hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
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
