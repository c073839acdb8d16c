//! Rejected members: why a member could not become a record, as a stable code plus the detail,
//! with a bounded excerpt of what Mailchimp sent. Nothing is dropped silently, and one bad
//! member never fails its page (CONTRACTS.md "Mapping").

/// Longest excerpt of a rejected member kept, in bytes.
pub const EXCERPT_BYTES: usize = 1024;

/// Why a member could not become a record. [`RejectReason::code`] is stored and grouped by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// No `id`, or an empty one.
    #[error("member has no id")]
    MissingId,
    /// No `email_address`, or an empty one.
    #[error("member has no email address")]
    MissingEmail,
    /// The status is absent or not one of the six.
    #[error("member status {0:?} is not one of subscribed, unsubscribed, cleaned, pending, transactional, archived")]
    InvalidStatus(String),
    /// A mapped field is not a string (e.g. `"id": 123`).
    #[error("a mapped field has the wrong type: {0}")]
    InvalidFieldType(String),
    /// The member object names a field twice.
    #[error("the member names a field twice: {0}")]
    DuplicateField(String),
    /// The member's bytes are not valid UTF-8.
    #[error("the member is not valid UTF-8")]
    InvalidUtf8,
    /// The member is not a JSON object of the expected shape.
    #[error("the member could not be decoded: {0}")]
    Malformed(String),
}

impl RejectReason {
    /// The stable code stored in `rejected_records.code`.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::MissingId => "missing_id",
            RejectReason::MissingEmail => "missing_email",
            RejectReason::InvalidStatus(_) => "invalid_status",
            RejectReason::InvalidFieldType(_) => "invalid_field_type",
            RejectReason::DuplicateField(_) => "duplicate_field",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::Malformed(_) => "malformed_member",
        }
    }

    /// Every code, as the schema's check constraint lists them.
    pub const CODES: [&'static str; 7] = [
        "missing_id",
        "missing_email",
        "invalid_status",
        "invalid_field_type",
        "duplicate_field",
        "invalid_utf8",
        "malformed_member",
    ];

    /// Classifies a serde error from decoding one member.
    pub(crate) fn from_decode(error: &serde_json::Error) -> RejectReason {
        let message = error.to_string();
        if message.starts_with("duplicate field") {
            RejectReason::DuplicateField(message)
        } else if message.starts_with("invalid type") {
            RejectReason::InvalidFieldType(message)
        } else {
            RejectReason::Malformed(message)
        }
    }
}

/// A member that could not be mapped, with what is known of it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rejected member: {reason}")]
pub struct Rejection {
    /// The member's id, when one could be read.
    pub member_id: Option<String>,
    /// Its email address, when one could be read.
    pub email: Option<String>,
    /// Why.
    pub reason: RejectReason,
    /// The decoded member (its mapped fields), when it decoded.
    pub member: Option<serde_json::Value>,
    /// What Mailchimp sent, cut to [`EXCERPT_BYTES`] (invalid UTF-8 replaced).
    pub excerpt: String,
}

/// `raw` as text for people: invalid UTF-8 replaced, cut to [`EXCERPT_BYTES`] on a character
/// boundary.
pub fn excerpt(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(EXCERPT_BYTES + 4)];
    let text = String::from_utf8_lossy(head);
    let mut end = text.len().min(EXCERPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_bounded_and_valid_text() {
        let long = "é".repeat(2000);
        let e = excerpt(long.as_bytes());
        assert!(e.len() <= EXCERPT_BYTES);
        assert!(e.chars().all(|c| c == 'é'));
        assert_eq!(excerpt(b"ab\xffcd"), "ab\u{fffd}cd");
    }

    #[test]
    fn every_code_is_listed_once() {
        let reasons = [
            RejectReason::MissingId,
            RejectReason::MissingEmail,
            RejectReason::InvalidStatus(String::new()),
            RejectReason::InvalidFieldType(String::new()),
            RejectReason::DuplicateField(String::new()),
            RejectReason::InvalidUtf8,
            RejectReason::Malformed(String::new()),
        ];
        let codes: Vec<&str> = reasons.iter().map(RejectReason::code).collect();
        assert_eq!(codes, RejectReason::CODES);
    }
}
