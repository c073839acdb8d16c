//! Serialization of member pages straight from compact members, honouring `fields`: the
//! scope-aware object writer and the pieces every object shares (timestamps, `_links`). The
//! page envelope is `page.rs`, the member itself `member_view.rs`.
//!
//! Nothing goes through `serde_json::Value`: each object writes its keys through an [`Obj`]
//! that asks the [`Scope`] first and computes a value only when it is written, so a trimmed page
//! (`fields=members.id,...`) costs little more than its bytes.

use chrono::DateTime;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::fields::Scope;

/// An object whose keys are written through a scope-aware [`Obj`].
pub(crate) trait Fields {
    /// Writes this object's keys.
    fn write<M: SerializeMap>(&self, o: &mut Obj<'_, M>) -> Result<(), M::Error>;
}

/// A map being written under a scope.
pub(crate) struct Obj<'s, M> {
    map: M,
    scope: Scope<'s>,
}

impl<M: SerializeMap> Obj<'_, M> {
    /// Writes `key: value()` when the scope keeps `key`.
    pub(crate) fn leaf<T: Serialize>(
        &mut self,
        key: &str,
        value: impl FnOnce() -> T,
    ) -> Result<(), M::Error> {
        if self.scope.has(key) {
            self.map.serialize_entry(key, &value())?;
        }
        Ok(())
    }

    /// Writes a nested object when the scope keeps `key`.
    pub(crate) fn object<T: Fields>(
        &mut self,
        key: &str,
        value: impl FnOnce() -> T,
    ) -> Result<(), M::Error> {
        if let Some(scope) = self.scope.child(key) {
            self.map.serialize_entry(
                key,
                &View {
                    value: &value(),
                    scope,
                },
            )?;
        }
        Ok(())
    }

    /// Writes an array of objects when the scope keeps `key`; the scope applies to each element.
    pub(crate) fn array<T: Fields>(
        &mut self,
        key: &str,
        items: impl FnOnce() -> Vec<T>,
    ) -> Result<(), M::Error> {
        if let Some(scope) = self.scope.child(key) {
            self.map.serialize_entry(
                key,
                &Array {
                    items: &items(),
                    scope,
                },
            )?;
        }
        Ok(())
    }
}

/// A [`Fields`] value under a scope, serializable.
pub(crate) struct View<'a, 's, T> {
    pub value: &'a T,
    pub scope: Scope<'s>,
}

impl<T: Fields> Serialize for View<'_, '_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = Obj {
            map: s.serialize_map(None)?,
            scope: self.scope,
        };
        self.value.write(&mut o)?;
        o.map.end()
    }
}

struct Array<'a, 's, T> {
    items: &'a [T],
    scope: Scope<'s>,
}

impl<T: Fields> Serialize for Array<'_, '_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        for value in self.items {
            seq.serialize_element(&View {
                value,
                scope: self.scope,
            })?;
        }
        seq.end()
    }
}

/// Mailchimp's timestamp format, `""` for unknown (0).
pub(crate) fn timestamp(secs: i64) -> String {
    if secs == 0 {
        return String::new();
    }
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
        .unwrap_or_default()
}

/// A `_links` entry.
pub(crate) struct Link {
    pub rel: &'static str,
    pub href: String,
    pub method: &'static str,
    pub target_schema: Option<&'static str>,
    pub schema: Option<&'static str>,
}

impl Fields for Link {
    fn write<M: SerializeMap>(&self, o: &mut Obj<'_, M>) -> Result<(), M::Error> {
        o.leaf("rel", || self.rel)?;
        o.leaf("href", || &self.href)?;
        o.leaf("method", || self.method)?;
        if let Some(t) = self.target_schema {
            o.leaf("targetSchema", || t)?;
        }
        if let Some(t) = self.schema {
            o.leaf("schema", || t)?;
        }
        Ok(())
    }
}

/// Prefix of Mailchimp's JSON schema URLs.
macro_rules! schema_url {
    () => {
        "https://us1.api.mailchimp.com/schema/3.0/"
    };
}
pub(crate) use schema_url;
