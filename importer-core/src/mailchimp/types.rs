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
    /// Also return each member's `last_changed` (diagnostics and tests; syncing does not need it,
    /// so by default it is not requested).
    pub include_last_changed: bool,
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
            include_last_changed: false,
        }
    }

    /// The same query, also returning each member's `last_changed`.
    pub fn with_last_changed(mut self) -> Self {
        self.include_last_changed = true;
        self
    }
}

/// Mailchimp's `sort_field` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortField {
    TimestampOpt,
    TimestampSignup,
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
    Asc,
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
    Subscribed,
    Unsubscribed,
    Cleaned,
    Pending,
    Transactional,
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

/// A page of members and the size of the whole filtered set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MembersPage {
    /// The members of this page, in the requested order.
    pub members: Vec<Member>,
    /// Size of the whole filtered set, computed with the page.
    pub total_items: u64,
    /// Size of the response body, for metrics and the `fields` trimming test.
    #[serde(skip)]
    pub body_bytes: usize,
}

/// A member, reduced to the fields we map. Absent and `null` fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub email_address: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub merge_fields: MergeFields,
    #[serde(default)]
    pub last_changed: Option<String>,
}

/// The merge fields we map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeFields {
    #[serde(rename = "FNAME", default)]
    pub fname: Option<String>,
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
    pub id: String,
    pub name: String,
    /// Mailchimp's `stats.member_count`.
    pub member_count: u64,
}
