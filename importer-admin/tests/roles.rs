//! Least privilege: `migrate` creates the roles and their grants (idempotently); a worker
//! connected as `importer_worker` imports, and cannot change the schema, read the audit log or
//! write an account's keys; an operator cannot change the schema or rewrite the audit log.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::import::{wait_for_run, Import};
use common::Admin;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// A login role that is a member of `group`, dropped when the test ends.
struct Login {
    name: String,
    admin: PgPool,
}

impl Login {
    async fn create(admin: &PgPool, group: &str) -> Self {
        let name = format!("test_{group}_{:08x}", rand::random::<u32>());
        sqlx::query(&format!("CREATE ROLE {name} LOGIN IN ROLE {group}"))
            .execute(admin)
            .await
            .unwrap();
        Login {
            name,
            admin: admin.clone(),
        }
    }

    async fn pool(&self, db: &PgPool) -> PgPool {
        let options = db.connect_options().as_ref().clone().username(&self.name);
        PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .unwrap()
    }

    async fn drop(self) {
        sqlx::query(&format!("DROP ROLE IF EXISTS {}", self.name))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

/// The SQLSTATE of a statement that must fail.
async fn refused(pool: &PgPool, sql: &str) -> String {
    match sqlx::raw_sql(sql).execute(pool).await {
        Ok(_) => panic!("{sql} was allowed"),
        Err(sqlx::Error::Database(e)) => e.code().unwrap_or_default().into_owned(),
        Err(e) => panic!("{sql}: {e}"),
    }
}

#[sqlx::test(migrations = false)]
async fn a_worker_role_imports_but_cannot_change_the_schema_or_read_the_audit_log(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.run(&["migrate"]).ok();
    admin.run(&["migrate"]).ok(); // idempotent: roles and grants again

    let mut import = Import::start(&pool, 2_000, 5).await;
    let worker = Login::create(&pool, "importer_worker").await;
    let as_worker = worker.pool(&pool).await;
    let options = as_worker.connect_options().as_ref().clone();
    import.spawn_worker_on(options, None, 1);
    import.admin.run(&["runs", "start", "acme/browser01"]).ok();
    wait_for_run(&pool, 1, "completed", Duration::from_secs(60)).await;
    // A worker holds jobs, ticks and completes runs: all of that through its grants.
    let cursor: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT synced_until FROM importer.lists")
            .fetch_one(&as_worker)
            .await
            .unwrap();
    assert!(cursor.is_some(), "the run moved the cursor");
    // The ledger and an audit work through the worker's grants too.
    import
        .admin
        .run(&["audit", "acme/browser01", "--no-wait"])
        .ok();
    wait_for_run(&pool, 2, "completed", Duration::from_secs(60)).await;
    let (ledger, audited): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM importer.ledger), (SELECT count(*) FROM importer.audit_results)",
    )
    .fetch_one(&as_worker)
    .await
    .unwrap();
    assert_eq!((ledger, audited), (2_000, 1));
    importer_core::tick::tick(&as_worker, None).await.unwrap();
    // Retention runs as the worker, through the function that may delete audit rows.
    importer_core::retention::prune(&as_worker, 10)
        .await
        .unwrap();

    for sql in [
        "DROP TABLE importer.jobs",
        "ALTER TABLE importer.jobs ADD COLUMN x int",
        "CREATE TABLE importer.intruder (x int)",
        "SELECT * FROM importer.audit_log",
        "UPDATE importer.accounts SET mailchimp_key = '\\x00'",
        "UPDATE importer.lists SET enabled = false",
        "DELETE FROM importer.accounts",
    ] {
        assert_eq!(refused(&as_worker, sql).await, "42501", "{sql}");
    }
    import.stop().await;
    as_worker.close().await;
    worker.drop().await;
}

#[sqlx::test(migrations = false)]
async fn an_operator_role_acts_but_cannot_change_the_schema_or_rewrite_the_audit_log(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.run(&["migrate"]).ok();
    admin.add_account("acme");
    let operator = Login::create(&pool, "importer_operator").await;
    let as_operator = operator.pool(&pool).await;
    // The CLI, connected as the operator, acts and writes its audit row.
    let url = {
        use sqlx::ConnectOptions;
        as_operator.connect_options().to_url_lossy().to_string()
    };
    let cli = Admin::with_url(Some(url));
    cli.run(&["accounts", "pause", "acme"]).ok();
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM importer.audit_log WHERE action = 'accounts.pause'",
    )
    .fetch_one(&as_operator)
    .await
    .unwrap();
    assert_eq!(rows, 1);
    for sql in [
        "DROP TABLE importer.runs",
        "ALTER TABLE importer.accounts ADD COLUMN x int",
        "UPDATE importer.audit_log SET actor = 'someone else'",
        "DELETE FROM importer.audit_log",
    ] {
        assert_eq!(refused(&as_operator, sql).await, "42501", "{sql}");
    }
    as_operator.close().await;
    operator.drop().await;
}
