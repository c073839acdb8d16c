//! The Mailchimp Marketing API client: one pooled HTTP client per process
//! ([`MailchimpClient`]), one cheap handle per API key ([`MailchimpAccount`]) that pages list
//! members asking only for the fields we map, and typed errors ([`MailchimpError`]).

mod error;
mod page;
mod since;
mod types;

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::secrets::{validate_mailchimp_key, Secret};

pub(crate) use error::parse_retry_after;
pub use error::MailchimpError;
pub use page::{decode_members_page, MembersPage, PageMember};
pub use since::SinceRule;
pub use types::{
    ListInfo, Member, MemberStatus, MembersQuery, MergeFields, SortDir, SortField, MAX_PAGE_SIZE,
};

/// The `fields` we ask for: exactly what [`crate::mapping`] reads, each member's `last_changed`
/// (the sync engine checks every member lies in its range) and `total_items` (about 165 bytes
/// per member instead of 3.6 KB).
pub const MEMBER_FIELDS: &str = "members.id,members.email_address,members.status,\
members.merge_fields.FNAME,members.merge_fields.LNAME,members.last_changed,total_items";

/// The `fields` of a boundary probe: one member's `last_changed` and the size of the set.
const PROBE_FIELDS: &str = "members.last_changed,total_items";

/// The `fields` of an audit's scan: each member's id and `last_changed`, the set's size (about
/// 80 bytes per member).
const STAMP_FIELDS: &str = "members.id,members.last_changed,total_items";

/// Basic auth takes any user name; Mailchimp only reads the password (the key).
const BASIC_USER: &str = "mailchimp-importer";

/// Timeouts and pooling of the process-wide HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailchimpConfig {
    /// Whole-request timeout, body included (Mailchimp itself gives up at 120 s).
    pub timeout: Duration,
    /// Timeout to open a connection.
    pub connect_timeout: Duration,
    /// Idle connections kept per host for reuse.
    pub pool_idle_per_host: usize,
    /// Longest 2xx body read; a longer one is [`MailchimpError::BodyTooLarge`], never an
    /// out-of-memory.
    pub max_body_bytes: usize,
}

/// [`MailchimpConfig::max_body_bytes`] by default: ten times a full page without `fields`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

impl Default for MailchimpConfig {
    fn default() -> Self {
        MailchimpConfig {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            pool_idle_per_host: 64,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The process's Mailchimp HTTP client; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct MailchimpClient {
    http: reqwest::Client,
    max_body_bytes: usize,
    since_rules: since::SinceRules,
}

impl MailchimpClient {
    /// Builds the pooled client. Errors with [`MailchimpError::Client`] when TLS cannot start.
    pub fn new(config: MailchimpConfig) -> Result<Self, MailchimpError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("mailchimp-importer/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(config.pool_idle_per_host)
            .tcp_nodelay(true)
            .build()
            .map_err(MailchimpError::Client)?;
        Ok(MailchimpClient {
            http,
            max_body_bytes: config.max_body_bytes,
            since_rules: since::SinceRules::default(),
        })
    }

    /// A handle for one API key. The key's shape is checked here, before any request; the base
    /// URL is `https://<dc>.api.mailchimp.com/3.0` unless `base_url_override` is given (tests,
    /// the simulator). Errors: [`MailchimpError::InvalidKey`], [`MailchimpError::InvalidBaseUrl`].
    pub fn account(
        &self,
        api_key: &Secret,
        base_url_override: Option<&str>,
    ) -> Result<MailchimpAccount, MailchimpError> {
        let key = validate_mailchimp_key(api_key.expose())?;
        let base_url = match base_url_override {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://{}.api.mailchimp.com/3.0", key.dc),
        };
        reqwest::Url::parse(&base_url)
            .map_err(|e| MailchimpError::InvalidBaseUrl(e.to_string()))?;
        Ok(MailchimpAccount {
            http: self.http.clone(),
            since: self.since_rules.for_base_url(&base_url),
            base_url,
            dc: key.dc,
            api_key: api_key.clone(),
            max_body_bytes: self.max_body_bytes,
        })
    }
}

/// Mailchimp calls made with one API key. Cheap to clone; `Debug` never shows the key.
#[derive(Clone)]
pub struct MailchimpAccount {
    http: reqwest::Client,
    base_url: String,
    dc: String,
    api_key: Secret,
    max_body_bytes: usize,
    since: since::SinceCell,
}

impl fmt::Debug for MailchimpAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailchimpAccount")
            .field("base_url", &self.base_url)
            .field("dc", &self.dc)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct CountBody {
    total_items: u64,
}

#[derive(Deserialize)]
struct ProbeBody {
    #[serde(default)]
    members: Vec<ProbeMember>,
    total_items: u64,
}

#[derive(Deserialize)]
struct ProbeMember {
    last_changed: String,
}

#[derive(Deserialize)]
struct StampsBody {
    #[serde(default)]
    members: Vec<StampBody>,
    total_items: u64,
}

/// Lenient on purpose: one odd member must not fail an audit's page.
#[derive(Deserialize)]
struct StampBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    last_changed: Option<String>,
}

/// A member as an audit sees it: its id and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Mailchimp's member id.
    pub id: String,
    /// Its `last_changed` (`None` when absent or not a timestamp).
    pub last_changed: Option<DateTime<Utc>>,
}

