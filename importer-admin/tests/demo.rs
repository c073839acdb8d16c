//! `demo` through the real binary: a real import end to end, verified, in a throwaway database.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};

use common::{server_url, with_database, Admin};
use sqlx::{Connection, PgConnection};

async fn database_exists(name: &str) -> bool {
    let mut conn = PgConnection::connect(&server_url()).await.unwrap();
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// The demo database name printed by the demo.
fn database_name(stdout: &str) -> String {
    let start = stdout.find("importer_demo_").unwrap();
    stdout[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[tokio::test]
async fn the_demo_imports_mutates_reimports_and_verifies_then_drops_its_database() {
    let admin = Admin::with_url(Some(server_url()));
    let demo = admin
        .run(&[
            "demo",
            "--accounts",
            "2",
            "--contacts",
            "1500",
            "--workers",
            "2",
            "--timeout",
            "2m",
        ])
        .ok();
    let out = &demo.stdout;
    for text in [
        "== full sync: 4 runs created by the scheduler",
        "== incremental sync",
        "== verification",
        "demo-2",
        "demo02list02",
        "duplicates received",
        "OK: 6120 records expected, 0 missing, 0 stale",
        "dashboard: http://127.0.0.1:",
        "(sign in with the token ",
    ] {
        assert!(
            out.contains(text),
            "{text:?} not in:\n{out}\n{}",
            demo.stderr
        );
    }
    // Progress lines from the shared watch renderer (stdout is not a terminal here).
    assert!(
        out.contains("completed 100.0% · windows 1/1 · records 1500/1500"),
        "{out}"
    );
    let name = database_name(out);
    assert!(!database_exists(&name).await, "{name} was dropped");
}

#[tokio::test]
async fn the_demo_prints_json_and_keeps_its_database_when_asked() {
    let admin = Admin::with_url(Some(server_url()));
    let demo = admin
        .run(&[
            "--output",
            "json",
            "demo",
            "--accounts",
            "1",
            "--contacts",
            "300",
            "--workers",
            "1",
            "--lists-per-account",
            "1",
            "--keep-database",
        ])
        .ok();
    let report = demo.json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["lists"][0]["expected"], 306);
    assert_eq!(report["lists"][0]["missing"], 0);
    assert_eq!(report["full_runs"][0]["status"], "completed");
    assert_eq!(report["incremental_runs"][0]["mode"], "incremental");
    // Kept: its runs are there to inspect with the other commands.
    let name = report["database"].as_str().unwrap();
    let kept = Admin::with_url(Some(with_database(&server_url(), name)));
    let listed = kept.run(&["runs", "list", "--status", "completed"]).ok();
    assert!(
        listed.stdout.contains("demo-1/demo01list01"),
        "{}",
        listed.stdout
    );
    let mut conn = PgConnection::connect(&server_url()).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// `demo --serve`: once the syncs are verified, the dashboard keeps serving the demo database
/// (sign-in with the printed token) until Ctrl-C; then everything stops and the database goes.
#[tokio::test]
async fn the_demo_keeps_its_dashboard_up_with_serve_until_ctrl_c() {
    let admin = Admin::with_url(Some(server_url())).env("IMPORTER_DASHBOARD_USERS", "");
    let mut child = admin.spawn(&[
        "demo",
        "--accounts",
        "1",
        "--lists-per-account",
        "1",
        "--contacts",
        "300",
        "--workers",
        "1",
        "--timeout",
        "2m",
        "--serve",
    ]);
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut address, mut token, mut database) = (None, None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("importer_demo_") && database.is_none() {
            database = Some(database_name(&line));
        }
        if let Some(rest) = line.strip_prefix("dashboard: ") {
            address = rest
                .split_whitespace()
                .next()
                .map(|a| a.trim_end_matches('/').to_owned());
            token = rest
                .split("token ")
                .nth(1)
                .map(|t| t.trim_end_matches(')').to_owned());
        }
        if line.starts_with("serving the dashboard at") {
            break;
        }
    }
    let (address, token, database) = (address.unwrap(), token.unwrap(), database.unwrap());
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{address}/runs?status=completed"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains("demo-1/demo01list01"), "{body}");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        client
            .get(format!("{address}/healthz"))
            .send()
            .await
            .is_err(),
        "the dashboard stopped"
    );
    assert!(!database_exists(&database).await, "{database} was dropped");
}
