//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`, through
//! WebDriver), during real imports by in-process workers against the simulators: progress
//! advances on the overview without a reload, a failed run's dead jobs are requeued with the
//! button and its confirmation and the run completes, and a paused account gets no new claim.
//! Screenshots of the overview and of a run's page land in the test's target directory, and in
//! `docs/screenshots/` with `UPDATE_SCREENSHOTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dashboard::{Dashboard, OPERATOR_TOKEN};
use common::import::{run_status, wait_for_run, Import};
use fantoccini::{Client, ClientBuilder, Locator};
use importer_sim::DestinationFaults;
use sqlx::PgPool;

/// One browser at a time: two Chromiums on two cores make every wait flaky.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// ChromeDriver on a free port, and a WebDriver session in headless Chromium.
struct Browser {
    driver: Child,
    client: Client,
}

impl Browser {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (Debian's chromium-driver; .ci/run installs it)");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chromium(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1000"],
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start a Chromium session: {e}"),
            }
        };
        Browser { driver, client }
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    async fn sign_in(&self, base: &str) {
        self.client.goto(&format!("{base}/login")).await.unwrap();
        self.client
            .find(Locator::Id("token"))
            .await
            .unwrap()
            .send_keys(OPERATOR_TOKEN)
            .await
            .unwrap();
        self.client
            .find(Locator::Id("sign-in"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_for(
            || async { self.client.current_url().await.unwrap().path() == "/" },
            "the overview after sign-in",
        )
        .await;
    }

    /// The element, once the page that has it is loaded: a click's navigation takes its time,
    /// and `find` looks at whatever page is there now.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(60))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
    }

    async fn text(&self, css: &str) -> Option<String> {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.ok(),
            Err(_) => None,
        }
    }

    async fn wait_for<F, Fut>(&self, mut check: F, what: &str)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
        if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
            let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(name), &png).unwrap();
        }
    }
}

fn chromium() -> String {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or(&"/usr/bin/chromium")
    .to_string()
}

