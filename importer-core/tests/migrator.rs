//! `importer_core::MIGRATOR` (embedded by `build.rs`, without sqlx's proc macros) is the migrator
//! `sqlx::migrate!` would build: the same versions, descriptions, checksums and transaction
//! flags. A database migrated by an earlier release, which used `sqlx::migrate!`, therefore
//! validates against this one.

#[test]
fn the_embedded_migrations_are_those_sqlx_migrate_would_embed() {
    let reference = sqlx::migrate!("../migrations");
    let ours = &*importer_core::MIGRATOR;
    let view = |m: &sqlx::migrate::Migrator| {
        m.iter()
            .map(|m| {
                (
                    m.version,
                    m.description.to_string(),
                    m.migration_type,
                    m.checksum.to_vec(),
                    m.no_tx,
                    m.sql.len(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(reference.iter().count() >= 11, "migrations/ was read");
    assert_eq!(view(ours), view(&reference));
    assert_eq!(ours.locking, reference.locking);
    assert_eq!(ours.ignore_missing, reference.ignore_missing);
}
