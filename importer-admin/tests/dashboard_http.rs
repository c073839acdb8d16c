//! The dashboard over HTTP: a real `importer-admin serve` on port 0 against the test's own
//! database. Every page and action, sign-in and roles, CSRF, bad input, the audit log, and no
//! secret in any answer.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::dashboard::{csrf_of, Dashboard, Who, OPERATOR_TOKEN, VIEWER_TOKEN};
use common::{Admin, DEST_KEY, MC_KEY};
use importer_core::queue;
use reqwest::StatusCode;
use sqlx::PgPool;

/// Account `acme` with list `abc123` (id 1), whose run 1 failed with one dead plan job, and one
/// rejected record; returns the dead job's id.
async fn failed_run(pool: &PgPool, admin: &Admin) -> i64 {
    admin.add_account("acme");
    admin.add_list("acme", "abc123");
    admin.run(&["runs", "start", "acme/abc123"]).ok();
    let job = queue::claim(pool, "worker-a", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    assert!(
        queue::dead_letter(pool, job.fence(), "HTTP 404: Resource Not Found")
            .await
            .unwrap()
    );
    sqlx::query(
        "INSERT INTO importer.rejected_records (run_id, list_id, member_id, reason, code, excerpt)
         VALUES (1, 1, 'm-77', 'member has no email_address', 'missing_email', '{\"id\":\"m-77\"}')",
    )
    .execute(pool)
    .await
    .unwrap();
    job.id
}

async fn paused(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT paused FROM importer.accounts WHERE name = 'acme'")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn audit_rows(pool: &PgPool) -> Vec<(String, String, String, String)> {
    sqlx::query_as("SELECT actor, via, action, outcome FROM importer.audit_log ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn every_page_renders_and_no_answer_holds_a_secret(pool: PgPool) {
    let admin = Admin::new(&pool);
    let dead_id = failed_run(&pool, &admin).await;
    let dashboard = Dashboard::start(&admin);
    let viewer = dashboard.sign_in(VIEWER_TOKEN).await;
    let pages = [
        ("/", "Runs in flight"),
        ("/fragments/overview", "Workers"),
        ("/api/overview", "\"queue\""),
        ("/accounts", "acme"),
        ("/lists", "abc123"),
        ("/lists?behind=1", "abc123"),
        ("/runs", "failed"),
        (
            "/runs?status=failed&account=1&list=1&from=2020-01-01&to=2100-01-01",
            "#1",
        ),
        ("/runs/1", "Resource Not Found"),
        ("/fragments/runs/1", "windows done"),
        ("/dead", "Resource Not Found"),
        (
            "/dead?error=not%20found&reason=permanent&run=1",
            "Resource Not Found",
        ),
        (&format!("/dead/{dead_id}"), "HTTP 404"),
        ("/rejected", "missing_email"),
        ("/rejected?code=missing_email&run=1", "m-77"),
        ("/audit", "runs.start"),
        ("/audit?actor=nobody", "No action recorded"),
    ];
    let secrets = [
        MC_KEY,
        DEST_KEY,
        admin.secret_key.as_str(),
        OPERATOR_TOKEN,
        VIEWER_TOKEN,
    ];
    for (path, expected) in pages {
        for who in [&viewer, &Who::Bearer(OPERATOR_TOKEN.to_owned())] {
            let page = dashboard.get(who, path).await;
            assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
            assert!(
                page.body.contains(expected),
                "{path} lacks {expected:?}: {}",
                page.body
            );
            for secret in secrets {
                assert!(!page.body.contains(secret), "{path} shows a secret");
                for value in page.headers.values() {
                    assert!(
                        !value.to_str().unwrap_or("").contains(secret),
                        "{path} header"
                    );
                }
            }
        }
    }
    // The accounts page shows the keys' hints only.
    let accounts = dashboard.get(&viewer, "/accounts").await;
    assert!(accounts.body.contains("…-us6"), "{}", accounts.body);
    // The viewer sees no action button.
    assert!(
        !accounts.body.contains("/accounts/1/pause"),
        "{}",
        accounts.body
    );
    let as_operator = dashboard
        .get(&Who::Bearer(OPERATOR_TOKEN.into()), "/accounts")
        .await;
    assert!(as_operator.body.contains("/accounts/1/pause"));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn signing_in_gives_an_http_only_same_site_cookie_and_nothing_opens_without_it(pool: PgPool) {
    let admin = Admin::new(&pool);
    let dashboard = Dashboard::start(&admin);
    // Not signed in: pages send to the sign-in form, the rest answer 401.
    let page = dashboard.get(&Who::Nobody, "/runs?status=failed").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/login?next=/runs%3Fstatus%3Dfailed"));
    for path in ["/api/overview", "/fragments/overview"] {
        assert_eq!(
            dashboard.get(&Who::Nobody, path).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        dashboard
            .post(&Who::Nobody, "/accounts/1/pause", &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = Who::Bearer("operator-token-7f3c9a1e55d3".into());
    assert_eq!(
        dashboard.get(&wrong, "/api/overview").await.status,
        StatusCode::UNAUTHORIZED
    );
    // A wrong token on the form is refused, and recorded.
    let refused = dashboard
        .post(&Who::Nobody, "/login", &[("token", "not-the-token-at-all")])
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body.contains("not valid"));
    assert!(refused.headers.get("set-cookie").is_none());
    // The right one: a session cookie that scripts cannot read and other sites cannot send.
    let answer = dashboard
        .post(
            &Who::Nobody,
            "/login",
            &[("token", OPERATOR_TOKEN), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), Some("/"), "an off-site next is ignored");
    let cookie = answer
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        !cookie.contains(OPERATOR_TOKEN),
        "the cookie holds a session id, not the token"
    );
    let session = dashboard.sign_in(OPERATOR_TOKEN).await;
    assert_eq!(dashboard.get(&session, "/").await.status, StatusCode::OK);
    // Signing out ends the session on the server.
    let Who::Session { csrf, .. } = &session else {
        unreachable!()
    };
    let out = dashboard.post(&session, "/logout", &[("csrf", csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        dashboard.get(&session, "/").await.status,
        StatusCode::SEE_OTHER
    );
    let rows = audit_rows(&pool).await;
    assert!(
        rows.contains(&(
            "anonymous".into(),
            "dashboard".into(),
            "session.sign_in".into(),
            "refused".into()
        )),
        "{rows:?}"
    );
    assert!(
        rows.contains(&(
            "ana".into(),
            "dashboard".into(),
            "session.sign_in".into(),
            "ok".into()
        )),
        "{rows:?}"
    );
    // Every answer forbids framing and sniffing.
    let page = dashboard.get(&Who::Nobody, "/login").await;
    assert_eq!(page.headers.get("x-frame-options").unwrap(), "DENY");
    assert!(page.headers.get("content-security-policy").is_some());
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_viewers_action_is_refused_changes_nothing_and_is_audited(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    let dashboard = Dashboard::start(&admin);
    let viewer = dashboard.sign_in(VIEWER_TOKEN).await;
    let answer = dashboard.post(&viewer, "/accounts/1/pause", &[]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.body.contains("only operators can act"),
        "{}",
        answer.body
    );
    let bearer = Who::Bearer(VIEWER_TOKEN.into());
    assert_eq!(
        dashboard
            .post(&bearer, "/accounts/1/pause", &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert!(!paused(&pool).await);
    let rows = audit_rows(&pool).await;
    assert!(
        rows.contains(&(
            "vic".into(),
            "dashboard".into(),
            "accounts.pause".into(),
            "refused".into()
        )),
        "{rows:?}"
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_form_without_the_sessions_csrf_token_changes_nothing(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    let dashboard = Dashboard::start(&admin);
    let operator = dashboard.sign_in(OPERATOR_TOKEN).await;
    let other = dashboard.sign_in(OPERATOR_TOKEN).await;
    let Who::Session {
        csrf: other_csrf, ..
    } = &other
    else {
        unreachable!()
    };
    for token in ["", "0000", other_csrf.as_str()] {
        let answer = dashboard
            .post(&operator, "/accounts/1/pause", &[("csrf", token)])
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "csrf {token:?}");
        assert!(answer.body.contains("CSRF"), "{}", answer.body);
        assert!(!paused(&pool).await);
    }
    // With its own token, the same form works.
    let answer = dashboard.post(&operator, "/accounts/1/pause", &[]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert!(paused(&pool).await);
    // The next page shows what was done, once; a live section refreshing meanwhile (another
    // tab's overview) leaves the message for it.
    let fragment = dashboard.get(&operator, "/fragments/overview").await;
    assert!(!fragment.body.contains("account acme paused"));
    let page = dashboard.get(&operator, "/accounts").await;
    assert!(page.body.contains("account acme paused"), "{}", page.body);
    assert!(!dashboard
        .get(&operator, "/accounts")
        .await
        .body
        .contains("account acme paused"));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn every_action_works_through_the_page_and_is_audited(pool: PgPool) {
    let admin = Admin::new(&pool);
    let dead_id = failed_run(&pool, &admin).await;
    let dashboard = Dashboard::start(&admin);
    let op = dashboard.sign_in(OPERATOR_TOKEN).await;
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let op = op.clone();
        let dashboard = &dashboard;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            dashboard.post(&op, path, &fields).await
        }
    };
    let scalar = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    // Accounts: pause, resume, cap.
    assert_eq!(
        post("/accounts/1/pause", vec![]).await.status,
        StatusCode::SEE_OTHER
    );
    assert!(paused(&pool).await);
    assert_eq!(
        post("/accounts/1/resume", vec![]).await.status,
        StatusCode::SEE_OTHER
    );
    assert!(!paused(&pool).await);
    assert_eq!(
        post(
            "/accounts/1/concurrency",
            vec![("max_concurrency", "4".into())]
        )
        .await
        .status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        scalar("SELECT max_concurrency::text FROM importer.accounts").await,
        "4"
    );

    // Requeue the failed run's dead job: a confirmation first, then the run runs again.
    let confirm = post(
        "/dead/requeue",
        vec![("scope", "filter".into()), ("run", "1".into())],
    )
    .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm
            .body
            .contains("Requeue all 1 dead jobs matching run = 1"),
        "{}",
        confirm.body
    );
    assert_eq!(
        scalar("SELECT count(*)::text FROM importer.dead_jobs").await,
        "1",
        "nothing before the confirmation"
    );
    let csrf = csrf_of(&confirm.body);
    let done = post(
        "/dead/requeue",
        vec![
            ("scope", "filter".into()),
            ("run", "1".into()),
            ("confirm", "yes".into()),
            ("csrf", csrf),
        ],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some("/runs/1"));
    assert_eq!(
        scalar("SELECT status FROM importer.runs WHERE id = 1").await,
        "running"
    );
    assert_eq!(
        scalar("SELECT count(*)::text FROM importer.dead_jobs").await,
        "0"
    );

    // Starting a run while one is active is refused with the reason.
    let busy = post("/lists/1/runs", vec![("mode", "full".into())]).await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    assert!(
        busy.body.contains("already has an active run 1"),
        "{}",
        busy.body
    );

    // Cancel it (confirmed), then start a full one.
    let cancel = post("/runs/1/cancel", vec![]).await;
    assert!(cancel.body.contains("Cancel run 1?"), "{}", cancel.body);
    assert_eq!(
        post("/runs/1/cancel", vec![("confirm", "yes".into())])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        scalar("SELECT status FROM importer.runs WHERE id = 1").await,
        "cancelled"
    );
    assert_eq!(
        post("/lists/1/runs", vec![("mode", "full".into())])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        scalar("SELECT mode || ' ' || status FROM importer.runs ORDER BY id DESC LIMIT 1").await,
        "full planning"
    );
    let second = scalar("SELECT id::text FROM importer.runs ORDER BY id DESC LIMIT 1").await;

    // Lists: disable, enable; a reset cursor is refused while run 2 is active.
    assert_eq!(
        post("/lists/1/disable", vec![]).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        scalar("SELECT enabled::text FROM importer.lists").await,
        "false"
    );
    assert_eq!(
        post("/lists/1/enable", vec![]).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        scalar("SELECT enabled::text FROM importer.lists").await,
        "true"
    );
    let reset = post(
        "/lists/1/reset-cursor",
        vec![
            ("to", "2026-11-01T00:00:00Z".into()),
            ("confirm", "yes".into()),
        ],
    )
    .await;
    assert_eq!(reset.status, StatusCode::CONFLICT, "{}", reset.body);
    let cancel_second: &'static str = Box::leak(format!("/runs/{second}/cancel").into_boxed_str());
    assert_eq!(
        post(cancel_second, vec![("confirm", "yes".into())])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let ask = post(
        "/lists/1/reset-cursor",
        vec![("to", "2026-11-01T00:00:00Z".into())],
    )
    .await;
    assert!(
        ask.body.contains("Move the cursor of list 1"),
        "{}",
        ask.body
    );
    assert_eq!(
        scalar("SELECT coalesce(synced_until::text, 'none') FROM importer.lists").await,
        "none"
    );
    let reset = post(
        "/lists/1/reset-cursor",
        vec![
            ("to", "2026-11-01T00:00:00Z".into()),
            ("confirm", "yes".into()),
        ],
    )
    .await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER, "{}", reset.body);
    assert_eq!(
        scalar("SELECT to_char(synced_until AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM importer.lists")
            .await,
        "2026-11-01"
    );

    // Purge the selected dead jobs: a new dead job, selected by id.
    let job = queue::claim(&pool, "worker-a", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(job.is_empty(), "cancelled runs leave no job");
    admin.run(&["runs", "start", "acme/abc123"]).ok();
    let job = queue::claim(&pool, "worker-a", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    assert!(queue::dead_letter(&pool, job.fence(), "boom")
        .await
        .unwrap());
    let id = job.id.to_string();
    let purge = post(
        "/dead/purge",
        vec![
            ("scope", "ids".into()),
            ("id", id.clone()),
            ("confirm", "yes".into()),
        ],
    )
    .await;
    assert_eq!(purge.status, StatusCode::SEE_OTHER, "{}", purge.body);
    assert_eq!(
        scalar("SELECT count(*)::text FROM importer.dead_jobs").await,
        "0"
    );
    assert_ne!(job.id, dead_id);

    let actions: Vec<(String, String)> = audit_rows(&pool)
        .await
        .into_iter()
        .filter(|(actor, ..)| actor == "ana")
        .map(|(_, _, action, outcome)| (action, outcome))
        .collect();
    let expected = [
        ("session.sign_in", "ok"),
        ("accounts.pause", "ok"),
        ("accounts.resume", "ok"),
        ("accounts.update", "ok"),
        ("dead.requeue", "ok"),
        ("runs.start", "refused"),
        ("runs.cancel", "ok"),
        ("runs.start", "ok"),
        ("lists.disable", "ok"),
        ("lists.enable", "ok"),
        ("lists.reset_cursor", "refused"),
        ("runs.cancel", "ok"),
        ("lists.reset_cursor", "ok"),
        ("dead.purge", "ok"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, o)| (a.to_string(), o.to_string()))
        .collect();
    assert_eq!(actions, expected);
    let objects: serde_json::Value =
        sqlx::query_scalar("SELECT objects FROM importer.audit_log WHERE action = 'dead.purge'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(objects, serde_json::json!({ "dead_job_ids": [job.id] }));
    // The audit page shows them.
    let page = dashboard
        .get(&op, "/audit?actor=ana&action=dead.purge")
        .await;
    assert!(page.body.contains("1 dead job purged"), "{}", page.body);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn requeue_all_matching_a_filter_runs_on_the_server_in_chunks(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    admin.add_list("acme", "abc123");
    // A failed run with 2,500 dead windows (more than two chunks of 1,000), and one dead job of
    // another error that the filter must leave alone.
    sqlx::raw_sql(
        "INSERT INTO importer.runs (list_id, account_id, mode, until, status, trigger, members_total,
                                    jobs_total, jobs_done, jobs_dead, finished_at, error)
         VALUES (1, 1, 'full', now(), 'failed', 'admin', 2500000, 2502, 1, 2501, now(), 'dead jobs');
         INSERT INTO importer.dead_jobs (id, kind, args, account_id, run_id, attempts, max_attempts,
                                         last_error, reason, created_at)
         SELECT i, 'import_window', '{}', 1, 1, 5, 5,
                CASE WHEN i = 1 THEN 'HTTP 401: key revoked' ELSE 'HTTP 503 from the destination' END,
                'exhausted', now()
           FROM generate_series(1, 2501) i;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let dashboard = Dashboard::start(&admin);
    let op = dashboard.sign_in(OPERATOR_TOKEN).await;
    let page = dashboard.get(&op, "/dead?error=503").await;
    assert!(page.body.contains("2,500 dead jobs match"), "{}", page.body);
    assert!(
        page.body.contains("Requeue all 2,500 matching"),
        "{}",
        page.body
    );
    let done = dashboard
        .post(
            &op,
            "/dead/requeue",
            &[("scope", "filter"), ("error", "503"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let (jobs, dead, left): (i64, i32, String) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM importer.jobs), r.jobs_dead,
                (SELECT last_error FROM importer.dead_jobs)
           FROM importer.runs r",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (jobs, dead, left.as_str()),
        (2500, 1, "HTTP 401: key revoked")
    );
    let page = dashboard.get(&op, "/dead").await;
    assert!(
        page.body.contains("2500 dead jobs requeued in 4 chunks"),
        "{}",
        page.body
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn bad_input_gets_a_clear_message_and_changes_nothing(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    let dashboard = Dashboard::start(&admin);
    let op = dashboard.sign_in(OPERATOR_TOKEN).await;
    let pages = [
        (
            "/runs/abc",
            StatusCode::BAD_REQUEST,
            "run: \"abc\" is not an id",
        ),
        ("/runs/99", StatusCode::NOT_FOUND, "there is no run 99"),
        (
            "/runs?status=dead",
            StatusCode::BAD_REQUEST,
            "status: \"dead\" is not one of",
        ),
        ("/runs?from=yesterday", StatusCode::BAD_REQUEST, "from:"),
        ("/dead?reason=old", StatusCode::BAD_REQUEST, "reason:"),
        (
            "/dead/0",
            StatusCode::BAD_REQUEST,
            "dead job: \"0\" is not an id",
        ),
        ("/rejected?code=nope", StatusCode::BAD_REQUEST, "code:"),
        ("/lists?account=-1", StatusCode::BAD_REQUEST, "account:"),
        (
            "/nowhere",
            StatusCode::NOT_FOUND,
            "there is no page or action",
        ),
    ];
    for (path, status, message) in pages {
        let page = dashboard.get(&op, path).await;
        assert_eq!(page.status, status, "{path}");
        assert!(
            page.body.contains(&message.replace('"', "&quot;")),
            "{path}: {}",
            page.body
        );
    }
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], StatusCode, &'a str);
    let actions: [Case; 7] = [
        (
            "/accounts/abc/pause",
            &[],
            StatusCode::BAD_REQUEST,
            "is not an id",
        ),
        (
            "/accounts/1/explode",
            &[],
            StatusCode::NOT_FOUND,
            "no account action",
        ),
        (
            "/accounts/1/concurrency",
            &[("max_concurrency", "0")],
            StatusCode::BAD_REQUEST,
            "from 1 to 1000",
        ),
        (
            "/accounts/1/concurrency",
            &[("max_concurrency", "ten")],
            StatusCode::BAD_REQUEST,
            "from 1 to 1000",
        ),
        (
            "/accounts/77/pause",
            &[],
            StatusCode::CONFLICT,
            "account 77 not found",
        ),
        (
            "/dead/requeue",
            &[("scope", "ids")],
            StatusCode::BAD_REQUEST,
            "no dead job selected",
        ),
        (
            "/lists/1/runs",
            &[("mode", "sideways")],
            StatusCode::BAD_REQUEST,
            "mode:",
        ),
    ];
    for (path, fields, status, message) in actions {
        let answer = dashboard.post(&op, path, fields).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(answer.body.contains(message), "{path}: {}", answer.body);
        assert!(
            answer.body.contains("nothing was changed"),
            "{path}: {}",
            answer.body
        );
    }
    let (cap, paused): (i32, bool) =
        sqlx::query_as("SELECT max_concurrency, paused FROM importer.accounts")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((cap, paused), (10, false));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn serve_refuses_to_start_without_users_and_listens_on_localhost_by_default(pool: PgPool) {
    let admin = Admin::new(&pool);
    let refused = admin.run(&["serve", "--listen", "127.0.0.1:0"]).code(1);
    assert!(
        refused.stderr.contains("no dashboard user"),
        "{}",
        refused.stderr
    );
    let short = admin
        .run(&["serve", "--users", "ana:operator:short"])
        .code(1);
    assert!(
        short.stderr.contains("at least 16 characters"),
        "{}",
        short.stderr
    );
    let help = admin.run(&["serve", "--help"]).ok();
    assert!(
        help.stdout.contains("[default: 127.0.0.1:8080]"),
        "{}",
        help.stdout
    );
    let users = format!("ana:operator:{OPERATOR_TOKEN}");
    let help = admin
        .clone_with_env("IMPORTER_DASHBOARD_USERS", &users)
        .run(&["serve", "--help"])
        .ok();
    assert!(
        !help.stdout.contains(OPERATOR_TOKEN),
        "--help hides the users' tokens"
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn cli_actions_are_audited_with_their_outcome_and_reads_are_not(pool: PgPool) {
    let admin = Admin::new(&pool).env("IMPORTER_ACTOR", "ops-oncall");
    admin.add_account("acme");
    admin.add_list("acme", "abc123");
    admin.run(&["accounts", "list"]).ok();
    admin.run(&["accounts", "pause", "acme"]).ok();
    admin.run(&["runs", "start", "acme/abc123"]).ok();
    admin.run(&["runs", "start", "acme/abc123"]).code(1);
    admin.run(&["accounts", "pause", "nobody"]).code(1);
    let rows = audit_rows(&pool).await;
    let expected = [
        ("accounts.add", "ok"),
        ("lists.add", "ok"),
        ("accounts.pause", "ok"),
        ("runs.start", "ok"),
        ("runs.start", "refused"),
        ("accounts.pause", "refused"),
    ];
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|(_, _, a, o)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(got, expected);
    assert!(rows
        .iter()
        .all(|(actor, via, ..)| actor == "ops-oncall" && via == "cli"));
    let detail: Option<String> = sqlx::query_scalar(
        "SELECT detail FROM importer.audit_log WHERE outcome = 'refused' ORDER BY id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let detail = detail.unwrap();
    assert!(detail.contains("is already active"), "{detail}");
    let secrets: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM importer.audit_log WHERE objects::text LIKE '%' || $1 || '%'",
    )
    .bind(DEST_KEY)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(secrets, 0);
}

/// The lists page starts an audit, and shows when each list was last audited, the drift it could
/// not heal and the members deleted in Mailchimp that the destination still holds.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_lists_page_shows_each_lists_last_audit_and_its_deleted_members(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    admin.add_list("acme", "abc123");
    let dashboard = Dashboard::start(&admin);
    let viewer = dashboard.sign_in(VIEWER_TOKEN).await;
    let before = dashboard.get(&viewer, "/lists").await;
    assert!(before.body.contains("never"), "{}", before.body);
    assert!(!before.body.contains("deleted in Mailchimp"));

    // An operator starts an audit from the page; the log records it.
    let op = dashboard.sign_in(OPERATOR_TOKEN).await;
    let started = dashboard.post(&op, "/lists/1/audit", &[]).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let audit = importer_core::runs::active_for_list(&pool, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audit.mode, importer_core::runs::RunMode::Audit);
    assert!(audit_rows(&pool)
        .await
        .iter()
        .any(|(_, via, action, outcome)| via == "dashboard"
            && action == "audit"
            && outcome == "ok"));
    importer_core::runs::cancel(&pool, audit.id).await.unwrap();
    sqlx::query(
        "INSERT INTO importer.audit_results
                (run_id, list_id, members_seen, missing, stale, healed, deferred, rejected,
                 deleted, deleted_new, mailchimp_requests, mailchimp_bytes, concluded_at)
         VALUES ($1, 1, 100, 3, 0, 3, 0, 0, 2, 2, 2, 8500, '2026-11-30T12:00:00Z')",
    )
    .bind(audit.id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO importer.deleted_members (list_id, member_id, noticed_by)
         VALUES (1, 'gone-1', $1), (1, 'gone-2', $1)",
    )
    .bind(audit.id)
    .execute(&pool)
    .await
    .unwrap();
    let after = dashboard.get(&viewer, "/lists").await;
    assert_eq!(after.status, StatusCode::OK);
    for expected in [
        "2026-11-30 12:00:00",
        "2 not healed",
        "2 deleted in Mailchimp",
    ] {
        assert!(
            after.body.contains(expected),
            "lacks {expected:?}: {}",
            after.body
        );
    }
}
