//! Decode + map + encode cost per million members (DESIGN §7: at most 1 CPU-second per million
//! for the whole worker). Run with `cargo bench -p importer-core --bench decode`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use importer_core::mailchimp::decode_members_page;
use importer_core::mapping::map_page;

const PAGE: usize = 1000;
const PAGES: usize = 1000;

/// A page shaped like Mailchimp's answer to our `fields` (about 155 bytes per member).
fn page_body() -> Vec<u8> {
    let names = [
        ("Ann", "Lee"),
        ("Zoë", "Ångström"),
        ("", ""),
        ("李", "小龙"),
        ("José", "O'Neil"),
    ];
    let members: Vec<_> = (0..PAGE)
        .map(|i| {
            let (first, last) = names[i % names.len()];
            serde_json::json!({
                "id": format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
                "email_address": format!("member.{i}@example.com"),
                "status": if i % 7 == 0 { "unsubscribed" } else { "subscribed" },
                "merge_fields": {"FNAME": first, "LNAME": last},
                "last_changed": "2022-02-23T19:31:54+00:00",
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"members": members, "total_items": 250_000})).unwrap()
}

fn time(label: &str, mut step: impl FnMut()) {
    step(); // warm up
    let start = Instant::now();
    for _ in 0..PAGES {
        step();
    }
    let per_million = start.elapsed().as_secs_f64() * 1_000_000.0 / (PAGE * PAGES) as f64;
    println!("{label:<40} {:>8.3} s per million members", per_million);
}

fn main() {
    let body = page_body();
    println!(
        "page body: {} bytes, {} bytes per member",
        body.len(),
        body.len() / PAGE
    );
    time("decode", || {
        black_box(decode_members_page(black_box(&body)).unwrap());
    });
    time("decode + map", || {
        let page = decode_members_page(black_box(&body)).unwrap();
        black_box(map_page(page.decoded()));
    });
    time("decode + map + encode for the destination", || {
        let page = decode_members_page(black_box(&body)).unwrap();
        let (records, _) = map_page(page.decoded());
        black_box(serde_json::to_vec(&records).unwrap());
    });
}
