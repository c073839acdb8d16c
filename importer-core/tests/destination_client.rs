//! The destination client against the destination simulator over real sockets: batching,
//! accepted counts, and retryable versus permanent errors.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use importer_core::destination::{DestinationClient, DestinationConfig, DestinationError};
use importer_core::mapping::Record;
use importer_core::secrets::Secret;
use importer_sim::{DestinationFaults, DestinationSimConfig, Sim, SimConfig};

const KEY: &str = "dest-key-0123456789abcdef";

async fn sim_with(destination: DestinationSimConfig) -> Sim {
    let sim = importer_sim::start(SimConfig {
        seed: 3,
        destination,
        ..Default::default()
    })
    .await
    .unwrap();
    sim.destination().add_key(KEY);
    sim
}

async fn sim() -> Sim {
    sim_with(DestinationSimConfig::default()).await
}

fn client(max_batch: usize) -> DestinationClient {
    DestinationClient::new(DestinationConfig {
        max_batch,
        ..Default::default()
    })
    .unwrap()
}

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            id: format!("{i:032x}"),
            firstname: if i % 3 == 0 {
                String::new()
            } else {
                "Zoë".into()
            },
            lastname: "Ångström".into(),
            email: format!("member{i}@example.com"),
            status: "subscribed".into(),
        })
        .collect()
}

fn key() -> Secret {
    Secret::from(KEY)
}

fn assert_no_key(err: &DestinationError) {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        texts.push(cause.to_string());
        source = cause.source();
    }
    for text in texts {
        assert!(!text.contains(KEY), "key leaked: {text}");
    }
}

#[tokio::test]
async fn records_are_stored_and_the_accepted_total_returned() {
    let sim = sim().await;
    let sent = records(2500);
    let accepted = client(1000)
        .post_records(&sim.destination_url(), &key(), &sent)
        .await
        .unwrap();
    assert_eq!(accepted, 2500);
    let stored = sim.destination().records(KEY);
    assert_eq!(stored.len(), 2500);
    let first = stored.iter().find(|r| r.id == sent[1].id).unwrap();
    assert_eq!(
        (
            &first.firstname,
            &first.lastname,
            &first.email,
            &first.status
        ),
        (
            &sent[1].firstname,
            &sent[1].lastname,
            &sent[1].email,
            &sent[1].status
        )
    );
}

#[tokio::test]
async fn batches_are_split_at_max_batch() {
    let sim = sim().await;
    let url = sim.destination_url();
    for (n, max_batch, requests) in [(2500, 1000, 3), (1000, 1000, 1), (10, 3, 4), (1, 1000, 1)] {
        sim.destination().clear(KEY);
        let accepted = client(max_batch)
            .post_records(&url, &key(), &records(n))
            .await
            .unwrap();
        assert_eq!(accepted, n);
        let stats = sim.destination().stats(KEY);
        assert_eq!(
            stats.requests, requests,
            "{n} records in batches of {max_batch}"
        );
        assert_eq!(stats.records_received, n as u64);
        assert_eq!(stats.distinct_ids, n);
    }
}

#[tokio::test]
async fn no_records_means_no_request() {
    let sim = sim().await;
    let accepted = client(1000)
        .post_records(&sim.destination_url(), &key(), &[])
        .await
        .unwrap();
    assert_eq!(accepted, 0);
    assert_eq!(sim.destination().stats(KEY).requests, 0);
}

#[tokio::test]
async fn resending_is_idempotent() {
    let sim = sim().await;
    let batch = records(50);
    let client = client(1000);
    for _ in 0..2 {
        client
            .post_records(&sim.destination_url(), &key(), &batch)
            .await
            .unwrap();
    }
    let stats = sim.destination().stats(KEY);
    assert_eq!((stats.distinct_ids, stats.duplicates_received), (50, 50));
}

