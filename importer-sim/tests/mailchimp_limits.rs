//! The simulated Mailchimp's connection limit, determinism, latency and injected faults.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{fixture, problem, LIST};
use importer_sim::{MailchimpFaults, MailchimpSimConfig, SimConfig};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_eleventh_simultaneous_request_of_a_key_gets_429() {
    // The latency holds the first ten requests open while the others arrive.
    let config = MailchimpSimConfig {
        latency_base: Duration::from_millis(1500),
        ..Default::default()
    };
    let f = fixture(20, config).await;
    let mc = f.sim.mailchimp();
    let other = mc.new_api_key("us6");
    mc.create_list(&other, "0000000002", 5);
    let url = format!("{}/lists/{LIST}/members", f.sim.mailchimp_url());
    let requests: Vec<_> = (0..15)
        .map(|_| {
            let request = f.http.get(&url).basic_auth("u", Some(&f.key)).send();
            tokio::spawn(request)
        })
        .collect();
    // Another key has its own ten connections.
    let other_url = format!("{}/lists/0000000002/members", f.sim.mailchimp_url());
    let other_response = f
        .http
        .get(&other_url)
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(other_response.status(), 200);

    let mut ok = 0;
    let mut limited = Vec::new();
    for request in requests {
        let response = request.await.unwrap().unwrap();
        match response.status().as_u16() {
            200 => ok += 1,
            429 => limited.push(response),
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!((ok, limited.len()), (10, 5));
    for response in limited {
        assert!(response.headers().get("retry-after").is_none());
        let body = problem(response, 429, "Too Many Requests").await;
        assert_eq!(
            body["detail"],
            "You have exceeded the limit of 10 simultaneous connections."
        );
    }
    let stats = mc.key_stats(&f.key);
    assert_eq!(stats.peak_concurrency, 10);
    assert_eq!(stats.responses_429, 5);
    assert_eq!(stats.requests, 15);
    assert_eq!(stats.in_flight, 0);
    assert_eq!(mc.key_stats(&other).peak_concurrency, 1);

    mc.reset_stats();
    assert_eq!(mc.key_stats(&f.key), importer_sim::KeyStats::default());
}

#[tokio::test]
async fn the_latency_model_is_base_plus_per_member() {
    let config = MailchimpSimConfig {
        latency_base: Duration::from_millis(100),
        latency_per_member: Duration::from_millis(2),
        ..Default::default()
    };
    let f = fixture(200, config).await;
    let started = Instant::now();
    f.members(&[("count", "100"), ("fields", "members.id")])
        .await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

async fn page_bytes(seed: u64) -> Vec<u8> {
    let sim = importer_sim::start(SimConfig {
        seed,
        ..Default::default()
    })
    .await
    .unwrap();
    let mc = sim.mailchimp();
    let key = mc.new_api_key("us6");
    mc.create_list(&key, "deadbeef00", 3000);
    let url = format!("{}/lists/deadbeef00/members", sim.mailchimp_url());
    let response = reqwest::Client::new()
        .get(url)
        .basic_auth("u", Some(&key))
        .query(&[
            ("count", "1000"),
            ("offset", "1500"),
            ("sort_field", "last_changed"),
        ])
        .send()
        .await
        .unwrap();
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn the_same_seed_gives_identical_pages() {
    let a = page_bytes(7).await;
    let b = page_bytes(7).await;
    assert!(a == b, "same seed, same bytes");
    assert!(a != page_bytes(8).await, "another seed, other members");
}

#[tokio::test]
async fn error_faults_answer_500_and_503_problem_json() {
    let f = fixture(10, MailchimpSimConfig::default()).await;
    f.sim.mailchimp().set_faults(MailchimpFaults {
        error_rate: 1.0,
        ..Default::default()
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let response = f.get(&format!("lists/{LIST}/members"), &[]).await;
        let status = response.status().as_u16();
        let title = if status == 500 {
            "Internal Server Error"
        } else {
            "Service Unavailable"
        };
        problem(response, status, title).await;
        seen.insert(status);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [500, 503]);
    // Faults apply to the members endpoint only.
    assert_eq!(f.get("ping", &[]).await.status(), 200);
}

#[tokio::test]
async fn bursts_of_429_carry_retry_after_when_asked() {
    let f = fixture(10, MailchimpSimConfig::default()).await;
    let path = format!("lists/{LIST}/members");
    let mc = f.sim.mailchimp();
    mc.set_faults(MailchimpFaults {
        burst_429: 2,
        retry_after: Some(7),
        ..Default::default()
    });
    for _ in 0..2 {
        let response = f.get(&path, &[]).await;
        assert_eq!(response.headers()["retry-after"], "7");
        problem(response, 429, "Too Many Requests").await;
    }
    assert_eq!(f.get(&path, &[]).await.status(), 200, "the burst is over");
    assert_eq!(mc.key_stats(&f.key).responses_429, 2);

    mc.set_faults(MailchimpFaults {
        burst_429: 1,
        ..Default::default()
    });
    let response = f.get(&path, &[]).await;
    assert_eq!(response.status(), 429);
    assert!(
        response.headers().get("retry-after").is_none(),
        "no header by default"
    );

    let f = fixture(
        10,
        MailchimpSimConfig {
            retry_after_on_429: Some(3),
            ..Default::default()
        },
    )
    .await;
    f.sim.mailchimp().set_faults(MailchimpFaults {
        burst_429: 1,
        ..Default::default()
    });
    let response = f.get(&path, &[]).await;
    assert_eq!(response.headers()["retry-after"], "3", "the config's value");
}

#[tokio::test]
async fn a_hang_outlives_the_client_timeout_and_keeps_its_connection_counted() {
    let f = fixture(10, MailchimpSimConfig::default()).await;
    let mc = f.sim.mailchimp();
    mc.set_faults(MailchimpFaults {
        hang_rate: 1.0,
        hang: Duration::from_millis(1500),
        ..Default::default()
    });
    let url = format!("{}/lists/{LIST}/members", f.sim.mailchimp_url());
    let err = f
        .http
        .get(&url)
        .basic_auth("u", Some(&f.key))
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(
        mc.key_stats(&f.key).in_flight,
        1,
        "still open on the server"
    );
    // The slot is released once the server would have answered.
    let deadline = Instant::now() + Duration::from_secs(5);
    while mc.key_stats(&f.key).in_flight > 0 {
        assert!(Instant::now() < deadline, "slot never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    mc.set_faults(MailchimpFaults::default());
    assert_eq!(
        f.get(&format!("lists/{LIST}/members"), &[]).await.status(),
        200
    );
}

#[tokio::test]
async fn a_reset_aborts_the_body_mid_way() {
    let f = fixture(50, MailchimpSimConfig::default()).await;
    f.sim.mailchimp().set_faults(MailchimpFaults {
        reset_rate: 1.0,
        ..Default::default()
    });
    let response = f
        .get(&format!("lists/{LIST}/members"), &[("count", "50")])
        .await;
    assert_eq!(response.status(), 200);
    let err = response.bytes().await.unwrap_err();
    assert!(
        err.is_body() || err.is_decode() || err.is_request(),
        "{err:?}"
    );
    assert_eq!(f.sim.mailchimp().key_stats(&f.key).in_flight, 0);
}

#[tokio::test]
async fn malformed_and_truncated_bodies_are_200_but_not_json() {
    let f = fixture(20, MailchimpSimConfig::default()).await;
    let path = format!("lists/{LIST}/members");
    let good = f.get(&path, &[]).await.bytes().await.unwrap();
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
        f.sim.mailchimp().set_faults(faults);
        let response = f.get(&path, &[]).await;
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.unwrap();
        assert!(serde_json::from_slice::<Value>(&body).is_err());
        assert!(body.len() <= good.len());
    }
}
