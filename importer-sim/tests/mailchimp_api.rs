//! The simulated Mailchimp members API over real sockets: shape, paging, filters, sorting,
//! `fields`, validation and auth.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::{fixture, ids, problem, LIST};
use importer_sim::MailchimpSimConfig;
use md5::{Digest, Md5};
use serde_json::Value;

fn lc(m: &Value) -> &str {
    m["last_changed"].as_str().unwrap()
}

/// A `last_changed` second shared by several members (a bulk import).
fn shared_second(all: &[Value]) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in all {
        *counts.entry(lc(m)).or_default() += 1;
    }
    let mut shared: Vec<(&str, usize)> = counts.into_iter().filter(|(_, n)| *n > 1).collect();
    shared.sort();
    shared[shared.len() / 2].0.to_owned()
}

#[tokio::test]
async fn members_have_the_full_mailchimp_shape() {
    let f = fixture(50, MailchimpSimConfig::default()).await;
    let response = f.get(&format!("lists/{LIST}/members"), &[]).await;
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let bytes = response.bytes().await.unwrap();
    let page: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(page["total_items"], 50);
    assert_eq!(page["list_id"], LIST);
    assert_eq!(
        page["members"].as_array().unwrap().len(),
        10,
        "count defaults to 10"
    );
    let per_member = bytes.len() / 10;
    assert!(
        (2000..5000).contains(&per_member),
        "{per_member} bytes per member"
    );
    for m in page["members"].as_array().unwrap() {
        for key in [
            "id",
            "email_address",
            "unique_email_id",
            "contact_id",
            "full_name",
            "web_id",
            "email_type",
            "status",
            "consents_to_one_to_one_messaging",
            "merge_fields",
            "interests",
            "stats",
            "ip_signup",
            "timestamp_signup",
            "ip_opt",
            "timestamp_opt",
            "member_rating",
            "last_changed",
            "language",
            "vip",
            "email_client",
            "location",
            "source",
            "tags_count",
            "tags",
            "list_id",
            "_links",
        ] {
            assert!(m.get(key).is_some(), "member lacks {key}: {m}");
        }
        let email = m["email_address"].as_str().unwrap();
        assert_eq!(
            m["id"],
            format!("{:x}", Md5::digest(email.to_lowercase().as_bytes()))
        );
        assert!(m["merge_fields"]["FNAME"].is_string() && m["merge_fields"]["LNAME"].is_string());
        assert_eq!(m["_links"].as_array().unwrap().len(), 10);
        assert_eq!(lc(m).len(), "2022-02-23T19:31:54+00:00".len());
        assert!(lc(m).ends_with("+00:00"));
    }
}

#[tokio::test]
async fn offset_and_count_page_through_a_stable_insertion_order() {
    let f = fixture(2500, MailchimpSimConfig::default()).await;
    let first = ids(&f.members(&[("count", "1000"), ("offset", "0")]).await);
    let second = ids(&f.members(&[("count", "1000"), ("offset", "1000")]).await);
    let mut paged = Vec::new();
    for offset in (0..1200).step_by(300) {
        let page = f
            .members(&[("count", "300"), ("offset", &offset.to_string())])
            .await;
        assert_eq!(page["total_items"], 2500);
        paged.extend(ids(&page));
    }
    assert_eq!(paged[..1000], first[..]);
    assert_eq!(paged[1000..], second[..200]);
    let past_end = f.members(&[("offset", "2500")]).await;
    assert!(past_end["members"].as_array().unwrap().is_empty());
    assert_eq!(past_end["total_items"], 2500);

    // Modified and archived members keep their place; added ones go last; deleted ones vanish.
    let before: Vec<String> = f
        .all(&[])
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let mc = f.sim.mailchimp();
    mc.modify_members(LIST, 40);
    mc.archive_members(LIST, 5);
    let deleted = mc.delete_members(LIST, 3);
    let added = mc.add_members(LIST, 2);
    let after: Vec<String> = f
        .all(&[])
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<String> = before
        .into_iter()
        .filter(|id| !deleted.contains(id))
        .collect();
    expected.extend(added);
    assert_eq!(after, expected);
}

