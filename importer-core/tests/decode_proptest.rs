//! Property tests of the member decoder and the mapping (issue 9), a fixed number of cases in
//! CI: whatever Mailchimp sends inside a well-formed page, every member position comes back as a
//! member or a coded rejection, nothing panics, and a valid member maps to its own fields.
#![allow(clippy::unwrap_used)]

use importer_core::mailchimp::decode_members_page;
use importer_core::mapping::map_member;
use importer_core::rejection::RejectReason;
use proptest::prelude::*;

/// A JSON value of any shape, small.
fn any_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4).prop_map(|kv| {
                let fields: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A member object: the known fields with right, wrong or missing values, unknown fields,
/// sometimes a duplicated key, sometimes raw bytes that are not UTF-8.
fn any_member() -> impl Strategy<Value = Vec<u8>> {
    let field = |name: &'static str, good: BoxedStrategy<String>| {
        prop_oneof![
            3 => good.prop_map(move |v| Some(format!("\"{name}\":{v}"))),
            1 => any_json().prop_map(move |v| Some(format!("\"{name}\":{v}"))),
            1 => Just(None),
        ]
    };
    let text = |re: &'static str| re.prop_map(|s| serde_json::to_string(&s).unwrap()).boxed();
    (
        field("id", text("[0-9a-f]{32}")),
        field("email_address", text("[a-z]{1,8}@[a-z]{1,8}\\.com")),
        field(
            "status",
            prop_oneof![
                Just("\"subscribed\"".to_owned()),
                Just("\"unsubscribed\"".to_owned()),
                Just("\"cleaned\"".to_owned()),
                Just("\"pending\"".to_owned()),
                Just("\"transactional\"".to_owned()),
                Just("\"archived\"".to_owned()),
            ]
            .boxed(),
        ),
        field(
            "last_changed",
            Just("\"2026-11-01T10:00:00+00:00\"".to_owned()).boxed(),
        ),
        field(
            "merge_fields",
            ("[A-Za-z ]{0,8}", "[A-Za-z ]{0,8}")
                .prop_map(|(f, l)| format!("{{\"FNAME\":\"{f}\",\"LNAME\":\"{l}\"}}"))
                .boxed(),
        ),
        prop::collection::vec(("x_[a-z]{1,6}", any_json()), 0..3),
        0u8..10,
    )
        .prop_map(|(id, email, status, changed, merge, extra, twist)| {
            let mut fields: Vec<String> = [id, email, status, changed, merge]
                .into_iter()
                .flatten()
                .collect();
            fields.extend(
                extra
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap())),
            );
            if twist == 0 && !fields.is_empty() {
                let again = fields[0].clone();
                fields.push(again);
            }
            let mut bytes = format!("{{{}}}", fields.join(",")).into_bytes();
            if twist == 1 {
                // A lone continuation byte inside the object, in a string: invalid UTF-8.
                bytes.splice(1..1, b"\"x\xff\":1,".iter().copied());
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_position_of_a_page_is_a_member_or_a_coded_rejection(
        members in prop::collection::vec(any_member(), 0..8),
        total in 0u64..1_000_000,
    ) {
        let mut body = b"{\"members\":[".to_vec();
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(m);
        }
        body.extend_from_slice(format!("],\"total_items\":{total}}}").as_bytes());
        let page = decode_members_page(&body).unwrap();
        prop_assert_eq!(page.total_items, total);
        prop_assert_eq!(page.members.len(), members.len());
        for position in page.members {
            match position {
                Ok(member) => match map_member(member.clone()) {
                    Ok(record) => {
                        prop_assert_eq!(Some(&record.id), member.id.as_ref());
                        prop_assert_eq!(Some(&record.email), member.email_address.as_ref());
                        prop_assert!(!record.id.is_empty() && !record.email.is_empty());
                    }
                    Err(rejection) => {
                        prop_assert!(RejectReason::CODES.contains(&rejection.reason.code()));
                    }
                },
                Err(rejection) => {
                    prop_assert!(RejectReason::CODES.contains(&rejection.reason.code()));
                    prop_assert!(rejection.excerpt.len() <= 1024 + 4);
                }
            }
        }
    }

    #[test]
    fn a_body_that_is_not_a_page_is_an_error_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_members_page(&bytes);
    }
}