#[tokio::test]
async fn a_short_count_is_a_retryable_error() {
    let sim = sim().await;
    sim.destination().set_faults(DestinationFaults {
        short_count_rate: 1.0,
        ..Default::default()
    });
    let err = client(1000)
        .post_records(&sim.destination_url(), &key(), &records(40))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DestinationError::ShortCount {
                sent: 40,
                accepted: 39
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_no_key(&err);
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized_and_permanent() {
    let sim = sim().await;
    let wrong = Secret::from("not-the-right-destination-key");
    let err = client(1000)
        .post_records(&sim.destination_url(), &wrong, &records(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DestinationError::Unauthorized { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("not-the-right-destination-key"));
    assert!(sim.destination().records(KEY).is_empty());
}

#[tokio::test]
async fn server_errors_are_retryable_and_keep_the_message() {
    let sim = sim().await;
    sim.destination().set_faults(DestinationFaults {
        error_rate: 1.0,
        ..Default::default()
    });
    for _ in 0..4 {
        let err = client(1000)
            .post_records(&sim.destination_url(), &key(), &records(5))
            .await
            .unwrap_err();
        match &err {
            DestinationError::Status {
                status, message, ..
            } => {
                assert!(*status == 500 || *status == 503, "{err:?}");
                assert!(!message.is_empty());
            }
            other => panic!("expected a 5xx, got {other:?}"),
        }
        assert!(err.is_retryable());
        assert_no_key(&err);
    }
}

/// Regression: a destination whose limit was below `max_batch` answered every page with 413,
/// a permanent error, so every window of every run was dead-lettered.
#[tokio::test]
async fn a_413_halves_the_batch_and_the_size_that_went_through_is_kept() {
    let sim = sim_with(DestinationSimConfig {
        max_batch: 300,
        ..Default::default()
    })
    .await;
    let client = client(1000);
    let accepted = client
        .post_records(&sim.destination_url(), &key(), &records(1000))
        .await
        .unwrap();
    assert_eq!(accepted, 1000);
    let stats = sim.destination().stats(KEY);
    assert_eq!(stats.distinct_ids, 1000);
    // 1000 refused, 500 refused, then 250 + 250 + 250 + 250.
    assert_eq!(stats.requests, 6);
    // The next post starts at the size that went through: no 413 again.
    client
        .post_records(&sim.destination_url(), &key(), &records(1000))
        .await
        .unwrap();
    assert_eq!(sim.destination().stats(KEY).requests, 6 + 4);
}

#[tokio::test]
async fn a_413_for_a_single_record_is_permanent() {
    let sim = sim_with(DestinationSimConfig {
        max_batch: 0,
        ..Default::default()
    })
    .await;
    let err = client(4)
        .post_records(&sim.destination_url(), &key(), &records(3))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DestinationError::PayloadTooLarge { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_no_key(&err);
    // 3 refused, 1 refused.
    assert_eq!(sim.destination().stats(KEY).requests, 2);
}

#[tokio::test]
async fn an_invalid_record_is_a_permanent_400_naming_its_index() {
    let sim = sim().await;
    let mut batch = records(5);
    batch[3].email = String::new();
    let err = client(1000)
        .post_records(&sim.destination_url(), &key(), &batch)
        .await
        .unwrap_err();
    match &err {
        DestinationError::BadRequest { message } => assert!(message.contains('3'), "{message}"),
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_hang_longer_than_the_timeout_is_a_retryable_timeout() {
    let sim = sim().await;
    sim.destination().set_faults(DestinationFaults {
        hang_rate: 1.0,
        hang: Duration::from_secs(5),
        ..Default::default()
    });
    let client = DestinationClient::new(DestinationConfig {
        timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .unwrap();
    let err = client
        .post_records(&sim.destination_url(), &key(), &records(5))
        .await
        .unwrap_err();
    assert!(matches!(err, DestinationError::Timeout(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_closed_port_is_a_retryable_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client(1000)
        .post_records(&url, &key(), &records(1))
        .await
        .unwrap_err();
    assert!(matches!(err, DestinationError::Connect(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_key_that_cannot_be_a_header_is_refused_before_sending() {
    let err = client(1000)
        .post_records("http://127.0.0.1:1", &Secret::from("bad\nkey"), &records(1))
        .await
        .unwrap_err();
    assert!(matches!(err, DestinationError::InvalidKey), "{err:?}");
    assert!(!err.is_retryable());
}
