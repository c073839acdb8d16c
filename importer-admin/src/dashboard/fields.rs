//! The fields of a query string or a posted form, and their checked conversion: every bad value
//! becomes a 400 page that names the field and says that nothing changed.

use chrono::{DateTime, NaiveDate, Utc};

use super::render::PageError;
use crate::values::parse_time;

/// Name-value pairs, in order, repeated names kept (checkbox lists).
#[derive(Debug, Clone, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, v)| n == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// `name` as an id (a positive integer), if given.
    pub fn id(&self, name: &str) -> Result<Option<i64>, PageError> {
        self.get(name).map(|v| id(name, v)).transpose()
    }

    /// `name` as an instant (RFC 3339, or a date meaning its midnight UTC), if given.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, PageError> {
        self.get(name).map(|v| time(name, v)).transpose()
    }

    /// `name` as one of `allowed`, if given.
    pub fn choice(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, PageError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
            Some(v) => Err(PageError::bad(format!(
                "{name}: {v:?} is not one of {}; nothing was changed",
                allowed.join(", ")
            ))),
        }
    }

    /// Whether the form confirmed a destructive action.
    pub fn confirmed(&self) -> bool {
        self.get("confirm") == Some("yes")
    }
}

/// `text` as an id, or a 400 that names `field`.
pub fn id(field: &str, text: &str) -> Result<i64, PageError> {
    match text.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(PageError::bad(format!(
            "{field}: {text:?} is not an id (a positive whole number); nothing was changed"
        ))),
    }
}

fn time(field: &str, text: &str) -> Result<DateTime<Utc>, PageError> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc());
        }
    }
    parse_time(text).map_err(|e| {
        PageError::bad(format!(
            "{field}: {e} (use 2026-12-01 or 2026-12-01T08:00:00Z); nothing was changed"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn fields_read_ids_times_and_choices_and_name_the_bad_one() {
        let f = fields(&[
            ("run", "12"),
            ("id", "3"),
            ("id", ""),
            ("id", "4"),
            ("from", "2026-12-01"),
        ]);
        assert_eq!(f.id("run").ok().flatten(), Some(12));
        assert_eq!(f.all("id"), vec!["3", "4"]);
        assert_eq!(
            f.time("from").ok().flatten().map(|t| t.to_rfc3339()),
            Some("2026-12-01T00:00:00+00:00".to_owned())
        );
        let bad = fields(&[("run", "12abc"), ("status", "dead"), ("to", "yesterday")]);
        assert!(bad
            .id("run")
            .err()
            .is_some_and(|e| e.message.starts_with("run:")));
        assert!(bad
            .choice("status", &["failed"])
            .err()
            .is_some_and(|e| e.message.contains("status")));
        assert!(bad
            .time("to")
            .err()
            .is_some_and(|e| e.message.starts_with("to:")));
        assert!(fields(&[("run", "0")]).id("run").is_err());
        assert!(fields(&[("run", "-5")]).id("run").is_err());
    }
}
