//! The Mailchimp client against the simulator over real sockets: paging, filters, sort,
//! `fields` trimming, the count request, list info and ping.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use importer_core::mailchimp::{
    MailchimpAccount, MailchimpClient, MailchimpConfig, MemberStatus, MembersQuery, SortDir,
    SortField, MEMBER_FIELDS,
};
use importer_core::mapping::map_page;
use importer_core::secrets::Secret;
use importer_sim::{MailchimpSimConfig, Sim, SimConfig};

const LIST: &str = "abc123";

async fn sim_with(
    mailchimp: MailchimpSimConfig,
    members: usize,
) -> (Sim, String, MailchimpAccount) {
    let sim = importer_sim::start(SimConfig {
        seed: 7,
        mailchimp,
        ..Default::default()
    })
    .await
    .unwrap();
    let key = sim.mailchimp().new_api_key("us6");
    sim.mailchimp().create_list(&key, LIST, members);
    let client = MailchimpClient::new(MailchimpConfig::default()).unwrap();
    let account = client
        .account(&Secret::from(key.as_str()), Some(&sim.mailchimp_url()))
        .unwrap();
    (sim, key, account)
}

async fn sim(members: usize) -> (Sim, String, MailchimpAccount) {
    sim_with(MailchimpSimConfig::default(), members).await
}

/// Every member matching `base`, paged with `count`, checking `total_items` on every page.
async fn fetch_all(
    account: &MailchimpAccount,
    base: &MembersQuery,
) -> Vec<importer_core::mailchimp::Member> {
    let first = account.members(base).await.unwrap();
    let total = first.total_items;
    let mut all = first
        .members
        .clone()
        .into_iter()
        .filter_map(Result::ok)
        .collect::<Vec<_>>();
    while (all.len() as u64) < total {
        let q = MembersQuery {
            offset: all.len() as u64,
            ..base.clone()
        };
        let page = account.members(&q).await.unwrap();
        assert_eq!(page.total_items, total, "total_items changed between pages");
        assert!(
            !page.members.is_empty(),
            "empty page before total_items was reached"
        );
        all.extend(page.members.into_iter().filter_map(Result::ok));
    }
    assert_eq!(all.len() as u64, total);
    all
}

fn changed(m: &importer_core::mailchimp::Member) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(m.last_changed.as_deref().unwrap())
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn offset_paging_covers_the_list_exactly_once() {
    let (sim, _key, account) = sim(2500).await;
    for count in [1000, 7] {
        let q = MembersQuery {
            count,
            ..MembersQuery::new(LIST)
        };
        let members = fetch_all(&account, &q).await;
        let ids: BTreeSet<_> = members.iter().map(|m| m.id.clone().unwrap()).collect();
        assert_eq!(ids.len(), 2500, "duplicates with count {count}");
        let expected: BTreeSet<_> = sim
            .mailchimp()
            .expected_records(LIST)
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, expected);
    }
    let past_end = MembersQuery {
        offset: 2500,
        ..MembersQuery::new(LIST)
    };
    let page = account.members(&past_end).await.unwrap();
    assert!(page.members.is_empty());
    assert_eq!(page.total_items, 2500);
}

#[tokio::test]
async fn mapped_pages_equal_the_simulators_expected_records() {
    let (sim, _key, account) = sim(1500).await;
    let members = fetch_all(&account, &MembersQuery::new(LIST)).await;
    let (records, rejections) = map_page(members);
    assert!(rejections.is_empty(), "{rejections:?}");
    let got: BTreeMap<_, _> = records
        .into_iter()
        .map(|r| (r.id.clone(), (r.firstname, r.lastname, r.email, r.status)))
        .collect();
    let expected: BTreeMap<_, _> = sim
        .mailchimp()
        .expected_records(LIST)
        .into_iter()
        .map(|r| (r.id.clone(), (r.firstname, r.lastname, r.email, r.status)))
        .collect();
    assert_eq!(got, expected);
    assert!(
        got.values().any(|(first, ..)| first.is_empty()),
        "no member without a name"
    );
    assert!(
        got.values().any(|(first, ..)| !first.is_ascii()),
        "no unicode name"
    );
}

