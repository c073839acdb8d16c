//! docker-compose.yml is checked without a Docker engine: it parses, has the services the
//! deployment needs, and every command it runs is run here for real with the same arguments and
//! environment (database and listen addresses pointed at this machine), so a renamed flag, a
//! missing subcommand or a bad environment variable fails this test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose() -> Yaml {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn service<'a>(doc: &'a Yaml, name: &str) -> &'a Yaml {
    let s = &doc["services"][name];
    assert!(!s.is_badvalue(), "service {name} is missing");
    s
}

fn command(doc: &Yaml, name: &str) -> Vec<String> {
    service(doc, name)["command"]
        .as_vec()
        .unwrap_or_else(|| panic!("service {name} has no command list"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The service's environment (merged `<<` anchors resolved by the YAML loader), as pairs.
fn environment(doc: &Yaml, name: &str) -> Vec<(String, String)> {
    let env = &service(doc, name)["environment"];
    let mut pairs = Vec::new();
    if let Some(map) = env.as_hash() {
        for (k, v) in map {
            let key = k.as_str().unwrap().to_owned();
            if key == "<<" {
                for (k2, v2) in v.as_hash().unwrap() {
                    pairs.push((k2.as_str().unwrap().to_owned(), scalar(v2)));
                }
            } else {
                pairs.push((key, scalar(v)));
            }
        }
    }
    pairs
}

fn scalar(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("unexpected environment value {other:?}"),
    }
}

/// The value an operator exports for a required variable (`${VAR:?message}`).
const OPERATOR_SECRET_KEY: &str =
    "5f5e5d5c5b5a595857565554535251504f4e4d4c4b4a49484746454443424140";

/// The dashboard users an operator exports.
const OPERATOR_USERS: &str = "ops:operator:0123456789abcdef0123";

/// `${VAR:-default}` as compose expands it with VAR unset; `${VAR:?message}` (required) as
/// the operator set it.
fn expand(value: &str) -> String {
    match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        Some(inner) => match (inner.split_once(":-"), inner.split_once(":?")) {
            (Some((_, default)), _) => default.to_owned(),
            (None, Some(("IMPORTER_SECRET_KEY", _))) => OPERATOR_SECRET_KEY.to_owned(),
            (None, Some(("IMPORTER_DASHBOARD_USERS", _))) => OPERATOR_USERS.to_owned(),
            (None, Some((var, _))) => panic!("required variable {var} has no test value"),
            (None, None) => String::new(),
        },
        None => value.to_owned(),
    }
}

/// A workspace binary next to this test's `importer-admin`, built if this run did not build it.
fn binary(name: &str) -> PathBuf {
    let admin = PathBuf::from(env!("CARGO_BIN_EXE_importer-admin"));
    let path = admin.with_file_name(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-p", name, "--bin", name])
            .current_dir(repo())
            .status()
            .unwrap();
        assert!(status.success(), "building {name}");
    }
    assert!(path.exists(), "{} not found", path.display());
    path
}

/// Maps the image's paths and listen addresses to this machine.
fn localize(args: &[String]) -> Vec<String> {
    args.iter()
        .map(|a| match a.as_str() {
            "/etc/importer/sim.toml" => repo()
                .join("importer-sim/sim.example.toml")
                .display()
                .to_string(),
            a if a.starts_with("0.0.0.0:") => "127.0.0.1:0".to_owned(),
            a => a.to_owned(),
        })
        .collect()
}

fn run_to_completion(program: &Path, args: &[String], env: &[(String, String)], db: &str) {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.clone(), expand(v))))
        .env("DATABASE_URL", db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a long-running service, waits for `ready` in its output (either stream), stops it with
/// SIGTERM and expects exit 0.
fn run_service(program: &Path, args: &[String], env: &[(String, String)], db: &str, ready: &str) {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.clone(), expand(v))))
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    for stream in [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    let mut is_ready = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(ready) {
                    is_ready = true;
                    break;
                }
            }
            Err(_) => break,
        }
    }
    if !is_ready {
        child.kill().ok();
        panic!("{} never said {ready:?}:\n{seen}", program.display());
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{} exited {status:?} on SIGTERM",
        program.display()
    );
}

