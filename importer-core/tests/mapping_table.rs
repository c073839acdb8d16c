//! Member-to-record mapping, table-driven (CONTRACTS.md "Mapping").
#![allow(clippy::unwrap_used)]

use importer_core::mailchimp::{Member, MemberStatus, MergeFields};
use importer_core::mapping::{map_member, map_page, Record};
use importer_core::rejection::RejectReason;

fn member(
    id: Option<&str>,
    email: Option<&str>,
    status: Option<&str>,
    names: (Option<&str>, Option<&str>),
) -> Member {
    Member {
        id: id.map(str::to_owned),
        email_address: email.map(str::to_owned),
        status: status.map(str::to_owned),
        merge_fields: MergeFields {
            fname: names.0.map(str::to_owned),
            lname: names.1.map(str::to_owned),
        },
        last_changed: Some("2022-02-23T19:31:54+00:00".to_owned()),
    }
}

fn record(id: &str, first: &str, last: &str, email: &str, status: &str) -> Record {
    Record {
        id: id.into(),
        firstname: first.into(),
        lastname: last.into(),
        email: email.into(),
        status: status.into(),
    }
}

#[test]
fn members_map_to_records_by_the_contract_table() {
    let cases = [
        (
            member(
                Some("a1"),
                Some("ann@example.com"),
                Some("subscribed"),
                (Some("Ann"), Some("Lee")),
            ),
            record("a1", "Ann", "Lee", "ann@example.com", "subscribed"),
        ),
        (
            member(
                Some("u1"),
                Some("zoë@example.com"),
                Some("pending"),
                (Some("Zoë"), Some("Ångström-李")),
            ),
            record("u1", "Zoë", "Ångström-李", "zoë@example.com", "pending"),
        ),
        (
            member(
                Some("e1"),
                Some("emoji@example.com"),
                Some("cleaned"),
                (Some("🙂 Ana"), Some("")),
            ),
            record("e1", "🙂 Ana", "", "emoji@example.com", "cleaned"),
        ),
        (
            member(
                Some("n1"),
                Some("noname@example.com"),
                Some("unsubscribed"),
                (None, None),
            ),
            record("n1", "", "", "noname@example.com", "unsubscribed"),
        ),
        (
            member(
                Some("f1"),
                Some("first@example.com"),
                Some("transactional"),
                (Some("Only"), None),
            ),
            record("f1", "Only", "", "first@example.com", "transactional"),
        ),
        (
            member(
                Some("l1"),
                Some("last@example.com"),
                Some("archived"),
                (None, Some("Only")),
            ),
            record("l1", "", "Only", "last@example.com", "archived"),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(map_member(input).unwrap(), expected);
    }
}

#[test]
fn every_mailchimp_status_is_accepted() {
    for status in MemberStatus::ALL {
        let m = member(
            Some("id"),
            Some("a@b.c"),
            Some(status.as_str()),
            (None, None),
        );
        assert_eq!(map_member(m).unwrap().status, status.as_str());
    }
}

#[test]
fn unmappable_members_are_rejected_with_their_reason() {
    let cases = [
        (
            member(None, Some("a@b.c"), Some("subscribed"), (None, None)),
            RejectReason::MissingId,
        ),
        (
            member(Some(""), Some("a@b.c"), Some("subscribed"), (None, None)),
            RejectReason::MissingId,
        ),
        (
            member(Some("  "), Some("a@b.c"), Some("subscribed"), (None, None)),
            RejectReason::MissingId,
        ),
        (
            member(Some("x"), None, Some("subscribed"), (Some("Ann"), None)),
            RejectReason::MissingEmail,
        ),
        (
            member(Some("x"), Some(""), Some("subscribed"), (None, None)),
            RejectReason::MissingEmail,
        ),
        (
            member(Some("x"), Some("a@b.c"), Some("deleted"), (None, None)),
            RejectReason::InvalidStatus("deleted".into()),
        ),
        (
            member(Some("x"), Some("a@b.c"), Some("Subscribed"), (None, None)),
            RejectReason::InvalidStatus("Subscribed".into()),
        ),
        (
            member(Some("x"), Some("a@b.c"), Some(""), (None, None)),
            RejectReason::InvalidStatus(String::new()),
        ),
        (
            member(Some("x"), Some("a@b.c"), None, (None, None)),
            RejectReason::InvalidStatus(String::new()),
        ),
        // The first broken rule wins.
        (
            member(None, None, Some("bogus"), (None, None)),
            RejectReason::MissingId,
        ),
    ];
    for (input, reason) in cases {
        let rejection = map_member(input.clone()).unwrap_err();
        assert_eq!(rejection.reason, reason, "{input:?}");
        assert_eq!(rejection.member_id, input.id);
        assert_eq!(rejection.email, input.email_address);
        assert_eq!(
            rejection.member.as_ref().unwrap()["id"],
            serde_json::json!(input.id)
        );
        assert_eq!(
            rejection.member.as_ref().unwrap()["merge_fields"]["FNAME"],
            serde_json::json!(input.merge_fields.fname)
        );
        assert!(!rejection.reason.code().is_empty());
    }
}

#[test]
fn a_rejection_keeps_the_member_as_received() {
    let m = member(Some("x"), None, Some("subscribed"), (Some("Zoë"), None));
    let rejection = map_member(m).unwrap_err();
    assert_eq!(
        rejection.member.clone().unwrap(),
        serde_json::json!({
            "id": "x",
            "email_address": null,
            "status": "subscribed",
            "merge_fields": {"FNAME": "Zoë", "LNAME": null},
            "last_changed": "2022-02-23T19:31:54+00:00",
        })
    );
    assert_eq!(
        rejection.to_string(),
        "rejected member: member has no email address"
    );
}

#[test]
fn a_page_splits_into_records_and_rejections_in_order() {
    let members = vec![
        member(Some("1"), Some("1@x.y"), Some("subscribed"), (None, None)),
        member(Some("2"), None, Some("subscribed"), (None, None)),
        member(Some("3"), Some("3@x.y"), Some("pending"), (None, None)),
        member(Some("4"), Some("4@x.y"), Some("weird"), (None, None)),
        member(Some("5"), Some("5@x.y"), Some("cleaned"), (None, None)),
    ];
    let (records, rejections) = map_page(members);
    let ids: Vec<_> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["1", "3", "5"]);
    let rejected: Vec<_> = rejections
        .iter()
        .map(|r| r.member_id.as_deref().unwrap())
        .collect();
    assert_eq!(rejected, ["2", "4"]);
    assert_eq!(map_page(Vec::new()), (Vec::new(), Vec::new()));
}

#[test]
fn records_serialize_to_the_destination_shape() {
    let r = record("id1", "Zoë", "", "z@x.y", "subscribed");
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::json!({"id": "id1", "firstname": "Zoë", "lastname": "", "email": "z@x.y", "status": "subscribed"})
    );
}

#[test]
fn members_decoded_from_json_map_with_null_and_missing_merge_fields() {
    let body = r#"[
        {"id":"a","email_address":"a@x.y","status":"subscribed","merge_fields":{"FNAME":null,"LNAME":"Lee"}},
        {"id":"b","email_address":"b@x.y","status":"subscribed","merge_fields":{}},
        {"id":"c","email_address":"c@x.y","status":"subscribed"},
        {"id":"d","email_address":"d@x.y","status":"subscribed","merge_fields":null}
    ]"#;
    let members: Vec<Member> = serde_json::from_str(body).unwrap();
    let (records, rejections) = map_page(members);
    assert!(rejections.is_empty());
    let names: Vec<_> = records
        .iter()
        .map(|r| (r.firstname.as_str(), r.lastname.as_str()))
        .collect();
    assert_eq!(names, [("", "Lee"), ("", ""), ("", ""), ("", "")]);
}
