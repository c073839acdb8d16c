//! `--help` never prints the value of a variable that may hold a secret (issue 9, defect 9).
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn help_names_database_url_but_never_prints_its_password() {
    for args in [
        &["--help"][..],
        &["accounts", "--help"],
        &["runs", "start", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_importer-admin"))
            .args(args)
            .env(
                "DATABASE_URL",
                "postgres://importer:hunter2secret@db:5432/importer",
            )
            .env("IMPORTER_SECRET_KEY", "00".repeat(32))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(text.contains("DATABASE_URL"), "{args:?}: {text}");
        assert!(!text.contains("hunter2secret"), "{args:?}: {text}");
        assert!(!text.contains(&"00".repeat(32)), "{args:?}: {text}");
    }
}
