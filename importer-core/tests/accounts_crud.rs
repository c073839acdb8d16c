//! Accounts and lists CRUD for the admin CLI: encrypted keys stored as given and never shown
//! by Debug, unique names, pausing, schedules and cursors.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use importer_core::accounts::{self, AccountError, AccountUpdate, NewAccount};
use importer_core::lists::{self, ListError, NewList};
use importer_core::secrets::{Secret, SecretBox, SecretField, SecretSlot};
use sqlx::PgPool;

const MC_KEY: &str = "0123456789abcdef0123456789abcdef-us6";
const DEST_KEY: &str = "destination-key-0000cafebabe17";

fn new_account(name: &str) -> NewAccount {
    NewAccount {
        name: name.to_owned(),
        mailchimp_key: Secret::new(MC_KEY),
        mailchimp_base_url: None,
        destination_url: "https://records.example.com".to_owned(),
        destination_key: Secret::new(DEST_KEY),
        max_concurrency: accounts::DEFAULT_MAX_CONCURRENCY,
    }
}

fn secrets() -> SecretBox {
    SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap()
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn accounts_round_trip_and_never_debug_print_their_keys(pool: PgPool) {
    let sbox = secrets();
    let created = accounts::create(&pool, &sbox, &new_account("acme"))
        .await
        .unwrap();
    let opened = |field, bytes: &[u8]| {
        sbox.decrypt(SecretSlot::new(created.id, field), bytes)
            .unwrap()
            .expose()
            .to_owned()
    };
    assert_eq!(
        opened(SecretField::MailchimpKey, &created.mailchimp_key),
        MC_KEY
    );
    assert_eq!(
        opened(SecretField::DestinationKey, &created.destination_key),
        DEST_KEY
    );
    assert_eq!(created.mailchimp_key_hint, "…-us6");
    assert_eq!(created.destination_key_hint, "…be17");
    assert_eq!((created.max_concurrency, created.paused), (10, false));
    let stored_hex = [
        hex::encode(&created.mailchimp_key),
        hex::encode(&created.destination_key),
    ];
    for shown in [
        format!("{created:?}"),
        format!("{:?}", new_account("acme")),
        format!(
            "{:?}",
            accounts::credentials_for_job(&pool, created.id)
                .await
                .unwrap()
                .unwrap()
        ),
    ] {
        // Neither the keys, nor their sealed bytes as Vec<u8> Debug or hex would print them.
        assert!(
            !shown.contains(MC_KEY) && !shown.contains(DEST_KEY),
            "{shown}"
        );
        for (stored, hex) in [&created.mailchimp_key, &created.destination_key]
            .into_iter()
            .zip(&stored_hex)
        {
            let as_debug = format!("{:?}", &stored[20..26]);
            let as_debug = as_debug.trim_matches(|c| c == '[' || c == ']');
            assert!(!shown.contains(as_debug), "{shown}");
            assert!(!shown.contains(&hex[40..52]), "{shown}");
        }
    }
    assert!(format!("{created:?}").contains("…-us6"));

    assert_eq!(
        accounts::get(&pool, created.id).await.unwrap().unwrap(),
        created
    );
    assert_eq!(
        accounts::find_by_name(&pool, "acme")
            .await
            .unwrap()
            .unwrap()
            .id,
        created.id
    );
    assert!(accounts::find_by_name(&pool, "nobody")
        .await
        .unwrap()
        .is_none());

    let update = AccountUpdate {
        mailchimp_key: Some(sbox.seal(
            created.id,
            SecretField::MailchimpKey,
            &Secret::new("99999999999999999999999999999999-us9"),
        )),
        mailchimp_base_url: Some(Some("http://sim:8080/3.0".to_owned())),
        max_concurrency: Some(4),
        ..AccountUpdate::default()
    };
    let updated = accounts::update(&pool, created.id, &update).await.unwrap();
    assert_eq!(
        opened(SecretField::MailchimpKey, &updated.mailchimp_key),
        "99999999999999999999999999999999-us9"
    );
    assert_eq!(updated.mailchimp_key_hint, "…-us9");
    assert_eq!(
        updated.mailchimp_base_url.as_deref(),
        Some("http://sim:8080/3.0")
    );
    assert_eq!(
        updated.destination_key, created.destination_key,
        "untouched"
    );
    assert_eq!(updated.max_concurrency, 4);
    assert!(updated.updated_at >= created.updated_at);

    let clear = AccountUpdate {
        mailchimp_base_url: Some(None),
        ..AccountUpdate::default()
    };
    assert_eq!(
        accounts::update(&pool, created.id, &clear)
            .await
            .unwrap()
            .mailchimp_base_url,
        None
    );
    assert!(
        accounts::set_paused(&pool, created.id, true)
            .await
            .unwrap()
            .paused
    );

    let creds = accounts::credentials_for_job(&pool, created.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.mailchimp_key, updated.mailchimp_key);
    assert_eq!(creds.destination_url, "https://records.example.com");
    assert_eq!(creds.max_concurrency, 4);

    accounts::create(&pool, &secrets(), &new_account("beta"))
        .await
        .unwrap();
    let names: Vec<String> = accounts::list(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, vec!["acme", "beta"]);

    assert!(accounts::remove(&pool, created.id).await.unwrap());
    assert!(!accounts::remove(&pool, created.id).await.unwrap());
    assert!(accounts::credentials_for_job(&pool, created.id)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        accounts::update(&pool, created.id, &AccountUpdate::default()).await,
        Err(AccountError::NotFound(_))
    ));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn account_rules_are_enforced_with_clear_errors(pool: PgPool) {
    accounts::create(&pool, &secrets(), &new_account("acme"))
        .await
        .unwrap();
    let error = accounts::create(&pool, &secrets(), &new_account("acme"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AccountError::NameTaken(ref n) if n == "acme"),
        "{error:?}"
    );

    let mut zero = new_account("zero");
    zero.max_concurrency = 0;
    assert!(matches!(
        accounts::create(&pool, &secrets(), &zero).await,
        Err(AccountError::Invalid(_))
    ));
    assert!(matches!(
        accounts::create(&pool, &secrets(), &new_account("")).await,
        Err(AccountError::Invalid(_))
    ));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn lists_round_trip_with_schedules_and_cursor_resets(pool: PgPool) {
    let account = queue_support::account(&pool, "acme", 10).await;
    let other = queue_support::account(&pool, "other", 10).await;
    let added = lists::add(
        &pool,
        &NewList {
            account_id: account,
            mailchimp_list_id: "a1b2c3".to_owned(),
            name: Some("Newsletter".to_owned()),
            schedule: lists::DEFAULT_SCHEDULE,
            enabled: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(added.schedule, Duration::from_secs(3600));
    assert_eq!(added.synced_until, None);
    assert_eq!(lists::get(&pool, added.id).await.unwrap().unwrap(), added);
    queue_support::list(&pool, other, "zzz").await;

    let duplicate = NewList {
        account_id: account,
        mailchimp_list_id: "a1b2c3".to_owned(),
        name: None,
        schedule: Duration::from_secs(600),
        enabled: true,
    };
    assert!(matches!(
        lists::add(&pool, &duplicate).await,
        Err(ListError::Duplicate { .. })
    ));
    let orphan = NewList {
        account_id: other + 100,
        ..duplicate.clone()
    };
    assert!(matches!(
        lists::add(&pool, &orphan).await,
        Err(ListError::AccountNotFound(_))
    ));
    let bad_id = NewList {
        mailchimp_list_id: "no spaces!".to_owned(),
        ..duplicate.clone()
    };
    assert!(matches!(
        lists::add(&pool, &bad_id).await,
        Err(ListError::Invalid(_))
    ));

    assert_eq!(
        lists::list(&pool, Some(account)).await.unwrap(),
        vec![added.clone()]
    );
    assert_eq!(lists::list(&pool, None).await.unwrap().len(), 2);

    let changed = lists::set_schedule(&pool, added.id, Duration::from_secs(900))
        .await
        .unwrap();
    assert_eq!(changed.schedule, Duration::from_secs(900));
    assert!(matches!(
        lists::set_schedule(&pool, added.id, Duration::from_secs(5)).await,
        Err(ListError::Invalid(_))
    ));
    assert!(
        !lists::set_enabled(&pool, added.id, false)
            .await
            .unwrap()
            .enabled
    );
    let cursor = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    assert_eq!(
        lists::reset_cursor(&pool, added.id, Some(cursor))
            .await
            .unwrap()
            .synced_until,
        Some(cursor)
    );
    assert_eq!(
        lists::reset_cursor(&pool, added.id, None)
            .await
            .unwrap()
            .synced_until,
        None
    );
    assert!(matches!(
        lists::set_enabled(&pool, added.id + 100, true).await,
        Err(ListError::NotFound(_))
    ));
    assert!(lists::remove(&pool, added.id).await.unwrap());
    assert!(lists::get(&pool, added.id).await.unwrap().is_none());
}

/// Regression: the ledger outlived a change of destination, so a full sync to the new
/// destination skipped every member the old one held unchanged, and the new one never got them.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_new_destination_forgets_the_accounts_ledger_and_other_changes_keep_it(pool: PgPool) {
    let sbox = secrets();
    let acme = accounts::create(&pool, &sbox, &new_account("acme"))
        .await
        .unwrap();
    let other = accounts::create(&pool, &sbox, &new_account("other"))
        .await
        .unwrap();
    let mut lists_of = Vec::new();
    for account in [acme.id, other.id] {
        let list = lists::add(
            &pool,
            &NewList {
                account_id: account,
                mailchimp_list_id: "a1b2c3".to_owned(),
                name: None,
                schedule: lists::DEFAULT_SCHEDULE,
                enabled: true,
            },
        )
        .await
        .unwrap();
        lists_of.push(list.id);
    }
    let ledger_rows = |list: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM importer.ledger WHERE list_id = $1")
                .bind(list)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    sqlx::query(
        "INSERT INTO importer.ledger (list_id, fingerprint, member_key)
         SELECT l, 7, importer.ledger_key(md5(l::text || i::text))
           FROM unnest($1::bigint[]) AS l, generate_series(1, 5) AS i",
    )
    .bind(&lists_of)
    .execute(&pool)
    .await
    .unwrap();

    let cap = AccountUpdate {
        max_concurrency: Some(3),
        ..AccountUpdate::default()
    };
    accounts::update(&pool, acme.id, &cap).await.unwrap();
    assert_eq!(
        ledger_rows(lists_of[0]).await,
        5,
        "a new cap keeps the ledger"
    );

    let moved = AccountUpdate {
        destination_url: Some("https://records-new.example.com".to_owned()),
        ..AccountUpdate::default()
    };
    let updated = accounts::update(&pool, acme.id, &moved).await.unwrap();
    assert_eq!(updated.destination_url, "https://records-new.example.com");
    assert_eq!(
        ledger_rows(lists_of[0]).await,
        0,
        "the moved account forgets"
    );
    assert_eq!(
        ledger_rows(lists_of[1]).await,
        5,
        "other accounts keep theirs"
    );

    let rekeyed = AccountUpdate {
        destination_key: Some(sbox.seal(
            other.id,
            SecretField::DestinationKey,
            &Secret::new("a-new-destination-key-0001"),
        )),
        ..AccountUpdate::default()
    };
    accounts::update(&pool, other.id, &rekeyed).await.unwrap();
    assert_eq!(
        ledger_rows(lists_of[1]).await,
        0,
        "a new destination key forgets too"
    );
}

/// Regression: a destination changed while a run was active forgot the ledger, and that run's
/// jobs, which had loaded the old destination, went on posting there and recording the posts in
/// the ledger: a later sync skipped those members as delivered, and the new destination never
/// got them. The change is refused, naming the runs, until they end.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_destination_change_is_refused_while_a_run_is_active(pool: PgPool) {
    use importer_core::runs::{self, RequestedMode, RunRequest};
    let sbox = secrets();
    let acme = accounts::create(&pool, &sbox, &new_account("acme"))
        .await
        .unwrap();
    let list = lists::add(
        &pool,
        &NewList {
            account_id: acme.id,
            mailchimp_list_id: "a1b2c3".to_owned(),
            name: None,
            schedule: lists::DEFAULT_SCHEDULE,
            enabled: true,
        },
    )
    .await
    .unwrap();
    let run = runs::create(
        &pool,
        list.id,
        RunRequest {
            mode: RequestedMode::Auto,
        },
    )
    .await
    .unwrap();
    let moved = AccountUpdate {
        destination_url: Some("https://records-new.example.com".to_owned()),
        ..AccountUpdate::default()
    };
    match accounts::update(&pool, acme.id, &moved).await {
        Err(AccountError::RunsActive { account_id, runs }) => {
            assert_eq!((account_id, runs), (acme.id, vec![run.id]));
        }
        other => panic!("expected RunsActive, got {other:?}"),
    }
    let unchanged = accounts::get(&pool, acme.id).await.unwrap().unwrap();
    assert_eq!(unchanged.destination_url, acme.destination_url);
    let cap = AccountUpdate {
        max_concurrency: Some(3),
        ..AccountUpdate::default()
    };
    accounts::update(&pool, acme.id, &cap)
        .await
        .expect("other changes are not refused");

    runs::cancel(&pool, run.id).await.unwrap();
    let updated = accounts::update(&pool, acme.id, &moved).await.unwrap();
    assert_eq!(updated.destination_url, "https://records-new.example.com");
}
