//! The `/_sim` control APIs of both simulators, as scripts and the admin demo use them.
#![allow(clippy::unwrap_used)]

use importer_sim::SimConfig;
use serde_json::{json, Value};

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        },
    )
}

#[tokio::test]
async fn the_mailchimp_control_api_seeds_mutates_and_inspects() {
    use reqwest::Method;
    let sim = importer_sim::start(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let base = sim.mailchimp_url().trim_end_matches("/3.0").to_owned();

    let (status, body) = call(
        &http,
        Method::POST,
        format!("{base}/_sim/keys"),
        Some(json!({"dc": "us6"})),
    )
    .await;
    assert_eq!(status, 201);
    let key = body["api_key"].as_str().unwrap().to_owned();
    assert!(key.ends_with("-us6") && key.len() == 32 + 4);
    let fixed = "00112233445566778899aabbccddeeff-us2";
    let (_, body) = call(
        &http,
        Method::POST,
        format!("{base}/_sim/keys"),
        Some(json!({"api_key": fixed})),
    )
    .await;
    assert_eq!(body["api_key"], fixed);

    let (status, _) = call(
        &http,
        Method::POST,
        format!("{base}/_sim/lists"),
        Some(json!({"api_key": key, "list_id": "abcdef0123", "members": 100})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, summary) = call(
        &http,
        Method::GET,
        format!("{base}/_sim/lists/abcdef0123"),
        None,
    )
    .await;
    assert_eq!(summary["members"], 100);

    for (op, n, after) in [
        ("modify", 5, 100),
        ("add", 7, 107),
        ("delete", 3, 104),
        ("archive", 2, 104),
    ] {
        let (status, body) = call(
            &http,
            Method::POST,
            format!("{base}/_sim/lists/abcdef0123/{op}"),
            Some(json!({"n": n})),
        )
        .await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(body["ids"].as_array().unwrap().len(), n, "{op}");
        assert_eq!(sim.mailchimp().member_count("abcdef0123"), Some(after));
    }
    let (status, _) = call(
        &http,
        Method::POST,
        format!("{base}/_sim/lists/abcdef0123/explode"),
        Some(json!({"n": 1})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &http,
        Method::POST,
        format!("{base}/_sim/lists/unknown/add"),
        Some(json!({"n": 1})),
    )
    .await;
    assert_eq!(status, 404);

    let (_, expected) = call(
        &http,
        Method::GET,
        format!("{base}/_sim/lists/abcdef0123/expected"),
        None,
    )
    .await;
    assert_eq!(
        expected,
        serde_json::to_value(sim.mailchimp().expected_records("abcdef0123")).unwrap()
    );

    let members = http
        .get(format!("{}/lists/abcdef0123/members", sim.mailchimp_url()))
        .basic_auth("x", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(members.status(), 200);
    let (_, stats) = call(
        &http,
        Method::GET,
        format!("{base}/_sim/keys/{key}/stats"),
        None,
    )
    .await;
    assert_eq!(
        (
            stats["requests"].as_u64(),
            stats["peak_concurrency"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let (status, _) = call(
        &http,
        Method::POST,
        format!("{base}/_sim/stats/reset"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(sim.mailchimp().key_stats(&key).requests, 0);

    let (_, faults) = call(
        &http,
        Method::PUT,
        format!("{base}/_sim/faults"),
        Some(json!({"burst_429": 1, "hang_ms": 5})),
    )
    .await;
    assert_eq!(
        (faults["burst_429"].as_u64(), faults["hang_ms"].as_u64()),
        (Some(1), Some(5))
    );
    let limited = http
        .get(format!("{}/lists/abcdef0123/members", sim.mailchimp_url()))
        .basic_auth("x", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let (_, faults) = call(&http, Method::GET, format!("{base}/_sim/faults"), None).await;
    assert_eq!(faults["burst_429"], 0, "the burst is spent");
    let (_, config) = call(&http, Method::GET, format!("{base}/_sim/config"), None).await;
    assert_eq!(config["max_connections_per_key"], 10);

    let (status, _) = call(
        &http,
        Method::DELETE,
        format!("{base}/_sim/keys/{key}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let revoked = http
        .get(format!("{}/ping", sim.mailchimp_url()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_destination_control_api_registers_keys_and_reports() {
    use reqwest::Method;
    let sim = importer_sim::start(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let base = sim.destination_url();

    let (status, _) = call(
        &http,
        Method::POST,
        format!("{base}/_sim/keys"),
        Some(json!({"key": "k1"})),
    )
    .await;
    assert_eq!(status, 204);
    let record =
        json!({"id": "a", "firstname": "", "lastname": "", "email": "a@x", "status": "pending"});
    let (status, _) = call(&http, Method::POST, format!("{base}/record"), None).await;
    assert_eq!(status, 401);
    let response = http
        .post(format!("{base}/record"))
        .header("Authorization", "k1")
        .json(&json!([record, record]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (_, stats) = call(
        &http,
        Method::GET,
        format!("{base}/_sim/stats?key=k1"),
        None,
    )
    .await;
    assert_eq!(
        stats,
        json!({"requests": 1, "records_received": 2, "distinct_ids": 1, "duplicates_received": 1})
    );
    let (_, records) = call(
        &http,
        Method::GET,
        format!("{base}/_sim/records?key=k1"),
        None,
    )
    .await;
    assert_eq!(records, json!([record]));
    let (_, verification) = call(&http, Method::POST, format!("{base}/_sim/verify?key=k1"),
        Some(json!([record, {"id": "b", "firstname": "", "lastname": "", "email": "b@x", "status": "pending"}]))).await;
    assert_eq!(verification["missing"], json!(["b"]));
    assert_eq!(verification["delivered"], 1);
    let (status, _) = call(
        &http,
        Method::GET,
        format!("{base}/_sim/verify?key=k1&mailchimp_list=nope"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let (_, faults) = call(
        &http,
        Method::PUT,
        format!("{base}/_sim/faults"),
        Some(json!({"short_count_rate": 1.0})),
    )
    .await;
    assert_eq!(faults["short_count_rate"], 1.0);
    assert_eq!(sim.destination().faults().short_count_rate, 1.0);

    let (status, _) = call(
        &http,
        Method::DELETE,
        format!("{base}/_sim/records?key=k1"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(sim.destination().records("k1").is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn seeded_accounts_are_served_from_the_start() {
    let config: SimConfig = toml::from_str(
        r#"
        seed = 5
        [[accounts]]
        api_key = "aaaabbbbccccddddeeeeffff00001111-us3"
        destination_key = "d1"
        lists = [{ id = "1111111111", members = 42 }]
        "#,
    )
    .unwrap();
    let sim = importer_sim::start(config).await.unwrap();
    let page: Value = reqwest::Client::new()
        .get(format!("{}/lists/1111111111/members", sim.mailchimp_url()))
        .basic_auth("u", Some("aaaabbbbccccddddeeeeffff00001111-us3"))
        .query(&[("fields", "total_items")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page, json!({"total_items": 42}));
    assert_eq!(sim.destination().stats("d1").requests, 0);
    let response = reqwest::Client::new()
        .post(format!("{}/record", sim.destination_url()))
        .header("Authorization", "d1")
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "the seeded destination key is registered"
    );
    sim.shutdown().await;
}
