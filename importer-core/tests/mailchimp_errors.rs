//! The Mailchimp client's error classes against the simulator's faults, over real sockets:
//! retryable (5xx, 429, timeout, reset, malformed bodies) versus permanent (401, 404, bad input).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use importer_core::mailchimp::{
    MailchimpAccount, MailchimpClient, MailchimpConfig, MailchimpError, MembersQuery,
};
use importer_core::secrets::Secret;
use importer_sim::{MailchimpFaults, MailchimpSimConfig, Sim, SimConfig};

const LIST: &str = "abc123";

struct Setup {
    sim: Sim,
    key: String,
    account: MailchimpAccount,
}

async fn setup_with(mailchimp: MailchimpSimConfig, client: MailchimpConfig) -> Setup {
    let sim = importer_sim::start(SimConfig {
        seed: 11,
        mailchimp,
        ..Default::default()
    })
    .await
    .unwrap();
    let key = sim.mailchimp().new_api_key("us6");
    sim.mailchimp().create_list(&key, LIST, 1500);
    let account = MailchimpClient::new(client)
        .unwrap()
        .account(&Secret::from(key.as_str()), Some(&sim.mailchimp_url()))
        .unwrap();
    Setup { sim, key, account }
}

async fn setup() -> Setup {
    setup_with(MailchimpSimConfig::default(), MailchimpConfig::default()).await
}

fn page() -> MembersQuery {
    MembersQuery::new(LIST)
}

/// Neither the message, its sources nor Debug may carry the key.
fn assert_no_key(err: &MailchimpError, key: &str) {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        texts.push(cause.to_string());
        source = cause.source();
    }
    for text in texts {
        assert!(!text.contains(key), "key leaked: {text}");
        assert!(!text.contains(&key[..16]), "key leaked: {text}");
    }
}

