//! Mailchimp's `fields` / `exclude_fields` parameters: dotted paths selecting parts of a response.
//!
//! `fields=members.id,total_items` keeps only those paths (a top-level key not named is omitted);
//! `exclude_fields=members._links,_links` drops them. Paths go through arrays: `members.id`
//! applies to every element of `members`. A [`Scope`] is the selection at one depth; serializers
//! ask it for each key they are about to write.

use std::collections::HashMap;

use serde_json::Value;

/// A set of dotted paths as a tree; `leaf` marks a path named in full.
#[derive(Debug, Default)]
pub(crate) struct PathTree {
    children: HashMap<String, PathTree>,
    leaf: bool,
}

impl PathTree {
    /// Parses a comma-separated list of dotted paths; empty items are ignored.
    pub(crate) fn parse(list: &str) -> PathTree {
        let mut root = PathTree::default();
        for path in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut node = &mut root;
            for part in path.split('.').filter(|p| !p.is_empty()) {
                node = node.children.entry(part.to_owned()).or_default();
            }
            node.leaf = true;
        }
        root
    }
}

/// The selection at one depth: `fields: None` keeps everything, `exclude: None` drops nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scope<'a> {
    fields: Option<&'a PathTree>,
    exclude: Option<&'a PathTree>,
}

impl<'a> Scope<'a> {
    /// The selection of a whole response.
    pub(crate) fn new(fields: Option<&'a PathTree>, exclude: Option<&'a PathTree>) -> Scope<'a> {
        Scope { fields, exclude }
    }

    /// The scope below `key`, or `None` when `key` is not written at all.
    pub(crate) fn child(&self, key: &str) -> Option<Scope<'a>> {
        let fields = match self.fields {
            None => None,
            Some(tree) => match tree.children.get(key) {
                None => return None,
                Some(node) if node.leaf => None,
                Some(node) => Some(node),
            },
        };
        let exclude = match self.exclude {
            None => None,
            Some(tree) => match tree.children.get(key) {
                None => None,
                Some(node) if node.leaf => return None,
                Some(node) => Some(node),
            },
        };
        Some(Scope { fields, exclude })
    }

    /// True when `key` is written.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.child(key).is_some()
    }

    /// Applies the selection to a JSON value (used for the small non-member responses).
    pub(crate) fn trim(&self, value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .filter_map(|(k, v)| self.child(&k).map(|s| (k, s.trim(v))))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.trim(v)).collect()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn trimmed(fields: Option<&str>, exclude: Option<&str>, v: Value) -> Value {
        let f = fields.map(PathTree::parse);
        let e = exclude.map(PathTree::parse);
        Scope::new(f.as_ref(), e.as_ref()).trim(v)
    }

    #[test]
    fn fields_keep_only_named_paths_through_arrays() {
        let v = json!({"members": [{"id": 1, "x": {"a": 1, "b": 2}}], "total_items": 3});
        assert_eq!(
            trimmed(Some("members.x.b"), None, v.clone()),
            json!({"members": [{"x": {"b": 2}}]})
        );
        assert_eq!(
            trimmed(Some("total_items"), None, v),
            json!({"total_items": 3})
        );
    }

    #[test]
    fn exclude_fields_drop_named_paths_at_any_depth() {
        let v = json!({"members": [{"id": 1, "x": {"a": 1, "b": 2}}], "_links": []});
        assert_eq!(
            trimmed(None, Some("members.x.a, _links"), v),
            json!({"members": [{"id": 1, "x": {"b": 2}}]})
        );
    }
}