fn digits(text: &str) -> i64 {
    text.split('/')
        .next()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_overview_shows_a_real_import_advance_without_a_reload(pool: PgPool) {
    let _one = BROWSER.lock().await;
    let mut import = Import::start(&pool, 60_000, 600).await;
    import.spawn_worker(&pool, None, 1);
    import.spawn_worker(&pool, None, 2);
    let dashboard = Dashboard::start(&import.admin);
    let browser = Browser::start().await;
    browser.sign_in(&dashboard.base).await;
    import.admin.run(&["runs", "start", "acme/browser01"]).ok();

    // The live section refreshes itself: the run appears, then its records grow, with no goto.
    let mut seen: Vec<i64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.iter().filter(|n| **n > 0).count() < 3 {
        assert!(
            Instant::now() < deadline,
            "three increasing record counts on the overview: {seen:?}"
        );
        if let Some(text) = browser.text("#inflight tr[data-run] .records").await {
            let n = digits(&text);
            if seen.last() != Some(&n) {
                seen.push(n);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "progress only advances: {seen:?}"
    );
    assert_eq!(browser.client.current_url().await.unwrap().path(), "/");
    // The workers' section names the workers holding jobs (the section is replaced at every
    // refresh, and between two jobs a worker may hold none: read it until it shows one).
    browser
        .wait_for(
            || async {
                browser
                    .text("#workers")
                    .await
                    .is_some_and(|t| t.contains("browser-worker-"))
            },
            "a worker on the overview",
        )
        .await;
    browser.screenshot("overview.png").await;

    // The run's page follows it to the end.
    browser
        .client
        .goto(&format!("{}/runs/1", dashboard.base))
        .await
        .unwrap();
    browser
        .wait_for(
            || async { browser.text("#run-live-status").await.as_deref() == Some("completed") },
            "run 1 completed on its page",
        )
        .await;
    let imported = browser.text("#run-imported").await.unwrap();
    assert!(imported.starts_with("60,000"), "{imported}");
    browser
        .client
        .goto(&format!("{}/runs/1", dashboard.base))
        .await
        .unwrap();
    browser.screenshot("run.png").await;
    browser.stop().await;
    import.stop().await;
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_failed_runs_dead_jobs_are_requeued_with_the_button_and_the_run_completes(pool: PgPool) {
    let _one = BROWSER.lock().await;
    let mut import = Import::start(&pool, 6_000, 5).await;
    import.sim.destination().set_faults(DestinationFaults {
        error_rate: 1.0,
        ..DestinationFaults::default()
    });
    import.spawn_worker(&pool, None, 1);
    import.admin.run(&["runs", "start", "acme/browser01"]).ok();
    wait_for_run(&pool, 1, "failed", Duration::from_secs(90)).await;
    import
        .sim
        .destination()
        .set_faults(DestinationFaults::default());

    let dashboard = Dashboard::start(&import.admin);
    let browser = Browser::start().await;
    browser.sign_in(&dashboard.base).await;
    browser
        .client
        .goto(&format!("{}/dead?run=1", dashboard.base))
        .await
        .unwrap();
    let count = browser.text("#dead-count").await.unwrap();
    assert!(!count.starts_with('0'), "{count}");
    browser
        .client
        .find(Locator::Id("requeue-all"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let question = browser
        .element("#confirm-question")
        .await
        .text()
        .await
        .unwrap();
    assert!(question.contains("Requeue all"), "{question}");
    assert_eq!(
        run_status(&pool, 1).await,
        "failed",
        "nothing moves before the confirmation"
    );
    browser.element("#confirm").await.click().await.unwrap();
    browser
        .wait_for(
            || async { browser.text("#run-live-status").await.as_deref() == Some("completed") },
            "run 1 completed after the requeue",
        )
        .await;
    let flash = browser.text("#flash").await.unwrap_or_default();
    assert!(flash.contains("requeued"), "{flash}");
    assert_eq!(run_status(&pool, 1).await, "completed");
    browser.stop().await;
    import.stop().await;
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_paused_account_gets_no_new_claim(pool: PgPool) {
    let _one = BROWSER.lock().await;
    let mut import = Import::start(&pool, 60_000, 700).await;
    sqlx::raw_sql(
        "CREATE TABLE test_claims (job_id bigint, at timestamptz DEFAULT clock_timestamp());
         CREATE FUNCTION test_log_claim() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO test_claims (job_id) VALUES (NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER test_log_claim AFTER UPDATE ON importer.jobs FOR EACH ROW
          WHEN (NEW.lease_token IS DISTINCT FROM OLD.lease_token AND NEW.lease_token IS NOT NULL)
          EXECUTE FUNCTION test_log_claim();",
    )
    .execute(&pool)
    .await
    .unwrap();
    import.spawn_worker(&pool, None, 1);
    import.admin.run(&["runs", "start", "acme/browser01"]).ok();
    let claims = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM test_claims")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while claims().await < 3 {
        assert!(Instant::now() < deadline, "the import did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let dashboard = Dashboard::start(&import.admin);
    let browser = Browser::start().await;
    browser.sign_in(&dashboard.base).await;
    browser
        .client
        .goto(&format!("{}/accounts", dashboard.base))
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Css("tr[data-account='1'] button.pause"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for(
            || async {
                browser
                    .text("#flash")
                    .await
                    .is_some_and(|t| t.contains("paused"))
            },
            "the pause's message",
        )
        .await;
    let row = browser.text("tr[data-account='1']").await.unwrap();
    assert!(row.contains("paused"), "{row}");
    let paused_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Jobs already running finish; no job of the account is claimed after the pause.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM test_claims WHERE at > $1")
        .bind(paused_at)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(after, 0, "claims after the pause");
    let waiting: i64 =
        sqlx::query_scalar("SELECT count(*) FROM importer.jobs WHERE locked_until IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(waiting > 0, "jobs wait for the account to resume");
    assert_eq!(run_status(&pool, 1).await, "running");
    // Resuming through the page lets the import go on.
    browser
        .client
        .find(Locator::Css("tr[data-account='1'] button.resume"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let resumed_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM test_claims WHERE at > $1")
            .bind(resumed_at)
            .fetch_one(&pool)
            .await
            .unwrap();
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no claim after resuming");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.stop().await;
    import.stop().await;
}
