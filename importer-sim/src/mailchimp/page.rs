//! The members endpoint's response: a page of members, `list_id`, `total_items` and the
//! collection's `_links`, written through the scope-aware writer of `json.rs`.

use serde::ser::SerializeMap;

use super::json::{schema_url, Fields, Link, Obj};
use super::member_seed::MemberSeed;
use super::member_view::MemberView;
use super::members::{ListMeta, Member};

/// A page of members: the members endpoint's response.
pub(crate) struct Page<'a> {
    pub meta: &'a ListMeta,
    pub members: &'a [Member],
    pub total: usize,
}

impl Fields for Page<'_> {
    fn write<M: SerializeMap>(&self, o: &mut Obj<'_, M>) -> Result<(), M::Error> {
        o.array("members", || {
            self.members
                .iter()
                .map(|m| MemberView(MemberSeed { meta: self.meta, m }))
                .collect()
        })?;
        o.leaf("list_id", || &self.meta.id)?;
        o.leaf("total_items", || self.total)?;
        o.array("_links", || {
            let base = format!(
                "https://{}.api.mailchimp.com/3.0/lists/{}/members",
                self.meta.dc, self.meta.id
            );
            vec![
                link(
                    "self",
                    base.clone(),
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
                link(
                    "parent",
                    base.trim_end_matches("/members").to_owned(),
                    "GET",
                    Some(concat!(schema_url!(), "Definitions/Lists/Response.json")),
                    None,
                ),
                link(
                    "create",
                    base,
                    "POST",
                    Some(concat!(
                        schema_url!(),
                        "Definitions/Lists/Members/Response.json"
                    )),
                    Some(concat!(
                        schema_url!(),
                        "Definitions/Lists/Members/POST.json"
                    )),
                ),
            ]
        })
    }
}

fn link(
    rel: &'static str,
    href: String,
    method: &'static str,
    target: Option<&'static str>,
    schema: Option<&'static str>,
) -> Link {
    Link {
        rel,
        href,
        method,
        target_schema: target,
        schema,
    }
}