/// One page of [`MailchimpAccount::member_stamps`].
#[derive(Debug, Clone)]
pub struct StampsPage {
    /// The members at the requested positions, in order; `None` for one without an id (it
    /// cannot be compared, but keeps its place).
    pub stamps: Vec<Option<Stamp>>,
    /// Size of the whole filtered set.
    pub total_items: u64,
    /// Size of the response body.
    pub body_bytes: usize,
}

/// What a boundary probe saw ([`MailchimpAccount::probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Size of the filtered set.
    pub total: u64,
    /// `last_changed` of the member at the probed offset in `last_changed` order, if any.
    pub last_changed: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct PingBody {
    #[allow(dead_code)] // read to check the body is a ping answer
    health_status: String,
}

#[derive(Deserialize)]
struct ListBody {
    id: String,
    name: String,
    stats: ListStats,
}

#[derive(Deserialize)]
struct ListStats {
    member_count: u64,
}

impl MailchimpAccount {
    /// The API base URL this handle calls.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The key's data centre (`us6`).
    pub fn dc(&self) -> &str {
        &self.dc
    }

    /// One page of `GET /lists/{list_id}/members` with only [`MEMBER_FIELDS`], decoded member
    /// by member (a member that cannot be decoded is a rejection in its place).
    /// Errors: see [`MailchimpError`]; the list id and `count` are checked before sending.
    pub async fn members(&self, q: &MembersQuery) -> Result<MembersPage, MailchimpError> {
        if q.count == 0 || q.count > MAX_PAGE_SIZE {
            return Err(MailchimpError::InvalidQuery(format!(
                "count must be 1..={MAX_PAGE_SIZE}, not {}",
                q.count
            )));
        }
        let mut params: Vec<(&str, Cow<'_, str>)> = vec![
            ("fields", MEMBER_FIELDS.into()),
            ("count", q.count.to_string().into()),
            ("offset", q.offset.to_string().into()),
        ];
        push_window(&mut params, q.since_last_changed, q.before_last_changed);
        if let Some((field, dir)) = q.sort {
            params.push(("sort_field", field.as_str().into()));
            params.push(("sort_dir", dir.as_str().into()));
        }
        if let Some(status) = q.status {
            params.push(("status", status.as_str().into()));
        }
        let body = self.get(&members_path(&q.list_id)?, &params).await?;
        decode_members_page(&body)
    }

