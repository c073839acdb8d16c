//! Member-to-record mapping (CONTRACTS.md "Mapping"): a member becomes a destination
//! [`Record`], or a [`Rejection`] with its reason (see [`crate::rejection`]). Nothing is dropped
//! silently.

use serde::Serialize;

use crate::mailchimp::{Member, MemberStatus};
use crate::rejection::{RejectReason, Rejection};

/// A record as the destination's `POST /record` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Mailchimp's member id (MD5 of the lowercased email); the destination upserts by it.
    pub id: String,
    /// The member's `FNAME` merge field, `""` when absent.
    pub firstname: String,
    /// The member's `LNAME` merge field, `""` when absent.
    pub lastname: String,
    /// The member's `email_address`.
    pub email: String,
    /// One of the six Mailchimp statuses.
    pub status: String,
}

/// Maps one member. Rules: `id` and `email_address` must be non-empty, `status` one of the six;
/// `FNAME`/`LNAME` become `firstname`/`lastname`, `""` when absent or null.
/// Errors: a [`Rejection`] naming the first rule the member breaks.
pub fn map_member(m: Member) -> Result<Record, Box<Rejection>> {
    let reason = if is_blank(&m.id) {
        Some(RejectReason::MissingId)
    } else if is_blank(&m.email_address) {
        Some(RejectReason::MissingEmail)
    } else {
        match m.status.as_deref() {
            Some(s) if MemberStatus::from_wire(s).is_some() => None,
            other => Some(RejectReason::InvalidStatus(
                other.unwrap_or_default().to_owned(),
            )),
        }
    };
    if let Some(reason) = reason {
        return Err(reject(m, reason));
    }
    Ok(Record {
        id: m.id.unwrap_or_default(),
        firstname: m.merge_fields.fname.unwrap_or_default(),
        lastname: m.merge_fields.lname.unwrap_or_default(),
        email: m.email_address.unwrap_or_default(),
        status: m.status.unwrap_or_default(),
    })
}

/// Maps a page, keeping the members' order in both outputs.
pub fn map_page(members: Vec<Member>) -> (Vec<Record>, Vec<Box<Rejection>>) {
    let mut records = Vec::with_capacity(members.len());
    let mut rejections = Vec::new();
    for member in members {
        match map_member(member) {
            Ok(record) => records.push(record),
            Err(rejection) => rejections.push(rejection),
        }
    }
    (records, rejections)
}

/// Empty or whitespace-only counts as missing: the destination refuses both.
fn is_blank(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(|v| v.trim().is_empty())
}

fn reject(m: Member, reason: RejectReason) -> Box<Rejection> {
    // Serializing our own plain struct cannot fail; None would only lose the copy, not the reason.
    let member = serde_json::to_value(&m).ok();
    let excerpt = member
        .as_ref()
        .map(|v| crate::rejection::excerpt(v.to_string().as_bytes()))
        .unwrap_or_default();
    Box::new(Rejection {
        member_id: m.id,
        email: m.email_address,
        reason,
        member,
        excerpt,
    })
}
