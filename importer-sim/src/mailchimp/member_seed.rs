//! A compact [`Member`] with its list: the source of every value Mailchimp shows that the
//! member does not store.
//!
//! Those values (ids, IPs, addresses, location, tags, links) come from
//! `ListMeta::h(seq, salt)`, so they are identical on every request and in every simulator
//! started with the same seed. `member_view.rs` (the member) and `member_parts.rs` (its nested
//! objects) both derive from here, so neither needs the other's type.

use super::members::{ListMeta, Member};

/// A member and the list it belongs to.
#[derive(Clone, Copy)]
pub(crate) struct MemberSeed<'a> {
    pub meta: &'a ListMeta,
    pub m: &'a Member,
}

// Salts of the derived values; far above the ones names use.
const S: u64 = 1 << 40;

impl MemberSeed<'_> {
    /// The derived value of this member under `salt`.
    pub(super) fn h(&self, salt: u64) -> u64 {
        self.meta.h(self.m.seq, S + salt)
    }

    /// The derived value under `salt` of what changes when the member is touched (interests,
    /// tags): a touch changes them and nothing the importer maps.
    pub(super) fn touched(&self, salt: u64) -> u64 {
        self.meta
            .h(self.m.seq, S + salt + (u64::from(self.m.touches) << 24))
    }

    /// One of `items`, picked by the derived value under `salt`.
    pub(super) fn pick<T: Copy>(&self, salt: u64, items: &[T]) -> T {
        items[(self.h(salt) % items.len() as u64) as usize]
    }
}
