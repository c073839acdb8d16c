//! `seed` through the real binary: the importer-sim config's accounts and lists, idempotently.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::Admin;
use sqlx::PgPool;

const CONFIG: &str = r#"
seed = 42

[mailchimp]
latency_base_ms = 150

[[accounts]]
name = "acme"
api_key = "0a1b2c3d4e5f60718293a4b5c6d7e8f9-us6"
destination_key = "dest-acme-5b1f0c"
lists = [
  { id = "a1c0ffee01", members = 25000 },
  { id = "a1c0ffee02", members = 1200 },
]

[[accounts]]
name = "globex"
api_key = "1f2e3d4c5b6a79880796a5b4c3d2e1f0-us13"
destination_key = "dest-globex-93e2aa"
lists = [{ id = "b2d0cafe01", members = 100000 }]
"#;

fn write_config(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn seed_args(path: &str) -> Vec<&str> {
    vec![
        "seed",
        "--sim-config",
        path,
        "--mailchimp-base-url",
        "http://sim:8081/3.0",
        "--destination-url",
        "http://sim:8082",
    ]
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn seed_registers_the_sim_accounts_and_lists_idempotently(pool: PgPool) {
    // The simulators of compose are reached over plain http, as compose allows.
    let admin = Admin::new(&pool).env("IMPORTER_HTTP_ALLOWED_HOSTS", "sim,127.0.0.1");
    let path = write_config("seed-ok", CONFIG);
    let first = admin.run(&seed_args(path.to_str().unwrap())).ok();
    assert!(first.stdout.contains("5 created"), "{}", first.stdout);
    for secret in [
        "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "dest-acme-5b1f0c",
        "dest-globex",
    ] {
        assert!(
            !first.all().contains(secret),
            "{secret} leaked: {}",
            first.all()
        );
    }

    // An account registered by hand meanwhile is left alone too.
    admin.add_account("initech");
    let mut args = seed_args(path.to_str().unwrap());
    args.splice(0..0, ["--output", "json"]);
    let second = admin.run(&args).ok().json();
    let actions: Vec<&str> = second
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| {
            std::iter::once(a["action"].as_str().unwrap()).chain(
                a["lists"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["action"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(actions, ["exists"; 5]);

    let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT a.name, l.mailchimp_list_id, a.mailchimp_base_url, a.destination_url
           FROM importer.lists l JOIN importer.accounts a ON a.id = l.account_id
          ORDER BY a.name, l.mailchimp_list_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].0, "acme");
    assert_eq!(rows[2].1, "b2d0cafe01");
    assert_eq!(rows[0].2.as_deref(), Some("http://sim:8081/3.0"));
    assert_eq!(rows[0].3, "http://sim:8082");
    let hint: String = sqlx::query_scalar(
        "SELECT mailchimp_key_hint FROM importer.accounts WHERE name = 'globex'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(hint, "…-us13");
    std::fs::remove_file(path).unwrap();
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn seed_refuses_a_bad_config_and_changes_nothing(pool: PgPool) {
    // The simulators of compose are reached over plain http, as compose allows.
    let admin = Admin::new(&pool).env("IMPORTER_HTTP_ALLOWED_HOSTS", "sim,127.0.0.1");
    let without_destination = CONFIG.replace("destination_key = \"dest-globex-93e2aa\"\n", "");
    let path = write_config("seed-no-dest", &without_destination);
    let refused = admin.run(&seed_args(path.to_str().unwrap())).code(1);
    assert!(
        refused.stderr.contains("has no destination_key"),
        "{}",
        refused.stderr
    );
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.accounts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(accounts, 0, "nothing written for a bad file");

    let bad_key = write_config("seed-bad-key", &CONFIG.replace("-us13", "-notadc"));
    let refused = admin.run(&seed_args(bad_key.to_str().unwrap())).code(1);
    assert!(refused.stderr.contains("32 hex"), "{}", refused.stderr);
    assert!(
        !refused.stderr.contains("1f2e3d4c5b6a"),
        "{}",
        refused.stderr
    );

    let unknown = write_config("seed-unknown", "[[acounts]]\nname = \"x\"\n");
    let refused = admin.run(&seed_args(unknown.to_str().unwrap())).code(1);
    assert!(
        refused
            .stderr
            .contains("not a valid importer-sim configuration"),
        "{}",
        refused.stderr
    );
    let missing = admin.run(&seed_args("/nonexistent/sim.toml")).code(1);
    assert!(
        missing
            .stderr
            .contains("cannot read the simulator configuration"),
        "{}",
        missing.stderr
    );
    for p in [path, bad_key, unknown] {
        std::fs::remove_file(p).unwrap();
    }
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_example_sim_config_seeds(pool: PgPool) {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../importer-sim/sim.example.toml"
    );
    // The simulators of compose are reached over plain http, as compose allows.
    let admin = Admin::new(&pool).env("IMPORTER_HTTP_ALLOWED_HOSTS", "sim,127.0.0.1");
    let seeded = admin.run(&seed_args(example)).ok();
    assert!(seeded.stdout.contains("initech"), "{}", seeded.stdout);
}