#[tokio::test]
async fn since_last_changed_is_strict_by_default_and_inclusive_by_switch() {
    for inclusive in [false, true] {
        let f = fixture(
            3000,
            MailchimpSimConfig {
                inclusive_since: inclusive,
                ..Default::default()
            },
        )
        .await;
        let all = f.all(&[]).await;
        let t = shared_second(&all);
        let expected: Vec<&str> = all
            .iter()
            .filter(|m| {
                if inclusive {
                    lc(m) >= t.as_str()
                } else {
                    lc(m) > t.as_str()
                }
            })
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        let got = f.all(&[("since_last_changed", &t)]).await;
        let got: Vec<&str> = got.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(got, expected, "inclusive = {inclusive}");
    }
}

#[tokio::test]
async fn before_last_changed_is_strict_and_combines_with_since_and_status() {
    let f = fixture(3000, MailchimpSimConfig::default()).await;
    let all = f.all(&[]).await;
    let before = shared_second(&all);
    let since = lc(&all[all.len() / 10]).to_owned();
    let expected: Vec<&Value> = all
        .iter()
        .filter(|m| {
            lc(m) < before.as_str() && lc(m) > since.as_str() && m["status"] == "subscribed"
        })
        .collect();
    assert!(!expected.is_empty());
    let page = f
        .members(&[
            ("before_last_changed", &before),
            ("since_last_changed", &since),
            ("status", "subscribed"),
            ("count", "5"),
        ])
        .await;
    assert_eq!(
        page["total_items"],
        expected.len(),
        "total_items counts the whole filtered set"
    );
    let want: Vec<&str> = expected
        .iter()
        .take(5)
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids(&page), want);
}

#[tokio::test]
async fn status_filter_returns_only_that_status() {
    let f = fixture(2000, MailchimpSimConfig::default()).await;
    let all = f.all(&[]).await;
    for status in [
        "subscribed",
        "unsubscribed",
        "cleaned",
        "pending",
        "transactional",
        "archived",
    ] {
        let got = f.all(&[("status", status)]).await;
        assert!(got.iter().all(|m| m["status"] == status));
        assert_eq!(
            got.len(),
            all.iter().filter(|m| m["status"] == status).count()
        );
    }
}

#[tokio::test]
async fn sorting_orders_by_the_field_and_ties_keep_insertion_order() {
    let f = fixture(3000, MailchimpSimConfig::default()).await;
    let all = f.all(&[]).await;
    let position: HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(i, m)| (m["id"].as_str().unwrap(), i))
        .collect();
    for field in ["last_changed", "timestamp_opt", "timestamp_signup"] {
        for dir in ["ASC", "DESC"] {
            let sorted = f.all(&[("sort_field", field), ("sort_dir", dir)]).await;
            assert_eq!(sorted.len(), all.len());
            for pair in sorted.windows(2) {
                let (a, b) = (
                    pair[0][field].as_str().unwrap(),
                    pair[1][field].as_str().unwrap(),
                );
                if a == b {
                    let (pa, pb) = (
                        position[pair[0]["id"].as_str().unwrap()],
                        position[pair[1]["id"].as_str().unwrap()],
                    );
                    assert!(pa < pb, "ties keep insertion order ({field} {dir})");
                } else if dir == "ASC" {
                    assert!(a < b, "{field} ASC: {a} then {b}");
                } else {
                    assert!(a > b, "{field} DESC: {a} then {b}");
                }
            }
        }
    }
}

async fn tie_orders(unstable: bool) -> (Vec<String>, Vec<String>) {
    // One page holds the whole list, so both requests return the same members.
    let f = fixture(
        1000,
        MailchimpSimConfig {
            unstable_ties: unstable,
            ..Default::default()
        },
    )
    .await;
    let q = [
        ("sort_field", "last_changed"),
        ("count", "1000"),
        ("fields", "members.id"),
    ];
    (ids(&f.members(&q).await), ids(&f.members(&q).await))
}

