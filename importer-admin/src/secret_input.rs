//! Reading API keys from an environment variable, a file or standard input (never from argv,
//! where `ps` and shell history would see them), and validating them without echoing them.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use importer_core::secrets::{validate_mailchimp_key, Secret};

use crate::cli::KeySources;

/// Where one key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file (surrounding whitespace trimmed).
    File(PathBuf),
    /// One line of standard input.
    Stdin,
}

impl KeySource {
    /// `environment variable MC_KEY`, `file /run/secrets/mc`, `standard input`.
    pub fn describe(&self) -> String {
        match self {
            KeySource::Env(var) => format!("environment variable {var}"),
            KeySource::File(path) => format!("file {}", path.display()),
            KeySource::Stdin => "standard input".to_owned(),
        }
    }
}

impl KeySources {
    /// The Mailchimp key's source, if one was given.
    pub fn mailchimp(&self) -> Option<KeySource> {
        source(
            &self.mailchimp_key_env,
            &self.mailchimp_key_file,
            self.mailchimp_key_stdin,
        )
    }

    /// The destination key's source, if one was given.
    pub fn destination(&self) -> Option<KeySource> {
        source(
            &self.destination_key_env,
            &self.destination_key_file,
            self.destination_key_stdin,
        )
    }
}

fn source(env: &Option<String>, file: &Option<PathBuf>, stdin: bool) -> Option<KeySource> {
    if let Some(var) = env {
        Some(KeySource::Env(var.clone()))
    } else if let Some(path) = file {
        Some(KeySource::File(path.clone()))
    } else if stdin {
        Some(KeySource::Stdin)
    } else {
        None
    }
}

/// Reads a key. Errors name the source (variable, file) and never contain the key.
pub fn read_key(
    source: &KeySource,
    what: &str,
    stdin: &mut impl BufRead,
) -> anyhow::Result<Secret> {
    let value = match source {
        KeySource::Env(var) => {
            match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    bail!("cannot read the {what} from environment variable {var}: it is not set")
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    bail!("cannot read the {what} from environment variable {var}: it is not valid UTF-8")
                }
            }
        }
        KeySource::File(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the {what} from file {}", path.display()))?,
        KeySource::Stdin => {
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .with_context(|| format!("cannot read the {what} from standard input"))?;
            line
        }
    };
    let value = value.trim();
    if value.is_empty() {
        bail!("the {what} from {} is empty", source.describe());
    }
    Ok(Secret::new(value))
}

/// Reads and validates a Mailchimp API key (`<32 hex>-<dc>`); a key of another shape is refused
/// with a message describing the expected shape, never the key.
pub fn mailchimp_key(source: &KeySource, stdin: &mut impl BufRead) -> anyhow::Result<Secret> {
    let key = read_key(source, "Mailchimp API key", stdin)?;
    if let Err(shape) = validate_mailchimp_key(key.expose()) {
        bail!(
            "the Mailchimp API key from {} is not valid: {shape}",
            source.describe()
        );
    }
    Ok(key)
}

/// Reads a destination API key (any non-empty text).
pub fn destination_key(source: &KeySource, stdin: &mut impl BufRead) -> anyhow::Result<Secret> {
    read_key(source, "destination API key", stdin)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Cursor;

    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef-us6";

    #[test]
    fn keys_on_standard_input_are_read_line_by_line() {
        let mut stdin = Cursor::new(format!("{KEY}\ndest-key-123\n"));
        let mc = mailchimp_key(&KeySource::Stdin, &mut stdin).unwrap();
        let dest = destination_key(&KeySource::Stdin, &mut stdin).unwrap();
        assert_eq!(mc.expose(), KEY);
        assert_eq!(dest.expose(), "dest-key-123");
    }

    #[test]
    fn a_bad_mailchimp_key_is_refused_without_echoing_it() {
        let mut stdin = Cursor::new("not-a-real-key-SECRETVALUE\n");
        let err = mailchimp_key(&KeySource::Stdin, &mut stdin).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("32 hex"), "{text}");
        assert!(!text.contains("SECRETVALUE"), "{text}");
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let source = KeySource::File("/nonexistent/key".into());
        let err = destination_key(&source, &mut Cursor::new("")).unwrap_err();
        assert!(format!("{err:#}").contains("file /nonexistent/key"));
    }

    #[test]
    fn an_empty_key_is_refused() {
        let err = destination_key(&KeySource::Stdin, &mut Cursor::new("\n")).unwrap_err();
        assert!(err.to_string().contains("is empty"));
    }
}