/// Members with `last_changed` in the sim's strict or inclusive `since` semantics.
async fn window_filters_match_local_filtering(inclusive_since: bool) {
    let config = MailchimpSimConfig {
        inclusive_since,
        ..Default::default()
    };
    let (_sim, _key, account) = sim_with(config, 3000).await;
    let all = fetch_all(&account, &MembersQuery::new(LIST)).await;
    // Pick instants that many members share (bulk imports share a second).
    let mut by_second: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for m in &all {
        *by_second.entry(changed(m)).or_default() += 1;
    }
    assert!(
        by_second.values().any(|&n| n > 1),
        "no shared last_changed second"
    );
    let seconds: Vec<_> = by_second.keys().copied().collect();
    let since = seconds[seconds.len() / 4];
    let before = seconds[seconds.len() * 3 / 4];
    let cases = [
        (Some(since), None),
        (None, Some(before)),
        (Some(since), Some(before)),
    ];
    for (since, before) in cases {
        let expected: BTreeSet<_> = all
            .iter()
            .filter(|m| match since {
                Some(s) if inclusive_since => changed(m) >= s,
                Some(s) => changed(m) > s,
                None => true,
            })
            .filter(|m| before.is_none_or(|b| changed(m) < b))
            .map(|m| m.id.clone().unwrap())
            .collect();
        let q = MembersQuery {
            since_last_changed: since,
            before_last_changed: before,
            ..MembersQuery::new(LIST)
        };
        let got: BTreeSet<_> = fetch_all(&account, &q)
            .await
            .into_iter()
            .map(|m| m.id.unwrap())
            .collect();
        assert!(!got.is_empty() && got.len() < all.len());
        assert_eq!(got, expected, "since {since:?} before {before:?}");
        let count = account.count_members(LIST, since, before).await.unwrap();
        assert_eq!(count, expected.len() as u64);
    }
}

#[tokio::test]
async fn since_and_before_filter_with_strict_since() {
    window_filters_match_local_filtering(false).await;
}

#[tokio::test]
async fn since_and_before_filter_with_inclusive_since() {
    window_filters_match_local_filtering(true).await;
}

#[tokio::test]
async fn fractional_instants_are_sent_as_whole_seconds() {
    // The default simulator answers 400 to fractional timestamps, like strict Mailchimp.
    let (sim, _key, account) = sim(200).await;
    assert!(sim.mailchimp().config().strict_timestamps);
    let now = Utc::now();
    let q = MembersQuery {
        since_last_changed: Some(now - Duration::days(36_500) + Duration::milliseconds(123)),
        before_last_changed: Some(now + Duration::milliseconds(456)),
        ..MembersQuery::new(LIST)
    };
    assert_eq!(account.members(&q).await.unwrap().total_items, 200);
}

