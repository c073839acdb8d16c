//! One member as Mailchimp returns it, derived from the compact [`Member`] and its list.
//!
//! Values that never change for a member (ids, IPs, location, tags, links) are derived from its
//! [`MemberSeed`], so they are identical on every request and in every simulator started with
//! the same seed.
//!
//! [`Member`]: super::members::Member

use serde::ser::SerializeMap;

use super::json::{schema_url, timestamp, Fields, Link, Obj};
use super::member_parts::{Interests, Location, MergeFields, Stats};
use super::member_seed::MemberSeed;
use super::members::{first_name, hex_digits, last_name, MemberDefect};

/// One member as Mailchimp returns it: the [`Fields`] of its seed.
pub(crate) struct MemberView<'a>(pub MemberSeed<'a>);

impl MemberView<'_> {
    fn ip(&self, salt: u64) -> String {
        let v = self.0.h(salt);
        format!(
            "{}.{}.{}.{}",
            1 + v % 223,
            (v >> 8) % 256,
            (v >> 16) % 256,
            1 + (v >> 24) % 254
        )
    }
}

impl Fields for MemberView<'_> {
    fn write<M: SerializeMap>(&self, o: &mut Obj<'_, M>) -> Result<(), M::Error> {
        let v = &self.0;
        let (meta, m) = (v.meta, v.m);
        let id = hex::encode(m.id);
        o.leaf("id", || &id)?;
        match m.defect {
            Some(MemberDefect::NoEmail) => o.leaf("email_address", || "")?,
            Some(MemberDefect::DuplicateField) => {
                o.leaf("email_address", || meta.email(m.seq))?;
                o.leaf("email_address", || "second@example.com")?;
            }
            _ => o.leaf("email_address", || meta.email(m.seq))?,
        }
        o.leaf("unique_email_id", || hex_digits(v.h(1), 10))?;
        o.leaf("contact_id", || format!("{:016x}{:016x}", v.h(2), v.h(3)))?;
        o.leaf("full_name", || {
            format!("{} {}", first_name(m.first), last_name(m.last))
                .trim()
                .to_owned()
        })?;
        o.leaf("web_id", || 100_000_000 + v.h(4) % 900_000_000)?;
        o.leaf(
            "email_type",
            || {
                if v.h(5) % 10 == 0 {
                    "text"
                } else {
                    "html"
                }
            },
        )?;
        match m.defect {
            Some(MemberDefect::BadStatus) => o.leaf("status", || "vip")?,
            _ => o.leaf("status", || m.status.as_str())?,
        }
        o.leaf("consents_to_one_to_one_messaging", || true)?;
        o.object("merge_fields", || MergeFields { v })?;
        o.object("interests", || Interests { v })?;
        o.object("stats", || Stats { v })?;
        let imported = m.timestamp_signup == 0;
        o.leaf("ip_signup", || {
            if imported {
                String::new()
            } else {
                self.ip(6)
            }
        })?;
        o.leaf("timestamp_signup", || timestamp(m.timestamp_signup))?;
        o.leaf("ip_opt", || {
            if m.timestamp_opt == 0 {
                String::new()
            } else {
                self.ip(7)
            }
        })?;
        o.leaf("timestamp_opt", || timestamp(m.timestamp_opt))?;
        o.leaf("member_rating", || {
            [2, 2, 2, 3, 3, 4, 5, 1][(v.h(8) % 8) as usize]
        })?;
        o.leaf("last_changed", || timestamp(m.last_changed))?;
        o.leaf("language", || {
            v.pick(9, &["en", "en", "en", "", "de", "fr", "es", "ja", "pl"])
        })?;
        o.leaf("vip", || v.h(10) % 50 == 0)?;
        o.leaf("email_client", || {
            v.pick(11, &["", "Gmail", "Apple Mail", "Outlook 2016", "iPhone"])
        })?;
        o.object("location", || Location { v })?;
        o.leaf("source", || {
            if imported {
                "Import"
            } else {
                v.pick(
                    12,
                    &["Hosted Signup Form", "API - Generic", "Admin Add", "Zapier"],
                )
            }
        })?;
        let tags = self.tags();
        o.leaf("tags_count", || tags.len())?;
        o.array("tags", || tags)?;
        o.leaf("list_id", || &meta.id)?;
        o.array("_links", || self.links(&id))
    }
}

