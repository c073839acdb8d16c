//! The simulated destination `POST /record` over real sockets: auth, validation, limits,
//! upserts, faults and verification against the Mailchimp simulator.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use importer_sim::{DestinationFaults, DestinationSimConfig, Record, Sim, SimConfig};
use serde_json::{json, Value};

const KEY: &str = "dest-key-1";

async fn sim(max_batch: usize) -> Sim {
    let sim = importer_sim::start(SimConfig {
        seed: 3,
        destination: DestinationSimConfig {
            max_batch,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    sim.destination().add_key(KEY);
    sim
}

fn record(id: &str, first: &str) -> Value {
    json!({"id": id, "firstname": first, "lastname": "Łukasiewicz", "email": format!("{id}@example.com"), "status": "subscribed"})
}

async fn post(sim: &Sim, header: &str, key: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/record", sim.destination_url()))
        .header(header, key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn records_are_upserted_by_id_and_duplicates_counted() {
    let sim = sim(1000).await;
    let (status, body) = post(
        &sim,
        "Authorization",
        KEY,
        &json!([record("a", "Zoë"), record("b", "")]),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "OK", "response": 2}))
    );
    let (status, body) = post(
        &sim,
        "Authorization",
        KEY,
        &json!([record("a", "Ann"), record("c", "渡辺")]),
    )
    .await;
    assert_eq!((status, body["response"].clone()), (200, json!(2)));

    let d = sim.destination();
    let records = d.records(KEY);
    assert_eq!(
        records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(records[0].firstname, "Ann", "last write wins");
    let stats = d.stats(KEY);
    assert_eq!(
        (
            stats.requests,
            stats.records_received,
            stats.distinct_ids,
            stats.duplicates_received
        ),
        (2, 4, 3, 1)
    );
    assert!(d.records("another-key").is_empty(), "records are per key");
}

#[tokio::test]
async fn the_british_authorisation_header_is_accepted() {
    let sim = sim(1000).await;
    let (status, _) = post(&sim, "Authorisation", KEY, &json!([record("a", "x")])).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_missing_or_unknown_key_is_401_json() {
    let sim = sim(1000).await;
    let response = reqwest::Client::new()
        .post(format!("{}/record", sim.destination_url()))
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "error");
    let (status, body) = post(&sim, "Authorization", "wrong", &json!([])).await;
    assert_eq!((status, body["status"].as_str()), (401, Some("error")));
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn invalid_records_are_400_naming_the_first_bad_index() {
    let sim = sim(1000).await;
    let good = record("a", "x");
    let mut no_email = record("b", "x");
    no_email["email"] = json!("");
    let mut bad_status = record("c", "x");
    bad_status["status"] = json!("deleted");
    let mut null_name = record("d", "x");
    null_name["lastname"] = Value::Null;
    for (body, index) in [
        (json!([good, no_email]), 1),
        (json!([good, good, bad_status]), 2),
        (json!([null_name]), 0),
        (json!([good, {"id": "x"}]), 1),
    ] {
        let (status, response) = post(&sim, "Authorization", KEY, &body).await;
        assert_eq!(status, 400, "{response}");
        let message = response["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("record {index}:")),
            "{message}"
        );
    }
    let (status, _) = post(&sim, "Authorization", KEY, &json!({"id": "a"})).await;
    assert_eq!(status, 400);
    assert!(
        sim.destination().records(KEY).is_empty(),
        "nothing stored from a bad batch"
    );
}

#[tokio::test]
async fn batches_above_the_maximum_are_413() {
    let sim = sim(3).await;
    let four: Vec<Value> = (0..4).map(|i| record(&i.to_string(), "x")).collect();
    let (status, body) = post(&sim, "Authorization", KEY, &json!(four)).await;
    assert_eq!((status, body["status"].as_str()), (413, Some("error")));
    let (status, _) = post(&sim, "Authorization", KEY, &json!(four[..3])).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_short_count_stores_one_record_less_and_errors_store_nothing() {
    let sim = sim(1000).await;
    let d = sim.destination();
    d.set_faults(DestinationFaults {
        short_count_rate: 1.0,
        ..Default::default()
    });
    let (status, body) = post(
        &sim,
        "Authorization",
        KEY,
        &json!([record("a", "x"), record("b", "y")]),
    )
    .await;
    assert_eq!((status, body["response"].clone()), (200, json!(1)));
    assert_eq!(d.records(KEY).len(), 1);

    d.set_faults(DestinationFaults {
        error_rate: 1.0,
        ..Default::default()
    });
    let mut statuses = std::collections::BTreeSet::new();
    for i in 0..20 {
        let (status, body) = post(
            &sim,
            "Authorization",
            KEY,
            &json!([record(&format!("e{i}"), "x")]),
        )
        .await;
        assert_eq!(body["status"], "error");
        statuses.insert(status);
    }
    assert_eq!(statuses.into_iter().collect::<Vec<_>>(), [500, 503]);
    assert_eq!(d.records(KEY).len(), 1);
}

#[tokio::test]
async fn a_hang_delays_the_answer() {
    let sim = sim(1000).await;
    sim.destination().set_faults(DestinationFaults {
        hang_rate: 1.0,
        hang: Duration::from_millis(400),
        ..Default::default()
    });
    let started = Instant::now();
    let (status, _) = post(&sim, "Authorization", KEY, &json!([record("a", "x")])).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn verify_reports_missing_stale_and_unexpected_records() {
    let sim = sim(1000).await;
    let mc = sim.mailchimp();
    let key = mc.new_api_key("us6");
    mc.create_list(&key, "0123456789", 30);
    let expected = mc.expected_records("0123456789");
    assert_eq!(expected.len(), 30);
    assert!(expected
        .iter()
        .all(|r| !r.id.is_empty() && !r.email.is_empty()));

    let mut sent: Vec<Record> = expected[..25].to_vec();
    sent[3].firstname = "Stale".into();
    sent.push(Record {
        id: "extra".into(),
        ..expected[0].clone()
    });
    let (status, _) = post(
        &sim,
        "Authorization",
        KEY,
        &serde_json::to_value(&sent).unwrap(),
    )
    .await;
    assert_eq!(status, 200);

    let v = sim.destination().verify(KEY, &expected);
    assert_eq!((v.expected, v.delivered), (30, 25));
    let mut missing: Vec<String> = expected[25..].iter().map(|r| r.id.clone()).collect();
    missing.sort();
    assert_eq!(v.missing, missing);
    assert_eq!(v.stale, [expected[3].id.clone()]);
    assert_eq!(v.unexpected, ["extra"]);
    assert!(!v.is_complete());

    // The same report over HTTP, against the in-process Mailchimp simulator.
    let url = format!("{}/_sim/verify", sim.destination_url());
    let http: Value = reqwest::Client::new()
        .get(&url)
        .query(&[("key", KEY), ("mailchimp_list", "0123456789")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http, serde_json::to_value(&v).unwrap());

    // Modifying members in Mailchimp makes delivered records stale.
    let all: Vec<Record> = expected.clone();
    post(
        &sim,
        "Authorization",
        KEY,
        &serde_json::to_value(&all).unwrap(),
    )
    .await;
    assert!(sim
        .destination()
        .verify(KEY, &mc.expected_records("0123456789"))
        .is_complete());
    let modified = mc.modify_members("0123456789", 4);
    let v = sim
        .destination()
        .verify(KEY, &mc.expected_records("0123456789"));
    let mut modified_sorted = modified.clone();
    modified_sorted.sort();
    assert_eq!(v.stale, modified_sorted);
}
