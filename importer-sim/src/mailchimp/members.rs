//! The compact member record and every member value derived from it deterministically.
//!
//! A stored member is ~56 bytes: only what changes over time (names, status, timestamps) plus
//! its creation sequence number. Everything else in Mailchimp's member object (email, address,
//! location, tags, ...) is recomputed from `(list seed, seq)` when a page is serialized, so a
//! list of a million members stays small and two simulators with one seed answer identically.

use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Marks an empty `FNAME`/`LNAME` (`""`).
pub(crate) const NO_NAME: u16 = u16::MAX;

/// Generated timestamps lie in [2019-01-01, 2024-06-01): always in the past.
const START: i64 = 1_546_300_800;
const END: i64 = 1_717_200_000;

/// A member's subscription status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Subscribed,
    Unsubscribed,
    Cleaned,
    Pending,
    Transactional,
    Archived,
}

impl Status {
    /// Mailchimp's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Subscribed => "subscribed",
            Status::Unsubscribed => "unsubscribed",
            Status::Cleaned => "cleaned",
            Status::Pending => "pending",
            Status::Transactional => "transactional",
            Status::Archived => "archived",
        }
    }

    /// Parses Mailchimp's spelling.
    pub(crate) fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "subscribed" => Status::Subscribed,
            "unsubscribed" => Status::Unsubscribed,
            "cleaned" => Status::Cleaned,
            "pending" => Status::Pending,
            "transactional" => Status::Transactional,
            "archived" => Status::Archived,
            _ => return None,
        })
    }
}

/// One stored member. Timestamps are Unix seconds; 0 means unknown (`""`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    /// Creation number in the list: seeds every derived value, including the email.
    pub seq: u32,
    /// Bumped by every modification; seeds the current names.
    pub revision: u16,
    /// Bumped by every change of what the importer does not map; seeds interests and tags.
    pub touches: u16,
    pub first: u16,
    pub last: u16,
    pub status: Status,
    /// MD5 of the lowercased email.
    pub id: [u8; 16],
    pub last_changed: i64,
    pub timestamp_signup: i64,
    pub timestamp_opt: i64,
    /// How this member is served broken, if it is (tests of rejected records).
    pub defect: Option<MemberDefect>,
}

/// Ways a member can come back broken, one per kind of rejected record the importer must
/// handle without failing its page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberDefect {
    /// `merge_fields.FNAME` is a number.
    WrongType,
    /// `email_address` appears twice.
    DuplicateField,
    /// `merge_fields.FNAME` holds bytes that are not UTF-8.
    InvalidUtf8,
    /// `email_address` is empty.
    NoEmail,
    /// `status` is not one of the six.
    BadStatus,
}

/// Stands for invalid UTF-8 in a serialized page: serde writes only valid text, so the members
/// handler swaps this (valid, never generated) text for invalid bytes afterwards.
pub(crate) const INVALID_UTF8_MARKER: &str = "\u{10FFFF}\u{10FFFE}invalid";

/// Immutable facts about a list that member serialization needs.
#[derive(Debug)]
pub(crate) struct ListMeta {
    pub id: String,
    pub owner: String,
    pub dc: String,
    pub seed: u64,
    /// Six hex digits that keep emails unique across lists.
    pub tag: String,
    pub name: String,
    pub date_created: i64,
    pub interests: Vec<String>,
}

/// First names as (display, ASCII for the email), some deliberately non-ASCII.
pub(crate) const FIRST_NAMES: &[(&str, &str)] = &[
    ("James", "james"),
    ("Mary", "mary"),
    ("John", "john"),
    ("Patricia", "patricia"),
    ("Robert", "robert"),
    ("Jennifer", "jennifer"),
    ("Michael", "michael"),
    ("Linda", "linda"),
    ("David", "david"),
    ("Elizabeth", "elizabeth"),
    ("William", "william"),
    ("Susan", "susan"),
    ("Zoë", "zoe"),
    ("Łukasz", "lukasz"),
    ("José", "jose"),
    ("François", "francois"),
    ("Søren", "soren"),
    ("Anaïs", "anais"),
    ("Björn", "bjorn"),
    ("Renée", "renee"),
    ("Анна", "anna"),
    ("Дмитрий", "dmitry"),
    ("翔太", "shota"),
    ("さくら", "sakura"),
    ("محمد", "mohammed"),
    ("Ngọc", "ngoc"),
    ("Aoife", "aoife"),
    ("Siobhán", "siobhan"),
    ("Chloé", "chloe"),
    ("Jürgen", "juergen"),
    ("Małgorzata", "malgorzata"),
    ("Ines", "ines"),
    ("Kwame", "kwame"),
    ("Priya", "priya"),
    ("Wei", "wei"),
    ("Olivia", "olivia"),
    ("Noah", "noah"),
    ("Emma", "emma"),
    ("Liam", "liam"),
    ("Ava", "ava"),
];

