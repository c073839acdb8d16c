//! Validation of a `POST /record` body: a JSON array of exactly-shaped records.

use serde_json::{Map, Value};

use crate::record::Record;

/// Why a batch was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BatchError {
    /// More records than the maximum batch (413).
    #[error("batch of {0} records exceeds the maximum of {1}")]
    TooLarge(usize, usize),
    /// Not an array of valid records (400); the message names the first bad element.
    #[error("{0}")]
    Invalid(String),
}

const FIELDS: [&str; 5] = ["id", "firstname", "lastname", "email", "status"];
const STATUSES: [&str; 6] = [
    "subscribed",
    "unsubscribed",
    "cleaned",
    "pending",
    "transactional",
    "archived",
];

/// Parses and validates a batch of at most `max_batch` records.
pub(crate) fn parse_batch(body: &[u8], max_batch: usize) -> Result<Vec<Record>, BatchError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BatchError::Invalid(format!("body is not valid JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(BatchError::Invalid(
            "body must be a JSON array of records".to_owned(),
        ));
    };
    if items.len() > max_batch {
        return Err(BatchError::TooLarge(items.len(), max_batch));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| record(item).map_err(|e| BatchError::Invalid(format!("record {i}: {e}"))))
        .collect()
}

fn record(item: Value) -> Result<Record, String> {
    let Value::Object(mut map) = item else {
        return Err("must be a JSON object".to_owned());
    };
    if let Some(extra) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("unexpected field {extra:?}"));
    }
    let record = Record {
        id: field(&mut map, "id")?,
        firstname: field(&mut map, "firstname")?,
        lastname: field(&mut map, "lastname")?,
        email: field(&mut map, "email")?,
        status: field(&mut map, "status")?,
    };
    if record.id.is_empty() {
        return Err("id must not be empty".to_owned());
    }
    if record.email.is_empty() {
        return Err("email must not be empty".to_owned());
    }
    if !STATUSES.contains(&record.status.as_str()) {
        return Err(format!(
            "status {:?} is not one of {}",
            record.status,
            STATUSES.join(", ")
        ));
    }
    Ok(record)
}

fn field(map: &mut Map<String, Value>, name: &str) -> Result<String, String> {
    match map.remove(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("field {name:?} must be a string")),
        None => Err(format!("missing field {name:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match parse_batch(body.as_bytes(), 2) {
            Err(e) => e.to_string(),
            Ok(_) => String::from("ok"),
        }
    }

    const GOOD: &str =
        r#"{"id":"a","firstname":"","lastname":"","email":"a@x","status":"subscribed"}"#;

    #[test]
    fn every_rule_names_the_bad_index() {
        assert_eq!(err(&format!("[{GOOD}]")), "ok");
        assert_eq!(err(r#"{"id":"a"}"#), "body must be a JSON array of records");
        assert!(err(&format!(r#"[{GOOD}, {{"id":"b"}}]"#)).starts_with("record 1: missing field"));
        assert!(err(&format!(r#"[{GOOD}, 5]"#)).starts_with("record 1: must be"));
        let bad_status = GOOD.replace("subscribed", "gone");
        assert!(err(&format!("[{bad_status}]")).starts_with("record 0: status"));
        let extra = GOOD.replace("{", r#"{"x":"1","#);
        assert!(err(&format!("[{extra}]")).starts_with("record 0: unexpected field"));
        let empty_id = GOOD.replace(r#""id":"a""#, r#""id":"""#);
        assert!(err(&format!("[{empty_id}]")).contains("id must not be empty"));
        let number = GOOD.replace(r#""firstname":"""#, r#""firstname":1"#);
        assert!(err(&format!("[{number}]")).contains("must be a string"));
        assert!(matches!(
            parse_batch(format!("[{GOOD},{GOOD},{GOOD}]").as_bytes(), 2),
            Err(BatchError::TooLarge(3, 2))
        ));
    }
}