#[tokio::test]
async fn server_errors_are_retryable_and_keep_the_detail() {
    let s = setup().await;
    s.sim.mailchimp().set_faults(MailchimpFaults {
        error_rate: 1.0,
        ..Default::default()
    });
    for _ in 0..6 {
        let err = s.account.members(&page()).await.unwrap_err();
        assert!(
            matches!(
                err,
                MailchimpError::Status {
                    status: 500 | 503,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert!(!err.is_rate_limited());
        assert!(err.detail().is_some_and(|d| !d.is_empty()), "{err:?}");
        assert_no_key(&err, &s.key);
    }
    s.sim.mailchimp().set_faults(MailchimpFaults::default());
    assert_eq!(s.account.members(&page()).await.unwrap().total_items, 1500);
}

#[tokio::test]
async fn a_429_is_rate_limited_and_carries_retry_after() {
    let s = setup().await;
    s.sim.mailchimp().set_faults(MailchimpFaults {
        burst_429: 1,
        retry_after: Some(7),
        ..Default::default()
    });
    let err = s.account.members(&page()).await.unwrap_err();
    assert!(
        matches!(err, MailchimpError::TooManyRequests { status: 429, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable() && err.is_rate_limited());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.detail().is_some());
    assert_eq!(s.sim.mailchimp().key_stats(&s.key).responses_429, 1);
    // The burst is over.
    s.account.members(&page()).await.unwrap();
}

#[tokio::test]
async fn a_429_without_retry_after_leaves_the_delay_to_backoff() {
    let s = setup().await;
    s.sim.mailchimp().set_faults(MailchimpFaults {
        burst_429: 1,
        ..Default::default()
    });
    let err = s.account.members(&page()).await.unwrap_err();
    assert!(err.is_rate_limited());
    assert_eq!(err.retry_after(), None);
}

#[tokio::test]
async fn a_request_beyond_the_per_key_connection_limit_is_rate_limited() {
    let config = MailchimpSimConfig {
        max_connections_per_key: 2,
        ..Default::default()
    };
    let s = setup_with(config, MailchimpConfig::default()).await;
    s.sim.mailchimp().set_faults(MailchimpFaults {
        hang_rate: 1.0,
        hang: Duration::from_millis(1500),
        ..Default::default()
    });
    let held: Vec<_> = (0..2)
        .map(|_| {
            let account = s.account.clone();
            tokio::spawn(async move { account.members(&page()).await })
        })
        .collect();
    // Probe the simulator until both slots are taken, then the next request must be refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.sim.mailchimp().key_stats(&s.key).in_flight < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = s.account.ping().await.unwrap_err();
    assert!(err.is_rate_limited(), "{err:?}");
    assert!(err.detail().unwrap().contains("simultaneous"), "{err:?}");
    for task in held {
        assert_eq!(task.await.unwrap().unwrap().total_items, 1500);
    }
    assert_eq!(s.sim.mailchimp().key_stats(&s.key).peak_concurrency, 2);
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized_and_permanent() {
    let s = setup().await;
    let wrong = "ffffffffffffffffffffffffffffffff-us6";
    let account = MailchimpClient::new(MailchimpConfig::default())
        .unwrap()
        .account(&Secret::from(wrong), Some(&s.sim.mailchimp_url()))
        .unwrap();
    for err in [
        account.members(&page()).await.unwrap_err(),
        account.ping().await.unwrap_err(),
        account.count_members(LIST, None, None).await.unwrap_err(),
    ] {
        assert!(
            matches!(err, MailchimpError::Unauthorized { .. }),
            "{err:?}"
        );
        assert!(!err.is_retryable() && !err.is_rate_limited());
        assert_eq!(err.status(), Some(401));
        assert!(err.detail().unwrap().contains("API key"), "{err:?}");
        assert_no_key(&err, wrong);
    }
}

#[tokio::test]
async fn a_list_of_another_key_is_not_found_and_permanent() {
    let s = setup().await;
    let other = s.sim.mailchimp().new_api_key("us6");
    s.sim.mailchimp().create_list(&other, "theirs", 10);
    for err in [
        s.account
            .members(&MembersQuery::new("theirs"))
            .await
            .unwrap_err(),
        s.account.list_info("theirs").await.unwrap_err(),
        s.account
            .members(&MembersQuery::new("nosuchlist"))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, MailchimpError::NotFound { .. }), "{err:?}");
        assert!(!err.is_retryable());
        assert!(err.detail().is_some());
    }
}

#[tokio::test]
async fn a_hang_longer_than_the_timeout_is_a_retryable_timeout() {
    let client = MailchimpConfig {
        timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let s = setup_with(MailchimpSimConfig::default(), client).await;
    s.sim.mailchimp().set_faults(MailchimpFaults {
        hang_rate: 1.0,
        hang: Duration::from_secs(5),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let err = s.account.members(&page()).await.unwrap_err();
    assert!(matches!(err, MailchimpError::Timeout(_)), "{err:?}");
    assert!(err.is_retryable() && !err.is_rate_limited());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_no_key(&err, &s.key);
}

#[tokio::test]
async fn a_connection_reset_mid_body_is_retryable() {
    let s = setup().await;
    s.sim.mailchimp().set_faults(MailchimpFaults {
        reset_rate: 1.0,
        ..Default::default()
    });
    let err = s.account.members(&page()).await.unwrap_err();
    assert!(matches!(err, MailchimpError::Malformed { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_no_key(&err, &s.key);
}

#[tokio::test]
async fn malformed_and_truncated_json_are_retryable_errors_not_panics() {
    let s = setup().await;
    for faults in [
        MailchimpFaults {
            malformed_rate: 1.0,
            ..Default::default()
        },
        MailchimpFaults {
            truncated_rate: 1.0,
            ..Default::default()
        },
    ] {
        s.sim.mailchimp().set_faults(faults);
        for _ in 0..3 {
            let err = s.account.members(&page()).await.unwrap_err();
            assert!(matches!(err, MailchimpError::Malformed { .. }), "{err:?}");
            assert!(err.is_retryable());
        }
    }
}

#[tokio::test]
async fn a_closed_port_is_a_retryable_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/3.0", listener.local_addr().unwrap());
    drop(listener);
    let account = MailchimpClient::new(MailchimpConfig::default())
        .unwrap()
        .account(
            &Secret::from("0123456789abcdef0123456789abcdef-us6"),
            Some(&url),
        )
        .unwrap();
    let err = account.ping().await.unwrap_err();
    assert!(matches!(err, MailchimpError::Connect(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn bad_keys_list_ids_and_counts_are_refused_before_any_request() {
    let s = setup().await;
    let client = MailchimpClient::new(MailchimpConfig::default()).unwrap();
    let url = s.sim.mailchimp_url();
    // A key the simulator knows but whose shape is wrong never reaches it.
    for bad in [
        "not-a-key",
        "0123456789ABCDEF0123456789ABCDEG-us6",
        "0123456789abcdef0123456789abcdef",
    ] {
        s.sim.mailchimp().add_api_key(bad);
        let err = client.account(&Secret::from(bad), Some(&url)).unwrap_err();
        assert!(matches!(err, MailchimpError::InvalidKey(_)), "{err:?}");
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains(bad));
        assert_eq!(s.sim.mailchimp().key_stats(bad).requests, 0);
    }
    let before = s.sim.mailchimp().key_stats(&s.key).requests;
    for list in [
        "",
        "../lists",
        "abc/members",
        "abc?x=1",
        "a b",
        &"a".repeat(65),
    ] {
        let err = s
            .account
            .members(&MembersQuery::new(list))
            .await
            .unwrap_err();
        assert!(
            matches!(err, MailchimpError::InvalidListId),
            "{list}: {err:?}"
        );
        assert!(matches!(
            s.account.count_members(list, None, None).await,
            Err(MailchimpError::InvalidListId)
        ));
        assert!(matches!(
            s.account.list_info(list).await,
            Err(MailchimpError::InvalidListId)
        ));
    }
    for count in [0, 1001] {
        let q = MembersQuery { count, ..page() };
        let err = s.account.members(&q).await.unwrap_err();
        assert!(matches!(err, MailchimpError::InvalidQuery(_)), "{err:?}");
        assert!(!err.is_retryable());
    }
    assert_eq!(s.sim.mailchimp().key_stats(&s.key).requests, before);
    let bad_url = client.account(&Secret::from(s.key.as_str()), Some("not a url"));
    assert!(matches!(bad_url, Err(MailchimpError::InvalidBaseUrl(_))));
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_clear_retryable_error_not_an_allocation() {
    let s = setup_with(
        MailchimpSimConfig::default(),
        MailchimpConfig {
            max_body_bytes: 20_000,
            ..MailchimpConfig::default()
        },
    )
    .await;
    let err = s.account.members(&page()).await.unwrap_err();
    assert!(
        matches!(err, MailchimpError::BodyTooLarge { limit: 20_000 }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(err.to_string().contains("MAILCHIMP_MAX_BODY_BYTES"));
    let small = MembersQuery {
        count: 10,
        ..page()
    };
    assert_eq!(s.account.members(&small).await.unwrap().members.len(), 10);
}
