//! The ledger (`importer.ledger`): written with the checkpoint or completion that delivered
//! its records, read to skip members whose record the destination already holds.
#![allow(clippy::unwrap_used)]

mod queue_support;

use chrono::{DateTime, Utc};
use importer_core::ledger::{fingerprint, Delivery, ListLedger};
use importer_core::lists;
use importer_core::mapping::Record;
use importer_core::queue::{self, Checkpoint, Completion};
use queue_support::{account_with_list, claim_one, planned_run};
use sqlx::PgPool;

fn record(id: &str, firstname: &str) -> Record {
    Record {
        id: id.into(),
        firstname: firstname.into(),
        lastname: "Lee".into(),
        email: format!("{id}@example.com"),
        status: "subscribed".into(),
    }
}

fn delivery(id: &str, firstname: &str, last_changed: i64) -> Delivery {
    Delivery::of(&record(id, firstname), Some(last_changed))
}

const HEX: &str = "0123456789abcdef0123456789abcdef";

/// A checkpoint of one delivered record (Ann, member [`HEX`]).
fn ann_checkpoint(args: &serde_json::Value) -> Checkpoint {
    Checkpoint {
        args: args.clone(),
        records_imported: 1,
        ledger: vec![delivery(HEX, "Ann", 100)],
        ..Checkpoint::default()
    }
}

