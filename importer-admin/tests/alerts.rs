//! The alerting rules and the Grafana dashboard name only metrics that exist: every metric in
//! every PromQL expression of `deploy/prometheus/alerts.yml` and
//! `deploy/grafana/dashboards/importer.json` is on a real worker's `/metrics` after a real import,
//! or on a real `importer-admin exporter`'s. (`promtool test rules`, run by `.ci/run`, checks
//! what the rules do with them.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::import::{wait_for_run, Import};
use sqlx::PgPool;
use yaml_rust2::YamlLoader;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every PromQL expression of the rules and of the dashboard, with where it is.
fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let doc = YamlLoader::load_from_str(&rules).unwrap().remove(0);
    for group in doc["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_owned();
            out.push((name, rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    let dashboard =
        std::fs::read_to_string(repo().join("deploy/grafana/dashboards/importer.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap().to_owned();
            out.push((title, target["expr"].as_str().unwrap().to_owned()));
        }
    }
    out
}

/// The metric names an expression selects: identifiers that are not functions, keywords,
/// label names or strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const WORDS: &[&str] = &[
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "rate",
        "increase",
        "delta",
        "by",
        "without",
        "on",
        "ignoring",
        "or",
        "and",
        "unless",
        "absent",
        "topk",
        "bottomk",
        "histogram_quantile",
        "le",
        "status",
        "job",
        "kind",
        "outcome",
        "account",
        "list",
        "state",
        "instance",
    ];
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    let mut in_string = false;
    let mut in_braces = false;
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => in_string = !in_string,
            '{' if !in_string => in_braces = true,
            '}' if !in_string => in_braces = false,
            '[' if !in_string => {
                for (_, c) in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
            }
            c if !in_string && !in_braces && (c.is_ascii_alphabetic() || c == '_') => {
                let mut end = i + c.len_utf8();
                while let Some((j, d)) = chars.peek().copied() {
                    if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = &expr[i..end];
                if !WORDS.contains(&word) {
                    names.insert(word.to_owned());
                }
            }
            _ => {}
        }
    }
    names
}

/// Series names in a Prometheus or OpenMetrics text page, and the metrics it declares (a
/// labelled family with no series yet, such as the lists behind when none is, is declared).
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match line.strip_prefix("# TYPE ") {
            Some(declared) => names.extend(declared.split(' ').next().map(str::to_owned)),
            None if !line.starts_with('#') => {
                names.extend(line.split(['{', ' ']).next().map(str::to_owned));
            }
            None => {}
        }
    }
    names
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match reqwest::get(url).await {
            Ok(r) if r.status().is_success() => return r.text().await.unwrap(),
            other => {
                assert!(Instant::now() < deadline, "GET {url}: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[test]
fn the_metric_name_reader_skips_functions_labels_and_ranges() {
    let names = metric_names(
        "sum(rate(importer_x_count{status=\"429\"}[5m])) / sum by (le) (rate(y_total[5m])) > 0.2 or absent(up{job=\"w\"})",
    );
    let expected: BTreeSet<String> = ["importer_x_count", "y_total", "up"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, expected);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn every_metric_of_the_alerts_and_the_dashboard_is_exposed(pool: PgPool) {
    // A real import by a real worker serving /metrics.
    let mut import = Import::start(&pool, 3_000, 5).await;
    let worker_addr = format!("127.0.0.1:{}", free_port());
    import.spawn_worker(&pool, Some(&worker_addr), 1);
    import.admin.run(&["runs", "start", "acme/browser01"]).ok();
    wait_for_run(&pool, 1, "completed", Duration::from_secs(60)).await;
    let worker_metrics = get(&format!("http://{worker_addr}/metrics")).await;

    // The exporter on the same database.
    let mut exporter = import.admin.spawn(&["exporter", "--listen", "127.0.0.1:0"]);
    let mut line = String::new();
    BufReader::new(exporter.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("exporter: ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    let exporter_metrics = get(&url).await;
    let _ = exporter.kill();
    let _ = exporter.wait();
    import.stop().await;

    let mut available = exposed(&worker_metrics);
    available.extend(exposed(&exporter_metrics));
    // Prometheus adds `up` to every scrape target.
    available.insert("up".to_owned());
    let mut missing = Vec::new();
    for (place, expr) in expressions() {
        for name in metric_names(&expr) {
            if !available.contains(&name) {
                missing.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not exposed: {missing:?}\nworker:\n{worker_metrics}\nexporter:\n{exporter_metrics}"
    );
    // The exporter's figures are the database's.
    assert!(
        exporter_metrics.contains("importer_runs_active 0"),
        "{exporter_metrics}"
    );
    assert!(
        exporter_metrics.contains("importer_queue_jobs{state=\"waiting\"} 0"),
        "{exporter_metrics}"
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_exporter_names_the_lists_furthest_behind_and_leaves_paused_accounts_out(pool: PgPool) {
    let admin = common::Admin::new(&pool);
    admin.add_account("acme");
    admin.add_account("paused");
    admin.add_list("acme", "late01");
    admin.add_list("acme", "fresh01");
    admin.add_list("paused", "late02");
    admin.run(&["accounts", "pause", "paused"]).ok();
    sqlx::raw_sql(
        "UPDATE importer.lists SET synced_until = now() - interval '5 hours' WHERE mailchimp_list_id IN ('late01', 'late02');
         UPDATE importer.lists SET synced_until = now() - interval '10 minutes' WHERE mailchimp_list_id = 'fresh01';
         INSERT INTO importer.dead_jobs (id, kind, args, account_id, attempts, max_attempts, reason, created_at)
         VALUES (1, 'import_window', '{}', 1, 5, 5, 'exhausted', now()), (2, 'import_window', '{}', 1, 5, 5, 'exhausted', now());",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut exporter = admin.spawn(&["exporter", "--listen", "127.0.0.1:0"]);
    let mut line = String::new();
    BufReader::new(exporter.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().strip_prefix("exporter: ").unwrap().to_owned();
    let text = get(&url).await;
    let _ = exporter.kill();
    let _ = exporter.wait();
    assert!(text.contains("importer_lists_behind 1"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("importer_list_overdue_seconds{"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("account=\"acme\"") && line.contains("list=\"late01\""),
        "{line}"
    );
    let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        (4.0 * 3600.0 - 60.0..4.0 * 3600.0 + 60.0).contains(&secs),
        "5 h lag, 1 h schedule: {secs}"
    );
    assert!(
        !text.contains("late02") && !text.contains("fresh01"),
        "{text}"
    );
    assert!(text.contains("importer_dead_jobs 2"), "{text}");
}