#[tokio::test]
async fn members_changed_now_are_found_by_since() {
    let (sim, _key, account) = sim(500).await;
    let start = Utc::now() - Duration::seconds(2);
    let modified: BTreeSet<_> = sim
        .mailchimp()
        .modify_members(LIST, 25)
        .into_iter()
        .collect();
    let added: BTreeSet<_> = sim.mailchimp().add_members(LIST, 5).into_iter().collect();
    let q = MembersQuery {
        since_last_changed: Some(start),
        ..MembersQuery::new(LIST)
    };
    let got: BTreeSet<_> = fetch_all(&account, &q)
        .await
        .into_iter()
        .map(|m| m.id.unwrap())
        .collect();
    let expected: BTreeSet<_> = modified.union(&added).cloned().collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn the_status_filter_partitions_the_list() {
    let (_sim, _key, account) = sim(2000).await;
    let mut total = 0;
    let mut seen_statuses = 0;
    for status in MemberStatus::ALL {
        let q = MembersQuery {
            status: Some(status),
            ..MembersQuery::new(LIST)
        };
        let members = fetch_all(&account, &q).await;
        assert!(members
            .iter()
            .all(|m| m.status.as_deref() == Some(status.as_str())));
        total += members.len();
        seen_statuses += usize::from(!members.is_empty());
    }
    assert_eq!(total, 2000);
    assert!(
        seen_statuses >= 3,
        "the generated list has too few statuses"
    );
}

#[tokio::test]
async fn sorting_by_last_changed_orders_both_ways() {
    let (_sim, _key, account) = sim(1200).await;
    let insertion: Vec<_> = fetch_all(&account, &MembersQuery::new(LIST)).await;
    for dir in [SortDir::Asc, SortDir::Desc] {
        let q = MembersQuery {
            sort: Some((SortField::LastChanged, dir)),
            ..MembersQuery::new(LIST)
        };
        let sorted = fetch_all(&account, &q).await;
        let times: Vec<_> = sorted.iter().map(changed).collect();
        let ordered = times.windows(2).all(|w| match dir {
            SortDir::Asc => w[0] <= w[1],
            SortDir::Desc => w[0] >= w[1],
        });
        assert!(ordered, "{dir:?} not ordered");
        let ids = |ms: &[importer_core::mailchimp::Member]| -> BTreeSet<String> {
            ms.iter().map(|m| m.id.clone().unwrap()).collect()
        };
        assert_eq!(ids(&sorted), ids(&insertion));
        assert_ne!(
            sorted.iter().map(|m| &m.id).collect::<Vec<_>>(),
            insertion.iter().map(|m| &m.id).collect::<Vec<_>>(),
            "insertion order is already sorted: the test proves nothing"
        );
    }
    for field in [SortField::TimestampOpt, SortField::TimestampSignup] {
        let q = MembersQuery {
            sort: Some((field, SortDir::Desc)),
            ..MembersQuery::new(LIST)
        };
        assert_eq!(fetch_all(&account, &q).await.len(), 1200);
    }
}

#[tokio::test]
async fn requesting_only_mapped_fields_shrinks_the_body_many_times() {
    let (sim, key, account) = sim(1000).await;
    let ours = account.members(&MembersQuery::new(LIST)).await.unwrap();
    assert_eq!(ours.members.len(), 1000);
    // The baseline: the same page without `fields`, as a naive client would ask for it.
    let full = reqwest::Client::new()
        .get(format!("{}/lists/{LIST}/members", sim.mailchimp_url()))
        .basic_auth("x", Some(&key))
        .query(&[("count", "1000")])
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let per_member_ours = ours.body_bytes / 1000;
    let per_member_full = full.len() / 1000;
    assert!(
        per_member_ours < 250,
        "{per_member_ours} bytes per member with fields"
    );
    assert!(
        per_member_full > 8 * per_member_ours,
        "full {per_member_full} vs trimmed {per_member_ours} bytes per member"
    );
    assert!(MEMBER_FIELDS.contains("total_items"));
}

#[tokio::test]
async fn count_members_counts_the_whole_list_cheaply() {
    let (_sim, _key, account) = sim(2345).await;
    assert_eq!(account.count_members(LIST, None, None).await.unwrap(), 2345);
    let future = Utc::now() + Duration::days(1);
    assert_eq!(
        account
            .count_members(LIST, Some(future), None)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn ping_and_list_info_answer_for_the_keys_own_list() {
    let (_sim, _key, account) = sim(300).await;
    account.ping().await.unwrap();
    let info = account.list_info(LIST).await.unwrap();
    assert_eq!(info.id, LIST);
    assert!(!info.name.is_empty());
    assert!(info.member_count > 0 && info.member_count <= 300);
}

#[tokio::test]
async fn the_default_base_url_comes_from_the_keys_data_centre() {
    let client = MailchimpClient::new(MailchimpConfig::default()).unwrap();
    let key = Secret::from("0123456789abcdef0123456789abcdef-us21");
    let account = client.account(&key, None).unwrap();
    assert_eq!(account.base_url(), "https://us21.api.mailchimp.com/3.0");
    assert_eq!(account.dc(), "us21");
    let debug = format!("{account:?}");
    assert!(!debug.contains("0123456789abcdef"), "{debug}");
    let trimmed = client
        .account(&key, Some("http://127.0.0.1:1/3.0/"))
        .unwrap();
    assert_eq!(trimmed.base_url(), "http://127.0.0.1:1/3.0");
}
