//! Configuration of both simulators: behaviour switches, latency model and seeded accounts.
//!
//! Everything deserializes from TOML/JSON with defaults for every field. Durations are written
//! as integers with their unit in the key (`latency_base_ms`, `latency_per_member_us`), while the
//! Rust fields are `Duration`s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole simulator configuration (`sim.toml`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Seed of every generated value (keys, members, fault draws).
    pub seed: u64,
    /// Mailchimp simulator switches.
    pub mailchimp: MailchimpSimConfig,
    /// Destination simulator switches.
    pub destination: DestinationSimConfig,
    /// Accounts registered at start (API keys, lists, destination keys).
    pub accounts: Vec<SeedAccount>,
}

/// Switches of the Mailchimp simulator; `Default` is Mailchimp's documented behaviour.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailchimpSimConfig {
    /// Simultaneous requests allowed per API key (Mailchimp: 10); beyond it, 429.
    pub max_connections_per_key: usize,
    /// Fixed latency of every API request.
    #[serde(rename = "latency_base_ms", with = "millis")]
    pub latency_base: Duration,
    /// Extra latency per member returned by the members endpoint.
    #[serde(rename = "latency_per_member_us", with = "micros")]
    pub latency_per_member: Duration,
    /// `since_last_changed` is inclusive (`>=`) instead of strict (`>`).
    pub inclusive_since: bool,
    /// Members with equal sort keys come back in a different order on every request.
    pub unstable_ties: bool,
    /// `count` above 1000 is clamped to 1000 instead of answered with 400.
    pub clamp_count: bool,
    /// Timestamps with fractional seconds are answered with 400.
    pub strict_timestamps: bool,
    /// `Retry-After` seconds sent with every 429; `None` sends no header (Mailchimp's default).
    pub retry_after_on_429: Option<u64>,
    /// Mailchimp's clock minus ours, in seconds (either sign): changes are stamped with
    /// `last_changed` = our time + this offset.
    pub clock_offset_secs: i64,
    /// A change becomes visible in the API this long after it is made (Mailchimp processes bulk
    /// changes asynchronously); until then requests see the member as it was.
    #[serde(rename = "visibility_delay_ms", with = "millis")]
    pub visibility_delay: Duration,
    /// Changes applied to lists while runs read them, triggered by the count of member
    /// requests (also settable at run time: `PUT /_sim/churn`).
    pub churn: Vec<ChurnStep>,
}

/// A batch of changes the simulator applies to a list once it has answered `after_requests`
/// member requests (of that list, or of any list when `list_id` is unset): shares of the list's
/// current size to modify (mapped fields change), touch (`last_changed` only, as a re-import
/// that changes nothing we map), add, delete and archive, all in one second.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChurnStep {
    /// Member requests answered before the step fires.
    pub after_requests: u64,
    /// Only this list (default: every list, each counted on its own).
    pub list_id: Option<String>,
    /// Share of members whose names (and some statuses) change.
    pub modify: f64,
    /// Share of members whose `last_changed` moves with nothing mapped changing.
    pub touch: f64,
    /// Share of the list added as new members.
    pub add: f64,
    /// Share of members permanently deleted.
    pub delete: f64,
    /// Share of members archived.
    pub archive: f64,
}

impl ChurnStep {
    /// Parses `after=50,modify=0.05,touch=0,add=0.02,delete=0.02,archive=0.01,list=abc`.
    pub fn parse(text: &str) -> Result<ChurnStep, String> {
        let mut step = ChurnStep::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))?;
            let share = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| (0.0..=10.0).contains(v))
                    .ok_or_else(|| format!("{key}={value:?} is not a share between 0 and 10"))
            };
            match key {
                "after" => {
                    step.after_requests = value
                        .parse()
                        .map_err(|_| format!("after={value:?} is not a request count"))?
                }
                "list" => step.list_id = Some(value.to_owned()),
                "modify" => step.modify = share()?,
                "touch" => step.touch = share()?,
                "add" => step.add = share()?,
                "delete" => step.delete = share()?,
                "archive" => step.archive = share()?,
                other => {
                    return Err(format!(
                        "unknown churn key {other:?} (after, list, modify, touch, add, delete, archive)"
                    ))
                }
            }
        }
        Ok(step)
    }
}

