//! The destination's record shape, shared by expectations and what the destination stored.

use serde::{Deserialize, Serialize};

/// `{id, firstname, lastname, email, status}` as CONTRACTS.md maps a member.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Record {
    /// Mailchimp member id (MD5 of the lowercased email).
    pub id: String,
    /// `merge_fields.FNAME`, `""` when absent.
    pub firstname: String,
    /// `merge_fields.LNAME`, `""` when absent.
    pub lastname: String,
    /// `email_address`.
    pub email: String,
    /// Mailchimp status.
    pub status: String,
}

/// What the Mailchimp simulator says the destination should hold.
pub type ExpectedRecord = Record;

/// What the destination simulator holds.
pub type StoredRecord = Record;