async fn rows(pool: &PgPool, list: i64) -> Vec<(String, i64, Option<DateTime<Utc>>)> {
    sqlx::query_as(
        "SELECT member_id, fingerprint, last_changed FROM importer.ledger_members
          WHERE list_id = $1 ORDER BY member_id",
    )
    .bind(list)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn member_ids_of_every_form_round_trip_through_the_stored_key(pool: PgPool) {
    // 32 hex digits, an id that is not hex, one whose UTF-8 is exactly 16 bytes (the padded
    // form), one that is 17 bytes, upper-case hex, and non-ASCII.
    let ids = [
        HEX,
        "legacy-id-42",
        "sixteen-bytes-id",
        "seventeen-bytes-i",
        "0123456789ABCDEF0123456789ABCDEF",
        "ünïcødé-ïd",
    ];
    for id in ids {
        let (back, len): (String, i32) = sqlx::query_as(
            "SELECT importer.ledger_member_id(importer.ledger_key($1)),
                    length(importer.ledger_key($1))",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(back, id);
        assert_eq!(
            len == 16,
            id == HEX,
            "only a hex id is stored in 16 bytes ({id})"
        );
    }
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_checkpoint_and_a_completion_write_the_ledger_in_their_transaction(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 1).await;
    let job = claim_one(&pool, "w").await;
    let first = vec![delivery(HEX, "Ann", 100), delivery("legacy-1", "Bob", 100)];
    queue::checkpoint(
        &pool,
        job.fence(),
        &Checkpoint {
            args: job.args.clone(),
            records_imported: 2,
            ledger: first.clone(),
            ..Checkpoint::default()
        },
    )
    .await
    .unwrap();
    let stored = rows(&pool, list).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0],
        (HEX.to_owned(), first[0].fingerprint, first[0].last_changed)
    );

    // The completion: Ann changed (a new fingerprint), Bob only moved last_changed (the
    // same fingerprint, counted unchanged), Cy is new; Cy twice in one batch counts once.
    let second = vec![
        delivery(HEX, "Anne", 200),
        delivery("legacy-1", "Bob", 300),
        delivery("cy", "Cy", 250),
        delivery("cy", "Cy", 260),
    ];
    queue::complete(
        &pool,
        job.fence(),
        Completion {
            records_imported: 2,
            records_unchanged: 1,
            ledger: second.clone(),
            ..Completion::default()
        },
    )
    .await
    .unwrap();
    let stored = rows(&pool, list).await;
    let want: Vec<(String, i64, Option<DateTime<Utc>>)> = vec![
        (HEX.into(), second[0].fingerprint, second[0].last_changed),
        ("cy".into(), second[3].fingerprint, second[3].last_changed),
        (
            "legacy-1".into(),
            second[1].fingerprint,
            second[1].last_changed,
        ),
    ];
    assert_eq!(stored, want);
    let unchanged: i64 =
        sqlx::query_scalar("SELECT records_unchanged FROM importer.runs WHERE id = $1")
            .bind(run)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(unchanged, 1);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_fenced_checkpoint_writes_nothing_to_the_ledger(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    planned_run(&pool, list, 1).await;
    let job = claim_one(&pool, "w").await;
    queue::retry(&pool, &job, "503", Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    let outcome = queue::checkpoint(&pool, job.fence(), &ann_checkpoint(&job.args))
        .await
        .unwrap();
    assert_eq!(outcome, queue::CheckpointOutcome::Fenced);
    assert!(rows(&pool, list).await.is_empty());

    // A lease that ran out still names its holder: the ledger rows written before the fence
    // is checked under the run lock are rolled back with the refused checkpoint.
    let job = claim_one(&pool, "w").await;
    sqlx::query(
        "UPDATE importer.jobs SET locked_until = now() - interval '1 second' WHERE id = $1",
    )
    .bind(job.id)
    .execute(&pool)
    .await
    .unwrap();
    let outcome = queue::checkpoint(&pool, job.fence(), &ann_checkpoint(&job.args))
        .await
        .unwrap();
    assert_eq!(outcome, queue::CheckpointOutcome::Fenced);
    assert!(rows(&pool, list).await.is_empty());
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn only_members_with_the_same_fingerprint_are_unchanged_unless_the_list_posts_always(
    pool: PgPool,
) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 1).await;
    let job = claim_one(&pool, "w").await;
    queue::complete(
        &pool,
        job.fence(),
        Completion {
            ledger: vec![delivery(HEX, "Ann", 100), delivery("b", "Bob", 100)],
            ..Completion::default()
        },
    )
    .await
    .unwrap();
    let ledger = ListLedger::of_run(&pool, run).await.unwrap().unwrap();
    assert_eq!(
        ledger,
        ListLedger {
            list_id: list,
            always_post: false
        }
    );
    let read = vec![
        delivery(HEX, "Ann", 500),   // only last_changed moved
        delivery("b", "Bobby", 500), // a mapped field changed
        delivery("c", "Cy", 500),    // never delivered
    ];
    let same = ledger.unchanged(&pool, &read).await.unwrap();
    assert_eq!(same.into_iter().collect::<Vec<_>>(), vec![HEX.to_owned()]);

    // Another list's ledger is its own.
    let (_, other) = account_with_list(&pool, "other", 10).await;
    let foreign = ListLedger {
        list_id: other,
        always_post: false,
    };
    assert!(foreign.unchanged(&pool, &read).await.unwrap().is_empty());

    lists::set_always_post(&pool, list, true).await.unwrap();
    let always = ListLedger::of_run(&pool, run).await.unwrap().unwrap();
    assert!(always.always_post);
    assert!(always.unchanged(&pool, &read).await.unwrap().is_empty());
    assert_eq!(fingerprint(&record(HEX, "Ann")), read[0].fingerprint);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_ledger_goes_with_its_list(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    planned_run(&pool, list, 1).await;
    let job = claim_one(&pool, "w").await;
    queue::complete(
        &pool,
        job.fence(),
        Completion {
            ledger: vec![delivery(HEX, "Ann", 100)],
            ..Completion::default()
        },
    )
    .await
    .unwrap();
    assert!(lists::remove(&pool, list).await.unwrap());
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.ledger")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// An audit that ends without concluding (here cancelled) leaves none of its scan's rows.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_cancelled_audit_drops_what_its_scan_stored(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let audit = importer_core::runs::create_audit(&pool, list, false)
        .await
        .unwrap();
    let stamps: Vec<importer_core::mailchimp::Stamp> = (0..3)
        .map(|i| importer_core::mailchimp::Stamp {
            id: format!("{i:032x}"),
            last_changed: None,
        })
        .collect();
    importer_core::list_audit::record_seen(&pool, audit.id, &stamps, false)
        .await
        .unwrap();
    let seen = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM importer.audit_seen")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(seen().await, 3);
    importer_core::runs::cancel(&pool, audit.id).await.unwrap();
    assert_eq!(seen().await, 0);
}

/// Whether a backend of this database waits for a lock in a statement that locks a run
/// (`run_lock`) while it holds a lock on the ledger; polls until one waits.
async fn waits_for_the_run_with_the_ledger_written(pool: &PgPool) -> Option<bool> {
    for _ in 0..500 {
        let seen: Option<bool> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l
                             WHERE l.pid = a.pid AND l.granted
                               AND l.relation = 'importer.ledger'::regclass)
               FROM pg_stat_activity a
              WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'
                AND a.query LIKE '%run_lock%'",
        )
        .fetch_optional(pool)
        .await
        .unwrap();
        if seen.is_some() {
            return seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    None
}

async fn lock_run(pool: &PgPool, run: i64) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM importer.runs WHERE id = $1 FOR NO KEY UPDATE")
        .bind(run)
        .execute(&mut *holder)
        .await
        .unwrap();
    holder
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn checkpoints_and_completions_write_their_ledger_rows_before_they_queue_on_the_run_row(
    pool: PgPool,
) {
    // Regression: the ledger was written after the run row was locked, so the jobs of one run
    // wrote their pages one after another. Here another transaction holds the run row; the
    // checkpoint, then the completion, must have written their ledger rows (holding a lock on
    // the ledger) by the time they wait for it.
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 1).await;
    let job = claim_one(&pool, "w").await;

    let holder = lock_run(&pool, run).await;
    let checkpoint = tokio::spawn({
        let (pool, fence, args) = (pool.clone(), job.fence(), job.args.clone());
        async move { queue::checkpoint(&pool, fence, &ann_checkpoint(&args)).await }
    });
    assert_eq!(
        waits_for_the_run_with_the_ledger_written(&pool).await,
        Some(true),
        "the checkpoint waits for the run row with its ledger rows written"
    );
    holder.rollback().await.unwrap();
    let outcome = checkpoint.await.unwrap().unwrap();
    assert!(matches!(outcome, queue::CheckpointOutcome::Recorded { .. }));
    assert_eq!(rows(&pool, list).await.len(), 1);

    let holder = lock_run(&pool, run).await;
    let completion = tokio::spawn({
        let (pool, fence) = (pool.clone(), job.fence());
        async move {
            let completion = Completion {
                records_imported: 1,
                ledger: vec![delivery("b", "Bob", 100)],
                ..Completion::default()
            };
            queue::complete(&pool, fence, completion).await
        }
    });
    assert_eq!(
        waits_for_the_run_with_the_ledger_written(&pool).await,
        Some(true),
        "the completion waits for the run row with its ledger rows written"
    );
    holder.rollback().await.unwrap();
    assert!(!completion.await.unwrap().unwrap().is_fenced());
    assert_eq!(rows(&pool, list).await.len(), 2);
}
