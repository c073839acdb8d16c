//! Shared helpers of the simulator's integration tests: start a seeded sim, call it over HTTP.
#![allow(dead_code, clippy::unwrap_used)]

use importer_sim::{MailchimpSimConfig, Sim, SimConfig};
use serde_json::Value;

/// The list every helper-created sim has.
pub const LIST: &str = "a1b2c3d4e5";

/// A running sim with one key owning `LIST` of `members` members.
pub struct Fixture {
    pub sim: Sim,
    pub key: String,
    pub http: reqwest::Client,
}

pub async fn fixture(members: usize, mailchimp: MailchimpSimConfig) -> Fixture {
    let sim = importer_sim::start(SimConfig {
        seed: 11,
        mailchimp,
        ..Default::default()
    })
    .await
    .unwrap();
    let key = sim.mailchimp().new_api_key("us6");
    sim.mailchimp().create_list(&key, LIST, members);
    Fixture {
        sim,
        key,
        http: reqwest::Client::new(),
    }
}

impl Fixture {
    /// `GET {base}/{path}` with the key as Basic auth password.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(format!("{}/{path}", self.sim.mailchimp_url()))
            .basic_auth("anystring", Some(&self.key))
            .query(query)
            .send()
            .await
            .unwrap()
    }

    /// A members page that must be 200.
    pub async fn members(&self, query: &[(&str, &str)]) -> Value {
        let response = self.get(&format!("lists/{LIST}/members"), query).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Every member of the list (id, last_changed, status, timestamps) in insertion order.
    pub async fn all(&self, extra: &[(&str, &str)]) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let offset = out.len().to_string();
            let mut query = vec![
                ("count", "1000"),
                ("offset", offset.as_str()),
                (
                    "fields",
                    "members.id,members.last_changed,members.status,members.timestamp_opt,members.timestamp_signup,total_items",
                ),
            ];
            query.extend_from_slice(extra);
            let page = self.members(&query).await;
            let members = page["members"].as_array().unwrap().clone();
            let total = page["total_items"].as_u64().unwrap() as usize;
            out.extend(members);
            if out.len() >= total {
                return out;
            }
        }
    }
}

/// The ids of a page.
pub fn ids(page: &Value) -> Vec<String> {
    page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts a Mailchimp problem+json answer and returns its body.
pub async fn problem(response: reqwest::Response, status: u16, title: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{content_type}"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["title"], title, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["instance"], request_id.as_str());
    assert_eq!(
        body["type"],
        "https://mailchimp.com/developer/marketing/docs/errors/"
    );
    body
}
