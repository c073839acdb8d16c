//! The nested objects of a member: `merge_fields` (with `ADDRESS`), `interests`, `stats` and
//! `location`.

use serde::ser::SerializeMap;

use super::json::{Fields, Obj};
use super::member_seed::MemberSeed;
use super::members::{first_name, last_name, MemberDefect, INVALID_UTF8_MARKER};

pub(super) struct MergeFields<'a> {
    pub v: &'a MemberSeed<'a>,
}

impl Fields for MergeFields<'_> {
    fn write<M: SerializeMap>(&self, o: &mut Obj<'_, M>) -> Result<(), M::Error> {
        let v = self.v;
        match v.m.defect {
            Some(MemberDefect::WrongType) => o.leaf("FNAME", || 7)?,
            Some(MemberDefect::InvalidUtf8) => o.leaf("FNAME", || INVALID_UTF8_MARKER)?,
            _ => o.leaf("FNAME", || first_name(v.m.first))?,
        }
        o.leaf("LNAME", || last_name(v.m.last))?;
        // An empty address is "" in Mailchimp, not an empty object.
        if v.h(20) % 10 < 6 {
            o.object("ADDRESS", || Address { v })?;
        } else {
            o.leaf("ADDRESS", || "")?;
        }
        o.leaf("PHONE", || {
            if v.h(21) % 2 == 0 {
                String::new()
            } else {
                format!("+1 555-{:04}", v.h(22) % 10_000)
            }
        })?;
        o.leaf("BIRTHDAY", || {
            if v.h(23) % 3 == 0 {
                String::new()
            } else {
                format!("{:02}/{:02}", 1 + v.h(24) % 12, 1 + v.h(25) % 28)
            }
        })?;
        o.leaf("COMPANY", || {
            v.pick(
                26,
                &[
                    "",
                    "",
                    "Acme Corp",
                    "Globex",
                    "Initech",
                    "Umbrella GmbH",
                    "Société Générale",
                ],
            )
        })
    }
}

struct Address<'a> {
    pub v: &'a MemberSeed<'a>,
}

impl Fields for Address<'_> {
    fn write<M: SerializeMap>(&self, o: &mut Obj<'_, M>) -> Result<(), M::Error> {
        let v = self.v;
        let (city, state, country) = v.pick(30, CITIES);
        o.leaf("addr1", || {
            format!(
                "{} {}",
                1 + v.h(31) % 9999,
                v.pick(
                    32,
                    &[
                        "Main St",
                        "Oak Avenue",
                        "Rue de la Paix",
                        "Hauptstraße",
                        "High Street"
                    ]
                )
            )
        })?;
        o.leaf("addr2", || {
            if v.h(33) % 4 == 0 {
                format!("Apt {}", 1 + v.h(34) % 40)
            } else {
                String::new()
            }
        })?;
        o.leaf("city", || city)?;
        o.leaf("state", || state)?;
        o.leaf("zip", || format!("{:05}", v.h(35) % 100_000))?;
        o.leaf("country", || country)
    }
}

const CITIES: &[(&str, &str, &str)] = &[
    ("Atlanta", "GA", "US"),
    ("Portland", "OR", "US"),
    ("Berlin", "BE", "DE"),
    ("Kraków", "", "PL"),
    ("Paris", "", "FR"),
    ("Tokyo", "", "JP"),
    ("London", "", "GB"),
    ("São Paulo", "SP", "BR"),
];

pub(super) struct Interests<'a> {
    pub v: &'a MemberSeed<'a>,
}

impl Fields for Interests<'_> {
    fn write<M: SerializeMap>(&self, o: &mut Obj<'_, M>) -> Result<(), M::Error> {
        for (i, id) in self.v.meta.interests.iter().enumerate() {
            o.leaf(id, || self.v.touched(40 + i as u64) % 3 == 0)?;
        }
        Ok(())
    }
}

pub(super) struct Stats<'a> {
    pub v: &'a MemberSeed<'a>,
}

impl Fields for Stats<'_> {
    fn write<M: SerializeMap>(&self, o: &mut Obj<'_, M>) -> Result<(), M::Error> {
        o.leaf("avg_open_rate", || (self.v.h(50) % 101) as f64 / 100.0)?;
        o.leaf("avg_click_rate", || (self.v.h(51) % 31) as f64 / 100.0)
    }
}

pub(super) struct Location<'a> {
    pub v: &'a MemberSeed<'a>,
}

impl Fields for Location<'_> {
    fn write<M: SerializeMap>(&self, o: &mut Obj<'_, M>) -> Result<(), M::Error> {
        const PLACES: &[(f64, f64, i64, i64, &str, &str, &str)] = &[
            (0.0, 0.0, 0, 0, "", "", ""),
            (33.749, -84.388, -5, -4, "US", "America/New_York", "GA"),
            (52.52, 13.405, 1, 2, "DE", "Europe/Berlin", "BE"),
            (35.6762, 139.6503, 9, 9, "JP", "Asia/Tokyo", "13"),
            (50.0647, 19.945, 1, 2, "PL", "Europe/Warsaw", "MA"),
        ];
        let (lat, lon, gmt, dst, cc, tz, region) = self.v.pick(60, PLACES);
        o.leaf("latitude", || lat)?;
        o.leaf("longitude", || lon)?;
        o.leaf("gmtoff", || gmt)?;
        o.leaf("dstoff", || dst)?;
        o.leaf("country_code", || cc)?;
        o.leaf("timezone", || tz)?;
        o.leaf("region", || region)
    }
}