    /// One page of member ids and `last_changed` (an audit's scan: the tightest projection),
    /// at the query's positions. Errors: see [`MailchimpError`].
    pub async fn member_stamps(&self, q: &MembersQuery) -> Result<StampsPage, MailchimpError> {
        if q.count == 0 || q.count > MAX_PAGE_SIZE {
            return Err(MailchimpError::InvalidQuery(format!(
                "count must be 1..={MAX_PAGE_SIZE}, not {}",
                q.count
            )));
        }
        let mut params: Vec<(&str, Cow<'_, str>)> = vec![
            ("fields", STAMP_FIELDS.into()),
            ("count", q.count.to_string().into()),
            ("offset", q.offset.to_string().into()),
        ];
        push_window(&mut params, q.since_last_changed, q.before_last_changed);
        let body = self.get(&members_path(&q.list_id)?, &params).await?;
        let page: StampsBody = decode(&body)?;
        let stamps = page
            .members
            .into_iter()
            .map(|m| {
                m.id.filter(|id| !id.is_empty()).map(|id| Stamp {
                    id,
                    last_changed: m.last_changed.as_deref().and_then(parse_timestamp),
                })
            })
            .collect();
        Ok(StampsPage {
            stamps,
            total_items: page.total_items,
            body_bytes: body.len(),
        })
    }

    /// The `last_changed` of the member at `offset` of the set changed in `[since, before)`, in
    /// ascending `last_changed` order, with the set's size: a one-member request (~60 bytes)
    /// that tells where a range boundary falls. `offset` past the end gives no member.
    /// Errors: see [`MailchimpError`].
    pub async fn probe(
        &self,
        list_id: &str,
        since: Option<DateTime<Utc>>,
        before: Option<DateTime<Utc>>,
        offset: u64,
    ) -> Result<Probe, MailchimpError> {
        let mut params: Vec<(&str, Cow<'_, str>)> = vec![
            ("fields", PROBE_FIELDS.into()),
            ("count", "1".into()),
            ("offset", offset.to_string().into()),
            ("sort_field", SortField::LastChanged.as_str().into()),
            ("sort_dir", SortDir::Asc.as_str().into()),
        ];
        push_window(&mut params, since, before);
        let body = self.get(&members_path(list_id)?, &params).await?;
        let probe: ProbeBody = decode(&body)?;
        let last_changed =
            match probe.members.first() {
                None => None,
                Some(m) => Some(parse_timestamp(&m.last_changed).ok_or_else(|| {
                    MailchimpError::Malformed {
                        reason: format!("last_changed {:?} is not a timestamp", m.last_changed),
                    }
                })?),
            };
        Ok(Probe {
            total: probe.total_items,
            last_changed,
        })
    }

    /// What this account's Mailchimp has shown of `since_last_changed` so far.
    pub fn since_rule(&self) -> SinceRule {
        self.since.get()
    }

    /// Records what `since_last_changed` was seen to do (shared by every handle of the same
    /// base URL in this process).
    pub fn learn_since_rule(&self, rule: SinceRule) {
        self.since.learn(rule);
    }