#[tokio::test]
async fn unstable_ties_switch_changes_tie_order_between_requests() {
    let (a, b) = tie_orders(false).await;
    assert!(a == b, "stable by default");
    let (a, b) = tie_orders(true).await;
    assert!(a != b, "ties reshuffled per request");
    let (mut sa, mut sb) = (a.clone(), b.clone());
    sa.sort();
    sb.sort();
    assert!(sa == sb, "same members, different tie order");
}

#[tokio::test]
async fn fields_keep_only_named_paths_and_shrink_the_bytes() {
    let f = fixture(100, MailchimpSimConfig::default()).await;
    let path = format!("lists/{LIST}/members");
    let full = f
        .get(&path, &[("count", "100")])
        .await
        .bytes()
        .await
        .unwrap();
    let fields = "members.id,members.email_address,members.status,members.merge_fields.FNAME,members.merge_fields.LNAME,total_items";
    let tight = f
        .get(&path, &[("count", "100"), ("fields", fields)])
        .await
        .bytes()
        .await
        .unwrap();
    assert!(
        tight.len() * 10 < full.len(),
        "{} vs {} bytes",
        tight.len(),
        full.len()
    );
    let page: Value = serde_json::from_slice(&tight).unwrap();
    let keys: Vec<&String> = page.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "only members and total_items: {keys:?}");
    for m in page["members"].as_array().unwrap() {
        let mut keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["email_address", "id", "merge_fields", "status"]);
        assert_eq!(m["merge_fields"].as_object().unwrap().len(), 2);
    }

    let without_total = f.members(&[("fields", "members.id")]).await;
    assert!(
        without_total.get("total_items").is_none(),
        "total_items omitted unless named"
    );

    let count = f
        .members(&[("count", "1"), ("fields", "total_items")])
        .await;
    assert_eq!(count, serde_json::json!({"total_items": 100}));
}

#[tokio::test]
async fn exclude_fields_drop_paths_at_any_depth() {
    let f = fixture(20, MailchimpSimConfig::default()).await;
    let page = f
        .members(&[(
            "exclude_fields",
            "members._links,_links,members.merge_fields.ADDRESS,members.location.latitude",
        )])
        .await;
    assert!(page.get("_links").is_none());
    assert_eq!(page["total_items"], 20);
    for m in page["members"].as_array().unwrap() {
        assert!(m.get("_links").is_none());
        assert!(m["merge_fields"].get("ADDRESS").is_none());
        assert!(m["merge_fields"].get("FNAME").is_some());
        assert!(m["location"].get("latitude").is_none());
        assert!(m["location"].get("longitude").is_some());
    }
}

#[tokio::test]
async fn count_above_1000_is_400_unless_clamped() {
    let f = fixture(1500, MailchimpSimConfig::default()).await;
    let r = f
        .get(&format!("lists/{LIST}/members"), &[("count", "1001")])
        .await;
    let body = problem(r, 400, "Invalid Resource").await;
    assert_eq!(body["errors"][0]["field"], "count");

    let f = fixture(
        1500,
        MailchimpSimConfig {
            clamp_count: true,
            ..Default::default()
        },
    )
    .await;
    let page = f
        .members(&[("count", "5000"), ("fields", "members.id")])
        .await;
    assert_eq!(page["members"].as_array().unwrap().len(), 1000);
}