/// Last names as (display, ASCII for the email).
pub(crate) const LAST_NAMES: &[(&str, &str)] = &[
    ("Smith", "smith"),
    ("Johnson", "johnson"),
    ("Williams", "williams"),
    ("Brown", "brown"),
    ("Jones", "jones"),
    ("Garcia", "garcia"),
    ("Miller", "miller"),
    ("Davis", "davis"),
    ("Müller", "mueller"),
    ("Dvořák", "dvorak"),
    ("Nguyễn", "nguyen"),
    ("O'Brien", "obrien"),
    ("渡辺", "watanabe"),
    ("김", "kim"),
    ("Иванова", "ivanova"),
    ("Kowalczyk", "kowalczyk"),
    ("Þórsdóttir", "thorsdottir"),
    ("García-López", "garcialopez"),
    ("Ødegaard", "odegaard"),
    ("van der Berg", "vandenberg"),
    ("Schröder", "schroeder"),
    ("Rossi", "rossi"),
    ("Papadopoulos", "papadopoulos"),
    ("Okafor", "okafor"),
    ("Singh", "singh"),
    ("Chen", "chen"),
    ("Wilson", "wilson"),
    ("Taylor", "taylor"),
    ("Anderson", "anderson"),
    ("Thomas", "thomas"),
];

const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
    "example.co.uk",
];

