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

/// A demo of one list of 300 contacts (306 after the incremental sync) and one worker.
const SMALL_DEMO: &[&str] = &[
    "demo",
    "--accounts",
    "1",
    "--contacts",
    "300",
    "--workers",
    "1",
    "--lists-per-account",
    "1",
];

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
        .run(&[&["--output", "json"], SMALL_DEMO, &["--keep-database"]].concat())
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

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn silent_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

/// No DATABASE_URL and nothing on the default port (PGPORT): the demo makes a private cluster
/// with the installed server binaries, runs in it, and removes it.
#[tokio::test]
async fn with_no_server_the_demo_runs_in_a_private_cluster_it_removes_afterwards() {
    let port = silent_port();
    let demo = Admin::with_url(None)
        .env("PGPORT", &port)
        .run(SMALL_DEMO)
        .ok();
    let out = &demo.stdout;
    let intro = format!(
        "no PostgreSQL answered on 127.0.0.1:{port} and DATABASE_URL is not set: started a private throw-away cluster in "
    );
    let start = out.find(&intro).unwrap_or_else(|| panic!("{out}")) + intro.len();
    let dir: String = out[start..].chars().take_while(|c| *c != ' ').collect();
    assert!(dir.contains("importer-demo-pg-"), "{dir}");
    assert!(
        out.contains("OK: 306 records expected, 0 missing, 0 stale"),
        "{out}"
    );
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} was removed with its server"
    );
    // Its server is gone too: nothing listens where the demo database was.
    let on = format!("demo database {} on 127.0.0.1:", database_name(out));
    let at = out.find(&on).unwrap_or_else(|| panic!("{out}")) + on.len();
    let cluster_port: u16 = out[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap();
    assert_ne!(cluster_port.to_string(), port);
    assert!(std::net::TcpStream::connect(("127.0.0.1", cluster_port)).is_err());
}

/// No DATABASE_URL, nothing on the default port and no server binaries: one clear message
/// naming the ways to get a server, exit 1, in well under a second of work.
#[tokio::test]
async fn with_no_server_and_no_binaries_the_demo_says_how_to_get_one() {
    let port = silent_port();
    let empty = std::env::temp_dir().join(format!("importer-no-pg-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let demo = Admin::with_url(None)
        .env("PGPORT", &port)
        .env("IMPORTER_PG_BINDIR", empty.to_str().unwrap())
        .run(&["demo"])
        .code(1);
    let err = &demo.stderr;
    for text in [
        &format!("no PostgreSQL answers on 127.0.0.1:{port} and DATABASE_URL is not set"),
        "no PostgreSQL server binaries (initdb, pg_ctl) were found",
        "DATABASE_URL=postgres://",
        "docker run -d --rm -p 5432:5432",
        "apt-get install postgresql",
        "IMPORTER_PG_BINDIR",
    ] {
        assert!(err.contains(text), "{text:?} not in:\n{err}");
    }
    assert!(demo.stdout.is_empty(), "{}", demo.stdout);
    std::fs::remove_dir(&empty).unwrap();
}
