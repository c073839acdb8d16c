//! `secrets status` and `secrets rotate`: the operator's view of which key sealed the stored
//! API keys, and the rotation to a new key through the CLI (the rotation during an import is
//! tested with real workers in importer-worker's `key_rotation`).
#![allow(clippy::unwrap_used)]

mod common;

use common::Admin;
use importer_core::secrets::SecretBox;
use sqlx::PgPool;

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn rotate_reseals_every_key_and_status_shows_when_the_previous_key_can_go(pool: PgPool) {
    let admin = Admin::new(&pool);
    for name in ["alpha", "beta", "gamma"] {
        admin.add_account(name).ok();
    }
    let old_hex = admin.secret_key.clone();
    let old_id = SecretBox::from_hex(&old_hex).unwrap().current_key_id();
    let new_hex = SecretBox::generate_key_hex();
    let new_id = SecretBox::from_hex(&new_hex).unwrap().current_key_id();

    let before = admin
        .run(&["--output", "json", "secrets", "status"])
        .ok()
        .json();
    assert_eq!(before["current_key_id"], old_id);
    assert_eq!(before["current"], 6);

    // Rotating without the old key opens nothing: every key is reported, none is changed.
    let without_old = admin.clone_with_env("IMPORTER_SECRET_KEY", &new_hex);
    let refused = without_old.run(&["secrets", "rotate"]).code(1);
    assert!(refused.stdout.contains("6 failed"), "{refused:#?}");
    assert!(
        refused.all().contains(&old_id),
        "names the missing key: {refused:#?}"
    );
    assert!(!refused.all().contains(&old_hex) && !refused.all().contains(&new_hex));

    let rotating = without_old.clone_with_env("IMPORTER_SECRET_KEY_PREVIOUS", &old_hex);
    let mid = rotating.run(&["secrets", "status"]).ok();
    assert!(
        mid.stdout.contains(&format!("{old_id}: 6 stored keys")),
        "{mid:#?}"
    );
    assert!(
        mid.stdout.contains("run importer-admin secrets rotate"),
        "{mid:#?}"
    );

    let done = rotating.run(&["secrets", "rotate", "--batch", "2"]).ok();
    assert!(
        done.stdout.contains(&format!(
            "rotated to key {new_id}: 3 accounts, 6 keys re-sealed, 0 already under it, 0 failed"
        )),
        "{done:#?}"
    );
    let after = rotating
        .run(&["--output", "json", "secrets", "status"])
        .ok()
        .json();
    assert_eq!(
        (after["current"].as_u64(), after["previous"].as_u64()),
        (Some(6), Some(0))
    );
    let text = rotating.run(&["secrets", "status"]).ok();
    assert!(
        text.stdout
            .contains("IMPORTER_SECRET_KEY_PREVIOUS can be removed"),
        "{text:#?}"
    );
    let again = rotating.run(&["secrets", "rotate"]).ok();
    assert!(
        again
            .stdout
            .contains("0 keys re-sealed, 6 already under it"),
        "{again:#?}"
    );

    // With the new key alone, the CLI still opens what it needs: a key update seals with it.
    let new_only = admin.clone_with_env("IMPORTER_SECRET_KEY", &new_hex);
    new_only
        .run(&[
            "accounts",
            "update",
            "alpha",
            "--mailchimp-key-env",
            "MC_KEY",
        ])
        .ok();
    let usage = new_only
        .run(&["--output", "json", "secrets", "status"])
        .ok()
        .json();
    assert_eq!(usage["current"], 6);

    let actions: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, outcome FROM importer.audit_log WHERE action = 'secrets.rotate' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let outcomes: Vec<&str> = actions.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(outcomes, ["refused", "ok", "ok"], "{actions:?}");
}