    /// How many members changed in `[since, before)` (the whole list when both are `None`), with
    /// the cheap `count=1&fields=total_items` request. Errors: see [`MailchimpError`].
    pub async fn count_members(
        &self,
        list_id: &str,
        since: Option<DateTime<Utc>>,
        before: Option<DateTime<Utc>>,
    ) -> Result<u64, MailchimpError> {
        let mut params: Vec<(&str, Cow<'_, str>)> =
            vec![("fields", "total_items".into()), ("count", "1".into())];
        push_window(&mut params, since, before);
        let body = self.get(&members_path(list_id)?, &params).await?;
        Ok(decode::<CountBody>(&body)?.total_items)
    }

    /// `GET /ping`: checks the key and the connection. Errors: see [`MailchimpError`].
    pub async fn ping(&self) -> Result<(), MailchimpError> {
        let body = self.get("/ping", &[]).await?;
        decode::<PingBody>(&body).map(drop)
    }

    /// `GET /lists/{list_id}`: the list's name and member count. Errors: see [`MailchimpError`]
    /// ([`MailchimpError::NotFound`] for a list of another key).
    pub async fn list_info(&self, list_id: &str) -> Result<ListInfo, MailchimpError> {
        check_list_id(list_id)?;
        let params = [("fields", Cow::from("id,name,stats.member_count"))];
        let body = self.get(&format!("/lists/{list_id}"), &params).await?;
        let list: ListBody = decode(&body)?;
        Ok(ListInfo {
            id: list.id,
            name: list.name,
            member_count: list.stats.member_count,
        })
    }

    /// GETs `{base}{path}` and returns a 2xx body, or the classified error.
    async fn get(
        &self,
        path: &str,
        params: &[(&str, Cow<'_, str>)],
    ) -> Result<Bytes, MailchimpError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .basic_auth(BASIC_USER, Some(self.api_key.expose()))
            .query(params)
            .send()
            .await
            .map_err(MailchimpError::from_send)?;
        let status = response.status();
        if status.is_success() {
            let body = read_bounded(response, self.max_body_bytes).await?;
            tracing::trace!(
                path,
                status = status.as_u16(),
                bytes = body.len(),
                "mailchimp"
            );
            return Ok(body);
        }
        let headers = response.headers().clone();
        // The status is the error; a body that breaks off only loses the detail.
        let body = response.bytes().await.unwrap_or_default();
        let err = MailchimpError::from_status(status, &headers, &body, self.api_key.expose());
        tracing::debug!(path, status = status.as_u16(), error = %err, "mailchimp error");
        Err(err)
    }
}

/// Reads a body chunk by chunk, stopping with [`MailchimpError::BodyTooLarge`] past `limit`.
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, MailchimpError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(MailchimpError::BodyTooLarge { limit });
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(MailchimpError::from_body)? {
        if body.len() + chunk.len() > limit {
            return Err(MailchimpError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn members_path(list_id: &str) -> Result<String, MailchimpError> {
    check_list_id(list_id)?;
    Ok(format!("/lists/{list_id}/members"))
}

/// Whether `list_id` can be a Mailchimp list id: 1 to 64 ASCII letters, digits, `-` or `_`,
/// which go into the URL path unescaped (the schema's CHECK on `lists.mailchimp_list_id` is the
/// same rule). CONTRACTS.md gives ids no format; these characters cannot name another path.
pub fn is_list_id(list_id: &str) -> bool {
    (1..=64).contains(&list_id.len())
        && list_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_list_id(list_id: &str) -> Result<(), MailchimpError> {
    if is_list_id(list_id) {
        Ok(())
    } else {
        Err(MailchimpError::InvalidListId)
    }
}

fn push_window<'a>(
    params: &mut Vec<(&'a str, Cow<'a, str>)>,
    since: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
) {
    if let Some(since) = since {
        params.push(("since_last_changed", format_timestamp(since).into()));
    }
    if let Some(before) = before {
        params.push(("before_last_changed", format_timestamp(before).into()));
    }
}

/// `YYYY-MM-DDTHH:MM:SS+00:00`: UTC, fractions truncated (a fractional value has made
/// Mailchimp answer 500).
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// Parses Mailchimp's `YYYY-MM-DDTHH:MM:SS+00:00` (any offset, fractions dropped) to UTC.
pub fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Decodes a 2xx body straight from bytes into the tight structs (no `serde_json::Value`).
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, MailchimpError> {
    serde_json::from_slice(body).map_err(|e| MailchimpError::Malformed {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_are_whole_utc_seconds() {
        let at = Utc.with_ymd_and_hms(2022, 2, 23, 19, 31, 54).unwrap()
            + chrono::Duration::milliseconds(999);
        assert_eq!(format_timestamp(at), "2022-02-23T19:31:54+00:00");
    }

    #[test]
    fn list_ids_are_short_letters_digits_dashes_and_underscores() {
        assert!(check_list_id("abc123").is_ok());
        assert!(check_list_id(&"a".repeat(64)).is_ok());
        assert!(
            check_list_id("list-1_B").is_ok(),
            "CONTRACTS.md gives ids no format"
        );
        for bad in [
            "",
            "a/b",
            "../x",
            "a.b",
            "a b",
            "ab%2F",
            "é",
            "a?b",
            &"a".repeat(65),
        ] {
            assert!(check_list_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_parse_with_any_offset() {
        let at = parse_timestamp("2022-02-23T19:31:54+00:00").unwrap();
        assert_eq!(format_timestamp(at), "2022-02-23T19:31:54+00:00");
        let shifted = parse_timestamp("2022-02-23T21:31:54+02:00").unwrap();
        assert_eq!(shifted, at);
        assert!(parse_timestamp("yesterday").is_none());
    }
}
