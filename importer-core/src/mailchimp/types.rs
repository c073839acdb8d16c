//! The request and response shapes of the members endpoint: only what we send and what we map.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The largest page Mailchimp serves (`count` above it is a 400).
pub const MAX_PAGE_SIZE: u32 = 1000;

/// One request for a page of a list's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersQuery {
    /// The list (audience) id: 1-64 ASCII letters or digits.
    pub list_id: String,
    /// Page size, 1..=1000.
    pub count: u32,
    /// Members of the filtered set to skip.
    pub offset: u64,
    /// Only members changed after this instant (strict or inclusive, depending on Mailchimp).
    /// Sent in whole seconds: fractions are truncated.
    pub since_last_changed: Option<DateTime<Utc>>,
    /// Only members changed strictly before this instant. Fractions are truncated.
    pub before_last_changed: Option<DateTime<Utc>>,
    /// Order; `None` is Mailchimp's stable insertion order.
    pub sort: Option<(SortField, SortDir)>,
    /// Only members with this status.
    pub status: Option<MemberStatus>,
}

impl MembersQuery {
    /// The first full page of `list_id` in insertion order, unfiltered.
    pub fn new(list_id: impl Into<String>) -> Self {
        MembersQuery {
            list_id: list_id.into(),
            count: MAX_PAGE_SIZE,
            offset: 0,
            since_last_changed: None,
            before_last_changed: None,
            sort: None,
            status: None,
        }
    }
}

/// Mailchimp's `sort_field` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortField {
    /// `timestamp_opt`: when the member opted in.
    TimestampOpt,
    /// `timestamp_signup`: when the member signed up.
    TimestampSignup,
    /// `last_changed`: when the member was last changed.
    LastChanged,
}

impl SortField {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            SortField::TimestampOpt => "timestamp_opt",
            SortField::TimestampSignup => "timestamp_signup",
            SortField::LastChanged => "last_changed",
        }
    }
}

/// Mailchimp's `sort_dir` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortDir {
    /// `ASC`: ascending.
    Asc,
    /// `DESC`: descending.
    Desc,
}

impl SortDir {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            SortDir::Asc => "ASC",
            SortDir::Desc => "DESC",
        }
    }
}

/// The six member statuses Mailchimp knows (and the destination accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// `subscribed`.
    Subscribed,
    /// `unsubscribed`.
    Unsubscribed,
    /// `cleaned`.
    Cleaned,
    /// `pending`.
    Pending,
    /// `transactional`.
    Transactional,
    /// `archived`.
    Archived,
}

impl MemberStatus {
    /// Every status, in Mailchimp's documented order.
    pub const ALL: [MemberStatus; 6] = [
        MemberStatus::Subscribed,
        MemberStatus::Unsubscribed,
        MemberStatus::Cleaned,
        MemberStatus::Pending,
        MemberStatus::Transactional,
        MemberStatus::Archived,
    ];

    /// The wire value (`subscribed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Subscribed => "subscribed",
            MemberStatus::Unsubscribed => "unsubscribed",
            MemberStatus::Cleaned => "cleaned",
            MemberStatus::Pending => "pending",
            MemberStatus::Transactional => "transactional",
            MemberStatus::Archived => "archived",
        }
    }

    /// Parses a wire value exactly (case-sensitive, as Mailchimp sends it); `None` otherwise.
    pub fn from_wire(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// A member, reduced to the fields we map. Absent and `null` fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Mailchimp's member id (the subscriber hash); use it as sent.
    #[serde(default)]
    pub id: Option<String>,
    /// The member's email address.
    #[serde(default)]
    pub email_address: Option<String>,
    /// The member's status as sent (`subscribed`, …), not yet validated.
    #[serde(default)]
    pub status: Option<String>,
    /// The merge fields we map; empty when absent or `null`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub merge_fields: MergeFields,
    /// When Mailchimp last changed the member (`YYYY-MM-DDTHH:MM:SS+00:00`, whole seconds).
    #[serde(default)]
    pub last_changed: Option<String>,
}

impl Member {
    /// `last_changed` in Unix seconds: Mailchimp's `YYYY-MM-DDTHH:MM:SS+00:00` read without a
    /// general date parser (this runs for every member), other offsets through RFC 3339.
    pub fn last_changed_secs(&self) -> Option<i64> {
        let value = self.last_changed.as_deref()?;
        fast_utc_seconds(value).or_else(|| {
            chrono::DateTime::parse_from_rfc3339(value)
                .ok()
                .map(|t| t.timestamp())
        })
    }
}

/// Seconds since the epoch of exactly `YYYY-MM-DDTHH:MM:SS+00:00`; `None` for anything else.
fn fast_utc_seconds(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    if b.len() != 25
        || &b[19..] != b"+00:00"
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(num(0..4)?).ok()?,
        u32::try_from(num(5..7)?).ok()?,
        u32::try_from(num(8..10)?).ok()?,
    )?;
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp() + h * 3600 + m * 60 + s)
}

/// The merge fields we map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeFields {
    /// `FNAME`: the first name.
    #[serde(rename = "FNAME", default)]
    pub fname: Option<String>,
    /// `LNAME`: the last name.
    #[serde(rename = "LNAME", default)]
    pub lname: Option<String>,
}

/// `merge_fields: null` reads as no merge fields rather than failing the whole page.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A list's name and size (`GET /lists/{list_id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListInfo {
    /// The list (audience) id.
    pub id: String,
    /// The list's name.
    pub name: String,
    /// Mailchimp's `stats.member_count`.
    pub member_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_changed_is_read_in_seconds_whatever_the_offset() {
        let m = |v: &str| Member {
            last_changed: Some(v.to_owned()),
            ..Member::default()
        };
        assert_eq!(
            m("2022-02-23T19:31:54+00:00").last_changed_secs(),
            Some(1_645_644_714)
        );
        assert_eq!(
            m("2022-02-23T21:31:54+02:00").last_changed_secs(),
            Some(1_645_644_714)
        );
        assert_eq!(m("1970-01-01T00:00:00+00:00").last_changed_secs(), Some(0));
        assert_eq!(m("2022-13-23T19:31:54+00:00").last_changed_secs(), None);
        assert_eq!(m("").last_changed_secs(), None);
        assert_eq!(Member::default().last_changed_secs(), None);
    }
}