#[test]
fn compose_file_has_the_services_of_the_deployment() {
    let doc = compose();
    let pg = service(&doc, "postgres");
    assert!(
        !pg["healthcheck"]["test"].is_badvalue(),
        "postgres needs a healthcheck"
    );
    assert_eq!(
        service(&doc, "worker")["deploy"]["replicas"].as_i64(),
        Some(5)
    );
    assert_eq!(command(&doc, "migrate")[..2], ["importer-admin", "migrate"]);
    assert_eq!(command(&doc, "seed")[..2], ["importer-admin", "seed"]);
    assert_eq!(command(&doc, "sim")[0], "importer-sim");
    assert_eq!(command(&doc, "worker")[0], "importer-worker");
    assert_eq!(command(&doc, "dashboard")[..2], ["importer-admin", "serve"]);
    assert_eq!(
        command(&doc, "exporter")[..2],
        ["importer-admin", "exporter"]
    );
    // Least privilege: who logs in as whom.
    let login = |name: &str| {
        let url = environment(&doc, name)
            .into_iter()
            .rfind(|(k, _)| k == "DATABASE_URL")
            .map(|(_, v)| v)
            .unwrap();
        let user = url.split("://").nth(1).unwrap().split(':').next().unwrap();
        user.to_owned()
    };
    assert_eq!(
        login("migrate"),
        "importer",
        "migrations run as the schema's owner"
    );
    assert_eq!(login("worker"), "worker");
    for name in ["seed", "dashboard", "exporter", "admin"] {
        assert_eq!(login(name), "operator", "{name}");
    }
    let roles = std::fs::read_to_string(repo().join("deploy/postgres/roles.sql")).unwrap();
    assert!(
        roles.contains("IN ROLE importer_worker") && roles.contains("IN ROLE importer_operator")
    );
    // Prometheus reads the rules and the scrape configuration from deploy/prometheus.
    let volumes = format!("{:?}", service(&doc, "prometheus")["volumes"]);
    assert!(
        volumes.contains("./deploy/prometheus:/etc/prometheus"),
        "{volumes}"
    );
    let grafana = format!("{:?}", service(&doc, "grafana")["volumes"]);
    assert!(grafana.contains("./deploy/grafana/dashboards"), "{grafana}");
    let scrape = std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml")).unwrap();
    assert!(
        scrape.contains("names: [\"worker\"]") && scrape.contains("port: 9090"),
        "every worker replica"
    );
    assert!(scrape.contains("exporter:9187"));
    let dashboard_env = environment(&doc, "dashboard");
    assert!(
        dashboard_env
            .iter()
            .all(|(k, _)| k != "IMPORTER_SECRET_KEY"),
        "the dashboard gets no secret key"
    );
    let published = service(&doc, "dashboard")["ports"][0]
        .as_str()
        .unwrap_or("");
    assert!(
        published.starts_with("127.0.0.1:"),
        "the dashboard is published on loopback only"
    );
    for one_shot in ["migrate", "seed"] {
        assert_eq!(service(&doc, one_shot)["restart"].as_str(), Some("no"));
    }
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY importer-sim/sim.example.toml /etc/importer/sim.toml"));
    for bin in ["importer-worker", "importer-admin", "importer-sim"] {
        assert!(
            dockerfile.contains(&format!("/src/target/max/{bin}")),
            "image lacks {bin}"
        );
    }
    assert!(
        dockerfile.contains("USER importer"),
        "the image runs as a non-root user"
    );
}

#[sqlx::test(migrations = false)]
async fn every_compose_command_runs_with_its_arguments_and_environment(pool: PgPool) {
    let db = common::url_for(&pool);
    let doc = compose();
    let admin = PathBuf::from(env!("CARGO_BIN_EXE_importer-admin"));

    // The one-shot services, in compose's dependency order, against an empty database.
    for name in ["migrate", "seed", "admin"] {
        let cmd = localize(&command(&doc, name));
        assert_eq!(cmd[0], "importer-admin");
        run_to_completion(&admin, &cmd[1..], &environment(&doc, name), &db);
    }
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.accounts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(accounts > 0, "seed registered the simulator's accounts");

    // The long-running services start, become ready and stop cleanly on SIGTERM.
    let sim = localize(&command(&doc, "sim"));
    run_service(&binary("importer-sim"), &sim[1..], &[], &db, "listening");
    let worker = localize(&command(&doc, "worker"));
    let env: Vec<(String, String)> = environment(&doc, "worker")
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "WORKER_HTTP_ADDR" => (k, "127.0.0.1:0".to_owned()),
            _ => (k, v),
        })
        .collect();
    run_service(
        &binary("importer-worker"),
        &worker[1..],
        &env,
        &db,
        "worker started",
    );
    let exporter = localize(&command(&doc, "exporter"));
    run_service(
        &admin,
        &exporter[1..],
        &environment(&doc, "exporter"),
        &db,
        "exporter: http://127.0.0.1:",
    );
    let dashboard = localize(&command(&doc, "dashboard"));
    run_service(
        &admin,
        &dashboard[1..],
        &environment(&doc, "dashboard"),
        &db,
        "dashboard: http://127.0.0.1:",
    );
}
