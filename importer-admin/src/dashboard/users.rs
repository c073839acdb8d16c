//! Who may use the dashboard: users with a role and a token, from `IMPORTER_DASHBOARD_USERS` or
//! a file. A token is compared in constant time and never printed, logged or stored in a
//! session cookie.

use std::fmt;

use subtle::ConstantTimeEq;

/// Shortest token accepted: 16 characters (a guessable token is no authentication).
pub const MIN_TOKEN_CHARS: usize = 16;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees every page; acts on nothing.
    Viewer,
    /// Sees and acts: pause, cap, start, cancel, requeue, purge, reset cursors.
    Operator,
}

impl Role {
    /// The role's name in configuration and on pages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// A dashboard user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The name recorded in the audit log.
    pub name: String,
    /// What they may do.
    pub role: Role,
    token: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Why a users configuration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsersError {
    /// No user at all: the dashboard never runs open.
    #[error("no dashboard user: set IMPORTER_DASHBOARD_USERS (name:role:token, ...) or pass --users-file")]
    None,
    /// An entry is not `name:role:token`.
    #[error("dashboard user entry {0}: expected name:role:token")]
    Malformed(usize),
    /// An unknown role.
    #[error("dashboard user {name}: role must be viewer or operator, not {role:?}")]
    Role {
        /// The user.
        name: String,
        /// What was given.
        role: String,
    },
    /// A token shorter than [`MIN_TOKEN_CHARS`].
    #[error("dashboard user {0}: the token must have at least 16 characters")]
    ShortToken(String),
    /// Two users with one name or one token.
    #[error("dashboard user {0}: names and tokens must be unique")]
    Duplicate(String),
}

/// The users allowed in.
#[derive(Debug, Clone)]
pub struct Users {
    users: Vec<User>,
}

impl Users {
    /// Parses `name:role:token` entries separated by commas or newlines; blank entries and
    /// lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, UsersError> {
        let mut users: Vec<User> = Vec::new();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (index, entry) in entries.enumerate() {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(UsersError::Malformed(index + 1));
            };
            let (name, token) = (name.trim(), token.trim());
            if name.is_empty() {
                return Err(UsersError::Malformed(index + 1));
            }
            let role = match role.trim() {
                "viewer" => Role::Viewer,
                "operator" => Role::Operator,
                other => {
                    return Err(UsersError::Role {
                        name: name.to_owned(),
                        role: other.to_owned(),
                    })
                }
            };
            if token.chars().count() < MIN_TOKEN_CHARS {
                return Err(UsersError::ShortToken(name.to_owned()));
            }
            if users.iter().any(|u| u.name == name || u.token == token) {
                return Err(UsersError::Duplicate(name.to_owned()));
            }
            users.push(User {
                name: name.to_owned(),
                role,
                token: token.to_owned(),
            });
        }
        if users.is_empty() {
            return Err(UsersError::None);
        }
        Ok(Users { users })
    }

    /// The user whose token this is. Every user's token is compared, each in constant time,
    /// so the answer's timing says nothing about which token came close.
    pub fn authenticate(&self, token: &str) -> Option<&User> {
        let mut found = None;
        for user in &self.users {
            if bool::from(user.token.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(user);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str = "0123456789abcdef-op";
    const VIEW: &str = "0123456789abcdef-view";

    #[test]
    fn users_parse_from_commas_or_lines_and_authenticate_by_token() {
        let users = Users::parse(&format!(
            "ana:operator:{OP}\n# comment\n, vic:viewer:{VIEW}"
        ))
        .expect("valid users");
        assert_eq!(
            users.authenticate(OP).map(|u| (u.name.as_str(), u.role)),
            Some(("ana", Role::Operator))
        );
        assert_eq!(users.authenticate(VIEW).map(|u| u.role), Some(Role::Viewer));
        assert!(users.authenticate("0123456789abcdef").is_none());
        assert!(users.authenticate("").is_none());
    }

    #[test]
    fn bad_user_configurations_are_refused_with_the_reason() {
        assert_eq!(Users::parse(" ,\n").err(), Some(UsersError::None));
        assert_eq!(
            Users::parse("ana:operator").err(),
            Some(UsersError::Malformed(1))
        );
        assert!(matches!(
            Users::parse(&format!("ana:admin:{OP}")),
            Err(UsersError::Role { .. })
        ));
        assert_eq!(
            Users::parse("ana:viewer:short").err(),
            Some(UsersError::ShortToken("ana".into()))
        );
        assert_eq!(
            Users::parse(&format!("ana:viewer:{OP},bob:viewer:{OP}")).err(),
            Some(UsersError::Duplicate("bob".into()))
        );
    }

    #[test]
    fn a_users_debug_output_has_no_token() {
        let users = Users::parse(&format!("ana:operator:{OP}")).expect("valid");
        assert!(!format!("{users:?}").contains(OP));
    }
}