#[tokio::test]
async fn fractional_timestamps_are_400_only_in_strict_mode() {
    let q = [("since_last_changed", "2015-01-01T00:00:00.250+00:00")];
    let f = fixture(10, MailchimpSimConfig::default()).await;
    let r = f.get(&format!("lists/{LIST}/members"), &q).await;
    problem(r, 400, "Invalid Resource").await;

    let f = fixture(
        10,
        MailchimpSimConfig {
            strict_timestamps: false,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(f.members(&q).await["total_items"], 10);
}

#[tokio::test]
async fn invalid_parameters_are_400_problem_json() {
    let f = fixture(10, MailchimpSimConfig::default()).await;
    let path = format!("lists/{LIST}/members");
    for (name, value) in [
        ("count", "ten"),
        ("offset", "-1"),
        ("since_last_changed", "yesterday"),
        ("before_last_changed", "2020-13-01T00:00:00+00:00"),
        ("sort_field", "email"),
        ("sort_dir", "UP"),
        ("status", "gone"),
    ] {
        let body = problem(
            f.get(&path, &[(name, value)]).await,
            400,
            "Invalid Resource",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], name);
    }
}

#[tokio::test]
async fn auth_accepts_basic_bearer_and_oauth_and_refuses_the_rest() {
    let f = fixture(10, MailchimpSimConfig::default()).await;
    let url = format!("{}/lists/{LIST}/members", f.sim.mailchimp_url());
    for auth in [format!("Bearer {}", f.key), format!("OAuth {}", f.key)] {
        let r = f
            .http
            .get(&url)
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    let r = f.http.get(&url).send().await.unwrap();
    problem(r, 401, "API Key Missing").await;

    let r = f
        .http
        .get(&url)
        .bearer_auth("0123456789abcdef0123456789abcdef-us6")
        .send()
        .await
        .unwrap();
    let body = problem(r, 401, "API Key Invalid").await;
    assert_eq!(
        body["detail"],
        "Your API key may be invalid, or you've attempted to access the wrong datacenter."
    );

    f.sim.mailchimp().revoke_api_key(&f.key);
    let r = f
        .http
        .get(&url)
        .basic_auth("x", Some(&f.key))
        .send()
        .await
        .unwrap();
    problem(r, 401, "API Key Invalid").await;
}

#[tokio::test]
async fn lists_of_another_key_and_unknown_lists_are_404() {
    let f = fixture(10, MailchimpSimConfig::default()).await;
    let mc = f.sim.mailchimp();
    let other = mc.new_api_key("us1");
    mc.create_list(&other, "ffff000011", 5);
    for path in [
        "lists/ffff000011/members",
        "lists/ffff000011",
        "lists/nope/members",
        "campaigns",
    ] {
        problem(f.get(path, &[]).await, 404, "Resource Not Found").await;
    }
}

#[tokio::test]
async fn ping_and_list_info_answer_like_mailchimp() {
    let f = fixture(200, MailchimpSimConfig::default()).await;
    let ping: Value = f.get("ping", &[]).await.json().await.unwrap();
    assert_eq!(ping["health_status"], "Everything's Chimpy!");

    let info: Value = f
        .get(&format!("lists/{LIST}"), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["id"], LIST);
    let subscribed = f.all(&[("status", "subscribed")]).await.len();
    assert_eq!(info["stats"]["member_count"], subscribed);
    assert_eq!(info["stats"]["total_contacts"], 200);

    let trimmed: Value = f
        .get(
            &format!("lists/{LIST}"),
            &[("fields", "stats.member_count")],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        trimmed,
        serde_json::json!({"stats": {"member_count": subscribed}})
    );
}

#[tokio::test]
async fn a_filtered_window_reflects_mutations_made_between_pages() {
    let f = fixture(2000, MailchimpSimConfig::default()).await;
    // Every generated member changed before mid-2024; a modified one changes now.
    let window = [
        ("before_last_changed", "2024-06-02T00:00:00+00:00"),
        ("fields", "total_items"),
    ];
    assert_eq!(f.members(&window).await["total_items"], 2000);
    let modified = f.sim.mailchimp().modify_members(LIST, 25);
    assert_eq!(
        f.members(&window).await["total_items"],
        2000 - modified.len()
    );
    let window = f
        .all(&[("before_last_changed", "2024-06-02T00:00:00+00:00")])
        .await;
    assert!(window
        .iter()
        .all(|m| !modified.contains(&m["id"].as_str().unwrap().to_owned())));
    f.sim.mailchimp().delete_members(LIST, 10);
    let after = f
        .members(&[
            ("before_last_changed", "2024-06-02T00:00:00+00:00"),
            ("fields", "total_items"),
        ])
        .await;
    let after = after["total_items"].as_u64().unwrap();
    assert!((1965..=1975).contains(&after), "{after}");
    assert_eq!(
        f.members(&[("fields", "total_items")]).await["total_items"],
        1990
    );
}
