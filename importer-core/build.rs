//! Embeds `../migrations` in the crate: writes `$OUT_DIR/migrations.rs`, one
//! `(version, description, include_str!(file))` per migration, in version order.
//!
//! This does what `sqlx::migrate!` does without sqlx's proc-macro crate, whose host build
//! (a second sqlx-core, sqlx-postgres and tokio) was a sixth of the README's first build. The
//! names follow sqlx's rules (`<version>_<description>.sql`, `_` read as a space), and a test
//! (`tests/migrator.rs`) checks the result against `sqlx::migrate!` itself.
use std::{env, fmt::Write as _, fs, path::Path};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).expect("migrations/ is readable") {
        let path = entry.expect("migrations/ entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((version, rest)) = name.split_once('_') else {
            continue;
        };
        let Some(description) = rest.strip_suffix(".sql") else {
            continue;
        };
        assert!(
            !description.ends_with(".up") && !description.ends_with(".down"),
            "{name}: reversible migrations are not supported"
        );
        let version: i64 = version
            .parse()
            .unwrap_or_else(|_| panic!("{name}: the version prefix is not an integer"));
        let path = path.canonicalize().expect("migration path");
        found.push((version, description.replace('_', " "), path));
    }
    found.sort_by_key(|(version, ..)| *version);
    let mut out = String::from("&[\n");
    for (version, description, path) in &found {
        writeln!(
            out,
            "    ({version}, {description:?}, include_str!({:?})),",
            path
        )
        .expect("write to a String");
    }
    out.push_str("]\n");
    let target = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("migrations.rs");
    fs::write(target, out).expect("write migrations.rs");
}
