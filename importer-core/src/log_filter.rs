//! The log filter every binary builds from `RUST_LOG`.
//!
//! `RUST_LOG` takes `target=level` directives and one bare default level, comma-separated
//! (`info,sqlx=warn,importer_worker::jobs=debug`): tracing-subscriber's [`Targets`] syntax.
//! `EnvFilter`'s span and field directives (`[job{id=…}]=debug`) are not accepted, on purpose:
//! `EnvFilter` brings a regex engine that was a twentieth of the README's first build
//! (bench/RESULTS.md, "Build profiles").

use tracing_subscriber::filter::Targets;

/// The filter `RUST_LOG` names, or `default` when it is unset or empty. An invalid `RUST_LOG`
/// is reported on standard error (there is no subscriber yet) and `default` is used.
pub fn from_env(default: &str) -> Targets {
    from_value(std::env::var("RUST_LOG").ok().as_deref(), default)
}

fn from_value(value: Option<&str>, default: &str) -> Targets {
    let parsed = match value {
        Some(value) if !value.trim().is_empty() => match value.parse::<Targets>() {
            Ok(filter) => Some(filter),
            Err(error) => {
                eprintln!("RUST_LOG is not a valid filter ({error}); using {default:?}");
                None
            }
        },
        _ => None,
    };
    parsed.unwrap_or_else(|| default.parse().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::from_value;

    #[test]
    fn target_directives_override_the_default_level_by_module_prefix() {
        let filter = from_value(Some("info,sqlx=error,importer_worker::jobs=debug"), "warn");
        assert!(filter.would_enable("importer_core::queue", &Level::INFO));
        assert!(!filter.would_enable("importer_core::queue", &Level::DEBUG));
        assert!(!filter.would_enable("sqlx::query", &Level::WARN));
        assert!(filter.would_enable("sqlx::query", &Level::ERROR));
        assert!(filter.would_enable("importer_worker::jobs::import", &Level::DEBUG));
    }

    #[test]
    fn unset_empty_or_invalid_values_fall_back_to_the_default() {
        for value in [
            None,
            Some(""),
            Some("  "),
            Some("sqlx=loud"),
            Some("[job{id=1}]=debug"),
        ] {
            let filter = from_value(value, "warn,sqlx=error");
            assert!(
                filter.would_enable("importer_admin", &Level::WARN),
                "{value:?}"
            );
            assert!(
                !filter.would_enable("importer_admin", &Level::INFO),
                "{value:?}"
            );
            assert!(
                !filter.would_enable("sqlx::query", &Level::WARN),
                "{value:?}"
            );
        }
    }
}