impl Default for MailchimpSimConfig {
    fn default() -> Self {
        Self {
            max_connections_per_key: 10,
            latency_base: Duration::ZERO,
            latency_per_member: Duration::ZERO,
            inclusive_since: false,
            unstable_ties: false,
            clamp_count: false,
            strict_timestamps: true,
            retry_after_on_429: None,
            clock_offset_secs: 0,
            visibility_delay: Duration::ZERO,
            churn: Vec::new(),
        }
    }
}

/// Switches of the destination simulator.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DestinationSimConfig {
    /// Most records accepted in one `POST /record`; beyond it, 413.
    pub max_batch: usize,
    /// Fixed latency of every `POST /record`.
    #[serde(rename = "latency_base_ms", with = "millis")]
    pub latency_base: Duration,
    /// Extra latency per record received.
    #[serde(rename = "latency_per_record_us", with = "micros")]
    pub latency_per_record: Duration,
}

impl Default for DestinationSimConfig {
    fn default() -> Self {
        Self {
            max_batch: 1000,
            latency_base: Duration::ZERO,
            latency_per_record: Duration::ZERO,
        }
    }
}

/// An account preloaded at start: its Mailchimp key, lists and destination key.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedAccount {
    /// Free-form name, only for people reading the file.
    pub name: String,
    /// Mailchimp API key (`<32 hex>-<dc>`), registered as is.
    pub api_key: String,
    /// Lists owned by the key.
    pub lists: Vec<SeedList>,
    /// Destination key registered at the destination simulator.
    pub destination_key: Option<String>,
}

/// A list preloaded at start.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedList {
    /// Mailchimp list id (e.g. `a1b2c3d4e5`).
    pub id: String,
    /// Number of generated members.
    pub members: usize,
}

/// `Duration` as integer milliseconds.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// `Duration` as integer microseconds.
pub(crate) mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn empty_toml_gives_mailchimp_defaults() {
        let c: SimConfig = toml::from_str("").unwrap();
        assert_eq!(c.mailchimp.max_connections_per_key, 10);
        assert!(c.mailchimp.strict_timestamps);
        assert_eq!(c.destination.max_batch, 1000);
    }

    #[test]
    fn churn_steps_parse_from_flags_and_toml() {
        let step = ChurnStep::parse("after=40, modify=0.05,add=0.02,list=l1").unwrap();
        assert_eq!(step.after_requests, 40);
        assert_eq!(step.modify, 0.05);
        assert_eq!(step.add, 0.02);
        assert_eq!(step.list_id.as_deref(), Some("l1"));
        assert!(ChurnStep::parse("after=x").is_err());
        assert!(ChurnStep::parse("shuffle=1").is_err());
        assert!(ChurnStep::parse("modify=-1").is_err());
        let c: SimConfig = toml::from_str(
            "[mailchimp]\nclock_offset_secs = -10\nvisibility_delay_ms = 3000\n\
             [[mailchimp.churn]]\nafter_requests = 5\ndelete = 0.1\n",
        )
        .unwrap();
        assert_eq!(c.mailchimp.clock_offset_secs, -10);
        assert_eq!(c.mailchimp.visibility_delay, Duration::from_secs(3));
        assert_eq!(c.mailchimp.churn[0].delete, 0.1);
    }

    #[test]
    fn durations_are_read_with_their_unit() {
        let c: SimConfig = toml::from_str(
            "[mailchimp]\nlatency_base_ms = 20\nlatency_per_member_us = 50\n\
             [destination]\nlatency_per_record_us = 3\n",
        )
        .unwrap();
        assert_eq!(c.mailchimp.latency_base, Duration::from_millis(20));
        assert_eq!(c.mailchimp.latency_per_member, Duration::from_micros(50));
        assert_eq!(c.destination.latency_per_record, Duration::from_micros(3));
    }
}
