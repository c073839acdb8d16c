//! One member as Mailchimp returns it, derived from the compact [`Member`] and its list.
//!
//! Values that never change for a member (ids, IPs, location, tags, links) come from
//! `ListMeta::h(seq, salt)`, so they are identical on every request and in every simulator
//! started with the same seed.

use serde::ser::SerializeMap;

use super::json::{schema_url, timestamp, Fields, Link, Obj};
use super::member_parts::{Interests, Location, MergeFields, Stats};
use super::members::{first_name, hex_digits, last_name, ListMeta, Member, MemberDefect};

/// One member as Mailchimp returns it.
pub(crate) struct MemberView<'a> {
    pub meta: &'a ListMeta,
    pub m: &'a Member,
}

// Salts of the derived values; far above the ones names use.
const S: u64 = 1 << 40;

impl MemberView<'_> {
    pub(super) fn h(&self, salt: u64) -> u64 {
        self.meta.h(self.m.seq, S + salt)
    }

    pub(super) fn pick<T: Copy>(&self, salt: u64, items: &[T]) -> T {
        items[(self.h(salt) % items.len() as u64) as usize]
    }

    fn ip(&self, salt: u64) -> String {
        let v = self.h(salt);
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
        let (meta, m) = (self.meta, self.m);
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
        o.leaf("unique_email_id", || hex_digits(self.h(1), 10))?;
        o.leaf("contact_id", || {
            format!("{:016x}{:016x}", self.h(2), self.h(3))
        })?;
        o.leaf("full_name", || {
            format!("{} {}", first_name(m.first), last_name(m.last))
                .trim()
                .to_owned()
        })?;
        o.leaf("web_id", || 100_000_000 + self.h(4) % 900_000_000)?;
        o.leaf("email_type", || {
            if self.h(5) % 10 == 0 {
                "text"
            } else {
                "html"
            }
        })?;
        match m.defect {
            Some(MemberDefect::BadStatus) => o.leaf("status", || "vip")?,
            _ => o.leaf("status", || m.status.as_str())?,
        }
        o.leaf("consents_to_one_to_one_messaging", || true)?;
        o.object("merge_fields", || MergeFields { v: self })?;
        o.object("interests", || Interests { v: self })?;
        o.object("stats", || Stats { v: self })?;
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
            [2, 2, 2, 3, 3, 4, 5, 1][(self.h(8) % 8) as usize]
        })?;
        o.leaf("last_changed", || timestamp(m.last_changed))?;
        o.leaf("language", || {
            self.pick(9, &["en", "en", "en", "", "de", "fr", "es", "ja", "pl"])
        })?;
        o.leaf("vip", || self.h(10) % 50 == 0)?;
        o.leaf("email_client", || {
            self.pick(11, &["", "Gmail", "Apple Mail", "Outlook 2016", "iPhone"])
        })?;
        o.object("location", || Location { v: self })?;
        o.leaf("source", || {
            if imported {
                "Import"
            } else {
                self.pick(
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
        let n = self.h(13) % 4;
        (0..n)
            .map(|i| {
                let k = ((self.h(14) + i * 2) % NAMES.len() as u64) as usize;
                Tag {
                    id: 10_000 + k as u64 * 17 + (self.meta.seed % 1000),
                    name: NAMES[k],
                }
            })
            .collect()
    }

    fn links(&self, id: &str) -> Vec<Link> {
        let lists = format!(
            "https://{}.api.mailchimp.com/3.0/lists/{}",
            self.meta.dc, self.meta.id
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