impl MemberView<'_> {
    fn tags(&self) -> Vec<Tag> {
        const NAMES: [&str; 6] = [
            "Customer",
            "Newsletter",
            "VIP",
            "Webinar 2023",
            "Lead",
            "Imported",
        ];
        let n = self.0.touched(13) % 4;
        (0..n)
            .map(|i| {
                let k = ((self.0.touched(14) + i * 2) % NAMES.len() as u64) as usize;
                Tag {
                    id: 10_000 + k as u64 * 17 + (self.0.meta.seed % 1000),
                    name: NAMES[k],
                }
            })
            .collect()
    }

    fn links(&self, id: &str) -> Vec<Link> {
        let lists = format!(
            "https://{}.api.mailchimp.com/3.0/lists/{}",
            self.0.meta.dc, self.0.meta.id
        );
        MEMBER_LINKS
            .iter()
            .map(|&(rel, suffix, method, target_schema, schema)| Link {
                rel,
                href: if rel == "parent" {
                    format!("{lists}/members")
                } else {
                    format!("{lists}/members/{id}{suffix}")
                },
                method,
                target_schema,
                schema,
            })
            .collect()
    }
}

/// The ten member links: rel, href suffix, method, targetSchema, schema.
type LinkSpec = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);
const MEMBER_LINKS: [LinkSpec; 10] = [
    (
        "self",
        "",
        "GET",
        Some(concat!(
            schema_url!(),
            "Definitions/Lists/Members/Response.json"
        )),
        None,
    ),
    (
        "parent",
        "",
        "GET",
        Some(concat!(
            schema_url!(),
            "Definitions/Lists/Members/CollectionResponse.json"
        )),
        Some(concat!(
            schema_url!(),
            "Paths/Lists/Members/Collection.json"
        )),
    ),
    (
        "update",
        "",
        "PATCH",
        Some(concat!(
            schema_url!(),
            "Definitions/Lists/Members/Response.json"
        )),
        Some(concat!(
            schema_url!(),
            "Definitions/Lists/Members/PATCH.json"
        )),
    ),
    (
        "upsert",
        "",
        "PUT",
        Some(concat!(
            schema_url!(),
            "Definitions/Lists/Members/Response.json"
        )),
        Some(concat!(schema_url!(), "Definitions/Lists/Members/PUT.json")),
    ),
    ("delete", "", "DELETE", None, None),
    (
        "activity",
        "/activity",
        "GET",
        Some(concat!(
            schema_url!(),
            "Definitions/Lists/Members/Activity/Response.json"
        )),
        None,
    ),
    (
        "goals",
        "/goals",
        "GET",
        Some(concat!(
            schema_url!(),
            "Definitions/Lists/Members/Goals/Response.json"
        )),
        None,
    ),
    (
        "notes",
        "/notes",
        "GET",
        Some(concat!(
            schema_url!(),
            "Definitions/Lists/Members/Notes/CollectionResponse.json"
        )),
        None,
    ),
    (
        "events",
        "/events",
        "POST",
        None,
        Some(concat!(
            schema_url!(),
            "Definitions/Lists/Members/Events/POST.json"
        )),
    ),
    (
        "delete_permanent",
        "/actions/delete-permanent",
        "POST",
        None,
        None,
    ),
];

struct Tag {
    id: u64,
    name: &'static str,
}

impl Fields for Tag {
    fn write<M: SerializeMap>(&self, o: &mut Obj<'_, M>) -> Result<(), M::Error> {
        o.leaf("id", || self.id)?;
        o.leaf("name", || self.name)
    }
}
