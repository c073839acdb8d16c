//! `accounts ...` through the real binary: happy paths, secrets, key validation, JSON.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Admin, DEST_KEY, MC_KEY};
use sqlx::PgPool;

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn accounts_can_be_added_listed_shown_updated_paused_resumed_and_removed(pool: PgPool) {
    let admin = Admin::new(&pool);
    let added = admin.add_account("acme");
    assert!(
        added.stdout.contains("added account acme (id 1)"),
        "{}",
        added.stdout
    );
    assert!(added.stdout.contains("…-us6"), "{}", added.stdout);

    let listed = admin.run(&["accounts", "list"]).ok();
    assert!(listed.stdout.contains("acme"), "{}", listed.stdout);
    assert!(
        listed.stdout.contains("http://127.0.0.1:9/dest"),
        "{}",
        listed.stdout
    );

    admin.add_list("acme", "abc123");
    let shown = admin.run(&["accounts", "show", "acme"]).ok();
    assert!(shown.stdout.contains("max concurrency"), "{}", shown.stdout);
    assert!(shown.stdout.contains("acme/abc123"), "{}", shown.stdout);
    // By id too.
    admin.run(&["accounts", "show", "1"]).ok();

    let updated = admin
        .run(&[
            "accounts",
            "update",
            "acme",
            "--name",
            "acme-eu",
            "--max-concurrency",
            "4",
        ])
        .ok();
    assert!(
        updated.stdout.contains("account acme-eu (id 1) updated"),
        "{}",
        updated.stdout
    );
    let json = admin
        .run(&["--output", "json", "accounts", "show", "acme-eu"])
        .ok()
        .json();
    assert_eq!(json["max_concurrency"], 4);
    assert_eq!(json["lists"][0]["mailchimp_list_id"], "abc123");

    let paused = admin.run(&["accounts", "pause", "acme-eu"]).ok();
    assert!(paused.stdout.contains("paused"), "{}", paused.stdout);
    let paused_db: bool = sqlx::query_scalar("SELECT paused FROM importer.accounts WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(paused_db);
    admin.run(&["accounts", "resume", "acme-eu"]).ok();
    let paused_db: bool = sqlx::query_scalar("SELECT paused FROM importer.accounts WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!paused_db);

    let removed = admin.run(&["accounts", "remove", "acme-eu", "--yes"]).ok();
    assert!(
        removed.stdout.contains("removed with its 1 list"),
        "{}",
        removed.stdout
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.lists")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let listed = admin.run(&["accounts", "list"]).ok();
    assert!(
        listed.stdout.contains("no accounts yet"),
        "{}",
        listed.stdout
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn keys_are_stored_encrypted_and_never_appear_in_any_output(pool: PgPool) {
    let admin = Admin::new(&pool);
    let key_file = std::env::temp_dir().join(format!("dest-key-{}", std::process::id()));
    std::fs::write(&key_file, format!("{DEST_KEY}\n")).unwrap();
    let stdin_key = "ffeeddccbbaa99887766554433221100-us21";
    let mut outcomes = vec![
        admin.add_account("env-keys"),
        admin
            .run_with_stdin(
                &[
                    "accounts",
                    "add",
                    "--name",
                    "stdin-keys",
                    "--destination-url",
                    "https://records.example",
                    "--mailchimp-key-stdin",
                    "--destination-key-file",
                    key_file.to_str().unwrap(),
                ],
                &format!("{stdin_key}\n"),
            )
            .ok(),
        admin
            .run_with_stdin(
                &[
                    "accounts",
                    "update",
                    "env-keys",
                    "--mailchimp-key-stdin",
                    "--destination-key-stdin",
                ],
                &format!("{stdin_key}\n{DEST_KEY}-2\n"),
            )
            .ok(),
    ];
    admin.add_list("env-keys", "abc123");
    for args in [
        vec!["accounts", "list"],
        vec!["accounts", "show", "env-keys"],
        vec!["accounts", "show", "stdin-keys"],
        vec!["--output", "json", "accounts", "list"],
        vec!["--output", "json", "accounts", "show", "env-keys"],
        vec!["lists", "list"],
        vec!["runs", "start", "env-keys/abc123"],
        vec!["runs", "show", "1"],
        vec!["queue"],
        vec!["accounts", "pause", "stdin-keys"],
        vec!["--help"],
        vec!["accounts", "add", "--help"],
    ] {
        outcomes.push(admin.run(&args).ok());
    }
    for outcome in &outcomes {
        let all = outcome.all();
        for secret in [MC_KEY, DEST_KEY, stdin_key, "TOPSECRET", "0a1b2c3d4e5f"] {
            assert!(!all.contains(secret), "{secret} leaked:\n{all}");
        }
    }
    let shown = admin
        .run(&["--output", "json", "accounts", "show", "stdin-keys"])
        .ok()
        .json();
    assert_eq!(shown["mailchimp_key"], "…-us21");
    assert_eq!(shown["destination_key"], "…3a91");
    // At rest: only ciphertext.
    let stored: Vec<(Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT mailchimp_key, destination_key FROM importer.accounts")
            .fetch_all(&pool)
            .await
            .unwrap();
    for (mc, dest) in stored {
        for bytes in [mc, dest] {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("TOPSECRET") && !text.contains("-us"),
                "{text}"
            );
        }
    }
    std::fs::remove_file(key_file).unwrap();
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_mailchimp_key_of_the_wrong_shape_is_refused_showing_the_expected_shape(pool: PgPool) {
    let bad_key = "SECRETISH0123456789-notadc";
    let admin = Admin::new(&pool).env("BAD_KEY", bad_key);
    let refused = admin
        .run(&[
            "accounts",
            "add",
            "--name",
            "bad",
            "--destination-url",
            "http://127.0.0.1:9",
            "--mailchimp-key-env",
            "BAD_KEY",
            "--destination-key-env",
            "DEST_KEY",
        ])
        .code(1);
    assert!(
        refused
            .stderr
            .contains("<32 hex characters>-<data centre such as us6>"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("environment variable BAD_KEY"),
        "{}",
        refused.stderr
    );
    assert!(!refused.all().contains(bad_key), "{}", refused.all());
    assert_eq!(
        refused.stderr.lines().count(),
        1,
        "one sentence: {}",
        refused.stderr
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.accounts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn adding_an_existing_account_fails_unless_if_not_exists(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    let args = [
        "accounts",
        "add",
        "--name",
        "acme",
        "--destination-url",
        "http://127.0.0.1:9",
        "--mailchimp-key-env",
        "MC_KEY",
        "--destination-key-env",
        "DEST_KEY",
    ];
    let again = admin.run(&args).code(1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let mut idempotent = args.to_vec();
    idempotent.push("--if-not-exists");
    let kept = admin.run(&idempotent).ok();
    assert!(
        kept.stdout.contains("already exists; left unchanged"),
        "{}",
        kept.stdout
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn keys_on_the_command_line_are_not_accepted(pool: PgPool) {
    let admin = Admin::new(&pool);
    let missing = admin
        .run(&[
            "accounts",
            "add",
            "--name",
            "x",
            "--destination-url",
            "http://127.0.0.1:9",
        ])
        .code(2);
    assert!(
        missing.stderr.contains("--mailchimp-key-env"),
        "{}",
        missing.stderr
    );
    // There is no option that takes a key value itself.
    let direct = admin
        .run(&[
            "accounts",
            "add",
            "--name",
            "x",
            "--destination-url",
            "http://h",
            "--mailchimp-key",
            MC_KEY,
        ])
        .code(2);
    assert!(
        direct
            .stderr
            .contains("unexpected argument '--mailchimp-key'"),
        "{}",
        direct.stderr
    );
    assert!(!direct.all().contains(MC_KEY), "{}", direct.all());
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn removing_an_account_needs_yes(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    let refused = admin.run(&["accounts", "remove", "acme"]).code(1);
    assert!(
        refused.stderr.contains("without --yes"),
        "{}",
        refused.stderr
    );
    admin.run(&["accounts", "show", "acme"]).ok();
    let unknown = admin.run(&["accounts", "show", "nobody"]).code(1);
    assert!(
        unknown.stderr.contains("no account named \"nobody\""),
        "{}",
        unknown.stderr
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn json_output_of_accounts_parses_back(pool: PgPool) {
    let admin = Admin::new(&pool);
    let added = admin
        .run(&[
            "--output",
            "json",
            "accounts",
            "add",
            "--name",
            "acme",
            "--destination-url",
            "http://127.0.0.1:9",
            "--max-concurrency",
            "7",
            "--mailchimp-key-env",
            "MC_KEY",
            "--destination-key-env",
            "DEST_KEY",
        ])
        .ok()
        .json();
    assert_eq!(added["name"], "acme");
    assert_eq!(added["max_concurrency"], 7);
    assert!(added["mailchimp_base_url"].is_null());
    let listed = admin
        .run(&["--output", "json", "accounts", "list"])
        .ok()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], added["id"]);
    // IMPORTER_OUTPUT works like --output.
    let via_env = admin.clone().env("IMPORTER_OUTPUT", "json");
    let listed = via_env.run(&["accounts", "list"]).ok().json();
    assert_eq!(listed[0]["name"], "acme");
}

/// URL overrides must be https, or plain http to a host of IMPORTER_HTTP_ALLOWED_HOSTS (by
/// default this machine's loopback names): a key is never stored for a URL outside that policy.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn account_urls_must_be_https_or_plain_http_to_an_allowed_host(pool: PgPool) {
    let admin = Admin::new(&pool);
    let add = |admin: &Admin, name: &str, dest: &str, mc: &str| {
        admin.run(&[
            "accounts",
            "add",
            "--name",
            name,
            "--destination-url",
            dest,
            "--mailchimp-base-url",
            mc,
            "--mailchimp-key-env",
            "MC_KEY",
            "--destination-key-env",
            "DEST_KEY",
        ])
    };
    let refused = add(
        &admin,
        "a",
        "http://records.example.com",
        "https://us6.api.mailchimp.com/3.0",
    )
    .code(1);
    assert!(
        refused.stderr.contains("--destination-url"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("IMPORTER_HTTP_ALLOWED_HOSTS"),
        "{}",
        refused.stderr
    );
    let refused = add(
        &admin,
        "b",
        "https://records.example.com",
        "http://10.1.2.3:8081/3.0",
    )
    .code(1);
    assert!(
        refused.stderr.contains("--mailchimp-base-url"),
        "{}",
        refused.stderr
    );
    add(
        &admin,
        "c",
        "https://records.example.com",
        "https://us6.api.mailchimp.com/3.0",
    )
    .ok();
    add(
        &admin,
        "d",
        "http://127.0.0.1:9/dest",
        "http://localhost:9/3.0",
    )
    .ok();
    let allowed = admin.clone_with_env("IMPORTER_HTTP_ALLOWED_HOSTS", "records.example.com");
    add(
        &allowed,
        "e",
        "http://records.example.com",
        "https://us6.api.mailchimp.com/3.0",
    )
    .ok();
    let update = admin
        .run(&[
            "accounts",
            "update",
            "c",
            "--destination-url",
            "http://records.example.com",
        ])
        .code(1);
    assert!(
        update.stderr.contains("plain http is allowed only"),
        "{}",
        update.stderr
    );
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM importer.accounts ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(names, vec!["c", "d", "e"]);
}
