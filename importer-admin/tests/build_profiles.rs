//! The `release` profile's unoptimised crates (workspace `Cargo.toml`, `[profile.release.package]`)
//! stay out of the hot code's dependency graph, and `max` gives each of them level 3 back.
//!
//! At opt-level 0 and 1 rustc shares generic instances across crates: a level-0 dependency of
//! importer-core, importer-worker or importer-sim hands their code its unoptimised copies of
//! `slice::split_at`, serde_json's string parser and the like (bench/RESULTS.md, "Build
//! profiles": the worker's CPU per member doubled). So only crates the operator CLI alone links
//! may be listed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// `name = { opt-level = N }` lines of one `[section]` of the workspace manifest.
fn package_levels(manifest: &str, section: &str) -> BTreeMap<String, String> {
    let header = format!("[{section}]");
    manifest
        .lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter_map(|line| {
            let (name, rest) = line.split_once('=')?;
            let level = rest.split("opt-level").nth(1)?;
            let level = level
                .trim_start_matches([' ', '='])
                .split([' ', '}'])
                .next()?;
            Some((name.trim().to_owned(), level.to_owned()))
        })
        .collect()
}

/// Every package in the normal-dependency graphs of the crates whose code the demo, the worker
/// and the benchmarks run hot.
fn hot_graph(workspace: &Path) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args([
            "-f",
            "{p}",
            "-p",
            "importer-core",
            "-p",
            "importer-worker",
            "-p",
            "importer-sim",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn unoptimised_release_crates_are_outside_the_hot_dependency_graph() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
    let release = package_levels(&manifest, "profile.release.package");
    let cold: BTreeSet<&String> = release
        .iter()
        .filter(|(_, level)| *level == "0")
        .map(|(name, _)| name)
        .collect();
    assert!(cold.contains(&"importer-admin".to_owned()), "{release:?}");
    assert!(cold.contains(&"minijinja".to_owned()), "{release:?}");

    let hot = hot_graph(workspace);
    assert!(
        hot.contains("serde_json") && hot.contains("importer-core"),
        "{hot:?}"
    );
    let leaked: Vec<&&String> = cold
        .iter()
        .filter(|name| hot.contains(name.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "opt-level 0 in release, but linked by the hot crates: {leaked:?}"
    );
}

#[test]
fn max_gives_every_release_override_level_three() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
    let release = package_levels(&manifest, "profile.release.package");
    let max = package_levels(&manifest, "profile.max.package");
    assert!(!release.is_empty());
    for name in release.keys() {
        assert_eq!(
            max.get(name).map(String::as_str),
            Some("3"),
            "{name} in [profile.max.package]"
        );
    }
}
