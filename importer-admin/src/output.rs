//! Rendering for people (comfy-table tables) and for scripts (JSON that parses back), and the
//! small formatters both use (times, intervals, ages, absent values).

use std::fmt::Display;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::ValueEnum;
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

/// How listings and show commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Tables for people.
    #[default]
    Table,
    /// JSON for scripts (one document per command).
    Json,
}

/// Writes `value` as pretty JSON followed by a newline.
pub fn write_json<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Narrower than this, a terminal's reported width is not trusted (e.g. a pseudo-terminal
/// without a size reports 0) and tables are not wrapped to it.
const MIN_WRAP_WIDTH: u16 = 60;

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    // Wrap cells to a real terminal's width; print full rows anywhere else.
    if t.width().is_some_and(|w| w >= MIN_WRAP_WIDTH) {
        t.set_content_arrangement(ContentArrangement::Dynamic);
    }
    t
}

/// A table with this header.
pub fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut t = new_table();
    t.set_header(header);
    t
}

/// A two-column `field | value` table for `show` commands.
pub fn details(rows: Vec<(&str, String)>) -> Table {
    let mut t = new_table();
    for (field, value) in rows {
        t.add_row(vec![field.to_owned(), value]);
    }
    t
}

/// Writes a table followed by a newline.
pub fn write_table<W: Write>(out: &mut W, table: &Table) -> anyhow::Result<()> {
    writeln!(out, "{table}")?;
    Ok(())
}

/// Prints a listing as a JSON array, or a table, or `empty` when there is nothing to list.
pub fn emit_list<W, T>(
    out: &mut W,
    format: Format,
    items: &[T],
    empty: &str,
    render: impl FnOnce(&[T]) -> Table,
) -> anyhow::Result<()>
where
    W: Write,
    T: Serialize,
{
    match format {
        Format::Json => write_json(out, items),
        Format::Table if items.is_empty() => {
            writeln!(out, "{empty}")?;
            Ok(())
        }
        Format::Table => write_table(out, &render(items)),
    }
}

/// Prints the outcome of an action: `text` for people, `value` as JSON for scripts.
pub fn done<W: Write, T: Serialize + ?Sized>(
    out: &mut W,
    format: Format,
    text: &str,
    value: &T,
) -> anyhow::Result<()> {
    match format {
        Format::Json => write_json(out, value),
        Format::Table => {
            writeln!(out, "{text}")?;
            Ok(())
        }
    }
}

/// An instant as `2026-11-29T07:19:03Z`.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An instant to the microsecond (`2026-11-29T07:19:03.123456Z`): page keys round-trip exactly.
pub fn time_precise(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An optional instant, `-` when absent.
pub fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), time)
}

/// An optional value, `-` when absent.
pub fn opt<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// An interval the way `parse_interval` reads it: `1d`, `1h30m`, `45s`.
pub fn interval(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// A number of seconds for people: `850ms`, `42s`, `3m 05s`, `2h 10m`, `3d 4h`.
pub fn age(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_owned();
    }
    if secs < 1.0 {
        return format!("{}ms", (secs * 1000.0).round());
    }
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `1 job`, `2 jobs`: a count with its noun, plural when needed.
pub fn count(n: impl Into<u64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// Shortens `text` to `max` characters with an ellipsis (tables only; JSON keeps it whole).
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn intervals_print_the_way_they_parse() {
        for text in ["1d", "1h30m", "45s", "1m", "2d1h"] {
            let parsed = crate::values::parse_interval(text).unwrap();
            assert_eq!(interval(parsed), text);
        }
    }

    #[test]
    fn ages_pick_a_readable_unit() {
        assert_eq!(age(0.25), "250ms");
        assert_eq!(age(42.0), "42s");
        assert_eq!(age(185.0), "3m 05s");
        assert_eq!(age(7800.0), "2h 10m");
    }

    #[test]
    fn json_output_parses_back() {
        let mut buf = Vec::new();
        write_json(&mut buf, &serde_json::json!({"a": [1, 2]})).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back["a"][1], 2);
    }

    #[test]
    fn long_text_is_truncated_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
