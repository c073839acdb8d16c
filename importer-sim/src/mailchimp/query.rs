//! The members endpoint's query parameters: validation and page selection.
//!
//! Selection runs under the list's read lock and computes `total_items` from the same snapshot
//! as the page. Without `sort_field` members come in insertion order, which is stable: a
//! modified member keeps its place. Sorting is stable too (ties keep insertion order) unless
//! `unstable_ties` shuffles them on every request.
//!
//! The positions of a filtered set are cached per list until the next mutation, so paging
//! through a window of a million members scans the list once, not once per page.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::fields::PathTree;
use super::members::{Member, Status};
use super::problem::Problem;
use super::selection::{SelectionKey, SortField};
use super::store::ListData;
use crate::config::MailchimpSimConfig;

/// Largest page Mailchimp serves.
pub(crate) const MAX_COUNT: usize = 1000;

/// A validated members query. Timestamps are in nanoseconds since the epoch.
#[derive(Debug, Default)]
pub(crate) struct MemberQuery {
    pub count: usize,
    pub offset: usize,
    pub since: Option<i64>,
    pub before: Option<i64>,
    pub sort: Option<(SortField, bool)>,
    pub status: Option<Status>,
    pub fields: Option<PathTree>,
    pub exclude: Option<PathTree>,
}

/// `fields` and `exclude_fields` of any endpoint.
pub(crate) fn field_params(params: &[(String, String)]) -> (Option<PathTree>, Option<PathTree>) {
    (
        param(params, "fields").map(PathTree::parse),
        param(params, "exclude_fields").map(PathTree::parse),
    )
}

/// The last non-empty value of `name`.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

impl MemberQuery {
    /// Validates the parameters; errors are Mailchimp's 400 "Invalid Resource".
    pub(crate) fn parse(
        params: &[(String, String)],
        config: &MailchimpSimConfig,
    ) -> Result<MemberQuery, Problem> {
        let (fields, exclude) = field_params(params);
        let mut q = MemberQuery {
            count: 10,
            fields,
            exclude,
            ..MemberQuery::default()
        };
        if let Some(v) = param(params, "count") {
            q.count = v.parse().map_err(|_| {
                Problem::invalid("count", format!("{v:?} is not a non-negative integer"))
            })?;
            if q.count > MAX_COUNT {
                if !config.clamp_count {
                    return Err(Problem::invalid(
                        "count",
                        format!("{} is greater than the maximum of {MAX_COUNT}", q.count),
                    ));
                }
                q.count = MAX_COUNT;
            }
        }
        if let Some(v) = param(params, "offset") {
            q.offset = v.parse().map_err(|_| {
                Problem::invalid("offset", format!("{v:?} is not a non-negative integer"))
            })?;
        }
        q.since = param(params, "since_last_changed")
            .map(|v| parse_time("since_last_changed", v, config.strict_timestamps))
            .transpose()?;
        q.before = param(params, "before_last_changed")
            .map(|v| parse_time("before_last_changed", v, config.strict_timestamps))
            .transpose()?;
        let field = param(params, "sort_field")
            .map(|v| match v {
                "timestamp_opt" => Ok(SortField::TimestampOpt),
                "timestamp_signup" => Ok(SortField::TimestampSignup),
                "last_changed" => Ok(SortField::LastChanged),
                _ => Err(Problem::invalid(
                    "sort_field",
                    format!("{v:?} is not one of timestamp_opt, timestamp_signup, last_changed"),
                )),
            })
            .transpose()?;
        let desc = match param(params, "sort_dir") {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(v) => {
                return Err(Problem::invalid(
                    "sort_dir",
                    format!("{v:?} is not one of ASC, DESC"),
                ))
            }
        };
        q.sort = field.map(|f| (f, desc));
        q.status = param(params, "status")
            .map(|v| {
                Status::parse(v).ok_or_else(|| {
                    Problem::invalid(
                        "status",
                        format!("{v:?} is not one of subscribed, unsubscribed, cleaned, pending, transactional, archived"),
                    )
                })
            })
            .transpose()?;
        Ok(q)
    }

    fn matches(&self, m: &Member, inclusive_since: bool) -> bool {
        let changed = m.last_changed.saturating_mul(1_000_000_000);
        if let Some(since) = self.since {
            if changed < since || (changed == since && !inclusive_since) {
                return false;
            }
        }
        if let Some(before) = self.before {
            if changed >= before {
                return false;
            }
        }
        self.status.is_none_or(|s| m.status == s)
    }