/// A 64-bit mixing function (SplitMix64's finaliser) used to derive member values.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stable seed of one list from the simulator seed and the list id.
pub(crate) fn list_seed(seed: u64, list_id: &str) -> u64 {
    let digest = Md5::digest(format!("{seed}:{list_id}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

impl ListMeta {
    /// Builds the meta of a new list.
    pub(crate) fn new(seed: u64, list_id: &str, owner: &str, dc: &str) -> ListMeta {
        let seed = list_seed(seed, list_id);
        let interests = (0..4).map(|i| hex_digits(mix(seed, 900 + i), 10)).collect();
        ListMeta {
            id: list_id.to_owned(),
            owner: owner.to_owned(),
            dc: dc.to_owned(),
            seed,
            tag: hex_digits(mix(seed, 1), 6),
            name: format!("Audience {}", &hex_digits(mix(seed, 2), 4)),
            date_created: START - 86_400 * 30,
            interests,
        }
    }

    /// A derived pseudo-random value of member `seq` for purpose `salt`.
    pub(crate) fn h(&self, seq: u32, salt: u64) -> u64 {
        mix(mix(self.seed, u64::from(seq)), salt)
    }

    /// Names of member `seq` at `revision`: ~7 % without first name, ~9 % without last name.
    pub(crate) fn names(&self, seq: u32, revision: u16) -> (u16, u16) {
        let r = u64::from(revision) * 16;
        let pick = |salt: u64, len: usize, empty_pct: u64| -> u16 {
            if self.h(seq, salt + r + 1) % 100 < empty_pct {
                NO_NAME
            } else {
                // Name tables are tiny, so the index always fits.
                u16::try_from(self.h(seq, salt + r) % len as u64).unwrap_or(0)
            }
        };
        (
            pick(10, FIRST_NAMES.len(), 7),
            pick(20, LAST_NAMES.len(), 9),
        )
    }

    /// The member's email address (fixed at creation; some have capitals, as people type them).
    pub(crate) fn email(&self, seq: u32) -> String {
        let (first, last) = self.names(seq, 0);
        let first = FIRST_NAMES.get(usize::from(first)).map(|n| n.1);
        let last = LAST_NAMES.get(usize::from(last)).map(|n| n.1);
        let mut local = match (first, last) {
            (Some(f), Some(l)) => format!("{f}.{l}"),
            (Some(n), None) | (None, Some(n)) => n.to_owned(),
            (None, None) => "user".to_owned(),
        };
        if self.h(seq, 30) % 20 == 0 {
            local[..1].make_ascii_uppercase();
        }
        let domain = DOMAINS[(self.h(seq, 31) % DOMAINS.len() as u64) as usize];
        format!("{local}{seq}+{}@{domain}", self.tag)
    }

    /// A new member created now or at generation time.
    pub(crate) fn member(
        &self,
        seq: u32,
        status: Status,
        signup: i64,
        opt: i64,
        changed: i64,
    ) -> Member {
        let (first, last) = self.names(seq, 0);
        let email = self.email(seq);
        Member {
            seq,
            revision: 0,
            touches: 0,
            first,
            last,
            status,
            id: Md5::digest(email.to_lowercase().as_bytes()).into(),
            last_changed: changed,
            timestamp_signup: signup,
            timestamp_opt: opt,
            defect: None,
        }
    }

    /// Generates `n` members in insertion order: bulk imports sharing one second, organic
    /// signups, later edits and one mass update that gives many members the same second.
    pub(crate) fn generate(&self, n: usize) -> Vec<Member> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let t0 = START + rng.gen_range(0..86_400 * 365);
        let span = END - 86_400 * 30 - t0;
        let n64 = i64::try_from(n.max(1)).unwrap_or(i64::MAX);
        let mut out: Vec<Member> = Vec::with_capacity(n);
        while out.len() < n {
            let i = out.len();
            let remaining = n - i;
            let base = t0 + i64::try_from(i).unwrap_or(0) * span / n64;
            if remaining >= 20 && rng.gen_bool(0.35) {
                let size = rng.gen_range(20..=remaining.min(5000));
                for _ in 0..size {
                    let seq = out.len() as u32;
                    out.push(self.member(seq, random_status(&mut rng), 0, base, base));
                }
            } else {
                let size = rng.gen_range(1..=remaining.min(200));
                for _ in 0..size {
                    let seq = out.len() as u32;
                    let signup = base + rng.gen_range(0..3_600);
                    let status = random_status(&mut rng);
                    let opt = if status == Status::Pending {
                        0
                    } else {
                        signup + rng.gen_range(0..900)
                    };
                    out.push(self.member(seq, status, signup, opt, signup.max(opt)));
                }
            }
        }
        let mass_update = END - rng.gen_range(86_400..86_400 * 20);
        for m in &mut out {
            let roll = rng.gen_range(0..100);
            if roll < 4 {
                m.last_changed = m.last_changed.max(mass_update);
            } else if roll < 16 {
                m.last_changed = rng.gen_range(m.last_changed..=END);
            }
        }
        out
    }
}

fn random_status(rng: &mut StdRng) -> Status {
    match rng.gen_range(0..100) {
        0..=79 => Status::Subscribed,
        80..=89 => Status::Unsubscribed,
        90..=93 => Status::Cleaned,
        94..=96 => Status::Pending,
        97..=98 => Status::Transactional,
        _ => Status::Archived,
    }
}

/// The first `n` lowercase hex digits of `v` (n <= 16).
pub(crate) fn hex_digits(v: u64, n: usize) -> String {
    let mut s = format!("{v:016x}");
    s.truncate(n);
    s
}

/// Display name of a first-name index (`""` for none).
pub(crate) fn first_name(i: u16) -> &'static str {
    FIRST_NAMES.get(usize::from(i)).map_or("", |n| n.0)
}

/// Display name of a last-name index (`""` for none).
pub(crate) fn last_name(i: u16) -> &'static str {
    LAST_NAMES.get(usize::from(i)).map_or("", |n| n.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_is_the_md5_of_the_lowercased_email() {
        let meta = ListMeta::new(7, "abc", "k", "us1");
        for m in meta.generate(200) {
            let email = meta.email(m.seq).to_lowercase();
            assert_eq!(
                hex::encode(m.id),
                format!("{:x}", Md5::digest(email.as_bytes()))
            );
        }
    }

    #[test]
    fn generated_lists_have_empty_and_unicode_names_and_shared_seconds() {
        let meta = ListMeta::new(1, "list1", "k", "us1");
        let members = meta.generate(5000);
        assert!(members.iter().any(|m| m.first == NO_NAME));
        assert!(members.iter().any(|m| m.last == NO_NAME));
        assert!(members.iter().any(|m| !first_name(m.first).is_ascii()));
        let mut seconds: Vec<i64> = members.iter().map(|m| m.last_changed).collect();
        seconds.sort_unstable();
        seconds.dedup();
        assert!(
            seconds.len() < members.len() / 2,
            "bulk imports share seconds"
        );
        assert!(members.iter().all(|m| m.last_changed < END + 1));
    }
}
