//! Live progress of runs until they finish: indicatif bars on a terminal, one line per run and
//! interval otherwise (logs, CI), nothing for JSON output. `runs watch` and `demo` share it.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::bail;
use importer_core::runs::RunStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::PgPool;

use crate::output::{self, Format};
use crate::progress::{self, RunProgress};
use crate::views::{records, windows};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Progress bars redrawn in place (stdout is a terminal).
    Bars,
    /// A line per active run and interval, written to the output.
    Lines,
    /// Nothing until the end (JSON output must stay one document).
    Quiet,
}

impl Display {
    /// Bars on a terminal, lines otherwise, nothing for JSON.
    pub fn for_output(format: Format) -> Self {
        match format {
            Format::Json => Display::Quiet,
            Format::Table if std::io::stdout().is_terminal() => Display::Bars,
            Format::Table => Display::Lines,
        }
    }
}

/// Shows the progress of `run_ids` every `interval` until none is active; returns their final
/// rows (in id order). Errors: a run that does not exist, database failures.
pub async fn watch<W: Write>(
    pool: &PgPool,
    run_ids: &[i64],
    interval: Duration,
    display: Display,
    out: &mut W,
) -> anyhow::Result<Vec<RunProgress>> {
    let mut bars = Bars::new(display == Display::Bars);
    let mut reported_finished: Vec<i64> = Vec::new();
    loop {
        let rows = progress::by_ids(pool, run_ids).await?;
        if let Some(missing) = run_ids
            .iter()
            .find(|id| !rows.iter().any(|r| r.run_id == **id))
        {
            bail!("no run {missing}; see importer-admin runs list");
        }
        let all_done = rows.iter().all(|r| !r.is_active());
        for row in &rows {
            match display {
                Display::Bars => bars.update(row),
                Display::Lines => {
                    // Active runs every interval; a finished run once.
                    if row.is_active() || !reported_finished.contains(&row.run_id) {
                        writeln!(out, "{}", line(row))?;
                    }
                    if !row.is_active() {
                        reported_finished.push(row.run_id);
                    }
                }
                Display::Quiet => {}
            }
        }
        if display == Display::Lines {
            out.flush()?;
        }
        if all_done {
            bars.finish();
            return Ok(rows);
        }
        tokio::time::sleep(interval).await;
    }
}

/// Fails when a run did not complete, naming each run and why.
pub fn require_completed(rows: &[RunProgress]) -> anyhow::Result<()> {
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| r.status != RunStatus::Completed)
        .map(|r| {
            format!(
                "run {} of {} {}{}",
                r.run_id,
                r.list_label(),
                r.status,
                r.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        bail!(
            "{}; inspect with importer-admin runs show <id>",
            bad.join("; ")
        )
    }
}

/// The one-line form: `run 12 acme/a1c0ffee01 running 45.0% · windows 3/7 · records …`.
pub fn line(r: &RunProgress) -> String {
    format!("run {} {} {}", r.run_id, r.list_label(), status_text(r))
}

/// Everything after the run's name, shared by lines and bars.
fn status_text(r: &RunProgress) -> String {
    let percent = r
        .percent
        .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%"));
    let eta = r.eta_secs().map_or_else(|| "-".to_owned(), output::age);
    format!(
        "{} {percent} · windows {} · records {} · {:.0} rec/s · ETA {eta} · dead {}",
        r.status,
        windows(r),
        records(r),
        r.records_per_second,
        r.jobs_dead
    )
}

/// One bar per run on a terminal; inert when disabled.
struct Bars {
    multi: Option<MultiProgress>,
    bars: HashMap<i64, ProgressBar>,
}

impl Bars {
    fn new(enabled: bool) -> Self {
        Bars {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout())),
            bars: HashMap::new(),
        }
    }

    fn update(&mut self, r: &RunProgress) {
        let Some(multi) = &self.multi else { return };
        let bar = self.bars.entry(r.run_id).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(1000));
            // The template is a constant, so this cannot fail; fall back to the default anyway.
            if let Ok(style) =
                ProgressStyle::with_template("{prefix:.bold} [{bar:28.cyan/blue}] {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(format!("run {} {}", r.run_id, r.list_label()));
            bar
        });
        let permille = r
            .percent
            .map_or(0, |p| (p * 10.0).round().clamp(0.0, 1000.0) as u64);
        bar.set_position(permille);
        bar.set_message(status_text(r));
        if !r.is_active() && !bar.is_finished() {
            bar.finish();
        }
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}