    /// What identifies the filtered (and sorted) set, independent of paging.
    pub(crate) fn selection_key(&self, inclusive_since: bool) -> SelectionKey {
        SelectionKey {
            since: self.since,
            before: self.before,
            status: self.status,
            sort: self.sort,
            inclusive_since,
        }
    }

    /// The page and the size of the whole filtered set, from one snapshot of the list.
    /// `tie_rng` (unstable ties) shuffles ties when sorting; such selections are not cached.
    pub(crate) fn select(
        &self,
        list: &ListData,
        inclusive_since: bool,
        tie_rng: Option<&mut StdRng>,
    ) -> (Vec<Member>, usize) {
        let members = &list.members;
        let unfiltered = self.since.is_none() && self.before.is_none() && self.status.is_none();
        if unfiltered && self.sort.is_none() {
            let start = self.offset.min(members.len());
            let end = start.saturating_add(self.count).min(members.len());
            return (members[start..end].to_vec(), members.len());
        }
        let positions = match tie_rng {
            Some(rng) if self.sort.is_some() => {
                Arc::new(self.positions(members, inclusive_since, Some(rng)))
            }
            _ => list.cached(self.selection_key(inclusive_since), || {
                self.positions(members, inclusive_since, None)
            }),
        };
        let start = self.offset.min(positions.len());
        let end = start.saturating_add(self.count).min(positions.len());
        let page = positions[start..end]
            .iter()
            .map(|&p| members[p as usize])
            .collect();
        (page, positions.len())
    }

    /// Positions (in insertion order) of the matching members, sorted if asked.
    fn positions(
        &self,
        members: &[Member],
        inclusive_since: bool,
        tie_rng: Option<&mut StdRng>,
    ) -> Vec<u32> {
        let mut matching: Vec<u32> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| self.matches(m, inclusive_since))
            .map(|(i, _)| i as u32)
            .collect();
        let Some((field, desc)) = self.sort else {
            return matching;
        };
        if let Some(rng) = tie_rng {
            matching.shuffle(rng);
        }
        let key = |p: &u32| {
            let m = &members[*p as usize];
            match field {
                SortField::TimestampOpt => m.timestamp_opt,
                SortField::TimestampSignup => m.timestamp_signup,
                SortField::LastChanged => m.last_changed,
            }
        };
        // Stable sorts: equal keys keep their (insertion or shuffled) order in both directions.
        if desc {
            matching.sort_by_key(|p| std::cmp::Reverse(key(p)));
        } else {
            matching.sort_by_key(key);
        }
        matching
    }
}

/// Parses an ISO 8601 timestamp into nanoseconds; fractions are refused when `strict`.
fn parse_time(field: &str, value: &str, strict: bool) -> Result<i64, Problem> {
    let time_part = value.split_once('T').map_or(value, |(_, t)| t);
    if strict && time_part.contains('.') {
        return Err(Problem::invalid(
            field,
            format!("{value:?} has fractional seconds; use YYYY-MM-DDTHH:MM:SS+00:00"),
        ));
    }
    let parsed = DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .or_else(|_| {
            NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
        })
        .map_err(|_| {
            Problem::invalid(
                field,
                format!("{value:?} is not a valid ISO 8601 date-time (YYYY-MM-DDTHH:MM:SS+00:00)"),
            )
        })?;
    parsed
        .timestamp_nanos_opt()
        .ok_or_else(|| Problem::invalid(field, format!("{value:?} is out of range")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn timestamps_with_offsets_and_fractions() {
        let strict = MailchimpSimConfig::default();
        let q = MemberQuery::parse(
            &p(&[("since_last_changed", "2022-02-23T19:31:54+00:00")]),
            &strict,
        )
        .unwrap();
        assert_eq!(q.since, Some(1_645_644_714_000_000_000));
        let frac = p(&[("since_last_changed", "2022-02-23T19:31:54.5+00:00")]);
        assert!(MemberQuery::parse(&frac, &strict).is_err());
        let lax = MailchimpSimConfig {
            strict_timestamps: false,
            ..Default::default()
        };
        assert_eq!(
            MemberQuery::parse(&frac, &lax).unwrap().since,
            Some(1_645_644_714_500_000_000)
        );
        assert!(MemberQuery::parse(&p(&[("before_last_changed", "yesterday")]), &strict).is_err());
    }
}
